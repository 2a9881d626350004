//! DDL requests (create, open, close, drop, alter, flush, compact, truncate) and region options.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::metadata::RegionMetadata;
use crate::region_id::RegionId;
use crate::schema::ColumnSchema;

/// Per-region options, chosen at create time and stored with the region. Built from
/// [`RegionOptions::default`] with the setters: `RegionOptions::default().ttl(week)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RegionOptions {
    /// Keep every row as written, duplicates of a (primary key, timestamp) included: scans
    /// and flushes do not deduplicate (rows of one key and timestamp come newest first).
    /// Deletes are refused. Mito2's append mode: for logs and events, where two rows with
    /// the same key and time are two facts. Cannot be altered.
    pub append_mode: bool,
    /// Flush the region when it has not flushed for this long; `None` uses the engine's
    /// `auto_flush_interval`.
    #[serde(with = "humantime_serde")]
    pub auto_flush_interval: Option<Duration>,
    /// This region's own write-buffer limit in bytes: flush at half, stall its writes at
    /// the limit, reject them at twice the limit. `None` uses the engine's
    /// `default_region_write_buffer_size`; `Some(0)` disables the limit for this region.
    pub write_buffer_size: Option<u64>,
    /// Time to live: scans never return rows whose timestamp is older than now − `ttl`
    /// (now on the engine's clock). `None` keeps rows forever. Compaction removes files
    /// whose rows have all expired and drops expired rows from the windows it rewrites;
    /// until then expired rows stay in the files, so shortening and then lengthening the
    /// TTL (or removing it) may show them again — or not, once a compaction removed them.
    #[serde(with = "humantime_serde")]
    pub ttl: Option<Duration>,
    /// The width of compaction's time windows: each SST belongs to the window of its
    /// newest row, and compaction merges files of one window. `None`: inferred from the
    /// first flushed data (the smallest of 1 h, 2 h, 12 h, 1 d and 1 w covering it). Either
    /// way the window is persisted in the manifest by the first flush and never changes
    /// afterwards (whole seconds; at least one). Cannot be altered.
    #[serde(with = "humantime_serde")]
    pub compaction_window: Option<Duration>,
}

/// One change to [`RegionOptions`] made by [`AlterKind::SetOptions`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RegionOptionChange {
    /// Set (or, with `None`, reset to the engine default) the auto-flush interval.
    AutoFlushInterval(#[serde(with = "humantime_serde")] Option<Duration>),
    /// Set (or, with `None`, reset to the engine default) the region's write-buffer limit.
    WriteBufferSize(Option<u64>),
    /// Set (or, with `None`, remove) the region's time to live.
    Ttl(#[serde(with = "humantime_serde")] Option<Duration>),
}

impl RegionOptions {
    /// With [`append_mode`](Self::append_mode) set.
    pub fn append_mode(mut self, append_mode: bool) -> Self {
        self.append_mode = append_mode;
        self
    }

    /// With this [`auto_flush_interval`](Self::auto_flush_interval).
    pub fn auto_flush_interval(mut self, interval: Duration) -> Self {
        self.auto_flush_interval = Some(interval);
        self
    }

    /// With this [`write_buffer_size`](Self::write_buffer_size) in bytes.
    pub fn write_buffer_size(mut self, bytes: u64) -> Self {
        self.write_buffer_size = Some(bytes);
        self
    }

    /// With this [`ttl`](Self::ttl).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// With this [`compaction_window`](Self::compaction_window).
    pub fn compaction_window(mut self, window: Duration) -> Self {
        self.compaction_window = Some(window);
        self
    }

    /// These options with `changes` applied in order.
    pub fn with_changes(&self, changes: &[RegionOptionChange]) -> RegionOptions {
        let mut options = self.clone();
        for change in changes {
            match change {
                RegionOptionChange::AutoFlushInterval(interval) => {
                    options.auto_flush_interval = *interval;
                }
                RegionOptionChange::WriteBufferSize(size) => {
                    options.write_buffer_size = *size;
                }
                RegionOptionChange::Ttl(ttl) => {
                    options.ttl = *ttl;
                }
            }
        }
        options
    }
}

/// Create a region (idempotent when a region with the same schema exists):
/// `CreateRequest::new(metadata).options(options)`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CreateRequest {
    /// Schema of the new region; its region id names the region.
    pub metadata: RegionMetadata,
    /// Options of the new region.
    pub options: RegionOptions,
}

impl CreateRequest {
    /// A region of `metadata`'s schema (its region id names the region), default options.
    pub fn new(metadata: RegionMetadata) -> Self {
        Self {
            metadata,
            options: RegionOptions::default(),
        }
    }

    /// With these options.
    pub fn options(mut self, options: RegionOptions) -> Self {
        self.options = options;
        self
    }
}

/// Open an existing region from its manifest and WAL: `OpenRequest::leader(id)`,
/// `OpenRequest::follower(id)`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpenRequest {
    /// The region.
    pub region_id: RegionId,
    /// Do not replay the WAL (the caller will catch up later).
    pub skip_wal_replay: bool,
    /// Open as the region's leader (the default: WAL replayed, writable) or as a
    /// follower (read-only from the shared object store: no WAL, nothing deleted or
    /// written; see [`RegionRole`]).
    pub role: RegionRole,
}

impl OpenRequest {
    /// Open `region_id` in `role`, replaying the WAL (a follower has none to replay).
    pub fn new(region_id: RegionId, role: RegionRole) -> Self {
        Self {
            region_id,
            skip_wal_replay: false,
            role,
        }
    }

    /// Open `region_id` as its leader: WAL replayed, writable.
    pub fn leader(region_id: RegionId) -> Self {
        Self::new(region_id, RegionRole::Leader)
    }

    /// Open `region_id` as a follower: read-only from the shared object store.
    pub fn follower(region_id: RegionId) -> Self {
        Self::new(region_id, RegionRole::Follower)
    }

    /// Without replaying the WAL (the caller catches up later).
    pub fn skip_wal_replay(mut self) -> Self {
        self.skip_wal_replay = true;
        self
    }
}

/// What a region is to an engine that has it open. Several engines may open one region on
/// a shared object store; at most one leads it at a time (manifest commits are fenced, see
/// `docs/distributed.md`).
///
/// Deliberately not `#[non_exhaustive]` (like [`DdlRequest`]): the worker matches every
/// role, so a new one cannot be added without deciding what it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RegionRole {
    /// Takes writes, flushes, compacts and commits to the manifest.
    #[default]
    Leader,
    /// Handing the region over: rejects new writes (`NotLeader`) but still flushes and
    /// commits what it holds.
    Downgrading,
    /// Read-only: serves scans of the manifest's files, installs newer manifest versions
    /// (sync), never writes, deletes or replays a WAL.
    Follower,
}

impl RegionRole {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RegionRole::Leader => "leader",
            RegionRole::Downgrading => "downgrading",
            RegionRole::Follower => "follower",
        }
    }
}

impl fmt::Display for RegionRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Change a region's role (see [`RegionRole`]).
///
/// To `Leader` from `Follower` (an upgrade): the newest manifest is read, checked to
/// cover `last_entry_id` when given (the old leader's, from its downgrade), and a new
/// leader epoch is committed before the first write — which fences the old leader out.
/// From `Downgrading` back to `Leader`: writes resume (a hand-off rolled back). To
/// `Downgrading` or `Follower`: writes are refused at once; queued ones fail `NotLeader`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SetRoleRequest {
    /// The region.
    pub region_id: RegionId,
    /// Its new role.
    pub role: RegionRole,
    /// For an upgrade: the last WAL entry id the old leader reported; the manifest must
    /// have flushed up to it.
    pub last_entry_id: Option<u64>,
}

impl SetRoleRequest {
    /// The request with these fields (`region_id`, `role`, `last_entry_id`).
    pub fn new(region_id: RegionId, role: RegionRole, last_entry_id: Option<u64>) -> Self {
        Self {
            region_id,
            role,
            last_entry_id,
        }
    }
}

/// Install manifest versions another engine committed (followers).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncRequest {
    /// The region.
    pub region_id: RegionId,
    /// Fail (retryably) unless the manifest has reached at least this version.
    pub at_least_version: u64,
}

impl SyncRequest {
    /// The request with these fields (`region_id`, `at_least_version`).
    pub fn new(region_id: RegionId, at_least_version: u64) -> Self {
        Self {
            region_id,
            at_least_version,
        }
    }
}

/// Close a region: memtables are dropped (the WAL keeps their rows).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloseRequest {
    /// The region.
    pub region_id: RegionId,
}

impl CloseRequest {
    /// The request with these fields (`region_id`).
    pub fn new(region_id: RegionId) -> Self {
        Self { region_id }
    }
}

/// Drop a region and, later, its files.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DropRequest {
    /// The region.
    pub region_id: RegionId,
}

impl DropRequest {
    /// The request with these fields (`region_id`).
    pub fn new(region_id: RegionId) -> Self {
        Self { region_id }
    }
}

/// What an alter changes.
///
/// Deliberately not `#[non_exhaustive]` (unlike the other growable enums): the worker
/// matches every kind, so a new one cannot be added without handling it there.
#[derive(Debug, Clone, PartialEq)]
pub enum AlterKind {
    /// Append field columns (each nullable or with a default).
    AddColumns {
        /// The columns to add.
        columns: Vec<ColumnSchema>,
    },
    /// Remove field columns by name.
    DropColumns {
        /// Names of the columns to drop.
        names: Vec<String>,
    },
    /// Change region options; no flush needed.
    SetOptions {
        /// The changes, applied in order.
        changes: Vec<RegionOptionChange>,
    },
}

impl AlterKind {
    /// Whether the alter changes the schema (and so needs empty memtables first).
    pub fn changes_schema(&self) -> bool {
        !matches!(self, AlterKind::SetOptions { .. })
    }
}

/// Alter a region's schema or options: `AlterRequest::new(region_id, schema_version, kind)`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AlterRequest {
    /// The region.
    pub region_id: RegionId,
    /// Schema version the alter was prepared against; a mismatch is an error, which makes a
    /// retried alter safe.
    pub schema_version: u64,
    /// The change.
    pub kind: AlterKind,
}

impl AlterRequest {
    /// A change of `region_id`, prepared against its schema version `schema_version`.
    pub fn new(region_id: RegionId, schema_version: u64, kind: AlterKind) -> Self {
        Self {
            region_id,
            schema_version,
            kind,
        }
    }
}

/// Flush a region's memtables to SST files.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FlushRequest {
    /// The region.
    pub region_id: RegionId,
}

impl FlushRequest {
    /// The request with these fields (`region_id`).
    pub fn new(region_id: RegionId) -> Self {
        Self { region_id }
    }
}

/// Compact a region's SST files.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactRequest {
    /// The region.
    pub region_id: RegionId,
}

impl CompactRequest {
    /// The request with these fields (`region_id`).
    pub fn new(region_id: RegionId) -> Self {
        Self { region_id }
    }
}

/// Remove every row of a region, keeping the region.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TruncateRequest {
    /// The region.
    pub region_id: RegionId,
}

impl TruncateRequest {
    /// The request with these fields (`region_id`).
    pub fn new(region_id: RegionId) -> Self {
        Self { region_id }
    }
}

/// Make a region writable, or read-only (writes and flush commits refused).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SetWritableRequest {
    /// The region.
    pub region_id: RegionId,
    /// `true`: writable; `false`: read-only.
    pub writable: bool,
}

impl SetWritableRequest {
    /// The request with these fields (`region_id`, `writable`).
    pub fn new(region_id: RegionId, writable: bool) -> Self {
        Self {
            region_id,
            writable,
        }
    }
}

/// Any DDL request.
///
/// Deliberately not `#[non_exhaustive]`: the worker matches every request, so a new one
/// cannot be added without handling it there.
#[derive(Debug, Clone, PartialEq)]
pub enum DdlRequest {
    /// See [`CreateRequest`].
    Create(CreateRequest),
    /// See [`OpenRequest`].
    Open(OpenRequest),
    /// See [`CloseRequest`].
    Close(CloseRequest),
    /// See [`DropRequest`].
    Drop(DropRequest),
    /// See [`AlterRequest`].
    Alter(AlterRequest),
    /// See [`FlushRequest`].
    Flush(FlushRequest),
    /// See [`CompactRequest`].
    Compact(CompactRequest),
    /// See [`TruncateRequest`].
    Truncate(TruncateRequest),
    /// See [`SetWritableRequest`].
    SetWritable(SetWritableRequest),
    /// See [`SetRoleRequest`].
    SetRole(SetRoleRequest),
    /// See [`SyncRequest`].
    Sync(SyncRequest),
}

impl DdlRequest {
    /// The region the request is for.
    pub fn region_id(&self) -> RegionId {
        match self {
            DdlRequest::Create(r) => r.metadata.region_id(),
            DdlRequest::Open(r) => r.region_id,
            DdlRequest::Close(r) => r.region_id,
            DdlRequest::Drop(r) => r.region_id,
            DdlRequest::Alter(r) => r.region_id,
            DdlRequest::Flush(r) => r.region_id,
            DdlRequest::Compact(r) => r.region_id,
            DdlRequest::Truncate(r) => r.region_id,
            DdlRequest::SetWritable(r) => r.region_id,
            DdlRequest::SetRole(r) => r.region_id,
            DdlRequest::Sync(r) => r.region_id,
        }
    }

    /// Lower-case name of the request kind, for logs and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            DdlRequest::Create(_) => "create",
            DdlRequest::Open(_) => "open",
            DdlRequest::Close(_) => "close",
            DdlRequest::Drop(_) => "drop",
            DdlRequest::Alter(_) => "alter",
            DdlRequest::Flush(_) => "flush",
            DdlRequest::Compact(_) => "compact",
            DdlRequest::Truncate(_) => "truncate",
            DdlRequest::SetWritable(_) => "set_writable",
            DdlRequest::SetRole(_) => "set_role",
            DdlRequest::Sync(_) => "sync",
        }
    }
}

impl fmt::Display for DdlRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} region {}", self.kind(), self.region_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::RegionMetadataBuilder;
    use crate::schema::ColumnDataType;

    #[test]
    fn a_ttl_parses_from_a_human_duration_and_alter_sets_and_removes_it() {
        let o: RegionOptions = serde_json::from_str(r#"{"ttl": "7d"}"#).unwrap();
        assert_eq!(o.ttl, Some(Duration::from_secs(7 * 86_400)));
        let none = o.with_changes(&[RegionOptionChange::Ttl(None)]);
        assert_eq!(none.ttl, None);
        let hour = none.with_changes(&[RegionOptionChange::Ttl(Some(Duration::from_secs(3600)))]);
        assert_eq!(hour.ttl, Some(Duration::from_secs(3600)));
        assert_eq!(hour.auto_flush_interval, None, "other options untouched");
    }

    #[test]
    fn region_options_parse_human_durations_and_reject_unknown_keys() {
        let o: RegionOptions =
            serde_json::from_str(r#"{"append_mode": true, "auto_flush_interval": "30m"}"#).unwrap();
        assert!(o.append_mode);
        assert_eq!(o.auto_flush_interval, Some(Duration::from_secs(1800)));
        assert_eq!(
            serde_json::from_str::<RegionOptions>("{}").unwrap(),
            RegionOptions::default()
        );
        let err = serde_json::from_str::<RegionOptions>(r#"{"apend_mode": true}"#).unwrap_err();
        assert!(err.to_string().contains("apend_mode"), "{err}");
    }

    #[test]
    fn option_changes_apply_in_order() {
        let o = RegionOptions::default().with_changes(&[
            RegionOptionChange::AutoFlushInterval(Some(Duration::from_secs(5))),
            RegionOptionChange::AutoFlushInterval(Some(Duration::from_secs(9))),
        ]);
        assert_eq!(o.auto_flush_interval, Some(Duration::from_secs(9)));
        let reset = o.with_changes(&[RegionOptionChange::AutoFlushInterval(None)]);
        assert_eq!(reset.auto_flush_interval, None);
    }

    #[test]
    fn constructors_fill_in_the_defaults_and_the_builders_change_one_thing() {
        let id = RegionId::new(3, 2);
        let open = OpenRequest::leader(id);
        assert_eq!(
            (open.role, open.skip_wal_replay),
            (RegionRole::Leader, false)
        );
        let open = OpenRequest::follower(id).skip_wal_replay();
        assert_eq!(
            (open.region_id, open.role, open.skip_wal_replay),
            (id, RegionRole::Follower, true)
        );
        let metadata = RegionMetadataBuilder::new(id)
            .column(ColumnSchema::tag("host"))
            .column(ColumnSchema::timestamp(
                "ts",
                ColumnDataType::TimestampMillisecond,
            ))
            .build()
            .unwrap();
        let create = CreateRequest::new(metadata.clone());
        assert_eq!(create.options, RegionOptions::default());
        let options = RegionOptions {
            append_mode: true,
            ..RegionOptions::default()
        };
        assert_eq!(
            CreateRequest::new(metadata)
                .options(options.clone())
                .options,
            options
        );
    }

    #[test]
    fn every_ddl_names_its_region_and_kind() {
        let id = RegionId::new(3, 2);
        let metadata = RegionMetadataBuilder::new(id)
            .column(ColumnSchema::timestamp(
                "ts",
                ColumnDataType::TimestampMillisecond,
            ))
            .build()
            .unwrap();
        let requests = [
            DdlRequest::Create(CreateRequest {
                metadata,
                options: RegionOptions::default(),
            }),
            DdlRequest::Open(OpenRequest {
                region_id: id,
                skip_wal_replay: false,
                role: RegionRole::Leader,
            }),
            DdlRequest::Close(CloseRequest { region_id: id }),
            DdlRequest::Drop(DropRequest { region_id: id }),
            DdlRequest::Alter(AlterRequest {
                region_id: id,
                schema_version: 0,
                kind: AlterKind::DropColumns { names: vec![] },
            }),
            DdlRequest::Flush(FlushRequest { region_id: id }),
            DdlRequest::Compact(CompactRequest { region_id: id }),
            DdlRequest::Truncate(TruncateRequest { region_id: id }),
        ];
        let kinds: Vec<_> = requests.iter().map(DdlRequest::kind).collect();
        assert_eq!(
            kinds,
            [
                "create", "open", "close", "drop", "alter", "flush", "compact", "truncate"
            ]
        );
        for r in &requests {
            assert_eq!(r.region_id(), id);
            assert!(r.to_string().ends_with("region 3.2"));
        }
    }

    #[test]
    fn only_column_alters_change_the_schema() {
        assert!(AlterKind::AddColumns { columns: vec![] }.changes_schema());
        assert!(AlterKind::DropColumns { names: vec![] }.changes_schema());
        assert!(!AlterKind::SetOptions { changes: vec![] }.changes_schema());
    }
}

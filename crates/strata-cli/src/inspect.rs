//! `strata inspect manifest|sst|wal`: human-readable dumps of what is on disk, and
//! `--check`, which verifies checksums and that every file a manifest names exists.
//! Everything is opened read-only: inspecting changes nothing and works while an ingest
//! writes the same directory.

use std::path::PathBuf;

use opendal::Operator;
use strata_engine::{EngineConfig, RegionId};
use strata_storage::{
    ManifestConfig, ManifestManager, RegionMetaActionList, region_data_dir, region_manifest_dir,
    verify_sst,
};
use strata_wal::{FileLogStore, LogStore};

use crate::EngineArgs;

/// What to inspect.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum InspectCommand {
    /// Manifest versions, their actions, and the resulting region state.
    Manifest(RegionArgs),
    /// The region's SST files: rows, row groups, time ranges, sizes.
    Sst(RegionArgs),
    /// WAL segments and entries per region (opened read-only: nothing is repaired, and a
    /// live writer's unfinished group is shown as such).
    Wal {
        #[command(flatten)]
        engine: EngineArgs,
    },
}

/// A region and the engine settings.
#[derive(Debug, clap::Args)]
pub(crate) struct RegionArgs {
    /// Region id as `table.region`, e.g. 1024.0.
    #[arg(long)]
    region: RegionId,
    /// Verify: every file the manifest names exists and matches its checksum.
    #[arg(long)]
    check: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

pub(crate) async fn run(command: InspectCommand) -> Result<(), String> {
    match command {
        InspectCommand::Manifest(args) => manifest(&args).await,
        InspectCommand::Sst(args) => sst(&args).await,
        InspectCommand::Wal { engine } => wal(&engine.engine_config()?).await,
    }
}

fn store(config: &EngineConfig) -> Result<Operator, String> {
    config
        .object_store_config()
        .build_read_only()
        .map_err(|e| e.to_string())
}

async fn open_manifest(store: &Operator, region: RegionId) -> Result<ManifestManager, String> {
    ManifestManager::open(store.clone(), region, ManifestConfig::default())
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("region {region} has no manifest"))
}

async fn manifest(args: &RegionArgs) -> Result<(), String> {
    let config = args.engine.engine_config()?;
    let store = store(&config)?;
    let region = args.region;
    let dir = format!("{}/", region_manifest_dir(region));
    let mut entries = store.list(&dir).await.map_err(|e| e.to_string())?;
    entries.sort_by(|a, b| a.path().cmp(b.path()));
    outln!("manifest of region {region} ({dir})");
    // Each delta's line, with its leader epoch: read the deltas first, then walk back from
    // the state's epoch (a `leader` action of epoch e was committed under epoch e - 1).
    let mut deltas: Vec<(String, Result<RegionMetaActionList, String>)> = Vec::new();
    for entry in entries.iter().filter(|e| e.path().ends_with(".json")) {
        let name = entry.name().to_string();
        match store.read(entry.path()).await {
            Ok(bytes) => deltas.push((
                name,
                RegionMetaActionList::decode(entry.path(), &bytes.to_vec())
                    .map_err(|e| e.to_string()),
            )),
            // A writer's checkpoint covered and deleted it after the listing.
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => deltas.push((
                name,
                Err("covered by a newer checkpoint (deleted while listing)".into()),
            )),
            Err(e) => return Err(e.to_string()),
        }
    }
    let manager = open_manifest(&store, region).await?;
    let mut epoch = manager.manifest().leader_epoch();
    let mut epochs = vec![0; deltas.len()];
    for (i, (_, list)) in deltas.iter().enumerate().rev() {
        epochs[i] = epoch;
        let took_over = list.as_ref().ok().and_then(|list| {
            list.actions.iter().find_map(|action| match action {
                strata_storage::RegionMetaAction::Leader { epoch, .. } => Some(*epoch),
                _ => None,
            })
        });
        if let Some(new) = took_over {
            epoch = new.saturating_sub(1);
        }
    }
    for ((name, list), epoch) in deltas.iter().zip(epochs) {
        match list {
            Ok(list) => {
                let actions: Vec<String> = list.actions.iter().map(ToString::to_string).collect();
                outln!("  {name} [epoch {epoch}]: {}", actions.join("; "));
            }
            Err(e) if e.starts_with("covered") => outln!("  {name}: {e}"),
            Err(e) => outln!("  {name}: unreadable: {e}"),
        }
    }
    for entry in entries
        .iter()
        .filter(|e| !e.path().ends_with(".json") && !e.path().ends_with('/'))
    {
        outln!(
            "  {}: {} bytes",
            entry.name(),
            entry.metadata().content_length()
        );
    }
    let m = manager.manifest();
    outln!(
        "state at version {} (leader epoch {}):",
        m.manifest_version(),
        m.leader_epoch()
    );
    outln!(
        "  schema version {}: {}",
        m.metadata().schema_version(),
        m.metadata()
            .columns()
            .iter()
            .map(|c| format!("{} {} {:?}", c.name, c.data_type, c.semantic_type))
            .collect::<Vec<_>>()
            .join(", ")
    );
    outln!("  options: {}", describe_options(m.options()));
    outln!(
        "  flushed entry id {}, flushed sequence {}, committed sequence {}, truncated entry id {:?}",
        m.flushed_entry_id(),
        m.flushed_sequence(),
        m.committed_sequence(),
        m.truncated_entry_id()
    );
    outln!(
        "  compaction window {}",
        m.compaction_window_secs().map_or_else(
            || "not chosen yet (the first flush records it)".to_string(),
            |secs| humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
        )
    );
    outln!(
        "  {} files, {} removed files recorded",
        m.files().len(),
        m.removed_files().len()
    );
    if args.check {
        check(&store, &manager).await?;
    }
    Ok(())
}

async fn sst(args: &RegionArgs) -> Result<(), String> {
    let config = args.engine.engine_config()?;
    let store = store(&config)?;
    let manager = open_manifest(&store, args.region).await?;
    let dir = region_data_dir(args.region);
    outln!("SST files of region {} ({dir}/)", args.region);
    let window = manager
        .manifest()
        .compaction_window_secs()
        .map(|secs| strata_storage::window_width(manager.manifest().metadata(), secs));
    outln!(
        "  file                                  level  window start  rows     groups  slice     bytes      time range"
    );
    let (mut rows, mut bytes) = (0, 0);
    let mut files: Vec<_> = manager.manifest().files().values().collect();
    // By window (of the newest row), then level, then time.
    files.sort_by_key(|f| {
        (
            window.map(|w| strata_storage::window_start(f.time_range.1, w)),
            f.level,
            f.time_range,
        )
    });
    for file in files {
        let start = window.map_or_else(
            || "-".to_string(),
            |w| strata_storage::window_start(file.time_range.1, w).to_string(),
        );
        // The width of the file's time slices; `-` for a file sorted by key throughout.
        let slice = file
            .time_slice
            .map_or_else(|| "-".to_string(), |width| width.to_string());
        outln!(
            "  {:<36}  {:<5}  {:<12}  {:<8} {:<7} {:<9} {:<10} {}..={}",
            file.file_id.to_string(),
            file.level,
            start,
            file.num_rows,
            file.num_row_groups,
            slice,
            file.file_size,
            file.time_range.0,
            file.time_range.1
        );
        rows += file.num_rows;
        bytes += file.file_size;
    }
    outln!(
        "  total: {} files, {rows} rows, {bytes} bytes",
        manager.manifest().files().len()
    );
    if args.check {
        check(&store, &manager).await?;
    }
    Ok(())
}

/// Every file the manifest names exists and matches its checksum.
async fn check(store: &Operator, manager: &ManifestManager) -> Result<(), String> {
    let manifest = manager.manifest();
    let dir = region_data_dir(manifest.metadata().region_id());
    let mut problems = Vec::new();
    for file in manifest.files().values() {
        let path = file.path(&dir);
        if let Err(e) = verify_sst(store, &path, file).await {
            problems.push(format!("{path}: {e}"));
        }
    }
    if problems.is_empty() {
        outln!(
            "check: ok ({} files present, checksums match)",
            manifest.files().len()
        );
        Ok(())
    } else {
        for problem in &problems {
            outln!("check: {problem}");
        }
        Err(format!("check failed: {} problem(s)", problems.len()))
    }
}

async fn wal(config: &EngineConfig) -> Result<(), String> {
    let dir: PathBuf = config.wal_dir();
    if !dir.exists() {
        return Err(format!("no WAL at {}", dir.display()));
    }
    let store = FileLogStore::open_read_only(&dir, config.wal.file_config())
        .map_err(|e| format!("{e} (run `strata repair` to see what can be salvaged)"))?;
    let report = store.recovery_report();
    outln!("WAL at {} (read-only)", dir.display());
    outln!(
        "  {} segments, {} records, {} entries",
        report.segments,
        report.records,
        report.entries
    );
    if let Some(tail) = &report.truncated {
        outln!(
            "  unfinished group: {} bytes after offset {} of {} ({}; a writer may be writing it)",
            tail.dropped_bytes,
            tail.offset,
            tail.path.display(),
            tail.reason
        );
    }
    crate::repair::print_lost(&report.lost);
    let mut segments: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| e.to_string())?
        .flatten()
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.metadata().ok()?.len())))
        .collect();
    segments.sort();
    for (name, len) in segments {
        outln!("  {name}: {len} bytes");
    }
    for region in &report.regions {
        let Some(last) = region.last_entry_id else {
            continue;
        };
        let mut stream = store.read(region.region_id, 0).map_err(|e| e.to_string())?;
        let (mut entries, mut bytes, mut first) = (0u64, 0u64, None);
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            for entry in chunk.map_err(|e| e.to_string())? {
                first.get_or_insert(entry.entry_id);
                entries += 1;
                bytes += entry.data.len() as u64;
            }
        }
        let region_id = RegionId::from_u64(region.region_id);
        match first {
            Some(first) => outln!(
                "  region {region_id}: {entries} live entries ({bytes} bytes), ids {first}..={last}"
            ),
            None => outln!("  region {region_id}: no live entries (all flushed, up to {last})"),
        }
    }
    Ok(())
}

/// Region options, as `key value` pairs (defaults shown as `default`).
fn describe_options(options: &strata_engine::RegionOptions) -> String {
    let duration = |d: Option<std::time::Duration>, none: &str| {
        d.map_or_else(
            || none.to_string(),
            |d| humantime::format_duration(d).to_string(),
        )
    };
    format!(
        "ttl {}, compaction_window {}, append_mode {}, auto_flush_interval {}, write_buffer_size {}",
        duration(options.ttl, "none"),
        duration(options.compaction_window, "inferred"),
        options.append_mode,
        duration(options.auto_flush_interval, "default"),
        options
            .write_buffer_size
            .map_or_else(|| "default".to_string(), |b| b.to_string())
    )
}

//! [`ObjectStoreConfig`]: where region files live, as serde data that builds an OpenDAL
//! `Operator`; and the region path layout, derived from ids only.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use opendal::Operator;
use opendal::layers::{RetryEvent, RetryInterceptor, RetryLayer};
use serde::{Deserialize, Serialize};
use snafu::{ResultExt, Snafu, ensure};
use strata_request::RegionId;

use crate::durable_fs::DurableFsLayer;

/// Where region files are stored: the engine config's `[object_store]` table.
///
/// ```toml
/// [object_store]
/// type = "fs"              # the default
/// root = "./strata-data"
///
/// # or
/// [object_store]
/// type = "s3"
/// bucket = "metrics"
/// root = "strata"
/// endpoint = "http://127.0.0.1:9000"
/// region = "us-east-1"
/// # access_key_id / secret_access_key: from here, or from AWS_ACCESS_KEY_ID /
/// # AWS_SECRET_ACCESS_KEY in the environment when left out.
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum ObjectStoreConfig {
    /// A local directory.
    Fs {
        /// The data directory (created if missing).
        root: PathBuf,
    },
    /// In memory; for tests.
    Memory,
    /// An S3-compatible object store.
    S3(S3Config),
}

impl Default for ObjectStoreConfig {
    fn default() -> Self {
        ObjectStoreConfig::Fs {
            root: PathBuf::from("./strata-data"),
        }
    }
}

/// Settings of an S3-compatible store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Prefix inside the bucket under which all regions live.
    #[serde(default)]
    pub root: String,
    /// Endpoint URL; AWS when left out.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Region name.
    #[serde(default)]
    pub region: Option<String>,
    /// Access key id; from the environment when left out.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Secret key; from the environment when left out. Never printed or serialized.
    #[serde(default, skip_serializing)]
    pub secret_access_key: Option<Secret>,
}

impl S3Config {
    /// The bucket `bucket` at its root, on AWS (region and credentials from the
    /// environment) unless the setters say otherwise.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            root: String::new(),
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
        }
    }

    /// Under this prefix of the bucket.
    pub fn root(mut self, root: impl Into<String>) -> Self {
        self.root = root.into();
        self
    }

    /// At this endpoint (any S3-compatible server).
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// In this region.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// With these credentials instead of the environment's.
    pub fn credentials(mut self, access_key_id: impl Into<String>, secret: Secret) -> Self {
        self.access_key_id = Some(access_key_id.into());
        self.secret_access_key = Some(secret);
        self
    }
}

impl S3Config {
    /// How many times the S3 store retries a request that failed with an error OpenDAL
    /// marks temporary (HTTP 500, 502, 503, 504, 429, `SlowDown`, a reset connection, a
    /// response cut off) before the error reaches its caller: up to `1 + MAX_RETRIES`
    /// attempts.
    ///
    /// A fixed budget, not a setting: a flush or compaction that still fails is retried by
    /// the engine itself (the flush backoff), so a longer per-request budget would only
    /// hold a region's manifest lock longer.
    pub const MAX_RETRIES: usize = 5;

    /// The first backoff; each later one doubles, up to [`RETRY_MAX_DELAY`], and gets a
    /// random jitter of up to its own length on top (so engines backing off from one
    /// overloaded bucket do not come back in step). With [`MAX_RETRIES`] = 5 a request
    /// gives up after 3.1–6.2 s of backoff.
    ///
    /// [`RETRY_MAX_DELAY`]: Self::RETRY_MAX_DELAY
    /// [`MAX_RETRIES`]: Self::MAX_RETRIES
    pub const RETRY_MIN_DELAY: Duration = Duration::from_millis(100);

    /// The longest backoff between two attempts, before jitter.
    pub const RETRY_MAX_DELAY: Duration = Duration::from_secs(3);
}

/// A secret string: `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; only for handing to the client that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Errors building an object store.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum ObjectStoreError {
    /// A path setting could escape its root or is not a valid path.
    #[snafu(display("invalid {setting} {value:?}: {reason}"))]
    InvalidPath {
        /// Which setting.
        setting: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A required setting is empty.
    #[snafu(display("{setting} must not be empty"))]
    Missing {
        /// Which setting.
        setting: &'static str,
    },
    /// A read-only store was asked for a local directory that does not exist.
    #[snafu(display("no data directory at {}", root.display()))]
    NoDirectory {
        /// The directory.
        root: PathBuf,
    },
    /// OpenDAL refused the configuration.
    #[snafu(display("cannot build the {kind} object store: {source}"))]
    Build {
        /// `fs`, `memory` or `s3`.
        kind: &'static str,
        /// OpenDAL's error.
        #[snafu(source(from(opendal::Error, Box::new)))]
        source: Box<opendal::Error>,
    },
}

impl ObjectStoreError {
    /// The coarse class of the error: a bad setting or a missing directory, which only a
    /// changed configuration fixes.
    pub fn kind(&self) -> strata_base::ErrorKind {
        strata_base::ErrorKind::InvalidRequest
    }

    /// One value of every variant, for tests that walk every error (strata-engine's
    /// checks that its public error keeps each one's kind and retryability). Adding a
    /// variant fails to compile here until it is numbered, and then this panics until it
    /// has a sample.
    #[cfg(any(test, feature = "testing"))]
    #[doc(hidden)]
    pub fn every_variant() -> Vec<Self> {
        let samples = vec![
            ObjectStoreError::InvalidPath {
                setting: "storage.root",
                value: "../x".into(),
                reason: "escapes the root",
            },
            ObjectStoreError::Missing {
                setting: "storage.bucket",
            },
            ObjectStoreError::NoDirectory {
                root: PathBuf::from("/nowhere"),
            },
            ObjectStoreError::Build {
                kind: "s3",
                source: Box::new(opendal::Error::new(
                    opendal::ErrorKind::ConfigInvalid,
                    "no region",
                )),
            },
        ];
        // No wildcard: a new variant must be numbered (and sampled) before this compiles.
        let variant = |error: &ObjectStoreError| match error {
            ObjectStoreError::InvalidPath { .. } => 0,
            ObjectStoreError::Missing { .. } => 1,
            ObjectStoreError::NoDirectory { .. } => 2,
            ObjectStoreError::Build { .. } => 3,
        };
        let mut sampled = [false; 4];
        samples.iter().for_each(|e| sampled[variant(e)] = true);
        assert!(!sampled.contains(&false), "unsampled variants: {sampled:?}");
        samples
    }
}

impl ObjectStoreConfig {
    /// Checks the settings without building anything.
    pub fn validate(&self) -> Result<(), ObjectStoreError> {
        match self {
            ObjectStoreConfig::Fs { root } => {
                let text = root.to_string_lossy();
                ensure!(
                    !text.is_empty(),
                    MissingSnafu {
                        setting: "storage.root"
                    }
                );
                ensure!(
                    !text.contains('\0'),
                    InvalidPathSnafu {
                        setting: "storage.root",
                        value: text,
                        reason: "contains a NUL byte",
                    }
                );
                Ok(())
            }
            ObjectStoreConfig::Memory => Ok(()),
            ObjectStoreConfig::S3(s3) => {
                ensure!(
                    !s3.bucket.is_empty(),
                    MissingSnafu {
                        setting: "storage.bucket"
                    }
                );
                validate_component("storage.bucket", &s3.bucket)?;
                validate_relative("storage.root", &s3.root)
            }
        }
    }

    /// Builds an OpenDAL operator for reading only: a local directory must already exist
    /// (nothing is created, not even the temporary directory writes go through); other
    /// stores are built as by [`build`](Self::build). Readers never write through it.
    pub fn build_read_only(&self) -> Result<Operator, ObjectStoreError> {
        self.validate()?;
        match self {
            ObjectStoreConfig::Fs { root } => {
                ensure!(root.is_dir(), NoDirectorySnafu { root: root.clone() });
                let builder = opendal::services::Fs::default().root(&root.to_string_lossy());
                Ok(Operator::new(builder).context(BuildSnafu { kind: "fs" })?)
            }
            _ => self.build(),
        }
    }

    /// Builds the OpenDAL operator. An S3 store retries requests that fail with a
    /// temporary error ([`S3Config::MAX_RETRIES`] times, exponential backoff with jitter);
    /// local-file and memory stores do not retry.
    pub fn build(&self) -> Result<Operator, ObjectStoreError> {
        self.validate()?;
        Ok(match self {
            ObjectStoreConfig::Fs { root } => {
                // Write through a temporary file and rename, so a crash never leaves a
                // half-written object (manifest deltas and checkpoints rely on this).
                let atomic = root.join(".tmp");
                let builder = opendal::services::Fs::default()
                    .root(&root.to_string_lossy())
                    .atomic_write_dir(&atomic.to_string_lossy());
                let store = Operator::new(builder).context(BuildSnafu { kind: "fs" })?;
                // OpenDAL syncs files but never directories: make every write and delete
                // durable, names included, before it returns (power loss, not only kills).
                let root = root.canonicalize().unwrap_or_else(|_| root.clone());
                store.layer(DurableFsLayer::new(root))
            }
            ObjectStoreConfig::Memory => Operator::new(opendal::services::Memory::default())
                .context(BuildSnafu { kind: "memory" })?,
            ObjectStoreConfig::S3(s3) => {
                // S3 speaks HTTP: install OpenDAL's default (reqwest + rustls) transport.
                // Idempotent; done here rather than by a process constructor.
                opendal::install_default();
                let mut builder = opendal::services::S3::default()
                    .bucket(&s3.bucket)
                    .root(&format!("/{}", s3.root.trim_matches('/')));
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder.endpoint(endpoint);
                }
                if let Some(region) = &s3.region {
                    builder = builder.region(region);
                }
                if let Some(key) = &s3.access_key_id {
                    builder = builder.access_key_id(key);
                }
                if let Some(secret) = &s3.secret_access_key {
                    builder = builder.secret_access_key(secret.expose());
                }
                Operator::new(builder)
                    .context(BuildSnafu { kind: "s3" })?
                    .layer(s3_retry_layer())
            }
        })
    }
}

/// OpenDAL's retry layer as the S3 store uses it: [`S3Config::MAX_RETRIES`] retries of
/// requests that failed with a temporary error, with exponential backoff from
/// [`S3Config::RETRY_MIN_DELAY`] to [`S3Config::RETRY_MAX_DELAY`] and jitter; each retry is
/// logged.
///
/// Only S3 gets it: local-file and memory errors are not transient. Every request Strata
/// makes is safe to repeat — plain puts overwrite with the same bytes, deletes of a missing
/// object succeed — except a conditional create (`if_not_exists`: manifest deltas and
/// checkpoints) whose first attempt landed but whose answer was lost: the retry is answered
/// 412, and the manifest reads the object back and takes it as its own when it holds
/// exactly its bytes (`create_bytes` in `manifest/manager.rs`).
fn s3_retry_layer() -> RetryLayer<LogRetry> {
    RetryLayer::new()
        .with_max_times(S3Config::MAX_RETRIES)
        .with_factor(2.0)
        .with_min_delay(S3Config::RETRY_MIN_DELAY)
        .with_max_delay(S3Config::RETRY_MAX_DELAY)
        .with_jitter()
        .with_notify(LogRetry)
}

/// Logs each retry through `tracing` (OpenDAL's default logs through the `log` crate).
struct LogRetry;

impl RetryInterceptor for LogRetry {
    fn intercept(&self, event: RetryEvent<'_>) {
        tracing::warn!(
            operation = ?event.op,
            attempt = event.attempt,
            retry_after = ?event.retry_after,
            error = %event.err,
            "object store: a request failed with a temporary error; retrying"
        );
    }
}

/// A relative path under a root: no absolute path, no `..`, no NUL, no empty segments
/// other than leading/trailing slashes.
fn validate_relative(setting: &'static str, value: &str) -> Result<(), ObjectStoreError> {
    ensure!(
        !value.contains('\0'),
        InvalidPathSnafu {
            setting,
            value,
            reason: "contains a NUL byte"
        }
    );
    for segment in value.trim_matches('/').split('/') {
        if value.trim_matches('/').is_empty() {
            break;
        }
        validate_component(setting, segment)?;
    }
    Ok(())
}

/// One path segment: not empty, not `.` or `..`, no `/`, `\` or NUL.
fn validate_component(setting: &'static str, value: &str) -> Result<(), ObjectStoreError> {
    let reason = if value.is_empty() {
        Some("has an empty path segment")
    } else if value == "." || value == ".." {
        Some("has a `.` or `..` segment, which could escape the root")
    } else if value.contains(['/', '\\']) {
        Some("contains a path separator")
    } else if value.contains('\0') {
        Some("contains a NUL byte")
    } else {
        None
    };
    match reason {
        Some(reason) => InvalidPathSnafu {
            setting,
            value,
            reason,
        }
        .fail(),
        None => Ok(()),
    }
}

/// The directory of region `region_id`: `regions/{table_id}/{table_id}_{region:010}`.
/// Made of ids only, so no input can steer it outside the store's root.
pub fn region_dir(region_id: RegionId) -> String {
    format!(
        "regions/{}/{}_{:010}",
        region_id.table_id(),
        region_id.table_id(),
        region_id.region_number()
    )
}

/// The regions that have a directory in `store` (whatever state their manifest is in),
/// ascending: `regions/{table}/{table}_{region:010}/`.
pub async fn list_regions(store: &Operator) -> Result<Vec<RegionId>, opendal::Error> {
    let mut regions = Vec::new();
    let tables = match store.list("regions/").await {
        Ok(tables) => tables,
        Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(regions),
        Err(e) => return Err(e),
    };
    for table in tables {
        let Some(table_id) = table
            .name()
            .trim_end_matches('/')
            .parse::<u32>()
            .ok()
            .filter(|_| table.metadata().is_dir())
        else {
            continue;
        };
        for region in store.list(&format!("regions/{table_id}/")).await? {
            let name = region.name().trim_end_matches('/');
            let number = name
                .strip_prefix(&format!("{table_id}_"))
                .filter(|n| n.len() == 10)
                .and_then(|n| n.parse::<u32>().ok());
            if let Some(number) = number
                && region.metadata().is_dir()
            {
                regions.push(RegionId::new(table_id, number));
            }
        }
    }
    regions.sort();
    regions.dedup();
    Ok(regions)
}

/// Where region `region_id`'s SST files live.
pub fn region_data_dir(region_id: RegionId) -> String {
    format!("{}/data", region_dir(region_id))
}

/// Where region `region_id`'s manifest lives.
pub fn region_manifest_dir(region_id: RegionId) -> String {
    format!("{}/manifest", region_dir(region_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ObjectStoreConfig, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[tokio::test]
    async fn regions_are_listed_from_their_directories_and_nothing_else() {
        let store = ObjectStoreConfig::Memory.build().unwrap();
        assert!(list_regions(&store).await.unwrap().is_empty());
        for region in [
            RegionId::new(1024, 3),
            RegionId::new(7, 0),
            RegionId::new(1024, 0),
        ] {
            store
                .write(&format!("{}/manifest/x.json", region_dir(region)), "{}")
                .await
                .unwrap();
        }
        store.write("regions/1024/stray.txt", "x").await.unwrap();
        store
            .write("regions/abc/1_0000000001/x", "x")
            .await
            .unwrap();
        assert_eq!(
            list_regions(&store).await.unwrap(),
            vec![
                RegionId::new(7, 0),
                RegionId::new(1024, 0),
                RegionId::new(1024, 3)
            ]
        );
    }

    #[test]
    fn a_read_only_fs_store_needs_an_existing_directory_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let config = ObjectStoreConfig::Fs {
            root: missing.clone(),
        };
        let error = config.build_read_only().unwrap_err();
        assert!(error.to_string().contains("no data directory"), "{error}");
        assert!(!missing.exists());
        let config = ObjectStoreConfig::Fs {
            root: dir.path().into(),
        };
        config.build_read_only().unwrap();
        assert!(!dir.path().join(".tmp").exists(), "no temporary directory");
    }

    #[test]
    fn the_default_is_a_local_data_directory() {
        assert_eq!(
            ObjectStoreConfig::default(),
            ObjectStoreConfig::Fs {
                root: "./strata-data".into()
            }
        );
        assert_eq!(
            parse(r#"{"type": "memory"}"#).unwrap(),
            ObjectStoreConfig::Memory
        );
        assert!(
            parse(r#"{"type": "fs", "root": "/x", "rot": 1}"#).is_err(),
            "unknown keys are refused"
        );
    }

    #[tokio::test]
    async fn fs_and_memory_stores_build_and_round_trip_bytes() {
        let dir = tempfile::tempdir().unwrap();
        for config in [
            ObjectStoreConfig::Fs {
                root: dir.path().join("data"),
            },
            ObjectStoreConfig::Memory,
        ] {
            let store = config.build().unwrap();
            let path = format!("{}/probe", region_data_dir(RegionId::new(7, 3)));
            store.write(&path, b"hello".to_vec()).await.unwrap();
            assert_eq!(store.read(&path).await.unwrap().to_vec(), b"hello");
        }
        assert!(
            dir.path()
                .join("data/regions/7/7_0000000003/data/probe")
                .exists()
        );
    }

    #[test]
    fn secrets_never_appear_in_debug_or_serialized_output() {
        let config = parse(
            r#"{"type": "s3", "bucket": "b", "root": "r", "region": "us-east-1", "endpoint": "http://127.0.0.1:1", "access_key_id": "AKID", "secret_access_key": "TOPSECRET"}"#,
        )
        .unwrap();
        let ObjectStoreConfig::S3(s3) = &config else {
            panic!("not s3")
        };
        assert_eq!(s3.secret_access_key.as_ref().unwrap().expose(), "TOPSECRET");
        assert!(!format!("{config:?}").contains("TOPSECRET"));
        assert!(format!("{config:?}").contains("<redacted>"));
        assert!(
            !serde_json::to_string(&config)
                .unwrap()
                .contains("TOPSECRET")
        );
        let store = config.build().unwrap();
        assert!(!format!("{store:?}").contains("TOPSECRET"));
        // Without a region (and none in the environment) building fails; the error must
        // not carry the secret either.
        let ObjectStoreConfig::S3(mut no_region) = config else {
            unreachable!()
        };
        no_region.region = None;
        if let Err(err) = ObjectStoreConfig::S3(no_region).build() {
            assert!(!format!("{err} {err:?}").contains("TOPSECRET"), "{err}");
        }
    }

    #[test]
    fn paths_that_could_escape_the_root_are_refused() {
        let s3 = |bucket: &str, root: &str| {
            ObjectStoreConfig::S3(S3Config {
                bucket: bucket.into(),
                root: root.into(),
                endpoint: None,
                region: None,
                access_key_id: None,
                secret_access_key: None,
            })
        };
        for (bucket, root) in [
            ("b", "../x"),
            ("b", "a/../../x"),
            ("b", "a/./b"),
            ("b", "a//b"),
            ("b", "a\0b"),
            ("../b", "r"),
            ("a/b", "r"),
            ("", "r"),
        ] {
            let err = s3(bucket, root).validate().unwrap_err().to_string();
            assert!(err.contains("storage."), "{bucket:?}/{root:?}: {err}");
        }
        for (bucket, root) in [("b", ""), ("b", "/"), ("b", "a/b"), ("b", "/a/b/")] {
            s3(bucket, root).validate().unwrap();
        }
        assert!(
            ObjectStoreConfig::Fs {
                root: "a\0b".into()
            }
            .validate()
            .is_err()
        );
        assert!(
            ObjectStoreConfig::Fs { root: "".into() }
                .validate()
                .is_err()
        );
    }

    #[test]
    fn region_paths_come_from_ids_only() {
        let id = RegionId::new(1024, 5);
        assert_eq!(region_dir(id), "regions/1024/1024_0000000005");
        assert_eq!(region_data_dir(id), "regions/1024/1024_0000000005/data");
        assert_eq!(
            region_manifest_dir(id),
            "regions/1024/1024_0000000005/manifest"
        );
    }
}

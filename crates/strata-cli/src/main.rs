//! `strata`: the command-line front end of the Strata engine.
//!
//! - `strata ingest` — the main job: ingest a TSBS `cpu` data set into the embedded engine
//!   (local files, file WAL) and print a summary; re-running continues the series.
//! - `strata scan` — rows or a row count of one region (read-only: safe while an ingest
//!   writes the same directory).
//! - `strata inspect manifest|sst|wal` — what is on disk (read-only); `--check` verifies
//!   checksums and that every file a manifest names exists.
//! - `strata repair` — what a damaged WAL still holds; with `--yes`, salvage it, replay and
//!   flush every region, and leave a WAL that opens cleanly.
//! - `strata alter --region R --ttl 7d|none` — change a region's time to live (read-write:
//!   refused while an ingest holds the directory).
//! - `strata compact --region R` — compact a region now (read-write), printing its files
//!   and bytes before and after.
//! - `strata config default|check FILE` — the commented default configuration, or a check
//!   of a file that names the bad key.
//!
//! Errors are printed as one line and give exit code 1; bad arguments give exit code 2.

#![allow(clippy::print_stdout, clippy::print_stderr)]

#[macro_use]
mod stdout;

mod alter;
mod compact;
mod ingest;
mod inspect;
mod metrics_server;
mod repair;
mod scan;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use strata_engine::{
    EXAMPLE_CONFIG, EngineConfig, ErrorKind, ObjectStoreConfig, S3Config, SyncPolicy,
};

/// Strata: an embeddable LSM write engine for time-series data.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Ingest a TSBS cpu data set (the main job); re-running continues the series.
    Ingest(ingest::IngestArgs),
    /// Print a region's rows as CSV, or count them.
    Scan(scan::ScanArgs),
    /// Dump what is on disk (manifest, SST files, WAL); `--check` verifies it.
    Inspect {
        #[command(subcommand)]
        command: inspect::InspectCommand,
    },
    /// Show what a damaged WAL still holds; with --yes, salvage it and flush every region.
    Repair(repair::RepairArgs),
    /// Change a region's options (its TTL); needs the directory, so not during an ingest.
    Alter(alter::AlterArgs),
    /// Compact a region now: one file per time window, expired data dropped; needs the
    /// directory, so not during an ingest (an ingest compacts as it goes).
    Compact(compact::CompactArgs),
    /// Print the default configuration or check a configuration file.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the commented default configuration.
    Default,
    /// Check a configuration file; the error names the bad key.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
}

/// Engine settings shared by the commands that open the engine.
#[derive(Debug, clap::Args)]
struct EngineArgs {
    /// Configuration file (TOML); flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (WAL, SST files, manifests) [default: the config's data_home, else
    /// ./strata-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// WAL sync: always, never, or an interval such as 100ms.
    #[arg(long)]
    wal_sync: Option<SyncPolicy>,
    /// Keep SST files and manifests in this S3 bucket instead of the data directory
    /// (credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY).
    #[arg(long)]
    s3_bucket: Option<String>,
    /// S3 endpoint URL (any S3-compatible server); AWS when left out.
    #[arg(long, requires = "s3_bucket")]
    s3_endpoint: Option<String>,
    /// S3 region name.
    #[arg(long, requires = "s3_bucket")]
    s3_region: Option<String>,
    /// Prefix inside the bucket.
    #[arg(long, requires = "s3_bucket", default_value = "")]
    s3_root: String,
}

impl EngineArgs {
    /// The flags another command needs to open the same engine, as typed here (the
    /// configuration file and S3 settings; the data directory is added by the caller).
    fn repeated_flags(&self) -> String {
        let mut flags = String::new();
        if let Some(config) = &self.config {
            flags.push_str(&format!(" --config {}", config.display()));
        }
        if let Some(bucket) = &self.s3_bucket {
            flags.push_str(&format!(" --s3-bucket {bucket}"));
            if let Some(endpoint) = &self.s3_endpoint {
                flags.push_str(&format!(" --s3-endpoint {endpoint}"));
            }
            if let Some(region) = &self.s3_region {
                flags.push_str(&format!(" --s3-region {region}"));
            }
            if !self.s3_root.is_empty() {
                flags.push_str(&format!(" --s3-root {}", self.s3_root));
            }
        }
        flags
    }

    fn engine_config(&self) -> Result<EngineConfig, String> {
        let mut config = match &self.config {
            Some(path) => EngineConfig::from_file(path).map_err(|e| e.to_string())?,
            None => EngineConfig::default(),
        };
        if let Some(dir) = &self.data_dir {
            config.data_home = dir.clone();
        }
        if let Some(sync) = self.wal_sync {
            config.wal.sync = sync;
        }
        if let Some(bucket) = &self.s3_bucket {
            let mut s3 = S3Config::new(bucket.clone()).root(self.s3_root.clone());
            s3.endpoint = self.s3_endpoint.clone();
            s3.region = self.s3_region.clone();
            config.object_store = Some(ObjectStoreConfig::S3(s3));
        }
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Command::Scan(args) = &cli.command
        && let Some(threads) = args.threads()
    {
        builder.worker_threads(threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    let result = match cli.command {
        Command::Ingest(args) => runtime.block_on(ingest::run(args)),
        Command::Scan(args) => runtime.block_on(scan::run(args)),
        Command::Inspect { command } => runtime.block_on(inspect::run(command)),
        Command::Repair(args) => runtime.block_on(repair::run(args)),
        Command::Alter(args) => runtime.block_on(alter::run(args)),
        Command::Compact(args) => runtime.block_on(compact::run(args)),
        Command::Config { command } => config(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

fn config(command: ConfigCommand) -> Result<(), String> {
    match command {
        ConfigCommand::Default => {
            crate::stdout::line(format_args!("{}", EXAMPLE_CONFIG.trim_end()));
            Ok(())
        }
        ConfigCommand::Check { file } => {
            EngineConfig::from_file(&file).map_err(|e| e.to_string())?;
            outln!("{}: ok", file.display());
            Ok(())
        }
    }
}

/// The message for an engine or region that could not be opened; damage points at
/// `strata repair`.
fn open_error(error: &strata_engine::Error, config: &EngineConfig) -> String {
    match error.kind() {
        ErrorKind::Corruption => format!(
            "{error} (run `strata repair --data-dir {}` to see what can be salvaged)",
            config.data_home.display()
        ),
        _ => error.to_string(),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("strata: error: {message}");
    ExitCode::FAILURE
}

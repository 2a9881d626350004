//! `strata repair`: a way back from a damaged WAL.
//!
//! Without `--yes` it only looks (read-only, no lock, nothing changed): it salvages the log
//! in memory and prints what would be lost and what kept. With `--yes`, under the data
//! directory's lock, it opens the WAL with salvage recovery (damaged ranges skipped, every
//! record that verifies kept, a new segment started), discards the entries of regions that
//! have no manifest (no engine can replay them), opens every other region that has live
//! entries — replaying what was kept — and flushes it, so the damaged segments are
//! reclaimed; then it checks that the log opens under strict recovery.

use std::collections::BTreeSet;
use std::sync::Arc;

use strata_engine::{
    DataDirLock, EngineBuilder, EngineConfig, LostRange, RecoveryMode, RecoveryReport, RegionId,
    WalProvider,
};
use strata_storage::list_regions;
use strata_wal::{FileLogStore, LogStore};

use crate::EngineArgs;

/// Arguments of `strata repair`.
#[derive(Debug, clap::Args)]
pub(crate) struct RepairArgs {
    /// Change the directory: salvage the WAL, replay and flush every region, leave a WAL
    /// that opens cleanly. Without it, only report what would be lost and kept.
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

pub(crate) async fn run(args: RepairArgs) -> Result<(), String> {
    let mut config = args.engine.engine_config()?;
    if config.wal.provider != WalProvider::File {
        return Err("the configured WAL provider keeps no log on disk: nothing to repair".into());
    }
    config.wal.recovery = RecoveryMode::Salvage;
    let dir = config.wal_dir();
    if !dir.is_dir() {
        return Err(format!("no WAL at {}", dir.display()));
    }
    if !args.yes {
        return dry_run(&config).await;
    }
    repair(config).await
}

/// Reads the log read-only under salvage and says what a repair would do.
async fn dry_run(config: &EngineConfig) -> Result<(), String> {
    let dir = config.wal_dir();
    let wal =
        FileLogStore::open_read_only(&dir, config.wal.file_config()).map_err(|e| e.to_string())?;
    let report = wal.recovery_report();
    outln!(
        "strata repair: WAL at {} (read-only look; nothing is changed)",
        dir.display()
    );
    print_report(report);
    if report.is_clean() {
        outln!("the WAL is intact: nothing to repair");
        return Ok(());
    }
    let with_manifest = regions_with_manifest(config).await?;
    for region in live_regions(report) {
        if with_manifest.contains(&region) {
            outln!("  would replay region {region} and flush it");
        } else {
            outln!(
                "  would discard region {region}'s WAL entries: it has no manifest, so no engine can replay them"
            );
        }
    }
    outln!(
        "run again with --yes to salvage: every record that verifies is kept, the damaged ranges above are lost, and the WAL is left so that it opens cleanly"
    );
    Ok(())
}

/// Salvages under the lock, replays and flushes every region, checks the result.
async fn repair(config: EngineConfig) -> Result<(), String> {
    let dir = config.wal_dir();
    let lock = DataDirLock::acquire(&config).map_err(|e| e.to_string())?;
    let file_config = config.wal.file_config();
    let wal = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || FileLogStore::open(dir, file_config, None))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
    };
    let report = wal.recovery_report().clone();
    outln!("strata repair: WAL at {}", dir.display());
    print_report(&report);
    let with_manifest = regions_with_manifest(&config).await?;
    let (mut replay, mut discarded) = (Vec::new(), 0);
    for region in live_regions(&report) {
        if with_manifest.contains(&region) {
            replay.push(region);
            continue;
        }
        wal.drop_region(region.as_u64())
            .await
            .map_err(|e| format!("discard region {region}'s WAL entries: {e}"))?;
        outln!(
            "  region {region}: no manifest, so no engine can replay its WAL entries; discarded"
        );
        discarded += 1;
    }
    let engine = EngineBuilder::new(config.clone())
        .lock(lock)
        .log_store(Arc::new(wal))
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let mut failed = Vec::new();
    for region in &replay {
        let result = async {
            engine.open(*region).await?;
            engine.flush(*region).await?;
            engine.region_stats(*region)
        }
        .await;
        match result {
            Ok(stats) => outln!(
                "  region {region}: replayed and flushed ({} SST files, {} rows in files)",
                stats.num_files,
                stats.file_rows
            ),
            Err(e) => {
                outln!("  region {region}: {e}");
                failed.push(*region);
            }
        }
    }
    engine.stop().await.map_err(|e| e.to_string())?;
    drop(engine);
    if !failed.is_empty() {
        return Err(format!(
            "{} region(s) could not be replayed and flushed; their entries stay in the WAL",
            failed.len()
        ));
    }
    let mut strict = config.wal.file_config();
    strict.recovery = RecoveryMode::Strict;
    let check = FileLogStore::open_read_only(&dir, strict)
        .map_err(|e| format!("the repaired WAL still does not open under strict recovery: {e}"))?;
    outln!(
        "strata repair: done — {} region(s) replayed and flushed, {discarded} discarded, {} damaged range(s) lost; the WAL opens under strict recovery ({} segment(s))",
        replay.len(),
        report.lost.len(),
        check.recovery_report().segments
    );
    Ok(())
}

/// The regions that have a directory (a manifest) in the object store.
async fn regions_with_manifest(config: &EngineConfig) -> Result<BTreeSet<RegionId>, String> {
    let store = config
        .object_store_config()
        .build_read_only()
        .map_err(|e| e.to_string())?;
    Ok(list_regions(&store)
        .await
        .map_err(|e| format!("cannot list the regions: {e}"))?
        .into_iter()
        .collect())
}

/// Regions with live entries in the log.
fn live_regions(report: &RecoveryReport) -> Vec<RegionId> {
    report
        .regions
        .iter()
        .filter(|r| r.live_records > 0)
        .map(|r| RegionId::from_u64(r.region_id))
        .collect()
}

fn print_report(report: &RecoveryReport) {
    outln!(
        "  read {} segments, {} records, {} entries",
        report.segments,
        report.records,
        report.entries
    );
    print_lost(&report.lost);
    if let Some(tail) = &report.truncated {
        outln!(
            "  torn tail: {} bytes after offset {} of {} ({}){}",
            tail.dropped_bytes,
            tail.offset,
            tail.path.display(),
            tail.reason,
            if tail.cut { "; cut off" } else { "" }
        );
    }
    for region in &report.regions {
        if region.live_records == 0 {
            continue;
        }
        outln!(
            "  kept: region {}: entries up to {} ({} records{})",
            RegionId::from_u64(region.region_id),
            region.last_entry_id.map_or("-".into(), |id| id.to_string()),
            region.live_records,
            region
                .obsolete_entry_id
                .map_or(String::new(), |id| format!(", flushed through {id}"))
        );
    }
}

/// Prints each damaged range and the entries it may have held.
pub(crate) fn print_lost(lost: &[LostRange]) {
    for range in lost {
        outln!(
            "  lost: {} bytes {}..{} ({})",
            range.path.display(),
            range.start,
            range.end,
            range.reason
        );
        let held: Vec<String> = range
            .regions
            .iter()
            .map(|e| format!("region {} {e}", RegionId::from_u64(e.region_id)))
            .collect();
        if !held.is_empty() {
            outln!("        may have held: {}", held.join(", "));
        }
    }
}

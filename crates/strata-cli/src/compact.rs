//! `strata compact`: compact one region now and say what it did.

use strata_engine::{Clock, Engine, EngineBuilder, RegionId};

use crate::EngineArgs;

/// Arguments of `strata compact`.
#[derive(Debug, clap::Args)]
pub(crate) struct CompactArgs {
    /// Region id as `table.region`, e.g. 1024.0.
    #[arg(long)]
    region: RegionId,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Opens the engine read-write (refused while an ingest holds the directory), compacts
/// the region — every time window merged into one run, files past the TTL dropped — and
/// prints what the compaction did: files, rows and bytes removed and written, in total
/// and per time window.
pub(crate) async fn run(args: CompactArgs) -> Result<(), String> {
    let config = args.engine.engine_config()?;
    let engine = EngineBuilder::new(config.clone())
        .build()
        .await
        .map_err(|e| crate::open_error(&e, &config))?;
    let result = compact(&engine, args.region).await;
    // Stopping waits for the removed files' deletions that are due.
    engine.stop().await.map_err(|e| e.to_string())?;
    result
}

async fn compact(engine: &Engine, region: RegionId) -> Result<(), String> {
    engine
        .open(region)
        .await
        .map_err(|e| crate::open_error(&e, engine.config()))?;
    let clock = strata_engine::SystemClock;
    let started = clock.now();
    let stats = engine.compact(region).await.map_err(|e| e.to_string())?;
    let seconds = clock.elapsed(started).as_secs_f64();
    if stats.windows.is_empty() {
        outln!("region {region}: nothing to compact ({seconds:.1} s)");
    } else {
        outln!(
            "region {region}: {} -> {}, {} -> {} rows, {} -> {} bytes ({seconds:.1} s)",
            plural(stats.files_removed),
            plural(stats.files_added),
            stats.rows_read,
            stats.rows_written,
            stats.bytes_read,
            stats.bytes_written,
        );
        if stats.expired_files > 0 {
            outln!(
                "  {} past the TTL dropped whole",
                plural(stats.expired_files)
            );
        }
        outln!("  window start (ms)   files before -> after   rows before -> after");
        for window in &stats.windows {
            outln!(
                "  {:<19} {:>12} -> {:<5}   {:>11} -> {}",
                window.window_start,
                window.before.files,
                window.after.files,
                window.before.rows,
                window.after.rows
            );
        }
    }
    let window = engine
        .compaction_window(region)
        .map_err(|e| e.to_string())?
        .map_or_else(
            || "none yet".to_string(),
            |w| humantime::format_duration(w).to_string(),
        );
    outln!(
        "compaction window {window}; removed files are deleted after removed_file_lingering ({})",
        humantime::format_duration(engine.config().removed_file_lingering)
    );
    Ok(())
}

fn plural(files: u64) -> String {
    if files == 1 {
        "1 file".into()
    } else {
        format!("{files} files")
    }
}

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
/// prints its files and bytes before and after.
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

/// Files and bytes of the region's SSTs.
fn size(engine: &Engine, region: RegionId) -> Result<(usize, u64, u64), String> {
    let files = engine.region_files(region).map_err(|e| e.to_string())?;
    Ok((
        files.len(),
        files.iter().map(|f| f.file_size).sum(),
        files.iter().map(|f| f.num_rows).sum(),
    ))
}

async fn compact(engine: &Engine, region: RegionId) -> Result<(), String> {
    engine
        .open(region)
        .await
        .map_err(|e| crate::open_error(&e, engine.config()))?;
    let (files, bytes, rows) = size(engine, region)?;
    outln!(
        "region {region}: {}, {bytes} bytes, {rows} rows before",
        plural(files)
    );
    let clock = strata_engine::SystemClock;
    let started = clock.now();
    engine.compact(region).await.map_err(|e| e.to_string())?;
    let (after_files, after_bytes, after_rows) = size(engine, region)?;
    outln!(
        "region {region}: {}, {after_bytes} bytes, {after_rows} rows after ({:.1} s)",
        plural(after_files),
        clock.elapsed(started).as_secs_f64()
    );
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

fn plural(files: usize) -> String {
    if files == 1 {
        "1 file".into()
    } else {
        format!("{files} files")
    }
}

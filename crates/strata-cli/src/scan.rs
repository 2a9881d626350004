//! `strata scan`: a region's rows as CSV, or their count.

use std::io::Write;

use arrow_array::RecordBatch;
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use futures::StreamExt;
use strata_engine::{EngineBuilder, RegionId, ScanRequest, TimeRange};

use crate::EngineArgs;

/// Arguments of `strata scan`.
#[derive(Debug, clap::Args)]
pub(crate) struct ScanArgs {
    /// Region id as `table.region`, e.g. 1024.0.
    #[arg(long)]
    region: RegionId,
    /// Only rows with a timestamp at or after this (milliseconds since the epoch).
    #[arg(long)]
    start: Option<i64>,
    /// Only rows with a timestamp before this (milliseconds since the epoch).
    #[arg(long)]
    end: Option<i64>,
    /// Columns to print, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    columns: Vec<String>,
    /// Print at most this many rows.
    #[arg(long)]
    limit: Option<usize>,
    /// Print only the number of rows.
    #[arg(long)]
    count: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

pub(crate) async fn run(args: ScanArgs) -> Result<(), String> {
    let config = args.engine.engine_config()?;
    let engine = EngineBuilder::new(config)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let result = scan(&engine, &args).await;
    engine.stop().await.map_err(|e| e.to_string())?;
    result
}

async fn scan(engine: &strata_engine::Engine, args: &ScanArgs) -> Result<(), String> {
    let region = args.region;
    engine.open(region).await.map_err(|e| e.to_string())?;
    let metadata = engine.region_metadata(region).map_err(|e| e.to_string())?;
    let projection = if args.columns.is_empty() {
        None
    } else {
        let mut indices = args
            .columns
            .iter()
            .map(|name| {
                metadata
                    .column_by_name(name)
                    .map(|(i, _)| i)
                    .ok_or_else(|| format!("region {region} has no column {name:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        indices.sort_unstable();
        indices.dedup();
        Some(indices)
    };
    let time_range = (args.start.is_some() || args.end.is_some()).then(|| TimeRange {
        start: args.start.unwrap_or(i64::MIN),
        end: args.end.map_or(i64::MAX, |e| e.saturating_sub(1)),
    });
    let mut stream = engine
        .scan(
            region,
            ScanRequest {
                projection,
                time_range,
                ..ScanRequest::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let limit = args.limit.unwrap_or(usize::MAX);
    let (mut rows, mut header) = (0usize, false);
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| e.to_string())?;
        if args.count {
            rows += batch.num_rows();
            continue;
        }
        if !header {
            let names: Vec<&str> = batch
                .schema_ref()
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            writeln!(out, "{}", names.join(",")).map_err(|e| e.to_string())?;
            header = true;
        }
        rows += print_csv(&mut out, &batch, limit - rows)?;
        if rows >= limit {
            break;
        }
    }
    if args.count {
        writeln!(out, "{rows}").map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn print_csv(out: &mut impl Write, batch: &RecordBatch, limit: usize) -> Result<usize, String> {
    let options = FormatOptions::default();
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let rows = batch.num_rows().min(limit);
    for row in 0..rows {
        let cells: Vec<String> = formatters
            .iter()
            .map(|f| f.value(row).to_string())
            .collect();
        writeln!(out, "{}", cells.join(",")).map_err(|e| e.to_string())?;
    }
    Ok(rows)
}

//! `strata scan`: a region's rows as CSV, or their count.

use std::io::Write;

use arrow_array::RecordBatch;
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use futures::StreamExt;
use strata_engine::{EngineBuilder, RegionId, ScanRequest, TimeRange};

use crate::EngineArgs;

/// How rows are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// A header line, then comma-separated values.
    Csv,
    /// One JSON object per row (numbers and booleans typed, timestamps as RFC 3339 text).
    Json,
}

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
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Csv)]
    format: Format,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Opens the engine read-only: a scan works while an ingest writes the same directory,
/// sees a consistent prefix of what it committed, and changes nothing.
pub(crate) async fn run(args: ScanArgs) -> Result<(), String> {
    let config = args.engine.engine_config()?;
    let engine = EngineBuilder::new(config.clone())
        .read_only()
        .build()
        .await
        .map_err(|e| crate::open_error(&e, &config))?;
    let result = scan(&engine, &args).await;
    engine.stop().await.map_err(|e| e.to_string())?;
    result
}

async fn scan(engine: &strata_engine::Engine, args: &ScanArgs) -> Result<(), String> {
    let region = args.region;
    engine
        .open(region)
        .await
        .map_err(|e| crate::open_error(&e, engine.config()))?;
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
        if args.format == Format::Json {
            rows += print_json(&mut out, &batch, limit - rows)?;
            if rows >= limit {
                break;
            }
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

fn print_json(out: &mut impl Write, batch: &RecordBatch, limit: usize) -> Result<usize, String> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type, UInt64Type};
    use arrow_schema::DataType;
    use serde_json::{Map, Value};

    let options = FormatOptions::default();
    let schema = batch.schema();
    let rows = batch.num_rows().min(limit);
    let mut objects: Vec<Map<String, Value>> = vec![Map::new(); rows];
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let formatter =
            ArrayFormatter::try_new(column.as_ref(), &options).map_err(|e| e.to_string())?;
        for (row, object) in objects.iter_mut().enumerate() {
            let value = if column.is_null(row) {
                Value::Null
            } else {
                match column.data_type() {
                    DataType::Int64 => Value::from(column.as_primitive::<Int64Type>().value(row)),
                    DataType::UInt64 => Value::from(column.as_primitive::<UInt64Type>().value(row)),
                    DataType::Float64 => serde_json::Number::from_f64(
                        column.as_primitive::<Float64Type>().value(row),
                    )
                    .map_or(Value::Null, Value::Number),
                    DataType::Boolean => Value::Bool(column.as_boolean().value(row)),
                    _ => Value::String(formatter.value(row).to_string()),
                }
            };
            object.insert(field.name().clone(), value);
        }
    }
    for object in objects {
        serde_json::to_writer(&mut *out, &object).map_err(|e| e.to_string())?;
        writeln!(out).map_err(|e| e.to_string())?;
    }
    Ok(rows)
}

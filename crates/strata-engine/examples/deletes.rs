//! Deletes: a delete names rows by primary key and timestamp (the batch has the region's
//! schema; field values are ignored). A deleted row disappears from scans at once, stays
//! deleted across flushes and restarts, and a later put of the same key and timestamp
//! brings it back (newest write wins).
//!
//! ```text
//! cargo run -p strata-engine --example deletes
//! ```

#![allow(clippy::print_stdout)]

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use strata_engine::{
    ColumnDataType, ColumnSchema, CreateRequest, EngineBuilder, EngineConfig, RegionId,
    RegionMetadata, RegionMetadataBuilder, ScanRequest, WriteRequest,
};

fn rows(
    metadata: &RegionMetadata,
    hosts: &[&str],
    ts: i64,
    usage: f64,
) -> Result<RecordBatch, arrow_schema::ArrowError> {
    RecordBatch::try_new(
        metadata.arrow_schema().clone(),
        vec![
            Arc::new(StringArray::from(hosts.to_vec())),
            Arc::new(TimestampMillisecondArray::from(vec![ts; hosts.len()])),
            Arc::new(Float64Array::from(vec![usage; hosts.len()])),
        ],
    )
}

async fn hosts(
    engine: &strata_engine::Engine,
    region: RegionId,
) -> strata_engine::Result<Vec<String>> {
    let batches = engine.scan_to_vec(region, ScanRequest::default()).await?;
    Ok(batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_string::<i32>()
                .iter()
                .map(|h| h.unwrap_or_default().to_string())
                .collect::<Vec<_>>()
        })
        .collect())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut config = EngineConfig::default();
    config.data_home = dir.path().into();
    let region = RegionId::new(1024, 0);
    let metadata = RegionMetadataBuilder::new(region)
        .column(ColumnSchema::tag("host"))
        .column(ColumnSchema::timestamp(
            "ts",
            ColumnDataType::TimestampMillisecond,
        ))
        .column(ColumnSchema::field("usage", ColumnDataType::Float64))
        .build()?;
    let engine = EngineBuilder::new(config.clone()).build().await?;
    engine.create(CreateRequest::new(metadata.clone())).await?;
    engine
        .write(WriteRequest::put(
            region,
            rows(&metadata, &["a", "b", "c"], 1_000, 0.5)?,
        ))
        .await?;
    engine.flush(region).await?;

    // Delete b: the row is in a file already; the delete marker hides it.
    engine
        .write(WriteRequest::delete(
            region,
            rows(&metadata, &["b"], 1_000, 0.0)?,
        ))
        .await?;
    println!("after the delete: {:?}", hosts(&engine, region).await?);
    assert_eq!(hosts(&engine, region).await?, ["a", "c"]);

    // Still deleted after a flush and a restart.
    engine.flush(region).await?;
    engine.stop().await?;
    let engine = EngineBuilder::new(config).build().await?;
    engine.open(region).await?;
    assert_eq!(hosts(&engine, region).await?, ["a", "c"]);

    // A newer put of the same key and timestamp wins over the delete.
    engine
        .write(WriteRequest::put(
            region,
            rows(&metadata, &["b"], 1_000, 0.9)?,
        ))
        .await?;
    println!("after putting b again: {:?}", hosts(&engine, region).await?);
    assert_eq!(hosts(&engine, region).await?, ["a", "b", "c"]);
    engine.stop().await?;
    Ok(())
}

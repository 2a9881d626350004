//! Metrics: the engine registers its `strata_*` metrics on a Prometheus registry the
//! embedder passes in (no global registry), so they come out with the embedder's own —
//! here printed in the text exposition format an HTTP `/metrics` endpoint would serve
//! (`strata ingest --metrics-addr` serves exactly that).
//!
//! ```text
//! cargo run -p strata-engine --example metrics
//! ```

#![allow(clippy::print_stdout)]

use std::sync::Arc;

use arrow_array::{Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use strata_engine::prometheus::{Encoder, Registry, TextEncoder};
use strata_engine::{
    ColumnDataType, ColumnSchema, CreateRequest, EngineBuilder, EngineConfig, RegionId,
    RegionMetadataBuilder, WriteRequest,
};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut config = EngineConfig::default();
    config.data_home = dir.path().into();
    let registry = Registry::new();
    let engine = EngineBuilder::new(config)
        .registry(registry.clone())
        .build()
        .await?;
    let region = RegionId::new(1024, 0);
    let metadata = RegionMetadataBuilder::new(region)
        .column(ColumnSchema::tag("host"))
        .column(ColumnSchema::timestamp(
            "ts",
            ColumnDataType::TimestampMillisecond,
        ))
        .column(ColumnSchema::field("usage", ColumnDataType::Float64))
        .build()?;
    engine.create(CreateRequest::new(metadata.clone())).await?;
    let batch = RecordBatch::try_new(
        metadata.arrow_schema().clone(),
        vec![
            Arc::new(StringArray::from(vec!["a", "b", "c"])),
            Arc::new(TimestampMillisecondArray::from(vec![1_000; 3])),
            Arc::new(Float64Array::from(vec![0.5; 3])),
        ],
    )?;
    engine.write(WriteRequest::put(region, batch)).await?;
    engine.flush(region).await?;

    let mut text = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut text)?;
    let text = String::from_utf8(text)?;
    // A few of them; `strata ingest --metrics-addr` serves them all.
    for line in text.lines().filter(|line| {
        line.starts_with("strata_write_rows_total") || line.starts_with("strata_flush")
    }) {
        println!("{line}");
    }
    assert!(text.contains("strata_write_rows_total"), "{text}");
    engine.stop().await?;
    Ok(())
}

//! Quickstart: create a region, write batches, flush, restart the engine, and scan back
//! exactly what was written.
//!
//! ```text
//! cargo run -p strata-engine --example quickstart [DATA_DIR]
//! ```
//!
//! Without `DATA_DIR` the data goes to a temporary directory that is removed at the end.

#![allow(clippy::print_stdout)]

use std::sync::Arc;

use arrow_array::{Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use strata_engine::{
    ColumnDataType, ColumnSchema, CreateRequest, EngineBuilder, EngineConfig, RegionId,
    RegionMetadataBuilder, ScanRequest, WriteRequest,
};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temp = tempfile::tempdir()?;
    let data_home = std::env::args()
        .nth(1)
        .map_or_else(|| temp.path().to_path_buf(), Into::into);
    let mut config = EngineConfig::default();
    config.data_home = data_home.clone();

    // A region of table 1024: one tag, a millisecond timestamp, one float field.
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
    let mut written = 0;
    for minute in 0..3_i64 {
        let batch = RecordBatch::try_new(
            metadata.arrow_schema().clone(),
            vec![
                Arc::new(StringArray::from(vec!["web-1", "web-2", "db-1"])),
                Arc::new(TimestampMillisecondArray::from(vec![minute * 60_000; 3])),
                Arc::new(Float64Array::from(vec![0.25, 0.5, 0.75])),
            ],
        )?;
        written += engine.write(WriteRequest::put(region, batch)).await?;
    }
    engine.flush(region).await?;
    let stats = engine.region_stats(region)?;
    println!(
        "wrote {written} rows into {} SST file(s) ({} bytes) under {}",
        stats.num_files,
        stats.file_bytes,
        data_home.display()
    );
    engine.stop().await?;

    // Restart: a new engine over the same directory opens the region and reads it back.
    let engine = EngineBuilder::new(config).build().await?;
    engine.open(region).await?;
    let batches = engine.scan_to_vec(region, ScanRequest::default()).await?;
    let read: usize = batches.iter().map(RecordBatch::num_rows).sum();
    println!("after the restart the scan returns {read} rows:");
    for batch in &batches {
        println!("{batch:?}");
    }
    assert_eq!(read, written, "the scan returns exactly what was written");
    engine.stop().await?;
    Ok(())
}

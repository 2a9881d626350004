//! A streaming scan: batches come as the merge produces them, so a scan of any size runs
//! in bounded memory; here a projection (two of the three columns) and a time range, and
//! an error in the stream is the engine's own `Error` (so `?` works on every batch).
//!
//! ```text
//! cargo run -p strata-engine --example streaming_scan
//! ```

#![allow(clippy::print_stdout)]

use std::sync::Arc;

use arrow_array::{Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use futures::TryStreamExt;
use strata_engine::{
    ColumnDataType, ColumnSchema, CreateRequest, EngineBuilder, EngineConfig, RegionId,
    RegionMetadataBuilder, ScanRequest, TimeRange, WriteRequest,
};

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
    let engine = EngineBuilder::new(config).build().await?;
    engine.create(CreateRequest::new(metadata.clone())).await?;

    // 100 hosts × 1,000 seconds; half flushed to files, half still in the memtable.
    for second in 0..1_000_i64 {
        let hosts: Vec<String> = (0..100).map(|h| format!("host-{h:03}")).collect();
        let batch = RecordBatch::try_new(
            metadata.arrow_schema().clone(),
            vec![
                Arc::new(StringArray::from(hosts)),
                Arc::new(TimestampMillisecondArray::from(vec![second * 1_000; 100])),
                Arc::new(Float64Array::from(vec![second as f64 / 10.0; 100])),
            ],
        )?;
        engine.write(WriteRequest::put(region, batch)).await?;
        if second == 499 {
            engine.flush(region).await?;
        }
    }

    // host and usage (columns 0 and 2) of the seconds 250..=749, 1,000 rows a batch.
    let request = ScanRequest::new()
        .column_indices(vec![0, 2])
        .time_range(TimeRange {
            start: 250_000,
            end: 749_999,
        })
        .batch_rows(1_000);
    let mut stream = engine.scan(region, request).await?;
    let (mut batches, mut rows) = (0, 0);
    while let Some(batch) = stream.try_next().await? {
        batches += 1;
        rows += batch.num_rows();
        assert_eq!(batch.num_columns(), 2);
    }
    println!("{rows} rows in {batches} batches");
    assert_eq!(rows, 100 * 500, "500 seconds of 100 hosts");
    engine.stop().await?;
    Ok(())
}

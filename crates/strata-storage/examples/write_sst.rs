//! Writes one SST of TSBS data to a local directory and prints its path, so standard tools
//! can read it: `cargo run -p strata-storage --example write_sst -- /tmp/sst-demo`, then e.g.
//! `python3 -c "import pyarrow.parquet as pq; print(pq.read_table('<path>'))"`.

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::sync::Arc;

use strata_request::{OpType, RegionId};
use strata_storage::{
    KeyCodec, MergeOptions, ObjectStoreConfig, SstWriteOptions, TimeSeriesMemtable, flush_memtable,
    region_data_dir,
};
use strata_workload::CpuWorkload;

fn main() {
    let root = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "./sst-demo".to_string());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = ObjectStoreConfig::Fs {
            root: root.clone().into(),
        }
        .build()
        .unwrap();
        let workload = CpuWorkload::new(100, 10);
        let region = RegionId::new(1, 0);
        let codec = Arc::new(KeyCodec::new(Arc::new(workload.region_metadata(region))).unwrap());
        let memtable = Arc::new(TimeSeriesMemtable::new(1, codec, None));
        let mut sequence = 1;
        for batch in workload.batches().unwrap() {
            memtable.write(&batch.batch, OpType::Put, sequence).unwrap();
            sequence += batch.batch.num_rows() as u64;
        }
        let file = flush_memtable(
            &store,
            &memtable,
            &SstWriteOptions::default(),
            MergeOptions::flush(),
        )
        .await
        .unwrap()
        .unwrap();
        println!("{root}/{}", file.path(&region_data_dir(region)));
    });
}

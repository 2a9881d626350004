//! Model-based test of the engine: seeded random sequences of puts and deletes (with
//! duplicate keys), flushes, alters (add a field, set or remove a TTL), a manual clock
//! moving on, truncates, close/open, engine restarts and drop/create across three regions
//! on two workers, checked after every step against a `BTreeMap` model by scanning (rows
//! past a region's TTL must not be returned). `SEED` replays; `STRATA_STRESS` multiplies the cases.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMillisecondType};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use opendal::Operator;
use strata_engine::{
    AlterKind, AlterRequest, Clock, ColumnDataType, ColumnSchema, CreateRequest, Engine,
    EngineBuilder, EngineConfig, ManualClock, ObjectStoreConfig, RegionId, RegionMetadata,
    RegionOptionChange, RegionOptions, ScanRequest, WriteRequest,
};
use strata_wal::{AppendResponse, Entry, EntryStream, LogStore, MemoryLogStore, WalError};

const REGIONS: u32 = 3;
const HOSTS: u64 = 4;
const TIMES: u64 = 6;

/// A memory log store that survives engine restarts (stop does not stop it).
#[derive(Debug, Default)]
struct SharedLog(MemoryLogStore);

#[strata_engine::async_trait]
impl LogStore for SharedLog {
    async fn append_batch(&self, entries: Vec<Entry>) -> Result<AppendResponse, WalError> {
        self.0.append_batch(entries).await
    }
    fn read(&self, region_id: u64, start_entry_id: u64) -> Result<EntryStream, WalError> {
        self.0.read(region_id, start_entry_id)
    }
    async fn obsolete(&self, region_id: u64, entry_id: u64) -> Result<(), WalError> {
        self.0.obsolete(region_id, entry_id).await
    }
    async fn drop_region(&self, region_id: u64) -> Result<(), WalError> {
        self.0.drop_region(region_id).await
    }
    fn last_entry_id(&self, region_id: u64) -> Option<u64> {
        self.0.last_entry_id(region_id)
    }
    async fn stop(&self) -> Result<(), WalError> {
        Ok(())
    }
}

type Rng = rand_pcg::Pcg64Mcg;

fn region(r: u32) -> RegionId {
    RegionId::new(41, r)
}

fn base_metadata(region: RegionId) -> RegionMetadata {
    strata_tests::host_ts_v(region)
}

/// A region's rows in the model: (host, ts) → v.
type Rows = BTreeMap<(u64, u64), i64>;

/// The world under test and its model.
struct World {
    store: Operator,
    log: Arc<SharedLog>,
    engine: Engine,
    /// Per region: whether it exists (open), its rows, and whether it has the extra field.
    model: BTreeMap<u32, Option<Rows>>,
    altered: BTreeMap<u32, bool>,
    /// Per region: its TTL in milliseconds, if it has one.
    ttl: BTreeMap<u32, u64>,
    /// Per region: the highest TTL cutoff it ever had. A row below it expired at some
    /// point, and a compaction may have removed it (or the delete marker hiding an older
    /// version of it) for good: if a longer TTL makes it visible again, the model accepts
    /// it present or absent.
    ever_cutoff: BTreeMap<u32, i64>,
    clock: Arc<ManualClock>,
    dir: tempfile::TempDir,
}

/// Where the manual clock starts: just past the rows' timestamps (0..TIMES ms), so TTLs
/// of about a second expire some of them.
const CLOCK_START_MILLIS: i64 = 1_000;

async fn build(
    store: &Operator,
    log: &Arc<SharedLog>,
    clock: &Arc<ManualClock>,
    dir: &std::path::Path,
) -> Engine {
    let config = EngineConfig {
        data_home: dir.to_path_buf(),
        num_workers: 2,
        global_write_buffer_size: bytesize::ByteSize::mib(1),
        // Files removed by compactions and truncates are deleted as soon as no scan holds
        // them (the manual clock would never let them linger out).
        removed_file_lingering: std::time::Duration::ZERO,
        ..EngineConfig::default()
    };
    let mut config = config;
    // Automatic compactions after every other flush, racing the steps.
    config.compaction.trigger_file_num = 2;
    // Row groups of a few rows: flushes write their files in time slices and compactions
    // merge them slice by slice.
    config.sst.row_group_size = 4;
    EngineBuilder::new(config)
        .object_store(store.clone())
        .log_store(log.clone())
        .clock(clock.clone())
        .build()
        .await
        .unwrap()
}

impl World {
    async fn new() -> Self {
        let store = ObjectStoreConfig::Memory.build().unwrap();
        let log = Arc::new(SharedLog::default());
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(CLOCK_START_MILLIS));
        let engine = build(&store, &log, &clock, dir.path()).await;
        let mut model = BTreeMap::new();
        for r in 0..REGIONS {
            engine
                .create(CreateRequest {
                    metadata: base_metadata(region(r)),
                    options: RegionOptions::default(),
                })
                .await
                .unwrap();
            model.insert(r, Some(BTreeMap::new()));
        }
        Self {
            store,
            log,
            engine,
            model,
            altered: BTreeMap::new(),
            ttl: BTreeMap::new(),
            ever_cutoff: BTreeMap::new(),
            clock,
            dir,
        }
    }

    fn batch(&self, r: u32, keys: &[(u64, u64)], value: i64, with_v: bool) -> RecordBatch {
        let mut columns: Vec<(&str, ArrayRef)> = vec![
            (
                "host",
                Arc::new(StringArray::from_iter_values(
                    keys.iter().map(|(h, _)| format!("h{h}")),
                )),
            ),
            (
                "ts",
                Arc::new(TimestampMillisecondArray::from_iter_values(
                    keys.iter().map(|(_, t)| *t as i64),
                )),
            ),
        ];
        if with_v {
            columns.push((
                "v",
                Arc::new(Int64Array::from_iter_values(keys.iter().map(|_| value))),
            ));
        }
        let _ = r;
        RecordBatch::try_from_iter(columns).unwrap()
    }

    async fn step(&mut self, rng: &mut Rng, what: &mut String) {
        let r = strata_tests::below(rng, u64::from(REGIONS)) as u32;
        let id = region(r);
        let open = self.model[&r].is_some();
        let op = strata_tests::below(rng, 100);
        match op {
            0..=41 if open => {
                let keys: Vec<(u64, u64)> = (0..1 + strata_tests::below(rng, 6))
                    .map(|_| {
                        (
                            strata_tests::below(rng, HOSTS),
                            strata_tests::below(rng, TIMES),
                        )
                    })
                    .collect();
                let value = strata_tests::below(rng, 1000) as i64;
                *what = format!("put {id} {keys:?} = {value}");
                let batch = self.batch(r, &keys, value, true);
                self.engine
                    .write(WriteRequest::put(id, batch))
                    .await
                    .unwrap();
                let rows = self.model.get_mut(&r).unwrap().as_mut().unwrap();
                for key in keys {
                    rows.insert(key, value);
                }
            }
            42..=44 if open => {
                *what = format!("compact {id}");
                self.engine.compact(id).await.unwrap();
            }
            45..=59 if open => {
                let keys: Vec<(u64, u64)> = (0..1 + strata_tests::below(rng, 3))
                    .map(|_| {
                        (
                            strata_tests::below(rng, HOSTS),
                            strata_tests::below(rng, TIMES),
                        )
                    })
                    .collect();
                *what = format!("delete {id} {keys:?}");
                let batch = self.batch(r, &keys, 0, false);
                self.engine
                    .write(WriteRequest::delete(id, batch))
                    .await
                    .unwrap();
                let rows = self.model.get_mut(&r).unwrap().as_mut().unwrap();
                for key in keys {
                    rows.remove(&key);
                }
            }
            60..=71 if open => {
                *what = format!("flush {id}");
                self.engine.flush(id).await.unwrap();
            }
            72..=75 if open && !self.altered.get(&r).copied().unwrap_or(false) => {
                *what = format!("alter {id} add field extra");
                self.engine
                    .alter(AlterRequest {
                        region_id: id,
                        schema_version: 0,
                        kind: AlterKind::AddColumns {
                            columns: vec![ColumnSchema::field("extra", ColumnDataType::Int64)],
                        },
                    })
                    .await
                    .unwrap();
                self.altered.insert(r, true);
            }
            76..=79 if open => {
                *what = format!("truncate {id}");
                self.engine.truncate(id).await.unwrap();
                self.model.insert(r, Some(BTreeMap::new()));
                self.ever_cutoff.remove(&r);
            }
            80..=86 if open => {
                *what = format!("close and open {id}");
                self.engine.close(id).await.unwrap();
                self.engine.open(id).await.unwrap();
            }
            87..=91 => {
                *what = "restart the engine".into();
                self.engine.stop().await.unwrap();
                self.engine = build(&self.store, &self.log, &self.clock, self.dir.path()).await;
                for (&r, rows) in &self.model {
                    if rows.is_some() {
                        self.engine.open(region(r)).await.unwrap();
                    }
                }
            }
            92..=95 if open => {
                *what = format!("drop {id}");
                self.engine.drop_region(id).await.unwrap();
                self.model.insert(r, None);
                self.altered.remove(&r);
                self.ttl.remove(&r);
                self.ever_cutoff.remove(&r);
            }
            96..=97 if open => {
                // A TTL around the clock's distance from the rows, or none.
                let ttl =
                    (strata_tests::below(rng, 3) > 0).then(|| 990 + strata_tests::below(rng, 20));
                *what = format!("set ttl of {id} to {ttl:?} ms");
                let schema_version = self.engine.region_metadata(id).unwrap().schema_version();
                self.engine
                    .alter(AlterRequest {
                        region_id: id,
                        schema_version,
                        kind: AlterKind::SetOptions {
                            changes: vec![RegionOptionChange::Ttl(
                                ttl.map(std::time::Duration::from_millis),
                            )],
                        },
                    })
                    .await
                    .unwrap();
                match ttl {
                    Some(ttl) => self.ttl.insert(r, ttl),
                    None => self.ttl.remove(&r),
                };
            }
            98..=99 => {
                let step = strata_tests::below(rng, 4);
                *what = format!("advance the clock {step} ms");
                self.clock.advance(std::time::Duration::from_millis(step));
            }
            _ if !open => {
                *what = format!("create {id}");
                self.engine
                    .create(CreateRequest {
                        metadata: base_metadata(id),
                        options: RegionOptions::default(),
                    })
                    .await
                    .unwrap();
                self.model.insert(r, Some(BTreeMap::new()));
            }
            _ => *what = "nothing".into(),
        }
        let now = self.clock.now_millis();
        for (&r, &ttl) in &self.ttl {
            let cutoff = now - ttl as i64;
            let ever = self.ever_cutoff.entry(r).or_insert(cutoff);
            *ever = (*ever).max(cutoff);
        }
    }

    async fn check(&self) -> Result<(), String> {
        for (&r, rows) in &self.model {
            let Some(rows) = rows else {
                if self.engine.region_stats(region(r)).is_ok() {
                    return Err(format!("{} should be dropped", region(r)));
                }
                continue;
            };
            // Rows past the region's TTL are not returned; rows that expired earlier but
            // are visible under the current TTL may be gone.
            let now = self.clock.now_millis();
            let cutoff = self.ttl.get(&r).map_or(i64::MIN, |&ttl| now - ttl as i64);
            let ever = self.ever_cutoff.get(&r).copied().unwrap_or(i64::MIN);
            let uncertain = |ts: u64| (ts as i64) < ever && (ts as i64) >= cutoff;
            let expected: Rows = rows
                .iter()
                .filter(|((_, ts), _)| *ts as i64 >= cutoff && !uncertain(*ts))
                .map(|(k, v)| (*k, *v))
                .collect();
            let mut actual = BTreeMap::new();
            let batches = self
                .engine
                .scan_to_vec(
                    region(r),
                    ScanRequest {
                        projection: Some(vec![0, 1, 2]),
                        ..ScanRequest::default()
                    },
                )
                .await
                .map_err(|e| e.to_string())?;
            for batch in batches {
                let host = batch.column(0).as_string::<i32>();
                let ts = batch.column(1).as_primitive::<TimestampMillisecondType>();
                let v = batch.column(2).as_primitive::<Int64Type>();
                for i in 0..batch.num_rows() {
                    let h: u64 = host.value(i)[1..].parse().unwrap();
                    let t = ts.value(i) as u64;
                    if (t as i64) < cutoff {
                        return Err(format!("{}: expired row {h},{t} returned", region(r)));
                    }
                    if !uncertain(t) {
                        actual.insert((h, t), v.value(i));
                    }
                }
            }
            if actual != expected {
                return Err(format!(
                    "{}: scan {actual:?} != model {expected:?}",
                    region(r)
                ));
            }
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_operation_sequences_match_a_btreemap_model() {
    let seed: u64 = std::env::var("SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0de1_5eed);
    let stress: u64 = std::env::var("STRATA_STRESS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let cases = 500 * stress;
    eprintln!("engine model: SEED={seed}, {cases} cases");
    let mut steps_run = 0;
    for case in 0..cases {
        let mut rng = strata_tests::rng(seed ^ case.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut world = World::new().await;
        let mut history = Vec::new();
        for _ in 0..25 {
            let mut what = String::new();
            world.step(&mut rng, &mut what).await;
            history.push(what);
            steps_run += 1;
            if let Err(mismatch) = world.check().await {
                panic!(
                    "case {case} (SEED={seed}): {mismatch}\nafter: {}",
                    history.join("; ")
                );
            }
        }
        world.engine.stop().await.unwrap();
    }
    eprintln!("engine model: {cases} cases, {steps_run} steps, all matched");
}

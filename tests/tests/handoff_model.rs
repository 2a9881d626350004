//! Model test of a region shared by two engines: seeded random puts and deletes (colliding
//! keys) on the leader, flushes, alters (options and added columns), truncates, restarts,
//! graceful hand-offs, forced take-overs that fence the old leader (at its next flush,
//! alter or truncate), and follower syncs — every scan compared with a model after each
//! step.
//!
//! The model keeps two states: `full`, what the leader acknowledged, and `committed`, what
//! its last manifest commit holds. The leader scans `full`; a follower, after a sync,
//! scans `committed`. A graceful hand-off commits `full`; a forced take-over (the old
//! leader gone quiet, no downgrade) keeps only `committed`, and the old leader's next
//! commit must be fenced. Two engines in one process (their own data homes and WALs, one
//! shared store directory, one manual clock); the hand-offs between processes are in
//! `handoff.rs`.

#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMillisecondType};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use strata_engine::{
    AlterKind, AlterRequest, ColumnDataType, ColumnSchema, CreateRequest, Engine, EngineBuilder,
    EngineConfig, ErrorKind, ManualClock, ObjectStoreConfig, RegionId, RegionOptionChange,
    RegionRole, ScanRequest, WriteRequest,
};

const REGION: RegionId = RegionId::new(43, 0);
const HOSTS: u64 = 5;
const TIMES: u64 = 8;

type Rows = BTreeMap<(u64, u64), i64>;
type Rng = rand_pcg::Pcg64Mcg;

fn batch(keys: &[(u64, u64)], value: Option<i64>) -> RecordBatch {
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
    if let Some(value) = value {
        columns.push((
            "v",
            Arc::new(Int64Array::from_iter_values(keys.iter().map(|_| value))),
        ));
    }
    RecordBatch::try_from_iter(columns).unwrap()
}

async fn build(home: &Path, shared: &Path, clock: &Arc<ManualClock>) -> Engine {
    let mut config = EngineConfig::default();
    config.data_home = home.to_path_buf();
    config.num_workers = 1;
    config.global_write_buffer_size = bytesize::ByteSize::mib(1);
    config.manifest_checkpoint_distance = 3;
    config.follower_sync_interval = std::time::Duration::ZERO;
    config.object_store = Some(ObjectStoreConfig::Fs {
        root: shared.to_path_buf(),
    });
    config.compaction.trigger_file_num = 2;
    EngineBuilder::new(config)
        .clock(clock.clone())
        .build()
        .await
        .unwrap()
}

/// Most field columns the model's alters add.
const MAX_ADDED_COLUMNS: usize = 3;

/// An alter of `engine`'s region: an option change, or (`add_column`) one more nullable
/// field column — a schema change, which flushes the memtables first.
async fn alter(engine: &Engine, add_column: bool, size: u64) -> Result<(), strata_engine::Error> {
    let metadata = engine.region_metadata(REGION)?;
    let kind = if add_column {
        AlterKind::AddColumns {
            columns: vec![ColumnSchema::field(
                format!("extra{}", metadata.columns().len()),
                ColumnDataType::Int64,
            )],
        }
    } else {
        AlterKind::SetOptions {
            changes: vec![RegionOptionChange::WriteBufferSize(Some(size))],
        }
    };
    engine
        .alter(AlterRequest::new(REGION, metadata.schema_version(), kind))
        .await
}

async fn rows(engine: &Engine) -> Rows {
    let mut out = Rows::new();
    for batch in engine
        .scan_to_vec(REGION, ScanRequest::default())
        .await
        .unwrap()
    {
        let host = batch.column(0).as_string::<i32>();
        let ts = batch.column(1).as_primitive::<TimestampMillisecondType>();
        let v = batch.column(2).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            let h: u64 = host.value(i)[1..].parse().unwrap();
            out.insert((h, ts.value(i) as u64), v.value(i));
        }
    }
    out
}

struct World {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    engines: [Option<Engine>; 2],
    leader: usize,
    full: Rows,
    committed: Rows,
    /// Engines a forced take-over left believing they lead (until their next commit).
    zombie: Option<usize>,
}

impl World {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("shared")).unwrap();
        let clock = Arc::new(ManualClock::new(1_000));
        let a = build(&dir.path().join("a"), &dir.path().join("shared"), &clock).await;
        let b = build(&dir.path().join("b"), &dir.path().join("shared"), &clock).await;
        a.create(CreateRequest::new(strata_tests::host_ts_v(REGION)))
            .await
            .unwrap();
        b.open_as(REGION, RegionRole::Follower).await.unwrap();
        Self {
            dir,
            clock,
            engines: [Some(a), Some(b)],
            leader: 0,
            full: Rows::new(),
            committed: Rows::new(),
            zombie: None,
        }
    }

    fn engine(&self, i: usize) -> &Engine {
        self.engines[i].as_ref().unwrap()
    }

    /// The old leader of a forced take-over learns of it: its next commit — a flush, an
    /// alter or a truncate, chosen by `rng` — is fenced and it turns follower, acknowledging
    /// no write afterwards; whatever it had not committed is not on the new leader.
    async fn fence_zombie(&mut self, rng: &mut Rng, what: &mut String) {
        let Some(z) = self.zombie.take() else {
            return;
        };
        let engine = self.engine(z);
        if engine.region_role(REGION).unwrap() == RegionRole::Follower {
            // A background compaction's commit was fenced already.
            what.push_str(&format!(" (engine {z} fenced by a background commit)"));
            return;
        }
        // It still believes it leads: a write is acknowledged (the lease-less window) —
        // unless a background compaction's commit was fenced since the role check above.
        if let Err(error) = engine
            .write(WriteRequest::put(REGION, batch(&[(0, 0)], Some(-1))))
            .await
        {
            assert_eq!(error.kind(), ErrorKind::NotLeader, "{what}: {error}");
            assert_eq!(engine.region_role(REGION).unwrap(), RegionRole::Follower);
            what.push_str(&format!(
                " (engine {z} fenced by a background commit before its write)"
            ));
            return;
        }
        // ... but its commit is fenced and it follows from then on — or a background
        // compaction's commit was fenced between the write and this one, and the region
        // already follows (read-only: nothing to flush, alter or truncate).
        let (operation, error) = match strata_tests::below(rng, 3) {
            0 => ("flush", engine.flush(REGION).await.unwrap_err()),
            1 => ("alter", alter(engine, false, 1 << 20).await.unwrap_err()),
            _ => ("truncate", engine.truncate(REGION).await.unwrap_err()),
        };
        let role = engine.region_role(REGION).unwrap();
        match error.kind() {
            ErrorKind::Fenced => what.push_str(&format!(" (engine {z} fenced at its {operation})")),
            ErrorKind::RegionState if role == RegionRole::Follower => what.push_str(&format!(
                " (engine {z} fenced by a background commit during its {operation})"
            )),
            _ => panic!("{what}: expected the {operation} to be fenced: {error}"),
        }
        assert_eq!(role, RegionRole::Follower, "{what}");
        let refused = engine
            .write(WriteRequest::put(REGION, batch(&[(0, 0)], Some(-2))))
            .await
            .unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::NotLeader, "{what}: {refused}");
    }

    async fn step(&mut self, rng: &mut Rng, what: &mut String) {
        let op = strata_tests::below(rng, 100);
        let leader = self.leader;
        let follower = 1 - leader;
        match op {
            0..=44 => {
                let keys: Vec<(u64, u64)> = (0..1 + strata_tests::below(rng, 5))
                    .map(|_| {
                        (
                            strata_tests::below(rng, HOSTS),
                            strata_tests::below(rng, TIMES),
                        )
                    })
                    .collect();
                if strata_tests::below(rng, 5) == 0 {
                    *what = format!("delete {keys:?} on {leader}");
                    self.engine(leader)
                        .write(WriteRequest::delete(REGION, batch(&keys, None)))
                        .await
                        .unwrap();
                    for key in keys {
                        self.full.remove(&key);
                    }
                } else {
                    let value = strata_tests::below(rng, 1000) as i64;
                    *what = format!("put {keys:?} = {value} on {leader}");
                    self.engine(leader)
                        .write(WriteRequest::put(REGION, batch(&keys, Some(value))))
                        .await
                        .unwrap();
                    for key in keys {
                        self.full.insert(key, value);
                    }
                }
            }
            45..=59 => {
                *what = format!("flush on {leader}");
                self.engine(leader).flush(REGION).await.unwrap();
                self.committed = self.full.clone();
            }
            60..=69 => {
                *what = format!("graceful hand-off {leader} -> {follower}");
                self.fence_zombie(rng, what).await;
                let downgraded = self.engine(leader).downgrade(REGION).await.unwrap();
                self.engine(follower)
                    .upgrade(REGION, Some(downgraded.last_entry_id))
                    .await
                    .unwrap();
                self.engine(leader)
                    .set_role(REGION, RegionRole::Follower)
                    .await
                    .unwrap();
                self.committed = self.full.clone();
                self.leader = follower;
            }
            70..=74 if self.zombie.is_none() => {
                *what = format!("forced take-over {leader} -> {follower}");
                self.engine(follower).upgrade(REGION, None).await.unwrap();
                // What the old leader had not committed is its own (in its WAL).
                self.full = self.committed.clone();
                self.zombie = Some(leader);
                self.leader = follower;
            }
            75..=84 => {
                *what = format!("sync and scan follower {follower}");
                self.fence_zombie(rng, what).await;
                self.engine(follower).sync(REGION, 0).await.unwrap();
                assert_eq!(rows(self.engine(follower)).await, self.committed, "{what}");
            }
            85..=89 => {
                let i = strata_tests::below(rng, 2) as usize;
                *what = format!("restart engine {i}");
                if self.zombie == Some(i) {
                    self.fence_zombie(rng, what).await;
                }
                let engine = self.engines[i].take().unwrap();
                engine.stop().await.unwrap();
                drop(engine);
                let home = self.dir.path().join(if i == 0 { "a" } else { "b" });
                let engine = build(&home, &self.dir.path().join("shared"), &self.clock).await;
                let role = if i == self.leader {
                    RegionRole::Leader
                } else {
                    RegionRole::Follower
                };
                engine.open_as(REGION, role).await.unwrap();
                self.engines[i] = Some(engine);
            }
            90..=93 => {
                *what = format!("compact on {leader}");
                self.engine(leader).compact(REGION).await.unwrap();
            }
            94..=97 => {
                let columns = self
                    .engine(leader)
                    .region_metadata(REGION)
                    .unwrap()
                    .columns()
                    .len();
                let add_column =
                    columns < 3 + MAX_ADDED_COLUMNS && strata_tests::below(rng, 2) == 0;
                let size = (1 + strata_tests::below(rng, 8)) << 20;
                *what = format!("alter on {leader} (add a column: {add_column})");
                alter(self.engine(leader), add_column, size).await.unwrap();
                if add_column {
                    // The schema change flushed the memtables first.
                    self.committed = self.full.clone();
                }
            }
            _ => {
                *what = format!("truncate on {leader}");
                self.engine(leader).truncate(REGION).await.unwrap();
                self.full.clear();
                self.committed.clear();
            }
        }
        assert_eq!(
            rows(self.engine(self.leader)).await,
            self.full,
            "{what}: leader"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_sharing_a_region_match_the_model_through_handoffs_and_takeovers() {
    let seed = strata_tests::seed(0x4a4d_0ff5);
    let cases = 12 * strata_tests::stress();
    let steps = 40;
    let (mut handoffs, mut fenced) = (0, 0);
    for case in 0..cases {
        let mut rng = strata_tests::rng(seed.wrapping_add(case));
        let mut world = World::new().await;
        let mut trace: Vec<String> = Vec::new();
        for step in 0..steps {
            let mut what = String::new();
            let result = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
                world.step(&mut rng, &mut what),
            ))
            .await;
            if what.contains("hand-off") || what.contains("take-over") {
                handoffs += 1;
            }
            if what.contains("fenced") {
                fenced += 1;
            }
            trace.push(what);
            if let Err(panic) = result {
                eprintln!(
                    "SEED={seed} case {case} failed at step {step}; steps:\n  {}",
                    trace.join("\n  ")
                );
                std::panic::resume_unwind(panic);
            }
        }
        for engine in world.engines.iter().flatten() {
            engine.stop().await.unwrap();
        }
    }
    eprintln!(
        "two-engine model: SEED={seed}, {cases} cases x {steps} steps, {handoffs} hand-offs and take-overs, {fenced} fenced leaders"
    );
    assert!(
        handoffs > 0 && fenced > 0,
        "the seed exercised no hand-off or fence"
    );
}

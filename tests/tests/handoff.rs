//! Regions moving between engines in two processes that share one object store (a local
//! directory, and the loopback S3 server `cargo xtask ci` starts): graceful hand-offs
//! under continuous writes, a zombie leader fenced out, follower reads beside a leader
//! that flushes and compacts.
//!
//! The test binary plays two roles: the **parent** (each test) drives two **children**
//! (this binary again, with `STRATA_HANDOFF_CHILD` set), each an engine with its own data
//! home and WAL, over stdin/stdout — one command per line, one reply per line. A child's
//! writer task logs every acknowledged batch to a side file. Nobody sleeps: the parent
//! waits for replies.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    clippy::print_stdout,
    missing_docs
)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use nix::sys::signal::Signal;
use strata_engine::{
    CreateRequest, Engine, EngineBuilder, EngineConfig, ObjectStoreConfig, RegionId, RegionRole,
    S3Config, ScanRequest, Secret, WriteRequest,
};
use strata_tests::crash::{metadata, rows};

const CHILD_ENV: &str = "STRATA_HANDOFF_CHILD";
const STORE_ENV: &str = "STRATA_HANDOFF_STORE";
const ROWS_PER_WRITE: i64 = 25;
/// Most batches one writer writes.
const MAX_WRITES: i64 = 2_000;
/// Marks a child's replies in its output (the test harness writes there too, and may
/// start a line that a reply then ends).
const REPLY: &str = "@@reply ";

fn region() -> RegionId {
    RegionId::new(21, 0)
}

// ---------------------------------------------------------------------------------------
// The child: an engine serving commands.

/// The shared store the parent chose: `fs:<dir>` or `s3:<endpoint>|<bucket>|<root>`.
fn child_store() -> ObjectStoreConfig {
    let spec = std::env::var(STORE_ENV).unwrap();
    if let Some(dir) = spec.strip_prefix("fs:") {
        return ObjectStoreConfig::Fs { root: dir.into() };
    }
    let s3 = spec.strip_prefix("s3:").unwrap();
    let [endpoint, bucket, root] = s3.split('|').collect::<Vec<_>>()[..] else {
        panic!("bad store spec {spec}");
    };
    ObjectStoreConfig::S3(
        S3Config::new(bucket)
            .root(root)
            .endpoint(endpoint)
            .region("us-east-1")
            .credentials("test", Secret::new("test")),
    )
}

/// How often a child's followers sync on their own.
const FOLLOWER_POLL: std::time::Duration = std::time::Duration::from_millis(100);

fn child_config(home: &Path, follower_sync_interval: std::time::Duration) -> EngineConfig {
    let mut config = EngineConfig::default();
    config.data_home = home.to_path_buf();
    config.num_workers = 1;
    config.global_write_buffer_size = bytesize::ByteSize::mib(4);
    config.manifest_checkpoint_distance = 4;
    config.follower_sync_interval = follower_sync_interval;
    config.removed_file_lingering = std::time::Duration::from_secs(2);
    config.object_store = Some(child_store());
    config.compaction.trigger_file_num = 3;
    config
}

/// Appends `start end` for every acknowledged batch to `acks`; stops at the first error
/// once `halt` is set, or after [`MAX_WRITES`] batches, and returns `(first key not
/// acknowledged, its error kind, "Halted" or "Exhausted")`.
async fn write_until_refused(
    engine: Arc<Engine>,
    start: i64,
    acks: PathBuf,
    acked: Arc<AtomicI64>,
    halt: Arc<AtomicBool>,
) -> (i64, String) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&acks)
        .unwrap();
    let mut key = start;
    loop {
        if halt.load(Ordering::SeqCst) {
            return (key, "Halted".into());
        }
        // Bounded: a writer nobody refuses ends the test instead of hanging it.
        if key - start >= MAX_WRITES * ROWS_PER_WRITE {
            return (key, "Exhausted".into());
        }
        let end = key + ROWS_PER_WRITE;
        match engine
            .write(WriteRequest::put(region(), rows(region(), key, end)))
            .await
        {
            Ok(_) => {
                writeln!(file, "{key} {end}").unwrap();
                file.flush().unwrap();
                acked.fetch_add(1, Ordering::SeqCst);
                key = end;
            }
            Err(error) => return (key, format!("{:?}", error.kind())),
        }
    }
}

/// `rows <count> <sum of keys>` of a scan.
async fn scan_summary(engine: &Engine) -> String {
    let batches = engine
        .scan_to_vec(region(), ScanRequest::default())
        .await
        .map_err(|e| format!("err {:?} {e}", e.kind()));
    match batches {
        Err(error) => error,
        Ok(batches) => {
            let (mut count, mut sum) = (0i64, 0i64);
            for batch in batches {
                let ts = batch.column(1).as_primitive::<TimestampMillisecondType>();
                count += ts.len() as i64;
                sum += ts.values().iter().sum::<i64>();
            }
            format!("rows {count} {sum}")
        }
    }
}

fn reply<T>(result: Result<T, strata_engine::Error>, ok: impl FnOnce(T) -> String) -> String {
    match result {
        Ok(value) => ok(value),
        Err(e) => format!("err {:?} {e}", e.kind()),
    }
}

/// A child engine serving commands on stdin; its followers sync on their own every
/// `follower_sync_interval`.
fn run_child(home: PathBuf, follower_sync_interval: std::time::Duration) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let engine = Arc::new(
            EngineBuilder::new(child_config(&home, follower_sync_interval))
                .build()
                .await
                .unwrap(),
        );
        let acks = home.join("acks");
        let mut writer: Option<tokio::task::JoinHandle<(i64, String)>> = None;
        let halt = Arc::new(AtomicBool::new(false));
        let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        while let Some(line) = lines.recv().await {
            let words: Vec<&str> = line.split_whitespace().collect();
            let answer = match words[..] {
                ["create"] => reply(
                    engine.create(CreateRequest::new(metadata(region()))).await,
                    |()| "ok".into(),
                ),
                ["open", role] => {
                    let role = match role {
                        "leader" => RegionRole::Leader,
                        _ => RegionRole::Follower,
                    };
                    reply(engine.open_as(region(), role).await, |()| "ok".into())
                }
                // Starts writing from `start`; answers once `min` batches are acknowledged
                // (or the writer stopped), then goes on writing until refused.
                ["writer", start, min] => {
                    let acked = Arc::new(AtomicI64::new(0));
                    halt.store(false, Ordering::SeqCst);
                    let task = tokio::spawn(write_until_refused(
                        engine.clone(),
                        start.parse().unwrap(),
                        acks.clone(),
                        acked.clone(),
                        halt.clone(),
                    ));
                    let min: i64 = min.parse().unwrap();
                    while acked.load(Ordering::SeqCst) < min && !task.is_finished() {
                        tokio::task::yield_now().await;
                    }
                    writer = Some(task);
                    "ok".into()
                }
                ["halt"] => match writer.take() {
                    Some(task) => {
                        halt.store(true, Ordering::SeqCst);
                        let (key, kind) = task.await.unwrap();
                        format!("stopped {key} {kind}")
                    }
                    None => "err no writer".into(),
                },
                ["wait_writer"] => match writer.take() {
                    Some(task) => {
                        let (key, kind) = task.await.unwrap();
                        format!("stopped {key} {kind}")
                    }
                    None => "err no writer".into(),
                },
                ["downgrade"] => reply(engine.downgrade(region()).await, |d| {
                    format!("ok {} {}", d.last_entry_id, d.manifest_version)
                }),
                ["upgrade"] => reply(engine.upgrade(region(), None).await, |()| "ok".into()),
                ["upgrade", last] => reply(
                    engine.upgrade(region(), Some(last.parse().unwrap())).await,
                    |()| "ok".into(),
                ),
                ["follow"] => reply(
                    engine.set_role(region(), RegionRole::Follower).await,
                    |()| "ok".into(),
                ),
                ["role"] => reply(engine.region_role(region()), |r| r.to_string()),
                ["epoch"] => reply(engine.leader_epoch(region()).await, |e| e.to_string()),
                ["sync"] => reply(engine.sync(region(), 0).await, |v| format!("ok {v}")),
                ["flush"] => reply(engine.flush(region()).await, |()| "ok".into()),
                ["compact"] => reply(engine.compact(region()).await, |_| "ok".into()),
                ["files"] => reply(engine.region_files(region()), |files| {
                    let mut names: Vec<String> =
                        files.iter().map(|f| f.file_id.to_string()).collect();
                    names.sort();
                    format!("files {}", names.join(","))
                }),
                ["scan"] => scan_summary(&engine).await,
                ["stop"] => {
                    engine.stop().await.unwrap();
                    println!("{REPLY}ok");
                    return;
                }
                _ => format!("err unknown command {line}"),
            };
            println!("{REPLY}{answer}");
        }
    });
}

// ---------------------------------------------------------------------------------------
// The parent.

/// One child process and its command channel.
struct Engine2 {
    name: &'static str,
    child: Child,
    stdin: ChildStdin,
    replies: std::io::Lines<BufReader<std::process::ChildStdout>>,
    home: PathBuf,
}

impl Engine2 {
    fn start(name: &'static str, home: PathBuf, store: &str, test: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &home)
            .env(STORE_ENV, store)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let replies = BufReader::new(child.stdout.take().unwrap()).lines();
        Self {
            name,
            child,
            stdin,
            replies,
            home,
        }
    }

    /// Sends a command without waiting for the reply.
    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The next reply (the test harness's own output around it is skipped).
    fn reply(&mut self) -> String {
        loop {
            let line = self
                .replies
                .next()
                .unwrap_or_else(|| panic!("{}: the child ended", self.name))
                .unwrap();
            if let Some((_, reply)) = line.split_once(REPLY) {
                return reply.to_string();
            }
        }
    }

    fn cmd(&mut self, command: &str) -> String {
        self.send(command);
        self.reply()
    }

    /// A command that must answer `ok ...`; returns the words after `ok`.
    fn ok(&mut self, command: &str) -> Vec<String> {
        let answer = self.cmd(command);
        assert!(
            answer.starts_with("ok"),
            "{}: {command}: {answer}",
            self.name
        );
        answer.split(' ').skip(1).map(str::to_string).collect()
    }

    /// Every key range this child's writers had acknowledged.
    fn acked(&self) -> Vec<(i64, i64)> {
        std::fs::read_to_string(self.home.join("acks"))
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let (start, end) = line.split_once(' ').unwrap();
                (start.parse().unwrap(), end.parse().unwrap())
            })
            .collect()
    }

    fn pid(&self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap())
    }

    fn stop(mut self) {
        assert_eq!(self.cmd("stop"), "ok");
        self.child.wait().unwrap();
    }
}

/// `rows <count> <sum>` of keys `0..n` (every key below `n` exactly once).
fn prefix(n: i64) -> String {
    format!("rows {n} {}", n * (n - 1) / 2)
}

/// The shared stores to run on: a local directory always; the loopback S3 server where
/// configured (required under `cargo xtask ci`).
fn stores(dir: &Path, test: &str) -> Vec<String> {
    let shared = dir.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let mut stores = vec![format!("fs:{}", shared.display())];
    match (
        std::env::var("STRATA_S3_ENDPOINT"),
        std::env::var("STRATA_S3_BUCKET"),
    ) {
        (Ok(endpoint), Ok(bucket)) => {
            let root = format!("handoff-{}", strata_engine::FileId::random());
            stores.push(format!("s3:{endpoint}|{bucket}|{root}"));
        }
        _ if std::env::var_os("STRATA_S3_REQUIRED").is_some() => {
            panic!("{test}: S3 is required in this run but no server is configured")
        }
        _ => eprintln!("{test}: STRATA_S3_ENDPOINT is not set; the S3 run is skipped"),
    }
    stores
}

fn child_home() -> Option<PathBuf> {
    std::env::var_os(CHILD_ENV).map(PathBuf::from)
}

const HANDOFF_TEST: &str =
    "twenty_graceful_handoffs_under_continuous_writes_lose_and_duplicate_nothing";

#[test]
fn twenty_graceful_handoffs_under_continuous_writes_lose_and_duplicate_nothing() {
    if let Some(home) = child_home() {
        return run_child(home, FOLLOWER_POLL);
    }
    for store in stores(&tempfile::tempdir().unwrap().keep(), HANDOFF_TEST) {
        let dir = tempfile::tempdir().unwrap();
        let mut engines = [
            Engine2::start("A", dir.path().join("a"), &store, HANDOFF_TEST),
            Engine2::start("B", dir.path().join("b"), &store, HANDOFF_TEST),
        ];
        engines[0].ok("create");
        engines[1].ok("open follower");
        let (mut leader, mut next_key) = (0usize, 0i64);
        for handoff in 0..20 {
            let follower = 1 - leader;
            // The writer keeps writing while the leader downgrades; it stops at the first
            // refused write, which the parent retries on the new leader.
            engines[leader].ok(&format!("writer {next_key} 4"));
            let downgraded = engines[leader].ok("downgrade");
            let stopped = engines[leader].cmd("wait_writer");
            let words: Vec<&str> = stopped.split(' ').collect();
            assert_eq!(words[2], "NotLeader", "hand-off {handoff}: {stopped}");
            next_key = words[1].parse().unwrap();
            engines[leader].ok("follow");
            // The follower syncs the downgraded leader's flush, then takes over.
            engines[follower].ok(&format!("upgrade {}", downgraded[0]));
            // Every acknowledged key so far, exactly once, on the new leader and — after
            // a sync — on the old one, now a follower.
            assert_eq!(
                engines[follower].cmd("scan"),
                prefix(next_key),
                "hand-off {handoff} on {store}"
            );
            engines[leader].ok("sync");
            assert_eq!(engines[leader].cmd("scan"), prefix(next_key));
            leader = follower;
        }
        // Writes refused on the follower name the leader's absence.
        let refused = engines[1 - leader].cmd(&format!("writer {next_key} 0"));
        assert_eq!(refused, "ok");
        let stopped = engines[1 - leader].cmd("wait_writer");
        assert!(stopped.ends_with("NotLeader"), "{stopped}");
        let acked: i64 = engines
            .iter()
            .flat_map(|e| e.acked())
            .map(|(start, end)| end - start)
            .sum();
        assert_eq!(acked, next_key, "acknowledged keys are contiguous from 0");
        assert!(engines[leader].cmd("epoch").parse::<u64>().unwrap() >= 20);
        let [a, b] = engines;
        a.stop();
        b.stop();
        eprintln!("{HANDOFF_TEST}: 20 hand-offs on {store}, {next_key} rows, all readable once");
    }
}

const ZOMBIE_TEST: &str =
    "a_paused_leader_is_fenced_when_it_resumes_and_its_late_commit_stays_invisible";

#[test]
fn a_paused_leader_is_fenced_when_it_resumes_and_its_late_commit_stays_invisible() {
    if let Some(home) = child_home() {
        // A fenced leader follows, and its own poll would install the new leader's state
        // (dropping its memtables) at any moment: here it syncs only when told.
        return run_child(home, std::time::Duration::from_secs(3600));
    }
    for store in stores(&tempfile::tempdir().unwrap().keep(), ZOMBIE_TEST) {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Engine2::start("A", dir.path().join("a"), &store, ZOMBIE_TEST);
        let mut b = Engine2::start("B", dir.path().join("b"), &store, ZOMBIE_TEST);
        a.ok("create");
        // A acknowledges keys 0..250 and flushes them, then 250..500 stay in its memtable.
        a.ok("writer 0 10");
        let flushed = halted_at(&a.cmd("halt"));
        a.ok("flush");
        a.ok(&format!("writer {flushed} 10"));
        let unflushed_end = halted_at(&a.cmd("halt"));
        // A stalls (SIGSTOP) while B takes the region over and writes on.
        signal(&a, Signal::SIGSTOP);
        b.ok("open follower");
        b.ok("upgrade");
        b.ok(&format!("writer {unflushed_end} 10"));
        // A resumes: its flush commit loses the manifest version to B's epoch.
        signal(&a, Signal::SIGCONT);
        let fenced = a.cmd("flush");
        assert!(fenced.starts_with("err Fenced"), "{fenced}");
        assert_eq!(a.cmd("role"), "follower");
        // A's acknowledged, unflushed rows are still on A (memory and WAL) ...
        assert_eq!(a.cmd("scan"), prefix(unflushed_end));
        // ... B never sees them, nor anything of A's fenced flush.
        let b_end = halted_at(&b.cmd("halt"));
        b.ok("flush");
        let expected_rows = flushed + (b_end - unflushed_end);
        let expected_sum = flushed * (flushed - 1) / 2 + (unflushed_end..b_end).sum::<i64>();
        assert_eq!(
            b.cmd("scan"),
            format!("rows {expected_rows} {expected_sum}")
        );
        // A syncs to B's state: the fenced flush left no file behind on the shared store.
        a.ok("sync");
        assert_eq!(
            a.cmd("scan"),
            format!("rows {expected_rows} {expected_sum}")
        );
        if let Some(shared) = store.strip_prefix("fs:") {
            let files = b.cmd("files");
            let named: Vec<&str> = files
                .strip_prefix("files ")
                .unwrap()
                .split(',')
                .filter(|s| !s.is_empty())
                .collect();
            let on_disk = parquet_files(Path::new(shared));
            assert_eq!(on_disk.len(), named.len(), "{on_disk:?} vs {named:?}");
        }
        a.stop();
        b.stop();
    }
}

fn signal(engine: &Engine2, signal: Signal) {
    nix::sys::signal::kill(engine.pid(), signal).unwrap();
}

/// The key a halted writer stopped at (`stopped <key> Halted`).
fn halted_at(reply: &str) -> i64 {
    let words: Vec<&str> = reply.split(' ').collect();
    assert_eq!(words.get(2), Some(&"Halted"), "{reply}");
    words[1].parse().unwrap()
}

/// Parquet files under `dir`, recursively.
fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                found.push(path);
            }
        }
    }
    found
}

const FOLLOWER_TEST: &str =
    "follower_scans_beside_a_flushing_and_compacting_leader_always_see_a_prefix";

#[test]
fn follower_scans_beside_a_flushing_and_compacting_leader_always_see_a_prefix() {
    if let Some(home) = child_home() {
        return run_child(home, FOLLOWER_POLL);
    }
    for store in stores(&tempfile::tempdir().unwrap().keep(), FOLLOWER_TEST) {
        let dir = tempfile::tempdir().unwrap();
        let mut a = Engine2::start("A", dir.path().join("a"), &store, FOLLOWER_TEST);
        let mut b = Engine2::start("B", dir.path().join("b"), &store, FOLLOWER_TEST);
        a.ok("create");
        b.ok("open follower");
        let mut next = 0;
        let mut scans = 0;
        for round in 0..12 {
            // A writes, then flushes (and compacts every third round) while B scans.
            a.ok(&format!("writer {next} 8"));
            next = halted_at(&a.cmd("halt"));
            a.send(if round % 3 == 2 { "compact" } else { "flush" });
            // B's scans run while A's flush or compaction does.
            for _ in 0..3 {
                b.ok("sync");
                let seen = b.cmd("scan");
                let count: i64 = seen
                    .strip_prefix("rows ")
                    .unwrap_or_else(|| panic!("round {round}: {seen}"))
                    .split(' ')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(seen, prefix(count), "round {round}: not a prefix");
                assert!(count <= next);
                scans += 1;
            }
            let done = a.reply();
            assert_eq!(done, "ok", "round {round}");
        }
        a.ok("flush");
        b.ok("sync");
        assert_eq!(b.cmd("scan"), prefix(next));
        eprintln!("{FOLLOWER_TEST}: {scans} follower scans on {store}, all prefixes");
        a.stop();
        b.stop();
    }
}

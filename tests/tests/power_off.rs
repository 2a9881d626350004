//! Power-off crash test: with `sync = always` every acknowledged row survives a power loss
//! — not only a process kill — nothing unwritten appears, and reopening always succeeds;
//! with `never` or an interval, what survives is a prefix of what was written.
//!
//! The parent mounts the power-off file system (`strata-powerfs`), which keeps written
//! data volatile until its file is synced and new names until their directory is. Each
//! cycle it starts its own binary as the **writer** (the crash harness's child: file WAL,
//! a 1 MiB budget and a flush every 13 writes so flushes and manifest checkpoints are
//! frequent) on the mount, cuts the power at a seeded moment — after a number of
//! acknowledged writes (sometimes none: during open and replay), or after a number of
//! file-system operations, which lands anywhere (inside a flush, between an SST and its
//! manifest edit, during a rotation) — by killing the writer and dropping everything
//! volatile (half the time keeping a torn prefix of each file's unsynced writes), then
//! starts the **checker**, which reopens the engine and holds every region to the side file
//! kept outside the mount. Under `always`, crashes pile up on one directory for 5 cycles;
//! `never` and `50ms` get a fresh directory per cycle. Needs FUSE: fails, never skips,
//! without it. The regression tests after it pin each durability fix the suite found.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    clippy::print_stdout,
    missing_docs
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use strata_engine::Clock;

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;
use strata_powerfs::PowerFs;
use strata_tests::crash::{Expect, check_with, read_side, run_writer};

const ROLE_ENV: &str = "STRATA_POWER_OFF_ROLE";
const TEST_NAME: &str = "acknowledged_rows_survive_power_loss_and_reopen_always_succeeds";

#[test]
fn acknowledged_rows_survive_power_loss_and_reopen_always_succeeds() {
    let var = |name| std::env::var(name).unwrap();
    match std::env::var(ROLE_ENV).as_deref() {
        Ok("writer") => run_writer(
            Path::new(&var("STRATA_POWER_OFF_DATA")),
            Path::new(&var("STRATA_POWER_OFF_SIDE")),
            var("STRATA_POWER_OFF_SEED").parse().unwrap(),
            var("STRATA_POWER_OFF_SYNC").parse().unwrap(),
        ),
        Ok("check") => {
            let expect = match var("STRATA_POWER_OFF_EXPECT").as_str() {
                "prefix" => Expect::Prefix,
                _ => Expect::EveryAcknowledged,
            };
            let found = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
                .block_on(check_with(
                    Path::new(&var("STRATA_POWER_OFF_DATA")),
                    Path::new(&var("STRATA_POWER_OFF_SIDE")),
                    &var("STRATA_POWER_OFF_CONTEXT"),
                    expect,
                ));
            println!("found {found} rows");
        }
        _ => run_parent(),
    }
}

/// Starts this binary in `role` with the given environment.
fn start(role: &str, env: &[(&str, String)]) -> std::process::Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads", "1"])
        .env(ROLE_ENV, role)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    command.spawn().unwrap()
}

/// One sync policy's run of power-offs.
struct Phase {
    sync: &'static str,
    cycles: u64,
    /// Power-offs that pile up on one directory (1: a fresh directory each cycle).
    per_directory: u64,
    expect: &'static str,
}

/// What a phase saw.
#[derive(Default)]
struct Tally {
    by_acks: usize,
    during_open: usize,
    by_ops: usize,
    torn: usize,
    lost_data: usize,
    lost_names: usize,
    /// Power-offs that came while the WAL kept reclaimed segment files for reuse.
    with_kept_segments: usize,
    acked_rows: u64,
    found_rows: u64,
    writing: Duration,
    checking: Duration,
}

fn run_parent() {
    let seed = strata_tests::seed(0x90fe_0ff5);
    eprintln!("power-off test: SEED={seed}");
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let root = tempfile::tempdir().unwrap();
    let mount = root.path().join("mnt");
    std::fs::create_dir(&mount).unwrap();
    let mut fs = PowerFs::mount(&mount).unwrap_or_else(|e| {
        panic!(
            "cannot mount the power-off file system at {}: {e} (this suite needs FUSE: /dev/fuse, and root or fusermount3 from the fuse3 package)",
            mount.display()
        )
    });
    let always = std::env::var("STRATA_POWER_OFF_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100 * strata_tests::stress());
    let phases = [
        // Crashes pile up on one directory for 5 cycles, then a fresh one starts: the
        // writer flushes every 13 writes (so power-offs land in flushes and checkpoints
        // often), and without compaction every flush adds a file later checks scan again.
        Phase {
            sync: "always",
            cycles: always,
            per_directory: 5,
            expect: "every acknowledged",
        },
        // Acknowledged rows may be lost, but only as a suffix: a fresh directory per cycle,
        // each region a prefix of what was written.
        Phase {
            sync: "never",
            cycles: always.div_ceil(4),
            per_directory: 1,
            expect: "prefix",
        },
        Phase {
            sync: "50ms",
            cycles: always.div_ceil(4),
            per_directory: 1,
            expect: "prefix",
        },
    ];
    for phase in &phases {
        let t = run_phase(&mut fs, &mount, root.path(), phase, seed, &mut rng);
        let outcome = if phase.expect == "prefix" {
            format!(
                "{} acknowledged rows, {} there after the power-offs, each region a prefix of what was written",
                t.acked_rows, t.found_rows
            )
        } else {
            "every acknowledged row there after each".to_string()
        };
        eprintln!(
            "power-off test, sync = {}: {} power-offs ({} after acknowledged writes, {} of them during open/replay; {} after a number of file-system operations; {} torn); {} lost unsynced file data, {} lost unsynced names, {} came while reclaimed WAL segments were kept for reuse; {outcome}; {:.1}s writing, {:.1}s checking",
            phase.sync,
            phase.cycles,
            t.by_acks,
            t.during_open,
            t.by_ops,
            t.torn,
            t.lost_data,
            t.lost_names,
            t.with_kept_segments,
            t.writing.as_secs_f64(),
            t.checking.as_secs_f64(),
        );
    }
    fs.unmount().unwrap();
}

fn run_phase(
    fs: &mut PowerFs,
    mount: &Path,
    root: &Path,
    phase: &Phase,
    seed: u64,
    rng: &mut Pcg64Mcg,
) -> Tally {
    let mut t = Tally::default();
    for cycle in 0..phase.cycles {
        let context = format!("sync {} cycle {cycle} (SEED={seed})", phase.sync);
        let batch = cycle / phase.per_directory;
        let data = mount.join(format!("{}-{batch}", phase.sync));
        let side = root.join(format!("side-{}-{batch}.log", phase.sync));
        let env = [
            ("STRATA_POWER_OFF_DATA", data.display().to_string()),
            ("STRATA_POWER_OFF_SIDE", side.display().to_string()),
            ("STRATA_POWER_OFF_SEED", (seed ^ cycle).to_string()),
            ("STRATA_POWER_OFF_SYNC", phase.sync.to_string()),
            ("STRATA_POWER_OFF_EXPECT", phase.expect.to_string()),
            ("STRATA_POWER_OFF_CONTEXT", context.clone()),
        ];
        let started = strata_engine::SystemClock.now();
        let mut writer = start("writer", &env);
        let mut lines = BufReader::new(writer.stdout.take().unwrap()).lines();
        if rng.random_bool(0.5) {
            // After a number of acknowledged writes (none: during open and replay).
            let acks = if rng.random_range(0..6) == 0 {
                0
            } else {
                rng.random_range(1..40)
            };
            t.by_acks += 1;
            t.during_open += usize::from(acks == 0);
            let mut seen = 0;
            while seen < acks {
                match lines.next() {
                    Some(Ok(line)) if line.starts_with("ack ") => seen += 1,
                    Some(Ok(_)) => {}
                    _ => break,
                }
            }
            assert_eq!(seen, acks, "{context}: the writer ended early");
        } else {
            // Right after a number of file-system operations — anywhere in the writer's
            // work: the file system freezes there, so nothing after it takes effect.
            let target = fs.ops() + rng.random_range(1..4_000);
            fs.freeze_after(Some(target));
            t.by_ops += 1;
            while !fs.wait_for_ops(target + 1, Duration::from_millis(100)) {
                if let Some(status) = writer.try_wait().unwrap() {
                    let stderr = std::io::read_to_string(writer.stderr.take().unwrap());
                    panic!("{context}: the writer ended on its own: {status}: {stderr:?}");
                }
            }
        }
        // A writer killed inside a frozen call dies once the call fails.
        writer.kill().unwrap();
        fs.fail_frozen();
        writer.wait().unwrap();
        drop(lines);
        t.writing += strata_engine::SystemClock.elapsed(started);
        // Reclaimed segments kept for reuse when the power goes (the rename that keeps
        // them is undone by the power-off unless a later directory sync made it durable).
        let kept = std::fs::read_dir(data.join("wal")).map_or(0, |entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".wal.free"))
                .count()
        });
        t.with_kept_segments += usize::from(kept > 0);
        let tear = rng.random_bool(0.5);
        t.torn += usize::from(tear);
        let report = if tear {
            fs.power_off(Some(&mut *rng)).unwrap()
        } else {
            fs.power_off(None::<&mut Pcg64Mcg>).unwrap()
        };
        t.lost_data += usize::from(report.files_with_unsynced_data > 0);
        t.lost_names += usize::from(report.dirs_with_unsynced_entries > 0);
        let started = strata_engine::SystemClock.now();
        let checker = start("check", &env).wait_with_output().unwrap();
        assert!(
            checker.status.success(),
            "{context}: after a power-off ({report:?}) the check failed:\n{}",
            String::from_utf8_lossy(&checker.stderr)
        );
        t.checking += strata_engine::SystemClock.elapsed(started);
        if phase.per_directory == 1 {
            let side = read_side(&side);
            t.acked_rows += side
                .acked
                .values()
                .flatten()
                .map(|(start, end)| (end - start) as u64)
                .sum::<u64>();
            // The checker's line may share a line with the test harness's output.
            let stdout = String::from_utf8_lossy(&checker.stdout);
            let found = stdout.split("found ").nth(1).map(|rest| {
                rest.chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
            });
            t.found_rows += found
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{context}: the checker reported no count: {stdout}"));
        }
    }
    t
}

// Regression tests, one per durability point the suite above found missing: each fails
// with its fix taken out.

/// A mounted power-off file system, and a tokio runtime to drive the engine with.
fn mounted() -> (tempfile::TempDir, PowerFs, tokio::runtime::Runtime) {
    let root = tempfile::tempdir().unwrap();
    let fs = PowerFs::mount(root.path())
        .unwrap_or_else(|e| panic!("cannot mount the power-off file system (needs FUSE): {e}"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    (root, fs, runtime)
}

fn no_tear() -> Option<&'static mut Pcg64Mcg> {
    None
}

#[test]
fn objects_written_to_the_fs_store_survive_a_power_off_new_directories_included() {
    let (root, mut fs, runtime) = mounted();
    let store_root = root.path().join("data");
    let store = strata_engine::ObjectStoreConfig::Fs {
        root: store_root.clone(),
    }
    .build()
    .unwrap();
    runtime.block_on(async {
        store
            .write("regions/1/1_0000000000/manifest/00.json", "delta")
            .await
            .unwrap();
        store.write("regions/1/gone", "x").await.unwrap();
        store.delete("regions/1/gone").await.unwrap();
    });
    drop(store);
    fs.power_off(no_tear()).unwrap();
    let delta = store_root.join("regions/1/1_0000000000/manifest/00.json");
    assert_eq!(std::fs::read_to_string(&delta).unwrap(), "delta");
    assert!(
        !store_root.join("regions/1/gone").exists(),
        "a delete is durable too"
    );
}

#[test]
fn a_new_wal_directory_and_its_synced_entries_survive_a_power_off() {
    let (root, mut fs, runtime) = mounted();
    let dir = root.path().join("data/wal");
    runtime.block_on(async {
        let wal =
            strata_wal::FileLogStore::open(&dir, strata_wal::FileLogStoreConfig::default(), None)
                .unwrap();
        use strata_wal::LogStore;
        wal.append_batch(vec![strata_wal::Entry {
            region_id: 7,
            entry_id: 1,
            data: "row".into(),
        }])
        .await
        .unwrap();
        wal.stop().await.unwrap();
    });
    fs.power_off(no_tear()).unwrap();
    let wal = strata_wal::FileLogStore::open(&dir, strata_wal::FileLogStoreConfig::default(), None)
        .unwrap();
    assert_eq!(
        strata_wal::LogStore::last_entry_id(&wal, 7),
        Some(1),
        "the acknowledged entry (and the directory holding it) survived"
    );
}

#[test]
fn a_created_region_and_its_acknowledged_rows_survive_a_power_off_right_after() {
    let (root, mut fs, runtime) = mounted();
    let data = root.path().join("data");
    runtime.block_on(async {
        let engine = strata_engine::EngineBuilder::new(strata_tests::crash::config(&data))
            .build()
            .await
            .unwrap();
        strata_tests::crash::open_all(&engine).await;
        let region = strata_tests::crash::region(0);
        engine
            .write(strata_engine::WriteRequest::put(
                region,
                strata_tests::crash::rows(region, 0, 10),
            ))
            .await
            .unwrap();
        engine.flush(region).await.unwrap();
        engine
            .write(strata_engine::WriteRequest::put(
                region,
                strata_tests::crash::rows(region, 10, 20),
            ))
            .await
            .unwrap();
        engine.stop().await.unwrap();
    });
    fs.power_off(no_tear()).unwrap();
    runtime.block_on(async {
        let engine = strata_engine::EngineBuilder::new(strata_tests::crash::config(&data))
            .build()
            .await
            .unwrap();
        let region = strata_tests::crash::region(0);
        engine.open(region).await.unwrap();
        assert_eq!(strata_tests::count_rows(&engine, region).await, 20);
        engine.stop().await.unwrap();
    });
}

#[test]
fn a_dropped_region_stays_dropped_after_a_power_off_right_after_the_drop() {
    let (root, mut fs, runtime) = mounted();
    let data = root.path().join("data");
    let region = strata_tests::crash::region(0);
    runtime.block_on(async {
        let engine = strata_engine::EngineBuilder::new(strata_tests::crash::config(&data))
            .build()
            .await
            .unwrap();
        strata_tests::crash::open_all(&engine).await;
        for (start, end) in [(0, 10), (10, 20)] {
            engine
                .write(strata_engine::WriteRequest::put(
                    region,
                    strata_tests::crash::rows(region, start, end),
                ))
                .await
                .unwrap();
            engine.flush(region).await.unwrap();
        }
        engine
            .write(strata_engine::WriteRequest::put(
                region,
                strata_tests::crash::rows(region, 20, 30),
            ))
            .await
            .unwrap();
        engine.drop_region(region).await.unwrap();
        engine.stop().await.unwrap();
    });
    fs.power_off(no_tear()).unwrap();
    runtime.block_on(async {
        let engine = strata_engine::EngineBuilder::new(strata_tests::crash::config(&data))
            .build()
            .await
            .unwrap();
        let error = engine.open(region).await.unwrap_err();
        assert_eq!(
            error.kind(),
            strata_engine::ErrorKind::RegionNotFound,
            "the dropped region came back: {error}"
        );
        // A region created again under the id starts empty.
        strata_tests::crash::open_all(&engine).await;
        assert_eq!(strata_tests::count_rows(&engine, region).await, 0);
        engine.stop().await.unwrap();
    });
}

const WAL_ROLE_ENV: &str = "STRATA_POWER_OFF_WAL_DIR";
const WAL_TEST: &str = "the_wal_recovers_after_a_power_off_at_every_step_of_rotation_and_reuse";

fn wal_config() -> strata_wal::FileLogStoreConfig {
    {
        let mut cfg = strata_wal::FileLogStoreConfig::default();
        cfg.segment_size = 4 << 10;
        cfg.recycle_segments = 2;
        cfg
    }
}

fn wal_payload(region: u64, id: u64) -> bytes::Bytes {
    bytes::Bytes::from(
        (0..300u32)
            .map(|i| (region as u8) ^ (id as u8).wrapping_mul(7) ^ (i as u8))
            .collect::<Vec<u8>>(),
    )
}

/// The WAL workload: 60 appends to two regions, obsoleting behind every 5, printing
/// `ack {id}` as each append returns and `obsolete {id}` before each obsolete is issued (it
/// may take effect as soon as it is: the caller no longer needs those entries).
fn run_wal_writer(dir: &Path) {
    use std::io::Write;
    use strata_wal::LogStore;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let wal = strata_wal::FileLogStore::open(dir, wal_config(), None).unwrap();
        let mut out = std::io::stdout();
        for id in 1..=60u64 {
            let entries = [1u64, 2]
                .iter()
                .map(|&region| strata_wal::Entry {
                    region_id: region,
                    entry_id: id,
                    data: wal_payload(region, id),
                })
                .collect();
            wal.append_batch(entries).await.unwrap();
            writeln!(out, "ack {id}").unwrap();
            if id % 5 == 0 {
                writeln!(out, "obsolete {}", id - 2).unwrap();
                for region in [1, 2] {
                    wal.obsolete(region, id - 2).await.unwrap();
                }
            }
        }
        wal.stop().await.unwrap();
        writeln!(out, "done").unwrap();
    });
}

/// Opens the log after a power-off and holds it to what the writer printed.
fn check_wal(dir: &Path, printed: &str, context: &str) {
    use futures::TryStreamExt;
    use strata_wal::LogStore;
    let acked = printed
        .lines()
        .filter_map(|l| l.strip_prefix("ack ")?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    let obsolete = printed
        .lines()
        .filter_map(|l| l.strip_prefix("obsolete ")?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let wal = strata_wal::FileLogStore::open(dir, wal_config(), None)
            .unwrap_or_else(|e| panic!("{context}: the log does not open: {e}"));
        for region in [1u64, 2] {
            let chunks: Vec<Vec<strata_wal::Entry>> = wal
                .read(region, 0)
                .unwrap()
                .try_collect()
                .await
                .unwrap_or_else(|e| panic!("{context}: reading region {region}: {e}"));
            let ids: Vec<u64> = chunks.iter().flatten().map(|e| e.entry_id).collect();
            for entry in chunks.iter().flatten() {
                assert_eq!(entry.data, wal_payload(region, entry.entry_id), "{context}");
            }
            assert!(
                ids.windows(2).all(|w| w[1] == w[0] + 1),
                "{context}: region {region} has a gap: {ids:?}"
            );
            assert!(
                ((obsolete + 1)..=acked).all(|id| ids.contains(&id)),
                "{context}: region {region} lost acknowledged entries: has {ids:?}, acknowledged {}..={acked}",
                obsolete + 1
            );
            assert!(ids.iter().all(|&id| id <= 60), "{context}: invented entries");
        }
        wal.stop().await.unwrap();
    });
}

#[test]
fn the_wal_recovers_after_a_power_off_at_every_step_of_rotation_and_reuse() {
    if let Ok(dir) = std::env::var(WAL_ROLE_ENV) {
        run_wal_writer(Path::new(&dir));
        return;
    }
    let (root, mut fs, _runtime) = mounted();
    let start_writer = |dir: &Path| {
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", WAL_TEST, "--nocapture", "--test-threads", "1"])
            .env(WAL_ROLE_ENV, dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let printed = |child: std::process::Child| {
        String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned()
    };
    // The workload's length in file-system operations.
    let start = fs.ops();
    let calibration = printed(start_writer(&root.path().join("calibrate")));
    assert!(
        calibration.contains("done"),
        "the workload runs through: {calibration}"
    );
    let steps = fs.ops() - start;
    let seed = strata_tests::seed(0x3a1f);
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    // Every step; under stress, every step again for each round (other tears).
    let points: Vec<u64> = (0..strata_tests::stress()).flat_map(|_| 0..steps).collect();
    for &k in &points {
        let dir = root.path().join(format!("wal-{k}"));
        let limit = fs.ops() + k;
        fs.freeze_after(Some(limit));
        let mut writer = start_writer(&dir);
        // Stopped right after step `k` (its next operation waits), or finished before.
        while !fs.wait_for_ops(limit + 1, Duration::from_millis(50)) {
            if writer.try_wait().unwrap().is_some() {
                break;
            }
        }
        // A process killed inside a file-system call dies once the call is answered: the
        // frozen call fails (EIO, no effect), the writer is collected, then the power goes.
        let _ = writer.kill();
        fs.fail_frozen();
        let printed = printed(writer);
        if rng.random_bool(0.5) {
            fs.power_off(Some(&mut rng)).unwrap();
        } else {
            fs.power_off(None::<&mut Pcg64Mcg>).unwrap();
        }
        check_wal(
            &dir,
            &printed,
            &format!("power off after step {k} of {steps} (SEED={seed})"),
        );
    }
    eprintln!(
        "WAL power-off at {} of the workload's {steps} file-system steps, half of them torn (SEED={seed}): the log opened and held every acknowledged entry each time",
        points.len()
    );
}

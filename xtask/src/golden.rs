//! `cargo xtask golden [<era>…]`: builds the golden fixtures — one small data directory
//! per on-disk format era Strata has written, each written by the build of that era.
//!
//! For each era the generator checks out the era's commit into a worktree under
//! `target/golden/src/`, builds its `strata` (debug, `--locked`, target dir
//! `target/golden/target/<era>`), runs `strata ingest` with a tiny fixed workload and
//! [`CONFIG`] (small write buffers, row groups and checkpoint distance, so the directory
//! holds several flushed and compacted files, checkpoints and — from time slices on —
//! sliced SSTs), copies the data directory into
//! `crates/strata-cli/tests/fixtures/formats/<era>/data`, and records what that build's
//! own `strata scan --format json` returns for each region as `expected/<region>.jsonl`.
//! `crates/strata-cli/tests/formats.rs` reads every fixture with today's build and
//! compares.
//!
//! Fixtures are built once: an existing fixture directory is left alone (delete it to
//! rebuild). A change to an on-disk format adds an era here, pinned to the commit that
//! introduced it, and runs `cargo xtask golden <era>`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One format era: the commit whose build writes it.
struct Era {
    /// Directory name under the fixtures directory.
    name: &'static str,
    /// The commit to build.
    commit: &'static str,
    /// What this era's files look like, for the fixture's README.
    formats: &'static str,
}

/// Every era, oldest first.
const ERAS: &[Era] = &[
    Era {
        name: "1-bare-deltas",
        commit: "a2a6ff57383190d0081fb416b13d51219418b88e",
        formats: "SST format 1 (one run sorted by key), manifest deltas format 1 (a bare \
                  action list, no checksum), checkpoints format 1, WAL entries format 1 \
                  (uncompressed); no compaction yet",
    },
    Era {
        name: "2-pre-slice",
        commit: "1ccd071396896725f0e7e51615076c05797ac110",
        formats: "SST format 1, manifest deltas format 2 (checksummed), checkpoints \
                  format 1, WAL entries format 2 (zstd); compacted level-1 files, region \
                  TTL option and compaction window recorded",
    },
    Era {
        name: "3-sliced-unmarked",
        commit: "5eaf8e214e52ed3c148420339fe83a9a911b992b",
        formats: "SST format 2 (time slices) without the footer's format key, manifest \
                  deltas format 2 carrying time-slice widths, checkpoints format 1",
    },
    Era {
        name: "4-format-gate",
        commit: "13c0d3a9f169e301e32da99677fad52a0846fc6a",
        formats: "SST format 2 with `strata.format` in the footer, manifest deltas \
                  format 3, checkpoints format 2 (`state` renamed so older builds refuse \
                  them)",
    },
];

/// The engine configuration every era runs with; only keys every era knows.
const CONFIG: &str = r#"num_workers = 1
global_write_buffer_size = "4MiB"
default_region_write_buffer_size = "48KiB"
manifest_checkpoint_distance = 3

[sst]
row_group_size = 64

[wal]
segment_size = "1MiB"
"#;

/// The workload: hosts × epochs rows (TSBS cpu), over `REGIONS` regions, one writer.
const INGEST: &[&str] = &[
    "--hosts",
    "4",
    "--epochs",
    "280",
    "--regions",
    "2",
    "--writers",
    "1",
    "--batch-rows",
    "40",
    "--seed",
    "7",
];

/// The regions the workload writes (table 1024, regions 0 and 1).
const REGIONS: &[&str] = &["1024.0", "1024.1"];

pub(crate) fn golden(root: &Path, names: &[String]) -> Result<(), String> {
    let fixtures = root.join("crates/strata-cli/tests/fixtures/formats");
    let eras: Vec<&Era> = if names.is_empty() {
        ERAS.iter().collect()
    } else {
        names
            .iter()
            .map(|name| {
                ERAS.iter().find(|era| era.name == name).ok_or_else(|| {
                    let known: Vec<&str> = ERAS.iter().map(|era| era.name).collect();
                    format!("unknown era {name:?}; eras: {}", known.join(", "))
                })
            })
            .collect::<Result<_, _>>()?
    };
    for era in eras {
        let out = fixtures.join(era.name);
        if out.exists() {
            println!("golden: {} exists; delete it to rebuild", out.display());
            continue;
        }
        build_era(root, era, &out)?;
    }
    Ok(())
}

fn build_era(root: &Path, era: &Era, out: &Path) -> Result<(), String> {
    let work = root.join("target/golden");
    let source = work.join("src").join(era.name);
    if !source.exists() {
        run(
            root,
            "git",
            &["worktree", "add", "--detach", &path(&source), era.commit],
        )?;
    }
    // One target directory per era: cargo identifies workspace members by their path
    // relative to the workspace root, so two worktrees sharing a target directory would
    // mix one era's crates into another's build.
    let target = work.join("target").join(era.name);
    println!("golden: building strata at {} ({})", era.commit, era.name);
    let status = Command::new("cargo")
        .args(["build", "--locked", "-p", "strata-cli", "--bin", "strata"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(&source)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building {} failed ({status})", era.commit));
    }
    // Keep the era's binary beside the others (downgrade checks run them by hand).
    let strata = work.join(format!("strata-{}", era.name));
    fs::copy(target.join("debug/strata"), &strata).map_err(|e| format!("copy strata: {e}"))?;

    let run_dir = work.join("run").join(era.name);
    let _ = fs::remove_dir_all(&run_dir);
    fs::create_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    let config = run_dir.join("strata.toml");
    fs::write(&config, CONFIG).map_err(|e| format!("{}: {e}", config.display()))?;
    let data = run_dir.join("data");
    // Relative to the run directory, so the README shows the command as one would type it.
    let engine = ["--config", "strata.toml", "--data-dir", "data"];
    let mut ingest = vec!["ingest"];
    ingest.extend(engine);
    ingest.extend(INGEST);
    run(&run_dir, &path(&strata), &ingest)?;

    // The fixture is the directory as the ingest left it but for the WAL: the ingest
    // flushed every region before it stopped, so the log holds no row the SSTs lack (WAL
    // formats have their own tests; the first era's segments are a format this build
    // refuses by design). The expected rows come from the era's own scan of a copy with
    // the WAL (an old scan may open read-write and change the directory).
    copy_dir(&data, &out.join("data"))?;
    let scanned = run_dir.join("scanned");
    copy_dir(&data, &scanned)?;
    copy_dir(&data.join("wal"), &scanned.join("wal"))?;
    let expected = out.join("expected");
    fs::create_dir_all(&expected).map_err(|e| format!("{}: {e}", expected.display()))?;
    for region in REGIONS {
        let output = Command::new(&strata)
            .args([
                "scan",
                "--config",
                &path(&config),
                "--data-dir",
                &path(&scanned),
            ])
            .args(["--region", region, "--format", "json"])
            .output()
            .map_err(|e| format!("cannot run {}: {e}", strata.display()))?;
        if !output.status.success() {
            return Err(format!(
                "scan of {region} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let file = expected.join(format!("{region}.jsonl"));
        fs::write(&file, &output.stdout).map_err(|e| format!("{}: {e}", file.display()))?;
    }
    fs::write(out.join("strata.toml"), CONFIG).map_err(|e| format!("strata.toml: {e}"))?;
    let readme = format!(
        "# Golden fixture `{name}`\n\n{formats}.\n\nWritten by `cargo xtask golden {name}`: \
         the `strata` built at commit `{commit}` ran\n\n    strata {ingest}\n\nwith \
         `strata.toml` beside this file. `data/` is the directory it left, without the WAL (the \
         ingest flushed every region before it stopped); `expected/` holds that build's \
         `strata scan --format json` of each region, WAL included. Do not edit: rebuild \
         with the generator.\n",
        name = era.name,
        formats = era.formats,
        commit = era.commit,
        ingest = ingest.join(" "),
    );
    fs::write(out.join("README.md"), readme).map_err(|e| format!("README.md: {e}"))?;
    println!("golden: wrote {}", out.display());
    Ok(())
}

fn run(dir: &Path, program: &str, args: &[&str]) -> Result<(), String> {
    println!("golden: {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .status()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} {} failed ({status})", args.join(" ")))
    }
}

/// Copies a directory tree (regular files and directories), but for the engine's `LOCK`
/// file (a fixture is never held) and its `wal` directory (see above); the scanned copy
/// gets the WAL back.
fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let entries = fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", from.display()))?;
        let name = entry.file_name();
        let source: PathBuf = entry.path();
        if name == "LOCK" || name == "wal" {
            continue;
        }
        if source.is_dir() {
            copy_dir(&source, &to.join(&name))?;
        } else {
            fs::copy(&source, to.join(&name)).map_err(|e| format!("{}: {e}", source.display()))?;
        }
    }
    Ok(())
}

fn path(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

//! `cargo xtask ci` and `cargo xtask stress`.

use std::path::Path;
use std::process::Command;

use crate::fuse;
use crate::layering;
use crate::publish;
use crate::s3;
use crate::step::Steps;

/// Case multiplier the randomized suites read from `STRATA_STRESS` (1 = CI counts).
const STRESS_FACTOR: &str = "20";

/// fmt, clippy, layering, docs, packaging and unused dependencies, tests. Tests run last so the runner's summary closes the log.
pub(crate) fn ci(root: &Path) -> Result<(), String> {
    let seed = root_seed();
    let mut steps = Steps::default();
    steps.run(
        root,
        "fmt",
        "cargo",
        &["fmt", "--all", "--", "--check"],
        &[],
    )?;
    steps.run(
        root,
        "clippy",
        "cargo",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    steps.check("layering", || layering::check_workspace(root))?;
    steps.run(
        root,
        "doc",
        "cargo",
        &["doc", "--workspace", "--no-deps", "--locked"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )?;
    publish::run(root, &mut steps)?;
    run_tests(root, &mut steps, &seed, "1")?;
    println!("xtask ci: {}", steps.summary());
    Ok(())
}

/// The randomized suites with `STRATA_STRESS` case counts.
pub(crate) fn stress(root: &Path) -> Result<(), String> {
    let seed = root_seed();
    let mut steps = Steps::default();
    run_tests(root, &mut steps, &seed, STRESS_FACTOR)?;
    println!("xtask stress: {}", steps.summary());
    Ok(())
}

/// Doc tests, then every other test (with nextest when installed, else `cargo test`).
fn run_tests(root: &Path, steps: &mut Steps, seed: &str, stress: &str) -> Result<(), String> {
    let proptest_cases = (256 * stress.parse::<u32>().unwrap_or(1)).to_string();
    let mut envs = vec![
        ("SEED", seed),
        ("PROPTEST_RNG_SEED", seed),
        ("STRATA_STRESS", stress),
        ("PROPTEST_CASES", proptest_cases.as_str()),
    ];
    // A loopback S3 server for the S3 tests, which this run requires: without one they
    // fail, naming why it could not start.
    envs.push(("STRATA_S3_REQUIRED", "1"));
    let (server, unavailable) = match s3::start(root) {
        Ok(server) => {
            println!("S3 tests use a moto server at {}", server.endpoint);
            (Some(server), String::new())
        }
        Err(reason) => {
            println!("S3 tests will FAIL: no S3 server: {reason}");
            (None, reason)
        }
    };
    if let Some(server) = &server {
        envs.push(("STRATA_S3_ENDPOINT", server.endpoint.as_str()));
        envs.push(("STRATA_S3_BUCKET", s3::BUCKET));
    } else {
        envs.push(("STRATA_S3_UNAVAILABLE", unavailable.as_str()));
    }
    fuse::prepare();
    let envs = envs.as_slice();
    println!(
        "randomized tests use SEED={seed}; replay a failure with `SEED={seed} cargo xtask ...`"
    );
    steps.run(
        root,
        "doctests",
        "cargo",
        &["test", "--workspace", "--doc", "--locked"],
        envs,
    )?;
    if has_nextest() {
        steps.run(
            root,
            "tests",
            "cargo",
            &[
                "nextest",
                "run",
                "--workspace",
                "--locked",
                "--no-fail-fast",
                "--profile",
                if stress == "1" { "ci" } else { "stress" },
            ],
            envs,
        )
    } else {
        steps.run(
            root,
            "tests",
            "cargo",
            &["test", "--workspace", "--locked", "--no-fail-fast"],
            envs,
        )
    }
}

fn has_nextest() -> bool {
    Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|out| out.status.success())
}

/// `SEED` from the environment, or a fresh one from the clock and process id.
fn root_seed() -> String {
    if let Ok(seed) = std::env::var("SEED") {
        return seed;
    }
    #[allow(clippy::disallowed_methods)] // a seed source, not engine time
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (nanos ^ ((std::process::id() as u64) << 32)).to_string()
}

//! `cargo xtask`: the one entry point for Strata's checks.
//!
//! - `cargo xtask ci` — fmt check, clippy (`-D warnings`), the layering check, doc build
//!   (warnings denied), crate metadata + `cargo package` of every publishable crate + the
//!   unused-dependency check (cargo-machete), then every test. This is exactly what CI runs.
//! - `cargo xtask stress` — the randomized suites with large case counts.
//! - `cargo xtask layering` — only the layering check.
//! - `cargo xtask bench` — every benchmark, once; results go to `docs/benchmarks.md`.
//! - `cargo xtask golden [<era>…]` — builds the golden fixtures of the on-disk formats,
//!   each with the build of its era (see `golden.rs`).
//!
//! Randomized tests take their root seed from `SEED` (random when unset, always printed), so
//! a failure replays with `SEED=<n> cargo xtask ci`.

// xtask is a command-line tool: printing is its job.
// Tooling, not the engine: it times its steps and waits for its servers on wall time.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_methods)]

mod bench;
mod ci;
mod fuse;
mod golden;
mod layering;
mod publish;
mod python;
mod s3;
mod step;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  ci         fmt, clippy -D warnings, layering, docs, cargo package, unused deps, all tests (what CI runs)
  stress     randomized suites with large case counts (SEED=<n> to replay)
  layering   check that crate dependencies only point down (see docs/architecture.md)
  bench      run the benchmarks and write docs/benchmarks.md
  golden     build the golden fixture of each on-disk format era (or of the eras named)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = project_root();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::ci(&root),
        Some("stress") => ci::stress(&root),
        Some("layering") => layering::run(&root),
        Some("bench") => bench::bench(&root),
        Some("golden") => golden::golden(&root, &args[1..]),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown command {other:?}\n\n{USAGE}")),
        None => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root: xtask's manifest lives one level below it.
fn project_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}

//! Python packages from PyPI in a virtual environment under `target/python` (never the
//! user's Python): the S3 tests' moto server, the scan benchmark's DuckDB.

use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `program args`, failing with the last line of its stderr.
pub(crate) fn quiet(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ))
    }
}

/// The virtual environment's python with `package` (a pinned pip spec) installed.
pub(crate) fn with_package(root: &Path, package: &str) -> Result<String, String> {
    let venv = root.join("target/python");
    let python = venv.join("bin/python");
    if !python.exists() {
        quiet("python3", &["-m", "venv", &venv.to_string_lossy()])?;
    }
    let python = python.to_string_lossy().into_owned();
    quiet(
        &python,
        &[
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            package,
        ],
    )?;
    Ok(python)
}

//! Publishability: every crate that may be published carries the metadata crates.io shows
//! (description, license, readme, documentation link), `cargo package` builds each from
//! its packaged sources alone, and no crate declares a dependency it does not use.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::step::Steps;

/// The packages of `cargo metadata`, with the fields publishing needs.
#[derive(Debug, Deserialize)]
struct Metadata {
    packages: Vec<Package>,
}

#[derive(Debug, Deserialize)]
struct Package {
    name: String,
    version: String,
    manifest_path: PathBuf,
    /// `Some([])` is `publish = false`; `None` may be published anywhere.
    publish: Option<Vec<String>>,
    description: Option<String>,
    license: Option<String>,
    readme: Option<String>,
    documentation: Option<String>,
    repository: Option<String>,
}

impl Package {
    fn publishable(&self) -> bool {
        !matches!(&self.publish, Some(registries) if registries.is_empty())
    }
}

/// The crate-metadata check, `cargo package` of every publishable crate, and the
/// unused-dependency check (cargo-machete, installed when missing).
pub(crate) fn run(root: &Path, steps: &mut Steps) -> Result<(), String> {
    let metadata = metadata(root)?;
    steps.check("crate metadata", || check(&metadata))?;
    let mut args = vec!["package", "--workspace", "--locked", "--allow-dirty"];
    for package in metadata.packages.iter().filter(|p| !p.publishable()) {
        args.extend(["--exclude", package.name.as_str()]);
    }
    forget_stale_extractions(&metadata);
    // Verification builds in a target directory of its own, where every Strata crate comes
    // from the temporary registry. Cargo fingerprints registry crates by name and version
    // only, so their builds from an earlier run would be reused although the sources
    // changed: forget them (third-party builds stay cached).
    let target = root.join("target/package-verify");
    forget_strata_builds(&target);
    let target_env = target.to_string_lossy().into_owned();
    steps.run(
        root,
        "package",
        "cargo",
        &args,
        &[("CARGO_TARGET_DIR", target_env.as_str())],
    )?;
    ensure_machete()?;
    // The binary itself: as `cargo machete` under `cargo xtask` (which sets
    // CARGO_PKG_NAME) it takes its own subcommand name for a directory to scan.
    steps.run(
        root,
        "unused dependencies",
        "cargo-machete",
        &["--with-metadata"],
        &[],
    )
}

fn metadata(root: &Path) -> Result<Metadata, String> {
    let json = crate::layering::cargo_metadata(root)?;
    serde_json::from_slice(&json).map_err(|e| format!("cannot parse cargo metadata: {e}"))
}

/// Every publishable crate says what it is, under which license, with a readme that
/// exists and a documentation link; no crate points at a placeholder repository.
fn check(metadata: &Metadata) -> Result<(), String> {
    let mut problems = Vec::new();
    for package in &metadata.packages {
        if let Some(repository) = &package.repository
            && (repository.contains("example.") || repository.contains("invalid"))
        {
            problems.push(format!(
                "{}: placeholder repository URL {repository}",
                package.name
            ));
        }
        if !package.publishable() {
            continue;
        }
        let missing = [
            ("description", package.description.is_none()),
            ("license", package.license.is_none()),
            ("documentation", package.documentation.is_none()),
        ];
        for (field, absent) in missing {
            if absent {
                problems.push(format!("{}: no `{field}`", package.name));
            }
        }
        match &package.readme {
            None => problems.push(format!("{}: no `readme`", package.name)),
            Some(readme) => {
                let dir = package.manifest_path.parent().unwrap_or(Path::new("."));
                if !dir.join(readme).is_file() {
                    problems.push(format!("{}: readme {readme} does not exist", package.name));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "publishable crates lack metadata (or set `publish = false`):\n  {}",
            problems.join("\n  ")
        ))
    }
}

/// `cargo package --workspace` verifies each crate against its siblings through a
/// temporary local registry, which cargo unpacks under `$CARGO_HOME/registry/src/-<hash>/`
/// and never unpacks again while `<name>-<version>` exists there — so a second run with
/// the same version would build against the sources of the first. Local registries are
/// the directories whose name starts with `-` (crates.io's start with its host name).
fn forget_stale_extractions(metadata: &Metadata) {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    let Some(cargo_home) = cargo_home else {
        return;
    };
    for kind in ["src", "cache"] {
        let Ok(registries) = std::fs::read_dir(cargo_home.join("registry").join(kind)) else {
            continue;
        };
        for registry in registries.flatten() {
            if !registry.file_name().to_string_lossy().starts_with('-') {
                continue;
            }
            for package in metadata.packages.iter().filter(|p| p.publishable()) {
                let stem = format!("{}-{}", package.name, package.version);
                let _ = std::fs::remove_dir_all(registry.path().join(&stem));
                let _ = std::fs::remove_file(registry.path().join(format!("{stem}.crate")));
            }
        }
    }
}

/// Removes the fingerprints of Strata crates under `target`, so cargo rebuilds them.
fn forget_strata_builds(target: &Path) {
    let Ok(fingerprints) = std::fs::read_dir(target.join("debug/.fingerprint")) else {
        return;
    };
    for entry in fingerprints.flatten() {
        if entry.file_name().to_string_lossy().starts_with("strata-") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Installs cargo-machete (from crates.io, pinned) when `cargo machete` is not there.
fn ensure_machete() -> Result<(), String> {
    let present = Command::new("cargo-machete")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if present {
        return Ok(());
    }
    println!("==> installing cargo-machete for the unused-dependency check");
    let status = Command::new("cargo")
        .args(["install", "cargo-machete", "--version", MACHETE, "--locked"])
        .status()
        .map_err(|e| format!("cannot run cargo install: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "cargo install cargo-machete@{MACHETE} failed ({status})"
        ))
    }
}

/// The cargo-machete release the check is pinned to.
const MACHETE: &str = "0.9.2";

#[cfg(test)]
mod tests {
    use super::*;

    fn package(name: &str, fields: serde_json::Value) -> Package {
        let mut value = serde_json::json!({
            "name": name,
            "version": "0.1.0",
            "manifest_path": format!("{}/crates/{name}/Cargo.toml", env!("CARGO_MANIFEST_DIR")),
        });
        if let (Some(target), Some(extra)) = (value.as_object_mut(), fields.as_object()) {
            target.extend(extra.clone());
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_publishable_crate_without_metadata_fails_naming_each_field() {
        let metadata = Metadata {
            packages: vec![package("strata-new", serde_json::json!({}))],
        };
        let err = check(&metadata).unwrap_err();
        for field in ["description", "license", "documentation", "readme"] {
            assert!(err.contains(&format!("strata-new: no `{field}`")), "{err}");
        }
    }

    #[test]
    fn an_unpublished_crate_needs_no_metadata_but_no_crate_may_use_a_placeholder_url() {
        let quiet = Metadata {
            packages: vec![package("tool", serde_json::json!({ "publish": [] }))],
        };
        assert_eq!(check(&quiet), Ok(()));
        let placeholder = Metadata {
            packages: vec![package(
                "tool",
                serde_json::json!({ "publish": [], "repository": "https://example.invalid/x" }),
            )],
        };
        assert!(check(&placeholder).unwrap_err().contains("placeholder"));
    }

    #[test]
    fn the_real_workspace_passes() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        check(&metadata(root).unwrap()).unwrap();
    }
}

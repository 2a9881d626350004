//! The layering check: a Strata crate may depend only on the crates listed for it below.
//!
//! The table is the rule; `docs/architecture.md` shows the same table to humans. Every
//! workspace crate must appear in it, so a new crate is placed in the layering on purpose.
//! All dependency kinds count (normal, dev and build): a test-only edge upwards still makes
//! the lower crate's tests depend on the upper crate's behaviour.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde::Deserialize;

/// Each workspace crate and the workspace crates it may depend on.
pub(crate) const ALLOWED: &[(&str, &[&str])] = &[
    // The base: error kinds and the clock. Every crate may use it (see `BASE`).
    ("strata-base", &[]),
    // Leaves: know nothing of each other.
    ("strata-request", &[]),
    ("strata-buffer", &[]),
    ("strata-scheduler", &["strata-base"]),
    ("strata-wal", &["strata-base"]),
    // Data generation for benches and tests: speaks the request vocabulary only.
    ("strata-workload", &["strata-request"]),
    // Region data: memtables, SSTs, manifest, versions, read path.
    (
        "strata-storage",
        &[
            "strata-base",
            "strata-request",
            "strata-buffer",
            "strata-workload",
        ],
    ),
    // Flush pipeline.
    (
        "strata-flush",
        &[
            "strata-base",
            "strata-request",
            "strata-buffer",
            "strata-scheduler",
            "strata-storage",
            "strata-workload",
        ],
    ),
    // Compaction: beside the flush pipeline, on storage and the scheduler.
    (
        "strata-compaction",
        &[
            "strata-base",
            "strata-request",
            "strata-scheduler",
            "strata-storage",
        ],
    ),
    // Worker group: everything below.
    (
        "strata-worker",
        &[
            "strata-base",
            "strata-request",
            "strata-buffer",
            "strata-scheduler",
            "strata-wal",
            "strata-storage",
            "strata-flush",
            "strata-compaction",
            "strata-workload",
        ],
    ),
    // The public facade.
    (
        "strata-engine",
        &[
            "strata-base",
            "strata-request",
            "strata-buffer",
            "strata-scheduler",
            "strata-wal",
            "strata-storage",
            "strata-flush",
            "strata-compaction",
            "strata-worker",
            "strata-workload",
        ],
    ),
    // Test tooling: the power-off file system knows no Strata crate; only the cross-crate
    // suites and the CLI's process tests use it.
    ("strata-powerfs", &[]),
    // Top: binaries, benches and the cross-crate test suites may use anything below.
    ("strata-cli", ALL_LIBRARIES_AND_TEST_TOOLS),
    ("strata-bench", ALL_LIBRARIES),
    ("strata-tests", ALL_LIBRARIES_AND_TEST_TOOLS),
    // A downstream project: the facade alone (the proof that it suffices).
    ("strata-example-downstream", &["strata-engine"]),
    // Tooling depends on no Strata crate.
    ("xtask", &[]),
];

const ALL_LIBRARIES: &[&str] = &[
    "strata-base",
    "strata-request",
    "strata-buffer",
    "strata-scheduler",
    "strata-wal",
    "strata-workload",
    "strata-storage",
    "strata-flush",
    "strata-worker",
    "strata-engine",
];

const ALL_LIBRARIES_AND_TEST_TOOLS: &[&str] = &[
    "strata-base",
    "strata-request",
    "strata-buffer",
    "strata-scheduler",
    "strata-wal",
    "strata-workload",
    "strata-storage",
    "strata-flush",
    "strata-compaction",
    "strata-worker",
    "strata-engine",
    "strata-powerfs",
];

#[derive(Debug, Deserialize)]
pub(crate) struct Metadata {
    packages: Vec<Package>,
    workspace_members: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Package {
    id: String,
    name: String,
    dependencies: Vec<Dependency>,
}

#[derive(Debug, Deserialize)]
struct Dependency {
    name: String,
    kind: Option<String>,
}

/// `cargo xtask layering`.
pub(crate) fn run(root: &Path) -> Result<(), String> {
    check_workspace(root)?;
    println!("layering ok: every crate depends only on crates below it");
    Ok(())
}

/// Reads `cargo metadata` for the workspace at `root` and checks it against [`ALLOWED`].
pub(crate) fn check_workspace(root: &Path) -> Result<(), String> {
    let metadata: Metadata = serde_json::from_slice(&cargo_metadata(root)?)
        .map_err(|e| format!("cannot parse cargo metadata: {e}"))?;
    check(&metadata, ALLOWED)
}

/// `cargo metadata --no-deps` of the workspace at `root`, as JSON.
pub(crate) fn cargo_metadata(root: &Path) -> Result<Vec<u8>, String> {
    let output = Command::new("cargo")
        .args(["metadata", "--format-version", "1", "--no-deps", "--locked"])
        .current_dir(root)
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Checks every dependency edge between workspace crates against `allowed`.
pub(crate) fn check(metadata: &Metadata, allowed: &[(&str, &[&str])]) -> Result<(), String> {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = allowed
        .iter()
        .map(|(name, deps)| (*name, deps.iter().copied().collect()))
        .collect();
    let members: BTreeSet<&str> = metadata
        .packages
        .iter()
        .filter(|p| metadata.workspace_members.contains(&p.id))
        .map(|p| p.name.as_str())
        .collect();

    let mut problems = Vec::new();
    for package in metadata
        .packages
        .iter()
        .filter(|p| members.contains(p.name.as_str()))
    {
        let Some(may_use) = allowed.get(package.name.as_str()) else {
            problems.push(format!(
                "{} is not in the layering table (xtask/src/layering.rs and docs/architecture.md): place it in a layer",
                package.name
            ));
            continue;
        };
        for dep in &package.dependencies {
            let name = dep.name.as_str();
            // A dev-dependency on the crate itself only turns on its own test features
            // (`strata-wal`'s `testing`), no edge between crates.
            let on_itself = name == package.name.as_str() && dep.kind.as_deref() == Some("dev");
            if members.contains(name) && !may_use.contains(name) && !on_itself {
                let kind = dep.kind.as_deref().unwrap_or("normal");
                let listed: Vec<&str> = may_use.iter().copied().collect();
                problems.push(format!(
                    "{} has a {kind} dependency on {name}, which is not below it; {} may depend on: {}",
                    package.name,
                    package.name,
                    if listed.is_empty() { "no Strata crate".to_string() } else { listed.join(", ") }
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("layering violated:\n  {}", problems.join("\n  ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dependency edge: `(dependency, kind)`; kind `None` is a normal dependency.
    type Edge<'a> = (&'a str, Option<&'a str>);

    /// Minimal `cargo metadata` JSON: `(crate, [edge])`.
    fn metadata(crates: &[(&str, &[Edge<'_>])]) -> Metadata {
        let packages: Vec<serde_json::Value> = crates
            .iter()
            .map(|(name, deps)| {
                serde_json::json!({
                    "id": format!("path+file:///ws/{name}#0.1.0"),
                    "name": name,
                    "dependencies": deps.iter().map(|(d, kind)| serde_json::json!({
                        "name": d, "kind": kind,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let members: Vec<String> = crates
            .iter()
            .map(|(name, _)| format!("path+file:///ws/{name}#0.1.0"))
            .collect();
        serde_json::from_value(serde_json::json!({
            "packages": packages,
            "workspace_members": members,
        }))
        .unwrap()
    }

    #[test]
    fn downward_dependencies_pass() {
        let m = metadata(&[
            ("strata-request", &[("arrow-array", None)]),
            ("strata-workload", &[("strata-request", None)]),
        ]);
        assert_eq!(check(&m, ALLOWED), Ok(()));
    }

    #[test]
    fn a_reversed_dependency_fails_and_names_both_crates() {
        let m = metadata(&[
            ("strata-request", &[("strata-workload", None)]),
            ("strata-workload", &[("strata-request", None)]),
        ]);
        let err = check(&m, ALLOWED).unwrap_err();
        assert!(
            err.contains("strata-request has a normal dependency on strata-workload"),
            "{err}"
        );
        assert!(err.contains("may depend on: no Strata crate"), "{err}");
    }

    #[test]
    fn an_upward_dev_dependency_also_fails() {
        let m = metadata(&[
            ("strata-buffer", &[("strata-engine", Some("dev"))]),
            ("strata-engine", &[]),
        ]);
        let err = check(&m, ALLOWED).unwrap_err();
        assert!(err.contains("dev dependency on strata-engine"), "{err}");
    }

    #[test]
    fn a_dev_dependency_on_itself_for_test_features_passes_but_a_normal_one_fails() {
        let dev = metadata(&[("strata-wal", &[("strata-wal", Some("dev"))])]);
        assert_eq!(check(&dev, ALLOWED), Ok(()));
        let normal = metadata(&[("strata-wal", &[("strata-wal", None)])]);
        assert!(check(&normal, ALLOWED).is_err());
    }

    #[test]
    fn leaves_must_not_know_each_other() {
        let m = metadata(&[
            ("strata-wal", &[("strata-request", None)]),
            ("strata-request", &[]),
        ]);
        assert!(check(&m, ALLOWED).is_err());
    }

    #[test]
    fn a_crate_missing_from_the_table_fails() {
        let m = metadata(&[("strata-new-thing", &[])]);
        let err = check(&m, ALLOWED).unwrap_err();
        assert!(
            err.contains("strata-new-thing is not in the layering table"),
            "{err}"
        );
    }

    #[test]
    fn the_table_itself_is_acyclic_and_only_names_known_crates() {
        let names: BTreeSet<&str> = ALLOWED.iter().map(|(n, _)| *n).collect();
        for (name, deps) in ALLOWED {
            for dep in *deps {
                assert!(names.contains(dep), "{name} lists unknown crate {dep}");
                assert_ne!(name, dep, "{name} lists itself");
            }
        }
        // Depth-first search for a cycle.
        fn visit<'a>(
            node: &'a str,
            table: &BTreeMap<&'a str, &'a [&'a str]>,
            path: &mut Vec<&'a str>,
        ) {
            assert!(!path.contains(&node), "cycle: {path:?} -> {node}");
            path.push(node);
            for dep in table.get(node).copied().unwrap_or(&[]) {
                visit(dep, table, path);
            }
            path.pop();
        }
        let table: BTreeMap<&str, &[&str]> = ALLOWED.iter().map(|(n, d)| (*n, *d)).collect();
        for name in table.keys() {
            visit(name, &table, &mut Vec::new());
        }
    }

    #[test]
    fn the_real_workspace_passes() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        check_workspace(root).unwrap();
    }
}

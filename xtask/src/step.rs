//! Running one named step: print what runs, run it, print how long it took.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Outcome of the steps run so far, for the closing summary.
#[derive(Default)]
pub(crate) struct Steps {
    done: Vec<(String, Duration)>,
}

impl Steps {
    /// Runs `program args…` in `root` with extra environment `envs`; fails on a non-zero exit.
    pub(crate) fn run(
        &mut self,
        root: &Path,
        name: &str,
        program: &str,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Result<(), String> {
        let shown_env: String = envs.iter().map(|(k, v)| format!("{k}={v} ")).collect();
        println!("==> {name}: {shown_env}{program} {}", args.join(" "));
        let started = Instant::now();
        let status = Command::new(program)
            .args(args)
            .envs(envs.iter().copied())
            .current_dir(root)
            .status()
            .map_err(|e| format!("{name}: cannot start `{program}`: {e}"))?;
        let elapsed = started.elapsed();
        if !status.success() {
            return Err(format!(
                "{name} failed after {:.1}s ({status})",
                elapsed.as_secs_f64()
            ));
        }
        println!("<== {name}: ok in {:.1}s", elapsed.as_secs_f64());
        self.done.push((name.to_string(), elapsed));
        Ok(())
    }

    /// Runs an in-process check the same way.
    pub(crate) fn check(
        &mut self,
        name: &str,
        check: impl FnOnce() -> Result<(), String>,
    ) -> Result<(), String> {
        println!("==> {name}");
        let started = Instant::now();
        check().map_err(|e| format!("{name} failed: {e}"))?;
        let elapsed = started.elapsed();
        println!("<== {name}: ok in {:.1}s", elapsed.as_secs_f64());
        self.done.push((name.to_string(), elapsed));
        Ok(())
    }

    /// One line listing every step and its time.
    pub(crate) fn summary(&self) -> String {
        let total: Duration = self.done.iter().map(|(_, d)| *d).sum();
        let parts: Vec<String> = self
            .done
            .iter()
            .map(|(name, d)| format!("{name} {:.0}s", d.as_secs_f64()))
            .collect();
        format!(
            "all {} steps ok in {:.0}s ({})",
            self.done.len(),
            total.as_secs_f64(),
            parts.join(", ")
        )
    }
}

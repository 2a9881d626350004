//! FUSE for the power-off suites (`strata-powerfs`): `/dev/fuse`, and the right to mount —
//! root mounts directly; anyone else needs the setuid `fusermount3` helper, from Debian's
//! `fuse3` package, which this installs with apt-get when it is missing. The suites
//! themselves fail (never skip) when they cannot mount, with the reason.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// Makes FUSE mountable if it can; says what it found either way.
pub(crate) fn prepare() {
    if !Path::new("/dev/fuse").exists() {
        println!(
            "power-off suites: /dev/fuse is missing (load the fuse module, or give the container the device); they will fail"
        );
        return;
    }
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if root {
        println!("power-off suites: FUSE via /dev/fuse, mounted as root");
        return;
    }
    if on_path("fusermount3") || on_path("fusermount") {
        println!("power-off suites: FUSE via /dev/fuse and fusermount3");
        return;
    }
    println!("==> installing fuse3 (fusermount3) with apt-get for the power-off suites");
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-q", "fuse3"])
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        println!("power-off suites: could not install fuse3; they will fail");
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

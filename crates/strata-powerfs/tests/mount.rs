//! The power-off file system mounted for real and used through `std::fs`: what survives a
//! power-off is exactly what was synced, file data by `sync_all` / `sync_data` of the
//! file, names by `sync_all` of their directory. Needs FUSE; fails (never skips) without.

#![allow(clippy::unwrap_used, missing_docs)]

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use rand::SeedableRng;
use strata_powerfs::PowerFs;

fn mount() -> (tempfile::TempDir, PowerFs) {
    let dir = tempfile::tempdir().unwrap();
    let fs = PowerFs::mount(dir.path()).unwrap_or_else(|e| {
        panic!("cannot mount the power-off file system (FUSE: /dev/fuse and the right to mount are needed): {e}")
    });
    (dir, fs)
}

fn sync_dir(path: &Path) {
    File::open(path).unwrap().sync_all().unwrap();
}

fn read(path: &Path) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path).ok()?.read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

fn no_tear() -> Option<&'static mut rand_pcg::Pcg64Mcg> {
    None
}

#[test]
fn what_was_synced_survives_a_power_off_and_nothing_else() {
    let (dir, mut fs) = mount();
    let root = dir.path();
    // Synced data under a synced name.
    let mut durable = File::create(root.join("durable")).unwrap();
    durable.write_all(b"kept").unwrap();
    durable.sync_data().unwrap();
    sync_dir(root);
    durable.write_all(b" and lost").unwrap();
    drop(durable);
    // A synced file whose name was never synced.
    let mut nameless = File::create(root.join("nameless")).unwrap();
    nameless.write_all(b"data").unwrap();
    nameless.sync_all().unwrap();
    drop(nameless);
    // A directory and a file in it, all synced, but the directory's name not.
    std::fs::create_dir(root.join("sub")).unwrap();
    std::fs::write(root.join("sub/f"), b"x").unwrap();
    File::open(root.join("sub/f")).unwrap().sync_all().unwrap();
    sync_dir(&root.join("sub"));
    assert_eq!(read(&root.join("durable")).unwrap(), b"kept and lost");
    assert!(fs.has_unsynced());

    let report = fs.power_off(no_tear()).unwrap();
    assert_eq!(read(&root.join("durable")).unwrap(), b"kept");
    assert!(!root.join("nameless").exists());
    assert!(!root.join("sub").exists());
    assert!(report.nodes_dropped >= 3, "{report:?}");
    assert!(
        fs.ops() >= 10,
        "writes, syncs, creates and renames are counted"
    );
    assert!(fs.wait_for_ops(fs.ops(), std::time::Duration::ZERO));
    assert!(!fs.has_unsynced());
    assert_eq!(fs.power_offs(), 1);
}

#[test]
fn a_rename_needs_its_directory_synced() {
    let (dir, mut fs) = mount();
    let root = dir.path();
    std::fs::write(root.join("a.tmp"), b"new").unwrap();
    File::open(root.join("a.tmp")).unwrap().sync_all().unwrap();
    sync_dir(root);
    std::fs::rename(root.join("a.tmp"), root.join("a")).unwrap();
    fs.power_off(no_tear()).unwrap();
    assert!(!root.join("a").exists());
    assert_eq!(read(&root.join("a.tmp")).unwrap(), b"new");
    std::fs::rename(root.join("a.tmp"), root.join("a")).unwrap();
    sync_dir(root);
    fs.power_off(no_tear()).unwrap();
    assert_eq!(read(&root.join("a")).unwrap(), b"new");
    assert!(!root.join("a.tmp").exists());
}

#[test]
fn positional_writes_truncation_unlink_and_locks_work_like_a_disk() {
    let (dir, mut fs) = mount();
    let root = dir.path();
    let path = root.join("f");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    file.write_all_at(b"0123456789", 0).unwrap();
    file.write_all_at(b"ab", 4).unwrap();
    let mut buf = [0u8; 10];
    file.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"0123ab6789");
    file.set_len(6).unwrap();
    file.sync_data().unwrap();
    sync_dir(root);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 6);
    // An exclusive lock is exclusive across opens (what the engine's LOCK file needs).
    file.try_lock().unwrap();
    let other = File::open(&path).unwrap();
    assert!(other.try_lock().is_err());
    drop(other);
    drop(file);
    std::fs::remove_file(&path).unwrap();
    assert!(!path.exists());
    let names: Vec<_> = std::fs::read_dir(root).unwrap().collect();
    assert!(names.is_empty());
    fs.power_off(no_tear()).unwrap();
    assert_eq!(
        read(&path).unwrap(),
        b"0123ab",
        "the unlink was never synced"
    );
}

#[test]
fn a_torn_power_off_keeps_a_prefix_of_unsynced_appends() {
    let (dir, mut fs) = mount();
    let root = dir.path();
    let path = root.join("log");
    std::fs::write(&path, b"").unwrap();
    File::open(&path).unwrap().sync_all().unwrap();
    sync_dir(root);
    let full: Vec<u8> = (0..=255u8).cycle().take(64 << 10).collect();
    let mut outcomes = std::collections::BTreeSet::new();
    for seed in 0..8 {
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        for chunk in full.chunks(4096) {
            file.write_all(chunk).unwrap();
        }
        drop(file);
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
        fs.power_off(Some(&mut rng)).unwrap();
        let kept = read(&path).unwrap();
        assert!(full.starts_with(&kept), "seed {seed}: not a prefix");
        outcomes.insert(kept.len());
        std::fs::write(&path, b"").unwrap();
        File::open(&path).unwrap().sync_all().unwrap();
    }
    assert!(
        outcomes.len() > 2,
        "torn power-offs kept varied prefixes: {outcomes:?}"
    );
}

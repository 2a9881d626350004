use std::ffi::OsStr;

use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;

use super::*;

fn name(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Power off without tearing.
fn power_off(model: &mut Model) -> PowerOffReport {
    model.power_off(None::<&mut Pcg64Mcg>)
}

fn content(model: &Model, parent: u64, file: &str) -> Option<Vec<u8>> {
    let ino = model.lookup(parent, name(file)).ok()?;
    Some(model.read(ino, 0, usize::MAX).ok()?.to_vec())
}

/// A file `f` in the root whose name is durable, with durable content `durable`.
fn durable_file(model: &mut Model, durable: &[u8]) -> u64 {
    let ino = model.create(ROOT, name("f"), 0o644).unwrap();
    model.write(ino, 0, durable).unwrap();
    model.fsync(ino).unwrap();
    model.fsync(ROOT).unwrap();
    ino
}

#[test]
fn writes_survive_only_once_their_file_is_synced() {
    let mut model = Model::new();
    let ino = durable_file(&mut model, b"hello");
    model.write(ino, 5, b" world").unwrap();
    assert_eq!(content(&model, ROOT, "f").unwrap(), b"hello world");
    assert!(model.has_unsynced());
    let report = power_off(&mut model);
    assert_eq!(report.files_with_unsynced_data, 1);
    assert_eq!(content(&model, ROOT, "f").unwrap(), b"hello");

    model.write(ino, 5, b" again").unwrap();
    model.fsync(ino).unwrap();
    assert!(!model.has_unsynced());
    power_off(&mut model);
    assert_eq!(content(&model, ROOT, "f").unwrap(), b"hello again");
}

#[test]
fn a_size_change_is_volatile_until_the_file_is_synced() {
    let mut model = Model::new();
    let ino = durable_file(&mut model, b"0123456789");
    model.set_len(ino, 4).unwrap();
    model.set_len(ino, 6).unwrap();
    assert_eq!(content(&model, ROOT, "f").unwrap(), b"0123\0\0");
    power_off(&mut model);
    assert_eq!(content(&model, ROOT, "f").unwrap(), b"0123456789");
    model.set_len(ino, 4).unwrap();
    model.fsync(ino).unwrap();
    power_off(&mut model);
    assert_eq!(content(&model, ROOT, "f").unwrap(), b"0123");
}

#[test]
fn a_new_name_needs_its_directory_synced_and_syncing_the_file_is_not_enough() {
    let mut model = Model::new();
    let ino = model.create(ROOT, name("f"), 0o644).unwrap();
    model.write(ino, 0, b"data").unwrap();
    model.fsync(ino).unwrap();
    let report = power_off(&mut model);
    assert_eq!(report.dirs_with_unsynced_entries, 1);
    assert_eq!(report.nodes_dropped, 1);
    assert_eq!(model.lookup(ROOT, name("f")), Err(Errno::ENOENT));

    // The directory synced but not the file: the name survives, the data does not.
    let ino = model.create(ROOT, name("g"), 0o644).unwrap();
    model.write(ino, 0, b"data").unwrap();
    model.fsync(ROOT).unwrap();
    power_off(&mut model);
    assert_eq!(content(&model, ROOT, "g").unwrap(), b"");
}

#[test]
fn a_rename_is_undone_unless_its_directory_is_synced() {
    let mut model = Model::new();
    let tmp = model.create(ROOT, name("x.tmp"), 0o644).unwrap();
    model.write(tmp, 0, b"new").unwrap();
    model.fsync(tmp).unwrap();
    model.fsync(ROOT).unwrap();
    model
        .rename(ROOT, name("x.tmp"), ROOT, name("x"), false)
        .unwrap();
    power_off(&mut model);
    assert_eq!(model.lookup(ROOT, name("x")), Err(Errno::ENOENT));
    assert_eq!(content(&model, ROOT, "x.tmp").unwrap(), b"new");

    model
        .rename(ROOT, name("x.tmp"), ROOT, name("x"), false)
        .unwrap();
    model.fsync(ROOT).unwrap();
    power_off(&mut model);
    assert_eq!(content(&model, ROOT, "x").unwrap(), b"new");
    assert_eq!(model.lookup(ROOT, name("x.tmp")), Err(Errno::ENOENT));
}

#[test]
fn a_rename_over_an_old_file_keeps_the_old_one_until_synced() {
    let mut model = Model::new();
    let old = durable_file(&mut model, b"old");
    let new = model.create(ROOT, name("f.tmp"), 0o644).unwrap();
    model.write(new, 0, b"new").unwrap();
    model.fsync(new).unwrap();
    model
        .rename(ROOT, name("f.tmp"), ROOT, name("f"), false)
        .unwrap();
    assert_eq!(content(&model, ROOT, "f").unwrap(), b"new");
    assert_eq!(model.getattr(old).map(|a| a.nlink), Ok(0));
    power_off(&mut model);
    assert_eq!(content(&model, ROOT, "f").unwrap(), b"old");
    assert_eq!(
        model.rename(ROOT, name("f"), ROOT, name("f"), true),
        Ok(()),
        "renaming a name onto itself changes nothing"
    );
}

#[test]
fn an_unlink_is_undone_unless_its_directory_is_synced() {
    let mut model = Model::new();
    durable_file(&mut model, b"keep");
    model.unlink(ROOT, name("f")).unwrap();
    assert_eq!(model.lookup(ROOT, name("f")), Err(Errno::ENOENT));
    power_off(&mut model);
    assert_eq!(content(&model, ROOT, "f").unwrap(), b"keep");
    model.unlink(ROOT, name("f")).unwrap();
    model.fsync(ROOT).unwrap();
    let report = power_off(&mut model);
    assert_eq!(report.nodes_dropped, 1);
    assert_eq!(model.lookup(ROOT, name("f")), Err(Errno::ENOENT));
}

#[test]
fn a_new_directory_needs_every_new_ancestor_synced() {
    let mut model = Model::new();
    let a = model.mkdir(ROOT, name("a"), 0o755).unwrap();
    let b = model.mkdir(a, name("b"), 0o755).unwrap();
    let f = model.create(b, name("f"), 0o644).unwrap();
    model.write(f, 0, b"x").unwrap();
    model.fsync(f).unwrap();
    model.fsync(b).unwrap();
    model.fsync(a).unwrap();
    // The root was never synced: `a`, and everything under it, is gone.
    let report = power_off(&mut model);
    assert_eq!(report.nodes_dropped, 3);
    assert_eq!(model.lookup(ROOT, name("a")), Err(Errno::ENOENT));

    let a = model.mkdir(ROOT, name("a"), 0o755).unwrap();
    let b = model.mkdir(a, name("b"), 0o755).unwrap();
    let f = model.create(b, name("f"), 0o644).unwrap();
    model.write(f, 0, b"x").unwrap();
    for ino in [f, b, a, ROOT] {
        model.fsync(ino).unwrap();
    }
    power_off(&mut model);
    let a = model.lookup(ROOT, name("a")).unwrap();
    let b = model.lookup(a, name("b")).unwrap();
    assert_eq!(content(&model, b, "f").unwrap(), b"x");
}

#[test]
fn directory_rules_errors_and_open_unlinked_files() {
    let mut model = Model::new();
    let d = model.mkdir(ROOT, name("d"), 0o755).unwrap();
    model.create(d, name("f"), 0o644).unwrap();
    assert_eq!(model.create(d, name("f"), 0o644), Err(Errno::EEXIST));
    assert_eq!(model.rmdir(ROOT, name("d")), Err(Errno::ENOTEMPTY));
    assert_eq!(model.unlink(ROOT, name("d")), Err(Errno::EISDIR));
    assert_eq!(
        model.rename(d, name("f"), ROOT, name("d"), false),
        Err(Errno::EISDIR)
    );
    let f = model.lookup(d, name("f")).unwrap();
    model.open(f).unwrap();
    model.write(f, 0, b"still readable").unwrap();
    model.unlink(d, name("f")).unwrap();
    assert_eq!(model.read(f, 0, 100).unwrap(), b"still readable");
    model.release(f);
    model.rmdir(ROOT, name("d")).unwrap();
    assert_eq!(model.readdir(ROOT).unwrap(), vec![]);
}

#[test]
fn a_torn_power_off_keeps_a_prefix_of_the_unsynced_writes_in_order() {
    let full: Vec<u8> = (0..=255u8).cycle().take(4000).collect();
    let (mut none, mut all, mut partial) = (0, 0, 0);
    for seed in 0..300 {
        let mut model = Model::new();
        let ino = durable_file(&mut model, b"");
        // Appends in 7 writes of different sizes.
        let mut at = 0;
        for size in [100, 900, 13, 1000, 487, 1200, 300] {
            model.write(ino, at as u64, &full[at..at + size]).unwrap();
            at += size;
        }
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        model.power_off(Some(&mut rng));
        let kept = content(&model, ROOT, "f").unwrap();
        assert!(
            full.starts_with(&kept),
            "seed {seed}: kept {} bytes that are not a prefix of what was written",
            kept.len()
        );
        match kept.len() {
            0 => none += 1,
            4000 => all += 1,
            _ => partial += 1,
        }
        assert!(!model.has_unsynced());
    }
    assert!(
        all > 0 && partial > 200,
        "outcomes: {none} none, {partial} partial, {all} all"
    );
}

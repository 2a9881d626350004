use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray};
use strata_request::{ColumnDataType, ColumnSchema, OpType, RegionId, RegionMetadataBuilder};

use super::*;
use crate::manifest::RegionManifest;

fn metadata() -> RegionMetadata {
    RegionMetadataBuilder::new(RegionId::new(4, 4))
        .column(ColumnSchema::tag("host"))
        .column(ColumnSchema::timestamp(
            "ts",
            ColumnDataType::TimestampMillisecond,
        ))
        .build()
        .unwrap()
}

fn manifest() -> RegionManifest {
    RegionManifest {
        metadata: metadata(),
        options: RegionOptions::default(),
        files: Default::default(),
        removed_files: Vec::new(),
        flushed_entry_id: 3,
        flushed_sequence: 30,
        committed_sequence: 30,
        truncated_entry_id: None,
        compaction_window_secs: None,
        manifest_version: 5,
        leader_epoch: 0,
    }
}

fn write(vc: &VersionControl, ts: i64, sequence: u64) {
    let version = vc.current().version;
    let batch = RecordBatch::try_new(
        version.metadata.arrow_schema().clone(),
        vec![
            Arc::new(StringArray::from(vec!["h"])) as ArrayRef,
            Arc::new(TimestampMillisecondArray::from(vec![ts])),
        ],
    )
    .unwrap();
    version
        .memtables
        .mutable
        .write(&batch, OpType::Put, sequence)
        .unwrap();
    vc.set_sequence_and_entry_id(sequence, sequence / 10);
}

fn file(id: FileId) -> FileMeta {
    FileMeta {
        region_id: RegionId::new(4, 4),
        file_id: id,
        level: 0,
        time_range: (0, 1),
        num_rows: 1,
        num_row_groups: 1,
        file_size: 1,
        max_sequence: 31,
        checksum: 0,
        num_deletes: None,
        time_slice: None,
    }
}

#[test]
fn counters_start_at_the_manifest_progress() {
    let vc = VersionControl::new(Version::from_manifest(&manifest(), None).unwrap());
    let data = vc.current();
    assert_eq!((data.committed_sequence, data.last_entry_id), (30, 3));
    assert_eq!(
        (data.version.flushed_sequence, data.version.flushed_entry_id),
        (30, 3)
    );
    assert!(!data.is_dropped);
}

#[test]
fn freezing_moves_a_non_empty_mutable_to_the_immutables_and_snapshots_are_stable() {
    let vc = VersionControl::new(Version::from_manifest(&manifest(), None).unwrap());
    vc.freeze_mutable();
    assert!(
        vc.current().version.memtables.immutables.is_empty(),
        "an empty mutable is not frozen"
    );
    write(&vc, 1, 31);
    let before = vc.current();
    vc.freeze_mutable();
    let after = vc.current();
    assert_eq!(after.version.memtables.immutables.len(), 1);
    assert!(after.version.memtables.immutables[0].is_frozen());
    assert!(after.version.memtables.mutable.is_empty());
    assert!(after.version.memtables.mutable.id() > after.version.memtables.immutables[0].id());
    assert!(
        before.version.memtables.immutables.is_empty(),
        "an old snapshot does not change"
    );
    assert!(!before.version.memtables.mutable.is_empty());
}

#[test]
fn applying_an_edit_adds_files_raises_progress_and_drops_flushed_memtables() {
    let vc = VersionControl::new(Version::from_manifest(&manifest(), None).unwrap());
    write(&vc, 1, 41);
    vc.freeze_mutable();
    let frozen = vc.current().version.memtables.immutables[0].id();
    let id = FileId::random();
    vc.apply_edit(
        &RegionEdit {
            files_to_add: vec![file(id)],
            flushed_entry_id: Some(4),
            flushed_sequence: Some(41),
            ..Default::default()
        },
        &[frozen],
    );
    let v = vc.current().version;
    assert!(v.memtables.immutables.is_empty());
    assert_eq!(v.all_files().count(), 1);
    assert_eq!((v.flushed_entry_id, v.flushed_sequence), (4, 41));
    vc.apply_edit(
        &RegionEdit {
            files_to_remove: vec![id],
            flushed_sequence: Some(1),
            ..Default::default()
        },
        &[],
    );
    let v = vc.current().version;
    assert_eq!(v.all_files().count(), 0);
    assert_eq!(v.flushed_sequence, 41, "progress never goes back");
}

#[test]
fn altering_needs_empty_memtables() {
    let vc = VersionControl::new(Version::from_manifest(&manifest(), None).unwrap());
    write(&vc, 1, 31);
    let altered = metadata()
        .add_columns(0, &[ColumnSchema::field("v", ColumnDataType::Int64)])
        .unwrap();
    let err = vc
        .alter_schema(altered.clone(), RegionOptions::default())
        .unwrap_err();
    assert!(
        matches!(err, StorageError::MemtablesNotEmpty { .. }),
        "{err}"
    );
    vc.freeze_mutable();
    let frozen = vc.current().version.memtables.immutables[0].id();
    vc.apply_edit(&RegionEdit::default(), &[frozen]);
    vc.alter_schema(altered.clone(), RegionOptions::default())
        .unwrap();
    let v = vc.current().version;
    assert_eq!(v.metadata.schema_version(), 1);
    assert_eq!(v.memtables.mutable.metadata().as_ref(), &altered);
}

#[test]
fn truncating_and_dropping_empty_the_version() {
    let vc = VersionControl::new(Version::from_manifest(&manifest(), None).unwrap());
    write(&vc, 1, 51);
    vc.apply_edit(
        &RegionEdit {
            files_to_add: vec![file(FileId::random())],
            ..Default::default()
        },
        &[],
    );
    vc.truncate(5, 51);
    let data = vc.current();
    assert!(data.version.memtables.is_empty());
    assert_eq!(data.version.all_files().count(), 0);
    assert_eq!(
        (data.version.flushed_entry_id, data.version.flushed_sequence),
        (5, 51)
    );
    assert_eq!(data.version.truncated_entry_id, Some(5));
    write(&vc, 2, 52);
    vc.mark_dropped();
    let data = vc.current();
    assert!(data.is_dropped);
    assert!(data.version.memtables.is_empty());
}

#[test]
fn the_ttl_cutoff_is_in_the_regions_timestamp_unit_and_absent_without_a_ttl() {
    let mut manifest = manifest();
    let version = Version::from_manifest(&manifest, None).unwrap();
    assert_eq!(version.ttl_cutoff(10_000), None);
    manifest.options.ttl = Some(std::time::Duration::from_secs(3));
    let version = Version::from_manifest(&manifest, None).unwrap();
    assert_eq!(version.ttl_cutoff(10_000), Some(7_000));
    manifest.metadata = RegionMetadataBuilder::new(RegionId::new(4, 4))
        .column(ColumnSchema::tag("host"))
        .column(ColumnSchema::timestamp(
            "ts",
            ColumnDataType::TimestampMicrosecond,
        ))
        .build()
        .unwrap();
    let version = Version::from_manifest(&manifest, None).unwrap();
    assert_eq!(version.ttl_cutoff(10_000), Some(7_000_000));
}

#[test]
fn a_ttl_cutoff_narrows_a_scan_range_and_past_its_end_leaves_nothing() {
    use crate::{ScanRequest, TimeRange};
    let open = ScanRequest::default().alive_from(Some(50));
    assert_eq!(
        open.time_range,
        Some(TimeRange {
            start: 50,
            end: i64::MAX
        })
    );
    let wanted = ScanRequest {
        time_range: Some(TimeRange { start: 10, end: 40 }),
        ..ScanRequest::default()
    };
    let narrowed = wanted.clone().alive_from(Some(20));
    assert_eq!(narrowed.time_range, Some(TimeRange { start: 20, end: 40 }));
    let gone = wanted.clone().alive_from(Some(41)).time_range.unwrap();
    assert!(!gone.overlaps(&TimeRange {
        start: i64::MIN,
        end: i64::MAX
    }));
    assert_eq!(
        wanted.clone().alive_from(None).time_range,
        wanted.time_range
    );
}

//! The writer's failure path: a write that fails fails its whole group and, when the file
//! cannot be cut back either, poisons the log.

#![allow(clippy::unwrap_used)]

use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc;

use super::*;
use crate::file::segments::create_segment;

fn append(
    tx: &mpsc::Sender<Command>,
    region: u64,
    id: u64,
) -> oneshot::Receiver<Result<AppendResponse, WalError>> {
    let (reply, rx) = oneshot::channel();
    tx.send(Command::Append {
        ids: vec![(region, id)],
        payload: format::encode_entries(
            [format::EntryRef {
                region_id: region,
                entry_id: id,
                data: &[7u8; 100],
            }]
            .into_iter(),
            100,
        ),
        submitted: strata_base::Clock::now(&strata_base::SystemClock),
        reply,
    })
    .unwrap();
    rx
}

#[test]
fn a_failed_write_fails_its_group_and_an_uncuttable_file_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut active = create_segment(dir.path(), 1).unwrap();
    // A read-only handle: every write fails, and so does cutting the file back.
    active.file = File::open(&active.segment.path).unwrap();
    let mut index = Index::default();
    index.add_segment(active.segment.clone());
    let shared = Arc::new(Shared {
        index: Mutex::new(index),
        metrics: None,
        in_flight: AtomicUsize::new(0),
    });
    let writer = Writer {
        config: FileLogStoreConfig::default(),
        clock: Arc::new(strata_base::SystemClock),
        shared: shared.clone(),
        active,
        unsynced_since: None,
        poisoned: None,
        buf: Vec::new(),
        free: FreeSegments::new(dir.path(), 0, Vec::new(), true).unwrap(),
    };
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || writer.run(rx));

    let first = append(&tx, 1, 1).blocking_recv().unwrap();
    assert!(
        matches!(&first, Err(WalError::Io { operation, .. }) if *operation == "write segment"),
        "{first:?}"
    );
    let second = append(&tx, 1, 1).blocking_recv().unwrap();
    assert!(
        matches!(second, Err(WalError::Poisoned { .. })),
        "{second:?}"
    );
    assert_eq!(
        shared.index.lock().unwrap().last_id(1),
        None,
        "nothing reached the index"
    );

    let (reply, stopped) = oneshot::channel();
    tx.send(Command::Stop { reply }).unwrap();
    assert!(matches!(
        stopped.blocking_recv().unwrap(),
        Err(WalError::Poisoned { .. })
    ));
    thread.join().unwrap();
}

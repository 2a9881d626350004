//! The [`LogStore`] conformance suite: every rule of the protocol as a scenario, for any
//! implementation — Strata's own stores run it, and so can an embedder's (enable the
//! `testing` feature and call [`check`] from a test).
//!
//! Scenarios panic with a message naming what broke, as test assertions do. Each opens a
//! fresh store from the [`Harness`]; [`check`] runs them all, the reopen scenario only for
//! stores the harness calls durable.

// Test support: a failed unwrap or assertion is a failed conformance check.
#![allow(clippy::unwrap_used, clippy::panic)]

use bytes::Bytes;
use futures::TryStreamExt;

use crate::{Entry, LogStore, WalError};

/// Opens (or reopens) the store under test.
pub trait Harness {
    /// The implementation under test.
    type Store: LogStore;

    /// A store over this harness's storage: the first call opens it empty; a later call
    /// after the previous store was stopped or dropped reopens the same storage.
    fn open(&mut self) -> Self::Store;

    /// Whether a reopened store keeps what the previous one acknowledged (protocol 6
    /// across restarts).
    fn durable(&self) -> bool;
}

/// Runs every scenario against stores from `harness` (each on a fresh harness from
/// `new_harness`, so scenarios do not see each other's entries).
pub async fn check<H: Harness>(mut new_harness: impl FnMut() -> H) {
    multi_region_batches_report_last_ids_and_read_back(&mut new_harness()).await;
    read_from_an_id_returns_the_suffix_in_order(&mut new_harness()).await;
    a_read_does_not_see_appends_made_after_it_began(&mut new_harness()).await;
    obsolete_hides_entries_and_is_monotonic(&mut new_harness()).await;
    drop_removes_the_namespace_and_allows_fresh_ids(&mut new_harness()).await;
    ids_that_do_not_increase_fail_the_whole_batch(&mut new_harness()).await;
    every_call_fails_after_stop(&mut new_harness()).await;
    let mut harness = new_harness();
    if harness.durable() {
        everything_survives_a_reopen(&mut harness).await;
    }
}

/// The entry the scenarios write: its bytes name its region and id, so reads can check
/// content as well as ids.
pub fn entry(region: u64, id: u64) -> Entry {
    Entry {
        region_id: region,
        entry_id: id,
        data: Bytes::from(format!("r{region}-e{id}")),
    }
}

/// The ids `read(region, start)` returns, checking each entry's content.
pub async fn ids(store: &impl LogStore, region: u64, start: u64) -> Vec<u64> {
    let chunks: Vec<Vec<Entry>> = store
        .read(region, start)
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let entries: Vec<Entry> = chunks.into_iter().flatten().collect();
    for e in &entries {
        assert_eq!(e, &entry(region, e.entry_id), "entry content intact");
    }
    entries.into_iter().map(|e| e.entry_id).collect()
}

/// Protocol 1 and 6: a batch spanning regions reports each region's last id; reads
/// return each region's own entries; an empty batch reports nothing.
pub async fn multi_region_batches_report_last_ids_and_read_back(h: &mut impl Harness) {
    let store = h.open();
    let r = store
        .append_batch(vec![entry(1, 1), entry(2, 10), entry(1, 2), entry(3, 5)])
        .await
        .unwrap();
    assert_eq!(r.last_entry_ids.len(), 3);
    assert_eq!(r.last_entry_ids[&1], 2);
    assert_eq!(r.last_entry_ids[&2], 10);
    assert_eq!(r.last_entry_ids[&3], 5);
    store
        .append_batch(vec![entry(1, 4), entry(2, 11)])
        .await
        .unwrap();
    assert_eq!(ids(&store, 1, 0).await, [1, 2, 4]);
    assert_eq!(ids(&store, 2, 0).await, [10, 11]);
    assert_eq!(ids(&store, 3, 0).await, [5]);
    assert_eq!(ids(&store, 4, 0).await, Vec::<u64>::new());
    assert_eq!(store.last_entry_id(1), Some(4));
    assert_eq!(store.last_entry_id(4), None);
    assert!(
        store
            .append_batch(vec![])
            .await
            .unwrap()
            .last_entry_ids
            .is_empty()
    );
}

/// Protocol 3: a read from an id returns exactly the suffix from it, in order.
pub async fn read_from_an_id_returns_the_suffix_in_order(h: &mut impl Harness) {
    let store = h.open();
    for id in 1..=20 {
        store
            .append_batch(vec![entry(7, id), entry(8, id)])
            .await
            .unwrap();
    }
    assert_eq!(ids(&store, 7, 15).await, (15..=20).collect::<Vec<_>>());
    assert_eq!(ids(&store, 7, 21).await, Vec::<u64>::new());
    assert_eq!(ids(&store, 8, 1).await.len(), 20);
}

/// Protocol 3: a read sees what was acknowledged when it began, not later appends.
pub async fn a_read_does_not_see_appends_made_after_it_began(h: &mut impl Harness) {
    let store = h.open();
    store
        .append_batch(vec![entry(1, 1), entry(1, 2)])
        .await
        .unwrap();
    let stream = store.read(1, 0).unwrap();
    store.append_batch(vec![entry(1, 3)]).await.unwrap();
    let seen: Vec<u64> = stream
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .flatten()
        .map(|e| e.entry_id)
        .collect();
    assert_eq!(seen, [1, 2]);
}

/// Protocol 4: obsolete hides entries up to the id, leaves other regions alone, and a
/// lower mark changes nothing.
pub async fn obsolete_hides_entries_and_is_monotonic(h: &mut impl Harness) {
    let store = h.open();
    for id in 1..=10 {
        store
            .append_batch(vec![entry(1, id), entry(2, id)])
            .await
            .unwrap();
    }
    store.obsolete(1, 6).await.unwrap();
    assert_eq!(ids(&store, 1, 0).await, [7, 8, 9, 10]);
    assert_eq!(ids(&store, 2, 0).await.len(), 10, "other regions untouched");
    store.obsolete(1, 3).await.unwrap();
    assert_eq!(
        ids(&store, 1, 0).await,
        [7, 8, 9, 10],
        "a lower mark changes nothing"
    );
    assert_eq!(store.last_entry_id(1), Some(10));
    store.obsolete(9, 9).await.unwrap(); // unknown region: no error
    store.append_batch(vec![entry(1, 11)]).await.unwrap();
    assert_eq!(ids(&store, 1, 8).await, [8, 9, 10, 11]);
}

/// Protocol 5: drop removes the region's entries and lets it start again at any id.
pub async fn drop_removes_the_namespace_and_allows_fresh_ids(h: &mut impl Harness) {
    let store = h.open();
    store
        .append_batch(vec![entry(1, 5), entry(2, 5)])
        .await
        .unwrap();
    store.drop_region(1).await.unwrap();
    assert_eq!(ids(&store, 1, 0).await, Vec::<u64>::new());
    assert_eq!(store.last_entry_id(1), None);
    store.append_batch(vec![entry(1, 1)]).await.unwrap();
    assert_eq!(ids(&store, 1, 0).await, [1]);
    assert_eq!(ids(&store, 2, 0).await, [5]);
}

/// Protocol 2: a batch whose ids do not increase fails whole, keeping nothing.
pub async fn ids_that_do_not_increase_fail_the_whole_batch(h: &mut impl Harness) {
    let store = h.open();
    store
        .append_batch(vec![entry(1, 5), entry(2, 5)])
        .await
        .unwrap();
    for bad in [
        vec![entry(2, 6), entry(1, 5)],
        vec![entry(2, 6), entry(1, 4)],
        vec![entry(2, 6), entry(1, 7), entry(1, 7)],
        vec![entry(2, 6), entry(1, 8), entry(1, 7)],
    ] {
        let err = store.append_batch(bad).await.unwrap_err();
        assert!(
            matches!(err, WalError::OutOfOrder { region_id: 1, .. }),
            "{err}"
        );
    }
    assert_eq!(
        ids(&store, 2, 0).await,
        [5],
        "nothing of a failed batch is kept"
    );
    assert_eq!(store.last_entry_id(1), Some(5));
    store.append_batch(vec![entry(1, 9)]).await.unwrap();
}

/// Protocol 7: after stop every call fails with [`WalError::Stopped`].
pub async fn every_call_fails_after_stop(h: &mut impl Harness) {
    let store = h.open();
    store.append_batch(vec![entry(1, 1)]).await.unwrap();
    store.stop().await.unwrap();
    assert!(matches!(
        store.append_batch(vec![entry(1, 2)]).await,
        Err(WalError::Stopped)
    ));
    assert!(matches!(store.read(1, 0), Err(WalError::Stopped)));
    assert!(matches!(store.obsolete(1, 1).await, Err(WalError::Stopped)));
    assert!(matches!(store.drop_region(1).await, Err(WalError::Stopped)));
    assert!(matches!(store.stop().await, Err(WalError::Stopped)));
}

/// Protocol 6 across a restart (durable stores only): entries, obsolete marks, drops and
/// the id order survive a stop and reopen.
pub async fn everything_survives_a_reopen(h: &mut impl Harness) {
    {
        let store = h.open();
        for id in 1..=10 {
            store
                .append_batch(vec![entry(1, id), entry(2, id), entry(3, id)])
                .await
                .unwrap();
        }
        store.obsolete(1, 4).await.unwrap();
        store.drop_region(2).await.unwrap();
        store.stop().await.unwrap();
    }
    let store = h.open();
    assert_eq!(
        ids(&store, 1, 0).await,
        [5, 6, 7, 8, 9, 10],
        "obsolete mark persisted"
    );
    assert_eq!(ids(&store, 2, 0).await, Vec::<u64>::new(), "drop persisted");
    assert_eq!(ids(&store, 3, 0).await.len(), 10);
    assert_eq!(store.last_entry_id(3), Some(10));
    assert_eq!(store.last_entry_id(2), None);
    // Ordering is enforced against recovered ids.
    assert!(store.append_batch(vec![entry(3, 10)]).await.is_err());
    store
        .append_batch(vec![entry(3, 11), entry(2, 1)])
        .await
        .unwrap();
    drop(store);
    let store = h.open();
    assert_eq!(
        ids(&store, 2, 0).await,
        [1],
        "re-created region has only its new entries"
    );
    assert_eq!(ids(&store, 3, 9).await, [9, 10, 11]);
}

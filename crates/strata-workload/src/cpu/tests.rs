use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampMillisecondType};
use proptest::prelude::*;
use strata_request::WriteRequest;

use super::*;

/// `(region, hostname, ts, fields)` for every generated row, in generation order.
type Row = (usize, String, i64, Vec<f64>);

fn rows(workload: &CpuWorkload) -> Vec<Row> {
    let mut out = Vec::new();
    for WorkloadBatch { region, batch } in workload.batches().unwrap() {
        let host = batch.column(0).as_string::<i32>();
        let ts = batch.column(10).as_primitive::<TimestampMillisecondType>();
        for row in 0..batch.num_rows() {
            let fields = (11..21)
                .map(|c| {
                    let column = batch.column(c);
                    match column.data_type() {
                        arrow_schema::DataType::Int64 => {
                            column.as_primitive::<Int64Type>().value(row) as f64
                        }
                        _ => column.as_primitive::<Float64Type>().value(row),
                    }
                })
                .collect();
            out.push((region, host.value(row).to_string(), ts.value(row), fields));
        }
    }
    out
}

#[test]
fn the_same_seed_yields_the_same_batches() {
    let w = CpuWorkload::new(50, 7).with_regions(3).with_batch_rows(40);
    let a: Vec<_> = w.batches().unwrap().collect();
    let b: Vec<_> = w.batches().unwrap().collect();
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.region, y.region);
        assert_eq!(x.batch, y.batch);
    }
    let other = rows(&w.clone().with_seed(124));
    assert_ne!(rows(&w), other, "another seed gives other data");
}

#[test]
fn rows_are_epoch_major_and_hosts_are_split_by_index() {
    let w = CpuWorkload::new(10, 4).with_regions(3).with_batch_rows(7);
    let all = rows(&w);
    assert_eq!(all.len() as u64, w.total_rows());
    for region in 0..3 {
        let mine: Vec<_> = all.iter().filter(|r| r.0 == region).collect();
        let hosts_per_epoch = (0..10).filter(|h| h % 3 == region).count();
        assert_eq!(mine.len(), hosts_per_epoch * 4);
        for (i, row) in mine.iter().enumerate() {
            let host = i % hosts_per_epoch;
            let epoch = (i / hosts_per_epoch) as u64;
            let host_index = (0..10).filter(|h| h % 3 == region).nth(host).unwrap();
            assert_eq!(row.1, format!("host_{host_index}"));
            assert_eq!(row.2, w.timestamp_of_epoch(epoch));
        }
    }
    assert_eq!(w.timestamp_of_epoch(1) - w.timestamp_of_epoch(0), 10_000);
    assert_eq!(w.timestamp_of_epoch(0), DEFAULT_START_MILLIS);
}

#[test]
fn every_batch_is_a_valid_write_for_its_region() {
    for float_fields in [false, true] {
        let w = CpuWorkload::new(20, 3)
            .with_regions(2)
            .with_batch_rows(16)
            .with_float_fields(float_fields);
        for (i, b) in w.batches().unwrap().enumerate() {
            let region_id = RegionId::new(9, b.region as u32);
            let metadata = w.region_metadata(region_id);
            let stored = WriteRequest::put(region_id, b.batch.clone())
                .validate(&metadata)
                .unwrap_or_else(|e| panic!("batch {i}: {e}"));
            assert_eq!(stored, b.batch, "already in stored form");
        }
    }
}

#[test]
fn fields_are_clamped_walks_that_move_about_one_per_tick() {
    let w = CpuWorkload::new(5, 200)
        .with_float_fields(true)
        .with_batch_rows(1000);
    let all = rows(&w);
    for host in 0..5 {
        let series: Vec<_> = all
            .iter()
            .filter(|r| r.1 == format!("host_{host}"))
            .collect();
        for pair in series.windows(2) {
            for (a, b) in pair[0].3.iter().zip(&pair[1].3) {
                assert!((0.0..=100.0).contains(b));
                assert!((a - b).abs() < 8.0, "a step of N(0,1) is small: {a} -> {b}");
            }
        }
    }
    let ints = rows(&CpuWorkload::new(5, 20));
    assert!(
        ints.iter()
            .flat_map(|r| &r.3)
            .all(|v| v.fract() == 0.0 && (0.0..=100.0).contains(v))
    );
}

#[test]
fn a_later_start_epoch_continues_the_same_series() {
    let whole = CpuWorkload::new(12, 10).with_regions(2).with_batch_rows(5);
    let tail = CpuWorkload::new(12, 4)
        .with_regions(2)
        .with_start_epoch(6)
        .with_batch_rows(9);
    let expected: Vec<_> = rows(&whole)
        .into_iter()
        .filter(|r| r.2 >= whole.timestamp_of_epoch(6))
        .map(|r| (r.1, r.2, r.3))
        .collect();
    let mut got: Vec<_> = rows(&tail).into_iter().map(|r| (r.1, r.2, r.3)).collect();
    let mut expected = expected;
    // Batching differs, so compare as sets of rows.
    expected.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    got.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    assert_eq!(got, expected);
}

#[test]
fn invalid_descriptions_are_rejected() {
    assert!(CpuWorkload::new(0, 1).batches().is_err());
    assert!(CpuWorkload::new(1, 1).with_regions(0).batches().is_err());
    let err = CpuWorkload::new(1, 1)
        .with_batch_rows(0)
        .batches()
        .unwrap_err();
    assert!(err.to_string().contains("batch rows"), "{err}");
    assert!(
        CpuWorkload::new(1, 1)
            .with_interval(Duration::ZERO)
            .batches()
            .is_err()
    );
    assert_eq!(CpuWorkload::new(3, 0).batches().unwrap().count(), 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the shape, the batches hold exactly `hosts × epochs` rows, none larger than
    /// the batch size, each host once per epoch.
    #[test]
    fn batches_partition_the_data_set(
        hosts in 1usize..40,
        epochs in 0u64..6,
        regions in 1usize..6,
        batch_rows in 1usize..50,
        seed in any::<u64>(),
    ) {
        let w = CpuWorkload::new(hosts, epochs)
            .with_regions(regions)
            .with_batch_rows(batch_rows)
            .with_seed(seed);
        let mut total = 0u64;
        let mut per_host_epoch = std::collections::HashSet::new();
        for b in w.batches().unwrap() {
            prop_assert!(b.batch.num_rows() >= 1 && b.batch.num_rows() <= batch_rows);
            prop_assert!(b.region < regions);
            let host = b.batch.column(0).as_string::<i32>();
            let ts = b.batch.column(10).as_primitive::<TimestampMillisecondType>();
            for row in 0..b.batch.num_rows() {
                prop_assert!(per_host_epoch.insert((host.value(row).to_string(), ts.value(row))));
            }
            total += b.batch.num_rows() as u64;
        }
        prop_assert_eq!(total, w.total_rows());
    }
}

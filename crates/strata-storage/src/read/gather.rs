//! Building a merge's output columns from runs of its source batches.
//!
//! A merge picks rows in runs: consecutive rows of one source batch. Copying run by run
//! (one `extend_from_slice` of values, and of bytes for strings) is much cheaper than
//! looking every row up in its source (`interleave`) when runs are more than a row or two
//! long — the common case, even with hundreds of sources whose runs are a few rows each —
//! and cheaper than building a slice array per run and concatenating them.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{BinaryType, ByteArrayType, LargeBinaryType, LargeUtf8Type, Utf8Type};
use arrow_array::{
    Array, ArrayRef, ArrowPrimitiveType, GenericByteArray, PrimitiveArray, downcast_primitive,
};
use arrow_buffer::{ArrowNativeType, BooleanBufferBuilder, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType};

/// A run: `len` consecutive rows of source `source`, from row `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) source: usize,
    pub(crate) start: usize,
    pub(crate) len: usize,
}

/// `picked` rows (`(source, row)`) as runs of consecutive rows of one source.
pub(crate) fn runs_of(picked: &[(usize, usize)]) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for &(source, row) in picked {
        match runs.last_mut() {
            Some(run) if run.source == source && run.start + run.len == row => run.len += 1,
            _ => runs.push(Run {
                source,
                start: row,
                len: 1,
            }),
        }
    }
    runs
}

/// Runs shorter than this on average are gathered row by row (`interleave`), where a
/// copy per run would cost more than it saves.
const MIN_AVERAGE_RUN: usize = 3;

/// The rows `picked` (`(source, row)`, in output order, with `runs` = [`runs_of`] them)
/// of `sources` (arrays of one type) as one array.
pub(crate) fn gather(
    sources: &[&dyn Array],
    picked: &[(usize, usize)],
    runs: &[Run],
) -> Result<ArrayRef, ArrowError> {
    let rows = picked.len();
    let Some(first) = sources.first() else {
        return arrow_select::interleave::interleave(sources, picked);
    };
    if runs.len().saturating_mul(MIN_AVERAGE_RUN) > rows {
        return arrow_select::interleave::interleave(sources, picked);
    }
    let data_type = first.data_type().clone();
    macro_rules! primitive_helper {
        ($t:ty) => {
            gather_primitive::<$t>(sources, runs, rows, &data_type)
        };
    }
    let gathered = downcast_primitive! {
        data_type => (primitive_helper),
        DataType::Utf8 => gather_bytes::<Utf8Type>(sources, runs, rows),
        DataType::LargeUtf8 => gather_bytes::<LargeUtf8Type>(sources, runs, rows),
        DataType::Binary => gather_bytes::<BinaryType>(sources, runs, rows),
        DataType::LargeBinary => gather_bytes::<LargeBinaryType>(sources, runs, rows),
        _ => None,
    };
    match gathered {
        Some(array) => Ok(array),
        // Another type, or sources that are not all of it: the general path.
        None => arrow_select::interleave::interleave(sources, picked),
    }
}

/// The validity of the gathered rows, if any source has nulls.
fn gather_nulls(nulls: &[Option<&NullBuffer>], runs: &[Run], rows: usize) -> Option<NullBuffer> {
    if nulls.iter().all(Option::is_none) {
        return None;
    }
    let mut builder = BooleanBufferBuilder::new(rows);
    for run in runs {
        match nulls[run.source] {
            Some(valid) => builder.append_buffer(&valid.inner().slice(run.start, run.len)),
            None => builder.append_n(run.len, true),
        }
    }
    Some(NullBuffer::new(builder.finish()))
}

fn gather_primitive<T: ArrowPrimitiveType>(
    sources: &[&dyn Array],
    runs: &[Run],
    rows: usize,
    data_type: &DataType,
) -> Option<ArrayRef> {
    let arrays: Vec<&PrimitiveArray<T>> = sources
        .iter()
        .map(|a| a.as_primitive_opt::<T>())
        .collect::<Option<_>>()?;
    let mut values: Vec<T::Native> = Vec::with_capacity(rows);
    for run in runs {
        values.extend_from_slice(&arrays[run.source].values()[run.start..run.start + run.len]);
    }
    let nulls: Vec<Option<&NullBuffer>> = arrays.iter().map(|a| a.nulls()).collect();
    let array =
        PrimitiveArray::<T>::try_new(ScalarBuffer::from(values), gather_nulls(&nulls, runs, rows))
            .ok()?
            .with_data_type(data_type.clone());
    Some(Arc::new(array))
}

fn gather_bytes<T: ByteArrayType>(
    sources: &[&dyn Array],
    runs: &[Run],
    rows: usize,
) -> Option<ArrayRef> {
    let arrays: Vec<&GenericByteArray<T>> = sources
        .iter()
        .map(|a| a.as_bytes_opt::<T>())
        .collect::<Option<_>>()?;
    let bytes: usize = runs
        .iter()
        .map(|run| {
            let offsets = arrays[run.source].value_offsets();
            (offsets[run.start + run.len] - offsets[run.start]).as_usize()
        })
        .sum();
    let mut values: Vec<u8> = Vec::with_capacity(bytes);
    let mut offsets: Vec<T::Offset> = Vec::with_capacity(rows + 1);
    offsets.push(T::Offset::usize_as(0));
    for run in runs {
        let array = arrays[run.source];
        let source_offsets = &array.value_offsets()[run.start..=run.start + run.len];
        let from = source_offsets[0];
        let base = T::Offset::usize_as(values.len());
        values.extend_from_slice(
            &array.value_data()[from.as_usize()..source_offsets[run.len].as_usize()],
        );
        offsets.extend(source_offsets[1..].iter().map(|&o| base + (o - from)));
    }
    let nulls: Vec<Option<&NullBuffer>> = arrays.iter().map(|a| a.nulls()).collect();
    // The offsets grow monotonically from 0 by construction; `try_new` checks them and
    // the UTF-8 of string values (copied whole from valid arrays) once.
    let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
    let array =
        GenericByteArray::<T>::try_new(offsets, values.into(), gather_nulls(&nulls, runs, rows))
            .ok()?;
    Some(Arc::new(array))
}

#[cfg(test)]
mod tests {
    use arrow_array::{Float64Array, Int64Array, StringArray, TimestampMillisecondArray};

    use super::*;

    /// `gather` against `interleave`, the row-by-row reference, for `picked`.
    fn check(sources: &[ArrayRef], picked: &[(usize, usize)]) {
        let refs: Vec<&dyn Array> = sources.iter().map(AsRef::as_ref).collect();
        let runs = runs_of(picked);
        let got = gather(&refs, picked, &runs).unwrap();
        let want = arrow_select::interleave::interleave(&refs, picked).unwrap();
        assert_eq!(got.to_data(), want.to_data(), "picked {picked:?}");
    }

    /// Runs of three from alternating sources: long enough for the run path.
    fn picks() -> Vec<(usize, usize)> {
        vec![
            (0, 0),
            (0, 1),
            (0, 2),
            (1, 0),
            (1, 1),
            (1, 2),
            (0, 3),
            (0, 4),
            (0, 5),
            (1, 4),
            (1, 5),
            (1, 6),
        ]
    }

    #[test]
    fn runs_join_consecutive_rows_of_one_source_only() {
        assert_eq!(
            runs_of(&[(0, 0), (0, 1), (1, 1), (1, 2), (1, 4), (0, 2)]),
            vec![
                Run {
                    source: 0,
                    start: 0,
                    len: 2
                },
                Run {
                    source: 1,
                    start: 1,
                    len: 2
                },
                Run {
                    source: 1,
                    start: 4,
                    len: 1
                },
                Run {
                    source: 0,
                    start: 2,
                    len: 1
                },
            ]
        );
    }

    #[test]
    fn primitive_runs_with_and_without_nulls_equal_interleave() {
        let a: ArrayRef = Arc::new(Int64Array::from_iter_values(0..7));
        let b: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(10),
            None,
            Some(12),
            Some(13),
            None,
            Some(15),
            Some(16),
        ]));
        check(&[a.clone(), b], &picks());
        check(&[a.clone(), a], &picks());
        let f: ArrayRef = Arc::new(Float64Array::from_iter_values((0..7).map(f64::from)));
        check(&[f.clone(), f], &picks());
    }

    #[test]
    fn timestamps_keep_their_unit_and_time_zone() {
        let ts: ArrayRef =
            Arc::new(TimestampMillisecondArray::from_iter_values(0..7).with_timezone("+01:00"));
        check(&[ts.clone(), ts], &picks());
    }

    #[test]
    fn string_runs_with_nulls_and_empty_values_equal_interleave() {
        let a: ArrayRef = Arc::new(StringArray::from(vec![
            Some("a"),
            Some(""),
            None,
            Some("dddd"),
            Some("é"),
            Some("f"),
            Some("g"),
        ]));
        let b: ArrayRef = Arc::new(StringArray::from_iter_values(
            ["h", "ii", "jjj", "", "k", "ll", "m"].iter(),
        ));
        check(&[a, b.clone()], &picks());
        // Sliced sources: offsets that do not start at zero.
        check(&[b.slice(1, 6), b.slice(0, 7)], &picks()[..9]);
    }

    #[test]
    fn short_runs_and_other_types_take_the_general_path() {
        let a: ArrayRef = Arc::new(Int64Array::from_iter_values(0..4));
        check(&[a.clone(), a], &[(0, 0), (1, 0), (0, 1), (1, 1)]);
        let bools: ArrayRef = Arc::new(arrow_array::BooleanArray::from(vec![
            true, false, true, true, false, false, true,
        ]));
        check(&[bools.clone(), bools], &picks());
    }
}

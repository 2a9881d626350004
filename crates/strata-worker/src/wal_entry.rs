//! The payload of a region's WAL entry: the mutations of one write batch.
//!
//! Layout (little endian): `[version: u8 = 2][count: u32]` then per mutation
//! `[op_type: u8][first_sequence: u64][raw_len: u32][len: u32][zstd of an Arrow IPC stream
//! of one batch (raw_len bytes once decompressed): len bytes]`. Version 1 (uncompressed
//! IPC, no `raw_len`) is still read.
//!
//! Time-series batches repeat their tags on every row, so compression cuts WAL bytes — and
//! the bytes each sync makes durable — by an order of magnitude. Decompression grows its
//! buffer only as data actually decompresses, so a damaged `raw_len` cannot make it
//! allocate more than the data really holds.
//! Region id and entry id live in the log store's envelope. Decoding treats the bytes as
//! untrusted: every length is checked against what is left, and a damaged IPC stream is a
//! typed error.

use std::io::Cursor;
use std::panic::AssertUnwindSafe;

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use bytes::{BufMut, Bytes, BytesMut};
use strata_request::{OpType, RegionId};

use crate::error::{Result, WorkerError};

const FORMAT_VERSION: u8 = 2;
const UNCOMPRESSED_VERSION: u8 = 1;
/// Fast compression: the WAL is on the write path.
const ZSTD_LEVEL: i32 = 1;

/// Rows to put or delete, with the sequence of their first row.
#[derive(Debug, Clone)]
pub(crate) struct Mutation {
    pub(crate) op_type: OpType,
    pub(crate) first_sequence: u64,
    pub(crate) batch: RecordBatch,
}

/// Encodes `mutations` as one entry payload: format 2 (zstd) with `compress`, else
/// format 1 (plain IPC: less CPU on the write path, about 5× the bytes for TSBS rows).
pub(crate) fn encode(region_id: RegionId, mutations: &[Mutation], compress: bool) -> Result<Bytes> {
    let mut out = BytesMut::new();
    out.put_u8(if compress {
        FORMAT_VERSION
    } else {
        UNCOMPRESSED_VERSION
    });
    out.put_u32_le(count_u32(mutations.len(), region_id)?);
    for mutation in mutations {
        let mut ipc = Vec::new();
        let encode_err = |e: arrow_schema::ArrowError| WorkerError::InvalidRequest {
            region_id,
            reason: format!("cannot encode the batch for the WAL: {e}"),
        };
        let mut writer =
            StreamWriter::try_new(&mut ipc, &mutation.batch.schema()).map_err(encode_err)?;
        writer.write(&mutation.batch).map_err(encode_err)?;
        writer.finish().map_err(encode_err)?;
        drop(writer);
        out.put_u8(mutation.op_type.as_u8());
        out.put_u64_le(mutation.first_sequence);
        if compress {
            let compressed = zstd::bulk::compress(&ipc, ZSTD_LEVEL).map_err(|e| {
                WorkerError::InvalidRequest {
                    region_id,
                    reason: format!("cannot compress the batch for the WAL: {e}"),
                }
            })?;
            out.put_u32_le(count_u32(ipc.len(), region_id)?);
            out.put_u32_le(count_u32(compressed.len(), region_id)?);
            out.put_slice(&compressed);
        } else {
            out.put_u32_le(count_u32(ipc.len(), region_id)?);
            out.put_slice(&ipc);
        }
    }
    Ok(out.freeze())
}

fn count_u32(n: usize, region_id: RegionId) -> Result<u32> {
    u32::try_from(n).map_err(|_| WorkerError::InvalidRequest {
        region_id,
        reason: format!("{n} is too large for a WAL entry"),
    })
}

/// Decodes an entry payload written by [`encode`].
pub(crate) fn decode(region_id: RegionId, entry_id: u64, data: &[u8]) -> Result<Vec<Mutation>> {
    let corrupt = |reason: String| WorkerError::CorruptWalEntry {
        region_id,
        entry_id,
        reason,
    };
    let mut rest = data;
    let version = take(&mut rest, 1).ok_or_else(|| corrupt("empty payload".into()))?[0];
    if version != FORMAT_VERSION && version != UNCOMPRESSED_VERSION {
        return Err(corrupt(format!("unknown format version {version}")));
    }
    let count = read_u32(&mut rest).ok_or_else(|| corrupt("truncated header".into()))?;
    let mut mutations = Vec::new();
    for index in 0..count {
        let header = |what: &str| corrupt(format!("mutation {index}: truncated {what}"));
        let op = take(&mut rest, 1).ok_or_else(|| header("op type"))?[0];
        let op_type =
            OpType::from_u8(op).ok_or_else(|| corrupt(format!("unknown op type {op}")))?;
        let first_sequence = read_u64(&mut rest).ok_or_else(|| header("sequence"))?;
        let raw_len = if version == FORMAT_VERSION {
            Some(read_u32(&mut rest).ok_or_else(|| header("raw length"))?)
        } else {
            None
        };
        let len = read_u32(&mut rest).ok_or_else(|| header("length"))?;
        let len = usize::try_from(len).map_err(|_| header("length"))?;
        let ipc = take(&mut rest, len).ok_or_else(|| {
            corrupt(format!(
                "mutation {index}: {len} bytes announced, {} left",
                rest.len()
            ))
        })?;
        let batch = match raw_len {
            Some(raw_len) => decompress(ipc, raw_len).and_then(|raw| decode_batch(&raw)),
            None => decode_batch(ipc),
        }
        .map_err(|reason| corrupt(format!("mutation {index}: {reason}")))?;
        mutations.push(Mutation {
            op_type,
            first_sequence,
            batch,
        });
    }
    if !rest.is_empty() {
        return Err(corrupt(format!("{} trailing bytes", rest.len())));
    }
    Ok(mutations)
}

/// Decompresses `compressed`, which must yield exactly `raw_len` bytes; the buffer grows
/// with the data actually produced, never to a size taken on trust.
fn decompress(compressed: &[u8], raw_len: u32) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read;
    let raw_len = u64::from(raw_len);
    let decoder = zstd::stream::read::Decoder::new(compressed).map_err(|e| e.to_string())?;
    let mut raw = Vec::with_capacity(compressed.len().saturating_mul(4));
    // One byte past `raw_len` tells a longer stream from an exact one.
    decoder
        .take(raw_len + 1)
        .read_to_end(&mut raw)
        .map_err(|e| format!("cannot decompress: {e}"))?;
    if raw.len() as u64 != raw_len {
        return Err(format!(
            "decompressed to {} bytes, the header says {raw_len}",
            raw.len()
        ));
    }
    Ok(raw)
}

fn decode_batch(ipc: &[u8]) -> std::result::Result<RecordBatch, String> {
    // Arrow's IPC reader is not guaranteed panic-free on damaged input; contain it.
    std::panic::catch_unwind(AssertUnwindSafe(|| {
        let mut reader =
            StreamReader::try_new(Cursor::new(ipc), None).map_err(|e| e.to_string())?;
        let batch = reader
            .next()
            .ok_or_else(|| "no batch in the IPC stream".to_string())?
            .map_err(|e| e.to_string())?;
        Ok(batch)
    }))
    .unwrap_or_else(|_| Err("the IPC decoder panicked on the bytes".to_string()))
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if rest.len() < n {
        return None;
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Some(head)
}

fn read_u32(rest: &mut &[u8]) -> Option<u32> {
    take(rest, 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
}

fn read_u64(rest: &mut &[u8]) -> Option<u64> {
    take(rest, 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Float64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn batch(rows: usize) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("host", DataType::Utf8, false),
            Field::new("v", DataType::Float64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| format!("h{i}")),
                )),
                Arc::new(Float64Array::from_iter_values((0..rows).map(|i| i as f64))),
            ],
        )
        .unwrap()
    }

    #[test]
    fn mutations_round_trip_with_op_type_and_sequence() {
        let region = RegionId::new(1, 2);
        let mutations = vec![
            Mutation {
                op_type: OpType::Put,
                first_sequence: 7,
                batch: batch(3),
            },
            Mutation {
                op_type: OpType::Delete,
                first_sequence: 10,
                batch: batch(1),
            },
        ];
        let bytes = encode(region, &mutations, true).unwrap();
        let back = decode(region, 1, &bytes).unwrap();
        assert_eq!(back.len(), 2);
        for (a, b) in mutations.iter().zip(&back) {
            assert_eq!(a.op_type, b.op_type);
            assert_eq!(a.first_sequence, b.first_sequence);
            assert_eq!(a.batch, b.batch);
        }
    }

    #[test]
    fn version_1_payloads_without_compression_still_decode() {
        let region = RegionId::new(1, 2);
        let original = batch(4);
        let mut ipc = Vec::new();
        let mut writer = StreamWriter::try_new(&mut ipc, &original.schema()).unwrap();
        writer.write(&original).unwrap();
        writer.finish().unwrap();
        drop(writer);
        let mut payload = vec![UNCOMPRESSED_VERSION];
        payload.extend_from_slice(&1u32.to_le_bytes());
        payload.push(OpType::Put.as_u8());
        payload.extend_from_slice(&9u64.to_le_bytes());
        payload.extend_from_slice(&(ipc.len() as u32).to_le_bytes());
        payload.extend_from_slice(&ipc);
        let back = decode(region, 1, &payload).unwrap();
        assert_eq!((back[0].first_sequence, &back[0].batch), (9, &original));
    }

    #[test]
    fn compression_shrinks_repetitive_batches_and_a_lying_raw_length_is_an_error() {
        let region = RegionId::new(1, 2);
        let mutation = Mutation {
            op_type: OpType::Put,
            first_sequence: 1,
            batch: batch(2000),
        };
        let bytes = encode(region, std::slice::from_ref(&mutation), true).unwrap();
        let raw = u32::from_le_bytes(bytes[14..18].try_into().unwrap());
        assert!(
            bytes.len() * 2 < raw as usize,
            "{} bytes for {raw} raw",
            bytes.len()
        );
        let mut lying = bytes.to_vec();
        lying[14..18].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(
            decode(region, 1, &lying).is_err(),
            "a raw length that does not match fails"
        );
    }

    #[test]
    fn every_truncation_and_seeded_corruption_is_a_typed_error_never_a_panic() {
        let region = RegionId::new(1, 2);
        for compress in [true, false] {
            let mutation = Mutation {
                op_type: OpType::Put,
                first_sequence: 1,
                batch: batch(5),
            };
            let bytes = encode(region, &[mutation], compress).unwrap();
            for cut in 0..bytes.len() {
                assert!(
                    decode(region, 1, &bytes[..cut]).is_err(),
                    "a payload cut at {cut} decoded (compress = {compress})"
                );
            }
            // Seeded single-byte corruptions: each either decodes (a flipped value byte) or
            // fails with a typed error; none panics or allocates on a damaged length.
            let mut state = 0x9e37_79b9_7f4a_7c15_u64;
            for _ in 0..2000 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let mut damaged = bytes.to_vec();
                let at = (state % damaged.len() as u64) as usize;
                damaged[at] ^= 1 << (state >> 60 & 7);
                let _ = decode(region, 1, &damaged);
            }
        }
    }
}

//! On-disk format of a WAL segment.
//!
//! ```text
//! segment := header group* (bytes after the last group are not part of the log)
//! header  := "STRATAWL" version:u32 segment_seq:u64 crc32c(previous 20 bytes):u32   (24 bytes)
//! group   := record* commit
//! record  := len:u32 crc:u32 payload[len]
//!            crc = crc32c(segment_seq ‖ len ‖ payload)
//! payload := 1 count:u32 (region:u64 entry_id:u64 data_len:u32 data[data_len])*   entries
//!          | 2 region:u64 entry_id:u64                                             obsolete
//!          | 3 region:u64                                                          drop
//! commit  := a record whose payload is 4 "STRATAGC" offset:u64 (the commit's own offset)
//! ```
//!
//! All integers are little-endian. Mixing the segment's sequence number into every record's
//! checksum means bytes left over from another segment never verify — which is what lets a
//! segment file be recycled: whatever an older segment left after the last group of this one
//! is never taken for a record of it. Each group commit ends with a commit record, so
//! recovery keeps whole groups only, and can tell damage followed by a later committed group
//! (corruption) from an unfinished last group (a torn tail): the commit record's magic is
//! searchable and its own offset is in its checksummed payload. Decoding never trusts a
//! length: each is checked against the bytes that remain (and the frame length against the
//! maximum record size) before anything is allocated.

use bytes::Bytes;

pub(crate) const MAGIC: &[u8; 8] = b"STRATAWL";
pub(crate) const VERSION: u32 = 2;
pub(crate) const HEADER_LEN: usize = 24;
pub(crate) const FRAME_HEADER_LEN: usize = 8;

const TYPE_ENTRIES: u8 = 1;
const TYPE_OBSOLETE: u8 = 2;
const TYPE_DROP: u8 = 3;
const TYPE_COMMIT: u8 = 4;

/// The magic inside a commit record's payload, searched for when recovery must know whether
/// a committed group follows some damage.
pub(crate) const COMMIT_MAGIC: &[u8; 8] = b"STRATAGC";
/// Payload length of a commit record.
pub(crate) const COMMIT_PAYLOAD_LEN: usize = 1 + 8 + 8;
/// Length of a whole commit record (frame header and payload).
pub(crate) const COMMIT_RECORD_LEN: usize = FRAME_HEADER_LEN + COMMIT_PAYLOAD_LEN;
/// Where the magic starts inside a commit record.
pub(crate) const COMMIT_MAGIC_AT: usize = FRAME_HEADER_LEN + 1;

/// Per-entry overhead inside an entries payload: region, entry id, data length.
pub(crate) const ENTRY_OVERHEAD: usize = 8 + 8 + 4;

/// The segment header for `seq`.
pub(crate) fn encode_header(seq: u64) -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..20].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c(&header[..20]);
    header[20..].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Checks a segment header; returns its sequence number.
pub(crate) fn decode_header(bytes: &[u8]) -> Result<u64, &'static str> {
    if bytes.len() < HEADER_LEN {
        return Err("segment header is incomplete");
    }
    if &bytes[..8] != MAGIC {
        return Err("bad segment magic");
    }
    if u32_at(bytes, 20) != crc32c::crc32c(&bytes[..20]) {
        return Err("segment header checksum mismatch");
    }
    match u32_at(bytes, 8) {
        VERSION => {}
        1 => {
            return Err(
                "segment format version 1 (before group commit records) is not read by this build; replay it with the build that wrote it",
            );
        }
        _ => return Err("unsupported segment format version"),
    }
    Ok(u64_at(bytes, 12))
}

/// The checksum of a record in segment `seq`.
pub(crate) fn record_crc(seq: u64, payload: &[u8]) -> u32 {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let crc = crc32c::crc32c(&seq.to_le_bytes());
    let crc = crc32c::crc32c_append(crc, &len.to_le_bytes());
    crc32c::crc32c_append(crc, payload)
}

/// The frame header (length and checksum) of `payload` (which must fit in `u32`) in
/// segment `seq`; the record is this header followed by the payload.
pub(crate) fn frame_header(seq: u64, payload: &[u8]) -> [u8; FRAME_HEADER_LEN] {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut header = [0u8; FRAME_HEADER_LEN];
    header[..4].copy_from_slice(&len.to_le_bytes());
    header[4..].copy_from_slice(&record_crc(seq, payload).to_le_bytes());
    header
}

/// One region's entry as passed to the encoder.
pub(crate) struct EntryRef<'a> {
    pub(crate) region_id: u64,
    pub(crate) entry_id: u64,
    pub(crate) data: &'a [u8],
}

/// Encodes an entries payload; `data_len` (the sum of the entries' data lengths) sizes the
/// buffer exactly, so large entries are copied once.
pub(crate) fn encode_entries<'a>(
    entries: impl ExactSizeIterator<Item = EntryRef<'a>>,
    data_len: usize,
) -> Vec<u8> {
    let count = u32::try_from(entries.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(5 + entries.len() * ENTRY_OVERHEAD + data_len);
    out.push(TYPE_ENTRIES);
    out.extend_from_slice(&count.to_le_bytes());
    for e in entries {
        out.extend_from_slice(&e.region_id.to_le_bytes());
        out.extend_from_slice(&e.entry_id.to_le_bytes());
        let len = u32::try_from(e.data.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(e.data);
    }
    out
}

/// Encodes an obsolete marker payload.
pub(crate) fn encode_obsolete(region_id: u64, entry_id: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(17);
    out.push(TYPE_OBSOLETE);
    out.extend_from_slice(&region_id.to_le_bytes());
    out.extend_from_slice(&entry_id.to_le_bytes());
    out
}

/// Encodes the payload of the commit record that ends a group, at `offset` in its segment.
pub(crate) fn encode_commit(offset: u64) -> [u8; COMMIT_PAYLOAD_LEN] {
    let mut out = [0u8; COMMIT_PAYLOAD_LEN];
    out[0] = TYPE_COMMIT;
    out[1..9].copy_from_slice(COMMIT_MAGIC);
    out[9..].copy_from_slice(&offset.to_le_bytes());
    out
}

/// Whether `record` (a whole frame read at `offset` of segment `seq`) is a valid commit
/// record of that segment written at that offset.
pub(crate) fn is_commit_record(record: &[u8; COMMIT_RECORD_LEN], seq: u64, offset: u64) -> bool {
    let mut header = [0u8; FRAME_HEADER_LEN];
    header.copy_from_slice(&record[..FRAME_HEADER_LEN]);
    let (len, crc) = decode_frame_header(&header);
    let payload = &record[FRAME_HEADER_LEN..];
    len as usize == COMMIT_PAYLOAD_LEN
        && record_crc(seq, payload) == crc
        && payload == encode_commit(offset)
}

/// Encodes a drop marker payload.
pub(crate) fn encode_drop(region_id: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(9);
    out.push(TYPE_DROP);
    out.extend_from_slice(&region_id.to_le_bytes());
    out
}

/// A decoded entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodedEntry {
    pub(crate) region_id: u64,
    pub(crate) entry_id: u64,
    pub(crate) data: Bytes,
}

/// A decoded payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Payload {
    Entries(Vec<DecodedEntry>),
    Obsolete {
        region_id: u64,
        entry_id: u64,
    },
    Drop {
        region_id: u64,
    },
    /// The end of a group; `offset` is where the commit record itself was written.
    Commit {
        offset: u64,
    },
}

/// Decodes a payload whose checksum already verified. `payload` is shared, so entry data
/// are zero-copy slices of it.
pub(crate) fn decode_payload(payload: &Bytes) -> Result<Payload, &'static str> {
    let bytes = payload.as_ref();
    let (&kind, rest) = bytes.split_first().ok_or("empty payload")?;
    match kind {
        TYPE_ENTRIES => {
            if rest.len() < 4 {
                return Err("entries payload too short for its count");
            }
            let count = u32_at(rest, 0) as usize;
            // Each entry takes at least ENTRY_OVERHEAD bytes: bound the count before
            // allocating so a corrupt count cannot request a huge vector.
            if count > (rest.len() - 4) / ENTRY_OVERHEAD {
                return Err("entry count exceeds payload");
            }
            let mut entries = Vec::with_capacity(count);
            let mut at = 1 + 4;
            for _ in 0..count {
                if bytes.len() - at < ENTRY_OVERHEAD {
                    return Err("entry header exceeds payload");
                }
                let region_id = u64_at(bytes, at);
                let entry_id = u64_at(bytes, at + 8);
                let len = u32_at(bytes, at + 16) as usize;
                at += ENTRY_OVERHEAD;
                if bytes.len() - at < len {
                    return Err("entry data exceeds payload");
                }
                entries.push(DecodedEntry {
                    region_id,
                    entry_id,
                    data: payload.slice(at..at + len),
                });
                at += len;
            }
            if at != bytes.len() {
                return Err("trailing bytes after entries");
            }
            Ok(Payload::Entries(entries))
        }
        TYPE_OBSOLETE if rest.len() == 16 => Ok(Payload::Obsolete {
            region_id: u64_at(rest, 0),
            entry_id: u64_at(rest, 8),
        }),
        TYPE_DROP if rest.len() == 8 => Ok(Payload::Drop {
            region_id: u64_at(rest, 0),
        }),
        TYPE_COMMIT if rest.len() == COMMIT_PAYLOAD_LEN - 1 && &rest[..8] == COMMIT_MAGIC => {
            Ok(Payload::Commit {
                offset: u64_at(rest, 8),
            })
        }
        TYPE_OBSOLETE | TYPE_DROP | TYPE_COMMIT => Err("marker payload has the wrong length"),
        _ => Err("unknown payload type"),
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Reads a frame header: `(payload length, checksum)`.
pub(crate) fn decode_frame_header(bytes: &[u8; FRAME_HEADER_LEN]) -> (u32, u32) {
    (u32_at(bytes, 0), u32_at(bytes, 4))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_round_trips_and_detects_damage() {
        let h = encode_header(42);
        assert_eq!(decode_header(&h), Ok(42));
        let mut bad = h;
        bad[13] ^= 1;
        assert_eq!(decode_header(&bad), Err("segment header checksum mismatch"));
        assert_eq!(decode_header(&h[..10]), Err("segment header is incomplete"));
        let mut magic = h;
        magic[0] = b'X';
        assert_eq!(decode_header(&magic), Err("bad segment magic"));
    }

    #[test]
    fn checksums_depend_on_the_segment() {
        assert_ne!(record_crc(1, b"abc"), record_crc(2, b"abc"));
    }

    #[test]
    fn markers_round_trip() {
        let o = Bytes::from(encode_obsolete(5, 9));
        assert_eq!(
            decode_payload(&o),
            Ok(Payload::Obsolete {
                region_id: 5,
                entry_id: 9
            })
        );
        let d = Bytes::from(encode_drop(5));
        assert_eq!(decode_payload(&d), Ok(Payload::Drop { region_id: 5 }));
        let c = Bytes::copy_from_slice(&encode_commit(77));
        assert_eq!(decode_payload(&c), Ok(Payload::Commit { offset: 77 }));
        assert!(decode_payload(&Bytes::from_static(&[2, 0])).is_err());
        assert!(decode_payload(&Bytes::from_static(&[4, 0])).is_err());
        assert!(decode_payload(&Bytes::from_static(&[9])).is_err());
        assert!(decode_payload(&Bytes::new()).is_err());
    }

    #[test]
    fn a_commit_record_verifies_only_in_its_segment_at_its_offset() {
        let payload = encode_commit(100);
        let mut record = [0u8; COMMIT_RECORD_LEN];
        record[..FRAME_HEADER_LEN].copy_from_slice(&frame_header(7, &payload));
        record[FRAME_HEADER_LEN..].copy_from_slice(&payload);
        assert_eq!(&record[COMMIT_MAGIC_AT..COMMIT_MAGIC_AT + 8], COMMIT_MAGIC);
        assert!(is_commit_record(&record, 7, 100));
        assert!(
            !is_commit_record(&record, 6, 100),
            "another segment's commit"
        );
        assert!(
            !is_commit_record(&record, 7, 101),
            "copied to another offset"
        );
        let mut bad = record;
        bad[COMMIT_RECORD_LEN - 1] ^= 1;
        assert!(!is_commit_record(&bad, 7, 100));
    }

    #[test]
    fn a_huge_entry_count_is_rejected_before_allocating() {
        let mut p = vec![TYPE_ENTRIES];
        p.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode_payload(&Bytes::from(p)),
            Err("entry count exceeds payload")
        );
    }

    proptest! {
        #[test]
        fn entries_round_trip(entries in proptest::collection::vec(
            (any::<u64>(), any::<u64>(), proptest::collection::vec(any::<u8>(), 0..64)), 0..16)
        ) {
            let data_len = entries.iter().map(|(_, _, d)| d.len()).sum();
            let payload = Bytes::from(encode_entries(entries.iter().map(|(r, i, d)| EntryRef {
                region_id: *r, entry_id: *i, data: d,
            }), data_len));
            let Ok(Payload::Entries(decoded)) = decode_payload(&payload) else {
                return Err(TestCaseError::fail("not entries"));
            };
            prop_assert_eq!(decoded.len(), entries.len());
            for (d, (r, i, data)) in decoded.iter().zip(&entries) {
                prop_assert_eq!((d.region_id, d.entry_id, d.data.as_ref()), (*r, *i, data.as_slice()));
            }
        }

        /// Whatever the bytes, decoding returns a value or an error — never a panic.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_payload(&Bytes::from(bytes.clone()));
            let _ = decode_header(&bytes);
        }
    }
}

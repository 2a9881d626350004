//! Checking an SST against its manifest entry, byte for byte.

use opendal::Operator;
use snafu::ResultExt;

use crate::error::{CorruptSstSnafu, ObjectStoreSnafu, StorageError};

/// Reads the whole file at `path` and checks its size and crc32c against `meta`.
/// Detects any damage, including bit flips Parquet itself would decode without complaint.
pub async fn verify_sst(
    store: &Operator,
    path: &str,
    meta: &super::FileMeta,
) -> Result<(), StorageError> {
    let bytes = store.read(path).await.context(ObjectStoreSnafu {
        operation: "read SST to verify",
        path,
    })?;
    snafu::ensure!(
        bytes.len() as u64 == meta.file_size,
        CorruptSstSnafu {
            path,
            reason: format!(
                "size is {} bytes, the manifest says {}",
                bytes.len(),
                meta.file_size
            ),
        }
    );
    let crc = Iterator::fold(bytes, 0u32, |crc, chunk: bytes::Bytes| {
        crc32c::crc32c_append(crc, &chunk)
    });
    snafu::ensure!(
        crc == meta.checksum,
        CorruptSstSnafu {
            path,
            reason: format!(
                "crc32c is {crc:#010x}, the manifest says {:#010x}",
                meta.checksum
            ),
        }
    );
    Ok(())
}

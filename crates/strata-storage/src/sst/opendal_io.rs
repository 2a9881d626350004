//! Adapters between Parquet's async I/O seams and OpenDAL.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::arrow::async_writer::AsyncFileWriter;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

/// Parquet output into an OpenDAL writer (which uploads in parts on object stores), with a
/// running crc32c of every byte written.
pub(crate) struct OpendalWriter {
    writer: opendal::Writer,
    checksum: Arc<std::sync::atomic::AtomicU32>,
}

impl OpendalWriter {
    /// Wraps `writer`; `checksum` ends as the crc32c of the whole file.
    pub(crate) fn new(
        writer: opendal::Writer,
        checksum: Arc<std::sync::atomic::AtomicU32>,
    ) -> Self {
        Self { writer, checksum }
    }
}

impl AsyncFileWriter for OpendalWriter {
    fn write(&mut self, bs: Bytes) -> BoxFuture<'_, parquet::errors::Result<()>> {
        use std::sync::atomic::Ordering;
        let crc = crc32c::crc32c_append(self.checksum.load(Ordering::Relaxed), &bs);
        self.checksum.store(crc, Ordering::Relaxed);
        async move {
            self.writer
                .write(bs)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn complete(&mut self) -> BoxFuture<'_, parquet::errors::Result<()>> {
        async move {
            self.writer
                .close()
                .await
                .map(|_| ())
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }
}

/// Parquet input from an OpenDAL reader of a file of known size.
#[derive(Clone)]
pub(crate) struct OpendalReader {
    pub(crate) reader: opendal::Reader,
    pub(crate) size: u64,
}

impl AsyncFileReader for OpendalReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.reader
                .read(range)
                .await
                .map(|buffer| buffer.to_bytes())
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.reader
                .fetch(ranges)
                .await
                .map(|buffers| buffers.into_iter().map(|b| b.to_bytes()).collect())
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            // One read of the last 64 KiB usually covers footer and metadata.
            let metadata = ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(64 << 10))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

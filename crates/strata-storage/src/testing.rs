//! Test support (feature `testing`): an OpenDAL layer that fails operations on purpose.
//!
//! ```ignore
//! let plan = Arc::new(FaultPlan::default());
//! let store = store.layer(FaultLayer::new(plan.clone()));
//! plan.fail_writes_containing("/manifest/");   // manifest writes now fail
//! plan.fail_at_ratio(seed, 0.2, "regions/");   // 20 % of reads, writes, lists, deletes
//!                                              // and stats under the prefix fail
//!                                              // (temporary errors: a retry layer retries)
//! plan.delay_containing("/data/", 20ms);       // a slow store for SST files
//! plan.clear();                                // and work again
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use opendal::raw::*;
use opendal::*;

/// Which operations fail. Shared between the test and the layer, changeable at any time.
#[derive(Debug, Default)]
pub struct FaultPlan {
    write_fragments: Mutex<Vec<String>>,
    missing_fragments: Mutex<Vec<String>>,
    write_delays: Mutex<Vec<(String, std::time::Duration)>>,
    ratio: Mutex<Option<RatioFaults>>,
    injected: AtomicU64,
}

/// Seeded random faults on every kind of operation under a path prefix.
#[derive(Debug)]
struct RatioFaults {
    state: u64,
    /// Faults per 2^32 operations.
    threshold: u64,
    prefix: String,
}

impl RatioFaults {
    fn hit(&mut self) -> bool {
        // xorshift64*: seeded and replayable.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        (self.state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) < self.threshold
    }
}

impl FaultPlan {
    /// Writes to any path containing `fragment` fail from now on.
    pub fn fail_writes_containing(&self, fragment: &str) {
        self.write_fragments
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(fragment.to_string());
    }

    /// Reads of any path containing `fragment` find nothing (`NotFound`) from now on, as if
    /// the object had been deleted in the meantime.
    pub fn hide_reads_containing(&self, fragment: &str) {
        self.missing_fragments
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(fragment.to_string());
    }

    fn read_fault(&self, path: &str) -> Result<()> {
        let missing = self
            .missing_fragments
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if missing.iter().any(|f| path.contains(f.as_str())) {
            self.injected.fetch_add(1, Ordering::Relaxed);
            return Err(
                Error::new(ErrorKind::NotFound, "injected: object gone").with_context("path", path)
            );
        }
        Ok(())
    }

    /// From now on, each read, write, list, delete and stat of a path starting with
    /// `prefix` fails with probability `ratio` (seeded by `seed`). The errors are marked
    /// temporary, so OpenDAL's retry layer above this one retries them.
    pub fn fail_at_ratio(&self, seed: u64, ratio: f64, prefix: &str) {
        let threshold = (ratio.clamp(0.0, 1.0) * f64::from(u32::MAX)) as u64;
        *self.ratio.lock().unwrap_or_else(PoisonError::into_inner) = Some(RatioFaults {
            state: seed | 1,
            threshold,
            prefix: prefix.to_string(),
        });
    }

    /// From now on, every chunk written to a path containing `fragment` (and its close),
    /// every read and list of such a path, and every delete batch take `delay` longer: a
    /// slow object store.
    pub fn delay_containing(&self, fragment: &str, delay: std::time::Duration) {
        self.write_delays
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((fragment.to_string(), delay));
    }

    fn write_delay(&self, path: &str) -> Option<std::time::Duration> {
        self.write_delays
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(fragment, _)| path.contains(fragment.as_str()))
            .map(|(_, delay)| *delay)
            .max()
    }

    /// Stops injecting faults and delays.
    pub fn clear(&self) {
        self.write_delays
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.write_fragments
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.missing_fragments
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        *self.ratio.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn ratio_fault(&self, operation: &'static str, path: Option<&str>) -> Result<()> {
        let mut ratio = self.ratio.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(faults) = ratio.as_mut() else {
            return Ok(());
        };
        // A delete learns its paths later: `None` matches any prefix.
        if path.is_none_or(|p| p.starts_with(faults.prefix.as_str())) && faults.hit() {
            self.injected.fetch_add(1, Ordering::Relaxed);
            return Err(Error::new(ErrorKind::Unexpected, "injected fault")
                .with_operation(operation)
                .with_context("path", path.unwrap_or("(delete batch)"))
                .set_temporary());
        }
        Ok(())
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    fn write_fault(&self, path: &str) -> Result<()> {
        let fragments = self
            .write_fragments
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if fragments.iter().any(|f| path.contains(f.as_str())) {
            self.injected.fetch_add(1, Ordering::Relaxed);
            return Err(Error::new(ErrorKind::Unexpected, "injected write fault")
                .with_context("path", path));
        }
        Ok(())
    }
}

/// The layer; see the module docs.
#[derive(Clone)]
pub struct FaultLayer {
    plan: Arc<FaultPlan>,
}

impl FaultLayer {
    /// A layer following `plan`.
    pub fn new(plan: Arc<FaultPlan>) -> Self {
        Self { plan }
    }
}

impl fmt::Debug for FaultLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultLayer")
            .field("plan", &self.plan)
            .finish()
    }
}

impl Layer for FaultLayer {
    fn apply_service(&self, inner: Servicer) -> Servicer {
        Arc::new(FaultService {
            inner,
            plan: self.plan.clone(),
        })
    }
}

struct FaultService {
    inner: Servicer,
    plan: Arc<FaultPlan>,
}

impl fmt::Debug for FaultService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl Service for FaultService {
    type Reader = oio::Reader;
    type Writer = oio::Writer;
    type Lister = oio::Lister;
    type Deleter = oio::Deleter;
    type Copier = oio::Copier;
    type Composer = oio::Composer;

    fn info(&self) -> ServiceInfo {
        self.inner.info()
    }

    fn capability(&self) -> Capability {
        self.inner.capability()
    }

    async fn create_dir(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpCreateDir,
    ) -> Result<RpCreateDir> {
        self.inner.create_dir(ctx, path, args).await
    }

    async fn stat(&self, ctx: &OperationContext, path: &str, args: OpStat) -> Result<RpStat> {
        self.plan.ratio_fault("stat", Some(path))?;
        self.inner.stat(ctx, path, args).await
    }

    fn read(&self, ctx: &OperationContext, path: &str, args: OpRead) -> Result<Self::Reader> {
        self.plan.read_fault(path)?;
        self.plan.ratio_fault("read", Some(path))?;
        let inner = self.inner.read(ctx, path, args)?;
        Ok(match self.plan.write_delay(path) {
            Some(delay) => Box::new(Delayed { inner, delay }),
            None => inner,
        })
    }

    fn write(&self, ctx: &OperationContext, path: &str, args: OpWrite) -> Result<Self::Writer> {
        self.plan.write_fault(path)?;
        self.plan.ratio_fault("write", Some(path))?;
        let inner = self.inner.write(ctx, path, args)?;
        Ok(match self.plan.write_delay(path) {
            Some(delay) => Box::new(Delayed { inner, delay }),
            None => inner,
        })
    }

    fn delete(&self, ctx: &OperationContext) -> Result<Self::Deleter> {
        // The deleter learns its paths later; faults and delays apply to the whole batch.
        self.plan.ratio_fault("delete", None)?;
        let inner = self.inner.delete(ctx)?;
        let delay = self
            .plan
            .write_delays
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(_, delay)| *delay)
            .max();
        Ok(match delay {
            Some(delay) => Box::new(Delayed { inner, delay }),
            None => inner,
        })
    }

    fn list(&self, ctx: &OperationContext, path: &str, args: OpList) -> Result<Self::Lister> {
        self.plan.ratio_fault("list", Some(path))?;
        let inner = self.inner.list(ctx, path, args)?;
        Ok(match self.plan.write_delay(path) {
            Some(delay) => Box::new(Delayed { inner, delay }),
            None => inner,
        })
    }

    fn copy(
        &self,
        ctx: &OperationContext,
        from: &str,
        to: &str,
        args: OpCopy,
    ) -> Result<Self::Copier> {
        self.inner.copy(ctx, from, to, args)
    }

    fn compose(&self, ctx: &OperationContext, to: &str, args: OpCompose) -> Result<Self::Composer> {
        self.inner.compose(ctx, to, args)
    }

    async fn rename(
        &self,
        ctx: &OperationContext,
        from: &str,
        to: &str,
        args: OpRename,
    ) -> Result<RpRename> {
        self.inner.rename(ctx, from, to, args).await
    }

    async fn presign(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpPresign,
    ) -> Result<RpPresign> {
        self.inner.presign(ctx, path, args).await
    }
}

/// An object-store handle (writer, reader, lister, deleter) whose every call waits `delay`
/// first: a slow object store.
struct Delayed<T> {
    inner: T,
    delay: std::time::Duration,
}

/// The injected latency itself: a slow store, not a test waiting for the engine.
#[allow(clippy::disallowed_methods)]
async fn pause(delay: std::time::Duration) {
    tokio::time::sleep(delay).await;
}

impl oio::Write for Delayed<oio::Writer> {
    async fn write(&mut self, bs: Buffer) -> Result<()> {
        pause(self.delay).await;
        self.inner.write(bs).await
    }

    async fn close(&mut self) -> Result<Metadata> {
        pause(self.delay).await;
        self.inner.close().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}

impl oio::Read for Delayed<oio::Reader> {
    async fn open(&self, range: BytesRange) -> Result<(RpRead, Box<dyn oio::ReadStreamDyn>)> {
        pause(self.delay).await;
        self.inner.open(range).await
    }

    async fn read(&self, range: BytesRange) -> Result<(RpRead, Buffer)> {
        pause(self.delay).await;
        self.inner.read(range).await
    }
}

impl oio::List for Delayed<oio::Lister> {
    async fn next(&mut self) -> Result<Option<oio::Entry>> {
        pause(self.delay).await;
        self.inner.next().await
    }
}

impl oio::Delete for Delayed<oio::Deleter> {
    async fn delete(&mut self, path: &str, args: OpDelete) -> Result<()> {
        pause(self.delay).await;
        self.inner.delete(path, args).await
    }

    async fn close(&mut self) -> Result<()> {
        self.inner.close().await
    }
}

/// A one-row level-0 file entry of `region_id` under a fresh id, for tests that need
/// manifest entries (the file itself is not written).
pub fn file_meta(region_id: strata_request::RegionId) -> crate::FileMeta {
    crate::FileMeta {
        region_id,
        file_id: crate::FileId::random(),
        level: 0,
        time_range: (0, 1),
        num_rows: 1,
        num_row_groups: 1,
        file_size: 1,
        max_sequence: 1,
        checksum: 0,
        num_deletes: None,
        time_slice: None,
    }
}

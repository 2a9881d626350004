//! Test support (feature `testing`): an OpenDAL layer that fails operations on purpose.
//!
//! ```ignore
//! let plan = Arc::new(FaultPlan::default());
//! let store = store.layer(FaultLayer::new(plan.clone()));
//! plan.fail_writes_containing("/manifest/");   // manifest writes now fail
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
    injected: AtomicU64,
}

impl FaultPlan {
    /// Writes to any path containing `fragment` fail from now on.
    pub fn fail_writes_containing(&self, fragment: &str) {
        self.write_fragments
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(fragment.to_string());
    }

    /// Stops injecting faults.
    pub fn clear(&self) {
        self.write_fragments
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
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
        self.inner.stat(ctx, path, args).await
    }

    fn read(&self, ctx: &OperationContext, path: &str, args: OpRead) -> Result<Self::Reader> {
        self.inner.read(ctx, path, args)
    }

    fn write(&self, ctx: &OperationContext, path: &str, args: OpWrite) -> Result<Self::Writer> {
        self.plan.write_fault(path)?;
        self.inner.write(ctx, path, args)
    }

    fn delete(&self, ctx: &OperationContext) -> Result<Self::Deleter> {
        self.inner.delete(ctx)
    }

    fn list(&self, ctx: &OperationContext, path: &str, args: OpList) -> Result<Self::Lister> {
        self.inner.list(ctx, path, args)
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

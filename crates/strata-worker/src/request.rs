//! What travels over a worker's channel, and each request's reply sender.

use std::time::Instant;

use strata_compaction::CompactionStats;
use strata_request::{AffectedRows, DdlRequest, OutputTx, WriteRequest};

use crate::error::WorkerError;

/// Answers one caller.
pub(crate) type ReplyTx = OutputTx<AffectedRows, WorkerError>;

/// Where the caller of a compaction hears what it did, besides its reply.
pub(crate) type StatsTx = tokio::sync::oneshot::Sender<CompactionStats>;

/// A write and its caller.
#[derive(Debug)]
pub(crate) struct SenderWriteRequest {
    pub(crate) request: WriteRequest,
    pub(crate) sender: ReplyTx,
    /// Estimated bytes, computed once (stall and reject accounting).
    pub(crate) size: usize,
}

impl SenderWriteRequest {
    pub(crate) fn new(request: WriteRequest, sender: ReplyTx) -> Self {
        let size = request.estimated_size();
        Self {
            request,
            sender,
            size,
        }
    }

    pub(crate) fn fail(self, error: WorkerError) {
        self.sender.send(Err(error));
    }
}

/// A DDL and its caller.
#[derive(Debug)]
pub(crate) struct SenderDdlRequest {
    pub(crate) request: DdlRequest,
    pub(crate) sender: ReplyTx,
    /// For a compaction: where its stats go (`WorkerGroup::compact`).
    pub(crate) compacted: Option<StatsTx>,
}

impl SenderDdlRequest {
    /// A DDL answered by its reply alone.
    pub(crate) fn new(request: DdlRequest, sender: ReplyTx) -> Self {
        Self {
            request,
            sender,
            compacted: None,
        }
    }
}

impl SenderDdlRequest {
    /// Whether the DDL still runs when the flush it waits for fails: close, drop and
    /// truncate wait behind a flush only so that none runs beside them.
    pub(crate) fn outlives_failed_flush(&self) -> bool {
        matches!(
            self.request,
            DdlRequest::Close(_) | DdlRequest::Drop(_) | DdlRequest::Truncate(_)
        )
    }
}

/// A request to a worker.
#[derive(Debug)]
pub(crate) enum WorkerRequest {
    Write(SenderWriteRequest, Instant),
    Ddl(SenderDdlRequest, Instant),
    /// Finish background results, answer everything pending, exit.
    Stop,
}

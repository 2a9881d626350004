//! Strata's request types: the vocabulary every other layer speaks.
//!
//! - [`RegionId`]: which region a request is for (`table_id.region_number`).
//! - [`RegionMetadata`] (built with [`RegionMetadataBuilder`] from [`ColumnSchema`]s): a
//!   region's validated schema — tags, fields, exactly one timestamp — and its evolution
//!   ([`RegionMetadata::add_columns`], [`RegionMetadata::drop_columns`]).
//! - [`WriteRequest`]: an Arrow [`RecordBatch`](arrow_array::RecordBatch) to put or delete;
//!   [`WriteRequest::validate`] returns the batch to store or a typed [`WriteError`].
//! - [`DdlRequest`] and its parts: create, open, close, drop, alter, flush, compact, truncate.
//! - [`reply_channel`]: [`OutputTx`] / [`Reply`], which answer every waiter exactly once and
//!   never leave one hanging.
//!
//! # Layering
//!
//! This is a leaf crate. It depends on Arrow, serde, snafu and tokio's `sync` only, and
//! **must never depend on any other Strata crate**: everything else depends on it.

mod ddl;
mod metadata;
mod region_id;
mod reply;
mod schema;
mod write;

pub use ddl::{
    AlterKind, AlterRequest, CloseRequest, CompactRequest, CreateRequest, DdlRequest, DropRequest,
    FlushRequest, OpenRequest, RegionOptionChange, RegionOptions, RegionRole, SetRoleRequest,
    SetWritableRequest, SyncRequest, TruncateRequest,
};
pub use metadata::{
    MAX_COLUMN_NAME_LEN, MetadataError, RESERVED_COLUMN_PREFIX, RegionMetadata,
    RegionMetadataBuilder,
};
pub use region_id::{ParseRegionIdError, ParseRegionIdReason, RegionId};
pub use reply::{AffectedRows, OutputTx, Reply, Unanswered, reply_channel};
pub use schema::{ColumnDataType, ColumnSchema, SemanticType, Value};
pub use write::{OpType, WriteError, WriteRequest};

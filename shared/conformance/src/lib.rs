//! deltadesk's port conformance suite: async checks that a `StateStore`, `Queue` or `BlobStore`
//! implementation keeps the semantics the engine relies on. Each check panics, naming the check and
//! the deviation, on the first difference, so adapters call them from ordinary `#[tokio::test]`s.
//!
//! The checks only use the port traits, so the embedded adapters (SQLite, files) and the AWS ones
//! (DynamoDB, SQS, S3, or an emulator of them) run the very same assertions. Every check writes under
//! fresh, random keys and queue names, so a suite may share a table, bucket or database file with
//! other tests and with earlier runs.
//!
//! Timing-based queue checks use visibility timeouts of 1–2 s and poll with deadlines rather than
//! fixed sleeps where the backend may lag (SQS's queue depth is approximate), so a whole queue run
//! takes a few seconds.
//!
//! # Layout
//! - [`state`]: [`state_store`] — conditional puts, revisions, atomic transactions with the failing
//!   index, merged `Add`s, prefix queries with pagination, DynamoDB's limits.
//! - [`mod@queue`]: [`queue()`] — at-least-once delivery, receipts, visibility, delay, depth, dead-letter
//!   queue and redrive, concurrent receivers; [`QueueFactory`] opens queues by name.
//! - [`blobs`]: [`blob_store`] — put/get/open of a few MiB, content-addressed uploads with their hash
//!   and limit, missing keys.

pub mod blobs;
pub mod queue;
pub mod state;

pub use blobs::blob_store;
pub use queue::{queue, QueueFactory, StaleReceipts};
pub use state::state_store;

/// A fresh, short, name-safe token (`[a-z0-9]`), so that runs never see each other's data.
pub(crate) fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

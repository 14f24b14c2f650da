//! deltadesk's embedded adapters: the state store, queues and blob store of the single-binary mode,
//! with the semantics of the DynamoDB, SQS and S3 adapters they stand in for.
//!
//! # Layout
//! - [`sqlite_state`]: [`SqliteState`], the [`StateStore`](deltadesk_core::ports::StateStore) on SQLite —
//!   revisions, conditional all-or-nothing transactions, TTL purge (DynamoDB's shape).
//! - [`sqlite_queue`]: [`SqliteQueue`], the [`Queue`](deltadesk_core::ports::Queue) on SQLite — visibility
//!   timeout, receipts, receive count, dead-letter queue `{name}-dlq` (SQS's shape).
//! - [`fs_blobs`]: [`FsBlobs`], the [`BlobStore`](deltadesk_core::ports::BlobStore) on the file system —
//!   atomic puts by rename, streamed content-addressed uploads (S3's shape).
//! - [`embedded`]: [`open_engine`], the engine wired on these adapters under one state directory.
//! - `sqlite` (private): connection setup (WAL, busy timeout) and running rusqlite off the async runtime.

pub mod embedded;
pub mod fs_blobs;
mod sqlite;
pub mod sqlite_queue;
pub mod sqlite_state;

pub use embedded::open_engine;
pub use fs_blobs::FsBlobs;
pub use sqlite_queue::{Redrive, SqliteQueue};
pub use sqlite_state::SqliteState;

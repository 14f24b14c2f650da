//! Ports: the narrow async traits the engine talks through. Adapters are named after their technology.

pub mod blobs;
pub mod queue;
pub mod source;
pub mod state;
pub mod target;

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use serde::{Deserialize, Serialize};

pub use blobs::{BlobError, BlobInfo, BlobStore};
pub use queue::{Queue, QueueDepth, QueueError, Received};
pub use source::{ChangePage, ChangeRef, HelpDeskSource, SourceError};
pub use state::{Condition, Item, StateError, StateStore, Write, WriteOp};
pub use target::{CommentWrite, HelpDeskTarget, TargetError, TargetListPage, UploadedAttachment};

/// Attachment bytes in flight: never a whole file in memory.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Request counters a connector keeps per help desk; the run report shows them per side.
#[derive(Debug, Default)]
pub struct ApiCounters {
    pub calls: AtomicU64,
    pub throttled: AtomicU64,
    pub retries: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiStats {
    pub calls: u64,
    pub throttled: u64,
    pub retries: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl ApiCounters {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    pub fn snapshot(&self) -> ApiStats {
        ApiStats {
            calls: self.calls.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
        }
    }
}

impl ApiStats {
    pub fn since(&self, earlier: &ApiStats) -> ApiStats {
        ApiStats {
            calls: self.calls.saturating_sub(earlier.calls),
            throttled: self.throttled.saturating_sub(earlier.throttled),
            retries: self.retries.saturating_sub(earlier.retries),
            bytes_in: self.bytes_in.saturating_sub(earlier.bytes_in),
            bytes_out: self.bytes_out.saturating_sub(earlier.bytes_out),
        }
    }
    pub fn plus(&self, o: &ApiStats) -> ApiStats {
        ApiStats {
            calls: self.calls + o.calls,
            throttled: self.throttled + o.throttled,
            retries: self.retries + o.retries,
            bytes_in: self.bytes_in + o.bytes_in,
            bytes_out: self.bytes_out + o.bytes_out,
        }
    }
}

//! The queue port, with SQS semantics: at-least-once, visibility timeout, receive count, dead-letter queue.

use std::time::Duration;

use async_trait::async_trait;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub message_id: String,
    /// Valid until the message is received again. Deleting with a stale receipt is a no-op on the local
    /// queue; on SQS it *may* still delete, so every handler is idempotent and never relies on the
    /// difference (a deleted redelivery only loses work another delivery already did or will redo).
    pub receipt: String,
    pub body: String,
    /// 1 on first delivery.
    pub receive_count: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
}

impl QueueDepth {
    pub fn total(&self) -> u64 {
        self.visible + self.in_flight + self.delayed
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue {queue} unavailable: {source}")]
    Unavailable {
        queue: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("message for queue {queue} rejected: {cause}")]
    Rejected { queue: String, cause: String },
}

impl QueueError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, QueueError::Unavailable { .. })
    }
}

/// One queue. Messages received more than the redrive limit move to the queue's dead-letter queue.
#[async_trait]
pub trait Queue: Send + Sync {
    fn name(&self) -> &str;
    async fn send(&self, body: &str, delay: Duration) -> Result<(), QueueError>;
    async fn send_batch(&self, bodies: &[String]) -> Result<(), QueueError>;
    /// Up to `max` messages, hidden from other receivers for `visibility`; waits up to `wait` for one.
    async fn receive(&self, max: usize, visibility: Duration, wait: Duration) -> Result<Vec<Received>, QueueError>;
    async fn delete(&self, receipt: &str) -> Result<(), QueueError>;
    async fn change_visibility(&self, receipt: &str, visibility: Duration) -> Result<(), QueueError>;
    async fn depth(&self) -> Result<QueueDepth, QueueError>;
    /// Moves every message of this queue's dead-letter queue back onto it; returns how many moved.
    async fn redrive_dead_letters(&self) -> Result<u64, QueueError>;
    /// Bodies currently in the dead-letter queue (for reports and the rerun path).
    async fn dead_letters(&self, max: usize) -> Result<Vec<String>, QueueError>;
}

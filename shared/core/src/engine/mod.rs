//! The engine: use cases that plan windows, fetch pages and tickets, and write tickets; run bookkeeping;
//! reports; verify; and the embedded runner. Lambda handlers and the embedded runner call the same use cases.

pub mod fetch;
pub mod mapping;
pub mod messages;
pub mod plan;
pub mod records;
pub mod report;
pub mod runner;
pub mod runs;
pub mod verify;
pub mod write;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::ports::{BlobError, BlobStore, HelpDeskSource, HelpDeskTarget, Queue, QueueError, SourceError, StateError, StateStore, TargetError};
use crate::window::WindowRules;

/// Where "now" comes from; tests pin it to check the watermark rules at given instants.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Tunables of one migration's engine.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub rules: WindowRules,
    /// Margin for clocks that disagree with the source's: snapshots younger than this are re-read when seen again.
    pub clock_skew_margin: Duration,
    /// How long a worker may hold a ticket before another may take it over.
    pub lease_ttl: Duration,
    /// Deliveries of one ticket's message before a transient error counts as a permanent failure of the ticket.
    pub max_attempts: u32,
    /// Largest attachment staged at all (bigger ones are reported, not copied).
    pub max_staged_attachment_bytes: u64,
    /// Prefix of the source reference stored on each target ticket.
    pub source_ref_prefix: String,
    /// How long per-run bookkeeping (run items) is kept; the store may drop it after that (DynamoDB TTL).
    /// Mappings and watermarks are kept for the life of the migration.
    pub retention: Duration,
    /// How source values are named in the target (identity by default).
    pub mapping: mapping::Mapping,
}

impl EngineSettings {
    pub fn new(rules: WindowRules, migration: &str) -> Self {
        EngineSettings {
            rules,
            clock_skew_margin: Duration::from_secs(2),
            lease_ttl: Duration::from_secs(120),
            max_attempts: 5,
            max_staged_attachment_bytes: 2 * 1024 * 1024 * 1024,
            source_ref_prefix: format!("dd:{migration}:"),
            retention: Duration::from_secs(10 * 24 * 3600),
            mapping: mapping::Mapping::default(),
        }
    }
}

/// Everything a use case needs: the migration's id, its ports and settings.
#[derive(Clone)]
pub struct Engine {
    pub migration: String,
    pub source: Arc<dyn HelpDeskSource>,
    pub target: Arc<dyn HelpDeskTarget>,
    pub state: Arc<dyn StateStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub fetch_queue: Arc<dyn Queue>,
    pub write_queue: Arc<dyn Queue>,
    pub settings: EngineSettings,
    pub clock: Arc<dyn Clock>,
    /// Identifies this process (and worker) as a lease owner.
    pub instance: String,
}

impl Engine {
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
    /// When an item written now may be dropped by the store (see `EngineSettings::retention`).
    pub fn expires_at(&self) -> DateTime<Utc> {
        self.now() + chrono::Duration::from_std(self.settings.retention).unwrap_or(chrono::Duration::days(10))
    }

    pub fn source_ref(&self, ticket: &crate::model::TicketId) -> String {
        format!("{}{}", self.settings.source_ref_prefix, ticket)
    }
}

/// Why a use case could not finish; `is_retryable()` decides between redelivery and recording a failure.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("malformed message: {0}")]
    BadMessage(String),
    #[error("{0}")]
    Refused(String),
    /// Another worker holds the ticket, or an earlier step has not landed yet: try again shortly.
    #[error("busy: {0}")]
    Busy(String),
}

impl EngineError {
    pub fn is_retryable(&self) -> bool {
        match self {
            EngineError::Source(e) => e.is_retryable(),
            EngineError::Target(e) => e.is_retryable(),
            EngineError::State(e) => e.is_retryable() || matches!(e, StateError::ConditionFailed { .. }),
            EngineError::Blob(e) => e.is_retryable(),
            EngineError::Queue(e) => e.is_retryable(),
            EngineError::BadMessage(_) | EngineError::Refused(_) => false,
            EngineError::Busy(_) => true,
        }
    }
}

//! The help-desk source port: what changed in a window, a ticket's full snapshot, attachment bytes.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{ApiStats, ByteStream};
use crate::model::{Attachment, Ticket, TicketId};
use crate::window::Window;

/// One changed ticket as the change listing reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRef {
    pub ticket_id: TicketId,
    pub updated_at: DateTime<Utc>,
    /// The listing already says the ticket is gone (Zendesk exports deleted tickets with status `deleted`).
    pub deleted: bool,
}

/// A page of changes. `next_cursor == None` means the stream is exhausted for now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangePage {
    pub changes: Vec<ChangeRef>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source unavailable ({context}): {source}")]
    Unavailable {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("source throttled ({context}); retry after {retry_after:?}")]
    Throttled { context: String, retry_after: Duration },
    #[error("source rejected the credentials: {0}")]
    Auth(String),
    #[error("source sent a malformed record {record}: {cause}")]
    Malformed { record: String, cause: String },
    #[error("source refused {context}: HTTP {status}: {message}")]
    Rejected { context: String, status: u16, message: String },
}

impl SourceError {
    /// Transient failures are retried by redelivery; the rest fail the record and are reported.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SourceError::Unavailable { .. } | SourceError::Throttled { .. })
    }
}

#[async_trait]
pub trait HelpDeskSource: Send + Sync {
    /// The connector kind, for reports (`zendesk`, `rt`, …).
    fn kind(&self) -> &'static str;
    /// How long after a change the source's change listing is guaranteed to show it.
    fn publication_lag(&self) -> Duration;
    /// Changes with `updated_at >= window.start`; the engine drops those after `window.end`.
    /// Resumable: pass the returned cursor to continue.
    async fn changes(&self, window: &Window, cursor: Option<&str>) -> Result<ChangePage, SourceError>;
    /// The ticket's current snapshot with comments in source order; `None` if it no longer exists.
    async fn ticket(&self, id: &TicketId) -> Result<Option<Ticket>, SourceError>;
    /// Attachment bytes as a stream.
    async fn download(&self, attachment: &Attachment) -> Result<ByteStream, SourceError>;
    /// Every live ticket id, paged; used by `verify`.
    async fn list_ticket_ids(&self, cursor: Option<&str>) -> Result<(Vec<TicketId>, Option<String>), SourceError>;
    fn api_stats(&self) -> ApiStats;
    /// The source's clock minus ours, when the source tells it (an HTTP `Date` header, say). Windows are
    /// planned on the source's clock, because `updated_at` values are stamped with it: a source running
    /// behind us would otherwise publish changes stamped before a watermark we already committed.
    /// The source's groups, organizations, agents and custom fields, and the canonical statuses,
    /// priorities and types it produces: what `deltadesk mapping init` matches against the target.
    async fn vocabulary(&self) -> Result<crate::vocabulary::Vocabulary, SourceError>;
    async fn clock_offset(&self) -> Result<Option<chrono::Duration>, SourceError> {
        Ok(None)
    }
}

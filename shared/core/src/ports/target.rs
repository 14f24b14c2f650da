//! The help-desk target port: find by source reference, create with history, update, append, upload.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{ApiStats, ByteStream};
use crate::model::{Attachment, Comment, Group, Organization, TargetId, Ticket, User};

/// An attachment already uploaded to the target, ready to be attached to a comment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadedAttachment {
    pub source_id: String,
    /// Target's handle for attaching (Zendesk upload token).
    pub token: String,
    /// Where the target serves it: inline images are re-pointed here. Empty when the target only assigns
    /// URLs when the comment is written (Freshdesk has no upload tokens); the connector re-points then.
    pub content_url: String,
    pub size: u64,
    /// Hash of the bytes the target serves back, checked against the source's.
    pub sha256: String,
}

/// A comment to write, with its attachments already uploaded.
#[derive(Debug, Clone)]
pub struct CommentWrite<'a> {
    pub comment: &'a Comment,
    pub uploads: Vec<UploadedAttachment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetListPage {
    /// Target id and the source reference stored on it (if any).
    pub tickets: Vec<(TargetId, Option<String>)>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("target unavailable ({context}): {source}")]
    Unavailable {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("target throttled ({context}); retry after {retry_after:?}")]
    Throttled { context: String, retry_after: std::time::Duration },
    #[error("target rejected the credentials: {0}")]
    Auth(String),
    #[error("target refused {context}: HTTP {status}: {message}")]
    Rejected { context: String, status: u16, message: String },
    #[error("cannot map {record} to the target: {cause}")]
    Unmappable { record: String, cause: String },
    #[error("target ticket {0} not found")]
    NotFound(TargetId),
    #[error("attachment {name} is {size} bytes, over the target's limit of {limit}")]
    TooLarge { name: String, size: u64, limit: u64 },
    #[error("attachment {name} came back different from the source: {cause}")]
    Corrupted { name: String, cause: String },
    #[error("reading attachment bytes: {0}")]
    Io(#[source] std::io::Error),
}

impl TargetError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            TargetError::Unavailable { .. } | TargetError::Throttled { .. } | TargetError::Corrupted { .. } | TargetError::Io(_)
        )
    }
}

#[async_trait]
pub trait HelpDeskTarget: Send + Sync {
    fn kind(&self) -> &'static str;
    /// The largest attachment the target accepts, in bytes.
    fn max_attachment_bytes(&self) -> u64;
    /// Target tickets carrying this source reference (normally zero or one).
    async fn find_by_source_ref(&self, source_ref: &str) -> Result<Vec<TargetId>, TargetError>;
    /// Creates the ticket with its comments, keeping original times and authors where the API allows.
    async fn create_ticket(&self, source_ref: &str, ticket: &Ticket, comments: &[CommentWrite<'_>]) -> Result<TargetId, TargetError>;
    /// Sets every mapped field to the snapshot's value.
    async fn update_fields(&self, id: &TargetId, ticket: &Ticket) -> Result<(), TargetError>;
    async fn append_comment(&self, id: &TargetId, comment: &CommentWrite<'_>) -> Result<(), TargetError>;
    /// Comments on the target ticket, counting the first one (the description).
    async fn comment_count(&self, id: &TargetId) -> Result<usize, TargetError>;
    async fn upload(&self, attachment: &Attachment, body: ByteStream) -> Result<UploadedAttachment, TargetError>;
    async fn delete_ticket(&self, id: &TargetId) -> Result<(), TargetError>;
    async fn upsert_user(&self, user: &User) -> Result<String, TargetError>;
    async fn upsert_organization(&self, org: &Organization) -> Result<String, TargetError>;
    async fn upsert_group(&self, group: &Group) -> Result<String, TargetError>;
    /// Every target ticket with its source reference, paged; used by `verify`.
    async fn list_tickets(&self, cursor: Option<&str>) -> Result<TargetListPage, TargetError>;
    /// A target ticket read back in canonical form (its `source_id` holds the target id).
    async fn read_ticket(&self, id: &TargetId) -> Result<Option<Ticket>, TargetError>;
    async fn download(&self, attachment: &Attachment) -> Result<ByteStream, TargetError>;
    /// The target's groups, organizations, agents and custom fields, the canonical values it holds as
    /// themselves, and what its writes create on demand: what `deltadesk mapping init` matches against.
    async fn vocabulary(&self) -> Result<crate::vocabulary::Vocabulary, TargetError>;
    fn api_stats(&self) -> ApiStats;
}

//! The blob-store port: staged ticket snapshots and content-addressed attachment bytes.

use async_trait::async_trait;
use bytes::Bytes;

use super::ByteStream;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub key: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {key} not found")]
    NotFound { key: String },
    #[error("blob store failed on {key}: {source}")]
    Io {
        key: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("blob {key} exceeds the limit of {limit} bytes")]
    TooLarge { key: String, limit: u64 },
}

impl BlobError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, BlobError::Io { .. })
    }
}

#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Writes atomically: readers see the old object or the whole new one.
    async fn put(&self, key: &str, data: Bytes) -> Result<(), BlobError>;
    async fn get(&self, key: &str) -> Result<Bytes, BlobError>;
    /// Streams `body` in, hashing as it goes, and stores it at `{prefix}/{sha256}`.
    /// Refuses (and stores nothing) past `limit` bytes.
    async fn put_content_addressed(&self, prefix: &str, body: ByteStream, limit: u64) -> Result<BlobInfo, BlobError>;
    async fn open(&self, key: &str) -> Result<ByteStream, BlobError>;
    async fn exists(&self, key: &str) -> Result<bool, BlobError>;
}

//! `S3Blobs`: the [`BlobStore`] on an S3 bucket, with the semantics of the embedded `FsBlobs`.
//!
//! Objects live at `{prefix}/{key}` in the bucket (or `{key}` with an empty prefix). Keys follow
//! the same rules as on the file system (relative `/`-separated paths without empty, `.` or `..`
//! segments, backslashes or NUL), so a key that works on AWS also works embedded.
//!
//! Memory never grows with object size:
//! - `open` hands out the response body as it arrives;
//! - `put_content_addressed` hashes while streaming; a body under one part ([`PART_BYTES`]) is
//!   buffered and `PutObject`ed to its final key, a larger one goes to a temporary object by
//!   multipart upload (one part in memory at a time) that is then copied to `{prefix}/{sha256}` and
//!   deleted. Past the limit, or when the stream fails, the multipart upload is aborted: nothing
//!   is stored. CopyObject copies up to 5 GB, far above any attachment limit.
//!
//! If the future is dropped mid-upload, a guard aborts the multipart upload (or deletes the
//! temporary object) from a spawned task; a bucket lifecycle rule aborting incomplete multipart
//! uploads covers a process that dies.

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
use deltadesk_core::ports::blobs::{BlobError, BlobInfo, BlobStore};
use deltadesk_core::ports::ByteStream;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::errors::AwsError;

/// Size of a multipart part: S3's minimum (5 MiB) for every part but the last, and so the most a
/// content-addressed upload holds in memory (plus one incoming chunk).
pub const PART_BYTES: usize = 5 * 1024 * 1024;

/// Blobs in `bucket` under `prefix`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct S3Blobs {
    client: Client,
    bucket: String,
    prefix: String,
}

impl S3Blobs {
    /// Blobs in `bucket` under `prefix` (no leading or trailing `/` needed; empty for the bucket
    /// root). The client should come from [`crate::s3_client`], which addresses buckets path-style.
    pub fn new(client: Client, bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into().trim_matches('/').to_string();
        Self { client, bucket: bucket.into(), prefix }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The object key of blob `key`, after checking the key follows `FsBlobs`'s rules.
    fn object_key(&self, key: &str) -> Result<String, BlobError> {
        check_key(key)?;
        Ok(self.under_prefix(key))
    }

    fn under_prefix(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    fn io<E>(&self, operation: &'static str, key: &str, err: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> BlobError
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        BlobError::Io { key: key.to_string(), source: Box::new(AwsError::new("S3", operation, &format!("s3://{}/{key}", self.bucket), err)) }
    }

    async fn head(&self, key: &str, object: &str) -> Result<bool, BlobError> {
        match self.client.head_object().bucket(&self.bucket).key(object).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(false),
            Err(e) => Err(self.io("HeadObject", key, e)),
        }
    }

    async fn get_object(&self, key: &str) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, BlobError> {
        let object = self.object_key(key)?;
        match self.client.get_object().bucket(&self.bucket).key(&object).send().await {
            Ok(out) => Ok(out),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Err(BlobError::NotFound { key: key.to_string() }),
            Err(e) => Err(self.io("GetObject", key, e)),
        }
    }
}

fn check_key(key: &str) -> Result<(), BlobError> {
    let invalid = |why: &str| BlobError::Io {
        key: key.to_string(),
        source: Box::new(std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("invalid blob key {key:?}: {why}"))),
    };
    if key.is_empty() {
        return Err(invalid("empty"));
    }
    if key.starts_with('/') {
        return Err(invalid("absolute paths are not keys"));
    }
    if key.contains('\\') || key.contains('\0') {
        return Err(invalid("backslashes and NUL are not allowed"));
    }
    for segment in key.split('/') {
        match segment {
            "" => return Err(invalid("empty path segment")),
            "." | ".." => return Err(invalid("'.' and '..' segments are not allowed")),
            _ => {}
        }
    }
    Ok(())
}

/// Cleans up after an interrupted content-addressed upload: aborts the multipart upload, or deletes
/// the completed temporary object. There is no async drop, so `Drop` spawns the call on the runtime.
struct Cleanup {
    client: Client,
    bucket: String,
    temp_key: String,
    state: Pending,
}

enum Pending {
    Nothing,
    Multipart { upload_id: String },
    TempObject,
}

impl Cleanup {
    /// Does the cleanup now (on the error paths, where we can wait for it).
    async fn run(&mut self) {
        let state = std::mem::replace(&mut self.state, Pending::Nothing);
        run_cleanup(&self.client, &self.bucket, &self.temp_key, state).await;
    }
}

async fn run_cleanup(client: &Client, bucket: &str, temp_key: &str, state: Pending) {
    let result = match state {
        Pending::Nothing => return,
        Pending::Multipart { upload_id } => client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(temp_key)
            .upload_id(upload_id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::new("S3", "AbortMultipartUpload", temp_key, e)),
        Pending::TempObject => client
            .delete_object()
            .bucket(bucket)
            .key(temp_key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::new("S3", "DeleteObject", temp_key, e)),
    };
    if let Err(e) = result {
        // The bucket's lifecycle rule is the backstop; the upload itself has already failed or succeeded.
        tracing::warn!(bucket, error = %e, "could not clean up a temporary upload");
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let state = std::mem::replace(&mut self.state, Pending::Nothing);
        if matches!(state, Pending::Nothing) {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let (client, bucket, temp_key) = (self.client.clone(), self.bucket.clone(), self.temp_key.clone());
            handle.spawn(async move { run_cleanup(&client, &bucket, &temp_key, state).await });
        }
    }
}

#[async_trait]
impl BlobStore for S3Blobs {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), BlobError> {
        let object = self.object_key(key)?;
        // A PutObject replaces the object atomically: readers see the old or the whole new one.
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&object)
            .body(S3Body::from(data))
            .send()
            .await
            .map_err(|e| self.io("PutObject", key, e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Bytes, BlobError> {
        let out = self.get_object(key).await?;
        let data = out.body.collect().await.map_err(|e| BlobError::Io { key: key.to_string(), source: Box::new(e) })?;
        Ok(data.into_bytes())
    }

    async fn put_content_addressed(&self, prefix: &str, mut body: ByteStream, limit: u64) -> Result<BlobInfo, BlobError> {
        if !prefix.is_empty() {
            check_key(prefix)?;
        }
        let shown = if prefix.is_empty() { "<root>" } else { prefix };
        let port_key = |sha: &str| if prefix.is_empty() { sha.to_string() } else { format!("{prefix}/{sha}") };
        let temp_port_key = port_key(&format!(".upload-{}", uuid::Uuid::new_v4()));
        let mut cleanup = Cleanup { client: self.client.clone(), bucket: self.bucket.clone(), temp_key: self.under_prefix(&temp_port_key), state: Pending::Nothing };

        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut buffer = BytesMut::with_capacity(PART_BYTES);
        let mut parts: Vec<CompletedPart> = Vec::new();
        let streamed: Result<(), BlobError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| BlobError::Io { key: shown.to_string(), source: Box::new(e) })?;
                size = size.saturating_add(chunk.len() as u64);
                if size > limit {
                    return Err(BlobError::TooLarge { key: shown.to_string(), limit });
                }
                hasher.update(&chunk);
                buffer.extend_from_slice(&chunk);
                if buffer.len() >= PART_BYTES {
                    let part = buffer.split().freeze();
                    self.upload_part(&mut cleanup, &mut parts, shown, part).await?;
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = streamed {
            cleanup.run().await;
            return Err(e);
        }

        let sha256 = hex::encode(hasher.finalize());
        let key = port_key(&sha256);
        let object = self.under_prefix(&key);
        if parts.is_empty() {
            // Small enough to have stayed in memory: straight to its final name.
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&object)
                .body(S3Body::from(buffer.freeze()))
                .send()
                .await
                .map_err(|e| self.io("PutObject", &key, e))?;
            return Ok(BlobInfo { key, size, sha256 });
        }
        let finished = self.finish_multipart(&mut cleanup, parts, buffer.freeze(), &key, &object).await;
        if finished.is_err() {
            cleanup.run().await;
        }
        finished?;
        Ok(BlobInfo { key, size, sha256 })
    }

    async fn open(&self, key: &str) -> Result<ByteStream, BlobError> {
        let out = self.get_object(key).await?;
        // The SDK body yields chunks as they arrive from the socket; nothing is collected here.
        let stream = futures::stream::unfold(out.body, |mut body| async move {
            body.next().await.map(|chunk| (chunk.map_err(std::io::Error::other), body))
        });
        Ok(Box::pin(stream))
    }

    async fn exists(&self, key: &str) -> Result<bool, BlobError> {
        let object = self.object_key(key)?;
        self.head(key, &object).await
    }
}

impl S3Blobs {
    /// Uploads one part of the temporary object, starting the multipart upload on the first.
    async fn upload_part(&self, cleanup: &mut Cleanup, parts: &mut Vec<CompletedPart>, shown: &str, data: Bytes) -> Result<(), BlobError> {
        let upload_id = match &cleanup.state {
            Pending::Multipart { upload_id } => upload_id.clone(),
            _ => {
                let created = self
                    .client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&cleanup.temp_key)
                    .send()
                    .await
                    .map_err(|e| self.io("CreateMultipartUpload", shown, e))?;
                let id = created.upload_id().map(str::to_string).ok_or_else(|| BlobError::Io {
                    key: shown.to_string(),
                    source: Box::new(AwsError::adapter("S3", "CreateMultipartUpload", &cleanup.temp_key, "no UploadId in the answer".into())),
                })?;
                cleanup.state = Pending::Multipart { upload_id: id.clone() };
                id
            }
        };
        let number = i32::try_from(parts.len() + 1).unwrap_or(i32::MAX);
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&cleanup.temp_key)
            .upload_id(&upload_id)
            .part_number(number)
            .body(S3Body::from(data))
            .send()
            .await
            .map_err(|e| self.io("UploadPart", shown, e))?;
        // Whatever checksum the SDK sent with the part must be repeated when completing.
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .set_checksum_crc32(out.checksum_crc32().map(str::to_string))
                .set_checksum_crc32_c(out.checksum_crc32_c().map(str::to_string))
                .set_checksum_crc64_nvme(out.checksum_crc64_nvme().map(str::to_string))
                .set_checksum_sha1(out.checksum_sha1().map(str::to_string))
                .set_checksum_sha256(out.checksum_sha256().map(str::to_string))
                .build(),
        );
        Ok(())
    }

    /// Uploads the last part, completes the temporary object, copies it to its content address
    /// (unless that object already exists) and deletes it.
    async fn finish_multipart(&self, cleanup: &mut Cleanup, mut parts: Vec<CompletedPart>, last: Bytes, key: &str, object: &str) -> Result<(), BlobError> {
        if !last.is_empty() {
            self.upload_part(cleanup, &mut parts, key, last).await?;
        }
        let Pending::Multipart { upload_id } = &cleanup.state else {
            return Err(BlobError::Io { key: key.to_string(), source: "multipart upload lost its id".into() });
        };
        let upload_id = upload_id.clone();
        let completed = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&cleanup.temp_key)
            .upload_id(&upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await;
        if let Err(e) = completed {
            // An HTTP 200 whose body the SDK cannot read (S3 may send an error inside a 200, and
            // moto 5.2.1 to 5.2.x names the result element wrongly) leaves the outcome open: the
            // temporary object exists exactly when the upload was completed.
            let unreadable_200 = e.raw_response().is_some_and(|r| r.status().as_u16() == 200);
            if !(unreadable_200 && self.head(key, &cleanup.temp_key).await?) {
                return Err(self.io("CompleteMultipartUpload", key, e));
            }
            tracing::debug!(bucket = %self.bucket, "CompleteMultipartUpload answer unreadable, but the object is there");
        }
        cleanup.state = Pending::TempObject;
        // The same bytes are already stored: content addressing makes the copy redundant.
        if !self.head(key, object).await? {
            // Copy sources are "bucket/key", URL-encoded (keys may hold any character).
            let source = format!("{}/{}", self.bucket, encode_key(&cleanup.temp_key));
            self.client
                .copy_object()
                .bucket(&self.bucket)
                .key(object)
                .copy_source(source)
                .send()
                .await
                .map_err(|e| self.io("CopyObject", key, e))?;
        }
        cleanup.run().await;
        Ok(())
    }
}

/// Percent-encodes an object key for `x-amz-copy-source`, keeping `/` and unreserved characters.
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_file_system_rules() {
        for bad in ["", "/abs", "a//b", "a/", "./a", "a/../b", "a\\b", "a\0"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
        assert!(check_key("att/abc.json").is_ok());
    }

    #[test]
    fn copy_sources_are_encoded() {
        assert_eq!(encode_key("p/att/.upload-1"), "p/att/.upload-1");
        assert_eq!(encode_key("a b/ü+"), "a%20b/%C3%BC%2B");
    }
}

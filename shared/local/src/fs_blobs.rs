//! `FsBlobs`: the embedded [`BlobStore`] — one file per key under a root directory, written via a
//! temporary file and `rename` so that readers see the old object or the whole new one, like S3.
//!
//! Keys are relative `/`-separated paths. To keep every key inside the root, a key must not be
//! empty, absolute, contain empty, `.` or `..` segments, backslashes or NUL. Unlike S3, a key
//! cannot be both an object and a "folder" of other keys (`a` and `a/b`), because a file cannot be
//! a directory.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use deltadesk_core::ports::blobs::{BlobError, BlobInfo, BlobStore};
use deltadesk_core::ports::ByteStream;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

/// Chunk size of [`BlobStore::open`] streams.
const CHUNK: usize = 64 * 1024;

/// Blobs as files under `root`.
#[derive(Debug, Clone)]
pub struct FsBlobs {
    root: PathBuf,
}

impl FsBlobs {
    /// A store under `root`; the directory is created on the first write.
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The file of `key`, after checking that the key cannot leave the root.
    fn path(&self, key: &str) -> Result<PathBuf, BlobError> {
        let invalid = |why: &str| BlobError::Io {
            key: key.to_string(),
            source: Box::new(std::io::Error::new(ErrorKind::InvalidInput, format!("invalid blob key {key:?}: {why}"))),
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
        let mut path = self.root.clone();
        for segment in key.split('/') {
            match segment {
                "" => return Err(invalid("empty path segment")),
                "." | ".." => return Err(invalid("'.' and '..' segments are not allowed")),
                s => path.push(s),
            }
        }
        Ok(path)
    }

    /// Deletes every file last written (or, for content-addressed blobs, last reused) before `cutoff`,
    /// then the directories left empty. The embedded runner calls it after a run commits, with the commit
    /// time: whatever was staged before then belongs to committed runs, which never read it again — the
    /// file-system counterpart of the staging bucket's lifecycle rule on AWS. Files staged later (a run
    /// opened meanwhile by another process) are kept.
    pub async fn sweep(&self, cutoff: std::time::SystemTime) -> Result<Swept, BlobError> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let mut swept = Swept::default();
            if root.exists() {
                sweep_dir(&root, cutoff, &mut swept, true).map_err(|e| io_error("<root>", e))?;
            }
            Ok(swept)
        })
        .await
        .map_err(|e| io_error("<root>", std::io::Error::other(e)))?
    }

    /// A fresh temporary file name next to `target`, so that the final `rename` stays on one
    /// filesystem (and is therefore atomic). The leading dot keeps it out of the way of listings.
    fn temp_path(target: &Path) -> PathBuf {
        let name = format!(".tmp-{}", uuid::Uuid::new_v4());
        target.parent().map_or_else(|| PathBuf::from(&name), |dir| dir.join(&name))
    }
}

/// What [`FsBlobs::sweep`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub files: u64,
    pub bytes: u64,
}

fn sweep_dir(dir: &Path, cutoff: std::time::SystemTime, swept: &mut Swept, is_root: bool) -> std::io::Result<bool> {
    let mut empty = true;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = match entry.metadata() {
            Ok(m) => m,
            // Removed meanwhile by another process.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.is_dir() {
            if !sweep_dir(&entry.path(), cutoff, swept, false)? {
                empty = false;
            }
        } else if meta.modified()? < cutoff {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    swept.files += 1;
                    swept.bytes += meta.len();
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        } else {
            empty = false;
        }
    }
    if empty && !is_root {
        // Another process may have just written into it: then it is not empty and stays.
        let _ = std::fs::remove_dir(dir);
    }
    Ok(empty)
}

fn io_error(key: &str, e: std::io::Error) -> BlobError {
    BlobError::Io { key: key.to_string(), source: Box::new(e) }
}

/// Maps "no such file" (also "a path component is a file") to [`BlobError::NotFound`], as S3 would.
fn read_error(key: &str, e: std::io::Error) -> BlobError {
    match e.kind() {
        ErrorKind::NotFound | ErrorKind::NotADirectory => BlobError::NotFound { key: key.to_string() },
        _ => io_error(key, e),
    }
}

async fn create_parent(key: &str, path: &Path) -> Result<(), BlobError> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await.map_err(|e| io_error(key, e))?;
    }
    Ok(())
}

/// Removes its temporary file when dropped, unless disarmed after the rename: covers early returns
/// and a caller dropping the future mid-upload, which would otherwise leak partial files.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    fn new(path: PathBuf) -> Self {
        Self { path, armed: true }
    }
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            // Blocking, but a single unlink; there is no async drop, and leaking the file is worse.
            // Failure (already gone, never created) leaves nothing to clean.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Writes `data` to a new temporary file and flushes it to disk, so that the rename that follows
/// never exposes a file whose contents are still in the page cache only.
async fn write_temp(key: &str, temp: &Path, data: &[u8]) -> Result<(), BlobError> {
    let mut file = tokio::fs::File::create_new(temp).await.map_err(|e| io_error(key, e))?;
    file.write_all(data).await.map_err(|e| io_error(key, e))?;
    file.sync_all().await.map_err(|e| io_error(key, e))?;
    Ok(())
}

#[async_trait]
impl BlobStore for FsBlobs {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), BlobError> {
        let path = self.path(key)?;
        create_parent(key, &path).await?;
        let mut temp = TempFile::new(Self::temp_path(&path));
        write_temp(key, &temp.path, &data).await?;
        tokio::fs::rename(&temp.path, &path).await.map_err(|e| io_error(key, e))?;
        temp.disarm();
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Bytes, BlobError> {
        let path = self.path(key)?;
        let data = tokio::fs::read(&path).await.map_err(|e| read_error(key, e))?;
        Ok(Bytes::from(data))
    }

    async fn put_content_addressed(&self, prefix: &str, mut body: ByteStream, limit: u64) -> Result<BlobInfo, BlobError> {
        // The final name is unknown until the last byte is hashed, so the temp file lives in the
        // prefix directory, where the rename will happen. An empty prefix means the root.
        let dir = if prefix.is_empty() { self.root.clone() } else { self.path(prefix)? };
        let shown = if prefix.is_empty() { "<root>" } else { prefix };
        tokio::fs::create_dir_all(&dir).await.map_err(|e| io_error(shown, e))?;
        let mut temp = TempFile::new(dir.join(format!(".upload-{}", uuid::Uuid::new_v4())));
        let mut file = tokio::fs::File::create_new(&temp.path).await.map_err(|e| io_error(shown, e))?;

        // One chunk at a time: memory stays at one chunk whatever the blob size.
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| io_error(shown, e))?;
            size = size.saturating_add(chunk.len() as u64);
            if size > limit {
                // `temp` is dropped on return, deleting the partial file: nothing is stored.
                return Err(BlobError::TooLarge { key: shown.to_string(), limit });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(|e| io_error(shown, e))?;
        }
        file.sync_all().await.map_err(|e| io_error(shown, e))?;
        drop(file);

        let sha256 = hex::encode(hasher.finalize());
        let key = if prefix.is_empty() { sha256.clone() } else { format!("{prefix}/{sha256}") };
        let target = dir.join(&sha256);
        let present = tokio::fs::try_exists(&target).await.map_err(|e| io_error(&key, e))?;
        if present {
            // Reused: mark it fresh, so a sweep after an earlier run's commit does not take it from the run
            // that stages it again now.
            let t = target.clone();
            let touched = tokio::task::spawn_blocking(move || std::fs::File::options().append(true).open(&t)?.set_modified(std::time::SystemTime::now())).await;
            match touched {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(io_error(&key, e)),
                Err(e) => return Err(io_error(&key, std::io::Error::other(e))),
            }
        } else {
            // Two uploads of the same bytes may race past the check; both renames then install
            // identical content, so either outcome is correct.
            tokio::fs::rename(&temp.path, &target).await.map_err(|e| io_error(&key, e))?;
            temp.disarm();
        }
        Ok(BlobInfo { key, size, sha256 })
    }

    async fn open(&self, key: &str) -> Result<ByteStream, BlobError> {
        let path = self.path(key)?;
        let file = tokio::fs::File::open(&path).await.map_err(|e| read_error(key, e))?;
        // A directory opens fine on Unix but fails on read; refuse it here with a clear error.
        let meta = file.metadata().await.map_err(|e| io_error(key, e))?;
        if !meta.is_file() {
            return Err(BlobError::NotFound { key: key.to_string() });
        }
        Ok(Box::pin(ReaderStream::with_capacity(file, CHUNK)))
    }

    async fn exists(&self, key: &str) -> Result<bool, BlobError> {
        let path = self.path(key)?;
        match tokio::fs::metadata(&path).await {
            // A directory holds other keys; it is not an object itself.
            Ok(meta) => Ok(meta.is_file()),
            Err(e) => match read_error(key, e) {
                BlobError::NotFound { .. } => Ok(false),
                other => Err(other),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;

    fn store() -> (tempfile::TempDir, FsBlobs) {
        let dir = tempfile::tempdir().unwrap();
        let blobs = FsBlobs::new(dir.path().join("blobs"));
        (dir, blobs)
    }

    fn chunks(data: &[u8], size: usize) -> ByteStream {
        let parts: Vec<Result<Bytes, std::io::Error>> =
            data.chunks(size).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        Box::pin(stream::iter(parts))
    }

    /// Every regular file under `dir`, recursively (to spot leftovers such as temp files).
    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let p = entry.path();
                if p.is_dir() {
                    out.extend(files(&p));
                } else {
                    out.push(p);
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn put_get_overwrite_and_missing() {
        let (dir, b) = store();
        assert!(matches!(b.get("tickets/1.json").await, Err(BlobError::NotFound { .. })));
        assert!(!b.exists("tickets/1.json").await.unwrap());
        b.put("tickets/1.json", Bytes::from_static(b"v1")).await.unwrap();
        assert_eq!(b.get("tickets/1.json").await.unwrap(), Bytes::from_static(b"v1"));
        b.put("tickets/1.json", Bytes::from_static(b"version 2")).await.unwrap();
        assert_eq!(b.get("tickets/1.json").await.unwrap(), Bytes::from_static(b"version 2"));
        assert!(b.exists("tickets/1.json").await.unwrap());
        // A "folder" is not an object; a path through a file is simply missing.
        assert!(!b.exists("tickets").await.unwrap());
        assert!(matches!(b.get("tickets/1.json/x").await, Err(BlobError::NotFound { .. })));
        assert!(matches!(b.open("tickets").await, Err(BlobError::NotFound { .. })));
        assert!(matches!(b.open("nope").await, Err(BlobError::NotFound { .. })));
        // No temp files left behind.
        assert_eq!(files(dir.path()), vec![dir.path().join("blobs/tickets/1.json")]);
    }

    #[tokio::test]
    async fn keys_cannot_leave_the_root() {
        let (_dir, b) = store();
        for key in ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/", "./a", "a\\b", "a\0"] {
            let err = b.put(key, Bytes::from_static(b"x")).await.unwrap_err();
            assert!(matches!(err, BlobError::Io { .. }), "{key:?}: {err:?}");
            assert!(err.to_string().contains("invalid blob key") || std::error::Error::source(&err).is_some());
            assert!(b.get(key).await.is_err());
            assert!(b.exists(key).await.is_err());
            assert!(b.open(key).await.is_err());
        }
        assert!(b.put_content_addressed("../up", chunks(b"x", 1), 10).await.is_err());
    }

    #[tokio::test]
    async fn content_addressed_hash_and_dedup() {
        let (dir, b) = store();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let expected = hex::encode(Sha256::digest(&data));

        let info = b.put_content_addressed("att", chunks(&data, 10_000), data.len() as u64).await.unwrap();
        assert_eq!(info, BlobInfo { key: format!("att/{expected}"), size: data.len() as u64, sha256: expected.clone() });
        assert_eq!(b.get(&info.key).await.unwrap(), Bytes::from(data.clone()));

        // Same bytes again, chunked differently: same key, no duplicate, no temp file left.
        let again = b.put_content_addressed("att", chunks(&data, 4096), u64::MAX).await.unwrap();
        assert_eq!(again, info);
        assert_eq!(files(dir.path()), vec![dir.path().join("blobs/att").join(&expected)]);

        // The empty blob is a blob too.
        let empty = b.put_content_addressed("att/nested", chunks(b"", 1), 0).await.unwrap();
        assert_eq!(empty.sha256, hex::encode(Sha256::digest(b"")));
        assert_eq!(empty.size, 0);
        assert!(b.exists(&empty.key).await.unwrap());
    }

    #[tokio::test]
    async fn too_large_stores_nothing() {
        let (dir, b) = store();
        let data = vec![7u8; 10_001];
        let err = b.put_content_addressed("att", chunks(&data, 1000), 10_000).await.unwrap_err();
        assert!(matches!(err, BlobError::TooLarge { limit: 10_000, .. }), "{err:?}");
        assert!(files(dir.path()).is_empty());
        // Exactly at the limit is fine.
        let ok = b.put_content_addressed("att", chunks(&data[..10_000], 1000), 10_000).await.unwrap();
        assert_eq!(ok.size, 10_000);
    }

    #[tokio::test]
    async fn a_failing_stream_stores_nothing() {
        let (dir, b) = store();
        let parts: Vec<Result<Bytes, std::io::Error>> =
            vec![Ok(Bytes::from_static(b"partial")), Err(std::io::Error::new(ErrorKind::ConnectionReset, "peer gone"))];
        let err = b.put_content_addressed("att", Box::pin(stream::iter(parts)), 1 << 20).await.unwrap_err();
        assert!(matches!(err, BlobError::Io { .. }));
        assert!(std::error::Error::source(&err).is_some());
        assert!(files(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn a_sweep_removes_what_was_staged_before_the_cutoff_and_keeps_reused_and_later_blobs() {
        let (dir, b) = store();
        b.put("snapshots/run1/t1.json", Bytes::from_static(b"old snapshot")).await.unwrap();
        let reused = b.put_content_addressed("attachments", chunks(b"shared bytes", 4), 1 << 20).await.unwrap();
        let gone = b.put_content_addressed("attachments", chunks(b"only run 1", 4), 1 << 20).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let cutoff = std::time::SystemTime::now();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        // After the cutoff: a new run stages a snapshot and the same attachment bytes again.
        b.put("snapshots/run2/t1.json", Bytes::from_static(b"new snapshot")).await.unwrap();
        b.put_content_addressed("attachments", chunks(b"shared bytes", 4), 1 << 20).await.unwrap();

        let swept = b.sweep(cutoff).await.unwrap();
        assert_eq!(swept, Swept { files: 2, bytes: (b"old snapshot".len() + b"only run 1".len()) as u64 });
        assert!(!b.exists("snapshots/run1/t1.json").await.unwrap());
        assert!(!dir.path().join("blobs/snapshots/run1").exists(), "an emptied directory goes too");
        assert!(!b.exists(&gone.key).await.unwrap());
        assert!(b.exists(&reused.key).await.unwrap(), "reused after the cutoff: kept");
        assert!(b.exists("snapshots/run2/t1.json").await.unwrap());
        assert_eq!(b.sweep(cutoff).await.unwrap(), Swept::default());
        assert_eq!(FsBlobs::new(dir.path().join("never")).sweep(cutoff).await.unwrap(), Swept::default());
    }

    #[tokio::test]
    async fn open_streams_identical_bytes_in_bounded_chunks() {
        let (_dir, b) = store();
        let data: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        b.put("big/blob.bin", Bytes::from(data.clone())).await.unwrap();
        let mut stream = b.open("big/blob.bin").await.unwrap();
        let mut read = Vec::with_capacity(data.len());
        let mut pieces = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap();
            assert!(chunk.len() <= CHUNK);
            read.extend_from_slice(&chunk);
            pieces += 1;
        }
        assert!(pieces >= data.len() / CHUNK);
        assert_eq!(read.len(), data.len());
        assert!(read == data);
    }
}

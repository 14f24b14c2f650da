//! Conformance checks for [`BlobStore`]: what `FsBlobs` and `S3Blobs` must agree on.

use bytes::Bytes;
use deltadesk_core::ports::blobs::{BlobError, BlobInfo, BlobStore};
use deltadesk_core::ports::ByteStream;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::unique;

const MIB: usize = 1024 * 1024;

/// Runs every blob-store check against `store`, under the fresh key prefix `cf-{random}/`.
/// Moves some 40 MiB in total; the largest single blob is 7 MiB, past S3's 5 MiB multipart part.
pub async fn blob_store(store: &dyn BlobStore) {
    let root = format!("cf-{}", unique());
    missing_keys(store, &root).await;
    put_get_overwrite(store, &root).await;
    open_streams_identical_bytes(store, &root).await;
    content_addressed(store, &root).await;
    too_large_stores_nothing(store, &root).await;
    failing_stream_stores_nothing(store, &root).await;
}

/// `len` bytes that differ from run to run and do not compress to nothing.
fn data(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            // xorshift32
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn chunks(data: &[u8], size: usize) -> ByteStream {
    let parts: Vec<Result<Bytes, std::io::Error>> = data.chunks(size.max(1)).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    Box::pin(futures::stream::iter(parts))
}

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

async fn exists(store: &dyn BlobStore, check: &str, key: &str) -> bool {
    store.exists(key).await.unwrap_or_else(|e| panic!("blob conformance [{check}]: exists({key}) failed: {e:?}"))
}

async fn get(store: &dyn BlobStore, check: &str, key: &str) -> Bytes {
    store.get(key).await.unwrap_or_else(|e| panic!("blob conformance [{check}]: get({key}) failed: {e:?}"))
}

async fn put(store: &dyn BlobStore, check: &str, key: &str, data: Bytes) {
    if let Err(e) = store.put(key, data).await {
        panic!("blob conformance [{check}]: put({key}) failed: {e:?}");
    }
}

/// Reads a whole `open` stream, checking it arrives in more than one piece when it is large: a
/// store that buffers the whole object first would hand it over as one chunk.
async fn read_stream(store: &dyn BlobStore, check: &str, key: &str) -> Vec<u8> {
    let mut stream = store.open(key).await.unwrap_or_else(|e| panic!("blob conformance [{check}]: open({key}) failed: {e:?}"));
    let mut out = Vec::new();
    let mut pieces = 0usize;
    let mut largest = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap_or_else(|e| panic!("blob conformance [{check}]: reading the stream of {key} failed: {e:?}"));
        pieces += 1;
        largest = largest.max(chunk.len());
        out.extend_from_slice(&chunk);
    }
    if out.len() >= 2 * MIB {
        assert!(
            pieces > 1 && largest < out.len(),
            "blob conformance [{check}]: open({key}) delivered {} bytes in {pieces} piece(s); it must stream, not buffer the object",
            out.len()
        );
    }
    out
}

async fn missing_keys(store: &dyn BlobStore, root: &str) {
    let check = "missing keys";
    let key = format!("{root}/missing/blob.json");
    assert!(!exists(store, check, &key).await, "blob conformance [{check}]: exists() of a missing key must be false");
    let got = store.get(&key).await;
    assert!(matches!(got, Err(BlobError::NotFound { .. })), "blob conformance [{check}]: get of a missing key must be NotFound, got {got:?}");
    match store.open(&key).await {
        Err(BlobError::NotFound { .. }) => {}
        Err(e) => panic!("blob conformance [{check}]: open of a missing key must be NotFound, got {e:?}"),
        Ok(_) => panic!("blob conformance [{check}]: open of a missing key must be NotFound, got a stream"),
    }
}

async fn put_get_overwrite(store: &dyn BlobStore, root: &str) {
    let check = "put/get";
    let key = format!("{root}/tickets/1.json");
    put(store, check, &key, Bytes::from_static(b"{\"v\":1}")).await;
    assert!(exists(store, check, &key).await, "blob conformance [{check}]: exists() after put");
    assert_eq!(get(store, check, &key).await, Bytes::from_static(b"{\"v\":1}"), "blob conformance [{check}]: get after put");
    put(store, check, &key, Bytes::from_static(b"{\"v\":2, \"longer\": true}")).await;
    assert_eq!(get(store, check, &key).await, Bytes::from_static(b"{\"v\":2, \"longer\": true}"), "blob conformance [{check}]: get after overwrite");
    let empty = format!("{root}/tickets/empty");
    put(store, check, &empty, Bytes::new()).await;
    assert!(exists(store, check, &empty).await, "blob conformance [{check}]: an empty blob exists");
    assert!(get(store, check, &empty).await.is_empty(), "blob conformance [{check}]: an empty blob reads back empty");
    assert!(read_stream(store, check, &empty).await.is_empty(), "blob conformance [{check}]: an empty blob streams nothing");
}

async fn open_streams_identical_bytes(store: &dyn BlobStore, root: &str) {
    let check = "open";
    let key = format!("{root}/big/blob.bin");
    let bytes = data(3 * MIB + 12_345, 1);
    put(store, check, &key, Bytes::from(bytes.clone())).await;
    let streamed = read_stream(store, check, &key).await;
    assert!(
        streamed.len() == bytes.len() && streamed == bytes,
        "blob conformance [{check}]: open streamed {} bytes that differ from the {} put",
        streamed.len(),
        bytes.len()
    );
    assert!(get(store, check, &key).await == bytes, "blob conformance [{check}]: get of a 3 MiB blob differs");
}

async fn content_addressed(store: &dyn BlobStore, root: &str) {
    let check = "put_content_addressed";
    let prefix = format!("{root}/att");
    let cases = [(7 * MIB + 3, 64 * 1024, 2), (5 * MIB, MIB, 3), (100_000, 7_000, 4), (1, 1, 5)];
    for (len, chunk, seed) in cases {
        let bytes = data(len, seed);
        let hash = sha256(&bytes);
        let want = BlobInfo { key: format!("{prefix}/{hash}"), size: len as u64, sha256: hash };
        let info = store
            .put_content_addressed(&prefix, chunks(&bytes, chunk), len as u64)
            .await
            .unwrap_or_else(|e| panic!("blob conformance [{check}]: {len} bytes in chunks of {chunk} failed: {e:?}"));
        assert_eq!(info, want, "blob conformance [{check}]: the info of {len} bytes");
        assert!(exists(store, check, &info.key).await, "blob conformance [{check}]: {} must exist", info.key);
        assert!(read_stream(store, check, &info.key).await == bytes, "blob conformance [{check}]: the stored {len} bytes differ");

        // The same bytes, chunked differently and with room to spare: the same object.
        let again = store
            .put_content_addressed(&prefix, chunks(&bytes, chunk / 2 + 1), u64::MAX)
            .await
            .unwrap_or_else(|e| panic!("blob conformance [{check}]: re-uploading {len} bytes failed: {e:?}"));
        assert_eq!(again, want, "blob conformance [{check}]: re-uploading the same bytes");
    }

    let empty = store
        .put_content_addressed(&prefix, chunks(b"", 1), 0)
        .await
        .unwrap_or_else(|e| panic!("blob conformance [{check}]: the empty blob failed: {e:?}"));
    let hash = sha256(b"");
    assert_eq!(empty, BlobInfo { key: format!("{prefix}/{hash}"), size: 0, sha256: hash }, "blob conformance [{check}]: the empty blob");
    assert!(get(store, check, &empty.key).await.is_empty(), "blob conformance [{check}]: the empty blob reads back empty");
}

async fn too_large_stores_nothing(store: &dyn BlobStore, root: &str) {
    let check = "too large";
    let prefix = format!("{root}/limited");
    for (len, limit, chunk) in [(10_001usize, 10_000u64, 1_000usize), (7 * MIB, 6 * MIB as u64, 256 * 1024)] {
        let bytes = data(len, 6);
        let got = store.put_content_addressed(&prefix, chunks(&bytes, chunk), limit).await;
        assert!(
            matches!(got, Err(BlobError::TooLarge { limit: l, .. }) if l == limit),
            "blob conformance [{check}]: {len} bytes over a limit of {limit} must be TooLarge, got {got:?}"
        );
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        for stored in [&bytes[..], &bytes[..limit]] {
            let key = format!("{prefix}/{}", sha256(stored));
            assert!(!exists(store, check, &key).await, "blob conformance [{check}]: a refused upload left {key}");
        }
        // Exactly at the limit is fine.
        let ok = store
            .put_content_addressed(&prefix, chunks(&bytes[..limit], chunk), limit as u64)
            .await
            .unwrap_or_else(|e| panic!("blob conformance [{check}]: exactly {limit} bytes at a limit of {limit} failed: {e:?}"));
        assert_eq!(ok.size, limit as u64, "blob conformance [{check}]: size at the limit");
    }
}

async fn failing_stream_stores_nothing(store: &dyn BlobStore, root: &str) {
    let check = "failing stream";
    let prefix = format!("{root}/broken");
    for before in [7usize, 6 * MIB] {
        let head = data(before, 7);
        let parts: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from(head.clone())),
            Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "peer gone")),
            Ok(Bytes::from_static(b"never read")),
        ];
        let got = store.put_content_addressed(&prefix, Box::pin(futures::stream::iter(parts)), u64::MAX).await;
        match got {
            Err(BlobError::Io { ref source, .. }) => assert!(
                !source.to_string().is_empty(),
                "blob conformance [{check}]: the Io error should keep the stream's error as its source"
            ),
            other => panic!("blob conformance [{check}]: a stream failing after {before} bytes must be Io, got {other:?}"),
        }
        let key = format!("{prefix}/{}", sha256(&head));
        assert!(!exists(store, check, &key).await, "blob conformance [{check}]: a failed upload left {key}");
    }
}

//! The port conformance suite against the embedded adapters: the reference the AWS adapters are
//! held to (see `shared/aws/tests/moto.rs`).

use std::sync::Arc;

use deltadesk_conformance::StaleReceipts;
use deltadesk_core::ports::Queue;
use deltadesk_local::{FsBlobs, Redrive, SqliteQueue, SqliteState};

#[tokio::test]
async fn sqlite_state_conforms() {
    let store = SqliteState::in_memory().expect("in-memory SQLite");
    deltadesk_conformance::state_store(&store).await;
}

#[tokio::test]
async fn sqlite_state_file_conforms() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteState::open(&dir.path().join("state.db")).expect("SQLite file");
    deltadesk_conformance::state_store(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_queue_conforms() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("queues.db");
    // Every call opens a new handle (its own connection), as another process would.
    let make = |name: String, max_receives: u32| {
        let path = path.clone();
        async move {
            let q = SqliteQueue::open(&path, &name, Redrive { max_receives }).expect("open SQLite queue");
            Arc::new(q) as Arc<dyn Queue>
        }
    };
    deltadesk_conformance::queue(make, StaleReceipts::NoOp).await;
}

#[tokio::test]
async fn fs_blobs_conform() {
    let dir = tempfile::tempdir().expect("temp dir");
    let blobs = FsBlobs::new(dir.path().join("blobs"));
    deltadesk_conformance::blob_store(&blobs).await;
}

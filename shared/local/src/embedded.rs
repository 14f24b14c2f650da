//! Assembles an engine on one machine: SQLite state and queues and file blobs under one state directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltadesk_core::engine::{Engine, EngineSettings, SystemClock};
use deltadesk_core::ports::{HelpDeskSource, HelpDeskTarget, QueueError, StateError};

use crate::{FsBlobs, Redrive, SqliteQueue, SqliteState};

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("opening the state store: {0}")]
    State(#[from] StateError),
    #[error("opening the queues: {0}")]
    Queue(#[from] QueueError),
}

/// The files of an embedded migration.
#[derive(Debug, Clone)]
pub struct EmbeddedPaths {
    pub state_db: PathBuf,
    pub queue_db: PathBuf,
    pub blobs: PathBuf,
}

impl EmbeddedPaths {
    pub fn under(dir: &Path) -> Self {
        EmbeddedPaths { state_db: dir.join("state.sqlite"), queue_db: dir.join("queue.sqlite"), blobs: dir.join("blobs") }
    }
}

/// Opens (or creates) the embedded backends in `dir` and wires them with the connectors into an engine.
pub fn open_engine(
    dir: &Path,
    migration: &str,
    source: Arc<dyn HelpDeskSource>,
    target: Arc<dyn HelpDeskTarget>,
    settings: EngineSettings,
    max_receives: u32,
) -> Result<Engine, OpenError> {
    let p = EmbeddedPaths::under(dir);
    let state = SqliteState::open(&p.state_db)?;
    let redrive = Redrive { max_receives };
    // Queue names are per migration, so several migrations can share a state directory.
    let fetch_queue = SqliteQueue::open(&p.queue_db, &format!("{migration}-fetch"), redrive)?;
    let write_queue = SqliteQueue::open(&p.queue_db, &format!("{migration}-write"), redrive)?;
    Ok(Engine {
        migration: migration.to_string(),
        source,
        target,
        state: Arc::new(state),
        blobs: Arc::new(FsBlobs::new(p.blobs)),
        fetch_queue: Arc::new(fetch_queue),
        write_queue: Arc::new(write_queue),
        settings,
        clock: Arc::new(SystemClock),
        instance: format!("pid{}-{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..6]),
    })
}

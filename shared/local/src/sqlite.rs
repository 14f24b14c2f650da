//! Plumbing shared by the SQLite adapters: opening a connection with the right pragmas and running
//! rusqlite's blocking calls off the async runtime.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

/// How long a statement waits for another connection's (or process's) write lock before failing
/// with `SQLITE_BUSY`. Generous because writers hold the lock only for one short transaction.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a database could not be opened: the adapters wrap it in their port's `Unavailable` error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("cannot create the directory of {path}")]
    Dir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open SQLite database {path}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
}

/// Opens (creating if needed) the database file and applies the pragmas every connection needs.
pub(crate) fn open_file(path: &Path, schema: &str) -> Result<Connection, OpenError> {
    let shown = path.display().to_string();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| OpenError::Dir { path: shown.clone(), source })?;
    }
    let sqlite = |source| OpenError::Sqlite { path: shown.clone(), source };
    let conn = Connection::open(path).map_err(sqlite)?;
    configure(&conn, schema).map_err(sqlite)?;
    Ok(conn)
}

/// An in-memory database (tests): private to this connection, gone when it is dropped.
pub(crate) fn open_memory(schema: &str) -> Result<Connection, OpenError> {
    let sqlite = |source| OpenError::Sqlite { path: ":memory:".to_string(), source };
    let conn = Connection::open_in_memory().map_err(sqlite)?;
    configure(&conn, schema).map_err(sqlite)?;
    Ok(conn)
}

fn configure(conn: &Connection, schema: &str) -> rusqlite::Result<()> {
    // Set first so that everything below already waits for a concurrent opener instead of failing.
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL lets readers proceed while one writer commits, and survives a crashed process; the pragma
    // answers with the resulting mode ("memory" for in-memory databases, which is fine).
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))?;
    // NORMAL in WAL mode cannot corrupt the database; a power cut may lose the last commits, which
    // the engine tolerates because every step is idempotent and re-driven from the queue.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(schema)?;
    Ok(())
}

/// Runs `f` with the connection on tokio's blocking pool: rusqlite calls block (disk, busy waits).
/// `on_panic` turns a panicked closure into the caller's error type.
pub(crate) async fn blocking<T, E, F>(
    conn: &Arc<Mutex<Connection>>,
    f: F,
    on_panic: impl FnOnce(tokio::task::JoinError) -> E,
) -> Result<T, E>
where
    T: Send + 'static,
    E: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
{
    let conn = Arc::clone(conn);
    let joined = tokio::task::spawn_blocking(move || {
        // A panic while the lock was held poisons it, yet the connection is still consistent: an open
        // rusqlite `Transaction` rolls back when dropped during unwinding. So keep using it.
        let mut guard = conn.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    })
    .await;
    match joined {
        Ok(result) => result,
        Err(e) => Err(on_panic(e)),
    }
}

/// Milliseconds since the Unix epoch (wall clock, so that times stored in the file stay meaningful
/// across process restarts).
pub(crate) fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// A duration in whole milliseconds, saturating instead of wrapping.
pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

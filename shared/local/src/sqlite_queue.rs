//! `SqliteQueue`: the embedded [`Queue`] with SQS standard-queue semantics — at-least-once delivery,
//! visibility timeout, receipts, receive count and a dead-letter queue — kept in a SQLite file so
//! that messages survive a process restart.
//!
//! Several queues share one database file; the dead-letter queue of `name` is the queue
//! `{name}-dlq` in the same file. Where the port is silent this adapter follows SQS, so that what
//! works embedded also works on AWS:
//! - queue names are 1–80 characters of `[A-Za-z0-9_-]` (including the `-dlq` suffix);
//! - a body is 1 to [`MAX_BODY_BYTES`] bytes of the characters SQS accepts;
//! - a send delay is at most [`MAX_DELAY`], a visibility timeout at most [`MAX_VISIBILITY`];
//! - a message received `max_receives` times goes to the DLQ on its next receive instead of being
//!   delivered (SQS's redrive policy), keeping its message id;
//! - deleting or changing visibility with a stale receipt is a silent no-op.
//!
//! Unlike SQS, messages come back in send order (SQS standard queues promise no order, so callers
//! must not rely on it), and `send_batch` is atomic and unlimited in size (the SQS adapter has to
//! split it into batches of ten).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deltadesk_core::ports::queue::{Queue, QueueDepth, QueueError, Received};
use rusqlite::{params, Connection, TransactionBehavior};

use crate::sqlite;

/// SQS's maximum message size (256 KiB).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// SQS's maximum `DelaySeconds`.
pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// SQS's maximum visibility timeout.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);
/// SQS's maximum queue-name length.
const MAX_NAME_CHARS: usize = 80;
/// How often an empty long-poll looks again: short enough for snappy tests, long enough to leave
/// the database lock to the writers.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    sent_at INTEGER NOT NULL,
    visible_at INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT NULL
);
CREATE INDEX IF NOT EXISTS messages_queue_visible ON messages (queue, visible_at);
CREATE UNIQUE INDEX IF NOT EXISTS messages_receipt ON messages (receipt) WHERE receipt IS NOT NULL;
";

/// SQS's redrive policy: how many receives a message gets before it moves to the dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redrive {
    /// SQS's `maxReceiveCount`, at least 1.
    pub max_receives: u32,
}

/// One queue in a SQLite file. Cheap to clone (clones share one connection). Several handles — also
/// from several processes — may open the same file; every receive is one `BEGIN IMMEDIATE`
/// transaction, so two receivers never take the same visible message.
#[derive(Debug, Clone)]
pub struct SqliteQueue {
    conn: Arc<Mutex<Connection>>,
    name: Arc<str>,
    dlq: Arc<str>,
    redrive: Redrive,
}

impl SqliteQueue {
    /// Opens (creating if needed) the database at `path` and the queue `name` in it. Blocks briefly
    /// on file I/O.
    pub fn open(path: &Path, name: &str, redrive: Redrive) -> Result<Self, QueueError> {
        let dlq = format!("{name}-dlq");
        check_name(name, &dlq)?;
        if redrive.max_receives == 0 {
            return Err(QueueError::Rejected {
                queue: name.to_string(),
                cause: "max_receives must be at least 1".to_string(),
            });
        }
        let conn = sqlite::open_file(path, SCHEMA).map_err(|e| unavailable(name, e))?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), name: name.into(), dlq: dlq.into(), redrive })
    }

    /// The name of this queue's dead-letter queue.
    pub fn dead_letter_queue(&self) -> &str {
        &self.dlq
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, QueueError> {
        let name = Arc::clone(&self.name);
        let panicked = Arc::clone(&self.name);
        sqlite::blocking(&self.conn, move |conn| f(conn).map_err(|e| unavailable(&name, e)), move |e| {
            unavailable(&panicked, e)
        })
        .await
    }

    fn rejected(&self, cause: String) -> QueueError {
        QueueError::Rejected { queue: self.name.to_string(), cause }
    }

    fn check_body(&self, body: &str) -> Result<(), QueueError> {
        if body.is_empty() {
            return Err(self.rejected("empty message body".to_string()));
        }
        if body.len() > MAX_BODY_BYTES {
            return Err(self.rejected(format!("body of {} bytes exceeds {MAX_BODY_BYTES}", body.len())));
        }
        // SQS accepts #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF.
        let allowed = |c: char| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..);
        if let Some(c) = body.chars().find(|c| !allowed(*c)) {
            return Err(self.rejected(format!("body contains the character {c:?}, which SQS refuses")));
        }
        Ok(())
    }

    /// One receive attempt, in one transaction.
    async fn receive_once(&self, max: usize, visibility: Duration) -> Result<Vec<Received>, QueueError> {
        let (name, dlq, max_receives) = (self.name.to_string(), self.dlq.to_string(), i64::from(self.redrive.max_receives));
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = sqlite::now_ms();
            let hidden_until = now.saturating_add(sqlite::ms(visibility));
            let mut out = Vec::with_capacity(max);
            // Walk visible messages in id order; the cursor (not visible_at) guarantees progress even
            // with a zero visibility timeout, where a delivered message is immediately visible again.
            let mut after = 0i64;
            while out.len() < max {
                let want = i64::try_from(max - out.len()).unwrap_or(i64::MAX);
                let batch: Vec<(i64, String, i64)> = {
                    let mut stmt = tx.prepare_cached(
                        "SELECT id, body, receive_count FROM messages
                         WHERE queue = ?1 AND visible_at <= ?2 AND id > ?3 ORDER BY id LIMIT ?4",
                    )?;
                    let rows = stmt.query_map(params![name, now, after, want], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                    rows.collect::<Result<_, _>>()?
                };
                if batch.is_empty() {
                    break;
                }
                for (id, body, count) in batch {
                    after = id;
                    if count >= max_receives {
                        tracing::warn!(queue = %name, message_id = id, receive_count = count, "moving message to the dead-letter queue");
                        tx.prepare_cached("UPDATE messages SET queue = ?2, receipt = NULL, visible_at = ?3 WHERE id = ?1")?.execute(params![id, dlq, now])?;
                        continue;
                    }
                    let receipt = uuid::Uuid::new_v4().to_string();
                    tx.prepare_cached("UPDATE messages SET receive_count = receive_count + 1, receipt = ?2, visible_at = ?3 WHERE id = ?1")?.execute(params![id, receipt, hidden_until])?;
                    out.push(Received {
                        message_id: id.to_string(),
                        receipt,
                        body,
                        receive_count: u32::try_from(count + 1).unwrap_or(u32::MAX),
                    });
                }
            }
            tx.commit()?;
            Ok(out)
        })
        .await
    }
}

fn check_name(name: &str, dlq: &str) -> Result<(), QueueError> {
    let valid = |n: &str| n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if name.is_empty() || !valid(name) || dlq.len() > MAX_NAME_CHARS {
        return Err(QueueError::Rejected {
            queue: name.to_string(),
            cause: format!(
                "queue names are 1 to {} characters of A-Z, a-z, 0-9, '-' and '_' (the dead-letter queue adds \"-dlq\")",
                MAX_NAME_CHARS - 4
            ),
        });
    }
    Ok(())
}

fn unavailable(queue: &str, e: impl std::error::Error + Send + Sync + 'static) -> QueueError {
    QueueError::Unavailable { queue: queue.to_string(), source: Box::new(e) }
}

#[async_trait]
impl Queue for SqliteQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, body: &str, delay: Duration) -> Result<(), QueueError> {
        self.check_body(body)?;
        if delay > MAX_DELAY {
            return Err(self.rejected(format!("delay of {delay:?} exceeds {MAX_DELAY:?}")));
        }
        let (name, body) = (self.name.to_string(), body.to_string());
        self.run(move |conn| {
            let now = sqlite::now_ms();
            conn.prepare_cached("INSERT INTO messages (queue, body, sent_at, visible_at, receive_count) VALUES (?1, ?2, ?3, ?4, 0)")?.execute(params![name, body, now, now.saturating_add(sqlite::ms(delay))])?;
            Ok(())
        })
        .await
    }

    async fn send_batch(&self, bodies: &[String]) -> Result<(), QueueError> {
        for body in bodies {
            self.check_body(body)?;
        }
        if bodies.is_empty() {
            return Ok(());
        }
        let (name, bodies) = (self.name.to_string(), bodies.to_vec());
        self.run(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = sqlite::now_ms();
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO messages (queue, body, sent_at, visible_at, receive_count) VALUES (?1, ?2, ?3, ?3, 0)",
                )?;
                for body in &bodies {
                    stmt.execute(params![name, body, now])?;
                }
            }
            tx.commit()
        })
        .await
    }

    async fn receive(&self, max: usize, visibility: Duration, wait: Duration) -> Result<Vec<Received>, QueueError> {
        if visibility > MAX_VISIBILITY {
            return Err(self.rejected(format!("visibility of {visibility:?} exceeds {MAX_VISIBILITY:?}")));
        }
        if max == 0 {
            return Ok(Vec::new());
        }
        let deadline = Instant::now() + wait;
        loop {
            let got = self.receive_once(max, visibility).await?;
            let now = Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
        }
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        let (name, receipt) = (self.name.to_string(), receipt.to_string());
        self.run(move |conn| {
            // Matching on the receipt makes a stale one (the message was received again since) a no-op.
            conn.prepare_cached("DELETE FROM messages WHERE queue = ?1 AND receipt = ?2")?.execute(params![name, receipt])?;
            Ok(())
        })
        .await
    }

    async fn change_visibility(&self, receipt: &str, visibility: Duration) -> Result<(), QueueError> {
        if visibility > MAX_VISIBILITY {
            return Err(self.rejected(format!("visibility of {visibility:?} exceeds {MAX_VISIBILITY:?}")));
        }
        let (name, receipt) = (self.name.to_string(), receipt.to_string());
        self.run(move |conn| {
            let until = sqlite::now_ms().saturating_add(sqlite::ms(visibility));
            conn.prepare_cached("UPDATE messages SET visible_at = ?3 WHERE queue = ?1 AND receipt = ?2")?.execute(params![name, receipt, until])?;
            Ok(())
        })
        .await
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        let name = self.name.to_string();
        self.run(move |conn| {
            let now = sqlite::now_ms();
            let (visible, in_flight, delayed): (i64, i64, i64) = conn.prepare_cached("SELECT COALESCE(SUM(visible_at <= ?2), 0),
                        COALESCE(SUM(visible_at > ?2 AND receive_count > 0 AND receipt IS NOT NULL), 0),
                        COALESCE(SUM(visible_at > ?2 AND receive_count = 0), 0)
                 FROM messages WHERE queue = ?1")?.query_row(params![name, now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            let n = |v: i64| u64::try_from(v).unwrap_or(0);
            Ok(QueueDepth { visible: n(visible), in_flight: n(in_flight), delayed: n(delayed) })
        })
        .await
    }

    async fn redrive_dead_letters(&self) -> Result<u64, QueueError> {
        let (name, dlq) = (self.name.to_string(), self.dlq.to_string());
        self.run(move |conn| {
            let moved = conn.prepare_cached("UPDATE messages SET queue = ?1, receive_count = 0, receipt = NULL, visible_at = ?3 WHERE queue = ?2")?.execute(params![name, dlq, sqlite::now_ms()])?;
            Ok(moved as u64)
        })
        .await
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<String>, QueueError> {
        let dlq = self.dlq.to_string();
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached("SELECT body FROM messages WHERE queue = ?1 ORDER BY id LIMIT ?2")?;
            let rows = stmt.query_map(params![dlq, max], |r| r.get::<_, String>(0))?;
            rows.collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const NO_WAIT: Duration = Duration::ZERO;
    const LONG: Duration = Duration::from_secs(60);

    fn open(dir: &tempfile::TempDir, name: &str, max_receives: u32) -> SqliteQueue {
        SqliteQueue::open(&dir.path().join("queues.db"), name, Redrive { max_receives }).unwrap()
    }

    #[tokio::test]
    async fn undeleted_message_comes_back_with_a_new_receipt() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir, "work", 5);
        q.send("hello", Duration::ZERO).await.unwrap();

        let first = q.receive(10, Duration::from_millis(200), NO_WAIT).await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].body.as_str(), first[0].receive_count), ("hello", 1));
        // Hidden while in flight.
        assert!(q.receive(10, LONG, NO_WAIT).await.unwrap().is_empty());
        assert_eq!(q.depth().await.unwrap(), QueueDepth { visible: 0, in_flight: 1, delayed: 0 });

        tokio::time::sleep(Duration::from_millis(250)).await;
        let second = q.receive(10, LONG, NO_WAIT).await.unwrap();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].message_id, first[0].message_id);
        assert_eq!(second[0].receive_count, 2);
        assert_ne!(second[0].receipt, first[0].receipt);

        // The stale receipt deletes nothing; the current one does.
        q.delete(&first[0].receipt).await.unwrap();
        q.change_visibility(&first[0].receipt, Duration::ZERO).await.unwrap();
        assert_eq!(q.depth().await.unwrap().in_flight, 1);
        q.delete(&second[0].receipt).await.unwrap();
        assert_eq!(q.depth().await.unwrap().total(), 0);
        assert!(q.receive(10, Duration::ZERO, NO_WAIT).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn change_visibility_with_the_current_receipt() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir, "work", 5);
        q.send("m", Duration::ZERO).await.unwrap();
        let got = q.receive(1, LONG, NO_WAIT).await.unwrap();
        q.change_visibility(&got[0].receipt, Duration::ZERO).await.unwrap();
        let again = q.receive(1, LONG, NO_WAIT).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].receive_count, 2);
        assert!(q.change_visibility(&again[0].receipt, MAX_VISIBILITY + Duration::from_secs(1)).await.is_err());
    }

    #[tokio::test]
    async fn too_many_receives_move_to_the_dlq_and_redrive_brings_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir, "work", 2);
        q.send("poison", Duration::ZERO).await.unwrap();
        q.send("fine", Duration::ZERO).await.unwrap();
        for round in 1..=2u32 {
            let got = q.receive(1, Duration::ZERO, NO_WAIT).await.unwrap();
            assert_eq!((got[0].body.as_str(), got[0].receive_count), ("poison", round));
        }
        // Third receive: "poison" goes to the DLQ and "fine" is delivered in its place.
        let got = q.receive(1, LONG, NO_WAIT).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body, "fine");
        q.delete(&got[0].receipt).await.unwrap();
        assert_eq!(q.dead_letters(10).await.unwrap(), ["poison"]);
        assert_eq!(q.depth().await.unwrap().total(), 0);
        // The DLQ is an ordinary queue of the same file.
        let dlq = open(&dir, q.dead_letter_queue(), 1);
        assert_eq!(dlq.depth().await.unwrap().visible, 1);

        assert_eq!(q.redrive_dead_letters().await.unwrap(), 1);
        assert!(q.dead_letters(10).await.unwrap().is_empty());
        let got = q.receive(10, LONG, NO_WAIT).await.unwrap();
        assert_eq!((got[0].body.as_str(), got[0].receive_count), ("poison", 1));
        assert_eq!(q.redrive_dead_letters().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn delayed_messages_wait_and_long_polling_picks_them_up() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir, "work", 5);
        q.send("later", Duration::from_millis(300)).await.unwrap();
        q.send_batch(&["a".to_string(), "b".to_string()]).await.unwrap();
        assert_eq!(q.depth().await.unwrap(), QueueDepth { visible: 2, in_flight: 0, delayed: 1 });
        let now: Vec<String> = q.receive(10, LONG, NO_WAIT).await.unwrap().into_iter().map(|m| m.body).collect();
        assert_eq!(now, ["a", "b"]);
        assert_eq!(q.depth().await.unwrap(), QueueDepth { visible: 0, in_flight: 2, delayed: 1 });

        let started = Instant::now();
        let got = q.receive(10, LONG, Duration::from_secs(5)).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body, "later");
        assert!(started.elapsed() < Duration::from_secs(3));

        // An empty long poll waits about `wait`, then returns nothing.
        let started = Instant::now();
        assert!(q.receive(10, LONG, Duration::from_millis(150)).await.unwrap().is_empty());
        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    #[tokio::test]
    async fn sqs_limits_are_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let q = open(&dir, "work", 5);
        assert!(matches!(q.send("", Duration::ZERO).await, Err(QueueError::Rejected { .. })));
        assert!(matches!(q.send(&"x".repeat(MAX_BODY_BYTES + 1), Duration::ZERO).await, Err(QueueError::Rejected { .. })));
        assert!(matches!(q.send("nul\0", Duration::ZERO).await, Err(QueueError::Rejected { .. })));
        assert!(matches!(q.send("x", MAX_DELAY + Duration::from_secs(1)).await, Err(QueueError::Rejected { .. })));
        assert!(matches!(
            q.send_batch(&["ok".to_string(), String::new()]).await,
            Err(QueueError::Rejected { .. })
        ));
        assert_eq!(q.depth().await.unwrap().total(), 0);
        let path = dir.path().join("queues.db");
        assert!(SqliteQueue::open(&path, "bad name", Redrive { max_receives: 1 }).is_err());
        assert!(SqliteQueue::open(&path, "", Redrive { max_receives: 1 }).is_err());
        assert!(SqliteQueue::open(&path, "ok", Redrive { max_receives: 0 }).is_err());
    }

    #[tokio::test]
    async fn queues_in_one_file_are_separate_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let in_flight_id;
        {
            let a = open(&dir, "a", 5);
            let b = open(&dir, "b", 5);
            a.send("a1", Duration::ZERO).await.unwrap();
            a.send("a2", Duration::ZERO).await.unwrap();
            b.send("b1", Duration::ZERO).await.unwrap();
            let got = a.receive(1, Duration::from_millis(300), NO_WAIT).await.unwrap();
            in_flight_id = got[0].message_id.clone();
            // A receipt of queue a means nothing to queue b.
            b.delete(&got[0].receipt).await.unwrap();
            assert_eq!(a.depth().await.unwrap().in_flight, 1);
        }
        // "Restart": new handles on the same file.
        let a = open(&dir, "a", 5);
        let b = open(&dir, "b", 5);
        assert_eq!(a.depth().await.unwrap(), QueueDepth { visible: 1, in_flight: 1, delayed: 0 });
        assert_eq!(b.depth().await.unwrap().visible, 1);
        tokio::time::sleep(Duration::from_millis(350)).await;
        let got = a.receive(10, LONG, NO_WAIT).await.unwrap();
        assert_eq!(got.len(), 2);
        let back = got.iter().find(|m| m.message_id == in_flight_id).unwrap();
        assert_eq!(back.receive_count, 2);
    }

    /// Two handles (as two processes would have) receiving concurrently never share a message
    /// within its visibility timeout.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_receivers_never_share_a_message() {
        let dir = tempfile::tempdir().unwrap();
        let producer = open(&dir, "work", 5);
        const N: usize = 300;
        let bodies: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
        producer.send_batch(&bodies).await.unwrap();

        let mut handles = Vec::new();
        for _ in 0..4 {
            let q = open(&dir, "work", 5);
            handles.push(tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let batch = q.receive(7, LONG, Duration::from_millis(100)).await.unwrap();
                    if batch.is_empty() {
                        return got;
                    }
                    got.extend(batch.into_iter().map(|m| (m.message_id, m.receive_count)));
                }
            }));
        }
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.unwrap());
        }
        assert_eq!(all.len(), N);
        assert!(all.iter().all(|(_, count)| *count == 1));
        let unique: HashSet<&String> = all.iter().map(|(id, _)| id).collect();
        assert_eq!(unique.len(), N);
        assert_eq!(producer.depth().await.unwrap(), QueueDepth { visible: 0, in_flight: N as u64, delayed: 0 });
    }
}

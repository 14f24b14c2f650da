//! `SqliteState`: the embedded [`StateStore`] — one SQLite table of JSON items with revisions,
//! conditional writes and all-or-nothing transactions, mirroring what the DynamoDB adapter offers.
//!
//! Where the port is silent this adapter follows DynamoDB, so that a run which works embedded also
//! works on AWS:
//! - two writes to the same item in one transaction are refused (DynamoDB's `ValidationException`);
//! - a transaction holds at most [`MAX_TRANSACT_WRITES`] writes, an item at most [`MAX_ITEM_BYTES`];
//! - partition and sort keys must not be empty;
//! - `expires_at` behaves like DynamoDB TTL: expired items stay visible until [`SqliteState::purge_expired`].
//!
//! Validation failures have no dedicated variant in [`StateError`]; they come back as
//! [`StateError::Corrupt`] naming the offending item, and never write anything.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deltadesk_core::ports::state::{Condition, Item, StateError, StateStore, Write, WriteOp};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, TransactionBehavior};
use serde_json::Value;

use crate::sqlite;

/// DynamoDB's `TransactWriteItems` limit; larger transactions are refused here too.
pub const MAX_TRANSACT_WRITES: usize = 100;

/// DynamoDB's item size limit (400 KB), applied to `pk + sk + value as JSON`. Bigger payloads
/// belong in the blob store.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    pk TEXT NOT NULL,
    sk TEXT NOT NULL,
    rev INTEGER NOT NULL,
    value TEXT NOT NULL,
    expires_at INTEGER NULL,
    PRIMARY KEY (pk, sk)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_expires_at ON items (expires_at) WHERE expires_at IS NOT NULL;
";

/// The embedded state store. Cheap to clone (clones share one connection); several handles —
/// also from several processes — may open the same file: SQLite's locking and the busy timeout
/// serialise their transactions.
#[derive(Debug, Clone)]
pub struct SqliteState {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteState {
    /// Opens (creating if needed) the database at `path`. Blocks briefly on file I/O.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let conn = sqlite::open_file(path, SCHEMA).map_err(unavailable)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    /// A private in-memory store, for tests.
    pub fn in_memory() -> Result<Self, StateError> {
        let conn = sqlite::open_memory(SCHEMA).map_err(unavailable)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Deletes every item whose `expires_at` is at or before `now`, as DynamoDB's TTL sweeper does
    /// (eventually) on AWS; returns how many were deleted.
    pub async fn purge_expired(&self, now: DateTime<Utc>) -> Result<u64, StateError> {
        let now = now.timestamp();
        self.run(move |conn| {
            let n = conn
                .execute("DELETE FROM items WHERE expires_at IS NOT NULL AND expires_at <= ?1", params![now])
                .map_err(unavailable)?;
            Ok(n as u64)
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, StateError> {
        sqlite::blocking(&self.conn, f, unavailable).await
    }
}

#[async_trait]
impl StateStore for SqliteState {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StateError> {
        let (pk, sk) = (pk.to_string(), sk.to_string());
        self.run(move |conn| {
            // Cached statements: the engine runs these few statements tens of thousands of times.
            let row = conn
                .prepare_cached("SELECT rev, value FROM items WHERE pk = ?1 AND sk = ?2")
                .and_then(|mut st| st.query_row(params![pk, sk], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))).optional())
                .map_err(unavailable)?;
            row.map(|(rev, value)| to_item(pk, sk, rev, &value)).transpose()
        })
        .await
    }

    async fn query(&self, pk: &str, sk_prefix: &str, start_after: Option<&str>, limit: usize) -> Result<Vec<Item>, StateError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // A range on the primary key instead of LIKE: no wildcard escaping, and the index is used.
        let mut sql = String::from("SELECT sk, rev, value FROM items WHERE pk = ?1 AND sk >= ?2");
        let mut args: Vec<String> = vec![pk.to_string(), sk_prefix.to_string()];
        if let Some(upper) = prefix_successor(sk_prefix) {
            args.push(upper);
            sql.push_str(&format!(" AND sk < ?{}", args.len()));
        }
        if let Some(after) = start_after {
            args.push(after.to_string());
            sql.push_str(&format!(" AND sk > ?{}", args.len()));
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        sql.push_str(&format!(" ORDER BY sk LIMIT {limit}"));
        let pk = pk.to_string();
        self.run(move |conn| {
            let mut stmt = conn.prepare_cached(&sql).map_err(unavailable)?;
            let rows = stmt
                .query_map(params_from_iter(args.iter()), |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
                })
                .map_err(unavailable)?;
            let mut items = Vec::new();
            for row in rows {
                let (sk, rev, value) = row.map_err(unavailable)?;
                items.push(to_item(pk.clone(), sk, rev, &value)?);
            }
            Ok(items)
        })
        .await
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), StateError> {
        let writes = deltadesk_core::ports::state::merge_adds(writes);
        validate(&writes)?;
        if writes.is_empty() {
            return Ok(());
        }
        self.run(move |conn| transact_blocking(conn, &writes)).await
    }
}

/// Rejects, before touching the database, what DynamoDB would reject as a validation error.
fn validate(writes: &[Write]) -> Result<(), StateError> {
    let first = |cause: String| {
        let (pk, sk) = writes.first().map(|w| (w.pk.clone(), w.sk.clone())).unwrap_or_default();
        StateError::Corrupt { pk, sk, cause }
    };
    if writes.len() > MAX_TRANSACT_WRITES {
        return Err(first(format!(
            "a transaction of {} writes exceeds the limit of {MAX_TRANSACT_WRITES}",
            writes.len()
        )));
    }
    let mut seen = std::collections::HashSet::with_capacity(writes.len());
    for w in writes {
        let corrupt = |cause: String| StateError::Corrupt { pk: w.pk.clone(), sk: w.sk.clone(), cause };
        if w.pk.is_empty() || w.sk.is_empty() {
            return Err(corrupt("partition and sort keys must not be empty".to_string()));
        }
        if !seen.insert((w.pk.as_str(), w.sk.as_str())) {
            return Err(corrupt("two writes to one item in a transaction".to_string()));
        }
        if let WriteOp::Put { value, .. } = &w.op {
            check_size(w, &value.to_string())?;
        }
    }
    Ok(())
}

fn check_size(w: &Write, value_json: &str) -> Result<(), StateError> {
    let size = w.pk.len() + w.sk.len() + value_json.len();
    if size > MAX_ITEM_BYTES {
        return Err(StateError::Corrupt {
            pk: w.pk.clone(),
            sk: w.sk.clone(),
            cause: format!("item of {size} bytes exceeds the limit of {MAX_ITEM_BYTES}"),
        });
    }
    Ok(())
}

/// The stored row of an item, as a transaction sees it.
struct Row {
    rev: i64,
    value: String,
    expires_at: Option<i64>,
}

fn transact_blocking(conn: &mut Connection, writes: &[Write]) -> Result<(), StateError> {
    // IMMEDIATE takes the write lock up front, so the rows read for the conditions cannot change
    // before the writes land (a DEFERRED transaction could fail to upgrade its lock midway).
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(unavailable)?;

    // Phase 1: every condition, before any write. Returning drops `tx`, which rolls back.
    let mut rows = Vec::with_capacity(writes.len());
    for (index, w) in writes.iter().enumerate() {
        let row = tx
            .prepare_cached("SELECT rev, value, expires_at FROM items WHERE pk = ?1 AND sk = ?2")
            .and_then(|mut st| st.query_row(params![w.pk, w.sk], |r| Ok(Row { rev: r.get(0)?, value: r.get(1)?, expires_at: r.get(2)? })).optional())
            .map_err(unavailable)?;
        let holds = match w.cond {
            Condition::Always => true,
            Condition::NotExists => row.is_none(),
            Condition::Rev(n) => row.as_ref().is_some_and(|r| u64::try_from(r.rev).ok() == Some(n)),
        };
        if !holds {
            return Err(StateError::ConditionFailed { index, pk: w.pk.clone(), sk: w.sk.clone() });
        }
        rows.push(row);
    }

    // Phase 2: the writes. Any error here also rolls the whole transaction back.
    for (w, row) in writes.iter().zip(rows) {
        let next_rev = row.as_ref().map_or(1, |r| r.rev.saturating_add(1));
        match &w.op {
            WriteOp::Put { value, expires_at } => {
                let expires_at = expires_at.map(|t| t.timestamp());
                upsert(&tx, w, next_rev, &value.to_string(), expires_at)?;
            }
            WriteOp::Delete => {
                tx.prepare_cached("DELETE FROM items WHERE pk = ?1 AND sk = ?2")
                    .and_then(|mut st| st.execute(params![w.pk, w.sk]))
                    .map_err(unavailable)?;
            }
            WriteOp::Add { deltas } => {
                let (mut value, expires_at) = match &row {
                    Some(r) => (parse(&w.pk, &w.sk, &r.value)?, r.expires_at),
                    None => (Value::Object(serde_json::Map::new()), None),
                };
                for (field, by) in deltas {
                    value = add_to_field(w, value, field, *by)?;
                }
                let json = value.to_string();
                check_size(w, &json)?;
                // Like DynamoDB's UpdateItem, Add keeps the item's other attributes, TTL included.
                upsert(&tx, w, next_rev, &json, expires_at)?;
            }
        }
    }
    tx.commit().map_err(unavailable)
}

fn upsert(tx: &rusqlite::Transaction<'_>, w: &Write, rev: i64, value: &str, expires_at: Option<i64>) -> Result<(), StateError> {
    tx.prepare_cached(
        "INSERT INTO items (pk, sk, rev, value, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (pk, sk) DO UPDATE SET rev = excluded.rev, value = excluded.value, expires_at = excluded.expires_at",
    )
    .and_then(|mut st| st.execute(params![w.pk, w.sk, rev, value, expires_at]))
    .map_err(unavailable)?;
    Ok(())
}

fn add_to_field(w: &Write, mut value: Value, field: &str, by: i64) -> Result<Value, StateError> {
    let corrupt = |cause: String| StateError::Corrupt { pk: w.pk.clone(), sk: w.sk.clone(), cause };
    let Value::Object(map) = &mut value else {
        return Err(corrupt(format!("cannot add to field {field:?}: the item is not a JSON object")));
    };
    let current = map.get(field).cloned().unwrap_or(Value::from(0));
    let sum = match &current {
        Value::Number(n) => match n.as_i64() {
            Some(i) => Value::from(
                i.checked_add(by).ok_or_else(|| corrupt(format!("adding {by} to field {field:?} overflows")))?,
            ),
            // Counters are integers; a float (or a u64 beyond i64) still adds, as in DynamoDB.
            None => n
                .as_f64()
                .and_then(|f| serde_json::Number::from_f64(f + by as f64))
                .map(Value::Number)
                .ok_or_else(|| corrupt(format!("adding {by} to field {field:?} gives no finite number")))?,
        },
        other => return Err(corrupt(format!("cannot add to field {field:?}: it holds {other}, not a number"))),
    };
    map.insert(field.to_string(), sum);
    Ok(value)
}

fn parse(pk: &str, sk: &str, value: &str) -> Result<Value, StateError> {
    serde_json::from_str(value).map_err(|e| StateError::Corrupt {
        pk: pk.to_string(),
        sk: sk.to_string(),
        cause: format!("stored value is not JSON: {e}"),
    })
}

fn to_item(pk: String, sk: String, rev: i64, value: &str) -> Result<Item, StateError> {
    let value = parse(&pk, &sk, value)?;
    let rev = u64::try_from(rev).map_err(|_| StateError::Corrupt {
        pk: pk.clone(),
        sk: sk.clone(),
        cause: format!("negative revision {rev}"),
    })?;
    Ok(Item { pk, sk, rev, value })
}

/// The smallest string greater than every string that starts with `prefix`, if there is one.
/// SQLite compares TEXT bytewise, and UTF-8 byte order is code point order, so bumping the last
/// code point that can grow (dropping any U+10FFFF after it) gives the exclusive upper bound.
fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last as u32 {
            0xD7FF => Some('\u{E000}'), // skip the surrogate gap, which no char can hold
            c => char::from_u32(c + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> StateError {
    StateError::Unavailable { source: Box::new(e) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn put(pk: &str, sk: &str, v: Value, cond: Condition) -> Write {
        Write::put(pk, sk, v, cond)
    }

    #[tokio::test]
    async fn put_not_exists_twice_fails_the_second_time() {
        let s = SqliteState::in_memory().unwrap();
        s.transact(vec![put("p", "a", json!({"n": 1}), Condition::NotExists)]).await.unwrap();
        let err = s.transact(vec![put("p", "a", json!({"n": 2}), Condition::NotExists)]).await.unwrap_err();
        assert!(matches!(err, StateError::ConditionFailed { index: 0, ref pk, ref sk } if pk == "p" && sk == "a"), "{err:?}");
        let item = s.get("p", "a").await.unwrap().unwrap();
        assert_eq!(item.rev, 1);
        assert_eq!(item.value, json!({"n": 1}));
    }

    #[tokio::test]
    async fn rev_conditions_follow_the_revision() {
        let s = SqliteState::in_memory().unwrap();
        // Rev on a missing item fails: Rev(n) means "exists with rev n".
        assert!(matches!(
            s.transact(vec![put("p", "a", json!(1), Condition::Rev(0))]).await,
            Err(StateError::ConditionFailed { .. })
        ));
        s.transact(vec![put("p", "a", json!(1), Condition::Always)]).await.unwrap();
        s.transact(vec![put("p", "a", json!(2), Condition::Rev(1))]).await.unwrap();
        let err = s.transact(vec![put("p", "a", json!(3), Condition::Rev(1))]).await.unwrap_err();
        assert!(matches!(err, StateError::ConditionFailed { index: 0, .. }));
        let item = s.get("p", "a").await.unwrap().unwrap();
        assert_eq!((item.rev, item.value), (2, json!(2)));
        // Conditional delete.
        assert!(s.transact(vec![Write::delete("p", "a", Condition::Rev(1))]).await.is_err());
        s.transact(vec![Write::delete("p", "a", Condition::Rev(2))]).await.unwrap();
        assert!(s.get("p", "a").await.unwrap().is_none());
        // Deleting what is not there is fine without a condition, as in DynamoDB.
        s.transact(vec![Write::delete("p", "a", Condition::Always)]).await.unwrap();
        // After a delete the item starts over at rev 1.
        s.transact(vec![put("p", "a", json!(4), Condition::NotExists)]).await.unwrap();
        assert_eq!(s.get("p", "a").await.unwrap().unwrap().rev, 1);
    }

    #[tokio::test]
    async fn a_failed_condition_writes_nothing() {
        let s = SqliteState::in_memory().unwrap();
        s.transact(vec![put("p", "b", json!("old"), Condition::Always)]).await.unwrap();
        let err = s
            .transact(vec![
                put("p", "a", json!("new"), Condition::NotExists),
                put("p", "b", json!("changed"), Condition::NotExists),
                Write::add("p", "c", "n", 1),
            ])
            .await
            .unwrap_err();
        assert!(matches!(err, StateError::ConditionFailed { index: 1, ref sk, .. } if sk == "b"), "{err:?}");
        assert!(s.get("p", "a").await.unwrap().is_none());
        assert!(s.get("p", "c").await.unwrap().is_none());
        assert_eq!(s.get("p", "b").await.unwrap().unwrap().value, json!("old"));
    }

    #[tokio::test]
    async fn validation_errors_write_nothing() {
        let s = SqliteState::in_memory().unwrap();
        let err = s
            .transact(vec![put("p", "a", json!(1), Condition::Always), Write::add("p", "a", "n", 1)])
            .await
            .unwrap_err();
        assert!(matches!(err, StateError::Corrupt { ref cause, .. } if cause.contains("two writes")), "{err:?}");
        assert!(s.get("p", "a").await.unwrap().is_none());

        let too_many: Vec<Write> = (0..=MAX_TRANSACT_WRITES).map(|i| Write::add("p", format!("{i}"), "n", 1)).collect();
        assert!(matches!(s.transact(too_many).await, Err(StateError::Corrupt { .. })));
        let huge = json!("x".repeat(MAX_ITEM_BYTES));
        assert!(matches!(s.transact(vec![put("p", "big", huge, Condition::Always)]).await, Err(StateError::Corrupt { .. })));
        assert!(matches!(s.transact(vec![put("p", "", json!(1), Condition::Always)]).await, Err(StateError::Corrupt { .. })));
        assert!(s.query("p", "", None, 10).await.unwrap().is_empty());
        s.transact(vec![]).await.unwrap();
    }

    #[tokio::test]
    async fn add_creates_and_increments() {
        let s = SqliteState::in_memory().unwrap();
        s.transact(vec![Write::add("run", "counters", "fetched", 3)]).await.unwrap();
        let item = s.get("run", "counters").await.unwrap().unwrap();
        assert_eq!((item.rev, item.value), (1, json!({"fetched": 3})));
        s.transact(vec![Write::add("run", "counters", "fetched", 2), Write::add("run", "other", "x", -1)]).await.unwrap();
        s.transact(vec![Write::add("run", "counters", "written", 1)]).await.unwrap();
        let item = s.get("run", "counters").await.unwrap().unwrap();
        assert_eq!((item.rev, item.value), (3, json!({"fetched": 5, "written": 1})));
        assert_eq!(s.get("run", "other").await.unwrap().unwrap().value, json!({"x": -1}));
        // Other fields survive.
        s.transact(vec![put("run", "mixed", json!({"name": "a", "n": 1}), Condition::Always)]).await.unwrap();
        s.transact(vec![Write::add("run", "mixed", "n", 1)]).await.unwrap();
        assert_eq!(s.get("run", "mixed").await.unwrap().unwrap().value, json!({"name": "a", "n": 2}));
        // Non-object items and non-numeric fields are refused.
        s.transact(vec![put("run", "list", json!([1]), Condition::Always)]).await.unwrap();
        assert!(matches!(s.transact(vec![Write::add("run", "list", "n", 1)]).await, Err(StateError::Corrupt { .. })));
        assert!(matches!(s.transact(vec![Write::add("run", "mixed", "name", 1)]).await, Err(StateError::Corrupt { .. })));
        assert_eq!(s.get("run", "mixed").await.unwrap().unwrap().rev, 2);
    }

    #[tokio::test]
    async fn query_matches_the_prefix_in_order_and_pages() {
        let s = SqliteState::in_memory().unwrap();
        let sks = ["t#001", "t#002", "t#010", "t#1", "t$", "t", "u#001", "t%x", "t_y"];
        let writes = sks.iter().map(|sk| put("p", sk, json!(sk), Condition::Always)).collect();
        s.transact(writes).await.unwrap();
        s.transact(vec![put("q", "t#003", json!(0), Condition::Always)]).await.unwrap();

        let all: Vec<String> = s.query("p", "t#", None, 100).await.unwrap().into_iter().map(|i| i.sk).collect();
        assert_eq!(all, ["t#001", "t#002", "t#010", "t#1"]);
        // LIKE wildcards in the prefix are plain characters.
        let pct: Vec<String> = s.query("p", "t%", None, 100).await.unwrap().into_iter().map(|i| i.sk).collect();
        assert_eq!(pct, ["t%x"]);
        let us: Vec<String> = s.query("p", "t_", None, 100).await.unwrap().into_iter().map(|i| i.sk).collect();
        assert_eq!(us, ["t_y"]);

        let mut pages = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = s.query("p", "t#", after.as_deref(), 3).await.unwrap();
            if page.is_empty() {
                break;
            }
            after = page.last().map(|i| i.sk.clone());
            pages.push(page.into_iter().map(|i| i.sk).collect::<Vec<_>>());
        }
        assert_eq!(pages, vec![vec!["t#001", "t#002", "t#010"], vec!["t#1"]]);
        assert_eq!(s.query("p", "", None, 100).await.unwrap().len(), sks.len());
        assert!(s.query("p", "t#", None, 0).await.unwrap().is_empty());
    }

    #[test]
    fn prefix_successor_bounds_the_prefix() {
        assert_eq!(prefix_successor("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_successor(""), None);
        assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_successor("\u{10FFFF}"), None);
        assert_eq!(prefix_successor("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
    }

    #[tokio::test]
    async fn purge_expired_drops_only_expired_items() {
        let s = SqliteState::in_memory().unwrap();
        let now = Utc::now();
        let w = |sk: &str, at: Option<DateTime<Utc>>| Write {
            pk: "p".into(),
            sk: sk.into(),
            op: WriteOp::Put { value: json!({}), expires_at: at },
            cond: Condition::Always,
        };
        s.transact(vec![
            w("old", Some(now - chrono::Duration::hours(1))),
            w("new", Some(now + chrono::Duration::hours(1))),
            w("forever", None),
        ])
        .await
        .unwrap();
        // Not hidden before the purge, as with DynamoDB TTL.
        assert!(s.get("p", "old").await.unwrap().is_some());
        // Add keeps the TTL.
        s.transact(vec![Write::add("p", "old", "n", 1)]).await.unwrap();
        assert_eq!(s.purge_expired(now).await.unwrap(), 1);
        let left: Vec<String> = s.query("p", "", None, 10).await.unwrap().into_iter().map(|i| i.sk).collect();
        assert_eq!(left, ["forever", "new"]);
    }

    /// Read-modify-write with a Rev condition and retry on conflict: no increment may be lost,
    /// neither between tasks sharing a handle nor between two handles on one file.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_optimistic_writers_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let a = SqliteState::open(&path).unwrap();
        let b = SqliteState::open(&path).unwrap();
        const TASKS: u64 = 8;
        const EACH: u64 = 25;
        let mut handles = Vec::new();
        for t in 0..TASKS {
            let s = if t % 2 == 0 { a.clone() } else { b.clone() };
            handles.push(tokio::spawn(async move {
                let mut conflicts = 0u64;
                for _ in 0..EACH {
                    loop {
                        let cur = s.get("p", "counter").await.unwrap();
                        let (n, cond) = match &cur {
                            Some(i) => (i.value["n"].as_u64().unwrap(), Condition::Rev(i.rev)),
                            None => (0, Condition::NotExists),
                        };
                        match s.transact(vec![put("p", "counter", json!({"n": n + 1}), cond)]).await {
                            Ok(()) => break,
                            Err(StateError::ConditionFailed { .. }) => {
                                conflicts += 1;
                                tokio::task::yield_now().await;
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                conflicts
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        let item = a.get("p", "counter").await.unwrap().unwrap();
        assert_eq!(item.value["n"].as_u64(), Some(TASKS * EACH));
        assert_eq!(item.rev, TASKS * EACH);
    }

    #[tokio::test]
    async fn data_survives_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("state.db");
        {
            let s = SqliteState::open(&path).unwrap();
            s.transact(vec![put("p", "a", json!({"k": "v"}), Condition::NotExists)]).await.unwrap();
            s.transact(vec![Write::add("p", "a", "n", 5)]).await.unwrap();
        }
        let s = SqliteState::open(&path).unwrap();
        let item = s.get("p", "a").await.unwrap().unwrap();
        assert_eq!((item.rev, item.value), (2, json!({"k": "v", "n": 5})));
    }
}

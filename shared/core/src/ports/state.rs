//! The state-store port: items with revisions, conditional writes and all-or-nothing transactions —
//! the shape DynamoDB offers, so SQLite and DynamoDB adapters keep the same semantics.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub pk: String,
    pub sk: String,
    /// Starts at 1 and grows by one with every write; the basis of optimistic concurrency.
    pub rev: u64,
    pub value: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    Always,
    NotExists,
    /// The item exists with exactly this revision.
    Rev(u64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// Replaces the item; `expires_at` lets the store drop it after the retention period.
    Put { value: serde_json::Value, expires_at: Option<DateTime<Utc>> },
    Delete,
    /// Adds each delta to a numeric field of an object item, creating item and fields (from 0) as needed.
    /// The engine uses `Add` only on counter items it never `Put`s, so adapters may store counters apart.
    Add { deltas: Vec<(String, i64)> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub pk: String,
    pub sk: String,
    pub op: WriteOp,
    pub cond: Condition,
}

impl Write {
    pub fn put(pk: impl Into<String>, sk: impl Into<String>, value: serde_json::Value, cond: Condition) -> Write {
        Write { pk: pk.into(), sk: sk.into(), op: WriteOp::Put { value, expires_at: None }, cond }
    }
    pub fn add(pk: impl Into<String>, sk: impl Into<String>, field: &str, by: i64) -> Write {
        Write { pk: pk.into(), sk: sk.into(), op: WriteOp::Add { deltas: vec![(field.to_string(), by)] }, cond: Condition::Always }
    }
    pub fn delete(pk: impl Into<String>, sk: impl Into<String>, cond: Condition) -> Write {
        Write { pk: pk.into(), sk: sk.into(), op: WriteOp::Delete, cond }
    }
}

/// Merges unconditional `Add` writes to the same item into one write, keeping the first one's position.
/// A transaction may touch each item only once (DynamoDB's rule); adapters call this first, so callers may
/// count several things on one counter item in one transaction.
pub fn merge_adds(writes: Vec<Write>) -> Vec<Write> {
    let mut out: Vec<Write> = Vec::with_capacity(writes.len());
    for w in writes {
        if let (WriteOp::Add { deltas }, Condition::Always) = (&w.op, &w.cond) {
            if let Some(prev) = out.iter_mut().find(|p| p.pk == w.pk && p.sk == w.sk && p.cond == Condition::Always && matches!(p.op, WriteOp::Add { .. })) {
                if let WriteOp::Add { deltas: prev_deltas } = &mut prev.op {
                    for (f, by) in deltas {
                        match prev_deltas.iter_mut().find(|(pf, _)| pf == f) {
                            Some((_, total)) => *total += by,
                            None => prev_deltas.push((f.clone(), *by)),
                        }
                    }
                }
                continue;
            }
        }
        out.push(w);
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Write number `index` of the transaction found its condition false; nothing was written.
    #[error("condition failed on write {index} ({pk}/{sk})")]
    ConditionFailed { index: usize, pk: String, sk: String },
    #[error("state store unavailable: {source}")]
    Unavailable {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("state item {pk}/{sk} is corrupt: {cause}")]
    Corrupt { pk: String, sk: String, cause: String },
}

impl StateError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StateError::Unavailable { .. })
    }
}

#[async_trait]
pub trait StateStore: Send + Sync {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StateError>;
    /// Items of `pk` whose sort key starts with `sk_prefix`, ascending, after `start_after`.
    async fn query(&self, pk: &str, sk_prefix: &str, start_after: Option<&str>, limit: usize) -> Result<Vec<Item>, StateError>;
    /// Applies every write or none (a failed condition aborts the whole transaction). `Add` writes to one
    /// item are merged first ([`merge_adds`]); any other two writes to one item are refused.
    async fn transact(&self, writes: Vec<Write>) -> Result<(), StateError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_to_one_item_merge_and_other_writes_stay_in_order() {
        let w = merge_adds(vec![
            Write::add("r", "c", "a", 1),
            Write::put("r", "x", serde_json::json!({}), Condition::NotExists),
            Write::add("r", "c", "b", 2),
            Write::add("r", "c", "a", 3),
            Write::add("r", "d", "a", 1),
        ]);
        assert_eq!(w.len(), 3);
        assert_eq!(w[0].op, WriteOp::Add { deltas: vec![("a".into(), 4), ("b".into(), 2)] });
        assert_eq!(w[1].sk, "x");
        assert_eq!(w[2].sk, "d");
    }
}

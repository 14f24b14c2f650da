//! What the engine keeps in the state store: migration, run, run items, ticket mappings, leases — and their keys.

use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::model::{TargetId, TicketId};
use crate::ports::state::{Condition, Item, StateError, StateStore, Write};
use crate::window::{RunKind, Window};

pub fn mig_pk(migration: &str) -> String {
    format!("mig#{migration}")
}
pub const META: &str = "meta";
pub fn run_pk(run_id: &str) -> String {
    format!("run#{run_id}")
}
pub const COUNTERS: &str = "counters";
pub const REPORT: &str = "report";
pub fn item_sk(ticket: &TicketId, tag: &str) -> String {
    format!("item#{ticket}@{tag}")
}
pub fn map_pk(migration: &str) -> String {
    format!("map#{migration}")
}
pub fn map_sk(ticket: &TicketId) -> String {
    format!("t#{ticket}")
}
pub fn retry_sk(ticket: &TicketId) -> String {
    format!("retry#{ticket}")
}
pub fn run_index_sk(started_at: DateTime<Utc>, run_id: &str) -> String {
    format!("run#{}#{run_id}", started_at.format("%Y%m%dT%H%M%S%.3fZ"))
}
pub fn lease_pk(migration: &str) -> String {
    format!("lease#{migration}")
}
pub fn att_pk(migration: &str) -> String {
    format!("att#{migration}")
}

/// Per-migration state: the watermark and the open run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MigrationState {
    /// Every source change at or before this instant is in the target (W1), failed tickets excepted and listed.
    pub watermark: Option<DateTime<Utc>>,
    /// When the last successful full read started (W4).
    pub full_reference: Option<DateTime<Utc>>,
    pub open_run: Option<String>,
    pub last_run: Option<String>,
    pub runs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Open,
    /// Every ticket of the window was written or recorded as failed, and the watermark moved.
    Committed,
    /// Replaced by a restarted full migration before it finished; its watermark was never committed.
    Abandoned,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub migration: String,
    pub kind: RunKind,
    pub window: Window,
    pub status: RunStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Number of the next listing page to read; messages for earlier pages are stale.
    pub next_page: u64,
    /// Cursor for page `next_page` (None = start of the window).
    pub cursor: Option<String>,
    pub listing_complete: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    Pending,
    Done,
    Failed,
}

/// One ticket to carry in one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunItem {
    pub ticket_id: TicketId,
    pub listed_updated_at: Option<DateTime<Utc>>,
    pub deleted: bool,
    pub status: ItemStatus,
    pub outcome: Option<String>,
    pub cause: Option<String>,
    pub last_error: Option<String>,
}

/// A snapshot's version: the source's `updated_at` and, to order same-second snapshots, when we read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Version {
    pub updated_at: DateTime<Utc>,
    pub fetched_at: DateTime<Utc>,
}

impl Version {
    /// A snapshot is settled once it was read after its `updated_at` second (plus the clock-skew margin) was
    /// over: no further change can carry the same timestamp. Unsettled versions are re-read when listed again,
    /// so a second update within the same second is never mistaken for one already written.
    pub fn settled(&self, margin: chrono::Duration) -> bool {
        self.fetched_at >= self.updated_at + chrono::Duration::seconds(1) + margin
    }
}

/// Where a source ticket lives in the target, and how much of it is known to be there.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TicketMapping {
    pub target_id: Option<TargetId>,
    pub version: Option<Version>,
    pub fields_hash: Option<String>,
    /// Source comments known to be in the target (a prefix, in source order).
    pub comments_done: usize,
    /// A create was started and may have reached the target: look for the orphan before creating again.
    pub create_in_doubt: bool,
    /// An append was started and may have reached the target: recount before appending again.
    pub append_in_doubt: bool,
    pub deleted: bool,
}

/// A lease that keeps two workers from writing one ticket at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lease {
    pub owner: String,
    pub expires_at: DateTime<Utc>,
}

/// A ticket that failed permanently, to be retried by the next run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryEntry {
    pub ticket_id: TicketId,
    pub cause: String,
    pub run_id: String,
    pub failures: u64,
}

/// An attachment already staged in the blob store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagedAttachment {
    pub key: String,
    pub sha256: String,
    pub size: u64,
}

pub fn decode<T: DeserializeOwned>(item: &Item) -> Result<T, StateError> {
    serde_json::from_value(item.value.clone()).map_err(|e| StateError::Corrupt {
        pk: item.pk.clone(),
        sk: item.sk.clone(),
        cause: e.to_string(),
    })
}

pub fn encode<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// Reads and decodes one item, with its revision for a conditional write back.
pub async fn load<T: DeserializeOwned>(state: &dyn StateStore, pk: &str, sk: &str) -> Result<Option<(T, u64)>, StateError> {
    match state.get(pk, sk).await? {
        Some(item) => Ok(Some((decode(&item)?, item.rev))),
        None => Ok(None),
    }
}

/// A conditional put that expects the revision we read (or absence when we read nothing).
pub fn put_if<T: Serialize>(pk: &str, sk: &str, v: &T, read_rev: Option<u64>) -> Write {
    let cond = match read_rev {
        Some(r) => Condition::Rev(r),
        None => Condition::NotExists,
    };
    Write::put(pk, sk, encode(v), cond)
}

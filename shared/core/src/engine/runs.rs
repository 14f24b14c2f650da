//! Run bookkeeping on the state store: run items, counters, permanent failures, and the watermark commit (W1, W2).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::records::*;
use super::{Engine, EngineError};
use crate::model::TicketId;
use crate::ports::state::{Condition, StateError, Write};
use crate::window::RunKind;

/// Counter fields of a run (all kept with atomic adds, so duplicate deliveries never double-count:
/// every add rides in the same transaction as the once-only state change it counts).
pub mod counter {
    pub const OUTSTANDING: &str = "outstanding";
    pub const LISTED: &str = "listed";
    pub const SKIPPED: &str = "skipped_unchanged";
    pub const PAGES: &str = "pages";
    pub const CREATED: &str = "created";
    pub const UPDATED: &str = "updated";
    pub const UNCHANGED: &str = "unchanged";
    pub const DELETED: &str = "deleted";
    pub const FAILED: &str = "failed";
    pub const COMMENTS: &str = "comments_appended";
    pub const ATTACHMENTS: &str = "attachments";
    pub const ATTACHMENT_BYTES: &str = "attachment_bytes";
    pub const WARNINGS: &str = "warnings";
    pub const ADOPTED: &str = "adopted_orphans";
}

pub type Counters = BTreeMap<String, i64>;

pub async fn counters(engine: &Engine, run_id: &str) -> Result<Counters, StateError> {
    let Some(item) = engine.state.get(&run_pk(run_id), COUNTERS).await? else {
        return Ok(Counters::new());
    };
    let mut out = Counters::new();
    if let Some(obj) = item.value.as_object() {
        for (k, v) in obj {
            out.insert(k.clone(), v.as_i64().unwrap_or(0));
        }
    }
    Ok(out)
}

pub async fn load_run(engine: &Engine, run_id: &str) -> Result<Option<(RunRecord, u64)>, StateError> {
    load::<RunRecord>(engine.state.as_ref(), &run_pk(run_id), META).await
}

pub async fn load_migration(engine: &Engine) -> Result<(MigrationState, Option<u64>), StateError> {
    Ok(match load::<MigrationState>(engine.state.as_ref(), &mig_pk(&engine.migration), META).await? {
        Some((m, rev)) => (m, Some(rev)),
        None => (MigrationState::default(), None),
    })
}

/// What adding an item found.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemSlot {
    pub sk: String,
    pub ticket_id: TicketId,
    pub listed_updated_at: Option<DateTime<Utc>>,
    /// Still needs a fetch (newly added, or added by an earlier attempt that may not have enqueued it).
    pub needs_fetch: bool,
}

/// Adds items to a run once each (insert-if-absent), counting only the ones actually inserted.
pub async fn add_items(engine: &Engine, run_id: &str, items: Vec<(String, RunItem)>) -> Result<Vec<ItemSlot>, EngineError> {
    let pk = run_pk(run_id);
    let mut out = Vec::with_capacity(items.len());
    // Chunks stay under DynamoDB's 100-writes-per-transaction limit.
    for chunk in items.chunks(50) {
        loop {
            let mut writes = Vec::new();
            let mut fresh = Vec::new();
            let mut existing = Vec::new();
            for (sk, item) in chunk {
                match engine.state.get(&pk, sk).await? {
                    None => {
                        writes.push(expiring(engine, Write::put(&pk, sk, encode(item), Condition::NotExists)));
                        fresh.push((sk.clone(), item.clone()));
                    }
                    Some(found) => {
                        let found: RunItem = decode(&found)?;
                        existing.push((sk.clone(), found));
                    }
                }
            }
            if !writes.is_empty() {
                writes.push(Write::add(&pk, COUNTERS, counter::OUTSTANDING, writes.len() as i64));
            }
            match engine.state.transact(writes).await {
                Ok(()) => {
                    for (sk, item) in fresh {
                        out.push(ItemSlot { sk, ticket_id: item.ticket_id, listed_updated_at: item.listed_updated_at, needs_fetch: true });
                    }
                    for (sk, item) in existing {
                        let needs_fetch = item.status == ItemStatus::Pending;
                        out.push(ItemSlot { sk, ticket_id: item.ticket_id, listed_updated_at: item.listed_updated_at, needs_fetch });
                    }
                    break;
                }
                // Another delivery inserted one of them meanwhile: read again and insert the rest.
                Err(StateError::ConditionFailed { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(out)
}

/// A put that the store may drop after the retention period (run bookkeeping only).
fn expiring(engine: &Engine, mut w: Write) -> Write {
    if let crate::ports::state::WriteOp::Put { expires_at, .. } = &mut w.op {
        *expires_at = Some(engine.expires_at());
    }
    w
}

/// How a ticket of a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemEnd {
    Done { outcome: &'static str, adds: Vec<(&'static str, i64)>, warnings: Vec<String> },
    Failed { cause: String },
}

/// Marks a pending item done or failed exactly once, then commits the run if it was the last one.
/// Returns false when the item had already ended (a duplicate delivery).
pub async fn end_item(engine: &Engine, run_id: &str, sk: &str, ticket: &TicketId, end: ItemEnd) -> Result<bool, EngineError> {
    let pk = run_pk(run_id);
    loop {
        let Some((mut item, rev)) = load::<RunItem>(engine.state.as_ref(), &pk, sk).await? else {
            return Err(EngineError::BadMessage(format!("run {run_id} has no item {sk}")));
        };
        if item.status != ItemStatus::Pending {
            // Ended by an earlier delivery — which may have stopped (crash, Lambda timeout, a store error)
            // between ending the item and committing the run. Committing is idempotent, so try again here:
            // otherwise the last item's redelivery would leave the run open with nothing left to do.
            try_commit(engine, run_id).await?;
            return Ok(false);
        }
        let mut writes = Vec::new();
        match &end {
            ItemEnd::Done { outcome, adds, warnings } => {
                item.status = ItemStatus::Done;
                item.outcome = Some(outcome.to_string());
                if !warnings.is_empty() {
                    item.cause = Some(warnings.join("; "));
                    writes.push(Write::add(&pk, COUNTERS, counter::WARNINGS, warnings.len() as i64));
                }
                writes.push(Write::add(&pk, COUNTERS, outcome, 1));
                for (field, by) in adds {
                    if *by != 0 {
                        writes.push(Write::add(&pk, COUNTERS, field, *by));
                    }
                }
                // A ticket that made it clears any failure carried over from earlier runs.
                writes.push(Write::delete(mig_pk(&engine.migration), retry_sk(ticket), Condition::Always));
            }
            ItemEnd::Failed { cause } => {
                item.status = ItemStatus::Failed;
                item.cause = Some(cause.clone());
                writes.push(Write::add(&pk, COUNTERS, counter::FAILED, 1));
                let prior = load::<RetryEntry>(engine.state.as_ref(), &mig_pk(&engine.migration), &retry_sk(ticket)).await?;
                let failures = prior.as_ref().map(|(r, _)| r.failures).unwrap_or(0) + 1;
                let entry = RetryEntry { ticket_id: ticket.clone(), cause: cause.clone(), run_id: run_id.to_string(), failures };
                writes.push(Write::put(mig_pk(&engine.migration), retry_sk(ticket), encode(&entry), Condition::Always));
            }
        }
        writes.insert(0, expiring(engine, Write::put(&pk, sk, encode(&item), Condition::Rev(rev))));
        writes.push(Write::add(&pk, COUNTERS, counter::OUTSTANDING, -1));
        match engine.state.transact(writes).await {
            Ok(()) => break,
            Err(StateError::ConditionFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    try_commit(engine, run_id).await?;
    Ok(true)
}

/// Records a transient error on an item so the report can name it if the ticket later gives up.
pub async fn note_error(engine: &Engine, run_id: &str, sk: &str, error: &str) -> Result<(), EngineError> {
    let pk = run_pk(run_id);
    if let Some((mut item, rev)) = load::<RunItem>(engine.state.as_ref(), &pk, sk).await? {
        item.last_error = Some(error.to_string());
        // Losing this race only loses a diagnostic, never a ticket.
        let _ = engine.state.transact(vec![Write::put(&pk, sk, encode(&item), Condition::Rev(rev))]).await;
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitOutcome {
    pub run_id: String,
    pub watermark: DateTime<Utc>,
}

/// Commits the watermark once the listing is complete and no item is outstanding (W2). Safe to call from
/// every worker: the conditional writes let exactly one of them commit.
pub async fn try_commit(engine: &Engine, run_id: &str) -> Result<Option<CommitOutcome>, EngineError> {
    loop {
        let Some((mut run, run_rev)) = load_run(engine, run_id).await? else {
            return Ok(None);
        };
        if run.status != RunStatus::Open || !run.listing_complete {
            return Ok(None);
        }
        let c = counters(engine, run_id).await?;
        if c.get(counter::OUTSTANDING).copied().unwrap_or(0) > 0 {
            return Ok(None);
        }
        let (mut mig, mig_rev) = load_migration(engine).await?;
        if mig.open_run.as_deref() != Some(run_id) {
            return Ok(None);
        }
        let now = engine.now();
        // The watermark never moves back (W2); a full read sets the reference point of the deltas (W4).
        let watermark = match mig.watermark {
            Some(w) if w > run.window.end => w,
            _ => run.window.end,
        };
        mig.watermark = Some(watermark);
        if run.kind == RunKind::Full {
            mig.full_reference = Some(run.started_at);
        }
        mig.open_run = None;
        mig.last_run = Some(run_id.to_string());
        run.status = RunStatus::Committed;
        run.finished_at = Some(now);
        let writes = vec![
            Write::put(run_pk(run_id), META, encode(&run), Condition::Rev(run_rev)),
            put_if(&mig_pk(&engine.migration), META, &mig, mig_rev),
            Write::put(mig_pk(&engine.migration), run_index_sk(run.started_at, run_id), encode(&run), Condition::Always),
        ];
        crate::failpoint!(engine, "before_watermark_commit");
        match engine.state.transact(writes).await {
            Ok(()) => {
                crate::failpoint!(engine, "after_watermark_commit");
                tracing::info!(run = run_id, watermark = %watermark, "window committed");
                return Ok(Some(CommitOutcome { run_id: run_id.to_string(), watermark }));
            }
            Err(StateError::ConditionFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Every item of `pk` under `prefix`, decoded, paging through the store.
async fn query_all<T: serde::de::DeserializeOwned>(engine: &Engine, pk: &str, prefix: &str) -> Result<Vec<(String, T)>, StateError> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = engine.state.query(pk, prefix, after.as_deref(), 500).await?;
        if page.is_empty() {
            break;
        }
        after = page.last().map(|i| i.sk.clone());
        for it in &page {
            out.push((it.sk.clone(), decode::<T>(it)?));
        }
    }
    Ok(out)
}

/// Items of a run, paged through the whole run (for reports and the rerun path).
pub async fn items(engine: &Engine, run_id: &str) -> Result<Vec<(String, RunItem)>, StateError> {
    query_all(engine, &run_pk(run_id), "item#").await
}

/// Runs of the migration, oldest first.
pub async fn list_runs(engine: &Engine) -> Result<Vec<RunRecord>, StateError> {
    let mut out = Vec::new();
    for (_, rec) in query_all::<RunRecord>(engine, &mig_pk(&engine.migration), "run#").await? {
        // The index copy may be stale while a run is open; the run's own record is the truth.
        match load_run(engine, &rec.run_id).await? {
            Some((r, _)) => out.push(r),
            None => out.push(rec),
        }
    }
    Ok(out)
}

/// Tickets that failed permanently and wait for the next run.
pub async fn pending_retries(engine: &Engine) -> Result<Vec<RetryEntry>, StateError> {
    Ok(query_all(engine, &mig_pk(&engine.migration), "retry#").await?.into_iter().map(|(_, r)| r).collect())
}

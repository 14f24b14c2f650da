//! Use case `plan_window`: opens a full or delta run for a migration and enqueues its first work (W3, W4);
//! `ensure_progress` re-enqueues whatever an open run still needs (crash resume and the rerun path).

use std::time::Duration;

use super::messages::Message;
use super::records::*;
use super::runs::{self, load_migration, load_run};
use super::{Engine, EngineError};
use crate::ports::state::{Condition, StateError, Write};
use crate::window::RunKind;

#[derive(Debug, Clone, PartialEq)]
pub enum PlanOutcome {
    /// A new run was opened and its first messages enqueued.
    Started(RunRecord),
    /// A run is already open (crashed or still running): it is carried on instead of starting another.
    Resumed(RunRecord),
    /// The source cannot have published anything new since the watermark yet.
    UpToDate { watermark: chrono::DateTime<chrono::Utc> },
}

impl PlanOutcome {
    pub fn run(&self) -> Option<&RunRecord> {
        match self {
            PlanOutcome::Started(r) | PlanOutcome::Resumed(r) => Some(r),
            PlanOutcome::UpToDate { .. } => None,
        }
    }
}

/// Reads one page from each side before anything is planned or written, so bad credentials or a wrong
/// URL stop the run at once with a clear error instead of failing every ticket one by one.
pub async fn preflight(engine: &Engine) -> Result<(), EngineError> {
    if let Err(e) = engine.source.list_ticket_ids(None).await {
        return Err(EngineError::Refused(format!("cannot read the source ({}): {e}", engine.source.kind())));
    }
    if let Err(e) = engine.target.list_tickets(None).await {
        return Err(EngineError::Refused(format!("cannot read the target ({}): {e}", engine.target.kind())));
    }
    Ok(())
}

/// Opens the next run. `restart_full` abandons an open full run and starts the full read again, which moves
/// the reference point of later deltas to the new start (W4).
pub async fn plan_window(engine: &Engine, kind: RunKind, restart_full: bool) -> Result<PlanOutcome, EngineError> {
    loop {
        let (mut mig, mig_rev) = load_migration(engine).await?;
        let mut abandon: Option<(RunRecord, u64)> = None;
        if let Some(open) = mig.open_run.clone() {
            if let Some((run, rev)) = load_run(engine, &open).await? {
                if run.status == RunStatus::Open {
                    if kind == RunKind::Full && restart_full {
                        abandon = Some((run, rev));
                    } else {
                        // Its messages are still queued (the queues are durable); whoever drives it re-enqueues
                        // what is missing only if the queues drain without the run finishing.
                        return Ok(PlanOutcome::Resumed(run));
                    }
                }
            }
        }
        // Plan on the source's clock (see `HelpDeskSource::clock_offset`); record the run on ours.
        let now = engine.now();
        let source_now = now + engine.source.clock_offset().await?.unwrap_or_else(chrono::Duration::zero);
        let window = match kind {
            RunKind::Full => engine.settings.rules.full_window(source_now),
            RunKind::Delta => {
                let Some(wm) = mig.watermark else {
                    return Err(EngineError::Refused(format!(
                        "migration {} has no successful full migration yet: run `migrate full` first",
                        engine.migration
                    )));
                };
                match engine.settings.rules.delta_window(wm, source_now) {
                    Some(w) => w,
                    None => return Ok(PlanOutcome::UpToDate { watermark: wm }),
                }
            }
        };
        let run_id = format!("{}-{}-{}", kind.as_str(), now.format("%Y%m%dT%H%M%S"), &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let run = RunRecord {
            run_id: run_id.clone(),
            migration: engine.migration.clone(),
            kind,
            window,
            status: RunStatus::Open,
            started_at: now,
            finished_at: None,
            next_page: 0,
            cursor: None,
            listing_complete: false,
        };
        mig.open_run = Some(run_id.clone());
        mig.runs += 1;
        let mut writes = vec![
            put_if(&mig_pk(&engine.migration), META, &mig, mig_rev),
            Write::put(run_pk(&run_id), META, encode(&run), Condition::NotExists),
            Write::put(mig_pk(&engine.migration), run_index_sk(now, &run_id), encode(&run), Condition::NotExists),
        ];
        if let Some((mut old, rev)) = abandon {
            old.status = RunStatus::Abandoned;
            old.finished_at = Some(now);
            writes.push(Write::put(run_pk(&old.run_id), META, encode(&old), Condition::Rev(rev)));
            writes.push(Write::put(mig_pk(&engine.migration), run_index_sk(old.started_at, &old.run_id), encode(&old), Condition::Always));
        }
        match engine.state.transact(writes).await {
            Ok(()) => {}
            // Another scheduler opened a run at the same moment: take its outcome instead.
            Err(StateError::ConditionFailed { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
        tracing::info!(run = %run_id, kind = kind.as_str(), start = %window.start, end = %window.end, "window planned");
        add_retries(engine, &run_id).await?;
        engine
            .fetch_queue
            .send(&Message::FetchPage { migration: engine.migration.clone(), run_id: run_id.clone(), page: 0, cursor: None }.to_body(), Duration::ZERO)
            .await?;
        return Ok(PlanOutcome::Started(run));
    }
}

/// Carries tickets that failed in earlier runs into this one (W2: retried by the next run), once per run.
async fn add_retries(engine: &Engine, run_id: &str) -> Result<(), EngineError> {
    let retries = runs::pending_retries(engine).await?;
    let items: Vec<(String, RunItem)> = retries
        .into_iter()
        .map(|r| {
            (
                item_sk(&r.ticket_id, "retry"),
                RunItem {
                    ticket_id: r.ticket_id,
                    listed_updated_at: None,
                    deleted: false,
                    status: ItemStatus::Pending,
                    outcome: None,
                    cause: None,
                    last_error: Some(r.cause),
                },
            )
        })
        .collect();
    let slots = runs::add_items(engine, run_id, items).await?;
    enqueue_fetches(engine, run_id, slots.iter().filter(|s| s.needs_fetch)).await?;
    // Record that retries were added, so a resumed run does not add this run's own new failures again.
    engine
        .state
        .transact(vec![Write::put(run_pk(run_id), "retries_added", serde_json::json!({ "at": engine.now() }), Condition::Always)])
        .await?;
    Ok(())
}

pub(crate) async fn enqueue_fetches<'a>(engine: &Engine, run_id: &str, slots: impl Iterator<Item = &'a runs::ItemSlot>) -> Result<(), EngineError> {
    let bodies: Vec<String> = slots
        .map(|s| {
            Message::FetchTicket {
                migration: engine.migration.clone(),
                run_id: run_id.to_string(),
                item: s.sk.clone(),
                ticket_id: s.ticket_id.clone(),
                listed_updated_at: s.listed_updated_at,
            }
            .to_body()
        })
        .collect();
    for chunk in bodies.chunks(10) {
        engine.fetch_queue.send_batch(chunk).await?;
    }
    Ok(())
}

/// Re-enqueues what an open run still needs: its next listing page and a fetch for every pending item.
/// Duplicates of messages still in flight are harmless — every step is idempotent.
pub async fn ensure_progress(engine: &Engine, run_id: &str) -> Result<(), EngineError> {
    let Some((run, _)) = load_run(engine, run_id).await? else {
        return Err(EngineError::BadMessage(format!("no run {run_id}")));
    };
    if run.status != RunStatus::Open {
        return Ok(());
    }
    if engine.state.get(&run_pk(run_id), "retries_added").await?.is_none() {
        add_retries(engine, run_id).await?;
    }
    if !run.listing_complete {
        engine
            .fetch_queue
            .send(
                &Message::FetchPage { migration: engine.migration.clone(), run_id: run_id.to_string(), page: run.next_page, cursor: run.cursor.clone() }
                    .to_body(),
                Duration::ZERO,
            )
            .await?;
    }
    let pending: Vec<runs::ItemSlot> = runs::items(engine, run_id)
        .await?
        .into_iter()
        .filter(|(_, it)| it.status == ItemStatus::Pending)
        .map(|(sk, it)| runs::ItemSlot { sk, ticket_id: it.ticket_id, listed_updated_at: it.listed_updated_at, needs_fetch: true })
        .collect();
    enqueue_fetches(engine, run_id, pending.iter()).await?;
    runs::try_commit(engine, run_id).await?;
    Ok(())
}

//! Use cases `fetch_page` (read one listing page, add its tickets to the run) and `fetch_ticket` (read a
//! ticket's snapshot, stage it and its attachments in the blob store, enqueue the write).

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::messages::Message;
use super::plan::enqueue_fetches;
use super::records::*;
use super::runs::{self, counter, load_run};
use super::{Engine, EngineError};
use crate::model::{Ticket, TicketId};
use crate::ports::state::{Condition, StateError, Write};
use crate::ports::SourceError;

/// What a handler did with a message; the runner and the Lambda handlers ack or retry from this.
#[derive(Debug, Clone, PartialEq)]
pub enum Handled {
    /// Work done (or already done by another delivery): delete the message.
    Done(String),
    /// The message belongs to a finished run or an earlier step: delete it.
    Stale(String),
}

/// Reads listing page `page` of the run's window (idempotent; see the module docs of `records`).
pub async fn fetch_page(engine: &Engine, run_id: &str, page: u64, cursor: Option<&str>) -> Result<Handled, EngineError> {
    let Some((run, _)) = load_run(engine, run_id).await? else {
        return Ok(Handled::Stale(format!("run {run_id} unknown")));
    };
    if run.status != RunStatus::Open || run.listing_complete || page < run.next_page {
        if run.status == RunStatus::Open && run.listing_complete {
            // The delivery that recorded the last page may have stopped before its commit attempt.
            runs::try_commit(engine, run_id).await?;
        }
        return Ok(Handled::Stale(format!("page {page} of run {run_id} already read")));
    }
    if page > run.next_page {
        // The previous page's record has not landed yet (its next-page message was sent first): come back.
        return Err(EngineError::Busy(format!("page {page} of run {run_id} arrived before page {}", run.next_page)));
    }
    let listed = engine.source.changes(&run.window, cursor).await?;
    crate::failpoint!(engine, "after_page_read");
    let mut seen = HashSet::new();
    let mut items = Vec::new();
    let mut in_window = 0i64;
    let mut skipped = 0i64;
    for change in listed.changes {
        if !run.window.contains(change.updated_at) {
            continue;
        }
        // A page that repeats a record, or a ticket listed twice at one version, is one item.
        if !seen.insert((change.ticket_id.clone(), change.updated_at)) {
            continue;
        }
        in_window += 1;
        // A ticket carried over as a retry is already in this run and will be read at its latest state.
        let retrying = engine.state.get(&run_pk(run_id), &item_sk(&change.ticket_id, "retry")).await?.is_some();
        if retrying || already_written(engine, &change.ticket_id, change.updated_at, change.deleted).await? {
            skipped += 1;
            continue;
        }
        let tag = change.updated_at.timestamp().to_string();
        items.push((
            item_sk(&change.ticket_id, &tag),
            RunItem {
                ticket_id: change.ticket_id,
                listed_updated_at: Some(change.updated_at),
                deleted: change.deleted,
                status: ItemStatus::Pending,
                outcome: None,
                cause: None,
                last_error: None,
            },
        ));
    }
    let slots = runs::add_items(engine, run_id, items).await?;
    enqueue_fetches(engine, run_id, slots.iter().filter(|s| s.needs_fetch)).await?;
    // The next page is enqueued before this one is recorded, so a crash in between repeats this page
    // (harmless) rather than losing the rest of the listing.
    if let Some(next) = &listed.next_cursor {
        engine
            .fetch_queue
            .send(
                &Message::FetchPage { migration: engine.migration.clone(), run_id: run_id.to_string(), page: page + 1, cursor: Some(next.clone()) }
                    .to_body(),
                Duration::ZERO,
            )
            .await?;
    }
    let Some((mut run, rev)) = load_run(engine, run_id).await? else {
        return Ok(Handled::Stale(format!("run {run_id} vanished")));
    };
    if run.next_page != page || run.status != RunStatus::Open {
        return Ok(Handled::Stale(format!("page {page} of run {run_id} recorded by another delivery")));
    }
    run.next_page = page + 1;
    run.cursor = listed.next_cursor.clone();
    run.listing_complete = listed.next_cursor.is_none();
    let pk = run_pk(run_id);
    let writes = vec![
        Write::put(&pk, META, encode(&run), Condition::Rev(rev)),
        Write::add(&pk, COUNTERS, counter::LISTED, in_window),
        Write::add(&pk, COUNTERS, counter::SKIPPED, skipped),
        Write::add(&pk, COUNTERS, counter::PAGES, 1),
    ];
    match engine.state.transact(writes).await {
        Ok(()) => {}
        Err(StateError::ConditionFailed { .. }) => return Ok(Handled::Stale(format!("page {page} of run {run_id} recorded by another delivery"))),
        Err(e) => return Err(e.into()),
    }
    if run.listing_complete {
        runs::try_commit(engine, run_id).await?;
    }
    Ok(Handled::Done(format!("page {page} of run {run_id}: {in_window} changes, {skipped} already in the target")))
}

/// True when the target already holds this version, read after its second was over (see `Version::settled`).
async fn already_written(engine: &Engine, ticket: &TicketId, updated_at: chrono::DateTime<chrono::Utc>, deleted: bool) -> Result<bool, EngineError> {
    let Some((m, _)) = load::<TicketMapping>(engine.state.as_ref(), &map_pk(&engine.migration), &map_sk(ticket)).await? else {
        // Never migrated and already deleted: nothing to carry.
        return Ok(deleted);
    };
    if deleted {
        return Ok(m.deleted || m.target_id.is_none());
    }
    let margin = chrono::Duration::from_std(engine.settings.clock_skew_margin).unwrap_or_default();
    Ok(match m.version {
        Some(v) => v.updated_at >= updated_at && v.settled(margin) && !m.create_in_doubt && !m.append_in_doubt,
        None => false,
    })
}

/// A ticket snapshot as staged for the writer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StagedTicket {
    pub ticket: Ticket,
    /// Attachments that could not be staged, with the reason (reported, never silently dropped).
    pub unavailable: Vec<(String, String)>,
}

pub fn attachment_key(sha256: &str) -> String {
    format!("attachments/{sha256}")
}

/// `Some(Stale)` when a ticket message belongs to a finished run or an item that already ended.
pub(crate) async fn item_is_stale(engine: &Engine, run_id: &str, item_sk: &str, ticket_id: &TicketId) -> Result<Option<Handled>, EngineError> {
    let Some((run, _)) = load_run(engine, run_id).await? else {
        return Ok(Some(Handled::Stale(format!("run {run_id} unknown"))));
    };
    if run.status != RunStatus::Open {
        return Ok(Some(Handled::Stale(format!("run {run_id} is over"))));
    }
    match load::<RunItem>(engine.state.as_ref(), &run_pk(run_id), item_sk).await? {
        Some((item, _)) if item.status == ItemStatus::Pending => {}
        Some(_) => {
            // The delivery that ended it may have stopped before its commit attempt (crash, Lambda timeout,
            // a store error): committing is idempotent, so try here, or the run could stay open with
            // nothing left to do.
            if run.listing_complete {
                runs::try_commit(engine, run_id).await?;
            }
            return Ok(Some(Handled::Stale(format!("ticket {ticket_id} of run {run_id} already ended"))));
        }
        None => return Err(EngineError::BadMessage(format!("run {run_id} has no item {item_sk}"))),
    }
    Ok(None)
}

/// Reads one ticket's current snapshot and stages it; the write is enqueued, never done here.
pub async fn fetch_ticket(engine: &Engine, run_id: &str, item_sk: &str, ticket_id: &TicketId, listed: Option<chrono::DateTime<chrono::Utc>>) -> Result<Handled, EngineError> {
    if let Some(stale) = item_is_stale(engine, run_id, item_sk, ticket_id).await? {
        return Ok(stale);
    }
    let fetched_at = engine.now();
    let snapshot = engine.source.ticket(ticket_id).await?;
    let (snapshot_key, version) = match snapshot {
        None => (None, Version { updated_at: listed.unwrap_or(fetched_at), fetched_at }),
        Some(mut ticket) => {
            if ticket.source_id != *ticket_id {
                return Err(SourceError::Malformed { record: format!("ticket {ticket_id}"), cause: format!("source answered with ticket {}", ticket.source_id) }.into());
            }
            let mut unavailable = Vec::new();
            for comment in ticket.comments.iter_mut() {
                for att in comment.attachments.iter_mut() {
                    match stage_attachment(engine, att).await {
                        Ok(staged) => att.sha256 = Some(staged.sha256),
                        Err(StageError::Retry(e)) => return Err(e),
                        Err(StageError::Skip(Unstageable(reason))) => {
                            att.sha256 = None;
                            unavailable.push((att.source_id.clone(), format!("attachment {} '{}' of comment {}: {reason}", att.source_id, att.file_name, comment.source_id)));
                        }
                    }
                }
            }
            let version = Version { updated_at: ticket.updated_at, fetched_at };
            let key = format!(
                "snapshots/{}/{}/{}-{}.json",
                engine.migration,
                ticket_id,
                fetched_at.timestamp_millis(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            );
            let staged = StagedTicket { ticket, unavailable };
            let body = serde_json::to_vec(&staged).map_err(|e| EngineError::BadMessage(e.to_string()))?;
            engine.blobs.put(&key, Bytes::from(body)).await?;
            crate::failpoint!(engine, "after_blob_staged");
            (Some(key), version)
        }
    };
    let msg = Message::WriteTicket {
        migration: engine.migration.clone(),
        run_id: run_id.to_string(),
        item: item_sk.to_string(),
        ticket_id: ticket_id.clone(),
        snapshot_key,
        version,
    };
    engine.write_queue.send(&msg.to_body(), Duration::ZERO).await?;
    Ok(Handled::Done(format!("ticket {ticket_id} staged")))
}

struct Unstageable(String);

/// Stages an attachment's bytes once per source attachment (content-addressed, so identical bytes are kept once).
async fn stage_attachment(engine: &Engine, att: &crate::model::Attachment) -> Result<StagedAttachment, StageError> {
    let pk = att_pk(&engine.migration);
    if let Some((staged, _)) = load::<StagedAttachment>(engine.state.as_ref(), &pk, &att.source_id).await.map_err(StageError::retry)? {
        if engine.blobs.exists(&staged.key).await.map_err(|e| StageError::Retry(e.into()))? {
            return Ok(staged);
        }
    }
    let limit = engine.settings.max_staged_attachment_bytes;
    if att.size > limit {
        return Err(Unstageable(format!("{} bytes, over the staging limit of {limit}", att.size)).into());
    }
    let stream = match engine.source.download(att).await {
        Ok(s) => s,
        Err(SourceError::Rejected { status, message, .. }) if status == 404 || status == 410 => {
            return Err(Unstageable(format!("the source no longer serves it (HTTP {status}: {message})")).into());
        }
        Err(e) => return Err(StageError::Retry(e.into())),
    };
    let info = match engine.blobs.put_content_addressed("attachments", stream, limit).await {
        Ok(i) => i,
        Err(crate::ports::BlobError::TooLarge { limit, .. }) => {
            return Err(Unstageable(format!("over the staging limit of {limit} bytes")).into());
        }
        Err(e) => return Err(StageError::Retry(e.into())),
    };
    let staged = StagedAttachment { key: info.key, sha256: info.sha256, size: info.size };
    engine
        .state
        .transact(vec![Write::put(&pk, &att.source_id, encode(&staged), Condition::Always)])
        .await
        .map_err(StageError::retry)?;
    Ok(staged)
}

enum StageError {
    Retry(EngineError),
    Skip(Unstageable),
}

impl StageError {
    fn retry(e: StateError) -> StageError {
        StageError::Retry(e.into())
    }
}

impl From<Unstageable> for StageError {
    fn from(u: Unstageable) -> Self {
        StageError::Skip(u)
    }
}

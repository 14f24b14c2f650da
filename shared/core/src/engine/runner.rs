//! Message dispatch shared by every host, and the embedded runner: worker tasks over the local queues that
//! drive one run to its commit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fetch::{self, Handled};
use super::messages::Message;
use super::records::RunStatus;
use super::runs::{self, counter, ItemEnd};
use super::{plan, write, Engine, EngineError};
use crate::ports::{ApiStats, Queue, Received};

/// What to do with a delivered message.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    /// Delete it: done, stale, or its ticket recorded as failed.
    Ack(String),
    /// Leave it to come back after `after` (a transient error): the redelivery counts as a receive, so a
    /// message that keeps failing reaches the dead-letter queue after the queue's maxReceiveCount.
    Retry { after: Duration, error: String },
    /// Send `body` (this message, its deferral counted) to the same queue with a delay of `after`, then delete
    /// this copy. For work that is fine but must wait its turn — another worker holds the ticket's lease, an
    /// earlier listing page is still being recorded. Waiting by redelivery would count a receive each time
    /// and push healthy work to the dead-letter queue (maxReceiveCount is 5 on AWS); a fresh copy starts
    /// with a receive count of 0. Hosts fall back to a retry when the send fails.
    Defer { after: Duration, body: String, reason: String },
}

/// How many times one message is deferred before its waits count as receives again (then it can reach the
/// dead-letter queue). With [`defer_delay`] that is about 50 minutes of waiting: far beyond any lease or
/// page record, so only work whose predecessor is itself stuck (say, in the dead-letter queue) gets there.
pub const MAX_DEFERRALS: u32 = 60;

/// The field a deferred copy carries its deferral count in (next to the message's own fields; readers of
/// [`Message`] ignore it).
const DEFERRALS: &str = "deferrals";

fn deferrals_of(body: &str) -> u32 {
    serde_json::from_str::<serde_json::Value>(body).ok().and_then(|v| v.get(DEFERRALS)?.as_u64()).map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX))
}

fn with_deferrals(body: &str, n: u32) -> Option<String> {
    let mut v: serde_json::Value = serde_json::from_str(body).ok()?;
    v.as_object_mut()?.insert(DEFERRALS.to_string(), serde_json::Value::from(n));
    Some(v.to_string())
}

/// The wait before the `n`th deferred copy comes back: 0.5 s doubling to 60 s. Short first waits because
/// most contention (a duplicate delivery, a page being recorded) clears within a second.
pub fn defer_delay(n: u32) -> Duration {
    let ms = 500u64.saturating_mul(1u64 << n.min(7));
    Duration::from_millis(ms.min(60_000))
}

/// A [`Disposition::Defer`] of `body` for `reason`, or a plain retry once the message has been deferred
/// [`MAX_DEFERRALS`] times.
fn defer(body: &str, reason: String, receive_count: u32) -> Disposition {
    let n = deferrals_of(body);
    match with_deferrals(body, n + 1) {
        Some(next) if n < MAX_DEFERRALS => Disposition::Defer { after: defer_delay(n), body: next, reason },
        _ => Disposition::Retry { after: backoff(receive_count), error: reason },
    }
}

/// Handles one message body. A ticket whose error is permanent — or transient but still failing after
/// `max_attempts` deliveries — is recorded as failed with its cause (W2): reported, retried by the next run,
/// and never blocking this one.
pub async fn handle_message(engine: &Engine, body: &str, receive_count: u32) -> Disposition {
    let msg = match Message::from_body(body) {
        Ok(m) => m,
        Err(e) => return Disposition::Ack(format!("dropped a malformed message ({e})")),
    };
    if receive_count > 1 {
        // Counted for the report: redeliveries show work outlasting its visibility timeout, or crashes.
        let pk = super::records::run_pk(msg.run_id());
        let _ = engine.state.transact(vec![crate::ports::state::Write::add(&pk, super::records::COUNTERS, "redeliveries", 1)]).await;
    }
    let disposition = handle_parsed(engine, &msg, body, receive_count).await;
    if let Disposition::Defer { .. } = disposition {
        // Counted for the report: deferrals show contention (duplicate deliveries, concurrent writers).
        let pk = super::records::run_pk(msg.run_id());
        let _ = engine.state.transact(vec![crate::ports::state::Write::add(&pk, super::records::COUNTERS, "deferred", 1)]).await;
    }
    disposition
}

async fn handle_parsed(engine: &Engine, msg: &Message, body: &str, receive_count: u32) -> Disposition {
    let result = match msg {
        Message::FetchPage { run_id, page, cursor, .. } => fetch::fetch_page(engine, run_id, *page, cursor.as_deref()).await,
        Message::FetchTicket { run_id, item, ticket_id, listed_updated_at, .. } => {
            fetch::fetch_ticket(engine, run_id, item, ticket_id, *listed_updated_at).await
        }
        Message::WriteTicket { run_id, item, ticket_id, snapshot_key, version, .. } => {
            write::write_ticket(engine, run_id, item, ticket_id, snapshot_key.as_deref(), *version).await
        }
    };
    match result {
        Ok(Handled::Done(s)) | Ok(Handled::Stale(s)) => Disposition::Ack(s),
        Err(e) => {
            let error = e.to_string();
            let ticket_item = match msg {
                Message::FetchTicket { run_id, item, ticket_id, .. } | Message::WriteTicket { run_id, item, ticket_id, .. } => {
                    Some((run_id.clone(), item.clone(), ticket_id.clone()))
                }
                Message::FetchPage { .. } => None,
            };
            let busy = matches!(e, EngineError::Busy(_));
            let give_up = !e.is_retryable() || (!busy && receive_count >= engine.settings.max_attempts);
            match ticket_item {
                Some((run_id, item, ticket_id)) if give_up => {
                    let cause = if e.is_retryable() { format!("gave up after {receive_count} attempts: {error}") } else { error.clone() };
                    tracing::warn!(ticket = %ticket_id, run = %run_id, cause = %cause, "ticket failed");
                    match runs::end_item(engine, &run_id, &item, &ticket_id, ItemEnd::Failed { cause }).await {
                        Ok(_) => Disposition::Ack(format!("ticket {ticket_id} recorded as failed")),
                        Err(e2) => Disposition::Retry { after: backoff(receive_count), error: format!("{error}; recording the failure: {e2}") },
                    }
                }
                Some(_) if busy => defer(body, error, receive_count),
                Some((run_id, item, _)) => {
                    let _ = runs::note_error(engine, &run_id, &item, &error).await;
                    Disposition::Retry { after: backoff(receive_count), error }
                }
                None if !e.is_retryable() => {
                    // A listing page that can never be read: keep it for the dead-letter queue and the operator.
                    tracing::error!(message = %msg.describe(), error = %error, "listing page failed permanently");
                    Disposition::Retry { after: backoff(receive_count), error }
                }
                None if busy => defer(body, error, receive_count),
                None => Disposition::Retry { after: backoff(receive_count), error },
            }
        }
    }
}

fn backoff(receive_count: u32) -> Duration {
    let ms = 250u64.saturating_mul(1u64 << receive_count.min(6));
    Duration::from_millis(ms.min(10_000))
}

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub workers: usize,
    pub visibility: Duration,
    /// How long queues may stay empty while the run is open before its work is re-enqueued.
    pub stall_after: Duration,
    /// How many re-enqueues without progress before the run is declared stuck.
    pub max_stalls: u32,
    /// Extend a message's visibility while a worker is still on it, so slow work (a large attachment, a
    /// throttled help desk) is not delivered to a second worker or pushed to the dead-letter queue.
    pub heartbeat: bool,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig { workers: 8, visibility: Duration::from_secs(15), stall_after: Duration::from_secs(2), max_stalls: 3, heartbeat: true }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub listed: i64,
    pub outstanding: i64,
    pub written: i64,
    pub failed: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DriveOutcome {
    Committed,
    /// The run is still open and nothing moves: its remaining work sits in a dead-letter queue.
    Stuck { dead_letters: u64 },
}

/// Works the queues until `run_id` commits. Used by `migrate` and `schedule` in embedded mode.
pub async fn drive(engine: &Engine, run_id: &str, cfg: &RunnerConfig, on_progress: &(dyn Fn(&Progress) + Sync)) -> Result<DriveOutcome, EngineError> {
    let stop = Arc::new(AtomicBool::new(false));
    let src_before = engine.source.api_stats();
    let tgt_before = engine.target.api_stats();
    let mut handles = Vec::new();
    for w in 0..cfg.workers.max(1) {
        let mut e = engine.clone();
        // Each worker is its own lease owner, so two workers never write one ticket at once.
        e.instance = format!("{}-w{w}", engine.instance);
        let stop = stop.clone();
        let vis = cfg.visibility;
        let hb = cfg.heartbeat;
        handles.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let mut worked = work_one(&e, e.write_queue.as_ref(), vis, hb).await;
                worked |= work_one(&e, e.fetch_queue.as_ref(), vis, hb).await;
                if !worked {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    let outcome = monitor(engine, run_id, cfg, on_progress).await;
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.await;
    }
    record_api_stats(engine, run_id, src_before, tgt_before).await?;
    outcome
}

async fn monitor(engine: &Engine, run_id: &str, cfg: &RunnerConfig, on_progress: &(dyn Fn(&Progress) + Sync)) -> Result<DriveOutcome, EngineError> {
    let mut idle_since: Option<Instant> = None;
    let mut stalls = 0u32;
    let mut last_outstanding = i64::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let c = runs::counters(engine, run_id).await?;
        let g = |k: &str| c.get(k).copied().unwrap_or(0);
        let outstanding = g(counter::OUTSTANDING);
        on_progress(&Progress {
            listed: g(counter::LISTED),
            outstanding,
            written: g(counter::CREATED) + g(counter::UPDATED) + g(counter::UNCHANGED) + g(counter::DELETED),
            failed: g(counter::FAILED),
        });
        let Some((run, _)) = runs::load_run(engine, run_id).await? else {
            return Err(EngineError::BadMessage(format!("no run {run_id}")));
        };
        if run.status != RunStatus::Open {
            return Ok(DriveOutcome::Committed);
        }
        if outstanding < last_outstanding {
            stalls = 0;
            last_outstanding = outstanding;
        }
        let depth_f = engine.fetch_queue.depth().await?;
        let depth_w = engine.write_queue.depth().await?;
        if depth_f.total() + depth_w.total() > 0 {
            idle_since = None;
            continue;
        }
        let since = *idle_since.get_or_insert_with(Instant::now);
        if since.elapsed() < cfg.stall_after {
            continue;
        }
        idle_since = None;
        if stalls >= cfg.max_stalls {
            let dead = engine.fetch_queue.dead_letters(10_000).await?.len() + engine.write_queue.dead_letters(10_000).await?.len();
            return Ok(DriveOutcome::Stuck { dead_letters: dead as u64 });
        }
        stalls += 1;
        tracing::info!(run = run_id, "queues drained but the run is open: re-enqueueing its remaining work");
        plan::ensure_progress(engine, run_id).await?;
    }
}

async fn work_one(engine: &Engine, queue: &dyn Queue, visibility: Duration, heartbeat: bool) -> bool {
    let batch: Vec<Received> = match queue.receive(1, visibility, Duration::ZERO).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(queue = queue.name(), error = %e, "receive failed");
            return false;
        }
    };
    let worked = !batch.is_empty();
    for m in batch {
        let handled = handle_message(engine, &m.body, m.receive_count);
        let disposition = if heartbeat {
            // Every half visibility, push the message's return further out while the work goes on.
            let mut handled = std::pin::pin!(handled);
            let mut tick = tokio::time::interval(visibility / 2);
            tick.tick().await;
            loop {
                tokio::select! {
                    d = &mut handled => break d,
                    _ = tick.tick() => {
                        let _ = queue.change_visibility(&m.receipt, visibility).await;
                    }
                }
            }
        } else {
            handled.await
        };
        match disposition {
            Disposition::Ack(what) => {
                tracing::debug!(what = %what, "done");
                if let Err(e) = queue.delete(&m.receipt).await {
                    tracing::warn!(queue = queue.name(), error = %e, "delete failed; the message will be delivered again");
                }
            }
            Disposition::Retry { after, error } => {
                tracing::debug!(error = %error, "will retry");
                let _ = queue.change_visibility(&m.receipt, after).await;
            }
            Disposition::Defer { after, body, reason } => {
                tracing::debug!(reason = %reason, "deferred");
                match queue.send(&body, after).await {
                    Ok(()) => {
                        if let Err(e) = queue.delete(&m.receipt).await {
                            tracing::warn!(queue = queue.name(), error = %e, "delete failed; the message will be delivered again");
                        }
                    }
                    // Not deferred: the original comes back after the same wait instead.
                    Err(_) => {
                        let _ = queue.change_visibility(&m.receipt, after).await;
                    }
                }
            }
        }
    }
    worked
}

/// Adds this process's API calls for the run to the run's counters (the report shows them per side).
pub async fn record_api_stats(engine: &Engine, run_id: &str, src_before: ApiStats, tgt_before: ApiStats) -> Result<(), EngineError> {
    let s = engine.source.api_stats().since(&src_before);
    let t = engine.target.api_stats().since(&tgt_before);
    let pk = super::records::run_pk(run_id);
    let w = |f: &str, v: u64| crate::ports::state::Write::add(&pk, super::records::COUNTERS, f, v as i64);
    engine
        .state
        .transact(vec![
            w("source_calls", s.calls),
            w("source_throttled", s.throttled),
            w("source_retries", s.retries),
            w("target_calls", t.calls),
            w("target_throttled", t.throttled),
            w("target_retries", t.retries),
        ])
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{"type":"fetch_page","migration":"m","run_id":"r","page":3,"cursor":null}"#;

    #[test]
    fn a_deferred_copy_counts_its_deferrals_and_still_reads_as_the_message() {
        let Disposition::Defer { body, after, .. } = defer(BODY, "busy".into(), 1) else { panic!("not deferred") };
        assert_eq!(deferrals_of(&body), 1);
        assert_eq!(after, defer_delay(0));
        assert_eq!(Message::from_body(&body).unwrap(), Message::from_body(BODY).unwrap());
        let Disposition::Defer { body, after, .. } = defer(&body, "busy".into(), 1) else { panic!("not deferred") };
        assert_eq!(deferrals_of(&body), 2);
        assert!(after > defer_delay(0));
    }

    #[test]
    fn deferral_waits_grow_to_a_minute_and_then_count_as_receives() {
        assert_eq!(defer_delay(0), Duration::from_millis(500));
        assert_eq!(defer_delay(30), Duration::from_secs(60));
        let total: Duration = (0..MAX_DEFERRALS).map(defer_delay).sum();
        assert!(total > Duration::from_secs(40 * 60), "deferrals give up too early: {total:?}");
        let worn = with_deferrals(BODY, MAX_DEFERRALS).unwrap();
        assert!(matches!(defer(&worn, "busy".into(), 4), Disposition::Retry { .. }));
    }
}

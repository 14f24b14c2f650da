//! Coalescing of concurrent ticket creates into Ticket Bulk Import jobs (`imports/tickets/create_many`).
//!
//! The engine creates one ticket per call (`HelpDeskTarget::create_ticket`), from several workers at once.
//! Each call hands its finished import body to the [`CreateBatcher`] and waits. The first body of a new batch
//! starts a timer (`create_batch_linger_ms`); the batch is sent when it holds [`MAX_BATCH`] tickets or when
//! the timer fires, whichever comes first. The answer is a background job, polled with
//! `GET /api/v2/job_statuses/{id}` until it is `completed` (or `failed`/`killed`); its `results` give each
//! ticket's id or its own error, by `index` in the request.
//!
//! Each caller gets its own outcome, classified as the single import's would be:
//! - a result with an `id`: created;
//! - a result with a validation `error` (`RecordInvalid`, `InvalidValue`, ...): [`TargetError::Rejected`]
//!   with the cause, for that ticket only;
//! - any other per-item error: retryable (the item was refused, so nothing was created);
//! - the request refused as a whole with a 4xx, or a 404 (nothing was processed): every ticket is imported on
//!   its own instead, so one bad ticket cannot fail the others;
//! - a lost answer, a 5xx, a job that never reports the ticket (failed, killed, expired, or still running at
//!   the deadline): [`TargetError::Unavailable`], the *in doubt* error the single import gives. The engine
//!   then looks for the ticket by its `external_id` before writing again (U1).
//!
//! One difference from the single import needs care: a job whose POST answer was lost may still be queued
//! when the engine looks for orphans, and would create the ticket after the look found nothing. The batcher
//! therefore remembers the source references of batches left in doubt, and `find_by_source_ref` keeps
//! looking for [`SETTLE`] before it reports such a ticket absent (see [`CreateBatcher::unsettled_for`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deltadesk_core::ports::TargetError;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::client::{Replay, ZendeskClient};
use super::lock;
use crate::http::ApiError;

/// Most tickets one `create_many` takes (Zendesk's documented limit).
pub(crate) const MAX_BATCH: usize = 100;
/// First job poll after the POST; later polls back off (doubling) to [`POLL_MAX`].
const POLL_FIRST: Duration = Duration::from_millis(100);
const POLL_MAX: Duration = Duration::from_secs(2);
/// How long a job may take before its tickets are reported in doubt. Under the engine's lease (120 s by
/// default), so no other worker takes a ticket over while its job is still being watched.
const JOB_DEADLINE: Duration = Duration::from_secs(60);
/// How long after a batch was left in doubt `find_by_source_ref` keeps looking for its tickets: time for a
/// job still queued at Zendesk to run (jobs normally finish within seconds).
pub(crate) const SETTLE: Duration = Duration::from_secs(15);

/// Why a ticket's create is in doubt or was not sent; the `source` of its [`TargetError`].
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum BatchError {
    #[error("the create_many request failed without an answer saying whether it was processed: {0}")]
    AnswerLost(String),
    #[error("create_many job {job} ended {status} without a result for this ticket")]
    NoResult { job: String, status: String },
    #[error("create_many job {job} was still {status} after {waited:?}")]
    Deadline { job: String, status: String, waited: Duration },
    #[error("polling create_many job {job} failed")]
    Poll {
        job: String,
        /// Shared: every ticket of the batch reports the same failure.
        #[source]
        source: Arc<ApiError>,
    },
    #[error("create_many job {job} refused this ticket: {error}: {details}")]
    ItemFailed { job: String, error: String, details: String },
    #[error("the batch was dropped before it was answered (the process is stopping)")]
    Abandoned,
}

/// One ticket waiting in a batch.
struct Item {
    /// The ticket object of the import body (what `POST imports/tickets` takes under `ticket`).
    ticket: Value,
    /// "import ticket 12 (dd:acme:12)": the start of each error's context.
    label: String,
    source_ref: String,
    reply: oneshot::Sender<Result<u64, TargetError>>,
}

struct Forming {
    generation: u64,
    items: Vec<Item>,
}

#[derive(Default)]
struct State {
    generation: u64,
    forming: Option<Forming>,
    /// Source references whose create was left in doubt, and since when.
    unsettled: HashMap<String, Instant>,
}

struct Shared {
    client: ZendeskClient,
    linger: Duration,
    state: Mutex<State>,
}

/// Collects concurrent creates into `create_many` jobs (see the module docs). Cheap to share.
#[derive(Clone)]
pub(crate) struct CreateBatcher(Arc<Shared>);

impl std::fmt::Debug for CreateBatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateBatcher").field("linger", &self.0.linger).finish()
    }
}

impl CreateBatcher {
    pub(crate) fn new(client: ZendeskClient, linger: Duration) -> Self {
        CreateBatcher(Arc::new(Shared { client, linger, state: Mutex::default() }))
    }

    /// Queues one ticket's import body and waits for its own outcome.
    pub(crate) async fn create(&self, source_ref: &str, label: String, ticket: Value) -> Result<u64, TargetError> {
        let (reply, answer) = oneshot::channel();
        let item = Item { ticket, label: label.clone(), source_ref: source_ref.to_string(), reply };
        let full = {
            let mut st = lock(&self.0.state);
            if st.forming.is_none() {
                st.generation += 1;
                let generation = st.generation;
                st.forming = Some(Forming { generation, items: Vec::new() });
                // The timer is its own task: a caller that is cancelled must not strand the others.
                let shared = self.0.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(shared.linger).await;
                    // Under pacing the request could not leave before its turn anyway: creates arriving until
                    // then join this batch instead of queueing their own (each batch also costs a job poll).
                    shared.client.until_paced_turn().await;
                    let items = {
                        let mut st = lock(&shared.state);
                        match &st.forming {
                            Some(f) if f.generation == generation => st.forming.take().map(|f| f.items),
                            _ => None,
                        }
                    };
                    if let Some(items) = items {
                        send(&shared, items).await;
                    }
                });
            }
            let forming = st.forming.as_mut().expect("a forming batch");
            forming.items.push(item);
            if forming.items.len() >= MAX_BATCH {
                st.forming.take().map(|f| f.items)
            } else {
                None
            }
        };
        if let Some(items) = full {
            let shared = self.0.clone();
            tokio::spawn(async move { send(&shared, items).await });
        }
        match answer.await {
            Ok(r) => r,
            // The sending task was dropped (runtime shutting down): the request may have gone out.
            Err(_) => Err(in_doubt(&label, BatchError::Abandoned)),
        }
    }

    /// How much longer a look-up of `source_ref` should keep looking: `Some` while a batch holding it was
    /// left in doubt less than [`SETTLE`] ago. Forgets references whose time is up.
    pub(crate) fn unsettled_for(&self, source_ref: &str) -> Option<Duration> {
        let mut st = lock(&self.0.state);
        let since = *st.unsettled.get(source_ref)?;
        match SETTLE.checked_sub(since.elapsed()) {
            Some(left) if !left.is_zero() => Some(left),
            _ => {
                st.unsettled.remove(source_ref);
                None
            }
        }
    }

    /// `source_ref` was found (or its create settled otherwise): no more waiting for it.
    pub(crate) fn settled(&self, source_ref: &str) {
        lock(&self.0.state).unsettled.remove(source_ref);
    }
}

fn in_doubt(label: &str, why: BatchError) -> TargetError {
    TargetError::Unavailable { context: label.to_string(), source: Box::new(why) }
}

/// Sends one batch, follows its job and answers every caller.
async fn send(shared: &Shared, items: Vec<Item>) {
    let client = &shared.client;
    let n = items.len();
    let context = format!("POST imports/tickets/create_many ({n} tickets)");
    let url = client.api_url("/api/v2/imports/tickets/create_many", "");
    let body = json!({"tickets": items.iter().map(|i| i.ticket.clone()).collect::<Vec<_>>()});
    // Only failures that prove nothing was processed (429, connection refused) are sent again here.
    let answer = client.send_json(&context, Method::POST, &url, Some(&body), Replay::NotProcessedOnly).await;
    let job = match answer {
        Ok(v) => v,
        Err(e @ (ApiError::Rejected { status: 400..=499, .. } | ApiError::NotFound { .. })) => {
            // Refused as a whole (or the account has no such endpoint), so nothing was created: import each
            // ticket on its own, so that each gets its own verdict (a bad ticket must not fail the batch it
            // happened to share).
            tracing::warn!(tickets = n, error = %e, "create_many refused: importing its tickets one by one");
            futures::future::join_all(items.into_iter().map(|i| async move {
                let r = import_one(client, &i.label, &i.ticket).await;
                let _ = i.reply.send(r);
            }))
            .await;
            return;
        }
        Err(e) => return answer_all(shared, items, |label| whole_batch_error(label, &e)),
    };
    let Some(status) = job.get("job_status").filter(|s| s.is_object()) else {
        return answer_all(shared, items, |label| in_doubt(label, BatchError::AnswerLost(format!("{context}: no job_status in the answer"))));
    };
    let Some(id) = status.get("id").and_then(Value::as_str).map(str::to_string) else {
        return answer_all(shared, items, |label| in_doubt(label, BatchError::AnswerLost(format!("{context}: no job_status.id in the answer"))));
    };
    let finished = match follow_job(client, &id, status.clone()).await {
        Ok(s) => s,
        Err(why) => return answer_all(shared, items, |label| in_doubt(label, why.clone())),
    };
    let job_state = finished.get("status").and_then(Value::as_str).unwrap_or("").to_string();
    let results = results_by_index(&finished);
    let mut left_in_doubt = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let outcome = match results.get(&index) {
            Some(r) => item_outcome(&id, &item.label, r),
            None => Err(in_doubt(&item.label, BatchError::NoResult { job: id.clone(), status: job_state.clone() })),
        };
        if matches!(outcome, Err(TargetError::Unavailable { .. })) {
            left_in_doubt.push(item.source_ref.clone());
        }
        let _ = item.reply.send(outcome);
    }
    remember_in_doubt(shared, left_in_doubt);
}

/// The error every ticket of a batch gets when the POST itself failed.
fn whole_batch_error(label: &str, e: &ApiError) -> TargetError {
    match e {
        // Not processed: retryable without doubt (the engine still checks, as after any failed create).
        ApiError::Throttled { retry_after, .. } => TargetError::Throttled { context: label.to_string(), retry_after: *retry_after },
        ApiError::Auth(m) => TargetError::Auth(m.clone()),
        other => in_doubt(label, BatchError::AnswerLost(other.to_string())),
    }
}

fn answer_all(shared: &Shared, items: Vec<Item>, error: impl Fn(&str) -> TargetError) {
    let mut doubt = Vec::new();
    for i in items {
        let e = error(&i.label);
        if matches!(e, TargetError::Unavailable { .. }) {
            doubt.push(i.source_ref.clone());
        }
        let _ = i.reply.send(Err(e));
    }
    remember_in_doubt(shared, doubt);
}

fn remember_in_doubt(shared: &Shared, refs: Vec<String>) {
    if refs.is_empty() {
        return;
    }
    let now = Instant::now();
    let mut st = lock(&shared.state);
    st.unsettled.retain(|_, since| since.elapsed() < SETTLE);
    for r in refs {
        st.unsettled.insert(r, now);
    }
}

/// Polls the job until it is finished; returns its last `job_status`.
async fn follow_job(client: &ZendeskClient, id: &str, mut status: Value) -> Result<Value, BatchError> {
    let started = Instant::now();
    let mut wait = POLL_FIRST;
    let context = format!("GET job_statuses/{id}");
    let url = client.api_url(&format!("/api/v2/job_statuses/{id}"), "");
    loop {
        let state = status.get("status").and_then(Value::as_str).unwrap_or("");
        match state {
            "completed" | "failed" | "killed" => return Ok(status),
            _ if started.elapsed() >= JOB_DEADLINE => {
                return Err(BatchError::Deadline { job: id.to_string(), status: state.to_string(), waited: started.elapsed() })
            }
            _ => {}
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(POLL_MAX);
        let v = client.get_json(&context, &url).await.map_err(|e| BatchError::Poll { job: id.to_string(), source: Arc::new(e) })?;
        match v.get("job_status").filter(|s| s.is_object()) {
            Some(s) => status = s.clone(),
            None => {
                return Err(BatchError::Poll {
                    job: id.to_string(),
                    source: Arc::new(ApiError::Malformed { record: context.clone(), cause: "no job_status in the answer".into() }),
                })
            }
        }
    }
}

/// The job's results keyed by the index of the ticket in the request (`index`, else the position).
fn results_by_index(job: &Value) -> HashMap<usize, Value> {
    let Some(results) = job.get("results").and_then(Value::as_array) else {
        return HashMap::new();
    };
    results
        .iter()
        .enumerate()
        .map(|(pos, r)| {
            let index = r.get("index").and_then(Value::as_u64).map(|i| i as usize).unwrap_or(pos);
            (index, r.clone())
        })
        .collect()
}

/// Per-item error codes that mean the ticket itself is invalid: retrying cannot help.
const VALIDATION_ERRORS: &[&str] = &["RecordInvalid", "InvalidValue", "RecordNotFound", "TicketCreateFailed", "DuplicateValue"];

fn item_outcome(job: &str, label: &str, r: &Value) -> Result<u64, TargetError> {
    let error = r.get("error").and_then(Value::as_str).filter(|e| !e.is_empty());
    let failed = error.is_some()
        || r.get("success").and_then(Value::as_bool) == Some(false)
        || r.get("status").and_then(Value::as_str).is_some_and(|s| s.eq_ignore_ascii_case("failed"));
    if !failed {
        if let Some(id) = r.get("id").and_then(Value::as_u64) {
            return Ok(id);
        }
        // A result that neither fails nor names a ticket: we cannot tell what happened.
        return Err(in_doubt(label, BatchError::NoResult { job: job.to_string(), status: format!("with a result without an id ({r})") }));
    }
    let error = error.unwrap_or("Failed").to_string();
    let details = match r.get("details") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    if VALIDATION_ERRORS.contains(&error.as_str()) {
        Err(TargetError::Rejected {
            context: format!("{label} in create_many job {job}"),
            status: 422,
            message: if details.is_empty() { error } else { format!("{error}: {details}") },
        })
    } else {
        // Refused for another reason (an internal error in the job): the item was not created, try again.
        Err(in_doubt(label, BatchError::ItemFailed { job: job.to_string(), error, details }))
    }
}

/// `POST imports/tickets` for one ticket: the path without batching, and the fallback of a refused batch.
pub(crate) async fn import_one(client: &ZendeskClient, context: &str, ticket: &Value) -> Result<u64, TargetError> {
    let url = client.api_url("/api/v2/imports/tickets", "");
    let v = client.send_json(context, Method::POST, &url, Some(&json!({ "ticket": ticket })), Replay::NotProcessedOnly).await?;
    v.get("ticket").and_then(|t| t.get("id")).and_then(Value::as_u64).ok_or_else(|| {
        TargetError::from(ApiError::Malformed { record: context.to_string(), cause: "no ticket.id in the answer".into() })
    })
}

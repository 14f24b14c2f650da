//! Tests of the create batcher (`batch.rs`) against a tiny in-process Zendesk: concurrent creates coalesced
//! into `imports/tickets/create_many`, job polling, per-ticket outcomes, and in-doubt answers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use deltadesk_core::model::{Role, Status, TargetId, Ticket, TicketId, User};
use deltadesk_core::ports::{HelpDeskTarget, TargetError};
use serde_json::{json, Value};

use super::{Zendesk, ZendeskConfig};

/// How the fake's jobs end.
#[derive(Clone, Copy, PartialEq)]
enum JobEnd {
    /// Every ticket created; results in reverse order (so only `index` can match them up).
    Completed,
    /// The ticket whose external_id ends in ":bad" fails validation, the others are created.
    OneInvalid,
    /// The job fails after creating only the first ticket.
    FailedAfterFirst,
    /// The POST is processed (the tickets appear after 600 ms) but its answer is lost.
    AnswerLost,
}

struct Fake {
    end: JobEnd,
    /// Every create_many body, with when it arrived.
    batches: Mutex<Vec<(Instant, Vec<Value>)>>,
    singles: AtomicU32,
    polls: AtomicU32,
    user_posts: AtomicU32,
    field_gets: AtomicU32,
    /// Job id -> (results, polls left before it completes).
    jobs: Mutex<HashMap<String, (Value, &'static str, u32)>>,
    /// external_id -> ticket id, and from when it is listed.
    created: Mutex<HashMap<String, (u64, Instant)>>,
    next_id: AtomicU32,
}

fn lost_answer() -> Response {
    // Headers, then a body that fails: the connection is reset where the answer should be.
    Response::new(Body::from_stream(futures::stream::once(async {
        Err::<bytes::Bytes, std::io::Error>(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset"))
    })))
}

async fn create_many(State(st): State<Arc<Fake>>, Json(body): Json<Value>) -> Response {
    let tickets = body["tickets"].as_array().cloned().unwrap_or_default();
    st.batches.lock().unwrap().push((Instant::now(), tickets.clone()));
    let mut results = Vec::new();
    for (index, t) in tickets.iter().enumerate() {
        let ext = t["external_id"].as_str().unwrap_or_default().to_string();
        let fail = match st.end {
            JobEnd::OneInvalid => ext.ends_with(":bad"),
            JobEnd::FailedAfterFirst => index > 0,
            _ => false,
        };
        if fail {
            if st.end == JobEnd::OneInvalid {
                results.push(json!({"index": index, "status": "Failed", "error": "RecordInvalid", "details": "Requester is suspended"}));
            }
            continue;
        }
        let id = 5000 + u64::from(st.next_id.fetch_add(1, Ordering::SeqCst));
        let visible = if st.end == JobEnd::AnswerLost { Instant::now() + Duration::from_millis(600) } else { Instant::now() };
        st.created.lock().unwrap().insert(ext, (id, visible));
        results.push(json!({"index": index, "id": id, "status": "Created"}));
    }
    if st.end == JobEnd::AnswerLost {
        return lost_answer();
    }
    results.reverse();
    let job = format!("job{}", st.batches.lock().unwrap().len());
    let end = if st.end == JobEnd::FailedAfterFirst { "failed" } else { "completed" };
    st.jobs.lock().unwrap().insert(job.clone(), (Value::Array(results), end, 1));
    Json(json!({"job_status": {"id": job, "status": "queued", "total": tickets.len(), "progress": 0}})).into_response()
}

async fn show_job(State(st): State<Arc<Fake>>, Path(id): Path<String>) -> Response {
    st.polls.fetch_add(1, Ordering::SeqCst);
    let mut jobs = st.jobs.lock().unwrap();
    let Some((results, end, polls_left)) = jobs.get_mut(&id) else {
        return (StatusCode::NOT_FOUND, Json(json!({"error": "RecordNotFound"}))).into_response();
    };
    if *polls_left > 0 {
        // The first poll finds the job still working, as a real job usually is.
        *polls_left -= 1;
        return Json(json!({"job_status": {"id": id, "status": "working", "progress": 0}})).into_response();
    }
    Json(json!({"job_status": {"id": id, "status": *end, "results": results.clone()}})).into_response()
}

fn fake(st: Arc<Fake>) -> Router {
    Router::new()
        .route("/api/v2/imports/tickets/create_many", post(create_many))
        .route("/api/v2/job_statuses/{id}", get(show_job))
        .route(
            "/api/v2/imports/tickets",
            post(|State(st): State<Arc<Fake>>| async move {
                st.singles.fetch_add(1, Ordering::SeqCst);
                (StatusCode::CREATED, Json(json!({"ticket": {"id": 42}})))
            }),
        )
        .route(
            "/api/v2/users/create_or_update",
            post(|State(st): State<Arc<Fake>>| async move {
                st.user_posts.fetch_add(1, Ordering::SeqCst);
                // Slow enough that concurrent callers would all miss the cache without single-flight.
                tokio::time::sleep(Duration::from_millis(50)).await;
                Json(json!({"user": {"id": 7}}))
            }),
        )
        .route(
            "/api/v2/ticket_fields",
            get(|State(st): State<Arc<Fake>>| async move {
                st.field_gets.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                Json(json!({"ticket_fields": []}))
            }),
        )
        .route(
            "/api/v2/tickets",
            get(|RawQuery(q): RawQuery, State(st): State<Arc<Fake>>| async move {
                let q = q.unwrap_or_default();
                let ext = q.split('&').find_map(|kv| kv.strip_prefix("external_id=")).unwrap_or_default().replace("%3A", ":");
                let now = Instant::now();
                let tickets: Vec<Value> = st
                    .created
                    .lock()
                    .unwrap()
                    .get(&ext)
                    .filter(|(_, visible)| *visible <= now)
                    .map(|(id, _)| json!({"id": id, "external_id": ext}))
                    .into_iter()
                    .collect();
                Json(json!({"tickets": tickets, "meta": {"has_more": false}}))
            }),
        )
        .with_state(st)
}

async fn account(end: JobEnd, linger_ms: u64) -> (Arc<Fake>, Arc<Zendesk>) {
    account_paced(end, linger_ms, None).await
}

async fn account_paced(end: JobEnd, linger_ms: u64, requests_per_minute: Option<u32>) -> (Arc<Fake>, Arc<Zendesk>) {
    let st = Arc::new(Fake {
        end,
        batches: Mutex::default(),
        singles: AtomicU32::new(0),
        polls: AtomicU32::new(0),
        user_posts: AtomicU32::new(0),
        field_gets: AtomicU32::new(0),
        jobs: Mutex::default(),
        created: Mutex::default(),
        next_id: AtomicU32::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = fake(st.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let mut cfg = ZendeskConfig::new(format!("http://{addr}"));
    cfg.create_batch_linger_ms = linger_ms;
    cfg.timeout_secs = 5;
    cfg.requests_per_minute = requests_per_minute;
    (st, Arc::new(Zendesk::with_token(cfg, None).unwrap()))
}

fn ticket(n: usize) -> Ticket {
    let at = chrono::DateTime::parse_from_rfc3339("2026-03-10T14:00:00Z").unwrap().with_timezone(&chrono::Utc);
    Ticket {
        source_id: TicketId(n.to_string()),
        subject: format!("ticket {n}"),
        status: Status::Open,
        priority: None,
        ticket_type: None,
        requester: Some(User { source_id: "7".into(), email: "req@example.com".into(), name: "Req".into(), role: Role::EndUser }),
        assignee: None,
        group: None,
        organization: None,
        tags: vec![],
        custom_fields: Default::default(),
        created_at: at,
        updated_at: at,
        comments: vec![],
    }
}

/// Creates tickets `refs` at once, as concurrent engine workers do; outcomes in the order of `refs`.
async fn create_all(zd: &Arc<Zendesk>, refs: &[String]) -> Vec<Result<TargetId, TargetError>> {
    let calls = refs.iter().enumerate().map(|(n, r)| {
        let (zd, r) = (zd.clone(), r.clone());
        tokio::spawn(async move { zd.create_ticket(&r, &ticket(n), &[]).await })
    });
    futures::future::join_all(calls).await.into_iter().map(|j| j.unwrap()).collect()
}

fn refs(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("dd:m:{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_share_one_create_many_job_and_each_gets_its_own_id() {
    let (st, zd) = account(JobEnd::Completed, 200).await;
    let refs = refs(5);
    let out = create_all(&zd, &refs).await;
    let batches = st.batches.lock().unwrap().clone();
    assert_eq!(batches.len(), 1, "one create_many for five concurrent creates");
    assert_eq!(batches[0].1.len(), 5);
    assert_eq!(st.singles.load(Ordering::SeqCst), 0, "no single imports");
    // One poll found it working, the next completed.
    assert_eq!(st.polls.load(Ordering::SeqCst), 2);
    // Results came back reversed: each caller still gets the id the job gave its own ticket.
    let created = st.created.lock().unwrap().clone();
    for (r, o) in refs.iter().zip(out) {
        assert_eq!(o.unwrap(), TargetId(created[r].0.to_string()), "{r}");
    }
    // The five share one requester: looked up once, and the field list read once, though all five asked at once.
    assert_eq!(st.user_posts.load(Ordering::SeqCst), 1);
    assert_eq!(st.field_gets.load(Ordering::SeqCst), 1);
    // The comments travel inline, the reference in external_id.
    let sent: Vec<&str> = batches[0].1.iter().map(|t| t["external_id"].as_str().unwrap()).collect();
    assert_eq!(sent.len(), 5);
    assert!(batches[0].1.iter().all(|t| t["comments"].is_array()));
}

/// Under pacing a batch cannot leave before its turn anyway, so creates that arrive while it waits for
/// the turn join it rather than queueing batches of their own (each batch also costs a job poll).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_pacing_creates_arriving_before_the_batchs_turn_join_it() {
    // One request per 400 ms; the linger (20 ms) is far shorter.
    let (st, zd) = account_paced(JobEnd::Completed, 20, Some(150)).await;
    // Warm the user and field caches with one create, so the next ones go straight to the batcher.
    zd.create_ticket("dd:m:warm", &ticket(99), &[]).await.expect("warm-up create");
    st.batches.lock().unwrap().clear();
    let refs = refs(6);
    let calls = refs.iter().enumerate().map(|(n, r)| {
        let (zd, r) = (zd.clone(), r.clone());
        tokio::spawn(async move {
            // One new create every 100 ms, as tickets come off a paced pipeline.
            tokio::time::sleep(Duration::from_millis(100 * n as u64)).await;
            zd.create_ticket(&r, &ticket(n), &[]).await
        })
    });
    let out: Vec<_> = futures::future::join_all(calls).await.into_iter().map(|j| j.unwrap()).collect();
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    let sizes: Vec<usize> = st.batches.lock().unwrap().iter().map(|(_, b)| b.len()).collect();
    assert!(sizes.len() <= 3, "six creates 100 ms apart under 400 ms pacing went out as {sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_batch_of_100_is_sent_without_waiting_for_the_linger() {
    let (st, zd) = account(JobEnd::Completed, 3_000).await;
    let t0 = Instant::now();
    let out = create_all(&zd, &refs(130)).await;
    assert!(out.iter().all(Result::is_ok));
    let batches = st.batches.lock().unwrap().clone();
    let mut sizes: Vec<usize> = batches.iter().map(|(_, b)| b.len()).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![30, 100]);
    let full = batches.iter().find(|(_, b)| b.len() == 100).unwrap();
    assert!(full.0 - t0 < Duration::from_millis(2_000), "the full batch waited {:?} for the 3 s linger", full.0 - t0);
    let rest = batches.iter().find(|(_, b)| b.len() == 30).unwrap();
    assert!(rest.0 - t0 >= Duration::from_millis(2_900), "the partial batch left before its linger: {:?}", rest.0 - t0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_ticket_validation_error_fails_only_that_ticket_with_its_cause() {
    let (st, zd) = account(JobEnd::OneInvalid, 150).await;
    let mut refs = refs(3);
    refs[1] = "dd:m:bad".into();
    let out = create_all(&zd, &refs).await;
    assert_eq!(st.batches.lock().unwrap().len(), 1);
    assert!(out[0].is_ok() && out[2].is_ok(), "{out:?}");
    match &out[1] {
        Err(e @ TargetError::Rejected { message, .. }) => {
            assert!(message.contains("Requester is suspended"), "cause not named: {e}");
            assert!(!e.is_retryable(), "a validation error is not retried: {e}");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_leaves_its_unreported_tickets_in_doubt() {
    let (st, zd) = account(JobEnd::FailedAfterFirst, 150).await;
    let refs = refs(3);
    let out = create_all(&zd, &refs).await;
    assert_eq!(st.batches.lock().unwrap().len(), 1);
    let created = st.created.lock().unwrap().clone();
    let first = st.batches.lock().unwrap()[0].1[0]["external_id"].as_str().unwrap().to_string();
    for (r, o) in refs.iter().zip(&out) {
        if *r == first {
            assert_eq!(o.as_ref().unwrap(), &TargetId(created[r].0.to_string()));
        } else {
            let e = o.as_ref().unwrap_err();
            assert!(matches!(e, TargetError::Unavailable { .. }) && e.is_retryable(), "{r}: {e}");
            assert!(e.to_string().contains(r), "the error names the ticket: {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_is_in_doubt_and_the_orphan_is_found_once_its_job_has_run() {
    let (st, zd) = account(JobEnd::AnswerLost, 100).await;
    let refs = refs(2);
    let out = create_all(&zd, &refs).await;
    for o in &out {
        let e = o.as_ref().unwrap_err();
        assert!(matches!(e, TargetError::Unavailable { .. }) && e.is_retryable(), "{e}");
    }
    assert_eq!(st.batches.lock().unwrap().len(), 1, "a create_many whose answer was lost must not be sent again");
    // The job creates the tickets 600 ms after the POST: the engine's orphan look-up (U1) must still find
    // them, not report them absent and have them created twice.
    for r in &refs {
        let found = zd.find_by_source_ref(r).await.unwrap();
        assert_eq!(found, vec![TargetId(st.created.lock().unwrap()[r].0.to_string())], "{r}");
    }
    // A reference this process never left in doubt is answered at once.
    let t0 = Instant::now();
    assert!(zd.find_by_source_ref("dd:m:never").await.unwrap().is_empty());
    assert!(t0.elapsed() < Duration::from_millis(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linger_zero_imports_each_ticket_on_its_own() {
    let (st, zd) = account(JobEnd::Completed, 0).await;
    let out = create_all(&zd, &refs(3)).await;
    assert!(out.iter().all(|o| o.as_ref().ok() == Some(&TargetId("42".into()))), "{out:?}");
    assert_eq!(st.singles.load(Ordering::SeqCst), 3);
    assert!(st.batches.lock().unwrap().is_empty());
}

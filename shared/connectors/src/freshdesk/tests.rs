//! Connector tests against tiny in-process axum servers: the retry policy (429 + `Retry-After`), auth and
//! error classification, and the ticket listing's page-ceiling restart. Whole-pipeline tests against the
//! simulator live in the workspace tests.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::RawQuery;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use deltadesk_core::model::TicketId;
use deltadesk_core::ports::{HelpDeskSource, HelpDeskTarget, SourceError, TargetError};
use deltadesk_core::window::Window;
use serde_json::{json, Value};

use super::{Freshdesk, FreshdeskConfig};

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

fn connector(base: &str, f: impl FnOnce(&mut FreshdeskConfig)) -> Freshdesk {
    let mut cfg = FreshdeskConfig::new(base);
    cfg.api_key_env = Some("UNUSED".into());
    f(&mut cfg);
    Freshdesk::with_api_key(cfg, Some("k3y".into())).unwrap()
}

/// Basic `k3y:X`.
const BASIC: &str = "Basic azN5Olg=";

fn ticket(id: u64, at: i64) -> Value {
    let t = chrono::DateTime::from_timestamp(at, 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    json!({"id": id, "subject": "s", "status": 2, "priority": 1, "updated_at": t, "created_at": t, "custom_fields": {"cf_deltadesk_ref": format!("dd:t:{id}")}})
}

/// `/api/v2/tickets` failing in `mode` for the first `fail_times` calls, then answering two tickets.
fn flaky(mode: &'static str, fail_times: u32, hits: Arc<AtomicU32>) -> Router {
    Router::new().route(
        "/api/v2/tickets",
        get(move |headers: HeaderMap| {
            let hits = hits.clone();
            async move {
                let n = hits.fetch_add(1, Ordering::SeqCst);
                let authed = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(BASIC);
                if mode == "401" || !authed {
                    return (StatusCode::UNAUTHORIZED, Json(json!({"code": "invalid_credentials", "message": "You have to be logged in to perform this action."}))).into_response();
                }
                if n < fail_times {
                    return match mode {
                        "429" => (
                            StatusCode::TOO_MANY_REQUESTS,
                            [("retry-after", "1"), ("x-ratelimit-total", "200"), ("x-ratelimit-remaining", "0"), ("x-ratelimit-used-currentrequest", "1")],
                            Json(json!({"code": "rate_limit_exceeded"})),
                        )
                            .into_response(),
                        _ => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
                    };
                }
                ([("x-ratelimit-total", "200"), ("x-ratelimit-remaining", "150")], Json(json!([ticket(1, 1_000), ticket(2, 1_001)]))).into_response()
            }
        }),
    )
}

#[tokio::test]
async fn a_429_is_retried_after_retry_after_then_succeeds() {
    let hits = Arc::new(AtomicU32::new(0));
    let fd = connector(&serve(flaky("429", 1, hits.clone())).await, |_| {});
    let t0 = Instant::now();
    let (ids, next) = fd.list_ticket_ids(None).await.unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(950), "waited {:?}", t0.elapsed());
    assert_eq!(ids, vec![TicketId("1".into()), TicketId("2".into())]);
    assert_eq!(next, None, "a short page ends the listing");
    let s = HelpDeskSource::api_stats(&fd);
    assert_eq!((s.calls, s.throttled, s.retries), (2, 1, 1));
    assert_eq!(fd.client().rate_limit_remaining(), Some(150));
}

#[tokio::test]
async fn persistent_429_and_5xx_become_retryable_errors() {
    let hits = Arc::new(AtomicU32::new(0));
    let fd = connector(&serve(flaky("429", 100, hits.clone())).await, |c| c.max_retries = 0);
    match fd.list_ticket_ids(None).await.unwrap_err() {
        SourceError::Throttled { retry_after, .. } => assert_eq!(retry_after, Duration::from_secs(1)),
        other => panic!("expected Throttled, got {other}"),
    }
    let hits = Arc::new(AtomicU32::new(0));
    let fd = connector(&serve(flaky("500", 100, hits.clone())).await, |c| c.max_retries = 1);
    let e = fd.list_tickets(None).await.unwrap_err();
    assert!(matches!(e, TargetError::Unavailable { .. }) && e.is_retryable(), "{e}");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn unauthorized_is_auth_without_retry_and_never_shows_the_key() {
    let hits = Arc::new(AtomicU32::new(0));
    let fd = connector(&serve(flaky("401", 0, hits.clone())).await, |_| {});
    let e = fd.list_ticket_ids(None).await.unwrap_err();
    assert!(matches!(e, SourceError::Auth(_)) && !e.is_retryable(), "{e}");
    assert!(!e.to_string().contains("k3y"));
    assert!(!format!("{fd:?}").contains("k3y"), "Debug must not show the key");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[test]
fn new_reads_the_key_from_the_named_env_var() {
    let mut cfg = FreshdeskConfig::new("https://acme.freshdesk.com");
    cfg.api_key_env = Some("DELTADESK_TEST_FD_KEY_NEVER_SET".into());
    assert!(matches!(Freshdesk::new(cfg).unwrap_err(), crate::registry::ConfigError::MissingSecret { env_var, .. } if env_var == "DELTADESK_TEST_FD_KEY_NEVER_SET"));
}

/// A ticket list with `updated_since`, asc order by updated_at, `per_page`, `page`, and a page ceiling of 2.
fn ceiling_server(tickets: Vec<(u64, i64)>, queries: Arc<Mutex<Vec<String>>>) -> Router {
    Router::new().route(
        "/api/v2/tickets",
        get(move |RawQuery(q): RawQuery| {
            let tickets = tickets.clone();
            let queries = queries.clone();
            async move {
                let q = q.unwrap_or_default();
                queries.lock().unwrap().push(q.clone());
                let param = |k: &str| q.split('&').find_map(|p| p.strip_prefix(&format!("{k}="))).map(|v| v.replace("%3A", ":"));
                let since = chrono::DateTime::parse_from_rfc3339(&param("updated_since").unwrap()).unwrap().timestamp();
                let page: usize = param("page").unwrap().parse().unwrap();
                let per_page: usize = param("per_page").unwrap().parse().unwrap();
                if page > 2 {
                    return (StatusCode::BAD_REQUEST, Json(json!({"description": "Validation failed", "errors": [{"field": "page", "message": "It should be a Positive Integer less than or equal to 2", "code": "invalid_value"}]}))).into_response();
                }
                if param("filter").is_some() {
                    return Json(json!([])).into_response();
                }
                let mut list: Vec<(u64, i64)> = tickets.into_iter().filter(|(_, at)| *at >= since).collect();
                list.sort_by_key(|(id, at)| (*at, *id));
                let out: Vec<Value> = list.iter().skip((page - 1) * per_page).take(per_page).map(|(id, at)| ticket(*id, *at)).collect();
                Json(Value::Array(out)).into_response()
            }
        }),
    )
}

async fn drain(fd: &Freshdesk, window: &Window) -> Vec<(String, i64, bool)> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let page = fd.changes(window, cursor.as_deref()).await.unwrap();
        out.extend(page.changes.iter().map(|c| (c.ticket_id.0.clone(), c.updated_at.timestamp(), c.deleted)));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
    panic!("listing did not end");
}

#[tokio::test]
async fn the_page_ceiling_restarts_from_the_last_second_seen_without_loss_or_repeats() {
    let tickets: Vec<(u64, i64)> = vec![(1, 100), (2, 100), (3, 101), (4, 101), (5, 101), (6, 102), (7, 103), (8, 103), (9, 104)];
    let queries = Arc::new(Mutex::new(Vec::new()));
    let base = serve(ceiling_server(tickets.clone(), queries.clone())).await;
    let window = Window { start: chrono::DateTime::from_timestamp(0, 0).unwrap(), end: chrono::DateTime::from_timestamp(10_000, 0).unwrap() };
    // Proactive: the connector knows the ceiling.
    let fd = connector(&base, |c| {
        c.per_page = 2;
        c.max_page = 2;
    });
    let got = drain(&fd, &window).await;
    let mut ids: Vec<u64> = got.iter().map(|(id, _, _)| id.parse().unwrap()).collect();
    assert!(got.iter().all(|(_, _, deleted)| !deleted));
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids, (1..=9).collect::<Vec<_>>());
    assert_eq!(n, 9, "no ticket listed twice: {got:?}");
    assert!(queries.lock().unwrap().iter().any(|q| q.contains("filter=deleted")) && queries.lock().unwrap().iter().any(|q| q.contains("filter=spam")));
    // Reactive: the connector believes in 300 pages; the account's 400 on page 3 restarts the query.
    let fd = connector(&base, |c| c.per_page = 2);
    let got = drain(&fd, &window).await;
    let mut ids: Vec<u64> = got.iter().map(|(id, _, _)| id.parse().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=9).collect::<Vec<_>>(), "{got:?}");
}

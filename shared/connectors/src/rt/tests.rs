//! Connector tests against a tiny in-process fake of RT's REST2 (axum): auth headers, the two-phase keyset
//! change listing, a whole ticket read (history, bodies, files, users, queue), downloads and error
//! classification. The real RT 5 is exercised by the pipeline test `tests/pipeline/rt.rs`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use deltadesk_core::model::{Priority, Role, Status, TicketId};
use deltadesk_core::ports::{HelpDeskSource, SourceError};
use deltadesk_core::window::Window;
use futures::StreamExt;
use serde_json::{json, Value};

use super::{Rt, RtConfig};

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

#[derive(Default)]
struct Seen {
    auth: Vec<String>,
    queries: Vec<HashMap<String, String>>,
    bodies: Vec<Value>,
}

type Shared = Arc<Mutex<Seen>>;

fn record(seen: &Shared, headers: &HeaderMap, q: &HashMap<String, String>) {
    let mut s = seen.lock().unwrap();
    s.auth.push(headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string());
    s.queries.push(q.clone());
}

fn page(items: Vec<Value>) -> Value {
    let n = items.len();
    json!({"items": items, "count": n, "page": 1, "pages": 1, "per_page": 100, "total": n})
}

fn fake_rt(seen: Shared) -> Router {
    let b64 = |s: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
    let attachments: HashMap<String, Value> = HashMap::from([
        ("2".to_string(), json!({"id": 2, "Content": format!("{}\n", b64(b"Line one\nLine two"))})),
        ("3".to_string(), json!({"id": 3, "Content": b64(&[0, 1, 2, 255])})),
        ("7".to_string(), json!({"id": 7, "Content": b64(b"<p>Hi <b>there</b></p>")})),
        ("9".to_string(), json!({"id": 9, "Content": b64(b"private")})),
    ]);
    let attachments = Arc::new(attachments);
    Router::new()
        .route(
            "/REST/2.0/tickets",
            get(|State(seen): State<Shared>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>| async move {
                record(&seen, &headers, &q);
                let tql = q.get("query").cloned().unwrap_or_default();
                let items = if tql.contains("id > 0") && tql.contains("LastUpdated") {
                    vec![json!({"id": "1", "LastUpdated": "2026-03-10T14:00:05Z"}), json!({"id": "4", "LastUpdated": "2026-03-10T14:00:06Z"})]
                } else if tql.starts_with("id > ") {
                    vec![json!({"id": "1"}), json!({"id": "4"})]
                } else {
                    vec![json!({"id": "5", "LastUpdated": "2026-03-10T14:00:07Z"})]
                };
                Json(page(items))
            }),
        )
        .route(
            "/REST/2.0/transactions",
            axum::routing::post(|State(seen): State<Shared>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>, Json(body): Json<Value>| async move {
                record(&seen, &headers, &q);
                seen.lock().unwrap().bodies.push(body);
                Json(page(vec![json!({"id": "65", "ObjectId": "3", "Created": "2026-03-10T14:00:08Z"})]))
            }),
        )
        .route(
            "/REST/2.0/ticket/{id}",
            get(|Path(id): Path<String>| async move {
                match id.as_str() {
                    "1" => Json(json!({
                        "id": 1, "Subject": "Printer on fire", "Status": "open", "Priority": "50",
                        "Queue": {"id": "3"}, "Owner": {"id": "root"}, "Requestor": [{"id": "alice"}],
                        "EffectiveId": {"id": "1"}, "CustomFields": [{"name": "Order number", "values": ["ORD-1"]}],
                        "Created": "2026-03-10T14:00:00Z", "LastUpdated": "2026-03-10T14:00:05Z"
                    }))
                    .into_response(),
                    "3" => Json(json!({
                        "id": 3, "Subject": "gone", "Status": "deleted", "Queue": {"id": "3"}, "Owner": {"id": "Nobody"},
                        "EffectiveId": {"id": "3"}, "Created": "2026-03-10T14:00:00Z", "LastUpdated": "2026-03-10T14:00:08Z"
                    }))
                    .into_response(),
                    _ => (StatusCode::NOT_FOUND, Json(json!({"message": "Resource does not exist"}))).into_response(),
                }
            }),
        )
        .route(
            "/REST/2.0/ticket/{id}/history",
            get(|| async {
                Json(page(vec![
                    json!({"id": "10", "Type": "Create", "Creator": {"id": "alice"}, "Created": "2026-03-10T14:00:00Z"}),
                    json!({"id": "11", "Type": "EmailRecord", "Creator": {"id": "RT_System"}, "Created": "2026-03-10T14:00:00Z"}),
                    json!({"id": "12", "Type": "Correspond", "Creator": {"id": "root"}, "Created": "2026-03-10T14:00:03Z"}),
                    json!({"id": "13", "Type": "Set", "Creator": {"id": "root"}, "Created": "2026-03-10T14:00:04Z"}),
                    json!({"id": "14", "Type": "Comment", "Creator": {"id": "root"}, "Created": "2026-03-10T14:00:05Z"}),
                ]))
            }),
        )
        .route(
            "/REST/2.0/transaction/{id}/attachments",
            get(|Path(id): Path<String>, Query(q): Query<HashMap<String, String>>| async move {
                // RT 5.0.3 crashes on fields=Parent in lists: the connector must never ask for it.
                if q.get("fields").is_some_and(|f| f.contains("Parent")) {
                    return (StatusCode::INTERNAL_SERVER_ERROR, "Parent").into_response();
                }
                let parts = match id.as_str() {
                    "10" => vec![
                        json!({"id": "1", "ContentType": "multipart/mixed", "Filename": "", "ContentLength": "0"}),
                        json!({"id": "2", "ContentType": "text/plain", "Filename": "", "ContentLength": "17"}),
                        json!({"id": "3", "ContentType": "application/octet-stream", "Filename": "a.bin", "ContentLength": "4"}),
                    ],
                    "12" => vec![json!({"id": "7", "ContentType": "text/html", "Filename": "", "ContentLength": "22"})],
                    _ => vec![json!({"id": "9", "ContentType": "text/plain", "Filename": "", "ContentLength": "7"})],
                };
                Json(page(parts)).into_response()
            }),
        )
        .route(
            "/REST/2.0/attachment/{id}",
            get(move |Path(id): Path<String>| {
                let attachments = attachments.clone();
                async move {
                    match attachments.get(&id) {
                        Some(v) => Json(v.clone()).into_response(),
                        None => StatusCode::NOT_FOUND.into_response(),
                    }
                }
            }),
        )
        .route(
            "/REST/2.0/user/{name}",
            get(|Path(name): Path<String>| async move {
                match name.as_str() {
                    "alice" => Json(json!({"Name": "alice", "EmailAddress": "alice@example.com", "RealName": "Alice", "Privileged": 0})).into_response(),
                    "root" => Json(json!({"Name": "root", "EmailAddress": "", "RealName": "Enoch Root", "Privileged": 1})).into_response(),
                    _ => StatusCode::NOT_FOUND.into_response(),
                }
            }),
        )
        .route("/REST/2.0/queue/{id}", get(|| async { Json(json!({"id": 3, "Name": "Support"})) }))
        .with_state(seen)
}

fn connector(base: &str, user: Option<&str>) -> Rt {
    let mut cfg = RtConfig::new(base);
    cfg.user = user.map(str::to_string);
    cfg.token_env = Some("UNUSED".into());
    cfg.per_page = 2;
    Rt::with_secret(cfg, Some("s3cret".into())).unwrap()
}

fn window() -> Window {
    let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&chrono::Utc);
    Window { start: t("2026-03-10T14:00:05.700Z"), end: t("2026-03-10T14:10:00Z") }
}

#[tokio::test]
async fn change_listing_pages_by_id_then_lists_deletions() {
    let seen: Shared = Arc::default();
    let base = serve(fake_rt(seen.clone())).await;
    let rt = connector(&base, None);
    let w = window();
    let p1 = rt.changes(&w, None).await.unwrap();
    assert_eq!(p1.changes.iter().map(|c| c.ticket_id.0.as_str()).collect::<Vec<_>>(), vec!["1", "4"]);
    assert_eq!(p1.next_cursor.as_deref(), Some("t:4"), "a full page continues after its last id");
    let p2 = rt.changes(&w, p1.next_cursor.as_deref()).await.unwrap();
    assert_eq!(p2.changes.len(), 1);
    assert_eq!(p2.next_cursor.as_deref(), Some("d:0"), "a short page ends the ticket phase");
    assert!(rt.changes(&w, Some("x:1")).await.is_err());
    let p3 = rt.changes(&w, p2.next_cursor.as_deref()).await.unwrap();
    assert_eq!(p3.changes.len(), 1);
    assert!(p3.changes[0].deleted);
    assert_eq!(p3.changes[0].ticket_id, TicketId("3".into()));
    assert_eq!(p3.next_cursor, None);
    let s = seen.lock().unwrap();
    // The floored second, written the way TicketSQL reads dates, keyset by id.
    assert_eq!(s.queries[0]["query"], "LastUpdated >= '2026-03-10 14:00:05' AND id > 0");
    assert_eq!(s.queries[1]["query"], "LastUpdated >= '2026-03-10 14:00:05' AND id > 4");
    assert_eq!((s.queries[0]["orderby"].as_str(), s.queries[0]["per_page"].as_str()), ("id", "2"));
    assert!(s.bodies[0].to_string().contains("\"deleted\""));
    assert!(s.auth.iter().all(|a| a == "token s3cret"), "{:?}", s.auth);
}

#[tokio::test]
async fn basic_auth_is_sent_when_a_user_is_configured() {
    let seen: Shared = Arc::default();
    let base = serve(fake_rt(seen.clone())).await;
    let rt = connector(&base, Some("migrator"));
    let (ids, next) = rt.list_ticket_ids(None).await.unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(next.as_deref(), Some("4"));
    // migrator:s3cret
    assert_eq!(seen.lock().unwrap().auth[0], "Basic bWlncmF0b3I6czNjcmV0");
    assert!(!format!("{rt:?}").contains("s3cret"), "secrets never in Debug output");
}

#[tokio::test]
async fn a_ticket_reads_with_conversation_only_bodies_files_and_users() {
    let base = serve(fake_rt(Arc::default())).await;
    let rt = connector(&base, None);
    let t = rt.ticket(&TicketId("1".into())).await.unwrap().unwrap();
    assert_eq!(t.subject, "Printer on fire");
    assert_eq!(t.status, Status::Open);
    assert_eq!(t.priority, Some(Priority::Normal));
    assert_eq!(t.group.as_ref().unwrap().name, "Support");
    assert_eq!(t.requester.as_ref().unwrap().email, "alice@example.com");
    let owner = t.assignee.as_ref().unwrap();
    assert_eq!((owner.email.as_str(), owner.role), ("root@rt.invalid", Role::Agent));
    assert_eq!(t.custom_fields["Order number"], json!("ORD-1"));
    assert_eq!(t.comments.len(), 3, "EmailRecord and Set are not comments");
    let (c0, c1, c2) = (&t.comments[0], &t.comments[1], &t.comments[2]);
    assert!(c0.public && c1.public && !c2.public);
    assert_eq!(c0.plain_body, "Line one\nLine two");
    assert_eq!(c0.author.email, "alice@example.com");
    assert_eq!(c1.plain_body, "Hi there");
    assert_eq!(c1.html_body, "<p>Hi <b>there</b></p>");
    assert_eq!(c0.attachments.len(), 1);
    let a = &c0.attachments[0];
    assert_eq!((a.file_name.as_str(), a.size), ("a.bin", 4));
    assert!(a.source_url.ends_with("/REST/2.0/attachment/3"), "{}", a.source_url);
    let mut s = rt.download(a).await.unwrap();
    let mut bytes = Vec::new();
    while let Some(chunk) = s.next().await {
        bytes.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(bytes, vec![0, 1, 2, 255]);
    assert!(rt.ticket(&TicketId("3".into())).await.unwrap().is_none(), "deleted tickets read as None");
    assert!(rt.ticket(&TicketId("99".into())).await.unwrap().is_none());
    assert!(matches!(rt.ticket(&TicketId("x".into())).await, Err(SourceError::Malformed { .. })));
}

#[tokio::test]
async fn server_errors_are_retried_and_auth_failures_are_not() {
    let hits = Arc::new(AtomicU32::new(0));
    let h = hits.clone();
    let router = Router::new().route(
        "/REST/2.0/tickets",
        get(move |headers: HeaderMap| {
            let h = h.clone();
            async move {
                let n = h.fetch_add(1, Ordering::SeqCst);
                if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("token s3cret") {
                    return (StatusCode::UNAUTHORIZED, Json(json!({"message": "Unauthorized"}))).into_response();
                }
                if n < 2 {
                    return (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response();
                }
                Json(page(vec![json!({"id": "1"})])).into_response()
            }
        }),
    );
    let base = serve(router).await;
    let rt = connector(&base, None);
    let (ids, _) = rt.list_ticket_ids(None).await.unwrap();
    assert_eq!(ids, vec![TicketId("1".into())]);
    assert_eq!(rt.api_stats().retries, 2);
    let wrong = Rt::with_secret(RtConfig { token_env: Some("X".into()), ..RtConfig::new(base.as_str()) }, Some("nope".into())).unwrap();
    match wrong.list_ticket_ids(None).await {
        Err(SourceError::Auth(m)) => assert!(!m.contains("nope"), "{m}"),
        other => panic!("expected Auth, got {other:?}"),
    }
}

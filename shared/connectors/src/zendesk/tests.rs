//! Connector tests against tiny in-process axum servers: the retry policy, error classification, and the
//! source/target request shapes. Whole-pipeline tests against the simulator live in the workspace tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use deltadesk_core::model::{
    Attachment, Comment, Group, Role, Status, TargetId, Ticket, TicketId, User,
};
use deltadesk_core::ports::{
    CommentWrite, HelpDeskSource, HelpDeskTarget, SourceError, TargetError,
};
use deltadesk_core::window::Window;
use futures::StreamExt;
use serde_json::{json, Value};

use super::{Zendesk, ZendeskConfig};

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

fn connector(base: &str, f: impl FnOnce(&mut ZendeskConfig)) -> Zendesk {
    let mut cfg = ZendeskConfig::new(base);
    cfg.email = Some("agent@acme.com".into());
    cfg.token_env = Some("UNUSED".into());
    f(&mut cfg);
    Zendesk::with_token(cfg, Some("s3cret".into())).unwrap()
}

const BASIC: &str = "Basic YWdlbnRAYWNtZS5jb20vdG9rZW46czNjcmV0"; // agent@acme.com/token:s3cret

fn tickets_page() -> Value {
    json!({"tickets": [{"id": 1, "external_id": null}, {"id": 2, "external_id": "src:9"}], "meta": {"has_more": false, "after_cursor": null}})
}

/// `/api/v2/tickets` failing in `mode` for the first `fail_times` calls, then answering.
fn flaky(mode: &'static str, fail_times: u32, hits: Arc<AtomicU32>) -> Router {
    Router::new().route(
        "/api/v2/tickets",
        get(move |headers: HeaderMap| {
            let hits = hits.clone();
            async move {
                let n = hits.fetch_add(1, Ordering::SeqCst);
                let authed = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(BASIC);
                if mode == "401" || !authed {
                    return (StatusCode::UNAUTHORIZED, Json(json!({"error": "Couldn't authenticate you"}))).into_response();
                }
                if n < fail_times {
                    return match mode {
                        "429" => (
                            StatusCode::TOO_MANY_REQUESTS,
                            [("retry-after", "1")],
                            Json(json!({"error": "APIRateLimitExceeded", "description": "slow down"})),
                        )
                            .into_response(),
                        _ => (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response(),
                    };
                }
                Json(tickets_page()).into_response()
            }
        }),
    )
}

#[tokio::test]
async fn retry_429_honours_retry_after_then_succeeds() {
    let hits = Arc::new(AtomicU32::new(0));
    let zd = connector(&serve(flaky("429", 1, hits.clone())).await, |_| {});
    let t0 = Instant::now();
    let (ids, next) = zd.list_ticket_ids(None).await.unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(950),
        "waited {:?}",
        t0.elapsed()
    );
    assert_eq!(ids, vec![TicketId("1".into()), TicketId("2".into())]);
    assert_eq!(next, None);
    let s = HelpDeskSource::api_stats(&zd);
    assert_eq!((s.calls, s.throttled, s.retries), (2, 1, 1));
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn retry_5xx_backs_off_then_succeeds() {
    let hits = Arc::new(AtomicU32::new(0));
    let zd = connector(&serve(flaky("500", 2, hits.clone())).await, |_| {});
    let t0 = Instant::now();
    let page = zd.list_tickets(None).await.unwrap();
    // 200 ms + 400 ms of backoff.
    assert!(
        t0.elapsed() >= Duration::from_millis(550),
        "waited {:?}",
        t0.elapsed()
    );
    assert_eq!(
        page.tickets[1],
        (TargetId("2".into()), Some("src:9".into()))
    );
    let s = HelpDeskTarget::api_stats(&zd);
    assert_eq!((s.calls, s.throttled, s.retries), (3, 0, 2));
}

#[tokio::test]
async fn persistent_failures_become_retryable_errors() {
    let hits = Arc::new(AtomicU32::new(0));
    let zd = connector(&serve(flaky("500", 100, hits.clone())).await, |c| {
        c.max_retries = 1
    });
    let e = zd.list_ticket_ids(None).await.unwrap_err();
    assert!(
        matches!(e, SourceError::Unavailable { .. }) && e.is_retryable(),
        "{e}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    let hits = Arc::new(AtomicU32::new(0));
    let zd = connector(&serve(flaky("429", 100, hits.clone())).await, |c| {
        c.max_retries = 0
    });
    match zd.list_ticket_ids(None).await.unwrap_err() {
        SourceError::Throttled { retry_after, .. } => {
            assert_eq!(retry_after, Duration::from_secs(1))
        }
        other => panic!("expected Throttled, got {other}"),
    }
    assert_eq!(HelpDeskSource::api_stats(&zd).throttled, 1);

    // Nothing listening: connection errors are Unavailable after the retries.
    let zd = connector("http://127.0.0.1:9", |c| c.max_retries = 1);
    let e = zd.list_ticket_ids(None).await.unwrap_err();
    assert!(matches!(e, SourceError::Unavailable { .. }), "{e}");
    assert_eq!(HelpDeskSource::api_stats(&zd).calls, 2);
}

#[tokio::test]
async fn unauthorized_is_auth_without_retry() {
    let hits = Arc::new(AtomicU32::new(0));
    let zd = connector(&serve(flaky("401", 0, hits.clone())).await, |_| {});
    let e = zd.list_ticket_ids(None).await.unwrap_err();
    assert!(
        matches!(e, SourceError::Auth(_)) && !e.is_retryable(),
        "{e}"
    );
    assert!(!e.to_string().contains("s3cret"));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let s = HelpDeskSource::api_stats(&zd);
    assert_eq!((s.calls, s.retries), (1, 0));
    // Wrong token: also Auth.
    let hits = Arc::new(AtomicU32::new(0));
    let base = serve(flaky("ok", 0, hits)).await;
    let mut cfg = ZendeskConfig::new(base.as_str());
    cfg.email = Some("agent@acme.com".into());
    let zd = Zendesk::with_token(cfg, Some("wrong".into())).unwrap();
    assert!(matches!(
        zd.find_by_source_ref("x").await.unwrap_err(),
        TargetError::Auth(_)
    ));
}

#[test]
fn new_reads_the_token_from_the_named_env_var() {
    let mut cfg = ZendeskConfig::new("https://acme.zendesk.com");
    cfg.email = Some("agent@acme.com".into());
    cfg.token_env = Some("DELTADESK_TEST_ZD_TOKEN_NEVER_SET".into());
    assert_eq!(
        Zendesk::new(cfg.clone()).unwrap_err(),
        crate::registry::ConfigError::MissingSecret {
            field: "token_env".into(),
            env_var: "DELTADESK_TEST_ZD_TOKEN_NEVER_SET".into()
        }
    );
    cfg.token_env = Some("PATH".into()); // always set
    let zd = Zendesk::new(cfg).unwrap();
    assert!(
        !format!("{zd:?}").contains(&std::env::var("PATH").unwrap()),
        "Debug must not show the token"
    );
}

// ----- a small fake account for the source and target paths ----------------------------------------------

#[derive(Default)]
struct Fake {
    base: Mutex<String>,
    drop_user_8: AtomicBool,
    posts: Mutex<Vec<(String, Value)>>,
    uploads: Mutex<HashMap<String, Vec<u8>>>,
    corrupt_uploads: AtomicBool,
}

fn ticket_json() -> Value {
    json!({"id": 123, "external_id": null, "subject": "Printer on fire", "status": "open", "priority": "high",
           "type": "incident", "requester_id": 7, "submitter_id": 7, "assignee_id": 8, "group_id": 30,
           "organization_id": 40, "tags": ["printer"], "custom_fields": [{"id": 500, "value": "emea"}, {"id": 501, "value": null}],
           "created_at": "2026-03-10T14:00:00Z", "updated_at": "2026-03-10T15:30:00Z"})
}

fn user_json(id: u64) -> Value {
    let (email, role) = if id == 7 {
        ("req@example.com", "end-user")
    } else {
        ("agent@acme.com", "agent")
    };
    json!({"id": id, "name": format!("User {id}"), "email": email, "role": role, "organization_id": null})
}

fn fake(state: Arc<Fake>) -> Router {
    let st = state.clone();
    Router::new()
        .route(
            "/api/v2/tickets/{id}",
            get(|Path(id): Path<u64>| async move {
                if id == 123 {
                    Json(json!({"ticket": ticket_json()})).into_response()
                } else {
                    (StatusCode::NOT_FOUND, Json(json!({"error": "RecordNotFound", "description": "Not found"}))).into_response()
                }
            })
            .put(|Path(id): Path<u64>, State(st): State<Arc<Fake>>, Json(body): Json<Value>| async move {
                if id == 5 {
                    return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error": "RecordInvalid", "description": "Status: closed prevents ticket update"})))
                        .into_response();
                }
                st.posts.lock().unwrap().push((format!("PUT {id}"), body));
                Json(json!({"ticket": {"id": id}})).into_response()
            })
            .delete(|Path(id): Path<u64>| async move {
                if id == 404 { StatusCode::NOT_FOUND } else { StatusCode::NO_CONTENT }
            }),
        )
        .route(
            "/api/v2/tickets/{id}/comments",
            get(|Path(_id): Path<u64>, RawQuery(q): RawQuery, State(st): State<Arc<Fake>>| async move {
                let q = q.unwrap_or_default();
                let base = st.base.lock().unwrap().clone();
                let users = if st.drop_user_8.load(Ordering::SeqCst) { json!([user_json(7)]) } else { json!([user_json(7), user_json(8)]) };
                if !q.contains("page[after]=c2") {
                    Json(json!({"comments": [{"id": 55, "type": "Comment", "author_id": 7, "body": "It smokes.", "html_body": "<p>It smokes.</p>",
                        "plain_body": "It smokes.", "public": true, "created_at": "2026-03-10T14:00:00Z", "attachments": []}],
                        "users": [user_json(7)], "meta": {"has_more": true, "after_cursor": "c2"}}))
                } else {
                    let url = format!("{base}/attachments/token/abc/?name=shot.png");
                    Json(json!({"comments": [{"id": 56, "type": "Comment", "author_id": 8, "body": "see", "plain_body": "see",
                        "html_body": format!("<p><img src=\"{url}\"></p>"), "public": false, "created_at": "2026-03-10T15:30:00Z",
                        "attachments": [{"id": 901, "file_name": "shot.png", "content_url": url, "content_type": "image/png", "size": 3, "inline": true}]}],
                        "users": users, "meta": {"has_more": false, "after_cursor": null}}))
                }
            }),
        )
        .route(
            "/api/v2/users/show_many",
            get(|RawQuery(q): RawQuery, State(st): State<Arc<Fake>>| async move {
                let q = q.unwrap_or_default();
                let ids: Vec<u64> = q.trim_start_matches("ids=").split(',').filter_map(|s| s.parse().ok()).collect();
                let users: Vec<Value> =
                    ids.into_iter().filter(|id| *id == 7 || (*id == 8 && !st.drop_user_8.load(Ordering::SeqCst))).map(user_json).collect();
                Json(json!({"users": users}))
            }),
        )
        .route(
            "/api/v2/organizations/show_many",
            get(|| async { Json(json!({"organizations": [{"id": 40, "name": "Example Inc", "external_id": null, "domain_names": ["example.com"]}]})) }),
        )
        .route(
            "/api/v2/groups",
            get(|| async { Json(json!({"groups": [{"id": 30, "name": "Support"}], "next_page": null, "count": 1})) }).post(
                |State(st): State<Arc<Fake>>, Json(body): Json<Value>| async move {
                    st.posts.lock().unwrap().push(("POST groups".into(), body));
                    (StatusCode::CREATED, Json(json!({"group": {"id": 31, "name": "Billing"}})))
                },
            ),
        )
        .route(
            "/api/v2/ticket_fields",
            get(|| async {
                Json(json!({"ticket_fields": [{"id": 500, "title": "Region", "type": "tagger"}, {"id": 501, "title": "Order number", "type": "text"},
                                              {"id": 1, "title": "Subject", "type": "subject"}]}))
            }),
        )
        .route(
            "/api/v2/users/create_or_update",
            post(|State(st): State<Arc<Fake>>, Json(body): Json<Value>| async move {
                let id = if body["user"]["email"] == "req@example.com" { 1007 } else { 1008 };
                st.posts.lock().unwrap().push(("POST user".into(), body));
                (StatusCode::CREATED, Json(json!({"user": {"id": id}})))
            }),
        )
        .route(
            "/api/v2/organizations/create_or_update",
            post(|State(st): State<Arc<Fake>>, Json(body): Json<Value>| async move {
                st.posts.lock().unwrap().push(("POST organization".into(), body));
                Json(json!({"organization": {"id": 1040}}))
            }),
        )
        .route(
            "/api/v2/imports/tickets",
            post(|State(st): State<Arc<Fake>>, Json(body): Json<Value>| async move {
                st.posts.lock().unwrap().push(("POST import".into(), body));
                (StatusCode::CREATED, Json(json!({"ticket": {"id": 777}})))
            }),
        )
        .route(
            "/api/v2/uploads",
            post(|RawQuery(q): RawQuery, State(st): State<Arc<Fake>>, headers: HeaderMap, body: Bytes| async move {
                assert_eq!(headers.get("content-type").unwrap(), "image/png");
                let q = q.unwrap_or_default();
                assert_eq!(q, "filename=my%20shot.png");
                let token = format!("tok{}", st.uploads.lock().unwrap().len());
                let mut stored = body.to_vec();
                if st.corrupt_uploads.load(Ordering::SeqCst) {
                    stored.push(b'!');
                }
                // The answer reports the size stored, as Zendesk's does.
                let size = stored.len();
                st.uploads.lock().unwrap().insert(token.clone(), stored);
                let base = st.base.lock().unwrap().clone();
                let att = json!({"id": 1, "file_name": "my shot.png", "content_url": format!("{base}/attachments/token/{token}/?name=my%20shot.png"),
                                 "content_type": "image/png", "size": size, "inline": false});
                (StatusCode::CREATED, Json(json!({"upload": {"token": token, "expires_at": "2026-03-13T14:00:00Z", "attachment": att, "attachments": [att]}})))
            }),
        )
        .route(
            "/attachments/token/{token}/",
            get(|Path(token): Path<String>, State(st): State<Arc<Fake>>| async move {
                if token == "abc" {
                    return b"PNG".to_vec().into_response();
                }
                st.uploads.lock().unwrap().get(&token).cloned().unwrap_or_default().into_response()
            }),
        )
        .with_state(st)
}

async fn fake_account() -> (Arc<Fake>, Zendesk) {
    let st = Arc::new(Fake::default());
    let base = serve(fake(st.clone())).await;
    *st.base.lock().unwrap() = base.clone();
    (st, connector(&base, |_| {}))
}

#[tokio::test]
async fn source_reads_a_ticket_with_paged_comments_and_lookups() {
    let (_st, zd) = fake_account().await;
    let t = zd.ticket(&TicketId("123".into())).await.unwrap().unwrap();
    assert_eq!(t.source_id, TicketId("123".into()));
    assert_eq!(t.status, Status::Open);
    assert_eq!(t.requester.as_ref().unwrap().email, "req@example.com");
    assert_eq!(t.assignee.as_ref().unwrap().role, Role::Agent);
    assert_eq!(t.group.as_ref().unwrap().name, "Support");
    assert_eq!(t.organization.as_ref().unwrap().name, "Example Inc");
    assert_eq!(t.custom_fields.len(), 1);
    assert_eq!(t.custom_fields["Region"], json!("emea"));
    assert_eq!(
        t.comments
            .iter()
            .map(|c| c.source_id.as_str())
            .collect::<Vec<_>>(),
        vec!["55", "56"]
    );
    let att = &t.comments[1].attachments[0];
    assert!(att.inline && att.sha256.is_none());
    let mut s = HelpDeskSource::download(&zd, att).await.unwrap();
    let mut bytes = Vec::new();
    while let Some(c) = s.next().await {
        bytes.extend_from_slice(&c.unwrap());
    }
    assert_eq!(bytes, b"PNG");
    // Lookups are cached: a second read asks only for the ticket and its comments.
    let before = HelpDeskSource::api_stats(&zd);
    zd.ticket(&TicketId("123".into())).await.unwrap().unwrap();
    assert_eq!(HelpDeskSource::api_stats(&zd).since(&before).calls, 3);
    // Gone tickets are None.
    assert!(zd.ticket(&TicketId("124".into())).await.unwrap().is_none());
}

#[tokio::test]
async fn source_unknown_user_is_malformed_naming_the_record_and_user() {
    let (st, zd) = fake_account().await;
    st.drop_user_8.store(true, Ordering::SeqCst);
    match zd.ticket(&TicketId("123".into())).await.unwrap_err() {
        SourceError::Malformed { record, cause } => {
            assert_eq!(record, "zendesk ticket 123");
            assert!(cause.contains("user 8"), "{cause}");
        }
        other => panic!("expected Malformed, got {other}"),
    }
}

#[tokio::test]
async fn changes_use_start_time_then_the_cursor() {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let s2 = seen.clone();
    let router = Router::new().route(
        "/api/v2/incremental/tickets/cursor",
        get(move |RawQuery(q): RawQuery| {
            let seen = s2.clone();
            async move {
                let q = q.unwrap_or_default();
                seen.lock().unwrap().push(q.clone());
                let end = q.contains("cursor=abc");
                Json(json!({"tickets": [{"id": 4, "status": if end {"deleted"} else {"open"}, "updated_at": "2026-03-10T14:00:00Z"}],
                    "after_cursor": if end {"def"} else {"abc"}, "before_cursor": null, "end_of_stream": end}))
            }
        }),
    );
    let zd = connector(&serve(router).await, |c| c.per_page = 500);
    let w = Window {
        start: chrono::DateTime::from_timestamp(1_773_151_200, 0).unwrap(),
        end: chrono::DateTime::from_timestamp(1_773_154_800, 0).unwrap(),
    };
    let p1 = zd.changes(&w, None).await.unwrap();
    assert_eq!(p1.next_cursor.as_deref(), Some("abc"));
    assert!(!p1.changes[0].deleted);
    let p2 = zd.changes(&w, Some("abc")).await.unwrap();
    assert_eq!(p2.next_cursor, None);
    assert!(p2.changes[0].deleted);
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0], "start_time=1773151200&per_page=500");
    assert_eq!(seen[1], "cursor=abc&per_page=500");
}

fn user(id: &str, email: &str, role: Role) -> User {
    User {
        source_id: id.into(),
        email: email.into(),
        name: format!("User {id}"),
        role,
    }
}

fn canonical() -> Ticket {
    let at = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    let img = Attachment {
        source_id: "901".into(),
        file_name: "shot.png".into(),
        content_type: "image/png".into(),
        size: 3,
        sha256: None,
        inline: true,
        source_url: "https://src.zendesk.com/attachments/token/abc/?name=shot.png".into(),
    };
    Ticket {
        source_id: TicketId("123".into()),
        subject: "Printer on fire".into(),
        status: Status::Open,
        priority: None,
        ticket_type: None,
        requester: Some(user("7", "req@example.com", Role::EndUser)),
        assignee: Some(user("8", "agent@acme.com", Role::Agent)),
        group: Some(Group {
            source_id: "9".into(),
            name: "Billing".into(),
        }),
        organization: Some(deltadesk_core::model::Organization {
            source_id: "40".into(),
            name: "Example Inc".into(),
            domains: vec![],
        }),
        tags: vec!["printer".into()],
        custom_fields: [("Region".to_string(), json!("emea"))]
            .into_iter()
            .collect(),
        created_at: at("2026-03-10T14:00:00Z"),
        updated_at: at("2026-03-10T15:30:00Z"),
        comments: vec![Comment {
            source_id: "56".into(),
            author: user("8", "agent@acme.com", Role::Agent),
            html_body:
                "<p><img src=\"https://src.zendesk.com/attachments/token/abc/?name=shot.png\"></p>"
                    .into(),
            plain_body: "".into(),
            public: false,
            created_at: at("2026-03-10T15:30:00Z"),
            attachments: vec![img],
        }],
    }
}

#[tokio::test]
async fn target_creates_with_resolved_ids_and_rewritten_inline_images() {
    let (st, zd) = fake_account().await;
    let t = canonical();
    let up = deltadesk_core::ports::UploadedAttachment {
        source_id: "901".into(),
        token: "tokX".into(),
        content_url: "https://dst.zendesk.com/attachments/token/tokX/?name=shot.png".into(),
        size: 3,
        sha256: "x".into(),
    };
    let cws = vec![CommentWrite {
        comment: &t.comments[0],
        uploads: vec![up],
    }];
    let id = zd.create_ticket("zendesk:123", &t, &cws).await.unwrap();
    assert_eq!(id, TargetId("777".into()));
    let posts = st.posts.lock().unwrap().clone();
    let group = posts.iter().find(|(k, _)| k == "POST groups").unwrap();
    assert_eq!(group.1, json!({"group": {"name": "Billing"}}));
    let org = posts
        .iter()
        .find(|(k, _)| k == "POST organization")
        .unwrap();
    assert_eq!(
        org.1,
        json!({"organization": {"name": "Example Inc", "external_id": "Example Inc"}})
    );
    let (_, body) = posts.iter().find(|(k, _)| k == "POST import").unwrap();
    let tk = &body["ticket"];
    assert_eq!(tk["external_id"], "zendesk:123");
    assert_eq!(
        (tk["requester_id"].as_u64(), tk["assignee_id"].as_u64()),
        (Some(1007), Some(1008))
    );
    assert_eq!(
        (tk["group_id"].as_u64(), tk["organization_id"].as_u64()),
        (Some(31), Some(1040))
    );
    assert_eq!(tk["custom_fields"], json!([{"id": 500, "value": "emea"}]));
    assert_eq!(tk["created_at"], "2026-03-10T14:00:00Z");
    let c = &tk["comments"][0];
    assert_eq!(
        c["html_body"],
        "<p><img src=\"https://dst.zendesk.com/attachments/token/tokX/?name=shot.png\"></p>"
    );
    assert_eq!(c["uploads"], json!(["tokX"]));
    assert_eq!(c["author_id"], 1008);
    assert_eq!(c["created_at"], "2026-03-10T15:30:00Z");
    // Users, groups and organizations are cached: a second ticket only posts the import.
    let n = st.posts.lock().unwrap().len();
    zd.create_ticket("zendesk:124", &t, &cws).await.unwrap();
    assert_eq!(st.posts.lock().unwrap().len(), n + 1);
}

#[tokio::test]
async fn target_update_nulls_missing_fields_and_maps_errors() {
    let (st, zd) = fake_account().await;
    let mut t = canonical();
    t.assignee = None;
    zd.update_fields(&TargetId("9".into()), &t).await.unwrap();
    let (_, body) = st
        .posts
        .lock()
        .unwrap()
        .iter()
        .find(|(k, _)| k == "PUT 9")
        .cloned()
        .unwrap();
    let tk = &body["ticket"];
    assert_eq!(tk["assignee_id"], Value::Null);
    assert_eq!(tk["priority"], Value::Null);
    let mut cf = tk["custom_fields"].as_array().unwrap().clone();
    cf.sort_by_key(|f| f["id"].as_u64());
    assert_eq!(
        cf,
        vec![
            json!({"id": 500, "value": "emea"}),
            json!({"id": 501, "value": null})
        ]
    );

    match zd
        .update_fields(&TargetId("5".into()), &t)
        .await
        .unwrap_err()
    {
        TargetError::Rejected {
            context,
            status,
            message,
        } => {
            assert_eq!(context, "PUT ticket 5");
            assert_eq!(status, 422);
            assert!(message.contains("closed prevents"), "{message}");
        }
        other => panic!("expected Rejected, got {other}"),
    }
    t.custom_fields.insert("Colour".into(), json!("red"));
    match zd
        .update_fields(&TargetId("9".into()), &t)
        .await
        .unwrap_err()
    {
        TargetError::Unmappable { record, .. } => assert_eq!(record, "ticket 123 field 'Colour'"),
        other => panic!("expected Unmappable, got {other}"),
    }
    t.custom_fields.remove("Colour");
    t.status = Status::Deleted;
    assert!(matches!(
        zd.update_fields(&TargetId("9".into()), &t)
            .await
            .unwrap_err(),
        TargetError::Unmappable { .. }
    ));
    // Deleting a ticket that is already gone is fine.
    zd.delete_ticket(&TargetId("404".into())).await.unwrap();
    zd.delete_ticket(&TargetId("9".into())).await.unwrap();
}

fn body_of(bytes: &'static [u8]) -> deltadesk_core::ports::ByteStream {
    Box::pin(futures::stream::iter(
        bytes.chunks(2).map(|c| Ok(Bytes::from_static(c))),
    ))
}

#[tokio::test]
async fn upload_streams_and_verifies_what_the_target_serves() {
    use sha2::Digest;
    let (st, zd) = fake_account().await;
    let att = Attachment {
        source_id: "901".into(),
        file_name: "my shot.png".into(),
        content_type: "image/png".into(),
        size: 5,
        sha256: None,
        inline: true,
        source_url: "x".into(),
    };
    let up = zd.upload(&att, body_of(b"hello")).await.unwrap();
    assert_eq!(up.source_id, "901");
    assert_eq!(up.token, "tok0");
    assert_eq!(up.size, 5);
    assert_eq!(up.sha256, hex::encode(sha2::Sha256::digest(b"hello")));
    assert!(up
        .content_url
        .ends_with("/attachments/token/tok0/?name=my%20shot.png"));

    st.corrupt_uploads.store(true, Ordering::SeqCst);
    let e = zd.upload(&att, body_of(b"hello")).await.unwrap_err();
    assert!(
        matches!(e, TargetError::Corrupted { .. }) && e.is_retryable(),
        "{e}"
    );

    // Over the limit: refused before anything is sent.
    let zd_small = connector(&st.base.lock().unwrap().clone(), |c| {
        c.max_attachment_bytes = 4
    });
    let e = zd_small.upload(&att, body_of(b"hello")).await.unwrap_err();
    assert!(
        matches!(
            e,
            TargetError::TooLarge {
                size: 5,
                limit: 4,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(HelpDeskTarget::api_stats(&zd_small).calls, 0);
    // Declared small but streaming more than the limit: refused too.
    let lying = Attachment {
        size: 1,
        ..att.clone()
    };
    let e = zd_small
        .upload(&lying, body_of(b"hello"))
        .await
        .unwrap_err();
    assert!(matches!(e, TargetError::TooLarge { .. }), "{e}");
}

#[tokio::test]
async fn upload_without_verification_still_checks_the_stored_size() {
    let (st, _) = fake_account().await;
    let zd = connector(&st.base.lock().unwrap().clone(), |c| c.verify_uploads = false);
    let att = Attachment {
        source_id: "901".into(),
        file_name: "my shot.png".into(),
        content_type: "image/png".into(),
        size: 5,
        sha256: None,
        inline: false,
        source_url: "x".into(),
    };
    let up = zd.upload(&att, body_of(b"hello")).await.unwrap();
    assert_eq!(up.size, 5);
    // One call: the upload, no download back.
    assert_eq!(HelpDeskTarget::api_stats(&zd).calls, 1);
    st.corrupt_uploads.store(true, Ordering::SeqCst);
    let e = zd.upload(&att, body_of(b"hello")).await.unwrap_err();
    assert!(matches!(e, TargetError::Corrupted { .. }) && e.is_retryable(), "{e}");
    assert!(e.to_string().contains("stored 6"), "{e}");
}

#[tokio::test]
async fn find_and_count() {
    let (_st, zd) = fake_account().await;
    assert_eq!(zd.comment_count(&TargetId("123".into())).await.unwrap(), 2);
    assert!(matches!(
        zd.comment_count(&TargetId("abc".into())).await.unwrap_err(),
        TargetError::NotFound(_)
    ));
    let t = zd
        .read_ticket(&TargetId("123".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.source_id, TicketId("123".into()));
}

#[tokio::test]
async fn non_idempotent_writes_are_not_retried_on_5xx() {
    let hits = Arc::new(AtomicU32::new(0));
    let h = hits.clone();
    let router = Router::new().route(
        "/api/v2/tickets/{id}",
        put(move || {
            let h = h.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                StatusCode::BAD_GATEWAY
            }
        }),
    );
    let zd = connector(&serve(router).await, |_| {});
    let t = canonical();
    let cw = CommentWrite {
        comment: &t.comments[0],
        uploads: vec![],
    };
    // The author lookup needs users/create_or_update, which this server lacks (404 -> Rejected)...
    assert!(matches!(
        zd.append_comment(&TargetId("1".into()), &cw)
            .await
            .unwrap_err(),
        TargetError::Rejected { status: 404, .. }
    ));
    // ...so prime the cache by email and try again: one PUT, no retry, a retryable error.
    zd.target_users
        .lock()
        .unwrap()
        .insert("agent@acme.com".into(), 5);
    let e = zd
        .append_comment(&TargetId("1".into()), &cw)
        .await
        .unwrap_err();
    assert!(
        matches!(e, TargetError::Unavailable { .. }) && e.is_retryable(),
        "{e}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[test]
fn api_urls_keep_a_base_path_and_never_double_slashes() {
    for base in [
        "http://h:1",
        "http://h:1/",
        "http://h:1/zd",
        "http://h:1/zd/",
    ] {
        let zd = Zendesk::with_token(ZendeskConfig::new(base), None).unwrap();
        let u = zd.url(
            "/api/v2/tickets",
            &[("page[size]", "100"), ("external_id", "a b")],
        );
        let prefix = if base.contains("/zd") { "/zd" } else { "" };
        assert_eq!(u.path(), format!("{prefix}/api/v2/tickets"), "{base}");
        assert_eq!(u.query(), Some("page[size]=100&external_id=a%20b"));
    }
}

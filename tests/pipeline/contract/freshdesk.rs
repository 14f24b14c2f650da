//! The Freshdesk contract tests: the Freshdesk connector's requests (as a source and as a target) and the
//! Freshdesk simulator's responses are validated by Prism (see `mod.rs`) against the third-party description
//! `<repo>/../shared/specs/freshdesk-v2-unofficial.yml`. No official spec exists and this one is a skeleton:
//! where it is wrong about the real API (developers.freshdesk.com/api, as `docs/freshdesk-api-subset.md`
//! follows it), `tests/contract/freshdesk-overlay.json` fixes it, every entry saying what is wrong and citing
//! the docs.
//!
//! - As a source: Freshdesk simulator -> Prism -> connector -> engine -> Zendesk simulator (directly): a full
//!   migration with live agents working, deltas carrying new tickets, replies and notes with attachments,
//!   field changes, a deletion and a spam mark, then a clean verify and a throttled (429) ticket list.
//! - As a target: Zendesk simulator (directly, with live agents) -> engine -> connector -> Prism -> Freshdesk
//!   simulator: creates with attachments (multipart), notes with attachments (multipart), inline-image
//!   re-pointing, field updates and a deletion, then a clean verify.
//!
//! What is checked: every JSON request and response, its parameters, bodies, status codes and (through the
//! overlay) the rate-limit headers. Multipart requests (ticket creates, notes and replies with attachments) are
//! sent to the simulator untouched and validated as a text copy answered with the simulator's real answer (see
//! [`super::Validated`]): Prism checks their content type and the form fields the overlay declares (scalar
//! fields only — Prism keeps one value per field name, so the repeated `tags[]` and `attachments[]` and the
//! bracketed `custom_fields[cf_x]` are not checked), never the file bytes (verify compares those by sha256).
//! Not checked: attachment downloads (`attachment_url` is a pre-signed URL on another host in Freshdesk, not
//! an API path). Canaries prove that an off-spec answer, an off-spec JSON request and an off-spec multipart
//! request are each flagged.

use std::net::SocketAddr;
use std::time::Duration;

use axum::response::IntoResponse;
use deltadesk_connectors::registry::ConnectorConfig;
use deltadesk_core::engine::verify::verify;
use deltadesk_core::engine::Engine;
use deltadesk_core::model::TicketId;
use deltadesk_core::window::RunKind;
use deltadesk_sim::freshdesk::{FreshdeskRateLimits, FreshdeskSim, FreshdeskSimConfig};
use deltadesk_sim::zendesk::{LiveAgentConfig, ZendeskSim, ZendeskSimConfig};
use deltadesk_tests::{open_engine_with, run_with, runner_for, zendesk, Opts};
use serde_json::{json, Value};

use super::{assert_no_violations, send_all, Body, Canned, Setup, Validated};

const SPEC: &str = "freshdesk-v2-unofficial.yml";
const KEY: &str = "contract-freshdesk-key";
const KEY_ENV: &str = "DELTADESK_CONTRACT_FRESHDESK_KEY";
/// Ticket-list requests per minute the source simulator allows: above what a run needs, low enough for the
/// test to reach a 429 by hand.
const LIST_LIMIT: u32 = 60;

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn freshdesk(base_url: &str, per_page: u32) -> ConnectorConfig {
    serde_json::from_value(json!({"kind": "freshdesk", "base_url": base_url, "api_key_env": KEY_ENV, "publication_lag_secs": 1, "per_page": per_page}))
        .expect("freshdesk config")
}

/// One worker keeps each proxy's log in request order, so every violation names its request; long
/// visibility and lease so that a slow proxied call is not taken for a stalled worker.
fn opts() -> Opts {
    Opts { workers: 1, visibility: Duration::from_secs(15), lease_ttl: Duration::from_secs(10), ..Opts::default() }
}

struct Run {
    _dir: tempfile::TempDir,
    opts: Opts,
    engine: Engine,
}

impl Run {
    fn new(source: &ConnectorConfig, target: &ConnectorConfig) -> Run {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = opts();
        let engine = open_engine_with(dir.path(), source, target, &opts);
        Run { _dir: dir, opts, engine }
    }

    async fn full(&self) {
        let r = run_with(&self.engine, &runner_for(&self.opts), RunKind::Full).await.expect("a full run always opens");
        assert!(r.failures.is_empty() && r.count("created") >= 6, "{r:#?}");
    }

    async fn settle_and_delta(&self) {
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let r = run_with(&self.engine, &runner_for(&self.opts), RunKind::Delta).await.expect("a delta after the lag has a window");
        assert!(r.failures.is_empty(), "{r:#?}");
    }

    async fn verify_clean(&self) {
        let v = verify(self.engine.source.as_ref(), self.engine.target.as_ref(), &self.engine.settings.source_ref_prefix, 1).await.expect("verify");
        assert!(v.is_clean(), "{}\n{v:#?}", v.summary_line());
        assert!(v.comments_checked > v.source_tickets, "{v:#?}");
    }
}

/// Live (not trashed, not spam, not closed) ticket ids of the Freshdesk simulator.
fn live_ids(sim: &FreshdeskSim) -> Vec<u64> {
    sim.snapshot()["tickets"]
        .as_array()
        .expect("tickets")
        .iter()
        .filter(|t| t["deleted"] == false && t["spam"] == false && t["status"] != 5)
        .filter_map(|t| t["id"].as_u64())
        .collect()
}

/// Asserts requests of each kind named (a prefix of `<METHOD> <path?query>`) went through Prism.
fn assert_saw(v: &Validated, kinds: &[&str]) {
    let seen = v.requests();
    for k in kinds {
        assert!(seen.iter().any(|r| r.starts_with(k)), "Prism saw no `{k}` request; it saw:\n{}", seen.join("\n"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn freshdesk_as_a_source_follows_the_spec() {
    let Some(setup) = Setup::new(SPEC, "freshdesk") else { return };
    std::env::set_var(KEY_ENV, KEY);
    let source = FreshdeskSim::start(
        FreshdeskSimConfig {
            seed: 3,
            tickets: 12,
            max_seed_attachment_bytes: 16 * 1024,
            api_key: Some(KEY.into()),
            rate_limits: FreshdeskRateLimits { ticket_list: Some(LIST_LIMIT), ..FreshdeskRateLimits::unlimited() },
            ..Default::default()
        },
        local(),
    )
    .await
    .expect("freshdesk source");
    let target = ZendeskSim::start(ZendeskSimConfig { publication_lag: Duration::from_secs(1), ..ZendeskSimConfig::empty_target(900_000) }, local())
        .await
        .expect("zendesk target");
    let sv = setup.validated(&source.base_url(), "source").await;
    // Pages of 5 so that ticket lists and conversations take several pages (`page=n`, `Link`).
    let run = Run::new(&freshdesk(&sv.url, 5), &zendesk(&target.base_url(), Duration::from_secs(1)));

    let agents = source.start_live_agents(LiveAgentConfig { seed: 7, actions_per_second: 4.0, max_attachment_bytes: 8 * 1024 });
    run.full().await;
    let stats = agents.stop().await;
    assert!(stats.total > 0, "the agents did nothing: {stats:?}");
    // On top of the random agents': a new ticket with an attachment, a reply with a binary one, an internal
    // note, field changes, a deletion and a spam mark.
    let new_id = source
        .try_create_ticket("contract: new ticket", "new.customer@example.com", "<p>hello</p>", Some(("n.txt".into(), "text/plain".into(), b"new".to_vec())))
        .expect("create");
    let ids: Vec<u64> = live_ids(&source).into_iter().filter(|i| *i != new_id).collect();
    let (a, b, c, d) = (ids[0], ids[1], ids[ids.len() - 1], ids[ids.len() - 2]);
    source.add_reply(a, "<p>a reply with a file</p>", Some(("r.bin".into(), "application/octet-stream".into(), (0..=255u8).cycle().take(3000).collect())));
    source.add_note(a, true, "<p>an internal note</p>", None);
    for i in 0..6 {
        source.add_note(b, i % 2 == 0, &format!("<p>note {i}</p>"), None); // more than a page of conversations
    }
    source.update_ticket(b, json!({"status": 3, "priority": 3, "tags": ["contract", "delta"]}));
    source.delete_ticket(c);
    source.mark_spam(d);
    run.settle_and_delta().await;
    source.add_reply(new_id, "<p>a follow-up</p>", None);
    run.settle_and_delta().await;
    run.verify_clean().await;
    assert_saw(&sv, &["GET /api/v2/tickets?", "GET /api/v2/tickets/", "GET /api/v2/contacts/", "GET /api/v2/agents", "GET /api/v2/groups", "GET /api/v2/ticket_fields"]);
    assert!(
        sv.requests().iter().any(|r| r.contains("/conversations?") && r.contains("page=2")),
        "no second page of conversations (a `Link` followed) went through Prism"
    );

    // A throttled ticket list: the 429 (Retry-After, X-RateLimit-*) goes through the proxy and is validated.
    let http = reqwest::Client::new();
    let mut throttled = false;
    for _ in 0..LIST_LIMIT + 5 {
        let r = http
            .get(format!("{}/api/v2/tickets?updated_since=2020-01-01T00:00:00Z&per_page=2", sv.url))
            .basic_auth(KEY, Some("X"))
            .send()
            .await
            .expect("list through the proxy");
        if r.status() == 429 {
            throttled = true;
            break;
        }
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    }
    assert!(throttled, "the source never answered 429");
    assert_no_violations(&[&sv.prism], &setup.work).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn freshdesk_as_a_target_follows_the_spec() {
    let Some(setup) = Setup::new(SPEC, "freshdesk") else { return };
    std::env::set_var(KEY_ENV, KEY);
    let lag = Duration::from_secs(1);
    // The Zendesk seed includes inline images, so the target re-points their `src` (PUT conversations/ticket).
    let source = ZendeskSim::start(ZendeskSimConfig { seed: 6, tickets: 10, publication_lag: lag, max_seed_attachment_bytes: 16 * 1024, ..Default::default() }, local())
        .await
        .expect("zendesk source");
    let target = FreshdeskSim::start(FreshdeskSimConfig { api_key: Some(KEY.into()), ..FreshdeskSimConfig::empty_target(900_000) }, local())
        .await
        .expect("freshdesk target");
    let tv = setup.validated(&target.base_url(), "target").await;
    let run = Run::new(&zendesk(&source.base_url(), lag), &freshdesk(&tv.url, 100));
    // One requester with a company already has a contact in the target (added directly, not through
    // Prism): creating it answers 409 and the connector finds it by email (`GET /contacts?email=`).
    let snap = source.snapshot();
    let requesters: std::collections::HashSet<u64> = snap["tickets"].as_array().expect("tickets").iter().filter_map(|t| t["requester_id"].as_u64()).collect();
    let known = snap["users"]
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["role"] == "end-user" && u["organization_id"].is_u64() && requesters.contains(&u["id"].as_u64().unwrap_or(0)))
        .expect("a requester with an organization");
    let added = reqwest::Client::new()
        .post(format!("{}/api/v2/contacts", target.base_url()))
        .basic_auth(KEY, Some("X"))
        .json(&json!({"email": known["email"], "name": known["name"]}))
        .send()
        .await
        .expect("add a contact");
    assert!(added.status().is_success(), "{}", added.status());

    let agents = source.start_live_agents(LiveAgentConfig { seed: 8, actions_per_second: 4.0, max_attachment_bytes: 8 * 1024 });
    run.full().await;
    let stats = agents.stop().await;
    assert!(stats.total > 0, "the agents did nothing: {stats:?}");
    let new_id = source
        .try_create_ticket("contract: new ticket", "new.customer@example.com", "<p>hello</p>", Some(("n.bin".into(), "application/octet-stream".into(), vec![0xff, 0, 0x80])))
        .expect("create");
    let open: Vec<u64> = source
        .snapshot()["tickets"]
        .as_array()
        .expect("tickets")
        .iter()
        .filter(|t| t["deleted"] != true && t["status"] != "closed" && t["id"] != new_id)
        .filter_map(|t| t["id"].as_u64())
        .collect();
    let (a, b, c) = (open[0], open[1], open[open.len() - 1]);
    source.add_comment(a, true, "<p>a reply with a file</p>", Some(("r.bin".into(), "application/octet-stream".into(), (0..=255u8).cycle().take(3000).collect())));
    source.add_comment(a, false, "<p>an internal note</p>", None);
    // Unassigned: the update clears responder and group with null.
    source.update_ticket(b, json!({"status": "pending", "priority": "high", "tags": ["contract", "delta"], "assignee_id": null, "group_id": null}));
    source.delete_ticket(c);
    run.settle_and_delta().await;
    source.add_comment(new_id, true, "<p>a follow-up</p>", None);
    run.settle_and_delta().await;
    run.verify_clean().await;
    // Finding a copy by its source reference (what a retried create does first): search, then a scan.
    let found = run.engine.target.find_by_source_ref(&run.engine.source_ref(&TicketId(new_id.to_string()))).await.expect("find by reference");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_saw(&tv, &["POST /api/v2/tickets/", "PUT /api/v2/tickets/", "DELETE /api/v2/tickets/", "GET /api/v2/search/tickets?", "GET /api/v2/contacts?", "POST /api/v2/contacts"]);
    // Multipart creates and notes (the files) went around Prism, each validated as a text copy.
    let copies: Vec<String> = tv.requests().into_iter().filter(|r| r.ends_with(" [copy]")).collect();
    assert!(copies.iter().any(|r| r.starts_with("POST /api/v2/tickets ")), "no multipart create: {copies:?}");
    assert!(copies.iter().any(|r| r.ends_with("/notes [copy]")), "no multipart note: {copies:?}");
    assert_no_violations(&[&tv.prism], &setup.work).await;
}

/// The check can fail: a Prism with the same effective spec in front of a help desk answering off-spec flags
/// its answers, and flags off-spec requests, JSON and multipart alike. This also proves the overlaid schemas
/// still validate (Prism silently skips a schema its validator cannot compile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_freshdesk_check_fails_on_off_spec_traffic() {
    let Some(setup) = Setup::new(SPEC, "freshdesk") else { return };
    let bad = Canned::start(bad_desk).await;
    let cp = setup.prism(&bad.url, "canary");
    let form = |status: &str| {
        let b = "canary";
        let body = format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"subject\"\r\n\r\nhi\r\n--{b}\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\na@example.com\r\n\
             --{b}\r\nContent-Disposition: form-data; name=\"status\"\r\n\r\n{status}\r\n\
             --{b}\r\nContent-Disposition: form-data; name=\"attachments[]\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nxyz\r\n--{b}--\r\n"
        );
        Some(Body::Raw(format!("multipart/form-data; boundary={b}"), body.into_bytes()))
    };
    send_all(
        &cp.url,
        KEY,
        "X",
        vec![
            ("GET", "/api/v2/tickets?updated_since=2020-01-01T00:00:00Z".into(), None),
            ("GET", "/api/v2/tickets/1/conversations".into(), None),
            ("GET", "/api/v2/agents/1".into(), None),
            ("POST", "/api/v2/tickets/1/notes".into(), Some(Body::Json(json!({"body": "<p>x</p>", "private": "yes"})))),
            ("POST", "/api/v2/tickets".into(), form("bogus")),
        ],
    )
    .await;
    cp.expect_violations(&[
        "response.body.0.status",
        "response.body.0.private",
        "response.header Response header must have required property 'x-ratelimit-total'",
        "response.body.contact.email",
        "request.body.private",
        "request.body.status",
    ])
    .await;
}

/// Off-spec answers: a ticket list item with a string status, a conversation whose `private` is a string, an
/// agent whose email is not one, and none of them carrying the rate-limit headers Freshdesk always sends.
fn bad_desk(method: &axum::http::Method, path: &str) -> axum::response::Response {
    let body = if path.ends_with("/conversations") {
        json!([{"id": 1, "body": "x", "private": "no"}])
    } else if path.starts_with("/api/v2/agents/") {
        json!({"id": 1, "contact": {"name": "A", "email": "not an email"}})
    } else if path.ends_with("/notes") {
        return (axum::http::StatusCode::CREATED, axum::Json(json!({"id": 2, "body": "x", "private": true}))).into_response();
    } else if path == "/api/v2/tickets" && method == axum::http::Method::GET {
        json!([{"id": 1, "status": "open"}])
    } else {
        Value::Null
    };
    axum::Json(body).into_response()
}

//! The Zendesk contract test: the Zendesk connector's requests and the Zendesk simulator's responses are
//! validated against Zendesk's official OpenAPI description (`<repo>/../shared/specs/zendesk-support-oas.yaml`)
//! by Prism (see `mod.rs`). The spec's known defects are fixed by a small overlay kept in the project
//! (`tests/contract/zendesk-overlay.json`, every entry with its `why`).
//!
//! A small full migration, two deltas with live-agent changes, a verify, `.json` paths and a throttled (429)
//! export all go through the proxies; the test fails on any request or response violation Prism reports. A
//! canary (a help desk answering off-spec, and a malformed update) proves the check can fail. Binary uploads
//! go around Prism, which re-encodes binary bodies, and are validated as a same-sized text copy answered
//! with the simulator's real answer (see [`super::Validated`]).

use std::net::SocketAddr;
use std::time::Duration;

use axum::response::IntoResponse;
use deltadesk_connectors::registry::{build_source, build_target, ConnectorConfig};
use deltadesk_core::engine::runner::RunnerConfig;
use deltadesk_core::engine::verify::verify;
use deltadesk_core::engine::EngineSettings;
use deltadesk_core::window::{RunKind, WindowRules};
use deltadesk_sim::zendesk::{LiveAgentConfig, ZendeskSim, ZendeskSimConfig};
use deltadesk_tests::{run_with, MIGRATION};
use serde_json::json;

use super::{assert_no_violations, send_all, Body, Canned, Setup};

const SPEC: &str = "zendesk-support-oas.yaml";
const EMAIL: &str = "contract@example.com";
const TOKEN: &str = "contract-token";
const TOKEN_ENV: &str = "DELTADESK_CONTRACT_ZENDESK_TOKEN";

// ----- the test ----------------------------------------------------------------------------------------

fn connector(url: &str) -> ConnectorConfig {
    serde_json::from_value(json!({"kind": "zendesk", "base_url": url, "publication_lag_secs": 1, "email": EMAIL, "token_env": TOKEN_ENV}))
        .expect("connector config")
}

/// Live (not deleted, not closed) source ticket ids.
fn open_ids(sim: &ZendeskSim) -> Vec<u64> {
    sim.snapshot()["tickets"]
        .as_array()
        .expect("tickets")
        .iter()
        .filter(|t| !t["deleted"].as_bool().unwrap_or(false) && t["status"] != "closed")
        .filter_map(|t| t["id"].as_u64())
        .collect()
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(2100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zendesk_client_and_simulator_follow_the_official_spec() {
    let Some(setup) = Setup::new(SPEC, "zendesk") else { return };
    std::env::set_var(TOKEN_ENV, TOKEN);
    let creds = Some((EMAIL.to_string(), TOKEN.to_string()));
    let lag = Duration::from_secs(1);
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let source = ZendeskSim::start(
        ZendeskSimConfig {
            seed: 5,
            tickets: 12,
            publication_lag: lag,
            max_seed_attachment_bytes: 48 * 1024,
            export_rate_limit_per_minute: Some(40),
            credentials: creds.clone(),
            ..Default::default()
        },
        local,
    )
    .await
    .expect("source sim");
    let target = ZendeskSim::start(ZendeskSimConfig { publication_lag: lag, credentials: creds, ..ZendeskSimConfig::empty_target(900_000) }, local)
        .await
        .expect("target sim");
    // The engine talks to the help desks only through the validating proxies.
    let (sv, tv) = (setup.validated(&source.base_url(), "source").await, setup.validated(&target.base_url(), "target").await);
    let dir = tempfile::tempdir().expect("tempdir");
    let src = build_source(&connector(&sv.url)).expect("source connector");
    let tgt = build_target(&connector(&tv.url)).expect("target connector");
    let mut settings = EngineSettings::new(WindowRules::new(lag, Duration::from_secs(3)).expect("rules"), MIGRATION);
    settings.clock_skew_margin = Duration::from_secs(1);
    settings.lease_ttl = Duration::from_secs(10);
    settings.max_attempts = 3;
    let engine = deltadesk_local::open_engine(dir.path(), MIGRATION, src, tgt, settings, 10).expect("engine");
    // One worker keeps each proxy's log in request order, so every violation names its request.
    let rc = RunnerConfig { workers: 1, visibility: Duration::from_secs(15), stall_after: Duration::from_secs(16), ..RunnerConfig::default() };

    let agents = source.start_live_agents(LiveAgentConfig { seed: 4, actions_per_second: 4.0, max_attachment_bytes: 16 * 1024 });
    let full = run_with(&engine, &rc, RunKind::Full).await.expect("full run");
    assert!(full.failures.is_empty() && full.count("created") >= 6, "{full:#?}"); // agents may delete a few
    agents.stop().await;
    // Live-agent changes on top of the random agents' during the full run: a new ticket with an attachment,
    // a reply with one, an internal note, field changes and a deletion.
    let new_id = source
        .try_create_ticket("contract: new ticket", "new.customer@example.com", "<p>hello</p>", Some(("n.txt".into(), "text/plain".into(), b"new".to_vec())))
        .expect("create");
    let ids: Vec<u64> = open_ids(&source).into_iter().filter(|i| *i != new_id).collect();
    let (a, b, c) = (ids[0], ids[1], ids[ids.len() - 1]);
    source.add_comment(a, true, "<p>a reply with a file</p>", Some(("r.bin".into(), "application/octet-stream".into(), vec![7u8; 2048])));
    source.add_comment(a, false, "<p>an internal note</p>", None);
    source.update_ticket(b, json!({"status": "pending", "priority": "high", "tags": ["contract", "delta"]}));
    source.delete_ticket(c);
    settle().await;
    run_with(&engine, &rc, RunKind::Delta).await.expect("delta 1");
    source.add_comment(new_id, true, "<p>a follow-up</p>", None);
    settle().await;
    run_with(&engine, &rc, RunKind::Delta).await.expect("delta 2");
    let v = verify(engine.source.as_ref(), engine.target.as_ref(), &engine.settings.source_ref_prefix, 1).await.expect("verify");
    assert!(v.is_clean(), "{}\n{v:#?}", v.summary_line());

    let http = reqwest::Client::new();
    let start_time = chrono::Utc::now().timestamp() - 3600;
    // `.json` paths are part of the API too (the simulator hands them out in after_url and links.next).
    for path in [format!("/api/v2/tickets/{new_id}.json"), format!("/api/v2/incremental/tickets/cursor.json?start_time={start_time}&per_page=2")] {
        let r = http.get(format!("{}{path}", sv.url)).basic_auth(format!("{EMAIL}/token"), Some(TOKEN)).send().await.expect("GET .json");
        assert_eq!(r.status(), 200, "{path}");
    }
    // A throttled export: the 429 (Retry-After, X-Rate-Limit*) goes through the proxy and is validated too.
    let mut throttled = false;
    for _ in 0..80 {
        let r = http
            .get(format!("{}/api/v2/incremental/tickets/cursor?start_time={start_time}&per_page=2", sv.url))
            .basic_auth(format!("{EMAIL}/token"), Some(TOKEN))
            .send()
            .await
            .expect("export through the proxy");
        if r.status() == 429 {
            throttled = true;
            break;
        }
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    }
    assert!(throttled, "the source never answered 429");

    assert_no_violations(&[&sv.prism, &tv.prism], &setup.work).await;

    // The check can fail: a canary Prism with the same effective spec, in front of a help desk that answers
    // off-spec tickets, flags them, and flags a malformed update. This also proves the overlaid schemas still
    // validate: Prism silently skips a schema its validator cannot compile (e.g. an enum listing null).
    let bad = Canned::start(bad_desk).await;
    let cp = setup.prism(&bad.url, "canary");
    send_all(
        &cp.url,
        &format!("{EMAIL}/token"),
        TOKEN,
        vec![
            ("GET", "/api/v2/tickets/1".into(), None),
            ("GET", "/api/v2/incremental/tickets/cursor?cursor=abc".into(), None),
            ("GET", "/api/v2/groups".into(), None),
            ("PUT", "/api/v2/tickets/1".into(), Some(Body::Json(json!({"ticket": {"status": "bogus", "tags": "not-an-array"}})))),
        ],
    )
    .await;
    cp.expect_violations(&[
        "response.body.ticket.id",
        "response.body.ticket.status",
        "response.body.tickets.0.status",
        "response.body.end_of_stream",
        "response.header Response header must have required property 'retry-after'",
        "request.body.ticket.status",
        "request.body.ticket.tags",
    ])
    .await;
}

/// A help desk whose answers leave the spec: a ticket with a string id and an unknown status, an export
/// page with an unknown status and a non-boolean end_of_stream, a 429 without Retry-After.
fn bad_desk(_: &axum::http::Method, path: &str) -> axum::response::Response {
    if path == "/api/v2/groups" {
        let body = axum::Json(json!({"error": "APIRateLimitExceeded"}));
        return (axum::http::StatusCode::TOO_MANY_REQUESTS, [("x-rate-limit", "700")], body).into_response();
    }
    let body = if path.starts_with("/api/v2/incremental/") {
        json!({"tickets": [{"id": 1, "status": "bogus"}], "after_cursor": "x", "end_of_stream": "no"})
    } else {
        json!({"ticket": {"id": "one", "status": "bogus"}})
    };
    axum::Json(body).into_response()
}

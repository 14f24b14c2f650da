//! Contract tests (issue #4): the Zendesk connector's requests and the Zendesk simulator's responses are
//! validated against Zendesk's official OpenAPI description (`<repo>/../shared/specs/zendesk-support-oas.yaml`)
//! by an off-the-shelf validator, Stoplight Prism, run as a validating proxy in front of each simulator.
//! The spec's known defects are fixed by a small overlay kept in the project
//! (`tests/contract/zendesk-overlay.json`, every entry with its `why`), applied here before Prism starts.
//!
//! A small full migration, two deltas with live-agent changes, a verify, `.json` paths and a throttled (429)
//! export all go through the proxies; the test fails on any request or response violation Prism reports. A
//! canary (a help desk answering off-spec, and a malformed update) proves the check can fail. Binary uploads
//! are routed around Prism, which re-encodes binary bodies, and validated as a same-sized text copy (see
//! [`Front`]).
//!
//! Needs `DELTADESK_PRISM` (the `prism` binary; `scripts/test` installs it) and skips with a message where
//! `../shared/specs/` is absent. Runs with `--features contract`.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::response::IntoResponse;
use deltadesk_connectors::registry::{build_source, build_target, ConnectorConfig};
use deltadesk_core::engine::runner::RunnerConfig;
use deltadesk_core::engine::verify::verify;
use deltadesk_core::engine::EngineSettings;
use deltadesk_core::window::{RunKind, WindowRules};
use deltadesk_sim::zendesk::{LiveAgentConfig, ZendeskSim, ZendeskSimConfig};
use deltadesk_tests::{run_with, MIGRATION};
use serde_json::{json, Value};

const SPEC: &str = "zendesk-support-oas.yaml";
const EMAIL: &str = "contract@example.com";
const TOKEN: &str = "contract-token";
const TOKEN_ENV: &str = "DELTADESK_CONTRACT_ZENDESK_TOKEN";
const INSTALL_HINT: &str = "run ./scripts/test (it installs Prism), or install it by hand: \
npm install --prefix ~/.cache/deltadesk-prism-5.14.2 @stoplight/prism-cli@5.14.2 js-yaml@4.1.0 && \
export DELTADESK_PRISM=~/.cache/deltadesk-prism-5.14.2/node_modules/.bin/prism";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate sits in the repository").to_path_buf()
}

/// The official spec at `<repo root>/../shared/specs/`, or None where it is absent.
fn spec_path() -> Option<PathBuf> {
    let p = repo_root().join("..").join("shared").join("specs").join(SPEC);
    p.is_file().then_some(p)
}

/// The Prism binary from `DELTADESK_PRISM`; panics with install instructions where it is missing.
fn prism_path() -> PathBuf {
    let Some(p) = std::env::var_os("DELTADESK_PRISM").filter(|p| !p.is_empty()) else {
        panic!("contract tests: DELTADESK_PRISM is not set, but the spec is present. To run them, {INSTALL_HINT}");
    };
    let p = PathBuf::from(p);
    assert!(p.is_file(), "contract tests: DELTADESK_PRISM={} is not a file. {INSTALL_HINT}", p.display());
    p
}

// ----- the overlay ---------------------------------------------------------------------------------------

/// The official spec as JSON, converted by the `js-yaml` installed next to Prism (Prism reads JSON too).
fn spec_as_json(prism: &Path, spec: &Path) -> Value {
    let js_yaml = prism.parent().expect("prism's bin directory").join("js-yaml");
    assert!(js_yaml.is_file(), "contract tests: {} is missing (installed with Prism). {INSTALL_HINT}", js_yaml.display());
    let out = Command::new(&js_yaml).arg(spec).output().unwrap_or_else(|e| panic!("running {}: {e}", js_yaml.display()));
    assert!(out.status.success(), "js-yaml failed on {}: {}", spec.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("js-yaml printed JSON")
}

fn step<'a>(v: &'a mut Value, key: &Value) -> Option<&'a mut Value> {
    match (v, key) {
        (Value::Object(m), Value::String(k)) => m.get_mut(k),
        (Value::Array(a), Value::Number(n)) => a.get_mut(usize::try_from(n.as_u64()?).ok()?),
        _ => None,
    }
}

fn walk<'a>(doc: &'a mut Value, path: &[Value]) -> Result<&'a mut Value, String> {
    let mut cur = doc;
    for (i, k) in path.iter().enumerate() {
        cur = step(cur, k).ok_or_else(|| format!("{} does not exist", Value::from(path[..=i].to_vec())))?;
    }
    Ok(cur)
}

fn deep_merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(slot) => deep_merge(slot, v),
                    None => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

/// Applies one overlay entry, at `path` or at each path of `each`; errors name what did not hold (the spec
/// may have changed under the entry).
fn apply(doc: &mut Value, e: &Value) -> Result<(), String> {
    match e.get("each").and_then(Value::as_array) {
        Some(paths) => paths.iter().try_for_each(|p| {
            let mut one = e.clone();
            one["path"] = p.clone();
            apply_entry(doc, &one)
        }),
        None => apply_entry(doc, e),
    }
}

fn apply_entry(doc: &mut Value, e: &Value) -> Result<(), String> {
    let why = e.get("why").and_then(Value::as_str).unwrap_or_default();
    if why.trim().is_empty() {
        return Err("entry without a `why`".into());
    }
    let op = e.get("op").and_then(Value::as_str).ok_or("entry without an `op`")?;
    let path = e.get("path").and_then(Value::as_array).filter(|p| !p.is_empty()).ok_or("entry without a `path`")?;
    let (last, parent_path) = path.split_last().expect("non-empty");
    let value = || e.get("value").cloned().ok_or_else(|| format!("`{op}` needs a `value`"));
    match op {
        "merge" => {
            let v = value()?;
            deep_merge(walk(doc, path)?, &v);
        }
        "add" | "copy" => {
            let v = if op == "copy" {
                let from = e.get("from").and_then(Value::as_array).ok_or("`copy` needs a `from` path")?;
                walk(doc, from)?.clone()
            } else {
                value()?
            };
            match walk(doc, parent_path)? {
                Value::Object(m) => {
                    let k = last.as_str().ok_or("an object key must be a string")?;
                    if m.contains_key(k) {
                        return Err(format!("{} already exists: the spec may have been fixed", Value::from(path.clone())));
                    }
                    m.insert(k.to_string(), v);
                }
                Value::Array(a) if last == "-" => a.push(v),
                _ => return Err(format!("cannot add under {}", Value::from(parent_path.to_vec()))),
            }
        }
        "replace" => {
            let v = value()?;
            *walk(doc, path)? = v;
        }
        "remove" => {
            let removed = match walk(doc, parent_path)? {
                Value::Object(m) => last.as_str().and_then(|k| m.remove(k)),
                Value::Array(a) => last.as_u64().and_then(|i| usize::try_from(i).ok()).filter(|i| *i < a.len()).map(|i| a.remove(i)),
                _ => None,
            };
            removed.ok_or_else(|| format!("{} does not exist", Value::from(path.clone())))?;
        }
        other => return Err(format!("unknown op {other:?}")),
    }
    Ok(())
}

/// Official spec + overlay, written as JSON for Prism.
fn effective_spec(prism: &Path, spec: &Path, out: &Path) -> PathBuf {
    let overlay_path = repo_root().join("tests").join("contract").join("zendesk-overlay.json");
    let overlay: Value = serde_json::from_str(&std::fs::read_to_string(&overlay_path).expect("read the overlay")).expect("the overlay is JSON");
    let mut doc = spec_as_json(prism, spec);
    for (i, e) in overlay["entries"].as_array().expect("overlay entries").iter().enumerate() {
        if let Err(cause) = apply(&mut doc, e) {
            panic!("overlay entry {i} ({}): {cause}", e.get("why").and_then(Value::as_str).unwrap_or("?"));
        }
    }
    let path = out.join("zendesk-effective.json");
    std::fs::write(&path, serde_json::to_vec(&doc).expect("serialize")).expect("write the effective spec");
    path
}

// ----- Prism -------------------------------------------------------------------------------------------

/// A `prism proxy` process in front of one simulator; killed when dropped.
struct Prism {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for Prism {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

impl Prism {
    fn start(prism: &Path, spec: &Path, upstream: &str, log: PathBuf) -> Prism {
        let port = free_port();
        let file = std::fs::File::create(&log).expect("prism log");
        let child = Command::new(prism)
            .args(["proxy", &spec.to_string_lossy(), upstream, "--host", "127.0.0.1", "--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}. {INSTALL_HINT}", prism.display()));
        let mut p = Prism { child, url: format!("http://127.0.0.1:{port}"), log };
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("prism exited ({status}) before listening:\n{}", p.log_text());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return p;
            }
            assert!(Instant::now() < deadline, "prism did not listen on {port} within 90 s:\n{}", p.log_text());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Every violation Prism logged, each with the request it belongs to.
    fn violations(&self) -> Vec<String> {
        violations(&self.log_text())
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Prism logs each request as `[HTTP SERVER] <method> <path> ℹ info Request received`, then, per finding,
/// `[VALIDATOR] ✖ error Violation: <location> <message>` (or `⚠ warning Violation: ...`, e.g. an
/// undeclared status code), or `Request terminated with error: ...` when it refused to proxy. All count.
fn violations(log: &str) -> Vec<String> {
    let mut current = String::from("(before any request)");
    let mut out = Vec::new();
    for line in BufReader::new(log.as_bytes()).lines().map_while(Result::ok) {
        let line = strip_ansi(&line);
        if line.contains("Request received") {
            if let Some(rest) = line.split("[HTTP SERVER] ").nth(1) {
                current = rest.split(" ℹ").next().unwrap_or(rest).trim().to_string();
            }
        } else if let Some(i) = line.find("Violation:") {
            out.push(format!("{current}: {}", &line[i..]));
        } else if let Some(i) = line.find("Request terminated with error") {
            out.push(format!("{current}: {}", &line[i..]));
        }
    }
    out
}

// ----- the front ---------------------------------------------------------------------------------------

/// What the connector talks to. Prism's proxy decodes every request body as text before forwarding it
/// (stoplightio/prism#1321, #2349, #2475), so a binary upload would reach the simulator re-encoded. The front
/// forwards every request to Prism unchanged, except `POST /api/v2/uploads`: that one goes to the simulator
/// directly, and a copy with the same request line and headers but a same-sized ASCII body goes through
/// Prism, which validates its request (parameters, content type) and the simulator's response to it (the
/// copy leaves an unused upload token behind, as an abandoned upload does in Zendesk).
struct Front {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct FrontState {
    http: reqwest::Client,
    prism: String,
    upstream: String,
}

const HOP_HEADERS: [&str; 5] = ["host", "content-length", "transfer-encoding", "connection", "keep-alive"];

async fn forward(http: &reqwest::Client, base: &str, parts: &axum::http::request::Parts, body: Vec<u8>) -> axum::response::Response {
    let pq = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut rb = http.request(parts.method.clone(), format!("{base}{pq}"));
    for (k, v) in &parts.headers {
        if !HOP_HEADERS.contains(&k.as_str()) {
            rb = rb.header(k, v);
        }
    }
    let (status, headers, bytes) = match rb.body(body).send().await {
        Ok(r) => {
            let status = r.status();
            let headers = r.headers().clone();
            match r.bytes().await {
                Ok(b) => (status, headers, b.to_vec()),
                Err(e) => (reqwest::StatusCode::BAD_GATEWAY, Default::default(), format!("front: {e}").into_bytes()),
            }
        }
        Err(e) => (reqwest::StatusCode::BAD_GATEWAY, Default::default(), format!("front: {e}").into_bytes()),
    };
    let mut resp = axum::response::Response::new(axum::body::Body::from(bytes));
    *resp.status_mut() = status;
    for (k, v) in &headers {
        if !HOP_HEADERS.contains(&k.as_str()) {
            resp.headers_mut().append(k, v.clone());
        }
    }
    resp
}

async fn front_handler(axum::extract::State(s): axum::extract::State<FrontState>, req: axum::extract::Request) -> axum::response::Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b.to_vec(),
        Err(e) => return (axum::http::StatusCode::BAD_REQUEST, format!("front: {e}")).into_response(),
    };
    if parts.method == axum::http::Method::POST && parts.uri.path().trim_end_matches(".json") == "/api/v2/uploads" {
        let copy = vec![b'x'; body.len()];
        drop(forward(&s.http, &s.prism, &parts, copy).await);
        return forward(&s.http, &s.upstream, &parts, body).await;
    }
    forward(&s.http, &s.prism, &parts, body).await
}

impl Front {
    async fn start(prism: &Prism, upstream: &str) -> Front {
        let state = FrontState { http: reqwest::Client::new(), prism: prism.url.clone(), upstream: upstream.to_string() };
        let app = axum::Router::new().fallback(front_handler).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("front listener");
        let url = format!("http://{}", listener.local_addr().expect("front addr"));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("front");
        });
        Front { url, task }
    }
}

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
    let Some(spec) = spec_path() else {
        eprintln!(
            "SKIPPED contract test: the Zendesk spec is absent ({} not found next to the checkout)",
            repo_root().join("..").join("shared").join("specs").join(SPEC).display()
        );
        return;
    };
    let prism = prism_path();
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("contract");
    std::fs::create_dir_all(&work).expect("work dir");
    let effective = effective_spec(&prism, &spec, &work);

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
    let sp = Prism::start(&prism, &effective, &source.base_url(), work.join("prism-source.log"));
    let tp = Prism::start(&prism, &effective, &target.base_url(), work.join("prism-target.log"));
    eprintln!("contract: spec {} (+ overlay) -> {}; prism logs in {}", spec.display(), effective.display(), work.display());

    // The engine talks to the help desks only through the fronts and proxies.
    let dir = tempfile::tempdir().expect("tempdir");
    let (sf, tf) = (Front::start(&sp, &source.base_url()).await, Front::start(&tp, &target.base_url()).await);
    let src = build_source(&connector(&sf.url)).expect("source connector");
    let tgt = build_target(&connector(&tf.url)).expect("target connector");
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
        let r = http.get(format!("{}{path}", sp.url)).basic_auth(format!("{EMAIL}/token"), Some(TOKEN)).send().await.expect("GET .json");
        assert_eq!(r.status(), 200, "{path}");
    }
    // A throttled export: the 429 (Retry-After, X-Rate-Limit*) goes through the proxy and is validated too.
    let mut throttled = false;
    for _ in 0..80 {
        let r = http
            .get(format!("{}/api/v2/incremental/tickets/cursor?start_time={start_time}&per_page=2", sp.url))
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

    tokio::time::sleep(Duration::from_millis(500)).await; // let Prism flush its log
    let mut found = sp.violations();
    found.extend(tp.violations());
    assert!(
        found.is_empty(),
        "Prism reported {} violation(s) of the spec (+ overlay); logs in {}:\n{}",
        found.len(),
        work.display(),
        found.join("\n")
    );

    // The check can fail: a canary Prism with the same effective spec, in front of a help desk that answers
    // off-spec tickets, flags them, and flags a malformed update. This also proves the overlaid schemas still
    // validate: Prism silently skips a schema its validator cannot compile (e.g. an enum listing null).
    let bad = BadDesk::start().await;
    let cp = Prism::start(&prism, &effective, &bad.url, work.join("prism-canary.log"));
    for (method, path, body) in [
        ("GET", "/api/v2/tickets/1", None),
        ("GET", "/api/v2/incremental/tickets/cursor?cursor=abc", None),
        ("GET", "/api/v2/groups", None),
        ("PUT", "/api/v2/tickets/1", Some(json!({"ticket": {"status": "bogus", "tags": "not-an-array"}}))),
    ] {
        let mut rb = http.request(method.parse().expect("method"), format!("{}{path}", cp.url)).basic_auth(format!("{EMAIL}/token"), Some(TOKEN));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        drop(rb.send().await.expect("canary request"));
    }
    let expected = [
        "response.body.ticket.id",
        "response.body.ticket.status",
        "response.body.tickets.0.status",
        "response.body.end_of_stream",
        "response.header Response header must have required property 'retry-after'",
        "request.body.ticket.status",
        "request.body.ticket.tags",
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = cp.violations();
        let missing: Vec<&str> = expected.iter().copied().filter(|w| !found.iter().any(|v| v.contains(w))).collect();
        if missing.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "Prism did not flag {missing:?} on the canary; it reported:\n{}", found.join("\n"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A help desk whose answers leave the spec: a ticket with a string id and an unknown status, an export
/// page with an unknown status and a non-boolean end_of_stream, a 429 without Retry-After.
struct BadDesk {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for BadDesk {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl BadDesk {
    async fn start() -> BadDesk {
        async fn answer(req: axum::extract::Request) -> axum::response::Response {
            if req.uri().path() == "/api/v2/groups" {
                let body = axum::Json(json!({"error": "APIRateLimitExceeded"}));
                return (axum::http::StatusCode::TOO_MANY_REQUESTS, [("x-rate-limit", "700")], body).into_response();
            }
            let body = if req.uri().path().starts_with("/api/v2/incremental/") {
                json!({"tickets": [{"id": 1, "status": "bogus"}], "after_cursor": "x", "end_of_stream": "no"})
            } else {
                json!({"ticket": {"id": "one", "status": "bogus"}})
            };
            axum::Json(body).into_response()
        }
        let app = axum::Router::new().fallback(answer);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("canary listener");
        let url = format!("http://{}", listener.local_addr().expect("canary addr"));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("canary");
        });
        BadDesk { url, task }
    }
}

#[test]
fn overlay_ops_apply_and_refuse_stale_entries() {
    let mut doc = json!({"paths": {"/a": {"get": {"parameters": [1]}}}});
    let ok = |op: &str, path: Value, value: Value| json!({"why": "test", "op": op, "path": path, "value": value});
    apply_entry(&mut doc, &ok("add", json!(["paths", "/a", "get", "parameters", "-"]), json!(2))).unwrap();
    apply_entry(&mut doc, &ok("merge", json!(["paths", "/a"]), json!({"get": {"x": true}}))).unwrap();
    apply_entry(&mut doc, &json!({"why": "test", "op": "copy", "from": ["paths", "/a"], "path": ["paths", "/a.json"]})).unwrap();
    apply_entry(&mut doc, &ok("remove", json!(["paths", "/a", "get", "parameters", 0]), Value::Null)).unwrap();
    assert_eq!(doc["paths"]["/a"]["get"], json!({"parameters": [2], "x": true}));
    assert_eq!(doc["paths"]["/a.json"]["get"]["parameters"], json!([1, 2]));
    assert!(apply_entry(&mut doc, &ok("add", json!(["paths", "/a"]), json!({}))).is_err(), "add over an existing key");
    assert!(apply_entry(&mut doc, &ok("replace", json!(["paths", "/b"]), json!({}))).is_err(), "replace of a missing key");
    assert!(apply_entry(&mut doc, &json!({"op": "remove", "path": ["paths", "/a"]})).is_err(), "entry without why");
}

//! Contract tests (issue #4): our connectors' requests and our simulators' responses, validated against the
//! help desks' published OpenAPI descriptions in `<repo>/../shared/specs/` by an off-the-shelf validator,
//! Stoplight Prism, run as a validating proxy in front of each simulator.
//!
//! This module holds what the help desks share: finding the spec and Prism, applying the project's overlay of
//! fixes to a spec (`tests/contract/<desk>-overlay.json`, every entry with its `why`), the Prism process and
//! the violations it logs, [`Validated`] (a simulator behind Prism, with bodies Prism cannot carry routed
//! around it and validated as a text copy) and [`Canned`] (a help desk answering fixed off-spec bodies, for
//! the canaries). `zendesk.rs` and `freshdesk.rs` drive a migration through it.
//!
//! Needs `DELTADESK_PRISM` (the `prism` binary; `scripts/test` installs it) and skips with a message where
//! `../shared/specs/` is absent. Runs with `--features contract`.

mod freshdesk;
mod zendesk;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::response::IntoResponse;
use serde_json::{json, Value};

const INSTALL_HINT: &str = "run ./scripts/test (it installs Prism), or install it by hand: \
npm install --prefix ~/.cache/deltadesk-prism-5.14.2 @stoplight/prism-cli@5.14.2 js-yaml@4.1.0 && \
export DELTADESK_PRISM=~/.cache/deltadesk-prism-5.14.2/node_modules/.bin/prism";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate sits in the repository").to_path_buf()
}

/// Everything one contract test needs: the Prism binary, the effective spec (published spec + overlay) and a
/// directory for Prism's logs. `None` (after printing why) where the spec is absent: the test then skips.
pub(super) struct Setup {
    pub prism: PathBuf,
    pub spec: PathBuf,
    pub work: PathBuf,
}

impl Setup {
    /// `spec` is a file name in `../shared/specs/`, `desk` names the overlay `tests/contract/<desk>-overlay.json`
    /// and the work directory.
    pub fn new(spec: &str, desk: &str) -> Option<Setup> {
        let published = repo_root().join("..").join("shared").join("specs").join(spec);
        if !published.is_file() {
            eprintln!("SKIPPED contract test: the {desk} spec is absent ({} not found next to the checkout)", published.display());
            return None;
        }
        let prism = prism_path();
        let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("contract").join(desk);
        std::fs::create_dir_all(&work).expect("work dir");
        let overlay = repo_root().join("tests").join("contract").join(format!("{desk}-overlay.json"));
        let doc = effective_spec(&prism, &published, &overlay);
        // Tests of one help desk run in parallel and each writes the same file: write aside, then rename, so
        // a starting Prism never reads half a file.
        let path = work.join(format!("{desk}-effective.json"));
        let aside = work.join(format!("{desk}-effective.json.{}.{:?}", std::process::id(), std::thread::current().id()));
        std::fs::write(&aside, serde_json::to_vec(&doc).expect("serialize")).expect("write the effective spec");
        std::fs::rename(&aside, &path).expect("move the effective spec in place");
        eprintln!("contract: spec {} (+ overlay) -> {}; prism logs in {}", published.display(), path.display(), work.display());
        Some(Setup { prism, spec: path, work })
    }

    /// A Prism proxy with the effective spec in front of `upstream`, logging to `<work>/prism-<name>.log`.
    pub fn prism(&self, upstream: &str, name: &str) -> Prism {
        Prism::start(&self.prism, &self.spec, upstream, self.work.join(format!("prism-{name}.log")))
    }

    /// `sim` behind a validating proxy (see [`Validated`]).
    pub async fn validated(&self, sim: &str, name: &str) -> Validated {
        Validated::start(self, sim, name).await
    }
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

/// The published spec as JSON, converted by the `js-yaml` installed next to Prism (Prism reads JSON too).
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

/// The path part of the spec's first server URL (`https://{domain}.freshdesk.com/api/v2` -> `/api/v2`), if any.
fn server_base_path(doc: &Value) -> String {
    let url = doc["servers"][0]["url"].as_str().unwrap_or_default();
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    after_scheme.find('/').map_or(String::new(), |i| after_scheme[i..].trim_end_matches('/').to_string())
}

/// Published spec + overlay. The overlay names paths as the spec does; afterwards the paths are re-rooted under
/// the server URL's base path, because Prism's proxy matches the request path against `paths` as they stand
/// and ignores the servers' base path (Freshdesk's paths are relative to `.../api/v2`).
fn effective_spec(prism: &Path, spec: &Path, overlay_path: &Path) -> Value {
    let overlay: Value = serde_json::from_str(&std::fs::read_to_string(overlay_path).expect("read the overlay")).expect("the overlay is JSON");
    let mut doc = spec_as_json(prism, spec);
    for (i, e) in overlay["entries"].as_array().expect("overlay entries").iter().enumerate() {
        if let Err(cause) = apply(&mut doc, e) {
            panic!("overlay entry {i} ({}): {cause}", e.get("why").and_then(Value::as_str).unwrap_or("?"));
        }
    }
    reroot_paths(&mut doc);
    doc
}

fn reroot_paths(doc: &mut Value) {
    let base = server_base_path(doc);
    if base.is_empty() {
        return;
    }
    if let Some(Value::Object(paths)) = doc.get_mut("paths") {
        let rerooted = std::mem::take(paths).into_iter().map(|(k, v)| (format!("{base}{k}"), v)).collect();
        *paths = rerooted;
    }
}

// ----- Prism -------------------------------------------------------------------------------------------

/// A `prism proxy` process in front of one upstream; killed when dropped.
pub(super) struct Prism {
    child: Child,
    pub url: String,
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
    pub fn violations(&self) -> Vec<String> {
        violations(&self.log_text())
    }

    /// Waits until Prism reported every one of `expected` (substrings of violations); panics after 10 s naming
    /// the missing ones. Used by the canaries.
    pub async fn expect_violations(&self, expected: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self.violations();
            let missing: Vec<&str> = expected.iter().copied().filter(|w| !found.iter().any(|v| v.contains(w))).collect();
            if missing.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "Prism did not flag {missing:?} on the canary; it reported:\n{}", found.join("\n"));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Fails the test with every violation the proxies logged (after letting Prism flush its logs).
pub(super) async fn assert_no_violations(proxies: &[&Prism], work: &Path) {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let found: Vec<String> = proxies.iter().flat_map(|p| p.violations()).collect();
    assert!(found.is_empty(), "Prism reported {} violation(s) of the spec (+ overlay); logs in {}:\n{}", found.len(), work.display(), found.join("\n"));
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

fn request_line(line: &str) -> Option<String> {
    if !line.contains("Request received") {
        return None;
    }
    let rest = line.split("[HTTP SERVER] ").nth(1)?;
    Some(rest.split(" ℹ").next().unwrap_or(rest).trim().to_string())
}

/// Prism logs each request as `[HTTP SERVER] <method> <path> ℹ info Request received`, then, per finding,
/// `[VALIDATOR] ✖ error Violation: <location> <message>` (or `⚠ warning Violation: ...`, e.g. an
/// undeclared status code or an unknown route), or `Request terminated with error: ...` when it refused to
/// proxy. All count.
fn violations(log: &str) -> Vec<String> {
    let mut current = String::from("(before any request)");
    let mut out = Vec::new();
    for line in BufReader::new(log.as_bytes()).lines().map_while(Result::ok) {
        let line = strip_ansi(&line);
        if let Some(r) = request_line(&line) {
            current = r;
        } else if let Some(i) = line.find("Violation:") {
            out.push(format!("{current}: {}", &line[i..]));
        } else if let Some(i) = line.find("Request terminated with error") {
            out.push(format!("{current}: {}", &line[i..]));
        }
    }
    out
}

// ----- a simulator behind Prism --------------------------------------------------------------------------

/// The header that marks a validation copy (see [`Validated`]); its value keys the recorded answer.
const REPLAY: &str = "x-deltadesk-contract-replay";
const HOP_HEADERS: [&str; 5] = ["host", "content-length", "transfer-encoding", "connection", "keep-alive"];

/// A simulator behind Prism: connector -> front -> Prism -> back -> simulator. What the connector talks to is
/// `url` (the front).
///
/// Prism's proxy decodes every request body as text before forwarding it (stoplightio/prism#1321, #2349,
/// #2475), so binary bytes would reach the simulator re-encoded. The front therefore sends every request whose
/// body is not JSON (Zendesk's raw uploads, Freshdesk's multipart creates, replies and notes) to the simulator
/// directly, records the simulator's answer, and then sends a *validation copy* through Prism: the same
/// request line and headers, the body with every file's bytes replaced by as many `x` (the whole body for a
/// raw upload; each file part's content for multipart, its form fields and part headers unchanged), marked
/// with [`REPLAY`]. The back answers a marked copy with the recorded answer instead of forwarding it, so Prism
/// validates that request (content type, parameters, form fields) and the simulator's real answer to the
/// original, and the copy has no side effect. What this cannot check: the file bytes themselves (verify
/// compares them by sha256 end to end instead).
///
/// The front also rewrites the simulator's own base URL in a `Link` header to the front's, so that following
/// a next-page link stays behind the proxy, as it does on a real account (whose links name the host the
/// client called).
pub(super) struct Validated {
    pub url: String,
    pub prism: Prism,
    seen: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Validated {
    fn drop(&mut self) {
        self.tasks.iter().for_each(|t| t.abort());
    }
}

type Recorded = (reqwest::StatusCode, reqwest::header::HeaderMap, Vec<u8>);

#[derive(Clone)]
struct Relay {
    http: reqwest::Client,
    prism: String,
    sim: String,
    front: String,
    recorded: Arc<Mutex<HashMap<String, Recorded>>>,
    next: Arc<AtomicU64>,
    /// `<METHOD> <path?query>` of every request sent through Prism, validation copies marked `[copy]`.
    seen: Arc<Mutex<Vec<String>>>,
}

async fn listen(app: axum::Router) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("listener");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    (url, task)
}

async fn send(http: &reqwest::Client, base: &str, parts: &axum::http::request::Parts, body: Vec<u8>, mark: Option<&str>) -> Recorded {
    let pq = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut rb = http.request(parts.method.clone(), format!("{base}{pq}"));
    for (k, v) in &parts.headers {
        if !HOP_HEADERS.contains(&k.as_str()) {
            rb = rb.header(k, v);
        }
    }
    if let Some(m) = mark {
        rb = rb.header(REPLAY, m);
    }
    match rb.body(body).send().await {
        Ok(r) => {
            let (status, headers) = (r.status(), r.headers().clone());
            match r.bytes().await {
                Ok(b) => (status, headers, b.to_vec()),
                Err(e) => (reqwest::StatusCode::BAD_GATEWAY, Default::default(), format!("contract relay: {e}").into_bytes()),
            }
        }
        Err(e) => (reqwest::StatusCode::BAD_GATEWAY, Default::default(), format!("contract relay: {e}").into_bytes()),
    }
}

fn respond((status, headers, bytes): Recorded, rewrite_link: Option<(&str, &str)>) -> axum::response::Response {
    let mut resp = axum::response::Response::new(axum::body::Body::from(bytes));
    *resp.status_mut() = status;
    for (k, v) in &headers {
        if HOP_HEADERS.contains(&k.as_str()) {
            continue;
        }
        let v = match (rewrite_link, k == reqwest::header::LINK, v.to_str()) {
            (Some((from, to)), true, Ok(s)) => s.replace(from, to).parse().unwrap_or_else(|_| v.clone()),
            _ => v.clone(),
        };
        resp.headers_mut().append(k, v);
    }
    resp
}

async fn read_request(req: axum::extract::Request) -> Result<(axum::http::request::Parts, Vec<u8>), axum::response::Response> {
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => Ok((parts, b.to_vec())),
        Err(e) => Err((axum::http::StatusCode::BAD_REQUEST, format!("contract relay: {e}")).into_response()),
    }
}

fn content_type(parts: &axum::http::request::Parts) -> String {
    parts.headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_ascii_lowercase()
}

async fn front_handler(axum::extract::State(s): axum::extract::State<Relay>, req: axum::extract::Request) -> axum::response::Response {
    let (parts, body) = match read_request(req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let ct = content_type(&parts);
    let link = Some((s.sim.as_str(), s.front.as_str()));
    let line = format!("{} {}", parts.method, parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    if body.is_empty() || ct.starts_with("application/json") {
        s.seen.lock().expect("seen").push(line);
        return respond(send(&s.http, &s.prism, &parts, body, None).await, link);
    }
    s.seen.lock().expect("seen").push(format!("{line} [copy]"));
    let copy = text_copy(&ct, &body);
    let answer = send(&s.http, &s.sim, &parts, body, None).await;
    let key = s.next.fetch_add(1, Ordering::Relaxed).to_string();
    s.recorded.lock().expect("recorded").insert(key.clone(), answer.clone());
    drop(send(&s.http, &s.prism, &parts, copy, Some(&key)).await);
    respond(answer, link)
}

async fn back_handler(axum::extract::State(s): axum::extract::State<Relay>, req: axum::extract::Request) -> axum::response::Response {
    let (parts, body) = match read_request(req).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let mark = parts.headers.get(REPLAY).and_then(|v| v.to_str().ok()).map(str::to_string);
    match mark {
        Some(key) => match s.recorded.lock().expect("recorded").remove(&key) {
            Some(answer) => respond(answer, None),
            None => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, format!("contract relay: no recorded answer {key}")).into_response(),
        },
        None => respond(send(&s.http, &s.sim, &parts, body, None).await, None),
    }
}

/// `body` with the bytes Prism cannot carry replaced by as many `x`: each file part's content for multipart
/// (a part whose headers name a `filename`), the whole body otherwise.
fn text_copy(content_type: &str, body: &[u8]) -> Vec<u8> {
    let boundary = content_type.split(';').find_map(|p| p.trim().strip_prefix("boundary=")).map(|b| b.trim_matches('"').to_string());
    let Some(boundary) = boundary.filter(|_| content_type.starts_with("multipart/form-data")) else {
        return vec![b'x'; body.len()];
    };
    let delim = format!("\r\n--{boundary}");
    let mut out = body.to_vec();
    let mut pos = 0;
    while let Some(head_end) = find(&out, b"\r\n\r\n", pos) {
        let data_start = head_end + 4;
        let Some(data_end) = find(&out, delim.as_bytes(), data_start) else { break };
        let headers = String::from_utf8_lossy(&out[pos..head_end]).to_ascii_lowercase();
        if headers.contains("filename=") {
            out[data_start..data_end].fill(b'x');
        }
        pos = data_end + delim.len();
    }
    out
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|i| i + from)
}

impl Validated {
    async fn start(setup: &Setup, sim: &str, name: &str) -> Validated {
        let back_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("back listener");
        let back_url = format!("http://{}", back_listener.local_addr().expect("back addr"));
        let prism = setup.prism(&back_url, name);
        let front_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("front listener");
        let front_url = format!("http://{}", front_listener.local_addr().expect("front addr"));
        let relay = Relay {
            http: reqwest::Client::new(),
            prism: prism.url.clone(),
            sim: sim.trim_end_matches('/').to_string(),
            front: front_url.clone(),
            recorded: Arc::default(),
            next: Arc::default(),
            seen: Arc::default(),
        };
        let seen = relay.seen.clone();
        let back = axum::Router::new().fallback(back_handler).with_state(relay.clone());
        let front = axum::Router::new().fallback(front_handler).with_state(relay);
        let tasks = vec![
            tokio::spawn(async move { axum::serve(back_listener, back).await.expect("back") }),
            tokio::spawn(async move { axum::serve(front_listener, front).await.expect("front") }),
        ];
        Validated { url: front_url, prism, seen, tasks }
    }

    /// `<METHOD> <path?query>` of every request sent through Prism so far; validation copies (bodies that
    /// went around it, see above) end in ` [copy]`.
    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().expect("seen").clone()
    }
}

// ----- canaries ------------------------------------------------------------------------------------------

/// A help desk that answers every request with `answer(method, path)`: the canaries put one behind Prism to
/// prove that off-spec answers (and off-spec requests sent to it) are flagged.
pub(super) struct Canned {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Canned {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Canned {
    pub async fn start(answer: fn(&axum::http::Method, &str) -> axum::response::Response) -> Canned {
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| async move { answer(req.method(), req.uri().path()) });
        let (url, task) = listen(app).await;
        Canned { url, task }
    }
}

/// Sends each `(method, path, body)` to `base` with Basic auth `user:password`: a JSON body as JSON, a
/// `(content type, bytes)` body as is.
pub(super) async fn send_all(base: &str, user: &str, password: &str, requests: Vec<(&str, String, Option<Body>)>) {
    let http = reqwest::Client::new();
    for (method, path, body) in requests {
        let mut rb = http.request(method.parse().expect("method"), format!("{base}{path}")).basic_auth(user, Some(password));
        rb = match body {
            Some(Body::Json(v)) => rb.json(&v),
            Some(Body::Raw(ct, bytes)) => rb.header("content-type", ct).body(bytes),
            None => rb,
        };
        drop(rb.send().await.expect("canary request"));
    }
}

pub(super) enum Body {
    Json(Value),
    Raw(String, Vec<u8>),
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

#[test]
fn paths_are_rerooted_under_the_servers_base_path() {
    let mut doc = json!({"servers": [{"url": "https://{domain}.freshdesk.com/api/v2/"}], "paths": {"/tickets": {}, "/tickets/{id}": {}}});
    reroot_paths(&mut doc);
    assert_eq!(doc["paths"], json!({"/api/v2/tickets": {}, "/api/v2/tickets/{id}": {}}));
    let mut zendesk = json!({"servers": [{"url": "https://{subdomain}.{domain}.com"}], "paths": {"/api/v2/groups": {}}});
    reroot_paths(&mut zendesk);
    assert_eq!(zendesk["paths"], json!({"/api/v2/groups": {}}));
}

#[test]
fn the_text_copy_blanks_file_bytes_and_keeps_form_fields() {
    let body = b"--b1\r\nContent-Disposition: form-data; name=\"subject\"\r\n\r\nH\xc3\xa9llo\r\n--b1\r\nContent-Disposition: form-data; name=\"attachments[]\"; filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n\x00\xff\r\n\x01\r\n--b1--\r\n";
    let copy = text_copy("multipart/form-data; boundary=b1", body);
    assert_eq!(copy.len(), body.len());
    let expected = b"--b1\r\nContent-Disposition: form-data; name=\"subject\"\r\n\r\nH\xc3\xa9llo\r\n--b1\r\nContent-Disposition: form-data; name=\"attachments[]\"; filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\n\r\nxxxxx\r\n--b1--\r\n";
    assert_eq!(copy, expected.to_vec());
    assert_eq!(text_copy("image/png", b"\x89PNG"), b"xxxx".to_vec());
}

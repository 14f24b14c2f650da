//! A fault-injecting HTTP reverse proxy, for help desks that are real servers rather than simulators
//! (Request Tracker): it forwards every request to the upstream server and injects the same switchable
//! [`Faults`] the simulators do — 429 storms with `Retry-After`, 5xx bursts, hangs past the client's timeout,
//! connection resets, truncated JSON, slow answers, attachment downloads that 404 — plus, on the change
//! listing it is told about, repeated records and tickets deleted between listing and fetching (through a
//! hook that deletes them in the real server).
//!
//! Not covered: a skewed server clock. A proxy can rewrite the `Date` header but not the timestamps the
//! server stamps its own records with, and a `Date` header that disagrees with the server's own records is
//! not the fault the suite means (a server whose clock is off stamps both alike).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::future::BoxFuture;
use serde_json::{json, Value};

use crate::faults::{FaultSwitch, Faults};

/// Deletes one record in the upstream help desk by its id; resolves to whether it did.
pub type DeleteHook = Arc<dyn Fn(String) -> BoxFuture<'static, bool> + Send + Sync>;

/// The upstream's change listing, for the faults that act on listed records.
#[derive(Clone)]
pub struct Listing {
    /// GET requests whose path ends with this are the listing (e.g. `/REST/2.0/tickets`).
    pub path_suffix: String,
    /// JSON pointer to the array of listed records in its answer (`/items`; empty for a top-level array);
    /// each record has an `id` (string or number).
    pub items: String,
    /// For `delete_after_listing`: deletes a listed ticket in the upstream before the page is answered.
    pub delete: DeleteHook,
}

/// Configuration of a proxy.
#[derive(Clone)]
pub struct FaultProxyConfig {
    /// The server's base URL, e.g. `http://127.0.0.1:8080` (requests keep their path and query).
    pub upstream: String,
    /// Seeds the fault draws.
    pub seed: u64,
    /// Paths of attachment downloads (a trailing `/` makes a prefix): they only see `attachments_404`.
    /// [`FaultProxy::set_attachment_paths`] changes them, for servers whose attachment endpoint also serves
    /// other content (RT's `/attachment/{id}` holds message bodies too): then only a file's own path 404s.
    pub attachment_paths: Vec<String>,
    pub listing: Option<Listing>,
}

struct Inner {
    cfg: FaultProxyConfig,
    base_url: String,
    http: reqwest::Client,
    faults: FaultSwitch,
    attachment_paths: std::sync::Mutex<Vec<String>>,
    shutdown: tokio::sync::watch::Sender<bool>,
}

/// A running proxy (cheap to clone).
#[derive(Clone)]
pub struct FaultProxy {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy").field("base_url", &self.inner.base_url).field("upstream", &self.inner.cfg.upstream).finish()
    }
}

impl FaultProxy {
    /// Bind `addr` and forward to `cfg.upstream` in a tokio task.
    pub async fn start(cfg: FaultProxyConfig, addr: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let base_url = format!("http://{local}");
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().map_err(std::io::Error::other)?;
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let faults = FaultSwitch::new(cfg.seed);
        let attachment_paths = std::sync::Mutex::new(cfg.attachment_paths.clone());
        let proxy = FaultProxy { inner: Arc::new(Inner { cfg, base_url, http, faults, attachment_paths, shutdown: tx }) };
        let app = Router::new().fallback(forward).with_state(proxy.clone());
        tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|v| *v).await;
            };
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
                tracing::warn!(error = %e, "fault proxy stopped");
            }
        });
        Ok(proxy)
    }

    /// "http://127.0.0.1:PORT": point the connector here instead of at the upstream.
    pub fn base_url(&self) -> String {
        self.inner.base_url.clone()
    }

    /// Switches faults on (or off, with `Faults::default()`).
    pub fn set_faults(&self, f: Faults) {
        self.inner.faults.set(f);
    }

    /// Replaces the attachment download paths (see [`FaultProxyConfig::attachment_paths`]).
    pub fn set_attachment_paths(&self, paths: Vec<String>) {
        *self.inner.attachment_paths.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = paths;
    }

    /// How many requests got an injected fault so far (429, 5xx, reset, malformed, hang).
    pub fn faults_injected(&self) -> u64 {
        self.inner.faults.injected()
    }

    /// Stop serving (in-flight requests complete).
    pub fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
    }
}

fn bad_gateway(cause: String) -> Response {
    (StatusCode::BAD_GATEWAY, axum::Json(json!({"message": format!("fault proxy: upstream failed: {cause}")}))).into_response()
}

async fn forward(State(proxy): State<FaultProxy>, req: Request) -> Response {
    let inner = &proxy.inner;
    let path = req.uri().path().to_string();
    let is_attachment = inner.attachment_paths.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().any(|p| *p == path || (p.ends_with('/') && path.starts_with(p.as_str())));
    if is_attachment && inner.faults.get().attachments_404 {
        return (StatusCode::NOT_FOUND, axum::Json(json!({"message": "Resource does not exist"}))).into_response();
    }
    if !is_attachment {
        let throttled = |secs| crate::faults::throttled(secs, json!({"message": "Too Many Requests (injected)"}));
        if let Some(resp) = inner.faults.intercept(throttled).await {
            return resp;
        }
    }
    let listing = inner.cfg.listing.as_ref().filter(|l| req.method() == axum::http::Method::GET && path.ends_with(l.path_suffix.as_str()));
    let url = format!("{}{}", inner.cfg.upstream.trim_end_matches('/'), req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else { return bad_gateway("unreadable request body".into()) };
    let mut headers = parts.headers.clone();
    for h in [header::HOST, header::CONTENT_LENGTH, header::CONNECTION, header::TRANSFER_ENCODING] {
        headers.remove(h);
    }
    let sent = inner.http.request(parts.method.clone(), &url).headers(headers).body(body).send().await;
    let upstream = match sent {
        Ok(r) => r,
        Err(e) => return bad_gateway(e.without_url().to_string()),
    };
    let status = upstream.status();
    let headers = upstream.headers().clone();
    let Ok(bytes) = upstream.bytes().await else { return bad_gateway("upstream answer cut short".into()) };
    let mut bytes = relink(&headers, bytes, &inner.cfg.upstream, &inner.base_url);
    if let (Some(l), true) = (listing, status.is_success()) {
        bytes = on_listing(&inner.faults, l, bytes).await;
    }
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    for (k, v) in headers.iter().filter(|(k, _)| ![header::CONTENT_LENGTH, header::TRANSFER_ENCODING, header::CONNECTION].contains(*k)) {
        resp.headers_mut().append(k.clone(), v.clone());
    }
    if is_attachment {
        resp
    } else {
        inner.faults.rewrite(resp).await
    }
}

/// Links in a JSON answer point at the upstream; they are pointed back at the proxy so that a client
/// following them stays behind it.
fn relink(headers: &HeaderMap, bytes: Bytes, upstream: &str, base: &str) -> Bytes {
    let is_json = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("json"));
    let upstream = upstream.trim_end_matches('/');
    if !is_json || !bytes.windows(upstream.len()).any(|w| w == upstream.as_bytes()) {
        return bytes;
    }
    Bytes::from(String::from_utf8_lossy(&bytes).replace(upstream, base))
}

/// `repeat_records` and `delete_after_listing` on a listing answer.
async fn on_listing(faults: &FaultSwitch, listing: &Listing, bytes: Bytes) -> Bytes {
    let f = faults.get();
    if !f.repeat_records && f.delete_after_listing == 0 {
        return bytes;
    }
    let Ok(mut doc) = serde_json::from_slice::<Value>(&bytes) else { return bytes };
    let Some(Value::Array(items)) = doc.pointer_mut(&listing.items) else { return bytes };
    let ids: Vec<String> = items.iter().filter_map(|i| i.get("id")).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).collect();
    if f.repeat_records {
        let again: Vec<Value> = items.iter().take(2).cloned().collect();
        items.extend(again);
    }
    for id in ids {
        if faults.deletions_left() == 0 {
            break;
        }
        if (listing.delete)(id).await {
            faults.spend_deletion();
        }
    }
    serde_json::to_vec(&doc).map(Bytes::from).unwrap_or(bytes)
}

//! The Freshdesk HTTP client: API-key authentication, optional pacing, request counting, the retry policy
//! (429 honouring `Retry-After`), `Link` pagination, multipart bodies and error classification. It never logs
//! keys or bodies; at debug level it logs method, path, status and the rate-limit headroom.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use deltadesk_core::ports::{ApiCounters, ByteStream};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde_json::Value;

use super::config::FreshdeskConfig;
use crate::http::{self, ApiError, RetryPolicy};
use crate::registry::ConfigError;

/// The API key; `Debug` never shows it.
#[derive(Clone)]
struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Which failures a request may be sent again after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    /// Idempotent requests: 429, 5xx, timeouts and connection errors are retried.
    Retry,
    /// Non-idempotent requests (create a ticket, add a note): only failures that prove the request was not
    /// processed (429, connection refused) are retried; 5xx and timeouts go back to the engine, which checks
    /// the target before writing again, so a retry never duplicates a ticket or note.
    NotProcessedOnly,
}

/// A multipart/form-data body held in memory (so it can be replayed after a 429).
#[derive(Debug, Clone)]
pub(crate) struct Multipart {
    pub content_type: String,
    pub body: Bytes,
}

/// Builds a multipart body: text fields, then files (`attachments[]`).
pub(crate) fn multipart(fields: &[(String, String)], files: &[(String, String, Bytes)]) -> Multipart {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let boundary = format!("deltadesk-{nanos:x}-{n:x}");
    let clean = |s: &str| s.replace(['"', '\r', '\n'], "_");
    let mut body: Vec<u8> = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n", clean(name)).as_bytes());
        body.extend_from_slice(value.as_bytes());
        body.extend_from_slice(b"\r\n");
    }
    for (file_name, content_type, bytes) in files {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"attachments[]\"; filename=\"{}\"\r\nContent-Type: {}\r\n\r\n", clean(file_name), clean(content_type))
                .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Multipart { content_type: format!("multipart/form-data; boundary={boundary}"), body: Bytes::from(body) }
}

/// An HTTP client for one Freshdesk account.
#[derive(Debug)]
pub struct FreshdeskClient {
    http: reqwest::Client,
    base: Url,
    key: Option<ApiKey>,
    counters: Arc<ApiCounters>,
    policy: RetryPolicy,
    timeout: Duration,
    pacer: http::Pacer,
    /// `X-RateLimit-Remaining` of the last answer (u64::MAX until one is seen).
    remaining: AtomicU64,
    /// The account's clock, from the `Date` header of its answers.
    clock: http::ServerClock,
}

/// The human part of a Freshdesk error body: `description` and each `errors[]` `field: message`.
fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let mut parts: Vec<String> = Vec::new();
        if let Some(d) = v.get("description").and_then(Value::as_str) {
            parts.push(d.to_string());
        }
        for e in v.get("errors").and_then(Value::as_array).into_iter().flatten() {
            let field = e.get("field").and_then(Value::as_str).unwrap_or("?");
            let msg = e.get("message").and_then(Value::as_str).unwrap_or("");
            let code = e.get("code").and_then(Value::as_str).unwrap_or("");
            parts.push(format!("{field}: {msg} ({code})"));
        }
        if let Some(m) = v.get("message").and_then(Value::as_str) {
            parts.push(m.to_string());
        }
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    http::error_message(body)
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(resp: &Response) -> Option<String> {
    let link = resp.headers().get(reqwest::header::LINK)?.to_str().ok()?;
    link.split(',').find(|p| p.contains("rel=\"next\"")).and_then(|p| {
        let start = p.find('<')? + 1;
        let end = p.find('>')?;
        Some(p[start..end].to_string())
    })
}

impl FreshdeskClient {
    /// A client for `cfg` (validated here) using `api_key` (Basic `{api_key}:X`) when given.
    pub fn new(cfg: &FreshdeskConfig, api_key: Option<String>) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let mut base = cfg.parsed_base_url()?;
        let trimmed = base.path().trim_end_matches('/').to_string();
        base.set_path(&trimmed);
        let timeout = Duration::from_secs(cfg.timeout_secs);
        let http = reqwest::Client::builder()
            .user_agent(concat!("deltadesk/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .build()
            .map_err(|e| ConfigError::Invalid { field: "base_url".into(), cause: format!("HTTP client: {e}") })?;
        Ok(FreshdeskClient {
            http,
            base,
            key: api_key.map(ApiKey),
            counters: ApiCounters::new(),
            policy: RetryPolicy { max_retries: cfg.max_retries, max_retry_after: Duration::from_secs(cfg.max_retry_after_secs), base_backoff: Duration::from_millis(200) },
            timeout,
            pacer: http::Pacer::new(cfg.requests_per_minute),
            remaining: AtomicU64::new(u64::MAX),
            clock: http::ServerClock::default(),
        })
    }

    pub fn counters(&self) -> &Arc<ApiCounters> {
        &self.counters
    }

    /// The account's clock, as the `Date` headers of its answers tell it.
    pub(crate) fn clock(&self) -> &http::ServerClock {
        &self.clock
    }

    /// `X-RateLimit-Remaining` of the last answer, if any was seen.
    pub fn rate_limit_remaining(&self) -> Option<u64> {
        Some(self.remaining.load(Ordering::Relaxed)).filter(|r| *r != u64::MAX)
    }

    /// `{base_url}{path}?{query}`; `path` starts with `/api/v2/`, `query` is already encoded.
    pub(crate) fn api_url(&self, path: &str, query: &str) -> Url {
        let mut u = self.base.clone();
        let joined = format!("{}{}", self.base.path().trim_end_matches('/'), path);
        u.set_path(&joined);
        u.set_query(if query.is_empty() { None } else { Some(query) });
        u
    }

    /// An absolute URL the account handed out (an `attachment_url`, a `Link`), or one relative to the base.
    pub(crate) fn resolve(&self, url: &str, context: &str) -> Result<Url, ApiError> {
        let u = Url::parse(url).or_else(|_| self.base.join(url)).map_err(|e| ApiError::Malformed { record: context.to_string(), cause: format!("bad URL: {e}") })?;
        if u.scheme() != "http" && u.scheme() != "https" {
            return Err(ApiError::Malformed { record: context.to_string(), cause: "URL is not http(s)".into() });
        }
        Ok(u)
    }

    fn same_origin(&self, u: &Url) -> bool {
        u.scheme() == self.base.scheme() && u.host_str() == self.base.host_str() && u.port_or_known_default() == self.base.port_or_known_default()
    }

    /// A request with credentials — only towards the account's own origin (attachment URLs on another host,
    /// e.g. pre-signed storage links, never see the key).
    fn request(&self, method: Method, url: &Url) -> RequestBuilder {
        let rb = self.http.request(method, url.clone());
        match &self.key {
            Some(k) if self.same_origin(url) => rb.basic_auth(&k.0, Some("X")),
            _ => rb,
        }
    }

    /// Sends the request built by `build` (called again for each attempt) and classifies the answer.
    /// Successful (2xx) responses are returned with their body unread.
    pub(crate) async fn execute<F>(&self, context: &str, method: &Method, url: &Url, replay: Replay, build: F) -> Result<Response, ApiError>
    where
        F: Fn(RequestBuilder) -> RequestBuilder,
    {
        let mut retry: u32 = 0;
        loop {
            if self.same_origin(url) && http::Pacer::paces(url) {
                self.pacer.wait().await;
            }
            let rb = build(self.request(method.clone(), url));
            self.counters.calls.fetch_add(1, Ordering::Relaxed);
            let budget = retry < self.policy.max_retries;
            let resp = match rb.send().await {
                Ok(r) => r,
                Err(e) => {
                    // Without the URL: queries and attachment tokens stay out of logs and error messages.
                    let e = e.without_url();
                    tracing::debug!(method = %method, path = url.path(), error = %e, "freshdesk request failed");
                    let replayable = match replay {
                        Replay::Retry => true,
                        Replay::NotProcessedOnly => e.is_connect(),
                    };
                    if budget && replayable {
                        self.counters.retries.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(self.policy.backoff(retry)).await;
                        retry += 1;
                        continue;
                    }
                    return Err(ApiError::Unavailable { context: context.to_string(), source: Box::new(e) });
                }
            };
            let status = resp.status();
            if self.same_origin(url) {
                self.clock.sample(resp.headers());
            }
            let remaining = resp.headers().get("x-ratelimit-remaining").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
            if let Some(r) = remaining {
                self.remaining.store(r, Ordering::Relaxed);
            }
            tracing::debug!(method = %method, path = url.path(), status = status.as_u16(), rate_limit_remaining = remaining, "freshdesk");
            if status.is_success() {
                return Ok(resp);
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                self.counters.throttled.fetch_add(1, Ordering::Relaxed);
                let wait = http::retry_after(resp.headers());
                self.pacer.hold(self.policy.throttle_wait(wait)).await;
                if budget {
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    retry += 1;
                    continue;
                }
                return Err(ApiError::Throttled { context: context.to_string(), retry_after: wait });
            }
            if status.is_server_error() {
                if budget && replay == Replay::Retry {
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(self.policy.backoff(retry)).await;
                    retry += 1;
                    continue;
                }
                let message = self.error_body(resp).await;
                return Err(http::status_error(context, status, message));
            }
            let message = self.error_body(resp).await;
            return Err(http::status_error(context, status, message));
        }
    }

    async fn error_body(&self, resp: Response) -> String {
        match resp.bytes().await {
            Ok(b) => {
                self.counters.bytes_in.fetch_add(b.len() as u64, Ordering::Relaxed);
                error_message(&b)
            }
            Err(_) => "(unreadable body)".into(),
        }
    }

    async fn read_json(&self, context: &str, resp: Response) -> Result<Value, ApiError> {
        let body = resp.bytes().await.map_err(|e| ApiError::Unavailable { context: context.to_string(), source: Box::new(e.without_url()) })?;
        self.counters.bytes_in.fetch_add(body.len() as u64, Ordering::Relaxed);
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&body).map_err(|e| ApiError::Malformed { record: context.to_string(), cause: format!("response is not JSON: {e}") })
    }

    /// GET a JSON document, with retries.
    pub(crate) async fn get_json(&self, context: &str, url: &Url) -> Result<Value, ApiError> {
        Ok(self.get_page(context, url).await?.0)
    }

    /// GET a JSON page and the `rel="next"` URL of its `Link` header.
    pub(crate) async fn get_page(&self, context: &str, url: &Url) -> Result<(Value, Option<Url>), ApiError> {
        let timeout = self.timeout;
        let resp = self.execute(context, &Method::GET, url, Replay::Retry, |rb| rb.timeout(timeout)).await?;
        let next = match next_link(&resp) {
            Some(n) => Some(self.resolve(&n, context)?),
            None => None,
        };
        Ok((self.read_json(context, resp).await?, next))
    }

    /// POST/PUT/DELETE with an optional JSON body; returns the JSON answer (`Null` if empty).
    pub(crate) async fn send_json(&self, context: &str, method: Method, url: &Url, body: Option<&Value>, replay: Replay) -> Result<Value, ApiError> {
        let timeout = self.timeout;
        let bytes = match body {
            Some(v) => Some(Bytes::from(serde_json::to_vec(v).map_err(|e| ApiError::Malformed { record: context.into(), cause: e.to_string() })?)),
            None => None,
        };
        let resp = self
            .execute(context, &method, url, replay, |rb| {
                let rb = rb.timeout(timeout);
                match &bytes {
                    Some(b) => {
                        self.counters.bytes_out.fetch_add(b.len() as u64, Ordering::Relaxed);
                        rb.header(reqwest::header::CONTENT_TYPE, "application/json").body(b.clone())
                    }
                    None => rb,
                }
            })
            .await?;
        self.read_json(context, resp).await
    }

    /// POST a multipart body (held in memory, so a 429 can replay it).
    pub(crate) async fn send_multipart(&self, context: &str, method: Method, url: &Url, body: &Multipart, replay: Replay) -> Result<Value, ApiError> {
        // Large uploads need longer than one API call; the read timeout still bounds a stalled connection.
        let timeout = self.timeout.saturating_mul(4);
        let resp = self
            .execute(context, &method, url, replay, |rb| {
                self.counters.bytes_out.fetch_add(body.body.len() as u64, Ordering::Relaxed);
                rb.timeout(timeout).header(reqwest::header::CONTENT_TYPE, body.content_type.as_str()).body(body.body.clone())
            })
            .await?;
        self.read_json(context, resp).await
    }

    /// GET a body as a stream (retries only until the response starts; no whole-request timeout).
    pub(crate) async fn get_stream(&self, context: &str, url: &Url) -> Result<ByteStream, ApiError> {
        let resp = self.execute(context, &Method::GET, url, Replay::Retry, |rb| rb).await?;
        Ok(http::counted_download(resp, self.counters.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_message_names_fields() {
        let b = br#"{"description":"Validation failed","errors":[{"field":"page","message":"It should be a Positive Integer less than or equal to 300","code":"invalid_value"}]}"#;
        assert_eq!(error_message(b), "Validation failed; page: It should be a Positive Integer less than or equal to 300 (invalid_value)");
        assert_eq!(error_message(br#"{"code":"invalid_credentials","message":"You have to be logged in"}"#), "You have to be logged in");
        assert_eq!(error_message(b" plain "), "plain");
    }

    #[test]
    fn multipart_body_has_fields_then_files() {
        let m = multipart(&[("subject".into(), "Hi \"there\"".into()), ("tags[]".into(), "a".into())], &[("a b.png".into(), "image/png".into(), Bytes::from_static(b"\x89PNG"))]);
        let boundary = m.content_type.strip_prefix("multipart/form-data; boundary=").unwrap();
        let text = String::from_utf8_lossy(&m.body);
        assert!(text.starts_with(&format!("--{boundary}\r\nContent-Disposition: form-data; name=\"subject\"\r\n\r\nHi \"there\"\r\n")));
        assert!(text.contains("name=\"attachments[]\"; filename=\"a b.png\"\r\nContent-Type: image/png\r\n\r\n"));
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
    }
}

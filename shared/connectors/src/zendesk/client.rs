//! The Zendesk HTTP client: authentication, request counting, the retry policy and error classification.
//! It never logs tokens or bodies; at debug level it logs method, path and status.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use deltadesk_core::ports::{ApiCounters, ByteStream};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde_json::Value;

use super::config::ZendeskConfig;
use crate::http::{self, ApiError, RetryPolicy};
use crate::registry::ConfigError;

/// Basic-auth credentials; `Debug` never shows the token.
#[derive(Clone)]
struct Credentials {
    user: String,
    token: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// An HTTP client for one Zendesk account.
#[derive(Debug, Clone)]
pub struct ZendeskClient {
    http: reqwest::Client,
    base: Url,
    auth: Option<Credentials>,
    counters: Arc<ApiCounters>,
    policy: RetryPolicy,
    timeout: Duration,
    /// The account's clock, from the `Date` header of its answers.
    clock: http::ServerClock,
    /// Shared by clones: the budget is the account's, not one clone's.
    pacer: Arc<http::Pacer>,
}

/// Which failures a request may be sent again after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    /// Idempotent requests: 429, 5xx, timeouts and connection errors are retried.
    Retry,
    /// Non-idempotent requests (import a ticket, append a comment): only failures that prove the request was
    /// not processed (429, connection refused) are retried; 5xx and timeouts go back to the engine, which
    /// checks the target before writing again, so a retry never duplicates a ticket or comment.
    NotProcessedOnly,
    /// Streamed bodies cannot be replayed: every failure goes back to the caller.
    Once,
}

impl ZendeskClient {
    /// A client for `cfg` (validated here) using `token` as the API token. Basic auth is sent only when
    /// both `cfg.email` and `token` are set.
    pub fn new(cfg: &ZendeskConfig, token: Option<String>) -> Result<Self, ConfigError> {
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
            .map_err(|e| ConfigError::Invalid {
                field: "base_url".into(),
                cause: format!("HTTP client: {e}"),
            })?;
        let auth = match (&cfg.email, token) {
            (Some(email), Some(token)) => Some(Credentials {
                user: format!("{email}/token"),
                token,
            }),
            _ => None,
        };
        Ok(ZendeskClient {
            http,
            base,
            auth,
            counters: ApiCounters::new(),
            policy: RetryPolicy {
                max_retries: cfg.max_retries,
                max_retry_after: Duration::from_secs(cfg.max_retry_after_secs),
                base_backoff: Duration::from_millis(200),
            },
            timeout,
            clock: http::ServerClock::default(),
            pacer: Arc::new(http::Pacer::new(cfg.requests_per_minute)),
        })
    }

    /// Waits until a paced request sent now would leave at once (see [`http::Pacer::until_free`]).
    pub(crate) async fn until_paced_turn(&self) {
        self.pacer.until_free().await;
    }

    /// The account's clock, as the `Date` headers of its answers tell it.
    pub(crate) fn clock(&self) -> &http::ServerClock {
        &self.clock
    }

    /// The request counters of this client.
    pub fn counters(&self) -> &Arc<ApiCounters> {
        &self.counters
    }

    /// `{base_url}{path}?{query}`; `path` starts with `/api/v2/`, `query` is already encoded.
    pub(crate) fn api_url(&self, path: &str, query: &str) -> Url {
        let mut u = self.base.clone();
        let joined = format!("{}{}", self.base.path().trim_end_matches('/'), path);
        u.set_path(&joined);
        u.set_query(if query.is_empty() { None } else { Some(query) });
        u
    }

    /// An absolute URL the account handed out (attachment `content_url`), or one relative to the base.
    pub(crate) fn resolve(&self, url: &str, context: &str) -> Result<Url, ApiError> {
        let u = Url::parse(url)
            .or_else(|_| self.base.join(url))
            .map_err(|e| ApiError::Malformed {
                record: context.to_string(),
                cause: format!("bad URL: {e}"),
            })?;
        if u.scheme() != "http" && u.scheme() != "https" {
            return Err(ApiError::Malformed {
                record: context.to_string(),
                cause: "URL is not http(s)".into(),
            });
        }
        Ok(u)
    }

    fn same_origin(&self, u: &Url) -> bool {
        u.scheme() == self.base.scheme()
            && u.host_str() == self.base.host_str()
            && u.port_or_known_default() == self.base.port_or_known_default()
    }

    /// A request with credentials — only towards the account's own origin, so tokens never leave it.
    fn request(&self, method: Method, url: &Url) -> RequestBuilder {
        let rb = self.http.request(method, url.clone());
        match &self.auth {
            Some(c) if self.same_origin(url) => rb.basic_auth(&c.user, Some(&c.token)),
            _ => rb,
        }
    }

    /// Sends the request built by `build` (called again for each attempt) and classifies the answer.
    /// Successful (2xx) responses are returned with their body unread.
    pub(crate) async fn execute<F>(
        &self,
        context: &str,
        method: &Method,
        url: &Url,
        replay: Replay,
        build: F,
    ) -> Result<Response, ApiError>
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
                    tracing::debug!(method = %method, path = url.path(), error = %e, "zendesk request failed");
                    let replayable = match replay {
                        Replay::Retry => true,
                        Replay::NotProcessedOnly => e.is_connect(),
                        Replay::Once => false,
                    };
                    if budget && replayable {
                        self.counters.retries.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(self.policy.backoff(retry)).await;
                        retry += 1;
                        continue;
                    }
                    return Err(ApiError::Unavailable {
                        context: context.to_string(),
                        source: Box::new(e),
                    });
                }
            };
            let status = resp.status();
            self.clock.sample(resp.headers());
            tracing::debug!(method = %method, path = url.path(), status = status.as_u16(), "zendesk");
            if status.is_success() {
                return Ok(resp);
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                self.counters.throttled.fetch_add(1, Ordering::Relaxed);
                let wait = http::retry_after(resp.headers());
                self.pacer.hold(self.policy.throttle_wait(wait)).await;
                if budget && replay != Replay::Once {
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    retry += 1;
                    continue;
                }
                return Err(ApiError::Throttled {
                    context: context.to_string(),
                    retry_after: wait,
                });
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
                self.counters
                    .bytes_in
                    .fetch_add(b.len() as u64, Ordering::Relaxed);
                http::error_message(&b)
            }
            Err(_) => "(unreadable body)".into(),
        }
    }

    async fn read_json(&self, context: &str, resp: Response) -> Result<Value, ApiError> {
        let body = resp.bytes().await.map_err(|e| ApiError::Unavailable {
            context: context.to_string(),
            source: Box::new(e.without_url()),
        })?;
        self.counters
            .bytes_in
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&body).map_err(|e| {
            if e.is_eof() {
                // Cut off mid-document: a dropped connection or proxy, worth asking again.
                ApiError::Unavailable { context: context.to_string(), source: format!("response ends early: {e}").into() }
            } else {
                ApiError::Malformed { record: context.to_string(), cause: format!("response is not JSON: {e}") }
            }
        })
    }

    /// GET a JSON document, with retries. A body that breaks off is fetched again (a GET is safe to repeat;
    /// a cut connection or a glitching proxy is the usual cause); a complete body that is not JSON is
    /// reported as malformed at once.
    pub(crate) async fn get_json(&self, context: &str, url: &Url) -> Result<Value, ApiError> {
        let timeout = self.timeout;
        let mut attempt: u32 = 0;
        loop {
            let resp = self
                .execute(context, &Method::GET, url, Replay::Retry, |rb| {
                    rb.timeout(timeout)
                })
                .await?;
            match self.read_json(context, resp).await {
                // Only a body that broke off is fetched again; one that is complete but not JSON stays so.
                Err(ApiError::Unavailable { .. }) if attempt < self.policy.max_retries => {
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(self.policy.backoff(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// POST/PUT/DELETE with an optional JSON body; returns the JSON answer (`Null` if empty).
    pub(crate) async fn send_json(
        &self,
        context: &str,
        method: Method,
        url: &Url,
        body: Option<&Value>,
        replay: Replay,
    ) -> Result<Value, ApiError> {
        let timeout = self.timeout;
        let bytes = match body {
            Some(v) => Some(bytes::Bytes::from(serde_json::to_vec(v).map_err(|e| {
                ApiError::Malformed {
                    record: context.into(),
                    cause: e.to_string(),
                }
            })?)),
            None => None,
        };
        let resp = self
            .execute(context, &method, url, replay, |rb| {
                let rb = rb.timeout(timeout);
                match &bytes {
                    Some(b) => {
                        self.counters
                            .bytes_out
                            .fetch_add(b.len() as u64, Ordering::Relaxed);
                        rb.header(reqwest::header::CONTENT_TYPE, "application/json")
                            .body(b.clone())
                    }
                    None => rb,
                }
            })
            .await?;
        // A write whose answer cannot be read may still have been applied: report it as a transient
        // failure, so the engine settles it through its in-doubt path instead of failing the ticket.
        self.read_json(context, resp).await.map_err(|e| match e {
            ApiError::Malformed { record, cause } => ApiError::Unavailable { context: record, source: cause.into() },
            other => other,
        })
    }

    /// POST a streamed body once (a stream cannot be replayed: 429/5xx come back as retryable errors).
    pub(crate) async fn post_stream_once(
        &self,
        context: &str,
        url: &Url,
        content_type: &str,
        body: reqwest::Body,
    ) -> Result<Value, ApiError> {
        let body = std::sync::Mutex::new(Some(body));
        let resp = self
            .execute(context, &Method::POST, url, Replay::Once, |rb| {
                let rb = rb.header(reqwest::header::CONTENT_TYPE, content_type);
                match body.lock().ok().and_then(|mut b| b.take()) {
                    Some(b) => rb.body(b),
                    None => rb,
                }
            })
            .await?;
        self.read_json(context, resp).await
    }

    /// GET a body as a stream (retries only until the response starts; no whole-request timeout).
    pub(crate) async fn get_stream(
        &self,
        context: &str,
        url: &Url,
    ) -> Result<ByteStream, ApiError> {
        let resp = self
            .execute(context, &Method::GET, url, Replay::Retry, |rb| rb)
            .await?;
        Ok(http::counted_download(resp, self.counters.clone()))
    }
}

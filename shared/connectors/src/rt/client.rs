//! The RT REST2 HTTP client: authentication (token or basic), request counting, the retry policy and error
//! classification. It never logs credentials or bodies; at debug level it logs method, path and status.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use deltadesk_core::ports::ApiCounters;
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde_json::Value;

use super::config::RtConfig;
use crate::http::{self, ApiError, RetryPolicy};
use crate::registry::ConfigError;

/// How requests authenticate; `Debug` never shows the secret.
#[derive(Clone)]
enum Auth {
    None,
    /// `Authorization: token {token}` (RT::Authen::Token, part of RT 5).
    Token(String),
    /// `Authorization: Basic {user}:{password}`.
    Basic { user: String, password: String },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Token(_) => f.write_str("Token(<redacted>)"),
            Auth::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
        }
    }
}

/// An HTTP client for one RT instance's REST2 API.
#[derive(Debug, Clone)]
pub struct RtClient {
    http: reqwest::Client,
    /// `{base_url}/REST/2.0`, without a trailing slash.
    api: Url,
    auth: Auth,
    counters: Arc<ApiCounters>,
    policy: RetryPolicy,
    timeout: Duration,
}

impl RtClient {
    /// A client for `cfg` (validated here). `secret` is the token, or the password when `cfg.user` is set.
    pub fn new(cfg: &RtConfig, secret: Option<String>) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let mut api = cfg.parsed_base_url()?;
        let path = format!("{}/REST/2.0", api.path().trim_end_matches('/'));
        api.set_path(&path);
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
        let auth = match (&cfg.user, secret) {
            (Some(user), Some(password)) => Auth::Basic {
                user: user.clone(),
                password,
            },
            (None, Some(token)) => Auth::Token(token),
            (_, None) => Auth::None,
        };
        Ok(RtClient {
            http,
            api,
            auth,
            counters: ApiCounters::new(),
            policy: RetryPolicy {
                max_retries: cfg.max_retries,
                max_retry_after: Duration::from_secs(cfg.max_retry_after_secs),
                base_backoff: Duration::from_millis(200),
            },
            timeout,
        })
    }

    /// The request counters of this client.
    pub fn counters(&self) -> &Arc<ApiCounters> {
        &self.counters
    }

    /// `{base_url}/REST/2.0{path}?{query}`; `path` starts with `/`, `query` is already encoded.
    pub(crate) fn url(&self, path: &str, query: &str) -> Url {
        let mut u = self.api.clone();
        let joined = format!("{}{}", self.api.path(), path);
        u.set_path(&joined);
        u.set_query(if query.is_empty() { None } else { Some(query) });
        u
    }

    fn request(&self, method: Method, url: &Url) -> RequestBuilder {
        let rb = self.http.request(method, url.clone()).timeout(self.timeout);
        match &self.auth {
            Auth::None => rb,
            Auth::Token(t) => rb.header(reqwest::header::AUTHORIZATION, format!("token {t}")),
            Auth::Basic { user, password } => rb.basic_auth(user, Some(password)),
        }
    }

    /// Sends the request (every call here is a read, so every transient failure is retried) and classifies
    /// the answer. Successful (2xx) responses are returned with their body unread.
    async fn execute(
        &self,
        context: &str,
        method: &Method,
        url: &Url,
        body: Option<&bytes::Bytes>,
    ) -> Result<Response, ApiError> {
        let mut retry: u32 = 0;
        loop {
            let mut rb = self.request(method.clone(), url);
            if let Some(b) = body {
                self.counters.bytes_out.fetch_add(b.len() as u64, Ordering::Relaxed);
                rb = rb
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.clone());
            }
            self.counters.calls.fetch_add(1, Ordering::Relaxed);
            let budget = retry < self.policy.max_retries;
            let resp = match rb.send().await {
                Ok(r) => r,
                Err(e) => {
                    // Without the URL: TicketSQL queries stay out of error messages.
                    let e = e.without_url();
                    tracing::debug!(method = %method, path = url.path(), error = %e, "rt request failed");
                    if budget {
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
            tracing::debug!(method = %method, path = url.path(), status = status.as_u16(), "rt");
            if status.is_success() {
                return Ok(resp);
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                self.counters.throttled.fetch_add(1, Ordering::Relaxed);
                let wait = http::retry_after(resp.headers());
                if budget {
                    self.counters.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(self.policy.throttle_wait(wait)).await;
                    retry += 1;
                    continue;
                }
                return Err(ApiError::Throttled {
                    context: context.to_string(),
                    retry_after: wait,
                });
            }
            if status.is_server_error() {
                if budget {
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
                // REST2 errors are `{"message": "..."}`.
                serde_json::from_slice::<Value>(&b)
                    .ok()
                    .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or_else(|| http::error_message(&b))
            }
            Err(_) => "(unreadable body)".into(),
        }
    }

    async fn read_json(&self, context: &str, resp: Response) -> Result<Value, ApiError> {
        let body = resp.bytes().await.map_err(|e| ApiError::Unavailable {
            context: context.to_string(),
            source: Box::new(e.without_url()),
        })?;
        self.counters.bytes_in.fetch_add(body.len() as u64, Ordering::Relaxed);
        serde_json::from_slice(&body).map_err(|e| ApiError::Malformed {
            record: context.to_string(),
            cause: format!("response is not JSON: {e}"),
        })
    }

    /// GET a JSON document, with retries.
    pub(crate) async fn get_json(&self, context: &str, url: &Url) -> Result<Value, ApiError> {
        let resp = self.execute(context, &Method::GET, url, None).await?;
        self.read_json(context, resp).await
    }

    /// POST a JSON query (REST2's JSON searches are POSTs but change nothing, so they are retried too).
    pub(crate) async fn post_query(&self, context: &str, url: &Url, body: &Value) -> Result<Value, ApiError> {
        let bytes = bytes::Bytes::from(serde_json::to_vec(body).map_err(|e| ApiError::Malformed {
            record: context.into(),
            cause: e.to_string(),
        })?);
        let resp = self.execute(context, &Method::POST, url, Some(&bytes)).await?;
        self.read_json(context, resp).await
    }
}

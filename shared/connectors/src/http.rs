//! Connector-neutral HTTP plumbing: the internal error type (converted into each port's error enum at the
//! port boundary), the retry policy, `Retry-After` parsing, query encoding and byte-counting streams.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use deltadesk_core::ports::{ApiCounters, ByteStream, SourceError, TargetError};
use futures::StreamExt;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What went wrong talking to a help desk, before it is phrased as a source or target error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// Connection failures, timeouts, 5xx after the retries.
    #[error("{context}: unavailable: {source}")]
    Unavailable {
        context: String,
        #[source]
        source: BoxError,
    },
    /// 429 after the retries (or at once for requests that cannot be replayed).
    #[error("{context}: throttled, retry after {retry_after:?}")]
    Throttled {
        context: String,
        retry_after: Duration,
    },
    /// 401/403.
    #[error("{0}")]
    Auth(String),
    /// 404; callers that expect it turn it into `None`/`Ok`.
    #[error("{context}: not found")]
    NotFound { context: String },
    /// Any other 4xx.
    #[error("{context}: HTTP {status}: {message}")]
    Rejected {
        context: String,
        status: u16,
        message: String,
    },
    /// A response or record that does not have the documented shape.
    #[error("{record}: {cause}")]
    Malformed { record: String, cause: String },
}

impl From<ApiError> for SourceError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Unavailable { context, source } => {
                SourceError::Unavailable { context, source }
            }
            ApiError::Throttled {
                context,
                retry_after,
            } => SourceError::Throttled {
                context,
                retry_after,
            },
            ApiError::Auth(m) => SourceError::Auth(m),
            ApiError::NotFound { context } => SourceError::Rejected {
                context,
                status: 404,
                message: "not found".into(),
            },
            ApiError::Rejected {
                context,
                status,
                message,
            } => SourceError::Rejected {
                context,
                status,
                message,
            },
            ApiError::Malformed { record, cause } => SourceError::Malformed { record, cause },
        }
    }
}

impl From<ApiError> for TargetError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Unavailable { context, source } => {
                TargetError::Unavailable { context, source }
            }
            ApiError::Throttled {
                context,
                retry_after,
            } => TargetError::Throttled {
                context,
                retry_after,
            },
            ApiError::Auth(m) => TargetError::Auth(m),
            ApiError::NotFound { context } => TargetError::Rejected {
                context,
                status: 404,
                message: "not found".into(),
            },
            ApiError::Rejected {
                context,
                status,
                message,
            } => TargetError::Rejected {
                context,
                status,
                message,
            },
            // The target has no "malformed" variant: an answer we cannot read is a refusal we cannot act on.
            ApiError::Malformed { record, cause } => TargetError::Rejected {
                context: format!("reading {record}"),
                status: 200,
                message: format!("unexpected response: {cause}"),
            },
        }
    }
}

/// The error for a non-success answer once no retry is left: 5xx → `Unavailable` (retryable), 401/403 →
/// `Auth`, 404 → `NotFound`, any other status → `Rejected` with the help desk's message. One mapping for
/// every connector, so they classify failures alike.
pub(crate) fn status_error(context: &str, status: reqwest::StatusCode, message: String) -> ApiError {
    match status {
        s if s.is_server_error() => ApiError::Unavailable { context: context.to_string(), source: format!("HTTP {}: {message}", s.as_u16()).into() },
        reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN => ApiError::Auth(format!("{context}: HTTP {}: {message}", status.as_u16())),
        reqwest::StatusCode::NOT_FOUND => ApiError::NotFound { context: context.to_string() },
        _ => ApiError::Rejected { context: context.to_string(), status: status.as_u16(), message },
    }
}

/// The server's clock as its `Date` headers tell it: the offset from ours of the last answer, and when
/// that sample was taken. Clones share the sample.
#[derive(Debug, Clone)]
pub(crate) struct ServerClock {
    /// The server's clock minus ours, in ms (i64::MIN = no sample yet).
    offset_ms: Arc<std::sync::atomic::AtomicI64>,
    /// When the sample was taken (our Unix ms).
    sampled_at_ms: Arc<std::sync::atomic::AtomicI64>,
}

impl Default for ServerClock {
    fn default() -> Self {
        ServerClock { offset_ms: Arc::new(std::sync::atomic::AtomicI64::new(i64::MIN)), sampled_at_ms: Arc::new(std::sync::atomic::AtomicI64::new(0)) }
    }
}

impl ServerClock {
    /// How old a sample may be and still be used: clocks drift far slower than that.
    pub const FRESH: Duration = Duration::from_secs(60);

    /// The server's clock minus ours, as last seen in a `Date` header, and how old that sample is.
    pub fn offset(&self) -> Option<(chrono::Duration, Duration)> {
        let off = self.offset_ms.load(Ordering::Relaxed);
        if off == i64::MIN {
            return None;
        }
        let age_ms = chrono::Utc::now().timestamp_millis() - self.sampled_at_ms.load(Ordering::Relaxed);
        Some((chrono::Duration::milliseconds(off), Duration::from_millis(age_ms.max(0) as u64)))
    }

    /// A sample younger than [`ServerClock::FRESH`], if there is one.
    pub fn fresh_offset(&self) -> Option<chrono::Duration> {
        self.offset().filter(|(_, age)| *age < Self::FRESH).map(|(o, _)| o)
    }

    /// Records the server's clock from an answer's `Date` header (one-second resolution: the offset is taken
    /// against the middle of our current second so the rounding error stays within ±0.5 s).
    pub fn sample(&self, headers: &reqwest::header::HeaderMap) {
        let Some(date) = headers.get(reqwest::header::DATE).and_then(|d| d.to_str().ok()) else { return };
        let Ok(server) = chrono::DateTime::parse_from_rfc2822(date) else { return };
        let now = chrono::Utc::now().timestamp_millis();
        self.offset_ms.store(server.timestamp_millis() + 500 - now, Ordering::Relaxed);
        self.sampled_at_ms.store(now, Ordering::Relaxed);
    }

    /// The offset a source port reports: a fresh sample, else one taken by `probe` (any call to the server).
    /// Only real skew is reported: `Date` has one-second resolution, so a sample is only good to ±0.5 s and
    /// smaller differences are noise (covered by the clock-skew margin and the overlap).
    pub async fn source_offset<T, E>(&self, probe: impl std::future::Future<Output = Result<T, E>>) -> Result<Option<chrono::Duration>, E> {
        if self.fresh_offset().is_none() {
            probe.await?;
        }
        Ok(self.fresh_offset().filter(|o| o.num_milliseconds().abs() >= 2000))
    }
}

/// Retry policy: 429 honours `Retry-After` up to a cap; 5xx, timeouts and connection errors back off by
/// doubling from `base_backoff` (no jitter); at most `max_retries` retries per request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    pub max_retries: u32,
    pub max_retry_after: Duration,
    pub base_backoff: Duration,
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based) after a 5xx or transport error.
    pub fn backoff(&self, retry: u32) -> Duration {
        self.base_backoff.saturating_mul(1u32 << retry.min(16))
    }

    /// The wait a 429 asks for, capped.
    pub fn throttle_wait(&self, retry_after: Duration) -> Duration {
        retry_after.min(self.max_retry_after)
    }
}

/// `Retry-After` in seconds (HTTP dates are not used by the help desks we talk to); 1 s if absent or unreadable.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Duration {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(86_400.0)))
        .unwrap_or(Duration::from_secs(1))
}

/// The human part of an error body: `error` and `description` of a JSON body, else the start of the text.
pub(crate) fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let field = |k: &str| match v.get(k) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Object(o)) => o
                .get("title")
                .or(o.get("message"))
                .and_then(|t| t.as_str())
                .map(str::to_string),
            _ => None,
        };
        match (field("error"), field("description")) {
            (Some(e), Some(d)) => return format!("{e}: {d}"),
            (Some(e), None) => return e,
            (None, Some(d)) => return d,
            (None, None) => {}
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".into();
    }
    text.chars().take(200).collect()
}

/// Percent-encodes a query value or path segment (RFC 3986 unreserved characters pass through).
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Builds a query string from literal keys (may contain `[]`) and encoded values.
pub(crate) fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A response body as a [`ByteStream`], counting bytes into `bytes_in`.
pub(crate) fn counted_download(resp: reqwest::Response, counters: Arc<ApiCounters>) -> ByteStream {
    Box::pin(resp.bytes_stream().map(move |chunk| match chunk {
        Ok(b) => {
            counters
                .bytes_in
                .fetch_add(b.len() as u64, Ordering::Relaxed);
            Ok(b)
        }
        Err(e) => Err(std::io::Error::other(e.without_url())),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base() {
        let p = RetryPolicy {
            max_retries: 5,
            max_retry_after: Duration::from_secs(120),
            base_backoff: Duration::from_millis(200),
        };
        assert_eq!(p.backoff(0), Duration::from_millis(200));
        assert_eq!(p.backoff(1), Duration::from_millis(400));
        assert_eq!(p.backoff(3), Duration::from_millis(1600));
        assert_eq!(
            p.throttle_wait(Duration::from_secs(600)),
            Duration::from_secs(120)
        );
    }

    #[test]
    fn error_message_prefers_error_and_description() {
        assert_eq!(
            error_message(br#"{"error":"RecordInvalid","description":"Status: closed prevents ticket update"}"#),
            "RecordInvalid: Status: closed prevents ticket update"
        );
        assert_eq!(
            error_message(br#"{"error":"Couldn't authenticate you"}"#),
            "Couldn't authenticate you"
        );
        assert_eq!(error_message(b"  oops "), "oops");
        assert_eq!(error_message(b""), "(empty body)");
    }

    #[test]
    fn query_values_are_encoded_keys_kept() {
        assert_eq!(
            query(&[("page[size]", "100"), ("external_id", "zd:1 &x")]),
            "page[size]=100&external_id=zd%3A1%20%26x"
        );
    }
}

/// Spends a help desk's rate-limit budget evenly instead of in bursts: requests leave at most one per
/// `60 s / requests_per_minute` (a token bucket holding one token), and a 429 pauses every request of the
/// connector until its `Retry-After` has passed. Without it, every worker fires until the window is spent
/// and each then collects its own 429 — requests that count against the budget and do nothing.
#[derive(Debug)]
pub(crate) struct Pacer {
    /// None: no steady pacing, only the shared pause after a 429.
    interval: Option<Duration>,
    next: tokio::sync::Mutex<tokio::time::Instant>,
}

impl Pacer {
    pub(crate) fn new(requests_per_minute: Option<u32>) -> Pacer {
        Pacer { interval: requests_per_minute.filter(|r| *r > 0).map(|r| Duration::from_secs(60) / r), next: tokio::sync::Mutex::new(tokio::time::Instant::now()) }
    }

    /// Waits for this request's turn.
    pub(crate) async fn wait(&self) {
        let mut next = self.next.lock().await;
        let now = tokio::time::Instant::now();
        let at = (*next).max(now);
        *next = at + self.interval.unwrap_or_default();
        drop(next);
        tokio::time::sleep_until(at).await;
    }

    /// Waits until a request sent now would leave at once (without taking the turn): a batch that waits
    /// here keeps collecting members instead of queueing a half-full request behind others.
    pub(crate) async fn until_free(&self) {
        let at = *self.next.lock().await;
        tokio::time::sleep_until(at).await;
    }

    /// Whether a request to `url` counts against the help desk's API rate limit: its API paths do;
    /// attachment downloads (`/attachments/…`, storage links) do not, and are not paced.
    pub(crate) fn paces(url: &reqwest::Url) -> bool {
        url.path().starts_with("/api/")
    }

    /// After a 429: nobody sends before `after` has passed.
    pub(crate) async fn hold(&self, after: Duration) {
        let mut next = self.next.lock().await;
        let until = tokio::time::Instant::now() + after;
        if *next < until {
            *next = until;
        }
    }
}

#[cfg(test)]
mod pacer_tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_leave_one_interval_apart_and_a_429_holds_them_all() {
        let p = Arc::new(Pacer::new(Some(600)));
        let t0 = tokio::time::Instant::now();
        for _ in 0..5 {
            p.wait().await;
        }
        assert_eq!(t0.elapsed(), Duration::from_millis(400), "the 5th request leaves after 4 intervals of 100 ms");
        p.hold(Duration::from_secs(2)).await;
        let t1 = tokio::time::Instant::now();
        p.wait().await;
        assert!(t1.elapsed() >= Duration::from_secs(2), "a 429's Retry-After holds the next request");
        assert!(Pacer::paces(&reqwest::Url::parse("https://acme.zendesk.com/api/v2/tickets").unwrap()));
        assert!(!Pacer::paces(&reqwest::Url::parse("https://acme.zendesk.com/attachments/token/abc/?name=a.png").unwrap()), "downloads are not API requests");
        let unpaced = Pacer::new(None);
        let t2 = tokio::time::Instant::now();
        unpaced.wait().await;
        unpaced.wait().await;
        assert_eq!(t2.elapsed(), Duration::ZERO);
    }
}

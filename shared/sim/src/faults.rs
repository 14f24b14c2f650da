//! Switchable API faults shared by the simulators and the fault-injecting proxy, for the fault-injection
//! suite. Every fault is off by default; a test switches on what its scenario needs (`set_faults` on a
//! simulator or on [`FaultProxy`](crate::fault_proxy::FaultProxy)).

use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

/// What to break, and how often (rates are fractions of API requests, 0.0–1.0; attachment downloads only
/// see `attachments_404`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// 429 answers with `Retry-After: retry_after_secs`, beyond any configured rate limit (a 429 storm).
    pub throttle_rate: f64,
    pub retry_after_secs: u64,
    /// 500/502/503 answers (a 5xx burst); the request is not processed.
    pub server_error_rate: f64,
    /// Requests held for `hang_for` before being answered (client timeouts); processed afterwards.
    pub hang_rate: f64,
    pub hang_for: Duration,
    /// Connections dropped mid-answer (a reset): headers sent, then the body fails. Not processed.
    pub reset_rate: f64,
    /// 200 answers whose body is truncated JSON. Not processed.
    pub malformed_rate: f64,
    /// Latency added to every API request (slow responses).
    pub slow: Duration,
    /// Change listing pages repeat records (the first two records of a page appear again at its end).
    pub repeat_records: bool,
    /// Attachment URLs answer 404.
    pub attachments_404: bool,
    /// The next N tickets the change listing returns are deleted right after the page is served (a ticket
    /// deleted between listing and fetching).
    pub delete_after_listing: u32,
    /// Text replaced in every API answer's JSON as sent (not in attachment downloads): (from, to) pairs, applied
    /// in order. For what a serializer would never produce, e.g. a lone surrogate escape `\udc80` in a file
    /// name — JSON text a source written in a UTF-16 language (JavaScript, Java, .NET) can send.
    pub rewrite_json: Vec<(String, String)>,
    /// Lost answers: the next N requests to a route ("POST /api/v2/imports/tickets/create_many", keyed as in
    /// the simulator's `per_route` stats) are processed, then their connection is reset before the answer
    /// arrives — the write happened, the client cannot know. Zendesk simulator only.
    pub lose_answers: std::collections::BTreeMap<String, u32>,
}

/// A fault decided for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Injected {
    Throttle(u64),
    ServerError(u16),
    Hang(Duration),
    Reset,
    Malformed,
}

struct FaultState {
    faults: Faults,
    rng: ChaCha8Rng,
    injected: u64,
}

impl FaultState {
    /// Draws the fault (if any) for one API request.
    fn decide(&mut self) -> Option<Injected> {
        let f = self.faults.clone();
        let mut roll = |rate: f64| rate > 0.0 && self.rng.gen::<f64>() < rate;
        let out = if roll(f.throttle_rate) {
            Some(Injected::Throttle(f.retry_after_secs.max(1)))
        } else if roll(f.server_error_rate) {
            Some(Injected::ServerError([500, 502, 503][self.rng.gen_range(0..3)]))
        } else if roll(f.reset_rate) {
            Some(Injected::Reset)
        } else if roll(f.malformed_rate) {
            Some(Injected::Malformed)
        } else if roll(f.hang_rate) {
            Some(Injected::Hang(f.hang_for))
        } else {
            None
        };
        if out.is_some() {
            self.injected += 1;
        }
        out
    }
}

/// The switchboard one simulator (or proxy) holds: the faults switched on, a seeded draw, and a count of
/// what was injected.
pub(crate) struct FaultSwitch(Mutex<FaultState>);

impl FaultSwitch {
    pub fn new(seed: u64) -> Self {
        FaultSwitch(Mutex::new(FaultState { faults: Faults::default(), rng: ChaCha8Rng::seed_from_u64(seed ^ 0xfa17), injected: 0 }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FaultState> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn set(&self, f: Faults) {
        self.lock().faults = f;
    }

    pub fn get(&self) -> Faults {
        self.lock().faults.clone()
    }

    pub fn injected(&self) -> u64 {
        self.lock().injected
    }

    /// The request-time faults of one API request: the added latency, then the drawn fault. Returns the
    /// answer that replaces the real one (`throttled` builds a 429 in the help desk's own dialect for a
    /// `Retry-After` in seconds); a hang sleeps and returns `None`, so the request is processed late.
    pub async fn intercept(&self, throttled: impl FnOnce(u64) -> Response) -> Option<Response> {
        let slow = self.get().slow;
        if !slow.is_zero() {
            tokio::time::sleep(slow).await;
        }
        let fault = self.lock().decide()?;
        match fault {
            Injected::Throttle(secs) => Some(throttled(secs)),
            Injected::ServerError(code) => Some(
                (StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), axum::Json(json!({"error": "InternalError", "description": "injected"})))
                    .into_response(),
            ),
            Injected::Reset => {
                let mut r = Response::new(failing_body());
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Some(r)
            }
            Injected::Malformed => {
                let mut r = Response::new(Body::from("{\"tickets\": [{\"id\": 1, \"subject\": \"trunc"));
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Some(r)
            }
            Injected::Hang(d) => {
                tokio::time::sleep(d).await;
                None
            }
        }
    }

    /// Fault `lose_answers`: whether the answer to this request on `route` is to be lost (spends one).
    pub fn take_lost_answer(&self, route: &str) -> bool {
        let mut st = self.lock();
        match st.faults.lose_answers.get_mut(route) {
            Some(n) if *n > 0 => {
                *n -= 1;
                st.injected += 1;
                true
            }
            _ => false,
        }
    }

    /// An answer that never arrives: the connection is reset where the body should be.
    pub fn lost_answer() -> Response {
        let mut r = Response::new(failing_body());
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    }

    /// Fault `rewrite_json` applied to an API answer (unchanged when it is off).
    pub async fn rewrite(&self, resp: Response) -> Response {
        let rewrites = self.get().rewrite_json;
        if rewrites.is_empty() {
            return resp;
        }
        let (mut parts, body) = resp.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
            return Response::from_parts(parts, Body::empty());
        };
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        for (from, to) in &rewrites {
            text = text.replace(from.as_str(), to);
        }
        parts.headers.remove(header::CONTENT_LENGTH);
        Response::from_parts(parts, Body::from(text))
    }

    /// Fault `delete_after_listing`: offers the live tickets a listing page just returned, in order, to
    /// `delete` (which says whether it deleted one) until the budget is spent.
    pub fn delete_listed(&self, listed: impl IntoIterator<Item = u64>, mut delete: impl FnMut(u64) -> bool) {
        for id in listed {
            if self.deletions_left() == 0 {
                break;
            }
            if delete(id) {
                self.spend_deletion();
            }
        }
    }

    /// How many more listed tickets `delete_after_listing` is to delete.
    pub fn deletions_left(&self) -> u32 {
        self.lock().faults.delete_after_listing
    }

    /// One listed ticket was deleted.
    pub fn spend_deletion(&self) {
        let mut st = self.lock();
        st.faults.delete_after_listing = st.faults.delete_after_listing.saturating_sub(1);
    }
}

/// A 429 with `Retry-After` and `body`, for dialects that need nothing more.
pub(crate) fn throttled(secs: u64, body: serde_json::Value) -> Response {
    let mut r = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    r
}

/// A body that fails at once: hyper closes the connection without completing the answer.
fn failing_body() -> Body {
    Body::from_stream(futures::stream::once(async {
        Err::<bytes::Bytes, std::io::Error>(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected connection reset"))
    }))
}

/// An HTTP `Date` header value for a clock reading in Unix milliseconds.
pub(crate) fn http_date(unix_ms: i64) -> Option<HeaderValue> {
    let at = chrono::DateTime::from_timestamp_millis(unix_ms)?;
    HeaderValue::from_str(&at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()).ok()
}

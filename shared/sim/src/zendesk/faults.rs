//! Switchable API faults of the Zendesk simulator, for the fault-injection suite. Every fault is off by
//! default; a test switches on what its scenario needs with [`ZendeskSim::set_faults`](super::ZendeskSim::set_faults).

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
    /// Export pages repeat records (the first two records of a page appear again at its end).
    pub repeat_records: bool,
    /// Attachment URLs answer 404.
    pub attachments_404: bool,
    /// The next N tickets the export lists are deleted right after the page is served (a ticket deleted
    /// between listing and fetching).
    pub delete_after_listing: u32,
    /// Text replaced in every API answer's JSON as sent (not in attachment downloads): (from, to) pairs, applied
    /// in order. For what a serializer would never produce, e.g. a lone surrogate escape `\udc80` in a file
    /// name — JSON text a source written in a UTF-16 language (JavaScript, Java, .NET) can send.
    pub rewrite_json: Vec<(String, String)>,
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

pub(crate) struct FaultState {
    pub faults: Faults,
    rng: ChaCha8Rng,
    pub injected: u64,
}

impl FaultState {
    pub fn new(seed: u64) -> Self {
        FaultState { faults: Faults::default(), rng: ChaCha8Rng::seed_from_u64(seed ^ 0xfa17), injected: 0 }
    }

    /// Draws the fault (if any) for one API request.
    pub fn decide(&mut self) -> Option<Injected> {
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

/// The answer for a fault that replaces the handler's.
pub(crate) fn respond(fault: Injected) -> Option<Response> {
    match fault {
        Injected::Throttle(secs) => {
            let mut r = (StatusCode::TOO_MANY_REQUESTS, axum::Json(json!({"error": "APIRateLimitExceeded", "description": "injected 429 storm"}))).into_response();
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            Some(r)
        }
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
        Injected::Hang(_) => None,
    }
}

/// A body that fails at once: hyper closes the connection without completing the answer.
fn failing_body() -> Body {
    Body::from_stream(futures::stream::once(async {
        Err::<bytes::Bytes, std::io::Error>(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected connection reset"))
    }))
}

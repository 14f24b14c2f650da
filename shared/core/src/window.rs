//! Delta windows and the watermark rules (W3, W4) as pure functions of time.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// The changes a run reads: `updated_at` in `[start, end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Window {
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        t >= self.start && t <= self.end
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    Full,
    Delta,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Full => "full",
            RunKind::Delta => "delta",
        }
    }
}

/// Timing rules of one migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowRules {
    /// How long the source takes to publish a change in its listing (Zendesk: 60 s).
    pub publication_lag: Duration,
    /// How far before the watermark each delta starts re-reading, to catch late-published records.
    pub overlap: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RulesError {
    #[error("overlap ({overlap:?}) must be at least the source's publication lag ({lag:?}), or late records could be missed")]
    OverlapTooShort { overlap: Duration, lag: Duration },
}

impl WindowRules {
    pub fn new(publication_lag: Duration, overlap: Duration) -> Result<Self, RulesError> {
        if overlap < publication_lag {
            return Err(RulesError::OverlapTooShort { overlap, lag: publication_lag });
        }
        Ok(WindowRules { publication_lag, overlap })
    }

    fn lag(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.publication_lag).unwrap_or(chrono::Duration::zero())
    }

    /// A full read started at `started_at` covers everything the source had published by then; that start
    /// (less the publication lag) becomes the first delta's reference point (W4), not the time the read ends,
    /// so changes made while a long full read runs are picked up by the next delta.
    pub fn full_window(&self, started_at: DateTime<Utc>) -> Window {
        Window { start: epoch(), end: started_at - self.lag() }
    }

    /// The next delta after `watermark`, or `None` when nothing new can be published yet (W3).
    pub fn delta_window(&self, watermark: DateTime<Utc>, now: DateTime<Utc>) -> Option<Window> {
        let end = now - self.lag();
        if end <= watermark {
            return None;
        }
        let overlap = chrono::Duration::from_std(self.overlap).unwrap_or(chrono::Duration::zero());
        Some(Window { start: watermark - overlap, end })
    }
}

pub fn epoch() -> DateTime<Utc> {
    Utc.timestamp_opt(0, 0).single().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn rules() -> WindowRules {
        WindowRules::new(Duration::from_secs(60), Duration::from_secs(300)).unwrap()
    }

    #[test]
    fn w3_delta_ends_a_lag_before_now_and_starts_an_overlap_before_the_watermark() {
        let w = rules().delta_window(at("2026-03-10T14:00:00Z"), at("2026-03-10T14:30:00Z")).unwrap();
        assert_eq!(w.end, at("2026-03-10T14:29:00Z"));
        assert_eq!(w.start, at("2026-03-10T13:55:00Z"));
    }

    #[test]
    fn w3_no_window_while_nothing_new_is_published() {
        assert_eq!(rules().delta_window(at("2026-03-10T14:00:00Z"), at("2026-03-10T14:00:30Z")), None);
    }

    #[test]
    fn w3_overlap_shorter_than_the_lag_is_refused() {
        let e = WindowRules::new(Duration::from_secs(60), Duration::from_secs(30)).unwrap_err();
        assert!(e.to_string().contains("publication lag"));
    }

    #[test]
    fn w4_full_window_ends_at_the_read_start_less_the_lag() {
        let w = rules().full_window(at("2026-03-10T14:00:00Z"));
        assert_eq!(w.start, epoch());
        assert_eq!(w.end, at("2026-03-10T13:59:00Z"));
    }
}

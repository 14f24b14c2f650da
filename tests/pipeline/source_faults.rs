//! Faults of the source help desk itself: a clock skewed from ours.

use std::time::Duration;

use deltadesk_sim::zendesk::LiveAgentConfig;
use deltadesk_tests::{Harness, Opts};

/// The source's clock runs `skew` seconds off ours. Its `updated_at` stamps follow its clock, so windows
/// must be planned on it: with a source 5 minutes behind, a watermark taken from our clock would be ahead
/// of every later change and the next delta would miss them.
async fn skewed(skew: i64) {
    let h = Harness::start(Opts { tickets: 12, source_clock_offset_secs: skew, ..Default::default() }).await;
    let agents = h.source.start_live_agents(LiveAgentConfig { seed: 21, actions_per_second: 8.0, max_attachment_bytes: 16 * 1024 });
    h.full().await;
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        h.settle_and_delta().await;
    }
    agents.stop().await;
    let last = h.settle_and_delta().await;
    assert!(last.failures.is_empty(), "{last:#?}");
    let v = h.verify().await;
    assert!(v.is_clean(), "source clock {skew:+} s: {}\n{v:#?}", v.summary_line());
    let wm = h.migration().await.watermark.unwrap();
    let source_now = h.source.now();
    assert!((wm - source_now).num_seconds().abs() < 10, "the watermark {wm} should be on the source's clock ({source_now})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_source_clock_five_minutes_behind_loses_nothing() {
    skewed(-300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_source_clock_five_minutes_ahead_loses_nothing() {
    skewed(300).await;
}

//! Faults of the help desks themselves: a skewed clock, 429 storms, 5xx bursts, timeouts, resets, malformed
//! JSON, repeated records, tickets deleted mid-run, attachment URLs that 404.

use std::time::Duration;

use deltadesk_sim::zendesk::{Faults, LiveAgentConfig};
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

/// Both help desks answer a share of requests with 429 (a storm, `Retry-After: 1`) and 5xx bursts while
/// agents work: everything still arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_429_storm_and_5xx_bursts_lose_and_duplicate_nothing() {
    let h = Harness::start(Opts { tickets: 8, max_attempts: 10, ..Default::default() }).await;
    let storm = Faults { throttle_rate: 0.08, retry_after_secs: 1, server_error_rate: 0.08, ..Default::default() };
    h.source.set_faults(storm.clone());
    h.target.set_faults(storm);
    let agents = h.source.start_live_agents(LiveAgentConfig { seed: 8, actions_per_second: 5.0, max_attachment_bytes: 16 * 1024 });
    h.full().await;
    h.settle_and_delta().await;
    agents.stop().await;
    h.settle_and_delta().await;
    assert!(h.source.faults_injected() + h.target.faults_injected() > 10, "too few faults to test anything");
    h.source.set_faults(Faults::default());
    h.target.set_faults(Faults::default());
    let v = h.verify().await;
    assert!(v.is_clean(), "{}\n{v:#?}", v.summary_line());
    assert_eq!(v.source_tickets, v.target_tickets);
}

/// Timeouts (answers held past the client's timeout, then processed anyway), connections reset mid-answer,
/// truncated JSON and slow answers, on both sides.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn timeouts_resets_malformed_json_and_slow_answers_lose_and_duplicate_nothing() {
    let h = Harness::start(Opts { tickets: 8, max_attempts: 10, connector_timeout_secs: 1, lease_ttl: Duration::from_secs(10), ..Default::default() }).await;
    let flaky = Faults {
        hang_rate: 0.04,
        hang_for: Duration::from_millis(1500),
        reset_rate: 0.05,
        malformed_rate: 0.05,
        slow: Duration::from_millis(20),
        ..Default::default()
    };
    h.source.set_faults(flaky.clone());
    h.target.set_faults(flaky);
    h.full().await;
    let x = h.source_tickets().into_iter().map(|(id, _)| id).find(|id| h.source.try_update_ticket(*id, serde_json::json!({})).is_ok()).unwrap();
    h.source.add_comment(x, true, "<p>a reply while the network misbehaves</p>", None);
    h.settle_and_delta().await;
    assert!(h.source.faults_injected() + h.target.faults_injected() > 5, "too few faults to test anything");
    h.source.set_faults(Faults::default());
    h.target.set_faults(Faults::default());
    // Anything that failed for good under the faults is retried by the next run.
    h.settle_and_delta().await;
    let v = h.verify().await;
    assert!(v.is_clean(), "{}\n{v:#?}", v.summary_line());
    assert_eq!(v.source_tickets, v.target_tickets);
}

/// The export repeats records within its pages, and tickets are deleted between being listed and fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repeated_records_and_tickets_deleted_between_listing_and_fetching() {
    let h = Harness::start(Opts { tickets: 10, ..Default::default() }).await;
    h.source.set_faults(Faults { repeat_records: true, delete_after_listing: 2, ..Default::default() });
    let full = h.full().await;
    assert!(full.failures.is_empty(), "{full:#?}");
    assert_eq!(full.count("listed"), 10, "repeated records are one item each: {full:#?}");
    h.source.set_faults(Faults::default());
    let live = h.source_tickets().len();
    assert_eq!(live, 8, "two tickets were deleted after listing");
    let v = h.verify().await;
    assert!(v.is_clean(), "{}\n{v:#?}", v.summary_line());
    assert_eq!(v.target_tickets, 8, "no copy of a ticket deleted before it was fetched");
}

/// An attachment URL that answers 404 is reported by name; the rest of the ticket lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_attachment_that_404s_is_reported_and_the_rest_lands() {
    let h = Harness::start(Opts { tickets: 3, ..Default::default() }).await;
    h.full().await;
    let x = h.source_tickets().into_iter().map(|(id, _)| id).find(|id| h.source.try_update_ticket(*id, serde_json::json!({})).is_ok()).unwrap();
    h.source.add_comment(x, true, "<p>see the screenshot</p>", Some(("screen.png".into(), "image/png".into(), vec![1, 2, 3, 4])));
    h.source.set_faults(Faults { attachments_404: true, ..Default::default() });
    let r = h.settle_and_delta().await;
    h.source.set_faults(Faults::default());
    assert!(r.failures.is_empty(), "{r:#?}");
    assert_eq!(r.warnings.len(), 1, "{r:#?}");
    assert!(r.warnings[0].contains("screen.png") && r.warnings[0].contains("404"), "{}", r.warnings[0]);
    let v = h.verify().await;
    assert_eq!(v.mismatched.len(), 1, "only the missing file differs: {v:#?}");
    assert!(v.mismatched[0].contains("screen.png"));
    assert!(v.missing.is_empty() && v.duplicated.is_empty());
}

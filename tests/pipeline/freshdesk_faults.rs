//! The help desks' own faults against Freshdesk, as source and as target (Freshdesk simulator to Freshdesk
//! simulator, both faulty unless the fault is a source's): 429 storms with `Retry-After`, 5xx bursts,
//! timeouts, resets, truncated JSON, slow answers, a listing that repeats records, tickets deleted between
//! listing and fetching, an attachment URL that 404s, and a source clock 5 minutes off ours.

use std::net::SocketAddr;
use std::time::Duration;

use deltadesk_sim::freshdesk::{Faults, FreshdeskLiveAgents, FreshdeskSim, FreshdeskSimConfig, LiveAgentConfig};
use deltadesk_tests::{freshdesk, Opts, Pipeline};
use serde_json::json;

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn source(seed: u64, tickets: usize, clock_offset_secs: i64) -> FreshdeskSim {
    let cfg = FreshdeskSimConfig { seed, tickets, max_seed_attachment_bytes: 16 * 1024, clock_offset_secs, ..Default::default() };
    FreshdeskSim::start(cfg, local()).await.expect("freshdesk source")
}

async fn target() -> FreshdeskSim {
    FreshdeskSim::start(FreshdeskSimConfig::empty_target(900_000), local()).await.expect("freshdesk target")
}

/// Freshdesk to Freshdesk. Small listing pages, so every listing runs over several pages.
fn pipeline(source: &FreshdeskSim, target: &FreshdeskSim, opts: Opts) -> Pipeline {
    let timeout = opts.connector_timeout_secs;
    Pipeline::new(&freshdesk(&source.base_url(), json!({"per_page": 4, "timeout_secs": timeout})), &freshdesk(&target.base_url(), json!({"timeout_secs": timeout})), opts)
}

fn agents(sim: &FreshdeskSim, seed: u64) -> FreshdeskLiveAgents {
    sim.start_live_agents(LiveAgentConfig { seed, actions_per_second: 5.0, max_attachment_bytes: 8 * 1024 })
}

/// Both help desks answer a share of requests with 429 (`Retry-After: 1`) and 5xx bursts while agents work
/// in the source: everything still arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn freshdesk_429_storm_and_5xx_bursts_lose_and_duplicate_nothing() {
    let (source, target) = (source(31, 8, 0).await, target().await);
    // An injected 429 speaks Freshdesk: `Retry-After` and the `X-RateLimit-*` headers, the headroom used up.
    source.set_faults(Faults { throttle_rate: 1.0, retry_after_secs: 1, ..Default::default() });
    let r = reqwest::get(format!("{}/api/v2/ticket_fields", source.base_url())).await.expect("request");
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    assert!(r.headers().contains_key("x-ratelimit-total"));

    let p = pipeline(&source, &target, Opts { max_attempts: 10, ..Default::default() });
    let storm = Faults { throttle_rate: 0.08, retry_after_secs: 1, server_error_rate: 0.08, ..Default::default() };
    migrate_under(&p, &source, &target, storm, 8).await;
    assert_clean(&p).await;
}

/// With `faults` on both sides: a full run and a delta while agents work in the source, a delta after they
/// stop; then the faults go off.
async fn migrate_under(p: &Pipeline, source: &FreshdeskSim, target: &FreshdeskSim, faults: Faults, agent_seed: u64) {
    source.set_faults(faults.clone());
    target.set_faults(faults);
    let agents = agents(source, agent_seed);
    p.full().await;
    p.settle_and_delta().await;
    let stats = agents.stop().await;
    assert!(stats.total > 5, "agents did little: {stats:?}");
    p.settle_and_delta().await;
    assert!(source.faults_injected() > 5 && target.faults_injected() > 5, "too few faults to test anything: {} / {}", source.faults_injected(), target.faults_injected());
    source.set_faults(Faults::default());
    target.set_faults(Faults::default());
}

/// The oracle: nothing missing, duplicated or mismatched, one target ticket per live source ticket.
async fn assert_clean(p: &Pipeline) {
    let v = p.verify().await;
    assert!(v.is_clean(), "{}\n{v:#?}", v.summary_line());
    assert_eq!(v.source_tickets, v.target_tickets);
}

/// Timeouts (answers held past the client's timeout, then processed anyway), connections reset mid-answer,
/// truncated JSON and slow answers, on both sides, while agents work in the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn freshdesk_timeouts_resets_malformed_json_and_slow_answers_lose_and_duplicate_nothing() {
    let (source, target) = (source(32, 8, 0).await, target().await);
    let p = pipeline(&source, &target, Opts { max_attempts: 10, connector_timeout_secs: 1, lease_ttl: Duration::from_secs(10), ..Default::default() });
    let flaky = Faults { hang_rate: 0.04, hang_for: Duration::from_millis(1500), reset_rate: 0.05, malformed_rate: 0.05, slow: Duration::from_millis(20), ..Default::default() };
    migrate_under(&p, &source, &target, flaky, 9).await;
    // Anything that failed for good under the faults is retried by the next run.
    p.settle_and_delta().await;
    assert_clean(&p).await;
}

/// The ticket list repeats records within its pages, and tickets are moved to the trash right after a page
/// lists them (so the fetch finds them gone, and every later row of the listing moves up by one).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn freshdesk_repeated_records_and_tickets_deleted_between_listing_and_fetching() {
    let (source, target) = (source(33, 12, 0).await, target().await);
    let p = pipeline(&source, &target, Opts::default());
    let live_before = live_ids(&source);
    source.set_faults(Faults { repeat_records: true, delete_after_listing: 2, ..Default::default() });
    let full = p.full().await;
    assert!(full.failures.is_empty(), "{full:#?}");
    let live_after = live_ids(&source);
    let deleted: Vec<u64> = live_before.iter().filter(|id| !live_after.contains(id)).copied().collect();
    assert_eq!(deleted.len(), 2, "two tickets were deleted after listing");
    assert_eq!(full.count("created"), 10, "every live ticket once, repeats and deleted ones not: {full:#?}");
    for id in &deleted {
        assert!(p.target_ids(*id).await.is_empty(), "ticket {id} was deleted before it was fetched, yet it has a copy");
    }
    // The same faults while agents work; deltas after they stop.
    source.set_faults(Faults { repeat_records: true, delete_after_listing: 1, ..Default::default() });
    let agents = agents(&source, 10);
    p.settle_and_delta().await;
    let stats = agents.stop().await;
    assert!(stats.total > 5, "agents did little: {stats:?}");
    let last = p.settle_and_delta().await;
    assert!(last.failures.is_empty(), "{last:#?}");
    source.set_faults(Faults::default());
    assert_clean(&p).await;
}

fn live_ids(sim: &FreshdeskSim) -> Vec<u64> {
    sim.snapshot()["tickets"].as_array().expect("tickets").iter().filter(|t| t["deleted"] == false && t["spam"] == false).map(|t| t["id"].as_u64().expect("id")).collect()
}

/// An attachment URL that answers 404 is reported by name; the rest of the ticket lands. (No live agents: their
/// attachments would 404 too while the fault is on, and this test names exactly one missing file.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn freshdesk_an_attachment_that_404s_is_reported_and_the_rest_lands() {
    let (source, target) = (source(34, 3, 0).await, target().await);
    let p = pipeline(&source, &target, Opts::default());
    p.full().await;
    let x = live_ids(&source)[0];
    source.add_reply(x, "<p>see the screenshot</p>", Some(("screen.png".into(), "image/png".into(), vec![1, 2, 3, 4])));
    source.set_faults(Faults { attachments_404: true, ..Default::default() });
    let r = p.settle_and_delta().await;
    source.set_faults(Faults::default());
    assert!(r.failures.is_empty(), "{r:#?}");
    assert_eq!(r.warnings.len(), 1, "{r:#?}");
    assert!(r.warnings[0].contains("screen.png") && r.warnings[0].contains("404"), "{}", r.warnings[0]);
    let v = p.verify().await;
    assert_eq!(v.mismatched.len(), 1, "only the missing file differs: {v:#?}");
    assert!(v.mismatched[0].contains("screen.png"), "{v:#?}");
    assert!(v.missing.is_empty() && v.duplicated.is_empty(), "{v:#?}");
}

/// The source's clock runs `skew` seconds off ours and its `updated_at` stamps follow it, so windows must be
/// planned on its clock (read from its `Date` header): with a source 5 minutes behind, a watermark taken from
/// our clock would lie ahead of every later change and the next delta would miss them.
async fn skewed(skew: i64) {
    let (source, target) = (source(35, 10, skew).await, target().await);
    let p = pipeline(&source, &target, Opts::default());
    let agents = agents(&source, 11);
    p.full().await;
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        p.settle_and_delta().await;
    }
    agents.stop().await;
    let last = p.settle_and_delta().await;
    assert!(last.failures.is_empty(), "{last:#?}");
    let v = p.verify().await;
    assert!(v.is_clean(), "source clock {skew:+} s: {}\n{v:#?}", v.summary_line());
    let wm = p.migration().await.watermark.expect("a watermark");
    let source_now = source.now();
    assert!((wm - source_now).num_seconds().abs() < 10, "the watermark {wm} should be on the source's clock ({source_now})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn freshdesk_source_clock_five_minutes_behind_loses_nothing() {
    skewed(-300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn freshdesk_source_clock_five_minutes_ahead_loses_nothing() {
    skewed(300).await;
}

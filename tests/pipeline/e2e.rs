//! Full migration and deltas with live agents, ending with a clean verify.

use std::time::Duration;

use deltadesk_sim::zendesk::LiveAgentConfig;
use deltadesk_tests::{Harness, Opts};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_then_deltas_with_live_agents_verify_clean() {
    let h = Harness::start(Opts { tickets: 30, ..Default::default() }).await;
    let agents = h.source.start_live_agents(LiveAgentConfig { seed: 3, actions_per_second: 8.0, max_attachment_bytes: 64 * 1024 });
    let full = h.full().await;
    assert!(full.count("created") >= 30, "{full:?}");
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        h.settle_and_delta().await;
    }
    let stats = agents.stop().await;
    assert!(stats.total > 10, "agents did little: {stats:?}");
    h.settle_and_delta().await;
    let v = h.verify().await;
    assert!(v.is_clean(), "{}\n{:#?}", v.summary_line(), v);
    assert!(v.source_tickets >= 30);
}

/// Run bookkeeping is dropped after the retention period (DynamoDB TTL; `purge_expired` on SQLite), while
/// mappings and the watermark stay: a later delta still updates the same target tickets.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_items_expire_after_retention_but_mappings_and_watermark_stay() {
    let h = Harness::start(Opts { tickets: 5, ..Default::default() }).await;
    let full = h.full().await;
    assert_eq!(deltadesk_core::engine::runs::items(&h.engine, &full.run_id).await.unwrap().len(), 5);
    let state = deltadesk_local::SqliteState::open(&h.dir.path().join("state.sqlite")).unwrap();
    let purged = state.purge_expired(chrono::Utc::now() + chrono::Duration::days(11)).await.unwrap();
    assert!(purged >= 5, "run items should expire: purged {purged}");
    assert!(deltadesk_core::engine::runs::items(&h.engine, &full.run_id).await.unwrap().is_empty());
    let x = h.source_tickets()[0].0;
    h.source.update_ticket(x, serde_json::json!({"subject": "after retention"}));
    let r = h.settle_and_delta().await;
    assert_eq!(r.count("created"), 0, "mappings must survive retention: {r:#?}");
    assert!(h.verify().await.is_clean());
}

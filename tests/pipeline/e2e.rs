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

/// A field mapping renames groups and drop-down values and adds a tag in the target; verify compares through
/// it; a status the mapping does not name fails that ticket with a clear cause while the rest land.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mapping_renames_values_and_an_unmapped_status_is_reported() {
    let h = Harness::start(Opts { tickets: 12, ..Default::default() }).await;
    let mut e = h.new_engine(None, None);
    e.settings.mapping = serde_json::from_value(serde_json::json!({
        "groups": {"fallback": "Migrated queue"},
        "status": {"map": {"new": "open", "open": "open", "pending": "pending", "solved": "solved", "closed": "closed"}},
        "add_tags": ["migrated"],
    }))
    .unwrap();
    let full = deltadesk_tests::run_with(&e, &h.runner(), deltadesk_core::window::RunKind::Full).await.unwrap();
    let on_hold: Vec<String> = h.source.snapshot()["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "hold")
        .map(|t| t["id"].to_string())
        .collect();
    assert!(!on_hold.is_empty(), "the seed should have tickets on hold");
    let failed: Vec<String> = full.failures.iter().map(|f| f.ticket.clone()).collect();
    assert_eq!(failed, on_hold, "{full:#?}");
    assert!(full.failures[0].cause.contains("status \"hold\" has no mapping"), "{}", full.failures[0].cause);
    let v = deltadesk_core::engine::verify::for_engine(&e, 4).await.unwrap();
    assert_eq!(v.missing.len(), on_hold.len(), "only the unmapped tickets are missing: {v:#?}");
    assert!(v.mismatched.is_empty() && v.duplicated.is_empty(), "{v:#?}");
    let snap = h.source.snapshot();
    let landed = snap["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["status"] != "hold" && !t["group_id"].is_null() && t["deleted"] != true)
        .expect("a grouped ticket that is not on hold")["id"]
        .as_u64()
        .unwrap();
    let copy = h.target_copy(landed).await;
    assert!(copy.tags.contains(&"migrated".to_string()));
    assert_eq!(copy.group.expect("group kept").name, "Migrated queue");
}

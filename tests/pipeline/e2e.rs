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

//! The soak: live agents and random faults of every kind for a bounded time, deltas all along, the engine
//! process killed now and then; then the oracle. Off by default (it runs for minutes):
//!
//! ```sh
//! DELTADESK_SOAK_SECS=600 cargo test --release -p deltadesk-tests -- --ignored soak --nocapture
//! ```

use std::time::{Duration, Instant};

use deltadesk_core::engine::plan::{plan_window, PlanOutcome};
use deltadesk_core::engine::runner::drive;
use deltadesk_core::engine::runs;
use deltadesk_core::window::RunKind;
use deltadesk_sim::zendesk::{Faults, LiveAgentConfig};
use deltadesk_tests::{Harness, Opts};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "runs for DELTADESK_SOAK_SECS (default 600 s); see the module docs for the command"]
async fn soak_live_agents_and_random_faults_then_a_clean_oracle() {
    let secs: u64 = std::env::var("DELTADESK_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    let h = Harness::start(Opts { tickets: 60, max_attempts: 8, connector_timeout_secs: 2, lease_ttl: Duration::from_secs(8), ..Default::default() }).await;
    let faults = Faults {
        throttle_rate: 0.02,
        retry_after_secs: 1,
        server_error_rate: 0.02,
        hang_rate: 0.005,
        hang_for: Duration::from_millis(2500),
        reset_rate: 0.01,
        malformed_rate: 0.01,
        slow: Duration::from_millis(5),
        repeat_records: true,
        ..Default::default()
    };
    h.source.set_faults(faults.clone());
    h.target.set_faults(faults);
    let agents = h.source.start_live_agents(LiveAgentConfig { seed: 2026, actions_per_second: 4.0, max_attachment_bytes: 64 * 1024 });
    let start = Instant::now();
    let (mut runs_done, mut kills, mut failed) = (0u64, 0u64, 0u64);
    let mut kind = RunKind::Full;
    while start.elapsed() < Duration::from_secs(secs) {
        let mut e = h.new_engine(None, None);
        e.instance = format!("soak-{runs_done}");
        let run = match plan_window(&e, kind, false).await {
            Ok(PlanOutcome::Started(r) | PlanOutcome::Resumed(r)) => r,
            Ok(PlanOutcome::UpToDate { .. }) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(err) => panic!("planning failed: {err}"),
        };
        // Every fourth run is killed part-way: its runtime torn down wherever its workers are.
        if runs_done % 4 == 3 {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            let (e2, rc2, id2) = (e.clone(), h.runner(), run.run_id.clone());
            rt.spawn(async move { drive(&e2, &id2, &rc2, &|_| {}).await });
            tokio::time::sleep(Duration::from_millis(300 + (runs_done * 137) % 900)).await;
            rt.shutdown_background();
            kills += 1;
        } else {
            drive(&e, &run.run_id, &h.runner(), &|_| {}).await.expect("drive");
            failed += runs::counters(&e, &run.run_id).await.unwrap().get("failed").copied().unwrap_or(0) as u64;
        }
        runs_done += 1;
        if runs::load_migration(&e).await.unwrap().0.watermark.is_some() {
            kind = RunKind::Delta;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let stats = agents.stop().await;
    let injected = h.source.faults_injected() + h.target.faults_injected();
    h.source.set_faults(Faults::default());
    h.target.set_faults(Faults::default());
    // Finish: resume whatever is open, then deltas until nothing is left to retry.
    let e = h.new_engine(None, None);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(2200)).await;
        let k = if runs::load_migration(&e).await.unwrap().0.watermark.is_some() { RunKind::Delta } else { RunKind::Full };
        if let Ok(PlanOutcome::Started(r) | PlanOutcome::Resumed(r)) = plan_window(&e, k, false).await {
            drive(&e, &r.run_id, &h.runner(), &|_| {}).await.expect("drive");
        }
    }
    let v = h.verify().await;
    println!(
        "soak: {secs} s, {runs_done} runs, {kills} kills, {injected} faults injected, {} agent actions, {failed} ticket failures retried; oracle: lost={} duplicated={} mismatched={}",
        stats.total,
        v.missing.len(),
        v.duplicated.len(),
        v.mismatched.len()
    );
    assert!(v.is_clean(), "{}\n{v:#?}", v.summary_line());
    assert!(runs::pending_retries(&e).await.unwrap().is_empty(), "tickets still waiting for a retry");
}

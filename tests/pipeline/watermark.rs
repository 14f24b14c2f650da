//! The watermark protocol, W1–W4 (README "Guarantees").

use std::time::Duration;

use deltadesk_core::engine::plan::{plan_window, PlanOutcome};
use deltadesk_core::engine::records::RunStatus;
use deltadesk_core::engine::runs;
use deltadesk_core::window::RunKind;
use deltadesk_sim::zendesk::LiveAgentConfig;
use deltadesk_tests::{parse_time, run_with, FixedClock, Harness, Opts};
use serde_json::json;

/// W1: after each delta, every source ticket whose last change is at or before the committed watermark
/// matches its target copy exactly — checked while agents keep working between deltas.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn w1_every_change_at_or_before_the_watermark_is_in_the_target() {
    let h = Harness::start(Opts { tickets: 25, ..Default::default() }).await;
    let mut agents = h.source.start_live_agents(LiveAgentConfig { seed: 5, actions_per_second: 10.0, max_attachment_bytes: 32 * 1024 });
    h.full().await;
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        h.settle_and_delta().await;
        // Pause the agents only to compare a still picture; the delta itself ran while they worked.
        agents.stop().await;
        let wm = h.migration().await.watermark.expect("a watermark after a successful run");
        let covered: Vec<u64> = h.source_tickets().into_iter().filter(|(_, at)| *at <= wm).map(|(id, _)| id).collect();
        assert!(covered.len() >= 10, "round {round}: only {} tickets at or before the watermark", covered.len());
        let v = h.verify_tickets(&covered).await;
        assert!(v.is_clean(), "round {round}: {}\n{v:#?}", v.summary_line());
        agents = h.source.start_live_agents(LiveAgentConfig { seed: 50 + round, actions_per_second: 10.0, max_attachment_bytes: 32 * 1024 });
    }
    agents.stop().await;
}

/// W2: a ticket the target refuses is reported with its cause and retried by the next run; it does not hold
/// back the watermark or the other tickets, and it lands once the cause is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn w2_a_poison_ticket_is_reported_retried_and_never_blocks() {
    let h = Harness::start(Opts { tickets: 8, ..Default::default() }).await;
    h.full().await;
    let ids: Vec<u64> = h.source_tickets().into_iter().map(|(id, _)| id).collect();
    let (poison, healthy) = (ids[0], ids[1]);
    let reference = format!("{}{}", h.engine.settings.source_ref_prefix, poison);
    h.target.fail_writes_for(&reference, 422, "Requester is suspended");
    h.source.add_comment(poison, true, "<p>follow-up on the poison ticket</p>", None);
    h.source.add_comment(healthy, true, "<p>follow-up on a healthy ticket</p>", None);
    let wm_before = h.migration().await.watermark.unwrap();

    let r1 = h.settle_and_delta().await;
    assert_eq!(r1.failures.len(), 1, "{r1:#?}");
    assert_eq!(r1.failures[0].ticket, poison.to_string());
    assert!(r1.failures[0].cause.contains("Requester is suspended"), "cause not kept: {}", r1.failures[0].cause);
    assert!(r1.to_markdown().contains("Requester is suspended"));
    let wm1 = h.migration().await.watermark.unwrap();
    assert!(wm1 > wm_before, "the watermark must move past a failed ticket");
    assert!(h.verify_tickets(&[healthy]).await.is_clean(), "the healthy ticket was held back");
    let waiting = runs::pending_retries(&h.engine).await.unwrap();
    assert_eq!(waiting.iter().map(|r| r.ticket_id.0.clone()).collect::<Vec<_>>(), vec![poison.to_string()]);

    // Still refused: retried by the next run (without any new change to it) and reported again.
    let r2 = h.settle_and_delta().await;
    assert_eq!(r2.failures.len(), 1, "{r2:#?}");
    assert_eq!(runs::pending_retries(&h.engine).await.unwrap()[0].failures, 2);

    h.target.clear_write_faults();
    let r3 = h.settle_and_delta().await;
    assert!(r3.failures.is_empty(), "{r3:#?}");
    assert!(runs::pending_retries(&h.engine).await.unwrap().is_empty());
    let v = h.verify().await;
    assert!(v.is_clean(), "{}\n{v:#?}", v.summary_line());
}

/// W3: two updates of one ticket within the same second, the first read before the second happened: the
/// next delta sees the same `updated_at` again and must re-read it rather than take it as already written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn w3_same_second_updates_are_not_lost() {
    let h = Harness::start(Opts { tickets: 4, lag: Duration::ZERO, overlap: Duration::from_secs(2), margin: Duration::ZERO, ..Default::default() }).await;
    h.full().await;
    let x = h.source_tickets()[0].0;
    let mut proved = false;
    for attempt in 0..5 {
        // Start at the top of a second so both updates and the delta between them fit in it.
        let ms = chrono::Utc::now().timestamp_subsec_millis();
        tokio::time::sleep(Duration::from_millis(u64::from(1000 - ms) + 20)).await;
        let first = h.source.now();
        h.source.update_ticket(x, json!({"tags": [format!("first-{attempt}")]}));
        h.run(RunKind::Delta).await.expect("delta");
        h.source.update_ticket(x, json!({"tags": [format!("second-{attempt}")]}));
        if h.source.now() != first {
            continue; // the delta took too long to stay within one second; try again
        }
        let copy = h.target_copy(x).await;
        assert_eq!(copy.tags, vec![format!("first-{attempt}")], "the first delta read the ticket between the updates");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        h.run(RunKind::Delta).await.expect("delta");
        let copy = h.target_copy(x).await;
        assert_eq!(copy.tags, vec![format!("second-{attempt}")], "the second same-second update was lost");
        proved = true;
        break;
    }
    assert!(proved, "could not fit two updates and a delta into one second in 5 attempts");
}

/// W3: a change published later than the source's stated lag is still carried, by the next delta's overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn w3_a_record_published_late_is_caught_by_the_overlap() {
    let h = Harness::start(Opts { tickets: 4, lag: Duration::from_secs(1), overlap: Duration::from_secs(8), ..Default::default() }).await;
    h.full().await;
    let x = h.source_tickets()[0].0;
    h.source.update_ticket(x, json!({"subject": "published late"}));
    // Published 6 s after the stated lag: long enough that the first delta cannot see it even on a loaded
    // machine, while its change time stays inside the next delta's overlap.
    h.source.hold_publication(x, Duration::from_secs(6));
    h.settle_and_delta().await;
    assert_ne!(h.target_copy(x).await.subject, "published late", "the record was meant to be invisible to this delta");
    tokio::time::sleep(Duration::from_secs(6)).await;
    h.settle_and_delta().await;
    assert_eq!(h.target_copy(x).await.subject, "published late");
    assert!(h.verify().await.is_clean());
}

/// W3: each delta window ends the publication lag before now and starts the overlap before the watermark.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn w3_delta_window_respects_lag_and_overlap() {
    let h = Harness::start(Opts { tickets: 2, lag: Duration::from_secs(1), overlap: Duration::from_secs(3), ..Default::default() }).await;
    h.full().await;
    let wm = h.migration().await.watermark.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = chrono::Utc::now();
    let PlanOutcome::Started(run) = plan_window(&h.engine, RunKind::Delta, false).await.unwrap() else { panic!("expected a new delta") };
    assert_eq!(run.window.start, wm - chrono::Duration::seconds(3));
    assert!(run.window.end <= chrono::Utc::now() - chrono::Duration::seconds(1));
    assert!(run.window.end >= before - chrono::Duration::seconds(1));
}

/// W4: the first delta starts from when the last successful full read started (10 March 14:00 → changes
/// after 14:00); restarting the full migration (11 March 09:00) moves that reference to the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn w4_first_delta_starts_at_the_last_successful_full_read() {
    let h = Harness::start(Opts { tickets: 3, lag: Duration::from_secs(60), overlap: Duration::from_secs(300), ..Default::default() }).await;
    let clock = FixedClock::at("2026-03-10T14:00:00Z");
    let mut e = h.new_engine(None, None);
    e.clock = clock.clone();
    let rc = h.runner();

    let refused = plan_window(&e, RunKind::Delta, false).await.unwrap_err();
    assert!(refused.to_string().contains("no successful full migration"), "{refused}");

    let full = run_with(&e, &rc, RunKind::Full).await.unwrap();
    assert_eq!(full.started_at, parse_time("2026-03-10T14:00:00Z"));
    let m = runs::load_migration(&e).await.unwrap().0;
    assert_eq!(m.full_reference, Some(parse_time("2026-03-10T14:00:00Z")));

    clock.set("2026-03-10T16:00:00Z");
    let d = run_with(&e, &rc, RunKind::Delta).await.unwrap();
    let reference = parse_time("2026-03-10T14:00:00Z");
    assert!(d.window.start <= reference - chrono::Duration::seconds(60), "the delta must cover what the full read could not yet see");
    assert!(d.window.start >= reference - chrono::Duration::seconds(360), "the delta must start from the full read's start, not from the epoch");

    // A full restart that crashes first: planning again resumes it; `restart` abandons it and starts over.
    clock.set("2026-03-11T08:00:00Z");
    let PlanOutcome::Started(crashed) = plan_window(&e, RunKind::Full, false).await.unwrap() else { panic!("expected a full run") };
    clock.set("2026-03-11T08:30:00Z");
    assert_eq!(plan_window(&e, RunKind::Full, false).await.unwrap(), PlanOutcome::Resumed(crashed.clone()));
    clock.set("2026-03-11T09:00:00Z");
    let PlanOutcome::Started(restarted) = plan_window(&e, RunKind::Full, true).await.unwrap() else { panic!("expected a restarted full run") };
    assert_eq!(runs::load_run(&e, &crashed.run_id).await.unwrap().unwrap().0.status, RunStatus::Abandoned);
    let driven = deltadesk_core::engine::runner::drive(&e, &restarted.run_id, &rc, &|_| {}).await.unwrap();
    assert_eq!(driven, deltadesk_core::engine::runner::DriveOutcome::Committed);
    let m = runs::load_migration(&e).await.unwrap().0;
    assert_eq!(m.full_reference, Some(parse_time("2026-03-11T09:00:00Z")));

    clock.set("2026-03-11T09:30:00Z");
    let d = run_with(&e, &rc, RunKind::Delta).await.unwrap();
    let reference = parse_time("2026-03-11T09:00:00Z");
    assert!(d.window.start <= reference - chrono::Duration::seconds(60));
    assert!(d.window.start >= reference - chrono::Duration::seconds(360), "after the restart, deltas take changes after 09:00: {:?}", d.window);
}

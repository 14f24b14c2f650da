//! Delivery faults on the local queue: a visibility timeout that expires while a worker still runs (two
//! workers on one message), and a message that keeps failing until the dead-letter queue, brought back by
//! a redrive once its cause is fixed.

use std::time::Duration;

use deltadesk_core::engine::plan::{plan_window, PlanOutcome};
use deltadesk_core::engine::runner::{drive, DriveOutcome};
use deltadesk_core::window::RunKind;
use deltadesk_core::ports::Queue;
use deltadesk_tests::{run_with, Duplicating, Harness, Opts};

/// Workers that cannot extend their messages' visibility (heartbeat off, as a stalled worker would) and
/// target calls slower than the visibility timeout: each message is delivered again while its first worker
/// is still busy with it. The per-ticket lease and the idempotent steps keep one copy of everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn visibility_timeout_expiring_mid_work_creates_no_duplicates() {
    let h = Harness::start(Opts {
        tickets: 8,
        workers: 6,
        visibility: Duration::from_secs(1),
        target_latency: Duration::from_millis(400),
        lease_ttl: Duration::from_secs(30),
        max_attempts: 200,
        max_receives: 200,
        ..Default::default()
    })
    .await;
    let PlanOutcome::Started(run) = plan_window(&h.engine, RunKind::Full, false).await.unwrap() else { panic!("a new run") };
    let mut rc = h.runner();
    rc.heartbeat = false;
    assert_eq!(drive(&h.engine, &run.run_id, &rc, &|_| {}).await.unwrap(), DriveOutcome::Committed);
    let c = deltadesk_core::engine::runs::counters(&h.engine, &run.run_id).await.unwrap();
    assert!(c.get("redeliveries").copied().unwrap_or(0) > 0, "no message was delivered twice, so this tested nothing: {c:?}");
    let v = h.verify().await;
    assert!(v.is_clean(), "{}\n{v:#?}", v.summary_line());
    assert_eq!(v.target_tickets, v.source_tickets);
}

/// With the heartbeat on, the same slow work stays with its first worker: nothing is dead-lettered even
/// with a low redrive limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_heartbeat_keeps_slow_work_with_its_worker() {
    let h = Harness::start(Opts {
        tickets: 6,
        visibility: Duration::from_secs(1),
        target_latency: Duration::from_millis(400),
        max_receives: 2,
        max_attempts: 2,
        ..Default::default()
    })
    .await;
    let r = h.full().await;
    assert!(r.failures.is_empty(), "{r:#?}");
    assert!(h.engine.write_queue.dead_letters(10).await.unwrap().is_empty());
    assert!(h.verify().await.is_clean());
}

/// A write that keeps failing transiently outlasts the queue's redrive limit and lands in the dead-letter
/// queue; the run cannot finish and says so (stuck, with the dead-letter count). Once the cause is fixed,
/// a redrive (`deltadesk dlq redrive`) brings the message back and the run finishes with nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_lettered_message_is_redriven_once_fixed() {
    let h = Harness::start(Opts { tickets: 5, max_receives: 3, max_attempts: 20, visibility: Duration::from_secs(1), ..Default::default() }).await;
    let x = h.source_tickets()[0].0;
    let reference = format!("{}{}", h.engine.settings.source_ref_prefix, x);
    h.target.fail_writes_for(&reference, 503, "Service Unavailable");
    let PlanOutcome::Started(run) = plan_window(&h.engine, RunKind::Full, false).await.unwrap() else { panic!("a new run") };
    let mut rc = h.runner();
    rc.stall_after = Duration::from_millis(1500);
    rc.max_stalls = 1;
    let stuck = drive(&h.engine, &run.run_id, &rc, &|_| {}).await.unwrap();
    assert!(matches!(stuck, DriveOutcome::Stuck { dead_letters } if dead_letters >= 1), "{stuck:?}");
    assert_eq!(h.verify().await.missing, vec![x.to_string()]);

    h.target.clear_write_faults();
    let moved = h.engine.write_queue.redrive_dead_letters().await.unwrap() + h.engine.fetch_queue.redrive_dead_letters().await.unwrap();
    assert!(moved >= 1);
    assert_eq!(drive(&h.engine, &run.run_id, &h.runner(), &|_| {}).await.unwrap(), DriveOutcome::Committed);
    let v = h.verify().await;
    assert!(v.is_clean(), "{}\n{v:#?}", v.summary_line());
    assert_eq!(v.target_tickets, v.source_tickets);
}

/// Every message delivered twice, the copy arriving while the first is still being written (a slow target),
/// and a dead-letter queue after only 2 receives. The copy finds the ticket's lease taken and must wait its
/// turn; waiting by redelivery would spend receives and dead-letter healthy work, so it is deferred as a
/// fresh copy instead. Nothing reaches the dead-letter queue, one copy of everything lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiting_for_a_busy_ticket_never_dead_letters_it() {
    let h = Harness::start(Opts { tickets: 8, workers: 6, max_receives: 2, target_latency: Duration::from_millis(150), ..Default::default() }).await;
    let dup = |inner: std::sync::Arc<dyn Queue>| -> std::sync::Arc<dyn Queue> { std::sync::Arc::new(Duplicating { inner, delay: Duration::from_millis(100) }) };
    let e = h.new_engine(None, Some(&dup));
    let report = run_with(&e, &h.runner(), RunKind::Full).await.expect("a full run");
    assert!(report.failures.is_empty(), "{report:#?}");
    let dead = e.fetch_queue.dead_letters(100).await.unwrap().len() + e.write_queue.dead_letters(100).await.unwrap().len();
    assert_eq!(dead, 0, "work that only waited for a lease was dead-lettered");
    let c = deltadesk_core::engine::runs::counters(&e, &report.run_id).await.unwrap();
    assert!(c.get("deferred").copied().unwrap_or(0) > 0, "no copy ever found its ticket busy, so this tested nothing: {c:?}");
    let v = h.verify().await;
    assert!(v.is_clean(), "{}\n{v:#?}", v.summary_line());
    assert_eq!(v.target_tickets, v.source_tickets);
}

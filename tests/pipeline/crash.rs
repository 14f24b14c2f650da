//! Crash at every named point of the engine, restart, finish: the oracle (verify, plus the watermark
//! check) must come out clean — nothing lost, nothing duplicated.

use std::time::{Duration, Instant};

use deltadesk_core::engine::plan::{plan_window, PlanOutcome};
use deltadesk_core::engine::runner::{drive, DriveOutcome};
use deltadesk_core::engine::runs;
use deltadesk_core::failpoint::{self, Action};
use deltadesk_core::window::RunKind;
use deltadesk_tests::{Harness, Opts};
use serde_json::json;

/// Runs a full migration (and, for the later points, a delta with comments and an attachment) in a
/// process that dies at `point`; then a new process resumes and finishes.
async fn crash_at(point: &str) {
    let h = Harness::start(Opts { tickets: 8, ..Default::default() }).await;
    let rc = h.runner();
    let needs_delta = matches!(point, "after_comment_append" | "during_attachment_upload" | "after_watermark_commit");
    if needs_delta {
        h.full().await;
        let x = h.source_tickets().into_iter().map(|(id, _)| id).find(|id| h.source.try_update_ticket(*id, json!({})).is_ok()).unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        h.source.add_comment(x, true, "<p>first new reply</p>", Some(("trace.bin".into(), "application/octet-stream".into(), big)));
        h.source.add_comment(x, false, "<p>second new note</p>", None);
        tokio::time::sleep(h.opts.lag + Duration::from_millis(1100)).await;
    }
    let kind = if needs_delta { RunKind::Delta } else { RunKind::Full };

    let mut doomed = h.new_engine(None, None);
    let prefix = format!("doomed-{point}");
    doomed.instance = prefix.clone();
    failpoint::arm(point, &prefix, Action::Pause);
    let PlanOutcome::Started(run) = plan_window(&doomed, kind, false).await.unwrap() else { panic!("a new run") };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (e2, rc2, id2) = (doomed.clone(), rc.clone(), run.run_id.clone());
    rt.spawn(async move { drive(&e2, &id2, &rc2, &|_| {}).await });
    let deadline = Instant::now() + Duration::from_secs(30);
    while failpoint::hits(point, &prefix) == 0 {
        assert!(Instant::now() < deadline, "the run never reached {point}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let the other workers get wherever they get, then kill the process.
    tokio::time::sleep(Duration::from_millis(50)).await;
    rt.shutdown_background();
    failpoint::disarm(point, &prefix);

    let resumed = h.new_engine(None, None);
    match plan_window(&resumed, kind, false).await.unwrap() {
        PlanOutcome::Resumed(r) => {
            assert_eq!(r.run_id, run.run_id);
            assert_eq!(drive(&resumed, &r.run_id, &rc, &|_| {}).await.unwrap(), DriveOutcome::Committed);
        }
        // Only a crash after the commit finds the run already done; the next run then simply starts.
        other => {
            assert_eq!(point, "after_watermark_commit", "{other:?}");
            assert_eq!(runs::load_run(&resumed, &run.run_id).await.unwrap().unwrap().0.status, deltadesk_core::engine::records::RunStatus::Committed);
            if let PlanOutcome::Started(next) = other {
                assert_eq!(drive(&resumed, &next.run_id, &rc, &|_| {}).await.unwrap(), DriveOutcome::Committed);
            }
        }
    }
    let mig = runs::load_migration(&resumed).await.unwrap().0;
    assert!(mig.open_run.is_none());
    assert!(mig.watermark.unwrap() >= run.window.end, "the watermark must cover the crashed window");
    let v = h.verify().await;
    assert!(v.is_clean(), "crash at {point}: {}\n{v:#?}", v.summary_line());
    assert_eq!(v.source_tickets, v.target_tickets, "crash at {point} left a duplicate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_after_reading_a_page() {
    crash_at("after_page_read").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_after_staging_a_blob() {
    crash_at("after_blob_staged").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_after_target_create_before_the_mapping_is_stored() {
    crash_at("after_target_create").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_after_appending_a_comment() {
    crash_at("after_comment_append").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_while_uploading_an_attachment() {
    crash_at("during_attachment_upload").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_before_committing_the_watermark() {
    crash_at("before_watermark_commit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_after_committing_the_watermark() {
    crash_at("after_watermark_commit").await;
}

/// The delivery that ends a run's last piece of work fails its commit attempt (a store error, a Lambda
/// timeout). Its next delivery finds the work already done and must commit the run itself: on AWS nothing
/// else would until the next scheduled tick. The runner's stall sweep (which would also commit) is off.
async fn commit_interrupted_then_redelivered(with_ticket: bool) {
    let h = Harness::start(Opts { tickets: 4, ..Default::default() }).await;
    h.full().await;
    if with_ticket {
        let id = h.source_tickets().into_iter().map(|(id, _)| id).find(|id| h.source.try_update_ticket(*id, json!({})).is_ok()).unwrap();
        h.source.add_comment(id, true, "<p>one more reply</p>", None);
    }
    // A delta with a change ends on its write; one without ends on its listing page.
    tokio::time::sleep(h.opts.lag + Duration::from_millis(1100)).await;
    let mut e = h.new_engine(None, None);
    let prefix = format!("commit-once-{with_ticket}");
    e.instance = prefix.clone();
    failpoint::arm("before_watermark_commit", &prefix, Action::Error);
    let PlanOutcome::Started(run) = plan_window(&e, RunKind::Delta, false).await.unwrap() else { panic!("a new run") };
    let disarm = {
        let prefix = prefix.clone();
        tokio::spawn(async move {
            while failpoint::hits("before_watermark_commit", &prefix) == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            failpoint::disarm("before_watermark_commit", &prefix);
        })
    };
    let rc = deltadesk_core::engine::runner::RunnerConfig { max_stalls: 0, stall_after: Duration::from_secs(3), ..h.runner() };
    let outcome = drive(&e, &run.run_id, &rc, &|_| {}).await.unwrap();
    disarm.await.unwrap();
    assert_eq!(outcome, DriveOutcome::Committed, "the redelivery did not commit the run");
    let c = runs::counters(&e, &run.run_id).await.unwrap();
    assert_eq!(c.get("failed").copied().unwrap_or(0), 0, "{c:?}");
    let v = h.verify().await;
    assert!(v.is_clean(), "{}\n{v:#?}", v.summary_line());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commit_interrupted_after_the_last_write_is_made_by_its_redelivery() {
    commit_interrupted_then_redelivered(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commit_interrupted_after_the_last_page_is_made_by_its_redelivery() {
    commit_interrupted_then_redelivered(false).await;
}

#[test]
fn every_named_point_has_a_test() {
    let src = include_str!("crash.rs");
    for p in deltadesk_core::failpoint::POINTS {
        assert!(src.contains(&format!("crash_at(\"{p}\")")), "no crash test for {p}");
    }
}

//! The upsert protocol, U1–U5, and recovery from crashes mid-window (README "Guarantees").

use std::sync::Arc;
use std::time::Duration;

use deltadesk_core::engine::messages::Message;
use deltadesk_core::engine::plan::{plan_window, PlanOutcome};
use deltadesk_core::engine::records::{item_sk, ItemStatus, RunItem};
use deltadesk_core::engine::runner::{drive, handle_message, Disposition, DriveOutcome};
use deltadesk_core::engine::{fetch, runs};
use deltadesk_core::model::{Priority, TicketId};
use deltadesk_core::ports::{HelpDeskTarget, Queue};
use deltadesk_core::window::RunKind;
use deltadesk_sim::zendesk::LiveAgentConfig;
use deltadesk_tests::{run_with, Duplicating, Harness, LostResponses, Opts};
use serde_json::json;

/// U1: a create that reached the target but whose answer was lost leaves an orphan; the retry finds it by
/// the source reference stored on it and adopts it instead of creating a second ticket.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn u1_crash_between_target_create_and_mapping_write_adopts_the_orphan() {
    let h = Harness::start(Opts { tickets: 10, ..Default::default() }).await;
    let lossy = std::sync::Mutex::new(None::<Arc<LostResponses>>);
    let wrap = |inner: Arc<dyn HelpDeskTarget>| -> Arc<dyn HelpDeskTarget> {
        let l = LostResponses::wrap(inner, 3, 0);
        *lossy.lock().unwrap() = Some(l.clone());
        l
    };
    let e = h.new_engine(Some(&wrap), None);
    let full = run_with(&e, &h.runner(), RunKind::Full).await.unwrap();
    let lost = lossy.lock().unwrap().clone().unwrap().lost.lock().unwrap().clone();
    assert_eq!(lost.len(), 3, "the fault did not fire: {lost:?}");
    assert_eq!(full.count("adopted_orphans"), 3, "{full:#?}");
    assert!(full.failures.is_empty(), "{full:#?}");
    let v = h.verify().await;
    assert!(v.is_clean(), "{}\n{v:#?}", v.summary_line());
    assert_eq!(v.target_tickets, v.source_tickets, "a duplicate target ticket exists");
}

/// U1, U2, U4 under SQS's worst: every message delivered twice, the copy late and out of order with later
/// messages, while agents keep working. No duplicate ticket, comment or attachment.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn u1_u2_u4_duplicate_and_reordered_deliveries_create_no_duplicates() {
    let h = Harness::start(Opts { tickets: 15, ..Default::default() }).await;
    let dup = |inner: Arc<dyn Queue>| -> Arc<dyn Queue> { Arc::new(Duplicating { inner, delay: Duration::from_millis(300) }) };
    let e = h.new_engine(None, Some(&dup));
    let rc = h.runner();
    let agents = h.source.start_live_agents(LiveAgentConfig { seed: 9, actions_per_second: 8.0, max_attachment_bytes: 32 * 1024 });
    run_with(&e, &rc, RunKind::Full).await.unwrap();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        tokio::time::sleep(h.opts.lag + Duration::from_millis(1100)).await;
        run_with(&e, &rc, RunKind::Delta).await.unwrap();
    }
    agents.stop().await;
    tokio::time::sleep(h.opts.lag + Duration::from_millis(1100)).await;
    run_with(&e, &rc, RunKind::Delta).await.unwrap();
    let v = h.verify().await;
    assert!(v.is_clean(), "{}\n{v:#?}", v.summary_line());
    assert_eq!(v.target_tickets, v.source_tickets);
}

/// U1: two processes work the same run at once (two engines, one state directory): one copy per ticket.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn u1_concurrent_workers_on_one_run_create_each_ticket_once() {
    let h = Harness::start(Opts { tickets: 20, workers: 6, ..Default::default() }).await;
    let a = h.new_engine(None, None);
    let b = h.new_engine(None, None);
    let rc = h.runner();
    let PlanOutcome::Started(run) = plan_window(&a, RunKind::Full, false).await.unwrap() else { panic!("a new full run") };
    let (ra, rb) = tokio::join!(drive(&a, &run.run_id, &rc, &|_| {}), drive(&b, &run.run_id, &rc, &|_| {}));
    assert_eq!(ra.unwrap(), DriveOutcome::Committed);
    assert_eq!(rb.unwrap(), DriveOutcome::Committed);
    let v = h.verify().await;
    assert!(v.is_clean(), "{}\n{v:#?}", v.summary_line());
    assert_eq!(v.target_tickets, v.source_tickets);
}

/// A run killed mid-window (its process's runtime torn down at an arbitrary await point, messages in flight,
/// a lease held) is resumed by a new process and finishes with every ticket exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_killed_mid_window_resumes_and_finishes_exactly_once() {
    let h = Harness::start(Opts { tickets: 40, workers: 4, ..Default::default() }).await;
    let doomed = h.new_engine(None, None);
    let rc = h.runner();
    let PlanOutcome::Started(run) = plan_window(&doomed, RunKind::Full, false).await.unwrap() else { panic!("a new full run") };
    let run_id = run.run_id.clone();
    // The doomed process gets its own runtime, so killing it stops its workers wherever they are.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (e2, rc2, id2) = (doomed.clone(), rc.clone(), run_id.clone());
    rt.spawn(async move { drive(&e2, &id2, &rc2, &|_| {}).await });
    let observer = h.new_engine(None, None);
    loop {
        let c = runs::counters(&observer, &run_id).await.unwrap();
        if c.get("created").copied().unwrap_or(0) >= 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    rt.shutdown_background();
    let c = runs::counters(&observer, &run_id).await.unwrap();
    assert!(c.get("outstanding").copied().unwrap_or(0) > 0, "the kill came too late to test anything: {c:?}");

    let resumed = h.new_engine(None, None);
    let again = plan_window(&resumed, RunKind::Full, false).await.unwrap();
    assert!(matches!(again, PlanOutcome::Resumed(ref r) if r.run_id == run_id), "{again:?}");
    assert_eq!(drive(&resumed, &run_id, &rc, &|_| {}).await.unwrap(), DriveOutcome::Committed);
    let v = h.verify().await;
    assert!(v.is_clean(), "{}\n{v:#?}", v.summary_line());
    assert_eq!(v.target_tickets, v.source_tickets);
}

/// U2: comments appended after creation appear once each, in source order, even when an append's answer is
/// lost after the target stored it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn u2_each_comment_once_in_source_order_despite_lost_append_answers() {
    let h = Harness::start(Opts { tickets: 6, ..Default::default() }).await;
    let lossy = std::sync::Mutex::new(None::<Arc<LostResponses>>);
    let wrap = |inner: Arc<dyn HelpDeskTarget>| -> Arc<dyn HelpDeskTarget> {
        let l = LostResponses::wrap(inner, 0, 2);
        *lossy.lock().unwrap() = Some(l.clone());
        l
    };
    let e = h.new_engine(Some(&wrap), None);
    let rc = h.runner();
    run_with(&e, &rc, RunKind::Full).await.unwrap();
    let x = h.source_tickets()[0].0;
    for i in 0..4 {
        h.source.add_comment(x, i % 2 == 0, &format!("<p>reply number {i}</p>"), None);
    }
    tokio::time::sleep(h.opts.lag + Duration::from_millis(1100)).await;
    run_with(&e, &rc, RunKind::Delta).await.unwrap();
    assert_eq!(lossy.lock().unwrap().clone().unwrap().lost.lock().unwrap().len(), 2, "the fault did not fire");
    let copy = h.target_copy(x).await;
    let tail: Vec<String> = copy.comments.iter().rev().take(4).rev().map(|c| c.plain_body.trim().to_string()).collect();
    assert_eq!(tail, (0..4).map(|i| format!("reply number {i}")).collect::<Vec<_>>());
    let v = h.verify().await;
    assert!(v.is_clean(), "{}\n{v:#?}", v.summary_line());
}

/// U3: attachments arrive exactly once and byte-identical (sha256 of what the target serves), large ones and
/// inline images included; one over the target's limit is reported by name and the rest of the ticket lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn u3_attachments_exactly_once_and_byte_identical_oversized_reported() {
    let h = Harness::start(Opts { tickets: 4, target_max_attachment_bytes: Some(3 * 1024 * 1024), ..Default::default() }).await;
    h.full().await;
    let x = h.source_tickets()[0].0;
    let big: Vec<u8> = (0..(2 * 1024 * 1024 + 7)).map(|i| (i * 31 % 251) as u8).collect();
    let huge: Vec<u8> = vec![7u8; 4 * 1024 * 1024];
    h.source.add_comment(x, true, "<p>logs attached</p>", Some(("server.log".into(), "text/plain".into(), big)));
    h.source.add_comment(x, false, "<p>core dump</p>", Some(("core.bin".into(), "application/octet-stream".into(), huge)));
    let r = h.settle_and_delta().await;
    assert!(r.failures.is_empty(), "{r:#?}");
    assert_eq!(r.warnings.len(), 1, "{r:#?}");
    assert!(r.warnings[0].contains("core.bin") && r.warnings[0].contains("over the target's limit"), "{}", r.warnings[0]);
    let v = h.verify().await;
    // The oversized file is the one honest difference verify must still show.
    assert!(v.missing.is_empty() && v.duplicated.is_empty(), "{v:#?}");
    assert_eq!(v.mismatched.len(), 1, "{v:#?}");
    assert!(v.mismatched[0].contains("core.bin"), "{v:#?}");
    assert!(v.attachments_checked > 2);
    let copy = h.target_copy(x).await;
    let logs: Vec<_> = copy.comments.iter().flat_map(|c| c.attachments.iter()).filter(|a| a.file_name == "server.log").collect();
    assert_eq!(logs.len(), 1, "server.log must be in the target exactly once");
    // A second delta re-reads nothing new and uploads nothing again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let again = h.settle_and_delta().await;
    assert_eq!(again.count("attachments"), 0, "{again:#?}");
}

/// U4: an older snapshot delivered after a newer one never overwrites it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn u4_an_older_version_never_overwrites_a_newer_one() {
    let h = Harness::start(Opts { tickets: 3, ..Default::default() }).await;
    h.full().await;
    let x = h.source_tickets()[0].0;
    h.source.update_ticket(x, json!({"priority": "high"}));
    tokio::time::sleep(h.opts.lag + Duration::from_millis(1100)).await;
    let e = &h.engine;
    let PlanOutcome::Started(run) = plan_window(e, RunKind::Delta, false).await.unwrap() else { panic!("a delta") };
    // The listing showed the ticket twice (it changed while being listed): two items of one run.
    let tid = TicketId(x.to_string());
    let item = |tag: &str| (item_sk(&tid, tag), RunItem { ticket_id: tid.clone(), listed_updated_at: None, deleted: false, status: ItemStatus::Pending, outcome: None, cause: None, last_error: None });
    runs::add_items(e, &run.run_id, vec![item("a"), item("b")]).await.unwrap();
    fetch::fetch_ticket(e, &run.run_id, &item_sk(&tid, "a"), &tid, None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.source.update_ticket(x, json!({"priority": "low"}));
    fetch::fetch_ticket(e, &run.run_id, &item_sk(&tid, "b"), &tid, None).await.unwrap();
    let mut writes = Vec::new();
    while writes.len() < 2 {
        for m in e.write_queue.receive(10, Duration::from_secs(30), Duration::from_millis(200)).await.unwrap() {
            writes.push(m);
        }
    }
    let key = |m: &deltadesk_core::ports::Received| match Message::from_body(&m.body).unwrap() {
        Message::WriteTicket { version, .. } => version,
        other => panic!("unexpected {other:?}"),
    };
    writes.sort_by_key(|m| std::cmp::Reverse(key(m)));
    for m in &writes {
        assert!(matches!(handle_message(e, &m.body, 1).await, Disposition::Ack(_)));
        e.write_queue.delete(&m.receipt).await.unwrap();
    }
    assert_eq!(h.target_copy(x).await.priority, Some(Priority::Low), "the older snapshot overwrote the newer one");
    let c = runs::counters(e, &run.run_id).await.unwrap();
    assert_eq!(c.get("unchanged").copied(), Some(1), "the older snapshot must be recognised as superseded: {c:?}");
    assert_eq!(drive(e, &run.run_id, &h.runner(), &|_| {}).await.unwrap(), DriveOutcome::Committed);
}

/// U5: after a run, every mapped field of the target equals the latest source value.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn u5_target_fields_equal_the_latest_source_fields() {
    let h = Harness::start(Opts { tickets: 5, ..Default::default() }).await;
    h.full().await;
    let x = h.source_tickets()[0].0;
    let snap = h.source.snapshot();
    let agent = snap["users"].as_array().unwrap().iter().find(|u| u["role"] == "agent").unwrap()["id"].as_u64().unwrap();
    h.source.update_ticket(x, json!({"subject": "renamed", "status": "pending", "priority": "urgent", "type": "task", "tags": ["vip", "escalated"], "assignee_id": agent}));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.source.update_ticket(x, json!({"status": "hold", "tags": ["vip"]}));
    let r = h.settle_and_delta().await;
    assert_eq!(r.count("updated"), 1, "{r:#?}");
    let copy = h.target_copy(x).await;
    assert_eq!(copy.subject, "renamed");
    assert_eq!(copy.status.as_str(), "hold");
    assert_eq!(copy.priority, Some(Priority::Urgent));
    assert_eq!(copy.tags, vec!["vip".to_string()]);
    assert!(copy.assignee.is_some());
    let v = h.verify().await;
    assert!(v.is_clean(), "{}\n{v:#?}", v.summary_line());
}

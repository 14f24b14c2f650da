//! The serverless mode end to end on a real AWS emulator (moto): DynamoState, S3Blobs, SqsQueue and Secrets
//! Manager, the scheduler/fetcher/writer/api use cases fed with real event shapes, and a driver that behaves
//! like Lambda's SQS event source (receive a batch, invoke, delete only what succeeded, let failures come
//! back after their visibility timeout and reach the dead-letter queue).
//!
//! Needs `DELTADESK_MOTO_ENDPOINT` (scripts/test starts moto and sets it); fails, saying so, without it.

use std::time::Duration;

use deltadesk_core::engine::verify::verify;
use deltadesk_serverless::api::{handle as api, ApiRequest};
use deltadesk_serverless::scheduler;
use deltadesk_tests::moto_support::{deploy, register, start_sims, start_sims_slow, Deployment};
use deltadesk_sim::zendesk::LiveAgentConfig;
use serde_json::json;

async fn scheduler_event(d: &Deployment, event: serde_json::Value) -> serde_json::Value {
    scheduler::handle(&d.ctx, &event).await.expect("scheduler")
}

fn fixture(name: &str) -> serde_json::Value {
    let p = format!("{}/fixtures/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&p).expect("fixture")).expect("json")
}

async fn assert_verify_clean(d: &Deployment, id: &str) {
    let e = d.ctx.engine(id).await.unwrap();
    let v = verify(e.source.as_ref(), e.target.as_ref(), &e.settings.source_ref_prefix, 4).await.unwrap();
    assert!(v.is_clean(), "{}\n{v:#?}", v.summary_line());
    assert_eq!(v.source_tickets, v.target_tickets);
}

/// Full migration and three scheduled deltas with live agents, through the API, scheduler, fetcher and
/// writer use cases on DynamoDB, S3, SQS and Secrets Manager; every third batch delivered twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aws_full_and_scheduled_deltas_with_live_agents_verify_clean() {
    let d = deploy(5).await;
    let (source, target) = start_sims(20).await;
    register(&d, "live", &source, &target, 5).await;
    let agents = source.start_live_agents(LiveAgentConfig { seed: 4, actions_per_second: 6.0, max_attachment_bytes: 32 * 1024 });

    let started = api(&d.ctx, &ApiRequest { method: "POST".into(), path: "/migrations/live/runs".into(), body: Some(r#"{"kind":"full"}"#.into()) }).await;
    assert_eq!(started.status, 202, "{:?}", started.body);
    let run_id = started.body["run_id"].as_str().unwrap().to_string();
    assert!(d.run_lambdas("live", 3).await, "the full run did not commit");
    let status = api(&d.ctx, &ApiRequest { method: "GET".into(), path: format!("/migrations/live/runs/{run_id}"), body: None }).await;
    assert_eq!(status.body["status"], "committed", "{:?}", status.body);
    assert_eq!(status.body["counts"]["created"], 20);

    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(2200)).await;
        let planned = scheduler_event(&d, fixture("eventbridge-schedule.json")).await;
        assert!(planned["planned"][0]["outcome"].as_str().unwrap_or_default().starts_with("started"), "{planned}");
        assert!(d.run_lambdas("live", 3).await, "a delta did not commit");
    }
    agents.stop().await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    scheduler_event(&d, fixture("scheduler-schedule.json")).await;
    assert!(d.run_lambdas("live", 3).await);
    assert_verify_clean(&d, "live").await;
}

/// A message that keeps failing reaches the dead-letter queue and the run waits; once the cause is fixed,
/// the alarm-driven rerun (a CloudWatch alarm state change from EventBridge) redrives it and the ticket lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aws_poison_message_reaches_the_dlq_and_the_alarm_rerun_brings_it_in() {
    let d = deploy(3).await;
    let (source, target) = start_sims(6).await;
    // More attempts than the queue's maxReceiveCount: the queue, not the engine, gives up first.
    register(&d, "dlq", &source, &target, 10).await;
    let ids: Vec<u64> = (1..=6).collect();
    let poison_ref = format!("dd:dlq:{}", ids[0]);
    target.fail_writes_for(&poison_ref, 503, "Service Unavailable");
    scheduler_event(&d, json!({"action": "run", "migration": "dlq", "kind": "full"})).await;
    assert!(!d.run_lambdas("dlq", 0).await, "the run cannot finish while its ticket is dead-lettered");
    let dead = d.ctx.backends.write_queue.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1, "the poison write should be in the DLQ: {dead:?}");
    let depth = d.sqs.get_queue_attributes().queue_url(&d.write_dlq_url).attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages).send().await.unwrap();
    assert_eq!(depth.attributes.unwrap().get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages).map(String::as_str), Some("1"));

    target.clear_write_faults();
    let rerun = scheduler_event(&d, fixture("alarm-state-change.json")).await;
    assert_eq!(rerun["redriven"]["write"], 1, "{rerun}");
    assert!(d.run_lambdas("dlq", 0).await, "the rerun did not finish the run");
    assert_verify_clean(&d, "dlq").await;
}

/// Two Lambda-like consumers on each queue, a visibility timeout (1 s) shorter than the work (the target
/// answers slowly), and batches handed over in reverse order: messages are delivered to a second consumer
/// while the first still works on them, and out of order. One copy of everything, verify clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aws_visibility_expiring_mid_work_and_reordered_batches_create_no_duplicates() {
    // The template's redrive limit: work that only waits for another consumer's lease is deferred as a
    // fresh copy, so it never spends receives on waiting.
    let mut d = deploy(5).await;
    d.visibility_secs = 1;
    d.reverse_batches = true;
    let (source, target) = start_sims_slow(8, Duration::from_millis(400)).await;
    register(&d, "vis", &source, &target, 50).await;
    scheduler_event(&d, json!({"action": "run", "migration": "vis", "kind": "full"})).await;
    let (a, b) = tokio::join!(d.run_lambdas("vis", 0), d.run_lambdas("vis", 0));
    assert!(a && b, "the run did not commit");
    let e = d.ctx.engine("vis").await.unwrap();
    let run = deltadesk_core::engine::runs::load_migration(&e).await.unwrap().0.last_run.unwrap();
    let c = deltadesk_core::engine::runs::counters(&e, &run).await.unwrap();
    assert!(c.get("redeliveries").copied().unwrap_or(0) > 0, "no message was delivered twice, so this tested nothing: {c:?}");
    assert_verify_clean(&d, "vis").await;
}

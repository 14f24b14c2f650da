//! The serverless mode end to end on a real AWS emulator (moto): DynamoState, S3Blobs, SqsQueue and Secrets
//! Manager, the scheduler/fetcher/writer/api use cases fed with real event shapes, and a driver that behaves
//! like Lambda's SQS event source (receive a batch, invoke, delete only what succeeded, let failures come
//! back after their visibility timeout and reach the dead-letter queue).
//!
//! Needs `DELTADESK_MOTO_ENDPOINT` (scripts/test starts moto and sets it); fails, saying so, without it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use aws_sdk_dynamodb::config::Credentials;
use deltadesk_aws::secrets::SecretsManagerSecrets;
use deltadesk_aws::{create_queue_pair, create_table, s3_client, DynamoState, S3Blobs, SqsQueue};
use deltadesk_core::engine::runs;
use deltadesk_core::engine::verify::verify;
use deltadesk_core::ports::Queue;
use deltadesk_serverless::api::{handle as api, ApiRequest};
use deltadesk_serverless::context::{Backends, Context};
use deltadesk_serverless::scheduler;
use deltadesk_serverless::sqs_batch::handle_sqs_event;
use deltadesk_sim::zendesk::{LiveAgentConfig, ZendeskSim, ZendeskSimConfig};
use serde_json::json;

fn endpoint() -> String {
    std::env::var("DELTADESK_MOTO_ENDPOINT").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| {
        panic!("DELTADESK_MOTO_ENDPOINT is not set: start moto (`moto_server -H 127.0.0.1 -p 5123 &`) and set it, or run ./scripts/test")
    })
}

async fn moto() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await
}

fn unique(what: &str) -> String {
    format!("dd-{what}-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// One deployment on moto: what `infra/template.yaml` creates, made by hand.
struct Deployment {
    ctx: Context,
    sqs: aws_sdk_sqs::Client,
    fetch_url: String,
    write_url: String,
    write_dlq_url: String,
}

async fn deploy(max_receives: u32) -> Deployment {
    let cfg = moto().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&cfg);
    let table = unique("state");
    create_table(&dynamo, &table).await.expect("table");
    let s3 = s3_client(&cfg);
    let bucket = unique("staging");
    s3.create_bucket().bucket(&bucket).send().await.expect("bucket");
    let sqs = aws_sdk_sqs::Client::new(&cfg);
    let (fetch_url, fetch_dlq) = create_queue_pair(&sqs, &unique("fetch"), max_receives).await.expect("fetch queues");
    let (write_url, write_dlq_url) = create_queue_pair(&sqs, &unique("write"), max_receives).await.expect("write queues");
    let prefix = format!("{}/", unique("secrets"));
    let backends = Backends {
        state: Arc::new(DynamoState::new(dynamo, table)),
        blobs: Arc::new(S3Blobs::new(s3, bucket, "staging")),
        fetch_queue: Arc::new(SqsQueue::new(sqs.clone(), fetch_url.clone(), fetch_dlq)),
        write_queue: Arc::new(SqsQueue::new(sqs.clone(), write_url.clone(), write_dlq_url.clone())),
        secrets: Arc::new(SecretsManagerSecrets::new(aws_sdk_secretsmanager::Client::new(&cfg))),
        secret_prefix: prefix,
    };
    Deployment { ctx: Context::new(backends), sqs, fetch_url, write_url, write_dlq_url }
}

impl Deployment {
    /// One poll of one queue, as Lambda's event source mapping does it. Every `duplicate_every`-th batch is
    /// delivered twice before anything is deleted (SQS's at-least-once).
    async fn pump(&self, url: &str, queue: &dyn Queue, batch_no: &mut usize, duplicate_every: usize) -> usize {
        let out = self
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .visibility_timeout(10)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .expect("receive");
        let msgs = out.messages.unwrap_or_default();
        if msgs.is_empty() {
            return 0;
        }
        let mut event = SqsEvent::default();
        for m in &msgs {
            let mut r = SqsMessage::default();
            r.message_id = m.message_id.clone();
            r.receipt_handle = m.receipt_handle.clone();
            r.body = m.body.clone();
            r.event_source = Some("aws:sqs".into());
            r.event_source_arn = Some(format!("arn:aws:sqs:us-east-1:123456789012:{}", url.rsplit('/').next().unwrap_or_default()));
            if let Some(attrs) = &m.attributes {
                for (k, v) in attrs {
                    r.attributes.insert(k.as_str().to_string(), v.clone());
                }
            }
            event.records.push(r);
        }
        *batch_no += 1;
        if duplicate_every > 0 && *batch_no % duplicate_every == 0 {
            handle_sqs_event(&self.ctx, queue, event.clone()).await;
        }
        let (resp, _) = handle_sqs_event(&self.ctx, queue, event).await;
        let failed: HashSet<String> = resp.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
        for m in &msgs {
            if !failed.contains(m.message_id.as_deref().unwrap_or_default()) {
                self.sqs.delete_message().queue_url(url).receipt_handle(m.receipt_handle.clone().unwrap_or_default()).send().await.expect("delete");
            }
        }
        msgs.len()
    }

    /// Works both queues until the migration has no open run (true) or nothing is left to do (false).
    async fn run_lambdas(&self, migration: &str, duplicate_every: usize) -> bool {
        let engine = self.ctx.engine(migration).await.expect("engine");
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut batch_no = 0usize;
        let mut idle = 0;
        while Instant::now() < deadline {
            let n = self.pump(&self.write_url, self.ctx.backends.write_queue.as_ref(), &mut batch_no, duplicate_every).await
                + self.pump(&self.fetch_url, self.ctx.backends.fetch_queue.as_ref(), &mut batch_no, duplicate_every).await;
            if runs::load_migration(&engine).await.unwrap().0.open_run.is_none() {
                return true;
            }
            if n == 0 {
                let depth = self.ctx.backends.fetch_queue.depth().await.unwrap().total() + self.ctx.backends.write_queue.depth().await.unwrap().total();
                idle = if depth == 0 { idle + 1 } else { 0 };
                if idle >= 5 {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        panic!("the run did not finish within 3 minutes");
    }
}

async fn scheduler_event(d: &Deployment, event: serde_json::Value) -> serde_json::Value {
    scheduler::handle(&d.ctx, &event).await.expect("scheduler")
}

fn fixture(name: &str) -> serde_json::Value {
    let p = format!("{}/fixtures/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&p).expect("fixture")).expect("json")
}

async fn start_sims(tickets: usize) -> (ZendeskSim, ZendeskSim) {
    let local = "127.0.0.1:0".parse().unwrap();
    let source = ZendeskSim::start(
        ZendeskSimConfig {
            tickets,
            publication_lag: Duration::from_secs(1),
            max_seed_attachment_bytes: 200 * 1024,
            credentials: Some(("admin@source.test".into(), "src-t0ken".into())),
            ..Default::default()
        },
        local,
    )
    .await
    .unwrap();
    let target = ZendeskSim::start(ZendeskSimConfig { publication_lag: Duration::from_secs(1), ..ZendeskSimConfig::empty_target(900_000) }, local).await.unwrap();
    (source, target)
}

async fn register(d: &Deployment, id: &str, source: &ZendeskSim, target: &ZendeskSim, max_attempts: u32) {
    // The source's API token lives only in Secrets Manager, under the migration's secret.
    let sm = aws_sdk_secretsmanager::Client::new(&moto().await);
    sm.create_secret()
        .name(format!("{}{id}", d.ctx.backends.secret_prefix))
        .secret_string(json!({"SOURCE_TOKEN": "src-t0ken"}).to_string())
        .send()
        .await
        .expect("secret");
    let body = json!({
        "id": id,
        "source": {"kind": "zendesk", "base_url": source.base_url(), "email": "admin@source.test", "token_env": "SOURCE_TOKEN", "publication_lag_secs": 1},
        "target": {"kind": "zendesk", "base_url": target.base_url(), "publication_lag_secs": 1},
        "overlap_secs": 3,
        "clock_skew_margin_secs": 1,
        "lease_ttl_secs": 5,
        "max_attempts": max_attempts,
    });
    let r = api(&d.ctx, &ApiRequest { method: "POST".into(), path: "/migrations".into(), body: Some(body.to_string()) }).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
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

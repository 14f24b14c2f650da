//! Support for tests on moto, the AWS emulator: a deployment made by hand (what infra/template.yaml
//! creates), a driver that behaves like Lambda's SQS event source, and the Lambda Runtime API emulator of
//! cargo-lambda for running the real function binaries. `deploy_metered` attaches an [`AwsMeter`] to every
//! client (the AWS cost benchmark, bench/aws.rs).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use aws_sdk_dynamodb::config::Credentials;
use deltadesk_aws::secrets::SecretsManagerSecrets;
use deltadesk_aws::{create_queue_pair, create_table, s3_client, DynamoState, S3Blobs, SqsQueue};
use deltadesk_core::engine::runs;
use deltadesk_core::ports::Queue;
use deltadesk_serverless::context::{Backends, Context};
use deltadesk_serverless::api::{handle as api, ApiRequest};
use deltadesk_serverless::sqs_batch::handle_sqs_event;
use deltadesk_sim::zendesk::{ZendeskSim, ZendeskSimConfig};
use serde_json::json;

use crate::aws_meter::AwsMeter;

pub fn endpoint() -> String {
    std::env::var("DELTADESK_MOTO_ENDPOINT").ok().filter(|v| !v.is_empty()).unwrap_or_else(|| {
        panic!("DELTADESK_MOTO_ENDPOINT is not set: start moto (`moto_server -H 127.0.0.1 -p 5123 &`) and set it, or run ./scripts/test")
    })
}

pub async fn moto() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .load()
        .await
}

pub fn unique(what: &str) -> String {
    format!("dd-{what}-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// One deployment on moto: what `infra/template.yaml` creates, made by hand.
pub struct Deployment {
    pub ctx: Context,
    pub sqs: aws_sdk_sqs::Client,
    pub table: String,
    pub bucket: String,
    pub fetch_url: String,
    pub fetch_dlq_url: String,
    pub write_url: String,
    pub write_dlq_url: String,
    /// Visibility timeout the Lambda-like driver receives with (the queue's own, in a deployment).
    pub visibility_secs: i32,
    /// Hand each batch's records to the handler in reverse order (SQS standard queues keep no order).
    pub reverse_batches: bool,
    /// Counts every AWS request (the functions' and the driver's) and the driver's invocations.
    pub meter: Option<AwsMeter>,
}

pub async fn deploy(max_receives: u32) -> Deployment {
    deploy_with(max_receives, None).await
}

/// A deployment whose clients all count into `meter`: the functions' as "functions", the driver's (what
/// Lambda's SQS event source does: receive, delete) as "event source".
pub async fn deploy_metered(max_receives: u32, meter: &AwsMeter) -> Deployment {
    deploy_with(max_receives, Some(meter)).await
}

async fn deploy_with(max_receives: u32, meter: Option<&AwsMeter>) -> Deployment {
    let cfg = moto().await;
    let functions = meter.map(|m| m.tap("functions"));
    let dynamo = {
        let mut b = aws_sdk_dynamodb::config::Builder::from(&cfg);
        if let Some(t) = &functions {
            b = b.interceptor(t.clone());
        }
        aws_sdk_dynamodb::Client::from_conf(b.build())
    };
    let table = unique("state");
    create_table(&dynamo, &table).await.expect("table");
    let s3 = match &functions {
        // s3_client's settings (path-style addressing) plus the meter.
        Some(t) => aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&cfg).force_path_style(true).interceptor(t.clone()).build()),
        None => s3_client(&cfg),
    };
    let bucket = unique("staging");
    s3.create_bucket().bucket(&bucket).send().await.expect("bucket");
    let sqs_with = |tap: Option<crate::aws_meter::MeterTap>| {
        let mut b = aws_sdk_sqs::config::Builder::from(&cfg);
        if let Some(t) = tap {
            b = b.interceptor(t);
        }
        aws_sdk_sqs::Client::from_conf(b.build())
    };
    let sqs = sqs_with(functions.clone());
    let (fetch_url, fetch_dlq) = create_queue_pair(&sqs, &unique("fetch"), max_receives).await.expect("fetch queues");
    let (write_url, write_dlq_url) = create_queue_pair(&sqs, &unique("write"), max_receives).await.expect("write queues");
    let prefix = format!("{}/", unique("secrets"));
    let secrets = {
        let mut b = aws_sdk_secretsmanager::config::Builder::from(&cfg);
        if let Some(t) = &functions {
            b = b.interceptor(t.clone());
        }
        aws_sdk_secretsmanager::Client::from_conf(b.build())
    };
    let backends = Backends {
        state: Arc::new(DynamoState::new(dynamo, table.clone())),
        blobs: Arc::new(S3Blobs::new(s3, bucket.clone(), "staging")),
        fetch_queue: Arc::new(SqsQueue::new(sqs.clone(), fetch_url.clone(), fetch_dlq.clone())),
        write_queue: Arc::new(SqsQueue::new(sqs.clone(), write_url.clone(), write_dlq_url.clone())),
        secrets: Arc::new(SecretsManagerSecrets::new(secrets)),
        secret_prefix: prefix,
    };
    // The driver's own client: what Lambda's event source mapping calls, labelled apart.
    let driver_sqs = if meter.is_some() { sqs_with(meter.map(|m| m.tap("event source"))) } else { sqs };
    Deployment {
        ctx: Context::new(backends),
        sqs: driver_sqs,
        table,
        bucket,
        fetch_url,
        fetch_dlq_url: fetch_dlq,
        write_url,
        write_dlq_url,
        visibility_secs: 10,
        reverse_batches: false,
        meter: meter.cloned(),
    }
}

impl Deployment {
    /// The environment `infra/template.yaml` gives every function, pointed at moto.
    pub fn function_env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ENDPOINT_URL".into(), endpoint()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            ("DELTADESK_TABLE".into(), self.table.clone()),
            ("DELTADESK_BUCKET".into(), self.bucket.clone()),
            ("DELTADESK_FETCH_QUEUE_URL".into(), self.fetch_url.clone()),
            ("DELTADESK_FETCH_DLQ_URL".into(), self.fetch_dlq_url.clone()),
            ("DELTADESK_WRITE_QUEUE_URL".into(), self.write_url.clone()),
            ("DELTADESK_WRITE_DLQ_URL".into(), self.write_dlq_url.clone()),
            ("DELTADESK_SECRET_PREFIX".into(), self.ctx.backends.secret_prefix.clone()),
        ]
    }

    /// Receives up to 10 messages of `url` as the SQS event Lambda would deliver (without deleting them).
    pub async fn receive_event(&self, url: &str) -> SqsEvent {
        let out = self
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(30)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .expect("receive");
        to_event(url, &out.messages.unwrap_or_default())
    }

    /// One poll of one queue, as Lambda's event source mapping does it. Every `duplicate_every`-th batch is
    /// delivered twice before anything is deleted (SQS's at-least-once).
    pub async fn pump(&self, url: &str, queue: &dyn Queue, batch_no: &mut usize, duplicate_every: usize) -> usize {
        let out = self
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .visibility_timeout(self.visibility_secs)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .expect("receive");
        let msgs = out.messages.unwrap_or_default();
        if msgs.is_empty() {
            return 0;
        }
        let mut event = to_event(url, &msgs);
        if self.reverse_batches {
            event.records.reverse();
        }
        *batch_no += 1;
        if duplicate_every > 0 && (*batch_no).is_multiple_of(duplicate_every) {
            handle_sqs_event(&self.ctx, queue, event.clone()).await;
        }
        let started = Instant::now();
        let (resp, _) = handle_sqs_event(&self.ctx, queue, event).await;
        if let Some(m) = &self.meter {
            m.invocation(if url == self.fetch_url { "fetcher" } else { "writer" }, msgs.len(), started.elapsed());
        }
        let failed: HashSet<String> = resp.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
        for m in &msgs {
            if !failed.contains(m.message_id.as_deref().unwrap_or_default()) {
                let deleted = self.sqs.delete_message().queue_url(url).receipt_handle(m.receipt_handle.clone().unwrap_or_default()).send().await;
                // Another consumer already finished and deleted it (its visibility expired under us): as
                // Lambda's event source does, take that as done.
                if let Err(e) = deleted {
                    let invalid = e.as_service_error().is_some_and(|s| s.is_receipt_handle_is_invalid());
                    assert!(invalid, "delete: {e:?}");
                }
            }
        }
        msgs.len()
    }

    /// Works both queues until the migration has no open run (true) or nothing is left to do (false).
    pub async fn run_lambdas(&self, migration: &str, duplicate_every: usize) -> bool {
        let engine = self.ctx.engine(migration).await.expect("engine");
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut batch_no = 0usize;
        let mut idle = 0;
        while Instant::now() < deadline {
            let n = self.pump(&self.write_url, self.ctx.backends.write_queue.as_ref(), &mut batch_no, duplicate_every).await
                + self.pump(&self.fetch_url, self.ctx.backends.fetch_queue.as_ref(), &mut batch_no, duplicate_every).await;
            // The driver's own checks are no part of a deployment's work: not metered.
            let _paused = self.meter.as_ref().map(AwsMeter::pause);
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


/// A seeded source (its API token required) and an empty target.
pub async fn start_sims(tickets: usize) -> (ZendeskSim, ZendeskSim) {
    start_sims_slow(tickets, Duration::ZERO).await
}

/// Like [`start_sims`], with a target that takes `target_latency` to answer each request.
pub async fn start_sims_slow(tickets: usize, target_latency: Duration) -> (ZendeskSim, ZendeskSim) {
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
    let target = ZendeskSim::start(ZendeskSimConfig { publication_lag: Duration::from_secs(1), latency: target_latency, ..ZendeskSimConfig::empty_target(900_000) }, local).await.unwrap();
    (source, target)
}

/// Stores the migration's secret in Secrets Manager and creates the migration through the API use case.
pub async fn register(d: &Deployment, id: &str, source: &ZendeskSim, target: &ZendeskSim, max_attempts: u32) {
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

/// SQS messages as the records of a Lambda SQS event.
pub fn to_event(url: &str, msgs: &[aws_sdk_sqs::types::Message]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for m in msgs {
        let mut r = SqsMessage::default();
        r.message_id = m.message_id.clone();
        r.receipt_handle = m.receipt_handle.clone();
        r.body = m.body.clone();
        r.event_source = Some("aws:sqs".into());
        r.event_source_arn = Some(format!("arn:aws:sqs:us-east-1:123456789012:{}", url.rsplit('/').next().unwrap_or_default()));
        r.aws_region = Some("us-east-1".into());
        if let Some(attrs) = &m.attributes {
            for (k, v) in attrs {
                r.attributes.insert(k.as_str().to_string(), v.clone());
            }
        }
        event.records.push(r);
    }
    event
}

/// A function binary running under cargo-lambda's Lambda Runtime API emulator (`cargo lambda watch
/// --only-lambda-apis`), invoked over the emulator's Invoke API. Both processes end with this value.
pub struct LambdaEmulator {
    emulator: std::process::Child,
    function: std::process::Child,
    port: u16,
}

impl LambdaEmulator {
    pub async fn start(binary: &str, env: &[(String, String)]) -> LambdaEmulator {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        let emulator = std::process::Command::new("cargo")
            .args(["lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("cargo-lambda is needed (pip install cargo-lambda; scripts/test installs it)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the cargo-lambda runtime emulator did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let function = std::process::Command::new(binary)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{port}/.rt"))
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .spawn()
            .expect("function binary");
        LambdaEmulator { emulator, function, port }
    }

    /// Invokes the function with `event` and returns its JSON answer.
    pub async fn invoke(&self, event: &serde_json::Value) -> serde_json::Value {
        let url = format!("http://127.0.0.1:{}/2015-03-31/functions/_/invocations", self.port);
        let resp = reqwest::Client::new().post(&url).json(event).timeout(Duration::from_secs(60)).send().await.expect("invoke");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        assert!(status.is_success(), "invoke answered {status}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("the function answered non-JSON ({e}): {text}"))
    }
}

impl Drop for LambdaEmulator {
    fn drop(&mut self) {
        let _ = self.function.kill();
        let _ = self.emulator.kill();
        let _ = self.function.wait();
        let _ = self.emulator.wait();
    }
}

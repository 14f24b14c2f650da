//! The port conformance suite against moto, the AWS emulator: DynamoState, SqsQueue and S3Blobs
//! must behave like the embedded adapters (`shared/local/tests/conformance.rs`).
//!
//! Needs a running moto server and the feature `moto-tests`:
//!
//! ```sh
//! pip install 'moto[server]'
//! moto_server -H 127.0.0.1 -p 5123 &
//! DELTADESK_MOTO_ENDPOINT=http://127.0.0.1:5123 cargo test -p deltadesk-aws --features moto-tests
//! ```
//!
//! Without `DELTADESK_MOTO_ENDPOINT` every test fails, saying so: skipping silently would let CI
//! pass without testing anything.

use std::sync::Arc;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use deltadesk_aws::{create_queue_pair, create_table, s3_client, DynamoState, S3Blobs, SqsQueue};
use deltadesk_conformance::StaleReceipts;
use deltadesk_core::ports::Queue;

const ENDPOINT_VAR: &str = "DELTADESK_MOTO_ENDPOINT";

fn endpoint() -> String {
    match std::env::var(ENDPOINT_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{ENDPOINT_VAR} is not set. These tests need a moto server:\n  \
             pip install 'moto[server]'\n  \
             moto_server -H 127.0.0.1 -p 5123 &\n  \
             {ENDPOINT_VAR}=http://127.0.0.1:5123 cargo test -p deltadesk-aws --features moto-tests"
        ),
    }
}

/// The SDK configuration for moto: its endpoint, a region and dummy credentials, all set on the
/// builder — not in the process environment, which the tests running in parallel share.
async fn moto_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto-tests"))
        .load()
        .await
}

fn unique(what: &str) -> String {
    format!("dd-{what}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

#[tokio::test]
async fn dynamo_state_conforms() {
    let config = moto_config().await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let table = unique("state");
    create_table(&client, &table).await.expect("create the table");
    // Creating it again is a no-op (setup scripts run more than once).
    create_table(&client, &table).await.expect("create the table again");
    let store = DynamoState::new(client, &table);
    deltadesk_conformance::state_store(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqs_queue_conforms() {
    let config = moto_config().await;
    let client = aws_sdk_sqs::Client::new(&config);
    // CreateQueue with the same attributes returns the existing queue: a second call with the
    // same name is another handle on the same queue, as the suite requires.
    let make = |name: String, max_receives: u32| {
        let client = client.clone();
        async move {
            let (url, dlq) = create_queue_pair(&client, &name, max_receives).await.expect("create the queues");
            Arc::new(SqsQueue::new(client, url, dlq)) as Arc<dyn Queue>
        }
    };
    // SQS (and moto) may act on a stale receipt: see SqsQueue's module docs.
    deltadesk_conformance::queue(make, StaleReceipts::MayAct).await;
}

#[tokio::test]
async fn s3_blobs_conform_and_leave_no_temporary_objects() {
    let config = moto_config().await;
    let client = s3_client(&config);
    let bucket = unique("blobs");
    client.create_bucket().bucket(&bucket).send().await.expect("create the bucket");
    let blobs = S3Blobs::new(client.clone(), &bucket, "staging/");
    deltadesk_conformance::blob_store(&blobs).await;

    // Refused and failed uploads stored nothing: no temporary objects, no open multipart uploads.
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = client
            .list_objects_v2()
            .bucket(&bucket)
            .set_continuation_token(token)
            .send()
            .await
            .expect("list objects");
        keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_string)));
        token = page.next_continuation_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    assert!(keys.iter().all(|k| k.starts_with("staging/")), "objects outside the store's prefix: {keys:?}");
    let temps: Vec<&String> = keys.iter().filter(|k| k.contains(".upload-")).collect();
    assert!(temps.is_empty(), "temporary upload objects left behind: {temps:?}");
    let uploads = client.list_multipart_uploads().bucket(&bucket).send().await.expect("list multipart uploads");
    assert!(uploads.uploads().is_empty(), "multipart uploads left open: {:?}", uploads.uploads());
}

/// `aws_config()` must honour `AWS_ENDPOINT_URL`. The variable is set only for a child process (this
/// test binary again, running the ignored test below), never in this process's environment.
#[tokio::test]
async fn aws_config_honours_aws_endpoint_url() {
    let endpoint = endpoint();
    let exe = std::env::current_exe().expect("the test binary");
    let out = tokio::process::Command::new(exe)
        .args(["--ignored", "--exact", "child_lists_tables_through_aws_config", "--nocapture"])
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .output()
        .await
        .expect("run the child test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the child test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
#[ignore = "run by aws_config_honours_aws_endpoint_url with AWS_ENDPOINT_URL set"]
async fn child_lists_tables_through_aws_config() {
    let config = deltadesk_aws::aws_config().await;
    let want = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
    assert_eq!(config.endpoint_url(), Some(want.as_str()), "aws_config() ignored AWS_ENDPOINT_URL");
    let client = aws_sdk_dynamodb::Client::new(&config);
    client.list_tables().send().await.expect("ListTables through the configured endpoint");
}

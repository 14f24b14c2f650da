//! What every Lambda function's `main` needs: JSON logs and the backends named by the environment.

use std::sync::Arc;

use deltadesk_serverless::context::Backends;

use crate::{aws_config, s3_client, DynamoState, S3Blobs, SqsQueue};

/// The environment variables `infra/template.yaml` sets on every function.
pub const ENV_VARS: [&str; 7] = [
    "DELTADESK_TABLE",
    "DELTADESK_BUCKET",
    "DELTADESK_FETCH_QUEUE_URL",
    "DELTADESK_FETCH_DLQ_URL",
    "DELTADESK_WRITE_QUEUE_URL",
    "DELTADESK_WRITE_DLQ_URL",
    "DELTADESK_SECRET_PREFIX",
];

#[derive(Debug, thiserror::Error)]
#[error("environment variable {0} is not set (infra/template.yaml sets it on every function)")]
pub struct MissingEnv(pub &'static str);

fn var(name: &'static str) -> Result<String, MissingEnv> {
    std::env::var(name).ok().filter(|v| !v.is_empty()).ok_or(MissingEnv(name))
}

/// JSON logs to stdout (CloudWatch), level from `RUST_LOG` (default info). Never ticket bodies or secrets.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().json().with_env_filter(filter).with_current_span(false).without_time().try_init();
}

/// DynamoDB, S3, SQS and Secrets Manager as the environment names them.
pub async fn backends_from_env() -> Result<Backends, MissingEnv> {
    let table = var(ENV_VARS[0])?;
    let bucket = var(ENV_VARS[1])?;
    let fetch = var(ENV_VARS[2])?;
    let fetch_dlq = var(ENV_VARS[3])?;
    let write = var(ENV_VARS[4])?;
    let write_dlq = var(ENV_VARS[5])?;
    let prefix = std::env::var(ENV_VARS[6]).unwrap_or_else(|_| "deltadesk/".into());
    let cfg = aws_config().await;
    let sqs = aws_sdk_sqs::Client::new(&cfg);
    Ok(Backends {
        state: Arc::new(DynamoState::new(aws_sdk_dynamodb::Client::new(&cfg), table)),
        blobs: Arc::new(S3Blobs::new(s3_client(&cfg), bucket, "staging")),
        fetch_queue: Arc::new(SqsQueue::new(sqs.clone(), fetch, fetch_dlq)),
        write_queue: Arc::new(SqsQueue::new(sqs, write, write_dlq)),
        secrets: Arc::new(crate::secrets::SecretsManagerSecrets::new(aws_sdk_secretsmanager::Client::new(&cfg))),
        secret_prefix: prefix,
    })
}

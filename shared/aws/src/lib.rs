//! deltadesk's AWS adapters: the state store on DynamoDB, the queues on SQS and the blob store on S3,
//! with the semantics of the embedded adapters in `deltadesk-local` (held to the same conformance
//! suite, `deltadesk-conformance`).
//!
//! Everything honours `AWS_ENDPOINT_URL` (and the per-service `AWS_ENDPOINT_URL_DYNAMODB`, `_SQS`,
//! `_S3`), and S3 is addressed path-style, so the same binaries run against an emulator such as moto.
//!
//! # Layout
//! - [`config`]: [`aws_config()`] (the SDK configuration from the environment) and [`s3_client`].
//! - [`dynamo`]: [`DynamoState`], the [`StateStore`](deltadesk_core::ports::StateStore) on one
//!   DynamoDB table (`pk`/`sk`, `rev`, JSON `value`, TTL `expires_at`, counters as numeric
//!   attributes); [`create_table`].
//! - [`sqs`]: [`SqsQueue`], the [`Queue`](deltadesk_core::ports::Queue) on an SQS standard queue and its
//!   dead-letter queue; [`create_queue_pair`].
//! - [`s3`]: [`S3Blobs`], the [`BlobStore`](deltadesk_core::ports::BlobStore) on an S3 bucket, with
//!   streamed multipart content-addressed uploads.
//! - [`secrets`]: [`SecretsManagerSecrets`](secrets::SecretsManagerSecrets), migration credentials from
//!   Secrets Manager.
//! - [`lambda`]: what each function's `main` needs — JSON tracing and [`backends_from_env`](lambda::backends_from_env).
//! - `errors` (private): sorting SDK errors into retryable and permanent ones.

pub mod config;
pub mod dynamo;
mod errors;
pub mod lambda;
pub mod s3;
pub mod secrets;
pub mod sqs;

pub use config::{aws_config, s3_client};
pub use dynamo::{create_table, DynamoState};
pub use s3::S3Blobs;
pub use sqs::{create_queue_pair, SqsQueue};

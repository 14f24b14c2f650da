//! deltadesk's serverless mode: the use cases behind the Lambda functions, free of Lambda and SDK types
//! where possible so they can be tested against any backends.
//!
//! # Layout
//! - [`registry`]: migration definitions (connectors, secret name, options) kept in the state store.
//! - [`context`]: [`Backends`] (state, blobs, queues, secrets) and the per-migration [`Engine`] cache.
//! - [`sqs_batch`]: an SQS event for the fetcher or writer → the engine's `handle_message` per record →
//!   `batchItemFailures` (ReportBatchItemFailures), so one bad message never fails a batch.
//! - [`scheduler`]: EventBridge schedules (recurring deltas), CloudWatch alarm state changes (reruns:
//!   redrive dead letters, re-enqueue open runs' remaining work) and on-demand run requests.
//! - [`api`]: the trigger API (create/list migrations, start a run, run status and report, reset to full),
//!   as plain requests and problem+json responses; the `api` function maps API Gateway events onto it.
//!
//! [`Backends`]: context::Backends
//! [`Engine`]: deltadesk_core::engine::Engine

pub mod api;
pub mod context;
pub mod registry;
pub mod scheduler;
pub mod sqs_batch;

//! The fetcher's and writer's use case: one SQS event → the engine's `handle_message` per record →
//! `batchItemFailures`, so one bad message never fails the batch (ReportBatchItemFailures).

use std::time::Duration;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use deltadesk_core::engine::messages::Message;
use deltadesk_core::engine::runner::{handle_message, Disposition};
use deltadesk_core::ports::Queue;

use crate::context::Context;

/// What happened to each record, for logs and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchOutcome {
    pub done: usize,
    pub retried: Vec<(String, String)>,
}

/// Handles one batch from `queue`. A record whose work must be retried is reported as a batch item failure:
/// Lambda leaves it on the queue, it returns after a backoff (its visibility is shortened to the engine's
/// backoff when possible), and after the queue's maxReceiveCount it moves to the dead-letter queue.
pub async fn handle_sqs_event(ctx: &Context, queue: &dyn Queue, event: SqsEvent) -> (SqsBatchResponse, BatchOutcome) {
    let mut failures = Vec::new();
    let mut outcome = BatchOutcome { done: 0, retried: vec![] };
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let body = record.body.clone().unwrap_or_default();
        let receive_count: u32 = record.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok()).unwrap_or(1);
        let disposition = match Message::from_body(&body) {
            // A body that is not ours cannot be handled by any retry: send it to the dead-letter queue
            // (by failing it every time) rather than dropping it.
            Err(e) => Disposition::Retry { after: Duration::from_secs(60), error: format!("message {id} is not a deltadesk message: {e}") },
            Ok(msg) => match ctx.engine(msg.migration()).await {
                Err(e) => Disposition::Retry { after: Duration::from_secs(60), error: format!("message {id}: {e}") },
                Ok(engine) => handle_message(&engine, &body, receive_count).await,
            },
        };
        // Done (delete it) or not (fail it, to come back after a wait). A deferral is a fresh delayed copy
        // plus the original's deletion; if the copy cannot be sent, the original is retried after the same
        // wait instead.
        let settled: Result<String, (Duration, String)> = match disposition {
            Disposition::Ack(what) => Ok(what),
            Disposition::Retry { after, error } => Err((after, error)),
            Disposition::Defer { after, body, reason } => match queue.send(&body, after).await {
                Ok(()) => Ok(format!("deferred by {} ms: {reason}", after.as_millis())),
                Err(e) => Err((after, format!("{reason}; deferring it: {e}"))),
            },
        };
        match settled {
            Ok(what) => {
                tracing::debug!(message_id = %id, what = %what, "done");
                outcome.done += 1;
            }
            Err((after, error)) => {
                tracing::warn!(message_id = %id, error = %error, "will retry");
                if let Some(receipt) = record.receipt_handle.as_deref() {
                    let _ = queue.change_visibility(receipt, after).await;
                }
                outcome.retried.push((id.clone(), error));
                let mut f = BatchItemFailure::default();
                f.item_identifier = id;
                failures.push(f);
            }
        }
    }
    let mut resp = SqsBatchResponse::default();
    resp.batch_item_failures = failures;
    (resp, outcome)
}

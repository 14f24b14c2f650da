//! `SqsQueue`: the [`Queue`] on an SQS standard queue and its dead-letter queue, with the semantics
//! of the embedded `SqliteQueue` where SQS allows:
//! - the same limits, checked before calling: bodies of 1 to [`MAX_BODY_BYTES`] bytes of the
//!   characters SQS accepts, delays up to 15 minutes, visibility up to 12 hours;
//! - sub-second durations round *up* to whole seconds (SQS's unit), so a message is never visible
//!   sooner than asked and a long poll of 0.5 s waits up to 1 s;
//! - the redrive policy (see [`create_queue_pair`]) moves a message to `{name}-dlq` on the receive
//!   after its `maxReceiveCount`-th, as `SqliteQueue` does;
//! - deleting or changing visibility with a receipt SQS no longer accepts is the port's silent no-op.
//!
//! Differences that SQS imposes:
//! - a *stale* receipt (the message has been received again since) may still delete the message or
//!   change its visibility: SQS only says it "might not", and moto always does;
//! - `send_batch` sends batches of ten (and at most 256 KiB) one after the other: a failure leaves
//!   the earlier batches sent, and the error names the failed entries;
//! - `redrive_dead_letters` receives from the DLQ, re-sends and then deletes, so a redriven message
//!   gets a new message id (and starts over at receive count 1, as on SQLite);
//! - `depth` is SQS's *approximate* counts.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;
use deltadesk_core::ports::queue::{Queue, QueueDepth, QueueError, Received};

use crate::errors::{self, AwsError, Kind};

/// The port's maximum message size (256 KiB), as `SqliteQueue`'s; SQS itself now accepts more.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// SQS's maximum `DelaySeconds`.
pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// SQS's maximum visibility timeout.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);
/// SQS's limits per `*Batch` request.
const BATCH: usize = 10;
const BATCH_BYTES: usize = 256 * 1024;
/// SQS's longest long poll.
const MAX_WAIT: Duration = Duration::from_secs(20);
/// How long `dead_letters` and `redrive_dead_letters` hide the dead letters they hold.
const HOLD: Duration = Duration::from_secs(60);
const MAX_NAME_CHARS: usize = 80;

/// One SQS queue and its dead-letter queue. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    name: String,
    url: String,
    dlq_url: String,
}

impl SqsQueue {
    /// The queue at `queue_url` whose redrive policy sends to the queue at `dlq_url`. The name is
    /// the last segment of the URL.
    pub fn new(client: Client, queue_url: impl Into<String>, dlq_url: impl Into<String>) -> Self {
        let url = queue_url.into();
        let name = url.rsplit('/').next().unwrap_or(&url).to_string();
        Self { client, name, url, dlq_url: dlq_url.into() }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn dead_letter_url(&self) -> &str {
        &self.dlq_url
    }

    fn rejected(&self, cause: String) -> QueueError {
        QueueError::Rejected { queue: self.name.clone(), cause }
    }

    fn failed<E>(&self, operation: &'static str, err: aws_sdk_sqs::error::SdkError<E, aws_sdk_sqs::config::http::HttpResponse>) -> QueueError
    where
        E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let kind = errors::kind(&err);
        let code = errors::code(&err).unwrap_or_default().to_string();
        let err = AwsError::new("SQS", operation, &self.name, err);
        match (kind, code.as_str()) {
            // The queue missing or misconfigured is not the message's fault: retryable, like a
            // locked SQLite file.
            (Kind::Invalid, "AWS.SimpleQueueService.NonExistentQueue" | "QueueDoesNotExist" | "AccessDenied" | "AccessDeniedException") => {
                QueueError::Unavailable { queue: self.name.clone(), source: Box::new(err) }
            }
            (Kind::Invalid, _) => QueueError::Rejected { queue: self.name.clone(), cause: err.to_string() },
            (Kind::Transient, _) => QueueError::Unavailable { queue: self.name.clone(), source: Box::new(err) },
        }
    }

    fn check_body(&self, body: &str) -> Result<(), QueueError> {
        if body.is_empty() {
            return Err(self.rejected("empty message body".to_string()));
        }
        if body.len() > MAX_BODY_BYTES {
            return Err(self.rejected(format!("body of {} bytes exceeds {MAX_BODY_BYTES}", body.len())));
        }
        // SQS accepts #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF.
        let allowed = |c: char| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..);
        if let Some(c) = body.chars().find(|c| !allowed(*c)) {
            return Err(self.rejected(format!("body contains the character {c:?}, which SQS refuses")));
        }
        Ok(())
    }

    /// One `ReceiveMessage` on `url` (this queue or its DLQ).
    async fn receive_from(&self, url: &str, max: usize, visibility: Duration, wait: Duration) -> Result<Vec<Received>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(i32::try_from(max.clamp(1, BATCH)).unwrap_or(1))
            .visibility_timeout(secs_up(visibility))
            .wait_time_seconds(secs_up(wait.min(MAX_WAIT)))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| self.failed("ReceiveMessage", e))?;
        let mut got = Vec::new();
        for m in out.messages() {
            let (Some(id), Some(receipt)) = (m.message_id(), m.receipt_handle()) else {
                tracing::warn!(queue = %self.name, "SQS returned a message without id or receipt handle; skipped");
                continue;
            };
            let receive_count = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|c| c.parse::<u32>().ok())
                .unwrap_or(1);
            got.push(Received {
                message_id: id.to_string(),
                receipt: receipt.to_string(),
                body: m.body().unwrap_or_default().to_string(),
                receive_count,
            });
        }
        Ok(got)
    }

    async fn depth_of(&self, url: &str) -> Result<QueueDepth, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| self.failed("GetQueueAttributes", e))?;
        let count = |name: QueueAttributeName| {
            out.attributes().and_then(|a| a.get(&name)).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        };
        Ok(QueueDepth {
            visible: count(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            delayed: count(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        })
    }

    /// Receives up to `max` (≤ 10) visible dead letters, hidden for [`HOLD`]. A short poll may miss
    /// messages on SQS, so an empty answer is believed only when the DLQ's depth agrees.
    async fn take_dead_letters(&self, max: usize) -> Result<Vec<Received>, QueueError> {
        for attempt in 0..3 {
            let wait = if attempt == 0 { Duration::ZERO } else { Duration::from_secs(1) };
            let got = self.receive_from(&self.dlq_url, max, HOLD, wait).await?;
            if !got.is_empty() || self.depth_of(&self.dlq_url).await?.visible == 0 {
                return Ok(got);
            }
        }
        Ok(Vec::new())
    }

    /// Makes dead letters held by [`Self::take_dead_letters`] visible again, in batches.
    async fn release_dead_letters(&self, held: &[Received]) -> Result<(), QueueError> {
        for chunk in held.chunks(BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&m.receipt)
                        .visibility_timeout(0)
                        .build()
                        .map_err(|e| self.rejected(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.client
                .change_message_visibility_batch()
                .queue_url(&self.dlq_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| self.failed("ChangeMessageVisibilityBatch", e))?;
        }
        Ok(())
    }

    /// Sends one batch (≤ 10 entries, ≤ 256 KiB) to `url`; returns the indexes (into `bodies`) that failed.
    async fn send_one_batch(&self, url: &str, bodies: &[(usize, &str)]) -> Result<Vec<(usize, String)>, QueueError> {
        let entries = bodies
            .iter()
            .map(|(i, body)| {
                SendMessageBatchRequestEntry::builder().id(i.to_string()).message_body(*body).build().map_err(|e| self.rejected(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = self
            .client
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| self.failed("SendMessageBatch", e))?;
        Ok(out
            .failed()
            .iter()
            .map(|f| {
                let index = f.id().parse::<usize>().unwrap_or(usize::MAX);
                (index, format!("{} ({}{})", f.code(), f.message().unwrap_or("no message"), if f.sender_fault() { ", sender's fault" } else { "" }))
            })
            .collect())
    }
}

/// A duration as SQS's whole seconds, rounded up so that "at least" stays true.
fn secs_up(d: Duration) -> i32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(secs).unwrap_or(i32::MAX)
}

/// Splits `bodies` into SQS batches: at most ten entries and [`BATCH_BYTES`] each.
fn batches(bodies: &[String]) -> Vec<Vec<(usize, &str)>> {
    let mut out: Vec<Vec<(usize, &str)>> = Vec::new();
    let mut bytes = 0usize;
    for (i, body) in bodies.iter().enumerate() {
        let fits = out.last().is_some_and(|b| b.len() < BATCH && bytes + body.len() <= BATCH_BYTES);
        if !fits {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += body.len();
        if let Some(batch) = out.last_mut() {
            batch.push((i, body.as_str()));
        }
    }
    out
}

/// Creates (or finds) the dead-letter queue `{name}-dlq` and the queue `name` with a redrive policy
/// of `max_receives` receives; returns `(queue_url, dlq_url)` for [`SqsQueue::new`]. For tests and
/// setup scripts — production queues come from the infrastructure templates.
pub async fn create_queue_pair(client: &Client, name: &str, max_receives: u32) -> Result<(String, String), QueueError> {
    let dlq = format!("{name}-dlq");
    let valid = |n: &str| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid(name) || dlq.len() > MAX_NAME_CHARS || max_receives == 0 {
        return Err(QueueError::Rejected {
            queue: name.to_string(),
            cause: format!(
                "queue names are 1 to {} characters of A-Z, a-z, 0-9, '-' and '_' (the dead-letter queue adds \"-dlq\"), and max_receives is at least 1",
                MAX_NAME_CHARS - 4
            ),
        });
    }
    let unavailable = |op: &'static str, target: &str, e: AwsError| QueueError::Unavailable {
        queue: target.to_string(),
        source: Box::new(AwsError { operation: op, ..e }),
    };
    // 14 days, SQS's maximum: dead letters wait for a human.
    let dlq_url = client
        .create_queue()
        .queue_name(&dlq)
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .send()
        .await
        .map_err(|e| unavailable("CreateQueue", &dlq, AwsError::new("SQS", "CreateQueue", &dlq, e)))?
        .queue_url()
        .map(str::to_string)
        .ok_or_else(|| unavailable("CreateQueue", &dlq, AwsError::adapter("SQS", "CreateQueue", &dlq, "no QueueUrl in the answer".into())))?;
    let arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| unavailable("GetQueueAttributes", &dlq, AwsError::new("SQS", "GetQueueAttributes", &dlq, e)))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| unavailable("GetQueueAttributes", &dlq, AwsError::adapter("SQS", "GetQueueAttributes", &dlq, "no QueueArn".into())))?;
    let policy = serde_json::json!({ "deadLetterTargetArn": arn, "maxReceiveCount": max_receives }).to_string();
    let url = client
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::RedrivePolicy, policy)
        .send()
        .await
        .map_err(|e| unavailable("CreateQueue", name, AwsError::new("SQS", "CreateQueue", name, e)))?
        .queue_url()
        .map(str::to_string)
        .ok_or_else(|| unavailable("CreateQueue", name, AwsError::adapter("SQS", "CreateQueue", name, "no QueueUrl in the answer".into())))?;
    Ok((url, dlq_url))
}

/// Whether SQS refused a receipt because it no longer refers to an in-flight message: the port
/// treats such calls as no-ops.
fn stale_receipt(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("ReceiptHandleIsInvalid" | "InvalidReceiptHandle" | "MessageNotInflight" | "AWS.SimpleQueueService.MessageNotInflight")
    )
}

#[async_trait]
impl Queue for SqsQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, body: &str, delay: Duration) -> Result<(), QueueError> {
        self.check_body(body)?;
        if delay > MAX_DELAY {
            return Err(self.rejected(format!("delay of {delay:?} exceeds {MAX_DELAY:?}")));
        }
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .delay_seconds(secs_up(delay))
            .send()
            .await
            .map_err(|e| self.failed("SendMessage", e))?;
        Ok(())
    }

    async fn send_batch(&self, bodies: &[String]) -> Result<(), QueueError> {
        // All bodies are checked first, so an invalid one sends nothing (as on SQLite).
        for body in bodies {
            self.check_body(body)?;
        }
        let mut failures = Vec::new();
        for batch in batches(bodies) {
            failures.extend(self.send_one_batch(&self.url, &batch).await?);
        }
        if failures.is_empty() {
            return Ok(());
        }
        let named: Vec<String> = failures.iter().map(|(i, why)| format!("#{i}: {why}")).collect();
        Err(QueueError::Unavailable {
            queue: self.name.clone(),
            source: Box::new(AwsError::adapter(
                "SQS",
                "SendMessageBatch",
                &self.name,
                format!("{} of {} messages were not sent: {}", failures.len(), bodies.len(), named.join("; ")),
            )),
        })
    }

    async fn receive(&self, max: usize, visibility: Duration, wait: Duration) -> Result<Vec<Received>, QueueError> {
        if visibility > MAX_VISIBILITY {
            return Err(self.rejected(format!("visibility of {visibility:?} exceeds {MAX_VISIBILITY:?}")));
        }
        if max == 0 {
            return Ok(Vec::new());
        }
        self.receive_from(&self.url, max, visibility, wait).await
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        match self.client.delete_message().queue_url(&self.url).receipt_handle(receipt).send().await {
            Ok(_) => Ok(()),
            Err(e) if stale_receipt(errors::code(&e)) => {
                tracing::debug!(queue = %self.name, "delete with a receipt SQS no longer knows: nothing to do");
                Ok(())
            }
            Err(e) => Err(self.failed("DeleteMessage", e)),
        }
    }

    async fn change_visibility(&self, receipt: &str, visibility: Duration) -> Result<(), QueueError> {
        if visibility > MAX_VISIBILITY {
            return Err(self.rejected(format!("visibility of {visibility:?} exceeds {MAX_VISIBILITY:?}")));
        }
        let result = self
            .client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(secs_up(visibility))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if stale_receipt(errors::code(&e)) => {
                tracing::debug!(queue = %self.name, "change_visibility with a stale receipt: nothing to do");
                Ok(())
            }
            Err(e) => Err(self.failed("ChangeMessageVisibility", e)),
        }
    }

    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        self.depth_of(&self.url).await
    }

    async fn redrive_dead_letters(&self) -> Result<u64, QueueError> {
        // Receive, re-send, delete — rather than StartMessageMoveTask, which is asynchronous and not
        // offered by every emulator. A crash in between leaves a message in both queues (at least
        // once) or, before the send, back in the DLQ after HOLD: never lost.
        let mut moved = 0u64;
        let mut seen = HashSet::new();
        loop {
            let held = self.take_dead_letters(BATCH).await?;
            // A message seen twice means the DLQ is being refilled as fast as it drains (or a
            // delete failed): stop rather than loop forever; the next redrive takes the rest.
            let fresh: Vec<Received> = held.into_iter().filter(|m| seen.insert(m.message_id.clone())).collect();
            if fresh.is_empty() {
                return Ok(moved);
            }
            let bodies: Vec<String> = fresh.iter().map(|m| m.body.clone()).collect();
            let batch: Vec<(usize, &str)> = bodies.iter().map(String::as_str).enumerate().collect();
            let failed = self.send_one_batch(&self.url, &batch).await?;
            let failed_idx: HashSet<usize> = failed.iter().map(|(i, _)| *i).collect();
            let entries = fresh
                .iter()
                .enumerate()
                .filter(|(i, _)| !failed_idx.contains(i))
                .map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(&m.receipt).build().map_err(|e| self.rejected(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let sent = entries.len() as u64;
            if !entries.is_empty() {
                self.client
                    .delete_message_batch()
                    .queue_url(&self.dlq_url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| self.failed("DeleteMessageBatch", e))?;
            }
            moved += sent;
            if !failed.is_empty() {
                let named: Vec<String> = failed.iter().map(|(i, why)| format!("#{i}: {why}")).collect();
                return Err(QueueError::Unavailable {
                    queue: self.name.clone(),
                    source: Box::new(AwsError::adapter(
                        "SQS",
                        "SendMessageBatch",
                        &self.name,
                        format!("redrive moved {moved}, then {} dead letters could not be re-sent: {}", failed.len(), named.join("; ")),
                    )),
                });
            }
        }
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<String>, QueueError> {
        // A peek: receive (hiding them so each is seen once), then make them visible again.
        let mut held: Vec<Received> = Vec::new();
        let mut seen = HashSet::new();
        let result = async {
            while held.len() < max {
                let got = self.take_dead_letters((max - held.len()).min(BATCH)).await?;
                let fresh: Vec<Received> = got.into_iter().filter(|m| seen.insert(m.message_id.clone())).collect();
                if fresh.is_empty() {
                    break;
                }
                held.extend(fresh);
            }
            Ok::<(), QueueError>(())
        }
        .await;
        // Release what was taken even if a later receive failed, so nothing stays hidden for HOLD.
        let released = self.release_dead_letters(&held).await;
        result?;
        released?;
        Ok(held.into_iter().map(|m| m.body).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_up() {
        assert_eq!(secs_up(Duration::ZERO), 0);
        assert_eq!(secs_up(Duration::from_millis(1)), 1);
        assert_eq!(secs_up(Duration::from_secs(2)), 2);
        assert_eq!(secs_up(Duration::from_millis(2500)), 3);
    }

    #[test]
    fn batches_hold_ten_and_256_kib() {
        let small: Vec<String> = (0..25).map(|i| i.to_string()).collect();
        assert_eq!(batches(&small).iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
        let big: Vec<String> = (0..3).map(|_| "x".repeat(100 * 1024)).collect();
        assert_eq!(batches(&big).iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
        assert!(batches(&[]).is_empty());
        let indexes: Vec<usize> = batches(&small).into_iter().flatten().map(|(i, _)| i).collect();
        assert_eq!(indexes, (0..25).collect::<Vec<_>>());
    }
}

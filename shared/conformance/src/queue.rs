//! Conformance checks for [`Queue`]: SQS semantics as `SqliteQueue` and `SqsQueue` must both offer.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deltadesk_core::ports::queue::{Queue, QueueDepth, QueueError, Received};

use crate::unique;

/// SQS's maximum message size as the port enforces it (256 KiB; SQS itself now takes more).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// How long a receive that expects a message may wait: long polling returns as soon as one is there,
/// and a real SQS short poll may miss messages, so "expect a message" always long-polls.
const WAIT: Duration = Duration::from_secs(2);
const NO_WAIT: Duration = Duration::ZERO;
/// A visibility timeout no check outlives.
const LONG: Duration = Duration::from_secs(60);
/// How long an approximate queue depth may take to settle.
const DEPTH_SETTLES: Duration = Duration::from_secs(10);

/// Opens queues for the suite: `make(name, max_receives)` opens (creating if needed) the queue `name`
/// whose dead-letter queue is `{name}-dlq`, with a redrive policy of `max_receives` receives.
/// Calling it again with the same name must give another handle on the same queue, as a second
/// process would have. Names are at most 40 characters of `[a-z0-9-]`, fresh for every run.
pub trait QueueFactory {
    fn open(&self, name: String, max_receives: u32) -> impl Future<Output = Arc<dyn Queue>>;
}

impl<F, Fut> QueueFactory for F
where
    F: Fn(String, u32) -> Fut,
    Fut: Future<Output = Arc<dyn Queue>>,
{
    fn open(&self, name: String, max_receives: u32) -> impl Future<Output = Arc<dyn Queue>> {
        self(name, max_receives)
    }
}

/// What a stale receipt (one from before the message's latest receive) may still do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleReceipts {
    /// Deleting or changing visibility with a stale receipt leaves the message alone — the port's
    /// promise, kept by `SqliteQueue`.
    NoOp,
    /// SQS only says a stale receipt "might not" delete the message, and moto (like SQS in practice)
    /// accepts any receipt the message ever had. Checked: the call does not fail.
    MayAct,
}

/// Runs every queue check, concurrently (each on its own fresh queues), so that the timing-based
/// ones overlap; takes a few seconds.
pub async fn queue(make: impl QueueFactory, stale: StaleReceipts) {
    let run = unique();
    let make = &make;
    futures::join!(
        at_least_once(make, format!("cf-{run}-alo"), stale),
        delete_removes(make, format!("cf-{run}-del")),
        change_visibility(make, format!("cf-{run}-vis")),
        delay_and_depth(make, format!("cf-{run}-delay")),
        batches(make, format!("cf-{run}-batch")),
        dead_letters(make, format!("cf-{run}-dlq")),
        concurrent_receivers(make, format!("cf-{run}-conc")),
        limits(make, format!("cf-{run}-limits")),
    );
}

async fn send(q: &dyn Queue, check: &str, body: &str, delay: Duration) {
    if let Err(e) = q.send(body, delay).await {
        panic!("queue conformance [{check}]: send({body:.40?}, {delay:?}) failed: {e:?}");
    }
}

async fn receive(q: &dyn Queue, check: &str, max: usize, visibility: Duration, wait: Duration) -> Vec<Received> {
    match q.receive(max, visibility, wait).await {
        Ok(got) => {
            assert!(got.len() <= max, "queue conformance [{check}]: receive(max {max}) returned {} messages", got.len());
            got
        }
        Err(e) => panic!("queue conformance [{check}]: receive({max}, {visibility:?}, {wait:?}) failed: {e:?}"),
    }
}

/// Receives exactly one message (long polling), failing the check otherwise.
async fn receive_one(q: &dyn Queue, check: &str, what: &str, visibility: Duration) -> Received {
    let mut got = receive(q, check, 10, visibility, WAIT).await;
    assert!(got.len() == 1, "queue conformance [{check}]: {what}: expected one message, got {got:?}");
    got.remove(0)
}

async fn expect_empty(q: &dyn Queue, check: &str, what: &str) {
    let got = receive(q, check, 10, LONG, NO_WAIT).await;
    assert!(got.is_empty(), "queue conformance [{check}]: {what}: expected no visible message, got {got:?}");
}

async fn delete(q: &dyn Queue, check: &str, receipt: &str) {
    if let Err(e) = q.delete(receipt).await {
        panic!("queue conformance [{check}]: delete failed: {e:?}");
    }
}

async fn depth(q: &dyn Queue, check: &str) -> QueueDepth {
    match q.depth().await {
        Ok(d) => d,
        Err(e) => panic!("queue conformance [{check}]: depth failed: {e:?}"),
    }
}

/// Waits until the depth is `want`: SQS's counts are approximate and may lag a little.
async fn expect_depth(q: &dyn Queue, check: &str, what: &str, want: QueueDepth) {
    let deadline = Instant::now() + DEPTH_SETTLES;
    loop {
        let got = depth(q, check).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "queue conformance [{check}]: {what}: expected depth {want:?}, got {got:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn depth_of(visible: u64, in_flight: u64, delayed: u64) -> QueueDepth {
    QueueDepth { visible, in_flight, delayed }
}

async fn at_least_once(make: &impl QueueFactory, name: String, stale: StaleReceipts) {
    let check = "at-least-once";
    let q = make.open(name.to_string(), 5).await;
    let q = q.as_ref();
    assert_eq!(q.name(), name, "queue conformance [{check}]: name() must be the queue's name");
    send(q, check, "hello", Duration::ZERO).await;

    let visibility = Duration::from_secs(1);
    let first = receive_one(q, check, "first receive", visibility).await;
    assert!(
        first.body == "hello" && first.receive_count == 1 && !first.receipt.is_empty() && !first.message_id.is_empty(),
        "queue conformance [{check}]: first delivery should be body \"hello\", receive_count 1, with id and receipt: {first:?}"
    );
    expect_empty(q, check, "while the message is in flight").await;
    expect_depth(q, check, "one message in flight", depth_of(0, 1, 0)).await;

    // Not deleted: it comes back once the visibility timeout is over.
    tokio::time::sleep(visibility + Duration::from_millis(300)).await;
    let second = receive_one(q, check, "after the visibility timeout", LONG).await;
    assert!(
        second.message_id == first.message_id && second.body == "hello" && second.receive_count == 2,
        "queue conformance [{check}]: an undeleted message must come back with the same id and receive_count 2: first {first:?}, second {second:?}"
    );
    assert_ne!(second.receipt, first.receipt, "queue conformance [{check}]: every receive must hand out a new receipt");

    // A stale receipt: must not fail; with `NoOp` it must not touch the message either.
    if let Err(e) = q.change_visibility(&first.receipt, Duration::ZERO).await {
        panic!("queue conformance [{check}]: change_visibility with a stale receipt must be a no-op, not {e:?}");
    }
    if stale == StaleReceipts::NoOp {
        expect_empty(q, check, "change_visibility with a stale receipt must not release the message").await;
    }
    delete(q, check, &first.receipt).await;
    if stale == StaleReceipts::NoOp {
        expect_depth(q, check, "delete with a stale receipt must not delete the message", depth_of(0, 1, 0)).await;
        delete(q, check, &second.receipt).await;
    } else {
        // Whatever the stale delete did, the current receipt still works (or is a no-op on a gone message).
        delete(q, check, &second.receipt).await;
    }
    expect_depth(q, check, "after deleting with the current receipt", depth_of(0, 0, 0)).await;
    // Deleting twice is harmless.
    delete(q, check, &second.receipt).await;
    expect_empty(q, check, "after the delete").await;
}

async fn delete_removes(make: &impl QueueFactory, name: String) {
    let check = "delete";
    let q = make.open(name.to_string(), 5).await;
    let q = q.as_ref();
    send(q, check, "one", Duration::ZERO).await;
    send(q, check, "two", Duration::ZERO).await;
    let mut got = receive(q, check, 10, Duration::from_secs(1), WAIT).await;
    if got.len() < 2 {
        got.extend(receive(q, check, 10, Duration::from_secs(1), WAIT).await);
    }
    let bodies: HashSet<&str> = got.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, HashSet::from(["one", "two"]), "queue conformance [{check}]: both messages delivered");
    let ids: HashSet<&str> = got.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(ids.len(), 2, "queue conformance [{check}]: two messages need two ids: {got:?}");
    let one = got.iter().find(|m| m.body == "one").map(|m| m.receipt.clone()).unwrap_or_default();
    delete(q, check, &one).await;
    // Past the visibility timeout only the undeleted message comes back.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let again = receive_one(q, check, "the undeleted message after the timeout", LONG).await;
    assert!(
        again.body == "two" && again.receive_count == 2,
        "queue conformance [{check}]: a deleted message came back, or the other one did not: {again:?}"
    );
    delete(q, check, &again.receipt).await;
    expect_depth(q, check, "all deleted", depth_of(0, 0, 0)).await;
}

async fn change_visibility(make: &impl QueueFactory, name: String) {
    let check = "change_visibility";
    let q = make.open(name.to_string(), 5).await;
    let q = q.as_ref();
    send(q, check, "m", Duration::ZERO).await;

    // Releasing early: visibility 0 makes it receivable at once.
    let got = receive_one(q, check, "first receive", LONG).await;
    if let Err(e) = q.change_visibility(&got.receipt, Duration::ZERO).await {
        panic!("queue conformance [{check}]: change_visibility(current receipt, 0) failed: {e:?}");
    }
    let again = receive_one(q, check, "after change_visibility to 0", Duration::from_secs(1)).await;
    assert_eq!((again.message_id.as_str(), again.receive_count), (got.message_id.as_str(), 2), "queue conformance [{check}]: released message");

    // Extending: a heartbeat keeps the message hidden past its original timeout.
    if let Err(e) = q.change_visibility(&again.receipt, LONG).await {
        panic!("queue conformance [{check}]: change_visibility(current receipt, 60 s) failed: {e:?}");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    expect_empty(q, check, "an extended visibility must keep the message hidden").await;
    expect_depth(q, check, "extended message in flight", depth_of(0, 1, 0)).await;
    delete(q, check, &again.receipt).await;
    expect_depth(q, check, "deleted", depth_of(0, 0, 0)).await;
}

async fn delay_and_depth(make: &impl QueueFactory, name: String) {
    let check = "delay";
    let q = make.open(name.to_string(), 5).await;
    let q = q.as_ref();
    expect_depth(q, check, "a new queue is empty", depth_of(0, 0, 0)).await;
    let sent = Instant::now();
    send(q, check, "later", Duration::from_secs(1)).await;
    send(q, check, "now", Duration::ZERO).await;
    expect_depth(q, check, "one visible, one delayed", depth_of(1, 0, 1)).await;
    let now = receive_one(q, check, "the undelayed message", LONG).await;
    assert_eq!(now.body, "now", "queue conformance [{check}]: the delayed message was delivered early");
    if sent.elapsed() < Duration::from_millis(900) {
        expect_empty(q, check, "a delayed message is hidden until its delay is over").await;
    }
    let later = receive_one(q, check, "the delayed message after its delay", LONG).await;
    assert!(
        later.body == "later" && sent.elapsed() >= Duration::from_millis(900),
        "queue conformance [{check}]: expected \"later\" after about 1 s, got {later:?} after {:?}",
        sent.elapsed()
    );
    expect_depth(q, check, "two in flight", depth_of(0, 2, 0)).await;
    delete(q, check, &now.receipt).await;
    delete(q, check, &later.receipt).await;
    expect_depth(q, check, "drained", depth_of(0, 0, 0)).await;
}

async fn batches(make: &impl QueueFactory, name: String) {
    let check = "send_batch";
    let q = make.open(name.to_string(), 5).await;
    let q = q.as_ref();
    if let Err(e) = q.send_batch(&[]).await {
        panic!("queue conformance [{check}]: an empty batch must be a no-op, not {e:?}");
    }
    // More than SQS's ten per request: the adapter splits.
    let bodies: Vec<String> = (0..25).map(|i| format!("{{\"n\":{i}}}")).collect();
    if let Err(e) = q.send_batch(&bodies).await {
        panic!("queue conformance [{check}]: send_batch of 25 failed: {e:?}");
    }
    expect_depth(q, check, "25 sent", depth_of(25, 0, 0)).await;
    let mut got: Vec<Received> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < bodies.len() && Instant::now() < deadline {
        got.extend(receive(q, check, 10, LONG, WAIT).await);
    }
    let mut received: Vec<String> = got.iter().map(|m| m.body.clone()).collect();
    received.sort();
    let mut want = bodies.clone();
    want.sort();
    assert_eq!(received, want, "queue conformance [{check}]: every body of the batch, exactly once");
    for m in &got {
        delete(q, check, &m.receipt).await;
    }
    expect_depth(q, check, "drained", depth_of(0, 0, 0)).await;
}

async fn dead_letters(make: &impl QueueFactory, name: String) {
    let check = "dead letters";
    let q = make.open(name.to_string(), 2).await;
    let q = q.as_ref();
    send(q, check, "poison", Duration::ZERO).await;
    for round in 1..=2u32 {
        // Visibility 0: back at once, as if the worker had crashed immediately.
        let got = receive_one(q, check, "a receive within max_receives", Duration::ZERO).await;
        assert!(
            got.body == "poison" && got.receive_count == round,
            "queue conformance [{check}]: receive {round} should deliver \"poison\" with receive_count {round}: {got:?}"
        );
    }
    // The next receive moves it to the dead-letter queue instead of delivering it.
    let got = receive(q, check, 10, LONG, Duration::from_secs(1)).await;
    assert!(got.is_empty(), "queue conformance [{check}]: a message past max_receives was delivered: {got:?}");
    expect_depth(q, check, "the main queue is empty once the message is dead-lettered", depth_of(0, 0, 0)).await;

    let dead = match q.dead_letters(10).await {
        Ok(d) => d,
        Err(e) => panic!("queue conformance [{check}]: dead_letters failed: {e:?}"),
    };
    assert_eq!(dead, ["poison"], "queue conformance [{check}]: the dead-letter queue");
    // Peeking consumes nothing.
    let again = q.dead_letters(10).await.unwrap_or_else(|e| panic!("queue conformance [{check}]: dead_letters failed: {e:?}"));
    assert_eq!(again, ["poison"], "queue conformance [{check}]: dead_letters must only peek");

    let moved = q.redrive_dead_letters().await.unwrap_or_else(|e| panic!("queue conformance [{check}]: redrive failed: {e:?}"));
    assert_eq!(moved, 1, "queue conformance [{check}]: redrive_dead_letters must report one moved message");
    let left = q.dead_letters(10).await.unwrap_or_else(|e| panic!("queue conformance [{check}]: dead_letters failed: {e:?}"));
    assert!(left.is_empty(), "queue conformance [{check}]: the dead-letter queue after a redrive: {left:?}");
    let back = receive_one(q, check, "the redriven message", LONG).await;
    assert!(
        back.body == "poison" && back.receive_count == 1,
        "queue conformance [{check}]: a redriven message starts over at receive_count 1: {back:?}"
    );
    delete(q, check, &back.receipt).await;
    let none = q.redrive_dead_letters().await.unwrap_or_else(|e| panic!("queue conformance [{check}]: redrive failed: {e:?}"));
    assert_eq!(none, 0, "queue conformance [{check}]: redriving an empty dead-letter queue moves nothing");

    // Many dead letters: dead_letters honours `max` and the redrive moves them all.
    let bodies: Vec<String> = (0..12).map(|i| format!("dead-{i}")).collect();
    q.send_batch(&bodies).await.unwrap_or_else(|e| panic!("queue conformance [{check}]: send_batch failed: {e:?}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Receive everything (visibility 0) until it has all gone to the dead-letter queue.
        let got = receive(q, check, 10, Duration::ZERO, Duration::from_millis(500)).await;
        if got.is_empty() && depth(q, check).await.total() == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "queue conformance [{check}]: messages never reached the dead-letter queue");
    }
    let some = q.dead_letters(5).await.unwrap_or_else(|e| panic!("queue conformance [{check}]: dead_letters failed: {e:?}"));
    assert_eq!(some.len(), 5, "queue conformance [{check}]: dead_letters(5) with 12 dead letters: {some:?}");
    let mut all = q.dead_letters(100).await.unwrap_or_else(|e| panic!("queue conformance [{check}]: dead_letters failed: {e:?}"));
    all.sort();
    let mut want = bodies.clone();
    want.sort();
    assert_eq!(all, want, "queue conformance [{check}]: dead_letters(100) lists every dead letter once");
    let moved = q.redrive_dead_letters().await.unwrap_or_else(|e| panic!("queue conformance [{check}]: redrive failed: {e:?}"));
    assert_eq!(moved, 12, "queue conformance [{check}]: redrive of 12 dead letters");
    expect_depth(q, check, "12 redriven messages visible", depth_of(12, 0, 0)).await;
}

async fn concurrent_receivers(make: &impl QueueFactory, name: String) {
    let check = "concurrent receivers";
    let producer = make.open(name.to_string(), 5).await;
    const N: usize = 40;
    let bodies: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    producer.send_batch(&bodies).await.unwrap_or_else(|e| panic!("queue conformance [{check}]: send_batch failed: {e:?}"));
    expect_depth(producer.as_ref(), check, "all sent", depth_of(N as u64, 0, 0)).await;

    // Two handles, as two workers would have, receiving at the same time.
    let a = make.open(name.to_string(), 5).await;
    let b = make.open(name.to_string(), 5).await;
    let drain = |q: Arc<dyn Queue>| async move {
        let mut got = Vec::new();
        loop {
            let batch = receive(q.as_ref(), check, 3, LONG, Duration::from_millis(500)).await;
            if batch.is_empty() {
                return got;
            }
            got.extend(batch);
        }
    };
    let (from_a, from_b) = futures::join!(drain(a), drain(b));
    let mut ids = HashSet::new();
    for m in from_a.iter().chain(&from_b) {
        assert!(
            ids.insert(m.message_id.clone()),
            "queue conformance [{check}]: message {} ({}) was delivered twice within its visibility timeout",
            m.message_id,
            m.body
        );
        assert_eq!(m.receive_count, 1, "queue conformance [{check}]: redelivered within the visibility timeout: {m:?}");
    }
    assert_eq!(ids.len(), N, "queue conformance [{check}]: two receivers together got {} of {N} messages", ids.len());
    expect_depth(producer.as_ref(), check, "all in flight", depth_of(0, N as u64, 0)).await;
}

async fn limits(make: &impl QueueFactory, name: String) {
    let check = "limits";
    let q = make.open(name.to_string(), 5).await;
    let q = q.as_ref();
    let rejected = |what: &str, r: Result<(), QueueError>| {
        assert!(matches!(r, Err(QueueError::Rejected { .. })), "queue conformance [{check}]: {what} must be Rejected, got {r:?}");
    };
    rejected("an empty body", q.send("", Duration::ZERO).await);
    rejected("a body over 256 KiB", q.send(&"x".repeat(MAX_BODY_BYTES + 1), Duration::ZERO).await);
    rejected("a body with NUL", q.send("nul\0", Duration::ZERO).await);
    rejected("a delay over 15 minutes", q.send("x", Duration::from_secs(15 * 60 + 1)).await);
    rejected("a batch with an empty body", q.send_batch(&["ok".to_string(), String::new()]).await);
    expect_depth(q, check, "rejected sends store nothing", depth_of(0, 0, 0)).await;

    let max = "y".repeat(MAX_BODY_BYTES);
    send(q, check, &max, Duration::ZERO).await;
    let got = receive_one(q, check, "a body of exactly 256 KiB", LONG).await;
    assert!(got.body == max, "queue conformance [{check}]: a 256 KiB body did not round-trip ({} bytes back)", got.body.len());
    let text = "json {\"k\": \"ümlaut 🎫\"}\n\ttab";
    send(q, check, text, Duration::ZERO).await;
    let got2 = receive_one(q, check, "a body with unicode and whitespace", LONG).await;
    assert_eq!(got2.body, text, "queue conformance [{check}]: body round-trip");
    delete(q, check, &got.receipt).await;
    delete(q, check, &got2.receipt).await;
}

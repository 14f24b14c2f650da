//! An AWS SDK interceptor that counts what an AWS bill is made of: requests per service and operation,
//! SQS requests in 64 KiB payload chunks, DynamoDB read and write request units, S3 request classes,
//! Secrets Manager calls — plus the Lambda invocations a driver reports. The AWS cost benchmark
//! (`bench/aws.rs`) attaches it to every client of a moto deployment (`moto_support::deploy_metered`).
//!
//! DynamoDB units are *computed*, not read back: moto answers `ConsumedCapacity` with a constant (1.0 or
//! 0.5) and nothing at all for `TransactWriteItems`, so asking it would count nothing real. Instead the
//! meter sizes every item read (from the response) and written (a shadow copy of each item, kept from the
//! writes it sees: the before and after images a write is billed on) with DynamoDB's published rules:
//! an item's size is the UTF-8 length of its attribute names plus values (a number: 1 byte + 1 per two
//! significant digits); a write costs 1 unit per started KiB of the larger image, a delete the size of
//! the deleted item, items in `TransactWriteItems` 2× that; a strongly consistent read 1 unit per started
//! 4 KiB (a query: of the sum of its items), an eventually consistent one half. A write whose condition
//! fails is charged like one that succeeds (DynamoDB charges failed conditional writes; for cancelled
//! transactions this makes the figure an upper bound) and counted apart.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use serde::Serialize;

/// SQS bills each 64 KiB chunk of a request's payload as one request.
const SQS_CHUNK: u64 = 64 * 1024;

/// Requests of one operation.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct OpCount {
    /// HTTP requests sent (retries included: each is billed).
    pub requests: u64,
    /// Executions that ended in an error (a failed condition, a stale receipt, ...): billed all the same.
    pub failed: u64,
    /// ReceiveMessage calls that returned no message.
    pub empty: u64,
}

/// What one Lambda function was invoked for.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Invocations {
    pub count: u64,
    /// Records (SQS messages) handed over, summed over the invocations.
    pub records: u64,
    /// Each invocation's duration in milliseconds, as measured.
    pub durations_ms: Vec<f64>,
}

/// Everything counted since the last [`AwsMeter::take`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    /// Keyed `"<who> <service> <operation>"`, e.g. `"functions DynamoDB UpdateItem"`.
    pub ops: BTreeMap<String, OpCount>,
    /// SQS requests as billed: each request counts its payload's 64 KiB chunks (at least one).
    pub sqs_billed: BTreeMap<String, u64>,
    pub dynamo_read_units: f64,
    pub dynamo_write_units: f64,
    /// Of `dynamo_write_units`, the units of writes whose condition failed or whose transaction was cancelled.
    pub dynamo_failed_write_units: f64,
    /// S3 requests by price class: PUT, COPY, POST, LIST (tier 1); GET, HEAD (tier 2); DELETE and abort (free).
    pub s3_tier1: u64,
    pub s3_tier2: u64,
    pub s3_free: u64,
    /// Bytes sent in S3 request bodies (PutObject, UploadPart).
    pub s3_bytes_put: u64,
    pub secrets_calls: u64,
    /// Keyed by function name (`fetcher`, `writer`, `scheduler`, `api`).
    pub invocations: BTreeMap<String, Invocations>,
}

impl Tally {
    pub fn sqs_billed_total(&self) -> u64 {
        self.sqs_billed.values().sum()
    }
    /// Requests of a service (all operations, both callers).
    pub fn service_requests(&self, service: &str) -> u64 {
        self.ops.iter().filter(|(k, _)| k.split(' ').nth(1) == Some(service)).map(|(_, c)| c.requests).sum()
    }
}

#[derive(Debug, Default)]
struct State {
    tally: Tally,
    /// The table as the meter's writes left it: (pk, sk) → attributes.
    items: HashMap<(String, String), HashMap<String, AttributeValue>>,
}

/// The shared counters. Cheap to clone; every clone counts into the same tally.
#[derive(Debug, Clone, Default)]
pub struct AwsMeter {
    state: Arc<Mutex<State>>,
    paused: Arc<AtomicBool>,
}

impl AwsMeter {
    pub fn new() -> AwsMeter {
        AwsMeter::default()
    }

    /// The interceptor to attach to a client; `who` labels its requests ("functions", "event source").
    pub fn tap(&self, who: &'static str) -> MeterTap {
        MeterTap { meter: self.clone(), who }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns the tally so far and starts a new one (the shadow items are kept).
    pub fn take(&self) -> Tally {
        std::mem::take(&mut self.lock().tally)
    }

    /// Stops counting until the guard drops: for a driver's own bookkeeping (is the run done? how deep are
    /// the queues?), which no deployment makes. Writes seen meanwhile still update the shadow items.
    pub fn pause(&self) -> PauseGuard {
        self.paused.store(true, Ordering::SeqCst);
        PauseGuard(self.paused.clone())
    }

    /// Records one Lambda invocation of `function` with `records` SQS records that took `took`.
    pub fn invocation(&self, function: &str, records: usize, took: Duration) {
        let mut s = self.lock();
        let inv = s.tally.invocations.entry(function.to_string()).or_default();
        inv.count += 1;
        inv.records += records as u64;
        inv.durations_ms.push(took.as_secs_f64() * 1000.0);
    }

    /// Bytes the DynamoDB table holds now (items' sizes as billed for storage, without the 100-byte
    /// per-item overhead DynamoDB adds), and the number of items.
    pub fn dynamo_stored(&self) -> (u64, u64) {
        let s = self.lock();
        (s.items.values().map(item_bytes).sum(), s.items.len() as u64)
    }
}

pub struct PauseGuard(Arc<AtomicBool>);

impl Drop for PauseGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// The interceptor: one per client, all counting into one [`AwsMeter`].
#[derive(Debug, Clone)]
pub struct MeterTap {
    meter: AwsMeter,
    who: &'static str,
}

/// What an execution's input said, kept in the request's config bag until its output is known.
#[derive(Debug, Clone)]
struct Pending {
    counted: bool,
    plan: Plan,
    attempts: Arc<AtomicU64>,
    body_bytes: Arc<AtomicU64>,
}

impl Storable for Pending {
    type Storer = StoreReplace<Self>;
}

/// One item write of a DynamoDB request.
#[derive(Debug, Clone)]
enum ItemWrite {
    Update { key: (String, String), expr: String, names: HashMap<String, String>, values: HashMap<String, AttributeValue> },
    Put { key: (String, String), item: HashMap<String, AttributeValue> },
    Delete { key: (String, String) },
    Check { key: (String, String) },
}

#[derive(Debug, Clone)]
enum Plan {
    DynamoWrites { writes: Vec<ItemWrite>, transactional: bool },
    DynamoRead { consistent: bool },
    SqsPayload(u64),
    Other,
}

fn key_of(map: Option<&HashMap<String, AttributeValue>>) -> (String, String) {
    let s = |name: &str| match map.and_then(|m| m.get(name)) {
        Some(AttributeValue::S(v)) => v.clone(),
        Some(AttributeValue::N(v)) => v.clone(),
        _ => String::new(),
    };
    (s("pk"), s("sk"))
}

fn plan_of(service: &str, op: &str, input: &aws_smithy_runtime_api::client::interceptors::context::Input) -> Plan {
    use aws_sdk_dynamodb::operation as ddb;
    use aws_sdk_sqs::operation as sqs;
    match (service, op) {
        ("DynamoDB", "UpdateItem") => match input.downcast_ref::<ddb::update_item::UpdateItemInput>() {
            Some(i) => Plan::DynamoWrites {
                writes: vec![ItemWrite::Update {
                    key: key_of(i.key.as_ref()),
                    expr: i.update_expression.clone().unwrap_or_default(),
                    names: i.expression_attribute_names.clone().unwrap_or_default(),
                    values: i.expression_attribute_values.clone().unwrap_or_default(),
                }],
                transactional: false,
            },
            None => Plan::Other,
        },
        ("DynamoDB", "PutItem") => match input.downcast_ref::<ddb::put_item::PutItemInput>() {
            Some(i) => {
                let item = i.item.clone().unwrap_or_default();
                Plan::DynamoWrites { writes: vec![ItemWrite::Put { key: key_of(Some(&item)), item }], transactional: false }
            }
            None => Plan::Other,
        },
        ("DynamoDB", "DeleteItem") => match input.downcast_ref::<ddb::delete_item::DeleteItemInput>() {
            Some(i) => Plan::DynamoWrites { writes: vec![ItemWrite::Delete { key: key_of(i.key.as_ref()) }], transactional: false },
            None => Plan::Other,
        },
        ("DynamoDB", "TransactWriteItems") => match input.downcast_ref::<ddb::transact_write_items::TransactWriteItemsInput>() {
            Some(i) => {
                let mut writes = vec![];
                for t in i.transact_items.as_deref().unwrap_or_default() {
                    if let Some(u) = &t.update {
                        writes.push(ItemWrite::Update {
                            key: key_of(Some(&u.key)),
                            expr: u.update_expression.clone(),
                            names: u.expression_attribute_names.clone().unwrap_or_default(),
                            values: u.expression_attribute_values.clone().unwrap_or_default(),
                        });
                    } else if let Some(d) = &t.delete {
                        writes.push(ItemWrite::Delete { key: key_of(Some(&d.key)) });
                    } else if let Some(p) = &t.put {
                        writes.push(ItemWrite::Put { key: key_of(Some(&p.item)), item: p.item.clone() });
                    } else if let Some(c) = &t.condition_check {
                        writes.push(ItemWrite::Check { key: key_of(Some(&c.key)) });
                    }
                }
                Plan::DynamoWrites { writes, transactional: true }
            }
            None => Plan::Other,
        },
        ("DynamoDB", "GetItem") => match input.downcast_ref::<ddb::get_item::GetItemInput>() {
            Some(i) => Plan::DynamoRead { consistent: i.consistent_read.unwrap_or(false) },
            None => Plan::Other,
        },
        ("DynamoDB", "Query") => match input.downcast_ref::<ddb::query::QueryInput>() {
            Some(i) => Plan::DynamoRead { consistent: i.consistent_read.unwrap_or(false) },
            None => Plan::Other,
        },
        ("SQS", "SendMessage") => match input.downcast_ref::<sqs::send_message::SendMessageInput>() {
            Some(i) => Plan::SqsPayload(i.message_body.as_deref().map_or(0, str::len) as u64),
            None => Plan::Other,
        },
        ("SQS", "SendMessageBatch") => match input.downcast_ref::<sqs::send_message_batch::SendMessageBatchInput>() {
            Some(i) => Plan::SqsPayload(i.entries.as_deref().unwrap_or_default().iter().map(|e| e.message_body.len() as u64).sum()),
            None => Plan::Other,
        },
        _ => Plan::Other,
    }
}

impl Intercept for MeterTap {
    fn name(&self) -> &'static str {
        "deltadesk-aws-meter"
    }

    // Not `read_before_execution`: client interceptors see it before the operation's configuration (its
    // `Metadata`: service and operation name) is in the bag.
    fn read_before_serialization(&self, context: &BeforeSerializationInterceptorContextRef<'_>, _rc: &RuntimeComponents, cfg: &mut ConfigBag) -> Result<(), BoxError> {
        let (service, op) = cfg.load::<Metadata>().map(|m| (m.service().to_string(), m.name().to_string())).unwrap_or_default();
        let plan = plan_of(&service, &op, context.input());
        let counted = !self.meter.paused.load(Ordering::SeqCst);
        cfg.interceptor_state().store_put(Pending { counted, plan, attempts: Arc::default(), body_bytes: Arc::default() });
        Ok(())
    }

    fn read_before_transmit(&self, context: &BeforeTransmitInterceptorContextRef<'_>, _rc: &RuntimeComponents, cfg: &mut ConfigBag) -> Result<(), BoxError> {
        if let Some(p) = cfg.load::<Pending>() {
            p.attempts.fetch_add(1, Ordering::Relaxed);
            p.body_bytes.store(context.request().body().content_length().unwrap_or(0), Ordering::Relaxed);
        }
        Ok(())
    }

    fn read_after_execution(&self, context: &FinalizerInterceptorContextRef<'_>, _rc: &RuntimeComponents, cfg: &mut ConfigBag) -> Result<(), BoxError> {
        let Some(p) = cfg.load::<Pending>().cloned() else { return Ok(()) };
        let (service, op) = cfg.load::<Metadata>().map(|m| (m.service().to_string(), m.name().to_string())).unwrap_or_default();
        let output = context.output_or_error();
        let ok = matches!(output, Some(Ok(_)));
        let mut s = self.meter.lock();
        // The shadow items follow every successful write, counted or not.
        let write_units = match &p.plan {
            Plan::DynamoWrites { writes, transactional } => Some(apply_writes(&mut s.items, writes, *transactional, ok)),
            _ => None,
        };
        if !p.counted {
            return Ok(());
        }
        let attempts = p.attempts.load(Ordering::Relaxed).max(1);
        let key = format!("{} {service} {op}", self.who);
        let mut empty = false;
        match (&p.plan, service.as_str()) {
            (Plan::DynamoWrites { .. }, _) => {
                let units = write_units.unwrap_or(0.0);
                s.tally.dynamo_write_units += units;
                if !ok {
                    s.tally.dynamo_failed_write_units += units;
                }
            }
            (Plan::DynamoRead { consistent }, _) => {
                let bytes = match output {
                    Some(Ok(o)) => read_bytes(&op, o),
                    _ => 0,
                };
                // At least one unit per request, even for nothing found; eventually consistent reads half.
                let units = bytes.div_ceil(4096).max(1) as f64;
                s.tally.dynamo_read_units += if *consistent { units } else { units / 2.0 };
            }
            (plan, "SQS") => {
                let payload = match plan {
                    Plan::SqsPayload(b) => *b,
                    _ => match output.and_then(Result::ok).and_then(|o| o.downcast_ref::<aws_sdk_sqs::operation::receive_message::ReceiveMessageOutput>()) {
                        Some(r) => {
                            let msgs = r.messages.as_deref().unwrap_or_default();
                            empty = msgs.is_empty();
                            msgs.iter().map(|m| m.body.as_deref().map_or(0, str::len) as u64).sum()
                        }
                        None => 0,
                    },
                };
                // Each retry is billed again; the payload's chunks once per attempt.
                *s.tally.sqs_billed.entry(key.clone()).or_default() += attempts * payload.div_ceil(SQS_CHUNK).max(1);
            }
            (_, "S3") => {
                match op.as_str() {
                    "PutObject" | "CopyObject" | "CreateMultipartUpload" | "UploadPart" | "UploadPartCopy" | "CompleteMultipartUpload" | "ListObjectsV2" | "ListObjects" | "ListParts" | "ListMultipartUploads" => s.tally.s3_tier1 += attempts,
                    "DeleteObject" | "DeleteObjects" | "AbortMultipartUpload" => s.tally.s3_free += attempts,
                    _ => s.tally.s3_tier2 += attempts,
                }
                if matches!(op.as_str(), "PutObject" | "UploadPart") {
                    s.tally.s3_bytes_put += p.body_bytes.load(Ordering::Relaxed);
                }
            }
            (_, "Secrets Manager") => s.tally.secrets_calls += attempts,
            _ => {}
        }
        let c = s.tally.ops.entry(key).or_default();
        c.requests += attempts;
        c.failed += u64::from(!ok);
        c.empty += u64::from(empty);
        Ok(())
    }
}

/// Bytes of the items a GetItem or Query answered.
fn read_bytes(op: &str, o: &aws_smithy_runtime_api::client::interceptors::context::Output) -> u64 {
    use aws_sdk_dynamodb::operation as ddb;
    match op {
        "GetItem" => o.downcast_ref::<ddb::get_item::GetItemOutput>().and_then(|g| g.item.as_ref()).map_or(0, item_bytes),
        "Query" => o.downcast_ref::<ddb::query::QueryOutput>().map_or(0, |q| q.items.as_deref().unwrap_or_default().iter().map(item_bytes).sum()),
        _ => 0,
    }
}

/// Write units of `writes` (sized on the shadow items), applying them to the shadow if the request succeeded.
fn apply_writes(items: &mut HashMap<(String, String), HashMap<String, AttributeValue>>, writes: &[ItemWrite], transactional: bool, ok: bool) -> f64 {
    let factor = if transactional { 2.0 } else { 1.0 };
    let mut units = 0.0;
    let mut after_images = vec![];
    for w in writes {
        let (key, after) = match w {
            ItemWrite::Update { key, expr, names, values } => {
                let mut item = items.get(key).cloned().unwrap_or_else(|| new_item(key));
                apply_update(&mut item, expr, names, values);
                (key, Some(item))
            }
            ItemWrite::Put { key, item } => (key, Some(item.clone())),
            ItemWrite::Delete { key } => (key, None),
            ItemWrite::Check { key } => {
                let before = items.get(key).map_or(0, item_bytes);
                units += factor * before.div_ceil(1024).max(1) as f64;
                continue;
            }
        };
        let before = items.get(key).map_or(0, item_bytes);
        let after_bytes = after.as_ref().map_or(0, item_bytes);
        units += factor * before.max(after_bytes).div_ceil(1024).max(1) as f64;
        after_images.push((key.clone(), after));
    }
    if ok {
        for (key, after) in after_images {
            match after {
                Some(item) => items.insert(key, item),
                None => items.remove(&key),
            };
        }
    }
    units
}

fn new_item(key: &(String, String)) -> HashMap<String, AttributeValue> {
    HashMap::from([("pk".to_string(), AttributeValue::S(key.0.clone())), ("sk".to_string(), AttributeValue::S(key.1.clone()))])
}

/// Applies an update expression of the shapes DynamoState writes (`SET a = :v, b = if_not_exists(b, :z) + :o`,
/// `REMOVE a`, `ADD a :d, b :e`) to a shadow item.
fn apply_update(item: &mut HashMap<String, AttributeValue>, expr: &str, names: &HashMap<String, String>, values: &HashMap<String, AttributeValue>) {
    let name = |t: &str| names.get(t.trim()).cloned().unwrap_or_else(|| t.trim().to_string());
    for (clause, body) in clauses(expr) {
        for action in split_top(body) {
            match clause {
                "SET" => {
                    let Some((lhs, rhs)) = action.split_once('=') else { continue };
                    let target = name(lhs);
                    let v = eval(rhs, item, names, values);
                    item.insert(target, v);
                }
                "REMOVE" => {
                    item.remove(&name(action));
                }
                "ADD" => {
                    let mut parts = action.split_whitespace();
                    let (Some(n), Some(v)) = (parts.next(), parts.next()) else { continue };
                    let target = name(n);
                    let by = values.get(v).map_or(0.0, num);
                    let now = item.get(&target).map_or(0.0, num);
                    item.insert(target, AttributeValue::N(fmt_num(now + by)));
                }
                _ => {}
            }
        }
    }
}

/// `SET …`, `REMOVE …`, `ADD …` sections of an update expression.
fn clauses(expr: &str) -> Vec<(&'static str, &str)> {
    let mut marks: Vec<(usize, &'static str)> = vec![];
    for kw in ["SET", "REMOVE", "ADD", "DELETE"] {
        let mut from = 0;
        while let Some(i) = expr[from..].find(kw) {
            let at = from + i;
            let before_ok = at == 0 || expr.as_bytes()[at - 1] == b' ';
            let after_ok = expr.as_bytes().get(at + kw.len()) == Some(&b' ');
            if before_ok && after_ok {
                marks.push((at, kw));
            }
            from = at + kw.len();
        }
    }
    marks.sort();
    marks.iter().enumerate().map(|(n, (at, kw))| (*kw, expr[at + kw.len()..marks.get(n + 1).map_or(expr.len(), |m| m.0)].trim())).collect()
}

/// Splits at commas outside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0, vec![]);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if !s[start..].trim().is_empty() {
        out.push(s[start..].trim());
    }
    out
}

/// Evaluates `:v`, `#a`, `if_not_exists(#a, :v)` and sums of those.
fn eval(rhs: &str, item: &HashMap<String, AttributeValue>, names: &HashMap<String, String>, values: &HashMap<String, AttributeValue>) -> AttributeValue {
    let term = |t: &str| -> AttributeValue {
        let t = t.trim();
        if let Some(inner) = t.strip_prefix("if_not_exists(").and_then(|r| r.strip_suffix(')')) {
            let (a, b) = inner.split_once(',').unwrap_or((inner, ""));
            let attr = names.get(a.trim()).cloned().unwrap_or_default();
            return item.get(&attr).cloned().or_else(|| values.get(b.trim()).cloned()).unwrap_or(AttributeValue::Null(true));
        }
        if t.starts_with('#') {
            return item.get(names.get(t).map_or(t, String::as_str)).cloned().unwrap_or(AttributeValue::Null(true));
        }
        values.get(t).cloned().unwrap_or(AttributeValue::Null(true))
    };
    let parts = split_plus(rhs);
    if parts.len() == 1 {
        return term(parts[0]);
    }
    AttributeValue::N(fmt_num(parts.iter().map(|p| num(&term(p))).sum()))
}

/// Splits at `+` outside parentheses.
fn split_plus(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0, vec![]);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            '+' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn num(v: &AttributeValue) -> f64 {
    match v {
        AttributeValue::N(n) => n.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        x.to_string()
    }
}

/// An item's size as DynamoDB bills it: attribute names plus values.
pub fn item_bytes(item: &HashMap<String, AttributeValue>) -> u64 {
    item.iter().map(|(k, v)| k.len() as u64 + value_bytes(v)).sum()
}

fn value_bytes(v: &AttributeValue) -> u64 {
    match v {
        AttributeValue::S(s) => s.len() as u64,
        AttributeValue::N(n) => number_bytes(n),
        AttributeValue::B(b) => b.as_ref().len() as u64,
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(v) => v.iter().map(|s| s.len() as u64).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| number_bytes(n)).sum(),
        AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len() as u64).sum(),
        // 3 bytes per list or map, 1 per element, plus the elements (and a map's names).
        AttributeValue::L(l) => 3 + l.iter().map(|e| 1 + value_bytes(e)).sum::<u64>(),
        AttributeValue::M(m) => 3 + m.iter().map(|(k, e)| 1 + k.len() as u64 + value_bytes(e)).sum::<u64>(),
        _ => 0,
    }
}

/// 1 byte plus 1 per two significant digits (leading and trailing zeros trimmed).
fn number_bytes(n: &str) -> u64 {
    let mantissa = n.split(['e', 'E']).next().unwrap_or("");
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sig = digits.trim_start_matches('0').trim_end_matches('0').len().max(1) as u64;
    1 + sig.div_ceil(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.into())
    }

    #[test]
    fn sizes_follow_dynamodb_rules() {
        assert_eq!(number_bytes("1"), 2);
        // Trailing zeros do not count: 1700000000 is 17 × 10^8.
        assert_eq!(number_bytes("1700000000"), 2);
        assert_eq!(number_bytes("1700000001"), 6);
        assert_eq!(number_bytes("123"), 3);
        let item = HashMap::from([("pk".to_string(), s("abc")), ("rev".to_string(), AttributeValue::N("12".into()))]);
        assert_eq!(item_bytes(&item), 2 + 3 + 3 + 2);
    }

    #[test]
    fn updates_of_dynamo_state_shapes_apply() {
        let key = ("p".to_string(), "s".to_string());
        let names = HashMap::from([("#v".to_string(), "value".to_string()), ("#rev".to_string(), "rev".to_string()), ("#exp".to_string(), "expires_at".to_string())]);
        let values = HashMap::from([(":v".to_string(), s("{\"a\":1}")), (":zero".to_string(), AttributeValue::N("0".into())), (":one".to_string(), AttributeValue::N("1".into()))]);
        let mut items = HashMap::new();
        let put = ItemWrite::Update { key: key.clone(), expr: "SET #v = :v, #rev = if_not_exists(#rev, :zero) + :one REMOVE #exp".into(), names: names.clone(), values: values.clone() };
        assert_eq!(apply_writes(&mut items, std::slice::from_ref(&put), false, true), 1.0);
        assert_eq!(items[&key]["rev"], AttributeValue::N("1".into()));
        assert_eq!(apply_writes(&mut items, &[put], true, true), 2.0);
        assert_eq!(items[&key]["rev"], AttributeValue::N("2".into()));
        let add_names = HashMap::from([("#rev".to_string(), "rev".to_string()), ("#c0".to_string(), "c_done".to_string())]);
        let add_values = HashMap::from([(":one".to_string(), AttributeValue::N("1".into())), (":d0".to_string(), AttributeValue::N("5".into()))]);
        let add = ItemWrite::Update { key: ("q".into(), "r".into()), expr: "ADD #rev :one, #c0 :d0".into(), names: add_names, values: add_values };
        apply_writes(&mut items, std::slice::from_ref(&add), false, true);
        apply_writes(&mut items, &[add], false, true);
        assert_eq!(items[&("q".to_string(), "r".to_string())]["c_done"], AttributeValue::N("10".into()));
        // A big value: 3 KiB written → 3 units, 6 in a transaction; a failed write changes nothing.
        let big = HashMap::from([(":v".to_string(), s(&"x".repeat(3000))), (":zero".to_string(), AttributeValue::N("0".into())), (":one".to_string(), AttributeValue::N("1".into()))]);
        let w = ItemWrite::Update { key: ("b".into(), "b".into()), expr: "SET #v = :v, #rev = if_not_exists(#rev, :zero) + :one".into(), names, values: big };
        assert_eq!(apply_writes(&mut items, std::slice::from_ref(&w), true, false), 6.0);
        assert!(!items.contains_key(&("b".to_string(), "b".to_string())));
        assert_eq!(apply_writes(&mut items, &[w, ItemWrite::Delete { key }], false, true), 3.0 + 1.0);
    }
}

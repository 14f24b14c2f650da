//! `DynamoState`: the [`StateStore`] on one DynamoDB table, with the semantics of the embedded
//! `SqliteState` (revisions, conditional all-or-nothing transactions, DynamoDB's own limits).
//!
//! An item is stored as:
//! - `pk` (S, hash key) and `sk` (S, range key);
//! - `rev` (N): 1 on creation, +1 on every write — the basis of the `Rev` conditions;
//! - `value` (S): the JSON text of a `Put`;
//! - `expires_at` (N, epoch seconds): the table's TTL attribute, when the `Put` has one;
//! - `c_<field>` (N): one attribute per counter field of `Add`, so that DynamoDB's `ADD` does the
//!   arithmetic atomically without a read. `get`/`query` rebuild `{field: n, ..}` from them for an
//!   item without `value`. The engine only `Add`s to items it never `Put`s (see `WriteOp::Add`), so
//!   an item holds either a `value` or counters; where both exist, `value` wins.
//!
//! Reads are strongly consistent, so a `get` followed by a `Rev`-conditioned write behaves as on
//! SQLite. A transaction of one write uses `UpdateItem`/`DeleteItem`; several use
//! `TransactWriteItems`, whose `CancellationReasons` name the write whose condition failed.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TimeToLiveSpecification,
    TransactWriteItem,
};
use aws_sdk_dynamodb::Client;
use deltadesk_core::ports::state::{merge_adds, Condition, Item, StateError, StateStore, Write, WriteOp};
use serde_json::Value;

use crate::errors::{self, AwsError, Kind};

/// DynamoDB's `TransactWriteItems` limit, checked before calling so the error matches SQLite's.
pub const MAX_TRANSACT_WRITES: usize = 100;
/// DynamoDB's item size limit (400 KB), applied like the embedded store to `pk + sk + value as JSON`.
/// DynamoDB also counts attribute names and `rev`, so an item within a few bytes of the limit may
/// still be refused by the service (also as [`StateError::Corrupt`]).
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

const PK: &str = "pk";
const SK: &str = "sk";
const REV: &str = "rev";
const VALUE: &str = "value";
const EXPIRES_AT: &str = "expires_at";
/// Prefix of counter attributes: `c_fetched` holds counter field `fetched`.
const COUNTER: &str = "c_";

/// The state store on the DynamoDB table `table` (see [`create_table`] for its shape). Cheap to clone.
#[derive(Debug, Clone)]
pub struct DynamoState {
    client: Client,
    table: String,
}

impl DynamoState {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn failed<E>(&self, operation: &'static str, err: aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>, first: Option<&Write>) -> StateError
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let kind = errors::kind(&err);
        let code = errors::code(&err).unwrap_or_default().to_string();
        let err = AwsError::new("DynamoDB", operation, &self.table, err);
        match (kind, code.as_str(), first) {
            // What SQLite refuses up front, DynamoDB refuses as a validation error: same variant.
            (Kind::Invalid, "ValidationException" | "SerializationException", Some(w)) => {
                StateError::Corrupt { pk: w.pk.clone(), sk: w.sk.clone(), cause: err.to_string() }
            }
            _ => StateError::Unavailable { source: Box::new(err) },
        }
    }
}

/// Creates the table `name` (on-demand capacity, `pk`/`sk` string keys) and turns on TTL on
/// `expires_at`; waits until it is active. An existing table is left as it is. For tests and setup
/// scripts — production tables come from the infrastructure templates.
pub async fn create_table(client: &Client, name: &str) -> Result<(), StateError> {
    let key = |attr: &str, key_type| KeySchemaElement::builder().attribute_name(attr).key_type(key_type).build();
    let def = |attr: &str| AttributeDefinition::builder().attribute_name(attr).attribute_type(ScalarAttributeType::S).build();
    let build = |e: aws_sdk_dynamodb::error::BuildError| StateError::Unavailable { source: Box::new(e) };
    let created = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(PK, KeyType::Hash).map_err(build)?)
        .key_schema(key(SK, KeyType::Range).map_err(build)?)
        .attribute_definitions(def(PK).map_err(build)?)
        .attribute_definitions(def(SK).map_err(build)?)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e) if errors::code(&e) == Some("ResourceInUseException") => return Ok(()),
        Err(e) => return Err(StateError::Unavailable { source: Box::new(AwsError::new("DynamoDB", "CreateTable", name, e)) }),
    }
    // A new table takes a few seconds to become ACTIVE on AWS (emulators are instant).
    for _ in 0..120 {
        let described = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| StateError::Unavailable { source: Box::new(AwsError::new("DynamoDB", "DescribeTable", name, e)) })?;
        let status = described.table().and_then(|t| t.table_status()).cloned();
        if status == Some(aws_sdk_dynamodb::types::TableStatus::Active) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let ttl = TimeToLiveSpecification::builder().enabled(true).attribute_name(EXPIRES_AT).build().map_err(build)?;
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(ttl)
        .send()
        .await
        .map_err(|e| StateError::Unavailable { source: Box::new(AwsError::new("DynamoDB", "UpdateTimeToLive", name, e)) })?;
    Ok(())
}

/// One write as DynamoDB expressions.
struct Prepared {
    key: HashMap<String, AttributeValue>,
    /// `None` for a delete.
    update: Option<String>,
    condition: Option<String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Prepared {
    fn names(&self) -> Option<HashMap<String, String>> {
        // DynamoDB refuses empty expression maps, so "nothing" is None.
        (!self.names.is_empty()).then(|| self.names.clone())
    }
    fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key_of(pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([(PK.to_string(), AttributeValue::S(pk.to_string())), (SK.to_string(), AttributeValue::S(sk.to_string()))])
}

fn prepare(w: &Write) -> Prepared {
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    let update = match &w.op {
        WriteOp::Put { value, expires_at } => {
            names.insert("#v".to_string(), VALUE.to_string());
            names.insert("#rev".to_string(), REV.to_string());
            names.insert("#exp".to_string(), EXPIRES_AT.to_string());
            values.insert(":v".to_string(), AttributeValue::S(value.to_string()));
            values.insert(":zero".to_string(), n(0));
            values.insert(":one".to_string(), n(1));
            // UpdateItem rather than PutItem: the new revision is the stored one plus one, which only
            // an update expression can compute without reading first.
            let set = "SET #v = :v, #rev = if_not_exists(#rev, :zero) + :one";
            match expires_at {
                Some(at) => {
                    values.insert(":exp".to_string(), n(at.timestamp()));
                    Some(format!("{set}, #exp = :exp"))
                }
                None => Some(format!("{set} REMOVE #exp")),
            }
        }
        WriteOp::Add { deltas } => {
            names.insert("#rev".to_string(), REV.to_string());
            values.insert(":one".to_string(), n(1));
            let mut expr = String::from("ADD #rev :one");
            for (i, (field, by)) in deltas.iter().enumerate() {
                // Placeholders for names as well as values: field names may hold any character.
                names.insert(format!("#c{i}"), format!("{COUNTER}{field}"));
                values.insert(format!(":d{i}"), n(by));
                expr.push_str(&format!(", #c{i} :d{i}"));
            }
            Some(expr)
        }
        WriteOp::Delete => None,
    };
    let condition = match w.cond {
        Condition::Always => None,
        Condition::NotExists => {
            names.insert("#pk".to_string(), PK.to_string());
            Some("attribute_not_exists(#pk)".to_string())
        }
        Condition::Rev(r) => {
            names.insert("#rev".to_string(), REV.to_string());
            values.insert(":r".to_string(), n(r));
            // A missing item has no `rev`, so the comparison is false: Rev(n) means "exists with rev n".
            Some("#rev = :r".to_string())
        }
    };
    Prepared { key: key_of(&w.pk, &w.sk), update, condition, names, values }
}

/// Rejects, before calling DynamoDB, what it would reject — with the same errors as `SqliteState`.
fn validate(writes: &[Write]) -> Result<(), StateError> {
    if writes.len() > MAX_TRANSACT_WRITES {
        let (pk, sk) = writes.first().map(|w| (w.pk.clone(), w.sk.clone())).unwrap_or_default();
        return Err(StateError::Corrupt {
            pk,
            sk,
            cause: format!("a transaction of {} writes exceeds the limit of {MAX_TRANSACT_WRITES}", writes.len()),
        });
    }
    let mut seen = std::collections::HashSet::with_capacity(writes.len());
    for w in writes {
        let corrupt = |cause: String| StateError::Corrupt { pk: w.pk.clone(), sk: w.sk.clone(), cause };
        if w.pk.is_empty() || w.sk.is_empty() {
            return Err(corrupt("partition and sort keys must not be empty".to_string()));
        }
        if !seen.insert((w.pk.as_str(), w.sk.as_str())) {
            return Err(corrupt("two writes to one item in a transaction".to_string()));
        }
        if let WriteOp::Put { value, .. } = &w.op {
            let size = w.pk.len() + w.sk.len() + value.to_string().len();
            if size > MAX_ITEM_BYTES {
                return Err(corrupt(format!("item of {size} bytes exceeds the limit of {MAX_ITEM_BYTES}")));
            }
        }
        if let WriteOp::Add { deltas } = &w.op {
            if deltas.iter().any(|(f, _)| f.is_empty()) {
                return Err(corrupt("a counter field name must not be empty".to_string()));
            }
        }
    }
    Ok(())
}

/// Rebuilds the port's item from DynamoDB's attributes.
fn to_item(pk: &str, attrs: &HashMap<String, AttributeValue>) -> Result<Item, StateError> {
    let sk = match attrs.get(SK) {
        Some(AttributeValue::S(s)) => s.clone(),
        _ => return Err(StateError::Corrupt { pk: pk.to_string(), sk: String::new(), cause: "item without a string sk".to_string() }),
    };
    let corrupt = |cause: String| StateError::Corrupt { pk: pk.to_string(), sk: sk.clone(), cause };
    let rev = match attrs.get(REV) {
        Some(AttributeValue::N(r)) => r.parse::<u64>().map_err(|e| corrupt(format!("rev {r:?} is not a revision: {e}")))?,
        other => return Err(corrupt(format!("rev is missing or not a number: {other:?}"))),
    };
    let value = match attrs.get(VALUE) {
        Some(AttributeValue::S(json)) => serde_json::from_str(json).map_err(|e| corrupt(format!("stored value is not JSON: {e}")))?,
        Some(other) => return Err(corrupt(format!("value is not a string: {other:?}"))),
        None => {
            let mut map = serde_json::Map::new();
            for (name, attr) in attrs {
                let Some(field) = name.strip_prefix(COUNTER) else { continue };
                let AttributeValue::N(text) = attr else {
                    return Err(corrupt(format!("counter {field:?} is not a number")));
                };
                let number = match text.parse::<i64>() {
                    Ok(i) => Value::from(i),
                    Err(_) => text
                        .parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map(Value::Number)
                        .ok_or_else(|| corrupt(format!("counter {field:?} holds {text:?}, not a number")))?,
                };
                map.insert(field.to_string(), number);
            }
            Value::Object(map)
        }
    };
    Ok(Item { pk: pk.to_string(), sk, rev, value })
}

#[async_trait]
impl StateStore for DynamoState {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StateError> {
        let got = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_of(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.failed("GetItem", e, None))?;
        got.item().map(|attrs| to_item(pk, attrs)).transpose()
    }

    async fn query(&self, pk: &str, sk_prefix: &str, start_after: Option<&str>, limit: usize) -> Result<Vec<Item>, StateError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // DynamoDB refuses an ExclusiveStartKey outside the key condition's range ("starting key is
        // outside query boundaries"), so a cursor before the prefix is dropped and one after every
        // key with the prefix ends the query.
        let mut start = match start_after {
            Some(after) if after.starts_with(sk_prefix) => Some(after.to_string()),
            Some(after) if after < sk_prefix => None,
            Some(_) => return Ok(Vec::new()),
            None => None,
        };
        let mut names = HashMap::from([("#pk".to_string(), PK.to_string())]);
        let mut values = HashMap::from([(":pk".to_string(), AttributeValue::S(pk.to_string()))]);
        let condition = if sk_prefix.is_empty() {
            // begins_with with an empty string is a validation error; the empty prefix is the partition.
            "#pk = :pk"
        } else {
            names.insert("#sk".to_string(), SK.to_string());
            values.insert(":prefix".to_string(), AttributeValue::S(sk_prefix.to_string()));
            "#pk = :pk AND begins_with(#sk, :prefix)"
        };
        let mut items = Vec::new();
        // A page ends at `Limit` items or 1 MB, whichever comes first: keep going until `limit`.
        loop {
            let want = i32::try_from(limit - items.len()).unwrap_or(i32::MAX);
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(condition)
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .set_exclusive_start_key(start.as_ref().map(|sk| key_of(pk, sk)))
                .scan_index_forward(true)
                .consistent_read(true)
                .limit(want)
                .send()
                .await
                .map_err(|e| self.failed("Query", e, None))?;
            for attrs in page.items() {
                items.push(to_item(pk, attrs)?);
            }
            let next = match page.last_evaluated_key().and_then(|k| k.get(SK)) {
                Some(AttributeValue::S(sk)) => Some(sk.clone()),
                _ => None,
            };
            if items.len() >= limit || next.is_none() {
                break;
            }
            start = next;
        }
        items.truncate(limit);
        Ok(items)
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), StateError> {
        let writes = merge_adds(writes);
        validate(&writes)?;
        match writes.as_slice() {
            [] => Ok(()),
            [w] => self.write_one(w).await,
            _ => self.write_many(&writes).await,
        }
    }
}

impl DynamoState {
    /// A single write: cheaper than a transaction (half the write units) and just as atomic.
    async fn write_one(&self, w: &Write) -> Result<(), StateError> {
        let p = prepare(w);
        let failed = || StateError::ConditionFailed { index: 0, pk: w.pk.clone(), sk: w.sk.clone() };
        match &p.update {
            Some(update) => {
                let result = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(p.key.clone()))
                    .update_expression(update)
                    .set_condition_expression(p.condition.clone())
                    .set_expression_attribute_names(p.names())
                    .set_expression_attribute_values(p.values())
                    .send()
                    .await;
                match result {
                    Ok(_) => Ok(()),
                    Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Err(failed()),
                    Err(e) => Err(self.failed("UpdateItem", e, Some(w))),
                }
            }
            None => {
                let result = self
                    .client
                    .delete_item()
                    .table_name(&self.table)
                    .set_key(Some(p.key.clone()))
                    .set_condition_expression(p.condition.clone())
                    .set_expression_attribute_names(p.names())
                    .set_expression_attribute_values(p.values())
                    .send()
                    .await;
                match result {
                    Ok(_) => Ok(()),
                    Err(e) if e.as_service_error().is_some_and(|s| s.is_conditional_check_failed_exception()) => Err(failed()),
                    Err(e) => Err(self.failed("DeleteItem", e, Some(w))),
                }
            }
        }
    }

    async fn write_many(&self, writes: &[Write]) -> Result<(), StateError> {
        let mut items = Vec::with_capacity(writes.len());
        for w in writes {
            let p = prepare(w);
            let build = |e: aws_sdk_dynamodb::error::BuildError| StateError::Corrupt { pk: w.pk.clone(), sk: w.sk.clone(), cause: e.to_string() };
            let item = match &p.update {
                Some(update) => TransactWriteItem::builder().update(
                    aws_sdk_dynamodb::types::Update::builder()
                        .table_name(&self.table)
                        .set_key(Some(p.key.clone()))
                        .update_expression(update)
                        .set_condition_expression(p.condition.clone())
                        .set_expression_attribute_names(p.names())
                        .set_expression_attribute_values(p.values())
                        .build()
                        .map_err(build)?,
                ),
                None => TransactWriteItem::builder().delete(
                    aws_sdk_dynamodb::types::Delete::builder()
                        .table_name(&self.table)
                        .set_key(Some(p.key.clone()))
                        .set_condition_expression(p.condition.clone())
                        .set_expression_attribute_names(p.names())
                        .set_expression_attribute_values(p.values())
                        .build()
                        .map_err(build)?,
                ),
            };
            items.push(item.build());
        }
        let result = self.client.transact_write_items().set_transact_items(Some(items)).send().await;
        let err = match result {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) = err.as_service_error() {
            let codes: Vec<&str> = cancelled.cancellation_reasons().iter().map(|r| r.code().unwrap_or("None")).collect();
            // One reason per write, in order; "None" for the writes that were fine.
            if let Some(index) = codes.iter().position(|c| *c == "ConditionalCheckFailed") {
                let w = &writes[index.min(writes.len() - 1)];
                return Err(StateError::ConditionFailed { index, pk: w.pk.clone(), sk: w.sk.clone() });
            }
            if let Some(index) = codes.iter().position(|c| *c == "ValidationError") {
                let w = &writes[index.min(writes.len() - 1)];
                let cause = AwsError::new("DynamoDB", "TransactWriteItems", &self.table, err).to_string();
                return Err(StateError::Corrupt { pk: w.pk.clone(), sk: w.sk.clone(), cause });
            }
            // TransactionConflict, throttling, capacity: another try may go through.
            tracing::debug!(table = %self.table, reasons = ?codes, "transaction cancelled without a failed condition");
            return Err(StateError::Unavailable { source: Box::new(AwsError::new("DynamoDB", "TransactWriteItems", &self.table, err)) });
        }
        Err(self.failed("TransactWriteItems", err, writes.first()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn add_uses_placeholders_for_odd_field_names() {
        let p = prepare(&Write::add("p", "c", "odd name.with-dash", 3));
        assert_eq!(p.update.as_deref(), Some("ADD #rev :one, #c0 :d0"));
        assert_eq!(p.names.get("#c0").map(String::as_str), Some("c_odd name.with-dash"));
        assert_eq!(p.values.get(":d0"), Some(&AttributeValue::N("3".into())));
        assert!(p.condition.is_none());
    }

    #[test]
    fn conditions_and_puts_use_only_declared_names() {
        let p = prepare(&Write::put("p", "s", json!({"a": 1}), Condition::Rev(4)));
        assert_eq!(p.condition.as_deref(), Some("#rev = :r"));
        assert!(p.update.as_deref().is_some_and(|u| u.contains("REMOVE #exp")));
        let d = prepare(&Write::delete("p", "s", Condition::Always));
        assert!(d.update.is_none() && d.condition.is_none() && d.names().is_none() && d.values().is_none());
        let d = prepare(&Write::delete("p", "s", Condition::NotExists));
        assert_eq!(d.condition.as_deref(), Some("attribute_not_exists(#pk)"));
        assert_eq!(d.names().map(|n| n.len()), Some(1));
    }

    #[test]
    fn counters_rebuild_an_object() {
        let attrs = HashMap::from([
            ("pk".to_string(), AttributeValue::S("p".into())),
            ("sk".to_string(), AttributeValue::S("c".into())),
            ("rev".to_string(), n(3)),
            ("c_fetched".to_string(), n(5)),
            ("c_failed".to_string(), n(-2)),
        ]);
        let item = to_item("p", &attrs).expect("item");
        assert_eq!((item.rev, item.value), (3, json!({"fetched": 5, "failed": -2})));
    }
}

//! Conformance checks for [`StateStore`]: what `SqliteState` and `DynamoState` must agree on.

use deltadesk_core::ports::state::{Condition, Item, StateError, StateStore, Write, WriteOp};
use serde_json::{json, Value};

use crate::unique;

/// DynamoDB's `TransactWriteItems` limit, which every adapter enforces so that embedded runs fail
/// where AWS runs would.
pub const MAX_TRANSACT_WRITES: usize = 100;
/// DynamoDB's item size limit (400 KB); the embedded store counts `pk + sk + value as JSON`.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// Runs every state-store check against `store`, each under its own fresh partition key.
pub async fn state_store(store: &dyn StateStore) {
    let run = unique();
    conditional_puts(store, &format!("cf-{run}-put")).await;
    revisions_and_conditional_deletes(store, &format!("cf-{run}-rev")).await;
    failed_condition_writes_nothing(store, &format!("cf-{run}-atomic")).await;
    multi_write_transactions_apply_together(store, &format!("cf-{run}-multi")).await;
    adds_merge_and_count(store, &format!("cf-{run}-add")).await;
    values_round_trip(store, &format!("cf-{run}-values")).await;
    query_prefix_order_and_pages(store, &format!("cf-{run}-query")).await;
    dynamodb_limits(store, &format!("cf-{run}-limits")).await;
}

async fn get(store: &dyn StateStore, check: &str, pk: &str, sk: &str) -> Option<Item> {
    match store.get(pk, sk).await {
        Ok(item) => item,
        Err(e) => panic!("state conformance [{check}]: get({pk}/{sk}) failed: {e:?}"),
    }
}

async fn must_get(store: &dyn StateStore, check: &str, pk: &str, sk: &str) -> Item {
    match get(store, check, pk, sk).await {
        Some(item) => item,
        None => panic!("state conformance [{check}]: item {pk}/{sk} should exist but get returned None"),
    }
}

async fn ok(store: &dyn StateStore, check: &str, what: &str, writes: Vec<Write>) {
    if let Err(e) = store.transact(writes).await {
        panic!("state conformance [{check}]: {what}: transaction should succeed but failed: {e:?}");
    }
}

/// Runs `writes` expecting `ConditionFailed` on write `index` (of the transaction as passed, for
/// transactions without merged `Add`s) of item `pk/sk`.
async fn condition_fails(store: &dyn StateStore, check: &str, what: &str, writes: Vec<Write>, index: usize) {
    let (pk, sk) = (writes[index].pk.clone(), writes[index].sk.clone());
    match store.transact(writes).await {
        Err(StateError::ConditionFailed { index: i, pk: p, sk: s }) if i == index && p == pk && s == sk => {}
        Err(StateError::ConditionFailed { index: i, pk: p, sk: s }) => panic!(
            "state conformance [{check}]: {what}: ConditionFailed should name write {index} ({pk}/{sk}), \
             but named write {i} ({p}/{s})"
        ),
        other => panic!("state conformance [{check}]: {what}: expected ConditionFailed on write {index}, got {other:?}"),
    }
}

fn expect_item(check: &str, what: &str, item: &Item, rev: u64, value: &Value) {
    assert!(
        item.rev == rev && &item.value == value,
        "state conformance [{check}]: {what}: expected rev {rev} value {value}, got rev {} value {}",
        item.rev,
        item.value
    );
}

async fn conditional_puts(store: &dyn StateStore, pk: &str) {
    let check = "conditional puts";
    assert!(get(store, check, pk, "a").await.is_none(), "state conformance [{check}]: a fresh item must not exist");
    ok(store, check, "Put NotExists on a new item", vec![Write::put(pk, "a", json!({"n": 1}), Condition::NotExists)]).await;
    expect_item(check, "a new item", &must_get(store, check, pk, "a").await, 1, &json!({"n": 1}));
    condition_fails(store, check, "Put NotExists on an existing item", vec![Write::put(pk, "a", json!({"n": 2}), Condition::NotExists)], 0)
        .await;
    expect_item(check, "after a failed NotExists", &must_get(store, check, pk, "a").await, 1, &json!({"n": 1}));
    ok(store, check, "Put Always over an item", vec![Write::put(pk, "a", json!({"n": 3}), Condition::Always)]).await;
    expect_item(check, "Put Always bumps the revision", &must_get(store, check, pk, "a").await, 2, &json!({"n": 3}));
}

async fn revisions_and_conditional_deletes(store: &dyn StateStore, pk: &str) {
    let check = "revisions";
    // Rev(n) means "exists with rev n": it fails on a missing item, whatever n.
    condition_fails(store, check, "Put Rev(0) on a missing item", vec![Write::put(pk, "a", json!(0), Condition::Rev(0))], 0).await;
    condition_fails(store, check, "Put Rev(1) on a missing item", vec![Write::put(pk, "a", json!(0), Condition::Rev(1))], 0).await;
    assert!(get(store, check, pk, "a").await.is_none(), "state conformance [{check}]: a failed Rev put must create nothing");

    ok(store, check, "first Put Always", vec![Write::put(pk, "a", json!(1), Condition::Always)]).await;
    for rev in 1..=3u64 {
        ok(store, check, &format!("Put Rev({rev})"), vec![Write::put(pk, "a", json!(rev + 1), Condition::Rev(rev))]).await;
        expect_item(check, "every write bumps rev by one", &must_get(store, check, pk, "a").await, rev + 1, &json!(rev + 1));
    }
    condition_fails(store, check, "Put with a stale Rev(3)", vec![Write::put(pk, "a", json!("stale"), Condition::Rev(3))], 0).await;
    condition_fails(store, check, "Put with a future Rev(9)", vec![Write::put(pk, "a", json!("future"), Condition::Rev(9))], 0).await;
    expect_item(check, "after failed Rev puts", &must_get(store, check, pk, "a").await, 4, &json!(4));

    condition_fails(store, check, "Delete with a stale Rev(3)", vec![Write::delete(pk, "a", Condition::Rev(3))], 0).await;
    condition_fails(store, check, "Delete NotExists of an existing item", vec![Write::delete(pk, "a", Condition::NotExists)], 0).await;
    assert!(get(store, check, pk, "a").await.is_some(), "state conformance [{check}]: a failed conditional delete must keep the item");
    ok(store, check, "Delete Rev(4)", vec![Write::delete(pk, "a", Condition::Rev(4))]).await;
    assert!(get(store, check, pk, "a").await.is_none(), "state conformance [{check}]: Delete Rev(current) must remove the item");
    ok(store, check, "Delete Always of a missing item (a no-op, as in DynamoDB)", vec![Write::delete(pk, "a", Condition::Always)]).await;
    condition_fails(store, check, "Delete Rev(4) of a missing item", vec![Write::delete(pk, "a", Condition::Rev(4))], 0).await;
    ok(store, check, "Put NotExists after a delete", vec![Write::put(pk, "a", json!("again"), Condition::NotExists)]).await;
    expect_item(check, "a re-created item starts over at rev 1", &must_get(store, check, pk, "a").await, 1, &json!("again"));
}

async fn failed_condition_writes_nothing(store: &dyn StateStore, pk: &str) {
    let check = "atomicity";
    ok(
        store,
        check,
        "setup",
        vec![
            Write::put(pk, "existing", json!("old"), Condition::Always),
            Write::put(pk, "doomed", json!("keep me"), Condition::Always),
        ],
    )
    .await;
    let writes = vec![
        Write::put(pk, "new", json!("new"), Condition::NotExists),
        Write::delete(pk, "doomed", Condition::Always),
        Write::add(pk, "counter", "n", 1),
        Write::put(pk, "existing", json!("changed"), Condition::NotExists),
        Write::put(pk, "later", json!("later"), Condition::Always),
    ];
    condition_fails(store, check, "the fourth write's condition is false", writes, 3).await;
    for sk in ["new", "counter", "later"] {
        assert!(
            get(store, check, pk, sk).await.is_none(),
            "state conformance [{check}]: a transaction with a failed condition wrote {pk}/{sk}"
        );
    }
    expect_item(check, "the item whose condition failed is unchanged", &must_get(store, check, pk, "existing").await, 1, &json!("old"));
    expect_item(check, "a delete in a failed transaction is undone", &must_get(store, check, pk, "doomed").await, 1, &json!("keep me"));

    // The first write failing, and a Rev condition failing in the middle.
    condition_fails(
        store,
        check,
        "the first write's condition is false",
        vec![Write::put(pk, "existing", json!(1), Condition::Rev(7)), Write::put(pk, "new", json!(1), Condition::Always)],
        0,
    )
    .await;
    assert!(get(store, check, pk, "new").await.is_none(), "state conformance [{check}]: write 1 landed although write 0 failed");
}

async fn multi_write_transactions_apply_together(store: &dyn StateStore, pk: &str) {
    let check = "multi-write transactions";
    ok(store, check, "setup", vec![Write::put(pk, "b", json!("b1"), Condition::Always), Write::put(pk, "c", json!("c1"), Condition::Always)])
        .await;
    ok(
        store,
        check,
        "NotExists put + Rev put + Rev delete + Add",
        vec![
            Write::put(pk, "a", json!("a1"), Condition::NotExists),
            Write::put(pk, "b", json!("b2"), Condition::Rev(1)),
            Write::delete(pk, "c", Condition::Rev(1)),
            Write::add(pk, "n", "count", 5),
        ],
    )
    .await;
    expect_item(check, "new item", &must_get(store, check, pk, "a").await, 1, &json!("a1"));
    expect_item(check, "updated item", &must_get(store, check, pk, "b").await, 2, &json!("b2"));
    assert!(get(store, check, pk, "c").await.is_none(), "state conformance [{check}]: the deleted item is still there");
    expect_item(check, "new counter", &must_get(store, check, pk, "n").await, 1, &json!({"count": 5}));
    ok(store, check, "an empty transaction is a no-op", Vec::new()).await;
}

async fn adds_merge_and_count(store: &dyn StateStore, pk: &str) {
    let check = "adds";
    ok(store, check, "one Add creates the counter item from 0", vec![Write::add(pk, "c1", "fetched", 3)]).await;
    expect_item(check, "a created counter", &must_get(store, check, pk, "c1").await, 1, &json!({"fetched": 3}));
    ok(store, check, "Add to an existing field", vec![Write::add(pk, "c1", "fetched", 2)]).await;
    ok(store, check, "Add a new field, negative", vec![Write::add(pk, "c1", "failed", -4)]).await;
    expect_item(check, "Adds add up; each is one revision", &must_get(store, check, pk, "c1").await, 3, &json!({"fetched": 5, "failed": -4}));

    // Several Adds to one item in one transaction are merged (merge_adds), not refused as two writes.
    ok(
        store,
        check,
        "merged Adds next to other writes",
        vec![
            Write::add(pk, "c2", "a", 1),
            Write::put(pk, "x", json!({"k": "v"}), Condition::NotExists),
            Write::add(pk, "c2", "b", 2),
            Write::add(pk, "c2", "a", 3),
            Write::add(pk, "c1", "fetched", 10),
            Write::add(pk, "c2", "odd-name.with spaces", 7),
        ],
    )
    .await;
    expect_item(
        check,
        "merged Adds are one write",
        &must_get(store, check, pk, "c2").await,
        1,
        &json!({"a": 4, "b": 2, "odd-name.with spaces": 7}),
    );
    expect_item(check, "other counter in the same transaction", &must_get(store, check, pk, "c1").await, 4, &json!({"fetched": 15, "failed": -4}));
    expect_item(check, "the Put beside the merged Adds", &must_get(store, check, pk, "x").await, 1, &json!({"k": "v"}));

    // Merged Adds still fail together with the transaction; the failing index is that of the
    // merged list, where the Adds to one item collapse into the position of the first.
    let writes = vec![
        Write::add(pk, "c3", "a", 1),
        Write::add(pk, "c3", "a", 1),
        Write::put(pk, "x", json!("clobber"), Condition::NotExists),
    ];
    match store.transact(writes).await {
        Err(StateError::ConditionFailed { index: 1, pk: p, sk }) if p == pk && sk == "x" => {}
        other => panic!("state conformance [{check}]: expected ConditionFailed on merged write 1 ({pk}/x), got {other:?}"),
    }
    assert!(get(store, check, pk, "c3").await.is_none(), "state conformance [{check}]: Adds of a failed transaction landed");

    // A counter survives many increments (what the engine does per record).
    for _ in 0..5 {
        ok(store, check, "repeated Add", vec![Write::add(pk, "c4", "n", 1)]).await;
    }
    expect_item(check, "five Adds", &must_get(store, check, pk, "c4").await, 5, &json!({"n": 5}));
}

async fn values_round_trip(store: &dyn StateStore, pk: &str) {
    let check = "values";
    let values = [
        json!(null),
        json!(true),
        json!(42),
        json!(-1.5),
        json!("text with \"quotes\", ümlauts and 🎫"),
        json!([1, "two", {"three": 3}]),
        json!({"nested": {"deep": [null, false, 1e20]}, "empty": {}, "list": []}),
    ];
    let writes = values.iter().enumerate().map(|(i, v)| Write::put(pk, format!("v{i}"), v.clone(), Condition::NotExists)).collect();
    ok(store, check, "JSON values of every type", writes).await;
    for (i, v) in values.iter().enumerate() {
        expect_item(check, &format!("value v{i} round-trips"), &must_get(store, check, pk, &format!("v{i}")).await, 1, v);
    }
    // An expiry is accepted and does not hide the item (TTL sweeps happen later, if ever).
    let in_an_hour = chrono::Utc::now() + chrono::Duration::hours(1);
    ok(
        store,
        check,
        "Put with expires_at",
        vec![Write { pk: pk.into(), sk: "ttl".into(), op: WriteOp::Put { value: json!({"t": 1}), expires_at: Some(in_an_hour) }, cond: Condition::Always }],
    )
    .await;
    expect_item(check, "an item with an expiry", &must_get(store, check, pk, "ttl").await, 1, &json!({"t": 1}));
}

async fn query_prefix_order_and_pages(store: &dyn StateStore, pk: &str) {
    let check = "query";
    let sks = ["t#001", "t#002", "t#010", "t#1", "t$", "t", "u#001", "t%x", "t_y", "T#0", "t#0\u{e9}"];
    let writes = sks.iter().map(|sk| Write::put(pk, *sk, json!(sk), Condition::Always)).collect();
    ok(store, check, "setup", writes).await;
    let other = format!("{pk}-other");
    ok(store, check, "setup in another partition", vec![Write::put(other.as_str(), "t#003", json!(0), Condition::Always)]).await;

    let sks_of = |items: Vec<Item>| items.into_iter().map(|i| i.sk).collect::<Vec<_>>();
    let query = |prefix: &'static str, after: Option<String>, limit: usize| async move {
        match store.query(pk, prefix, after.as_deref(), limit).await {
            Ok(items) => items,
            Err(e) => panic!("state conformance [{check}]: query({pk}, {prefix:?}, {after:?}, {limit}) failed: {e:?}"),
        }
    };

    let all = query("t#", None, 100).await;
    assert!(
        all.iter().all(|i| i.pk == pk && i.rev == 1 && i.value == json!(i.sk)),
        "state conformance [{check}]: query returned items with a wrong pk, rev or value: {all:?}"
    );
    // Byte order (= code point order for UTF-8): "t#0é" sorts after "t#010" and before "t#1".
    assert_eq!(sks_of(all), ["t#001", "t#002", "t#010", "t#0\u{e9}", "t#1"], "state conformance [{check}]: prefix \"t#\" in ascending order");
    assert_eq!(sks_of(query("t%", None, 100).await), ["t%x"], "state conformance [{check}]: '%' in a prefix is a plain character");
    assert_eq!(sks_of(query("t_", None, 100).await), ["t_y"], "state conformance [{check}]: '_' in a prefix is a plain character");
    assert_eq!(query("", None, 100).await.len(), sks.len(), "state conformance [{check}]: the empty prefix matches the whole partition");
    assert!(query("t#", None, 0).await.is_empty(), "state conformance [{check}]: limit 0 returns nothing");
    assert!(query("zzz", None, 10).await.is_empty(), "state conformance [{check}]: a prefix matching nothing returns nothing");

    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = query("t#", after.clone(), 2).await;
        assert!(page.len() <= 2, "state conformance [{check}]: a page of limit 2 held {} items", page.len());
        if page.is_empty() {
            break;
        }
        after = page.last().map(|i| i.sk.clone());
        pages.push(sks_of(page));
        assert!(pages.len() <= 10, "state conformance [{check}]: pagination does not end: {pages:?}");
    }
    assert_eq!(
        pages,
        vec![vec!["t#001", "t#002"], vec!["t#010", "t#0\u{e9}"], vec!["t#1"]],
        "state conformance [{check}]: pages of 2 after start_after"
    );
    // start_after need not be an existing key.
    assert_eq!(sks_of(query("t#", Some("t#005".into()), 10).await), ["t#010", "t#0\u{e9}", "t#1"], "state conformance [{check}]: start_after between keys");
}

async fn dynamodb_limits(store: &dyn StateStore, pk: &str) {
    let check = "limits";
    let expect_refused = |what: &'static str, result: Result<(), StateError>| {
        assert!(
            matches!(result, Err(StateError::Corrupt { .. })),
            "state conformance [{check}]: {what} must be refused as Corrupt (a validation error), got {result:?}"
        );
    };
    let full: Vec<Write> = (0..MAX_TRANSACT_WRITES).map(|i| Write::add(pk, format!("n{i:03}"), "n", 1)).collect();
    ok(store, check, "a transaction of exactly the maximum number of writes", full).await;
    let too_many: Vec<Write> = (0..=MAX_TRANSACT_WRITES).map(|i| Write::put(pk, format!("m{i:03}"), json!(i), Condition::Always)).collect();
    expect_refused("a transaction over the write limit", store.transact(too_many).await);
    assert!(get(store, check, pk, "m000").await.is_none(), "state conformance [{check}]: a refused transaction wrote something");

    expect_refused(
        "two non-Add writes to one item",
        store
            .transact(vec![Write::put(pk, "twice", json!(1), Condition::Always), Write::add(pk, "twice", "n", 1)])
            .await,
    );
    assert!(get(store, check, pk, "twice").await.is_none(), "state conformance [{check}]: a refused transaction wrote something");

    let big = json!("x".repeat(300 * 1024));
    ok(store, check, "an item of 300 KB", vec![Write::put(pk, "big", big.clone(), Condition::Always)]).await;
    assert_eq!(must_get(store, check, pk, "big").await.value, big, "state conformance [{check}]: a 300 KB item round-trips");
    let huge = json!("x".repeat(MAX_ITEM_BYTES));
    expect_refused("an item over 400 KB", store.transact(vec![Write::put(pk, "huge", huge, Condition::Always)]).await);
    assert!(get(store, check, pk, "huge").await.is_none(), "state conformance [{check}]: a refused item was written");
    expect_refused("an empty sort key", store.transact(vec![Write::put(pk, "", json!(1), Condition::Always)]).await);
}

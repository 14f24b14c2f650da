//! End-to-end tests of the Zendesk simulator over HTTP (reqwest against 127.0.0.1:0).

use std::collections::BTreeSet;
use std::time::Duration;

use deltadesk_sim::zendesk::{LiveAgentConfig, ZendeskSim, ZendeskSimConfig};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn small() -> ZendeskSimConfig {
    ZendeskSimConfig {
        seed: 3,
        tickets: 25,
        users: 6,
        organizations: 2,
        groups: 2,
        publication_lag: Duration::from_secs(1),
        max_seed_attachment_bytes: 20_000,
        ..Default::default()
    }
}

async fn start(cfg: ZendeskSimConfig) -> ZendeskSim {
    ZendeskSim::start(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

async fn get(url: &str) -> (u16, Value) {
    let r = reqwest::get(url).await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn send(method: reqwest::Method, url: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .request(method, url)
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// Follow the incremental export from `first_url` until end_of_stream; returns (tickets, last after_url).
async fn drain_export(first_url: String) -> (Vec<Value>, String) {
    let mut url = first_url;
    let mut out = Vec::new();
    for _ in 0..1000 {
        let (s, body) = get(&url).await;
        assert_eq!(s, 200, "{body}");
        out.extend(body["tickets"].as_array().unwrap().iter().cloned());
        url = body["after_url"].as_str().unwrap().to_string();
        if body["end_of_stream"].as_bool().unwrap() {
            return (out, url);
        }
    }
    panic!("export did not end");
}

#[tokio::test]
async fn seed_is_deterministic_and_attachments_download_identically() {
    let a = start(small()).await;
    let b = start(small()).await;
    let snap = a.snapshot();
    assert_eq!(snap, b.snapshot());
    let c = start(ZendeskSimConfig { seed: 4, ..small() }).await;
    assert_ne!(snap, c.snapshot());

    let tickets = snap["tickets"].as_array().unwrap();
    assert_eq!(tickets.len(), 25);
    assert!(tickets
        .iter()
        .all(|t| !t["comments"].as_array().unwrap().is_empty()));
    let users = snap["users"].as_array().unwrap();
    assert_eq!(users.iter().filter(|u| u["role"] == "agent").count(), 5);
    assert!(users.iter().any(|u| u["email"] == "user1@example.com"));
    let titles: Vec<&str> = snap["ticket_fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["title"].as_str().unwrap())
        .collect();
    assert!(
        titles.contains(&"Product")
            && titles.contains(&"Order number")
            && titles.contains(&"Escalated")
    );
    let now = a.now().timestamp();
    for t in tickets {
        let updated = chrono::DateTime::parse_from_rfc3339(t["updated_at"].as_str().unwrap())
            .unwrap()
            .timestamp();
        assert!(updated < now - 1 && updated > now - 62 * 86_400);
    }

    // Every seeded attachment downloads with the bytes whose sha256 the snapshot reports.
    let (_, page) = get(&format!("{}/api/v2/tickets.json", a.base_url())).await;
    let mut checked = 0;
    for t in page["tickets"].as_array().unwrap() {
        let (_, comments) = get(&format!(
            "{}/api/v2/tickets/{}/comments.json",
            a.base_url(),
            t["id"]
        ))
        .await;
        for c in comments["comments"].as_array().unwrap() {
            for att in c["attachments"].as_array().unwrap() {
                let url = att["content_url"].as_str().unwrap();
                assert!(url.starts_with(&a.base_url()));
                if att["inline"] == true {
                    assert!(
                        c["html_body"].as_str().unwrap().contains(url),
                        "inline image url in html_body"
                    );
                }
                let r = reqwest::get(url).await.unwrap();
                assert_eq!(
                    r.headers()["content-type"],
                    att["content_type"].as_str().unwrap()
                );
                let bytes = r.bytes().await.unwrap();
                assert_eq!(bytes.len() as u64, att["size"].as_u64().unwrap());
                let sha = hex::encode(Sha256::digest(&bytes));
                let snap_att = tickets
                    .iter()
                    .flat_map(|t| t["comments"].as_array().unwrap())
                    .flat_map(|c| c["attachments"].as_array().unwrap())
                    .find(|x| x["id"] == att["id"])
                    .unwrap();
                assert_eq!(snap_att["sha256"], json!(sha));
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "seed should contain attachments");
}

#[tokio::test]
async fn export_paginates_every_visible_ticket_once_and_respects_lag_and_holds() {
    let sim = start(small()).await;
    let base = sim.base_url();
    let (tickets, after_url) = drain_export(format!(
        "{base}/api/v2/incremental/tickets/cursor.json?start_time=0&per_page=7"
    ))
    .await;
    let ids: Vec<u64> = tickets.iter().map(|t| t["id"].as_u64().unwrap()).collect();
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(ids.len(), 25);
    assert_eq!(unique.len(), 25);
    let keys: Vec<(i64, u64)> = tickets
        .iter()
        .map(|t| {
            (
                t["generated_timestamp"].as_i64().unwrap(),
                t["id"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "ordered by (updated_at, id)");

    // Fresh changes are not listed until the lag has passed.
    let open = tickets.iter().find(|t| t["status"] != "closed").unwrap()["id"]
        .as_u64()
        .unwrap();
    let new_id = sim.create_ticket("Fresh", "fresh@example.com", "<p>hello</p>");
    sim.update_ticket(open, json!({"priority": "urgent"}));
    let (_, body) = get(&after_url).await;
    assert!(body["tickets"].as_array().unwrap().is_empty());
    assert_eq!(body["end_of_stream"], true);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (listed, after_url) = drain_export(after_url).await;
    let listed_ids: BTreeSet<u64> = listed.iter().map(|t| t["id"].as_u64().unwrap()).collect();
    assert_eq!(listed_ids, BTreeSet::from([open, new_id]));
    let updated = listed.iter().find(|t| t["id"] == json!(open)).unwrap();
    assert_eq!(updated["priority"], "urgent");

    // A held record is published late.
    sim.update_ticket(open, json!({"priority": "low"}));
    sim.hold_publication(open, Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (listed, _) = drain_export(after_url.clone()).await;
    assert!(listed.is_empty(), "held ticket must not be visible yet");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (listed, _) = drain_export(after_url).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["priority"], "low");

    // Deleted tickets: 404 on GET, left out of the list, listed in the export with status "deleted".
    sim.delete_ticket(new_id);
    let (s, _) = get(&format!("{base}/api/v2/tickets/{new_id}.json")).await;
    assert_eq!(s, 404);
    let (_, list) = get(&format!("{base}/api/v2/tickets?page[size]=100")).await;
    assert!(list["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["id"] != json!(new_id)));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (all, _) = drain_export(format!(
        "{base}/api/v2/incremental/tickets/cursor?start_time=0"
    ))
    .await;
    let deleted = all.iter().find(|t| t["id"] == json!(new_id)).unwrap();
    assert_eq!(deleted["status"], "deleted");
}

#[tokio::test]
async fn export_rejects_recent_or_future_start_time() {
    let sim = start(ZendeskSimConfig {
        publication_lag: Duration::from_secs(60),
        ..small()
    })
    .await;
    let base = sim.base_url();
    let now = sim.now().timestamp();
    for st in [now, now - 30, now + 3600] {
        let (s, body) = get(&format!(
            "{base}/api/v2/incremental/tickets/cursor.json?start_time={st}"
        ))
        .await;
        assert_eq!(s, 400);
        assert_eq!(body["error"], "InvalidValue");
    }
    let (s, _) = get(&format!(
        "{base}/api/v2/incremental/tickets/cursor.json?start_time={}",
        now - 120
    ))
    .await;
    assert_eq!(s, 200);
    let (s, _) = get(&format!(
        "{base}/api/v2/incremental/tickets/cursor.json?cursor=garbage!"
    ))
    .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn comments_paginate_oldest_first_with_users() {
    let sim = start(small()).await;
    let base = sim.base_url();
    let id = sim.create_ticket("Paging", "pager@example.com", "<p>first</p>");
    for i in 0..4 {
        sim.add_comment(id, i % 2 == 0, &format!("<p>reply {i}</p>"), None);
    }
    let (s, body) = send(
        reqwest::Method::PUT,
        &format!("{base}/api/v2/tickets/{id}"),
        json!({"ticket": {"comment": {"body": "plain <text> & more", "public": false}}}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let mut url = format!("{base}/api/v2/tickets/{id}/comments.json?page[size]=2&include=users");
    let mut comments = Vec::new();
    let mut users = BTreeSet::new();
    loop {
        let (s, page) = get(&url).await;
        assert_eq!(s, 200);
        assert!(page["comments"].as_array().unwrap().len() <= 2);
        comments.extend(page["comments"].as_array().unwrap().iter().cloned());
        for u in page["users"].as_array().unwrap() {
            users.insert(u["id"].as_u64().unwrap());
        }
        if page["meta"]["has_more"] != true {
            assert!(page["links"]["next"].is_null());
            break;
        }
        url = page["links"]["next"].as_str().unwrap().to_string();
    }
    assert_eq!(comments.len(), 6);
    assert_eq!(comments[0]["plain_body"], "first");
    assert_eq!(comments[1]["body"], "reply 0");
    let last = &comments[5];
    assert_eq!(last["html_body"], "<p>plain &lt;text&gt; &amp; more</p>");
    assert_eq!(last["plain_body"], "plain <text> & more");
    assert_eq!(last["public"], false);
    let authors: BTreeSet<u64> = comments
        .iter()
        .map(|c| c["author_id"].as_u64().unwrap())
        .collect();
    assert_eq!(users, authors);
    let (_, t) = get(&format!("{base}/api/v2/tickets/{id}")).await;
    assert_eq!(t["ticket"]["description"], "first");
}

#[tokio::test]
async fn import_keeps_times_authors_and_uploads() {
    let sim = start(ZendeskSimConfig {
        max_attachment_bytes: 10_000,
        publication_lag: Duration::from_secs(1),
        ..ZendeskSimConfig::empty_target(900_000)
    })
    .await;
    let base = sim.base_url();
    let snap = sim.snapshot();
    assert!(snap["tickets"].as_array().unwrap().is_empty());
    assert_eq!(snap["ticket_fields"][0]["id"], 900_000);
    assert_eq!(snap["ticket_fields"][0]["title"], "Product");

    let (s, user) = send(
        reqwest::Method::POST,
        &format!("{base}/api/v2/users/create_or_update.json"),
        json!({"user": {"email": "someone@example.com", "name": "Some One"}}),
    )
    .await;
    assert_eq!(s, 201);
    let requester = user["user"]["id"].as_u64().unwrap();
    assert!(requester >= 900_000);
    let agent = snap["users"][0]["id"].as_u64().unwrap();

    let bytes: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v2/uploads.json?filename=shot%201.png"))
        .header("content-type", "image/png")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let up: Value = r.json().await.unwrap();
    let token = up["upload"]["token"].as_str().unwrap().to_string();
    let content_url = up["upload"]["attachment"]["content_url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(up["upload"]["attachment"]["file_name"], "shot 1.png");

    let r = reqwest::Client::new()
        .post(format!("{base}/api/v2/uploads?filename=big.bin"))
        .body(vec![0u8; 10_001])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);

    let ticket = json!({"ticket": {
    "subject": "Imported", "requester_id": requester, "assignee_id": agent, "status": "solved",
    "external_id": "src-17", "tags": ["a", "b"],
    "created_at": "2024-01-02T03:04:05Z", "updated_at": "2024-01-05T00:00:00Z",
    "custom_fields": [{"id": 900_001, "value": "ORD-1"}],
    "comments": [
        {"author_id": requester, "value": "It broke", "created_at": "2024-01-02T03:04:05Z"},
        {"author_id": agent, "html_body": format!("<p>See <img src=\"{content_url}\"></p>"), "public": false,
         "created_at": "2024-01-03T10:00:00Z", "uploads": [token]}
    ]}});
    let (s, body) = send(
        reqwest::Method::POST,
        &format!("{base}/api/v2/imports/tickets"),
        ticket.clone(),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    let t = &body["ticket"];
    let id = t["id"].as_u64().unwrap();
    assert_eq!(id, 900_000);
    assert_eq!(t["created_at"], "2024-01-02T03:04:05Z");
    assert_eq!(t["updated_at"], "2024-01-05T00:00:00Z");
    assert_eq!(t["description"], "It broke");
    assert_eq!(t["external_id"], "src-17");
    assert_eq!(t["status"], "solved");

    let (_, comments) = get(&format!("{base}/api/v2/tickets/{id}/comments")).await;
    let cs = comments["comments"].as_array().unwrap();
    assert_eq!(cs[0]["author_id"], json!(requester));
    assert_eq!(cs[0]["html_body"], "<p>It broke</p>");
    assert_eq!(cs[1]["author_id"], json!(agent));
    assert_eq!(cs[1]["created_at"], "2024-01-03T10:00:00Z");
    assert_eq!(cs[1]["public"], false);
    let att = &cs[1]["attachments"][0];
    assert_eq!(att["inline"], true);
    let r = reqwest::get(att["content_url"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.bytes().await.unwrap().to_vec(), bytes);

    // The token was consumed; unknown ids and missing parts are rejected.
    let (s, body) = send(
        reqwest::Method::POST,
        &format!("{base}/api/v2/imports/tickets"),
        ticket,
    )
    .await;
    assert_eq!(s, 422);
    assert!(body["details"]["uploads"].is_array());
    let bad = [
        (
            json!({"subject": "x", "comments": [{"value": "v"}]}),
            "requester_id",
        ),
        (
            json!({"requester_id": requester, "comments": []}),
            "comments",
        ),
        (
            json!({"requester_id": requester, "assignee_id": 5, "comments": [{"value": "v"}]}),
            "assignee_id",
        ),
        (
            json!({"requester_id": requester, "group_id": 5, "comments": [{"value": "v"}]}),
            "group_id",
        ),
        (
            json!({"requester_id": requester, "organization_id": 5, "comments": [{"value": "v"}]}),
            "organization_id",
        ),
        (
            json!({"requester_id": requester, "custom_fields": [{"id": 5, "value": 1}], "comments": [{"value": "v"}]}),
            "custom_fields",
        ),
        (
            json!({"requester_id": requester, "comments": [{"value": "v", "uploads": ["nope"]}]}),
            "uploads",
        ),
    ];
    for (t, field) in bad {
        let (s, body) = send(
            reqwest::Method::POST,
            &format!("{base}/api/v2/imports/tickets.json"),
            json!({"ticket": t}),
        )
        .await;
        assert_eq!(s, 422, "{field}: {body}");
        assert_eq!(body["error"], "RecordInvalid");
        assert!(body["details"][field].is_array(), "{field}: {body}");
    }
}

#[tokio::test]
async fn put_updates_and_closed_ticket_is_422() {
    let sim = start(small()).await;
    let base = sim.base_url();
    let snap = sim.snapshot();
    let closed = snap["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["status"] == "closed")
        .unwrap()["id"]
        .as_u64()
        .unwrap();
    let open = snap["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["status"] == "open")
        .unwrap()["id"]
        .as_u64()
        .unwrap();
    let url = |id: u64| format!("{base}/api/v2/tickets/{id}.json");
    let (s, body) = send(
        reqwest::Method::PUT,
        &url(closed),
        json!({"ticket": {"status": "open"}}),
    )
    .await;
    assert_eq!(s, 422);
    assert_eq!(body["error"], "RecordInvalid");

    let product = snap["ticket_fields"][0]["id"].as_u64().unwrap();
    let (s, body) = send(
        reqwest::Method::PUT,
        &url(open),
        json!({"ticket": {"subject": "New subject", "tags": ["x", "y"], "priority": "high",
            "custom_fields": [{"id": product, "value": "product_pro"}],
            "comment": {"html_body": "<p>done</p>", "public": true}}}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let t = &body["ticket"];
    assert_eq!(t["subject"], "New subject");
    assert_eq!(t["tags"], json!(["x", "y"]));
    assert!(t["custom_fields"]
        .as_array()
        .unwrap()
        .contains(&json!({"id": product, "value": "product_pro"})));
    assert_eq!(
        t["updated_at"].as_str().unwrap(),
        sim.now().format("%Y-%m-%dT%H:%M:%SZ").to_string().as_str()
    );
    assert_eq!(body["audit"]["events"][0]["html_body"], "<p>done</p>");

    let (s, body) = send(
        reqwest::Method::PUT,
        &url(open),
        json!({"ticket": {"assignee_id": 999_999}}),
    )
    .await;
    assert_eq!(s, 422);
    assert!(body["details"]["assignee_id"].is_array());
    let (s, _) = send(
        reqwest::Method::PUT,
        &url(open),
        json!({"ticket": {"status": "closed"}}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = send(
        reqwest::Method::PUT,
        &url(open),
        json!({"ticket": {"status": "closed"}}),
    )
    .await;
    assert_eq!(s, 422);
    let (s, _) = send(
        reqwest::Method::PUT,
        &url(9_999_999),
        json!({"ticket": {"status": "open"}}),
    )
    .await;
    assert_eq!(s, 404);
    let r = reqwest::Client::new()
        .delete(format!("{base}/api/v2/tickets/{closed}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
}

#[tokio::test]
async fn users_orgs_groups_fields() {
    let sim = start(small()).await;
    let base = sim.base_url();
    let url = format!("{base}/api/v2/users/create_or_update.json");
    let (s1, a) = send(
        reqwest::Method::POST,
        &url,
        json!({"user": {"email": "New@Example.com", "name": "N"}}),
    )
    .await;
    let (s2, b) = send(
        reqwest::Method::POST,
        &url,
        json!({"user": {"email": "new@example.com", "name": "N2"}}),
    )
    .await;
    assert_eq!((s1, s2), (201, 200));
    assert_eq!(a["user"]["id"], b["user"]["id"]);
    assert_eq!(b["user"]["name"], "N2");
    assert_eq!(b["user"]["role"], "end-user");
    let id = a["user"]["id"].as_u64().unwrap();
    let (s, u) = get(&format!("{base}/api/v2/users/{id}.json")).await;
    assert_eq!(
        (s, u["user"]["email"].as_str()),
        (200, Some("New@Example.com"))
    );
    let (_, many) = get(&format!(
        "{base}/api/v2/users/show_many.json?ids=1,2,{id},424242"
    ))
    .await;
    assert_eq!(many["users"].as_array().unwrap().len(), 3);

    let url = format!("{base}/api/v2/organizations/create_or_update");
    let (s1, a) = send(
        reqwest::Method::POST,
        &url,
        json!({"organization": {"name": "Zeta", "external_id": "z-1"}}),
    )
    .await;
    let (s2, b) = send(
        reqwest::Method::POST,
        &url,
        json!({"organization": {"name": "Zeta Renamed", "external_id": "z-1"}}),
    )
    .await;
    let (s3, c) = send(
        reqwest::Method::POST,
        &url,
        json!({"organization": {"name": "Zeta Renamed"}}),
    )
    .await;
    assert_eq!((s1, s2, s3), (201, 200, 200));
    assert_eq!(a["organization"]["id"], b["organization"]["id"]);
    assert_eq!(a["organization"]["id"], c["organization"]["id"]);
    let (_, orgs) = get(&format!(
        "{base}/api/v2/organizations/show_many?ids={}",
        a["organization"]["id"]
    ))
    .await;
    assert_eq!(orgs["organizations"][0]["name"], "Zeta Renamed");

    let (s, g) = send(
        reqwest::Method::POST,
        &format!("{base}/api/v2/groups.json"),
        json!({"group": {"name": "Night shift"}}),
    )
    .await;
    assert_eq!(s, 201);
    let (_, groups) = get(&format!("{base}/api/v2/groups")).await;
    assert_eq!(groups["count"], 3);
    assert!(groups["groups"].as_array().unwrap().contains(&g["group"]));
    let (_, fields) = get(&format!("{base}/api/v2/ticket_fields.json")).await;
    let product = &fields["ticket_fields"][0];
    assert_eq!(
        (product["title"].as_str(), product["type"].as_str()),
        (Some("Product"), Some("tagger"))
    );
    assert!(!product["custom_field_options"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn list_tickets_external_id_filter_and_pagination() {
    let sim = start(small()).await;
    let base = sim.base_url();
    let snap = sim.snapshot();
    let some = snap["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["status"] != "closed")
        .unwrap()["id"]
        .as_u64()
        .unwrap();
    sim.update_ticket(some, json!({"external_id": "legacy-42"}));
    let (_, body) = get(&format!("{base}/api/v2/tickets.json?external_id=legacy-42")).await;
    let ts = body["tickets"].as_array().unwrap();
    assert_eq!(ts.len(), 1);
    assert_eq!(ts[0]["id"], json!(some));
    let (_, body) = get(&format!("{base}/api/v2/tickets?external_id=nope")).await;
    assert!(body["tickets"].as_array().unwrap().is_empty());

    let mut url = format!("{base}/api/v2/tickets.json?page[size]=10");
    let mut ids = Vec::new();
    loop {
        let (_, page) = get(&url).await;
        ids.extend(
            page["tickets"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_u64().unwrap()),
        );
        match page["links"]["next"].as_str() {
            Some(n) => url = n.to_string(),
            None => break,
        }
    }
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!((ids.len(), ids.clone()), (25, sorted));
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let sim = start(ZendeskSimConfig {
        rate_limit_per_minute: Some(3),
        ..small()
    })
    .await;
    let base = sim.base_url();
    for i in 0..3 {
        let r = reqwest::get(format!("{base}/api/v2/groups")).await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.headers()["x-rate-limit"], "3");
        assert_eq!(
            r.headers()["x-rate-limit-remaining"],
            (2 - i).to_string().as_str()
        );
    }
    let r = reqwest::get(format!("{base}/api/v2/groups")).await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "APIRateLimitExceeded");
    let stats = sim.stats();
    assert_eq!(stats.requests_total, 4);
    assert_eq!(stats.throttled, 1);
    assert_eq!(stats.per_route["GET /api/v2/groups"], 4);

    let sim = start(ZendeskSimConfig {
        export_rate_limit_per_minute: Some(2),
        ..small()
    })
    .await;
    let url = format!(
        "{}/api/v2/incremental/tickets/cursor.json?start_time=0",
        sim.base_url()
    );
    assert_eq!(get(&url).await.0, 200);
    assert_eq!(get(&url).await.0, 200);
    assert_eq!(get(&url).await.0, 429);
    assert_eq!(
        get(&format!("{}/api/v2/groups", sim.base_url())).await.0,
        200
    );
}

#[tokio::test]
async fn auth_is_checked_when_configured() {
    let sim = start(ZendeskSimConfig {
        credentials: Some(("admin@example.com".into(), "s3cret".into())),
        ..small()
    })
    .await;
    let url = format!("{}/api/v2/ticket_fields.json", sim.base_url());
    let client = reqwest::Client::new();
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "Couldn't authenticate you");
    let r = client
        .get(&url)
        .basic_auth("admin@example.com/token", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = client
        .get(&url)
        .basic_auth("admin@example.com/token", Some("s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn live_agents_changes_show_up_in_the_export() {
    let sim = start(ZendeskSimConfig {
        tickets: 10,
        ..small()
    })
    .await;
    let base = sim.base_url();
    let before = sim.snapshot();
    let (_, after_url) = drain_export(format!(
        "{base}/api/v2/incremental/tickets/cursor.json?start_time=0"
    ))
    .await;
    let agents = sim.start_live_agents(LiveAgentConfig {
        seed: 9,
        actions_per_second: 60.0,
        max_attachment_bytes: 4096,
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stats = agents.stop().await;
    assert!(stats.total >= 10, "{stats:?}");
    assert!(
        stats.replies + stats.notes + stats.field_changes + stats.status_changes > 0,
        "{stats:?}"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (changed, _) = drain_export(after_url).await;
    assert!(!changed.is_empty());
    let after = sim.snapshot();
    // Closed tickets were never modified.
    for t in before["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "closed")
    {
        let now = after["tickets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == t["id"])
            .unwrap();
        assert_eq!(t, now);
    }
    // Every changed ticket in the snapshot shows up in the export.
    let listed: BTreeSet<u64> = changed.iter().map(|t| t["id"].as_u64().unwrap()).collect();
    for t in after["tickets"].as_array().unwrap() {
        let old = before["tickets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == t["id"]);
        if old != Some(t) {
            assert!(
                listed.contains(&t["id"].as_u64().unwrap()),
                "ticket {} changed but not exported",
                t["id"]
            );
        }
    }
}

#[tokio::test]
async fn default_config_serves_and_snapshots() {
    let t0 = std::time::Instant::now();
    let sim = start(ZendeskSimConfig::default()).await;
    let started = t0.elapsed();
    let snap = sim.snapshot();
    let snapped = t0.elapsed();
    assert_eq!(snap["tickets"].as_array().unwrap().len(), 50);
    assert_eq!(snap["users"].as_array().unwrap().len(), 25);
    assert_eq!(snap["organizations"].as_array().unwrap().len(), 5);
    assert_eq!(snap["groups"].as_array().unwrap().len(), 4);
    let (s, body) = get(&format!(
        "{}/api/v2/incremental/tickets/cursor?start_time=0",
        sim.base_url()
    ))
    .await;
    assert_eq!(s, 200);
    assert_eq!(body["tickets"].as_array().unwrap().len(), 50);
    eprintln!("start {started:?}, snapshot {snapped:?}");
    sim.shutdown();
}

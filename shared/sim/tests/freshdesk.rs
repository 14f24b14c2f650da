//! End-to-end tests of the Freshdesk simulator over HTTP (reqwest against 127.0.0.1:0): seeding, the ticket
//! list's rules (30-day default, page ceiling, deleted and spam filters, `Link`), rate limits and their
//! headers, multipart creates with attachments and the 20 MB total, notes, search and auth.

use std::time::Duration;

use deltadesk_sim::freshdesk::{FreshdeskRateLimits, FreshdeskSim, FreshdeskSimConfig, LiveAgentConfig};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn small() -> FreshdeskSimConfig {
    FreshdeskSimConfig { seed: 3, tickets: 40, contacts: 8, companies: 2, groups: 2, max_seed_attachment_bytes: 20_000, ..Default::default() }
}

async fn start(cfg: FreshdeskSimConfig) -> FreshdeskSim {
    FreshdeskSim::start(cfg, "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

async fn get(url: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = reqwest::get(url).await.unwrap();
    let s = r.status().as_u16();
    let h = r.headers().clone();
    (s, h, r.json().await.unwrap_or(Value::Null))
}

async fn send(method: reqwest::Method, url: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new().request(method, url).json(&body).send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// A hand-built multipart body (the simulator parses what Freshdesk accepts).
fn form(fields: &[(&str, &str)], files: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let b = "XyZboundary42";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(format!("--{b}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes());
    }
    for (name, ctype, data) in files {
        body.extend_from_slice(format!("--{b}\r\nContent-Disposition: form-data; name=\"attachments[]\"; filename=\"{name}\"\r\nContent-Type: {ctype}\r\n\r\n").as_bytes());
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={b}"), body)
}

async fn post_form(url: &str, fields: &[(&str, &str)], files: &[(&str, &str, &[u8])]) -> (u16, Value) {
    let (ct, body) = form(fields, files);
    let r = reqwest::Client::new().post(url).header("content-type", ct).body(body).send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

fn live(snap: &Value) -> Vec<&Value> {
    snap["tickets"].as_array().unwrap().iter().filter(|t| t["deleted"] == false && t["spam"] == false).collect()
}

#[tokio::test]
async fn seed_is_deterministic_with_trash_spam_and_attachments_that_download_identically() {
    let a = start(small()).await;
    let b = start(small()).await;
    let snap = a.snapshot();
    assert_eq!(snap, b.snapshot());
    assert_ne!(snap, start(FreshdeskSimConfig { seed: 4, ..small() }).await.snapshot());
    let tickets = snap["tickets"].as_array().unwrap();
    assert_eq!(tickets.len(), 44);
    assert_eq!(tickets.iter().filter(|t| t["deleted"] == true).count(), 2);
    assert_eq!(tickets.iter().filter(|t| t["spam"] == true).count(), 2);
    assert_eq!(snap["agents"].as_array().unwrap().len(), 5);
    let labels: Vec<&str> = snap["ticket_fields"].as_array().unwrap().iter().map(|f| f["label"].as_str().unwrap()).collect();
    for l in ["Product", "Order number", "Escalated", "Customer tier", "Items", "deltadesk reference", "deltadesk fallbacks"] {
        assert!(labels.contains(&l), "{labels:?}");
    }
    // Every attachment serves bytes whose sha256 is the snapshot's.
    let base = a.base_url();
    let mut checked = 0;
    let mut inline = 0;
    for t in tickets.iter().take(40) {
        let (s, _, full) = get(&format!("{base}/api/v2/tickets/{}", t["id"])).await;
        assert_eq!(s, 200);
        let (_, _, convs) = get(&format!("{base}/api/v2/tickets/{}/conversations?per_page=100", t["id"])).await;
        let mut atts: Vec<(Value, String)> = full["attachments"].as_array().unwrap().iter().map(|a| (a.clone(), full["description"].as_str().unwrap().to_string())).collect();
        for c in convs.as_array().unwrap() {
            atts.extend(c["attachments"].as_array().unwrap().iter().map(|a| (a.clone(), c["body"].as_str().unwrap().to_string())));
        }
        for (a, body) in atts {
            let url = a["attachment_url"].as_str().unwrap();
            inline += usize::from(body.contains(url));
            let bytes = reqwest::get(url).await.unwrap().bytes().await.unwrap();
            assert_eq!(bytes.len() as u64, a["size"].as_u64().unwrap());
            let sha = hex::encode(Sha256::digest(&bytes));
            let in_snap = snap.to_string().contains(&sha);
            assert!(in_snap, "attachment {} sha not in the snapshot", a["id"]);
            checked += 1;
        }
    }
    assert!(checked > 3 && inline > 0, "checked {checked}, inline {inline}");
}

#[tokio::test]
async fn the_list_defaults_to_30_days_and_excludes_trash_and_spam_unless_filtered() {
    let sim = start(small()).await;
    let base = sim.base_url();
    let snap = sim.snapshot();
    let now = sim.now().timestamp();
    let recent = live(&snap).iter().filter(|t| chrono::DateTime::parse_from_rfc3339(t["created_at"].as_str().unwrap()).unwrap().timestamp() >= now - 30 * 86_400).count();
    let (s, _, v) = get(&format!("{base}/api/v2/tickets?per_page=100")).await;
    assert_eq!(s, 200);
    assert_eq!(v.as_array().unwrap().len(), recent);
    assert!(recent < 40, "some seeded tickets are older than 30 days");
    let all = format!("{base}/api/v2/tickets?per_page=100&updated_since=1970-01-01T00:00:00Z&order_by=updated_at&order_type=asc");
    let (_, _, v) = get(&all).await;
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 40);
    let times: Vec<&str> = list.iter().map(|t| t["updated_at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "ascending by updated_at");
    assert!(list.iter().all(|t| t.get("description").is_none()), "the list leaves out descriptions");
    let (_, _, d) = get(&format!("{all}&filter=deleted")).await;
    assert_eq!(d.as_array().unwrap().len(), 2);
    assert!(d.as_array().unwrap().iter().all(|t| t["deleted"] == true));
    let (_, _, sp) = get(&format!("{all}&filter=spam")).await;
    assert_eq!(sp.as_array().unwrap().len(), 2);
    // Trashing and spamming move a ticket between the passes and update updated_at.
    let id = list[0]["id"].as_u64().unwrap();
    let before = list[0]["updated_at"].as_str().unwrap().to_string();
    sim.delete_ticket(id);
    let (_, _, d) = get(&format!("{all}&filter=deleted")).await;
    let gone = d.as_array().unwrap().iter().find(|t| t["id"] == id).expect("in the trash");
    assert!(gone["updated_at"].as_str().unwrap() > before.as_str());
    let (s, _, shown) = get(&format!("{base}/api/v2/tickets/{id}")).await;
    assert_eq!((s, shown["deleted"].clone()), (200, json!(true)), "a trashed ticket is still served");
    sim.mark_spam(list[1]["id"].as_u64().unwrap());
    let (_, _, v) = get(&all).await;
    assert_eq!(v.as_array().unwrap().len(), 38);
    let (s, _, _) = get(&format!("{all}&filter=bogus")).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn pages_beyond_the_ceiling_are_refused_and_link_points_at_the_next_page() {
    let sim = start(FreshdeskSimConfig { max_page: 3, ..small() }).await;
    let base = sim.base_url();
    let url = format!("{base}/api/v2/tickets?per_page=5&updated_since=1970-01-01T00:00:00Z&order_by=updated_at&order_type=asc");
    let (s, h, v) = get(&url).await;
    assert_eq!(s, 200);
    assert_eq!(v.as_array().unwrap().len(), 5);
    let link = h.get("link").unwrap().to_str().unwrap().to_string();
    assert!(link.contains("page=2") && link.ends_with("rel=\"next\""), "{link}");
    let next = &link[1..link.find('>').unwrap()];
    let (s, _, v2) = get(next).await;
    assert_eq!(s, 200);
    assert_ne!(v2[0]["id"], v[0]["id"]);
    let (s, _, v) = get(&format!("{url}&page=3")).await;
    assert_eq!(s, 200);
    assert_eq!(v.as_array().unwrap().len(), 5);
    let (s, _, e) = get(&format!("{url}&page=4")).await;
    assert_eq!(s, 400);
    assert_eq!(e["errors"][0]["field"], "page");
    let (s, _, _) = get(&format!("{base}/api/v2/tickets?per_page=101")).await;
    assert_eq!(s, 400);
    // The default ceiling is Freshdesk's 300.
    let sim = start(small()).await;
    let (s, _, _) = get(&format!("{}/api/v2/tickets?page=300", sim.base_url())).await;
    assert_eq!(s, 200);
    let (s, _, _) = get(&format!("{}/api/v2/tickets?page=301", sim.base_url())).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn rate_limits_per_class_answer_429_with_retry_after_and_headers() {
    let limits = FreshdeskRateLimits { account: Some(6), ticket_list: Some(2), window: Duration::from_secs(2), ..FreshdeskRateLimits::unlimited() };
    let sim = start(FreshdeskSimConfig { rate_limits: limits, ..small() }).await;
    let base = sim.base_url();
    let (s, h, _) = get(&format!("{base}/api/v2/tickets")).await;
    assert_eq!(s, 200);
    assert_eq!(h["x-ratelimit-total"], "6");
    assert_eq!(h["x-ratelimit-remaining"], "5");
    assert_eq!(h["x-ratelimit-used-currentrequest"], "1");
    get(&format!("{base}/api/v2/tickets")).await;
    // The list class is exhausted; other endpoints still answer.
    let (s, h, _) = get(&format!("{base}/api/v2/tickets")).await;
    assert_eq!(s, 429);
    let wait: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait));
    assert!(h.contains_key("x-ratelimit-remaining"));
    let (s, _, _) = get(&format!("{base}/api/v2/groups")).await;
    assert_eq!(s, 200);
    for _ in 0..3 {
        get(&format!("{base}/api/v2/groups")).await;
    }
    let (s, _, _) = get(&format!("{base}/api/v2/groups")).await;
    assert_eq!(s, 429, "the account limit applies to every endpoint");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s, _, _) = get(&format!("{base}/api/v2/tickets")).await;
    assert_eq!(s, 200, "a new window");
    assert!(sim.stats().throttled >= 2);
    // The plan presets.
    let p = FreshdeskRateLimits::plan(deltadesk_sim::freshdesk::FreshdeskPlan::Growth);
    assert_eq!((p.account, p.ticket_create, p.ticket_list), (Some(200), Some(80), Some(20)));
    let p = FreshdeskRateLimits::plan(deltadesk_sim::freshdesk::FreshdeskPlan::Enterprise);
    assert_eq!((p.account, p.ticket_create), (Some(700), Some(280)));
}

#[tokio::test]
async fn multipart_creates_carry_attachments_and_the_20_mb_total_is_enforced() {
    let sim = start(FreshdeskSimConfig { max_attachment_bytes: 1000, ..FreshdeskSimConfig::empty_target(500) }).await;
    let base = sim.base_url();
    let (s, t) = post_form(
        &format!("{base}/api/v2/tickets"),
        &[("subject", "With files"), ("email", "new@example.com"), ("description", "<div>see files</div>"), ("status", "3"), ("priority", "4"), ("tags[]", "a"), ("tags[]", "b"), ("custom_fields[cf_items]", "7"), ("custom_fields[cf_escalated]", "true"), ("custom_fields[cf_deltadesk_ref]", "dd:m:1")],
        &[("a.txt", "text/plain", b"hello"), ("b.bin", "application/octet-stream", &[0u8, 1, 2, 255])],
    )
    .await;
    assert_eq!(s, 201, "{t}");
    assert_eq!((t["status"].clone(), t["priority"].clone()), (json!(3), json!(4)));
    assert_eq!(t["tags"], json!(["a", "b"]));
    assert_eq!(t["custom_fields"]["cf_items"], 7);
    assert_eq!(t["custom_fields"]["cf_escalated"], true);
    assert_eq!(t["description_text"], "see files");
    let atts = t["attachments"].as_array().unwrap();
    assert_eq!(atts.len(), 2);
    let got = reqwest::get(atts[1]["attachment_url"].as_str().unwrap()).await.unwrap().bytes().await.unwrap();
    assert_eq!(&got[..], &[0u8, 1, 2, 255]);
    let id = t["id"].as_u64().unwrap();
    // Over the total per ticket or conversation: 400 on the attachments field.
    let big = vec![b'x'; 600];
    let (s, e) = post_form(&format!("{base}/api/v2/tickets/{id}/notes"), &[("body", "two big ones"), ("private", "false")], &[("1.txt", "text/plain", &big), ("2.txt", "text/plain", &big)]).await;
    assert_eq!(s, 400);
    assert_eq!(e["errors"][0]["field"], "attachments");
    // A public note with one file; its body can be edited afterwards (notes only).
    let (s, n) = post_form(&format!("{base}/api/v2/tickets/{id}/notes"), &[("body", "one"), ("private", "false"), ("incoming", "true")], &[("1.txt", "text/plain", &big)]).await;
    assert_eq!(s, 201, "{n}");
    assert_eq!((n["private"].clone(), n["incoming"].clone(), n["source"].clone()), (json!(false), json!(true), json!(2)));
    let (s, u) = send(reqwest::Method::PUT, &format!("{base}/api/v2/conversations/{}", n["id"]), json!({"body": "<div>edited</div>"})).await;
    assert_eq!((s, u["body_text"].clone()), (200, json!("edited")));
    let (s, r) = send(reqwest::Method::POST, &format!("{base}/api/v2/tickets/{id}/reply"), json!({"body": "<div>reply</div>"})).await;
    assert_eq!((s, r["source"].clone(), r["private"].clone()), (201, json!(0), json!(false)));
    let (s, _) = send(reqwest::Method::PUT, &format!("{base}/api/v2/conversations/{}", r["id"]), json!({"body": "x"})).await;
    assert_eq!(s, 400, "replies cannot be edited");
    // Search finds the reference exactly; the fault switch refuses writes to it.
    let q = format!("{base}/api/v2/search/tickets?query=%22deltadesk_ref:'dd:m:1'%22");
    let (s, _, found) = get(&q).await;
    assert_eq!((s, found["total"].clone()), (200, json!(1)));
    sim.fail_writes_for("dd:m:1", 422, "refused on purpose");
    let (s, _) = send(reqwest::Method::PUT, &format!("{base}/api/v2/tickets/{id}"), json!({"priority": 1})).await;
    assert_eq!(s, 422);
    sim.clear_write_faults();
    let (s, _) = send(reqwest::Method::PUT, &format!("{base}/api/v2/tickets/{id}"), json!({"priority": 1, "custom_fields": {"cf_product": "nope"}})).await;
    assert_eq!(s, 400, "dropdown values are validated");
}

#[tokio::test]
async fn contacts_companies_groups_and_auth() {
    let sim = start(FreshdeskSimConfig { api_key: Some("k3y".into()), ..FreshdeskSimConfig::empty_target(10) }).await;
    let base = sim.base_url();
    let c = reqwest::Client::new();
    let r = c.get(format!("{base}/api/v2/tickets")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = c.get(format!("{base}/api/v2/agents?email=agent1@support.example.com")).basic_auth("k3y", Some("X")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let agents: Value = r.json().await.unwrap();
    assert_eq!(agents[0]["contact"]["email"], "agent1@support.example.com");
    let post = |path: &str, body: Value| c.post(format!("{base}{path}")).basic_auth("k3y", Some("X")).json(&body).send();
    let r = post("/api/v2/contacts", json!({"name": "Jane", "email": "jane@x.org"})).await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let r = post("/api/v2/contacts", json!({"name": "Jane", "email": "JANE@x.org"})).await.unwrap();
    assert_eq!(r.status().as_u16(), 409);
    let r = post("/api/v2/contacts", json!({"email": "agent2@support.example.com"})).await.unwrap();
    assert_eq!(r.status().as_u16(), 409, "an agent's email cannot become a contact");
    let r = post("/api/v2/companies", json!({"name": "Acme Corp"})).await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let r = post("/api/v2/companies", json!({"name": "acme corp"})).await.unwrap();
    assert_eq!(r.status().as_u16(), 409);
    let e: Value = r.json().await.unwrap();
    assert!(e["errors"][0]["additional_info"]["company_id"].is_u64());
    let r = c.get(format!("{base}/api/v2/companies/autocomplete?name=acme")).basic_auth("k3y", Some("X")).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["companies"][0]["name"], "Acme Corp");
    let r = post("/api/v2/groups", json!({"name": "Billing"})).await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
}

#[tokio::test]
async fn live_agents_change_tickets_and_never_touch_trash_spam_or_closed() {
    let sim = start(small()).await;
    let before = sim.snapshot();
    let agents = sim.start_live_agents(LiveAgentConfig { seed: 2, actions_per_second: 50.0, max_attachment_bytes: 4096 });
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let stats = agents.stop().await;
    assert!(stats.total > 20, "{stats:?}");
    assert!(stats.replies + stats.notes > 0 && stats.field_changes > 0);
    let after = sim.snapshot();
    for t in before["tickets"].as_array().unwrap().iter().filter(|t| t["deleted"] == true || t["spam"] == true || t["status"] == 5) {
        let now = after["tickets"].as_array().unwrap().iter().find(|x| x["id"] == t["id"]).unwrap();
        assert_eq!(now["updated_at"], t["updated_at"], "ticket {} was touched", t["id"]);
    }
}

//! Migrations into and out of Freshdesk: Zendesk simulator -> Freshdesk simulator and back, each a full
//! migration and deltas with live agents in the source, ending with a clean verify; plus the Freshdesk
//! specifics: the 300-page ceiling mid-window, deleted and spam tickets carried as deletions, an attachment
//! over the target's limit reported while the rest of its ticket lands, and inline images.

use std::net::SocketAddr;
use std::time::Duration;

use deltadesk_sim::freshdesk::{FreshdeskSim, FreshdeskSimConfig};
use deltadesk_sim::zendesk::{LiveAgentConfig, ZendeskSim, ZendeskSimConfig};
use deltadesk_tests::{freshdesk, zendesk, Opts, Pipeline};
use serde_json::{json, Value};

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn zendesk_source(tickets: usize, max_att: u64) -> ZendeskSim {
    let cfg = ZendeskSimConfig { seed: 21, tickets, publication_lag: Duration::from_secs(1), max_seed_attachment_bytes: max_att, ..Default::default() };
    ZendeskSim::start(cfg, local()).await.expect("zendesk source")
}

async fn freshdesk_target() -> FreshdeskSim {
    FreshdeskSim::start(FreshdeskSimConfig::empty_target(900_000), local()).await.expect("freshdesk target")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zendesk_to_freshdesk_full_then_deltas_with_live_agents_verify_clean() {
    let source = zendesk_source(25, 64 * 1024).await;
    let target = freshdesk_target().await;
    let p = Pipeline::new(&zendesk(&source.base_url(), Duration::from_secs(1)), &freshdesk(&target.base_url(), json!({})), Opts::default());
    let agents = source.start_live_agents(LiveAgentConfig { seed: 5, actions_per_second: 8.0, max_attachment_bytes: 32 * 1024 });
    let full = p.full().await;
    assert!(full.count("created") >= 25, "{full:#?}");
    assert!(full.failures.is_empty(), "{full:#?}");
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        p.settle_and_delta().await;
    }
    let stats = agents.stop().await;
    assert!(stats.total > 10, "agents did little: {stats:?}");
    let last = p.settle_and_delta().await;
    assert!(last.failures.is_empty(), "{last:#?}");
    let v = p.verify().await;
    assert!(v.is_clean(), "{}\n{v:#?}", v.summary_line());
    assert!(v.source_tickets >= 25 && v.comments_checked > v.source_tickets);
    assert_eq!(v.target_tickets, v.source_tickets);

    // Every migrated body carries its original author and time; replies never went out as emails.
    let snap = target.snapshot();
    let tickets = snap["tickets"].as_array().unwrap();
    assert!(tickets.iter().filter(|t| !t["deleted"].as_bool().unwrap()).all(|t| t["description_text"].as_str().unwrap().starts_with("— originally by ")));
    let convs: Vec<&Value> = tickets.iter().flat_map(|t| t["conversations"].as_array().unwrap()).collect();
    assert!(!convs.is_empty());
    assert!(convs.iter().all(|c| c["source"] == 2), "every migrated comment is a note, never an emailed reply");
    assert!(convs.iter().any(|c| c["private"] == false) && convs.iter().any(|c| c["private"] == true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn freshdesk_to_zendesk_full_then_deltas_with_live_agents_verify_clean() {
    let source = FreshdeskSim::start(FreshdeskSimConfig { seed: 8, tickets: 25, max_seed_attachment_bytes: 64 * 1024, ..Default::default() }, local()).await.unwrap();
    let target = ZendeskSim::start(ZendeskSimConfig { publication_lag: Duration::from_secs(1), ..ZendeskSimConfig::empty_target(900_000) }, local()).await.unwrap();
    let p = Pipeline::new(&freshdesk(&source.base_url(), json!({"per_page": 10})), &zendesk(&target.base_url(), Duration::from_secs(1)), Opts::default());
    let agents = source.start_live_agents(LiveAgentConfig { seed: 6, actions_per_second: 8.0, max_attachment_bytes: 32 * 1024 });
    let full = p.full().await;
    // Live agents may trash or spam a ticket before the full read lists it.
    assert!(full.count("created") >= 20, "{full:#?}");
    assert!(full.failures.is_empty(), "{full:#?}");
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        p.settle_and_delta().await;
    }
    let stats = agents.stop().await;
    assert!(stats.total > 10, "agents did little: {stats:?}");
    let last = p.settle_and_delta().await;
    assert!(last.failures.is_empty(), "{last:#?}");
    let v = p.verify().await;
    assert!(v.is_clean(), "{}\n{v:#?}", v.summary_line());
    assert!(v.source_tickets >= 20 && v.comments_checked > v.source_tickets);
    assert_eq!(v.target_tickets, v.source_tickets, "trashed and spam tickets are not migrated");
}

/// The ticket list serves at most `max_page` pages per query; a window longer than that restarts from the last
/// `updated_at` seen. Here the simulator's ceiling is 2 pages of 4 and the connector does not know it: the
/// simulator's 400 on page 3 restarts the listing, and nothing is lost or duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_page_ceiling_mid_window_restarts_the_listing_without_loss() {
    let source = FreshdeskSim::start(FreshdeskSimConfig { seed: 4, tickets: 30, max_page: 2, max_seed_attachment_bytes: 4 * 1024, ..Default::default() }, local()).await.unwrap();
    let target = freshdesk_target().await;
    let p = Pipeline::new(&freshdesk(&source.base_url(), json!({"per_page": 4})), &freshdesk(&target.base_url(), json!({})), Opts::default());
    let full = p.full().await;
    assert_eq!(full.count("created"), 30, "{full:#?}");
    assert!(full.failures.is_empty(), "{full:#?}");
    let refused = source.stats().per_route.get("GET /api/v2/tickets").copied().unwrap_or(0);
    assert!(refused > 8, "the listing needed many queries: {refused}");
    // Changes after the full read, more than one query's worth, all arrive in the delta.
    let ids: Vec<u64> = source.snapshot()["tickets"].as_array().unwrap().iter().filter(|t| t["deleted"] == false && t["spam"] == false).map(|t| t["id"].as_u64().unwrap()).take(12).collect();
    // Spread over a few seconds: at most a ceiling's worth (2 × 4) of tickets may share one `updated_at`
    // second (docs/freshdesk-api-subset.md).
    for id in &ids {
        source.update_ticket(*id, json!({"tags": ["after_full"]}));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let d = p.settle_and_delta().await;
    assert_eq!(d.count("updated"), 12, "{d:#?}");
    let v = p.verify().await;
    assert!(v.is_clean(), "{}\n{v:#?}", v.summary_line());
    assert_eq!(v.source_tickets, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleted_and_spam_tickets_are_carried_as_deletions_and_restored_ones_come_back() {
    let source = FreshdeskSim::start(FreshdeskSimConfig { seed: 9, tickets: 8, max_seed_attachment_bytes: 4 * 1024, ..Default::default() }, local()).await.unwrap();
    let target = ZendeskSim::start(ZendeskSimConfig { publication_lag: Duration::from_secs(1), ..ZendeskSimConfig::empty_target(900_000) }, local()).await.unwrap();
    let p = Pipeline::new(&freshdesk(&source.base_url(), json!({})), &zendesk(&target.base_url(), Duration::from_secs(1)), Opts::default());
    let full = p.full().await;
    assert_eq!(full.count("created"), 8, "seeded trash and spam are not copied: {full:#?}");
    let live: Vec<u64> = source.snapshot()["tickets"].as_array().unwrap().iter().filter(|t| t["deleted"] == false && t["spam"] == false).map(|t| t["id"].as_u64().unwrap()).collect();
    let (trashed, spammed) = (live[0], live[1]);
    assert_eq!(p.target_ids(trashed).await.len(), 1);
    source.delete_ticket(trashed);
    source.mark_spam(spammed);
    let d = p.settle_and_delta().await;
    assert_eq!(d.count("deleted"), 2, "{d:#?}");
    assert!(p.target_ids(trashed).await.is_empty());
    assert!(p.target_ids(spammed).await.is_empty());
    let v = p.verify().await;
    assert!(v.is_clean(), "{}\n{v:#?}", v.summary_line());
    assert_eq!(v.source_tickets, 6);

    // Restored from the trash and marked "not spam": both come back, once each.
    source.restore_ticket(trashed);
    source.restore_ticket(spammed);
    let r = p.settle_and_delta().await;
    assert!(r.failures.is_empty(), "a restored ticket must not fail: {r:#?}");
    assert_eq!(r.count("created"), 2, "{r:#?}");
    assert_eq!(p.target_ids(trashed).await.len(), 1);
    assert_eq!(p.target_ids(spammed).await.len(), 1);
    let v = p.verify().await;
    assert!(v.is_clean(), "{}\n{v:#?}", v.summary_line());
    assert_eq!(v.source_tickets, 8);
}

/// An attachment over the target connector's limit is reported by name; the rest of its ticket lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_attachment_over_the_targets_limit_is_reported_and_the_rest_lands() {
    let source = zendesk_source(3, 2 * 1024).await;
    let target = freshdesk_target().await;
    let big = deltadesk_sim_bytes(200 * 1024);
    let id = source
        .try_create_ticket("Huge log", "user1@example.com", "<p>Log attached.</p>", Some(("huge.log".into(), "text/plain".into(), big)))
        .expect("create");
    source.add_comment(id, true, "<p>And a small one.</p>", Some(("small.txt".into(), "text/plain".into(), b"tiny".to_vec())));
    let p = Pipeline::new(&zendesk(&source.base_url(), Duration::from_secs(1)), &freshdesk(&target.base_url(), json!({"max_attachment_bytes": 64 * 1024})), Opts::default());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let full = p.full().await;
    assert!(full.failures.is_empty(), "{full:#?}");
    let text = format!("{full:?}");
    assert!(text.contains("huge.log"), "the oversized attachment is reported: {full:#?}");
    let ids = p.target_ids(id).await;
    assert_eq!(ids.len(), 1);
    let copy = p.engine.target.read_ticket(&ids[0]).await.unwrap().unwrap();
    assert_eq!(copy.comments.len(), 2);
    assert!(copy.comments[0].attachments.is_empty());
    assert_eq!(copy.comments[1].attachments.len(), 1);
    assert_eq!(copy.comments[1].attachments[0].file_name, "small.txt");
    let v = p.verify().await;
    assert_eq!(v.missing.len() + v.duplicated.len(), 0, "{v:#?}");
    assert!(v.mismatched.len() == 1 && v.mismatched[0].contains("attachments differ") && v.mismatched[0].contains("huge.log"), "only the oversized attachment differs: {v:#?}");
}

fn deltadesk_sim_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| b"abcdefghij\n"[i % 11]).collect()
}

/// Inline images travel as attachments of the same note (or description) and the body's `<img src>` is
/// re-pointed to the target's copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inline_images_are_copied_and_repointed() {
    let source = zendesk_source(40, 8 * 1024).await;
    let target = freshdesk_target().await;
    let p = Pipeline::new(&zendesk(&source.base_url(), Duration::from_secs(1)), &freshdesk(&target.base_url(), json!({})), Opts::default());
    let full = p.full().await;
    assert!(full.failures.is_empty(), "{full:#?}");
    let snap = source.snapshot();
    let inline: Vec<(u64, usize)> = snap["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| {
            let id = t["id"].as_u64().unwrap();
            t["comments"].as_array().unwrap().iter().enumerate().filter(|(_, c)| c["attachments"].as_array().unwrap().iter().any(|a| a["inline"] == true)).map(move |(i, _)| (id, i)).collect::<Vec<_>>()
        })
        .collect();
    assert!(!inline.is_empty(), "the seed has inline images");
    for (sid, i) in &inline {
        let tid = p.target_ids(*sid).await;
        let copy = p.engine.target.read_ticket(&tid[0]).await.unwrap().unwrap();
        let c = &copy.comments[*i];
        assert!(c.attachments.iter().any(|a| a.inline), "ticket {sid} comment {i}: {c:#?}");
        assert!(c.html_body.contains("/fd-attachments/") && !c.html_body.contains("/attachments/token/"), "ticket {sid} comment {i} still points at the source: {}", c.html_body);
    }
    let v = p.verify().await;
    assert!(v.is_clean(), "{}\n{v:#?}", v.summary_line());
}

/// A ticket assigned to an agent the target Freshdesk does not have (agents are matched by email, never
/// created) fails with the agent named; the rest of the delta lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_agent_email_is_reported_and_the_rest_lands() {
    let source = zendesk_source(5, 4 * 1024).await;
    let target = freshdesk_target().await;
    let p = Pipeline::new(&zendesk(&source.base_url(), Duration::from_secs(1)), &freshdesk(&target.base_url(), json!({})), Opts::default());
    p.full().await;
    // A new agent in the source only, through the Zendesk API as an admin would add one.
    let created: Value = reqwest::Client::new()
        .post(format!("{}/api/v2/users/create_or_update", source.base_url()))
        .json(&json!({"user": {"email": "new.hire@support.example.com", "name": "New Hire", "role": "agent"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let agent = created["user"]["id"].as_u64().unwrap();
    let open: Vec<u64> = source.snapshot()["tickets"].as_array().unwrap().iter().filter(|t| t["status"] != "closed" && t["deleted"] != true).map(|t| t["id"].as_u64().unwrap()).collect();
    let (reassigned, other) = (open[0], open[1]);
    source.update_ticket(reassigned, json!({"assignee_id": agent}));
    source.add_comment(other, true, "<p>an unrelated reply</p>", None);
    let d = p.settle_and_delta().await;
    assert_eq!(d.failures.len(), 1, "{d:#?}");
    assert_eq!(d.failures[0].ticket, reassigned.to_string());
    assert!(d.failures[0].cause.contains("new.hire@support.example.com") && d.failures[0].cause.contains("not an agent"), "{}", d.failures[0].cause);
    let v = p.verify().await;
    assert!(v.missing.is_empty() && v.duplicated.is_empty(), "{v:#?}");
    assert!(!v.mismatched.is_empty(), "the reassigned ticket keeps its old assignee in the target: {v:#?}");
    assert!(v.mismatched.iter().all(|m| m.starts_with(&format!("ticket {reassigned} "))), "only the reassigned ticket differs: {v:#?}");
}

/// People in a Freshdesk target cost as few requests of the rate-limit budget as the API allows: the
/// agents are listed once (not looked up per person), and a new requester without a company is created by
/// the ticket's own `POST /tickets` (`email` + `name`), so only requesters with a company (whose contact
/// must join it) cost a `POST /contacts`. The copy verifies clean, requesters included.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_freshdesk_target_resolves_people_with_the_fewest_requests() {
    let source = zendesk_source(30, 16 * 1024).await;
    let target = freshdesk_target().await;
    let p = Pipeline::new(&zendesk(&source.base_url(), Duration::from_secs(1)), &freshdesk(&target.base_url(), json!({})), Opts::default());
    let full = p.full().await;
    assert!(full.failures.is_empty(), "{full:#?}");
    let snap = source.snapshot();
    let users: std::collections::HashMap<u64, &Value> = snap["users"].as_array().unwrap().iter().map(|u| (u["id"].as_u64().unwrap(), u)).collect();
    let requesters: std::collections::HashSet<u64> = snap["tickets"].as_array().unwrap().iter().filter_map(|t| t["requester_id"].as_u64()).collect();
    let end_users: Vec<&&Value> = requesters.iter().filter_map(|id| users.get(id)).filter(|u| u["role"] == "end-user").collect();
    let with_company = end_users.iter().filter(|u| u["organization_id"].as_u64().is_some()).count();
    assert!(end_users.len() > with_company && with_company > 0, "the seed should have requesters with and without a company: {} / {with_company}", end_users.len());

    let routes = target.stats().per_route;
    let n = |r: &str| routes.get(r).copied().unwrap_or(0);
    assert_eq!(n("GET /api/v2/agents"), 1, "agents are listed once: {routes:?}");
    assert!(n("POST /api/v2/contacts") <= with_company as u64 + 2, "only requesters with a company (and the odd comment author) need a contact of their own: {routes:?}");
    assert!(n("POST /api/v2/contacts") + n("GET /api/v2/contacts") < end_users.len() as u64, "people cost less than a request each: {routes:?}");
    let v = p.verify().await;
    assert!(v.is_clean(), "{}\n{v:#?}", v.summary_line());
}

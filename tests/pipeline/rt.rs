//! Request Tracker 5 as a real source: a full migration into the Zendesk simulator while a script keeps
//! working in RT over REST2 (new tickets, replies, notes, attachments, status changes, deletions, several
//! within one second), deltas, a final delta after the script stops, and a clean verify including
//! attachment bytes. Then the same through a fault-injecting proxy in front of RT (429 storms, 5xx bursts,
//! hangs past the client's timeout, resets, truncated JSON, slow answers, a listing that repeats records,
//! tickets deleted between listing and fetching, an attachment that 404s). Needs a running RT: `scripts/test`
//! starts one with `scripts/rt-server`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use deltadesk_connectors::registry::{build_source, build_target, ConnectorConfig};
use deltadesk_core::engine::runner::RunnerConfig;
use deltadesk_core::engine::verify::verify;
use deltadesk_core::engine::{Engine, EngineSettings};
use deltadesk_core::model::TicketId;
use deltadesk_core::window::{RunKind, WindowRules};
use deltadesk_sim::fault_proxy::{DeleteHook, FaultProxy, FaultProxyConfig, Listing};
use deltadesk_sim::faults::Faults;
use deltadesk_sim::zendesk::{ZendeskSim, ZendeskSimConfig};
use deltadesk_tests::{run_with, MIGRATION};
use serde_json::{json, Value};

const HOW_TO_START: &str = "DELTADESK_RT_URL is not set: this test needs a real Request Tracker 5. Start one with\n  \
     scripts/rt-server install && eval \"$(scripts/rt-server start)\"\n\
     (it exports DELTADESK_RT_URL, DELTADESK_RT_TOKEN, DELTADESK_RT_USER, DELTADESK_RT_PASSWORD), or run ./scripts/test.";

/// A small REST2 client for seeding and for the live script (basic auth as the test's RT root).
#[derive(Clone)]
struct RtApi {
    http: reqwest::Client,
    base: String,
    user: String,
    password: String,
}

impl RtApi {
    fn from_env() -> RtApi {
        let base = std::env::var("DELTADESK_RT_URL").unwrap_or_else(|_| panic!("{HOW_TO_START}"));
        let user = std::env::var("DELTADESK_RT_USER").unwrap_or_else(|_| "root".into());
        let password = std::env::var("DELTADESK_RT_PASSWORD").unwrap_or_else(|_| panic!("DELTADESK_RT_PASSWORD is not set. {HOW_TO_START}"));
        RtApi { http: reqwest::Client::new(), base: format!("{}/REST/2.0", base.trim_end_matches('/')), user, password }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut rb = self.http.request(method.clone(), format!("{}{path}", self.base)).basic_auth(&self.user, Some(&self.password));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status();
        let text = resp.text().await.expect("body");
        assert!(status.is_success(), "{method} {path}: HTTP {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    /// Deletes a ticket; false if RT refused (e.g. already deleted).
    async fn try_delete(&self, id: &str) -> bool {
        let resp = self.http.delete(format!("{}/ticket/{id}", self.base)).basic_auth(&self.user, Some(&self.password)).send().await;
        resp.is_ok_and(|r| r.status().is_success())
    }

    /// RT's root URL (REST2 lives under it).
    fn root(&self) -> &str {
        self.base.trim_end_matches("/REST/2.0")
    }

    async fn create_ticket(&self, body: Value) -> u64 {
        let v = self.post("/ticket", body).await;
        v["id"].as_str().and_then(|s| s.parse().ok()).or(v["id"].as_u64()).unwrap_or_else(|| panic!("ticket id in {v}"))
    }
}

/// Deterministic pseudo-random bytes (xorshift), so attachments are binary and differ per call.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn file(name: &str, seed: u64, len: usize) -> Value {
    json!({"FileName": name, "FileType": "application/octet-stream", "FileContent": base64::engine::general_purpose::STANDARD.encode(bytes(seed, len))})
}

/// The users, queue and tickets the migration starts from.
async fn seed(rt: &RtApi, tag: &str) -> Vec<u64> {
    rt.post("/user", json!({"Name": format!("alice-{tag}"), "EmailAddress": format!("alice-{tag}@example.com"), "RealName": "Alice Example"})).await;
    // No email address: the connector's documented fallback is {name}@rt.invalid.
    rt.post("/user", json!({"Name": format!("bob-{tag}"), "RealName": "Bob Noemail"})).await;
    let queue = format!("Support {tag}");
    rt.post("/queue", json!({"Name": queue})).await;
    let mut ids = Vec::new();
    for i in 0..6u64 {
        let requestor = if i % 3 == 2 { format!("bob-{tag}") } else { format!("alice-{tag}@example.com") };
        let mut body = json!({
            "Queue": queue, "Subject": format!("Seeded {i} ({tag})"), "Requestor": requestor,
            "Content": format!("Seeded ticket {i}\nsecond line & <angle> brackets\n\nlast paragraph"), "ContentType": "text/plain",
            "Priority": (i * 20) as i64,
            "CustomFields": {"Order number": format!("ORD-{tag}-{i}")},
        });
        if i % 2 == 0 {
            body["Attachments"] = json!([file(&format!("seed-{i}.bin"), 100 + i, 3000 + 500 * i as usize)]);
        }
        let id = rt.create_ticket(body).await;
        rt.post(&format!("/ticket/{id}/correspond"), json!({"Content": format!("<p>Reply to {i}</p><p>with <b>HTML</b></p>"), "ContentType": "text/html"})).await;
        rt.post(
            &format!("/ticket/{id}/comment"),
            json!({"Content": format!("Internal note {i}"), "ContentType": "text/plain", "Attachments": [file("note.txt", 200 + i, 64)]}),
        )
        .await;
        if i % 2 == 1 {
            rt.put(&format!("/ticket/{id}"), json!({"Owner": "root", "Status": "stalled"})).await;
        }
        ids.push(id);
    }
    ids
}

/// The live script: keeps agents' work flowing in RT until `stop` is set. Returns how many actions it did.
async fn live_script(rt: RtApi, tag: String, seeded: Vec<u64>, stop: Arc<AtomicBool>, actions: Arc<AtomicU64>) {
    let queue = format!("Support {tag}");
    let mut mine: Vec<u64> = Vec::new();
    let mut round = 0u64;
    while !stop.load(Ordering::SeqCst) {
        round += 1;
        // A new ticket with an attachment, then a reply, a note and a status change in the same second.
        let id = rt
            .create_ticket(json!({
                "Queue": queue, "Subject": format!("Live {round} ({tag})"), "Requestor": format!("alice-{tag}@example.com"),
                "Content": format!("Live ticket {round}"), "ContentType": "text/plain",
                "Attachments": [file(&format!("live-{round}.bin"), 1000 + round, 2048)],
            }))
            .await;
        rt.post(&format!("/ticket/{id}/correspond"), json!({"Content": format!("Answer {round}\nline two"), "ContentType": "text/plain"})).await;
        rt.post(&format!("/ticket/{id}/comment"), json!({"Content": format!("Note {round}"), "ContentType": "text/plain", "Attachments": [file("n.bin", 2000 + round, 300)]})).await;
        rt.put(&format!("/ticket/{id}"), json!({"Status": "open"})).await;
        mine.push(id);
        // Work on older tickets: replies, notes and status changes.
        let old = seeded[(round as usize) % seeded.len()];
        rt.post(&format!("/ticket/{old}/correspond"), json!({"Content": format!("Follow-up {round}"), "ContentType": "text/plain"})).await;
        rt.post(&format!("/ticket/{old}/comment"), json!({"Content": format!("Follow-up note {round}"), "ContentType": "text/plain", "Attachments": [file(&format!("f-{round}.bin"), 3000 + round, 700)]})).await;
        let status = ["open", "stalled", "resolved"][(round % 3) as usize];
        rt.put(&format!("/ticket/{old}"), json!({"Status": status})).await;
        if round.is_multiple_of(3) && mine.len() > 1 {
            let victim = mine.remove(0);
            rt.call(reqwest::Method::DELETE, &format!("/ticket/{victim}"), None).await;
        }
        actions.fetch_add(9, Ordering::SeqCst);
        // Paced so that the test stays a few minutes on a loaded 2-core machine while every delta sees live work.
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

/// The engine from RT at `base_url` (RT itself, or a proxy in front of it; `extra` connector keys) into a fresh
/// Zendesk simulator, with its state directory and runner settings.
async fn pipeline(rt: &RtApi, base_url: &str, extra: Value, max_attempts: u32) -> (Engine, ZendeskSim, tempfile::TempDir, RunnerConfig) {
    let token = std::env::var("DELTADESK_RT_TOKEN").unwrap_or_default();
    let lag = Duration::from_secs(1);
    // The connector authenticates with RT's token when the server script made one, else as root by password.
    let mut cfg = if token.is_empty() {
        json!({"kind": "rt", "base_url": base_url, "user": rt.user, "token_env": "DELTADESK_RT_PASSWORD"})
    } else {
        json!({"kind": "rt", "base_url": base_url, "token_env": "DELTADESK_RT_TOKEN"})
    };
    if let (Some(o), Some(e)) = (cfg.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    let src_cfg: ConnectorConfig = serde_json::from_value(cfg).expect("rt config");
    let source = build_source(&src_cfg).expect("rt source");
    let target_sim = ZendeskSim::start(ZendeskSimConfig { publication_lag: lag, ..ZendeskSimConfig::empty_target(900_000) }, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("target sim");
    let target = build_target(&serde_json::from_value(json!({"kind": "zendesk", "base_url": target_sim.base_url(), "publication_lag_secs": 1})).expect("target config"))
        .expect("target");
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = WindowRules::new(lag, Duration::from_secs(3)).expect("rules");
    let mut settings = EngineSettings::new(rules, MIGRATION);
    settings.clock_skew_margin = Duration::from_secs(1);
    settings.lease_ttl = Duration::from_secs(10);
    settings.max_attempts = max_attempts;
    let engine = deltadesk_local::open_engine(dir.path(), MIGRATION, source, target, settings, 10).expect("engine");
    let rc = RunnerConfig { workers: 4, visibility: Duration::from_secs(10), stall_after: Duration::from_secs(15), max_stalls: 3, ..RunnerConfig::default() };
    (engine, target_sim, dir, rc)
}

/// The RT tests share one RT and each migrates all of it: one test's live script would change tickets under
/// the other's final verify, so they take turns.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rt_full_then_deltas_with_live_changes_verify_clean() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let rt = RtApi::from_env();
    let tag = format!("{}", chrono::Utc::now().timestamp_millis());
    let seeded = seed(&rt, &tag).await;

    let (engine, target_sim, _dir, rc) = pipeline(&rt, rt.root(), json!({}), 3).await;
    let lag = engine.settings.rules.publication_lag;

    let stop = Arc::new(AtomicBool::new(false));
    let actions = Arc::new(AtomicU64::new(0));
    let script = tokio::spawn(live_script(rt.clone(), tag.clone(), seeded.clone(), stop.clone(), actions.clone()));

    // The seeded history is over before the full read's window ends (it ends a publication lag before now);
    // everything after that is the live script's, for the deltas to carry.
    tokio::time::sleep(lag + Duration::from_millis(1100)).await;
    let full = run_with(&engine, &rc, RunKind::Full).await.expect("a full run always opens");
    assert!(full.count("created") >= seeded.len() as i64, "full run created too few: {full:#?}");
    assert!(full.failures.is_empty(), "full run failures: {:#?}", full.failures);
    for _ in 0..3 {
        tokio::time::sleep(lag + Duration::from_millis(1100)).await;
        let d = run_with(&engine, &rc, RunKind::Delta).await.expect("a delta after the lag has a window");
        assert!(d.failures.is_empty(), "delta failures: {:#?}", d.failures);
    }
    stop.store(true, Ordering::SeqCst);
    script.await.expect("live script");
    assert!(actions.load(Ordering::SeqCst) >= 9, "the live script did nothing");
    tokio::time::sleep(lag + Duration::from_millis(1100)).await;
    let last = run_with(&engine, &rc, RunKind::Delta).await.expect("final delta");
    assert!(last.failures.is_empty(), "final delta failures: {:#?}", last.failures);

    let v = verify(engine.source.as_ref(), engine.target.as_ref(), &engine.settings.source_ref_prefix, 4).await.expect("verify");
    assert!(v.is_clean(), "{}\n{:#?}", v.summary_line(), v);
    assert!(v.source_tickets >= seeded.len(), "{v:#?}");
    assert!(v.attachments_checked >= 3, "attachment bytes were not compared: {v:#?}");
    target_sim.shutdown();
}

/// RT's faults, injected by a proxy between the connector and the real RT while the live script works: 429s
/// with `Retry-After`, 5xx bursts, answers held past the client's timeout, resets, truncated JSON, slow answers,
/// a search that repeats records and tickets deleted (through REST2) right after the search listed them. Then,
/// faults off, a final delta and a clean verify; last, an attachment download that 404s is reported by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rt_through_a_faulty_proxy_full_then_deltas_with_live_changes_verify_clean() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let rt = RtApi::from_env();
    let tag = format!("faults-{}", chrono::Utc::now().timestamp_millis());
    let seeded = seed(&rt, &tag).await;
    // Tickets nobody else touches, for the proxy to delete: the live script must not find its tickets gone.
    let mut doomed = Vec::new();
    for i in 0..3 {
        doomed.push(rt.create_ticket(json!({"Queue": format!("Support {tag}"), "Subject": format!("Doomed {i} ({tag})"), "Requestor": format!("alice-{tag}@example.com"), "Content": "to be deleted", "ContentType": "text/plain"})).await.to_string());
    }
    // The proxy's hook deletes listed tickets in RT itself (REST2), and remembers which.
    let deleted: Arc<Mutex<Vec<String>>> = Arc::default();
    let (deleter, log, victims) = (rt.clone(), deleted.clone(), doomed.clone());
    let delete: DeleteHook = Arc::new(move |id: String| {
        let (rt, log, victim) = (deleter.clone(), log.clone(), victims.contains(&id));
        Box::pin(async move {
            let done = victim && rt.try_delete(&id).await;
            if done {
                log.lock().unwrap().push(id);
            }
            done
        })
    });
    let proxy = FaultProxy::start(
        FaultProxyConfig {
            upstream: rt.root().to_string(),
            seed: 17,
            // None until the 404 phase names the one file to break.
            attachment_paths: Vec::new(),
            listing: Some(Listing { path_suffix: "/REST/2.0/tickets".into(), items: "/items".into(), delete }),
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("proxy");
    // A 2 s client timeout against 3 s hangs: RT answers a normal read well within 2 s even on a loaded machine.
    let (engine, target_sim, _dir, rc) = pipeline(&rt, &proxy.base_url(), json!({"timeout_secs": 2}), 10).await;
    let lag = engine.settings.rules.publication_lag;
    let mut faults = Faults {
        throttle_rate: 0.04,
        retry_after_secs: 1,
        server_error_rate: 0.04,
        reset_rate: 0.03,
        malformed_rate: 0.03,
        hang_rate: 0.01,
        hang_for: Duration::from_secs(3),
        slow: Duration::from_millis(10),
        repeat_records: true,
        delete_after_listing: 2,
        ..Default::default()
    };
    proxy.set_faults(faults.clone());

    let stop = Arc::new(AtomicBool::new(false));
    let actions = Arc::new(AtomicU64::new(0));
    let script = tokio::spawn(live_script(rt.clone(), tag.clone(), seeded.clone(), stop.clone(), actions.clone()));
    tokio::time::sleep(lag + Duration::from_millis(1100)).await;
    let full = run_with(&engine, &rc, RunKind::Full).await.expect("a full run always opens");
    assert_eq!(deleted.lock().unwrap().len(), 2, "the full run's listing had two tickets deleted behind it");
    assert!(full.count("created") >= seeded.len() as i64 - 2, "full run created too few: {full:#?}");
    // One more ticket deleted between listing and fetching, in a delta while the script works (the last doomed
    // ticket changes, so the delta lists it).
    let last_doomed = doomed.iter().find(|d| !deleted.lock().unwrap().contains(d)).expect("a doomed ticket left").clone();
    rt.post(&format!("/ticket/{last_doomed}/comment"), json!({"Content": "still here", "ContentType": "text/plain"})).await;
    faults.delete_after_listing = 1;
    proxy.set_faults(faults);
    tokio::time::sleep(lag + Duration::from_millis(1100)).await;
    run_with(&engine, &rc, RunKind::Delta).await.expect("a delta after the lag has a window");
    stop.store(true, Ordering::SeqCst);
    script.await.expect("live script");
    assert!(actions.load(Ordering::SeqCst) >= 9, "the live script did nothing");
    assert!(proxy.faults_injected() >= 5, "too few faults to test anything: {}", proxy.faults_injected());
    proxy.set_faults(Faults::default());
    // Anything that failed for good under the faults is retried by the next run.
    tokio::time::sleep(lag + Duration::from_millis(1100)).await;
    let last = run_with(&engine, &rc, RunKind::Delta).await.expect("final delta");
    assert!(last.failures.is_empty(), "final delta failures: {:#?}", last.failures);
    let v = verify(engine.source.as_ref(), engine.target.as_ref(), &engine.settings.source_ref_prefix, 4).await.expect("verify");
    assert!(v.is_clean(), "{}\n{:#?}", v.summary_line(), v);
    assert!(v.source_tickets >= seeded.len() - 3, "{v:#?}");
    assert!(v.attachments_checked >= 3, "attachment bytes were not compared: {v:#?}");
    let gone = deleted.lock().unwrap().clone();
    assert_eq!(gone.len(), 3, "{gone:?}");
    for id in &gone {
        let copies = engine.target.find_by_source_ref(&engine.source_ref(&TicketId(id.clone()))).await.expect("find");
        assert!(copies.is_empty(), "ticket {id} was deleted between listing and fetching, yet has a copy: {copies:?}");
    }

    // An attachment download that answers 404 is reported by name; the rest of the ticket lands.
    let x = seeded.iter().copied().find(|id| !gone.contains(&id.to_string())).expect("a seeded ticket not deleted");
    rt.post(&format!("/ticket/{x}/correspond"), json!({"Content": "see the screenshot", "ContentType": "text/plain", "Attachments": [file("screen.png", 4242, 512)]})).await;
    // RT serves message bodies from the same `/attachment/{id}` endpoint as files: only the file's own download
    // answers 404 (an unreadable body is another fault, and fails its ticket rather than lose the text).
    let parts = rt.call(reqwest::Method::GET, &format!("/ticket/{x}/attachments?fields=Filename&per_page=100"), None).await;
    let screen = parts["items"].as_array().expect("items").iter().find(|p| p["Filename"] == "screen.png").expect("screen.png among the ticket's attachments")["id"].clone();
    let screen = screen.as_str().map(str::to_string).unwrap_or_else(|| screen.to_string());
    proxy.set_attachment_paths(vec![format!("/REST/2.0/attachment/{screen}")]);
    proxy.set_faults(Faults { attachments_404: true, ..Default::default() });
    tokio::time::sleep(lag + Duration::from_millis(1100)).await;
    let r = run_with(&engine, &rc, RunKind::Delta).await.expect("a delta after the lag has a window");
    proxy.set_faults(Faults::default());
    assert!(r.failures.is_empty(), "{r:#?}");
    assert!(r.warnings.iter().any(|w| w.contains("screen.png") && w.contains("404")), "{r:#?}");
    let v = verify(engine.source.as_ref(), engine.target.as_ref(), &engine.settings.source_ref_prefix, 4).await.expect("verify");
    assert!(v.missing.is_empty() && v.duplicated.is_empty(), "{v:#?}");
    assert!(v.mismatched.len() == 1 && v.mismatched[0].contains("screen.png"), "only the missing file differs: {v:#?}");
    proxy.shutdown();
    target_sim.shutdown();
}

/// `mapping init`'s view of a real RT: its queues (as groups), privileged users (as agents, customers left
/// out) and ticket custom fields, and the proposal into a Zendesk target that has "Order number" too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rt_vocabulary_lists_queues_privileged_users_and_ticket_fields() {
    if std::env::var("DELTADESK_RT_URL").is_err() {
        panic!("{HOW_TO_START}");
    }
    let rt = RtApi::from_env();
    let tag = format!("voc{}", std::process::id());
    rt.post("/queue", json!({"Name": format!("Voc queue {tag}")})).await;
    rt.post("/user", json!({"Name": format!("agent-{tag}"), "EmailAddress": format!("agent-{tag}@support.example"), "Privileged": 1})).await;
    rt.post("/user", json!({"Name": format!("customer-{tag}"), "EmailAddress": format!("customer-{tag}@example.com")})).await;
    let (engine, target_sim, _dir, _rc) = pipeline(&rt, &std::env::var("DELTADESK_RT_URL").unwrap(), json!({}), 5).await;
    let v = engine.source.vocabulary().await.expect("rt vocabulary");
    assert!(v.groups.contains(&format!("Voc queue {tag}")), "{:?}", v.groups);
    assert!(v.agents.contains(&format!("agent-{tag}@support.example")), "the privileged user is an agent: {:?}", v.agents);
    assert!(!v.agents.contains(&format!("customer-{tag}@example.com")), "an unprivileged user is not: {:?}", v.agents);
    let order = v.custom_fields.iter().find(|f| f.title == "Order number").unwrap_or_else(|| panic!("{:?}", v.custom_fields));
    assert_eq!(order.kind, deltadesk_core::vocabulary::FieldKind::Text);
    let t = engine.target.vocabulary().await.expect("zendesk vocabulary");
    let p = deltadesk_core::vocabulary::propose(&v, &t);
    assert_eq!(p.mapping.custom_fields.map.get("Order number").map(String::as_str), Some("Order number"), "{:?}", p.decisions);
    assert!(p.decisions.iter().all(|d| d.table != "custom_fields" || d.value != "Order number"));
    drop(target_sim);
}

//! Request Tracker 5 as a real source: a full migration into the Zendesk simulator while a script keeps
//! working in RT over REST2 (new tickets, replies, notes, attachments, status changes, deletions, several
//! within one second), deltas, a final delta after the script stops, and a clean verify including
//! attachment bytes. Needs a running RT: `scripts/test` starts one with `scripts/rt-server`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use deltadesk_connectors::registry::{build_source, build_target, ConnectorConfig};
use deltadesk_core::engine::runner::RunnerConfig;
use deltadesk_core::engine::verify::verify;
use deltadesk_core::engine::EngineSettings;
use deltadesk_core::window::{RunKind, WindowRules};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rt_full_then_deltas_with_live_changes_verify_clean() {
    let rt = RtApi::from_env();
    let token = std::env::var("DELTADESK_RT_TOKEN").unwrap_or_default();
    let tag = format!("{}", chrono::Utc::now().timestamp_millis());
    let seeded = seed(&rt, &tag).await;

    let lag = Duration::from_secs(1);
    // The connector authenticates with RT's token when the server script made one, else as root by password.
    let src_cfg: ConnectorConfig = if token.is_empty() {
        serde_json::from_value(json!({"kind": "rt", "base_url": rt.base.trim_end_matches("/REST/2.0"), "user": rt.user, "token_env": "DELTADESK_RT_PASSWORD"}))
    } else {
        serde_json::from_value(json!({"kind": "rt", "base_url": rt.base.trim_end_matches("/REST/2.0"), "token_env": "DELTADESK_RT_TOKEN"}))
    }
    .expect("rt config");
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
    settings.max_attempts = 3;
    let engine = deltadesk_local::open_engine(dir.path(), MIGRATION, source, target, settings, 10).expect("engine");
    let rc = RunnerConfig { workers: 4, visibility: Duration::from_secs(10), stall_after: Duration::from_secs(15), max_stalls: 3, ..RunnerConfig::default() };

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

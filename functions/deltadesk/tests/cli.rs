//! The `deltadesk` binary as an operator meets it: config errors, migrate, status, report and verify
//! against simulators on port 0.

use std::process::Command;
use std::time::Duration;

use deltadesk_sim::zendesk::{ZendeskSim, ZendeskSimConfig};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_deltadesk"))
}

/// Every file under `dir` (none if it does not exist).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return vec![] };
    entries.flatten().flat_map(|e| if e.path().is_dir() { walk(&e.path()) } else { vec![e.path()] }).collect()
}

fn run(args: &[&str], config: &std::path::Path) -> (i32, String, String) {
    let out = bin().arg("--config").arg(config).args(args).output().expect("run deltadesk");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn bad_config_is_refused_with_the_key_named_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[migration]\nid = \"x\"\n[source]\nkind = \"helpscout\"\nbase_url = \"http://127.0.0.1:1\"\n[target]\nkind = \"zendesk\"\nbase_url = \"http://127.0.0.1:1\"\n").unwrap();
    let (code, _, err) = run(&["migrate", "full"], &cfg);
    assert_eq!(code, 1);
    assert!(err.contains("helpscout"), "{err}");

    std::fs::write(&cfg, "[migration]\nid = \"x\"\n[source]\nkind = \"zendesk\"\nbase_url = \"http://127.0.0.1:1\"\nemail = \"a@b.c\"\ntoken_env = \"DD_TEST_SURELY_UNSET_TOKEN\"\n[target]\nkind = \"zendesk\"\nbase_url = \"http://127.0.0.1:1\"\n").unwrap();
    let (code, _, err) = run(&["migrate", "full"], &cfg);
    assert_eq!(code, 1);
    assert!(err.contains("DD_TEST_SURELY_UNSET_TOKEN"), "the missing secret's variable must be named: {err}");
    assert!(!dir.path().join(".deltadesk").exists());

    let (code, _, err) = run(&["status"], &dir.path().join("missing.toml"));
    assert_eq!(code, 1);
    assert!(err.contains("missing.toml"), "{err}");
}

/// Wrong credentials stop the run before anything is planned or written, naming the side and the cause.
#[test]
fn bad_credentials_are_refused_before_any_write() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let local = "127.0.0.1:0".parse().unwrap();
    let (source, target) = rt.block_on(async {
        let s = ZendeskSim::start(ZendeskSimConfig { tickets: 3, publication_lag: Duration::from_secs(1), credentials: Some(("ops@acme.test".into(), "right".into())), ..Default::default() }, local).await.unwrap();
        let t = ZendeskSim::start(ZendeskSimConfig::empty_target(900_000), local).await.unwrap();
        (s, t)
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("deltadesk.toml");
    std::fs::write(
        &cfg,
        format!(
            "[migration]\nid = \"creds\"\n[source]\nkind = \"zendesk\"\nbase_url = \"{}\"\nemail = \"ops@acme.test\"\ntoken_env = \"DD_CLI_TEST_WRONG_TOKEN\"\nmax_retries = 0\n[target]\nkind = \"zendesk\"\nbase_url = \"{}\"\n[engine]\nstate_dir = \"{}\"\n",
            source.base_url(),
            target.base_url(),
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let out = bin().arg("--config").arg(&cfg).args(["migrate", "full"]).env("DD_CLI_TEST_WRONG_TOKEN", "wrong").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot read the source") && err.contains("credentials"), "{err}");
    assert!(!err.contains("wrong"), "the token must never be printed: {err}");
    let out = bin().arg("--config").arg(&cfg).args(["status", "--json"]).env("DD_CLI_TEST_WRONG_TOKEN", "wrong").output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["runs"].as_array().map(Vec::len), Some(0), "no run may be opened: {status}");
    assert!(target.snapshot()["tickets"].as_array().unwrap().is_empty());
    drop(rt);
}

#[test]
fn migrate_status_report_and_verify_through_the_binary() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let local = "127.0.0.1:0".parse().unwrap();
    let (source, target) = rt.block_on(async {
        let s = ZendeskSim::start(ZendeskSimConfig { tickets: 12, publication_lag: Duration::from_secs(1), max_seed_attachment_bytes: 64 * 1024, ..Default::default() }, local).await.unwrap();
        let t = ZendeskSim::start(ZendeskSimConfig { publication_lag: Duration::from_secs(1), ..ZendeskSimConfig::empty_target(900_000) }, local).await.unwrap();
        (s, t)
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("deltadesk.toml");
    std::fs::write(
        &cfg,
        format!(
            "[migration]\nid = \"cli\"\n[source]\nkind = \"zendesk\"\nbase_url = \"{}\"\npublication_lag_secs = 1\n[target]\nkind = \"zendesk\"\nbase_url = \"{}\"\npublication_lag_secs = 1\n[engine]\nstate_dir = \"{}\"\noverlap_secs = 3\nvisibility_secs = 5\n",
            source.base_url(),
            target.base_url(),
            dir.path().join("state").display()
        ),
    )
    .unwrap();

    let (code, _, err) = run(&["migrate", "delta"], &cfg);
    assert_eq!(code, 1, "a delta before any full migration is refused");
    assert!(err.contains("migrate full"), "{err}");

    let (code, out, err) = run(&["migrate", "full", "--json"], &cfg);
    assert_eq!(code, 0, "{out}\n{err}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON report line");
    assert_eq!(report["counts"]["created"], 12);
    let run_id = report["run_id"].as_str().unwrap().to_string();
    assert!(dir.path().join("state/reports").join(format!("{run_id}.md")).exists());
    // The committed run's staged snapshots and attachments are gone: the state directory does not grow
    // with every run.
    let staged: Vec<_> = walk(&dir.path().join("state/blobs"));
    assert!(staged.is_empty(), "staged files left after the commit: {staged:?}");

    // Closed tickets take no more comments (as in Zendesk): use the open ones.
    let open: Vec<u64> = (1..=12).filter(|id| source.try_update_ticket(*id, serde_json::json!({})).is_ok()).collect();
    assert!(open.len() >= 2, "the seed has too few open tickets");
    source.add_comment(open[0], true, "<p>after the full copy</p>", None);
    std::thread::sleep(Duration::from_millis(2200));
    let (code, out, err) = run(&["migrate", "delta"], &cfg);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("updated=1"), "{out}");

    let (code, out, _) = run(&["status", "--json"], &cfg);
    assert_eq!(code, 0);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(status["watermark"].is_string(), "{status}");
    assert_eq!(status["runs"].as_array().unwrap().len(), 2);

    let (code, out, _) = run(&["report", &run_id], &cfg);
    assert_eq!(code, 0);
    assert!(out.contains("| tickets listed |"), "{out}");

    let (code, out, _) = run(&["verify"], &cfg);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("verify: missing=0 duplicated=0 mismatched=0"), "{out}");

    // Verify exits non-zero once the target drifts from the source.
    source.add_comment(open[1], true, "<p>not yet migrated</p>", None);
    let (code, out, _) = run(&["verify"], &cfg);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("mismatched=1"), "{out}");
    drop(rt);
}

/// `mapping init` between a Zendesk source and a Freshdesk target that do not quite line up: a group
/// spelled differently, an agent the target lacks. It fills in what matches, marks what does not as
/// DECIDE with the reason, writes nothing to either side, and the section it writes drives a migration
/// that verifies clean.
#[test]
fn mapping_init_proposes_a_mapping_that_a_migration_then_uses() {
    use deltadesk_sim::freshdesk::{FreshdeskSim, FreshdeskSimConfig};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let local = "127.0.0.1:0".parse().unwrap();
    let (source, target) = rt.block_on(async {
        let s = ZendeskSim::start(ZendeskSimConfig { tickets: 6, publication_lag: Duration::from_secs(1), ..Default::default() }, local).await.unwrap();
        let t = FreshdeskSim::start(FreshdeskSimConfig::empty_target(900_000), local).await.unwrap();
        let http = reqwest::Client::new();
        let post = |url: String, body: serde_json::Value| {
            let http = http.clone();
            async move {
                let r = http.post(url).json(&body).send().await.unwrap();
                assert!(r.status().is_success(), "{}", r.text().await.unwrap());
            }
        };
        post(format!("{}/api/v2/groups", s.base_url()), serde_json::json!({"group": {"name": "night shift"}})).await;
        post(format!("{}/api/v2/groups", t.base_url()), serde_json::json!({"name": "Night Shift"})).await;
        post(format!("{}/api/v2/users/create_or_update", s.base_url()), serde_json::json!({"user": {"name": "Night Owl", "email": "night.owl@support.example.com", "role": "agent"}})).await;
        (s, t)
    });
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("deltadesk.toml");
    let base = format!(
        "[migration]\nid = \"mapinit\"\n[source]\nkind = \"zendesk\"\nbase_url = \"{}\"\npublication_lag_secs = 1\n[target]\nkind = \"freshdesk\"\nbase_url = \"{}\"\n[engine]\nstate_dir = \"{}\"\noverlap_secs = 2\n",
        source.base_url(),
        target.base_url(),
        dir.path().join("state").display()
    );
    std::fs::write(&cfg, &base).unwrap();
    let before = (source.snapshot(), target.snapshot());
    let out = dir.path().join("mapping.toml");
    let (code, _, err) = run(&["mapping", "init", "--out", out.to_str().unwrap()], &cfg);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("\"night shift\" = \"Night Shift\""), "the group should match ignoring case:\n{text}");
    assert!(text.contains("# DECIDE \"night.owl@support.example.com\""), "the agent Freshdesk lacks must be left to decide:\n{text}");
    assert!(text.contains("\"hold\" = \"hold\"  # the target has no status"), "Freshdesk's missing On-hold status must be noted:\n{text}");
    assert!(err.contains("1 value(s) to decide"), "{err}");
    assert_eq!((source.snapshot(), target.snapshot()), before, "mapping init must not write to either help desk");
    let (code, _, err) = run(&["mapping", "init", "--out", out.to_str().unwrap()], &cfg);
    assert_eq!(code, 1, "an existing file is not overwritten without --force");
    assert!(err.contains("--force"), "{err}");

    std::fs::write(&cfg, format!("{base}\n{text}")).unwrap();
    let (code, stdout, err) = run(&["migrate", "full"], &cfg);
    assert_eq!(code, 0, "{stdout}\n{err}");
    let (code, stdout, err) = run(&["verify"], &cfg);
    assert_eq!(code, 0, "{stdout}\n{err}");
    assert!(stdout.contains("missing=0 duplicated=0 mismatched=0"), "{stdout}");
    drop((source, target));
}

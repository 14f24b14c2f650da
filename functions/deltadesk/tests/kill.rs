//! The real `deltadesk` binary killed with SIGKILL at seeded random moments while live agents work in the
//! source; restarted each time; the migration still ends with a clean verify (the oracle).

use std::process::{Command, Stdio};
use std::time::Duration;

use deltadesk_sim::zendesk::{LiveAgentConfig, ZendeskSim, ZendeskSimConfig};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_deltadesk"))
}

/// xorshift64*: a seeded sequence of kill delays, so a failing run can be replayed.
struct Seq(u64);

impl Seq {
    fn next_ms(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        lo + self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % (hi - lo)
    }
}

fn has_watermark(cfg: &std::path::Path) -> bool {
    let out = bin().arg("--config").arg(cfg).args(["status", "--json"]).output().expect("status");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["watermark"].is_string()
}

#[test]
fn sigkill_at_random_moments_then_restart_ends_with_a_clean_verify() {
    let seed: u64 = std::env::var("DELTADESK_KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_2026);
    let mut seq = Seq(seed);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let local = "127.0.0.1:0".parse().unwrap();
    let (source, target) = rt.block_on(async {
        let s = ZendeskSim::start(ZendeskSimConfig { tickets: 60, publication_lag: Duration::from_secs(1), max_seed_attachment_bytes: 128 * 1024, ..Default::default() }, local).await.unwrap();
        let t = ZendeskSim::start(ZendeskSimConfig { publication_lag: Duration::from_secs(1), latency: Duration::from_millis(5), ..ZendeskSimConfig::empty_target(900_000) }, local).await.unwrap();
        (s, t)
    });
    let agents = rt.block_on(async { source.start_live_agents(LiveAgentConfig { seed, actions_per_second: 5.0, max_attachment_bytes: 32 * 1024 }) });
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("deltadesk.toml");
    std::fs::write(
        &cfg,
        format!(
            "[migration]\nid = \"kill\"\n[source]\nkind = \"zendesk\"\nbase_url = \"{}\"\npublication_lag_secs = 1\n[target]\nkind = \"zendesk\"\nbase_url = \"{}\"\npublication_lag_secs = 1\n[engine]\nstate_dir = \"{}\"\noverlap_secs = 3\nvisibility_secs = 2\nlease_ttl_secs = 3\nworkers = 4\n",
            source.base_url(),
            target.base_url(),
            dir.path().join("state").display()
        ),
    )
    .unwrap();

    let mut kills = 0;
    for _ in 0..6 {
        let what = if has_watermark(&cfg) { "delta" } else { "full" };
        let mut child = bin().arg("--config").arg(&cfg).args(["migrate", what]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(seq.next_ms(150, 1200)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills >= 3, "only {kills} kills landed while a run was going (seed {seed})");
    rt.block_on(agents.stop());
    // Finish: resume whatever run is open, then a delta that sees every change.
    for _ in 0..2 {
        let what = if has_watermark(&cfg) { "delta" } else { "full" };
        let out = bin().arg("--config").arg(&cfg).args(["migrate", what]).output().unwrap();
        assert!(out.status.success() || out.status.code() == Some(3), "seed {seed}: {}", String::from_utf8_lossy(&out.stderr));
    }
    std::thread::sleep(Duration::from_millis(2200));
    let out = bin().arg("--config").arg(&cfg).args(["migrate", "delta"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "seed {seed}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let out = bin().arg("--config").arg(&cfg).arg("verify").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("verify: missing=0 duplicated=0 mismatched=0"), "seed {seed} after {kills} kills:\n{text}");
    assert_eq!(out.status.code(), Some(0));
    drop(rt);
}

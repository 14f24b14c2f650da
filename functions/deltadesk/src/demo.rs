//! `deltadesk demo` and `deltadesk simulate`: the whole promise on one machine — simulators, live agents,
//! a full migration, recurring deltas, a final delta and an automatic verify.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use deltadesk_core::window::RunKind;
use deltadesk_sim::zendesk::{LiveAgentConfig, ZendeskSim, ZendeskSimConfig};

use crate::commands::{print_run, print_verify, run_once};
use crate::config::{Config, EngineSection, MigrationSection};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Tickets seeded in the source.
    #[arg(long, default_value_t = 300)]
    tickets: usize,
    /// Delta runs while the agents keep working (a final delta follows after they stop).
    #[arg(long, default_value_t = 3)]
    deltas: usize,
    /// Seed of the data set and of the agents' actions.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Live agents' actions per second in the source.
    #[arg(long, default_value_t = 6.0)]
    agent_rate: f64,
    /// Seconds between delta runs.
    #[arg(long, default_value_t = 3)]
    delta_every: u64,
    /// Simulated publication lag of the source's change listing, in seconds (Zendesk's real one is 60;
    /// the demo compresses time so it finishes in about a minute).
    #[arg(long, default_value_t = 2)]
    lag: u64,
    /// Keep the state here instead of a temporary directory.
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    #[arg(long, default_value_t = 300)]
    tickets: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[arg(long, default_value = "127.0.0.1:8801")]
    source_addr: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:8802")]
    target_addr: SocketAddr,
    /// Live agents' actions per second in the source (0 = none).
    #[arg(long, default_value_t = 0.0)]
    agent_rate: f64,
    #[arg(long, default_value_t = 60)]
    lag: u64,
}

fn zendesk_connector(base_url: &str, lag: u64) -> anyhow::Result<deltadesk_connectors::registry::ConnectorConfig> {
    serde_json::from_value(serde_json::json!({ "kind": "zendesk", "base_url": base_url, "publication_lag_secs": lag }))
        .context("building the simulator connector config")
}

pub async fn demo(a: DemoArgs, json: bool) -> anyhow::Result<u8> {
    let lag = Duration::from_secs(a.lag);
    let local: SocketAddr = "127.0.0.1:0".parse()?;
    let source = ZendeskSim::start(ZendeskSimConfig { seed: a.seed, tickets: a.tickets, publication_lag: lag, ..Default::default() }, local).await?;
    let target = ZendeskSim::start(ZendeskSimConfig { publication_lag: lag, ..ZendeskSimConfig::empty_target(900_000) }, local).await?;
    let tmp;
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => {
            tmp = TempDir::new()?;
            tmp.0.clone()
        }
    };
    let cfg = Config {
        migration: MigrationSection { id: "demo".into() },
        source: zendesk_connector(&source.base_url(), a.lag)?,
        target: zendesk_connector(&target.base_url(), a.lag)?,
        engine: EngineSection { state_dir: dir.clone(), overlap_secs: (a.lag * 3).max(1), clock_skew_margin_secs: 1, visibility_secs: 10, ..Default::default() },
        mapping: Default::default(),
    };
    cfg.validate()?;
    let engine = crate::wiring::engine(&cfg)?;
    let rc = crate::wiring::runner_config(&cfg);
    say(json, &format!("source simulator {} ({} tickets, seed {}), target simulator {}, state in {}", source.base_url(), a.tickets, a.seed, target.base_url(), dir.display()));
    let agents = source.start_live_agents(LiveAgentConfig { seed: a.seed, actions_per_second: a.agent_rate, max_attachment_bytes: 256 * 1024 });
    say(json, &format!("live agents working in the source at {} actions/s", a.agent_rate));
    let mut worst = 0u8;
    let (code, report) = run_once(&engine, &dir, &rc, RunKind::Full, false, json).await?;
    worst = worst.max(code);
    if let Some(r) = &report {
        print_run(r, json)?;
    }
    for _ in 0..a.deltas {
        tokio::time::sleep(Duration::from_secs(a.delta_every)).await;
        let (code, report) = run_once(&engine, &dir, &rc, RunKind::Delta, false, json).await?;
        worst = worst.max(code);
        if let Some(r) = &report {
            print_run(r, json)?;
        }
    }
    let stats = agents.stop().await;
    say(json, &format!("agents stopped: {}", serde_json::to_string(&stats)?));
    // Everything the agents did must be published before the final delta can see it.
    tokio::time::sleep(lag + Duration::from_secs(2)).await;
    let (code, report) = run_once(&engine, &dir, &rc, RunKind::Delta, false, json).await?;
    worst = worst.max(code);
    if let Some(r) = &report {
        print_run(r, json)?;
    }
    let v = deltadesk_core::engine::verify::for_engine(&engine, 8).await?;
    print_verify(&v, json)?;
    source.shutdown();
    target.shutdown();
    if !v.is_clean() {
        return Ok(1);
    }
    Ok(if worst == 0 { 0 } else { worst })
}

fn say(json: bool, s: &str) {
    if !json {
        println!("{s}");
    }
}

pub async fn simulate(a: SimulateArgs) -> anyhow::Result<u8> {
    let lag = Duration::from_secs(a.lag);
    let source = ZendeskSim::start(ZendeskSimConfig { seed: a.seed, tickets: a.tickets, publication_lag: lag, ..Default::default() }, a.source_addr).await?;
    let target = ZendeskSim::start(ZendeskSimConfig { publication_lag: lag, ..ZendeskSimConfig::empty_target(900_000) }, a.target_addr).await?;
    let agents = (a.agent_rate > 0.0).then(|| source.start_live_agents(LiveAgentConfig { seed: a.seed, actions_per_second: a.agent_rate, max_attachment_bytes: 256 * 1024 }));
    println!("source: {}  target: {}", source.base_url(), target.base_url());
    println!("a config for them:\n\n[migration]\nid = \"sim\"\n[source]\nkind = \"zendesk\"\nbase_url = \"{}\"\npublication_lag_secs = {}\n[target]\nkind = \"zendesk\"\nbase_url = \"{}\"\n", source.base_url(), a.lag, target.base_url());
    println!("serving until interrupted (Ctrl-C)");
    tokio::signal::ctrl_c().await?;
    if let Some(a) = agents {
        a.stop().await;
    }
    source.shutdown();
    target.shutdown();
    Ok(0)
}

/// A temporary state directory removed at the end of the demo.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let p = std::env::temp_dir().join(format!("deltadesk-demo-{}-{}", std::process::id(), chrono::Utc::now().timestamp_millis()));
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

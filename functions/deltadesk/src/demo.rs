//! `deltadesk demo` and `deltadesk simulate`: the whole promise on one machine — simulators, live agents,
//! a full migration, recurring deltas, a final delta and an automatic verify.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use deltadesk_core::window::RunKind;
use deltadesk_sim::freshdesk::{FreshdeskSim, FreshdeskSimConfig};
use deltadesk_sim::zendesk::{LiveAgentConfig, LiveStats, ZendeskSim, ZendeskSimConfig};

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
    /// The help desk being left (a seeded simulator).
    #[arg(long, value_enum, default_value_t = Desk::Zendesk)]
    from: Desk,
    /// The help desk being moved to (an empty simulator).
    #[arg(long, value_enum, default_value_t = Desk::Zendesk)]
    to: Desk,
}

/// The help desks the demo can simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Desk {
    Zendesk,
    Freshdesk,
}

/// A running simulator of either kind.
enum Sim {
    Zendesk(ZendeskSim),
    Freshdesk(FreshdeskSim),
}

enum Agents {
    Zendesk(deltadesk_sim::zendesk::LiveAgents),
    Freshdesk(deltadesk_sim::freshdesk::FreshdeskLiveAgents),
}

impl Sim {
    async fn source(desk: Desk, seed: u64, tickets: usize, lag: Duration) -> anyhow::Result<Sim> {
        let local: SocketAddr = "127.0.0.1:0".parse()?;
        Ok(match desk {
            Desk::Zendesk => Sim::Zendesk(ZendeskSim::start(ZendeskSimConfig { seed, tickets, publication_lag: lag, ..Default::default() }, local).await?),
            Desk::Freshdesk => Sim::Freshdesk(FreshdeskSim::start(FreshdeskSimConfig { seed, tickets, ..Default::default() }, local).await?),
        })
    }

    async fn target(desk: Desk, lag: Duration) -> anyhow::Result<Sim> {
        let local: SocketAddr = "127.0.0.1:0".parse()?;
        Ok(match desk {
            Desk::Zendesk => Sim::Zendesk(ZendeskSim::start(ZendeskSimConfig { publication_lag: lag, ..ZendeskSimConfig::empty_target(900_000) }, local).await?),
            Desk::Freshdesk => Sim::Freshdesk(FreshdeskSim::start(FreshdeskSimConfig::empty_target(900_000), local).await?),
        })
    }

    fn base_url(&self) -> String {
        match self {
            Sim::Zendesk(s) => s.base_url(),
            Sim::Freshdesk(s) => s.base_url(),
        }
    }

    fn connector(&self, lag: u64) -> anyhow::Result<deltadesk_connectors::registry::ConnectorConfig> {
        let kind = match self {
            Sim::Zendesk(_) => "zendesk",
            Sim::Freshdesk(_) => "freshdesk",
        };
        serde_json::from_value(serde_json::json!({ "kind": kind, "base_url": self.base_url(), "publication_lag_secs": lag }))
            .context("building the simulator connector config")
    }

    fn start_live_agents(&self, cfg: LiveAgentConfig) -> Agents {
        match self {
            Sim::Zendesk(s) => Agents::Zendesk(s.start_live_agents(cfg)),
            Sim::Freshdesk(s) => Agents::Freshdesk(s.start_live_agents(cfg)),
        }
    }

    fn shutdown(&self) {
        match self {
            Sim::Zendesk(s) => s.shutdown(),
            Sim::Freshdesk(s) => s.shutdown(),
        }
    }
}

impl Agents {
    async fn stop(self) -> LiveStats {
        match self {
            Agents::Zendesk(a) => a.stop().await,
            Agents::Freshdesk(a) => a.stop().await,
        }
    }
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

pub async fn demo(a: DemoArgs, json: bool) -> anyhow::Result<u8> {
    let lag = Duration::from_secs(a.lag);
    let source = Sim::source(a.from, a.seed, a.tickets, lag).await?;
    let target = Sim::target(a.to, lag).await?;
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
        source: source.connector(a.lag)?,
        target: target.connector(a.lag)?,
        engine: EngineSection { state_dir: dir.clone(), overlap_secs: (a.lag * 3).max(1), clock_skew_margin_secs: 1, visibility_secs: 10, ..Default::default() },
        mapping: Default::default(),
    };
    cfg.validate()?;
    let engine = crate::wiring::engine(&cfg)?;
    let rc = crate::wiring::runner_config(&cfg);
    say(json, &format!("source: {:?} simulator {} ({} tickets, seed {}); target: {:?} simulator {}; state in {}", a.from, source.base_url(), a.tickets, a.seed, a.to, target.base_url(), dir.display()));
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

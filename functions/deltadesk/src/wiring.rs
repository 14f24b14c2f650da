//! Builds an embedded engine from the config: connectors from the registry, SQLite and file backends.


use std::time::Duration;

use anyhow::Context;
use deltadesk_connectors::registry::{build_source, build_target};
use deltadesk_core::engine::{Engine, EngineSettings};
use deltadesk_core::window::WindowRules;

use crate::config::Config;

pub fn engine(cfg: &Config) -> anyhow::Result<Engine> {
    let source = build_source(&cfg.source).context("source connector")?;
    let target = build_target(&cfg.target).context("target connector")?;
    let rules = WindowRules::new(source.publication_lag(), cfg.overlap()).context("config: engine.overlap_secs")?;
    let mut settings = EngineSettings::new(rules, &cfg.migration.id);
    settings.clock_skew_margin = Duration::from_secs(cfg.engine.clock_skew_margin_secs);
    settings.lease_ttl = Duration::from_secs(cfg.engine.lease_ttl_secs);
    settings.max_attempts = cfg.engine.max_attempts;
    settings.mapping = cfg.mapping.clone();
    let e = deltadesk_local::open_engine(&cfg.engine.state_dir, &cfg.migration.id, source, target, settings, cfg.engine.max_receives)
        .with_context(|| format!("opening the state directory {}", cfg.engine.state_dir.display()))?;
    Ok(e)
}

pub fn runner_config(cfg: &Config) -> deltadesk_core::engine::runner::RunnerConfig {
    deltadesk_core::engine::runner::RunnerConfig {
        workers: cfg.engine.workers,
        visibility: Duration::from_secs(cfg.engine.visibility_secs),
        ..Default::default()
    }
}


//! The operator's TOML config: the migration, its source and target connectors, and engine options.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use deltadesk_connectors::registry::ConnectorConfig;
use serde::{Deserialize, Serialize};

/// `deltadesk.toml`. Credentials are never written here: connectors name the environment variable that holds them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub migration: MigrationSection,
    /// The help desk being left. `kind` picks the connector (`deltadesk connectors` lists them).
    pub source: ConnectorConfig,
    /// The help desk being moved to.
    pub target: ConnectorConfig,
    #[serde(default)]
    pub engine: EngineSection,
    /// How source values are named in the target: statuses, priorities, types, groups, organizations,
    /// users (by email), custom fields (by title) and drop-down values. Empty = unchanged.
    #[serde(default)]
    pub mapping: deltadesk_core::engine::mapping::Mapping,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationSection {
    /// Names the migration; stored on every target ticket's source reference (`dd:{id}:{source id}`).
    pub id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSection {
    /// Where the embedded state (SQLite), queue (SQLite) and staged blobs (files) live.
    pub state_dir: PathBuf,
    /// Concurrent workers (each handles one message at a time).
    pub workers: usize,
    /// How far before the watermark each delta starts re-reading; at least the source's publication lag.
    pub overlap_secs: u64,
    /// Snapshots read within this margin of their update second are re-read when listed again.
    pub clock_skew_margin_secs: u64,
    /// How long a worker may hold a ticket before another may take over.
    pub lease_ttl_secs: u64,
    /// Deliveries before a ticket's transient error is recorded as a failure (and retried next run).
    pub max_attempts: u32,
    /// Queue visibility timeout: how long a message stays hidden while a worker handles it.
    pub visibility_secs: u64,
    /// Deliveries after which a message moves to the dead-letter queue.
    pub max_receives: u32,
}

impl Default for EngineSection {
    fn default() -> Self {
        EngineSection {
            state_dir: PathBuf::from(".deltadesk"),
            workers: 8,
            overlap_secs: 300,
            clock_skew_margin_secs: 2,
            lease_ttl_secs: 120,
            max_attempts: 5,
            visibility_secs: 30,
            max_receives: 10,
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
        let cfg: Config = toml::from_str(&text).with_context(|| format!("config {} is invalid", path.display()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        let id = &self.migration.id;
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            bail!("config: migration.id {id:?} must be non-empty and use only letters, digits, '-' and '_'");
        }
        if self.engine.workers == 0 || self.engine.workers > 256 {
            bail!("config: engine.workers must be between 1 and 256 (got {})", self.engine.workers);
        }
        if self.engine.max_attempts == 0 || self.engine.max_receives < self.engine.max_attempts {
            bail!("config: engine.max_receives ({}) must be at least engine.max_attempts ({}), and both above 0", self.engine.max_receives, self.engine.max_attempts);
        }
        if self.engine.visibility_secs == 0 {
            bail!("config: engine.visibility_secs must be above 0");
        }
        Ok(())
    }

    pub fn overlap(&self) -> Duration {
        Duration::from_secs(self.engine.overlap_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[migration]
id = "acme"
[source]
kind = "zendesk"
base_url = "https://acme.zendesk.com"
email = "admin@acme.test"
token_env = "ACME_SOURCE_TOKEN"
[target]
kind = "zendesk"
base_url = "https://acme-new.zendesk.com"
[engine]
workers = 4
[mapping.groups]
map = { "Tier 1" = "Support" }
fallback = "Triage"
[mapping.custom_field_values.Product]
map = { widget_v1 = "widget" }
"#;

    #[test]
    fn a_documented_config_parses_with_defaults() {
        let c: Config = toml::from_str(GOOD).unwrap();
        c.validate().unwrap();
        assert_eq!(c.engine.workers, 4);
        assert_eq!(c.engine.overlap_secs, 300);
        assert_eq!(c.mapping.groups.map["Tier 1"], "Support");
        assert_eq!(c.mapping.groups.fallback.as_deref(), Some("Triage"));
        assert_eq!(c.mapping.custom_field_values["Product"].map["widget_v1"], "widget");
    }

    #[test]
    fn an_unknown_connector_is_named_in_the_error() {
        let bad = GOOD.replacen("kind = \"zendesk\"", "kind = \"helpscout\"", 1);
        let e = toml::from_str::<Config>(&bad).unwrap_err().to_string();
        assert!(e.contains("helpscout"), "{e}");
    }

    #[test]
    fn a_bad_migration_id_is_refused() {
        let bad = GOOD.replace("id = \"acme\"", "id = \"acme corp\"");
        let c: Config = toml::from_str(&bad).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("migration.id"));
    }

    #[test]
    fn an_unknown_engine_option_is_refused() {
        let bad = GOOD.replace("workers = 4", "wokers = 4");
        let e = toml::from_str::<Config>(&bad).unwrap_err().to_string();
        assert!(e.contains("wokers"), "{e}");
    }
}

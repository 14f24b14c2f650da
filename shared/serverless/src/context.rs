//! The backends a serverless deployment runs on, and the per-migration engines built over them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deltadesk_connectors::registry::{build_source_with, build_target_with, ConfigError};
use deltadesk_core::engine::{Clock, Engine, EngineSettings, SystemClock};
use deltadesk_core::ports::{BlobStore, Queue, StateStore};
use deltadesk_core::window::WindowRules;

use crate::registry::{self, RegistryError};

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {name} unavailable: {source}")]
    Unavailable {
        name: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("secret {name} is not a JSON object of strings")]
    Malformed { name: String },
}

/// Where a migration's credentials live: Secrets Manager on AWS (one secret per migration, a JSON object
/// keyed by the connectors' `token_env` names). A secret that does not exist reads as empty.
#[async_trait]
pub trait SecretSource: Send + Sync {
    async fn load(&self, name: &str) -> Result<HashMap<String, String>, SecretError>;
}

/// Secrets given up front (tests, or a deployment that injects them another way).
pub struct StaticSecrets(pub HashMap<String, HashMap<String, String>>);

#[async_trait]
impl SecretSource for StaticSecrets {
    async fn load(&self, name: &str) -> Result<HashMap<String, String>, SecretError> {
        Ok(self.0.get(name).cloned().unwrap_or_default())
    }
}

/// Everything the functions share, whatever the technology behind it.
#[derive(Clone)]
pub struct Backends {
    pub state: Arc<dyn StateStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub fetch_queue: Arc<dyn Queue>,
    pub write_queue: Arc<dyn Queue>,
    pub secrets: Arc<dyn SecretSource>,
    /// Prefix of every migration's default secret name (`deltadesk/`).
    pub secret_prefix: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("migration {migration}: {source}")]
    Connector {
        migration: String,
        #[source]
        source: ConfigError,
    },
    #[error("migration {migration}: {cause}")]
    Invalid { migration: String, cause: String },
}

/// The backends and a cache of engines, one per migration, kept for the life of a warm Lambda container.
pub struct Context {
    pub backends: Backends,
    pub clock: Arc<dyn Clock>,
    engines: tokio::sync::Mutex<HashMap<String, Engine>>,
    instance: String,
}

impl Context {
    pub fn new(backends: Backends) -> Self {
        Context {
            backends,
            clock: Arc::new(SystemClock),
            engines: tokio::sync::Mutex::new(HashMap::new()),
            instance: format!("lambda-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
        }
    }

    /// The engine of `migration`, built on first use from its definition and its secret.
    pub async fn engine(&self, migration: &str) -> Result<Engine, ContextError> {
        if let Some(e) = self.engines.lock().await.get(migration) {
            return Ok(e.clone());
        }
        let def = registry::get(self.backends.state.as_ref(), migration).await?;
        let secrets = self.backends.secrets.load(&def.secret_name(&self.backends.secret_prefix)).await?;
        let source = build_source_with(&def.source, &secrets).map_err(|source| ContextError::Connector { migration: migration.into(), source })?;
        let target = build_target_with(&def.target, &secrets).map_err(|source| ContextError::Connector { migration: migration.into(), source })?;
        let rules = WindowRules::new(source.publication_lag(), Duration::from_secs(def.overlap_secs))
            .map_err(|e| ContextError::Invalid { migration: migration.into(), cause: e.to_string() })?;
        let mut settings = EngineSettings::new(rules, migration);
        settings.clock_skew_margin = Duration::from_secs(def.clock_skew_margin_secs);
        settings.lease_ttl = Duration::from_secs(def.lease_ttl_secs);
        settings.max_attempts = def.max_attempts;
        settings.mapping = def.mapping.clone();
        let engine = Engine {
            migration: migration.to_string(),
            source,
            target,
            state: self.backends.state.clone(),
            blobs: self.backends.blobs.clone(),
            fetch_queue: self.backends.fetch_queue.clone(),
            write_queue: self.backends.write_queue.clone(),
            settings,
            clock: self.clock.clone(),
            instance: self.instance.clone(),
        };
        self.engines.lock().await.insert(migration.to_string(), engine.clone());
        Ok(engine)
    }
}

//! Migration definitions, kept in the state store so every function sees the same set.

use chrono::{DateTime, Utc};
use deltadesk_connectors::registry::ConnectorConfig;
use deltadesk_core::engine::records::{decode, encode};
use deltadesk_core::ports::state::{Condition, StateError, StateStore, Write};
use serde::{Deserialize, Serialize};

const PK: &str = "migrations";

/// One migration as the API creates it. Credentials are not here: `secret` names the Secrets Manager
/// secret (a JSON object) whose keys are the connectors' `token_env` names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationDef {
    pub id: String,
    pub source: ConnectorConfig,
    pub target: ConnectorConfig,
    /// Secrets Manager secret name; defaults to `{prefix}{id}` (prefix `deltadesk/`).
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default = "default_overlap")]
    pub overlap_secs: u64,
    #[serde(default = "default_margin")]
    pub clock_skew_margin_secs: u64,
    #[serde(default = "default_lease")]
    pub lease_ttl_secs: u64,
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// How source values are named in the target (see the README's mapping reference).
    #[serde(default)]
    pub mapping: deltadesk_core::engine::mapping::Mapping,
    /// Recurring deltas run only for enabled migrations.
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
}

fn default_overlap() -> u64 {
    300
}
fn default_margin() -> u64 {
    2
}
fn default_lease() -> u64 {
    600
}
fn default_attempts() -> u32 {
    5
}
fn yes() -> bool {
    true
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid migration: {0}")]
    Invalid(String),
    #[error("migration {0} already exists")]
    Exists(String),
    #[error("no migration {0}")]
    NotFound(String),
    #[error(transparent)]
    State(#[from] StateError),
}

impl MigrationDef {
    pub fn validate(&self) -> Result<(), RegistryError> {
        validate_id(&self.id)?;
        self.source.validate().map_err(|e| RegistryError::Invalid(format!("source: {e}")))?;
        self.target.validate().map_err(|e| RegistryError::Invalid(format!("target: {e}")))?;
        if self.max_attempts == 0 {
            return Err(RegistryError::Invalid("max_attempts must be above 0".into()));
        }
        Ok(())
    }

    pub fn secret_name(&self, prefix: &str) -> String {
        self.secret.clone().unwrap_or_else(|| format!("{prefix}{}", self.id))
    }
}

pub fn validate_id(id: &str) -> Result<(), RegistryError> {
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(RegistryError::Invalid(format!("migration id {id:?} must be 1-64 letters, digits, '-' or '_'")));
    }
    Ok(())
}

/// Stores a new migration; refuses an id already taken.
pub async fn create(state: &dyn StateStore, mut def: MigrationDef, now: DateTime<Utc>) -> Result<MigrationDef, RegistryError> {
    def.validate()?;
    def.created_at = Some(now);
    match state.transact(vec![Write::put(PK, &def.id, encode(&def), Condition::NotExists)]).await {
        Ok(()) => Ok(def),
        Err(StateError::ConditionFailed { .. }) => Err(RegistryError::Exists(def.id)),
        Err(e) => Err(e.into()),
    }
}

pub async fn get(state: &dyn StateStore, id: &str) -> Result<MigrationDef, RegistryError> {
    validate_id(id)?;
    match state.get(PK, id).await? {
        Some(item) => Ok(decode(&item)?),
        None => Err(RegistryError::NotFound(id.to_string())),
    }
}

pub async fn list(state: &dyn StateStore) -> Result<Vec<MigrationDef>, RegistryError> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = state.query(PK, "", after.as_deref(), 100).await?;
        if page.is_empty() {
            break;
        }
        after = page.last().map(|i| i.sk.clone());
        for item in &page {
            out.push(decode(item)?);
        }
    }
    Ok(out)
}

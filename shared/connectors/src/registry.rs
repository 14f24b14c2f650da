//! The connector registry: which connectors exist, what they can do, and how to build them from config.

use std::sync::Arc;

use deltadesk_core::ports::{HelpDeskSource, HelpDeskTarget};
use serde::{Deserialize, Serialize};

/// A connector's configuration, tagged by `kind` (`{"kind": "zendesk", "base_url": …}` / `kind = "zendesk"`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ConnectorConfig {
    /// Zendesk Support (or the Zendesk simulator).
    Zendesk(crate::zendesk::ZendeskConfig),
    /// Freshdesk API v2 (or the Freshdesk simulator).
    Freshdesk(crate::freshdesk::FreshdeskConfig),
    /// Request Tracker 5 over REST2 (source only).
    Rt(crate::rt::RtConfig),
}

impl ConnectorConfig {
    /// The connector kind, as in [`ConnectorInfo::kind`].
    pub fn kind(&self) -> &'static str {
        match self {
            ConnectorConfig::Zendesk(_) => crate::zendesk::KIND,
            ConnectorConfig::Freshdesk(_) => crate::freshdesk::KIND,
            ConnectorConfig::Rt(_) => crate::rt::KIND,
        }
    }

    /// Checks the configuration without reading secrets or touching the network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            ConnectorConfig::Zendesk(c) => c.validate(),
            ConnectorConfig::Freshdesk(c) => c.validate(),
            ConnectorConfig::Rt(c) => c.validate(),
        }
    }
}

/// What the registry knows about one connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorInfo {
    pub kind: &'static str,
    pub description: &'static str,
    pub can_source: bool,
    pub can_target: bool,
}

/// The one registry list.
pub fn connectors() -> Vec<ConnectorInfo> {
    vec![
        ConnectorInfo {
            kind: crate::zendesk::KIND,
            description: "Zendesk Support: incremental ticket export as source; ticket import, updates and uploads as target",
            can_source: true,
            can_target: true,
        },
        ConnectorInfo {
            kind: crate::freshdesk::KIND,
            description: "Freshdesk API v2: ticket list by updated_since (live, deleted and spam passes) as source; tickets and notes (multipart attachments) as target",
            can_source: true,
            can_target: true,
        },
        ConnectorInfo {
            kind: crate::rt::KIND,
            description: "Request Tracker 5 (REST2): TicketSQL by LastUpdated, ticket history and attachments; source only",
            can_source: true,
            can_target: false,
        },
    ]
}

/// Builds a source connector (validates the config and reads its secret from the environment).
pub fn build_source(cfg: &ConnectorConfig) -> Result<Arc<dyn HelpDeskSource>, ConfigError> {
    build_source_with(cfg, &EnvSecrets)
}

/// Builds a source whose secrets come from `secrets` (a migration's Secrets Manager secret on AWS).
pub fn build_source_with(cfg: &ConnectorConfig, secrets: &dyn Secrets) -> Result<Arc<dyn HelpDeskSource>, ConfigError> {
    match cfg {
        ConnectorConfig::Zendesk(c) => Ok(Arc::new(crate::zendesk::Zendesk::with_secrets(c.clone(), secrets)?)),
        ConnectorConfig::Freshdesk(c) => Ok(Arc::new(crate::freshdesk::Freshdesk::with_secrets(c.clone(), secrets)?)),
        ConnectorConfig::Rt(c) => Ok(Arc::new(crate::rt::Rt::with_secrets(c.clone(), secrets)?)),
    }
}

/// Where connectors look up secrets by the names their config gives (`token_env`): the process
/// environment on one machine, the migration's Secrets Manager secret (a JSON object) on AWS.
pub trait Secrets: Send + Sync {
    fn secret(&self, name: &str) -> Option<String>;
}

/// Secrets from environment variables.
pub struct EnvSecrets;

impl Secrets for EnvSecrets {
    fn secret(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Secrets for std::collections::HashMap<String, String> {
    fn secret(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Builds a target connector (validates the config and reads its secret from the environment).
pub fn build_target(cfg: &ConnectorConfig) -> Result<Arc<dyn HelpDeskTarget>, ConfigError> {
    build_target_with(cfg, &EnvSecrets)
}

pub fn build_target_with(cfg: &ConnectorConfig, secrets: &dyn Secrets) -> Result<Arc<dyn HelpDeskTarget>, ConfigError> {
    match cfg {
        ConnectorConfig::Zendesk(c) => Ok(Arc::new(crate::zendesk::Zendesk::with_secrets(c.clone(), secrets)?)),
        ConnectorConfig::Freshdesk(c) => Ok(Arc::new(crate::freshdesk::Freshdesk::with_secrets(c.clone(), secrets)?)),
        ConnectorConfig::Rt(_) => Err(ConfigError::Invalid {
            field: "kind".into(),
            cause: "Request Tracker (rt) is source-only: it cannot be a migration target".into(),
        }),
    }
}

/// A connector configuration that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The environment variable that should hold a secret is unset or empty.
    #[error("{field}: environment variable {env_var} is not set (it should hold the secret)")]
    MissingSecret { field: String, env_var: String },
    #[error("invalid {field}: {cause}")]
    Invalid { field: String, cause: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_the_given_lookup_by_the_configured_name() {
        let cfg: ConnectorConfig = serde_json::from_str(
            r#"{"kind":"zendesk","base_url":"http://127.0.0.1:9999","email":"a@b.c","token_env":"SRC_TOKEN"}"#,
        )
        .unwrap();
        let mut map = std::collections::HashMap::new();
        assert!(matches!(build_source_with(&cfg, &map), Err(ConfigError::MissingSecret { env_var, .. }) if env_var == "SRC_TOKEN"));
        map.insert("SRC_TOKEN".to_string(), "s3cret".to_string());
        assert!(build_source_with(&cfg, &map).is_ok());
        assert!(build_target_with(&cfg, &map).is_ok());
    }

    #[test]
    fn registry_lists_zendesk_as_source_and_target() {
        let all = connectors();
        let z = all.iter().find(|c| c.kind == "zendesk").unwrap();
        assert!(z.can_source && z.can_target);
    }

    #[test]
    fn config_is_tagged_by_kind_and_fills_defaults() {
        let cfg: ConnectorConfig =
            serde_json::from_str(r#"{"kind":"zendesk","base_url":"http://127.0.0.1:9999"}"#)
                .unwrap();
        assert_eq!(cfg.kind(), "zendesk");
        let ConnectorConfig::Zendesk(z) = &cfg else { panic!("expected a zendesk config") };
        assert_eq!(z.per_page, 1000);
        assert_eq!(z.publication_lag_secs, 60);
        assert!(z.verify_uploads);
        let back = serde_json::to_value(&cfg).unwrap();
        assert_eq!(back["kind"], "zendesk");
    }

    #[test]
    fn unknown_kind_and_unknown_fields_are_refused() {
        assert!(
            serde_json::from_str::<ConnectorConfig>(r#"{"kind":"freshdesk-x","base_url":"http://x"}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<ConnectorConfig>(
            r#"{"kind":"zendesk","base_url":"http://x","per_pge":5}"#
        )
        .is_err());
    }

    #[test]
    fn rt_is_listed_as_source_only_and_refused_as_target() {
        let all = connectors();
        let rt = all.iter().find(|c| c.kind == "rt").unwrap();
        assert!(rt.can_source && !rt.can_target);
        let cfg: ConnectorConfig = serde_json::from_str(
            r#"{"kind":"rt","base_url":"https://rt.acme.com","token_env":"RT_TOKEN"}"#,
        )
        .unwrap();
        assert_eq!(cfg.kind(), "rt");
        cfg.validate().unwrap();
        let mut map = std::collections::HashMap::new();
        assert!(matches!(build_source_with(&cfg, &map), Err(ConfigError::MissingSecret { env_var, .. }) if env_var == "RT_TOKEN"));
        map.insert("RT_TOKEN".to_string(), "1-14-abc".to_string());
        let s = build_source_with(&cfg, &map).unwrap();
        assert_eq!((s.kind(), s.publication_lag()), ("rt", std::time::Duration::from_secs(1)));
        match build_target_with(&cfg, &map) {
            Err(ConfigError::Invalid { field, cause }) => {
                assert_eq!(field, "kind");
                assert!(cause.contains("source-only"), "{cause}");
            }
            other => panic!("expected Invalid, got {:?}", other.err()),
        }
        assert!(serde_json::from_str::<ConnectorConfig>(r#"{"kind":"rt","base_url":"https://x","email":"a@b.c"}"#).is_err());
    }

    #[test]
    fn build_without_secret_env_is_missing_secret() {
        let cfg: ConnectorConfig = serde_json::from_str(
            r#"{"kind":"zendesk","base_url":"http://127.0.0.1:9999","email":"a@b.c","token_env":"DELTADESK_TEST_REGISTRY_UNSET_TOKEN"}"#,
        )
        .unwrap();
        match build_source(&cfg) {
            Err(ConfigError::MissingSecret { env_var, .. }) => {
                assert_eq!(env_var, "DELTADESK_TEST_REGISTRY_UNSET_TOKEN")
            }
            other => panic!("expected MissingSecret, got {:?}", other.err()),
        }
        assert!(matches!(
            build_target(&cfg),
            Err(ConfigError::MissingSecret { .. })
        ));
    }

    #[test]
    fn build_without_credentials_works() {
        let cfg: ConnectorConfig =
            serde_json::from_str(r#"{"kind":"zendesk","base_url":"http://127.0.0.1:9999"}"#)
                .unwrap();
        let s = build_source(&cfg).unwrap();
        assert_eq!(s.kind(), "zendesk");
        assert_eq!(s.publication_lag(), std::time::Duration::from_secs(60));
        let t = build_target(&cfg).unwrap();
        assert_eq!(t.max_attachment_bytes(), 50 * 1024 * 1024);
    }
}

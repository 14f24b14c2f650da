//! The Zendesk connector's configuration. Secrets are never part of it: only the *name* of the
//! environment variable that holds the API token.

use serde::{Deserialize, Serialize};

use crate::registry::ConfigError;

/// Largest export page Zendesk serves.
pub const MAX_PER_PAGE: u32 = 1000;

/// Configuration of one Zendesk account (source or target).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ZendeskConfig {
    /// Root URL of the account, e.g. `https://acme.zendesk.com`, or the simulator's URL
    /// (`http://127.0.0.1:8080`). `/api/v2/...` is appended to it.
    pub base_url: String,
    /// Agent email for basic auth (`{email}/token:{token}`); used only together with `token_env`.
    #[serde(default)]
    pub email: Option<String>,
    /// NAME of the environment variable holding the API token (never the token itself).
    /// Without it (and `email`) requests are sent unauthenticated, which only a simulator accepts.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Seconds after a change until the incremental export is guaranteed to list it (Zendesk: 60; 0 allowed).
    #[serde(default = "default_lag")]
    pub publication_lag_secs: u64,
    /// Incremental export page size, 1..=1000 (default 1000).
    #[serde(default = "default_per_page")]
    pub per_page: u32,
    /// Timeout of each API request, in seconds (attachment streams use it as a read timeout instead).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Retries of one request after 429, 5xx, timeouts or connection errors before giving up (retryable error).
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// Cap on the `Retry-After` wait honoured inside one request, in seconds.
    #[serde(default = "default_max_retry_after")]
    pub max_retry_after_secs: u64,
    /// Pacing: at most this many requests per minute from this connector — the plan's limit (Team 200,
    /// Professional 400, Enterprise 700, High Volume add-on 2,500), or a share of it when other
    /// integrations use the account too. None = no steady pacing; a 429 still pauses every request of the
    /// connector until its `Retry-After` has passed.
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// Largest attachment uploaded to this account as a target, in bytes (default 50 MiB); larger ones are
    /// refused before sending.
    #[serde(default = "default_max_attachment")]
    pub max_attachment_bytes: u64,
    /// Download every uploaded attachment back and hash what the target serves (default true, +1 request per
    /// attachment); otherwise the size the upload answer reports is checked against the bytes sent and the
    /// hash of the bytes sent is reported (`verify` still hashes what the target serves).
    #[serde(default = "default_true")]
    pub verify_uploads: bool,
    /// As a target: how long a new ticket waits for others to join it in one `imports/tickets/create_many`
    /// job (up to 100 tickets), in milliseconds (default 50). Concurrent workers' creates share one request
    /// and one job poll instead of one import each; 0 imports every ticket on its own (`imports/tickets`).
    #[serde(default = "default_linger")]
    pub create_batch_linger_ms: u64,
}

fn default_lag() -> u64 {
    60
}
fn default_per_page() -> u32 {
    MAX_PER_PAGE
}
fn default_timeout() -> u64 {
    30
}
fn default_retries() -> u32 {
    5
}
fn default_max_retry_after() -> u64 {
    120
}
fn default_max_attachment() -> u64 {
    50 * 1024 * 1024
}
fn default_true() -> bool {
    true
}
fn default_linger() -> u64 {
    50
}

/// Longest linger accepted: a create waits this long at most before its batch is sent.
pub const MAX_BATCH_LINGER_MS: u64 = 5_000;

impl ZendeskConfig {
    /// A configuration with every default, unauthenticated (set `email`/`token_env` for a real account).
    pub fn new(base_url: impl Into<String>) -> Self {
        ZendeskConfig {
            base_url: base_url.into(),
            email: None,
            token_env: None,
            publication_lag_secs: default_lag(),
            per_page: default_per_page(),
            timeout_secs: default_timeout(),
            max_retries: default_retries(),
            max_retry_after_secs: default_max_retry_after(),
            requests_per_minute: None,
            max_attachment_bytes: default_max_attachment(),
            verify_uploads: true,
            create_batch_linger_ms: default_linger(),
        }
    }

    /// Checks the values without reading the environment or touching the network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.parsed_base_url()?;
        let invalid = |field: &str, cause: &str| ConfigError::Invalid {
            field: field.into(),
            cause: cause.into(),
        };
        if let Some(e) = &self.email {
            if e.trim().is_empty() || !e.contains('@') {
                return Err(invalid("email", "must be an email address"));
            }
        }
        if let Some(v) = &self.token_env {
            if v.trim().is_empty() || v.contains('=') || v.contains('\0') {
                return Err(invalid(
                    "token_env",
                    "must be the name of an environment variable",
                ));
            }
            if self.email.is_none() {
                return Err(invalid(
                    "email",
                    "is required when token_env is set (basic auth is {email}/token:{token})",
                ));
            }
        }
        if self.requests_per_minute == Some(0) {
            return Err(invalid("requests_per_minute", "must be positive (leave it out for no pacing)"));
        }
        if self.per_page == 0 || self.per_page > MAX_PER_PAGE {
            return Err(invalid(
                "per_page",
                &format!(
                    "must be between 1 and {MAX_PER_PAGE}, got {}",
                    self.per_page
                ),
            ));
        }
        if self.timeout_secs == 0 {
            return Err(invalid("timeout_secs", "must be at least 1"));
        }
        if self.max_retries > 20 {
            return Err(invalid("max_retries", "must be at most 20"));
        }
        if self.max_attachment_bytes == 0 {
            return Err(invalid("max_attachment_bytes", "must be positive"));
        }
        if self.create_batch_linger_ms > MAX_BATCH_LINGER_MS {
            return Err(invalid("create_batch_linger_ms", &format!("must be at most {MAX_BATCH_LINGER_MS} (0 = one import per ticket)")));
        }
        Ok(())
    }

    /// `base_url` parsed, without a trailing slash, query or fragment.
    pub(crate) fn parsed_base_url(&self) -> Result<reqwest::Url, ConfigError> {
        let invalid = |cause: String| ConfigError::Invalid {
            field: "base_url".into(),
            cause,
        };
        let raw = self.base_url.trim();
        if raw.is_empty() {
            return Err(invalid("is empty".into()));
        }
        let url = reqwest::Url::parse(raw).map_err(|e| invalid(format!("not a URL ({e})")))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(invalid(format!(
                "scheme must be http or https, got {}",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("has no host".into()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("must not have a query or fragment".into()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "must not carry credentials (use email and token_env)".into(),
            ));
        }
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(e: ConfigError) -> String {
        match e {
            ConfigError::Invalid { field, .. } => field,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn defaults_validate() {
        ZendeskConfig::new("https://acme.zendesk.com")
            .validate()
            .unwrap();
        ZendeskConfig::new("http://127.0.0.1:8080/")
            .validate()
            .unwrap();
        let c = ZendeskConfig {
            publication_lag_secs: 0,
            ..ZendeskConfig::new("http://localhost:1")
        };
        c.validate().unwrap();
    }

    #[test]
    fn bad_base_urls_are_refused() {
        for u in [
            "",
            "   ",
            "acme.zendesk.com",
            "ftp://acme.zendesk.com",
            "https://acme.zendesk.com/?x=1",
            "https://u:p@acme.zendesk.com",
        ] {
            let e = ZendeskConfig::new(u).validate().unwrap_err();
            assert_eq!(field_of(e), "base_url", "{u}");
        }
    }

    #[test]
    fn per_page_must_be_in_range() {
        for p in [0, 1001] {
            let c = ZendeskConfig {
                per_page: p,
                ..ZendeskConfig::new("https://acme.zendesk.com")
            };
            assert_eq!(field_of(c.validate().unwrap_err()), "per_page");
        }
        for p in [1, 1000] {
            ZendeskConfig {
                per_page: p,
                ..ZendeskConfig::new("https://acme.zendesk.com")
            }
            .validate()
            .unwrap();
        }
    }

    #[test]
    fn other_bad_values_are_refused() {
        let base = ZendeskConfig::new("https://acme.zendesk.com");
        let c = ZendeskConfig {
            timeout_secs: 0,
            ..base.clone()
        };
        assert_eq!(field_of(c.validate().unwrap_err()), "timeout_secs");
        let c = ZendeskConfig {
            token_env: Some("ZD_TOKEN".into()),
            ..base.clone()
        };
        assert_eq!(field_of(c.validate().unwrap_err()), "email");
        let c = ZendeskConfig {
            email: Some("a@b.c".into()),
            token_env: Some("".into()),
            ..base.clone()
        };
        assert_eq!(field_of(c.validate().unwrap_err()), "token_env");
        let c = ZendeskConfig {
            max_attachment_bytes: 0,
            ..base
        };
        assert_eq!(field_of(c.validate().unwrap_err()), "max_attachment_bytes");
        let c = ZendeskConfig { create_batch_linger_ms: MAX_BATCH_LINGER_MS + 1, ..ZendeskConfig::new("https://acme.zendesk.com") };
        assert_eq!(field_of(c.validate().unwrap_err()), "create_batch_linger_ms");
    }

    #[test]
    fn toml_style_config_round_trips() {
        let c: ZendeskConfig = serde_json::from_str(
            r#"{"base_url":"https://acme.zendesk.com","email":"ops@acme.com","token_env":"ZD_TOKEN","per_page":500,"verify_uploads":false}"#,
        )
        .unwrap();
        assert_eq!(c.per_page, 500);
        assert!(!c.verify_uploads);
        assert_eq!(c.max_retries, 5);
        c.validate().unwrap();
        let again: ZendeskConfig =
            serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(again, c);
    }
}

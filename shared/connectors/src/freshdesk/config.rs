//! The Freshdesk connector's configuration. Secrets are never part of it: only the *name* of the
//! environment variable (or secret key) that holds the API key.

use serde::{Deserialize, Serialize};

use crate::registry::ConfigError;

/// Largest page Freshdesk serves (`per_page`).
pub const MAX_PER_PAGE: u32 = 100;
/// Highest page number Freshdesk serves for one ticket-list query.
pub const MAX_PAGE: u32 = 300;
/// Freshdesk's total attachment size per ticket or conversation (20 MB), as bytes.
pub const DEFAULT_MAX_ATTACHMENT_BYTES: u64 = 20 * 1024 * 1024;

/// Configuration of one Freshdesk account (source or target).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FreshdeskConfig {
    /// Root URL of the account, e.g. `https://acme.freshdesk.com`, or the simulator's URL. `/api/v2/...` is
    /// appended to it.
    pub base_url: String,
    /// NAME of the environment variable holding the API key (never the key itself). Freshdesk's auth is Basic
    /// with the API key as user name and `X` as password. Without it requests are sent unauthenticated, which
    /// only a simulator accepts.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Seconds after a change until the ticket list is guaranteed to show it. Freshdesk lists changes at once;
    /// the default 1 absorbs the second rounding of `updated_at`.
    #[serde(default = "default_lag")]
    pub publication_lag_secs: u64,
    /// Ticket list and conversation page size, 1..=100 (default 100).
    #[serde(default = "default_per_page")]
    pub per_page: u32,
    /// Highest page of one ticket-list query before the listing restarts from the last `updated_at` seen
    /// (Freshdesk: 300). Lower only to match a simulator that lowers its ceiling.
    #[serde(default = "default_max_page")]
    pub max_page: u32,
    /// Optional pacing: at most this many requests per minute from this connector (e.g. a share of the plan's
    /// limit: Growth 200, Pro 400, Enterprise 700), so 429s stay rare. None = no pacing (429s are still honoured).
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// Largest single attachment sent to this account as a target, in bytes (default 20 MiB, Freshdesk's limit
    /// for all attachments of one ticket or conversation); larger ones are reported, not sent.
    #[serde(default = "default_max_attachment")]
    pub max_attachment_bytes: u64,
    /// How far back `find_by_source_ref` scans recently updated tickets, in seconds, besides the search API
    /// (whose index lags by minutes): an orphan of an interrupted create is always recent. Default 900.
    #[serde(default = "default_ref_scan")]
    pub ref_scan_secs: u64,
    /// Timeout of each API request, in seconds (attachment streams use it as a read timeout instead).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Retries of one request after 429, 5xx, timeouts or connection errors before giving up (retryable error).
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// Cap on the `Retry-After` wait honoured inside one request, in seconds.
    #[serde(default = "default_max_retry_after")]
    pub max_retry_after_secs: u64,
}

fn default_lag() -> u64 {
    1
}
fn default_per_page() -> u32 {
    MAX_PER_PAGE
}
fn default_max_page() -> u32 {
    MAX_PAGE
}
fn default_max_attachment() -> u64 {
    DEFAULT_MAX_ATTACHMENT_BYTES
}
fn default_ref_scan() -> u64 {
    900
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

impl FreshdeskConfig {
    /// A configuration with every default, unauthenticated (set `api_key_env` for a real account).
    pub fn new(base_url: impl Into<String>) -> Self {
        FreshdeskConfig {
            base_url: base_url.into(),
            api_key_env: None,
            publication_lag_secs: default_lag(),
            per_page: default_per_page(),
            max_page: default_max_page(),
            requests_per_minute: None,
            max_attachment_bytes: default_max_attachment(),
            ref_scan_secs: default_ref_scan(),
            timeout_secs: default_timeout(),
            max_retries: default_retries(),
            max_retry_after_secs: default_max_retry_after(),
        }
    }

    /// Checks the values without reading the environment or touching the network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.parsed_base_url()?;
        let invalid = |field: &str, cause: String| ConfigError::Invalid { field: field.into(), cause };
        if let Some(v) = &self.api_key_env {
            if v.trim().is_empty() || v.contains('=') || v.contains('\0') {
                return Err(invalid("api_key_env", "must be the name of an environment variable".into()));
            }
        }
        if self.per_page == 0 || self.per_page > MAX_PER_PAGE {
            return Err(invalid("per_page", format!("must be between 1 and {MAX_PER_PAGE}, got {}", self.per_page)));
        }
        if self.max_page == 0 || self.max_page > MAX_PAGE {
            return Err(invalid("max_page", format!("must be between 1 and {MAX_PAGE}, got {}", self.max_page)));
        }
        if self.requests_per_minute == Some(0) {
            return Err(invalid("requests_per_minute", "must be positive (leave it out for no pacing)".into()));
        }
        if self.max_attachment_bytes == 0 {
            return Err(invalid("max_attachment_bytes", "must be positive".into()));
        }
        if self.timeout_secs == 0 {
            return Err(invalid("timeout_secs", "must be at least 1".into()));
        }
        if self.max_retries > 20 {
            return Err(invalid("max_retries", "must be at most 20".into()));
        }
        Ok(())
    }

    /// `base_url` parsed, without query, fragment or credentials.
    pub(crate) fn parsed_base_url(&self) -> Result<reqwest::Url, ConfigError> {
        let invalid = |cause: String| ConfigError::Invalid { field: "base_url".into(), cause };
        let raw = self.base_url.trim();
        if raw.is_empty() {
            return Err(invalid("is empty".into()));
        }
        let url = reqwest::Url::parse(raw).map_err(|e| invalid(format!("not a URL ({e})")))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(invalid(format!("scheme must be http or https, got {}", url.scheme())));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("has no host".into()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("must not have a query or fragment".into()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("must not carry credentials (use api_key_env)".into()));
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
    fn defaults_validate_and_round_trip() {
        let c = FreshdeskConfig::new("https://acme.freshdesk.com");
        c.validate().unwrap();
        assert_eq!(c.max_attachment_bytes, 20 * 1024 * 1024);
        assert_eq!((c.per_page, c.max_page, c.publication_lag_secs), (100, 300, 1));
        let j: FreshdeskConfig = serde_json::from_str(r#"{"base_url":"http://127.0.0.1:1","api_key_env":"FD_KEY","per_page":5,"requests_per_minute":180}"#).unwrap();
        assert_eq!(j.per_page, 5);
        assert_eq!(j.requests_per_minute, Some(180));
        let again: FreshdeskConfig = serde_json::from_value(serde_json::to_value(&j).unwrap()).unwrap();
        assert_eq!(again, j);
        assert!(serde_json::from_str::<FreshdeskConfig>(r#"{"base_url":"http://x","token_env":"X"}"#).is_err());
    }

    #[test]
    fn bad_values_are_refused_by_name() {
        let base = FreshdeskConfig::new("https://acme.freshdesk.com");
        for (c, f) in [
            (FreshdeskConfig { base_url: "ftp://x".into(), ..base.clone() }, "base_url"),
            (FreshdeskConfig { base_url: "https://k:X@acme.freshdesk.com".into(), ..base.clone() }, "base_url"),
            (FreshdeskConfig { per_page: 101, ..base.clone() }, "per_page"),
            (FreshdeskConfig { max_page: 0, ..base.clone() }, "max_page"),
            (FreshdeskConfig { api_key_env: Some(" ".into()), ..base.clone() }, "api_key_env"),
            (FreshdeskConfig { requests_per_minute: Some(0), ..base.clone() }, "requests_per_minute"),
            (FreshdeskConfig { max_attachment_bytes: 0, ..base.clone() }, "max_attachment_bytes"),
            (FreshdeskConfig { timeout_secs: 0, ..base }, "timeout_secs"),
        ] {
            assert_eq!(field_of(c.validate().unwrap_err()), f);
        }
    }
}

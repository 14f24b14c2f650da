//! The Request Tracker connector's configuration. Secrets are never part of it: only the *name* of the
//! environment variable that holds the API token (or, with `user`, the password).

use serde::{Deserialize, Serialize};

use crate::registry::ConfigError;

/// Largest page RT 5's REST2 serves (larger `per_page` values are silently cut to 100).
pub const MAX_PER_PAGE: u32 = 100;

/// Configuration of one RT 5 instance (source only).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RtConfig {
    /// Root URL of RT, including its `WebPath`, e.g. `https://rt.acme.com` or `https://acme.com/rt`.
    /// `/REST/2.0/...` is appended to it.
    pub base_url: String,
    /// RT user name for basic auth (`{user}:{password}`, the password in `token_env`). Without it, the secret
    /// in `token_env` is sent as an RT auth token (`Authorization: token …`), which is the recommended way.
    #[serde(default)]
    pub user: Option<String>,
    /// NAME of the environment variable holding the auth token, or the password when `user` is set (never
    /// the secret itself). Without it requests are unauthenticated, which RT refuses.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Seconds after a change until the change listing is guaranteed to show it (default 1: RT's search sees
    /// committed rows at once, but `LastUpdated` has one-second resolution, so a second must be over).
    #[serde(default = "default_lag")]
    pub publication_lag_secs: u64,
    /// Search page size, 1..=100 (default 100, RT's cap).
    #[serde(default = "default_per_page")]
    pub per_page: u32,
    /// How far before the window start the `LastUpdated` search reaches, in seconds (default 0). RT reads
    /// search dates in the API user's time zone; deltadesk writes them in UTC. Use an API user without a
    /// time-zone preference on a server whose `$Timezone` is UTC; otherwise set this to at least the user's
    /// largest offset *behind* UTC (e.g. 25200 for America/Los_Angeles), or changes are missed.
    #[serde(default)]
    pub search_lookback_secs: u64,
    /// Timeout of each API request, in seconds (attachment downloads included: REST2 serves them as JSON).
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
fn default_timeout() -> u64 {
    60
}
fn default_retries() -> u32 {
    5
}
fn default_max_retry_after() -> u64 {
    120
}

/// A day: no time zone is further from UTC, so a larger look-back is a typo.
const MAX_LOOKBACK_SECS: u64 = 86_400;

impl RtConfig {
    /// A configuration with every default and no credentials (set `token_env`, and `user` for basic auth).
    pub fn new(base_url: impl Into<String>) -> Self {
        RtConfig {
            base_url: base_url.into(),
            user: None,
            token_env: None,
            publication_lag_secs: default_lag(),
            per_page: default_per_page(),
            search_lookback_secs: 0,
            timeout_secs: default_timeout(),
            max_retries: default_retries(),
            max_retry_after_secs: default_max_retry_after(),
        }
    }

    /// Checks the values without reading the environment or touching the network.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.parsed_base_url()?;
        let invalid = |field: &str, cause: String| ConfigError::Invalid {
            field: field.into(),
            cause,
        };
        if let Some(u) = &self.user {
            if u.trim().is_empty() || u.contains(':') {
                return Err(invalid("user", "must be an RT user name without ':'".into()));
            }
            if self.token_env.is_none() {
                return Err(invalid(
                    "token_env",
                    "is required when user is set (it names the variable holding the password)".into(),
                ));
            }
        }
        if let Some(v) = &self.token_env {
            if v.trim().is_empty() || v.contains('=') || v.contains('\0') {
                return Err(invalid(
                    "token_env",
                    "must be the name of an environment variable".into(),
                ));
            }
        }
        if self.per_page == 0 || self.per_page > MAX_PER_PAGE {
            return Err(invalid(
                "per_page",
                format!("must be between 1 and {MAX_PER_PAGE}, got {}", self.per_page),
            ));
        }
        if self.search_lookback_secs > MAX_LOOKBACK_SECS {
            return Err(invalid(
                "search_lookback_secs",
                format!("must be at most {MAX_LOOKBACK_SECS} (a day)"),
            ));
        }
        if self.timeout_secs == 0 {
            return Err(invalid("timeout_secs", "must be at least 1".into()));
        }
        if self.max_retries > 20 {
            return Err(invalid("max_retries", "must be at most 20".into()));
        }
        Ok(())
    }

    /// `base_url` parsed, without a query or fragment.
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
            return Err(invalid(format!("scheme must be http or https, got {}", url.scheme())));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("has no host".into()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("must not have a query or fragment".into()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("must not carry credentials (use user and token_env)".into()));
        }
        if url.path().trim_end_matches('/').ends_with("/REST/2.0") {
            return Err(invalid("is RT's root URL, without /REST/2.0".into()));
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
        let c = RtConfig::new("https://rt.acme.com/rt/");
        c.validate().unwrap();
        assert_eq!(c.publication_lag_secs, 1);
        assert_eq!(c.per_page, 100);
    }

    #[test]
    fn bad_values_are_refused_with_the_field_named() {
        for u in ["", "rt.acme.com", "ftp://rt.acme.com", "https://u:p@rt.acme.com", "https://rt.acme.com/REST/2.0"] {
            assert_eq!(field_of(RtConfig::new(u).validate().unwrap_err()), "base_url", "{u}");
        }
        let base = RtConfig::new("https://rt.acme.com");
        let cases: Vec<(RtConfig, &str)> = vec![
            (RtConfig { per_page: 0, ..base.clone() }, "per_page"),
            (RtConfig { per_page: 101, ..base.clone() }, "per_page"),
            (RtConfig { user: Some("root".into()), ..base.clone() }, "token_env"),
            (RtConfig { user: Some("a:b".into()), token_env: Some("X".into()), ..base.clone() }, "user"),
            (RtConfig { token_env: Some("A=B".into()), ..base.clone() }, "token_env"),
            (RtConfig { timeout_secs: 0, ..base.clone() }, "timeout_secs"),
            (RtConfig { search_lookback_secs: 90_000, ..base.clone() }, "search_lookback_secs"),
        ];
        for (c, field) in cases {
            assert_eq!(field_of(c.validate().unwrap_err()), field);
        }
    }

    #[test]
    fn json_config_round_trips_and_refuses_unknown_keys() {
        let c: RtConfig = serde_json::from_str(
            r#"{"base_url":"https://rt.acme.com","user":"migrator","token_env":"RT_PASSWORD","search_lookback_secs":3600}"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.max_retries, 5);
        let again: RtConfig = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(again, c);
        assert!(serde_json::from_str::<RtConfig>(r#"{"base_url":"https://x","per_pge":5}"#).is_err());
    }
}

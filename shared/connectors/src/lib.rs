//! deltadesk's help-desk connectors: one folder per connector, each implementing the core ports
//! ([`HelpDeskSource`](deltadesk_core::ports::HelpDeskSource) and/or
//! [`HelpDeskTarget`](deltadesk_core::ports::HelpDeskTarget)), and the registry that builds them from config.
//!
//! # Layout
//! - [`registry`]: the one list of connectors ([`registry::connectors`]), the tagged
//!   [`registry::ConnectorConfig`], and `build_source` / `build_target`.
//! - [`zendesk`]: the Zendesk Support connector, source and target:
//!   - `zendesk/config.rs`: [`zendesk::ZendeskConfig`] (serde, validated; secrets only by env-var name),
//!   - `zendesk/client.rs`: [`zendesk::ZendeskClient`], auth, counting, 429/5xx retry policy, error mapping,
//!   - `zendesk/mapping.rs`: pure JSON <-> canonical model translation, inline-image URL rewriting,
//!   - `zendesk/mod.rs`: [`zendesk::Zendesk`], the port implementations and the lookup caches.
//! - [`rt`]: the Request Tracker 5 connector, source only, over REST2 (same layout: `rt/config.rs`,
//!   `rt/client.rs`, `rt/mapping.rs`, `rt/mod.rs`).
//! - [`freshdesk`]: the Freshdesk API v2 connector, source and target (same layout: `freshdesk/config.rs`,
//!   `freshdesk/client.rs`, `freshdesk/mapping.rs`, `freshdesk/mod.rs`), following `docs/freshdesk-api-subset.md`.
//! - `http` (private): connector-neutral HTTP plumbing — the internal error type and its conversions into
//!   the ports' error enums, retry/backoff policy, `Retry-After` parsing, query encoding, byte-counting streams.

pub mod freshdesk;
mod http;
pub mod registry;
pub mod rt;
pub mod zendesk;

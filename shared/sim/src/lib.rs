//! HTTP simulators of SaaS help desks, following their published API documentation, for tests and demos.
//!
//! The Zendesk simulator ([`zendesk::ZendeskSim`]) serves the subset of the Zendesk Support API described in
//! `docs/zendesk-api-subset.md`: the cursor-based incremental ticket export (with a publication lag), tickets,
//! comments, ticket import, uploads and attachment downloads, users, organizations, groups and ticket fields.
//! It seeds a deterministic help desk from a seed, enforces optional Basic-auth credentials and rate limits,
//! and can run "live agents" that keep changing tickets while a migration runs.
//!
//! # Layout
//! - [`zendesk`]: configuration, the [`zendesk::ZendeskSim`] handle (start, snapshot, stats, agent actions).
//!   - `zendesk/model.rs`: the in-memory state (records, validation, mutations, JSON rendering).
//!   - `zendesk/seed.rs`: deterministic seeding (ChaCha8 from the configured seed).
//!   - `zendesk/http.rs`: the axum router, handlers, auth / rate-limit / latency middleware.
//!   - `zendesk/live.rs`: live agents, a tokio task performing random agent actions.
//! - [`freshdesk`]: the Freshdesk API v2 simulator, laid out the same way.
//! - [`faults`]: the switchable API faults both simulators inject (429 storms, 5xx bursts, hangs, resets,
//!   truncated JSON, slow answers, repeated listing records, tickets deleted after listing, attachment 404s).
//! - [`fault_proxy`]: a reverse proxy injecting the same faults in front of a real server (Request Tracker).
//! - `tests/zendesk.rs`: end-to-end tests with reqwest against a simulator on `127.0.0.1:0`.

pub mod fault_proxy;
pub mod faults;
pub mod freshdesk;
pub mod zendesk;

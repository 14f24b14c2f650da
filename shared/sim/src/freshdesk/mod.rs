//! A simulator of the Freshdesk API v2 subset in `docs/freshdesk-api-subset.md`.
//!
//! Start one with [`FreshdeskSim::start`] (bind `127.0.0.1:0` in tests), point a client at
//! [`FreshdeskSim::base_url`], and drive changes with the agent actions ([`FreshdeskSim::create_ticket`],
//! [`FreshdeskSim::add_reply`], [`FreshdeskSim::add_note`], ...) or with [`FreshdeskSim::start_live_agents`].
//! The agent actions use the same code paths as the HTTP handlers. All state lives behind one
//! `std::sync::Mutex`, never held across `.await`.
//!
//! - `model.rs`: records, validation, mutations, JSON rendering.
//! - `seed.rs`: deterministic seeding (ChaCha8 from the configured seed).
//! - `http.rs`: the axum router, multipart parsing, auth / rate-limit / latency middleware.
//! - `live.rs`: live agents.

mod http;
mod live;
pub(crate) mod model;
mod seed;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};

pub use crate::faults::Faults;
pub use crate::zendesk::{LiveAgentConfig, LiveStats, SimStats};
pub use live::FreshdeskLiveAgents;
use model::{ApiError, NewFile, State};

/// Freshdesk's legacy per-minute plans, whose limits [`FreshdeskRateLimits::plan`] applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreshdeskPlan {
    Growth,
    Pro,
    Enterprise,
}

/// Requests per window, per endpoint class (`None` = unlimited). See the API subset doc for the classes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FreshdeskRateLimits {
    pub account: Option<u32>,
    /// `POST /tickets`.
    pub ticket_create: Option<u32>,
    /// `PUT /tickets/{id}`.
    pub ticket_update: Option<u32>,
    /// `GET /tickets`.
    pub ticket_list: Option<u32>,
    /// `GET /contacts` (listing and finding by email).
    pub contacts: Option<u32>,
    /// The window the limits count over (Freshdesk: one minute); shorter in tests.
    pub window: Duration,
}

impl FreshdeskRateLimits {
    pub fn unlimited() -> Self {
        FreshdeskRateLimits { account: None, ticket_create: None, ticket_update: None, ticket_list: None, contacts: None, window: Duration::from_secs(60) }
    }

    /// The published per-minute limits of a plan.
    pub fn plan(plan: FreshdeskPlan) -> Self {
        let (account, create, list) = match plan {
            FreshdeskPlan::Growth => (200, 80, 20),
            FreshdeskPlan::Pro => (400, 160, 100),
            FreshdeskPlan::Enterprise => (700, 280, 200),
        };
        FreshdeskRateLimits {
            account: Some(account),
            ticket_create: Some(create),
            ticket_update: Some(create),
            ticket_list: Some(list),
            contacts: Some(list),
            window: Duration::from_secs(60),
        }
    }
}

/// Configuration of a simulated Freshdesk account.
#[derive(Clone, Debug)]
pub struct FreshdeskSimConfig {
    pub seed: u64,
    /// Seeded live tickets (0 = empty help desk, e.g. a migration target).
    pub tickets: usize,
    /// Seeded tickets in the trash (`deleted: true`), on top of `tickets`.
    pub trashed_tickets: usize,
    /// Seeded tickets marked as spam, on top of `tickets`.
    pub spam_tickets: usize,
    /// Seeded contacts (five agents are always created as well).
    pub contacts: usize,
    pub companies: usize,
    /// Groups ("Support L1", "Billing", ...), always at least 1.
    pub groups: usize,
    /// First id of every id sequence, so a target's ids differ from a source's.
    pub id_base: u64,
    /// Added to every response.
    pub latency: Duration,
    pub rate_limits: FreshdeskRateLimits,
    /// Highest `page` the ticket list serves (Freshdesk: 300); lower it to test the ceiling quickly.
    pub max_page: u32,
    /// Without `updated_since`, the ticket list keeps tickets created in this many days (Freshdesk: 30).
    pub default_list_days: i64,
    /// Most attachment bytes in total on one ticket or conversation (Freshdesk: 20 MB).
    pub max_attachment_bytes: u64,
    /// Seeded attachment sizes range from a few bytes up to this (log-uniform: most are small).
    pub max_seed_attachment_bytes: u64,
    /// The API key for Basic auth `{api_key}:X`; None = no auth check.
    pub api_key: Option<String>,
    /// A ticket is found by `/search/tickets` only this long after its last change (Freshdesk: minutes).
    pub search_index_delay: Duration,
    /// The simulator's clock = real UTC now + this offset.
    pub clock_offset_secs: i64,
}

impl Default for FreshdeskSimConfig {
    fn default() -> Self {
        FreshdeskSimConfig {
            seed: 1,
            tickets: 50,
            trashed_tickets: 2,
            spam_tickets: 2,
            contacts: 20,
            companies: 5,
            groups: 4,
            id_base: 1,
            latency: Duration::ZERO,
            rate_limits: FreshdeskRateLimits::unlimited(),
            max_page: 300,
            default_list_days: 30,
            max_attachment_bytes: 20 * 1024 * 1024,
            max_seed_attachment_bytes: 2 * 1024 * 1024,
            api_key: None,
            search_index_delay: Duration::ZERO,
            clock_offset_secs: 0,
        }
    }
}

impl FreshdeskSimConfig {
    /// An empty help desk (migration target): no tickets, contacts or companies; the same ticket fields
    /// (including the connector's `cf_deltadesk_ref` and `cf_deltadesk_fallbacks`), the agents and one group.
    pub fn empty_target(id_base: u64) -> Self {
        FreshdeskSimConfig { tickets: 0, trashed_tickets: 0, spam_tickets: 0, contacts: 0, companies: 0, groups: 1, id_base, ..Default::default() }
    }
}

pub(crate) struct Inner {
    pub cfg: FreshdeskSimConfig,
    pub base_url: String,
    pub state: Mutex<State>,
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// Switchable faults: writes to tickets whose `cf_deltadesk_ref` is a key are refused with
    /// (status, description), as a help desk refuses a record it will not take.
    pub write_faults: Mutex<BTreeMap<String, (u16, String)>>,
    /// API faults switched on by the fault-injection scenarios.
    pub faults: crate::faults::FaultSwitch,
}

/// A running simulator (cheap to clone).
#[derive(Clone)]
pub struct FreshdeskSim {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for FreshdeskSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FreshdeskSim").field("base_url", &self.inner.base_url).finish()
    }
}

/// One attachment for an agent action: (file name, content type, bytes).
pub type NewAttachment = (String, String, Vec<u8>);

fn files(att: Option<NewAttachment>) -> Vec<NewFile> {
    att.into_iter().map(|(name, content_type, bytes)| NewFile { name, content_type, bytes: bytes.into() }).collect()
}

impl FreshdeskSim {
    /// Bind `addr`, seed the account and serve it in a tokio task.
    pub async fn start(config: FreshdeskSimConfig, addr: SocketAddr) -> std::io::Result<FreshdeskSim> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let host = if local.ip().is_unspecified() { "127.0.0.1".to_string() } else if local.is_ipv6() { format!("[{}]", local.ip()) } else { local.ip().to_string() };
        let base_url = format!("http://{host}:{}", local.port());

        let mut state = State::new(config.seed, config.id_base, config.max_attachment_bytes);
        let now = Self::clock_ms(config.clock_offset_secs).div_euclid(1000);
        let anchor = now.div_euclid(3600) * 3600 - 60;
        seed::seed(&mut state, &config, anchor);

        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let faults = crate::faults::FaultSwitch::new(config.seed);
        let sim = FreshdeskSim {
            inner: Arc::new(Inner { cfg: config, base_url, state: Mutex::new(state), shutdown: tx, write_faults: Mutex::new(BTreeMap::new()), faults }),
        };
        let app = http::router(sim.clone());
        tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|v| *v).await;
            };
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
                tracing::warn!(error = %e, "freshdesk simulator stopped");
            }
        });
        Ok(sim)
    }

    /// Fault switch: creates, updates, replies and notes of the ticket whose `cf_deltadesk_ref` is
    /// `source_ref` answer `status` with `description` until [`FreshdeskSim::clear_write_faults`].
    pub fn fail_writes_for(&self, source_ref: &str, status: u16, description: &str) {
        self.inner.write_faults.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(source_ref.to_string(), (status, description.to_string()));
    }

    /// Switches API faults on (or off, with `Faults::default()`).
    pub fn set_faults(&self, f: Faults) {
        self.inner.faults.set(f);
    }

    /// How many requests got an injected fault so far.
    pub fn faults_injected(&self) -> u64 {
        self.inner.faults.injected()
    }

    pub fn clear_write_faults(&self) {
        self.inner.write_faults.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }

    pub(crate) fn write_fault(&self, source_ref: Option<&str>) -> Option<(u16, String)> {
        let r = source_ref?;
        self.inner.write_faults.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(r).cloned()
    }

    /// "http://127.0.0.1:PORT" (no trailing slash).
    pub fn base_url(&self) -> String {
        self.inner.base_url.clone()
    }

    pub fn config(&self) -> &FreshdeskSimConfig {
        &self.inner.cfg
    }

    fn clock_ms(offset: i64) -> i64 {
        chrono::Utc::now().timestamp_millis() + offset * 1000
    }

    /// Simulator clock in Unix milliseconds.
    pub(crate) fn now_ms(&self) -> i64 {
        Self::clock_ms(self.inner.cfg.clock_offset_secs)
    }

    pub(crate) fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Simulator clock (real UTC now + offset), second resolution.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(self.now_secs(), 0).unwrap_or_default()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The whole state: tickets (with `deleted`, `spam`, description, conversations), attachments with the
    /// sha256 of their bytes, contacts, agents, companies, groups, ticket fields. HTML bodies contain
    /// `{{base_url}}` instead of the base URL.
    pub fn snapshot(&self) -> Value {
        self.lock().snapshot()
    }

    pub fn stats(&self) -> SimStats {
        self.lock().stats.clone()
    }

    /// Stop serving (in-flight requests complete).
    pub fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
    }

    // ---- agent actions -------------------------------------------------------------------------------------

    /// Create a ticket from `requester_email` (a contact is created if unknown); returns the ticket id.
    /// Panics on invalid input (see [`FreshdeskSim::try_create_ticket`]).
    pub fn create_ticket(&self, subject: &str, requester_email: &str, description_html: &str) -> u64 {
        self.try_create_ticket(subject, requester_email, description_html, None).unwrap_or_else(|e| panic!("create_ticket: {e}"))
    }

    /// Like [`FreshdeskSim::create_ticket`], optionally with an attachment on the description.
    pub fn try_create_ticket(&self, subject: &str, requester_email: &str, description_html: &str, attachment: Option<NewAttachment>) -> Result<u64, String> {
        let now = self.now_secs();
        let base = self.base_url();
        let body = json!({"subject": subject, "email": requester_email, "description": description_html, "status": 2, "priority": 1});
        self.lock().create_ticket(&body, files(attachment), &base, now).map_err(|e| e.message())
    }

    /// A public reply by the first agent (optionally with one attachment); returns the conversation id.
    /// Panics if the ticket is unknown or deleted (see [`FreshdeskSim::try_add_reply`]).
    pub fn add_reply(&self, ticket_id: u64, html_body: &str, attachment: Option<NewAttachment>) -> u64 {
        self.try_add_reply(ticket_id, None, html_body, attachment).unwrap_or_else(|e| panic!("add_reply on ticket {ticket_id}: {e}"))
    }

    /// A reply by `user_id` (default: the first agent); a reply by a contact is an incoming message.
    pub fn try_add_reply(&self, ticket_id: u64, user_id: Option<u64>, html_body: &str, attachment: Option<NewAttachment>) -> Result<u64, String> {
        let now = self.now_secs();
        let base = self.base_url();
        let body = json!({"body": html_body, "user_id": user_id});
        self.lock().add_conversation(ticket_id, &body, files(attachment), false, &base, now).map_err(|e| e.message())
    }

    /// A note by the first agent, private or public; returns the conversation id. Panics like `add_reply`.
    pub fn add_note(&self, ticket_id: u64, private: bool, html_body: &str, attachment: Option<NewAttachment>) -> u64 {
        self.try_add_note(ticket_id, None, private, html_body, attachment).unwrap_or_else(|e| panic!("add_note on ticket {ticket_id}: {e}"))
    }

    pub fn try_add_note(&self, ticket_id: u64, user_id: Option<u64>, private: bool, html_body: &str, attachment: Option<NewAttachment>) -> Result<u64, String> {
        let now = self.now_secs();
        let base = self.base_url();
        let body = json!({"body": html_body, "private": private, "user_id": user_id});
        self.lock().add_conversation(ticket_id, &body, files(attachment), true, &base, now).map_err(|e| e.message())
    }

    /// Apply the same fields as `PUT /tickets/{id}` (status, priority, type, tags, subject, responder_id,
    /// group_id, custom_fields, ...). Panics on an invalid patch or an unknown / deleted ticket.
    pub fn update_ticket(&self, ticket_id: u64, patch: Value) {
        self.try_update_ticket(ticket_id, patch).unwrap_or_else(|e| panic!("update_ticket {ticket_id}: {e}"))
    }

    pub fn try_update_ticket(&self, ticket_id: u64, patch: Value) -> Result<(), String> {
        let now = self.now_secs();
        let base = self.base_url();
        self.lock().update_ticket(ticket_id, &patch, &base, now).map_err(|e: ApiError| e.message())
    }

    /// Move a ticket to the trash (listed by `filter=deleted` from then on). Panics if unknown or deleted.
    pub fn delete_ticket(&self, ticket_id: u64) {
        self.try_delete_ticket(ticket_id).unwrap_or_else(|e| panic!("delete_ticket {ticket_id}: {e}"))
    }

    pub fn try_delete_ticket(&self, ticket_id: u64) -> Result<(), String> {
        let now = self.now_secs();
        self.lock().delete_ticket(ticket_id, now).map_err(|e| e.message())
    }

    /// Mark a ticket as spam (listed by `filter=spam` from then on). Panics if unknown or deleted.
    pub fn mark_spam(&self, ticket_id: u64) {
        self.try_mark_spam(ticket_id).unwrap_or_else(|e| panic!("mark_spam {ticket_id}: {e}"))
    }

    pub fn try_mark_spam(&self, ticket_id: u64) -> Result<(), String> {
        let now = self.now_secs();
        self.lock().mark_spam(ticket_id, now).map_err(|e| e.message())
    }

    /// Restore a ticket from the trash or from spam. Panics if unknown.
    pub fn restore_ticket(&self, ticket_id: u64) {
        let now = self.now_secs();
        self.lock().restore(ticket_id, now).unwrap_or_else(|e| panic!("restore_ticket {ticket_id}: {}", e.message()))
    }

    /// Start live agents performing random actions until [`FreshdeskLiveAgents::stop`].
    pub fn start_live_agents(&self, config: LiveAgentConfig) -> FreshdeskLiveAgents {
        live::start(self.clone(), config)
    }
}

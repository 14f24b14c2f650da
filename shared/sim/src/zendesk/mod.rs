//! A simulator of the Zendesk Support API subset in `docs/zendesk-api-subset.md`.
//!
//! Start one with [`ZendeskSim::start`] (bind `127.0.0.1:0` in tests), point a client at
//! [`ZendeskSim::base_url`], and drive changes with the agent actions ([`ZendeskSim::create_ticket`],
//! [`ZendeskSim::add_comment`], ...) or with [`ZendeskSim::start_live_agents`]. The agent actions use the same
//! code paths as the HTTP handlers. All state lives behind one `std::sync::Mutex`, never held across `.await`.

mod http;
mod live;
pub(crate) mod model;
mod seed;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Value};

pub use crate::faults::{self, Faults};
pub use live::{LiveAgentConfig, LiveAgents, LiveStats};
use model::{ApiError, State};

/// Configuration of a simulated Zendesk account.
#[derive(Clone, Debug)]
pub struct ZendeskSimConfig {
    pub seed: u64,
    /// Seeded tickets (0 = empty help desk, e.g. a migration target).
    pub tickets: usize,
    /// Seeded end users (five agents are always created as well).
    pub users: usize,
    pub organizations: usize,
    /// Groups ("Support L1", "Billing", ...), always at least 1.
    pub groups: usize,
    /// First id of every id sequence, so a target's ids differ from a source's.
    pub id_base: u64,
    /// A change becomes visible in the incremental export only this long after its `updated_at`.
    pub publication_lag: Duration,
    /// Added to every response.
    pub latency: Duration,
    /// Account-wide requests per minute; None = unlimited.
    pub rate_limit_per_minute: Option<u32>,
    /// Incremental export requests per minute; None = unlimited (real Zendesk: 10).
    pub export_rate_limit_per_minute: Option<u32>,
    /// Uploads above this size are refused with 413.
    pub max_attachment_bytes: u64,
    /// Seeded attachment sizes range from a few bytes up to this (log-uniform: most are small).
    pub max_seed_attachment_bytes: u64,
    /// (email, api_token) for Basic auth `{email}/token:{api_token}`; None = no auth check.
    pub credentials: Option<(String, String)>,
    /// The simulator's clock = real UTC now + this offset.
    pub clock_offset_secs: i64,
    /// How long a background job (`imports/tickets/create_many`) stays queued before it runs; zero runs it
    /// before the POST is answered (the answer still says `queued`, as Zendesk's always does).
    pub job_delay: Duration,
}

impl Default for ZendeskSimConfig {
    fn default() -> Self {
        ZendeskSimConfig {
            seed: 1,
            tickets: 50,
            users: 20,
            organizations: 5,
            groups: 4,
            id_base: 1,
            publication_lag: Duration::from_secs(60),
            latency: Duration::ZERO,
            rate_limit_per_minute: None,
            export_rate_limit_per_minute: None,
            max_attachment_bytes: 50 * 1024 * 1024,
            max_seed_attachment_bytes: 2 * 1024 * 1024,
            credentials: None,
            clock_offset_secs: 0,
            job_delay: Duration::ZERO,
        }
    }
}

impl ZendeskSimConfig {
    /// An empty help desk (migration target): no tickets, end users or organizations; the same custom ticket
    /// field definitions (same titles, ids from `id_base`), the agents and one group.
    pub fn empty_target(id_base: u64) -> Self {
        ZendeskSimConfig {
            tickets: 0,
            users: 0,
            organizations: 0,
            groups: 1,
            id_base,
            ..Default::default()
        }
    }
}

/// Request counters.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SimStats {
    /// Every request that reached a route (including 401 and 429 answers).
    pub requests_total: u64,
    /// Requests answered with 429.
    pub throttled: u64,
    /// Per route, keyed "METHOD /path/{param}" (without `.json`).
    pub per_route: BTreeMap<String, u64>,
}

pub(crate) struct Inner {
    pub cfg: ZendeskSimConfig,
    pub base_url: String,
    pub state: Mutex<State>,
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// Switchable faults: writes to tickets carrying one of these `external_id`s are refused with
    /// (status, description), as a help desk refuses a record it will not take.
    pub write_faults: Mutex<BTreeMap<String, (u16, String)>>,
    /// API faults switched on by the fault-injection scenarios.
    pub faults: crate::faults::FaultSwitch,
}

/// A running simulator (cheap to clone).
#[derive(Clone)]
pub struct ZendeskSim {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for ZendeskSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZendeskSim")
            .field("base_url", &self.inner.base_url)
            .finish()
    }
}

impl ZendeskSim {
    /// Bind `addr`, seed the account and serve it in a tokio task.
    pub async fn start(config: ZendeskSimConfig, addr: SocketAddr) -> std::io::Result<ZendeskSim> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let host = if local.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            local.ip().to_string()
        };
        let host = if local.is_ipv6() && !local.ip().is_unspecified() {
            format!("[{host}]")
        } else {
            host
        };
        let base_url = format!("http://{host}:{}", local.port());

        let mut state = State::new(config.seed, config.id_base);
        let now = Self::clock_ms(config.clock_offset_secs).div_euclid(1000);
        let lag = config.publication_lag.as_secs() as i64 + 1;
        let anchor = now.div_euclid(3600) * 3600 - lag - 60;
        seed::seed(&mut state, &config, anchor);

        let fault_seed = config.seed;
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let sim = ZendeskSim {
            inner: Arc::new(Inner {
                cfg: config,
                base_url,
                state: Mutex::new(state),
                shutdown: tx,
                write_faults: Mutex::new(BTreeMap::new()),
                faults: crate::faults::FaultSwitch::new(fault_seed),
            }),
        };
        let app = http::router(sim.clone());
        tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|v| *v).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::warn!(error = %e, "zendesk simulator stopped");
            }
        });
        Ok(sim)
    }

    /// Fault switch: imports and updates of the ticket whose `external_id` is `external_id` answer
    /// `status` with `description` until [`ZendeskSim::clear_write_faults`].
    pub fn fail_writes_for(&self, external_id: &str, status: u16, description: &str) {
        self.inner
            .write_faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(external_id.to_string(), (status, description.to_string()));
    }

    /// Switches API faults on (or off, with `Faults::default()`).
    pub fn set_faults(&self, f: Faults) {
        self.inner.faults.set(f);
    }

    /// How many requests got an injected fault so far.
    pub fn faults_injected(&self) -> u64 {
        self.inner.faults.injected()
    }

    pub(crate) fn faults(&self) -> Faults {
        self.inner.faults.get()
    }

    pub fn clear_write_faults(&self) {
        self.inner.write_faults.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }

    pub(crate) fn write_fault(&self, external_id: Option<&str>) -> Option<(u16, String)> {
        let id = external_id?;
        self.inner.write_faults.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(id).cloned()
    }

    /// "http://127.0.0.1:PORT" (no trailing slash).
    pub fn base_url(&self) -> String {
        self.inner.base_url.clone()
    }

    pub fn config(&self) -> &ZendeskSimConfig {
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

    /// The whole state: tickets (with `deleted`), comments, attachments (with sha256 of the bytes), users,
    /// organizations, groups, ticket fields. HTML bodies contain `{{base_url}}` instead of the base URL.
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

    /// Create a ticket from `requester_email` (the user is created if unknown); returns the ticket id.
    /// Panics on invalid input (see [`ZendeskSim::try_create_ticket`]).
    pub fn create_ticket(&self, subject: &str, requester_email: &str, body_html: &str) -> u64 {
        self.try_create_ticket(subject, requester_email, body_html, None)
            .unwrap_or_else(|e| panic!("create_ticket: {e}"))
    }

    /// Like [`ZendeskSim::create_ticket`], optionally with an attachment on the description.
    pub fn try_create_ticket(
        &self,
        subject: &str,
        requester_email: &str,
        body_html: &str,
        attachment: Option<(String, String, Vec<u8>)>,
    ) -> Result<u64, String> {
        let now = self.now_secs();
        let base = self.base_url();
        let mut st = self.lock();
        let (requester, _) = st
            .create_or_update_user(&json!({"email": requester_email}))
            .map_err(|e| e.message())?;
        let mut comment = json!({"html_body": body_html, "public": true, "author_id": requester});
        if let Some((name, ctype, bytes)) = attachment {
            let (token, _) = st.upload(&name, &ctype, bytes.into(), None);
            comment["uploads"] = json!([token]);
        }
        let body = json!({"subject": subject, "requester_id": requester, "comments": [comment]});
        st.import_ticket(&body, &base, now).map_err(|e| e.message())
    }

    /// Add a comment by the first agent (optionally with one attachment); returns the comment id.
    /// Panics if the ticket is unknown, deleted or closed (see [`ZendeskSim::try_add_comment`]).
    pub fn add_comment(
        &self,
        ticket_id: u64,
        public: bool,
        html_body: &str,
        attachment: Option<(String, String, Vec<u8>)>,
    ) -> u64 {
        self.try_add_comment(ticket_id, None, public, html_body, attachment)
            .unwrap_or_else(|e| panic!("add_comment on ticket {ticket_id}: {e}"))
    }

    /// Add a comment by `author_id` (default: the first agent).
    pub fn try_add_comment(
        &self,
        ticket_id: u64,
        author_id: Option<u64>,
        public: bool,
        html_body: &str,
        attachment: Option<(String, String, Vec<u8>)>,
    ) -> Result<u64, String> {
        let now = self.now_secs();
        let base = self.base_url();
        let mut st = self.lock();
        st.live_ticket(ticket_id).map_err(|e| e.message())?;
        let mut comment = json!({"html_body": html_body, "public": public});
        if let Some(a) = author_id {
            comment["author_id"] = json!(a);
        }
        if let Some((name, ctype, bytes)) = attachment {
            let (token, _) = st.upload(&name, &ctype, bytes.into(), None);
            comment["uploads"] = json!([token]);
        }
        let (_, cid) = st
            .update_ticket(ticket_id, &json!({"comment": comment}), &base, now)
            .map_err(|e| e.message())?;
        Ok(cid.unwrap_or_default())
    }

    /// Apply the same fields as a PUT (status, priority, tags, subject, assignee_id, custom_fields, comment...).
    /// Panics on an invalid patch or a closed / deleted / unknown ticket (see [`ZendeskSim::try_update_ticket`]).
    pub fn update_ticket(&self, ticket_id: u64, patch: Value) {
        self.try_update_ticket(ticket_id, patch)
            .unwrap_or_else(|e| panic!("update_ticket {ticket_id}: {e}"))
    }

    pub fn try_update_ticket(&self, ticket_id: u64, patch: Value) -> Result<(), String> {
        let now = self.now_secs();
        let base = self.base_url();
        self.lock()
            .update_ticket(ticket_id, &patch, &base, now)
            .map(|_| ())
            .map_err(|e: ApiError| e.message())
    }

    /// Delete a ticket (it stays in the export with status "deleted"). Panics if unknown or already deleted.
    pub fn delete_ticket(&self, ticket_id: u64) {
        self.try_delete_ticket(ticket_id)
            .unwrap_or_else(|e| panic!("delete_ticket {ticket_id}: {e}"))
    }

    pub fn try_delete_ticket(&self, ticket_id: u64) -> Result<(), String> {
        let now = self.now_secs();
        self.lock()
            .delete_ticket(ticket_id, now)
            .map_err(|e| e.message())
    }

    /// The ticket's current version becomes visible in the incremental export only at
    /// updated_at + publication_lag + extra (a record published late). A later update clears the hold.
    pub fn hold_publication(&self, ticket_id: u64, extra: Duration) {
        let mut st = self.lock();
        if let Some(t) = st.tickets.get_mut(&ticket_id) {
            t.held = Some((t.updated_at, extra.as_millis() as u64));
        }
    }

    // ---- fault hooks: records the API's own validation refuses ----------------------------------------------
    //
    // Bad-input tests need records a real help desk can hold (imported long ago, migrated in from elsewhere,
    // left behind by a deleted user) but that this simulator's agent actions validate away. These hooks edit
    // the state directly; they are not part of the Zendesk API and never run unless a test calls them.

    /// Fault hook: ticket `ticket_id` is served (show, show_many, list, export) with the fields of the JSON
    /// object `fields` overriding its own, e.g. `{"requester_id": null}` for a ticket with no requester. The
    /// ticket's `updated_at` moves to now, so the change is exported like an edit. Panics if the ticket is
    /// unknown or `fields` is not an object.
    pub fn corrupt_ticket(&self, ticket_id: u64, fields: Value) {
        let now = self.now_secs();
        let Value::Object(fields) = fields else { panic!("corrupt_ticket {ticket_id}: fields must be an object") };
        let mut st = self.lock();
        let t = st.tickets.get_mut(&ticket_id).unwrap_or_else(|| panic!("corrupt_ticket: no ticket {ticket_id}"));
        t.updated_at = now;
        st.json_overrides.entry(ticket_id).or_default().extend(fields);
    }

    /// Fault hook: comment `comment_id` of ticket `ticket_id` is authored by `author_id`, which need not be a
    /// user this account knows (an author the users API cannot resolve). `updated_at` moves to now. Panics if
    /// the ticket or comment is unknown.
    pub fn corrupt_comment_author(&self, ticket_id: u64, comment_id: u64, author_id: u64) {
        let now = self.now_secs();
        let mut st = self.lock();
        let t = st.tickets.get_mut(&ticket_id).unwrap_or_else(|| panic!("corrupt_comment_author: no ticket {ticket_id}"));
        let c = t.comments.iter_mut().find(|c| c.id == comment_id).unwrap_or_else(|| panic!("corrupt_comment_author: no comment {comment_id}"));
        c.author_id = author_id;
        t.updated_at = now;
    }

    /// Start live agents performing random actions until [`LiveAgents::stop`].
    pub fn start_live_agents(&self, config: LiveAgentConfig) -> LiveAgents {
        live::start(self.clone(), config)
    }
}

//! The Freshdesk (API v2) connector, source and target, following `docs/freshdesk-api-subset.md`.
//!
//! - `config.rs`: [`FreshdeskConfig`].
//! - `client.rs`: [`FreshdeskClient`] (API-key auth, pacing, counters, retries, `Link` paging, multipart).
//! - `mapping.rs`: pure JSON <-> canonical translation, the "originally by" header, fallback hints and the
//!   listing cursor.
//! - this file: [`Freshdesk`], the port implementations, the lookup caches (users, groups, companies, ticket
//!   fields; they live as long as the connector) and the attachments held between `upload` and the write
//!   that carries them (Freshdesk has no upload-token API).

mod client;
mod config;
pub mod mapping;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use deltadesk_core::model::{Attachment, Group, Organization, TargetId, Ticket, TicketId, User};
use deltadesk_core::ports::{
    ApiStats, ByteStream, ChangePage, ChangeRef, CommentWrite, HelpDeskSource, HelpDeskTarget, SourceError, TargetError, TargetListPage, UploadedAttachment,
};
use deltadesk_core::window::Window;
use deltadesk_core::vocabulary::{FieldDef, FieldKind, FieldOption, OrgDef, Vocabulary};
use futures::StreamExt;
use reqwest::{Method, Url};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

pub use client::FreshdeskClient;
pub use config::{FreshdeskConfig, DEFAULT_MAX_ATTACHMENT_BYTES, MAX_PAGE, MAX_PER_PAGE};

use crate::http::{query, ApiError};
use crate::registry::ConfigError;
use client::{multipart, Replay};
use mapping::{FdAgent, FdCompany, FdContact, FdConversation, FdField, FdGroup, FdTicket, ListCursor, MappingError, ReadAs, TargetRefs};

/// The target's agents by lower-case email, and when they were listed.
type AgentDir = (std::time::Instant, Arc<HashMap<String, u64>>);

/// How long the target's agent listing is trusted before it is read again.
const AGENTS_TTL: Duration = Duration::from_secs(300);

/// The connector kind in configs and reports.
pub const KIND: &str = "freshdesk";

/// Safety stop for `Link` chains.
const MAX_PAGES: usize = 10_000;
/// The listing passes: live tickets, the trash, spam.
const PASS_FILTERS: [Option<&str>; 3] = [None, Some("deleted"), Some("spam")];
/// Search answers 30 per page, at most 10 pages.
const SEARCH_PAGE: usize = 30;
const SEARCH_MAX_PAGES: usize = 10;
/// Pages of recently updated tickets scanned by `find_by_source_ref`.
const REF_SCAN_PAGES: u32 = 3;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn malformed(record: impl Into<String>, cause: impl Into<String>) -> ApiError {
    ApiError::Malformed { record: record.into(), cause: cause.into() }
}

// `From<MappingError> for ApiError` comes with the Zendesk connector (the mapping error type is shared).

fn unmappable(e: MappingError) -> TargetError {
    TargetError::Unmappable { record: e.record, cause: e.cause }
}

fn epoch_secs(record: &str, s: &str) -> Result<i64, ApiError> {
    Ok(mapping::parse_time(record, "updated_at", s)?.timestamp())
}

/// Ticket fields of one account: custom field labels by name, names by label (mapped fields only).
#[derive(Debug, Default)]
struct FieldDir {
    labels: HashMap<String, String>,
    by_label: HashMap<String, String>,
}

/// Groups of one account, by id and by name.
#[derive(Debug, Default)]
struct GroupDir {
    by_id: HashMap<u64, Group>,
    by_name: HashMap<String, u64>,
}

/// Attachment bytes between `upload` and the create/note that sends them.
#[derive(Debug)]
struct Pending {
    name: String,
    content_type: String,
    bytes: Bytes,
}

/// A Freshdesk account, usable as source and as target.
#[derive(Debug)]
pub struct Freshdesk {
    cfg: FreshdeskConfig,
    client: FreshdeskClient,
    // Source-side lookups, by Freshdesk id. Users that cannot be mapped keep the reason.
    users: Mutex<HashMap<u64, Result<User, String>>>,
    agents_loaded: Mutex<bool>,
    companies: Mutex<HashMap<u64, Organization>>,
    groups: Mutex<Option<Arc<GroupDir>>>,
    fields: Mutex<Option<Arc<FieldDir>>>,
    // Target-side ids: users by email (lower case) with "is an agent", companies by name (lower case).
    target_users: Mutex<HashMap<String, (u64, bool)>>,
    /// The target's agents by email (lower case), listed once: per-user agent look-ups cost one request
    /// of the rate-limit budget per requester.
    target_agents: tokio::sync::Mutex<Option<AgentDir>>,
    /// Creating one person, or reading the field list, happens once even when several workers need it at
    /// the same moment (otherwise each spends a request, and all but one collect a 409): striped by email.
    user_create: [tokio::sync::Mutex<()>; 16],
    field_load: tokio::sync::Mutex<()>,
    target_companies: Mutex<HashMap<String, u64>>,
    /// Serializes "list groups, else create" so two workers never create the same group twice.
    group_create: tokio::sync::Mutex<()>,
    pending: Mutex<HashMap<String, Pending>>,
    upload_seq: AtomicU64,
}

impl Freshdesk {
    /// Builds the connector: validates `cfg` and reads the API key from the environment variable named by
    /// `cfg.api_key_env` (unset or empty -> [`ConfigError::MissingSecret`]).
    pub fn new(cfg: FreshdeskConfig) -> Result<Self, ConfigError> {
        Self::with_secrets(cfg, &crate::registry::EnvSecrets)
    }

    /// Builds the connector, looking the API key up by the name in `cfg.api_key_env` in `secrets`.
    pub fn with_secrets(cfg: FreshdeskConfig, secrets: &dyn crate::registry::Secrets) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let key = match &cfg.api_key_env {
            None => None,
            Some(name) => match secrets.secret(name) {
                Some(k) if !k.trim().is_empty() => Some(k.trim().to_string()),
                _ => return Err(ConfigError::MissingSecret { field: "api_key_env".into(), env_var: name.clone() }),
            },
        };
        Self::with_api_key(cfg, key)
    }

    /// Builds the connector with an explicit API key (tests, or secrets fetched by other means).
    pub fn with_api_key(cfg: FreshdeskConfig, api_key: Option<String>) -> Result<Self, ConfigError> {
        let client = FreshdeskClient::new(&cfg, api_key)?;
        Ok(Freshdesk {
            cfg,
            client,
            users: Mutex::default(),
            agents_loaded: Mutex::new(false),
            companies: Mutex::default(),
            groups: Mutex::default(),
            fields: Mutex::default(),
            target_users: Mutex::default(),
            target_agents: tokio::sync::Mutex::default(),
            user_create: Default::default(),
            field_load: tokio::sync::Mutex::default(),
            target_companies: Mutex::default(),
            group_create: tokio::sync::Mutex::new(()),
            pending: Mutex::default(),
            upload_seq: AtomicU64::new(0),
        })
    }

    pub fn config(&self) -> &FreshdeskConfig {
        &self.cfg
    }

    pub fn client(&self) -> &FreshdeskClient {
        &self.client
    }

    fn url(&self, path: &str, q: &[(&str, &str)]) -> Url {
        self.client.api_url(path, &query(q))
    }

    // ----- lookups --------------------------------------------------------------------------------------

    /// Every object of an array endpoint, following `Link` headers.
    async fn list_all(&self, path: &str) -> Result<Vec<Value>, ApiError> {
        let context = format!("GET {path}");
        let mut url = self.url(path, &[("per_page", "100")]);
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let (v, next) = self.client.get_page(&context, &url).await?;
            let items = v.as_array().ok_or_else(|| malformed(&context, "not an array"))?;
            out.extend(items.iter().cloned());
            match next {
                Some(n) => url = n,
                None => return Ok(out),
            }
        }
        Err(malformed(&context, "too many pages"))
    }

    async fn field_dir(&self, refresh: bool) -> Result<Arc<FieldDir>, ApiError> {
        let seen = lock(&self.fields).clone();
        if let (false, Some(d)) = (refresh, &seen) {
            return Ok(d.clone());
        }
        let _loading = self.field_load.lock().await;
        // Someone else loaded (or refreshed) it while we waited: use theirs.
        if let Some(d) = lock(&self.fields).clone() {
            if seen.as_ref().is_none_or(|s| !Arc::ptr_eq(s, &d)) {
                return Ok(d);
            }
        }
        let context = "GET ticket_fields";
        let v = self.client.get_json(context, &self.url("/api/v2/ticket_fields", &[])).await?;
        let mut dir = FieldDir::default();
        for f in v.as_array().ok_or_else(|| malformed(context, "not an array"))? {
            let f: FdField = mapping::parse(&format!("freshdesk ticket field {}", mapping::id_of(f)), f)?;
            if !f.is_mapped_custom() {
                continue;
            }
            dir.by_label.entry(f.label.clone()).or_insert(f.name.clone());
            dir.labels.insert(f.name, f.label);
        }
        let dir = Arc::new(dir);
        *lock(&self.fields) = Some(dir.clone());
        Ok(dir)
    }

    async fn group_dir(&self, refresh: bool) -> Result<Arc<GroupDir>, ApiError> {
        if !refresh {
            if let Some(d) = lock(&self.groups).clone() {
                return Ok(d);
            }
        }
        let mut dir = GroupDir::default();
        for v in self.list_all("/api/v2/groups").await? {
            let g: FdGroup = mapping::parse(&format!("freshdesk group {}", mapping::id_of(&v)), &v)?;
            dir.by_name.entry(g.name.clone()).or_insert(g.id);
            dir.by_id.insert(g.id, mapping::group_from_fd(&g));
        }
        let dir = Arc::new(dir);
        *lock(&self.groups) = Some(dir.clone());
        Ok(dir)
    }

    /// Groups, companies, agents and custom fields (with drop-down choices) as `mapping init` needs them.
    /// Freshdesk has no New or On-hold status: as a target it stores them as Open / Pending and keeps the
    /// original in its fallbacks field; as a source it gives them back only for tickets deltadesk wrote.
    async fn read_vocabulary(&self) -> Result<Vocabulary, ApiError> {
        let all = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let mut voc = Vocabulary {
            statuses: all(&["open", "pending", "solved", "closed"]),
            priorities: all(&["low", "normal", "high", "urgent"]),
            // Writes create missing groups and companies; agents are matched by e-mail, never created.
            creates_groups: true,
            creates_organizations: true,
            accepts_unknown_agents: false,
            ..Vocabulary::default()
        };
        voc.groups = self.group_dir(true).await?.by_name.keys().cloned().collect();
        for v in self.list_all("/api/v2/companies").await? {
            let c: FdCompany = mapping::parse(&format!("freshdesk company {}", mapping::id_of(&v)), &v)?;
            voc.organizations.push(OrgDef { name: c.name, domains: c.domains });
        }
        voc.agents = self.agents().await?.into_iter().filter_map(|a| a.contact.email).collect();
        let context = "GET ticket_fields";
        let v = self.client.get_json(context, &self.url("/api/v2/ticket_fields", &[])).await?;
        for raw in v.as_array().ok_or_else(|| malformed(context, "not an array"))? {
            let f: FdField = mapping::parse(&format!("freshdesk ticket field {}", mapping::id_of(raw)), raw)?;
            // Custom drop-downs list their choices as strings; what a ticket carries is the string.
            let choices: Vec<String> = raw.get("choices").and_then(Value::as_array).map(|c| c.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default();
            if f.name == "ticket_type" {
                voc.ticket_types = choices.iter().filter_map(|c| deltadesk_core::model::TicketType::parse(&c.to_ascii_lowercase())).map(|t| t.as_str().to_string()).collect();
                continue;
            }
            if !f.is_mapped_custom() {
                continue;
            }
            let kind = match f.field_type.as_deref() {
                Some("custom_text" | "custom_paragraph") => FieldKind::Text,
                Some("custom_number" | "custom_decimal") => FieldKind::Number,
                Some("custom_checkbox") => FieldKind::Checkbox,
                Some("custom_date") => FieldKind::Date,
                Some("custom_dropdown") => FieldKind::DropDown,
                _ => FieldKind::Other,
            };
            let options = choices.into_iter().map(|c| FieldOption { value: c.clone(), label: c }).collect();
            voc.custom_fields.push(FieldDef { title: f.label, kind, options });
        }
        Ok(voc)
    }

    fn cache_agent(&self, v: &Value) {
        if let Ok(a) = mapping::parse::<FdAgent>("freshdesk agent", v) {
            let mapped = mapping::user_from_agent(&a).map_err(|e| e.cause);
            lock(&self.users).insert(a.id, mapped);
        }
    }

    /// Agents are few and referenced by most tickets: load them all once.
    async fn load_agents(&self) -> Result<(), ApiError> {
        if *lock(&self.agents_loaded) {
            return Ok(());
        }
        for v in self.list_all("/api/v2/agents").await? {
            self.cache_agent(&v);
        }
        *lock(&self.agents_loaded) = true;
        Ok(())
    }

    /// Loads a user not yet cached: as a contact, else as an agent.
    async fn load_user(&self, id: u64) -> Result<(), ApiError> {
        if lock(&self.users).contains_key(&id) {
            return Ok(());
        }
        let context = format!("GET contact {id}");
        match self.client.get_json(&context, &self.url(&format!("/api/v2/contacts/{id}"), &[])).await {
            Ok(v) => {
                let c: FdContact = mapping::parse(&format!("freshdesk contact {id}"), &v)?;
                lock(&self.users).insert(id, mapping::user_from_contact(&c).map_err(|e| e.cause));
                return Ok(());
            }
            Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        match self.client.get_json(&format!("GET agent {id}"), &self.url(&format!("/api/v2/agents/{id}"), &[])).await {
            Ok(v) => self.cache_agent(&v),
            Err(ApiError::NotFound { .. }) => {
                lock(&self.users).insert(id, Err("neither a contact nor an agent".into()));
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    async fn load_company(&self, id: u64) -> Result<(), ApiError> {
        if lock(&self.companies).contains_key(&id) {
            return Ok(());
        }
        let v = self.client.get_json(&format!("GET company {id}"), &self.url(&format!("/api/v2/companies/{id}"), &[])).await?;
        let c: FdCompany = mapping::parse(&format!("freshdesk company {id}"), &v)?;
        lock(&self.companies).insert(id, mapping::organization_from_fd(&c));
        Ok(())
    }

    // ----- reading tickets ------------------------------------------------------------------------------

    /// All conversations of a ticket, oldest first (`None` if the ticket is gone).
    async fn conversations(&self, id: u64) -> Result<Option<Vec<Value>>, ApiError> {
        let context = format!("GET ticket {id} conversations");
        let per_page = self.cfg.per_page.to_string();
        let mut url = self.url(&format!("/api/v2/tickets/{id}/conversations"), &[("per_page", &per_page)]);
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let (v, next) = match self.client.get_page(&context, &url).await {
                Err(ApiError::NotFound { .. }) => return Ok(None),
                r => r?,
            };
            out.extend(v.as_array().ok_or_else(|| malformed(&context, "not an array"))?.iter().cloned());
            match next {
                Some(n) => url = n,
                None => return Ok(Some(out)),
            }
        }
        Err(malformed(&context, "too many pages"))
    }

    /// The raw ticket, or `None` if unknown.
    async fn raw_ticket(&self, id: u64) -> Result<Option<FdTicket>, ApiError> {
        let record = mapping::ticket_record(id);
        match self.client.get_json(&format!("GET ticket {id}"), &self.url(&format!("/api/v2/tickets/{id}"), &[])).await {
            Err(ApiError::NotFound { .. }) => Ok(None),
            Ok(v) => Ok(Some(mapping::parse(&record, &v)?)),
            Err(e) => Err(e),
        }
    }

    /// A ticket in canonical form, or `None` if it does not exist, is in the trash or is spam.
    async fn read(&self, id: u64, read: ReadAs) -> Result<Option<Ticket>, ApiError> {
        let Some(t) = self.raw_ticket(id).await? else { return Ok(None) };
        if t.is_gone() {
            return Ok(None);
        }
        let Some(raw) = self.conversations(id).await? else { return Ok(None) };
        let convs = raw
            .iter()
            .map(|c| mapping::parse::<FdConversation>(&format!("{} conversation {}", mapping::ticket_record(id), mapping::id_of(c)), c))
            .collect::<Result<Vec<_>, _>>()?;
        self.load_agents().await?;
        let user_ids = mapping::referenced_users(&t, &convs);
        for u in &user_ids {
            self.load_user(*u).await?;
        }
        if let Some(c) = t.company_id {
            self.load_company(c).await?;
        }
        let mut groups = self.group_dir(false).await?;
        if t.group_id.is_some_and(|g| !groups.by_id.contains_key(&g)) {
            groups = self.group_dir(true).await?;
        }
        let mut fields = self.field_dir(false).await?;
        if t.custom_fields.iter().any(|(k, v)| !v.is_null() && k.starts_with("cf_") && !fields.labels.contains_key(k) && k != mapping::REF_FIELD && k != mapping::FALLBACKS_FIELD) {
            fields = self.field_dir(true).await?;
        }
        let (users, problems): (Vec<User>, HashMap<u64, String>) = {
            let c = lock(&self.users);
            let mut users = Vec::new();
            let mut problems = HashMap::new();
            for id in &user_ids {
                match c.get(id) {
                    Some(Ok(u)) => users.push(u.clone()),
                    Some(Err(why)) => {
                        problems.insert(*id, why.clone());
                    }
                    None => {}
                }
            }
            (users, problems)
        };
        let company: Vec<Organization> = t.company_id.and_then(|c| lock(&self.companies).get(&c).cloned()).into_iter().collect();
        let mut lk = mapping::Lookups { user_problems: problems, ..Default::default() };
        for u in &users {
            if let Ok(id) = u.source_id.parse() {
                lk.users.insert(id, u);
            }
        }
        for o in &company {
            if let Ok(id) = o.source_id.parse() {
                lk.companies.insert(id, o);
            }
        }
        lk.groups = groups.by_id.iter().map(|(k, g)| (*k, g)).collect();
        lk.field_labels = fields.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Ok(Some(mapping::ticket_from_fd(&t, &convs, &lk, read)?))
    }

    /// One page of a ticket listing at `cursor`: (id, updated_at, source reference) in listing order, and the
    /// cursor to continue with. Passes run up to `last_pass`, each from `start`; a pass ends on a short page or
    /// once past `until`.
    async fn list_page(&self, mut cursor: ListCursor, start: i64, until: Option<i64>, last_pass: u8) -> Result<(Vec<(u64, i64, Option<String>)>, Option<ListCursor>), ApiError> {
        let context = "GET tickets";
        let per_page = self.cfg.per_page as usize;
        let mut restarted = false;
        let v = loop {
            let since = mapping::format_time(chrono::DateTime::from_timestamp(cursor.since, 0).unwrap_or_default());
            let page = cursor.page.to_string();
            let pp = per_page.to_string();
            let mut q = vec![("updated_since", since.as_str()), ("order_by", "updated_at"), ("order_type", "asc"), ("per_page", pp.as_str()), ("page", page.as_str())];
            if let Some(f) = PASS_FILTERS[cursor.pass as usize] {
                q.push(("filter", f));
            }
            match self.client.get_json(context, &self.url("/api/v2/tickets", &q)).await {
                // The account's page ceiling is lower than configured: restart from the last second seen.
                Err(ApiError::Rejected { status: 400, message, .. }) if cursor.page > 1 && message.contains("page") && !restarted => {
                    tracing::info!(page = cursor.page, "freshdesk refused the page; restarting the listing from the last updated_at seen");
                    cursor = cursor.restart();
                    restarted = true;
                }
                r => break r?,
            }
        };
        let tickets = v.as_array().ok_or_else(|| malformed(context, "not an array"))?;
        let mut rows = Vec::with_capacity(tickets.len());
        let mut refs = HashMap::new();
        for t in tickets {
            let record = mapping::ticket_record(mapping::id_of(t));
            let id = t.get("id").and_then(Value::as_u64).ok_or_else(|| malformed(&record, "no numeric id"))?;
            let at = epoch_secs(&record, t.get("updated_at").and_then(Value::as_str).unwrap_or_default())?;
            rows.push((id, at));
            if let Some(r) = t.get("custom_fields").and_then(|c| c.get(mapping::REF_FIELD)).and_then(Value::as_str) {
                refs.insert(id, r.to_string());
            }
        }
        // The newest row, not the last: a page may repeat earlier records at its end.
        let past_end = until.is_some_and(|end| rows.iter().any(|(_, at)| *at > end));
        let full = rows.len() >= per_page;
        let taken = cursor.take(&rows);
        let next = if full && !past_end {
            Some(cursor.advance(self.cfg.max_page))
        } else if cursor.pass < last_pass {
            Some(ListCursor::start(cursor.pass + 1, start))
        } else {
            None
        };
        Ok((taken.into_iter().map(|(id, at)| (id, at, refs.remove(&id))).collect(), next))
    }

    async fn stream(&self, att: &Attachment) -> Result<ByteStream, ApiError> {
        let context = format!("GET attachment {} ({})", att.source_id, att.file_name);
        let url = self.client.resolve(&att.source_url, &context)?;
        self.client.get_stream(&context, &url).await
    }

    // ----- writing (target) -----------------------------------------------------------------------------

    /// The target user for `user`: an agent with that email, else a contact (created if missing, with
    /// `company_id` when given). Returns (id, is an agent).
    async fn user_id(&self, user: &User, company_id: Option<u64>) -> Result<(u64, bool), TargetError> {
        let email = user.email.trim().to_string();
        let key = email.to_lowercase();
        if let Some(found) = lock(&self.target_users).get(&key) {
            return Ok(*found);
        }
        if let Some(id) = self.target_agent(&key, false).await? {
            lock(&self.target_users).insert(key, (id, true));
            return Ok((id, true));
        }
        let stripe = key.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(usize::from(b))) % self.user_create.len();
        let _creating = self.user_create[stripe].lock().await;
        if let Some(found) = lock(&self.target_users).get(&key) {
            return Ok(*found);
        }
        let context = format!("find user {} by email", user.source_id);
        let find_contact = || async {
            let v = self.client.get_json(&context, &self.url("/api/v2/contacts", &[("email", &email)])).await?;
            Ok::<_, ApiError>(v.as_array().and_then(|a| a.first()).and_then(|c| c.get("id")).and_then(Value::as_u64))
        };
        // Most requesters are new to the target, so the contact is created first (one request) and only a
        // 409 (the address is taken) costs a look-up: by a contact, else by an agent added since the listing.
        let mut body = json!({"email": email, "name": if user.name.trim().is_empty() { email.as_str() } else { user.name.as_str() }});
        if let Some(c) = company_id {
            body["company_id"] = json!(c);
        }
        let ctx = format!("POST contact (user {})", user.source_id);
        let id = match self.client.send_json(&ctx, Method::POST, &self.url("/api/v2/contacts", &[]), Some(&body), Replay::NotProcessedOnly).await {
            Ok(v) => v.get("id").and_then(Value::as_u64).ok_or_else(|| ApiError::from(mapping_err(&ctx, "no id in the answer")))?,
            Err(ApiError::Rejected { status: 409, .. }) => match find_contact().await? {
                Some(id) => id,
                None => match self.target_agent(&key, true).await? {
                    Some(id) => {
                        lock(&self.target_users).insert(key, (id, true));
                        return Ok((id, true));
                    }
                    None => return Err(ApiError::from(mapping_err(&ctx, "409 duplicate, but no contact or agent has that email")).into()),
                },
            },
            Err(e) => return Err(e.into()),
        };
        lock(&self.target_users).insert(key, (id, false));
        Ok((id, false))
    }

    /// Every agent of the account (the paged `GET /agents` listing), each checked against its shape.
    async fn agents(&self) -> Result<Vec<FdAgent>, ApiError> {
        self.list_all("/api/v2/agents").await?.iter().map(|v| Ok(mapping::parse(&format!("freshdesk agent {}", mapping::id_of(v)), v)?)).collect()
    }

    /// The target agent with this (lower-case) email, from the agent listing: read once, again after
    /// [`AGENTS_TTL`] (agents added during a long migration), or at once with `refresh` (an address turned
    /// out to be taken by someone the listing did not have).
    async fn target_agent(&self, key: &str, refresh: bool) -> Result<Option<u64>, ApiError> {
        let mut dir = self.target_agents.lock().await;
        let stale = dir.as_ref().is_none_or(|(at, _)| at.elapsed() > AGENTS_TTL);
        if refresh || stale {
            let by_email = self.agents().await?.into_iter().filter_map(|a| Some((a.contact.email?.trim().to_lowercase(), a.id))).collect();
            *dir = Some((std::time::Instant::now(), Arc::new(by_email)));
        }
        Ok(dir.as_ref().and_then(|(_, d)| d.get(key).copied()))
    }

    /// An assignee must already be an agent of the target: the connector never creates agents (seats).
    async fn agent_id(&self, user: &User) -> Result<u64, TargetError> {
        let key = user.email.trim().to_lowercase();
        match self.target_agent(&key, false).await? {
            Some(id) => Ok(id),
            None => Err(TargetError::Unmappable {
                record: format!("assignee {}", user.email),
                cause: "is not an agent in the target Freshdesk (agents are matched by email, never created; the agent list is re-read every 5 minutes)".into(),
            }),
        }
    }

    async fn company_id(&self, org: &Organization) -> Result<u64, TargetError> {
        let key = org.name.trim().to_lowercase();
        if let Some(id) = lock(&self.target_companies).get(&key) {
            return Ok(*id);
        }
        let context = format!("find company {}", org.source_id);
        let find = || async {
            let v = self.client.get_json(&context, &self.url("/api/v2/companies/autocomplete", &[("name", org.name.trim())])).await?;
            Ok::<_, ApiError>(
                v.get("companies")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find(|c| c.get("name").and_then(Value::as_str).is_some_and(|n| n.trim().eq_ignore_ascii_case(org.name.trim())))
                    .and_then(|c| c.get("id"))
                    .and_then(Value::as_u64),
            )
        };
        let id = match find().await? {
            Some(id) => id,
            None => {
                let ctx = format!("POST company (organization {})", org.source_id);
                let body = json!({"name": org.name.trim(), "domains": org.domains});
                match self.client.send_json(&ctx, Method::POST, &self.url("/api/v2/companies", &[]), Some(&body), Replay::NotProcessedOnly).await {
                    Ok(v) => v.get("id").and_then(Value::as_u64).ok_or_else(|| ApiError::from(mapping_err(&ctx, "no id in the answer")))?,
                    Err(ApiError::Rejected { status: 409, .. }) => find().await?.ok_or_else(|| ApiError::from(mapping_err(&ctx, "409 duplicate but not found by name")))?,
                    Err(e) => return Err(e.into()),
                }
            }
        };
        lock(&self.target_companies).insert(key, id);
        Ok(id)
    }

    async fn group_id(&self, group: &Group) -> Result<u64, TargetError> {
        if let Some(id) = lock(&self.groups).as_ref().and_then(|d| d.by_name.get(&group.name).copied()) {
            return Ok(id);
        }
        let _guard = self.group_create.lock().await;
        let dir = self.group_dir(true).await?;
        if let Some(id) = dir.by_name.get(&group.name) {
            return Ok(*id);
        }
        let context = format!("POST group (group {})", group.source_id);
        match self.client.send_json(&context, Method::POST, &self.url("/api/v2/groups", &[]), Some(&json!({"name": group.name})), Replay::NotProcessedOnly).await {
            Ok(_) | Err(ApiError::Rejected { status: 409, .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let dir = self.group_dir(true).await?;
        dir.by_name.get(&group.name).copied().ok_or_else(|| TargetError::Unmappable { record: format!("group {}", group.name), cause: "created but not listed by the target".into() })
    }

    /// Target ids of everything `t` refers to (the company first: a new requester contact joins it).
    async fn refs(&self, t: &Ticket) -> Result<TargetRefs, TargetError> {
        self.refs_for(t, false).await.map(|(r, _)| r)
    }

    /// [`Self::refs`]; for a create (`inline_requester`), a requester the target has not been asked about
    /// yet and who has no company is left to the create itself: `POST /tickets` with `email` and `name`
    /// finds or creates the contact, which saves a request per new requester (the returned `(email,
    /// name)` goes into the body, and the answer's `requester_id` into the cache).
    async fn refs_for(&self, t: &Ticket, inline_requester: bool) -> Result<(TargetRefs, Option<(String, String)>), TargetError> {
        let company_id = match &t.organization {
            Some(o) => Some(self.company_id(o).await?),
            None => None,
        };
        let mut inline = None;
        let requester_id = match &t.requester {
            Some(u) => {
                let key = u.email.trim().to_lowercase();
                let known = lock(&self.target_users).contains_key(&key);
                if inline_requester && company_id.is_none() && !known && key.contains('@') && self.target_agent(&key, false).await?.is_none() {
                    let name = if u.name.trim().is_empty() { u.email.trim() } else { u.name.as_str() };
                    inline = Some((u.email.trim().to_string(), name.to_string()));
                    None
                } else {
                    Some(self.user_id(u, company_id).await?.0)
                }
            }
            None => None,
        };
        let responder_id = match &t.assignee {
            Some(u) => Some(self.agent_id(u).await?),
            None => None,
        };
        let group_id = match &t.group {
            Some(g) => Some(self.group_id(g).await?),
            None => None,
        };
        Ok((TargetRefs { requester_id, responder_id, group_id, company_id }, inline))
    }

    async fn label_to_name(&self, t: &Ticket) -> Result<HashMap<String, String>, TargetError> {
        let mut fields = self.field_dir(false).await?;
        if t.custom_fields.keys().any(|l| !fields.by_label.contains_key(l)) {
            fields = self.field_dir(true).await?;
        }
        Ok(fields.by_label.clone())
    }

    /// The held bytes of `uploads`, in order (each token is consumed).
    fn take_files(&self, uploads: &[UploadedAttachment]) -> Result<Vec<(String, String, Bytes)>, TargetError> {
        let mut p = lock(&self.pending);
        uploads
            .iter()
            .map(|u| {
                p.remove(&u.token).map(|f| (f.name, f.content_type, f.bytes)).ok_or_else(|| TargetError::Unmappable {
                    record: format!("attachment {}", u.source_id),
                    cause: "its bytes are no longer held (upload and write must happen in one process)".into(),
                })
            })
            .collect()
    }

    fn forget(&self, comments: &[CommentWrite<'_>]) {
        let mut p = lock(&self.pending);
        for cw in comments {
            for u in &cw.uploads {
                p.remove(&u.token);
            }
        }
    }

    /// POST a JSON body, or the same fields as multipart with `files`.
    async fn post_fields(&self, context: &str, url: &Url, body: &Map<String, Value>, files: &[(String, String, Bytes)], replay: Replay) -> Result<Value, ApiError> {
        if files.is_empty() {
            return self.client.send_json(context, Method::POST, url, Some(&Value::Object(body.clone())), replay).await;
        }
        let form = form_fields(body);
        self.client.send_multipart(context, Method::POST, url, &multipart(&form, files), replay).await
    }

    /// Adds one canonical comment as a note (public or private; notes never email the requester).
    async fn add_note(&self, ticket: u64, cw: &CommentWrite<'_>) -> Result<(), TargetError> {
        let c = cw.comment;
        let (user_id, is_agent) = self.user_id(&c.author, None).await?;
        let html = mapping::body_to_fd(c);
        let mut body = Map::new();
        body.insert("body".into(), json!(html));
        body.insert("private".into(), json!(!c.public));
        body.insert("incoming".into(), json!(!is_agent));
        body.insert("user_id".into(), json!(user_id));
        let files = self.take_files(&cw.uploads)?;
        let context = format!("POST ticket {ticket} note (source comment {})", c.source_id);
        let url = self.url(&format!("/api/v2/tickets/{ticket}/notes"), &[]);
        let v = match self.post_fields(&context, &url, &body, &files, Replay::NotProcessedOnly).await {
            Err(ApiError::NotFound { .. }) => return Err(TargetError::NotFound(TargetId(ticket.to_string()))),
            r => r?,
        };
        if mapping::has_inline(&html, &c.attachments, &cw.uploads) {
            let cid = v.get("id").and_then(Value::as_u64).ok_or_else(|| ApiError::from(mapping_err(&context, "no id in the answer")))?;
            let fixed = mapping::repoint_inline(&html, &c.attachments, &cw.uploads, &attachment_urls(&v));
            let ctx = format!("PUT conversation {cid} (inline images)");
            self.client.send_json(&ctx, Method::PUT, &self.url(&format!("/api/v2/conversations/{cid}"), &[]), Some(&json!({"body": fixed})), Replay::Retry).await?;
        }
        Ok(())
    }

    async fn create(&self, source_ref: &str, ticket: &Ticket, comments: &[CommentWrite<'_>]) -> Result<TargetId, TargetError> {
        mapping::status_to_fd(ticket).map_err(unmappable)?;
        let (refs, inline_requester) = self.refs_for(ticket, true).await?;
        let names = self.label_to_name(ticket).await?;
        let cf = mapping::custom_fields_to_fd(ticket, &names, false).map_err(unmappable)?;
        let mut body = mapping::ticket_fields_to_fd(ticket, &refs, cf, Some(source_ref)).map_err(unmappable)?;
        if let Some((email, name)) = &inline_requester {
            body.insert("email".into(), json!(email));
            body.insert("name".into(), json!(name));
        }
        // The description carries the first comment when it is public (Freshdesk shows it to the requester).
        let (first, rest) = match comments.split_first() {
            Some((f, rest)) if f.comment.public => (Some(f), rest),
            _ => (None, comments),
        };
        let desc = first.map(|f| mapping::body_to_fd(f.comment)).unwrap_or_else(|| format!("<div>{}</div>", mapping::DESCRIPTION_PLACEHOLDER));
        body.insert("description".into(), json!(desc));
        let files = match first {
            Some(f) => self.take_files(&f.uploads)?,
            None => Vec::new(),
        };
        let context = format!("POST ticket {} ({source_ref})", ticket.source_id);
        let v = self.post_fields(&context, &self.url("/api/v2/tickets", &[]), &body, &files, Replay::NotProcessedOnly).await?;
        let id = v.get("id").and_then(Value::as_u64).ok_or_else(|| ApiError::from(mapping_err(&context, "no id in the answer")))?;
        if let (Some((email, _)), Some(rid)) = (&inline_requester, v.get("requester_id").and_then(Value::as_u64)) {
            lock(&self.target_users).insert(email.to_lowercase(), (rid, false));
        }
        if let Some(f) = first.filter(|f| mapping::has_inline(&desc, &f.comment.attachments, &f.uploads)) {
            let fixed = mapping::repoint_inline(&desc, &f.comment.attachments, &f.uploads, &attachment_urls(&v));
            let ctx = format!("PUT ticket {id} description (inline images)");
            self.client.send_json(&ctx, Method::PUT, &self.url(&format!("/api/v2/tickets/{id}"), &[]), Some(&json!({"description": fixed})), Replay::Retry).await?;
        }
        for cw in rest {
            self.add_note(id, cw).await?;
        }
        Ok(TargetId(id.to_string()))
    }

    /// Target ticket ids whose `cf_deltadesk_ref` equals `source_ref`, by search (lags) and by a scan of
    /// recently updated tickets (an interrupted create's orphan is recent).
    async fn find_ref(&self, source_ref: &str) -> Result<Vec<TargetId>, ApiError> {
        let mut found: HashSet<u64> = HashSet::new();
        let field = mapping::REF_FIELD.trim_start_matches("cf_");
        let q = format!("\"{field}:'{}'\"", source_ref.replace('\'', "\\'"));
        for page in 1..=SEARCH_MAX_PAGES {
            let p = page.to_string();
            let context = format!("search tickets by reference {source_ref}");
            let v = self.client.get_json(&context, &self.url("/api/v2/search/tickets", &[("query", &q), ("page", &p)])).await?;
            let results = v.get("results").and_then(Value::as_array).ok_or_else(|| malformed(&context, "no results array"))?;
            for t in results {
                let t: FdTicket = mapping::parse(&mapping::ticket_record(mapping::id_of(t)), t)?;
                if t.source_ref() == Some(source_ref) && !t.is_gone() {
                    found.insert(t.id);
                }
            }
            if results.len() < SEARCH_PAGE {
                break;
            }
        }
        let since = chrono::Utc::now() - chrono::Duration::seconds(self.cfg.ref_scan_secs as i64);
        let since = mapping::format_time(since);
        for page in 1..=REF_SCAN_PAGES {
            let p = page.to_string();
            let q = [("updated_since", since.as_str()), ("order_by", "updated_at"), ("order_type", "desc"), ("per_page", "100"), ("page", p.as_str())];
            let v = self.client.get_json("scan recent tickets", &self.url("/api/v2/tickets", &q)).await?;
            let list = v.as_array().ok_or_else(|| malformed("scan recent tickets", "not an array"))?;
            for t in list {
                if t.get("custom_fields").and_then(|c| c.get(mapping::REF_FIELD)).and_then(Value::as_str) == Some(source_ref) {
                    if let Some(id) = t.get("id").and_then(Value::as_u64) {
                        found.insert(id);
                    }
                }
            }
            if list.len() < 100 {
                break;
            }
        }
        let mut ids: Vec<u64> = found.into_iter().collect();
        ids.sort_unstable();
        Ok(ids.into_iter().map(|i| TargetId(i.to_string())).collect())
    }
}

fn mapping_err(record: &str, cause: &str) -> MappingError {
    MappingError { record: record.to_string(), cause: cause.to_string() }
}

fn target_num(id: &TargetId) -> Option<u64> {
    id.0.trim().parse().ok()
}

/// `attachment_url`s of a created ticket or conversation, in order.
fn attachment_urls(v: &Value) -> Vec<String> {
    v.get("attachments").and_then(Value::as_array).into_iter().flatten().filter_map(|a| a.get("attachment_url").and_then(Value::as_str).map(str::to_string)).collect()
}

/// A JSON body as form fields: arrays as `key[]`, custom fields as `custom_fields[name]`, nulls left out.
fn form_fields(body: &Map<String, Value>) -> Vec<(String, String)> {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    };
    let mut out = Vec::new();
    for (k, v) in body {
        match v {
            Value::Array(a) => out.extend(a.iter().filter_map(text).map(|s| (format!("{k}[]"), s))),
            Value::Object(o) if k == "custom_fields" => out.extend(o.iter().filter_map(|(n, x)| text(x).map(|s| (format!("custom_fields[{n}]"), s)))),
            other => {
                if let Some(s) = text(other) {
                    out.push((k.clone(), s));
                }
            }
        }
    }
    out
}

#[async_trait]
impl HelpDeskSource for Freshdesk {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn publication_lag(&self) -> Duration {
        Duration::from_secs(self.cfg.publication_lag_secs)
    }

    async fn changes(&self, window: &Window, cursor: Option<&str>) -> Result<ChangePage, SourceError> {
        let cursor = match cursor {
            None => ListCursor::start(0, window.start.timestamp().max(0)),
            Some(c) => ListCursor::decode(c).ok_or_else(|| SourceError::Malformed { record: "freshdesk listing cursor".into(), cause: format!("unreadable cursor {c:?}") })?,
        };
        let pass = cursor.pass;
        let (rows, next) = self.list_page(cursor, window.start.timestamp().max(0), Some(window.end.timestamp()), 2).await?;
        let changes = rows
            .into_iter()
            .map(|(id, at, _)| ChangeRef { ticket_id: TicketId(id.to_string()), updated_at: chrono::DateTime::from_timestamp(at, 0).unwrap_or_default(), deleted: pass > 0 })
            .collect();
        Ok(ChangePage { changes, next_cursor: next.map(|c| c.encode()) })
    }

    async fn ticket(&self, id: &TicketId) -> Result<Option<Ticket>, SourceError> {
        let Ok(n) = id.0.trim().parse::<u64>() else {
            return Err(SourceError::Malformed { record: mapping::ticket_record(id), cause: "not a numeric Freshdesk id".into() });
        };
        Ok(self.read(n, ReadAs::Source).await?)
    }

    async fn download(&self, attachment: &Attachment) -> Result<ByteStream, SourceError> {
        Ok(self.stream(attachment).await?)
    }

    async fn list_ticket_ids(&self, cursor: Option<&str>) -> Result<(Vec<TicketId>, Option<String>), SourceError> {
        let c = match cursor {
            None => ListCursor::start(0, 0),
            Some(c) => ListCursor::decode(c).ok_or_else(|| SourceError::Malformed { record: "freshdesk listing cursor".into(), cause: "unreadable cursor".into() })?,
        };
        let (rows, next) = self.list_page(c, 0, None, 0).await?;
        Ok((rows.into_iter().map(|(id, _, _)| TicketId(id.to_string())).collect(), next.map(|c| c.encode())))
    }

    fn api_stats(&self) -> ApiStats {
        self.client.counters().snapshot()
    }

    async fn vocabulary(&self) -> Result<Vocabulary, SourceError> {
        Ok(self.read_vocabulary().await?)
    }

    async fn clock_offset(&self) -> Result<Option<chrono::Duration>, SourceError> {
        // Any answer carries the account's `Date`; the ticket fields are one small call.
        let url = self.url("/api/v2/ticket_fields", &[]);
        Ok(self.client.clock().source_offset(self.client.get_json("GET ticket_fields (clock)", &url)).await?)
    }
}

#[async_trait]
impl HelpDeskTarget for Freshdesk {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn max_attachment_bytes(&self) -> u64 {
        self.cfg.max_attachment_bytes
    }

    async fn find_by_source_ref(&self, source_ref: &str) -> Result<Vec<TargetId>, TargetError> {
        Ok(self.find_ref(source_ref).await?)
    }

    async fn create_ticket(&self, source_ref: &str, ticket: &Ticket, comments: &[CommentWrite<'_>]) -> Result<TargetId, TargetError> {
        let result = self.create(source_ref, ticket, comments).await;
        // Whatever happened, the held bytes of this ticket are not needed again (a retry uploads anew).
        self.forget(comments);
        result
    }

    async fn update_fields(&self, id: &TargetId, ticket: &Ticket) -> Result<(), TargetError> {
        let n = target_num(id).ok_or_else(|| TargetError::NotFound(id.clone()))?;
        mapping::status_to_fd(ticket).map_err(unmappable)?;
        let refs = self.refs(ticket).await?;
        let names = self.label_to_name(ticket).await?;
        let cf = mapping::custom_fields_to_fd(ticket, &names, true).map_err(unmappable)?;
        let body = mapping::ticket_fields_to_fd(ticket, &refs, cf, None).map_err(unmappable)?;
        let context = format!("PUT ticket {n}");
        match self.client.send_json(&context, Method::PUT, &self.url(&format!("/api/v2/tickets/{n}"), &[]), Some(&Value::Object(body)), Replay::Retry).await {
            Err(ApiError::NotFound { .. }) => Err(TargetError::NotFound(id.clone())),
            r => r.map(|_| ()).map_err(Into::into),
        }
    }

    async fn append_comment(&self, id: &TargetId, comment: &CommentWrite<'_>) -> Result<(), TargetError> {
        let n = target_num(id).ok_or_else(|| TargetError::NotFound(id.clone()))?;
        let result = self.add_note(n, comment).await;
        self.forget(std::slice::from_ref(comment));
        result
    }

    async fn comment_count(&self, id: &TargetId) -> Result<usize, TargetError> {
        let n = target_num(id).ok_or_else(|| TargetError::NotFound(id.clone()))?;
        let Some(t) = self.raw_ticket(n).await?.filter(|t| !t.deleted) else {
            return Err(TargetError::NotFound(id.clone()));
        };
        let Some(convs) = self.conversations(n).await? else {
            return Err(TargetError::NotFound(id.clone()));
        };
        let desc = t.description_text.as_deref().unwrap_or_else(|| t.description.as_deref().unwrap_or_default());
        let placeholder = desc.trim() == mapping::DESCRIPTION_PLACEHOLDER;
        Ok(convs.len() + usize::from(!placeholder))
    }

    async fn upload(&self, attachment: &Attachment, body: ByteStream) -> Result<UploadedAttachment, TargetError> {
        let limit = self.cfg.max_attachment_bytes;
        let too_large = |size: u64| TargetError::TooLarge { name: attachment.file_name.clone(), size, limit };
        if attachment.size > limit {
            return Err(too_large(attachment.size));
        }
        // Freshdesk takes files only inside the create/note request: hold the bytes until then.
        let mut buf = BytesMut::new();
        let mut body = body;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(TargetError::Io)?;
            if (buf.len() + chunk.len()) as u64 > limit {
                return Err(too_large((buf.len() + chunk.len()) as u64));
            }
            buf.extend_from_slice(&chunk);
        }
        let bytes = buf.freeze();
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let n = self.upload_seq.fetch_add(1, Ordering::Relaxed);
        let token = format!("held-{n}-{}", &sha256[..12]);
        let size = bytes.len() as u64;
        let content_type = if attachment.content_type.trim().is_empty() { "application/octet-stream".to_string() } else { attachment.content_type.clone() };
        lock(&self.pending).insert(token.clone(), Pending { name: attachment.file_name.clone(), content_type, bytes });
        Ok(UploadedAttachment { source_id: attachment.source_id.clone(), token, content_url: String::new(), size, sha256 })
    }

    async fn delete_ticket(&self, id: &TargetId) -> Result<(), TargetError> {
        let Some(n) = target_num(id) else { return Ok(()) };
        let context = format!("DELETE ticket {n}");
        match self.client.send_json(&context, Method::DELETE, &self.url(&format!("/api/v2/tickets/{n}"), &[]), None, Replay::Retry).await {
            Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn upsert_user(&self, user: &User) -> Result<String, TargetError> {
        Ok(self.user_id(user, None).await?.0.to_string())
    }

    async fn upsert_organization(&self, org: &Organization) -> Result<String, TargetError> {
        Ok(self.company_id(org).await?.to_string())
    }

    async fn upsert_group(&self, group: &Group) -> Result<String, TargetError> {
        Ok(self.group_id(group).await?.to_string())
    }

    async fn vocabulary(&self) -> Result<Vocabulary, TargetError> {
        Ok(self.read_vocabulary().await?)
    }

    async fn list_tickets(&self, cursor: Option<&str>) -> Result<TargetListPage, TargetError> {
        let c = match cursor {
            None => ListCursor::start(0, 0),
            Some(c) => ListCursor::decode(c).ok_or_else(|| TargetError::Rejected { context: "freshdesk listing cursor".into(), status: 400, message: "unreadable cursor".into() })?,
        };
        let (rows, next) = self.list_page(c, 0, None, 0).await?;
        Ok(TargetListPage { tickets: rows.into_iter().map(|(id, _, r)| (TargetId(id.to_string()), r)).collect(), next_cursor: next.map(|c| c.encode()) })
    }

    async fn read_ticket(&self, id: &TargetId) -> Result<Option<Ticket>, TargetError> {
        let Some(n) = target_num(id) else { return Ok(None) };
        Ok(self.read(n, ReadAs::Target).await?)
    }

    async fn download(&self, attachment: &Attachment) -> Result<ByteStream, TargetError> {
        Ok(self.stream(attachment).await?)
    }

    fn api_stats(&self) -> ApiStats {
        self.client.counters().snapshot()
    }
}

#[cfg(test)]
mod tests;

//! The Zendesk Support connector, source and target.
//!
//! - `config.rs`: [`ZendeskConfig`].
//! - `client.rs`: [`ZendeskClient`] (auth, counters, retries, error classification).
//! - `mapping.rs`: pure JSON <-> canonical translation.
//! - `batch.rs`: concurrent target creates coalesced into `imports/tickets/create_many` jobs.
//! - this file: [`Zendesk`], the port implementations and the in-memory lookup caches (users, groups,
//!   organizations, ticket fields), which live as long as the connector.

mod batch;
mod client;
mod config;
pub mod mapping;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deltadesk_core::model::{Attachment, Group, Organization, TargetId, Ticket, TicketId, User};
use deltadesk_core::ports::{
    ApiStats, ByteStream, ChangePage, CommentWrite, HelpDeskSource, HelpDeskTarget, SourceError,
    TargetError, TargetListPage, UploadedAttachment,
};
use deltadesk_core::window::Window;
use deltadesk_core::vocabulary::{FieldDef, FieldKind, FieldOption, OrgDef, Vocabulary};
use futures::StreamExt;
use reqwest::{Method, Url};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub use client::ZendeskClient;
pub use config::{ZendeskConfig, MAX_BATCH_LINGER_MS, MAX_PER_PAGE};

use crate::http::{query, ApiError};
use crate::registry::ConfigError;
use client::Replay;
use mapping::{
    MappingError, TargetRefs, ZdComment, ZdGroup, ZdOrganization, ZdTicket, ZdTicketField, ZdUser,
};

/// The connector kind in configs and reports.
pub const KIND: &str = "zendesk";

/// Comments page size (the API's maximum).
const COMMENTS_PAGE: &str = "100";
/// Ticket list page size (the API's maximum).
const TICKETS_PAGE: &str = "100";
/// `show_many` accepts up to 100 ids.
const SHOW_MANY: usize = 100;
/// Safety stop for `next_page` chains.
const MAX_PAGES: usize = 10_000;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn malformed(record: impl Into<String>, cause: impl Into<String>) -> ApiError {
    ApiError::Malformed {
        record: record.into(),
        cause: cause.into(),
    }
}

impl From<MappingError> for ApiError {
    fn from(e: MappingError) -> Self {
        ApiError::Malformed {
            record: e.record,
            cause: e.cause,
        }
    }
}

fn unmappable(e: MappingError) -> TargetError {
    TargetError::Unmappable {
        record: e.record,
        cause: e.cause,
    }
}

/// Ticket fields of one account: custom fields by id (titles) and by title (ids).
#[derive(Debug, Default)]
struct FieldDir {
    titles: HashMap<u64, String>,
    by_title: HashMap<String, u64>,
}

/// Groups of one account, by id and by name.
#[derive(Debug, Default)]
struct GroupDir {
    by_id: HashMap<u64, Group>,
    by_name: HashMap<String, u64>,
}

/// A Zendesk account, usable as source and as target.
#[derive(Debug)]
pub struct Zendesk {
    cfg: ZendeskConfig,
    client: ZendeskClient,
    // Source-side lookups, by Zendesk id. Users that cannot be mapped keep the reason.
    users: Mutex<HashMap<u64, Result<User, String>>>,
    organizations: Mutex<HashMap<u64, Organization>>,
    groups: Mutex<Option<Arc<GroupDir>>>,
    fields: Mutex<Option<Arc<FieldDir>>>,
    // Target-side ids, by email (lower case) and by name.
    target_users: Mutex<HashMap<String, u64>>,
    target_organizations: Mutex<HashMap<String, u64>>,
    /// Serializes "list groups, else create" so two workers never create the same group twice.
    group_create: tokio::sync::Mutex<()>,
    /// One look-up at a time per email and for the field list: workers released together by a batch answer
    /// would otherwise all miss the cache at once and ask for the same user (or fields) several times.
    user_flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    fields_flight: tokio::sync::Mutex<()>,
    /// Target creates coalesced into `create_many` jobs; `None` when `create_batch_linger_ms` is 0.
    batcher: Option<batch::CreateBatcher>,
}

impl Zendesk {
    /// Builds the connector: validates `cfg` and reads the API token from the environment variable named by
    /// `cfg.token_env` (unset or empty -> [`ConfigError::MissingSecret`]).
    pub fn new(cfg: ZendeskConfig) -> Result<Self, ConfigError> {
        Self::with_secrets(cfg, &crate::registry::EnvSecrets)
    }

    /// Builds the connector, looking the API token up by the name in `cfg.token_env` in `secrets`.
    pub fn with_secrets(cfg: ZendeskConfig, secrets: &dyn crate::registry::Secrets) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let token = match &cfg.token_env {
            None => None,
            Some(name) => match secrets.secret(name) {
                Some(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
                _ => {
                    return Err(ConfigError::MissingSecret {
                        field: "token_env".into(),
                        env_var: name.clone(),
                    })
                }
            },
        };
        Self::with_token(cfg, token)
    }

    /// Builds the connector with an explicit token (tests, or secrets fetched by other means).
    pub fn with_token(cfg: ZendeskConfig, token: Option<String>) -> Result<Self, ConfigError> {
        let client = ZendeskClient::new(&cfg, token)?;
        let batcher = (cfg.create_batch_linger_ms > 0)
            .then(|| batch::CreateBatcher::new(client.clone(), Duration::from_millis(cfg.create_batch_linger_ms)));
        Ok(Zendesk {
            cfg,
            client,
            users: Mutex::default(),
            organizations: Mutex::default(),
            groups: Mutex::default(),
            fields: Mutex::default(),
            target_users: Mutex::default(),
            target_organizations: Mutex::default(),
            group_create: tokio::sync::Mutex::new(()),
            user_flights: Mutex::default(),
            fields_flight: tokio::sync::Mutex::new(()),
            batcher,
        })
    }

    pub fn config(&self) -> &ZendeskConfig {
        &self.cfg
    }

    pub fn client(&self) -> &ZendeskClient {
        &self.client
    }

    fn url(&self, path: &str, q: &[(&str, &str)]) -> Url {
        self.client.api_url(path, &query(q))
    }

    // ----- lookups --------------------------------------------------------------------------------------

    /// Every object of a list endpoint, following `next_page`.
    async fn list_all(&self, path: &str, q: &[(&str, &str)], key: &str) -> Result<Vec<Value>, ApiError> {
        let context = format!("GET {path}");
        let mut url = self.url(path, q);
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let v = self.client.get_json(&context, &url).await?;
            let items = v
                .get(key)
                .and_then(Value::as_array)
                .ok_or_else(|| malformed(&context, format!("no {key} array")))?;
            out.extend(items.iter().cloned());
            // Offset pagination names `next_page`; cursor pagination says `meta.has_more` and
            // `meta.after_cursor`, which is asked for on our own base URL like every other cursor we follow.
            if let Some(next) = v.get("next_page").and_then(Value::as_str).filter(|n| !n.is_empty()) {
                url = self.client.resolve(next, &context)?;
                continue;
            }
            match next_cursor(&v) {
                Ok(Some(after)) => {
                    let mut q2 = q.to_vec();
                    q2.push(("page[after]", &after));
                    url = self.url(path, &q2);
                }
                Ok(None) => return Ok(out),
                Err(cause) => return Err(malformed(&context, cause)),
            }
        }
        Err(malformed(&context, "too many pages"))
    }

    async fn field_dir(&self, refresh: bool) -> Result<Arc<FieldDir>, ApiError> {
        if !refresh {
            if let Some(d) = lock(&self.fields).clone() {
                return Ok(d);
            }
            // First load: one request, the others wait for its answer.
            let _flight = self.fields_flight.lock().await;
            if let Some(d) = lock(&self.fields).clone() {
                return Ok(d);
            }
            return self.load_field_dir().await;
        }
        self.load_field_dir().await
    }

    async fn load_field_dir(&self) -> Result<Arc<FieldDir>, ApiError> {
        let mut dir = FieldDir::default();
        for v in self
            .list_all("/api/v2/ticket_fields", &[], "ticket_fields")
            .await?
        {
            let f: ZdTicketField =
                mapping::parse(&format!("zendesk ticket field {}", mapping::id_of(&v)), &v)?;
            if !f.is_custom() {
                continue;
            }
            dir.by_title.entry(f.title.clone()).or_insert(f.id);
            dir.titles.insert(f.id, f.title);
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
        for v in self.list_all("/api/v2/groups", &[], "groups").await? {
            let g: ZdGroup = mapping::parse(&format!("zendesk group {}", mapping::id_of(&v)), &v)?;
            dir.by_name.entry(g.name.clone()).or_insert(g.id);
            dir.by_id.insert(g.id, mapping::group_from_zd(&g));
        }
        let dir = Arc::new(dir);
        *lock(&self.groups) = Some(dir.clone());
        Ok(dir)
    }

    /// Groups, organizations, agents and custom fields (with drop-down options) as `mapping init` needs
    /// them. Zendesk holds every canonical status, priority and type as itself.
    async fn read_vocabulary(&self) -> Result<Vocabulary, ApiError> {
        let all = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let mut voc = Vocabulary {
            statuses: all(&["new", "open", "pending", "hold", "solved", "closed"]),
            priorities: all(&["low", "normal", "high", "urgent"]),
            ticket_types: all(&["question", "incident", "problem", "task"]),
            // Writes create missing groups and organizations, and unknown people as end users.
            creates_groups: true,
            creates_organizations: true,
            accepts_unknown_agents: true,
            ..Vocabulary::default()
        };
        voc.groups = self.group_dir(true).await?.by_name.keys().cloned().collect();
        for v in self.list_all("/api/v2/organizations", &[], "organizations").await? {
            let o: ZdOrganization = mapping::parse(&format!("zendesk organization {}", mapping::id_of(&v)), &v)?;
            voc.organizations.push(OrgDef { name: o.name, domains: o.domain_names });
        }
        for v in self.list_all("/api/v2/users", &[("role[]", "agent"), ("role[]", "admin")], "users").await? {
            let u: ZdUser = mapping::parse(&format!("zendesk user {}", mapping::id_of(&v)), &v)?;
            if let (Some(email), Some("agent" | "admin")) = (u.email, u.role.as_deref()) {
                voc.agents.push(email);
            }
        }
        for v in self.list_all("/api/v2/ticket_fields", &[], "ticket_fields").await? {
            let f: ZdTicketField = mapping::parse(&format!("zendesk ticket field {}", mapping::id_of(&v)), &v)?;
            if !f.is_custom() {
                continue;
            }
            let kind = match f.field_type.as_deref() {
                Some("text" | "textarea" | "regexp" | "partialcreditcard") => FieldKind::Text,
                Some("integer" | "decimal") => FieldKind::Number,
                Some("checkbox") => FieldKind::Checkbox,
                Some("date") => FieldKind::Date,
                Some("tagger") => FieldKind::DropDown,
                Some("multiselect") => FieldKind::MultiSelect,
                _ => FieldKind::Other,
            };
            let options = v
                .get("custom_field_options")
                .and_then(Value::as_array)
                .map(|os| {
                    os.iter()
                        .filter_map(|o| Some(FieldOption { value: o.get("value")?.as_str()?.to_string(), label: o.get("name")?.as_str()?.to_string() }))
                        .collect()
                })
                .unwrap_or_default();
            voc.custom_fields.push(FieldDef { title: f.title, kind, options });
        }
        Ok(voc)
    }

    fn cache_user(&self, v: &Value) {
        if let Ok(u) = mapping::parse::<ZdUser>("zendesk user", v) {
            let mapped = mapping::user_from_zd(&u).map_err(|e| e.cause);
            lock(&self.users).insert(u.id, mapped);
        }
    }

    /// Loads the users not yet cached through `users/show_many`.
    async fn load_users(&self, ids: &[u64]) -> Result<(), ApiError> {
        let missing: Vec<u64> = {
            let c = lock(&self.users);
            ids.iter()
                .copied()
                .filter(|id| !c.contains_key(id))
                .collect()
        };
        for chunk in missing.chunks(SHOW_MANY) {
            let ids = chunk
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",");
            let mut url = self.client.api_url("/api/v2/users/show_many", "");
            url.set_query(Some(&format!("ids={ids}")));
            let v = self.client.get_json("GET users/show_many", &url).await?;
            for u in v
                .get("users")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                self.cache_user(u);
            }
        }
        Ok(())
    }

    async fn load_organization(&self, id: u64) -> Result<(), ApiError> {
        if lock(&self.organizations).contains_key(&id) {
            return Ok(());
        }
        let url = self.url(
            "/api/v2/organizations/show_many",
            &[("ids", &id.to_string())],
        );
        let v = self
            .client
            .get_json("GET organizations/show_many", &url)
            .await?;
        for o in v
            .get("organizations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let o: ZdOrganization =
                mapping::parse(&format!("zendesk organization {}", mapping::id_of(o)), o)?;
            lock(&self.organizations).insert(o.id, mapping::organization_from_zd(&o));
        }
        Ok(())
    }

    // ----- reading tickets ------------------------------------------------------------------------------

    /// All comments of a ticket, oldest first (`None` if the ticket is gone). Sideloaded users are cached.
    async fn comments(&self, id: u64, include_users: bool) -> Result<Option<Vec<Value>>, ApiError> {
        let path = format!("/api/v2/tickets/{id}/comments");
        let context = format!("GET ticket {id} comments");
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut q = vec![("page[size]", COMMENTS_PAGE)];
            if include_users {
                q.push(("include", "users"));
            }
            if let Some(a) = &after {
                q.push(("page[after]", a));
            }
            let v = match self.client.get_json(&context, &self.url(&path, &q)).await {
                Err(ApiError::NotFound { .. }) => return Ok(None),
                r => r?,
            };
            let comments = v
                .get("comments")
                .and_then(Value::as_array)
                .ok_or_else(|| malformed(&context, "no comments array"))?;
            out.extend(comments.iter().cloned());
            for u in v
                .get("users")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                self.cache_user(u);
            }
            match next_cursor(&v) {
                Ok(Some(c)) => after = Some(c),
                Ok(None) => return Ok(Some(out)),
                Err(cause) => return Err(malformed(&context, cause)),
            }
        }
        Err(malformed(&context, "too many pages"))
    }

    /// A ticket in canonical form, or `None` if it does not exist (any more).
    async fn read(&self, id: u64) -> Result<Option<Ticket>, ApiError> {
        let record = mapping::ticket_record(id);
        let context = format!("GET ticket {id}");
        let v = match self
            .client
            .get_json(&context, &self.url(&format!("/api/v2/tickets/{id}"), &[]))
            .await
        {
            Err(ApiError::NotFound { .. }) => return Ok(None),
            r => r?,
        };
        let tv = v
            .get("ticket")
            .ok_or_else(|| malformed(&record, "no ticket object"))?;
        let t: ZdTicket = mapping::parse(&record, tv)?;
        let Some(raw_comments) = self.comments(id, true).await? else {
            return Ok(None);
        };
        let comments = raw_comments
            .iter()
            .map(|c| {
                mapping::parse::<ZdComment>(&mapping::comment_record(id, mapping::id_of(c)), c)
            })
            .collect::<Result<Vec<_>, _>>()?;

        let user_ids = mapping::referenced_users(&t, &comments);
        self.load_users(&user_ids).await?;
        if let Some(org) = t.organization_id {
            self.load_organization(org).await?;
        }
        let mut groups = self.group_dir(false).await?;
        if t.group_id.is_some_and(|g| !groups.by_id.contains_key(&g)) {
            groups = self.group_dir(true).await?;
        }
        let mut fields = self.field_dir(false).await?;
        if t.custom_fields
            .iter()
            .any(|f| !f.value.is_null() && !fields.titles.contains_key(&f.id))
        {
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
        let orgs: Vec<Organization> = t
            .organization_id
            .and_then(|o| lock(&self.organizations).get(&o).cloned())
            .into_iter()
            .collect();
        let mut lk = mapping::Lookups {
            user_problems: problems,
            ..Default::default()
        };
        for u in &users {
            if let Ok(id) = u.source_id.parse() {
                lk.users.insert(id, u);
            }
        }
        for o in &orgs {
            if let Ok(id) = o.source_id.parse() {
                lk.organizations.insert(id, o);
            }
        }
        lk.groups = groups.by_id.iter().map(|(k, g)| (*k, g)).collect();
        lk.field_titles = fields
            .titles
            .iter()
            .map(|(k, t)| (*k, t.as_str()))
            .collect();
        Ok(Some(mapping::ticket_from_zd(&t, &comments, &lk)?))
    }

    /// A page of `GET /api/v2/tickets`: (id, external_id) and the next cursor.
    async fn ticket_page(
        &self,
        cursor: Option<&str>,
    ) -> Result<(Vec<(u64, Option<String>)>, Option<String>), ApiError> {
        let context = "GET tickets";
        let mut q = vec![("page[size]", TICKETS_PAGE)];
        if let Some(c) = cursor {
            q.push(("page[after]", c));
        }
        let v = self
            .client
            .get_json(context, &self.url("/api/v2/tickets", &q))
            .await?;
        let tickets = ticket_list(&v, context)?;
        let next = next_cursor(&v).map_err(|cause| malformed(context, cause))?;
        Ok((tickets, next))
    }

    async fn stream(&self, att: &Attachment) -> Result<ByteStream, ApiError> {
        let context = format!("GET attachment {} ({})", att.source_id, att.file_name);
        let url = self.client.resolve(&att.source_url, &context)?;
        self.client.get_stream(&context, &url).await
    }

    // ----- writing (target) -----------------------------------------------------------------------------

    async fn user_id(&self, user: &User) -> Result<u64, TargetError> {
        let key = user.email.trim().to_lowercase();
        if let Some(id) = lock(&self.target_users).get(&key) {
            return Ok(*id);
        }
        let flight = lock(&self.user_flights).entry(key.clone()).or_default().clone();
        let _flight = flight.lock().await;
        if let Some(id) = lock(&self.target_users).get(&key) {
            return Ok(*id);
        }
        let body = json!({"user": {"email": user.email.trim(), "name": user.name, "role": user.role.as_str()}});
        let context = format!("POST users/create_or_update (user {})", user.source_id);
        let url = self.url("/api/v2/users/create_or_update", &[]);
        let v = self
            .client
            .send_json(&context, Method::POST, &url, Some(&body), Replay::Retry)
            .await?;
        let id = object_id(&v, "user")
            .ok_or_else(|| ApiError::from(mapping_err(&context, "no user.id in the answer")))?;
        lock(&self.target_users).insert(key, id);
        Ok(id)
    }

    async fn organization_id(&self, org: &Organization) -> Result<u64, TargetError> {
        if let Some(id) = lock(&self.target_organizations).get(&org.name) {
            return Ok(*id);
        }
        let body = json!({"organization": {"name": org.name, "external_id": org.name}});
        let context = format!(
            "POST organizations/create_or_update (organization {})",
            org.source_id
        );
        let url = self.url("/api/v2/organizations/create_or_update", &[]);
        let v = self
            .client
            .send_json(&context, Method::POST, &url, Some(&body), Replay::Retry)
            .await?;
        let id = object_id(&v, "organization").ok_or_else(|| {
            ApiError::from(mapping_err(&context, "no organization.id in the answer"))
        })?;
        lock(&self.target_organizations).insert(org.name.clone(), id);
        Ok(id)
    }

    async fn group_id(&self, group: &Group) -> Result<u64, TargetError> {
        if let Some(id) = lock(&self.groups)
            .as_ref()
            .and_then(|d| d.by_name.get(&group.name).copied())
        {
            return Ok(id);
        }
        let _guard = self.group_create.lock().await;
        let dir = self.group_dir(true).await?;
        if let Some(id) = dir.by_name.get(&group.name) {
            return Ok(*id);
        }
        let context = format!("POST groups (group {})", group.source_id);
        let url = self.url("/api/v2/groups", &[]);
        let body = json!({"group": {"name": group.name}});
        let v = self
            .client
            .send_json(
                &context,
                Method::POST,
                &url,
                Some(&body),
                Replay::NotProcessedOnly,
            )
            .await?;
        let id = object_id(&v, "group")
            .ok_or_else(|| ApiError::from(mapping_err(&context, "no group.id in the answer")))?;
        // Refresh the directory so it includes the new group.
        let mut updated = GroupDir::default();
        updated.by_id.clone_from(&dir.by_id);
        updated.by_name.clone_from(&dir.by_name);
        updated.by_id.insert(
            id,
            Group {
                source_id: id.to_string(),
                name: group.name.clone(),
            },
        );
        updated.by_name.insert(group.name.clone(), id);
        *lock(&self.groups) = Some(Arc::new(updated));
        Ok(id)
    }

    /// Target ids of everything `t` refers to; with `clear_others` all other custom fields are nulled.
    async fn refs(&self, t: &Ticket, clear_others: bool) -> Result<TargetRefs, TargetError> {
        let requester_id = match &t.requester {
            Some(u) => Some(self.user_id(u).await?),
            None => None,
        };
        let assignee_id = match &t.assignee {
            Some(u) => Some(self.user_id(u).await?),
            None => None,
        };
        let group_id = match &t.group {
            Some(g) => Some(self.group_id(g).await?),
            None => None,
        };
        let organization_id = match &t.organization {
            Some(o) => Some(self.organization_id(o).await?),
            None => None,
        };
        let mut fields = self.field_dir(false).await?;
        if t.custom_fields
            .keys()
            .any(|title| !fields.by_title.contains_key(title))
        {
            fields = self.field_dir(true).await?;
        }
        let custom_fields =
            mapping::custom_fields_to_zd(t, &fields.by_title, clear_others).map_err(unmappable)?;
        Ok(TargetRefs {
            requester_id,
            assignee_id,
            group_id,
            organization_id,
            custom_fields,
        })
    }

    async fn comment_json(
        &self,
        cw: &CommentWrite<'_>,
        with_created_at: bool,
    ) -> Result<Value, TargetError> {
        let author = self.user_id(&cw.comment.author).await?;
        Ok(mapping::comment_to_zd(
            cw.comment,
            author,
            &cw.uploads,
            with_created_at,
        ))
    }

    async fn hash_served(
        &self,
        content_url: &str,
        name: &str,
    ) -> Result<(String, u64), TargetError> {
        let context = format!("GET uploaded attachment {name}");
        let url = self.client.resolve(content_url, &context)?;
        let mut s = self.client.get_stream(&context, &url).await?;
        let mut h = Sha256::new();
        let mut n = 0u64;
        while let Some(chunk) = s.next().await {
            let chunk = chunk.map_err(TargetError::Io)?;
            n += chunk.len() as u64;
            h.update(&chunk);
        }
        Ok((hex::encode(h.finalize()), n))
    }
}

fn mapping_err(record: &str, cause: &str) -> MappingError {
    MappingError {
        record: record.to_string(),
        cause: cause.to_string(),
    }
}

/// A Zendesk ticket must have a requester. A ticket without one (RT allows it, a corrupt source record has
/// it) is refused with that cause, before any write: created, Zendesk answers a bare 422; updated, the PUT
/// would leave `requester_id` out, keep the target's old requester and report a clean update — a divergence
/// only `verify` would show (bad-input catalogue, `bad_input::a_requester_removed_from_a_migrated_ticket_is_reported`).
fn require_requester(t: &Ticket) -> Result<(), TargetError> {
    match t.requester {
        Some(_) => Ok(()),
        None => Err(TargetError::Unmappable {
            record: format!("ticket {}", t.source_id),
            cause: "it has no requester, and a Zendesk ticket must have one".into(),
        }),
    }
}

fn target_num(id: &TargetId) -> Option<u64> {
    id.0.trim().parse().ok()
}

fn object_id(v: &Value, key: &str) -> Option<u64> {
    v.get(key)?.get("id")?.as_u64()
}

/// `meta.after_cursor` if `meta.has_more`, else `None`; a page that has more but no cursor is malformed.
fn next_cursor(v: &Value) -> Result<Option<String>, String> {
    let meta = v.get("meta");
    let has_more = meta
        .and_then(|m| m.get("has_more"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if !has_more {
        return Ok(None);
    }
    match meta
        .and_then(|m| m.get("after_cursor"))
        .and_then(Value::as_str)
    {
        Some(c) if !c.is_empty() => Ok(Some(c.to_string())),
        _ => Err("meta.has_more without meta.after_cursor".into()),
    }
}

/// `(id, external_id)` of every ticket in a `{"tickets": [...]}` answer.
fn ticket_list(v: &Value, context: &str) -> Result<Vec<(u64, Option<String>)>, ApiError> {
    let tickets = v
        .get("tickets")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed(context, "no tickets array"))?;
    tickets
        .iter()
        .map(|t| {
            let id = t.get("id").and_then(Value::as_u64).ok_or_else(|| {
                malformed(mapping::ticket_record(mapping::id_of(t)), "no numeric id")
            })?;
            let ext = t
                .get("external_id")
                .and_then(Value::as_str)
                .map(str::to_string);
            Ok((id, ext))
        })
        .collect()
}

#[async_trait]
impl HelpDeskSource for Zendesk {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn publication_lag(&self) -> Duration {
        Duration::from_secs(self.cfg.publication_lag_secs)
    }

    async fn changes(
        &self,
        window: &Window,
        cursor: Option<&str>,
    ) -> Result<ChangePage, SourceError> {
        let context = "GET incremental tickets";
        let per_page = self.cfg.per_page.to_string();
        let start = window.start.timestamp().max(0).to_string();
        let q: Vec<(&str, &str)> = match cursor {
            None => vec![("start_time", &start), ("per_page", &per_page)],
            Some(c) => vec![("cursor", c), ("per_page", &per_page)],
        };
        let v = self
            .client
            .get_json(context, &self.url("/api/v2/incremental/tickets/cursor", &q))
            .await?;
        let tickets =
            v.get("tickets")
                .and_then(Value::as_array)
                .ok_or_else(|| SourceError::Malformed {
                    record: context.into(),
                    cause: "no tickets array".into(),
                })?;
        let changes = tickets
            .iter()
            .map(mapping::change_ref)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SourceError::Malformed {
                record: e.record,
                cause: e.cause,
            })?;
        let end = v
            .get("end_of_stream")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let next_cursor = if end {
            None
        } else {
            match v.get("after_cursor").and_then(Value::as_str) {
                Some(c) if !c.is_empty() => Some(c.to_string()),
                _ => {
                    return Err(SourceError::Malformed {
                        record: context.into(),
                        cause: "not end_of_stream but no after_cursor".into(),
                    })
                }
            }
        };
        Ok(ChangePage {
            changes,
            next_cursor,
        })
    }

    async fn ticket(&self, id: &TicketId) -> Result<Option<Ticket>, SourceError> {
        let Ok(n) = id.0.trim().parse::<u64>() else {
            return Err(SourceError::Malformed {
                record: mapping::ticket_record(id),
                cause: "not a numeric Zendesk id".into(),
            });
        };
        Ok(self.read(n).await?)
    }

    async fn download(&self, attachment: &Attachment) -> Result<ByteStream, SourceError> {
        Ok(self.stream(attachment).await?)
    }

    async fn list_ticket_ids(
        &self,
        cursor: Option<&str>,
    ) -> Result<(Vec<TicketId>, Option<String>), SourceError> {
        let (tickets, next) = self.ticket_page(cursor).await?;
        Ok((
            tickets
                .into_iter()
                .map(|(id, _)| TicketId(id.to_string()))
                .collect(),
            next,
        ))
    }

    fn api_stats(&self) -> ApiStats {
        self.client.counters().snapshot()
    }

    async fn vocabulary(&self) -> Result<Vocabulary, SourceError> {
        Ok(self.read_vocabulary().await?)
    }

    async fn clock_offset(&self) -> Result<Option<chrono::Duration>, SourceError> {
        self.client.clock().source_offset(self.ticket_page(None)).await.map_err(Into::into)
    }
}

#[async_trait]
impl HelpDeskTarget for Zendesk {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn max_attachment_bytes(&self) -> u64 {
        self.cfg.max_attachment_bytes
    }

    async fn find_by_source_ref(&self, source_ref: &str) -> Result<Vec<TargetId>, TargetError> {
        let context = format!("GET tickets by external_id {source_ref}");
        let url = self.url("/api/v2/tickets", &[("external_id", source_ref)]);
        let mut wait = Duration::from_millis(250);
        loop {
            let v = self.client.get_json(&context, &url).await?;
            let found: Vec<TargetId> = ticket_list(&v, &context)?
                .into_iter()
                .filter(|(_, ext)| ext.as_deref().is_none_or(|e| e == source_ref))
                .map(|(id, _)| TargetId(id.to_string()))
                .collect();
            let Some(batcher) = &self.batcher else { return Ok(found) };
            if !found.is_empty() {
                batcher.settled(source_ref);
                return Ok(found);
            }
            // A create_many job left in doubt by this process may still be queued at Zendesk and create the
            // ticket later: reporting it absent now would let the engine create a second copy (U1).
            match batcher.unsettled_for(source_ref) {
                Some(left) => {
                    tokio::time::sleep(wait.min(left)).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
                None => return Ok(found),
            }
        }
    }

    async fn create_ticket(
        &self,
        source_ref: &str,
        ticket: &Ticket,
        comments: &[CommentWrite<'_>],
    ) -> Result<TargetId, TargetError> {
        mapping::status_to_zd(ticket).map_err(unmappable)?;
        require_requester(ticket)?;
        let refs = self.refs(ticket, false).await?;
        let mut cs = Vec::with_capacity(comments.len());
        for cw in comments {
            cs.push(self.comment_json(cw, true).await?);
        }
        let mut body = mapping::import_to_zd(source_ref, ticket, &refs, cs).map_err(unmappable)?;
        let ticket_body = body.get_mut("ticket").map(Value::take).unwrap_or(Value::Null);
        let id = match &self.batcher {
            Some(b) => {
                let label = format!("import ticket {} ({source_ref})", ticket.source_id);
                b.create(source_ref, label, ticket_body).await?
            }
            None => {
                let context = format!("POST import ticket {} ({source_ref})", ticket.source_id);
                batch::import_one(&self.client, &context, &ticket_body).await?
            }
        };
        Ok(TargetId(id.to_string()))
    }

    async fn update_fields(&self, id: &TargetId, ticket: &Ticket) -> Result<(), TargetError> {
        let n = target_num(id).ok_or_else(|| TargetError::NotFound(id.clone()))?;
        mapping::status_to_zd(ticket).map_err(unmappable)?;
        require_requester(ticket)?;
        let refs = self.refs(ticket, true).await?;
        let fields = mapping::ticket_fields_to_zd(ticket, &refs).map_err(unmappable)?;
        let context = format!("PUT ticket {n}");
        let url = self.url(&format!("/api/v2/tickets/{n}"), &[]);
        match self
            .client
            .send_json(
                &context,
                Method::PUT,
                &url,
                Some(&json!({ "ticket": fields })),
                Replay::Retry,
            )
            .await
        {
            Err(ApiError::NotFound { .. }) => Err(TargetError::NotFound(id.clone())),
            r => r.map(|_| ()).map_err(Into::into),
        }
    }

    async fn append_comment(
        &self,
        id: &TargetId,
        comment: &CommentWrite<'_>,
    ) -> Result<(), TargetError> {
        let n = target_num(id).ok_or_else(|| TargetError::NotFound(id.clone()))?;
        let c = self.comment_json(comment, false).await?;
        let context = format!(
            "PUT ticket {n} comment (source comment {})",
            comment.comment.source_id
        );
        let url = self.url(&format!("/api/v2/tickets/{n}"), &[]);
        let body = json!({"ticket": {"comment": c}});
        match self
            .client
            .send_json(
                &context,
                Method::PUT,
                &url,
                Some(&body),
                Replay::NotProcessedOnly,
            )
            .await
        {
            Err(ApiError::NotFound { .. }) => Err(TargetError::NotFound(id.clone())),
            r => r.map(|_| ()).map_err(Into::into),
        }
    }

    async fn comment_count(&self, id: &TargetId) -> Result<usize, TargetError> {
        let n = target_num(id).ok_or_else(|| TargetError::NotFound(id.clone()))?;
        match self.comments(n, false).await? {
            Some(c) => Ok(c.len()),
            None => Err(TargetError::NotFound(id.clone())),
        }
    }

    async fn upload(
        &self,
        attachment: &Attachment,
        body: ByteStream,
    ) -> Result<UploadedAttachment, TargetError> {
        let limit = self.cfg.max_attachment_bytes;
        let name = attachment.file_name.clone();
        let too_large = |size: u64| TargetError::TooLarge {
            name: name.clone(),
            size,
            limit,
        };
        if attachment.size > limit {
            return Err(too_large(attachment.size));
        }
        let hasher = Arc::new(Mutex::new(Sha256::new()));
        let sent = Arc::new(AtomicU64::new(0));
        let read_error: Arc<Mutex<Option<std::io::Error>>> = Arc::default();
        let counters = self.client.counters().clone();
        let stream = {
            let (hasher, sent, read_error) = (hasher.clone(), sent.clone(), read_error.clone());
            body.map(move |chunk| match chunk {
                Ok(b) => {
                    let total = sent.fetch_add(b.len() as u64, Ordering::Relaxed) + b.len() as u64;
                    if total > limit {
                        return Err(std::io::Error::other("attachment exceeds the upload limit"));
                    }
                    lock(&hasher).update(&b);
                    counters
                        .bytes_out
                        .fetch_add(b.len() as u64, Ordering::Relaxed);
                    Ok(b)
                }
                Err(e) => {
                    let copy = std::io::Error::new(e.kind(), e.to_string());
                    *lock(&read_error) = Some(copy);
                    Err(e)
                }
            })
        };
        let content_type = if attachment.content_type.trim().is_empty() {
            "application/octet-stream"
        } else {
            attachment.content_type.as_str()
        };
        let context = format!("POST upload {} (attachment {})", name, attachment.source_id);
        let url = self.url("/api/v2/uploads", &[("filename", &name)]);
        let result = self
            .client
            .post_stream_once(
                &context,
                &url,
                content_type,
                reqwest::Body::wrap_stream(stream),
            )
            .await;
        let total = sent.load(Ordering::Relaxed);
        let v = match result {
            Ok(v) => v,
            Err(e) => {
                if let Some(io) = lock(&read_error).take() {
                    return Err(TargetError::Io(io));
                }
                if total > limit {
                    return Err(too_large(total));
                }
                if let ApiError::Rejected { status: 413, .. } = e {
                    return Err(too_large(attachment.size.max(total)));
                }
                return Err(e.into());
            }
        };
        let sent_sha = hex::encode(lock(&hasher).clone().finalize());
        let upload = v
            .get("upload")
            .ok_or_else(|| ApiError::from(mapping_err(&context, "no upload in the answer")))?;
        let token = upload
            .get("token")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::from(mapping_err(&context, "no upload.token in the answer")))?
            .to_string();
        let content_url = upload
            .get("attachment")
            .and_then(|a| a.get("content_url"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ApiError::from(mapping_err(
                    &context,
                    "no upload.attachment.content_url in the answer",
                ))
            })?
            .to_string();
        let (sha256, size) = if self.cfg.verify_uploads {
            let (served, size) = self.hash_served(&content_url, &name).await?;
            if served != sent_sha {
                return Err(TargetError::Corrupted {
                    name,
                    cause: format!("sent {total} bytes with sha256 {sent_sha}, the target serves {size} bytes with sha256 {served}"),
                });
            }
            (served, size)
        } else {
            // Without the download, the size the upload answer reports must at least match what was sent: a
            // cut-short body is caught here; a same-sized corruption only by `verify`, which hashes both sides.
            let reported = upload.get("attachment").and_then(|a| a.get("size")).and_then(Value::as_u64);
            if let Some(reported) = reported.filter(|r| *r != total) {
                return Err(TargetError::Corrupted {
                    name,
                    cause: format!("sent {total} bytes, the target stored {reported}"),
                });
            }
            (sent_sha, total)
        };
        Ok(UploadedAttachment {
            source_id: attachment.source_id.clone(),
            token,
            content_url,
            size,
            sha256,
        })
    }

    async fn delete_ticket(&self, id: &TargetId) -> Result<(), TargetError> {
        let Some(n) = target_num(id) else {
            return Ok(());
        };
        let context = format!("DELETE ticket {n}");
        let url = self.url(&format!("/api/v2/tickets/{n}"), &[]);
        match self
            .client
            .send_json(&context, Method::DELETE, &url, None, Replay::Retry)
            .await
        {
            Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn upsert_user(&self, user: &User) -> Result<String, TargetError> {
        Ok(self.user_id(user).await?.to_string())
    }

    async fn upsert_organization(&self, org: &Organization) -> Result<String, TargetError> {
        Ok(self.organization_id(org).await?.to_string())
    }

    async fn upsert_group(&self, group: &Group) -> Result<String, TargetError> {
        Ok(self.group_id(group).await?.to_string())
    }

    async fn vocabulary(&self) -> Result<Vocabulary, TargetError> {
        Ok(self.read_vocabulary().await?)
    }

    async fn list_tickets(&self, cursor: Option<&str>) -> Result<TargetListPage, TargetError> {
        let (tickets, next_cursor) = self.ticket_page(cursor).await?;
        Ok(TargetListPage {
            tickets: tickets
                .into_iter()
                .map(|(id, ext)| (TargetId(id.to_string()), ext))
                .collect(),
            next_cursor,
        })
    }

    async fn read_ticket(&self, id: &TargetId) -> Result<Option<Ticket>, TargetError> {
        let Some(n) = target_num(id) else {
            return Ok(None);
        };
        Ok(self.read(n).await?)
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
#[cfg(test)]
mod batch_tests;

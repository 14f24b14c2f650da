//! The Request Tracker 5 connector (source only), over RT's REST2 API (`/REST/2.0/`).
//!
//! - `config.rs`: [`RtConfig`].
//! - `client.rs`: [`RtClient`] (token or basic auth, counters, retries, error classification).
//! - `mapping.rs`: pure JSON -> canonical translation (status, priority, users, bodies, attachments).
//! - this file: [`Rt`], the source port and the lookup caches (users by name, queues by id), which live as
//!   long as the connector.
//!
//! The change listing has two phases, both paged by keyset (the cursor is the last id seen, so a record
//! changing while the listing runs never shifts another off a page):
//! 1. `t:{id}`: TicketSQL `LastUpdated >= '{window start, floored to the second}' AND id > {id}`, ordered by
//!    id. RT's search never shows deleted tickets, hence
//! 2. `d:{id}`: ticket transactions `Status → deleted` created since the window start, ordered by id; each
//!    becomes a deleted change.
//!
//! A ticket updated while the listing runs is listed at its new `LastUpdated` (after the window end, so the
//! engine leaves it to the next window) or, if its id was already passed, at its old one; either way the
//! next delta reads its newest state, and the engine deduplicates re-reads by version.

mod client;
mod config;
pub mod mapping;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use futures::StreamExt;
use deltadesk_core::model::{Attachment, Comment, Group, Ticket, TicketId, User};
use deltadesk_core::ports::{ApiStats, ByteStream, ChangePage, HelpDeskSource, SourceError};
use deltadesk_core::window::Window;
use deltadesk_core::vocabulary::{FieldDef, FieldKind, FieldOption, Vocabulary};
use serde_json::{json, Value};

pub use client::RtClient;
pub use config::{RtConfig, MAX_PER_PAGE};

use crate::http::{encode, query, ApiError};
use crate::registry::ConfigError;
use mapping::{MappingError, RtPart, RtTxn};

/// The connector kind in configs and reports.
pub const KIND: &str = "rt";

/// Safety stop for page chains inside one ticket read (history, attachments).
const MAX_PAGES: u64 = 10_000;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl From<MappingError> for ApiError {
    fn from(e: MappingError) -> Self {
        ApiError::Malformed { record: e.record, cause: e.cause }
    }
}

fn malformed(record: impl Into<String>, cause: impl Into<String>) -> ApiError {
    ApiError::Malformed { record: record.into(), cause: cause.into() }
}

/// Where a change listing stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Changed tickets with an id above this one.
    Tickets(u64),
    /// Deletion transactions with an id above this one.
    Deletions(u64),
}

impl Phase {
    fn parse(cursor: Option<&str>) -> Result<Phase, SourceError> {
        let bad = |c: &str| SourceError::Malformed { record: "rt change cursor".into(), cause: format!("{c:?} is not t:<id> or d:<id>") };
        let Some(c) = cursor else { return Ok(Phase::Tickets(0)) };
        let (kind, n) = c.split_once(':').ok_or_else(|| bad(c))?;
        let n: u64 = n.parse().map_err(|_| bad(c))?;
        match kind {
            "t" => Ok(Phase::Tickets(n)),
            "d" => Ok(Phase::Deletions(n)),
            _ => Err(bad(c)),
        }
    }
    fn cursor(self) -> String {
        match self {
            Phase::Tickets(n) => format!("t:{n}"),
            Phase::Deletions(n) => format!("d:{n}"),
        }
    }
}

/// An RT 5 instance as a migration source.
#[derive(Debug)]
pub struct Rt {
    cfg: RtConfig,
    client: RtClient,
    /// Users by name; one that cannot be read keeps the reason.
    users: Mutex<HashMap<String, Result<User, String>>>,
    /// Queues by id.
    queues: Mutex<HashMap<String, Group>>,
}

impl Rt {
    /// Builds the connector: validates `cfg` and reads the secret from the environment variable named by
    /// `cfg.token_env` (unset or empty -> [`ConfigError::MissingSecret`]).
    pub fn new(cfg: RtConfig) -> Result<Self, ConfigError> {
        Self::with_secrets(cfg, &crate::registry::EnvSecrets)
    }

    /// Builds the connector, looking the secret up by the name in `cfg.token_env` in `secrets`.
    pub fn with_secrets(cfg: RtConfig, secrets: &dyn crate::registry::Secrets) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let secret = match &cfg.token_env {
            None => None,
            Some(name) => match secrets.secret(name) {
                Some(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
                _ => return Err(ConfigError::MissingSecret { field: "token_env".into(), env_var: name.clone() }),
            },
        };
        Self::with_secret(cfg, secret)
    }

    /// Builds the connector with an explicit secret (tests, or secrets fetched by other means).
    pub fn with_secret(cfg: RtConfig, secret: Option<String>) -> Result<Self, ConfigError> {
        let client = RtClient::new(&cfg, secret)?;
        Ok(Rt { cfg, client, users: Mutex::default(), queues: Mutex::default() })
    }

    fn api_base(&self) -> String {
        self.client.url("", "").to_string()
    }

    /// One page of a TicketSQL search, ordered by id.
    async fn search(&self, tql: &str, fields: &str) -> Result<Vec<Value>, ApiError> {
        let per_page = self.cfg.per_page.to_string();
        let q = query(&[("query", tql), ("fields", fields), ("orderby", "id"), ("order", "ASC"), ("per_page", &per_page), ("page", "1")]);
        let context = "GET tickets (TicketSQL search)";
        let v = self.client.get_json(context, &self.client.url("/tickets", &q)).await?;
        items(&v, context)
    }

    async fn ticket_changes(&self, window: &Window, after: u64) -> Result<ChangePage, SourceError> {
        // LastUpdated has one-second resolution: `>=` the floored second includes everything of the window's
        // first second; what lies after the window end is dropped by the engine.
        let lookback = chrono::Duration::seconds(self.cfg.search_lookback_secs as i64);
        let start = window.start - lookback;
        let tql = format!("LastUpdated >= '{}' AND id > {after}", mapping::search_time(start));
        let found = self.search(&tql, "LastUpdated").await?;
        let full = found.len() >= self.cfg.per_page as usize;
        let changes = found.iter().map(mapping::change_ref).collect::<Result<Vec<_>, _>>().map_err(ApiError::from)?;
        let next = match changes.iter().filter_map(|c| c.ticket_id.0.parse::<u64>().ok()).max() {
            Some(last) if full => Phase::Tickets(last),
            _ => Phase::Deletions(0),
        };
        Ok(ChangePage { changes, next_cursor: Some(next.cursor()) })
    }

    async fn deletions(&self, window: &Window, after: u64) -> Result<ChangePage, SourceError> {
        // A JSON search compares `Created` as stored (UTC), without the user's time zone.
        let start = mapping::search_time(window.start);
        let body = json!([
            {"field": "ObjectType", "value": "RT::Ticket"},
            {"field": "Type", "value": "Status"},
            {"field": "Field", "value": "Status"},
            {"field": "NewValue", "value": "deleted"},
            {"field": "Created", "operator": ">=", "value": start},
            {"field": "id", "operator": ">", "value": after},
        ]);
        let per_page = self.cfg.per_page.to_string();
        let q = query(&[("fields", "ObjectId,Created"), ("orderby", "id"), ("order", "ASC"), ("per_page", &per_page), ("page", "1")]);
        let context = "POST transactions (deleted tickets)";
        let v = self.client.post_query(context, &self.client.url("/transactions", &q), &body).await?;
        let found = items(&v, context)?;
        let full = found.len() >= self.cfg.per_page as usize;
        let last = found.iter().filter_map(|t| mapping::str_field(t, "id")?.parse::<u64>().ok()).max();
        let changes = found.iter().map(mapping::deletion_ref).collect::<Result<Vec<_>, _>>().map_err(ApiError::from)?;
        let next_cursor = match last {
            Some(last) if full => Some(Phase::Deletions(last).cursor()),
            _ => None,
        };
        Ok(ChangePage { changes, next_cursor })
    }

    /// A user by name, cached. A user RT cannot show (404) is a malformed reference.
    async fn user(&self, record: &str, role: &str, name: &str) -> Result<User, ApiError> {
        if let Some(r) = lock(&self.users).get(name) {
            return r.clone().map_err(|why| malformed(record, format!("{role} {name:?}: {why}")));
        }
        let context = format!("GET user {name}");
        let result = match self.client.get_json(&context, &self.client.url(&format!("/user/{}", encode(name)), "")).await {
            Ok(v) => Ok(mapping::user_from_rt(name, &v)),
            Err(ApiError::NotFound { .. }) => Err("not found in RT".to_string()),
            Err(e) => return Err(e),
        };
        lock(&self.users).insert(name.to_string(), result.clone());
        result.map_err(|why| malformed(record, format!("{role} {name:?}: {why}")))
    }

    /// A queue (as a group) by id, cached.
    async fn queue(&self, record: &str, id: &str) -> Result<Group, ApiError> {
        if let Some(g) = lock(&self.queues).get(id) {
            return Ok(g.clone());
        }
        let context = format!("GET queue {id}");
        let v = match self.client.get_json(&context, &self.client.url(&format!("/queue/{}", encode(id)), "")).await {
            Err(ApiError::NotFound { .. }) => return Err(malformed(record, format!("queue {id} not found"))),
            r => r?,
        };
        let name = mapping::str_field(&v, "Name").filter(|n| !n.is_empty()).ok_or_else(|| malformed(&context, "queue has no Name"))?;
        let g = Group { source_id: id.to_string(), name };
        lock(&self.queues).insert(id.to_string(), g.clone());
        Ok(g)
    }

    /// Every page of a REST2 collection at `path` with `params`.
    async fn all_pages(&self, context: &str, path: &str, params: &[(&str, &str)]) -> Result<Vec<Value>, ApiError> {
        let mut out = Vec::new();
        for page in 1..=MAX_PAGES {
            let page_s = page.to_string();
            let mut p: Vec<(&str, &str)> = params.to_vec();
            p.push(("page", &page_s));
            let v = self.client.get_json(context, &self.client.url(path, &query(&p))).await?;
            let found = items(&v, context)?;
            let pages = v.get("pages").and_then(Value::as_f64).unwrap_or(0.0);
            let n = found.len();
            out.extend(found);
            if n == 0 || (page as f64) >= pages {
                return Ok(out);
            }
        }
        Err(malformed(context, format!("more than {MAX_PAGES} pages")))
    }

    /// Queues (as groups), privileged users (agents) and ticket custom fields with their values, as
    /// `mapping init` needs them. RT has no organizations; priorities are numbers, mapped onto the
    /// canonical four by range; it has no ticket types.
    async fn read_vocabulary(&self) -> Result<Vocabulary, ApiError> {
        let all = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let mut voc = Vocabulary {
            // The default lifecycle: new, open, stalled (hold), resolved (solved), rejected (closed).
            statuses: all(&["new", "open", "hold", "solved", "closed"]),
            priorities: all(&["low", "normal", "high", "urgent"]),
            ..Vocabulary::default()
        };
        let queues = self.all_pages("GET queues", "/queues/all", &[("fields", "Name")]).await?;
        for q in &queues {
            voc.groups.extend(mapping::str_field(q, "Name").filter(|n| !n.is_empty()));
        }
        // REST2 lists users without their Privileged flag and ignores it as a search term, so each user's
        // record is read (8 at a time): one request per RT user, paid once by `mapping init`.
        let users = self.all_pages("GET users", "/users", &[("fields", "EmailAddress")]).await?;
        let ids: Vec<String> = users.iter().filter_map(|u| mapping::str_field(u, "id")).collect();
        let records: Vec<Result<Value, ApiError>> = futures::stream::iter(ids)
            .map(|id| async move { self.client.get_json(&format!("GET user {id}"), &self.client.url(&format!("/user/{}", encode(&id)), "")).await })
            .buffer_unordered(8)
            .collect()
            .await;
        for u in records {
            let u = u?;
            let privileged = u.get("Privileged").is_some_and(|p| p.as_i64() == Some(1) || p.as_str() == Some("1"));
            if privileged {
                voc.agents.extend(mapping::str_field(&u, "EmailAddress").filter(|e| !e.is_empty()));
            }
        }
        // Ticket custom fields: the global listing answers nothing in RT 5.0.3, so they are gathered from the
        // queues they apply to, then read one by one.
        let mut cf_ids = std::collections::BTreeSet::new();
        for q in &queues {
            let Some(qid) = mapping::str_field(q, "id") else { continue };
            for cf in self.all_pages(&format!("GET queue {qid} custom fields"), &format!("/queue/{}/customfields", encode(&qid)), &[]).await? {
                cf_ids.extend(mapping::str_field(&cf, "id"));
            }
        }
        for id in cf_ids {
            let cf = self.client.get_json(&format!("GET custom field {id}"), &self.client.url(&format!("/customfield/{}", encode(&id)), "")).await?;
            if mapping::str_field(&cf, "LookupType").as_deref() != Some("RT::Queue-RT::Ticket") || mapping::str_field(&cf, "Disabled").as_deref() == Some("1") {
                continue;
            }
            let Some(name) = mapping::str_field(&cf, "Name") else { continue };
            let single = mapping::str_field(&cf, "MaxValues").as_deref() == Some("1");
            let kind = match (mapping::str_field(&cf, "Type").as_deref(), single) {
                (Some("Select" | "Combobox" | "Autocomplete"), true) => FieldKind::DropDown,
                (Some("Select" | "Combobox" | "Autocomplete"), false) => FieldKind::MultiSelect,
                (Some("Freeform" | "Text" | "Wikitext"), true) => FieldKind::Text,
                (Some("Date" | "DateTime"), _) => FieldKind::Date,
                _ => FieldKind::Other,
            };
            let mut options = Vec::new();
            if matches!(kind, FieldKind::DropDown | FieldKind::MultiSelect) {
                let path = format!("/customfield/{}/values", encode(&id));
                for v in self.all_pages(&format!("GET custom field {id} values"), &path, &[]).await? {
                    if let Some(n) = mapping::str_field(&v, "name") {
                        options.push(FieldOption { value: n.clone(), label: n });
                    }
                }
            }
            voc.custom_fields.push(FieldDef { title: name, kind, options });
        }
        Ok(voc)
    }

    /// The decoded bytes of an attachment record (`Content` is base64).
    async fn attachment_bytes(&self, id: &str) -> Result<Vec<u8>, ApiError> {
        let context = format!("GET attachment {id}");
        let v = self.client.get_json(&context, &self.client.url(&format!("/attachment/{}", encode(id)), "")).await?;
        let content = match v.get("Content") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::String(s)) => s,
            Some(_) => return Err(malformed(&context, "Content is not a string")),
        };
        let compact: String = content.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .map_err(|e| malformed(&context, format!("Content is not base64: {e}")))
    }

    /// The comment of one conversation transaction: its parts, body and author.
    async fn comment(&self, ticket: u64, txn: &RtTxn) -> Result<Comment, ApiError> {
        let record = format!("{} transaction {}", mapping::ticket_record(ticket), txn.id);
        let per_page = MAX_PER_PAGE.to_string();
        let parts = self
            .all_pages(
                &format!("GET transaction {} attachments", txn.id),
                &format!("/transaction/{}/attachments", txn.id),
                &[("fields", "Filename,ContentType,ContentLength"), ("orderby", "id"), ("order", "ASC"), ("per_page", &per_page)],
            )
            .await?
            .iter()
            .map(|p| mapping::part_from_json(&record, p))
            .collect::<Result<Vec<RtPart>, _>>()?;
        let body = match mapping::body_part(&parts) {
            Some(p) => {
                let bytes = self.attachment_bytes(&p.id.to_string()).await?;
                Some((p.content_type.clone(), String::from_utf8_lossy(&bytes).into_owned()))
            }
            None => None,
        };
        let author = self.user(&record, "author", &txn.creator).await?;
        let files: Vec<RtPart> = mapping::file_parts(&parts).cloned().collect();
        Ok(mapping::comment_from_rt(txn, author, body.as_ref().map(|(ct, c)| (ct.as_str(), c.as_str())), &files, &self.api_base()))
    }

    async fn read(&self, id: u64) -> Result<Option<Ticket>, ApiError> {
        let record = mapping::ticket_record(id);
        // The ticket first, then its history: a change in between shows up as a newer LastUpdated next time.
        let v = match self.client.get_json(&format!("GET ticket {id}"), &self.client.url(&format!("/ticket/{id}"), "")).await {
            Err(ApiError::NotFound { .. }) => return Ok(None),
            r => r?,
        };
        let t = mapping::ticket_from_json(&v)?;
        if t.status == "deleted" || t.effective_id != id {
            // Deleted, or merged into another ticket (which carries on under its own id).
            return Ok(None);
        }
        let group = match &t.queue {
            Some(q) => Some(self.queue(&record, q).await?),
            None => None,
        };
        let requester = match &t.requestor {
            Some(name) => Some(self.user(&record, "requestor", name).await?),
            None => None,
        };
        let assignee = match &t.owner {
            Some(name) => Some(self.user(&record, "owner", name).await?),
            None => None,
        };
        let per_page = MAX_PER_PAGE.to_string();
        let history = self
            .all_pages(
                &format!("GET ticket {id} history"),
                &format!("/ticket/{id}/history"),
                &[("fields", "Type,Creator,Created"), ("orderby", "id"), ("order", "ASC"), ("per_page", &per_page)],
            )
            .await?;
        let mut comments = Vec::new();
        for h in &history {
            let txn = mapping::txn_from_json(id, h)?;
            if txn.is_conversation() {
                comments.push(self.comment(id, &txn).await?);
            }
        }
        Ok(Some(mapping::ticket_from_rt(&t, requester, assignee, group, comments)?))
    }
}

/// `items` of a REST2 collection answer.
fn items(v: &Value, context: &str) -> Result<Vec<Value>, ApiError> {
    v.get("items").and_then(Value::as_array).cloned().ok_or_else(|| malformed(context, "no items array in the answer"))
}

#[async_trait]
impl HelpDeskSource for Rt {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn publication_lag(&self) -> Duration {
        Duration::from_secs(self.cfg.publication_lag_secs)
    }

    async fn changes(&self, window: &Window, cursor: Option<&str>) -> Result<ChangePage, SourceError> {
        match Phase::parse(cursor)? {
            Phase::Tickets(after) => self.ticket_changes(window, after).await,
            Phase::Deletions(after) => self.deletions(window, after).await,
        }
    }

    async fn vocabulary(&self) -> Result<Vocabulary, SourceError> {
        Ok(self.read_vocabulary().await?)
    }

    async fn ticket(&self, id: &TicketId) -> Result<Option<Ticket>, SourceError> {
        let Ok(n) = id.0.trim().parse::<u64>() else {
            return Err(SourceError::Malformed { record: mapping::ticket_record(id), cause: "not a numeric RT id".into() });
        };
        Ok(self.read(n).await?)
    }

    async fn download(&self, attachment: &Attachment) -> Result<ByteStream, SourceError> {
        let bytes = match self.attachment_bytes(&attachment.source_id).await {
            Err(ApiError::NotFound { context }) => {
                return Err(SourceError::Rejected { context, status: 404, message: format!("attachment {} is gone", attachment.file_name) })
            }
            r => r?,
        };
        // REST2 serves an attachment as one JSON document, so the bytes are in memory already.
        Ok(Box::pin(futures::stream::once(async move { Ok(bytes::Bytes::from(bytes)) })))
    }

    async fn list_ticket_ids(&self, cursor: Option<&str>) -> Result<(Vec<TicketId>, Option<String>), SourceError> {
        let after: u64 = match cursor {
            None => 0,
            Some(c) => c.parse().map_err(|_| SourceError::Malformed { record: "rt ticket id cursor".into(), cause: format!("{c:?} is not an id") })?,
        };
        // Deleted tickets never appear in REST2 searches, so this is every live ticket.
        let found = self.search(&format!("id > {after}"), "id").await?;
        let full = found.len() >= self.cfg.per_page as usize;
        let mut ids = Vec::with_capacity(found.len());
        for f in &found {
            let record = mapping::ticket_record(mapping::str_field(f, "id").unwrap_or_else(|| "?".into()));
            ids.push(mapping::u64_field(&record, f, "id").map_err(ApiError::from)?);
        }
        let next = match ids.iter().max() {
            Some(last) if full => Some(last.to_string()),
            _ => None,
        };
        Ok((ids.into_iter().map(|i| TicketId(i.to_string())).collect(), next))
    }

    fn api_stats(&self) -> ApiStats {
        self.client.counters().snapshot()
    }
}

#[cfg(test)]
mod tests;

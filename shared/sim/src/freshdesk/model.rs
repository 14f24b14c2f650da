//! In-memory state of the simulated Freshdesk account: records, validation, mutations and JSON rendering.
//!
//! Every mutation (HTTP handler, agent action, live agent) goes through the methods of [`State`]. Times are
//! Unix seconds. HTML bodies are stored with the simulator's base URL replaced by [`BASE_PLACEHOLDER`], so
//! the state (and the snapshot) does not depend on the bound port.

use std::collections::{BTreeMap, HashMap};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

pub(crate) use crate::zendesk::model::{escape_html, gen_bytes, strip_html, AttData};
use crate::zendesk::SimStats;

/// Stands for the simulator's base URL inside stored HTML bodies.
pub(crate) const BASE_PLACEHOLDER: &str = "{{base_url}}";

/// Status codes: 2 Open, 3 Pending, 4 Resolved, 5 Closed.
pub(crate) const STATUSES: [u64; 4] = [2, 3, 4, 5];
/// Conversation `source`: a reply, a note.
pub(crate) const SOURCE_REPLY: u8 = 0;
pub(crate) const SOURCE_NOTE: u8 = 2;
/// Names of the connector's own custom fields, seeded in every simulated account (see the API subset doc).
pub(crate) const REF_FIELD: &str = "cf_deltadesk_ref";
pub(crate) const FALLBACKS_FIELD: &str = "cf_deltadesk_fallbacks";

/// An API error: status code and Freshdesk-shaped JSON body.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub body: Value,
}

impl ApiError {
    pub fn not_found() -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            body: json!({"code": "not_found", "message": "Resource not found"}),
        }
    }
    /// 400 "Validation failed" naming `field`, with a Freshdesk error `code`.
    pub fn invalid(field: &str, message: impl Into<String>, code: &str) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            body: json!({"description": "Validation failed", "errors": [{"field": field, "message": message.into(), "code": code}]}),
        }
    }
    pub fn value(field: &str, message: impl Into<String>) -> Self {
        Self::invalid(field, message, "invalid_value")
    }
    /// 409 duplicate_value, with `additional_info` (e.g. the existing company's id).
    pub fn duplicate(field: &str, message: impl Into<String>, info: Value) -> Self {
        ApiError {
            status: StatusCode::CONFLICT,
            body: json!({"description": "Validation failed", "errors": [{"field": field, "message": message.into(), "code": "duplicate_value", "additional_info": info}]}),
        }
    }
    pub fn message(&self) -> String {
        format!("{} {}", self.status.as_u16(), self.body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Contact {
    pub id: u64,
    pub name: String,
    pub email: String,
    pub company_id: Option<u64>,
}

#[derive(Debug, Clone)]
pub(crate) struct Agent {
    pub id: u64,
    pub name: String,
    pub email: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Company {
    pub id: u64,
    pub name: String,
    pub domains: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub id: u64,
    pub name: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub id: u64,
    pub name: String,
    pub label: String,
    /// `custom_text`, `custom_number`, `custom_checkbox`, `custom_dropdown`, `default_ticket_type`.
    pub kind: String,
    pub choices: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Attachment {
    pub id: u64,
    pub token: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub data: AttData,
    pub sha256: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct Conversation {
    pub id: u64,
    pub body: String,
    pub private: bool,
    pub incoming: bool,
    pub source: u8,
    pub user_id: u64,
    pub created_at: i64,
    pub updated_at: i64,
    pub attachments: Vec<u64>,
}

#[derive(Debug, Clone)]
pub(crate) struct Ticket {
    pub id: u64,
    pub subject: String,
    pub description: String,
    pub status: u64,
    pub priority: u64,
    pub source: u64,
    pub kind: Option<String>,
    pub requester_id: u64,
    pub responder_id: Option<u64>,
    pub group_id: Option<u64>,
    pub company_id: Option<u64>,
    pub tags: Vec<String>,
    pub custom_fields: BTreeMap<String, Value>,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted: bool,
    pub spam: bool,
    pub attachments: Vec<u64>,
    pub conversations: Vec<Conversation>,
}

/// A file sent as an `attachments[]` part.
#[derive(Debug, Clone)]
pub(crate) struct NewFile {
    pub name: String,
    pub content_type: String,
    pub bytes: Bytes,
}

/// Endpoint classes with their own per-minute limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Class {
    Account,
    TicketCreate,
    TicketUpdate,
    TicketList,
    Contacts,
}

/// A fixed-window counter (the window length is configurable so tests can see it roll).
#[derive(Debug, Default)]
pub(crate) struct RateWindow {
    pub start: Option<std::time::Instant>,
    pub count: u32,
}

impl RateWindow {
    /// Ok(()) if one more request fits (the caller counts it), Err(retry_after_secs) otherwise.
    pub fn check(&mut self, limit: u32, window: std::time::Duration, now: std::time::Instant) -> Result<(), u64> {
        let start = *self.start.get_or_insert(now);
        let elapsed = now.duration_since(start);
        if elapsed >= window {
            self.start = Some(now);
            self.count = 0;
            return Ok(());
        }
        if self.count >= limit {
            let left = window - elapsed;
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            return Err(secs.max(1));
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
pub(crate) struct Seqs {
    pub ticket: u64,
    pub conversation: u64,
    pub attachment: u64,
    pub user: u64,
    pub company: u64,
    pub group: u64,
    pub field: u64,
}

pub(crate) struct State {
    pub seed: u64,
    pub id_base: u64,
    pub seq: Seqs,
    pub tickets: BTreeMap<u64, Ticket>,
    pub contacts: BTreeMap<u64, Contact>,
    pub agents: BTreeMap<u64, Agent>,
    pub companies: BTreeMap<u64, Company>,
    pub groups: BTreeMap<u64, Group>,
    pub fields: Vec<Field>,
    pub attachments: HashMap<u64, Attachment>,
    pub att_by_token: HashMap<String, u64>,
    pub rates: HashMap<Class, RateWindow>,
    pub stats: SimStats,
    /// Largest total of attachments on one ticket or conversation.
    pub max_attachment_bytes: u64,
}

fn next(seq: &mut u64, base: u64) -> u64 {
    let id = base + *seq;
    *seq += 1;
    id
}

pub(crate) fn fmt_time(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A number given as a JSON number or a numeric string (multipart form fields are strings).
fn num(v: &Value, field: &str) -> Result<Option<u64>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n.as_u64().map(Some).ok_or_else(|| ApiError::invalid(field, "It should be a/an Positive Integer", "datatype_mismatch")),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => s.trim().parse().map(Some).map_err(|_| ApiError::invalid(field, "It should be a/an Positive Integer", "datatype_mismatch")),
        _ => Err(ApiError::invalid(field, "It should be a/an Positive Integer", "datatype_mismatch")),
    }
}

fn boolean(v: &Value, field: &str) -> Result<bool, ApiError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        _ => Err(ApiError::invalid(field, "It should be a/an Boolean", "datatype_mismatch")),
    }
}

/// Validated ticket fields of a create or update (`None` = not given).
#[derive(Default, Debug)]
pub(crate) struct Patch {
    subject: Option<String>,
    description: Option<String>,
    status: Option<u64>,
    priority: Option<u64>,
    source: Option<u64>,
    kind: Option<Option<String>>,
    requester_id: Option<u64>,
    responder_id: Option<Option<u64>>,
    group_id: Option<Option<u64>>,
    company_id: Option<Option<u64>>,
    tags: Option<Vec<String>>,
    custom_fields: Option<Vec<(String, Value)>>,
}

impl State {
    pub fn new(seed: u64, id_base: u64, max_attachment_bytes: u64) -> Self {
        State {
            seed,
            id_base: id_base.max(1),
            seq: Seqs::default(),
            tickets: BTreeMap::new(),
            contacts: BTreeMap::new(),
            agents: BTreeMap::new(),
            companies: BTreeMap::new(),
            groups: BTreeMap::new(),
            fields: Vec::new(),
            attachments: HashMap::new(),
            att_by_token: HashMap::new(),
            rates: HashMap::new(),
            stats: SimStats::default(),
            max_attachment_bytes,
        }
    }

    pub fn next_ticket_id(&mut self) -> u64 {
        next(&mut self.seq.ticket, self.id_base)
    }
    pub fn next_conversation_id(&mut self) -> u64 {
        next(&mut self.seq.conversation, self.id_base)
    }
    pub fn next_user_id(&mut self) -> u64 {
        next(&mut self.seq.user, self.id_base)
    }
    pub fn next_company_id(&mut self) -> u64 {
        next(&mut self.seq.company, self.id_base)
    }
    pub fn next_group_id(&mut self) -> u64 {
        next(&mut self.seq.group, self.id_base)
    }
    pub fn next_field_id(&mut self) -> u64 {
        next(&mut self.seq.field, self.id_base)
    }

    /// Store an attachment; returns its id. The download token is derived from seed, id base and id.
    pub fn add_attachment(&mut self, name: &str, content_type: &str, data: AttData, now: i64) -> u64 {
        let id = next(&mut self.seq.attachment, self.id_base);
        let mut h = Sha256::new();
        h.update(format!("fd:{}:{}:att:{id}", self.seed, self.id_base));
        let token = hex::encode(&h.finalize()[..12]);
        let (size, sha256) = match &data {
            AttData::Gen { size, .. } => (*size, None),
            AttData::Bytes(b) => (b.len() as u64, Some(hex::encode(Sha256::digest(b)))),
        };
        self.att_by_token.insert(token.clone(), id);
        self.attachments.insert(id, Attachment { id, token, name: name.to_string(), content_type: content_type.to_string(), size, data, sha256, created_at: now });
        id
    }

    fn store_files(&mut self, files: Vec<NewFile>, now: i64) -> Vec<u64> {
        files
            .into_iter()
            .map(|f| self.add_attachment(&f.name, &f.content_type, AttData::Bytes(f.bytes), now))
            .collect()
    }

    /// Freshdesk refuses more than the limit in total per ticket or conversation.
    fn check_files(&self, files: &[NewFile]) -> Result<(), ApiError> {
        let total: u64 = files.iter().map(|f| f.bytes.len() as u64).sum();
        if total > self.max_attachment_bytes {
            return Err(ApiError::invalid(
                "attachments",
                format!("The cumulative size of all attachments ({total} bytes) exceeds the limit of {} bytes", self.max_attachment_bytes),
                "invalid_size",
            ));
        }
        Ok(())
    }

    pub fn attachment_url(&self, base: &str, a: &Attachment) -> String {
        format!("{base}/fd-attachments/{}", a.token)
    }

    pub fn attachment_json(&self, base: &str, id: u64) -> Value {
        let Some(a) = self.attachments.get(&id) else { return Value::Null };
        json!({
            "id": a.id, "name": a.name, "content_type": a.content_type, "size": a.size,
            "attachment_url": self.attachment_url(base, a),
            "created_at": fmt_time(a.created_at), "updated_at": fmt_time(a.created_at),
        })
    }

    pub fn contact_json(&self, c: &Contact) -> Value {
        json!({"id": c.id, "name": c.name, "email": c.email, "company_id": c.company_id, "active": true, "phone": null, "mobile": null})
    }

    pub fn agent_json(&self, a: &Agent) -> Value {
        json!({"id": a.id, "available": true, "occasional": false, "ticket_scope": 1, "contact": {"name": a.name, "email": a.email, "active": true}})
    }

    pub fn company_json(&self, c: &Company) -> Value {
        json!({"id": c.id, "name": c.name, "domains": c.domains, "description": null})
    }

    pub fn group_json(&self, g: &Group) -> Value {
        json!({"id": g.id, "name": g.name, "description": null, "agent_ids": []})
    }

    pub fn field_json(&self, f: &Field) -> Value {
        let mut v = json!({"id": f.id, "name": f.name, "label": f.label, "type": f.kind, "default": !f.name.starts_with("cf_")});
        if !f.choices.is_empty() {
            v["choices"] = json!(f.choices);
        }
        v
    }

    pub fn conversation_json(&self, base: &str, ticket_id: u64, c: &Conversation) -> Value {
        let html = c.body.replace(BASE_PLACEHOLDER, base);
        json!({
            "id": c.id, "ticket_id": ticket_id, "body": html, "body_text": strip_html(&html),
            "private": c.private, "incoming": c.incoming, "source": c.source, "user_id": c.user_id,
            "support_email": null, "to_emails": [], "from_email": null, "cc_emails": [], "bcc_emails": [],
            "attachments": c.attachments.iter().map(|a| self.attachment_json(base, *a)).collect::<Vec<_>>(),
            "created_at": fmt_time(c.created_at), "updated_at": fmt_time(c.updated_at),
        })
    }

    /// A ticket as the API renders it; `full` adds the description and its attachments (single-ticket view).
    pub fn ticket_json(&self, base: &str, t: &Ticket, full: bool) -> Value {
        let custom: Map<String, Value> = self
            .fields
            .iter()
            .filter(|f| f.name.starts_with("cf_"))
            .map(|f| (f.name.clone(), t.custom_fields.get(&f.name).cloned().unwrap_or(Value::Null)))
            .collect();
        let mut v = json!({
            "id": t.id, "subject": t.subject, "status": t.status, "priority": t.priority, "source": t.source,
            "type": t.kind, "requester_id": t.requester_id, "responder_id": t.responder_id,
            "group_id": t.group_id, "company_id": t.company_id, "tags": t.tags, "custom_fields": custom,
            "spam": t.spam, "fr_escalated": false, "is_escalated": false,
            "cc_emails": [], "fwd_emails": [], "reply_cc_emails": [], "to_emails": null,
            "due_by": fmt_time(t.created_at + 3 * 86_400), "fr_due_by": fmt_time(t.created_at + 86_400),
            "created_at": fmt_time(t.created_at), "updated_at": fmt_time(t.updated_at),
        });
        if t.deleted {
            v["deleted"] = json!(true);
        }
        if full {
            let html = t.description.replace(BASE_PLACEHOLDER, base);
            v["description_text"] = json!(strip_html(&html));
            v["description"] = json!(html);
            v["attachments"] = t.attachments.iter().map(|a| self.attachment_json(base, *a)).collect();
        }
        v
    }

    pub fn ticket(&self, id: u64) -> Result<&Ticket, ApiError> {
        self.tickets.get(&id).ok_or_else(ApiError::not_found)
    }

    /// A ticket that can still be written to (not in the trash).
    fn writable(&self, id: u64) -> Result<&Ticket, ApiError> {
        self.tickets.get(&id).filter(|t| !t.deleted).ok_or_else(ApiError::not_found)
    }

    pub fn user_exists(&self, id: u64) -> bool {
        self.contacts.contains_key(&id) || self.agents.contains_key(&id)
    }

    pub fn default_agent(&self) -> Option<u64> {
        self.agents.keys().next().copied()
    }

    pub fn agent_by_email(&self, email: &str) -> Option<u64> {
        self.agents.values().find(|a| a.email.eq_ignore_ascii_case(email)).map(|a| a.id)
    }

    pub fn contact_by_email(&self, email: &str) -> Option<u64> {
        self.contacts.values().find(|c| c.email.eq_ignore_ascii_case(email)).map(|c| c.id)
    }

    /// POST /contacts: `(id)`; an email used by a contact or an agent is a 409.
    pub fn create_contact(&mut self, v: &Value) -> Result<u64, ApiError> {
        let Some(email) = v.get("email").and_then(Value::as_str).map(str::trim).filter(|e| e.contains('@')) else {
            return Err(ApiError::invalid("email", "It should be in the 'valid email address' format", "missing_field"));
        };
        if self.contact_by_email(email).is_some() || self.agent_by_email(email).is_some() {
            return Err(ApiError::duplicate("email", format!("It should be a unique value ({email})"), json!({"user_id": self.contact_by_email(email).or(self.agent_by_email(email))})));
        }
        let company_id = match v.get("company_id") {
            None => None,
            Some(x) => {
                let id = num(x, "company_id")?;
                if let Some(id) = id {
                    if !self.companies.contains_key(&id) {
                        return Err(ApiError::value("company_id", "There is no company matching the given company_id"));
                    }
                }
                id
            }
        };
        let name = v.get("name").and_then(Value::as_str).filter(|n| !n.trim().is_empty()).map(str::to_string);
        let id = self.next_user_id();
        let name = name.unwrap_or_else(|| email.split('@').next().unwrap_or(email).to_string());
        self.contacts.insert(id, Contact { id, name, email: email.to_string(), company_id });
        Ok(id)
    }

    /// POST /companies.
    pub fn create_company(&mut self, v: &Value) -> Result<u64, ApiError> {
        let Some(name) = v.get("name").and_then(Value::as_str).map(str::trim).filter(|n| !n.is_empty()) else {
            return Err(ApiError::invalid("name", "It should not be blank", "missing_field"));
        };
        if let Some(c) = self.companies.values().find(|c| c.name.eq_ignore_ascii_case(name)) {
            return Err(ApiError::duplicate("name", "It should be a unique value", json!({"company_id": c.id})));
        }
        let domains = v
            .get("domains")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|d| d.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let id = self.next_company_id();
        self.companies.insert(id, Company { id, name: name.to_string(), domains });
        Ok(id)
    }

    /// POST /groups (names are unique, as in Freshdesk).
    pub fn create_group(&mut self, v: &Value) -> Result<u64, ApiError> {
        let Some(name) = v.get("name").and_then(Value::as_str).map(str::trim).filter(|n| !n.is_empty()) else {
            return Err(ApiError::invalid("name", "It should not be blank", "missing_field"));
        };
        if self.groups.values().any(|g| g.name.eq_ignore_ascii_case(name)) {
            return Err(ApiError::duplicate("name", "It should be a unique value", Value::Null));
        }
        let id = self.next_group_id();
        self.groups.insert(id, Group { id, name: name.to_string() });
        Ok(id)
    }

    fn check_custom(&self, name: &str, value: &Value) -> Result<Value, ApiError> {
        let field = format!("custom_fields.{name}");
        let Some(f) = self.fields.iter().find(|f| f.name == name && f.name.starts_with("cf_")) else {
            return Err(ApiError::invalid(&field, "Unexpected/invalid field in request", "invalid_field"));
        };
        if value.is_null() {
            return Ok(Value::Null);
        }
        match f.kind.as_str() {
            "custom_number" => Ok(match value {
                Value::Number(n) if n.is_i64() => value.clone(),
                Value::String(s) => s.trim().parse::<i64>().map(|n| json!(n)).map_err(|_| ApiError::invalid(&field, "It should be a/an Integer", "datatype_mismatch"))?,
                _ => return Err(ApiError::invalid(&field, "It should be a/an Integer", "datatype_mismatch")),
            }),
            "custom_checkbox" => Ok(json!(boolean(value, &field)?)),
            "custom_dropdown" => match value.as_str() {
                Some(s) if f.choices.iter().any(|c| c == s) => Ok(value.clone()),
                _ => Err(ApiError::value(&field, format!("It should be one of these values: '{}'", f.choices.join(",")))),
            },
            _ => match value {
                Value::String(_) => Ok(value.clone()),
                _ => Err(ApiError::invalid(&field, "It should be a/an String", "datatype_mismatch")),
            },
        }
    }

    /// Validate ticket fields. `create` requires a subject.
    pub fn parse_patch(&self, v: &Value) -> Result<Patch, ApiError> {
        let Some(o) = v.as_object() else {
            return Err(ApiError::value("ticket", "It should be an object"));
        };
        let mut p = Patch::default();
        for (k, x) in o {
            match k.as_str() {
                "subject" => p.subject = Some(x.as_str().unwrap_or_default().to_string()),
                "description" => p.description = Some(x.as_str().unwrap_or_default().to_string()),
                "status" => match num(x, "status")? {
                    Some(s) if STATUSES.contains(&s) => p.status = Some(s),
                    _ => return Err(ApiError::value("status", "It should be one of these values: '2,3,4,5'")),
                },
                "priority" => match num(x, "priority")? {
                    Some(s) if (1..=4).contains(&s) => p.priority = Some(s),
                    _ => return Err(ApiError::value("priority", "It should be one of these values: '1,2,3,4'")),
                },
                "source" => p.source = num(x, "source")?,
                "type" => {
                    let choices = self.fields.iter().find(|f| f.name == "ticket_type").map(|f| f.choices.clone()).unwrap_or_default();
                    p.kind = Some(match x {
                        Value::Null => None,
                        Value::String(s) if s.is_empty() => None,
                        Value::String(s) if choices.iter().any(|c| c == s) => Some(s.clone()),
                        _ => return Err(ApiError::value("type", format!("It should be one of these values: '{}'", choices.join(",")))),
                    });
                }
                "requester_id" => match num(x, "requester_id")? {
                    Some(id) if self.user_exists(id) => p.requester_id = Some(id),
                    _ => return Err(ApiError::value("requester_id", "There is no contact matching the given requester_id")),
                },
                "responder_id" => {
                    let id = num(x, "responder_id")?;
                    if id.is_some_and(|id| !self.agents.contains_key(&id)) {
                        return Err(ApiError::value("responder_id", "There is no agent matching the given responder_id"));
                    }
                    p.responder_id = Some(id);
                }
                "group_id" => {
                    let id = num(x, "group_id")?;
                    if id.is_some_and(|id| !self.groups.contains_key(&id)) {
                        return Err(ApiError::value("group_id", "There is no group matching the given group_id"));
                    }
                    p.group_id = Some(id);
                }
                "company_id" => {
                    let id = num(x, "company_id")?;
                    if id.is_some_and(|id| !self.companies.contains_key(&id)) {
                        return Err(ApiError::value("company_id", "There is no company matching the given company_id"));
                    }
                    p.company_id = Some(id);
                }
                "tags" => {
                    let Some(arr) = x.as_array() else {
                        return Err(ApiError::invalid("tags", "It should be a/an Array", "datatype_mismatch"));
                    };
                    let mut tags: Vec<String> = Vec::new();
                    for t in arr {
                        let Some(s) = t.as_str() else {
                            return Err(ApiError::invalid("tags", "It should contain elements of type String only", "datatype_mismatch"));
                        };
                        if !s.trim().is_empty() && !tags.iter().any(|x| x == s) {
                            tags.push(s.to_string());
                        }
                    }
                    p.tags = Some(tags);
                }
                "custom_fields" => {
                    let Some(obj) = x.as_object() else {
                        return Err(ApiError::invalid("custom_fields", "It should be a/an key/value pair", "datatype_mismatch"));
                    };
                    let mut out = Vec::new();
                    for (name, value) in obj {
                        out.push((name.clone(), self.check_custom(name, value)?));
                    }
                    p.custom_fields = Some(out);
                }
                // Accepted and ignored: they do not change what the simulator stores.
                "email" | "name" | "cc_emails" | "fwd_emails" | "due_by" | "fr_due_by" | "product_id" | "email_config_id" => {}
                other => return Err(ApiError::invalid(other, "Unexpected/invalid field in request", "invalid_field")),
            }
        }
        Ok(p)
    }

    fn apply(t: &mut Ticket, p: Patch) {
        if let Some(x) = p.subject {
            t.subject = x;
        }
        if let Some(x) = p.description {
            t.description = x;
        }
        if let Some(x) = p.status {
            t.status = x;
        }
        if let Some(x) = p.priority {
            t.priority = x;
        }
        if let Some(x) = p.source {
            t.source = x;
        }
        if let Some(x) = p.kind {
            t.kind = x;
        }
        if let Some(x) = p.requester_id {
            t.requester_id = x;
        }
        if let Some(x) = p.responder_id {
            t.responder_id = x;
        }
        if let Some(x) = p.group_id {
            t.group_id = x;
        }
        if let Some(x) = p.company_id {
            t.company_id = x;
        }
        if let Some(x) = p.tags {
            t.tags = x;
        }
        if let Some(cf) = p.custom_fields {
            for (k, v) in cf {
                if v.is_null() {
                    t.custom_fields.remove(&k);
                } else {
                    t.custom_fields.insert(k, v);
                }
            }
        }
    }

    /// The requester of a create: `requester_id`, or a contact found or created by `email`.
    fn requester(&mut self, v: &Value) -> Result<u64, ApiError> {
        if let Some(x) = v.get("requester_id") {
            if let Some(id) = num(x, "requester_id")? {
                return Ok(id);
            }
        }
        let Some(email) = v.get("email").and_then(Value::as_str).filter(|e| e.contains('@')) else {
            return Err(ApiError::invalid("requester_id", "Please fill at least 1 of requester_id, phone, email, twitter_id, facebook_id, unique_external_id fields", "missing_field"));
        };
        if let Some(id) = self.contact_by_email(email).or_else(|| self.agent_by_email(email)) {
            return Ok(id);
        }
        self.create_contact(&json!({"email": email, "name": v.get("name")}))
    }

    /// POST /tickets: returns the new ticket id. HTML keeps `base` as the placeholder.
    pub fn create_ticket(&mut self, v: &Value, files: Vec<NewFile>, base: &str, now: i64) -> Result<u64, ApiError> {
        self.check_files(&files)?;
        let requester = self.requester(v)?;
        let mut body = v.clone();
        if let Some(o) = body.as_object_mut() {
            o.insert("requester_id".into(), json!(requester));
        }
        let p = self.parse_patch(&body)?;
        if p.subject.as_deref().is_none_or(|s| s.trim().is_empty()) {
            return Err(ApiError::invalid("subject", "It should not be blank", "missing_field"));
        }
        let description = p.description.clone().unwrap_or_default();
        let company = self.contacts.get(&requester).and_then(|c| c.company_id);
        let attachments = self.store_files(files, now);
        let id = self.next_ticket_id();
        let mut t = Ticket {
            id,
            subject: String::new(),
            description: String::new(),
            status: 2,
            priority: 1,
            source: 2,
            kind: None,
            requester_id: requester,
            responder_id: None,
            group_id: None,
            company_id: company,
            tags: Vec::new(),
            custom_fields: BTreeMap::new(),
            created_at: now,
            updated_at: now,
            deleted: false,
            spam: false,
            attachments,
            conversations: Vec::new(),
        };
        Self::apply(&mut t, p);
        t.description = placeholder(&description, base);
        self.tickets.insert(id, t);
        Ok(id)
    }

    /// PUT /tickets/{id}.
    pub fn update_ticket(&mut self, id: u64, v: &Value, base: &str, now: i64) -> Result<(), ApiError> {
        self.writable(id)?;
        let mut p = self.parse_patch(v)?;
        if let Some(d) = p.description.take() {
            p.description = Some(placeholder(&d, base));
        }
        if p.subject.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err(ApiError::invalid("subject", "It should not be blank", "missing_field"));
        }
        let t = self.tickets.get_mut(&id).expect("checked above");
        Self::apply(t, p);
        t.updated_at = now;
        Ok(())
    }

    /// POST /tickets/{id}/reply (`note == false`) or /notes: returns the conversation id.
    pub fn add_conversation(&mut self, id: u64, v: &Value, files: Vec<NewFile>, note: bool, base: &str, now: i64) -> Result<u64, ApiError> {
        let t = self.writable(id)?;
        let requester = t.requester_id;
        let Some(body) = v.get("body").and_then(Value::as_str).filter(|b| !b.trim().is_empty()) else {
            return Err(ApiError::invalid("body", "It should not be blank", "missing_field"));
        };
        let user_id = match v.get("user_id") {
            None | Some(Value::Null) => self.default_agent().unwrap_or(requester),
            Some(x) => match num(x, "user_id")? {
                Some(u) if self.user_exists(u) => u,
                _ => return Err(ApiError::value("user_id", "There is no user matching the given user_id")),
            },
        };
        let (private, incoming) = if note {
            let private = match v.get("private") {
                None | Some(Value::Null) => true,
                Some(x) => boolean(x, "private")?,
            };
            let incoming = match v.get("incoming") {
                None | Some(Value::Null) => false,
                Some(x) => boolean(x, "incoming")?,
            };
            (private, incoming)
        } else {
            // A reply by the requester is an incoming customer message; one by an agent is outgoing.
            (false, !self.agents.contains_key(&user_id))
        };
        self.check_files(&files)?;
        let attachments = self.store_files(files, now);
        let cid = self.next_conversation_id();
        let c = Conversation {
            id: cid,
            body: placeholder(body, base),
            private,
            incoming,
            source: if note { SOURCE_NOTE } else { SOURCE_REPLY },
            user_id,
            created_at: now,
            updated_at: now,
            attachments,
        };
        let t = self.tickets.get_mut(&id).expect("checked above");
        t.conversations.push(c);
        t.updated_at = now;
        Ok(cid)
    }

    /// PUT /conversations/{id}: only notes can be edited. Returns the ticket id.
    pub fn update_conversation(&mut self, cid: u64, v: &Value, base: &str, now: i64) -> Result<u64, ApiError> {
        let Some(body) = v.get("body").and_then(Value::as_str).filter(|b| !b.trim().is_empty()) else {
            return Err(ApiError::invalid("body", "It should not be blank", "missing_field"));
        };
        let body = placeholder(body, base);
        for t in self.tickets.values_mut().filter(|t| !t.deleted) {
            if let Some(c) = t.conversations.iter_mut().find(|c| c.id == cid) {
                if c.source != SOURCE_NOTE {
                    return Err(ApiError::value("id", "Only notes can be updated"));
                }
                c.body = body;
                c.updated_at = now;
                t.updated_at = now;
                return Ok(t.id);
            }
        }
        Err(ApiError::not_found())
    }

    pub fn delete_ticket(&mut self, id: u64, now: i64) -> Result<(), ApiError> {
        self.writable(id)?;
        let t = self.tickets.get_mut(&id).expect("checked above");
        t.deleted = true;
        t.updated_at = now;
        Ok(())
    }

    pub fn mark_spam(&mut self, id: u64, now: i64) -> Result<(), ApiError> {
        self.writable(id)?;
        let t = self.tickets.get_mut(&id).expect("checked above");
        t.spam = true;
        t.updated_at = now;
        Ok(())
    }

    /// Restores a ticket from the trash or from spam (Freshdesk's `PUT /tickets/{id}/restore`, or an agent
    /// marking it "not spam").
    pub fn restore(&mut self, id: u64, now: i64) -> Result<(), ApiError> {
        let t = self.tickets.get_mut(&id).ok_or_else(ApiError::not_found)?;
        t.deleted = false;
        t.spam = false;
        t.updated_at = now;
        Ok(())
    }

    /// The tickets `GET /tickets` lists for a filter, ordered; `updated_since == None` keeps only those created
    /// in the last `default_days` days.
    pub fn list(&self, filter: Option<&str>, updated_since: Option<i64>, order_by: &str, asc: bool, now: i64, default_days: i64) -> Vec<&Ticket> {
        let mut v: Vec<&Ticket> = self
            .tickets
            .values()
            .filter(|t| match filter {
                Some("deleted") => t.deleted,
                Some("spam") => t.spam && !t.deleted,
                _ => !t.deleted && !t.spam,
            })
            .filter(|t| match updated_since {
                Some(s) => t.updated_at >= s,
                None => t.created_at >= now - default_days * 86_400,
            })
            .collect();
        let key = |t: &Ticket| match order_by {
            "updated_at" => (t.updated_at, t.id as i64),
            "status" => (t.status as i64, t.id as i64),
            "due_by" => (t.created_at + 3 * 86_400, t.id as i64),
            _ => (t.created_at, t.id as i64),
        };
        v.sort_by_key(|t| key(t));
        if !asc {
            v.reverse();
        }
        v
    }

    /// Whole state, independent of the bound port (HTML keeps the base-URL placeholder).
    pub fn snapshot(&mut self) -> Value {
        for a in self.attachments.values_mut() {
            if a.sha256.is_none() {
                a.sha256 = Some(hex::encode(Sha256::digest(a.data.bytes())));
            }
        }
        let att = |id: &u64| {
            self.attachments.get(id).map(|a| json!({"id": a.id, "name": a.name, "size": a.size, "content_type": a.content_type, "sha256": a.sha256}))
        };
        let tickets: Vec<Value> = self
            .tickets
            .values()
            .map(|t| {
                let mut v = self.ticket_json(BASE_PLACEHOLDER, t, true);
                v["deleted"] = json!(t.deleted);
                v["attachments"] = t.attachments.iter().filter_map(att).collect();
                v["conversations"] = t
                    .conversations
                    .iter()
                    .map(|c| {
                        json!({
                            "id": c.id, "body": c.body, "body_text": strip_html(&c.body), "private": c.private,
                            "incoming": c.incoming, "source": c.source, "user_id": c.user_id,
                            "created_at": fmt_time(c.created_at),
                            "attachments": c.attachments.iter().filter_map(att).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                v
            })
            .collect();
        json!({
            "tickets": tickets,
            "contacts": self.contacts.values().map(|c| self.contact_json(c)).collect::<Vec<_>>(),
            "agents": self.agents.values().map(|a| self.agent_json(a)).collect::<Vec<_>>(),
            "companies": self.companies.values().map(|c| self.company_json(c)).collect::<Vec<_>>(),
            "groups": self.groups.values().map(|g| self.group_json(g)).collect::<Vec<_>>(),
            "ticket_fields": self.fields.iter().map(|f| self.field_json(f)).collect::<Vec<_>>(),
        })
    }
}

/// Stored HTML keeps the base URL as a placeholder, so the state does not depend on the port.
fn placeholder(html: &str, base: &str) -> String {
    if base.is_empty() {
        html.to_string()
    } else {
        html.replace(base, BASE_PLACEHOLDER)
    }
}

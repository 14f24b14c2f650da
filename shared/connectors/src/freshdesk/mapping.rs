//! Pure translation between Freshdesk JSON and the canonical model, both ways, plus the pieces of the
//! target-side conventions (the "originally by" header line, the fallback hints, the listing cursor). No I/O:
//! lookups (users, groups, companies, field labels, target ids) are resolved by the caller and passed in.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use deltadesk_core::model::{Attachment, Comment, Group, Organization, Priority, Role, Status, Ticket, TicketId, TicketType, User};
use deltadesk_core::ports::UploadedAttachment;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Map, Value};

pub use crate::zendesk::mapping::{format_time, id_of, parse, parse_time, MappingError};

/// The custom text field holding the source reference on every target ticket.
pub const REF_FIELD: &str = "cf_deltadesk_ref";
/// The custom text field holding canonical values Freshdesk cannot express (see [`fallbacks`]).
pub const FALLBACKS_FIELD: &str = "cf_deltadesk_fallbacks";
/// The canonical custom field that carries a Freshdesk ticket type with no canonical counterpart.
pub const TYPE_FIELD_TITLE: &str = "Ticket type";
/// The description of a target ticket whose first canonical comment is private (or missing): Freshdesk's
/// description is always visible to the requester, so the comment goes into the first private note instead.
pub const DESCRIPTION_PLACEHOLDER: &str = "— migrated by deltadesk: the first message follows as a note";
/// Start of the plain-text header line of every migrated body.
const ORIGIN_PREFIX: &str = "— originally by ";
/// The HTML header element; its class marks it for stripping on read.
const ORIGIN_CLASS: &str = "deltadesk-origin";

fn err(record: impl Into<String>, cause: impl Into<String>) -> MappingError {
    MappingError { record: record.into(), cause: cause.into() }
}

fn null_as_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A ticket as Freshdesk serves it (the fields deltadesk uses).
#[derive(Debug, Clone, Deserialize)]
pub struct FdTicket {
    pub id: u64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub subject: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub description_text: Option<String>,
    pub status: u64,
    #[serde(default)]
    pub priority: Option<u64>,
    #[serde(default, rename = "type")]
    pub ticket_type: Option<String>,
    #[serde(default)]
    pub requester_id: Option<u64>,
    #[serde(default)]
    pub responder_id: Option<u64>,
    #[serde(default)]
    pub group_id: Option<u64>,
    #[serde(default)]
    pub company_id: Option<u64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub custom_fields: Map<String, Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub spam: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub deleted: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub attachments: Vec<FdAttachment>,
    pub created_at: String,
    pub updated_at: String,
}

impl FdTicket {
    /// In the trash or marked as spam: a deletion for the migration.
    pub fn is_gone(&self) -> bool {
        self.deleted || self.spam
    }
    /// The source reference stored on a target ticket.
    pub fn source_ref(&self) -> Option<&str> {
        self.custom_fields.get(REF_FIELD).and_then(Value::as_str)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct FdConversation {
    pub id: u64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub body: String,
    #[serde(default)]
    pub body_text: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub private: bool,
    #[serde(default, deserialize_with = "null_as_default")]
    pub incoming: bool,
    pub user_id: u64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub attachments: Vec<FdAttachment>,
    pub created_at: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FdAttachment {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub size: u64,
    pub attachment_url: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FdContact {
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FdAgentContact {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FdAgent {
    pub id: u64,
    pub contact: FdAgentContact,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FdCompany {
    pub id: u64,
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub domains: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FdGroup {
    pub id: u64,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FdField {
    pub id: u64,
    pub name: String,
    pub label: String,
    #[serde(default, rename = "type")]
    pub field_type: Option<String>,
}

impl FdField {
    /// Custom fields are the `cf_…` ones; the connector's own two are not part of the canonical ticket.
    pub fn is_mapped_custom(&self) -> bool {
        self.name.starts_with("cf_") && self.name != REF_FIELD && self.name != FALLBACKS_FIELD
    }
}

/// The record name used in errors: `freshdesk ticket 123`.
pub fn ticket_record(id: impl std::fmt::Display) -> String {
    format!("freshdesk ticket {id}")
}

pub fn status_from_fd(record: &str, s: u64) -> Result<Status, MappingError> {
    match s {
        2 => Ok(Status::Open),
        3 => Ok(Status::Pending),
        4 => Ok(Status::Solved),
        5 => Ok(Status::Closed),
        other => Err(err(record, format!("status {other} has no canonical counterpart (custom statuses are not mapped)"))),
    }
}

/// The Freshdesk status for a canonical one; New and Hold fall back to Open and Pending.
pub fn status_to_fd(t: &Ticket) -> Result<u64, MappingError> {
    Ok(match t.status {
        Status::New | Status::Open => 2,
        Status::Pending | Status::Hold => 3,
        Status::Solved => 4,
        Status::Closed => 5,
        Status::Deleted => return Err(err(format!("ticket {}", t.source_id), "status 'deleted' cannot be written; the target ticket is deleted instead")),
    })
}

pub fn priority_from_fd(record: &str, p: Option<u64>) -> Result<Option<Priority>, MappingError> {
    match p {
        None => Ok(None),
        Some(1) => Ok(Some(Priority::Low)),
        Some(2) => Ok(Some(Priority::Normal)),
        Some(3) => Ok(Some(Priority::High)),
        Some(4) => Ok(Some(Priority::Urgent)),
        Some(other) => Err(err(record, format!("unknown priority {other}"))),
    }
}

/// Freshdesk requires a priority: none falls back to Low (1).
pub fn priority_to_fd(p: Option<Priority>) -> u64 {
    match p {
        None | Some(Priority::Low) => 1,
        Some(Priority::Normal) => 2,
        Some(Priority::High) => 3,
        Some(Priority::Urgent) => 4,
    }
}

/// A Freshdesk type name: a canonical type (case-insensitive), or an other name to carry as a custom field.
pub fn type_from_fd(name: Option<&str>) -> (Option<TicketType>, Option<String>) {
    match name.map(str::trim).filter(|n| !n.is_empty()) {
        None => (None, None),
        Some(n) => match TicketType::parse(&n.to_ascii_lowercase()) {
            Some(t) => (Some(t), None),
            None => (None, Some(n.to_string())),
        },
    }
}

/// The type name written to Freshdesk (its `ticket_type` choices must contain it).
pub fn type_to_fd(t: Option<TicketType>) -> Option<&'static str> {
    t.map(|t| match t {
        TicketType::Question => "Question",
        TicketType::Incident => "Incident",
        TicketType::Problem => "Problem",
        TicketType::Task => "Task",
    })
}

/// The `cf_deltadesk_fallbacks` value for `t`: what a Freshdesk ticket cannot hold, or `None`.
pub fn fallbacks(t: &Ticket) -> Option<String> {
    let mut parts = Vec::new();
    match t.status {
        Status::New => parts.push("status=new"),
        Status::Hold => parts.push("status=hold"),
        _ => {}
    }
    if t.priority.is_none() {
        parts.push("priority=none");
    }
    (!parts.is_empty()).then(|| parts.join(";"))
}

/// Applies the hints of `cf_deltadesk_fallbacks`, each only while Freshdesk still holds the value that was
/// written for it (a change made in Freshdesk since wins).
pub fn apply_fallbacks(hints: Option<&str>, status: Status, priority: Option<Priority>) -> (Status, Option<Priority>) {
    let (mut status, mut priority) = (status, priority);
    for h in hints.unwrap_or_default().split(';').map(str::trim) {
        match h {
            "status=new" if status == Status::Open => status = Status::New,
            "status=hold" if status == Status::Pending => status = Status::Hold,
            "priority=none" if priority == Some(Priority::Low) => priority = None,
            _ => {}
        }
    }
    (status, priority)
}

/// Who wrote a comment and when, as the header line of a migrated body records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub name: String,
    pub email: String,
    pub at: DateTime<Utc>,
}

fn origin_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The header line in plain text: `— originally by Jane <jane@x> on 2026-03-10 14:00:05 UTC`.
pub fn origin_line(c: &Comment) -> String {
    let name = c.author.name.replace(['\n', '\r'], " ");
    format!("{ORIGIN_PREFIX}{} <{}> on {}", name.trim(), c.author.email.trim(), origin_time(c.created_at))
}

/// The header line as the first element of an HTML body.
pub fn origin_html(c: &Comment) -> String {
    format!("<div class=\"{ORIGIN_CLASS}\">{}</div>", escape_html(&origin_line(c)))
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Parses a plain header line (the inverse of [`origin_line`]).
pub fn parse_origin(line: &str) -> Option<Origin> {
    let rest = line.trim().strip_prefix(ORIGIN_PREFIX)?;
    let rest = rest.strip_suffix(" UTC")?;
    let on = rest.rfind(" on ")?;
    let (who, when) = (&rest[..on], &rest[on + 4..]);
    let at = chrono::NaiveDateTime::parse_from_str(when, "%Y-%m-%d %H:%M:%S").ok()?.and_utc();
    let who = who.strip_suffix('>')?;
    let lt = who.rfind(" <").map(|i| (i, 2)).or_else(|| who.rfind('<').map(|i| (i, 1)))?;
    let (name, email) = (&who[..lt.0], &who[lt.0 + lt.1..]);
    if !email.contains('@') {
        return None;
    }
    Some(Origin { name: name.trim().to_string(), email: email.trim().to_string(), at })
}

/// Splits a migrated plain body into its header and the rest (`None` when the body has no header).
pub fn split_origin_text(text: &str) -> (Option<Origin>, String) {
    let trimmed = text.trim_start();
    let (first, rest) = trimmed.split_once('\n').unwrap_or((trimmed, ""));
    match parse_origin(first) {
        Some(o) => (Some(o), rest.to_string()),
        None => (None, text.to_string()),
    }
}

/// Removes the header element from a migrated HTML body.
pub fn strip_origin_html(html: &str) -> String {
    let open = format!("<div class=\"{ORIGIN_CLASS}\">");
    let t = html.trim_start();
    if let Some(rest) = t.strip_prefix(&open) {
        if let Some(end) = rest.find("</div>") {
            return rest[end + "</div>".len()..].to_string();
        }
    }
    html.to_string()
}

/// Which attachments are inline: their URL appears in the body.
pub fn attachment_from_fd(a: &FdAttachment, html: &str) -> Attachment {
    Attachment {
        source_id: a.id.to_string(),
        file_name: a.name.clone(),
        content_type: a.content_type.clone().filter(|c| !c.is_empty()).unwrap_or_else(|| "application/octet-stream".into()),
        size: a.size,
        sha256: None,
        inline: html.contains(&a.attachment_url) || html.contains(&a.attachment_url.replace('&', "&amp;")),
        source_url: a.attachment_url.clone(),
    }
}

pub fn organization_from_fd(c: &FdCompany) -> Organization {
    Organization { source_id: c.id.to_string(), name: c.name.clone(), domains: c.domains.clone() }
}

pub fn group_from_fd(g: &FdGroup) -> Group {
    Group { source_id: g.id.to_string(), name: g.name.clone() }
}

pub fn user_from_contact(c: &FdContact) -> Result<User, MappingError> {
    let email = c.email.as_deref().map(str::trim).filter(|e| !e.is_empty());
    let Some(email) = email else {
        return Err(err(format!("freshdesk contact {}", c.id), "has no email (users are matched across help desks by email)"));
    };
    Ok(User { source_id: c.id.to_string(), email: email.to_string(), name: c.name.clone().unwrap_or_default(), role: Role::EndUser })
}

pub fn user_from_agent(a: &FdAgent) -> Result<User, MappingError> {
    let email = a.contact.email.as_deref().map(str::trim).filter(|e| !e.is_empty());
    let Some(email) = email else {
        return Err(err(format!("freshdesk agent {}", a.id), "has no email (users are matched across help desks by email)"));
    };
    Ok(User { source_id: a.id.to_string(), email: email.to_string(), name: a.contact.name.clone().unwrap_or_default(), role: Role::Agent })
}

/// What a ticket read needs resolved, by Freshdesk id.
#[derive(Debug, Default)]
pub struct Lookups<'a> {
    pub users: HashMap<u64, &'a User>,
    /// Why a user could not be resolved (e.g. has no email), for the error message.
    pub user_problems: HashMap<u64, String>,
    pub groups: HashMap<u64, &'a Group>,
    pub companies: HashMap<u64, &'a Organization>,
    /// Custom field name (`cf_…`) -> label.
    pub field_labels: HashMap<&'a str, &'a str>,
}

/// Every user id a ticket and its conversations refer to.
pub fn referenced_users(t: &FdTicket, conversations: &[FdConversation]) -> Vec<u64> {
    let mut ids: Vec<u64> = t.requester_id.into_iter().chain(t.responder_id).chain(conversations.iter().map(|c| c.user_id)).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn lookup_user(lk: &Lookups<'_>, record: &str, role: &str, id: u64) -> Result<User, MappingError> {
    match lk.users.get(&id) {
        Some(u) => Ok((*u).clone()),
        None => {
            let why = lk.user_problems.get(&id).cloned().unwrap_or_else(|| "not returned by the contacts or agents API".into());
            Err(err(record, format!("{role} user {id} unknown: {why}")))
        }
    }
}

/// How a ticket is read: as the source has it, or as deltadesk wrote it into a target (headers stripped,
/// authors, times and fallback values restored, the placeholder description skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadAs {
    Source,
    Target,
}

/// One body in canonical form: (html, plain, origin when read as a target).
fn body(html: &str, text: Option<&str>, read: ReadAs) -> (String, String, Option<Origin>) {
    let plain = text.map(str::to_string).unwrap_or_else(|| strip_tags(html));
    if read == ReadAs::Source {
        return (html.to_string(), plain.trim().to_string(), None);
    }
    let (origin, rest) = split_origin_text(&plain);
    if origin.is_none() {
        return (html.to_string(), plain.trim().to_string(), None);
    }
    (strip_origin_html(html), rest.trim().to_string(), origin)
}

/// Tags removed, basic entities decoded: a fallback when Freshdesk sends no `body_text`.
fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for ch in html.chars() {
        match ch {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&nbsp;", " ").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'").replace("&amp;", "&")
}

/// The comment author: the header's person (as the source had them) when read as a target.
fn author(lk: &Lookups<'_>, record: &str, id: u64, origin: Option<&Origin>) -> Result<User, MappingError> {
    match origin {
        Some(o) => {
            let known = lk.users.get(&id).filter(|u| u.email.eq_ignore_ascii_case(&o.email));
            Ok(User {
                source_id: id.to_string(),
                email: o.email.clone(),
                name: o.name.clone(),
                role: known.map(|u| u.role).unwrap_or(Role::EndUser),
            })
        }
        None => lookup_user(lk, record, "author", id),
    }
}

/// A Freshdesk ticket and its conversations (oldest first) in canonical form. `source_id` is the Freshdesk id.
/// The description is the first comment (`description-<id>`), unless it is the placeholder of a target.
pub fn ticket_from_fd(t: &FdTicket, conversations: &[FdConversation], lk: &Lookups<'_>, read: ReadAs) -> Result<Ticket, MappingError> {
    let record = ticket_record(t.id);
    let mut status = status_from_fd(&record, t.status)?;
    let mut priority = priority_from_fd(&record, t.priority)?;
    if read == ReadAs::Target {
        (status, priority) = apply_fallbacks(t.custom_fields.get(FALLBACKS_FIELD).and_then(Value::as_str), status, priority);
    }
    let (ticket_type, other_type) = type_from_fd(t.ticket_type.as_deref());
    let created_at = parse_time(&record, "created_at", &t.created_at)?;
    let updated_at = parse_time(&record, "updated_at", &t.updated_at)?;
    let requester = t.requester_id.map(|id| lookup_user(lk, &record, "requester", id)).transpose()?;
    let assignee = t.responder_id.map(|id| lookup_user(lk, &record, "responder", id)).transpose()?;
    let group = match t.group_id {
        None => None,
        Some(id) => Some((*lk.groups.get(&id).ok_or_else(|| err(&record, format!("group {id} unknown")))?).clone()),
    };
    let organization = match t.company_id {
        None => None,
        Some(id) => Some((*lk.companies.get(&id).ok_or_else(|| err(&record, format!("company {id} unknown")))?).clone()),
    };
    let mut custom_fields = BTreeMap::new();
    for (name, value) in &t.custom_fields {
        if value.is_null() || name == REF_FIELD || name == FALLBACKS_FIELD {
            continue;
        }
        let label = lk.field_labels.get(name.as_str()).ok_or_else(|| err(&record, format!("custom field {name} unknown")))?;
        if custom_fields.insert(label.to_string(), value.clone()).is_some() {
            return Err(err(&record, format!("two custom fields are labelled {label:?}")));
        }
    }
    if let Some(other) = other_type {
        if custom_fields.insert(TYPE_FIELD_TITLE.to_string(), json!(other)).is_some() {
            return Err(err(&record, format!("type {other:?} cannot be carried: a custom field is already labelled {TYPE_FIELD_TITLE:?}")));
        }
    }

    let mut comments = Vec::with_capacity(conversations.len() + 1);
    let desc_html = t.description.clone().unwrap_or_default();
    let desc_text = t.description_text.as_deref();
    let placeholder = read == ReadAs::Target && desc_text.map(str::trim).unwrap_or_else(|| desc_html.trim()) == DESCRIPTION_PLACEHOLDER;
    if !placeholder {
        let (html, plain, origin) = body(&desc_html, desc_text, read);
        let requester_id = t.requester_id.ok_or_else(|| err(&record, "has no requester"))?;
        comments.push(Comment {
            source_id: format!("description-{}", t.id),
            author: author(lk, &record, requester_id, origin.as_ref())?,
            plain_body: plain,
            public: true,
            created_at: origin.as_ref().map(|o| o.at).unwrap_or(created_at),
            attachments: t.attachments.iter().map(|a| attachment_from_fd(a, &desc_html)).collect(),
            html_body: html,
        });
    }
    for c in conversations {
        let crecord = format!("{record} conversation {}", c.id);
        let (html, plain, origin) = body(&c.body, c.body_text.as_deref(), read);
        comments.push(Comment {
            source_id: c.id.to_string(),
            author: author(lk, &crecord, c.user_id, origin.as_ref())?,
            plain_body: plain,
            public: !c.private,
            created_at: match &origin {
                Some(o) => o.at,
                None => parse_time(&crecord, "created_at", &c.created_at)?,
            },
            attachments: c.attachments.iter().map(|a| attachment_from_fd(a, &c.body)).collect(),
            html_body: html,
        });
    }
    Ok(Ticket {
        source_id: TicketId(t.id.to_string()),
        subject: t.subject.clone(),
        status,
        priority,
        ticket_type,
        requester,
        assignee,
        group,
        organization,
        tags: t.tags.clone(),
        custom_fields,
        created_at,
        updated_at,
        comments,
    })
}

// ---------------------------------------------------------------------------------------------------------
// Canonical -> Freshdesk (target side)
// ---------------------------------------------------------------------------------------------------------

/// Target ids the caller resolved for one ticket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetRefs {
    pub requester_id: Option<u64>,
    pub responder_id: Option<u64>,
    pub group_id: Option<u64>,
    pub company_id: Option<u64>,
}

/// Canonical custom fields (by title) as Freshdesk `custom_fields` (by name). With `clear_others`, every other
/// mapped custom field of the target is set to null so the target equals the snapshot. The fallback hints are
/// always written (null when there are none).
pub fn custom_fields_to_fd(t: &Ticket, label_to_name: &HashMap<String, String>, clear_others: bool) -> Result<Map<String, Value>, MappingError> {
    let mut out = Map::new();
    for (title, value) in &t.custom_fields {
        let name = label_to_name
            .get(title)
            .ok_or_else(|| err(format!("ticket {} field '{title}'", t.source_id), "no custom field with this label in the target"))?;
        out.insert(name.clone(), value.clone());
    }
    if clear_others {
        for name in label_to_name.values() {
            out.entry(name.clone()).or_insert(Value::Null);
        }
    }
    out.insert(FALLBACKS_FIELD.into(), json!(fallbacks(t)));
    Ok(out)
}

/// Every mapped field of `t` for `PUT /tickets/{id}` (missing ones as null) or, with `source_ref`, for a create.
pub fn ticket_fields_to_fd(t: &Ticket, refs: &TargetRefs, custom_fields: Map<String, Value>, source_ref: Option<&str>) -> Result<Map<String, Value>, MappingError> {
    let mut m = Map::new();
    m.insert("subject".into(), json!(t.subject));
    m.insert("status".into(), json!(status_to_fd(t)?));
    m.insert("priority".into(), json!(priority_to_fd(t.priority)));
    m.insert("type".into(), json!(type_to_fd(t.ticket_type)));
    if let Some(r) = refs.requester_id {
        m.insert("requester_id".into(), json!(r));
    }
    m.insert("responder_id".into(), json!(refs.responder_id));
    m.insert("group_id".into(), json!(refs.group_id));
    m.insert("company_id".into(), json!(refs.company_id));
    m.insert("tags".into(), json!(t.tags));
    let mut cf = custom_fields;
    if let Some(r) = source_ref {
        cf.insert(REF_FIELD.into(), json!(r));
        // A create sends no nulls: absent is unset.
        for k in ["type", "responder_id", "group_id", "company_id"] {
            if m.get(k).is_some_and(Value::is_null) {
                m.remove(k);
            }
        }
        cf.retain(|_, v| !v.is_null());
    }
    m.insert("custom_fields".into(), Value::Object(cf));
    Ok(m)
}

/// A comment's body as written: the header line, then the HTML (or the escaped plain body when the HTML is
/// empty).
pub fn body_to_fd(c: &Comment) -> String {
    let html = if c.html_body.trim().is_empty() { format!("<div>{}</div>", escape_html(&c.plain_body)) } else { c.html_body.clone() };
    format!("{}{html}", origin_html(c))
}

/// Re-points inline images of `html` to the attachments the target created, matched to the uploads by order.
pub fn repoint_inline(html: &str, attachments: &[Attachment], uploads: &[UploadedAttachment], created_urls: &[String]) -> String {
    let fixed: Vec<UploadedAttachment> = uploads
        .iter()
        .zip(created_urls)
        .map(|(u, url)| UploadedAttachment { content_url: url.clone(), ..u.clone() })
        .collect();
    crate::zendesk::mapping::rewrite_inline_urls(html, attachments, &fixed)
}

/// Whether `html` refers to any of the comment's inline attachments that were uploaded.
pub fn has_inline(html: &str, attachments: &[Attachment], uploads: &[UploadedAttachment]) -> bool {
    attachments.iter().any(|a| !a.source_url.is_empty() && uploads.iter().any(|u| u.source_id == a.source_id) && (html.contains(&a.source_url) || html.contains(&a.source_url.replace('&', "&amp;"))))
}

// ---------------------------------------------------------------------------------------------------------
// The listing cursor
// ---------------------------------------------------------------------------------------------------------

/// Where a listing stands: which pass (0 live, 1 deleted, 2 spam), the `updated_since` of the current query,
/// its next page, the ids already returned at exactly `since` (skipped after a restart), and the newest
/// `updated_at` seen with the ids seen at it (the next restart point).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListCursor {
    pub pass: u8,
    pub since: i64,
    pub page: u32,
    pub skip: Vec<u64>,
    pub last_at: i64,
    pub last_ids: Vec<u64>,
}

fn ids(v: &[u64]) -> String {
    v.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
}

fn parse_ids(s: &str) -> Option<Vec<u64>> {
    if s.is_empty() {
        return Some(Vec::new());
    }
    s.split(',').map(|x| x.parse().ok()).collect()
}

impl ListCursor {
    pub fn start(pass: u8, since: i64) -> Self {
        ListCursor { pass, since, page: 1, skip: Vec::new(), last_at: since, last_ids: Vec::new() }
    }

    pub fn encode(&self) -> String {
        format!("fd1:{}:{}:{}:{}:{}:{}", self.pass, self.since, self.page, ids(&self.skip), self.last_at, ids(&self.last_ids))
    }

    pub fn decode(s: &str) -> Option<Self> {
        let p: Vec<&str> = s.split(':').collect();
        if p.len() != 7 || p[0] != "fd1" {
            return None;
        }
        Some(ListCursor { pass: p[1].parse().ok()?, since: p[2].parse().ok()?, page: p[3].parse().ok()?, skip: parse_ids(p[4])?, last_at: p[5].parse().ok()?, last_ids: parse_ids(p[6])? })
    }

    /// Records a page of (id, updated_at) in listing order; returns the entries not seen before.
    pub fn take(&mut self, page: &[(u64, i64)]) -> Vec<(u64, i64)> {
        let mut out = Vec::new();
        for &(id, at) in page {
            if at == self.since && self.skip.contains(&id) {
                continue;
            }
            if at > self.last_at {
                self.last_at = at;
                self.last_ids.clear();
            }
            if at == self.last_at && !self.last_ids.contains(&id) {
                self.last_ids.push(id);
            }
            out.push((id, at));
        }
        out
    }

    /// The query to continue with after a full page: page 1 again from the newest `updated_at` seen, skipping
    /// what was already returned at that second (keyset paging). Not `page + 1`: pages are offsets, and a
    /// ticket that leaves the listing between two pages (trashed, spammed, or updated to its end) moves every
    /// later row up by one, so the first row of the next page would never be listed. Only while the page made
    /// no progress (every row at `since`) does the query go on to its next page, up to the ceiling; if a whole
    /// ceiling's worth of tickets shares one second, the restart moves one second on.
    pub fn advance(&self, max_page: u32) -> ListCursor {
        if self.last_at == self.since && self.page < max_page {
            return ListCursor { page: self.page + 1, ..self.clone() };
        }
        self.restart()
    }

    pub fn restart(&self) -> ListCursor {
        if self.last_at == self.since && self.page > 1 {
            tracing::warn!(since = self.since, "freshdesk: more tickets updated within one second than the page ceiling allows; moving on one second");
            return ListCursor::start(self.pass, self.since + 1);
        }
        ListCursor { pass: self.pass, since: self.last_at, page: 1, skip: self.last_ids.clone(), last_at: self.last_at, last_ids: self.last_ids.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn user(id: u64, email: &str, role: Role) -> User {
        User { source_id: id.to_string(), email: email.into(), name: format!("User {id}"), role }
    }

    const TICKET: &str = r#"{
      "id": 42, "subject": "Printer on fire", "description": "<div>It smokes.</div><div><img src=\"https://s3/att/900\"></div>",
      "description_text": "It smokes.", "status": 3, "priority": 2, "source": 1, "type": "Incident",
      "requester_id": 7, "responder_id": 8, "group_id": 30, "company_id": 40, "tags": ["printer"],
      "custom_fields": {"cf_product": "product_pro", "cf_items": null, "cf_deltadesk_ref": "dd:x:1", "cf_deltadesk_fallbacks": null},
      "spam": false, "attachments": [{"id": 900, "name": "shot.png", "content_type": "image/png", "size": 10, "attachment_url": "https://s3/att/900"}],
      "created_at": "2026-03-10T14:00:00Z", "updated_at": "2026-03-10T15:30:00Z"
    }"#;

    const CONVERSATIONS: &str = r#"[
      {"id": 55, "body": "<div>Any news?</div>", "body_text": "Any news?", "private": false, "incoming": true, "source": 0,
       "user_id": 7, "attachments": [], "created_at": "2026-03-10T14:10:00Z"},
      {"id": 56, "body": "<div>internal</div>", "body_text": "internal", "private": true, "incoming": false, "source": 2,
       "user_id": 8, "attachments": [{"id": 901, "name": "log.txt", "content_type": "text/plain", "size": 3, "attachment_url": "https://s3/att/901"}],
       "created_at": "2026-03-10T15:30:00Z"}
    ]"#;

    struct Fixture {
        users: Vec<User>,
        group: Group,
        org: Organization,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                users: vec![user(7, "req@example.com", Role::EndUser), user(8, "agent@acme.com", Role::Agent)],
                group: Group { source_id: "30".into(), name: "Support".into() },
                org: Organization { source_id: "40".into(), name: "Example Inc".into(), domains: vec![] },
            }
        }
        fn lookups(&self) -> Lookups<'_> {
            let mut lk = Lookups::default();
            for u in &self.users {
                lk.users.insert(u.source_id.parse().unwrap(), u);
            }
            lk.groups.insert(30, &self.group);
            lk.companies.insert(40, &self.org);
            lk.field_labels.insert("cf_product", "Product");
            lk.field_labels.insert("cf_items", "Items");
            lk
        }
    }

    fn fixture() -> (FdTicket, Vec<FdConversation>) {
        let t: FdTicket = parse("t", &serde_json::from_str(TICKET).unwrap()).unwrap();
        let c: Vec<FdConversation> = serde_json::from_str(CONVERSATIONS).unwrap();
        (t, c)
    }

    #[test]
    fn source_ticket_maps_description_first_and_conversations_after() {
        let f = Fixture::new();
        let (t, c) = fixture();
        let tk = ticket_from_fd(&t, &c, &f.lookups(), ReadAs::Source).unwrap();
        assert_eq!(tk.source_id, TicketId("42".into()));
        assert_eq!(tk.status, Status::Pending);
        assert_eq!(tk.priority, Some(Priority::Normal));
        assert_eq!(tk.ticket_type, Some(TicketType::Incident));
        assert_eq!(tk.requester.unwrap().email, "req@example.com");
        assert_eq!(tk.assignee.unwrap().email, "agent@acme.com");
        assert_eq!(tk.group.unwrap().name, "Support");
        assert_eq!(tk.organization.unwrap().name, "Example Inc");
        // Null fields and the connector's own fields are left out.
        assert_eq!(tk.custom_fields, BTreeMap::from([("Product".to_string(), json!("product_pro"))]));
        assert_eq!(tk.comments.len(), 3);
        let d = &tk.comments[0];
        assert_eq!(d.source_id, "description-42");
        assert_eq!(d.plain_body, "It smokes.");
        assert!(d.public && d.author.email == "req@example.com");
        assert_eq!(d.created_at, at("2026-03-10T14:00:00Z"));
        assert!(d.attachments[0].inline, "an attachment whose URL is in the body is inline");
        assert!(tk.comments[1].public);
        assert!(!tk.comments[2].public);
        assert!(!tk.comments[2].attachments[0].inline);
        assert_eq!(tk.comments[2].author.role, Role::Agent);
    }

    #[test]
    fn statuses_priorities_and_types_map_both_ways_with_fallbacks() {
        for (fd, s) in [(2, Status::Open), (3, Status::Pending), (4, Status::Solved), (5, Status::Closed)] {
            assert_eq!(status_from_fd("r", fd).unwrap(), s);
        }
        assert!(status_from_fd("r", 6).unwrap_err().cause.contains("custom statuses"));
        for (fd, p) in [(1, Priority::Low), (2, Priority::Normal), (3, Priority::High), (4, Priority::Urgent)] {
            assert_eq!(priority_from_fd("r", Some(fd)).unwrap(), Some(p));
            assert_eq!(priority_to_fd(Some(p)), fd);
        }
        assert_eq!(priority_to_fd(None), 1);
        assert_eq!(type_from_fd(Some("question")), (Some(TicketType::Question), None));
        assert_eq!(type_from_fd(Some("Feature Request")), (None, Some("Feature Request".into())));
        assert_eq!(type_to_fd(Some(TicketType::Task)), Some("Task"));
        // Fallbacks apply only while Freshdesk still holds what was written for them.
        assert_eq!(apply_fallbacks(Some("status=new;priority=none"), Status::Open, Some(Priority::Low)), (Status::New, None));
        assert_eq!(apply_fallbacks(Some("status=new;priority=none"), Status::Solved, Some(Priority::High)), (Status::Solved, Some(Priority::High)));
        assert_eq!(apply_fallbacks(Some("status=hold"), Status::Pending, Some(Priority::Low)), (Status::Hold, Some(Priority::Low)));
    }

    fn comment(author: User, at_: &str, html: &str, plain: &str, public: bool) -> Comment {
        Comment { source_id: "1".into(), author, html_body: html.into(), plain_body: plain.into(), public, created_at: at(at_), attachments: vec![] }
    }

    #[test]
    fn origin_header_round_trips_and_is_stripped() {
        let c = comment(user(1, "jane@x.org", Role::EndUser), "2026-03-10T14:00:05Z", "<p>Hi &amp; bye</p>", "Hi & bye", true);
        let line = origin_line(&c);
        assert_eq!(line, "— originally by User 1 <jane@x.org> on 2026-03-10 14:00:05 UTC");
        let o = parse_origin(&line).unwrap();
        assert_eq!(o, Origin { name: "User 1".into(), email: "jane@x.org".into(), at: at("2026-03-10T14:00:05Z") });
        let html = body_to_fd(&c);
        assert!(html.starts_with("<div class=\"deltadesk-origin\">— originally by User 1 &lt;jane@x.org&gt;"));
        assert_eq!(strip_origin_html(&html), "<p>Hi &amp; bye</p>");
        let (o2, rest) = split_origin_text(&format!("{line}\nHi & bye"));
        assert_eq!(o2, Some(o));
        assert_eq!(rest, "Hi & bye");
        // A name with angle brackets or "on" still parses from the end.
        let tricky = User { name: "Jo <on> on Ice".into(), ..user(2, "jo@x.org", Role::Agent) };
        let c2 = comment(tricky, "2026-01-01T00:00:00Z", "", "x", true);
        assert_eq!(parse_origin(&origin_line(&c2)).unwrap().email, "jo@x.org");
        assert!(parse_origin("— originally by nobody").is_none());
        // Empty HTML: the plain body is sent.
        assert!(body_to_fd(&c2).ends_with("<div>x</div>"));
    }

    #[test]
    fn target_read_restores_authors_times_and_skips_the_placeholder() {
        let f = Fixture::new();
        let (mut t, mut c) = fixture();
        t.description = Some(DESCRIPTION_PLACEHOLDER.into());
        t.description_text = Some(DESCRIPTION_PLACEHOLDER.into());
        t.custom_fields.insert(FALLBACKS_FIELD.into(), json!("status=hold"));
        let orig = comment(user(99, "someone@else.org", Role::EndUser), "2026-01-02T03:04:05Z", "", "Any news?", true);
        c[0].body = format!("{}<div>Any news?</div>", origin_html(&orig));
        c[0].body_text = Some(format!("{}\nAny news?", origin_line(&orig)));
        let tk = ticket_from_fd(&t, &c, &f.lookups(), ReadAs::Target).unwrap();
        assert_eq!(tk.status, Status::Hold);
        assert_eq!(tk.comments.len(), 2, "the placeholder description is not a comment");
        assert_eq!(tk.comments[0].author.email, "someone@else.org");
        assert_eq!(tk.comments[0].created_at, at("2026-01-02T03:04:05Z"));
        assert_eq!(tk.comments[0].plain_body, "Any news?");
        assert_eq!(tk.comments[0].html_body, "<div>Any news?</div>");
        // Without a header (written by someone in Freshdesk) the conversation is taken as it is.
        assert_eq!(tk.comments[1].author.email, "agent@acme.com");
    }

    #[test]
    fn unknown_custom_fields_and_other_types() {
        let f = Fixture::new();
        let (mut t, _) = fixture();
        t.custom_fields.insert("cf_nope".into(), json!("x"));
        assert!(ticket_from_fd(&t, &[], &f.lookups(), ReadAs::Source).unwrap_err().cause.contains("cf_nope"));
        let (mut t, _) = fixture();
        t.ticket_type = Some("Refund".into());
        let tk = ticket_from_fd(&t, &[], &f.lookups(), ReadAs::Source).unwrap();
        assert_eq!(tk.ticket_type, None);
        assert_eq!(tk.custom_fields[TYPE_FIELD_TITLE], json!("Refund"));
    }

    fn canonical() -> Ticket {
        let f = Fixture::new();
        let (t, c) = fixture();
        ticket_from_fd(&t, &c, &f.lookups(), ReadAs::Source).unwrap()
    }

    #[test]
    fn create_and_update_bodies() {
        let mut tk = canonical();
        tk.status = Status::New;
        tk.priority = None;
        let names = HashMap::from([("Product".to_string(), "cf_product".to_string()), ("Items".to_string(), "cf_items".to_string())]);
        let refs = TargetRefs { requester_id: Some(1), responder_id: None, group_id: Some(3), company_id: None };
        let cf = custom_fields_to_fd(&tk, &names, false).unwrap();
        let create = ticket_fields_to_fd(&tk, &refs, cf, Some("dd:m:42")).unwrap();
        assert_eq!(create["status"], 2);
        assert_eq!(create["priority"], 1);
        assert_eq!(create["type"], "Incident");
        assert!(create.get("responder_id").is_none() && create.get("company_id").is_none());
        assert_eq!(create["custom_fields"], json!({"cf_product": "product_pro", "cf_deltadesk_ref": "dd:m:42", "cf_deltadesk_fallbacks": "status=new;priority=none"}));
        tk.status = Status::Solved;
        tk.priority = Some(Priority::High);
        let cf = custom_fields_to_fd(&tk, &names, true).unwrap();
        let update = ticket_fields_to_fd(&tk, &refs, cf, None).unwrap();
        assert_eq!(update["responder_id"], Value::Null);
        assert_eq!(update["custom_fields"]["cf_items"], Value::Null);
        assert_eq!(update["custom_fields"]["cf_deltadesk_fallbacks"], Value::Null);
        assert!(update["custom_fields"].get(REF_FIELD).is_none(), "an update never touches the reference");
        let mut missing = names.clone();
        missing.remove("Product");
        assert!(custom_fields_to_fd(&tk, &missing, false).unwrap_err().cause.contains("no custom field"));
        tk.status = Status::Deleted;
        assert!(ticket_fields_to_fd(&tk, &refs, Map::new(), None).is_err());
    }

    #[test]
    fn inline_images_are_repointed_to_the_created_attachments() {
        let tk = canonical();
        let d = &tk.comments[0];
        let up = UploadedAttachment { source_id: "900".into(), token: "t".into(), content_url: String::new(), size: 10, sha256: "00".into() };
        assert!(has_inline(&d.html_body, &d.attachments, std::slice::from_ref(&up)));
        let out = repoint_inline(&d.html_body, &d.attachments, &[up], &["http://target/fd-attachments/abc".into()]);
        assert!(out.contains("src=\"http://target/fd-attachments/abc\"") && !out.contains("s3/att/900"));
    }

    #[test]
    fn cursor_round_trips_and_continues_by_keyset_without_repeats() {
        let mut c = ListCursor::start(1, 100);
        assert_eq!(ListCursor::decode(&c.encode()), Some(c.clone()));
        assert_eq!(ListCursor::decode("garbage"), None);
        assert_eq!(c.take(&[(1, 100), (2, 105), (3, 105)]), vec![(1, 100), (2, 105), (3, 105)]);
        // Progress: page 1 again from the newest second seen, skipping what was listed at it, so a ticket
        // leaving the listing in between shifts nothing past us.
        let mut r = c.advance(300);
        assert_eq!((r.page, r.since, r.skip.clone()), (1, 105, vec![2, 3]));
        assert_eq!(ListCursor::decode(&r.encode()), Some(r.clone()));
        assert_eq!(r.take(&[(2, 105), (3, 105), (4, 105), (5, 110)]), vec![(4, 105), (5, 110)]);
        // A whole page at one second: the next page of the same query, up to the ceiling.
        let mut same = ListCursor::start(0, 200);
        same.take(&[(6, 200), (7, 200)]);
        let next = same.advance(2);
        assert_eq!((next.page, next.since), (2, 200));
        // No progress over a whole ceiling: move one second on.
        let stuck = ListCursor { pass: 0, since: 50, page: 2, skip: vec![], last_at: 50, last_ids: vec![1, 2] };
        assert_eq!(stuck.advance(2).since, 51);
    }
}

//! Pure translation between Zendesk JSON and the canonical model, both ways. No I/O: lookups (users, groups,
//! organizations, field titles, target ids) are resolved by the caller and passed in.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use deltadesk_core::model::{
    Attachment, Comment, Group, Organization, Priority, Role, Status, Ticket, TicketId, TicketType,
    User,
};
use deltadesk_core::ports::{ChangeRef, UploadedAttachment};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{json, Map, Value};

/// A record that does not have the documented shape (becomes `SourceError::Malformed`), or a canonical value
/// the target cannot take (becomes `TargetError::Unmappable`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{record}: {cause}")]
pub struct MappingError {
    pub record: String,
    pub cause: String,
}

fn err(record: impl Into<String>, cause: impl Into<String>) -> MappingError {
    MappingError {
        record: record.into(),
        cause: cause.into(),
    }
}

fn null_as_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn default_true() -> bool {
    true
}

/// A ticket as Zendesk serves it (the fields deltadesk uses).
#[derive(Debug, Clone, Deserialize)]
pub struct ZdTicket {
    pub id: u64,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    pub status: String,
    #[serde(default)]
    pub priority: Option<String>,
    #[serde(default, rename = "type")]
    pub ticket_type: Option<String>,
    #[serde(default)]
    pub requester_id: Option<u64>,
    #[serde(default)]
    pub assignee_id: Option<u64>,
    #[serde(default)]
    pub group_id: Option<u64>,
    #[serde(default)]
    pub organization_id: Option<u64>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub tags: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub custom_fields: Vec<ZdCustomField>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ZdCustomField {
    pub id: u64,
    #[serde(default)]
    pub value: Value,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ZdComment {
    pub id: u64,
    pub author_id: u64,
    #[serde(default)]
    pub html_body: Option<String>,
    #[serde(default)]
    pub plain_body: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default = "default_true")]
    pub public: bool,
    pub created_at: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub attachments: Vec<ZdAttachment>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ZdAttachment {
    pub id: u64,
    pub file_name: String,
    pub content_url: String,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub inline: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ZdUser {
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ZdOrganization {
    pub id: u64,
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub domain_names: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ZdGroup {
    pub id: u64,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ZdTicketField {
    pub id: u64,
    pub title: String,
    #[serde(default, rename = "type")]
    pub field_type: Option<String>,
}

impl ZdTicketField {
    /// Custom fields (the ones in a ticket's `custom_fields`), as opposed to Zendesk's system fields
    /// (`subject`, `status`, …) which the real API also lists.
    pub fn is_custom(&self) -> bool {
        !matches!(
            self.field_type.as_deref(),
            Some(
                "subject"
                    | "description"
                    | "status"
                    | "custom_status"
                    | "tickettype"
                    | "priority"
                    | "basic_priority"
                    | "group"
                    | "assignee"
                    | "brand"
            )
        )
    }
}

/// The record name used in errors: `zendesk ticket 123`.
pub fn ticket_record(id: impl std::fmt::Display) -> String {
    format!("zendesk ticket {id}")
}

/// The record name of a comment: `zendesk ticket 123 comment 55`.
pub fn comment_record(ticket: impl std::fmt::Display, comment: impl std::fmt::Display) -> String {
    format!("zendesk ticket {ticket} comment {comment}")
}

/// Deserializes one JSON object, naming `record` on failure.
pub fn parse<T: DeserializeOwned>(record: &str, v: &Value) -> Result<T, MappingError> {
    T::deserialize(v).map_err(|e| err(record, e.to_string()))
}

/// The `id` of an object, for naming it in errors before it is fully parsed.
pub fn id_of(v: &Value) -> String {
    match v.get("id") {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => "?".into(),
    }
}

/// ISO 8601 / RFC 3339 with an explicit offset, strictly.
pub fn parse_time(record: &str, field: &str, s: &str) -> Result<DateTime<Utc>, MappingError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            err(
                record,
                format!("{field} {s:?} is not an ISO 8601 time: {e}"),
            )
        })
}

/// Zendesk time format: `2026-03-10T14:00:00Z`.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn parse_status(record: &str, s: &str) -> Result<Status, MappingError> {
    Status::parse(s).ok_or_else(|| err(record, format!("unknown status {s:?}")))
}

pub fn parse_priority(record: &str, s: Option<&str>) -> Result<Option<Priority>, MappingError> {
    match s {
        None | Some("") => Ok(None),
        Some(p) => Priority::parse(p)
            .map(Some)
            .ok_or_else(|| err(record, format!("unknown priority {p:?}"))),
    }
}

pub fn parse_type(record: &str, s: Option<&str>) -> Result<Option<TicketType>, MappingError> {
    match s {
        None | Some("") => Ok(None),
        Some(t) => TicketType::parse(t)
            .map(Some)
            .ok_or_else(|| err(record, format!("unknown type {t:?}"))),
    }
}

pub fn parse_role(record: &str, s: Option<&str>) -> Result<Role, MappingError> {
    match s {
        Some("end-user") | Some("end_user") => Ok(Role::EndUser),
        Some("agent") => Ok(Role::Agent),
        Some("admin") => Ok(Role::Admin),
        other => Err(err(record, format!("unknown role {other:?}"))),
    }
}

/// One entry of the incremental export.
pub fn change_ref(v: &Value) -> Result<ChangeRef, MappingError> {
    let record = ticket_record(id_of(v));
    #[derive(Deserialize)]
    struct ExportTicket {
        id: u64,
        status: String,
        updated_at: String,
    }
    let t: ExportTicket = parse(&record, v)?;
    Ok(ChangeRef {
        ticket_id: TicketId(t.id.to_string()),
        updated_at: parse_time(&record, "updated_at", &t.updated_at)?,
        deleted: t.status == "deleted",
    })
}

pub fn user_from_zd(u: &ZdUser) -> Result<User, MappingError> {
    let record = format!("zendesk user {}", u.id);
    let email = u.email.as_deref().map(str::trim).filter(|e| !e.is_empty());
    let Some(email) = email else {
        return Err(err(
            record,
            "has no email (users are matched across help desks by email)",
        ));
    };
    Ok(User {
        source_id: u.id.to_string(),
        email: email.to_string(),
        name: u.name.clone().unwrap_or_default(),
        role: parse_role(&record, u.role.as_deref())?,
    })
}

pub fn organization_from_zd(o: &ZdOrganization) -> Organization {
    Organization {
        source_id: o.id.to_string(),
        name: o.name.clone(),
        domains: o.domain_names.clone(),
    }
}

pub fn group_from_zd(g: &ZdGroup) -> Group {
    Group {
        source_id: g.id.to_string(),
        name: g.name.clone(),
    }
}

pub fn attachment_from_zd(a: &ZdAttachment) -> Attachment {
    Attachment {
        source_id: a.id.to_string(),
        file_name: a.file_name.clone(),
        content_type: a
            .content_type
            .clone()
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "application/octet-stream".into()),
        size: a.size,
        sha256: None,
        inline: a.inline,
        source_url: a.content_url.clone(),
    }
}

/// What a ticket read needs resolved, by Zendesk id.
#[derive(Debug, Default)]
pub struct Lookups<'a> {
    pub users: HashMap<u64, &'a User>,
    /// Why a user could not be resolved (e.g. has no email), for the error message.
    pub user_problems: HashMap<u64, String>,
    pub groups: HashMap<u64, &'a Group>,
    pub organizations: HashMap<u64, &'a Organization>,
    pub field_titles: HashMap<u64, &'a str>,
}

/// Every user id a ticket and its comments refer to.
pub fn referenced_users(t: &ZdTicket, comments: &[ZdComment]) -> Vec<u64> {
    let mut ids: Vec<u64> = t
        .requester_id
        .into_iter()
        .chain(t.assignee_id)
        .chain(comments.iter().map(|c| c.author_id))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn lookup_user(lk: &Lookups<'_>, record: &str, role: &str, id: u64) -> Result<User, MappingError> {
    match lk.users.get(&id) {
        Some(u) => Ok((*u).clone()),
        None => {
            let why = lk
                .user_problems
                .get(&id)
                .cloned()
                .unwrap_or_else(|| "not returned by the users API".into());
            Err(err(record, format!("{role} user {id} unknown: {why}")))
        }
    }
}

/// A Zendesk ticket and its comments (oldest first) in canonical form. `source_id` is the Zendesk id.
pub fn ticket_from_zd(
    t: &ZdTicket,
    comments: &[ZdComment],
    lk: &Lookups<'_>,
) -> Result<Ticket, MappingError> {
    let record = ticket_record(t.id);
    let status = parse_status(&record, &t.status)?;
    let priority = parse_priority(&record, t.priority.as_deref())?;
    let ticket_type = parse_type(&record, t.ticket_type.as_deref())?;
    let created_at = parse_time(&record, "created_at", &t.created_at)?;
    let updated_at = parse_time(&record, "updated_at", &t.updated_at)?;
    let requester = t
        .requester_id
        .map(|id| lookup_user(lk, &record, "requester", id))
        .transpose()?;
    let assignee = t
        .assignee_id
        .map(|id| lookup_user(lk, &record, "assignee", id))
        .transpose()?;
    let group = match t.group_id {
        None => None,
        Some(id) => Some(
            (*lk.groups
                .get(&id)
                .ok_or_else(|| err(&record, format!("group {id} unknown")))?)
            .clone(),
        ),
    };
    let organization = match t.organization_id {
        None => None,
        Some(id) => Some(
            (*lk.organizations
                .get(&id)
                .ok_or_else(|| err(&record, format!("organization {id} unknown")))?)
            .clone(),
        ),
    };
    let mut custom_fields = BTreeMap::new();
    for f in &t.custom_fields {
        if f.value.is_null() {
            continue;
        }
        let title = lk
            .field_titles
            .get(&f.id)
            .ok_or_else(|| err(&record, format!("custom field {} unknown", f.id)))?;
        if custom_fields
            .insert(title.to_string(), f.value.clone())
            .is_some()
        {
            return Err(err(
                &record,
                format!("two custom fields are titled {title:?}"),
            ));
        }
    }
    let comments = comments
        .iter()
        .map(|c| comment_from_zd(t.id, c, lk))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Ticket {
        source_id: TicketId(t.id.to_string()),
        subject: t.subject.clone().unwrap_or_default(),
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

pub fn comment_from_zd(
    ticket_id: u64,
    c: &ZdComment,
    lk: &Lookups<'_>,
) -> Result<Comment, MappingError> {
    let record = comment_record(ticket_id, c.id);
    let plain = c
        .plain_body
        .clone()
        .or_else(|| c.body.clone())
        .unwrap_or_default();
    Ok(Comment {
        source_id: c.id.to_string(),
        author: lookup_user(lk, &record, "author", c.author_id)?,
        html_body: c.html_body.clone().unwrap_or_else(|| plain.clone()),
        plain_body: plain,
        public: c.public,
        created_at: parse_time(&record, "created_at", &c.created_at)?,
        attachments: c.attachments.iter().map(attachment_from_zd).collect(),
    })
}

// ---------------------------------------------------------------------------------------------------------
// Canonical -> Zendesk (target side)
// ---------------------------------------------------------------------------------------------------------

/// Target ids the caller resolved for one ticket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetRefs {
    pub requester_id: Option<u64>,
    pub assignee_id: Option<u64>,
    pub group_id: Option<u64>,
    pub organization_id: Option<u64>,
    /// `[{"id": target field id, "value": …}]`, already mapped by [`custom_fields_to_zd`].
    pub custom_fields: Vec<Value>,
}

/// The status a target ticket can be written with (`deleted` cannot: the engine deletes instead).
pub fn status_to_zd(t: &Ticket) -> Result<&'static str, MappingError> {
    match t.status {
        Status::Deleted => Err(err(
            format!("ticket {}", t.source_id),
            "status 'deleted' cannot be written; the target ticket is deleted instead",
        )),
        s => Ok(s.as_str()),
    }
}

/// Canonical custom fields (by title) as Zendesk `custom_fields` of the target (by id). With `clear_others`,
/// every other custom field of the target is set to null, so the target equals the snapshot.
pub fn custom_fields_to_zd(
    t: &Ticket,
    title_to_id: &HashMap<String, u64>,
    clear_others: bool,
) -> Result<Vec<Value>, MappingError> {
    let mut out = Vec::new();
    let mut used = std::collections::HashSet::new();
    for (title, value) in &t.custom_fields {
        let id = title_to_id.get(title).ok_or_else(|| {
            err(
                format!("ticket {} field '{title}'", t.source_id),
                "no custom field with this title in the target",
            )
        })?;
        used.insert(*id);
        out.push(json!({"id": id, "value": value}));
    }
    if clear_others {
        let mut others: Vec<u64> = title_to_id
            .values()
            .copied()
            .filter(|id| !used.contains(id))
            .collect();
        others.sort_unstable();
        others.dedup();
        out.extend(
            others
                .into_iter()
                .map(|id| json!({"id": id, "value": Value::Null})),
        );
    }
    Ok(out)
}

/// Every mapped field of `t`, missing ones as null/empty (for `PUT /api/v2/tickets/{id}`).
pub fn ticket_fields_to_zd(
    t: &Ticket,
    refs: &TargetRefs,
) -> Result<Map<String, Value>, MappingError> {
    let mut m = Map::new();
    m.insert("subject".into(), json!(t.subject));
    m.insert("status".into(), json!(status_to_zd(t)?));
    m.insert("priority".into(), json!(t.priority.map(|p| p.as_str())));
    m.insert("type".into(), json!(t.ticket_type.map(|p| p.as_str())));
    // A Zendesk ticket always has a requester: leave it alone rather than sending null.
    if let Some(r) = refs.requester_id {
        m.insert("requester_id".into(), json!(r));
    }
    m.insert("assignee_id".into(), json!(refs.assignee_id));
    m.insert("group_id".into(), json!(refs.group_id));
    m.insert("organization_id".into(), json!(refs.organization_id));
    m.insert("tags".into(), json!(t.tags));
    m.insert(
        "custom_fields".into(),
        Value::Array(refs.custom_fields.clone()),
    );
    Ok(m)
}

/// The body of `POST /api/v2/imports/tickets`.
pub fn import_to_zd(
    source_ref: &str,
    t: &Ticket,
    refs: &TargetRefs,
    comments: Vec<Value>,
) -> Result<Value, MappingError> {
    let mut m = ticket_fields_to_zd(t, refs)?;
    for k in [
        "priority",
        "type",
        "assignee_id",
        "group_id",
        "organization_id",
    ] {
        if m.get(k).is_some_and(Value::is_null) {
            m.remove(k);
        }
    }
    m.insert("external_id".into(), json!(source_ref));
    m.insert("created_at".into(), json!(format_time(t.created_at)));
    m.insert("updated_at".into(), json!(format_time(t.updated_at)));
    m.insert("comments".into(), Value::Array(comments));
    Ok(json!({ "ticket": m }))
}

/// One comment for the import (`with_created_at`) or for `PUT` (the target stamps the time itself).
pub fn comment_to_zd(
    c: &Comment,
    author_id: u64,
    uploads: &[UploadedAttachment],
    with_created_at: bool,
) -> Value {
    let html = rewrite_inline_urls(&c.html_body, &c.attachments, uploads);
    let mut m = Map::new();
    m.insert("author_id".into(), json!(author_id));
    if html.trim().is_empty() && !c.plain_body.trim().is_empty() {
        m.insert("body".into(), json!(c.plain_body));
    } else {
        m.insert("html_body".into(), json!(html));
    }
    m.insert("public".into(), json!(c.public));
    if with_created_at {
        m.insert("created_at".into(), json!(format_time(c.created_at)));
    }
    m.insert(
        "uploads".into(),
        json!(uploads.iter().map(|u| u.token.as_str()).collect::<Vec<_>>()),
    );
    Value::Object(m)
}

/// Re-points inline images: every occurrence of an attachment's `source_url` (also in its HTML-escaped
/// spelling, `&` as `&amp;`) becomes the `content_url` of the upload with the same `source_id`.
/// One pass, longest match first, so a replacement is never rewritten again.
pub fn rewrite_inline_urls(
    html: &str,
    attachments: &[Attachment],
    uploads: &[UploadedAttachment],
) -> String {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for a in attachments {
        if a.source_url.is_empty() {
            continue;
        }
        let Some(u) = uploads.iter().find(|u| u.source_id == a.source_id) else {
            continue;
        };
        pairs.push((a.source_url.clone(), u.content_url.clone()));
        let escaped = a.source_url.replace('&', "&amp;");
        if escaped != a.source_url {
            pairs.push((escaped, u.content_url.replace('&', "&amp;")));
        }
    }
    if pairs.is_empty() {
        return html.to_string();
    }
    pairs.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    'outer: while !rest.is_empty() {
        for (from, to) in &pairs {
            if rest.starts_with(from.as_str()) {
                out.push_str(to);
                rest = &rest[from.len()..];
                continue 'outer;
            }
        }
        let ch = rest.chars().next().map(char::len_utf8).unwrap_or(1);
        out.push_str(&rest[..ch]);
        rest = &rest[ch..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICKET: &str = r#"{
      "id": 123, "url": "https://acme.zendesk.com/api/v2/tickets/123.json", "external_id": null,
      "subject": "Printer on fire", "description": "It smokes.",
      "status": "open", "priority": "high", "type": "incident",
      "requester_id": 7, "submitter_id": 7, "assignee_id": 8, "group_id": 30, "organization_id": 40,
      "tags": ["printer", "fire"],
      "custom_fields": [{"id": 500, "value": "emea"}, {"id": 501, "value": null}, {"id": 502, "value": true}],
      "created_at": "2026-03-10T14:00:00Z", "updated_at": "2026-03-10T15:30:00Z"
    }"#;

    const COMMENTS: &str = r#"[
      {"id": 55, "type": "Comment", "author_id": 7, "body": "It smokes.", "html_body": "<p>It smokes.</p>",
       "plain_body": "It smokes.", "public": true, "created_at": "2026-03-10T14:00:00Z",
       "attachments": [{"id": 900, "file_name": "smoke.jpg", "content_url": "https://acme.zendesk.com/attachments/token/abc/?name=smoke.jpg",
                        "content_type": "image/jpeg", "size": 2048, "inline": false}]},
      {"id": 56, "type": "Comment", "author_id": 8, "body": "See image", "plain_body": "See image",
       "html_body": "<p>See <img src=\"https://acme.zendesk.com/attachments/token/def/?name=shot.png\"></p>",
       "public": false, "created_at": "2026-03-10T15:30:00Z",
       "attachments": [{"id": 901, "file_name": "shot.png", "content_url": "https://acme.zendesk.com/attachments/token/def/?name=shot.png",
                        "content_type": "image/png", "size": 10, "inline": true}]}
    ]"#;

    fn user(id: u64, email: &str, role: Role) -> User {
        User {
            source_id: id.to_string(),
            email: email.into(),
            name: format!("User {id}"),
            role,
        }
    }

    struct Fixture {
        users: Vec<User>,
        group: Group,
        org: Organization,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                users: vec![
                    user(7, "req@example.com", Role::EndUser),
                    user(8, "agent@acme.com", Role::Agent),
                ],
                group: Group {
                    source_id: "30".into(),
                    name: "Support".into(),
                },
                org: Organization {
                    source_id: "40".into(),
                    name: "Example Inc".into(),
                    domains: vec!["example.com".into()],
                },
            }
        }
        fn lookups(&self) -> Lookups<'_> {
            let mut lk = Lookups::default();
            for u in &self.users {
                lk.users.insert(u.source_id.parse().unwrap(), u);
            }
            lk.groups.insert(30, &self.group);
            lk.organizations.insert(40, &self.org);
            lk.field_titles.insert(500, "Region");
            lk.field_titles.insert(501, "Order number");
            lk.field_titles.insert(502, "VIP");
            lk
        }
    }

    fn fixture_ticket() -> (ZdTicket, Vec<ZdComment>) {
        let t: Value = serde_json::from_str(TICKET).unwrap();
        let c: Value = serde_json::from_str(COMMENTS).unwrap();
        let t: ZdTicket = parse("t", &t).unwrap();
        let c: Vec<ZdComment> = c
            .as_array()
            .unwrap()
            .iter()
            .map(|c| parse("c", c).unwrap())
            .collect();
        (t, c)
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn ticket_maps_to_canonical() {
        let f = Fixture::new();
        let (t, c) = fixture_ticket();
        let tk = ticket_from_zd(&t, &c, &f.lookups()).unwrap();
        assert_eq!(tk.source_id, TicketId("123".into()));
        assert_eq!(tk.subject, "Printer on fire");
        assert_eq!(tk.status, Status::Open);
        assert_eq!(tk.priority, Some(Priority::High));
        assert_eq!(tk.ticket_type, Some(TicketType::Incident));
        assert_eq!(tk.requester.as_ref().unwrap().email, "req@example.com");
        assert_eq!(tk.assignee.as_ref().unwrap().role, Role::Agent);
        assert_eq!(tk.group.as_ref().unwrap().name, "Support");
        assert_eq!(
            tk.organization.as_ref().unwrap().domains,
            vec!["example.com"]
        );
        assert_eq!(tk.tags, vec!["printer", "fire"]);
        // Null custom field values are left out; the rest are keyed by title.
        assert_eq!(tk.custom_fields.len(), 2);
        assert_eq!(tk.custom_fields["Region"], json!("emea"));
        assert_eq!(tk.custom_fields["VIP"], json!(true));
        assert_eq!(tk.created_at, at("2026-03-10T14:00:00Z"));
        assert_eq!(tk.updated_at, at("2026-03-10T15:30:00Z"));
        assert_eq!(tk.comments.len(), 2);
        let c0 = &tk.comments[0];
        assert_eq!(c0.source_id, "55");
        assert_eq!(c0.author.source_id, "7");
        assert_eq!(c0.html_body, "<p>It smokes.</p>");
        assert_eq!(c0.plain_body, "It smokes.");
        assert!(c0.public);
        let a = &c0.attachments[0];
        assert_eq!(
            (
                a.source_id.as_str(),
                a.file_name.as_str(),
                a.content_type.as_str(),
                a.size
            ),
            ("900", "smoke.jpg", "image/jpeg", 2048)
        );
        assert_eq!(
            a.source_url,
            "https://acme.zendesk.com/attachments/token/abc/?name=smoke.jpg"
        );
        assert_eq!(a.sha256, None);
        assert!(!a.inline);
        let c1 = &tk.comments[1];
        assert!(!c1.public);
        assert!(c1.attachments[0].inline);
        assert!(c1.html_body.contains(&c1.attachments[0].source_url));
    }

    #[test]
    fn malformed_times_name_the_record() {
        let f = Fixture::new();
        let (mut t, c) = fixture_ticket();
        t.updated_at = "2026-03-10 15:30".into();
        let e = ticket_from_zd(&t, &c, &f.lookups()).unwrap_err();
        assert_eq!(e.record, "zendesk ticket 123");
        assert!(e.cause.contains("updated_at"), "{}", e.cause);

        let (t, mut c) = fixture_ticket();
        c[0].created_at = "yesterday".into();
        let e = ticket_from_zd(&t, &c, &f.lookups()).unwrap_err();
        assert_eq!(e.record, "zendesk ticket 123 comment 55");
        assert!(e.cause.contains("created_at"));
    }

    #[test]
    fn unknown_status_priority_type_are_malformed() {
        let f = Fixture::new();
        for (field, value) in [("status", "archived"), ("priority", "meh"), ("type", "bug")] {
            let mut v: Value = serde_json::from_str(TICKET).unwrap();
            v[field] = json!(value);
            let t: ZdTicket = parse("t", &v).unwrap();
            let e = ticket_from_zd(&t, &[], &f.lookups()).unwrap_err();
            assert_eq!(e.record, "zendesk ticket 123");
            assert!(e.cause.contains(value), "{}", e.cause);
        }
    }

    #[test]
    fn wrong_json_types_are_malformed_with_the_record_named() {
        let mut v: Value = serde_json::from_str(TICKET).unwrap();
        v["tags"] = json!("not-a-list");
        let record = ticket_record(id_of(&v));
        let e = parse::<ZdTicket>(&record, &v).unwrap_err();
        assert_eq!(e.record, "zendesk ticket 123");
        // null lists are empty lists
        v["tags"] = Value::Null;
        assert!(parse::<ZdTicket>(&record, &v).unwrap().tags.is_empty());
    }

    #[test]
    fn unknown_users_name_the_ticket_or_comment_and_the_user() {
        let mut f = Fixture::new();
        f.users.retain(|u| u.source_id != "8");
        let (t, c) = fixture_ticket();
        let e = ticket_from_zd(&t, &c, &f.lookups()).unwrap_err();
        assert_eq!(e.record, "zendesk ticket 123");
        assert!(e.cause.contains("assignee user 8"), "{}", e.cause);

        let (mut t, c) = fixture_ticket();
        t.assignee_id = None;
        let e = ticket_from_zd(&t, &c, &f.lookups()).unwrap_err();
        assert_eq!(e.record, "zendesk ticket 123 comment 56");
        assert!(e.cause.contains("user 8"));
    }

    #[test]
    fn unknown_group_org_field_are_malformed() {
        let f = Fixture::new();
        let (mut t, _) = fixture_ticket();
        t.custom_fields.push(ZdCustomField {
            id: 999,
            value: json!("x"),
        });
        let e = ticket_from_zd(&t, &[], &f.lookups()).unwrap_err();
        assert!(e.cause.contains("custom field 999"));
        let (mut t, _) = fixture_ticket();
        t.group_id = Some(31);
        assert!(ticket_from_zd(&t, &[], &f.lookups())
            .unwrap_err()
            .cause
            .contains("group 31"));
    }

    #[test]
    fn users_need_an_email_and_a_known_role() {
        let u: ZdUser = serde_json::from_value(
            json!({"id": 5, "name": "A", "email": "a@b.c", "role": "admin"}),
        )
        .unwrap();
        assert_eq!(user_from_zd(&u).unwrap().role, Role::Admin);
        let u: ZdUser = serde_json::from_value(
            json!({"id": 5, "name": "A", "email": null, "role": "end-user"}),
        )
        .unwrap();
        assert_eq!(user_from_zd(&u).unwrap_err().record, "zendesk user 5");
        let u: ZdUser =
            serde_json::from_value(json!({"id": 5, "name": "A", "email": "a@b.c", "role": "boss"}))
                .unwrap();
        assert!(user_from_zd(&u).unwrap_err().cause.contains("boss"));
    }

    #[test]
    fn export_entries_become_change_refs() {
        let v = json!({"id": 9, "status": "deleted", "updated_at": "2026-03-10T14:00:05Z", "generated_timestamp": 1});
        let c = change_ref(&v).unwrap();
        assert_eq!(c.ticket_id, TicketId("9".into()));
        assert!(c.deleted);
        assert_eq!(c.updated_at, at("2026-03-10T14:00:05Z"));
        let v = json!({"id": 9, "status": "open", "updated_at": "10/03/2026"});
        assert_eq!(change_ref(&v).unwrap_err().record, "zendesk ticket 9");
    }

    fn canonical() -> Ticket {
        let f = Fixture::new();
        let (t, c) = fixture_ticket();
        ticket_from_zd(&t, &c, &f.lookups()).unwrap()
    }

    fn upload(source_id: &str, url: &str) -> UploadedAttachment {
        UploadedAttachment {
            source_id: source_id.into(),
            token: format!("tok-{source_id}"),
            content_url: url.into(),
            size: 1,
            sha256: "00".into(),
        }
    }

    #[test]
    fn inline_images_are_repointed_to_the_uploads() {
        let tk = canonical();
        let c = &tk.comments[1];
        let ups = vec![upload(
            "901",
            "https://target.zendesk.com/attachments/token/NEW/?name=shot.png",
        )];
        let html = rewrite_inline_urls(&c.html_body, &c.attachments, &ups);
        assert_eq!(html, "<p>See <img src=\"https://target.zendesk.com/attachments/token/NEW/?name=shot.png\"></p>");
        // No matching upload: unchanged.
        assert_eq!(
            rewrite_inline_urls(&c.html_body, &c.attachments, &[upload("1", "x")]),
            c.html_body
        );
    }

    #[test]
    fn inline_rewrite_handles_repeats_escapes_and_no_rewrite_loops() {
        let a = |id: &str, url: &str| Attachment {
            source_id: id.into(),
            file_name: "f".into(),
            content_type: "image/png".into(),
            size: 1,
            sha256: None,
            inline: true,
            source_url: url.into(),
        };
        let atts = vec![a("1", "http://s/a?x=1&y=2"), a("2", "http://s/b")];
        let ups = vec![upload("1", "http://s/b"), upload("2", "http://t/b2")];
        let html = "<img src=\"http://s/a?x=1&amp;y=2\"><img src=\"http://s/b\">é<img src=\"http://s/a?x=1&y=2\">";
        let out = rewrite_inline_urls(html, &atts, &ups);
        // 1 -> http://s/b must not be rewritten again into http://t/b2.
        assert_eq!(
            out,
            "<img src=\"http://s/b\"><img src=\"http://t/b2\">é<img src=\"http://s/b\">"
        );
    }

    fn title_map() -> HashMap<String, u64> {
        HashMap::from([
            ("Region".to_string(), 7001),
            ("VIP".to_string(), 7002),
            ("Order number".to_string(), 7003),
        ])
    }

    #[test]
    fn custom_fields_map_by_title_and_clear_the_rest_on_update() {
        let tk = canonical();
        let mut v = custom_fields_to_zd(&tk, &title_map(), false).unwrap();
        v.sort_by_key(|f| f["id"].as_u64());
        assert_eq!(
            v,
            vec![
                json!({"id": 7001, "value": "emea"}),
                json!({"id": 7002, "value": true})
            ]
        );
        let v = custom_fields_to_zd(&tk, &title_map(), true).unwrap();
        assert!(v.contains(&json!({"id": 7003, "value": null})));
        assert_eq!(v.len(), 3);
        let mut m = title_map();
        m.remove("VIP");
        let e = custom_fields_to_zd(&tk, &m, false).unwrap_err();
        assert_eq!(e.record, "ticket 123 field 'VIP'");
    }

    #[test]
    fn import_body_carries_times_external_id_and_comments() {
        let mut tk = canonical();
        tk.assignee = None;
        let refs = TargetRefs {
            requester_id: Some(1),
            assignee_id: None,
            group_id: Some(3),
            organization_id: Some(4),
            custom_fields: vec![],
        };
        let ups = vec![upload("901", "https://t/new.png")];
        let comments = vec![
            comment_to_zd(&tk.comments[0], 1, &[], true),
            comment_to_zd(&tk.comments[1], 2, &ups, true),
        ];
        let body = import_to_zd("zendesk:123", &tk, &refs, comments).unwrap();
        let t = &body["ticket"];
        assert_eq!(t["external_id"], "zendesk:123");
        assert_eq!(t["status"], "open");
        assert_eq!(t["priority"], "high");
        assert_eq!(t["type"], "incident");
        assert_eq!(t["created_at"], "2026-03-10T14:00:00Z");
        assert_eq!(t["updated_at"], "2026-03-10T15:30:00Z");
        assert!(t.get("assignee_id").is_none());
        assert_eq!(t["tags"], json!(["printer", "fire"]));
        let c1 = &t["comments"][1];
        assert_eq!(c1["author_id"], 2);
        assert_eq!(c1["public"], false);
        assert_eq!(c1["created_at"], "2026-03-10T15:30:00Z");
        assert_eq!(c1["uploads"], json!(["tok-901"]));
        assert_eq!(
            c1["html_body"],
            "<p>See <img src=\"https://t/new.png\"></p>"
        );
    }

    #[test]
    fn update_body_nulls_what_the_snapshot_lacks_and_refuses_deleted() {
        let mut tk = canonical();
        tk.priority = None;
        tk.ticket_type = None;
        tk.tags.clear();
        let refs = TargetRefs {
            requester_id: Some(1),
            ..TargetRefs::default()
        };
        let m = ticket_fields_to_zd(&tk, &refs).unwrap();
        for k in [
            "priority",
            "type",
            "assignee_id",
            "group_id",
            "organization_id",
        ] {
            assert_eq!(m[k], Value::Null, "{k}");
        }
        assert_eq!(m["tags"], json!([]));
        assert_eq!(m["requester_id"], 1);
        tk.status = Status::Deleted;
        assert!(ticket_fields_to_zd(&tk, &refs).is_err());
    }

    #[test]
    fn comment_for_put_has_no_created_at() {
        let tk = canonical();
        let v = comment_to_zd(&tk.comments[0], 9, &[], false);
        assert!(v.get("created_at").is_none());
        assert_eq!(v["html_body"], "<p>It smokes.</p>");
    }
}

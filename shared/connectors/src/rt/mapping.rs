//! Pure translation from RT 5 REST2 JSON to the canonical model. No I/O: users, queues and message bodies
//! are fetched by the caller and passed in.
//!
//! Mapping rules (the README's "Request Tracker specifics" repeats them for operators):
//! - Status: new → New, open → Open, stalled → Hold, resolved → Solved, rejected → Closed, deleted →
//!   Deleted; any other (custom lifecycle) status is a malformed record naming the status.
//! - Priority (a number): 0 (RT's default) → none, 1–33 → Low, 34–66 → Normal, 67–89 → High, 90+ → Urgent.
//! - Queue → group (by name); Owner → assignee (`Nobody` = unassigned); first Requestor → requester.
//! - A user without an email address becomes `{name}@rt.invalid` (the name lower-cased, characters other
//!   than letters, digits, `.`, `-`, `_` replaced by `-`); a name that is itself an email address is used
//!   as is. Users are matched across help desks by email, so such users stay recognisable and unique.
//! - Comments: the Create transaction's content is the first (public) comment, Correspond is public,
//!   Comment is private. Other transactions (EmailRecord, Status, Set, …) are not conversation content.
//! - Body: an HTML part wins (`plain_body` is its text, rendered by the same rules as the Zendesk
//!   simulator's, so verify compares like with like); otherwise `plain_body` is the text part and
//!   `html_body` its escaped `<p>…</p>`.
//! - Attachments: the parts of those transactions that carry a file name (text bodies and multipart
//!   containers have none). RT marks files uploaded over REST2 `Content-Disposition: inline`; they are
//!   still files, so `inline` is false.
//! - Custom fields by name: one value → a string, several → an array of strings, none → absent.
//! - Tags: none (RT has no tags).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use deltadesk_core::model::{Attachment, Comment, Group, Priority, Role, Status, Ticket, TicketId, User};
use deltadesk_core::ports::ChangeRef;
use serde_json::Value;

/// A record that does not have the documented shape (becomes `SourceError::Malformed`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{record}: {cause}")]
pub struct MappingError {
    pub record: String,
    pub cause: String,
}

pub(crate) fn err(record: impl Into<String>, cause: impl Into<String>) -> MappingError {
    MappingError { record: record.into(), cause: cause.into() }
}

/// The record name used in errors: `rt ticket 123`.
pub fn ticket_record(id: impl std::fmt::Display) -> String {
    format!("rt ticket {id}")
}

/// A string or number field as a string (REST2 writes ids as strings in lists, numbers in records).
pub fn str_field(v: &Value, key: &str) -> Option<String> {
    match v.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// A numeric field (string or number).
pub fn u64_field(record: &str, v: &Value, key: &str) -> Result<u64, MappingError> {
    let s = str_field(v, key).ok_or_else(|| err(record, format!("no {key}")))?;
    s.trim().parse().map_err(|_| err(record, format!("{key} {s:?} is not a number")))
}

/// The `id` of a reference object (`{"id": "alice", "type": "user", "_url": …}`).
pub fn ref_id(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(|r| str_field(r, "id")).filter(|s| !s.is_empty())
}

/// REST2 times: `2026-03-10T14:00:00Z`.
pub fn parse_time(record: &str, field: &str, s: &str) -> Result<DateTime<Utc>, MappingError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| err(record, format!("{field} {s:?} is not an ISO 8601 time: {e}")))
}

/// A date as TicketSQL must be written: `YYYY-MM-DD HH:MM:SS` (an ISO `…T…Z` string is silently cut to
/// midnight by RT 5.0.3). RT reads it in the API user's time zone; see `RtConfig::search_lookback_secs`.
pub fn search_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

pub fn status_from_rt(record: &str, s: &str) -> Result<Status, MappingError> {
    Ok(match s {
        "new" => Status::New,
        "open" => Status::Open,
        "stalled" => Status::Hold,
        "resolved" => Status::Solved,
        "rejected" => Status::Closed,
        "deleted" => Status::Deleted,
        other => {
            return Err(err(
                record,
                format!("status {other:?} is not one of RT's default lifecycle (new, open, stalled, resolved, rejected, deleted)"),
            ))
        }
    })
}

pub fn priority_from_rt(n: i64) -> Option<Priority> {
    match n {
        i64::MIN..=-1 => Some(Priority::Low),
        0 => None,
        1..=33 => Some(Priority::Low),
        34..=66 => Some(Priority::Normal),
        67..=89 => Some(Priority::High),
        _ => Some(Priority::Urgent),
    }
}

/// The email a user is matched by: the address, else the name if it is an address, else `{name}@rt.invalid`.
pub fn email_for(name: &str, email: Option<&str>) -> String {
    if let Some(e) = email.map(str::trim).filter(|e| !e.is_empty()) {
        return e.to_string();
    }
    let n = name.trim();
    if let Some((local, domain)) = n.split_once('@') {
        if !local.is_empty() && domain.contains('.') && !n.contains(char::is_whitespace) {
            return n.to_string();
        }
    }
    let mut local: String = n
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '-' })
        .collect();
    if local.is_empty() {
        local = "unnamed".into();
    }
    format!("{local}@rt.invalid")
}

/// A user record (`GET /user/{name}`) in canonical form.
pub fn user_from_rt(name: &str, v: &Value) -> User {
    let email = str_field(v, "EmailAddress");
    let real = str_field(v, "RealName").filter(|s| !s.trim().is_empty());
    let privileged = str_field(v, "Privileged").is_some_and(|p| p == "1");
    User {
        source_id: str_field(v, "Name").unwrap_or_else(|| name.to_string()),
        email: email_for(name, email.as_deref()),
        name: real.unwrap_or_else(|| name.to_string()),
        role: if privileged { Role::Agent } else { Role::EndUser },
    }
}

/// One ticket of a TicketSQL listing (`fields=LastUpdated`).
pub fn change_ref(v: &Value) -> Result<ChangeRef, MappingError> {
    let record = ticket_record(str_field(v, "id").unwrap_or_else(|| "?".into()));
    let id = u64_field(&record, v, "id")?;
    let at = str_field(v, "LastUpdated").ok_or_else(|| err(&record, "no LastUpdated"))?;
    Ok(ChangeRef { ticket_id: TicketId(id.to_string()), updated_at: parse_time(&record, "LastUpdated", &at)?, deleted: false })
}

/// One `Status → deleted` transaction of the deletions listing (`fields=ObjectId,Created`).
pub fn deletion_ref(v: &Value) -> Result<ChangeRef, MappingError> {
    let record = format!("rt transaction {}", str_field(v, "id").unwrap_or_else(|| "?".into()));
    let ticket = u64_field(&record, v, "ObjectId")?;
    let at = str_field(v, "Created").ok_or_else(|| err(&record, "no Created"))?;
    Ok(ChangeRef { ticket_id: TicketId(ticket.to_string()), updated_at: parse_time(&record, "Created", &at)?, deleted: true })
}

/// The ticket fields deltadesk reads, from `GET /ticket/{id}`.
#[derive(Debug, Clone, PartialEq)]
pub struct RtTicket {
    pub id: u64,
    pub subject: String,
    pub status: String,
    pub priority: i64,
    /// Queue id (REST2 references queues by number).
    pub queue: Option<String>,
    /// Owner name; `None` for `Nobody`.
    pub owner: Option<String>,
    /// First requestor's name.
    pub requestor: Option<String>,
    pub custom_fields: BTreeMap<String, Value>,
    pub created: DateTime<Utc>,
    pub last_updated: DateTime<Utc>,
    /// A merged ticket's id answers with the ticket it was merged into.
    pub effective_id: u64,
}

pub fn ticket_from_json(v: &Value) -> Result<RtTicket, MappingError> {
    let record = ticket_record(str_field(v, "id").unwrap_or_else(|| "?".into()));
    let id = u64_field(&record, v, "id")?;
    let status = str_field(v, "Status").ok_or_else(|| err(&record, "no Status"))?;
    let priority = match str_field(v, "Priority") {
        None => 0,
        Some(p) if p.trim().is_empty() => 0,
        Some(p) => p.trim().parse().map_err(|_| err(&record, format!("Priority {p:?} is not a number")))?,
    };
    let owner = ref_id(v, "Owner").filter(|o| o != "Nobody");
    let requestor = v.get("Requestor").and_then(Value::as_array).and_then(|a| a.first()).and_then(|r| str_field(r, "id"));
    let mut custom_fields = BTreeMap::new();
    for cf in v.get("CustomFields").and_then(Value::as_array).into_iter().flatten() {
        let Some(name) = str_field(cf, "name") else {
            return Err(err(&record, "a custom field has no name"));
        };
        let values: Vec<Value> = cf
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|x| !x.is_null() && x.as_str() != Some(""))
            .cloned()
            .collect();
        let value = match values.len() {
            0 => continue,
            1 => values.into_iter().next().unwrap_or(Value::Null),
            _ => Value::Array(values),
        };
        if custom_fields.insert(name.clone(), value).is_some() {
            return Err(err(&record, format!("two custom fields are named {name:?}")));
        }
    }
    let time = |k: &str| -> Result<DateTime<Utc>, MappingError> {
        let s = str_field(v, k).ok_or_else(|| err(&record, format!("no {k}")))?;
        parse_time(&record, k, &s)
    };
    Ok(RtTicket {
        id,
        subject: str_field(v, "Subject").unwrap_or_default(),
        status,
        priority,
        queue: ref_id(v, "Queue"),
        owner,
        requestor,
        custom_fields,
        created: time("Created")?,
        last_updated: time("LastUpdated")?,
        effective_id: ref_id(v, "EffectiveId").and_then(|e| e.parse().ok()).unwrap_or(id),
    })
}

/// A history entry (`fields=Type,Creator,Created`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtTxn {
    pub id: u64,
    pub kind: String,
    pub creator: String,
    pub created: DateTime<Utc>,
}

impl RtTxn {
    /// Create, Correspond and Comment carry conversation content; EmailRecord (RT's own outgoing mail),
    /// Status, Set, SetWatcher, CustomField … do not.
    pub fn is_conversation(&self) -> bool {
        matches!(self.kind.as_str(), "Create" | "Correspond" | "Comment")
    }
    /// Comment is RT's private note; Create and Correspond are seen by requestors.
    pub fn public(&self) -> bool {
        self.kind != "Comment"
    }
}

pub fn txn_from_json(ticket: u64, v: &Value) -> Result<RtTxn, MappingError> {
    let record = format!("{} transaction {}", ticket_record(ticket), str_field(v, "id").unwrap_or_else(|| "?".into()));
    let id = u64_field(&record, v, "id")?;
    let created = str_field(v, "Created").ok_or_else(|| err(&record, "no Created"))?;
    Ok(RtTxn {
        id,
        kind: str_field(v, "Type").ok_or_else(|| err(&record, "no Type"))?,
        creator: ref_id(v, "Creator").ok_or_else(|| err(&record, "no Creator"))?,
        created: parse_time(&record, "Created", &created)?,
    })
}

/// One MIME part of a transaction (`fields=Filename,ContentType,ContentLength`; never `Parent`, which
/// crashes list requests on RT 5.0.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtPart {
    pub id: u64,
    pub content_type: String,
    pub filename: String,
    pub length: u64,
}

pub fn part_from_json(record: &str, v: &Value) -> Result<RtPart, MappingError> {
    Ok(RtPart {
        id: u64_field(record, v, "id")?,
        content_type: str_field(v, "ContentType").unwrap_or_default().to_ascii_lowercase(),
        filename: str_field(v, "Filename").unwrap_or_default(),
        length: str_field(v, "ContentLength").and_then(|s| s.trim().parse().ok()).unwrap_or(0),
    })
}

/// The part holding the message body: the first unnamed text/html part, else the first unnamed text/plain.
pub fn body_part(parts: &[RtPart]) -> Option<&RtPart> {
    let unnamed = |ct: &str| parts.iter().find(|p| p.filename.is_empty() && p.content_type == ct);
    unnamed("text/html").or_else(|| unnamed("text/plain"))
}

/// The file attachments of a transaction: named parts that are not multipart containers.
pub fn file_parts(parts: &[RtPart]) -> impl Iterator<Item = &RtPart> {
    parts.iter().filter(|p| !p.filename.trim().is_empty() && !p.content_type.starts_with("multipart/"))
}

/// Attachment metadata; `source_url` is the REST2 attachment record (base64 `Content`).
pub fn attachment_from_part(p: &RtPart, api_base: &str) -> Attachment {
    Attachment {
        source_id: p.id.to_string(),
        file_name: p.filename.clone(),
        content_type: if p.content_type.is_empty() { "application/octet-stream".into() } else { p.content_type.clone() },
        size: p.length,
        sha256: None,
        inline: false,
        source_url: format!("{}/attachment/{}", api_base.trim_end_matches('/'), p.id),
    }
}

pub fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// HTML as text: tags dropped, a newline after line breaks and block ends, basic entities decoded, trimmed —
/// the rendering the Zendesk target uses for `plain_body`, so a migrated body compares equal.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        let after = &rest[lt..];
        let Some(gt) = after.find('>') else {
            out.push_str(after);
            rest = "";
            break;
        };
        let tag = after[1..gt].trim().to_ascii_lowercase();
        let name: String = tag.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '/').collect();
        if matches!(name.as_str(), "br" | "br/" | "/p" | "/div" | "/li" | "/h1" | "/h2" | "/h3" | "/tr" | "/blockquote")
            && !out.ends_with('\n')
            && !out.is_empty()
        {
            out.push('\n');
        }
        rest = &after[gt + 1..];
    }
    out.push_str(rest);
    out.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
        .trim()
        .to_string()
}

/// `(html_body, plain_body)` of a body part's content.
pub fn bodies(content_type: Option<&str>, content: &str) -> (String, String) {
    match content_type {
        Some("text/html") => (content.to_string(), html_to_text(content)),
        Some(_) => (format!("<p>{}</p>", escape_html(content)), content.to_string()),
        None => (String::new(), String::new()),
    }
}

/// One conversation transaction as a comment.
pub fn comment_from_rt(
    txn: &RtTxn,
    author: User,
    body: Option<(&str, &str)>,
    files: &[RtPart],
    api_base: &str,
) -> Comment {
    let (html_body, plain_body) = match body {
        Some((ct, content)) => bodies(Some(ct), content),
        None => bodies(None, ""),
    };
    Comment {
        source_id: txn.id.to_string(),
        author,
        html_body,
        plain_body,
        public: txn.public(),
        created_at: txn.created,
        attachments: files.iter().map(|p| attachment_from_part(p, api_base)).collect(),
    }
}

/// The canonical ticket, from the RT ticket and what the caller resolved.
pub fn ticket_from_rt(
    t: &RtTicket,
    requester: Option<User>,
    assignee: Option<User>,
    group: Option<Group>,
    comments: Vec<Comment>,
) -> Result<Ticket, MappingError> {
    let record = ticket_record(t.id);
    Ok(Ticket {
        source_id: TicketId(t.id.to_string()),
        subject: t.subject.clone(),
        status: status_from_rt(&record, &t.status)?,
        priority: priority_from_rt(t.priority),
        ticket_type: None,
        requester,
        assignee,
        group,
        organization: None,
        tags: Vec::new(),
        custom_fields: t.custom_fields.clone(),
        created_at: t.created,
        updated_at: t.last_updated,
        comments,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_map_onto_the_canonical_set_and_custom_ones_are_named() {
        let pairs = [
            ("new", Status::New),
            ("open", Status::Open),
            ("stalled", Status::Hold),
            ("resolved", Status::Solved),
            ("rejected", Status::Closed),
            ("deleted", Status::Deleted),
        ];
        for (rt, s) in pairs {
            assert_eq!(status_from_rt("r", rt).unwrap(), s);
        }
        let e = status_from_rt("rt ticket 9", "waiting-on-vendor").unwrap_err();
        assert_eq!(e.record, "rt ticket 9");
        assert!(e.cause.contains("waiting-on-vendor"));
    }

    #[test]
    fn priorities_map_by_ranges() {
        assert_eq!(priority_from_rt(0), None);
        assert_eq!(priority_from_rt(-3), Some(Priority::Low));
        assert_eq!(priority_from_rt(1), Some(Priority::Low));
        assert_eq!(priority_from_rt(33), Some(Priority::Low));
        assert_eq!(priority_from_rt(34), Some(Priority::Normal));
        assert_eq!(priority_from_rt(66), Some(Priority::Normal));
        assert_eq!(priority_from_rt(67), Some(Priority::High));
        assert_eq!(priority_from_rt(89), Some(Priority::High));
        assert_eq!(priority_from_rt(90), Some(Priority::Urgent));
        assert_eq!(priority_from_rt(255), Some(Priority::Urgent));
    }

    #[test]
    fn users_without_email_get_a_stable_placeholder() {
        assert_eq!(email_for("alice", Some(" alice@acme.com ")), "alice@acme.com");
        assert_eq!(email_for("bob@acme.com", None), "bob@acme.com");
        assert_eq!(email_for("Jane Doe", Some("")), "jane-doe@rt.invalid");
        assert_eq!(email_for("RT_System", None), "rt_system@rt.invalid");
        let u = user_from_rt("root", &json!({"Name": "root", "EmailAddress": "root@localhost", "RealName": "Enoch Root", "Privileged": 1}));
        assert_eq!((u.email.as_str(), u.name.as_str(), u.role), ("root@localhost", "Enoch Root", Role::Agent));
        let u = user_from_rt("carol", &json!({"Name": "carol", "EmailAddress": "", "Privileged": "0"}));
        assert_eq!((u.email.as_str(), u.name.as_str(), u.role), ("carol@rt.invalid", "carol", Role::EndUser));
    }

    #[test]
    fn search_times_are_written_without_t_and_z() {
        let t = parse_time("r", "x", "2026-03-10T14:05:09Z").unwrap();
        assert_eq!(search_time(t), "2026-03-10 14:05:09");
    }

    #[test]
    fn listings_become_change_refs() {
        let c = change_ref(&json!({"id": "12", "LastUpdated": "2026-03-10T14:00:00Z", "type": "ticket"})).unwrap();
        assert_eq!((c.ticket_id.0.as_str(), c.deleted), ("12", false));
        let d = deletion_ref(&json!({"id": "65", "ObjectId": "3", "Created": "2026-03-10T14:00:01Z"})).unwrap();
        assert_eq!((d.ticket_id.0.as_str(), d.deleted), ("3", true));
        assert!(change_ref(&json!({"id": "x", "LastUpdated": "2026-03-10T14:00:00Z"})).is_err());
        assert!(change_ref(&json!({"id": "1", "LastUpdated": "2026-03-10 14:00:00"})).is_err());
    }

    fn sample_ticket() -> Value {
        json!({
            "id": 7, "Subject": "Printer on fire", "Status": "stalled", "Priority": "70",
            "Queue": {"id": "3", "type": "queue"}, "Owner": {"id": "Nobody", "type": "user"},
            "Requestor": [{"id": "alice", "type": "user"}, {"id": "bob", "type": "user"}],
            "EffectiveId": {"id": "7", "type": "ticket"},
            "CustomFields": [
                {"name": "Order number", "values": ["ORD-1"], "id": "2"},
                {"name": "Empty", "values": [], "id": "3"},
                {"name": "Tags", "values": ["a", "b"], "id": "4"}
            ],
            "Created": "2026-03-10T14:00:00Z", "LastUpdated": "2026-03-10T15:00:00Z"
        })
    }

    #[test]
    fn tickets_map_fields_custom_fields_and_nobody() {
        let t = ticket_from_json(&sample_ticket()).unwrap();
        assert_eq!(t.owner, None);
        assert_eq!(t.requestor.as_deref(), Some("alice"));
        assert_eq!(t.queue.as_deref(), Some("3"));
        assert_eq!(t.custom_fields.get("Order number"), Some(&json!("ORD-1")));
        assert_eq!(t.custom_fields.get("Tags"), Some(&json!(["a", "b"])));
        assert!(!t.custom_fields.contains_key("Empty"));
        let c = ticket_from_rt(&t, None, None, Some(Group { source_id: "3".into(), name: "Support".into() }), vec![]).unwrap();
        assert_eq!(c.status, Status::Hold);
        assert_eq!(c.priority, Some(Priority::High));
        assert!(c.tags.is_empty());
        assert_eq!(c.group.unwrap().name, "Support");
        let mut bad = sample_ticket();
        bad["Status"] = json!("waiting");
        let t = ticket_from_json(&bad).unwrap();
        assert!(ticket_from_rt(&t, None, None, None, vec![]).is_err());
    }

    fn part(id: u64, ct: &str, name: &str) -> RtPart {
        RtPart { id, content_type: ct.into(), filename: name.into(), length: 5 }
    }

    #[test]
    fn bodies_and_files_are_told_apart() {
        let parts = vec![
            part(1, "multipart/mixed", ""),
            part(2, "text/plain", ""),
            part(3, "text/plain", "notes.txt"),
            part(4, "application/octet-stream", "a.bin"),
        ];
        assert_eq!(body_part(&parts).unwrap().id, 2);
        assert_eq!(file_parts(&parts).map(|p| p.id).collect::<Vec<_>>(), vec![3, 4]);
        let alt = vec![part(1, "multipart/alternative", ""), part(2, "text/plain", ""), part(3, "text/html", "")];
        assert_eq!(body_part(&alt).unwrap().id, 3);
        let a = attachment_from_part(&parts[3], "http://rt/REST/2.0/");
        assert_eq!(a.source_url, "http://rt/REST/2.0/attachment/4");
        assert!(!a.inline);
    }

    #[test]
    fn comments_follow_transaction_types() {
        let txn = |kind: &str| RtTxn { id: 5, kind: kind.into(), creator: "root".into(), created: parse_time("r", "x", "2026-03-10T14:00:00Z").unwrap() };
        assert!(txn("Create").is_conversation() && txn("Create").public());
        assert!(txn("Correspond").is_conversation() && txn("Correspond").public());
        assert!(txn("Comment").is_conversation() && !txn("Comment").public());
        for k in ["EmailRecord", "Status", "Set", "SetWatcher", "CustomField"] {
            assert!(!txn(k).is_conversation(), "{k}");
        }
        let author = user_from_rt("root", &json!({"EmailAddress": "root@localhost"}));
        let c = comment_from_rt(&txn("Comment"), author, Some(("text/plain", "a < b\nline 2")), &[part(9, "image/png", "x.png")], "http://rt/REST/2.0");
        assert!(!c.public);
        assert_eq!(c.plain_body, "a < b\nline 2");
        assert_eq!(c.html_body, "<p>a &lt; b\nline 2</p>");
        assert_eq!(c.attachments.len(), 1);
    }

    #[test]
    fn text_round_trips_through_html_rendering() {
        for text in ["plain", "Line one\nLine two\n\nPara 2", "5 > 3 & \"quotes\" 'x' &nbsp; &lt;", "  padded  "] {
            let (html, plain) = bodies(Some("text/plain"), text);
            assert_eq!(html_to_text(&html), plain.trim(), "{text:?}");
        }
        let (html, plain) = bodies(Some("text/html"), "<p>Hi <b>there</b></p><p>second&nbsp;line<br>third</p>");
        assert_eq!(plain, "Hi there\nsecond line\nthird");
        assert!(html.starts_with("<p>Hi"));
    }
}

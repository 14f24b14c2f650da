//! In-memory state of the simulated Zendesk account: records, validation, mutations and JSON rendering.
//!
//! Every mutation (HTTP handler, agent action, live agent) goes through the methods of [`State`].
//! Times are Unix seconds. HTML bodies are stored with the simulator's own base URL replaced by
//! [`BASE_PLACEHOLDER`], so that the state (and the snapshot) does not depend on the bound port.

use std::collections::{BTreeMap, HashMap};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::SimStats;

/// Stands for the simulator's base URL inside stored HTML bodies.
pub(crate) const BASE_PLACEHOLDER: &str = "{{base_url}}";

pub(crate) const STATUSES: [&str; 6] = ["new", "open", "pending", "hold", "solved", "closed"];
pub(crate) const PRIORITIES: [&str; 4] = ["low", "normal", "high", "urgent"];
pub(crate) const TYPES: [&str; 4] = ["question", "incident", "problem", "task"];

/// An API error: status code and Zendesk-shaped JSON body.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub body: Value,
}

impl ApiError {
    pub fn not_found() -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            body: json!({"error": "RecordNotFound", "description": "Not found"}),
        }
    }
    pub fn bad(description: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            body: json!({"error": "InvalidValue", "description": description.into()}),
        }
    }
    /// 422 RecordInvalid naming `field`.
    pub fn invalid(field: &str, description: impl Into<String>) -> Self {
        let d = description.into();
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: json!({
                "error": "RecordInvalid",
                "description": format!("Record validation errors: {field}: {d}"),
                "details": { field: [{"description": d, "error": "InvalidValue"}] }
            }),
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
pub(crate) struct User {
    pub id: u64,
    pub name: String,
    pub email: String,
    pub role: String,
    pub organization_id: Option<u64>,
}

#[derive(Debug, Clone)]
pub(crate) struct Org {
    pub id: u64,
    pub name: String,
    pub external_id: Option<String>,
    pub domain_names: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub id: u64,
    pub name: String,
}

#[derive(Debug, Clone)]
pub(crate) struct FieldOption {
    pub id: u64,
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub id: u64,
    pub title: String,
    pub kind: String,
    pub options: Vec<FieldOption>,
}

/// Where an attachment's bytes come from. Seeded attachments are regenerated on demand from a seed.
#[derive(Debug, Clone)]
pub(crate) enum AttData {
    Gen { seed: u64, size: u64, text: bool },
    Bytes(Bytes),
}

impl AttData {
    pub fn bytes(&self) -> Bytes {
        match self {
            AttData::Gen { seed, size, text } => {
                Bytes::from(gen_bytes(*seed, *size as usize, *text))
            }
            AttData::Bytes(b) => b.clone(),
        }
    }
}

/// Deterministic pseudo-random bytes (splitmix64), cheap even in debug builds.
pub(crate) fn gen_bytes(seed: u64, size: usize, text: bool) -> Vec<u8> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;\n";
    let mut out = Vec::with_capacity(size + 8);
    let mut x = seed;
    while out.len() < size {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(size);
    if text {
        for b in out.iter_mut() {
            *b = ALPHABET[(*b as usize) % ALPHABET.len()];
        }
    }
    out
}

#[derive(Debug, Clone)]
pub(crate) struct Attachment {
    pub id: u64,
    pub token: String,
    pub file_name: String,
    pub content_type: String,
    pub size: u64,
    pub inline: bool,
    pub data: AttData,
    pub sha256: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Comment {
    pub id: u64,
    pub author_id: u64,
    pub html_body: String,
    pub public: bool,
    pub created_at: i64,
    pub attachments: Vec<u64>,
}

#[derive(Debug, Clone)]
pub(crate) struct Ticket {
    pub id: u64,
    pub external_id: Option<String>,
    pub subject: String,
    pub status: String,
    pub priority: Option<String>,
    pub kind: Option<String>,
    pub requester_id: u64,
    pub submitter_id: u64,
    pub assignee_id: Option<u64>,
    pub group_id: Option<u64>,
    pub organization_id: Option<u64>,
    pub tags: Vec<String>,
    pub custom_fields: BTreeMap<u64, Value>,
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted: bool,
    pub comments: Vec<Comment>,
    /// (updated_at of the held version, extra delay in ms).
    pub held: Option<(i64, u64)>,
}

impl Ticket {
    /// Unix milliseconds at which the current version becomes visible in the incremental export.
    pub fn visible_at_ms(&self, lag_ms: i64) -> i64 {
        let extra = match self.held {
            Some((at, extra)) if at == self.updated_at => extra as i64,
            _ => 0,
        };
        self.updated_at * 1000 + lag_ms + extra
    }
}

/// A fixed one-minute window counter.
#[derive(Debug)]
pub(crate) struct RateWindow {
    pub start: Option<std::time::Instant>,
    pub count: u32,
}

impl RateWindow {
    pub fn new() -> Self {
        RateWindow {
            start: None,
            count: 0,
        }
    }
    /// Roll the window if needed; Ok(()) if one more request fits, Err(retry_after_secs) otherwise.
    pub fn check(&mut self, limit: u32, now: std::time::Instant) -> Result<(), u64> {
        let start = *self.start.get_or_insert(now);
        let elapsed = now.duration_since(start);
        if elapsed >= std::time::Duration::from_secs(60) {
            self.start = Some(now);
            self.count = 0;
            return Ok(());
        }
        if self.count >= limit {
            let left = std::time::Duration::from_secs(60) - elapsed;
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            return Err(secs.max(1));
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
pub(crate) struct Seqs {
    pub ticket: u64,
    pub comment: u64,
    pub attachment: u64,
    pub user: u64,
    pub org: u64,
    pub group: u64,
    pub field: u64,
    pub option: u64,
    pub upload: u64,
    pub audit: u64,
}

pub(crate) struct State {
    pub seed: u64,
    pub id_base: u64,
    pub seq: Seqs,
    pub tickets: BTreeMap<u64, Ticket>,
    pub users: BTreeMap<u64, User>,
    pub orgs: BTreeMap<u64, Org>,
    pub groups: BTreeMap<u64, Group>,
    pub fields: Vec<Field>,
    pub attachments: HashMap<u64, Attachment>,
    pub att_by_token: HashMap<String, u64>,
    /// Pending (not yet consumed) upload tokens -> attachment ids.
    pub uploads: HashMap<String, Vec<u64>>,
    pub rate: RateWindow,
    pub export_rate: RateWindow,
    pub stats: SimStats,
    /// Fault hook ([`ZendeskSim::corrupt_ticket`](super::ZendeskSim::corrupt_ticket)): fields that override a
    /// ticket's served JSON, to serve records the API's own validation would refuse (e.g. no requester).
    pub json_overrides: BTreeMap<u64, serde_json::Map<String, Value>>,
    /// Background jobs (`imports/tickets/create_many`), by id.
    pub jobs: BTreeMap<String, Job>,
}

/// A background job (Ticket Bulk Import): queued until it runs, then completed with one result per ticket.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub total: usize,
    /// The ticket objects still to import (empty once run).
    pub input: Vec<Value>,
    /// `None` while queued; the per-ticket results once completed.
    pub results: Option<Vec<Value>>,
    pub completed_at: Option<i64>,
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

pub(crate) fn parse_time(v: &Value, field: &str) -> Result<Option<i64>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|d| Some(d.timestamp()))
            .map_err(|_| ApiError::invalid(field, format!("{s:?} is not an ISO 8601 time"))),
        Value::Number(n) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| ApiError::invalid(field, "is invalid")),
        _ => Err(ApiError::invalid(field, "is invalid")),
    }
}

pub(crate) fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// HTML with tags stripped and basic entities decoded; block ends become newlines.
pub(crate) fn strip_html(html: &str) -> String {
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
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '/')
            .collect();
        if matches!(
            name.as_str(),
            "br" | "br/" | "/p" | "/div" | "/li" | "/h1" | "/h2" | "/h3" | "/tr" | "/blockquote"
        ) && !out.ends_with('\n')
            && !out.is_empty()
        {
            out.push('\n');
        }
        rest = &after[gt + 1..];
    }
    out.push_str(rest);
    let out = out
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    out.trim().to_string()
}

/// Percent-encode a file name for use in a query string.
pub(crate) fn encode_query(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(crate) fn b64(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

pub(crate) fn unb64(s: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// Parsed and validated ticket fields of a PUT or an import.
#[derive(Default, Debug)]
pub(crate) struct Patch {
    subject: Option<String>,
    status: Option<String>,
    priority: Option<Option<String>>,
    kind: Option<Option<String>>,
    requester_id: Option<u64>,
    submitter_id: Option<u64>,
    assignee_id: Option<Option<u64>>,
    group_id: Option<Option<u64>>,
    organization_id: Option<Option<u64>>,
    tags: Option<Vec<String>>,
    custom_fields: Option<Vec<(u64, Value)>>,
    external_id: Option<Option<String>>,
}

/// A validated new comment (its upload tokens exist but are not consumed yet).
#[derive(Debug)]
pub(crate) struct NewComment {
    pub html: String,
    pub public: bool,
    pub author_id: u64,
    pub created_at: i64,
    pub uploads: Vec<String>,
}

fn opt_str(v: &Value, field: &str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) if allowed.is_empty() || allowed.contains(&s.as_str()) => {
            Ok(Some(s.clone()))
        }
        _ => Err(ApiError::invalid(
            field,
            format!("{v} is not a valid value"),
        )),
    }
}

fn id_of(v: &Value, field: &str) -> Result<Option<u64>, ApiError> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| ApiError::invalid(field, "is invalid")),
        Value::String(s) => s
            .parse()
            .map(Some)
            .map_err(|_| ApiError::invalid(field, "is invalid")),
        _ => Err(ApiError::invalid(field, "is invalid")),
    }
}

impl State {
    pub fn new(seed: u64, id_base: u64) -> Self {
        State {
            seed,
            id_base: id_base.max(1),
            seq: Seqs::default(),
            tickets: BTreeMap::new(),
            users: BTreeMap::new(),
            orgs: BTreeMap::new(),
            groups: BTreeMap::new(),
            fields: Vec::new(),
            attachments: HashMap::new(),
            att_by_token: HashMap::new(),
            uploads: HashMap::new(),
            rate: RateWindow::new(),
            export_rate: RateWindow::new(),
            stats: SimStats::default(),
            json_overrides: BTreeMap::new(),
            jobs: BTreeMap::new(),
        }
    }

    /// Queues a Ticket Bulk Import job for `tickets`; returns its id (32 hex digits, as Zendesk's).
    pub fn queue_import_job(&mut self, tickets: Vec<Value>) -> String {
        let n = self.jobs.len() as u64 + 1;
        let id = format!("{:016x}{:016x}", self.seed ^ 0x6a0b, n);
        self.jobs.insert(id.clone(), Job { total: tickets.len(), input: tickets, results: None, completed_at: None });
        id
    }

    /// Runs a queued job: imports each ticket as `POST imports/tickets` would, recording per ticket its new id
    /// or its error. `refuse` is the simulator's write-fault switch, asked per `external_id`.
    pub fn run_import_job(&mut self, id: &str, base: &str, now: i64, refuse: impl Fn(Option<&str>) -> Option<(u16, String)>) {
        let Some(input) = self.jobs.get_mut(id).filter(|j| j.results.is_none()).map(|j| std::mem::take(&mut j.input)) else {
            return;
        };
        let mut results = Vec::with_capacity(input.len());
        for (index, t) in input.iter().enumerate() {
            let outcome = match refuse(t.get("external_id").and_then(Value::as_str)) {
                // A server-side fault is an internal error of the job; any other status a validation error.
                Some((status, description)) if status >= 500 => Err(("InternalError".to_string(), description)),
                Some((_, description)) => Err(("RecordInvalid".to_string(), description)),
                None => self.import_ticket(t, base, now).map_err(|e| {
                    let error = e.body.get("error").and_then(Value::as_str).unwrap_or("RecordInvalid").to_string();
                    let details = e.body.get("description").and_then(Value::as_str).unwrap_or("").to_string();
                    (error, details)
                }),
            };
            results.push(match outcome {
                Ok(ticket) => json!({"index": index, "id": ticket, "status": "Created"}),
                Err((error, details)) => json!({"index": index, "status": "Failed", "error": error, "details": details}),
            });
        }
        if let Some(job) = self.jobs.get_mut(id) {
            job.results = Some(results);
            job.completed_at = Some(now);
        }
    }

    /// A job's `job_status` object.
    pub fn job_json(&self, base: &str, id: &str) -> Option<Value> {
        let job = self.jobs.get(id)?;
        let mut v = json!({
            "id": id,
            "url": format!("{base}/api/v2/job_statuses/{id}.json"),
            "job_type": "Bulk Ticket Import",
            "total": job.total,
        });
        match (&job.results, job.completed_at) {
            (Some(results), Some(at)) => {
                let when = chrono::DateTime::from_timestamp(at, 0).unwrap_or_default();
                v["status"] = json!("completed");
                v["progress"] = json!(job.total);
                v["message"] = json!(format!("Completed at {}", when.format("%Y-%m-%d %H:%M:%S +0000")));
                v["results"] = json!(results);
            }
            _ => {
                v["status"] = json!("queued");
                v["progress"] = json!(0);
            }
        }
        Some(v)
    }

    pub fn next_ticket_id(&mut self) -> u64 {
        next(&mut self.seq.ticket, self.id_base)
    }
    pub fn next_comment_id(&mut self) -> u64 {
        next(&mut self.seq.comment, self.id_base)
    }
    pub fn next_user_id(&mut self) -> u64 {
        next(&mut self.seq.user, self.id_base)
    }
    pub fn next_org_id(&mut self) -> u64 {
        next(&mut self.seq.org, self.id_base)
    }
    pub fn next_group_id(&mut self) -> u64 {
        next(&mut self.seq.group, self.id_base)
    }
    pub fn next_field_id(&mut self) -> u64 {
        next(&mut self.seq.field, self.id_base)
    }
    pub fn next_option_id(&mut self) -> u64 {
        next(&mut self.seq.option, self.id_base)
    }

    fn token(&self, kind: &str, n: u64) -> String {
        let mut h = Sha256::new();
        h.update(format!("{}:{}:{kind}:{n}", self.seed, self.id_base));
        hex::encode(&h.finalize()[..12])
    }

    /// Store a new attachment; returns its id.
    pub fn add_attachment(
        &mut self,
        file_name: &str,
        content_type: &str,
        data: AttData,
        inline: bool,
    ) -> u64 {
        let id = next(&mut self.seq.attachment, self.id_base);
        let token = self.token("att", id);
        let size = match &data {
            AttData::Gen { size, .. } => *size,
            AttData::Bytes(b) => b.len() as u64,
        };
        let sha256 = match &data {
            AttData::Bytes(b) => Some(hex::encode(Sha256::digest(b))),
            AttData::Gen { .. } => None,
        };
        self.att_by_token.insert(token.clone(), id);
        self.attachments.insert(
            id,
            Attachment {
                id,
                token,
                file_name: file_name.to_string(),
                content_type: content_type.to_string(),
                size,
                inline,
                data,
                sha256,
            },
        );
        id
    }

    /// POST /uploads: store the bytes, return (upload token, attachment id).
    pub fn upload(
        &mut self,
        file_name: &str,
        content_type: &str,
        data: Bytes,
        token: Option<&str>,
    ) -> (String, u64) {
        let att = self.add_attachment(file_name, content_type, AttData::Bytes(data), false);
        if let Some(t) = token {
            if let Some(list) = self.uploads.get_mut(t) {
                list.push(att);
                return (t.to_string(), att);
            }
        }
        let n = next(&mut self.seq.upload, self.id_base);
        let token = format!("upl{}", self.token("upload", n));
        self.uploads.insert(token.clone(), vec![att]);
        (token, att)
    }

    pub fn content_url(&self, base: &str, att: &Attachment) -> String {
        format!(
            "{base}/attachments/token/{}/?name={}",
            att.token,
            encode_query(&att.file_name)
        )
    }

    pub fn attachment_json(&self, base: &str, id: u64) -> Value {
        let Some(a) = self.attachments.get(&id) else {
            return Value::Null;
        };
        json!({
            "id": a.id,
            "url": format!("{base}/api/v2/attachments/{}.json", a.id),
            "file_name": a.file_name,
            "content_url": self.content_url(base, a),
            "mapped_content_url": self.content_url(base, a),
            "content_type": a.content_type,
            "size": a.size,
            "inline": a.inline,
            "deleted": false,
            "thumbnails": [],
        })
    }

    pub fn user_json(&self, u: &User) -> Value {
        json!({
            "id": u.id, "name": u.name, "email": u.email, "role": u.role,
            "organization_id": u.organization_id, "active": true,
        })
    }

    pub fn org_json(&self, o: &Org) -> Value {
        json!({"id": o.id, "name": o.name, "external_id": o.external_id, "domain_names": o.domain_names})
    }

    pub fn group_json(&self, g: &Group) -> Value {
        json!({"id": g.id, "name": g.name})
    }

    pub fn field_json(&self, f: &Field) -> Value {
        let mut v = json!({"id": f.id, "title": f.title, "type": f.kind, "active": true, "removable": true});
        if f.kind == "tagger" {
            v["custom_field_options"] = f
                .options
                .iter()
                .map(|o| json!({"id": o.id, "name": o.name, "value": o.value}))
                .collect();
        }
        v
    }

    pub fn comment_json(&self, base: &str, c: &Comment) -> Value {
        let html = c.html_body.replace(BASE_PLACEHOLDER, base);
        let plain = strip_html(&html);
        json!({
            "id": c.id,
            "type": "Comment",
            "author_id": c.author_id,
            "body": plain,
            "html_body": html,
            "plain_body": plain,
            "public": c.public,
            "created_at": fmt_time(c.created_at),
            "attachments": c.attachments.iter().map(|a| self.attachment_json(base, *a)).collect::<Vec<_>>(),
        })
    }

    pub fn description(t: &Ticket) -> String {
        t.comments
            .first()
            .map(|c| strip_html(&c.html_body))
            .unwrap_or_default()
    }

    pub fn ticket_json(&self, base: &str, t: &Ticket, export: bool) -> Value {
        let custom: Vec<Value> = self
            .fields
            .iter()
            .map(|f| json!({"id": f.id, "value": t.custom_fields.get(&f.id).cloned().unwrap_or(Value::Null)}))
            .collect();
        let mut v = json!({
            "id": t.id,
            "url": format!("{base}/api/v2/tickets/{}.json", t.id),
            "external_id": t.external_id,
            "subject": t.subject,
            "raw_subject": t.subject,
            "description": Self::description(t),
            "status": if t.deleted { "deleted" } else { t.status.as_str() },
            "priority": t.priority,
            "type": t.kind,
            "requester_id": t.requester_id,
            "submitter_id": t.submitter_id,
            "assignee_id": t.assignee_id,
            "group_id": t.group_id,
            "organization_id": t.organization_id,
            "tags": t.tags,
            "custom_fields": custom,
            "fields": custom,
            "created_at": fmt_time(t.created_at),
            "updated_at": fmt_time(t.updated_at),
        });
        if export {
            v["generated_timestamp"] = json!(t.updated_at);
        }
        if let Some(o) = self.json_overrides.get(&t.id) {
            for (k, x) in o {
                v[k.as_str()] = x.clone();
            }
        }
        v
    }

    /// Whole state, independent of the bound port (HTML keeps the base-URL placeholder).
    pub fn snapshot(&mut self) -> Value {
        // Fill in the lazily computed checksums of seeded attachments.
        for a in self.attachments.values_mut() {
            if a.sha256.is_none() {
                a.sha256 = Some(hex::encode(Sha256::digest(a.data.bytes())));
            }
        }
        let tickets: Vec<Value> = self
            .tickets
            .values()
            .map(|t| {
                let mut v = self.ticket_json(BASE_PLACEHOLDER, t, false);
                v["status"] = json!(t.status);
                v["deleted"] = json!(t.deleted);
                v.as_object_mut().map(|o| {
                    o.remove("url");
                    o.remove("fields");
                    o.remove("raw_subject")
                });
                v["comments"] = t
                    .comments
                    .iter()
                    .map(|c| {
                        json!({
                            "id": c.id,
                            "author_id": c.author_id,
                            "html_body": c.html_body,
                            "plain_body": strip_html(&c.html_body),
                            "public": c.public,
                            "created_at": fmt_time(c.created_at),
                            "attachments": c.attachments.iter().filter_map(|id| self.attachments.get(id)).map(|a| json!({
                                "id": a.id,
                                "file_name": a.file_name,
                                "size": a.size,
                                "content_type": a.content_type,
                                "inline": a.inline,
                                "sha256": a.sha256,
                            })).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                v
            })
            .collect();
        json!({
            "tickets": tickets,
            "users": self.users.values().map(|u| self.user_json(u)).collect::<Vec<_>>(),
            "organizations": self.orgs.values().map(|o| self.org_json(o)).collect::<Vec<_>>(),
            "groups": self.groups.values().map(|g| self.group_json(g)).collect::<Vec<_>>(),
            "ticket_fields": self.fields.iter().map(|f| self.field_json(f)).collect::<Vec<_>>(),
        })
    }

    pub fn default_agent(&self) -> Option<u64> {
        self.users
            .values()
            .find(|u| u.role != "end-user")
            .map(|u| u.id)
    }

    pub fn live_ticket(&self, id: u64) -> Result<&Ticket, ApiError> {
        self.tickets
            .get(&id)
            .filter(|t| !t.deleted)
            .ok_or_else(ApiError::not_found)
    }

    fn check_user(&self, id: u64, field: &str) -> Result<u64, ApiError> {
        if self.users.contains_key(&id) {
            Ok(id)
        } else {
            Err(ApiError::invalid(
                field,
                format!("user {id} does not exist"),
            ))
        }
    }

    /// Validate the ticket fields of a PUT / import body (`comment(s)` are handled separately).
    pub fn parse_patch(&self, v: &Value) -> Result<Patch, ApiError> {
        let Some(o) = v.as_object() else {
            return Err(ApiError::bad("ticket must be an object"));
        };
        let mut p = Patch::default();
        if let Some(s) = o.get("subject") {
            p.subject = Some(s.as_str().unwrap_or_default().to_string());
        }
        if let Some(s) = o.get("status") {
            match opt_str(s, "status", &STATUSES)? {
                Some(s) => p.status = Some(s),
                None => return Err(ApiError::invalid("status", "cannot be blank")),
            }
        }
        if let Some(s) = o.get("priority") {
            p.priority = Some(opt_str(s, "priority", &PRIORITIES)?);
        }
        if let Some(s) = o.get("type") {
            p.kind = Some(opt_str(s, "type", &TYPES)?);
        }
        for (field, slot) in [
            ("requester_id", &mut p.requester_id),
            ("submitter_id", &mut p.submitter_id),
        ] {
            if let Some(x) = o.get(field) {
                match id_of(x, field)? {
                    Some(id) => *slot = Some(self.check_user(id, field)?),
                    None => return Err(ApiError::invalid(field, "cannot be blank")),
                }
            }
        }
        if let Some(x) = o.get("assignee_id") {
            let id = id_of(x, "assignee_id")?;
            if let Some(id) = id {
                match self.users.get(&id) {
                    Some(u) if u.role != "end-user" => {}
                    Some(_) => {
                        return Err(ApiError::invalid(
                            "assignee_id",
                            format!("user {id} is not an agent"),
                        ))
                    }
                    None => {
                        return Err(ApiError::invalid(
                            "assignee_id",
                            format!("user {id} does not exist"),
                        ))
                    }
                }
            }
            p.assignee_id = Some(id);
        }
        if let Some(x) = o.get("group_id") {
            let id = id_of(x, "group_id")?;
            if let Some(id) = id {
                if !self.groups.contains_key(&id) {
                    return Err(ApiError::invalid(
                        "group_id",
                        format!("group {id} does not exist"),
                    ));
                }
            }
            p.group_id = Some(id);
        }
        if let Some(x) = o.get("organization_id") {
            let id = id_of(x, "organization_id")?;
            if let Some(id) = id {
                if !self.orgs.contains_key(&id) {
                    return Err(ApiError::invalid(
                        "organization_id",
                        format!("organization {id} does not exist"),
                    ));
                }
            }
            p.organization_id = Some(id);
        }
        if let Some(x) = o.get("tags") {
            let Some(arr) = x.as_array() else {
                return Err(ApiError::invalid("tags", "must be an array"));
            };
            let mut tags: Vec<String> = Vec::new();
            for t in arr {
                let Some(s) = t.as_str() else {
                    return Err(ApiError::invalid("tags", "must be strings"));
                };
                for part in s.split_whitespace() {
                    if !tags.iter().any(|x| x == part) {
                        tags.push(part.to_string());
                    }
                }
            }
            p.tags = Some(tags);
        }
        for key in ["custom_fields", "fields"] {
            if let Some(x) = o.get(key) {
                let Some(arr) = x.as_array() else {
                    return Err(ApiError::invalid("custom_fields", "must be an array"));
                };
                let mut out = p.custom_fields.take().unwrap_or_default();
                for cf in arr {
                    let Some(id) = cf
                        .get("id")
                        .and_then(|i| id_of(i, "custom_fields").ok().flatten())
                    else {
                        return Err(ApiError::invalid("custom_fields", "id is missing"));
                    };
                    let Some(field) = self.fields.iter().find(|f| f.id == id) else {
                        return Err(ApiError::invalid(
                            "custom_fields",
                            format!("ticket field {id} does not exist"),
                        ));
                    };
                    let value = cf.get("value").cloned().unwrap_or(Value::Null);
                    if field.kind == "tagger" {
                        if let Some(s) = value.as_str() {
                            if !s.is_empty() && !field.options.iter().any(|o| o.value == s) {
                                return Err(ApiError::invalid(
                                    "custom_fields",
                                    format!("{s:?} is not an option of ticket field {id}"),
                                ));
                            }
                        }
                    }
                    out.push((id, value));
                }
                p.custom_fields = Some(out);
            }
        }
        if let Some(x) = o.get("external_id") {
            p.external_id = Some(match x {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            });
        }
        Ok(p)
    }

    /// Validate a comment object. `created_at` is honoured only when `allow_time` (imports).
    pub fn parse_comment(
        &self,
        v: &Value,
        base: &str,
        default_author: u64,
        default_time: i64,
        allow_time: bool,
    ) -> Result<NewComment, ApiError> {
        let Some(o) = v.as_object() else {
            return Err(ApiError::invalid("comment", "must be an object"));
        };
        let html = if let Some(h) = o.get("html_body").and_then(|h| h.as_str()) {
            if base.is_empty() {
                h.to_string()
            } else {
                h.replace(base, BASE_PLACEHOLDER)
            }
        } else if let Some(b) = o
            .get("body")
            .or_else(|| o.get("value"))
            .and_then(|b| b.as_str())
        {
            format!("<p>{}</p>", escape_html(b))
        } else {
            return Err(ApiError::invalid("comment", "body cannot be blank"));
        };
        let public = match o.get("public") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(ApiError::invalid("comment", "public must be a boolean")),
        };
        let author_id = match o.get("author_id") {
            None | Some(Value::Null) => default_author,
            Some(x) => match id_of(x, "author_id")? {
                Some(id) => self.check_user(id, "author_id")?,
                None => default_author,
            },
        };
        let created_at = if allow_time {
            parse_time(o.get("created_at").unwrap_or(&Value::Null), "created_at")?
                .unwrap_or(default_time)
        } else {
            default_time
        };
        let mut uploads = Vec::new();
        if let Some(u) = o.get("uploads") {
            let Some(arr) = u.as_array() else {
                return Err(ApiError::invalid("uploads", "must be an array"));
            };
            for t in arr {
                let Some(t) = t.as_str() else {
                    return Err(ApiError::invalid("uploads", "must be tokens"));
                };
                if !self.uploads.contains_key(t) || uploads.iter().any(|x| x == t) {
                    return Err(ApiError::invalid(
                        "uploads",
                        format!("token {t:?} is invalid or already used"),
                    ));
                }
                uploads.push(t.to_string());
            }
        }
        Ok(NewComment {
            html,
            public,
            author_id,
            created_at,
            uploads,
        })
    }

    /// Consume the comment's upload tokens and build the comment.
    fn make_comment(&mut self, c: NewComment) -> Comment {
        let id = self.next_comment_id();
        let mut atts = Vec::new();
        for t in &c.uploads {
            for a in self.uploads.remove(t).unwrap_or_default() {
                if let Some(att) = self.attachments.get_mut(&a) {
                    att.inline = c
                        .html
                        .contains(&format!("/attachments/token/{}/", att.token))
                        || c.html
                            .contains(&format!("/attachments/token/{}?", att.token));
                }
                atts.push(a);
            }
        }
        Comment {
            id,
            author_id: c.author_id,
            html_body: c.html,
            public: c.public,
            created_at: c.created_at,
            attachments: atts,
        }
    }

    fn apply_patch(t: &mut Ticket, p: Patch) {
        if let Some(s) = p.subject {
            t.subject = s;
        }
        if let Some(s) = p.status {
            t.status = s;
        }
        if let Some(x) = p.priority {
            t.priority = x;
        }
        if let Some(x) = p.kind {
            t.kind = x;
        }
        if let Some(x) = p.requester_id {
            t.requester_id = x;
        }
        if let Some(x) = p.submitter_id {
            t.submitter_id = x;
        }
        if let Some(x) = p.assignee_id {
            t.assignee_id = x;
        }
        if let Some(x) = p.group_id {
            t.group_id = x;
        }
        if let Some(x) = p.organization_id {
            t.organization_id = x;
        }
        if let Some(x) = p.tags {
            t.tags = x;
        }
        if let Some(cf) = p.custom_fields {
            for (id, v) in cf {
                if v.is_null() {
                    t.custom_fields.remove(&id);
                } else {
                    t.custom_fields.insert(id, v);
                }
            }
        }
        if let Some(x) = p.external_id {
            t.external_id = x;
        }
    }

    /// PUT /tickets/{id}: returns (ticket id, new comment id if any).
    pub fn update_ticket(
        &mut self,
        id: u64,
        body: &Value,
        base: &str,
        now: i64,
    ) -> Result<(u64, Option<u64>), ApiError> {
        let t = self.live_ticket(id)?;
        if t.status == "closed" {
            return Err(ApiError::invalid("status", "closed prevents ticket update"));
        }
        let p = self.parse_patch(body)?;
        let comment = match body.get("comment") {
            None | Some(Value::Null) => None,
            Some(c) => {
                let author = self.default_agent().unwrap_or(t.requester_id);
                Some(self.parse_comment(c, base, author, now, false)?)
            }
        };
        let comment = comment.map(|c| self.make_comment(c));
        let cid = comment.as_ref().map(|c| c.id);
        let t = self.tickets.get_mut(&id).expect("checked above");
        Self::apply_patch(t, p);
        if let Some(c) = comment {
            t.comments.push(c);
        }
        t.updated_at = now;
        Ok((id, cid))
    }

    /// POST /imports/tickets (and agent-created tickets): returns the new ticket id.
    pub fn import_ticket(&mut self, body: &Value, base: &str, now: i64) -> Result<u64, ApiError> {
        let p = self.parse_patch(body)?;
        let Some(requester) = p.requester_id else {
            return Err(ApiError::invalid("requester_id", "is required"));
        };
        let created_at = parse_time(body.get("created_at").unwrap_or(&Value::Null), "created_at")?
            .unwrap_or(now);
        let updated_at = parse_time(body.get("updated_at").unwrap_or(&Value::Null), "updated_at")?
            .unwrap_or(now);
        let raw_comments: Vec<Value> = match (body.get("comments"), body.get("comment")) {
            (Some(Value::Array(a)), _) => a.clone(),
            (_, Some(c @ Value::Object(_))) => vec![c.clone()],
            _ => Vec::new(),
        };
        if raw_comments.is_empty() {
            return Err(ApiError::invalid(
                "comments",
                "at least one comment is required",
            ));
        }
        let mut parsed = Vec::new();
        for c in &raw_comments {
            let nc = self.parse_comment(c, base, requester, created_at, true)?;
            if parsed
                .iter()
                .any(|x: &NewComment| x.uploads.iter().any(|u| nc.uploads.contains(u)))
            {
                return Err(ApiError::invalid("uploads", "a token can be used once"));
            }
            parsed.push(nc);
        }
        let comments: Vec<Comment> = parsed.into_iter().map(|c| self.make_comment(c)).collect();
        let id = self.next_ticket_id();
        let org = self.users.get(&requester).and_then(|u| u.organization_id);
        let mut t = Ticket {
            id,
            external_id: None,
            subject: String::new(),
            status: "new".into(),
            priority: None,
            kind: None,
            requester_id: requester,
            submitter_id: requester,
            assignee_id: None,
            group_id: None,
            organization_id: org,
            tags: Vec::new(),
            custom_fields: BTreeMap::new(),
            created_at,
            updated_at,
            deleted: false,
            comments,
            held: None,
        };
        Self::apply_patch(&mut t, p);
        if t.subject.is_empty() {
            let d = Self::description(&t);
            t.subject = d.chars().take(60).collect();
        }
        self.tickets.insert(id, t);
        Ok(id)
    }

    pub fn delete_ticket(&mut self, id: u64, now: i64) -> Result<(), ApiError> {
        self.live_ticket(id)?;
        let t = self.tickets.get_mut(&id).expect("checked above");
        t.deleted = true;
        t.updated_at = now;
        Ok(())
    }

    pub fn user_by_email(&self, email: &str) -> Option<u64> {
        self.users
            .values()
            .find(|u| u.email.eq_ignore_ascii_case(email))
            .map(|u| u.id)
    }

    /// POST /users/create_or_update: (user id, created?).
    pub fn create_or_update_user(&mut self, v: &Value) -> Result<(u64, bool), ApiError> {
        let Some(email) = v
            .get("email")
            .and_then(|e| e.as_str())
            .filter(|e| e.contains('@'))
        else {
            return Err(ApiError::invalid("email", "is required"));
        };
        let role = match v.get("role") {
            None | Some(Value::Null) => None,
            Some(r) => match r.as_str() {
                Some(r @ ("end-user" | "agent" | "admin")) => Some(r.to_string()),
                _ => {
                    return Err(ApiError::invalid(
                        "role",
                        format!("{r} is not a valid role"),
                    ))
                }
            },
        };
        let org = match v.get("organization_id") {
            None => None,
            Some(x) => {
                let id = id_of(x, "organization_id")?;
                if let Some(id) = id {
                    if !self.orgs.contains_key(&id) {
                        return Err(ApiError::invalid(
                            "organization_id",
                            format!("organization {id} does not exist"),
                        ));
                    }
                }
                Some(id)
            }
        };
        let name = v
            .get("name")
            .and_then(|n| n.as_str())
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        if let Some(id) = self.user_by_email(email) {
            let u = self.users.get_mut(&id).expect("found");
            if let Some(n) = name {
                u.name = n;
            }
            if let Some(r) = role {
                u.role = r;
            }
            if let Some(o) = org {
                u.organization_id = o;
            }
            return Ok((id, false));
        }
        let id = self.next_user_id();
        let name = name.unwrap_or_else(|| email.split('@').next().unwrap_or(email).to_string());
        self.users.insert(
            id,
            User {
                id,
                name,
                email: email.to_string(),
                role: role.unwrap_or_else(|| "end-user".into()),
                organization_id: org.flatten(),
            },
        );
        Ok((id, true))
    }

    /// POST /organizations/create_or_update: matched by external_id, else by name.
    pub fn create_or_update_org(&mut self, v: &Value) -> Result<(u64, bool), ApiError> {
        let name = v
            .get("name")
            .and_then(|n| n.as_str())
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        let external_id = match v.get("external_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => Some(other.to_string()),
        };
        let domains: Option<Vec<String>> =
            v.get("domain_names").and_then(|d| d.as_array()).map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            });
        let found = external_id
            .as_ref()
            .and_then(|e| {
                self.orgs
                    .values()
                    .find(|o| o.external_id.as_ref() == Some(e))
            })
            .or_else(|| {
                name.as_ref()
                    .and_then(|n| self.orgs.values().find(|o| o.name.eq_ignore_ascii_case(n)))
            })
            .map(|o| o.id);
        if let Some(id) = found {
            let o = self.orgs.get_mut(&id).expect("found");
            if let Some(n) = name {
                o.name = n;
            }
            if external_id.is_some() {
                o.external_id = external_id;
            }
            if let Some(d) = domains {
                o.domain_names = d;
            }
            return Ok((id, false));
        }
        let Some(name) = name else {
            return Err(ApiError::invalid("name", "cannot be blank"));
        };
        let id = self.next_org_id();
        self.orgs.insert(
            id,
            Org {
                id,
                name,
                external_id,
                domain_names: domains.unwrap_or_default(),
            },
        );
        Ok((id, true))
    }

    pub fn create_group(&mut self, v: &Value) -> Result<u64, ApiError> {
        let Some(name) = v
            .get("name")
            .and_then(|n| n.as_str())
            .filter(|n| !n.is_empty())
        else {
            return Err(ApiError::invalid("name", "cannot be blank"));
        };
        let id = self.next_group_id();
        self.groups.insert(
            id,
            Group {
                id,
                name: name.to_string(),
            },
        );
        Ok(id)
    }

    /// Visible tickets strictly after `after` = (updated_at, id), ordered; (page, end_of_stream).
    pub fn export(
        &self,
        after: (i64, u64),
        per_page: usize,
        now_ms: i64,
        lag_ms: i64,
    ) -> (Vec<&Ticket>, bool) {
        let mut v: Vec<&Ticket> = self
            .tickets
            .values()
            .filter(|t| (t.updated_at, t.id) > after && t.visible_at_ms(lag_ms) <= now_ms)
            .collect();
        v.sort_by_key(|t| (t.updated_at, t.id));
        let end = v.len() <= per_page;
        v.truncate(per_page);
        (v, end)
    }

    pub fn audit_json(
        &mut self,
        base: &str,
        ticket_id: u64,
        comment: Option<u64>,
        now: i64,
    ) -> Value {
        let id = next(&mut self.seq.audit, self.id_base);
        let mut events = Vec::new();
        if let Some(cid) = comment {
            if let Some(c) = self
                .tickets
                .get(&ticket_id)
                .and_then(|t| t.comments.iter().find(|c| c.id == cid))
            {
                let mut e = self.comment_json(base, c);
                e["type"] = json!("Comment");
                events.push(e);
            }
        }
        json!({"id": id, "ticket_id": ticket_id, "created_at": fmt_time(now), "events": events})
    }
}

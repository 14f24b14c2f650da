//! The axum router: handlers for every endpoint of the subset, `multipart/form-data` parsing, and the
//! middleware that counts requests, checks Basic auth, enforces the per-class rate limits and adds latency.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::model::{ApiError, Class, NewFile, REF_FIELD};
use super::FreshdeskSim;

type Q = Query<HashMap<String, String>>;
type ApiResult = Result<Response, ApiError>;

pub(crate) fn router(sim: FreshdeskSim) -> Router {
    // Room for the attachments plus the form fields; larger bodies get axum's 413.
    let body_limit = usize::try_from(sim.inner.cfg.max_attachment_bytes.saturating_add(4 * 1024 * 1024)).unwrap_or(usize::MAX);
    Router::new()
        .route("/api/v2/tickets", get(list_tickets).post(create_ticket))
        .route("/api/v2/tickets/{id}", get(show_ticket).put(update_ticket).delete(delete_ticket))
        .route("/api/v2/tickets/{id}/conversations", get(list_conversations))
        .route("/api/v2/tickets/{id}/reply", post(reply))
        .route("/api/v2/tickets/{id}/notes", post(note))
        .route("/api/v2/conversations/{id}", put(update_conversation))
        .route("/api/v2/search/tickets", get(search_tickets))
        .route("/api/v2/contacts", get(list_contacts).post(create_contact))
        .route("/api/v2/contacts/{id}", get(show_contact))
        .route("/api/v2/agents", get(list_agents))
        .route("/api/v2/agents/{id}", get(show_agent))
        .route("/api/v2/companies", get(list_companies).post(create_company))
        .route("/api/v2/companies/autocomplete", get(autocomplete_companies))
        .route("/api/v2/companies/{id}", get(show_company))
        .route("/api/v2/groups", get(list_groups).post(create_group))
        .route("/api/v2/ticket_fields", get(list_fields))
        .route("/fd-attachments/{token}", get(download))
        .layer(from_fn_with_state(sim.clone(), middleware))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(sim)
}

const UNLIMITED: u32 = 1_000_000;

fn rate_headers(resp: &mut Response, total: u32, remaining: u32) {
    let h = resp.headers_mut();
    h.insert("x-ratelimit-total", HeaderValue::from(total));
    h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    h.insert("x-ratelimit-used-currentrequest", HeaderValue::from(1u32));
}

fn class_of(method: &Method, route: &str) -> Option<Class> {
    match (method, route) {
        (&Method::POST, "/api/v2/tickets") => Some(Class::TicketCreate),
        (&Method::PUT, "/api/v2/tickets/{id}") => Some(Class::TicketUpdate),
        (&Method::GET, "/api/v2/tickets") => Some(Class::TicketList),
        // Freshdesk's plan table caps "Contacts List"; creating or viewing a contact counts only against the
        // account limit.
        (&Method::GET, "/api/v2/contacts") => Some(Class::Contacts),
        _ => None,
    }
}

async fn middleware(State(sim): State<FreshdeskSim>, req: Request, next: Next) -> Response {
    let cfg = &sim.inner.cfg;
    if !cfg.latency.is_zero() {
        tokio::time::sleep(cfg.latency).await;
    }
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_else(|| req.uri().path().to_string());
    let key = format!("{} {}", req.method(), route);
    let is_attachment = route.starts_with("/fd-attachments/");
    // Freshdesk takes the API key as the user name; the password is ignored.
    let authorized = match (&cfg.api_key, is_attachment) {
        (Some(api_key), false) => req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v.trim()).ok())
            .and_then(|d| String::from_utf8(d).ok())
            .is_some_and(|d| d.split_once(':').map(|(u, _)| u) == Some(api_key.as_str())),
        _ => true,
    };
    let limits = &cfg.rate_limits;
    let total = limits.account.unwrap_or(UNLIMITED);
    let class = class_of(req.method(), &route);
    let remaining;
    {
        let mut st = sim.lock();
        st.stats.requests_total += 1;
        *st.stats.per_route.entry(key).or_default() += 1;
        if !authorized {
            drop(st);
            return (StatusCode::UNAUTHORIZED, Json(json!({"code": "invalid_credentials", "message": "You have to be logged in to perform this action."}))).into_response();
        }
        if !is_attachment {
            let now = std::time::Instant::now();
            let mut checks = vec![(Class::Account, limits.account)];
            if let Some(c) = class {
                let l = match c {
                    Class::TicketCreate => limits.ticket_create,
                    Class::TicketUpdate => limits.ticket_update,
                    Class::TicketList => limits.ticket_list,
                    Class::Contacts => limits.contacts,
                    Class::Account => None,
                };
                checks.push((c, l));
            }
            let mut blocked = None;
            for (c, l) in &checks {
                if let Some(l) = l {
                    if let Err(secs) = st.rates.entry(*c).or_default().check(*l, limits.window, now) {
                        blocked = Some(secs);
                        break;
                    }
                }
            }
            if let Some(secs) = blocked {
                st.stats.throttled += 1;
                let used = st.rates.get(&Class::Account).map(|w| w.count).unwrap_or(0);
                drop(st);
                return throttled(secs, total, total.saturating_sub(used));
            }
            for (c, l) in &checks {
                if l.is_some() {
                    st.rates.entry(*c).or_default().count += 1;
                }
            }
        }
        remaining = limits.account.map(|l| l.saturating_sub(st.rates.get(&Class::Account).map(|w| w.count).unwrap_or(0))).unwrap_or(UNLIMITED);
    }
    if !is_attachment {
        // An injected 429 looks like Freshdesk's own: the account's headroom is used up.
        if let Some(resp) = sim.inner.faults.intercept(|secs| throttled(secs, total, 0)).await {
            return resp;
        }
    }
    let mut resp = next.run(req).await;
    if !is_attachment {
        resp = sim.inner.faults.rewrite(resp).await;
        rate_headers(&mut resp, total, remaining);
    }
    // The account's own clock (which may be skewed from ours by `clock_offset_secs`), as real servers send it.
    if let Some(v) = crate::faults::http_date(sim.now_ms()) {
        resp.headers_mut().insert(header::DATE, v);
    }
    resp
}

/// Freshdesk's 429: `Retry-After` in seconds and the `X-RateLimit-*` headers.
fn throttled(secs: u64, total: u32, remaining: u32) -> Response {
    let mut resp = crate::faults::throttled(secs, json!({"code": "rate_limit_exceeded", "message": format!("Request rate limit exceeded; retry after {secs} seconds")}));
    rate_headers(&mut resp, total, remaining);
    resp
}

fn parse_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found())
}

fn ok(v: Value) -> ApiResult {
    Ok((StatusCode::OK, Json(v)).into_response())
}

fn created(v: Value) -> ApiResult {
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

// ---- request bodies --------------------------------------------------------------------------------------

/// One `multipart/form-data` part.
struct Part {
    name: String,
    file_name: Option<String>,
    content_type: Option<String>,
    data: Bytes,
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    (from..=hay.len() - needle.len()).find(|&i| &hay[i..i + needle.len()] == needle)
}

/// `name="x"` out of a `Content-Disposition` header value.
fn disposition_param(v: &str, key: &str) -> Option<String> {
    let pat = format!("{key}=\"");
    let start = v.find(&pat)? + pat.len();
    let end = v[start..].find('"')? + start;
    Some(v[start..end].to_string())
}

fn parse_multipart(content_type: &str, body: &Bytes) -> Result<Vec<Part>, ApiError> {
    let bad = || ApiError::value("body", "Malformed multipart/form-data body");
    let boundary = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
        .map(|b| b.trim_matches('"').to_string())
        .ok_or_else(bad)?;
    let delim = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut pos = find(body, delim.as_bytes(), 0).ok_or_else(bad)? + delim.len();
    loop {
        if body[pos..].starts_with(b"--") {
            return Ok(parts);
        }
        // Skip the CRLF after the delimiter, then read the part's headers.
        if body[pos..].starts_with(b"\r\n") {
            pos += 2;
        }
        let head_end = find(body, b"\r\n\r\n", pos).ok_or_else(bad)?;
        let head = String::from_utf8_lossy(&body[pos..head_end]).to_string();
        let data_start = head_end + 4;
        let next = find(body, format!("\r\n{delim}").as_bytes(), data_start).ok_or_else(bad)?;
        let mut name = None;
        let mut file_name = None;
        let mut ctype = None;
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else { continue };
            match k.trim().to_ascii_lowercase().as_str() {
                "content-disposition" => {
                    name = disposition_param(v, "name");
                    file_name = disposition_param(v, "filename");
                }
                "content-type" => ctype = Some(v.trim().to_string()),
                _ => {}
            }
        }
        parts.push(Part { name: name.ok_or_else(bad)?, file_name, content_type: ctype, data: body.slice(data_start..next) });
        pos = next + 2 + delim.len();
    }
}

/// The body of a create/reply/note/update as JSON plus its `attachments[]` files (JSON bodies have none).
/// Form fields become JSON: `tags[]` an array, `custom_fields[cf_x]` an object, the rest strings (the
/// validators accept numeric and boolean strings, as Freshdesk does for form data).
fn read_body(headers: &HeaderMap, body: &Bytes) -> Result<(Value, Vec<NewFile>), ApiError> {
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if ctype.to_ascii_lowercase().starts_with("multipart/form-data") {
        let mut obj = Map::new();
        let mut files = Vec::new();
        for p in parse_multipart(ctype, body)? {
            if p.name == "attachments[]" {
                files.push(NewFile {
                    name: p.file_name.filter(|n| !n.is_empty()).unwrap_or_else(|| "attachment".into()),
                    content_type: p.content_type.unwrap_or_else(|| "application/octet-stream".into()),
                    bytes: p.data,
                });
                continue;
            }
            let text = String::from_utf8_lossy(&p.data).to_string();
            if let Some(k) = p.name.strip_suffix("[]") {
                let arr = obj.entry(k.to_string()).or_insert_with(|| json!([]));
                if let Some(a) = arr.as_array_mut() {
                    a.push(json!(text));
                }
            } else if let Some(k) = p.name.strip_prefix("custom_fields[").and_then(|k| k.strip_suffix(']')) {
                let cf = obj.entry("custom_fields".to_string()).or_insert_with(|| json!({}));
                cf[k] = json!(text);
            } else {
                obj.insert(p.name, json!(text));
            }
        }
        return Ok((Value::Object(obj), files));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| ApiError::value("body", format!("Invalid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::value("body", "It should be a JSON object"));
    }
    Ok((v, Vec::new()))
}

fn injected((status, description): (u16, String)) -> ApiError {
    ApiError {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        body: json!({"description": description, "errors": [{"field": REF_FIELD, "message": description, "code": "invalid_value"}]}),
    }
}

fn ticket_ref(sim: &FreshdeskSim, id: u64) -> Option<String> {
    sim.lock().tickets.get(&id).and_then(|t| t.custom_fields.get(REF_FIELD)).and_then(Value::as_str).map(str::to_string)
}

// ---- pagination ------------------------------------------------------------------------------------------

/// (page, per_page) from the query: `page` ≥ 1 up to `max_page`, `per_page` 1..=100 (default 30).
fn paging(q: &HashMap<String, String>, max_page: u32) -> Result<(usize, usize), ApiError> {
    let page = match q.get("page") {
        None => 1,
        Some(s) => match s.parse::<u32>() {
            Ok(p) if p >= 1 && p <= max_page => p,
            _ => return Err(ApiError::value("page", format!("It should be a Positive Integer less than or equal to {max_page}"))),
        },
    };
    let per_page = match q.get("per_page") {
        None => 30,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => return Err(ApiError::value("per_page", "It should be a Positive Integer less than or equal to 100")),
        },
    };
    Ok((page as usize, per_page))
}

/// A page of `items` as a JSON array with a `Link: <…>; rel="next"` header while more exist.
fn page_response<T>(sim: &FreshdeskSim, path: &str, q: &HashMap<String, String>, items: &[T], page: usize, per_page: usize, render: impl Fn(&T) -> Value) -> Response {
    let start = (page - 1).saturating_mul(per_page);
    let slice: Vec<Value> = items.iter().skip(start).take(per_page).map(render).collect();
    let more = start + slice.len() < items.len();
    let mut resp = (StatusCode::OK, Json(Value::Array(slice))).into_response();
    if more {
        let mut params: Vec<(String, String)> = q.iter().filter(|(k, _)| k.as_str() != "page").map(|(k, v)| (k.clone(), v.clone())).collect();
        params.sort();
        params.push(("page".into(), (page + 1).to_string()));
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", crate::zendesk::model::encode_query(v))).collect();
        let link = format!("<{}{path}?{}>; rel=\"next\"", sim.base_url(), query.join("&"));
        if let Ok(v) = HeaderValue::from_str(&link) {
            resp.headers_mut().insert(header::LINK, v);
        }
    }
    resp
}

// ---- tickets ---------------------------------------------------------------------------------------------

async fn list_tickets(State(sim): State<FreshdeskSim>, Query(q): Q) -> ApiResult {
    let cfg = &sim.inner.cfg;
    let (page, per_page) = paging(&q, cfg.max_page)?;
    let filter = match q.get("filter").map(String::as_str) {
        None => None,
        Some(f @ ("deleted" | "spam" | "new_and_my_open" | "watching")) => Some(f.to_string()),
        Some(_) => return Err(ApiError::value("filter", "It should be one of these values: 'new_and_my_open,watching,spam,deleted'")),
    };
    let updated_since = match q.get("updated_since") {
        None => None,
        Some(s) => Some(chrono::DateTime::parse_from_rfc3339(s).map_err(|_| ApiError::value("updated_since", "It should be in the 'valid date time' format"))?.timestamp()),
    };
    let order_by = q.get("order_by").map(String::as_str).unwrap_or("created_at");
    if !["created_at", "updated_at", "due_by", "status"].contains(&order_by) {
        return Err(ApiError::value("order_by", "It should be one of these values: 'created_at,due_by,updated_at,status'"));
    }
    let asc = match q.get("order_type").map(String::as_str) {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(_) => return Err(ApiError::value("order_type", "It should be one of these values: 'asc,desc'")),
    };
    let base = sim.base_url();
    let now = sim.now_secs();
    let with_description = q.get("include").is_some_and(|i| i.split(',').any(|x| x.trim() == "description"));
    let (mut resp, listed) = {
        let st = sim.lock();
        let tickets = st.list(filter.as_deref(), updated_since, order_by, asc, now, cfg.default_list_days);
        let resp = page_response(&sim, "/api/v2/tickets", &q, &tickets, page, per_page, |t| {
            let mut v = st.ticket_json(&base, t, with_description);
            if let Some(o) = v.as_object_mut().filter(|_| with_description) {
                o.remove("attachments");
            }
            v
        });
        let listed: Vec<u64> = tickets.iter().skip((page - 1).saturating_mul(per_page)).take(per_page).filter(|t| !t.deleted && !t.spam).map(|t| t.id).collect();
        (resp, listed)
    };
    let faults = sim.inner.faults.get();
    if faults.repeat_records {
        resp = repeat_first_two(resp).await;
    }
    // Deleted (moved to the trash) right after being listed: the fetch that follows finds them gone.
    sim.inner.faults.delete_listed(listed, |id| sim.lock().delete_ticket(id, now).is_ok());
    Ok(resp)
}

/// Fault `repeat_records`: the first two records of a list page appear again at its end.
async fn repeat_first_two(resp: Response) -> Response {
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else { return Response::from_parts(parts, axum::body::Body::empty()) };
    let mut items: Vec<Value> = serde_json::from_slice(&bytes).unwrap_or_default();
    let again: Vec<Value> = items.iter().take(2).cloned().collect();
    items.extend(again);
    let mut resp = (StatusCode::OK, Json(Value::Array(items))).into_response();
    for (k, v) in parts.headers.iter().filter(|(k, _)| *k != header::CONTENT_LENGTH) {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    resp
}

async fn create_ticket(State(sim): State<FreshdeskSim>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let (v, files) = read_body(&headers, &body)?;
    if let Some(fault) = sim.write_fault(v.get("custom_fields").and_then(|c| c.get(REF_FIELD)).and_then(Value::as_str)) {
        return Err(injected(fault));
    }
    let base = sim.base_url();
    let now = sim.now_secs();
    let mut st = sim.lock();
    let id = st.create_ticket(&v, files, &base, now)?;
    created(st.ticket_json(&base, &st.tickets[&id], true))
}

async fn show_ticket(State(sim): State<FreshdeskSim>, Path(id): Path<String>) -> ApiResult {
    let id = parse_id(&id)?;
    let base = sim.base_url();
    let st = sim.lock();
    ok(st.ticket_json(&base, st.ticket(id)?, true))
}

async fn update_ticket(State(sim): State<FreshdeskSim>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let id = parse_id(&id)?;
    let (v, files) = read_body(&headers, &body)?;
    if !files.is_empty() {
        return Err(ApiError::value("attachments", "Attachments are added with a reply or a note"));
    }
    if let Some(fault) = sim.write_fault(ticket_ref(&sim, id).as_deref()) {
        return Err(injected(fault));
    }
    let base = sim.base_url();
    let now = sim.now_secs();
    let mut st = sim.lock();
    st.update_ticket(id, &v, &base, now)?;
    ok(st.ticket_json(&base, &st.tickets[&id], true))
}

async fn delete_ticket(State(sim): State<FreshdeskSim>, Path(id): Path<String>) -> ApiResult {
    let id = parse_id(&id)?;
    let now = sim.now_secs();
    sim.lock().delete_ticket(id, now)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_conversations(State(sim): State<FreshdeskSim>, Path(id): Path<String>, Query(q): Q) -> ApiResult {
    let id = parse_id(&id)?;
    let (page, per_page) = paging(&q, u32::MAX)?;
    let base = sim.base_url();
    let st = sim.lock();
    let t = st.ticket(id)?;
    let path = format!("/api/v2/tickets/{id}/conversations");
    Ok(page_response(&sim, &path, &q, &t.conversations, page, per_page, |c| st.conversation_json(&base, id, c)))
}

async fn add_conversation(sim: FreshdeskSim, id: String, headers: HeaderMap, body: Bytes, note: bool) -> ApiResult {
    let id = parse_id(&id)?;
    let (v, files) = read_body(&headers, &body)?;
    if let Some(fault) = sim.write_fault(ticket_ref(&sim, id).as_deref()) {
        return Err(injected(fault));
    }
    let base = sim.base_url();
    let now = sim.now_secs();
    let mut st = sim.lock();
    let cid = st.add_conversation(id, &v, files, note, &base, now)?;
    let t = &st.tickets[&id];
    let c = t.conversations.iter().find(|c| c.id == cid).expect("just added");
    created(st.conversation_json(&base, id, c))
}

async fn reply(State(sim): State<FreshdeskSim>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> ApiResult {
    add_conversation(sim, id, headers, body, false).await
}

async fn note(State(sim): State<FreshdeskSim>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> ApiResult {
    add_conversation(sim, id, headers, body, true).await
}

async fn update_conversation(State(sim): State<FreshdeskSim>, Path(cid): Path<String>, body: Bytes) -> ApiResult {
    let cid = parse_id(&cid)?;
    let (v, _) = read_body(&HeaderMap::new(), &body)?;
    let base = sim.base_url();
    let now = sim.now_secs();
    let mut st = sim.lock();
    let tid = st.update_conversation(cid, &v, &base, now)?;
    let c = st.tickets[&tid].conversations.iter().find(|c| c.id == cid).expect("just updated");
    ok(st.conversation_json(&base, tid, c))
}

/// `query="<field>:'<value>'"`: one equality on a custom text field (named with or without `cf_`).
async fn search_tickets(State(sim): State<FreshdeskSim>, Query(q): Q) -> ApiResult {
    let bad = || ApiError::value("query", "It should be a valid query enclosed in double quotes, like \"field:'value'\"");
    let raw = q.get("query").ok_or_else(bad)?;
    if raw.len() > 514 {
        return Err(ApiError::value("query", "It should not exceed 512 characters"));
    }
    let inner = raw.strip_prefix('"').and_then(|s| s.strip_suffix('"')).ok_or_else(bad)?;
    let (field, value) = inner.split_once(':').ok_or_else(bad)?;
    let value = value.trim().strip_prefix('\'').and_then(|s| s.strip_suffix('\'')).ok_or_else(bad)?;
    let field = field.trim();
    let name = if field.starts_with("cf_") { field.to_string() } else { format!("cf_{field}") };
    let page = match q.get("page") {
        None => 1usize,
        Some(s) => match s.parse::<usize>() {
            Ok(p) if (1..=10).contains(&p) => p,
            _ => return Err(ApiError::value("page", "It should be a Positive Integer less than or equal to 10")),
        },
    };
    let base = sim.base_url();
    let now = sim.now_secs();
    let delay = sim.inner.cfg.search_index_delay.as_secs() as i64;
    let st = sim.lock();
    if !st.fields.iter().any(|f| f.name == name) {
        return Err(ApiError::value("query", format!("{field} is not a ticket field")));
    }
    let hits: Vec<Value> = st
        .tickets
        .values()
        .filter(|t| !t.deleted && !t.spam && t.updated_at + delay <= now)
        .filter(|t| t.custom_fields.get(&name).and_then(Value::as_str) == Some(value))
        .map(|t| st.ticket_json(&base, t, false))
        .collect();
    let total = hits.len();
    let results: Vec<Value> = hits.into_iter().skip((page - 1) * 30).take(30).collect();
    ok(json!({"results": results, "total": total}))
}

// ---- contacts, agents, companies, groups, fields ---------------------------------------------------------

async fn list_contacts(State(sim): State<FreshdeskSim>, Query(q): Q) -> ApiResult {
    let (page, per_page) = paging(&q, u32::MAX)?;
    let st = sim.lock();
    let email = q.get("email");
    let list: Vec<_> = st.contacts.values().filter(|c| email.is_none_or(|e| c.email.eq_ignore_ascii_case(e))).collect();
    Ok(page_response(&sim, "/api/v2/contacts", &q, &list, page, per_page, |c| st.contact_json(c)))
}

async fn create_contact(State(sim): State<FreshdeskSim>, body: Bytes) -> ApiResult {
    let (v, _) = read_body(&HeaderMap::new(), &body)?;
    let mut st = sim.lock();
    let id = st.create_contact(&v)?;
    created(st.contact_json(&st.contacts[&id]))
}

async fn show_contact(State(sim): State<FreshdeskSim>, Path(id): Path<String>) -> ApiResult {
    let id = parse_id(&id)?;
    let st = sim.lock();
    ok(st.contact_json(st.contacts.get(&id).ok_or_else(ApiError::not_found)?))
}

async fn list_agents(State(sim): State<FreshdeskSim>, Query(q): Q) -> ApiResult {
    let (page, per_page) = paging(&q, u32::MAX)?;
    let st = sim.lock();
    let email = q.get("email");
    let list: Vec<_> = st.agents.values().filter(|a| email.is_none_or(|e| a.email.eq_ignore_ascii_case(e))).collect();
    Ok(page_response(&sim, "/api/v2/agents", &q, &list, page, per_page, |a| st.agent_json(a)))
}

async fn show_agent(State(sim): State<FreshdeskSim>, Path(id): Path<String>) -> ApiResult {
    let id = parse_id(&id)?;
    let st = sim.lock();
    ok(st.agent_json(st.agents.get(&id).ok_or_else(ApiError::not_found)?))
}

async fn create_company(State(sim): State<FreshdeskSim>, body: Bytes) -> ApiResult {
    let (v, _) = read_body(&HeaderMap::new(), &body)?;
    let mut st = sim.lock();
    let id = st.create_company(&v)?;
    created(st.company_json(&st.companies[&id]))
}

async fn show_company(State(sim): State<FreshdeskSim>, Path(id): Path<String>) -> ApiResult {
    let id = parse_id(&id)?;
    let st = sim.lock();
    ok(st.company_json(st.companies.get(&id).ok_or_else(ApiError::not_found)?))
}

async fn autocomplete_companies(State(sim): State<FreshdeskSim>, Query(q): Q) -> ApiResult {
    let name = q.get("name").map(|n| n.to_lowercase()).ok_or_else(|| ApiError::invalid("name", "It should not be blank", "missing_field"))?;
    let st = sim.lock();
    let hits: Vec<Value> = st.companies.values().filter(|c| c.name.to_lowercase().starts_with(&name)).map(|c| json!({"id": c.id, "name": c.name})).collect();
    ok(json!({"companies": hits}))
}

async fn list_companies(State(sim): State<FreshdeskSim>, Query(q): Q) -> ApiResult {
    let (page, per_page) = paging(&q, u32::MAX)?;
    let st = sim.lock();
    let list: Vec<_> = st.companies.values().collect();
    Ok(page_response(&sim, "/api/v2/companies", &q, &list, page, per_page, |c| st.company_json(c)))
}

async fn list_groups(State(sim): State<FreshdeskSim>, Query(q): Q) -> ApiResult {
    let (page, per_page) = paging(&q, u32::MAX)?;
    let st = sim.lock();
    let list: Vec<_> = st.groups.values().collect();
    Ok(page_response(&sim, "/api/v2/groups", &q, &list, page, per_page, |g| st.group_json(g)))
}

async fn create_group(State(sim): State<FreshdeskSim>, body: Bytes) -> ApiResult {
    let (v, _) = read_body(&HeaderMap::new(), &body)?;
    let mut st = sim.lock();
    let id = st.create_group(&v)?;
    created(st.group_json(&st.groups[&id]))
}

async fn list_fields(State(sim): State<FreshdeskSim>) -> ApiResult {
    let st = sim.lock();
    ok(st.fields.iter().map(|f| st.field_json(f)).collect())
}

async fn download(State(sim): State<FreshdeskSim>, Path(token): Path<String>) -> ApiResult {
    if sim.inner.faults.get().attachments_404 {
        return Err(ApiError::not_found());
    }
    let (data, ctype, name) = {
        let st = sim.lock();
        let id = st.att_by_token.get(&token).ok_or_else(ApiError::not_found)?;
        let a = &st.attachments[id];
        (a.data.clone(), a.content_type.clone(), a.name.clone())
    };
    let ctype = HeaderValue::from_str(&ctype).unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let disp = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", name.replace('"', ""))).unwrap_or(HeaderValue::from_static("attachment"));
    Ok(([(header::CONTENT_TYPE, ctype), (header::CONTENT_DISPOSITION, disp)], data.bytes()).into_response())
}

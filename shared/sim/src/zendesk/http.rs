//! The axum router: handlers for every endpoint of the subset, plus the middleware that counts requests,
//! checks Basic auth, enforces the rate limits and adds latency.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Value};

use super::model::{b64, unb64, ApiError};
use super::ZendeskSim;

type Q = Query<HashMap<String, String>>;
type ApiResult = Result<Response, ApiError>;

pub(crate) fn router(sim: ZendeskSim) -> Router {
    let body_limit = usize::try_from(
        sim.inner
            .cfg
            .max_attachment_bytes
            .saturating_add(1024 * 1024),
    )
    .unwrap_or(usize::MAX);
    let mut r = Router::new();
    let routes: Vec<(&str, MethodRouter<ZendeskSim>)> = vec![
        ("/api/v2/incremental/tickets/cursor", get(export)),
        ("/api/v2/tickets", get(list_tickets)),
        (
            "/api/v2/tickets/{id}",
            get(show_ticket).put(put_ticket).delete(delete_ticket),
        ),
        ("/api/v2/tickets/{id}/comments", get(list_comments)),
        ("/api/v2/imports/tickets", post(import_ticket)),
        ("/api/v2/imports/tickets/create_many", post(import_many)),
        ("/api/v2/job_statuses/{id}", get(show_job)),
        ("/api/v2/uploads", post(upload)),
        ("/api/v2/users", get(list_users)),
        ("/api/v2/users/show_many", get(users_show_many)),
        (
            "/api/v2/users/create_or_update",
            post(user_create_or_update),
        ),
        ("/api/v2/users/{id}", get(show_user)),
        ("/api/v2/organizations", get(list_orgs)),
        ("/api/v2/organizations/show_many", get(orgs_show_many)),
        (
            "/api/v2/organizations/create_or_update",
            post(org_create_or_update),
        ),
        ("/api/v2/groups", get(list_groups).post(create_group)),
        ("/api/v2/ticket_fields", get(list_fields)),
    ];
    for (path, mr) in routes {
        // "{id}.json" is handled by trimming the suffix in the handler; static paths get an explicit twin.
        if !path.ends_with('}') {
            r = r.route(&format!("{path}.json"), mr.clone());
        }
        r = r.route(path, mr);
    }
    r = r
        .route("/attachments/token/{token}", get(download))
        .route("/attachments/token/{token}/", get(download));
    r.layer(from_fn_with_state(sim.clone(), middleware))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(sim)
}

fn retry_response(limit: u32, secs: u64) -> Response {
    let mut resp = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({"error": "APIRateLimitExceeded", "description": format!("Rate limit exceeded; retry after {secs} seconds")})),
    )
        .into_response();
    let h = resp.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    h.insert("x-rate-limit", HeaderValue::from(limit));
    h.insert("x-rate-limit-remaining", HeaderValue::from(0u32));
    resp
}

const UNLIMITED: u32 = 1_000_000;

async fn middleware(State(sim): State<ZendeskSim>, req: Request, next: Next) -> Response {
    let latency = sim.inner.cfg.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().trim_end_matches(".json").to_string());
    let route = route.unwrap_or_else(|| req.uri().path().to_string());
    let route = route.trim_end_matches('/').to_string();
    let key = format!("{} {}", req.method(), route);
    let is_attachment = route.starts_with("/attachments/");
    let is_export = route.starts_with("/api/v2/incremental/");
    let cfg = &sim.inner.cfg;

    let authorized = match (&cfg.credentials, is_attachment) {
        (Some((email, token)), false) => {
            let expected = format!("{email}/token:{token}");
            req.headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Basic "))
                .and_then(|v| {
                    base64::engine::general_purpose::STANDARD
                        .decode(v.trim())
                        .ok()
                })
                .is_some_and(|d| d == expected.as_bytes())
        }
        _ => true,
    };

    let limit = cfg.rate_limit_per_minute.unwrap_or(UNLIMITED);
    let remaining;
    {
        let mut st = sim.lock();
        st.stats.requests_total += 1;
        *st.stats.per_route.entry(key.clone()).or_default() += 1;
        if !authorized {
            drop(st);
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "Couldn't authenticate you"})),
            )
                .into_response();
        }
        if !is_attachment {
            let now = std::time::Instant::now();
            let mut blocked: Option<(u32, u64)> = None;
            if let Some(l) = cfg.rate_limit_per_minute {
                if let Err(secs) = st.rate.check(l, now) {
                    blocked = Some((l, secs));
                }
            }
            if blocked.is_none() && is_export {
                if let Some(l) = cfg.export_rate_limit_per_minute {
                    if let Err(secs) = st.export_rate.check(l, now) {
                        blocked = Some((l, secs));
                    }
                }
            }
            if let Some((l, secs)) = blocked {
                st.stats.throttled += 1;
                drop(st);
                return retry_response(l, secs);
            }
            st.rate.count += 1;
            if is_export {
                st.export_rate.count += 1;
            }
        }
        remaining = cfg
            .rate_limit_per_minute
            .map(|l| l.saturating_sub(st.rate.count))
            .unwrap_or(UNLIMITED);
    }
    if !is_attachment {
        let throttled = |secs| crate::faults::throttled(secs, json!({"error": "APIRateLimitExceeded", "description": "injected 429 storm"}));
        if let Some(resp) = sim.inner.faults.intercept(throttled).await {
            return resp;
        }
    }
    let mut resp = next.run(req).await;
    if !is_attachment {
        if sim.inner.faults.take_lost_answer(&key) {
            // Processed above; only the answer is lost.
            return crate::faults::FaultSwitch::lost_answer();
        }
        resp = sim.inner.faults.rewrite(resp).await;
    }
    let h = resp.headers_mut();
    // The account's own clock (which may be skewed from ours by `clock_offset_secs`), as real servers send it.
    if let Some(v) = crate::faults::http_date(sim.now_ms()) {
        h.insert(header::DATE, v);
    }
    h.insert("x-rate-limit", HeaderValue::from(limit));
    h.insert("x-rate-limit-remaining", HeaderValue::from(remaining));
    resp
}

fn parse_id(raw: &str) -> Result<u64, ApiError> {
    raw.trim_end_matches(".json")
        .parse()
        .map_err(|_| ApiError::not_found())
}

fn parse_body(body: &Bytes, key: &str) -> Result<Value, ApiError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("invalid JSON: {e}")))?;
    match v.get(key) {
        Some(inner @ Value::Object(_)) => Ok(inner.clone()),
        _ => Err(ApiError::bad(format!("expected a {key:?} object"))),
    }
}

fn page_size(q: &HashMap<String, String>, default: usize, max: usize) -> Result<usize, ApiError> {
    match q.get("page[size]").or_else(|| q.get("per_page")) {
        None => Ok(default),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad(format!(
                "page size must be between 1 and {max}"
            ))),
        },
    }
}

fn ok(v: Value) -> ApiResult {
    Ok((StatusCode::OK, Json(v)).into_response())
}

async fn export(State(sim): State<ZendeskSim>, Query(q): Q) -> ApiResult {
    let base = sim.base_url();
    let now_ms = sim.now_ms();
    let lag_ms = sim.inner.cfg.publication_lag.as_millis() as i64;
    let per_page = match q.get("per_page") {
        None => 1000,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => return Err(ApiError::bad("per_page must be between 1 and 1000")),
        },
    };
    let after: (i64, u64) = if let Some(c) = q.get("cursor") {
        unb64(c)
            .and_then(|s| {
                let (a, b) = s.split_once('|')?;
                Some((a.parse().ok()?, b.parse().ok()?))
            })
            .ok_or_else(|| ApiError::bad("cursor is invalid"))?
    } else if let Some(s) = q.get("start_time") {
        let st: i64 = s
            .parse()
            .map_err(|_| ApiError::bad("start_time must be a Unix time in seconds"))?;
        if st * 1000 > now_ms - lag_ms {
            return Err(ApiError::bad(format!(
                "start_time {st} is too recent: it must be at least {} seconds in the past",
                lag_ms / 1000
            )));
        }
        (st, 0)
    } else {
        return Err(ApiError::bad("start_time or cursor is required"));
    };
    let st = sim.lock();
    let (page, end) = st.export(after, per_page, now_ms, lag_ms);
    let pos = page.last().map(|t| (t.updated_at, t.id)).unwrap_or(after);
    let mut tickets: Vec<Value> = page
        .iter()
        .map(|t| st.ticket_json(&base, t, true))
        .collect();
    let listed: Vec<(u64, bool)> = page.iter().map(|t| (t.id, t.deleted)).collect();
    drop(st);
    let faults = sim.faults();
    if faults.repeat_records {
        let again: Vec<Value> = tickets.iter().take(2).cloned().collect();
        tickets.extend(again);
    }
    // Deleted right after being listed: the fetch that follows finds them gone.
    let now = sim.now_secs();
    sim.inner.faults.delete_listed(listed.into_iter().filter(|(_, deleted)| !deleted).map(|(id, _)| id), |id| sim.lock().delete_ticket(id, now).is_ok());
    let cursor = b64(&format!("{}|{}", pos.0, pos.1));
    ok(json!({
        "tickets": tickets,
        "after_cursor": cursor,
        "after_url": format!("{base}/api/v2/incremental/tickets/cursor.json?cursor={cursor}"),
        "before_cursor": null,
        "before_url": null,
        "end_of_stream": end,
    }))
}

/// Cursor pagination over an ordered list of ids; returns (page ids, meta, links).
fn paginate(
    ids: &[u64],
    q: &HashMap<String, String>,
    url: &str,
) -> Result<(Vec<u64>, Value, Value), ApiError> {
    let size = page_size(q, 100, 100)?;
    let start = match q.get("page[after]") {
        None => 0,
        Some(c) => {
            let after: u64 = unb64(c)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| ApiError::bad("page[after] is invalid"))?;
            ids.iter()
                .position(|i| *i == after)
                .map(|p| p + 1)
                .unwrap_or(ids.len())
        }
    };
    let page: Vec<u64> = ids.iter().skip(start).take(size).copied().collect();
    let has_more = start + page.len() < ids.len();
    let after = page.last().map(|i| b64(&i.to_string()));
    let before = page.first().map(|i| b64(&i.to_string()));
    let sep = if url.contains('?') { '&' } else { '?' };
    let next = match (&after, has_more) {
        (Some(a), true) => json!(format!(
            "{url}{sep}page%5Bsize%5D={size}&page%5Bafter%5D={a}"
        )),
        _ => Value::Null,
    };
    Ok((
        page,
        json!({"has_more": has_more, "after_cursor": after, "before_cursor": before}),
        json!({"next": next, "prev": null}),
    ))
}

async fn list_tickets(State(sim): State<ZendeskSim>, Query(q): Q) -> ApiResult {
    let base = sim.base_url();
    let st = sim.lock();
    let ext = q.get("external_id");
    let ids: Vec<u64> = st
        .tickets
        .values()
        .filter(|t| !t.deleted && ext.is_none_or(|e| t.external_id.as_ref() == Some(e)))
        .map(|t| t.id)
        .collect();
    let url = match ext {
        Some(e) => format!(
            "{base}/api/v2/tickets.json?external_id={}",
            super::model::encode_query(e)
        ),
        None => format!("{base}/api/v2/tickets.json"),
    };
    let (page, meta, links) = paginate(&ids, &q, &url)?;
    let tickets: Vec<Value> = page
        .iter()
        .map(|id| st.ticket_json(&base, &st.tickets[id], false))
        .collect();
    let count = ids.len();
    drop(st);
    ok(json!({"tickets": tickets, "meta": meta, "links": links, "count": count}))
}

async fn show_ticket(State(sim): State<ZendeskSim>, Path(id): Path<String>) -> ApiResult {
    let id = parse_id(&id)?;
    let base = sim.base_url();
    let st = sim.lock();
    let t = st.live_ticket(id)?;
    ok(json!({"ticket": st.ticket_json(&base, t, false)}))
}

async fn put_ticket(
    State(sim): State<ZendeskSim>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    let id = parse_id(&id)?;
    let patch = parse_body(&body, "ticket")?;
    let base = sim.base_url();
    let now = sim.now_secs();
    let ext = sim.lock().tickets.get(&id).and_then(|t| t.external_id.clone());
    if let Some(fault) = sim.write_fault(ext.as_deref()) {
        return Err(injected(fault));
    }
    let mut st = sim.lock();
    let (_, cid) = st.update_ticket(id, &patch, &base, now)?;
    let audit = st.audit_json(&base, id, cid, now);
    let t = st.live_ticket(id)?;
    ok(json!({"ticket": st.ticket_json(&base, t, false), "audit": audit}))
}

async fn delete_ticket(State(sim): State<ZendeskSim>, Path(id): Path<String>) -> ApiResult {
    let id = parse_id(&id)?;
    let now = sim.now_secs();
    sim.lock().delete_ticket(id, now)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_comments(
    State(sim): State<ZendeskSim>,
    Path(id): Path<String>,
    Query(q): Q,
) -> ApiResult {
    let id = parse_id(&id)?;
    let base = sim.base_url();
    let st = sim.lock();
    let t = st.live_ticket(id)?;
    let ids: Vec<u64> = t.comments.iter().map(|c| c.id).collect();
    let mut url = format!("{base}/api/v2/tickets/{id}/comments.json");
    if let Some(inc) = q.get("include") {
        url.push_str(&format!("?include={}", super::model::encode_query(inc)));
    }
    let (page, meta, links) = paginate(&ids, &q, &url)?;
    let comments: Vec<_> = t.comments.iter().filter(|c| page.contains(&c.id)).collect();
    let mut out = json!({
        "comments": comments.iter().map(|c| st.comment_json(&base, c)).collect::<Vec<_>>(),
        "meta": meta,
        "links": links,
        "count": ids.len(),
    });
    let include_users = q
        .get("include")
        .is_some_and(|i| i.split(',').any(|x| x.trim() == "users"));
    if include_users {
        let mut authors: Vec<u64> = comments.iter().map(|c| c.author_id).collect();
        authors.sort_unstable();
        authors.dedup();
        out["users"] = authors
            .iter()
            .filter_map(|a| st.users.get(a))
            .map(|u| st.user_json(u))
            .collect();
    }
    ok(out)
}

async fn import_ticket(State(sim): State<ZendeskSim>, body: Bytes) -> ApiResult {
    let ticket = parse_body(&body, "ticket")?;
    if let Some(fault) = sim.write_fault(ticket.get("external_id").and_then(Value::as_str)) {
        return Err(injected(fault));
    }
    let base = sim.base_url();
    let now = sim.now_secs();
    let mut st = sim.lock();
    let id = st.import_ticket(&ticket, &base, now)?;
    let t = st.live_ticket(id)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"ticket": st.ticket_json(&base, t, false)})),
    )
        .into_response())
}

/// Most tickets one bulk import takes.
const MAX_BULK_IMPORT: usize = 100;

/// Ticket Bulk Import: queues a job importing each ticket as `POST imports/tickets` would; per-ticket errors
/// land in the job's results, not in this answer.
async fn import_many(State(sim): State<ZendeskSim>, body: Bytes) -> ApiResult {
    let v: Value = serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("invalid JSON: {e}")))?;
    let Some(tickets) = v.get("tickets").and_then(Value::as_array) else {
        return Err(ApiError::bad("expected a \"tickets\" array"));
    };
    if tickets.is_empty() || tickets.len() > MAX_BULK_IMPORT {
        return Err(ApiError::bad(format!("tickets: between 1 and {MAX_BULK_IMPORT} tickets, got {}", tickets.len())));
    }
    if let Some(bad) = tickets.iter().position(|t| !t.is_object()) {
        return Err(ApiError::bad(format!("tickets[{bad}] is not an object")));
    }
    let base = sim.base_url();
    let delay = sim.inner.cfg.job_delay;
    let id = sim.lock().queue_import_job(tickets.clone());
    if delay.is_zero() {
        run_job(&sim, &id, &base);
    } else {
        let (sim, id, base) = (sim.clone(), id.clone(), base.clone());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            run_job(&sim, &id, &base);
        });
    }
    // The answer shows the job as queued even when it already ran: clients must poll, as on Zendesk.
    let st = sim.lock();
    let mut job = st.job_json(&base, &id).ok_or_else(ApiError::not_found)?;
    job["status"] = json!("queued");
    job["progress"] = json!(0);
    if let Some(o) = job.as_object_mut() {
        o.remove("results");
        o.remove("message");
    }
    Ok(Json(json!({ "job_status": job })).into_response())
}

fn run_job(sim: &ZendeskSim, id: &str, base: &str) {
    let now = sim.now_secs();
    let mut st = sim.lock();
    st.run_import_job(id, base, now, |ext| sim.write_fault(ext));
}

async fn show_job(State(sim): State<ZendeskSim>, Path(id): Path<String>) -> ApiResult {
    let id = id.trim_end_matches(".json");
    let base = sim.base_url();
    let job = sim.lock().job_json(&base, id).ok_or_else(ApiError::not_found)?;
    ok(json!({ "job_status": job }))
}

async fn upload(
    State(sim): State<ZendeskSim>,
    Query(q): Q,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let Some(name) = q.get("filename").filter(|n| !n.is_empty()) else {
        return Err(ApiError::bad("filename is required"));
    };
    if body.len() as u64 > sim.inner.cfg.max_attachment_bytes {
        return Ok((
            StatusCode::PAYLOAD_TOO_LARGE,
            Json(json!({"error": "AttachmentTooLarge", "description": "The attachment is too large"})),
        )
            .into_response());
    }
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or("application/octet-stream")
        .to_string();
    let base = sim.base_url();
    let now = sim.now();
    let mut st = sim.lock();
    let (token, att) = st.upload(name, &ctype, body, q.get("token").map(String::as_str));
    let all: Vec<Value> = st
        .uploads
        .get(&token)
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|a| st.attachment_json(&base, *a))
        .collect();
    let expires = (now + chrono::Duration::days(3))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    Ok((
        StatusCode::CREATED,
        Json(json!({"upload": {"token": token, "expires_at": expires, "attachment": st.attachment_json(&base, att), "attachments": all}})),
    )
        .into_response())
}

async fn download(State(sim): State<ZendeskSim>, Path(token): Path<String>) -> ApiResult {
    if sim.faults().attachments_404 {
        return Err(ApiError::not_found());
    }
    let (data, ctype, name) = {
        let st = sim.lock();
        let id = st
            .att_by_token
            .get(&token)
            .ok_or_else(ApiError::not_found)?;
        let a = &st.attachments[id];
        (a.data.clone(), a.content_type.clone(), a.file_name.clone())
    };
    let bytes = data.bytes();
    let ctype = HeaderValue::from_str(&ctype)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let disp = HeaderValue::from_str(&format!(
        "attachment; filename=\"{}\"",
        name.replace('"', "")
    ))
    .unwrap_or(HeaderValue::from_static("attachment"));
    Ok((
        [
            (header::CONTENT_TYPE, ctype),
            (header::CONTENT_DISPOSITION, disp),
        ],
        bytes,
    )
        .into_response())
}

fn parse_ids(q: &HashMap<String, String>) -> Result<Vec<u64>, ApiError> {
    let raw = q
        .get("ids")
        .ok_or_else(|| ApiError::bad("ids is required"))?;
    let ids: Vec<u64> = raw
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .map_err(|_| ApiError::bad(format!("{s:?} is not an id")))
        })
        .collect::<Result<_, _>>()?;
    if ids.len() > 100 {
        return Err(ApiError::bad("at most 100 ids"));
    }
    Ok(ids)
}

async fn show_user(State(sim): State<ZendeskSim>, Path(id): Path<String>) -> ApiResult {
    let id = parse_id(&id)?;
    let st = sim.lock();
    let u = st.users.get(&id).ok_or_else(ApiError::not_found)?;
    ok(json!({"user": st.user_json(u)}))
}

/// `GET /api/v2/users` with cursor pagination; `role` / `role[]` (repeatable) filter by role.
async fn list_users(State(sim): State<ZendeskSim>, Query(q): Q, axum::extract::RawQuery(raw): axum::extract::RawQuery) -> ApiResult {
    // Repeated keys are lost in a map, so `role[]` is read from the raw query (role names need no decoding).
    let roles: Vec<String> = raw
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| matches!(*k, "role" | "role[]" | "role%5B%5D" | "role%5b%5d"))
        .map(|(_, v)| v.replace('+', " ").replace("%2D", "-").replace("%2d", "-"))
        .collect();
    let base = sim.base_url();
    let st = sim.lock();
    let ids: Vec<u64> = st.users.values().filter(|u| roles.is_empty() || roles.contains(&u.role)).map(|u| u.id).collect();
    let (page, meta, links) = paginate(&ids, &q, &format!("{base}/api/v2/users.json"))?;
    let users: Vec<Value> = page.iter().map(|id| st.user_json(&st.users[id])).collect();
    ok(json!({"users": users, "meta": meta, "links": links}))
}

/// `GET /api/v2/organizations` with cursor pagination.
async fn list_orgs(State(sim): State<ZendeskSim>, Query(q): Q) -> ApiResult {
    let base = sim.base_url();
    let st = sim.lock();
    let ids: Vec<u64> = st.orgs.keys().copied().collect();
    let (page, meta, links) = paginate(&ids, &q, &format!("{base}/api/v2/organizations.json"))?;
    let orgs: Vec<Value> = page.iter().map(|id| st.org_json(&st.orgs[id])).collect();
    ok(json!({"organizations": orgs, "meta": meta, "links": links}))
}

async fn users_show_many(State(sim): State<ZendeskSim>, Query(q): Q) -> ApiResult {
    let ids = parse_ids(&q)?;
    let st = sim.lock();
    let users: Vec<Value> = ids
        .iter()
        .filter_map(|i| st.users.get(i))
        .map(|u| st.user_json(u))
        .collect();
    ok(json!({"users": users}))
}

async fn user_create_or_update(State(sim): State<ZendeskSim>, body: Bytes) -> ApiResult {
    let v = parse_body(&body, "user")?;
    let mut st = sim.lock();
    let (id, created) = st.create_or_update_user(&v)?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(json!({"user": st.user_json(&st.users[&id])}))).into_response())
}

async fn orgs_show_many(State(sim): State<ZendeskSim>, Query(q): Q) -> ApiResult {
    let ids = parse_ids(&q)?;
    let st = sim.lock();
    let orgs: Vec<Value> = ids
        .iter()
        .filter_map(|i| st.orgs.get(i))
        .map(|o| st.org_json(o))
        .collect();
    ok(json!({"organizations": orgs}))
}

async fn org_create_or_update(State(sim): State<ZendeskSim>, body: Bytes) -> ApiResult {
    let v = parse_body(&body, "organization")?;
    let mut st = sim.lock();
    let (id, created) = st.create_or_update_org(&v)?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        code,
        Json(json!({"organization": st.org_json(&st.orgs[&id])})),
    )
        .into_response())
}

async fn list_groups(State(sim): State<ZendeskSim>) -> ApiResult {
    let st = sim.lock();
    let groups: Vec<Value> = st.groups.values().map(|g| st.group_json(g)).collect();
    let n = groups.len();
    ok(json!({"groups": groups, "next_page": null, "previous_page": null, "count": n}))
}

async fn create_group(State(sim): State<ZendeskSim>, body: Bytes) -> ApiResult {
    let v = parse_body(&body, "group")?;
    let mut st = sim.lock();
    let id = st.create_group(&v)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"group": st.group_json(&st.groups[&id])})),
    )
        .into_response())
}

async fn list_fields(State(sim): State<ZendeskSim>) -> ApiResult {
    let st = sim.lock();
    let fields: Vec<Value> = st.fields.iter().map(|f| st.field_json(f)).collect();
    ok(json!({"ticket_fields": fields, "next_page": null, "count": fields.len()}))
}

fn injected((status, description): (u16, String)) -> ApiError {
    ApiError {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY),
        body: json!({"error": "RecordInvalid", "description": description}),
    }
}

//! The trigger API's use case: plain requests in, JSON or problem+json (RFC 9457) out. The `api` function
//! maps API Gateway events onto it; `infra/openapi.yaml` describes it.

use deltadesk_core::engine::plan::{plan_window, PlanOutcome};
use deltadesk_core::engine::report::build_report;
use deltadesk_core::engine::{runs, EngineError};
use deltadesk_core::window::RunKind;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::context::{Context, ContextError};
use crate::registry::{self, MigrationDef, RegistryError};

#[derive(Debug, Clone, PartialEq)]
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    pub body: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    pub status: u16,
    pub body: Value,
}

impl ApiResponse {
    pub fn content_type(&self) -> &'static str {
        if self.status >= 400 {
            "application/problem+json"
        } else {
            "application/json"
        }
    }
}

fn ok(status: u16, body: Value) -> ApiResponse {
    ApiResponse { status, body }
}

/// An RFC 9457 problem.
pub fn problem(status: u16, title: &str, detail: impl Into<String>) -> ApiResponse {
    let detail = detail.into();
    ApiResponse { status, body: json!({"type": "about:blank", "title": title, "status": status, "detail": detail}) }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunBody {
    #[serde(default = "delta")]
    kind: String,
    #[serde(default)]
    restart: bool,
}

fn delta() -> String {
    "delta".into()
}

pub async fn handle(ctx: &Context, req: &ApiRequest) -> ApiResponse {
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let m = req.method.to_ascii_uppercase();
    let result = match (m.as_str(), segments.as_slice()) {
        ("POST", ["migrations"]) => create(ctx, req.body.as_deref()).await,
        ("GET", ["migrations"]) => list(ctx).await,
        ("GET", ["migrations", id]) => show(ctx, id).await,
        ("POST", ["migrations", id, "runs"]) => start_run(ctx, id, req.body.as_deref()).await,
        ("GET", ["migrations", id, "runs", run]) => run_status(ctx, id, run).await,
        ("POST", ["migrations", id, "reset"]) => start(ctx, id, RunKind::Full, true).await,
        (_, ["migrations"]) | (_, ["migrations", _]) | (_, ["migrations", _, "runs"]) | (_, ["migrations", _, "runs", _]) | (_, ["migrations", _, "reset"]) => {
            Err(problem(405, "Method Not Allowed", format!("{} is not allowed on {}", req.method, req.path)))
        }
        _ => Err(problem(404, "Not Found", format!("no route {}", req.path))),
    };
    result.unwrap_or_else(|p| p)
}

type Handled = Result<ApiResponse, ApiResponse>;

fn registry_problem(e: RegistryError) -> ApiResponse {
    match e {
        RegistryError::Invalid(d) => problem(400, "Invalid migration", d),
        RegistryError::Exists(id) => problem(409, "Conflict", format!("migration {id} already exists")),
        RegistryError::NotFound(id) => problem(404, "Not Found", format!("no migration {id}")),
        RegistryError::State(e) => problem(503, "Service Unavailable", format!("state store: {e}")),
    }
}

fn context_problem(e: ContextError) -> ApiResponse {
    match e {
        ContextError::Registry(r) => registry_problem(r),
        other => problem(422, "Migration cannot run", other.to_string()),
    }
}

fn engine_problem(e: EngineError) -> ApiResponse {
    match e {
        EngineError::Refused(d) => problem(409, "Conflict", d),
        e if e.is_retryable() => problem(503, "Service Unavailable", e.to_string()),
        e => problem(500, "Internal Server Error", e.to_string()),
    }
}

async fn create(ctx: &Context, body: Option<&str>) -> Handled {
    let body = body.filter(|b| !b.trim().is_empty()).ok_or_else(|| problem(400, "Invalid migration", "a JSON body is required"))?;
    let def: MigrationDef = serde_json::from_str(body).map_err(|e| problem(400, "Invalid migration", format!("body: {e}")))?;
    let def = registry::create(ctx.backends.state.as_ref(), def, ctx.clock.now()).await.map_err(registry_problem)?;
    Ok(ok(201, serde_json::to_value(&def).unwrap_or_default()))
}

async fn list(ctx: &Context) -> Handled {
    let defs = registry::list(ctx.backends.state.as_ref()).await.map_err(registry_problem)?;
    Ok(ok(200, json!({"migrations": defs})))
}

async fn show(ctx: &Context, id: &str) -> Handled {
    let def = registry::get(ctx.backends.state.as_ref(), id).await.map_err(registry_problem)?;
    let engine = ctx.engine(id).await.map_err(context_problem)?;
    let (mig, _) = runs::load_migration(&engine).await.map_err(|e| engine_problem(e.into()))?;
    let retries = runs::pending_retries(&engine).await.map_err(|e| engine_problem(e.into()))?;
    Ok(ok(
        200,
        json!({"migration": def, "watermark": mig.watermark, "full_reference": mig.full_reference, "open_run": mig.open_run, "last_run": mig.last_run, "awaiting_retry": retries.len()}),
    ))
}

async fn start_run(ctx: &Context, id: &str, body: Option<&str>) -> Handled {
    let body = body.filter(|b| !b.trim().is_empty()).unwrap_or("{}");
    let rb: RunBody = serde_json::from_str(body).map_err(|e| problem(400, "Invalid run request", format!("body: {e}")))?;
    let kind = match rb.kind.as_str() {
        "delta" => RunKind::Delta,
        "full" => RunKind::Full,
        other => return Err(problem(400, "Invalid run request", format!("kind {other:?} must be \"full\" or \"delta\""))),
    };
    if rb.restart && kind == RunKind::Delta {
        return Err(problem(400, "Invalid run request", "restart applies only to a full run"));
    }
    start(ctx, id, kind, rb.restart).await
}

async fn start(ctx: &Context, id: &str, kind: RunKind, restart: bool) -> Handled {
    registry::validate_id(id).map_err(registry_problem)?;
    let engine = ctx.engine(id).await.map_err(context_problem)?;
    if kind == RunKind::Full {
        // A full run is where bad credentials would otherwise surface as thousands of failed tickets.
        deltadesk_core::engine::plan::preflight(&engine).await.map_err(|e| problem(422, "Migration cannot run", e.to_string()))?;
    }
    let outcome = plan_window(&engine, kind, restart).await.map_err(engine_problem)?;
    Ok(match outcome {
        PlanOutcome::Started(r) => ok(202, json!({"run_id": r.run_id, "status": "started", "kind": r.kind, "window": r.window})),
        PlanOutcome::Resumed(r) => ok(202, json!({"run_id": r.run_id, "status": "already running", "kind": r.kind, "window": r.window})),
        PlanOutcome::UpToDate { watermark } => ok(200, json!({"run_id": null, "status": "up to date", "watermark": watermark})),
    })
}

async fn run_status(ctx: &Context, id: &str, run: &str) -> Handled {
    let engine = ctx.engine(id).await.map_err(context_problem)?;
    if run.is_empty() || !run.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(problem(400, "Invalid run id", format!("{run:?} is not a run id")));
    }
    match runs::load_run(&engine, run).await {
        Ok(Some((r, _))) if r.migration == id => {}
        Ok(_) => return Err(problem(404, "Not Found", format!("no run {run} in migration {id}"))),
        Err(e) => return Err(engine_problem(e.into())),
    }
    let report = build_report(&engine, run).await.map_err(engine_problem)?;
    Ok(ok(200, serde_json::to_value(&report).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use super::*;
    use crate::context::{Backends, StaticSecrets};

    fn ctx(dir: &std::path::Path) -> Context {
        let q = |n: &str| -> Arc<dyn deltadesk_core::ports::Queue> {
            Arc::new(deltadesk_local::SqliteQueue::open(&dir.join("q.sqlite"), n, deltadesk_local::Redrive { max_receives: 5 }).unwrap())
        };
        Context::new(Backends {
            state: Arc::new(deltadesk_local::SqliteState::open(&dir.join("s.sqlite")).unwrap()),
            blobs: Arc::new(deltadesk_local::FsBlobs::new(dir.join("b"))),
            fetch_queue: q("fetch"),
            write_queue: q("write"),
            secrets: Arc::new(StaticSecrets(HashMap::from([
                ("deltadesk/acme".to_string(), HashMap::from([("SRC".to_string(), "t0ken".to_string())])),
                ("deltadesk/wrong".to_string(), HashMap::from([("SRC".to_string(), "not-the-token".to_string())])),
            ]))),
            secret_prefix: "deltadesk/".into(),
        })
    }

    fn req(method: &str, path: &str, body: Option<&str>) -> ApiRequest {
        ApiRequest { method: method.into(), path: path.into(), body: body.map(str::to_string) }
    }

    /// A source simulator that wants the token kept in the migration's secret, and an empty target.
    async fn sims() -> (deltadesk_sim::zendesk::ZendeskSim, deltadesk_sim::zendesk::ZendeskSim) {
        use deltadesk_sim::zendesk::{ZendeskSim, ZendeskSimConfig};
        let local = "127.0.0.1:0".parse().unwrap();
        let s = ZendeskSim::start(ZendeskSimConfig { tickets: 2, credentials: Some(("a@acme.test".into(), "t0ken".into())), ..Default::default() }, local).await.unwrap();
        let t = ZendeskSim::start(ZendeskSimConfig::empty_target(900_000), local).await.unwrap();
        (s, t)
    }

    fn acme(s: &deltadesk_sim::zendesk::ZendeskSim, t: &deltadesk_sim::zendesk::ZendeskSim) -> String {
        format!(
            r#"{{"id":"acme","source":{{"kind":"zendesk","base_url":"{}","email":"a@acme.test","token_env":"SRC"}},"target":{{"kind":"zendesk","base_url":"{}"}}}}"#,
            s.base_url(),
            t.base_url()
        )
    }

    /// Every operation `infra/openapi.yaml` describes is routed (none answers 404 "no route" or 405).
    #[tokio::test]
    async fn every_documented_operation_is_routed() {
        let spec = std::fs::read_to_string(format!("{}/../../infra/openapi.yaml", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let d = tempfile::tempdir().unwrap();
        let c = ctx(d.path());
        let (s, t) = sims().await;
        let acme = acme(&s, &t);
        handle(&c, &req("POST", "/migrations", Some(&acme))).await;
        let mut path = String::new();
        let mut checked = 0;
        for line in spec.lines() {
            if let Some(p) = line.strip_prefix("  /").and_then(|l| l.strip_suffix(':')) {
                path = format!("/{p}").replace("{id}", "acme").replace("{run}", "full-19700101T000000-deadbeef");
            } else if let Some(m) = ["get", "post", "put", "delete", "patch"].iter().find(|m| line == format!("    {m}:")) {
                let r = handle(&c, &req(&m.to_uppercase(), &path, Some("{}"))).await;
                let no_route = r.status == 405 || (r.status == 404 && r.body["detail"].as_str().unwrap_or_default().starts_with("no route"));
                assert!(!no_route, "{m} {path} is documented but not routed: {:?}", r.body);
                checked += 1;
            }
        }
        assert_eq!(checked, 6, "the spec's operations changed; update this test");
    }

    #[tokio::test]
    async fn create_list_show_and_conflicts() {
        let d = tempfile::tempdir().unwrap();
        let c = ctx(d.path());
        let (s, t) = sims().await;
        let acme = acme(&s, &t);
        let r = handle(&c, &req("POST", "/migrations", Some(&acme))).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        assert_eq!(handle(&c, &req("POST", "/migrations", Some(&acme))).await.status, 409);
        let r = handle(&c, &req("GET", "/migrations", None)).await;
        assert_eq!(r.body["migrations"].as_array().unwrap().len(), 1);
        let r = handle(&c, &req("GET", "/migrations/acme", None)).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert!(r.body["watermark"].is_null());
        assert_eq!(handle(&c, &req("GET", "/migrations/nope", None)).await.status, 404);
    }

    #[tokio::test]
    async fn bad_requests_get_problems_naming_the_cause() {
        let d = tempfile::tempdir().unwrap();
        let c = ctx(d.path());
        let (s, t) = sims().await;
        let acme = acme(&s, &t);
        let r = handle(&c, &req("POST", "/migrations", Some("{not json"))).await;
        assert_eq!(r.status, 400);
        assert_eq!(r.content_type(), "application/problem+json");
        assert!(r.body["detail"].as_str().unwrap().contains("body"), "{:?}", r.body);
        let r = handle(&c, &req("POST", "/migrations", Some(&acme.replace("\"acme\"", "\"ac me\"")))).await;
        assert_eq!(r.status, 400);
        assert!(r.body["detail"].as_str().unwrap().contains("ac me"));
        let r = handle(&c, &req("POST", "/migrations", Some(&acme.replace("\"kind\":\"zendesk\"", "\"kind\":\"kayako\"")))).await;
        assert_eq!(r.status, 400);
        assert!(r.body["detail"].as_str().unwrap().contains("kayako"), "{:?}", r.body);
        assert_eq!(handle(&c, &req("DELETE", "/migrations", None)).await.status, 405);
        assert_eq!(handle(&c, &req("GET", "/elsewhere", None)).await.status, 404);
        handle(&c, &req("POST", "/migrations", Some(&acme))).await;
        let r = handle(&c, &req("POST", "/migrations/acme/runs", Some(r#"{"kind":"sideways"}"#))).await;
        assert_eq!(r.status, 400);
        assert!(r.body["detail"].as_str().unwrap().contains("sideways"));
        let r = handle(&c, &req("GET", "/migrations/acme/runs/..%2f", None)).await;
        assert_eq!(r.status, 400);
    }

    #[tokio::test]
    async fn runs_start_with_202_and_report_their_status() {
        let d = tempfile::tempdir().unwrap();
        let c = ctx(d.path());
        let (s, t) = sims().await;
        let acme = acme(&s, &t);
        handle(&c, &req("POST", "/migrations", Some(&acme))).await;
        let r = handle(&c, &req("POST", "/migrations/acme/runs", Some(r#"{"kind":"delta"}"#))).await;
        assert_eq!(r.status, 409, "a delta before any full read: {:?}", r.body);
        let r = handle(&c, &req("POST", "/migrations/acme/runs", Some(r#"{"kind":"full"}"#))).await;
        assert_eq!(r.status, 202, "{:?}", r.body);
        let run = r.body["run_id"].as_str().unwrap().to_string();
        let again = handle(&c, &req("POST", "/migrations/acme/runs", Some(r#"{"kind":"full"}"#))).await;
        assert_eq!(again.body["status"], "already running");
        assert_eq!(again.body["run_id"], run.as_str());
        let s = handle(&c, &req("GET", &format!("/migrations/acme/runs/{run}"), None)).await;
        assert_eq!(s.status, 200, "{:?}", s.body);
        assert_eq!(s.body["status"], "open");
        let reset = handle(&c, &req("POST", "/migrations/acme/reset", None)).await;
        assert_eq!(reset.status, 202);
        assert_ne!(reset.body["run_id"], run.as_str(), "reset starts the full read over");
        assert_eq!(handle(&c, &req("GET", "/migrations/acme/runs/full-19700101T000000-deadbeef", None)).await.status, 404);
    }

    /// A full run whose source refuses the credentials is refused up front (422 naming the cause), and one
    /// whose secret lacks the token cannot be built (422 naming the missing key).
    #[tokio::test]
    async fn full_runs_with_bad_or_missing_credentials_are_refused_before_they_start() {
        let d = tempfile::tempdir().unwrap();
        let c = ctx(d.path());
        let (s, t) = sims().await;
        for id in ["wrong", "nosecret"] {
            let body = acme(&s, &t).replace("\"acme\"", &format!("\"{id}\""));
            assert_eq!(handle(&c, &req("POST", "/migrations", Some(&body))).await.status, 201);
        }
        let r = handle(&c, &req("POST", "/migrations/wrong/runs", Some(r#"{"kind":"full"}"#))).await;
        assert_eq!(r.status, 422, "{:?}", r.body);
        let detail = r.body["detail"].as_str().unwrap();
        assert!(detail.contains("cannot read the source") && detail.contains("credentials"), "{detail}");
        assert!(!detail.contains("not-the-token"), "secrets never in answers: {detail}");
        let r = handle(&c, &req("POST", "/migrations/nosecret/runs", Some(r#"{"kind":"full"}"#))).await;
        assert_eq!(r.status, 422, "{:?}", r.body);
        assert!(r.body["detail"].as_str().unwrap().contains("SRC"), "{:?}", r.body);
    }
}

//! The scheduler's use case: recurring deltas (EventBridge schedule), reruns (CloudWatch alarm state
//! changes delivered by EventBridge, or an alarm's direct Lambda action) and on-demand runs.

use aws_lambda_events::cloudwatch_alarms::CloudWatchAlarm;
use aws_lambda_events::eventbridge::EventBridgeEvent;
use deltadesk_core::engine::plan::{ensure_progress, plan_window, PlanOutcome};
use deltadesk_core::engine::runs;
use deltadesk_core::window::RunKind;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::context::{Context, ContextError};
use crate::registry;

/// What the scheduler was asked to do.
#[derive(Debug, Clone, PartialEq)]
pub enum SchedulerRequest {
    /// A tick of the delta schedule: plan the next delta of every enabled migration.
    PlanDeltas,
    /// An alarm went off: redrive dead letters and re-enqueue the remaining work of every open run.
    Rerun { alarm: String },
    /// An alarm left the ALARM state: nothing to do.
    AlarmCleared { alarm: String },
    /// A run asked for directly (`{"action":"run","migration":"acme","kind":"delta"}`).
    Run { migration: String, kind: RunKind, restart: bool },
}

/// The `detail` of an EventBridge "CloudWatch Alarm State Change" event (fields deltadesk reads).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmStateChange {
    pub alarm_name: String,
    pub state: AlarmState,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AlarmState {
    pub value: String,
}

#[derive(Debug, Clone, Deserialize)]
struct RunRequest {
    migration: String,
    #[serde(default = "delta")]
    kind: String,
    #[serde(default)]
    restart: bool,
}

fn delta() -> String {
    "delta".into()
}

/// Tells the event shapes apart. Unknown shapes are an error naming what was received (never a silent no-op).
pub fn classify(event: &Value) -> Result<SchedulerRequest, String> {
    let detail_type = event.get("detail-type").and_then(Value::as_str);
    if detail_type == Some("CloudWatch Alarm State Change") {
        let ev: EventBridgeEvent<AlarmStateChange> = serde_json::from_value(event.clone()).map_err(|e| format!("malformed alarm state change event: {e}"))?;
        return Ok(alarm_request(ev.detail.alarm_name, &ev.detail.state.value));
    }
    if event.get("alarmData").is_some() {
        // An alarm's direct Lambda action.
        let ev: CloudWatchAlarm = serde_json::from_value(event.clone()).map_err(|e| format!("malformed CloudWatch alarm event: {e}"))?;
        let name = ev.alarm_data.alarm_name;
        let state = ev.alarm_data.state.as_ref().map(|s| format!("{:?}", s.value).to_uppercase()).unwrap_or_default();
        return Ok(alarm_request(name, &state));
    }
    if detail_type == Some("Scheduled Event") || event.get("source").and_then(Value::as_str) == Some("deltadesk.schedule") {
        return Ok(SchedulerRequest::PlanDeltas);
    }
    if event.get("action").and_then(Value::as_str) == Some("run") {
        let r: RunRequest = serde_json::from_value(event.clone()).map_err(|e| format!("malformed run request: {e}"))?;
        let kind = match r.kind.as_str() {
            "delta" => RunKind::Delta,
            "full" => RunKind::Full,
            other => return Err(format!("unknown run kind {other:?} (use \"full\" or \"delta\")")),
        };
        return Ok(SchedulerRequest::Run { migration: r.migration, kind, restart: r.restart });
    }
    let shape = event.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>().join(", ")).unwrap_or_else(|| "not an object".into());
    Err(format!("unrecognised scheduler event (keys: {shape})"))
}

fn alarm_request(alarm: String, state: &str) -> SchedulerRequest {
    if state.eq_ignore_ascii_case("ALARM") {
        SchedulerRequest::Rerun { alarm }
    } else {
        SchedulerRequest::AlarmCleared { alarm }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("{0}")]
    BadEvent(String),
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error(transparent)]
    Engine(#[from] deltadesk_core::engine::EngineError),
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    #[error(transparent)]
    Queue(#[from] deltadesk_core::ports::QueueError),
}

/// Handles one scheduler event and returns a summary (logged by Lambda, returned to direct callers).
pub async fn handle(ctx: &Context, event: &Value) -> Result<Value, SchedulerError> {
    let request = classify(event).map_err(SchedulerError::BadEvent)?;
    match request {
        SchedulerRequest::PlanDeltas => {
            let mut planned = Vec::new();
            for def in registry::list(ctx.backends.state.as_ref()).await? {
                if !def.enabled {
                    continue;
                }
                let engine = ctx.engine(&def.id).await?;
                if runs::load_migration(&engine).await.map_err(deltadesk_core::engine::EngineError::from)?.0.watermark.is_none() {
                    planned.push(json!({"migration": def.id, "outcome": "waiting for a successful full migration"}));
                    continue;
                }
                // One failing migration must not stop the others' deltas.
                match plan_window(&engine, RunKind::Delta, false).await {
                    Ok(o) => planned.push(json!({"migration": def.id, "outcome": describe(&o)})),
                    Err(e) => {
                        tracing::error!(migration = %def.id, error = %e, "planning a delta failed");
                        planned.push(json!({"migration": def.id, "error": e.to_string()}));
                    }
                }
            }
            Ok(json!({"planned": planned}))
        }
        SchedulerRequest::Rerun { alarm } => {
            let fetch = ctx.backends.fetch_queue.redrive_dead_letters().await?;
            let write = ctx.backends.write_queue.redrive_dead_letters().await?;
            let mut resumed = Vec::new();
            for def in registry::list(ctx.backends.state.as_ref()).await? {
                let engine = ctx.engine(&def.id).await?;
                let (mig, _) = runs::load_migration(&engine).await.map_err(deltadesk_core::engine::EngineError::from)?;
                if let Some(run) = mig.open_run {
                    ensure_progress(&engine, &run).await?;
                    resumed.push(json!({"migration": def.id, "run": run}));
                }
            }
            tracing::info!(alarm = %alarm, fetch, write, "rerun");
            Ok(json!({"alarm": alarm, "redriven": {"fetch": fetch, "write": write}, "resumed": resumed}))
        }
        SchedulerRequest::AlarmCleared { alarm } => Ok(json!({"alarm": alarm, "action": "none (alarm cleared)"})),
        SchedulerRequest::Run { migration, kind, restart } => {
            let engine = ctx.engine(&migration).await?;
            let o = plan_window(&engine, kind, restart).await?;
            Ok(json!({"migration": migration, "outcome": describe(&o), "run_id": o.run().map(|r| r.run_id.clone())}))
        }
    }
}

pub fn describe(o: &PlanOutcome) -> String {
    match o {
        PlanOutcome::Started(r) => format!("started {}", r.run_id),
        PlanOutcome::Resumed(r) => format!("still running {}", r.run_id),
        PlanOutcome::UpToDate { watermark } => format!("up to date at {watermark}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/../../tests/fixtures/events/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
    }

    #[test]
    fn each_event_shape_is_told_apart() {
        assert_eq!(classify(&fixture("eventbridge-schedule.json")).unwrap(), SchedulerRequest::PlanDeltas);
        assert_eq!(classify(&fixture("scheduler-schedule.json")).unwrap(), SchedulerRequest::PlanDeltas);
        assert_eq!(classify(&fixture("alarm-state-change.json")).unwrap(), SchedulerRequest::Rerun { alarm: "deltadesk-write-dlq-depth".into() });
        assert_eq!(
            classify(&fixture("alarm-lambda-action.json")).unwrap(),
            SchedulerRequest::Rerun { alarm: "deltadesk-fetch-oldest-message-age".into() }
        );
        let mut ok = fixture("alarm-state-change.json");
        ok["detail"]["state"]["value"] = "OK".into();
        assert_eq!(classify(&ok).unwrap(), SchedulerRequest::AlarmCleared { alarm: "deltadesk-write-dlq-depth".into() });
        assert_eq!(
            classify(&fixture("run-request.json")).unwrap(),
            SchedulerRequest::Run { migration: "acme".into(), kind: RunKind::Full, restart: true }
        );
    }

    #[test]
    fn unknown_and_malformed_events_are_named() {
        assert!(classify(&json!({"hello": 1})).unwrap_err().contains("hello"));
        assert!(classify(&json!({"action": "run", "migration": "a", "kind": "sideways"})).unwrap_err().contains("sideways"));
        let mut broken = fixture("alarm-state-change.json");
        broken["detail"] = json!("nope");
        assert!(classify(&broken).unwrap_err().contains("alarm"));
    }
}

//! Run reports, JSON and Markdown: window, counts, comments, attachments, API calls per side, failures.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::records::{ItemStatus, RunStatus};
use super::runs::{self, counter, Counters};
use super::{Engine, EngineError};
use crate::window::{RunKind, Window};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub ticket: String,
    pub cause: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub run_id: String,
    pub migration: String,
    pub kind: RunKind,
    pub status: RunStatus,
    pub window: Window,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_secs: Option<f64>,
    pub counts: Counters,
    pub failures: Vec<Failure>,
    pub warnings: Vec<String>,
}

impl RunReport {
    pub fn count(&self, k: &str) -> i64 {
        self.counts.get(k).copied().unwrap_or(0)
    }

    pub fn to_markdown(&self) -> String {
        let c = |k: &str| self.count(k);
        let mut s = String::new();
        s.push_str(&format!("# Run {}\n\n", self.run_id));
        s.push_str(&format!("- migration: `{}`, kind: {}, status: {:?}\n", self.migration, self.kind.as_str(), self.status));
        s.push_str(&format!("- window: {} .. {}\n", self.window.start.to_rfc3339(), self.window.end.to_rfc3339()));
        s.push_str(&format!(
            "- started {}, finished {}, duration {}\n\n",
            self.started_at.to_rfc3339(),
            self.finished_at.map(|f| f.to_rfc3339()).unwrap_or_else(|| "-".into()),
            self.duration_secs.map(|d| format!("{d:.1} s")).unwrap_or_else(|| "-".into())
        ));
        s.push_str("| tickets listed | already current | created | updated | unchanged | deleted | failed |\n|---|---|---|---|---|---|---|\n");
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n\n",
            c(counter::LISTED),
            c(counter::SKIPPED),
            c(counter::CREATED),
            c(counter::UPDATED),
            c(counter::UNCHANGED),
            c(counter::DELETED),
            c(counter::FAILED)
        ));
        s.push_str(&format!(
            "- comments written: {}; attachments: {} ({} bytes); orphans adopted: {}\n",
            c(counter::COMMENTS),
            c(counter::ATTACHMENTS),
            c(counter::ATTACHMENT_BYTES),
            c(counter::ADOPTED)
        ));
        s.push_str(&format!(
            "- API calls: source {} ({} answered 429, {} retries); target {} ({} answered 429, {} retries)\n",
            c("source_calls"),
            c("source_throttled"),
            c("source_retries"),
            c("target_calls"),
            c("target_throttled"),
            c("target_retries")
        ));
        if !self.failures.is_empty() {
            s.push_str("\n## Failed tickets (retried by the next run)\n\n| ticket | cause |\n|---|---|\n");
            for f in &self.failures {
                s.push_str(&format!("| {} | {} |\n", f.ticket, f.cause.replace('|', "\\|")));
            }
        }
        if !self.warnings.is_empty() {
            s.push_str("\n## Warnings\n\n");
            for w in &self.warnings {
                s.push_str(&format!("- {w}\n"));
            }
        }
        s
    }
}

pub async fn build_report(engine: &Engine, run_id: &str) -> Result<RunReport, EngineError> {
    let Some((run, _)) = runs::load_run(engine, run_id).await? else {
        return Err(EngineError::Refused(format!("no run {run_id} in migration {}", engine.migration)));
    };
    let counts = runs::counters(engine, run_id).await?;
    let mut failures = Vec::new();
    let mut warnings = Vec::new();
    for (_, item) in runs::items(engine, run_id).await? {
        match item.status {
            ItemStatus::Failed => failures.push(Failure { ticket: item.ticket_id.0.clone(), cause: item.cause.clone().unwrap_or_default() }),
            ItemStatus::Done => {
                if let Some(w) = item.cause {
                    warnings.push(w);
                }
            }
            ItemStatus::Pending => {}
        }
    }
    let duration_secs = run.finished_at.map(|f| (f - run.started_at).num_milliseconds() as f64 / 1000.0);
    Ok(RunReport {
        run_id: run.run_id,
        migration: run.migration,
        kind: run.kind,
        status: run.status,
        window: run.window,
        started_at: run.started_at,
        finished_at: run.finished_at,
        duration_secs,
        counts,
        failures,
        warnings,
    })
}

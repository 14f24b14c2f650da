//! Harness for the whole-pipeline tests: Zendesk simulators on port 0, the embedded engine on a temporary
//! state directory, and fault injectors that wrap the real adapters (lost responses, duplicate deliveries).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deltadesk_connectors::registry::{build_source, build_target, ConnectorConfig};
use deltadesk_core::engine::plan::{plan_window, PlanOutcome};
use deltadesk_core::engine::records::MigrationState;
use deltadesk_core::engine::report::{build_report, RunReport};
use deltadesk_core::engine::runner::{drive, DriveOutcome, RunnerConfig};
use deltadesk_core::engine::verify::{verify, VerifyReport};
use deltadesk_core::engine::{runs, Engine, EngineSettings};
use deltadesk_core::model::{Attachment, Group, Organization, TargetId, Ticket, User};
use deltadesk_core::ports::*;
use deltadesk_core::window::{RunKind, WindowRules};
use deltadesk_sim::zendesk::{ZendeskSim, ZendeskSimConfig};

#[cfg(feature = "moto")]
pub mod aws_meter;
#[cfg(feature = "moto")]
pub mod moto_support;

pub const MIGRATION: &str = "t";

/// Wraps the real target connector in a fault injector.
pub type WrapTarget<'a> = dyn Fn(Arc<dyn HelpDeskTarget>) -> Arc<dyn HelpDeskTarget> + 'a;
/// Wraps the real queues in a fault injector.
pub type WrapQueue<'a> = dyn Fn(Arc<dyn Queue>) -> Arc<dyn Queue> + 'a;

pub struct Opts {
    pub tickets: usize,
    pub seed: u64,
    pub lag: Duration,
    pub overlap: Duration,
    pub margin: Duration,
    pub workers: usize,
    pub visibility: Duration,
    pub lease_ttl: Duration,
    pub max_attempts: u32,
    /// The target connector's attachment limit (None: the connector's default).
    pub target_max_attachment_bytes: Option<u64>,
    /// Deliveries after which the local queue moves a message to its dead-letter queue.
    pub max_receives: u32,
    /// Latency the target simulator adds to every response.
    pub target_latency: Duration,
    /// The source simulator's clock minus the real one (clock-skew scenarios).
    pub source_clock_offset_secs: i64,
    /// Both connectors' per-request timeout.
    pub connector_timeout_secs: u64,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            tickets: 20,
            seed: 11,
            lag: Duration::from_secs(1),
            overlap: Duration::from_secs(3),
            margin: Duration::from_secs(1),
            workers: 4,
            visibility: Duration::from_secs(2),
            lease_ttl: Duration::from_secs(3),
            max_attempts: 3,
            target_max_attachment_bytes: None,
            max_receives: 10,
            target_latency: Duration::ZERO,
            source_clock_offset_secs: 0,
            connector_timeout_secs: 30,
        }
    }
}

pub struct Harness {
    pub source: ZendeskSim,
    pub target: ZendeskSim,
    pub dir: tempfile::TempDir,
    pub opts: Opts,
    pub engine: Engine,
}

pub fn zendesk(base_url: &str, lag: Duration) -> ConnectorConfig {
    serde_json::from_value(serde_json::json!({ "kind": "zendesk", "base_url": base_url, "publication_lag_secs": lag.as_secs() })).expect("connector config")
}

impl Harness {
    pub async fn start(opts: Opts) -> Harness {
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let source = ZendeskSim::start(
            ZendeskSimConfig {
                seed: opts.seed,
                tickets: opts.tickets,
                publication_lag: opts.lag,
                max_seed_attachment_bytes: 300 * 1024,
                clock_offset_secs: opts.source_clock_offset_secs,
                ..Default::default()
            },
            local,
        )
        .await
        .expect("source sim");
        let target = ZendeskSim::start(ZendeskSimConfig { publication_lag: opts.lag, latency: opts.target_latency, ..ZendeskSimConfig::empty_target(900_000) }, local).await.expect("target sim");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut h = Harness { engine: dummy_engine_placeholder(), source, target, dir, opts };
        h.engine = h.new_engine(None, None);
        h
    }

    /// A fresh engine on the same state directory — what a restarted process gets. Optional wrappers
    /// inject faults around the real target connector and queues.
    pub fn new_engine(&self, wrap_target: Option<&WrapTarget<'_>>, wrap_queue: Option<&WrapQueue<'_>>) -> Engine {
        let scfg = serde_json::json!({ "kind": "zendesk", "base_url": self.source.base_url(), "publication_lag_secs": self.opts.lag.as_secs(), "timeout_secs": self.opts.connector_timeout_secs });
        let source = build_source(&serde_json::from_value(scfg).expect("source config")).expect("source");
        let mut tcfg = serde_json::json!({ "kind": "zendesk", "base_url": self.target.base_url(), "publication_lag_secs": self.opts.lag.as_secs(), "timeout_secs": self.opts.connector_timeout_secs });
        if let Some(max) = self.opts.target_max_attachment_bytes {
            tcfg["max_attachment_bytes"] = max.into();
        }
        let mut target = build_target(&serde_json::from_value(tcfg).expect("target config")).expect("target");
        if let Some(w) = wrap_target {
            target = w(target);
        }
        let rules = WindowRules::new(self.opts.lag, self.opts.overlap).expect("rules");
        let mut settings = EngineSettings::new(rules, MIGRATION);
        settings.clock_skew_margin = self.opts.margin;
        settings.lease_ttl = self.opts.lease_ttl;
        settings.max_attempts = self.opts.max_attempts;
        let mut e = deltadesk_local::open_engine(self.dir.path(), MIGRATION, source, target, settings, self.opts.max_receives).expect("engine");
        if let Some(w) = wrap_queue {
            e.fetch_queue = w(e.fetch_queue.clone());
            e.write_queue = w(e.write_queue.clone());
        }
        e
    }

    pub fn runner(&self) -> RunnerConfig {
        runner_for(&self.opts)
    }

    pub async fn run(&self, kind: RunKind) -> Option<RunReport> {
        run_with(&self.engine, &self.runner(), kind).await
    }

    pub async fn full(&self) -> RunReport {
        self.run(RunKind::Full).await.expect("a full run always opens")
    }

    /// Waits until everything changed so far is published, then runs a delta.
    pub async fn settle_and_delta(&self) -> RunReport {
        tokio::time::sleep(self.opts.lag + Duration::from_millis(1100)).await;
        self.run(RunKind::Delta).await.expect("a delta after the lag has a window")
    }

    pub async fn verify(&self) -> VerifyReport {
        verify(self.engine.source.as_ref(), self.engine.target.as_ref(), &self.engine.settings.source_ref_prefix, 4).await.expect("verify")
    }

    pub async fn migration(&self) -> MigrationState {
        runs::load_migration(&self.engine).await.expect("migration").0
    }

    /// Live source tickets as (id, updated_at), from the simulator's own state.
    pub fn source_tickets(&self) -> Vec<(u64, chrono::DateTime<chrono::Utc>)> {
        let snap = self.source.snapshot();
        snap["tickets"]
            .as_array()
            .expect("tickets")
            .iter()
            .filter(|t| !t["deleted"].as_bool().unwrap_or(false))
            .map(|t| {
                let at = chrono::DateTime::parse_from_rfc3339(t["updated_at"].as_str().expect("updated_at")).expect("time").with_timezone(&chrono::Utc);
                (t["id"].as_u64().expect("id"), at)
            })
            .collect()
    }

    pub async fn verify_tickets(&self, ids: &[u64]) -> VerifyReport {
        let ids: Vec<deltadesk_core::model::TicketId> = ids.iter().map(|i| deltadesk_core::model::TicketId(i.to_string())).collect();
        deltadesk_core::engine::verify::verify_tickets(self.engine.source.as_ref(), self.engine.target.as_ref(), &self.engine.settings.source_ref_prefix, &ids, 4)
            .await
            .expect("verify")
    }

    /// The target's copy of a source ticket, read back in canonical form.
    pub async fn target_copy(&self, source_id: u64) -> Ticket {
        let ids = self.target_ids(source_id).await;
        assert_eq!(ids.len(), 1, "source ticket {source_id} has {} target tickets", ids.len());
        self.engine.target.read_ticket(&ids[0]).await.expect("read").expect("exists")
    }

    /// Target ticket ids carrying the source reference of `source_id`.
    pub async fn target_ids(&self, source_id: u64) -> Vec<TargetId> {
        let r = format!("{}{}", self.engine.settings.source_ref_prefix, source_id);
        self.engine.target.find_by_source_ref(&r).await.expect("find")
    }
}

/// The runner settings the harness uses for `opts`.
pub fn runner_for(opts: &Opts) -> RunnerConfig {
    RunnerConfig { workers: opts.workers, visibility: opts.visibility, stall_after: Duration::from_millis(opts.visibility.as_millis() as u64 + 500), max_stalls: 3, heartbeat: true }
}

/// The embedded engine on `dir` between any source and target connector configs, with the harness's
/// settings from `opts` (used by pipelines between other help desks than two Zendesk simulators).
pub fn open_engine_with(dir: &std::path::Path, source: &ConnectorConfig, target: &ConnectorConfig, opts: &Opts) -> Engine {
    let source = build_source(source).expect("source");
    let target = build_target(target).expect("target");
    let rules = WindowRules::new(opts.lag, opts.overlap).expect("rules");
    let mut settings = EngineSettings::new(rules, MIGRATION);
    settings.clock_skew_margin = opts.margin;
    settings.lease_ttl = opts.lease_ttl;
    settings.max_attempts = opts.max_attempts;
    deltadesk_local::open_engine(dir, MIGRATION, source, target, settings, opts.max_receives).expect("engine")
}

/// A Freshdesk connector config for `base_url` (publication lag 1 s) with the `extra` keys.
pub fn freshdesk(base_url: &str, extra: serde_json::Value) -> ConnectorConfig {
    let mut v = serde_json::json!({"kind": "freshdesk", "base_url": base_url, "publication_lag_secs": 1});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    serde_json::from_value(v).expect("freshdesk config")
}

/// An engine between any two connector configs on a fresh state directory (pipelines between other help
/// desks than two Zendesk simulators).
pub struct Pipeline {
    _dir: tempfile::TempDir,
    pub opts: Opts,
    pub engine: Engine,
}

impl Pipeline {
    pub fn new(source: &ConnectorConfig, target: &ConnectorConfig, opts: Opts) -> Pipeline {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = open_engine_with(dir.path(), source, target, &opts);
        Pipeline { _dir: dir, opts, engine }
    }

    pub async fn full(&self) -> RunReport {
        run_with(&self.engine, &runner_for(&self.opts), RunKind::Full).await.expect("a full run always opens")
    }

    /// Waits until everything changed so far is published, then runs a delta.
    pub async fn settle_and_delta(&self) -> RunReport {
        tokio::time::sleep(self.opts.lag + Duration::from_millis(1100)).await;
        run_with(&self.engine, &runner_for(&self.opts), RunKind::Delta).await.expect("a delta after the lag has a window")
    }

    pub async fn verify(&self) -> VerifyReport {
        verify(self.engine.source.as_ref(), self.engine.target.as_ref(), &self.engine.settings.source_ref_prefix, 4).await.expect("verify")
    }

    pub async fn migration(&self) -> MigrationState {
        runs::load_migration(&self.engine).await.expect("migration").0
    }

    /// Target ticket ids carrying the source reference of `source_id`.
    pub async fn target_ids(&self, source_id: u64) -> Vec<TargetId> {
        let r = self.engine.source_ref(&deltadesk_core::model::TicketId(source_id.to_string()));
        self.engine.target.find_by_source_ref(&r).await.expect("find")
    }
}

pub async fn run_with(engine: &Engine, rc: &RunnerConfig, kind: RunKind) -> Option<RunReport> {
    let outcome = plan_window(engine, kind, false).await.expect("plan");
    let run = match outcome {
        PlanOutcome::UpToDate { .. } => return None,
        PlanOutcome::Started(r) | PlanOutcome::Resumed(r) => r,
    };
    let d = drive(engine, &run.run_id, rc, &|_| {}).await.expect("drive");
    assert_eq!(d, DriveOutcome::Committed, "run {} did not commit", run.run_id);
    Some(build_report(engine, &run.run_id).await.expect("report"))
}

fn dummy_engine_placeholder() -> Engine {
    // Replaced right away in `Harness::start`; built from in-memory parts so it never touches a network.
    let state = Arc::new(deltadesk_local::SqliteState::in_memory().expect("mem"));
    // One directory per placeholder: tests run in parallel threads, and two of them creating one SQLite
    // queue file at once could answer "database is locked".
    let tmp = std::env::temp_dir().join(format!("dd-placeholder-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()));
    let q: Arc<dyn Queue> = Arc::new(deltadesk_local::SqliteQueue::open(&tmp.join("q.sqlite"), "x", deltadesk_local::Redrive { max_receives: 5 }).expect("q"));
    let src = build_source(&zendesk("http://127.0.0.1:9", Duration::from_secs(1))).expect("src");
    let tgt = build_target(&zendesk("http://127.0.0.1:9", Duration::from_secs(1))).expect("tgt");
    Engine {
        migration: "placeholder".into(),
        source: src,
        target: tgt,
        state,
        blobs: Arc::new(deltadesk_local::FsBlobs::new(tmp.join("b"))),
        fetch_queue: q.clone(),
        write_queue: q,
        settings: EngineSettings::new(WindowRules::new(Duration::from_secs(1), Duration::from_secs(1)).expect("rules"), "placeholder"),
        clock: Arc::new(deltadesk_core::engine::SystemClock),
        instance: "placeholder".into(),
    }
}

/// A target whose chosen calls reach the help desk but whose answers are lost on the way back, as when a
/// connection drops after the server committed: the engine sees an error for a write that happened.
pub struct LostResponses {
    pub inner: Arc<dyn HelpDeskTarget>,
    pub lose_creates: AtomicUsize,
    pub lose_appends: AtomicUsize,
    pub lost: Mutex<Vec<String>>,
}

impl LostResponses {
    pub fn wrap(inner: Arc<dyn HelpDeskTarget>, creates: usize, appends: usize) -> Arc<LostResponses> {
        Arc::new(LostResponses { inner, lose_creates: AtomicUsize::new(creates), lose_appends: AtomicUsize::new(appends), lost: Mutex::new(vec![]) })
    }
    fn take(counter: &AtomicUsize) -> bool {
        counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    }
    fn lost_error(what: &str) -> TargetError {
        TargetError::Unavailable { context: what.to_string(), source: "connection reset after the request was sent (injected)".into() }
    }
}

#[async_trait]
impl HelpDeskTarget for LostResponses {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn max_attachment_bytes(&self) -> u64 {
        self.inner.max_attachment_bytes()
    }
    async fn find_by_source_ref(&self, r: &str) -> Result<Vec<TargetId>, TargetError> {
        self.inner.find_by_source_ref(r).await
    }
    async fn create_ticket(&self, r: &str, t: &Ticket, c: &[CommentWrite<'_>]) -> Result<TargetId, TargetError> {
        let id = self.inner.create_ticket(r, t, c).await?;
        if Self::take(&self.lose_creates) {
            self.lost.lock().unwrap().push(format!("create {r} -> {id}"));
            return Err(Self::lost_error("create"));
        }
        Ok(id)
    }
    async fn update_fields(&self, id: &TargetId, t: &Ticket) -> Result<(), TargetError> {
        self.inner.update_fields(id, t).await
    }
    async fn append_comment(&self, id: &TargetId, c: &CommentWrite<'_>) -> Result<(), TargetError> {
        self.inner.append_comment(id, c).await?;
        if Self::take(&self.lose_appends) {
            self.lost.lock().unwrap().push(format!("append to {id}"));
            return Err(Self::lost_error("append"));
        }
        Ok(())
    }
    async fn comment_count(&self, id: &TargetId) -> Result<usize, TargetError> {
        self.inner.comment_count(id).await
    }
    async fn upload(&self, a: &Attachment, b: ByteStream) -> Result<UploadedAttachment, TargetError> {
        self.inner.upload(a, b).await
    }
    async fn delete_ticket(&self, id: &TargetId) -> Result<(), TargetError> {
        self.inner.delete_ticket(id).await
    }
    async fn upsert_user(&self, u: &User) -> Result<String, TargetError> {
        self.inner.upsert_user(u).await
    }
    async fn upsert_organization(&self, o: &Organization) -> Result<String, TargetError> {
        self.inner.upsert_organization(o).await
    }
    async fn upsert_group(&self, g: &Group) -> Result<String, TargetError> {
        self.inner.upsert_group(g).await
    }
    async fn list_tickets(&self, c: Option<&str>) -> Result<TargetListPage, TargetError> {
        self.inner.list_tickets(c).await
    }
    async fn read_ticket(&self, id: &TargetId) -> Result<Option<Ticket>, TargetError> {
        self.inner.read_ticket(id).await
    }
    async fn download(&self, a: &Attachment) -> Result<ByteStream, TargetError> {
        self.inner.download(a).await
    }
    async fn vocabulary(&self) -> Result<deltadesk_core::vocabulary::Vocabulary, TargetError> {
        self.inner.vocabulary().await
    }
    fn api_stats(&self) -> ApiStats {
        self.inner.api_stats()
    }
}

/// A queue that delivers every message twice, the second copy delayed — SQS's at-least-once at its worst:
/// duplicates arrive, and arrive out of order with later messages.
pub struct Duplicating {
    pub inner: Arc<dyn Queue>,
    pub delay: Duration,
}

#[async_trait]
impl Queue for Duplicating {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn send(&self, body: &str, delay: Duration) -> Result<(), QueueError> {
        self.inner.send(body, delay).await?;
        self.inner.send(body, delay + self.delay).await
    }
    async fn send_batch(&self, bodies: &[String]) -> Result<(), QueueError> {
        self.inner.send_batch(bodies).await?;
        for b in bodies {
            self.inner.send(b, self.delay).await?;
        }
        Ok(())
    }
    async fn receive(&self, max: usize, v: Duration, w: Duration) -> Result<Vec<Received>, QueueError> {
        self.inner.receive(max, v, w).await
    }
    async fn delete(&self, r: &str) -> Result<(), QueueError> {
        self.inner.delete(r).await
    }
    async fn change_visibility(&self, r: &str, v: Duration) -> Result<(), QueueError> {
        self.inner.change_visibility(r, v).await
    }
    async fn depth(&self) -> Result<QueueDepth, QueueError> {
        self.inner.depth().await
    }
    async fn redrive_dead_letters(&self) -> Result<u64, QueueError> {
        self.inner.redrive_dead_letters().await
    }
    async fn dead_letters(&self, max: usize) -> Result<Vec<String>, QueueError> {
        self.inner.dead_letters(max).await
    }
}

/// A clock the test sets by hand, to check the watermark rules at given instants.
pub struct FixedClock(pub Mutex<chrono::DateTime<chrono::Utc>>);

impl FixedClock {
    pub fn at(s: &str) -> Arc<FixedClock> {
        Arc::new(FixedClock(Mutex::new(parse_time(s))))
    }
    pub fn set(&self, s: &str) {
        *self.0.lock().unwrap() = parse_time(s);
    }
}

pub fn parse_time(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&chrono::Utc)
}

impl deltadesk_core::engine::Clock for FixedClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        *self.0.lock().unwrap()
    }
}

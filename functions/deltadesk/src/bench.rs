//! `deltadesk bench <scenario>`: the benchmark harness of issue #7. Each scenario prints its figures and
//! their ratio against the bound (a JSON object with `--json`). Results and commands live in BENCHMARKS.md.
//!
//! The simulators run in a child process (`deltadesk bench sims`, a helper mode), so the CPU time and
//! peak RSS measured here are the engine's (plus its HTTP clients, SQLite and blobs), not the simulators'.
//! The child speaks a line protocol on stdin/stdout: it prints `{"source":…,"target":…}` once seeded, then
//! answers `stats` (both simulators' request counters), `change N` (N changes in the source) and `quit`.

use std::io::{BufRead, BufReader, Write as _};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use deltadesk_connectors::registry::{build_source, build_target, ConnectorConfig};
use deltadesk_core::engine::report::RunReport;
use deltadesk_core::engine::runner::RunnerConfig;
use deltadesk_core::engine::{runs, Engine, EngineSettings};
use deltadesk_core::ports::{Item, StateError, StateStore, Write};
use deltadesk_core::window::{RunKind, WindowRules};
use deltadesk_sim::freshdesk::{FreshdeskPlan, FreshdeskRateLimits, FreshdeskSim, FreshdeskSimConfig};
use deltadesk_sim::zendesk::{ZendeskSim, ZendeskSimConfig};
use serde_json::{json, Value};

use crate::demo::Desk;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    scenario: Scenario,
}

/// A ticket shape: every seeded source ticket has exactly this many comments and attachments.
#[derive(Args, Debug, Clone)]
pub struct Shape {
    /// Comments per ticket (the first is the description).
    #[arg(long, default_value_t = 5)]
    comments: usize,
    /// Attachments per ticket, one on each of the first comments.
    #[arg(long, default_value_t = 1)]
    attachments: usize,
    /// Bytes per attachment (each one's content is unique, so content-addressed staging cannot dedupe).
    #[arg(long, default_value_t = 4096)]
    attachment_bytes: u64,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// Scenario 2: API calls per migrated ticket, per direction, against the target API's minimum.
    Calls {
        #[arg(long, default_value_t = 300)]
        tickets: usize,
        #[command(flatten)]
        shape: Shape,
        #[arg(long, default_value_t = 8)]
        workers: usize,
    },
    /// Scenario 3: engine overhead on zero-latency, unlimited simulators: tickets/s, CPU-s per 1,000 tickets, peak RSS.
    Engine {
        #[arg(long, default_value_t = 5000)]
        tickets: usize,
        #[command(flatten)]
        shape: Shape,
        #[arg(long, default_value_t = 8)]
        workers: usize,
    },
    /// Scenario 4: a delta's time, state-store operations and API calls with the same changes at growing sizes.
    Delta {
        /// Help-desk sizes (tickets), comma separated.
        #[arg(long, value_delimiter = ',', default_values_t = vec![10_000usize, 100_000])]
        sizes: Vec<usize>,
        /// Changes (one comment each, on tickets spread over the id range) after the full copy.
        #[arg(long, default_value_t = 1000)]
        changes: usize,
        #[arg(long, default_value_t = 8)]
        workers: usize,
    },
    /// Scenario 5: one large attachment (default 1 GiB) migrated Zendesk → Zendesk; the engine's peak RSS.
    Attachment {
        /// Attachment sizes in MiB, comma separated (the peak RSS must not grow with them).
        #[arg(long, value_delimiter = ',', default_values_t = vec![16u64, 1024])]
        mib: Vec<u64>,
    },
    /// Scenario 1: rate-limit saturation: useful writes per minute against the plan's bound, share of 429s.
    Saturation {
        /// zendesk-to-freshdesk (Freshdesk target, time-compressed window) or freshdesk-to-zendesk (real time).
        #[arg(long, value_delimiter = ',', default_values_t = vec!["zendesk-to-freshdesk".to_string(), "freshdesk-to-zendesk".to_string()])]
        directions: Vec<String>,
        /// Freshdesk target: the plan's window is compressed by this factor (60 s → 60/k s).
        #[arg(long, default_value_t = 10)]
        compress: u32,
        /// Zendesk target: the plan's requests per minute (Zendesk Team: 200); its window is a real minute.
        #[arg(long, default_value_t = 200)]
        zendesk_rpm: u32,
        /// Zendesk target: how long to keep it saturated, in seconds.
        #[arg(long, default_value_t = 120)]
        zendesk_secs: u64,
        /// Also set the target connector's pacing (`requests_per_minute`) to the plan's account limit.
        #[arg(long)]
        paced: bool,
        #[command(flatten)]
        shape: Shape,
        #[arg(long, default_value_t = 8)]
        workers: usize,
    },
    /// Helper mode: serve a shaped source simulator and an empty target simulator (used by the scenarios).
    #[command(hide = true)]
    Sims(SimsArgs),
}

#[derive(Args, Debug, Clone)]
pub struct SimsArgs {
    #[arg(long, value_enum)]
    from: Desk,
    #[arg(long, value_enum)]
    to: Desk,
    #[arg(long)]
    tickets: usize,
    #[command(flatten)]
    shape: Shape,
    /// Freshdesk target: plan limits (growth, pro, enterprise) with the window divided by `fd_compress`.
    #[arg(long)]
    fd_plan: Option<String>,
    #[arg(long, default_value_t = 1)]
    fd_compress: u32,
    /// Zendesk target: account requests per minute.
    #[arg(long)]
    zd_rpm: Option<u32>,
}

const LAG_SECS: u64 = 1;
const BIG: u64 = 4 * 1024 * 1024 * 1024;

pub async fn bench(a: BenchArgs, json: bool) -> anyhow::Result<u8> {
    let out = match a.scenario {
        Scenario::Sims(s) => return sims(s).await,
        Scenario::Calls { tickets, shape, workers } => calls(tickets, &shape, workers, json).await?,
        Scenario::Engine { tickets, shape, workers } => engine_overhead(tickets, &shape, workers, json).await?,
        Scenario::Delta { sizes, changes, workers } => delta(&sizes, changes, workers, json).await?,
        Scenario::Attachment { mib } => attachment(&mib, json).await?,
        Scenario::Saturation { directions, compress, zendesk_rpm, zendesk_secs, paced, shape, workers } => {
            saturation(&directions, compress, zendesk_rpm, zendesk_secs, paced, &shape, workers, json).await?
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(0)
}

// ---- measurements ------------------------------------------------------------------------------------------

/// utime + stime of a process in seconds (/proc/<pid>/stat, clock ticks of 1/100 s).
fn cpu_secs(pid: &str) -> f64 {
    let (u, s) = cpu_split(pid);
    u + s
}

/// (utime, stime) of a process in seconds.
fn cpu_split(pid: &str) -> (f64, f64) {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return (0.0, 0.0) };
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    (ticks(11) / 100.0, ticks(12) / 100.0)
}

/// A `Vm…:` line of /proc/<pid>/status in MiB.
fn vm_mib(pid: &str, key: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Resets this process's peak RSS (VmHWM) to its current RSS (`echo 5 > /proc/self/clear_refs`).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// A state store that counts the engine's operations on the real one.
pub struct CountingState {
    inner: Arc<dyn StateStore>,
    gets: AtomicU64,
    queries: AtomicU64,
    transacts: AtomicU64,
    writes: AtomicU64,
    /// Per operation and item kind ("get map/t", "write run/item", ...): which records the engine touches.
    kinds: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

fn kind_of(op: &str, pk: &str, sk: &str) -> String {
    // The leading letters only: "t#123" → "t", "item#5@v" → "item", an attachment id → "id".
    let head = |s: &str| {
        let h: String = s.chars().take_while(|c| c.is_ascii_alphabetic() || *c == '_').collect();
        if h.is_empty() { "id".to_string() } else { h }
    };
    format!("{op} {}/{}", head(pk), head(sk))
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
struct StateOps {
    gets: u64,
    queries: u64,
    transacts: u64,
    /// Items written by those transactions.
    writes: u64,
    total: u64,
}

impl CountingState {
    fn wrap(inner: Arc<dyn StateStore>) -> Arc<CountingState> {
        Arc::new(CountingState { inner, gets: AtomicU64::new(0), queries: AtomicU64::new(0), transacts: AtomicU64::new(0), writes: AtomicU64::new(0), kinds: Default::default() })
    }
    fn ops(&self) -> StateOps {
        let (g, q, t, w) = (self.gets.load(Ordering::Relaxed), self.queries.load(Ordering::Relaxed), self.transacts.load(Ordering::Relaxed), self.writes.load(Ordering::Relaxed));
        StateOps { gets: g, queries: q, transacts: t, writes: w, total: g + q + t }
    }
    fn count(&self, k: String) {
        *self.kinds.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(k).or_default() += 1;
    }
    fn kinds(&self) -> std::collections::BTreeMap<String, u64> {
        self.kinds.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
    fn reset(&self) {
        self.kinds.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        for c in [&self.gets, &self.queries, &self.transacts, &self.writes] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

type BoxFut<'a, T> = Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

// Written out by hand (the shape `#[async_trait]` expands to), so the CLI needs no new dependency.
impl StateStore for CountingState {
    fn get<'a, 'b, 'c, 'f>(&'a self, pk: &'b str, sk: &'c str) -> BoxFut<'f, Result<Option<Item>, StateError>>
    where
        'a: 'f,
        'b: 'f,
        'c: 'f,
        Self: 'f,
    {
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.count(kind_of("get", pk, sk));
        self.inner.get(pk, sk)
    }
    fn query<'a, 'b, 'c, 'd, 'f>(&'a self, pk: &'b str, sk_prefix: &'c str, start_after: Option<&'d str>, limit: usize) -> BoxFut<'f, Result<Vec<Item>, StateError>>
    where
        'a: 'f,
        'b: 'f,
        'c: 'f,
        'd: 'f,
        Self: 'f,
    {
        self.queries.fetch_add(1, Ordering::Relaxed);
        self.count(kind_of("query", pk, sk_prefix));
        self.inner.query(pk, sk_prefix, start_after, limit)
    }
    fn transact<'a, 'f>(&'a self, writes: Vec<Write>) -> BoxFut<'f, Result<(), StateError>>
    where
        'a: 'f,
        Self: 'f,
    {
        self.transacts.fetch_add(1, Ordering::Relaxed);
        self.writes.fetch_add(writes.len() as u64, Ordering::Relaxed);
        for w in &writes {
            let op = match w.op {
                deltadesk_core::ports::WriteOp::Put { .. } => "put",
                deltadesk_core::ports::WriteOp::Delete => "delete",
                deltadesk_core::ports::WriteOp::Add { .. } => "add",
            };
            self.count(kind_of(op, &w.pk, &w.sk));
        }
        self.inner.transact(writes)
    }
}

// ---- the simulator child process ---------------------------------------------------------------------------

struct SimsProc {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    source: String,
    target: String,
    from: Desk,
    to: Desk,
}

fn desk_name(d: Desk) -> &'static str {
    match d {
        Desk::Zendesk => "zendesk",
        Desk::Freshdesk => "freshdesk",
    }
}

impl SimsProc {
    fn spawn(from: Desk, to: Desk, tickets: usize, shape: &Shape, extra: &[String]) -> anyhow::Result<SimsProc> {
        let exe = std::env::current_exe().context("finding this executable")?;
        let mut args: Vec<String> = vec!["bench".into(), "sims".into(), "--from".into(), desk_name(from).into(), "--to".into(), desk_name(to).into()];
        args.extend(["--tickets".into(), tickets.to_string(), "--comments".into(), shape.comments.to_string()]);
        args.extend(["--attachments".into(), shape.attachments.to_string(), "--attachment-bytes".into(), shape.attachment_bytes.to_string()]);
        args.extend(extra.iter().cloned());
        let mut child = std::process::Command::new(exe).args(&args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().context("starting the simulator process")?;
        let stdin = child.stdin.take().context("child stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("child stdout")?);
        let mut p = SimsProc { child, stdin, stdout, source: String::new(), target: String::new(), from, to };
        let hello = p.read_line()?;
        p.source = hello["source"].as_str().context("source url")?.to_string();
        p.target = hello["target"].as_str().context("target url")?.to_string();
        Ok(p)
    }

    fn read_line(&mut self) -> anyhow::Result<Value> {
        let mut line = String::new();
        tokio::task::block_in_place(|| self.stdout.read_line(&mut line)).context("reading from the simulator process")?;
        if line.is_empty() {
            bail!("the simulator process exited");
        }
        Ok(serde_json::from_str(&line)?)
    }

    fn ask(&mut self, cmd: &str) -> anyhow::Result<Value> {
        writeln!(self.stdin, "{cmd}")?;
        self.stdin.flush()?;
        self.read_line()
    }

    fn stats(&mut self) -> anyhow::Result<Value> {
        self.ask("stats")
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn connector(&self, url: &str, desk: Desk, target_extra: Option<Value>) -> anyhow::Result<ConnectorConfig> {
        let mut v = json!({"kind": desk_name(desk), "base_url": url, "publication_lag_secs": LAG_SECS, "timeout_secs": 600});
        if let Some(Value::Object(m)) = target_extra {
            for (k, x) in m {
                v[k] = x;
            }
        }
        Ok(serde_json::from_value(v)?)
    }
}

impl Drop for SimsProc {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Unique attachment bytes: a pattern with the (ticket, comment) pair written into its first 16 bytes.
fn att_bytes(size: u64, t: usize, c: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..size).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
    let tag = format!("{t:08}{c:08}");
    for (i, b) in tag.bytes().enumerate().take(v.len()) {
        v[i] = b;
    }
    v
}

enum AnySim {
    Zendesk(ZendeskSim),
    Freshdesk(FreshdeskSim),
}

impl AnySim {
    fn url(&self) -> String {
        match self {
            AnySim::Zendesk(s) => s.base_url(),
            AnySim::Freshdesk(s) => s.base_url(),
        }
    }
    fn stats(&self) -> Value {
        let s = match self {
            AnySim::Zendesk(s) => s.stats(),
            AnySim::Freshdesk(s) => s.stats(),
        };
        serde_json::to_value(s).unwrap_or(Value::Null)
    }
}

async fn sims(a: SimsArgs) -> anyhow::Result<u8> {
    let local: std::net::SocketAddr = "127.0.0.1:0".parse()?;
    let big = BIG.max(a.shape.attachment_bytes * 2);
    let source = match a.from {
        Desk::Zendesk => AnySim::Zendesk(
            ZendeskSim::start(ZendeskSimConfig { tickets: 0, publication_lag: Duration::from_secs(LAG_SECS), max_attachment_bytes: big, ..Default::default() }, local).await?,
        ),
        Desk::Freshdesk => AnySim::Freshdesk(
            FreshdeskSim::start(FreshdeskSimConfig { tickets: 0, trashed_tickets: 0, spam_tickets: 0, max_attachment_bytes: big, ..Default::default() }, local).await?,
        ),
    };
    let target = match a.to {
        Desk::Zendesk => AnySim::Zendesk(
            ZendeskSim::start(
                ZendeskSimConfig { publication_lag: Duration::from_secs(LAG_SECS), max_attachment_bytes: big, rate_limit_per_minute: a.zd_rpm, ..ZendeskSimConfig::empty_target(900_000) },
                local,
            )
            .await?,
        ),
        Desk::Freshdesk => {
            let rate_limits = match a.fd_plan.as_deref() {
                None => FreshdeskRateLimits::unlimited(),
                Some(p) => {
                    let plan = match p {
                        "growth" => FreshdeskPlan::Growth,
                        "pro" => FreshdeskPlan::Pro,
                        "enterprise" => FreshdeskPlan::Enterprise,
                        _ => bail!("unknown plan {p:?}"),
                    };
                    let mut r = FreshdeskRateLimits::plan(plan);
                    r.window = Duration::from_secs(60) / a.fd_compress.max(1);
                    r
                }
            };
            AnySim::Freshdesk(FreshdeskSim::start(FreshdeskSimConfig { rate_limits, max_attachment_bytes: big, ..FreshdeskSimConfig::empty_target(900_000) }, local).await?)
        }
    };
    // Shaped tickets, created with the simulator's in-process API (its seed cannot be shaped).
    let mut ids: Vec<u64> = Vec::with_capacity(a.tickets);
    let s = &a.shape;
    let att = |t: usize, c: usize| (c < s.attachments).then(|| (format!("doc-{t}-{c}.pdf"), "application/pdf".to_string(), att_bytes(s.attachment_bytes, t, c)));
    for t in 0..a.tickets {
        let email = format!("customer{}@example.com", t % 50);
        let body = format!("<p>Ticket {t}: my order has not arrived, please check.</p>");
        match &source {
            AnySim::Zendesk(z) => {
                let id = z.try_create_ticket(&format!("Order {t} missing"), &email, &body, att(t, 0)).map_err(anyhow::Error::msg)?;
                for c in 1..s.comments.max(1) {
                    z.try_add_comment(id, None, c % 2 == 1, &format!("<p>Comment {c} on ticket {t}.</p>"), att(t, c)).map_err(anyhow::Error::msg)?;
                }
                ids.push(id);
            }
            AnySim::Freshdesk(f) => {
                let id = f.try_create_ticket(&format!("Order {t} missing"), &email, &body, att(t, 0)).map_err(anyhow::Error::msg)?;
                for c in 1..s.comments.max(1) {
                    f.try_add_note(id, None, c % 2 == 0, &format!("<p>Comment {c} on ticket {t}.</p>"), att(t, c)).map_err(anyhow::Error::msg)?;
                }
                ids.push(id);
            }
        }
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", json!({"source": source.url(), "target": target.url(), "tickets": ids.len()}))?;
    out.flush()?;
    drop(out);
    let mut changed = 0usize;
    loop {
        let mut line = String::new();
        let n = tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line).map(|n| (n, line))).await??;
        let (n, line) = n;
        if n == 0 {
            break;
        }
        let reply = match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["stats"] => json!({"source": source.stats(), "target": target.stats()}),
            ["change", k] => {
                let k: usize = k.parse()?;
                for i in 0..k.min(ids.len()) {
                    let id = ids[i * ids.len() / k.min(ids.len())];
                    let body = format!("<p>Delta change {changed}.</p>");
                    match &source {
                        AnySim::Zendesk(z) => {
                            z.try_add_comment(id, None, true, &body, None).map_err(anyhow::Error::msg)?;
                        }
                        AnySim::Freshdesk(f) => {
                            f.try_add_note(id, None, false, &body, None).map_err(anyhow::Error::msg)?;
                        }
                    }
                    changed += 1;
                }
                json!({"changed": k})
            }
            ["quit"] => break,
            other => json!({"error": format!("unknown command {other:?}")}),
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "{reply}")?;
        out.flush()?;
    }
    Ok(0)
}

// ---- engine and runs ---------------------------------------------------------------------------------------

struct Bench {
    engine: Engine,
    counting: Arc<CountingState>,
    dir: TempDir,
    rc: RunnerConfig,
}

fn open(p: &SimsProc, workers: usize, source_extra: Option<Value>, target_extra: Option<Value>) -> anyhow::Result<Bench> {
    let dir = TempDir::new()?;
    let source = build_source(&p.connector(&p.source, p.from, source_extra)?).context("source connector")?;
    let target = build_target(&p.connector(&p.target, p.to, target_extra)?).context("target connector")?;
    let rules = WindowRules::new(Duration::from_secs(LAG_SECS), Duration::from_secs(3)).context("window rules")?;
    let mut settings = EngineSettings::new(rules, "bench");
    settings.clock_skew_margin = Duration::from_secs(1);
    let mut engine = deltadesk_local::open_engine(&dir.0, "bench", source, target, settings, 10).context("opening the engine")?;
    let counting = CountingState::wrap(engine.state.clone());
    engine.state = counting.clone();
    let rc = RunnerConfig { workers, visibility: Duration::from_secs(600), ..Default::default() };
    Ok(Bench { engine, counting, dir, rc })
}

/// Target settings for the scenarios that measure the engine itself (3 and 4): one import per new ticket.
/// `create_many` jobs are polled after 100 ms at the earliest — a wait meant for a real account's job
/// queue, which with zero-latency simulators would measure the poll interval instead of the engine.
fn one_import_each() -> Value {
    json!({"create_batch_linger_ms": 0})
}

struct Measured {
    report: RunReport,
    wall: f64,
    cpu: f64,
    /// Of which kernel (system) time.
    cpu_sys: f64,
    sim_cpu: f64,
    peak_rss_mib: f64,
    state: StateOps,
    state_kinds: std::collections::BTreeMap<String, u64>,
}

async fn measured_run(b: &Bench, p: &SimsProc, kind: RunKind) -> anyhow::Result<Measured> {
    b.counting.reset();
    reset_peak_rss();
    let (cpu0, sim0, sys0) = (cpu_secs("self"), cpu_secs(&p.pid()), cpu_split("self").1);
    let t0 = Instant::now();
    let (code, report) = crate::commands::run_once(&b.engine, &b.dir.0, &b.rc, kind, false, true).await?;
    let wall = t0.elapsed().as_secs_f64();
    let report = report.context("the run found nothing to do (up to date)")?;
    if code != 0 {
        eprintln!("warning: the {} run ended with code {code}; {} failures, first: {:?}", kind.as_str(), report.failures.len(), report.failures.first().map(|f| &f.cause));
    }
    Ok(Measured {
        wall,
        cpu: cpu_secs("self") - cpu0,
        cpu_sys: cpu_split("self").1 - sys0,
        sim_cpu: cpu_secs(&p.pid()) - sim0,
        peak_rss_mib: vm_mib("self", "VmHWM:"),
        state: b.counting.ops(),
        state_kinds: b.counting.kinds(),
        report,
    })
}

fn say(json: bool, s: &str) {
    if !json {
        println!("{s}");
    }
}

fn stat_delta(after: &Value, before: &Value, side: &str) -> (u64, u64, serde_json::Map<String, Value>) {
    let n = |v: &Value, k: &str| v[side][k].as_u64().unwrap_or(0);
    let mut routes = serde_json::Map::new();
    if let Some(m) = after[side]["per_route"].as_object() {
        for (k, v) in m {
            let d = v.as_u64().unwrap_or(0) - before[side]["per_route"][k].as_u64().unwrap_or(0);
            if d > 0 {
                routes.insert(k.clone(), json!(d));
            }
        }
    }
    (n(after, "requests_total") - n(before, "requests_total"), n(after, "throttled") - n(before, "throttled"), routes)
}

/// Waits until the seeded tickets are published and out of the first delta's overlap.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(LAG_SECS + 4)).await;
}

// ---- scenario 2: calls per ticket --------------------------------------------------------------------------

/// Fewest target calls the API allows per ticket of this shape.
fn target_minimum(to: Desk, s: &Shape, tickets: usize) -> (f64, &'static str) {
    match to {
        // Ticket Import create_many (100 tickets, comments inline) + one upload per attachment.
        Desk::Zendesk => ((tickets.div_ceil(100)) as f64 / tickets as f64 + s.attachments as f64, "imports/tickets/create_many per 100 tickets + 1 upload per attachment"),
        // POST /tickets carries the first comment as the description (attachments in the same multipart
        // body); each further comment is one POST /notes with its attachments.
        Desk::Freshdesk => (s.comments.max(1) as f64, "1 create (first comment as description) + 1 note per further comment, attachments inline"),
    }
}

/// Fewest source calls the API allows per ticket of this shape.
fn source_minimum(from: Desk, s: &Shape) -> (f64, &'static str) {
    match from {
        // Incremental export (1000/page) + ticket comments (100/page) + one download per attachment.
        Desk::Zendesk => (1.0 / 1000.0 + s.comments.div_ceil(100) as f64 + s.attachments as f64, "export page/1000 + comments page + 1 download per attachment"),
        // Ticket list (100/page) + ticket with include=conversations (≤10) + conversations pages + downloads.
        Desk::Freshdesk => (1.0 / 100.0 + 1.0 + (s.comments.saturating_sub(1).saturating_sub(10)).div_ceil(100) as f64 + s.attachments as f64, "list page/100 + view?include=conversations + 1 download per attachment"),
    }
}

async fn calls(tickets: usize, shape: &Shape, workers: usize, json: bool) -> anyhow::Result<Value> {
    let mut results = vec![];
    for (from, to) in [(Desk::Zendesk, Desk::Zendesk), (Desk::Zendesk, Desk::Freshdesk), (Desk::Freshdesk, Desk::Zendesk), (Desk::Freshdesk, Desk::Freshdesk)] {
        let mut p = SimsProc::spawn(from, to, tickets, shape, &[])?;
        let b = open(&p, workers, None, None)?;
        settle().await;
        let before = p.stats()?;
        let m = measured_run(&b, &p, RunKind::Full).await?;
        let after = p.stats()?;
        let (src_req, _, src_routes) = stat_delta(&after, &before, "source");
        let (tgt_req, tgt_429, tgt_routes) = stat_delta(&after, &before, "target");
        let created = m.report.count(runs::counter::CREATED).max(1) as f64;
        let (tmin, tmin_how) = target_minimum(to, shape, tickets);
        let (smin, smin_how) = source_minimum(from, shape);
        let t_per = tgt_req as f64 / created;
        let s_per = src_req as f64 / created;
        let dir = format!("{}->{}", desk_name(from), desk_name(to));
        say(json, &format!("{dir}: {} tickets created ({} failed) in {:.1} s", created, m.report.count(runs::counter::FAILED), m.wall));
        say(json, &format!("  target calls/ticket {t_per:.3} vs minimum {tmin:.3} ({tmin_how}): ratio {:.2} (target: ≤ 1.05); 429s {tgt_429}", t_per / tmin));
        say(json, &format!("  source calls/ticket {s_per:.3} vs minimum {smin:.3} ({smin_how}): ratio {:.2}", s_per / smin));
        say(json, &format!("  report: source_calls={} target_calls={}", m.report.count("source_calls"), m.report.count("target_calls")));
        say(json, &format!("  target routes: {}", Value::Object(tgt_routes.clone())));
        say(json, &format!("  source routes: {}", Value::Object(src_routes.clone())));
        results.push(json!({
            "direction": dir, "tickets": tickets, "created": created, "failed": m.report.count(runs::counter::FAILED), "wall_secs": m.wall,
            "target_calls": tgt_req, "target_calls_per_ticket": t_per, "target_minimum": tmin, "target_minimum_is": tmin_how, "target_ratio": t_per / tmin,
            "target_throttled": tgt_429,
            "source_calls": src_req, "source_calls_per_ticket": s_per, "source_minimum": smin, "source_minimum_is": smin_how, "source_ratio": s_per / smin,
            "report_source_calls": m.report.count("source_calls"), "report_target_calls": m.report.count("target_calls"),
            "target_routes": tgt_routes, "source_routes": src_routes,
        }));
    }
    Ok(json!({"scenario": "calls", "shape": {"comments": shape.comments, "attachments": shape.attachments, "attachment_bytes": shape.attachment_bytes}, "bound": "target calls/ticket within 5% of the minimum", "results": results}))
}

// ---- scenario 3: engine overhead ---------------------------------------------------------------------------

async fn engine_overhead(tickets: usize, shape: &Shape, workers: usize, json: bool) -> anyhow::Result<Value> {
    let t0 = Instant::now();
    let mut p = SimsProc::spawn(Desk::Zendesk, Desk::Zendesk, tickets, shape, &[])?;
    say(json, &format!("seeded {tickets} tickets in {:.1} s (simulator process {})", t0.elapsed().as_secs_f64(), p.pid()));
    let b = open(&p, workers, None, Some(one_import_each()))?;
    settle().await;
    let m = measured_run(&b, &p, RunKind::Full).await?;
    let after = p.stats()?;
    let created = m.report.count(runs::counter::CREATED) as f64;
    let tps = created / m.wall;
    let cpu_per_k = m.cpu / created * 1000.0;
    let sim_cpu_per_k = m.sim_cpu / created * 1000.0;
    say(json, &format!("engine: {created} tickets ({} failed) in {:.1} s = {tps:.0} tickets/s vs target 20000: ratio {:.3}", m.report.count(runs::counter::FAILED), m.wall, tps / 20000.0));
    say(json, &format!("  engine process CPU {:.1} s = {cpu_per_k:.2} CPU-s per 1,000 tickets ({:.1} s of it kernel time; {:.0} % of 2 cores); simulator process CPU {:.1} s = {sim_cpu_per_k:.2} CPU-s per 1,000", m.cpu, m.cpu_sys, m.cpu / m.wall / 2.0 * 100.0, m.sim_cpu));
    say(json, &format!("  peak RSS {:.0} MiB; state ops {:?} = {:.1} per ticket", m.peak_rss_mib, m.state, m.state.total as f64 / created));
    say(json, &format!("  api calls: source {} target {}", after["source"]["requests_total"], after["target"]["requests_total"]));
    let per_ticket: serde_json::Map<String, Value> = m.state_kinds.iter().map(|(k, v)| (k.clone(), json!((*v as f64 / created * 100.0).round() / 100.0))).collect();
    say(json, &format!("  state ops per ticket by kind: {}", Value::Object(per_ticket.clone())));
    Ok(json!({
        "scenario": "engine", "tickets": tickets, "workers": workers, "shape": {"comments": shape.comments, "attachments": shape.attachments, "attachment_bytes": shape.attachment_bytes},
        "created": created, "failed": m.report.count(runs::counter::FAILED), "wall_secs": m.wall, "tickets_per_sec": tps, "target_tickets_per_sec": 20000, "ratio": tps / 20000.0,
        "engine_cpu_secs": m.cpu, "engine_cpu_sys_secs": m.cpu_sys, "engine_cpu_secs_per_1000": cpu_per_k, "sim_cpu_secs": m.sim_cpu, "sim_cpu_secs_per_1000": sim_cpu_per_k,
        "peak_rss_mib": m.peak_rss_mib, "state_ops": m.state, "state_ops_per_ticket": m.state.total as f64 / created, "state_ops_per_ticket_by_kind": per_ticket,
        "source_requests": after["source"]["requests_total"], "target_requests": after["target"]["requests_total"],
    }))
}

// ---- scenario 4: delta scaling -----------------------------------------------------------------------------

async fn delta(sizes: &[usize], changes: usize, workers: usize, json: bool) -> anyhow::Result<Value> {
    let shape = Shape { comments: 1, attachments: 0, attachment_bytes: 0 };
    let mut results = vec![];
    for &n in sizes {
        let t0 = Instant::now();
        let mut p = SimsProc::spawn(Desk::Zendesk, Desk::Zendesk, n, &shape, &[])?;
        let seeded = t0.elapsed().as_secs_f64();
        let b = open(&p, workers, None, Some(one_import_each()))?;
        settle().await;
        let full = measured_run(&b, &p, RunKind::Full).await?;
        say(json, &format!("{n} tickets: seeded in {seeded:.1} s; full copy {:.1} s ({} created, {} failed), state ops {}", full.wall, full.report.count(runs::counter::CREATED), full.report.count(runs::counter::FAILED), full.state.total));
        p.ask(&format!("change {changes}"))?;
        tokio::time::sleep(Duration::from_secs(LAG_SECS + 2)).await;
        let before = p.stats()?;
        let d = measured_run(&b, &p, RunKind::Delta).await?;
        let after = p.stats()?;
        let (src_req, _, src_routes) = stat_delta(&after, &before, "source");
        let (tgt_req, _, tgt_routes) = stat_delta(&after, &before, "target");
        say(json, &format!("  delta: {:.2} s, listed {} updated {} comments {}; state ops {:?}; api source {src_req} target {tgt_req}", d.wall, d.report.count(runs::counter::LISTED), d.report.count(runs::counter::UPDATED), d.report.count(runs::counter::COMMENTS), d.state));
        say(json, &format!("  delta state ops by kind: {}", serde_json::to_string(&d.state_kinds)?));
        results.push(json!({
            "tickets": n, "seed_secs": seeded, "full_secs": full.wall, "full_created": full.report.count(runs::counter::CREATED), "full_state_ops": full.state,
            "delta_secs": d.wall, "delta_cpu_secs": d.cpu, "delta_listed": d.report.count(runs::counter::LISTED), "delta_updated": d.report.count(runs::counter::UPDATED),
            "delta_comments": d.report.count(runs::counter::COMMENTS), "delta_failed": d.report.count(runs::counter::FAILED),
            "delta_state_ops": d.state, "delta_state_kinds": d.state_kinds, "delta_source_calls": src_req, "delta_target_calls": tgt_req, "source_routes": src_routes, "target_routes": tgt_routes,
            "state_db_mib": std::fs::metadata(b.dir.0.join("state.sqlite")).map(|m| m.len() as f64 / 1048576.0).unwrap_or(0.0),
        }));
    }
    let first = results.first().and_then(|r| r["delta_secs"].as_f64()).unwrap_or(0.0);
    let last = results.last().and_then(|r| r["delta_secs"].as_f64()).unwrap_or(0.0);
    let ratio = if first > 0.0 { last / first } else { 0.0 };
    say(json, &format!("delta time at {} / at {}: {ratio:.2} (target: ≤ 1.5)", sizes.last().unwrap_or(&0), sizes.first().unwrap_or(&0)));
    Ok(json!({"scenario": "delta", "changes": changes, "results": results, "time_ratio_largest_vs_smallest": ratio, "bound": 1.5}))
}

// ---- scenario 5: attachment streaming ----------------------------------------------------------------------

async fn attachment(mibs: &[u64], json: bool) -> anyhow::Result<Value> {
    let mut results = vec![];
    for &mib in mibs {
        let shape = Shape { comments: 1, attachments: 1, attachment_bytes: mib * 1024 * 1024 };
        let t0 = Instant::now();
        let p = SimsProc::spawn(Desk::Zendesk, Desk::Zendesk, 1, &shape, &[])?;
        let seeded = t0.elapsed().as_secs_f64();
        let b = open(&p, 2, None, Some(json!({"max_attachment_bytes": BIG})))?;
        settle().await;
        let rss_before = vm_mib("self", "VmRSS:");
        let m = measured_run(&b, &p, RunKind::Full).await?;
        let ok = m.report.count(runs::counter::CREATED) == 1 && m.report.failures.is_empty() && m.report.warnings.is_empty();
        say(json, &format!("{mib} MiB attachment: {:.1} s, copied={ok} (attachments {}), engine peak RSS {:.1} MiB (RSS before the run {:.1} MiB) vs bound 64 MiB: ratio {:.2}; simulator process peak RSS {:.0} MiB", m.wall, m.report.count(runs::counter::ATTACHMENTS), m.peak_rss_mib, rss_before, m.peak_rss_mib / 64.0, vm_mib(&p.pid(), "VmHWM:")));
        for w in m.report.warnings.iter().take(3) {
            say(json, &format!("  warning: {w}"));
        }
        results.push(json!({
            "mib": mib, "seed_secs": seeded, "wall_secs": m.wall, "copied": ok, "attachments": m.report.count(runs::counter::ATTACHMENTS),
            "engine_peak_rss_mib": m.peak_rss_mib, "engine_rss_before_mib": rss_before, "ratio": m.peak_rss_mib / 64.0,
            "sim_process_peak_rss_mib": vm_mib(&p.pid(), "VmHWM:"), "warnings": m.report.warnings, "failures": m.report.failures.iter().map(|f| f.cause.clone()).collect::<Vec<_>>(),
        }));
    }
    Ok(json!({"scenario": "attachment", "bound_mib": 64, "results": results}))
}

// ---- scenario 1: rate-limit saturation ---------------------------------------------------------------------

#[allow(clippy::too_many_arguments)]
async fn saturation(directions: &[String], compress: u32, zendesk_rpm: u32, zendesk_secs: u64, paced: bool, shape: &Shape, workers: usize, json: bool) -> anyhow::Result<Value> {
    let mut results = vec![];
    for d in directions {
        let (from, to) = match d.as_str() {
            "zendesk-to-freshdesk" => (Desk::Zendesk, Desk::Freshdesk),
            "freshdesk-to-zendesk" => (Desk::Freshdesk, Desk::Zendesk),
            _ => bail!("unknown direction {d:?}"),
        };
        // The bound in useful writes (tickets) per minute of the plan, for this shape.
        let (min_calls, _) = target_minimum(to, shape, 1000);
        let (bound_per_min, scale, tickets, extra, target_extra) = match to {
            Desk::Freshdesk => {
                // Growth: 200 requests/min account-wide, 80 ticket creates/min.
                let bound = (200.0 / min_calls).min(80.0);
                let tickets = (bound * 3.0) as usize; // about three plan minutes (18 s at 10×)
                // 2 % under the limit: the simulator counts fixed windows, so pacing at exactly the limit
                // lets network jitter put one request too many into a window now and then.
                let te = paced.then(|| json!({"requests_per_minute": 196 * compress}));
                (bound, compress as f64, tickets, vec!["--fd-plan".into(), "growth".into(), "--fd-compress".into(), compress.to_string()], te)
            }
            Desk::Zendesk => {
                let bound = zendesk_rpm as f64 / min_calls.max(1.0 / 100.0);
                let tickets = (bound * zendesk_secs as f64 / 60.0) as usize;
                let te = paced.then(|| json!({"requests_per_minute": zendesk_rpm * 98 / 100}));
                (bound, 1.0, tickets, vec!["--zd-rpm".into(), zendesk_rpm.to_string()], te)
            }
        };
        let mut p = SimsProc::spawn(from, to, tickets, shape, &extra)?;
        let b = open(&p, workers, None, target_extra)?;
        settle().await;
        let before = p.stats()?;
        let m = measured_run(&b, &p, RunKind::Full).await?;
        let after = p.stats()?;
        let (tgt_req, tgt_429, routes) = stat_delta(&after, &before, "target");
        let created = m.report.count(runs::counter::CREATED) as f64;
        let plan_minutes = m.wall * scale / 60.0;
        let per_min = created / plan_minutes;
        let share_429 = tgt_429 as f64 / tgt_req.max(1) as f64;
        say(json, &format!(
            "{d}: {created} tickets in {:.1} s real = {plan_minutes:.2} plan minutes (window ×1/{scale}) → {per_min:.1} tickets/min vs bound {bound_per_min:.1}: ratio {:.3} (target ≥ 0.95); 429s {tgt_429}/{tgt_req} = {:.1} % (target < 1 %)",
            m.wall, per_min / bound_per_min, share_429 * 100.0
        ));
        say(json, &format!("  target routes: {}", Value::Object(routes.clone())));
        results.push(json!({
            "direction": d, "tickets": tickets, "created": created, "failed": m.report.count(runs::counter::FAILED), "wall_secs": m.wall, "time_compression": scale, "plan_minutes": plan_minutes,
            "tickets_per_min": per_min, "bound_per_min": bound_per_min, "ratio": per_min / bound_per_min, "target_requests": tgt_req, "target_429": tgt_429, "share_429": share_429,
            "paced": paced, "target_routes": routes,
        }));
    }
    Ok(json!({"scenario": "saturation", "shape": {"comments": shape.comments, "attachments": shape.attachments, "attachment_bytes": shape.attachment_bytes}, "results": results}))
}

/// A temporary state directory removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let base = std::env::var_os("DELTADESK_BENCH_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        let p = base.join(format!("deltadesk-bench-{}-{}", std::process::id(), chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)));
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

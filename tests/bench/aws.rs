//! `deltadesk-aws-bench`: issue #7's AWS benchmarks (BENCHMARKS.md, scenarios 6 and 7).
//!
//! - `cost`: a full migration, a delta and an idle delta on moto through the serverless use cases, with an
//!   [`AwsMeter`] on every AWS client. Counts per migrated ticket: SQS requests (and 64 KiB chunks),
//!   DynamoDB read/write request units, S3 requests by price class, Secrets Manager calls, Lambda
//!   invocations and their measured durations at the memory sizes of infra/template.yaml; then dollars
//!   per 1M tickets at the published us-east-1 prices below.
//! - `lambda-start`: each function binary's size (as built and stripped) and its time from process start
//!   to its first `GET /2018-06-01/runtime/invocation/next` on a Runtime API listener of this process.
//!
//! Both use the moto deployment helpers of `deltadesk_tests::moto_support`; without `--moto URL` (or
//! `DELTADESK_MOTO_ENDPOINT`) a `moto_server` is started on a free port and stopped at the end.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use deltadesk_core::engine::verify::verify;
use deltadesk_serverless::api::{handle as api, ApiRequest};
use deltadesk_serverless::scheduler;
use deltadesk_sim::zendesk::ZendeskSim;
use deltadesk_tests::aws_meter::{AwsMeter, Tally};
use deltadesk_tests::moto_support::{deploy, deploy_metered, register, start_sims, Deployment};
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(name = "deltadesk-aws-bench", about = "AWS cost per ticket (on moto) and Lambda start times (issue #7)")]
struct Cli {
    /// moto's endpoint; by default DELTADESK_MOTO_ENDPOINT, else a moto_server started for the run.
    #[arg(long, global = true)]
    moto: Option<String>,
    /// One JSON object instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// Scenario 6: AWS requests, units and dollars per migrated ticket, full run and delta.
    Cost {
        #[arg(long, default_value_t = 200)]
        tickets: usize,
        /// Tickets changed (one new comment each) before the delta.
        #[arg(long, default_value_t = 50)]
        changes: usize,
        /// Comments per ticket (the first is the description).
        #[arg(long, default_value_t = 5)]
        comments: usize,
        /// Attachments per ticket (one on each of the first comments).
        #[arg(long, default_value_t = 1)]
        attachments: usize,
        #[arg(long, default_value_t = 4096)]
        attachment_bytes: usize,
        /// Help-desk API latency assumed for the Lambda-duration estimate (the simulators answer at once).
        #[arg(long, default_value_t = 200)]
        api_latency_ms: u64,
    },
    /// Scenario 7: function binary sizes and time from process start to the first Runtime API request.
    LambdaStart {
        /// Where the release binaries are (`cargo build --release -p scheduler -p fetcher -p writer -p api`).
        #[arg(long, default_value = "target/release")]
        bin_dir: PathBuf,
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
}

const FUNCTIONS: [&str; 4] = ["scheduler", "fetcher", "writer", "api"];
const MIGRATION: &str = "cost";

/// A published price: `usd` per `per` units.
struct Price {
    what: &'static str,
    usd: f64,
    per: f64,
    source: &'static str,
}

/// us-east-1 prices, read on 2026-12-04 (BENCHMARKS.md lists them with their sources). Free tiers are ignored.
const PRICES: [Price; 8] = [
    Price { what: "Lambda requests", usd: 0.20, per: 1e6, source: "https://aws.amazon.com/lambda/pricing/ (via cloudchipr.com/blog/aws-lambda-pricing)" },
    Price { what: "Lambda duration, Arm, per GB-s (first 7.5 billion GB-s)", usd: 0.000_013_333_4, per: 1.0, source: "https://cloudchipr.com/blog/aws-lambda-pricing" },
    Price { what: "SQS standard requests (per 64 KiB chunk; first 100 billion)", usd: 0.40, per: 1e6, source: "https://cloudburn.io/blog/amazon-sqs-pricing" },
    Price { what: "DynamoDB on-demand write request units", usd: 0.625, per: 1e6, source: "https://airbyte.com/data-engineering-resources/dynamodb-pricing" },
    Price { what: "DynamoDB on-demand read request units", usd: 0.125, per: 1e6, source: "https://airbyte.com/data-engineering-resources/dynamodb-pricing" },
    Price { what: "S3 Standard PUT, COPY, POST, LIST requests", usd: 0.005, per: 1e3, source: "https://c3x.dev/blog/s3-request-fees-explained" },
    Price { what: "S3 Standard GET, HEAD requests", usd: 0.0004, per: 1e3, source: "https://c3x.dev/blog/s3-request-fees-explained" },
    Price { what: "Secrets Manager API calls", usd: 0.05, per: 1e4, source: "https://hivebook.wiki/wiki/aws-secrets-manager-rotated-secrets-dynamic-db-credentials-kms" },
];

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _moto = Moto::ensure(cli.moto.clone())?;
    let out = match cli.scenario {
        Scenario::Cost { tickets, changes, comments, attachments, attachment_bytes, api_latency_ms } => {
            cost(tickets, changes, comments, attachments, attachment_bytes, api_latency_ms, cli.json).await?
        }
        Scenario::LambdaStart { bin_dir, runs } => lambda_start(&bin_dir, runs, cli.json).await?,
    };
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}

fn say(json: bool, s: &str) {
    if !json {
        println!("{s}");
    }
}

/// A moto server this process started (stopped on drop), or none when one was named.
struct Moto(Option<Child>);

impl Moto {
    fn ensure(url: Option<String>) -> anyhow::Result<Moto> {
        let url = url.or_else(|| std::env::var("DELTADESK_MOTO_ENDPOINT").ok().filter(|v| !v.is_empty()));
        if let Some(u) = url {
            std::env::set_var("DELTADESK_MOTO_ENDPOINT", u);
            return Ok(Moto(None));
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting moto_server (pip install 'moto[server]'), or pass --moto URL")?;
        let moto = Moto(Some(child));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("moto_server did not start on port {port}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        std::env::set_var("DELTADESK_MOTO_ENDPOINT", format!("http://127.0.0.1:{port}"));
        Ok(moto)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// MemorySize of each function in infra/template.yaml (MiB): the size Lambda bills duration at.
fn template_memory() -> anyhow::Result<Vec<(&'static str, f64)>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/template.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = vec![];
    for f in FUNCTIONS {
        let resource = format!("  {}{}Function:", f[..1].to_uppercase(), &f[1..]);
        let start = text.find(&resource).with_context(|| format!("{resource} in the template"))?;
        // The function's own MemorySize: under its resource line, before the next resource (2-space indent).
        let mut mb = None;
        for l in text[start + resource.len()..].lines().skip(1) {
            if l.starts_with("  ") && !l.starts_with("   ") {
                break;
            }
            if let Some(v) = l.trim().strip_prefix("MemorySize:") {
                mb = Some(v.trim().parse::<f64>().with_context(|| format!("MemorySize of {f}"))?);
                break;
            }
        }
        let mb = mb.with_context(|| format!("no MemorySize under {resource}"))?;
        out.push((f, mb));
    }
    Ok(out)
}

// ---- scenario 6: cost -----------------------------------------------------------------------------------------

/// The shaped source tickets: `comments` each, `attachments` of `bytes` unique bytes on the first comments.
fn shape_tickets(source: &ZendeskSim, tickets: usize, comments: usize, attachments: usize, bytes: usize) -> anyhow::Result<Vec<u64>> {
    let att = |t: usize, c: usize| {
        (c < attachments).then(|| {
            let mut v: Vec<u8> = (0..bytes).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
            // Unique per attachment, so content-addressed staging cannot deduplicate them.
            for (i, b) in format!("{t:08}{c:08}").bytes().enumerate().take(v.len()) {
                v[i] = b;
            }
            (format!("doc-{t}-{c}.pdf"), "application/pdf".to_string(), v)
        })
    };
    let mut ids = vec![];
    for t in 0..tickets {
        let id = source
            .try_create_ticket(&format!("Order {t} missing"), &format!("customer{}@example.com", t % 50), &format!("<p>Ticket {t}: my order has not arrived.</p>"), att(t, 0))
            .map_err(anyhow::Error::msg)?;
        for c in 1..comments.max(1) {
            source.try_add_comment(id, None, c % 2 == 1, &format!("<p>Comment {c} on ticket {t}.</p>"), att(t, c)).map_err(anyhow::Error::msg)?;
        }
        ids.push(id);
    }
    Ok(ids)
}

async fn timed_api(d: &Deployment, meter: &AwsMeter, method: &str, path: &str, body: Option<Value>) -> Value {
    let started = Instant::now();
    let r = api(&d.ctx, &ApiRequest { method: method.into(), path: path.into(), body: body.map(|b| b.to_string()) }).await;
    meter.invocation("api", 0, started.elapsed());
    json!({"status": r.status, "body": r.body})
}

async fn timed_schedule(d: &Deployment, meter: &AwsMeter) -> anyhow::Result<Value> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/events/eventbridge-schedule.json");
    let event: Value = serde_json::from_str(&std::fs::read_to_string(p)?)?;
    let started = Instant::now();
    let out = scheduler::handle(&d.ctx, &event).await?;
    meter.invocation("scheduler", 0, started.elapsed());
    Ok(out)
}

/// The last run's counters, read outside the meter.
async fn run_counts(d: &Deployment, meter: &AwsMeter) -> anyhow::Result<Value> {
    let _p = meter.pause();
    let e = d.ctx.engine(MIGRATION).await?;
    let run = deltadesk_core::engine::runs::load_migration(&e).await?.0.last_run.context("no run")?;
    Ok(serde_json::to_value(deltadesk_core::engine::runs::counters(&e, &run).await?)?)
}

fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((s.len() as f64 - 1.0) * p).round() as usize]
}

/// One measured phase turned into units and dollars per ticket.
fn phase_costs(name: &str, t: &Tally, tickets: f64, memory: &[(&str, f64)], help_desk_calls: (u64, u64), latency_ms: u64, json: bool) -> Value {
    let per = |x: f64| x / tickets.max(1.0);
    let mut gb_s = 0.0;
    let mut invocations = 0u64;
    let mut functions = serde_json::Map::new();
    for (f, inv) in &t.invocations {
        let mb = memory.iter().find(|(n, _)| n == f).map_or(512.0, |(_, m)| *m);
        // Lambda bills each invocation's duration rounded up to the millisecond.
        let billed_ms: f64 = inv.durations_ms.iter().map(|d| d.ceil()).sum();
        let f_gb_s = billed_ms / 1000.0 * mb / 1024.0;
        gb_s += f_gb_s;
        invocations += inv.count;
        functions.insert(
            f.clone(),
            json!({"invocations": inv.count, "records": inv.records, "memory_mb": mb, "median_ms": percentile(&inv.durations_ms, 0.5), "p95_ms": percentile(&inv.durations_ms, 0.95), "gb_s": f_gb_s}),
        );
    }
    // Estimate, not a count: the simulators answer at once, a real help desk in ~latency. Each call is
    // made inside an invocation (source calls in the fetcher, target calls in the writer, one at a time).
    let mem = |f: &str| memory.iter().find(|(n, _)| *n == f).map_or(512.0, |(_, m)| *m) / 1024.0;
    let (src, tgt) = help_desk_calls;
    let est_extra_gb_s = latency_ms as f64 / 1000.0 * (src as f64 * mem("fetcher") + tgt as f64 * mem("writer"));
    let sqs = t.sqs_billed_total() as f64;
    let units = [
        invocations as f64,
        gb_s,
        sqs,
        t.dynamo_write_units,
        t.dynamo_read_units,
        t.s3_tier1 as f64,
        t.s3_tier2 as f64,
        t.secrets_calls as f64,
    ];
    let usd_per_m: Vec<f64> = units.iter().zip(PRICES.iter()).map(|(u, p)| per(*u) * 1e6 * p.usd / p.per).collect();
    let total: f64 = usd_per_m.iter().sum();
    let est_lambda_usd = per(est_extra_gb_s) * 1e6 * PRICES[1].usd;
    say(json, &format!("\n{name}: {tickets} tickets"));
    say(json, &format!("  {:<58} {:>12} {:>14}", "per ticket", "units", "$ per 1M tickets"));
    for ((u, p), usd) in units.iter().zip(PRICES.iter()).zip(&usd_per_m) {
        say(json, &format!("  {:<58} {:>12.4} {:>14.2}", p.what, per(*u), usd));
    }
    say(json, &format!("  {:<58} {:>12} {:>14.2}", "total (counted; Lambda duration as measured here)", "", total));
    say(json, &format!("  estimate: + {:.4} GB-s per ticket if each of the {:.2} source / {:.2} target calls per ticket took {latency_ms} ms = + ${est_lambda_usd:.2} per 1M → ${:.2}", per(est_extra_gb_s), per(src as f64), per(tgt as f64), total + est_lambda_usd));
    for (f, v) in &functions {
        say(json, &format!("  {f}: {} invocations, {} records, median {:.1} ms, p95 {:.1} ms at {} MB", v["invocations"], v["records"], v["median_ms"].as_f64().unwrap_or(0.0), v["p95_ms"].as_f64().unwrap_or(0.0), v["memory_mb"]));
    }
    let mut ops = serde_json::Map::new();
    for (k, c) in &t.ops {
        ops.insert(k.clone(), json!({"requests": c.requests, "per_ticket": per(c.requests as f64), "failed": c.failed, "empty_receives": c.empty}));
        say(json, &format!("    {k}: {} ({:.3}/ticket){}{}", c.requests, per(c.requests as f64), if c.failed > 0 { format!(", {} failed", c.failed) } else { String::new() }, if c.empty > 0 { format!(", {} empty", c.empty) } else { String::new() }));
    }
    say(json, &format!("    DynamoDB: {:.3} WRU/ticket (of which failed conditions {:.3}), {:.3} RRU/ticket; S3 bytes put {:.0}/ticket", per(t.dynamo_write_units), per(t.dynamo_failed_write_units), per(t.dynamo_read_units), per(t.s3_bytes_put as f64)));
    json!({
        "phase": name, "tickets": tickets,
        "per_ticket": {
            "lambda_invocations": per(invocations as f64), "lambda_gb_s": per(gb_s), "sqs_billed_requests": per(sqs),
            "dynamo_wru": per(t.dynamo_write_units), "dynamo_rru": per(t.dynamo_read_units), "dynamo_failed_wru": per(t.dynamo_failed_write_units),
            "s3_tier1": per(t.s3_tier1 as f64), "s3_tier2": per(t.s3_tier2 as f64), "s3_free": per(t.s3_free as f64), "s3_bytes_put": per(t.s3_bytes_put as f64),
            "secrets_calls": per(t.secrets_calls as f64), "help_desk_source_calls": per(src as f64), "help_desk_target_calls": per(tgt as f64),
        },
        "usd_per_million_tickets": PRICES.iter().zip(&usd_per_m).map(|(p, u)| (p.what.to_string(), json!(u))).collect::<serde_json::Map<_, _>>(),
        "usd_per_million_tickets_total": total,
        "estimate_lambda_extra_usd_per_million_at_latency": est_lambda_usd, "assumed_latency_ms": latency_ms,
        "functions": functions, "operations": ops,
    })
}

async fn cost(tickets: usize, changes: usize, comments: usize, attachments: usize, attachment_bytes: usize, latency_ms: u64, json: bool) -> anyhow::Result<Value> {
    let memory = template_memory()?;
    let meter = AwsMeter::new();
    let d = deploy_metered(5, &meter).await;
    let (source, target) = start_sims(0).await;
    let ids = shape_tickets(&source, tickets, comments, attachments, attachment_bytes)?;
    register(&d, MIGRATION, &source, &target, 5).await;
    let setup = meter.take();
    say(json, &format!("deployed on {}; {tickets} tickets of {comments} comments and {attachments} × {attachment_bytes} B attachments; registering took {} AWS requests", std::env::var("DELTADESK_MOTO_ENDPOINT").unwrap_or_default(), setup.ops.values().map(|c| c.requests).sum::<u64>()));
    // Past the publication lag and the clock-skew margin, so the full read sees every ticket.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls = |s: &ZendeskSim| s.stats().requests_total;

    // Full run: one API call starts it, the fetcher and writer do the rest.
    let (s0, t0) = (calls(&source), calls(&target));
    let started = timed_api(&d, &meter, "POST", &format!("/migrations/{MIGRATION}/runs"), Some(json!({"kind": "full"}))).await;
    if started["status"] != 202 {
        bail!("starting the full run: {started}");
    }
    if !d.run_lambdas(MIGRATION, 0).await {
        bail!("the full run did not commit");
    }
    let full = meter.take();
    let full_counts = run_counts(&d, &meter).await?;
    let created = full_counts["created"].as_u64().unwrap_or(0) as f64;
    let (stored_bytes, stored_items) = meter.dynamo_stored();
    let full_out = phase_costs("full run", &full, created, &memory, (calls(&source) - s0, calls(&target) - t0), latency_ms, json);

    // Delta: one new comment on `changes` tickets spread over the id range, then the schedule fires.
    for i in 0..changes.min(ids.len()) {
        let id = ids[i * ids.len() / changes.min(ids.len()).max(1)];
        source.try_add_comment(id, None, true, &format!("<p>Delta change {i}.</p>"), None).map_err(anyhow::Error::msg)?;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (s0, t0) = (calls(&source), calls(&target));
    let planned = timed_schedule(&d, &meter).await?;
    if !d.run_lambdas(MIGRATION, 0).await {
        bail!("the delta did not commit: {planned}");
    }
    let delta = meter.take();
    let delta_counts = run_counts(&d, &meter).await?;
    let updated = delta_counts["updated"].as_u64().unwrap_or(0) as f64;
    let delta_out = phase_costs("delta", &delta, updated, &memory, (calls(&source) - s0, calls(&target) - t0), latency_ms, json);

    // The next delta re-reads the changes still inside its overlap (overlap_secs is 3 s here, 300 s by
    // default) and skips them as unchanged: a further cost of a change, measured apart.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (s0, t0) = (calls(&source), calls(&target));
    let planned = timed_schedule(&d, &meter).await?;
    if !d.run_lambdas(MIGRATION, 0).await {
        bail!("the re-reading delta did not commit: {planned}");
    }
    let reread = meter.take();
    let reread_counts = run_counts(&d, &meter).await?;
    let relisted = reread_counts["listed"].as_u64().unwrap_or(0) as f64;
    let reread_out = phase_costs("next delta, re-reading the changes in its overlap (per re-read ticket)", &reread, relisted, &memory, (calls(&source) - s0, calls(&target) - t0), latency_ms, json);

    // An idle delta, past the overlap: what each schedule tick costs with nothing changed (a fixed cost
    // per migration, not per ticket).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (s0, t0) = (calls(&source), calls(&target));
    let planned = timed_schedule(&d, &meter).await?;
    if !d.run_lambdas(MIGRATION, 0).await {
        bail!("the idle delta did not commit: {planned}");
    }
    let idle = meter.take();
    let idle_counts = run_counts(&d, &meter).await?;
    let idle_out = phase_costs("idle delta (per schedule tick, not per ticket)", &idle, 1.0, &memory, (calls(&source) - s0, calls(&target) - t0), latency_ms, json);
    let per_month = idle_out["usd_per_million_tickets_total"].as_f64().unwrap_or(0.0) / 1e6 * 4.0 * 24.0 * 30.0;
    say(json, &format!("  → ${per_month:.4} per migration-month at the template's default 15-minute DeltaSchedule (2,880 ticks); listed {}", idle_counts["listed"]));

    // The run must be right for its cost to mean anything.
    let e = d.ctx.engine(MIGRATION).await?;
    let v = verify(e.source.as_ref(), e.target.as_ref(), &e.settings.source_ref_prefix, 4).await?;
    say(json, &format!("\n{}; DynamoDB holds {stored_items} items, {stored_bytes} bytes after the full run ({:.0} bytes, {:.1} items per ticket)", v.summary_line(), stored_bytes as f64 / created.max(1.0), stored_items as f64 / created.max(1.0)));
    if !v.is_clean() {
        bail!("verify is not clean: {}", v.summary_line());
    }
    say(json, "prices (us-east-1, read 2026-12-04):");
    for p in &PRICES {
        say(json, &format!("  ${} per {} {} — {}", p.usd, p.per, p.what, p.source));
    }
    Ok(json!({
        "scenario": "aws-cost", "tickets": tickets, "changes": changes, "shape": {"comments": comments, "attachments": attachments, "attachment_bytes": attachment_bytes},
        "memory_mb": memory.iter().map(|(f, m)| (f.to_string(), json!(m))).collect::<serde_json::Map<_, _>>(),
        "full": full_out, "full_counts": full_counts, "delta": delta_out, "delta_counts": delta_counts, "overlap_reread": reread_out, "reread_counts": reread_counts, "idle_delta": idle_out, "idle_counts": idle_counts, "idle_usd_per_migration_month": per_month,
        "dynamo_stored_bytes_after_full": stored_bytes, "dynamo_items_after_full": stored_items, "verify": v.summary_line(),
        "prices": PRICES.iter().map(|p| json!({"what": p.what, "usd": p.usd, "per": p.per, "source": p.source, "read": "2026-12-04"})).collect::<Vec<_>>(),
    }))
}

// ---- scenario 7: Lambda start ---------------------------------------------------------------------------------

/// Starts `bin` with the Runtime API on a listener of ours; the time until its first request's head has
/// arrived, and that request line.
fn start_once(bin: &Path, env: &[(String, String)], memory_mb: f64) -> anyhow::Result<(f64, String)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let (tx, rx) = std::sync::mpsc::channel();
    // A blocking accept on its own thread, so the timestamp is taken as soon as the request line is in.
    std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            let mut line = String::new();
            let ok = BufReader::new(&stream).read_line(&mut line).is_ok();
            let _ = tx.send((Instant::now(), if ok { line.trim().to_string() } else { String::new() }));
            // Hold the connection until the function is killed (the runtime waits for an event).
            std::thread::sleep(Duration::from_secs(2));
        }
    });
    let t0 = Instant::now();
    let mut child = Command::new(bin)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        // As Lambda sets it: host:port, no scheme.
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", bin.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default())
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", format!("{memory_mb}"))
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let deadline = t0 + Duration::from_secs(20);
    let got = loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(v) => break Some(v),
            Err(_) if Instant::now() > deadline => break None,
            Err(_) => {
                if let Some(status) = child.try_wait()? {
                    let mut err = String::new();
                    if let Some(e) = child.stderr.as_mut() {
                        let _ = std::io::Read::read_to_string(e, &mut err);
                    }
                    // Unblock the accept thread.
                    let _ = std::net::TcpStream::connect(("127.0.0.1", port));
                    bail!("{} exited ({status}) before asking for an event: {}", bin.display(), err.trim());
                }
            }
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let Some((at, line)) = got else {
        let _ = std::net::TcpStream::connect(("127.0.0.1", port));
        bail!("{} made no Runtime API request within 20 s", bin.display());
    };
    Ok(((at - t0).as_secs_f64() * 1000.0, line))
}

async fn lambda_start(bin_dir: &Path, runs: usize, json: bool) -> anyhow::Result<Value> {
    let memory = template_memory()?;
    // The environment infra/template.yaml gives the functions, naming a real deployment on moto.
    let d = deploy(5).await;
    let env = d.function_env();
    let tmp = std::env::temp_dir().join(format!("deltadesk-lambda-start-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let mut results = vec![];
    for f in FUNCTIONS {
        let built = bin_dir.join(f);
        let size = std::fs::metadata(&built).with_context(|| format!("{} (build it: cargo build --release -p scheduler -p fetcher -p writer -p api)", built.display()))?.len();
        let stripped = tmp.join(f);
        let status = Command::new("strip").arg("-o").arg(&stripped).arg(&built).status().context("running strip (binutils)")?;
        if !status.success() {
            bail!("strip {} failed", built.display());
        }
        let stripped_size = std::fs::metadata(&stripped)?.len();
        let mb = memory.iter().find(|(n, _)| *n == f).map_or(512.0, |(_, m)| *m);
        // One unmeasured start first: the first exec of a new file pays for reading it from disk.
        let (_, first_line) = start_once(&stripped, &env, mb)?;
        if !first_line.starts_with("GET /2018-06-01/runtime/invocation/next") {
            bail!("{f}: the first Runtime API request was {first_line:?}, not the next-invocation poll (init failed?)");
        }
        let mut times = vec![];
        for _ in 0..runs {
            times.push(start_once(&stripped, &env, mb)?.0);
        }
        let (median, p95, min, max) = (percentile(&times, 0.5), percentile(&times, 0.95), percentile(&times, 0.0), percentile(&times, 1.0));
        say(json, &format!("{f:<9} built {:>6.1} MiB, stripped {:>5.1} MiB; start → first `GET …/invocation/next`: median {median:.1} ms, p95 {p95:.1} ms (min {min:.1}, max {max:.1}; {runs} runs)", size as f64 / 1048576.0, stripped_size as f64 / 1048576.0));
        results.push(json!({"function": f, "built_bytes": size, "stripped_bytes": stripped_size, "runs": runs, "median_ms": median, "p95_ms": p95, "min_ms": min, "max_ms": max, "memory_mb": mb, "times_ms": times}));
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(json!({"scenario": "lambda-start", "bin_dir": bin_dir, "results": results}))
}

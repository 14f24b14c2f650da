//! The subcommands: each parses its input, calls the engine's use cases and prints the outcome.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use deltadesk_core::engine::plan::{plan_window, PlanOutcome};
use deltadesk_core::engine::report::{build_report, RunReport};
use deltadesk_core::engine::runner::{drive, DriveOutcome, Progress, RunnerConfig};
use deltadesk_core::engine::{runs, verify, Engine};
use deltadesk_core::window::RunKind;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::{wiring, Cli, Command, DlqOp, MappingOp, MigrateKind};

/// Exit codes: 0 clean; 1 error or stuck; 3 the run committed but some tickets failed (listed in the report).
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Demo(args) => crate::demo::demo(args, cli.json).await,
        Command::Simulate(args) => crate::demo::simulate(args).await,
        Command::Bench(args) => crate::bench::bench(args, cli.json).await,
        Command::Connectors => {
            let list = deltadesk_connectors::registry::connectors();
            if cli.json {
                let v: Vec<_> = list
                    .iter()
                    .map(|c| serde_json::json!({"kind": c.kind, "description": c.description, "source": c.can_source, "target": c.can_target}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for c in list {
                    let roles = match (c.can_source, c.can_target) {
                        (true, true) => "source, target",
                        (true, false) => "source",
                        (false, true) => "target",
                        _ => "-",
                    };
                    println!("{:<12} {:<16} {}", c.kind, roles, c.description);
                }
            }
            Ok(0)
        }
        Command::Mapping { op: MappingOp::Init { out, force } } => {
            let cfg = Config::load(&cli.config)?;
            mapping_init(&cfg, out.as_deref(), force, cli.json).await
        }
        cmd => {
            let cfg = Config::load(&cli.config)?;
            let engine = wiring::engine(&cfg)?;
            let rc = wiring::runner_config(&cfg);
            match cmd {
                Command::Migrate { kind: MigrateKind::Full { restart } } => migrate(&engine, &cfg, &rc, RunKind::Full, restart, cli.json).await,
                Command::Migrate { kind: MigrateKind::Delta } => migrate(&engine, &cfg, &rc, RunKind::Delta, false, cli.json).await,
                Command::Schedule { every, max_runs } => schedule(&engine, &cfg, &rc, every, max_runs, cli.json).await,
                Command::Status => status(&engine, cli.json).await,
                Command::Report { run } => {
                    let r = build_report(&engine, &run).await?;
                    if cli.json {
                        println!("{}", serde_json::to_string_pretty(&r)?);
                    } else {
                        print!("{}", r.to_markdown());
                    }
                    Ok(0)
                }
                Command::Verify => {
                    let v = verify::for_engine(&engine, 8).await?;
                    print_verify(&v, cli.json)?;
                    Ok(if v.is_clean() { 0 } else { 1 })
                }
                Command::Dlq { op: DlqOp::Redrive } => {
                    let f = engine.fetch_queue.redrive_dead_letters().await?;
                    let w = engine.write_queue.redrive_dead_letters().await?;
                    if cli.json {
                        println!("{}", serde_json::json!({"fetch": f, "write": w}));
                    } else {
                        println!("redrove {f} fetch and {w} write messages; run `deltadesk migrate delta` to carry them through");
                    }
                    Ok(0)
                }
                Command::Demo(_) | Command::Simulate(_) | Command::Bench(_) | Command::Connectors | Command::Mapping { .. } => unreachable!("handled above"),
            }
        }
    }
}

/// `deltadesk mapping init`: both vocabularies, matched, written as a `[mapping]` section.
async fn mapping_init(cfg: &Config, out: Option<&Path>, force: bool, json: bool) -> anyhow::Result<u8> {
    if let Some(path) = out {
        if path.exists() && !force {
            anyhow::bail!("{} exists; pass --force to overwrite it", path.display());
        }
    }
    let source = deltadesk_connectors::registry::build_source(&cfg.source).context("source connector")?;
    let target = deltadesk_connectors::registry::build_target(&cfg.target).context("target connector")?;
    let (s, t) = tokio::join!(source.vocabulary(), target.vocabulary());
    let s = s.context("reading the source's groups, organizations, agents and fields")?;
    let t = t.context("reading the target's groups, organizations, agents and fields")?;
    let proposal = deltadesk_core::vocabulary::propose(&s, &t);
    let text = deltadesk_core::vocabulary::render(&proposal, source.kind(), target.kind());
    match out {
        Some(path) => std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?,
        None => print!("{text}"),
    }
    if json {
        let decisions: Vec<_> = proposal.decisions.iter().map(|d| serde_json::json!({"table": d.table, "value": d.value, "why": d.why})).collect();
        eprintln!("{}", serde_json::json!({"decisions": decisions}));
    } else {
        for d in &proposal.decisions {
            eprintln!("decide: [mapping.{}] {:?}: {}", d.table, d.value, d.why);
        }
        eprintln!("mapping init: {} value(s) to decide{}", proposal.decisions.len(), out.map(|p| format!("; written to {}", p.display())).unwrap_or_default());
    }
    Ok(0)
}

pub fn print_verify(v: &verify::VerifyReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(v)?);
        return Ok(());
    }
    for m in v.missing.iter().take(50) {
        println!("missing: source ticket {m}");
    }
    for d in v.duplicated.iter().take(50) {
        println!("duplicated: {d}");
    }
    for m in v.mismatched.iter().take(50) {
        println!("mismatched: {m}");
    }
    println!(
        "checked {} source tickets, {} target tickets, {} comments, {} attachments",
        v.source_tickets, v.target_tickets, v.comments_checked, v.attachments_checked
    );
    println!("{}", v.summary_line());
    Ok(())
}

/// Plans one run, drives it to its commit, writes its report, and returns the exit code.
pub async fn migrate(engine: &Engine, cfg: &Config, rc: &RunnerConfig, kind: RunKind, restart: bool, json: bool) -> anyhow::Result<u8> {
    let (code, report) = run_once(engine, &cfg.engine.state_dir, rc, kind, restart, json).await?;
    if let Some(r) = &report {
        print_run(r, json)?;
    }
    Ok(code)
}

pub async fn run_once(engine: &Engine, state_dir: &Path, rc: &RunnerConfig, kind: RunKind, restart: bool, json: bool) -> anyhow::Result<(u8, Option<RunReport>)> {
    deltadesk_core::engine::plan::preflight(engine).await?;
    let outcome = plan_window(engine, kind, restart).await?;
    let run = match &outcome {
        PlanOutcome::UpToDate { watermark } => {
            if !json {
                println!("up to date: nothing can have been published since the watermark {watermark}");
            }
            return Ok((0, None));
        }
        PlanOutcome::Resumed(r) => {
            if !json {
                println!("resuming open {} run {} (window {} .. {})", r.kind.as_str(), r.run_id, r.window.start, r.window.end);
            }
            r.clone()
        }
        PlanOutcome::Started(r) => r.clone(),
    };
    let bar = if json { ProgressBar::hidden() } else { ProgressBar::new(0) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos}/{len} tickets, {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(format!("{} {}", run.kind.as_str(), run.run_id));
    let on_progress = |p: &Progress| {
        bar.set_length((p.written + p.failed + p.outstanding).max(0) as u64);
        bar.set_position((p.written + p.failed).max(0) as u64);
        bar.set_message(format!("{} failed", p.failed));
    };
    let driven = drive(engine, &run.run_id, rc, &on_progress).await?;
    bar.finish_and_clear();
    let report = build_report(engine, &run.run_id).await?;
    write_report(state_dir, &report)?;
    if let (DriveOutcome::Committed, Some(done)) = (&driven, report.finished_at) {
        // A committed run never reads its staged snapshots and attachments again; without this the state
        // directory would grow by every ticket's snapshot and attachments on every run.
        let blobs = deltadesk_local::FsBlobs::new(deltadesk_local::embedded::EmbeddedPaths::under(state_dir).blobs);
        match blobs.sweep(std::time::SystemTime::from(done)).await {
            Ok(s) if s.files > 0 && !json => println!("removed {} staged files ({:.1} MiB) of committed runs", s.files, s.bytes as f64 / 1048576.0),
            Ok(_) => {}
            // Disk space, not correctness: the next commit sweeps again.
            Err(e) => tracing::warn!(error = %e, "could not remove staged files of committed runs"),
        }
    }
    let code = match driven {
        DriveOutcome::Stuck { dead_letters } => {
            eprintln!(
                "run {} is stuck: its remaining work sits in the dead-letter queues ({dead_letters} messages). Fix the cause, then `deltadesk dlq redrive` and `deltadesk migrate delta`.",
                run.run_id
            );
            1
        }
        DriveOutcome::Committed if report.failures.is_empty() => 0,
        DriveOutcome::Committed => 3,
    };
    Ok((code, Some(report)))
}

pub fn write_report(state_dir: &Path, r: &RunReport) -> anyhow::Result<()> {
    let dir = state_dir.join("reports");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join(format!("{}.json", r.run_id)), serde_json::to_vec_pretty(r)?)?;
    std::fs::write(dir.join(format!("{}.md", r.run_id)), r.to_markdown())?;
    Ok(())
}

pub fn print_run(r: &RunReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
        return Ok(());
    }
    let c = |k: &str| r.count(k);
    println!(
        "{} run {}: listed={} created={} updated={} unchanged={} deleted={} failed={} comments={} attachments={} api source={} target={} 429s={} ({:.1} s)",
        r.kind.as_str(),
        r.run_id,
        c(runs::counter::LISTED),
        c(runs::counter::CREATED),
        c(runs::counter::UPDATED),
        c(runs::counter::UNCHANGED) + c(runs::counter::SKIPPED),
        c(runs::counter::DELETED),
        c(runs::counter::FAILED),
        c(runs::counter::COMMENTS),
        c(runs::counter::ATTACHMENTS),
        c("source_calls"),
        c("target_calls"),
        c("source_throttled") + c("target_throttled"),
        r.duration_secs.unwrap_or(0.0)
    );
    for f in &r.failures {
        println!("  failed: ticket {}: {}", f.ticket, f.cause);
    }
    for w in r.warnings.iter().take(20) {
        println!("  warning: {w}");
    }
    Ok(())
}

async fn schedule(engine: &Engine, cfg: &Config, rc: &RunnerConfig, every: Duration, max_runs: Option<u64>, json: bool) -> anyhow::Result<u8> {
    let mut n = 0u64;
    let mut worst = 0u8;
    loop {
        let started = tokio::time::Instant::now();
        let code = migrate(engine, cfg, rc, RunKind::Delta, false, json).await?;
        worst = worst.max(code);
        n += 1;
        if max_runs.is_some_and(|m| n >= m) {
            return Ok(worst);
        }
        let next = started + every;
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = tokio::signal::ctrl_c() => {
                println!("interrupted: stopping the schedule after {n} runs");
                return Ok(worst);
            }
        }
    }
}

async fn status(engine: &Engine, json: bool) -> anyhow::Result<u8> {
    let (mig, _) = runs::load_migration(engine).await?;
    let all = runs::list_runs(engine).await?;
    let retries = runs::pending_retries(engine).await?;
    let fd = engine.fetch_queue.depth().await?;
    let wd = engine.write_queue.depth().await?;
    let fdl = engine.fetch_queue.dead_letters(1000).await?.len();
    let wdl = engine.write_queue.dead_letters(1000).await?.len();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "migration": engine.migration,
                "watermark": mig.watermark,
                "full_reference": mig.full_reference,
                "open_run": mig.open_run,
                "runs": all,
                "awaiting_retry": retries,
                "queues": {"fetch": {"visible": fd.visible, "in_flight": fd.in_flight, "dead": fdl}, "write": {"visible": wd.visible, "in_flight": wd.in_flight, "dead": wdl}},
            }))?
        );
        return Ok(0);
    }
    println!("migration {}", engine.migration);
    match mig.watermark {
        Some(w) => println!("  watermark: {w} (every source change at or before it is in the target)"),
        None => println!("  watermark: none yet (no successful full migration)"),
    }
    if let Some(r) = mig.full_reference {
        println!("  last successful full read started: {r}");
    }
    println!("  open run: {}", mig.open_run.as_deref().unwrap_or("none"));
    for r in all.iter().rev().take(10) {
        println!("  run {} {} {:?} window {} .. {}", r.run_id, r.kind.as_str(), r.status, r.window.start, r.window.end);
    }
    if !retries.is_empty() {
        println!("  tickets awaiting retry by the next run: {}", retries.len());
        for r in retries.iter().take(20) {
            println!("    ticket {} (failed {}x, last in {}): {}", r.ticket_id, r.failures, r.run_id, r.cause);
        }
    }
    println!("  queues: fetch {} visible, {} in flight, {fdl} dead; write {} visible, {} in flight, {wdl} dead", fd.visible, fd.in_flight, wd.visible, wd.in_flight);
    Ok(0)
}

/// `15m`, `30s`, `2h`, `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 15m, 30s or 1h"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m or h)")),
    };
    if d.is_zero() {
        return Err("the interval must be above zero".into());
    }
    Ok(d)
}


#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_parse_with_units_and_bad_ones_are_named() {
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("5 parsecs").unwrap_err().contains("5 parsecs"));
        assert!(parse_duration("0s").is_err());
    }
}

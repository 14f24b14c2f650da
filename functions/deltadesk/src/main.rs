//! `deltadesk`, the operator CLI: wiring only — config, connectors, the embedded backends, and the
//! engine's use cases. The logic lives in `deltadesk-core`.

mod bench;
mod commands;
mod config;
mod demo;
mod wiring;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "deltadesk", version, about = "Zero-downtime help-desk migration: a full copy, then recurring deltas")]
pub struct Cli {
    /// Config file (TOML; see README "Config reference").
    #[arg(long, global = true, default_value = "deltadesk.toml", env = "DELTADESK_CONFIG")]
    config: PathBuf,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Starts two Zendesk simulators, keeps live agents working in the source during a full migration and
    /// several deltas, then verifies the target against the source. Needs no config and no account.
    Demo(demo::DemoArgs),
    /// Serves a seeded source simulator and an empty target simulator until interrupted.
    Simulate(demo::SimulateArgs),
    /// Runs a full migration or one delta.
    Migrate {
        #[command(subcommand)]
        kind: MigrateKind,
    },
    /// Runs a delta every interval (e.g. `15m`, `30s`, `1h`) until interrupted.
    Schedule {
        #[arg(long, value_parser = commands::parse_duration)]
        every: std::time::Duration,
        /// Stop after this many runs (default: run until interrupted).
        #[arg(long)]
        max_runs: Option<u64>,
    },
    /// The migration's watermark, open run, recent runs, tickets awaiting retry and queue depths.
    Status,
    /// A run's report (JSON with --json, Markdown otherwise).
    Report { run: String },
    /// Compares source and target: missing, duplicated and mismatched tickets, comments and attachments.
    Verify,
    /// Lists the help-desk connectors this build knows.
    Connectors,
    /// Benchmarks (issue #7): calls, engine, delta, attachment, saturation. See BENCHMARKS.md.
    Bench(bench::BenchArgs),
    /// Field mapping between the two help desks.
    Mapping {
        #[command(subcommand)]
        op: MappingOp,
    },
    /// Dead-letter queue operations.
    Dlq {
        #[command(subcommand)]
        op: DlqOp,
    },
}

#[derive(Subcommand, Debug)]
pub enum MigrateKind {
    /// Copies everything; the first delta then takes changes from when this read started.
    Full {
        /// Abandon an unfinished full run and start the full read again.
        #[arg(long)]
        restart: bool,
    },
    /// Copies what changed since the watermark.
    Delta,
}

#[derive(Subcommand, Debug)]
pub enum MappingOp {
    /// Reads both help desks' groups, organizations, agents and custom fields and writes a starting
    /// `[mapping]` section: what matches by name (or e-mail, or domain) is filled in, what does not is
    /// marked DECIDE with the reason. Writes nothing to either help desk.
    Init {
        /// Write the section to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Overwrite `--out` if it exists.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum DlqOp {
    /// Moves dead-lettered messages back onto their queues (after fixing their cause).
    Redrive,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("DELTADESK_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(commands::run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

//! The Zendesk target's Ticket Bulk Import: new tickets coalesced into `imports/tickets/create_many` jobs
//! (README "Zendesk specifics"), under live agents and with a lost answer, against the simulators.

use std::collections::BTreeMap;
use std::time::Duration;

use deltadesk_sim::zendesk::{Faults, LiveAgentConfig, ZendeskSim, ZendeskSimConfig};
use deltadesk_tests::{Harness, Opts};

const CREATE_MANY: &str = "POST /api/v2/imports/tickets/create_many";
const SINGLE_IMPORT: &str = "POST /api/v2/imports/tickets";
const JOB_STATUS: &str = "GET /api/v2/job_statuses/{id}";

/// A harness whose target runs each bulk-import job `job_delay` after its POST (so clients must poll).
async fn harness(opts: Opts, job_delay: Duration) -> Harness {
    let mut h = Harness::start(opts).await;
    h.target = ZendeskSim::start(
        ZendeskSimConfig { publication_lag: h.opts.lag, job_delay, ..ZendeskSimConfig::empty_target(900_000) },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("target sim");
    h.engine = h.new_engine(None, None);
    h
}

fn route(h: &Harness, key: &str) -> u64 {
    h.target.stats().per_route.get(key).copied().unwrap_or(0)
}

/// A full migration and deltas while agents keep working: every new target ticket arrives through
/// `create_many` jobs shared by several tickets, none through the single import, and verify is clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_migration_with_live_agents_creates_tickets_through_shared_create_many_jobs() {
    let h = harness(Opts { tickets: 40, workers: 8, ..Default::default() }, Duration::from_millis(150)).await;
    let agents = h.source.start_live_agents(LiveAgentConfig { seed: 21, actions_per_second: 6.0, max_attachment_bytes: 16 * 1024 });
    let full = h.full().await;
    assert!(full.failures.is_empty(), "{full:#?}");
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        h.settle_and_delta().await;
    }
    let live = agents.stop().await;
    let last = h.settle_and_delta().await;
    assert!(last.failures.is_empty(), "{last:#?}");
    let v = h.verify().await;
    assert!(v.is_clean(), "{}\n{v:#?}", v.summary_line());
    assert_eq!(v.target_tickets, v.source_tickets);

    let (batches, singles, polls) = (route(&h, CREATE_MANY), route(&h, SINGLE_IMPORT), route(&h, JOB_STATUS));
    assert_eq!(singles, 0, "no ticket should be imported on its own");
    assert!(batches >= 1, "no create_many at all");
    // Every batch's job was queued when answered, so each was polled at least once.
    assert!(polls >= batches, "{polls} polls for {batches} jobs");
    // Batching happened: fewer requests than tickets created (8 workers share a request).
    let created = v.target_tickets as u64;
    assert!(batches * 2 <= created, "{batches} create_many requests for {created} tickets: creates were not coalesced");
    eprintln!("{created} tickets in {batches} create_many jobs ({polls} polls); live agents: {live:?}");
}

/// U1 with a bulk import: the answer to a `create_many` is lost after Zendesk queued the job, and the job
/// runs only later. Every ticket of that batch is in doubt; the retry must find (adopt) each one once its job
/// has run, not create a second copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_create_many_answer_creates_no_duplicate() {
    // Jobs run 4 s after their POST: later than the engine retries a failed create (more workers than
    // tickets, so a retry never waits for a free worker), so the retry's orphan look-up comes while the lost
    // batch's job is still queued. Leases and visibility outlast the polling.
    let opts = Opts { tickets: 8, workers: 16, max_attempts: 5, lease_ttl: Duration::from_secs(30), visibility: Duration::from_secs(15), ..Default::default() };
    let h = harness(opts, Duration::from_secs(4)).await;
    h.target.set_faults(Faults { lose_answers: BTreeMap::from([(CREATE_MANY.to_string(), 1)]), ..Default::default() });
    let full = h.full().await;
    assert_eq!(h.target.faults_injected(), 1, "the lost answer was not injected");
    assert!(full.failures.is_empty(), "{full:#?}");
    assert!(full.count("adopted_orphans") >= 1, "the batch whose answer was lost left no orphan to adopt: {full:#?}");
    let v = h.verify().await;
    assert!(v.is_clean(), "{}\n{v:#?}", v.summary_line());
    assert_eq!(v.target_tickets, v.source_tickets, "a duplicate target ticket exists");
    assert_eq!(route(&h, SINGLE_IMPORT), 0);
}

//! Live agents: a tokio task performing random agent actions (through the same code paths as the HTTP
//! handlers) until stopped — replies, notes, status and field changes, new tickets, deletions and spam.
//! Deleted, spam and closed tickets are never touched again (Freshdesk would allow reopening a closed
//! ticket, but agents rarely do, and a Zendesk target refuses any change to a closed ticket).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use super::model::gen_bytes;
use super::seed::{attachment_kind, attachment_size, body_html, PRODUCTS, SUBJECTS_LIVE, TAGS, TIERS};
use super::{FreshdeskSim, LiveAgentConfig, LiveStats, NewAttachment};

/// Handle on running live agents.
pub struct FreshdeskLiveAgents {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<LiveStats>,
}

impl FreshdeskLiveAgents {
    /// Stop the agents and return what they did (spam counts as `deleted`).
    pub async fn stop(self) -> LiveStats {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

pub(crate) fn start(sim: FreshdeskSim, cfg: LiveAgentConfig) -> FreshdeskLiveAgents {
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let mut agent = Agent { sim, rng: ChaCha8Rng::seed_from_u64(cfg.seed), cfg, stats: LiveStats::default() };
        let period = std::time::Duration::from_secs_f64(1.0 / agent.cfg.actions_per_second.max(0.001));
        loop {
            tokio::select! {
                _ = rx.wait_for(|v| *v) => break,
                _ = tokio::time::sleep(period) => agent.act(),
            }
        }
        agent.stats
    });
    FreshdeskLiveAgents { stop: tx, task }
}

struct Agent {
    sim: FreshdeskSim,
    rng: ChaCha8Rng,
    cfg: LiveAgentConfig,
    stats: LiveStats,
}

struct World {
    /// (id, status, requester)
    tickets: Vec<(u64, u64, u64)>,
    agents: Vec<u64>,
    contacts: usize,
    groups: Vec<u64>,
}

impl Agent {
    fn world(&self) -> World {
        let st = self.sim.lock();
        World {
            tickets: st.tickets.values().filter(|t| !t.deleted && !t.spam && t.status != 5).map(|t| (t.id, t.status, t.requester_id)).collect(),
            agents: st.agents.keys().copied().collect(),
            contacts: st.contacts.len(),
            groups: st.groups.keys().copied().collect(),
        }
    }

    fn attachment(&mut self) -> NewAttachment {
        let n: u32 = self.rng.gen_range(1000..9999);
        let (name, ctype, _, text) = attachment_kind(&mut self.rng, u64::from(n));
        let size = attachment_size(&mut self.rng, self.cfg.max_attachment_bytes);
        let seed: u64 = self.rng.gen();
        (name, ctype.to_string(), gen_bytes(seed, size as usize, text))
    }

    fn act(&mut self) {
        let w = self.world();
        let roll = self.rng.gen_range(0..100);
        if w.tickets.is_empty() || roll < 12 {
            self.create(&w);
            return;
        }
        // Prefer recent tickets half of the time.
        let n = w.tickets.len();
        let idx = if self.rng.gen_bool(0.5) { n - 1 - self.rng.gen_range(0..n.min(10)) } else { self.rng.gen_range(0..n) };
        let (id, status, requester) = w.tickets[idx];
        match roll {
            12..=33 => {
                self.reply(&w, id, requester, false);
            }
            34..=47 => {
                self.note(&w, id, true, false);
            }
            48..=52 => {
                self.note(&w, id, false, false);
            }
            53..=59 => {
                let with = self.rng.gen_bool(0.5);
                if with {
                    self.reply(&w, id, requester, true);
                } else {
                    let private = self.rng.gen_bool(0.5);
                    self.note(&w, id, private, true);
                }
            }
            60..=71 => {
                self.status(id, status);
            }
            72..=91 => {
                self.field_change(&w, id);
            }
            92..=97 => {
                let k = self.rng.gen_range(2..=4);
                let mut done = 0;
                for i in 0..k {
                    let ok = if i % 2 == 0 { self.field_change(&w, id) } else { self.reply(&w, id, requester, false) };
                    done += u64::from(ok);
                }
                if done > 1 {
                    self.stats.same_second_bursts += 1;
                }
            }
            98 => {
                if self.sim.try_mark_spam(id).is_ok() {
                    self.stats.deleted += 1;
                    self.stats.total += 1;
                }
            }
            _ => {
                if self.sim.try_delete_ticket(id).is_ok() {
                    self.stats.deleted += 1;
                    self.stats.total += 1;
                }
            }
        }
    }

    fn create(&mut self, w: &World) {
        let n = self.rng.gen_range(1..=(w.contacts + 5).max(1));
        let email = format!("user{n}@example.com");
        let subject = SUBJECTS_LIVE[self.rng.gen_range(0..SUBJECTS_LIVE.len())].to_string();
        let html = body_html(&mut self.rng);
        let att = if self.rng.gen_bool(0.25) { Some(self.attachment()) } else { None };
        let with_att = att.is_some();
        if self.sim.try_create_ticket(&subject, &email, &html, att).is_ok() {
            self.stats.tickets_created += 1;
            self.stats.attachments += u64::from(with_att);
            self.stats.total += 1;
        }
    }

    /// A reply by an agent, or (40%) an incoming reply by the requester.
    fn reply(&mut self, w: &World, id: u64, requester: u64, with_attachment: bool) -> bool {
        let user = if self.rng.gen_bool(0.4) { requester } else { w.agents[self.rng.gen_range(0..w.agents.len())] };
        let html = body_html(&mut self.rng);
        let att = if with_attachment { Some(self.attachment()) } else { None };
        if self.sim.try_add_reply(id, Some(user), &html, att).is_err() {
            return false;
        }
        self.stats.replies += 1;
        self.stats.attachments += u64::from(with_attachment);
        self.stats.total += 1;
        true
    }

    fn note(&mut self, w: &World, id: u64, private: bool, with_attachment: bool) -> bool {
        let user = w.agents[self.rng.gen_range(0..w.agents.len())];
        let html = body_html(&mut self.rng);
        let att = if with_attachment { Some(self.attachment()) } else { None };
        if self.sim.try_add_note(id, Some(user), private, &html, att).is_err() {
            return false;
        }
        if private {
            self.stats.notes += 1;
        } else {
            self.stats.replies += 1;
        }
        self.stats.attachments += u64::from(with_attachment);
        self.stats.total += 1;
        true
    }

    fn status(&mut self, id: u64, status: u64) -> bool {
        let choices: &[u64] = match status {
            2 => &[3, 4],
            3 => &[2, 4],
            _ => &[2, 5],
        };
        let next = choices[self.rng.gen_range(0..choices.len())];
        if self.sim.try_update_ticket(id, json!({"status": next})).is_err() {
            return false;
        }
        self.stats.status_changes += 1;
        self.stats.total += 1;
        true
    }

    fn field_change(&mut self, w: &World, id: u64) -> bool {
        let patch: Value = match self.rng.gen_range(0..6) {
            0 => json!({"priority": self.rng.gen_range(1..=4)}),
            1 => {
                let tags: Vec<&str> = (0..self.rng.gen_range(0..=3)).map(|_| TAGS[self.rng.gen_range(0..TAGS.len())]).collect();
                json!({"tags": tags})
            }
            2 => match self.rng.gen_range(0..5) {
                0 => json!({"custom_fields": {"cf_product": PRODUCTS[self.rng.gen_range(0..PRODUCTS.len())]}}),
                1 => json!({"custom_fields": {"cf_escalated": self.rng.gen_bool(0.5)}}),
                2 => json!({"custom_fields": {"cf_items": self.rng.gen_range(1..20)}}),
                3 => json!({"custom_fields": {"cf_customer_tier": TIERS[self.rng.gen_range(0..TIERS.len())]}}),
                _ => json!({"custom_fields": {"cf_order_number": format!("ORD-{}", self.rng.gen_range(10_000..99_999))}}),
            },
            3 => json!({"responder_id": w.agents[self.rng.gen_range(0..w.agents.len())]}),
            4 => {
                let t = ["Question", "Incident", "Problem", "Task"][self.rng.gen_range(0..4)];
                json!({ "type": t })
            }
            _ => json!({"group_id": w.groups[self.rng.gen_range(0..w.groups.len())]}),
        };
        if self.sim.try_update_ticket(id, patch).is_err() {
            return false;
        }
        self.stats.field_changes += 1;
        self.stats.total += 1;
        true
    }
}

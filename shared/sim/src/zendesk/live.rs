//! Live agents: a tokio task performing random agent actions (through the same code paths as the HTTP
//! handlers) until stopped. Closed and deleted tickets are never modified, like in real Zendesk.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use super::model::gen_bytes;
use super::seed::{attachment_kind, attachment_size, body_html, PRODUCTS, SUBJECTS_LIVE, TAGS};
use super::ZendeskSim;

/// Live agent settings.
#[derive(Clone, Debug)]
pub struct LiveAgentConfig {
    pub seed: u64,
    pub actions_per_second: f64,
    /// Attachments added by live agents range from a few bytes up to this (most are small).
    pub max_attachment_bytes: u64,
}

impl Default for LiveAgentConfig {
    fn default() -> Self {
        LiveAgentConfig {
            seed: 7,
            actions_per_second: 2.0,
            max_attachment_bytes: 256 * 1024,
        }
    }
}

/// What the live agents did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct LiveStats {
    pub tickets_created: u64,
    /// Public comments.
    pub replies: u64,
    /// Private comments.
    pub notes: u64,
    /// Attachments added (on new tickets or comments).
    pub attachments: u64,
    pub status_changes: u64,
    /// Priority, tags, custom fields, assignee or group changes.
    pub field_changes: u64,
    /// Several updates to one ticket within the same second.
    pub same_second_bursts: u64,
    pub deleted: u64,
    /// Successful actions (a burst counts each of its updates).
    pub total: u64,
}

/// Handle on running live agents.
pub struct LiveAgents {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<LiveStats>,
}

impl LiveAgents {
    /// Stop the agents and return what they did.
    pub async fn stop(self) -> LiveStats {
        let _ = self.stop.send(true);
        self.task.await.unwrap_or_default()
    }
}

pub(crate) fn start(sim: ZendeskSim, cfg: LiveAgentConfig) -> LiveAgents {
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let mut agent = Agent {
            sim,
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            cfg,
            stats: LiveStats::default(),
        };
        let period =
            std::time::Duration::from_secs_f64(1.0 / agent.cfg.actions_per_second.max(0.001));
        loop {
            tokio::select! {
                _ = rx.wait_for(|v| *v) => break,
                _ = tokio::time::sleep(period) => agent.act(),
            }
        }
        agent.stats
    });
    LiveAgents { stop: tx, task }
}

struct Agent {
    sim: ZendeskSim,
    rng: ChaCha8Rng,
    cfg: LiveAgentConfig,
    stats: LiveStats,
}

struct World {
    open_tickets: Vec<(u64, String, u64)>, // (id, status, requester)
    agents: Vec<u64>,
    end_users: usize,
    fields: Vec<(u64, String, Vec<String>)>,
    groups: Vec<u64>,
}

impl Agent {
    fn world(&self) -> World {
        let st = self.sim.lock();
        World {
            open_tickets: st
                .tickets
                .values()
                .filter(|t| !t.deleted && t.status != "closed")
                .map(|t| (t.id, t.status.clone(), t.requester_id))
                .collect(),
            agents: st
                .users
                .values()
                .filter(|u| u.role != "end-user")
                .map(|u| u.id)
                .collect(),
            end_users: st.users.values().filter(|u| u.role == "end-user").count(),
            fields: st
                .fields
                .iter()
                .map(|f| {
                    (
                        f.id,
                        f.kind.clone(),
                        f.options.iter().map(|o| o.value.clone()).collect(),
                    )
                })
                .collect(),
            groups: st.groups.keys().copied().collect(),
        }
    }

    fn attachment(&mut self) -> (String, String, Vec<u8>) {
        let n: u32 = self.rng.gen_range(1000..9999);
        let (name, ctype, _, text) = attachment_kind(&mut self.rng, u64::from(n));
        let size = attachment_size(&mut self.rng, self.cfg.max_attachment_bytes);
        let seed: u64 = self.rng.gen();
        (
            name,
            ctype.to_string(),
            gen_bytes(seed, size as usize, text),
        )
    }

    fn act(&mut self) {
        let w = self.world();
        let roll = self.rng.gen_range(0..100);
        if w.open_tickets.is_empty() || roll < 12 {
            self.create(&w);
            return;
        }
        // Prefer recently created tickets (the end of the id-ordered list) half of the time.
        let n = w.open_tickets.len();
        let idx = if self.rng.gen_bool(0.5) {
            n - 1 - self.rng.gen_range(0..n.min(10))
        } else {
            self.rng.gen_range(0..n)
        };
        let (id, status, requester) = w.open_tickets[idx].clone();
        match roll {
            12..=36 => {
                self.comment(&w, id, requester, true, false);
            }
            37..=51 => {
                self.comment(&w, id, requester, false, false);
            }
            52..=59 => {
                let public = self.rng.gen_bool(0.7);
                self.comment(&w, id, requester, public, true);
            }
            60..=71 => {
                self.status(id, &status);
            }
            72..=91 => {
                self.field_change(&w, id);
            }
            92..=98 => {
                let k = self.rng.gen_range(2..=4);
                let mut done = 0;
                for i in 0..k {
                    let ok = if i % 2 == 0 {
                        self.field_change(&w, id)
                    } else {
                        self.comment(&w, id, requester, true, false)
                    };
                    done += u64::from(ok);
                }
                if done > 1 {
                    self.stats.same_second_bursts += 1;
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
        let n = self.rng.gen_range(1..=(w.end_users + 5).max(1));
        let email = format!("user{n}@example.com");
        let subject = SUBJECTS_LIVE[self.rng.gen_range(0..SUBJECTS_LIVE.len())].to_string();
        let html = body_html(&mut self.rng);
        let att = if self.rng.gen_bool(0.25) {
            Some(self.attachment())
        } else {
            None
        };
        let with_att = att.is_some();
        if self
            .sim
            .try_create_ticket(&subject, &email, &html, att)
            .is_ok()
        {
            self.stats.tickets_created += 1;
            self.stats.attachments += u64::from(with_att);
            self.stats.total += 1;
        }
    }

    fn comment(
        &mut self,
        w: &World,
        id: u64,
        requester: u64,
        public: bool,
        with_attachment: bool,
    ) -> bool {
        let author = if public && self.rng.gen_bool(0.4) {
            requester
        } else {
            w.agents[self.rng.gen_range(0..w.agents.len())]
        };
        let html = body_html(&mut self.rng);
        let att = if with_attachment {
            Some(self.attachment())
        } else {
            None
        };
        if self
            .sim
            .try_add_comment(id, Some(author), public, &html, att)
            .is_err()
        {
            return false;
        }
        if public {
            self.stats.replies += 1;
        } else {
            self.stats.notes += 1;
        }
        self.stats.attachments += u64::from(with_attachment);
        self.stats.total += 1;
        true
    }

    fn status(&mut self, id: u64, status: &str) -> bool {
        let choices: &[&str] = match status {
            "new" => &["open", "pending"],
            "open" => &["pending", "solved", "hold"],
            "pending" => &["open", "solved"],
            "hold" => &["open"],
            "solved" => &["open", "closed"],
            _ => &["open"],
        };
        let next = choices[self.rng.gen_range(0..choices.len())];
        if self
            .sim
            .try_update_ticket(id, json!({"status": next}))
            .is_err()
        {
            return false;
        }
        self.stats.status_changes += 1;
        self.stats.total += 1;
        true
    }

    fn field_change(&mut self, w: &World, id: u64) -> bool {
        let patch: Value = match self.rng.gen_range(0..5) {
            0 => {
                let p = ["low", "normal", "high", "urgent"][self.rng.gen_range(0..4)];
                json!({ "priority": p })
            }
            1 => {
                let tags: Vec<&str> = (0..self.rng.gen_range(0..=3))
                    .map(|_| TAGS[self.rng.gen_range(0..TAGS.len())])
                    .collect();
                json!({"tags": tags})
            }
            2 => {
                let (fid, kind, options) = &w.fields[self.rng.gen_range(0..w.fields.len())];
                let value = match kind.as_str() {
                    "tagger" if !options.is_empty() => {
                        json!(options[self.rng.gen_range(0..options.len())])
                    }
                    "tagger" => json!(PRODUCTS[0].1),
                    "checkbox" => json!(self.rng.gen_bool(0.5)),
                    "integer" => json!(self.rng.gen_range(1..20)),
                    _ => json!(format!("ORD-{}", self.rng.gen_range(10_000..99_999))),
                };
                json!({"custom_fields": [{"id": fid, "value": value}]})
            }
            3 => json!({"assignee_id": w.agents[self.rng.gen_range(0..w.agents.len())]}),
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

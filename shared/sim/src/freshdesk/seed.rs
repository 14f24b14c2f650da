//! Deterministic seeding of the simulated Freshdesk account (ChaCha8 from the configured seed).
//!
//! Seeded times lie before `anchor` (the top of the current hour minus a minute), over the last 60 days, so
//! two simulators started with the same config within the same hour hold identical state and the 30-day
//! default of the ticket list has tickets on both sides of it.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use super::model::{
    escape_html, Agent, AttData, Company, Contact, Conversation, Field, Group, State, Ticket, BASE_PLACEHOLDER,
    FALLBACKS_FIELD, REF_FIELD, SOURCE_NOTE, SOURCE_REPLY,
};
use super::FreshdeskSimConfig;

/// The same names as the Zendesk simulator's groups and agents, so migrations between the two line up.
pub(crate) const GROUP_NAMES: [&str; 8] = ["Support L1", "Billing", "Support L2", "Technical", "Returns", "Sales", "VIP", "Escalations"];
const COMPANY_NAMES: [&str; 8] = ["Acme Corp", "Globex", "Initech", "Umbrella Retail", "Hooli", "Stark Supplies", "Wayne Logistics", "Soylent Foods"];
const FIRST: [&str; 10] = ["Ada", "Ben", "Chloé", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas"];
const LAST: [&str; 8] = ["Smith", "Okafor", "García", "Müller", "Tanaka", "Rossi", "Nguyen", "O'Brien"];
pub(crate) const TAGS: [&str; 8] = ["vip", "refund", "shipping", "login", "bug", "billing", "mobile", "follow_up"];
/// Dropdown choices carry the same values as the Zendesk simulator's tagger options.
pub(crate) const PRODUCTS: [&str; 4] = ["product_basic", "product_pro", "product_enterprise", "product_mobile"];
pub(crate) const TIERS: [&str; 3] = ["tier_free", "tier_standard", "tier_premium"];
pub(crate) const TYPES: [&str; 5] = ["Question", "Incident", "Problem", "Task", "Feature Request"];
const SUBJECTS: [&str; 8] = [
    "Order {n} is late",
    "Cannot sign in",
    "Refund for order {n}",
    "Invoice {n} looks wrong",
    "App freezes on start",
    "Damaged parcel (order {n})",
    "How do I add a seat?",
    "Reset link never arrives",
];
pub(crate) const SUBJECTS_LIVE: [&str; 5] = ["Where is my order?", "Login code expired", "Please close my account", "Screen cracked on arrival", "Export keeps failing"];
const SENTENCES: [&str; 12] = [
    "Thanks for getting in touch.",
    "I have been waiting for days now.",
    "Could you check what happened?",
    "A screenshot of the error is attached.",
    "We passed this on to our engineers.",
    "The tracking link shows nothing.",
    "The invoice is attached.",
    "Any news on this?",
    "Clearing the cache did not help.",
    "Your refund is on its way & should land in 3–5 days.",
    "Tell me if there is anything else <3",
    "Internal: legacy plan, check with billing first.",
];

pub(crate) fn body_html(rng: &mut ChaCha8Rng) -> String {
    let mut html = String::new();
    for _ in 0..rng.gen_range(1..=3) {
        let s: Vec<String> = (0..rng.gen_range(1..=3)).map(|_| escape_html(SENTENCES[rng.gen_range(0..SENTENCES.len())])).collect();
        if rng.gen_bool(0.15) {
            html.push_str(&format!("<div><strong>{}</strong></div>", s.join(" ")));
        } else {
            html.push_str(&format!("<div>{}</div>", s.join(" ")));
        }
    }
    html
}

/// Log-uniform size between 8 bytes and `max` (most attachments are small).
pub(crate) fn attachment_size(rng: &mut ChaCha8Rng, max: u64) -> u64 {
    let max = max.max(1) as f64;
    let min: f64 = 8f64.min(max);
    let x: f64 = rng.gen_range(min.ln()..=max.ln());
    (x.exp().round() as u64).clamp(1, max as u64)
}

/// A random attachment kind: (file name, content type, is image, is text).
pub(crate) fn attachment_kind(rng: &mut ChaCha8Rng, n: u64) -> (String, &'static str, bool, bool) {
    match rng.gen_range(0..5) {
        0 | 1 => (format!("capture-{n}.png"), "image/png", true, false),
        2 => (format!("statement-{n}.pdf"), "application/pdf", false, false),
        3 => (format!("trace-{n}.txt"), "text/plain", false, true),
        _ => (format!("photo {n}.jpg"), "image/jpeg", true, false),
    }
}

/// Ticket fields: the type field, the custom fields (same labels as the Zendesk simulator's titles) and the
/// connector's own two text fields.
pub(crate) fn seed_fields(st: &mut State) {
    let defs: [(&str, &str, &str, Vec<String>); 8] = [
        ("ticket_type", "Type", "default_ticket_type", TYPES.iter().map(|s| s.to_string()).collect()),
        ("cf_product", "Product", "custom_dropdown", PRODUCTS.iter().map(|s| s.to_string()).collect()),
        ("cf_order_number", "Order number", "custom_text", vec![]),
        ("cf_escalated", "Escalated", "custom_checkbox", vec![]),
        ("cf_customer_tier", "Customer tier", "custom_dropdown", TIERS.iter().map(|s| s.to_string()).collect()),
        ("cf_items", "Items", "custom_number", vec![]),
        (REF_FIELD, "deltadesk reference", "custom_text", vec![]),
        (FALLBACKS_FIELD, "deltadesk fallbacks", "custom_text", vec![]),
    ];
    for (name, label, kind, choices) in defs {
        let id = st.next_field_id();
        st.fields.push(Field { id, name: name.into(), label: label.into(), kind: kind.into(), choices });
    }
}

/// Five agents, `agent{n}@support.example.com` like the Zendesk simulator's.
pub(crate) fn seed_agents(st: &mut State) {
    for n in 1..=5u64 {
        let id = st.next_user_id();
        let name = format!("{} {} (agent)", FIRST[(n as usize * 5) % FIRST.len()], LAST[(n as usize * 3) % LAST.len()]);
        st.agents.insert(id, Agent { id, name, email: format!("agent{n}@support.example.com") });
    }
}

pub(crate) fn seed_groups(st: &mut State, n: usize) {
    for i in 0..n.max(1) {
        let id = st.next_group_id();
        let name = if i < GROUP_NAMES.len() { GROUP_NAMES[i].to_string() } else { format!("{} {}", GROUP_NAMES[i % GROUP_NAMES.len()], i / GROUP_NAMES.len() + 1) };
        st.groups.insert(id, Group { id, name });
    }
}

/// Up to two attachments (half of the images inline) appended to `html`; returns their ids.
fn seed_attachments(st: &mut State, rng: &mut ChaCha8Rng, cfg: &FreshdeskSimConfig, html: &mut String, at: i64) -> Vec<u64> {
    let mut ids = Vec::new();
    if !rng.gen_bool(0.2) {
        return ids;
    }
    for _ in 0..rng.gen_range(1..=2) {
        let n = st.seq.attachment + st.id_base;
        let (name, ctype, image, text) = attachment_kind(rng, n);
        let size = attachment_size(rng, cfg.max_seed_attachment_bytes);
        let data = AttData::Gen { seed: rng.gen(), size, text };
        let id = st.add_attachment(&name, ctype, data, at);
        if image && rng.gen_bool(0.5) {
            let token = st.attachments[&id].token.clone();
            html.push_str(&format!("<div><img src=\"{BASE_PLACEHOLDER}/fd-attachments/{token}\" alt=\"{}\"></div>", escape_html(&name)));
        }
        ids.push(id);
    }
    ids
}

/// Seed the whole account for `cfg`; seeded times are all <= `anchor`.
pub(crate) fn seed(st: &mut State, cfg: &FreshdeskSimConfig, anchor: i64) {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    seed_fields(st);
    seed_agents(st);
    seed_groups(st, cfg.groups);
    let agents: Vec<u64> = st.agents.keys().copied().collect();
    let groups: Vec<u64> = st.groups.keys().copied().collect();
    let mut companies = Vec::new();
    for i in 0..cfg.companies {
        let id = st.next_company_id();
        let base = COMPANY_NAMES[i % COMPANY_NAMES.len()];
        let name = if i < COMPANY_NAMES.len() { base.to_string() } else { format!("{base} {}", i / COMPANY_NAMES.len() + 1) };
        let slug: String = name.to_ascii_lowercase().chars().filter(|c| c.is_ascii_alphanumeric()).collect();
        st.companies.insert(id, Company { id, name, domains: vec![format!("{slug}.example.com")] });
        companies.push(id);
    }
    let mut contacts = Vec::new();
    for n in 1..=cfg.contacts {
        let id = st.next_user_id();
        let name = format!("{} {}", FIRST[rng.gen_range(0..FIRST.len())], LAST[rng.gen_range(0..LAST.len())]);
        let company_id = if !companies.is_empty() && rng.gen_bool(0.6) { Some(companies[rng.gen_range(0..companies.len())]) } else { None };
        st.contacts.insert(id, Contact { id, name, email: format!("user{n}@example.com"), company_id });
        contacts.push(id);
    }
    let requesters = if contacts.is_empty() { agents.clone() } else { contacts.clone() };
    const DAY: i64 = 86_400;
    let total = cfg.tickets + cfg.trashed_tickets + cfg.spam_tickets;
    for i in 0..total {
        let id = st.next_ticket_id();
        let created_at = anchor - rng.gen_range(0..60 * DAY);
        let requester = requesters[rng.gen_range(0..requesters.len())];
        let order_no: u32 = rng.gen_range(10_000..99_999);
        let subject = SUBJECTS[rng.gen_range(0..SUBJECTS.len())].replace("{n}", &order_no.to_string());
        let status = [2u64, 2, 3, 4, 4, 5, 5][rng.gen_range(0..7)];
        let priority = rng.gen_range(1..=4u64);
        let kind = [None, Some("Question"), Some("Incident"), Some("Problem"), Some("Task")][rng.gen_range(0..5)].map(str::to_string);
        let responder = if rng.gen_bool(0.8) { Some(agents[rng.gen_range(0..agents.len())]) } else { None };
        let mut tags: Vec<String> = Vec::new();
        for _ in 0..rng.gen_range(0..=3) {
            let t = TAGS[rng.gen_range(0..TAGS.len())].to_string();
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        let mut custom: BTreeMap<String, Value> = BTreeMap::new();
        if rng.gen_bool(0.7) {
            custom.insert("cf_product".into(), json!(PRODUCTS[rng.gen_range(0..PRODUCTS.len())]));
        }
        if subject.contains(&order_no.to_string()) {
            custom.insert("cf_order_number".into(), json!(format!("ORD-{order_no}")));
        }
        if rng.gen_bool(0.2) {
            custom.insert("cf_escalated".into(), json!(true));
        }
        if rng.gen_bool(0.4) {
            custom.insert("cf_customer_tier".into(), json!(TIERS[rng.gen_range(0..TIERS.len())]));
        }
        if rng.gen_bool(0.3) {
            custom.insert("cf_items".into(), json!(rng.gen_range(1..20)));
        }
        let mut description = body_html(&mut rng);
        let attachments = seed_attachments(st, &mut rng, cfg, &mut description, created_at);
        // Conversations: 0..=20, skewed small.
        let r: f64 = rng.gen();
        let n_conv = (r * r * r * 21.0) as usize;
        let mut at = created_at;
        let mut conversations = Vec::new();
        for _ in 0..n_conv {
            at = (at + rng.gen_range(60..12 * 3600)).min(anchor);
            let agent = agents[rng.gen_range(0..agents.len())];
            // (user, private, incoming, source)
            let (user_id, private, incoming, source) = match rng.gen_range(0..10) {
                0..=2 => (requester, false, true, SOURCE_REPLY),
                3..=6 => (agent, false, false, SOURCE_REPLY),
                7 => (agent, false, false, SOURCE_NOTE),
                _ => (agent, true, false, SOURCE_NOTE),
            };
            let mut body = body_html(&mut rng);
            let atts = seed_attachments(st, &mut rng, cfg, &mut body, at);
            let cid = st.next_conversation_id();
            conversations.push(Conversation { id: cid, body, private, incoming, source, user_id, created_at: at, updated_at: at, attachments: atts });
        }
        let updated_at = (at + rng.gen_range(0..3600)).min(anchor).max(created_at);
        let company_id = st.contacts.get(&requester).and_then(|c| c.company_id);
        st.tickets.insert(
            id,
            Ticket {
                id,
                subject,
                description,
                status,
                priority,
                source: [1u64, 2, 3, 7][rng.gen_range(0..4)],
                kind,
                requester_id: requester,
                responder_id: responder,
                group_id: if responder.is_some() || rng.gen_bool(0.5) { Some(groups[rng.gen_range(0..groups.len())]) } else { None },
                company_id,
                tags,
                custom_fields: custom,
                created_at,
                updated_at,
                deleted: i >= cfg.tickets && i < cfg.tickets + cfg.trashed_tickets,
                spam: i >= cfg.tickets + cfg.trashed_tickets,
                attachments,
                conversations,
            },
        );
    }
}

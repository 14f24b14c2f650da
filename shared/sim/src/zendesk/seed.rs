//! Deterministic seeding of the simulated account (ChaCha8 from the configured seed).
//!
//! Seeded times are placed before `anchor` (the top of the current hour minus the publication lag), so two
//! simulators started with the same config within the same hour produce identical state.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use super::model::{
    encode_query, AttData, Comment, Field, FieldOption, Group, Org, State, Ticket, User,
    BASE_PLACEHOLDER,
};
use super::ZendeskSimConfig;

pub(crate) const GROUP_NAMES: [&str; 8] = [
    "Support L1",
    "Billing",
    "Support L2",
    "Technical",
    "Returns",
    "Sales",
    "VIP",
    "Escalations",
];
const ORG_NAMES: [&str; 10] = [
    "Acme Corp",
    "Globex",
    "Initech",
    "Umbrella Retail",
    "Hooli",
    "Stark Supplies",
    "Wayne Logistics",
    "Soylent Foods",
    "Vandelay Imports",
    "Wonka Sweets",
];
const FIRST: [&str; 12] = [
    "Ada", "Ben", "Chloé", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kwame",
    "Lena",
];
const LAST: [&str; 10] = [
    "Smith", "Okafor", "García", "Müller", "Tanaka", "Rossi", "Nguyen", "Dubois", "Kowalski",
    "O'Brien",
];
pub(crate) const TAGS: [&str; 10] = [
    "vip",
    "refund",
    "shipping",
    "login",
    "bug",
    "billing",
    "feedback",
    "mobile",
    "web",
    "follow_up",
];
pub(crate) const PRODUCTS: [(&str, &str); 4] = [
    ("Basic", "product_basic"),
    ("Pro", "product_pro"),
    ("Enterprise", "product_enterprise"),
    ("Mobile app", "product_mobile"),
];
const SUBJECTS: [&str; 10] = [
    "Order {n} hasn't arrived",
    "Cannot log in to my account",
    "Refund request for order {n}",
    "Question about my invoice {n}",
    "App crashes when uploading a photo",
    "Wrong item received (order {n})",
    "How do I change my plan?",
    "Password reset email not received",
    "Charged twice for order {n}",
    "Feature request: dark mode & exports",
];
pub(crate) const SUBJECTS_LIVE: [&str; 6] = [
    "Where is my package?",
    "Login link expired",
    "Please cancel my subscription",
    "Broken screen on arrival",
    "Invoice address needs changing",
    "Can't export my data",
];
pub(crate) const SENTENCES: [&str; 14] = [
    "Thanks for reaching out to us.",
    "I have been waiting for more than a week now.",
    "Could you please check the status?",
    "I attached a screenshot of the error.",
    "We have escalated this to our technical team.",
    "The tracking number doesn't work.",
    "Please find the invoice attached.",
    "Is there any update on this?",
    "I tried clearing the cache but it didn't help.",
    "Your refund has been processed & should arrive in 3–5 days.",
    "Let me know if there is anything else I can do.",
    "This is really urgent for our team <3",
    "Kind regards, and thanks for the quick answer!",
    "Internal: customer is on the legacy plan, check with billing.",
];

/// Custom ticket field definitions, identical (titles, order) for every simulator.
pub(crate) fn seed_fields(st: &mut State) {
    let defs: [(&str, &str); 5] = [
        ("Product", "tagger"),
        ("Order number", "text"),
        ("Escalated", "checkbox"),
        ("Customer tier", "tagger"),
        ("Items", "integer"),
    ];
    for (title, kind) in defs {
        let id = st.next_field_id();
        let options: Vec<FieldOption> = match title {
            "Product" => PRODUCTS
                .iter()
                .map(|(n, v)| FieldOption {
                    id: st.next_option_id(),
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            "Customer tier" => [
                ("Free", "tier_free"),
                ("Standard", "tier_standard"),
                ("Premium", "tier_premium"),
            ]
            .iter()
            .map(|(n, v)| FieldOption {
                id: st.next_option_id(),
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
            _ => Vec::new(),
        };
        st.fields.push(Field {
            id,
            title: title.into(),
            kind: kind.into(),
            options,
        });
    }
}

pub(crate) fn seed_agents(st: &mut State) {
    for n in 1..=5u64 {
        let id = st.next_user_id();
        let name = format!(
            "{} {} (agent)",
            FIRST[(n as usize * 5) % FIRST.len()],
            LAST[(n as usize * 3) % LAST.len()]
        );
        st.users.insert(
            id,
            User {
                id,
                name,
                email: format!("agent{n}@support.example.com"),
                role: "agent".into(),
                organization_id: None,
            },
        );
    }
}

pub(crate) fn seed_groups(st: &mut State, n: usize) {
    for i in 0..n.max(1) {
        let id = st.next_group_id();
        let name = if i < GROUP_NAMES.len() {
            GROUP_NAMES[i].to_string()
        } else {
            format!(
                "{} {}",
                GROUP_NAMES[i % GROUP_NAMES.len()],
                i / GROUP_NAMES.len() + 1
            )
        };
        st.groups.insert(id, Group { id, name });
    }
}

/// Log-uniform size between 1 and `max` (most attachments are small).
pub(crate) fn attachment_size(rng: &mut ChaCha8Rng, max: u64) -> u64 {
    let max = max.max(1) as f64;
    let min: f64 = 8f64.min(max);
    let x: f64 = rng.gen_range(min.ln()..=max.ln());
    (x.exp().round() as u64).clamp(1, max as u64)
}

/// A random attachment kind: (file name, content type, is image, is text).
pub(crate) fn attachment_kind(rng: &mut ChaCha8Rng, n: u64) -> (String, &'static str, bool, bool) {
    match rng.gen_range(0..6) {
        0 | 1 => (format!("screenshot-{n}.png"), "image/png", true, false),
        2 => (format!("photo {n}.jpg"), "image/jpeg", true, false),
        3 => (format!("invoice-{n}.pdf"), "application/pdf", false, false),
        4 => (format!("logs-{n}.txt"), "text/plain", false, true),
        _ => (format!("export-{n}.csv"), "text/csv", false, true),
    }
}

pub(crate) fn body_html(rng: &mut ChaCha8Rng) -> String {
    let paragraphs = rng.gen_range(1..=3);
    let mut html = String::new();
    for _ in 0..paragraphs {
        let n = rng.gen_range(1..=3);
        let s: Vec<String> = (0..n)
            .map(|_| super::model::escape_html(SENTENCES[rng.gen_range(0..SENTENCES.len())]))
            .collect();
        if rng.gen_bool(0.15) {
            html.push_str(&format!("<p><strong>{}</strong></p>", s.join(" ")));
        } else {
            html.push_str(&format!("<p>{}</p>", s.join(" ")));
        }
    }
    html
}

/// Seed the whole account for `cfg`; seeded times are all <= `anchor`.
pub(crate) fn seed(st: &mut State, cfg: &ZendeskSimConfig, anchor: i64) {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    seed_fields(st);
    seed_agents(st);
    seed_groups(st, cfg.groups);
    let agents: Vec<u64> = st.users.keys().copied().collect();
    let groups: Vec<u64> = st.groups.keys().copied().collect();

    let mut orgs = Vec::new();
    for i in 0..cfg.organizations {
        let id = st.next_org_id();
        let base = ORG_NAMES[i % ORG_NAMES.len()];
        let name = if i < ORG_NAMES.len() {
            base.to_string()
        } else {
            format!("{base} {}", i / ORG_NAMES.len() + 1)
        };
        let slug: String = name
            .to_ascii_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        st.orgs.insert(
            id,
            Org {
                id,
                name,
                external_id: None,
                domain_names: vec![format!("{slug}.example.com")],
            },
        );
        orgs.push(id);
    }

    let mut end_users = Vec::new();
    for n in 1..=cfg.users {
        let id = st.next_user_id();
        let name = format!(
            "{} {}",
            FIRST[rng.gen_range(0..FIRST.len())],
            LAST[rng.gen_range(0..LAST.len())]
        );
        let org = if !orgs.is_empty() && rng.gen_bool(0.6) {
            Some(orgs[rng.gen_range(0..orgs.len())])
        } else {
            None
        };
        st.users.insert(
            id,
            User {
                id,
                name,
                email: format!("user{n}@example.com"),
                role: "end-user".into(),
                organization_id: org,
            },
        );
        end_users.push(id);
    }
    let requesters = if end_users.is_empty() {
        agents.clone()
    } else {
        end_users.clone()
    };
    let product_field = st.fields[0].id;
    let order_field = st.fields[1].id;
    let escalated_field = st.fields[2].id;
    let tier_field = st.fields[3].id;

    const DAY: i64 = 86_400;
    for _ in 0..cfg.tickets {
        let id = st.next_ticket_id();
        let created_at = anchor - rng.gen_range(0..60 * DAY);
        let requester = requesters[rng.gen_range(0..requesters.len())];
        let order_no = rng.gen_range(10_000..99_999);
        let subject =
            SUBJECTS[rng.gen_range(0..SUBJECTS.len())].replace("{n}", &order_no.to_string());
        let status = [
            "new", "open", "open", "pending", "hold", "solved", "solved", "closed", "closed",
        ][rng.gen_range(0..9)]
        .to_string();
        let assignee = if status == "new" {
            None
        } else {
            Some(agents[rng.gen_range(0..agents.len())])
        };
        let priority = [
            None,
            Some("low"),
            Some("normal"),
            Some("normal"),
            Some("high"),
            Some("urgent"),
        ][rng.gen_range(0..6)]
        .map(str::to_string);
        let kind = [
            None,
            Some("question"),
            Some("incident"),
            Some("problem"),
            Some("task"),
        ][rng.gen_range(0..5)]
        .map(str::to_string);
        let mut tags: Vec<String> = Vec::new();
        for _ in 0..rng.gen_range(0..=3) {
            let t = TAGS[rng.gen_range(0..TAGS.len())].to_string();
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        let mut custom: BTreeMap<u64, Value> = BTreeMap::new();
        if rng.gen_bool(0.7) {
            custom.insert(
                product_field,
                json!(PRODUCTS[rng.gen_range(0..PRODUCTS.len())].1),
            );
        }
        if subject.contains(&order_no.to_string()) {
            custom.insert(order_field, json!(format!("ORD-{order_no}")));
        }
        if rng.gen_bool(0.2) {
            custom.insert(escalated_field, json!(true));
        }
        if rng.gen_bool(0.5) {
            custom.insert(
                tier_field,
                json!(["tier_free", "tier_standard", "tier_premium"][rng.gen_range(0..3)]),
            );
        }

        // Comments: 1..=30, skewed small.
        let r: f64 = rng.gen();
        let n_comments = 1 + (r * r * r * 29.0) as usize;
        let mut t_at = created_at;
        let mut comments = Vec::new();
        for i in 0..n_comments {
            if i > 0 {
                t_at = (t_at + rng.gen_range(60..12 * 3600)).min(anchor);
            }
            let (author, public) = if i == 0 {
                (requester, true)
            } else {
                match rng.gen_range(0..10) {
                    0..=3 => (requester, true),
                    4..=7 => (agents[rng.gen_range(0..agents.len())], true),
                    _ => (agents[rng.gen_range(0..agents.len())], false),
                }
            };
            let mut html = body_html(&mut rng);
            let mut atts = Vec::new();
            if rng.gen_bool(0.2) {
                for _ in 0..rng.gen_range(1..=2) {
                    let n = st.seq.attachment + st.id_base;
                    let (name, ctype, image, text) = attachment_kind(&mut rng, n);
                    let size = attachment_size(&mut rng, cfg.max_seed_attachment_bytes);
                    let inline = image && rng.gen_bool(0.5);
                    let data = AttData::Gen {
                        seed: rng.gen(),
                        size,
                        text,
                    };
                    let aid = st.add_attachment(&name, ctype, data, inline);
                    if inline {
                        let token = st.attachments[&aid].token.clone();
                        html.push_str(&format!(
                            "<p><img src=\"{BASE_PLACEHOLDER}/attachments/token/{token}/?name={}\" alt=\"{}\"></p>",
                            encode_query(&name),
                            super::model::escape_html(&name)
                        ));
                    }
                    atts.push(aid);
                }
            }
            let cid = st.next_comment_id();
            comments.push(Comment {
                id: cid,
                author_id: author,
                html_body: html,
                public,
                created_at: t_at,
                attachments: atts,
            });
        }
        let updated_at = (t_at + rng.gen_range(0..3600)).min(anchor).max(created_at);
        let org = st.users.get(&requester).and_then(|u| u.organization_id);
        st.tickets.insert(
            id,
            Ticket {
                id,
                external_id: None,
                subject,
                status,
                priority,
                kind,
                requester_id: requester,
                submitter_id: requester,
                assignee_id: assignee,
                group_id: if assignee.is_some() || rng.gen_bool(0.5) {
                    Some(groups[rng.gen_range(0..groups.len())])
                } else {
                    None
                },
                organization_id: org,
                tags,
                custom_fields: custom,
                created_at,
                updated_at,
                deleted: false,
                comments,
                held: None,
            },
        );
    }
}

//! A help desk's vocabulary (groups, organizations, agents, custom fields and their drop-down values, the
//! canonical statuses, priorities and types it holds exactly) and the pure logic of `deltadesk mapping
//! init`: matching a source's vocabulary to a target's and writing a starting `[mapping]` section.
//!
//! Matching rules, in order: the same name; the same name ignoring case and surrounding spaces; for
//! organizations, a shared e-mail domain; for drop-down values, the source option's value or label equal to
//! the target option's value or label (ignoring case). What does not match is never guessed: it is written
//! as a commented line with the reason, and left out of the table, so that a ticket carrying it fails with a
//! named cause instead of being silently dropped.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::engine::mapping::{Mapping, Table};

/// What kind of value a custom field holds, as far as mapping is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    Text,
    Number,
    Checkbox,
    Date,
    /// One value out of `options`.
    DropDown,
    /// Several values out of `options`.
    MultiSelect,
    Other,
}

impl FieldKind {
    fn as_str(self) -> &'static str {
        match self {
            FieldKind::Text => "text",
            FieldKind::Number => "number",
            FieldKind::Checkbox => "checkbox",
            FieldKind::Date => "date",
            FieldKind::DropDown => "drop-down",
            FieldKind::MultiSelect => "multi-select",
            FieldKind::Other => "other",
        }
    }

    /// Whether a value of `self` can be written to a field of `target` unchanged (numbers and dates fit in
    /// text; a drop-down's value fits in text; nothing else crosses kinds).
    fn fits(self, target: FieldKind) -> bool {
        self == target || (target == FieldKind::Text && matches!(self, FieldKind::Number | FieldKind::Date | FieldKind::DropDown))
    }
}

/// One drop-down choice: `value` is what tickets carry (Zendesk's tag, Freshdesk's choice text), `label`
/// what agents see (equal to `value` where the help desk has no separate label).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldOption {
    pub value: String,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDef {
    /// The title tickets carry the field under (the canonical model keys custom fields by title).
    pub title: String,
    pub kind: FieldKind,
    pub options: Vec<FieldOption>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgDef {
    pub name: String,
    /// E-mail domains of the organization's people, where the help desk records them.
    pub domains: Vec<String>,
}

/// One side's vocabulary, as its connector reads it from the help desk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vocabulary {
    /// Canonical statuses (`new`, `open`, …) the help desk holds as themselves; a target stores the others
    /// with its connector's documented fallback.
    pub statuses: Vec<String>,
    pub priorities: Vec<String>,
    pub ticket_types: Vec<String>,
    pub groups: Vec<String>,
    pub organizations: Vec<OrgDef>,
    /// Agents' e-mail addresses.
    pub agents: Vec<String>,
    pub custom_fields: Vec<FieldDef>,
    /// Whether writing a ticket creates groups and organizations the target lacks (otherwise they must
    /// exist, and an unmatched one needs a decision).
    pub creates_groups: bool,
    pub creates_organizations: bool,
    /// Whether the target accepts an assignee or comment author who is not one of its agents (Zendesk
    /// creates such a person as an end user; Freshdesk refuses the assignment).
    pub accepts_unknown_agents: bool,
}

/// One value `mapping init` could not settle by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The mapping table (`groups`, `custom_field_values.Product`, …).
    pub table: String,
    pub value: String,
    pub why: String,
}

/// The starting mapping, and what is left for a person to decide.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub mapping: Mapping,
    /// Per table: comments on entries (value → note), written next to them.
    pub notes: BTreeMap<String, BTreeMap<String, String>>,
    pub decisions: Vec<Decision>,
}

fn norm(s: &str) -> String {
    s.trim().to_lowercase()
}

/// `candidates`' spelling of `value`: the same string, else the same ignoring case and outer spaces.
fn find<'a>(value: &str, candidates: impl Iterator<Item = &'a String> + Clone) -> Option<&'a String> {
    candidates.clone().find(|c| *c == value).or_else(|| candidates.into_iter().find(|c| norm(c) == norm(value)))
}

/// The e-mail domain of an address, lowercased (connectors derive organizations' domains from it).
pub fn domain_of(email: &str) -> Option<String> {
    email.rsplit_once('@').map(|(_, d)| norm(d)).filter(|d| !d.is_empty())
}

/// Matches `source` to `target`. Pure: the connectors read both vocabularies, this decides.
pub fn propose(source: &Vocabulary, target: &Vocabulary) -> Proposal {
    let mut p = Proposal { mapping: Mapping::default(), notes: BTreeMap::new(), decisions: Vec::new() };
    let note = |p: &mut Proposal, table: &str, value: &str, text: String| {
        p.notes.entry(table.to_string()).or_default().insert(value.to_string(), text);
    };

    // Canonical dimensions: every value the source produces is listed, so the table is explicit; values
    // the target cannot hold as themselves keep the target connector's fallback, said next to them.
    for (table, from, to) in [
        ("status", &source.statuses, &target.statuses),
        ("priority", &source.priorities, &target.priorities),
        ("ticket_type", &source.ticket_types, &target.ticket_types),
    ] {
        let t = match table {
            "status" => &mut p.mapping.status,
            "priority" => &mut p.mapping.priority,
            _ => &mut p.mapping.ticket_type,
        };
        let mut fallbacks = Vec::new();
        for v in from {
            t.map.insert(v.clone(), v.clone());
            if !to.contains(v) {
                fallbacks.push(v.clone());
            }
        }
        for v in fallbacks {
            note(&mut p, table, &v, format!("the target has no {table} {v:?}: its connector stores the documented fallback (README); map it to another value to choose yourself"));
        }
    }

    // Groups: matched by name; an unmatched one is created by the writer where the target allows it.
    p.mapping.groups.keep_unmapped = target.creates_groups;
    for g in &source.groups {
        match find(g, target.groups.iter()) {
            Some(t) => {
                p.mapping.groups.map.insert(g.clone(), t.clone());
            }
            None if target.creates_groups => {
                p.mapping.groups.map.insert(g.clone(), g.clone());
                note(&mut p, "groups", g, "not in the target: created there on first use".into());
            }
            None => p.decisions.push(Decision { table: "groups".into(), value: g.clone(), why: "no group of this name in the target, and the target's groups are not created by deltadesk".into() }),
        }
    }

    // Organizations: by name, then by a shared e-mail domain.
    p.mapping.organizations.keep_unmapped = target.creates_organizations;
    for o in &source.organizations {
        let by_name = find(&o.name, target.organizations.iter().map(|t| &t.name));
        let by_domain = || {
            target.organizations.iter().find(|t| t.domains.iter().any(|d| o.domains.iter().any(|s| norm(s) == norm(d)))).map(|t| &t.name)
        };
        match by_name.or_else(by_domain) {
            Some(t) => {
                if by_name.is_none() {
                    note(&mut p, "organizations", &o.name, format!("matched by e-mail domain to {t:?}"));
                }
                p.mapping.organizations.map.insert(o.name.clone(), t.clone());
            }
            None if target.creates_organizations => {
                p.mapping.organizations.map.insert(o.name.clone(), o.name.clone());
                note(&mut p, "organizations", &o.name, "not in the target: created there on first use".into());
            }
            None => p.decisions.push(Decision { table: "organizations".into(), value: o.name.clone(), why: "no organization of this name or domain in the target".into() }),
        }
    }

    // People by e-mail: customers pass through (they are created as needed); agents are matched, and one
    // the target lacks is named, since a target may refuse to assign tickets to a non-agent.
    p.mapping.users.keep_unmapped = true;
    for a in &source.agents {
        match find(a, target.agents.iter()) {
            Some(t) if t != a => {
                p.mapping.users.map.insert(a.clone(), t.clone());
            }
            Some(_) => {}
            None if target.accepts_unknown_agents => {
                note(&mut p, "users", a, "agent not in the target: becomes a user there, not an agent".into());
            }
            None => p.decisions.push(Decision {
                table: "users".into(),
                value: a.clone(),
                why: "agent not in the target, which refuses tickets assigned to non-agents: add the agent there or map the address to one".into(),
            }),
        }
    }

    // Custom fields by title and kind; drop-down values by value or label.
    let target_fields: BTreeMap<String, &FieldDef> = target.custom_fields.iter().map(|f| (norm(&f.title), f)).collect();
    for f in &source.custom_fields {
        let Some(t) = target.custom_fields.iter().find(|t| t.title == f.title).or_else(|| target_fields.get(&norm(&f.title)).copied()) else {
            p.decisions.push(Decision { table: "custom_fields".into(), value: f.title.clone(), why: format!("no field titled {:?} in the target (create a {} field there, or map it to one)", f.title, f.kind.as_str()) });
            continue;
        };
        if !f.kind.fits(t.kind) {
            p.decisions.push(Decision {
                table: "custom_fields".into(),
                value: f.title.clone(),
                why: format!("the target's {:?} is a {} field, the source's a {} field", t.title, t.kind.as_str(), f.kind.as_str()),
            });
            continue;
        }
        p.mapping.custom_fields.map.insert(f.title.clone(), t.title.clone());
        if !matches!(f.kind, FieldKind::DropDown | FieldKind::MultiSelect) || t.kind == FieldKind::Text {
            continue;
        }
        let mut values = Table::default();
        for o in &f.options {
            let hit = t.options.iter().find(|x| x.value == o.value).or_else(|| {
                t.options.iter().find(|x| [&x.value, &x.label].iter().any(|a| [&o.value, &o.label].iter().any(|b| norm(a) == norm(b))))
            });
            match hit {
                Some(x) => {
                    values.map.insert(o.value.clone(), x.value.clone());
                }
                None => p.decisions.push(Decision {
                    table: format!("custom_field_values.{}", f.title),
                    value: o.value.clone(),
                    why: format!("no option {:?} (label {:?}) in the target's {:?}", o.value, o.label, t.title),
                }),
            }
        }
        // Written when it renames something, or when some option is left to decide (then the listed ones
        // keep the table strict). With no option matched at all the table would be empty, which means
        // "pass through": it is left out and its decisions are written as a commented table instead.
        let open = p.decisions.iter().any(|d| d.table == format!("custom_field_values.{}", f.title));
        if !values.map.is_empty() && (open || values.map.iter().any(|(k, v)| k != v)) {
            p.mapping.custom_field_values.insert(f.title.clone(), values);
        }
    }
    p
}

fn toml_str(s: &str) -> String {
    // TOML basic strings take JSON's escapes for everything deltadesk can meet in a name.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The `[mapping]` section, with every note and open decision as a comment next to its table.
pub fn render(p: &Proposal, source_kind: &str, target_kind: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Written by `deltadesk mapping init` from the vocabularies of the {source_kind} source and the {target_kind} target.");
    let _ = writeln!(out, "# Review it, settle every line marked DECIDE, then paste this section into your config.");
    let _ = writeln!(out, "# A value a table does not name fails its ticket with a named cause (reported, retried), never silently.");
    if p.decisions.is_empty() {
        let _ = writeln!(out, "# Nothing is left to decide.");
    } else {
        let _ = writeln!(out, "# {} value(s) to decide.", p.decisions.len());
    }
    let _ = writeln!(out, "[mapping]");
    let mut tables: Vec<(String, &Table)> = vec![
        ("status".into(), &p.mapping.status),
        ("priority".into(), &p.mapping.priority),
        ("ticket_type".into(), &p.mapping.ticket_type),
        ("groups".into(), &p.mapping.groups),
        ("organizations".into(), &p.mapping.organizations),
        ("users".into(), &p.mapping.users),
        ("custom_fields".into(), &p.mapping.custom_fields),
    ];
    for (title, t) in &p.mapping.custom_field_values {
        tables.push((format!("custom_field_values.{}", toml_str(title)), t));
    }
    let mut rendered = Vec::new();
    for (name, table) in tables {
        let plain = name.split_once('.').map_or(name.clone(), |(a, b)| format!("{a}.{}", b.trim_matches('"').replace("\\\"", "\"")));
        let decisions: Vec<&Decision> = p.decisions.iter().filter(|d| d.table == plain).collect();
        rendered.push(plain.clone());
        if table.map.is_empty() && decisions.is_empty() && !table.keep_unmapped {
            continue;
        }
        let _ = writeln!(out, "\n[mapping.{name}]");
        if table.keep_unmapped {
            let _ = writeln!(out, "keep_unmapped = true  # values not listed below pass through unchanged");
        }
        if !table.map.is_empty() || !decisions.is_empty() {
            let _ = writeln!(out, "[mapping.{name}.map]");
        }
        let notes = p.notes.get(&plain);
        for (k, v) in &table.map {
            match notes.and_then(|n| n.get(k)) {
                Some(n) => {
                    let _ = writeln!(out, "{} = {}  # {n}", toml_str(k), toml_str(v));
                }
                None => {
                    let _ = writeln!(out, "{} = {}", toml_str(k), toml_str(v));
                }
            }
        }
        if let Some(n) = notes {
            for (k, text) in n.iter().filter(|(k, _)| !table.map.contains_key(*k)) {
                let _ = writeln!(out, "# {}: {text}", toml_str(k));
            }
        }
        for d in decisions {
            let _ = writeln!(out, "# DECIDE {} = \"\"  # {}", toml_str(&d.value), d.why);
        }
    }
    // Decisions of tables not written (a drop-down none of whose options matched): a commented table.
    let mut last = String::new();
    for d in p.decisions.iter().filter(|d| !rendered.contains(&d.table)) {
        if d.table != last {
            let (a, b) = d.table.split_once('.').unwrap_or((d.table.as_str(), ""));
            let key = if b.is_empty() { a.to_string() } else { format!("{a}.{}", toml_str(b)) };
            let _ = writeln!(out, "\n# [mapping.{key}.map]");
            last = d.table.clone();
        }
        let _ = writeln!(out, "# DECIDE {} = \"\"  # {}", toml_str(&d.value), d.why);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(value: &str, label: &str) -> FieldOption {
        FieldOption { value: value.into(), label: label.into() }
    }

    fn zendesk_like() -> Vocabulary {
        Vocabulary {
            statuses: ["new", "open", "pending", "hold", "solved", "closed"].map(String::from).to_vec(),
            priorities: ["low", "normal", "high", "urgent"].map(String::from).to_vec(),
            ticket_types: ["question", "incident", "problem", "task"].map(String::from).to_vec(),
            groups: vec!["Support L1".into(), "Billing".into(), "Night shift".into()],
            organizations: vec![OrgDef { name: "Acme Corp".into(), domains: vec!["acme.example".into()] }, OrgDef { name: "Globex Inc".into(), domains: vec!["globex.example".into()] }],
            agents: vec!["ann@support.example".into(), "Bob@Support.example".into(), "carl@support.example".into()],
            custom_fields: vec![
                FieldDef { title: "Product".into(), kind: FieldKind::DropDown, options: vec![opt("product_basic", "Basic"), opt("product_pro", "Pro"), opt("product_legacy", "Legacy")] },
                FieldDef { title: "Order number".into(), kind: FieldKind::Number, options: vec![] },
                FieldDef { title: "Escalated".into(), kind: FieldKind::Checkbox, options: vec![] },
                FieldDef { title: "Region".into(), kind: FieldKind::Text, options: vec![] },
            ],
            creates_groups: true,
            creates_organizations: true,
            accepts_unknown_agents: true,
        }
    }

    fn freshdesk_like() -> Vocabulary {
        Vocabulary {
            statuses: ["open", "pending", "solved", "closed"].map(String::from).to_vec(),
            priorities: ["low", "normal", "high", "urgent"].map(String::from).to_vec(),
            ticket_types: ["question", "incident", "problem", "task"].map(String::from).to_vec(),
            groups: vec!["support l1".into(), "Billing".into()],
            organizations: vec![OrgDef { name: "ACME Corporation".into(), domains: vec!["ACME.example".into()] }],
            agents: vec!["ann@support.example".into(), "bob@support.example".into()],
            custom_fields: vec![
                FieldDef { title: "product".into(), kind: FieldKind::DropDown, options: vec![opt("Basic", "Basic"), opt("product_pro", "product_pro")] },
                FieldDef { title: "Order number".into(), kind: FieldKind::Text, options: vec![] },
                FieldDef { title: "Escalated".into(), kind: FieldKind::Text, options: vec![] },
            ],
            creates_groups: true,
            creates_organizations: false,
            accepts_unknown_agents: false,
        }
    }

    #[test]
    fn names_match_exactly_then_ignoring_case_and_organizations_by_domain() {
        let p = propose(&zendesk_like(), &freshdesk_like());
        let m = &p.mapping;
        assert_eq!(m.groups.map["Support L1"], "support l1");
        assert_eq!(m.groups.map["Billing"], "Billing");
        assert_eq!(m.groups.map["Night shift"], "Night shift", "created in the target");
        assert_eq!(m.organizations.map["Acme Corp"], "ACME Corporation", "matched by domain");
        assert_eq!(m.users.map.get("Bob@Support.example").map(String::as_str), Some("bob@support.example"));
        assert!(!m.users.map.contains_key("ann@support.example"), "identical addresses need no entry");
        assert_eq!(m.custom_fields.map["Product"], "product");
        assert_eq!(m.custom_fields.map["Order number"], "Order number", "a number fits a text field");
        let product = &m.custom_field_values["Product"];
        assert_eq!(product.map["product_basic"], "Basic", "matched by the source's label");
        assert_eq!(product.map["product_pro"], "product_pro");
    }

    #[test]
    fn what_cannot_be_matched_is_left_to_decide_with_the_reason_never_guessed() {
        let p = propose(&zendesk_like(), &freshdesk_like());
        let d = |table: &str, value: &str| p.decisions.iter().find(|d| d.table == table && d.value == value).map(|d| d.why.clone());
        assert!(d("custom_fields", "Escalated").unwrap().contains("text field"), "{:?}", p.decisions);
        assert!(d("custom_fields", "Region").unwrap().contains("no field titled"));
        assert!(d("custom_field_values.Product", "product_legacy").is_some());
        assert!(d("organizations", "Globex Inc").is_some(), "the target does not create organizations");
        assert!(d("users", "carl@support.example").unwrap().contains("refuses"));
        assert!(!p.mapping.custom_field_values["Product"].map.contains_key("product_legacy"), "an unmatched option must stay out of the table so it fails loudly");
        assert!(p.mapping.custom_field_values["Product"].fallback.is_none());
        // The same vocabulary on both sides leaves nothing to decide.
        assert!(propose(&zendesk_like(), &zendesk_like()).decisions.is_empty());
    }

    #[test]
    fn statuses_the_target_lacks_are_listed_with_their_fallback_noted() {
        let p = propose(&zendesk_like(), &freshdesk_like());
        assert_eq!(p.mapping.status.map.len(), 6);
        assert_eq!(p.mapping.status.map["hold"], "hold");
        assert!(p.notes["status"]["hold"].contains("fallback"));
        assert!(!p.notes["status"].contains_key("open"));
    }

    #[test]
    fn the_rendered_section_parses_back_to_the_proposed_mapping() {
        let p = propose(&zendesk_like(), &freshdesk_like());
        let text = render(&p, "zendesk", "freshdesk");
        #[derive(Deserialize)]
        struct Doc {
            mapping: Mapping,
        }
        let doc: Doc = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(doc.mapping, p.mapping, "{text}");
        assert_eq!(text.matches("# DECIDE").count(), p.decisions.len(), "{text}");
        assert!(text.contains("# DECIDE \"Escalated\""), "{text}");
    }
}

//! Field mapping between help desks: how a source ticket's statuses, priorities, types, groups,
//! organizations, people and custom fields are named in the target. Applied by the writer before every
//! write and by `verify` before every comparison, so both see the target's vocabulary.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Priority, Status, Ticket, TicketType};

/// One dimension's table. With no entries the dimension passes through unchanged; with entries, a value
/// without one takes `fallback` if set, else the ticket fails with a clear cause (never a silent drop).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    /// Source value → target value.
    #[serde(default)]
    pub map: BTreeMap<String, String>,
    /// Target value for source values the map does not name (e.g. a catch-all group).
    #[serde(default)]
    pub fallback: Option<String>,
    /// Keep unnamed values as they are instead of failing.
    #[serde(default)]
    pub keep_unmapped: bool,
}

impl Table {
    fn is_identity(&self) -> bool {
        self.map.is_empty() && self.fallback.is_none()
    }

    /// The target's name for `value`, or why there is none.
    pub fn lookup(&self, dimension: &str, value: &str) -> Result<String, String> {
        if self.is_identity() {
            return Ok(value.to_string());
        }
        if let Some(v) = self.map.get(value) {
            return Ok(v.clone());
        }
        if let Some(f) = &self.fallback {
            return Ok(f.clone());
        }
        if self.keep_unmapped {
            return Ok(value.to_string());
        }
        Err(format!("{dimension} {value:?} has no mapping (add it under [mapping.{dimension}] or set a fallback)"))
    }
}

/// The `[mapping]` section of the config (or a migration's `mapping` on AWS).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    #[serde(default)]
    pub status: Table,
    #[serde(default)]
    pub priority: Table,
    #[serde(default)]
    pub ticket_type: Table,
    /// Groups (queues, teams) by name.
    #[serde(default)]
    pub groups: Table,
    /// Organizations (companies) by name.
    #[serde(default)]
    pub organizations: Table,
    /// People by email (agents whose address differs in the target, for instance).
    #[serde(default)]
    pub users: Table,
    /// Custom fields by title.
    #[serde(default)]
    pub custom_fields: Table,
    /// Drop-down values per (source) custom field title.
    #[serde(default)]
    pub custom_field_values: BTreeMap<String, Table>,
    /// Tags added to every migrated ticket (e.g. `migrated`); the source's tags are always kept.
    #[serde(default)]
    pub add_tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ticket {ticket}: {cause}")]
pub struct MappingError {
    pub ticket: String,
    pub cause: String,
}

impl Mapping {
    pub fn is_identity(&self) -> bool {
        *self == Mapping::default()
    }

    /// The ticket as the target should hold it.
    pub fn apply(&self, ticket: &Ticket) -> Result<Ticket, MappingError> {
        if self.is_identity() {
            return Ok(ticket.clone());
        }
        let err = |cause: String| MappingError { ticket: ticket.source_id.0.clone(), cause };
        let mut t = ticket.clone();
        if t.status != Status::Deleted {
            let s = self.status.lookup("status", t.status.as_str()).map_err(err)?;
            t.status = Status::parse(&s).ok_or_else(|| err(format!("status mapping gives {s:?}, not one of new, open, pending, hold, solved, closed")))?;
        }
        if let Some(p) = t.priority {
            let s = self.priority.lookup("priority", p.as_str()).map_err(err)?;
            t.priority = Some(Priority::parse(&s).ok_or_else(|| err(format!("priority mapping gives {s:?}, not one of low, normal, high, urgent")))?);
        }
        if let Some(ty) = t.ticket_type {
            let s = self.ticket_type.lookup("ticket_type", ty.as_str()).map_err(err)?;
            t.ticket_type = Some(TicketType::parse(&s).ok_or_else(|| err(format!("ticket_type mapping gives {s:?}, not one of question, incident, problem, task")))?);
        }
        if let Some(g) = t.group.as_mut() {
            g.name = self.groups.lookup("groups", &g.name).map_err(err)?;
        }
        if let Some(o) = t.organization.as_mut() {
            o.name = self.organizations.lookup("organizations", &o.name).map_err(err)?;
        }
        for u in t.requester.iter_mut().chain(t.assignee.iter_mut()).chain(t.comments.iter_mut().map(|c| &mut c.author)) {
            u.email = self.users.lookup("users", &u.email).map_err(err)?;
        }
        let mut fields = BTreeMap::new();
        for (title, value) in &t.custom_fields {
            let target_title = self.custom_fields.lookup("custom_fields", title).map_err(err)?;
            let value = match (self.custom_field_values.get(title), value.as_str()) {
                (Some(table), Some(v)) => serde_json::Value::String(table.lookup(&format!("custom_field_values.{title}"), v).map_err(err)?),
                _ => value.clone(),
            };
            fields.insert(target_title, value);
        }
        t.custom_fields = fields;
        for tag in &self.add_tags {
            if !t.tags.contains(tag) {
                t.tags.push(tag.clone());
            }
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Group, Role, TicketId, User};

    fn ticket() -> Ticket {
        let u = |e: &str| User { source_id: e.into(), email: e.into(), name: e.into(), role: Role::Agent };
        Ticket {
            source_id: TicketId("7".into()),
            subject: "s".into(),
            status: Status::Hold,
            priority: Some(Priority::Urgent),
            ticket_type: None,
            requester: Some(u("jane@old.example")),
            assignee: Some(u("bob@old.example")),
            group: Some(Group { source_id: "1".into(), name: "Tier 1".into() }),
            organization: None,
            tags: vec!["vip".into()],
            custom_fields: BTreeMap::from([("Product".into(), serde_json::json!("widget_v1")), ("Order".into(), serde_json::json!(42))]),
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            comments: vec![],
        }
    }

    #[test]
    fn an_empty_mapping_changes_nothing() {
        let t = ticket();
        assert_eq!(Mapping::default().apply(&t).unwrap(), t);
    }

    #[test]
    fn tables_rename_values_with_fallbacks() {
        let m: Mapping = toml_like(
            r#"{"status": {"map": {"hold": "pending"}}, "groups": {"map": {"Tier 1": "Support"}},
                "users": {"map": {"bob@old.example": "bob@new.example"}, "keep_unmapped": true},
                "custom_fields": {"map": {"Product": "Product line", "Order": "Order number"}},
                "custom_field_values": {"Product": {"map": {"widget_v1": "widget"}}},
                "add_tags": ["migrated"]}"#,
        );
        let t = m.apply(&ticket()).unwrap();
        assert_eq!(t.status, Status::Pending);
        assert_eq!(t.group.unwrap().name, "Support");
        assert_eq!(t.assignee.unwrap().email, "bob@new.example");
        assert_eq!(t.requester.unwrap().email, "jane@old.example", "kept: keep_unmapped");
        assert_eq!(t.custom_fields["Product line"], serde_json::json!("widget"));
        assert_eq!(t.custom_fields["Order number"], serde_json::json!(42));
        assert_eq!(t.tags, vec!["vip".to_string(), "migrated".to_string()]);
    }

    #[test]
    fn an_unmapped_value_is_a_named_error_not_a_silent_drop() {
        let m: Mapping = toml_like(r#"{"status": {"map": {"open": "open"}}}"#);
        let e = m.apply(&ticket()).unwrap_err();
        assert_eq!(e.ticket, "7");
        assert!(e.cause.contains("status \"hold\" has no mapping"), "{e}");
        let m: Mapping = toml_like(r#"{"groups": {"map": {"Billing": "Finance"}, "fallback": "Triage"}}"#);
        assert_eq!(m.apply(&ticket()).unwrap().group.unwrap().name, "Triage");
        let m: Mapping = toml_like(r#"{"priority": {"map": {"urgent": "critical"}}}"#);
        assert!(m.apply(&ticket()).unwrap_err().cause.contains("critical"));
    }

    fn toml_like(json: &str) -> Mapping {
        serde_json::from_str(json).unwrap()
    }
}

//! The canonical help-desk model every connector translates to and from; no HTTP or cloud types here.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A source ticket's identifier, as the source help desk spells it (Zendesk numbers, RT numbers, …).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TicketId(pub String);

impl std::fmt::Display for TicketId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A ticket's identifier in the target help desk.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TargetId(pub String);

impl std::fmt::Display for TargetId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Ticket status in canonical form. Connectors map their own vocabularies onto these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    New,
    Open,
    Pending,
    Hold,
    Solved,
    Closed,
    /// Deleted in the source; the target copy is deleted too.
    Deleted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Open => "open",
            Status::Pending => "pending",
            Status::Hold => "hold",
            Status::Solved => "solved",
            Status::Closed => "closed",
            Status::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "new" => Status::New,
            "open" => Status::Open,
            "pending" => Status::Pending,
            "hold" => Status::Hold,
            "solved" => Status::Solved,
            "closed" => Status::Closed,
            "deleted" => Status::Deleted,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }
    pub fn parse(s: &str) -> Option<Priority> {
        Some(match s {
            "low" => Priority::Low,
            "normal" => Priority::Normal,
            "high" => Priority::High,
            "urgent" => Priority::Urgent,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TicketType {
    Question,
    Incident,
    Problem,
    Task,
}

impl TicketType {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketType::Question => "question",
            TicketType::Incident => "incident",
            TicketType::Problem => "problem",
            TicketType::Task => "task",
        }
    }
    pub fn parse(s: &str) -> Option<TicketType> {
        Some(match s {
            "question" => TicketType::Question,
            "incident" => TicketType::Incident,
            "problem" => TicketType::Problem,
            "task" => TicketType::Task,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    EndUser,
    Agent,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::EndUser => "end-user",
            Role::Agent => "agent",
            Role::Admin => "admin",
        }
    }
}

/// A person as the source knows them. Users are matched across help desks by email.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct User {
    pub source_id: String,
    pub email: String,
    pub name: String,
    pub role: Role,
}

/// Organizations are matched across help desks by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Organization {
    pub source_id: String,
    pub name: String,
    #[serde(default)]
    pub domains: Vec<String>,
}

/// Groups (queues, teams) are matched across help desks by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Group {
    pub source_id: String,
    pub name: String,
}

/// Attachment metadata. The bytes travel separately, as a stream, through the blob store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub source_id: String,
    pub file_name: String,
    pub content_type: String,
    pub size: u64,
    /// Filled in when the bytes are staged (the source rarely publishes a hash).
    #[serde(default)]
    pub sha256: Option<String>,
    pub inline: bool,
    /// Where the source serves the bytes; opaque to the engine, meaningful to the source connector.
    pub source_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comment {
    pub source_id: String,
    pub author: User,
    pub html_body: String,
    pub plain_body: String,
    pub public: bool,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

/// A full ticket snapshot: fields, comments in source order, and attachment metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    pub source_id: TicketId,
    pub subject: String,
    pub status: Status,
    pub priority: Option<Priority>,
    pub ticket_type: Option<TicketType>,
    pub requester: Option<User>,
    pub assignee: Option<User>,
    pub group: Option<Group>,
    pub organization: Option<Organization>,
    pub tags: Vec<String>,
    /// Custom fields by field *title*, so that they line up across help desks with different field ids.
    pub custom_fields: BTreeMap<String, serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub comments: Vec<Comment>,
}

impl Ticket {
    /// A hash of everything but the comments: tells "fields changed" from "only new comments".
    pub fn fields_hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut tags = self.tags.clone();
        tags.sort();
        let v = serde_json::json!({
            "subject": self.subject,
            "status": self.status,
            "priority": self.priority,
            "type": self.ticket_type,
            "requester": self.requester.as_ref().map(|u| &u.email),
            "assignee": self.assignee.as_ref().map(|u| &u.email),
            "group": self.group.as_ref().map(|g| &g.name),
            "organization": self.organization.as_ref().map(|o| &o.name),
            "tags": tags,
            "custom_fields": self.custom_fields,
        });
        hex::encode(Sha256::digest(v.to_string().as_bytes()))
    }
}

//! Work messages carried on the fetch and write queues (the same JSON on SQS and on the local queue).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::records::Version;
use crate::model::TicketId;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// Read listing page `page` of a run's window.
    FetchPage { migration: String, run_id: String, page: u64, cursor: Option<String> },
    /// Read one ticket's snapshot and stage it with its attachments.
    FetchTicket { migration: String, run_id: String, item: String, ticket_id: TicketId, listed_updated_at: Option<DateTime<Utc>> },
    /// Upsert one staged snapshot into the target. `snapshot_key == None` means the ticket is gone in the source.
    WriteTicket { migration: String, run_id: String, item: String, ticket_id: TicketId, snapshot_key: Option<String>, version: Version },
}

impl Message {
    pub fn to_body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
    pub fn from_body(body: &str) -> Result<Message, serde_json::Error> {
        serde_json::from_str(body)
    }
    pub fn migration(&self) -> &str {
        match self {
            Message::FetchPage { migration, .. } | Message::FetchTicket { migration, .. } | Message::WriteTicket { migration, .. } => migration,
        }
    }
    pub fn run_id(&self) -> &str {
        match self {
            Message::FetchPage { run_id, .. } | Message::FetchTicket { run_id, .. } | Message::WriteTicket { run_id, .. } => run_id,
        }
    }
    /// A name for logs and reports that never includes ticket content.
    pub fn describe(&self) -> String {
        match self {
            Message::FetchPage { run_id, page, .. } => format!("run {run_id} listing page {page}"),
            Message::FetchTicket { run_id, ticket_id, .. } => format!("run {run_id} fetch ticket {ticket_id}"),
            Message::WriteTicket { run_id, ticket_id, .. } => format!("run {run_id} write ticket {ticket_id}"),
        }
    }
}

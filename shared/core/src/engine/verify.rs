//! `verify`: compares source and target through the mapping — missing, duplicated and mismatched tickets,
//! comments and attachments (bytes by sha256).

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::mapping::Mapping;
use super::EngineError;
use crate::model::{Attachment, TargetId, Ticket, TicketId};
use crate::ports::{ByteStream, HelpDeskSource, HelpDeskTarget};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub source_tickets: usize,
    pub target_tickets: usize,
    pub comments_checked: usize,
    pub attachments_checked: usize,
    /// Source tickets with no target ticket.
    pub missing: Vec<String>,
    /// Source tickets with more than one target ticket.
    pub duplicated: Vec<String>,
    /// Tickets whose fields, comments or attachments differ (each line names the ticket and what differs),
    /// and target tickets whose source ticket is gone.
    pub mismatched: Vec<String>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.duplicated.is_empty() && self.mismatched.is_empty()
    }
    pub fn summary_line(&self) -> String {
        format!("verify: missing={} duplicated={} mismatched={}", self.missing.len(), self.duplicated.len(), self.mismatched.len())
    }
}

async fn sha_of(stream: ByteStream) -> Result<String, std::io::Error> {
    let mut h = Sha256::new();
    let mut s = stream;
    while let Some(chunk) = s.next().await {
        h.update(&chunk?);
    }
    Ok(hex::encode(h.finalize()))
}

/// Compares every live source ticket with its copy. Comment times are not compared: targets cannot
/// back-date comments appended after creation (documented in the README).
pub async fn verify(source: &dyn HelpDeskSource, target: &dyn HelpDeskTarget, source_ref_prefix: &str, concurrency: usize) -> Result<VerifyReport, EngineError> {
    verify_mapped(source, target, source_ref_prefix, &Mapping::default(), concurrency).await
}

/// Verifies a migration with its own connectors, source reference and field mapping.
pub async fn for_engine(engine: &super::Engine, concurrency: usize) -> Result<VerifyReport, EngineError> {
    verify_mapped(engine.source.as_ref(), engine.target.as_ref(), &engine.settings.source_ref_prefix, &engine.settings.mapping, concurrency).await
}

/// Like [`verify`], comparing each source ticket as `mapping` names it in the target.
pub async fn verify_mapped(
    source: &dyn HelpDeskSource,
    target: &dyn HelpDeskTarget,
    source_ref_prefix: &str,
    mapping: &Mapping,
    concurrency: usize,
) -> Result<VerifyReport, EngineError> {
    let mut report = VerifyReport::default();
    let mut source_ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let (ids, next) = source.list_ticket_ids(cursor.as_deref()).await?;
        source_ids.extend(ids);
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    let mut by_ref: BTreeMap<String, Vec<TargetId>> = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = target.list_tickets(cursor.as_deref()).await?;
        report.target_tickets += page.tickets.len();
        for (tid, r) in page.tickets {
            if let Some(r) = r.filter(|r| r.starts_with(source_ref_prefix)) {
                by_ref.entry(r[source_ref_prefix.len()..].to_string()).or_default().push(tid);
            }
        }
        match page.next_cursor {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    report.source_tickets = source_ids.len();
    let live: BTreeSet<String> = source_ids.iter().map(|t| t.0.clone()).collect();
    for (sref, tids) in &by_ref {
        if !live.contains(sref) {
            report.mismatched.push(format!("ticket {sref}: gone in the source, still in the target as {}", join(tids)));
        }
    }
    let pairs: Vec<(TicketId, TargetId)> = source_ids
        .iter()
        .filter_map(|sid| match by_ref.get(&sid.0) {
            None => {
                report.missing.push(sid.0.clone());
                None
            }
            Some(tids) => {
                if tids.len() > 1 {
                    report.duplicated.push(format!("ticket {sid}: {} target tickets ({})", tids.len(), join(tids)));
                }
                Some((sid.clone(), tids[0].clone()))
            }
        })
        .collect();
    compare_pairs(source, target, mapping, pairs, concurrency, &mut report).await?;
    Ok(report)
}

/// Verifies only the given source tickets (each must exist in the target exactly once and match).
/// Used to check the watermark promise (W1) while agents keep changing other tickets.
pub async fn verify_tickets(
    source: &dyn HelpDeskSource,
    target: &dyn HelpDeskTarget,
    source_ref_prefix: &str,
    ids: &[TicketId],
    concurrency: usize,
) -> Result<VerifyReport, EngineError> {
    let mapping = Mapping::default();
    let mapping = &mapping;
    let mut report = VerifyReport { source_tickets: ids.len(), ..Default::default() };
    let found: Vec<(TicketId, Vec<TargetId>)> = futures::stream::iter(ids.iter().cloned())
        .map(|sid| async move {
            let tids = target.find_by_source_ref(&format!("{source_ref_prefix}{sid}")).await?;
            Ok::<_, EngineError>((sid, tids))
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    let mut pairs = Vec::new();
    for (sid, mut tids) in found {
        tids.sort();
        report.target_tickets += tids.len();
        match tids.len() {
            0 => report.missing.push(sid.0.clone()),
            1 => pairs.push((sid, tids[0].clone())),
            _ => report.duplicated.push(format!("ticket {sid}: {} target tickets ({})", tids.len(), join(&tids))),
        }
    }
    compare_pairs(source, target, mapping, pairs, concurrency, &mut report).await?;
    Ok(report)
}

/// Compares each (source, target) pair, `concurrency` at a time, into the report.
async fn compare_pairs(
    source: &dyn HelpDeskSource,
    target: &dyn HelpDeskTarget,
    mapping: &Mapping,
    pairs: Vec<(TicketId, TargetId)>,
    concurrency: usize,
    report: &mut VerifyReport,
) -> Result<(), EngineError> {
    let results: Vec<(Vec<String>, usize, usize)> = futures::stream::iter(pairs)
        .map(|(sid, tid)| async move { compare_one(source, target, mapping, &sid, &tid).await })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    for (diffs, comments, atts) in results {
        report.mismatched.extend(diffs);
        report.comments_checked += comments;
        report.attachments_checked += atts;
    }
    report.missing.sort();
    report.mismatched.sort();
    Ok(())
}

fn join(ids: &[TargetId]) -> String {
    ids.iter().map(|t| t.0.as_str()).collect::<Vec<_>>().join(", ")
}

async fn compare_one(source: &dyn HelpDeskSource, target: &dyn HelpDeskTarget, mapping: &Mapping, sid: &TicketId, tid: &TargetId) -> Result<(Vec<String>, usize, usize), EngineError> {
    let Some(s) = source.ticket(sid).await? else {
        // Deleted between listing and reading: the next delta will carry the deletion.
        return Ok((vec![], 0, 0));
    };
    let s = match mapping.apply(&s) {
        Ok(m) => m,
        Err(e) => return Ok((vec![format!("ticket {sid}: cannot be mapped: {}", e.cause)], 0, 0)),
    };
    let Some(t) = target.read_ticket(tid).await? else {
        return Ok((vec![format!("ticket {sid}: target ticket {tid} is listed but cannot be read")], 0, 0));
    };
    let mut diffs = Vec::new();
    compare_fields(&s, &t, &mut diffs);
    let mut atts = 0;
    if s.comments.len() != t.comments.len() {
        diffs.push(format!("{} comments in the source, {} in the target", s.comments.len(), t.comments.len()));
    }
    for (i, (sc, tc)) in s.comments.iter().zip(t.comments.iter()).enumerate() {
        if sc.plain_body.trim() != tc.plain_body.trim() {
            diffs.push(format!("comment #{i} ({}) body differs", sc.source_id));
        }
        if sc.public != tc.public {
            diffs.push(format!("comment #{i} ({}) public={} in the source, {} in the target", sc.source_id, sc.public, tc.public));
        }
        if !sc.author.email.eq_ignore_ascii_case(&tc.author.email) {
            diffs.push(format!("comment #{i} ({}) author differs", sc.source_id));
        }
        let mut sa = Vec::new();
        for a in &sc.attachments {
            sa.push((a.file_name.clone(), hash_source(source, a).await?));
        }
        let mut ta = Vec::new();
        for a in &tc.attachments {
            ta.push((a.file_name.clone(), hash_target(target, a).await?));
        }
        sa.sort();
        ta.sort();
        atts += sa.len();
        if sa != ta {
            diffs.push(format!("comment #{i} ({}) attachments differ: source {:?}, target {:?}", sc.source_id, names(&sa), names(&ta)));
        }
    }
    let n = s.comments.len();
    Ok((diffs.into_iter().map(|d| format!("ticket {sid} (target {tid}): {d}")).collect(), n, atts))
}

fn names(v: &[(String, String)]) -> Vec<String> {
    v.iter().map(|(n, h)| format!("{n}:{}", &h[..h.len().min(12)])).collect()
}

async fn hash_source(source: &dyn HelpDeskSource, a: &Attachment) -> Result<String, EngineError> {
    let s = source.download(a).await?;
    sha_of(s).await.map_err(|e| EngineError::Target(crate::ports::TargetError::Io(e)))
}

async fn hash_target(target: &dyn HelpDeskTarget, a: &Attachment) -> Result<String, EngineError> {
    let s = target.download(a).await?;
    sha_of(s).await.map_err(|e| EngineError::Target(crate::ports::TargetError::Io(e)))
}

fn compare_fields(s: &Ticket, t: &Ticket, diffs: &mut Vec<String>) {
    let email = |u: &Option<crate::model::User>| u.as_ref().map(|u| u.email.to_lowercase());
    let mut check = |name: &str, a: String, b: String| {
        if a != b {
            diffs.push(format!("{name}: source {a:?}, target {b:?}"));
        }
    };
    check("subject", s.subject.clone(), t.subject.clone());
    check("status", s.status.as_str().into(), t.status.as_str().into());
    check("priority", format!("{:?}", s.priority), format!("{:?}", t.priority));
    check("type", format!("{:?}", s.ticket_type), format!("{:?}", t.ticket_type));
    check("requester", format!("{:?}", email(&s.requester)), format!("{:?}", email(&t.requester)));
    check("assignee", format!("{:?}", email(&s.assignee)), format!("{:?}", email(&t.assignee)));
    check("group", format!("{:?}", s.group.as_ref().map(|g| &g.name)), format!("{:?}", t.group.as_ref().map(|g| &g.name)));
    check("organization", format!("{:?}", s.organization.as_ref().map(|o| &o.name)), format!("{:?}", t.organization.as_ref().map(|o| &o.name)));
    let mut st = s.tags.clone();
    st.sort();
    let mut tt = t.tags.clone();
    tt.sort();
    check("tags", format!("{st:?}"), format!("{tt:?}"));
    check("custom fields", format!("{:?}", s.custom_fields), format!("{:?}", t.custom_fields));
}

//! Use case `write_ticket`: upserts one staged snapshot into the target under the upsert protocol (U1–U5).

use super::fetch::{attachment_key, Handled, StagedTicket};
use super::records::*;
use super::runs::{self, counter, ItemEnd};
use super::{Engine, EngineError};
use crate::model::{Comment, TicketId};
use crate::ports::state::{Condition, StateError, Write};
use crate::ports::{CommentWrite, TargetError, UploadedAttachment};

/// Writes one ticket. Safe under duplicate and out-of-order delivery, concurrent workers and crashes.
pub async fn write_ticket(
    engine: &Engine,
    run_id: &str,
    item_sk: &str,
    ticket_id: &TicketId,
    snapshot_key: Option<&str>,
    version: Version,
) -> Result<Handled, EngineError> {
    if let Some(stale) = super::fetch::item_is_stale(engine, run_id, item_sk, ticket_id).await? {
        return Ok(stale);
    }
    let lease = acquire_lease(engine, ticket_id).await?;
    let result = write_locked(engine, ticket_id, snapshot_key, version).await;
    release_lease(engine, ticket_id, lease).await;
    let (outcome, adds, warnings) = result?;
    runs::end_item(engine, run_id, item_sk, ticket_id, ItemEnd::Done { outcome, adds, warnings }).await?;
    Ok(Handled::Done(format!("ticket {ticket_id}: {outcome}")))
}

type Written = (&'static str, Vec<(&'static str, i64)>, Vec<String>);

async fn write_locked(engine: &Engine, ticket_id: &TicketId, snapshot_key: Option<&str>, version: Version) -> Result<Written, EngineError> {
    let pk = map_pk(&engine.migration);
    let sk = map_sk(ticket_id);
    let (mut map, mut rev) = match load::<TicketMapping>(engine.state.as_ref(), &pk, &sk).await? {
        Some((m, r)) => (m, Some(r)),
        None => (TicketMapping::default(), None),
    };
    // U4: an older (or the same) version never overwrites a newer one.
    if let Some(v) = map.version {
        if v >= version && !map.create_in_doubt && !map.append_in_doubt {
            return Ok((counter::UNCHANGED, vec![], vec![]));
        }
    }
    let Some(key) = snapshot_key else {
        // Gone in the source: delete the copy.
        if let Some(target_id) = map.target_id.clone() {
            if !map.deleted {
                engine.target.delete_ticket(&target_id).await?;
            }
        }
        let outcome = if map.target_id.is_some() && !map.deleted { counter::DELETED } else { counter::UNCHANGED };
        map.deleted = true;
        map.version = Some(version);
        save(engine, &pk, &sk, &map, &mut rev).await?;
        return Ok((outcome, vec![], vec![]));
    };
    if map.deleted {
        // Back in the source (restored from the trash or from spam) after we deleted its copy: the copy is
        // gone for good (targets do not list deleted tickets), so the ticket is created afresh.
        map = TicketMapping { version: map.version, ..TicketMapping::default() };
    }
    let staged: StagedTicket = serde_json::from_slice(&engine.blobs.get(key).await?)
        .map_err(|e| EngineError::BadMessage(format!("staged snapshot {key} of ticket {ticket_id}: {e}")))?;
    // The target's vocabulary: an unmapped value fails the ticket with its cause (reported, retried next run).
    let mapped = engine
        .settings
        .mapping
        .apply(&staged.ticket)
        .map_err(|e| TargetError::Unmappable { record: format!("ticket {}", e.ticket), cause: e.cause })?;
    let ticket = &mapped;
    let mut warnings: Vec<String> = staged.unavailable.iter().map(|(_, w)| format!("ticket {ticket_id}: {w} (not copied)")).collect();
    let source_ref = engine.source_ref(ticket_id);

    // U1: adopt a ticket an interrupted create may have left in the target, instead of creating another.
    let mut adopted = 0;
    if map.target_id.is_none() && map.create_in_doubt {
        let mut found = engine.target.find_by_source_ref(&source_ref).await?;
        found.sort_by_key(|t| t.0.parse::<u64>().unwrap_or(u64::MAX));
        if let Some(first) = found.first().cloned() {
            for extra in &found[1..] {
                tracing::warn!(ticket = %ticket_id, extra = %extra, "deleting a duplicate target ticket left by an interrupted create");
                engine.target.delete_ticket(extra).await?;
            }
            // Read the orphan back: what it already holds decides what is still to write. (Writing fields
            // it already has would fail anyway on a ticket created closed, which the target refuses to update.)
            let Some(orphan) = engine.target.read_ticket(&first).await? else {
                return Err(EngineError::Busy(format!("orphan {first} of ticket {ticket_id} is listed but cannot be read yet")));
            };
            map.comments_done = orphan.comments.len();
            map.fields_hash = Some(orphan.fields_hash());
            map.target_id = Some(first);
            adopted = 1;
        }
        map.create_in_doubt = false;
    }

    let mut adds: Vec<(&'static str, i64)> = vec![(counter::ADOPTED, adopted)];
    let outcome;
    match map.target_id.clone() {
        None => {
            // Mark the create as in doubt before it can reach the target; cleared with the mapping.
            map.create_in_doubt = true;
            save(engine, &pk, &sk, &map, &mut rev).await?;
            let mut writes = Vec::new();
            let mut uploads_all = Vec::new();
            for c in &ticket.comments {
                uploads_all.push(upload_comment_attachments(engine, ticket_id, c, &mut warnings, &mut adds).await?);
            }
            for (c, uploads) in ticket.comments.iter().zip(uploads_all) {
                writes.push(CommentWrite { comment: c, uploads });
            }
            let target_id = engine.target.create_ticket(&source_ref, ticket, &writes).await?;
            crate::failpoint!(engine, "after_target_create");
            map.target_id = Some(target_id.clone());
            map.create_in_doubt = false;
            map.comments_done = ticket.comments.len();
            map.fields_hash = Some(ticket.fields_hash());
            map.version = Some(version);
            if let Err(e) = save(engine, &pk, &sk, &map, &mut rev).await {
                // Our lease ran out while we created (work slower than the lease TTL) and another writer
                // moved the mapping on. Unless it adopted our ticket, ours is a second copy: take it back (U1).
                let current = load::<TicketMapping>(engine.state.as_ref(), &pk, &sk).await?.and_then(|(m, _)| m.target_id);
                if current.as_ref() != Some(&target_id) {
                    tracing::warn!(ticket = %ticket_id, duplicate = %target_id, "lost the lease while creating: deleting the second copy");
                    engine.target.delete_ticket(&target_id).await?;
                }
                return Err(e);
            }
            adds.push((counter::COMMENTS, ticket.comments.len() as i64));
            // The save above already recorded this version: no second write (each is a billed request on
            // DynamoDB).
            return Ok((counter::CREATED, adds, warnings));
        }
        Some(target_id) => {
            if map.append_in_doubt {
                // U2: an append may have landed before the crash; the target's count settles it.
                map.comments_done = engine.target.comment_count(&target_id).await?;
                map.append_in_doubt = false;
                save(engine, &pk, &sk, &map, &mut rev).await?;
            }
            let mut changed = false;
            // Comments first: a ticket closed by this update could no longer take them.
            while map.comments_done < ticket.comments.len() {
                let c = &ticket.comments[map.comments_done];
                let uploads = upload_comment_attachments(engine, ticket_id, c, &mut warnings, &mut adds).await?;
                map.append_in_doubt = true;
                save(engine, &pk, &sk, &map, &mut rev).await?;
                engine.target.append_comment(&target_id, &CommentWrite { comment: c, uploads }).await?;
                crate::failpoint!(engine, "after_comment_append");
                map.comments_done += 1;
                map.append_in_doubt = false;
                save(engine, &pk, &sk, &map, &mut rev).await?;
                adds.push((counter::COMMENTS, 1));
                changed = true;
            }
            let hash = ticket.fields_hash();
            if map.fields_hash.as_deref() != Some(hash.as_str()) {
                match engine.target.update_fields(&target_id, ticket).await {
                    Ok(()) => {}
                    Err(TargetError::NotFound(_)) => {
                        return Err(TargetError::Unmappable {
                            record: format!("ticket {ticket_id}"),
                            cause: format!("its target ticket {target_id} was deleted in the target"),
                        }
                        .into())
                    }
                    Err(e) => return Err(e.into()),
                }
                map.fields_hash = Some(hash);
                changed = true;
            }
            outcome = if changed { counter::UPDATED } else { counter::UNCHANGED };
        }
    }
    map.version = Some(version);
    save(engine, &pk, &sk, &map, &mut rev).await?;
    Ok((outcome, adds, warnings))
}

/// Uploads a comment's staged attachments (U3: each checked byte-for-byte by sha256 after upload).
async fn upload_comment_attachments(
    engine: &Engine,
    ticket_id: &TicketId,
    comment: &Comment,
    warnings: &mut Vec<String>,
    adds: &mut Vec<(&'static str, i64)>,
) -> Result<Vec<UploadedAttachment>, EngineError> {
    let mut out = Vec::new();
    for att in &comment.attachments {
        let Some(sha) = att.sha256.as_deref() else { continue };
        let limit = engine.target.max_attachment_bytes();
        if att.size > limit {
            warnings.push(format!(
                "ticket {ticket_id}: attachment {} '{}' of comment {} is {} bytes, over the target's limit of {limit} (not copied)",
                att.source_id, att.file_name, comment.source_id, att.size
            ));
            continue;
        }
        let body = engine.blobs.open(&attachment_key(sha)).await?;
        #[cfg(feature = "failpoints")]
        let body = pause_mid_stream(engine, body);
        let up = engine.target.upload(att, body).await?;
        if up.sha256 != sha {
            return Err(TargetError::Corrupted {
                name: format!("{} of ticket {ticket_id}", att.file_name),
                cause: format!("sha256 {} in the target, {} in the source", up.sha256, sha),
            }
            .into());
        }
        adds.push((counter::ATTACHMENTS, 1));
        adds.push((counter::ATTACHMENT_BYTES, up.size as i64));
        out.push(up);
    }
    Ok(out)
}

async fn save(engine: &Engine, pk: &str, sk: &str, map: &TicketMapping, rev: &mut Option<u64>) -> Result<(), EngineError> {
    engine.state.transact(vec![put_if(pk, sk, map, *rev)]).await.map_err(|e| match e {
        // Someone else wrote this ticket's mapping while we held the lease: our lease expired. Retry later.
        StateError::ConditionFailed { .. } => EngineError::Busy(format!("mapping {sk} changed under us")),
        e => e.into(),
    })?;
    *rev = Some(rev.map(|r| r + 1).unwrap_or(1));
    Ok(())
}

async fn acquire_lease(engine: &Engine, ticket: &TicketId) -> Result<u64, EngineError> {
    let pk = lease_pk(&engine.migration);
    let sk = map_sk(ticket);
    let now = engine.now();
    let read = load::<Lease>(engine.state.as_ref(), &pk, &sk).await?;
    if let Some((l, _)) = &read {
        // Any live lease excludes every other write, even from this process: handlers sharing one engine
        // (a Lambda context, say) must not write one ticket at once either.
        if l.expires_at > now {
            return Err(EngineError::Busy(format!("ticket {ticket} is being written by {}", l.owner)));
        }
    }
    let ttl = chrono::Duration::from_std(engine.settings.lease_ttl).unwrap_or_default();
    let owner = format!("{}/{}", engine.instance, &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let lease = Lease { owner, expires_at: now + ttl };
    let rev = read.map(|(_, r)| r);
    match engine.state.transact(vec![put_if(&pk, &sk, &lease, rev)]).await {
        Ok(()) => Ok(rev.map(|r| r + 1).unwrap_or(1)),
        Err(StateError::ConditionFailed { .. }) => Err(EngineError::Busy(format!("ticket {ticket} was just taken by another worker"))),
        Err(e) => Err(e.into()),
    }
}

async fn release_lease(engine: &Engine, ticket: &TicketId, rev: u64) {
    let pk = lease_pk(&engine.migration);
    // If it fails the lease simply expires.
    let _ = engine.state.transact(vec![Write::delete(pk, map_sk(ticket), Condition::Rev(rev))]).await;
}


/// Crash point `during_attachment_upload`: the upload's first chunk goes out, then the process stops.
#[cfg(feature = "failpoints")]
fn pause_mid_stream(engine: &Engine, body: crate::ports::ByteStream) -> crate::ports::ByteStream {
    use futures::StreamExt;
    let instance = engine.instance.clone();
    let mut n = 0u32;
    Box::pin(body.then(move |chunk| {
        n += 1;
        let instance = instance.clone();
        let second = n == 2;
        async move {
            if second {
                if let Err(e) = crate::failpoint::hit("during_attachment_upload", &instance).await {
                    return Err(std::io::Error::other(e));
                }
            }
            chunk
        }
    }))
}

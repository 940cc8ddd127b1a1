//! Uploads left behind by an agent that was killed (SIGKILL, OOM, node loss):
//! pending S3 multipart uploads and `*.partial` files.
//!
//! The rule (DESIGN): an upload is orphaned only when its backup folder has no
//! `manifest.json`, no live `in-progress.json` ([`super::STALE_AFTER`]), and
//! the upload itself started longer ago than a threshold. A live backup
//! refreshes its marker every minute, so it is never touched.
//!
//! Cleanup acts for one owner: the stale marker must record that owner (the
//! agent writes it there when the run starts). An upload in a folder of
//! another owner, or in one whose owner cannot be told (no marker, or a
//! marker from before owners were recorded), is left alone.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use super::{folder_key, is_live, read_marker};
use crate::manifest::MANIFEST_FILE;
use crate::owner::Owner;
use crate::storage::{StorageError, Store};

const PARTIAL_SUFFIX: &str = ".partial";

/// The folder holding `key` (empty at the root).
fn folder_of(key: &str) -> &str {
    key.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// True when `owner` may abort the uploads in `folder`: no manifest (not a
/// complete backup), and a marker that records `owner` and is stale (the
/// run is dead).
async fn folder_is_orphaned(
    store: &Store,
    folder: &str,
    owner: &Owner,
    now: DateTime<Utc>,
) -> Result<bool, StorageError> {
    if store
        .size(&folder_key(folder, MANIFEST_FILE))
        .await?
        .is_some()
    {
        return Ok(false);
    }
    // No (readable) marker: whose upload it is cannot be told.
    Ok(read_marker(store, folder).await?.is_some_and(|marker| {
        marker.owner.as_ref() == Some(owner) && !is_live(marker.refreshed_at, now)
    }))
}

/// Aborts `owner`'s uploads orphaned by a killed agent (pending multipart
/// uploads, `*.partial` files) below `store`'s root that started more than
/// `min_age` before `now` (retention passes [`super::STALE_AFTER`]), in
/// folders with no manifest and a stale in-progress marker that records
/// `owner`; returns their keys.
pub async fn abort_orphaned_uploads(
    store: &Store,
    owner: &Owner,
    min_age: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<String>, StorageError> {
    // (key, started) of each pending upload, and how to abort it.
    let candidates: Vec<(String, Option<DateTime<Utc>>, Pending)> = match store {
        Store::S3(s3) => s3
            .pending_uploads()
            .await?
            .into_iter()
            .map(|p| (p.key.clone(), p.initiated, Pending::S3(p)))
            .collect(),
        Store::File(_) => store
            .list()
            .await?
            .into_iter()
            .filter_map(|o| {
                let target = o.key.strip_suffix(PARTIAL_SUFFIX)?.to_owned();
                Some((target, o.modified, Pending::File(o.key)))
            })
            .collect(),
    };
    let mut orphaned: HashMap<String, bool> = HashMap::new();
    let mut aborted = Vec::new();
    for (key, started, pending) in candidates {
        // Unknown start time: cannot prove it is old, so leave it.
        let Some(started) = started else { continue };
        if now - started < min_age {
            continue;
        }
        let folder = folder_of(&key).to_owned();
        let is_orphaned = match orphaned.get(&folder) {
            Some(known) => *known,
            None => {
                let known = folder_is_orphaned(store, &folder, owner, now).await?;
                orphaned.insert(folder.clone(), known);
                known
            }
        };
        if !is_orphaned {
            continue;
        }
        match (&pending, store) {
            (Pending::S3(p), Store::S3(s3)) => s3.abort_pending(p).await?,
            (Pending::File(partial), _) => store.delete(partial).await?,
            _ => continue,
        }
        tracing::info!(key = %key, started = %started, "aborted an orphaned upload");
        aborted.push(key);
    }
    Ok(aborted)
}

enum Pending {
    S3(crate::storage::s3::PendingUpload),
    File(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_of_keys() {
        assert_eq!(folder_of("b1/dump.sql.gz"), "b1");
        assert_eq!(folder_of("a/b/dump.sql.gz"), "a/b");
        assert_eq!(folder_of("dump.sql.gz"), "");
    }
}

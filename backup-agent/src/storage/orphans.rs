//! Uploads left behind by an agent that was killed (SIGKILL, OOM, node loss):
//! pending S3 multipart uploads and `*.partial` files.
//!
//! The rule (DESIGN): an upload is orphaned only when its backup folder has no
//! `manifest.json`, no `in-progress.json` refreshed in the last 15 minutes, and
//! the upload itself started longer ago than a threshold. A live backup
//! refreshes its marker every minute, so it is never touched.
//!
//! Cleanup acts for one owner: the stale marker must record that owner (the
//! agent writes it there when the run starts). An upload in a folder of
//! another owner, or in one whose owner cannot be told (no marker, or a
//! marker from before owners were recorded), is left alone.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use super::{StorageError, Store};
use crate::manifest::{IN_PROGRESS_FILE, InProgress, MANIFEST_FILE};
use crate::owner::Owner;

/// A marker refreshed within this long means the backup is alive.
pub const MARKER_FRESH_FOR: Duration = Duration::minutes(15);
/// Default age after which a pending upload of a dead backup is aborted.
pub const ORPHAN_AGE: Duration = Duration::minutes(15);

const PARTIAL_SUFFIX: &str = ".partial";

/// `folder/name`, or `name` at the root.
pub fn folder_key(folder: &str, name: &str) -> String {
    if folder.is_empty() {
        name.to_owned()
    } else {
        format!("{folder}/{name}")
    }
}

/// The folder holding `key` (empty at the root).
fn folder_of(key: &str) -> &str {
    key.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// True when `folder` holds an `in-progress.json` refreshed less than 15
/// minutes before `now`.
pub async fn marker_is_fresh(
    store: &Store,
    folder: &str,
    now: DateTime<Utc>,
) -> Result<bool, StorageError> {
    match store.get(&folder_key(folder, IN_PROGRESS_FILE)).await {
        Ok(bytes) => Ok(serde_json::from_slice::<InProgress>(&bytes)
            .is_ok_and(|marker| now - marker.refreshed_at < MARKER_FRESH_FOR)),
        Err(StorageError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
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
    match store.get(&folder_key(folder, IN_PROGRESS_FILE)).await {
        Ok(bytes) => Ok(
            serde_json::from_slice::<InProgress>(&bytes).is_ok_and(|marker| {
                marker.owner.as_ref() == Some(owner)
                    && now - marker.refreshed_at >= MARKER_FRESH_FOR
            }),
        ),
        // No marker: whose upload it is cannot be told.
        Err(StorageError::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Aborts `owner`'s orphaned uploads below `store`'s root that started more
/// than `min_age` before `now`; returns their keys.
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
    S3(super::s3::PendingUpload),
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
        assert_eq!(folder_key("", "x"), "x");
        assert_eq!(folder_key("b1", "x"), "b1/x");
    }
}

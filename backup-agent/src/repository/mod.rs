//! A backup location as one view: the backup folders below a URL, what state
//! each is in, and what may be removed from it.
//!
//! - [`list`]: every folder with its state, for people (`keeper-agent list`)
//!   and for the operator's choice of a backup to restore;
//! - [`prune`]: retention, deciding with the [`keep_policy`] which of one
//!   owner's backups go, and pins (`keep.json`);
//! - [`orphans`]: uploads left behind by a killed agent.
//!
//! All three tell a live run from a dead one by the same rule
//! ([`STALE_AFTER`]): a running dump refreshes its `in-progress.json` every
//! minute, so a marker refreshed less than fifteen minutes ago is a live run,
//! and anything older belongs to an agent that is gone. Storage only moves
//! bytes ([`crate::storage`]); what the bytes mean lives here.

mod folder;
pub mod keep_policy;
pub mod list;
pub mod orphans;
pub mod prune;

use chrono::{DateTime, Duration, Utc};

use crate::manifest::{IN_PROGRESS_FILE, InProgress};
use crate::storage::{StorageError, Store};

pub use folder::{BackupStatus, Folder, scan};
pub use keep_policy::KeepPolicy;
pub use list::{BackupListing, list_backups};

/// How long a run's `in-progress.json` (refreshed every minute) or its
/// newest write proves it alive. Older: the agent is gone and what it left
/// is an orphan. Fifteen refreshes missed is far beyond a slow store or a
/// paused pod, and short enough that leftovers do not linger.
pub const STALE_AFTER: Duration = Duration::minutes(15);

/// Whether something last refreshed (or written) at `at` is still within
/// [`STALE_AFTER`] of `now`.
pub fn is_live(at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now - at < STALE_AFTER
}

/// `folder/name`, or `name` at the root.
pub fn folder_key(folder: &str, name: &str) -> String {
    if folder.is_empty() {
        name.to_owned()
    } else {
        format!("{folder}/{name}")
    }
}

/// The `in-progress.json` of `folder`: `None` when there is none or it does
/// not parse (then the run counts as dead and its owner as unknown).
pub async fn read_marker(store: &Store, folder: &str) -> Result<Option<InProgress>, StorageError> {
    read_json(store, folder, IN_PROGRESS_FILE).await
}

/// `folder/file` parsed, or `None` when it is gone or does not parse.
async fn read_json<T: serde::de::DeserializeOwned>(
    store: &Store,
    folder: &str,
    file: &str,
) -> Result<Option<T>, StorageError> {
    match store.get(&folder_key(folder, file)).await {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(StorageError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_ends_fifteen_minutes_after_the_last_refresh() {
        let now = Utc::now();
        assert!(is_live(now, now));
        assert!(is_live(now - Duration::minutes(14), now));
        assert!(!is_live(now - Duration::minutes(15), now));
        assert!(!is_live(now - Duration::hours(2), now));
    }

    #[test]
    fn keys_of_folders() {
        assert_eq!(folder_key("", "x"), "x");
        assert_eq!(folder_key("b1", "x"), "b1/x");
    }
}

//! `list`: the backups at a location, with their state, newest last.
//!
//! A folder with a manifest is `complete`; without one it is `in progress`
//! while its `in-progress.json` marker is live ([`super::STALE_AFTER`]),
//! else `incomplete` (orphaned). A manifest that does not parse makes the
//! backup `invalid`: never listed as good.

use chrono::{DateTime, Utc};

use super::{BackupStatus, scan};
use crate::storage::{StorageError, Store};

/// One backup folder at a location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupListing {
    pub name: String,
    pub status: BackupStatus,
    /// The manifest's `startedAt`, else the marker's, else the newest object's time.
    pub time: Option<DateTime<Utc>>,
    /// Bytes stored in the folder.
    pub size: u64,
    pub tables: Option<usize>,
    pub rows: Option<u64>,
}

impl BackupListing {
    pub fn is_complete(&self) -> bool {
        self.status == BackupStatus::Complete
    }
}

/// Lists the backup folders directly below `store`'s root, sorted by name
/// (names are timestamps, so this is oldest first).
pub async fn list_backups(store: &Store) -> Result<Vec<BackupListing>, StorageError> {
    let folders = scan(store, Utc::now()).await?;
    Ok(folders
        .into_iter()
        .map(|folder| {
            let manifest = folder.manifest.as_ref();
            BackupListing {
                time: manifest
                    .map(|m| m.started_at)
                    .or(folder.marker.as_ref().map(|m| m.started_at))
                    .or(folder.newest),
                tables: manifest.map(|m| m.table_count()),
                rows: manifest.map(|m| m.row_count()),
                size: folder.size,
                status: folder.status,
                name: folder.name,
            }
        })
        .collect())
}

/// The listing as a table for people, with a verification column when given.
pub fn render_table(listings: &[(BackupListing, Option<String>)]) -> String {
    let verify = listings.iter().any(|(_, v)| v.is_some());
    let mut out = format!(
        "{:<32} {:<20} {:>14} {:>7} {:>12} {:<12}{}\n",
        "NAME",
        "TIME",
        "SIZE",
        "TABLES",
        "ROWS",
        "STATUS",
        if verify { " VERIFY" } else { "" }
    );
    for (l, v) in listings {
        let dash = || "-".to_owned();
        out.push_str(&format!(
            "{:<32} {:<20} {:>14} {:>7} {:>12} {:<12}{}\n",
            l.name,
            l.time
                .map_or_else(dash, |t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
            l.size,
            l.tables.map_or_else(dash, |t| t.to_string()),
            l.rows.map_or_else(dash, |r| r.to_string()),
            l.status.label(),
            v.as_deref().map(|v| format!(" {v}")).unwrap_or_default()
        ));
    }
    out
}

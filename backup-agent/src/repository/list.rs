//! `list`: the backups at a location, with their state, newest last.
//!
//! A folder with a manifest is `complete`; without one it is `in progress`
//! while its `in-progress.json` marker is live ([`super::STALE_AFTER`]),
//! else `incomplete` (orphaned). A manifest that does not parse makes the
//! backup `invalid`: never listed as good.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{is_live, read_marker};
use crate::manifest::{IN_PROGRESS_FILE, MANIFEST_FILE, Manifest};
use crate::storage::{StorageError, Store};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupStatus {
    Complete,
    InProgress,
    Incomplete,
    /// The manifest exists but cannot be used; the reason.
    Invalid(String),
}

impl BackupStatus {
    pub fn label(&self) -> &'static str {
        match self {
            BackupStatus::Complete => "complete",
            BackupStatus::InProgress => "in progress",
            BackupStatus::Incomplete => "incomplete",
            BackupStatus::Invalid(_) => "invalid",
        }
    }
}

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
    list_backups_at(store, Utc::now()).await
}

async fn list_backups_at(
    store: &Store,
    now: DateTime<Utc>,
) -> Result<Vec<BackupListing>, StorageError> {
    let objects = store.list().await?;
    // One listing gives names, sizes and times of every folder at once.
    let mut folders: BTreeMap<String, Folder> = BTreeMap::new();
    for object in &objects {
        let Some((folder, file)) = object.key.split_once('/') else {
            continue;
        };
        let entry = folders.entry(folder.to_owned()).or_default();
        entry.size += object.size;
        entry.modified = entry.modified.max(object.modified);
        entry.has_manifest |= file == MANIFEST_FILE;
        entry.has_marker |= file == IN_PROGRESS_FILE;
    }
    let mut out = Vec::with_capacity(folders.len());
    for (name, folder) in folders {
        let Folder {
            size,
            modified,
            has_manifest,
            has_marker,
        } = folder;
        let mut listing = BackupListing {
            name,
            status: BackupStatus::Incomplete,
            time: modified,
            size,
            tables: None,
            rows: None,
        };
        if has_manifest {
            let bytes = store
                .get(&super::folder_key(&listing.name, MANIFEST_FILE))
                .await?;
            match Manifest::from_json(&bytes) {
                Ok(m) => {
                    listing.status = BackupStatus::Complete;
                    listing.time = Some(m.started_at);
                    listing.tables = Some(m.table_count());
                    listing.rows = Some(m.row_count());
                }
                Err(e) => {
                    listing.status = BackupStatus::Invalid(format!(
                        "{}/{MANIFEST_FILE} cannot be used: {e}",
                        store.child(&listing.name).location()
                    ));
                }
            }
        } else if has_marker && let Some(marker) = read_marker(store, &listing.name).await? {
            listing.time = Some(marker.started_at);
            if is_live(marker.refreshed_at, now) {
                listing.status = BackupStatus::InProgress;
            }
        }
        out.push(listing);
    }
    Ok(out)
}

/// What one storage listing says about a folder.
#[derive(Default)]
struct Folder {
    size: u64,
    modified: Option<DateTime<Utc>>,
    has_manifest: bool,
    has_marker: bool,
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

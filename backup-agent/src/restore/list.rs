//! `list`: the backups at a location, with their state, newest last.
//!
//! A folder with a manifest is `complete`; without one it is `in progress`
//! while its `in-progress.json` marker is younger than 15 minutes (the dump
//! refreshes it every minute), else `incomplete` (orphaned). A manifest that
//! does not parse makes the backup `invalid`: never listed as good.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::RestoreError;
use super::source::Backup;
use super::verify::verify_opened;
use crate::manifest::{IN_PROGRESS_FILE, InProgress, MANIFEST_FILE};
use crate::storage::Store;

/// A marker older than this belongs to a backup whose agent is gone.
pub const IN_PROGRESS_STALE_AFTER: Duration = Duration::minutes(15);

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
pub async fn list_backups(store: &Store) -> Result<Vec<BackupListing>, RestoreError> {
    list_backups_at(store, Utc::now()).await
}

async fn list_backups_at(
    store: &Store,
    now: DateTime<Utc>,
) -> Result<Vec<BackupListing>, RestoreError> {
    let objects = store.list().await.map_err(|source| RestoreError::Storage {
        backup: store.location().to_string(),
        source,
    })?;
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
        let child = store.child(&name);
        let mut listing = BackupListing {
            name,
            status: BackupStatus::Incomplete,
            time: modified,
            size,
            tables: None,
            rows: None,
        };
        if has_manifest {
            match Backup::open(&child, "it is not listed as good").await {
                Ok(backup) => {
                    let m = &backup.manifest;
                    listing.status = BackupStatus::Complete;
                    listing.time = Some(m.started_at);
                    listing.tables = Some(m.table_count());
                    listing.rows = Some(m.row_count());
                }
                Err(e @ RestoreError::BadManifest { .. }) => {
                    listing.status = BackupStatus::Invalid(e.to_string());
                }
                Err(e) => return Err(e),
            }
        } else if has_marker && let Some(marker) = read_marker(&child).await {
            listing.time = Some(marker.started_at);
            if now - marker.refreshed_at < IN_PROGRESS_STALE_AFTER {
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

/// The marker, or None when it is unreadable (then the backup counts as orphaned).
async fn read_marker(store: &Store) -> Option<InProgress> {
    let bytes = store.get(IN_PROGRESS_FILE).await.ok()?;
    serde_json::from_slice(&bytes).ok()
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

/// `ok`, or the first problem, for `list --verify`.
pub async fn verify_listing(store: &Store, listing: &BackupListing) -> String {
    if !listing.is_complete() {
        return "-".to_owned();
    }
    let child = store.child(&listing.name);
    let result = match Backup::open(&child, "it cannot be verified").await {
        Ok(backup) => verify_opened(&backup).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("FAILED: {e}"),
    }
}

//! One backup folder as every part of the repository sees it: read once
//! from one listing of the location, with one state ([`BackupStatus`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{folder_key, is_live, read_json};
use crate::manifest::{
    IN_PROGRESS_FILE, InProgress, KEEP_FILE, MANIFEST_FILE, Manifest, REMOVING_FILE, Removing,
    VERIFICATION_FILE, VerificationRecord, VerificationResult,
};
use crate::owner::Owner;
use crate::storage::{StorageError, Store};

/// The state of a backup folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupStatus {
    /// A manifest that parses: a complete backup.
    Complete,
    /// No manifest, and a live `in-progress.json`: being written.
    InProgress,
    /// No manifest and no live run (or a removal that stopped half-way): a
    /// failed or killed run's leftovers.
    Incomplete,
    /// The manifest exists but cannot be used; the reason. Never good.
    Invalid(String),
}

impl BackupStatus {
    /// The state as `keeper-agent list` prints it.
    pub fn label(&self) -> &'static str {
        match self {
            BackupStatus::Complete => "complete",
            BackupStatus::InProgress => "in progress",
            BackupStatus::Incomplete => "incomplete",
            BackupStatus::Invalid(_) => "invalid",
        }
    }
}

/// What one backup folder holds.
#[derive(Debug, Clone)]
pub struct Folder {
    /// The folder's name below the location (the backup's name).
    pub name: String,
    /// The names of its files.
    pub files: Vec<String>,
    /// Bytes stored in it.
    pub size: u64,
    /// The time of its newest object, when the store tells.
    pub newest: Option<DateTime<Utc>>,
    /// Its state.
    pub status: BackupStatus,
    /// The manifest, when it parses.
    pub manifest: Option<Manifest>,
    /// The run's `in-progress.json`, when there is one that parses.
    pub marker: Option<InProgress>,
    /// The `removing.json` of a removal that stopped half-way, when it parses.
    pub removing: Option<Removing>,
    /// The last proof of a complete backup (`verification.json`), when it
    /// parses.
    pub verification: Option<VerificationRecord>,
}

impl Folder {
    /// Whether the last proof of this backup succeeded.
    pub fn is_verified(&self) -> bool {
        self.verification
            .as_ref()
            .is_some_and(|v| v.result == VerificationResult::Verified)
    }

    /// Whether the folder holds `file`.
    pub fn has(&self, file: &str) -> bool {
        self.files.iter().any(|f| f == file)
    }

    /// Whether it holds any file a backup writes; a folder holding none is
    /// not a backup.
    pub fn is_backup(&self) -> bool {
        self.files.iter().any(|f| is_backup_file(f))
    }

    /// The owner recorded by the manifest, else by a half-done removal, else
    /// by the run's marker.
    /// A manifest that does not parse tells no owner.
    pub fn owner(&self) -> Option<&Owner> {
        if self.has(MANIFEST_FILE) {
            return self.manifest.as_ref().and_then(|m| m.owner.as_ref());
        }
        self.removing
            .as_ref()
            .map(|r| &r.owner)
            .or_else(|| self.marker.as_ref().and_then(|m| m.owner.as_ref()))
    }

    /// Whether a run may still be writing it: in progress, or without a
    /// manifest and written within [`super::STALE_AFTER`] (a run that has
    /// not written its marker yet). Retention never deletes such a folder.
    pub fn may_be_running(&self, now: DateTime<Utc>) -> bool {
        match self.status {
            BackupStatus::InProgress => true,
            BackupStatus::Incomplete => {
                !self.has(REMOVING_FILE) && self.newest.is_none_or(|t| is_live(t, now))
            }
            BackupStatus::Complete | BackupStatus::Invalid(_) => false,
        }
    }
}

/// The names a backup writes into its folder.
fn is_backup_file(file: &str) -> bool {
    file == MANIFEST_FILE
        || file == IN_PROGRESS_FILE
        || file == KEEP_FILE
        || file == REMOVING_FILE
        || file == VERIFICATION_FILE
        || crate::compression::dump_files().any(|dump| {
            file == dump
                || file
                    .strip_prefix(dump)
                    .is_some_and(|rest| rest == ".partial")
        })
}

/// Every folder directly below `store`'s root, sorted by name (names are
/// timestamps, so this is oldest first), from one listing; the manifest,
/// marker and removal record of each are read when listed.
pub async fn scan(store: &Store, now: DateTime<Utc>) -> Result<Vec<Folder>, StorageError> {
    #[derive(Default)]
    struct Listed {
        files: Vec<String>,
        size: u64,
        newest: Option<DateTime<Utc>>,
    }
    let mut grouped: BTreeMap<String, Listed> = BTreeMap::new();
    for object in store.list().await? {
        let Some((name, file)) = object.key.split_once('/') else {
            continue;
        };
        let entry = grouped.entry(name.to_owned()).or_default();
        entry.files.push(file.to_owned());
        entry.size += object.size;
        entry.newest = entry.newest.max(object.modified);
    }
    let mut folders = Vec::with_capacity(grouped.len());
    for (name, listed) in grouped {
        let mut folder = Folder {
            name,
            files: listed.files,
            size: listed.size,
            newest: listed.newest,
            status: BackupStatus::Incomplete,
            manifest: None,
            marker: None,
            removing: None,
            verification: None,
        };
        if folder.has(MANIFEST_FILE) {
            let bytes = store.get(&folder_key(&folder.name, MANIFEST_FILE)).await?;
            match Manifest::from_json(&bytes) {
                Ok(manifest) => {
                    folder.status = BackupStatus::Complete;
                    folder.manifest = Some(manifest);
                    if folder.has(VERIFICATION_FILE) {
                        folder.verification =
                            read_json(store, &folder.name, VERIFICATION_FILE).await?;
                    }
                }
                Err(e) => {
                    tracing::warn!(backup = %folder.name, error = %e, "backup has an unusable manifest");
                    folder.status = BackupStatus::Invalid(format!(
                        "{}/{MANIFEST_FILE} cannot be used: {e}",
                        store.child(&folder.name).location()
                    ));
                }
            }
        } else {
            if folder.has(REMOVING_FILE) {
                folder.removing = read_json(store, &folder.name, REMOVING_FILE).await?;
            }
            if folder.has(IN_PROGRESS_FILE) {
                folder.marker = read_json(store, &folder.name, IN_PROGRESS_FILE).await?;
            }
            let live = folder
                .marker
                .as_ref()
                .is_some_and(|m| is_live(m.refreshed_at, now));
            if live && !folder.has(REMOVING_FILE) {
                folder.status = BackupStatus::InProgress;
            }
        }
        folders.push(folder);
    }
    Ok(folders)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_files_are_recognised() {
        for file in [
            "manifest.json",
            "in-progress.json",
            "keep.json",
            "removing.json",
            "dump.sql.gz",
            "dump.sql.gz.partial",
            "dump.sql.zst",
            "dump.sql.zst.partial",
            "dump.sql",
            "dump.sql.partial",
        ] {
            assert!(is_backup_file(file), "{file}");
        }
        for file in [
            "notes.txt",
            "dump.sql.bak",
            "sub/manifest.json",
            "dump.sql.gzip",
            "dump.sql.gz.old",
        ] {
            assert!(!is_backup_file(file), "{file}");
        }
    }
}

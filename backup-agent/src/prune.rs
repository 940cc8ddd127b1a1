//! Retention: delete expired backups from a location, never the newest good one.
//!
//! Which backups expire is decided by `keeper_crds::retention::select_expired`,
//! the same pure function the Kubernetes side uses, so storage and
//! `MySQLBackup` objects follow one rule: a backup is kept when any rule
//! (`--keep-last`, `--max-age`) keeps it, and the newest good backup is always
//! kept. Here a backup is *good* when its folder holds a valid manifest.
//!
//! Folders without a manifest are not good. A running one (fresh
//! `in-progress.json`, or written to in the last 15 minutes) is never touched;
//! any other is an incomplete leftover of a failed or killed run and is
//! removed whatever the rules say. Folders that hold none of the files a
//! backup writes are not backups and are left alone. Finally, orphaned
//! multipart uploads (and `*.partial` files) are aborted (see
//! [`crate::storage::orphans`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use keeper_crds::BackupPhase;
use keeper_crds::retention::{BackupRecord, RetentionError, parse_max_age, select_expired};

use crate::AgentContext;
use crate::cli::{PruneArgs, RetentionArgs};
use crate::manifest::{DUMP_FILE, IN_PROGRESS_FILE, MANIFEST_FILE, Manifest};
use crate::storage::orphans::{self, MARKER_FRESH_FOR, ORPHAN_AGE, folder_key};
use crate::storage::{Location, S3Settings, StorageError, Store};

#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error(
        "prune of {location} has nothing to do: give --keep-last N and/or --max-age DURATION (e.g. 30d)"
    )]
    NoRule { location: String },
    #[error("invalid --max-age: {0}")]
    MaxAge(RetentionError),
    #[error("invalid --keep-last 0: keep at least 1 (the newest good backup is always kept)")]
    ZeroKeepLast,
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(
        "could not remove backup {name} from {location}: {source} (run prune again; a half-removed backup has no manifest and is removed as incomplete)"
    )]
    Remove {
        name: String,
        location: String,
        #[source]
        source: StorageError,
    },
}

/// Parsed retention rules; at least one is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub keep_last: Option<u32>,
    pub max_age: Option<Duration>,
}

impl Rules {
    /// `None` when no rule is given (then there is nothing to prune).
    pub fn from_args(args: &RetentionArgs) -> Result<Option<Rules>, PruneError> {
        if args.keep_last == Some(0) {
            return Err(PruneError::ZeroKeepLast);
        }
        let max_age = args
            .max_age
            .as_deref()
            .map(parse_max_age)
            .transpose()
            .map_err(PruneError::MaxAge)?;
        if args.keep_last.is_none() && max_age.is_none() {
            return Ok(None);
        }
        Ok(Some(Rules {
            keep_last: args.keep_last,
            max_age,
        }))
    }
}

/// Why a backup was removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// No rule keeps it.
    Expired,
    /// No manifest and not running: a failed or killed run's leftovers.
    Incomplete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedBackup {
    pub name: String,
    /// The snapshot time from the manifest, or the newest object's time.
    pub time: Option<DateTime<Utc>>,
    /// Bytes freed.
    pub size: u64,
    pub reason: Removal,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneOutcome {
    /// Removed backups, oldest first. Kubernetes deletes their `MySQLBackup`
    /// objects by these names.
    pub removed: Vec<RemovedBackup>,
    /// Backups left in place (good, failed but kept, or running), by name.
    pub kept: Vec<String>,
    /// Keys of orphaned uploads that were aborted.
    pub aborted_uploads: Vec<String>,
}

impl PruneOutcome {
    pub fn removed_names(&self) -> Vec<String> {
        self.removed.iter().map(|r| r.name.clone()).collect()
    }
}

/// `keeper-agent prune --from URL [--keep-last N] [--max-age D]`.
pub async fn prune(args: PruneArgs, ctx: &AgentContext) -> Result<PruneOutcome, PruneError> {
    let location = Location::parse(&args.from)?;
    if Rules::from_args(&args.retention)?.is_none() {
        return Err(PruneError::NoRule {
            location: location.to_string(),
        });
    }
    let store = Store::open(&location, &S3Settings::from_ctx(ctx, &args.s3)).await?;
    apply_retention(&store, &args.retention, ctx).await
}

/// Applies `retention` to the backups in `store` (the location that holds
/// backups). The dump engine calls this after a successful backup when
/// `--keep-last`/`--max-age` are given.
pub async fn apply_retention(
    store: &Store,
    retention: &RetentionArgs,
    _ctx: &AgentContext,
) -> Result<PruneOutcome, PruneError> {
    let Some(rules) = Rules::from_args(retention)? else {
        return Err(PruneError::NoRule {
            location: store.location().to_string(),
        });
    };
    let outcome = apply_rules_at(store, rules, Utc::now()).await?;
    for removed in &outcome.removed {
        let time = removed
            .time
            .map_or_else(|| "unknown time".to_owned(), |t| t.to_rfc3339());
        let why = match removed.reason {
            Removal::Expired => "expired",
            Removal::Incomplete => "incomplete",
        };
        println!(
            "removed {} ({why}, {time}, {} bytes)",
            removed.name, removed.size
        );
    }
    for key in &outcome.aborted_uploads {
        println!("aborted orphaned upload {key}");
    }
    Ok(outcome)
}

/// What a backup folder holds, as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// A valid manifest: the snapshot time.
    Good(DateTime<Utc>),
    /// A manifest that does not parse: not good, but not ours to judge as
    /// incomplete either; it expires by the rules like a failed backup.
    BadManifest(DateTime<Utc>),
    Running,
    Incomplete,
}

#[derive(Debug)]
struct Folder {
    name: String,
    size: u64,
    newest: Option<DateTime<Utc>>,
    state: State,
}

/// The names a backup writes into its folder; a folder holding none is not a backup.
fn is_backup_file(file: &str) -> bool {
    file == MANIFEST_FILE
        || file == IN_PROGRESS_FILE
        || file == DUMP_FILE
        || file
            .strip_prefix(DUMP_FILE)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// The rule with an explicit clock (tests move `now` instead of waiting).
pub async fn apply_rules_at(
    store: &Store,
    rules: Rules,
    now: DateTime<Utc>,
) -> Result<PruneOutcome, PruneError> {
    let folders = scan(store, now).await?;
    let records: Vec<BackupRecord> = folders
        .iter()
        .filter_map(|f| {
            let (time, phase) = match f.state {
                State::Good(t) => (t, BackupPhase::Succeeded),
                State::BadManifest(t) => (t, BackupPhase::Failed),
                State::Running => (now, BackupPhase::Running),
                State::Incomplete => return None,
            };
            Some(BackupRecord::new(f.name.clone(), time, phase))
        })
        .collect();
    let expired = select_expired(&records, rules.keep_last, rules.max_age, now);

    let mut outcome = PruneOutcome::default();
    let mut doomed: Vec<(&Folder, Removal)> = Vec::new();
    for folder in &folders {
        if folder.state == State::Incomplete {
            doomed.push((folder, Removal::Incomplete));
        } else if expired.contains(&folder.name) {
            doomed.push((folder, Removal::Expired));
        } else {
            outcome.kept.push(folder.name.clone());
        }
    }
    doomed.sort_by_key(|(f, _)| (record_time(f), f.name.clone()));
    for (folder, reason) in doomed {
        remove(store, &folder.name).await?;
        tracing::info!(backup = %folder.name, size = folder.size, ?reason, "removed backup");
        outcome.removed.push(RemovedBackup {
            name: folder.name.clone(),
            time: record_time(folder),
            size: folder.size,
            reason,
        });
    }
    outcome.aborted_uploads = orphans::abort_orphaned_uploads(store, ORPHAN_AGE, now).await?;
    Ok(outcome)
}

fn record_time(folder: &Folder) -> Option<DateTime<Utc>> {
    match folder.state {
        State::Good(t) | State::BadManifest(t) => Some(t),
        State::Running | State::Incomplete => folder.newest,
    }
}

/// Manifest first: should the rest fail, what is left is an incomplete
/// backup (removed next time), never one that looks good but is not.
async fn remove(store: &Store, name: &str) -> Result<(), PruneError> {
    let fail = |source| PruneError::Remove {
        name: name.to_owned(),
        location: store.location().to_string(),
        source,
    };
    store
        .delete(&folder_key(name, MANIFEST_FILE))
        .await
        .map_err(fail)?;
    store.delete_folder(name).await.map_err(fail)
}

async fn scan(store: &Store, now: DateTime<Utc>) -> Result<Vec<Folder>, PruneError> {
    #[derive(Default)]
    struct Listed {
        files: Vec<String>,
        size: u64,
        newest: Option<DateTime<Utc>>,
    }
    // One listing, grouped by backup folder.
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
    let mut folders = Vec::new();
    for (
        name,
        Listed {
            files,
            size,
            newest,
        },
    ) in grouped
    {
        if !files.iter().any(|f| is_backup_file(f)) {
            continue;
        }
        let state = if files.iter().any(|f| f == MANIFEST_FILE) {
            let bytes = store.get(&folder_key(&name, MANIFEST_FILE)).await?;
            match Manifest::from_json(&bytes) {
                Ok(manifest) => State::Good(manifest.started_at),
                Err(e) => {
                    tracing::warn!(backup = %name, error = %e, "backup has an unusable manifest");
                    State::BadManifest(newest.unwrap_or(now))
                }
            }
        } else if orphans::marker_is_fresh(store, &name, now).await?
            || newest.is_none_or(|t| now - t < MARKER_FRESH_FOR)
        {
            // Without a marker yet, recent writes still mean a run may be alive.
            State::Running
        } else {
            State::Incomplete
        };
        folders.push(Folder {
            name,
            size,
            newest,
            state,
        });
    }
    Ok(folders)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(keep_last: Option<u32>, max_age: Option<&str>) -> RetentionArgs {
        RetentionArgs {
            keep_last,
            max_age: max_age.map(str::to_owned),
        }
    }

    #[test]
    fn rules_need_at_least_one_valid_setting() {
        assert_eq!(Rules::from_args(&args(None, None)).ok(), Some(None));
        assert_eq!(
            Rules::from_args(&args(Some(3), Some("2w"))).ok().flatten(),
            Some(Rules {
                keep_last: Some(3),
                max_age: Some(Duration::weeks(2))
            })
        );
        assert!(matches!(
            Rules::from_args(&args(Some(0), None)),
            Err(PruneError::ZeroKeepLast)
        ));
        let err = Rules::from_args(&args(None, Some("30s"))).expect_err("bad age");
        assert!(err.to_string().starts_with("invalid --max-age"), "{err}");
    }

    #[test]
    fn backup_files_are_recognised() {
        for file in [
            "manifest.json",
            "in-progress.json",
            "dump.sql.gz",
            "dump.sql.gz.partial",
        ] {
            assert!(is_backup_file(file), "{file}");
        }
        for file in [
            "notes.txt",
            "dump.sql",
            "sub/manifest.json",
            "dump.sql.gzip",
        ] {
            assert!(!is_backup_file(file), "{file}");
        }
    }
}

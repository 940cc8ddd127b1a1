//! Retention: delete one owner's expired backups from a location.
//!
//! Whose backups: only those whose manifest (or, for a run without one, its
//! `in-progress.json` or `removing.json`) records the owner retention acts
//! for ([`crate::owner`]). Folders of other owners are never touched, and
//! neither are folders whose owner cannot be told — backups made before
//! owners were recorded, a manifest that does not parse, leftovers without a
//! marker: those are kept and listed as such, never deleted silently.
//!
//! Which of them: the [`KeepPolicy`] decides, with a reason for every backup
//! kept and every backup deleted. A pin (`keep.json` beside the artifact)
//! keeps a backup whatever the rules say. Inside Kubernetes the pins of the
//! `MySQLBackup` objects (`spec.keep`) are first written beside their
//! artifacts, and pins a `MySQLBackup` set whose `spec.keep` is no longer true
//! are lifted, so storage and objects agree and a later `prune` by hand
//! honours them too.
//!
//! Folders that hold none of the files a backup writes are not backups and
//! are left alone. Orphaned multipart uploads (and `*.partial` files) of the
//! owner's dead runs are aborted first (see [`super::orphans`]),
//! then the doomed folders are removed, oldest first.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use keeper_crds::retention::RetentionError;

use super::keep_policy::{Candidate, DeleteReason, KeepPolicy, KeepReason, Verdict};
use super::{BackupStatus, STALE_AFTER, folder_key, orphans};
use crate::cli::{PinArgs, PruneArgs, RetentionArgs};
use crate::context::AgentContext;
use crate::manifest::{KEEP_FILE, MANIFEST_FILE, Pin, PinSource, REMOVING_FILE, Removing};
use crate::owner::{Owner, OwnerError};
use crate::storage::{Location, S3Settings, StorageError, Store};

#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// `prune` without `--keep-last` or `--max-age`.
    #[error(
        "prune of {location} has nothing to do: give --keep-last N and/or --max-age DURATION (e.g. 30d)"
    )]
    NoRule { location: String },
    /// `--max-age` does not parse.
    #[error("invalid --max-age: {0}")]
    MaxAge(RetentionError),
    /// `--keep-last 0` would not even keep the newest good backup.
    #[error("invalid --keep-last 0: keep at least 1 (the newest good backup is always kept)")]
    ZeroKeepLast,
    /// `--instance` (or the Kubernetes owner) is not valid.
    #[error(transparent)]
    Owner(#[from] OwnerError),
    /// No owner was given and the location holds several.
    #[error(
        "{location} holds backups of several owners ({owners}): give --instance [NAMESPACE/]NAME to say whose backups to prune"
    )]
    SeveralOwners { location: String, owners: String },
    /// The owner given without namespace matches several recorded owners.
    #[error(
        "--instance {given} matches several owners at {location} ({owners}): give NAMESPACE/NAME"
    )]
    AmbiguousOwner {
        given: String,
        location: String,
        owners: String,
    },
    /// Inside Kubernetes the `MySQLBackup` objects' pins cannot be read.
    #[error(
        "could not read the MySQLBackup objects to learn which backups are pinned: {0}; nothing was pruned"
    )]
    ObjectPins(String),
    /// `pin` of a folder that holds no complete backup.
    #[error("{url} holds no backup (no {MANIFEST_FILE}); pin a backup folder: URL/NAME")]
    NotABackup { url: String },
    /// Storage failed while reading the location.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Removing one backup stopped half-way (the next run finishes it).
    #[error(
        "could not remove backup {name} from {location}: {source} (run prune again: a half-removed backup is finished by the next run)"
    )]
    Remove {
        name: String,
        location: String,
        #[source]
        source: StorageError,
    },
}

/// The keep policy of `--keep-last` / `--max-age`, checked.
pub fn policy_from_args(args: &RetentionArgs) -> Result<KeepPolicy, PruneError> {
    if args.keep_last == Some(0) {
        return Err(PruneError::ZeroKeepLast);
    }
    let max_age = args
        .max_age
        .as_deref()
        .map(str::parse::<keeper_crds::MaxAge>)
        .transpose()
        .map_err(PruneError::MaxAge)?;
    Ok(KeepPolicy {
        keep_last: args.keep_last,
        max_age,
    })
}

/// One retention run: the policy, whose backups, and (inside Kubernetes)
/// the `spec.keep` of the owner's `MySQLBackup` objects by name.
#[derive(Debug, Clone, Default)]
pub struct Retention {
    pub policy: KeepPolicy,
    /// `None`: the one owner found at the location (refused if several).
    pub owner: Option<Owner>,
    pub object_pins: Option<BTreeMap<String, bool>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedBackup {
    pub name: String,
    /// The snapshot time from the manifest, or the newest object's time.
    pub time: Option<DateTime<Utc>>,
    /// Bytes freed.
    pub size: u64,
    pub reason: DeleteReason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptBackup {
    pub name: String,
    pub reasons: Vec<KeepReason>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneOutcome {
    /// The owner retention acted for (`None`: no owned backup was found).
    pub owner: Option<Owner>,
    /// Removed backups, oldest first. Kubernetes deletes their `MySQLBackup`
    /// objects by these names.
    pub removed: Vec<RemovedBackup>,
    /// The owner's backups left in place, with why.
    pub kept: Vec<KeptBackup>,
    /// Folders whose owner cannot be told (made before owners were
    /// recorded, unreadable manifest, leftovers without marker): kept.
    pub unowned: Vec<String>,
    /// Folders of other owners: not touched.
    pub other_owners: Vec<String>,
    /// Pins written from `MySQLBackup` objects (`spec.keep: true`).
    pub pins_written: Vec<String>,
    /// Pins lifted because their `MySQLBackup` no longer has `spec.keep`.
    pub pins_lifted: Vec<String>,
    /// Keys of orphaned uploads that were aborted.
    pub aborted_uploads: Vec<String>,
}

impl PruneOutcome {
    pub fn removed_names(&self) -> Vec<String> {
        self.removed.iter().map(|r| r.name.clone()).collect()
    }

    pub fn kept_names(&self) -> Vec<String> {
        self.kept.iter().map(|k| k.name.clone()).collect()
    }

    /// The report a user reads: each backup with why it was kept or removed.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        match &self.owner {
            Some(owner) => lines.push(format!("retention for owner {owner}")),
            None => lines.push("retention: no backup with a recorded owner here".to_owned()),
        }
        for name in &self.pins_written {
            lines.push(format!("pinned {name} (spec.keep on its MySQLBackup)"));
        }
        for name in &self.pins_lifted {
            lines.push(format!(
                "unpinned {name} (its MySQLBackup no longer has spec.keep)"
            ));
        }
        for key in &self.aborted_uploads {
            lines.push(format!("aborted orphaned upload {key}"));
        }
        for removed in &self.removed {
            let time = removed
                .time
                .map_or_else(|| "unknown time".to_owned(), |t| t.to_rfc3339());
            lines.push(format!(
                "removed {} ({}; {time}, {} bytes)",
                removed.name, removed.reason, removed.size
            ));
        }
        for kept in &self.kept {
            let why: Vec<String> = kept.reasons.iter().map(ToString::to_string).collect();
            lines.push(format!("kept {} ({})", kept.name, why.join(", ")));
        }
        for name in &self.unowned {
            lines.push(format!(
                "kept {name} (no recorded owner: made before owners were recorded or without --instance; prune never deletes it, delete it by hand when no longer needed)"
            ));
        }
        if !self.other_owners.is_empty() {
            lines.push(format!(
                "left {} backup(s) of other owners untouched",
                self.other_owners.len()
            ));
        }
        lines
    }
}

/// `keeper-agent prune --from URL [--instance [NS/]NAME] [--keep-last N] [--max-age D]`.
pub async fn prune(
    args: PruneArgs,
    ctx: &AgentContext,
    object_pins: Option<BTreeMap<String, bool>>,
) -> Result<PruneOutcome, PruneError> {
    let location = Location::parse(&args.from)?;
    let policy = policy_from_args(&args.retention)?;
    if !policy.has_rule() {
        return Err(PruneError::NoRule {
            location: location.to_string(),
        });
    }
    let owner = Owner::of_run(args.owner.instance.as_deref(), ctx)?;
    let store = Store::open(&location, &S3Settings::from_ctx(ctx, &args.s3)).await?;
    let retention = Retention {
        policy,
        owner,
        object_pins,
    };
    apply_at(&store, &retention, Utc::now()).await
}

/// Retention after a successful backup of `owner` (`backup --keep-last /
/// --max-age`). Inside Kubernetes the owner's `MySQLBackup` pins are read
/// first; if they cannot be, nothing is pruned.
pub async fn after_backup(
    store: &Store,
    policy: KeepPolicy,
    owner: Owner,
    ctx: &AgentContext,
) -> Result<PruneOutcome, PruneError> {
    let object_pins = crate::report::object_pins(ctx)
        .await
        .map_err(|e| PruneError::ObjectPins(e.to_string()))?;
    let retention = Retention {
        policy,
        owner: Some(owner),
        object_pins,
    };
    apply_at(store, &retention, Utc::now()).await
}

/// Who a folder belongs to, as far as it can be told.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Attribution {
    Owned(Owner),
    Unknown,
}

#[derive(Debug)]
struct Folder {
    name: String,
    size: u64,
    newest: Option<DateTime<Utc>>,
    state: BackupStatus,
    /// Snapshot time of a good backup.
    snapshot: Option<DateTime<Utc>>,
    attribution: Attribution,
    pin: Option<Pin>,
    /// Proven restorable by its last `verify --restore`.
    verified: bool,
}

impl Folder {
    fn time(&self) -> Option<DateTime<Utc>> {
        self.snapshot.or(self.newest)
    }
}

/// The rule with an explicit clock (tests move `now` instead of waiting).
pub async fn apply_at(
    store: &Store,
    retention: &Retention,
    now: DateTime<Utc>,
) -> Result<PruneOutcome, PruneError> {
    let mut folders = scan(store, now).await?;
    let owner = choose_owner(store, retention.owner.as_ref(), &folders)?;
    let mut outcome = PruneOutcome {
        owner: owner.clone(),
        ..PruneOutcome::default()
    };
    let Some(owner) = owner else {
        outcome.unowned = folders.into_iter().map(|f| f.name).collect();
        return Ok(outcome);
    };
    let ours = |f: &Folder| matches!(&f.attribution, Attribution::Owned(o) if o == &owner);

    if let Some(object_pins) = &retention.object_pins {
        sync_object_pins(store, object_pins, &mut folders, &ours, now, &mut outcome).await?;
    }

    // Orphaned uploads first: removing an incomplete folder removes its
    // marker, after which its upload could no longer be attributed.
    outcome.aborted_uploads =
        orphans::abort_orphaned_uploads(store, &owner, STALE_AFTER, now).await?;

    let mut candidates = Vec::new();
    for folder in &folders {
        match &folder.attribution {
            Attribution::Unknown => outcome.unowned.push(folder.name.clone()),
            Attribution::Owned(_) if !ours(folder) => {
                outcome.other_owners.push(folder.name.clone());
            }
            Attribution::Owned(_) => candidates.push(Candidate {
                name: folder.name.clone(),
                time: folder.time().unwrap_or(now),
                state: folder.state.clone(),
                pinned: folder.pin.is_some(),
                verified: folder.verified,
            }),
        }
    }
    let mut doomed: Vec<(&Folder, DeleteReason)> = Vec::new();
    for decision in retention.policy.decide(&candidates, now) {
        match decision.verdict {
            Verdict::Keep(reasons) => outcome.kept.push(KeptBackup {
                name: decision.name,
                reasons,
            }),
            Verdict::Delete(reason) => {
                if let Some(folder) = folders.iter().find(|f| f.name == decision.name) {
                    doomed.push((folder, reason));
                }
            }
        }
    }
    doomed.sort_by_key(|(f, _)| (f.time(), f.name.clone()));
    for (folder, reason) in doomed {
        remove(store, &folder.name, &owner, now).await?;
        tracing::info!(backup = %folder.name, size = folder.size, %reason, "removed backup");
        outcome.removed.push(RemovedBackup {
            name: folder.name.clone(),
            time: folder.time(),
            size: folder.size,
            reason,
        });
    }
    Ok(outcome)
}

/// The owner to act for: the one given (which must not match several
/// recorded owners), else the only one at the location.
fn choose_owner(
    store: &Store,
    given: Option<&Owner>,
    folders: &[Folder],
) -> Result<Option<Owner>, PruneError> {
    let recorded: BTreeSet<&Owner> = folders
        .iter()
        .filter_map(|f| match &f.attribution {
            Attribution::Owned(o) => Some(o),
            Attribution::Unknown => None,
        })
        .collect();
    let list = |owners: &[&Owner]| {
        owners
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match given {
        Some(given) => {
            let matching: Vec<&Owner> = recorded
                .iter()
                .copied()
                .filter(|o| given.matches(o))
                .collect();
            match matching.as_slice() {
                [] => Ok(Some(given.clone())),
                [one] => Ok(Some((*one).clone())),
                several => Err(PruneError::AmbiguousOwner {
                    given: given.to_string(),
                    location: store.location().to_string(),
                    owners: list(several),
                }),
            }
        }
        None => {
            let all: Vec<&Owner> = recorded.into_iter().collect();
            match all.as_slice() {
                [] => Ok(None),
                [one] => Ok(Some((*one).clone())),
                several => Err(PruneError::SeveralOwners {
                    location: store.location().to_string(),
                    owners: list(several),
                }),
            }
        }
    }
}

/// Writes the pins of `MySQLBackup` objects with `spec.keep: true` beside
/// their artifacts, and lifts object-set pins whose object no longer has it.
/// Only the owner's complete backups are touched; a pin set by hand stays.
async fn sync_object_pins(
    store: &Store,
    object_pins: &BTreeMap<String, bool>,
    folders: &mut [Folder],
    ours: &impl Fn(&Folder) -> bool,
    now: DateTime<Utc>,
    outcome: &mut PruneOutcome,
) -> Result<(), PruneError> {
    for folder in folders.iter_mut() {
        if !ours(folder) || folder.state != BackupStatus::Complete {
            continue;
        }
        let Some(&keep) = object_pins.get(&folder.name) else {
            continue;
        };
        match (&folder.pin, keep) {
            (None, true) => {
                let pin = Pin {
                    pinned_at: now,
                    source: PinSource::Object,
                };
                write_pin(&store.child(&folder.name), &pin).await?;
                folder.pin = Some(pin);
                outcome.pins_written.push(folder.name.clone());
            }
            (Some(pin), false) if pin.source == PinSource::Object => {
                store.delete(&folder_key(&folder.name, KEEP_FILE)).await?;
                folder.pin = None;
                outcome.pins_lifted.push(folder.name.clone());
            }
            _ => {}
        }
    }
    Ok(())
}

/// Writes `keep.json` into the backup folder `backup`.
pub async fn write_pin(backup: &Store, pin: &Pin) -> Result<(), StorageError> {
    let json = serde_json::to_vec_pretty(pin).unwrap_or_default();
    backup.put(KEEP_FILE, Bytes::from(json)).await
}

/// Reads the pin of the backup folder `backup`, if any. A pin file that does
/// not parse still pins (it was meant to): it reads as a pin set by hand.
pub async fn read_pin(backup: &Store) -> Result<Option<Pin>, StorageError> {
    match backup.get(KEEP_FILE).await {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(backup = %backup.location(), error = %e, "unreadable {KEEP_FILE}: treated as a pin set by hand");
            Pin {
                pinned_at: DateTime::<Utc>::default(),
                source: PinSource::Hand,
            }
        }))),
        Err(StorageError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// What `pin` or `unpin` did to one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinChange {
    /// The backup is pinned now.
    Pinned { backup: Location },
    /// It was pinned already, since that time.
    AlreadyPinned {
        backup: Location,
        since: DateTime<Utc>,
    },
    /// The pin was lifted; `by_object`: a `MySQLBackup`'s `spec.keep` had
    /// set it (and in-cluster retention sets it again while that holds).
    Unpinned { backup: Location, by_object: bool },
    /// There was no pin to lift.
    NotPinned { backup: Location },
}

impl PinChange {
    /// What the command prints.
    pub fn lines(&self) -> Vec<String> {
        match self {
            PinChange::Pinned { backup } => vec![format!(
                "pinned {backup}: retention never deletes it until `keeper-agent unpin`"
            )],
            PinChange::AlreadyPinned { backup, since } => vec![format!(
                "{backup} is already pinned (since {})",
                since.to_rfc3339()
            )],
            PinChange::Unpinned { backup, by_object } => {
                let mut lines = vec![format!("unpinned {backup}")];
                if *by_object {
                    lines.push(
                        "note: its MySQLBackup set this pin; while that object has spec.keep: true, in-cluster retention pins it again"
                            .to_owned(),
                    );
                }
                lines
            }
            PinChange::NotPinned { backup } => vec![format!("{backup} is not pinned")],
        }
    }
}

/// `keeper-agent pin --from URL/NAME`: the backup must exist (have a manifest).
pub async fn pin(args: PinArgs, ctx: &AgentContext) -> Result<PinChange, PruneError> {
    let location = Location::parse(&args.from)?;
    let backup = Store::open(&location, &S3Settings::from_ctx(ctx, &args.s3)).await?;
    if backup.size(MANIFEST_FILE).await?.is_none() {
        return Err(PruneError::NotABackup {
            url: location.to_string(),
        });
    }
    if let Some(existing) = read_pin(&backup).await? {
        return Ok(PinChange::AlreadyPinned {
            backup: location,
            since: existing.pinned_at,
        });
    }
    let pin = Pin {
        pinned_at: Utc::now(),
        source: PinSource::Hand,
    };
    write_pin(&backup, &pin).await?;
    Ok(PinChange::Pinned { backup: location })
}

/// `keeper-agent unpin --from URL/NAME`.
pub async fn unpin(args: PinArgs, ctx: &AgentContext) -> Result<PinChange, PruneError> {
    let location = Location::parse(&args.from)?;
    let backup = Store::open(&location, &S3Settings::from_ctx(ctx, &args.s3)).await?;
    match read_pin(&backup).await? {
        None => Ok(PinChange::NotPinned { backup: location }),
        Some(pin) => {
            backup.delete(KEEP_FILE).await?;
            Ok(PinChange::Unpinned {
                backup: location,
                by_object: pin.source == PinSource::Object,
            })
        }
    }
}

/// `removing.json` first (the folder stays attributable should the rest
/// fail), then the manifest (what is left is never mistaken for a good
/// backup), then everything else.
async fn remove(
    store: &Store,
    name: &str,
    owner: &Owner,
    now: DateTime<Utc>,
) -> Result<(), PruneError> {
    let fail = |source| PruneError::Remove {
        name: name.to_owned(),
        location: store.location().to_string(),
        source,
    };
    let marker = Removing {
        started_at: now,
        owner: owner.clone(),
    };
    let json = serde_json::to_vec(&marker).unwrap_or_default();
    store
        .put(&folder_key(name, REMOVING_FILE), Bytes::from(json))
        .await
        .map_err(fail)?;
    store
        .delete(&folder_key(name, MANIFEST_FILE))
        .await
        .map_err(fail)?;
    store.delete_folder(name).await.map_err(fail)
}

/// The owner's backup folders as retention weighs them: a folder that
/// holds none of the files a backup writes is not a backup; one a run may
/// still be writing counts as running.
async fn scan(store: &Store, now: DateTime<Utc>) -> Result<Vec<Folder>, PruneError> {
    let mut folders = Vec::new();
    for folder in super::scan(store, now).await? {
        if !folder.is_backup() {
            continue;
        }
        let state = if folder.may_be_running(now) {
            BackupStatus::InProgress
        } else {
            folder.status.clone()
        };
        let pin = if folder.has(KEEP_FILE) {
            read_pin(&store.child(&folder.name)).await?
        } else {
            None
        };
        folders.push(Folder {
            verified: folder.is_verified(),
            attribution: folder
                .owner()
                .cloned()
                .map_or(Attribution::Unknown, Attribution::Owned),
            snapshot: folder.manifest.as_ref().map(|m| m.started_at),
            state,
            pin,
            size: folder.size,
            newest: folder.newest,
            name: folder.name,
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
    fn rules_are_checked() {
        assert!(!policy_from_args(&args(None, None)).expect("ok").has_rule());
        let policy = policy_from_args(&args(Some(3), Some("2w"))).expect("ok");
        assert_eq!(policy.keep_last, Some(3));
        assert_eq!(policy.max_age.map(|a| a.to_string()).as_deref(), Some("2w"));
        assert!(matches!(
            policy_from_args(&args(Some(0), None)),
            Err(PruneError::ZeroKeepLast)
        ));
        let err = policy_from_args(&args(None, Some("30s"))).expect_err("bad age");
        assert!(err.to_string().starts_with("invalid --max-age"), "{err}");
    }
}

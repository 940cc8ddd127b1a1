//! Reporting a backup run: the `MySQLBackup` object and its status, the
//! instance's `lastBackup`, and the objects of pruned backups.

use std::collections::BTreeMap;

use chrono::Utc;
use kube::api::{DeleteParams, PostParams};

use keeper_crds::names::{backup_name, is_dns1123_label};
use keeper_crds::{
    BackupDestination, BackupPhase, BackupProgress, BinlogPosition, LastBackup, MySQLBackup,
    MySQLBackupStatus,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::retry::retry;
use super::{
    ENV_BACKUP, FIELD_MANAGER, ReportError, ReportOutcome, RetryPolicy, Target, describe,
    destination_from_env, is_already_exists, is_not_found, one_line, rbac,
};
use crate::context::AgentContext;
use crate::manifest::Manifest;

/// Annotation the agent puts on a `MySQLBackup` it creates: the Job that
/// created it. Lets a create whose response was lost (and is retried) adopt
/// its own object instead of failing on `AlreadyExists`, without ever taking
/// over someone else's object of the same name (shared with the operator,
/// which never starts a Job for such an object).
pub use keeper_crds::agent::CREATED_BY_JOB_ANNOTATION;

/// Reports one backup run. Outside Kubernetes every method does nothing.
///
/// Call order: [`started`](Self::started) before any byte is dumped (its
/// error fails the run); then [`succeeded`](Self::succeeded) or
/// [`failed`](Self::failed); after a success, [`pruned`](Self::pruned) with
/// the names retention removed.
/// A [`BackupReporter`] on a task while the dump runs.
pub struct BackupProgressTask {
    tx: watch::Sender<Option<BackupProgress>>,
    handle: JoinHandle<BackupReporter>,
}

/// Sends progress to a [`BackupProgressTask`]; cheap to clone.
#[derive(Clone)]
pub struct ProgressSender(watch::Sender<Option<BackupProgress>>);

impl ProgressSender {
    /// The dump's newest progress; a slow report is overtaken, not queued.
    pub fn update(&self, progress: BackupProgress) {
        // Fails only when the task is gone; the end of the run reports then.
        let _ = self.0.send(Some(progress));
    }
}

impl BackupProgressTask {
    /// A sender for the dump's progress callback.
    pub fn clone_sender(&self) -> ProgressSender {
        ProgressSender(self.tx.clone())
    }

    /// The reporter back, after the last progress was reported; `None` if
    /// the task panicked (the end of the run is then not reported).
    pub async fn into_reporter(self) -> Option<BackupReporter> {
        drop(self.tx);
        self.handle.await.ok()
    }
}

impl std::fmt::Debug for BackupProgressTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupProgressTask").finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub struct BackupReporter {
    inner: Option<Inner>,
}

struct Inner {
    target: Target,
    /// `KEEPER_BACKUP`: the object of an on-demand run.
    on_demand: Option<String>,
    /// `KEEPER_DESTINATION`, parsed.
    destination: Option<BackupDestination>,
    /// The `MySQLBackup` of this run, once known.
    name: Option<String>,
    /// Its `spec.keep`: the agent pins the artifact when it is complete.
    keep: bool,
    /// Everything reported so far: each apply re-sends all of it (see the
    /// module docs on server-side apply).
    status: MySQLBackupStatus,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupReporter")
            .field("namespace", &self.target.namespace)
            .field("instance", &self.target.instance)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl BackupReporter {
    /// A reporter for this run: active inside Kubernetes, a no-op outside.
    ///
    /// # Errors
    /// A misconfigured Job (namespace without instance, an unreadable
    /// destination): better to fail before dumping than to dump a backup
    /// that the cluster never hears of.
    pub fn from_context(ctx: &AgentContext) -> Result<Self, ReportError> {
        let Some(target) = Target::from_context(ctx)? else {
            return Ok(Self::disabled());
        };
        Ok(Self {
            inner: Some(Inner {
                target,
                on_demand: ctx.var(ENV_BACKUP).map(str::to_owned),
                destination: destination_from_env(ctx)?,
                name: None,
                keep: false,
                status: MySQLBackupStatus::default(),
            }),
        })
    }

    /// A reporter that reports nothing.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Whether reports go to Kubernetes.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Uses `policy` for retries instead of the default.
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        if let Some(inner) = &mut self.inner {
            inner.target.retry = policy;
        }
        self
    }

    /// The `MySQLBackup` of this run, once [`started`](Self::started) succeeded.
    pub fn name(&self) -> Option<&str> {
        self.inner.as_ref().and_then(|i| i.name.as_deref())
    }

    /// Whether this run's `MySQLBackup` asks to be pinned (`spec.keep`).
    pub fn keep(&self) -> bool {
        self.inner.as_ref().is_some_and(|i| i.keep)
    }

    /// Announces the run and decides its name; call before anything is dumped.
    ///
    /// * On-demand run (`KEEPER_BACKUP` set): that object must exist, belong
    ///   to this instance and not be finished; its status becomes Running.
    /// * Scheduled run: creates the `MySQLBackup` — named `requested_name`
    ///   (`--name`) or `<instance>-<UTC yyyymmdd-hhmmss>`, labelled with the
    ///   instance, owned by nothing (a backup outlives its Job and instance) —
    ///   and sets it Running.
    ///
    /// Running records `jobName`, `startTime` and the whole `destination`
    /// (from `KEEPER_DESTINATION`, else the object's or the instance's spec).
    /// `base_url` is the `--to` URL, checked against that destination.
    ///
    /// Returns the name the dump must use as its folder (`URL/<name>/`), so
    /// that the folder and the object agree; `None` outside Kubernetes (the
    /// dump then picks its own default).
    ///
    /// # Errors
    /// Any failure here fails the run: nothing has been dumped yet, and a
    /// backup the cluster does not know about is one nobody will restore.
    pub async fn started(
        &mut self,
        requested_name: Option<&str>,
        base_url: &str,
    ) -> Result<Option<String>, ReportError> {
        let Some(inner) = &mut self.inner else {
            return Ok(None);
        };
        let now = Utc::now();
        let target = &inner.target;
        let name = match (&inner.on_demand, requested_name) {
            (Some(backup), Some(requested)) if backup != requested => {
                return Err(ReportError::NameMismatch {
                    requested: requested.to_owned(),
                    backup: backup.clone(),
                });
            }
            (Some(backup), _) => backup.clone(),
            (None, Some(requested)) => requested.to_owned(),
            (None, None) => backup_name(&target.instance, now),
        };
        if !is_dns1123_label(&name) {
            return Err(ReportError::InvalidName(name));
        }

        let spec_destination = if inner.on_demand.is_some() {
            let backup = get_backup(target, &name).await?.ok_or_else(|| {
                unusable(
                    target,
                    &name,
                    format!("it does not exist ({ENV_BACKUP} names it; was it deleted?)"),
                )
            })?;
            if backup.spec.instance_ref.name != target.instance {
                return Err(unusable(
                    target,
                    &name,
                    format!(
                        "it belongs to instance {:?}, this Job backs up {:?}",
                        backup.spec.instance_ref.name, target.instance
                    ),
                ));
            }
            if let Some(phase) = backup.phase().filter(|p| p.is_final()) {
                // A retry is a new run with a new name (DESIGN); rewriting a
                // finished backup's status would falsify its record.
                return Err(unusable(
                    target,
                    &name,
                    format!("it already {phase}; a retry needs a new MySQLBackup"),
                ));
            }
            inner.keep = backup.spec.keep;
            backup.spec.destination
        } else {
            create_backup(target, &name).await?;
            None
        };

        let destination = match (inner.destination.clone(), spec_destination) {
            (Some(d), _) | (None, Some(d)) => Some(d),
            (None, None) => instance_destination(target).await,
        }
        .map(|d| in_layout(d, &target.namespace, &target.instance, base_url));
        match destination.as_ref().and_then(BackupDestination::base_url) {
            Some(url) if url.trim_end_matches('/') != base_url.trim_end_matches('/') => {
                tracing::warn!(
                    backup = %name,
                    destination = %url,
                    to = %base_url,
                    "the recorded destination differs from --to; a restore by name will look at the destination"
                );
            }
            Some(_) => {}
            None => tracing::warn!(
                backup = %name,
                "no destination known ({}): status.destination stays empty and a restore by name will need a location",
                super::ENV_DESTINATION
            ),
        }

        inner.status = MySQLBackupStatus {
            phase: Some(BackupPhase::Running),
            job_name: target.job_name.clone(),
            start_time: Some(now),
            destination,
            ..MySQLBackupStatus::default()
        };
        target
            .apply_backup_status(&name, &inner.status, target.retry)
            .await?;
        tracing::info!(backup = %name, namespace = %target.namespace, "reported backup Running");
        inner.name = Some(name.clone());
        Ok(Some(name))
    }

    /// Reports a complete backup (dump and manifest in storage at
    /// `location`, the backup's folder URL): status Succeeded with every
    /// figure from the manifest, then the instance's `lastBackup` — only
    /// when this backup is newer than the one recorded, so a late report of
    /// an older run never moves it backwards.
    ///
    /// Never fails the run: the artifact is complete whatever the API says
    /// (see [`ReportOutcome`]); problems are logged as warnings.
    pub async fn succeeded(&mut self, manifest: &Manifest, location: &str) -> ReportOutcome {
        let Some(inner) = &mut self.inner else {
            return ReportOutcome::Disabled;
        };
        let target = &inner.target;
        let name = match &inner.name {
            Some(name) => name.clone(),
            None => {
                // started() was not called or failed; the folder name is
                // the object name in Kubernetes, so report under it.
                tracing::warn!(backup = %manifest.name, "reporting a backup that was not announced");
                manifest.name.clone()
            }
        };
        if manifest.name != name {
            tracing::warn!(object = %name, folder = %manifest.name, "backup folder and MySQLBackup names differ");
        }
        let snapshot = &manifest.snapshot;
        let status = &mut inner.status;
        status.phase = Some(BackupPhase::Succeeded);
        status.job_name = status.job_name.take().or_else(|| target.job_name.clone());
        status.start_time = status.start_time.or(Some(manifest.started_at));
        status.completion_time = Some(manifest.finished_at);
        status.location = Some(location.to_owned());
        status.compressed_bytes = Some(manifest.file.size);
        // What `kubectl get myb` shows, and the lock time the metrics export.
        status.size = Some(keeper_crds::backup::human_size(manifest.file.size));
        status.lock_held_ms = manifest.snapshot.lock_held_ms;
        status.uncompressed_bytes = Some(manifest.uncompressed_bytes());
        status.tables = Some(manifest.table_count() as u64);
        status.rows = Some(manifest.row_count());
        status.sha256 = Some(manifest.file.sha256.clone());
        status.server_version = Some(manifest.server.version.clone());
        status.gtid_executed = snapshot.gtid_executed.clone().filter(|g| !g.is_empty());
        status.binlog_position = snapshot.binlog.as_ref().map(|b| BinlogPosition {
            file: b.file.clone(),
            position: b.position,
        });
        // A weaker-than-usual snapshot (no lock privilege) is worth seeing.
        status.message = snapshot.note.as_deref().map(one_line);
        let tables = manifest.table_count() as u64;
        status.progress = Some(BackupProgress::new(
            tables,
            tables,
            manifest.row_count(),
            manifest.uncompressed_bytes(),
        ));

        let mut errors = Vec::new();
        match target
            .apply_backup_status(&name, status, target.retry)
            .await
        {
            Ok(()) => tracing::info!(backup = %name, "reported backup Succeeded"),
            Err(e) => errors.push(e),
        }

        let last = LastBackup {
            name: name.clone(),
            // The snapshot is taken at the start of the run.
            time: manifest.started_at,
            location: location.to_owned(),
            compressed_bytes: manifest.file.size,
            duration_seconds: u64::try_from(
                (manifest.finished_at - manifest.started_at).num_seconds(),
            )
            .unwrap_or(0),
        };
        let result = target
            .update_instance_status(target.retry, |current| {
                if !is_newer(&last, current.last_backup.as_ref()) {
                    tracing::info!(
                        backup = %last.name,
                        recorded = ?current.last_backup.as_ref().map(|l| &l.name),
                        "lastBackup is newer than this backup; leaving it"
                    );
                    return None;
                }
                Some((Some(last.clone()), current.restore.clone()))
            })
            .await;
        match result {
            Ok(true) => tracing::info!(backup = %name, "reported lastBackup"),
            Ok(false) => {}
            Err(e) => errors.push(e),
        }
        warn_all(&errors, "the backup is complete and stays good");
        ReportOutcome::from_errors(errors)
    }

    /// Reports how far the running dump is (`status.progress`). A failure is
    /// logged and the run goes on: progress is for people watching.
    pub async fn progress(&mut self, progress: BackupProgress) -> ReportOutcome {
        let Some(inner) = &mut self.inner else {
            return ReportOutcome::Disabled;
        };
        let Some(name) = inner.name.clone() else {
            return ReportOutcome::NotReported(Vec::new());
        };
        inner.status.progress = Some(progress);
        // One attempt: the next tick brings newer figures anyway.
        let once = RetryPolicy {
            attempts: 1,
            ..inner.target.retry
        };
        match inner
            .target
            .apply_backup_status(&name, &inner.status, once)
            .await
        {
            Ok(()) => ReportOutcome::Reported,
            Err(e) => {
                tracing::debug!(backup = %name, error = %e, "could not report progress");
                ReportOutcome::NotReported(vec![e])
            }
        }
    }

    /// Moves the reporter onto a task while the dump runs: progress sent
    /// with [`BackupProgressTask::update`] is reported one at a time (the
    /// newest wins), and [`BackupProgressTask::into_reporter`] gives the
    /// reporter back for the end of the run.
    pub fn spawn(mut self) -> BackupProgressTask {
        let (tx, mut rx) = watch::channel(None);
        let handle = tokio::spawn(async move {
            // Ends when the sender is dropped, after the last value was seen.
            while rx.changed().await.is_ok() {
                let latest = rx.borrow_and_update().clone();
                if let Some(progress) = latest {
                    let _ = self.progress(progress).await;
                }
            }
            self
        });
        BackupProgressTask { tx, handle }
    }

    /// Reports a failed run: phase Failed with `message` (one line; agent
    /// errors hold no secrets). The last good backup and `lastBackup` are
    /// left alone. A run that already reported success is not turned into a
    /// failure (e.g. when retention fails after the backup).
    pub async fn failed(&mut self, message: &str) -> ReportOutcome {
        let Some(inner) = &mut self.inner else {
            return ReportOutcome::Disabled;
        };
        let Some(name) = inner.name.clone() else {
            // No object was announced (started failed): the operator
            // reports the Job's termination message instead.
            return ReportOutcome::Reported;
        };
        if inner.status.phase == Some(BackupPhase::Succeeded) {
            tracing::warn!(backup = %name, "not reporting a failure after the backup succeeded: {message}");
            return ReportOutcome::Reported;
        }
        inner.status.phase = Some(BackupPhase::Failed);
        inner.status.completion_time = Some(Utc::now());
        inner.status.message = Some(one_line(message));
        let target = &inner.target;
        match target
            .apply_backup_status(&name, &inner.status, target.retry)
            .await
        {
            Ok(()) => {
                tracing::info!(backup = %name, "reported backup Failed");
                ReportOutcome::Reported
            }
            Err(e) => {
                let errors = vec![e];
                warn_all(
                    &errors,
                    "the Job's termination message still carries the error",
                );
                ReportOutcome::NotReported(errors)
            }
        }
    }

    /// Deletes the `MySQLBackup` objects of backups retention removed (their
    /// artifacts are gone, so the objects would only promise a restore that
    /// cannot happen). A missing object is fine; an object of another
    /// instance, or this run's own, is never deleted.
    pub async fn pruned(&mut self, names: &[String]) -> ReportOutcome {
        let Some(inner) = &self.inner else {
            return ReportOutcome::Disabled;
        };
        let target = &inner.target;
        let mut errors = Vec::new();
        for name in names {
            if inner.name.as_ref() == Some(name) {
                tracing::warn!(backup = %name, "retention named this run's own backup; keeping its object");
                continue;
            }
            let backup = match get_backup(target, name).await {
                Ok(Some(b)) => b,
                Ok(None) => continue,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            if backup.spec.instance_ref.name != target.instance {
                tracing::warn!(
                    backup = %name,
                    owner = %backup.spec.instance_ref.name,
                    "a pruned backup's object belongs to another instance; keeping it"
                );
                continue;
            }
            match delete_backup(target, name).await {
                Ok(()) => {
                    tracing::info!(backup = %name, "deleted the MySQLBackup of a pruned backup")
                }
                Err(e) => errors.push(e),
            }
        }
        warn_all(&errors, "their artifacts are already gone");
        ReportOutcome::from_errors(errors)
    }
}

/// A destination from a spec (no `KEEPER_DESTINATION`) is the one before the
/// operator's per-instance layout; when `--to` is that layout's folder, the
/// folder is what must be recorded, so a restore by name finds the backup.
fn in_layout(
    destination: BackupDestination,
    namespace: &str,
    instance: &str,
    base_url: &str,
) -> BackupDestination {
    let same = |d: &BackupDestination| {
        d.base_url()
            .is_some_and(|u| u.trim_end_matches('/') == base_url.trim_end_matches('/'))
    };
    let scoped = destination.for_instance(namespace, instance);
    if !same(&destination) && same(&scoped) {
        scoped
    } else {
        destination
    }
}

/// Whether `new` may replace the recorded `lastBackup`: nothing recorded, the
/// same backup reported again, or a later snapshot.
fn is_newer(new: &LastBackup, recorded: Option<&LastBackup>) -> bool {
    match recorded {
        None => true,
        Some(old) => old.name == new.name || new.time > old.time,
    }
}

fn warn_all(errors: &[ReportError], consequence: &str) {
    for e in errors {
        tracing::warn!("{e} ({consequence})");
    }
}

fn unusable(target: &Target, name: &str, reason: String) -> ReportError {
    ReportError::Unusable {
        namespace: target.namespace.clone(),
        name: name.to_owned(),
        reason,
    }
}

/// `Ok(None)` when the object does not exist.
async fn get_backup(target: &Target, name: &str) -> Result<Option<MySQLBackup>, ReportError> {
    rbac::GET_BACKUP.note(&target.namespace, name);
    let api = target.backups();
    let what = format!("reading MySQLBackup {}/{name}", target.namespace);
    match retry(target.retry, &what, || api.get(name)).await {
        Ok(b) => Ok(Some(b)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(ReportError::GetBackup {
            namespace: target.namespace.clone(),
            name: name.to_owned(),
            detail: describe(&e),
        }),
    }
}

/// Creates the `MySQLBackup` of a scheduled run (no owner: DESIGN).
async fn create_backup(target: &Target, name: &str) -> Result<(), ReportError> {
    rbac::CREATE_BACKUP.note(&target.namespace, name);
    let mut backup = MySQLBackup::for_instance(name, &target.namespace, &target.instance, None);
    if let Some(job) = &target.job_name {
        backup.metadata.annotations = Some(BTreeMap::from([(
            CREATED_BY_JOB_ANNOTATION.to_owned(),
            job.clone(),
        )]));
    }
    let api = target.backups();
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    let what = format!("creating MySQLBackup {}/{name}", target.namespace);
    let err = match retry(target.retry, &what, || api.create(&params, &backup)).await {
        Ok(_) => {
            tracing::info!(backup = %name, namespace = %target.namespace, "created MySQLBackup");
            return Ok(());
        }
        Err(e) => e,
    };
    if !is_already_exists(&err) {
        return Err(ReportError::Create {
            namespace: target.namespace.clone(),
            name: name.to_owned(),
            detail: describe(&err),
        });
    }
    // Ours if an earlier attempt of this Job created it (its response lost):
    // same instance, our Job's annotation, no status yet.
    let existing = get_backup(target, name).await?;
    let ours = existing.as_ref().is_some_and(|b| {
        b.spec.instance_ref.name == target.instance
            && b.phase().is_none()
            && target.job_name.is_some()
            && b.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(CREATED_BY_JOB_ANNOTATION))
                == target.job_name.as_ref()
    });
    if ours {
        tracing::info!(backup = %name, "the MySQLBackup was created by an earlier attempt of this Job");
        Ok(())
    } else {
        Err(unusable(
            target,
            name,
            "another MySQLBackup already has this name (two runs in the same second?)".to_owned(),
        ))
    }
}

async fn delete_backup(target: &Target, name: &str) -> Result<(), ReportError> {
    rbac::DELETE_BACKUP.note(&target.namespace, name);
    let api = target.backups();
    let params = DeleteParams::default();
    let what = format!("deleting MySQLBackup {}/{name}", target.namespace);
    match retry(target.retry, &what, || api.delete(name, &params)).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(ReportError::Delete {
            namespace: target.namespace.clone(),
            name: name.to_owned(),
            detail: describe(&e),
        }),
    }
}

/// The instance's `spec.backup.destination`, as a fallback when the Job did
/// not pass one. Best effort: the status is still worth reporting without it.
async fn instance_destination(target: &Target) -> Option<BackupDestination> {
    match target.get_instance(target.retry).await {
        Ok(instance) => instance.backup_destination().cloned(),
        Err(e) => {
            tracing::warn!("{e} (looking up the backup destination)");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone};

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, h, 0, 0)
            .single()
            .expect("valid time")
    }

    fn last(name: &str, h: u32) -> LastBackup {
        LastBackup {
            name: name.into(),
            time: at(h),
            location: format!("s3://b/{name}"),
            compressed_bytes: 1,
            duration_seconds: 1,
        }
    }

    #[test]
    fn last_backup_never_moves_backwards() {
        assert!(is_newer(&last("b", 3), None));
        assert!(is_newer(&last("b", 3), Some(&last("a", 2))));
        assert!(!is_newer(&last("a", 2), Some(&last("b", 3))));
        // Equal times, different backups: keep what is there.
        assert!(!is_newer(&last("a", 3), Some(&last("b", 3))));
        // The same backup reported again (a retried report) is fine.
        assert!(is_newer(&last("b", 3), Some(&last("b", 3))));
    }

    #[test]
    fn a_spec_destination_is_recorded_in_the_instances_layout() {
        let root = BackupDestination::s3(keeper_crds::S3Destination::new("bkt"));
        let scoped = in_layout(root.clone(), "shop", "orders", "s3://bkt/shop/orders");
        assert_eq!(scoped.base_url().as_deref(), Some("s3://bkt/shop/orders"));
        // An agent run by hand at the destination itself records it as is.
        assert_eq!(in_layout(root.clone(), "shop", "orders", "s3://bkt/"), root);
        assert_eq!(
            in_layout(root.clone(), "shop", "orders", "s3://other"),
            root
        );
    }

    #[tokio::test]
    async fn outside_kubernetes_everything_is_a_no_op() {
        let mut r = BackupReporter::from_context(&AgentContext::default()).expect("no-op");
        assert!(!r.is_enabled());
        assert_eq!(r.started(None, "file:///x").await, Ok(None));
        assert_eq!(r.failed("boom").await, ReportOutcome::Disabled);
        assert_eq!(r.pruned(&["a".into()]).await, ReportOutcome::Disabled);
        assert_eq!(r.name(), None);
    }
}

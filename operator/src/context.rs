//! What every reconcile shares: the API client, the operator's configuration,
//! metrics, the Event recorder and per-object retry backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use keeper_crds::MySQLInstance;
use kube::Client;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;

use crate::accounts::{AccountManager, SqlAccountManager};
use crate::caches::Caches;
use crate::metrics::Metrics;

/// Field manager of every server-side apply (and of Events' reporter).
pub const FIELD_MANAGER: &str = "keeper-operator";
/// How long a deletion with `backupOnDelete` waits for the final backup.
pub const DEFAULT_FINAL_BACKUP_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long a `MySQLBackup` waits for its instance to exist and be ready.
pub const DEFAULT_INSTANCE_WAIT_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How long an agent Job's pod may take to start before the run fails.
pub const DEFAULT_AGENT_START_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Settings of the operator process that reconciles need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorConfig {
    /// Image of the backup agent, used by backup and restore Jobs.
    pub agent_image: String,
    /// Field manager for server-side apply.
    pub field_manager: String,
    /// The longest a backup run may take, as its Job's
    /// `activeDeadlineSeconds` (the Job controller ends it, reason
    /// `DeadlineExceeded`); `None`: no bound. Restores are never bounded: a
    /// restore cut short leaves a half-restored server.
    pub backup_run_timeout: Option<Duration>,
}

impl OperatorConfig {
    /// The default agent image: the agent released with this operator.
    pub fn default_agent_image() -> String {
        format!(
            "ghcr.io/mysql-keeper/keeper-agent:{}",
            env!("CARGO_PKG_VERSION")
        )
    }
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            agent_image: Self::default_agent_image(),
            field_manager: FIELD_MANAGER.to_owned(),
            backup_run_timeout: None,
        }
    }
}

/// Shared state of the controllers.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Operator settings.
    pub config: OperatorConfig,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Ensures the MySQL accounts (the backup user) over SQL.
    pub accounts: Arc<dyn AccountManager>,
    /// How long a deletion with `backupOnDelete` waits for the final backup
    /// (counted from `deletionTimestamp`) before it lets go without it.
    pub final_backup_timeout: Duration,
    /// How long a `MySQLBackup` waits (phase Pending) for its instance to
    /// exist and be ready, counted from the backup's creation, before it fails.
    pub instance_wait_timeout: Duration,
    /// How long an agent Job's pod may take to start (be scheduled, pull its
    /// image, create its container), counted from the Job's creation, before
    /// the run fails and the Job is deleted (see [`crate::agent_job::start`]).
    pub agent_start_timeout: Duration,
    /// Publishes Events about instances.
    recorder: Recorder,
    /// Consecutive failures per instance, for exponential retry backoff.
    backoff: Backoff,
    /// The last account error reported per instance, so it is published once.
    account_failures: Mutex<HashMap<String, String>>,
    /// The last start problem reported per agent Job, so it is published once.
    start_problems: Mutex<HashMap<String, String>>,
    /// The instance controller's watch caches, once it runs.
    caches: OnceLock<Caches>,
}

/// Records `message` for `key` in `notes` (`None` clears it); returns whether
/// it differs from the last one, i.e. whether it is worth an Event.
fn note_once(notes: &Mutex<HashMap<String, String>>, key: &str, message: Option<&str>) -> bool {
    let mut notes = notes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match message {
        Some(message) => {
            notes.insert(key.to_owned(), message.to_owned()).as_deref() != Some(message)
        }
        None => notes.remove(key).is_some(),
    }
}

impl Context {
    /// A context; `pod_name` distinguishes replicas in Events' reporting instance.
    pub fn new(
        client: Client,
        config: OperatorConfig,
        metrics: Arc<Metrics>,
        pod_name: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: config.field_manager.clone(),
            instance: pod_name,
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            config,
            metrics,
            accounts: Arc::new(SqlAccountManager::default()),
            final_backup_timeout: DEFAULT_FINAL_BACKUP_TIMEOUT,
            instance_wait_timeout: DEFAULT_INSTANCE_WAIT_TIMEOUT,
            agent_start_timeout: DEFAULT_AGENT_START_TIMEOUT,
            backoff: Backoff::default(),
            account_failures: Mutex::default(),
            start_problems: Mutex::default(),
            caches: OnceLock::new(),
        }
    }

    /// The watch caches reads go to first ([`crate::caches`]); `None` while
    /// no controller runs.
    pub fn caches(&self) -> Option<&Caches> {
        self.caches.get()
    }

    /// Hands the controller's watch caches to the reconciles (once; a later
    /// call is ignored: one controller runs per context).
    pub fn use_caches(&self, caches: Caches) {
        let _ = self.caches.set(caches);
    }

    /// Records the account error `message` of `instance` (`namespace/name`);
    /// `None` clears it. Returns whether it differs from the last one, i.e.
    /// whether it is worth an Event.
    pub fn note_account_failure(&self, instance: &str, message: Option<&str>) -> bool {
        note_once(&self.account_failures, instance, message)
    }

    /// Records the start problem `message` of the agent Job `job`
    /// (`namespace/name`); `None` clears it. Returns whether it differs from
    /// the last one, i.e. whether it is worth an Event.
    pub fn note_start_problem(&self, job: &str, message: Option<&str>) -> bool {
        note_once(&self.start_problems, job, message)
    }

    /// Replaces the account manager (tests use one without a server).
    #[must_use]
    pub fn with_accounts(mut self, accounts: Arc<dyn AccountManager>) -> Self {
        self.accounts = accounts;
        self
    }

    /// Sets how long a deletion waits for the final backup.
    #[must_use]
    pub fn with_final_backup_timeout(mut self, timeout: Duration) -> Self {
        self.final_backup_timeout = timeout;
        self
    }

    /// Sets how long a `MySQLBackup` waits for its instance.
    #[must_use]
    pub fn with_instance_wait_timeout(mut self, timeout: Duration) -> Self {
        self.instance_wait_timeout = timeout;
        self
    }

    /// Sets how long an agent Job's pod may take to start.
    #[must_use]
    pub fn with_agent_start_timeout(mut self, timeout: Duration) -> Self {
        self.agent_start_timeout = timeout;
        self
    }

    /// Publishes an Event about any object (e.g. a `MySQLBackup`). A failure
    /// to publish is logged and otherwise ignored.
    pub async fn publish_on(
        &self,
        object: &ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(truncate_note(note)),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, object).await {
            tracing::warn!(%error, reason, "could not publish Event");
        }
    }

    /// Publishes an Event about `instance`. A failure to publish is logged and
    /// otherwise ignored: an Event is information, never a reason to fail.
    pub async fn publish(
        &self,
        instance: &MySQLInstance,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.publish_related(instance, type_, reason, action, note, None)
            .await;
    }

    /// Publishes an Event about `instance` that concerns `related` (a child).
    pub async fn publish_related(
        &self,
        instance: &MySQLInstance,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
        related: Option<ObjectReference>,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(truncate_note(note)),
            action: action.to_owned(),
            secondary: related,
        };
        if let Err(error) = self
            .recorder
            .publish(&event, &instance.object_ref(&()))
            .await
        {
            tracing::warn!(%error, reason, "could not publish Event");
        }
    }

    /// Backoff for the next retry of `instance` after a failure.
    pub fn backoff_after_failure(&self, instance: &ObjectRef<MySQLInstance>) -> Duration {
        self.backoff.failure(instance)
    }

    /// Forgets the failures of `instance` after a successful reconcile.
    pub fn reset_backoff(&self, instance: &ObjectRef<MySQLInstance>) {
        self.backoff.reset(instance);
    }
}

/// Event notes are limited to 1 kB by the API server.
fn truncate_note(mut note: String) -> String {
    const MAX: usize = 1024;
    if note.len() > MAX {
        let mut cut = MAX - 3;
        while !note.is_char_boundary(cut) {
            cut -= 1;
        }
        note.truncate(cut);
        note.push_str("...");
    }
    note
}

/// Exponential backoff per object: 5 s, 10 s, 20 s, ... capped at 5 minutes.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<ObjectRef<MySQLInstance>, u32>>,
}

impl Backoff {
    const BASE: Duration = Duration::from_secs(5);
    const MAX: Duration = Duration::from_secs(300);

    /// Records a failure and returns how long to wait before the retry.
    pub fn failure(&self, key: &ObjectRef<MySQLInstance>) -> Duration {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = failures.entry(key.clone()).or_insert(0);
        let delay = Self::BASE
            .saturating_mul(2u32.saturating_pow((*count).min(16)))
            .min(Self::MAX);
        *count = count.saturating_add(1);
        delay
    }

    /// Forgets the failures of `key`.
    pub fn reset(&self, key: &ObjectRef<MySQLInstance>) {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let backoff = Backoff::default();
        let key = ObjectRef::new("demo").within("ns");
        let delays: Vec<u64> = (0..8).map(|_| backoff.failure(&key).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300]);
        backoff.reset(&key);
        assert_eq!(backoff.failure(&key).as_secs(), 5);
    }

    #[test]
    fn long_notes_are_cut_on_a_char_boundary() {
        let note = truncate_note("é".repeat(1000));
        assert!(note.len() <= 1024);
        assert!(note.ends_with("..."));
        assert_eq!(truncate_note("short".into()), "short");
    }
}

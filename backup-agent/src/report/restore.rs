//! Reporting a restore run into `MySQLInstance.status.restore`.

use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use keeper_crds::agent::FailureCode;
use keeper_crds::{RestorePhase, RestoreStatus};

use super::{ENV_RESTORE_SOURCE, ReportError, ReportOutcome, RetryPolicy, Target, one_line};
use crate::context::AgentContext;

/// Default time between two progress reports: often enough for `kubectl get
/// -w` to look alive, rare enough not to load the API server.
pub const DEFAULT_PROGRESS_INTERVAL: Duration = Duration::from_secs(2);

/// Reports one restore run. Outside Kubernetes every method does nothing.
///
/// Call [`progress`](Self::progress) as members complete (it throttles
/// itself) and [`finished`](Self::finished) once at the end. None of it can
/// fail the restore: the data in the server is what matters, and the
/// operator also sees the Job's result.
#[derive(Debug)]
pub struct RestoreReporter {
    inner: Option<Inner>,
}

struct Inner {
    target: Target,
    status: RestoreStatus,
    interval: Duration,
    last_sent: Option<Instant>,
    /// Progress failures are logged once, not every two seconds.
    progress_failure_logged: bool,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreReporter")
            .field("namespace", &self.target.namespace)
            .field("instance", &self.target.instance)
            .field("source", &self.status.source)
            .finish_non_exhaustive()
    }
}

impl RestoreReporter {
    /// A reporter for a restore from `from` (the `--from` URL), shown as
    /// `KEEPER_RESTORE_SOURCE` when the operator set it (e.g. the
    /// `MySQLBackup` name the user asked for).
    ///
    /// # Errors
    /// A misconfigured Job (namespace without instance).
    pub fn from_context(ctx: &AgentContext, from: &str) -> Result<Self, ReportError> {
        let Some(target) = Target::from_context(ctx)? else {
            return Ok(Self::disabled());
        };
        let source = ctx.var(ENV_RESTORE_SOURCE).unwrap_or(from).to_owned();
        let status = RestoreStatus {
            phase: RestorePhase::Running,
            source,
            job_name: target.job_name.clone(),
            start_time: Some(Utc::now()),
            completion_time: None,
            members_done: None,
            members_total: None,
            bytes_done: None,
            message: None,
            failure_code: None,
        };
        Ok(Self {
            inner: Some(Inner {
                target,
                status,
                interval: DEFAULT_PROGRESS_INTERVAL,
                last_sent: None,
                progress_failure_logged: false,
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

    /// Uses `policy` for retries of the first and the final report.
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        if let Some(inner) = &mut self.inner {
            inner.target.retry = policy;
        }
        self
    }

    /// Reports progress at most once per `interval` (besides the first and
    /// the last report).
    pub fn with_progress_interval(mut self, interval: Duration) -> Self {
        if let Some(inner) = &mut self.inner {
            inner.interval = interval;
        }
        self
    }

    /// Records progress and reports it when due: the first call, the call
    /// that completes the last member, and otherwise once per interval.
    ///
    /// Only the first report is retried with backoff; later ones try once,
    /// because waiting would stall the replay and the next one is due soon.
    pub async fn progress(
        &mut self,
        members_done: u64,
        members_total: u64,
        bytes_done: u64,
    ) -> ReportOutcome {
        let Some(inner) = &mut self.inner else {
            return ReportOutcome::Disabled;
        };
        inner.status.members_done = Some(members_done);
        inner.status.members_total = Some(members_total);
        inner.status.bytes_done = Some(bytes_done);
        let first = inner.last_sent.is_none();
        let last = members_done >= members_total;
        let due = inner
            .last_sent
            .is_none_or(|sent| sent.elapsed() >= inner.interval);
        if !(first || last || due) {
            return ReportOutcome::Reported;
        }
        inner.last_sent = Some(Instant::now());
        let policy = if first {
            inner.target.retry
        } else {
            RetryPolicy::ONCE
        };
        match inner.report(policy).await {
            Ok(()) => ReportOutcome::Reported,
            Err(e) => {
                if !inner.progress_failure_logged {
                    tracing::warn!("{e} (restore progress; the restore goes on)");
                    inner.progress_failure_logged = true;
                }
                ReportOutcome::NotReported(vec![e])
            }
        }
    }

    /// Reports the end: Succeeded, or Failed with the failure's code and
    /// one-line `Err` message (agent errors hold no secrets), with the
    /// completion time.
    pub async fn finished(&mut self, result: Result<(), (FailureCode, &str)>) -> ReportOutcome {
        match result {
            Ok(()) => self.finish(RestorePhase::Succeeded, None).await,
            Err((code, message)) => {
                if let Some(inner) = &mut self.inner {
                    inner.status.failure_code = Some(code);
                }
                self.finish(RestorePhase::Failed, Some(message)).await
            }
        }
    }

    /// Reports the end of a run that found its request already applied to
    /// the server: Succeeded, with `line` (what it found, and that nothing
    /// was changed) as the message.
    pub async fn already_restored(&mut self, line: &str) -> ReportOutcome {
        self.succeeded(Some(line)).await
    }

    /// Reports a success with `note` as the message: why nothing was
    /// changed, or what the restore could not bring back exactly (see
    /// `Restored::status_note`); none for a plain success.
    pub async fn succeeded(&mut self, note: Option<&str>) -> ReportOutcome {
        self.finish(RestorePhase::Succeeded, note).await
    }

    async fn finish(&mut self, phase: RestorePhase, message: Option<&str>) -> ReportOutcome {
        let Some(inner) = &mut self.inner else {
            return ReportOutcome::Disabled;
        };
        inner.status.phase = phase;
        inner.status.message = message.map(one_line);
        inner.status.completion_time = Some(Utc::now());
        let policy = inner.target.retry;
        match inner.report(policy).await {
            Ok(()) => {
                tracing::info!(phase = %inner.status.phase, "reported the restore's end");
                ReportOutcome::Reported
            }
            Err(e) => {
                tracing::warn!(
                    "{e} (the restore's end; the Job's result still tells the operator)"
                );
                ReportOutcome::NotReported(vec![e])
            }
        }
    }
}

/// A [`RestoreReporter`] running on its own task, fed by a synchronous
/// callback: the restore engine reports progress from a plain `Fn` after
/// every member and must never wait for the API. Updates go through a
/// `watch` channel, so while one report is in flight newer progress simply
/// replaces older, and the last value is always reported.
#[derive(Debug)]
pub struct RestoreProgressTask {
    tx: watch::Sender<Option<(u64, u64, u64)>>,
    handle: JoinHandle<RestoreReporter>,
}

impl RestoreReporter {
    /// Moves the reporter onto a task; see [`RestoreProgressTask`].
    pub fn spawn(mut self) -> RestoreProgressTask {
        let (tx, mut rx) = watch::channel(None);
        let handle = tokio::spawn(async move {
            // Ends when the sender is dropped, after the last value was seen.
            while rx.changed().await.is_ok() {
                let latest = *rx.borrow_and_update();
                if let Some((done, total, bytes)) = latest {
                    let _ = self.progress(done, total, bytes).await;
                }
            }
            self
        });
        RestoreProgressTask { tx, handle }
    }
}

impl RestoreProgressTask {
    /// Records progress; never blocks (call it from the engine's callback).
    pub fn update(&self, members_done: u64, members_total: u64, bytes_done: u64) {
        // Fails only when the task is gone, which finished() reports.
        let _ = self
            .tx
            .send(Some((members_done, members_total, bytes_done)));
    }

    /// Reports the last progress, then the end (see [`RestoreReporter::finished`]).
    pub async fn finished(self, result: Result<(), (FailureCode, &str)>) -> ReportOutcome {
        match self.into_reporter().await {
            Some(mut reporter) => reporter.finished(result).await,
            None => ReportOutcome::NotReported(Vec::new()),
        }
    }

    /// Reports a run that changed nothing because its request was already
    /// applied (see [`RestoreReporter::already_restored`]).
    pub async fn already_restored(self, line: &str) -> ReportOutcome {
        match self.into_reporter().await {
            Some(mut reporter) => reporter.already_restored(line).await,
            None => ReportOutcome::NotReported(Vec::new()),
        }
    }

    /// Reports the last progress, then a success with `note` (see
    /// [`RestoreReporter::succeeded`]).
    pub async fn succeeded(self, note: Option<&str>) -> ReportOutcome {
        match self.into_reporter().await {
            Some(mut reporter) => reporter.succeeded(note).await,
            None => ReportOutcome::NotReported(Vec::new()),
        }
    }

    async fn into_reporter(self) -> Option<RestoreReporter> {
        drop(self.tx);
        match self.handle.await {
            Ok(reporter) => Some(reporter),
            Err(e) => {
                tracing::warn!(
                    "the restore status task stopped: {e}; the restore's end is not reported"
                );
                None
            }
        }
    }
}

impl Inner {
    /// Applies `status.restore`, carrying the current `lastBackup` along
    /// (same manager, so leaving it out would delete it).
    async fn report(&self, policy: RetryPolicy) -> Result<(), ReportError> {
        let restore = &self.status;
        self.target
            .update_instance_status(policy, |current| {
                Some((current.last_backup.clone(), Some(restore.clone())))
            })
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn outside_kubernetes_everything_is_a_no_op() {
        let mut r =
            RestoreReporter::from_context(&AgentContext::default(), "file:///b/x").expect("no-op");
        assert!(!r.is_enabled());
        assert_eq!(r.progress(1, 2, 3).await, ReportOutcome::Disabled);
        assert_eq!(r.finished(Ok(())).await, ReportOutcome::Disabled);
    }
}

//! `MySQLBackup.status.verification`: what `verify --restore` proved about
//! the backup it ran for (inside Kubernetes, `KEEPER_BACKUP` names it),
//! applied under its own field manager so the backup run's fields stay.

use chrono::Utc;
use kube::api::PatchParams;

use keeper_crds::{BackupVerification, MySQLBackupStatus, VerificationPhase};

use super::{ENV_BACKUP, ReportError, ReportOutcome, Target, VERIFY_FIELD_MANAGER, one_line};
use crate::context::AgentContext;
use crate::proof::ProofReport;

/// Reports a proof's result on the `MySQLBackup` it was for; a no-op outside
/// Kubernetes or without `KEEPER_BACKUP`.
pub struct VerificationReporter {
    /// Where to report, and the `MySQLBackup`'s name.
    target: Option<(Target, String)>,
}

impl std::fmt::Debug for VerificationReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationReporter")
            .field("backup", &self.target.as_ref().map(|(_, name)| name))
            .finish_non_exhaustive()
    }
}

impl VerificationReporter {
    /// The reporter of this run.
    ///
    /// # Errors
    /// A misconfigured Job (namespace without instance).
    pub fn from_context(ctx: &AgentContext) -> Result<Self, ReportError> {
        let target = Target::from_context(ctx)?;
        let backup = ctx.var(ENV_BACKUP).map(str::to_owned);
        Ok(Self {
            target: target.zip(backup),
        })
    }

    /// Writes `Verified` with what was compared, or `Failed` with the first
    /// difference; `Err` is a proof that could not be made (written as
    /// Failed with its reason).
    pub async fn finished(&self, result: Result<&ProofReport, &str>) -> ReportOutcome {
        let Some((target, name)) = &self.target else {
            return ReportOutcome::Disabled;
        };
        let verification = verification(result);
        let status = MySQLBackupStatus {
            verification: Some(verification),
            ..MySQLBackupStatus::default()
        };
        // Forced: a proof run again takes the field over from an earlier one.
        let params = PatchParams::apply(VERIFY_FIELD_MANAGER).force();
        match target
            .apply_backup_status_as(name, &status, params, target.retry)
            .await
        {
            Ok(()) => {
                tracing::info!(backup = %name, "reported the verification");
                ReportOutcome::Reported
            }
            Err(e) => {
                tracing::warn!(backup = %name, error = %e, "could not report the verification");
                ReportOutcome::NotReported(vec![e])
            }
        }
    }
}

/// The status of a proof's result.
fn verification(result: Result<&ProofReport, &str>) -> BackupVerification {
    match result {
        Ok(report) => BackupVerification {
            phase: if report.differences.is_empty() {
                VerificationPhase::Verified
            } else {
                VerificationPhase::Failed
            },
            time: Utc::now(),
            tables: report.tables as u64,
            rows: report.rows,
            duration_seconds: report.duration.as_secs(),
            message: report.differences.first().map(|d| {
                one_line(&format!(
                    "{} difference(s), first: {d}",
                    report.differences.len()
                ))
            }),
        },
        Err(reason) => BackupVerification {
            phase: VerificationPhase::Failed,
            time: Utc::now(),
            tables: 0,
            rows: 0,
            duration_seconds: 0,
            message: Some(one_line(reason)),
        },
    }
}

//! The restore's hold on the server: nothing but the restore reaches the
//! server until the restore has succeeded.
//!
//! Two layers, because clients do not all come through the client Service:
//!
//! 1. **In the server**, for every route (client Service, headless Service,
//!    pod IP): the application account (`spec.user`) is locked. While the
//!    instance restores ([`operator_creates_app_account`]) the server image is
//!    not asked to create that account (it would be open the moment the
//!    server listens); the operator creates it locked before it creates the
//!    restore Job, and unlocks it after the Job succeeded and before the
//!    restore is recorded, so `Ready` never shows before applications can log
//!    in. See [`crate::accounts`] for the SQL.
//! 2. **In Kubernetes**: the client Service selects no pod while the restore
//!    holds the server ([`holds_server`]): its selector then also requires
//!    [`HOLD_LABEL`], which no pod carries. The pod's readiness stays "the
//!    server answers `SELECT 1`", which is what the operator waits for before
//!    it starts the restore; the restore Job and the operator's account SQL
//!    connect through the headless Service (`<name>-0.<name>-headless`),
//!    which publishes the pod before it is ready and ignores the hold.
//!
//! While held, a client of the client Service gets "connection refused"
//! (no endpoints), and one that logs in as the application account by
//! another route gets "Access denied, this account is locked" (or "Access
//! denied" before the operator created it). Root is not held: it is the
//! administrator's, and the restore's, own account.
//!
//! A failed restore keeps the hold (the server may hold part of a backup);
//! removing `spec.restoreFrom` gives it up and takes the server as it is.

use std::time::Duration;

use keeper_crds::instance::MYSQL_PORT;
use keeper_crds::instance::{PASSWORD_KEY, USERNAME_KEY};
use keeper_crds::{MySQLInstance, MySQLInstanceStatus};
use kube::runtime::events::EventType;
use sha2::{Digest, Sha256};

use super::already_restored;
use crate::accounts::{AppAccess, AppAccountTarget, ROOT_USER};
use crate::context::Context;
use crate::instance::build::InstanceMeta;
use crate::instance::fetch::{Observed, secret_value};

/// A label no pod carries: the client Service requires it while a restore
/// holds the server, so it routes nowhere.
pub const HOLD_LABEL: &str = "mysql.keeper.dev/held-for-restore";
/// Warning Event when the application account cannot be locked or unlocked.
pub const REASON_APP_ACCOUNT_FAILED: &str = "AppAccountFailed";

/// Whether a restore holds the server: `spec.restoreFrom` is set and `status`
/// does not record it as restored (waiting, running, failed).
pub fn holds_server(instance: &MySQLInstance, status: Option<&MySQLInstanceStatus>) -> bool {
    instance
        .spec
        .restore_from
        .as_ref()
        .is_some_and(|request| !status.is_some_and(|s| already_restored(s, request)))
}

/// Whether the operator, not the server image, creates the application
/// account: the instance has `spec.user` and restores (`spec.restoreFrom`,
/// or a restore is recorded, so removing `restoreFrom` afterwards does not
/// change the pod template and restart the server).
pub fn operator_creates_app_account(instance: &MySQLInstance) -> bool {
    instance.spec.user.is_some()
        && (instance.spec.restore_from.is_some()
            || instance
                .status
                .as_ref()
                .is_some_and(|s| s.restored_from.is_some()))
}

/// The application account's target for `access`, or why it cannot be
/// ensured yet (a Secret or key missing).
fn target(
    instance: &MySQLInstance,
    observed: &Observed,
    access: AppAccess,
) -> Result<AppAccountTarget, String> {
    let meta = InstanceMeta::of(instance).map_err(|e| e.to_string())?;
    let credentials = instance.credentials_secret_name();
    let root_password = observed.root_password(instance).ok_or_else(|| {
        format!(
            "the root password Secret {} is not there yet",
            instance.root_password_secret().0
        )
    })?;
    let user = secret_value(observed.credentials.as_ref(), USERNAME_KEY)
        .or_else(|| instance.spec.user.clone())
        .ok_or_else(|| "spec.user is not set".to_owned())?;
    let password = secret_value(observed.credentials.as_ref(), PASSWORD_KEY)
        .ok_or_else(|| format!("Secret {credentials} has no key {PASSWORD_KEY} yet"))?;
    let instance_key = format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name
    );
    // Anything that could make the account differ: the server's data (its
    // claim), the instance, the passwords, the account, its state.
    let mut hasher = Sha256::new();
    for part in [
        instance.metadata.uid.as_deref().unwrap_or_default(),
        observed
            .data_claim
            .as_ref()
            .and_then(|c| c.metadata.uid.as_deref())
            .unwrap_or_default(),
        &root_password,
        &user,
        &password,
        instance.spec.database.as_deref().unwrap_or_default(),
        match access {
            AppAccess::Held => "held",
            AppAccess::Open => "open",
        },
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    Ok(AppAccountTarget {
        host: meta.server_pod_host(),
        port: MYSQL_PORT,
        root_user: ROOT_USER.to_owned(),
        root_password,
        user,
        password,
        database: instance.spec.database.clone(),
        access,
        instance: instance_key,
        cache_key: hex::encode(hasher.finalize()),
    })
}

/// Retry delay when the application account could not be unlocked.
const ACCOUNT_RETRY: Duration = Duration::from_secs(30);

/// The step after the restore's: with no restore holding the server and a
/// server that is up, the application account is open. Returns when to try
/// again after a failure (published as an Event by [`ensure_app_access`]).
pub async fn release(
    ctx: &Context,
    instance: &MySQLInstance,
    observed: &Observed,
    ready_replicas: i32,
    holds_server: bool,
) -> Option<Duration> {
    if holds_server || ready_replicas < 1 {
        return None;
    }
    ensure_app_access(ctx, instance, observed, AppAccess::Open)
        .await
        .err()
        .map(|_| ACCOUNT_RETRY)
}

/// Ensures the application account is in state `access` when the operator
/// owns it ([`operator_creates_app_account`]); nothing otherwise. A failure
/// is a Warning Event (once per distinct error) and the returned message.
///
/// # Errors
/// What failed, in one line (no secret).
pub async fn ensure_app_access(
    ctx: &Context,
    instance: &MySQLInstance,
    observed: &Observed,
    access: AppAccess,
) -> Result<(), String> {
    if !operator_creates_app_account(instance) {
        return Ok(());
    }
    let target = target(instance, observed, access)?;
    let key = format!("{}/app-account", target.instance);
    match ctx.accounts.ensure_app_account(&target).await {
        Ok(()) => {
            ctx.note_account_failure(&key, None);
            Ok(())
        }
        Err(error) => {
            let what = match access {
                AppAccess::Held => "lock",
                AppAccess::Open => "unlock",
            };
            let message = format!(
                "cannot {what} the application account {}: {error}",
                target.user
            );
            tracing::warn!(instance = %target.instance, %error, "cannot {what} the application account");
            if ctx.note_account_failure(&key, Some(&message)) {
                ctx.publish(
                    instance,
                    EventType::Warning,
                    REASON_APP_ACCOUNT_FAILED,
                    "Accounts",
                    message.clone(),
                )
                .await;
            }
            Err(message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keeper_crds::MySQLInstanceSpec;
    use serde_json::json;

    fn instance(spec: serde_json::Value, restored_from: Option<&str>) -> MySQLInstance {
        let spec: MySQLInstanceSpec = serde_json::from_value(spec).expect("spec");
        let mut instance = MySQLInstance::new("orders", spec);
        instance.status = restored_from.map(|r| MySQLInstanceStatus {
            restored_from: Some(r.to_owned()),
            ..MySQLInstanceStatus::default()
        });
        instance
    }

    #[test]
    fn a_restore_holds_the_server_until_status_records_it() {
        let request = json!({"user": "app", "restoreFrom": {"backupName": "b1"}});
        let waiting = instance(request.clone(), None);
        assert!(holds_server(&waiting, waiting.status.as_ref()));
        assert!(holds_server(&waiting, None));
        let key =
            super::super::source::fingerprint(waiting.spec.restore_from.as_ref().expect("request"));
        let done = instance(
            request.clone(),
            Some(&format!("b1 [{key}] at 2026-01-01T00:00:00Z")),
        );
        assert!(!holds_server(&done, done.status.as_ref()));
        // Another backup recorded: the new request holds again.
        let other = instance(request, Some("b0 [0123456789] at 2026-01-01T00:00:00Z"));
        assert!(holds_server(&other, other.status.as_ref()));
        let plain = instance(json!({"user": "app"}), None);
        assert!(!holds_server(&plain, None));
    }

    #[test]
    fn the_operator_owns_the_app_account_of_a_restoring_instance() {
        let restoring = instance(
            json!({"user": "app", "restoreFrom": {"backupName": "b1"}}),
            None,
        );
        assert!(operator_creates_app_account(&restoring));
        // restoreFrom removed after the restore: still the operator's.
        let restored = instance(json!({"user": "app"}), Some("b1 [0123456789] at t"));
        assert!(operator_creates_app_account(&restored));
        assert!(!operator_creates_app_account(&instance(
            json!({"user": "app"}),
            None
        )));
        assert!(!operator_creates_app_account(&instance(
            json!({"restoreFrom": {"backupName": "b1"}}),
            None
        )));
    }
}

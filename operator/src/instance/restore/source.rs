//! Where a restore reads from: `spec.restoreFrom` resolved to a destination
//! and a backup folder, with every referenced object checked before anything
//! runs; and the fingerprints that make a restore run once per source.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use keeper_crds::destination::{AWS_ACCESS_KEY_ID_KEY, AWS_SECRET_ACCESS_KEY_KEY};
use keeper_crds::{BackupDestination, BackupPhase, MySQLBackup, RestoreSource};
use kube::Client;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::instance::fetch::get;

/// Hex digits of a fingerprint: 40 bits, plenty for the handful of restores
/// one instance ever sees, short enough for a Job name.
const KEY_LEN: usize = 10;

/// A `spec.restoreFrom` resolved to what the agent reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedSource {
    /// Fingerprint of the source (not of `overwrite`): equal fingerprints
    /// are the same restore, which runs only once.
    pub key: String,
    /// What `status.restore.source` and messages show: the `MySQLBackup`
    /// name, or the location's URL.
    pub description: String,
    /// The storage holding the backup, with its secret references.
    pub destination: BackupDestination,
    /// The backup's folder under `destination`.
    pub backup: String,
    /// The agent's `--from`: the backup folder's URL.
    pub url: String,
    /// Replace the backup's databases if the target already has them.
    pub overwrite: bool,
}

/// Why a source cannot be restored yet: reason (condition and Event) and
/// what to fix. Nothing runs while one of these holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceProblem {
    /// CamelCase reason, e.g. `BackupNotFound`.
    pub reason: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

impl SourceProblem {
    fn new(reason: &'static str, message: String) -> Self {
        Self { reason, message }
    }
}

/// Fingerprint of what `request` restores: a hash of `backupName` or of the
/// whole `location` (destination and backup). `overwrite` is deliberately
/// not part of it: flipping it after a successful restore must not restore
/// (and drop) again.
pub fn fingerprint(request: &RestoreSource) -> String {
    let identity = json!({
        "backupName": request.backup_name,
        "location": request.location,
    });
    short_hash(&identity.to_string())
}

/// Fingerprint of one attempt at a source: the source, `overwrite`, and the
/// retry annotation's value. It names the Job, so each attempt gets exactly
/// one Job, and a new attempt (overwrite set after a refusal, or a new retry
/// value) gets a new one.
pub fn attempt_key(source_key: &str, overwrite: bool, retry: Option<&str>) -> String {
    short_hash(&json!([source_key, overwrite, retry.unwrap_or("")]).to_string())
}

fn short_hash(text: &str) -> String {
    let mut hex = hex::encode(Sha256::digest(text.as_bytes()));
    hex.truncate(KEY_LEN);
    hex
}

/// `status.restoredFrom`: `<description> [<key>] at <RFC 3339 time>`.
pub fn restored_from(source: &ResolvedSource, at: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "{} [{}] at {}",
        source.description,
        source.key,
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// The fingerprint recorded in a `status.restoredFrom` written by
/// [`restored_from`]; `None` for anything else.
pub fn restored_key(restored_from: &str) -> Option<&str> {
    let (head, _) = restored_from.rsplit_once("] at ")?;
    let (_, key) = head.rsplit_once(" [")?;
    (key.len() == KEY_LEN && key.bytes().all(|b| b.is_ascii_hexdigit())).then_some(key)
}

/// Resolves `request` in `namespace`: the `MySQLBackup` it names (which must
/// have succeeded) or its location, then checks that the Secrets and the
/// claim the Job will use exist. `Ok(Err(problem))` when the user must act.
///
/// # Errors
/// [`Error::Kube`] when the API cannot be read.
pub async fn resolve(
    client: &Client,
    namespace: &str,
    request: &RestoreSource,
) -> Result<std::result::Result<ResolvedSource, SourceProblem>> {
    let key = fingerprint(request);
    let resolved = match (&request.backup_name, &request.location) {
        (Some(name), None) => {
            let backup = get::<MySQLBackup>(client, namespace, name).await?;
            match from_backup(name, backup.as_ref()) {
                Ok((destination, folder)) => (name.clone(), destination, folder),
                Err(problem) => return Ok(Err(problem)),
            }
        }
        (None, Some(location)) => match location.url() {
            Some(url) => (url, location.destination.clone(), location.backup.clone()),
            None => {
                return Ok(Err(SourceProblem::new(
                    "InvalidDestination",
                    "spec.restoreFrom.location.destination: exactly one of s3 or pvc must be set"
                        .to_owned(),
                )));
            }
        },
        // Validation rejects both and neither before this runs.
        _ => {
            return Ok(Err(SourceProblem::new(
                "InvalidRestoreSource",
                "spec.restoreFrom: exactly one of backupName or location must be set".to_owned(),
            )));
        }
    };
    let (description, destination, backup) = resolved;
    let field = if request.backup_name.is_some() {
        format!("the destination recorded in MySQLBackup {description}")
    } else {
        "spec.restoreFrom.location.destination".to_owned()
    };
    if let Some(problem) = check_references(client, namespace, &destination, &field).await? {
        return Ok(Err(problem));
    }
    let Some(url) = destination.backup_url(&backup) else {
        return Ok(Err(SourceProblem::new(
            "InvalidDestination",
            format!("{field}: exactly one of s3 or pvc must be set"),
        )));
    };
    Ok(Ok(ResolvedSource {
        key,
        description,
        destination,
        backup,
        url,
        overwrite: request.overwrite,
    }))
}

/// The destination and folder of a `MySQLBackup`, or why it cannot be used.
pub fn from_backup(
    name: &str,
    backup: Option<&MySQLBackup>,
) -> std::result::Result<(BackupDestination, String), SourceProblem> {
    let Some(backup) = backup else {
        return Err(SourceProblem::new(
            "BackupNotFound",
            format!(
                "spec.restoreFrom.backupName: MySQLBackup {name:?} not found in this namespace; \
                 name an existing backup (kubectl get mysqlbackups) or use restoreFrom.location"
            ),
        ));
    };
    let status = backup.status.clone().unwrap_or_default();
    match status.phase {
        Some(BackupPhase::Succeeded) => {}
        phase => {
            let phase = phase.map_or("not started", |p| p.as_str());
            let hint = if phase == "Failed" {
                "name a backup that succeeded"
            } else {
                "the restore starts once it has succeeded"
            };
            return Err(SourceProblem::new(
                "BackupNotSucceeded",
                format!("MySQLBackup {name} is {phase}, not Succeeded; {hint}"),
            ));
        }
    }
    backup.recorded_folder().ok_or_else(|| {
        SourceProblem::new(
            "BackupNotUsable",
            format!(
                "MySQLBackup {name} has no status.destination, so where it was written is unknown; \
                 restore it with restoreFrom.location instead"
            ),
        )
    })
}

/// Checks that the Secrets (with their keys) and the claim a Job reading
/// `destination` needs exist, so a Job never hangs on a missing reference.
async fn check_references(
    client: &Client,
    namespace: &str,
    destination: &BackupDestination,
    field: &str,
) -> Result<Option<SourceProblem>> {
    if let Some(s3) = &destination.s3 {
        if let Some(reference) = &s3.credentials_secret_ref {
            let secret = get::<Secret>(client, namespace, &reference.name).await?;
            let keys = [AWS_ACCESS_KEY_ID_KEY, AWS_SECRET_ACCESS_KEY_KEY];
            if let Some(problem) = check_secret(secret.as_ref(), &reference.name, &keys, field) {
                return Ok(Some(problem));
            }
        }
        if let Some(reference) = &s3.ca_bundle_secret_ref {
            let secret = get::<Secret>(client, namespace, &reference.name).await?;
            let keys = [reference.key.as_str()];
            if let Some(problem) = check_secret(secret.as_ref(), &reference.name, &keys, field) {
                return Ok(Some(problem));
            }
        }
    }
    if let Some(pvc) = &destination.pvc
        && get::<PersistentVolumeClaim>(client, namespace, &pvc.claim_name)
            .await?
            .is_none()
    {
        return Ok(Some(SourceProblem::new(
            "ClaimNotFound",
            format!(
                "{field}: PersistentVolumeClaim {:?} not found in this namespace; create it or restore from another location",
                pvc.claim_name
            ),
        )));
    }
    Ok(None)
}

fn check_secret(
    secret: Option<&Secret>,
    name: &str,
    keys: &[&str],
    field: &str,
) -> Option<SourceProblem> {
    let Some(secret) = secret else {
        return Some(SourceProblem::new(
            "SecretNotFound",
            format!(
                "{field}: Secret {name:?} not found in this namespace; create it with the keys {}",
                keys.join(", ")
            ),
        ));
    };
    let has = |key: &str| {
        secret.data.as_ref().is_some_and(|d| d.contains_key(key))
            || secret
                .string_data
                .as_ref()
                .is_some_and(|d| d.contains_key(key))
    };
    let missing: Vec<&str> = keys.iter().copied().filter(|k| !has(k)).collect();
    (!missing.is_empty()).then(|| {
        SourceProblem::new(
            "SecretKeyNotFound",
            format!(
                "{field}: Secret {name:?} has no key {}; add it",
                missing.join(", ")
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use keeper_crds::backup::folder_in;
    use keeper_crds::{MySQLBackupStatus, PvcDestination, RestoreLocation, S3Destination};

    fn by_name(name: &str, overwrite: bool) -> RestoreSource {
        RestoreSource {
            backup_name: Some(name.into()),
            location: None,
            overwrite,
        }
    }

    #[test]
    fn fingerprints_identify_the_source_not_overwrite() {
        let a = fingerprint(&by_name("orders-1", false));
        assert_eq!(a.len(), KEY_LEN);
        assert_eq!(a, fingerprint(&by_name("orders-1", true)));
        assert_ne!(a, fingerprint(&by_name("orders-2", false)));
        let location = |backup: &str| RestoreSource {
            backup_name: None,
            location: Some(RestoreLocation {
                destination: BackupDestination::s3(S3Destination::new("bucket")),
                backup: backup.into(),
            }),
            overwrite: false,
        };
        assert_ne!(fingerprint(&location("x")), fingerprint(&location("y")));
        assert_ne!(fingerprint(&location("orders-1")), a);

        // Each attempt differs by overwrite and by the retry value.
        let first = attempt_key(&a, false, None);
        assert_ne!(first, attempt_key(&a, true, None));
        assert_ne!(first, attempt_key(&a, false, Some("1")));
        assert_eq!(first, attempt_key(&a, false, Some("")));
    }

    #[test]
    fn restored_from_round_trips_its_key() {
        let source = ResolvedSource {
            key: "0123456789".into(),
            description: "orders-20250101-030000".into(),
            destination: BackupDestination::default(),
            backup: "orders-20250101-030000".into(),
            url: "s3://b/orders-20250101-030000".into(),
            overwrite: false,
        };
        let at = chrono::Utc
            .with_ymd_and_hms(2025, 1, 2, 10, 0, 0)
            .single()
            .expect("time");
        let text = restored_from(&source, at);
        assert_eq!(
            text,
            "orders-20250101-030000 [0123456789] at 2025-01-02T10:00:00Z"
        );
        assert_eq!(restored_key(&text), Some("0123456789"));
        assert_eq!(restored_key("orders-20250101-030000"), None);
        assert_eq!(restored_key("x [zz] at now"), None);
    }

    #[test]
    fn a_backup_must_exist_succeed_and_know_its_destination() {
        assert_eq!(
            from_backup("gone", None).map_err(|p| p.reason),
            Err("BackupNotFound")
        );
        let destination = BackupDestination::s3(S3Destination {
            prefix: Some("prod".into()),
            ..S3Destination::new("bucket")
        });
        let mut backup = MySQLBackup::for_instance("orders-1", "shop", "orders", None);
        backup.status = Some(MySQLBackupStatus {
            phase: Some(BackupPhase::Running),
            destination: Some(destination.clone()),
            ..MySQLBackupStatus::default()
        });
        let problem = from_backup("orders-1", Some(&backup)).expect_err("running");
        assert_eq!(problem.reason, "BackupNotSucceeded");
        assert!(problem.message.contains("Running"), "{}", problem.message);

        let status = backup.status.as_mut().expect("status");
        status.phase = Some(BackupPhase::Succeeded);
        status.location = Some("s3://bucket/prod/orders-1-folder".into());
        assert_eq!(
            from_backup("orders-1", Some(&backup)),
            Ok((destination.clone(), "orders-1-folder".to_owned()))
        );
        // A location elsewhere falls back to the object's name.
        backup.status.as_mut().expect("status").location = Some("s3://other/x".into());
        assert_eq!(
            from_backup("orders-1", Some(&backup)),
            Ok((destination, "orders-1".to_owned()))
        );
        backup.status.as_mut().expect("status").destination = None;
        assert_eq!(
            from_backup("orders-1", Some(&backup)).map_err(|p| p.reason),
            Err("BackupNotUsable")
        );
    }

    #[test]
    fn folders_under_a_pvc_destination() {
        let destination = BackupDestination::pvc(PvcDestination {
            claim_name: "backups".into(),
            path: "orders".into(),
        });
        assert_eq!(
            folder_in(&destination, "file:///backups/orders/b1/"),
            Some("b1".into())
        );
        assert_eq!(folder_in(&destination, "file:///backups/orders"), None);
        assert_eq!(folder_in(&destination, "file:///backups/orders/a/b"), None);
    }
}

//! `MySQLBackup`: one object per backup artifact.
//!
//! An on-demand backup is created by a user (or by the operator for
//! `backupOnDelete`) and owns its Job; a scheduled run's Job belongs to the
//! CronJob and the agent creates the object for it. Backups are owned by
//! nothing: they outlive both the Job and the instance. Deleting the object
//! never deletes the artifact; only retention does.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use kube::CustomResource;
use kube::api::ObjectMeta;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::INSTANCE_LABEL;
use crate::destination::BackupDestination;

/// Desired state of a MySQLBackup: which instance to back up and, optionally,
/// where to, and whether retention must keep it. What and where are
/// immutable: a backup is a fact, so a different one is a new object; `keep`
/// may change at any time.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "mysql.keeper.dev",
    version = "v1alpha1",
    kind = "MySQLBackup",
    plural = "mysqlbackups",
    singular = "mysqlbackup",
    shortname = "myb",
    category = "keeper",
    namespaced,
    status = "MySQLBackupStatus",
    derive = "PartialEq",
    selectable = ".spec.instanceRef.name",
    doc = "One backup of a MySQLInstance: a gzipped SQL dump plus its manifest, stored in S3 or on a volume.",
    // Raw JSON columns: the structured form repeats `type_ = ...`, which
    // clippy::duplicated_attributes rejects.
    printcolumn = r#"{"name": "Instance", "type": "string", "jsonPath": ".spec.instanceRef.name"}"#,
    printcolumn = r#"{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}"#,
    printcolumn = r#"{"name": "Progress", "type": "string", "jsonPath": ".status.progress.summary", "description": "While running: tables, rows and bytes done"}"#,
    printcolumn = r#"{"name": "Size", "type": "string", "jsonPath": ".status.size", "description": "Compressed size for people, e.g. 1.4 GiB"}"#,
    printcolumn = r#"{"name": "Verified", "type": "string", "jsonPath": ".status.verification.phase", "description": "Proven restorable (verify --restore): Verified or Failed"}"#,
    // The exact figure stays one `-o wide` away.
    printcolumn = r#"{"name": "Bytes", "type": "integer", "jsonPath": ".status.compressedBytes", "description": "Compressed size in bytes", "priority": 1}"#,
    printcolumn = r#"{"name": "Completed", "type": "date", "jsonPath": ".status.completionTime"}"#,
    printcolumn = r#"{"name": "Keep", "type": "boolean", "jsonPath": ".spec.keep", "description": "Pinned: retention never deletes it"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.instanceRef == oldSelf.instanceRef && has(self.destination) == has(oldSelf.destination) && (!has(self.destination) || self.destination == oldSelf.destination)",
        "message": "MySQLBackup spec.instanceRef and spec.destination are immutable (only spec.keep may change); create a new MySQLBackup instead",
    }
]))]
pub struct MySQLBackupSpec {
    /// The instance to back up. An object (rather than a bare name) so that it
    /// reads like other Kubernetes references and can grow without breaking.
    pub instance_ref: InstanceRef,

    /// Where to write this backup, overriding the instance's
    /// `spec.backup.destination`. Required when the instance has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<BackupDestination>,

    /// Pin this backup: retention (`keepLast`, `maxAge`) never deletes it or
    /// its artifact. The pin is also written beside the artifact
    /// (`keep.json`), so a `keeper-agent prune` run by hand honours it; the
    /// agent writes it when the backup is taken and at each retention run.
    /// Setting it back to false lifts the pin at the next retention run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep: bool,
}

/// A `MySQLInstance` in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRef {
    /// Name of the `MySQLInstance`.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
}

/// What the agent reported about the backup. Written by the agent (and, for a
/// Job that died without reporting, by the operator: phase and message only).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MySQLBackupStatus {
    /// State of the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<BackupPhase>,

    /// The Job that runs (or ran) the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,

    /// When the dump started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::date_time")]
    pub start_time: Option<DateTime<Utc>>,

    /// When the backup finished (successfully or not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::date_time")]
    pub completion_time: Option<DateTime<Utc>>,

    /// The destination actually used, secret references included, so that a
    /// restore by name still works after the instance changed or was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<BackupDestination>,

    /// URL of the backup's folder, e.g. `s3://bucket/prefix/orders-20250101-030000`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,

    /// Size of `dump.sql.gz` in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compressed_bytes: Option<u64>,

    /// `compressedBytes` for people, e.g. `1.4 GiB` (binary units), written
    /// by the agent with the bytes: what `kubectl get myb` shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub size: Option<String>,

    /// How long the snapshot's global lock was held, in milliseconds (the
    /// manifest's `snapshot.lockHeldMs`); absent without a lock (no
    /// privilege for it: one connection, one snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_held_ms: Option<u64>,

    /// Size of the SQL before compression, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncompressed_bytes: Option<u64>,

    /// Number of tables dumped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<u64>,

    /// Number of rows dumped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,

    /// Hex sha256 of `dump.sql.gz`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,

    /// Version string of the server that was dumped, e.g. `8.4.3` or `11.4.4-MariaDB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,

    /// GTID set of the snapshot, when the server uses GTIDs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid_executed: Option<String>,

    /// Binary log position of the snapshot, when the binary log is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog_position: Option<BinlogPosition>,

    /// One line on what went wrong (or a note on what went right).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// How far the dump is, written by the agent while it runs (every few
    /// seconds) and once more at the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<BackupProgress>,

    /// The last proof that this backup restores (`keeper-agent verify
    /// --restore`), written by the verifying agent under its own field
    /// manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<BackupVerification>,
}

/// The outcome of restoring a backup into a throwaway server and comparing
/// what came back with its digests.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupVerification {
    /// Verified, or Failed (with `message`).
    pub phase: VerificationPhase,
    /// When the proof ended.
    #[schemars(schema_with = "crate::schema::date_time")]
    pub time: DateTime<Utc>,
    /// Tables compared.
    #[serde(default)]
    pub tables: u64,
    /// Rows compared.
    #[serde(default)]
    pub rows: u64,
    /// How long restoring and comparing took, in seconds.
    #[serde(default)]
    pub duration_seconds: u64,
    /// The first difference, or why the proof could not be made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The outcome of a proof.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum VerificationPhase {
    /// Restored, and every table's rows and every definition matched.
    Verified,
    /// Something differed, or the backup could not be restored.
    Failed,
}

/// How far a running backup is.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupProgress {
    /// Tables whose data is completely written.
    pub tables_done: u64,
    /// Tables in the backup.
    pub tables_total: u64,
    /// Rows written so far.
    pub rows_done: u64,
    /// SQL written so far, before compression, in bytes.
    pub bytes_done: u64,
    /// The same for people, e.g. `3/14 tables, 120,000 rows, 48.2 MiB`: what
    /// `kubectl get myb` shows.
    #[schemars(length(max = 128))]
    pub summary: String,
}

impl BackupProgress {
    /// The progress with its summary.
    pub fn new(tables_done: u64, tables_total: u64, rows_done: u64, bytes_done: u64) -> Self {
        Self {
            summary: format!(
                "{tables_done}/{tables_total} tables, {} rows, {}",
                thousands(rows_done),
                human_size(bytes_done)
            ),
            tables_done,
            tables_total,
            rows_done,
            bytes_done,
        }
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A binary log coordinate.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BinlogPosition {
    /// Binary log file name, e.g. `binlog.000042`.
    pub file: String,
    /// Byte offset in that file.
    pub position: u64,
}

/// State of a backup.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum BackupPhase {
    /// Created; the Job has not started dumping yet.
    Pending,
    /// Dumping and uploading.
    Running,
    /// The artifact is complete and its manifest written.
    Succeeded,
    /// The backup stopped; see `message`. Any partial upload was aborted.
    Failed,
}

impl BackupPhase {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupPhase::Pending => "Pending",
            BackupPhase::Running => "Running",
            BackupPhase::Succeeded => "Succeeded",
            BackupPhase::Failed => "Failed",
        }
    }

    /// Whether the backup has ended and will not change again.
    pub fn is_final(self) -> bool {
        matches!(self, BackupPhase::Succeeded | BackupPhase::Failed)
    }
}

impl fmt::Display for BackupPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl MySQLBackup {
    /// A new backup object of `instance` in `namespace`, labelled with
    /// [`INSTANCE_LABEL`] so backups can be listed per instance.
    pub fn for_instance(
        name: impl Into<String>,
        namespace: impl Into<String>,
        instance: impl Into<String>,
        destination: Option<BackupDestination>,
    ) -> Self {
        let instance = instance.into();
        let mut backup = MySQLBackup::new(
            &name.into(),
            MySQLBackupSpec {
                instance_ref: InstanceRef {
                    name: instance.clone(),
                },
                destination,
                keep: false,
            },
        );
        backup.metadata = ObjectMeta {
            namespace: Some(namespace.into()),
            labels: Some(BTreeMap::from([(INSTANCE_LABEL.to_owned(), instance)])),
            ..backup.metadata
        };
        backup
    }

    /// The phase, `None` until the agent or operator reported one.
    pub fn phase(&self) -> Option<BackupPhase> {
        self.status.as_ref().and_then(|s| s.phase)
    }

    /// Where its artifact is: the destination the backup recorded
    /// (`status.destination`) and its folder under it — the rest of
    /// `status.location` after the destination's base URL when that is one
    /// segment, else the object's name. `None` without a recorded
    /// destination (where it was written is unknown). Restores by name and
    /// verification Jobs read the backup here, whichever layout wrote it.
    pub fn recorded_folder(&self) -> Option<(BackupDestination, String)> {
        let status = self.status.as_ref()?;
        let destination = status.destination.clone()?;
        let folder = status
            .location
            .as_deref()
            .and_then(|location| folder_in(&destination, location))
            .or_else(|| self.metadata.name.clone())?;
        Some((destination, folder))
    }
}

/// The backup folder `location` names under `destination`: the rest of the
/// URL after the destination's base URL, when it is a single segment.
pub fn folder_in(destination: &BackupDestination, location: &str) -> Option<String> {
    let base = destination.base_url()?;
    let rest = location
        .trim_end_matches('/')
        .strip_prefix(base.trim_end_matches('/'))?
        .strip_prefix('/')?;
    (!rest.is_empty() && !rest.contains('/')).then(|| rest.to_owned())
}

/// A byte count for people, in binary units with one decimal below 100
/// (`999 B`, `1.5 KiB`, `12.3 MiB`, `512 GiB`): what `kubectl get myb` shows
/// as the size (`status.size`). At most 9 characters.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    // f64 is exact enough for one decimal of any u64.
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    // Round before choosing the unit, so 1023.96 KiB reads `1.0 MiB`, not
    // `1024.0 KiB`.
    while unit + 1 < UNITS.len() && (value * 10.0).round() / 10.0 >= 1024.0 {
        value /= 1024.0;
        unit += 1;
    }
    if (value * 10.0).round() / 10.0 < 100.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::{BackupProgress, human_size};

    #[test]
    fn progress_reads_for_people() {
        assert_eq!(
            BackupProgress::new(3, 14, 1_234_567, 50_593_792).summary,
            "3/14 tables, 1,234,567 rows, 48.2 MiB"
        );
        assert_eq!(
            BackupProgress::new(0, 1, 0, 0).summary,
            "0/1 tables, 0 rows, 0 B"
        );
        assert_eq!(
            BackupProgress::new(0, 1, 999, 0).summary,
            "0/1 tables, 999 rows, 0 B"
        );
        // Within the schema's bound at the extremes.
        assert!(
            BackupProgress::new(u64::MAX, u64::MAX, u64::MAX, u64::MAX)
                .summary
                .len()
                <= 128
        );
    }

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.0 KiB");
        assert_eq!(human_size(1536), "1.5 KiB");
        // Rounded up into the next unit rather than `1024.0 KiB`.
        assert_eq!(human_size(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(human_size(12_900_000), "12.3 MiB");
        assert_eq!(human_size(150 * 1024 * 1024 * 1024), "150 GiB");
        assert_eq!(human_size(u64::MAX), "16.0 EiB");
        for bytes in [0, 1023, 1024, 99_999, u64::MAX / 3, u64::MAX] {
            assert!(human_size(bytes).len() <= 9, "{bytes}");
        }
    }
}

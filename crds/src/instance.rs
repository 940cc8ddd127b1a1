//! `MySQLInstance`: one MySQL or MariaDB server, its storage, its backups and
//! (optionally) the backup it starts from.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::destination::BackupDestination;

/// Default MySQL version: the current LTS line.
pub const DEFAULT_MYSQL_VERSION: &str = "8.4";
/// Default MariaDB version: the current LTS line.
pub const DEFAULT_MARIADB_VERSION: &str = "11.4";
/// Default Secret key of the root password.
pub const DEFAULT_ROOT_PASSWORD_KEY: &str = "root-password";
/// Key of the application user's name in the generated credentials Secret.
pub const USERNAME_KEY: &str = "username";
/// Key of the application user's password in the generated credentials Secret.
pub const PASSWORD_KEY: &str = "password";
/// Default size of the data volume: big enough to try things, small enough
/// not to surprise anyone's cloud bill.
pub const DEFAULT_STORAGE_SIZE: &str = "10Gi";
/// Default level of dumps, for gzip and zstd alike. Measured on 4 MiB
/// members (docs/benchmarks.md, "Choosing the codecs and the default
/// level"): gzip (libdeflate) level 1 writes sysbench SQL within 1.01x of
/// `gzip -6` and sakila within 1.08x at well under half the CPU of level 2
/// and above (whose greedy and lazy matchfinders are slower on such data
/// than zlib-rs's level 3, the default before); zstd level 1 writes 0.93x
/// of `gzip -6` on sysbench (its level 3 writes 1.03x) and 1.03x on sakila,
/// at 4x libdeflate's speed. The agent's `--compression-level` default is
/// this value.
pub const DEFAULT_COMPRESSION_LEVEL: u32 = 1;
/// The highest gzip level: gzip's own scale.
pub const MAX_GZIP_LEVEL: u32 = 9;
/// The highest zstd level taken: 20 to 22 ("ultra") need windows of up to
/// 128 MiB, far beyond a member, and gain nothing on 4 MiB members.
pub const MAX_ZSTD_LEVEL: u32 = 19;
/// Port MySQL and MariaDB listen on.
pub const MYSQL_PORT: u16 = 3306;

/// Desired state of a MySQLInstance: the server (flavor, version, storage,
/// settings), its backups and an optional backup to start from.
///
/// The operator runs it as a StatefulSet, creates its credentials once, schedules
/// backups with a CronJob and restores `spec.restoreFrom` into it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "mysql.keeper.dev",
    version = "v1alpha1",
    kind = "MySQLInstance",
    plural = "mysqlinstances",
    singular = "mysqlinstance",
    shortname = "myi",
    category = "keeper",
    namespaced,
    status = "MySQLInstanceStatus",
    derive = "PartialEq",
    doc = "A MySQL or MariaDB server managed by MySQL Keeper, with scheduled backups and declarative restore.",
    // Raw JSON columns: the structured form repeats `type_ = ...`, which
    // clippy::duplicated_attributes rejects.
    printcolumn = r#"{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}"#,
    printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name": "Flavor", "type": "string", "jsonPath": ".spec.flavor"}"#,
    // spec.version as written: blank means the flavor's default (8.4 for
    // mysql, 11.4 for mariadb), which a schema default cannot express.
    printcolumn = r#"{"name": "Version", "type": "string", "jsonPath": ".status.version", "description": "Server version: spec.version, else the flavor's default"}"#,
    printcolumn = r#"{"name": "Last Backup", "type": "date", "jsonPath": ".status.lastBackup.time"}"#,
    printcolumn = r#"{"name": "Next Backup", "type": "date", "jsonPath": ".status.nextBackupTime", "description": "When the next scheduled backup is due"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.flavor == oldSelf.flavor",
        "message": "flavor is immutable: MySQL and MariaDB cannot read each other's data directory",
    },
    {
        "rule": "!self.backupOnDelete || has(self.backup)",
        "message": "backupOnDelete needs spec.backup (its destination is where the final backup goes)",
    },
]))]
pub struct MySQLInstanceSpec {
    /// Server flavor: `mysql` or `mariadb`. Picks the image, probes, environment
    /// variable names and SQL dialect. Immutable.
    #[serde(default)]
    pub flavor: Flavor,

    /// Server version, used as the image tag (`mysql:<version>` or
    /// `mariadb:<version>`). Defaults to 8.4 for mysql and 11.4 for mariadb.
    /// Ignored when `image` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    )]
    pub version: Option<String>,

    /// Full image reference, overriding flavor and version for the image (e.g. a
    /// mirror or a pinned digest). It must still be an image of `flavor`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,

    /// Database to create on first start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_$]+$"))]
    #[schemars(extend("x-kubernetes-validations" = [
        {
            "rule": "!(self.lowerAscii() in ['mysql', 'sys', 'information_schema', 'performance_schema'])",
            "message": "database must not be a system schema",
        }
    ]))]
    pub database: Option<String>,

    /// Application user to create, with all privileges on `database`. Its password
    /// is generated into the `<name>-credentials` Secret (keys `username`,
    /// `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32), regex(pattern = r"^[A-Za-z0-9_]+$"))]
    #[schemars(extend("x-kubernetes-validations" = [
        {
            "rule": "!(self.lowerAscii() in ['root', 'mysql.sys', 'mysql.session', 'mysql.infoschema', 'mariadb.sys'])",
            "message": "user must not be a built-in account",
        }
    ]))]
    pub user: Option<String>,

    /// Existing Secret with the root password. When unset, the operator creates
    /// `<name>-credentials` once, from a CSPRNG, and never changes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_password_secret_ref: Option<PasswordSecretRef>,

    /// The data volume.
    #[serde(default)]
    pub storage: StorageSpec,

    /// CPU and memory for the server container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Server settings written to the `[mysqld]` section of my.cnf (through a
    /// ConfigMap), e.g. `max_connections: "500"`. Keys are option names
    /// (letters, digits, `_`, `-`); values are single lines. Changing them
    /// restarts the pod.
    //
    // Keys and line breaks are checked in `validate()`, not CEL: a map's keys
    // cannot be length-bounded in a schema, so a per-key CEL rule's estimated
    // cost could exceed the API server's budget and the CRD would be refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = 256,
        "additionalProperties" = {"type": "string", "maxLength": 4096}
    ))]
    pub config: BTreeMap<String, String>,

    /// Scheduled backups and where backups go. Without it there are no scheduled
    /// backups, and an on-demand `MySQLBackup` must name its own destination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSpec>,

    /// Backup to restore into the instance. On a new instance the restore runs
    /// before it becomes Ready; on an existing one it needs `overwrite`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<RestoreSource>,

    /// Take a final backup (to `spec.backup.destination`) before the instance is
    /// deleted. Deletion waits for that backup.
    #[serde(default)]
    pub backup_on_delete: bool,
}

/// Which server runs.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// Oracle MySQL (image `mysql`).
    #[default]
    Mysql,
    /// MariaDB (image `mariadb`).
    Mariadb,
}

impl Flavor {
    /// The lower-case name used in the API and as the image repository.
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Mysql => "mysql",
            Flavor::Mariadb => "mariadb",
        }
    }

    /// The version used when `spec.version` is unset.
    pub fn default_version(self) -> &'static str {
        match self {
            Flavor::Mysql => DEFAULT_MYSQL_VERSION,
            Flavor::Mariadb => DEFAULT_MARIADB_VERSION,
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a backup's dump is compressed (`spec.backup.compression`, the agent's
/// `--compression`). Each member of the dump is compressed on its own, so
/// the file is restorable by the codec's own command line tool piped into
/// the `mysql` client.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// `dump.sql.gz`, gzip members (`gunzip -c dump.sql.gz | mysql`).
    #[default]
    Gzip,
    /// `dump.sql.zst`, one zstd frame per member (`zstd -dc dump.sql.zst | mysql`):
    /// faster than gzip at a smaller size.
    Zstd,
    /// `dump.sql`, plain SQL (`mysql < dump.sql`): the most storage, the least CPU.
    None,
}

impl Compression {
    /// Every codec, for help texts and tests.
    pub const ALL: [Compression; 3] = [Compression::Gzip, Compression::Zstd, Compression::None];

    /// The lower-case name used in the API, on the command line and in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::None => "none",
        }
    }

    /// The levels the codec takes (`compressionLevel`, `--compression-level`):
    /// gzip's own 1 (fastest) to 9 (smallest); zstd 1 to 19 (its levels 20-22
    /// need windows far larger than a member, and are excluded). `none` takes
    /// any level of the others and ignores it, so an instance can switch
    /// codecs without touching its level.
    pub fn levels(self) -> std::ops::RangeInclusive<u32> {
        match self {
            Compression::Gzip => 1..=MAX_GZIP_LEVEL,
            Compression::Zstd | Compression::None => 1..=MAX_ZSTD_LEVEL,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Compression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Compression::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown compression `{s}`: use gzip, zstd or none"))
    }
}

/// A key in a Secret holding a password.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordSecretRef {
    /// Name of the Secret, in the namespace of the instance.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,

    /// Key within the Secret.
    #[serde(default = "default_root_password_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

fn default_root_password_key() -> String {
    DEFAULT_ROOT_PASSWORD_KEY.to_owned()
}

/// The data volume of the server (one PersistentVolumeClaim per pod).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)",
        "message": "storageClassName is immutable: the data would have to move to a new volume",
    },
    {
        "rule": "quantity(self.size).compareTo(quantity(oldSelf.size)) >= 0",
        "message": "storage size cannot be reduced: a volume can only grow",
    },
]))]
pub struct StorageSpec {
    /// Size of the data volume, e.g. `20Gi`. Can grow (where the storage class
    /// allows expansion) but never shrink.
    #[serde(default = "default_storage_size")]
    #[schemars(schema_with = "crate::schema::storage_quantity")]
    pub size: String,

    /// StorageClass of the data volume; unset uses the cluster default. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
}

fn default_storage_size() -> String {
    DEFAULT_STORAGE_SIZE.to_owned()
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: default_storage_size(),
            storage_class_name: None,
        }
    }
}

/// Scheduled backups and the destination of every backup of the instance.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        // Both fields have defaults, which the API server applies first;
        // written so that it also holds for an object without them.
        "rule": "(has(self.compression) && self.compression != 'gzip') || !has(self.compressionLevel) || self.compressionLevel <= 9",
        "message": "gzip levels are 1 to 9 (zstd takes 1 to 19)",
    },
]))]
pub struct BackupSpec {
    /// When to back up: a 5-field cron expression with Kubernetes CronJob
    /// semantics (`minute hour day-of-month month day-of-week`, weekdays 0-6 from
    /// Sunday, 7 is also Sunday), or a macro such as `@daily`. Unset means no
    /// scheduled backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub schedule: Option<String>,

    /// IANA time zone of the schedule, e.g. `Europe/Berlin`. Unset means UTC
    /// (the CronJob controller's zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: Option<String>,

    /// Pause scheduled backups without forgetting the schedule.
    #[serde(default)]
    pub suspend: bool,

    /// Where backups are written.
    pub destination: BackupDestination,

    /// Which backups to keep. A backup is kept when any rule keeps it, and the
    /// newest successful backup is always kept. Unset keeps everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionSpec>,

    /// Databases to back up. Unset means all user databases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend(
        "minItems" = 1,
        "maxItems" = 1024,
        "x-kubernetes-list-type" = "set",
        "items" = {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9_$]+$"}
    ))]
    pub databases: Option<Vec<String>>,

    /// How the dump is compressed: `gzip` (`dump.sql.gz`, the default),
    /// `zstd` (`dump.sql.zst`: faster at a smaller size; restore by hand
    /// with `zstd -dc dump.sql.zst | mysql`) or `none` (`dump.sql`).
    #[serde(default)]
    pub compression: Compression,

    /// Compression level of the dump: for gzip 1 (fastest) to 9 (smallest),
    /// for zstd 1 to 19; ignored with `none`. The default, 1, is the fastest
    /// of both and still about as small as `gzip -6` on typical dumps.
    #[serde(default = "default_compression_level")]
    #[schemars(range(min = 1, max = 19))]
    pub compression_level: u32,

    /// Prove backups restorable: the newest successful backup is restored
    /// into a throwaway server (the instance's own image and version, in the
    /// verifying pod only, its data in an emptyDir) and compared with the
    /// digests the dump recorded. The result is the backup's
    /// `status.verification`, the instance's `status.lastVerifiedBackup` and
    /// its `BackupsVerified` condition. Unset: no automatic verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationSpec>,
}

/// When and with what the operator proves backups restorable.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationSpec {
    /// When to verify: a cron expression like `spec.backup.schedule` (in its
    /// `timeZone`); at each time the newest successful backup is verified
    /// unless it already was. Unset: right after every successful backup
    /// (the newest one; a backup superseded before its turn is skipped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub schedule: Option<String>,

    /// Compute resources of the throwaway server container. Unset: none
    /// requested, no limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Upper bound of the throwaway server's data directory (the emptyDir's
    /// `sizeLimit`, e.g. `20Gi`): the restored data lives there while the
    /// proof runs. Unset: bounded only by the node's ephemeral storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<Quantity>,
}

fn default_compression_level() -> u32 {
    DEFAULT_COMPRESSION_LEVEL
}

/// Which backups retention keeps: a backup is kept when any rule keeps it;
/// the newest good one and pinned ones (`MySQLBackup` `spec.keep`) always.
/// Retention only ever considers this instance's own backups (the owner
/// recorded in each manifest), never another instance's in the same bucket.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionSpec {
    /// Keep the newest N successful backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub keep_last: Option<u32>,

    /// Keep backups younger than this: a number and a unit, `m` (minutes), `h`
    /// (hours), `d` (days) or `w` (weeks), e.g. `30d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[1-9][0-9]{0,5}[mhdw]$"))]
    pub max_age: Option<String>,
}

/// The backup to restore: exactly one of `backupName` or `location`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.backupName) != has(self.location)",
        "message": "exactly one of backupName or location must be set",
    }
]))]
pub struct RestoreSource {
    /// A `MySQLBackup` in this namespace. Its recorded destination (with its
    /// secret references) is used, so it works even if the instance that took it
    /// is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub backup_name: Option<String>,

    /// A backup in storage, e.g. another cluster's bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<RestoreLocation>,

    /// Restore even if the target already has tables of the dumped databases
    /// (they are replaced). Without it such a restore fails and changes nothing.
    #[serde(default)]
    pub overwrite: bool,
}

/// A backup addressed by its storage location rather than by object.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreLocation {
    /// The storage holding backups, with its own credentials.
    pub destination: BackupDestination,

    /// Name of the backup's folder under the destination, e.g.
    /// `orders-20250101-030000`. The destination names the folder that holds
    /// it: for backups the operator wrote (layout
    /// `<destination>/<namespace>/<instance>/<backup>`), append the source
    /// instance's `<namespace>/<instance>` to the S3 prefix or volume path;
    /// for backups from before that layout (`<destination>/<backup>`), give
    /// the destination as it was.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    )]
    pub backup: String,
}

impl RestoreLocation {
    /// The agent's `--from` URL: the backup's folder.
    pub fn url(&self) -> Option<String> {
        self.destination.backup_url(&self.backup)
    }
}

/// Observed state, written by the operator (phase, conditions, endpoint,
/// nextBackupTime, restoredFrom, finalBackup) and the backup agent (lastBackup,
/// restore).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MySQLInstanceStatus {
    /// Lifecycle phase, a summary of the conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<InstancePhase>,

    /// The `metadata.generation` the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Current conditions: Ready, StorageReady, BackupScheduled, BackupsHealthy
    /// (False when the last success is older than twice the schedule's
    /// interval, or a scheduled run could not start), Restored, and
    /// StorageResized (once a larger spec.storage.size was asked for).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// Host and port of the client Service, e.g. `orders.shop.svc:3306`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// The server version the instance runs: `spec.version`, else the
    /// flavor's default (what `kubectl get myi` shows as Version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,

    /// Secret with the root password (and the application user's credentials
    /// when the operator generated them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,

    /// The newest successful backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<LastBackup>,

    /// The newest backup proven restorable (`spec.backup.verification`),
    /// derived by the operator from the instance's `MySQLBackup`s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified_backup: Option<LastVerifiedBackup>,

    /// When the next scheduled backup is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::date_time")]
    pub next_backup_time: Option<DateTime<Utc>>,

    /// Progress of the current or last restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreStatus>,

    /// The backup the data came from (a `MySQLBackup` name or a location URL),
    /// once a restore has succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<String>,

    /// The final backup taken because of `backupOnDelete`, once the instance
    /// is being deleted: which `MySQLBackup`, how it went, and whether the
    /// deletion went ahead without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_backup: Option<FinalBackupStatus>,
}

/// The backup-on-delete run (`status.finalBackup`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FinalBackupStatus {
    /// Name of the `MySQLBackup` of the final backup.
    pub name: String,

    /// Its phase as last seen by the operator (`Failed` also when it timed out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<crate::backup::BackupPhase>,

    /// When the operator created the final backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::date_time")]
    pub start_time: Option<DateTime<Utc>>,

    /// How it ended: succeeded, failed (with the backup's message) or timed
    /// out, and that the deletion then went ahead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Lifecycle phase of an instance.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum InstancePhase {
    /// Accepted, nothing created yet.
    Pending,
    /// The StatefulSet and its volume are being created or the server is starting.
    Provisioning,
    /// A restore from `spec.restoreFrom` is running.
    Restoring,
    /// The server accepts connections.
    Ready,
    /// Something needs attention; see the conditions.
    Failed,
    /// The instance is being deleted (and a final backup may be running).
    Deleting,
}

impl InstancePhase {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            InstancePhase::Pending => "Pending",
            InstancePhase::Provisioning => "Provisioning",
            InstancePhase::Restoring => "Restoring",
            InstancePhase::Ready => "Ready",
            InstancePhase::Failed => "Failed",
            InstancePhase::Deleting => "Deleting",
        }
    }
}

impl fmt::Display for InstancePhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The newest successful backup, as the agent reported it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastBackup {
    /// Name of the `MySQLBackup`.
    pub name: String,

    /// When the backup's snapshot was taken.
    #[schemars(schema_with = "crate::schema::date_time")]
    pub time: DateTime<Utc>,

    /// URL of the backup's folder, e.g. `s3://bucket/prefix/orders-20250101-030000`.
    pub location: String,

    /// Size of `dump.sql.gz` in bytes.
    pub compressed_bytes: u64,

    /// How long the backup took, in whole seconds.
    pub duration_seconds: u64,
}

/// The newest backup proven restorable.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastVerifiedBackup {
    /// Name of the `MySQLBackup`.
    pub name: String,

    /// When its proof ended.
    #[schemars(schema_with = "crate::schema::date_time")]
    pub time: DateTime<Utc>,

    /// Tables compared.
    pub tables: u64,

    /// Rows compared.
    pub rows: u64,
}

/// Progress of a restore, written by the agent as it goes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    /// State of the restore.
    pub phase: RestorePhase,

    /// What is being restored: a `MySQLBackup` name or a location URL.
    pub source: String,

    /// Name of the restore Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,

    /// When the restore started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::date_time")]
    pub start_time: Option<DateTime<Utc>>,

    /// When the restore finished (successfully or not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::date_time")]
    pub completion_time: Option<DateTime<Utc>>,

    /// Dump members replayed so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members_done: Option<u64>,

    /// Dump members in the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members_total: Option<u64>,

    /// Compressed bytes read so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_done: Option<u64>,

    /// Why the restore failed, in one line; on success, set only when the
    /// run changed nothing because the server's data had already received
    /// this restore (Keeper records applied restores in the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,

    /// What kind of failure ended a failed restore: `PreflightFailed` and
    /// `TargetNotEmpty` changed nothing; `RunFailed` may have left part of
    /// the backup in the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_code: Option<crate::agent::FailureCode>,
}

/// State of a restore.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum RestorePhase {
    /// Waiting for the server or the Job to start.
    Pending,
    /// Replaying the dump.
    Running,
    /// Every member was replayed and checked.
    Succeeded,
    /// The restore stopped; see `message`.
    Failed,
}

impl RestorePhase {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            RestorePhase::Pending => "Pending",
            RestorePhase::Running => "Running",
            RestorePhase::Succeeded => "Succeeded",
            RestorePhase::Failed => "Failed",
        }
    }

    /// Whether the restore has ended and will not change again.
    pub fn is_final(self) -> bool {
        matches!(self, RestorePhase::Succeeded | RestorePhase::Failed)
    }
}

impl fmt::Display for RestorePhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl MySQLInstanceSpec {
    /// The flavor (always set: it has a default).
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// `spec.version`, or the flavor's default (8.4 for MySQL, 11.4 for MariaDB).
    ///
    /// Defaulted in code rather than in the schema because the default depends on
    /// the flavor, which a structural schema default cannot express.
    pub fn version(&self) -> &str {
        self.version
            .as_deref()
            .unwrap_or_else(|| self.flavor.default_version())
    }

    /// The server image: `spec.image`, else `<flavor>:<version>`.
    pub fn image(&self) -> String {
        match &self.image {
            Some(image) => image.clone(),
            None => format!("{}:{}", self.flavor.as_str(), self.version()),
        }
    }
}

impl MySQLInstance {
    /// The object's name (empty only for an object that was never stored).
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    /// The Secret the operator creates when `spec.rootPasswordSecretRef` is
    /// unset: `<name>-credentials`. It is not owned by the instance, so a
    /// re-created instance finds its passwords again.
    pub fn credentials_secret_name(&self) -> String {
        format!("{}-credentials", self.name())
    }

    /// The Secret and key of the root password: `spec.rootPasswordSecretRef`, or
    /// (`<name>-credentials`, `root-password`).
    pub fn root_password_secret(&self) -> (String, String) {
        match &self.spec.root_password_secret_ref {
            Some(r) => (r.name.clone(), r.key.clone()),
            None => (
                self.credentials_secret_name(),
                DEFAULT_ROOT_PASSWORD_KEY.to_owned(),
            ),
        }
    }

    /// The Secret with the backup user's credentials: `<name>-backup`.
    pub fn backup_secret_name(&self) -> String {
        format!("{}-backup", self.name())
    }

    /// The agent's ServiceAccount (and Role, RoleBinding): `<name>-backup-agent`.
    pub fn agent_service_account_name(&self) -> String {
        format!("{}-backup-agent", self.name())
    }

    /// The backup destination of the instance, if it has one.
    pub fn backup_destination(&self) -> Option<&BackupDestination> {
        self.spec.backup.as_ref().map(|b| &b.destination)
    }
}

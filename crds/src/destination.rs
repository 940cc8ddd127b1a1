//! Where backups go: an S3-compatible bucket or a PersistentVolumeClaim.
//!
//! The same [`BackupDestination`] type is used by `spec.backup.destination`,
//! `spec.restoreFrom.location.destination`, `MySQLBackup.spec.destination` and
//! `MySQLBackup.status.destination`. Recording the whole destination (secret
//! references included) in a backup's status is what lets a restore by name work
//! after the instance changed its destination or was deleted.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Default region for S3 destinations. Most S3-compatible stores ignore it but
/// the SDK insists on one, and `us-east-1` is what they expect when unsure.
pub const DEFAULT_S3_REGION: &str = "us-east-1";
/// Secret key (and env var name) holding the S3 access key id.
pub const AWS_ACCESS_KEY_ID_KEY: &str = "AWS_ACCESS_KEY_ID";
/// Secret key (and env var name) holding the S3 secret access key.
pub const AWS_SECRET_ACCESS_KEY_KEY: &str = "AWS_SECRET_ACCESS_KEY";
/// Default Secret key for a CA bundle, the name cert-manager and most tools use.
pub const DEFAULT_CA_BUNDLE_KEY: &str = "ca.crt";
/// Where a backup Job mounts a PVC destination; the agent writes
/// `file:///backups/<path>`.
pub const PVC_MOUNT_PATH: &str = "/backups";

/// Exactly one of `s3` or `pvc`.
///
/// A struct with two optional members and a CEL rule rather than a Rust enum:
/// an externally tagged enum would generate a `oneOf` schema, which a
/// structural CRD schema may only use for validation, not for properties.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "has(self.s3) != has(self.pvc)",
        "message": "exactly one of s3 or pvc must be set",
    }
]))]
pub struct BackupDestination {
    /// An S3-compatible bucket (AWS S3, MinIO, Garage, Ceph RGW, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Destination>,

    /// A PersistentVolumeClaim in the instance's namespace. The backup Job mounts
    /// it at /backups; keep it on storage that outlives the instance's volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<PvcDestination>,
}

impl BackupDestination {
    /// A destination in an S3 bucket.
    pub fn s3(s3: S3Destination) -> Self {
        Self {
            s3: Some(s3),
            pvc: None,
        }
    }

    /// A destination on a PersistentVolumeClaim.
    pub fn pvc(pvc: PvcDestination) -> Self {
        Self {
            s3: None,
            pvc: Some(pvc),
        }
    }

    /// The agent's `--to`/`--from` URL for the location that holds backups
    /// (`s3://bucket/prefix` or `file:///backups/path`), without a backup name.
    ///
    /// Returns `None` when neither or both members are set (the API server
    /// rejects such objects; code never guesses which one was meant).
    pub fn base_url(&self) -> Option<String> {
        match (&self.s3, &self.pvc) {
            (Some(s3), None) => Some(s3.url()),
            (None, Some(pvc)) => Some(pvc.url()),
            _ => None,
        }
    }

    /// The URL of the folder of one backup: `<base_url>/<backup_name>`.
    pub fn backup_url(&self, backup_name: &str) -> Option<String> {
        self.base_url().map(|base| join_url(&base, backup_name))
    }

    /// Where the operator puts one instance's backups under this destination:
    /// `<destination>/<namespace>/<instance>/` (the S3 prefix or the volume
    /// path extended), so instances sharing a bucket never share a folder,
    /// and the binary log archive of point-in-time recovery can live beside
    /// the backups. The result is what a backup's `status.destination`
    /// records, so a restore by name finds the backup under it.
    pub fn for_instance(&self, namespace: &str, instance: &str) -> BackupDestination {
        let scoped = |base: &str| {
            let base = base.trim_matches('/');
            if base.is_empty() {
                format!("{namespace}/{instance}")
            } else {
                format!("{base}/{namespace}/{instance}")
            }
        };
        BackupDestination {
            s3: self.s3.as_ref().map(|s3| S3Destination {
                prefix: Some(scoped(s3.prefix.as_deref().unwrap_or(""))),
                ..s3.clone()
            }),
            pvc: self.pvc.as_ref().map(|pvc| PvcDestination {
                path: scoped(&pvc.path),
                ..pvc.clone()
            }),
        }
    }
}

/// An S3-compatible bucket. Credentials come from a Secret with the keys
/// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, so the backup Job can load
/// it with `envFrom` and the AWS SDK finds them without any flags.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Destination {
    /// Bucket name (3 to 63 lower-case letters, digits, dots and hyphens).
    #[schemars(
        length(min = 3, max = 63),
        regex(pattern = r"^[a-z0-9][a-z0-9.-]*[a-z0-9]$")
    )]
    pub bucket: String,

    /// Key prefix under which backups are stored, e.g. `prod`. The operator
    /// writes an instance's backups below `<prefix>/<namespace>/<instance>/`,
    /// each a folder `<backup name>/` holding `dump.sql.gz` and
    /// `manifest.json`, so instances may share a bucket and a prefix. Empty
    /// means the bucket root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[schemars(extend("x-kubernetes-validations" = [
        {
            "rule": "!self.startsWith('/') && !self.matches('(^|/)[.][.](/|$)')",
            "message": "prefix must be relative (no leading '/') and must not contain '..'",
        }
    ]))]
    pub prefix: Option<String>,

    /// Endpoint URL for S3-compatible stores other than AWS, e.g.
    /// `https://minio.storage.svc:9000`. Unset means AWS S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://[^\s/]+(/.*)?$"), length(max = 2048))]
    pub endpoint: Option<String>,

    /// Region of the bucket. S3-compatible stores usually accept any value.
    #[serde(default = "default_region")]
    #[schemars(length(min = 1, max = 64))]
    pub region: String,

    /// Use path-style URLs (`https://endpoint/bucket/key`) instead of
    /// virtual-hosted style (`https://bucket.endpoint/key`). Most self-hosted
    /// stores (MinIO, Garage) need this.
    #[serde(default)]
    pub force_path_style: bool,

    /// Secret with the keys `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`. Leave
    /// unset only when the pod gets credentials another way (e.g. IRSA or a
    /// node role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,

    /// Secret with a PEM CA bundle for an endpoint whose certificate is not
    /// signed by a public CA (key `ca.crt` unless set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_secret_ref: Option<CaBundleSecretRef>,
}

fn default_region() -> String {
    DEFAULT_S3_REGION.to_owned()
}

impl S3Destination {
    /// A bucket with every optional setting at its default.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: None,
            endpoint: None,
            region: default_region(),
            force_path_style: false,
            credentials_secret_ref: None,
            ca_bundle_secret_ref: None,
        }
    }

    /// `s3://bucket` or `s3://bucket/prefix` (no trailing slash).
    pub fn url(&self) -> String {
        let prefix = self.prefix.as_deref().unwrap_or("").trim_matches('/');
        if prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, prefix)
        }
    }
}

/// A PersistentVolumeClaim to write backups to.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcDestination {
    /// Name of the PersistentVolumeClaim, in the namespace of the instance.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub claim_name: String,

    /// Directory inside the volume, relative to its root; empty means the
    /// root. The operator writes an instance's backups below
    /// `<path>/<namespace>/<instance>/`.
    #[serde(default)]
    #[schemars(length(max = 512))]
    #[schemars(extend("x-kubernetes-validations" = [
        {
            "rule": "!self.startsWith('/') && !self.matches('(^|/)[.][.](/|$)')",
            "message": "path must be relative (no leading '/') and must not contain '..'",
        }
    ]))]
    pub path: String,
}

impl PvcDestination {
    /// `file:///backups` or `file:///backups/<path>` (no trailing slash).
    pub fn url(&self) -> String {
        let path = self.path.trim_matches('/');
        if path.is_empty() {
            format!("file://{PVC_MOUNT_PATH}")
        } else {
            format!("file://{PVC_MOUNT_PATH}/{path}")
        }
    }
}

/// A reference to a whole Secret in the same namespace; the keys are fixed by
/// the field that uses it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret, in the namespace of the object that refers to it.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
}

/// A key in a Secret holding a PEM CA bundle.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaBundleSecretRef {
    /// Name of the Secret, in the namespace of the object that refers to it.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,

    /// Key within the Secret.
    #[serde(default = "default_ca_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

fn default_ca_key() -> String {
    DEFAULT_CA_BUNDLE_KEY.to_owned()
}

/// Appends one path segment to a URL without doubling or dropping the slash.
pub(crate) fn join_url(base: &str, segment: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        segment.trim_matches('/')
    )
}

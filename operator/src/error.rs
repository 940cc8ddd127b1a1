//! The operator's errors. Each one has a CamelCase [`Error::reason`] that becomes
//! the reason of the Warning Event (and, for an invalid spec, of the `Ready`
//! condition), so a user can search for it with `kubectl get events`.

use thiserror::Error;

/// Everything a reconcile can fail with.
///
/// Messages name the object and what to do; they never contain a secret value
/// (passwords are only ever generated into a Secret, never formatted).
#[derive(Debug, Error)]
pub enum Error {
    /// The spec cannot be acted on (bad cron, bad time zone, image that does
    /// not parse, missing referenced Secret, ...). Nothing was created or
    /// changed; the reconcile is retried with backoff.
    #[error("{message}")]
    InvalidSpec {
        /// Reason of the first problem, e.g. `InvalidSchedule`.
        reason: &'static str,
        /// Every problem, `; `-separated.
        message: String,
    },

    /// The operator-generated credentials Secret is gone while the data volume
    /// still exists: generating new passwords would lock everyone out of the
    /// existing data, so the operator refuses to.
    #[error(
        "Secret {name} is missing but the data volume {claim} exists; restore the Secret (keys root-password, and username/password with spec.user) or delete the volume to start empty"
    )]
    CredentialsMissing {
        /// The credentials Secret.
        name: String,
        /// The data volume's claim.
        claim: String,
    },

    /// Creating or completing the credentials Secret failed.
    #[error("creating Secret {name}: {source}")]
    CredentialsFailed {
        /// The credentials Secret.
        name: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },

    /// Server-side apply of a child object failed.
    #[error("applying {kind} {name}: {source}")]
    ApplyFailed {
        /// Kind of the child, e.g. `StatefulSet`.
        kind: &'static str,
        /// Name of the child.
        name: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },

    /// Writing `status` failed.
    #[error("updating the status of MySQLInstance {name}: {source}")]
    StatusFailed {
        /// The instance.
        name: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },

    /// Reading from the API failed.
    #[error("reading {what}: {source}")]
    Kube {
        /// What was being read, e.g. `StatefulSet orders`.
        what: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },

    /// An object could not be converted to JSON (a bug in a builder).
    #[error("serializing {kind}: {source}")]
    Serialize {
        /// Kind of the object.
        kind: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },

    /// Creating an object failed.
    #[error("creating {kind} {name}: {source}")]
    CreateFailed {
        /// Kind of the object.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },

    /// Deleting an object failed.
    #[error("deleting {kind} {name}: {source}")]
    DeleteFailed {
        /// Kind of the object.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },

    /// Writing the operator's fields of a `MySQLBackup` status failed.
    #[error("updating the status of MySQLBackup {name}: {source}")]
    BackupStatusFailed {
        /// The backup.
        name: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },

    /// Adding or removing the instance's finalizer failed.
    #[error("updating the finalizers of MySQLInstance {name}: {source}")]
    FinalizerFailed {
        /// The instance.
        name: String,
        /// The API error.
        #[source]
        source: Box<kube::Error>,
    },

    /// The object lacks a field every stored object has (name, namespace).
    #[error("MySQLInstance has no {0}")]
    MissingObjectKey(&'static str),
}

impl Error {
    /// A CamelCase reason for the Warning Event and the metrics label.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidSpec { reason, .. } => reason,
            Error::CredentialsMissing { .. } => "CredentialsMissing",
            Error::CredentialsFailed { .. } => "CredentialsFailed",
            Error::ApplyFailed { .. } => "ApplyFailed",
            Error::StatusFailed { .. } => "StatusUpdateFailed",
            Error::Kube { .. } => "KubeError",
            Error::Serialize { .. } => "SerializationFailed",
            Error::CreateFailed { .. } => "CreateFailed",
            Error::DeleteFailed { .. } => "DeleteFailed",
            Error::BackupStatusFailed { .. } => "StatusUpdateFailed",
            Error::FinalizerFailed { .. } => "FinalizerFailed",
            Error::MissingObjectKey(_) => "InvalidObject",
        }
    }

    /// Whether the user must change something (spec or Secret) before a retry
    /// can succeed, as opposed to a transient API failure.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Error::InvalidSpec { .. } | Error::CredentialsMissing { .. }
        )
    }
}

/// Shorthand for results of the operator.
pub type Result<T, E = Error> = std::result::Result<T, E>;

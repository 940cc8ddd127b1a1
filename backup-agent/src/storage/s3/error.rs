//! S3 failures as one-line messages that name the bucket and the endpoint,
//! say what to do, and never carry a secret.

use std::sync::Arc;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::message::one_line;

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The settings (region, endpoint, CA bundle) cannot make a client.
    #[error("S3 settings for bucket {bucket} at {endpoint} are not usable: {detail}")]
    Config {
        bucket: String,
        endpoint: String,
        detail: String,
    },
    /// The bucket is not there.
    #[error(
        "bucket {bucket} does not exist at {endpoint}: create it, or fix the bucket in the URL or AWS_ENDPOINT_URL"
    )]
    NoSuchBucket { bucket: String, endpoint: String },
    /// The store rejected the key or its signature.
    #[error(
        "{endpoint} rejected the S3 credentials for bucket {bucket} ({detail}): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the credentials file and AWS_PROFILE)"
    )]
    BadCredentials {
        bucket: String,
        endpoint: String,
        detail: String,
    },
    /// The key may not do this operation on the bucket.
    #[error(
        "access denied: {operation} on s3://{bucket}/{key} at {endpoint} ({detail}): allow this key to read, write, list and delete in the bucket"
    )]
    AccessDenied {
        operation: &'static str,
        bucket: String,
        key: String,
        endpoint: String,
        detail: String,
    },
    /// No connection: DNS, network or TLS.
    #[error(
        "cannot reach the S3 endpoint {endpoint} for bucket {bucket} ({detail}): check AWS_ENDPOINT_URL, the network, and TLS (--s3-ca-bundle)"
    )]
    Unreachable {
        bucket: String,
        endpoint: String,
        detail: String,
    },
    /// Any other failed request.
    #[error("S3 {operation} of s3://{bucket}/{key} at {endpoint} failed: {detail}")]
    Request {
        operation: &'static str,
        bucket: String,
        key: String,
        endpoint: String,
        detail: String,
    },
    /// The object would need more than 10,000 parts.
    #[error(
        "upload of s3://{bucket}/{key} at {endpoint} needs more than 10,000 parts after {sent} bytes: the object is larger than S3 allows"
    )]
    TooManyParts {
        bucket: String,
        key: String,
        endpoint: String,
        sent: u64,
    },
    /// The stored object is not the size that was sent.
    #[error(
        "upload of s3://{bucket}/{key} at {endpoint} is incomplete: the store holds {found} bytes but {sent} were sent; run the backup again"
    )]
    SizeMismatch {
        bucket: String,
        key: String,
        endpoint: String,
        sent: u64,
        found: u64,
    },
}

/// What every message needs: the bucket, the endpoint, and the secrets to scrub.
#[derive(Clone)]
pub(crate) struct ErrorContext(Arc<Inner>);

struct Inner {
    bucket: String,
    endpoint: String,
    secrets: Vec<String>,
}

impl std::fmt::Debug for ErrorContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErrorContext")
            .field("bucket", &self.0.bucket)
            .field("endpoint", &self.0.endpoint)
            .finish_non_exhaustive()
    }
}

/// Codes with which S3 and compatible stores reject the key itself.
const CREDENTIAL_CODES: &[&str] = &[
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "InvalidClientTokenId",
    "AuthorizationHeaderMalformed",
];

/// True when the store rejected the key itself rather than a permission:
/// AWS says so with a code; some compatible stores (Garage) answer
/// `AccessDenied` and say it in the message.
fn rejects_credentials(code: Option<&str>, message: Option<&str>) -> bool {
    if code.is_some_and(|c| CREDENTIAL_CODES.contains(&c)) {
        return true;
    }
    let message = message.unwrap_or_default().to_ascii_lowercase();
    code == Some("AccessDenied")
        && ["signature", "no such key", "access key", "unknown key"]
            .iter()
            .any(|hint| message.contains(hint))
}

impl ErrorContext {
    pub(crate) fn new(bucket: &str, endpoint: String, secrets: Vec<String>) -> Self {
        ErrorContext(Arc::new(Inner {
            bucket: bucket.to_owned(),
            endpoint,
            secrets,
        }))
    }

    pub(crate) fn bucket(&self) -> &str {
        &self.0.bucket
    }

    pub(crate) fn endpoint(&self) -> &str {
        &self.0.endpoint
    }

    /// One line, with any secret replaced, whatever a server or library put in it.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = one_line(text);
        for secret in &self.0.secrets {
            out = out.replace(secret.as_str(), "<redacted>");
        }
        out
    }

    pub(crate) fn request(&self, operation: &'static str, key: &str, detail: &str) -> S3Error {
        S3Error::Request {
            operation,
            bucket: self.bucket().to_owned(),
            key: key.to_owned(),
            endpoint: self.endpoint().to_owned(),
            detail: self.scrub(detail),
        }
    }

    /// Sorts a failed call into what the user has to fix.
    pub(crate) fn classify<E>(
        &self,
        operation: &'static str,
        key: &str,
        error: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> S3Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let bucket = self.bucket().to_owned();
        let endpoint = self.endpoint().to_owned();
        if matches!(
            error,
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)
        ) {
            return S3Error::Unreachable {
                bucket,
                endpoint,
                detail: self.scrub(&DisplayErrorContext(error).to_string()),
            };
        }
        let status = error.raw_response().map(|r| r.status().as_u16());
        let code = error.code().map(str::to_owned);
        let message = error.message().map(str::to_owned);
        if code.as_deref() == Some("NoSuchBucket")
            || (operation == "HeadBucket" && status == Some(404))
        {
            return S3Error::NoSuchBucket { bucket, endpoint };
        }
        let detail = match (status, &code, &message) {
            (Some(s), Some(c), Some(m)) => format!("HTTP {s} {c}: {m}"),
            (Some(s), Some(c), None) => format!("HTTP {s} {c}"),
            (Some(s), None, _) => format!("HTTP {s}"),
            _ => DisplayErrorContext(error).to_string(),
        };
        if rejects_credentials(code.as_deref(), message.as_deref()) {
            return S3Error::BadCredentials {
                bucket,
                endpoint,
                detail: self.scrub(&detail),
            };
        }
        if code.as_deref() == Some("AccessDenied") || status == Some(403) {
            return S3Error::AccessDenied {
                operation,
                bucket,
                key: key.to_owned(),
                endpoint,
                detail: self.scrub(&detail),
            };
        }
        self.request(operation, key, &detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_rejections_are_told_apart_from_permissions() {
        assert!(rejects_credentials(Some("SignatureDoesNotMatch"), None));
        assert!(rejects_credentials(Some("InvalidAccessKeyId"), Some("x")));
        assert!(rejects_credentials(
            Some("AccessDenied"),
            Some("Forbidden: Invalid signature")
        ));
        assert!(!rejects_credentials(
            Some("AccessDenied"),
            Some("Access Denied")
        ));
        assert!(!rejects_credentials(None, None));
    }

    #[test]
    fn scrub_removes_secrets_and_newlines() {
        let ctx = ErrorContext::new("b", "http://e".into(), vec!["s3cr3t-value".into()]);
        assert_eq!(
            ctx.scrub("bad\nsignature for s3cr3t-value  here"),
            "bad signature for <redacted> here"
        );
        let shown = format!("{ctx:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
}

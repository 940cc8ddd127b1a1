//! `s3://` storage on AWS S3 or any S3-compatible store (Garage, MinIO, Ceph).
//!
//! * [`settings`]: the client, built from the agent's environment only.
//! * [`upload`]: streaming multipart uploads that abort on any failure.
//! * [`error`]: one-line errors naming bucket and endpoint, never a secret.

mod error;
mod settings;
mod upload;

use bytes::Bytes;
use chrono::{DateTime, Utc};

pub use error::S3Error;
pub use settings::{DEFAULT_REGION, S3Settings};
pub use upload::{
    MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, S3Upload, max_in_flight, part_size,
    wait_for_pending_aborts,
};

use super::{Location, ObjectInfo, StorageError};
use error::ErrorContext;

/// DeleteObjects takes at most this many keys per request.
const DELETE_BATCH: usize = 1000;

#[derive(Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    errors: ErrorContext,
    bucket: String,
    /// No leading or trailing `/`; empty for the bucket's root.
    prefix: String,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.errors.endpoint())
            .finish_non_exhaustive()
    }
}

/// A multipart upload that was started and neither completed nor aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    /// Relative to the store's root.
    pub key: String,
    pub upload_id: String,
    pub initiated: Option<DateTime<Utc>>,
}

fn to_chrono(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

impl S3Store {
    /// Builds the client and checks that the bucket answers with these credentials.
    pub async fn connect(
        bucket: String,
        prefix: String,
        settings: &S3Settings,
    ) -> Result<Self, StorageError> {
        let client = settings.client(&bucket).await?;
        let errors = ErrorContext::new(&bucket, settings.endpoint_label(), settings.secrets());
        let store = S3Store {
            client,
            errors,
            bucket,
            prefix: prefix.trim_matches('/').to_owned(),
        };
        store.check_bucket().await?;
        Ok(store)
    }

    async fn check_bucket(&self) -> Result<(), S3Error> {
        let Err(head_error) = self.client.head_bucket().bucket(&self.bucket).send().await else {
            return Ok(());
        };
        let classified = self.errors.classify("HeadBucket", "", &head_error);
        // A HEAD answer has no body, so a 403 cannot say whether the key is
        // wrong or only lacks a permission: a one-key listing says which.
        if matches!(classified, S3Error::AccessDenied { .. }) {
            let listed = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(self.dir_prefix())
                .max_keys(1)
                .send()
                .await;
            return match listed {
                Ok(_) => Ok(()),
                Err(e) => Err(self.errors.classify("ListObjectsV2", &self.prefix, &e)),
            };
        }
        Err(classified)
    }

    pub fn location(&self) -> Location {
        Location::S3 {
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
        }
    }

    pub fn child(&self, name: &str) -> S3Store {
        S3Store {
            prefix: self.full_key(name.trim_matches('/')),
            ..self.clone()
        }
    }

    /// The key in the bucket for `key` below this store's root.
    fn full_key(&self, key: &str) -> String {
        let key = key.trim_start_matches('/');
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// `prefix/` (or nothing at the bucket's root): what listings filter on.
    fn dir_prefix(&self) -> String {
        if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        }
    }

    fn not_found(&self, key: &str) -> StorageError {
        StorageError::NotFound {
            location: self.location().to_string(),
            key: key.to_owned(),
        }
    }

    pub async fn create_upload(&self, key: &str) -> Result<S3Upload, StorageError> {
        Ok(S3Upload::new(
            self.client.clone(),
            self.errors.clone(),
            self.full_key(key),
        ))
    }

    pub async fn put(&self, key: &str, body: Bytes) -> Result<(), StorageError> {
        let full = self.full_key(key);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .body(body.into())
            .send()
            .await
            .map_err(|e| self.errors.classify("PutObject", &full, &e))?;
        Ok(())
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        self.get_object(key, None).await
    }

    pub async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes, StorageError> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let last = offset.saturating_add(len - 1);
        self.get_object(key, Some(format!("bytes={offset}-{last}")))
            .await
    }

    async fn get_object(&self, key: &str, range: Option<String>) -> Result<Bytes, StorageError> {
        let full = self.full_key(key);
        let ranged = range.is_some();
        let response = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full)
            .set_range(range)
            .send()
            .await;
        let output = match response {
            Ok(output) => output,
            Err(e) => {
                if e.as_service_error().is_some_and(|s| s.is_no_such_key())
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404)
                {
                    return Err(self.not_found(key));
                }
                // A range that starts past the end: like a short file read, nothing.
                if ranged && e.raw_response().is_some_and(|r| r.status().as_u16() == 416) {
                    return Ok(Bytes::new());
                }
                return Err(self.errors.classify("GetObject", &full, &e).into());
            }
        };
        let body = output.body.collect().await.map_err(|e| {
            StorageError::from(self.errors.request("GetObject", &full, &e.to_string()))
        })?;
        Ok(body.into_bytes())
    }

    pub async fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        let full = self.full_key(key);
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
        {
            Ok(head) => Ok(Some(
                head.content_length()
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0),
            )),
            Err(e)
                if e.as_service_error().is_some_and(|s| s.is_not_found())
                    || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.errors.classify("HeadObject", &full, &e).into()),
        }
    }

    pub async fn list(&self) -> Result<Vec<ObjectInfo>, StorageError> {
        self.list_under("").await
    }

    /// Objects whose key starts with `below` (relative to the root).
    async fn list_under(&self, below: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let root = self.dir_prefix();
        let prefix = format!("{root}{below}");
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.errors.classify("ListObjectsV2", &prefix, &e))?;
            for object in page.contents() {
                let Some(key) = object.key().and_then(|k| k.strip_prefix(&root)) else {
                    continue;
                };
                out.push(ObjectInfo {
                    key: key.to_owned(),
                    size: object
                        .size()
                        .and_then(|n| u64::try_from(n).ok())
                        .unwrap_or(0),
                    modified: object.last_modified().and_then(to_chrono),
                });
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let full = self.full_key(key);
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| self.errors.classify("DeleteObject", &full, &e))?;
        Ok(())
    }

    /// Deletes every object below `prefix/` and aborts the multipart uploads
    /// there (a deleted backup must not keep paying for parts).
    pub async fn delete_folder(&self, prefix: &str) -> Result<(), StorageError> {
        let folder = format!("{}/", prefix.trim_matches('/'));
        for pending in self.pending_uploads_under(&folder).await? {
            self.abort_pending(&pending).await?;
        }
        let keys: Vec<String> = self
            .list_under(&folder)
            .await?
            .into_iter()
            .map(|o| self.full_key(&o.key))
            .collect();
        for batch in keys.chunks(DELETE_BATCH) {
            self.delete_batch(batch).await?;
        }
        Ok(())
    }

    async fn delete_batch(&self, keys: &[String]) -> Result<(), StorageError> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        let objects = keys
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                self.errors
                    .request("DeleteObjects", &keys[0], &e.to_string())
            })?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| {
                self.errors
                    .request("DeleteObjects", &keys[0], &e.to_string())
            })?;
        let result = self
            .client
            .delete_objects()
            .bucket(&self.bucket)
            .delete(delete)
            .send()
            .await;
        match result {
            Ok(out) => match out.errors().first() {
                None => Ok(()),
                Some(failed) => {
                    let key = failed.key().unwrap_or_default();
                    let detail = format!(
                        "{}: {}",
                        failed.code().unwrap_or("error"),
                        failed.message().unwrap_or("not deleted")
                    );
                    Err(self.errors.request("DeleteObjects", key, &detail).into())
                }
            },
            // Some S3-compatible stores lack the batch call: one by one then.
            Err(e)
                if e.raw_response()
                    .is_some_and(|r| matches!(r.status().as_u16(), 400 | 405 | 501))
                    && aws_sdk_s3::error::ProvideErrorMetadata::code(&e)
                        .is_none_or(|c| c == "NotImplemented" || c == "MethodNotAllowed") =>
            {
                for key in keys {
                    self.client
                        .delete_object()
                        .bucket(&self.bucket)
                        .key(key)
                        .send()
                        .await
                        .map_err(|e| self.errors.classify("DeleteObject", key, &e))?;
                }
                Ok(())
            }
            Err(e) => Err(self.errors.classify("DeleteObjects", &keys[0], &e).into()),
        }
    }

    /// Multipart uploads under the root that were started and never finished.
    pub async fn pending_uploads(&self) -> Result<Vec<PendingUpload>, StorageError> {
        self.pending_uploads_under("").await
    }

    async fn pending_uploads_under(&self, below: &str) -> Result<Vec<PendingUpload>, StorageError> {
        let root = self.dir_prefix();
        let prefix = format!("{root}{below}");
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(&prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| self.errors.classify("ListMultipartUploads", &prefix, &e))?;
            for upload in page.uploads() {
                let (Some(key), Some(id)) = (
                    upload.key().and_then(|k| k.strip_prefix(&root)),
                    upload.upload_id(),
                ) else {
                    continue;
                };
                out.push(PendingUpload {
                    key: key.to_owned(),
                    upload_id: id.to_owned(),
                    initiated: upload.initiated().and_then(to_chrono),
                });
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            id_marker = page.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() {
                break;
            }
        }
        Ok(out)
    }

    pub async fn abort_pending(&self, pending: &PendingUpload) -> Result<(), StorageError> {
        let full = self.full_key(&pending.key);
        upload::abort_multipart(&self.client, &self.errors, &full, &pending.upload_id).await?;
        Ok(())
    }
}

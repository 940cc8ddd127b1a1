//! Streaming multipart upload: parts are sent while the dump is still being
//! written, a few at a time, and the object only appears when the upload
//! completes. Every failure, abort or drop aborts the multipart upload, so a
//! failed backup leaves neither an object nor parts that cost money.

use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use tokio::task::{JoinHandle, JoinSet};

use super::error::{ErrorContext, S3Error};
use crate::storage::StorageError;

const MIB: u64 = 1 << 20;
/// S3's minimum size for every part but the last.
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's maximum part size.
pub const MAX_PART_SIZE: u64 = 5 << 30;
/// S3's maximum number of parts in one upload.
pub const MAX_PARTS: u32 = 10_000;
/// The part size is this fraction of what was already sent: small dumps use
/// 5 MiB parts, and a 5 TiB dump (S3's object limit) still fits in 10,000.
const GROWTH_DIVISOR: u64 = 1000;
/// Buffered part bytes allowed in flight; fewer parts fly at once as parts grow.
const IN_FLIGHT_BUDGET: u64 = 64 * MIB;
const MAX_IN_FLIGHT: usize = 4;
/// Aborts repeat while the upload is still listed: S3 documents that a part
/// being received during an abort can survive it.
const ABORT_ATTEMPTS: usize = 3;

/// Size of the next part, given the bytes already sent in earlier parts:
/// `sent / 1000` rounded up to a MiB, between 5 MiB and 5 GiB.
pub fn part_size(sent: u64) -> u64 {
    sent.div_ceil(GROWTH_DIVISOR)
        .div_ceil(MIB)
        .saturating_mul(MIB)
        .clamp(MIN_PART_SIZE, MAX_PART_SIZE)
}

/// How many parts of this size may be uploading at once: memory stays near
/// max(in-flight budget, part) plus the part being filled.
pub fn max_in_flight(part: u64) -> usize {
    usize::try_from(IN_FLIGHT_BUDGET / part.max(1))
        .unwrap_or(MAX_IN_FLIGHT)
        .clamp(1, MAX_IN_FLIGHT)
}

/// Aborts started by dropped uploads, so a shutting-down agent can wait for them.
static PENDING_ABORTS: Mutex<Vec<JoinHandle<()>>> = Mutex::new(Vec::new());

/// Waits (at most `timeout`) for the aborts that dropped uploads started in
/// the background. `main` calls this after cancelling a run (SIGTERM), before
/// the runtime goes away and would cancel them.
pub async fn wait_for_pending_aborts(timeout: Duration) {
    let handles: Vec<JoinHandle<()>> = std::mem::take(
        &mut *PENDING_ABORTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let _ = tokio::time::timeout(timeout, futures::future::join_all(handles)).await;
}

/// A multipart upload of one object (or a single PutObject if it stays small).
pub struct S3Upload {
    client: aws_sdk_s3::Client,
    errors: ErrorContext,
    /// The full key in the bucket.
    key: String,
    buffer: BytesMut,
    part_target: u64,
    upload_id: Option<String>,
    next_part: i32,
    /// Bytes handed to parts so far.
    sent: u64,
    /// Bytes written so far.
    written: u64,
    in_flight: JoinSet<Result<CompletedPart, S3Error>>,
    completed: Vec<CompletedPart>,
    /// Finished or aborted: nothing left to clean up.
    closed: bool,
    /// A CreateMultipartUpload was sent and its answer (the upload id) has
    /// not come back: dropped now, the upload may exist without our knowing
    /// its id.
    creating: bool,
}

impl std::fmt::Debug for S3Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Upload")
            .field("bucket", &self.errors.bucket())
            .field("key", &self.key)
            .field("upload_id", &self.upload_id)
            .field("written", &self.written)
            .field("parts", &(self.next_part - 1))
            .finish_non_exhaustive()
    }
}

impl S3Upload {
    pub(crate) fn new(client: aws_sdk_s3::Client, errors: ErrorContext, key: String) -> Self {
        S3Upload {
            client,
            errors,
            key,
            buffer: BytesMut::new(),
            part_target: part_size(0),
            upload_id: None,
            next_part: 1,
            sent: 0,
            written: 0,
            in_flight: JoinSet::new(),
            completed: Vec::new(),
            closed: false,
            creating: false,
        }
    }

    pub async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        if self.closed {
            return Err(self
                .errors
                .request("UploadPart", &self.key, "the upload is already closed")
                .into());
        }
        self.written += data.len() as u64;
        self.buffer.extend_from_slice(&data);
        while self.buffer.len() as u64 >= self.part_target {
            let take = usize::try_from(self.part_target).unwrap_or(usize::MAX);
            let part = self.buffer.split_to(take).freeze();
            if let Err(e) = self.send_part(part).await {
                return Err(self.fail(e).await);
            }
        }
        Ok(())
    }

    /// Completes the upload and checks that the store holds every byte.
    pub async fn finish(mut self) -> Result<u64, StorageError> {
        match self.complete().await {
            Ok(()) => {
                self.closed = true;
                Ok(self.written)
            }
            Err(e) => Err(self.fail(e).await),
        }
    }

    pub async fn abort(mut self) -> Result<(), StorageError> {
        self.abort_now().await.map_err(StorageError::from)
    }

    async fn complete(&mut self) -> Result<(), S3Error> {
        if self.closed {
            return Err(self.errors.request(
                "CompleteMultipartUpload",
                &self.key,
                "the upload is already closed",
            ));
        }
        let Some(upload_id) = self.upload_id.clone() else {
            // Smaller than one part: one request, atomic like a completed upload.
            let body = std::mem::take(&mut self.buffer).freeze();
            self.client
                .put_object()
                .bucket(self.errors.bucket())
                .key(&self.key)
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(|e| self.errors.classify("PutObject", &self.key, &e))?;
            return Ok(());
        };
        if !self.buffer.is_empty() {
            let last = std::mem::take(&mut self.buffer).freeze();
            self.send_part(last).await?;
        }
        while let Some(joined) = self.in_flight.join_next().await {
            self.completed.push(self.joined(joined)?);
        }
        let mut parts = std::mem::take(&mut self.completed);
        parts.sort_by_key(|p| p.part_number());
        self.client
            .complete_multipart_upload()
            .bucket(self.errors.bucket())
            .key(&self.key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| {
                self.errors
                    .classify("CompleteMultipartUpload", &self.key, &e)
            })?;
        // The upload is complete now: a size check failure must not abort it
        // (nothing to abort) but still fails the backup.
        self.upload_id = None;
        let head = self
            .client
            .head_object()
            .bucket(self.errors.bucket())
            .key(&self.key)
            .send()
            .await
            .map_err(|e| self.errors.classify("HeadObject", &self.key, &e))?;
        let found = head.content_length().and_then(|n| u64::try_from(n).ok());
        if found != Some(self.written) {
            // Never leave an object that looks complete but is not.
            let _ = self
                .client
                .delete_object()
                .bucket(self.errors.bucket())
                .key(&self.key)
                .send()
                .await;
            return Err(S3Error::SizeMismatch {
                bucket: self.errors.bucket().to_owned(),
                key: self.key.clone(),
                endpoint: self.errors.endpoint().to_owned(),
                sent: self.written,
                found: found.unwrap_or(0),
            });
        }
        Ok(())
    }

    async fn send_part(&mut self, part: Bytes) -> Result<(), S3Error> {
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                self.creating = true;
                let created = self
                    .client
                    .create_multipart_upload()
                    .bucket(self.errors.bucket())
                    .key(&self.key)
                    .send()
                    .await
                    .map_err(|e| self.errors.classify("CreateMultipartUpload", &self.key, &e))?;
                self.creating = false;
                let id = created.upload_id().map(str::to_owned).ok_or_else(|| {
                    self.errors.request(
                        "CreateMultipartUpload",
                        &self.key,
                        "the store returned no upload id",
                    )
                })?;
                self.upload_id = Some(id.clone());
                id
            }
        };
        if self.next_part > MAX_PARTS as i32 {
            return Err(S3Error::TooManyParts {
                bucket: self.errors.bucket().to_owned(),
                key: self.key.clone(),
                endpoint: self.errors.endpoint().to_owned(),
                sent: self.sent,
            });
        }
        let part_len = part.len() as u64;
        while self.in_flight.len() >= max_in_flight(part_len) {
            if let Some(joined) = self.in_flight.join_next().await {
                let done = self.joined(joined)?;
                self.completed.push(done);
            }
        }
        let number = self.next_part;
        let client = self.client.clone();
        let errors = self.errors.clone();
        let key = self.key.clone();
        self.in_flight.spawn(async move {
            let out = client
                .upload_part()
                .bucket(errors.bucket())
                .key(&key)
                .upload_id(upload_id)
                .part_number(number)
                .content_length(part.len() as i64)
                .body(ByteStream::from(part))
                .send()
                .await
                .map_err(|e| errors.classify("UploadPart", &key, &e))?;
            let etag = out.e_tag().ok_or_else(|| {
                errors.request("UploadPart", &key, "the store returned no ETag for a part")
            })?;
            Ok(CompletedPart::builder()
                .part_number(number)
                .e_tag(etag)
                .build())
        });
        self.next_part += 1;
        self.sent += part_len;
        self.part_target = part_size(self.sent);
        Ok(())
    }

    fn joined(
        &self,
        joined: Result<Result<CompletedPart, S3Error>, tokio::task::JoinError>,
    ) -> Result<CompletedPart, S3Error> {
        joined.map_err(|e| self.errors.request("UploadPart", &self.key, &e.to_string()))?
    }

    /// Aborts after an error and returns the error (an abort failure is only logged:
    /// the original error is what the user needs, and cleanup retries later).
    async fn fail(&mut self, error: S3Error) -> StorageError {
        if let Err(abort_error) = self.abort_now().await {
            tracing::warn!(error = %abort_error, "could not abort a failed upload; it will be cleaned up as an orphan");
        }
        error.into()
    }

    async fn abort_now(&mut self) -> Result<(), S3Error> {
        self.closed = true;
        self.buffer = BytesMut::new();
        // Stop our own part uploads first so none lands after the abort.
        self.in_flight.abort_all();
        while self.in_flight.join_next().await.is_some() {}
        match self.upload_id.take() {
            Some(id) => abort_multipart(&self.client, &self.errors, &self.key, &id).await,
            None => Ok(()),
        }
    }
}

/// Aborts every multipart upload of exactly `key`, looking a few times: a
/// CreateMultipartUpload still on its way when we look makes its upload a
/// moment later.
async fn abort_uploads_of_key(
    client: &aws_sdk_s3::Client,
    errors: &ErrorContext,
    key: &str,
) -> Result<(), S3Error> {
    for _ in 0..ABORT_ATTEMPTS {
        let listed = client
            .list_multipart_uploads()
            .bucket(errors.bucket())
            .prefix(key)
            .send()
            .await
            .map_err(|e| errors.classify("ListMultipartUploads", key, &e))?;
        for upload in listed.uploads() {
            if let (Some(k), Some(id)) = (upload.key(), upload.upload_id())
                && k == key
            {
                abort_multipart(client, errors, key, id).await?;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Aborts one multipart upload, repeating while the store still lists it.
pub(crate) async fn abort_multipart(
    client: &aws_sdk_s3::Client,
    errors: &ErrorContext,
    key: &str,
    upload_id: &str,
) -> Result<(), S3Error> {
    for _ in 0..ABORT_ATTEMPTS {
        match client
            .abort_multipart_upload()
            .bucket(errors.bucket())
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if e.code() == Some("NoSuchUpload") => return Ok(()),
            Err(e) => return Err(errors.classify("AbortMultipartUpload", key, &e)),
        }
        match client
            .list_parts()
            .bucket(errors.bucket())
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            // Gone (NoSuchUpload or a plain 404): done.
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        self.in_flight.abort_all();
        let upload_id = self.upload_id.take();
        if upload_id.is_none() && !self.creating {
            return;
        }
        // Dropped mid-upload (an error elsewhere, a cancelled task, SIGTERM):
        // abort in the background, tracked so that shutdown can wait for it.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(key = %self.key, "upload dropped outside a runtime; it will be cleaned up as an orphan");
            return;
        };
        let client = self.client.clone();
        let errors = self.errors.clone();
        let key = self.key.clone();
        let handle = runtime.spawn(async move {
            let result = match upload_id {
                Some(id) => abort_multipart(&client, &errors, &key, &id).await,
                // Dropped while CreateMultipartUpload was on its way: the
                // store may have made the upload, and only the store knows
                // its id. The key is this backup's own (a new folder per
                // run), so every upload of exactly this key is ours.
                None => abort_uploads_of_key(&client, &errors, &key).await,
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "could not abort a dropped upload; it will be cleaned up as an orphan");
            }
        });
        PENDING_ABORTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(handle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parts needed for `total` bytes, and the largest part used.
    fn plan(total: u64) -> (u32, u64) {
        let (mut sent, mut parts, mut largest) = (0u64, 0u32, 0u64);
        while sent < total {
            let size = part_size(sent).min(total - sent);
            largest = largest.max(size);
            sent += size;
            parts += 1;
        }
        (parts, largest)
    }

    #[test]
    fn parts_start_at_the_s3_minimum() {
        assert_eq!(part_size(0), 5 * MIB);
        assert_eq!(part_size(5 * MIB), 5 * MIB);
        assert_eq!(part_size(5000 * MIB), 5 * MIB);
        assert_eq!(part_size(5000 * MIB + 1), 6 * MIB);
        assert_eq!(part_size(100 << 30), 103 * MIB);
        assert_eq!(part_size(u64::MAX), MAX_PART_SIZE);
        for sent in [0, 1, 12345, 1 << 30, 1 << 40, 5 << 40] {
            let size = part_size(sent);
            assert!(
                (MIN_PART_SIZE..=MAX_PART_SIZE).contains(&size),
                "{sent}: {size}"
            );
            assert_eq!(size % MIB, 0);
        }
    }

    #[test]
    fn five_tebibytes_fit_in_ten_thousand_parts() {
        let (parts, largest) = plan(5 << 40);
        assert!(parts <= MAX_PARTS, "{parts} parts");
        assert!(largest <= MAX_PART_SIZE);
        // Small dumps keep small parts (and memory).
        assert_eq!(plan(12 * MIB), (3, 5 * MIB));
        assert_eq!(plan(1 << 30).1, 5 * MIB);
    }

    #[test]
    fn in_flight_shrinks_as_parts_grow() {
        assert_eq!(max_in_flight(5 * MIB), 4);
        assert_eq!(max_in_flight(32 * MIB), 2);
        assert_eq!(max_in_flight(64 * MIB), 1);
        assert_eq!(max_in_flight(MAX_PART_SIZE), 1);
    }
}

//! Where backups live: a local directory (`file://`) or an S3 bucket (`s3://`).
//!
//! A [`Store`] is rooted at a location; keys below it are `/`-separated
//! relative paths such as `NAME/dump.sql.gz`. The dump streams into an
//! [`Upload`] (a multipart upload on S3, a `.partial` file renamed at the end
//! on disk), so a failed or interrupted backup never leaves an object that
//! looks complete. Restore and verify read members with ranged reads.
//!
//! Dispatch is an enum rather than a trait object: two back ends, known at
//! compile time, and async methods without boxing.

mod file;
pub mod s3;

use std::path::PathBuf;

use bytes::Bytes;
use chrono::{DateTime, Utc};

pub use file::{FileStore, FileUpload};
pub use s3::{S3Error, S3Settings, S3Store, S3Upload};

/// A parsed `--to` / `--from` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `file:///dir/...`: an absolute directory.
    File(PathBuf),
    /// `s3://bucket/prefix/...`: the prefix has no leading or trailing `/`.
    S3 { bucket: String, prefix: String },
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The location is neither `file:///…` nor `s3://…`, or is malformed.
    #[error(
        "`{url}` is not a storage URL: {reason} (use file:///absolute/dir or s3://bucket/prefix)"
    )]
    BadUrl { url: String, reason: String },
    /// A file operation of a `file://` location failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The object or file is not there.
    #[error("{key} does not exist in {location}")]
    NotFound { location: String, key: String },
    /// Boxed: S3 errors carry bucket, endpoint and key, and every `Result`
    /// of the agent carries this type.
    #[error(transparent)]
    S3(Box<S3Error>),
}

impl From<S3Error> for StorageError {
    fn from(error: S3Error) -> Self {
        StorageError::S3(Box::new(error))
    }
}

impl Location {
    pub fn parse(url: &str) -> Result<Self, StorageError> {
        let bad = |reason: &str| StorageError::BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad("a file URL needs an absolute path (three slashes)"));
            }
            if path.split('/').any(|part| part == "..") {
                return Err(bad("`..` is not allowed in a backup path"));
            }
            let trimmed = path.trim_end_matches('/');
            return Ok(Location::File(PathBuf::from(if trimmed.is_empty() {
                "/"
            } else {
                trimmed
            })));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("the bucket name is missing"));
            }
            if !bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            {
                return Err(bad(
                    "a bucket name has only lowercase letters, digits, `-` and `.`",
                ));
            }
            let prefix = prefix.trim_matches('/');
            if prefix.split('/').any(|part| part == "..") {
                return Err(bad("`..` is not allowed in a backup path"));
            }
            return Ok(Location::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
            });
        }
        Err(bad("unknown scheme"))
    }

    /// The location of the folder `name` below this one.
    pub fn join(&self, name: &str) -> Location {
        let name = name.trim_matches('/');
        match self {
            Location::File(dir) => Location::File(dir.join(name)),
            Location::S3 { bucket, prefix } => Location::S3 {
                bucket: bucket.clone(),
                prefix: if prefix.is_empty() {
                    name.to_owned()
                } else {
                    format!("{prefix}/{name}")
                },
            },
        }
    }

    /// The parent location and the last path segment (a backup's folder name).
    pub fn split_last(&self) -> Option<(Location, String)> {
        match self {
            Location::File(dir) => {
                let name = dir.file_name()?.to_string_lossy().into_owned();
                Some((Location::File(dir.parent()?.to_path_buf()), name))
            }
            Location::S3 { bucket, prefix } => {
                if prefix.is_empty() {
                    return None;
                }
                let (parent, name) = prefix.rsplit_once('/').unwrap_or(("", prefix));
                Some((
                    Location::S3 {
                        bucket: bucket.clone(),
                        prefix: parent.to_owned(),
                    },
                    name.to_owned(),
                ))
            }
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::File(dir) => write!(f, "file://{}", dir.display()),
            Location::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// An object below a store's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Relative to the store's root.
    pub key: String,
    pub size: u64,
    pub modified: Option<DateTime<Utc>>,
}

/// A store rooted at a [`Location`].
#[derive(Debug, Clone)]
pub enum Store {
    File(FileStore),
    S3(S3Store),
}

impl Store {
    /// Opens the store for `location`. S3 settings come from the agent's
    /// environment (see [`S3Settings`]); they are ignored for files.
    pub async fn open(location: &Location, s3: &S3Settings) -> Result<Store, StorageError> {
        match location {
            Location::File(dir) => Ok(Store::File(FileStore::new(dir.clone()))),
            Location::S3 { bucket, prefix } => Ok(Store::S3(
                S3Store::connect(bucket.clone(), prefix.clone(), s3).await?,
            )),
        }
    }

    pub fn location(&self) -> Location {
        match self {
            Store::File(s) => s.location(),
            Store::S3(s) => s.location(),
        }
    }

    /// A store rooted at the folder `name` below this one (same connection).
    pub fn child(&self, name: &str) -> Store {
        match self {
            Store::File(s) => Store::File(s.child(name)),
            Store::S3(s) => Store::S3(s.child(name)),
        }
    }

    /// Starts a streaming upload of a large object; nothing is visible at `key`
    /// until [`Upload::finish`] succeeds.
    pub async fn create_upload(&self, key: &str) -> Result<Upload, StorageError> {
        match self {
            Store::File(s) => Ok(Upload::File(s.create_upload(key).await?)),
            Store::S3(s) => Ok(Upload::S3(s.create_upload(key).await?)),
        }
    }

    /// Writes a small object at once (atomically replacing an older one).
    pub async fn put(&self, key: &str, body: Bytes) -> Result<(), StorageError> {
        match self {
            Store::File(s) => s.put(key, body).await,
            Store::S3(s) => s.put(key, body).await,
        }
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        match self {
            Store::File(s) => s.get(key).await,
            Store::S3(s) => s.get(key).await,
        }
    }

    /// `len` bytes from `offset`; fewer only if the object is shorter.
    pub async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes, StorageError> {
        match self {
            Store::File(s) => s.get_range(key, offset, len).await,
            Store::S3(s) => s.get_range(key, offset, len).await,
        }
    }

    /// Size of an object, or None when it does not exist.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        match self {
            Store::File(s) => s.size(key).await,
            Store::S3(s) => s.size(key).await,
        }
    }

    /// Every object below the root, recursively.
    pub async fn list(&self) -> Result<Vec<ObjectInfo>, StorageError> {
        match self {
            Store::File(s) => s.list().await,
            Store::S3(s) => s.list().await,
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self {
            Store::File(s) => s.delete(key).await,
            Store::S3(s) => s.delete(key).await,
        }
    }

    /// Deletes every object whose key starts with `prefix/`.
    pub async fn delete_folder(&self, prefix: &str) -> Result<(), StorageError> {
        match self {
            Store::File(s) => s.delete_folder(prefix).await,
            Store::S3(s) => s.delete_folder(prefix).await,
        }
    }

    /// The names of the folders directly below the root (backup names).
    pub async fn folders(&self) -> Result<Vec<String>, StorageError> {
        let mut names: Vec<String> = self
            .list()
            .await?
            .into_iter()
            .filter_map(|o| o.key.split_once('/').map(|(dir, _)| dir.to_owned()))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }
}

/// A streaming upload of one large object.
#[derive(Debug)]
pub enum Upload {
    File(FileUpload),
    S3(S3Upload),
}

impl Upload {
    /// Appends bytes. Memory stays bounded: S3 sends a part whenever one is full.
    pub async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        match self {
            Upload::File(u) => u.write(data).await,
            Upload::S3(u) => u.write(data).await,
        }
    }

    /// Makes the object visible; returns its size.
    pub async fn finish(self) -> Result<u64, StorageError> {
        match self {
            Upload::File(u) => u.finish().await,
            Upload::S3(u) => u.finish().await,
        }
    }

    /// Throws the upload away (multipart upload aborted, partial file removed).
    pub async fn abort(self) -> Result<(), StorageError> {
        match self {
            Upload::File(u) => u.abort().await,
            Upload::S3(u) => u.abort().await,
        }
    }
}

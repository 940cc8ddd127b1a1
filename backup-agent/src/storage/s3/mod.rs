//! `s3://` storage. Being built in issue 6: every call reports that S3 is not
//! available yet, so nothing pretends to have stored a backup.

use std::collections::HashMap;

use bytes::Bytes;

use super::{Location, ObjectInfo, StorageError};

/// S3 settings from the agent's environment and flags.
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    /// Environment variables (the standard AWS ones) as the agent received them.
    pub env: HashMap<String, String>,
    pub force_path_style: bool,
    pub ca_bundle: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone)]
pub struct S3Store {
    bucket: String,
    prefix: String,
}

fn unavailable() -> StorageError {
    StorageError::S3("S3 storage is not available in this build of keeper-agent".into())
}

impl S3Store {
    pub async fn connect(
        bucket: String,
        prefix: String,
        _settings: &S3Settings,
    ) -> Result<Self, StorageError> {
        let _ = (bucket, prefix);
        Err(unavailable())
    }
    pub fn location(&self) -> Location {
        Location::S3 {
            bucket: self.bucket.clone(),
            prefix: self.prefix.clone(),
        }
    }
    pub fn child(&self, name: &str) -> S3Store {
        let _ = name;
        self.clone()
    }
    pub async fn create_upload(&self, _key: &str) -> Result<S3Upload, StorageError> {
        Err(unavailable())
    }
    pub async fn put(&self, _key: &str, _body: Bytes) -> Result<(), StorageError> {
        Err(unavailable())
    }
    pub async fn get(&self, _key: &str) -> Result<Bytes, StorageError> {
        Err(unavailable())
    }
    pub async fn get_range(
        &self,
        _key: &str,
        _offset: u64,
        _len: u64,
    ) -> Result<Bytes, StorageError> {
        Err(unavailable())
    }
    pub async fn size(&self, _key: &str) -> Result<Option<u64>, StorageError> {
        Err(unavailable())
    }
    pub async fn list(&self) -> Result<Vec<ObjectInfo>, StorageError> {
        Err(unavailable())
    }
    pub async fn delete(&self, _key: &str) -> Result<(), StorageError> {
        Err(unavailable())
    }
    pub async fn delete_folder(&self, _prefix: &str) -> Result<(), StorageError> {
        Err(unavailable())
    }
}

#[derive(Debug)]
pub struct S3Upload;

impl S3Upload {
    pub async fn write(&mut self, _data: Bytes) -> Result<(), StorageError> {
        Err(unavailable())
    }
    pub async fn finish(self) -> Result<u64, StorageError> {
        Err(unavailable())
    }
    pub async fn abort(self) -> Result<(), StorageError> {
        Ok(())
    }
}

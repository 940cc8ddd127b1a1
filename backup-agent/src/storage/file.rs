//! `file://` storage: a directory on a local disk or a mounted volume.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::{Location, ObjectInfo, StorageError};

/// Suffix of a file being written; renamed away when complete.
const PARTIAL: &str = ".partial";

#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl FileStore {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn location(&self) -> Location {
        Location::File(self.root.clone())
    }

    pub fn child(&self, name: &str) -> FileStore {
        FileStore::new(self.root.join(name.trim_matches('/')))
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key.trim_start_matches('/'))
    }

    pub async fn create_upload(&self, key: &str) -> Result<FileUpload, StorageError> {
        let target = self.path(key);
        if let Some(dir) = target.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io_err(dir))?;
        }
        let partial = partial_path(&target);
        let file = tokio::fs::File::create(&partial)
            .await
            .map_err(io_err(&partial))?;
        Ok(FileUpload {
            file: Some(file),
            partial,
            target,
            written: 0,
        })
    }

    pub async fn put(&self, key: &str, body: Bytes) -> Result<(), StorageError> {
        let mut upload = self.create_upload(key).await?;
        match upload.write(body).await {
            Ok(()) => upload.finish().await.map(|_| ()),
            Err(e) => {
                let _ = upload.abort().await;
                Err(e)
            }
        }
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        let path = self.path(key);
        match tokio::fs::read(&path).await {
            Ok(data) => Ok(Bytes::from(data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(self.not_found(key)),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    pub async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes, StorageError> {
        let path = self.path(key);
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(self.not_found(key)),
            Err(e) => return Err(io_err(&path)(e)),
        };
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(io_err(&path))?;
        let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0).min(64 << 20));
        file.take(len)
            .read_to_end(&mut buf)
            .await
            .map_err(io_err(&path))?;
        Ok(Bytes::from(buf))
    }

    pub async fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        let path = self.path(key);
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    pub async fn list(&self) -> Result<Vec<ObjectInfo>, StorageError> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let mut entries = match tokio::fs::read_dir(&dir).await {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&dir)(e)),
            };
            while let Some(entry) = entries.next_entry().await.map_err(io_err(&dir))? {
                let path = entry.path();
                let meta = entry.metadata().await.map_err(io_err(&path))?;
                if meta.is_dir() {
                    stack.push(path);
                    continue;
                }
                let Ok(rel) = path.strip_prefix(&self.root) else {
                    continue;
                };
                out.push(ObjectInfo {
                    key: rel.to_string_lossy().replace('\\', "/"),
                    size: meta.len(),
                    modified: meta.modified().ok().map(chrono::DateTime::from),
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key);
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }

    pub async fn delete_folder(&self, prefix: &str) -> Result<(), StorageError> {
        let path = self.path(prefix);
        match tokio::fs::remove_dir_all(&path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }

    fn not_found(&self, key: &str) -> StorageError {
        StorageError::NotFound {
            location: self.location().to_string(),
            key: key.to_owned(),
        }
    }
}

fn partial_path(target: &Path) -> PathBuf {
    let mut name = target.file_name().unwrap_or_default().to_os_string();
    name.push(PARTIAL);
    target.with_file_name(name)
}

/// A file being written under a `.partial` name.
#[derive(Debug)]
pub struct FileUpload {
    file: Option<tokio::fs::File>,
    partial: PathBuf,
    target: PathBuf,
    written: u64,
}

impl FileUpload {
    pub async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        let Some(file) = self.file.as_mut() else {
            return Err(io_err(&self.partial)(std::io::Error::other(
                "upload already closed",
            )));
        };
        file.write_all(&data).await.map_err(io_err(&self.partial))?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Flushes to disk and renames into place, so a complete name means a complete file.
    pub async fn finish(mut self) -> Result<u64, StorageError> {
        if let Some(mut file) = self.file.take() {
            file.flush().await.map_err(io_err(&self.partial))?;
            file.sync_all().await.map_err(io_err(&self.partial))?;
        }
        tokio::fs::rename(&self.partial, &self.target)
            .await
            .map_err(io_err(&self.target))?;
        Ok(self.written)
    }

    pub async fn abort(mut self) -> Result<(), StorageError> {
        self.file.take();
        match tokio::fs::remove_file(&self.partial).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&self.partial)(e)),
            _ => Ok(()),
        }
    }
}

impl Drop for FileUpload {
    fn drop(&mut self) {
        // Dropped without finish (an error or a cancelled task): remove the partial file.
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

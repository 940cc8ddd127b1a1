//! The single writer: appends members to the upload in plan order, records
//! each one's offset, and hashes the whole file as it goes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::member::EncodedMember;
use crate::manifest::{Member, MemberKind};
use crate::storage::{StorageError, Upload};

/// The finished file.
#[derive(Debug, Clone)]
pub struct FileSummary {
    pub size: u64,
    pub sha256: String,
}

/// What the progress line reads from the writer.
#[derive(Debug, Default)]
pub struct WriterProgress {
    pub compressed_bytes: AtomicU64,
    pub members: AtomicU64,
    pub tables_done: AtomicU64,
}

pub struct DumpWriter {
    upload: Option<Upload>,
    offset: u64,
    sha: Sha256,
    members: Vec<Member>,
    largest_statement: u64,
    chunks: HashMap<(String, String), u32>,
    progress: Arc<WriterProgress>,
    /// The dump file's name, for messages.
    file: &'static str,
}

impl DumpWriter {
    pub fn new(upload: Upload, file: &'static str) -> DumpWriter {
        DumpWriter {
            file,
            upload: Some(upload),
            offset: 0,
            sha: Sha256::new(),
            members: Vec::new(),
            largest_statement: 0,
            chunks: HashMap::new(),
            progress: Arc::new(WriterProgress::default()),
        }
    }

    pub fn progress(&self) -> Arc<WriterProgress> {
        self.progress.clone()
    }

    pub async fn append(&mut self, m: EncodedMember) -> Result<(), StorageError> {
        let Some(upload) = self.upload.as_mut() else {
            return Err(StorageError::Io {
                path: self.file.into(),
                source: std::io::Error::other("the upload is already closed"),
            });
        };
        let length = m.bytes.len() as u64;
        self.sha.update(&m.bytes);
        upload.write(m.bytes).await?;
        let chunk = match (m.kind, &m.database, &m.table) {
            (MemberKind::Data, Some(d), Some(t)) => {
                let n = self.chunks.entry((d.clone(), t.clone())).or_insert(0);
                let this = *n;
                *n += 1;
                if this == 0 {
                    self.progress.tables_done.fetch_add(1, Ordering::Relaxed);
                }
                Some(this)
            }
            _ => None,
        };
        self.members.push(Member {
            kind: m.kind,
            database: m.database,
            table: m.table,
            chunk,
            offset: self.offset,
            length,
            uncompressed_length: m.uncompressed_length,
            rows: m.rows,
            sha256: m.sha256,
        });
        self.offset += length;
        self.largest_statement = self.largest_statement.max(m.largest_statement);
        self.progress
            .compressed_bytes
            .store(self.offset, Ordering::Relaxed);
        self.progress.members.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Completes the upload: the dump file becomes visible.
    pub async fn finish(&mut self) -> Result<FileSummary, StorageError> {
        let Some(upload) = self.upload.take() else {
            return Err(StorageError::Io {
                path: self.file.into(),
                source: std::io::Error::other("the upload is already closed"),
            });
        };
        let size = upload.finish().await?;
        if size != self.offset {
            return Err(StorageError::Io {
                path: self.file.into(),
                source: std::io::Error::other(format!(
                    "stored {size} bytes but wrote {}",
                    self.offset
                )),
            });
        }
        let sha256 = hex::encode(std::mem::take(&mut self.sha).finalize());
        Ok(FileSummary { size, sha256 })
    }

    pub async fn abort(&mut self) -> Result<(), StorageError> {
        match self.upload.take() {
            Some(u) => u.abort().await,
            None => Ok(()),
        }
    }

    /// The members written, in order, and the longest statement among them.
    pub fn members(&mut self) -> (Vec<Member>, u64) {
        (std::mem::take(&mut self.members), self.largest_statement)
    }
}

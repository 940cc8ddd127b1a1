//! `verify`: checks every byte of a backup folder against its manifest,
//! without a server: the manifest parses and is consistent, each member's
//! sha256 matches and it decompresses to exactly its listed length, and the
//! whole file's size and sha256 match.

use sha2::{Digest, Sha256};

use super::RestoreError;
use super::source::Backup;
use crate::repository::BackupListing;
use crate::storage::Store;

/// What a successful verification saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub backup: String,
    pub members: usize,
    pub compressed_bytes: u64,
    pub uncompressed_bytes: u64,
    pub tables: usize,
    pub rows: u64,
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is good: {} members, {} bytes compressed, {} uncompressed, {} tables, {} rows",
            self.backup,
            self.members,
            self.compressed_bytes,
            self.uncompressed_bytes,
            self.tables,
            self.rows
        )
    }
}

/// Verifies the backup folder `store`; the error names the first bad member.
pub async fn verify_backup(store: &Store) -> Result<VerifyReport, RestoreError> {
    let backup = Backup::open(store, "it cannot be verified").await?;
    verify_opened(&backup).await
}

/// Verifies an already opened backup (restore uses this before `--overwrite` drops anything).
pub async fn verify_opened(backup: &Backup) -> Result<VerifyReport, RestoreError> {
    backup.check_size().await?;
    let manifest = &backup.manifest;
    let mut file_sha = Sha256::new();
    for index in 0..manifest.members.len() {
        let compressed = backup.fetch(index).await?;
        // Members tile the file (the manifest checks that), so hashing them
        // in order hashes the whole file without reading it twice.
        file_sha.update(&compressed);
        let text = backup.decompress(index, &compressed)?;
        drop(text);
    }
    let sha = hex::encode(file_sha.finalize());
    if sha != manifest.file.sha256 {
        return Err(RestoreError::FileCorrupt {
            backup: backup.describe(),
            file: manifest.dump_file(),
        });
    }
    Ok(VerifyReport {
        backup: backup.describe(),
        members: manifest.members.len(),
        compressed_bytes: manifest.file.size,
        uncompressed_bytes: manifest.uncompressed_bytes(),
        tables: manifest.table_count(),
        rows: manifest.row_count(),
    })
}

/// `ok`, or the first problem, for `list --verify`.
pub async fn verify_listing(store: &Store, listing: &BackupListing) -> String {
    if !listing.is_complete() {
        return "-".to_owned();
    }
    let child = store.child(&listing.name);
    let result = match Backup::open(&child, "it cannot be verified").await {
        Ok(backup) => verify_opened(&backup).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("FAILED: {e}"),
    }
}

//! A backup folder as a reader sees it: its manifest, and its members each
//! fetched with a ranged read and checked against the manifest before anyone
//! decompresses or executes them.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::RestoreError;
use crate::compression::Compression;
use crate::manifest::{MANIFEST_FILE, Manifest, Member};
use crate::storage::{StorageError, Store};

/// A backup folder and its parsed, self-consistent manifest.
#[derive(Debug, Clone)]
pub struct Backup {
    pub store: Store,
    pub manifest: Manifest,
}

impl Backup {
    /// Reads and checks `manifest.json` of the backup folder `store`.
    /// `consequence` ends the message when it is missing ("nothing was restored").
    pub async fn open(store: &Store, consequence: &'static str) -> Result<Backup, RestoreError> {
        let backup = store.location().to_string();
        let bytes = match store.get(MANIFEST_FILE).await {
            Ok(b) => b,
            Err(StorageError::NotFound { .. }) => {
                return Err(RestoreError::NoManifest {
                    backup,
                    consequence,
                });
            }
            Err(source) => return Err(RestoreError::Storage { backup, source }),
        };
        let manifest = Manifest::from_json(&bytes).map_err(|source| RestoreError::BadManifest {
            backup: backup.clone(),
            source,
        })?;
        Ok(Backup {
            store: store.clone(),
            manifest,
        })
    }

    pub fn describe(&self) -> String {
        self.store.location().to_string()
    }

    /// Checks that the dump file has exactly the size the manifest says, so
    /// a truncated or replaced file is caught before anything runs.
    pub async fn check_size(&self) -> Result<(), RestoreError> {
        let found = self
            .store
            .size(self.manifest.dump_file())
            .await
            .map_err(|source| RestoreError::Storage {
                backup: self.describe(),
                source,
            })?;
        if found != Some(self.manifest.file.size) {
            return Err(RestoreError::FileSize {
                backup: self.describe(),
                file: self.manifest.dump_file(),
                expected: self.manifest.file.size,
                found,
            });
        }
        Ok(())
    }

    /// The member's compressed bytes, checked against its length and sha256.
    /// A storage error is retried once with the same ranged read: a dropped
    /// connection in a long restore should not throw the whole run away.
    pub async fn fetch(&self, index: usize) -> Result<Bytes, RestoreError> {
        let member = &self.manifest.members[index];
        let read = || {
            self.store
                .get_range(self.manifest.dump_file(), member.offset, member.length)
        };
        let bytes = match read().await {
            Ok(b) => b,
            Err(first) => {
                tracing::warn!(
                    member = %describe_member(index, member),
                    error = %first,
                    "reading a member failed; retrying once"
                );
                read().await.map_err(|source| RestoreError::Storage {
                    backup: self.describe(),
                    source,
                })?
            }
        };
        check_member(&self.describe(), index, member, &bytes)?;
        Ok(bytes)
    }

    /// The member's SQL text, decompressed and checked against its
    /// uncompressed length. `compressed` must already be checked by [`fetch`](Self::fetch).
    pub fn decompress(&self, index: usize, compressed: &[u8]) -> Result<Vec<u8>, RestoreError> {
        decompress_member(
            &self.describe(),
            self.manifest.compression(),
            index,
            &self.manifest.members[index],
            compressed,
        )
    }
}

/// Checks a member's compressed bytes against the manifest.
pub fn check_member(
    backup: &str,
    index: usize,
    member: &Member,
    bytes: &[u8],
) -> Result<(), RestoreError> {
    if bytes.len() as u64 != member.length {
        return Err(RestoreError::MemberCorrupt {
            backup: backup.to_owned(),
            member: describe_member(index, member),
            problem: format!(
                "{} bytes could be read of the {} the manifest lists",
                bytes.len(),
                member.length
            ),
        });
    }
    let sha = hex::encode(Sha256::digest(bytes));
    if sha != member.sha256 {
        return Err(RestoreError::MemberCorrupt {
            backup: backup.to_owned(),
            member: describe_member(index, member),
            problem: "its sha256 does not match the manifest".to_owned(),
        });
    }
    Ok(())
}

/// Decompresses exactly one member and checks its length. Memory is
/// bounded by the manifest's `uncompressedLength` (plus one byte, to notice
/// a member that is longer than it claims).
pub fn decompress_member(
    backup: &str,
    compression: Compression,
    index: usize,
    member: &Member,
    compressed: &[u8],
) -> Result<Vec<u8>, RestoreError> {
    crate::compression::decompress(compression, compressed, member.uncompressed_length).map_err(
        |e| RestoreError::MemberCorrupt {
            backup: backup.to_owned(),
            member: describe_member(index, member),
            problem: e.to_string(),
        },
    )
}

/// `member 12 (data sakila.actor chunk 3)`, for messages and logs.
pub fn describe_member(index: usize, member: &Member) -> String {
    let kind = member.kind.name();
    let mut s = format!("member {index} ({kind}");
    match (&member.database, &member.table) {
        (Some(db), Some(t)) => s.push_str(&format!(" {db}.{t}")),
        (Some(db), None) => s.push_str(&format!(" {db}")),
        _ => {}
    }
    if let Some(chunk) = member.chunk {
        s.push_str(&format!(" chunk {chunk}"));
    }
    s.push(')');
    s
}

//! One gzip member: compressed on the worker that produced it, with the
//! sha256 of its compressed bytes, so the writer only appends and records.

use std::io::Write;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use crate::digest::RowsDigest;
use crate::manifest::MemberKind;

/// A finished member, ready to append to `dump.sql.gz`.
#[derive(Debug)]
pub struct EncodedMember {
    pub kind: MemberKind,
    pub database: Option<String>,
    pub table: Option<String>,
    pub bytes: Bytes,
    pub uncompressed_length: u64,
    pub rows: u64,
    pub sha256: String,
    /// Longest statement in the member, in bytes.
    pub largest_statement: u64,
    /// The digest of its rows (data members; empty otherwise).
    pub digest: RowsDigest,
}

/// Builds one member. Compressed output accumulates in memory: a member is
/// bounded by the chunk size, never by a table.
pub struct MemberEncoder {
    kind: MemberKind,
    database: Option<String>,
    table: Option<String>,
    gz: GzEncoder<Vec<u8>>,
    uncompressed: u64,
    rows: u64,
    largest_statement: u64,
}

impl MemberEncoder {
    pub fn new(
        kind: MemberKind,
        database: Option<&str>,
        table: Option<&str>,
        level: u32,
    ) -> MemberEncoder {
        MemberEncoder {
            kind,
            database: database.map(str::to_owned),
            table: table.map(str::to_owned),
            gz: GzEncoder::new(Vec::new(), Compression::new(level)),
            uncompressed: 0,
            rows: 0,
            largest_statement: 0,
        }
    }

    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.gz.write_all(data)?;
        self.uncompressed += data.len() as u64;
        Ok(())
    }

    /// Writes one statement and notes its size (for `largestStatement`).
    pub fn statement(&mut self, stmt: &[u8], rows: u64) -> std::io::Result<()> {
        self.write(stmt)?;
        self.rows += rows;
        self.largest_statement = self.largest_statement.max(stmt.len() as u64);
        Ok(())
    }

    pub fn uncompressed(&self) -> u64 {
        self.uncompressed
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn finish(self) -> std::io::Result<EncodedMember> {
        let mut compressed = self.gz.finish()?;
        // The output grew by doubling; a member may wait for the writer a
        // while, so do not keep up to twice its size allocated meanwhile.
        compressed.shrink_to_fit();
        let sha256 = hex::encode(Sha256::digest(&compressed));
        Ok(EncodedMember {
            kind: self.kind,
            database: self.database,
            table: self.table,
            bytes: Bytes::from(compressed),
            uncompressed_length: self.uncompressed,
            rows: self.rows,
            sha256,
            largest_statement: self.largest_statement,
            digest: RowsDigest::default(),
        })
    }
}

/// A whole member from text known up front (header, schema, routines, …).
pub fn encode_text(
    kind: MemberKind,
    database: Option<&str>,
    text: &str,
    level: u32,
) -> std::io::Result<EncodedMember> {
    let mut enc = MemberEncoder::new(kind, database, None, level);
    // The statements are short except CREATE bodies; the whole text bounds them.
    enc.statement(text.as_bytes(), 0)?;
    let mut m = enc.finish()?;
    m.largest_statement = largest_statement_in(text);
    Ok(m)
}

/// A rough upper bound of the longest statement in DDL text: the longest
/// run between blank-line-free `;\n` / `;;\n` terminators.
fn largest_statement_in(text: &str) -> u64 {
    text.split(";\n")
        .map(|s| s.len() as u64 + 2)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_member_is_a_complete_gzip_stream_with_its_checksum() {
        let mut enc = MemberEncoder::new(MemberKind::Data, Some("d"), Some("t"), 6);
        enc.statement(b"INSERT INTO `t` VALUES (1);\n", 1).unwrap();
        enc.statement(b"INSERT INTO `t` VALUES (2),(3);\n", 2)
            .unwrap();
        let m = enc.finish().unwrap();
        assert_eq!(m.rows, 3);
        assert_eq!(m.largest_statement, 32);
        assert_eq!(m.sha256, hex::encode(Sha256::digest(&m.bytes)));
        let mut out = String::new();
        flate2::read::GzDecoder::new(&m.bytes[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(m.uncompressed_length, out.len() as u64);
        assert!(out.ends_with("(2),(3);\n"));
    }

    #[test]
    fn largest_statement_of_text() {
        assert_eq!(
            largest_statement_in("SET a = 1;\nCREATE TABLE x (y int);\n"),
            24
        );
    }
}

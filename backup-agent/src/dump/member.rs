//! One member: its SQL gathered in a buffer on the worker that produced
//! it, then compressed whole ([`crate::compression`]) with the sha256 of
//! its compressed bytes, so the writer only appends and records.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::compression::{CompressionError, Encoder};
use crate::digest::RowsDigest;
use crate::manifest::MemberKind;

/// A finished member, ready to append to the dump file.
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

/// Builds one member. Its SQL accumulates in memory until [`finish`]:
/// a member is bounded by the chunk size, never by a table.
///
/// [`finish`]: MemberEncoder::finish
pub struct MemberEncoder {
    kind: MemberKind,
    database: Option<String>,
    table: Option<String>,
    sql: Vec<u8>,
    rows: u64,
    largest_statement: u64,
}

impl MemberEncoder {
    /// A member written into `sql` (cleared first): a worker passes the
    /// buffer of its previous member back in, so the chunk-sized buffer is
    /// allocated once per worker rather than once per member.
    pub fn new(
        kind: MemberKind,
        database: Option<&str>,
        table: Option<&str>,
        mut sql: Vec<u8>,
    ) -> MemberEncoder {
        sql.clear();
        MemberEncoder {
            kind,
            database: database.map(str::to_owned),
            table: table.map(str::to_owned),
            sql,
            rows: 0,
            largest_statement: 0,
        }
    }

    pub fn write(&mut self, data: &[u8]) {
        self.sql.extend_from_slice(data);
    }

    /// The SQL written so far, for a caller that builds a statement in place
    /// ([`sql_mut`](Self::sql_mut)).
    pub fn sql(&self) -> &[u8] {
        &self.sql
    }

    /// The SQL buffer itself: a data member's statements are built in it,
    /// row by row, and then noted with [`statement_written`](Self::statement_written).
    pub fn sql_mut(&mut self) -> &mut Vec<u8> {
        &mut self.sql
    }

    /// Notes a statement of `len` bytes and `rows` rows that ends the SQL
    /// (built in place), for the member's row count and `largestStatement`.
    pub fn statement_written(&mut self, len: u64, rows: u64) {
        self.rows += rows;
        self.largest_statement = self.largest_statement.max(len);
    }

    pub fn uncompressed(&self) -> u64 {
        self.sql.len() as u64
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Compresses the member with `encoder`; gives back a SQL buffer for
    /// the next member: this one's, or when the codec keeps the text as it
    /// is (`none`) and the buffer becomes the member's bytes, a new one of
    /// `capacity`.
    pub fn finish(
        self,
        encoder: &mut Encoder,
        capacity: usize,
    ) -> Result<(EncodedMember, Vec<u8>), CompressionError> {
        let uncompressed_length = self.sql.len() as u64;
        let (compressed, spare) = if encoder.is_identity() {
            (self.sql, Vec::with_capacity(capacity))
        } else {
            (encoder.compress(&self.sql)?, self.sql)
        };
        let sha256 = hex::encode(Sha256::digest(&compressed));
        let member = EncodedMember {
            kind: self.kind,
            database: self.database,
            table: self.table,
            bytes: Bytes::from(compressed),
            uncompressed_length,
            rows: self.rows,
            sha256,
            largest_statement: self.largest_statement,
            digest: RowsDigest::default(),
        };
        Ok((member, spare))
    }
}

/// A whole member from text known up front (header, schema, routines, …).
pub fn encode_text(
    kind: MemberKind,
    database: Option<&str>,
    text: &str,
    encoder: &mut Encoder,
) -> Result<EncodedMember, CompressionError> {
    let compressed = encoder.compress(text.as_bytes())?;
    Ok(EncodedMember {
        kind,
        database: database.map(str::to_owned),
        table: None,
        sha256: hex::encode(Sha256::digest(&compressed)),
        bytes: Bytes::from(compressed),
        uncompressed_length: text.len() as u64,
        rows: 0,
        // The statements are short except CREATE bodies; the whole text bounds them.
        largest_statement: largest_statement_in(text),
        digest: RowsDigest::default(),
    })
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
        let mut enc = MemberEncoder::new(MemberKind::Data, Some("d"), Some("t"), Vec::new());
        for (stmt, rows) in [
            (&b"INSERT INTO `t` VALUES (1);\n"[..], 1),
            (&b"INSERT INTO `t` VALUES (2),(3);\n"[..], 2),
        ] {
            enc.sql_mut().extend_from_slice(stmt);
            enc.statement_written(stmt.len() as u64, rows);
        }
        let mut gzip = Encoder::new(crate::compression::Compression::Gzip, 6).unwrap();
        let (m, buffer) = enc.finish(&mut gzip, 0).unwrap();
        assert_eq!(m.rows, 3);
        assert_eq!(m.largest_statement, 32);
        assert_eq!(m.sha256, hex::encode(Sha256::digest(&m.bytes)));
        let mut out = String::new();
        flate2::read::GzDecoder::new(&m.bytes[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(m.uncompressed_length, out.len() as u64);
        assert!(out.ends_with("(2),(3);\n"));
        // The buffer comes back for the next member, and starts empty there.
        assert_eq!(buffer, out.as_bytes());
        let next = MemberEncoder::new(MemberKind::Data, Some("d"), Some("t"), buffer);
        assert_eq!(next.uncompressed(), 0);
    }

    #[test]
    fn largest_statement_of_text() {
        assert_eq!(
            largest_statement_in("SET a = 1;\nCREATE TABLE x (y int);\n"),
            24
        );
    }
}

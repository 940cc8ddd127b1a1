//! Content digests of what a backup holds, so that a restore can be proven
//! to have brought it back (`keeper-agent verify --restore`), beyond the
//! bytes matching their sha256.
//!
//! - **Rows**: every row is hashed as the SQL literal tuple the dump writes
//!   for it ([`crate::dump::data::encode_row`]: the same column expressions
//!   in the SELECT, the same rendering of each value), and a table's digest
//!   is the wrapping sum of its rows' hashes with its row count. A sum is
//!   order-independent (tables without a primary key, parallel ranges,
//!   the restored server's own order all give the same digest) and, unlike
//!   XOR, keeps duplicate rows (two equal rows do not cancel). Values are
//!   read over the text protocol on both sides, so FLOAT, invalid dates,
//!   BIT, JSON and character sets other than UTF-8 are compared as the
//!   server renders them; generated columns are not read (the server
//!   computes them) and are covered by the table's definition.
//! - **Definitions**: every table, view, routine, trigger and event is
//!   hashed from what the server says of it ([`crate::dump::definitions`]).
//!
//! The hash is xxh3-128 (`xxhash-rust`): it runs at memory speed, so the
//! dump does not slow down; it is not a defence against someone who forges
//! a backup (the manifest's sha256 and the store's access control are).

use xxhash_rust::xxh3::xxh3_128;

/// The algorithm, as written before every digest in the manifest.
pub const ALGORITHM: &str = "xxh3-128";

/// The digest of a set of rows: how many, and the sum of their hashes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RowsDigest {
    /// Rows added.
    pub rows: u64,
    sum: u128,
}

impl RowsDigest {
    /// Adds one row, given as its encoded tuple.
    pub fn add_row(&mut self, encoded: &[u8]) {
        self.rows += 1;
        self.sum = self.sum.wrapping_add(xxh3_128(encoded));
    }

    /// Counts one row without hashing it (a backup made without digests).
    pub fn count_row(&mut self) {
        self.rows += 1;
    }

    /// Adds every row of `other` (another range or member of the table).
    pub fn merge(&mut self, other: RowsDigest) {
        self.rows += other.rows;
        self.sum = self.sum.wrapping_add(other.sum);
    }

    /// `xxh3-128:<32 hex digits>`, as the manifest keeps it.
    pub fn to_text(self) -> String {
        format!("{ALGORITHM}:{:032x}", self.sum)
    }
}

/// The digest of one definition: `xxh3-128:<32 hex digits>` of its parts,
/// each length-prefixed so that no two lists of parts hash alike by
/// concatenation.
pub fn definition<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut buf = Vec::new();
    for part in parts {
        buf.extend_from_slice(&(part.len() as u64).to_le_bytes());
        buf.extend_from_slice(part);
    }
    format!("{ALGORITHM}:{:032x}", xxh3_128(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(rows: &[&[u8]]) -> RowsDigest {
        let mut d = RowsDigest::default();
        for row in rows {
            d.add_row(row);
        }
        d
    }

    #[test]
    fn order_does_not_matter_and_duplicates_count() {
        let a: &[u8] = b"(1,'a')";
        let b: &[u8] = b"(2,'b')";
        assert_eq!(digest(&[a, b]), digest(&[b, a]));
        assert_ne!(digest(&[a, a]), digest(&[]));
        assert_ne!(digest(&[a, a, b]), digest(&[a, b]));
        assert_ne!(digest(&[a, a]).to_text(), digest(&[b, b]).to_text());
        // Ranges merged give the whole table.
        let mut merged = digest(&[a]);
        merged.merge(digest(&[b]));
        assert_eq!(merged, digest(&[a, b]));
        assert_eq!(merged.rows, 2);
        assert!(merged.to_text().starts_with("xxh3-128:"));
        assert_eq!(merged.to_text().len(), "xxh3-128:".len() + 32);
    }

    #[test]
    fn definitions_are_length_prefixed() {
        let ab: [&[u8]; 2] = [b"ab", b"c"];
        let a_bc: [&[u8]; 2] = [b"a", b"bc"];
        assert_ne!(definition(ab), definition(a_bc));
        assert_eq!(definition(ab), definition([b"ab".as_slice(), b"c"]));
    }
}

//! `manifest.json`: what a backup holds and how to check every byte of it.
//!
//! A backup without a manifest is incomplete and is never listed as good. The
//! manifest is written last, after `dump.sql.gz` is complete in storage.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::owner::Owner;

/// The newest format this agent reads. Bumped when a reader of an older
/// version could misread a newer manifest: version 2 added the `sequences`
/// member kind, version 3 dumps that are not gzip (`compression`: an older
/// agent would look for a `dump.sql.gz` that is not there). A backup is
/// written with the lowest version that describes it
/// ([`Manifest::needed_format_version`]), so one without sequences still
/// restores with an agent that reads only version 1, and a gzip one with an
/// agent that reads only version 2.
pub const FORMAT_VERSION: u32 = 3;
/// The gzip dump's file name inside a backup folder: the default, and the
/// only one before the compression was a choice. The rule for every codec
/// is [`dump_file`].
pub const DUMP_FILE: &str = dump_file(Compression::Gzip);

pub use crate::compression::{Compression, dump_file};
/// The manifest's file name inside a backup folder.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Present while a backup runs, refreshed every minute, removed after the manifest.
pub const IN_PROGRESS_FILE: &str = "in-progress.json";
/// Present while a backup is pinned: retention never deletes its folder.
pub const KEEP_FILE: &str = "keep.json";
/// Written by retention before it deletes a folder, so a removal that stops
/// half-way leaves a folder whose owner is still known (and is finished by
/// the owner's next retention run).
pub const REMOVING_FILE: &str = "removing.json";
/// Written by `verify --restore` beside the artifact: whether the backup
/// was proven restorable, so that retention outside Kubernetes keeps the
/// newest verified backup too.
pub const VERIFICATION_FILE: &str = "verification.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format_version: u32,
    pub agent_version: String,
    /// The backup's name (its folder under the location).
    pub name: String,
    /// The instance that made it (`NAMESPACE/NAME`, or what `--instance`
    /// said); retention acts only on one owner's backups. Absent in backups
    /// made before owners were recorded, and in backups made outside
    /// Kubernetes without `--instance`: retention never deletes those.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    pub server: ServerInfo,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub snapshot: Snapshot,
    /// The source's `max_allowed_packet`, in bytes.
    pub max_allowed_packet: u64,
    /// The longest single statement written, in bytes; a restore target needs
    /// a `max_allowed_packet` at least this large.
    pub largest_statement: u64,
    pub databases: Vec<DatabaseEntry>,
    /// Members in replay order.
    pub members: Vec<Member>,
    /// How every member is compressed, which also names the dump file
    /// ([`dump_file`]). Absent in manifests written before it was a choice:
    /// those are gzip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
    pub file: FileInfo,
    /// What this backup cannot bring back exactly, by object: never a silent
    /// difference. Empty (and absent from the JSON) when a restore gives
    /// back everything as it was, and in manifests written before the field
    /// existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<Difference>,
}

/// One thing a restore of the backup brings back differently from the
/// source, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Difference {
    /// The object, as `KIND `db`.`name`` (e.g. ``FUNCTION `shop`.`f` ``).
    pub object: String,
    /// What comes back differently, in words.
    pub difference: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.object, self.difference)
    }
}

/// The server's flavor: the API's own type, whose lower-case names
/// (`mysql`, `mariadb`) are the manifest's.
pub use keeper_crds::Flavor;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    pub flavor: Flavor,
    /// `SELECT VERSION()`, e.g. `10.11.6-MariaDB-log` or `8.4.3`.
    pub version: String,
}

/// How the point in time was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Consistency {
    /// Every worker opened its snapshot under a brief global lock.
    GlobalLock,
    /// No privilege for the lock: one connection, one snapshot, no parallelism.
    SingleTransaction,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub consistency: Consistency,
    /// How long the global lock was held, in milliseconds (None without a lock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_held_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gtid_executed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binlog: Option<BinlogPosition>,
    /// Why the snapshot is weaker than usual, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BinlogPosition {
    pub file: String,
    pub position: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseEntry {
    pub name: String,
    pub charset: String,
    pub collation: String,
    pub tables: Vec<TableEntry>,
    /// The digest of every table's, view's, routine's, trigger's and
    /// event's definition ([`crate::digest`]), for `verify --restore`.
    /// Empty in manifests written before digests existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub definitions: Vec<DefinitionDigest>,
}

/// The digest of one object's definition, as the server describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DefinitionDigest {
    /// `table`, `view`, `procedure`, `function`, `trigger` or `event`.
    pub kind: String,
    pub name: String,
    /// `xxh3-128:<hex>`.
    pub digest: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TableKind {
    Table,
    Sequence,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableEntry {
    pub name: String,
    pub kind: TableKind,
    pub engine: String,
    pub rows: u64,
    /// False for MyISAM, Aria and other engines without MVCC snapshots.
    pub transactional: bool,
    /// True when a non-transactional table was read while the global lock was
    /// held (so it is consistent); false means it was read later and is
    /// flagged, or that its data was not dumped at all (`data_skipped`).
    #[serde(default)]
    pub read_under_lock: bool,
    /// Set when the table's definition was dumped but its rows deliberately
    /// were not, with the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_skipped: Option<DataSkipped>,
    /// A system-versioned table (MariaDB) whose rows are dumped with their
    /// history: restoring it needs `system_versioning_insert_history`
    /// (MariaDB 10.11+), which the restore checks before it changes
    /// anything. False (and absent) for other tables, and in manifests
    /// written before the field existed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub history: bool,
    /// The digest of the rows as read from the snapshot
    /// (`xxh3-128:<hex>`, [`crate::digest`]), for `verify --restore`;
    /// absent for tables whose data is skipped and in manifests written
    /// before digests existed (those verify by row counts only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Secondary index clauses of the table's `CREATE TABLE` (as the dump
    /// wrote it) that a restore may leave out of the `CREATE` and build
    /// after the rows, one `ALTER TABLE` per table ([`crate::table_ddl`]).
    /// Absent when there are none, and in manifests written before the
    /// field existed: those restore every index with its `CREATE`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deferred_indexes: Vec<String>,
}

/// Why a table's rows are not in the dump: its engine does not own them, so
/// dumping them would duplicate or misplace data on restore. Stable codes:
/// tools match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DataSkipped {
    /// MERGE (`MRG_MyISAM`): the rows are those of the MyISAM tables it
    /// unions, which are dumped themselves; restoring them through the MERGE
    /// table would store them twice.
    UnderlyingTables,
    /// FEDERATED, SPIDER, CONNECT: the rows live in another server or an
    /// external file; restoring them would write into that source.
    ExternalSource,
    /// BLACKHOLE: the engine stores nothing.
    NoStorage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MemberKind {
    Header,
    /// A database's sequences: created before any table of any database,
    /// since a column DEFAULT may call `NEXTVAL()` of any of them.
    Sequences,
    Schema,
    Data,
    Routines,
    Views,
    Triggers,
    Events,
}

impl MemberKind {
    /// The kind as the manifest writes it (`header`, `sequences`, …), for
    /// messages.
    pub fn name(self) -> &'static str {
        match self {
            MemberKind::Header => "header",
            MemberKind::Sequences => "sequences",
            MemberKind::Schema => "schema",
            MemberKind::Data => "data",
            MemberKind::Routines => "routines",
            MemberKind::Views => "views",
            MemberKind::Triggers => "triggers",
            MemberKind::Events => "events",
        }
    }
}

/// One gzip member of `dump.sql.gz`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub kind: MemberKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Chunk number within a table's data, from 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<u32>,
    /// Byte offset of the member in `dump.sql.gz`.
    pub offset: u64,
    /// Compressed length in bytes.
    pub length: u64,
    pub uncompressed_length: u64,
    /// Rows in a data member.
    #[serde(default)]
    pub rows: u64,
    /// Lowercase hex sha256 of the member's compressed bytes, so a ranged read
    /// is checked before it is decompressed.
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileInfo {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// Why a manifest cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file is not JSON of a manifest.
    #[error("the manifest is not valid JSON of a Keeper manifest: {0}")]
    Parse(#[from] serde_json::Error),
    /// A newer agent wrote it (or the version is 0).
    #[error(
        "the manifest has format version {found}; this agent reads up to {FORMAT_VERSION}: use a newer keeper-agent"
    )]
    UnsupportedVersion { found: u32 },
    /// Its parts disagree: members that do not tile the file, bad checksums, counts.
    #[error("the manifest is inconsistent: {0}")]
    Inconsistent(String),
}

impl Manifest {
    /// Parses and checks a manifest's internal consistency: members tile the
    /// file exactly, in order, with well-formed checksums.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        let manifest: Manifest = serde_json::from_slice(bytes)?;
        if manifest.format_version > FORMAT_VERSION || manifest.format_version == 0 {
            return Err(ManifestError::UnsupportedVersion {
                found: manifest.format_version,
            });
        }
        manifest.check()?;
        Ok(manifest)
    }

    /// The lowest format version that describes these members, so older
    /// agents can still read every backup that does not need a newer one.
    pub fn needed_format_version(members: &[Member], compression: Compression) -> u32 {
        if compression != Compression::Gzip {
            3
        } else if members.iter().any(|m| m.kind == MemberKind::Sequences) {
            2
        } else {
            1
        }
    }

    /// How the members are compressed (gzip when the manifest does not say).
    pub fn compression(&self) -> Compression {
        self.compression.unwrap_or_default()
    }

    /// The dump file's name in the backup folder.
    pub fn dump_file(&self) -> &'static str {
        dump_file(self.compression())
    }

    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec_pretty(self)
    }

    fn check(&self) -> Result<(), ManifestError> {
        let bad = |m: String| Err(ManifestError::Inconsistent(m));
        // Readers name the file by the compression, never by this field:
        // the two must agree.
        if self.file.name != self.dump_file() {
            return bad(format!(
                "the file is named {} but {} dumps are {}",
                self.file.name,
                self.compression(),
                self.dump_file()
            ));
        }
        let mut expected_offset = 0u64;
        for (i, member) in self.members.iter().enumerate() {
            if member.offset != expected_offset {
                return bad(format!(
                    "member {i} starts at byte {} but the previous one ends at {expected_offset}",
                    member.offset
                ));
            }
            if member.length == 0 {
                return bad(format!("member {i} is empty"));
            }
            if !is_sha256_hex(&member.sha256) {
                return bad(format!("member {i} has a malformed sha256"));
            }
            expected_offset = match member.offset.checked_add(member.length) {
                Some(end) => end,
                None => return bad(format!("member {i} overflows the file")),
            };
        }
        if expected_offset != self.file.size {
            return bad(format!(
                "the members cover {expected_offset} bytes but the file has {}",
                self.file.size
            ));
        }
        if !is_sha256_hex(&self.file.sha256) {
            return bad("the file's sha256 is malformed".into());
        }
        Ok(())
    }

    /// Tables (not sequences) across all databases.
    pub fn table_count(&self) -> usize {
        self.databases
            .iter()
            .flat_map(|d| d.tables.iter())
            .filter(|t| t.kind == TableKind::Table)
            .count()
    }

    /// Rows across all tables.
    pub fn row_count(&self) -> u64 {
        self.databases
            .iter()
            .flat_map(|d| d.tables.iter())
            .map(|t| t.rows)
            .sum()
    }

    pub fn uncompressed_bytes(&self) -> u64 {
        self.members.iter().map(|m| m.uncompressed_length).sum()
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The marker a running backup keeps fresh, so that cleanup can tell a live
/// upload from one orphaned by a killed agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InProgress {
    pub started_at: DateTime<Utc>,
    pub refreshed_at: DateTime<Utc>,
    pub host: String,
    /// The owner of the running backup, so orphan cleanup can tell whose
    /// upload a killed run left behind (a folder it cannot attribute is left
    /// alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

/// `verification.json`: the last proof of a backup ([`crate::proof`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationRecord {
    /// `Verified` or `Failed`.
    pub result: VerificationResult,
    pub verified_at: DateTime<Utc>,
    pub tables: usize,
    pub rows: u64,
    pub definitions: usize,
    pub duration_seconds: f64,
    /// False when the backup predates digests (counts only were compared).
    pub complete: bool,
    /// The first differences of a failed proof.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<String>,
    pub agent_version: String,
}

/// The outcome of a proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VerificationResult {
    /// Restored, and every digest matched.
    Verified,
    /// Restored, and something differed.
    Failed,
}

/// `keep.json`: the pin of a backup, beside its artifact, so that retention
/// honours it also when `prune` runs by hand outside Kubernetes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pin {
    pub pinned_at: DateTime<Utc>,
    pub source: PinSource,
}

/// Who set a pin, which decides who may lift it: in-cluster retention lifts
/// only pins that a `MySQLBackup` set, when its `spec.keep` is no longer
/// true; a pin set by hand is lifted only by `keeper-agent unpin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PinSource {
    /// `spec.keep: true` on the backup's `MySQLBackup`.
    #[serde(rename = "MySQLBackup")]
    Object,
    /// `keeper-agent pin`.
    #[serde(rename = "hand")]
    Hand,
}

/// `removing.json`: see [`REMOVING_FILE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Removing {
    pub started_at: DateTime<Utc>,
    pub owner: Owner,
}

/// A manifest of `server` with `databases` and no members, for the unit
/// tests of what reads manifests (one fixture, not one per test module).
#[cfg(test)]
pub(crate) fn sample(server: ServerInfo, databases: Vec<DatabaseEntry>) -> Manifest {
    Manifest {
        format_version: FORMAT_VERSION,
        agent_version: "test".into(),
        name: "b".into(),
        owner: None,
        server,
        started_at: DateTime::UNIX_EPOCH,
        finished_at: DateTime::UNIX_EPOCH,
        snapshot: Snapshot {
            consistency: Consistency::GlobalLock,
            lock_held_ms: None,
            gtid_executed: None,
            binlog: None,
            note: None,
        },
        max_allowed_packet: 16 << 20,
        largest_statement: 0,
        databases,
        members: vec![],
        compression: None,
        file: FileInfo {
            name: DUMP_FILE.into(),
            size: 0,
            sha256: "0".repeat(64),
        },
        differences: vec![],
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn member(kind: MemberKind) -> Member {
        Member {
            kind,
            database: Some("d".into()),
            table: None,
            chunk: None,
            offset: 0,
            length: 1,
            uncompressed_length: 1,
            rows: 0,
            sha256: "0".repeat(64),
        }
    }

    #[test]
    fn kind_names_are_the_manifests() {
        for kind in [
            MemberKind::Header,
            MemberKind::Sequences,
            MemberKind::Schema,
            MemberKind::Data,
            MemberKind::Routines,
            MemberKind::Views,
            MemberKind::Triggers,
            MemberKind::Events,
        ] {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::from(kind.name())
            );
        }
    }

    #[test]
    fn sequences_are_not_counted_as_tables() {
        let entry = |name: &str, kind| TableEntry {
            name: name.into(),
            kind,
            engine: "InnoDB".into(),
            rows: 1,
            transactional: true,
            read_under_lock: false,
            data_skipped: None,
            history: false,
            digest: None,
            deferred_indexes: Vec::new(),
        };
        let manifest = sample(
            ServerInfo {
                flavor: Flavor::Mariadb,
                version: "11.4".into(),
            },
            vec![DatabaseEntry {
                name: "shop".into(),
                charset: "utf8mb4".into(),
                collation: "utf8mb4_general_ci".into(),
                tables: vec![
                    entry("orders", TableKind::Table),
                    entry("order_no", TableKind::Sequence),
                ],
                definitions: Vec::new(),
            }],
        );
        assert_eq!(manifest.table_count(), 1);
    }

    #[test]
    fn only_backups_with_sequences_need_format_2() {
        let plain = [member(MemberKind::Header), member(MemberKind::Schema)];
        assert_eq!(
            Manifest::needed_format_version(&plain, Compression::Gzip),
            1
        );
        let with_sequences = [member(MemberKind::Header), member(MemberKind::Sequences)];
        assert_eq!(
            Manifest::needed_format_version(&with_sequences, Compression::Gzip),
            2
        );
    }

    #[test]
    fn only_dumps_that_are_not_gzip_need_format_3() {
        let with_sequences = [member(MemberKind::Header), member(MemberKind::Sequences)];
        for c in [Compression::Zstd, Compression::None] {
            assert_eq!(
                Manifest::needed_format_version(&with_sequences, c),
                FORMAT_VERSION,
                "this agent reads what it writes"
            );
        }
    }

    #[test]
    fn a_manifest_without_compression_is_gzip_and_names_agree() {
        let mut m = sample(
            ServerInfo {
                flavor: Flavor::Mariadb,
                version: "11.4".into(),
            },
            vec![],
        );
        m.members = vec![];
        let json = serde_json::to_value(&m).unwrap();
        assert!(json.get("compression").is_none(), "{json}");
        assert_eq!(m.compression(), Compression::Gzip);
        assert_eq!(m.dump_file(), "dump.sql.gz");
        m.file.sha256 = "a".repeat(64);
        assert!(Manifest::from_json(&m.to_json().unwrap()).is_ok());

        m.compression = Some(Compression::Zstd);
        let err = Manifest::from_json(&m.to_json().unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the manifest is inconsistent: the file is named dump.sql.gz but zstd dumps are dump.sql.zst"
        );
        m.file.name = "dump.sql.zst".into();
        let back = Manifest::from_json(&m.to_json().unwrap()).unwrap();
        assert_eq!(back.dump_file(), "dump.sql.zst");
        let text = String::from_utf8(m.to_json().unwrap()).unwrap();
        assert!(text.contains("\"compression\": \"zstd\""), "{text}");
    }

    #[test]
    fn skipped_data_has_stable_codes_and_is_optional() {
        let codes: Vec<String> = [
            DataSkipped::UnderlyingTables,
            DataSkipped::ExternalSource,
            DataSkipped::NoStorage,
        ]
        .iter()
        .map(|d| serde_json::to_string(d).unwrap())
        .collect();
        assert_eq!(
            codes,
            [
                "\"underlyingTables\"",
                "\"externalSource\"",
                "\"noStorage\""
            ]
        );
        assert_eq!(
            serde_json::to_string(&MemberKind::Sequences).unwrap(),
            "\"sequences\""
        );
        // A table entry written before the field existed still reads.
        let old: TableEntry = serde_json::from_str(
            r#"{"name":"t","kind":"table","engine":"InnoDB","rows":3,"transactional":true}"#,
        )
        .unwrap();
        assert_eq!(old.data_skipped, None);
        assert!(!old.history);
        // Manifests before digests: no digest, no definitions.
        assert_eq!(old.digest, None);
        let database: DatabaseEntry = serde_json::from_str(
            r#"{"name":"d","charset":"utf8mb4","collation":"utf8mb4_general_ci","tables":[]}"#,
        )
        .unwrap();
        assert!(database.definitions.is_empty());
        let entry = TableEntry {
            data_skipped: Some(DataSkipped::UnderlyingTables),
            ..old
        };
        let json = serde_json::to_string(&entry).unwrap();
        assert!(
            json.contains(r#""dataSkipped":"underlyingTables""#),
            "{json}"
        );
    }

    /// A manifest written before `differences` and `history` existed still
    /// reads (as a backup without differences or history), and a manifest
    /// without them writes neither field, so older agents read it as before.
    #[test]
    fn differences_and_history_are_optional() {
        let server = ServerInfo {
            flavor: Flavor::Mariadb,
            version: "10.11.6-MariaDB".into(),
        };
        let mut manifest = sample(
            server,
            vec![DatabaseEntry {
                name: "shop".into(),
                charset: "utf8mb4".into(),
                collation: "utf8mb4_general_ci".into(),
                tables: vec![TableEntry {
                    name: "t".into(),
                    kind: TableKind::Table,
                    engine: "InnoDB".into(),
                    rows: 0,
                    transactional: true,
                    read_under_lock: false,
                    data_skipped: None,
                    history: false,
                    digest: None,
                    deferred_indexes: Vec::new(),
                }],
                definitions: Vec::new(),
            }],
        );
        let json = String::from_utf8(manifest.to_json().unwrap()).unwrap();
        assert!(!json.contains("differences"), "{json}");
        assert!(!json.contains("history"), "{json}");
        let old = Manifest::from_json(json.as_bytes()).unwrap();
        assert!(old.differences.is_empty());
        assert_eq!(old, manifest);

        manifest.databases[0].tables[0].history = true;
        manifest.differences.push(Difference {
            object: "FUNCTION `shop`.`f`".into(),
            difference: "created under character_set_client sjis; restored under utf8mb4".into(),
        });
        let json = String::from_utf8(manifest.to_json().unwrap()).unwrap();
        assert!(json.contains(r#""history": true"#), "{json}");
        assert!(
            json.contains(r#""object": "FUNCTION `shop`.`f`""#),
            "{json}"
        );
        assert_eq!(Manifest::from_json(json.as_bytes()).unwrap(), manifest);
    }
}

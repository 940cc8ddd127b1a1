//! SQL text the dump writes: quoted identifiers, literals for every column
//! type, and the session preamble each member starts with.
//!
//! Values are read with the text protocol (the server's own rendering, which
//! for DECIMAL, dates and FLOAT/DOUBLE is exact and shortest round-trip) and
//! written as literals by column class:
//! - numbers as the server's text;
//! - BIT as `b'…'`;
//! - binary strings, BLOBs and spatial values (MySQL's internal geometry
//!   format: 4-byte SRID + WKB, which a GEOMETRY column takes back as is) as
//!   `_binary'…'` with backslash escapes: half the size of hex, so a row near
//!   `max_allowed_packet` still fits. Such members hold raw non-UTF-8 bytes;
//!   readers treat statements as bytes;
//! - text in utf8mb4, utf8mb3 or latin1 as `'…'` escaped: read through the
//!   utf8mb4 connection, whose conversion from and back to these character
//!   sets is exact (latin1 maps each of its 256 bytes to its own code
//!   point), or as `_binary'…'` when a value is not valid UTF-8;
//! - text in any other character set is read as its stored bytes: values
//!   of ASCII without a backslash are written as `'…'` (the same bytes in
//!   every ASCII-compatible set), others as a hex literal with the set's
//!   introducer (`_sjis X'835c'`). Converting them through utf8mb4 is not
//!   exact (measured on MariaDB 10.11): cp932 turns NEC-selected IBM codes
//!   into IBM ones (0xED5C comes back 0xFA78); sjis, cp932, gbk and big5
//!   store codes that have no Unicode mapping and come back as `?` (sjis
//!   0x875C, gbk 0xA15C, big5 0xC85C); sjis maps U+005C back to the
//!   full-width 0x815F, so even an ASCII backslash changes; and in these
//!   sets the second byte of a character may be 0x5C, a backslash to any
//!   reader that does not know the set. Hex is ASCII and exact whatever the
//!   set, at twice the size, which is why the common sets above keep
//!   escaped text;
//! - dates and times quoted as the server printed them (zero and invalid
//!   dates included; the data members' `sql_mode` accepts them).
//!
//! Backslash escapes cover `\0`, `\n`, `\r`, `\\`, `'` and `\x1a`, so no
//! literal contains a raw newline: in a data member every statement is
//! exactly one line.

use crate::mysql::ident;

/// `'…'` with the escapes above.
pub fn string_literal(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len() + 2);
    push_quoted(&mut out, text.as_bytes());
    // Escaping only inserts ASCII before ASCII bytes: still valid UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

fn push_quoted(out: &mut Vec<u8>, bytes: &[u8]) {
    out.reserve(bytes.len() + 2);
    out.push(b'\'');
    // Copy runs that need no escape in one go: most values have no special
    // byte at all, and a per-byte push was 6% of a sysbench dump's CPU.
    let mut rest = bytes;
    while let Some(at) = first_to_escape(rest) {
        out.extend_from_slice(&rest[..at]);
        if let Some(escaped) = escape(rest[at]) {
            out.extend_from_slice(escaped);
        }
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'\'');
}

/// The position of the first byte of `bytes` that [`escape`] escapes.
/// Looks at eight bytes at a time: a word with no byte below 0x20 (where
/// `\0`, `\n`, `\r` and `\x1a` are), no quote and no backslash holds none,
/// and most words of most values are such words. Checking byte by byte
/// was 7% of a sysbench dump's CPU without compression.
fn first_to_escape(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Non-zero if a byte of `w` is below `n` (n <= 0x80), exact for "any".
    let below = |w: u64, n: u64| w.wrapping_sub(ONES * n) & !w & HIGH;
    let (words, tail) = bytes.as_chunks::<8>();
    for (i, word) in words.iter().enumerate() {
        let w = u64::from_le_bytes(*word);
        if below(w, 0x20) | below(w ^ (ONES * 0x27), 1) | below(w ^ (ONES * 0x5c), 1) != 0
            && let Some(at) = word.iter().position(|&b| escape(b).is_some())
        {
            return Some(i * 8 + at);
        }
    }
    tail.iter()
        .position(|&b| escape(b).is_some())
        .map(|at| words.len() * 8 + at)
}

/// The backslash escape of a byte that cannot appear raw in a literal.
#[inline]
fn escape(b: u8) -> Option<&'static [u8]> {
    match b {
        0 => Some(b"\\0"),
        b'\n' => Some(b"\\n"),
        b'\r' => Some(b"\\r"),
        b'\\' => Some(b"\\\\"),
        b'\'' => Some(b"\\'"),
        0x1a => Some(b"\\Z"),
        _ => None,
    }
}

/// How a column's values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnClass {
    /// Integers, DECIMAL, DOUBLE, YEAR: the server's text, unquoted.
    Number,
    /// FLOAT: read as a DOUBLE (exact), since servers print FLOAT with
    /// only 6 significant digits, which does not read back the same bits.
    Float,
    Bit,
    /// Binary strings, BLOBs, spatial values.
    Binary,
    /// Character strings in a set the utf8mb4 connection carries exactly
    /// (or with none), JSON, dates and times.
    Text,
    /// Character strings (CHAR, VARCHAR, TEXT, ENUM, SET) in any other
    /// character set: read as their stored bytes, written in that set.
    StoredText(Charset),
    /// An ENUM that has `''` as a member: read and written as its index.
    /// By name, the member `''` and the error value (index 0, what a
    /// non-strict insert of an invalid value stores) are the same `''`;
    /// inserting index 0 under the data members' non-strict `sql_mode`
    /// stores the error value again.
    EnumIndex,
}

/// The character set of a [`ColumnClass::StoredText`] column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charset {
    /// The set's name for its `_name` introducer; `None` for a set this agent
    /// does not know, whose values are written as plain hex (a binary string,
    /// which a text column stores byte for byte).
    name: Option<&'static str>,
    /// Bytes 0x00-0x7F are the ASCII characters, so a value of ASCII
    /// without a backslash may be written as plain text.
    ascii_compatible: bool,
}

/// Character sets whose text is carried exactly by the utf8mb4 connection.
/// `utf8` is MySQL 5.7/8.0's name of utf8mb3.
const CONNECTION_CHARSETS: &[&str] = &["utf8mb4", "utf8mb3", "utf8", "latin1"];

/// Every other character set MariaDB 10.x/11.x and MySQL 8 have, and
/// whether bytes 0x00-0x7F are ASCII in it (swe7 puts letters there; the
/// UCS/UTF-16/32 sets use several bytes for every character).
const STORED_CHARSETS: &[(&str, bool)] = &[
    ("armscii8", true),
    ("ascii", true),
    ("big5", true),
    ("cp1250", true),
    ("cp1251", true),
    ("cp1256", true),
    ("cp1257", true),
    ("cp850", true),
    ("cp852", true),
    ("cp866", true),
    ("cp932", true),
    ("dec8", true),
    ("eucjpms", true),
    ("euckr", true),
    ("gb18030", true),
    ("gb2312", true),
    ("gbk", true),
    ("geostd8", true),
    ("greek", true),
    ("hebrew", true),
    ("hp8", true),
    ("keybcs2", true),
    ("koi8r", true),
    ("koi8u", true),
    ("latin2", true),
    ("latin5", true),
    ("latin7", true),
    ("macce", true),
    ("macroman", true),
    ("sjis", true),
    ("swe7", false),
    ("tis620", true),
    ("ucs2", false),
    ("ujis", true),
    ("utf16", false),
    ("utf16le", false),
    ("utf32", false),
];

impl ColumnClass {
    /// The class of a column of `data_type` whose full type is
    /// `column_type` (`information_schema.COLUMNS`): [`ColumnClass::of`],
    /// except an ENUM that has `''` as a member.
    pub fn of_column(data_type: &str, column_type: &str, charset: Option<&str>) -> ColumnClass {
        if data_type.eq_ignore_ascii_case("enum")
            && enum_members(column_type).is_some_and(|m| m.iter().any(String::is_empty))
        {
            return ColumnClass::EnumIndex;
        }
        ColumnClass::of(data_type, charset)
    }

    /// From `information_schema.COLUMNS.DATA_TYPE` (lower case on both
    /// servers) and `CHARACTER_SET_NAME` (NULL for types without one).
    pub fn of(data_type: &str, charset: Option<&str>) -> ColumnClass {
        let data_type = data_type.to_ascii_lowercase();
        let character_string = matches!(
            data_type.as_str(),
            "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set"
        );
        if character_string
            && let Some(charset) = charset.map(str::to_ascii_lowercase)
            && !CONNECTION_CHARSETS.contains(&charset.as_str())
            && charset != "binary"
        {
            let known = STORED_CHARSETS.iter().find(|(name, _)| *name == charset);
            return ColumnClass::StoredText(Charset {
                name: known.map(|(name, _)| *name),
                ascii_compatible: known.is_some_and(|(_, ascii)| *ascii),
            });
        }
        match data_type.as_str() {
            "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "decimal"
            | "numeric" | "double" | "real" | "year" => ColumnClass::Number,
            "float" => ColumnClass::Float,
            "bit" => ColumnClass::Bit,
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob"
            | "geometry" | "point" | "linestring" | "polygon" | "multipoint"
            | "multilinestring" | "multipolygon" | "geometrycollection" | "geomcollection"
            | "vector" => ColumnClass::Binary,
            _ => ColumnClass::Text,
        }
    }
}

impl ColumnClass {
    /// The expression that reads a column of this class.
    pub fn select_expr(self, column: &str) -> String {
        match self {
            // float -> double is exact, and doubles print shortest round-trip.
            ColumnClass::Float => format!("({} + 0e0)", ident(column)),
            // The stored bytes, not their conversion to the connection's utf8mb4.
            ColumnClass::StoredText(_) => format!("CAST({} AS BINARY)", ident(column)),
            ColumnClass::EnumIndex => format!("({} + 0)", ident(column)),
            _ => ident(column),
        }
    }
}

/// The members of an `enum('a','b')` type as `information_schema` writes
/// it (quotes inside doubled); `None` when it is not that form.
pub fn enum_members(column_type: &str) -> Option<Vec<String>> {
    let inner = column_type
        .strip_prefix("enum(")
        .or_else(|| column_type.strip_prefix("ENUM("))?
        .strip_suffix(')')?;
    let mut members = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        if chars.next()? != '\'' {
            return None;
        }
        let mut member = String::new();
        loop {
            match chars.next()? {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    member.push('\'');
                }
                '\'' => break,
                c => member.push(c),
            }
        }
        members.push(member);
        match chars.next() {
            None => return Some(members),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

/// Appends one value (`None` = SQL NULL) as a literal of its column class.
pub fn push_value(out: &mut Vec<u8>, class: ColumnClass, value: Option<&[u8]>) {
    let Some(bytes) = value else {
        out.extend_from_slice(b"NULL");
        return;
    };
    match class {
        ColumnClass::Number | ColumnClass::Float | ColumnClass::EnumIndex => {
            // The server prints numbers in ASCII; anything else would be a
            // protocol surprise, so keep it a literal rather than raw SQL.
            if !bytes.is_empty()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.'))
            {
                out.extend_from_slice(bytes);
            } else {
                push_quoted(out, bytes);
            }
        }
        ColumnClass::Bit => {
            out.extend_from_slice(b"b'");
            if bytes.is_empty() {
                out.push(b'0');
            }
            for b in bytes {
                out.extend_from_slice(format!("{b:08b}").as_bytes());
            }
            out.push(b'\'');
        }
        ColumnClass::Binary => {
            out.extend_from_slice(b"_binary");
            push_quoted(out, bytes);
        }
        ColumnClass::Text => {
            if std::str::from_utf8(bytes).is_err() {
                out.extend_from_slice(b"_binary");
            }
            push_quoted(out, bytes);
        }
        ColumnClass::StoredText(charset) => {
            // sjis takes U+005C back as 0x815F: a backslash is never plain.
            if charset.ascii_compatible && bytes.is_ascii() && !bytes.contains(&b'\\') {
                push_quoted(out, bytes);
            } else {
                if let Some(name) = charset.name {
                    out.push(b'_');
                    out.extend_from_slice(name.as_bytes());
                    out.push(b' ');
                }
                push_hex(out, bytes);
            }
        }
    }
}

/// `X'…'`, written in place.
fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(b"X'");
    let start = out.len();
    out.resize(start + 2 * bytes.len(), 0);
    // The slice is exactly twice the input: encoding cannot fail.
    let _ = hex::encode_to_slice(bytes, &mut out[start..]);
    out.push(b'\'');
}

/// A definition whose text is not UTF-8 only because of string literals
/// with a character set introducer (`_latin1'\xE9'`, `_sjis'\x83\\'`,
/// `_binary'\xFF'`), written with those literals as hex (`_latin1
/// X'e9'`): the same bytes in the same set, in ASCII. `None` when anything
/// else is not UTF-8.
///
/// A server prints a view's definition canonically, each introduced literal
/// as its raw bytes in its own set, backslash-escaped; the rest is UTF-8.
/// Those bytes cannot travel in a UTF-8 dump, and read under a multi-byte
/// client set a trailing 0x5C byte (sjis ソ is 0x83 0x5C) would escape the
/// closing quote. As hex they read back as the same bytes whatever the
/// client set, and the server prints them canonically again, so the
/// definition comes back the same.
pub fn introduced_literals_as_hex(text: &[u8]) -> Option<String> {
    let mut out: Vec<u8> = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            quote @ (b'`' | b'"') => {
                // A quoted name (or an ANSI string): copied as it is.
                let end = closing_quote(text, i, quote)?;
                out.extend_from_slice(&text[i..end]);
                i = end;
            }
            b'\'' => {
                let end = closing_quote(text, i, b'\'')?;
                let literal = &text[i..end];
                if std::str::from_utf8(literal).is_ok() || !follows_introducer(&out) {
                    out.extend_from_slice(literal);
                } else {
                    out.push(b' ');
                    push_hex(&mut out, &unescape(&literal[1..literal.len() - 1]));
                }
                i = end;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The end (one past the closing quote) of the quoted text starting at
/// `start`: a doubled quote stays inside, and in `'` strings a backslash
/// escapes the next byte, as the server prints them.
fn closing_quote(text: &[u8], start: usize, quote: u8) -> Option<usize> {
    let mut i = start + 1;
    while i < text.len() {
        match text[i] {
            b'\\' if quote == b'\'' => i += 2,
            q if q == quote => {
                if text.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return Some(i + 1);
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// Whether `before` ends in a character set introducer (`_latin1`, maybe
/// followed by spaces): `_` and a name, not part of a longer word.
fn follows_introducer(before: &[u8]) -> bool {
    let trimmed = before.trim_ascii_end();
    let name_len = trimmed
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
        .count();
    let word = &trimmed[trimmed.len() - name_len..];
    word.len() > 1 && word[0] == b'_'
}

/// The bytes a quoted literal's body stands for (backslash escapes and
/// doubled quotes undone).
fn unescape(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        match (body[i], body.get(i + 1)) {
            (b'\\', Some(&next)) => {
                match next {
                    b'0' => out.push(0),
                    b'b' => out.push(8),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'Z' => out.push(0x1a),
                    // LIKE's escapes keep their backslash.
                    b'%' | b'_' => out.extend_from_slice(&[b'\\', next]),
                    other => out.push(other),
                }
                i += 2;
            }
            (b'\'', Some(b'\'')) => {
                out.push(b'\'');
                i += 2;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// The `sql_mode` data and schema members run under: non-strict (stored
/// values come back as they were, zero and invalid dates included), and
/// explicit zeros in AUTO_INCREMENT columns stay zeros.
pub const DATA_SQL_MODE: &str = "NO_AUTO_VALUE_ON_ZERO,ALLOW_INVALID_DATES";

/// What every member starts with, so it replays alone on a fresh connection.
///
/// Checks are off so that stored data comes back whatever it is: foreign
/// keys (tables load in any order), and on MariaDB CHECK constraints, which
/// rows written while `check_constraint_checks` was off may violate. That
/// variable exists since MariaDB 10.2.1; MySQL has no way to hold such rows
/// and no such variable, so it is set inside a `/*M!100201 … */` comment,
/// which MariaDB executes and MySQL skips, in the same statement as
/// `foreign_key_checks` (a statement of only a comment is an error on MySQL).
pub fn preamble(database: Option<&str>) -> String {
    let mut s = String::from(
        "SET NAMES utf8mb4;\n\
         SET time_zone = '+00:00';\n\
         SET foreign_key_checks = 0 /*M!100201 , check_constraint_checks = 0 */;\n\
         SET unique_checks = 0;\n",
    );
    s.push_str(&format!("SET sql_mode = '{DATA_SQL_MODE}';\n"));
    if let Some(db) = database {
        s.push_str(&format!("USE {};\n", ident(db)));
    }
    s
}

/// The statement that puts a new sequence `name` in the state read from
/// its source: the next value it hands out (`is_used = 0`: exactly `next`)
/// and, for a sequence that has cycled, its cycle count (`SETVAL`'s
/// `round`; without it a cycled sequence comes back as if it never had).
/// Empty when the values are not plain integers.
pub fn sequence_state(name: &str, next: &str, round: &str) -> String {
    let integer = |v: &str| {
        let digits = v.strip_prefix('-').unwrap_or(v);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    };
    if !integer(next) {
        return String::new();
    }
    if round != "0" && integer(round) {
        format!("SELECT SETVAL({name}, {next}, 0, {round});\n")
    } else {
        format!("SELECT SETVAL({name}, {next}, 0);\n")
    }
}

/// What a definition was created under, as `SHOW CREATE` reports it: the
/// client character set (the character set of its string literals), the
/// connection collation (their collation), and for stored programs the
/// database's collation of the time (the character set of parameters and
/// variables declared without one).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreationContext {
    pub client: Option<String>,
    pub connection: Option<String>,
    pub database: Option<String>,
}

impl CreationContext {
    /// Whether `create` is sent under its own client character set: the
    /// text of a dump is UTF-8, so a client character set other than UTF-8
    /// is only taken for a definition that is all ASCII (the same bytes in
    /// every such set); otherwise the definition is sent as utf8mb4, which
    /// the server converts exactly for every character a non-UTF-8 set can
    /// hold (the dump logs it).
    pub fn keeps_client(&self, create: &str) -> bool {
        let utf8 = |cs: &str| matches!(cs, "utf8mb4" | "utf8mb3" | "utf8");
        create.is_ascii() || self.client.as_deref().is_none_or(utf8)
    }

    /// The statements that put a session in this context for `create`,
    /// and back in a member's own (`SET NAMES utf8mb4`); both empty when
    /// nothing is known.
    fn enter_and_leave(&self, create: &str) -> (String, &'static str) {
        let mut set = Vec::new();
        if let Some(client) = &self.client {
            let client = if self.keeps_client(create) {
                client.as_str()
            } else {
                "utf8mb4"
            };
            set.push(format!("character_set_client = {}", string_literal(client)));
        }
        if let Some(connection) = &self.connection {
            set.push(format!(
                "collation_connection = {}",
                string_literal(connection)
            ));
        }
        if set.is_empty() {
            (String::new(), "")
        } else {
            (
                format!("SET SESSION {};\n", set.join(", ")),
                "SET NAMES utf8mb4;\n",
            )
        }
    }
}

/// The session clock an event is created under, and the statement that
/// gives the session its own clock back; both empty unless `passed`.
///
/// A server that creates an event whose one time (`AT`) or end (`ENDS`)
/// has passed drops it at once when it is `ON COMPLETION NOT PRESERVE`, and
/// disables it otherwise. The source kept such an event (its scheduler was
/// off, or the event disabled), so it is created again at the moment it was
/// last created or altered (`last_altered`, seconds since the epoch), when
/// its schedule was still to come, and comes back as it was, status
/// included. Only then: setting the clock needs `secure_timestamp` to
/// allow it.
pub fn event_clock(passed: bool, last_altered: Option<&str>) -> (String, &'static str) {
    match last_altered {
        Some(at) if passed && !at.is_empty() && at.bytes().all(|b| b.is_ascii_digit()) => (
            format!("SET TIMESTAMP = {at};\n"),
            "SET TIMESTAMP = DEFAULT;\n",
        ),
        _ => (String::new(), ""),
    }
}

/// Whether `create` (a system-versioned table's `SHOW CREATE TABLE`) puts
/// its history in two or more partitions by `SYSTEM_TIME LIMIT`. Its rows
/// come back whole, but not necessarily in the same history partitions:
/// the server files an inserted history row in its current history
/// partition and moves on to the next one only when an UPDATE or DELETE
/// starts, never during an INSERT, and rows cannot be placed by hand (an
/// `INSERT … PARTITION` naming another one is refused). So the backup
/// records the difference.
pub fn history_partitions_by_limit(create: &str) -> bool {
    let upper = create.to_ascii_uppercase();
    upper
        .split_once("PARTITION BY SYSTEM_TIME LIMIT")
        .is_some_and(|(_, partitions)| partitions.matches("` HISTORY").count() >= 2)
}

/// What a data member of a system-versioned table sets after the preamble
/// (MariaDB 10.11+): its rows are inserted with the history's own row start
/// and end.
pub const INSERT_HISTORY: &str = "SET SESSION system_versioning_insert_history = 1;\n";

/// `CREATE …` of a routine, trigger or event under its own `sql_mode` and
/// creation context, wrapped in `DELIMITER ;;` so the `mysql` client keeps
/// the body whole. The closing `;;` stands on a line of its own: a body may
/// end in a `--` or `#` comment (the server keeps it), which would take in
/// a delimiter on its line. When the database's collation was another one
/// when the program was created, the database has that collation while it
/// is created again (as `mysqldump` does), and its own after.
pub fn stored_program(
    sql_mode: &str,
    context: &CreationContext,
    database: (&str, &str),
    create: &str,
) -> String {
    let (name, collation_now) = database;
    let (switch, switch_back) = match &context.database {
        Some(then) if !collation_now.is_empty() && then != collation_now => (
            format!(
                "ALTER DATABASE {} COLLATE {};\n",
                ident(name),
                string_literal(then)
            ),
            format!(
                "ALTER DATABASE {} COLLATE {};\n",
                ident(name),
                string_literal(collation_now)
            ),
        ),
        _ => (String::new(), String::new()),
    };
    let (enter, leave) = context.enter_and_leave(create);
    format!(
        "SET SESSION sql_mode = {};\n{enter}{switch}DELIMITER ;;\n{create}\n;;\nDELIMITER ;\n{switch_back}{leave}SET SESSION sql_mode = '{DATA_SQL_MODE}';\n",
        string_literal(sql_mode)
    )
}

/// `CREATE VIEW …` under its creation context (the member's own context
/// after it).
pub fn view(context: &CreationContext, create: &str) -> String {
    let (enter, leave) = context.enter_and_leave(create);
    format!("{enter}{create};\n{leave}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn lit(class: ColumnClass, v: Option<&[u8]>) -> Vec<u8> {
        let mut out = Vec::new();
        push_value(&mut out, class, v);
        out
    }

    #[test]
    fn the_word_scan_finds_the_same_byte_as_a_byte_scan() {
        let naive = |b: &[u8]| b.iter().position(|&c| escape(c).is_some());
        // Every byte value at every position of values around a word's size,
        // after plain text and after bytes that look special to the word test
        // (tab, other control bytes, high bytes) but are not escaped.
        for len in 0..20 {
            for at in 0..len {
                for fill in [b'a', b'\t', 0x1f, 0x80, 0xff, b'&', b'['] {
                    for b in 0..=255u8 {
                        let mut v = vec![fill; len];
                        v[at] = b;
                        assert_eq!(first_to_escape(&v), naive(&v), "{v:?}");
                    }
                }
            }
        }
        let mut long = vec![b'x'; 1000];
        long[997] = b'\'';
        assert_eq!(first_to_escape(&long), Some(997));
    }

    #[test]
    fn strings_escape_what_breaks_a_literal() {
        assert_eq!(
            string_literal("a'b\\c\nd\re\0f\x1ag;"),
            "'a\\'b\\\\c\\nd\\re\\0f\\Zg;'"
        );
        assert_eq!(string_literal("😀 ü"), "'😀 ü'");
    }

    #[test]
    fn run_copying_escapes_like_byte_by_byte() {
        // Every byte value, at the start, middle and end, and runs of
        // specials next to each other.
        let all: Vec<u8> = (0..=255u8).collect();
        let mut samples = vec![all.clone(), b"''\\\n\r\0\x1a".to_vec(), Vec::new()];
        samples.push([b"abc".as_slice(), &all, b"xyz"].concat());
        for bytes in samples {
            let mut expected = vec![b'\''];
            for &b in &bytes {
                match escape(b) {
                    Some(e) => expected.extend_from_slice(e),
                    None => expected.push(b),
                }
            }
            expected.push(b'\'');
            let mut out = Vec::new();
            push_quoted(&mut out, &bytes);
            assert_eq!(out, expected);
        }
    }

    #[test]
    fn null_and_numbers() {
        assert_eq!(lit(ColumnClass::Number, None), b"NULL");
        assert_eq!(lit(ColumnClass::Text, None), b"NULL");
        assert_eq!(lit(ColumnClass::Number, Some(b"-12.500")), b"-12.500");
        assert_eq!(
            lit(ColumnClass::Number, Some(b"1.7976931348623157e308")),
            b"1.7976931348623157e308"
        );
        assert_eq!(lit(ColumnClass::Number, Some(b"")), b"''");
    }

    #[test]
    fn bits_are_binary_literals() {
        assert_eq!(lit(ColumnClass::Bit, Some(&[0x05])), b"b'00000101'");
        assert_eq!(
            lit(ColumnClass::Bit, Some(&[0x01, 0xff])),
            b"b'0000000111111111'"
        );
        assert_eq!(lit(ColumnClass::Bit, Some(&[])), b"b'0'");
    }

    #[test]
    fn binary_is_escaped_with_an_introducer() {
        assert_eq!(
            lit(ColumnClass::Binary, Some(&[0, b'\'', 0xff, b'\n', 0x1a])),
            b"_binary'\\0\\'\xff\\n\\Z'"
        );
        // Never a raw newline: data statements stay one line each.
        let all: Vec<u8> = (0..=255u8).collect();
        assert!(!lit(ColumnClass::Binary, Some(&all)).contains(&b'\n'));
    }

    #[test]
    fn text_that_is_not_utf8_keeps_its_bytes() {
        assert_eq!(
            lit(ColumnClass::Text, Some(b"caf\xe9")),
            b"_binary'caf\xe9'"
        );
        assert_eq!(
            lit(
                ColumnClass::Text,
                Some("0000-00-00 00:00:00.000001".as_bytes())
            ),
            b"'0000-00-00 00:00:00.000001'"
        );
    }

    #[test]
    fn column_classes() {
        assert_eq!(ColumnClass::of("decimal", None), ColumnClass::Number);
        assert_eq!(ColumnClass::of("DOUBLE", None), ColumnClass::Number);
        assert_eq!(ColumnClass::of("float", None), ColumnClass::Float);
        assert_eq!(ColumnClass::of("bit", None), ColumnClass::Bit);
        assert_eq!(ColumnClass::of("longblob", None), ColumnClass::Binary);
        assert_eq!(ColumnClass::of("point", None), ColumnClass::Binary);
        assert_eq!(ColumnClass::of("json", Some("utf8mb4")), ColumnClass::Text);
        assert_eq!(ColumnClass::of("enum", Some("utf8mb4")), ColumnClass::Text);
        assert_eq!(
            ColumnClass::of_column("enum", "enum('a','b')", Some("utf8mb4")),
            ColumnClass::Text
        );
        assert_eq!(
            ColumnClass::of_column("enum", "enum('','a')", Some("utf8mb4")),
            ColumnClass::EnumIndex
        );
        assert_eq!(
            ColumnClass::of_column("set", "set('','a')", Some("utf8mb4")),
            ColumnClass::Text
        );
        assert_eq!(ColumnClass::of("datetime", None), ColumnClass::Text);
    }

    fn stored(data_type: &str, charset: &str) -> ColumnClass {
        ColumnClass::of(data_type, Some(charset))
    }

    #[test]
    fn text_classes_follow_the_character_set() {
        // Carried exactly by the utf8mb4 connection, on MariaDB and MySQL
        // (MySQL 5.7/8.0 call utf8mb3 `utf8`).
        for cs in ["utf8mb4", "utf8mb3", "utf8", "latin1", "UTF8MB4"] {
            assert_eq!(stored("varchar", cs), ColumnClass::Text, "{cs}");
        }
        // Everything else is read as stored bytes, for every string type.
        for ty in [
            "char",
            "varchar",
            "tinytext",
            "text",
            "mediumtext",
            "longtext",
            "enum",
            "set",
        ] {
            assert!(
                matches!(stored(ty, "sjis"), ColumnClass::StoredText(_)),
                "{ty}"
            );
        }
        // Types whose charset is not about stored bytes stay text.
        assert_eq!(stored("json", "utf8mb4"), ColumnClass::Text);
        assert_eq!(stored("datetime", "sjis"), ColumnClass::Text);
        assert_eq!(stored("varchar", "binary"), ColumnClass::Text);
        assert_eq!(
            stored("varchar", "cp932").select_expr("n`ote"),
            "CAST(`n``ote` AS BINARY)"
        );
        assert_eq!(stored("varchar", "utf8mb4").select_expr("note"), "`note`");
    }

    #[test]
    fn stored_text_is_hex_with_its_introducer_unless_plain_ascii() {
        // ソ in sjis and cp932: a second byte of 0x5C.
        for cs in ["sjis", "cp932", "gbk", "big5"] {
            assert_eq!(
                lit(stored("varchar", cs), Some(&[0x83, 0x5c])),
                format!("_{cs} X'835c'").into_bytes()
            );
            assert_eq!(
                lit(stored("varchar", cs), Some(b"plain 'q'\n")),
                b"'plain \\'q\\'\\n'"
            );
            assert_eq!(
                lit(stored("varchar", cs), Some(b"C:\\dir")),
                format!("_{cs} X'433a5c646972'").into_bytes()
            );
            assert_eq!(lit(stored("varchar", cs), Some(b"")), b"''");
        }
        // Sets where ASCII bytes are not ASCII text are always hex.
        assert_eq!(
            lit(stored("varchar", "ucs2"), Some(b"\0a")),
            b"_ucs2 X'0061'"
        );
        assert_eq!(lit(stored("varchar", "swe7"), Some(b"[")), b"_swe7 X'5b'");
        // A set this agent does not know: a binary hex string, stored as is.
        assert_eq!(lit(stored("text", "newcs9"), Some(b"abc")), b"X'616263'");
        assert_eq!(lit(stored("text", "sjis"), None), b"NULL");
    }

    #[test]
    fn enum_members_are_read_as_the_catalog_writes_them() {
        assert_eq!(
            enum_members("enum('','a','it''s','x,y')"),
            Some(vec!["".into(), "a".into(), "it's".into(), "x,y".into()])
        );
        assert_eq!(enum_members("enum('a')"), Some(vec!["a".into()]));
        assert_eq!(enum_members("set('a')"), None);
        assert_eq!(enum_members("enum('a"), None);
        assert_eq!(enum_members("enum('a'x)"), None);
        // An index is written as the number it is.
        let mut out = Vec::new();
        push_value(&mut out, ColumnClass::EnumIndex, Some(b"0"));
        assert_eq!(out, b"0");
        assert_eq!(ColumnClass::EnumIndex.select_expr("e"), "(`e` + 0)");
    }

    #[test]
    fn a_sequences_state_keeps_its_cycle_count() {
        assert_eq!(
            sequence_state("`s`", "5", "0"),
            "SELECT SETVAL(`s`, 5, 0);\n"
        );
        assert_eq!(
            sequence_state("`s`", "-2", "3"),
            "SELECT SETVAL(`s`, -2, 0, 3);\n"
        );
        assert_eq!(sequence_state("`s`", "", "0"), "");
        assert_eq!(sequence_state("`s`", "1e3", "0"), "");
        assert_eq!(
            sequence_state("`s`", "7", "x"),
            "SELECT SETVAL(`s`, 7, 0);\n"
        );
    }

    #[test]
    fn stored_programs_run_under_their_mode_and_restore_the_data_mode() {
        let s = stored_program(
            "STRICT_TRANS_TABLES",
            &CreationContext::default(),
            ("shop", "utf8mb4_general_ci"),
            "CREATE PROCEDURE p() SELECT ';'",
        );
        assert_eq!(
            s,
            "SET SESSION sql_mode = 'STRICT_TRANS_TABLES';\nDELIMITER ;;\nCREATE PROCEDURE p() SELECT ';'\n;;\nDELIMITER ;\nSET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO,ALLOW_INVALID_DATES';\n"
        );
    }

    fn latin1() -> CreationContext {
        CreationContext {
            client: Some("latin1".into()),
            connection: Some("latin1_german1_ci".into()),
            database: Some("latin1_swedish_ci".into()),
        }
    }

    #[test]
    fn stored_programs_are_created_again_in_their_creation_context() {
        let s = stored_program(
            "",
            &latin1(),
            ("shop", "utf8mb4_general_ci"),
            "CREATE FUNCTION f(p TEXT) RETURNS INT RETURN 1",
        );
        assert_eq!(
            s,
            "SET SESSION sql_mode = '';\n\
             SET SESSION character_set_client = 'latin1', collation_connection = 'latin1_german1_ci';\n\
             ALTER DATABASE `shop` COLLATE 'latin1_swedish_ci';\n\
             DELIMITER ;;\nCREATE FUNCTION f(p TEXT) RETURNS INT RETURN 1\n;;\nDELIMITER ;\n\
             ALTER DATABASE `shop` COLLATE 'utf8mb4_general_ci';\n\
             SET NAMES utf8mb4;\n\
             SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO,ALLOW_INVALID_DATES';\n"
        );
        // The database's collation is the same: no switch.
        let same = stored_program(
            "",
            &latin1(),
            ("shop", "latin1_swedish_ci"),
            "CREATE PROCEDURE p() SELECT 1",
        );
        assert!(!same.contains("ALTER DATABASE"), "{same}");
    }

    #[test]
    fn utf8_text_is_never_sent_as_another_character_set() {
        let v = view(&latin1(), "CREATE VIEW v AS SELECT 'é' AS e");
        assert_eq!(
            v,
            "SET SESSION character_set_client = 'utf8mb4', collation_connection = 'latin1_german1_ci';\n\
             CREATE VIEW v AS SELECT 'é' AS e;\nSET NAMES utf8mb4;\n"
        );
        let v = view(&latin1(), "CREATE VIEW v AS SELECT 'e' AS e");
        assert!(
            v.starts_with("SET SESSION character_set_client = 'latin1',"),
            "{v}"
        );
        assert_eq!(
            view(&CreationContext::default(), "CREATE VIEW v AS SELECT 1"),
            "CREATE VIEW v AS SELECT 1;\n"
        );
    }

    #[test]
    fn introduced_literals_that_are_not_utf8_become_hex() {
        // As MariaDB prints a view: raw bytes in their own set, escaped.
        let view = b"select _latin1'\xe9' AS `l`,_sjis'\x83\\\\' AS `s`,_binary'\xff\\'\\0' AS `b`,'\xc3\xa9' AS `u`,_latin1'plain' AS `p`";
        assert_eq!(
            introduced_literals_as_hex(view).unwrap(),
            "select _latin1 X'e9' AS `l`,_sjis X'835c' AS `s`,_binary X'ff2700' AS `b`,'\u{e9}' AS `u`,_latin1'plain' AS `p`"
        );
        // Quoted names and doubled quotes are not literals' ends.
        assert_eq!(
            introduced_literals_as_hex(b"select _latin1'a''\xe9' AS `x'y`").unwrap(),
            "select _latin1 X'6127e9' AS `x'y`"
        );
        // Other non-UTF-8 text cannot be written: the backup says so.
        assert_eq!(introduced_literals_as_hex(b"select '\xe9'"), None);
        assert_eq!(introduced_literals_as_hex(b"select `\xe9`"), None);
        assert_eq!(introduced_literals_as_hex(b"select x_latin1 '\xe9'"), None);
        assert_eq!(introduced_literals_as_hex(b"select _latin1'\xe9"), None);
    }

    #[test]
    fn history_filed_by_limit_in_several_partitions_is_told_apart() {
        let limit = "CREATE TABLE `t` (\n  `x` int(11) DEFAULT NULL\n) ENGINE=InnoDB WITH SYSTEM VERSIONING\n PARTITION BY SYSTEM_TIME LIMIT 2\n(PARTITION `h1` HISTORY ENGINE = InnoDB,\n PARTITION `h2` HISTORY ENGINE = InnoDB,\n PARTITION `cur` CURRENT ENGINE = InnoDB)";
        assert!(history_partitions_by_limit(limit));
        // One history partition: every history row goes there anyway.
        let one = limit.replace(" PARTITION `h2` HISTORY ENGINE = InnoDB,\n", "");
        assert!(!history_partitions_by_limit(&one));
        // By INTERVAL, a row's partition follows from its row end.
        let interval = limit.replace(
            "LIMIT 2",
            "INTERVAL 1 MONTH STARTS TIMESTAMP'2024-01-01 00:00:00'",
        );
        assert!(!history_partitions_by_limit(&interval));
    }

    #[test]
    fn an_event_whose_time_has_passed_is_created_at_its_own_moment() {
        assert_eq!(
            event_clock(true, Some("1561939200")),
            (
                "SET TIMESTAMP = 1561939200;\n".to_owned(),
                "SET TIMESTAMP = DEFAULT;\n"
            )
        );
        // Still to come: the session's own clock.
        assert_eq!(event_clock(false, Some("1561939200")), (String::new(), ""));
        // Nothing usable to set the clock to.
        for odd in [None, Some(""), Some("1561939200.5"), Some("-1")] {
            assert_eq!(event_clock(true, odd), (String::new(), ""), "{odd:?}");
        }
    }

    #[test]
    fn preamble_sets_the_session_and_database() {
        let p = preamble(Some("shop"));
        assert!(p.starts_with("SET NAMES utf8mb4;\n"));
        assert!(p.contains("SET time_zone = '+00:00';\n"));
        assert!(
            p.contains("SET foreign_key_checks = 0 /*M!100201 , check_constraint_checks = 0 */;\n")
        );
        assert!(p.contains("SET unique_checks = 0;\n"));
        assert!(p.ends_with("USE `shop`;\n"));
        assert!(!preamble(None).contains("USE"));
    }

    #[test]
    fn check_constraints_are_off_on_mariadb_only() {
        // What MySQL runs: the comment is skipped, the statement stays valid.
        let p = preamble(None);
        let line = p
            .lines()
            .find(|l| l.contains("check_constraint_checks"))
            .unwrap();
        let (mysql, comment) = line.split_once("/*").unwrap();
        assert_eq!(mysql.trim_end(), "SET foreign_key_checks = 0");
        // What MariaDB 10.2.1 and later run: one SET of both variables.
        let body = comment
            .strip_prefix("M!100201")
            .and_then(|c| c.strip_suffix("*/;"))
            .unwrap();
        assert_eq!(
            format!("{mysql}{body}")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            "SET foreign_key_checks = 0 , check_constraint_checks = 0"
        );
    }
}

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
//! - text as `'…'` escaped (the connection is utf8mb4), or as `_binary'…'`
//!   when a value is not valid UTF-8;
//! - dates and times quoted as the server printed them (zero and invalid
//!   dates included; the data members' `sql_mode` accepts them).
//!
//! Backslash escapes cover `\0`, `\n`, `\r`, `\\`, `'` and `\x1a`, so no
//! literal contains a raw newline: in a data member every statement is
//! exactly one line.

/// A quoted identifier: backticks around, backticks inside doubled.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

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
    while let Some(at) = rest.iter().position(|&b| escape(b).is_some()) {
        out.extend_from_slice(&rest[..at]);
        if let Some(escaped) = escape(rest[at]) {
            out.extend_from_slice(escaped);
        }
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'\'');
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
    /// Character strings, ENUM, SET, JSON, dates and times.
    Text,
}

impl ColumnClass {
    /// From `information_schema.COLUMNS.DATA_TYPE` (lower case on both servers).
    pub fn of(data_type: &str) -> ColumnClass {
        match data_type.to_ascii_lowercase().as_str() {
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
            _ => ident(column),
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
        ColumnClass::Number | ColumnClass::Float => {
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
    }
}

/// The `sql_mode` data and schema members run under: non-strict (stored
/// values come back as they were, zero and invalid dates included), and
/// explicit zeros in AUTO_INCREMENT columns stay zeros.
pub const DATA_SQL_MODE: &str = "NO_AUTO_VALUE_ON_ZERO,ALLOW_INVALID_DATES";

/// What every member starts with, so it replays alone on a fresh connection.
pub fn preamble(database: Option<&str>) -> String {
    let mut s = String::from(
        "SET NAMES utf8mb4;\n\
         SET time_zone = '+00:00';\n\
         SET foreign_key_checks = 0;\n\
         SET unique_checks = 0;\n",
    );
    s.push_str(&format!("SET sql_mode = '{DATA_SQL_MODE}';\n"));
    if let Some(db) = database {
        s.push_str(&format!("USE {};\n", ident(db)));
    }
    s
}

/// `CREATE …` of a routine, trigger or event under its own `sql_mode`,
/// wrapped in `DELIMITER ;;` so the `mysql` client keeps the body whole.
pub fn stored_program(sql_mode: &str, create: &str) -> String {
    format!(
        "SET SESSION sql_mode = {};\nDELIMITER ;;\n{create} ;;\nDELIMITER ;\nSET SESSION sql_mode = '{DATA_SQL_MODE}';\n",
        string_literal(sql_mode)
    )
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
    fn identifiers_double_backticks() {
        assert_eq!(ident("plain"), "`plain`");
        assert_eq!(ident("we`ird na'me"), "`we``ird na'me`");
        assert_eq!(ident("ünï 😀"), "`ünï 😀`");
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
        assert_eq!(ColumnClass::of("decimal"), ColumnClass::Number);
        assert_eq!(ColumnClass::of("DOUBLE"), ColumnClass::Number);
        assert_eq!(ColumnClass::of("float"), ColumnClass::Float);
        assert_eq!(ColumnClass::of("bit"), ColumnClass::Bit);
        assert_eq!(ColumnClass::of("longblob"), ColumnClass::Binary);
        assert_eq!(ColumnClass::of("point"), ColumnClass::Binary);
        assert_eq!(ColumnClass::of("json"), ColumnClass::Text);
        assert_eq!(ColumnClass::of("enum"), ColumnClass::Text);
        assert_eq!(ColumnClass::of("datetime"), ColumnClass::Text);
    }

    #[test]
    fn stored_programs_run_under_their_mode_and_restore_the_data_mode() {
        let s = stored_program("STRICT_TRANS_TABLES", "CREATE PROCEDURE p() SELECT ';'");
        assert_eq!(
            s,
            "SET SESSION sql_mode = 'STRICT_TRANS_TABLES';\nDELIMITER ;;\nCREATE PROCEDURE p() SELECT ';' ;;\nDELIMITER ;\nSET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO,ALLOW_INVALID_DATES';\n"
        );
    }

    #[test]
    fn preamble_sets_the_session_and_database() {
        let p = preamble(Some("shop"));
        assert!(p.starts_with("SET NAMES utf8mb4;\n"));
        assert!(p.contains("SET time_zone = '+00:00';\n"));
        assert!(p.contains("SET foreign_key_checks = 0;\n"));
        assert!(p.contains("SET unique_checks = 0;\n"));
        assert!(p.ends_with("USE `shop`;\n"));
        assert!(!preamble(None).contains("USE"));
    }
}

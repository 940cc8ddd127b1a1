//! Splitting a member's SQL text into the statements the server executes.
//!
//! The dump is written for the `mysql`/`mariadb` command-line client too, so it
//! uses the client's own syntax that the server does not understand:
//! `DELIMITER ;;` lines around routine, trigger and event bodies. No
//! well-kept crate splits MySQL-client scripts this way (`sqlparser` parses
//! statements into an AST, rejects much MySQL/MariaDB DDL and has no
//! `DELIMITER`), so this is a small hand-written scanner that follows what
//! the client does:
//!
//! - `'…'` and `"…"` strings with backslash escapes and doubled quotes,
//!   `` `…` `` identifiers with doubled backticks: a delimiter inside is text;
//! - `-- ` (dash dash and a space or line end), `#` and `/* … */` comments:
//!   leading ones are dropped, ones inside a statement are sent (the server
//!   skips them), and a delimiter inside any comment is text;
//! - `/*! … */` and `/*M! … */` executable comments are kept: they are code;
//! - `DELIMITER xx` at the start of a statement changes the delimiter until
//!   the next `DELIMITER` line.
//!
//! The text is bytes, not `str`: a dump may hold `_binary'…'` literals with
//! any byte values, and `mysql_async` sends `&[u8]` queries as they are. In
//! utf8mb4 (every member starts with `SET NAMES utf8mb4`) no byte of a
//! multi-byte character is ASCII, so scanning bytes for quotes and delimiters
//! is exact.
//!
//! A backslash escapes the next byte in strings unless the session's
//! `sql_mode` holds `NO_BACKSLASH_ESCAPES`, as in the server; under
//! `ANSI_QUOTES` (also implied by ANSI, ORACLE and the other composite
//! modes that hold it) `"…"` is a quoted name, where a backslash is text,
//! as the `mariadb` client also reads it. The client
//! learns the mode from the server's status flag after each statement; this
//! scanner, which also runs without a server (`verify`), learns it from the
//! text: a statement `SET [SESSION] sql_mode = '…'` with a literal mode
//! (what a dump writes before every stored program and at every member's
//! start) sets it for the statements after it. A member starts with
//! escapes on: it sets its own mode before any string that could differ.

/// Why a member's text cannot be split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// A string, comment or quoted name is not closed.
    #[error("the text ends inside a {0} that starts at byte {1}")]
    Unterminated(&'static str, usize),
    /// A `DELIMITER` line without a delimiter.
    #[error("a DELIMITER line at byte {0} names no delimiter")]
    EmptyDelimiter(usize),
}

/// One statement: its text without the delimiter, and where it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statement<'a> {
    pub text: &'a [u8],
    pub offset: usize,
}

/// An iterator over the statements of `sql`, handling `DELIMITER` lines.
pub struct Statements<'a> {
    sql: &'a [u8],
    pos: usize,
    delimiter: Vec<u8>,
    /// The session's `sql_mode` holds `NO_BACKSLASH_ESCAPES`.
    no_backslash_escapes: bool,
    /// The session's `sql_mode` holds `ANSI_QUOTES`: `"` quotes names.
    ansi_quotes: bool,
    failed: bool,
}

/// Splits `sql` into statements, lazily.
pub fn split(sql: &[u8]) -> Statements<'_> {
    Statements {
        sql,
        pos: 0,
        delimiter: b";".to_vec(),
        no_backslash_escapes: false,
        ansi_quotes: false,
        failed: false,
    }
}

impl<'a> Iterator for Statements<'a> {
    type Item = Result<Statement<'a>, SplitError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_statement() {
            Ok(Some(s)) => Some(Ok(s)),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

impl Statements<'_> {
    /// Whether a backslash escapes in the strings of the statement just
    /// returned: its `sql_mode` holds no `NO_BACKSLASH_ESCAPES`.
    pub fn backslash_escapes(&self) -> bool {
        !self.no_backslash_escapes
    }
}

impl<'a> Statements<'a> {
    fn next_statement(&mut self) -> Result<Option<Statement<'a>>, SplitError> {
        loop {
            self.skip_blank_and_comments()?;
            if self.pos >= self.sql.len() {
                return Ok(None);
            }
            if self.at_delimiter_command() {
                self.read_delimiter_command()?;
                continue;
            }
            let start = self.pos;
            let end = self.scan_statement()?;
            let text = trim_end(&self.sql[start..end]);
            if !text.is_empty() {
                if let Some(mode) = sets_sql_mode(text) {
                    self.no_backslash_escapes = mode.no_backslash_escapes;
                    self.ansi_quotes = mode.ansi_quotes;
                }
                return Ok(Some(Statement {
                    text,
                    offset: start,
                }));
            }
        }
    }

    /// Skips whitespace and non-executable comments before a statement.
    fn skip_blank_and_comments(&mut self) -> Result<(), SplitError> {
        let sql = self.sql;
        loop {
            while self.pos < sql.len() && sql[self.pos].is_ascii_whitespace() {
                self.pos += 1;
            }
            let rest = &sql[self.pos..];
            if is_line_comment(rest) {
                self.pos = line_end(sql, self.pos);
            } else if rest.starts_with(b"/*") && !is_executable_comment(rest) {
                self.pos = block_comment_end(sql, self.pos)?;
            } else {
                return Ok(());
            }
        }
    }

    fn at_delimiter_command(&self) -> bool {
        let rest = &self.sql[self.pos..];
        rest.len() > 9
            && rest[..9].eq_ignore_ascii_case(b"DELIMITER")
            && (rest[9] == b' ' || rest[9] == b'\t')
    }

    /// `DELIMITER xx`: the new delimiter is the first word after it, like the client.
    fn read_delimiter_command(&mut self) -> Result<(), SplitError> {
        let start = self.pos;
        let end = line_end(self.sql, self.pos);
        let args = &self.sql[start + 9..end];
        let word: Vec<u8> = args
            .iter()
            .copied()
            .skip_while(u8::is_ascii_whitespace)
            .take_while(|b| !b.is_ascii_whitespace())
            .collect();
        if word.is_empty() {
            return Err(SplitError::EmptyDelimiter(start));
        }
        self.delimiter = word;
        self.pos = end;
        Ok(())
    }

    /// Scans to the end of the statement starting at `self.pos`; returns the
    /// end of its text and moves past the delimiter.
    fn scan_statement(&mut self) -> Result<usize, SplitError> {
        let sql = self.sql;
        let mut i = self.pos;
        while i < sql.len() {
            if sql[i..].starts_with(&self.delimiter) {
                self.pos = i + self.delimiter.len();
                return Ok(i);
            }
            match sql[i] {
                quote @ (b'\'' | b'"' | b'`') => {
                    // A name in `"…"` (ANSI_QUOTES) has no escapes.
                    let name = quote == b'"' && self.ansi_quotes;
                    let escapes = !(self.no_backslash_escapes || name);
                    i = quote_end(sql, i, quote, escapes)?;
                }
                b'#' => i = line_end(sql, i),
                b'-' if is_line_comment(&sql[i..]) => i = line_end(sql, i),
                b'/' if sql[i..].starts_with(b"/*") => i = block_comment_end(sql, i)?,
                _ => i += 1,
            }
        }
        // The last statement may lack its delimiter, as the client allows.
        self.pos = sql.len();
        Ok(sql.len())
    }
}

/// `-- ` needs a space, control character or line end after the dashes; `#` always comments.
fn is_line_comment(rest: &[u8]) -> bool {
    match rest {
        [b'#', ..] => true,
        [b'-', b'-'] => true,
        [b'-', b'-', c, ..] => c.is_ascii_whitespace() || c.is_ascii_control(),
        _ => false,
    }
}

fn is_executable_comment(rest: &[u8]) -> bool {
    rest.starts_with(b"/*!") || rest.starts_with(b"/*M!")
}

/// The position of the newline ending the line at `from` (or the text's end).
fn line_end(sql: &[u8], from: usize) -> usize {
    sql[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(sql.len(), |p| from + p)
}

/// The position just past the `*/` closing the comment at `from`.
fn block_comment_end(sql: &[u8], from: usize) -> Result<usize, SplitError> {
    sql[from + 2..]
        .windows(2)
        .position(|w| w == b"*/")
        .map(|p| from + 2 + p + 2)
        .ok_or(SplitError::Unterminated("comment", from))
}

/// The position just past the quote closing the one at `from`. A doubled
/// quote is a closing and an opening quote, which this handles by itself;
/// a backslash escapes the next byte in strings when `backslash_escapes`.
fn quote_end(
    sql: &[u8],
    from: usize,
    quote: u8,
    backslash_escapes: bool,
) -> Result<usize, SplitError> {
    let mut i = from + 1;
    while i < sql.len() {
        let b = sql[i];
        if b == b'\\' && quote != b'`' && backslash_escapes {
            i += 2;
        } else if b == quote {
            return Ok(i + 1);
        } else {
            i += 1;
        }
    }
    let what = match quote {
        b'`' => "quoted identifier",
        _ => "string literal",
    };
    Err(SplitError::Unterminated(what, from))
}

/// What of a session's `sql_mode` changes how text splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct QuoteMode {
    no_backslash_escapes: bool,
    ansi_quotes: bool,
}

/// Modes that hold `ANSI_QUOTES` (MariaDB's composite modes among them).
const ANSI_QUOTES_MODES: &[&str] = &[
    "ansi_quotes",
    "ansi",
    "db2",
    "maxdb",
    "mssql",
    "oracle",
    "postgresql",
];

/// For `SET [SESSION] sql_mode = '…'` (also `@@sql_mode`,
/// `@@SESSION.sql_mode`): whether the new mode holds
/// `NO_BACKSLASH_ESCAPES` and `ANSI_QUOTES`. `None` for any other
/// statement, or a mode that is not a literal (the mode stays as it was).
fn sets_sql_mode(statement: &[u8]) -> Option<QuoteMode> {
    // Every statement of a restore passes here, data INSERTs of megabytes
    // among them: anything not starting with SET is answered before the
    // text is copied.
    if !statement
        .get(..3)
        .is_some_and(|head| head.eq_ignore_ascii_case(b"set"))
    {
        return None;
    }
    let text = std::str::from_utf8(statement).ok()?;
    let lower = text.to_ascii_lowercase();
    let rest = lower.strip_prefix("set")?;
    if !rest.starts_with(|c: char| c.is_ascii_whitespace()) {
        return None;
    }
    let rest = rest.trim_start();
    let rest = rest
        .strip_prefix("session")
        .filter(|r| r.starts_with(|c: char| c.is_ascii_whitespace()))
        .map_or(rest, str::trim_start);
    let rest = rest
        .strip_prefix("@@session.")
        .or_else(|| rest.strip_prefix("@@"))
        .unwrap_or(rest);
    let rest = rest.strip_prefix("sql_mode")?.trim_start();
    let rest = rest.strip_prefix('=')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let value = rest[1..].split(quote).next()?;
    let holds = |names: &[&str]| value.split(',').any(|mode| names.contains(&mode.trim()));
    Some(QuoteMode {
        no_backslash_escapes: holds(&["no_backslash_escapes"]),
        ansi_quotes: holds(ANSI_QUOTES_MODES),
    })
}

fn trim_end(text: &[u8]) -> &[u8] {
    let end = text
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |p| p + 1);
    &text[..end]
}

/// The first `max` characters of a statement, on one line, for messages.
pub fn preview(text: &[u8], max: usize) -> String {
    let lossy = String::from_utf8_lossy(text);
    let mut out = String::with_capacity(max + 3);
    let mut last_space = false;
    for (n, c) in lossy.chars().enumerate() {
        if n >= max {
            out.push('…');
            break;
        }
        let c = if c.is_whitespace() || c.is_control() {
            ' '
        } else {
            c
        };
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &[u8]) -> Vec<Vec<u8>> {
        split(sql)
            .map(|s| s.expect("splits").text.to_vec())
            .collect()
    }

    fn strs(sql: &str) -> Vec<String> {
        texts(sql.as_bytes())
            .into_iter()
            .map(|t| String::from_utf8(t).expect("utf8"))
            .collect()
    }

    #[test]
    fn strings_follow_the_sessions_no_backslash_escapes() {
        let sql = "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_BACKSLASH_ESCAPES';\n\
                   DELIMITER ;;\n\
                   CREATE FUNCTION f() RETURNS TEXT RETURN 'C:\\' -- a backslash ends it\n\
                   ;;\n\
                   DELIMITER ;\n\
                   SELECT 'a\\', 'b;c\\';\n\
                   SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO';\n\
                   SELECT 'it\\'s; fine';\n";
        assert_eq!(
            strs(sql),
            [
                "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_BACKSLASH_ESCAPES'",
                "CREATE FUNCTION f() RETURNS TEXT RETURN 'C:\\' -- a backslash ends it",
                "SELECT 'a\\', 'b;c\\'",
                "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'",
                "SELECT 'it\\'s; fine'",
            ]
        );
    }

    #[test]
    fn only_a_literal_sql_mode_changes_the_escapes() {
        for (statement, expected) in [
            ("SET sql_mode = 'NO_BACKSLASH_ESCAPES'", Some(true)),
            (
                "set  session  sql_mode=\"ansi,no_backslash_escapes\"",
                Some(true),
            ),
            ("SET @@SESSION.sql_mode = ''", Some(false)),
            ("SET @@sql_mode = 'NO_BACKSLASH_ESCAPES_X'", Some(false)),
            ("SET sql_mode = @saved", None),
            ("SET NAMES utf8mb4", None),
            ("SETTLE sql_mode = 'NO_BACKSLASH_ESCAPES'", None),
            ("SELECT 'SET sql_mode = 1'", None),
        ] {
            assert_eq!(
                sets_sql_mode(statement.as_bytes()).map(|m| m.no_backslash_escapes),
                expected,
                "{statement}"
            );
        }
    }

    #[test]
    fn double_quotes_quote_names_under_ansi_quotes() {
        // As the server reads it: `"a\"` is the name `a\`, no escape.
        let sql = "SET SESSION sql_mode = 'PIPES_AS_CONCAT,ANSI_QUOTES';\n\
                   DELIMITER ;;\n\
                   CREATE PROCEDURE p() SELECT 1 AS \"a\\\", 'b\"' AS \"c\"\"d;\"\n\
                   ;;\n\
                   DELIMITER ;\n\
                   SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO';\n\
                   SELECT \"it\\\"s; a string\";\n";
        assert_eq!(
            strs(sql),
            [
                "SET SESSION sql_mode = 'PIPES_AS_CONCAT,ANSI_QUOTES'",
                "CREATE PROCEDURE p() SELECT 1 AS \"a\\\", 'b\"' AS \"c\"\"d;\"",
                "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO'",
                "SELECT \"it\\\"s; a string\"",
            ]
        );
        for (mode, ansi) in [
            ("ANSI_QUOTES", true),
            ("oracle", true),
            ("REAL_AS_FLOAT,ANSI", true),
            ("ANSI_QUOTES_X,STRICT_ALL_TABLES", false),
            ("", false),
        ] {
            let set = format!("SET sql_mode = '{mode}'");
            assert_eq!(
                sets_sql_mode(set.as_bytes()).map(|m| m.ansi_quotes),
                Some(ansi),
                "{mode}"
            );
        }
    }

    #[test]
    fn plain_statements_and_blank_lines() {
        assert_eq!(
            strs("SET NAMES utf8mb4;\n\nUSE `db`;\nINSERT INTO t VALUES (1);\n"),
            ["SET NAMES utf8mb4", "USE `db`", "INSERT INTO t VALUES (1)"]
        );
    }

    #[test]
    fn last_statement_without_delimiter() {
        assert_eq!(strs("SELECT 1;\nSELECT 2"), ["SELECT 1", "SELECT 2"]);
    }

    #[test]
    fn delimiters_inside_quotes_are_text() {
        assert_eq!(
            strs("INSERT INTO t VALUES ('a;b', \"c;d\");\nCREATE TABLE `x;y` (a int);\n"),
            [
                "INSERT INTO t VALUES ('a;b', \"c;d\")",
                "CREATE TABLE `x;y` (a int)"
            ]
        );
    }

    #[test]
    fn escaped_and_doubled_quotes() {
        assert_eq!(
            strs(r"INSERT INTO t VALUES ('it\'s;', 'it''s;', 'back\\', `a``;b`);SELECT 2;"),
            [
                r"INSERT INTO t VALUES ('it\'s;', 'it''s;', 'back\\', `a``;b`)",
                "SELECT 2"
            ]
        );
    }

    #[test]
    fn backslash_does_not_escape_in_identifiers() {
        assert_eq!(strs("SELECT `a\\`;SELECT 2;"), ["SELECT `a\\`", "SELECT 2"]);
    }

    #[test]
    fn comments_are_skipped_or_kept_and_hide_delimiters() {
        assert_eq!(
            strs(
                "-- header; with a semicolon\n# another; one\n/* block; comment */\nSELECT 1 -- trailing; comment\n;\nSELECT /* inner; */ 2;\n--\nSELECT 3;"
            ),
            [
                "SELECT 1 -- trailing; comment",
                "SELECT /* inner; */ 2",
                "SELECT 3"
            ]
        );
    }

    #[test]
    fn double_dash_without_space_is_not_a_comment() {
        assert_eq!(strs("SELECT 1--1;SELECT 2;"), ["SELECT 1--1", "SELECT 2"]);
    }

    #[test]
    fn executable_comments_are_kept() {
        assert_eq!(
            strs("/*!40101 SET NAMES utf8mb4 */;\n/*M!100100 SET @x=1 */;\nSELECT 1;"),
            [
                "/*!40101 SET NAMES utf8mb4 */",
                "/*M!100100 SET @x=1 */",
                "SELECT 1"
            ]
        );
    }

    #[test]
    fn delimiter_blocks() {
        let sql = "SET SESSION sql_mode='STRICT_TRANS_TABLES';\n\
                   DELIMITER ;;\n\
                   CREATE PROCEDURE p() BEGIN SELECT 'a;;b'; SELECT 2; END;;\n\
                   DELIMITER ;\n\
                   delimiter $$\n\
                   CREATE TRIGGER t BEFORE INSERT ON x FOR EACH ROW BEGIN SET NEW.a = 1; END$$\n\
                   DELIMITER ;\n\
                   SELECT 3;\n";
        assert_eq!(
            strs(sql),
            [
                "SET SESSION sql_mode='STRICT_TRANS_TABLES'",
                "CREATE PROCEDURE p() BEGIN SELECT 'a;;b'; SELECT 2; END",
                "CREATE TRIGGER t BEFORE INSERT ON x FOR EACH ROW BEGIN SET NEW.a = 1; END",
                "SELECT 3"
            ]
        );
    }

    #[test]
    fn delimiter_word_inside_a_statement_is_not_a_command() {
        assert_eq!(
            strs("SELECT 1 AS delimiter ;\nSELECT 'DELIMITER ;;';"),
            ["SELECT 1 AS delimiter", "SELECT 'DELIMITER ;;'"]
        );
    }

    #[test]
    fn binary_literals_with_odd_bytes() {
        let mut sql = b"INSERT INTO b VALUES (_binary'".to_vec();
        sql.extend_from_slice(&[0xff, 0x00, b';', b'\\', b'\'', 0x80, b'"', b'`', 0xfe]);
        sql.extend_from_slice(b"', X'3B27');\nSELECT 2;\n");
        let got = texts(&sql);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], sql[..sql.len() - 12].to_vec());
        assert_eq!(got[1], b"SELECT 2".to_vec());
    }

    #[test]
    fn utf8_beyond_the_bmp() {
        assert_eq!(
            strs("INSERT INTO t VALUES ('😀;𝄞');SELECT '日本';"),
            ["INSERT INTO t VALUES ('😀;𝄞')", "SELECT '日本'"]
        );
    }

    #[test]
    fn unterminated_string_is_an_error() {
        let got: Vec<_> = split(b"SELECT 1;\nINSERT INTO t VALUES ('abc").collect();
        assert_eq!(got.len(), 2);
        assert!(got[0].is_ok());
        assert_eq!(got[1], Err(SplitError::Unterminated("string literal", 32)));
    }

    #[test]
    fn unterminated_comment_is_an_error() {
        let got: Vec<_> = split(b"SELECT 1 /* oops;").collect();
        assert_eq!(got, [Err(SplitError::Unterminated("comment", 9))]);
    }

    #[test]
    fn empty_delimiter_is_an_error() {
        let got: Vec<_> = split(b"DELIMITER  \nSELECT 1;").collect();
        assert_eq!(got, [Err(SplitError::EmptyDelimiter(0))]);
    }

    #[test]
    fn preview_is_one_short_line() {
        assert_eq!(
            preview(b"INSERT  INTO\n t\tVALUES (1)", 80),
            "INSERT INTO t VALUES (1)"
        );
        assert_eq!(preview(b"abcdef", 3), "abc…");
    }
}

//! Secondary indexes a restore builds after the data instead of during it.
//!
//! InnoDB keeps every secondary index up to date row by row while rows are
//! inserted: each row's key goes into a B-tree in key order, which for a
//! key unrelated to the primary key (sysbench's `k`) is a random write.
//! Built after the data (`ALTER TABLE … ADD KEY …, ADD KEY …`), the same
//! index is one sorted bulk build per table. So the dump marks, per table,
//! the secondary indexes a restore may leave out of the `CREATE TABLE` and
//! add back after the table's rows (`deferredIndexes` in the manifest), and
//! the restore does exactly that.
//!
//! Why the dump decides and the manifest records, rather than the restore
//! parsing every `CREATE TABLE` and deciding alone: whether an index can be
//! built later without changing the table depends on facts that are not in
//! the statement — another table's foreign key referencing this one (it
//! needs an index on the referenced columns from the moment it exists), a
//! generated column (only the catalog says which columns are computed) —
//! and the dump reads them from the catalog anyway. The restore still
//! parses the statement it executes ([`parse_create_table`]) to cut out
//! exactly the recorded clauses, and builds nothing later that it did not
//! cut out. A backup whose manifest has no `deferredIndexes` (one written
//! before they existed) restores as before, every index in its `CREATE`.
//!
//! What is deferred, and why only that: the restored `SHOW CREATE TABLE`
//! must be the source's, byte for byte, including the order of the
//! indexes. MariaDB and MySQL order a table's keys as PRIMARY, UNIQUE, then
//! the others in the order they were added; an index added after the data
//! goes after the ones the `CREATE` kept. So only a *trailing run* of plain
//! non-unique B-tree keys is deferred (every non-unique index after the
//! first deferred one is deferred too, in its order; FULLTEXT keys, which
//! the server always lists last, aside): `KEY \`name\`
//! (\`col\`[(prefix)] [DESC], …) [USING BTREE] [COMMENT '…']` over
//! ordinary (not generated) columns of an InnoDB table that is neither
//! system-versioned nor part of a foreign key on either side. Anything else
//! — UNIQUE keys (a table without a primary key is clustered on its first
//! unique NOT NULL key), FULLTEXT (kept, not ending the run), SPATIAL,
//! HASH, functional (MySQL 8) and
//! invisible or IGNORED indexes, options this grammar does not know — stays
//! in the `CREATE` and ends the trailing run before it.

/// A `CREATE TABLE` statement split into the elements between its outer
/// parentheses (columns, keys, constraints, periods).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTable {
    /// The table's name, unquoted.
    pub name: String,
    /// Each element's byte range in the statement, without the commas and
    /// the whitespace around it.
    pub elements: Vec<(usize, usize)>,
}

/// Parses `CREATE TABLE \`name\` ( … ) …` as `SHOW CREATE TABLE` prints it
/// (and the dump writes it): strings `'…'` and `"…"` with backslash escapes
/// and doubled quotes (the server's `SHOW CREATE` always escapes a
/// backslash, whatever the `sql_mode`), names in backticks, `/* … */`
/// comments (`/*!80000 INVISIBLE */`) kept whole. `None` for anything else,
/// which the restore then executes as it is.
pub fn parse_create_table(text: &[u8]) -> Option<CreateTable> {
    let mut i = skip_ws(text, 0);
    for word in [&b"CREATE"[..], b"TABLE"] {
        let end = i.checked_add(word.len())?;
        if !text.get(i..end)?.eq_ignore_ascii_case(word) {
            return None;
        }
        if !text.get(end)?.is_ascii_whitespace() {
            return None;
        }
        i = skip_ws(text, end);
    }
    let (name, after) = backtick_ident(text, i)?;
    i = skip_ws(text, after);
    if text.get(i) != Some(&b'(') {
        return None;
    }
    i += 1;
    let mut depth = 1usize;
    let mut start = i;
    let mut elements = Vec::new();
    while i < text.len() {
        match text[i] {
            q @ (b'\'' | b'"' | b'`') => {
                i = quote_end(text, i, q)?;
                continue;
            }
            b'/' if text.get(i + 1) == Some(&b'*') => {
                let close = text.get(i + 2..)?.windows(2).position(|w| w == b"*/")?;
                i += 2 + close + 2;
                continue;
            }
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    elements.push(trimmed(text, start, i)?);
                    return Some(CreateTable { name, elements });
                }
            }
            b',' if depth == 1 => {
                elements.push(trimmed(text, start, i)?);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The byte range of `text[start..end]` without surrounding whitespace;
/// `None` for an empty element (not a statement the server printed).
fn trimmed(text: &[u8], mut start: usize, mut end: usize) -> Option<(usize, usize)> {
    while start < end && text[start].is_ascii_whitespace() {
        start += 1;
    }
    while end > start && text[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    (start < end).then_some((start, end))
}

fn skip_ws(text: &[u8], mut i: usize) -> usize {
    while text.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

/// Just past the quote closing the one at `from`; a doubled quote closes
/// and reopens, which the loop handles by itself.
fn quote_end(text: &[u8], from: usize, quote: u8) -> Option<usize> {
    let mut i = from + 1;
    while i < text.len() {
        let b = text[i];
        if b == b'\\' && quote != b'`' {
            i += 2;
        } else if b == quote {
            return Some(i + 1);
        } else {
            i += 1;
        }
    }
    None
}

/// A name in backticks at `at` (doubled backticks inside): the name and the
/// position after it.
fn backtick_ident(text: &[u8], at: usize) -> Option<(String, usize)> {
    if text.get(at) != Some(&b'`') {
        return None;
    }
    let mut end = quote_end(text, at, b'`')?;
    // A doubled backtick is part of the name: read on to the real end.
    while text.get(end) == Some(&b'`') {
        end = quote_end(text, end, b'`')?;
    }
    let inner = text.get(at + 1..end - 1)?;
    let name = std::str::from_utf8(inner).ok()?.replace("``", "`");
    Some((name, end))
}

/// A plain B-tree key clause: its name and its columns.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PlainKey {
    columns: Vec<String>,
}

/// `KEY \`n\` (\`a\`, \`b\`(10) DESC) [USING BTREE] [COMMENT '…']` and
/// nothing else (see the module's doc for why).
fn plain_key(element: &[u8]) -> Option<PlainKey> {
    let rest = element.strip_prefix(b"KEY ")?;
    let (_, mut i) = backtick_ident(rest, 0)?;
    let expect = |i: usize, lit: &[u8]| {
        rest.get(i..i + lit.len())
            .filter(|s| *s == lit)
            .map(|_| i + lit.len())
    };
    i = expect(i, b" (")?;
    let mut columns = Vec::new();
    loop {
        let (column, after) = backtick_ident(rest, i)?;
        columns.push(column);
        i = after;
        if rest.get(i) == Some(&b'(') {
            let digits = rest
                .get(i + 1..)?
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            if digits == 0 {
                return None;
            }
            i = expect(i + 1 + digits, b")")?;
        }
        if let Some(after) = expect(i, b" DESC").or_else(|| expect(i, b" ASC")) {
            i = after;
        }
        match rest.get(i) {
            Some(b',') => i = skip_ws(rest, i + 1),
            Some(b')') => {
                i += 1;
                break;
            }
            _ => return None,
        }
    }
    if let Some(after) = expect(i, b" USING BTREE") {
        i = after;
    }
    if let Some(after) = expect(i, b" COMMENT '") {
        i = quote_end(rest, after - 1, b'\'')?;
    }
    (i == rest.len()).then_some(PlainKey { columns })
}

/// Whether an element of the body is a non-unique index that the server
/// orders among plain keys by creation: the run of deferred keys may hold
/// none of these that is not deferred. FULLTEXT keys are not among them:
/// the server lists them after every other key whatever the order they
/// were made in (so one kept in the `CREATE` still comes last once the
/// deferred keys are added; the fidelity fixture shows it).
fn non_unique_index(element: &[u8]) -> bool {
    ["KEY ", "INDEX ", "SPATIAL ", "VECTOR "]
        .iter()
        .any(|p| element.starts_with(p.as_bytes()))
}

/// The trailing run of plain keys of `create` that a restore may build
/// after the data, in their order, each as its clause text. `ordinary`
/// tells whether a column is an ordinary (stored, not generated) one;
/// `auto_increment` names the table's AUTO_INCREMENT column, whose keys
/// stay (the server refuses a table whose counter is the first column of
/// no key, and the key that serves it may be a secondary one). The caller
/// has already checked the table itself (InnoDB, not system-versioned, in
/// no foreign key).
pub fn deferrable_indexes(
    create: &str,
    ordinary: &dyn Fn(&str) -> bool,
    auto_increment: Option<&str>,
) -> Vec<String> {
    let bytes = create.as_bytes();
    let Some(parsed) = parse_create_table(bytes) else {
        return Vec::new();
    };
    let elements: Vec<&[u8]> = parsed.elements.iter().map(|&(s, e)| &bytes[s..e]).collect();
    // A foreign key of the table itself needs an index on its columns; the
    // server would make one if the CREATE had none.
    if elements
        .iter()
        .any(|e| e.starts_with(b"CONSTRAINT ") && contains(e, b" FOREIGN KEY ("))
    {
        return Vec::new();
    }
    let mut run = Vec::new();
    for element in elements.iter().rev() {
        if !non_unique_index(element) {
            continue;
        }
        match plain_key(element) {
            Some(key)
                if key.columns.iter().all(|c| ordinary(c))
                    && key.columns.first().map(String::as_str) != auto_increment =>
            {
                // Only UTF-8 clauses go into the JSON manifest.
                let Ok(clause) = std::str::from_utf8(element) else {
                    break;
                };
                run.push(clause.to_owned());
            }
            _ => break,
        }
    }
    run.reverse();
    run
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `create` without the clauses `deferred` (each must be an element of it,
/// once, and not the first); `None` when the statement is not a `CREATE
/// TABLE` holding each of them exactly once — then nothing is deferred.
pub fn without_clauses(create: &[u8], deferred: &[String]) -> Option<Vec<u8>> {
    let parsed = parse_create_table(create)?;
    let mut cut: Vec<(usize, usize)> = Vec::with_capacity(deferred.len());
    for clause in deferred {
        let mut found = parsed
            .elements
            .iter()
            .enumerate()
            .filter(|&(_, &(s, e))| &create[s..e] == clause.as_bytes());
        let (index, &(_, end)) = found.next()?;
        if found.next().is_some() || index == 0 {
            return None;
        }
        // From the end of the element before it: its comma, the line break
        // and the clause go.
        cut.push((parsed.elements[index - 1].1, end));
    }
    cut.sort_unstable();
    let mut out = Vec::with_capacity(create.len());
    let mut at = 0;
    for (start, end) in cut {
        if start < at {
            return None;
        }
        out.extend_from_slice(&create[at..start]);
        at = end;
    }
    out.extend_from_slice(&create[at..]);
    Some(out)
}

/// The one statement that builds `clauses` on `table` of `database`.
pub fn add_indexes(database: &str, table: &str, clauses: &[String]) -> String {
    let adds: Vec<String> = clauses.iter().map(|c| format!("ADD {c}")).collect();
    format!(
        "ALTER TABLE {}.{} {}",
        crate::mysql::ident(database),
        crate::mysql::ident(table),
        adds.join(", ")
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SBTEST: &str = "CREATE TABLE `sbtest1` (\n  `id` int(11) NOT NULL AUTO_INCREMENT,\n  `k` int(11) NOT NULL DEFAULT 0,\n  `c` char(120) NOT NULL DEFAULT '',\n  `pad` char(60) NOT NULL DEFAULT '',\n  PRIMARY KEY (`id`),\n  KEY `k_1` (`k`)\n) ENGINE=InnoDB AUTO_INCREMENT=1001 DEFAULT CHARSET=latin1 COLLATE=latin1_swedish_ci";

    fn all(_: &str) -> bool {
        true
    }

    #[test]
    fn sysbench_defers_its_one_secondary_key_and_cuts_it_exactly() {
        let deferred = deferrable_indexes(SBTEST, &all, Some("id"));
        assert_eq!(deferred, vec!["KEY `k_1` (`k`)".to_owned()]);
        let cut = without_clauses(SBTEST.as_bytes(), &deferred).unwrap();
        let cut = String::from_utf8(cut).unwrap();
        assert!(cut.contains("PRIMARY KEY (`id`)\n) ENGINE=InnoDB"), "{cut}");
        assert_eq!(
            add_indexes("sbtest", "sbtest1", &deferred),
            "ALTER TABLE `sbtest`.`sbtest1` ADD KEY `k_1` (`k`)"
        );
    }

    #[test]
    fn elements_follow_quotes_comments_and_parentheses() {
        let create = "CREATE TABLE `a``b,(` (\n  `x,y` varchar(10) DEFAULT 'a,\\')(' COMMENT 'it''s, (',\n  `z` decimal(10,2) /*!80000 INVISIBLE */,\n  KEY `k` (`x,y`(3),`z`)\n) ENGINE=InnoDB";
        let parsed = parse_create_table(create.as_bytes()).unwrap();
        assert_eq!(parsed.name, "a`b,(");
        let texts: Vec<&str> = parsed
            .elements
            .iter()
            .map(|&(s, e)| &create[s..e])
            .collect();
        assert_eq!(
            texts,
            vec![
                "`x,y` varchar(10) DEFAULT 'a,\\')(' COMMENT 'it''s, ('",
                "`z` decimal(10,2) /*!80000 INVISIBLE */",
                "KEY `k` (`x,y`(3),`z`)",
            ]
        );
        assert_eq!(
            deferrable_indexes(create, &all, None),
            vec!["KEY `k` (`x,y`(3),`z`)".to_owned()]
        );
        assert_eq!(parse_create_table(b"CREATE VIEW `v` AS SELECT 1"), None);
        assert_eq!(parse_create_table(b"CREATE TABLE `t` (`a` int"), None);
    }

    #[test]
    fn only_a_trailing_run_of_plain_keys_is_deferred() {
        let create = "CREATE TABLE `t` (\n  `a` int NOT NULL,\n  `b` text,\n  `g` int GENERATED ALWAYS AS (`a` + 1) VIRTUAL,\n  PRIMARY KEY (`a`),\n  UNIQUE KEY `u` (`b`(10)),\n  KEY `early` (`a`),\n  FULLTEXT KEY `ft` (`b`),\n  KEY `p` (`b`(5)) USING BTREE COMMENT 'prefix, with a comma',\n  KEY `d` (`a` DESC,`b`(3))\n) ENGINE=InnoDB";
        let ordinary = |c: &str| c != "g";
        // The FULLTEXT key stays and ends nothing: the server lists it last.
        assert_eq!(
            deferrable_indexes(create, &ordinary, None),
            vec![
                "KEY `early` (`a`)".to_owned(),
                "KEY `p` (`b`(5)) USING BTREE COMMENT 'prefix, with a comma'".to_owned(),
                "KEY `d` (`a` DESC,`b`(3))".to_owned(),
            ]
        );
        // A key on a generated column stays, and so does every key before it.
        let on_generated = create.replace("KEY `d` (`a` DESC,`b`(3))", "KEY `d` (`g`)");
        assert!(deferrable_indexes(&on_generated, &ordinary, None).is_empty());
        for kept in [
            "KEY `i` (`a`) IGNORED",
            "KEY `i` (`a`) /*!80000 INVISIBLE */",
            "KEY `i` ((`a` + 1))",
            "SPATIAL KEY `s` (`a`)",
            "KEY `i` (`a`) USING HASH",
            "KEY `i` (`a`) KEY_BLOCK_SIZE=8",
        ] {
            let last = create.replace("KEY `d` (`a` DESC,`b`(3))", kept);
            assert!(deferrable_indexes(&last, &all, None).is_empty(), "{kept}");
        }
        let with_fk = create.replace(
            "KEY `d` (`a` DESC,`b`(3))",
            "KEY `d` (`a`),\n  CONSTRAINT `f` FOREIGN KEY (`a`) REFERENCES `p` (`id`)",
        );
        assert!(deferrable_indexes(&with_fk, &all, None).is_empty());
    }

    /// `upstream_tables.sql`'s `second_counter`: the counter's only key of
    /// its own is a secondary one; without it the CREATE is refused.
    #[test]
    fn the_key_that_serves_an_auto_increment_column_stays() {
        let create = "CREATE TABLE `second_counter` (\n  `k` int(11) NOT NULL,\n  `n` bigint(20) NOT NULL AUTO_INCREMENT,\n  `m` int,\n  PRIMARY KEY (`k`,`n`),\n  KEY `n` (`n`),\n  KEY `m` (`m`)\n) ENGINE=InnoDB AUTO_INCREMENT=77";
        assert_eq!(
            deferrable_indexes(create, &all, Some("n")),
            vec!["KEY `m` (`m`)".to_owned()]
        );
        assert_eq!(deferrable_indexes(create, &all, None).len(), 2);
    }

    #[test]
    fn clauses_not_in_the_statement_cut_nothing() {
        let missing = vec!["KEY `nope` (`k`)".to_owned()];
        assert_eq!(without_clauses(SBTEST.as_bytes(), &missing), None);
        let twice = vec!["KEY `k_1` (`k`)".to_owned(), "KEY `k_1` (`k`)".to_owned()];
        assert_eq!(without_clauses(SBTEST.as_bytes(), &twice), None);
        let first = vec!["`id` int(11) NOT NULL AUTO_INCREMENT".to_owned()];
        assert_eq!(without_clauses(SBTEST.as_bytes(), &first), None);
    }
}

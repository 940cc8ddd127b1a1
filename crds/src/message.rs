//! Messages that cross from the agent and the operator into status fields,
//! conditions and Events: one line, bounded, so a driver's multi-line error
//! or a stack trace can neither break `kubectl get` output nor grow an
//! object. Both binaries write such messages, so the rule lives here.

/// The first non-blank line of `message`, trimmed, cut at `max` bytes (on a
/// character boundary, marked with `…`). An empty message becomes `failed`:
/// a status line never says nothing.
pub fn status_line(message: &str, max: usize) -> String {
    let line = message
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("failed");
    if line.len() <= max {
        return line.to_owned();
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_line_and_bounds_it() {
        assert_eq!(status_line("boom\nstack trace", 100), "boom");
        assert_eq!(status_line("\n  \n  second  \n", 100), "second");
        assert_eq!(status_line("", 100), "failed");
        let long = "é".repeat(100);
        let cut = status_line(&long, 101);
        assert_eq!(cut.len(), 100 + '…'.len_utf8(), "cut on a boundary");
        assert!(cut.ends_with('…'));
    }
}

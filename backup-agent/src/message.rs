//! Text from elsewhere (a driver, a server, an SDK) made fit for one of our
//! one-line messages.

/// `text` on one line: every run of whitespace (newlines included) becomes
/// one space, so a multi-line driver or SDK message cannot break a log line
/// or a status message.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitespace_runs_become_one_space() {
        assert_eq!(
            one_line("  error 1045:\n\tdenied  \r\n"),
            "error 1045: denied"
        );
        assert_eq!(one_line(""), "");
    }
}

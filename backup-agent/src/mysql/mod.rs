//! What the agent knows about a MySQL or MariaDB server, for both engines
//! (`dump` and `restore`): how to reach it ([`target`]), what a driver error
//! means ([`Failure`]), which flavor and release it runs and what that
//! changes ([`Server`]), and how to write an identifier for it ([`ident`]).

mod failure;
mod server;
mod target;

pub use failure::Failure;
pub use server::{PositionQuery, Server, ServerFacts, inspect};
pub use target::{ConnectionError, connect, describe};

/// The schema holding Keeper's own records in a server (today: the restores
/// applied to it). `mysql_` marks it as belonging to the server's
/// administration rather than to an application (and keeps it apart from an
/// application database called `keeper`). A dump never holds it; a restore
/// never drops it.
pub const MARKER_SCHEMA: &str = "mysql_keeper";

/// Longest request id accepted (the width of its column in Keeper's record
/// of applied restores).
pub const MAX_REQUEST_ID: usize = 128;

/// Checks a `--request-id`: 1 to [`MAX_REQUEST_ID`] characters of letters,
/// digits and `.`, `_`, `-`, `:`, `/` (a hash, a name, `namespace/name:key`).
pub fn parse_request_id(value: &str) -> Result<String, String> {
    let ok = !value.is_empty()
        && value.len() <= MAX_REQUEST_ID
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-:/".contains(&b));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "a request id is 1 to {MAX_REQUEST_ID} letters, digits or . _ - : /"
        ))
    }
}

/// A quoted identifier: backticks around, backticks inside doubled.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        assert_eq!(parse_request_id("0123abcdef"), Ok("0123abcdef".into()));
        assert!(parse_request_id("shop/orders:0123abcdef").is_ok());
        assert!(parse_request_id("").is_err());
        assert!(parse_request_id("a b").is_err());
        assert!(parse_request_id("x'; DROP DATABASE y").is_err());
        assert!(parse_request_id(&"a".repeat(MAX_REQUEST_ID)).is_ok());
        assert!(parse_request_id(&"a".repeat(MAX_REQUEST_ID + 1)).is_err());
    }

    #[test]
    fn identifiers_are_quoted_with_backticks_doubled() {
        assert_eq!(ident("plain"), "`plain`");
        assert_eq!(ident("a`b"), "`a``b`");
        assert_eq!(ident("we`ird na'me"), "`we``ird na'me`");
        assert_eq!(ident("ünï 😀"), "`ünï 😀`");
        assert_eq!(ident("``"), "``````");
    }
}

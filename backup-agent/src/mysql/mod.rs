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

/// A quoted identifier: backticks around, backticks inside doubled.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_with_backticks_doubled() {
        assert_eq!(ident("plain"), "`plain`");
        assert_eq!(ident("a`b"), "`a``b`");
        assert_eq!(ident("we`ird na'me"), "`we``ird na'me`");
        assert_eq!(ident("ünï 😀"), "`ünï 😀`");
        assert_eq!(ident("``"), "``````");
    }
}

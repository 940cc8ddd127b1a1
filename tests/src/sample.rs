//! The project's own sample database, `bookshop` (`tests/fixtures/sample/`):
//! about 137,000 generated rows in tables with foreign keys, BLOB, JSON and
//! spatial columns, an Aria and a MyISAM table, a sequence, views, routines,
//! triggers and events. The demo and the round-trip tests load it.

use std::path::PathBuf;

use crate::{HarnessError, MariaDb};

/// The database the sample creates.
pub const DATABASE: &str = "bookshop";

/// The scripts, in the order they must run: tables, rows, then the code
/// objects (as a dump replays them, so triggers do not fire on the rows).
pub const SCRIPTS: [&str; 3] = ["schema.sql", "data.sql", "objects.sql"];

/// `tests/fixtures/sample` of the checkout.
pub fn dir() -> PathBuf {
    crate::workspace_root().join("tests/fixtures/sample")
}

/// Loads the sample into `server` with the `mariadb` client, as a user
/// would (replacing any `bookshop` already there).
pub fn load(server: &MariaDb) -> Result<(), HarnessError> {
    let dir = dir();
    SCRIPTS
        .iter()
        .try_for_each(|script| server.run_sql_file(&dir.join(script), None))
}

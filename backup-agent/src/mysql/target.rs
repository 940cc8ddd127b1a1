//! Reaching the server: one connection from `mysql_async` options (built
//! from the command line by [`crate::cli::ConnectArgs::opts`]), and the
//! target's name for messages.

use mysql_async::{Conn, Opts};

/// Why the connection settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// Neither `--password-file` nor `MYSQL_PWD` gave a password.
    #[error("no password for {target}: set MYSQL_PWD or pass --password-file")]
    NoPassword {
        /// `user@host:port` or `user@socket`.
        target: String,
    },
    /// `--password-file` cannot be read.
    #[error("cannot read the password file {path}: {source}")]
    PasswordFile {
        /// The file.
        path: String,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },
}

/// `user@host:port` or `user@/path/to/socket`, for messages (never the
/// password).
pub fn describe(opts: &Opts) -> String {
    let user = opts.user().unwrap_or("");
    match opts.socket() {
        Some(socket) => format!("{user}@{socket}"),
        None => format!("{user}@{}:{}", opts.ip_or_hostname(), opts.tcp_port()),
    }
}

/// Opens one connection.
pub async fn connect(opts: &Opts) -> Result<Conn, mysql_async::Error> {
    Conn::new(opts.clone()).await
}

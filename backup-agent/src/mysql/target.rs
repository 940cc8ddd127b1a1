//! How to reach the server: host and port, or a Unix socket, as the user
//! named on the command line, with the password from the environment or a
//! file (never from an argument).

use mysql_async::{Conn, Opts};

use crate::AgentContext;
use crate::cli::ConnectArgs;

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

impl ConnectArgs {
    /// The password: the first line of `--password-file`, else `MYSQL_PWD`.
    pub fn password(&self, ctx: &AgentContext) -> Result<String, ConnectionError> {
        if let Some(path) = &self.password_file {
            let text =
                std::fs::read_to_string(path).map_err(|source| ConnectionError::PasswordFile {
                    path: path.display().to_string(),
                    source,
                })?;
            return Ok(text.lines().next().unwrap_or_default().to_owned());
        }
        ctx.var("MYSQL_PWD")
            .map(str::to_owned)
            .ok_or_else(|| ConnectionError::NoPassword {
                target: describe(&self.opts_with(None)),
            })
    }

    /// `mysql_async` options for one connection (no pool reuse tricks):
    /// over `--socket` when given, else TCP to `--host`/`--port`.
    pub fn opts(&self, ctx: &AgentContext) -> Result<Opts, ConnectionError> {
        let password = self.password(ctx)?;
        Ok(self.opts_with(Some(password)))
    }

    fn opts_with(&self, password: Option<String>) -> Opts {
        let builder = mysql_async::OptsBuilder::default()
            .user(Some(self.user.clone()))
            .pass(password)
            .prefer_socket(false);
        match (&self.socket, &self.host) {
            (Some(socket), _) => builder.socket(Some(socket.display().to_string())),
            (None, host) => builder
                .ip_or_hostname(host.clone().unwrap_or_default())
                .tcp_port(self.port),
        }
        .into()
    }
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn args(host: Option<&str>, socket: Option<&str>) -> ConnectArgs {
        ConnectArgs {
            host: host.map(str::to_owned),
            port: 3307,
            socket: socket.map(PathBuf::from),
            user: "backup".into(),
            password_file: None,
        }
    }

    fn ctx(password: Option<&str>) -> AgentContext {
        AgentContext {
            env: password
                .map(|p| ("MYSQL_PWD".to_owned(), p.to_owned()))
                .into_iter()
                .collect(),
            kube: None,
        }
    }

    #[test]
    fn tcp_targets_name_host_and_port() {
        let opts = args(Some("db.example"), None)
            .opts(&ctx(Some("s3cret")))
            .expect("opts");
        assert_eq!(opts.socket(), None);
        assert_eq!(describe(&opts), "backup@db.example:3307");
        assert_eq!(opts.pass(), Some("s3cret"));
    }

    #[test]
    fn socket_targets_name_the_socket() {
        let opts = args(None, Some("/run/mysqld/mysqld.sock"))
            .opts(&ctx(Some("s3cret")))
            .expect("opts");
        assert_eq!(opts.socket(), Some("/run/mysqld/mysqld.sock"));
        assert_eq!(describe(&opts), "backup@/run/mysqld/mysqld.sock");
    }

    #[test]
    fn a_missing_password_names_the_target_not_a_secret() {
        let err = args(Some("db"), None)
            .opts(&ctx(None))
            .expect_err("no password");
        assert_eq!(
            err.to_string(),
            "no password for backup@db:3307: set MYSQL_PWD or pass --password-file"
        );
    }
}

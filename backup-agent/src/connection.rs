//! Connection settings from the command line and the environment.

use crate::AgentContext;
use crate::cli::ConnectArgs;

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("no password for {user}@{host}: set MYSQL_PWD or pass --password-file")]
    NoPassword { user: String, host: String },
    #[error("cannot read the password file {path}: {source}")]
    PasswordFile {
        path: String,
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
                user: self.user.clone(),
                host: self.host.clone(),
            })
    }

    /// `mysql_async` options for one connection (TCP, no pool reuse tricks).
    pub fn opts(&self, ctx: &AgentContext) -> Result<mysql_async::Opts, ConnectionError> {
        let password = self.password(ctx)?;
        Ok(mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(self.user.clone()))
            .pass(Some(password))
            .prefer_socket(false)
            .into())
    }

    /// `user@host:port`, for messages.
    pub fn describe(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }
}

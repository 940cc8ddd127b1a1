//! The MySQL Keeper backup agent: consistent streaming dumps over the MySQL
//! protocol, gzip members with a manifest of checksums, file and S3 storage,
//! verified restores.
//!
//! [`run`] is the whole program behind a thin `main`: it takes the arguments,
//! the environment and an optional Kubernetes client, so tests run the agent
//! in-process with the exact arguments and environment of a Job spec.

pub mod cli;
pub mod connection;
pub mod dump;
pub mod manifest;
pub mod prune;
pub mod report;
pub mod restore;
pub mod storage;

use std::collections::HashMap;
use std::ffi::OsString;

use clap::Parser;

pub use cli::Cli;

/// What the agent was given besides its arguments.
#[derive(Clone, Default)]
pub struct AgentContext {
    /// The process environment (or a test's stand-in for it).
    pub env: HashMap<String, String>,
    /// Set inside Kubernetes: the agent reports into `MySQLBackup` and
    /// `MySQLInstance` status. Outside, it only prints.
    pub kube: Option<kube::Client>,
}

impl std::fmt::Debug for AgentContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The environment holds secrets (MYSQL_PWD, AWS keys): never print it.
        f.debug_struct("AgentContext")
            .field("env", &format_args!("<{} variables>", self.env.len()))
            .field("kube", &self.kube.is_some())
            .finish()
    }
}

impl AgentContext {
    pub fn var(&self, name: &str) -> Option<&str> {
        self.env
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// Every way the agent can fail; each displays as one line that says what
/// failed, on which object, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Connection(#[from] connection::ConnectionError),
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    #[error(transparent)]
    Backup(#[from] dump::BackupError),
    #[error(transparent)]
    Restore(#[from] restore::RestoreError),
    #[error(transparent)]
    Prune(#[from] prune::PruneError),
}

/// Parses `args` (including the program name) and runs the command.
pub async fn run<I, T>(args: I, ctx: AgentContext) -> Result<(), AgentError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args).map_err(|e| AgentError::Usage(e.to_string()))?;
    run_cli(cli, ctx).await
}

/// Runs an already parsed command line.
pub async fn run_cli(cli: Cli, ctx: AgentContext) -> Result<(), AgentError> {
    match cli.command {
        cli::Command::Backup(args) => {
            dump::backup(args, &ctx).await?;
        }
        cli::Command::Restore(args) => {
            restore::restore(args, &ctx).await?;
        }
        cli::Command::Verify(args) => {
            restore::verify(args, &ctx).await?;
        }
        cli::Command::List(args) => {
            restore::list(args, &ctx).await?;
        }
        cli::Command::Prune(args) => {
            prune::prune(args, &ctx).await?;
        }
    }
    Ok(())
}

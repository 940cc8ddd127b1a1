//! The agent's command line (DESIGN, "Agent CLI"): the contract used by the
//! operator's Jobs, the tests and the docs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use mysql_async::Opts;

use crate::context::AgentContext;
use crate::mysql::{ConnectionError, describe};

#[derive(Debug, Parser)]
#[command(
    name = "keeper-agent",
    version,
    about = "MySQL Keeper backup agent: consistent dumps to files or S3, verified restores"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log as JSON lines (the default inside Kubernetes).
    #[arg(long, global = true, env = "KEEPER_LOG_JSON")]
    pub log_json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Dump the server's databases to URL/NAME/ (dump.sql.gz, .zst or plain
    /// dump.sql, and manifest.json).
    Backup(BackupArgs),
    /// Restore a backup folder into a server.
    Restore(RestoreArgs),
    /// Check a backup's every byte against its manifest, without a server.
    Verify(VerifyArgs),
    /// List the backups at a location.
    List(ListArgs),
    /// Delete one owner's expired backups at a location (never the newest
    /// good one, never a pinned one, never another owner's).
    #[command(long_about = PRUNE_ABOUT)]
    Prune(PruneArgs),
    /// Pin a backup: retention never deletes it (writes URL/NAME/keep.json).
    Pin(PinArgs),
    /// Lift a backup's pin (removes URL/NAME/keep.json).
    Unpin(PinArgs),
}

const PRUNE_ABOUT: &str = "\
Delete one owner's expired backups at a location.

Only the backups of one owner are ever considered: those whose manifest (or,
while running, in-progress.json) records the owner given by --instance
[NAMESPACE/]NAME (inside Kubernetes: KEEPER_NAMESPACE/KEEPER_INSTANCE). An
owner without a namespace matches the name part of a recorded owner; when it
matches more than one owner, prune refuses. Without --instance, prune acts for
the one owner found at the location and refuses when it finds several.

A backup is kept when any reason holds: pinned (keep.json, `keeper-agent pin`,
or spec.keep on its MySQLBackup), still running, the newest good backup,
within --keep-last, or younger than --max-age. The output names, for each
backup, why it was kept or deleted.

Backups with no recorded owner (made before owners were recorded, or without
--instance) are never deleted: they are listed as such. Delete them by hand
when they are no longer needed. Folders of other owners are not touched.";

/// `--instance`: whose backups a command records or acts on.
#[derive(Debug, Clone, Default, Args)]
pub struct OwnerArgs {
    /// The owner, `[NAMESPACE/]NAME`: recorded in the manifest of a backup;
    /// retention only considers this owner's backups (a NAME without
    /// namespace matches the name part of a recorded owner). Inside
    /// Kubernetes the Job's instance is used.
    #[arg(long = "instance", value_name = "[NAMESPACE/]NAME")]
    pub instance: Option<String>,
}

/// How to reach the server. The password comes from `MYSQL_PWD` or
/// `--password-file`, never from an argument.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// The server's host name or address (or `--socket`).
    #[arg(long, required_unless_present = "socket")]
    pub host: Option<String>,
    #[arg(long, default_value_t = 3306)]
    pub port: u16,
    /// A Unix socket of a server on this machine, instead of `--host`/`--port`.
    #[arg(long, conflicts_with_all = ["host", "port"])]
    pub socket: Option<PathBuf>,
    #[arg(long)]
    pub user: String,
    /// A file holding the password (its first line); otherwise `MYSQL_PWD`.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
}

/// S3 options beyond the standard AWS environment variables.
#[derive(Debug, Clone, Default, Args)]
pub struct S3Args {
    /// Path-style addressing (`endpoint/bucket/key`), needed by most S3-compatible stores.
    #[arg(long)]
    pub s3_force_path_style: bool,
    /// A PEM file of CA certificates to trust for the S3 endpoint.
    #[arg(long)]
    pub s3_ca_bundle: Option<PathBuf>,
}

/// Retention rules: a backup is kept when any rule keeps it; the newest good
/// backup is always kept.
#[derive(Debug, Clone, Default, Args)]
pub struct RetentionArgs {
    /// Keep the N newest good backups.
    #[arg(long)]
    pub keep_last: Option<u32>,
    /// Keep backups younger than this (a number and m, h, d or w: `30d`).
    #[arg(long)]
    pub max_age: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Comma-separated databases (default: every user database). Keeper's
    /// own `mysql_keeper` (the record of applied restores) is never dumped,
    /// even when named here.
    #[arg(long, value_delimiter = ',')]
    pub databases: Vec<String>,
    /// Connections that dump in parallel.
    #[arg(long, default_value_t = 2)]
    pub parallel: usize,
    /// How the dump is compressed: gzip (dump.sql.gz: `gunzip -c | mysql`
    /// restores it), zstd (dump.sql.zst, one frame per member: `zstd -dc |
    /// mysql`; faster, smaller) or none (plain dump.sql). The CRD's
    /// `spec.backup.compression`.
    #[arg(long, default_value_t = crate::compression::Compression::Gzip)]
    pub compression: crate::compression::Compression,
    /// gzip: 1 (fastest) to 9 (smallest); zstd: 1 to 19; ignored by none.
    /// Default 3 for both, as the CRD's `spec.backup.compressionLevel`.
    #[arg(long, default_value_t = crate::compression::DEFAULT_LEVEL, value_parser = clap::value_parser!(u32).range(1..=i64::from(keeper_crds::instance::MAX_ZSTD_LEVEL)))]
    pub compression_level: u32,
    /// Where backups live: file:///dir or s3://bucket/prefix.
    #[arg(long)]
    pub to: String,
    /// The backup's folder name (default: UTC yyyymmddThhmmssZ, or <instance>-<stamp> in Kubernetes).
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub owner: OwnerArgs,
    /// With --keep-last/--max-age, prune this owner's backups after a success
    /// (needs an owner: --instance outside Kubernetes).
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub s3: S3Args,
    /// For `cargo xtask bench` only, to measure what the digests cost:
    /// leaves out the row and definition digests, so such a backup is
    /// proven by row counts only.
    #[arg(long, hide = true)]
    pub no_digests: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// The backup folder: file:///dir/NAME or s3://bucket/prefix/NAME.
    #[arg(long)]
    pub from: String,
    /// Connections that replay data members in parallel.
    #[arg(long, default_value_t = 2)]
    pub parallel: usize,
    /// Replace tables that already exist in the target.
    #[arg(long)]
    pub overwrite: bool,
    /// Send every row as the dump's INSERT statements, never by `LOAD DATA
    /// LOCAL INFILE` (which the restore otherwise uses where it stores the
    /// same values, about twice as fast; for comparisons, and for servers
    /// where loads are unwanted).
    #[arg(long)]
    pub insert_only: bool,
    /// Run this restore at most once against the target's data: a request
    /// already recorded in the server's `mysql_keeper.applied_restores` ends
    /// at once ("already restored", exit 0) with nothing read, dropped or
    /// loaded; a new one is recorded there after it succeeded. Without it
    /// nothing is checked or recorded. The operator sets it.
    #[arg(long, value_parser = crate::mysql::parse_request_id)]
    pub request_id: Option<String>,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// The backup folder to check.
    #[arg(long)]
    pub from: String,
    /// Also prove it restorable: restore it into the server given by
    /// --host/--port or --socket and --user (which must hold no user
    /// database: a throwaway one), then compare every table's rows and every
    /// definition with the digests the backup recorded. Exit 0 only when all
    /// match; otherwise one line per difference.
    #[arg(long, requires = "user")]
    pub restore: bool,
    /// With --restore: the server's host name or address.
    #[arg(long, requires = "restore")]
    pub host: Option<String>,
    #[arg(long, default_value_t = 3306, requires = "restore")]
    pub port: u16,
    /// With --restore: a Unix socket of the server, instead of --host.
    #[arg(long, conflicts_with = "host", requires = "restore")]
    pub socket: Option<PathBuf>,
    /// With --restore: the account it restores with.
    #[arg(long, requires = "restore")]
    pub user: Option<String>,
    /// A file holding the password (its first line); otherwise `MYSQL_PWD`.
    #[arg(long, requires = "restore")]
    pub password_file: Option<PathBuf>,
    /// With --restore: connections that replay data members in parallel.
    #[arg(long, default_value_t = 2)]
    pub parallel: usize,
    #[command(flatten)]
    pub s3: S3Args,
}

impl VerifyArgs {
    /// The server to restore into, when --restore names one.
    pub fn connect(&self) -> Option<ConnectArgs> {
        if !self.restore || (self.host.is_none() && self.socket.is_none()) {
            return None;
        }
        Some(ConnectArgs {
            host: self.host.clone(),
            port: self.port,
            socket: self.socket.clone(),
            user: self.user.clone()?,
            password_file: self.password_file.clone(),
        })
    }
}

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// The location that holds backups.
    #[arg(long)]
    pub from: String,
    /// Also check every backup's bytes (reads them all).
    #[arg(long)]
    pub verify: bool,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Debug, Clone, Args)]
pub struct PruneArgs {
    /// The location that holds backups.
    #[arg(long)]
    pub from: String,
    #[command(flatten)]
    pub owner: OwnerArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Debug, Clone, Args)]
pub struct PinArgs {
    /// The backup folder: file:///dir/NAME or s3://bucket/prefix/NAME.
    #[arg(long)]
    pub from: String,
    #[command(flatten)]
    pub s3: S3Args,
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

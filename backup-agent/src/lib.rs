//! The MySQL Keeper backup agent: consistent streaming dumps over the MySQL
//! protocol, gzip members with a manifest of checksums, file and S3 storage,
//! verified restores.
//!
//! [`run`] is the whole program behind a thin `main`: it takes the arguments,
//! the environment and an optional Kubernetes client, so tests run the agent
//! in-process with the exact arguments and environment of a Job spec.

pub mod cli;
pub mod compression;
pub mod context;
pub mod digest;
pub mod dump;
pub mod manifest;
pub mod message;
pub mod mysql;
pub mod owner;
pub mod proof;
pub mod report;
pub mod repository;
pub mod restore;
pub mod storage;
pub mod table_ddl;

use std::ffi::OsString;

use clap::Parser;

pub use cli::Cli;
pub use context::AgentContext;

/// Every way the agent can fail; each displays as one line that says what
/// failed, on which object, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The command line does not parse (clap's message, with the usage).
    #[error("{0}")]
    Usage(String),
    /// The connection settings cannot be used.
    #[error(transparent)]
    Connection(#[from] mysql::ConnectionError),
    /// Storage failed outside of a backup or restore.
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    /// `backup` failed.
    #[error(transparent)]
    Backup(#[from] dump::BackupError),
    /// `restore`, `verify` or `list` failed.
    #[error(transparent)]
    Restore(#[from] restore::RestoreError),
    /// `prune`, `pin` or `unpin` failed.
    #[error(transparent)]
    Prune(#[from] repository::prune::PruneError),
    /// Reporting into Kubernetes could not start.
    #[error(transparent)]
    Report(#[from] report::ReportError),
    /// `verify --restore` could not prove the backup restorable.
    #[error(transparent)]
    Proof(#[from] proof::ProofError),
}

impl AgentError {
    /// The stable code the operator decides on (DESIGN: what crosses from
    /// the agent to the operator is a code, never a message to match).
    pub fn failure_code(&self) -> keeper_crds::agent::FailureCode {
        match self {
            AgentError::Restore(e) => e.failure_code(),
            AgentError::Proof(proof::ProofError::Restore(e)) => e.failure_code(),
            AgentError::Proof(proof::ProofError::TargetNotEmpty { .. }) => {
                keeper_crds::agent::FailureCode::TargetNotEmpty
            }
            AgentError::Proof(proof::ProofError::Differs { .. }) => {
                keeper_crds::agent::FailureCode::BackupDiffers
            }
            AgentError::Usage(_)
            | AgentError::Proof(_)
            | AgentError::Connection(_)
            | AgentError::Storage(_)
            | AgentError::Backup(_)
            | AgentError::Prune(_)
            | AgentError::Report(_) => keeper_crds::agent::FailureCode::RunFailed,
        }
    }
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
///
/// Inside Kubernetes the backup and restore commands report into the API
/// (`report`); a reporting failure after a good backup only logs a warning,
/// so it never turns a complete artifact into a failed run.
pub async fn run_cli(cli: Cli, ctx: AgentContext) -> Result<(), AgentError> {
    match cli.command {
        cli::Command::Backup(args) => backup_and_report(args, &ctx).await?,
        cli::Command::Restore(args) => restore_and_report(args, &ctx).await?,
        cli::Command::Verify(args) if args.restore => verify_and_report(&args, &ctx).await?,
        cli::Command::Verify(args) => {
            println!("{}", restore::verify(args, &ctx).await?);
        }
        cli::Command::List(args) => {
            let rows = restore::list(args, &ctx).await?;
            print!("{}", repository::list::render_table(&rows));
        }
        cli::Command::Prune(args) => {
            let mut reporter = report::BackupReporter::from_context(&ctx)?;
            // Inside Kubernetes the objects' pins count: read them first.
            let object_pins = report::object_pins(&ctx)
                .await
                .map_err(|e| repository::prune::PruneError::ObjectPins(e.to_string()))?;
            let outcome = repository::prune::prune(args, &ctx, object_pins).await?;
            print_lines(&outcome.lines());
            // The artifacts are gone: their MySQLBackup objects go too.
            reporter.pruned(&outcome.removed_names()).await;
        }
        cli::Command::Pin(args) => print_lines(&repository::prune::pin(args, &ctx).await?.lines()),
        cli::Command::Unpin(args) => {
            print_lines(&repository::prune::unpin(args, &ctx).await?.lines());
        }
    }
    Ok(())
}

/// The command's result for people, on stdout (logs go to stderr).
fn print_lines(lines: &[String]) {
    for line in lines {
        println!("{line}");
    }
}

/// `verify --restore`, its result printed and, inside Kubernetes, written
/// into the `MySQLBackup` it was for.
async fn verify_and_report(args: &cli::VerifyArgs, ctx: &AgentContext) -> Result<(), AgentError> {
    let reporter = report::VerificationReporter::from_context(ctx)?;
    match proof::prove(args, ctx).await {
        Ok(report) => {
            for line in report.lines() {
                println!("{line}");
            }
            reporter.finished(Ok(&report)).await;
            proof::verdict(report)?;
            Ok(())
        }
        Err(e) => {
            reporter.finished(Err(&e.to_string())).await;
            Err(e.into())
        }
    }
}

async fn backup_and_report(
    mut args: cli::BackupArgs,
    ctx: &AgentContext,
) -> Result<(), AgentError> {
    let mut reporter = report::BackupReporter::from_context(ctx)?;
    // In Kubernetes the folder name is the MySQLBackup's name.
    if let Some(name) = reporter.started(args.name.as_deref(), &args.to).await? {
        args.name = Some(name);
    }
    let args_s3 = args.s3.clone();
    // Progress goes to the MySQLBackup while the dump runs.
    let task = reporter.spawn();
    let sink: dump::ProgressSink = {
        let task = task.clone_sender();
        std::sync::Arc::new(move |progress| task.update(progress))
    };
    let dumped = dump::backup_with_progress(args, ctx, Some(sink)).await;
    let Some(mut reporter) = task.into_reporter().await else {
        return dumped.map(|_| ()).map_err(AgentError::from);
    };
    match dumped {
        Ok(outcome) => {
            reporter
                .succeeded(&outcome.manifest, &outcome.location.to_string())
                .await;
            if reporter.keep() {
                pin_new_backup(&outcome.location, ctx, &args_s3).await;
            }
            if let Some(retention) = &outcome.retention {
                print_lines(&retention.lines());
                // Only retention deletes artifacts, and then their objects.
                reporter.pruned(&retention.removed_names()).await;
            }
            Ok(())
        }
        Err(e) => {
            reporter.failed(&e.to_string()).await;
            Err(e.into())
        }
    }
}

/// Pins a just-made backup whose `MySQLBackup` has `spec.keep: true`.
/// Best effort: the backup is complete and good either way, and in-cluster
/// retention writes a missing pin before it prunes anything.
async fn pin_new_backup(location: &storage::Location, ctx: &AgentContext, s3: &cli::S3Args) {
    let pin = manifest::Pin {
        pinned_at: chrono::Utc::now(),
        source: manifest::PinSource::Object,
    };
    let result = match storage::Store::open(location, &storage::S3Settings::from_ctx(ctx, s3)).await
    {
        Ok(store) => repository::prune::write_pin(&store, &pin).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => tracing::info!(backup = %location, "pinned the backup (spec.keep)"),
        Err(e) => tracing::warn!(
            backup = %location,
            "could not write the pin ({e}); the next retention run writes it before pruning"
        ),
    }
}

async fn restore_and_report(args: cli::RestoreArgs, ctx: &AgentContext) -> Result<(), AgentError> {
    let task = report::RestoreReporter::from_context(ctx, &args.from)?.spawn();
    let progress = |p: restore::RestoreProgress| {
        task.update(p.members_done as u64, p.members_total as u64, p.bytes_done)
    };
    let restored = restore::restore(args, ctx, &progress).await;
    if let Ok(restored) = &restored {
        println!("{}", restored.line());
    }
    match restored {
        Ok(restored) => {
            // What differs from the source, or why nothing was changed,
            // reaches the status the operator shows.
            task.succeeded(restored.status_note().as_deref()).await;
            Ok(())
        }
        Err(e) => {
            task.finished(Err((e.failure_code(), &e.to_string()))).await;
            Err(e.into())
        }
    }
}

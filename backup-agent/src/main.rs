//! `keeper-agent`: parse, set up logging and the runtime, run, report one line.

use std::process::ExitCode;

use clap::Parser;
use keeper_agent::{AgentContext, Cli};
use keeper_crds::agent::{FailureCode, termination_line};

/// Kubernetes shows this file's content as the container's termination message.
const TERMINATION_LOG: &str = "/dev/termination-log";

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return fail(
                FailureCode::RunFailed,
                &format!("cannot start the async runtime: {e}"),
            );
        }
    };
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let result = runtime.block_on(async move {
        let kube = if env.contains_key("KEEPER_NAMESPACE") {
            match kube::Client::try_default().await {
                Ok(client) => Some(client),
                Err(e) => {
                    return Err((
                        FailureCode::RunFailed,
                        format!("cannot reach the Kubernetes API to report status: {e}"),
                    ));
                }
            }
        } else {
            None
        };
        let run = keeper_agent::run_cli(cli, AgentContext { env, kube });
        let outcome = tokio::select! {
            result = run => Ok(result),
            signal = stop_signal() => Err(signal),
        };
        match outcome {
            Ok(result) => result.map_err(|e| (e.failure_code(), e.to_string())),
            Err(signal) => {
                tracing::warn!(%signal, "stopping: the run is cancelled and its uploads aborted");
                // The cancelled run dropped its uploads, which abort in the
                // background; let them finish before the runtime goes away.
                keeper_agent::storage::s3::wait_for_pending_aborts(ABORT_GRACE).await;
                Err((
                    FailureCode::RunFailed,
                    format!(
                        "stopped by {signal} before the run completed; any upload in progress was aborted: run it again"
                    ),
                ))
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => fail(code, &message),
    }
}

/// How long a stopped agent waits for its aborts; Kubernetes' default grace
/// period is 30 s before SIGKILL.
const ABORT_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

/// Resolves on SIGTERM (Kubernetes stopping the pod) or SIGINT (Ctrl-C).
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        // Without handlers the default action (exit) still applies.
        _ => std::future::pending().await,
    }
}

fn fail(code: FailureCode, message: &str) -> ExitCode {
    // One line: the first line of the message, which names what failed and what to do.
    let line = message.lines().next().unwrap_or("failed");
    eprintln!("keeper-agent: error: {line}");
    if std::path::Path::new(TERMINATION_LOG).exists() {
        // The operator decides on the code, and shows the message.
        let _ = std::fs::write(TERMINATION_LOG, termination_line(code, line));
    }
    ExitCode::FAILURE
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

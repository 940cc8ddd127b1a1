//! MySQL Keeper operator.
//!
//! * [`instance_controller`]: the `MySQLInstance` controller — watches, the
//!   reconcile entry point, retry policy — and [`instance`], its reconcile:
//!   fetch → validate → build (pure) → apply → status, with one module per
//!   feature (the server's objects in `build`, `backup_schedule`, `restore`,
//!   `final_backup`, `storage`).
//! * [`backup_controller`]: the `MySQLBackup` controller (on-demand backups
//!   and the Jobs of runs that died without reporting), started beside the
//!   instance controller, with its own metrics.
//! * [`agent_job`]: the backup agent's Job as the operator builds and reads
//!   it (the agent itself is the `keeper-agent` crate).
//! * [`accounts`]: the MySQL accounts the operator keeps over SQL.
//! * [`leader`], [`http`], [`metrics`], [`telemetry`]: the process around it.
//! * [`render`]: the objects for a file of instances, without a cluster.
//!
//! `main` only parses the command line and calls [`run`] or [`render`].

pub mod accounts;
pub mod agent_job;
pub mod backup_controller;
pub mod backup_metrics;
pub mod caches;
pub mod cli;
pub mod context;
pub mod error;
pub mod http;
pub mod instance;
pub mod instance_controller;
pub mod leader;
pub mod metrics;
pub mod render;
pub mod telemetry;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

pub use crate::context::{Context, FIELD_MANAGER, OperatorConfig};
pub use crate::error::Error;
pub use crate::instance_controller::reconcile;

use crate::cli::RunArgs;
use crate::http::{Endpoints, Health};
use crate::metrics::Metrics;

/// `keeper-operator run`: serves metrics and health, takes part in leader
/// election, and reconciles while leading, until SIGTERM or Ctrl-C.
///
/// # Errors
/// When the cluster cannot be reached, an address cannot be bound, or
/// leadership is lost (the process should then exit and restart).
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster config or kubeconfig)")?;
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let pod_name = std::env::var("POD_NAME").ok();
    let config = OperatorConfig {
        agent_image: args.agent_image.clone(),
        field_manager: FIELD_MANAGER.to_owned(),
        backup_run_timeout: args.backup_run_timeout,
    };
    let ctx = Arc::new(
        Context::new(client.clone(), config, metrics.clone(), pod_name.clone())
            .with_final_backup_timeout(args.final_backup_timeout)
            .with_instance_wait_timeout(args.instance_wait_timeout)
            .with_agent_start_timeout(args.agent_start_timeout),
    );

    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));
    let servers = tokio::try_join!(
        http::serve(
            args.metrics_addr,
            Endpoints::Metrics(metrics.clone()),
            shutdown.clone()
        ),
        http::serve(
            args.health_addr,
            Endpoints::Health(health.clone()),
            shutdown.clone()
        ),
        run_controllers_with_election(
            client,
            ctx,
            &args,
            pod_name,
            health.clone(),
            shutdown.clone()
        ),
    );
    shutdown.cancel();
    servers.map(|_| ()).map_err(anyhow::Error::from)
}

async fn run_controllers_with_election(
    client: kube::Client,
    ctx: Arc<Context>,
    args: &RunArgs,
    pod_name: Option<String>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let namespaces = args.namespaces();
    let metrics = ctx.metrics.clone();
    let lead = {
        let health = health.clone();
        move |token: CancellationToken| run_controllers(ctx, namespaces, token, health)
    };
    let result = if args.leader_election {
        let settings = leader::LeaseSettings {
            name: args.lease_name.clone(),
            namespace: args.lease_namespace.clone(),
            holder: pod_name.unwrap_or_else(|| format!("keeper-operator-{}", std::process::id())),
            ttl: std::time::Duration::from_secs(15),
        };
        let on_leading = move |leading: bool| {
            metrics.leader.set(i64::from(leading));
            // A standby is ready (its state is known); a new leader becomes
            // ready once its caches are synced, which run_controllers reports.
            health.ready.store(!leading, Ordering::SeqCst);
        };
        leader::run(client, settings, shutdown.clone(), on_leading, lead)
            .await
            .map_err(|lost| std::io::Error::other(lost.to_string()))
    } else {
        metrics.leader.set(1);
        lead(shutdown.clone()).await;
        Ok(())
    };
    // The controllers are done: stop the HTTP servers too.
    shutdown.cancel();
    result
}

/// Runs the `MySQLInstance` and the `MySQLBackup` controller per watched
/// namespace (or once for all namespaces) until `token` is cancelled; marks
/// `health` ready once every instance cache is synced.
async fn run_controllers(
    ctx: Arc<Context>,
    namespaces: Vec<String>,
    token: CancellationToken,
    health: Arc<Health>,
) {
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    let synced: Vec<Arc<AtomicBool>> = scopes.iter().map(|_| Arc::default()).collect();
    let readiness = {
        let synced = synced.clone();
        let token = token.clone();
        tokio::spawn(async move {
            while !synced.iter().all(|s| s.load(Ordering::SeqCst)) {
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(std::time::Duration::from_millis(250)) => {}
                }
            }
            tracing::info!("caches synced; ready");
            health.ready.store(true, Ordering::SeqCst);
        })
    };
    // Per scope, the two controllers side by side: MySQLInstance (the
    // server, its backup schedule, restore and deletion) and MySQLBackup
    // (on-demand backups and their Jobs).
    futures::future::join_all(scopes.into_iter().zip(synced).map(|(namespace, synced)| {
        let instances =
            instance_controller::run(ctx.clone(), namespace.clone(), token.clone(), synced);
        let backups = backup_controller::run(ctx.clone(), namespace, token.clone());
        async move {
            tokio::join!(instances, backups);
        }
    }))
    .await;
    readiness.abort();
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or Ctrl-C and cancels
/// `shutdown`: the controllers finish their running reconciles and stop, the
/// lease is released.
async fn wait_for_signal(shutdown: CancellationToken) {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("interrupted; shutting down"),
        () = term => tracing::info!("SIGTERM; shutting down"),
        () = shutdown.cancelled() => return,
    }
    shutdown.cancel();
}

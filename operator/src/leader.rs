//! Lease-based leader election: only the holder of the Lease reconciles.
//!
//! A standby keeps trying to acquire the Lease. The leader renews it every
//! third of its lifetime; when it cannot renew before the Lease would expire
//! (or someone else holds it), it stops its controllers and returns
//! [`Lost`]: the process then exits and restarts as a standby with clean
//! caches, as controller-runtime does. On shutdown it releases the Lease so
//! the next leader need not wait for it to expire.

use std::future::Future;
use std::time::{Duration, Instant};

use kube::Client;
use kube_leader_election::{LeaseLock, LeaseLockParams, LeaseLockResult};
use tokio_util::sync::CancellationToken;

/// How the Lease is named and held.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Name of the Lease.
    pub name: String,
    /// Namespace of the Lease (the operator's own).
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub holder: String,
    /// Lifetime of the Lease without renewal.
    pub ttl: Duration,
}

/// Leadership was lost while leading.
#[derive(Debug, thiserror::Error)]
#[error("lost the leader lease {0}; exiting so that a standby can take over")]
pub struct Lost(pub String);

/// Runs `lead` while this replica holds the Lease, until `shutdown`.
///
/// `on_leading(true/false)` is told when leadership is acquired or given up
/// (for metrics and readiness). `lead` gets a token that is cancelled when
/// leadership ends; it must return soon after.
///
/// # Errors
/// [`Lost`] when leadership was lost without a shutdown.
pub async fn run<F, Fut>(
    client: Client,
    settings: LeaseSettings,
    shutdown: CancellationToken,
    on_leading: impl Fn(bool),
    lead: F,
) -> Result<(), Lost>
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let lock = LeaseLock::new(
        client,
        &settings.namespace,
        LeaseLockParams {
            lease_name: settings.name.clone(),
            holder_id: settings.holder.clone(),
            lease_ttl: settings.ttl,
        },
    );
    let retry = settings.ttl / 3;
    on_leading(false);

    // Standby: wait for the Lease.
    loop {
        match lock.try_acquire_or_renew().await {
            Ok(LeaseLockResult::Acquired(_)) => break,
            Ok(LeaseLockResult::NotAcquired(_)) => {
                tracing::debug!(lease = %settings.name, "standby: the lease is held by another replica");
            }
            Err(error) => tracing::warn!(%error, lease = %settings.name, "cannot read the lease"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(retry) => {}
        }
    }

    tracing::info!(lease = %settings.name, holder = %settings.holder, "acquired the leader lease");
    on_leading(true);
    let leading = shutdown.child_token();
    let mut controllers = tokio::spawn(lead(leading.clone()));
    let mut renewed = Instant::now();
    let outcome = loop {
        tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            _ = &mut controllers => {
                tracing::warn!("controllers ended while leading");
                break Ok(());
            }
            () = tokio::time::sleep(retry) => {
                match lock.try_acquire_or_renew().await {
                    Ok(LeaseLockResult::Acquired(_)) => renewed = Instant::now(),
                    Ok(LeaseLockResult::NotAcquired(_)) => break Err(Lost(settings.name.clone())),
                    Err(error) => {
                        tracing::warn!(%error, "cannot renew the leader lease");
                        // Stop before the Lease expires: another replica may
                        // take it then, and two leaders must never overlap.
                        if renewed.elapsed() + retry >= settings.ttl {
                            break Err(Lost(settings.name.clone()));
                        }
                    }
                }
            }
        }
    };
    leading.cancel();
    if !controllers.is_finished() {
        // The controllers finish their running reconciles and stop.
        let _ = controllers.await;
    }
    on_leading(false);
    if outcome.is_ok() {
        match lock.step_down().await {
            Ok(()) => tracing::info!(lease = %settings.name, "released the leader lease"),
            Err(error) => tracing::warn!(%error, "could not release the leader lease"),
        }
    }
    outcome
}

//! The server's own objects: the ConfigMap, the headless Service and the
//! StatefulSet built (pure, [`super::build`]) and applied, then the client
//! Service, which routes only once no restore holds the server.

use keeper_crds::MySQLInstance;

use super::apply::Applier;
use super::build::{self, InstanceMeta, service, statefulset};
use super::fetch::Observed;
use super::status::Readiness;
use crate::error::Result;

/// Applies the ConfigMap, the headless Service and the StatefulSet (its
/// volume claim template pinned to what was created: it is immutable), and
/// returns how ready the server is.
///
/// # Errors
/// Builder errors; [`crate::error::Error::ApplyFailed`].
pub async fn apply(
    applier: &Applier<'_>,
    instance: &MySQLInstance,
    observed: &Observed,
) -> Result<Readiness> {
    let pinned = observed
        .stateful_set
        .as_ref()
        .and_then(statefulset::claim_template_storage);
    let desired = build::desired_objects(instance, pinned.as_ref())?;
    applier
        .apply(&desired.config_map, observed.config_map.as_ref())
        .await?;
    applier
        .apply(
            &desired.headless_service,
            observed.headless_service.as_ref(),
        )
        .await?;
    let stateful_set = applier
        .apply(&desired.stateful_set, observed.stateful_set.as_ref())
        .await?;
    Ok(Readiness::observe(
        Some(&stateful_set),
        observed.data_claim.as_ref(),
    ))
}

/// Applies the client Service: it routes nowhere while a restore holds the
/// server. Applied after the restore step, so it opens in the reconcile
/// that records the restore (and never before the account is unlocked).
///
/// # Errors
/// [`crate::error::Error::ApplyFailed`].
pub async fn open_to_clients(
    applier: &Applier<'_>,
    meta: &InstanceMeta,
    observed: &Observed,
    held_by_restore: bool,
) -> Result<()> {
    let client_service = service::client(meta, held_by_restore);
    applier
        .apply(&client_service, observed.client_service.as_ref())
        .await?;
    Ok(())
}

//! The credentials Secret `<name>-credentials`: created with generated
//! passwords when the operator must generate them, completed with the keys
//! it lacks later; an existing value is never changed.

use k8s_openapi::api::core::v1::Secret;
use keeper_crds::MySQLInstance;
use keeper_crds::instance::DEFAULT_ROOT_PASSWORD_KEY;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use serde_json::json;

use super::build::secret;
use super::fetch::Observed;
use super::validate::Valid;
use crate::context::Context;
use crate::error::{Error, Result};

/// Creates `<name>-credentials` when the operator must generate passwords and
/// it does not exist, or adds the keys it lacks (e.g. `spec.user` was set
/// later). Existing values are never changed.
///
/// # Errors
/// [`Error::CredentialsMissing`] when the data exists but its root password
/// does not; [`Error::CredentialsFailed`] when the Secret cannot be written.
pub async fn ensure(
    ctx: &Context,
    valid: &Valid,
    instance: &MySQLInstance,
    observed: &Observed,
) -> Result<()> {
    let (meta, namespace) = (&valid.meta, valid.namespace.as_str());
    let name = instance.credentials_secret_name();
    let missing = secret::missing_entries(
        instance,
        observed.credentials.as_ref(),
        &mut secret::generate_password,
    );
    if missing.is_empty() {
        return Ok(());
    }
    // The server initialised its data with the old root password: a new one
    // would lock everyone out, so refuse to guess.
    if missing.contains_key(DEFAULT_ROOT_PASSWORD_KEY)
        && let Some(claim) = &observed.data_claim
    {
        return Err(Error::CredentialsMissing {
            name,
            claim: claim.metadata.name.clone().unwrap_or_default(),
        });
    }
    let keys = missing.keys().cloned().collect::<Vec<_>>().join(", ");
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), namespace);
    let failed = |source| Error::CredentialsFailed {
        name: name.clone(),
        source: Box::new(source),
    };
    let reason = match &observed.credentials {
        None => {
            match secrets
                .create(&PostParams::default(), &secret::build(meta, missing))
                .await
            {
                Ok(_) => {}
                // Created meanwhile by another reconcile: never overwrite it.
                Err(kube::Error::Api(status)) if status.code == 409 => return Ok(()),
                Err(source) => return Err(failed(source)),
            }
            "CredentialsCreated"
        }
        Some(_) => {
            // A merge patch of the missing keys only: it cannot change a
            // value that exists.
            let patch = json!({ "data": missing });
            secrets
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(failed)?;
            "CredentialsUpdated"
        }
    };
    ctx.publish(
        instance,
        EventType::Normal,
        reason,
        "Credentials",
        format!("Secret {name}: generated {keys}"),
    )
    .await;
    Ok(())
}

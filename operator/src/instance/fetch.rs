//! Fetch: everything a reconcile looks at, read once at its start.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use keeper_crds::MySQLInstance;
use keeper_crds::instance::DEFAULT_ROOT_PASSWORD_KEY;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use super::build::InstanceMeta;
use crate::caches::Cached;
use crate::context::Context;
use crate::error::{Error, Result};

/// The current state of an instance's objects (each `None` when absent).
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// The Secret named by `spec.rootPasswordSecretRef`.
    pub root_secret: Option<Secret>,
    /// `<name>-credentials`.
    pub credentials: Option<Secret>,
    /// `<name>-config`.
    pub config_map: Option<ConfigMap>,
    /// `<name>-headless`.
    pub headless_service: Option<Service>,
    /// `<name>`.
    pub client_service: Option<Service>,
    /// `<name>`.
    pub stateful_set: Option<StatefulSet>,
    /// `data-<name>-0`.
    pub data_claim: Option<PersistentVolumeClaim>,
}

impl Observed {
    /// The root password, from `spec.rootPasswordSecretRef`'s Secret or
    /// `<name>-credentials`; `None` while it is not there.
    pub fn root_password(&self, instance: &MySQLInstance) -> Option<String> {
        match &instance.spec.root_password_secret_ref {
            Some(reference) => secret_value(self.root_secret.as_ref(), &reference.key),
            None => secret_value(self.credentials.as_ref(), DEFAULT_ROOT_PASSWORD_KEY),
        }
    }
}

/// The text value of `key` in `secret` (`data`, else `stringData`).
pub(crate) fn secret_value(secret: Option<&Secret>, key: &str) -> Option<String> {
    let secret = secret?;
    if let Some(value) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return String::from_utf8(value.0.clone()).ok();
    }
    secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .cloned()
}

/// Reads one namespaced object; `None` when it does not exist.
pub(crate) async fn get<K>(client: &Client, namespace: &str, name: &str) -> Result<Option<K>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|source| Error::Kube {
            what: format!("{} {namespace}/{name}", K::kind(&())),
            source: Box::new(source),
        })
}

/// Reads one object the controller watches: from its watch cache
/// ([`crate::caches`]), else from the API; `None` when it does not exist.
///
/// # Errors
/// [`Error::Kube`] when the API cannot be read.
pub(crate) async fn read<K>(ctx: &Context, namespace: &str, name: &str) -> Result<Option<K>>
where
    K: Cached
        + Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + DeserializeOwned
        + std::fmt::Debug,
{
    if let Some(cached) = ctx.caches().and_then(|c| c.get::<K>(namespace, name)) {
        return Ok(Some(cached));
    }
    get(&ctx.client, namespace, name).await
}

/// The pods of the agent Job `job`: from the pod cache, else (none cached:
/// none yet, or no cache) from the API.
///
/// # Errors
/// [`Error::Kube`] when the API cannot be read.
pub(crate) async fn job_pods(ctx: &Context, namespace: &str, job: &str) -> Result<Vec<Pod>> {
    let cached = ctx
        .caches()
        .map(|c| c.pods_of_job(namespace, job))
        .unwrap_or_default();
    if cached.is_empty() {
        crate::backup_controller::job_pods(ctx, namespace, job).await
    } else {
        Ok(cached)
    }
}

/// Reads the instance's objects, each once ([`read`]).
///
/// # Errors
/// [`Error::Kube`] when the API cannot be read.
pub async fn observe(
    ctx: &Context,
    meta: &InstanceMeta,
    instance: &MySQLInstance,
) -> Result<Observed> {
    let namespace = meta
        .namespace
        .as_deref()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    let root_secret = match &instance.spec.root_password_secret_ref {
        Some(reference) => read(ctx, namespace, &reference.name).await?,
        None => None,
    };
    Ok(Observed {
        root_secret,
        credentials: read(ctx, namespace, &instance.credentials_secret_name()).await?,
        config_map: read(ctx, namespace, &meta.config_map_name()).await?,
        headless_service: read(ctx, namespace, &meta.headless_service_name()).await?,
        client_service: read(ctx, namespace, &meta.client_service_name()).await?,
        stateful_set: read(ctx, namespace, &meta.name).await?,
        data_claim: read(ctx, namespace, &meta.data_claim_name()).await?,
    })
}

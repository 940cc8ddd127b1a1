//! Pure builders: the objects an instance needs, computed from its spec alone
//! (no API calls, no clock, no randomness except in [`secret::generate_password`]).
//! `render` prints exactly these, and the reconcile applies them.
//!
//! Backup objects (CronJob, agent identity) slot in here as further modules
//! that take the same [`InstanceMeta`] and return typed objects.

pub mod agent_rbac;
pub mod configmap;
pub mod cronjob;
pub mod secret;
pub mod service;
pub mod statefulset;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use keeper_crds::{INSTANCE_LABEL, MySQLInstance, StorageSpec};
use kube::Resource;

use crate::error::{Error, Result};

/// `app.kubernetes.io/name`: the server flavor (`mysql` or `mariadb`).
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/instance`: the instance name.
pub const APP_INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// `app.kubernetes.io/component`: which part of the instance (`database`).
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// `app.kubernetes.io/managed-by`: always `keeper-operator`.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`]; also what the Secret watch selects on.
pub const MANAGED_BY: &str = "keeper-operator";
/// Component of the server's objects; backup Jobs will use `backup`.
pub const COMPONENT_DATABASE: &str = "database";
/// Pod template annotation with the hash of my.cnf, so a config change rolls the pod.
pub const CONFIG_HASH_ANNOTATION: &str = "mysql.keeper.dev/config-hash";

/// What every builder needs to know about the instance.
#[derive(Clone, Debug)]
pub struct InstanceMeta {
    /// Instance name.
    pub name: String,
    /// Namespace (absent only when rendering a file without one).
    pub namespace: Option<String>,
    /// Controller owner reference (absent when rendering: no uid yet).
    pub owner: Option<OwnerReference>,
    /// Flavor name for `app.kubernetes.io/name`.
    pub flavor: &'static str,
}

impl InstanceMeta {
    /// Reads the metadata builders need.
    ///
    /// # Errors
    /// [`Error::MissingObjectKey`] for an object without a name.
    pub fn of(instance: &MySQLInstance) -> Result<Self> {
        let name = instance
            .metadata
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or(Error::MissingObjectKey("metadata.name"))?;
        Ok(Self {
            name,
            namespace: instance.metadata.namespace.clone(),
            owner: instance.controller_owner_ref(&()),
            flavor: instance.spec.flavor().as_str(),
        })
    }

    /// Labels every object of the server carries.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels();
        labels.insert(NAME_LABEL.to_owned(), self.flavor.to_owned());
        labels.insert(APP_INSTANCE_LABEL.to_owned(), self.name.clone());
        labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
        labels
    }

    /// The labels that select the server's pods (immutable in a StatefulSet,
    /// so kept to what never changes: not the flavor label's value history).
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (INSTANCE_LABEL.to_owned(), self.name.clone()),
            (COMPONENT_LABEL.to_owned(), COMPONENT_DATABASE.to_owned()),
        ])
    }

    /// Metadata of an owned child named `name`.
    pub fn owned_metadata(&self, name: String) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: self.namespace.clone(),
            labels: Some(self.labels()),
            owner_references: self.owner.clone().map(|o| vec![o]),
            ..ObjectMeta::default()
        }
    }

    /// Metadata of an object that must outlive the instance (no owner).
    pub fn unowned_metadata(&self, name: String) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: self.namespace.clone(),
            labels: Some(self.labels()),
            ..ObjectMeta::default()
        }
    }

    /// `<name>-config`.
    pub fn config_map_name(&self) -> String {
        format!("{}-config", self.name)
    }

    /// `<name>-headless`: the StatefulSet's governing Service.
    pub fn headless_service_name(&self) -> String {
        format!("{}-headless", self.name)
    }

    /// `<name>`: the client Service.
    pub fn client_service_name(&self) -> String {
        self.name.clone()
    }

    /// `<name>-0.<name>-headless.<namespace>.svc` (`…-headless` without a
    /// namespace): the server pod's own DNS name. The headless Service
    /// publishes it before the pod is ready, and it does not depend on the
    /// client Service routing, which a restore holds closed: the operator's
    /// account SQL and the restore Job connect here.
    pub fn server_pod_host(&self) -> String {
        let pod = format!("{}-0.{}", self.name, self.headless_service_name());
        match &self.namespace {
            Some(ns) => format!("{pod}.{ns}.svc"),
            None => pod,
        }
    }

    /// `data-<name>-0`: the data volume's claim (volumeClaimTemplate `data`, pod 0).
    pub fn data_claim_name(&self) -> String {
        format!("{}-{}-0", statefulset::DATA_VOLUME, self.name)
    }

    /// `<name>.<namespace>.svc:3306`.
    pub fn endpoint(&self) -> Option<String> {
        self.namespace.as_ref().map(|ns| {
            format!(
                "{}.{ns}.svc:{}",
                self.client_service_name(),
                keeper_crds::instance::MYSQL_PORT
            )
        })
    }
}

/// The objects the operator applies for one instance (the credentials Secret
/// is not among them: it is created once, never applied).
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredObjects {
    /// my.cnf.
    pub config_map: ConfigMap,
    /// Governing Service of the StatefulSet.
    pub headless_service: Service,
    /// Service clients connect to.
    pub client_service: Service,
    /// The server.
    pub stateful_set: StatefulSet,
}

/// Builds every applied object of `instance`.
///
/// `pinned_storage` is the storage of an existing StatefulSet's claim
/// template: volumeClaimTemplates are immutable, so once created they are kept
/// as they are (growing the volume is done on the claim itself).
///
/// # Errors
/// [`Error::MissingObjectKey`] for an object without a name.
pub fn desired_objects(
    instance: &MySQLInstance,
    pinned_storage: Option<&StorageSpec>,
) -> Result<DesiredObjects> {
    let meta = InstanceMeta::of(instance)?;
    let config_map = configmap::build(&meta, &instance.spec);
    let config_hash = configmap::content_hash(&config_map);
    let held = crate::instance::restore::hold::holds_server(instance, instance.status.as_ref());
    Ok(DesiredObjects {
        headless_service: service::headless(&meta),
        client_service: service::client(&meta, held),
        stateful_set: statefulset::build(
            &meta,
            instance,
            pinned_storage.unwrap_or(&instance.spec.storage),
            &config_hash,
        ),
        config_map,
    })
}

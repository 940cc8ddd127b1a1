//! The agent's identity per instance: ServiceAccount, Role and RoleBinding,
//! all named `<name>-backup-agent` and owned by the instance.
//!
//! One Role per instance (rather than per namespace) so that the rules on
//! `mysqlinstances` can name this instance in `resourceNames`: an agent can
//! report into its own instance and no other. The rules are
//! [`keeper_crds::agent::agent_policy_rules`], the single source of truth the
//! agent's reporter is checked against.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding, RoleRef, Subject};
use keeper_crds::agent::agent_policy_rules;

use super::{COMPONENT_LABEL, InstanceMeta};
use crate::agent_job::COMPONENT_BACKUP;

/// `<name>-backup-agent`: the name of all three objects.
pub fn name(meta: &InstanceMeta) -> String {
    format!("{}-backup-agent", meta.name)
}

fn metadata(meta: &InstanceMeta) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    let mut metadata = meta.owned_metadata(name(meta));
    let mut labels: BTreeMap<String, String> = metadata.labels.take().unwrap_or_default();
    labels.insert(COMPONENT_LABEL.to_owned(), COMPONENT_BACKUP.to_owned());
    metadata.labels = Some(labels);
    metadata
}

/// The agent's ServiceAccount.
pub fn service_account(meta: &InstanceMeta) -> ServiceAccount {
    ServiceAccount {
        metadata: metadata(meta),
        ..ServiceAccount::default()
    }
}

/// The agent's Role: exactly the rules of [`agent_policy_rules`].
pub fn role(meta: &InstanceMeta) -> Role {
    Role {
        metadata: metadata(meta),
        rules: Some(agent_policy_rules(&meta.name)),
    }
}

/// Binds [`role`] to [`service_account`].
pub fn role_binding(meta: &InstanceMeta) -> RoleBinding {
    RoleBinding {
        metadata: metadata(meta),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "Role".to_owned(),
            name: name(meta),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: name(meta),
            namespace: meta.namespace.clone(),
            api_group: None,
        }]),
    }
}

//! The agent's permissions, as data: the one source of truth for the Role the
//! operator creates per instance (`<name>-backup-agent`) and for the calls
//! the reporter makes.
//!
//! DESIGN: get, list, create, delete `mysqlbackups`; patch
//! `mysqlbackups/status`; get `mysqlinstances` and patch
//! `mysqlinstances/status` for its own instance only. Nothing else.
//!
//! Every API call in [`crate::report`] names the [`Permission`] it relies on
//! (`Permission::note`), and the tests check that each of those is granted by
//! [`agent_policy_rules`]; the integration tests talk to the in-memory API as
//! the agent, which checks every request against the same rules.
//! The operator's own ClusterRole must hold these rules too, because
//! Kubernetes lets no one grant what it does not hold.

pub use keeper_crds::agent::{
    BACKUPS, BACKUPS_STATUS, INSTANCES, INSTANCES_STATUS, agent_policy_rules,
};

/// Which objects of a resource a permission covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Any object of the resource in the namespace.
    Namespace,
    /// Only the agent's own instance (`resourceNames: [instance]`).
    OwnInstance,
}

/// One verb on one resource of `mysql.keeper.dev`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permission {
    pub verb: &'static str,
    pub resource: &'static str,
    pub scope: Scope,
}

impl Permission {
    const fn new(verb: &'static str, resource: &'static str, scope: Scope) -> Self {
        Self {
            verb,
            resource,
            scope,
        }
    }

    /// Records (at debug level) the call about to be made under this
    /// permission, so a `Forbidden` in the logs can be matched to the rule.
    pub(crate) fn note(self, namespace: &str, name: &str) {
        tracing::debug!(
            verb = self.verb,
            resource = self.resource,
            namespace,
            name,
            "kubernetes call"
        );
    }
}

/// Read a `MySQLBackup` (on-demand run, prune safety check, create adoption).
pub const GET_BACKUP: Permission = Permission::new("get", BACKUPS, Scope::Namespace);
/// List `MySQLBackup` objects (retention reads their `spec.keep` pins).
pub const LIST_BACKUPS: Permission = Permission::new("list", BACKUPS, Scope::Namespace);
/// Create the `MySQLBackup` of a scheduled run.
pub const CREATE_BACKUP: Permission = Permission::new("create", BACKUPS, Scope::Namespace);
/// Delete the `MySQLBackup` of a pruned backup.
pub const DELETE_BACKUP: Permission = Permission::new("delete", BACKUPS, Scope::Namespace);
/// Apply `MySQLBackup.status`.
pub const PATCH_BACKUP_STATUS: Permission =
    Permission::new("patch", BACKUPS_STATUS, Scope::Namespace);
/// Read the own `MySQLInstance`.
pub const GET_INSTANCE: Permission = Permission::new("get", INSTANCES, Scope::OwnInstance);
/// Apply `status.lastBackup` / `status.restore` of the own `MySQLInstance`.
pub const PATCH_INSTANCE_STATUS: Permission =
    Permission::new("patch", INSTANCES_STATUS, Scope::OwnInstance);

/// Everything the agent may do, in the order the rules are written.
pub const AGENT_PERMISSIONS: &[Permission] = &[
    GET_BACKUP,
    LIST_BACKUPS,
    CREATE_BACKUP,
    DELETE_BACKUP,
    PATCH_BACKUP_STATUS,
    GET_INSTANCE,
    PATCH_INSTANCE_STATUS,
];

/// The calls the reporter itself makes: today every call the agent may make
/// (retention's deletes of pruned backups' objects go through the reporter
/// too). Kept as its own name so a call the agent gains outside the reporter
/// is added to [`AGENT_PERMISSIONS`] alone.
pub const REPORTER_CALLS: &[Permission] = AGENT_PERMISSIONS;

#[cfg(test)]
mod tests {
    use super::*;
    use keeper_tests::kube::Identity;
    use keeper_tests::kube::rbac::Request;

    /// Matched as the RBAC authorizer does, by the in-memory API of the
    /// integration tests (`keeper_tests::kube`), which also checks every
    /// request the reporter really sends.
    #[test]
    fn every_call_the_reporter_makes_is_granted() {
        let agent = Identity::agent("shop", "orders");
        for call in REPORTER_CALLS {
            assert!(AGENT_PERMISSIONS.contains(call), "{call:?}");
            let name = match call.scope {
                Scope::Namespace => "orders-20250101-030000",
                Scope::OwnInstance => "orders",
            };
            let (resource, subresource) = match call.resource.split_once('/') {
                Some((r, s)) => (r, Some(s.to_owned())),
                None => (call.resource, None),
            };
            let request = Request {
                verb: call.verb.to_owned(),
                group: keeper_crds::API_GROUP.to_owned(),
                resource: resource.to_owned(),
                subresource,
                namespace: Some("shop".to_owned()),
                name: Some(name.to_owned()),
            };
            assert!(agent.allows(&request), "{call:?} is not granted");
        }
    }
}

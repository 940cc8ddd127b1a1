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
//! [`agent_policy_rules`]; the integration tests also record every request
//! the reporter sends to the in-memory API and check it against the rules.
//! The operator's own ClusterRole must hold these rules too, because
//! Kubernetes lets no one grant what it does not hold.

use k8s_openapi::api::rbac::v1::PolicyRule;

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

/// The calls the reporter itself makes (a subset of [`AGENT_PERMISSIONS`]).
pub const REPORTER_CALLS: &[Permission] = &[
    GET_BACKUP,
    LIST_BACKUPS,
    CREATE_BACKUP,
    DELETE_BACKUP,
    PATCH_BACKUP_STATUS,
    GET_INSTANCE,
    PATCH_INSTANCE_STATUS,
];

/// Whether `rules` allow `verb` on `resource` (in `mysql.keeper.dev`) for the
/// object `name`, with the RBAC authorizer's matching: `*` wildcards, and a
/// rule with `resourceNames` matches only a request that names one of them
/// (so never a `create`, whose name the authorizer does not see).
pub fn rules_allow(rules: &[PolicyRule], verb: &str, resource: &str, name: Option<&str>) -> bool {
    let has = |list: &Option<Vec<String>>, value: &str| {
        list.as_ref()
            .is_some_and(|l| l.iter().any(|v| v == "*" || v == value))
    };
    rules.iter().any(|rule| {
        has(&rule.api_groups, keeper_crds::API_GROUP)
            && has(&rule.resources, resource)
            && rule.verbs.iter().any(|v| v == "*" || v == verb)
            && match rule.resource_names.as_deref() {
                None | Some([]) => true,
                Some(names) => {
                    verb != "create" && name.is_some_and(|n| names.iter().any(|r| r == n))
                }
            }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_exactly_the_designed_ones() {
        let rules = agent_policy_rules("orders");
        let json = serde_json::to_value(&rules).expect("serializable");
        assert_eq!(
            json,
            serde_json::json!([
                {"apiGroups": ["mysql.keeper.dev"], "resources": ["mysqlbackups"],
                 "verbs": ["get", "list", "create", "delete"]},
                {"apiGroups": ["mysql.keeper.dev"], "resources": ["mysqlbackups/status"],
                 "verbs": ["patch"]},
                {"apiGroups": ["mysql.keeper.dev"], "resources": ["mysqlinstances"],
                 "resourceNames": ["orders"], "verbs": ["get"]},
                {"apiGroups": ["mysql.keeper.dev"], "resources": ["mysqlinstances/status"],
                 "resourceNames": ["orders"], "verbs": ["patch"]},
            ])
        );
    }

    #[test]
    fn every_call_the_reporter_makes_is_granted() {
        let rules = agent_policy_rules("orders");
        for call in REPORTER_CALLS {
            assert!(AGENT_PERMISSIONS.contains(call), "{call:?}");
            let name = match call.scope {
                Scope::Namespace => "orders-20250101-030000",
                Scope::OwnInstance => "orders",
            };
            assert!(
                rules_allow(&rules, call.verb, call.resource, Some(name)),
                "{call:?} is not granted"
            );
        }
    }

    #[test]
    fn nothing_else_is_granted() {
        let rules = agent_policy_rules("orders");
        // Another instance, even in the same namespace.
        assert!(!rules_allow(&rules, "get", INSTANCES, Some("billing")));
        assert!(!rules_allow(
            &rules,
            "patch",
            INSTANCES_STATUS,
            Some("billing")
        ));
        // Spec writes and other verbs.
        for verb in ["update", "patch", "watch", "deletecollection"] {
            assert!(!rules_allow(&rules, verb, BACKUPS, Some("b")), "{verb}");
        }
        assert!(!rules_allow(&rules, "patch", INSTANCES, Some("orders")));
        assert!(!rules_allow(&rules, "update", BACKUPS_STATUS, Some("b")));
        // Nothing outside the group's two resources (e.g. Secrets).
        assert!(!rules_allow(&rules, "get", "secrets", Some("orders")));
        assert!(!rules_allow(&rules, "list", INSTANCES, None));
    }

    #[test]
    fn matching_follows_rbac() {
        let wildcard = vec![PolicyRule {
            api_groups: Some(vec!["*".into()]),
            resources: Some(vec!["*".into()]),
            verbs: vec!["*".into()],
            ..PolicyRule::default()
        }];
        assert!(rules_allow(&wildcard, "create", BACKUPS, None));
        let named = vec![PolicyRule {
            api_groups: Some(vec![keeper_crds::API_GROUP.into()]),
            resources: Some(vec![BACKUPS.into()]),
            resource_names: Some(vec!["a".into()]),
            verbs: vec!["create".into(), "get".into()],
            ..PolicyRule::default()
        }];
        // resourceNames never authorize a create.
        assert!(!rules_allow(&named, "create", BACKUPS, Some("a")));
        assert!(rules_allow(&named, "get", BACKUPS, Some("a")));
        assert!(!rules_allow(&named, "get", BACKUPS, None));
        let other_group = vec![PolicyRule {
            api_groups: Some(vec!["apps".into()]),
            resources: Some(vec![BACKUPS.into()]),
            verbs: vec!["get".into()],
            ..PolicyRule::default()
        }];
        assert!(!rules_allow(&other_group, "get", BACKUPS, Some("a")));
    }
}

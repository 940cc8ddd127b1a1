//! Who may make a call: the shipped RBAC (`deploy/rbac`) for the operator,
//! the per-instance Role (`keeper_crds::agent::agent_policy_rules`) for the
//! agent, matched the way the RBAC authorizer matches.

use k8s_openapi::api::rbac::v1::PolicyRule;
use serde::Deserialize;

/// The operator's ClusterRole, as shipped.
const CLUSTER_ROLE: &str = include_str!("../../../deploy/rbac/cluster_role.yaml");
/// The leader-election Role (and its binding), as shipped.
const LEADER_ELECTION_ROLE: &str = include_str!("../../../deploy/rbac/leader_election_role.yaml");

/// One resource request, as the authorizer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: String,
    /// API group (`""` for the core group).
    pub group: String,
    /// Plural resource name.
    pub resource: String,
    /// `status`, `finalizers`, … or `None`.
    pub subresource: Option<String>,
    /// `None` for cluster-scoped requests and requests across all namespaces.
    pub namespace: Option<String>,
    /// The object's name; the authorizer does not see it for create and list.
    pub name: Option<String>,
}

impl Request {
    /// `resource` or `resource/subresource`, as RBAC rules write it.
    pub fn rbac_resource(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.clone(),
        }
    }
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        write!(f, "{} {} ({group})", self.verb, self.rbac_resource())?;
        if let Some(ns) = &self.namespace {
            write!(f, " in namespace {ns}")?;
        }
        if let Some(name) = &self.name {
            write!(f, " named {name}")?;
        }
        Ok(())
    }
}

/// Whether `rules` allow `request`, with the RBAC authorizer's matching:
/// `*` wildcards, `resource/subresource` as its own resource, and a rule
/// with `resourceNames` matches only a request that names one of them (so
/// never a create or a list, whose names the authorizer does not see).
pub fn rules_allow(rules: &[PolicyRule], request: &Request) -> bool {
    let has = |list: &Option<Vec<String>>, value: &str| {
        list.as_ref()
            .is_some_and(|l| l.iter().any(|v| v == "*" || v == value))
    };
    let resource = request.rbac_resource();
    let name_visible = !matches!(request.verb.as_str(), "create" | "list" | "watch");
    rules.iter().any(|rule| {
        has(&rule.api_groups, &request.group)
            && has(&rule.resources, &resource)
            && rule.verbs.iter().any(|v| v == "*" || *v == request.verb)
            && match rule.resource_names.as_deref() {
                None | Some([]) => true,
                Some(names) => {
                    name_visible
                        && request
                            .name
                            .as_deref()
                            .is_some_and(|n| names.iter().any(|r| r == n))
                }
            }
    })
}

#[derive(Deserialize)]
struct RoleDoc {
    kind: String,
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    rules: Vec<PolicyRule>,
}

#[derive(Deserialize, Default)]
struct Meta {
    namespace: Option<String>,
}

/// The rules of every `ClusterRole` / `Role` in a multi-document YAML, with
/// the Role's namespace (`None` for a ClusterRole).
fn roles(yaml: &str) -> Vec<(Option<String>, Vec<PolicyRule>)> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| RoleDoc::deserialize(doc).expect("deploy/rbac YAML parses"))
        .filter(|doc| doc.kind == "ClusterRole" || doc.kind == "Role")
        .map(|doc| {
            let namespace = (doc.kind == "Role").then(|| {
                doc.metadata
                    .namespace
                    .expect("a namespaced Role in deploy/rbac names its namespace")
            });
            (namespace, doc.rules)
        })
        .collect()
}

/// Whom a client acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// The operator's ServiceAccount: `deploy/rbac/cluster_role.yaml`
    /// everywhere, plus `leader_election_role.yaml` in its namespace.
    Operator,
    /// The agent of one instance: its Role in the instance's namespace.
    Agent {
        /// The instance's namespace.
        namespace: String,
        /// The instance's name.
        instance: String,
    },
    /// The test itself (setting the scene, playing the kubelet or a user):
    /// not checked against RBAC. Its writes are still validated.
    Admin,
}

impl Identity {
    /// The agent identity of `namespace/instance`.
    pub fn agent(namespace: &str, instance: &str) -> Self {
        Self::Agent {
            namespace: namespace.to_owned(),
            instance: instance.to_owned(),
        }
    }

    /// Whether the shipped RBAC of this identity allows `request`.
    pub fn allows(&self, request: &Request) -> bool {
        match self {
            Self::Admin => true,
            Self::Operator => [CLUSTER_ROLE, LEADER_ELECTION_ROLE]
                .into_iter()
                .flat_map(roles)
                .any(|(namespace, rules)| {
                    let in_scope =
                        namespace.is_none() || namespace.as_deref() == request.namespace.as_deref();
                    in_scope && rules_allow(&rules, request)
                }),
            Self::Agent {
                namespace,
                instance,
            } => {
                request.namespace.as_deref() == Some(namespace.as_str())
                    && rules_allow(&keeper_crds::agent::agent_policy_rules(instance), request)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keeper_crds::agent::{BACKUPS, INSTANCES};

    fn request(
        verb: &str,
        group: &str,
        resource: &str,
        ns: Option<&str>,
        name: Option<&str>,
    ) -> Request {
        let (resource, subresource) = match resource.split_once('/') {
            Some((r, s)) => (r, Some(s.to_owned())),
            None => (resource, None),
        };
        Request {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource,
            namespace: ns.map(Into::into),
            name: name.map(Into::into),
        }
    }

    const GROUP: &str = keeper_crds::API_GROUP;

    #[test]
    fn the_agent_may_only_touch_its_own_instance_in_its_namespace() {
        let agent = Identity::agent("shop", "orders");
        assert!(agent.allows(&request(
            "get",
            GROUP,
            INSTANCES,
            Some("shop"),
            Some("orders")
        )));
        assert!(agent.allows(&request(
            "patch",
            GROUP,
            "mysqlinstances/status",
            Some("shop"),
            Some("orders")
        )));
        assert!(!agent.allows(&request(
            "get",
            GROUP,
            INSTANCES,
            Some("shop"),
            Some("billing")
        )));
        assert!(!agent.allows(&request(
            "patch",
            GROUP,
            INSTANCES,
            Some("shop"),
            Some("orders")
        )));
        assert!(!agent.allows(&request(
            "get",
            GROUP,
            INSTANCES,
            Some("other"),
            Some("orders")
        )));
        assert!(agent.allows(&request("create", GROUP, BACKUPS, Some("shop"), Some("b"))));
        assert!(!agent.allows(&request("get", "", "secrets", Some("shop"), Some("orders"))));
        assert!(!agent.allows(&request("list", GROUP, INSTANCES, Some("shop"), None)));
    }

    #[test]
    fn the_operator_holds_the_cluster_role_and_leases_only_at_home() {
        let op = Identity::Operator;
        assert!(op.allows(&request(
            "patch",
            "apps",
            "statefulsets",
            Some("shop"),
            Some("x")
        )));
        assert!(!op.allows(&request(
            "delete",
            "apps",
            "statefulsets",
            Some("shop"),
            Some("x")
        )));
        assert!(op.allows(&request(
            "update",
            "coordination.k8s.io",
            "leases",
            Some("keeper-system"),
            Some("l")
        )));
        assert!(!op.allows(&request(
            "update",
            "coordination.k8s.io",
            "leases",
            Some("shop"),
            Some("l")
        )));
    }

    #[test]
    fn resource_names_never_authorize_create_or_list() {
        let named = vec![PolicyRule {
            api_groups: Some(vec![GROUP.into()]),
            resources: Some(vec![BACKUPS.into()]),
            resource_names: Some(vec!["a".into()]),
            verbs: vec!["create".into(), "get".into(), "list".into()],
            ..PolicyRule::default()
        }];
        assert!(!rules_allow(
            &named,
            &request("create", GROUP, BACKUPS, None, Some("a"))
        ));
        assert!(!rules_allow(
            &named,
            &request("list", GROUP, BACKUPS, None, Some("a"))
        ));
        assert!(rules_allow(
            &named,
            &request("get", GROUP, BACKUPS, None, Some("a"))
        ));
        assert!(!rules_allow(
            &named,
            &request("get", GROUP, BACKUPS, None, None)
        ));
        let wildcard = vec![PolicyRule {
            api_groups: Some(vec!["*".into()]),
            resources: Some(vec!["*".into()]),
            verbs: vec!["*".into()],
            ..PolicyRule::default()
        }];
        assert!(rules_allow(
            &wildcard,
            &request("create", GROUP, BACKUPS, None, None)
        ));
    }
}

//! Who a backup belongs to: the instance that made it, recorded in its
//! manifest (and in its `in-progress.json` while it runs), so that retention
//! and orphan cleanup only ever act on one owner's backups, even when several
//! instances share a bucket.
//!
//! An owner is `NAMESPACE/NAME` inside Kubernetes (from `KEEPER_NAMESPACE` and
//! `KEEPER_INSTANCE`), or what `--instance [NAMESPACE/]NAME` says outside.
//!
//! Matching rule (the CLI help repeats it): an owner given *with* a namespace
//! matches exactly that namespace and name; an owner given *without* one
//! matches any recorded owner whose name part is equal (`orders` matches
//! `shop/orders` and `orders`). Retention refuses to act when a name without
//! namespace matches more than one recorded owner: it never mixes two
//! instances' backups under one rule.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::context::AgentContext;
use keeper_crds::agent::{ENV_INSTANCE, ENV_NAMESPACE};

/// An owner as recorded in a manifest or given on the command line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Owner {
    namespace: Option<String>,
    name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OwnerError {
    /// `--instance` is not a valid `[NAMESPACE/]NAME`.
    #[error(
        "--instance {0:?} is not [NAMESPACE/]NAME: use letters, digits, '-', '_' and '.', with at most one '/'"
    )]
    Invalid(String),
    /// `--instance` names another instance than the Job's environment.
    #[error(
        "--instance {given} does not match this Job's instance {recorded} ({ENV_NAMESPACE}/{ENV_INSTANCE}); drop --instance or make them equal"
    )]
    Mismatch { given: String, recorded: String },
}

fn valid_part(part: &str) -> bool {
    !part.is_empty()
        && part.len() <= 253
        && part != "."
        && part != ".."
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Owner {
    /// `NAMESPACE/NAME`.
    pub fn namespaced(namespace: &str, name: &str) -> Result<Owner, OwnerError> {
        format!("{namespace}/{name}").parse()
    }

    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this owner, used as a selector, takes in a backup recorded
    /// as `recorded` (see the module docs for the rule).
    pub fn matches(&self, recorded: &Owner) -> bool {
        self.name == recorded.name
            && (self.namespace.is_none() || self.namespace == recorded.namespace)
    }

    /// The owner of this run: `KEEPER_NAMESPACE/KEEPER_INSTANCE` inside
    /// Kubernetes, else `--instance`; `None` when neither is given. Inside
    /// Kubernetes a `--instance` must match the Job's instance.
    pub fn of_run(given: Option<&str>, ctx: &AgentContext) -> Result<Option<Owner>, OwnerError> {
        let given = given.map(str::parse::<Owner>).transpose()?;
        let from_env = match (ctx.var(ENV_NAMESPACE), ctx.var(ENV_INSTANCE)) {
            (Some(ns), Some(name)) => Some(Owner::namespaced(ns, name)?),
            _ => None,
        };
        match (from_env, given) {
            (Some(env), Some(given)) if !given.matches(&env) => Err(OwnerError::Mismatch {
                given: given.to_string(),
                recorded: env.to_string(),
            }),
            (Some(env), _) => Ok(Some(env)),
            (None, given) => Ok(given),
        }
    }
}

impl FromStr for Owner {
    type Err = OwnerError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || OwnerError::Invalid(text.to_owned());
        let (namespace, name) = match text.split_once('/') {
            Some((ns, name)) => (Some(ns), name),
            None => (None, text),
        };
        if !valid_part(name) || namespace.is_some_and(|ns| !valid_part(ns)) {
            return Err(invalid());
        }
        Ok(Owner {
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        })
    }
}

impl TryFrom<String> for Owner {
    type Error = OwnerError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<Owner> for String {
    fn from(owner: Owner) -> String {
        owner.to_string()
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{ns}/{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(text: &str) -> Owner {
        text.parse().expect("valid owner")
    }

    #[test]
    fn parses_and_prints_both_forms() {
        assert_eq!(owner("shop/orders").to_string(), "shop/orders");
        assert_eq!(owner("shop/orders").namespace(), Some("shop"));
        assert_eq!(owner("orders").to_string(), "orders");
        assert_eq!(owner("orders").namespace(), None);
        for bad in ["", "/", "a/", "/a", "a/b/c", "a b", "..", "shop/.."] {
            assert!(bad.parse::<Owner>().is_err(), "{bad:?}");
        }
        let json = serde_json::to_string(&owner("shop/orders")).expect("json");
        assert_eq!(json, "\"shop/orders\"");
        assert!(serde_json::from_str::<Owner>("\"a/b/c\"").is_err());
    }

    #[test]
    fn a_name_without_namespace_matches_the_name_part() {
        assert!(owner("orders").matches(&owner("shop/orders")));
        assert!(owner("orders").matches(&owner("orders")));
        assert!(owner("shop/orders").matches(&owner("shop/orders")));
        assert!(!owner("shop/orders").matches(&owner("test/orders")));
        assert!(!owner("shop/orders").matches(&owner("orders")));
        assert!(!owner("orders").matches(&owner("shop/billing")));
    }

    #[test]
    fn the_jobs_instance_wins_and_must_agree() {
        let ctx = AgentContext {
            env: [(ENV_NAMESPACE, "shop"), (ENV_INSTANCE, "orders")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            kube: None,
        };
        assert_eq!(Owner::of_run(None, &ctx), Ok(Some(owner("shop/orders"))));
        assert_eq!(
            Owner::of_run(Some("orders"), &ctx),
            Ok(Some(owner("shop/orders")))
        );
        assert!(matches!(
            Owner::of_run(Some("shop/billing"), &ctx),
            Err(OwnerError::Mismatch { .. })
        ));
        let outside = AgentContext::default();
        assert_eq!(Owner::of_run(None, &outside), Ok(None));
        assert_eq!(
            Owner::of_run(Some("dev/app"), &outside),
            Ok(Some(owner("dev/app")))
        );
    }
}

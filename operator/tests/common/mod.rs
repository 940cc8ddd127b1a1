//! Setup shared by the operator's integration tests (reconcile, backups,
//! restore) and the cross-crate end-to-end tests of the operator's Jobs run
//! by the agent (`tests/tests/*_e2e.rs`, which include this file with
//! `#[path]`): Secrets, an account manager without
//! a server, and the kubelet's part — a Job's arguments and environment as
//! its pod would see them. The in-memory API itself is
//! `keeper_tests::kube::FakeCluster`.
// Each test binary uses a different part of this module.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::JobSpec;
use k8s_openapi::api::core::v1::Secret;
use keeper_operator::accounts::{AccountManager, AccountTarget, AccountsError, AppAccountTarget};
use keeper_tests::MariaDb;
use kube::{Api, Client};

/// The backup user is "ensured" without a server: the instance's Service
/// address does not exist here. Tests that need the account on a harness
/// server ensure it there with `SqlAccountManager` (see accounts.rs).
pub struct NoAccounts;

impl AccountManager for NoAccounts {
    fn ensure_backup_user<'a>(
        &'a self,
        _target: &'a AccountTarget,
    ) -> futures::future::BoxFuture<'a, Result<(), AccountsError>> {
        Box::pin(async { Ok(()) })
    }

    fn ensure_app_account<'a>(
        &'a self,
        _target: &'a AppAccountTarget,
    ) -> futures::future::BoxFuture<'a, Result<(), AccountsError>> {
        Box::pin(async { Ok(()) })
    }
}

/// A Secret in `namespace` with `data`.
pub fn secret(namespace: &str, name: &str, data: &[(&str, &str)]) -> Secret {
    let mut secret = Secret::default();
    secret.metadata.name = Some(name.to_owned());
    secret.metadata.namespace = Some(namespace.to_owned());
    secret.data = Some(
        data.iter()
            .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
            .collect(),
    );
    secret
}

/// The value of `key` in the Secret `namespace/name`.
pub async fn secret_value(client: &Client, namespace: &str, name: &str, key: &str) -> String {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("Secret {name}: {e}"));
    // The in-memory API keeps `stringData` as written.
    if let Some(value) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return value.clone();
    }
    let bytes = secret.data.unwrap_or_default()[key].0.clone();
    String::from_utf8(bytes).unwrap()
}

/// The arguments (with `keeper-agent` first) and environment of the first
/// container of a Job spec, as the pod `job_name` in `namespace` would see
/// them: `secretKeyRef` → the Secret's value, the downward API → the Job's
/// name, and the server's Service address (`service_host`:3306, asserted)
/// replaced by `target`'s.
pub async fn resolve(
    client: &Client,
    namespace: &str,
    job_name: &str,
    spec: &JobSpec,
    service_host: &str,
    target: &MariaDb,
) -> (Vec<String>, HashMap<String, String>) {
    let container = &spec.template.spec.as_ref().unwrap().containers[0];
    let mut args = vec!["keeper-agent".to_owned()];
    let mut given = container.args.clone().unwrap().into_iter();
    while let Some(arg) = given.next() {
        match arg.as_str() {
            "--host" => {
                let host = given.next().unwrap();
                assert_eq!(host, service_host, "the client Service");
                args.extend(["--host".to_owned(), target.host().to_owned()]);
            }
            "--port" => {
                assert_eq!(given.next().as_deref(), Some("3306"));
                args.extend(["--port".to_owned(), target.port().to_string()]);
            }
            _ => args.push(arg),
        }
    }
    let mut env = HashMap::new();
    for var in container.env.clone().unwrap() {
        let value = match (&var.value, &var.value_from) {
            (Some(value), None) => value.clone(),
            (None, Some(source)) => {
                if let Some(selector) = &source.secret_key_ref {
                    secret_value(client, namespace, &selector.name, &selector.key).await
                } else if let Some(field) = &source.field_ref {
                    assert_eq!(
                        field.field_path,
                        "metadata.labels['batch.kubernetes.io/job-name']"
                    );
                    job_name.to_owned()
                } else {
                    panic!("unexpected env source for {}: {source:?}", var.name)
                }
            }
            other => panic!("{}: {other:?}", var.name),
        };
        env.insert(var.name.clone(), value);
    }
    (args, env)
}

//! The credentials Secret `<name>-credentials`: generated once from a CSPRNG,
//! never regenerated, never owned by the instance (it lives as long as the
//! data, so a re-created instance finds its own passwords).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use keeper_crds::MySQLInstance;
use keeper_crds::instance::{DEFAULT_ROOT_PASSWORD_KEY, PASSWORD_KEY, USERNAME_KEY};
use rand::RngExt;
use rand::distr::Alphanumeric;

use super::InstanceMeta;

/// Length of generated passwords: 32 alphanumerics are about 190 bits.
pub const PASSWORD_LENGTH: usize = 32;

/// A new password from the thread-local CSPRNG (ChaCha, seeded by the OS).
/// Alphanumeric only, so it survives every shell, URL and my.cnf unquoted.
pub fn generate_password() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(PASSWORD_LENGTH)
        .map(char::from)
        .collect()
}

/// Which keys the operator generates for `instance`: `root-password` unless
/// the user brings their own root Secret, and `username`/`password` when
/// `spec.user` is set. Empty means no credentials Secret at all.
pub fn generated_keys(instance: &MySQLInstance) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if instance.spec.root_password_secret_ref.is_none() {
        keys.push(DEFAULT_ROOT_PASSWORD_KEY);
    }
    if instance.spec.user.is_some() {
        keys.push(USERNAME_KEY);
        keys.push(PASSWORD_KEY);
    }
    keys
}

/// The value of a generated key: the user name comes from the spec, the rest
/// from `password`.
fn value_for(instance: &MySQLInstance, key: &str, password: &mut dyn FnMut() -> String) -> String {
    match (key, &instance.spec.user) {
        (USERNAME_KEY, Some(user)) => user.clone(),
        _ => password(),
    }
}

/// The keys of `generated_keys` that `existing` lacks, with fresh values.
/// Keys already present are never touched.
pub fn missing_entries(
    instance: &MySQLInstance,
    existing: Option<&Secret>,
    password: &mut dyn FnMut() -> String,
) -> BTreeMap<String, ByteString> {
    let present = |key: &str| {
        existing
            .and_then(|s| s.data.as_ref())
            .is_some_and(|d| d.contains_key(key))
            || existing
                .and_then(|s| s.string_data.as_ref())
                .is_some_and(|d| d.contains_key(key))
    };
    generated_keys(instance)
        .into_iter()
        .filter(|key| !present(key))
        .map(|key| {
            (
                key.to_owned(),
                ByteString(value_for(instance, key, password).into_bytes()),
            )
        })
        .collect()
}

/// A new credentials Secret holding `data`.
pub fn build(meta: &InstanceMeta, data: BTreeMap<String, ByteString>) -> Secret {
    Secret {
        metadata: meta.unowned_metadata(format!("{}-credentials", meta.name)),
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

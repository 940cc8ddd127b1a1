//! `keeper-operator render`: every object the operator would apply for the
//! `MySQLInstance` objects of a YAML file, as YAML, without a cluster: the
//! server's ConfigMap, Services and StatefulSet, the backup agent's
//! ServiceAccount, Role and RoleBinding, and with a backup schedule the
//! backup CronJob.
//!
//! An instance without a namespace is rendered as kubectl would apply it,
//! in `default` (the CronJob's agent names the instance's folder by it).
//!
//! The credentials Secret is not printed: its passwords are generated once,
//! in the cluster. A comment says which Secret and keys it would hold.

use std::fmt::Write as _;

use keeper_crds::MySQLInstance;
use serde::Deserialize;

use crate::context::OperatorConfig;
use crate::instance::backup_schedule::scheduled_cronjob;
use crate::instance::build::{self, InstanceMeta, agent_rbac, secret};

/// Where kubectl puts an object whose file names no namespace.
const DEFAULT_NAMESPACE: &str = "default";

/// Why a file cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The file is not YAML.
    #[error("document {index}: {source}")]
    Yaml {
        /// 1-based number of the document.
        index: usize,
        /// The parse error.
        #[source]
        source: serde_yaml::Error,
    },
    /// A MySQLInstance does not match the API.
    #[error("document {index} (MySQLInstance {name}): {message}")]
    Invalid {
        /// 1-based number of the document.
        index: usize,
        /// Name of the instance.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// Renders every `MySQLInstance` in the multi-document YAML `input` as an
/// operator with `config` would apply it; other documents are skipped with a
/// comment.
///
/// # Errors
/// [`RenderError`] for unparsable YAML or an invalid instance.
pub fn render(input: &str, config: &OperatorConfig) -> Result<String, RenderError> {
    let mut out = String::new();
    for (i, document) in serde_yaml::Deserializer::from_str(input).enumerate() {
        let index = i + 1;
        let value = serde_yaml::Value::deserialize(document)
            .map_err(|source| RenderError::Yaml { index, source })?;
        if value.is_null() {
            continue;
        }
        let kind = value.get("kind").and_then(serde_yaml::Value::as_str);
        let name = value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(serde_yaml::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if kind != Some("MySQLInstance") {
            let _ = writeln!(
                out,
                "# document {index}: {} {name} is not a MySQLInstance; skipped",
                kind.unwrap_or("<no kind>")
            );
            continue;
        }
        let instance: MySQLInstance =
            serde_yaml::from_value(value).map_err(|source| RenderError::Yaml { index, source })?;
        render_instance(&mut out, &instance, config).map_err(|message| RenderError::Invalid {
            index,
            name: name.clone(),
            message,
        })?;
    }
    Ok(out)
}

fn render_instance(
    out: &mut String,
    instance: &MySQLInstance,
    config: &OperatorConfig,
) -> Result<(), String> {
    if let Err(errors) = instance.spec.validate() {
        return Err(errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "));
    }
    let objects = build::desired_objects(instance, None).map_err(|e| e.to_string())?;
    if !out.is_empty() {
        // Keep each instance's header comment out of the previous document.
        out.push_str("---\n");
    }
    let _ = writeln!(out, "# MySQLInstance {}", instance.name());
    let keys = secret::generated_keys(instance);
    if keys.is_empty() {
        let (name, key) = instance.root_password_secret();
        let _ = writeln!(
            out,
            "# Root password: key {key} of the existing Secret {name} (not managed)."
        );
    } else {
        let _ = writeln!(
            out,
            "# Secret {}: created once in the cluster with generated values for {}; not rendered.",
            instance.credentials_secret_name(),
            keys.join(", ")
        );
    }
    let meta = InstanceMeta::of(instance).map_err(|e| e.to_string())?;
    let mut documents = vec![
        serde_yaml::to_string(&objects.config_map),
        serde_yaml::to_string(&objects.headless_service),
        serde_yaml::to_string(&objects.client_service),
        serde_yaml::to_string(&objects.stateful_set),
        serde_yaml::to_string(&agent_rbac::service_account(&meta)),
        serde_yaml::to_string(&agent_rbac::role(&meta)),
        serde_yaml::to_string(&agent_rbac::role_binding(&meta)),
    ];
    // Validated above: a schedule that does not parse was refused there.
    let schedule = instance.spec.schedule().map_err(|e| e.to_string())?;
    if let (Some(backup), Some(schedule)) = (&instance.spec.backup, schedule) {
        // The agent's arguments name the instance's folder,
        // `<destination>/<namespace>/<instance>`: a file without a namespace
        // is applied to `default`, as kubectl does.
        let mut placed = instance.clone();
        placed
            .metadata
            .namespace
            .get_or_insert_with(|| DEFAULT_NAMESPACE.to_owned());
        let cronjob = scheduled_cronjob(config, &placed, &meta, backup, &schedule)
            .map_err(|e| e.to_string())?;
        documents.push(serde_yaml::to_string(&cronjob));
    }
    for document in documents {
        out.push_str("---\n");
        out.push_str(&document.map_err(|e| e.to_string())?);
    }
    Ok(())
}

//! `render` for every sample in deploy/samples: YAML snapshots of the objects
//! the operator would apply, and a check that each object is a valid
//! Kubernetes object (it round-trips through its k8s-openapi type without
//! losing or changing a field, which catches misspelled or misplaced fields).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use keeper_operator::context::OperatorConfig;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use keeper_tests::kube::server_rules;

fn samples() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/samples");
    let mut samples: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("deploy/samples exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension().is_some_and(|e| e == "yaml")
                && path.file_name().is_some_and(|n| n != "kustomization.yaml")
        })
        .map(|path| {
            (
                path.file_stem().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&path).unwrap(),
            )
        })
        .collect();
    samples.sort();
    assert!(samples.len() >= 4, "samples missing in {}", dir.display());
    samples
}

/// The operator's settings for the snapshots: a fixed agent image, so a
/// version bump does not change them.
fn config() -> OperatorConfig {
    OperatorConfig {
        agent_image: "ghcr.io/mysql-keeper/keeper-agent:render".into(),
        ..OperatorConfig::default()
    }
}

fn round_trips<K: DeserializeOwned + serde::Serialize>(value: &serde_json::Value) {
    let typed: K = serde_json::from_value(value.clone()).expect("deserializes");
    let back = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        &back, value,
        "a field was lost or changed in the round trip"
    );
}

#[test]
fn every_sample_renders_to_valid_objects() {
    for (name, input) in samples() {
        let output = keeper_operator::render::render(&input, &config()).expect("renders");
        insta::assert_snapshot!(name.clone(), output);
        let mut kinds = Vec::new();
        for document in serde_yaml::Deserializer::from_str(&output) {
            let value = serde_json::Value::deserialize(document).unwrap();
            if value.is_null() {
                continue;
            }
            let kind = value["kind"].as_str().unwrap().to_owned();
            // The API server's Go-side rules (e.g. a fieldRef names its apiVersion).
            let refused = server_rules::check_object(&kind, &value, true);
            assert!(refused.is_empty(), "{name}: {kind}: {refused:?}");
            match kind.as_str() {
                "ConfigMap" => round_trips::<ConfigMap>(&value),
                "Service" => round_trips::<Service>(&value),
                "StatefulSet" => round_trips::<StatefulSet>(&value),
                "ServiceAccount" => round_trips::<ServiceAccount>(&value),
                "Role" => round_trips::<Role>(&value),
                "RoleBinding" => round_trips::<RoleBinding>(&value),
                "CronJob" => round_trips::<CronJob>(&value),
                other => panic!("{name}: unexpected kind {other}"),
            }
            kinds.push(kind);
        }
        if input.contains("kind: MySQLInstance") {
            // Everything the operator applies: the server's objects, the
            // agent's identity, and with a schedule the backup CronJob.
            let mut expected = vec![
                "ConfigMap",
                "Service",
                "Service",
                "StatefulSet",
                "ServiceAccount",
                "Role",
                "RoleBinding",
            ];
            if input.contains("schedule:") {
                expected.push("CronJob");
            }
            assert_eq!(kinds, expected, "{name}");
        } else {
            assert!(kinds.is_empty(), "{name}");
        }
        assert!(!output.contains("password:"), "{name}: no secret values");
    }
}

#[test]
fn an_invalid_instance_is_refused() {
    let input = "apiVersion: mysql.keeper.dev/v1alpha1\nkind: MySQLInstance\nmetadata:\n  name: x\nspec:\n  image: 'bad image'\n";
    let error = keeper_operator::render::render(input, &config()).expect_err("invalid");
    assert!(error.to_string().contains("spec.image"), "{error}");
}

/// Every object under deploy/ passes the API server's Go-side rules that
/// hold for any object — above all, a `fieldRef` names `apiVersion: v1`: the
/// server defaults it, so a `kubectl apply --server-side` after a
/// client-side apply would otherwise conflict on it.
#[test]
fn deploy_manifests_pass_the_servers_go_side_rules() {
    fn yaml_files(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                yaml_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    yaml_files(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy"),
        &mut files,
    );
    assert!(files.len() > 10, "{files:?}");
    let mut field_refs = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        field_refs += text.matches("fieldRef:").count();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_json::Value::deserialize(document).unwrap();
            let kind = value["kind"].as_str().unwrap_or_default();
            let refused = server_rules::check_object(kind, &value, true);
            assert!(
                refused.is_empty(),
                "{}: {kind}: {refused:?}",
                file.display()
            );
        }
    }
    assert!(
        field_refs >= 2,
        "the operator's Deployment reads its namespace and name"
    );
}

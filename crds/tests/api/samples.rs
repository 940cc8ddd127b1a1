//! The samples in deploy/samples: listed in the kustomization, typed round
//! trips, and valid for the schema's CEL rules and for `validate()`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use keeper_crds::{MySQLBackup, MySQLInstance};
use serde_json::Value;

use crate::common::{backup_schema, cel_failures, instance_schema, repo_root};

fn samples_dir() -> PathBuf {
    repo_root().join("deploy/samples")
}

fn sample_files() -> BTreeSet<String> {
    std::fs::read_dir(samples_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") && name != "kustomization.yaml")
        .collect()
}

fn read_sample(name: &str) -> Value {
    let text = std::fs::read_to_string(samples_dir().join(name)).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn kustomization_lists_every_sample() {
    let kustomization = read_sample("kustomization.yaml");
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, sample_files());
}

#[test]
fn the_samples_cover_the_documented_cases() {
    let all: Vec<Value> = sample_files().iter().map(|f| read_sample(f)).collect();
    let instances = || all.iter().filter(|s| s["kind"] == "MySQLInstance");
    assert!(
        instances().any(|s| s["spec"] == serde_json::json!({})),
        "a minimal instance"
    );
    assert!(
        instances().any(|s| s["spec"]["backup"]["destination"]["s3"].is_object()
            && s["spec"]["backup"]["retention"].is_object()
            && s["spec"]["backup"]["schedule"].is_string()),
        "an instance with S3 backups and retention"
    );
    assert!(
        instances().any(|s| s["spec"]["restoreFrom"]["backupName"].is_string()),
        "a restore by name"
    );
    assert!(
        instances().any(|s| s["spec"]["restoreFrom"]["location"].is_object()),
        "a restore from a location"
    );
    assert!(
        all.iter().any(|s| s["kind"] == "MySQLBackup"),
        "an on-demand backup"
    );
}

#[test]
fn samples_round_trip_and_validate() {
    for file in sample_files() {
        let original = read_sample(&file);
        let (schema, round_tripped) = match original["kind"].as_str() {
            Some("MySQLInstance") => {
                let typed: MySQLInstance = serde_json::from_value(original.clone())
                    .unwrap_or_else(|e| panic!("{file}: {e}"));
                assert_eq!(typed.spec.validate(), Ok(()), "{file}");
                (instance_schema(), serde_json::to_value(&typed).unwrap())
            }
            Some("MySQLBackup") => {
                let typed: MySQLBackup = serde_json::from_value(original.clone())
                    .unwrap_or_else(|e| panic!("{file}: {e}"));
                assert_eq!(typed.spec.validate(), Ok(()), "{file}");
                (backup_schema(), serde_json::to_value(&typed).unwrap())
            }
            other => panic!("{file}: unexpected kind {other:?}"),
        };
        // Equal modulo defaults: serde writes defaulted fields out, the file
        // leaves them to the API server.
        assert_eq!(
            kube_cel::apply_defaults(&schema, &original),
            kube_cel::apply_defaults(&schema, &round_tripped),
            "{file} does not survive a typed round trip"
        );
        let failures = cel_failures(&schema, &original, None);
        assert!(
            failures.is_empty(),
            "{file} fails CEL rules on create: {failures:?}"
        );
        let failures = cel_failures(&schema, &original, Some(&original));
        assert!(
            failures.is_empty(),
            "{file} fails CEL rules on a no-op update: {failures:?}"
        );
    }
}

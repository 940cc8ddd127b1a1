//! Defaults: what serde fills in, what the schema fills in, and that the two agree.

use keeper_crds::instance::{DEFAULT_COMPRESSION_LEVEL, DEFAULT_STORAGE_SIZE};
use keeper_crds::{
    BackupDestination, Flavor, MySQLBackup, MySQLInstance, MySQLInstanceSpec, S3Destination,
    Schedule, ValidationError,
};
use serde_json::{Value, json};

use crate::common::instance_schema;

fn instance(name: &str, spec: Value) -> MySQLInstance {
    serde_json::from_value(json!({
        "apiVersion": "mysql.keeper.dev/v1alpha1",
        "kind": "MySQLInstance",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": spec,
    }))
    .unwrap()
}

#[test]
fn empty_spec_gets_every_default() {
    let spec: MySQLInstanceSpec = serde_json::from_value(json!({})).unwrap();
    assert_eq!(spec.flavor(), Flavor::Mysql);
    assert_eq!(spec.version(), "8.4");
    assert_eq!(spec.image(), "mysql:8.4");
    assert_eq!(spec.storage.size, DEFAULT_STORAGE_SIZE);
    assert_eq!(spec.storage.storage_class_name, None);
    assert!(!spec.backup_on_delete);
    assert!(spec.config.is_empty());
    assert!(spec.backup.is_none() && spec.restore_from.is_none() && spec.resources.is_none());
    assert_eq!(spec.validate(), Ok(()));
    assert!(spec.schedule().unwrap().is_none());
}

#[test]
fn flavor_picks_version_and_image() {
    let spec: MySQLInstanceSpec = serde_json::from_value(json!({"flavor": "mariadb"})).unwrap();
    assert_eq!(spec.version(), "11.4");
    assert_eq!(spec.image(), "mariadb:11.4");
    let spec: MySQLInstanceSpec =
        serde_json::from_value(json!({"flavor": "mariadb", "version": "10.11"})).unwrap();
    assert_eq!(spec.image(), "mariadb:10.11");
    let spec: MySQLInstanceSpec = serde_json::from_value(
        json!({"version": "8.0", "image": "registry.local:5000/mirror/mysql:8.4.3"}),
    )
    .unwrap();
    assert_eq!(spec.image(), "registry.local:5000/mirror/mysql:8.4.3");
    assert_eq!(spec.version(), "8.0");
}

#[test]
fn nested_defaults() {
    let spec: MySQLInstanceSpec = serde_json::from_value(json!({
        "rootPasswordSecretRef": {"name": "root"},
        "backup": {"destination": {"s3": {"bucket": "bkt", "caBundleSecretRef": {"name": "ca"}}}},
        "restoreFrom": {"backupName": "b"},
    }))
    .unwrap();
    let backup = spec.backup.as_ref().unwrap();
    assert_eq!(backup.compression_level, DEFAULT_COMPRESSION_LEVEL);
    assert!(!backup.suspend);
    let s3 = backup.destination.s3.as_ref().unwrap();
    assert_eq!(s3.region, "us-east-1");
    assert!(!s3.force_path_style);
    assert_eq!(s3.ca_bundle_secret_ref.as_ref().unwrap().key, "ca.crt");
    assert!(!spec.restore_from.as_ref().unwrap().overwrite);
    assert_eq!(
        spec.root_password_secret_ref.as_ref().unwrap().key,
        "root-password"
    );

    let pvc: BackupDestination =
        serde_json::from_value(json!({"pvc": {"claimName": "backups"}})).unwrap();
    assert_eq!(pvc.pvc.as_ref().unwrap().path, "");
}

/// The schema's defaults (applied by the API server) and serde's defaults
/// (applied when the binaries read an object) must be the same values.
#[test]
fn schema_defaults_match_serde_defaults() {
    let schema = instance_schema();
    for spec in [
        json!({}),
        json!({"flavor": "mariadb", "storage": {}}),
        json!({
            "rootPasswordSecretRef": {"name": "root"},
            "backup": {
                "destination": {"s3": {"bucket": "bkt", "caBundleSecretRef": {"name": "ca"}}},
                "retention": {},
            },
            "restoreFrom": {"location": {"destination": {"pvc": {"claimName": "c"}}, "backup": "b"}},
        }),
    ] {
        let raw = json!({
            "apiVersion": "mysql.keeper.dev/v1alpha1",
            "kind": "MySQLInstance",
            "metadata": {"name": "orders"},
            "spec": spec,
        });
        let server_defaulted = kube_cel::apply_defaults(&schema, &raw);
        let typed: MySQLInstance = serde_json::from_value(raw.clone()).unwrap();
        let serde_defaulted = serde_json::to_value(&typed).unwrap();
        assert_eq!(
            server_defaulted, serde_defaulted,
            "defaults differ for {raw}"
        );
    }
}

#[test]
fn derived_names() {
    let orders = instance("orders", json!({}));
    assert_eq!(orders.name(), "orders");
    assert_eq!(orders.credentials_secret_name(), "orders-credentials");
    assert_eq!(
        orders.root_password_secret(),
        ("orders-credentials".to_owned(), "root-password".to_owned())
    );
    assert_eq!(orders.backup_secret_name(), "orders-backup");
    assert_eq!(orders.agent_service_account_name(), "orders-backup-agent");
    assert!(orders.backup_destination().is_none());

    let own = instance(
        "orders",
        json!({"rootPasswordSecretRef": {"name": "vault-root", "key": "pw"}}),
    );
    assert_eq!(
        own.root_password_secret(),
        ("vault-root".to_owned(), "pw".to_owned())
    );
    // The generated Secret keeps its name, for the application user's credentials.
    assert_eq!(own.credentials_secret_name(), "orders-credentials");
}

#[test]
fn destination_urls() {
    let mut s3 = S3Destination::new("bkt");
    assert_eq!(
        BackupDestination::s3(s3.clone()).base_url().unwrap(),
        "s3://bkt"
    );
    s3.prefix = Some("prod/orders/".into());
    let destination = BackupDestination::s3(s3);
    assert_eq!(destination.base_url().unwrap(), "s3://bkt/prod/orders");
    assert_eq!(
        destination.backup_url("orders-20250101-030000").unwrap(),
        "s3://bkt/prod/orders/orders-20250101-030000"
    );

    let pvc: BackupDestination =
        serde_json::from_value(json!({"pvc": {"claimName": "c"}})).unwrap();
    assert_eq!(pvc.base_url().unwrap(), "file:///backups");
    let pvc: BackupDestination =
        serde_json::from_value(json!({"pvc": {"claimName": "c", "path": "orders"}})).unwrap();
    assert_eq!(pvc.backup_url("b1").unwrap(), "file:///backups/orders/b1");

    assert_eq!(BackupDestination::default().base_url(), None);
}

#[test]
fn each_instance_gets_its_own_folder_under_a_destination() {
    let root = BackupDestination::s3(S3Destination::new("bkt"));
    let scoped = root.for_instance("shop", "orders");
    assert_eq!(scoped.base_url().unwrap(), "s3://bkt/shop/orders");
    assert_eq!(
        scoped.backup_url("orders-1").unwrap(),
        "s3://bkt/shop/orders/orders-1"
    );
    // Everything but the prefix is kept (credentials, endpoint, ...).
    assert_eq!(scoped.s3.as_ref().unwrap().bucket, "bkt");
    let mut s3 = S3Destination::new("bkt");
    s3.prefix = Some("/prod/".into());
    assert_eq!(
        BackupDestination::s3(s3)
            .for_instance("shop", "orders")
            .base_url()
            .unwrap(),
        "s3://bkt/prod/shop/orders"
    );
    // Two instances of one bucket never share a folder.
    assert_ne!(
        root.for_instance("shop", "orders").base_url(),
        root.for_instance("shop", "billing").base_url()
    );
    assert_ne!(
        root.for_instance("shop", "orders").base_url(),
        root.for_instance("test", "orders").base_url()
    );

    let pvc: BackupDestination =
        serde_json::from_value(json!({"pvc": {"claimName": "c", "path": "keeper"}})).unwrap();
    let scoped = pvc.for_instance("shop", "orders");
    assert_eq!(
        scoped.base_url().unwrap(),
        "file:///backups/keeper/shop/orders"
    );
    assert_eq!(scoped.pvc.as_ref().unwrap().claim_name, "c");
    let pvc: BackupDestination =
        serde_json::from_value(json!({"pvc": {"claimName": "c"}})).unwrap();
    assert_eq!(
        pvc.for_instance("shop", "orders").base_url().unwrap(),
        "file:///backups/shop/orders"
    );
}

#[test]
fn backup_objects_for_an_instance() {
    let backup = MySQLBackup::for_instance("orders-20250101-030000", "shop", "orders", None);
    assert_eq!(
        backup.metadata.name.as_deref(),
        Some("orders-20250101-030000")
    );
    assert_eq!(backup.metadata.namespace.as_deref(), Some("shop"));
    assert_eq!(
        backup
            .metadata
            .labels
            .as_ref()
            .unwrap()
            .get(keeper_crds::INSTANCE_LABEL)
            .map(String::as_str),
        Some("orders")
    );
    assert_eq!(backup.spec.instance_ref.name, "orders");
    assert_eq!(backup.phase(), None);
    assert_eq!(
        serde_json::to_value(&backup).unwrap(),
        json!({
            "apiVersion": "mysql.keeper.dev/v1alpha1",
            "kind": "MySQLBackup",
            "metadata": {
                "name": "orders-20250101-030000",
                "namespace": "shop",
                "labels": {"mysql.keeper.dev/instance": "orders"},
            },
            "spec": {"instanceRef": {"name": "orders"}},
        })
    );
}

#[test]
fn validate_reports_every_problem_with_a_reason() {
    let spec: MySQLInstanceSpec = serde_json::from_value(json!({
        "image": "MySQL:8.4",
        "backup": {
            "schedule": "0 3 * *",
            "timeZone": "Mars/Olympus",
            "destination": {},
            "retention": {"keepLast": 0, "maxAge": "30s"},
        },
        "restoreFrom": {"backupName": "b", "location": {"destination": {"pvc": {"claimName": "c"}}, "backup": "x"}},
    }))
    .unwrap();
    let errors = spec.validate().unwrap_err();
    let reasons: Vec<(&str, &str)> = errors.iter().map(|e| (e.reason(), e.field())).collect();
    assert_eq!(
        reasons,
        [
            ("InvalidImage", "spec.image"),
            ("InvalidTimeZone", "spec.backup.timeZone"),
            ("InvalidSchedule", "spec.backup.schedule"),
            ("InvalidDestination", "spec.backup.destination"),
            ("InvalidRetention", "spec.backup.retention"),
            ("InvalidRetention", "spec.backup.retention"),
            ("InvalidRestoreSource", "spec.restoreFrom"),
        ]
    );
    let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
    insta::assert_yaml_snapshot!("validation_messages", messages);

    let spec: MySQLInstanceSpec = serde_json::from_value(json!({"backupOnDelete": true})).unwrap();
    assert_eq!(
        spec.validate(),
        Err(vec![ValidationError::BackupOnDeleteWithoutBackup])
    );
    assert_eq!(
        spec.validate().unwrap_err()[0].reason(),
        "InvalidBackupOnDelete"
    );
}

#[test]
fn schedule_from_spec() {
    let spec: MySQLInstanceSpec = serde_json::from_value(json!({
        "backup": {"schedule": "0 3 * * 7", "timeZone": "Europe/Berlin", "destination": {"pvc": {"claimName": "c"}}},
    }))
    .unwrap();
    assert_eq!(spec.validate(), Ok(()));
    let schedule: Schedule = spec.schedule().unwrap().unwrap();
    assert_eq!(schedule.cronjob_schedule(), "0 3 * * 0");

    let spec: MySQLInstanceSpec = serde_json::from_value(json!({
        "backup": {"schedule": "0 3 * * *", "timeZone": "Europe/Berln", "destination": {"pvc": {"claimName": "c"}}},
    }))
    .unwrap();
    let error = spec.schedule().unwrap_err();
    assert_eq!(error.reason(), "InvalidTimeZone");
    assert!(error.to_string().contains("\"Europe/Berln\""), "{error}");
}

#[test]
fn config_entries_are_single_line_my_cnf_options() {
    let config = |config: Value| -> MySQLInstanceSpec {
        serde_json::from_value(json!({"config": config})).unwrap()
    };
    assert_eq!(
        config(json!({"max_connections": "500", "innodb-buffer-pool-size": "1G"})).validate(),
        Ok(())
    );
    for (key, value) in [
        ("max connections", "500"),
        ("[client]", "x"),
        ("1abc", "x"),
        ("max_connections", "500\n[client]\npassword=x"),
        ("sql_mode", "A\rB"),
    ] {
        let errors = config(json!({key: value})).validate().unwrap_err();
        assert_eq!(errors.len(), 1, "{key:?}={value:?}");
        assert_eq!(errors[0].reason(), "InvalidConfig");
        assert_eq!(errors[0].field(), "spec.config");
        assert!(
            errors[0].to_string().contains(&format!("{key:?}")),
            "{}",
            errors[0]
        );
    }
}

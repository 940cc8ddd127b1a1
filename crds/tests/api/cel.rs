//! Every CEL rule, evaluated with a valid and an invalid object.

use serde_json::{Value, json};

use crate::common::{backup_schema, cel_failures, instance_schema};

fn instance(spec: Value) -> Value {
    json!({
        "apiVersion": "mysql.keeper.dev/v1alpha1",
        "kind": "MySQLInstance",
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": spec,
    })
}

fn backup(spec: Value) -> Value {
    json!({
        "apiVersion": "mysql.keeper.dev/v1alpha1",
        "kind": "MySQLBackup",
        "metadata": {"name": "orders-1", "namespace": "shop"},
        "spec": spec,
    })
}

/// Asserts that creating `object` passes every rule.
fn accepts(schema: &Value, object: &Value) {
    let failures = cel_failures(schema, object, None);
    assert!(
        failures.is_empty(),
        "expected {object} to pass, got {failures:?}"
    );
}

/// Asserts that creating `object` fails with a message containing `message`.
fn rejects(schema: &Value, object: &Value, message: &str) {
    let failures = cel_failures(schema, object, None);
    assert!(
        failures.iter().any(|f| f.contains(message)),
        "expected {object} to fail with {message:?}, got {failures:?}"
    );
}

/// Asserts that updating `old` to `new` passes.
fn update_accepted(schema: &Value, old: &Value, new: &Value) {
    let failures = cel_failures(schema, new, Some(old));
    assert!(
        failures.is_empty(),
        "expected update {old} -> {new} to pass, got {failures:?}"
    );
}

/// Asserts that updating `old` to `new` fails with `message`.
fn update_rejected(schema: &Value, old: &Value, new: &Value, message: &str) {
    let failures = cel_failures(schema, new, Some(old));
    assert!(
        failures.iter().any(|f| f.contains(message)),
        "expected update {old} -> {new} to fail with {message:?}, got {failures:?}"
    );
}

fn s3() -> Value {
    json!({"bucket": "keeper-backups", "credentialsSecretRef": {"name": "s3"}})
}

#[test]
fn minimal_instance_passes() {
    let schema = instance_schema();
    accepts(&schema, &instance(json!({})));
    update_accepted(&schema, &instance(json!({})), &instance(json!({})));
}

#[test]
fn destination_is_exactly_one_of_s3_and_pvc() {
    let schema = instance_schema();
    let with = |destination: Value| instance(json!({"backup": {"destination": destination}}));
    accepts(&schema, &with(json!({"s3": s3()})));
    accepts(&schema, &with(json!({"pvc": {"claimName": "backups"}})));
    rejects(
        &schema,
        &with(json!({})),
        "exactly one of s3 or pvc must be set",
    );
    rejects(
        &schema,
        &with(json!({"s3": s3(), "pvc": {"claimName": "backups"}})),
        "exactly one of s3 or pvc must be set",
    );

    // The same rule guards a restore location and a backup's own destination.
    let restore = |destination: Value| {
        instance(
            json!({"restoreFrom": {"location": {"destination": destination, "backup": "orders-20250101-030000"}}}),
        )
    };
    accepts(&schema, &restore(json!({"s3": s3()})));
    rejects(
        &schema,
        &restore(json!({})),
        "exactly one of s3 or pvc must be set",
    );

    let backup_schema = backup_schema();
    let on_demand = |destination: Value| {
        backup(json!({"instanceRef": {"name": "orders"}, "destination": destination}))
    };
    accepts(
        &backup_schema,
        &backup(json!({"instanceRef": {"name": "orders"}})),
    );
    accepts(
        &backup_schema,
        &on_demand(json!({"pvc": {"claimName": "backups", "path": "orders"}})),
    );
    rejects(
        &backup_schema,
        &on_demand(json!({"s3": s3(), "pvc": {"claimName": "x"}})),
        "exactly one of s3 or pvc must be set",
    );
}

#[test]
fn restore_source_is_exactly_one_of_backup_name_and_location() {
    let schema = instance_schema();
    let location = json!({"destination": {"s3": s3()}, "backup": "orders-20250101-030000"});
    accepts(
        &schema,
        &instance(json!({"restoreFrom": {"backupName": "orders-20250101-030000"}})),
    );
    accepts(
        &schema,
        &instance(json!({"restoreFrom": {"location": location, "overwrite": true}})),
    );
    rejects(
        &schema,
        &instance(json!({"restoreFrom": {"overwrite": true}})),
        "exactly one of backupName or location must be set",
    );
    rejects(
        &schema,
        &instance(json!({"restoreFrom": {"backupName": "x", "location": location}})),
        "exactly one of backupName or location must be set",
    );
}

#[test]
fn flavor_is_immutable() {
    let schema = instance_schema();
    let mysql = instance(json!({"flavor": "mysql"}));
    let mariadb = instance(json!({"flavor": "mariadb"}));
    accepts(&schema, &mariadb);
    update_accepted(
        &schema,
        &mysql,
        &instance(json!({"flavor": "mysql", "version": "8.4.3"})),
    );
    // The default is applied before the rule runs: omitted means mysql.
    update_accepted(&schema, &instance(json!({})), &mysql);
    update_rejected(&schema, &mysql, &mariadb, "flavor is immutable");
    update_rejected(
        &schema,
        &instance(json!({})),
        &mariadb,
        "flavor is immutable",
    );
}

#[test]
fn gzip_levels_stop_at_9_and_zstd_levels_at_19() {
    let schema = instance_schema();
    let with = |backup: Value| {
        let mut backup = backup;
        backup["destination"] = json!({"s3": s3()});
        instance(json!({ "backup": backup }))
    };
    for ok in [
        json!({}),
        json!({"compressionLevel": 9}),
        json!({"compression": "gzip", "compressionLevel": 9}),
        json!({"compression": "zstd", "compressionLevel": 19}),
        json!({"compression": "none", "compressionLevel": 12}),
    ] {
        accepts(&schema, &with(ok));
    }
    for bad in [
        json!({"compressionLevel": 10}),
        json!({"compression": "gzip", "compressionLevel": 19}),
    ] {
        rejects(&schema, &with(bad), "gzip levels are 1 to 9");
    }
}

#[test]
fn backup_on_delete_needs_a_backup_destination() {
    let schema = instance_schema();
    accepts(&schema, &instance(json!({"backupOnDelete": false})));
    accepts(
        &schema,
        &instance(json!({"backupOnDelete": true, "backup": {"destination": {"s3": s3()}}})),
    );
    rejects(
        &schema,
        &instance(json!({"backupOnDelete": true})),
        "backupOnDelete needs spec.backup",
    );
}

#[test]
fn storage_class_is_immutable() {
    let schema = instance_schema();
    let class = |name: Option<&str>| match name {
        Some(name) => instance(json!({"storage": {"size": "10Gi", "storageClassName": name}})),
        None => instance(json!({"storage": {"size": "10Gi"}})),
    };
    update_accepted(&schema, &class(Some("fast")), &class(Some("fast")));
    update_accepted(&schema, &class(None), &class(None));
    update_rejected(
        &schema,
        &class(Some("fast")),
        &class(Some("slow")),
        "storageClassName is immutable",
    );
    update_rejected(
        &schema,
        &class(None),
        &class(Some("fast")),
        "storageClassName is immutable",
    );
    update_rejected(
        &schema,
        &class(Some("fast")),
        &class(None),
        "storageClassName is immutable",
    );
}

#[test]
fn storage_can_grow_but_not_shrink() {
    let schema = instance_schema();
    let size = |s: &str| instance(json!({"storage": {"size": s}}));
    update_accepted(&schema, &size("10Gi"), &size("20Gi"));
    update_accepted(&schema, &size("10Gi"), &size("10240Mi"));
    // The default (10Gi) counts when the old object had no size.
    update_accepted(&schema, &instance(json!({})), &size("11Gi"));
    update_rejected(
        &schema,
        &size("20Gi"),
        &size("10Gi"),
        "storage size cannot be reduced",
    );
    update_rejected(
        &schema,
        &size("1Ti"),
        &size("1000Gi"),
        "storage size cannot be reduced",
    );
    update_rejected(
        &schema,
        &instance(json!({})),
        &size("5Gi"),
        "storage size cannot be reduced",
    );
}

#[test]
fn storage_size_must_be_positive() {
    let schema = instance_schema();
    accepts(&schema, &instance(json!({"storage": {"size": "1Mi"}})));
    rejects(
        &schema,
        &instance(json!({"storage": {"size": "0"}})),
        "storage size must be greater than zero",
    );
    rejects(
        &schema,
        &instance(json!({"storage": {"size": "0Gi"}})),
        "storage size must be greater than zero",
    );
}

#[test]
fn storage_paths_are_relative() {
    let schema = instance_schema();
    let pvc = |path: &str| {
        instance(json!({"backup": {"destination": {"pvc": {"claimName": "b", "path": path}}}}))
    };
    let prefix = |prefix: &str| {
        instance(json!({"backup": {"destination": {"s3": {"bucket": "bkt", "prefix": prefix}}}}))
    };
    for ok in ["", "orders", "prod/orders", "a..b", "v1.2/x"] {
        accepts(&schema, &pvc(ok));
        accepts(&schema, &prefix(ok));
    }
    for bad in ["/abs", "..", "../up", "a/../b", "a/.."] {
        rejects(&schema, &pvc(bad), "path must be relative");
        rejects(&schema, &prefix(bad), "prefix must be relative");
    }
}

#[test]
fn database_and_user_are_not_system_names() {
    let schema = instance_schema();
    accepts(
        &schema,
        &instance(json!({"database": "orders", "user": "app"})),
    );
    rejects(
        &schema,
        &instance(json!({"database": "mysql"})),
        "database must not be a system schema",
    );
    rejects(
        &schema,
        &instance(json!({"database": "Information_Schema"})),
        "database must not be a system schema",
    );
    rejects(
        &schema,
        &instance(json!({"user": "root"})),
        "user must not be a built-in account",
    );
    rejects(
        &schema,
        &instance(json!({"user": "ROOT"})),
        "user must not be a built-in account",
    );
}

#[test]
fn backup_spec_is_immutable_but_the_pin() {
    let schema = backup_schema();
    let spec = json!({"instanceRef": {"name": "orders"}});
    let immutable = "spec.instanceRef and spec.destination are immutable";
    update_accepted(&schema, &backup(spec.clone()), &backup(spec));
    update_rejected(
        &schema,
        &backup(json!({"instanceRef": {"name": "orders"}})),
        &backup(json!({"instanceRef": {"name": "payments"}})),
        immutable,
    );
    update_rejected(
        &schema,
        &backup(json!({"instanceRef": {"name": "orders"}})),
        &backup(json!({"instanceRef": {"name": "orders"}, "destination": {"s3": s3()}})),
        immutable,
    );
    update_rejected(
        &schema,
        &backup(json!({"instanceRef": {"name": "orders"}, "destination": {"s3": s3()}})),
        &backup(json!({"instanceRef": {"name": "orders"}})),
        immutable,
    );
    let other_bucket = json!({"bucket": "other-bucket"});
    update_rejected(
        &schema,
        &backup(json!({"instanceRef": {"name": "orders"}, "destination": {"s3": s3()}})),
        &backup(json!({"instanceRef": {"name": "orders"}, "destination": {"s3": other_bucket}})),
        immutable,
    );
    // Pinning and unpinning are always allowed, with or without a destination.
    for destination in [None, Some(json!({"s3": s3()}))] {
        let with = |keep: Option<bool>| {
            let mut spec = json!({"instanceRef": {"name": "orders"}});
            if let Some(d) = &destination {
                spec["destination"] = d.clone();
            }
            if let Some(keep) = keep {
                spec["keep"] = json!(keep);
            }
            backup(spec)
        };
        accepts(&schema, &with(Some(true)));
        update_accepted(&schema, &with(None), &with(Some(true)));
        update_accepted(&schema, &with(Some(true)), &with(Some(false)));
        update_accepted(&schema, &with(Some(true)), &with(None));
    }
}

#[test]
fn status_writes_are_not_blocked_by_spec_rules() {
    // The agent writes the whole destination into a backup's status; a status
    // update on an object with an unchanged spec must pass.
    let schema = backup_schema();
    let old = backup(json!({"instanceRef": {"name": "orders"}}));
    let mut new = old.clone();
    new["status"] = json!({
        "phase": "Succeeded",
        "destination": {"s3": s3()},
        "location": "s3://keeper-backups/orders-1",
        "compressedBytes": 1234,
        "binlogPosition": {"file": "binlog.000001", "position": 4},
    });
    update_accepted(&schema, &old, &new);
}

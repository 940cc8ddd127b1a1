#![allow(clippy::unwrap_used)]

use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use keeper_crds::{MySQLInstanceSpec, PvcDestination};
use kube::Resource;
use serde_json::json;

fn instance(spec: serde_json::Value) -> MySQLInstance {
    let spec: MySQLInstanceSpec = serde_json::from_value(spec).expect("spec");
    let mut instance = MySQLInstance::new("orders", spec);
    instance.metadata.namespace = Some("shop".into());
    instance.metadata.uid = Some("0000-1111".into());
    instance
}

fn s3_destination() -> BackupDestination {
    serde_json::from_value(json!({"s3": {
        "bucket": "backups",
        "prefix": "prod/orders",
        "endpoint": "https://minio.storage.svc:9000",
        "region": "eu-west-1",
        "forcePathStyle": true,
        "credentialsSecretRef": {"name": "s3-creds"},
        "caBundleSecretRef": {"name": "s3-ca", "key": "bundle.pem"},
    }}))
    .expect("destination")
}

fn pvc_destination() -> BackupDestination {
    BackupDestination::pvc(PvcDestination {
        claim_name: "backup-volume".into(),
        path: "orders".into(),
    })
}

fn backup_owner() -> OwnerReference {
    OwnerReference {
        api_version: keeper_crds::API_GROUP_VERSION.into(),
        kind: "MySQLBackup".into(),
        name: "orders-manual".into(),
        uid: "2222-3333".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn config() -> OperatorConfig {
    OperatorConfig {
        agent_image: "ghcr.io/mysql-keeper/keeper-agent:0.1.0".into(),
        ..OperatorConfig::default()
    }
}

#[test]
fn on_demand_backup_to_s3() {
    let instance = instance(json!({}));
    let destination = s3_destination();
    let databases = vec!["orders".to_owned(), "billing".to_owned()];
    let retention = RetentionSpec {
        keep_last: Some(7),
        max_age: Some("30d".into()),
    };
    let run = AgentRun {
        name: "orders-manual-backup".into(),
        command: AgentCommand::Backup {
            destination: &destination,
            backup_name: Some("orders-manual"),
            databases: &databases,
            compression: None,
            compression_level: Some(9),
            retention: Some(&retention),
        },
        owner: Some(backup_owner()),
        labels: BTreeMap::from([("mysql.keeper.dev/backup".into(), "orders-manual".into())]),
    };
    let job = job(&config(), &instance, &run).expect("builds");
    insta::assert_yaml_snapshot!("backup-s3", job);
}

#[test]
fn scheduled_backup_to_pvc_has_no_backup_name() {
    let instance = instance(json!({}));
    let destination = pvc_destination();
    let run = AgentRun {
        name: "ignored".into(),
        command: AgentCommand::Backup {
            destination: &destination,
            backup_name: None,
            databases: &[],
            compression: None,
            compression_level: None,
            retention: None,
        },
        owner: None,
        labels: BTreeMap::new(),
    };
    let job = job(&config(), &instance, &run).expect("builds");
    insta::assert_yaml_snapshot!("backup-pvc", job);
    let env = &job
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .env
        .clone()
        .unwrap();
    assert!(env.iter().all(|e| e.name != ENV_BACKUP));
}

#[test]
fn restore_from_s3() {
    let instance = instance(json!({}));
    let destination = s3_destination();
    let run = AgentRun {
        name: "orders-restore-1a2b3c".into(),
        command: AgentCommand::Restore {
            destination: &destination,
            backup: "orders-20250101-030000",
            overwrite: true,
            source: Some("orders-20250101-030000"),
            request_id: Some("0123456789"),
        },
        owner: instance.controller_owner_ref(&()),
        labels: BTreeMap::new(),
    };
    let job = job(&config(), &instance, &run).expect("builds");
    insta::assert_yaml_snapshot!("restore-s3", job);
}

#[test]
fn restore_from_pvc_mounts_read_only() {
    let instance = instance(json!({}));
    let destination = pvc_destination();
    let run = AgentRun {
        name: "orders-restore".into(),
        command: AgentCommand::Restore {
            destination: &destination,
            backup: "orders-20250101-030000",
            overwrite: false,
            source: None,
            request_id: None,
        },
        owner: None,
        labels: BTreeMap::new(),
    };
    let job = job(&config(), &instance, &run).expect("builds");
    insta::assert_yaml_snapshot!("restore-pvc", job);
}

#[test]
fn retention_flags_reach_the_backup_args() {
    let instance = instance(json!({}));
    let destination = pvc_destination();
    let retention = RetentionSpec {
        keep_last: Some(3),
        max_age: Some("2w".into()),
    };
    let command = AgentCommand::Backup {
        destination: &destination,
        backup_name: None,
        databases: &[],
        compression: Some(Compression::Zstd),
        compression_level: Some(6),
        retention: Some(&retention),
    };
    let args = args(&instance, &command).unwrap();
    assert_eq!(
        args,
        [
            "backup",
            "--host",
            "orders.shop.svc",
            "--port",
            "3306",
            "--user",
            "keeper_backup",
            "--to",
            "file:///backups/orders/shop/orders",
            "--compression",
            "zstd",
            "--compression-level",
            "6",
            "--keep-last",
            "3",
            "--max-age",
            "2w",
        ]
    );
}

#[test]
fn secrets_are_only_references() {
    let instance = instance(json!({}));
    let destination = s3_destination();
    let command = AgentCommand::Backup {
        destination: &destination,
        backup_name: Some("b"),
        databases: &[],
        compression: None,
        compression_level: None,
        retention: None,
    };
    let env = env(&instance, &command).unwrap();
    for name in [
        ENV_MYSQL_PASSWORD,
        AWS_ACCESS_KEY_ID_KEY,
        AWS_SECRET_ACCESS_KEY_KEY,
    ] {
        let var = env.iter().find(|e| e.name == name).expect(name);
        assert!(var.value.is_none(), "{name} must not be a literal");
        assert!(
            var.value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .is_some(),
            "{name} must come from a Secret"
        );
    }
    let args = args(&instance, &command).unwrap().join(" ");
    assert!(!args.contains("password") && !args.contains("s3-creds"));
}

#[test]
fn an_invalid_destination_is_an_error_not_a_guess() {
    let instance = instance(json!({}));
    let destination = BackupDestination::default();
    let run = AgentRun {
        name: "x".into(),
        command: AgentCommand::Backup {
            destination: &destination,
            backup_name: None,
            databases: &[],
            compression: None,
            compression_level: None,
            retention: None,
        },
        owner: None,
        labels: BTreeMap::new(),
    };
    let error = job(&config(), &instance, &run).unwrap_err();
    assert_eq!(error.reason(), "InvalidDestination");
}

fn arg_after<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.windows(2)
        .find(|w| w[0] == flag)
        .map(|w| w[1].as_str())
}

fn backup_command(destination: &BackupDestination) -> AgentCommand<'_> {
    AgentCommand::Backup {
        destination,
        backup_name: Some("b1"),
        databases: &[],
        compression: None,
        compression_level: None,
        retention: None,
    }
}

#[test]
fn instances_sharing_a_bucket_write_to_their_own_folders() {
    // No prefix: the destination many instances share by default.
    let destination = BackupDestination::s3(keeper_crds::S3Destination::new("backups"));
    let mut to = Vec::new();
    for (namespace, name) in [("shop", "orders"), ("shop", "billing"), ("test", "orders")] {
        let mut instance = instance(json!({}));
        instance.metadata.namespace = Some(namespace.into());
        instance.metadata.name = Some(name.into());
        let args = args(&instance, &backup_command(&destination)).unwrap();
        to.push(arg_after(&args, "--to").unwrap().to_owned());
    }
    assert_eq!(
        to,
        [
            "s3://backups/shop/orders",
            "s3://backups/shop/billing",
            "s3://backups/test/orders",
        ]
    );
    // The destination the agent records (status.destination) is that folder.
    let env = env(&instance(json!({})), &backup_command(&destination)).unwrap();
    let recorded = env.iter().find(|e| e.name == ENV_DESTINATION).unwrap();
    let recorded: BackupDestination =
        serde_json::from_str(recorded.value.as_deref().unwrap()).unwrap();
    assert_eq!(recorded.base_url().unwrap(), "s3://backups/shop/orders");
    // Without a namespace there is no layout to write to.
    let mut bare = instance(json!({}));
    bare.metadata.namespace = None;
    assert!(args(&bare, &backup_command(&destination)).is_err());
}

/// A restore by name reads the backup where the layout wrote it: the
/// agent records the Job's destination and the folder's URL, and the
/// restore resolves the folder against them.
#[test]
fn a_restore_by_name_finds_a_backup_of_the_new_layout() {
    use crate::instance::restore::source::from_backup;
    let instance = instance(json!({}));
    let destination = s3_destination();
    let command = backup_command(&destination);
    let args = args(&instance, &command).unwrap();
    let folder_url = format!("{}/b1", arg_after(&args, "--to").unwrap());
    let env = env(&instance, &command).unwrap();
    let recorded: BackupDestination = serde_json::from_str(
        env.iter()
            .find(|e| e.name == ENV_DESTINATION)
            .and_then(|e| e.value.as_deref())
            .unwrap(),
    )
    .unwrap();
    let mut backup = keeper_crds::MySQLBackup::for_instance("b1", "shop", "orders", None);
    backup.status = Some(keeper_crds::MySQLBackupStatus {
        phase: Some(keeper_crds::BackupPhase::Succeeded),
        destination: Some(recorded),
        location: Some(folder_url.clone()),
        ..Default::default()
    });
    let (restore_from, folder) = from_backup("b1", Some(&backup)).unwrap();
    let restore = AgentCommand::Restore {
        destination: &restore_from,
        backup: &folder,
        overwrite: false,
        source: None,
        request_id: None,
    };
    let restore_args = super::args(&instance, &restore).unwrap();
    assert_eq!(
        arg_after(&restore_args, "--from"),
        Some(folder_url.as_str())
    );
    assert_eq!(folder_url, "s3://backups/prod/orders/shop/orders/b1");
}

/// A restore by location names the full prefix: the destination as it was
/// (old layout, `<destination>/<backup>`) or with `<namespace>/<instance>`
/// appended (new layout, `<destination>/<namespace>/<instance>/<backup>`).
#[test]
fn a_restore_by_location_reads_old_and_new_layouts() {
    let instance = instance(json!({}));
    let location = |prefix: &str| {
        serde_json::from_value::<BackupDestination>(json!({"s3": {
            "bucket": "backups", "prefix": prefix, "forcePathStyle": true,
        }}))
        .unwrap()
    };
    let from = |destination: &BackupDestination| {
        let command = AgentCommand::Restore {
            destination,
            backup: "orders-20250101-030000",
            overwrite: false,
            source: None,
            request_id: None,
        };
        arg_after(&args(&instance, &command).unwrap(), "--from")
            .unwrap()
            .to_owned()
    };
    // Old layout: backups straight under the destination.
    assert_eq!(
        from(&location("prod")),
        "s3://backups/prod/orders-20250101-030000"
    );
    // New layout: the README's recipe reaches the folder the backup Job wrote.
    let written = {
        let source = location("prod");
        let command = AgentCommand::Backup {
            destination: &source,
            backup_name: Some("orders-20250101-030000"),
            databases: &[],
            compression: None,
            compression_level: None,
            retention: None,
        };
        let args = args(&instance, &command).unwrap();
        format!(
            "{}/{}",
            arg_after(&args, "--to").unwrap(),
            arg_after(&args, "--name").unwrap()
        )
    };
    assert_eq!(from(&location("prod/shop/orders")), written);
}

#[test]
fn only_backups_get_the_optional_run_deadline() {
    let instance = instance(json!({}));
    let destination = s3_destination();
    let backup = AgentRun {
        name: "b".into(),
        command: AgentCommand::Backup {
            destination: &destination,
            backup_name: None,
            databases: &[],
            compression: None,
            compression_level: None,
            retention: None,
        },
        owner: None,
        labels: BTreeMap::new(),
    };
    let restore = AgentRun {
        name: "r".into(),
        command: AgentCommand::Restore {
            destination: &destination,
            backup: "orders-1",
            overwrite: false,
            source: None,
            request_id: None,
        },
        owner: None,
        labels: BTreeMap::new(),
    };
    let deadline = |config: &OperatorConfig, run: &AgentRun<'_>| {
        job_spec(config, &instance, run)
            .expect("builds")
            .active_deadline_seconds
    };
    // Not by default: a large database may take hours.
    assert_eq!(deadline(&config(), &backup), None);
    let bounded = OperatorConfig {
        backup_run_timeout: Some(std::time::Duration::from_secs(6 * 3600)),
        ..config()
    };
    assert_eq!(deadline(&bounded, &backup), Some(6 * 3600));
    // A restore cut short leaves a half-restored server: never bounded.
    assert_eq!(deadline(&bounded, &restore), None);
}

fn verify_run<'a>(
    destination: &'a BackupDestination,
    spec: Option<&'a VerificationSpec>,
) -> AgentRun<'a> {
    AgentRun {
        name: "orders-20250101-030000-verify".into(),
        command: AgentCommand::Verify {
            destination,
            backup: "orders-20250101-030000",
            backup_name: "orders-20250101-030000",
            spec,
        },
        owner: Some(backup_owner()),
        labels: BTreeMap::from([(
            "mysql.keeper.dev/backup".into(),
            "orders-20250101-030000".into(),
        )]),
    }
}

#[test]
fn verification_from_s3_runs_a_throwaway_server_beside_the_agent() {
    let instance = instance(json!({"flavor": "mariadb", "version": "11.4",
        "config": {"lower_case_table_names": "1"}}));
    let destination = s3_destination();
    let spec: VerificationSpec = serde_json::from_value(json!({
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
        "sizeLimit": "20Gi",
    }))
    .expect("spec");
    let job = job(&config(), &instance, &verify_run(&destination, Some(&spec))).expect("builds");
    insta::assert_yaml_snapshot!("verify-s3", job);

    let pod = job.spec.unwrap().template.spec.unwrap();
    let server = &pod.init_containers.as_ref().expect("a sidecar")[0];
    assert_eq!(
        server.restart_policy.as_deref(),
        Some("Always"),
        "native sidecar"
    );
    assert_eq!(server.image.as_deref(), Some("mariadb:11.4"));
    let server_args = server.args.clone().unwrap_or_default();
    assert!(server_args.contains(&"--bind-address=127.0.0.1".to_owned()));
    let agent = &pod.containers[0];
    let args = agent.args.clone().unwrap_or_default();
    assert_eq!(
        args[..10],
        [
            "verify",
            "--from",
            "s3://backups/prod/orders/orders-20250101-030000",
            "--restore",
            "--host",
            "127.0.0.1",
            "--port",
            "3306",
            "--user",
            "root"
        ]
    );
    // No Secret of the instance anywhere in the pod: only the destination's.
    let secrets: Vec<String> = pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
        .flat_map(|c| c.env.clone().unwrap_or_default())
        .filter_map(|e| e.value_from?.secret_key_ref.map(|r| r.name))
        .chain(
            pod.volumes
                .iter()
                .flatten()
                .filter_map(|v| v.secret.as_ref()?.secret_name.clone()),
        )
        .collect();
    assert!(
        secrets.iter().all(|s| s == "s3-creds" || s == "s3-ca"),
        "{secrets:?}"
    );
    let env = agent.env.clone().unwrap_or_default();
    assert!(env.iter().all(|e| e.name != ENV_MYSQL_PASSWORD));
    assert!(
        env.iter()
            .any(|e| e.name == ENV_BACKUP && e.value.as_deref() == Some("orders-20250101-030000"))
    );
}

#[test]
fn verification_of_mysql_from_pvc_reads_the_backup_only() {
    let instance = instance(json!({"flavor": "mysql"}));
    let destination = pvc_destination();
    let job = job(&config(), &instance, &verify_run(&destination, None)).expect("builds");
    insta::assert_yaml_snapshot!("verify-pvc-mysql", job);
    let pod = job.spec.unwrap().template.spec.unwrap();
    let server = &pod.init_containers.as_ref().expect("a sidecar")[0];
    let env: Vec<String> = server
        .env
        .iter()
        .flatten()
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(env, ["MYSQL_ALLOW_EMPTY_PASSWORD"]);
    assert!(
        server
            .args
            .iter()
            .flatten()
            .any(|a| a == "--disable-log-bin")
    );
    let backups = pod.containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == PVC_MOUNT_PATH)
        .expect("the backup volume");
    assert_eq!(backups.read_only, Some(true));
}

//! The StatefulSet running the server: one pod, one data volume.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    ExecAction, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, SeccompProfile, SecretKeySelector, SecurityContext, Volume,
    VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use keeper_crds::instance::{MYSQL_PORT, PASSWORD_KEY, USERNAME_KEY};
use keeper_crds::{Flavor, MySQLInstance, StorageSpec};

use super::{CONFIG_HASH_ANNOTATION, InstanceMeta};
use crate::instance::restore::hold::operator_creates_app_account;

/// Name of the server container.
pub const CONTAINER_NAME: &str = "mysql";
/// Name of the volumeClaimTemplate; the pod's claim is `data-<name>-0`.
pub const DATA_VOLUME: &str = "data";
/// Where the server keeps its data in both images.
pub const DATA_DIR: &str = "/var/lib/mysql";
/// Directory both images include from their main my.cnf.
pub const CONFIG_DIR: &str = "/etc/mysql/conf.d";
/// Name of the server port.
pub const PORT_NAME: &str = "mysql";
/// The `mysql` user of both the mysql and mariadb images.
pub const MYSQL_UID: i64 = 999;

const CONFIG_VOLUME: &str = "config";

/// Names of the server binaries and image variables, per flavor.
#[derive(Clone, Copy, Debug)]
pub struct FlavorSpecifics {
    /// Prefix of the image's environment variables (`MYSQL` or `MARIADB`).
    pub env_prefix: &'static str,
    /// The command line client.
    pub client: &'static str,
    /// The admin tool.
    pub admin: &'static str,
}

impl FlavorSpecifics {
    /// What the image of `flavor` calls things. MariaDB 11 images no longer
    /// ship the `mysql*` names, so MariaDB always uses the `mariadb*` ones.
    pub fn of(flavor: Flavor) -> Self {
        match flavor {
            Flavor::Mysql => Self {
                env_prefix: "MYSQL",
                client: "mysql",
                admin: "mysqladmin",
            },
            Flavor::Mariadb => Self {
                env_prefix: "MARIADB",
                client: "mariadb",
                admin: "mariadb-admin",
            },
        }
    }

    fn var(&self, suffix: &str) -> String {
        format!("{}_{suffix}", self.env_prefix)
    }
}

fn secret_env(name: String, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The image's environment: passwords (and the user name) only by
/// `secretKeyRef`; the database name is not a secret.
///
/// The application account is left out when the instance restores
/// (`instance::restore::hold::operator_creates_app_account`): the image would
/// create it open as soon as the server listens, before the restore ran, so
/// the operator creates it locked instead and unlocks it after the restore.
fn env(instance: &MySQLInstance, flavor: FlavorSpecifics) -> Vec<EnvVar> {
    let (root_secret, root_key) = instance.root_password_secret();
    let mut env = vec![secret_env(
        flavor.var("ROOT_PASSWORD"),
        &root_secret,
        &root_key,
    )];
    if let Some(database) = &instance.spec.database {
        env.push(EnvVar {
            name: flavor.var("DATABASE"),
            value: Some(database.clone()),
            ..EnvVar::default()
        });
    }
    if instance.spec.user.is_some() && !operator_creates_app_account(instance) {
        let credentials = instance.credentials_secret_name();
        env.push(secret_env(flavor.var("USER"), &credentials, USERNAME_KEY));
        env.push(secret_env(
            flavor.var("PASSWORD"),
            &credentials,
            PASSWORD_KEY,
        ));
    }
    env
}

fn exec_probe(script: String, period: i32, failures: i32) -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec!["sh".to_owned(), "-c".to_owned(), script]),
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

/// Probes that work on MySQL 8.x and MariaDB images alike.
///
/// * liveness (and startup): `<admin> ping` over the local socket. It
///   succeeds whenever mysqld answers, even if the password was changed
///   behind the operator's back: a wrong password must not restart the server.
/// * readiness: a real `SELECT 1` over TCP as root. TCP matters: while the
///   image initialises the data directory its temporary server listens on the
///   socket only, and clients must not be sent there yet.
///
/// The password reaches the client through `MYSQL_PWD` (read by both
/// clients), expanded by the shell from the pod's env: it never appears in
/// the pod spec or in a process's arguments.
///
/// The startup probe allows ten minutes: first initialisation, a restore's
/// init scripts or InnoDB crash recovery on a big instance take a while, and
/// liveness must not kill the server meanwhile.
fn probes(flavor: FlavorSpecifics) -> (Probe, Probe, Probe) {
    let root = format!("${}", flavor.var("ROOT_PASSWORD"));
    let ping = format!(
        "MYSQL_PWD=\"{root}\" exec {} --user=root --connect-timeout=4 ping --silent",
        flavor.admin
    );
    let select = format!(
        "MYSQL_PWD=\"{root}\" exec {} --user=root --host=127.0.0.1 --port={MYSQL_PORT} --connect-timeout=4 --batch --skip-column-names --execute='SELECT 1'",
        flavor.client
    );
    let startup = exec_probe(ping.clone(), 10, 60);
    let liveness = exec_probe(ping, 10, 3);
    let readiness = exec_probe(select, 5, 3);
    (startup, liveness, readiness)
}

/// The server container's security context (as the `mysql` user, every
/// capability dropped): the StatefulSet's and the verification pod's
/// throwaway server's.
pub fn server_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        run_as_non_root: Some(true),
        run_as_user: Some(MYSQL_UID),
        run_as_group: Some(MYSQL_UID),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        ..SecurityContext::default()
    }
}

fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_user: Some(MYSQL_UID),
        run_as_group: Some(MYSQL_UID),
        fs_group: Some(MYSQL_UID),
        // Only chown the volume when its root has the wrong group: a recursive
        // chown of a large data directory on every start would delay startup.
        fs_group_change_policy: Some("OnRootMismatch".to_owned()),
        run_as_non_root: Some(true),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

fn volume_claim_template(meta: &InstanceMeta, storage: &StorageSpec) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.to_owned()),
            // Claims carry the instance labels, so the PVC watch finds its instance.
            labels: Some(meta.labels()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(storage.size.clone()),
                )])),
                limits: None,
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }
}

/// The StatefulSet `<name>`: one replica of `spec.image()`, its data on the
/// claim template `data` (kept when the instance or the StatefulSet goes),
/// my.cnf from the ConfigMap, non-root and with every capability dropped.
pub fn build(
    meta: &InstanceMeta,
    instance: &MySQLInstance,
    storage: &StorageSpec,
    config_hash: &str,
) -> StatefulSet {
    let flavor = FlavorSpecifics::of(instance.spec.flavor());
    let (startup, liveness, readiness) = probes(flavor);
    let container = Container {
        name: CONTAINER_NAME.to_owned(),
        image: Some(instance.spec.image()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        env: Some(env(instance, flavor)),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.to_owned()),
            container_port: i32::from(MYSQL_PORT),
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        resources: instance.spec.resources.clone(),
        volume_mounts: Some(vec![
            VolumeMount {
                name: DATA_VOLUME.to_owned(),
                mount_path: DATA_DIR.to_owned(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: CONFIG_VOLUME.to_owned(),
                mount_path: CONFIG_DIR.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        startup_probe: Some(startup),
        liveness_probe: Some(liveness),
        readiness_probe: Some(readiness),
        security_context: Some(server_security_context()),
        ..Container::default()
    };
    StatefulSet {
        metadata: meta.owned_metadata(meta.name.clone()),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(meta.headless_service_name()),
            selector: LabelSelector {
                match_labels: Some(meta.selector_labels()),
                match_expressions: None,
            },
            // Data is never deleted by surprise: neither deleting the instance
            // (which garbage-collects the StatefulSet) nor scaling removes claims.
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".to_owned()),
                    when_scaled: Some("Retain".to_owned()),
                },
            ),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(meta.labels()),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.to_owned(),
                        config_hash.to_owned(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(vec![Volume {
                        name: CONFIG_VOLUME.to_owned(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: meta.config_map_name(),
                            ..ConfigMapVolumeSource::default()
                        }),
                        ..Volume::default()
                    }]),
                    security_context: Some(pod_security_context()),
                    // The server never talks to the API.
                    automount_service_account_token: Some(false),
                    // Service links would inject e.g. MYSQL_PORT=tcp://... for a
                    // Service named `mysql`, which the images misread.
                    enable_service_links: Some(false),
                    // Time for InnoDB to shut down cleanly.
                    termination_grace_period_seconds: Some(60),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![volume_claim_template(meta, storage)]),
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

/// The storage of an existing StatefulSet's `data` claim template, if any.
pub fn claim_template_storage(stateful_set: &StatefulSet) -> Option<StorageSpec> {
    let template = stateful_set
        .spec
        .as_ref()?
        .volume_claim_templates
        .as_ref()?
        .iter()
        .find(|t| t.metadata.name.as_deref() == Some(DATA_VOLUME))?;
    let spec = template.spec.as_ref()?;
    let size = spec
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")?
        .0
        .clone();
    Some(StorageSpec {
        size,
        storage_class_name: spec.storage_class_name.clone(),
    })
}

//! The throwaway server of a verification pod (`keeper-agent verify
//! --restore`): the instance's own image and version as a native sidecar
//! (an init container with `restartPolicy: Always`), so the kubelet starts
//! the agent only once the server answers and stops the server when the
//! agent ends; nothing of it outlives the Job.
//!
//! * Its data is an emptyDir (bounded by `spec.backup.verification.sizeLimit`)
//!   that goes with the pod. No Secret of the instance is mounted or
//!   referenced: root has an empty password (`*_ALLOW_EMPTY_ROOT_PASSWORD`),
//!   which is safe because the server listens on the pod's loopback only
//!   (`--bind-address=127.0.0.1`): only the agent beside it can reach it.
//!   Loopback TCP rather than a socket in a shared volume: the images'
//!   first-start initialisation runs a temporary server on the socket, and
//!   TCP answers only once the real server is up, which is what the
//!   startup probe must wait for.
//! * The instance's my.cnf (its ConfigMap: `spec.config`, e.g.
//!   `lower_case_table_names` or `sql_mode`) is mounted, so the backup is
//!   proven against the settings it will be restored under; the buffer pool
//!   is capped on the command line (which wins over my.cnf) because the
//!   instance's may be sized for a far larger pod, and the binary log is off:
//!   nothing replicates from a throwaway server.

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar, ExecAction, Probe, Volume,
    VolumeMount,
};
use keeper_crds::instance::MYSQL_PORT;
use keeper_crds::{Flavor, MySQLInstance, VerificationSpec};

use crate::instance::build::InstanceMeta;
use crate::instance::build::statefulset::{
    CONFIG_DIR, DATA_DIR, FlavorSpecifics, server_security_context,
};

/// Name of the throwaway server's container.
pub const CONTAINER_NAME: &str = "proof-server";
/// The address the throwaway server listens on and the agent connects to.
pub const HOST: &str = "127.0.0.1";
/// The account the agent restores with: the throwaway server's root.
pub const USER: &str = "root";
/// Its buffer pool: the images' default is 128 MiB; a little more speeds up
/// the restore without asking much of the node.
pub const BUFFER_POOL: &str = "256M";
/// The startup probe's allowance: 120 × 5 s = 10 minutes for the image to
/// initialise an empty data directory.
const STARTUP_FAILURES: i32 = 120;

const DATA_VOLUME: &str = "proof-data";
const CONFIG_VOLUME: &str = "proof-config";

/// The throwaway server container (a native sidecar) and the volumes it
/// needs.
pub fn sidecar(
    instance: &MySQLInstance,
    meta: &InstanceMeta,
    spec: Option<&VerificationSpec>,
) -> (Container, Vec<Volume>) {
    let flavor = instance.spec.flavor();
    let names = FlavorSpecifics::of(flavor);
    let ping = format!(
        "exec {} --protocol=tcp --host={HOST} --port={MYSQL_PORT} --user={USER} --connect-timeout=4 ping --silent",
        names.admin
    );
    let container = Container {
        name: CONTAINER_NAME.to_owned(),
        image: Some(instance.spec.image()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        // Native sidecar: started before the agent, stopped after it.
        restart_policy: Some("Always".to_owned()),
        args: Some(server_args(flavor)),
        env: Some(vec![EnvVar {
            name: format!("{}_{}", names.env_prefix, empty_password_variable(flavor)),
            value: Some("1".to_owned()),
            value_from: None,
        }]),
        resources: spec.and_then(|s| s.resources.clone()),
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
        // `ping` over TCP: answered only by the real server, not by the
        // images' socket-only initialisation server; it succeeds even when
        // access is denied, so it needs no password.
        startup_probe: Some(Probe {
            exec: Some(ExecAction {
                command: Some(vec!["sh".to_owned(), "-c".to_owned(), ping]),
            }),
            period_seconds: Some(5),
            timeout_seconds: Some(5),
            failure_threshold: Some(STARTUP_FAILURES),
            ..Probe::default()
        }),
        security_context: Some(server_security_context()),
        ..Container::default()
    };
    let volumes = vec![
        Volume {
            name: DATA_VOLUME.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: None,
                size_limit: spec.and_then(|s| s.size_limit.clone()),
            }),
            ..Volume::default()
        },
        Volume {
            name: CONFIG_VOLUME.to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: meta.config_map_name(),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    (container, volumes)
}

/// The image variable that lets root have no password: `MYSQL_` +
/// `ALLOW_EMPTY_PASSWORD`, `MARIADB_` + `ALLOW_EMPTY_ROOT_PASSWORD`.
fn empty_password_variable(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Mysql => "ALLOW_EMPTY_PASSWORD",
        Flavor::Mariadb => "ALLOW_EMPTY_ROOT_PASSWORD",
    }
}

/// The server's options (the images' entrypoints pass arguments that start
/// with `-` to the server): loopback only, no binary log, a capped buffer
/// pool.
fn server_args(flavor: Flavor) -> Vec<String> {
    let no_binlog = match flavor {
        // MySQL 8 logs by default; `--disable-log-bin` is its documented off
        // switch (`--skip-log-bin` is a synonym).
        Flavor::Mysql => "--disable-log-bin",
        // MariaDB logs only when told to; the instance's my.cnf may tell it.
        Flavor::Mariadb => "--skip-log-bin",
    };
    vec![
        format!("--bind-address={HOST}"),
        format!("--innodb-buffer-pool-size={BUFFER_POOL}"),
        no_binlog.to_owned(),
    ]
}

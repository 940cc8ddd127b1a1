//! The headless Service that governs the StatefulSet (stable pod DNS) and the
//! client Service applications connect to.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use keeper_crds::instance::MYSQL_PORT;

use super::InstanceMeta;
use super::statefulset::PORT_NAME;
use crate::instance::restore::hold::HOLD_LABEL;

fn mysql_port() -> ServicePort {
    ServicePort {
        name: Some(PORT_NAME.to_owned()),
        port: i32::from(MYSQL_PORT),
        target_port: Some(IntOrString::String(PORT_NAME.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..ServicePort::default()
    }
}

/// `<name>-headless`: `clusterIP: None`, and it publishes pods before they are
/// ready so that the pod's DNS name resolves while the server starts, and
/// the restore and the operator reach the server while a restore holds the
/// client Service closed.
pub fn headless(meta: &InstanceMeta) -> Service {
    Service {
        metadata: meta.owned_metadata(meta.headless_service_name()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            publish_not_ready_addresses: Some(true),
            selector: Some(meta.selector_labels()),
            ports: Some(vec![mysql_port()]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// `<name>`: a ClusterIP Service on 3306 that only routes to a ready server,
/// and, while a restore holds the server (`held`), to nothing at all: its
/// selector then also requires [`HOLD_LABEL`], which no pod carries (see
/// `instance::restore::hold`). The selector changes without touching the
/// pod, so the hold neither restarts the server nor depends on the operator
/// after a pod restart.
pub fn client(meta: &InstanceMeta, held: bool) -> Service {
    let mut selector = meta.selector_labels();
    if held {
        selector.insert(HOLD_LABEL.to_owned(), "true".to_owned());
    }
    Service {
        metadata: meta.owned_metadata(meta.client_service_name()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector),
            ports: Some(vec![mysql_port()]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

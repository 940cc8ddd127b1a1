//! The watch caches of the `MySQLInstance` controller: the objects it
//! watches anyway (its children, its labelled Secrets and claims, the
//! agent's Jobs and pods), kept in memory by the same watches that trigger
//! reconciles. A reconcile reads an object from its cache and asks the API
//! only when the cache does not hold it: before the first sync, or an object
//! without the labels the watches select on (a credentials Secret a user
//! created by hand). So an object that exists is read from memory, and an
//! instance that never becomes ready no longer costs a round of GETs every
//! 30 s; an absent object costs the one GET it cost before.
//!
//! The caches are filled by `kube::runtime::reflector`s whose streams the
//! controller takes as its triggers (`Controller::owns_stream` and
//! `watches_stream`, kube's `unstable-runtime-stream-control` feature):
//! one watch per kind, shared by the trigger and the cache. Without a
//! running controller (the tests, `render`) there are no caches and every
//! read goes to the API.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use keeper_crds::agent::JOB_NAME_LABEL;
use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};

/// The caches, one per watched kind.
#[derive(Clone)]
pub struct Caches {
    pub stateful_sets: Store<StatefulSet>,
    pub services: Store<Service>,
    pub config_maps: Store<ConfigMap>,
    pub secrets: Store<Secret>,
    pub claims: Store<PersistentVolumeClaim>,
    pub jobs: Store<Job>,
    pub cron_jobs: Store<CronJob>,
    pub pods: Store<Pod>,
}

/// A kind that has a cache.
pub trait Cached: Resource<DynamicType = ()> + Clone + 'static {
    /// Its cache among `caches`.
    fn cache(caches: &Caches) -> &Store<Self>;
}

macro_rules! cached {
    ($($kind:ty => $field:ident),* $(,)?) => {
        $(impl Cached for $kind {
            fn cache(caches: &Caches) -> &Store<Self> {
                &caches.$field
            }
        })*
    };
}

cached! {
    StatefulSet => stateful_sets,
    Service => services,
    ConfigMap => config_maps,
    Secret => secrets,
    PersistentVolumeClaim => claims,
    Job => jobs,
    CronJob => cron_jobs,
    Pod => pods,
}

impl Caches {
    /// `namespace/name` from its cache; `None` when the cache does not hold
    /// it (which does not mean that it does not exist).
    pub fn get<K: Cached>(&self, namespace: &str, name: &str) -> Option<K> {
        K::cache(self)
            .get(&ObjectRef::new(name).within(namespace))
            .map(|object| K::clone(&object))
    }

    /// The cached pods of the agent Job `job` in `namespace`.
    pub fn pods_of_job(&self, namespace: &str, job: &str) -> Vec<Pod> {
        self.pods
            .state()
            .iter()
            .filter(|pod| pod.metadata.namespace.as_deref() == Some(namespace))
            .filter(|pod| {
                pod.metadata
                    .labels
                    .as_ref()
                    .and_then(|labels| labels.get(JOB_NAME_LABEL))
                    .is_some_and(|name| name == job)
            })
            .map(|pod| Pod::clone(pod))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector::store;
    use kube::runtime::watcher::Event;
    use serde_json::json;

    use super::*;

    fn filled<K>(objects: Vec<K>) -> Store<K>
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        let (reader, mut writer) = store();
        writer.apply_watcher_event(&Event::Init);
        for object in objects {
            writer.apply_watcher_event(&Event::InitApply(object));
        }
        writer.apply_watcher_event(&Event::InitDone);
        reader
    }

    fn pod(namespace: &str, name: &str, job: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {
            "name": name, "namespace": namespace, "labels": {JOB_NAME_LABEL: job}
        }}))
        .expect("pod")
    }

    fn caches(pods: Vec<Pod>, secrets: Vec<Secret>) -> Caches {
        Caches {
            stateful_sets: filled(Vec::new()),
            services: filled(Vec::new()),
            config_maps: filled(Vec::new()),
            secrets: filled(secrets),
            claims: filled(Vec::new()),
            jobs: filled(Vec::new()),
            cron_jobs: filled(Vec::new()),
            pods: filled(pods),
        }
    }

    #[test]
    fn objects_are_found_by_namespace_and_name_and_pods_by_their_job() {
        let secret: Secret = serde_json::from_value(
            json!({"metadata": {"name": "orders-credentials", "namespace": "shop"}}),
        )
        .expect("secret");
        let caches = caches(
            vec![
                pod("shop", "a", "orders-restore-1"),
                pod("shop", "b", "orders-restore-2"),
                pod("staging", "c", "orders-restore-1"),
            ],
            vec![secret],
        );
        assert!(caches.get::<Secret>("shop", "orders-credentials").is_some());
        assert!(
            caches
                .get::<Secret>("staging", "orders-credentials")
                .is_none()
        );
        assert!(caches.get::<StatefulSet>("shop", "orders").is_none());
        let pods = caches.pods_of_job("shop", "orders-restore-1");
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].metadata.name.as_deref(), Some("a"));
    }
}

//! The in-memory Kubernetes API every reconcile and report test talks to:
//! kube-fake-client behind a checking layer that sees each request before
//! the fake does, as a real API server (v1.32+) would.
//!
//! - **RBAC.** Every call (verb from the method and URL, resource,
//!   subresource, namespace, name) is checked against the identity of the
//!   client that made it: [`Identity::Operator`] holds the shipped
//!   `deploy/rbac` ClusterRole and leader-election Role,
//!   [`Identity::Agent`] its instance's Role
//!   (`keeper_crds::agent::agent_policy_rules`). A call they do not allow is
//!   answered 403.
//! - **Request bodies.** Writes are validated against the generated CRDs'
//!   structural schemas and, for built-in kinds, the schemas k8s-openapi
//!   carries, with the server's treatment of `null` per verb (see
//!   [`schema::Mode`]) — the body as sent, not the stored result: the fake
//!   merges a patch before its own validator runs, and the merge drops the
//!   very `null` a real server refuses. Then the Go-side rules of
//!   [`server_rules`]. A refused write is answered 422 with the field path
//!   and the reason.
//!
//! Every refusal is also recorded, and dropping the [`FakeCluster`] fails
//! the test with the list, so a refusal the code under test swallows (a
//! reconcile that logs a status error and goes on) still fails the test.
//!
//! - **Server-side apply removes what a manager no longer applies.** The
//!   fake merges an apply like a merge patch, so a field the manager set
//!   before and omits now would stay; the layer remembers each manager's
//!   last apply of an object and turns such omissions into deletions, as the
//!   server does for fields no other manager owns. (Omitting a field, not
//!   sending `null`, is how an applier clears it.)
//!
//! What the fake still does not do (see DESIGN): watches, defaulting,
//! admission, CEL rules (tested in keeper-crds with kube-cel), ownership
//! shared between managers, and list merging by key.

pub mod rbac;
pub mod schema;
pub mod server_rules;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{Method, Request, Response, StatusCode};
use keeper_crds::{MySQLBackup, MySQLInstance};
use kube::client::Body;
use kube::{Client, Resource};
use serde_json::{Value, json};

pub use rbac::Identity;
use schema::{FieldError, Mode, Origin};

/// One call a client made, as the checking layer saw it.
#[derive(Clone, Debug)]
pub struct Call {
    /// Who made it.
    pub identity: Identity,
    /// Verb, resource, namespace and name, as the authorizer sees them.
    pub request: rbac::Request,
    /// The patch's content type, for PATCH.
    pub patch_type: Option<PatchType>,
    /// `fieldManager` of the request, if any.
    pub field_manager: Option<String>,
    /// `force` of a server-side apply.
    pub force: bool,
    /// The request body, for writes.
    pub body: Option<Value>,
}

impl Call {
    /// Whether the call changes something.
    pub fn is_write(&self) -> bool {
        !matches!(self.request.verb.as_str(), "get" | "list" | "watch")
    }
}

/// The kinds of PATCH the API server takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/apply-patch+yaml`: server-side apply.
    Apply,
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`.
    StrategicMerge,
    /// `application/json-patch+json`.
    Json,
}

#[derive(Default)]
struct Log {
    calls: Vec<Call>,
    refusals: Vec<String>,
    /// The last apply body per (URL path, field manager): what that manager
    /// owns, so that a later apply can drop what it no longer names.
    applied: HashMap<(String, String), Value>,
    /// How many calls [`FakeCluster::take_writes`] has looked at.
    writes_seen: usize,
}

/// Builds a [`FakeCluster`]: the fake with Keeper's two kinds registered
/// (with their status subresources), plus what a test adds.
pub struct FakeClusterBuilder {
    inner: kube_fake_client::ClientBuilder,
}

impl Default for FakeClusterBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeClusterBuilder {
    /// An empty cluster that knows `MySQLInstance` and `MySQLBackup`.
    pub fn new() -> Self {
        Self {
            inner: kube_fake_client::ClientBuilder::new()
                .with_resource::<MySQLInstance>()
                .with_resource::<MySQLBackup>()
                .with_status_subresource::<InstanceKind>()
                .with_status_subresource::<BackupKind>(),
        }
    }

    /// Starts with `object` stored (unchecked: it is the scene, not a write).
    pub fn with_object<K: Resource + serde::Serialize>(self, object: K) -> Self {
        Self {
            inner: self.inner.with_object(object),
        }
    }

    /// Starts with these objects (JSON with `apiVersion` and `kind`) stored.
    pub fn with_runtime_objects(self, objects: Vec<Value>) -> Self {
        Self {
            inner: self.inner.with_runtime_objects(objects),
        }
    }

    /// Interceptors of the fake (count writes, inject errors, serve stale
    /// reads). They run after the checking layer accepted a request.
    pub fn with_interceptor_funcs(self, funcs: kube_fake_client::interceptor::Funcs) -> Self {
        Self {
            inner: self.inner.with_interceptor_funcs(funcs),
        }
    }

    /// # Panics
    /// When the fake refuses one of the initial objects (a test's mistake).
    pub async fn build(self) -> FakeCluster {
        let inner = self.inner.build().await.expect("in-memory API starts");
        FakeCluster {
            inner,
            log: Arc::default(),
        }
    }
}

/// The in-memory API with its checking layer. Clients made from it share one
/// store; each acts as an [`Identity`].
pub struct FakeCluster {
    inner: Client,
    log: Arc<Mutex<Log>>,
}

impl FakeCluster {
    /// A builder with Keeper's kinds registered.
    pub fn builder() -> FakeClusterBuilder {
        FakeClusterBuilder::new()
    }

    /// A client that acts as `identity`.
    pub fn client(&self, identity: Identity) -> Client {
        Client::new(
            Checked {
                inner: self.inner.clone(),
                identity,
                log: self.log.clone(),
            },
            "default",
        )
    }

    /// A client with the operator's RBAC.
    pub fn operator(&self) -> Client {
        self.client(Identity::Operator)
    }

    /// A client with the RBAC of the agent of `namespace/instance`.
    pub fn agent(&self, namespace: &str, instance: &str) -> Client {
        self.client(Identity::agent(namespace, instance))
    }

    /// A client for the test itself: no RBAC, writes still validated.
    pub fn admin(&self) -> Client {
        self.client(Identity::Admin)
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.log).calls.clone()
    }

    /// Every call so far of `identity`.
    pub fn calls_of(&self, identity: &Identity) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| &c.identity == identity)
            .collect()
    }

    /// The writes of the code under test (every identity but
    /// [`Identity::Admin`]) since the last call, one line each:
    /// `create <Kind> <name>`, `patch <name>`, `patch status <name>`,
    /// `patch Event <name>` (the event recorder counting a repeat),
    /// `replace <name>`, `delete <name>`. "An idle reconcile writes nothing"
    /// is `take_writes()` being empty.
    pub fn take_writes(&self) -> Vec<String> {
        let mut log = lock(&self.log);
        let seen = log.writes_seen;
        log.writes_seen = log.calls.len();
        log.calls[seen..]
            .iter()
            .filter(|c| c.is_write() && c.identity != Identity::Admin)
            .map(|c| {
                let name = c.request.name.as_deref().unwrap_or("?");
                let status = if c.request.subresource.as_deref() == Some("status") {
                    "status "
                } else {
                    ""
                };
                match c.request.verb.as_str() {
                    "create" => {
                        let kind = c
                            .body
                            .as_ref()
                            .and_then(|b| b["kind"].as_str())
                            .unwrap_or("?");
                        format!("create {kind} {name}")
                    }
                    "patch" if c.body.as_ref().is_some_and(|b| b.get("series").is_some()) => {
                        format!("patch Event {name}")
                    }
                    "update" => format!("replace {status}{name}"),
                    verb => format!("{verb} {status}{name}"),
                }
            })
            .collect()
    }

    /// What the checking layer refused so far (RBAC and invalid writes).
    pub fn refusals(&self) -> Vec<String> {
        lock(&self.log).refusals.clone()
    }

    /// Forgets the refusals so far, for a test that provokes one on purpose
    /// and has asserted it.
    pub fn take_refusals(&self) -> Vec<String> {
        std::mem::take(&mut lock(&self.log).refusals)
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        let refusals = std::mem::take(&mut lock(&self.log).refusals);
        if !refusals.is_empty() && !std::thread::panicking() {
            panic!(
                "a real API server would have refused {} request(s):\n  {}",
                refusals.len(),
                refusals.join("\n  ")
            );
        }
    }
}

fn lock(log: &Mutex<Log>) -> std::sync::MutexGuard<'_, Log> {
    log.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `with_status_subresource` needs `Default`; the CRDs have required specs.
macro_rules! stand_in {
    ($name:ident, $kind:ty) => {
        #[derive(Clone, Debug, serde::Serialize)]
        struct $name {
            #[serde(rename = "apiVersion")]
            api_version: &'static str,
            kind: String,
            metadata: kube::api::ObjectMeta,
        }
        impl Default for $name {
            fn default() -> Self {
                Self {
                    api_version: keeper_crds::API_GROUP_VERSION,
                    kind: <$kind as Resource>::kind(&()).into_owned(),
                    metadata: kube::api::ObjectMeta::default(),
                }
            }
        }
        impl Resource for $name {
            type DynamicType = ();
            type Scope = k8s_openapi::NamespaceResourceScope;
            fn kind(_: &()) -> std::borrow::Cow<'_, str> {
                <$kind as Resource>::kind(&())
            }
            fn group(_: &()) -> std::borrow::Cow<'_, str> {
                <$kind as Resource>::group(&())
            }
            fn version(_: &()) -> std::borrow::Cow<'_, str> {
                <$kind as Resource>::version(&())
            }
            fn plural(_: &()) -> std::borrow::Cow<'_, str> {
                <$kind as Resource>::plural(&())
            }
            fn meta(&self) -> &kube::api::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut kube::api::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
stand_in!(InstanceKind, MySQLInstance);
stand_in!(BackupKind, MySQLBackup);

/// A kind the layer knows the schema of.
struct Kind {
    kind: &'static str,
    origin: Origin,
    schema: Value,
}

/// (group, plural) → kind and schema: Keeper's CRDs as generated, and the
/// built-in kinds Keeper reads or writes, from k8s-openapi.
fn kinds() -> &'static HashMap<(String, String), Kind> {
    static KINDS: OnceLock<HashMap<(String, String), Kind>> = OnceLock::new();
    KINDS.get_or_init(|| {
        let mut map = HashMap::new();
        for crd in keeper_crds::crds() {
            let plural = crd.spec.names.plural.clone();
            let kind: &'static str = crd.spec.names.kind.clone().leak();
            let schema = crd
                .spec
                .versions
                .first()
                .and_then(|v| v.schema.as_ref())
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .map(|s| serde_json::to_value(s).expect("schema serializes"))
                .expect("the CRD has a schema");
            map.insert(
                (keeper_crds::API_GROUP.to_owned(), plural),
                Kind {
                    kind,
                    origin: Origin::Crd,
                    schema,
                },
            );
        }
        macro_rules! built_in {
            ($group:literal, $plural:literal, $ty:ty) => {
                map.insert(
                    ($group.to_owned(), $plural.to_owned()),
                    Kind {
                        kind: <$ty as k8s_openapi::Resource>::KIND,
                        origin: Origin::BuiltIn,
                        schema: serde_json::to_value(schemars::schema_for!($ty))
                            .expect("schema serializes"),
                    },
                );
            };
        }
        use k8s_openapi::api::{
            apps, batch, coordination, core as core_api, events, rbac as rbac_api,
        };
        built_in!("", "secrets", core_api::v1::Secret);
        built_in!("", "configmaps", core_api::v1::ConfigMap);
        built_in!("", "services", core_api::v1::Service);
        built_in!("", "serviceaccounts", core_api::v1::ServiceAccount);
        built_in!(
            "",
            "persistentvolumeclaims",
            core_api::v1::PersistentVolumeClaim
        );
        built_in!("", "pods", core_api::v1::Pod);
        built_in!("", "events", core_api::v1::Event);
        built_in!("apps", "statefulsets", apps::v1::StatefulSet);
        built_in!("batch", "cronjobs", batch::v1::CronJob);
        built_in!("batch", "jobs", batch::v1::Job);
        built_in!("rbac.authorization.k8s.io", "roles", rbac_api::v1::Role);
        built_in!(
            "rbac.authorization.k8s.io",
            "rolebindings",
            rbac_api::v1::RoleBinding
        );
        built_in!("events.k8s.io", "events", events::v1::Event);
        built_in!("coordination.k8s.io", "leases", coordination::v1::Lease);
        map
    })
}

/// Kinds whose Go-side rules compare the write with the stored object.
const CHECKED_CHANGES: &[&str] = &["StatefulSet", "Job", "PersistentVolumeClaim"];

/// The tower service in front of the fake: records, authorizes, validates,
/// then forwards to the fake's own client.
#[derive(Clone)]
struct Checked {
    inner: Client,
    identity: Identity,
    log: Arc<Mutex<Log>>,
}

/// A parsed API path: `/api/v1/...` or `/apis/<group>/<version>/...`.
struct Path {
    group: String,
    namespace: Option<String>,
    resource: String,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(path: &str) -> Option<Path> {
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, rest) = match parts.as_slice() {
        ["api", _version, rest @ ..] => (String::new(), rest),
        ["apis", group, _version, rest @ ..] => ((*group).to_owned(), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        _ => (None, rest),
    };
    let (resource, name, subresource) = match rest {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(*name), None),
        [resource, name, sub] => (*resource, Some(*name), Some(*sub)),
        _ => return None,
    };
    Some(Path {
        group,
        namespace,
        resource: resource.to_owned(),
        name: name.map(str::to_owned),
        subresource: subresource.map(str::to_owned),
    })
}

fn query_value<'q>(query: Option<&'q str>, key: &str) -> Option<&'q str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn status_response(
    code: StatusCode,
    reason: &str,
    message: &str,
    causes: &[FieldError],
) -> Response<Body> {
    let causes: Vec<Value> = causes
        .iter()
        .map(|c| json!({"reason": "FieldValueInvalid", "field": c.path, "message": c.reason}))
        .collect();
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": {"causes": causes},
        "code": code.as_u16(),
    });
    let mut response = Response::new(Body::from(body.to_string().into_bytes()));
    *response.status_mut() = code;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// RFC 7386 merge of `patch` into `target`: what the fake stores for a merge
/// patch or an apply, and close enough to the server's result to compare
/// immutable fields.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (key, value) in p {
                if value.is_null() {
                    t.remove(key);
                } else {
                    merge(t.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// Writes into `out` a `null` for each key of `previous` that `current`
/// lacks, recursing into objects both have.
fn null_omitted(previous: &Value, current: &Value, out: &mut Value) {
    let (Some(previous), Some(current)) = (previous.as_object(), current.as_object()) else {
        return;
    };
    for (key, before) in previous {
        match current.get(key) {
            None => {
                if let Some(map) = out.as_object_mut() {
                    map.insert(key.clone(), Value::Null);
                }
            }
            Some(now) => {
                if let Some(child) = out.get_mut(key) {
                    null_omitted(before, now, child);
                }
            }
        }
    }
}

impl Checked {
    fn refuse(&self, what: String) {
        eprintln!("in-memory API server: {what}");
        lock(&self.log).refusals.push(what);
    }

    /// `body` with a `null` (a deletion, to the fake's merge) for every field
    /// the same manager applied last time and omits now.
    fn drop_unapplied(&self, path: &str, manager: &str, body: &Value) -> Value {
        let key = (path.to_owned(), manager.to_owned());
        let mut sent = body.clone();
        if let Some(previous) = lock(&self.log).applied.get(&key) {
            null_omitted(previous, body, &mut sent);
        }
        sent
    }

    async fn stored(&self, path: &str) -> Option<Value> {
        let request = Request::get(path).body(Body::empty()).ok()?;
        let response = self.inner.send(request).await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let bytes = response.into_body().collect_bytes().await.ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    async fn handle(self, request: Request<Body>) -> Result<Response<Body>, kube::Error> {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await?;
        let path_text = parts.uri.path().to_owned();
        let query = parts.uri.query();
        let Some(path) = parse_path(&path_text) else {
            return self
                .inner
                .send(Request::from_parts(parts, Body::from(bytes.to_vec())))
                .await;
        };
        let verb = match (&parts.method, path.name.is_some()) {
            (&Method::GET, true) => "get",
            (&Method::GET, false) if matches!(query_value(query, "watch"), Some("true" | "1")) => {
                "watch"
            }
            (&Method::GET, false) => "list",
            (&Method::POST, _) => "create",
            (&Method::PUT, _) => "update",
            (&Method::PATCH, _) => "patch",
            (&Method::DELETE, true) => "delete",
            (&Method::DELETE, false) => "deletecollection",
            _ => "unknown",
        };
        let content_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let patch_type = (verb == "patch").then(|| {
            if content_type.contains("apply-patch") {
                PatchType::Apply
            } else if content_type.contains("merge-patch") && !content_type.contains("strategic") {
                PatchType::Merge
            } else if content_type.contains("json-patch") {
                PatchType::Json
            } else {
                PatchType::StrategicMerge
            }
        });
        let body: Option<Value> = if bytes.is_empty() {
            None
        } else {
            serde_json::from_slice(&bytes)
                .ok()
                .or_else(|| serde_yaml::from_slice(&bytes).ok())
        };
        // A create names its object in the body, not the URL.
        let name = path.name.clone().or_else(|| {
            body.as_ref()
                .and_then(|b| b.pointer("/metadata/name"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        let rbac_request = rbac::Request {
            verb: verb.to_owned(),
            group: path.group.clone(),
            resource: path.resource.clone(),
            subresource: path.subresource.clone(),
            namespace: path.namespace.clone(),
            name,
        };
        let call = Call {
            identity: self.identity.clone(),
            request: rbac_request.clone(),
            patch_type,
            field_manager: query_value(query, "fieldManager").map(str::to_owned),
            force: matches!(query_value(query, "force"), Some("true" | "")),
            body: body.clone(),
        };
        lock(&self.log).calls.push(call);

        if !self.identity.allows(&rbac_request) {
            let what = format!("RBAC: {:?} may not {rbac_request}", self.identity);
            self.refuse(what.clone());
            return Ok(status_response(
                StatusCode::FORBIDDEN,
                "Forbidden",
                &what,
                &[],
            ));
        }

        let kind = kinds().get(&(path.group.clone(), path.resource.clone()));
        let subresource_checked = matches!(path.subresource.as_deref(), None | Some("status"));
        if let (Some(kind), Some(body), true) = (kind, &body, subresource_checked) {
            let mode = match (verb, patch_type) {
                ("create" | "update", _) => Some(Mode::Replace),
                (_, Some(PatchType::Apply)) => Some(Mode::Apply),
                (_, Some(PatchType::Merge | PatchType::StrategicMerge)) => Some(Mode::Merge),
                _ => None,
            };
            if let Some(mode) = mode {
                let mut errors =
                    schema::validate(&kind.schema, body, mode, kind.origin, mode == Mode::Replace);
                errors.extend(server_rules::check_object(
                    kind.kind,
                    body,
                    verb == "create",
                ));
                if errors.is_empty()
                    && path.subresource.is_none()
                    && matches!(verb, "update" | "patch")
                    && CHECKED_CHANGES.contains(&kind.kind)
                    && let Some(old) = self.stored(&path_text).await
                {
                    let mut new = old.clone();
                    if verb == "update" {
                        new = body.clone();
                        // An update carries the status it read; the server keeps its own.
                        if let Some(status) = old.get("status") {
                            new["status"] = status.clone();
                        }
                    } else {
                        merge(&mut new, body);
                    }
                    errors.extend(server_rules::check_change(kind.kind, &old, &new));
                }
                if !errors.is_empty() {
                    let name = rbac_request.name.as_deref().unwrap_or("?");
                    let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
                    let message = format!("{} {name:?} is invalid: {}", kind.kind, list.join(", "));
                    self.refuse(format!(
                        "{verb} {path_text} by {:?}: {message}\n    body: {body}",
                        self.identity
                    ));
                    return Ok(status_response(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Invalid",
                        &message,
                        &errors,
                    ));
                }
            }
        }

        let manager = query_value(query, "fieldManager")
            .unwrap_or_default()
            .to_owned();
        let bytes = match (&body, patch_type) {
            (Some(body), Some(PatchType::Apply)) => {
                let body = self.drop_unapplied(&path_text, &manager, body);
                serde_json::to_vec(&body).map_err(|e| kube::Error::Service(e.into()))?
            }
            _ => bytes.to_vec(),
        };
        if verb == "delete" {
            let children = format!("{path_text}/");
            lock(&self.log)
                .applied
                .retain(|(p, _), _| *p != path_text && !p.starts_with(&children));
        }
        let response = self
            .inner
            .send(Request::from_parts(parts, Body::from(bytes)))
            .await?;
        if let (Some(body), Some(PatchType::Apply), true) =
            (&body, patch_type, response.status().is_success())
        {
            lock(&self.log)
                .applied
                .insert((path_text.clone(), manager), body.clone());
        }

        // A patch names only some fields: the required ones are checked on
        // the object it produced (after the fact — the fake has stored it —
        // but the refusal still fails the test).
        let Some(kind) = kind.filter(|k| k.origin == Origin::Crd && verb == "patch") else {
            return Ok(response);
        };
        if !response.status().is_success() {
            return Ok(response);
        }
        let (head, body) = response.into_parts();
        let bytes = body.collect_bytes().await?;
        if let Ok(stored) = serde_json::from_slice::<Value>(&bytes) {
            let errors = schema::validate(&kind.schema, &stored, Mode::Replace, kind.origin, true);
            if !errors.is_empty() {
                let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
                self.refuse(format!(
                    "patch by {:?} leaves {} {:?} invalid: {}",
                    self.identity,
                    kind.kind,
                    rbac_request.name.as_deref().unwrap_or("?"),
                    list.join(", ")
                ));
            }
        }
        Ok(Response::from_parts(head, Body::from(bytes.to_vec())))
    }
}

impl tower_service::Service<Request<Body>> for Checked {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, kube::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        Box::pin(self.clone().handle(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Api;
    use kube::api::{Patch, PatchParams};

    fn instance() -> MySQLInstance {
        let mut instance: MySQLInstance = serde_json::from_value(json!({
            "apiVersion": keeper_crds::API_GROUP_VERSION,
            "kind": "MySQLInstance",
            "metadata": {"name": "orders", "namespace": "shop"},
            "spec": {"storage": {"size": "1Gi"}},
        }))
        .expect("instance");
        instance.metadata.generation = Some(1);
        instance
    }

    #[tokio::test]
    async fn a_null_in_an_apply_is_refused_with_its_field_path() {
        let cluster = FakeCluster::builder().with_object(instance()).build().await;
        let api = Api::<MySQLInstance>::namespaced(cluster.operator(), "shop");
        let patch = json!({"apiVersion": keeper_crds::API_GROUP_VERSION, "kind": "MySQLInstance",
                           "status": {"phase": "Ready", "nextBackupTime": null}});
        let error = api
            .patch_status(
                "orders",
                &PatchParams::apply("keeper-operator").force(),
                &Patch::Apply(&patch),
            )
            .await
            .expect_err("refused");
        let kube::Error::Api(status) = error else {
            panic!("{error:?}")
        };
        assert_eq!(status.code, 422);
        assert!(
            status.message.contains("status.nextBackupTime"),
            "{}",
            status.message
        );
        let refusals = cluster.take_refusals();
        assert_eq!(refusals.len(), 1, "{refusals:?}");
        // The same null in a merge patch deletes the field: accepted.
        api.patch_status("orders", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("merge patch");
    }

    #[tokio::test]
    async fn calls_outside_the_shipped_rbac_are_refused() {
        let cluster = FakeCluster::builder().with_object(instance()).build().await;
        let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(
            cluster.agent("shop", "orders"),
            "shop",
        );
        let error = secrets
            .get("orders-credentials")
            .await
            .expect_err("forbidden");
        assert!(
            matches!(error, kube::Error::Api(ref s) if s.code == 403),
            "{error:?}"
        );
        let refusals = cluster.take_refusals();
        assert!(
            refusals[0].contains("get secrets (core) in namespace shop named orders-credentials"),
            "{refusals:?}"
        );
        // The operator may delete Jobs but not StatefulSets.
        let sets =
            Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(cluster.operator(), "shop");
        assert!(sets.delete("orders", &Default::default()).await.is_err());
        assert_eq!(cluster.take_refusals().len(), 1);
        let calls = cluster.calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].request.verb, "delete");
    }

    #[test]
    fn paths_name_resource_subresource_and_namespace() {
        let p = parse_path(
            "/apis/mysql.keeper.dev/v1alpha1/namespaces/shop/mysqlinstances/orders/status",
        )
        .expect("parses");
        assert_eq!(
            (
                p.group.as_str(),
                p.namespace.as_deref(),
                p.resource.as_str(),
                p.name.as_deref(),
                p.subresource.as_deref()
            ),
            (
                "mysql.keeper.dev",
                Some("shop"),
                "mysqlinstances",
                Some("orders"),
                Some("status")
            )
        );
        let p = parse_path("/api/v1/namespaces/shop").expect("parses");
        assert_eq!(
            (p.resource.as_str(), p.name.as_deref(), p.namespace),
            ("namespaces", Some("shop"), None)
        );
        let p = parse_path("/api/v1/namespaces/shop/secrets").expect("parses");
        assert_eq!((p.resource.as_str(), p.name), ("secrets", None));
    }
}

//! The agent's status reporting against the in-memory Kubernetes API
//! (`kube-fake-client`): what a backup or restore run writes, and what it
//! never writes.
//!
//! The agent talks to `keeper_tests::kube::FakeCluster` as its own identity:
//! every request is checked against the agent's Role
//! (`keeper_crds::agent::agent_policy_rules`) and every body the way the API
//! server checks it, and recorded, so the tests can count writes and search
//! bodies for secrets. Interceptors of the fake inject the faults.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use keeper_tests::kube::{FakeCluster, Identity, PatchType};
use kube::Api;
use kube_fake_client::{Error as FakeError, interceptor};
use serde_json::{Value, json};

use keeper_agent::AgentContext;
use keeper_agent::manifest::{
    self, BinlogPosition as ManifestBinlog, Consistency, DatabaseEntry, FileInfo, Manifest, Member,
    MemberKind, ServerInfo, Snapshot, TableEntry, TableKind,
};
use keeper_agent::report::{
    self, BackupReporter, CREATED_BY_JOB_ANNOTATION, ENV_BACKUP, ENV_DESTINATION, ENV_INSTANCE,
    ENV_JOB_NAME, ENV_NAMESPACE, ENV_RESTORE_SOURCE, ReportError, ReportOutcome, RestoreReporter,
    RetryPolicy,
};
use keeper_crds::agent::FailureCode;
use keeper_crds::{
    BackupPhase, BinlogPosition, INSTANCE_LABEL, MySQLBackup, MySQLInstance, RestorePhase,
};

const NS: &str = "shop";
const INSTANCE: &str = "orders";
const JOB: &str = "orders-backup-29012345";
/// The value of the S3 secret; it lives only in the Secret, never in a report.
const SECRET_VALUE: &str = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY";
const SECRET_NAME: &str = "orders-s3-credentials";
const BASE_URL: &str = "s3://backups/prod/orders";

/// One request the reporter sent.
#[derive(Debug, Clone)]
struct Call {
    verb: String,
    /// RBAC resource (`mysqlbackups`, `mysqlbackups/status`, ...).
    resource: String,
    name: Option<String>,
    body: Option<Value>,
    /// Status patches: (server-side apply?, field manager, force).
    apply: Option<(bool, Option<String>, bool)>,
}

/// Which requests fail, with an HTTP 500 (transient: the reporter retries).
#[derive(Debug, Default, Clone)]
struct Faults {
    create: bool,
    /// Fail status patches whose body is of this kind.
    patch_status_kind: Option<&'static str>,
    /// Served once for the next GET of the instance: a stale read.
    stale_instance: Option<Value>,
}

struct Fake {
    cluster: FakeCluster,
    /// The agent's client: its Role, checked on every call.
    client: kube::Client,
    faults: Arc<Mutex<Faults>>,
}

impl Fake {
    async fn new(objects: Vec<Value>) -> Fake {
        let faults: Arc<Mutex<Faults>> = Arc::default();
        let (f1, f2, f3) = (faults.clone(), faults.clone(), faults.clone());
        let funcs = interceptor::Funcs::new()
            .create(move |_| {
                if f1.lock().unwrap().create {
                    return Err(FakeError::Internal("injected: etcd timeout".into()));
                }
                Ok(None)
            })
            .get(move |ctx| {
                if ctx.name == INSTANCE {
                    return Ok(f3.lock().unwrap().stale_instance.take());
                }
                Ok(None)
            })
            .patch_status(move |ctx| {
                let kind = ctx.patch["kind"].as_str().unwrap_or_default();
                if f2
                    .lock()
                    .unwrap()
                    .patch_status_kind
                    .is_some_and(|k| k == kind)
                {
                    return Err(FakeError::Internal(
                        "injected: apiserver unavailable".into(),
                    ));
                }
                Ok(None)
            });
        let cluster = FakeCluster::builder()
            .with_runtime_objects(objects)
            .with_interceptor_funcs(funcs)
            .build()
            .await;
        Fake {
            client: cluster.agent(NS, INSTANCE),
            cluster,
            faults,
        }
    }

    /// Every request the agent sent, as the API server saw it.
    fn calls(&self) -> Vec<Call> {
        self.cluster
            .calls_of(&Identity::agent(NS, INSTANCE))
            .into_iter()
            .map(|c| Call {
                resource: c.request.rbac_resource(),
                apply: (c.request.verb == "patch").then(|| {
                    (
                        c.patch_type == Some(PatchType::Apply),
                        c.field_manager.clone(),
                        c.force,
                    )
                }),
                verb: c.request.verb,
                name: c.request.name,
                body: c.body,
            })
            .collect()
    }

    fn writes(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.verb != "get" && c.verb != "list")
            .collect()
    }

    fn fail(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.faults.lock().unwrap());
    }

    fn ctx(&self, extra: &[(&str, &str)]) -> AgentContext {
        let mut env: HashMap<String, String> = HashMap::from([
            (ENV_NAMESPACE.to_owned(), NS.to_owned()),
            (ENV_INSTANCE.to_owned(), INSTANCE.to_owned()),
            (ENV_JOB_NAME.to_owned(), JOB.to_owned()),
            (ENV_DESTINATION.to_owned(), destination_json().to_string()),
            // Present in the agent's environment (envFrom the Secret): the
            // reporter must never copy it anywhere.
            ("AWS_SECRET_ACCESS_KEY".to_owned(), SECRET_VALUE.to_owned()),
            ("MYSQL_PWD".to_owned(), SECRET_VALUE.to_owned()),
        ]);
        for (k, v) in extra {
            if v.is_empty() {
                env.remove(*k);
            } else {
                env.insert((*k).to_owned(), (*v).to_owned());
            }
        }
        AgentContext {
            env,
            kube: Some(self.client.clone()),
        }
    }

    fn backups(&self) -> Api<MySQLBackup> {
        Api::namespaced(self.client.clone(), NS)
    }

    fn instances(&self) -> Api<MySQLInstance> {
        Api::namespaced(self.client.clone(), NS)
    }

    async fn backup(&self, name: &str) -> MySQLBackup {
        self.backups().get(name).await.unwrap()
    }

    async fn instance(&self) -> MySQLInstance {
        self.instances().get(INSTANCE).await.unwrap()
    }

    /// Every status write is a forced apply by keeper-agent (a proof's
    /// by its own manager, keeper-agent-verify), and no body holds a
    /// secret. (Every call is checked against the agent's Role by the
    /// in-memory API itself.)
    fn assert_within_role_and_secret_free(&self) {
        for call in self.calls() {
            if call.verb == "patch" {
                let verification = call
                    .body
                    .as_ref()
                    .is_some_and(|b| b["status"].get("verification").is_some());
                let manager = if verification {
                    report::VERIFY_FIELD_MANAGER
                } else {
                    report::FIELD_MANAGER
                };
                assert_eq!(
                    call.apply,
                    Some((true, Some(manager.to_owned()), true)),
                    "status writes are forced server-side applies by keeper-agent: {call:?}"
                );
            }
            if let Some(body) = &call.body {
                assert!(
                    !body.to_string().contains(SECRET_VALUE),
                    "secret value in a request body: {body}"
                );
            }
        }
    }
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        initial_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
    }
}

fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 9, h, m, s).single().unwrap()
}

fn destination_json() -> Value {
    json!({"s3": {
        "bucket": "backups",
        "prefix": "prod/orders",
        "endpoint": "https://garage.storage.svc:3900",
        "region": "garage",
        "forcePathStyle": true,
        "credentialsSecretRef": {"name": SECRET_NAME},
    }})
}

fn instance(status: Value) -> Value {
    json!({
        "apiVersion": "mysql.keeper.dev/v1alpha1",
        "kind": "MySQLInstance",
        "metadata": {"name": INSTANCE, "namespace": NS},
        "spec": {
            "storage": {"size": "1Gi"},
            "backup": {"schedule": "0 3 * * *", "destination": destination_json()},
        },
        "status": status,
    })
}

/// An instance as the operator left it: its own fields set.
fn ready_instance() -> Value {
    instance(json!({"phase": "Ready", "endpoint": "orders.shop.svc:3306"}))
}

fn backup_object(name: &str, instance: &str, phase: Option<&str>) -> Value {
    let mut b = json!({
        "apiVersion": "mysql.keeper.dev/v1alpha1",
        "kind": "MySQLBackup",
        "metadata": {"name": name, "namespace": NS, "labels": {INSTANCE_LABEL: instance}},
        "spec": {"instanceRef": {"name": instance}},
        "status": {},
    });
    if let Some(phase) = phase {
        b["status"]["phase"] = json!(phase);
    }
    b
}

fn sha(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

fn manifest(name: &str, started: DateTime<Utc>, seconds: i64) -> Manifest {
    let member = |kind, offset, length, uncompressed, rows| Member {
        kind,
        database: Some("shop".into()),
        table: None,
        chunk: None,
        offset,
        length,
        uncompressed_length: uncompressed,
        rows,
        sha256: sha('b'),
    };
    Manifest {
        format_version: manifest::FORMAT_VERSION,
        agent_version: "0.1.0".into(),
        name: name.into(),
        owner: None,
        server: ServerInfo {
            flavor: manifest::Flavor::Mariadb,
            version: "11.4.4-MariaDB".into(),
        },
        started_at: started,
        finished_at: started + chrono::Duration::seconds(seconds),
        snapshot: Snapshot {
            consistency: Consistency::GlobalLock,
            lock_held_ms: Some(12),
            gtid_executed: Some("0-1-42".into()),
            binlog: Some(ManifestBinlog {
                file: "binlog.000007".into(),
                position: 1234,
            }),
            note: None,
        },
        max_allowed_packet: 16 << 20,
        largest_statement: 1000,
        databases: vec![DatabaseEntry {
            name: "shop".into(),
            charset: "utf8mb4".into(),
            collation: "utf8mb4_general_ci".into(),
            tables: vec![
                TableEntry {
                    name: "customers".into(),
                    kind: TableKind::Table,
                    engine: "InnoDB".into(),
                    rows: 30,
                    transactional: true,
                    read_under_lock: false,
                    data_skipped: None,
                    history: false,
                    digest: None,
                    deferred_indexes: Vec::new(),
                },
                TableEntry {
                    name: "orders".into(),
                    kind: TableKind::Table,
                    engine: "InnoDB".into(),
                    rows: 12,
                    transactional: true,
                    read_under_lock: false,
                    data_skipped: None,
                    history: false,
                    digest: None,
                    deferred_indexes: Vec::new(),
                },
            ],
            definitions: Vec::new(),
        }],
        members: vec![
            member(MemberKind::Header, 0, 100, 300, 0),
            member(MemberKind::Data, 100, 400, 5000, 42),
        ],
        compression: None,
        file: FileInfo {
            name: manifest::DUMP_FILE.into(),
            size: 500,
            sha256: sha('a'),
        },
        differences: vec![],
    }
}

#[tokio::test]
async fn scheduled_run_creates_its_backup_owned_by_nothing() {
    let fake = Fake::new(vec![ready_instance()]).await;
    let mut reporter = BackupReporter::from_context(&fake.ctx(&[])).unwrap();
    assert!(reporter.is_enabled());
    let before = Utc::now();
    let name = reporter.started(None, BASE_URL).await.unwrap().unwrap();
    assert_eq!(reporter.name(), Some(name.as_str()));

    // `<instance>-<UTC yyyymmdd-hhmmss>`, and the same the crate computes.
    let stamp = keeper_crds::names::parse_stamp(&name).unwrap();
    assert!(name.starts_with("orders-"), "{name}");
    assert_eq!(keeper_crds::names::backup_name(INSTANCE, stamp), name);
    assert!(stamp >= before - chrono::Duration::seconds(1));

    let b = fake.backup(&name).await;
    assert_eq!(b.spec.instance_ref.name, INSTANCE);
    assert_eq!(b.spec.destination, None);
    assert_eq!(
        b.metadata
            .labels
            .unwrap()
            .get(INSTANCE_LABEL)
            .map(String::as_str),
        Some(INSTANCE)
    );
    assert!(b.metadata.owner_references.unwrap_or_default().is_empty());
    assert_eq!(
        b.metadata
            .annotations
            .unwrap()
            .get(CREATED_BY_JOB_ANNOTATION)
            .map(String::as_str),
        Some(JOB)
    );
    let status = b.status.unwrap();
    assert_eq!(status.phase, Some(BackupPhase::Running));
    assert_eq!(status.job_name.as_deref(), Some(JOB));
    assert!(status.start_time.is_some());
    let destination = serde_json::to_value(status.destination.unwrap()).unwrap();
    assert_eq!(destination, destination_json());

    // One create, one status apply; nothing on the instance yet.
    let writes = fake.writes();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert_eq!(
        (writes[0].verb.as_str(), writes[0].resource.as_str()),
        ("create", "mysqlbackups")
    );
    assert_eq!(
        (writes[1].verb.as_str(), writes[1].resource.as_str()),
        ("patch", "mysqlbackups/status")
    );
    // The apply states only the status (plus identity), nothing of spec/metadata.
    let body = writes[1].body.as_ref().unwrap();
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["apiVersion", "kind", "metadata", "status"]);
    // The secret's name is recorded (a restore needs it), its value nowhere.
    assert!(body.to_string().contains(SECRET_NAME));
    fake.assert_within_role_and_secret_free();
}

#[tokio::test]
async fn scheduled_run_uses_the_requested_name_and_checks_it() {
    let fake = Fake::new(vec![ready_instance()]).await;
    let mut reporter = BackupReporter::from_context(&fake.ctx(&[])).unwrap();
    let name = reporter.started(Some("orders-nightly"), BASE_URL).await;
    assert_eq!(name, Ok(Some("orders-nightly".to_owned())));
    assert_eq!(
        fake.backup("orders-nightly").await.phase(),
        Some(BackupPhase::Running)
    );

    let mut reporter = BackupReporter::from_context(&fake.ctx(&[])).unwrap();
    let err = reporter
        .started(Some("Not_A_Name"), BASE_URL)
        .await
        .unwrap_err();
    assert!(matches!(err, ReportError::InvalidName(_)), "{err}");
}

#[tokio::test]
async fn on_demand_run_reports_into_the_existing_backup() {
    let fake = Fake::new(vec![
        ready_instance(),
        backup_object("orders-manual", INSTANCE, Some("Pending")),
    ])
    .await;
    let ctx = fake.ctx(&[(ENV_BACKUP, "orders-manual")]);
    let mut reporter = BackupReporter::from_context(&ctx).unwrap();
    let name = reporter
        .started(Some("orders-manual"), BASE_URL)
        .await
        .unwrap();
    assert_eq!(name.as_deref(), Some("orders-manual"));

    assert!(fake.writes().iter().all(|c| c.verb != "create"));
    let status = fake.backup("orders-manual").await.status.unwrap();
    assert_eq!(status.phase, Some(BackupPhase::Running));
    assert_eq!(status.job_name.as_deref(), Some(JOB));
    assert!(status.destination.is_some());
    fake.assert_within_role_and_secret_free();
}

#[tokio::test]
async fn on_demand_run_refuses_a_wrong_or_finished_backup() {
    let fake = Fake::new(vec![
        ready_instance(),
        backup_object("orders-done", INSTANCE, Some("Succeeded")),
        backup_object("billing-manual", "billing", None),
    ])
    .await;
    let started = |backup: &'static str, requested: Option<&'static str>| {
        let ctx = fake.ctx(&[(ENV_BACKUP, backup)]);
        async move {
            let mut r = BackupReporter::from_context(&ctx)
                .unwrap()
                .with_retry(fast());
            r.started(requested, BASE_URL).await.unwrap_err()
        }
    };
    let e = started("orders-done", None).await;
    assert!(e.to_string().contains("already Succeeded"), "{e}");
    let e = started("billing-manual", None).await;
    assert!(
        e.to_string().contains("belongs to instance \"billing\""),
        "{e}"
    );
    let e = started("orders-gone", None).await;
    assert!(e.to_string().contains("does not exist"), "{e}");
    let e = started("orders-done", Some("orders-other")).await;
    assert!(matches!(e, ReportError::NameMismatch { .. }), "{e}");

    // A finished backup's record is never rewritten.
    assert_eq!(
        fake.backup("orders-done").await.phase(),
        Some(BackupPhase::Succeeded)
    );
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
}

#[tokio::test]
async fn destination_falls_back_to_the_backup_then_the_instance() {
    let mut on_demand = backup_object("orders-manual", INSTANCE, None);
    on_demand["spec"]["destination"] = json!({"pvc": {"claimName": "backup-pvc", "path": "x"}});
    let fake = Fake::new(vec![ready_instance(), on_demand]).await;

    let ctx = fake.ctx(&[(ENV_BACKUP, "orders-manual"), (ENV_DESTINATION, "")]);
    let mut r = BackupReporter::from_context(&ctx).unwrap();
    r.started(None, "file:///backups/x").await.unwrap();
    let d = fake
        .backup("orders-manual")
        .await
        .status
        .unwrap()
        .destination
        .unwrap();
    assert_eq!(d.pvc.unwrap().claim_name, "backup-pvc");

    let ctx = fake.ctx(&[(ENV_DESTINATION, "")]);
    let mut r = BackupReporter::from_context(&ctx).unwrap();
    let name = r
        .started(Some("orders-fallback"), BASE_URL)
        .await
        .unwrap()
        .unwrap();
    let d = fake
        .backup(&name)
        .await
        .status
        .unwrap()
        .destination
        .unwrap();
    assert_eq!(serde_json::to_value(d).unwrap(), destination_json());
    fake.assert_within_role_and_secret_free();
}

/// `verify --restore` inside Kubernetes writes its result into the backup's
/// status under its own field manager: the backup run's fields stay, and a
/// failed proof says why.
#[tokio::test]
async fn a_proof_is_written_beside_the_backup_status() {
    use keeper_agent::proof::ProofReport;
    use keeper_agent::report::VerificationReporter;
    use keeper_crds::VerificationPhase;
    let fake = Fake::new(vec![instance(json!({"phase": "Ready"}))]).await;
    let mut reporter = BackupReporter::from_context(&fake.ctx(&[])).unwrap();
    let name = reporter
        .started(Some("orders-20250309-030000"), BASE_URL)
        .await
        .unwrap()
        .unwrap();
    let m = manifest(&name, t(3, 0, 0), 75);
    reporter.succeeded(&m, &format!("{BASE_URL}/{name}")).await;

    let proof = VerificationReporter::from_context(&fake.ctx(&[("KEEPER_BACKUP", &name)])).unwrap();
    let report = ProofReport {
        backup: format!("{BASE_URL}/{name}"),
        tables: 2,
        rows: 42,
        definitions: 5,
        complete: true,
        known: vec![],
        differences: vec![],
        duration: Duration::from_secs(7),
    };
    assert_eq!(proof.finished(Ok(&report)).await, ReportOutcome::Reported);
    let status = fake.backup(&name).await.status.unwrap();
    assert_eq!(
        status.phase,
        Some(BackupPhase::Succeeded),
        "the run's fields stay"
    );
    assert_eq!(status.rows, Some(42));
    let verification = status.verification.unwrap();
    assert_eq!(verification.phase, VerificationPhase::Verified);
    assert_eq!((verification.tables, verification.rows), (2, 42));
    assert_eq!(verification.duration_seconds, 7);
    assert_eq!(verification.message, None);

    let differing = ProofReport {
        differences: vec!["table `shop`.`orders`: rows differ".into()],
        ..report
    };
    proof.finished(Ok(&differing)).await;
    let verification = fake
        .backup(&name)
        .await
        .status
        .unwrap()
        .verification
        .unwrap();
    assert_eq!(verification.phase, VerificationPhase::Failed);
    assert!(
        verification
            .message
            .unwrap()
            .contains("`orders`: rows differ")
    );
    proof
        .finished(Err("the scratch server did not start"))
        .await;
    let status = fake.backup(&name).await.status.unwrap();
    assert_eq!(status.phase, Some(BackupPhase::Succeeded));
    assert_eq!(
        status.verification.unwrap().message.as_deref(),
        Some("the scratch server did not start")
    );
    // Outside a backup's Job there is nothing to report on.
    let alone = VerificationReporter::from_context(&fake.ctx(&[])).unwrap();
    assert_eq!(
        alone.finished(Ok(&differing)).await,
        ReportOutcome::Disabled
    );
    fake.assert_within_role_and_secret_free();
}

/// While the dump runs its progress reaches the object (the Progress column
/// of `kubectl get myb`), newest first; the end of the run replaces it with
/// the whole backup's figures.
#[tokio::test]
async fn progress_is_reported_while_the_dump_runs() {
    let fake = Fake::new(vec![instance(json!({"phase": "Ready"}))]).await;
    let mut reporter = BackupReporter::from_context(&fake.ctx(&[])).unwrap();
    let name = reporter
        .started(Some("orders-20250309-030000"), BASE_URL)
        .await
        .unwrap()
        .unwrap();
    let task = reporter.spawn();
    let sender = task.clone_sender();
    sender.update(keeper_crds::BackupProgress::new(1, 2, 1000, 1 << 20));
    // Let the task report it before the next one overtakes it.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let status = fake.backup(&name).await.status.unwrap();
    assert_eq!(status.phase, Some(BackupPhase::Running));
    let progress = status.progress.unwrap();
    assert_eq!((progress.tables_done, progress.tables_total), (1, 2));
    assert_eq!(progress.summary, "1/2 tables, 1,000 rows, 1.0 MiB");
    drop(sender);
    let mut reporter = task.into_reporter().await.expect("the reporter back");
    let m = manifest(&name, t(3, 0, 0), 75);
    reporter.succeeded(&m, &format!("{BASE_URL}/{name}")).await;
    let progress = fake.backup(&name).await.status.unwrap().progress.unwrap();
    assert_eq!((progress.tables_done, progress.tables_total), (2, 2));
    assert_eq!(progress.rows_done, 42);
    fake.assert_within_role_and_secret_free();
}

#[tokio::test]
async fn success_fills_every_field_and_moves_last_backup_forward() {
    let old = json!({"name": "orders-20250308-030000", "time": "2025-03-08T03:00:00Z",
        "location": "s3://backups/prod/orders/orders-20250308-030000",
        "compressedBytes": 400, "durationSeconds": 20});
    let restore = json!({"phase": "Succeeded", "source": "orders-20250301-030000"});
    let fake = Fake::new(vec![instance(json!({
        "phase": "Ready", "endpoint": "orders.shop.svc:3306",
        "lastBackup": old, "restore": restore,
    }))])
    .await;
    let mut reporter = BackupReporter::from_context(&fake.ctx(&[])).unwrap();
    let name = reporter
        .started(Some("orders-20250309-030000"), BASE_URL)
        .await
        .unwrap()
        .unwrap();
    let location = format!("{BASE_URL}/{name}");
    let m = manifest(&name, t(3, 0, 0), 75);

    let outcome = reporter.succeeded(&m, &location).await;
    assert_eq!(outcome, ReportOutcome::Reported);

    let status = fake.backup(&name).await.status.unwrap();
    assert_eq!(status.phase, Some(BackupPhase::Succeeded));
    assert_eq!(status.job_name.as_deref(), Some(JOB));
    assert!(status.start_time.is_some());
    assert_eq!(status.completion_time, Some(t(3, 1, 15)));
    assert!(status.destination.is_some(), "kept from the Running report");
    assert_eq!(status.location.as_deref(), Some(location.as_str()));
    assert_eq!(status.compressed_bytes, Some(500));
    assert_eq!(status.size.as_deref(), Some("500 B"));
    assert_eq!(status.lock_held_ms, Some(12));
    assert_eq!(status.uncompressed_bytes, Some(5300));
    assert_eq!(status.tables, Some(2));
    assert_eq!(status.rows, Some(42));
    assert_eq!(status.sha256, Some(sha('a')));
    assert_eq!(status.server_version.as_deref(), Some("11.4.4-MariaDB"));
    assert_eq!(status.gtid_executed.as_deref(), Some("0-1-42"));
    assert_eq!(
        status.binlog_position,
        Some(BinlogPosition {
            file: "binlog.000007".into(),
            position: 1234
        })
    );
    assert_eq!(status.message, None);

    let i = fake.instance().await.status.unwrap();
    let last = i.last_backup.unwrap();
    assert_eq!(last.name, name);
    assert_eq!(last.time, t(3, 0, 0));
    assert_eq!(last.location, location);
    assert_eq!(last.compressed_bytes, 500);
    assert_eq!(last.duration_seconds, 75);
    // The operator's fields and the agent's restore record are untouched.
    assert_eq!(i.endpoint.as_deref(), Some("orders.shop.svc:3306"));
    assert_eq!(i.phase.map(|p| p.as_str()), Some("Ready"));
    assert_eq!(i.restore.unwrap().source, "orders-20250301-030000");

    // The instance apply carries only the agent's two fields.
    let writes = fake.writes();
    let instance_apply = writes
        .iter()
        .find(|c| c.resource == "mysqlinstances/status")
        .unwrap();
    let mut keys: Vec<&str> = instance_apply.body.as_ref().unwrap()["status"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["lastBackup", "restore"]);
    fake.assert_within_role_and_secret_free();
}

#[tokio::test]
async fn an_older_backup_never_moves_last_backup_backwards() {
    let newer = json!({"name": "orders-20250310-030000", "time": "2025-03-10T03:00:00Z",
        "location": "s3://backups/prod/orders/orders-20250310-030000",
        "compressedBytes": 900, "durationSeconds": 30});
    let fake = Fake::new(vec![instance(
        json!({"phase": "Ready", "lastBackup": newer}),
    )])
    .await;
    let mut reporter = BackupReporter::from_context(&fake.ctx(&[])).unwrap();
    let name = reporter
        .started(Some("orders-20250309-030000"), BASE_URL)
        .await
        .unwrap()
        .unwrap();
    let outcome = reporter
        .succeeded(
            &manifest(&name, t(3, 0, 0), 10),
            &format!("{BASE_URL}/{name}"),
        )
        .await;
    assert_eq!(outcome, ReportOutcome::Reported);

    assert_eq!(
        fake.backup(&name).await.phase(),
        Some(BackupPhase::Succeeded)
    );
    let last = fake.instance().await.status.unwrap().last_backup.unwrap();
    assert_eq!(last.name, "orders-20250310-030000");
    assert!(
        fake.writes()
            .iter()
            .all(|c| c.resource != "mysqlinstances/status"),
        "no write to the instance at all"
    );
}

#[tokio::test]
async fn last_backup_is_decided_again_when_the_instance_changed_meanwhile() {
    // Another run recorded a newer backup after this one read the instance:
    // the conditional apply conflicts, and the fresh read keeps the newer one.
    let newer = json!({"name": "orders-20250310-030000", "time": "2025-03-10T03:00:00Z",
        "location": "s3://backups/prod/orders/orders-20250310-030000",
        "compressedBytes": 900, "durationSeconds": 30});
    let fake = Fake::new(vec![instance(
        json!({"phase": "Ready", "lastBackup": newer}),
    )])
    .await;
    let mut stale = instance(json!({"phase": "Ready"}));
    // The fake numbers versions from 1; "0" is older than anything stored.
    stale["metadata"]["resourceVersion"] = json!("0");
    fake.fail(|f| f.stale_instance = Some(stale));

    let mut reporter = BackupReporter::from_context(&fake.ctx(&[])).unwrap();
    let name = reporter
        .started(Some("orders-20250309-030000"), BASE_URL)
        .await
        .unwrap()
        .unwrap();
    let outcome = reporter
        .succeeded(
            &manifest(&name, t(3, 0, 0), 10),
            &format!("{BASE_URL}/{name}"),
        )
        .await;
    assert_eq!(outcome, ReportOutcome::Reported);
    let last = fake.instance().await.status.unwrap().last_backup.unwrap();
    assert_eq!(last.name, "orders-20250310-030000");
    let instance_applies = fake
        .writes()
        .iter()
        .filter(|c| c.resource == "mysqlinstances/status")
        .count();
    assert_eq!(instance_applies, 1, "the stale attempt only");
}

#[tokio::test]
async fn failure_is_reported_and_leaves_the_good_backups_alone() {
    let good = json!({"name": "orders-20250308-030000", "time": "2025-03-08T03:00:00Z",
        "location": "s3://backups/prod/orders/orders-20250308-030000",
        "compressedBytes": 400, "durationSeconds": 20});
    let fake = Fake::new(vec![
        instance(json!({"phase": "Ready", "lastBackup": good})),
        backup_object("orders-20250308-030000", INSTANCE, Some("Succeeded")),
    ])
    .await;
    let before = fake.instance().await.status.unwrap().last_backup;
    let mut reporter = BackupReporter::from_context(&fake.ctx(&[])).unwrap();
    let name = reporter.started(None, BASE_URL).await.unwrap().unwrap();

    let message = "backup of orders failed: lost connection to orders.shop.svc:3306 while reading `shop`.`orders`: check the server\ncaused by: broken pipe";
    assert_eq!(reporter.failed(message).await, ReportOutcome::Reported);

    let status = fake.backup(&name).await.status.unwrap();
    assert_eq!(status.phase, Some(BackupPhase::Failed));
    assert_eq!(
        status.message.as_deref(),
        Some(
            "backup of orders failed: lost connection to orders.shop.svc:3306 while reading `shop`.`orders`: check the server"
        )
    );
    assert!(status.completion_time.is_some());
    assert_eq!(status.location, None);
    assert_eq!(status.job_name.as_deref(), Some(JOB));

    assert_eq!(fake.instance().await.status.unwrap().last_backup, before);
    assert_eq!(
        fake.backup("orders-20250308-030000").await.phase(),
        Some(BackupPhase::Succeeded)
    );
    assert!(
        fake.writes()
            .iter()
            .all(|c| c.resource != "mysqlinstances/status")
    );
    fake.assert_within_role_and_secret_free();
}

#[tokio::test]
async fn a_failure_after_success_does_not_undo_it() {
    let fake = Fake::new(vec![ready_instance()]).await;
    let mut reporter = BackupReporter::from_context(&fake.ctx(&[])).unwrap();
    let name = reporter.started(None, BASE_URL).await.unwrap().unwrap();
    reporter
        .succeeded(
            &manifest(&name, Utc::now(), 1),
            &format!("{BASE_URL}/{name}"),
        )
        .await;
    reporter.failed("retention failed: access denied").await;
    assert_eq!(
        fake.backup(&name).await.phase(),
        Some(BackupPhase::Succeeded)
    );
}

#[tokio::test]
async fn pruned_backups_lose_their_objects() {
    let fake = Fake::new(vec![
        ready_instance(),
        backup_object("orders-20250101-030000", INSTANCE, Some("Succeeded")),
        backup_object("orders-20250102-030000", INSTANCE, Some("Failed")),
        backup_object("orders-20250103-030000", INSTANCE, Some("Succeeded")),
        // Same bucket, other instance: not ours to delete.
        backup_object("billing-20250101-030000", "billing", Some("Succeeded")),
    ])
    .await;
    let mut reporter = BackupReporter::from_context(&fake.ctx(&[])).unwrap();
    reporter.started(None, BASE_URL).await.unwrap();
    let outcome = reporter
        .pruned(&[
            "orders-20250101-030000".into(),
            "orders-20250102-030000".into(),
            "orders-20241231-030000".into(), // no object: fine
            "billing-20250101-030000".into(),
        ])
        .await;
    assert_eq!(outcome, ReportOutcome::Reported);

    let left: Vec<String> = fake
        .backups()
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|b| b.metadata.name)
        .filter(|n| n.ends_with("-030000"))
        .collect();
    let mut left = left;
    left.sort();
    assert_eq!(left, ["billing-20250101-030000", "orders-20250103-030000"]);
    let deletes: Vec<_> = fake
        .writes()
        .into_iter()
        .filter(|c| c.verb == "delete")
        .filter_map(|c| c.name)
        .collect();
    assert_eq!(
        deletes,
        ["orders-20250101-030000", "orders-20250102-030000"]
    );
    fake.assert_within_role_and_secret_free();
}

#[tokio::test]
async fn restore_progress_lands_in_status_restore_throttled() {
    let last = json!({"name": "orders-20250308-030000", "time": "2025-03-08T03:00:00Z",
        "location": "s3://x/y", "compressedBytes": 1, "durationSeconds": 1});
    let fake = Fake::new(vec![instance(
        json!({"phase": "Restoring", "lastBackup": last}),
    )])
    .await;
    let ctx = fake.ctx(&[(ENV_RESTORE_SOURCE, "orders-20250308-030000")]);
    let mut r =
        RestoreReporter::from_context(&ctx, "s3://backups/prod/orders/orders-20250308-030000")
            .unwrap()
            .with_progress_interval(Duration::from_secs(3600));
    let patches = || {
        fake.writes()
            .iter()
            .filter(|c| c.resource == "mysqlinstances/status")
            .count()
    };

    assert_eq!(r.progress(0, 10, 0).await, ReportOutcome::Reported);
    let s = fake.instance().await.status.unwrap();
    let restore = s.restore.unwrap();
    assert_eq!(restore.phase, RestorePhase::Running);
    assert_eq!(restore.source, "orders-20250308-030000");
    assert_eq!(restore.job_name.as_deref(), Some(JOB));
    assert!(restore.start_time.is_some());
    assert_eq!(
        (
            restore.members_done,
            restore.members_total,
            restore.bytes_done
        ),
        (Some(0), Some(10), Some(0))
    );
    assert_eq!(
        s.last_backup.unwrap().name,
        "orders-20250308-030000",
        "carried along"
    );
    assert_eq!(patches(), 1);

    // Within the interval: not sent.
    for done in 1..10 {
        r.progress(done, 10, done * 100).await;
    }
    assert_eq!(patches(), 1);
    // The last member: always sent.
    r.progress(10, 10, 1000).await;
    assert_eq!(patches(), 2);
    let restore = fake.instance().await.status.unwrap().restore.unwrap();
    assert_eq!(restore.members_done, Some(10));
    assert_eq!(restore.bytes_done, Some(1000));

    assert_eq!(r.finished(Ok(())).await, ReportOutcome::Reported);
    let s = fake.instance().await.status.unwrap();
    let restore = s.restore.unwrap();
    assert_eq!(restore.phase, RestorePhase::Succeeded);
    assert!(restore.completion_time.is_some());
    assert_eq!(restore.message, None);
    assert_eq!(s.last_backup.unwrap().name, "orders-20250308-030000");
    assert_eq!(
        s.phase.map(|p| p.as_str()),
        Some("Restoring"),
        "operator's field"
    );
    fake.assert_within_role_and_secret_free();
}

#[tokio::test]
async fn restore_progress_from_a_sync_callback_and_failure() {
    let fake = Fake::new(vec![ready_instance()]).await;
    let url = "s3://backups/prod/orders/orders-20250308-030000";
    let task = RestoreReporter::from_context(&fake.ctx(&[]), url)
        .unwrap()
        .spawn();
    // What the restore engine's `Fn(RestoreProgress)` callback does.
    let callback = |done: u64| task.update(done, 4, done * 10);
    for done in 0..=3 {
        callback(done);
    }
    let outcome = task
        .finished(Err((
            FailureCode::RunFailed,
            "restore of orders failed: member 3 does not match its sha256\nmore",
        )))
        .await;
    assert_eq!(outcome, ReportOutcome::Reported);
    let restore = fake.instance().await.status.unwrap().restore.unwrap();
    assert_eq!(restore.phase, RestorePhase::Failed);
    assert_eq!(restore.source, url);
    assert_eq!(
        restore.message.as_deref(),
        Some("restore of orders failed: member 3 does not match its sha256")
    );
    // The operator decides on the code, not on the message.
    assert_eq!(restore.failure_code, Some(FailureCode::RunFailed));
    // The latest progress was reported before the end.
    assert_eq!(restore.members_done, Some(3));
    assert!(restore.completion_time.is_some());
}

#[tokio::test]
async fn an_api_error_at_start_fails_the_run_clearly() {
    let fake = Fake::new(vec![ready_instance()]).await;
    fake.fail(|f| f.create = true);
    let mut reporter = BackupReporter::from_context(&fake.ctx(&[]))
        .unwrap()
        .with_retry(fast());
    let err = reporter.started(None, BASE_URL).await.unwrap_err();
    let line = err.to_string();
    assert!(matches!(err, ReportError::Create { .. }), "{line}");
    assert!(
        line.starts_with("could not create MySQLBackup shop/orders-"),
        "{line}"
    );
    assert!(line.contains("500"), "{line}");
    assert!(line.contains("nothing was dumped"), "{line}");
    assert!(!line.contains('\n'));
    // Retried (a 500 is transient), then given up.
    let creates = fake.calls().iter().filter(|c| c.verb == "create").count();
    assert_eq!(creates, 3);
    assert_eq!(reporter.name(), None);

    // The Running status failing to land also stops the run before the dump.
    let fake = Fake::new(vec![ready_instance()]).await;
    fake.fail(|f| f.patch_status_kind = Some("MySQLBackup"));
    let mut reporter = BackupReporter::from_context(&fake.ctx(&[]))
        .unwrap()
        .with_retry(fast());
    let err = reporter.started(None, BASE_URL).await.unwrap_err();
    assert!(matches!(err, ReportError::BackupStatus { .. }), "{err}");
}

#[tokio::test]
async fn an_api_error_at_the_end_does_not_fail_a_good_backup() {
    let fake = Fake::new(vec![ready_instance()]).await;
    let mut reporter = BackupReporter::from_context(&fake.ctx(&[]))
        .unwrap()
        .with_retry(fast());
    let name = reporter.started(None, BASE_URL).await.unwrap().unwrap();
    fake.fail(|f| f.patch_status_kind = Some("MySQLBackup"));

    // The wiring in the backup command: the dump's result decides the exit
    // code; the reports after it cannot change that.
    let dump: Result<Manifest, String> = Ok(manifest(&name, Utc::now(), 3));
    let run: Result<(), String> = match dump {
        Ok(m) => {
            let outcome = reporter.succeeded(&m, &format!("{BASE_URL}/{name}")).await;
            assert!(
                matches!(&outcome, ReportOutcome::NotReported(e) if e.len() == 1
                    && matches!(e[0], ReportError::BackupStatus { .. })),
                "{outcome:?}"
            );
            Ok(())
        }
        Err(e) => {
            reporter.failed(&e).await;
            Err(e)
        }
    };
    assert!(run.is_ok());
    // The backup status could not be written; lastBackup still was (the
    // artifact is good), and nothing marked the backup Failed.
    assert_eq!(fake.backup(&name).await.phase(), Some(BackupPhase::Running));
    assert_eq!(
        fake.instance()
            .await
            .status
            .unwrap()
            .last_backup
            .unwrap()
            .name,
        name
    );
}

#[tokio::test]
async fn misconfigured_jobs_fail_before_anything_is_dumped() {
    let fake = Fake::new(vec![ready_instance()]).await;
    let err = BackupReporter::from_context(&fake.ctx(&[(ENV_INSTANCE, "")])).unwrap_err();
    assert_eq!(err, ReportError::MissingInstance);
    let err =
        BackupReporter::from_context(&fake.ctx(&[(ENV_DESTINATION, "{\"s3\": 1}")])).unwrap_err();
    assert!(matches!(err, ReportError::BadDestination(_)), "{err}");
    // No namespace: outside Kubernetes, a no-op.
    let r = BackupReporter::from_context(&fake.ctx(&[(ENV_NAMESPACE, "")])).unwrap();
    assert!(!r.is_enabled());
    assert!(fake.calls().is_empty());
}

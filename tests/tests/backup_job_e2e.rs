//! The backup Jobs the operator builds, run for real (issue 8): an instance
//! with an S3 destination (a harness Garage) lives in the in-memory API;
//! a user's `MySQLBackup` is reconciled by the backup controller until it
//! has its Job, and the scheduled CronJob's jobTemplate is taken as the
//! CronJob controller would. Each Job's arguments and environment are
//! resolved the way the kubelet would (secretKeyRef → the Secrets' values,
//! the downward API → the Job's name, the Service host → a harness MariaDB
//! on which the operator's account manager ensured the backup user) and the
//! agent runs them in-process, reporting into the same in-memory API. The
//! artifact must be in Garage and verify, and the `MySQLBackup` and the
//! instance's `status.lastBackup` must show the run. The verification Job
//! of that backup runs the same way, against a scratch MariaDB set up as its
//! throwaway server would be (root without a password), and its proof must
//! reach the backup's and the instance's status.
#![allow(clippy::unwrap_used)]

// The operator tests' fixtures: one place for both crates' tests.
#[path = "../../operator/tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::{CronJob, Job, JobSpec};
use keeper_agent::AgentContext;
use keeper_crds::{MySQLBackup, MySQLInstance, MySQLInstanceSpec};
use keeper_operator::accounts::{AccountManager, AccountTarget, SqlAccountManager};
use keeper_operator::context::{Context, OperatorConfig};
use keeper_operator::metrics::Metrics;
use keeper_tests::kube::FakeCluster;
use keeper_tests::{Garage, MariaDb};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use common::NoAccounts;

const NS: &str = "shop";
const NAME: &str = "orders";
const PREFIX: &str = "prod/orders";
const ON_DEMAND: &str = "orders-before-upgrade";
const ROWS: u64 = 250;

struct Setup {
    garage: Garage,
    server: MariaDb,
    fake: FakeCluster,
    /// The test's own client (the kubelet's part, reading results).
    client: Client,
    ctx: Arc<Context>,
    backup_password: String,
}

/// The harness servers, the cluster with the instance and its S3 Secret,
/// one instance reconcile (Secrets, CronJob), and the backup user ensured on
/// the harness MariaDB with the password of the operator's Secret.
async fn setup() -> Setup {
    let garage = Garage::start().unwrap();
    let server = MariaDb::start().unwrap();
    let mut sql = String::from(
        "CREATE DATABASE shop;
         CREATE TABLE shop.orders (id INT PRIMARY KEY, item VARCHAR(40) NOT NULL, qty INT NOT NULL);
         CREATE TABLE shop.customers (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL);
         INSERT INTO shop.customers VALUES (1, 'ada'), (2, 'grace');\n",
    );
    for id in 1..=ROWS {
        sql.push_str(&format!(
            "INSERT INTO shop.orders VALUES ({id}, 'item-{id}', {});\n",
            id % 7
        ));
    }
    server.run_sql(&sql, None).unwrap();

    let spec: MySQLInstanceSpec = serde_json::from_value(json!({
        "flavor": "mariadb", "version": "10.11", "user": "app",
        "backup": {
            "schedule": "30 2 * * *",
            "destination": {"s3": {"bucket": garage.bucket(), "prefix": PREFIX,
                "endpoint": garage.endpoint(), "region": garage.region(),
                "forcePathStyle": true, "credentialsSecretRef": {"name": "orders-s3"}}},
            "databases": ["shop"],
        }
    }))
    .unwrap();
    let mut instance = MySQLInstance::new(NAME, spec);
    instance.metadata.namespace = Some(NS.into());
    instance.metadata.generation = Some(1);
    instance.metadata.uid = Some("uid-orders".into());
    let fake = FakeCluster::builder()
        .with_object(instance)
        .with_object(common::secret(
            NS,
            "orders-s3",
            &[
                ("AWS_ACCESS_KEY_ID", garage.access_key_id()),
                ("AWS_SECRET_ACCESS_KEY", garage.secret_access_key()),
            ],
        ))
        .build()
        .await;
    let client = fake.admin();
    // The instance's Service address does not exist here: the reconcile's
    // own account step is a no-op, and the account is ensured below on the
    // harness server with the operator's real account manager.
    let ctx = Arc::new(
        Context::new(
            fake.operator(),
            OperatorConfig::default(),
            Arc::new(Metrics::default()),
            None,
        )
        .with_accounts(Arc::new(NoAccounts)),
    );
    // The operator brings the server up; once it is ready it ensures the
    // backup user and writes its Secret.
    let instances = Api::<MySQLInstance>::namespaced(client.clone(), NS);
    let instance = instances.get(NAME).await.unwrap();
    keeper_operator::reconcile(Arc::new(instance), ctx.clone())
        .await
        .unwrap();
    Api::<StatefulSet>::namespaced(client.clone(), NS)
        .patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(&json!({"status": {"replicas": 1, "readyReplicas": 1}})),
        )
        .await
        .unwrap();
    let instance = instances.get(NAME).await.unwrap();
    keeper_operator::reconcile(Arc::new(instance), ctx.clone())
        .await
        .unwrap();

    let backup_secret = format!("{NAME}-backup");
    let backup_password = common::secret_value(&client, NS, &backup_secret, "password").await;
    assert_eq!(
        common::secret_value(&client, NS, &backup_secret, "username").await,
        "keeper_backup"
    );
    SqlAccountManager::default()
        .ensure_backup_user(&AccountTarget {
            host: server.host().to_owned(),
            port: server.port(),
            root_user: server.root_user().to_owned(),
            root_password: server.root_password().to_owned(),
            backup_password: backup_password.clone(),
            cache_key: "harness".into(),
        })
        .await
        .unwrap();
    Setup {
        garage,
        server,
        fake,
        client,
        ctx,
        backup_password,
    }
}

impl Setup {
    /// A user's `MySQLBackup` [`ON_DEMAND`], reconciled by the backup
    /// controller until it has its Job, which is returned.
    async fn create_on_demand_backup(&self) -> Job {
        let backups = Api::<MySQLBackup>::namespaced(self.client.clone(), NS);
        let mut backup = MySQLBackup::for_instance(ON_DEMAND, NS, NAME, None);
        backup.metadata.uid = Some("uid-backup".into());
        backups
            .create(&PostParams::default(), &backup)
            .await
            .unwrap();
        let backup = backups.get(ON_DEMAND).await.unwrap();
        keeper_operator::backup_controller::reconcile(Arc::new(backup), self.ctx.clone())
            .await
            .unwrap();
        let job_name = keeper_operator::backup_controller::job_name(ON_DEMAND);
        Api::<Job>::namespaced(self.client.clone(), NS)
            .get(&job_name)
            .await
            .unwrap()
    }

    /// Runs the agent as the pod of `job_name` with `spec` would.
    async fn run_job(&self, job_name: &str, spec: &JobSpec) -> HashMap<String, String> {
        let (args, env) = common::resolve(
            &self.client,
            NS,
            job_name,
            spec,
            &format!("{NAME}.{NS}.svc"),
            &self.server,
        )
        .await;
        let secrets = [
            self.backup_password.as_str(),
            self.garage.secret_access_key(),
        ];
        assert!(
            args.iter().all(|a| secrets.iter().all(|s| !a.contains(s))),
            "no secret in the arguments: {args:?}"
        );
        assert_eq!(env["MYSQL_PWD"], self.backup_password);
        keeper_agent::run(
            args,
            AgentContext {
                env: env.clone(),
                kube: Some(self.fake.agent(NS, NAME)),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("the agent of Job {job_name}: {e}"));
        env
    }

    async fn object(&self, key: &str) -> Option<Vec<u8>> {
        let got = self
            .garage
            .client()
            .get_object()
            .bucket(self.garage.bucket())
            .key(key)
            .send()
            .await
            .ok()?;
        Some(got.body.collect().await.unwrap().into_bytes().to_vec())
    }

    /// Checks the artifact of `name` in Garage and the status the agent
    /// reported on its `MySQLBackup`; returns that object.
    async fn check_artifact_and_status(&self, name: &str, job_name: &str) -> MySQLBackup {
        // The operator's layout: the instance's own folder under the destination.
        let folder = format!("{PREFIX}/{NS}/{NAME}/{name}");
        let dump = self
            .object(&format!("{folder}/dump.sql.gz"))
            .await
            .unwrap_or_else(|| panic!("{folder}/dump.sql.gz is not in Garage"));
        let manifest: serde_json::Value = serde_json::from_slice(
            &self
                .object(&format!("{folder}/manifest.json"))
                .await
                .unwrap_or_else(|| panic!("{folder}/manifest.json is not in Garage")),
        )
        .unwrap();
        let location = format!("s3://{}/{folder}", self.garage.bucket());
        assert_eq!(
            manifest["owner"], "shop/orders",
            "the manifest names its owner"
        );
        let env: HashMap<String, String> = self
            .garage
            .env()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        keeper_agent::run(
            [
                "keeper-agent",
                "verify",
                "--from",
                &location,
                "--s3-force-path-style",
            ],
            AgentContext { env, kube: None },
        )
        .await
        .unwrap_or_else(|e| panic!("{location} does not verify: {e}"));

        let backup = Api::<MySQLBackup>::namespaced(self.client.clone(), NS)
            .get(name)
            .await
            .unwrap();
        let status = backup.status.clone().unwrap();
        assert_eq!(
            status.phase.map(|p| p.as_str()),
            Some("Succeeded"),
            "{status:?}"
        );
        assert_eq!(status.job_name.as_deref(), Some(job_name));
        assert_eq!(status.location.as_deref(), Some(location.as_str()));
        assert_eq!(status.compressed_bytes, Some(dump.len() as u64));
        assert!(status.uncompressed_bytes.unwrap() > status.compressed_bytes.unwrap());
        assert_eq!(status.tables, Some(2));
        assert_eq!(status.rows, Some(ROWS + 2));
        assert_eq!(
            status.sha256.as_deref(),
            manifest["file"]["sha256"].as_str(),
            "the manifest's file sha256"
        );
        assert!(
            status
                .server_version
                .as_deref()
                .unwrap()
                .to_ascii_lowercase()
                .contains("mariadb"),
            "{:?}",
            status.server_version
        );
        assert!(
            status.binlog_position.is_some() || status.gtid_executed.is_some(),
            "{status:?}"
        );
        assert!(status.start_time.is_some() && status.completion_time.is_some());

        let last = Api::<MySQLInstance>::namespaced(self.client.clone(), NS)
            .get(NAME)
            .await
            .unwrap()
            .status
            .unwrap()
            .last_backup
            .expect("status.lastBackup");
        assert_eq!(last.name, name);
        assert_eq!(last.location, location);
        assert_eq!(Some(last.compressed_bytes), status.compressed_bytes);
        backup
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_on_demand_backups_job_backs_up_to_s3_and_reports_it() {
    let setup = setup().await;
    let backups = Api::<MySQLBackup>::namespaced(setup.client.clone(), NS);
    // The backup controller creates its Job (one, owned by the backup).
    let job = setup.create_on_demand_backup().await;
    let job_name = keeper_operator::backup_controller::job_name(ON_DEMAND);
    let owner = &job.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("MySQLBackup", ON_DEMAND)
    );
    let pending = backups.get(ON_DEMAND).await.unwrap().status.unwrap();
    assert_eq!(pending.job_name.as_deref(), Some(job_name.as_str()));

    // Its pod: the agent in-process with the Job's args and env.
    let env = setup.run_job(&job_name, job.spec.as_ref().unwrap()).await;
    assert_eq!(env["KEEPER_BACKUP"], ON_DEMAND);
    setup.check_artifact_and_status(ON_DEMAND, &job_name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_run_creates_its_backup_object_and_reports_it() {
    let setup = setup().await;
    let cron = Api::<CronJob>::namespaced(setup.client.clone(), NS)
        .get(&format!("{NAME}-backup"))
        .await
        .unwrap();
    let template = cron.spec.unwrap().job_template;
    // The CronJob controller names its Jobs `<cronjob>-<minutes>`.
    let job_name = format!("{NAME}-backup-29000000");
    let env = setup
        .run_job(&job_name, template.spec.as_ref().unwrap())
        .await;
    assert!(!env.contains_key("KEEPER_BACKUP"), "a scheduled run");

    // The agent created the run's MySQLBackup.
    let created: Vec<MySQLBackup> = Api::<MySQLBackup>::namespaced(setup.client.clone(), NS)
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    assert_eq!(created.len(), 1, "{created:?}");
    let name = created[0].metadata.name.clone().unwrap();
    assert!(name.starts_with(&format!("{NAME}-")), "{name}");
    let backup = setup.check_artifact_and_status(&name, &job_name).await;
    assert_eq!(backup.spec.instance_ref.name, NAME);
    assert_eq!(
        backup
            .metadata
            .labels
            .clone()
            .unwrap_or_default()
            .get(keeper_crds::INSTANCE_LABEL)
            .map(String::as_str),
        Some(NAME)
    );
    assert!(
        backup
            .metadata
            .owner_references
            .unwrap_or_default()
            .is_empty(),
        "a backup outlives its Job and the instance"
    );
}

/// The scratch server as the verification pod's sidecar sets it up: the
/// image's `*_ALLOW_EMPTY_ROOT_PASSWORD` leaves root without a password.
fn throwaway_server() -> MariaDb {
    use mysql_async::prelude::Queryable;
    let server = MariaDb::start_with(keeper_tests::MariaDbOptions {
        extra_args: vec!["--skip-log-bin".into()],
        ..Default::default()
    })
    .unwrap();
    let opts = server.opts();
    std::thread::spawn(move || {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async move {
                let mut conn = mysql_async::Conn::new(opts).await.unwrap();
                for host in ["localhost", "127.0.0.1", "::1"] {
                    conn.query_drop(format!("ALTER USER 'root'@'{host}' IDENTIFIED BY ''"))
                        .await
                        .unwrap();
                }
                conn.disconnect().await.unwrap();
            })
    })
    .join()
    .unwrap();
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backups_verification_job_proves_it_and_the_instance_reports_the_proof() {
    let setup = setup().await;
    let backups = Api::<MySQLBackup>::namespaced(setup.client.clone(), NS);
    let job = setup.create_on_demand_backup().await;
    let job_name = job.metadata.name.clone().unwrap();
    setup.run_job(&job_name, job.spec.as_ref().unwrap()).await;

    // The user turns verification on: the newest success gets its proof Job.
    let instances = Api::<MySQLInstance>::namespaced(setup.client.clone(), NS);
    instances
        .patch(
            NAME,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"backup": {"verification": {}}}})),
        )
        .await
        .unwrap();
    let backup = backups.get(ON_DEMAND).await.unwrap();
    keeper_operator::backup_controller::reconcile(Arc::new(backup), setup.ctx.clone())
        .await
        .unwrap();
    let verify_job = keeper_operator::backup_controller::verification::job_name(ON_DEMAND);
    let job = Api::<Job>::namespaced(setup.client.clone(), NS)
        .get(&verify_job)
        .await
        .unwrap();

    // Its pod: the throwaway server beside the agent, which gets the Job's
    // args and env (no password of the instance: none is in its env).
    let scratch = throwaway_server();
    let (args, env) = common::resolve(
        &setup.client,
        NS,
        &verify_job,
        job.spec.as_ref().unwrap(),
        "127.0.0.1",
        &scratch,
    )
    .await;
    assert!(!env.contains_key("MYSQL_PWD"), "{env:?}");
    assert!(
        args.iter().all(|a| !a.contains(&setup.backup_password)),
        "{args:?}"
    );
    keeper_agent::run(
        args,
        AgentContext {
            env,
            kube: Some(setup.fake.agent(NS, NAME)),
        },
    )
    .await
    .unwrap_or_else(|e| panic!("the agent of Job {verify_job}: {e}"));

    let proof = backups
        .get(ON_DEMAND)
        .await
        .unwrap()
        .status
        .unwrap()
        .verification
        .expect("status.verification");
    assert_eq!(
        proof.phase,
        keeper_crds::VerificationPhase::Verified,
        "{proof:?}"
    );
    assert_eq!((proof.tables, proof.rows), (2, ROWS + 2));

    // The instance derives its last verified backup and the condition.
    let instance = instances.get(NAME).await.unwrap();
    keeper_operator::reconcile(Arc::new(instance), setup.ctx.clone())
        .await
        .unwrap();
    let status = instances.get(NAME).await.unwrap().status.unwrap();
    let last = status.last_verified_backup.expect("lastVerifiedBackup");
    assert_eq!((last.name.as_str(), last.rows), (ON_DEMAND, ROWS + 2));
    let condition =
        keeper_crds::condition::find_condition(&status.conditions, "BackupsVerified").unwrap();
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("True", "Verified")
    );

    // Proven once: a later look starts nothing.
    let backup = backups.get(ON_DEMAND).await.unwrap();
    keeper_operator::backup_controller::reconcile(Arc::new(backup), setup.ctx.clone())
        .await
        .unwrap();
    let jobs = Api::<Job>::namespaced(setup.client.clone(), NS)
        .list(&Default::default())
        .await
        .unwrap();
    assert_eq!(jobs.items.len(), 2, "the backup's Job and one proof");
}

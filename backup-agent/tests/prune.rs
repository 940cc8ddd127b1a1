//! Retention on real storage: the same scenarios on `file://` and on `s3://`
//! (Garage from the harness).

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use keeper_agent::AgentContext;
use keeper_agent::cli::S3Args;
use keeper_agent::manifest::{
    Consistency, FORMAT_VERSION, FileInfo, Flavor, InProgress, Manifest, ServerInfo, Snapshot,
};
use keeper_agent::prune::{PruneError, Removal, Rules, apply_rules_at};
use keeper_agent::storage::{Location, S3Settings, Store};
use keeper_tests::Garage;

fn manifest(name: &str, started: DateTime<Utc>) -> Bytes {
    let m = Manifest {
        format_version: FORMAT_VERSION,
        agent_version: "test".into(),
        name: name.into(),
        server: ServerInfo {
            flavor: Flavor::Mariadb,
            version: "10.11".into(),
        },
        started_at: started,
        finished_at: started + Duration::minutes(1),
        snapshot: Snapshot {
            consistency: Consistency::GlobalLock,
            lock_held_ms: Some(1),
            gtid_executed: None,
            binlog: None,
            note: None,
        },
        max_allowed_packet: 1 << 24,
        largest_statement: 0,
        databases: vec![],
        members: vec![],
        file: FileInfo {
            name: "dump.sql.gz".into(),
            size: 0,
            sha256: "0".repeat(64),
        },
    };
    Bytes::from(m.to_json().unwrap())
}

/// A location with: four good backups (10, 8, 5 and 2 days old), an
/// incomplete one (dump but no manifest and no marker, from a killed run),
/// a running one (fresh marker), and a folder that is not a backup.
async fn populate(store: &Store, now: DateTime<Utc>) {
    for (name, days) in [("b10", 10), ("b08", 8), ("b05", 5), ("b02", 2)] {
        store
            .put(&format!("{name}/dump.sql.gz"), Bytes::from_static(b"dump"))
            .await
            .unwrap();
        store
            .put(
                &format!("{name}/manifest.json"),
                manifest(name, now - Duration::days(days)),
            )
            .await
            .unwrap();
    }
    store
        .put("dead/dump.sql.gz", Bytes::from_static(b"half"))
        .await
        .unwrap();
    store
        .put("running/dump.sql.gz.partial", Bytes::from_static(b"part"))
        .await
        .unwrap();
    let marker = InProgress {
        started_at: now - Duration::minutes(20),
        refreshed_at: now - Duration::minutes(1),
        host: "agent-1".into(),
    };
    store
        .put(
            "running/in-progress.json",
            Bytes::from(serde_json::to_vec(&marker).unwrap()),
        )
        .await
        .unwrap();
    store
        .put("notes/readme.txt", Bytes::from_static(b"not a backup"))
        .await
        .unwrap();
}

async fn folders(store: &Store) -> Vec<String> {
    store.folders().await.unwrap()
}

/// Runs every scenario below a fresh child of `root`.
async fn scenarios(root: &Store) {
    // Objects are written now; an hour later the dead run is clearly
    // abandoned (its files are older than 15 minutes), while the running one
    // refreshed its marker a minute before.
    let now = Utc::now() + Duration::hours(1);
    let rules = |keep_last: Option<u32>, max_age: Option<Duration>| Rules { keep_last, max_age };
    let cases: [(&str, Rules, &[&str]); 4] = [
        ("keep-last", rules(Some(2), None), &["dead", "b10", "b08"]),
        (
            "max-age",
            rules(None, Some(Duration::days(6))),
            &["dead", "b10", "b08"],
        ),
        (
            "both",
            rules(Some(1), Some(Duration::days(9))),
            &["dead", "b10"],
        ),
        // Every good backup is older than an hour: the newest is kept anyway.
        (
            "newest-kept",
            rules(None, Some(Duration::hours(1))),
            &["dead", "b10", "b08", "b05"],
        ),
    ];
    for (case, rules, expected_removed) in cases {
        let store = root.child(case);
        populate(&store, now).await;
        let outcome = apply_rules_at(&store, rules, now).await.unwrap();
        let mut removed = outcome.removed_names();
        removed.sort();
        let mut expected: Vec<String> = expected_removed.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(removed, expected, "{case}");
        // The abandoned run is reported as incomplete, the others as expired.
        let dead = outcome.removed.iter().find(|r| r.name == "dead").unwrap();
        assert_eq!(dead.reason, Removal::Incomplete, "{case}");
        assert_eq!(dead.size, 4, "{case}");
        assert!(
            outcome
                .removed
                .iter()
                .filter(|r| r.name != "dead")
                .all(|r| r.reason == Removal::Expired),
            "{case}"
        );
        let mut left = folders(&store).await;
        left.sort();
        let mut want: Vec<String> = ["b10", "b08", "b05", "b02", "running", "notes"]
            .iter()
            .filter(|n| !expected_removed.contains(n))
            .map(|s| s.to_string())
            .collect();
        want.sort();
        assert_eq!(left, want, "{case}");
        assert!(outcome.kept.contains(&"running".to_owned()), "{case}");
        // A removed backup is entirely gone.
        for name in expected_removed {
            assert_eq!(
                store.size(&format!("{name}/manifest.json")).await.unwrap(),
                None
            );
        }
        // Pruning again with the same rules removes nothing more.
        let again = apply_rules_at(&store, rules, now).await.unwrap();
        assert!(again.removed.is_empty(), "{case}: {again:?}");
    }

    // A run that wrote moments ago without a marker yet is not touched.
    let store = root.child("young");
    store
        .put("fresh/dump.sql.gz", Bytes::from_static(b"x"))
        .await
        .unwrap();
    store
        .put(
            "old/manifest.json",
            manifest("old", Utc::now() - Duration::days(3)),
        )
        .await
        .unwrap();
    let outcome = apply_rules_at(&store, rules(Some(1), None), Utc::now())
        .await
        .unwrap();
    assert!(outcome.removed.is_empty(), "{outcome:?}");
}

#[tokio::test]
async fn retention_on_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &Location::File(dir.path().to_path_buf()),
        &S3Settings::default(),
    )
    .await
    .unwrap();
    scenarios(&store).await;
}

#[tokio::test]
async fn retention_on_s3() {
    let garage = Garage::start().unwrap();
    let env: HashMap<String, String> = garage
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let ctx = AgentContext { env, kube: None };
    let settings = S3Settings::from_ctx(
        &ctx,
        &S3Args {
            s3_force_path_style: true,
            s3_ca_bundle: None,
        },
    );
    let url = format!("s3://{}/prune", garage.bucket());
    let store = Store::open(&Location::parse(&url).unwrap(), &settings)
        .await
        .unwrap();
    scenarios(&store).await;
}

#[tokio::test]
async fn prune_command_needs_a_rule_and_removes_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let store = Store::open(&Location::parse(&url).unwrap(), &S3Settings::default())
        .await
        .unwrap();
    let now = Utc::now();
    for (name, days) in [("a", 3), ("b", 2), ("c", 1)] {
        store
            .put(
                &format!("{name}/manifest.json"),
                manifest(name, now - Duration::days(days)),
            )
            .await
            .unwrap();
    }

    let err = keeper_agent::run(
        ["keeper-agent", "prune", "--from", url.as_str()],
        AgentContext::default(),
    )
    .await
    .expect_err("no rule");
    let message = err.to_string();
    assert!(message.contains("--keep-last"), "{message}");
    assert!(matches!(
        err,
        keeper_agent::AgentError::Prune(PruneError::NoRule { .. })
    ));
    assert_eq!(folders(&store).await, ["a", "b", "c"]);

    keeper_agent::run(
        [
            "keeper-agent",
            "prune",
            "--from",
            url.as_str(),
            "--keep-last",
            "2",
        ],
        AgentContext::default(),
    )
    .await
    .unwrap();
    assert_eq!(folders(&store).await, ["b", "c"]);

    keeper_agent::run(
        [
            "keeper-agent",
            "prune",
            "--from",
            url.as_str(),
            "--max-age",
            "1h",
        ],
        AgentContext::default(),
    )
    .await
    .unwrap();
    assert_eq!(folders(&store).await, ["c"]);
}

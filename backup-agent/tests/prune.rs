//! Retention on real storage: the same scenarios on `file://` and on `s3://`
//! (Garage from the harness), always for one owner: other owners' backups,
//! backups without a recorded owner and pinned backups are never deleted.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use keeper_agent::AgentContext;
use keeper_agent::cli::S3Args;
use keeper_agent::manifest::{
    Consistency, FORMAT_VERSION, FileInfo, Flavor, InProgress, Manifest, ServerInfo, Snapshot,
};
use keeper_agent::owner::Owner;
use keeper_agent::repository::keep_policy::{DeleteReason, KeepPolicy, KeepReason};
use keeper_agent::repository::prune::{PruneError, Retention, apply_at};
use keeper_agent::storage::{Location, S3Settings, Store};
use keeper_tests::Garage;

const OWNER: &str = "shop/orders";
const OTHER: &str = "shop/billing";

fn owner(text: &str) -> Owner {
    text.parse().unwrap()
}

/// The manifest of a backup of `OWNER`.
fn manifest(name: &str, started: DateTime<Utc>) -> Bytes {
    manifest_of(name, started, Some(OWNER))
}

/// The manifest of a backup of `owner` (`None`: made before owners were recorded).
fn manifest_of(name: &str, started: DateTime<Utc>, owner_text: Option<&str>) -> Bytes {
    let m = Manifest {
        format_version: FORMAT_VERSION,
        agent_version: "test".into(),
        name: name.into(),
        owner: owner_text.map(owner),
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
        compression: None,
        file: FileInfo {
            name: "dump.sql.gz".into(),
            size: 0,
            sha256: "0".repeat(64),
        },
        differences: vec![],
    };
    Bytes::from(m.to_json().unwrap())
}

fn marker(owner_text: &str, refreshed: DateTime<Utc>) -> Bytes {
    let marker = InProgress {
        started_at: refreshed - Duration::minutes(20),
        refreshed_at: refreshed,
        host: "agent-1".into(),
        owner: Some(owner(owner_text)),
    };
    Bytes::from(serde_json::to_vec(&marker).unwrap())
}

async fn put(store: &Store, key: &str, body: Bytes) {
    store.put(key, body).await.unwrap();
}

/// A location shared by two instances and older backups. Of `OWNER`: four
/// good backups (10, 8, 5 and 2 days old), an incomplete one (its run was
/// killed: dump, stale marker, no manifest) and a running one (fresh
/// marker). Of `OTHER`: two good backups, older than all of them, and a
/// dead run. Without owner: a 30-day-old backup from before owners were
/// recorded, and a dump without marker. And a folder that is not a backup.
async fn populate(store: &Store, now: DateTime<Utc>) {
    for (name, days) in [("b10", 10), ("b08", 8), ("b05", 5), ("b02", 2)] {
        put(
            store,
            &format!("{name}/dump.sql.gz"),
            Bytes::from_static(b"dump"),
        )
        .await;
        put(
            store,
            &format!("{name}/manifest.json"),
            manifest(name, now - Duration::days(days)),
        )
        .await;
    }
    put(store, "dead/dump.sql.gz", Bytes::from_static(b"half")).await;
    put(
        store,
        "dead/in-progress.json",
        marker(OWNER, now - Duration::hours(2)),
    )
    .await;
    put(
        store,
        "running/dump.sql.gz.partial",
        Bytes::from_static(b"part"),
    )
    .await;
    put(
        store,
        "running/in-progress.json",
        marker(OWNER, now - Duration::minutes(1)),
    )
    .await;

    for (name, days) in [("other20", 20), ("other15", 15)] {
        put(
            store,
            &format!("{name}/manifest.json"),
            manifest_of(name, now - Duration::days(days), Some(OTHER)),
        )
        .await;
    }
    put(store, "otherdead/dump.sql.gz", Bytes::from_static(b"half")).await;
    put(
        store,
        "otherdead/in-progress.json",
        marker(OTHER, now - Duration::hours(2)),
    )
    .await;

    put(
        store,
        "legacy/manifest.json",
        manifest_of("legacy", now - Duration::days(30), None),
    )
    .await;
    put(store, "unmarked/dump.sql.gz", Bytes::from_static(b"half")).await;
    put(
        store,
        "notes/readme.txt",
        Bytes::from_static(b"not a backup"),
    )
    .await;
}

/// Every folder `populate` writes.
const ALL: [&str; 12] = [
    "b02",
    "b05",
    "b08",
    "b10",
    "dead",
    "legacy",
    "notes",
    "other15",
    "other20",
    "otherdead",
    "running",
    "unmarked",
];

async fn folders(store: &Store) -> Vec<String> {
    store.folders().await.unwrap()
}

fn retention(keep_last: Option<u32>, max_age: Option<&str>, who: Option<&str>) -> Retention {
    Retention {
        policy: KeepPolicy {
            keep_last,
            max_age: max_age.map(|a| a.parse().unwrap()),
        },
        owner: who.map(owner),
        object_pins: None,
    }
}

/// Runs every scenario below a fresh child of `root`.
async fn scenarios(root: &Store) {
    // Objects are written now; an hour later the dead runs are clearly
    // abandoned (markers two hours old, files older than 15 minutes), while
    // the running one refreshed its marker a minute before.
    let now = Utc::now() + Duration::hours(1);
    let cases: [(&str, Retention, &[&str]); 5] = [
        (
            "keep-last",
            retention(Some(2), None, Some(OWNER)),
            &["dead", "b10", "b08"],
        ),
        (
            "max-age",
            retention(None, Some("6d"), Some(OWNER)),
            &["dead", "b10", "b08"],
        ),
        (
            "both",
            retention(Some(1), Some("9d"), Some(OWNER)),
            &["dead", "b10"],
        ),
        // Every good backup is older than an hour: the newest is kept anyway.
        (
            "newest-kept",
            retention(None, Some("1h"), Some(OWNER)),
            &["dead", "b10", "b08", "b05"],
        ),
        // A name without namespace matches the name part.
        (
            "by-name",
            retention(Some(2), None, Some("orders")),
            &["dead", "b10", "b08"],
        ),
    ];
    for (case, retention, expected_removed) in cases {
        let store = root.child(case);
        populate(&store, now).await;
        let outcome = apply_at(&store, &retention, now).await.unwrap();
        assert_eq!(outcome.owner, Some(owner(OWNER)), "{case}");
        let mut removed = outcome.removed_names();
        removed.sort();
        let mut expected: Vec<String> = expected_removed.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(removed, expected, "{case}");
        // The abandoned run is reported as incomplete, the others as expired.
        let dead = outcome.removed.iter().find(|r| r.name == "dead").unwrap();
        assert_eq!(dead.reason, DeleteReason::Incomplete, "{case}");
        assert!(dead.size > 4, "{case}: dump and marker: {dead:?}");
        assert!(
            outcome
                .removed
                .iter()
                .filter(|r| r.name != "dead")
                .all(|r| r.reason == DeleteReason::Expired),
            "{case}"
        );
        // Nothing of another owner, nothing without an owner, nothing that
        // is not a backup was touched.
        let left = folders(&store).await;
        let want: Vec<String> = ALL
            .iter()
            .filter(|n| !expected_removed.contains(n))
            .map(|s| s.to_string())
            .collect();
        assert_eq!(left, want, "{case}");
        let mut other = outcome.other_owners.clone();
        other.sort();
        assert_eq!(other, ["other15", "other20", "otherdead"], "{case}");
        assert_eq!(outcome.unowned, ["legacy", "unmarked"], "{case}");
        // Every backup kept says why.
        let kept = |name: &str| {
            outcome
                .kept
                .iter()
                .find(|k| k.name == name)
                .map(|k| k.reasons.clone())
        };
        // Every reason that holds is reported: a running backup may also be
        // younger than max-age.
        assert_eq!(
            kept("running").map(|r| r[0]),
            Some(KeepReason::Running),
            "{case}"
        );
        assert!(
            kept("b02").unwrap().contains(&KeepReason::NewestGood),
            "{case}"
        );
        let lines = outcome.lines().join("\n");
        assert!(
            lines.contains("kept b02 (the newest good backup"),
            "{case}: {lines}"
        );
        assert!(
            lines.contains("kept legacy (no recorded owner"),
            "{case}: {lines}"
        );
        assert!(
            lines.contains("removed dead (incomplete"),
            "{case}: {lines}"
        );
        // A removed backup is entirely gone.
        for name in expected_removed {
            assert_eq!(
                store.size(&format!("{name}/manifest.json")).await.unwrap(),
                None
            );
        }
        // Pruning again with the same rules removes nothing more.
        let again = apply_at(&store, &retention, now).await.unwrap();
        assert!(again.removed.is_empty(), "{case}: {again:?}");
    }

    // The other owner's retention takes only its own.
    let store = root.child("other");
    populate(&store, now).await;
    let outcome = apply_at(&store, &retention(Some(1), None, Some(OTHER)), now)
        .await
        .unwrap();
    let mut removed = outcome.removed_names();
    removed.sort();
    assert_eq!(removed, ["other20", "otherdead"]);

    // Pinned backups survive keep-last and max-age; a pin does not count
    // towards keep-last.
    let store = root.child("pinned");
    populate(&store, now).await;
    put(&store, "b10/keep.json", Bytes::from_static(b"{}")).await;
    put(&store, "b05/keep.json", Bytes::from_static(b"{}")).await;
    let outcome = apply_at(&store, &retention(Some(1), Some("1h"), Some(OWNER)), now)
        .await
        .unwrap();
    let mut removed = outcome.removed_names();
    removed.sort();
    assert_eq!(removed, ["b08", "dead"]);
    let b10 = outcome.kept.iter().find(|k| k.name == "b10").unwrap();
    assert_eq!(b10.reasons, [KeepReason::Pinned]);

    // Without an owner: the only owner at the location, or a refusal.
    let store = root.child("no-owner");
    populate(&store, now).await;
    let err = apply_at(&store, &retention(Some(1), None, None), now)
        .await
        .unwrap_err();
    assert!(matches!(err, PruneError::SeveralOwners { .. }), "{err}");
    assert!(err.to_string().contains("--instance"), "{err}");
    assert!(err.to_string().contains(OTHER), "{err}");
    assert_eq!(folders(&store).await.len(), ALL.len(), "nothing removed");
    // A name that matches two namespaces' owners is refused too.
    put(
        &store,
        "test-orders/manifest.json",
        manifest_of("test-orders", now - Duration::days(40), Some("test/orders")),
    )
    .await;
    let err = apply_at(&store, &retention(Some(1), None, Some("orders")), now)
        .await
        .unwrap_err();
    assert!(matches!(err, PruneError::AmbiguousOwner { .. }), "{err}");

    // A run that wrote moments ago without a marker yet is not touched.
    let store = root.child("young");
    put(&store, "fresh/dump.sql.gz", Bytes::from_static(b"x")).await;
    put(
        &store,
        "old/manifest.json",
        manifest("old", Utc::now() - Duration::days(3)),
    )
    .await;
    let outcome = apply_at(&store, &retention(Some(1), None, Some(OWNER)), Utc::now())
        .await
        .unwrap();
    assert!(outcome.removed.is_empty(), "{outcome:?}");

    // Only backups from before owners were recorded: nothing to act on,
    // and each is listed.
    let store = root.child("legacy-only");
    for (name, days) in [("l1", 9), ("l2", 8), ("l3", 7)] {
        put(
            &store,
            &format!("{name}/manifest.json"),
            manifest_of(name, now - Duration::days(days), None),
        )
        .await;
    }
    for who in [None, Some(OWNER)] {
        let outcome = apply_at(&store, &retention(Some(1), Some("1h"), who), now)
            .await
            .unwrap();
        assert!(outcome.removed.is_empty(), "{outcome:?}");
        assert_eq!(outcome.unowned, ["l1", "l2", "l3"]);
    }
    assert_eq!(folders(&store).await, ["l1", "l2", "l3"]);

    // A removal that stopped half-way (manifest gone, removing.json left)
    // is finished by the owner's next run, and only by the owner's.
    let store = root.child("half-removed");
    put(
        &store,
        "new/manifest.json",
        manifest("new", now - Duration::days(1)),
    )
    .await;
    put(&store, "half/dump.sql.gz", Bytes::from_static(b"dump")).await;
    let removing =
        serde_json::json!({"startedAt": (now - Duration::hours(1)).to_rfc3339(), "owner": OWNER});
    put(
        &store,
        "half/removing.json",
        Bytes::from(removing.to_string()),
    )
    .await;
    let outcome = apply_at(&store, &retention(Some(5), None, Some(OTHER)), now)
        .await
        .unwrap();
    assert!(outcome.removed.is_empty(), "{outcome:?}");
    let outcome = apply_at(&store, &retention(Some(5), None, Some(OWNER)), now)
        .await
        .unwrap();
    assert_eq!(outcome.removed_names(), ["half"]);
    assert_eq!(folders(&store).await, ["new"]);
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
        put(
            &store,
            &format!("{name}/manifest.json"),
            manifest(name, now - Duration::days(days)),
        )
        .await;
    }
    let prune = |extra: &[&str]| {
        let mut args = vec!["keeper-agent", "prune", "--from", url.as_str()];
        args.extend_from_slice(extra);
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        async move { keeper_agent::run(args, AgentContext::default()).await }
    };

    let err = prune(&[]).await.expect_err("no rule");
    let message = err.to_string();
    assert!(message.contains("--keep-last"), "{message}");
    assert!(matches!(
        err,
        keeper_agent::AgentError::Prune(PruneError::NoRule { .. })
    ));
    assert_eq!(folders(&store).await, ["a", "b", "c"]);

    let err = prune(&["--keep-last", "1", "--instance", "a/b/c"])
        .await
        .expect_err("bad owner");
    assert!(err.to_string().contains("[NAMESPACE/]NAME"), "{err}");

    // Another owner's name: nothing of ours is touched.
    prune(&["--keep-last", "1", "--instance", OTHER])
        .await
        .unwrap();
    assert_eq!(folders(&store).await, ["a", "b", "c"]);

    prune(&["--keep-last", "2", "--instance", OWNER])
        .await
        .unwrap();
    assert_eq!(folders(&store).await, ["b", "c"]);

    // Without --instance: the only owner here.
    prune(&["--max-age", "1h"]).await.unwrap();
    assert_eq!(folders(&store).await, ["c"]);
}

#[tokio::test]
async fn pins_by_hand_survive_prune_until_unpinned() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let store = Store::open(&Location::parse(&url).unwrap(), &S3Settings::default())
        .await
        .unwrap();
    let now = Utc::now();
    for (name, days) in [("a", 30), ("b", 20), ("c", 1)] {
        put(
            &store,
            &format!("{name}/manifest.json"),
            manifest(name, now - Duration::days(days)),
        )
        .await;
    }
    let agent = |args: Vec<String>| async move {
        let mut argv = vec!["keeper-agent".to_owned()];
        argv.extend(args);
        keeper_agent::run(argv, AgentContext::default()).await
    };
    let folder = |name: &str| format!("{url}/{name}");
    agent(vec!["pin".into(), "--from".into(), folder("a")])
        .await
        .unwrap();
    assert!(store.size("a/keep.json").await.unwrap().is_some());
    // Pinning what is not a backup is a mistake, said clearly.
    let err = agent(vec!["pin".into(), "--from".into(), folder("nothing")])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("holds no backup"), "{err}");

    let prune = || {
        agent(
            [
                "prune",
                "--from",
                url.as_str(),
                "--keep-last",
                "1",
                "--max-age",
                "1d",
                "--instance",
                OWNER,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        )
    };
    prune().await.unwrap();
    assert_eq!(folders(&store).await, ["a", "c"]);

    agent(vec!["unpin".into(), "--from".into(), folder("a")])
        .await
        .unwrap();
    prune().await.unwrap();
    assert_eq!(folders(&store).await, ["c"]);
}

/// `verification.json` beside an artifact (written by `verify --restore`):
/// the newest verified backup is kept although keep-last would drop it; a
/// failed proof keeps nothing, and the record goes with its folder.
#[tokio::test]
async fn the_newest_verified_backup_survives_retention() {
    use keeper_agent::manifest::{VerificationRecord, VerificationResult};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &Location::parse(&format!("file://{}", dir.path().display())).unwrap(),
        &S3Settings::default(),
    )
    .await
    .unwrap();
    let now = Utc::now();
    for (name, days) in [("b10", 10), ("b08", 8), ("b05", 5), ("b02", 2)] {
        put(
            &store,
            &format!("{name}/dump.sql.gz"),
            Bytes::from_static(b"dump"),
        )
        .await;
        put(
            &store,
            &format!("{name}/manifest.json"),
            manifest(name, now - Duration::days(days)),
        )
        .await;
    }
    let record = |result| {
        Bytes::from(
            serde_json::to_vec(&VerificationRecord {
                result,
                verified_at: now,
                tables: 1,
                rows: 1,
                definitions: 1,
                duration_seconds: 1.0,
                complete: true,
                differences: vec![],
                agent_version: "test".into(),
            })
            .unwrap(),
        )
    };
    put(
        &store,
        "b10/verification.json",
        record(VerificationResult::Verified),
    )
    .await;
    put(
        &store,
        "b08/verification.json",
        record(VerificationResult::Verified),
    )
    .await;
    put(
        &store,
        "b05/verification.json",
        record(VerificationResult::Failed),
    )
    .await;

    let outcome = apply_at(&store, &retention(Some(1), None, Some(OWNER)), now)
        .await
        .unwrap();
    let kept = |name: &str| {
        outcome
            .kept
            .iter()
            .find(|k| k.name == name)
            .map(|k| k.reasons.clone())
    };
    assert_eq!(
        kept("b02"),
        Some(vec![
            KeepReason::NewestGood,
            KeepReason::WithinCount {
                rank: 1,
                keep_last: 1
            }
        ])
    );
    assert_eq!(kept("b08"), Some(vec![KeepReason::NewestVerified]));
    assert_eq!(folders(&store).await, ["b02", "b08"]);
    assert!(!dir.path().join("b10/verification.json").exists());
}

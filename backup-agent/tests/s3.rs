//! `s3://` storage against a real Garage store from the harness: object
//! round trips, real multipart uploads, aborts and failures that leave
//! nothing behind, clear errors without secrets, and orphan cleanup.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use bytes::Bytes;
use chrono::{Duration, Utc};
use keeper_agent::AgentContext;
use keeper_agent::cli::S3Args;
use keeper_agent::manifest::InProgress;
use keeper_agent::owner::Owner;
use keeper_agent::repository::orphans::abort_orphaned_uploads;
use keeper_agent::storage::{Location, S3Settings, StorageError, Store, s3};
use keeper_tests::Garage;

const MIB: usize = 1 << 20;

fn settings_with(garage: &Garage, overrides: &[(&str, &str)]) -> S3Settings {
    let mut env: HashMap<String, String> = garage
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    for (k, v) in overrides {
        env.insert((*k).to_owned(), (*v).to_owned());
    }
    let ctx = AgentContext { env, kube: None };
    S3Settings::from_ctx(
        &ctx,
        &S3Args {
            s3_force_path_style: true,
            s3_ca_bundle: None,
        },
    )
}

async fn open(garage: &Garage, prefix: &str) -> Store {
    let url = format!("s3://{}/{prefix}", garage.bucket());
    Store::open(&Location::parse(&url).unwrap(), &settings_with(garage, &[]))
        .await
        .unwrap()
}

async fn open_err(garage: &Garage, bucket: &str, overrides: &[(&str, &str)]) -> String {
    let url = format!("s3://{bucket}/x");
    let err = Store::open(
        &Location::parse(&url).unwrap(),
        &settings_with(garage, overrides),
    )
    .await
    .expect_err("must not connect");
    err.to_string()
}

/// Deterministic, incompressible-looking bytes.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

async fn pending_uploads(garage: &Garage) -> Vec<String> {
    let out = garage
        .client()
        .list_multipart_uploads()
        .bucket(garage.bucket())
        .send()
        .await
        .unwrap();
    out.uploads()
        .iter()
        .filter_map(|u| u.key().map(str::to_owned))
        .collect()
}

async fn object_exists(garage: &Garage, key: &str) -> bool {
    garage
        .client()
        .head_object()
        .bucket(garage.bucket())
        .key(key)
        .send()
        .await
        .is_ok()
}

#[tokio::test]
async fn objects_round_trip() {
    let garage = Garage::start().unwrap();
    let store = open(&garage, "rt/base").await;

    store
        .put("b1/manifest.json", Bytes::from_static(b"{\"a\":1}"))
        .await
        .unwrap();
    store
        .put("b1/sub/x.bin", Bytes::from(pattern(1000, 1)))
        .await
        .unwrap();
    store
        .put("b2/manifest.json", Bytes::from_static(b"two"))
        .await
        .unwrap();
    // Outside the store's prefix: must never show up in its listings.
    garage
        .client()
        .put_object()
        .bucket(garage.bucket())
        .key("rt/base-other/y")
        .body(Bytes::from_static(b"no").into())
        .send()
        .await
        .unwrap();

    assert_eq!(
        store.get("b1/manifest.json").await.unwrap(),
        &b"{\"a\":1}"[..]
    );
    // Stored under the prefix in the bucket.
    assert!(object_exists(&garage, "rt/base/b1/manifest.json").await);
    let range = store.get_range("b1/sub/x.bin", 100, 50).await.unwrap();
    assert_eq!(range, &pattern(1000, 1)[100..150]);
    // A range running past the end is cut short; one starting past it is empty.
    assert_eq!(
        store.get_range("b1/sub/x.bin", 990, 50).await.unwrap(),
        &pattern(1000, 1)[990..]
    );
    assert!(
        store
            .get_range("b1/sub/x.bin", 5000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.size("b1/sub/x.bin").await.unwrap(), Some(1000));
    assert_eq!(store.size("nope").await.unwrap(), None);
    assert!(matches!(
        store.get("nope").await,
        Err(StorageError::NotFound { .. })
    ));
    assert!(matches!(
        store.get_range("nope", 0, 1).await,
        Err(StorageError::NotFound { .. })
    ));

    let keys: Vec<String> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        keys,
        ["b1/manifest.json", "b1/sub/x.bin", "b2/manifest.json"]
    );
    let listed = store.list().await.unwrap();
    assert!(listed.iter().all(|o| o.modified.is_some()));
    assert_eq!(listed[1].size, 1000);
    assert_eq!(store.folders().await.unwrap(), ["b1", "b2"]);

    // A child store sees its own folder, with the same connection.
    let child = store.child("b1");
    assert_eq!(
        child.location().to_string(),
        format!("s3://{}/rt/base/b1", garage.bucket())
    );
    assert_eq!(child.size("sub/x.bin").await.unwrap(), Some(1000));

    store.delete("b2/manifest.json").await.unwrap();
    store.delete("b2/manifest.json").await.unwrap();
    store.delete_folder("b1").await.unwrap();
    assert!(store.list().await.unwrap().is_empty());
    assert!(object_exists(&garage, "rt/base-other/y").await);
}

#[tokio::test]
async fn many_objects_list_and_delete_across_pages() {
    let garage = Garage::start().unwrap();
    let store = open(&garage, "many").await;
    // More than one listing page (1000 keys) and one DeleteObjects batch.
    let count = 1100;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let store = store.clone();
        tasks.spawn(async move {
            store
                .put(&format!("f/{i:05}"), Bytes::from_static(b"x"))
                .await
        });
        if tasks.len() >= 32 {
            tasks.join_next().await.unwrap().unwrap().unwrap();
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap().unwrap();
    }
    assert_eq!(store.list().await.unwrap().len(), count);
    store.delete_folder("f").await.unwrap();
    assert!(store.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn multipart_upload_round_trips_byte_for_byte() {
    let garage = Garage::start().unwrap();
    let store = open(&garage, "mp").await;
    // 12 MiB and a bit: three parts of 5, 5 and 2+ MiB, written in odd chunks.
    let data = pattern(12 * MIB + 12_345, 7);
    let mut upload = store.create_upload("b/dump.sql.gz").await.unwrap();
    for chunk in data.chunks(MIB + 7) {
        upload.write(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    // Nothing is visible before the upload completes.
    assert_eq!(store.size("b/dump.sql.gz").await.unwrap(), None);
    let size = upload.finish().await.unwrap();
    assert_eq!(size, data.len() as u64);

    assert_eq!(store.get("b/dump.sql.gz").await.unwrap(), &data[..]);
    let head = garage
        .client()
        .head_object()
        .bucket(garage.bucket())
        .key("mp/b/dump.sql.gz")
        .send()
        .await
        .unwrap();
    let etag = head
        .e_tag()
        .unwrap_or_default()
        .trim_matches('"')
        .to_owned();
    assert!(etag.ends_with("-3"), "a 3-part upload's ETag, got {etag}");
    // A ranged read across a part boundary.
    let across = store
        .get_range("b/dump.sql.gz", 5 * MIB as u64 - 10, 20)
        .await
        .unwrap();
    assert_eq!(across, &data[5 * MIB - 10..5 * MIB + 10]);
    assert!(pending_uploads(&garage).await.is_empty());
}

#[tokio::test]
async fn small_and_empty_uploads_use_one_put() {
    let garage = Garage::start().unwrap();
    let store = open(&garage, "small").await;
    let mut upload = store.create_upload("a/dump.sql.gz").await.unwrap();
    upload.write(Bytes::from_static(b"hello ")).await.unwrap();
    upload.write(Bytes::from_static(b"world")).await.unwrap();
    assert_eq!(upload.finish().await.unwrap(), 11);
    assert_eq!(
        store.get("a/dump.sql.gz").await.unwrap(),
        &b"hello world"[..]
    );

    let upload = store.create_upload("a/empty").await.unwrap();
    assert_eq!(upload.finish().await.unwrap(), 0);
    assert_eq!(store.size("a/empty").await.unwrap(), Some(0));
    assert!(pending_uploads(&garage).await.is_empty());
}

#[tokio::test]
async fn aborted_and_dropped_uploads_leave_nothing() {
    let garage = Garage::start().unwrap();
    let store = open(&garage, "ab").await;

    let mut upload = store.create_upload("x/dump.sql.gz").await.unwrap();
    upload
        .write(Bytes::from(pattern(11 * MIB, 3)))
        .await
        .unwrap();
    assert_eq!(pending_uploads(&garage).await.len(), 1);
    upload.abort().await.unwrap();
    assert!(pending_uploads(&garage).await.is_empty());
    assert!(!object_exists(&garage, "ab/x/dump.sql.gz").await);

    // Dropped unfinished (a cancelled backup task): aborted in the background.
    let mut upload = store.create_upload("y/dump.sql.gz").await.unwrap();
    upload
        .write(Bytes::from(pattern(11 * MIB, 4)))
        .await
        .unwrap();
    assert_eq!(pending_uploads(&garage).await.len(), 1);
    drop(upload);
    s3::wait_for_pending_aborts(std::time::Duration::from_secs(30)).await;
    assert!(pending_uploads(&garage).await.is_empty());
    assert!(!object_exists(&garage, "ab/y/dump.sql.gz").await);
}

#[tokio::test]
async fn failed_upload_is_aborted_and_leaves_nothing() {
    let garage = Garage::start().unwrap();
    let store = open(&garage, "fail").await;
    let mut upload = store.create_upload("z/dump.sql.gz").await.unwrap();
    upload
        .write(Bytes::from(pattern(6 * MIB, 5)))
        .await
        .unwrap();
    // Someone (a lifecycle rule, an operator) aborts the upload under us:
    // the next part fails, and the agent must fail cleanly.
    let client = garage.client();
    let listed = client
        .list_multipart_uploads()
        .bucket(garage.bucket())
        .send()
        .await
        .unwrap();
    let pending = &listed.uploads()[0];
    client
        .abort_multipart_upload()
        .bucket(garage.bucket())
        .key(pending.key().unwrap())
        .upload_id(pending.upload_id().unwrap())
        .send()
        .await
        .unwrap();
    let mut result = upload.write(Bytes::from(pattern(12 * MIB, 6))).await;
    if result.is_ok() {
        result = upload.finish().await.map(|_| ());
    } else {
        drop(upload);
    }
    let message = result.expect_err("the upload must fail").to_string();
    assert!(message.contains("fail/z/dump.sql.gz"), "{message}");
    assert!(message.contains(&garage.endpoint()), "{message}");
    assert!(pending_uploads(&garage).await.is_empty());
    assert!(!object_exists(&garage, "fail/z/dump.sql.gz").await);
}

#[tokio::test]
async fn connection_errors_name_bucket_and_endpoint_but_never_the_secret() {
    let garage = Garage::start().unwrap();
    let secret = garage.secret_access_key().to_owned();
    let wrong_secret = "f".repeat(64);

    let message = open_err(&garage, "no-such-bucket", &[]).await;
    assert!(message.contains("no-such-bucket"), "{message}");
    assert!(message.contains(&garage.endpoint()), "{message}");
    assert!(message.contains("does not exist"), "{message}");

    let message = open_err(
        &garage,
        garage.bucket(),
        &[("AWS_SECRET_ACCESS_KEY", &wrong_secret)],
    )
    .await;
    assert!(message.contains(garage.bucket()), "{message}");
    assert!(message.contains(&garage.endpoint()), "{message}");
    assert!(message.contains("AWS_SECRET_ACCESS_KEY"), "{message}");
    assert!(!message.contains(&wrong_secret), "{message}");
    assert!(!message.contains(&secret), "{message}");

    let message = open_err(
        &garage,
        garage.bucket(),
        &[("AWS_ACCESS_KEY_ID", "GK000000000000000000000000")],
    )
    .await;
    assert!(message.contains(garage.bucket()), "{message}");
    assert!(message.contains(&garage.endpoint()), "{message}");
    assert!(message.contains("credentials"), "{message}");
    assert!(!message.contains(&secret), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
}

#[tokio::test]
async fn unreachable_endpoint_is_a_clear_error() {
    let garage = Garage::start().unwrap();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let message = open_err(&garage, "some-bucket", &[("AWS_ENDPOINT_URL", &endpoint)]).await;
    assert!(message.contains("cannot reach"), "{message}");
    assert!(message.contains(&endpoint), "{message}");
    assert!(message.contains("some-bucket"), "{message}");
    assert!(!message.contains(garage.secret_access_key()), "{message}");
    assert_eq!(message.lines().count(), 1, "{message}");
}

const OWNER: &str = "shop/orders";

fn owner() -> Owner {
    OWNER.parse().unwrap()
}

fn marker(refreshed: chrono::DateTime<Utc>) -> Bytes {
    marker_of(refreshed, Some(OWNER))
}

/// The in-progress marker of a run of `owner` (`None`: an agent from before
/// owners were recorded).
fn marker_of(refreshed: chrono::DateTime<Utc>, owner: Option<&str>) -> Bytes {
    Bytes::from(
        serde_json::to_vec(&InProgress {
            started_at: refreshed - Duration::minutes(30),
            refreshed_at: refreshed,
            host: "agent-0".into(),
            owner: owner.map(|o| o.parse().unwrap()),
        })
        .unwrap(),
    )
}

#[tokio::test]
async fn orphan_cleanup_aborts_only_the_owners_dead_uploads() {
    let garage = Garage::start().unwrap();
    let store = open(&garage, "orph").await;
    let client = garage.client();
    let folders = ["unmarked", "live", "stale", "done", "other", "legacy"];
    for folder in folders {
        client
            .create_multipart_upload()
            .bucket(garage.bucket())
            .key(format!("orph/{folder}/dump.sql.gz"))
            .send()
            .await
            .unwrap();
    }
    // A running backup refreshed its marker a minute ago; another's marker is
    // an hour old (its agent was killed); a complete one has a manifest.
    // Another instance's run died too, and so did one of an agent from
    // before owners were recorded; one upload has no marker at all.
    let hour_ago = Utc::now() - Duration::hours(1);
    for (folder, body) in [
        ("live", marker(Utc::now() - Duration::minutes(1))),
        ("stale", marker(hour_ago)),
        ("other", marker_of(hour_ago, Some("shop/billing"))),
        ("legacy", marker_of(hour_ago, None)),
    ] {
        store
            .put(&format!("{folder}/in-progress.json"), body)
            .await
            .unwrap();
    }
    store
        .put("done/manifest.json", Bytes::from_static(b"{}"))
        .await
        .unwrap();

    // Too young for the threshold: nothing happens.
    let aborted = abort_orphaned_uploads(&store, &owner(), Duration::hours(1), Utc::now())
        .await
        .unwrap();
    assert!(aborted.is_empty(), "{aborted:?}");
    assert_eq!(pending_uploads(&garage).await.len(), folders.len());

    // Only the owner's dead run is aborted: never a live one, another
    // owner's, or one whose owner cannot be told.
    let aborted = abort_orphaned_uploads(&store, &owner(), Duration::zero(), Utc::now())
        .await
        .unwrap();
    assert_eq!(aborted, ["stale/dump.sql.gz"]);
    let mut left = pending_uploads(&garage).await;
    left.sort();
    assert_eq!(
        left,
        [
            "orph/done/dump.sql.gz",
            "orph/legacy/dump.sql.gz",
            "orph/live/dump.sql.gz",
            "orph/other/dump.sql.gz",
            "orph/unmarked/dump.sql.gz",
        ]
    );
    // The other owner's cleanup takes its own.
    let billing: Owner = "shop/billing".parse().unwrap();
    let aborted = abort_orphaned_uploads(&store, &billing, Duration::zero(), Utc::now())
        .await
        .unwrap();
    assert_eq!(aborted, ["other/dump.sql.gz"]);
}

#[tokio::test]
async fn orphan_cleanup_on_files_removes_stale_partials_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &Location::File(dir.path().to_path_buf()),
        &S3Settings::default(),
    )
    .await
    .unwrap();
    for folder in ["dead", "live", "unmarked"] {
        store
            .put(
                &format!("{folder}/dump.sql.gz.partial"),
                Bytes::from_static(b"part"),
            )
            .await
            .unwrap();
    }
    store
        .put("live/in-progress.json", marker(Utc::now()))
        .await
        .unwrap();
    store
        .put(
            "dead/in-progress.json",
            marker(Utc::now() - Duration::hours(1)),
        )
        .await
        .unwrap();
    let aborted = abort_orphaned_uploads(&store, &owner(), Duration::zero(), Utc::now())
        .await
        .unwrap();
    assert_eq!(aborted, ["dead/dump.sql.gz"]);
    assert!(
        store
            .size("unmarked/dump.sql.gz.partial")
            .await
            .unwrap()
            .is_some(),
        "an upload whose owner cannot be told stays"
    );
    assert_eq!(store.size("dead/dump.sql.gz.partial").await.unwrap(), None);
    assert!(
        store
            .size("live/dump.sql.gz.partial")
            .await
            .unwrap()
            .is_some()
    );
}

//! No orphaned multipart uploads (issue 24): a run killed (SIGKILL) while a
//! table partition is going up in parts leaves the upload open on the
//! bucket, where object stores keep (and bill) it forever; the next run of
//! that period aborts it. Against the in-process S3 server of
//! `tests/it/s3.rs`, whose `s3s-fs` keeps each open upload as files at its
//! root (`.upload-<id>.json` and `.upload_id-<id>.part-<n>`), removed only
//! by a completion or an abort: that is the evidence the tests read.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::path::Path as KeyPath;
use object_store::{ObjectStore, ObjectStoreExt};

use segments::config::Config;
use segments::run::{self, RunError};
use segments::storage::fault::{CallKind, FAULTS_ENV, Faults, Rule};
use segments::warehouse::lease::LeaseError;

use super::s3::{SECRET_KEY, s3_command, segments_s3, setup};
use super::{
    assert_same_tables, block, local_tables, ok, options, run_args, stderr,
    store_tables as s3_tables,
};

/// The folder of the 2024-06 run records under the `wh` prefix.
const RUNS: &str = "wh/rfm_monthly/_runs/period=2024-06";

/// The upload records (`_upload-*.json`) in the 2024-06 run folder.
async fn upload_records(store: &Arc<dyn ObjectStore>) -> Vec<String> {
    records_in(store, RUNS).await
}

/// The upload records in a run folder.
async fn records_in(store: &Arc<dyn ObjectStore>, folder: &str) -> Vec<String> {
    let metas: Vec<_> = store
        .list(Some(&KeyPath::from(folder)))
        .try_collect()
        .await
        .unwrap();
    metas
        .into_iter()
        .map(|m| m.location.to_string())
        .filter(|k| k.rsplit('/').next().unwrap().starts_with("_upload-"))
        .collect()
}

/// The upload id of the `snapshots` partition's upload, when it is
/// recorded and the server has a part of it (`open_uploads`: the names of
/// the server's files of open uploads).
async fn held_upload(store: &Arc<dyn ObjectStore>, open_uploads: &[String]) -> Option<String> {
    for record in upload_records(store).await {
        let Ok(found) = store.get(&KeyPath::from(record.as_str())).await else {
            continue;
        };
        let body: serde_json::Value = serde_json::from_slice(&found.bytes().await.ok()?).ok()?;
        let id = body["upload_id"].as_str()?;
        if body["key"] == "rfm_monthly/snapshots/period=2024-06/part-0.parquet"
            && open_uploads
                .iter()
                .any(|name| name.starts_with(&format!(".upload_id-{id}.part-")))
        {
            return Some(id.to_string());
        }
    }
    None
}

/// A run of `segments run` killed with SIGKILL while the `snapshots`
/// partition's multipart upload is open (a fault of the binary's own,
/// through `SEGMENTS_TEST_STORAGE_FAULTS`, holds its completion for two
/// minutes, after its part is on the server) leaves the upload open and its
/// record in the run folder. The next run of the period aborts it (the
/// server has no open upload left, and no record is left), logs it without
/// a secret, and publishes the tables of a clean run.
#[test]
fn s3_upload_left_open_by_a_killed_run_is_aborted_by_the_next_run() {
    let setup = setup();
    setup.local_runs(&["2024-06"]);
    let expected = local_tables(&setup.local_warehouse);
    let config = setup.config("uploads.yaml", "wh", "  multipart_threshold: 1KiB\n", false);
    let args = run_args(&config, "2024-06");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let store = setup.warehouse_store();

    let mut child = s3_command(setup.dir.path(), &args, SECRET_KEY)
        .env(FAULTS_ENV, "delay=120s:complete:1:/snapshots/")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the held upload: recorded, open on the server with a part.
    let started = Instant::now();
    let upload_id = loop {
        if let Some(id) = block(held_upload(&store, &setup.server.open_uploads())) {
            break id;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its upload was held"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no held upload after 120s: {:?}",
            setup.server.open_uploads()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();

    // The upload is open on the server, with its part, and recorded.
    let left = setup.server.open_uploads();
    assert!(
        left.contains(&format!(".upload-{upload_id}.json")),
        "the kill left no open upload: {left:?}"
    );
    assert_eq!(
        block(upload_records(&store)).len(),
        1,
        "{:?}",
        block(upload_records(&store))
    );
    assert!(
        !block(s3_tables(&store, "wh"))
            .keys()
            .any(|k| k.ends_with("_SUCCESS")),
        "the killed run published"
    );

    // The next run of the period, as a CronJob retry: it waits out the dead
    // run's lease (2s), then takes it and aborts the upload.
    let deadline = Instant::now() + Duration::from_secs(30);
    let output = loop {
        let output = s3_command(setup.dir.path(), &args, SECRET_KEY)
            .env("RUST_LOG", "info")
            .output()
            .unwrap();
        if output.status.success() {
            break output;
        }
        assert!(
            stderr(&output).contains("being published by another run") && Instant::now() < deadline,
            "rerun failed: {}",
            stderr(&output)
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    ok(&output, "rerun");
    let log = stderr(&output);
    assert!(
        log.contains("Aborted a multipart upload left open") && log.contains(&upload_id),
        "{log}"
    );
    assert!(!log.contains(SECRET_KEY), "{log}");
    assert!(
        setup.server.open_uploads().is_empty(),
        "the rerun left the killed run's upload open: {:?}",
        setup.server.open_uploads()
    );
    assert!(block(upload_records(&store)).is_empty());
    assert_same_tables(&expected, &block(s3_tables(&store, "wh")));

    // A clean rerun has nothing to abort and leaves nothing open.
    ok(
        &segments_s3(setup.dir.path(), &args, SECRET_KEY),
        "clean rerun",
    );
    assert!(setup.server.open_uploads().is_empty());
    assert!(block(upload_records(&store)).is_empty());
}

/// Run in-process with both sides of every store (objects, multipart
/// uploads) going through `faults`; wait out a lease left live by an
/// injected failure, as a CronJob retry does.
async fn run_faulted(
    job: &segments::config::Job,
    config: &Config,
    faults: &Arc<Faults>,
) -> Result<(), RunError> {
    run_period_faulted(job, config, "2024-06", faults).await
}

/// [`run_faulted`] for `period`.
async fn run_period_faulted(
    job: &segments::config::Job,
    config: &Config,
    period: &str,
    faults: &Arc<Faults>,
) -> Result<(), RunError> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        // On the heap: a run's future is deep for a test thread's stack.
        match Box::pin(faults.scope(run::run(job, config, options(period)))).await {
            Err(RunError::Lease(LeaseError::Held { .. })) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            other => return other.map(|_| ()),
        }
    }
}

/// In-process, on the recorded path: a part that fails makes the run abort
/// its upload and delete the record. When the abort fails too, the upload
/// stays open with its record, and the next run aborts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_failed_upload_is_aborted_now_or_by_the_next_run() {
    let setup = tokio::task::spawn_blocking(|| {
        let setup = setup();
        setup.local_runs(&["2024-06"]);
        setup
    })
    .await
    .unwrap();
    let expected = local_tables(&setup.local_warehouse);
    let config_path = setup.config("uploads.yaml", "wh", "  multipart_threshold: 1KiB\n", true);
    let (job, config) = setup.load(&config_path);
    let store = setup.warehouse_store();

    // The part fails: aborted at once, record deleted.
    let faults = Faults::new();
    faults.add(Rule {
        key_contains: "/snapshots/".into(),
        ..Rule::fail(CallKind::Part, 1)
    });
    assert!(run_faulted(&job, &config, &faults).await.is_err());
    assert_eq!(faults.count(CallKind::Abort), 1, "{:?}", faults.log());
    assert!(
        setup.server.open_uploads().is_empty(),
        "{:?}",
        setup.server.open_uploads()
    );
    assert!(upload_records(&store).await.is_empty());

    // The part and the abort fail: the upload stays open, recorded.
    let faults = Faults::new();
    faults.add(Rule {
        key_contains: "/snapshots/".into(),
        ..Rule::fail(CallKind::Part, 1)
    });
    faults.add(Rule::fail(CallKind::Abort, 1));
    assert!(run_faulted(&job, &config, &faults).await.is_err());
    assert_eq!(faults.injected().len(), 2, "{:?}", faults.injected());
    assert!(!setup.server.open_uploads().is_empty());
    assert_eq!(upload_records(&store).await.len(), 1);

    // The next run aborts it, then publishes in parts.
    let clean = Faults::new();
    run_faulted(&job, &config, &clean).await.unwrap();
    let aborts: Vec<_> = clean
        .log()
        .into_iter()
        .filter(|(kind, _)| *kind == CallKind::Abort)
        .collect();
    assert_eq!(aborts.len(), 1, "{:?}", clean.log());
    assert!(
        aborts[0]
            .1
            .ends_with("snapshots/period=2024-06/part-0.parquet")
    );
    assert!(clean.count(CallKind::Complete) >= 5, "{:?}", clean.log());
    assert!(
        setup.server.open_uploads().is_empty(),
        "{:?}",
        setup.server.open_uploads()
    );
    assert!(upload_records(&store).await.is_empty());
    assert_same_tables(&expected, &s3_tables(&store, "wh").await);
}

/// A failure at each call of the recorded uploads of a run (the start of an
/// upload, its record's PUT, its part, its completion, its record's DELETE),
/// one at a time, each followed by the next run: the server then keeps no
/// open upload, and the tables are a clean run's. (A record whose DELETE
/// failed after its upload completed may stay: `s3s-fs` answers the abort
/// of a completed upload with AccessDenied, where S3 answers NoSuchUpload,
/// which deletes the record.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_fault_at_every_upload_call_leaves_no_open_upload_after_the_next_run() {
    let setup = tokio::task::spawn_blocking(|| {
        let setup = setup();
        setup.local_runs(&["2024-06"]);
        setup
    })
    .await
    .unwrap();
    let expected = local_tables(&setup.local_warehouse);
    let config_path = setup.config("uploads.yaml", "wh", "  multipart_threshold: 1KiB\n", true);
    let (job, config) = setup.load(&config_path);
    let store = setup.warehouse_store();
    let recorder = Faults::new();
    run_faulted(&job, &config, &recorder).await.unwrap();
    let log = recorder.log();
    // Each call of the upload protocol, as a rule that fails it alone.
    let mut rules = Vec::new();
    for (index, (kind, key)) in log.iter().enumerate() {
        let upload_call = matches!(
            kind,
            CallKind::PutMultipart | CallKind::Part | CallKind::Complete
        );
        let record_call =
            matches!(kind, CallKind::Put | CallKind::Delete) && key.contains("/_upload-");
        // Month facts are stored after the period is published, once (the
        // next run reuses them): a failed upload of them does not fail the
        // run. Checked below, on its own.
        if (!upload_call && !record_call) || key.contains("/_facts/") {
            continue;
        }
        let key_contains = if record_call {
            "/_upload-"
        } else {
            key.as_str()
        };
        let nth = log[..=index]
            .iter()
            .filter(|(k, other)| k == kind && other.contains(key_contains))
            .count();
        rules.push(Rule {
            kind: *kind,
            nth,
            key_contains: key_contains.to_string(),
            action: segments::storage::fault::Action::Fail,
        });
    }
    assert!(rules.len() >= 5 * 6, "{log:?}");
    let count = rules.len();
    let mut records_left = 0;
    for rule in rules {
        let what = format!("{:?} #{} on {}", rule.kind, rule.nth, rule.key_contains);
        let faults = Faults::new();
        faults.add(rule.clone());
        let result = run_faulted(&job, &config, &faults).await;
        assert_eq!(faults.injected().len(), 1, "{what}: not reached");
        assert!(result.is_err(), "{what}: the run succeeded");
        run_faulted(&job, &config, &Faults::new())
            .await
            .unwrap_or_else(|e| panic!("{what}: the next run failed: {e}"));
        assert!(
            setup.server.open_uploads().is_empty(),
            "{what}: open uploads after the next run: {:?}",
            setup.server.open_uploads()
        );
        assert_same_tables(&expected, &s3_tables(&store, "wh").await);
        for record in upload_records(&store).await {
            assert_eq!(rule.kind, CallKind::Delete, "{what}: {record} left");
            store.delete(&KeyPath::from(record.as_str())).await.unwrap();
            records_left += 1;
        }
    }
    eprintln!(
        "{count} upload calls failed one at a time; records left by a failed DELETE: {records_left}"
    );
    assert!(records_left <= 8, "{records_left}");

    // A failed upload of the month facts, after the period is published:
    // the run succeeds with the period whole, leaves no open upload once
    // the next run is over, and the next run stores the facts.
    let facts = KeyPath::from("wh/rfm_monthly/_facts");
    let stored: Vec<_> = store.list(Some(&facts)).try_collect().await.unwrap();
    assert!(!stored.is_empty());
    for meta in stored {
        store.delete(&meta.location).await.unwrap();
    }
    let faults = Faults::new();
    faults.add(Rule {
        key_contains: "/_facts/".into(),
        ..Rule::fail(CallKind::Part, 1)
    });
    let manifest = KeyPath::from("wh/rfm_monthly/_runs/period=2024-06/_manifest.json");
    let run_id = |bytes: bytes::Bytes| -> String {
        let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        manifest["run_id"].as_str().unwrap().to_string()
    };
    let before = run_id(store.get(&manifest).await.unwrap().bytes().await.unwrap());
    run_faulted(&job, &config, &faults)
        .await
        .expect("a failed upload of month facts does not fail the run");
    assert_eq!(faults.injected().len(), 1, "the facts upload was reached");
    let republished = run_id(store.get(&manifest).await.unwrap().bytes().await.unwrap());
    assert_ne!(republished, before, "the faulted run published the period");
    assert_same_tables(&expected, &s3_tables(&store, "wh").await);
    let fingerprints = || async {
        store
            .list(Some(&facts))
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.location.as_ref().ends_with("/_fingerprint.json"))
            .count()
    };
    let after_fault = fingerprints().await;
    run_faulted(&job, &config, &Faults::new()).await.unwrap();
    assert!(setup.server.open_uploads().is_empty());
    // The month whose upload failed has no fingerprint until the next run
    // computes and stores it; the other months were stored.
    let after_next = fingerprints().await;
    assert!(after_next >= 6, "{after_next}");
    assert!(after_fault < after_next, "{after_fault} then {after_next}");
}

/// Retention deletes the run folders of expired periods, records included:
/// it aborts their uploads first. A run of 2024-05 leaves an upload open
/// and recorded (its part and its abort fail); a run of 2024-06 that keeps
/// one month deletes 2024-05 and leaves no open upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_retention_aborts_the_recorded_uploads_of_the_periods_it_deletes() {
    let setup = tokio::task::spawn_blocking(setup).await.unwrap();
    let config_path = setup.config(
        "retention.yaml",
        "wh",
        "  multipart_threshold: 1KiB\n  lease_ttl: 2s\nretention:\n  months: 1\n",
        true,
    );
    let (job, config) = setup.load(&config_path);
    let store = setup.warehouse_store();
    let may = "wh/rfm_monthly/_runs/period=2024-05";

    let faults = Faults::new();
    faults.add(Rule {
        key_contains: "/snapshots/".into(),
        ..Rule::fail(CallKind::Part, 1)
    });
    faults.add(Rule::fail(CallKind::Abort, 1));
    assert!(
        run_period_faulted(&job, &config, "2024-05", &faults)
            .await
            .is_err()
    );
    assert!(!setup.server.open_uploads().is_empty());
    assert_eq!(records_in(&store, may).await.len(), 1);

    let clean = Faults::new();
    run_period_faulted(&job, &config, "2024-06", &clean)
        .await
        .unwrap();
    assert!(
        clean
            .log()
            .iter()
            .any(|(kind, key)| *kind == CallKind::Abort
                && key.ends_with("snapshots/period=2024-05/part-0.parquet")),
        "{:?}",
        clean.log()
    );
    assert!(
        setup.server.open_uploads().is_empty(),
        "{:?}",
        setup.server.open_uploads()
    );
    assert!(records_in(&store, may).await.is_empty());
}

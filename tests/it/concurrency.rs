//! Concurrent publishes of different periods of one job on one warehouse (a
//! backfill beside the CronJob): afterwards `published_periods` lists
//! exactly the periods that hold `_SUCCESS`, and during the race it never
//! misses a period that was complete before the race began. The racing runs
//! also found that one run's clean-up of staged files removed another's
//! write in flight (a failed rename): staged files younger than a minute
//! are now left alone in that shared folder.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use datafusion::arrow::array::AsArray;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::common::default_job;

/// The periods listed by `published_periods`, or `None` when the file is
/// missing or cannot be read at this instant.
fn listed(warehouse: &Path) -> Option<BTreeSet<String>> {
    let file =
        std::fs::File::open(warehouse.join("rfm_monthly/published_periods/part-0.parquet")).ok()?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .ok()?
        .build()
        .ok()?;
    let mut periods = BTreeSet::new();
    for batch in reader {
        let batch = batch.ok()?;
        let column = batch.column_by_name("period")?.as_string::<i32>().clone();
        periods.extend(column.iter().flatten().map(str::to_string));
    }
    Some(periods)
}

/// The periods whose `_runs/period=…/_SUCCESS` exists.
fn succeeded(warehouse: &Path) -> BTreeSet<String> {
    let runs = warehouse.join("rfm_monthly/_runs");
    std::fs::read_dir(&runs)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().join("_SUCCESS").is_file())
                .filter_map(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .strip_prefix("period=")
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn concurrent_publishes_of_different_periods_keep_published_periods_whole() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::jobs::generated(dir.path(), 300, 8, "2024-01", 5);
    let warehouse = dir.path().join("warehouse");
    let job = default_job();
    let other_job = crate::common::repo().join("jobs/lifecycle_groups.yaml");
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_segments"));
    let gates = [
        "--allow-gate",
        "active_customers_change",
        "--allow-gate",
        "revenue_change",
    ];
    let spawn = |args: Vec<&str>| {
        Command::new(&binary)
            .current_dir(dir.path())
            .arg("-q")
            .args(args)
            .args(["--config", config.to_str().unwrap()])
            .args(gates)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let run = |job: &Path, period: &str| {
        spawn(vec![
            "run",
            "--job",
            job.to_str().unwrap(),
            "--period",
            period,
        ])
    };
    // Complete before the race: must be listed at every moment.
    let before = "2024-02";
    assert!(run(&job, before).wait().unwrap().success());
    // Each round: a backfill that republishes three periods, beside the
    // CronJob-like single runs of three others and a run of another job
    // on the same warehouse.
    let backfilled = ["2024-03", "2024-04", "2024-05"];
    let single = ["2024-06", "2024-07", "2024-08"];
    let racers = || {
        let mut children = vec![spawn(vec![
            "backfill",
            "--job",
            job.to_str().unwrap(),
            "--from",
            backfilled[0],
            "--to",
            backfilled[2],
            "--rerun",
        ])];
        children.extend(single.iter().map(|p| run(&job, p)));
        children.push(run(&other_job, "2024-06"));
        children
    };

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let warehouse = warehouse.clone();
        std::thread::spawn(move || {
            let (mut reads, mut missing) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                if let Some(periods) = listed(&warehouse) {
                    reads += 1;
                    if !periods.contains(before) {
                        missing.push(periods);
                    }
                }
            }
            (reads, missing)
        })
    };
    let rounds = 8;
    let mut lost = Vec::new();
    for round in 0..rounds {
        let children = racers();
        for mut child in children {
            let status = child.wait().unwrap();
            let mut stderr = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            assert!(status.success(), "round {round}: {stderr}");
        }
        let listed_now = listed(&warehouse).expect("published_periods is readable");
        let complete = succeeded(&warehouse);
        if listed_now != complete {
            lost.push(format!(
                "round {round}: published_periods lists {listed_now:?}, _SUCCESS in {complete:?}"
            ));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (reads, missing) = reader.join().unwrap();
    eprintln!(
        "{rounds} rounds of a backfill of {} periods beside {} single runs and another job, published_periods read {reads} times",
        backfilled.len(),
        single.len()
    );
    assert!(lost.is_empty(), "{}", lost.join("\n"));
    assert!(
        missing.is_empty(),
        "{before} (complete before the race) missing from published_periods {} times, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    assert!(reads > 0, "the reader saw the table");
}

/// The race made certain: a rebuild of `published_periods` that lists the
/// periods, then writes late (its PUT delayed by the fault wrapper) while
/// another period is published and listed, must not leave the table without
/// that period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_rebuild_of_published_periods_does_not_drop_a_period_published_meanwhile() {
    use segments::storage::Warehouse;
    use segments::warehouse::publish::rebuild_published_periods;
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let warehouse = root.join("warehouse");
    tokio::task::spawn_blocking({
        let root = root.clone();
        move || {
            let config = crate::jobs::generated(&root, 200, 4, "2024-01", 3);
            for period in ["2024-02", "2024-03", "2024-04"] {
                crate::jobs::run(&root, &default_job(), &config, period);
            }
        }
    })
    .await
    .unwrap();
    // 2024-03 and 2024-04 become unpublished; the table lists 2024-02 only.
    let success =
        |period: &str| warehouse.join(format!("rfm_monthly/_runs/period={period}/_SUCCESS"));
    for period in ["2024-03", "2024-04"] {
        std::fs::remove_file(success(period)).unwrap();
    }
    let url = format!("file://{}/", warehouse.display());
    rebuild_published_periods(
        &Warehouse::open(&url).unwrap(),
        segments::config::TableFormat::Hive,
        "rfm_monthly",
    )
    .await
    .unwrap();
    assert_eq!(
        listed(&warehouse).unwrap(),
        BTreeSet::from(["2024-02".to_string()])
    );

    // A publishes 2024-03 and its table write waits 600 ms; meanwhile B
    // publishes 2024-04 and rewrites the table at once.
    let writes = late_rebuild_race(
        &url,
        Default::default(),
        ["2024-03", "2024-04"],
        Duration::from_millis(600),
    )
    .await;
    assert!(writes >= 2, "both rebuilt the table ({writes} writes)");
    assert_eq!(
        listed(&warehouse).unwrap(),
        succeeded(&warehouse),
        "published_periods after a late write"
    );
}

/// Two publishes of `periods` side by side on the warehouse `url`: the first
/// puts its `_SUCCESS` and rebuilds `published_periods` with its table write
/// delayed by `delay`; a third of that later, the second puts its
/// `_SUCCESS` and rebuilds at once. Returns how many times the table was
/// written. (Shared with the object-store variants in `stores/`.)
pub async fn late_rebuild_race(
    url: &str,
    settings: segments::storage::StorageSettings,
    periods: [&str; 2],
    delay: std::time::Duration,
) -> usize {
    use segments::storage::fault::{Action, CallKind, Faults, Rule};
    use segments::storage::{StoreWrapper, Warehouse, scoped, with_store_wrapper};
    use segments::warehouse::publish::rebuild_published_periods;
    let faults = Faults::new();
    faults.add(Rule {
        kind: CallKind::Put,
        nth: 1,
        key_contains: "published_periods".into(),
        action: Action::Delay(delay),
    });
    let wrap_faults = faults.clone();
    let wrap: StoreWrapper = Arc::new(move |_url, store| wrap_faults.wrap(store));
    with_store_wrapper(
        wrap,
        scoped(settings, async {
            let store = Warehouse::open(url).unwrap();
            let publish = |period: &str, wait: std::time::Duration| {
                let mark = store
                    .key(&[
                        "rfm_monthly",
                        "_runs",
                        &format!("period={period}"),
                        "_SUCCESS",
                    ])
                    .unwrap();
                let store = &store;
                async move {
                    tokio::time::sleep(wait).await;
                    store.put(&mark, bytes::Bytes::new()).await.unwrap();
                    rebuild_published_periods(
                        store,
                        segments::config::TableFormat::Hive,
                        "rfm_monthly",
                    )
                    .await
                    .unwrap();
                }
            };
            tokio::join!(
                publish(periods[0], std::time::Duration::ZERO),
                publish(periods[1], delay / 3)
            );
        }),
    )
    .await;
    faults
        .log()
        .iter()
        .filter(|(kind, key)| *kind == CallKind::Put && key.contains("published_periods"))
        .count()
}

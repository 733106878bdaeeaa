//! Data lifecycle (README "Data lifecycle"): restatement of published
//! periods whose inputs changed (`status`, `backfill --changed`), erasure
//! (`forget`, with kills in the middle) and identity merges.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Decimal128Array, RecordBatch};
use datafusion::arrow::datatypes::Decimal128Type;
use datafusion::parquet::arrow::ArrowWriter;

use crate::common::{default_job, read_parquet, segments_ok, write_config};
use crate::jobs::{ALLOW_CHANGE_GATES, generated};

/// `segments <command> --job … --config …` plus `extra`, failing unless 0.
fn command(dir: &Path, name: &str, job: &Path, config: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        name,
        "--job",
        job.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    args.extend(extra);
    segments_ok(dir, &args)
}

fn backfill(dir: &Path, job: &Path, config: &Path, extra: &[&str]) -> String {
    let mut args = extra.to_vec();
    args.extend(ALLOW_CHANGE_GATES);
    command(dir, "backfill", job, config, &args)
}

fn status(dir: &Path, job: &Path, config: &Path) -> serde_json::Value {
    serde_json::from_str(&command(dir, "status", job, config, &["--json"])).unwrap()
}

/// (period, inputs changed, recompute) per published period.
fn flags(status: &serde_json::Value) -> Vec<(String, bool, bool)> {
    status["periods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["period"].as_str().unwrap().to_string(),
                p["inputs_changed"].as_bool().unwrap(),
                p["recompute"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn run_ids(warehouse: &Path, job: &str) -> BTreeMap<String, String> {
    let runs = warehouse.join(job).join("_runs");
    let mut ids = BTreeMap::new();
    for entry in std::fs::read_dir(runs).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let manifest = entry.path().join("_manifest.json");
        if entry.path().join("_SUCCESS").exists() {
            let value: serde_json::Value =
                serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
            ids.insert(
                name.trim_start_matches("period=").to_string(),
                value["run_id"].as_str().unwrap().to_string(),
            );
        }
    }
    ids
}

/// Every Parquet file under `root`, relative path → rows, excluding
/// `published_periods` (run ids and times).
fn tables_under(root: &Path) -> BTreeMap<String, Vec<RecordBatch>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<RecordBatch>>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                let relative = path.strip_prefix(root).unwrap().display().to_string();
                if !relative.contains("published_periods") {
                    out.insert(relative, read_parquet(&path));
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Write `batch` as one Parquet file at `path`.
fn write_batch(path: &Path, batch: &RecordBatch) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

/// A refund line of the first identified line of `file`: same customer,
/// order and time, opposite amount, every other column as it was.
fn refund_of(file: &Path) -> (String, RecordBatch) {
    let batches = read_parquet(file);
    let batch = &batches[0];
    let customers = batch
        .column(batch.schema().index_of("customer_id").unwrap())
        .as_string::<i32>();
    let row = (0..batch.num_rows())
        .find(|&r| customers.is_valid(r))
        .unwrap();
    let line = batch.slice(row, 1);
    let amount_index = line.schema().index_of("amount").unwrap();
    let amount = line.column(amount_index).as_primitive::<Decimal128Type>();
    let refund = Decimal128Array::from(vec![-amount.value(0)])
        .with_precision_and_scale(amount.precision(), amount.scale())
        .unwrap();
    let mut columns = line.columns().to_vec();
    columns[amount_index] = Arc::new(refund);
    let customer = customers.value(row).to_string();
    (
        customer,
        RecordBatch::try_new(line.schema(), columns).unwrap(),
    )
}

/// A late refund lands in an already published month: `status` flags that
/// month and the later ones (their history includes it), `backfill
/// --changed` recomputes exactly those, oldest first, and the warehouse then
/// equals, row by row, a clean backfill on the final data.
#[test]
fn late_refund_is_flagged_and_restated_like_a_clean_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = generated(dir.path(), 300, 8, "2024-01", 11);
    let warehouse = dir.path().join("warehouse");
    let job = default_job();
    let range = ["--from", "2024-03", "--to", "2024-08"];
    backfill(dir.path(), &job, &config, &range);
    let all: Vec<String> = (3..=8).map(|m| format!("2024-0{m}")).collect();
    assert_eq!(
        flags(&status(dir.path(), &job, &config)),
        all.iter()
            .map(|p| (p.clone(), false, false))
            .collect::<Vec<_>>()
    );
    let before_ids = run_ids(&warehouse, "rfm_monthly");
    let before_tables = tables_under(&warehouse);

    // The late refund: a file added to the folder of 2024-05.
    let may = dir.path().join("data/transactions/month=2024-05");
    let (customer, refund) = refund_of(&may.join("part-0.parquet"));
    write_batch(&may.join("late-refunds.parquet"), &refund);

    let flagged = flags(&status(dir.path(), &job, &config));
    let expected: Vec<(String, bool, bool)> = all
        .iter()
        .map(|p| {
            let changed = p.as_str() >= "2024-05";
            (p.clone(), changed, changed)
        })
        .collect();
    assert_eq!(flagged, expected, "refund of {customer}");
    let text = command(dir.path(), "status", &job, &config, &[]);
    assert!(
        text.contains("added") && text.contains("month=2024-05/late-refunds.parquet"),
        "{text}"
    );

    let out = backfill(dir.path(), &job, &config, &["--changed"]);
    assert!(out.contains("4 published, 2 skipped"), "{out}");
    let after_ids = run_ids(&warehouse, "rfm_monthly");
    for period in &all {
        let recomputed = before_ids[period] != after_ids[period];
        assert_eq!(
            recomputed,
            period.as_str() >= "2024-05",
            "{period}: recomputed {recomputed}\n{out}"
        );
    }
    assert!(
        flags(&status(dir.path(), &job, &config))
            .iter()
            .all(|(_, changed, recompute)| !changed && !recompute)
    );
    // Nothing to do the second time.
    let again = backfill(dir.path(), &job, &config, &["--changed"]);
    assert!(again.contains("0 published, 6 skipped"), "{again}");

    // The refund mattered, and the result is a clean run's.
    let after_tables = tables_under(&warehouse);
    let may_snapshot = "rfm_monthly/snapshots/period=2024-05/part-0.parquet";
    assert_ne!(before_tables[may_snapshot], after_tables[may_snapshot]);
    let clean_warehouse = dir.path().join("clean");
    let clean_dir = dir.path().join("clean-config");
    std::fs::create_dir_all(&clean_dir).unwrap();
    let clean_config = write_config(
        &clean_dir,
        &dir.path().join("data/transactions"),
        &clean_warehouse,
    );
    backfill(dir.path(), &job, &clean_config, &range);
    let clean_tables = tables_under(&clean_warehouse);
    assert_eq!(
        after_tables.keys().collect::<Vec<_>>(),
        clean_tables.keys().collect::<Vec<_>>()
    );
    for (file, batches) in &after_tables {
        assert_eq!(batches, &clean_tables[file], "{file} differs from a clean run");
    }
}

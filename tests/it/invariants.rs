//! Invariants of docs/design.md §3a on generated data, over consecutive published
//! periods: the matrix's row sums are the previous period's segment counts
//! (plus `(new)` = new customers), its column sums this period's (plus
//! `(removed)`), and the summary agrees with the snapshot.

use std::collections::BTreeMap;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;

use crate::common::{default_job, read_parquet, segments_ok, table_file, write_config};

fn strings(batch: &RecordBatch, name: &str) -> Vec<String> {
    let column = batch.column(batch.schema().index_of(name).unwrap());
    column
        .as_string::<i32>()
        .iter()
        .map(|v| v.unwrap_or("").to_string())
        .collect()
}

fn ints(batch: &RecordBatch, name: &str) -> Vec<i64> {
    let column = batch.column(batch.schema().index_of(name).unwrap());
    column.as_primitive::<Int64Type>().values().to_vec()
}

fn table(warehouse: &std::path::Path, name: &str, period: &str) -> RecordBatch {
    let batches = read_parquet(&table_file(warehouse, "rfm_monthly", name, period));
    datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

fn segment_counts(snapshot: &RecordBatch) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for segment in strings(snapshot, "segment") {
        *counts.entry(segment).or_insert(0) += 1;
    }
    counts
}

#[test]
fn matrix_rows_and_columns_add_up_over_consecutive_periods() {
    let dir = tempfile::tempdir().unwrap();
    segments_ok(
        dir.path(),
        &[
            "generate",
            "--customers",
            "1500",
            "--months",
            "15",
            "--start",
            "2023-01",
            "--seed",
            "11",
            "--out",
            "data",
        ],
    );
    let warehouse = dir.path().join("warehouse");
    let config = write_config(
        dir.path(),
        &dir.path().join("data/transactions"),
        &warehouse,
    );
    let job = default_job();
    let periods = ["2023-12", "2024-01", "2024-02", "2024-03"];
    for period in periods {
        segments_ok(
            dir.path(),
            &[
                "run",
                "--job",
                job.to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
                "--period",
                period,
            ],
        );
    }
    for pair in periods.windows(2) {
        let (previous, current) = (pair[0], pair[1]);
        let before = segment_counts(&table(&warehouse, "snapshots", previous));
        let after = segment_counts(&table(&warehouse, "snapshots", current));
        let matrix = table(&warehouse, "migration_matrix", current);
        let migrations = table(&warehouse, "migrations", current);
        let (from, to, customers) = (
            strings(&matrix, "from_segment"),
            strings(&matrix, "to_segment"),
            ints(&matrix, "customers"),
        );
        let mut row_sums: BTreeMap<String, i64> = BTreeMap::new();
        let mut column_sums: BTreeMap<String, i64> = BTreeMap::new();
        for i in 0..matrix.num_rows() {
            assert!(customers[i] > 0, "only non-empty cells");
            *row_sums.entry(from[i].clone()).or_insert(0) += customers[i];
            *column_sums.entry(to[i].clone()).or_insert(0) += customers[i];
        }
        let movements = strings(&migrations, "movement");
        let count = |m: &str| movements.iter().filter(|x| *x == m).count() as i64;
        let new = row_sums.remove("(new)").unwrap_or(0);
        let removed = column_sums.remove("(removed)").unwrap_or(0);
        assert_eq!(
            row_sums, before,
            "{current}: matrix rows = segment counts of {previous}"
        );
        assert_eq!(
            column_sums, after,
            "{current}: matrix columns = segment counts of {current}"
        );
        assert_eq!(new, count("new"), "{current}: (new) row = new customers");
        assert_eq!(
            removed,
            count("removed"),
            "{current}: (removed) column = removed customers"
        );
        assert!(new > 0, "the generator brings new customers every month");
        let universe: i64 = after.values().sum::<i64>() + removed;
        assert_eq!(
            migrations.num_rows() as i64,
            universe,
            "{current}: one migration row per customer of P or P−1"
        );

        let summary = table(&warehouse, "segment_summary", current);
        let (segments, counts, previous_counts) = (
            strings(&summary, "segment"),
            ints(&summary, "customers"),
            ints(&summary, "previous_customers"),
        );
        for i in 0..summary.num_rows() {
            assert_eq!(
                counts[i],
                *after.get(&segments[i]).unwrap_or(&0),
                "{current} summary {}",
                segments[i]
            );
            assert_eq!(
                previous_counts[i],
                *before.get(&segments[i]).unwrap_or(&0),
                "{current} previous {}",
                segments[i]
            );
        }
    }
}

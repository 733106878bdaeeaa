//! Helpers shared by the integration tests: running the binary, writing a
//! config for a temp warehouse, reading published Parquet back.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Path of the repository (for `jobs/`, `sql/`, `schemas/`).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The default job file.
pub fn default_job() -> PathBuf {
    repo().join("jobs/rfm_monthly.yaml")
}

/// Run `segments` with arguments, in `cwd`.
pub fn segments(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_segments"))
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the segments binary runs")
}

/// Run `segments` and fail the test with its stderr unless it exits 0.
pub fn segments_ok(cwd: &Path, args: &[&str]) -> String {
    let output = segments(cwd, args);
    assert!(
        output.status.success(),
        "segments {args:?} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Write a config reading Parquet transactions under `data` (Hive `month=`
/// folders) and publishing to `warehouse`. Returns its path.
pub fn write_config(dir: &Path, data: &Path, warehouse: &Path) -> PathBuf {
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        format!(
            // Tiny fixtures move by more than any sensible default from one
            // month to the next; the gates have their own tests.
            "warehouse: {}\ntimezone: UTC\ninputs:\n  transactions:\n    url: {}/\n    format: parquet\n    partition_columns: [month]\nquality:\n  max_active_customers_change: 100\n  max_revenue_change: 100\n",
            warehouse.display(),
            data.display()
        ),
    )
    .unwrap();
    path
}

/// Read one Parquet file into batches.
pub fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// Path of a published table partition.
pub fn table_file(warehouse: &Path, job: &str, table: &str, period: &str) -> PathBuf {
    warehouse
        .join(job)
        .join(table)
        .join(format!("period={period}"))
        .join("part-0.parquet")
}

/// A copy of the default job with `edit` applied, whose SQL is the repo's.
pub fn job_with(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(default_job()).unwrap();
    let text = text.replacen(
        "version: 1\n",
        &format!("version: 1\nsql_dir: {}\n", repo().join("sql").display()),
        1,
    );
    let path = dir.join("job.yaml");
    std::fs::write(&path, edit(text)).unwrap();
    path
}

/// Published objects under a warehouse (table files and `_SUCCESS` markers);
/// a lease or an empty folder is not a publication.
pub fn published_files(warehouse: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "parquet")
                || path.file_name().is_some_and(|n| n == "_SUCCESS")
            {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    walk(warehouse, &mut found);
    found
}

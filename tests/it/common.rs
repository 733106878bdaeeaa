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

/// Copy the folder `from` and everything under it to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
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

/// A transaction line for hand-written fixtures: customer (None = anonymous),
/// order, `ordered_at` in µs since the epoch (UTC), amount in cents.
pub type FixtureLine<'a> = (Option<&'a str>, &'a str, i64, i128);

/// Write fixture lines as Parquet under `data`, one Hive `month=YYYY-MM`
/// folder per UTC month, like the generator.
pub fn write_transactions(data: &Path, lines: &[FixtureLine]) {
    use std::sync::Arc;

    use datafusion::arrow::array::{Decimal128Array, StringArray, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::parquet::arrow::ArrowWriter;

    let schema = Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Utf8, true),
        Field::new("order_id", DataType::Utf8, false),
        Field::new(
            "ordered_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("amount", DataType::Decimal128(18, 2), false),
    ]));
    let mut months: std::collections::BTreeMap<String, Vec<&FixtureLine>> = Default::default();
    for line in lines {
        let month = chrono::DateTime::from_timestamp_micros(line.2)
            .unwrap()
            .format("%Y-%m")
            .to_string();
        months.entry(month).or_default().push(line);
    }
    for (month, lines) in months {
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(
                    lines.iter().map(|l| l.0).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    lines.iter().map(|l| l.1).collect::<Vec<_>>(),
                )),
                Arc::new(
                    TimestampMicrosecondArray::from(lines.iter().map(|l| l.2).collect::<Vec<_>>())
                        .with_timezone("UTC"),
                ),
                Arc::new(
                    Decimal128Array::from(lines.iter().map(|l| l.3).collect::<Vec<_>>())
                        .with_precision_and_scale(18, 2)
                        .unwrap(),
                ),
            ],
        )
        .unwrap();
        let folder = data.join(format!("month={month}"));
        std::fs::create_dir_all(&folder).unwrap();
        let file = std::fs::File::create(folder.join("part-0.parquet")).unwrap();
        let mut writer = ArrowWriter::try_new(file, schema.clone(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }
}

/// `segments run` of `job` for `period`, failing the test unless it exits 0.
pub fn run_job(dir: &Path, job: &Path, config: &Path, period: &str) -> String {
    segments_ok(
        dir,
        &[
            "run",
            "--job",
            job.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--period",
            period,
        ],
    )
}

/// Run DuckDB statements (`;`-separated; the last one a query of one text
/// column) and return its lines.
pub fn duckdb_lines(sql: &str) -> std::collections::BTreeSet<String> {
    let output = Command::new("python3")
        .args([
            "-c",
            "import sys, duckdb\nc = duckdb.connect()\n*setup, query = [s for s in sys.argv[1].split(';') if s.strip()]\nfor s in setup: c.execute(s)\nfor (line,) in c.sql(query).fetchall(): print(line)",
            sql,
        ])
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "DuckDB (run the tests with scripts/test, which installs requirements-dev.txt into .venv) failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Fail unless `dir` is empty: what a run kept in its spill directory is
/// removed with it.
pub fn assert_spill_dir_empty(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        left.is_empty(),
        "{left:?} left in the spill directory {}",
        dir.display()
    );
}

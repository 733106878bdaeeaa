//! `warehouse.format: delta`: the job publishes Delta Lake tables, read back
//! by readers that are not our code — Polars' `scan_delta` (over delta-rs'
//! Python package) and DuckDB's `delta_scan` (its delta extension, from
//! PyPI's `duckdb-ext-delta`, which scripts/test installs beside a DuckDB of
//! the matching version in `.venv/duckdb-delta`) — on local files and on the
//! S3 test server, and compared row by row with the Hive Parquet run of the
//! same data read by DuckDB's `read_parquet`. The Delta log is read version
//! by version to show that no version holds half a period.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{
    default_job, repo, run_job, segments, segments_ok, write_config, write_transactions,
};
use crate::fixture::write_fixture;

const JOB: &str = "rfm_monthly";

/// The tables of the default job, and the run records.
const TABLES: [&str; 9] = [
    "snapshots",
    "migrations",
    "migration_matrix",
    "segment_summary",
    "score_thresholds",
    "segment_definitions",
    "rejects",
    "store_summary",
    "published_periods",
];

/// Turns a config's `warehouse: <path>` line into a Delta warehouse.
fn delta_config(dir: &Path, data: &Path, warehouse: &Path, extra: &str) -> PathBuf {
    let config = write_config(dir, data, warehouse);
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replacen(
        &format!("warehouse: {}\n", warehouse.display()),
        &format!(
            "warehouse:\n  url: {}\n  format: delta\n{extra}",
            warehouse.display()
        ),
        1,
    );
    assert!(text.contains("format: delta"), "{text}");
    std::fs::write(&config, text).unwrap();
    config
}

/// Python that turns a reader's rows into comparable text: timestamps in
/// UTC ISO form, decimals and dates as text, one JSON array per row, sorted.
const NORMALIZE: &str = r#"
import datetime, decimal, json, sys
def norm(v):
    if v is None:
        return None
    if isinstance(v, datetime.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return v.isoformat()
    if isinstance(v, (datetime.date, decimal.Decimal)):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    return v
def rows(tuples):
    return sorted(json.dumps([norm(x) for x in t]) for t in tuples)
"#;

/// Run Python (`.venv`'s, first on PATH under scripts/test) with `script`
/// after [`NORMALIZE`]; its stdout is JSON.
fn python_json(script: &str, args: &[&str], duckdb_delta: bool) -> serde_json::Value {
    let mut command = Command::new("python3");
    command
        .arg("-c")
        .arg(format!("{NORMALIZE}\n{script}"))
        .args(args);
    if duckdb_delta {
        let folder = duckdb_delta_folder();
        assert!(
            folder.join("duckdb_ext").is_dir(),
            "no DuckDB delta extension in {}: run the tests with scripts/test, which installs requirements-duckdb-delta.txt there",
            folder.display()
        );
        command.env("PYTHONPATH", &folder);
        command.env(
            "DUCKDB_DELTA_EXTENSIONS",
            folder.join("duckdb_ext/extensions"),
        );
    }
    let output = command.output().expect("python3 runs");
    assert!(
        output.status.success(),
        "Python reader failed (run the tests with scripts/test, which installs requirements-dev.txt into .venv):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}",
            String::from_utf8_lossy(&output.stdout)
                .chars()
                .take(2000)
                .collect::<String>()
        )
    })
}

/// Where scripts/test installs the DuckDB that matches PyPI's delta
/// extension (`pip install --target`), apart from `.venv`'s DuckDB.
fn duckdb_delta_folder() -> PathBuf {
    repo().join(".venv/duckdb-delta")
}

/// DuckDB with its delta extension loaded from the folder scripts/test
/// fills (no download: the extension is the PyPI package's).
const DUCKDB_DELTA: &str = r#"
import os, duckdb
con = duckdb.connect(config={'extension_directory': os.environ['DUCKDB_DELTA_EXTENSIONS'], 'autoinstall_known_extensions': False})
con.execute('LOAD delta')
"#;

/// How the Python readers reach a Delta warehouse on the S3 test server:
/// Polars' (delta-rs') storage options, DuckDB's statements.
#[derive(Default)]
struct Access {
    storage_options: Option<serde_json::Value>,
    duckdb_setup: Vec<String>,
}

/// Every table of the Delta warehouse at `delta` as Polars' `scan_delta`
/// reads it (with delta-rs' storage `options`, JSON), and of the Hive
/// warehouse folder `hive` as DuckDB's `read_parquet` reads it, in the
/// columns Polars lists: `{table: {columns, polars, hive}}`.
fn read_polars_and_hive(hive: &Path, delta: &str, options: &str) -> serde_json::Value {
    python_json(
        r#"
import duckdb, polars as pl
hive, delta, tables, options = sys.argv[1], sys.argv[2], sys.argv[3].split(','), json.loads(sys.argv[4])
out = {}
for t in tables:
    frame = pl.scan_delta(f'{delta}/{t}', storage_options=options)
    columns = frame.collect_schema().names()
    quoted = ', '.join(f'"{c}"' for c in columns)
    if t == 'published_periods':
        source = f"read_parquet('{hive}/{t}/*.parquet')"
    else:
        source = f"read_parquet('{hive}/{t}/*/*.parquet', hive_partitioning = true, hive_types = {{'period': 'VARCHAR'}})"
    out[t] = {
        'columns': columns,
        'polars': rows(frame.select(columns).collect().rows()),
        'hive': rows(duckdb.sql(f'SELECT {quoted} FROM {source}').fetchall()),
    }
print(json.dumps(out))
"#,
        &[
            &hive.display().to_string(),
            delta,
            &TABLES.join(","),
            options,
        ],
        false,
    )
}

/// Every table of the Delta warehouse at `delta` (a path or URL of the
/// job's folder) as Polars' `scan_delta` and DuckDB's `delta_scan` read it,
/// and of the Hive warehouse as DuckDB's `read_parquet` reads it, in the
/// columns Polars lists.
fn read_three_ways(
    hive: &Path,
    delta: &str,
    access: &Access,
) -> BTreeMap<String, [serde_json::Value; 3]> {
    let options = access
        .storage_options
        .clone()
        .unwrap_or(serde_json::Value::Null)
        .to_string();
    let polars_and_hive = read_polars_and_hive(&hive.join(JOB), delta, &options);
    let columns: serde_json::Value = TABLES
        .iter()
        .map(|t| (t.to_string(), polars_and_hive[t]["columns"].clone()))
        .collect::<serde_json::Map<_, _>>()
        .into();
    let duckdb = python_json(
        &format!(
            r#"{DUCKDB_DELTA}
delta, columns, setup = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
for statement in setup:
    con.execute(statement)
print(json.dumps({{t: rows(con.sql('SELECT ' + ', '.join(f'"{{c}}"' for c in cs) + f" FROM delta_scan('{{delta}}/{{t}}')").fetchall()) for t, cs in columns.items()}}))
"#
        ),
        &[
            delta,
            &columns.to_string(),
            &serde_json::to_string(&access.duckdb_setup).unwrap(),
        ],
        true,
    );
    TABLES
        .iter()
        .map(|t| {
            (
                t.to_string(),
                [
                    polars_and_hive[t]["hive"].clone(),
                    polars_and_hive[t]["polars"].clone(),
                    duckdb[t].clone(),
                ],
            )
        })
        .collect()
}

/// Every table read three ways holds the same rows (but for the run id and
/// time of `published_periods`), and some.
fn assert_same_rows(read: BTreeMap<String, [serde_json::Value; 3]>) {
    for (table, [hive_rows, polars, duckdb]) in read {
        assert!(
            !hive_rows.as_array().unwrap().is_empty() || table == "rejects",
            "{table}: no rows"
        );
        let expected = without_run_columns(&table, &hive_rows);
        assert_eq!(
            without_run_columns(&table, &polars),
            expected,
            "{table}: Polars scan_delta"
        );
        assert_eq!(
            without_run_columns(&table, &duckdb),
            expected,
            "{table}: DuckDB delta_scan"
        );
    }
}

/// The columns that do not depend on when or by which run a period was
/// published: `published_periods` minus its run id and time.
fn without_run_columns(table: &str, rows: &serde_json::Value) -> Vec<String> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let row: Vec<serde_json::Value> = serde_json::from_str(row.as_str().unwrap()).unwrap();
            if table == "published_periods" {
                // period, run_id, published_at, job_hash, rule_hash, customers, rows_read
                serde_json::to_string(&[&row[0], &row[3], &row[4], &row[5], &row[6]]).unwrap()
            } else {
                serde_json::to_string(&row).unwrap()
            }
        })
        .collect()
}

fn publish(dir: &Path, config: &Path, periods: &[&str]) {
    for period in periods {
        run_job(dir, &default_job(), config, period);
    }
}

/// The fixture published as Hive Parquet and as Delta tables (two periods).
fn two_warehouses(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let data = dir.join("transactions");
    write_fixture(&data);
    let hive = dir.join("hive");
    let hive_dir = dir.join("hive-run");
    std::fs::create_dir_all(&hive_dir).unwrap();
    let hive_config = write_config(&hive_dir, &data, &hive);
    publish(dir, &hive_config, &["2024-05", "2024-06"]);
    let delta = dir.join("delta");
    let delta_dir = dir.join("delta-run");
    std::fs::create_dir_all(&delta_dir).unwrap();
    let delta_config = delta_config(&delta_dir, &data, &delta, "");
    publish(dir, &delta_config, &["2024-05", "2024-06"]);
    (data, delta, delta_config)
}

/// The Delta log's versions of a table, each as the rows per period that
/// Polars reads at that version.
fn versions(table: &Path) -> Vec<BTreeMap<String, u64>> {
    let read = python_json(
        r#"
import polars as pl
from deltalake import DeltaTable
path = sys.argv[1]
latest = DeltaTable(path).version()
out = []
for v in range(latest + 1):
    frame = pl.read_delta(path, version=v)
    counts = frame.group_by('period').len().rows() if frame.height else []
    out.append({p: n for p, n in counts})
print(json.dumps(out))
"#,
        &[&table.display().to_string()],
        false,
    );
    serde_json::from_value(read).unwrap()
}

/// The Parquet files under a folder.
fn parquet_files(folder: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(folder)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

// ---------------------------------------------------------------- tests

/// Both periods of the fixture published as Delta tables read, by Polars'
/// `scan_delta` and by DuckDB's `delta_scan`, exactly the rows that DuckDB
/// reads from the Hive run of the same data; the hand-checked segment counts
/// of 2024-06; the Delta schema has the contract's columns, then `period`.
#[test]
fn delta_tables_read_by_polars_and_duckdb_equal_the_hive_run() {
    let dir = tempfile::tempdir().unwrap();
    let (_, delta, _) = two_warehouses(dir.path());
    let hive = dir.path().join("hive");
    assert_same_rows(read_three_ways(
        &hive,
        &delta.join(JOB).display().to_string(),
        &Access::default(),
    ));
    // The hand-checked counts of 2024-06 (as tests/it/readers.rs), by DuckDB.
    let counts = python_json(
        &format!(
            r#"{DUCKDB_DELTA}
print(json.dumps(con.sql(f"SELECT period || '|' || segment || '|' || n FROM (SELECT period, segment, count(*) AS n FROM delta_scan('{{sys.argv[1]}}') GROUP BY ALL) ORDER BY 1").fetchall()))
"#
        ),
        &[&delta.join(JOB).join("snapshots").display().to_string()],
        true,
    );
    let lines: Vec<&str> = counts
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[0].as_str().unwrap())
        .filter(|line| line.starts_with("2024-06"))
        .collect();
    assert_eq!(
        lines,
        [
            "2024-06|about_to_sleep|3",
            "2024-06|cant_lose|1",
            "2024-06|champions|2",
            "2024-06|hibernating|6",
            "2024-06|lost|2",
            "2024-06|loyal|3",
            "2024-06|new_customers|1",
            "2024-06|promising|1",
        ]
    );
    // The log as delta-rs' Python package reads it: partitioned by period,
    // one commit per publish after the table's creation.
    let described = python_json(
        r#"
from deltalake import DeltaTable
t = DeltaTable(sys.argv[1])
p = t.protocol()
print(json.dumps({'partitions': t.metadata().partition_columns, 'version': t.version(),
                  'fields': [f.name for f in t.schema().fields],
                  'protocol': [p.min_reader_version, p.min_writer_version]}))
"#,
        &[&delta.join(JOB).join("snapshots").display().to_string()],
        false,
    );
    assert_eq!(described["partitions"], serde_json::json!(["period"]));
    assert_eq!(described["version"], 2, "create, 2024-05, 2024-06");
    assert_eq!(described["protocol"], serde_json::json!([1, 2]));
    let fields = described["fields"].as_array().unwrap();
    assert_eq!(fields.first().unwrap(), "customer_id");
    assert_eq!(fields.last().unwrap(), "period");
}

/// A rerun of 2024-06 with one more customer replaces the partition in one
/// commit: the table holds the new rows once (not doubled); the old file
/// stays until a VACUUM; and no version of the log, read by Polars, holds
/// anything but the whole old or the whole new period.
#[test]
fn rerun_replaces_the_period_and_no_version_holds_half_of_one() {
    let dir = tempfile::tempdir().unwrap();
    let (data, delta, config) = two_warehouses(dir.path());
    let snapshots = delta.join(JOB).join("snapshots");
    let june = snapshots.join("period=2024-06");
    assert_eq!(parquet_files(&june).len(), 1);
    // One more customer in June.
    let extra = dir.path().join("extra");
    let at = chrono::NaiveDate::from_ymd_opt(2024, 6, 15)
        .unwrap()
        .and_hms_opt(12, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_micros();
    write_transactions(&extra, &[(Some("c99"), "o99a", at, 12_000)]);
    std::fs::copy(
        extra.join("month=2024-06/part-0.parquet"),
        data.join("month=2024-06/part-1.parquet"),
    )
    .unwrap();
    publish(dir.path(), &config, &["2024-06"]);

    let history = versions(&snapshots);
    assert_eq!(
        history.len(),
        4,
        "create, 2024-05, 2024-06, the rerun: {history:?}"
    );
    let old = history[2]["2024-06"];
    let new = history[3]["2024-06"];
    assert_eq!(new, old + 1, "{history:?}");
    for (version, counts) in history.iter().enumerate() {
        let june = counts.get("2024-06").copied().unwrap_or(0);
        assert!(
            [0, old, new].contains(&june),
            "version {version} holds {june} rows of 2024-06: {history:?}"
        );
        assert!(
            [0, history[1]["2024-05"]].contains(&counts.get("2024-05").copied().unwrap_or(0)),
            "{history:?}"
        );
    }
    // Replaced, not deleted: readers of version 2 still find its file.
    assert_eq!(parquet_files(&june).len(), 2);
    // The run read its previous period back from the Delta table (the
    // published snapshot reused, not reclassified).
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(delta.join(JOB).join("_runs/period=2024-06/_manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["from_side"], "published", "{manifest}");
}

/// A run whose commit of `migrations` fails leaves that table at its
/// previous version (the old period, whole) and the period unpublished; the
/// next run publishes it.
#[test]
fn failed_commit_leaves_the_previous_version() {
    let dir = tempfile::tempdir().unwrap();
    let (_, delta, config) = two_warehouses(dir.path());
    let migrations = delta.join(JOB).join("migrations");
    let before = versions(&migrations);
    let output = Command::new(env!("CARGO_BIN_EXE_segments"))
        .args([
            "run",
            "--job",
            default_job().to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--period",
            "2024-06",
        ])
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .env(
            "SEGMENTS_TEST_STORAGE_FAULTS",
            "fail:put:1:migrations/_delta_log/",
        )
        .output()
        .unwrap();
    // A storage failure: exit 4, which the scheduler retries.
    assert_eq!(output.status.code(), Some(4), "the fault must fail the run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("migrations"), "{stderr}");
    assert_eq!(versions(&migrations), before, "migrations unchanged");
    assert!(
        !delta
            .join(JOB)
            .join("_runs/period=2024-06/_SUCCESS")
            .exists(),
        "the period is unpublished until a run publishes it whole"
    );
    publish(dir.path(), &config, &["2024-06"]);
    assert!(
        delta
            .join(JOB)
            .join("_runs/period=2024-06/_SUCCESS")
            .exists()
    );
    let after = versions(&migrations);
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(after.last(), before.last(), "the same rows, republished");
}

/// Retention: `retention.months: 1` after 2024-06 removes 2024-05 from
/// every Delta table by a commit (readers no longer see it), the files stay
/// for the 168h of `vacuum_after`; a VACUUM with no retention then deletes
/// exactly the files that no version still needs, and the table reads the
/// same.
#[test]
fn retention_removes_expired_periods_and_vacuum_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("transactions");
    write_fixture(&data);
    let delta = dir.path().join("delta");
    let config = delta_config(dir.path(), &data, &delta, "");
    publish(dir.path(), &config, &["2024-05"]);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}retention:\n  months: 1\n")).unwrap();
    publish(dir.path(), &config, &["2024-06"]);
    let snapshots = delta.join(JOB).join("snapshots");
    let last = versions(&snapshots).pop().unwrap();
    assert_eq!(last.keys().collect::<Vec<_>>(), ["2024-06"], "{last:?}");
    assert_eq!(
        parquet_files(&snapshots.join("period=2024-05")).len(),
        1,
        "kept until vacuum_after"
    );
    assert!(!delta.join(JOB).join("_runs/period=2024-05").exists());

    // VACUUM now, as the retention does once the files are old enough.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let vacuumed = rt.block_on(async {
        let warehouse =
            segments::storage::Warehouse::open(&format!("file://{}/", delta.display())).unwrap();
        segments::warehouse::delta::vacuum(
            &warehouse,
            JOB,
            "snapshots",
            std::time::Duration::ZERO,
            segments::warehouse::delta::Vacuum::Full,
        )
        .await
        .unwrap()
    });
    assert_eq!(vacuumed, 1, "the 2024-05 file");
    assert!(parquet_files(&snapshots.join("period=2024-05")).is_empty());
    assert_eq!(parquet_files(&snapshots.join("period=2024-06")).len(), 1);
    let read = python_json(
        r#"
import polars as pl
print(json.dumps(pl.scan_delta(sys.argv[1]).collect().group_by('period').len().rows()))
"#,
        &[&snapshots.display().to_string()],
        false,
    );
    assert_eq!(read, serde_json::json!([["2024-06", 19]]));
}

/// A config that says Hive over a Delta warehouse (or the reverse) is
/// refused with the table and what to do, before anything is replaced;
/// `vacuum_after` is checked.
#[test]
fn a_warehouse_in_the_other_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("transactions");
    write_fixture(&data);
    let delta = dir.path().join("delta");
    let config = delta_config(dir.path(), &data, &delta, "");
    publish(dir.path(), &config, &["2024-05"]);
    let hive_dir = dir.path().join("hive-config");
    std::fs::create_dir_all(&hive_dir).unwrap();
    let hive_config = write_config(&hive_dir, &data, &delta);
    let output = segments(
        dir.path(),
        &[
            "run",
            "--job",
            default_job().to_str().unwrap(),
            "--config",
            hive_config.to_str().unwrap(),
            "--period",
            "2024-06",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is a Delta table but the config says `warehouse.format: hive`"),
        "{stderr}"
    );
    let short = delta_config(dir.path(), &data, &delta, "  vacuum_after: 10m\n");
    let output = segments(
        dir.path(),
        &[
            "validate",
            "--job",
            default_job().to_str().unwrap(),
            "--config",
            short.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("warehouse.vacuum_after"), "{stderr}");
}

/// `segments catalog --target duckdb` over a Delta warehouse: views over
/// `delta_scan` that DuckDB (with the delta extension) answers with the
/// complete periods; the Spark, Trino and Athena DDL parse with sqlglot and
/// declare Delta tables.
#[test]
fn catalog_declares_delta_tables() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, config) = two_warehouses(dir.path());
    let sql = dir.path().join("duckdb.sql");
    segments_ok(
        dir.path(),
        &[
            "catalog",
            "--target",
            "duckdb",
            "--jobs",
            default_job().to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--out",
            sql.to_str().unwrap(),
        ],
    );
    let ddl = std::fs::read_to_string(&sql).unwrap();
    assert!(ddl.contains("delta_scan("), "{ddl}");
    assert!(!ddl.contains("read_parquet("), "{ddl}");
    let answers = python_json(
        &format!(
            r#"{DUCKDB_DELTA}
# The file as written, its INSTALL delta and LOAD delta included (the
# extension is already in the extension directory: INSTALL does nothing).
for statement in open(sys.argv[1]).read().split(';\n'):
    if statement.strip():
        con.execute(statement)
print(json.dumps({{
    'periods': con.sql('SELECT period, count(*) FROM rfm_monthly_snapshots GROUP BY ALL ORDER BY 1').fetchall(),
    'latest': con.sql('SELECT count(*) FROM rfm_monthly_snapshots_latest').fetchall(),
}}))
"#
        ),
        &[sql.to_str().unwrap()],
        true,
    );
    assert_eq!(
        answers["periods"],
        serde_json::json!([["2024-05", 17], ["2024-06", 19]])
    );
    assert_eq!(answers["latest"], serde_json::json!([[19]]));

    for (target, location, marker) in [
        ("spark", "s3a://acme-bi/segments/", "USING DELTA"),
        (
            "trino",
            "s3://acme-bi/segments/",
            "CALL system.register_table(",
        ),
        ("athena", "s3://acme-bi/segments/", "'table_type' = 'DELTA'"),
    ] {
        let out = dir.path().join(format!("{target}.sql"));
        segments_ok(
            dir.path(),
            &[
                "catalog",
                "--target",
                target,
                "--jobs",
                default_job().to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
                "--location",
                location,
                "--out",
                out.to_str().unwrap(),
            ],
        );
        let ddl = std::fs::read_to_string(&out).unwrap();
        // 8 tables and published_periods, each declared as Delta once.
        assert_eq!(ddl.matches(marker).count(), 9, "{target}:\n{ddl}");
        assert!(
            ddl.contains(&format!("{location}rfm_monthly/snapshots")),
            "{ddl}"
        );
        let report = crate::catalog::sqlglot_check_with(target, &ddl, &contract_columns());
        assert_eq!(
            report["unresolved"],
            serde_json::json!([]),
            "{target}: {report}"
        );
    }
    let out = dir.path().join("bigquery.sql");
    let output = segments(
        dir.path(),
        &[
            "catalog",
            "--target",
            "bigquery",
            "--jobs",
            default_job().to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--location",
            "gs://acme-bi/segments/",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("BigLake"));
}

/// The columns of the Delta tables as the catalog names them
/// (`segments.rfm_monthly_<table>_raw`, `segments.rfm_monthly_published_periods`),
/// from the checked-in contracts (`schemas/*.json`), with `period` for the
/// partitioned ones.
fn contract_columns() -> serde_json::Value {
    TABLES
        .iter()
        .map(|table| {
            let text =
                std::fs::read_to_string(repo().join("schemas").join(format!("{table}.json")))
                    .unwrap();
            let json: serde_json::Value = serde_json::from_str(&text).unwrap();
            let mut names: Vec<String> = json["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap().to_string())
                .collect();
            let name = if *table == "published_periods" {
                format!("segments.{JOB}_{table}")
            } else {
                names.push("period".into());
                format!("segments.{JOB}_{table}_raw")
            };
            (name, serde_json::json!(names))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Two runs of different periods publishing to the same Delta tables at the
/// same moment: both commit (the later commit of each table is rebuilt on
/// the other's version), and the tables hold both periods once.
#[test]
fn concurrent_runs_of_two_periods_both_commit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("transactions");
    write_fixture(&data);
    let delta = dir.path().join("delta");
    let config = delta_config(dir.path(), &data, &delta, "");
    let spawn = |period: &str| {
        Command::new(env!("CARGO_BIN_EXE_segments"))
            .args([
                "run",
                "--job",
                default_job().to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
                "--period",
                period,
            ])
            .current_dir(dir.path())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let runs = [spawn("2024-05"), spawn("2024-06")];
    for run in runs {
        let output = run.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    for table in ["snapshots", "segment_summary"] {
        let last = versions(&delta.join(JOB).join(table)).pop().unwrap();
        assert_eq!(
            last.keys().collect::<Vec<_>>(),
            ["2024-05", "2024-06"],
            "{table}"
        );
    }
    let snapshots = versions(&delta.join(JOB).join("snapshots")).pop().unwrap();
    assert_eq!(snapshots["2024-05"], 17);
    assert_eq!(snapshots["2024-06"], 19);
}

/// The same on the S3 test server (`s3s-fs`, which checks `If-None-Match`
/// on PUT, the conditional put of the commits): two periods published as
/// Delta tables to `s3://warehouse/delta/`, read over S3 by Polars'
/// `scan_delta` (delta-rs' object store, endpoint and keys as storage
/// options) and DuckDB's `delta_scan` (an S3 secret for the server), equal
/// the local Hive run.
#[test]
fn s3_delta_tables_read_by_polars_and_duckdb_equal_the_local_hive_run() {
    let setup = crate::stores::s3::setup();
    let config = setup.config_publishing_to(
        "delta-s3.yaml",
        "{url: s3://warehouse/delta/, format: delta}",
        "",
        false,
    );
    for period in ["2024-05", "2024-06"] {
        crate::stores::ok(&setup.run(&config, period), period);
    }
    setup.local_runs(&["2024-05", "2024-06"]);
    let endpoint = setup.server.endpoint().to_string();
    let host = endpoint.trim_start_matches("http://").to_string();
    let access = Access {
        storage_options: Some(serde_json::json!({
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": crate::stores::s3::ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": crate::stores::s3::SECRET_KEY,
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        })),
        duckdb_setup: vec![
            "LOAD httpfs".into(),
            format!(
                "CREATE SECRET s3test (TYPE s3, KEY_ID '{}', SECRET '{}', REGION 'us-east-1', ENDPOINT '{host}', URL_STYLE 'path', USE_SSL false)",
                crate::stores::s3::ACCESS_KEY,
                crate::stores::s3::SECRET_KEY
            ),
        ],
    };
    assert_same_rows(read_three_ways(
        &setup.local_warehouse,
        "s3://warehouse/delta/rfm_monthly",
        &access,
    ));
    // The commits went up as conditional creates: every log entry's PUT.
    let requests = setup.server.requests();
    let commits: Vec<&(String, String)> = requests
        .iter()
        .filter(|(method, path)| method == "PUT" && path.contains("/_delta_log/0"))
        .collect();
    assert!(
        commits.len() >= 2 * TABLES.len(),
        "a commit per table and period: {commits:?}"
    );
}

/// `segments forget` on a Delta warehouse: the customer is gone from every
/// table as Polars reads it, and from every Parquet file left under the
/// tables (the files its commits replaced were deleted at once, as they
/// held the customer); both periods stay published.
#[test]
fn forget_removes_the_customer_from_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, delta, config) = two_warehouses(dir.path());
    let victim = "c01";
    let mentions = || {
        python_json(
            r#"
import glob, duckdb
root, victim = sys.argv[1], sys.argv[2]
found = []
for f in sorted(glob.glob(f'{root}/**/*.parquet', recursive=True)):
    if victim in repr(duckdb.sql(f"SELECT * FROM read_parquet('{f}')").fetchall()):
        found.append(f[len(root):])
print(json.dumps(found))
"#,
            &[&delta.join(JOB).display().to_string(), victim],
            false,
        )
    };
    let before = mentions();
    assert!(
        before.as_array().unwrap().iter().any(|f| f
            .as_str()
            .unwrap()
            .starts_with("/snapshots/period=2024-05/")),
        "{before}"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_segments"))
        .args([
            "forget",
            "--config",
            config.to_str().unwrap(),
            "--customer-id",
            victim,
        ])
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .env("SEGMENTS_ERASURE_SALT", "test-salt-0123456789abcdef")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(mentions(), serde_json::json!([]));
    let read = python_json(
        r#"
import polars as pl
f = pl.read_delta(sys.argv[1])
print(json.dumps({'victim': f.filter(pl.col('customer_id') == sys.argv[2]).height,
                  'periods': sorted(f.group_by('period').len().rows())}))
"#,
        &[
            &delta.join(JOB).join("snapshots").display().to_string(),
            victim,
        ],
        false,
    );
    assert_eq!(read["victim"], 0);
    assert_eq!(
        read["periods"],
        serde_json::json!([["2024-05", 16], ["2024-06", 18]])
    );
    for period in ["2024-05", "2024-06"] {
        assert!(
            delta
                .join(JOB)
                .join(format!("_runs/period={period}/_SUCCESS"))
                .exists()
        );
    }
}

/// On Azurite (Azure Blob's emulator), whose conditional put of the commits
/// is `If-None-Match: *` too: two periods published as Delta tables to
/// `az://warehouse/delta/`, read over the Blob API by Polars' `scan_delta`,
/// equal the local Hive run read by DuckDB. (DuckDB's reading of Azure is
/// not tried: its azure extension is another download.)
#[test]
fn azure_delta_tables_read_by_polars_equal_the_local_hive_run() {
    let Some(setup) = crate::stores::azure::azure_setup(
        "azure_delta_tables_read_by_polars_equal_the_local_hive_run",
    ) else {
        return;
    };
    let config = setup.config_publishing_to(
        "delta-az.yaml",
        "{url: az://warehouse/delta/, format: delta}",
        "",
        false,
    );
    for period in ["2024-05", "2024-06"] {
        crate::stores::ok(&setup.run(&config, period), period);
    }
    setup.local_runs(&["2024-05", "2024-06"]);
    let options = serde_json::json!({
        "account_name": crate::stores::azure::ACCOUNT,
        "account_key": crate::stores::azure::KEY,
        "endpoint": setup.server.account_url(),
        "allow_http": "true",
    })
    .to_string();
    let read = read_polars_and_hive(
        &setup.local_warehouse.join(JOB),
        "az://warehouse/delta/rfm_monthly",
        &options,
    );
    for table in TABLES {
        let [hive, polars] = [&read[table]["hive"], &read[table]["polars"]];
        assert!(
            !hive.as_array().unwrap().is_empty() || table == "rejects",
            "{table}: no rows"
        );
        assert_eq!(
            without_run_columns(table, polars),
            without_run_columns(table, hive),
            "{table}: Polars scan_delta over Azure"
        );
    }
}

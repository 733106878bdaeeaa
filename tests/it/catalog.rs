//! `segments catalog`: the DuckDB DDL executed by DuckDB against a warehouse
//! made here (every view answers, complete periods only, trend = summaries,
//! French labels), and the Trino, Spark, Athena and BigQuery DDL parsed by
//! sqlglot in each dialect and snapshot-tested.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;

use super::common::{job_with, read_parquet, repo, run_job, segments, segments_ok, table_file};
use super::jobs::generated;

/// Run `queries` on a DuckDB database file (read-only, as a BI tool would),
/// in one process; for each, one `|`-joined line per row, in its order.
fn duckdb_batch(database: &Path, queries: &[String]) -> Vec<Vec<String>> {
    let output = Command::new("python3")
        .args([
            "-c",
            "import json, sys, duckdb\nc = duckdb.connect(sys.argv[1], read_only=True)\nresults = []\nfor q in json.loads(sys.argv[2]):\n    try:\n        results.append(['|'.join('' if v is None else str(v) for v in row) for row in c.sql(q).fetchall()])\n    except Exception as e:\n        sys.exit(f'{q}: {e}')\nprint(json.dumps(results))",
            database.to_str().unwrap(),
            &serde_json::to_string(queries).unwrap(),
        ])
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "DuckDB (run the tests with scripts/test, which installs requirements-dev.txt into .venv) failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn duckdb_rows(database: &Path, query: &str) -> Vec<String> {
    duckdb_batch(database, &[query.to_string()]).remove(0)
}

/// `segment → customers` of a published `segment_summary` file.
fn summary_counts(batches: &[RecordBatch]) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for batch in batches {
        let segments = batch
            .column_by_name("segment")
            .unwrap()
            .as_string::<i32>()
            .clone();
        let customers = batch
            .column_by_name("customers")
            .unwrap()
            .as_primitive::<Int64Type>()
            .clone();
        for row in 0..batch.num_rows() {
            counts.insert(segments.value(row).to_string(), customers.value(row));
        }
    }
    counts
}

/// Build `bi.duckdb` for every shipped job over a warehouse where
/// rfm_monthly and channel_category published 2025-04 and 2025-05, and
/// 2025-06 is written but incomplete (no `_SUCCESS`, not in
/// `published_periods`); the other jobs never ran.
#[test]
fn duckdb_views_answer_and_show_complete_periods_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = generated(dir.path(), 300, 6, "2025-01", 7);
    let rfm = repo().join("jobs/rfm_monthly.yaml");
    let channels = repo().join("jobs/channel_category.yaml");
    for period in ["2025-04", "2025-05", "2025-06"] {
        run_job(dir.path(), &rfm, &config, period);
        run_job(dir.path(), &channels, &config, period);
    }
    let warehouse = dir.path().join("warehouse");
    // 2025-06 becomes incomplete: its files stay, its `_SUCCESS` goes, and
    // republishing 2025-05 rebuilds `published_periods` without it.
    for job in ["rfm_monthly", "channel_category"] {
        std::fs::remove_file(warehouse.join(job).join("_runs/period=2025-06/_SUCCESS")).unwrap();
    }
    run_job(dir.path(), &rfm, &config, "2025-05");
    run_job(dir.path(), &channels, &config, "2025-05");
    assert!(table_file(&warehouse, "rfm_monthly", "snapshots", "2025-06").exists());

    let database = dir.path().join("bi.duckdb");
    let jobs = repo().join("jobs");
    segments_ok(
        dir.path(),
        &[
            "catalog",
            "--target",
            "duckdb",
            "--jobs",
            jobs.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--out",
            database.to_str().unwrap(),
        ],
    );

    // Every view answers, those of the jobs that never ran too (empty).
    let views = duckdb_rows(
        &database,
        "SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1",
    );
    for job in [
        "rfm_monthly",
        "rfm_7_segments",
        "lifecycle_groups",
        "value_tiers",
        "audiences",
        "channel_category",
    ] {
        for suffix in ["latest", "published_periods"] {
            let view = format!("{job}_{suffix}");
            assert!(views.contains(&view), "{view} missing from {views:?}");
        }
    }
    for view in [
        "rfm_monthly_segment_trend",
        "rfm_monthly_migration_flows",
        "rfm_monthly_customer_history",
        "rfm_monthly_snapshots_latest",
        "channel_category_audience_trend",
        "channel_category_audiences_latest",
        "value_tiers_segment_trend",
    ] {
        assert!(views.contains(&view.to_string()), "{view} missing");
    }
    let answers = duckdb_batch(
        &database,
        &views
            .iter()
            .map(|v| format!("SELECT count(*) FROM {v}"))
            .collect::<Vec<_>>(),
    );
    let counts: BTreeMap<String, i64> = views
        .iter()
        .zip(answers)
        .map(|(view, rows)| (view.clone(), rows[0].parse().unwrap()))
        .collect();
    assert_eq!(counts["value_tiers_segment_trend"], 0, "never ran: empty");
    assert!(counts["rfm_monthly_segment_trend"] > 0);
    assert!(counts["channel_category_audience_trend"] > 0);

    // The incomplete period is in storage (the raw views) and in no other view.
    let raw_periods = duckdb_rows(
        &database,
        "SELECT DISTINCT period FROM rfm_monthly_snapshots_raw ORDER BY 1",
    );
    assert_eq!(raw_periods, ["2025-04", "2025-05", "2025-06"]);
    assert_eq!(
        duckdb_rows(
            &database,
            "SELECT period FROM rfm_monthly_published_periods ORDER BY 1"
        ),
        ["2025-04", "2025-05"]
    );
    let with_period = duckdb_rows(
        &database,
        "SELECT DISTINCT table_name FROM duckdb_columns() WHERE column_name = 'period' AND table_name NOT LIKE '%_raw' ORDER BY 1",
    );
    assert!(with_period.len() > 50, "{with_period:?}");
    let incomplete = duckdb_batch(
        &database,
        &with_period
            .iter()
            .map(|v| format!("SELECT count(*) FROM {v} WHERE period = '2025-06'"))
            .collect::<Vec<_>>(),
    );
    for (view, rows) in with_period.iter().zip(incomplete) {
        assert_eq!(rows, ["0"], "{view} shows the incomplete period");
    }

    // `_latest` views hold the last complete period only.
    for view in [
        "rfm_monthly_latest",
        "rfm_monthly_snapshots_latest",
        "rfm_monthly_segment_summary_latest",
        "channel_category_latest",
        "channel_category_audiences_latest",
    ] {
        assert_eq!(
            duckdb_rows(&database, &format!("SELECT DISTINCT period FROM {view}")),
            ["2025-05"],
            "{view}"
        );
    }
    let snapshot_rows: usize = read_parquet(&table_file(
        &warehouse,
        "rfm_monthly",
        "snapshots",
        "2025-05",
    ))
    .iter()
    .map(RecordBatch::num_rows)
    .sum();
    assert_eq!(counts["rfm_monthly_latest"], snapshot_rows as i64);

    // The trend's counts are the published summaries', and add up to the
    // snapshots (customer history) of each period.
    for period in ["2025-04", "2025-05"] {
        let summary = summary_counts(&read_parquet(&table_file(
            &warehouse,
            "rfm_monthly",
            "segment_summary",
            period,
        )));
        let trend: BTreeMap<String, i64> = duckdb_rows(
            &database,
            &format!(
                "SELECT segment, customers FROM rfm_monthly_segment_trend WHERE period = '{period}'"
            ),
        )
        .into_iter()
        .map(|line| {
            let (segment, customers) = line.split_once('|').unwrap();
            (segment.to_string(), customers.parse().unwrap())
        })
        .collect();
        assert_eq!(trend, summary, "{period}");
        let history = duckdb_rows(
            &database,
            &format!("SELECT count(*) FROM rfm_monthly_customer_history WHERE period = '{period}'"),
        );
        assert_eq!(history[0], summary.values().sum::<i64>().to_string());
    }
    // The flows of a period add up to its migrations (one per customer of
    // either side).
    assert_eq!(
        duckdb_rows(
            &database,
            "SELECT sum(customers) FROM rfm_monthly_migration_flows WHERE period = '2025-05'"
        ),
        duckdb_rows(
            &database,
            "SELECT count(*) FROM rfm_monthly_migrations WHERE period = '2025-05'"
        )
    );

    // English labels by default, next to the stable key; column comments
    // come from the contracts.
    assert_eq!(
        duckdb_rows(
            &database,
            "SELECT DISTINCT segment_label FROM rfm_monthly_segment_trend WHERE segment = 'loyal'"
        ),
        ["Loyal"]
    );
    assert_eq!(
        duckdb_rows(
            &database,
            "SELECT comment FROM duckdb_columns() WHERE table_name = 'rfm_monthly_snapshots' AND column_name = 'recency_days'"
        ),
        ["Days from the last purchase (all history) to as_of_date."]
    );

    // The same warehouse with `locale: fr` in the config: French labels.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("locale: fr\n");
    let french_config = dir.path().join("config-fr.yaml");
    std::fs::write(&french_config, text).unwrap();
    let french = dir.path().join("bi-fr.duckdb");
    segments_ok(
        dir.path(),
        &[
            "catalog",
            "--target",
            "duckdb",
            "--jobs",
            rfm.to_str().unwrap(),
            "--config",
            french_config.to_str().unwrap(),
            "--out",
            french.to_str().unwrap(),
        ],
    );
    let labels: BTreeSet<String> = duckdb_rows(
        &french,
        "SELECT DISTINCT segment || '=' || segment_label FROM rfm_monthly_segment_trend",
    )
    .into_iter()
    .collect();
    for expected in [
        "champions=Champions",
        "loyal=Fidèles",
        "at_risk=À risque",
        "hibernating=En hibernation",
        "lost=Perdus",
    ] {
        assert!(labels.contains(expected), "{expected} not in {labels:?}");
    }
    assert_eq!(
        duckdb_rows(
            &french,
            "SELECT DISTINCT from_label FROM rfm_monthly_migration_flows WHERE from_segment = '(new)'"
        ),
        ["(nouveaux)"]
    );
    assert!(
        duckdb_rows(
            &french,
            "SELECT DISTINCT segment_label FROM rfm_monthly_latest WHERE segment = 'loyal'"
        )
        .iter()
        .all(|l| l == "Fidèles")
    );
}

/// The DDL of `target` for rfm_monthly (segments) and channel_category
/// (audiences) at a fixed bucket URL, run from the repository root so that
/// the text has no temporary path.
fn ddl(target: &str, location: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(format!("{target}.sql"));
    segments_ok(
        &repo(),
        &[
            "catalog",
            "--target",
            target,
            "--jobs",
            "jobs/rfm_monthly.yaml",
            "--jobs",
            "jobs/channel_category.yaml",
            "--config",
            "config/local.yaml",
            "--location",
            location,
            "--out",
            out.to_str().unwrap(),
        ],
    );
    std::fs::read_to_string(out).unwrap()
}

/// Parse a DDL file with sqlglot in `dialect` (errors raise) and report, as
/// JSON: the CREATE statements by kind, the statements sqlglot keeps as
/// opaque commands, and the tables and columns views read that the file does
/// not declare before them.
const SQLGLOT_CHECK: &str = r#"
import json, re, sys
import sqlglot
from sqlglot import exp
path, dialect = sys.argv[1], sys.argv[2]
# Columns of tables the DDL registers without listing them (Delta tables,
# whose columns are in their log), from the contracts.
known = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
text = open(path, encoding='utf-8').read()
partition_clauses = 0
if dialect == 'bigquery':
    # sqlglot has no BigQuery `WITH PARTITION COLUMNS (...)`: match its exact
    # form here and parse the rest.
    text, partition_clauses = re.subn(r"\nWITH PARTITION COLUMNS \(`period` STRING\)\n", "\n", text)
creates, commands, unresolved = {}, [], []
columns = {table: set(names) for table, names in known.items()}
def name(table):
    return '.'.join(p for p in (table.db, table.name) if p)
for statement in sqlglot.parse(text, read=dialect, error_level=sqlglot.ErrorLevel.RAISE):
    if statement is None:
        continue
    if not isinstance(statement, exp.Create):
        commands.append(statement.sql(dialect=dialect))
        continue
    kind = statement.args['kind']
    creates[kind] = creates.get(kind, 0) + 1
    if kind == 'TABLE':
        declared = {c.name for c in statement.find_all(exp.ColumnDef)}
        if name(statement.find(exp.Table)).endswith('_raw'):
            declared.add('period')  # the Hive partition column
        table = name(statement.find(exp.Table))
        columns[table] = declared | columns.get(table, set())
    elif kind == 'VIEW':
        view, select = name(statement.find(exp.Table)), statement.expression
        aliases = {t.alias_or_name: name(t) for t in select.find_all(exp.Table)}
        for table in aliases.values():
            if table not in columns:
                unresolved.append(view + ' reads ' + table)
        output = set()
        for projection in select.expressions:
            if isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star):
                output |= columns.get(aliases.get(projection.table), set())
            else:
                output.add(projection.alias_or_name)
        for column in select.find_all(exp.Column):
            if column.table and not isinstance(column.this, exp.Star):
                if column.name not in columns.get(aliases.get(column.table), set()):
                    unresolved.append(view + ' reads ' + column.table + '.' + column.name)
        columns[view] = output
print(json.dumps({'creates': creates, 'commands': commands, 'unresolved': unresolved, 'partition_clauses': partition_clauses}))
"#;

fn sqlglot_check(target: &str, ddl: &str) -> serde_json::Value {
    sqlglot_check_with(target, ddl, &serde_json::json!({}))
}

/// [`sqlglot_check`], with the columns (`{"schema.table": [names]}`) of the
/// tables the DDL registers without declaring their columns.
pub(crate) fn sqlglot_check_with(
    target: &str,
    ddl: &str,
    known_columns: &serde_json::Value,
) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ddl.sql");
    std::fs::write(&file, ddl).unwrap();
    let output = Command::new("python3")
        .args([
            "-c",
            SQLGLOT_CHECK,
            file.to_str().unwrap(),
            target,
            &known_columns.to_string(),
        ])
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "sqlglot (run the tests with scripts/test, which installs requirements-dev.txt into .venv) cannot parse the {target} DDL:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// 13 tables (8 + published_periods for rfm_monthly, 3 + published_periods
/// for channel_category) of which 11 are partitioned; 2 × 11 views over
/// them, 4 analytic views for rfm_monthly and 2 for channel_category.
const TABLES: u64 = 13;
const PARTITIONED: u64 = 11;
const VIEWS: u64 = 28;

fn check_dialect(target: &str, location: &str, schema_kind: &str, command: Option<&str>) {
    let text = ddl(target, location);
    let report = sqlglot_check(target, &text);
    let creates = &report["creates"];
    assert_eq!(creates["TABLE"], TABLES, "{target}: {report}");
    assert_eq!(creates["VIEW"], VIEWS, "{target}: {report}");
    assert_eq!(creates[schema_kind], 1, "{target}: {report}");
    assert_eq!(report["unresolved"], serde_json::json!([]), "{target}");
    let commands: Vec<&str> = report["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    match command {
        Some(prefix) => {
            assert_eq!(commands.len() as u64, PARTITIONED, "{target}: {commands:?}");
            assert!(
                commands.iter().all(|c| c.starts_with(prefix)),
                "{target}: {commands:?}"
            );
        }
        None => assert!(commands.is_empty(), "{target}: {commands:?}"),
    }
    // Every column of every table carries its description from schemas/.
    assert!(text.contains("Days from the last purchase (all history) to as_of_date."));
    assert!(text.contains(&format!("{location}rfm_monthly/snapshots/")));
    insta::assert_snapshot!(format!("catalog_{target}"), text);
}

#[test]
fn trino_ddl_parses() {
    check_dialect(
        "trino",
        "s3://acme-bi/segments/",
        "SCHEMA",
        Some("CALL system.sync_partition_metadata('segments', "),
    );
}

#[test]
fn spark_ddl_parses() {
    check_dialect(
        "spark",
        "s3a://acme-bi/segments/",
        "DATABASE",
        Some("MSCK REPAIR TABLE segments."),
    );
}

#[test]
fn athena_ddl_parses() {
    check_dialect("athena", "s3://acme-bi/segments/", "DATABASE", None);
}

#[test]
fn bigquery_ddl_parses() {
    let text = ddl("bigquery", "gs://acme-bi/segments/");
    let report = sqlglot_check("bigquery", &text);
    assert_eq!(report["partition_clauses"], PARTITIONED, "{report}");
    check_dialect("bigquery", "gs://acme-bi/segments/", "SCHEMA", None);
}

#[test]
fn catalog_refuses_locations_the_engine_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.sql");
    for (target, location, scheme) in [
        ("bigquery", "s3://acme-bi/segments/", "gs://"),
        ("athena", "gs://acme-bi/segments/", "s3://"),
    ] {
        let output = segments(
            &repo(),
            &[
                "catalog",
                "--target",
                target,
                "--location",
                location,
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert_eq!(output.status.code(), Some(2), "{target}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(scheme) && stderr.contains("--location"),
            "{stderr}"
        );
        assert!(!out.exists());
    }
    // A .duckdb file is for DuckDB only.
    let output = segments(
        &repo(),
        &[
            "catalog",
            "--target",
            "trino",
            "--out",
            dir.path().join("x.duckdb").to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn catalog_refuses_two_jobs_that_would_declare_the_same_view() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = dir.path().join("jobs");
    std::fs::create_dir(&jobs).unwrap();
    // `x_snapshots_latest` is both job x's last snapshots and job
    // x_snapshots's `J_latest`.
    for name in ["x", "x_snapshots"] {
        let job = job_with(dir.path(), |text| {
            text.replacen("name: rfm_monthly", &format!("name: {name}"), 1)
        });
        std::fs::rename(job, jobs.join(format!("{name}.yaml"))).unwrap();
    }
    let output = segments(
        &repo(),
        &[
            "catalog",
            "--target",
            "trino",
            "--jobs",
            jobs.to_str().unwrap(),
            "--location",
            "s3://acme-bi/segments/",
            "--out",
            dir.path().join("x.sql").to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`x_snapshots_latest`") && stderr.contains("rename one of the jobs"),
        "{stderr}"
    );
}

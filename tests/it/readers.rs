//! Published tables read back by readers other than our code: every table's
//! Parquet schema equals its checked-in contract (`schemas/*.json`, parsed
//! here independently), and DuckDB reads the Hive-partitioned tables with
//! the documented types and the hand-checked counts.

use std::path::Path;
use std::process::Command;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::common::{default_job, repo, run_job, table_file, write_config};
use crate::fixture::write_fixture;

const TABLES: [&str; 6] = [
    "snapshots",
    "migrations",
    "migration_matrix",
    "segment_summary",
    "score_thresholds",
    "segment_definitions",
];

fn publish_fixture(dir: &Path) -> std::path::PathBuf {
    let data = dir.join("transactions");
    write_fixture(&data);
    let warehouse = dir.join("warehouse");
    let config = write_config(dir, &data, &warehouse);
    let job = default_job();
    for period in ["2024-05", "2024-06"] {
        run_job(dir, &job, &config, period);
    }
    warehouse
}

/// (name, type name as in the contract, nullable)
fn contract(table: &str) -> Vec<(String, String, bool)> {
    let text =
        std::fs::read_to_string(repo().join("schemas").join(format!("{table}.json"))).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["type"].as_str().unwrap().to_string(),
                c["nullable"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn arrow_type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Utf8 => "utf8".into(),
        DataType::Int8 => "int8".into(),
        DataType::Int32 => "int32".into(),
        DataType::Int64 => "int64".into(),
        DataType::Float64 => "float64".into(),
        DataType::Date32 => "date32".into(),
        DataType::Decimal128(p, s) => format!("decimal({p},{s})"),
        DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) if tz.as_ref() == "UTC" => {
            "timestamp_us_utc".into()
        }
        other => format!("{other:?}"),
    }
}

fn duckdb_type_name(contract_type: &str) -> &'static str {
    match contract_type {
        "utf8" => "VARCHAR",
        "int8" => "TINYINT",
        "int32" => "INTEGER",
        "int64" => "BIGINT",
        "float64" => "DOUBLE",
        "date32" => "DATE",
        "decimal(18,2)" => "DECIMAL(18,2)",
        "timestamp_us_utc" => "TIMESTAMP WITH TIME ZONE",
        other => panic!("no DuckDB type for {other}"),
    }
}

#[test]
fn parquet_schemas_match_the_checked_in_contracts() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = publish_fixture(dir.path());
    let mut files: Vec<(&str, std::path::PathBuf)> = TABLES
        .iter()
        .map(|t| (*t, table_file(&warehouse, "rfm_monthly", t, "2024-06")))
        .collect();
    files.push((
        "published_periods",
        warehouse.join("rfm_monthly/published_periods/part-0.parquet"),
    ));
    for (table, file) in files {
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&file).unwrap()).unwrap();
        let actual: Vec<(String, String, bool)> = reader
            .schema()
            .fields()
            .iter()
            .map(|f| {
                (
                    f.name().clone(),
                    arrow_type_name(f.data_type()),
                    f.is_nullable(),
                )
            })
            .collect();
        assert_eq!(
            actual,
            contract(table),
            "{table}: written schema differs from schemas/{table}.json"
        );
    }
}

fn duckdb(sql: &str) -> String {
    let output = Command::new("python3")
        .args(["-c", "import sys, duckdb\nfor row in duckdb.sql(sys.argv[1]).fetchall(): print('|'.join('' if v is None else str(v) for v in row))", sql])
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "DuckDB (run the tests with scripts/test, which installs requirements-dev.txt into .venv) failed on {sql}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn duckdb_reads_the_hive_partitioned_tables() {
    let dir = tempfile::tempdir().unwrap();
    let warehouse = publish_fixture(dir.path());
    for table in TABLES {
        let glob = format!("{}/rfm_monthly/{table}/*/*.parquet", warehouse.display());
        let described = duckdb(&format!(
            "DESCRIBE SELECT * FROM read_parquet('{glob}', hive_partitioning = true)"
        ));
        let columns: Vec<(String, String)> = described
            .lines()
            .map(|l| {
                let mut parts = l.split('|');
                (
                    parts.next().unwrap().to_string(),
                    parts.next().unwrap().to_string(),
                )
            })
            .collect();
        let mut expected: Vec<(String, String)> = contract(table)
            .into_iter()
            .map(|(name, t, _)| (name, duckdb_type_name(&t).to_string()))
            .collect();
        expected.push(("period".into(), "VARCHAR".into()));
        assert_eq!(columns, expected, "{table} as DuckDB sees it");
    }
    // The hand-checked segment counts of 2024-06, and the previous period's total.
    let snapshots = format!("{}/rfm_monthly/snapshots/*/*.parquet", warehouse.display());
    let counts = duckdb(&format!(
        "SELECT period, segment, count(*) FROM read_parquet('{snapshots}', hive_partitioning = true) WHERE period = '2024-06' GROUP BY ALL ORDER BY segment"
    ));
    assert_eq!(
        counts,
        "2024-06|about_to_sleep|3\n2024-06|cant_lose|1\n2024-06|champions|2\n2024-06|hibernating|6\n2024-06|lost|2\n2024-06|loyal|3\n2024-06|new_customers|1\n2024-06|promising|1\n"
    );
    let totals = duckdb(&format!(
        "SELECT period, count(*) FROM read_parquet('{snapshots}', hive_partitioning = true) GROUP BY ALL ORDER BY period"
    ));
    assert_eq!(totals, "2024-05|17\n2024-06|19\n");
    let published = duckdb(&format!(
        "SELECT period, customers FROM '{}/rfm_monthly/published_periods/part-0.parquet' ORDER BY period",
        warehouse.display()
    ));
    assert_eq!(published, "2024-05|17\n2024-06|19\n");
}

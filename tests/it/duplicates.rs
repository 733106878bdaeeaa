//! Exact duplicate lines (docs/design.md §7): the same input with copied
//! files gives the tables of the input without them, by both ways a run
//! removes duplicates (the affected rows collected, or the exact DISTINCT
//! when a whole input is loaded twice), and counts each copy as a reject.

use std::path::{Path, PathBuf};

use crate::common::{copy_dir, default_job, duckdb_lines, segments, table_file, write_config};

const PERIOD: &str = "2025-12";
const TABLES: [&str; 5] = [
    "snapshots",
    "migrations",
    "segment_summary",
    "store_summary",
    "migration_matrix",
];

/// Every row of every table of `PERIOD`, as text (DuckDB reads them).
fn published(warehouse: &Path) -> Vec<(String, std::collections::BTreeSet<String>)> {
    TABLES
        .iter()
        .map(|table| {
            let file = table_file(warehouse, "rfm_monthly", table, PERIOD);
            let rows = duckdb_lines(&format!("SELECT t::VARCHAR FROM '{}' t", file.display()));
            (table.to_string(), rows)
        })
        .collect()
}

/// Runs the default job for `PERIOD` on `data`; returns the warehouse and stderr.
fn run(dir: &Path, name: &str, data: &Path) -> (PathBuf, String) {
    let warehouse = dir.join(format!("warehouse-{name}"));
    let config_dir = dir.join(format!("config-{name}"));
    std::fs::create_dir_all(&config_dir).unwrap();
    let config = write_config(&config_dir, &data.join("transactions"), &warehouse);
    let stderr = run_period(dir, &config, PERIOD);
    (warehouse, stderr)
}

/// `segments run` of the default job for `period` (past the reject-ratio
/// gate: copies are rejects); fails unless it exits 0, returns its stderr.
fn run_period(dir: &Path, config: &Path, period: &str) -> String {
    let output = segments(
        dir,
        &[
            "run",
            "--job",
            default_job().to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--period",
            period,
            "--allow-gate",
            "reject_ratio",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{period}: {stderr}");
    stderr
}

fn manifest(warehouse: &Path, period: &str) -> serde_json::Value {
    let path = warehouse.join(format!("rfm_monthly/_runs/period={period}/_manifest.json"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Rows of the Parquet files `glob`, and those dated in `PERIOD`.
fn lines_of(glob: &str) -> (u64, u64) {
    let counts = duckdb_lines(&format!(
        "SET TimeZone = 'UTC'; SELECT COUNT(*) || '|' || COUNT(*) FILTER (WHERE strftime(ordered_at, '%Y-%m') = '{PERIOD}') FROM read_parquet('{glob}', hive_partitioning = false)"
    ));
    let line = counts.into_iter().next().unwrap();
    let (all, in_period) = line.split_once('|').unwrap();
    (all.parse().unwrap(), in_period.parse().unwrap())
}

#[test]
fn copied_files_give_the_tables_of_the_input_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean");
    crate::common::segments_ok(
        dir.path(),
        &[
            "generate",
            "--customers",
            "7000",
            "--months",
            "24",
            "--no-events",
            "--clean",
            "--out",
            clean.to_str().unwrap(),
        ],
    );
    let all = format!("{}/transactions/*/*.parquet", clean.display());
    let (lines, lines_in_period) = lines_of(&all);
    // One month sent twice: a few thousand affected rows, collected.
    let month_twice = dir.path().join("month-twice");
    copy_dir(&clean, &month_twice);
    let month = month_twice.join(format!("transactions/month={PERIOD}"));
    std::fs::copy(month.join("part-0.parquet"), month.join("part-1.parquet")).unwrap();
    let (copies, copies_in_period) = lines_of(month.join("part-1.parquet").to_str().unwrap());
    // The whole input loaded twice: more affected rows than a run holds.
    let all_twice = dir.path().join("all-twice");
    copy_dir(&clean, &all_twice);
    for month in std::fs::read_dir(all_twice.join("transactions"))
        .unwrap()
        .flatten()
    {
        std::fs::copy(
            month.path().join("part-0.parquet"),
            month.path().join("part-1.parquet"),
        )
        .unwrap();
    }
    assert!(
        lines > segments::inputs::duplicates::MAX_AFFECTED_ROWS,
        "{lines} lines: too few to load twice past the limit"
    );

    let (expected, clean_log) = run(dir.path(), "clean", &clean);
    let expected_tables = published(&expected);
    let clean_manifest = manifest(&expected, PERIOD);
    assert!(clean_manifest["rejected_by_reason"]["duplicate_line"].is_null());
    for (name, data, extra, extra_in_period) in [
        ("month-twice", &month_twice, copies, copies_in_period),
        ("all-twice", &all_twice, lines, lines_in_period),
    ] {
        let (warehouse, log) = run(dir.path(), name, data);
        for ((table, rows), (_, clean_rows)) in published(&warehouse).iter().zip(&expected_tables) {
            assert!(!rows.is_empty(), "{name}: {table} is empty");
            let only_here: Vec<_> = rows.difference(clean_rows).take(3).collect();
            let only_clean: Vec<_> = clean_rows.difference(rows).take(3).collect();
            assert!(
                only_here.is_empty() && only_clean.is_empty(),
                "{name}: {table} differs from the clean run's: only here {only_here:?}, only in the clean run {only_clean:?}"
            );
        }
        let manifest = manifest(&warehouse, PERIOD);
        assert_eq!(
            manifest["rejected_by_reason"]["duplicate_line"].as_u64(),
            Some(extra),
            "{name}: every copy is a reject: {}",
            manifest["rejected_by_reason"]
        );
        for key in ["period_revenue", "identification_rate"] {
            assert_eq!(manifest[key], clean_manifest[key], "{name}: {key}");
        }
        assert_eq!(
            manifest["rows"]["used"], clean_manifest["rows"]["used"],
            "{name}: used rows"
        );
        // The rejects table lists the copies dated in the period.
        let rejects = duckdb_lines(&format!(
            "SELECT COUNT(*) FROM '{}' WHERE reason = 'duplicate_line'",
            table_file(&warehouse, "rfm_monthly", "rejects", PERIOD).display()
        ));
        assert_eq!(
            rejects.into_iter().next().unwrap(),
            extra_in_period.to_string(),
            "{name}: duplicate_line rejects of {PERIOD}"
        );
        // Only the input loaded twice takes the slow, exact DISTINCT, and says so.
        let warned = log.contains("DISTINCT over every line");
        assert_eq!(warned, name == "all-twice", "{name}: {log}");
    }
    assert!(!clean_log.contains("DISTINCT over every line"));
}

/// Timestamps to the day (midnight), as date-only exports have: every line
/// shares its instant with lines of other orders and customers, and only
/// the exact copies go. Worked out by hand.
#[test]
fn copies_among_lines_of_the_same_instant_are_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("transactions");
    let day = chrono::NaiveDate::from_ymd_opt(2024, 3, 5)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_micros();
    let later = day + 15 * 86_400_000_000;
    crate::common::write_transactions(
        &data,
        &[
            (Some("c1"), "o1", day, 1000),
            (Some("c1"), "o1", day, 1000), // copy
            (Some("c1"), "o1", day, 500),
            (Some("c1"), "o2", day, 700),
            (Some("c2"), "o3", day, 300),
            (Some("c2"), "o3", day, 300), // copy
            (Some("c3"), "o4", day, 300),
            (None, "o5", day, 400),
            (None, "o5", day, 400), // copy
            (Some("c2"), "o6", later, 800),
        ],
    );
    let warehouse = dir.path().join("warehouse");
    let config = write_config(dir.path(), &data, &warehouse);
    run_period(dir.path(), &config, "2024-03");
    let snapshot = table_file(&warehouse, "rfm_monthly", "snapshots", "2024-03");
    let customers = duckdb_lines(&format!(
        "SELECT customer_id || '|' || frequency || '|' || monetary FROM '{}'",
        snapshot.display()
    ));
    let expected: std::collections::BTreeSet<String> = ["c1|2|22.00", "c2|2|11.00", "c3|1|3.00"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(customers, expected);
    let manifest = manifest(&warehouse, "2024-03");
    assert_eq!(manifest["rejected_by_reason"]["duplicate_line"], 3);
    assert_eq!(manifest["rows"]["read"], 10);
    assert_eq!(manifest["rows"]["used"], 6);
    assert_eq!(manifest["rows"]["anonymous"], 1);
}

//! The SQL sandbox (docs/design.md §7): a step or a rule cannot create, write, drop,
//! change settings or read files other than the declared inputs. Each attempt
//! is refused before any data is read, with exit code 2 and a message naming
//! the step or segment.

use crate::common::{job_with, published_files, segments, write_config};
use crate::fixture::write_fixture;

fn refused(step_sql: Option<&str>, rule: Option<&str>, expected: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("transactions");
    write_fixture(&data);
    let warehouse = dir.path().join("warehouse");
    let config = write_config(dir.path(), &data, &warehouse);
    let marker = dir.path().join("escaped.parquet");
    let job = job_with(dir.path(), |text| {
        let mut text = text;
        if let Some(sql) = step_sql {
            let sql = sql.replace("MARKER", marker.to_str().unwrap());
            text = text.replace(
                "file: orders.sql",
                &format!("sql: \"{}\"", sql.replace('"', "\\\"")),
            );
        }
        if let Some(rule) = rule {
            let rule = rule.replace("MARKER", marker.to_str().unwrap());
            text = text.replace(
                "rule: r_score = 5 AND f_score >= 4",
                &format!("rule: \"{}\"", rule.replace('"', "\\\"")),
            );
        }
        text
    });
    for command in ["validate", "run"] {
        let mut args = vec![
            command,
            "--job",
            job.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ];
        if command == "run" {
            args.extend(["--period", "2024-06"]);
        }
        let output = segments(dir.path(), &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{command} with {step_sql:?} {rule:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        for needle in expected {
            assert!(
                stderr.contains(needle),
                "{command}: expected {needle:?} in: {stderr}"
            );
        }
    }
    assert!(!marker.exists(), "a step wrote a file");
    assert!(
        published_files(&warehouse).is_empty(),
        "nothing is published"
    );
}

#[test]
fn ddl_is_refused_in_a_step() {
    refused(
        Some("CREATE TABLE orders_copy AS SELECT * FROM transactions"),
        None,
        &["step `orders`", "DDL not supported"],
    );
    refused(
        Some("DROP TABLE transactions"),
        None,
        &["step `orders`", "DDL not supported"],
    );
    refused(
        Some("CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 'MARKER'"),
        None,
        &["step `orders`", "DDL not supported"],
    );
}

#[test]
fn dml_is_refused_in_a_step() {
    refused(
        Some("INSERT INTO transactions SELECT * FROM transactions"),
        None,
        &["step `orders`", "DML not supported"],
    );
    refused(
        Some("COPY (SELECT * FROM transactions) TO 'MARKER'"),
        None,
        &["step `orders`", "DML not supported"],
    );
}

#[test]
fn statements_are_refused_in_a_step() {
    refused(
        Some("SET datafusion.runtime.memory_limit = '100G'"),
        None,
        &["step `orders`", "Statement not supported"],
    );
}

#[test]
fn files_outside_the_inputs_cannot_be_read() {
    // URL tables are off: a path is not a table.
    refused(
        Some("SELECT * FROM '/etc/hostname'"),
        None,
        &["step `orders`", "not found"],
    );
    refused(
        Some("SELECT * FROM read_parquet('MARKER')"),
        None,
        &["step `orders`", "read_parquet"],
    );
    refused(
        Some("SELECT * FROM read_csv('/etc/passwd')"),
        None,
        &["step `orders`", "read_csv"],
    );
}

#[test]
fn rules_cannot_hold_statements_or_read_files() {
    refused(
        None,
        Some("r_score = 5; DROP TABLE transactions"),
        &["champions"],
    );
    refused(
        None,
        Some("r_score IN (SELECT 1 FROM '/etc/hostname')"),
        &["champions"],
    );
    refused(
        None,
        Some("(SELECT COUNT(*) FROM read_parquet('MARKER')) > 0"),
        &["champions"],
    );
}

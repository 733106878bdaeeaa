//! How a job's steps are computed in a run: a step that later SQL reads
//! more than once is computed once, so every read sees the same rows (and
//! the input files are not read again for each read).

use crate::common::{read_parquet, run_job, table_file, write_config};
use crate::jobs::write_lines;
use datafusion::arrow::array::AsArray;

/// `draws` gives each customer a random number; `metrics` reads `draws`
/// twice and compares the two. Were `draws` a view computed at each read,
/// the draws would differ (and the customer would be `inconsistent`).
const JOB: &str = r#"
name: reads_once
version: 1
window_months: 12
inputs: [transactions]
steps:
  - name: draws
    sql: SELECT customer_id, random() AS draw FROM transactions WHERE customer_id IS NOT NULL GROUP BY customer_id
  - name: metrics
    sql: |
      SELECT a.customer_id,
             CAST(0 AS INT) AS recency_days,
             CAST(1 AS BIGINT) AS frequency,
             CAST(0 AS DECIMAL(18, 2)) AS monetary,
             DATE '2024-05-03' AS first_purchase_date,
             DATE '2024-05-03' AS last_purchase_date,
             a.draw = b.draw AS same_draw
      FROM draws a JOIN draws b ON a.customer_id = b.customer_id
classification:
  from: metrics
  segments:
    - name: consistent
      rule: same_draw
    - name: inconsistent
      rule: NOT same_draw
outputs: [snapshots]
"#;

#[test]
fn a_step_read_twice_is_computed_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("transactions");
    let lines: Vec<(&str, &str, &str, i64)> = vec![
        ("c1", "o1", "2024-05-03", 10),
        ("c2", "o2", "2024-05-04", 20),
        ("c3", "o3", "2024-05-05", 30),
        ("c4", "o4", "2024-05-06", 40),
    ];
    write_lines(&data, &lines);
    let warehouse = dir.path().join("warehouse");
    let config = write_config(dir.path(), &data, &warehouse);
    let job = dir.path().join("reads_once.yaml");
    std::fs::write(&job, JOB).unwrap();
    run_job(dir.path(), &job, &config, "2024-05");
    let batches = read_parquet(&table_file(
        &warehouse,
        "reads_once",
        "snapshots",
        "2024-05",
    ));
    let mut segments = Vec::new();
    for batch in &batches {
        let ids = batch
            .column_by_name("customer_id")
            .unwrap()
            .as_string::<i32>();
        let segment = batch.column_by_name("segment").unwrap().as_string::<i32>();
        for row in 0..batch.num_rows() {
            segments.push((ids.value(row).to_string(), segment.value(row).to_string()));
        }
    }
    segments.sort();
    let expected: Vec<(String, String)> = ["c1", "c2", "c3", "c4"]
        .iter()
        .map(|id| (id.to_string(), "consistent".to_string()))
        .collect();
    assert_eq!(segments, expected);
}

//! The business timezone decides which month and day an order belongs to
//! (docs/design.md §3, issue 4): hand-written expectations at month edges and DST
//! changes in Europe/Paris, for UTC timestamps and for naive timestamps read
//! as local times.

use std::path::Path;
use std::sync::Arc;

use chrono::NaiveDateTime;
use datafusion::arrow::array::{
    AsArray, Decimal128Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Date32Type, Field, Int32Type, Schema, TimeUnit};
use datafusion::parquet::arrow::ArrowWriter;

use crate::common::{default_job, read_parquet, segments, segments_ok, table_file};

/// Write (customer, order, timestamp text, euros) as one Parquet file, with
/// `ordered_at` in UTC or naive (no timezone).
fn write_lines(dir: &Path, lines: &[(&str, &str, &str, i64)], naive: bool) {
    let timezone = if naive { None } else { Some("UTC".into()) };
    let schema = Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Utf8, true),
        Field::new("order_id", DataType::Utf8, false),
        Field::new(
            "ordered_at",
            DataType::Timestamp(TimeUnit::Microsecond, timezone.clone()),
            false,
        ),
        Field::new("amount", DataType::Decimal128(18, 2), false),
    ]));
    let micros = |text: &str| {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M")
            .unwrap()
            .and_utc()
            .timestamp_micros()
    };
    let mut timestamps =
        TimestampMicrosecondArray::from(lines.iter().map(|l| micros(l.2)).collect::<Vec<_>>());
    if let Some(tz) = timezone {
        timestamps = timestamps.with_timezone(tz);
    }
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(
                lines.iter().map(|l| l.0).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                lines.iter().map(|l| l.1).collect::<Vec<_>>(),
            )),
            Arc::new(timestamps),
            Arc::new(
                Decimal128Array::from(lines.iter().map(|l| l.3 as i128 * 100).collect::<Vec<_>>())
                    .with_precision_and_scale(18, 2)
                    .unwrap(),
            ),
        ],
    )
    .unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let mut writer = ArrowWriter::try_new(
        std::fs::File::create(dir.join("lines.parquet")).unwrap(),
        schema,
        None,
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

fn config(dir: &Path, timezone: &str) -> std::path::PathBuf {
    let path = dir.join(format!("config-{}.yaml", timezone.replace('/', "-")));
    std::fs::write(
        &path,
        format!(
            "warehouse: {}/warehouse-{}\ntimezone: {timezone}\ninputs:\n  transactions:\n    url: {}/data/\n    format: parquet\n",
            dir.display(),
            timezone.replace('/', "-"),
            dir.display()
        ),
    )
    .unwrap();
    path
}

/// (customer, last purchase date, recency_days) of a published snapshot.
fn snapshot(dir: &Path, timezone: &str, period: &str) -> Vec<(String, String, i32)> {
    let warehouse = dir.join(format!("warehouse-{}", timezone.replace('/', "-")));
    let batches = read_parquet(&table_file(&warehouse, "rfm_monthly", "snapshots", period));
    let mut rows = Vec::new();
    for batch in batches {
        let ids = batch.column(0).as_string::<i32>();
        let last = batch
            .column(batch.schema().index_of("last_purchase_date").unwrap())
            .as_primitive::<Date32Type>()
            .clone();
        let recency = batch
            .column(batch.schema().index_of("recency_days").unwrap())
            .as_primitive::<Int32Type>()
            .clone();
        for row in 0..batch.num_rows() {
            let date = last.value_as_date(row).unwrap().to_string();
            rows.push((ids.value(row).to_string(), date, recency.value(row)));
        }
    }
    rows
}

fn run(dir: &Path, timezone: &str, period: &str) {
    let job = default_job();
    let config = config(dir, timezone);
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
    );
}

fn row(id: &str, date: &str, recency: i32) -> (String, String, i32) {
    (id.to_string(), date.to_string(), recency)
}

#[test]
fn utc_timestamps_are_dated_in_the_business_timezone() {
    let dir = tempfile::tempdir().unwrap();
    write_lines(
        &dir.path().join("data"),
        &[
            // Paris is UTC+1 in winter, UTC+2 from 2024-03-31 01:00 UTC to 2024-10-27 01:00 UTC.
            ("a", "a1", "2024-03-31 21:30", 10), // 23:30 CEST on 31 March → March
            ("b", "b1", "2024-03-31 22:30", 10), // 00:30 CEST on 1 April → April
            ("c", "c1", "2024-01-31 23:30", 10), // 00:30 CET on 1 February → February
            ("d", "d1", "2024-10-27 00:30", 10), // 02:30 CEST on 27 October, before the change
            ("e", "e1", "2024-10-31 23:30", 10), // 00:30 CET on 1 November → November
        ],
        false,
    );
    // Europe/Paris, March: a (31 March, 0 days), c (1 February: 59 days to 31 March); b is April's.
    run(dir.path(), "Europe/Paris", "2024-03");
    assert_eq!(
        snapshot(dir.path(), "Europe/Paris", "2024-03"),
        [row("a", "2024-03-31", 0), row("c", "2024-02-01", 59)]
    );
    // April: b bought on 1 April (29 days before 30 April).
    run(dir.path(), "Europe/Paris", "2024-04");
    assert_eq!(
        snapshot(dir.path(), "Europe/Paris", "2024-04"),
        [
            row("a", "2024-03-31", 30),
            row("b", "2024-04-01", 29),
            row("c", "2024-02-01", 89)
        ]
    );
    // October: d on 27 October (4 days before 31 October); e is November's.
    run(dir.path(), "Europe/Paris", "2024-10");
    let october = snapshot(dir.path(), "Europe/Paris", "2024-10");
    assert_eq!(
        october.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c", "d"]
    );
    assert_eq!(october[3], row("d", "2024-10-27", 4));
    run(dir.path(), "Europe/Paris", "2024-11");
    assert_eq!(
        snapshot(dir.path(), "Europe/Paris", "2024-11")[4],
        row("e", "2024-11-01", 29)
    );

    // In UTC the same lines fall on their UTC dates: b and c in March and January.
    run(dir.path(), "UTC", "2024-03");
    assert_eq!(
        snapshot(dir.path(), "UTC", "2024-03"),
        [
            row("a", "2024-03-31", 0),
            row("b", "2024-03-31", 0),
            row("c", "2024-01-31", 60)
        ]
    );
}

#[test]
fn naive_timestamps_are_local_times() {
    let dir = tempfile::tempdir().unwrap();
    write_lines(
        &dir.path().join("data"),
        &[
            // Naive local times: their local date is the written date. Read
            // wrongly as UTC and converted, both would move to the next day.
            ("a", "a1", "2024-04-30 23:30", 10),
            ("b", "b1", "2024-03-31 23:30", 10),
        ],
        true,
    );
    run(dir.path(), "Europe/Paris", "2024-04");
    assert_eq!(
        snapshot(dir.path(), "Europe/Paris", "2024-04"),
        [row("a", "2024-04-30", 0), row("b", "2024-03-31", 30)]
    );
    // And there is nothing dated in May: the May gate fails (exit 3).
    let job = default_job();
    let config = config(dir.path(), "Europe/Paris");
    let output = segments(
        dir.path(),
        &[
            "run",
            "--job",
            job.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--period",
            "2024-05",
        ],
    );
    assert_eq!(
        output.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

//! `jobs/audiences.yaml`: overlapping audiences over contacts (docs/design.md §1).
//! - a hand-checked fixture of six contacts whose audiences were worked out
//!   by hand from the rows (the comments show the arithmetic);
//! - a run on generated data (transactions, events, products, sales calendar)
//!   compared row by row with an independent DuckDB translation of the
//!   audiences' definitions;
//! - `segments export --audience` and the refusals around it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;

use crate::common::{duckdb_lines, read_parquet, repo, run_job, segments, segments_ok, table_file};

fn job() -> PathBuf {
    repo().join("jobs/audiences.yaml")
}

/// Noon UTC of a `YYYY-MM-DD` date, in µs.
fn noon(date: &str) -> i64 {
    NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .unwrap()
        .and_hms_opt(12, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_micros()
}

fn midnight(date: &str) -> i64 {
    noon(date) - 12 * 3_600_000_000
}

fn texts(values: Vec<Option<&str>>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

fn timestamps(values: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(values).with_timezone("UTC"))
}

fn money(cents: Vec<i128>) -> ArrayRef {
    Arc::new(
        Decimal128Array::from(cents)
            .with_precision_and_scale(18, 2)
            .unwrap(),
    )
}

/// Write one Parquet file at `path` from named columns.
fn write_table(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, array)| Field::new(*name, array.data_type().clone(), true))
            .collect::<Vec<_>>(),
    ));
    let batch =
        RecordBatch::try_new(schema.clone(), columns.into_iter().map(|c| c.1).collect()).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut writer =
        ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

/// A config reading the four inputs under `data` (as `segments generate`
/// lays them out) and publishing to `warehouse`.
fn write_config(dir: &Path, data: &Path, warehouse: &Path) -> PathBuf {
    let path = dir.join("config.yaml");
    let d = data.display();
    std::fs::write(
        &path,
        format!(
            "warehouse: {}\ntimezone: UTC\ninputs:\n  transactions:\n    url: {d}/transactions/\n    format: parquet\n    partition_columns: [month]\n  events:\n    url: {d}/events/\n    format: parquet\n    partition_columns: [month]\n  products:\n    url: {d}/products/\n    format: parquet\n  sales_calendar:\n    url: {d}/sales_calendar/\n    format: parquet\n",
            warehouse.display()
        ),
    )
    .unwrap();
    path
}

/// (customer_id, audience, detail) rows of the `audiences` job's published
/// `audiences` table, in file order.
fn published(warehouse: &Path, period: &str) -> Vec<(String, String, Option<String>)> {
    published_of(warehouse, "audiences", period)
}

/// (customer_id, audience, detail) rows of `job`'s published `audiences`
/// table, in file order.
fn published_of(
    warehouse: &Path,
    job: &str,
    period: &str,
) -> Vec<(String, String, Option<String>)> {
    let mut rows = Vec::new();
    for batch in read_parquet(&table_file(warehouse, job, "audiences", period)) {
        let ids = batch.column(0).as_string::<i32>();
        let audiences = batch.column(1).as_string::<i32>();
        let details = batch.column(2).as_string::<i32>();
        for row in 0..batch.num_rows() {
            rows.push((
                ids.value(row).to_string(),
                audiences.value(row).to_string(),
                details
                    .is_valid(row)
                    .then(|| details.value(row).to_string()),
            ));
        }
    }
    rows
}

/// The hand fixture (period 2025-07: as_of_date 2025-07-31, window from
/// 2024-08-01, "last 30 days" 2025-07-02 … 2025-07-31, "365 days" 2024-08-01
/// … 2025-07-31). Sales: summer 2024 [06-26, 07-24), winter 2025 [01-08,
/// 02-05), summer 2025 [06-25, 07-23).
fn write_fixture(data: &Path) {
    // (customer, order, date, amount €, product, category (None = from the
    // catalog), discount €)
    let lines: [(&str, &str, &str, i128, &str, Option<&str>, i128); 16] = [
        ("A", "A1", "2024-09-10", 20, "P1", Some("grocery"), 0),
        ("A", "A2", "2025-01-15", 30, "P1", Some("grocery"), 5),
        ("A", "A3", "2025-07-10", 100, "P2", None, 0),
        ("B", "B1", "2024-07-05", 10, "P3", Some("books"), 0),
        ("B", "B2", "2025-07-20", 200, "P3", Some("books"), 0),
        ("C", "C1", "2025-03-03", 40, "P1", Some("grocery"), 0),
        ("C", "C2", "2025-04-04", 40, "P3", Some("books"), 0),
        ("C", "C3", "2025-05-05", 40, "P1", Some("grocery"), 0),
        ("C", "C4", "2025-06-06", 40, "P3", Some("books"), 0),
        ("E", "E1", "2023-05-01", 500, "P1", Some("grocery"), 0),
        ("G", "G1", "2025-07-26", 5, "P1", Some("grocery"), 0),
        ("G", "G2", "2025-07-27", 5, "P1", Some("grocery"), 0),
        ("G", "G3", "2025-07-28", 5, "P1", Some("grocery"), 0),
        ("G", "G4", "2025-07-29", 5, "P1", Some("grocery"), 0),
        ("G", "G5", "2025-07-30", 5, "P1", Some("grocery"), 0),
        // Outside the period: ignored (after period_end).
        ("G", "G6", "2025-08-02", 5, "P1", Some("grocery"), 0),
    ];
    let path = data.join("transactions/month=all/part-0.parquet");
    write_table(
        &path,
        vec![
            (
                "customer_id",
                texts(lines.iter().map(|l| Some(l.0)).collect()),
            ),
            ("order_id", texts(lines.iter().map(|l| Some(l.1)).collect())),
            (
                "ordered_at",
                timestamps(lines.iter().map(|l| noon(l.2)).collect()),
            ),
            ("amount", money(lines.iter().map(|l| l.3 * 100).collect())),
            (
                "product_id",
                texts(lines.iter().map(|l| Some(l.4)).collect()),
            ),
            ("category", texts(lines.iter().map(|l| l.5).collect())),
            (
                "discount_amount",
                money(lines.iter().map(|l| l.6 * 100).collect()),
            ),
        ],
    );

    let mut events: Vec<(&str, &str, String)> = Vec::new();
    // D never bought: 12 visits in the last 30 days, one after period_end
    // (ignored), and a cart abandoned during the summer sales 2025.
    for day in 5..17 {
        events.push(("D", "visit", format!("2025-07-{day:02}")));
    }
    events.push(("D", "visit", "2025-08-01".into()));
    events.push(("D", "cart_abandon", "2025-07-10".into()));
    // E (lost buyer): exactly 10 visits in the last 30 days, one on 07-01
    // (31 days before as_of_date: outside), an old recommendation click.
    for day in 20..30 {
        events.push(("E", "visit", format!("2025-07-{day:02}")));
    }
    events.push(("E", "visit", "2025-07-01".into()));
    events.push(("E", "recommendation_click", "2025-06-15".into()));
    // C clicked a recommendation on 07-15 and last bought on 06-06.
    events.push(("C", "recommendation_click", "2025-07-15".into()));
    // A clicked too, but bought on 07-10: not in the audience. A's abandoned
    // cart is after the summer sales ended (07-23).
    events.push(("A", "recommendation_click", "2025-07-12".into()));
    events.push(("A", "cart_abandon", "2025-07-25".into()));
    write_table(
        &data.join("events/month=all/part-0.parquet"),
        vec![
            (
                "customer_id",
                texts(events.iter().map(|e| Some(e.0)).collect()),
            ),
            (
                "event_type",
                texts(events.iter().map(|e| Some(e.1)).collect()),
            ),
            (
                "occurred_at",
                timestamps(events.iter().map(|e| noon(&e.2)).collect()),
            ),
            ("product_id", texts(events.iter().map(|_| None).collect())),
        ],
    );

    write_table(
        &data.join("products/part-0.parquet"),
        vec![
            (
                "product_id",
                texts(vec![Some("P1"), Some("P2"), Some("P3")]),
            ),
            (
                "category",
                texts(vec![Some("grocery"), Some("shoes"), Some("books")]),
            ),
            ("list_price", money(vec![500, 10000, 1000])),
        ],
    );
    let sales = [
        (
            "summer_sales_2024",
            "2024-06-26",
            "2024-07-24",
            "summer_sales",
        ),
        (
            "winter_sales_2025",
            "2025-01-08",
            "2025-02-05",
            "winter_sales",
        ),
        (
            "summer_sales_2025",
            "2025-06-25",
            "2025-07-23",
            "summer_sales",
        ),
    ];
    write_table(
        &data.join("sales_calendar/part-0.parquet"),
        vec![
            ("name", texts(sales.iter().map(|s| Some(s.0)).collect())),
            (
                "starts_at",
                timestamps(sales.iter().map(|s| midnight(s.1)).collect()),
            ),
            (
                "ends_at",
                timestamps(sales.iter().map(|s| midnight(s.2)).collect()),
            ),
            ("kind", texts(sales.iter().map(|s| Some(s.3)).collect())),
        ],
    );
}

#[test]
fn audiences_hand_checked_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_fixture(&data);
    let warehouse = dir.path().join("warehouse");
    let config = write_config(dir.path(), &data, &warehouse);
    let (job, config) = (job(), config);
    let stdout = run_job(dir.path(), &job, &config, "2025-07");
    // Active customers in the window (n = 4), as_of_date 2025-07-31:
    //   A: purchases 2024-09-10, 2025-01-15, 2025-07-10 → F 3, M 20+30+100 = 150, recency 21
    //   B: 2024-07-05 is before the window → F 1, M 200, recency 11
    //   C: 03-03, 04-04, 05-05, 06-06 → F 4, M 160, recency 55
    //   G: 07-26 … 07-30 → F 5, M 25, recency 1
    //   (E bought only in 2023: lost, no scores.)
    // score = 1 + floor(5 · (rank − 1) / 4):
    //   R (recency_days descending): C 55 → 1, A 21 → 2, B 11 → 3, G 1 → 4
    //   F (ascending): B 1 → 1, A 3 → 2, C 4 → 3, G 5 → 4
    //   M (ascending): G 25 → 1, A 150 → 2, C 160 → 3, B 200 → 4
    // loyal (R, F ≥ 4): G. bargain (M ≤ 2, F ≥ 4): G. big non-recurring
    // (M ≥ 4, F ≤ 2): B.
    // category repeat (≥ 2 purchases of a category since 2024-08-01): A
    //   grocery (09-10, 01-15; shoes once, from the catalog); C grocery 2 and
    //   books 2 → tie → books; G grocery 5 (the 08-02 order is after the
    //   period); B books once in 365 days.
    // last summer's sales (2024): B on 2024-07-05.
    // discount buyers (window): A (A2), 1 purchase.
    // recommendation clickers (30 days, no purchase in them): C; not A (bought 07-10).
    // undecided (≥ 10 visits in 30 days, no purchase): D 12, E 10.
    // cart abandoners during the current sales (summer 2025): D on 07-10;
    //   not A (07-25, after the sale).
    // buyers during the current sales: A (07-10), B (07-20); not G (07-26…).
    let some = |s: &str| Some(s.to_string());
    let expected: Vec<(String, String, Option<String>)> = [
        ("A", "category_repeat", some("grocery")),
        ("A", "discount_buyers", some("1")),
        ("A", "sales_buyers", some("summer_sales_2025")),
        ("B", "big_non_recurring", None),
        ("B", "last_summer_sales", some("summer_sales_2024")),
        ("B", "sales_buyers", some("summer_sales_2025")),
        ("C", "category_repeat", some("books")),
        ("C", "recommendation_clickers", None),
        ("D", "undecided_visitors", some("12")),
        ("D", "sales_cart_abandoners", some("summer_sales_2025")),
        ("E", "undecided_visitors", some("10")),
        ("G", "loyal", None),
        ("G", "bargain_recurrent", None),
        ("G", "category_repeat", some("grocery")),
    ]
    .into_iter()
    .map(|(c, a, d)| (c.to_string(), a.to_string(), d))
    .collect();
    assert_eq!(published(&warehouse, "2025-07"), expected);

    // The summary counts contacts per audience, empty ones included.
    assert!(stdout.contains("6 contacts in an audience"), "{stdout}");
    let line_of = |audience: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(audience))
            .unwrap_or_else(|| panic!("no line for {audience} in {stdout}"))
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    };
    assert_eq!(line_of("category_repeat"), "3");
    assert_eq!(line_of("undecided_visitors"), "2");
    assert_eq!(line_of("loyal"), "1");

    // The audiences are declared in segment_definitions, with their rules.
    let definitions = read_parquet(&table_file(
        &warehouse,
        "audiences",
        "segment_definitions",
        "2025-07",
    ));
    let names: Vec<String> = definitions
        .iter()
        .flat_map(|b| {
            let names = b.column(0).as_string::<i32>();
            (0..b.num_rows())
                .map(|r| names.value(r).to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(names.len(), 10);
    assert_eq!(names[0], "loyal");
    // No segment tables for an audiences job.
    assert!(!warehouse.join("audiences/snapshots").exists());
    assert!(!warehouse.join("audiences/migrations").exists());

    // Export the undecided visitors with their detail.
    let out = dir.path().join("undecided.csv");
    let stdout = segments_ok(
        dir.path(),
        &[
            "export",
            "--job",
            job.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--period",
            "2025-07",
            "--audience",
            "undecided_visitors",
            "--columns",
            "detail",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(stdout.contains("Exported 2 "), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "customer_id,detail\nD,12\nE,10\n"
    );
    // --segment on an audiences job, --movement, an unknown audience: exit 2
    // with what to do.
    for (flag, value, message) in [
        ("--segment", "loyal", "use --audience"),
        ("--movement", "down", "no movements"),
        ("--audience", "nobody", "unknown audience 'nobody'"),
    ] {
        let output = segments(
            dir.path(),
            &[
                "export",
                "--job",
                job.to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
                "--period",
                "2025-07",
                flag,
                value,
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert_eq!(output.status.code(), Some(2), "{flag} {value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{flag} {value}: {stderr}");
    }
}

/// The audiences of docs/design.md §1 in DuckDB SQL, written from the definitions
/// (not from `sql/contact_features.sql`): one `customer|audience|detail` line
/// per member, sorted.
fn duckdb_audiences(data: &Path, period: &str) -> BTreeSet<String> {
    let start = NaiveDate::parse_from_str(&format!("{period}-01"), "%Y-%m-%d").unwrap();
    let end = start.checked_add_months(chrono::Months::new(1)).unwrap();
    let as_of = end.pred_opt().unwrap();
    let window_start = end.checked_sub_months(chrono::Months::new(12)).unwrap();
    let d = data.display();
    let sql = format!(
        r#"
SET TimeZone = 'UTC';
CREATE TEMP TABLE lines AS
  SELECT customer_id, order_id, CAST(ordered_at AS DATE) AS day, amount, discount_amount, category
  FROM read_parquet('{d}/transactions/*/*.parquet')
  WHERE customer_id IS NOT NULL AND CAST(ordered_at AS DATE) < DATE '{end}';
CREATE TEMP TABLE orders AS
  SELECT customer_id, order_id, MIN(day) AS day, SUM(amount) AS amount FROM lines GROUP BY ALL;
CREATE TEMP TABLE buys AS SELECT * FROM orders WHERE amount > 0;
CREATE TEMP TABLE metrics AS
  SELECT customer_id,
         COUNT(*) FILTER (WHERE amount > 0 AND day >= DATE '{window_start}') AS f,
         COALESCE(SUM(amount) FILTER (WHERE day >= DATE '{window_start}'), 0) AS m,
         DATE '{as_of}' - MAX(day) FILTER (WHERE amount > 0) AS recency
  FROM orders GROUP BY customer_id HAVING COUNT(*) FILTER (WHERE amount > 0) > 0;
CREATE TEMP TABLE scores AS
  SELECT customer_id,
    1 + (5 * (RANK() OVER (ORDER BY recency DESC) - 1)) // n AS r,
    1 + (5 * (RANK() OVER (ORDER BY f) - 1)) // n AS fs,
    1 + (5 * (RANK() OVER (ORDER BY m) - 1)) // n AS ms
  FROM metrics, (SELECT COUNT(*) AS n FROM metrics WHERE f > 0) WHERE f > 0;
CREATE TEMP TABLE ev AS
  SELECT customer_id, event_type, CAST(occurred_at AS DATE) AS day
  FROM read_parquet('{d}/events/*/*.parquet')
  WHERE CAST(occurred_at AS DATE) < DATE '{end}';
CREATE TEMP TABLE sales AS
  SELECT name, kind, CAST(starts_at AS DATE) AS s, CAST(ends_at AS DATE) AS e
  FROM read_parquet('{d}/sales_calendar/*.parquet');
CREATE TEMP TABLE current_sales AS SELECT * FROM sales WHERE s < DATE '{end}' AND e > DATE '{start}';
CREATE TEMP TABLE bought30 AS SELECT DISTINCT customer_id FROM buys WHERE day >= DATE '{as_of}' - 29;
SELECT customer_id || '|' || audience || '|' || COALESCE(detail, '') FROM (
  SELECT customer_id, 'loyal' AS audience, NULL AS detail FROM scores WHERE r >= 4 AND fs >= 4
  UNION ALL SELECT customer_id, 'bargain_recurrent', NULL FROM scores WHERE ms <= 2 AND fs >= 4
  UNION ALL SELECT customer_id, 'big_non_recurring', NULL FROM scores WHERE ms >= 4 AND fs <= 2
  UNION ALL SELECT customer_id, 'category_repeat', first(category ORDER BY n DESC, category) FROM (
      SELECT l.customer_id, l.category, COUNT(DISTINCT l.order_id) AS n
      FROM lines l JOIN buys b USING (customer_id, order_id)
      WHERE l.amount > 0 AND b.day >= DATE '{as_of}' - 364
      GROUP BY ALL HAVING COUNT(DISTINCT l.order_id) >= 2) GROUP BY customer_id
  UNION ALL SELECT b.customer_id, 'last_summer_sales', MIN(x.name) FROM buys b JOIN sales x
      ON b.day >= x.s AND b.day < x.e
      WHERE x.kind = 'summer_sales' AND year(x.s) = {last_year} GROUP BY b.customer_id
  UNION ALL SELECT l.customer_id, 'discount_buyers', CAST(COUNT(DISTINCT l.order_id) AS VARCHAR)
      FROM lines l JOIN buys b USING (customer_id, order_id)
      WHERE l.amount > 0 AND l.discount_amount > 0 AND b.day >= DATE '{window_start}' GROUP BY l.customer_id
  UNION ALL SELECT DISTINCT customer_id, 'recommendation_clickers', NULL FROM ev
      WHERE event_type = 'recommendation_click' AND day >= DATE '{as_of}' - 29
        AND customer_id NOT IN (SELECT customer_id FROM bought30)
  UNION ALL SELECT customer_id, 'undecided_visitors', CAST(COUNT(*) AS VARCHAR) FROM ev
      WHERE event_type = 'visit' AND day >= DATE '{as_of}' - 29
        AND customer_id NOT IN (SELECT customer_id FROM bought30)
      GROUP BY customer_id HAVING COUNT(*) >= 10
  UNION ALL SELECT v.customer_id, 'sales_cart_abandoners', MIN(x.name) FROM ev v JOIN current_sales x
      ON v.day >= x.s AND v.day < x.e WHERE v.event_type = 'cart_abandon' GROUP BY v.customer_id
  UNION ALL SELECT b.customer_id, 'sales_buyers', MIN(x.name) FROM buys b JOIN current_sales x
      ON b.day >= x.s AND b.day < x.e GROUP BY b.customer_id
)
"#,
        last_year = start.format("%Y").to_string().parse::<i32>().unwrap() - 1,
    );
    duckdb_lines(&sql)
}

#[test]
fn audiences_on_generated_data_match_an_independent_duckdb_translation() {
    let dir = tempfile::tempdir().unwrap();
    segments_ok(
        dir.path(),
        &[
            "generate",
            "--customers",
            "1500",
            "--months",
            "24",
            "--start",
            "2024-01",
            "--seed",
            "7",
            "--out",
            "data",
        ],
    );
    let data = dir.path().join("data");
    let warehouse = dir.path().join("warehouse");
    let config = write_config(dir.path(), &data, &warehouse);
    // July (summer sales, last year's summer sales) and December (Black
    // Friday runs into it).
    for period in ["2025-07", "2025-12"] {
        segments_ok(
            dir.path(),
            &[
                "run",
                "--job",
                job().to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
                "--period",
                period,
            ],
        );
        let ours: BTreeSet<String> = published(&warehouse, period)
            .into_iter()
            .map(|(c, a, d)| format!("{c}|{a}|{}", d.unwrap_or_default()))
            .collect();
        let reference = duckdb_audiences(&data, period);
        let only_ours: Vec<_> = ours.difference(&reference).take(5).collect();
        let only_reference: Vec<_> = reference.difference(&ours).take(5).collect();
        assert!(
            only_ours.is_empty() && only_reference.is_empty(),
            "{period}: only in segments {only_ours:?}, only in DuckDB {only_reference:?}"
        );
        // Every audience is populated by the generated data, so every rule
        // was compared on real members.
        let populated: BTreeSet<&str> = ours.iter().map(|l| l.split('|').nth(1).unwrap()).collect();
        assert_eq!(
            populated.len(),
            10,
            "{period}: populated audiences {populated:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// jobs/channel_category.yaml: attributes as audiences with a detail
// ---------------------------------------------------------------------------

/// A config reading only transactions under `data`.
fn transactions_config(dir: &Path, data: &Path, warehouse: &Path) -> PathBuf {
    crate::common::write_config(dir, &data.join("transactions"), warehouse)
}

#[test]
fn channel_category_hand_checked_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // (customer, order, date, amount €, channel, category, store)
    let lines: [(&str, &str, &str, i128, &str, &str, Option<&str>); 13] = [
        ("H", "H1", "2025-01-10", 10, "web", "grocery", None),
        ("H", "H2", "2025-02-10", 10, "web", "grocery", None),
        ("H", "H2", "2025-02-10", 15, "web", "books", None),
        ("H", "H3", "2025-03-10", 20, "store", "books", Some("S02")),
        ("H", "H4", "2025-04-10", 20, "store", "books", Some("S01")),
        ("H", "H5", "2025-05-10", 20, "store", "grocery", Some("S02")),
        ("I", "I1", "2025-06-01", 80, "app", "shoes", None),
        ("I", "I2", "2024-07-01", 10, "web", "grocery", None),
        ("I", "I3", "2025-07-15", -50, "web", "books", None),
        ("J", "J1", "2023-03-03", 99, "store", "books", Some("S01")),
        ("K", "K1", "2025-05-05", 30, "web", "grocery", None),
        ("K", "K1", "2025-05-06", -10, "web", "books", None),
        ("L", "L1", "2025-02-02", 10, "web", "grocery", None),
    ];
    let mut lines = lines.to_vec();
    lines.push(("L", "L2", "2025-03-03", 10, "app", "grocery", None));
    write_table(
        &data.join("transactions/month=all/part-0.parquet"),
        vec![
            (
                "customer_id",
                texts(lines.iter().map(|l| Some(l.0)).collect()),
            ),
            ("order_id", texts(lines.iter().map(|l| Some(l.1)).collect())),
            (
                "ordered_at",
                timestamps(lines.iter().map(|l| noon(l.2)).collect()),
            ),
            ("amount", money(lines.iter().map(|l| l.3 * 100).collect())),
            ("channel", texts(lines.iter().map(|l| Some(l.4)).collect())),
            ("category", texts(lines.iter().map(|l| Some(l.5)).collect())),
            ("store_id", texts(lines.iter().map(|l| l.6).collect())),
        ],
    );
    let warehouse = dir.path().join("warehouse");
    let config = transactions_config(dir.path(), &data, &warehouse);
    let job = repo().join("jobs/channel_category.yaml");
    run_job(dir.path(), &job, &config, "2025-07");
    // Window 2024-08-01 … 2025-07-31; purchases = orders with amount > 0,
    // counted once per channel / category / store they have a sold line in.
    // H: web 2 (H1, H2), store 3 → store; grocery 3 (H1, H2, H5), books 3
    //    (H2, H3, H4) → tie → books; S02 2, S01 1 → S02; 2 channels.
    // I: I2 is before the window, I3 is a refund order → app, shoes, no store.
    // J: bought only in 2023 → no purchase in the window → in no audience.
    // K: one purchase (30 − 10 = 20 > 0); the books line is a refund → grocery.
    // L: web 1, app 1 → tie → app; 2 channels.
    let some = |s: &str| Some(s.to_string());
    let expected: Vec<(String, String, Option<String>)> = [
        ("H", "main_channel", some("store")),
        ("H", "main_category", some("books")),
        ("H", "home_store", some("S02")),
        ("H", "channel_category", some("store/books")),
        ("H", "omnichannel", some("2")),
        ("I", "main_channel", some("app")),
        ("I", "main_category", some("shoes")),
        ("I", "channel_category", some("app/shoes")),
        ("K", "main_channel", some("web")),
        ("K", "main_category", some("grocery")),
        ("K", "channel_category", some("web/grocery")),
        ("L", "main_channel", some("app")),
        ("L", "main_category", some("grocery")),
        ("L", "channel_category", some("app/grocery")),
        ("L", "omnichannel", some("2")),
    ]
    .into_iter()
    .map(|(c, a, d)| (c.to_string(), a.to_string(), d))
    .collect();
    let rows = published_of(&warehouse, "channel_category", "2025-07");
    assert_eq!(rows, expected);

    // The app shoppers, as a campaign list.
    let out = dir.path().join("app.csv");
    segments_ok(
        dir.path(),
        &[
            "export",
            "--job",
            job.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--period",
            "2025-07",
            "--audience",
            "main_channel",
            "--detail",
            "app",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "customer_id\nI\nL\n"
    );
}

#[test]
fn channel_category_on_generated_data_matches_duckdb() {
    let dir = tempfile::tempdir().unwrap();
    segments_ok(
        dir.path(),
        &[
            "generate",
            "--customers",
            "1500",
            "--months",
            "18",
            "--start",
            "2024-07",
            "--seed",
            "11",
            "--out",
            "data",
            "--no-events",
        ],
    );
    let data = dir.path().join("data");
    let warehouse = dir.path().join("warehouse");
    let config = transactions_config(dir.path(), &data, &warehouse);
    let job = repo().join("jobs/channel_category.yaml");
    let period = "2025-11";
    run_job(dir.path(), &job, &config, period);
    let ours: BTreeSet<String> = published_of(&warehouse, "channel_category", period)
        .into_iter()
        .map(|(c, a, d)| format!("{c}|{a}|{}", d.unwrap_or_default()))
        .collect();
    // Written from the job's description: purchases (orders with a net
    // amount > 0) dated 2024-12-01 … 2025-11-30, each counted once per
    // channel, category and store of its sold lines; the most frequent
    // value wins, ties alphabetical.
    let d = data.display();
    let sql = format!(
        r#"
SET TimeZone = 'UTC';
CREATE TEMP TABLE l AS SELECT customer_id, order_id, CAST(ordered_at AS DATE) AS day, amount, channel, category, store_id
  FROM read_parquet('{d}/transactions/*/*.parquet') WHERE customer_id IS NOT NULL AND CAST(ordered_at AS DATE) < DATE '2025-12-01';
CREATE TEMP TABLE o AS SELECT customer_id, order_id, MIN(day) AS day, SUM(amount) AS amount FROM l GROUP BY ALL;
CREATE TEMP TABLE p AS SELECT l.* FROM l JOIN o USING (customer_id, order_id)
  WHERE o.amount > 0 AND o.day >= DATE '2024-12-01' AND l.amount > 0;
CREATE TEMP TABLE best AS
  SELECT 'main_channel' AS a, customer_id, first(v ORDER BY n DESC, v) AS v FROM (SELECT customer_id, channel AS v, COUNT(DISTINCT order_id) AS n FROM p GROUP BY ALL) GROUP BY customer_id
  UNION ALL SELECT 'main_category', customer_id, first(v ORDER BY n DESC, v) FROM (SELECT customer_id, category AS v, COUNT(DISTINCT order_id) AS n FROM p GROUP BY ALL) GROUP BY customer_id
  UNION ALL SELECT 'home_store', customer_id, first(v ORDER BY n DESC, v) FROM (SELECT customer_id, store_id AS v, COUNT(DISTINCT order_id) AS n FROM p WHERE store_id IS NOT NULL GROUP BY ALL) GROUP BY customer_id;
SELECT customer_id || '|' || a || '|' || v FROM (
  SELECT customer_id, a, v FROM best
  UNION ALL SELECT c.customer_id, 'channel_category', c.v || '/' || k.v FROM best c JOIN best k USING (customer_id)
    WHERE c.a = 'main_channel' AND k.a = 'main_category'
  UNION ALL SELECT customer_id, 'omnichannel', CAST(COUNT(DISTINCT channel) AS VARCHAR) FROM p GROUP BY customer_id HAVING COUNT(DISTINCT channel) >= 2
)
"#
    );
    let reference = duckdb_lines(&sql);
    assert!(reference.len() > 1000, "{} rows", reference.len());
    let only_ours: Vec<_> = ours.difference(&reference).take(5).collect();
    let only_reference: Vec<_> = reference.difference(&ours).take(5).collect();
    assert!(
        only_ours.is_empty() && only_reference.is_empty(),
        "only in segments {only_ours:?}, only in DuckDB {only_reference:?}"
    );
}

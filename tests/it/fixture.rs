//! The hand-checked fixture: 21 customers and anonymous tickets around
//! periods 2024-05 and 2024-06, built to hit every rule of docs/design.md §3 — ties
//! on every metric, a majority of one-time buyers (quantile F-scores with
//! gaps), refund lines and a refund-only order, a zero-amount order,
//! customers only active before the window, customers first seen in the
//! period, and a customer whose only purchase is refunded (removed).
//!
//! Every expected value below was worked out by hand from the rows (the
//! comments show the arithmetic); none comes from running the code.

use std::path::Path;

use chrono::{NaiveDate, NaiveDateTime};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{
    Date32Type, Decimal128Type, Float64Type, Int8Type, Int32Type, Int64Type,
};

use crate::common::{
    FixtureLine, default_job, read_parquet, run_job, table_file, write_config, write_transactions,
};

/// (customer_id, order_id, ordered_at UTC, amount in euros)
const LINES: &[(Option<&str>, &str, &str, i64)] = &[
    (Some("c01"), "o01a", "2024-03-10 12:00", 100),
    (Some("c01"), "o01b", "2024-04-10 12:00", 100),
    (Some("c01"), "o01c", "2024-05-10 12:00", 100),
    (Some("c01"), "o01d", "2024-06-20 12:00", 100),
    (Some("c02"), "o02a", "2023-09-01 12:00", 50),
    (Some("c02"), "o02b", "2024-01-15 12:00", 50),
    (Some("c02"), "o02c", "2024-06-05 12:00", 50),
    (Some("c02"), "o02d", "2024-06-20 12:00", 50),
    (Some("c03"), "o03a", "2024-06-25 12:00", 30),
    (Some("c04"), "o04a", "2023-08-01 12:00", 80),
    (Some("c04"), "o04b", "2024-06-25 12:00", 80),
    (Some("c05"), "o05a", "2024-05-20 12:00", 40),
    (Some("c06"), "o06a", "2024-05-20 12:00", 40),
    (Some("c07"), "o07a", "2024-04-01 12:00", 60),
    (Some("c08"), "o08a", "2024-02-01 12:00", 25),
    (Some("c09"), "o09a", "2023-08-01 12:00", 500),
    (Some("c09"), "o09b", "2023-09-01 12:00", 500),
    (Some("c09"), "o09c", "2023-10-01 12:00", 500),
    (Some("c09"), "o09d", "2023-11-01 12:00", 500),
    (Some("c09"), "o09e", "2023-12-01 12:00", 500),
    (Some("c10"), "o10a", "2023-07-15 12:00", 20),
    (Some("c11"), "o11a", "2023-05-01 12:00", 70),
    (Some("c12"), "o12a", "2023-06-15 12:00", 90),
    // c13: a March order partly refunded in June (a line of the same order),
    // and a separate refund-only order in June.
    (Some("c13"), "o13a", "2024-03-01 12:00", 120),
    (Some("c13"), "o13a", "2024-06-10 12:00", -20),
    (Some("c13"), "o13r", "2024-06-12 12:00", -30),
    // c14: a zero-amount order in June is not a purchase.
    (Some("c14"), "o14a", "2024-01-10 12:00", 45),
    (Some("c14"), "o14z", "2024-06-15 12:00", 0),
    // c15: the only purchase (May) is fully refunded in June → removed.
    (Some("c15"), "o15a", "2024-05-15 12:00", 60),
    (Some("c15"), "o15a", "2024-06-03 12:00", -60),
    (Some("c16"), "o16a", "2024-06-01 12:00", 10),
    (Some("c16"), "o16b", "2024-06-02 12:00", 10),
    (Some("c16"), "o16c", "2024-06-03 12:00", 10),
    // c17: one purchase the day before the June window, one on its first day.
    (Some("c17"), "o17a", "2023-06-30 12:00", 1000),
    (Some("c17"), "o17b", "2023-07-01 12:00", 1000),
    // c18: an order whose first line is on 31 May and second on 2 June
    // (dated 31 May, 30 known in May, 50 in June), and a two-line June order.
    (Some("c18"), "o18x", "2024-05-31 23:00", 30),
    (Some("c18"), "o18x", "2024-06-02 09:00", 20),
    (Some("c18"), "o18y", "2024-06-28 10:00", 15),
    (Some("c18"), "o18y", "2024-06-28 10:05", 25),
    (Some("c19"), "o19a", "2024-06-10 12:00", 35),
    (Some("c20"), "o20a", "2023-10-10 12:00", 35),
    // anonymous till tickets
    (None, "t001", "2024-05-05 12:00", 200),
    (None, "t002", "2024-06-15 12:00", 500),
];

/// Write the fixture as Parquet, one Hive folder per month, like the generator.
pub fn write_fixture(data: &Path) {
    let at = |text: &str| {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M")
            .unwrap()
            .and_utc()
            .timestamp_micros()
    };
    let lines: Vec<FixtureLine> = LINES
        .iter()
        .map(|l| (l.0, l.1, at(l.2), l.3 as i128 * 100))
        .collect();
    write_transactions(data, &lines);
}

/// A snapshot row: (customer, segment, rank, r, f, m, rfm_code, recency_days,
/// frequency, monetary in euros, first purchase, last purchase).
type SnapshotRow = (
    &'static str,
    &'static str,
    i32,
    Option<i8>,
    Option<i8>,
    Option<i8>,
    Option<&'static str>,
    i32,
    i64,
    i64,
    &'static str,
    &'static str,
);

// Period 2024-06: as_of 2024-06-30, window [2023-07-01, 2024-07-01), 17 active
// customers (n = 17), score = 1 + floor(5 * strictly-worse / 17).
// F: 11 one-timers → F=1 scores 1; F=2 (11 below) 1+floor(55/17)=4; F=3 (13
// below) 1+floor(65/17)=4; F=4 (14) 1+floor(70/17)=5; F=5 (16) 5. Scores 2 and 3
// are empty: the quantile gap the README explains.
// R (more days = worse): 365:0→1, 351:1→1, 264:2→1, 212:3→1, 172:4→2, 150:5→2,
// 121:6→2, 90:7→3, 41 (×2):8→3, 27:10→3, 20:11→4, 10 (×2):12→4, 5 (×2):14→5, 2:16→5.
// M: 20:0→1, 25:1→1, 30 (×2):2→1, 35 (×2):4→2, 40 (×2):6→2, 45:8→3, 60:9→3,
// 70:10→3, 90:11→4, 160:12→4, 200:13→4, 400:14→5, 1000:15→5, 2500:16→5.
const SNAPSHOT_2024_06: &[SnapshotRow] = &[
    (
        "c01",
        "loyal",
        2,
        Some(4),
        Some(5),
        Some(5),
        Some("455"),
        10,
        4,
        400,
        "2024-03-10",
        "2024-06-20",
    ),
    (
        "c02",
        "loyal",
        2,
        Some(4),
        Some(5),
        Some(4),
        Some("454"),
        10,
        4,
        200,
        "2023-09-01",
        "2024-06-20",
    ),
    (
        "c03",
        "new_customers",
        4,
        Some(5),
        Some(1),
        Some(1),
        Some("511"),
        5,
        1,
        30,
        "2024-06-25",
        "2024-06-25",
    ),
    (
        "c04",
        "champions",
        1,
        Some(5),
        Some(4),
        Some(4),
        Some("544"),
        5,
        2,
        160,
        "2023-08-01",
        "2024-06-25",
    ),
    (
        "c05",
        "about_to_sleep",
        7,
        Some(3),
        Some(1),
        Some(2),
        Some("312"),
        41,
        1,
        40,
        "2024-05-20",
        "2024-05-20",
    ),
    (
        "c06",
        "about_to_sleep",
        7,
        Some(3),
        Some(1),
        Some(2),
        Some("312"),
        41,
        1,
        40,
        "2024-05-20",
        "2024-05-20",
    ),
    (
        "c07",
        "about_to_sleep",
        7,
        Some(3),
        Some(1),
        Some(3),
        Some("313"),
        90,
        1,
        60,
        "2024-04-01",
        "2024-04-01",
    ),
    (
        "c08",
        "hibernating",
        10,
        Some(2),
        Some(1),
        Some(1),
        Some("211"),
        150,
        1,
        25,
        "2024-02-01",
        "2024-02-01",
    ),
    (
        "c09",
        "cant_lose",
        8,
        Some(1),
        Some(5),
        Some(5),
        Some("155"),
        212,
        5,
        2500,
        "2023-08-01",
        "2023-12-01",
    ),
    (
        "c10",
        "hibernating",
        10,
        Some(1),
        Some(1),
        Some(1),
        Some("111"),
        351,
        1,
        20,
        "2023-07-15",
        "2023-07-15",
    ),
    // c11 bought only before the window: lost, null scores, monetary 0.
    (
        "c11",
        "lost",
        11,
        None,
        None,
        None,
        None,
        426,
        0,
        0,
        "2023-05-01",
        "2023-05-01",
    ),
    (
        "c12",
        "lost",
        11,
        None,
        None,
        None,
        None,
        381,
        0,
        0,
        "2023-06-15",
        "2023-06-15",
    ),
    // c13: order of 2024-03-01 nets to 120 - 20 = 100, plus the -30 refund order.
    (
        "c13",
        "hibernating",
        10,
        Some(2),
        Some(1),
        Some(3),
        Some("213"),
        121,
        1,
        70,
        "2024-03-01",
        "2024-03-01",
    ),
    (
        "c14",
        "hibernating",
        10,
        Some(2),
        Some(1),
        Some(3),
        Some("213"),
        172,
        1,
        45,
        "2024-01-10",
        "2024-01-10",
    ),
    (
        "c16",
        "loyal",
        2,
        Some(3),
        Some(4),
        Some(1),
        Some("341"),
        27,
        3,
        30,
        "2024-06-01",
        "2024-06-03",
    ),
    (
        "c17",
        "hibernating",
        10,
        Some(1),
        Some(1),
        Some(5),
        Some("115"),
        365,
        1,
        1000,
        "2023-06-30",
        "2023-07-01",
    ),
    (
        "c18",
        "champions",
        1,
        Some(5),
        Some(4),
        Some(4),
        Some("544"),
        2,
        2,
        90,
        "2024-05-31",
        "2024-06-28",
    ),
    (
        "c19",
        "promising",
        5,
        Some(4),
        Some(1),
        Some(2),
        Some("412"),
        20,
        1,
        35,
        "2024-06-10",
        "2024-06-10",
    ),
    (
        "c20",
        "hibernating",
        10,
        Some(1),
        Some(1),
        Some(2),
        Some("112"),
        264,
        1,
        35,
        "2023-10-10",
        "2023-10-10",
    ),
];

// Period 2024-05 (the "from" side): as_of 2024-05-31, window [2023-06-01,
// 2024-06-01), 16 active. Segments worked out the same way:
// c01 r4 f5 loyal · c02 r3 f4 loyal · c04 r1 f1 hibernating · c05/c06 r5 f1
// new_customers · c07 r4 f1 promising · c08 r3 f1 about_to_sleep · c09 r2 f5
// cant_lose · c10 r1 f1 hibernating · c11 lost · c12 r1 f1 hibernating · c13
// r3 f1 about_to_sleep · c14 r2 f1 hibernating · c15 r4 f1 promising · c17 r1
// f4 at_risk · c18 r5 f1 new_customers · c20 r2 f1 hibernating.
const MIGRATIONS_2024_06: &[(&str, Option<&str>, Option<&str>, &str, Option<&str>)] = &[
    ("c01", Some("loyal"), Some("loyal"), "same", Some("same")),
    ("c02", Some("loyal"), Some("loyal"), "same", Some("same")),
    ("c03", None, Some("new_customers"), "new", None),
    (
        "c04",
        Some("hibernating"),
        Some("champions"),
        "up",
        Some("better"),
    ),
    (
        "c05",
        Some("new_customers"),
        Some("about_to_sleep"),
        "down",
        Some("watch"),
    ),
    (
        "c06",
        Some("new_customers"),
        Some("about_to_sleep"),
        "down",
        Some("watch"),
    ),
    (
        "c07",
        Some("promising"),
        Some("about_to_sleep"),
        "down",
        Some("watch"),
    ),
    (
        "c08",
        Some("about_to_sleep"),
        Some("hibernating"),
        "down",
        Some("watch"),
    ),
    (
        "c09",
        Some("cant_lose"),
        Some("cant_lose"),
        "same",
        Some("same"),
    ),
    (
        "c10",
        Some("hibernating"),
        Some("hibernating"),
        "same",
        Some("same"),
    ),
    ("c11", Some("lost"), Some("lost"), "same", Some("same")),
    (
        "c12",
        Some("hibernating"),
        Some("lost"),
        "churned",
        Some("watch"),
    ),
    (
        "c13",
        Some("about_to_sleep"),
        Some("hibernating"),
        "down",
        Some("watch"),
    ),
    (
        "c14",
        Some("hibernating"),
        Some("hibernating"),
        "same",
        Some("same"),
    ),
    ("c15", Some("promising"), None, "removed", None),
    ("c16", None, Some("loyal"), "new", None),
    (
        "c17",
        Some("at_risk"),
        Some("hibernating"),
        "down",
        Some("watch"),
    ),
    (
        "c18",
        Some("new_customers"),
        Some("champions"),
        "up",
        Some("better"),
    ),
    ("c19", None, Some("promising"), "new", None),
    (
        "c20",
        Some("hibernating"),
        Some("hibernating"),
        "same",
        Some("same"),
    ),
];

/// (from, to, customers, monetary in euros, share_of_from as numerator/denominator)
const MATRIX_2024_06: &[(&str, &str, i64, i64, (i64, i64))] = &[
    ("(new)", "loyal", 1, 30, (1, 3)),
    ("(new)", "new_customers", 1, 30, (1, 3)),
    ("(new)", "promising", 1, 35, (1, 3)),
    ("loyal", "loyal", 2, 600, (2, 2)),
    ("new_customers", "champions", 1, 90, (1, 3)),
    ("new_customers", "about_to_sleep", 2, 80, (2, 3)),
    ("promising", "about_to_sleep", 1, 60, (1, 2)),
    // removed customers carry the previous period's monetary
    ("promising", "(removed)", 1, 60, (1, 2)),
    ("about_to_sleep", "hibernating", 2, 95, (2, 2)),
    ("cant_lose", "cant_lose", 1, 2500, (1, 1)),
    ("at_risk", "hibernating", 1, 1000, (1, 1)),
    ("hibernating", "champions", 1, 160, (1, 5)),
    ("hibernating", "hibernating", 3, 100, (3, 5)),
    ("hibernating", "lost", 1, 0, (1, 5)),
    ("lost", "lost", 1, 0, (1, 1)),
];

/// (segment, customers, active, revenue in euros, orders, avg_basket in cents, monetary, previous, delta)
const SUMMARY_2024_06: &[(&str, i64, i64, i64, i64, Option<i128>, i64, i64, i64)] = &[
    // c04 80 + c18 40 (c18's 31 May order is dated in May)
    ("champions", 2, 2, 120, 2, Some(6000), 250, 0, 2),
    // c01 100 + c02 50+50 + c16 10+10+10 = 230 over 6 orders = 38.333 → 38.33
    ("loyal", 3, 3, 230, 6, Some(3833), 630, 2, 1),
    ("potential_loyalists", 0, 0, 0, 0, None, 0, 0, 0),
    ("new_customers", 1, 1, 30, 1, Some(3000), 30, 3, -2),
    ("promising", 1, 1, 35, 1, Some(3500), 35, 2, -1),
    ("need_attention", 0, 0, 0, 0, None, 0, 0, 0),
    ("about_to_sleep", 3, 0, 0, 0, None, 140, 2, 1),
    ("cant_lose", 1, 0, 0, 0, None, 2500, 1, 0),
    ("at_risk", 0, 0, 0, 0, None, 0, 1, -1),
    // c13's June refund order (-30) is dated in June; c14's zero order is no purchase
    ("hibernating", 6, 0, -30, 0, None, 1195, 5, 1),
    ("lost", 2, 0, 0, 0, None, 0, 1, 1),
];

/// (metric, score, min, max, customers)
const THRESHOLDS_2024_06: &[(&str, i8, Option<&str>, Option<&str>, i64)] = &[
    ("recency", 1, Some("212"), Some("365"), 4),
    ("recency", 2, Some("121"), Some("172"), 3),
    ("recency", 3, Some("27"), Some("90"), 4),
    ("recency", 4, Some("10"), Some("20"), 3),
    ("recency", 5, Some("2"), Some("5"), 3),
    ("frequency", 1, Some("1"), Some("1"), 11),
    ("frequency", 2, None, None, 0),
    ("frequency", 3, None, None, 0),
    ("frequency", 4, Some("2"), Some("3"), 3),
    ("frequency", 5, Some("4"), Some("5"), 3),
    ("monetary", 1, Some("20.00"), Some("30.00"), 4),
    ("monetary", 2, Some("35.00"), Some("40.00"), 4),
    ("monetary", 3, Some("45.00"), Some("70.00"), 3),
    ("monetary", 4, Some("90.00"), Some("200.00"), 3),
    ("monetary", 5, Some("400.00"), Some("2500.00"), 3),
];

fn date(text: &str) -> i32 {
    (NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap()
        - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
    .num_days() as i32
}

fn one(batches: Vec<RecordBatch>) -> RecordBatch {
    datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

fn opt_str(array: &dyn Array, row: usize) -> Option<String> {
    let strings = array.as_string::<i32>();
    strings
        .is_valid(row)
        .then(|| strings.value(row).to_string())
}

fn check_snapshot(warehouse: &Path) {
    let batch = one(read_parquet(&table_file(
        warehouse,
        "rfm_monthly",
        "snapshots",
        "2024-06",
    )));
    assert_eq!(
        batch.num_rows(),
        SNAPSHOT_2024_06.len(),
        "one row per customer of the universe (c15 removed)"
    );
    let column = |name: &str| batch.column(batch.schema().index_of(name).unwrap()).clone();
    for (row, expected) in SNAPSHOT_2024_06.iter().enumerate() {
        let (id, segment, rank, r, f, m, code, recency, frequency, monetary, first, last) =
            *expected;
        let score = |name: &str| {
            let scores = column(name);
            let scores = scores.as_primitive::<Int8Type>();
            scores.is_valid(row).then(|| scores.value(row))
        };
        assert_eq!(
            column("customer_id").as_string::<i32>().value(row),
            id,
            "rows sorted by customer_id"
        );
        assert_eq!(
            column("as_of_date").as_primitive::<Date32Type>().value(row),
            date("2024-06-30"),
            "{id}"
        );
        assert_eq!(
            column("segment").as_string::<i32>().value(row),
            segment,
            "{id} segment"
        );
        assert_eq!(
            column("segment_rank")
                .as_primitive::<Int32Type>()
                .value(row),
            rank,
            "{id} rank"
        );
        assert_eq!(
            (score("r_score"), score("f_score"), score("m_score")),
            (r, f, m),
            "{id} scores"
        );
        assert_eq!(
            opt_str(column("rfm_code").as_ref(), row).as_deref(),
            code,
            "{id} rfm_code"
        );
        assert_eq!(
            column("recency_days")
                .as_primitive::<Int32Type>()
                .value(row),
            recency,
            "{id} recency"
        );
        assert_eq!(
            column("frequency").as_primitive::<Int64Type>().value(row),
            frequency,
            "{id} frequency"
        );
        assert_eq!(
            column("monetary")
                .as_primitive::<Decimal128Type>()
                .value(row),
            monetary as i128 * 100,
            "{id} monetary"
        );
        assert_eq!(
            column("first_purchase_date")
                .as_primitive::<Date32Type>()
                .value(row),
            date(first),
            "{id} first"
        );
        assert_eq!(
            column("last_purchase_date")
                .as_primitive::<Date32Type>()
                .value(row),
            date(last),
            "{id} last"
        );
    }
}

fn check_migrations(warehouse: &Path) {
    let batch = one(read_parquet(&table_file(
        warehouse,
        "rfm_monthly",
        "migrations",
        "2024-06",
    )));
    assert_eq!(batch.num_rows(), MIGRATIONS_2024_06.len());
    let column = |name: &str| batch.column(batch.schema().index_of(name).unwrap()).clone();
    for (row, (id, from, to, movement, evolution)) in MIGRATIONS_2024_06.iter().enumerate() {
        assert_eq!(column("customer_id").as_string::<i32>().value(row), *id);
        assert_eq!(
            column("from_period").as_string::<i32>().value(row),
            "2024-05"
        );
        assert_eq!(
            opt_str(column("from_segment").as_ref(), row).as_deref(),
            *from,
            "{id} from"
        );
        assert_eq!(
            opt_str(column("to_segment").as_ref(), row).as_deref(),
            *to,
            "{id} to"
        );
        assert_eq!(
            column("movement").as_string::<i32>().value(row),
            *movement,
            "{id} movement"
        );
        assert_eq!(
            opt_str(column("evolution").as_ref(), row).as_deref(),
            *evolution,
            "{id} evolution"
        );
    }
}

fn check_matrix(warehouse: &Path) {
    let batch = one(read_parquet(&table_file(
        warehouse,
        "rfm_monthly",
        "migration_matrix",
        "2024-06",
    )));
    assert_eq!(
        batch.num_rows(),
        MATRIX_2024_06.len(),
        "non-empty cells only"
    );
    let column = |name: &str| batch.column(batch.schema().index_of(name).unwrap()).clone();
    for (row, (from, to, customers, monetary, (num, den))) in MATRIX_2024_06.iter().enumerate() {
        assert_eq!(
            column("from_segment").as_string::<i32>().value(row),
            *from,
            "row {row}"
        );
        assert_eq!(
            column("to_segment").as_string::<i32>().value(row),
            *to,
            "row {row}"
        );
        assert_eq!(
            column("customers").as_primitive::<Int64Type>().value(row),
            *customers,
            "{from}->{to}"
        );
        assert_eq!(
            column("monetary")
                .as_primitive::<Decimal128Type>()
                .value(row),
            *monetary as i128 * 100,
            "{from}->{to}"
        );
        let share = column("share_of_from")
            .as_primitive::<Float64Type>()
            .value(row);
        assert!(
            (share - *num as f64 / *den as f64).abs() < 1e-12,
            "{from}->{to} share {share}"
        );
    }
}

fn check_summary(warehouse: &Path) {
    let batch = one(read_parquet(&table_file(
        warehouse,
        "rfm_monthly",
        "segment_summary",
        "2024-06",
    )));
    assert_eq!(
        batch.num_rows(),
        SUMMARY_2024_06.len(),
        "every declared segment, empty ones included"
    );
    let column = |name: &str| batch.column(batch.schema().index_of(name).unwrap()).clone();
    for (row, expected) in SUMMARY_2024_06.iter().enumerate() {
        let (segment, customers, active, revenue, orders, basket, monetary, previous, delta) =
            *expected;
        assert_eq!(column("segment").as_string::<i32>().value(row), segment);
        assert_eq!(
            column("customers").as_primitive::<Int64Type>().value(row),
            customers,
            "{segment}"
        );
        let share = column("share").as_primitive::<Float64Type>().value(row);
        assert!(
            (share - customers as f64 / 19.0).abs() < 1e-12,
            "{segment} share over 19 customers"
        );
        assert_eq!(
            column("active_customers")
                .as_primitive::<Int64Type>()
                .value(row),
            active,
            "{segment}"
        );
        assert_eq!(
            column("revenue")
                .as_primitive::<Decimal128Type>()
                .value(row),
            revenue as i128 * 100,
            "{segment}"
        );
        assert_eq!(
            column("orders").as_primitive::<Int64Type>().value(row),
            orders,
            "{segment}"
        );
        let baskets = column("avg_basket");
        let baskets = baskets.as_primitive::<Decimal128Type>();
        assert_eq!(
            baskets.is_valid(row).then(|| baskets.value(row)),
            basket,
            "{segment} avg_basket"
        );
        assert_eq!(
            column("monetary")
                .as_primitive::<Decimal128Type>()
                .value(row),
            monetary as i128 * 100,
            "{segment}"
        );
        assert_eq!(
            column("previous_customers")
                .as_primitive::<Int64Type>()
                .value(row),
            previous,
            "{segment}"
        );
        assert_eq!(
            column("delta").as_primitive::<Int64Type>().value(row),
            delta,
            "{segment}"
        );
    }
    // loyal: frequency (4 + 4 + 3) / 3, recency (10 + 10 + 27) / 3
    let avg_frequency = column("avg_frequency");
    assert!((avg_frequency.as_primitive::<Float64Type>().value(1) - 11.0 / 3.0).abs() < 1e-9);
    let avg_recency = column("avg_recency");
    assert!((avg_recency.as_primitive::<Float64Type>().value(1) - 47.0 / 3.0).abs() < 1e-9);
    assert!(avg_recency.is_null(2), "an empty segment has no average");
}

fn check_thresholds(warehouse: &Path) {
    let batch = one(read_parquet(&table_file(
        warehouse,
        "rfm_monthly",
        "score_thresholds",
        "2024-06",
    )));
    assert_eq!(batch.num_rows(), 15, "3 metrics × 5 scores");
    let column = |name: &str| batch.column(batch.schema().index_of(name).unwrap()).clone();
    for (row, (metric, score, min, max, customers)) in THRESHOLDS_2024_06.iter().enumerate() {
        assert_eq!(column("metric").as_string::<i32>().value(row), *metric);
        assert_eq!(
            column("score").as_primitive::<Int8Type>().value(row),
            *score
        );
        assert_eq!(
            opt_str(column("min_value").as_ref(), row).as_deref(),
            *min,
            "{metric} {score} min"
        );
        assert_eq!(
            opt_str(column("max_value").as_ref(), row).as_deref(),
            *max,
            "{metric} {score} max"
        );
        assert_eq!(
            column("customers").as_primitive::<Int64Type>().value(row),
            *customers,
            "{metric} {score}"
        );
    }
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("transactions");
    write_fixture(&data);
    let warehouse = dir.path().join("warehouse");
    let config = write_config(dir.path(), &data, &warehouse);
    (dir, config, warehouse)
}

fn run(dir: &Path, config: &Path, period: &str) -> String {
    run_job(dir, &default_job(), config, period)
}

#[test]
fn hand_checked_period_with_reclassified_previous() {
    let (dir, config, warehouse) = setup();
    // 2024-05 is not published: the from side is reclassified.
    let stdout = run(dir.path(), &config, "2024-06");
    assert!(stdout.contains("reclassified"), "{stdout}");
    check_snapshot(&warehouse);
    check_migrations(&warehouse);
    check_matrix(&warehouse);
    check_summary(&warehouse);
    check_thresholds(&warehouse);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(warehouse.join("rfm_monthly/_runs/period=2024-06/_manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["from_side"], "reclassified");
    // 43 lines, 2 of them anonymous; June revenue: every line dated in June.
    assert_eq!(manifest["rows"]["read"], 43);
    assert_eq!(manifest["rows"]["anonymous"], 2);
    assert_eq!(manifest["rows"]["used"], 41);
    // June lines: 100+50+50+30+80-20-30+0-60+10+10+10+20+15+25+35+500 = 825
    assert_eq!(manifest["period_revenue"], "825.00");
}

#[test]
fn hand_checked_period_with_published_previous_and_rerun() {
    let (dir, config, warehouse) = setup();
    run(dir.path(), &config, "2024-05");
    let stdout = run(dir.path(), &config, "2024-06");
    assert!(stdout.contains("published"), "{stdout}");
    check_snapshot(&warehouse);
    check_migrations(&warehouse);
    check_matrix(&warehouse);
    check_summary(&warehouse);

    // Rerunning replaces the period with identical files and no extra ones.
    let tables = [
        "snapshots",
        "migrations",
        "migration_matrix",
        "segment_summary",
        "score_thresholds",
        "segment_definitions",
    ];
    let before: Vec<Vec<u8>> = tables
        .iter()
        .map(|t| std::fs::read(table_file(&warehouse, "rfm_monthly", t, "2024-06")).unwrap())
        .collect();
    run(dir.path(), &config, "2024-06");
    for (table, bytes) in tables.iter().zip(before) {
        let after = std::fs::read(table_file(&warehouse, "rfm_monthly", table, "2024-06")).unwrap();
        assert!(after == bytes, "{table} changed on rerun");
        let folder = warehouse
            .join("rfm_monthly")
            .join(table)
            .join("period=2024-06");
        assert_eq!(
            std::fs::read_dir(folder).unwrap().count(),
            1,
            "{table}: one file per partition"
        );
    }
    let published = one(read_parquet(
        &warehouse.join("rfm_monthly/published_periods/part-0.parquet"),
    ));
    let periods: Vec<&str> = published
        .column(0)
        .as_string::<i32>()
        .iter()
        .map(|p| p.unwrap())
        .collect();
    assert_eq!(periods, ["2024-05", "2024-06"]);
}

//! The shipped jobs besides the default one (docs/design.md §3b): `rfm_7_segments`,
//! `lifecycle_groups` and `value_tiers`. For each job:
//! - a small hand-checked fixture whose expected segments were worked out by
//!   hand from the rows (the comments show the arithmetic; nothing here comes
//!   from running the code);
//! - a run on generated data compared customer by customer with an
//!   independent plain-Rust translation of the job's rules, over the metrics
//!   and scores of the reference implementation (`tests/it/reference.rs`),
//!   migrations included.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Decimal128Type, Int8Type, Int32Type, Int64Type};

use crate::common::{
    FixtureLine, read_parquet, repo, segments_ok, table_file, write_config, write_transactions,
};
use crate::reference::{CustomerFacts, read_generated, segments_of_job};

// ---------------------------------------------------------------------------
// Helpers shared with the backfill and compare tests
// ---------------------------------------------------------------------------

/// A hand-written transaction line: (customer_id, order_id, date `YYYY-MM-DD`
/// (at noon UTC), amount in euros).
pub type Line = (&'static str, &'static str, &'static str, i64);

/// Write `lines` as Parquet under `data`, one Hive `month=` folder per month,
/// like the generator.
pub fn write_lines(data: &Path, lines: &[Line]) {
    let noon = |text: &str| {
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .unwrap()
            .and_hms_opt(12, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_micros()
    };
    let lines: Vec<FixtureLine> = lines
        .iter()
        .map(|l| (Some(l.0), l.1, noon(l.2), l.3 as i128 * 100))
        .collect();
    write_transactions(data, &lines);
}

/// A shipped job file.
pub fn job(name: &str) -> PathBuf {
    repo().join("jobs").join(format!("{name}.yaml"))
}

pub use crate::common::run_job as run;

/// The data-quality gates on month-to-month changes (docs/design.md §7), allowed
/// for the hand fixtures: a handful of customers moves by more than 50% from
/// one month to the next by design.
pub const ALLOW_CHANGE_GATES: [&str; 4] = [
    "--allow-gate",
    "active_customers_change",
    "--allow-gate",
    "revenue_change",
];

/// `segments run` of `job` for `period` on a hand fixture (change gates allowed).
pub fn run_fixture(dir: &Path, job: &Path, config: &Path, period: &str) -> String {
    let mut args = vec![
        "run",
        "--job",
        job.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--period",
        period,
    ];
    args.extend(ALLOW_CHANGE_GATES);
    segments_ok(dir, &args)
}

/// One published snapshot row, the columns these tests check.
#[derive(Clone, Debug, PartialEq)]
pub struct Published {
    pub segment: String,
    pub segment_rank: i32,
    pub recency_days: i32,
    pub frequency: i64,
    /// cents
    pub monetary: i128,
    pub scores: (Option<i8>, Option<i8>, Option<i8>),
}

fn one(batches: Vec<RecordBatch>) -> RecordBatch {
    datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

/// The published snapshot of `job` for `period`, keyed by customer id.
pub fn snapshot(warehouse: &Path, job: &str, period: &str) -> BTreeMap<String, Published> {
    let batch = one(read_parquet(&table_file(
        warehouse,
        job,
        "snapshots",
        period,
    )));
    let column = |name: &str| batch.column(batch.schema().index_of(name).unwrap()).clone();
    let (ids, segments, ranks) = (
        column("customer_id"),
        column("segment"),
        column("segment_rank"),
    );
    let (recency, frequency, monetary) = (
        column("recency_days"),
        column("frequency"),
        column("monetary"),
    );
    let (r, f, m) = (column("r_score"), column("f_score"), column("m_score"));
    let score = |a: &dyn Array, row: usize| {
        let a = a.as_primitive::<Int8Type>();
        a.is_valid(row).then(|| a.value(row))
    };
    let mut out = BTreeMap::new();
    for row in 0..batch.num_rows() {
        let previous = out.insert(
            ids.as_string::<i32>().value(row).to_string(),
            Published {
                segment: segments.as_string::<i32>().value(row).to_string(),
                segment_rank: ranks.as_primitive::<Int32Type>().value(row),
                recency_days: recency.as_primitive::<Int32Type>().value(row),
                frequency: frequency.as_primitive::<Int64Type>().value(row),
                monetary: monetary.as_primitive::<Decimal128Type>().value(row),
                scores: (score(&r, row), score(&f, row), score(&m, row)),
            },
        );
        assert!(previous.is_none(), "one snapshot row per customer");
    }
    out
}

/// The published migrations of `job` for `period`: customer → (movement, evolution).
pub fn migrations(
    warehouse: &Path,
    job: &str,
    period: &str,
) -> BTreeMap<String, (String, Option<String>)> {
    let batch = one(read_parquet(&table_file(
        warehouse,
        job,
        "migrations",
        period,
    )));
    let column = |name: &str| batch.column(batch.schema().index_of(name).unwrap()).clone();
    let (ids, movements, evolutions) = (
        column("customer_id"),
        column("movement"),
        column("evolution"),
    );
    let evolutions = evolutions.as_string::<i32>();
    (0..batch.num_rows())
        .map(|row| {
            (
                ids.as_string::<i32>().value(row).to_string(),
                (
                    movements.as_string::<i32>().value(row).to_string(),
                    evolutions
                        .is_valid(row)
                        .then(|| evolutions.value(row).to_string()),
                ),
            )
        })
        .collect()
}

/// Customers per segment, from a snapshot.
fn counts(snapshot: &BTreeMap<String, Published>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for row in snapshot.values() {
        *counts.entry(row.segment.clone()).or_insert(0) += 1;
    }
    counts
}

/// `[("a", 2), …]` as a map, to compare with [`counts`].
fn expected_counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| (s.to_string(), *n))
        .collect()
}

/// A temp dir with `lines` under `transactions/` and a config publishing to
/// `warehouse/`.
fn fixture(lines: &[Line]) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("transactions");
    write_lines(&data, lines);
    let warehouse = dir.path().join("warehouse");
    let config = write_config(dir.path(), &data, &warehouse);
    (dir, config, warehouse)
}

fn segment_of<'a>(snapshot: &'a BTreeMap<String, Published>, id: &str) -> &'a str {
    &snapshot
        .get(id)
        .unwrap_or_else(|| panic!("{id} missing from the snapshot"))
        .segment
}

// ---------------------------------------------------------------------------
// rfm_7_segments: hand-checked fixture
// ---------------------------------------------------------------------------

// Period 2024-06: as_of 2024-06-30, window [2023-07-01, 2024-07-01). Ten active
// customers (n = 10) with every order 10 €, and one lost customer, so that
// score = 1 + floor(5 · worse / 10) = 1 + floor(worse / 2): 0–1 customers
// strictly worse → 1, 2–3 → 2, 4–5 → 3, 6–7 → 4, 8–9 → 5.
const RFM7_LINES: &[Line] = &[
    // A: 5 purchases, last 2024-06-25 (5 days)
    ("a", "a1", "2024-02-10", 10),
    ("a", "a2", "2024-03-10", 10),
    ("a", "a3", "2024-04-10", 10),
    ("a", "a4", "2024-05-10", 10),
    ("a", "a5", "2024-06-25", 10),
    // B: 3 purchases, last 2024-05-01 (30 + 30 = 60 days)
    ("b", "b1", "2023-12-01", 10),
    ("b", "b2", "2024-03-01", 10),
    ("b", "b3", "2024-05-01", 10),
    // C: 1 purchase 2024-06-10 (20 days)
    ("c", "c1", "2024-06-10", 10),
    // D: 2 purchases, last 2024-05-31 (30 days)
    ("d", "d1", "2024-01-15", 10),
    ("d", "d2", "2024-05-31", 10),
    // E: 5 purchases on the window's first days, last 2023-07-05:
    // 2023-07-05 → 2024-07-05 is 366 days (29 Feb), minus 5 = 361 days
    ("e", "e1", "2023-07-01", 10),
    ("e", "e2", "2023-07-02", 10),
    ("e", "e3", "2023-07-03", 10),
    ("e", "e4", "2023-07-04", 10),
    ("e", "e5", "2023-07-05", 10),
    // F: 3 purchases, last 2024-01-02: 30 + 29 + 31 + 30 + 31 + 29 = 180 days
    ("f", "f1", "2023-09-01", 10),
    ("f", "f2", "2023-11-01", 10),
    ("f", "f3", "2024-01-02", 10),
    // G: 1 purchase 2023-08-01: 366 − 32 = 334 days
    ("g", "g1", "2023-08-01", 10),
    // H: 1 purchase 2024-06-29 (1 day)
    ("h", "h1", "2024-06-29", 10),
    // I: 4 purchases, last 2024-06-20 (10 days)
    ("i", "i1", "2024-03-20", 10),
    ("i", "i2", "2024-04-20", 10),
    ("i", "i3", "2024-05-20", 10),
    ("i", "i4", "2024-06-20", 10),
    // J: 2 purchases, last 2024-03-02: 30 + 30 + 31 + 29 = 120 days
    ("j", "j1", "2023-10-02", 10),
    ("j", "j2", "2024-03-02", 10),
    // K: bought only before the window (2023-01-15): lost,
    // 365 days to 2024-01-15 + 16 + 29 + 31 + 30 + 31 + 15 = 532 days
    ("k", "k1", "2023-01-15", 10),
];

// Recency, most days (worst) first: E 361, G 334, F 180, J 120, B 60, D 30,
// C 20, I 10, A 5, H 1 (all distinct) → r = E 1, G 1, F 2, J 2, B 3, D 3, C 4,
// I 4, A 5, H 5.
// Frequency: C, G, H = 1 (0 below → f 1); D, J = 2 (3 below → 1 + 1 = 2);
// B, F = 3 (5 below → 1 + 2 = 3); I = 4 (7 below → 1 + 3 = 4); A, E = 5
// (8 below → 1 + 4 = 5).
// Grid (first match): champions r≥4 f≥4 · loyal r≥3 f≥3 · new r≥4 f≤2 ·
// need_attention r=3 f≤2 · cant_lose r≤2 f≥4 · at_risk r≤2 f=3 ·
// hibernating r≤2 f≤2 · lost.
/// (customer, segment, r, f, recency_days, frequency)
const RFM7_EXPECTED: &[(&str, &str, Option<i8>, Option<i8>, i32, i64)] = &[
    ("a", "champions", Some(5), Some(5), 5, 5),
    ("b", "loyal", Some(3), Some(3), 60, 3),
    ("c", "new_customers", Some(4), Some(1), 20, 1),
    ("d", "need_attention", Some(3), Some(2), 30, 2),
    ("e", "cant_lose", Some(1), Some(5), 361, 5),
    ("f", "at_risk", Some(2), Some(3), 180, 3),
    ("g", "hibernating", Some(1), Some(1), 334, 1),
    ("h", "new_customers", Some(5), Some(1), 1, 1),
    ("i", "champions", Some(4), Some(4), 10, 4),
    ("j", "hibernating", Some(2), Some(2), 120, 2),
    ("k", "lost", None, None, 532, 0),
];

const RFM7_SEGMENTS: [&str; 8] = [
    "champions",
    "loyal",
    "new_customers",
    "need_attention",
    "cant_lose",
    "at_risk",
    "hibernating",
    "lost",
];

#[test]
fn rfm_7_segments_hand_checked_fixture() {
    let (dir, config, warehouse) = fixture(RFM7_LINES);
    run_fixture(dir.path(), &job("rfm_7_segments"), &config, "2024-06");
    let published = snapshot(&warehouse, "rfm_7_segments", "2024-06");
    assert_eq!(published.len(), RFM7_EXPECTED.len());
    for (id, segment, r, f, recency, frequency) in RFM7_EXPECTED {
        let row = &published[*id];
        assert_eq!(row.segment, *segment, "{id}");
        let rank = RFM7_SEGMENTS.iter().position(|s| s == segment).unwrap() as i32 + 1;
        assert_eq!(row.segment_rank, rank, "{id} rank");
        assert_eq!((row.scores.0, row.scores.1), (*r, *f), "{id} r, f");
        assert_eq!(
            (row.recency_days, row.frequency),
            (*recency, *frequency),
            "{id}"
        );
        // every order is 10 €, and K's is before the window
        assert_eq!(row.monetary, *frequency as i128 * 1000, "{id} monetary");
    }
    // Every segment of the grid is hit: 2 + 1 + 2 + 1 + 1 + 1 + 2 + 1 = 11.
    assert_eq!(
        counts(&published),
        expected_counts(&[
            ("champions", 2),
            ("loyal", 1),
            ("new_customers", 2),
            ("need_attention", 1),
            ("cant_lose", 1),
            ("at_risk", 1),
            ("hibernating", 2),
            ("lost", 1),
        ])
    );
    // The summary lists the 8 declared segments in rank order.
    let summary = one(read_parquet(&table_file(
        &warehouse,
        "rfm_7_segments",
        "segment_summary",
        "2024-06",
    )));
    let names: Vec<&str> = summary
        .column(summary.schema().index_of("segment").unwrap())
        .as_string::<i32>()
        .iter()
        .map(|s| s.unwrap())
        .collect();
    assert_eq!(names, RFM7_SEGMENTS);
}

// ---------------------------------------------------------------------------
// lifecycle_groups: hand-checked fixture
// ---------------------------------------------------------------------------

// Period 2024-06: as_of 2024-06-30, window [2023-07-01, 2024-07-01) (366 days,
// 29 Feb 2024 included). Orders of 10 € unless said. "days" = recency_days,
// "first" = days since the first purchase.
const LIFECYCLE_LINES: &[Line] = &[
    // L01: 4 purchases, last 2024-05-01 = 60 days → champions (boundary)
    ("l01", "l01a", "2024-02-01", 10),
    ("l01", "l01b", "2024-03-01", 10),
    ("l01", "l01c", "2024-04-01", 10),
    ("l01", "l01d", "2024-05-01", 10),
    // L02: 4 purchases, last 2024-04-30 = 31 + 30 = 61 days → not champions;
    // ≥ 2 purchases and ≤ 120 days → loyal
    ("l02", "l02a", "2024-01-30", 10),
    ("l02", "l02b", "2024-02-29", 10),
    ("l02", "l02c", "2024-03-30", 10),
    ("l02", "l02d", "2024-04-30", 10),
    // L03: 2 purchases, last 2024-03-02 = 30 + 30 + 31 + 29 = 120 days → loyal (boundary)
    ("l03", "l03a", "2023-12-01", 10),
    ("l03", "l03b", "2024-03-02", 10),
    // L04: 2 purchases, last 2024-03-01 = 121 days; first 2023-12-01 =
    // 31 + 31 + 29 + 121 = 212 days → at_risk (≤ 240)
    ("l04", "l04a", "2023-12-01", 10),
    ("l04", "l04b", "2024-03-01", 10),
    // L05: one purchase 2024-04-01 = 30 + 31 + 29 = 90 days → recent (boundary)
    ("l05", "l05a", "2024-04-01", 10),
    // L06: one purchase 2024-03-31 = 91 days → at_risk
    ("l06", "l06a", "2024-03-31", 10),
    // L07: first 2024-04-15 (30 + 31 + 15 = 76 days), again 2024-06-25 (5
    // days): 2 purchases → loyal, which comes before recent
    ("l07", "l07a", "2024-04-15", 10),
    ("l07", "l07b", "2024-06-25", 10),
    // L08: a customer from 2022 back on 2024-06-20 (10 days): 1 purchase in
    // the window, first purchase long ago → neither loyal nor recent → at_risk
    ("l08", "l08a", "2022-12-01", 10),
    ("l08", "l08b", "2024-06-20", 10),
    // L09: 2023-11-03 = 27 + 31 + 31 + 29 + 31 + 30 + 31 + 30 = 240 days → at_risk (boundary)
    ("l09", "l09a", "2023-11-03", 10),
    // L10: 2023-11-02 = 241 days → lapsed
    ("l10", "l10a", "2023-11-02", 10),
    // L11: 2023-07-01, the window's first day: 366 − 1 = 365 days, 1 purchase → lapsed
    ("l11", "l11a", "2023-07-01", 10),
    // L12: 2023-06-30 = 366 days, no purchase in the window → inactive
    ("l12", "l12a", "2023-06-30", 10),
    // L13: 5 purchases but the last on 2023-08-05 = 366 − 32 − 4 = 330 days → lapsed
    ("l13", "l13a", "2023-08-01", 10),
    ("l13", "l13b", "2023-08-02", 10),
    ("l13", "l13c", "2023-08-03", 10),
    ("l13", "l13d", "2023-08-04", 10),
    ("l13", "l13e", "2023-08-05", 10),
    // L14: 4 orders, but the June one is fully refunded (amount 0, no
    // purchase): 3 purchases, last 2024-05-10 = 21 + 30 = 51 days → loyal
    ("l14", "l14a", "2024-03-10", 10),
    ("l14", "l14b", "2024-04-10", 10),
    ("l14", "l14c", "2024-05-10", 10),
    ("l14", "l14d", "2024-06-10", 10),
    ("l14", "l14d", "2024-06-15", -10),
    // L15: one purchase on 2024-06-30 (0 days) → recent
    ("l15", "l15a", "2024-06-30", 10),
    // L16, L17: after 2024-06, for period 2025-06
    ("l16", "l16a", "2025-06-15", 10),
    ("l17", "l17a", "2024-07-01", 10),
];

/// (customer, group, recency_days, frequency) for 2024-06
const LIFECYCLE_2024_06: &[(&str, &str, i32, i64)] = &[
    ("l01", "champions", 60, 4),
    ("l02", "loyal", 61, 4),
    ("l03", "loyal", 120, 2),
    ("l04", "at_risk", 121, 2),
    ("l05", "recent", 90, 1),
    ("l06", "at_risk", 91, 1),
    ("l07", "loyal", 5, 2),
    ("l08", "at_risk", 10, 1),
    ("l09", "at_risk", 240, 1),
    ("l10", "lapsed", 241, 1),
    ("l11", "lapsed", 365, 1),
    ("l12", "inactive", 366, 0),
    ("l13", "lapsed", 330, 5),
    ("l14", "loyal", 51, 3),
    ("l15", "recent", 0, 1),
];

#[test]
fn lifecycle_groups_hand_checked_fixture() {
    let (dir, config, warehouse) = fixture(LIFECYCLE_LINES);
    let job = job("lifecycle_groups");
    run_fixture(dir.path(), &job, &config, "2024-06");
    let snapshot_2024_06 = snapshot(&warehouse, "lifecycle_groups", "2024-06");
    assert_eq!(snapshot_2024_06.len(), LIFECYCLE_2024_06.len());
    for (id, group, recency, frequency) in LIFECYCLE_2024_06 {
        let row = &snapshot_2024_06[*id];
        assert_eq!(row.segment, *group, "{id}");
        assert_eq!(
            (row.recency_days, row.frequency),
            (*recency, *frequency),
            "{id}"
        );
        assert_eq!(row.scores, (None, None, None), "{id}: no scores");
    }
    // 1 + 4 + 2 + 4 + 3 + 1 = 15 customers
    assert_eq!(
        counts(&snapshot_2024_06),
        expected_counts(&[
            ("champions", 1),
            ("loyal", 4),
            ("recent", 2),
            ("at_risk", 4),
            ("lapsed", 3),
            ("inactive", 1),
        ])
    );
    // Movements against 2024-05 (reclassified; as_of 2024-05-31):
    // L01 4 purchases, 30 days → champions → champions: same;
    // L07 one purchase 46 days ago, first 46 days ago → recent (3) → loyal (2): up;
    // L06 one purchase 61 days ago, first too → recent (3) → at_risk (4): down;
    // L15 first bought on 2024-06-30: new.
    let moves = migrations(&warehouse, "lifecycle_groups", "2024-06");
    let movement = |id: &str| moves[id].0.as_str();
    assert_eq!(
        [
            movement("l01"),
            movement("l07"),
            movement("l06"),
            movement("l15")
        ],
        ["same", "up", "down", "new"]
    );

    // Period 2025-06: as_of 2025-06-30, window [2024-07-01, 2025-07-01) has
    // only 365 days. L15 (2024-06-30) is exactly 365 days ago but outside the
    // window: no purchase in 12 months → inactive, not lapsed. L17 (2024-07-01)
    // is 364 days ago, inside → lapsed. L16 (2025-06-15, 15 days) → recent.
    // Everybody else last bought on or before 2024-06-25 (≥ 370 days) → inactive.
    run_fixture(dir.path(), &job, &config, "2025-06");
    let snapshot_2025_06 = snapshot(&warehouse, "lifecycle_groups", "2025-06");
    assert_eq!(
        (
            segment_of(&snapshot_2025_06, "l15"),
            snapshot_2025_06["l15"].recency_days,
            snapshot_2025_06["l15"].frequency
        ),
        ("inactive", 365, 0)
    );
    assert_eq!(
        (
            segment_of(&snapshot_2025_06, "l17"),
            snapshot_2025_06["l17"].recency_days
        ),
        ("lapsed", 364)
    );
    assert_eq!(segment_of(&snapshot_2025_06, "l16"), "recent");
    assert_eq!(
        counts(&snapshot_2025_06),
        expected_counts(&[("recent", 1), ("lapsed", 1), ("inactive", 15)])
    );
    // Against 2025-05 (window [2024-06-01, 2025-06-01)): L07 (2024-06-25),
    // L08 (2024-06-20) and L15 (2024-06-30) were lapsed with one purchase in
    // the window, and have none in 2025-06's → churned; L16 is new; L17
    // stays lapsed and the 12 others stay inactive → same.
    let moves = migrations(&warehouse, "lifecycle_groups", "2025-06");
    for (id, (movement, evolution)) in &moves {
        let expected = match id.as_str() {
            "l07" | "l08" | "l15" => ("churned", Some("watch")),
            "l16" => ("new", None),
            _ => ("same", Some("same")),
        };
        assert_eq!(
            (movement.as_str(), evolution.as_deref()),
            expected,
            "{id} 2025-06"
        );
    }
    assert_eq!(moves.len(), 17);
}

// ---------------------------------------------------------------------------
// value_tiers: hand-checked fixture
// ---------------------------------------------------------------------------

// Period 2024-06: window [2023-07-01, 2024-07-01). 20 active customers
// (n = 20) and one inactive. k = RANK() OVER (ORDER BY monetary DESC).
const VALUE_LINES: &[Line] = &[
    ("v01", "v01a", "2024-06-01", 1000), // k = 1
    ("v02", "v02a", "2024-06-02", 500),  // k = 2
    ("v03", "v03a", "2024-06-03", 400),  // k = 3
    ("v04", "v04a", "2024-06-04", 300),  // k = 4
    ("v05", "v05a", "2024-05-05", 150),  // two orders: 150 + 50 = 200, k = 5
    ("v05", "v05b", "2024-06-05", 50),
    ("v06", "v06a", "2024-06-06", 150), // tied with v07: k = 6 for both
    ("v07", "v07a", "2024-06-07", 150),
    // v08: 5000 before the window does not count: monetary 100, k = 8
    ("v08", "v08a", "2023-05-01", 5000),
    ("v08", "v08b", "2024-06-08", 100),
    ("v09", "v09a", "2024-06-09", 95), // k = 9 … v19 45, k = 19
    ("v10", "v10a", "2024-06-10", 90),
    ("v11", "v11a", "2024-06-11", 85),
    ("v12", "v12a", "2024-06-12", 80),
    ("v13", "v13a", "2024-06-13", 75),
    ("v14", "v14a", "2024-06-14", 70),
    ("v15", "v15a", "2024-06-15", 65),
    ("v16", "v16a", "2024-06-16", 60),
    ("v17", "v17a", "2024-06-17", 55),
    ("v18", "v18a", "2024-06-18", 50),
    ("v19", "v19a", "2024-06-19", 45),
    // v20: a purchase of 50 and a refund-only order of −80: monetary −30,
    // still active (1 purchase), last: k = 20
    ("v20", "v20a", "2024-02-01", 50),
    ("v20", "v20r", "2024-03-01", -80),
    // v21: bought only before the window → inactive
    ("v21", "v21a", "2023-06-01", 700),
];

#[test]
fn value_tiers_hand_checked_fixture() {
    let (dir, config, warehouse) = fixture(VALUE_LINES);
    run_fixture(dir.path(), &job("value_tiers"), &config, "2024-06");
    let tiers = snapshot(&warehouse, "value_tiers", "2024-06");
    // vip: k ≤ 5% × 20 = 1 → v01; regular: k ≤ 30% × 20 = 6 → v02 … v07 (v06
    // and v07 tied at 6); occasional: v08 … v20; inactive: v21.
    let expected = |id: &str| match id {
        "v01" => "vip",
        "v02" | "v03" | "v04" | "v05" | "v06" | "v07" => "regular",
        "v21" => "inactive",
        _ => "occasional",
    };
    assert_eq!(tiers.len(), 21);
    for (id, row) in &tiers {
        assert_eq!(row.segment, expected(id), "{id}");
    }
    assert_eq!(tiers["v08"].monetary, 10_000, "window spend only");
    assert_eq!((tiers["v20"].monetary, tiers["v20"].frequency), (-3_000, 1));
    assert_eq!(
        counts(&tiers),
        expected_counts(&[
            ("vip", 1),
            ("regular", 6),
            ("occasional", 13),
            ("inactive", 1)
        ])
    );

    // The cut points are edited in the job's `value_cut_points` step: with
    // 10% and 27.5%, vip k ≤ 2 → v01, v02; regular k ≤ 5.5 → v03, v04, v05;
    // the tied v06 and v07 (k = 6) become occasional.
    let text = std::fs::read_to_string(job("value_tiers")).unwrap();
    let edited = text
        .replace(
            "CAST(5 AS DECIMAL(7, 4)) AS vip_percent",
            "CAST(10 AS DECIMAL(7, 4)) AS vip_percent",
        )
        .replace(
            "CAST(30 AS DECIMAL(7, 4)) AS regular_percent",
            "CAST(27.5 AS DECIMAL(7, 4)) AS regular_percent",
        )
        .replace(
            "window_months: 12",
            &format!(
                "window_months: 12\nsql_dir: {}",
                repo().join("sql").display()
            ),
        );
    assert_ne!(edited, text, "the job's cut points moved: update this test");
    let edited_job = dir.path().join("value_tiers.yaml");
    std::fs::write(&edited_job, edited).unwrap();
    run_fixture(dir.path(), &edited_job, &config, "2024-06");
    let edited_snapshot = snapshot(&warehouse, "value_tiers", "2024-06");
    let expected = |id: &str| match id {
        "v01" | "v02" => "vip",
        "v03" | "v04" | "v05" => "regular",
        "v21" => "inactive",
        _ => "occasional",
    };
    for (id, row) in &edited_snapshot {
        assert_eq!(row.segment, expected(id), "{id} with 10% / 27.5%");
    }
}

// ---------------------------------------------------------------------------
// Generated data against independent translations of the rules
// ---------------------------------------------------------------------------

/// Generate a data set in `dir/data` and return the config publishing to
/// `dir/warehouse`.
pub fn generated(dir: &Path, customers: u32, months: u32, start: &str, seed: u32) -> PathBuf {
    segments_ok(
        dir,
        &[
            "generate",
            "--customers",
            &customers.to_string(),
            "--months",
            &months.to_string(),
            "--start",
            start,
            "--seed",
            &seed.to_string(),
            "--out",
            "data",
        ],
    );
    let config = write_config(dir, &dir.join("data/transactions"), &dir.join("warehouse"));
    // The customer file `generate` writes, with its attributes mapped.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = text.replacen(
        "quality:",
        &format!(
            "  customers:\n    url: {}/\n    format: parquet\n    columns:\n      region: region\n      city: city\n      age_band: age_band\n      market: market\n      loyalty_member: {{type: boolean}}\nquality:",
            dir.join("data/customers").display()
        ),
        1,
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// The movement of docs/design.md §3a from (rank, frequency) on both sides.
fn movement(
    from: Option<(i32, i64)>,
    to: Option<(i32, i64)>,
) -> (&'static str, Option<&'static str>) {
    match (from, to) {
        (None, Some(_)) => ("new", None),
        (Some(_), None) => ("removed", None),
        (Some((_, f)), Some((_, t))) if f > 0 && t == 0 => ("churned", Some("watch")),
        (Some((_, f)), Some((_, t))) if f == 0 && t > 0 => ("reactivated", Some("better")),
        (Some((a, _)), Some((b, _))) if b < a => ("up", Some("better")),
        (Some((a, _)), Some((b, _))) if b == a => ("same", Some("same")),
        (Some(_), Some(_)) => ("down", Some("watch")),
        (None, None) => unreachable!(),
    }
}

/// Run `job` on generated data for `periods` (consecutive, in order, so that
/// each later one migrates from a published one) and compare every snapshot
/// and migration row with `expected` (customer facts → segment), using the
/// job's segment order for ranks. Returns the segments the translation
/// populated over all periods.
fn check_generated(
    job_name: &str,
    seed: u32,
    periods: &[&str],
    declared: &[&str],
    expected: impl Fn(&CustomerFacts, &BTreeMap<String, CustomerFacts>) -> &'static str,
) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let config = generated(dir.path(), 2000, 20, "2023-01", seed);
    let warehouse = dir.path().join("warehouse");
    let data = read_generated(&dir.path().join("data/transactions"));
    let rank = |segment: &str| declared.iter().position(|s| *s == segment).unwrap() as i32 + 1;
    let mut problems = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut previous: Option<BTreeMap<String, (i32, i64)>> = None;
    for period in periods {
        run(dir.path(), &job(job_name), &config, period);
        let facts = data.customers(period);
        let published = snapshot(&warehouse, job_name, period);
        let ids_match = published.keys().eq(facts.keys());
        if !ids_match {
            problems.push(format!(
                "{period}: {} customers published, {} expected",
                published.len(),
                facts.len()
            ));
        }
        let mut sides = BTreeMap::new();
        for (id, customer) in &facts {
            let segment = expected(customer, &facts);
            seen.insert(segment.to_string());
            sides.insert(id.clone(), (rank(segment), customer.frequency));
            let Some(row) = published.get(id) else {
                continue;
            };
            let want = (
                segment,
                rank(segment),
                customer.recency_days,
                customer.frequency,
                customer.monetary,
            );
            let got = (
                row.segment.as_str(),
                row.segment_rank,
                row.recency_days,
                row.frequency,
                row.monetary,
            );
            if want != got && problems.len() < 20 {
                problems.push(format!(
                    "{period} {id}: expected {want:?}, published {got:?} ({customer:?})"
                ));
            }
        }
        if let Some(from) = &previous {
            let moves = migrations(&warehouse, job_name, period);
            let ids: std::collections::BTreeSet<&String> =
                from.keys().chain(sides.keys()).collect();
            if moves.len() != ids.len() {
                problems.push(format!(
                    "{period}: {} migration rows, expected {}",
                    moves.len(),
                    ids.len()
                ));
            }
            for id in ids {
                let want = movement(from.get(id).copied(), sides.get(id).copied());
                let got = moves.get(id).map(|(m, e)| (m.as_str(), e.as_deref()));
                if got != Some(want) && problems.len() < 20 {
                    problems.push(format!(
                        "{period} {id}: expected movement {want:?}, published {got:?}"
                    ));
                }
            }
        }
        previous = Some(sides);
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for customer in facts.values() {
            *counts.entry(expected(customer, &facts)).or_default() += 1;
        }
        eprintln!("{job_name} {period}: expected counts {counts:?}");
    }
    assert!(
        problems.is_empty(),
        "{job_name} differs from the independent translation:\n{}",
        problems.join("\n")
    );
    seen.into_iter().collect()
}

/// The job's segment names must still be the ones translated here (rules
/// compared too, so that an edited threshold fails loudly).
fn guard(job_name: &str, translated: &[(&str, &str)]) {
    let yaml = segments_of_job(&job(job_name));
    let mine: Vec<(String, String)> = translated
        .iter()
        .map(|(n, r)| (n.to_string(), r.to_string()))
        .collect();
    assert_eq!(
        yaml, mine,
        "jobs/{job_name}.yaml changed its segments: update the translation in tests/it/jobs.rs"
    );
}

const RFM7_RULES: [(&str, &str); 8] = [
    ("champions", "r_score >= 4 AND f_score >= 4"),
    ("loyal", "r_score >= 3 AND f_score >= 3"),
    ("new_customers", "r_score >= 4 AND f_score <= 2"),
    ("need_attention", "r_score = 3 AND f_score <= 2"),
    ("cant_lose", "r_score <= 2 AND f_score >= 4"),
    ("at_risk", "r_score <= 2 AND f_score = 3"),
    ("hibernating", "r_score <= 2 AND f_score <= 2"),
    ("lost", "frequency = 0"),
];

/// The 7-segment grid, by hand.
pub fn rfm7(c: &CustomerFacts) -> &'static str {
    let (Some(r), Some(f)) = (c.r_score, c.f_score) else {
        assert_eq!(c.frequency, 0);
        return "lost";
    };
    match (r, f) {
        (4.., 4..) => "champions",
        (3.., 3..) => "loyal",
        (4.., ..=2) => "new_customers",
        (3, ..=2) => "need_attention",
        (..=2, 4..) => "cant_lose",
        (..=2, 3) => "at_risk",
        (..=2, ..=2) => "hibernating",
        // no catch-all arm: the compiler proves the grid covers every (r, f)
    }
}

#[test]
fn rfm_7_segments_matches_independent_translation() {
    guard("rfm_7_segments", &RFM7_RULES);
    let seen = check_generated(
        "rfm_7_segments",
        21,
        &["2024-05", "2024-06"],
        &RFM7_SEGMENTS,
        |c, _| rfm7(c),
    );
    assert_eq!(
        seen.len(),
        8,
        "every segment populated on generated data: {seen:?}"
    );
}

const LIFECYCLE_RULES: [(&str, &str); 6] = [
    ("champions", "frequency >= 4 AND recency_days <= 60"),
    ("loyal", "frequency >= 2 AND recency_days <= 120"),
    ("recent", "days_since_first_purchase <= 90"),
    ("at_risk", "recency_days <= 240"),
    (
        "lapsed",
        "recency_days BETWEEN 241 AND 365 AND frequency > 0",
    ),
    ("inactive", "recency_days > 365 OR frequency = 0"),
];

/// The lifecycle thresholds of docs/design.md §3b, by hand.
fn lifecycle(c: &CustomerFacts) -> &'static str {
    let days = c.recency_days;
    let tenure = c.as_of_date - c.first_purchase_date;
    if c.frequency >= 4 && days <= 60 {
        "champions"
    } else if c.frequency >= 2 && days <= 120 {
        "loyal"
    } else if tenure <= 90 {
        "recent"
    } else if days <= 240 {
        "at_risk"
    } else if c.frequency > 0 && days <= 365 {
        "lapsed"
    } else {
        "inactive"
    }
}

#[test]
fn lifecycle_groups_matches_independent_translation() {
    guard("lifecycle_groups", &LIFECYCLE_RULES);
    let declared: Vec<&str> = LIFECYCLE_RULES.iter().map(|(n, _)| *n).collect();
    let seen = check_generated(
        "lifecycle_groups",
        22,
        &["2024-05", "2024-06"],
        &declared,
        |c, _| lifecycle(c),
    );
    assert_eq!(
        seen.len(),
        6,
        "every group populated on generated data: {seen:?}"
    );
}

const VALUE_RULES: [(&str, &str); 4] = [
    ("vip", "100 * spend_rank <= vip_percent * active_customers"),
    (
        "regular",
        "100 * spend_rank <= regular_percent * active_customers",
    ),
    ("occasional", "frequency > 0"),
    ("inactive", "frequency = 0"),
];

/// Value tiers by hand: k = 1 + (active customers spending strictly more).
fn value_tier(c: &CustomerFacts, all: &BTreeMap<String, CustomerFacts>) -> &'static str {
    if c.frequency == 0 {
        return "inactive";
    }
    let active: Vec<&CustomerFacts> = all.values().filter(|x| x.frequency > 0).collect();
    let n = active.len() as i64;
    let k = 1 + active.iter().filter(|x| x.monetary > c.monetary).count() as i64;
    if 100 * k <= 5 * n {
        "vip"
    } else if 100 * k <= 30 * n {
        "regular"
    } else {
        "occasional"
    }
}

#[test]
fn value_tiers_matches_independent_translation() {
    guard("value_tiers", &VALUE_RULES);
    let declared: Vec<&str> = VALUE_RULES.iter().map(|(n, _)| *n).collect();
    let seen = check_generated(
        "value_tiers",
        23,
        &["2024-05", "2024-06"],
        &declared,
        value_tier,
    );
    assert_eq!(
        seen.len(),
        4,
        "every tier populated on generated data: {seen:?}"
    );
}

const PROFILE_RULES: [(&str, &str); 9] = [
    ("b2b_high_value", "market = 'b2b' AND value_tier = 'high'"),
    ("b2b_accounts", "market = 'b2b' AND frequency > 0"),
    (
        "paris_region_high_value",
        "region = 'Île-de-France' AND value_tier = 'high'",
    ),
    ("regions_high_value", "value_tier = 'high'"),
    (
        "young_active",
        "age_band IN ('18-24', '25-34') AND frequency > 0 AND recency_days <= 90",
    ),
    (
        "seniors_active",
        "age_band IN ('55-64', '65+') AND frequency > 0 AND recency_days <= 90",
    ),
    ("active", "frequency > 0 AND recency_days <= 180"),
    ("lapsing", "frequency > 0"),
    ("inactive", "frequency = 0"),
];

/// One row of the generated customer file: (valid_from, region, age band,
/// market, loyalty member).
type AttributeRow = (Option<i32>, String, Option<String>, String, bool);

/// The rows of the customer file `generate` writes for these options,
/// read with the Parquet reader (not through segments), per customer.
fn generated_attributes(seed: u32) -> BTreeMap<String, Vec<AttributeRow>> {
    let dir = tempfile::tempdir().unwrap();
    generated(dir.path(), 2000, 20, "2023-01", seed);
    customer_file_rows(&dir.path().join("data/customers/part-0.parquet"))
}

/// The rows of a customer file, per customer.
fn customer_file_rows(file: &Path) -> BTreeMap<String, Vec<AttributeRow>> {
    let mut rows: BTreeMap<String, Vec<AttributeRow>> = BTreeMap::new();
    for batch in read_parquet(file) {
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_string::<i32>()
                .clone()
        };
        let (ids, regions, ages, markets) = (
            text("customer_id"),
            text("region"),
            text("age_band"),
            text("market"),
        );
        let valid_from = batch
            .column_by_name("valid_from")
            .unwrap()
            .as_primitive::<datafusion::arrow::datatypes::Date32Type>()
            .clone();
        let loyalty = batch
            .column_by_name("loyalty_member")
            .unwrap()
            .as_boolean()
            .clone();
        for row in 0..batch.num_rows() {
            rows.entry(ids.value(row).to_string()).or_default().push((
                valid_from.is_valid(row).then(|| valid_from.value(row)),
                regions.value(row).to_string(),
                ages.is_valid(row).then(|| ages.value(row).to_string()),
                markets.value(row).to_string(),
                loyalty.value(row),
            ));
        }
    }
    rows
}

/// A customer's row as of `as_of_date`: its latest row dated on or before
/// it (undated rows hold from the start).
fn as_of<'a>(
    attributes: &'a BTreeMap<String, Vec<AttributeRow>>,
    customer: &str,
    as_of_date: i32,
) -> Option<&'a AttributeRow> {
    attributes.get(customer).and_then(|rows| {
        rows.iter()
            .filter(|r| r.0.is_none_or(|date| date <= as_of_date))
            .max_by_key(|r| r.0.unwrap_or(i32::MIN))
    })
}

/// The profile segments by hand: the customer's attributes as of the
/// period's last day (its latest row dated on or before it), the value
/// tier from the 12-month spend, then the rules in order.
fn profile(c: &CustomerFacts, attributes: &BTreeMap<String, Vec<AttributeRow>>) -> &'static str {
    let row = as_of(attributes, &c.customer_id, c.as_of_date);
    let region = row.map_or("unknown", |r| r.1.as_str());
    let age_band = row.and_then(|r| r.2.as_deref());
    let market = row.map_or("b2c", |r| r.3.as_str());
    let tier = if c.monetary >= 50_000 {
        "high"
    } else if c.monetary >= 10_000 {
        "mid"
    } else if c.frequency > 0 {
        "low"
    } else {
        "none"
    };
    let bought_in_90_days = c.frequency > 0 && c.recency_days <= 90;
    match () {
        _ if market == "b2b" && tier == "high" => "b2b_high_value",
        _ if market == "b2b" && c.frequency > 0 => "b2b_accounts",
        _ if region == "Île-de-France" && tier == "high" => "paris_region_high_value",
        _ if tier == "high" => "regions_high_value",
        _ if matches!(age_band, Some("18-24" | "25-34")) && bought_in_90_days => "young_active",
        _ if matches!(age_band, Some("55-64" | "65+")) && bought_in_90_days => "seniors_active",
        _ if c.frequency > 0 && c.recency_days <= 180 => "active",
        _ if c.frequency > 0 => "lapsing",
        _ => "inactive",
    }
}

#[test]
fn profile_segments_matches_independent_translation() {
    guard("profile_segments", &PROFILE_RULES);
    let seed = 24;
    let attributes = generated_attributes(seed);
    // The as-of cut is exercised: customers moved before the periods (their
    // dated row applies) and after them (it must not).
    let june_end = NaiveDate::from_ymd_opt(2024, 6, 30).unwrap();
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    let june_end = (june_end - epoch).num_days() as i32;
    let moved = |before: bool| {
        attributes
            .values()
            .filter(|rows| {
                rows.iter()
                    .any(|r| r.0.is_some_and(|date| (date <= june_end) == before))
            })
            .count()
    };
    assert!(
        moved(true) > 10 && moved(false) > 10,
        "moves: {} before, {} after",
        moved(true),
        moved(false)
    );
    let declared: Vec<&str> = PROFILE_RULES.iter().map(|(n, _)| *n).collect();
    let seen = check_generated(
        "profile_segments",
        seed,
        &["2024-05", "2024-06"],
        &declared,
        |c, _| profile(c, &attributes),
    );
    assert_eq!(
        seen.len(),
        9,
        "every segment populated on generated data: {seen:?}"
    );
}

const PROFILE_AUDIENCES: [(&str, &str); 4] = [
    ("champions_by_region", "r_score >= 4 AND f_score >= 4"),
    ("at_risk_by_region", "r_score <= 2 AND f_score >= 3"),
    (
        "lapsing_members_by_age",
        "loyalty_member AND r_score <= 2 AND age_band IS NOT NULL",
    ),
    ("never_bought_by_region", "NOT bought"),
];

/// `jobs/profile_audiences.yaml` against a translation by hand: every
/// contact of the customer file and every buyer, with the attributes as of
/// the period's end and the reference RFM scores, each in every audience
/// whose rule it meets, with the attribute as its detail.
#[test]
fn profile_audiences_match_an_independent_translation() {
    let seed = 25;
    let declared = crate::reference::audiences_of_job(&job("profile_audiences"));
    assert_eq!(
        declared,
        PROFILE_AUDIENCES
            .iter()
            .map(|(n, r)| (n.to_string(), r.to_string()))
            .collect::<Vec<_>>(),
        "jobs/profile_audiences.yaml changed its audiences: update the translation"
    );
    let dir = tempfile::tempdir().unwrap();
    let config = generated(dir.path(), 2000, 20, "2023-01", seed);
    let attributes = customer_file_rows(&dir.path().join("data/customers/part-0.parquet"));
    let data = read_generated(&dir.path().join("data/transactions"));
    let period = "2024-06";
    run(dir.path(), &job("profile_audiences"), &config, period);
    let facts = data.customers(period);
    let as_of_date = (NaiveDate::from_ymd_opt(2024, 6, 30).unwrap()
        - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
    .num_days() as i32;
    let contacts: std::collections::BTreeSet<&String> =
        attributes.keys().chain(facts.keys()).collect();
    let mut expected = std::collections::BTreeSet::new();
    for id in contacts {
        let row = as_of(&attributes, id, as_of_date);
        let region = row.map_or("unknown".to_string(), |r| r.1.clone());
        let age_band = row.and_then(|r| r.2.clone());
        let loyalty = row.is_some_and(|r| r.4);
        let customer = facts.get(id);
        let (r, f) = (
            customer.and_then(|c| c.r_score),
            customer.and_then(|c| c.f_score),
        );
        let mut add = |audience: &str, detail: &str| {
            expected.insert(format!("{id}|{audience}|{detail}"));
        };
        if let (Some(r), Some(f)) = (r, f) {
            if r >= 4 && f >= 4 {
                add("champions_by_region", &region);
            }
            if r <= 2 && f >= 3 {
                add("at_risk_by_region", &region);
            }
            if let Some(age) = &age_band
                && loyalty
                && r <= 2
            {
                add("lapsing_members_by_age", age);
            }
        }
        if customer.is_none() {
            add("never_bought_by_region", &region);
        }
    }
    let mut published = std::collections::BTreeSet::new();
    for batch in read_parquet(&table_file(
        &dir.path().join("warehouse"),
        "profile_audiences",
        "audiences",
        period,
    )) {
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_string::<i32>()
                .clone()
        };
        let (ids, audiences, details) = (text("customer_id"), text("audience"), text("detail"));
        for row in 0..batch.num_rows() {
            published.insert(format!(
                "{}|{}|{}",
                ids.value(row),
                audiences.value(row),
                details.value(row)
            ));
        }
    }
    let only_ours: Vec<_> = published.difference(&expected).take(5).collect();
    let only_expected: Vec<_> = expected.difference(&published).take(5).collect();
    assert!(
        only_ours.is_empty() && only_expected.is_empty(),
        "only published {only_ours:?}, only expected {only_expected:?}"
    );
    let populated: std::collections::BTreeSet<&str> = expected
        .iter()
        .map(|l| l.split('|').nth(1).unwrap())
        .collect();
    assert_eq!(
        populated.len(),
        4,
        "every audience populated: {populated:?}"
    );
}

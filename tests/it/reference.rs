//! An independent, plain-Rust implementation of the default job
//! (`jobs/rfm_monthly.yaml`, docs/design.md §3, §3a, §5) compared with what the real
//! binary publishes on generated data.
//!
//! Nothing here uses DataFusion SQL: the generated Parquet files are read with
//! the Parquet/Arrow readers, money is `i128` cents, dates are days since the
//! Unix epoch (the Date32 representation) computed from UTC timestamps, and the
//! segment rules of the job are translated by hand (a guard checks that the
//! YAML still says what this file translated).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{Datelike, Months, NaiveDate};
use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float64Type, Int8Type, Int32Type, Int64Type, TimeUnit,
    TimestampMicrosecondType,
};
use datafusion::arrow::record_batch::RecordBatch;

use crate::common::{default_job, read_parquet, segments_ok, table_file, write_config};

const JOB: &str = "rfm_monthly";
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The job's segments in rank order (rank = position + 1), with the YAML rule
/// each one was translated from (checked against the job file).
const SEGMENTS: [(&str, &str); 11] = [
    ("champions", "r_score = 5 AND f_score >= 4"),
    ("loyal", "r_score BETWEEN 3 AND 4 AND f_score >= 4"),
    (
        "potential_loyalists",
        "r_score >= 4 AND f_score BETWEEN 2 AND 3",
    ),
    ("new_customers", "r_score = 5 AND f_score = 1"),
    ("promising", "r_score = 4 AND f_score = 1"),
    ("need_attention", "r_score = 3 AND f_score = 3"),
    ("about_to_sleep", "r_score = 3 AND f_score <= 2"),
    ("cant_lose", "r_score <= 2 AND f_score = 5"),
    ("at_risk", "r_score <= 2 AND f_score BETWEEN 3 AND 4"),
    ("hibernating", "r_score <= 2 AND f_score <= 2"),
    ("lost", "frequency = 0"),
];

/// The hand translation of the rules above. SQL semantics: a comparison with a
/// null score is not true, so lost customers (null scores) only match
/// `frequency = 0`.
fn rule_matches(segment: &str, r: Option<i8>, f: Option<i8>, frequency: i64) -> bool {
    let (r, f) = match (r, f) {
        (Some(r), Some(f)) => (r, f),
        _ => return segment == "lost" && frequency == 0,
    };
    match segment {
        "champions" => r == 5 && f >= 4,
        "loyal" => (3..=4).contains(&r) && f >= 4,
        "potential_loyalists" => r >= 4 && (2..=3).contains(&f),
        "new_customers" => r == 5 && f == 1,
        "promising" => r == 4 && f == 1,
        "need_attention" => r == 3 && f == 3,
        "about_to_sleep" => r == 3 && f <= 2,
        "cant_lose" => r <= 2 && f == 5,
        "at_risk" => r <= 2 && (3..=4).contains(&f),
        "hibernating" => r <= 2 && f <= 2,
        "lost" => frequency == 0,
        other => panic!("unknown segment {other}"),
    }
}

fn segment_rank(name: &str) -> i32 {
    SEGMENTS
        .iter()
        .position(|(s, _)| *s == name)
        .expect("known segment") as i32
        + 1
}

/// First matching rule in rank order (docs/design.md §3); no match is a job error.
fn classify(r: Option<i8>, f: Option<i8>, frequency: i64) -> (&'static str, i32) {
    for (i, (name, _)) in SEGMENTS.iter().enumerate() {
        if rule_matches(name, r, f, frequency) {
            return (name, i as i32 + 1);
        }
    }
    panic!("reference: no rule matches r={r:?} f={f:?} frequency={frequency}");
}

/// The segments (name, rule) of the job YAML, in order, read with a plain text
/// scan so that this file does not depend on the crate's parser.
fn job_segments_from_yaml(path: &Path) -> Vec<(String, String)> {
    // A YAML parser, not the job loader: the rules as written in the file.
    let job: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    job["classification"]["segments"]
        .as_sequence()
        .expect("a segments job")
        .iter()
        .map(|segment| {
            let text = |key: &str| segment[key].as_str().unwrap_or_default().trim().to_string();
            (text("name"), text("rule"))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Periods and dates
// ---------------------------------------------------------------------------

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()
}

fn days(d: NaiveDate) -> i32 {
    (d - epoch()).num_days() as i32
}

fn date_of(days: i32) -> NaiveDate {
    epoch() + chrono::Duration::days(days as i64)
}

#[derive(Clone, Copy, Debug)]
struct Period {
    start: NaiveDate,
}

impl Period {
    fn parse(s: &str) -> Period {
        let (y, m) = s.split_once('-').expect("YYYY-MM");
        Period {
            start: NaiveDate::from_ymd_opt(y.parse().unwrap(), m.parse().unwrap(), 1).unwrap(),
        }
    }
    fn name(&self) -> String {
        format!("{:04}-{:02}", self.start.year(), self.start.month())
    }
    fn end(&self) -> NaiveDate {
        self.start.checked_add_months(Months::new(1)).unwrap()
    }
    fn window_start(&self) -> NaiveDate {
        self.end().checked_sub_months(Months::new(12)).unwrap()
    }
    fn as_of(&self) -> NaiveDate {
        self.end().pred_opt().unwrap()
    }
    fn previous(&self) -> Period {
        Period {
            start: self.start.checked_sub_months(Months::new(1)).unwrap(),
        }
    }
}

// ---------------------------------------------------------------------------
// Input: every generated transaction line
// ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Line {
    customer: u32,
    order: u32,
    micros: i64,
    cents: i128,
}

#[derive(Default)]
struct Transactions {
    customer_names: Vec<String>,
    lines: Vec<Line>,
    rows_read: usize,
    anonymous: usize,
    null_order_id: usize,
    exact_duplicates: usize,
    files: usize,
}

fn parquet_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            parquet_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
}

/// Column `name` of `batch`, cast to `ty` when stored with another
/// representation (e.g. a view type); the published schemas are checked
/// elsewhere, this test compares values.
fn column(batch: &RecordBatch, name: &str, ty: &DataType) -> ArrayRef {
    let idx = batch
        .schema()
        .index_of(name)
        .unwrap_or_else(|_| panic!("no column {name} in {:?}", batch.schema()));
    let a = batch.column(idx);
    if a.data_type() == ty {
        a.clone()
    } else {
        cast(a, ty).unwrap()
    }
}

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn money() -> DataType {
    DataType::Decimal128(18, 2)
}

/// Every column of `batch` as text, to find exact duplicate lines (docs/design.md §7:
/// they are rejects, not sales).
fn text_columns(batch: &RecordBatch) -> Vec<ArrayRef> {
    batch
        .columns()
        .iter()
        .map(|c| cast(c, &DataType::Utf8).unwrap())
        .collect()
}

fn line_key(text: &[ArrayRef], row: usize) -> String {
    let mut key = String::new();
    for col in text {
        let s = col.as_string::<i32>();
        if s.is_null(row) {
            key.push_str("\u{0}N");
        } else {
            key.push_str(s.value(row));
        }
        key.push('\u{1}');
    }
    key
}

fn read_transactions(dir: &Path) -> Transactions {
    let mut files = Vec::new();
    parquet_files(dir, &mut files);
    files.sort();
    assert!(!files.is_empty(), "no Parquet file under {}", dir.display());
    let mut t = Transactions {
        files: files.len(),
        ..Default::default()
    };
    let mut customer_ids: HashMap<String, u32> = HashMap::new();
    let mut order_ids: HashMap<String, u32> = HashMap::new();
    let mut seen: HashSet<String> = HashSet::new();
    for file in &files {
        for batch in read_parquet(file) {
            let customer = column(&batch, "customer_id", &DataType::Utf8);
            let customer = customer.as_string::<i32>();
            let order = column(&batch, "order_id", &DataType::Utf8);
            let order = order.as_string::<i32>();
            let at = column(&batch, "ordered_at", &utc_micros());
            let at = at.as_primitive::<TimestampMicrosecondType>();
            let amount = column(&batch, "amount", &money());
            let amount = amount.as_primitive::<Decimal128Type>();
            // Only the generator's own columns take part in "exact duplicate".
            let data_columns: Vec<usize> = batch
                .schema()
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, f)| f.name() != "month")
                .map(|(i, _)| i)
                .collect();
            let data = text_columns(&batch.project(&data_columns).unwrap());
            for row in 0..batch.num_rows() {
                t.rows_read += 1;
                if order.is_null(row) || at.is_null(row) || amount.is_null(row) {
                    t.null_order_id += 1;
                    continue;
                }
                if !seen.insert(line_key(&data, row)) {
                    t.exact_duplicates += 1;
                    continue;
                }
                if customer.is_null(row) {
                    t.anonymous += 1;
                    continue;
                }
                let next = customer_ids.len() as u32;
                let c = *customer_ids
                    .entry(customer.value(row).to_string())
                    .or_insert_with(|| {
                        t.customer_names.push(customer.value(row).to_string());
                        next
                    });
                let next = order_ids.len() as u32;
                let o = *order_ids
                    .entry(order.value(row).to_string())
                    .or_insert(next);
                t.lines.push(Line {
                    customer: c,
                    order: o,
                    micros: at.value(row),
                    cents: amount.value(row),
                });
            }
        }
    }
    t
}

// ---------------------------------------------------------------------------
// The reference computation of one period
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
struct SnapRow {
    customer_id: String,
    as_of_date: i32,
    segment: String,
    segment_rank: i32,
    r_score: Option<i8>,
    f_score: Option<i8>,
    m_score: Option<i8>,
    rfm_code: Option<String>,
    recency_days: i32,
    frequency: i64,
    monetary: i128,
    first_purchase_date: i32,
    last_purchase_date: i32,
}

/// Per customer of the universe: the snapshot row plus what happened in P
/// itself (for `segment_summary`).
struct RefCustomer {
    snap: SnapRow,
    period_purchases: i64,
    period_revenue: i128,
    has_purchase_in_period: bool,
}

struct RefPeriod {
    period: Period,
    customers: BTreeMap<String, RefCustomer>,
}

/// 1 + ⌊5 × (number of active values strictly "worse") / n⌋, with `sorted`
/// the ascending active values.
fn score<T: Ord>(sorted: &[T], v: &T, higher_is_better: bool) -> i8 {
    let n = sorted.len() as i64;
    let worse = if higher_is_better {
        sorted.partition_point(|x| x < v) as i64
    } else {
        n - sorted.partition_point(|x| x <= v) as i64
    };
    (1 + 5 * worse / n) as i8
}

fn reference_period(t: &Transactions, period: Period) -> RefPeriod {
    let end_micros = days(period.end()) as i64 * MICROS_PER_DAY;
    let window_start = days(period.window_start());
    let period_start = days(period.start);
    let as_of = days(period.as_of());

    // Orders: the lines of one (customer, order id) dated before period_end;
    // date = date of the earliest line, amount = sum of the lines.
    let mut orders: HashMap<(u32, u32), (i64, i128)> = HashMap::new();
    for l in t.lines.iter().filter(|l| l.micros < end_micros) {
        let e = orders.entry((l.customer, l.order)).or_insert((i64::MAX, 0));
        e.0 = e.0.min(l.micros);
        e.1 += l.cents;
    }

    #[derive(Default)]
    struct Acc {
        purchases: i64,
        frequency: i64,
        monetary: i128,
        first: Option<i32>,
        last: Option<i32>,
        period_purchases: i64,
        period_revenue: i128,
    }
    let mut acc: HashMap<u32, Acc> = HashMap::new();
    for (&(customer, _), &(first_micros, cents)) in &orders {
        let date = first_micros.div_euclid(MICROS_PER_DAY) as i32;
        let a = acc.entry(customer).or_default();
        let purchase = cents > 0;
        if purchase {
            a.purchases += 1;
            a.first = Some(a.first.map_or(date, |d| d.min(date)));
            a.last = Some(a.last.map_or(date, |d| d.max(date)));
        }
        if date >= window_start {
            a.monetary += cents;
            if purchase {
                a.frequency += 1;
            }
        }
        if date >= period_start {
            a.period_revenue += cents;
            if purchase {
                a.period_purchases += 1;
            }
        }
    }
    // Universe: at least one purchase before period_end.
    acc.retain(|_, a| a.purchases > 0);

    let recency = |a: &Acc| as_of - a.last.unwrap();
    let active: Vec<&Acc> = acc.values().filter(|a| a.frequency > 0).collect();
    let mut rs: Vec<i32> = active.iter().map(|a| recency(a)).collect();
    let mut fs: Vec<i64> = active.iter().map(|a| a.frequency).collect();
    let mut ms: Vec<i128> = active.iter().map(|a| a.monetary).collect();
    rs.sort_unstable();
    fs.sort_unstable();
    ms.sort_unstable();

    let mut customers = BTreeMap::new();
    for (&c, a) in &acc {
        let rec = recency(a);
        let (r, f, m) = if a.frequency > 0 {
            (
                Some(score(&rs, &rec, false)),
                Some(score(&fs, &a.frequency, true)),
                Some(score(&ms, &a.monetary, true)),
            )
        } else {
            (None, None, None)
        };
        let (segment, rank) = classify(r, f, a.frequency);
        let id = t.customer_names[c as usize].clone();
        let snap = SnapRow {
            customer_id: id.clone(),
            as_of_date: as_of,
            segment: segment.to_string(),
            segment_rank: rank,
            r_score: r,
            f_score: f,
            m_score: m,
            rfm_code: match (r, f, m) {
                (Some(r), Some(f), Some(m)) => Some(format!("{r}{f}{m}")),
                _ => None,
            },
            recency_days: rec,
            frequency: a.frequency,
            monetary: a.monetary,
            first_purchase_date: a.first.unwrap(),
            last_purchase_date: a.last.unwrap(),
        };
        customers.insert(
            id,
            RefCustomer {
                snap,
                period_purchases: a.period_purchases,
                period_revenue: a.period_revenue,
                has_purchase_in_period: a.period_purchases > 0,
            },
        );
    }
    RefPeriod { period, customers }
}

#[derive(Clone, Debug, PartialEq)]
struct MigRow {
    customer_id: String,
    from_period: String,
    from_segment: Option<String>,
    to_segment: Option<String>,
    from_rank: Option<i32>,
    to_rank: Option<i32>,
    movement: String,
    evolution: Option<String>,
}

fn reference_migrations(prev: &RefPeriod, cur: &RefPeriod) -> BTreeMap<String, MigRow> {
    let ids: std::collections::BTreeSet<&String> =
        prev.customers.keys().chain(cur.customers.keys()).collect();
    let mut out = BTreeMap::new();
    for id in ids {
        let from = prev.customers.get(id).map(|c| &c.snap);
        let to = cur.customers.get(id).map(|c| &c.snap);
        let movement = match (from, to) {
            (None, Some(_)) => "new",
            (Some(_), None) => "removed",
            (Some(a), Some(b)) if a.frequency > 0 && b.frequency == 0 => "churned",
            (Some(a), Some(b)) if a.frequency == 0 && b.frequency > 0 => "reactivated",
            (Some(a), Some(b)) if b.segment_rank < a.segment_rank => "up",
            (Some(a), Some(b)) if b.segment_rank == a.segment_rank => "same",
            (Some(_), Some(_)) => "down",
            (None, None) => unreachable!(),
        };
        let evolution = match movement {
            "up" | "reactivated" => Some("better"),
            "same" => Some("same"),
            "down" | "churned" => Some("watch"),
            _ => None,
        };
        out.insert(
            id.clone(),
            MigRow {
                customer_id: id.clone(),
                from_period: prev.period.name(),
                from_segment: from.map(|s| s.segment.clone()),
                to_segment: to.map(|s| s.segment.clone()),
                from_rank: from.map(|s| s.segment_rank),
                to_rank: to.map(|s| s.segment_rank),
                movement: movement.to_string(),
                evolution: evolution.map(str::to_string),
            },
        );
    }
    out
}

#[derive(Clone, Debug, PartialEq)]
struct Cell {
    from_segment: String,
    to_segment: String,
    from_rank: Option<i32>,
    to_rank: Option<i32>,
    customers: i64,
    monetary: i128,
}

fn reference_matrix(
    prev: &RefPeriod,
    cur: &RefPeriod,
) -> (BTreeMap<(String, String), Cell>, HashMap<String, i64>) {
    let mut cells: BTreeMap<(String, String), Cell> = BTreeMap::new();
    for m in reference_migrations(prev, cur).values() {
        let from = m.from_segment.clone().unwrap_or_else(|| "(new)".into());
        let to = m.to_segment.clone().unwrap_or_else(|| "(removed)".into());
        let monetary = match cur.customers.get(&m.customer_id) {
            Some(c) => c.snap.monetary,
            None => prev.customers[&m.customer_id].snap.monetary,
        };
        let cell = cells.entry((from.clone(), to.clone())).or_insert(Cell {
            from_segment: from,
            to_segment: to,
            from_rank: m.from_rank,
            to_rank: m.to_rank,
            customers: 0,
            monetary: 0,
        });
        cell.customers += 1;
        cell.monetary += monetary;
    }
    let mut row_totals: HashMap<String, i64> = HashMap::new();
    for c in cells.values() {
        *row_totals.entry(c.from_segment.clone()).or_default() += c.customers;
    }
    (cells, row_totals)
}

// ---------------------------------------------------------------------------
// Reading what the binary published
// ---------------------------------------------------------------------------

fn read_table(warehouse: &Path, table: &str, period: &str) -> Vec<RecordBatch> {
    let path = table_file(warehouse, JOB, table, period);
    assert!(path.exists(), "{} was not published", path.display());
    read_parquet(&path)
}

fn opt_string(a: &ArrayRef, i: usize) -> Option<String> {
    let s = a.as_string::<i32>();
    (!s.is_null(i)).then(|| s.value(i).to_string())
}

fn string(a: &ArrayRef, i: usize, what: &str) -> String {
    opt_string(a, i).unwrap_or_else(|| panic!("{what} is null at row {i}"))
}

fn opt_i8(a: &ArrayRef, i: usize) -> Option<i8> {
    let p = a.as_primitive::<Int8Type>();
    (!p.is_null(i)).then(|| p.value(i))
}

fn opt_i32(a: &ArrayRef, i: usize) -> Option<i32> {
    let p = a.as_primitive::<Int32Type>();
    (!p.is_null(i)).then(|| p.value(i))
}

fn opt_i64(a: &ArrayRef, i: usize) -> Option<i64> {
    let p = a.as_primitive::<Int64Type>();
    (!p.is_null(i)).then(|| p.value(i))
}

fn opt_f64(a: &ArrayRef, i: usize) -> Option<f64> {
    let p = a.as_primitive::<Float64Type>();
    (!p.is_null(i)).then(|| p.value(i))
}

fn opt_date(a: &ArrayRef, i: usize) -> Option<i32> {
    let p = a.as_primitive::<Date32Type>();
    (!p.is_null(i)).then(|| p.value(i))
}

fn opt_cents(a: &ArrayRef, i: usize) -> Option<i128> {
    let p = a.as_primitive::<Decimal128Type>();
    (!p.is_null(i)).then(|| p.value(i))
}

fn published_snapshots(warehouse: &Path, period: &str) -> Vec<SnapRow> {
    let mut rows = Vec::new();
    for b in read_table(warehouse, "snapshots", period) {
        let id = column(&b, "customer_id", &DataType::Utf8);
        let as_of = column(&b, "as_of_date", &DataType::Date32);
        let seg = column(&b, "segment", &DataType::Utf8);
        let rank = column(&b, "segment_rank", &DataType::Int32);
        let r = column(&b, "r_score", &DataType::Int8);
        let f = column(&b, "f_score", &DataType::Int8);
        let m = column(&b, "m_score", &DataType::Int8);
        let code = column(&b, "rfm_code", &DataType::Utf8);
        let rec = column(&b, "recency_days", &DataType::Int32);
        let freq = column(&b, "frequency", &DataType::Int64);
        let mon = column(&b, "monetary", &money());
        let first = column(&b, "first_purchase_date", &DataType::Date32);
        let last = column(&b, "last_purchase_date", &DataType::Date32);
        for i in 0..b.num_rows() {
            rows.push(SnapRow {
                customer_id: string(&id, i, "snapshots.customer_id"),
                as_of_date: opt_date(&as_of, i).expect("as_of_date not null"),
                segment: string(&seg, i, "snapshots.segment"),
                segment_rank: opt_i32(&rank, i).expect("segment_rank not null"),
                r_score: opt_i8(&r, i),
                f_score: opt_i8(&f, i),
                m_score: opt_i8(&m, i),
                rfm_code: opt_string(&code, i),
                recency_days: opt_i32(&rec, i).expect("recency_days not null"),
                frequency: opt_i64(&freq, i).expect("frequency not null"),
                monetary: opt_cents(&mon, i).expect("monetary not null"),
                first_purchase_date: opt_date(&first, i).expect("first_purchase_date not null"),
                last_purchase_date: opt_date(&last, i).expect("last_purchase_date not null"),
            });
        }
    }
    rows
}

fn published_migrations(warehouse: &Path, period: &str) -> Vec<MigRow> {
    let mut rows = Vec::new();
    for b in read_table(warehouse, "migrations", period) {
        let id = column(&b, "customer_id", &DataType::Utf8);
        let fp = column(&b, "from_period", &DataType::Utf8);
        let fs = column(&b, "from_segment", &DataType::Utf8);
        let ts = column(&b, "to_segment", &DataType::Utf8);
        let fr = column(&b, "from_rank", &DataType::Int32);
        let tr = column(&b, "to_rank", &DataType::Int32);
        let mv = column(&b, "movement", &DataType::Utf8);
        let ev = column(&b, "evolution", &DataType::Utf8);
        for i in 0..b.num_rows() {
            rows.push(MigRow {
                customer_id: string(&id, i, "migrations.customer_id"),
                from_period: string(&fp, i, "migrations.from_period"),
                from_segment: opt_string(&fs, i),
                to_segment: opt_string(&ts, i),
                from_rank: opt_i32(&fr, i),
                to_rank: opt_i32(&tr, i),
                movement: string(&mv, i, "migrations.movement"),
                evolution: opt_string(&ev, i),
            });
        }
    }
    rows
}

fn published_matrix(warehouse: &Path, period: &str) -> Vec<(Cell, f64)> {
    let mut rows = Vec::new();
    for b in read_table(warehouse, "migration_matrix", period) {
        let fs = column(&b, "from_segment", &DataType::Utf8);
        let ts = column(&b, "to_segment", &DataType::Utf8);
        let fr = column(&b, "from_rank", &DataType::Int32);
        let tr = column(&b, "to_rank", &DataType::Int32);
        let n = column(&b, "customers", &DataType::Int64);
        let share = column(&b, "share_of_from", &DataType::Float64);
        let mon = column(&b, "monetary", &money());
        for i in 0..b.num_rows() {
            rows.push((
                Cell {
                    from_segment: string(&fs, i, "migration_matrix.from_segment"),
                    to_segment: string(&ts, i, "migration_matrix.to_segment"),
                    from_rank: opt_i32(&fr, i),
                    to_rank: opt_i32(&tr, i),
                    customers: opt_i64(&n, i).expect("customers not null"),
                    monetary: opt_cents(&mon, i).expect("monetary not null"),
                },
                opt_f64(&share, i).expect("share_of_from not null"),
            ));
        }
    }
    rows
}

// ---------------------------------------------------------------------------
// Comparison helpers
// ---------------------------------------------------------------------------

/// Compare keyed rows; returns human-readable differences (all of them are
/// counted, the first `show` are described).
fn diff_rows<K: Ord + Debug, V: PartialEq + Debug>(
    what: &str,
    expected: &BTreeMap<K, V>,
    published: &BTreeMap<K, V>,
    show: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut count = 0;
    for (k, e) in expected {
        match published.get(k) {
            None => {
                count += 1;
                if out.len() < show {
                    out.push(format!(
                        "{what} {k:?}: missing from the published table\n  expected:  {e:?}"
                    ));
                }
            }
            Some(p) if p != e => {
                count += 1;
                if out.len() < show {
                    out.push(format!(
                        "{what} {k:?}: differs\n  expected:  {e:?}\n  published: {p:?}"
                    ));
                }
            }
            _ => {}
        }
    }
    for (k, p) in published {
        if !expected.contains_key(k) {
            count += 1;
            if out.len() < show {
                out.push(format!(
                    "{what} {k:?}: published but not expected\n  published: {p:?}"
                ));
            }
        }
    }
    if count > 0 {
        out.push(format!(
            "{what}: {count} differing key(s) in all ({} expected, {} published)",
            expected.len(),
            published.len()
        ));
    }
    out
}

fn keyed<V: Clone>(
    what: &str,
    rows: &[V],
    key: impl Fn(&V) -> String,
) -> (BTreeMap<String, V>, Vec<String>) {
    let mut problems = Vec::new();
    let mut map = BTreeMap::new();
    for w in rows.windows(2) {
        if key(&w[0]) >= key(&w[1]) {
            problems.push(format!(
                "{what}: rows not sorted by customer_id (or duplicated): {:?} then {:?}",
                key(&w[0]),
                key(&w[1])
            ));
            break;
        }
    }
    for r in rows {
        if map.insert(key(r), r.clone()).is_some() {
            problems.push(format!("{what}: duplicate customer_id {:?}", key(r)));
        }
    }
    (map, problems)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn opt_close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => close(a, b),
        _ => false,
    }
}

/// revenue / orders in cents, rounded half away from zero (docs/design.md §5).
fn div_round_half_away(n: i128, d: i128) -> i128 {
    let sign = if n < 0 { -1 } else { 1 };
    (2 * n + sign * d) / (2 * d)
}

/// Compare everything published for `period` with the reference; `prev` is
/// the reference of P−1. Returns the differences.
fn compare_period(warehouse: &Path, cur: &RefPeriod, prev: &RefPeriod) -> Vec<String> {
    const SHOW: usize = 8;
    let period = cur.period.name();
    let mut problems = Vec::new();

    // --- snapshots ---------------------------------------------------------
    let published = published_snapshots(warehouse, &period);
    let (published, p) = keyed(&format!("snapshots {period}"), &published, |r| {
        r.customer_id.clone()
    });
    problems.extend(p);
    let expected: BTreeMap<String, SnapRow> = cur
        .customers
        .iter()
        .map(|(k, c)| (k.clone(), c.snap.clone()))
        .collect();
    problems.extend(diff_rows(
        &format!("snapshots {period} customer"),
        &expected,
        &published,
        SHOW,
    ));

    // --- migrations --------------------------------------------------------
    let published = published_migrations(warehouse, &period);
    let (published, p) = keyed(&format!("migrations {period}"), &published, |r| {
        r.customer_id.clone()
    });
    problems.extend(p);
    let expected = reference_migrations(prev, cur);
    problems.extend(diff_rows(
        &format!("migrations {period} customer"),
        &expected,
        &published,
        SHOW,
    ));

    // --- migration_matrix --------------------------------------------------
    let (expected, row_totals) = reference_matrix(prev, cur);
    let published_rows = published_matrix(warehouse, &period);
    let order_key = |c: &Cell| {
        (
            if c.from_segment == "(new)" {
                0
            } else {
                segment_rank(&c.from_segment)
            },
            if c.to_segment == "(removed)" {
                i32::MAX
            } else {
                segment_rank(&c.to_segment)
            },
        )
    };
    for w in published_rows.windows(2) {
        if order_key(&w[0].0) >= order_key(&w[1].0) {
            problems.push(format!(
                "migration_matrix {period}: cells not sorted by rank ((new) first, (removed) last): {} -> {} before {} -> {}",
                w[0].0.from_segment, w[0].0.to_segment, w[1].0.from_segment, w[1].0.to_segment
            ));
            break;
        }
    }
    let mut published = BTreeMap::new();
    for (cell, share) in &published_rows {
        let total = row_totals.get(&cell.from_segment).copied().unwrap_or(0);
        let want = if total > 0 {
            cell.customers as f64 / total as f64
        } else {
            f64::NAN
        };
        if !close(*share, want) {
            problems.push(format!(
                "migration_matrix {period} {} -> {}: share_of_from {share} but expected {} / {total} = {want}",
                cell.from_segment, cell.to_segment, cell.customers
            ));
        }
        if cell.customers == 0 {
            problems.push(format!(
                "migration_matrix {period}: empty cell {} -> {} listed",
                cell.from_segment, cell.to_segment
            ));
        }
        if published
            .insert(
                (cell.from_segment.clone(), cell.to_segment.clone()),
                cell.clone(),
            )
            .is_some()
        {
            problems.push(format!(
                "migration_matrix {period}: duplicate cell {} -> {}",
                cell.from_segment, cell.to_segment
            ));
        }
    }
    problems.extend(diff_rows(
        &format!("migration_matrix {period} cell"),
        &expected,
        &published,
        SHOW,
    ));

    // --- segment_summary (§5 resolved details) -----------------------------
    let universe = cur.customers.len() as f64;
    let mut summary_names = Vec::new();
    for b in read_table(warehouse, "segment_summary", &period) {
        let seg = column(&b, "segment", &DataType::Utf8);
        let rank = column(&b, "segment_rank", &DataType::Int32);
        let customers = column(&b, "customers", &DataType::Int64);
        let share = column(&b, "share", &DataType::Float64);
        let active = column(&b, "active_customers", &DataType::Int64);
        let revenue = column(&b, "revenue", &money());
        let orders = column(&b, "orders", &DataType::Int64);
        let basket = column(&b, "avg_basket", &money());
        let avg_f = column(&b, "avg_frequency", &DataType::Float64);
        let avg_r = column(&b, "avg_recency", &DataType::Float64);
        let monetary = column(&b, "monetary", &money());
        let prev_n = column(&b, "previous_customers", &DataType::Int64);
        let delta = column(&b, "delta", &DataType::Int64);
        for i in 0..b.num_rows() {
            let name = string(&seg, i, "segment_summary.segment");
            summary_names.push(name.clone());
            let members: Vec<&RefCustomer> = cur
                .customers
                .values()
                .filter(|c| c.snap.segment == name)
                .collect();
            let n = members.len() as i64;
            let prev_count = prev
                .customers
                .values()
                .filter(|c| c.snap.segment == name)
                .count() as i64;
            let rev: i128 = members.iter().map(|c| c.period_revenue).sum();
            let ord: i64 = members.iter().map(|c| c.period_purchases).sum();
            let expected = (
                Some(segment_rank(&name)),
                Some(n),
                Some(members.iter().filter(|c| c.has_purchase_in_period).count() as i64),
                Some(rev),
                Some(ord),
                (ord > 0).then(|| div_round_half_away(rev, ord as i128)),
                Some(members.iter().map(|c| c.snap.monetary).sum::<i128>()),
                Some(prev_count),
                Some(n - prev_count),
            );
            let got = (
                opt_i32(&rank, i),
                opt_i64(&customers, i),
                opt_i64(&active, i),
                opt_cents(&revenue, i),
                opt_i64(&orders, i),
                opt_cents(&basket, i),
                opt_cents(&monetary, i),
                opt_i64(&prev_n, i),
                opt_i64(&delta, i),
            );
            if got != expected {
                problems.push(format!(
                    "segment_summary {period} {name}: (rank, customers, active_customers, revenue, orders, avg_basket, monetary, previous_customers, delta)\n  expected:  {expected:?}\n  published: {got:?}"
                ));
            }
            let mean = |f: &dyn Fn(&RefCustomer) -> f64| {
                (n > 0).then(|| members.iter().map(|c| f(c)).sum::<f64>() / n as f64)
            };
            let want_share = if universe > 0.0 {
                n as f64 / universe
            } else {
                0.0
            };
            let floats = [
                ("share", opt_f64(&share, i), Some(want_share)),
                (
                    "avg_frequency",
                    opt_f64(&avg_f, i),
                    mean(&|c| c.snap.frequency as f64),
                ),
                (
                    "avg_recency",
                    opt_f64(&avg_r, i),
                    mean(&|c| c.snap.recency_days as f64),
                ),
            ];
            for (what, got, want) in floats {
                if !opt_close(got, want) {
                    problems.push(format!("segment_summary {period} {name}: {what} published {got:?}, expected {want:?}"));
                }
            }
        }
    }

    let declared: Vec<String> = SEGMENTS.iter().map(|(s, _)| s.to_string()).collect();
    if summary_names != declared {
        problems.push(format!(
            "segment_summary {period}: segments {summary_names:?}, expected one row per declared segment in rank order {declared:?}"
        ));
    }

    // --- score_thresholds: customers and value ranges per metric × score ----
    let active: Vec<&SnapRow> = cur
        .customers
        .values()
        .map(|c| &c.snap)
        .filter(|s| s.frequency > 0)
        .collect();
    let mut seen = HashSet::new();
    for b in read_table(warehouse, "score_thresholds", &period) {
        let metric = column(&b, "metric", &DataType::Utf8);
        let score = column(&b, "score", &DataType::Int8);
        let customers = column(&b, "customers", &DataType::Int64);
        let min_num = column(&b, "min_value_num", &DataType::Float64);
        let max_num = column(&b, "max_value_num", &DataType::Float64);
        for i in 0..b.num_rows() {
            let m = string(&metric, i, "score_thresholds.metric");
            let s = opt_i8(&score, i).expect("score not null");
            seen.insert((m.clone(), s));
            let values: Vec<f64> = active
                .iter()
                .filter_map(|r| match m.as_str() {
                    "recency" => (r.r_score == Some(s)).then_some(r.recency_days as f64),
                    "frequency" => (r.f_score == Some(s)).then_some(r.frequency as f64),
                    "monetary" => (r.m_score == Some(s)).then_some(r.monetary as f64 / 100.0),
                    other => panic!("score_thresholds: unknown metric {other:?}"),
                })
                .collect();
            let want_min = values.iter().copied().reduce(f64::min);
            let want_max = values.iter().copied().reduce(f64::max);
            let got_n = opt_i64(&customers, i);
            let (got_min, got_max) = (opt_f64(&min_num, i), opt_f64(&max_num, i));
            if got_n != Some(values.len() as i64)
                || !opt_close(got_min, want_min)
                || !opt_close(got_max, want_max)
            {
                problems.push(format!(
                    "score_thresholds {period} {m} score {s}: published customers {got_n:?} min {got_min:?} max {got_max:?}, expected {} min {want_min:?} max {want_max:?}",
                    values.len()
                ));
            }
        }
    }
    if seen.len() != 15 {
        problems.push(format!(
            "score_thresholds {period}: {} distinct metric × score rows, expected 15: {seen:?}",
            seen.len()
        ));
    }
    problems
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

#[test]
fn default_job_matches_independent_implementation() {
    // The hand translation above must still be the job's rules.
    let yaml: Vec<(String, String)> = job_segments_from_yaml(&default_job());
    let mine: Vec<(String, String)> = SEGMENTS
        .iter()
        .map(|(n, r)| (n.to_string(), r.to_string()))
        .collect();
    assert_eq!(
        yaml, mine,
        "jobs/rfm_monthly.yaml changed its segments: update SEGMENTS and rule_matches in tests/it/reference.rs"
    );

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let warehouse = dir.path().join("warehouse");
    let started = Instant::now();
    segments_ok(
        dir.path(),
        &[
            "generate",
            "--customers",
            "4000",
            "--months",
            "20",
            "--start",
            "2023-01",
            "--seed",
            "7",
            "--out",
            data.to_str().unwrap(),
        ],
    );
    eprintln!("generate: {:?}", started.elapsed());

    let t = read_transactions(&data.join("transactions"));
    let months: HashSet<i32> = t
        .lines
        .iter()
        .map(|l| {
            let d = date_of(l.micros.div_euclid(MICROS_PER_DAY) as i32);
            d.year() * 12 + d.month() as i32
        })
        .collect();
    eprintln!(
        "read {} rows from {} files: {} customer lines of {} customers over {} months, {} anonymous, {} without order id/date/amount, {} exact duplicates",
        t.rows_read,
        t.files,
        t.lines.len(),
        t.customer_names.len(),
        months.len(),
        t.anonymous,
        t.null_order_id,
        t.exact_duplicates
    );
    assert!(
        t.rows_read >= 50_000,
        "the generator wrote only {} transaction lines",
        t.rows_read
    );
    assert!(
        months.len() >= 18,
        "transactions cover only {} months",
        months.len()
    );
    assert!(
        t.anonymous > 0,
        "the generated data should include anonymous sales"
    );
    assert!(
        t.lines.iter().any(|l| l.cents < 0),
        "the generated data should include refund lines"
    );
    // What real exports carry (`segments generate` writes it by default):
    // the run must count each duplicated line once, as this reference does.
    assert!(
        t.exact_duplicates > 0,
        "the generated data should include exact duplicate lines"
    );

    let config = write_config(dir.path(), &data.join("transactions"), &warehouse);
    let job = default_job();
    // 2024-08: the last month, P−1 not published (reclassified);
    // 2023-12 in the middle, also reclassified; 2024-01 then has a published
    // P−1 (2023-12) to compare against.
    let periods = ["2024-08", "2023-12", "2024-01"];
    let mut problems = Vec::new();
    let mut populated: HashMap<&str, usize> = HashMap::new();
    for period in periods {
        let started = Instant::now();
        segments_ok(
            dir.path(),
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
        eprintln!("run {period}: {:?}", started.elapsed());

        let started = Instant::now();
        let p = Period::parse(period);
        let cur = reference_period(&t, p);
        let prev = reference_period(&t, p.previous());
        eprintln!("reference {period}: {:?}", started.elapsed());
        for c in cur.customers.values() {
            *populated
                .entry(SEGMENTS[c.snap.segment_rank as usize - 1].0)
                .or_default() += 1;
        }
        let mut counts: Vec<(i32, &str, usize)> = SEGMENTS
            .iter()
            .map(|(s, _)| {
                (
                    segment_rank(s),
                    *s,
                    cur.customers
                        .values()
                        .filter(|c| c.snap.segment == *s)
                        .count(),
                )
            })
            .collect();
        counts.sort();
        eprintln!(
            "reference {period}: {} customers, segments {counts:?}",
            cur.customers.len()
        );
        let mut movements: BTreeMap<String, usize> = BTreeMap::new();
        for m in reference_migrations(&prev, &cur).values() {
            *movements.entry(m.movement.clone()).or_default() += 1;
        }
        let non_positive = cur
            .customers
            .values()
            .filter(|c| c.snap.monetary <= 0)
            .count();
        eprintln!(
            "reference {period}: movements {movements:?}, {non_positive} customers with monetary <= 0"
        );
        problems.extend(compare_period(&warehouse, &cur, &prev));
    }

    let empty: Vec<&str> = SEGMENTS
        .iter()
        .map(|(s, _)| *s)
        .filter(|s| !populated.contains_key(s))
        .collect();
    assert!(
        problems.is_empty(),
        "the published tables differ from the independent reference:\n{}",
        problems.join("\n")
    );
    assert!(
        empty.is_empty(),
        "segments empty in every compared period {periods:?} (the generator should populate them all): {empty:?}"
    );
}

/// The reference itself, on a few hand-checked lines (no binary involved), so
/// that a mismatch above points at the binary, not at this file.
#[test]
fn reference_on_hand_checked_lines() {
    let ts = |y: i32, m: u32, d: u32, h: u32| {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_micros()
    };
    let names = ["a", "b", "c", "d", "e"];
    let raw: [(u32, u32, i64, i128); 9] = [
        (0, 1, ts(2024, 3, 10, 12), 10_000),
        (1, 2, ts(2024, 1, 5, 9), 5_000),
        (1, 3, ts(2024, 3, 31, 23), 2_000),
        (2, 4, ts(2024, 2, 1, 10), 3_000),
        (2, 4, ts(2024, 4, 2, 10), -3_000), // refunded next month: c leaves the universe
        (3, 5, ts(2022, 12, 15, 10), 4_000),
        (3, 6, ts(2023, 6, 1, 10), -500), // a separate refund order
        (4, 7, ts(2024, 3, 1, 8), 1_000),
        (4, 7, ts(2024, 2, 29, 23), 1_500), // earliest line dates the order
    ];
    let t = Transactions {
        customer_names: names.iter().map(|s| s.to_string()).collect(),
        lines: raw
            .iter()
            .map(|&(customer, order, micros, cents)| Line {
                customer,
                order,
                micros,
                cents,
            })
            .collect(),
        ..Default::default()
    };
    let d = |y, m, day| days(NaiveDate::from_ymd_opt(y, m, day).unwrap());

    let march = reference_period(&t, Period::parse("2024-03"));
    // (id, segment, rfm_code, recency_days, frequency, monetary, first, last)
    type Row<'a> = (&'a str, &'a str, Option<&'a str>, i32, i64, i128, i32, i32);
    let got: Vec<Row> = march
        .customers
        .values()
        .map(|c| {
            let s = &c.snap;
            (
                s.customer_id.as_str(),
                s.segment.as_str(),
                s.rfm_code.as_deref(),
                s.recency_days,
                s.frequency,
                s.monetary,
                s.first_purchase_date,
                s.last_purchase_date,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "a",
                "about_to_sleep",
                Some("314"),
                21,
                1,
                10_000,
                d(2024, 3, 10),
                d(2024, 3, 10)
            ),
            (
                "b",
                "loyal",
                Some("443"),
                0,
                2,
                7_000,
                d(2024, 1, 5),
                d(2024, 3, 31)
            ),
            (
                "c",
                "hibernating",
                Some("112"),
                59,
                1,
                3_000,
                d(2024, 2, 1),
                d(2024, 2, 1)
            ),
            (
                "d",
                "lost",
                None,
                472,
                0,
                -500,
                d(2022, 12, 15),
                d(2022, 12, 15)
            ),
            (
                "e",
                "hibernating",
                Some("211"),
                31,
                1,
                2_500,
                d(2024, 2, 29),
                d(2024, 2, 29)
            ),
        ]
    );
    assert_eq!(march.customers["a"].snap.as_of_date, d(2024, 3, 31));
    assert_eq!(march.customers["a"].snap.segment_rank, 7);
    assert_eq!(
        (
            march.customers["b"].period_purchases,
            march.customers["b"].period_revenue
        ),
        (1, 2_000)
    );
    assert_eq!(
        (
            march.customers["e"].period_purchases,
            march.customers["e"].period_revenue
        ),
        (0, 0)
    );

    let april = reference_period(&t, Period::parse("2024-04"));
    assert!(!april.customers.contains_key("c"));
    let moves: Vec<(String, String, Option<String>)> = reference_migrations(&march, &april)
        .into_values()
        .map(|m| (m.customer_id, m.movement, m.evolution))
        .collect();
    let s = |x: &str| x.to_string();
    assert_eq!(
        moves,
        vec![
            (s("a"), s("down"), Some(s("watch"))),
            (s("b"), s("same"), Some(s("same"))),
            (s("c"), s("removed"), None),
            (s("d"), s("same"), Some(s("same"))),
            (s("e"), s("same"), Some(s("same"))),
        ]
    );
    let (cells, totals) = reference_matrix(&march, &april);
    let cells: Vec<(&str, &str, i64, i128)> = cells
        .values()
        .map(|c| {
            (
                c.from_segment.as_str(),
                c.to_segment.as_str(),
                c.customers,
                c.monetary,
            )
        })
        .collect();
    assert_eq!(
        cells,
        vec![
            ("about_to_sleep", "hibernating", 1, 10_000),
            ("hibernating", "(removed)", 1, 3_000),
            ("hibernating", "hibernating", 1, 2_500),
            ("lost", "lost", 1, -500),
            ("loyal", "loyal", 1, 7_000),
        ]
    );
    assert_eq!(totals["hibernating"], 2);

    // Before any transaction everybody is new.
    let empty = reference_period(&t, Period::parse("2022-11"));
    let dec = reference_period(&t, Period::parse("2022-12"));
    let m = reference_migrations(&empty, &dec);
    assert_eq!(m.len(), 1);
    assert_eq!(
        (m["d"].movement.as_str(), m["d"].evolution.as_deref()),
        ("new", None)
    );
}

// ---------------------------------------------------------------------------
// For the other shipped jobs (tests/it/jobs.rs, tests/it/compare.rs): the same
// independent computation of the per-customer metrics and 1–5 scores, exposed
// so that each job's test only translates its own rules.
// ---------------------------------------------------------------------------

/// The generated transactions, read once with the plain readers above.
pub(crate) struct GeneratedData(Transactions);

/// Read every generated transaction line under `dir` (Hive `month=` folders).
pub(crate) fn read_generated(dir: &Path) -> GeneratedData {
    GeneratedData(read_transactions(dir))
}

/// One customer of a period's universe as the reference computes it (docs/design.md
/// §3): dates are days since the Unix epoch, money is in cents, scores are
/// `None` for customers without a purchase in the 12-month window.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CustomerFacts {
    pub customer_id: String,
    pub as_of_date: i32,
    pub recency_days: i32,
    pub frequency: i64,
    pub monetary: i128,
    pub first_purchase_date: i32,
    pub last_purchase_date: i32,
    pub r_score: Option<i8>,
    pub f_score: Option<i8>,
    pub m_score: Option<i8>,
}

impl GeneratedData {
    /// The universe of `period` (`YYYY-MM`), keyed by customer id.
    pub(crate) fn customers(&self, period: &str) -> BTreeMap<String, CustomerFacts> {
        reference_period(&self.0, Period::parse(period))
            .customers
            .into_iter()
            .map(|(id, c)| {
                let s = c.snap;
                let facts = CustomerFacts {
                    customer_id: s.customer_id,
                    as_of_date: s.as_of_date,
                    recency_days: s.recency_days,
                    frequency: s.frequency,
                    monetary: s.monetary,
                    first_purchase_date: s.first_purchase_date,
                    last_purchase_date: s.last_purchase_date,
                    r_score: s.r_score,
                    f_score: s.f_score,
                    m_score: s.m_score,
                };
                (id, facts)
            })
            .collect()
    }
}

/// The segments (name, rule) of a job file, in order, read with the plain
/// text scan above (for guards that a hand translation is still the job's).
/// (name, rule) of each audience of an audiences job, as written.
pub(crate) fn audiences_of_job(path: &Path) -> Vec<(String, String)> {
    let job: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    job["classification"]["audiences"]
        .as_sequence()
        .expect("an audiences job")
        .iter()
        .map(|audience| {
            let text = |key: &str| {
                audience[key]
                    .as_str()
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            };
            (text("name"), text("rule"))
        })
        .collect()
}

pub(crate) fn segments_of_job(path: &Path) -> Vec<(String, String)> {
    job_segments_from_yaml(path)
}

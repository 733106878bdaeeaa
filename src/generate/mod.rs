//! Synthetic, deterministic loyalty transactions for `segments generate`: one Parquet file per month.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use arrow::array::{
    ArrayRef, Decimal128Array, Int64Array, NullBufferBuilder, StringArray,
    TimestampMicrosecondArray,
};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Geometric, Poisson};

use crate::model::Period;

mod btyd;
mod calendar;
pub mod customers;
mod defects;
mod events;
mod parallel;
mod sampling;
mod writer;

use parallel::*;
use sampling::*;
use writer::*;

pub use btyd::{BtydParams, generate_btyd};

/// What to generate and where.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Number of loyalty customers (ids `C0000001` …).
    pub customers: u64,
    /// Number of calendar months to generate, starting at `start`.
    pub months: u32,
    /// First month generated.
    pub start: Period,
    /// Seed of every random draw: same options, same bytes.
    pub seed: u64,
    /// Local directory; files go to `<out_dir>/transactions/month=YYYY-MM/part-0.parquet`,
    /// `<out_dir>/events/month=YYYY-MM/part-0.parquet`, `<out_dir>/products/part-0.parquet`
    /// `<out_dir>/sales_calendar/part-0.parquet` and
    /// `<out_dir>/customers/part-0.parquet`.
    pub out_dir: PathBuf,
    /// Whether to write the events (and the visitors who never buy).
    pub events: bool,
    /// Whether to write what real exports carry (`defects`): exact
    /// duplicate lines and lines that arrive in the next month's file.
    pub defects: bool,
}

/// What was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenerateReport {
    /// Transaction lines written.
    pub rows: u64,
    /// Distinct order ids written (sales, anonymous tickets and refund orders).
    pub orders: u64,
    /// One file per month, in month order.
    pub files: Vec<PathBuf>,
    /// Lines with no customer id (till tickets without a loyalty card).
    pub anonymous_rows: u64,
    /// Lines with a negative amount (refund lines of an order and refund orders).
    pub refund_rows: u64,
    /// Extra copies of lines written twice (0 with `defects` off).
    pub duplicate_rows: u64,
    /// Lines written in the file of the month after their date (0 with
    /// `defects` off).
    pub late_rows: u64,
    /// Events written (0 without events).
    pub event_rows: u64,
    /// Event files, one per month (empty without events).
    pub event_files: Vec<PathBuf>,
    /// Contacts seen only in events.
    pub visitors: u64,
    /// Products in the catalog file.
    pub products: u64,
    /// Sales in the sales calendar file.
    pub sales: u64,
    /// Rows of the customer file: one per customer and visitor, one more per
    /// customer who moved (`valid_from`).
    pub customer_rows: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("invalid generate options: {0}")]
    InvalidOptions(String),
    #[error("I/O error on {}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write Parquet file {}", .path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: ParquetError,
    },
    #[error("cannot build a record batch")]
    Arrow(#[from] ArrowError),
}

const MICROS_PER_HOUR: i64 = 3_600_000_000;
const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;
/// Rows per Arrow batch handed to the Parquet writer: small enough for a
/// batch's arrays to stay in the CPU cache while they are encoded, a multiple
/// of the writer's 1024-row mini-batches.
const BATCH_ROWS: usize = 8 * 1024;
/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 1024 * 1024;
const PRODUCTS: usize = 500;
const STORES: usize = 40;
/// Customer ids have at least this many digits (`C0000123`).
const MIN_ID_DIGITS: usize = 7;

const CHANNELS: [&str; 3] = ["web", "store", "app"];
const STORE: u8 = 1;
/// `Line::customer` of an anonymous line; customers are numbered from 1.
const ANONYMOUS: u32 = 0;
/// `Line::store` of a web or app line.
const NO_STORE: u16 = u16::MAX;

/// Share of store orders paid without a loyalty card.
const ANONYMOUS_SHARE: f64 = 0.10;
/// Share of orders that get refund lines (same order id, dated later).
const REFUND_SHARE: f64 = 0.04;
/// Share of those refunds that refund the whole order.
const WHOLE_REFUND_SHARE: f64 = 0.25;
/// Chance per active month (after the first) of a separate refund order.
const REFUND_ORDER_SHARE: f64 = 0.01;
/// Chance that a line comes from one of the customer's favourite categories.
const FAVOURITE_SHARE: f64 = 0.7;

/// Name, cheapest and dearest list price in euros, share of demand.
const CATEGORIES: [(&str, f64, f64, u32); 12] = [
    ("grocery", 2.0, 30.0, 16),
    ("beauty", 5.0, 80.0, 11),
    ("apparel", 10.0, 120.0, 14),
    ("shoes", 30.0, 180.0, 7),
    ("home", 8.0, 200.0, 9),
    ("kitchen", 5.0, 150.0, 8),
    ("electronics", 20.0, 900.0, 6),
    ("sports", 10.0, 300.0, 7),
    ("toys", 5.0, 120.0, 6),
    ("books", 5.0, 40.0, 7),
    ("garden", 5.0, 250.0, 5),
    ("jewelry", 20.0, 600.0, 4),
];

/// Order-rate multiplier per calendar month (January sales, summer sales, Christmas).
const SEASONALITY: [f64; 12] = [
    1.05, 0.85, 0.95, 0.95, 1.0, 1.0, 1.2, 0.9, 0.95, 1.0, 1.15, 1.45,
];
/// Share of discounted lines during a sale of the sales calendar, and outside.
const SALES_DISCOUNT_SHARE: f64 = 0.6;
const BASE_DISCOUNT_SHARE: f64 = 0.06;
/// Discount rates in percent and their weights.
const DISCOUNT_RATES: [(i64, u32); 5] = [(10, 30), (20, 30), (30, 20), (40, 10), (50, 10)];
const STORE_HOUR_WEIGHTS: [u32; 24] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 5, 7, 9, 8, 7, 8, 9, 10, 9, 6, 0, 0, 0, 0,
];
const ONLINE_HOUR_WEIGHTS: [u32; 24] = [
    2, 1, 1, 1, 1, 1, 2, 3, 4, 5, 5, 6, 7, 6, 5, 5, 6, 7, 8, 9, 10, 9, 7, 4,
];
/// Preferred channel weights, in `CHANNELS` order.
const CHANNEL_WEIGHTS: [u32; 3] = [35, 50, 15];
/// Quantity of a line (1 to 5) and its weights.
const QUANTITY_WEIGHTS: [u32; 5] = [78, 14, 5, 2, 1];

/// Seed streams, so the catalog, the profiles and the months never share draws.
const STREAM_CATALOG: u64 = 1;
const STREAM_PROFILE: u64 = 2;
const STREAM_MONTH: u64 = 3;

/// Writes the transactions of `options.months` months, one Parquet file per
/// month (`<out_dir>/transactions/month=YYYY-MM/part-0.parquet`, written to a
/// hidden temporary file then renamed), a month per core at a time.
///
/// The data is shaped so that every RFM segment is populated: customers arrive
/// over the months (about 40% in the first one), buy at rates from a skewed
/// mixture (many one-time buyers, a few who buy several times a month), churn
/// for good, refund some orders (partly or wholly, sometimes the next month)
/// and sometimes pay at the till without their loyalty card (anonymous lines).
/// Every random draw comes from a ChaCha8 stream seeded from `(seed, customer)`
/// or `(seed, customer, month)`, so the same options give byte-identical files.
pub fn generate(options: &GenerateOptions) -> Result<GenerateReport, GenerateError> {
    generate_on(options, worker_threads())
}

/// [`generate`] on `threads` threads. Every month draws from its own seeds and
/// the months' results are put together in month order, so the files are the
/// same bytes whatever the number of threads.
fn generate_on(options: &GenerateOptions, threads: usize) -> Result<GenerateReport, GenerateError> {
    let last = check_options(options)?;
    let tables = Tables::new(options.seed);
    generate_checked(options, last, tables, threads)
}

/// The options' problems, or the last month generated.
fn check_options(options: &GenerateOptions) -> Result<Period, GenerateError> {
    if options.customers == 0 {
        return Err(GenerateError::InvalidOptions(
            "customers must be at least 1".into(),
        ));
    }
    if options.customers >= u64::from(u32::MAX) {
        return Err(GenerateError::InvalidOptions(format!(
            "customers must be below {}",
            u32::MAX
        )));
    }
    if options.months == 0 {
        return Err(GenerateError::InvalidOptions(
            "months must be at least 1".into(),
        ));
    }
    if options.months > 1200 {
        return Err(GenerateError::InvalidOptions(
            "months must be at most 1200".into(),
        ));
    }
    let last = options.start.add_months(options.months as i32 - 1);
    if last.year() > 9999 {
        return Err(GenerateError::InvalidOptions(format!(
            "the last month would be after 9999-12 ({} months from {})",
            options.months, options.start
        )));
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Decimal128Type, Int64Type, TimestampMicrosecondType};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    fn options(out_dir: &Path, customers: u64, months: u32) -> GenerateOptions {
        GenerateOptions {
            customers,
            months,
            start: Period::new(2024, 1).unwrap(),
            seed: 42,
            out_dir: out_dir.to_path_buf(),
            events: true,
            defects: true,
        }
    }

    /// Every line of a file, as plain values.
    #[derive(Debug, Clone)]
    struct Row {
        customer_id: Option<String>,
        order_id: String,
        ordered_at: i64,
        amount: i128,
        quantity: i64,
        product_id: String,
        channel: String,
        store_id: Option<String>,
        discount_amount: i128,
    }

    fn read_rows(path: &Path) -> Vec<Row> {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let mut rows = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            let customer = batch.column(0).as_string::<i32>();
            let order = batch.column(1).as_string::<i32>();
            let ts = batch.column(2).as_primitive::<TimestampMicrosecondType>();
            let amount = batch.column(3).as_primitive::<Decimal128Type>();
            let quantity = batch.column(4).as_primitive::<Int64Type>();
            let product = batch.column(5).as_string::<i32>();
            let channel = batch.column(7).as_string::<i32>();
            let store = batch.column(8).as_string::<i32>();
            let discount = batch.column(9).as_primitive::<Decimal128Type>();
            for i in 0..batch.num_rows() {
                rows.push(Row {
                    customer_id: customer.is_valid(i).then(|| customer.value(i).to_string()),
                    order_id: order.value(i).to_string(),
                    ordered_at: ts.value(i),
                    amount: amount.value(i),
                    quantity: quantity.value(i),
                    product_id: product.value(i).to_string(),
                    channel: channel.value(i).to_string(),
                    store_id: store.is_valid(i).then(|| store.value(i).to_string()),
                    discount_amount: discount.value(i),
                });
            }
        }
        rows
    }

    /// (customer_id, event_type, occurred_at, product_id).
    type EventRow = (String, String, i64, Option<String>);

    /// The rows of an events file.
    fn read_events(path: &Path) -> Vec<EventRow> {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let mut events = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            let customer = batch.column(0).as_string::<i32>();
            let kind = batch.column(1).as_string::<i32>();
            let ts = batch.column(2).as_primitive::<TimestampMicrosecondType>();
            let product = batch.column(3).as_string::<i32>();
            for i in 0..batch.num_rows() {
                events.push((
                    customer.value(i).to_string(),
                    kind.value(i).to_string(),
                    ts.value(i),
                    product.is_valid(i).then(|| product.value(i).to_string()),
                ));
            }
        }
        events
    }

    #[test]
    fn events_are_consistent_with_the_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let report = generate(&options(dir.path(), 300, 14)).unwrap();
        assert_eq!(report.visitors, 30);
        assert_eq!(report.event_files.len(), 14);
        let rows: Vec<Row> = report.files.iter().flat_map(|f| read_rows(f)).collect();
        let events: Vec<_> = report
            .event_files
            .iter()
            .flat_map(|f| read_events(f))
            .collect();
        assert_eq!(events.len() as u64, report.event_rows);
        // Every identified web or app sale has, for its customer, a visit, a
        // view of its first product and a cart add of it in the 40 minutes before.
        let mut sales = HashMap::new();
        for row in &rows {
            if row.amount > 0 && row.channel != "store" && row.customer_id.is_some() {
                sales.entry(row.order_id.clone()).or_insert(row);
            }
        }
        assert!(sales.len() > 100, "{} web and app sales", sales.len());
        let mut by_customer: HashMap<&str, Vec<&EventRow>> = HashMap::new();
        for event in &events {
            by_customer.entry(event.0.as_str()).or_default().push(event);
        }
        for sale in sales.values() {
            let before = |kind: &str, product: Option<&str>| {
                by_customer[sale.customer_id.as_deref().unwrap()]
                    .iter()
                    .any(|e| {
                        e.1 == kind
                            && e.2 < sale.ordered_at
                            && e.2 >= sale.ordered_at - 40 * 60_000_000
                            && (product.is_none() || e.3.as_deref() == product)
                    })
            };
            assert!(before("visit", None), "no visit before {}", sale.order_id);
            assert!(
                before("product_view", Some(&sale.product_id)),
                "{}",
                sale.order_id
            );
            assert!(
                before("cart_add", Some(&sale.product_id)),
                "{}",
                sale.order_id
            );
        }
        // Visitors (ids after the customers) never buy but are seen in events.
        let buyers: HashSet<&str> = rows
            .iter()
            .filter_map(|r| r.customer_id.as_deref())
            .collect();
        let visitors: HashSet<&str> = events
            .iter()
            .map(|e| e.0.as_str())
            .filter(|id| id[1..].parse::<u64>().unwrap() > 300)
            .collect();
        assert!(!visitors.is_empty());
        assert!(visitors.iter().all(|v| !buyers.contains(v)));
        // Every event type appears.
        let kinds: HashSet<&str> = events.iter().map(|e| e.1.as_str()).collect();
        assert_eq!(kinds.len(), 5, "{kinds:?}");
        // Discounts are concentrated in the sales of the calendar.
        let ctx_share = |in_sales: bool| {
            let selected: Vec<&Row> = rows
                .iter()
                .filter(|r| r.amount > 0)
                .filter(|r| {
                    let day = chrono::DateTime::from_timestamp_micros(r.ordered_at)
                        .unwrap()
                        .date_naive();
                    let sales = calendar::sales_of_year(chrono::Datelike::year(&day));
                    sales.iter().any(|s| s.starts <= day && day < s.ends) == in_sales
                })
                .collect();
            selected.iter().filter(|r| r.discount_amount > 0).count() as f64 / selected.len() as f64
        };
        let (during, outside) = (ctx_share(true), ctx_share(false));
        assert!(during > 0.45 && outside < 0.10, "{during} {outside}");
    }

    /// The line as every column's value, to compare lines exactly.
    fn line_key(row: &Row) -> String {
        format!("{row:?}")
    }

    #[test]
    fn defects_are_the_clean_lines_with_copies_and_late_lines() {
        let dirty_dir = tempfile::tempdir().unwrap();
        let clean_dir = tempfile::tempdir().unwrap();
        let mut dirty_options = options(dirty_dir.path(), 20_000, 6);
        dirty_options.events = false;
        let clean_options = GenerateOptions {
            out_dir: clean_dir.path().to_path_buf(),
            defects: false,
            ..dirty_options.clone()
        };
        let dirty = generate(&dirty_options).unwrap();
        let clean = generate(&clean_options).unwrap();
        assert_eq!((clean.duplicate_rows, clean.late_rows), (0, 0));
        assert!(
            dirty.duplicate_rows > 0 && dirty.late_rows > 0,
            "{} copies, {} late lines",
            dirty.duplicate_rows,
            dirty.late_rows
        );
        // Same lines, plus the copies, except that the late ones moved file
        // (and the last month's lines stay where they are).
        assert_eq!(dirty.rows, clean.rows + dirty.duplicate_rows);
        let month_of = |ts: i64| {
            let day = chrono::DateTime::from_timestamp_micros(ts)
                .unwrap()
                .date_naive();
            (chrono::Datelike::year(&day), chrono::Datelike::month(&day))
        };
        let lines_by_file = |files: &[PathBuf]| -> Vec<(usize, Row)> {
            files
                .iter()
                .enumerate()
                .flat_map(|(month, file)| read_rows(file).into_iter().map(move |r| (month, r)))
                .collect()
        };
        let dirty_lines = lines_by_file(&dirty.files);
        let clean_lines = lines_by_file(&clean.files);
        let mut counts: HashMap<String, i64> = HashMap::new();
        for (_, row) in &dirty_lines {
            *counts.entry(line_key(row)).or_default() += 1;
        }
        for (_, row) in &clean_lines {
            *counts.entry(line_key(row)).or_default() -= 1;
        }
        // Every clean line is there; what is left over are exact copies, one each.
        assert!(counts.values().all(|c| *c == 0 || *c == 1));
        assert_eq!(
            counts.values().filter(|c| **c == 1).count() as u64,
            dirty.duplicate_rows
        );
        // Late lines: store lines of a month's last day in the next file.
        let file_month = |index: usize| {
            let period = dirty_options.start.add_months(index as i32);
            (period.year(), period.month())
        };
        let late: Vec<&Row> = dirty_lines
            .iter()
            .filter(|(index, row)| month_of(row.ordered_at) < file_month(*index))
            .map(|(_, row)| row)
            .collect();
        assert!(late.iter().all(|row| row.channel == "store"));
        assert_eq!(late.len() as u64, dirty.late_rows);
        assert!(
            clean_lines
                .iter()
                .all(|(index, row)| month_of(row.ordered_at) >= file_month(*index))
        );
    }

    #[test]
    fn same_options_give_identical_bytes() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // Whatever the number of threads: months are drawn side by side and
        // hand their late refunds over to the next month's thread.
        let first = generate_on(&options(a.path(), 1500, 5), 1).unwrap();
        let second = generate_on(&options(b.path(), 1500, 5), 3).unwrap();
        assert_eq!(
            first,
            GenerateReport {
                files: first.files.clone(),
                event_files: first.event_files.clone(),
                ..second.clone()
            }
        );
        assert_eq!(first.files.len(), 5);
        assert_eq!(first.event_files.len(), 5);
        assert!(first.refund_rows > 0);
        let written = |report: &GenerateReport| {
            let mut files = report.files.clone();
            files.extend(report.event_files.iter().cloned());
            files
        };
        for (x, y) in written(&first).iter().zip(&written(&second)) {
            assert_eq!(
                x.strip_prefix(a.path()).unwrap(),
                y.strip_prefix(b.path()).unwrap()
            );
            assert!(
                fs::read(x).unwrap() == fs::read(y).unwrap(),
                "{} differs",
                x.display()
            );
        }
        let other_seed = GenerateOptions {
            seed: 43,
            ..options(b.path(), 1500, 5)
        };
        generate(&other_seed).unwrap();
        assert!(fs::read(&first.files[0]).unwrap() != fs::read(&second.files[0]).unwrap());
    }

    #[test]
    fn files_match_the_report_and_the_schema() {
        let dir = tempfile::tempdir().unwrap();
        // The simulation itself; its defects are checked on their own.
        let clean = GenerateOptions {
            defects: false,
            ..options(dir.path(), 3000, 6)
        };
        let report = generate(&clean).unwrap();
        let expected: Vec<PathBuf> = [
            "2024-01", "2024-02", "2024-03", "2024-04", "2024-05", "2024-06",
        ]
        .iter()
        .map(|m| {
            dir.path()
                .join(format!("transactions/month={m}/part-0.parquet"))
        })
        .collect();
        assert_eq!(report.files, expected);

        let builder =
            ParquetRecordBatchReaderBuilder::try_new(File::open(&report.files[0]).unwrap())
                .unwrap();
        assert_eq!(builder.schema().fields(), transactions_schema().fields());
        let names: Vec<&str> = builder
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(
            names,
            [
                "customer_id",
                "order_id",
                "ordered_at",
                "amount",
                "quantity",
                "product_id",
                "category",
                "channel",
                "store_id",
                "discount_amount"
            ]
        );
        let column = builder.metadata().row_group(0).column(0);
        assert_eq!(
            column.compression(),
            Compression::ZSTD(ZstdLevel::default())
        );
        assert!(column.statistics().is_some());

        let (mut rows, mut anonymous, mut refunds) = (0u64, 0u64, 0u64);
        let mut orders = HashSet::new();
        let mut distinct_lines = HashSet::new();
        let mut all = Vec::new();
        for (month, file) in report.files.iter().enumerate() {
            let lines = read_rows(file);
            assert!(!lines.is_empty());
            assert!(
                lines.windows(2).all(|w| w[0].ordered_at <= w[1].ordered_at),
                "sorted by ordered_at"
            );
            let period = Period::new(2024, 1).unwrap().add_months(month as i32);
            for line in &lines {
                assert!(
                    micros_at(period.start()) <= line.ordered_at
                        && line.ordered_at < micros_at(period.end())
                );
                assert_eq!(line.store_id.is_some(), line.channel == "store", "{line:?}");
                assert!(
                    line.customer_id.is_some() || line.channel == "store",
                    "{line:?}"
                );
                assert!(line.discount_amount >= 0);
                assert_eq!(line.amount < 0, line.quantity < 0, "{line:?}");
                if let Some(id) = &line.customer_id {
                    assert_eq!(id.len(), 8);
                    assert!(id.starts_with('C'));
                }
                rows += 1;
                anonymous += u64::from(line.customer_id.is_none());
                refunds += u64::from(line.amount < 0);
                orders.insert(line.order_id.clone());
                // The pipeline rejects exact duplicate lines: there must be none.
                let key = (
                    &line.order_id,
                    line.ordered_at,
                    &line.product_id,
                    line.amount,
                );
                assert!(
                    distinct_lines.insert(format!("{key:?}")),
                    "duplicate {line:?}"
                );
            }
            all.extend(lines.into_iter().map(|l| (month, l)));
        }
        assert_eq!(rows, report.rows);
        assert_eq!(anonymous, report.anonymous_rows);
        assert_eq!(refunds, report.refund_rows);
        assert_eq!(orders.len() as u64, report.orders);
        assert!(anonymous > 0 && refunds > 0);
        assert!(all.iter().any(|(_, l)| l.discount_amount > 0));

        // Orders: lines of one order share the customer; refunds of a sale keep
        // its id (sometimes dated a month later); refund orders exist.
        let mut by_order: HashMap<&str, Vec<&(usize, Row)>> = HashMap::new();
        for entry in &all {
            by_order
                .entry(entry.1.order_id.as_str())
                .or_default()
                .push(entry);
        }
        let mut refunded_sales = 0;
        let mut refunded_next_month = 0;
        let mut whole_refunds = 0;
        let mut refund_orders = 0;
        for lines in by_order.values() {
            assert!(lines.len() <= 12);
            assert!(
                lines
                    .iter()
                    .all(|(_, l)| l.customer_id == lines[0].1.customer_id)
            );
            let positive = lines.iter().filter(|(_, l)| l.amount > 0).count();
            let negative = lines.len() - positive;
            if positive == 0 {
                refund_orders += 1;
            } else if negative > 0 {
                refunded_sales += 1;
                refunded_next_month += usize::from(lines.iter().any(|(m, _)| *m != lines[0].0));
                whole_refunds +=
                    usize::from(lines.iter().map(|(_, l)| l.amount).sum::<i128>() == 0);
            }
        }
        assert!(
            refunded_sales > 0 && refunded_next_month > 0 && whole_refunds > 0 && refund_orders > 0
        );

        // Customers keep arriving; a large share buy once, some buy often.
        let mut first_month: HashMap<&str, usize> = HashMap::new();
        let mut customer_orders: HashMap<&str, HashSet<&str>> = HashMap::new();
        for (month, line) in &all {
            if let Some(id) = &line.customer_id {
                first_month.entry(id).or_insert(*month);
                if line.amount > 0 {
                    customer_orders
                        .entry(id)
                        .or_default()
                        .insert(&line.order_id);
                }
            }
        }
        assert!(first_month.values().any(|&m| m >= 3));
        for month in 0..6 {
            assert!(
                first_month.values().any(|&m| m == month),
                "new customers in month {month}"
            );
        }
        let from_start = first_month.values().filter(|&&m| m == 0).count() as f64;
        assert!((0.3..0.55).contains(&(from_start / first_month.len() as f64)));
        let once = customer_orders.values().filter(|o| o.len() == 1).count() as f64;
        let share_once = once / customer_orders.len() as f64;
        assert!(
            (0.25..0.75).contains(&share_once),
            "one-time buyers: {share_once}"
        );
        assert!(customer_orders.values().any(|o| o.len() >= 12));
    }

    #[test]
    fn invalid_options_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (customers, months) in [(0, 3), (10, 0)] {
            let err = generate(&options(dir.path(), customers, months)).unwrap_err();
            assert!(matches!(err, GenerateError::InvalidOptions(_)), "{err}");
        }
        assert!(!dir.path().join("transactions").exists());
    }

    #[test]
    fn io_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"not a directory").unwrap();
        let err = generate(&options(&blocker, 10, 1)).unwrap_err();
        assert!(matches!(err, GenerateError::Io { .. }), "{err}");
        assert!(err.to_string().contains("file"), "{err}");
    }

    #[test]
    fn ids_are_fixed_width() {
        let mut buffer = [b'x'; 7];
        write_digits(&mut buffer, 123);
        assert_eq!(std::str::from_utf8(&buffer).unwrap(), "0000123");
    }
}

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
mod events;

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
    /// and `<out_dir>/sales_calendar/part-0.parquet`.
    pub out_dir: PathBuf,
    /// Whether to write the events (and the visitors who never buy).
    pub events: bool,
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
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("invalid generate options: {0}")]
    InvalidOptions(String),
    #[error("I/O error on {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write Parquet file {}: {source}", .path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: ParquetError,
    },
    #[error("cannot build a record batch: {0}")]
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

/// Threads that generate months side by side: one per core.
fn worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn generate_checked(
    options: &GenerateOptions,
    last: Period,
    tables: Tables,
    threads: usize,
) -> Result<GenerateReport, GenerateError> {
    let threads = threads.clamp(1, options.months as usize);
    let profiles = draw_all(options.customers as u32, threads, |c| {
        Profile::draw(options.seed, c, options.months, &tables)
    });
    let visitor_count = if options.events {
        options.customers / events::CUSTOMERS_PER_VISITOR
    } else {
        0
    };
    let visitors = draw_all(visitor_count as u32, threads, |v| {
        events::Visitor::draw(options.seed, v, options.months)
    });
    // Customers and visitors share one id space, so ids have one width.
    let writer = MonthWriter::new(options.customers + visitor_count);
    let mut report = GenerateReport {
        visitors: visitor_count,
        ..GenerateReport::default()
    };
    let (_, products) = calendar::write_products(&options.out_dir, &tables, &writer.properties)?;
    report.products = products;
    // The year before the first month too: jobs look back at last year's sales.
    let (_, sales) = calendar::write_sales_calendar(
        &options.out_dir,
        options.start.year() - 1,
        last.year(),
        &writer.properties,
    )?;
    report.sales = sales;

    let months = Months {
        options,
        horizon: micros_at(last.end()),
        profiles: &profiles,
        visitors: &visitors,
        tables: &tables,
        writer: &writer,
    };
    for month in months.run(threads)? {
        report.rows += month.rows;
        report.orders += month.orders;
        report.anonymous_rows += month.anonymous_rows;
        report.refund_rows += month.refund_rows;
        report.files.push(month.file);
        if let Some((rows, file)) = month.events {
            report.event_rows += rows;
            report.event_files.push(file);
        }
    }
    Ok(report)
}

/// `f(0..count)` in order, computed in `threads` chunks side by side.
fn draw_all<T: Send>(count: u32, threads: usize, f: impl Fn(u32) -> T + Sync) -> Vec<T> {
    let chunk = count.div_ceil(threads as u32).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let parts: Vec<_> = (0..count)
            .step_by(chunk as usize)
            .map(|low| {
                let high = low.saturating_add(chunk).min(count);
                scope.spawn(move || (low..high).map(f).collect::<Vec<T>>())
            })
            .collect();
        let mut all = Vec::with_capacity(count as usize);
        for part in parts {
            match part.join() {
                Ok(part) => all.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        all
    })
}

/// What one month wrote.
struct MonthOutput {
    rows: u64,
    orders: u64,
    anonymous_rows: u64,
    refund_rows: u64,
    file: PathBuf,
    /// Events written and their file, with events.
    events: Option<(u64, PathBuf)>,
}

/// Everything the months share, read-only.
struct Months<'a> {
    options: &'a GenerateOptions,
    /// End of the last generated month: later refunds are dropped.
    horizon: i64,
    profiles: &'a [Profile],
    visitors: &'a [events::Visitor],
    tables: &'a Tables,
    writer: &'a MonthWriter,
}

impl Months<'_> {
    /// Generates and writes every month, `threads` months at a time. A month
    /// draws its lines, hands the refunds dated in the next month to that
    /// month's thread, takes the refunds of the month before, then sorts and
    /// writes. The outputs are in month order; the error is the first month's.
    fn run(&self, threads: usize) -> Result<Vec<MonthOutput>, GenerateError> {
        let count = self.options.months as usize;
        let carried = Handoff::new(count);
        carried.put(0, Vec::new());
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let outputs: Mutex<Vec<Option<Result<MonthOutput, GenerateError>>>> =
            Mutex::new((0..count).map(|_| None).collect());
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    // Reused from month to month: fresh memory costs a page fault per 4 KiB.
                    let (mut buffer, mut sorted) = (Vec::new(), Vec::new());
                    while !failed.load(Ordering::Relaxed) {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        if index >= count {
                            break;
                        }
                        // If drawing panics, the next month's thread must not wait forever.
                        let promise = Promise {
                            handoff: &carried,
                            slot: index + 1,
                        };
                        let ctx = MonthContext::new(
                            self.options.start.add_months(index as i32),
                            index as u32,
                            self.horizon,
                        );
                        let drawn = self.draw(&ctx, std::mem::take(&mut buffer));
                        promise.fulfil(drawn.next_month);
                        let Some(refunds) = carried.take(index) else {
                            break;
                        };
                        let output =
                            self.write(&ctx, &refunds, &drawn.lines, drawn.next_seq, &mut sorted);
                        buffer = drawn.lines;
                        if output.is_err() {
                            failed.store(true, Ordering::Relaxed);
                        }
                        lock(&outputs)[index] = Some(output);
                    }
                });
            }
        });
        let outputs = outputs.into_inner().unwrap_or_else(PoisonError::into_inner);
        let mut months = Vec::with_capacity(count);
        for output in outputs {
            match output {
                Some(output) => months.push(output?),
                None => break,
            }
        }
        Ok(months)
    }

    /// The lines of the customers active in the month, from their own seeds:
    /// everything but the refunds carried from the month before.
    /// `buffer`: a vector to reuse for the lines.
    fn draw(&self, ctx: &MonthContext, mut buffer: Vec<Line>) -> MonthLines {
        // Room for the lines of a busy month, so that the vector seldom grows.
        let active = self
            .profiles
            .iter()
            .filter(|p| p.active_in(ctx.index))
            .count();
        buffer.clear();
        buffer.reserve(active * 4);
        let mut month = MonthLines {
            lines: buffer,
            next_month: Vec::new(),
            next_seq: 0,
        };
        for (c, profile) in self.profiles.iter().enumerate() {
            if profile.active_in(ctx.index) {
                customer_month(
                    self.options.seed,
                    c as u32,
                    profile,
                    ctx,
                    self.tables,
                    &mut month,
                );
            }
        }
        month
    }

    /// Sorts (into `sorted`) and writes the month's lines, the refunds carried
    /// from the month before then the month's own `drawn` lines, and its events.
    fn write(
        &self,
        ctx: &MonthContext,
        carried: &[Line],
        drawn: &[Line],
        orders: u32,
        sorted: &mut Vec<Line>,
    ) -> Result<MonthOutput, GenerateError> {
        let period = self.options.start.add_months(ctx.index as i32);
        // The carried refunds have no events.
        let events = self.options.events.then(|| {
            events::month_events(
                self.options.seed,
                self.profiles,
                self.visitors,
                ctx,
                self.tables,
                drawn,
            )
        });
        sort_by_time_into(
            &[carried, drawn],
            |line| line.ts,
            |a, b| a.ts < b.ts,
            sorted,
        );
        let lines = &sorted[..];
        let mut output = MonthOutput {
            rows: lines.len() as u64,
            orders: u64::from(orders),
            anonymous_rows: 0,
            refund_rows: 0,
            file: PathBuf::new(),
            events: None,
        };
        for line in lines {
            output.anonymous_rows += u64::from(line.customer == ANONYMOUS);
            output.refund_rows += u64::from(line.amount < 0);
        }
        let dir = self
            .options
            .out_dir
            .join("transactions")
            .join(format!("month={period}"));
        output.file = self.writer.write(&dir, lines, self.tables)?;
        if let Some(events) = events {
            let dir = self
                .options
                .out_dir
                .join("events")
                .join(format!("month={period}"));
            let file = events::write_events(
                &dir,
                &events,
                self.tables,
                self.writer.id_digits,
                &self.writer.properties,
            )?;
            output.events = Some((events.len() as u64, file));
        }
        Ok(output)
    }
}

/// The refunds each month takes from the month before, handed between threads.
struct Handoff {
    /// `None` until put; `Some(None)` when the putting thread panicked.
    slots: Mutex<Vec<Option<Option<Vec<Line>>>>>,
    changed: Condvar,
}

impl Handoff {
    fn new(months: usize) -> Self {
        Self {
            slots: Mutex::new(vec![None; months + 1]),
            changed: Condvar::new(),
        }
    }

    fn set(&self, slot: usize, lines: Option<Vec<Line>>) {
        lock(&self.slots)[slot] = Some(lines);
        self.changed.notify_all();
    }

    fn put(&self, slot: usize, lines: Vec<Line>) {
        self.set(slot, Some(lines));
    }

    /// Waits for `slot`; `None` if its thread panicked.
    fn take(&self, slot: usize) -> Option<Vec<Line>> {
        let mut slots = lock(&self.slots);
        loop {
            if let Some(lines) = slots[slot].take() {
                return lines;
            }
            slots = self
                .changed
                .wait(slots)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// A slot of a [`Handoff`] to fill; dropped unfilled (a panic), it wakes the taker.
struct Promise<'a> {
    handoff: &'a Handoff,
    slot: usize,
}

impl Promise<'_> {
    fn fulfil(self, lines: Vec<Line>) {
        self.handoff.put(self.slot, lines);
        std::mem::forget(self);
    }
}

impl Drop for Promise<'_> {
    fn drop(&mut self) {
        self.handoff.set(self.slot, None);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The Arrow schema of the generated files.
fn transactions_schema() -> SchemaRef {
    let money = DataType::Decimal128(18, 2);
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Utf8, true),
        Field::new("order_id", DataType::Utf8, false),
        Field::new(
            "ordered_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("amount", money.clone(), false),
        Field::new("quantity", DataType::Int64, false),
        Field::new("product_id", DataType::Utf8, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("channel", DataType::Utf8, false),
        Field::new("store_id", DataType::Utf8, true),
        Field::new("discount_amount", money, false),
    ]))
}

/// One transaction line, without any heap allocation.
#[derive(Debug, Clone, Copy)]
struct Line {
    /// `ordered_at`, microseconds since the epoch (UTC).
    ts: i64,
    /// Cents, negative for a refund.
    amount: i64,
    /// Cents, 0 when none.
    discount: i64,
    /// `ANONYMOUS` or customer index + 1.
    customer: u32,
    /// Month of the order id, `YYYYMM`.
    order_month: u32,
    /// Counter of the order id within its month.
    order_seq: u32,
    /// Negative for a refund.
    quantity: i16,
    product: u16,
    /// `NO_STORE` or store index.
    store: u16,
    channel: u8,
}

/// A customer's stable traits, drawn once from `(seed, customer)`.
#[derive(Debug, Clone, Copy)]
struct Profile {
    /// Orders per month while active (before seasonality).
    rate: f32,
    /// Chance of one more line in a basket (1 to 6 lines).
    more_lines: f32,
    /// First active month (index from the start); the first order is in it.
    arrival: u32,
    /// First month index after churn (exclusive end of activity).
    leave: u32,
    home_store: u16,
    favourites: [u8; 2],
    channel: u8,
}

impl Profile {
    fn draw(seed: u64, customer: u32, months: u32, tables: &Tables) -> Self {
        let mut rng =
            ChaCha8Rng::seed_from_u64(derive_seed(seed, STREAM_PROFILE, u64::from(customer), 0));
        // About 40% active from the first month, the others arrive evenly later.
        let arrival = if months == 1 || rng.random_bool(0.4) {
            0
        } else {
            rng.random_range(1..months)
        };
        // A skewed mixture: one-time buyers, rare, regular and frequent buyers,
        // each with its own monthly churn probability.
        let kind: f64 = rng.random();
        let (rate, churn) = if kind < 0.30 {
            (0.0, 1.0)
        } else if kind < 0.62 {
            (rng.random_range(0.06..0.30), rng.random_range(0.03..0.12))
        } else if kind < 0.90 {
            (rng.random_range(0.4..1.5), rng.random_range(0.02..0.07))
        } else {
            (rng.random_range(2.0..5.0), rng.random_range(0.005..0.03))
        };
        let active_months = Geometric::new(churn)
            .map_or(0, |g| g.sample(&mut rng))
            .saturating_add(1);
        let leave = u64::from(arrival)
            .saturating_add(active_months)
            .min(u64::from(months)) as u32;
        let channel = tables.channels.pick(&mut rng) as u8;
        let home_store = tables.stores.pick(&mut rng) as u16;
        let first = tables.categories.pick(&mut rng) as u8;
        let mut second = tables.categories.pick(&mut rng) as u8;
        if second == first {
            second = (first + 1) % CATEGORIES.len() as u8;
        }
        Self {
            rate: rate as f32,
            more_lines: rng.random_range(0.15f32..0.65),
            arrival,
            leave,
            home_store,
            favourites: [first, second],
            channel,
        }
    }

    fn active_in(&self, month: u32) -> bool {
        self.arrival <= month && month < self.leave
    }
}

/// The catalog, the stores and the weight tables, drawn once from the seed.
struct Tables {
    product_ids: Vec<Label>,
    product_category: Vec<u8>,
    product_price: Vec<i64>,
    products_by_category: Vec<Vec<u16>>,
    store_ids: Vec<Label>,
    stores: Weighted,
    categories: Weighted,
    channels: Weighted,
    store_hours: Weighted,
    online_hours: Weighted,
    discounts: Weighted,
    quantities: Weighted,
}

impl Tables {
    fn new(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, STREAM_CATALOG, 0, 0));
        let categories = Weighted::new(CATEGORIES.iter().map(|c| c.3));
        let mut product_ids = Vec::with_capacity(PRODUCTS);
        let mut product_category = Vec::with_capacity(PRODUCTS);
        let mut product_price = Vec::with_capacity(PRODUCTS);
        let mut products_by_category = vec![Vec::new(); CATEGORIES.len()];
        for p in 0..PRODUCTS {
            // Every category gets products; popular categories get more.
            let category = if p < CATEGORIES.len() {
                p
            } else {
                categories.pick(&mut rng)
            };
            let (_, low, high, _) = CATEGORIES[category];
            let euros = (low.ln() + rng.random::<f64>() * (high.ln() - low.ln())).exp();
            product_ids.push(Label::new(&format!("P{:04}", p + 1)));
            product_category.push(category as u8);
            product_price.push(euros.round().max(1.0) as i64 * 100 - 1);
            products_by_category[category].push(p as u16);
        }
        // Some stores are much busier than others.
        let store_weights = (0..STORES).map(|s| (1000.0 / ((s + 1) as f64).powf(0.7)) as u32);
        Self {
            product_ids,
            product_category,
            product_price,
            products_by_category,
            store_ids: (1..=STORES)
                .map(|s| Label::new(&format!("S{s:03}")))
                .collect(),
            stores: Weighted::new(store_weights),
            categories,
            channels: Weighted::new(CHANNEL_WEIGHTS),
            store_hours: Weighted::new(STORE_HOUR_WEIGHTS),
            online_hours: Weighted::new(ONLINE_HOUR_WEIGHTS),
            discounts: Weighted::new(DISCOUNT_RATES.iter().map(|d| d.1)),
            quantities: Weighted::new(QUANTITY_WEIGHTS),
        }
    }

    /// A product of `category`, best sellers first.
    fn pick_product(&self, rng: &mut ChaCha8Rng, category: u8) -> u16 {
        let products = &self.products_by_category[category as usize];
        let u: f64 = rng.random();
        products[((u * u * products.len() as f64) as usize).min(products.len() - 1)]
    }
}

/// Draws indices with fixed weights in constant time, from a lookup table of
/// `2^WEIGHT_BITS` slots (weights are rounded to a slot; a zero weight is never drawn).
struct Weighted {
    slots: Vec<u16>,
}

const WEIGHT_BITS: u32 = 12;

impl Weighted {
    fn new(weights: impl IntoIterator<Item = u32>) -> Self {
        let cumulative: Vec<u64> = weights
            .into_iter()
            .scan(0u64, |sum, w| {
                *sum += u64::from(w);
                Some(*sum)
            })
            .collect();
        let total = *cumulative.last().expect("non-empty weights");
        assert!(total > 0, "weights must not all be zero");
        let slots = (0..1u64 << WEIGHT_BITS)
            .map(|k| {
                let x = (k * total) >> WEIGHT_BITS;
                cumulative.partition_point(|&c| c <= x) as u16
            })
            .collect();
        Self { slots }
    }

    fn pick(&self, rng: &mut ChaCha8Rng) -> usize {
        usize::from(self.slots[(rng.next_u32() >> (32 - WEIGHT_BITS)) as usize])
    }
}

/// splitmix64 finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed for one stream of draws, independent of the order anything is generated in.
fn derive_seed(seed: u64, stream: u64, a: u64, b: u64) -> u64 {
    mix(mix(mix(seed ^ mix(stream)) ^ a) ^ b)
}

/// Microseconds since the epoch at midnight UTC of `date`.
fn micros_at(date: chrono::NaiveDate) -> i64 {
    date.and_time(chrono::NaiveTime::MIN)
        .and_utc()
        .timestamp_micros()
}

/// Facts about the month being generated.
struct MonthContext {
    index: u32,
    /// `YYYYMM`, for order ids.
    label: u32,
    start: i64,
    end: i64,
    /// End of the last generated month: later refunds are dropped.
    horizon: i64,
    days: u32,
    season: f64,
    /// `[start, end)` of the sales overlapping the month, in microseconds.
    sales: Vec<(i64, i64)>,
}

impl MonthContext {
    fn new(period: Period, index: u32, horizon: i64) -> Self {
        let calendar = period.month() as usize - 1;
        Self {
            index,
            label: period.year() as u32 * 100 + period.month(),
            start: micros_at(period.start()),
            end: micros_at(period.end()),
            horizon,
            days: (period.end() - period.start()).num_days() as u32,
            season: SEASONALITY[calendar],
            sales: calendar::sales_of_year(period.year())
                .iter()
                .map(|sale| (micros_at(sale.starts), micros_at(sale.ends)))
                .collect(),
        }
    }

    /// Whether `ts` falls in a sale of the sales calendar.
    fn in_sales(&self, ts: i64) -> bool {
        self.sales
            .iter()
            .any(|&(start, end)| start <= ts && ts < end)
    }

    /// The chance that a line ordered at `ts` is discounted.
    fn discount_share_at(&self, ts: i64) -> f64 {
        if self.in_sales(ts) {
            SALES_DISCOUNT_SHARE
        } else {
            BASE_DISCOUNT_SHARE
        }
    }
}

/// Lines of the month being generated, and refunds dated in the next one.
struct MonthLines {
    lines: Vec<Line>,
    next_month: Vec<Line>,
    next_seq: u32,
}

impl MonthLines {
    fn next_order(&mut self) -> u32 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }
}

/// Everything one customer does in one month, from its own seed.
fn customer_month(
    seed: u64,
    customer: u32,
    profile: &Profile,
    ctx: &MonthContext,
    tables: &Tables,
    out: &mut MonthLines,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(
        seed,
        STREAM_MONTH,
        u64::from(customer),
        u64::from(ctx.index),
    ));
    let lambda = f64::from(profile.rate) * ctx.season;
    let mut orders = if lambda > 0.0 {
        Poisson::new(lambda).map_or(0, |p| p.sample(&mut rng) as u32)
    } else {
        0
    };
    let first_month = ctx.index == profile.arrival;
    if first_month {
        orders = orders.max(1);
    }
    for k in 0..orders {
        // The order that makes the customer arrive is always identified.
        order(
            &mut rng,
            customer,
            profile,
            ctx,
            tables,
            first_month && k == 0,
            out,
        );
    }
    if !first_month && rng.random_bool(REFUND_ORDER_SHARE) {
        refund_order(&mut rng, customer, profile, ctx, tables, out);
    }
}

/// A channel, a store and a timestamp in the month, for one order.
fn order_place(
    rng: &mut ChaCha8Rng,
    profile: &Profile,
    ctx: &MonthContext,
    tables: &Tables,
) -> (u8, u16, i64) {
    let channel = if rng.random_bool(0.8) {
        profile.channel
    } else {
        rng.random_range(0..CHANNELS.len() as u8)
    };
    let store = if channel != STORE {
        NO_STORE
    } else if rng.random_bool(0.85) {
        profile.home_store
    } else {
        tables.stores.pick(rng) as u16
    };
    let hours = if channel == STORE {
        &tables.store_hours
    } else {
        &tables.online_hours
    };
    let day = i64::from(rng.random_range(0..ctx.days));
    let hour = hours.pick(rng) as i64;
    let ts = ctx.start
        + day * MICROS_PER_DAY
        + hour * MICROS_PER_HOUR
        + rng.random_range(0..MICROS_PER_HOUR);
    (channel, store, ts)
}

/// One sale of 1 to 6 lines, and maybe its refund.
fn order(
    rng: &mut ChaCha8Rng,
    customer: u32,
    profile: &Profile,
    ctx: &MonthContext,
    tables: &Tables,
    identified: bool,
    out: &mut MonthLines,
) {
    let seq = out.next_order();
    let (channel, store, ts) = order_place(rng, profile, ctx, tables);
    let customer = if channel == STORE && !identified && rng.random_bool(ANONYMOUS_SHARE) {
        ANONYMOUS
    } else {
        customer + 1
    };
    let mut lines = 1;
    while lines < 6 && rng.random_bool(f64::from(profile.more_lines)) {
        lines += 1;
    }
    // (product, quantity, discount percent); one line per product.
    let mut basket = [(0u16, 0i64, 0i64); 6];
    let mut used = 0;
    let discount_share = ctx.discount_share_at(ts);
    for _ in 0..lines {
        let category = if rng.random_bool(FAVOURITE_SHARE) {
            profile.favourites[rng.random_range(0..2)]
        } else {
            tables.categories.pick(rng) as u8
        };
        let product = tables.pick_product(rng, category);
        let quantity = tables.quantities.pick(rng) as i64 + 1;
        let percent = if rng.random_bool(discount_share) {
            DISCOUNT_RATES[tables.discounts.pick(rng)].0
        } else {
            0
        };
        match basket[..used].iter_mut().find(|item| item.0 == product) {
            Some(item) => item.1 += quantity,
            None => {
                basket[used] = (product, quantity, percent);
                used += 1;
            }
        }
    }
    let first = out.lines.len();
    for &(product, quantity, percent) in &basket[..used] {
        let gross = tables.product_price[product as usize] * quantity;
        let discount = (gross * percent + 50) / 100;
        out.lines.push(Line {
            ts,
            amount: gross - discount,
            discount,
            customer,
            order_month: ctx.label,
            order_seq: seq,
            quantity: quantity as i16,
            product,
            store,
            channel,
        });
    }

    if rng.random_bool(REFUND_SHARE) {
        // At most 28 days later, so never past the next month.
        let refunded_at = ts + rng.random_range(MICROS_PER_HOUR..28 * MICROS_PER_DAY);
        let whole = rng.random_bool(WHOLE_REFUND_SHARE);
        let one = rng.random_range(0..used);
        let share: f64 = rng.random();
        if refunded_at >= ctx.horizon {
            return;
        }
        let refunded = if whole { 0..used } else { one..one + 1 };
        for i in refunded {
            let sold = out.lines[first + i];
            let units = if whole {
                sold.quantity
            } else {
                (1 + (share * f64::from(sold.quantity)) as i16).min(sold.quantity)
            };
            let refund = Line {
                ts: refunded_at,
                amount: -(sold.amount * i64::from(units) / i64::from(sold.quantity)),
                discount: 0,
                quantity: -units,
                ..sold
            };
            if refunded_at < ctx.end {
                out.lines.push(refund);
            } else {
                out.next_month.push(refund);
            }
        }
    }
}

/// A refund with its own order id and only negative lines (a return without
/// the original receipt), for a customer who has bought before.
fn refund_order(
    rng: &mut ChaCha8Rng,
    customer: u32,
    profile: &Profile,
    ctx: &MonthContext,
    tables: &Tables,
    out: &mut MonthLines,
) {
    let seq = out.next_order();
    let (channel, store, ts) = order_place(rng, profile, ctx, tables);
    let lines = if rng.random_bool(0.2) { 2 } else { 1 };
    let mut previous = None;
    for _ in 0..lines {
        let category = profile.favourites[rng.random_range(0..2)];
        let product = tables.pick_product(rng, category);
        if previous == Some(product) {
            continue;
        }
        previous = Some(product);
        out.lines.push(Line {
            ts,
            amount: -tables.product_price[product as usize],
            discount: 0,
            customer: customer + 1,
            order_month: ctx.label,
            order_seq: seq,
            quantity: -1,
            product,
            store,
            channel,
        });
    }
}

/// Turns a month's lines into a Parquet file.
struct MonthWriter {
    schema: SchemaRef,
    properties: WriterProperties,
    id_digits: usize,
}

impl MonthWriter {
    /// `contacts`: customers and visitors, for the width of the ids.
    fn new(contacts: u64) -> Self {
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            // Unique values: a dictionary would only be built to be dropped.
            .set_column_dictionary_enabled(ColumnPath::from("order_id"), false)
            .set_column_dictionary_enabled(ColumnPath::from("ordered_at"), false)
            .set_column_dictionary_enabled(ColumnPath::from("occurred_at"), false)
            // Too many distinct ids for a dictionary page: the dictionary
            // would overflow and be dropped in all but small files, after
            // costing a hash lookup per value.
            .set_column_dictionary_enabled(ColumnPath::from("customer_id"), false)
            .build();
        Self {
            schema: transactions_schema(),
            properties,
            id_digits: contacts.to_string().len().max(MIN_ID_DIGITS),
        }
    }

    /// Writes `lines` (sorted) to `dir/part-0.parquet`, a reader never sees it half-written.
    fn write(&self, dir: &Path, lines: &[Line], tables: &Tables) -> Result<PathBuf, GenerateError> {
        let path = dir.join("part-0.parquet");
        let batches = lines
            .chunks(BATCH_ROWS)
            .map(|chunk| self.batch(chunk, tables));
        write_parquet(&path, self.schema.clone(), &self.properties, batches)?;
        Ok(path)
    }

    fn batch(&self, lines: &[Line], tables: &Tables) -> Result<RecordBatch, ArrowError> {
        let rows = lines.len();
        let mut customer_ids =
            Utf8Column::with_capacity(rows, rows * (self.id_digits + 1) + Label::SIZE);
        let mut order_ids = Utf8Column::with_capacity(rows, rows * 16);
        // Labels are copied 16 bytes at a time: room for the last one's padding.
        let mut product_ids = Utf8Column::with_capacity(rows, rows * 5 + Label::SIZE);
        let mut categories = Utf8Column::with_capacity(rows, rows * 11 + Label::SIZE);
        let mut channels = Utf8Column::with_capacity(rows, rows * 5 + Label::SIZE);
        let mut stores = Utf8Column::with_capacity(rows, rows * 4 + Label::SIZE);
        let mut ordered_at = Vec::with_capacity(rows);
        let mut amounts = Vec::with_capacity(rows);
        let mut quantities = Vec::with_capacity(rows);
        let mut discounts = Vec::with_capacity(rows);
        // Ids are written into reused buffers, and only when they change
        // (lines of one order are next to each other).
        let mut customer_digits = vec![b'0'; 1 + self.id_digits];
        customer_digits[0] = b'C';
        let mut customer_id = Label::new("");
        let mut last_customer = ANONYMOUS;
        // `O` + YYYYMM + 9-digit counter.
        let mut order_id = [b'0'; 16];
        order_id[0] = b'O';
        let mut last_order = (0, u32::MAX);
        for line in lines {
            if line.customer == ANONYMOUS {
                customer_ids.push_null();
            } else {
                if line.customer != last_customer {
                    write_digits(&mut customer_digits[1..], u64::from(line.customer));
                    customer_id = Label::from_bytes(&customer_digits);
                    last_customer = line.customer;
                }
                customer_ids.push_label(&customer_id);
            }
            if (line.order_month, line.order_seq) != last_order {
                write_digits(&mut order_id[1..7], u64::from(line.order_month));
                write_digits(&mut order_id[7..], u64::from(line.order_seq));
                last_order = (line.order_month, line.order_seq);
            }
            order_ids.push_fixed(&order_id);
            ordered_at.push(line.ts);
            amounts.push(i128::from(line.amount));
            quantities.push(i64::from(line.quantity));
            product_ids.push_label(&tables.product_ids[line.product as usize]);
            let category = tables.product_category[line.product as usize];
            categories.push_label(&CATEGORY_LABELS[category as usize]);
            channels.push_label(&CHANNEL_LABELS[line.channel as usize]);
            if line.store == NO_STORE {
                stores.push_null();
            } else {
                stores.push_label(&tables.store_ids[line.store as usize]);
            }
            discounts.push(i128::from(line.discount));
        }
        let columns: Vec<ArrayRef> = vec![
            customer_ids.finish()?,
            order_ids.finish()?,
            Arc::new(TimestampMicrosecondArray::from(ordered_at).with_timezone("UTC")),
            Arc::new(Decimal128Array::from(amounts).with_precision_and_scale(18, 2)?),
            Arc::new(Int64Array::from(quantities)),
            product_ids.finish()?,
            categories.finish()?,
            channels.finish()?,
            stores.finish()?,
            Arc::new(Decimal128Array::from(discounts).with_precision_and_scale(18, 2)?),
        ];
        RecordBatch::try_new(self.schema.clone(), columns)
    }
}

/// A UTF-8 column built from bytes: checked once when finished rather than value by value.
struct Utf8Column {
    offsets: Vec<i32>,
    values: Vec<u8>,
    nulls: NullBufferBuilder,
}

impl Utf8Column {
    fn with_capacity(rows: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Self {
            offsets,
            values: Vec::with_capacity(bytes),
            nulls: NullBufferBuilder::new(rows),
        }
    }

    fn push(&mut self, value: &[u8]) {
        self.values.extend_from_slice(value);
        self.offsets.push(self.values.len() as i32);
        self.nulls.append_non_null();
    }

    /// [`Self::push`] of a value of `N` bytes, copied without a call to `memcpy`.
    fn push_fixed<const N: usize>(&mut self, value: &[u8; N]) {
        self.values.extend_from_slice(value);
        self.offsets.push(self.values.len() as i32);
        self.nulls.append_non_null();
    }

    /// [`Self::push`] of a label: a fixed-size copy of its padding too,
    /// which the next value overwrites.
    fn push_label(&mut self, label: &Label) {
        let end = self.values.len() + label.len;
        self.values.extend_from_slice(&label.bytes);
        self.values.truncate(end);
        self.offsets.push(end as i32);
        self.nulls.append_non_null();
    }

    fn push_null(&mut self) {
        self.offsets.push(self.values.len() as i32);
        self.nulls.append_null();
    }

    fn finish(mut self) -> Result<ArrayRef, ArrowError> {
        let offsets = OffsetBuffer::new(ScalarBuffer::from(self.offsets));
        let array =
            StringArray::try_new(offsets, Buffer::from_vec(self.values), self.nulls.finish())?;
        Ok(Arc::new(array))
    }
}

/// A short string (an id, a category, a channel) padded to a fixed size, so
/// that columns copy it without a call to `memcpy`.
#[derive(Debug, Clone, Copy)]
struct Label {
    bytes: [u8; Label::SIZE],
    len: usize,
}

impl Label {
    const SIZE: usize = 16;

    /// Panics if `value` is longer than [`Label::SIZE`] bytes.
    const fn from_bytes(value: &[u8]) -> Self {
        assert!(value.len() <= Self::SIZE, "a label is at most 16 bytes");
        let mut bytes = [0; Self::SIZE];
        let mut i = 0;
        while i < value.len() {
            bytes[i] = value[i];
            i += 1;
        }
        Self {
            bytes,
            len: value.len(),
        }
    }

    const fn new(value: &str) -> Self {
        Self::from_bytes(value.as_bytes())
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).expect("labels are made from strings")
    }
}

/// The names of `CATEGORIES` and `CHANNELS`, as labels.
const CATEGORY_LABELS: [Label; CATEGORIES.len()] = {
    let mut labels = [Label::new(""); CATEGORIES.len()];
    let mut i = 0;
    while i < labels.len() {
        labels[i] = Label::new(CATEGORIES[i].0);
        i += 1;
    }
    labels
};
const CHANNEL_LABELS: [Label; CHANNELS.len()] = {
    let mut labels = [Label::new(""); CHANNELS.len()];
    let mut i = 0;
    while i < labels.len() {
        labels[i] = Label::new(CHANNELS[i]);
        i += 1;
    }
    labels
};

/// Writes `batches` to the Parquet file `path` through a hidden temporary
/// file and a rename, so a reader never sees a half-written file.
fn write_parquet(
    path: &Path,
    schema: SchemaRef,
    properties: &WriterProperties,
    batches: impl IntoIterator<Item = Result<RecordBatch, ArrowError>>,
) -> Result<(), GenerateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{name}.tmp"));
    fs::create_dir_all(dir).map_err(io(dir))?;
    let file = File::create(&temporary).map_err(io(&temporary))?;
    let parquet = |source| GenerateError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let mut writer = ArrowWriter::try_new(
        BufWriter::with_capacity(1 << 20, file),
        schema,
        Some(properties.clone()),
    )
    .map_err(parquet)?;
    for batch in batches {
        writer.write(&batch?).map_err(parquet)?;
    }
    let mut buffered = writer.into_inner().map_err(parquet)?;
    buffered.flush().map_err(io(&temporary))?;
    drop(buffered);
    fs::rename(&temporary, path).map_err(io(path))?;
    Ok(())
}

/// The items of `parts`, one after the other, sorted by `less`, which must
/// order by `ts` first; ties keep their order. A stable counting sort by `ts`
/// into buckets of a few items, then an insertion sort inside each
/// bucket: much cheaper than a comparison sort, and the items end up side by
/// side for the writer.
fn sort_by_time<T: Copy>(
    parts: &[&[T]],
    ts: impl Fn(&T) -> i64,
    less: impl Fn(&T, &T) -> bool,
) -> Vec<T> {
    let mut sorted = Vec::new();
    sort_by_time_into(parts, ts, less, &mut sorted);
    sorted
}

/// [`sort_by_time`] into `sorted`, whose memory is reused.
fn sort_by_time_into<T: Copy>(
    parts: &[&[T]],
    ts: impl Fn(&T) -> i64,
    less: impl Fn(&T, &T) -> bool,
    sorted: &mut Vec<T>,
) {
    sorted.clear();
    let items = || parts.iter().flat_map(|part| part.iter());
    let Some(first) = items().next() else {
        return;
    };
    let count = items().count();
    let (low, high) = items().fold((ts(first), ts(first)), |(low, high), item| {
        (low.min(ts(item)), high.max(ts(item)))
    });
    // Two to four items a bucket on average, each bucket a power-of-two span
    // of time, so that finding an item's bucket is a shift rather than a
    // 64-bit division. Any bucketing monotone in `ts` sorts alike: ties keep
    // their order whatever the buckets.
    let target = (count / 4).clamp(1, 1 << 24) as u64;
    let shift = ((high - low) as u64 / target).checked_ilog2().unwrap_or(0);
    let buckets = ((high - low) as u64 >> shift) as usize + 1;
    let bucket = |item: &T| ((ts(item) - low) as u64 >> shift) as usize;
    let mut bounds = vec![0u32; buckets + 1];
    for item in items() {
        bounds[bucket(item) + 1] += 1;
    }
    for b in 1..=buckets {
        bounds[b] += bounds[b - 1];
    }
    let mut next = bounds.clone();
    sorted.resize(count, *first);
    for item in items() {
        let slot = &mut next[bucket(item)];
        sorted[*slot as usize] = *item;
        *slot += 1;
    }
    for b in 0..buckets {
        let bucket = &mut sorted[bounds[b] as usize..bounds[b + 1] as usize];
        for j in 1..bucket.len() {
            let item = bucket[j];
            let mut k = j;
            while k > 0 && less(&item, &bucket[k - 1]) {
                bucket[k] = bucket[k - 1];
                k -= 1;
            }
            bucket[k] = item;
        }
    }
}

/// Maps an I/O error to one that names `path`.
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GenerateError + use<> {
    let path = path.to_path_buf();
    move |source| GenerateError::Io { path, source }
}

/// Writes `value` as zero-padded decimal digits filling `digits`.
fn write_digits(digits: &mut [u8], mut value: u64) {
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
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
        let report = generate(&options(dir.path(), 3000, 6)).unwrap();
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

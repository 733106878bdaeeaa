//! Web and app events beside the generated transactions: visits, product
//! views, recommendation clicks and carts, for customers and for visitors
//! who never buy. Consistent with the transactions: every web or app order
//! is preceded by a visit, a view of its first product and a cart, and carts
//! are abandoned more often during the sales.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Geometric, Poisson};

use super::{
    ANONYMOUS, BATCH_ROWS, GenerateError, Label, Line, MICROS_PER_HOUR, MonthContext, Profile,
    STORE, Tables, Utf8Column, derive_seed, sort_by_time, write_digits, write_parquet,
};

const EVENT_TYPES: [&str; 5] = [
    "visit",
    "product_view",
    "recommendation_click",
    "cart_add",
    "cart_abandon",
];
const VISIT: u8 = 0;
const PRODUCT_VIEW: u8 = 1;
const RECOMMENDATION_CLICK: u8 = 2;
const CART_ADD: u8 = 3;
const CART_ABANDON: u8 = 4;
/// `Event::product` of an event about no product (a visit).
const NO_PRODUCT: u16 = u16::MAX;
const MICROS_PER_MINUTE: i64 = 60_000_000;

/// One visitor for every this many customers: people seen only in events.
pub(super) const CUSTOMERS_PER_VISITOR: u64 = 10;
/// Chance that a browsing session has a recommendation click.
const RECOMMENDATION_SHARE: f64 = 0.15;
/// Chance that a browsing session leaves a cart, outside and during the sales.
const ABANDON_SHARE: f64 = 0.12;
const SALES_ABANDON_SHARE: f64 = 0.35;

const STREAM_EVENTS: u64 = 4;
const STREAM_VISITOR: u64 = 5;
const STREAM_ORDER_EVENTS: u64 = 6;

/// One event, without any heap allocation.
#[derive(Debug, Clone, Copy)]
pub(super) struct Event {
    ts: i64,
    /// Contact number: customer index + 1, or a visitor's number after the customers.
    contact: u32,
    kind: u8,
    product: u16,
}

/// A visitor's browsing habits: they never buy.
#[derive(Debug, Clone, Copy)]
pub(super) struct Visitor {
    /// Browsing sessions per month while around.
    sessions: f32,
    arrival: u32,
    leave: u32,
}

impl Visitor {
    pub(super) fn draw(seed: u64, visitor: u32, months: u32) -> Self {
        let mut rng =
            ChaCha8Rng::seed_from_u64(derive_seed(seed, STREAM_VISITOR, u64::from(visitor), 0));
        let arrival = rng.random_range(0..months);
        // Most browse a little; some come back again and again without buying.
        let sessions = if rng.random_bool(0.7) {
            rng.random_range(0.5..3.0)
        } else {
            rng.random_range(6.0..16.0)
        };
        let months_around = Geometric::new(0.2)
            .map_or(0, |g| g.sample(&mut rng))
            .saturating_add(1);
        let leave = u64::from(arrival)
            .saturating_add(months_around)
            .min(u64::from(months)) as u32;
        Self {
            sessions,
            arrival,
            leave,
        }
    }
}

/// Browsing sessions per month of a customer, by where they stand.
fn customer_sessions(profile: &Profile, month: u32) -> f64 {
    if profile.active_in(month) {
        0.6 + 1.5 * f64::from(profile.rate).min(3.0)
    } else if month < profile.arrival && month + 2 >= profile.arrival {
        // Looking around before the first purchase.
        0.8
    } else if month >= profile.leave && month < profile.leave + 12 {
        // Gone, but still browsing now and then.
        0.4
    } else {
        0.0
    }
}

/// The events of one month: the browsing of every customer and visitor, and
/// the visit, view and cart before each web or app order of `lines`.
pub(super) fn month_events(
    seed: u64,
    profiles: &[Profile],
    visitors: &[Visitor],
    ctx: &MonthContext,
    tables: &Tables,
    lines: &[Line],
) -> Vec<Event> {
    let mut events = Vec::new();
    for (c, profile) in profiles.iter().enumerate() {
        let sessions = customer_sessions(profile, ctx.index);
        browse(seed, c as u32 + 1, sessions, ctx, tables, &mut events);
    }
    for (v, visitor) in visitors.iter().enumerate() {
        if visitor.arrival <= ctx.index && ctx.index < visitor.leave {
            let contact = profiles.len() as u32 + v as u32 + 1;
            browse(
                seed,
                contact,
                f64::from(visitor.sessions),
                ctx,
                tables,
                &mut events,
            );
        }
    }
    // The first line of each identified web or app sale (lines of an order
    // are next to each other; refund lines are negative).
    let mut last_order = None;
    for line in lines {
        let order = (line.order_month, line.order_seq);
        if line.customer == ANONYMOUS
            || line.channel == STORE
            || line.amount <= 0
            || last_order == Some(order)
        {
            continue;
        }
        last_order = Some(order);
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(
            seed,
            STREAM_ORDER_EVENTS,
            u64::from(line.order_month),
            u64::from(line.order_seq),
        ));
        let visit = line.ts - rng.random_range(5 * MICROS_PER_MINUTE..40 * MICROS_PER_MINUTE);
        let viewed = line.ts - rng.random_range(MICROS_PER_MINUTE..5 * MICROS_PER_MINUTE);
        for (ts, kind, product) in [
            (visit, VISIT, NO_PRODUCT),
            (viewed, PRODUCT_VIEW, line.product),
            (line.ts - MICROS_PER_MINUTE / 2, CART_ADD, line.product),
        ] {
            events.push(Event {
                ts,
                contact: line.customer,
                kind,
                product,
            });
        }
    }
    sort_by_time(
        &[&events],
        |e| e.ts,
        |a, b| (a.ts, a.contact, a.kind) < (b.ts, b.contact, b.kind),
    )
}

/// Browsing sessions of one contact in the month: a visit, one to three
/// product views, sometimes a recommendation click, sometimes an abandoned cart.
fn browse(
    seed: u64,
    contact: u32,
    sessions_per_month: f64,
    ctx: &MonthContext,
    tables: &Tables,
    events: &mut Vec<Event>,
) {
    if sessions_per_month <= 0.0 {
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(
        seed,
        STREAM_EVENTS,
        u64::from(contact),
        u64::from(ctx.index),
    ));
    let sessions = Poisson::new(sessions_per_month).map_or(0, |p| p.sample(&mut rng) as u32);
    for _ in 0..sessions {
        let ts = ctx.start
            + i64::from(rng.random_range(0..ctx.days)) * 24 * MICROS_PER_HOUR
            + tables.online_hours.pick(&mut rng) as i64 * MICROS_PER_HOUR
            + rng.random_range(0..MICROS_PER_HOUR / 2);
        let mut push = |minutes: i64, kind: u8, product: u16| {
            events.push(Event {
                ts: ts + minutes * MICROS_PER_MINUTE,
                contact,
                kind,
                product,
            })
        };
        push(0, VISIT, NO_PRODUCT);
        let category = tables.categories.pick(&mut rng) as u8;
        let views = rng.random_range(1..=3);
        let mut product = NO_PRODUCT;
        for k in 0..views {
            product = tables.pick_product(&mut rng, category);
            push(1 + 2 * k, PRODUCT_VIEW, product);
        }
        if rng.random_bool(RECOMMENDATION_SHARE) {
            let recommended = tables.pick_product(&mut rng, category);
            push(8, RECOMMENDATION_CLICK, recommended);
        }
        let abandon = if ctx.in_sales(ts) {
            SALES_ABANDON_SHARE
        } else {
            ABANDON_SHARE
        };
        if rng.random_bool(abandon) {
            push(10, CART_ADD, product);
            push(40, CART_ABANDON, product);
        }
    }
}

fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new(
            "occurred_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("product_id", DataType::Utf8, true),
    ]))
}

fn events_batch(
    schema: &SchemaRef,
    events: &[Event],
    tables: &Tables,
    id_digits: usize,
) -> Result<RecordBatch, ArrowError> {
    let rows = events.len();
    let mut customer_ids = Utf8Column::with_capacity(rows, rows * (id_digits + 1));
    let mut event_types = Utf8Column::with_capacity(rows, rows * 12);
    let mut product_ids = Utf8Column::with_capacity(rows, rows * 5 + Label::SIZE);
    let mut occurred_at = Vec::with_capacity(rows);
    let mut customer_id = vec![b'0'; 1 + id_digits];
    customer_id[0] = b'C';
    let mut last_contact = u32::MAX;
    for event in events {
        if event.contact != last_contact {
            write_digits(&mut customer_id[1..], u64::from(event.contact));
            last_contact = event.contact;
        }
        customer_ids.push(&customer_id);
        event_types.push(EVENT_TYPES[event.kind as usize].as_bytes());
        occurred_at.push(event.ts);
        if event.product == NO_PRODUCT {
            product_ids.push_null();
        } else {
            product_ids.push_label(&tables.product_ids[event.product as usize]);
        }
    }
    let columns: Vec<ArrayRef> = vec![
        customer_ids.finish()?,
        event_types.finish()?,
        Arc::new(TimestampMicrosecondArray::from(occurred_at).with_timezone("UTC")),
        product_ids.finish()?,
    ];
    RecordBatch::try_new(schema.clone(), columns)
}

/// Writes one month of events to `dir/part-0.parquet`.
pub(super) fn write_events(
    dir: &Path,
    events: &[Event],
    tables: &Tables,
    id_digits: usize,
    properties: &WriterProperties,
) -> Result<PathBuf, GenerateError> {
    let schema = events_schema();
    let path = dir.join("part-0.parquet");
    let batches = events
        .chunks(BATCH_ROWS)
        .map(|chunk| events_batch(&schema, chunk, tables, id_digits));
    write_parquet(&path, schema.clone(), properties, batches)?;
    Ok(path)
}

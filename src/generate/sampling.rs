//! What `segments generate` draws: the catalogue, the customer profiles and
//! each month's orders and refunds, from seeded ChaCha8 streams.

use super::*;

/// The Arrow schema of the generated files.
pub(super) fn transactions_schema() -> SchemaRef {
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
pub(super) struct Line {
    /// `ordered_at`, microseconds since the epoch (UTC).
    pub(super) ts: i64,
    /// Cents, negative for a refund.
    pub(super) amount: i64,
    /// Cents, 0 when none.
    pub(super) discount: i64,
    /// `ANONYMOUS` or customer index + 1.
    pub(super) customer: u32,
    /// Month of the order id, `YYYYMM`.
    pub(super) order_month: u32,
    /// Counter of the order id within its month.
    pub(super) order_seq: u32,
    /// Negative for a refund.
    pub(super) quantity: i16,
    pub(super) product: u16,
    /// `NO_STORE` or store index.
    pub(super) store: u16,
    pub(super) channel: u8,
}

/// A customer's stable traits, drawn once from `(seed, customer)`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Profile {
    /// Orders per month while active (before seasonality).
    pub(super) rate: f32,
    /// Chance of one more line in a basket (1 to 6 lines).
    pub(super) more_lines: f32,
    /// First active month (index from the start); the first order is in it.
    pub(super) arrival: u32,
    /// First month index after churn (exclusive end of activity).
    pub(super) leave: u32,
    pub(super) home_store: u16,
    pub(super) favourites: [u8; 2],
    pub(super) channel: u8,
}

impl Profile {
    pub(super) fn draw(seed: u64, customer: u32, months: u32, tables: &Tables) -> Self {
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

    pub(super) fn active_in(&self, month: u32) -> bool {
        self.arrival <= month && month < self.leave
    }
}

/// The catalog, the stores and the weight tables, drawn once from the seed.
pub(super) struct Tables {
    pub(super) product_ids: Vec<Label>,
    pub(super) product_category: Vec<u8>,
    pub(super) product_price: Vec<i64>,
    pub(super) products_by_category: Vec<Vec<u16>>,
    pub(super) store_ids: Vec<Label>,
    pub(super) stores: Weighted,
    pub(super) categories: Weighted,
    pub(super) channels: Weighted,
    pub(super) store_hours: Weighted,
    pub(super) online_hours: Weighted,
    pub(super) discounts: Weighted,
    pub(super) quantities: Weighted,
}

impl Tables {
    pub(super) fn new(seed: u64) -> Self {
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
    pub(super) fn pick_product(&self, rng: &mut ChaCha8Rng, category: u8) -> u16 {
        let products = &self.products_by_category[category as usize];
        let u: f64 = rng.random();
        products[((u * u * products.len() as f64) as usize).min(products.len() - 1)]
    }
}

/// Draws indices with fixed weights in constant time, from a lookup table of
/// `2^WEIGHT_BITS` slots (weights are rounded to a slot; a zero weight is never drawn).
pub(super) struct Weighted {
    pub(super) slots: Vec<u16>,
}

pub(super) const WEIGHT_BITS: u32 = 12;

impl Weighted {
    pub(super) fn new(weights: impl IntoIterator<Item = u32>) -> Self {
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

    pub(super) fn pick(&self, rng: &mut ChaCha8Rng) -> usize {
        usize::from(self.slots[(rng.next_u32() >> (32 - WEIGHT_BITS)) as usize])
    }
}

/// splitmix64 finaliser.
pub(super) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed for one stream of draws, independent of the order anything is generated in.
pub(super) fn derive_seed(seed: u64, stream: u64, a: u64, b: u64) -> u64 {
    mix(mix(mix(seed ^ mix(stream)) ^ a) ^ b)
}

/// Microseconds since the epoch at midnight UTC of `date`.
pub(super) fn micros_at(date: chrono::NaiveDate) -> i64 {
    date.and_time(chrono::NaiveTime::MIN)
        .and_utc()
        .timestamp_micros()
}

/// Facts about the month being generated.
pub(super) struct MonthContext {
    pub(super) index: u32,
    /// `YYYYMM`, for order ids.
    pub(super) label: u32,
    pub(super) start: i64,
    pub(super) end: i64,
    /// End of the last generated month: later refunds are dropped.
    pub(super) horizon: i64,
    pub(super) days: u32,
    pub(super) season: f64,
    /// `[start, end)` of the sales overlapping the month, in microseconds.
    pub(super) sales: Vec<(i64, i64)>,
}

impl MonthContext {
    pub(super) fn new(period: Period, index: u32, horizon: i64) -> Self {
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
    pub(super) fn in_sales(&self, ts: i64) -> bool {
        self.sales
            .iter()
            .any(|&(start, end)| start <= ts && ts < end)
    }

    /// The chance that a line ordered at `ts` is discounted.
    pub(super) fn discount_share_at(&self, ts: i64) -> f64 {
        if self.in_sales(ts) {
            SALES_DISCOUNT_SHARE
        } else {
            BASE_DISCOUNT_SHARE
        }
    }
}

/// Lines of the month being generated, and refunds dated in the next one.
pub(super) struct MonthLines {
    pub(super) lines: Vec<Line>,
    pub(super) next_month: Vec<Line>,
    pub(super) next_seq: u32,
}

impl MonthLines {
    pub(super) fn next_order(&mut self) -> u32 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }
}

/// Everything one customer does in one month, from its own seed.
pub(super) fn customer_month(
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
pub(super) fn order_place(
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
pub(super) fn order(
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
pub(super) fn refund_order(
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

//! `segments generate --process btyd`: transactions drawn from the models the
//! `predict:` block fits, with known parameters, so that a run can be checked
//! to recover them (README, "Predictive scores").
//!
//! Each customer makes a first purchase at a uniformly drawn instant of the
//! generated months, then, while alive, buys as a Poisson process of rate
//! λ ~ Gamma(r, α) per day and drops out after each repeat purchase with
//! probability p ~ Beta(a, b) (BG/NBD; with the modified variant also at the
//! first purchase). Each purchase is one order of one line worth
//! z ~ Gamma(p, ν) with ν ~ Gamma(q, γ) per customer (Gamma-Gamma). There are
//! no refunds, anonymous tickets or events: the process is exactly the
//! models', except that the models count purchase *days*: two purchases on
//! one day count once, which biases the fitted α up by about (r + 1) / (2α)
//! (2% with the defaults r = 0.6, α = 40 days). Products and the sales calendar are written as by the retail
//! simulation, so `config/local.yaml` works unchanged.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution, Exp, Gamma};

use super::{
    GenerateError, GenerateOptions, GenerateReport, Line, MICROS_PER_DAY, MonthWriter, NO_STORE,
    Tables, calendar, check_options, derive_seed, micros_at, sort_by_time,
};
use crate::predict::bgnbd::{self, Variant};
use crate::predict::gamma_gamma;

/// Seed stream of the BTYD customers (the retail simulation uses 1 to 3).
const STREAM_BTYD: u64 = 4;

/// The known parameters: α in days, γ in currency units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BtydParams {
    pub purchase: bgnbd::Params,
    pub spend: gamma_gamma::Params,
}

impl Default for BtydParams {
    fn default() -> Self {
        BtydParams {
            purchase: bgnbd::Params {
                r: 0.6,
                alpha: 40.0,
                a: 0.9,
                b: 4.0,
                variant: Variant::BgNbd,
            },
            spend: gamma_gamma::Params {
                p: 4.0,
                q: 3.0,
                gamma: 60.0,
            },
        }
    }
}

fn invalid(message: String) -> GenerateError {
    GenerateError::InvalidOptions(message)
}

/// One customer's purchases: (timestamp µs, amount in cents).
fn customer_purchases(
    seed: u64,
    customer: u32,
    params: &BtydParams,
    start: i64,
    end: i64,
) -> Result<Vec<(i64, i64)>, GenerateError> {
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, STREAM_BTYD, u64::from(customer), 0));
    let p = &params.purchase;
    let s = &params.spend;
    let bad = |e: &dyn std::fmt::Display| invalid(format!("BTYD parameters: {e}"));
    let lambda = Gamma::new(p.r, 1.0 / p.alpha)
        .map_err(|e| bad(&e))?
        .sample(&mut rng);
    let dropout = Beta::new(p.a, p.b).map_err(|e| bad(&e))?.sample(&mut rng);
    let nu = Gamma::new(s.q, 1.0 / s.gamma)
        .map_err(|e| bad(&e))?
        .sample(&mut rng);
    let value = Gamma::new(s.p, 1.0 / nu.max(1e-300)).map_err(|e| bad(&e))?;
    let amount = |rng: &mut ChaCha8Rng| ((value.sample(rng) * 100.0).round() as i64).max(1);
    let first = start + (rng.random::<f64>() * (end - start) as f64) as i64;
    let mut purchases = vec![(first, amount(&mut rng))];
    if p.variant == Variant::Modified && rng.random_bool(dropout) {
        return Ok(purchases);
    }
    let Ok(gap) = Exp::new(lambda) else {
        return Ok(purchases);
    };
    let mut t = first as f64;
    loop {
        t += gap.sample(&mut rng) * MICROS_PER_DAY as f64;
        if t >= end as f64 {
            return Ok(purchases);
        }
        purchases.push((t as i64, amount(&mut rng)));
        if rng.random_bool(dropout) {
            return Ok(purchases);
        }
    }
}

/// Writes `options.months` months of BTYD transactions (same layout and
/// schema as [`super::generate`]); `options.events` is ignored (no events).
pub fn generate_btyd(
    options: &GenerateOptions,
    params: &BtydParams,
) -> Result<GenerateReport, GenerateError> {
    let last = check_options(options)?;
    let p = &params.purchase;
    let s = &params.spend;
    for (name, v) in [
        ("r", p.r),
        ("alpha", p.alpha),
        ("a", p.a),
        ("b", p.b),
        ("p", s.p),
        ("q", s.q),
        ("gamma", s.gamma),
    ] {
        if !(v.is_finite() && v > 0.0) {
            return Err(invalid(format!(
                "BTYD parameter {name} = {v}: every parameter must be a positive number"
            )));
        }
    }
    let tables = Tables::new(options.seed);
    let writer = MonthWriter::new(options.customers);
    let start = micros_at(options.start.start());
    let end = micros_at(last.end());
    let mut report = GenerateReport::default();
    let (_, products) = calendar::write_products(&options.out_dir, &tables, &writer.properties)?;
    report.products = products;
    let (_, sales) = calendar::write_sales_calendar(
        &options.out_dir,
        options.start.year() - 1,
        last.year(),
        &writer.properties,
    )?;
    report.sales = sales;

    // Purchases per month, in customer order.
    let bounds: Vec<i64> = (0..=options.months)
        .map(|i| micros_at(options.start.add_months(i as i32).start()))
        .collect();
    let count = options.months as usize;
    let mut months: Vec<Vec<(u32, i64, i64)>> = vec![Vec::new(); count];
    for c in 0..options.customers as u32 {
        for (ts, cents) in customer_purchases(options.seed, c, params, start, end)? {
            let index = bounds.partition_point(|&b| b <= ts).saturating_sub(1);
            months[index.min(count - 1)].push((c, ts, cents));
        }
    }
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(options.seed, STREAM_BTYD, u64::MAX, 0));
    for (index, purchases) in months.into_iter().enumerate() {
        let period = options.start.add_months(index as i32);
        let label = period.year() as u32 * 100 + period.month();
        let lines: Vec<Line> = purchases
            .iter()
            .enumerate()
            .map(|(seq, &(c, ts, cents))| {
                let category = tables.categories.pick(&mut rng) as u8;
                Line {
                    ts,
                    amount: cents,
                    discount: 0,
                    customer: c + 1,
                    order_month: label,
                    order_seq: seq as u32,
                    quantity: 1,
                    product: tables.pick_product(&mut rng, category),
                    store: NO_STORE,
                    channel: 0,
                }
            })
            .collect();
        let lines = sort_by_time(&[&lines], |line| line.ts, |a, b| a.ts < b.ts);
        report.rows += lines.len() as u64;
        report.orders += lines.len() as u64;
        let dir = options
            .out_dir
            .join("transactions")
            .join(format!("month={period}"));
        report.files.push(writer.write(&dir, &lines, &tables)?);
    }
    Ok(report)
}

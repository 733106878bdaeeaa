//! The customer file of the generated data (`<out>/customers/part-0.parquet`):
//! one row per customer and per visitor (contacts who never buy) with the
//! attributes a retailer's CRM exports — region, city, age band, market
//! (B2C / B2B and company size), loyalty programme, consent flags — and a
//! second row, dated by `valid_from`, for the customers who moved.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{BooleanArray, Date32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::sampling::{Profile, derive_seed};
use super::writer::write_parquet;
use super::{GenerateError, GenerateOptions};

const STREAM_ATTRIBUTES: u64 = 8;

/// (city, region): each store is in one of them (store `s` in
/// `CITIES[s % len]`), so a customer lives where their home store is.
pub const CITIES: [(&str, &str); 14] = [
    ("Paris", "Île-de-France"),
    ("Lyon", "Auvergne-Rhône-Alpes"),
    ("Marseille", "Provence-Alpes-Côte d'Azur"),
    ("Toulouse", "Occitanie"),
    ("Bordeaux", "Nouvelle-Aquitaine"),
    ("Lille", "Hauts-de-France"),
    ("Nantes", "Pays de la Loire"),
    ("Strasbourg", "Grand Est"),
    ("Boulogne-Billancourt", "Île-de-France"),
    ("Grenoble", "Auvergne-Rhône-Alpes"),
    ("Nice", "Provence-Alpes-Côte d'Azur"),
    ("Montpellier", "Occitanie"),
    ("Rennes", "Bretagne"),
    ("Versailles", "Île-de-France"),
];

/// Age bands of B2C customers and their shares.
pub const AGE_BANDS: [(&str, f64); 6] = [
    ("18-24", 0.10),
    ("25-34", 0.22),
    ("35-44", 0.24),
    ("45-54", 0.20),
    ("55-64", 0.14),
    ("65+", 0.10),
];

/// Share of B2B accounts among customers.
pub const B2B_SHARE: f64 = 0.08;
const COMPANY_SIZES: [&str; 4] = ["1-9", "10-49", "50-249", "250+"];
/// Share of customers in the loyalty programme.
pub const LOYALTY_SHARE: f64 = 0.65;
/// Share of customers who moved during the history (a second row).
pub const MOVED_SHARE: f64 = 0.06;

/// One row of the file.
#[derive(Clone)]
struct Row {
    contact: u64,
    valid_from: Option<i32>,
    city: usize,
    age_band: Option<&'static str>,
    company_size: Option<&'static str>,
    loyalty_member: bool,
    email_opt_in: bool,
    sms_opt_in: bool,
}

/// The rows of one contact: its attributes, and a later row when it moved.
fn rows_of(
    options: &GenerateOptions,
    contact: u64,
    home_city: Option<usize>,
    arrival: u32,
) -> Vec<Row> {
    let mut rng =
        ChaCha8Rng::seed_from_u64(derive_seed(options.seed, STREAM_ATTRIBUTES, contact, 0));
    let city = home_city.unwrap_or_else(|| rng.random_range(0..CITIES.len()));
    let b2b = home_city.is_some() && rng.random_bool(B2B_SHARE);
    let age_band = (!b2b).then(|| {
        let draw: f64 = rng.random();
        let mut total = 0.0;
        AGE_BANDS
            .iter()
            .find(|(_, share)| {
                total += share;
                draw < total
            })
            .map_or("65+", |(band, _)| band)
    });
    let company_size = b2b.then(|| COMPANY_SIZES[rng.random_range(0..COMPANY_SIZES.len())]);
    let first = Row {
        contact,
        valid_from: None,
        city,
        age_band,
        company_size,
        loyalty_member: rng.random_bool(LOYALTY_SHARE),
        email_opt_in: rng.random_bool(0.7),
        sms_opt_in: rng.random_bool(0.4),
    };
    let moves = home_city.is_some() && arrival + 1 < options.months && rng.random_bool(MOVED_SHARE);
    if !moves {
        return vec![first];
    }
    // Moved at the start of a month after their arrival, to another region.
    let month = options
        .start
        .add_months(rng.random_range(arrival + 1..options.months) as i32);
    let mut new_city = rng.random_range(0..CITIES.len());
    while CITIES[new_city].1 == CITIES[city].1 {
        new_city = (new_city + 1) % CITIES.len();
    }
    let moved = Row {
        valid_from: Some(days_since_epoch(month.start())),
        city: new_city,
        ..first.clone()
    };
    vec![first, moved]
}

fn days_since_epoch(date: chrono::NaiveDate) -> i32 {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date");
    (date - epoch).num_days() as i32
}

/// Write `<out>/customers/part-0.parquet`; returns its path and its rows.
pub(super) fn write_customers(
    options: &GenerateOptions,
    profiles: &[Profile],
    visitors: u64,
    id_digits: usize,
    properties: &WriterProperties,
) -> Result<(PathBuf, u64), GenerateError> {
    let mut rows = Vec::new();
    for (index, profile) in profiles.iter().enumerate() {
        let home = profile.home_store as usize % CITIES.len();
        rows.extend(rows_of(
            options,
            index as u64 + 1,
            Some(home),
            profile.arrival,
        ));
    }
    let customers = profiles.len() as u64;
    for visitor in 0..visitors {
        rows.extend(rows_of(options, customers + visitor + 1, None, 0));
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Utf8, false),
        Field::new("valid_from", DataType::Date32, true),
        Field::new("country", DataType::Utf8, false),
        Field::new("region", DataType::Utf8, false),
        Field::new("city", DataType::Utf8, false),
        Field::new("age_band", DataType::Utf8, true),
        Field::new("market", DataType::Utf8, false),
        Field::new("company_size", DataType::Utf8, true),
        Field::new("loyalty_member", DataType::Boolean, false),
        Field::new("email_opt_in", DataType::Boolean, false),
        Field::new("sms_opt_in", DataType::Boolean, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter()
                    .map(|r| format!("C{:0width$}", r.contact, width = id_digits)),
            )),
            Arc::new(Date32Array::from_iter(rows.iter().map(|r| r.valid_from))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|_| "FR"))),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| CITIES[r.city].1),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| CITIES[r.city].0),
            )),
            Arc::new(StringArray::from_iter(rows.iter().map(|r| r.age_band))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| {
                if r.company_size.is_some() {
                    "b2b"
                } else {
                    "b2c"
                }
            }))),
            Arc::new(StringArray::from_iter(rows.iter().map(|r| r.company_size))),
            Arc::new(BooleanArray::from_iter(
                rows.iter().map(|r| Some(r.loyalty_member)),
            )),
            Arc::new(BooleanArray::from_iter(
                rows.iter().map(|r| Some(r.email_opt_in)),
            )),
            Arc::new(BooleanArray::from_iter(
                rows.iter().map(|r| Some(r.sms_opt_in)),
            )),
        ],
    );
    let path = customers_path(&options.out_dir);
    let count = rows.len() as u64;
    write_parquet(&path, schema, properties, [batch])?;
    Ok((path, count))
}

fn customers_path(out_dir: &Path) -> PathBuf {
    out_dir.join("customers").join("part-0.parquet")
}

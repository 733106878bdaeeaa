//! The sales calendar and the product catalog written beside the generated
//! transactions: the sales are the dates when generated orders are mostly
//! discounted, the catalog the products the lines refer to.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Decimal128Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::{Datelike, Duration, NaiveDate, Weekday};
use parquet::file::properties::WriterProperties;

use super::{CATEGORIES, GenerateError, Label, Tables, micros_at, write_parquet};

/// One sale of the calendar: `[starts, ends)` in local dates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Sale {
    pub kind: &'static str,
    pub name: String,
    pub starts: NaiveDate,
    pub ends: NaiveDate,
}

/// The `n`-th (1-based) `weekday` of a month.
fn nth_weekday(year: i32, month: u32, weekday: Weekday, n: u8) -> NaiveDate {
    NaiveDate::from_weekday_of_month_opt(year, month, weekday, n).expect("exists for n <= 4")
}

/// The sales of a year, as French retailers run them: winter sales from the
/// second Wednesday of January and summer sales from the last Wednesday of
/// June, four weeks each, and Black Friday to Cyber Monday.
pub(super) fn sales_of_year(year: i32) -> Vec<Sale> {
    let winter = nth_weekday(year, 1, Weekday::Wed, 2);
    let june_last = NaiveDate::from_ymd_opt(year, 6, 30).expect("valid date");
    let summer = june_last
        - Duration::days(i64::from(
            (7 + june_last.weekday().num_days_from_monday() - Weekday::Wed.num_days_from_monday())
                % 7,
        ));
    let black_friday = nth_weekday(year, 11, Weekday::Thu, 4) + Duration::days(1);
    vec![
        Sale {
            kind: "winter_sales",
            name: format!("winter_sales_{year}"),
            starts: winter,
            ends: winter + Duration::days(28),
        },
        Sale {
            kind: "summer_sales",
            name: format!("summer_sales_{year}"),
            starts: summer,
            ends: summer + Duration::days(28),
        },
        Sale {
            kind: "black_friday",
            name: format!("black_friday_{year}"),
            starts: black_friday,
            ends: black_friday + Duration::days(4),
        },
    ]
}

fn utc() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// Writes `<out_dir>/sales_calendar/part-0.parquet` with the sales of the
/// years `first_year..=last_year`. Returns the file and its number of rows.
pub(super) fn write_sales_calendar(
    out_dir: &Path,
    first_year: i32,
    last_year: i32,
    properties: &WriterProperties,
) -> Result<(PathBuf, u64), GenerateError> {
    let sales: Vec<Sale> = (first_year..=last_year).flat_map(sales_of_year).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("starts_at", utc(), false),
        Field::new("ends_at", utc(), false),
        Field::new("kind", DataType::Utf8, false),
    ]));
    let timestamps = |f: fn(&Sale) -> NaiveDate| -> ArrayRef {
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(sales.iter().map(|s| micros_at(f(s))))
                .with_timezone("UTC"),
        )
    };
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(
                sales.iter().map(|s| s.name.as_str()),
            )),
            timestamps(|s| s.starts),
            timestamps(|s| s.ends),
            Arc::new(StringArray::from_iter_values(sales.iter().map(|s| s.kind))),
        ],
    );
    let path = out_dir.join("sales_calendar").join("part-0.parquet");
    write_parquet(&path, schema, properties, [batch])?;
    Ok((path, sales.len() as u64))
}

/// Writes `<out_dir>/products/part-0.parquet`: every product of the catalog
/// with its category and list price. Returns the file and its number of rows.
pub(super) fn write_products(
    out_dir: &Path,
    tables: &Tables,
    properties: &WriterProperties,
) -> Result<(PathBuf, u64), GenerateError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("product_id", DataType::Utf8, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("list_price", DataType::Decimal128(18, 2), false),
    ]));
    let batch =
        Decimal128Array::from_iter_values(tables.product_price.iter().map(|&p| i128::from(p)))
            .with_precision_and_scale(18, 2)
            .and_then(|prices| {
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(StringArray::from_iter_values(
                            tables.product_ids.iter().map(Label::as_str),
                        )),
                        Arc::new(StringArray::from_iter_values(
                            tables
                                .product_category
                                .iter()
                                .map(|&c| CATEGORIES[c as usize].0),
                        )),
                        Arc::new(prices),
                    ],
                )
            });
    let path = out_dir.join("products").join("part-0.parquet");
    write_parquet(&path, schema, properties, [batch])?;
    Ok((path, tables.product_ids.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn sales_dates_follow_the_french_calendar() {
        // Checked on a calendar: 2025-01-08 is the second Wednesday of
        // January, 2025-06-25 the last Wednesday of June, Thanksgiving 2025 is
        // Thursday 27 November.
        let sales = sales_of_year(2025);
        assert_eq!(
            (sales[0].starts, sales[0].ends),
            (date(2025, 1, 8), date(2025, 2, 5))
        );
        assert_eq!(
            (sales[1].starts, sales[1].ends),
            (date(2025, 6, 25), date(2025, 7, 23))
        );
        assert_eq!(
            (sales[2].starts, sales[2].ends),
            (date(2025, 11, 28), date(2025, 12, 2))
        );
        // 2024: 10 January, 26 June, Thanksgiving on 28 November.
        let sales = sales_of_year(2024);
        assert_eq!(sales[0].starts, date(2024, 1, 10));
        assert_eq!(sales[1].starts, date(2024, 6, 26));
        assert_eq!(sales[2].starts, date(2024, 11, 29));
        assert_eq!(sales[1].name, "summer_sales_2024");
    }
}

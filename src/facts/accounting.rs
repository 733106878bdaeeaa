//! The row accounting and the exact duplicate lines of `transactions` per
//! month, kept beside the month facts of an incremental job:
//!
//! ```text
//! <warehouse>/<job>/_facts/input-accounting/month=YYYY-MM/part-<run id>-<n>.parquet
//! <warehouse>/<job>/_facts/input-accounting/month=YYYY-MM/_fingerprint.json
//! ```
//!
//! A run's accounting (`sql/outputs/input_checks.sql`) counts every line of
//! the input, and its duplicate check looks at every line. Both are per
//! month of the local date: two copies of a line share their instant, so a
//! month's duplicates are among that month's lines. So a closed month whose
//! files have not changed is read from here, under the same fingerprint
//! rules as the month facts (its files, the mapping, the quality rules, the
//! erasures, the accounting's SQL; no identity merges, which apply after
//! it), and the pass reads the lines of the other months and the lines
//! without a date (never stored: any file may hold them).

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{Datelike, NaiveDate};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Date32Type, Int32Type};
use datafusion::common::Column;
use datafusion::logical_expr::Expr;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use futures::StreamExt;

use super::fingerprint::{self, Fingerprint};
use super::shape::{date, instants_near, month_ranges};
use super::{FactsError, Sources, store};
use crate::config::Config;
use crate::model::Period;
use crate::storage::Warehouse;

/// The folder of the accounting under `_facts/` (not a valid step name).
const STEP: &str = "input-accounting";
/// The column that marks a file of duplicate lines (`__copies`).
const COPIES: &str = "__copies";

/// The accounting of one month: the rows of `input_checks.sql` with the
/// month's `month_index`, and the month's affected duplicate rows (see
/// `inputs::duplicates`).
#[derive(Debug, Default)]
pub struct MonthAccounting {
    pub rows: Vec<RecordBatch>,
    pub duplicates: Vec<RecordBatch>,
}

/// Which months of the input a run reads from the warehouse, and which it
/// counts from the lines.
#[derive(Debug)]
pub struct InputMonths {
    /// Every month some input file may hold, with its fingerprint.
    fingerprints: BTreeMap<NaiveDate, Fingerprint>,
    /// The months read from the warehouse.
    stored: BTreeMap<NaiveDate, MonthAccounting>,
}

impl InputMonths {
    /// The stored accounting of the closed months whose fingerprint matches
    /// (before `recompute_from`, when given), counted by the SQL
    /// `definition`; `None` when some input file has no statistics of
    /// `ordered_at` (any month may be in it: every line is counted).
    #[allow(clippy::too_many_arguments)]
    pub async fn load(
        config: &Config,
        warehouse: &Warehouse,
        job: &str,
        sources: &Sources<'_>,
        definition: &str,
        recompute_from: Option<NaiveDate>,
        clock: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<InputMonths>, FactsError> {
        let Some(months) = sources.coverage.months(None) else {
            return Ok(None);
        };
        let context =
            fingerprint::context_of(config, &format!("row accounting {definition}"), sources);
        let fingerprints = fingerprint::of_months(&context, &months);
        // Only closed months are ever stored: the others (a line dated
        // years ahead by mistake, say) are not looked for.
        let trusted = fingerprint::trusted(&fingerprints, recompute_from, clock);
        let valid = store::valid(warehouse, job, STEP, &trusted).await?;
        let read = futures::stream::iter(valid.into_iter().map(|(month, found)| async move {
            read_month(warehouse, month, &found.keys)
                .await
                .map(|accounting| (month, accounting))
        }))
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
        let stored: BTreeMap<NaiveDate, MonthAccounting> = read.into_iter().flatten().collect();
        tracing::info!(
            reused = stored.len(),
            counted = fingerprints.len() - stored.len(),
            "Row accounting by month ready."
        );
        Ok(Some(InputMonths {
            fingerprints,
            stored,
        }))
    }

    /// The accounting read from the warehouse, month by month.
    pub fn stored(&self) -> impl Iterator<Item = &MonthAccounting> {
        self.stored.values()
    }

    /// The rows of the checked view the pass must count: the lines of the
    /// months not stored, and the lines without a date; `None` when nothing
    /// is stored (every row). The condition on `ordered_at` lets the scan
    /// skip the files and row groups of stored months by their statistics;
    /// the one on `ordered_date` (a range per run of consecutive months,
    /// two comparisons a row) is exact.
    pub fn rows_to_count(&self, instant_type: &DataType) -> Option<Expr> {
        if self.stored.is_empty() {
            return None;
        }
        let ordered_at = Expr::Column(Column::from_name("ordered_at"));
        let undated = ordered_at.is_null();
        let counted: Vec<NaiveDate> = self
            .fingerprints
            .keys()
            .filter(|month| !self.stored.contains_key(month))
            .copied()
            .collect();
        if counted.is_empty() {
            return Some(undated);
        }
        let ordered_date = || Expr::Column(Column::from_name("ordered_date"));
        let in_months = month_ranges(&counted)
            .into_iter()
            .map(|(start, end)| {
                ordered_date()
                    .gt_eq(date(start))
                    .and(ordered_date().lt(date(end)))
            })
            .reduce(Expr::or)
            .expect("a month counted");
        Some(
            instants_near(&counted, instant_type)
                .and(in_months)
                .or(undated),
        )
    }

    /// Store the accounting of the closed months this run counted, as
    /// `counted` gives them by month (a month absent there had no line).
    /// Returns the number of months stored, or the first error once every
    /// month was tried.
    #[allow(clippy::too_many_arguments)]
    pub async fn store(
        &self,
        warehouse: &Warehouse,
        job: &str,
        run_id: &str,
        counted: &BTreeMap<NaiveDate, MonthAccounting>,
        clock: chrono::DateTime<chrono::Utc>,
        scratch: &std::path::Path,
    ) -> Result<usize, FactsError> {
        let local = tempfile::tempdir_in(scratch).map_err(|source| FactsError::Local {
            step: STEP.to_string(),
            dir: scratch.display().to_string(),
            source,
        })?;
        let empty = MonthAccounting::default();
        // Open months may still gain lines (or lose future-dated rejects):
        // counted again by every run.
        let months = self.fingerprints.iter().filter(|(month, _)| {
            !self.stored.contains_key(*month) && super::closed(**month, clock)
        });
        let (local, empty) = (local.path(), &empty);
        super::store_every(months.map(|(month, print)| async move {
            let accounting = counted.get(month).unwrap_or(empty);
            let files = write_month(local, *month, accounting)?;
            store::store(warehouse, job, STEP, print, Some(&files), run_id).await
        }))
        .await
    }
}

/// Write a month's accounting as local Parquet files: its rows, then its
/// duplicate lines when it has some.
fn write_month(
    dir: &std::path::Path,
    month: NaiveDate,
    accounting: &MonthAccounting,
) -> Result<Vec<PathBuf>, FactsError> {
    let local_error = |source: std::io::Error| FactsError::Local {
        step: STEP.to_string(),
        dir: dir.display().to_string(),
        source,
    };
    let mut files = Vec::new();
    for (name, batches) in [
        ("rows", &accounting.rows),
        ("duplicates", &accounting.duplicates),
    ] {
        let Some(first) = batches.first() else {
            continue;
        };
        let path = dir.join(format!("{month}-{name}.parquet"));
        let file = std::fs::File::create(&path).map_err(local_error)?;
        let written = (|| {
            let mut writer = ArrowWriter::try_new(file, first.schema(), None)?;
            for batch in batches {
                writer.write(batch)?;
            }
            writer.close().map(|_| ())
        })();
        written.map_err(|e| local_error(std::io::Error::other(e)))?;
        files.push(path);
    }
    Ok(files)
}

/// A month's stored accounting from its files (`keys`, as its fingerprint
/// names them); `None`, with a warning, when one cannot be read or is not
/// the accounting of that month: the month is then counted from its lines.
async fn read_month(
    warehouse: &Warehouse,
    month: NaiveDate,
    keys: &[object_store::path::Path],
) -> Option<MonthAccounting> {
    let mut accounting = MonthAccounting::default();
    for key in keys {
        let batches = match warehouse.get(key).await {
            Ok(Some(bytes)) => read_parquet(bytes).map_err(|e| e.to_string()),
            Ok(None) => Err("gone since it was checked".to_string()),
            Err(error) => Err(error.to_string()),
        };
        let batches = batches.and_then(|batches| {
            let schema = batches.first().map(|b| b.schema()).ok_or("no rows")?;
            if schema.column_with_name(COPIES).is_some() {
                check_duplicates(&schema, month, &batches)?;
                accounting.duplicates.extend(batches);
            } else {
                check_rows(&schema, month, &batches)?;
                accounting.rows.extend(batches);
            }
            Ok::<_, String>(())
        });
        if let Err(error) = batches {
            tracing::warn!(key = %warehouse.url_of(key), %error, "Unusable row accounting: the month is counted from its lines.");
            return None;
        }
    }
    // A month with lines has accounting rows; a month with none has no file.
    (accounting.rows.is_empty() == keys.is_empty()).then_some(accounting)
}

/// The month's index as `input_checks.sql` writes it.
fn month_index(month: NaiveDate) -> i32 {
    month.year() * 12 + month.month0() as i32
}

/// Stored accounting rows are `input_checks.sql`'s six columns, of `month`.
fn check_rows(
    schema: &datafusion::arrow::datatypes::Schema,
    month: NaiveDate,
    batches: &[RecordBatch],
) -> Result<(), String> {
    let types: Vec<&DataType> = schema.fields().iter().map(|f| f.data_type()).collect();
    let expected = [
        DataType::Utf8,
        DataType::Int32,
        DataType::Int64,
        DataType::Int64,
        DataType::Decimal128(18, 2),
        DataType::Decimal128(18, 2),
    ];
    if types.len() != expected.len() || types.iter().zip(&expected).any(|(a, b)| *a != b) {
        return Err(format!("unexpected columns {types:?}"));
    }
    let index = month_index(month);
    for batch in batches {
        let months = batch.column(1).as_primitive::<Int32Type>();
        if months.null_count() > 0 || months.values().iter().any(|m| *m != index) {
            return Err("rows of another month".to_string());
        }
    }
    Ok(())
}

/// Stored duplicate lines carry the columns the duplicate check reads, all
/// dated in `month`.
fn check_duplicates(
    schema: &datafusion::arrow::datatypes::Schema,
    month: NaiveDate,
    batches: &[RecordBatch],
) -> Result<(), String> {
    let expected = [
        ("customer_id", false),
        ("order_id", false),
        ("ordered_at", false),
        ("amount", false),
        ("ordered_date", true),
        (COPIES, false),
    ];
    for (name, is_date) in expected {
        let field = schema
            .field_with_name(name)
            .map_err(|_| format!("no column {name}"))?;
        if is_date && *field.data_type() != DataType::Date32 {
            return Err(format!("{name} is not a date"));
        }
    }
    let (first, end) = (month, Period::of_date(month).end());
    for batch in batches {
        let dates = batch
            .column_by_name("ordered_date")
            .expect("checked above")
            .as_primitive::<Date32Type>();
        let outside = dates.iter().any(|date| {
            date.map(crate::model::units::date_of_epoch_days)
                .is_none_or(|date| date < first || date >= end)
        });
        if outside {
            return Err("lines of another month".to_string());
        }
    }
    Ok(())
}

fn read_parquet(
    bytes: bytes::Bytes,
) -> Result<Vec<RecordBatch>, datafusion::parquet::errors::ParquetError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{
        Date32Array, Decimal128Array, Int32Array, Int64Array, StringArray,
        TimestampMicrosecondArray,
    };
    use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};
    use std::sync::Arc;

    fn march() -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 3, 1).unwrap()
    }

    /// Accounting rows as `input_checks.sql` gives them, of `month_index`.
    fn rows(month_index: i32) -> RecordBatch {
        let money = || {
            Arc::new(
                Decimal128Array::from(vec![1250])
                    .with_precision_and_scale(18, 2)
                    .unwrap(),
            )
        };
        RecordBatch::try_from_iter(vec![
            (
                "reason",
                Arc::new(StringArray::from(vec![None::<&str>])) as _,
            ),
            (
                "month_index",
                Arc::new(Int32Array::from(vec![month_index])) as _,
            ),
            ("rows_read", Arc::new(Int64Array::from(vec![3])) as _),
            ("anonymous_rows", Arc::new(Int64Array::from(vec![1])) as _),
            ("revenue", money() as _),
            ("identified_revenue", money() as _),
        ])
        .unwrap()
    }

    /// One duplicated line dated `day`.
    fn duplicates(day: NaiveDate) -> RecordBatch {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        let days = (day - epoch).num_days() as i32;
        let schema = Arc::new(Schema::new(vec![
            Field::new("customer_id", DataType::Utf8, true),
            Field::new("order_id", DataType::Utf8, true),
            Field::new(
                "ordered_at",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                true,
            ),
            Field::new("amount", DataType::Decimal128(18, 2), true),
            Field::new("ordered_date", DataType::Date32, true),
            Field::new(COPIES, DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["c1"])),
                Arc::new(StringArray::from(vec!["o1"])),
                Arc::new(TimestampMicrosecondArray::from(vec![
                    i64::from(days) * 86_400_000_000,
                ])),
                Arc::new(
                    Decimal128Array::from(vec![500])
                        .with_precision_and_scale(18, 2)
                        .unwrap(),
                ),
                Arc::new(Date32Array::from(vec![days])),
                Arc::new(Int64Array::from(vec![2])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn stored_accounting_of_another_month_or_shape_is_refused() {
        let good = rows(month_index(march()));
        assert_eq!(month_index(march()), 2024 * 12 + 2);
        assert!(check_rows(&good.schema(), march(), std::slice::from_ref(&good)).is_ok());
        let april = rows(month_index(march()) + 1);
        assert!(check_rows(&april.schema(), march(), std::slice::from_ref(&april)).is_err());
        let fewer = good.project(&[0, 1, 2, 3, 4]).unwrap();
        assert!(check_rows(&fewer.schema(), march(), std::slice::from_ref(&fewer)).is_err());

        let lines = duplicates(NaiveDate::from_ymd_opt(2024, 3, 31).unwrap());
        assert!(check_duplicates(&lines.schema(), march(), std::slice::from_ref(&lines)).is_ok());
        let late = duplicates(NaiveDate::from_ymd_opt(2024, 4, 1).unwrap());
        assert!(check_duplicates(&late.schema(), march(), std::slice::from_ref(&late)).is_err());
        let without_copies = lines.project(&[0, 1, 2, 3, 4]).unwrap();
        assert!(
            check_duplicates(
                &without_copies.schema(),
                march(),
                std::slice::from_ref(&without_copies)
            )
            .is_err()
        );
    }

    #[test]
    fn a_month_written_is_read_back_with_its_rows_and_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let accounting = MonthAccounting {
            rows: vec![rows(month_index(march()))],
            duplicates: vec![duplicates(NaiveDate::from_ymd_opt(2024, 3, 9).unwrap())],
        };
        let files = write_month(dir.path(), march(), &accounting).unwrap();
        assert_eq!(files.len(), 2);
        let back: Vec<Vec<RecordBatch>> = files
            .iter()
            .map(|f| read_parquet(bytes::Bytes::from(std::fs::read(f).unwrap())).unwrap())
            .collect();
        assert_eq!(back[0], accounting.rows);
        assert_eq!(back[1], accounting.duplicates);
        let none = write_month(dir.path(), march(), &MonthAccounting::default()).unwrap();
        assert!(none.is_empty(), "a month without lines has no file");
    }

    #[tokio::test]
    async fn the_pass_counts_the_months_not_stored_and_the_lines_without_a_date() {
        use datafusion::datasource::MemTable;
        use datafusion::prelude::SessionContext;
        let day = |m: u32, d: u32| NaiveDate::from_ymd_opt(2024, m, d).unwrap();
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        // A line on the first and the last day of January, February and
        // March, and one without a timestamp.
        let dates: Vec<Option<NaiveDate>> = [(1, 1), (1, 31), (2, 1), (2, 29), (3, 1), (3, 31)]
            .into_iter()
            .map(|(m, d)| Some(day(m, d)))
            .chain([None])
            .collect();
        let days = |d: &Option<NaiveDate>| d.map(|d| (d - epoch).num_days());
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "ordered_at",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                true,
            ),
            Field::new("ordered_date", DataType::Date32, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(TimestampMicrosecondArray::from(
                    dates
                        .iter()
                        .map(|d| days(d).map(|n| n * 86_400_000_000 + 3_600_000_000))
                        .collect::<Vec<_>>(),
                )),
                Arc::new(Date32Array::from(
                    dates
                        .iter()
                        .map(|d| days(d).map(|n| n as i32))
                        .collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new();
        ctx.register_table(
            "lines",
            Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap()),
        )
        .unwrap();
        let months = |stored: &[NaiveDate]| InputMonths {
            fingerprints: [day(1, 1), day(2, 1), day(3, 1)]
                .into_iter()
                .map(|m| (m, Fingerprint::new("ctx", m, &[])))
                .collect(),
            stored: stored
                .iter()
                .map(|m| (*m, MonthAccounting::default()))
                .collect(),
        };
        let instant = DataType::Timestamp(TimeUnit::Microsecond, None);
        let counted = |filter: Expr| async {
            let batches = ctx
                .table("lines")
                .await
                .unwrap()
                .filter(filter)
                .unwrap()
                .collect()
                .await
                .unwrap();
            let mut dates: Vec<Option<i32>> = batches
                .iter()
                .flat_map(|b| {
                    let column = b.column(1).as_primitive::<Date32Type>();
                    (0..b.num_rows())
                        .map(|row| column.is_valid(row).then(|| column.value(row)))
                        .collect::<Vec<_>>()
                })
                .collect();
            dates.sort();
            dates
        };
        assert!(
            months(&[]).rows_to_count(&instant).is_none(),
            "nothing stored: every row"
        );
        let expected = |wanted: &[(u32, u32)]| {
            let mut rows: Vec<Option<i32>> = wanted
                .iter()
                .map(|(m, d)| Some((day(*m, *d) - epoch).num_days() as i32))
                .chain([None])
                .collect();
            rows.sort();
            rows
        };
        let february = months(&[day(2, 1)]).rows_to_count(&instant).unwrap();
        assert_eq!(
            counted(february).await,
            expected(&[(1, 1), (1, 31), (3, 1), (3, 31)])
        );
        let all = months(&[day(1, 1), day(2, 1), day(3, 1)])
            .rows_to_count(&instant)
            .unwrap();
        assert_eq!(counted(all).await, expected(&[]), "only the undated line");
    }
}

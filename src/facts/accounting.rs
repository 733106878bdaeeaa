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
//! erasures and merges), and the pass reads the lines of the other months
//! and the lines without a date (never stored: any file may hold them).

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::NaiveDate;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Column;
use datafusion::logical_expr::Expr;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::fingerprint::{self, Fingerprint};
use super::shape::{date, instants_near};
use super::{FactsError, Sources, store};
use crate::config::Config;
use crate::model::{InputFile, Period};
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
    /// The stored accounting of the months whose fingerprint matches
    /// (before `recompute_from`, when given); `None` when some input file
    /// has no statistics of `ordered_at` (any month may be in it: every
    /// line is counted).
    pub async fn load(
        config: &Config,
        warehouse: &Warehouse,
        job: &str,
        sources: &Sources<'_>,
        recompute_from: Option<NaiveDate>,
    ) -> Result<Option<InputMonths>, FactsError> {
        let files: Vec<&InputFile> = sources
            .files
            .iter()
            .filter(|f| f.input == "transactions")
            .collect();
        let ranges = fingerprint::file_ranges(config, &files).await;
        let Some(months) = fingerprint::months(&files, &ranges, None) else {
            return Ok(None);
        };
        let context = fingerprint::context_of(config, "row accounting", sources);
        let fingerprints: BTreeMap<NaiveDate, Fingerprint> = months
            .iter()
            .map(|(month, covering)| (*month, Fingerprint::new(&context, *month, covering)))
            .collect();
        let trusted: BTreeMap<NaiveDate, Fingerprint> = fingerprints
            .iter()
            .filter(|(month, _)| recompute_from.is_none_or(|from| **month < from))
            .map(|(month, print)| (*month, print.clone()))
            .collect();
        let valid = store::valid(warehouse, job, STEP, &trusted).await?;
        let mut stored = BTreeMap::new();
        for (month, found) in valid {
            let mut accounting = MonthAccounting::default();
            for key in &found.keys {
                // Gone since the check: the month is counted from its lines.
                let Some(bytes) = warehouse.get(key).await? else {
                    accounting.rows.clear();
                    break;
                };
                let batches = match read_parquet(bytes) {
                    Ok(batches) => batches,
                    Err(error) => {
                        tracing::warn!(key = %warehouse.url_of(key), %error, "Unreadable row accounting: the month is counted from its lines.");
                        accounting.rows.clear();
                        break;
                    }
                };
                let is_duplicates = batches
                    .first()
                    .is_some_and(|b| b.schema().column_with_name(COPIES).is_some());
                if is_duplicates {
                    accounting.duplicates.extend(batches);
                } else {
                    accounting.rows.extend(batches);
                }
            }
            // A month with lines has accounting rows; none is a month with
            // no line at all, or a file that could not be read.
            if !accounting.rows.is_empty() || found.keys.is_empty() {
                stored.insert(month, accounting);
            }
        }
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
        let mut ranges: Vec<(NaiveDate, NaiveDate)> = Vec::new();
        for first in &counted {
            let end = Period::of_date(*first).end();
            match ranges.last_mut() {
                Some((_, last_end)) if *last_end == *first => *last_end = end,
                _ => ranges.push((*first, end)),
            }
        }
        let in_months = ranges
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
        let months = self
            .fingerprints
            .iter()
            .filter(|(month, _)| !self.stored.contains_key(*month) && closed(**month, clock));
        let (local, empty) = (local.path(), &empty);
        super::store_every(months.map(|(month, print)| async move {
            let accounting = counted.get(month).unwrap_or(empty);
            let files = write_month(local, *month, accounting)?;
            store::store(warehouse, job, STEP, print, Some(&files), run_id).await
        }))
        .await
    }
}

/// Whether every line of `month` is known by `clock`'s day, in any time
/// zone.
pub(super) fn closed(month: NaiveDate, clock: chrono::DateTime<chrono::Utc>) -> bool {
    Period::of_date(month)
        .end()
        .succ_opt()
        .is_some_and(|after| after <= clock.date_naive())
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

fn read_parquet(
    bytes: bytes::Bytes,
) -> Result<Vec<RecordBatch>, datafusion::parquet::errors::ParquetError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

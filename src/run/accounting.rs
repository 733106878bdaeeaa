//! The run's row accounting of `transactions` (read = used + anonymous +
//! rejected, per reason and month) and its exact duplicate lines: one pass
//! over the lines, shared by the periods of a backfill; for an incremental
//! job, the closed months already counted are read from the warehouse
//! (`crate::facts::InputMonths`) and the pass counts only the others.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::{Decimal128Type, Int32Type, Int64Type};
use datafusion::prelude::SessionContext;

use super::{RunError, SharedWork};
use crate::config::Config;
use crate::engine;
use crate::inputs::{self, InputChecks};
use crate::model::{InputFile, Period};
use crate::pipeline::{Parameters, PipelineError};
use crate::storage::Warehouse;

#[derive(Default)]
pub(super) struct InputStats {
    pub rows_read: u64,
    pub anonymous_rows: u64,
    pub period_rows: u64,
    pub period_revenue_cents: i128,
    pub identified_revenue_cents: i128,
}

impl InputStats {
    /// These facts (counted over every usable row) less the extra copies of
    /// the repeated `lines`: the facts of the distinct lines, without a
    /// second pass over the input.
    pub(super) fn without(mut self, lines: &inputs::DuplicateLines, period: Period) -> Self {
        for extra in lines.extra_copies() {
            self.rows_read -= extra.copies;
            if extra.anonymous {
                self.anonymous_rows -= extra.copies;
            }
            let in_period = extra
                .ordered_date
                .is_some_and(|date| date >= period.start() && date < period.end());
            if in_period {
                let cents = extra.amount_cents * i128::from(extra.copies);
                self.period_rows -= extra.copies;
                self.period_revenue_cents -= cents;
                if !extra.anonymous {
                    self.identified_revenue_cents -= cents;
                }
            }
        }
        self
    }
}

/// Row accounting of the transactions per reason and local month (see
/// `sql/outputs/input_checks.sql`), and whether they may hold duplicate
/// lines: all a run needs to know about its input before classifying.
#[derive(Debug)]
pub(super) struct InputFacts {
    rows: Vec<FactRow>,
    pub duplicates: inputs::Duplicates,
    /// The months this pass counted, to store once a period is published
    /// (`None` when the accounting is not kept by month).
    to_store: Option<ToStore>,
}

/// The accounting of the months a pass counted, waiting for a publication.
#[derive(Debug)]
struct ToStore {
    months: crate::facts::InputMonths,
    counted: BTreeMap<NaiveDate, crate::facts::MonthAccounting>,
    /// Stored once, by the first period of a backfill that publishes.
    stored: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct FactRow {
    reason: Option<String>,
    month_index: Option<i32>,
    rows: u64,
    anonymous_rows: u64,
    revenue_cents: i128,
    identified_revenue_cents: i128,
}

impl InputFacts {
    /// Rows per reason, and the run facts of `period` over the usable rows
    /// (duplicate lines included).
    pub(super) fn of_period(&self, period: Period) -> (InputChecks, InputStats) {
        let month_index = period.year() * 12 + period.month() as i32 - 1;
        let mut checks = InputChecks::default();
        let mut usable = InputStats::default();
        for row in &self.rows {
            checks.read += row.rows;
            if let Some(reason) = &row.reason {
                *checks.rejected_by_reason.entry(reason.clone()).or_default() += row.rows;
                continue;
            }
            checks.valid += row.rows;
            usable.rows_read += row.rows;
            usable.anonymous_rows += row.anonymous_rows;
            if row.month_index == Some(month_index) {
                usable.period_rows += row.rows;
                usable.period_revenue_cents += row.revenue_cents;
                usable.identified_revenue_cents += row.identified_revenue_cents;
            }
        }
        (checks, usable)
    }

    /// Whether `period`'s rejects table has rows other than duplicate
    /// lines: rejects dated in the period, or without a date. Only then are
    /// the input files read again to list them (`inputs::collect_rejects`).
    pub(super) fn period_has_other_rejects(&self, period: Period) -> bool {
        let month_index = period.year() * 12 + period.month() as i32 - 1;
        self.rows.iter().any(|row| {
            row.reason.is_some()
                && row.rows > 0
                && row.month_index.is_none_or(|index| index == month_index)
        })
    }
}

/// What the accounting by month is computed with: stored accounting counted
/// by other SQL is not trusted.
pub(super) const ACCOUNTING_SQL: &str = concat!(
    include_str!("../../sql/outputs/input_checks.sql"),
    include_str!("../../sql/outputs/input_checks_flagged.sql"),
);

/// The facts of the transactions input: counted once for the same input
/// files and erasures by the runs that share `shared` (the periods of a
/// backfill), under the process's one clock (`inputs::run_clock`), so every
/// period sees the same rows. With `months` (an incremental job whose input
/// files have statistics), the months stored with their fingerprints are
/// read, and the pass counts only the lines of the others.
pub(super) async fn input_facts(
    ctx: &SessionContext,
    config: &Config,
    key: &str,
    shared: &SharedWork,
    months: impl std::future::Future<Output = Result<Option<crate::facts::InputMonths>, RunError>>,
) -> Result<Arc<InputFacts>, RunError> {
    let known = &shared.0.facts;
    if let Some((known_key, facts)) = known.lock().expect("not poisoned").as_ref()
        && *known_key == key
    {
        return Ok(facts.clone());
    }
    // On the local engine the counting pass also flags the candidates for
    // exact duplicate lines (`inputs::seen`): no pass of their own. A
    // distributed engine cannot share the filter between its workers; it
    // groups the row hashes instead (`inputs::duplicates::find`).
    let flag = config.quality.reject_duplicates && config.engine.scheduler.is_none();
    let months = months.await?;
    let counted_rows = match &months {
        Some(months) => months.rows_to_count(&inputs::instant_type(ctx, "transactions").await?),
        None => None,
    };
    inputs::register_counted(ctx, "transactions", counted_rows).await?;
    let batches = count_rows(ctx, flag).await;
    inputs::deregister_counted(ctx, "transactions")?;
    let batches = batches?;
    let mut rows = Vec::new();
    let mut flagged = inputs::seen::Flagged::default();
    for batch in &batches {
        rows.extend(fact_rows(batch));
        if flag {
            for row in 0..batch.num_rows() {
                flagged.extend_from(batch.column(6), row);
            }
        }
    }
    let found = if flag {
        let candidates =
            inputs::duplicates::flagged_candidates(ctx, "transactions", &flagged).await?;
        inputs::duplicates::resolve(ctx, "transactions", candidates).await?
    } else if config.quality.reject_duplicates {
        inputs::duplicates::find(ctx, "transactions", true).await?
    } else {
        inputs::Duplicates::NoneFound
    };
    let (duplicates, to_store) = match months {
        None => (found, None),
        Some(months) => {
            let counted_duplicates = match &found {
                inputs::Duplicates::Found(lines) => Some(lines.by_month()?),
                inputs::Duplicates::NoneFound => Some(BTreeMap::new()),
                // Not known month by month: nothing is stored.
                inputs::Duplicates::TooMany | inputs::Duplicates::Unknown => None,
            };
            for stored in months.stored() {
                rows.extend(stored.rows.iter().flat_map(fact_rows));
            }
            match counted_duplicates {
                None => (inputs::Duplicates::TooMany, None),
                Some(counted_duplicates) => {
                    let every_month = months
                        .stored()
                        .map(|stored| stored.duplicates.clone())
                        .chain(counted_duplicates.values().cloned())
                        .collect();
                    let duplicates = inputs::DuplicateLines::of_months(every_month)?;
                    let counted = by_month(&batches, counted_duplicates)?;
                    let to_store = ToStore {
                        months,
                        counted,
                        stored: Default::default(),
                    };
                    (duplicates, Some(to_store))
                }
            }
        }
    };
    let facts = Arc::new(InputFacts {
        rows,
        duplicates,
        to_store,
    });
    *known.lock().expect("not poisoned") = Some((key.to_string(), facts.clone()));
    Ok(facts)
}

/// The pass over `__counted_transactions`: the accounting rows, and the
/// duplicate candidates when `flag`.
async fn count_rows(ctx: &SessionContext, flag: bool) -> Result<Vec<RecordBatch>, RunError> {
    if !flag {
        return Ok(facts_query(
            ctx,
            None,
            include_str!("../../sql/outputs/input_checks.sql"),
        )
        .await?);
    }
    inputs::duplicates::register_flagging(ctx, "transactions").await?;
    let batches = facts_query(
        ctx,
        None,
        include_str!("../../sql/outputs/input_checks_flagged.sql"),
    )
    .await;
    inputs::duplicates::deregister_flagging(ctx, "transactions")?;
    Ok(batches?)
}

/// The accounting rows of a pass's batch (`input_checks.sql`'s columns).
fn fact_rows(batch: &RecordBatch) -> Vec<FactRow> {
    let reasons = batch.column(0).as_string::<i32>();
    let months = batch.column(1).as_primitive::<Int32Type>();
    let int = |i: usize, row: usize| batch.column(i).as_primitive::<Int64Type>().value(row) as u64;
    let cents = |i: usize, row: usize| batch.column(i).as_primitive::<Decimal128Type>().value(row);
    (0..batch.num_rows())
        .map(|row| FactRow {
            reason: reasons
                .is_valid(row)
                .then(|| reasons.value(row).to_string()),
            month_index: months.is_valid(row).then(|| months.value(row)),
            rows: int(2, row),
            anonymous_rows: int(3, row),
            revenue_cents: cents(4, row),
            identified_revenue_cents: cents(5, row),
        })
        .collect()
}

/// The pass's accounting rows (`input_checks.sql`'s six columns) and the
/// duplicate lines it found, by month; the rows without a month are left
/// out (they are counted by every run).
fn by_month(
    batches: &[RecordBatch],
    mut duplicates: BTreeMap<NaiveDate, Vec<RecordBatch>>,
) -> Result<BTreeMap<NaiveDate, crate::facts::MonthAccounting>, RunError> {
    let execution = |source: datafusion::arrow::error::ArrowError| PipelineError::Execution {
        context: "splitting the row accounting by month".into(),
        source: source.into(),
    };
    let mut months: BTreeMap<NaiveDate, crate::facts::MonthAccounting> = BTreeMap::new();
    for batch in batches {
        let batch = batch.project(&[0, 1, 2, 3, 4, 5]).map_err(execution)?;
        let month_indexes = batch.column(1).as_primitive::<Int32Type>();
        let mut indexes: BTreeMap<i32, Vec<u32>> = BTreeMap::new();
        for row in 0..batch.num_rows() {
            if month_indexes.is_valid(row) {
                indexes
                    .entry(month_indexes.value(row))
                    .or_default()
                    .push(row as u32);
            }
        }
        for (index, rows) in indexes {
            let Some(month) =
                NaiveDate::from_ymd_opt(index.div_euclid(12), index.rem_euclid(12) as u32 + 1, 1)
            else {
                continue;
            };
            let taken = take_record_batch(&batch, &UInt32Array::from(rows)).map_err(execution)?;
            months.entry(month).or_default().rows.push(taken);
        }
    }
    for (month, lines) in std::mem::take(&mut duplicates) {
        months.entry(month).or_default().duplicates = lines;
    }
    Ok(months)
}

/// Store the accounting of the months the run's pass counted (once per
/// backfill), after the period is published; returns the months stored.
pub(super) async fn store_input_months(
    facts: &InputFacts,
    config: &Config,
    warehouse: &Warehouse,
    job: &str,
    run_id: &str,
) -> Result<usize, crate::facts::FactsError> {
    let Some(to_store) = &facts.to_store else {
        return Ok(0);
    };
    if to_store
        .stored
        .swap(true, std::sync::atomic::Ordering::SeqCst)
    {
        return Ok(0);
    }
    let scratch = config
        .engine
        .spill_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    to_store
        .months
        .store(
            warehouse,
            job,
            run_id,
            &to_store.counted,
            inputs::run_clock(),
            &scratch,
        )
        .await
}

/// What identifies the transactions a run reads, for the results the runs of
/// one process share: the input, its files, the erasures and the duplicate
/// rule.
pub(super) fn input_key(ctx: &SessionContext, config: &Config, files: &[InputFile]) -> String {
    let erased = inputs::suppression(ctx).map(|s| s.len()).unwrap_or(0);
    format!(
        "{:?}|{:?}|{erased}|{}",
        config
            .inputs
            .get("transactions")
            .map(|i| (&i.url, &i.columns)),
        files
            .iter()
            .filter(|f| f.input == "transactions")
            .collect::<Vec<_>>(),
        config.quality.reject_duplicates
    )
}

/// The run facts over the distinct usable lines (when there are duplicates).
pub(super) async fn input_stats(
    ctx: &SessionContext,
    params: &Parameters,
) -> Result<InputStats, PipelineError> {
    let batches = facts_query(
        ctx,
        Some(params),
        include_str!("../../sql/outputs/input_stats.sql"),
    )
    .await?;
    let batch = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .expect("an aggregate returns one row");
    let int = |i: usize| batch.column(i).as_primitive::<Int64Type>().value(0) as u64;
    let cents = |i: usize| batch.column(i).as_primitive::<Decimal128Type>().value(0);
    Ok(InputStats {
        rows_read: int(0),
        anonymous_rows: int(1),
        period_rows: int(2),
        period_revenue_cents: cents(3),
        identified_revenue_cents: cents(4),
    })
}

async fn facts_query(
    ctx: &SessionContext,
    params: Option<&Parameters>,
    sql: &str,
) -> Result<Vec<RecordBatch>, PipelineError> {
    let execution = |source| PipelineError::Execution {
        context: "counting input rows".into(),
        source,
    };
    engine::plan_sql(ctx, sql, params.map(Parameters::values))
        .await
        .map_err(execution)?
        .collect()
        .await
        .map_err(execution)
}

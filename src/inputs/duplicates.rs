//! Exact duplicate lines (docs/design.md §7: a line that repeats another in
//! every canonical column counts once): found once per input by row hash,
//! then removed from the canonical view without a DISTINCT over every row.
//!
//! Real exports carry a few repeated lines (0.002% is typical). A DISTINCT
//! over every column of every line (a hash table of wide string rows,
//! recomputed by every query that reads the view, spilling under a memory
//! limit) made such a run eight times slower than the same run without
//! them. Here the *candidates* are found first: the rows whose row hash a
//! filter of the hashes already seen flags (`inputs::seen`; every copy of a
//! repeated line but one, and about one row in 10,000 that only looks
//! alike), in the pass that counts the input anyway. Every row at their
//! instants is then read once and grouped exactly: the rows with more than
//! one copy name the *affected* orders and instants, and the affected rows
//! are the lines of those orders at those instants. The view is then the
//! rows that are not affected — a condition on two columns every query
//! reads anyway, so a query still reads only the columns it needs — plus
//! each distinct affected row once. Only when the affected rows are too
//! many to hold does the view fall back to the exact DISTINCT.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{DataType, Date32Type, Decimal128Type, Int64Type, UInt64Type};
use datafusion::common::Column;
use datafusion::functions_aggregate::expr_fn::{count, max, min};
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, cast, in_list, lit, not, when};
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::scalar::ScalarValue;

use super::checked::{REASON, usable_table};
use super::seen::{Flagged, REPEATED_LINES, SeenLines, repeated_lines};
use crate::engine::EngineError;
use crate::engine::functions::row_hash;

/// More affected rows than this and the canonical view keeps the exact
/// DISTINCT over every column: the affected rows are held in memory and
/// planned as literal rows (a few hundred bytes each).
pub const MAX_AFFECTED_ROWS: u64 = 100_000;

/// The number of copies of each distinct candidate line.
const COPIES: &str = "__copies";
const HASH: &str = "__row_hash";
/// The row hash of a usable row in [`hashed_table`] (null for a reject).
const LINE_HASH: &str = "__line_hash";

/// What is known of an input's exact duplicate lines.
#[derive(Debug, Clone)]
pub enum Duplicates {
    /// Not looked for yet: [`super::Registered::resolve`] looks for them.
    Unknown,
    /// No two usable rows are equal: the view reads the rows as they are.
    NoneFound,
    /// Some lines repeat; these are all of them.
    Found(Arc<DuplicateLines>),
    /// More than [`MAX_AFFECTED_ROWS`] rows are affected: the view keeps
    /// the exact DISTINCT over every column (slower, but exact).
    TooMany,
}

/// The rows affected by exact duplicate lines (see the module doc), each
/// distinct row once with its number of copies.
#[derive(Debug)]
pub struct DuplicateLines {
    /// The keys of the affected rows, one set per search (or per month of
    /// stored facts): a row is affected when its instant and its order id
    /// are in the same set. The sets' instants are disjoint.
    keys: Vec<AffectedKeys>,
    /// The distinct affected rows: the usable columns of the input
    /// (canonical ones and the local date), then `__copies`.
    lines: Vec<RecordBatch>,
}

/// The instants and order ids of one set of affected rows.
#[derive(Debug)]
struct AffectedKeys {
    /// `ordered_at` of the candidates.
    instants: Vec<ScalarValue>,
    /// `order_id` of the candidates.
    order_ids: Vec<String>,
}

/// The copies of one line beyond its first, which the canonical view drops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraCopies {
    /// The line has no customer id.
    pub anonymous: bool,
    /// Its local date.
    pub ordered_date: Option<NaiveDate>,
    /// Its amount, in cents.
    pub amount_cents: i128,
    /// How many copies beyond the first.
    pub copies: u64,
}

impl DuplicateLines {
    /// The duplicated lines, each with its extra copies.
    pub fn extra_copies(&self) -> Vec<ExtraCopies> {
        let mut extra = Vec::new();
        for batch in &self.lines {
            let column = |name: &str| {
                batch
                    .column_by_name(name)
                    .expect("a usable column of transactions")
            };
            let customers = column("customer_id");
            let dates = column("ordered_date").as_primitive::<Date32Type>();
            let amounts = column("amount").as_primitive::<Decimal128Type>();
            let copies = column(COPIES).as_primitive::<Int64Type>();
            for row in 0..batch.num_rows() {
                if copies.value(row) < 2 {
                    continue;
                }
                extra.push(ExtraCopies {
                    anonymous: customers.is_null(row),
                    ordered_date: dates
                        .is_valid(row)
                        .then(|| crate::model::units::date_of_epoch_days(dates.value(row))),
                    amount_cents: amounts.value(row),
                    copies: copies.value(row) as u64 - 1,
                });
            }
        }
        extra
    }

    /// The distinct affected rows with their number of copies (one for
    /// most), as the usable columns of the input then `__copies`.
    pub fn repeated_lines(&self) -> &[RecordBatch] {
        &self.lines
    }

    /// The affected rows by month of their local date (every usable row
    /// has one): two copies of a line share their instant, so a month's
    /// duplicates are found among that month's lines alone.
    pub fn by_month(&self) -> Result<BTreeMap<NaiveDate, Vec<RecordBatch>>, EngineError> {
        let mut months: BTreeMap<NaiveDate, Vec<RecordBatch>> = BTreeMap::new();
        for batch in &self.lines {
            let dates = batch
                .column_by_name("ordered_date")
                .expect("a usable column of transactions")
                .as_primitive::<Date32Type>();
            let month_of = |row: usize| {
                crate::model::units::date_of_epoch_days(dates.value(row))
                    .with_day(1)
                    .expect("day 1")
            };
            for month in (0..batch.num_rows())
                .map(month_of)
                .collect::<std::collections::BTreeSet<_>>()
            {
                let keep: BooleanArray = (0..batch.num_rows())
                    .map(|row| Some(month_of(row) == month))
                    .collect();
                let kept = filter_record_batch(batch, &keep).map_err(|e| failed(e.into()))?;
                months.entry(month).or_default().push(kept);
            }
        }
        Ok(months)
    }

    /// The duplicates of an input from the affected rows of each of its
    /// months ([`DuplicateLines::by_month`], found by several searches).
    /// The keys of a month are its rows' instants and order ids: a row at
    /// one of those instants of one of those orders was among the rows its
    /// search read and kept, so it is one of the month's rows.
    pub fn of_months(months: Vec<Vec<RecordBatch>>) -> Result<Duplicates, EngineError> {
        let rows: usize = months.iter().flatten().map(RecordBatch::num_rows).sum();
        if rows as u64 > MAX_AFFECTED_ROWS {
            return Ok(Duplicates::TooMany);
        }
        let mut keys = Vec::new();
        let mut lines = Vec::new();
        for month in months {
            let mut instants = Vec::new();
            let mut order_ids = Vec::new();
            for batch in &month {
                let ids = batch
                    .column_by_name("order_id")
                    .expect("order_id is canonical")
                    .as_string::<i32>();
                let at = batch
                    .column_by_name("ordered_at")
                    .expect("ordered_at is canonical");
                for row in 0..batch.num_rows() {
                    instants.push(ScalarValue::try_from_array(at, row).map_err(failed)?);
                    if ids.is_valid(row) {
                        order_ids.push(ids.value(row).to_string());
                    }
                }
            }
            sort_dedup(&mut instants);
            order_ids.sort();
            order_ids.dedup();
            if !instants.is_empty() {
                keys.push(AffectedKeys {
                    instants,
                    order_ids,
                });
            }
            lines.extend(month);
        }
        if keys.is_empty() {
            return Ok(Duplicates::NoneFound);
        }
        Ok(Duplicates::Found(Arc::new(DuplicateLines { keys, lines })))
    }
}

fn column_ref(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

fn failed(source: datafusion::error::DataFusionError) -> EngineError {
    EngineError::Read {
        context: "looking for duplicate lines".to_string(),
        source,
    }
}

/// The row hash of a line: every column of the usable rows of `input`
/// (canonical and extra) but the local date, which follows from the
/// timestamp.
fn hash_of(usable: &DataFrame, input: &str) -> Expr {
    let date = crate::config::date_column_of(input).map(|(_, date)| date);
    row_hash(
        usable
            .schema()
            .fields()
            .iter()
            .filter(|f| Some(f.name().as_str()) != date)
            .map(|f| column_ref(f.name()))
            .collect(),
    )
}

/// The rows that may repeat another: every copy of a repeated line is
/// among them (all but one per line when flagged by a [`SeenLines`] filter),
/// with rows whose hash only looks alike.
#[derive(Debug, Default)]
pub struct Candidates {
    /// Their row hashes.
    hashes: Vec<u64>,
    /// Their instants (`ordered_at`).
    instants: Vec<ScalarValue>,
    /// How many rows are candidates.
    rows: u64,
    /// Whether `instants` holds the instant of every row that repeats
    /// another; when not (a hash shared at more than two instants), a pass
    /// collects them first.
    instants_known: bool,
}

impl Candidates {
    /// The candidates a pass flagged with a [`SeenLines`] filter: an equal
    /// line has the flagged one's instant, so every instant is known.
    pub fn flagged(flagged: &Flagged, instant_type: &DataType) -> Result<Self, EngineError> {
        let mut instants = flagged
            .instants
            .iter()
            .map(|micros| {
                ScalarValue::TimestampMicrosecond(Some(*micros), None).cast_to(instant_type)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(failed)?;
        sort_dedup(&mut instants);
        let mut hashes = flagged.hashes.clone();
        hashes.sort_unstable();
        hashes.dedup();
        Ok(Candidates {
            hashes,
            instants,
            rows: flagged.len() as u64,
            instants_known: true,
        })
    }
}

/// The exact duplicate lines of `input`'s usable rows: candidates flagged
/// in one pass by a filter of the hashes seen ([`SeenLines`]), or, on a
/// distributed engine (which cannot share a filter between its workers),
/// by one grouping of the row hashes; then see [`resolve`].
pub async fn find(
    ctx: &SessionContext,
    input: &str,
    distributed: bool,
) -> Result<Duplicates, EngineError> {
    let candidates = if distributed {
        grouped_candidates(ctx, input).await?
    } else {
        let usable = ctx
            .table(usable_table(input).as_str())
            .await
            .map_err(failed)?;
        let filter = Arc::new(SeenLines::new(
            expected_lines(ctx, input).await,
            Some(&ctx.runtime_env().memory_pool),
        ));
        let batches = usable
            .clone()
            .aggregate(
                vec![],
                vec![
                    repeated_lines(filter)
                        .call(vec![hash_of(&usable, input), column_ref("ordered_at")])
                        .alias(REPEATED_LINES),
                ],
            )
            .map_err(failed)?
            .collect()
            .await
            .map_err(failed)?;
        let mut flagged = Flagged::default();
        for batch in &batches {
            for row in 0..batch.num_rows() {
                flagged.extend_from(batch.column(0), row);
            }
        }
        let instant_type = ordered_at_type(&usable)?;
        Candidates::flagged(&flagged, &instant_type)?
    };
    resolve(ctx, input, candidates).await
}

/// The view the run's row accounting reads to flag duplicate candidates as
/// it counts (`sql/outputs/input_checks_flagged.sql`): every counted row
/// ([`super::counted_table`]) with `__line_hash`, its row hash when usable,
/// else null.
pub fn hashed_table(input: &str) -> String {
    format!("__hashed_{input}")
}

/// Register [`hashed_table`] over the counted rows of `input`
/// ([`super::register_counted`] first) and the aggregate `repeated_lines`
/// bound to a fresh [`SeenLines`] filter, for one pass that counts the rows
/// and flags their candidates; [`deregister_flagging`] frees the filter.
pub async fn register_flagging(ctx: &SessionContext, input: &str) -> Result<(), EngineError> {
    let setup = EngineError::Setup;
    let usable = ctx
        .table(usable_table(input).as_str())
        .await
        .map_err(setup)?;
    let counted = ctx
        .table(super::counted_table(input).as_str())
        .await
        .map_err(setup)?;
    let hash = when(column_ref(REASON).is_null(), hash_of(&usable, input))
        .end()
        .map_err(setup)?;
    let hashed = counted.with_column(LINE_HASH, hash).map_err(setup)?;
    ctx.register_table(hashed_table(input).as_str(), hashed.into_view())
        .map_err(setup)?;
    let filter = Arc::new(SeenLines::new(
        expected_lines(ctx, input).await,
        Some(&ctx.runtime_env().memory_pool),
    ));
    tracing::debug!(input, bytes = filter.bytes(), "Flagging repeated lines.");
    ctx.register_udaf(repeated_lines(filter));
    Ok(())
}

/// Undo [`register_flagging`] (the filter's memory goes back to the pool).
pub fn deregister_flagging(ctx: &SessionContext, input: &str) -> Result<(), EngineError> {
    ctx.deregister_udaf(REPEATED_LINES);
    ctx.deregister_table(hashed_table(input).as_str())
        .map_err(EngineError::Setup)?;
    Ok(())
}

/// The candidates of a pass over [`hashed_table`]: `repeated` holds the
/// values of its `repeated_lines` column.
pub async fn flagged_candidates(
    ctx: &SessionContext,
    input: &str,
    flagged: &Flagged,
) -> Result<Candidates, EngineError> {
    let usable = ctx
        .table(usable_table(input).as_str())
        .await
        .map_err(failed)?;
    Candidates::flagged(flagged, &ordered_at_type(&usable)?)
}

/// The type of `ordered_at` in `frame`.
fn ordered_at_type(frame: &DataFrame) -> Result<DataType, EngineError> {
    Ok(frame
        .schema()
        .field_with_unqualified_name("ordered_at")
        .map_err(failed)?
        .data_type()
        .clone())
}

/// About how many rows `input` has, to size a [`SeenLines`] filter: the
/// row counts of its Parquet footers, else its size in bytes over 16 (no
/// text line is shorter).
pub async fn expected_lines(ctx: &SessionContext, input: &str) -> u64 {
    let counted = async {
        let plan = ctx
            .table(super::source_table(input).as_str())
            .await
            .ok()?
            .create_physical_plan()
            .await
            .ok()?;
        let statistics = datafusion::physical_plan::statistics::StatisticsContext::new()
            .compute(
                plan.as_ref(),
                &datafusion::physical_plan::statistics::StatisticsArgs::new(),
            )
            .ok()?;
        match (
            statistics.num_rows.get_value(),
            statistics.total_byte_size.get_value(),
        ) {
            (Some(rows), _) => Some(*rows as u64),
            (None, Some(bytes)) => Some(*bytes as u64 / 16),
            (None, None) => None,
        }
    };
    // Unknown: a filter for 10M lines (25 MB); a larger input only gets
    // more candidates for the exact check.
    counted.await.unwrap_or(10_000_000)
}

/// The candidates of one grouping of every row hash: the hashes of several
/// rows, with their first and last instant.
async fn grouped_candidates(ctx: &SessionContext, input: &str) -> Result<Candidates, EngineError> {
    let usable = ctx
        .table(usable_table(input).as_str())
        .await
        .map_err(failed)?;
    let shared = usable
        .clone()
        .select(vec![
            hash_of(&usable, input).alias(HASH),
            column_ref("ordered_at"),
        ])
        .map_err(failed)?
        .aggregate(
            vec![column_ref(HASH)],
            vec![
                count(lit(1)).alias(COPIES),
                min(column_ref("ordered_at")).alias("__first"),
                max(column_ref("ordered_at")).alias("__last"),
            ],
        )
        .map_err(failed)?
        .filter(column_ref(COPIES).gt(lit(1i64)))
        .map_err(failed)?
        .collect()
        .await
        .map_err(failed)?;
    let mut candidates = Candidates {
        instants_known: true,
        ..Candidates::default()
    };
    for batch in &shared {
        let values = batch.column(0).as_primitive::<UInt64Type>();
        let copies = batch.column(1).as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            candidates.hashes.push(values.value(row));
            candidates.rows += copies.value(row) as u64;
            let first = ScalarValue::try_from_array(batch.column(2), row).map_err(failed)?;
            let last = ScalarValue::try_from_array(batch.column(3), row).map_err(failed)?;
            // The first and last instants of a hash are all of its
            // instants when it has two rows or one instant.
            candidates.instants_known &= copies.value(row) == 2 || first == last;
            candidates.instants.push(first);
            candidates.instants.push(last);
        }
    }
    sort_dedup(&mut candidates.instants);
    Ok(candidates)
}

/// The exact duplicate lines among `candidates`. Usually one pass: every
/// row at one of their instants is read and grouped exactly; the rows with
/// copies name the affected orders. When the instants are not all known or
/// too many rows share them, a pass collects the candidates' order ids
/// first. More candidates than [`MAX_AFFECTED_ROWS`]: [`Duplicates::TooMany`].
pub async fn resolve(
    ctx: &SessionContext,
    input: &str,
    candidates: Candidates,
) -> Result<Duplicates, EngineError> {
    if candidates.hashes.is_empty() {
        return Ok(Duplicates::NoneFound);
    }
    if candidates.rows > MAX_AFFECTED_ROWS {
        return Ok(Duplicates::TooMany);
    }
    let usable = ctx
        .table(usable_table(input).as_str())
        .await
        .map_err(failed)?;
    let lines = if candidates.instants_known {
        at_instants(&usable, &candidates.instants).await?
    } else {
        None
    };
    let (lines, instants, order_ids) = match lines {
        Some(found) => found,
        None => {
            let (instants, order_ids) = candidate_keys(&usable, input, &candidates.hashes).await?;
            let Some(lines) = affected_lines(&usable, &instants, &order_ids).await? else {
                return Ok(Duplicates::TooMany);
            };
            (lines, instants, order_ids)
        }
    };
    let repeated = lines.iter().any(|batch| {
        batch
            .column_by_name(COPIES)
            .expect("the count column")
            .as_primitive::<Int64Type>()
            .values()
            .iter()
            .any(|copies| *copies > 1)
    });
    if !repeated {
        // Only look-alike hashes: no two rows are equal.
        return Ok(Duplicates::NoneFound);
    }
    Ok(Duplicates::Found(Arc::new(DuplicateLines {
        keys: vec![AffectedKeys {
            instants,
            order_ids,
        }],
        lines,
    })))
}

fn sort_dedup(instants: &mut Vec<ScalarValue>) {
    instants.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    instants.dedup();
}

/// Every distinct row at one of `instants`, with its number of copies; of
/// those, the rows that repeat (more than one copy) name the affected orders
/// and instants, and the affected rows are the rows of those orders at
/// those instants. Exact: a row with a copy is at one of `instants`, so it
/// is among the rows read. `None` when more than four times
/// [`MAX_AFFECTED_ROWS`] rows share the instants (timestamps to the day,
/// say): the caller then narrows by order first.
async fn at_instants(
    usable: &DataFrame,
    instants: &[ScalarValue],
) -> Result<Option<(Vec<RecordBatch>, Vec<ScalarValue>, Vec<String>)>, EngineError> {
    let limit = 4 * MAX_AFFECTED_ROWS as usize;
    let columns = every_column(usable);
    let rows = late_materialised(usable.clone())
        .filter(in_list(
            column_ref("ordered_at"),
            instants.iter().map(|i| lit(i.clone())).collect(),
            false,
        ))
        .map_err(failed)?
        .aggregate(columns, vec![count(lit(1)).alias(COPIES)])
        .map_err(failed)?
        .limit(0, Some(limit + 1))
        .map_err(failed)?
        .collect()
        .await
        .map_err(failed)?;
    if rows.iter().map(RecordBatch::num_rows).sum::<usize>() > limit {
        return Ok(None);
    }
    let mut order_ids = std::collections::BTreeSet::new();
    let mut repeated_instants = Vec::new();
    for batch in &rows {
        let ids = batch
            .column_by_name("order_id")
            .expect("order_id is canonical")
            .as_string::<i32>();
        let copies = batch
            .column_by_name(COPIES)
            .expect("the count column")
            .as_primitive::<Int64Type>();
        let at = batch
            .column_by_name("ordered_at")
            .expect("ordered_at is canonical");
        for row in 0..batch.num_rows() {
            if copies.value(row) > 1 {
                if ids.is_valid(row) {
                    order_ids.insert(ids.value(row).to_string());
                }
                repeated_instants.push(ScalarValue::try_from_array(at, row).map_err(failed)?);
            }
        }
    }
    sort_dedup(&mut repeated_instants);
    let affected_at: std::collections::HashSet<&ScalarValue> = repeated_instants.iter().collect();
    let mut lines = Vec::new();
    for batch in &rows {
        let ids = batch
            .column_by_name("order_id")
            .expect("order_id is canonical")
            .as_string::<i32>();
        let at = batch
            .column_by_name("ordered_at")
            .expect("ordered_at is canonical");
        let keep = (0..batch.num_rows())
            .map(|row| {
                let instant = ScalarValue::try_from_array(at, row)?;
                Ok(Some(
                    ids.is_valid(row)
                        && order_ids.contains(ids.value(row))
                        && affected_at.contains(&instant),
                ))
            })
            .collect::<Result<BooleanArray, datafusion::error::DataFusionError>>()
            .map_err(failed)?;
        let kept = filter_record_batch(batch, &keep).map_err(|e| failed(e.into()))?;
        if kept.num_rows() > 0 {
            lines.push(kept);
        }
    }
    if lines.iter().map(RecordBatch::num_rows).sum::<usize>() > MAX_AFFECTED_ROWS as usize {
        return Ok(None);
    }
    Ok(Some((
        lines,
        repeated_instants,
        order_ids.into_iter().collect(),
    )))
}

/// The instants and order ids of the candidates (a pass over the input).
async fn candidate_keys(
    usable: &DataFrame,
    input: &str,
    hashes: &[u64],
) -> Result<(Vec<ScalarValue>, Vec<String>), EngineError> {
    let keys = usable
        .clone()
        .filter(in_list(
            hash_of(usable, input),
            hash_literals(hashes),
            false,
        ))
        .map_err(failed)?
        .aggregate(
            vec![column_ref("ordered_at"), column_ref("order_id")],
            vec![],
        )
        .map_err(failed)?
        .collect()
        .await
        .map_err(failed)?;
    let mut instants = Vec::new();
    let mut order_ids = Vec::new();
    for batch in &keys {
        let ids = batch.column(1).as_string::<i32>();
        for row in 0..batch.num_rows() {
            instants.push(ScalarValue::try_from_array(batch.column(0), row).map_err(failed)?);
            if ids.is_valid(row) {
                order_ids.push(ids.value(row).to_string());
            }
        }
    }
    sort_dedup(&mut instants);
    order_ids.sort();
    order_ids.dedup();
    Ok((instants, order_ids))
}

/// The affected rows, grouped exactly with their copies (a pass over the
/// input); `None` when more than [`MAX_AFFECTED_ROWS`].
async fn affected_lines(
    usable: &DataFrame,
    instants: &[ScalarValue],
    order_ids: &[String],
) -> Result<Option<Vec<RecordBatch>>, EngineError> {
    let columns = every_column(usable);
    let lines = late_materialised(usable.clone())
        .filter(affected(&[AffectedKeys {
            instants: instants.to_vec(),
            order_ids: order_ids.to_vec(),
        }]))
        .map_err(failed)?
        .aggregate(columns, vec![count(lit(1)).alias(COPIES)])
        .map_err(failed)?
        .limit(0, Some(MAX_AFFECTED_ROWS as usize + 1))
        .map_err(failed)?
        .collect()
        .await
        .map_err(failed)?;
    let rows: usize = lines.iter().map(RecordBatch::num_rows).sum();
    Ok((rows as u64 <= MAX_AFFECTED_ROWS).then_some(lines))
}

/// `frame` read with the Parquet filter pushed into the scan: the filter's
/// columns are decoded first, the others only for the rows that pass. The
/// queries here keep a few hundred rows of millions, which a plain scan
/// would decode whole.
fn late_materialised(frame: DataFrame) -> DataFrame {
    let (mut state, plan) = frame.into_parts();
    let parquet = &mut state.config_mut().options_mut().execution.parquet;
    parquet.pushdown_filters = true;
    parquet.reorder_filters = true;
    DataFrame::new(state, plan)
}

/// A reference to every column of `frame`, in order.
fn every_column(frame: &DataFrame) -> Vec<Expr> {
    frame
        .schema()
        .fields()
        .iter()
        .map(|f| column_ref(f.name()))
        .collect()
}

fn hash_literals(hashes: &[u64]) -> Vec<Expr> {
    hashes
        .iter()
        .map(|hash| lit(ScalarValue::UInt64(Some(*hash))))
        .collect()
}

/// Whether a row is affected: its instant and its order id are in one set
/// of `keys`. The instant is tested first (a comparison of integers), then
/// which set holds it, and the order id only for the few rows that pass.
fn affected(keys: &[AffectedKeys]) -> Expr {
    let in_instants = |keys: &AffectedKeys| {
        in_list(
            column_ref("ordered_at"),
            keys.instants.iter().map(|i| lit(i.clone())).collect(),
            false,
        )
    };
    let in_orders = |keys: &AffectedKeys| {
        in_list(
            column_ref("order_id"),
            keys.order_ids.iter().map(|id| lit(id.as_str())).collect(),
            false,
        )
    };
    let by_set = match keys {
        [one] => in_orders(one),
        _ => {
            let mut sets = keys.iter();
            let first = sets.next().expect("at least one set of keys");
            sets.fold(
                when(in_instants(first), in_orders(first)),
                |mut case, keys| {
                    case.when(in_instants(keys), in_orders(keys));
                    case
                },
            )
            .otherwise(lit(false))
            .expect("a CASE with branches")
        }
    };
    let every_instant = AffectedKeys {
        instants: keys.iter().flat_map(|k| k.instants.clone()).collect(),
        order_ids: Vec::new(),
    };
    when(in_instants(&every_instant), by_set)
        .otherwise(lit(false))
        .expect("a CASE with one branch")
}

/// The canonical view of `input` with each duplicated line once: the rows
/// not affected, then every distinct affected row once, as literal rows.
/// Exact: a row with a copy is a candidate, so it and its copies are
/// affected; an unaffected row therefore equals no other row.
pub(super) async fn without_duplicates(
    ctx: &SessionContext,
    input: &str,
    duplicates: &DuplicateLines,
) -> Result<DataFrame, EngineError> {
    let setup = EngineError::Setup;
    let usable = ctx
        .table(usable_table(input).as_str())
        .await
        .map_err(setup)?;
    let unique = usable
        .clone()
        .filter(not(affected(&duplicates.keys)))
        .map_err(setup)?;
    let schema = usable.schema().clone();
    let mut rows = Vec::new();
    for batch in &duplicates.lines {
        for row in 0..batch.num_rows() {
            let values = schema
                .fields()
                .iter()
                .map(|field| {
                    let column = batch
                        .column_by_name(field.name())
                        .expect("affected rows carry every usable column");
                    ScalarValue::try_from_array(column, row).map(lit)
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(setup)?;
            rows.push(values);
        }
    }
    // Literal rows named `column1`, `column2`, … then renamed: a Values plan
    // built with the view's schema loses its names when the optimizer
    // prunes its columns (DataFusion 55).
    let once = LogicalPlanBuilder::values(rows)
        .and_then(|plan| {
            plan.project(schema.fields().iter().enumerate().map(|(index, field)| {
                cast(
                    column_ref(&format!("column{}", index + 1)),
                    field.data_type().clone(),
                )
                .alias(field.name())
            }))
        })
        .and_then(|plan| plan.build())
        .map_err(setup)?;
    unique
        .union(DataFrame::new(ctx.state(), once))
        .map_err(setup)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{
        Date32Array, Decimal128Array, StringArray, TimestampMicrosecondArray,
    };
    use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};
    use datafusion::datasource::MemTable;

    const INSTANT_TYPE: DataType = DataType::Timestamp(TimeUnit::Microsecond, None);
    const MICROS_PER_DAY: i64 = 86_400_000_000;

    /// A usable `transactions` view of (customer, order, instant, cents).
    fn session(rows: &[(&str, &str, i64, i128)]) -> SessionContext {
        let schema = Arc::new(Schema::new(vec![
            Field::new("customer_id", DataType::Utf8, true),
            Field::new("order_id", DataType::Utf8, true),
            Field::new("ordered_at", INSTANT_TYPE, true),
            Field::new("amount", DataType::Decimal128(18, 2), true),
            Field::new("ordered_date", DataType::Date32, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    rows.iter().map(|r| r.2),
                )),
                Arc::new(
                    Decimal128Array::from_iter_values(rows.iter().map(|r| r.3))
                        .with_precision_and_scale(18, 2)
                        .unwrap(),
                ),
                Arc::new(Date32Array::from_iter_values(
                    rows.iter().map(|r| (r.2 / MICROS_PER_DAY) as i32),
                )),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new();
        let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
        ctx.register_table(usable_table("transactions").as_str(), Arc::new(table))
            .unwrap();
        ctx
    }

    /// Candidates as a filter flags them: (hash, instant) per flagged row.
    fn flagged(rows: &[(u64, i64)]) -> Candidates {
        let flagged = Flagged {
            hashes: rows.iter().map(|r| r.0).collect(),
            instants: rows.iter().map(|r| r.1).collect(),
        };
        Candidates::flagged(&flagged, &INSTANT_TYPE).unwrap()
    }

    #[tokio::test]
    async fn a_false_positive_alone_finds_no_duplicate() {
        let ctx = session(&[("c1", "o1", 10, 500), ("c2", "o2", 20, 700)]);
        // The filter flagged the second row though no row equals it.
        let found = resolve(&ctx, "transactions", flagged(&[(99, 20)]))
            .await
            .unwrap();
        assert!(matches!(found, Duplicates::NoneFound), "{found:?}");
    }

    #[tokio::test]
    async fn only_the_orders_and_instants_of_repeated_rows_are_affected() {
        let ctx = session(&[
            ("c1", "o1", 10, 500),
            ("c1", "o1", 10, 500), // a copy
            ("c1", "o1", 10, 200), // another line of the same order and instant
            ("c2", "o2", 20, 700), // flagged by a false positive
            ("c2", "o2", 20, 100),
        ]);
        let found = resolve(&ctx, "transactions", flagged(&[(1, 10), (2, 20)]))
            .await
            .unwrap();
        let Duplicates::Found(lines) = found else {
            panic!("{found:?}");
        };
        assert_eq!(lines.keys.len(), 1);
        assert_eq!(lines.keys[0].order_ids, vec!["o1".to_string()]);
        assert_eq!(
            lines.keys[0].instants,
            vec![ScalarValue::TimestampMicrosecond(Some(10), None)]
        );
        let copies: Vec<(i128, u64)> = lines
            .extra_copies()
            .iter()
            .map(|c| (c.amount_cents, c.copies))
            .collect();
        assert_eq!(copies, vec![(500, 1)]);
        // The affected rows are the order's two distinct lines, nothing of o2.
        let affected: usize = lines
            .repeated_lines()
            .iter()
            .map(RecordBatch::num_rows)
            .sum();
        assert_eq!(affected, 2);
    }

    #[tokio::test]
    async fn duplicates_found_month_by_month_keep_a_line_of_one_month_under_an_order_of_another() {
        // January: a sale sent twice. February: its refund under the same
        // order id (once), and another sale sent twice.
        let (january, february) = (20_000 * MICROS_PER_DAY, 20_040 * MICROS_PER_DAY);
        let ctx = session(&[
            ("c1", "o1", january, 500),
            ("c1", "o1", january, 500),
            ("c1", "o1", february, -500),
            ("c2", "o2", february, 700),
            ("c2", "o2", february, 700),
        ]);
        // Each month searched on its own, as runs that count one month do.
        let mut months = Vec::new();
        for (hash, instant) in [(1, january), (2, february)] {
            let Duplicates::Found(lines) =
                resolve(&ctx, "transactions", flagged(&[(hash, instant)]))
                    .await
                    .unwrap()
            else {
                panic!("a month with a copy");
            };
            let by_month = lines.by_month().unwrap();
            assert_eq!(by_month.len(), 1, "one search, one month");
            months.extend(by_month.into_values());
        }
        let Duplicates::Found(both) = DuplicateLines::of_months(months).unwrap() else {
            panic!("two months with copies");
        };
        assert_eq!(both.keys.len(), 2, "a set of keys per month");
        let view = without_duplicates(&ctx, "transactions", &both)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mut rows: Vec<(String, i128)> = view
            .iter()
            .flat_map(|batch| {
                let ids = batch.column_by_name("order_id").unwrap().as_string::<i32>();
                let amounts = batch
                    .column_by_name("amount")
                    .unwrap()
                    .as_primitive::<Decimal128Type>();
                (0..batch.num_rows())
                    .map(|row| (ids.value(row).to_string(), amounts.value(row)))
                    .collect::<Vec<_>>()
            })
            .collect();
        rows.sort();
        // The refund is neither a copy nor an affected row of February's
        // search (o1 is January's order): it stays, once.
        assert_eq!(
            rows,
            [
                ("o1".to_string(), -500),
                ("o1".to_string(), 500),
                ("o2".to_string(), 700)
            ]
        );
    }
}

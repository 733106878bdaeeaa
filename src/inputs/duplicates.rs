//! Exact duplicate lines (docs/design.md §7: a line that repeats another in
//! every canonical column counts once): found once per input by row hash,
//! then removed from the canonical view without a DISTINCT over every row.
//!
//! Real exports carry a few repeated lines (0.002% is typical). A DISTINCT
//! over every column of every line (a hash table of wide string rows,
//! recomputed by every query that reads the view, spilling under a memory
//! limit) made such a run eight times slower than the same run without
//! them. Here the rows whose hash is shared by another row (the
//! *candidates*: every copy of a duplicated line, and rarely rows whose
//! hashes collide) are found once. Their `(ordered_at, order_id)` pick the
//! *affected* rows (candidates, and the other lines of their orders at the
//! same instant), which are collected once and compared column by column.
//! The view is then the rows that are not affected — a condition on two
//! columns every query reads anyway, so a query still reads only the
//! columns it needs — plus each distinct affected row once. Only when the
//! affected rows are too many to hold does the view fall back to the exact
//! DISTINCT.

use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Date32Type, Decimal128Type, Int64Type, UInt64Type};
use datafusion::common::Column;
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, cast, in_list, lit, not, when};
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::scalar::ScalarValue;

use super::checked::usable_table;
use crate::config::canonical_columns;
use crate::engine::EngineError;
use crate::engine::functions::row_hash;

/// More affected rows than this and the canonical view keeps the exact
/// DISTINCT over every column: the affected rows are held in memory and
/// planned as literal rows (a few hundred bytes each).
pub const MAX_AFFECTED_ROWS: u64 = 100_000;

/// The number of copies of each distinct candidate line.
const COPIES: &str = "__copies";
const HASH: &str = "__row_hash";

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
    /// `ordered_at` of the candidates.
    instants: Vec<ScalarValue>,
    /// `order_id` of the candidates.
    order_ids: Vec<String>,
    /// The distinct affected rows: the usable columns of the input
    /// (canonical ones and the local date), then `__copies`.
    lines: Vec<RecordBatch>,
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

/// The row hash of the canonical columns of `input`.
fn hash_of(input: &str) -> Expr {
    row_hash(
        canonical_columns(input)
            .iter()
            .map(|c| column_ref(c.name))
            .collect(),
    )
}

/// Whether the `usable_rows` usable rows of `input` may hold exact
/// duplicate lines. `false` is certain: the rows have as many distinct
/// row hashes as there are rows, so no two rows are equal. `true` means
/// some rows share a hash: duplicates, or (rarely) different rows whose
/// hashes collide — [`find`] then tells.
/// A DISTINCT over one 64-bit value instead of over every column; the
/// distinct hashes are the only state (no count per hash), which halves what
/// the aggregation holds and spills on a billion lines.
pub async fn may_have_duplicates(
    ctx: &SessionContext,
    input: &str,
    usable_rows: u64,
) -> Result<bool, EngineError> {
    let distinct_hashes = ctx
        .table(usable_table(input).as_str())
        .await
        .map_err(failed)?
        .select(vec![hash_of(input).alias(HASH)])
        .map_err(failed)?
        .aggregate(vec![column_ref(HASH)], vec![])
        .map_err(failed)?
        .count()
        .await
        .map_err(failed)?;
    Ok((distinct_hashes as u64) < usable_rows)
}

/// The exact duplicate lines of `input`'s usable rows, in three passes: the
/// hashes shared by several rows; the instants and order ids of those rows;
/// the rows affected, compared column by column.
pub async fn find(ctx: &SessionContext, input: &str) -> Result<Duplicates, EngineError> {
    let usable = ctx
        .table(usable_table(input).as_str())
        .await
        .map_err(failed)?;
    let shared = usable
        .clone()
        .select(vec![hash_of(input).alias(HASH)])
        .map_err(failed)?
        .aggregate(vec![column_ref(HASH)], vec![count(lit(1)).alias(COPIES)])
        .map_err(failed)?
        .filter(column_ref(COPIES).gt(lit(1i64)))
        .map_err(failed)?
        .collect()
        .await
        .map_err(failed)?;
    let mut hashes = Vec::new();
    let mut candidates = 0u64;
    for batch in &shared {
        let values = batch.column(0).as_primitive::<UInt64Type>();
        let copies = batch.column(1).as_primitive::<Int64Type>();
        hashes.extend(
            values
                .values()
                .iter()
                .map(|h| lit(ScalarValue::UInt64(Some(*h)))),
        );
        candidates += copies.values().iter().map(|c| *c as u64).sum::<u64>();
    }
    if hashes.is_empty() {
        return Ok(Duplicates::NoneFound);
    }
    if candidates > MAX_AFFECTED_ROWS {
        return Ok(Duplicates::TooMany);
    }
    let keys = usable
        .clone()
        .filter(in_list(hash_of(input), hashes, false))
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
        for row in 0..batch.num_rows() {
            instants.push(ScalarValue::try_from_array(batch.column(0), row).map_err(failed)?);
            let ids = batch.column(1).as_string::<i32>();
            if ids.is_valid(row) {
                order_ids.push(ids.value(row).to_string());
            }
        }
    }
    instants.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    instants.dedup();
    order_ids.sort();
    order_ids.dedup();
    let columns: Vec<Expr> = usable
        .schema()
        .fields()
        .iter()
        .map(|f| column_ref(f.name()))
        .collect();
    let lines = usable
        .filter(affected(&instants, &order_ids))
        .map_err(failed)?
        .aggregate(columns, vec![count(lit(1)).alias(COPIES)])
        .map_err(failed)?
        .limit(0, Some(MAX_AFFECTED_ROWS as usize + 1))
        .map_err(failed)?
        .collect()
        .await
        .map_err(failed)?;
    let rows: usize = lines.iter().map(RecordBatch::num_rows).sum();
    if rows as u64 > MAX_AFFECTED_ROWS {
        return Ok(Duplicates::TooMany);
    }
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
        // Only hash collisions: no two rows are equal.
        return Ok(Duplicates::NoneFound);
    }
    Ok(Duplicates::Found(Arc::new(DuplicateLines {
        instants,
        order_ids,
        lines,
    })))
}

/// Whether a row is affected: its instant and its order id are among the
/// candidates'. The instant is tested first (a comparison of integers), the
/// order id only for the few rows that pass.
fn affected(instants: &[ScalarValue], order_ids: &[String]) -> Expr {
    let instants = instants.iter().map(|i| lit(i.clone())).collect();
    let order_ids = order_ids.iter().map(|id| lit(id.as_str())).collect();
    when(
        in_list(column_ref("ordered_at"), instants, false),
        in_list(column_ref("order_id"), order_ids, false),
    )
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
        .filter(not(affected(&duplicates.instants, &duplicates.order_ids)))
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

//! The comparative view of two published periods of one job (docs/design.md §1, "RFM
//! comparative"; `segments compare`): customers per segment in each period
//! with the delta, the transition matrix, lost and new customers, and the
//! evolution (better / same / watch) of every customer.
//!
//! Computed only from the published snapshots (read back with
//! [`publish::read_table`]) with the queries of `sql/compare/`; nothing is
//! written to the warehouse. The periods need not be consecutive.
//!
//! The ad hoc mode ([`compare_ranges`]) classifies two arbitrary date ranges
//! on the fly with the job's current rules instead (each range is then the
//! window: "active" = bought in the range), and feeds the same queries.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::NaiveDate;

use datafusion::arrow::array::{Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ParamValues;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::col;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

use super::DryRunError;
use crate::config::{Config, Job};
use crate::engine::{self, EngineError};
use crate::inputs;
use crate::model::ExitStatus;
use crate::model::Period;
use crate::model::table_schema;
use crate::pipeline::{self, Parameters, PipelineError};
use crate::storage::{StorageError, Warehouse};
use crate::warehouse::publish::{self, Manifest, PublishError};

/// The snapshot columns the comparison reads.
const SNAPSHOT_COLUMNS: [&str; 5] = [
    "customer_id",
    "segment",
    "segment_rank",
    "frequency",
    "monetary",
];

const CUSTOMERS_SQL: &str = include_str!("../../sql/compare/customers.sql");
const SEGMENTS_SQL: &str = include_str!("../../sql/compare/segments.sql");
const MATRIX_SQL: &str = include_str!("../../sql/compare/matrix.sql");
const OVERVIEW_SQL: &str = include_str!("../../sql/compare/overview.sql");

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error(
        "--from {from} must be an earlier period than --to {to}\nhint: give the older period as --from"
    )]
    Order { from: Period, to: Period },
    #[error(
        "{job} {period} is not published (no `_SUCCESS` under {job}/_runs/period={period}/ in the warehouse)\nhint: publish it first with `segments run --period {period}` or `segments backfill --from … --to …`"
    )]
    NotPublished { job: String, period: Period },
    #[error(
        "{job} {period} is published but has no `snapshots` table: the comparison needs the job to list `snapshots` in its outputs"
    )]
    NoSnapshot { job: String, period: Period },
    #[error(
        "--range {first} and --against {second}: the second range must end after the first and not start before it"
    )]
    RangeOrder { first: DateRange, second: DateRange },
    /// Reading the inputs or classifying a range (ad hoc mode).
    #[error(transparent)]
    Run(Box<DryRunError>),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("comparative view, query `sql/compare/{query}.sql`")]
    Query {
        query: &'static str,
        #[source]
        source: DataFusionError,
    },
}

impl CompareError {
    /// Exit codes of docs/design.md §6: a period that is not published is a bad
    /// argument (2); storage failures are 4.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            CompareError::Order { .. }
            | CompareError::RangeOrder { .. }
            | CompareError::NotPublished { .. }
            | CompareError::NoSnapshot { .. } => ExitStatus::Invalid,
            CompareError::Run(error) => error.exit_status(),
            CompareError::Storage(_) | CompareError::Publish(PublishError::Storage(_)) => {
                ExitStatus::Storage
            }
            _ => ExitStatus::Internal,
        }
    }
}

impl From<EngineError> for CompareError {
    fn from(error: EngineError) -> Self {
        CompareError::Run(Box::new(error.into()))
    }
}

impl From<PipelineError> for CompareError {
    fn from(error: PipelineError) -> Self {
        CompareError::Run(Box::new(error.into()))
    }
}

/// An ad hoc date range, both days included: `YYYY-MM-DD..YYYY-MM-DD`, or
/// whole months `YYYY-MM..YYYY-MM` (first day of the first month to the last
/// day of the second).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    pub start: NaiveDate,
    pub end: NaiveDate,
}

impl fmt::Display for DateRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

impl FromStr for DateRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "'{text}' is not a date range: write YYYY-MM-DD..YYYY-MM-DD (both days included) or YYYY-MM..YYYY-MM (whole months)"
            )
        };
        let (a, b) = text.split_once("..").ok_or_else(bad)?;
        let range = match (
            NaiveDate::parse_from_str(a, "%Y-%m-%d"),
            NaiveDate::parse_from_str(b, "%Y-%m-%d"),
        ) {
            (Ok(start), Ok(end)) if a.len() == 10 && b.len() == 10 => DateRange { start, end },
            _ => {
                let a: Period = a.parse().map_err(|_| bad())?;
                let b: Period = b.parse().map_err(|_| bad())?;
                DateRange {
                    start: a.start(),
                    end: b.as_of_date(),
                }
            }
        };
        if range.start > range.end {
            return Err(format!("'{text}': the range ends before it starts"));
        }
        Ok(range)
    }
}

/// What one side of a comparison is.
#[derive(Debug, Clone)]
pub enum SideKind {
    /// A published period and the run that published it.
    Published {
        period: Period,
        run_id: String,
        published_at: String,
    },
    /// An ad hoc range classified on the fly.
    Range(DateRange),
}

/// One side of the comparison.
#[derive(Debug, Clone)]
pub struct Side {
    pub kind: SideKind,
    /// The rule hash of the published run, or of the current job and config.
    pub rule_hash: String,
}

impl Side {
    fn of(period: Period, manifest: &Manifest) -> Self {
        Side {
            kind: SideKind::Published {
                period,
                run_id: manifest.run_id.clone(),
                published_at: manifest.published_at.clone(),
            },
            rule_hash: manifest.rule_hash.clone(),
        }
    }

    /// `YYYY-MM` or `YYYY-MM-DD..YYYY-MM-DD`.
    pub fn label(&self) -> String {
        match &self.kind {
            SideKind::Published { period, .. } => period.to_string(),
            SideKind::Range(range) => range.to_string(),
        }
    }
}

/// The comparative view: four tables (see `sql/compare/`).
#[derive(Debug, Clone)]
pub struct Comparison {
    pub job: String,
    pub from: Side,
    pub to: Side,
    /// Whether both periods were published with the same rules; when not,
    /// segments with the same name may not mean the same thing.
    pub same_rules: bool,
    /// One row: customers, active, new, lost, reactivated, removed, better,
    /// same, watch.
    pub overview: RecordBatch,
    /// One row per segment: customers in each period, delta, shares.
    pub segments: RecordBatch,
    /// Non-empty from × to cells, `(new)` first and `(removed)` last.
    pub matrix: RecordBatch,
    /// One row per customer of either period: both sides, movement, evolution.
    pub customers: RecordBatch,
}

/// The tables of a [`Comparison`] by name, in display order.
pub const TABLES: [&str; 4] = ["overview", "segments", "matrix", "customers"];

impl Comparison {
    pub fn table(&self, name: &str) -> Option<&RecordBatch> {
        match name {
            "overview" => Some(&self.overview),
            "segments" => Some(&self.segments),
            "matrix" => Some(&self.matrix),
            "customers" => Some(&self.customers),
            _ => None,
        }
    }
}

fn query_error(query: &'static str) -> impl Fn(DataFusionError) -> CompareError {
    move |source| CompareError::Query { query, source }
}

/// The published snapshot of `period`, reduced to [`SNAPSHOT_COLUMNS`].
async fn snapshot(
    warehouse: &Warehouse,
    job: &Job,
    period: Period,
) -> Result<(Manifest, MemTable), CompareError> {
    let manifest = publish::published_manifest(warehouse, &job.name, period)
        .await?
        .ok_or_else(|| CompareError::NotPublished {
            job: job.name.clone(),
            period,
        })?;
    let batches = publish::read_table(warehouse, &job.name, "snapshots", period)
        .await?
        .ok_or_else(|| CompareError::NoSnapshot {
            job: job.name.clone(),
            period,
        })?;
    let contract: SchemaRef = table_schema(crate::model::OutputTable::Snapshots).schema;
    let projection: Vec<usize> = SNAPSHOT_COLUMNS
        .iter()
        .map(|c| contract.index_of(c).expect("snapshot contract column"))
        .collect();
    let schema = Arc::new(
        contract
            .project(&projection)
            .map_err(|e| CompareError::Query {
                query: "snapshots",
                source: e.into(),
            })?,
    );
    let mut projected = Vec::new();
    for batch in batches {
        let indices: Vec<usize> = SNAPSHOT_COLUMNS
            .iter()
            .map(|c| batch.schema().index_of(c))
            .collect::<Result<_, _>>()
            .map_err(|e| PublishError::Corrupt {
                what: format!("snapshots of {} {period}", job.name),
                message: e.to_string(),
            })?;
        let batch = batch.project(&indices).map_err(|e| PublishError::Corrupt {
            what: format!("snapshots of {} {period}", job.name),
            message: e.to_string(),
        })?;
        // The published file follows the contract; rebuild with its exact
        // schema so that both sides line up.
        projected.push(
            RecordBatch::try_new(schema.clone(), batch.columns().to_vec()).map_err(|e| {
                PublishError::Corrupt {
                    what: format!("snapshots of {} {period}", job.name),
                    message: e.to_string(),
                }
            })?,
        );
    }
    let table = MemTable::try_new(schema, vec![projected]).map_err(query_error("snapshots"))?;
    Ok((manifest, table))
}

/// The job's segments and ranks as a table (`segment`, `segment_rank`), for
/// the comparison queries of `compare` and `diff`.
pub(crate) fn definitions(job: &Job) -> Result<MemTable, DataFusionError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("segment", DataType::Utf8, false),
        Field::new("segment_rank", DataType::Int32, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(
                job.segments.iter().map(|s| s.name.as_str()),
            )),
            Arc::new(Int32Array::from_iter_values(
                job.segments.iter().map(|s| s.rank),
            )),
        ],
    )?;
    MemTable::try_new(schema, vec![vec![batch]])
}

async fn run(
    ctx: &SessionContext,
    query: &'static str,
    sql: &str,
    params: &ParamValues,
) -> Result<RecordBatch, CompareError> {
    let fail = query_error(query);
    engine::query_one(ctx, sql, Some(params.clone()))
        .await
        .map_err(&fail)
}

/// Compare the published periods `from` and `to` (`from` < `to`) of `job`.
/// `ctx` is a fresh session: the comparison registers its own tables in it.
pub async fn compare(
    ctx: &SessionContext,
    warehouse: &Warehouse,
    job: &Job,
    from: Period,
    to: Period,
) -> Result<Comparison, CompareError> {
    if from >= to {
        return Err(CompareError::Order { from, to });
    }
    let (from_manifest, from_table) = snapshot(warehouse, job, from).await?;
    let (to_manifest, to_table) = snapshot(warehouse, job, to).await?;
    views(
        ctx,
        job,
        Side::of(from, &from_manifest),
        Side::of(to, &to_manifest),
        from_table,
        to_table,
    )
    .await
}

/// Classify `first` and `second` on the fly with the job's current rules and
/// compare them (ad hoc mode). Reads the job's inputs; writes nothing.
pub async fn compare_ranges(
    ctx: &SessionContext,
    config: &Config,
    job: &Job,
    first: DateRange,
    second: DateRange,
) -> Result<Comparison, CompareError> {
    if second.end <= first.end || second.start < first.start {
        return Err(CompareError::RangeOrder { first, second });
    }
    let rule_hash = job.rule_hash(config);
    let mut tables = Vec::new();
    for range in [first, second] {
        // Each range sees its inputs as a run ending with it would: merges
        // and known lines as of the day after its last day, in a session of
        // its own (the preparation rewrites the input views).
        let range_ctx = engine::session(config)?;
        let range_end = range.end.succ_opt().expect("a date before the end of time");
        inputs::prepare(&range_ctx, config, &job.inputs, range_end).await?;
        let params = Parameters::for_range(range.start, range.end);
        let classified = pipeline::classify(&range_ctx, job, &params).await?;
        let batches = classified
            .select(SNAPSHOT_COLUMNS.iter().map(|c| col(*c)).collect::<Vec<_>>())
            .map_err(query_error("snapshots"))?
            .collect()
            .await
            .map_err(query_error("snapshots"))?;
        let contract: SchemaRef = table_schema(crate::model::OutputTable::Snapshots).schema;
        let projection: Vec<usize> = SNAPSHOT_COLUMNS
            .iter()
            .map(|c| contract.index_of(c).expect("snapshot contract column"))
            .collect();
        let schema = Arc::new(
            contract
                .project(&projection)
                .map_err(|e| query_error("snapshots")(e.into()))?,
        );
        let batches = batches
            .into_iter()
            .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| query_error("snapshots")(e.into()))?;
        tables.push(MemTable::try_new(schema, vec![batches]).map_err(query_error("snapshots"))?);
    }
    let second_table = tables.pop().expect("two ranges");
    let first_table = tables.pop().expect("two ranges");
    let side = |range| Side {
        kind: SideKind::Range(range),
        rule_hash: rule_hash.clone(),
    };
    views(
        ctx,
        job,
        side(first),
        side(second),
        first_table,
        second_table,
    )
    .await
}

/// Run the queries of `sql/compare/` over the two sides.
async fn views(
    ctx: &SessionContext,
    job: &Job,
    from: Side,
    to: Side,
    from_table: MemTable,
    to_table: MemTable,
) -> Result<Comparison, CompareError> {
    let setup = query_error("(setup)");
    ctx.register_table("from_snapshot", Arc::new(from_table))
        .map_err(&setup)?;
    ctx.register_table("to_snapshot", Arc::new(to_table))
        .map_err(&setup)?;
    ctx.register_table(
        "segment_definitions",
        Arc::new(definitions(job).map_err(&setup)?),
    )
    .map_err(&setup)?;

    let params = ParamValues::from(HashMap::from([
        (
            "from_period".to_string(),
            ScalarValue::Utf8(Some(from.label())),
        ),
        ("to_period".to_string(), ScalarValue::Utf8(Some(to.label()))),
    ]));
    let customers = run(ctx, "customers", CUSTOMERS_SQL, &params).await?;
    let customers_table =
        MemTable::try_new(customers.schema(), vec![vec![customers.clone()]]).map_err(&setup)?;
    ctx.register_table("customers", Arc::new(customers_table))
        .map_err(&setup)?;
    let segments = run(ctx, "segments", SEGMENTS_SQL, &params).await?;
    let matrix = run(ctx, "matrix", MATRIX_SQL, &params).await?;
    let overview = run(ctx, "overview", OVERVIEW_SQL, &params).await?;
    Ok(Comparison {
        job: job.name.clone(),
        same_rules: from.rule_hash == to.rule_hash,
        from,
        to,
        overview,
        segments,
        matrix,
        customers,
    })
}

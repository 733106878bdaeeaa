//! The comparative view of two published periods of one job (DESIGN §1, "RFM
//! comparative"; `segments compare`): customers per segment in each period
//! with the delta, the transition matrix, lost and new customers, and the
//! evolution (better / same / watch) of every customer.
//!
//! Computed only from the published snapshots (read back with
//! [`publish::read_table`]) with the queries of `sql/compare/`; nothing is
//! written to the warehouse. The periods need not be consecutive.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Int32Array, RecordBatch, StringArray};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ParamValues;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;

use crate::config::Job;
use crate::outputs::table_schema;
use crate::period::Period;
use crate::pipeline::sql_options;
use crate::publish::{self, Manifest, PublishError};
use crate::storage::{StorageError, Warehouse};

/// The snapshot columns the comparison reads.
const SNAPSHOT_COLUMNS: [&str; 5] = [
    "customer_id",
    "segment",
    "segment_rank",
    "frequency",
    "monetary",
];

const CUSTOMERS_SQL: &str = include_str!("../sql/compare/customers.sql");
const SEGMENTS_SQL: &str = include_str!("../sql/compare/segments.sql");
const MATRIX_SQL: &str = include_str!("../sql/compare/matrix.sql");
const OVERVIEW_SQL: &str = include_str!("../sql/compare/overview.sql");

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
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("comparative view, query `sql/compare/{query}.sql`: {source}")]
    Query {
        query: &'static str,
        #[source]
        source: DataFusionError,
    },
}

impl CompareError {
    /// Exit codes of DESIGN §6: a period that is not published is a bad
    /// argument (2); storage failures are 4.
    pub fn exit_code(&self) -> u8 {
        match self {
            CompareError::Order { .. }
            | CompareError::NotPublished { .. }
            | CompareError::NoSnapshot { .. } => 2,
            CompareError::Storage(_) | CompareError::Publish(PublishError::Storage(_)) => 4,
            _ => 1,
        }
    }
}

/// One side of the comparison: the period and the run that published it.
#[derive(Debug, Clone)]
pub struct Side {
    pub period: Period,
    pub run_id: String,
    pub published_at: String,
    pub rule_hash: String,
}

impl Side {
    fn of(period: Period, manifest: &Manifest) -> Self {
        Side {
            period,
            run_id: manifest.run_id.clone(),
            published_at: manifest.published_at.clone(),
            rule_hash: manifest.rule_hash.clone(),
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
    let contract: SchemaRef = table_schema("snapshots").schema;
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

fn definitions(job: &Job) -> Result<MemTable, DataFusionError> {
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
    let frame = ctx
        .sql_with_options(sql, sql_options())
        .await
        .map_err(&fail)?
        .with_param_values(params.clone())
        .map_err(&fail)?;
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await.map_err(&fail)?;
    concat_batches(&schema, &batches).map_err(|e| fail(e.into()))
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
            ScalarValue::Utf8(Some(from.to_string())),
        ),
        (
            "to_period".to_string(),
            ScalarValue::Utf8(Some(to.to_string())),
        ),
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
        same_rules: from_manifest.rule_hash == to_manifest.rule_hash,
        from: Side::of(from, &from_manifest),
        to: Side::of(to, &to_manifest),
        overview,
        segments,
        matrix,
        customers,
    })
}

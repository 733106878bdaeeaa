//! Builds a period's tables from the classified customers and the "from"
//! side, with the queries in `sql/outputs/`, each result conformed to its
//! contract. Nothing here writes: publishing is a separate step.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::datasource::MemTable;
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::scalar::ScalarValue;
use futures::StreamExt;

use super::OutputError;
use crate::config::{FixedBands, Incremental, Job, Locale, OutputTable, Scoring, SqlOrigin, Step};
use crate::model::table_schema;
use crate::pipeline::Parameters;
use crate::warehouse::TableData;
use crate::warehouse::parquet::ParquetEncoder;

const TRANSITIONS_SQL: &str = include_str!("../../sql/outputs/transitions.sql");
const STORE_ORDER_DAYS_SQL: &str = include_str!("../../sql/outputs/store_order_days.sql");
/// What the store order days count: see [`store_order_days`].
const STORE_ORDER_LINES: &str = "__store_order_lines";
const STORE_ORDER_LINES_SQL: &str = include_str!("../../sql/outputs/store_order_lines.sql");
/// The name of the store order lines as month facts (`_facts/store-orders/`;
/// not a valid step name, so no step of a job has it).
pub const STORE_ORDERS_FACTS: &str = "store-orders";
/// What the store summary reads: see [`share_store_orders`].
const STORE_ORDER_DAYS: &str = "__store_order_days";
/// What the store summary groups: see [`register_store_sides`].
const STORE_SIDES: &str = "__store_sides";
const STORE_SIDES_SQL: &str = include_str!("../../sql/outputs/store_sides.sql");
const STORE_SIDES_SORTED_SQL: &str = include_str!("../../sql/outputs/store_sides_sorted.sql");
const SCORE_THRESHOLDS_FIXED_SQL: &str =
    include_str!("../../sql/outputs/score_thresholds_fixed.sql");

fn query_of(table: OutputTable) -> Option<&'static str> {
    Some(match table {
        OutputTable::Snapshots => include_str!("../../sql/outputs/snapshots.sql"),
        OutputTable::Migrations => include_str!("../../sql/outputs/migrations.sql"),
        OutputTable::MigrationMatrix => include_str!("../../sql/outputs/migration_matrix.sql"),
        OutputTable::SegmentSummary => include_str!("../../sql/outputs/segment_summary.sql"),
        OutputTable::ScoreThresholds => include_str!("../../sql/outputs/score_thresholds.sql"),
        OutputTable::SegmentDefinitions => {
            include_str!("../../sql/outputs/segment_definitions.sql")
        }
        OutputTable::StoreSummary => include_str!("../../sql/outputs/store_summary.sql"),
        OutputTable::Audiences => include_str!("../../sql/outputs/audiences.sql"),
        // Built from the inputs by the runner, not from the classification.
        OutputTable::Rejects => return None,
        // Built by the predictive models (`crate::predict::tables`).
        OutputTable::Predictions | OutputTable::ModelParameters => return None,
    })
}

/// Everything a period publishes, plus what the run summary prints.
#[derive(Debug, Clone)]
pub struct PeriodTables {
    pub tables: Vec<TableData>,
    /// (segment, customers) in rank order; (audience, contacts) for an
    /// audiences job.
    pub segment_counts: Vec<(String, i64)>,
    /// (movement, customers) in a fixed order; empty for an audiences job.
    pub movement_counts: Vec<(String, i64)>,
    /// Customers classified; contacts in at least one audience for an
    /// audiences job.
    pub customers: i64,
}

impl PeriodTables {
    pub fn get(&self, table: OutputTable) -> Option<&TableData> {
        self.tables.iter().find(|t| t.table == table)
    }

    /// The rows of `table`, decoded, if the period has it.
    pub fn batch(&self, table: OutputTable) -> Result<Option<RecordBatch>, OutputError> {
        Ok(self.get(table).map(TableData::batch).transpose()?)
    }
}

fn definitions_table(job: &Job) -> Result<MemTable, datafusion::error::DataFusionError> {
    let mut fields = vec![
        Field::new("segment", DataType::Utf8, false),
        Field::new("segment_rank", DataType::Int32, false),
        Field::new("label", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, false),
        Field::new("rule", DataType::Utf8, false),
    ];
    let strings = |values: Vec<&str>| -> ArrayRef { Arc::new(StringArray::from(values)) };
    let mut columns = vec![
        strings(job.segments.iter().map(|s| s.name.as_str()).collect()),
        Arc::new(datafusion::arrow::array::Int32Array::from_iter_values(
            job.segments.iter().map(|s| s.rank),
        )) as ArrayRef,
        strings(
            job.segments
                .iter()
                .map(|s| s.label.default.as_str())
                .collect(),
        ),
        strings(
            job.segments
                .iter()
                .map(|s| s.description.default.as_str())
                .collect(),
        ),
        strings(job.segments.iter().map(|s| s.rule.as_str()).collect()),
    ];
    // One label and one description column per supported locale
    // (`label_en`, `label_fr`, …), each falling back on the default text.
    for locale in Locale::ALL {
        fields.push(Field::new(
            format!("label_{}", locale.code()),
            DataType::Utf8,
            false,
        ));
        columns.push(strings(
            job.segments.iter().map(|s| s.label.get(locale)).collect(),
        ));
    }
    for locale in Locale::ALL {
        fields.push(Field::new(
            format!("description_{}", locale.code()),
            DataType::Utf8,
            false,
        ));
        columns.push(strings(
            job.segments
                .iter()
                .map(|s| s.description.get(locale))
                .collect(),
        ));
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    MemTable::try_new(schema, vec![vec![batch]])
}

/// The configured bands of `scoring: fixed` (see `score_thresholds_fixed.sql`).
fn bands_table(bands: &FixedBands) -> Result<MemTable, datafusion::error::DataFusionError> {
    use datafusion::arrow::array::{Int8Array, Int32Array};
    let schema = Arc::new(Schema::new(vec![
        Field::new("metric", DataType::Utf8, false),
        Field::new("metric_order", DataType::Int32, false),
        Field::new("score", DataType::Int8, false),
        Field::new("min_value", DataType::Utf8, true),
        Field::new("max_value", DataType::Utf8, true),
    ]));
    let rows = bands.bands();
    let order = |metric: &str| match metric {
        "recency" => 1,
        "frequency" => 2,
        _ => 3,
    };
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|b| b.metric))),
            Arc::new(Int32Array::from_iter_values(
                rows.iter().map(|b| order(b.metric)),
            )),
            Arc::new(Int8Array::from_iter_values(rows.iter().map(|b| b.score))),
            Arc::new(StringArray::from_iter(
                rows.iter().map(|b| b.min_value.as_deref()),
            )),
            Arc::new(StringArray::from_iter(
                rows.iter().map(|b| b.max_value.as_deref()),
            )),
        ],
    )?;
    MemTable::try_new(schema, vec![vec![batch]])
}

async fn run_query(
    ctx: &SessionContext,
    name: &str,
    sql: &str,
    params: &datafusion::common::ParamValues,
) -> Result<DataFrame, OutputError> {
    let query = |source| OutputError::Query {
        table: name.to_string(),
        source,
    };
    crate::engine::plan_sql(ctx, sql, Some(params.clone()))
        .await
        .map_err(query)
}

/// Build every output table the job declares for one period.
///
/// `current` is the classified frame of the period; `previous` has the "from"
/// side's `customer_id, segment, segment_rank, frequency, monetary`.
pub async fn build_period_tables(
    ctx: &SessionContext,
    job: &Job,
    params: &Parameters,
    current: DataFrame,
    previous: DataFrame,
    rule_hash: &str,
) -> Result<PeriodTables, OutputError> {
    let setup = |source| OutputError::Query {
        table: "(setup)".into(),
        source,
    };
    for name in [
        "classified",
        "previous",
        "segment_definitions",
        "transitions",
        "score_bands",
    ] {
        ctx.deregister_table(name).map_err(setup)?;
    }
    ctx.register_table("classified", current.into_view())
        .map_err(setup)?;
    ctx.register_table("previous", previous.into_view())
        .map_err(setup)?;
    ctx.register_table(
        "segment_definitions",
        Arc::new(definitions_table(job).map_err(setup)?),
    )
    .map_err(setup)?;

    if let Scoring::Fixed(bands) = &job.scoring {
        ctx.register_table("score_bands", Arc::new(bands_table(bands).map_err(setup)?))
            .map_err(setup)?;
    }

    let values = params.with_extra(vec![
        (
            "from_period",
            ScalarValue::Utf8(Some(params.period.previous().to_string())),
        ),
        ("rule_hash", ScalarValue::Utf8(Some(rule_hash.to_string()))),
    ]);
    let transitions = run_query(ctx, "transitions", TRANSITIONS_SQL, &values).await?;
    let transitions = crate::engine::keep(ctx, transitions)
        .await
        .map_err(|source| OutputError::Query {
            table: "transitions".into(),
            source,
        })?;
    ctx.register_table("transitions", transitions.into_view())
        .map_err(setup)?;

    if job.outputs.contains(&OutputTable::StoreSummary) {
        register_store_sides(ctx, &values, params.period.end()).await?;
    }
    let tables = output_tables(ctx, job, &values).await?;

    let segment_counts = counts(
        ctx,
        include_str!("../../sql/outputs/segment_counts.sql"),
        "segment counts",
        &values,
    )
    .await?;
    let movement_counts = counts(
        ctx,
        include_str!("../../sql/outputs/movement_counts.sql"),
        "movement counts",
        &values,
    )
    .await?;
    let customers = segment_counts.iter().map(|(_, n)| n).sum();
    Ok(PeriodTables {
        tables,
        segment_counts,
        movement_counts,
        customers,
    })
}

/// Register `__store_sides`, the customers of both sides with their home
/// stores, that the store summary groups: by a hash join
/// (`store_sides.sql`), or by a sort under a memory limit
/// (`store_sides_sorted.sql`), where the join could not spill.
async fn register_store_sides(
    ctx: &SessionContext,
    values: &datafusion::common::ParamValues,
    period_end: chrono::NaiveDate,
) -> Result<(), OutputError> {
    let failed = |source| OutputError::Query {
        table: STORE_SIDES.into(),
        source,
    };
    let memory_limited = crate::engine::memory_limited(ctx);
    // A run that shares no store orders (a run on its own, `validate`,
    // `diff`, a run with identity merges) merges them from their month
    // facts (an incremental job) or reads them from its own period's
    // lines. Under a memory limit they are computed first and kept on disk:
    // left as a view, their two groupings would run in the store summary's
    // plan, and the fair pool, which divides the memory among all the
    // operators of a plan, would leave the sort too small a share.
    if !ctx.table_exist(STORE_ORDER_DAYS).map_err(failed)? {
        let mut store_orders = store_order_days(ctx, values, Some(period_end)).await?;
        if memory_limited {
            store_orders = crate::engine::keep(ctx, store_orders)
                .await
                .map_err(failed)?;
        }
        ctx.register_table(STORE_ORDER_DAYS, store_orders.into_view())
            .map_err(failed)?;
    }
    let pool = match ctx.runtime_env().memory_pool.memory_limit() {
        datafusion::execution::memory_pool::MemoryLimit::Finite(bytes) => Some(bytes),
        _ => None,
    };
    let by_hash = match pool {
        Some(pool) if memory_limited => {
            // Counted from statistics: the transitions are kept.
            let customers = ctx
                .table("transitions")
                .await
                .map_err(failed)?
                .count()
                .await
                .map_err(failed)?;
            store_sides_fit_a_hash_join(pool, customers as u64)
        }
        _ => true,
    };
    let sql = if by_hash {
        STORE_SIDES_SQL
    } else {
        STORE_SIDES_SORTED_SQL
    };
    let sides = run_query(ctx, STORE_SIDES, sql, values).await?;
    ctx.deregister_table(STORE_SIDES).map_err(failed)?;
    ctx.register_table(STORE_SIDES, sides.into_view())
        .map_err(failed)?;
    Ok(())
}

/// The store order days (`store_order_days.sql`) over the store order lines:
/// merged from their month facts when the run prepared them up to
/// `period_end` ([`store_orders_step`]), else grouped from the lines.
async fn store_order_days(
    ctx: &SessionContext,
    values: &datafusion::common::ParamValues,
    period_end: Option<chrono::NaiveDate>,
) -> Result<DataFrame, OutputError> {
    let failed = |source| OutputError::Query {
        table: STORE_ORDER_LINES.into(),
        source,
    };
    let merged = period_end.and_then(|end| crate::facts::merged(ctx, STORE_ORDERS_FACTS, end));
    let lines = match merged {
        Some(frame) => frame.map_err(failed)?,
        None => run_query(ctx, STORE_ORDER_LINES, STORE_ORDER_LINES_SQL, values).await?,
    };
    ctx.deregister_table(STORE_ORDER_LINES).map_err(failed)?;
    ctx.register_table(STORE_ORDER_LINES, lines.into_view())
        .map_err(failed)?;
    run_query(ctx, STORE_ORDER_DAYS, STORE_ORDER_DAYS_SQL, values).await
}

/// The store order lines as a step computed per month, for a job that
/// writes the store summary: the run makes its month facts with those of
/// the job's incremental steps (`crate::facts::prepare`).
pub fn store_orders_step(job: &Job) -> Option<Step> {
    job.outputs
        .contains(&OutputTable::StoreSummary)
        .then(|| Step {
            name: STORE_ORDERS_FACTS.to_string(),
            sql: STORE_ORDER_LINES_SQL.to_string(),
            origin: SqlOrigin::File("sql/outputs/store_order_lines.sql".into()),
            description: "The orders of every customer at every store.".to_string(),
            incremental: Some(Incremental::Month),
        })
}

/// Whether the store sides' hash join (`store_sides.sql`, which cannot
/// spill) fits a memory pool of `pool` bytes with `customers` on the two
/// sides: at most a quarter of a pool of 1 GiB or more, at 512 bytes a
/// customer (both sides' rows and the home stores). Else the sort
/// (`store_sides_sorted.sql`), which spills, at ~1.7 s more for 540,541
/// customers. At 16M customers the join needed more than a 2.5 GiB pool
/// (docs/performance.md), about 170 bytes a customer.
fn store_sides_fit_a_hash_join(pool: usize, customers: u64) -> bool {
    const GIB: u64 = 1 << 30;
    let pool = pool as u64;
    pool >= GIB && customers.saturating_mul(512) <= pool / 4
}

/// The store orders shared by the runs of one backfill: input key, end of
/// the lines they cover, rows. Owned by the caller (`run::SharedWork`), so
/// they (and their files in the spill directory) go when its runs are over.
#[derive(Default)]
pub struct StoreOrdersCache(
    std::sync::Mutex<Option<(String, chrono::NaiveDate, Arc<crate::engine::SharedTable>)>>,
);

/// Register `__store_order_days` (`sql/outputs/store_order_days.sql`, what
/// the store summary reads) over the lines known by the end of
/// `last.period`, the last period of the runs of this process that read the
/// same input (`input_key`): computed by the first run and kept for the
/// others, so a backfill groups the lines by customer, store and order once
/// instead of once per period. Call it before the `transactions` view is
/// restricted to the run's own period.
pub async fn share_store_orders(
    ctx: &SessionContext,
    job: &Job,
    input_key: &str,
    last: &Parameters,
    cache: &StoreOrdersCache,
) -> Result<(), OutputError> {
    if !job.outputs.contains(&OutputTable::StoreSummary) {
        return Ok(());
    }
    let end = last.period.end();
    let failed = |source| OutputError::Query {
        table: STORE_ORDER_DAYS.into(),
        source,
    };
    let shared = &cache.0;
    let known = shared
        .lock()
        .expect("not poisoned")
        .as_ref()
        .filter(|(key, known_end, _)| key == input_key && *known_end >= end)
        .map(|(_, _, table)| table.clone());
    let table = match known {
        Some(table) => table,
        None => {
            // From the lines: month facts are made up to the run's own
            // period, and these cover the backfill's last one.
            let frame = store_order_days(ctx, &last.values(), None).await?;
            let table = Arc::new(crate::engine::share(ctx, frame).await.map_err(failed)?);
            *shared.lock().expect("not poisoned") =
                Some((input_key.to_string(), end, table.clone()));
            table
        }
    };
    table.register(ctx, STORE_ORDER_DAYS).map_err(failed)
}

/// Run the query of every table the job declares (but `rejects`, built from
/// the inputs) over the registered views, each conformed to its contract.
async fn output_tables(
    ctx: &SessionContext,
    job: &Job,
    values: &datafusion::common::ParamValues,
) -> Result<Vec<TableData>, OutputError> {
    let mut tables = Vec::new();
    for table in &job.outputs {
        let name = table.name();
        let Some(query) = query_of(*table) else {
            continue;
        };
        let query = match (&job.scoring, table) {
            (Scoring::Fixed(_), OutputTable::ScoreThresholds) => SCORE_THRESHOLDS_FIXED_SQL,
            _ => query,
        };
        let failed = |source| OutputError::Query {
            table: name.into(),
            source,
        };
        let encoding = |source| OutputError::Parquet {
            table: name.into(),
            source,
        };
        let mut batches = run_query(ctx, name, query, values)
            .await?
            .execute_stream()
            .await
            .map_err(failed)?;
        let contract = table_schema(*table);
        let mut encoder = ParquetEncoder::new(contract.schema.clone()).map_err(encoding)?;
        while let Some(batch) = batches.next().await {
            let batch = contract.conform(&batch.map_err(failed)?)?;
            encoder.write(&batch).map_err(encoding)?;
        }
        let (parquet, rows) = encoder.finish().map_err(encoding)?;
        tables.push(TableData {
            table: *table,
            parquet,
            rows,
        });
    }

    Ok(tables)
}

/// Build every output table of an audiences job for one period from
/// `members` (`customer_id, audience, audience_rank, detail`).
pub async fn build_audience_tables(
    ctx: &SessionContext,
    job: &Job,
    params: &Parameters,
    members: DataFrame,
    rule_hash: &str,
) -> Result<PeriodTables, OutputError> {
    let setup = |source| OutputError::Query {
        table: "(setup)".into(),
        source,
    };
    for name in ["audience_members", "segment_definitions"] {
        ctx.deregister_table(name).map_err(setup)?;
    }
    let contacts = members
        .clone()
        .select_columns(&["customer_id"])
        .and_then(|frame| frame.distinct())
        .map_err(setup)?
        .count()
        .await
        .map_err(setup)?;
    ctx.register_table("audience_members", members.into_view())
        .map_err(setup)?;
    ctx.register_table(
        "segment_definitions",
        Arc::new(definitions_table(job).map_err(setup)?),
    )
    .map_err(setup)?;
    let values = params.with_extra(vec![(
        "rule_hash",
        ScalarValue::Utf8(Some(rule_hash.to_string())),
    )]);
    let tables = output_tables(ctx, job, &values).await?;
    let segment_counts = counts(
        ctx,
        include_str!("../../sql/outputs/audience_counts.sql"),
        "audience counts",
        &values,
    )
    .await?;
    Ok(PeriodTables {
        tables,
        segment_counts,
        movement_counts: Vec::new(),
        customers: contacts as i64,
    })
}

/// Run a two-column (key, count) query.
async fn counts(
    ctx: &SessionContext,
    sql: &str,
    name: &str,
    values: &datafusion::common::ParamValues,
) -> Result<Vec<(String, i64)>, OutputError> {
    let batches = run_query(ctx, name, sql, values)
        .await?
        .collect()
        .await
        .map_err(|source| OutputError::Query {
            table: name.to_string(),
            source,
        })?;
    let mut out = Vec::new();
    for batch in batches {
        let keys = batch.column(0).as_string::<i32>();
        let counts = batch.column(1).as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            out.push((keys.value(row).to_string(), counts.value(row)));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_sides_join_by_hash_only_with_room_to_spare() {
        const MIB: usize = 1 << 20;
        // The shipped 2 GiB pool and the bench's 540,541 customers.
        assert!(store_sides_fit_a_hash_join(2048 * MIB, 540_541));
        // 16M customers needed more than 2.5 GiB: sorted.
        assert!(!store_sides_fit_a_hash_join(2560 * MIB, 16_000_000));
        assert!(!store_sides_fit_a_hash_join(4096 * MIB, 16_000_000));
        // The tests' small pools keep the sort, whatever the data.
        assert!(!store_sides_fit_a_hash_join(64 * MIB, 1_500));
        assert!(!store_sides_fit_a_hash_join(96 * MIB, 225_000));
        assert!(!store_sides_fit_a_hash_join(512 * MIB, 10));
    }
}

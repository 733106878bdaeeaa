//! The query engine: a DataFusion session with the configured memory limit and
//! spill directory, and the job's inputs registered as canonical views
//! (DESIGN §2) over the configured sources.

use std::num::NonZeroUsize;
use std::sync::Arc;

use chrono_tz::Tz;
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::common::Column;
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{Expr, ExprSchemable, cast, lit};
use datafusion::prelude::{
    CsvReadOptions, JsonReadOptions, ParquetReadOptions, SessionConfig, SessionContext,
};
use serde::Serialize;

use crate::config::{Config, Input, InputFormat, canonical_columns};
use crate::storage::{self, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot set up the query engine: {0}")]
    Setup(#[source] DataFusionError),
    #[error(
        "cannot read input '{input}' at {url}: {source}\nhint: check the url and format in the config, and that the files exist"
    )]
    Source {
        input: String,
        url: String,
        #[source]
        source: DataFusionError,
    },
    #[error(
        "input '{input}': the mapping of column `{column}` (`{expression}`) does not work on the source columns [{available}]: {source}\nhint: fix `inputs.{input}.columns.{column}` in {config}"
    )]
    Mapping {
        input: String,
        column: String,
        expression: String,
        available: String,
        config: String,
        #[source]
        source: DataFusionError,
    },
    #[error(
        "input '{input}': required column `{column}` is missing from the source (found: [{available}]); map it in `inputs.{input}.columns.{column}` of {config}"
    )]
    MissingColumn {
        input: String,
        column: String,
        available: String,
        config: String,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A source file of an input, as listed before the run (for the manifest).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct InputFile {
    pub input: String,
    pub path: String,
    pub size: u64,
    pub e_tag: Option<String>,
}

/// A DataFusion session configured from the config's engine section.
pub fn session(config: &Config) -> Result<SessionContext, EngineError> {
    let mut runtime = RuntimeEnvBuilder::new();
    if let Some(limit) = config.engine.memory_limit {
        // A fair pool: every spillable operator (sorts, aggregates) gets its
        // share and spills, instead of the first one taking everything and
        // the next one failing as with the greedy pool.
        let pool = TrackConsumersPool::new(FairSpillPool::new(limit), NonZeroUsize::new(5).expect("non-zero"));
        runtime = runtime.with_memory_pool(Arc::new(pool));
    }
    if let Some(dir) = &config.engine.spill_dir {
        runtime = runtime.with_disk_manager_builder(
            DiskManagerBuilder::default()
                .with_mode(DiskManagerMode::Directories(vec![dir.clone()])),
        );
    }
    let runtime = runtime.build_arc().map_err(EngineError::Setup)?;
    let mut session_config = SessionConfig::new()
        .with_information_schema(false)
        .with_batch_size(8192);
    if let Some(limit) = config.engine.memory_limit {
        // Each sort reserves this much up front for merging its spills; the
        // default (10 MB) would starve small pools.
        let reservation = (limit / 32).min(10 * 1024 * 1024);
        session_config.options_mut().execution.sort_spill_reservation_bytes = reservation;
    }
    if let Some(partitions) = config.engine.target_partitions {
        session_config = session_config.with_target_partitions(partitions);
    }
    let state = SessionStateBuilder::new()
        .with_config(session_config)
        .with_runtime_env(runtime)
        .with_default_features()
        .build();
    Ok(SessionContext::new_with_state(state))
}

fn source_table(input: &str) -> String {
    format!("__source_{input}")
}

/// Register every input the job reads: the raw source as `__source_<name>`
/// and the canonical view `<name>` over it. Returns the listed files.
pub async fn register_inputs(
    ctx: &SessionContext,
    config: &Config,
    inputs: &[String],
) -> Result<Vec<InputFile>, EngineError> {
    let mut files = Vec::new();
    for name in inputs {
        let input = config
            .inputs
            .get(name)
            .expect("config checked against the job");
        let location = storage::open(&input.url)?;
        ctx.register_object_store(&location.store_url, location.store.clone());
        files.extend(list_files(input, &location).await?);
        register_source(ctx, input).await?;
        register_canonical_view(ctx, config, input).await?;
    }
    Ok(files)
}

fn extension(format: InputFormat) -> &'static str {
    match format {
        InputFormat::Parquet => ".parquet",
        InputFormat::Csv => ".csv",
        InputFormat::Ndjson => ".json",
    }
}

async fn list_files(
    input: &Input,
    location: &storage::Location,
) -> Result<Vec<InputFile>, EngineError> {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    let listed: Vec<_> = if input.url.ends_with('/') {
        location
            .store
            .list(Some(&location.prefix))
            .try_collect()
            .await
            .map_err(|e| EngineError::Source {
                input: input.name.clone(),
                url: input.url.clone(),
                source: DataFusionError::ObjectStore(Box::new(e)),
            })?
    } else {
        vec![
            location
                .store
                .head(&location.prefix)
                .await
                .map_err(|e| EngineError::Source {
                    input: input.name.clone(),
                    url: input.url.clone(),
                    source: DataFusionError::ObjectStore(Box::new(e)),
                })?,
        ]
    };
    let mut files: Vec<InputFile> = listed
        .into_iter()
        .filter(|meta| meta.location.as_ref().ends_with(extension(input.format)))
        .map(|meta| InputFile {
            input: input.name.clone(),
            path: meta.location.to_string(),
            size: meta.size,
            e_tag: meta.e_tag,
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

async fn register_source(ctx: &SessionContext, input: &Input) -> Result<(), EngineError> {
    let partition_columns: Vec<(String, DataType)> = input
        .partition_columns
        .iter()
        .map(|c| (c.clone(), DataType::Utf8))
        .collect();
    let table = source_table(&input.name);
    let result = match input.format {
        InputFormat::Parquet => {
            let options = ParquetReadOptions::default().table_partition_cols(partition_columns);
            ctx.register_parquet(&table, &input.url, options).await
        }
        InputFormat::Csv => {
            let mut options = CsvReadOptions::new()
                .has_header(input.csv.header)
                .delimiter(input.csv.delimiter as u8)
                .file_extension(".csv");
            options.table_partition_cols = partition_columns;
            ctx.register_csv(&table, &input.url, options).await
        }
        InputFormat::Ndjson => {
            let mut options = JsonReadOptions::default().file_extension(".json");
            options.table_partition_cols = partition_columns;
            ctx.register_json(&table, &input.url, options).await
        }
    };
    result.map_err(|source| EngineError::Source {
        input: input.name.clone(),
        url: input.url.clone(),
        source,
    })
}

/// `SELECT CAST(<mapping> AS <canonical type>) AS <canonical name>, …` over the
/// source, plus `ordered_date`/`occurred_date`, the local date in the business
/// timezone (a timezone cannot be a bound parameter, so steps get a column).
async fn register_canonical_view(
    ctx: &SessionContext,
    config: &Config,
    input: &Input,
) -> Result<(), EngineError> {
    let source = ctx
        .table(source_table(&input.name))
        .await
        .map_err(|source| EngineError::Source {
            input: input.name.clone(),
            url: input.url.clone(),
            source,
        })?;
    let available: Vec<String> = source
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut projection = Vec::new();
    for column in canonical_columns(&input.name) {
        let mapped = input.columns.get(column.name);
        let expression = match mapped {
            Some(expression) => {
                let is_plain_name = expression.chars().all(|c| c.is_alphanumeric() || c == '_');
                if is_plain_name && !available.contains(expression) {
                    return Err(EngineError::MissingColumn {
                        input: input.name.clone(),
                        column: column.name.into(),
                        available: available.join(", "),
                        config: config.path.display().to_string(),
                    });
                }
                let parsed = if is_plain_name {
                    Ok(column_ref(expression))
                } else {
                    source.parse_sql_expr(expression)
                };
                parsed.map_err(|source| EngineError::Mapping {
                    input: input.name.clone(),
                    column: column.name.into(),
                    expression: expression.clone(),
                    available: available.join(", "),
                    config: config.path.display().to_string(),
                    source,
                })?
            }
            None if available.iter().any(|a| a == column.name) => column_ref(column.name),
            None if column.required => {
                return Err(EngineError::MissingColumn {
                    input: input.name.clone(),
                    column: column.name.into(),
                    available: available.join(", "),
                    config: config.path.display().to_string(),
                });
            }
            None => lit(datafusion::scalar::ScalarValue::try_from(&column.data_type)
                .map_err(EngineError::Setup)?),
        };
        let typed = to_canonical_type(
            expression,
            &column.data_type,
            source.schema(),
            config.timezone,
        )
        .map_err(|source| EngineError::Mapping {
            input: input.name.clone(),
            column: column.name.into(),
            expression: mapped.cloned().unwrap_or_else(|| column.name.to_string()),
            available: available.join(", "),
            config: config.path.display().to_string(),
            source,
        })?;
        projection.push(typed.alias(column.name));
    }
    let date_column = match input.name.as_str() {
        "transactions" => Some(("ordered_at", "ordered_date")),
        "events" => Some(("occurred_at", "occurred_date")),
        _ => None,
    };
    let mut view = source.select(projection).map_err(EngineError::Setup)?;
    if let Some((timestamp, date)) = date_column {
        let local = local_date(column_ref(timestamp), config.timezone);
        let mut columns: Vec<Expr> = view
            .schema()
            .fields()
            .iter()
            .map(|f| column_ref(f.name()))
            .collect();
        columns.push(local.alias(date));
        view = view.select(columns).map_err(EngineError::Setup)?;
    }
    ctx.register_table(input.name.as_str(), view.into_view())
        .map_err(EngineError::Setup)?;
    Ok(())
}

/// Cast a mapped expression to its canonical type. Naive timestamps are read
/// as local times in the business timezone.
fn to_canonical_type(
    expression: Expr,
    target: &DataType,
    schema: &datafusion::common::DFSchema,
    timezone: Tz,
) -> Result<Expr, DataFusionError> {
    let source_type = expression.get_type(schema)?;
    Ok(match (target, &source_type) {
        (DataType::Timestamp(_, Some(_)), DataType::Timestamp(unit, None)) => {
            let local = DataType::Timestamp(*unit, Some(timezone.name().into()));
            cast(cast(expression, local), target.clone())
        }
        (
            DataType::Timestamp(_, Some(_)),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View,
        ) => {
            // Text without an offset is local time in the business timezone.
            let naive = DataType::Timestamp(TimeUnit::Microsecond, None);
            let local = DataType::Timestamp(TimeUnit::Microsecond, Some(timezone.name().into()));
            cast(cast(cast(expression, naive), local), target.clone())
        }
        _ if &source_type == target => expression,
        _ => cast(expression, target.clone()),
    })
}

/// The local calendar date of a UTC timestamp in `timezone`.
fn local_date(timestamp: Expr, timezone: Tz) -> Expr {
    let local = DataType::Timestamp(TimeUnit::Microsecond, Some(timezone.name().into()));
    cast(cast(timestamp, local), DataType::Date32)
}

/// Register empty tables with the canonical schemas, so steps and rules can be
/// planned (`validate`, `explain`) without reading any data.
pub fn register_canonical_placeholders(
    ctx: &SessionContext,
    inputs: &[String],
) -> Result<(), EngineError> {
    for name in inputs {
        let mut fields: Vec<Field> = canonical_columns(name)
            .into_iter()
            .map(|c| Field::new(c.name, c.data_type, !c.required || c.name == "customer_id"))
            .collect();
        match name.as_str() {
            "transactions" => fields.push(Field::new("ordered_date", DataType::Date32, false)),
            "events" => fields.push(Field::new("occurred_date", DataType::Date32, false)),
            _ => {}
        }
        let schema = Arc::new(Schema::new(fields));
        let table = MemTable::try_new(schema, vec![vec![]]).map_err(EngineError::Setup)?;
        ctx.register_table(name.as_str(), Arc::new(table))
            .map_err(EngineError::Setup)?;
    }
    Ok(())
}

/// A reference to a column by its exact name (no SQL identifier parsing).
fn column_ref(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

//! The query engine: a DataFusion session with the configured memory limit and
//! spill directory, and the job's inputs registered as canonical views
//! (docs/design.md §2) over the configured sources.

#[cfg(feature = "ballista")]
pub mod ballista;
pub mod erased;
pub(crate) mod functions;
mod memory;
mod params;

pub use memory::one_malloc_arena_per_core;
pub use params::Parameters;

use std::num::NonZeroUsize;
use std::sync::Arc;

use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::TrackConsumersPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::physical_plan::collect_partitioned;
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionConfig, SessionContext};

use crate::config::{Config, SpillCompression};
use crate::model::ExitStatus;
use crate::storage::{self, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot set up the query engine")]
    Setup(#[source] DataFusionError),
    #[error(
        "cannot read input '{input}' at {url}\nhint: check the url and format in the config, and that the files exist"
    )]
    Source {
        input: String,
        url: String,
        #[source]
        source: DataFusionError,
    },
    #[error(
        "input '{input}': the mapping of column `{column}` (`{expression}`) does not work on the source columns [{available}]\nhint: fix `inputs.{input}.columns.{column}` in {config}"
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
    #[error(
        "input '{input}': column `{column}` has type {found}, which cannot be read as {expected}\nhint: the export's schema changed; map `inputs.{input}.columns.{column}` to an expression of type {expected}"
    )]
    SchemaDrift {
        input: String,
        column: String,
        expected: String,
        found: String,
    },
    #[error("reading inputs: {context}")]
    Read {
        context: String,
        #[source]
        source: DataFusionError,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Erasure(#[from] crate::warehouse::erasure::ErasureError),
    #[error(
        "input 'customer_aliases' at {url}: {message}\nhint: each old id may have one surviving id, and chains of merges must not loop"
    )]
    Aliases { url: String, message: String },
}

impl EngineError {
    /// Exit codes of docs/design.md §6: storage failures while reading the
    /// inputs are 4, inputs the job cannot read (mapping, schema, merges) 3,
    /// a missing or wrong erasure salt 2.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            // Permissions, network, retries exhausted while reading inputs.
            EngineError::Source { source, .. }
                if storage::is_storage_failure(source as &(dyn std::error::Error + 'static)) =>
            {
                ExitStatus::Storage
            }
            EngineError::Erasure(error) => error.exit_status(),
            EngineError::Mapping { .. }
            | EngineError::MissingColumn { .. }
            | EngineError::SchemaDrift { .. }
            | EngineError::Aliases { .. }
            | EngineError::Source { .. } => ExitStatus::InputFailed,
            EngineError::Storage(_) => ExitStatus::Storage,
            EngineError::Setup(_) | EngineError::Read { .. } => ExitStatus::Internal,
        }
    }
}

/// A local DataFusion session configured from the config's engine section
/// (planning, `validate`, `explain`, `compare`; whatever `engine.kind` says).
pub fn session(config: &Config) -> Result<SessionContext, EngineError> {
    Ok(SessionContext::new_with_state(local_state(config)?))
}

/// The session that runs a job's queries: the local engine, or Ballista
/// when `engine.kind` says so (docs/design.md §8).
pub async fn query_session(config: &Config) -> Result<SessionContext, EngineError> {
    #[cfg(feature = "ballista")]
    if let Some(scheduler) = &config.engine.scheduler {
        let state = SessionStateBuilder::new()
            .with_config(ballista::with_codecs(session_config(config)))
            .with_runtime_env(runtime_env(config)?)
            .with_default_features()
            .build();
        tracing::info!(%scheduler, "Running queries on Ballista.");
        return ballista::session(state, scheduler)
            .await
            .map_err(EngineError::Setup);
    }
    session(config)
}

/// The session state of the local engine.
fn local_state(config: &Config) -> Result<SessionState, EngineError> {
    let mut session_config = session_config(config);
    if config.engine.memory_limit.is_some() {
        let parent = config
            .engine
            .spill_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::Builder::new()
            .prefix("segments-kept-")
            .tempdir_in(&parent)
            .map_err(|e| EngineError::Setup(DataFusionError::IoError(e)))?;
        session_config = session_config.with_extension(Arc::new(KeptOnDisk {
            dir,
            next: std::sync::atomic::AtomicUsize::new(0),
        }));
    }
    Ok(SessionStateBuilder::new()
        .with_config(session_config)
        .with_runtime_env(runtime_env(config)?)
        .with_default_features()
        .build())
}

/// Under a memory limit, intermediate results read more than once (a step,
/// the classified customers) are kept as Parquet files in a directory of the
/// spill directory, deleted with the session, instead of in memory, where
/// the memory pool does not see them: the limit then bounds the process.
#[derive(Debug)]
struct KeptOnDisk {
    dir: tempfile::TempDir,
    next: std::sync::atomic::AtomicUsize,
}

/// Compute `frame` once and keep its rows for the reads that follow: in
/// memory ([`materialise`], on either engine), or on disk under a memory
/// limit on the local engine ([`KeptOnDisk`]).
pub async fn keep(
    ctx: &SessionContext,
    frame: datafusion::prelude::DataFrame,
) -> Result<datafusion::prelude::DataFrame, DataFusionError> {
    let Some(disk) = ctx.state().config().get_extension::<KeptOnDisk>() else {
        return materialise(frame).await;
    };
    let index = disk.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = disk.dir.path().join(format!("kept-{index}"));
    std::fs::create_dir_all(&path)?;
    write_and_read(ctx, frame, &path).await
}

/// Does the session run under a memory limit on the local engine, where
/// [`keep`] writes to disk and every operator holding many rows must spill?
pub fn memory_limited(ctx: &SessionContext) -> bool {
    ctx.state().config().get_extension::<KeptOnDisk>().is_some()
}

/// Write `frame` as Parquet files in the directory `path` (zstd level 1: read
/// back soon, once or a few times) and return a frame reading them.
async fn write_and_read(
    ctx: &SessionContext,
    frame: datafusion::prelude::DataFrame,
    path: &std::path::Path,
) -> Result<datafusion::prelude::DataFrame, DataFusionError> {
    let path = format!("{}/", path.display());
    let schema = frame.schema().as_arrow().clone();
    let mut options = datafusion::config::TableParquetOptions::default();
    options.global.compression = Some("zstd(1)".into());
    frame
        .write_parquet(
            &path,
            datafusion::dataframe::DataFrameWriteOptions::new(),
            Some(options),
        )
        .await?;
    ctx.read_parquet(&path, ParquetReadOptions::default().schema(&schema))
        .await
}

/// Rows computed once and read by later runs of the same process (the
/// periods of a backfill), each run with its own session: a table provider
/// any session can register, over rows in memory or, under a memory limit on
/// the local engine, Parquet files in a directory of the spill directory
/// that lives as long as this value.
#[derive(Debug)]
pub struct SharedTable {
    table: Arc<dyn datafusion::catalog::TableProvider>,
    _dir: Option<tempfile::TempDir>,
}

impl SharedTable {
    /// Register the rows under `name` in `ctx` (replacing a table so named).
    pub fn register(&self, ctx: &SessionContext, name: &str) -> Result<(), DataFusionError> {
        ctx.deregister_table(name)?;
        ctx.register_table(name, self.table.clone())?;
        Ok(())
    }
}

/// Compute `frame` once into a [`SharedTable`] (see [`keep`] for where the
/// rows go).
pub async fn share(
    ctx: &SessionContext,
    frame: datafusion::prelude::DataFrame,
) -> Result<SharedTable, DataFusionError> {
    let Some(disk) = ctx.state().config().get_extension::<KeptOnDisk>() else {
        return Ok(SharedTable {
            table: materialise(frame).await?.into_view(),
            _dir: None,
        });
    };
    // Not in the session's own directory, deleted with the session.
    let parent = disk.dir.path().parent().unwrap_or(disk.dir.path());
    let dir = tempfile::Builder::new()
        .prefix("segments-shared-")
        .tempdir_in(parent)?;
    let table = write_and_read(ctx, frame, dir.path()).await?.into_view();
    Ok(SharedTable {
        table,
        _dir: Some(dir),
    })
}

/// Memory pool and spill directory of `engine`.
fn runtime_env(config: &Config) -> Result<Arc<RuntimeEnv>, EngineError> {
    let mut runtime = RuntimeEnvBuilder::new();
    if let Some(limit) = config.engine.memory_limit {
        // A fair pool: every spillable operator (sorts, aggregates) gets its
        // share and spills, instead of the first one taking everything and
        // the next one failing as with the greedy pool; shares as
        // `memory::SharedSpillPool` says.
        let partitions = config
            .engine
            .target_partitions
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, NonZeroUsize::get));
        let pool = TrackConsumersPool::new(
            memory::SharedSpillPool::new(limit, partitions),
            NonZeroUsize::new(5).expect("non-zero"),
        );
        runtime = runtime.with_memory_pool(Arc::new(pool));
        memory::return_freed_memory();
    }
    if let Some(dir) = &config.engine.spill_dir {
        runtime = runtime.with_disk_manager_builder(
            DiskManagerBuilder::default()
                .with_mode(DiskManagerMode::Directories(vec![dir.clone()])),
        );
    }
    runtime.build_arc().map_err(EngineError::Setup)
}

/// The runtime of a Ballista scheduler or executor process: the config's
/// memory limit and spill directory, and an object store for each of its
/// inputs (the executors read them; the scheduler lists them).
#[cfg(feature = "ballista")]
pub(crate) fn process_runtime(config: &Config) -> Result<Arc<RuntimeEnv>, EngineError> {
    let runtime = runtime_env(config)?;
    for input in config.inputs.values() {
        let location = storage::open(&input.url)?;
        runtime.register_object_store(&location.store_url, location.store.clone());
    }
    Ok(runtime)
}

/// Batch size, partitions and spill reservations of `engine`.
fn session_config(config: &Config) -> SessionConfig {
    let mut session_config = SessionConfig::new()
        .with_information_schema(false)
        .with_batch_size(8192);
    // Parquet text as plain Utf8, the canonical type: with string views, a
    // scan copies each text column into Utf8 for the canonical views. (Views
    // kept through the canonical views group ~15% faster, measured on 9.2M
    // lines, but every reader of a query's text would have to accept both.)
    session_config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    if let Some(limit) = config.engine.memory_limit {
        // Each sort reserves this much up front for merging its spills; the
        // default (10 MB) would starve small pools.
        let reservation = (limit / 32).min(10 * 1024 * 1024);
        session_config
            .options_mut()
            .execution
            .sort_spill_reservation_bytes = reservation;
        // Every spilling operator must hold at least a batch or two; smaller
        // batches under small pools keep that floor below the fair share.
        if limit < 512 * 1024 * 1024 {
            session_config = session_config.with_batch_size(2048);
        }
    }
    if let Some(partitions) = config.engine.target_partitions {
        session_config = session_config.with_target_partitions(partitions);
    }
    session_config.options_mut().execution.spill_compression = match config.engine.spill_compression
    {
        SpillCompression::Lz4 => datafusion::common::config::SpillCompression::Lz4Frame,
        SpillCompression::Zstd => datafusion::common::config::SpillCompression::Zstd,
        SpillCompression::None => datafusion::common::config::SpillCompression::Uncompressed,
    };
    session_config
}

/// Run `frame` once and return a frame over its result, held in memory as
/// the partitions the query produced: later queries read it instead of
/// running the plan again. This is what `DataFrame::cache` does on the
/// local engine; Ballista turns `cache` into a no-op (each output query
/// would run every step again), hence this helper for both. On Ballista
/// the result comes back to this process and plans over it carry it (our
/// codec encodes in-memory tables).
pub async fn materialise(frame: DataFrame) -> Result<DataFrame, DataFusionError> {
    let task = Arc::new(frame.task_ctx());
    let (state, plan) = frame.into_parts();
    let ctx = SessionContext::new_with_state(state);
    let physical = ctx.state().create_physical_plan(&plan).await?;
    let schema = physical.schema();
    let partitions = collect_partitioned(physical, task).await?;
    ctx.read_table(Arc::new(MemTable::try_new(schema, partitions)?))
}

/// Plan a query with the SQL sandbox of [`sql_options`] and, when given, its
/// parameters bound (never spliced into the text).
pub async fn plan_sql(
    ctx: &SessionContext,
    sql: &str,
    params: Option<datafusion::common::ParamValues>,
) -> Result<DataFrame, DataFusionError> {
    let frame = ctx.sql_with_options(sql, sql_options()).await?;
    match params {
        Some(params) => frame.with_param_values(params),
        None => Ok(frame),
    }
}

/// Run a query to one batch, with the query's schema even when it returns
/// no rows (the tool's own small summaries, not customer-sized results).
pub async fn collect_one(
    frame: DataFrame,
) -> Result<datafusion::arrow::array::RecordBatch, DataFusionError> {
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await?;
    Ok(datafusion::arrow::compute::concat_batches(
        &schema, &batches,
    )?)
}

/// [`plan_sql`] then [`collect_one`].
pub async fn query_one(
    ctx: &SessionContext,
    sql: &str,
    params: Option<datafusion::common::ParamValues>,
) -> Result<datafusion::arrow::array::RecordBatch, DataFusionError> {
    collect_one(plan_sql(ctx, sql, params).await?).await
}

/// What user SQL may do: queries only.
pub fn sql_options() -> datafusion::execution::context::SQLOptions {
    datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

//! The query engine: a DataFusion session with the configured memory limit and
//! spill directory, and the job's inputs registered as canonical views
//! (DESIGN §2) over the configured sources.

#[cfg(feature = "ballista")]
pub mod ballista;
mod checked;
mod functions;

pub use checked::{
    InputChecks, collect_rejects, known_by, may_have_duplicates, skip_duplicate_removal,
};

use std::num::NonZeroUsize;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::physical_plan::collect_partitioned;
use datafusion::prelude::{
    CsvReadOptions, DataFrame, JsonReadOptions, ParquetReadOptions, SessionConfig, SessionContext,
};
use serde::Serialize;

use crate::config::{Config, Input, InputFormat, SpillCompression, canonical_columns};
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
    #[error(
        "input '{input}': column `{column}` has type {found}, which cannot be read as {expected}\nhint: the export's schema changed; map `inputs.{input}.columns.{column}` to an expression of type {expected}"
    )]
    SchemaDrift {
        input: String,
        column: String,
        expected: String,
        found: String,
    },
    #[error("reading inputs: {context}: {source}")]
    Read {
        context: String,
        #[source]
        source: DataFusionError,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Erasure(#[from] crate::erasure::ErasureError),
    #[error(
        "input 'customer_aliases' at {url}: {message}\nhint: each old id may have one surviving id, and chains of merges must not loop"
    )]
    Aliases { url: String, message: String },
}

/// A source file of an input, as listed before the run (for the manifest).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct InputFile {
    pub input: String,
    pub path: String,
    pub size: u64,
    pub e_tag: Option<String>,
    /// When the store last modified the object (RFC 3339), for stores that
    /// give no ETag; absent in manifests written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

/// A local DataFusion session configured from the config's engine section
/// (planning, `validate`, `explain`, `compare`; whatever `engine.kind` says).
pub fn session(config: &Config) -> Result<SessionContext, EngineError> {
    Ok(SessionContext::new_with_state(local_state(config)?))
}

/// The session that runs a job's queries: the local engine, or Ballista
/// when `engine.kind` says so (DESIGN §8).
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
        // the next one failing as with the greedy pool.
        let pool = TrackConsumersPool::new(
            FairSpillPool::new(limit),
            NonZeroUsize::new(5).expect("non-zero"),
        );
        runtime = runtime.with_memory_pool(Arc::new(pool));
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

/// The suppression list registered for this session, if any.
pub(crate) fn suppression(ctx: &SessionContext) -> Option<Arc<crate::erasure::Suppression>> {
    ctx.state()
        .config()
        .get_extension::<crate::erasure::Suppression>()
}

/// The clock of this process's runs: a line dated after it is a
/// `future_timestamp` reject. One instant for the whole process, so that
/// every period of a backfill sees the same rows (and shares their counts).
pub fn run_clock() -> chrono::DateTime<chrono::Utc> {
    static CLOCK: std::sync::OnceLock<chrono::DateTime<chrono::Utc>> = std::sync::OnceLock::new();
    *CLOCK.get_or_init(chrono::Utc::now)
}

pub(crate) fn source_table(input: &str) -> String {
    format!("__source_{input}")
}

/// Register every input the job reads: the raw source as `__source_<name>`
/// and the canonical view `<name>` over it. Returns the listed files.
pub async fn register_inputs(
    ctx: &SessionContext,
    config: &Config,
    inputs: &[String],
) -> Result<Vec<InputFile>, EngineError> {
    // Erased customers (see `crate::erasure`) are anonymised in every input.
    let warehouse = storage::Warehouse::open(&config.warehouse)?;
    if let Some(suppression) = crate::erasure::load(&warehouse).await? {
        ctx.state_ref()
            .write()
            .config_mut()
            .set_extension(Arc::new(suppression));
    }
    let mut files = Vec::new();
    for name in &inputs_read(config, inputs) {
        let input = config
            .inputs
            .get(name)
            .expect("config checked against the job");
        let location = storage::open(&input.url)?;
        ctx.register_object_store(&location.store_url, location.store.clone());
        let listed = list_files(input, &location).await?;
        register_source(ctx, input, &location, &listed).await?;
        files.extend(listed);
        checked::register(ctx, config, input, &source_table(&input.name), run_clock()).await?;
    }
    Ok(files)
}

/// The inputs a run of a job reading `inputs` reads: those, plus
/// `customer_aliases` when the config maps it (identity merges apply to
/// every job).
pub fn inputs_read(config: &Config, inputs: &[String]) -> Vec<String> {
    let mut names = inputs.to_vec();
    if config.inputs.contains_key(ALIASES) && !names.iter().any(|n| n == ALIASES) {
        names.push(ALIASES.to_string());
    }
    names
}

const ALIASES: &str = "customer_aliases";

/// The old ids merged into others for the period being run (see
/// [`apply_aliases`]).
#[derive(Debug, Default)]
pub struct MergedIds(pub std::collections::HashSet<String>);

/// Identity merges (DESIGN §2, README "Data lifecycle"): replace, in the
/// canonical `transactions` and `events` views, every old id of
/// `customer_aliases` effective by `period_end` (`effective_date` before it)
/// with its surviving id, following chains (a → b, b → c gives a → c), so
/// that every later step sees one customer with the union of the history.
/// Registers the merged old ids in the session ([`merged_ids`]). A no-op
/// when the config maps no `customer_aliases`.
pub async fn apply_aliases(
    ctx: &SessionContext,
    config: &Config,
    period_end: chrono::NaiveDate,
) -> Result<(), EngineError> {
    use datafusion::arrow::array::{Array, AsArray, StringArray};
    use datafusion::arrow::datatypes::Date32Type;
    use datafusion::logical_expr::{JoinType, col};
    let Some(input) = config.inputs.get(ALIASES) else {
        return Ok(());
    };
    let read = |source| EngineError::Read {
        context: "reading customer_aliases".into(),
        source,
    };
    let bad = |message: String| EngineError::Aliases {
        url: input.url.clone(),
        message,
    };
    let end = (period_end - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days()
        as i32;
    let batches = ctx
        .table(ALIASES)
        .await
        .map_err(read)?
        .collect()
        .await
        .map_err(read)?;
    let mut direct: std::collections::BTreeMap<String, String> = Default::default();
    for batch in &batches {
        let old = batch.column(0).as_string::<i32>();
        let new = batch.column(1).as_string::<i32>();
        let date = batch.column(2).as_primitive::<Date32Type>();
        for row in 0..batch.num_rows() {
            if old.is_null(row) || new.is_null(row) || date.is_null(row) || date.value(row) >= end {
                continue;
            }
            let (old, new) = (old.value(row), new.value(row));
            if old == new {
                continue;
            }
            match direct.get(old) {
                Some(other) if other != new => {
                    return Err(bad(format!(
                        "an old id is merged into two surviving ids ({other} and {new})"
                    )));
                }
                _ => {
                    direct.insert(old.to_string(), new.to_string());
                }
            }
        }
    }
    let mut resolved = Vec::with_capacity(direct.len());
    for (old, new) in &direct {
        let mut survivor = new;
        let mut steps = 0;
        while let Some(next) = direct.get(survivor) {
            survivor = next;
            steps += 1;
            if steps > direct.len() {
                return Err(bad(format!("the merges of {old} loop")));
            }
        }
        resolved.push((old.clone(), survivor.clone()));
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("__alias_old", DataType::Utf8, false),
        Field::new("__alias_survivor", DataType::Utf8, false),
    ]));
    let batch = datafusion::arrow::array::RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(resolved.iter().map(|r| &r.0))),
            Arc::new(StringArray::from_iter_values(resolved.iter().map(|r| &r.1))),
        ],
    )
    .map_err(|e| read(e.into()))?;
    let table = MemTable::try_new(schema, vec![vec![batch]]).map_err(EngineError::Setup)?;
    let aliases = ctx.read_table(Arc::new(table)).map_err(read)?;
    for name in ["transactions", "events"] {
        let Ok(frame) = ctx.table(name).await else {
            continue;
        };
        let columns: Vec<String> = frame
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let projection: Vec<datafusion::prelude::Expr> = columns
            .iter()
            .map(|c| {
                if c == "customer_id" {
                    datafusion::functions::expr_fn::coalesce(vec![
                        col("__alias_survivor"),
                        col("customer_id"),
                    ])
                    .alias("customer_id")
                } else {
                    col(c.as_str())
                }
            })
            .collect();
        let merged = frame
            .join(
                aliases.clone(),
                JoinType::Left,
                &["customer_id"],
                &["__alias_old"],
                None,
            )
            .map_err(read)?
            .select(projection)
            .map_err(read)?;
        ctx.deregister_table(name).map_err(EngineError::Setup)?;
        ctx.register_table(name, merged.into_view())
            .map_err(EngineError::Setup)?;
    }
    ctx.state_ref()
        .write()
        .config_mut()
        .set_extension(Arc::new(MergedIds(
            resolved.into_iter().map(|(old, _)| old).collect(),
        )));
    Ok(())
}

/// The old ids [`apply_aliases`] merged in this session, if it ran.
pub fn merged_ids(ctx: &SessionContext) -> Option<Arc<MergedIds>> {
    ctx.state().config().get_extension::<MergedIds>()
}

/// List the source files of `inputs` as a run would (for the manifest's
/// fingerprints), without registering or reading anything.
pub async fn list_inputs(
    config: &Config,
    inputs: &[String],
) -> Result<Vec<InputFile>, EngineError> {
    let mut files = Vec::new();
    for name in &inputs_read(config, inputs) {
        let Some(input) = config.inputs.get(name) else {
            continue;
        };
        let location = storage::open(&input.url)?;
        files.extend(list_files(input, &location).await?);
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
            last_modified: Some(
                meta.last_modified
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            ),
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

async fn register_source(
    ctx: &SessionContext,
    input: &Input,
    location: &storage::Location,
    files: &[InputFile],
) -> Result<(), EngineError> {
    let partition_columns: Vec<(String, DataType)> = input
        .partition_columns
        .iter()
        .map(|c| (c.clone(), DataType::Utf8))
        .collect();
    let source_error = |source| EngineError::Source {
        input: input.name.clone(),
        url: input.url.clone(),
        source,
    };
    let url = match input.csv.encoding {
        crate::config::Encoding::Utf8 => input.url.clone(),
        _ => transcode(ctx, input, location, files).await?,
    };
    let table = source_table(&input.name);
    let result = match input.format {
        InputFormat::Parquet => {
            let options = ParquetReadOptions::default().table_partition_cols(partition_columns);
            ctx.register_parquet(&table, &url, options).await
        }
        InputFormat::Csv => {
            let options = || {
                let mut options = CsvReadOptions::new()
                    .has_header(input.csv.header)
                    .delimiter(input.csv.delimiter as u8)
                    .file_extension(".csv");
                options.table_partition_cols = partition_columns.clone();
                options
            };
            let inferred = ctx.read_csv(&url, options()).await.map_err(source_error)?;
            let text = checked::all_text(&without(
                inferred.schema().as_arrow(),
                &input.partition_columns,
            ));
            ctx.register_csv(&table, &url, options().schema(&text))
                .await
        }
        InputFormat::Ndjson => {
            let options = || {
                let mut options = JsonReadOptions::default().file_extension(".json");
                options.table_partition_cols = partition_columns.clone();
                options
            };
            let inferred = ctx.read_json(&url, options()).await.map_err(source_error)?;
            let text = checked::all_text(&without(
                inferred.schema().as_arrow(),
                &input.partition_columns,
            ));
            ctx.register_json(&table, &url, options().schema(&text))
                .await
        }
    };
    result.map_err(source_error)
}

/// A schema without the Hive partition columns (they are added back by the
/// listing table).
pub(crate) fn without(schema: &Schema, partition_columns: &[String]) -> Schema {
    Schema::new(
        schema
            .fields()
            .iter()
            .filter(|f| !partition_columns.contains(f.name()))
            .cloned()
            .collect::<Vec<_>>(),
    )
}

/// Decode Latin-1 / Windows-1252 files to UTF-8 into an in-memory store that
/// lives as long as the session, keeping their relative paths (and Hive
/// folders). Returns the URL to read them from.
async fn transcode(
    ctx: &SessionContext,
    input: &Input,
    location: &storage::Location,
    files: &[InputFile],
) -> Result<String, EngineError> {
    use object_store::ObjectStoreExt;
    let memory = Arc::new(object_store::memory::InMemory::new());
    for file in files.iter().filter(|f| f.input == input.name) {
        let path = object_store::path::Path::from(file.path.as_str());
        let read_error = |e: object_store::Error| EngineError::Source {
            input: input.name.clone(),
            url: input.url.clone(),
            source: DataFusionError::ObjectStore(Box::new(e)),
        };
        let bytes = location
            .store
            .get(&path)
            .await
            .map_err(read_error)?
            .bytes()
            .await
            .map_err(read_error)?;
        let (text, _, _) = encoding_rs::WINDOWS_1252.decode(&bytes);
        let relative = file
            .path
            .strip_prefix(location.prefix.as_ref())
            .unwrap_or(&file.path)
            .trim_start_matches('/');
        let target =
            object_store::path::Path::from(format!("transcoded/{}/{relative}", input.name));
        memory
            .put(
                &target,
                object_store::PutPayload::from(text.into_owned().into_bytes()),
            )
            .await
            .map_err(read_error)?;
    }
    let memory_url = url::Url::parse("memory:///").expect("static URL");
    ctx.register_object_store(&memory_url, memory);
    Ok(format!("memory:///transcoded/{}/", input.name))
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

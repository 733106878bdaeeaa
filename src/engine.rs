//! The query engine: a DataFusion session with the configured memory limit and
//! spill directory, and the job's inputs registered as canonical views
//! (DESIGN §2) over the configured sources.

#[cfg(feature = "ballista")]
pub mod ballista;
mod checked;
mod functions;

pub use checked::{InputChecks, collect_rejects, input_checks};

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
}

/// A source file of an input, as listed before the run (for the manifest).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct InputFile {
    pub input: String,
    pub path: String,
    pub size: u64,
    pub e_tag: Option<String>,
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
    Ok(SessionStateBuilder::new()
        .with_config(session_config(config))
        .with_runtime_env(runtime_env(config)?)
        .with_default_features()
        .build())
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
    session_config
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
    let mut files = Vec::new();
    for name in inputs {
        let input = config
            .inputs
            .get(name)
            .expect("config checked against the job");
        let location = storage::open(&input.url)?;
        ctx.register_object_store(&location.store_url, location.store.clone());
        let listed = list_files(input, &location).await?;
        register_source(ctx, input, &location, &listed).await?;
        files.extend(listed);
        checked::register(
            ctx,
            config,
            input,
            &source_table(&input.name),
            chrono::Utc::now(),
        )
        .await?;
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

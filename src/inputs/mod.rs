//! The job's inputs: every configured source listed, registered and read
//! through a canonical, typed view (docs/design.md §2) — column mapping,
//! rejects with their reasons, duplicate lines, identity merges
//! (`customer_aliases`), the suppression of erased customers — and the
//! readiness checks of a period ([`readiness`]).

mod checked;
pub mod duplicates;
pub mod readiness;
pub mod seen;

pub use checked::{InputChecks, RejectedRow, collect_rejects};
pub use duplicates::{DuplicateLines, Duplicates, ExtraCopies};

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::prelude::{CsvReadOptions, JsonReadOptions, ParquetReadOptions, SessionContext};

use crate::config::{Config, Input, InputFormat, canonical_columns};
use crate::engine::EngineError;
use crate::model::InputFile;
use crate::storage::{self};

/// The suppression list registered for this session, if any.
pub(crate) fn suppression(
    ctx: &SessionContext,
) -> Option<Arc<crate::warehouse::erasure::Suppression>> {
    ctx.state()
        .config()
        .get_extension::<crate::warehouse::erasure::Suppression>()
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

/// The rows of `input` a run's row accounting counts
/// (`sql/outputs/input_checks.sql`): every checked row with its reason, or
/// only those [`register_counted`] was given.
pub(crate) fn counted_table(input: &str) -> String {
    format!("__counted_{input}")
}

/// Register [`counted_table`]: the checked rows of `input` that match
/// `rows` (every row when `None`); the months whose accounting is stored
/// are left out of the pass. [`deregister_counted`] removes it.
pub async fn register_counted(
    ctx: &SessionContext,
    input: &str,
    rows: Option<datafusion::logical_expr::Expr>,
) -> Result<(), EngineError> {
    let setup = EngineError::Setup;
    let checked = ctx
        .table(checked::checked_table(input).as_str())
        .await
        .map_err(setup)?;
    let counted = match rows {
        Some(rows) => checked.filter(rows).map_err(setup)?,
        None => checked,
    };
    ctx.register_table(counted_table(input).as_str(), counted.into_view())
        .map_err(setup)?;
    Ok(())
}

/// The type of `ordered_at` in the checked rows of `input`.
pub async fn instant_type(ctx: &SessionContext, input: &str) -> Result<DataType, EngineError> {
    let checked = ctx
        .table(checked::checked_table(input).as_str())
        .await
        .map_err(EngineError::Setup)?;
    Ok(checked
        .schema()
        .field_with_unqualified_name("ordered_at")
        .map_err(EngineError::Setup)?
        .data_type()
        .clone())
}

/// Undo [`register_counted`].
pub fn deregister_counted(ctx: &SessionContext, input: &str) -> Result<(), EngineError> {
    ctx.deregister_table(counted_table(input).as_str())
        .map_err(EngineError::Setup)?;
    Ok(())
}

/// How the views of a job's inputs are prepared for a period, in the one
/// order every command uses (`run`, `diff`, `why`, `compare`,
/// `validate --explain`), so they all see the rows a run sees:
///
/// 1. [`register`]: sources and canonical views ([`Registered`]);
/// 2. [`Registered::resolve`]: exact duplicate lines removed (or not looked
///    for when the run's accounting found none), identity merges applied as
///    of the period's end
///    ([`Resolved`]); what a backfill shares across its periods is computed
///    at this stage (it must see lines of later periods);
/// 3. [`Resolved::known_by`]: `transactions` restricted to the lines known
///    by the period's end ([`Prepared`]).
///
/// Each stage consumes the one before, so the order cannot be changed by
/// accident.
pub async fn prepare(
    ctx: &SessionContext,
    config: &Config,
    inputs: &[String],
    period_end: chrono::NaiveDate,
) -> Result<Prepared, EngineError> {
    register(ctx, config, inputs)
        .await?
        .resolve(ctx, config, period_end, Duplicates::Unknown)
        .await?
        .known_by(ctx)
        .await
}

/// Inputs registered as canonical views (stage 1 of [`prepare`]).
#[derive(Debug)]
#[must_use = "resolve the inputs before a period reads them"]
pub struct Registered {
    /// The input files listed.
    pub files: Vec<InputFile>,
}

impl Registered {
    /// Stage 2 of [`prepare`]: duplicates and identity merges as of
    /// `period_end`.
    pub async fn resolve(
        self,
        ctx: &SessionContext,
        config: &Config,
        period_end: chrono::NaiveDate,
        duplicates: Duplicates,
    ) -> Result<Resolved, EngineError> {
        remove_duplicates(ctx, config, duplicates).await?;
        apply_aliases(ctx, config, period_end).await?;
        Ok(Resolved {
            files: self.files,
            period_end,
        })
    }
}

/// The canonical `transactions` view as `duplicates` says: the rows as they
/// are when none repeats, each repeated line once when some do (looked for
/// here when not known yet). Registered with `quality.reject_duplicates`
/// off, the view keeps every row.
async fn remove_duplicates(
    ctx: &SessionContext,
    config: &Config,
    duplicates: Duplicates,
) -> Result<(), EngineError> {
    let input = "transactions";
    if !config.quality.reject_duplicates || ctx.table(input).await.is_err() {
        return Ok(());
    }
    let duplicates = match duplicates {
        Duplicates::Unknown => {
            duplicates::find(ctx, input, config.engine.scheduler.is_some()).await?
        }
        known => known,
    };
    match duplicates {
        Duplicates::NoneFound => checked::replace_canonical(ctx, input, None).await,
        Duplicates::Found(lines) => {
            let view = duplicates::without_duplicates(ctx, input, &lines).await?;
            checked::replace_canonical(ctx, input, Some(view)).await
        }
        // The view registered keeps its exact DISTINCT.
        Duplicates::TooMany | Duplicates::Unknown => {
            tracing::warn!(
                input,
                limit = duplicates::MAX_AFFECTED_ROWS,
                "more rows share a row hash than the limit: exact duplicate lines are removed by a DISTINCT over every line, several times slower than a run without them (was a file loaded twice?)"
            );
            Ok(())
        }
    }
}

/// Inputs with duplicates and merges resolved (stage 2 of [`prepare`]).
#[derive(Debug)]
#[must_use = "restrict the inputs to what the period knew before reading them"]
pub struct Resolved {
    pub files: Vec<InputFile>,
    period_end: chrono::NaiveDate,
}

impl Resolved {
    /// Stage 3 of [`prepare`]: only the lines known by the period's end.
    pub async fn known_by(self, ctx: &SessionContext) -> Result<Prepared, EngineError> {
        checked::known_by(ctx, self.period_end).await?;
        Ok(Prepared { files: self.files })
    }
}

/// Inputs ready for a period's SQL steps (the end of [`prepare`]).
#[derive(Debug)]
pub struct Prepared {
    pub files: Vec<InputFile>,
}

/// Register every input the job reads: the raw source as `__source_<name>`
/// and the canonical view `<name>` over it (typed, rejects removed, erased
/// customers anonymised, duplicate lines removed). The first of the three
/// steps of [`prepare`]; the readiness checks and the row accounting read
/// the views at this stage.
pub async fn register(
    ctx: &SessionContext,
    config: &Config,
    inputs: &[String],
) -> Result<Registered, EngineError> {
    // Erased customers (see `crate::warehouse::erasure`) are anonymised in every input.
    let warehouse = storage::Warehouse::open(&config.warehouse)?;
    if let Some(suppression) = crate::warehouse::erasure::load(&warehouse).await? {
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
    Ok(Registered { files })
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
pub struct MergedIds {
    pub ids: std::collections::HashSet<String>,
    /// The merges in force, `old → survivor` per line in id order: what
    /// fingerprints them (month facts).
    pub pairs: Vec<String>,
}

/// Identity merges (docs/design.md §2, README "Data lifecycle"): replace, in the
/// canonical `transactions` and `events` views, every old id of
/// `customer_aliases` effective by `period_end` (`effective_date` before it)
/// with its surviving id, following chains (a → b, b → c gives a → c), so
/// that every later step sees one customer with the union of the history.
/// Registers the merged old ids in the session ([`merged_ids`]). A no-op
/// when the config maps no `customer_aliases`.
async fn apply_aliases(
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
    let end = crate::model::units::epoch_days(period_end);
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
        .set_extension(Arc::new(MergedIds {
            pairs: {
                let mut pairs: Vec<String> = resolved
                    .iter()
                    .map(|(old, survivor)| format!("{old} -> {survivor}"))
                    .collect();
                pairs.sort();
                pairs
            },
            ids: resolved.into_iter().map(|(old, _)| old).collect(),
        }));
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
                // A short line (an export cut off mid-line) reads as nulls,
                // so it becomes a reject with its reason instead of failing
                // the whole input.
                let mut options = CsvReadOptions::new()
                    .has_header(input.csv.header)
                    .delimiter(input.csv.delimiter as u8)
                    .truncated_rows(true)
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
        let relative = transcoded_relative(&file.path, location.prefix.as_ref());
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
    let memory_url = url::Url::parse(&transcoded_store(&input.name))
        .map_err(|e| EngineError::Setup(DataFusionError::External(Box::new(e))))?;
    ctx.register_object_store(&memory_url, memory);
    Ok(format!(
        "{}transcoded/{}/",
        transcoded_store(&input.name),
        input.name
    ))
}

/// The in-memory store of an input's transcoded files. One store per input:
/// a session registers one store per URL host, and two transcoded inputs
/// (transactions and customers) must not replace each other's files.
fn transcoded_store(input: &str) -> String {
    format!("memory://transcoded-{}/", input.replace('_', "-"))
}

/// A file's path under its input's transcoded folder: relative to the
/// input's URL, or its own name when the input is that one file.
fn transcoded_relative<'a>(path: &'a str, prefix: &str) -> &'a str {
    let relative = path
        .strip_prefix(prefix)
        .unwrap_or(path)
        .trim_start_matches('/');
    if relative.is_empty() {
        path.rsplit('/').next().unwrap_or(path)
    } else {
        relative
    }
}

/// The URL of the transcoded copy of one of an input's files.
pub(crate) fn transcoded_url(input: &str, path: &str, prefix: &str) -> String {
    format!(
        "{}transcoded/{input}/{}",
        transcoded_store(input),
        transcoded_relative(path, prefix)
    )
}

/// Register empty tables with the canonical schemas (and the config's extra
/// columns), so steps and rules can be planned (`validate`, `explain`)
/// without reading any data. An extra column without a `type` is planned
/// as text: its type in a run is the source's, which only the files know.
///
/// A job's own inputs (`custom_inputs`) are planned with the columns and
/// types the job declares.
pub fn register_canonical_placeholders(
    ctx: &SessionContext,
    config: &Config,
    job: &crate::config::Job,
) -> Result<(), EngineError> {
    for name in &job.inputs {
        let mut fields: Vec<Field> = canonical_columns(name)
            .into_iter()
            .map(|c| Field::new(c.name, c.data_type, !c.required || c.name == "customer_id"))
            .collect();
        if let Some(declared) = job.custom_inputs.get(name) {
            fields.extend(
                declared
                    .iter()
                    .map(|(column, column_type)| Field::new(column, column_type.data_type(), true)),
            );
        } else if let Some(input) = config.inputs.get(name) {
            fields.extend(input.extra_columns.iter().map(|extra| {
                let data_type = extra
                    .data_type
                    .map_or(DataType::Utf8, crate::config::ColumnType::data_type);
                Field::new(&extra.name, data_type, true)
            }));
        }
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

//! One run of a job for one period, end to end: inputs → steps →
//! classification (of the period and, when needed, of the previous one) →
//! output tables → publish (unless dry run).

mod accounting;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Decimal128Type, Int64Type};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::col;
use datafusion::prelude::{DataFrame, SessionContext};
use tracing::info;

use crate::config::{ClassificationKind, Config, ConfigError, Job, OutputTable};
use crate::engine::{self, EngineError};
use crate::inputs;
use crate::model::table_schema;
use crate::model::{ExitStatus, Gate};
use crate::model::{FromSide, InputFile, Period};
use crate::outputs::{OutputError, PeriodTables, build_audience_tables, build_period_tables};
use crate::pipeline::{self, Parameters, PipelineError};
use crate::predict::{PredictError, build_prediction_tables};
use crate::storage::{StorageError, Warehouse};
use crate::warehouse::TableData;
use crate::warehouse::lease::{Lease, LeaseError};
use crate::warehouse::publish::{self, Manifest, PublishError, RowCounts};
use accounting::{InputFacts, InputStats, input_facts, input_key, input_stats};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Table(#[from] crate::warehouse::TableFileError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("gate `{gate}` failed: {message}")]
    Gate { gate: Gate, message: String },
    #[error(transparent)]
    Lease(#[from] LeaseError),
    /// The HTML report (`report: true`) could not be built; nothing was published.
    #[error("building the report of the period")]
    Report(#[from] crate::analysis::report::ReportError),
    #[error(transparent)]
    Predict(#[from] PredictError),
    #[error(transparent)]
    Facts(#[from] crate::facts::FactsError),
    #[error(
        "{job} {period} is not ready: {message}; nothing was published\nhint: the run exits 5 so that the scheduler retries later; once the export is complete, rerun"
    )]
    NotReady {
        job: String,
        period: Period,
        message: String,
    },
    #[error("row accounting does not balance: read {} ≠ used {} + anonymous {} + rejected {}; this is a bug, please report it", rows.read, rows.used, rows.anonymous, rows.rejected)]
    Accounting { rows: RowCounts },
}

impl RunError {
    /// Exit codes of docs/design.md §6.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            RunError::Config(_) => ExitStatus::Invalid,
            // The config's `warehouse.format` is not the warehouse's.
            RunError::Publish(PublishError::WrongFormat { .. }) => ExitStatus::Invalid,
            RunError::Engine(error) => error.exit_status(),
            RunError::Pipeline(error) => error.exit_status(),
            RunError::Facts(error) => error.exit_status(),
            RunError::Lease(LeaseError::Storage(_)) => ExitStatus::Storage,
            RunError::Gate { .. } => ExitStatus::InputFailed,
            RunError::Report(error) => error.exit_status(),
            RunError::Predict(error) if error.is_job_error() => ExitStatus::Invalid,
            // The period's data cannot support the predictive models.
            RunError::Predict(error) if error.is_data_error() => ExitStatus::InputFailed,
            RunError::Predict(PredictError::Publish {
                source: PublishError::Storage(_),
                ..
            }) => ExitStatus::Storage,
            RunError::NotReady { .. } => ExitStatus::NotReady,
            RunError::Storage(_) | RunError::Publish(PublishError::Storage(_)) => {
                ExitStatus::Storage
            }
            _ => ExitStatus::Internal,
        }
    }
}

/// What the runs of one backfill share, computed by the first period that
/// needs it and read by the others: the facts of the transactions input and
/// the store orders. A run on its own starts empty; a backfill gives every
/// period a clone of one. Passed in, never held in a static, so it goes
/// (spill files included) with the last clone.
#[derive(Clone, Default)]
pub struct SharedWork(Arc<SharedState>);

#[derive(Default)]
struct SharedState {
    /// The last input facts counted, with the key of the input they describe.
    facts: std::sync::Mutex<Option<(String, Arc<InputFacts>)>>,
    store_orders: crate::outputs::StoreOrdersCache,
}

impl std::fmt::Debug for SharedWork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedWork")
    }
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub period: Period,
    /// The run's id (a UUID v7): in its manifest, its lease and its
    /// OpenLineage events, so the caller knows it before the run starts.
    /// One run per id: the lease takes two runs with one id for one, so
    /// options cloned for another run need a new id
    /// ([`crate::lineage::new_run_id`]).
    pub run_id: String,
    pub dry_run: bool,
    /// Gates the operator overrides on purpose (`--allow-gate NAME`),
    /// recorded in the manifest.
    pub allowed_gates: Vec<Gate>,
    /// Ignore the stored month facts of incremental steps from this month
    /// on, and compute them anew from the raw lines: the first month of
    /// all for `run --full` ([`RunOptions::FULL`]).
    pub recompute_from: Option<chrono::NaiveDate>,
    /// The last period of the backfill this run belongs to: what its periods
    /// share (the store orders) is computed once, up to that period's end.
    pub backfill_until: Option<Period>,
    /// What this run shares with the other periods of its backfill.
    pub shared: SharedWork,
}

impl RunOptions {
    /// [`RunOptions::recompute_from`] of `--full`: every month.
    pub const FULL: Option<chrono::NaiveDate> = Some(chrono::NaiveDate::MIN);

    pub fn new(period: Period) -> Self {
        RunOptions {
            period,
            run_id: crate::lineage::new_run_id(),
            dry_run: false,
            allowed_gates: Vec::new(),
            recompute_from: None,
            backfill_until: None,
            shared: SharedWork::default(),
        }
    }
}

/// Fail with exit code 3 unless the operator allowed this gate.
fn gate(options: &RunOptions, name: Gate, message: String) -> Result<(), RunError> {
    if options.allowed_gates.contains(&name) {
        tracing::warn!(gate = %name, %message, "Gate failed but allowed by --allow-gate.");
        Ok(())
    } else {
        Err(RunError::Gate {
            gate: name,
            message: format!(
                "{message}; nothing was published\nhint: fix the input, or rerun with --allow-gate {name} to publish anyway"
            ),
        })
    }
}

/// |current − previous| / previous, when there is a previous value.
fn relative_change(current: f64, previous: f64) -> Option<f64> {
    (previous > 0.0).then(|| (current - previous).abs() / previous)
}

/// What a run did.
#[derive(Debug)]
pub struct RunOutcome {
    pub period: Period,
    pub tables: PeriodTables,
    pub manifest: Manifest,
    pub published: bool,
    pub warehouse: String,
    /// How the warehouse stores the tables (`warehouse.format`).
    pub format: crate::config::TableFormat,
}

/// The "from" side columns the output queries need.
const FROM_COLUMNS: [&str; 5] = [
    "customer_id",
    "segment",
    "segment_rank",
    "frequency",
    "monetary",
];

async fn frame_of(
    ctx: &SessionContext,
    batches: Vec<RecordBatch>,
) -> Result<DataFrame, PipelineError> {
    let execution = |source| PipelineError::Execution {
        context: "loading the previous snapshot".into(),
        source,
    };
    let schema = batches.first().map(|b| b.schema()).unwrap_or_else(|| {
        Arc::new(
            crate::model::table_schema(OutputTable::Snapshots)
                .schema
                .as_ref()
                .clone(),
        )
    });
    let table = MemTable::try_new(schema, vec![batches]).map_err(execution)?;
    let frame = ctx.read_table(Arc::new(table)).map_err(execution)?;
    frame
        .select(FROM_COLUMNS.iter().map(|c| col(*c)).collect::<Vec<_>>())
        .map_err(execution)
}

/// Run `job` for one period.
pub async fn run(job: &Job, config: &Config, options: RunOptions) -> Result<RunOutcome, RunError> {
    run_with(job, config, options, false).await
}

/// Run `job` for one period under the period's publishing lease (docs/design.md §5,
/// guarantee 4); `force_lease` breaks a live lease of another run. A dry run
/// takes no lease.
pub async fn run_with(
    job: &Job,
    config: &Config,
    options: RunOptions,
    force_lease: bool,
) -> Result<RunOutcome, RunError> {
    crate::storage::scoped(config.storage.clone(), async {
        let run_id = options.run_id.clone();
        let lease = if options.dry_run {
            None
        } else {
            let warehouse = Warehouse::open(&config.warehouse)?;
            let ttl = config.storage.lease_ttl;
            Some(
                Lease::acquire(
                    &warehouse,
                    &job.name,
                    options.period,
                    &run_id,
                    ttl,
                    force_lease,
                )
                .await?,
            )
        };
        let result = run_leased(job, config, options, run_id, lease.as_ref()).await;
        if let Some(lease) = lease
            && let Err(error) = lease.release().await
        {
            tracing::warn!(%error, "Could not release the publishing lease; it expires by itself.");
        }
        result
    })
    .await
}

async fn run_leased(
    job: &Job,
    config: &Config,
    options: RunOptions,
    run_id: String,
    lease: Option<&Lease>,
) -> Result<RunOutcome, RunError> {
    let started = Instant::now();
    let mut timings = BTreeMap::new();
    let period = options.period;
    let rule_hash = job.rule_hash(config);
    config.check_inputs_for(job)?;
    let warehouse = Warehouse::open(&config.warehouse)?;
    info!(job = %job.name, %period, run_id = %run_id, dry_run = options.dry_run, "Starting run.");

    let read = read_inputs(job, config, &options, &mut timings).await?;
    timings.insert("inputs".to_string(), started.elapsed().as_millis() as u64);
    check_quality_gates(&options, config, &read)?;
    let built = build_tables(
        job,
        config,
        &options,
        &warehouse,
        &read,
        &rule_hash,
        &mut timings,
    )
    .await?;
    let month_facts = crate::facts::MonthFacts::of(&read.ctx);
    let input_facts = read.input_facts.clone();
    let mut manifest = manifest_of(job, &options, run_id, rule_hash, read, &built, timings);
    if !options.dry_run {
        publish_period(
            job,
            config,
            period,
            &warehouse,
            lease,
            &built.tables,
            &mut manifest,
        )
        .await?;
        // Before the retention: its failure would fail a run whose period
        // is published, and the facts are good either way.
        store_month_facts(
            month_facts.as_deref(),
            &input_facts,
            config,
            &warehouse,
            job,
            &manifest.run_id,
        )
        .await;
        apply_retention(job, config, period, &warehouse).await?;
    }
    manifest
        .timings_ms
        .insert("total".to_string(), started.elapsed().as_millis() as u64);
    Ok(RunOutcome {
        period,
        tables: built.tables,
        manifest,
        published: !options.dry_run,
        warehouse: config.warehouse.clone(),
        format: config.tables.format,
    })
}

/// What a run read: the session with the period's input views prepared
/// (`inputs::prepare`'s stages, with the run's row accounting between them),
/// and that accounting.
struct InputsRead {
    ctx: SessionContext,
    files: Vec<InputFile>,
    params: Parameters,
    stats: InputStats,
    rows: RowCounts,
    rejected_by_reason: BTreeMap<String, u64>,
    /// The lines that repeated another exactly (dropped), for the rejects
    /// table.
    duplicate_lines: inputs::Duplicates,
    /// The accounting this period read, with the months to store.
    input_facts: Arc<InputFacts>,
}

/// Readiness, the input views and the row accounting of a period.
async fn read_inputs(
    job: &Job,
    config: &Config,
    options: &RunOptions,
    timings: &mut BTreeMap<String, u64>,
) -> Result<InputsRead, RunError> {
    let period = options.period;
    let not_ready = |message| RunError::NotReady {
        job: job.name.clone(),
        period,
        message,
    };
    if let Some(message) = crate::inputs::readiness::check_marker(config, period).await? {
        return Err(not_ready(message));
    }
    let ctx = engine::query_session(config).await?;
    let registered = inputs::register(&ctx, config, &job.inputs).await?;
    let files = registered.files.clone();
    let params = Parameters::new(period, job.window_months);
    if let Some(message) = crate::inputs::readiness::check_data(&ctx, config, &params).await? {
        return Err(not_ready(message));
    }
    let input_key = input_key(&ctx, config, &files);
    // The accounting is of the lines before identity merges (not resolved
    // yet: its digest has none); the month facts below are of the merged
    // view, and take the merges in force into their digest.
    // The accounting by month goes with the month facts: an incremental job
    // on the local engine (see `month_facts`). Both read which months each
    // file may hold from its statistics, read here once.
    let by_month = crate::facts::is_incremental(job) && config.engine.scheduler.is_none();
    let coverage =
        crate::facts::FileCoverage::of(config, if by_month { &files } else { &[] }).await;
    let sources = month_sources(&ctx, &coverage);
    let warehouse = Warehouse::open(&config.warehouse)?;
    let months = async {
        if !by_month {
            return Ok(None);
        }
        Ok(crate::facts::InputMonths::load(
            config,
            &warehouse,
            &job.name,
            &sources,
            accounting::ACCOUNTING_SQL,
            options.recompute_from,
            inputs::run_clock(),
        )
        .await?)
    };
    let facts = input_facts(&ctx, config, &input_key, &options.shared, months).await?;
    let (checks, usable_stats) = facts.of_period(period);
    let stats = match &facts.duplicates {
        inputs::Duplicates::Found(lines) => usable_stats.without(lines, period),
        // Too many candidates to hold: count over the exact DISTINCT view.
        inputs::Duplicates::TooMany | inputs::Duplicates::Unknown => {
            input_stats(&ctx, &params).await?
        }
        inputs::Duplicates::NoneFound => usable_stats,
    };
    // Row accounting: read = used + anonymous + rejected (duplicates are the
    // valid rows the distinct canonical view dropped).
    let mut rejected_by_reason = checks.rejected_by_reason.clone();
    let duplicates = checks.valid.saturating_sub(stats.rows_read);
    if duplicates > 0 {
        rejected_by_reason.insert("duplicate_line".to_string(), duplicates);
    }
    let duplicate_rule = if duplicates > 0 {
        facts.duplicates.clone()
    } else {
        inputs::Duplicates::NoneFound
    };
    let resolved = registered
        .resolve(&ctx, config, period.end(), duplicate_rule.clone())
        .await?;
    // The periods of a backfill share their store orders. A run on its own
    // computes them while building its tables (`outputs::build_period_tables`);
    // so does a run with identity merges, whose customer ids change from one
    // period to the next.
    if let Some(last) = options.backfill_until
        && inputs::merged_ids(&ctx).is_none()
    {
        let step = Instant::now();
        let last = last.max(period);
        crate::outputs::share_store_orders(
            &ctx,
            job,
            &input_key,
            &Parameters::new(last, job.window_months),
            &options.shared.0.store_orders,
        )
        .await?;
        timings.insert(
            "store_orders".to_string(),
            step.elapsed().as_millis() as u64,
        );
    }
    resolved.known_by(&ctx).await?;
    let step = Instant::now();
    // The store orders become month facts too, but not in a backfill that
    // shares them across its periods (grouped once from the lines, above).
    let shares_store_orders =
        options.backfill_until.is_some() && inputs::merged_ids(&ctx).is_none();
    let internal: Vec<crate::config::Step> = crate::outputs::store_orders_step(job)
        .filter(|_| !shares_store_orders)
        .into_iter()
        .collect();
    let sources = month_sources(&ctx, &coverage);
    if month_facts(&ctx, job, config, options, &warehouse, &sources, &internal).await? {
        timings.insert("facts".to_string(), step.elapsed().as_millis() as u64);
    }
    let rows = RowCounts {
        read: checks.read,
        used: stats.rows_read - stats.anonymous_rows,
        anonymous: stats.anonymous_rows,
        rejected: rejected_by_reason.values().sum(),
    };
    if rows.read != rows.used + rows.anonymous + rows.rejected {
        return Err(RunError::Accounting { rows });
    }
    Ok(InputsRead {
        ctx,
        files,
        params,
        stats,
        rows,
        rejected_by_reason,
        duplicate_lines: duplicate_rule,
        input_facts: facts,
    })
}

/// What the month facts and the accounting by month are fingerprinted
/// with: the input files, and the erasures and identity merges in force.
fn month_sources<'a>(
    ctx: &SessionContext,
    coverage: &'a crate::facts::FileCoverage,
) -> crate::facts::Sources<'a> {
    let erasures = inputs::suppression(ctx)
        .map(|s| crate::facts::digest(s.sorted_hashes().into_iter().map(String::as_str)))
        .unwrap_or_default();
    let merges = inputs::merged_ids(ctx)
        .map(|merged| crate::facts::digest(merged.pairs.iter().map(String::as_str)))
        .unwrap_or_default();
    crate::facts::Sources {
        coverage,
        erasures,
        merges,
    }
}

/// The month facts of the job's incremental steps (`crate::facts`), on the
/// period's prepared inputs; false when the job has none.
async fn month_facts(
    ctx: &SessionContext,
    job: &Job,
    config: &Config,
    options: &RunOptions,
    warehouse: &Warehouse,
    sources: &crate::facts::Sources<'_>,
    internal: &[crate::config::Step],
) -> Result<bool, RunError> {
    // The distributed engine's executors cannot write the facts where this
    // process reads them: its runs compute every step from its SQL.
    if config.engine.scheduler.is_some() {
        return Ok(false);
    }
    Ok(crate::facts::prepare(
        ctx,
        job,
        config,
        warehouse,
        sources,
        internal,
        options.period,
        options.recompute_from,
        !options.dry_run,
    )
    .await?)
}

/// The data-quality gates on the input (docs/design.md §8): no usable line in
/// the period, too many rejects. The gates on the results are in
/// [`segment_tables`].
fn check_quality_gates(
    options: &RunOptions,
    config: &Config,
    read: &InputsRead,
) -> Result<(), RunError> {
    let (period, rows, rejected_by_reason) = (options.period, &read.rows, &read.rejected_by_reason);
    if read.stats.period_rows == 0 {
        gate(
            options,
            Gate::NoData,
            format!(
                "no usable transaction is dated in {period} ({} rows read from {} file(s))",
                rows.read,
                read.files.len()
            ),
        )?;
    }
    let reject_ratio = if rows.read > 0 {
        rows.rejected as f64 / rows.read as f64
    } else {
        0.0
    };
    if reject_ratio > config.quality.max_reject_ratio {
        gate(
            options,
            Gate::RejectRatio,
            format!(
                "{} of {} rows ({:.1}%) were rejected ({}), above quality.max_reject_ratio {:.1}%",
                rows.rejected,
                rows.read,
                reject_ratio * 100.0,
                rejected_by_reason
                    .iter()
                    .map(|(r, n)| format!("{r}: {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                config.quality.max_reject_ratio * 100.0
            ),
        )?;
    }

    Ok(())
}

/// The period's tables, built, with what the manifest says of them.
struct BuiltTables {
    tables: PeriodTables,
    from_side: FromSide,
    from_side_reason: String,
    prediction_facts: Option<crate::model::PredictionFacts>,
}

/// Classify, build the output tables, the predictions and the rejects.
async fn build_tables(
    job: &Job,
    config: &Config,
    options: &RunOptions,
    warehouse: &Warehouse,
    read: &InputsRead,
    rule_hash: &str,
    timings: &mut BTreeMap<String, u64>,
) -> Result<BuiltTables, RunError> {
    let (ctx, params, period) = (&read.ctx, &read.params, options.period);
    let (mut tables, from_side, from_side_reason) = match job.kind {
        ClassificationKind::Segments => {
            segment_tables(
                ctx, job, config, options, warehouse, params, rule_hash, timings,
            )
            .await?
        }
        ClassificationKind::Audiences => {
            let step = Instant::now();
            let members = pipeline::audiences(ctx, job, params).await?;
            timings.insert("classify".to_string(), step.elapsed().as_millis() as u64);
            let step = Instant::now();
            let tables = build_audience_tables(ctx, job, params, members, rule_hash).await?;
            timings.insert("tables".to_string(), step.elapsed().as_millis() as u64);
            (
                tables,
                FromSide::None,
                "audiences overlap and have no movements".to_string(),
            )
        }
    };
    let mut prediction_facts = None;
    if let Some(predict) = &job.predict {
        let step = Instant::now();
        let built = build_prediction_tables(
            ctx,
            predict,
            params,
            &job.name,
            rule_hash,
            warehouse,
            tables.batch(OutputTable::Snapshots)?.as_ref(),
        )
        .await?;
        tables.tables.push(TableData::encode(
            OutputTable::Predictions,
            &built.predictions,
        )?);
        tables.tables.push(TableData::encode(
            OutputTable::ModelParameters,
            &built.model_parameters,
        )?);
        prediction_facts = Some(built.facts);
        timings.insert("predict".to_string(), step.elapsed().as_millis() as u64);
    }
    let step = Instant::now();
    if job.writes(OutputTable::Rejects) {
        let input = config.inputs.get("transactions").expect("checked");
        let rejects = if read.rows.rejected > 0 {
            inputs::collect_rejects(
                ctx,
                config,
                input,
                &read.files,
                inputs::run_clock(),
                period.start(),
                period.end(),
                read.input_facts.period_has_other_rejects(period),
                &read.duplicate_lines,
            )
            .await?
        } else {
            Vec::new()
        };
        tables.tables.push(TableData::encode(
            OutputTable::Rejects,
            &rejects_batch(rejects)?,
        )?);
    }
    timings.insert("rejects".to_string(), step.elapsed().as_millis() as u64);
    Ok(BuiltTables {
        tables,
        from_side,
        from_side_reason,
        prediction_facts,
    })
}

/// The manifest of the period (docs/design.md §5).
fn manifest_of(
    job: &Job,
    options: &RunOptions,
    run_id: String,
    rule_hash: String,
    read: InputsRead,
    built: &BuiltTables,
    timings: BTreeMap<String, u64>,
) -> Manifest {
    let stats = &read.stats;
    Manifest {
        run_id,
        job: job.name.clone(),
        period: options.period.to_string(),
        job_hash: job.job_hash.clone(),
        rule_hash,
        published_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        from_side: built.from_side,
        from_side_reason: built.from_side_reason.clone(),
        rows: read.rows,
        rejected_by_reason: read.rejected_by_reason,
        allowed_gates: options
            .allowed_gates
            .iter()
            .map(|g| g.name().to_string())
            .collect(),
        period_revenue: crate::model::units::decimal_cents(stats.period_revenue_cents),
        identification_rate: (stats.period_revenue_cents != 0)
            .then(|| stats.identified_revenue_cents as f64 / stats.period_revenue_cents as f64),
        tables: built
            .tables
            .tables
            .iter()
            .map(|t| (t.table.name().to_string(), t.rows))
            .collect(),
        timings_ms: timings,
        versions: BTreeMap::from([
            (
                "segments".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            ),
            (
                "datafusion".to_string(),
                datafusion::DATAFUSION_VERSION.to_string(),
            ),
        ]),
        inputs: read.files,
        predictions: built.prediction_facts.clone(),
        erasures: Vec::new(),
    }
}

/// Store the month facts and the accounting by month the run computed,
/// once its period is published. A failure here loses nothing: the period
/// stands, and the next run computes the months again; so it is a warning,
/// not a failed run.
async fn store_month_facts(
    facts: Option<&crate::facts::MonthFacts>,
    input_facts: &InputFacts,
    config: &Config,
    warehouse: &Warehouse,
    job: &Job,
    run_id: &str,
) {
    let warn = |error: crate::facts::FactsError| {
        tracing::warn!(
            job = %job.name,
            %error,
            "The period is published, but its month facts or row accounting could not be stored; the next run computes those months again."
        )
    };
    if let Some(facts) = facts {
        match facts.store(warehouse, &job.name, run_id).await {
            Ok(0) => {}
            Ok(months) => info!(job = %job.name, months, "Stored month facts."),
            Err(error) => warn(error),
        }
    }
    match accounting::store_input_months(input_facts, config, warehouse, &job.name, run_id).await {
        Ok(0) => {}
        Ok(months) => info!(job = %job.name, months, "Stored the row accounting by month."),
        Err(error) => warn(error),
    }
}

/// Render the report, then publish the period under the lease.
async fn publish_period(
    job: &Job,
    config: &Config,
    period: Period,
    warehouse: &Warehouse,
    lease: Option<&Lease>,
    tables: &PeriodTables,
    manifest: &mut Manifest,
) -> Result<(), RunError> {
    let step = Instant::now();
    // The report is rendered before anything is written: a report that
    // cannot be built fails the run with the period untouched.
    let report = if config.report.enabled {
        let built = crate::analysis::report::build_for_run(
            warehouse, job, config, period, tables, manifest,
        )
        .await?;
        let html = crate::analysis::report::render(&built, config.report.locale);
        manifest
            .timings_ms
            .insert("report".to_string(), step.elapsed().as_millis() as u64);
        Some(bytes::Bytes::from(html))
    } else {
        None
    };
    if let Some(lease) = lease {
        lease.ensure_held().await?;
    }
    publish::publish_with_report(
        warehouse,
        config.tables.format,
        &job.name,
        period,
        &tables.tables,
        manifest,
        report,
    )
    .await?;
    manifest
        .timings_ms
        .insert("publish".to_string(), step.elapsed().as_millis() as u64);
    info!(job = %job.name, %period, customers = tables.customers, "Published period.");
    Ok(())
}

/// Delete what the retention of `config` lets go, once `period` is
/// published.
async fn apply_retention(
    job: &Job,
    config: &Config,
    period: Period,
    warehouse: &Warehouse,
) -> Result<(), RunError> {
    let deleted = crate::warehouse::retention::apply(
        warehouse,
        &job.name,
        period,
        &config.retention,
        &config.tables,
    )
    .await?;
    if !deleted.periods.is_empty() || !deleted.rejects.is_empty() || deleted.vacuumed > 0 {
        let list = |periods: &[Period]| {
            periods
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        info!(
            job = %job.name,
            periods = %list(&deleted.periods),
            rejects = %list(&deleted.rejects),
            objects = deleted.objects,
            vacuumed = deleted.vacuumed,
            "Deleted expired partitions (retention)."
        );
    }
    Ok(())
}

/// The tables of a segments job: the period classified, the "from" side
/// (published when made by the same rules, else reclassified), and the
/// activity gates against it. Returns the tables and where the from side
/// came from, with why.
#[allow(clippy::too_many_arguments)]
async fn segment_tables(
    ctx: &SessionContext,
    job: &Job,
    config: &Config,
    options: &RunOptions,
    warehouse: &Warehouse,
    params: &Parameters,
    rule_hash: &str,
    timings: &mut BTreeMap<String, u64>,
) -> Result<(PeriodTables, FromSide, String), RunError> {
    let period = params.period;
    // The "from" side: the previous period as published, when made by the
    // same rules; otherwise reclassified with the current rules.
    let previous_period = period.previous();
    let step = Instant::now();
    let previous_manifest =
        publish::published_manifest(warehouse, &job.name, previous_period).await?;
    // A published snapshot that still lists ids merged since (identity
    // merges) is not like with like: reclassify it with the aliases.
    let mut merged_since = false;
    if let (Some(manifest), Some(merged)) = (&previous_manifest, inputs::merged_ids(ctx))
        && manifest.rule_hash == *rule_hash
        && !merged.ids.is_empty()
    {
        let batches = publish::read_table(warehouse, &job.name, "snapshots", previous_period)
            .await?
            .unwrap_or_default();
        merged_since = batches.iter().any(|batch| {
            batch
                .column_by_name("customer_id")
                .and_then(|c| c.as_string_opt::<i32>())
                .is_some_and(|ids| ids.iter().flatten().any(|id| merged.ids.contains(id)))
        });
    }
    let previous_activity: Option<(f64, f64)>;
    let (previous, from_side, from_side_reason) = match previous_manifest {
        Some(manifest) if manifest.rule_hash == *rule_hash && !merged_since => {
            let mut batches =
                publish::read_table(warehouse, &job.name, "snapshots", previous_period)
                    .await?
                    .unwrap_or_default();
            // Erased customers never come back, even from a snapshot
            // published before their erasure reached it.
            if let Some(suppression) = inputs::suppression(ctx) {
                batches = suppression.filter_batches(batches);
            }
            previous_activity =
                publish::read_table(warehouse, &job.name, "segment_summary", previous_period)
                    .await?
                    .map(|batches| activity_of_summary(&batches));
            (
                frame_of(ctx, batches).await?,
                FromSide::Published,
                format!(
                    "{previous_period} was published by run {} with the same rules",
                    manifest.run_id
                ),
            )
        }
        other => {
            let reason = match other {
                Some(_) if merged_since => format!(
                    "{previous_period}'s published snapshot lists ids merged since by customer_aliases; reclassified with the current rules and aliases"
                ),
                Some(_) => format!(
                    "{previous_period} was published with other rules; reclassified with the current rules"
                ),
                None => format!(
                    "{previous_period} is not published; reclassified with the current rules"
                ),
            };
            let previous_params = Parameters::new(previous_period, job.window_months);
            let classified = pipeline::classify(ctx, job, &previous_params).await?;
            previous_activity = Some(activity_of_classified(&classified).await?);
            let execution = |source| PipelineError::Execution {
                context: "selecting the previous period".into(),
                source,
            };
            let selected = classified
                .select(FROM_COLUMNS.iter().map(|c| col(*c)).collect::<Vec<_>>())
                .map_err(execution)?;
            (selected, FromSide::Reclassified, reason)
        }
    };
    timings.insert("previous".to_string(), step.elapsed().as_millis() as u64);

    let step = Instant::now();
    let current = pipeline::classify(ctx, job, params).await?;
    timings.insert("classify".to_string(), step.elapsed().as_millis() as u64);

    let step = Instant::now();
    let tables = build_period_tables(ctx, job, params, current, previous, rule_hash).await?;
    if let (Some(summary), Some((previous_active, previous_revenue))) = (
        tables.batch(OutputTable::SegmentSummary)?,
        previous_activity,
    ) {
        let (active, revenue) = activity_of_summary(std::slice::from_ref(&summary));
        let limits = [
            (
                Gate::ActiveCustomersChange,
                "active customers",
                active,
                previous_active,
                config.quality.max_active_customers_change,
            ),
            (
                Gate::RevenueChange,
                "revenue",
                revenue,
                previous_revenue,
                config.quality.max_revenue_change,
            ),
        ];
        for (name, what, now, before, limit) in limits {
            if let Some(change) = relative_change(now, before)
                && change > limit
            {
                gate(
                    options,
                    name,
                    format!(
                        "{what} of {period} moved {:.1}% against {previous_period} ({before:.2} → {now:.2}), above the configured {:.1}%",
                        change * 100.0,
                        limit * 100.0
                    ),
                )?;
            }
        }
    }
    timings.insert("tables".to_string(), step.elapsed().as_millis() as u64);
    Ok((tables, from_side, from_side_reason))
}

/// (active customers, revenue) of a period from its `segment_summary`.
fn activity_of_summary(batches: &[RecordBatch]) -> (f64, f64) {
    let mut active = 0.0;
    let mut revenue = 0.0;
    for batch in batches {
        let schema = batch.schema();
        let (Ok(a), Ok(r)) = (
            schema.index_of("active_customers"),
            schema.index_of("revenue"),
        ) else {
            continue;
        };
        let actives = batch.column(a).as_primitive::<Int64Type>();
        let revenues = batch.column(r).as_primitive::<Decimal128Type>();
        for row in 0..batch.num_rows() {
            active += actives.value(row) as f64;
            revenue += revenues.value(row) as f64 / 100.0;
        }
    }
    (active, revenue)
}

/// (active customers, revenue) of a reclassified period.
async fn activity_of_classified(classified: &DataFrame) -> Result<(f64, f64), PipelineError> {
    use datafusion::functions_aggregate::expr_fn::{count, sum};
    use datafusion::logical_expr::{ExprFunctionExt, lit};
    let execution = |source| PipelineError::Execution {
        context: "measuring the previous period".into(),
        source,
    };
    let batches = classified
        .clone()
        .aggregate(
            vec![],
            vec![
                count(lit(1))
                    .filter(col("period_orders").gt(lit(0i64)))
                    .build()
                    .map_err(execution)?
                    .alias("active"),
                sum(col("period_revenue")).alias("revenue"),
            ],
        )
        .map_err(execution)?
        .collect()
        .await
        .map_err(execution)?;
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok((0.0, 0.0));
    };
    let active = batch.column(0).as_primitive::<Int64Type>().value(0) as f64;
    let revenues = batch.column(1).as_primitive::<Decimal128Type>();
    let revenue = if revenues.is_null(0) {
        0.0
    } else {
        revenues.value(0) as f64 / 10f64.powi(revenues.scale() as i32)
    };
    Ok((active, revenue))
}

/// The rejects table from its rows.
fn rejects_batch(rejects: Vec<inputs::RejectedRow>) -> Result<RecordBatch, RunError> {
    use datafusion::arrow::array::StringArray;
    let contract = table_schema(OutputTable::Rejects);
    let column = |f: fn(&inputs::RejectedRow) -> &str| {
        Arc::new(StringArray::from_iter_values(rejects.iter().map(f))) as _
    };
    let batch = RecordBatch::try_new(
        contract.schema.clone(),
        vec![
            column(|r| &r.source_file),
            column(|r| &r.row),
            column(|r| &r.reason),
        ],
    )
    .map_err(|e| {
        OutputError::from(crate::model::ContractError {
            table: "rejects".into(),
            message: e.to_string(),
        })
    })?;
    Ok(batch)
}

//! One run of a job for one period, end to end: inputs → steps →
//! classification (of the period and, when needed, of the previous one) →
//! output tables → publish (unless dry run).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Decimal128Type, Int64Type};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::col;
use datafusion::prelude::{DataFrame, SessionContext};
use tracing::info;

use crate::config::{Config, ConfigError, Job};
use crate::engine::{self, EngineError};
use crate::lease::{Lease, LeaseError};
use crate::outputs::{OutputError, PeriodTables, build_period_tables};
use crate::period::Period;
use crate::pipeline::{self, Parameters, PipelineError, sql_options};
use crate::publish::{self, Manifest, PublishError, RowCounts};
use crate::storage::{StorageError, Warehouse};

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
    Publish(#[from] PublishError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("gate `{gate}` failed: {message}")]
    Gate { gate: String, message: String },
    #[error(transparent)]
    Lease(#[from] LeaseError),
}

impl RunError {
    /// Exit codes of DESIGN §6.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Config(_) => 2,
            // Permissions, network, retries exhausted while reading inputs.
            RunError::Engine(EngineError::Source { source, .. })
                if crate::storage::is_storage_failure(source as &(dyn std::error::Error + 'static)) =>
            {
                4
            }
            RunError::Lease(LeaseError::Storage(_)) => 4,
            RunError::Pipeline(error) if error.is_job_error() => 2,
            RunError::Engine(
                EngineError::Mapping { .. }
                | EngineError::MissingColumn { .. }
                | EngineError::Source { .. },
            ) => 3,
            RunError::Gate { .. } => 3,
            RunError::Storage(_)
            | RunError::Publish(PublishError::Storage(_))
            | RunError::Engine(EngineError::Storage(_)) => 4,
            _ => 1,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    pub period: Period,
    pub dry_run: bool,
}

/// What a run did.
#[derive(Debug)]
pub struct RunOutcome {
    pub period: Period,
    pub tables: PeriodTables,
    pub manifest: Manifest,
    pub published: bool,
    pub warehouse: String,
}

struct InputStats {
    rows_read: u64,
    anonymous_rows: u64,
    period_rows: u64,
    period_revenue_cents: i128,
    identified_revenue_cents: i128,
}

async fn input_stats(
    ctx: &SessionContext,
    params: &Parameters,
) -> Result<InputStats, PipelineError> {
    let execution = |source| PipelineError::Execution {
        context: "counting input rows".into(),
        source,
    };
    let batches = ctx
        .sql_with_options(
            include_str!("../sql/outputs/input_stats.sql"),
            sql_options(),
        )
        .await
        .map_err(execution)?
        .with_param_values(params.values())
        .map_err(execution)?
        .collect()
        .await
        .map_err(execution)?;
    let batch = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .expect("an aggregate returns one row");
    let int = |i: usize| batch.column(i).as_primitive::<Int64Type>().value(0) as u64;
    let cents = |i: usize| batch.column(i).as_primitive::<Decimal128Type>().value(0);
    Ok(InputStats {
        rows_read: int(0),
        anonymous_rows: int(1),
        period_rows: int(2),
        period_revenue_cents: cents(3),
        identified_revenue_cents: cents(4),
    })
}

fn format_cents(cents: i128) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
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
            crate::outputs::table_schema("snapshots")
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

/// Run `job` for one period under the period's publishing lease (DESIGN §5,
/// guarantee 4); `force_lease` breaks a live lease of another run. A dry run
/// takes no lease.
pub async fn run_with(
    job: &Job,
    config: &Config,
    options: RunOptions,
    force_lease: bool,
) -> Result<RunOutcome, RunError> {
    crate::storage::scoped(config.storage.clone(), async {
        let run_id = uuid::Uuid::new_v4().to_string();
        let lease = if options.dry_run {
            None
        } else {
            let warehouse = Warehouse::open(&config.warehouse)?;
            let ttl = config.storage.lease_ttl;
            Some(
                Lease::acquire(&warehouse, &job.name, options.period, &run_id, ttl, force_lease)
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
    config.check_inputs_for(&job.inputs, &job.path)?;
    let warehouse = Warehouse::open(&config.warehouse)?;
    info!(job = %job.name, %period, run_id = %run_id, dry_run = options.dry_run, "Starting run.");

    let ctx = engine::session(config)?;
    let files = engine::register_inputs(&ctx, config, &job.inputs).await?;
    let params = Parameters::new(period, job.window_months);
    let stats = input_stats(&ctx, &params).await?;
    timings.insert("inputs".to_string(), started.elapsed().as_millis() as u64);
    if stats.period_rows == 0 {
        return Err(RunError::Gate {
            gate: "no_data".into(),
            message: format!(
                "no transaction is dated in {period} ({} rows read from {} file(s)); nothing was published\nhint: check that the period's files have arrived, or pick another --period",
                stats.rows_read,
                files.len()
            ),
        });
    }

    // The "from" side: the previous period as published, when made by the
    // same rules; otherwise reclassified with the current rules.
    let previous_period = period.previous();
    let step = Instant::now();
    let previous_manifest =
        publish::published_manifest(&warehouse, &job.name, previous_period).await?;
    let (previous, from_side, from_side_reason) = match previous_manifest {
        Some(manifest) if manifest.rule_hash == rule_hash => {
            let batches = publish::read_table(&warehouse, &job.name, "snapshots", previous_period)
                .await?
                .unwrap_or_default();
            (
                frame_of(&ctx, batches).await?,
                "published",
                format!(
                    "{previous_period} was published by run {} with the same rules",
                    manifest.run_id
                ),
            )
        }
        other => {
            let reason = match other {
                Some(_) => format!(
                    "{previous_period} was published with other rules; reclassified with the current rules"
                ),
                None => format!(
                    "{previous_period} is not published; reclassified with the current rules"
                ),
            };
            let previous_params = Parameters::new(previous_period, job.window_months);
            let classified = pipeline::classify(&ctx, job, &previous_params).await?;
            let execution = |source| PipelineError::Execution {
                context: "selecting the previous period".into(),
                source,
            };
            let selected = classified
                .select(FROM_COLUMNS.iter().map(|c| col(*c)).collect::<Vec<_>>())
                .map_err(execution)?;
            (selected, "reclassified", reason)
        }
    };
    timings.insert("previous".to_string(), step.elapsed().as_millis() as u64);

    let step = Instant::now();
    let current = pipeline::classify(&ctx, job, &params).await?;
    timings.insert("classify".to_string(), step.elapsed().as_millis() as u64);

    let step = Instant::now();
    let tables = build_period_tables(&ctx, job, &params, current, previous, &rule_hash).await?;
    timings.insert("tables".to_string(), step.elapsed().as_millis() as u64);

    let manifest = Manifest {
        run_id,
        job: job.name.clone(),
        period: period.to_string(),
        job_hash: job.job_hash.clone(),
        rule_hash,
        published_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        from_side: from_side.to_string(),
        from_side_reason,
        rows: RowCounts {
            read: stats.rows_read,
            used: stats.rows_read - stats.anonymous_rows,
            anonymous: stats.anonymous_rows,
            rejected: 0,
        },
        period_revenue: format_cents(stats.period_revenue_cents),
        identification_rate: (stats.period_revenue_cents != 0)
            .then(|| stats.identified_revenue_cents as f64 / stats.period_revenue_cents as f64),
        tables: tables
            .tables
            .iter()
            .map(|t| (t.table.name().to_string(), t.batch.num_rows() as u64))
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
        inputs: files,
    };
    let mut manifest = manifest;
    if !options.dry_run {
        let step = Instant::now();
        if let Some(lease) = lease {
            lease.ensure_held().await?;
        }
        publish::publish(&warehouse, &job.name, period, &tables, &manifest).await?;
        manifest
            .timings_ms
            .insert("publish".to_string(), step.elapsed().as_millis() as u64);
        info!(job = %job.name, %period, customers = tables.customers, "Published period.");
    }
    manifest
        .timings_ms
        .insert("total".to_string(), started.elapsed().as_millis() as u64);
    Ok(RunOutcome {
        period,
        tables,
        manifest,
        published: !options.dry_run,
        warehouse: config.warehouse.clone(),
    })
}

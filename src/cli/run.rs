//! `segments run`: one period of one job, then the human summary, then its
//! outcome pushed to a Pushgateway when one is set (src/metrics/).

use std::path::Path;
use std::time::{Instant, SystemTime};

use crate::config::{Config, Job};
use crate::metrics::{self, Published, RunMetrics};
use crate::model::ExitStatus;
use crate::model::Period;
use crate::run::{self, RunOptions};

use super::{Failure, JobArgs, RunArgs, failure, parse_period, summary};

/// What is known of a run as it goes, for the push at its end, even when a
/// later step fails.
#[derive(Debug, Default)]
struct Known {
    job: Option<String>,
    period: Option<Period>,
    /// The config's `metrics.pushgateway_url`.
    pushgateway_url: Option<String>,
}

/// Load the job and config, and the period (default: last complete month).
pub(crate) fn load(args: &JobArgs, period: Option<&str>) -> Result<(Job, Config, Period), Failure> {
    load_noting(args, period, &mut Known::default())
}

fn load_noting(
    args: &JobArgs,
    period: Option<&str>,
    known: &mut Known,
) -> Result<(Job, Config, Period), Failure> {
    let job = Job::load(&args.job).map_err(|e| failure(ExitStatus::Invalid, e))?;
    known.job = Some(job.name.clone());
    let config = Config::load(&args.config).map_err(|e| failure(ExitStatus::Invalid, e))?;
    known.pushgateway_url = config.metrics.pushgateway_url.clone();
    config
        .check_inputs_for(&job)
        .map_err(|e| failure(ExitStatus::Invalid, e))?;
    let period = match period {
        Some(text) => parse_period(text)?,
        None => Period::last_complete(config.timezone),
    };
    known.period = Some(period);
    let period = period
        .ensure_complete(config.timezone)
        .map_err(|e| failure(ExitStatus::Invalid, e))?;
    Ok((job, config, period))
}

pub async fn run(args: RunArgs) -> Result<(), Failure> {
    let started = Instant::now();
    let mut known = Known::default();
    let result = run_period(&args, &mut known).await;
    if !args.dry_run {
        push(&args, known, &result, started).await;
    }
    result.map(|_| ())
}

async fn run_period(args: &RunArgs, known: &mut Known) -> Result<Published, Failure> {
    let (job, config, period) = load_noting(&args.job, args.period.as_deref(), known)?;
    let outcome = run::run_with(
        &job,
        &config,
        RunOptions {
            period,
            dry_run: args.dry_run,
            allowed_gates: args.allow_gate.clone(),
            backfill_until: None,
            shared: run::SharedWork::default(),
        },
        args.force,
    )
    .await
    .map_err(|e| failure(e.exit_status(), e))?;
    summary::print_run(&job, &outcome);
    Ok(Published {
        rows_read: outcome.manifest.rows.read,
        rows_rejected: outcome.manifest.rows.rejected,
        customers: outcome.tables.segment_counts.clone(),
        movements: outcome.tables.movement_counts.clone(),
    })
}

/// Push the run's outcome when a Pushgateway is set: `--pushgateway-url` /
/// `SEGMENTS_PUSHGATEWAY_URL`, else the config's. Never fails the run.
async fn push(args: &RunArgs, known: Known, result: &Result<Published, Failure>, started: Instant) {
    let url = [args.pushgateway_url.clone(), known.pushgateway_url]
        .into_iter()
        .flatten()
        .map(|url| url.trim().to_string())
        .find(|url| !url.is_empty());
    let Some(url) = url else {
        return;
    };
    let job = known
        .job
        .unwrap_or_else(|| file_stem(&args.job.job).unwrap_or_default());
    let (exit_code, published) = match result {
        Ok(published) => (ExitStatus::Success.code(), Some(published.clone())),
        Err(failure) => (failure.code.code(), None),
    };
    let report = RunMetrics {
        job,
        period: known.period.map(|p| p.to_string()),
        exit_code,
        finished_at: SystemTime::now(),
        duration: started.elapsed(),
        published,
    };
    match metrics::push(&url, &report).await {
        Ok(()) => tracing::info!("pushed the run's outcome to {}", metrics::redact_url(&url)),
        Err(error) => tracing::warn!(
            "could not push the run's metrics (the run's outcome is unchanged): {}",
            crate::storage::redact(&error.to_string())
        ),
    }
}

fn file_stem(path: &Path) -> Option<String> {
    Some(path.file_stem()?.to_string_lossy().into_owned())
}

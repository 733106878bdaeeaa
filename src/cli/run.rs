//! `segments run`: one period of one job, then the human summary, then its
//! outcome pushed to a Pushgateway when one is set (src/metrics/); its
//! OpenLineage START and COMPLETE or FAIL events around it when a
//! destination is set (src/cli/lineage.rs).

use std::path::Path;
use std::time::{Instant, SystemTime};

use crate::config::{Config, Job};
use crate::metrics::{self, Published, RunMetrics};
use crate::model::ExitStatus;
use crate::model::Period;
use crate::run::{self, RunOptions};

use super::lineage::PeriodEvents;
use super::{Failure, JobArgs, RunArgs, failure, parse_period, summary};

/// What is known of a run as it goes, for the push at its end, even when a
/// later step fails.
#[derive(Debug, Default)]
struct Known {
    job: Option<String>,
    period: Option<Period>,
    /// The config's `metrics.pushgateway_url`.
    pushgateway_url: Option<String>,
    timezone: Option<chrono_tz::Tz>,
    /// The run's id, for its events and its manifest.
    run_id: String,
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
    known.timezone = Some(config.timezone);
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
    let mut known = Known {
        run_id: crate::lineage::new_run_id(),
        ..Known::default()
    };
    let result = run_period(&args, &mut known).await;
    if !args.dry_run {
        push(&args, known, &result, started).await;
    }
    result.map(|_| ())
}

/// The run, between its OpenLineage events when the `OPENLINEAGE_*`
/// variables or the config's `lineage:` set a destination (not for a dry
/// run, which publishes nothing).
async fn run_period(args: &RunArgs, known: &mut Known) -> Result<Published, Failure> {
    let loaded = load_noting(&args.job, args.period.as_deref(), known);
    let lineage = match &loaded {
        _ if args.dry_run => None,
        Ok((_, config, _)) => super::lineage::resolve(Some(&config.lineage)),
        // The variables alone: the config did not load.
        Err(_) => super::lineage::resolve(None),
    };
    let Some(lineage) = lineage else {
        return run_loaded(args, known, loaded).await;
    };
    let (job, config, period) = match loaded {
        Ok(loaded) => loaded,
        Err(failure) => {
            // A START then the FAIL: the run failed before it began.
            events_of(args, known, &lineage, None)
                .fail(failure.code, failure.error.as_ref())
                .await;
            return Err(failure);
        }
    };
    let mut events = events_of(args, known, &lineage, Some((&job, &config)));
    events.start().await;
    match run_job(args, known, &job, &config, period).await {
        Ok((outcome, published)) => {
            events.complete(&outcome).await;
            Ok(published)
        }
        Err(failure) => {
            events.fail(failure.code, failure.error.as_ref()).await;
            Err(failure)
        }
    }
}

fn events_of<'a>(
    args: &RunArgs,
    known: &Known,
    lineage: &'a crate::lineage::Lineage,
    loaded: Option<(&'a Job, &'a Config)>,
) -> PeriodEvents<'a> {
    PeriodEvents {
        lineage,
        run_id: known.run_id.clone(),
        job_name: known
            .job
            .clone()
            .unwrap_or_else(|| file_stem(&args.job.job).unwrap_or_default()),
        parent: lineage.parent.clone(),
        period: known.period,
        timezone: known.timezone.unwrap_or(chrono_tz::UTC),
        loaded,
        started: false,
    }
}

async fn run_loaded(
    args: &RunArgs,
    known: &Known,
    loaded: Result<(Job, Config, Period), Failure>,
) -> Result<Published, Failure> {
    let (job, config, period) = loaded?;
    run_job(args, known, &job, &config, period)
        .await
        .map(|(_, published)| published)
}

async fn run_job(
    args: &RunArgs,
    known: &Known,
    job: &Job,
    config: &Config,
    period: Period,
) -> Result<(run::RunOutcome, Published), Failure> {
    let outcome = run::run_with(
        job,
        config,
        RunOptions {
            period,
            run_id: known.run_id.clone(),
            dry_run: args.dry_run,
            allowed_gates: args.allow_gate.clone(),
            recompute_from: if args.full { RunOptions::FULL } else { None },
            backfill_until: None,
            shared: run::SharedWork::default(),
        },
        args.force,
    )
    .await
    .map_err(|e| failure(e.exit_status(), e))?;
    summary::print_run(job, &outcome);
    let published = Published {
        rows_read: outcome.manifest.rows.read,
        rows_rejected: outcome.manifest.rows.rejected,
        customers: outcome.tables.segment_counts.clone(),
        movements: outcome.tables.movement_counts.clone(),
    };
    Ok((outcome, published))
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

//! `segments run`: one period of one job, then the human summary.

use crate::config::{Config, Job};
use crate::model::ExitStatus;
use crate::model::Period;
use crate::run::{self, RunOptions};

use super::{Failure, JobArgs, RunArgs, failure, parse_period, summary};

/// Load the job and config, and the period (default: last complete month).
pub(crate) fn load(args: &JobArgs, period: Option<&str>) -> Result<(Job, Config, Period), Failure> {
    let job = Job::load(&args.job).map_err(|e| failure(ExitStatus::Invalid, e))?;
    let config = Config::load(&args.config).map_err(|e| failure(ExitStatus::Invalid, e))?;
    config
        .check_inputs_for(&job)
        .map_err(|e| failure(ExitStatus::Invalid, e))?;
    let period = match period {
        Some(text) => parse_period(text)?,
        None => Period::last_complete(config.timezone),
    };
    let period = period
        .ensure_complete(config.timezone)
        .map_err(|e| failure(ExitStatus::Invalid, e))?;
    Ok((job, config, period))
}

pub async fn run(args: RunArgs) -> Result<(), Failure> {
    let (job, config, period) = load(&args.job, args.period.as_deref())?;
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
    Ok(())
}

//! `segments backfill`: run a job for every period of a range, oldest first,
//! so that each period migrates from the published one before it.
//!
//! Resumable: a period already published (its `_SUCCESS` present) by the same
//! job file and rules (manifest `job_hash` and `rule_hash`) is skipped unless
//! `--rerun`. It stops at the first failing period with that period's exit
//! code; running the same command again resumes there.
//!
//! Progress goes to stderr: a progress bar on a terminal, otherwise (or with
//! `--log-format json`) one line per period, JSON with `--log-format json`.
//! The final table goes to stdout.
//!
//! OpenLineage (docs/guides/lineage.md), when a destination is set: the
//! backfill is a run of job `<job>.backfill` (START, then COMPLETE or FAIL),
//! and every period it runs has its own START and COMPLETE or FAIL, its
//! parent facet naming the backfill's run. Skipped periods send nothing.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::lifecycle::restate;
use crate::model::ExitStatus;
use crate::model::Period;
use crate::run::{self, RunError, RunOptions};
use crate::storage::Warehouse;
use crate::warehouse::publish;

use super::lineage::PeriodEvents;
use super::run::load;
use super::{BackfillArgs, Failure, LogFormat, failure, parse_period};

/// What happened to one period.
#[derive(Debug, Clone)]
enum Status {
    Published {
        run_id: String,
        customers: i64,
        elapsed: Duration,
    },
    Skipped {
        run_id: String,
    },
    /// `--changed`: its inputs did not change (nor those of the period its
    /// migrations come from).
    Unchanged {
        run_id: String,
    },
    Failed {
        code: ExitStatus,
        message: String,
    },
}

impl Status {
    fn word(&self) -> &'static str {
        match self {
            Status::Published { .. } => "published",
            Status::Skipped { .. } | Status::Unchanged { .. } => "skipped",
            Status::Failed { .. } => "failed",
        }
    }

    fn describe(&self) -> String {
        match self {
            Status::Published {
                run_id,
                customers,
                elapsed,
            } => format!(
                "published in {:.2}s, {customers} customers (run {run_id})",
                elapsed.as_secs_f64()
            ),
            Status::Skipped { run_id } => {
                format!("skipped: already published by run {run_id} with the same job and rules")
            }
            Status::Unchanged { run_id } => {
                format!("skipped: inputs unchanged since run {run_id}")
            }
            Status::Failed { code, message } => format!(
                "failed (exit {code}): {}",
                message.lines().next().unwrap_or_default()
            ),
        }
    }
}

/// Where progress goes.
enum Progress {
    Bar(ProgressBar),
    Lines { json: bool },
    Silent,
}

impl Progress {
    fn new(total: usize, log_format: LogFormat, quiet: bool, job: &str) -> Self {
        if quiet {
            return Progress::Silent;
        }
        match log_format {
            LogFormat::Json => Progress::Lines { json: true },
            LogFormat::Human if std::io::stderr().is_terminal() => {
                let bar = ProgressBar::new(total as u64);
                let style = ProgressStyle::with_template(
                    "{spinner} {prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
                )
                .expect("valid template")
                .progress_chars("=> ");
                bar.set_style(style);
                bar.set_prefix(format!("backfill {job}"));
                bar.enable_steady_tick(Duration::from_millis(120));
                Progress::Bar(bar)
            }
            LogFormat::Human => Progress::Lines { json: false },
        }
    }

    fn start(&self, period: Period) {
        if let Progress::Bar(bar) = self {
            bar.set_message(period.to_string());
        }
    }

    fn done(&self, job: &str, period: Period, index: usize, total: usize, status: &Status) {
        match self {
            Progress::Bar(bar) => {
                bar.println(format!("  {period} {}", status.describe()));
                bar.inc(1);
            }
            Progress::Lines { json: false } => {
                eprintln!(
                    "backfill {job} [{index}/{total}] {period}: {}",
                    status.describe()
                );
            }
            Progress::Lines { json: true } => {
                let mut line = serde_json::json!({
                    "event": "backfill_period",
                    "job": job,
                    "period": period.to_string(),
                    "index": index,
                    "total": total,
                    "status": status.word(),
                });
                match status {
                    Status::Published {
                        run_id,
                        customers,
                        elapsed,
                    } => {
                        line["run_id"] = run_id.as_str().into();
                        line["customers"] = (*customers).into();
                        line["elapsed_ms"] = (elapsed.as_millis() as u64).into();
                    }
                    Status::Skipped { run_id } | Status::Unchanged { run_id } => {
                        line["run_id"] = run_id.as_str().into()
                    }
                    Status::Failed { code, message } => {
                        line["exit_code"] = code.code().into();
                        line["error"] = message.as_str().into();
                    }
                }
                eprintln!("{line}");
            }
            Progress::Silent => {}
        }
    }

    fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// The manifest of a published period, read with the config's storage
/// settings (credentials, retries) like a run does.
async fn published_manifest(
    config: &Config,
    job: &str,
    period: Period,
) -> Result<Option<publish::Manifest>, RunError> {
    crate::storage::scoped(config.storage.clone(), async {
        let warehouse = Warehouse::open(&config.warehouse)?;
        Ok(publish::published_manifest(&warehouse, job, period).await?)
    })
    .await
}

pub async fn backfill(
    args: BackfillArgs,
    log_format: LogFormat,
    quiet: bool,
) -> Result<(), Failure> {
    // `load` checks the job, the config and that `--to` is a complete month.
    let (job, config, to) = load(&args.job, args.to.as_deref())?;
    let from = match &args.from {
        Some(from) => Some(parse_period(from)?),
        None => None,
    };
    // --changed: the published periods to recompute (see `crate::lifecycle::restate`).
    let (periods, plan): (Vec<Period>, Option<BTreeSet<Period>>) = if args.changed {
        let statuses = restate::status(&job, &config)
            .await
            .map_err(|e| failure(e.exit_status(), e))?;
        let to = args.to.as_ref().map(|_| to);
        let statuses: Vec<_> = statuses
            .into_iter()
            .filter(|s| from.is_none_or(|f| s.period >= f) && to.is_none_or(|t| s.period <= t))
            .collect();
        let plan = statuses
            .iter()
            .filter(|s| s.recompute())
            .map(|s| s.period)
            .collect();
        (statuses.iter().map(|s| s.period).collect(), Some(plan))
    } else {
        let from = from.expect("clap requires --from without --changed");
        if from > to {
            return Err(failure(
                ExitStatus::Invalid,
                anyhow::anyhow!("--from {from} is after --to {to}: give the oldest period first"),
            ));
        }
        (from.through(to).collect(), None)
    };
    let (from, to) = match (periods.first(), periods.last()) {
        (Some(first), Some(last)) => (*first, *last),
        _ => {
            println!(
                "Backfill {} --changed: no published period in range, nothing to do",
                job.name
            );
            return Ok(());
        }
    };
    let total = periods.len();
    let rule_hash = job.rule_hash(&config);
    let started = Instant::now();
    let lineage = super::lineage::resolve(Some(&config.lineage));
    let backfill_run_id = crate::lineage::new_run_id();
    let backfill_event = |event_type| {
        let mut event = crate::lineage::RunEvent::new(
            event_type,
            &backfill_run_id,
            &format!("{}.backfill", job.name),
            crate::lineage::JobKind::Backfill,
        )
        .with_periods(from, to, config.timezone);
        event.job_facts = Some(crate::lineage::JobFacts {
            job_hash: job.job_hash.clone(),
            rule_hash: rule_hash.clone(),
            file: job.path.display().to_string(),
        });
        event.parent = lineage.as_ref().and_then(|l| l.parent.clone());
        event
    };
    if let Some(lineage) = &lineage {
        lineage
            .send(&backfill_event(crate::lineage::EventType::Start))
            .await;
    }
    let progress = Progress::new(total, log_format, quiet, &job.name);

    let mut done: Vec<(Period, Status)> = Vec::new();
    let mut stopped: Option<(Period, RunError)> = None;
    // What the periods share (input facts, store orders): computed by the
    // first that needs it.
    let shared = run::SharedWork::default();
    // `--full`: the first period run computes every month fact again and
    // stores it; each later one computes its own month again and reuses
    // the rest, instead of computing all of history once per period.
    let mut recompute_from = if args.full { RunOptions::FULL } else { None };
    for (index, period) in periods.iter().copied().enumerate() {
        progress.start(period);
        let published = published_manifest(&config, &job.name, period)
            .await
            .map_err(|error| {
                progress.finish();
                failure(error.exit_status(), error)
            })?;
        let status = match published {
            Some(manifest) if plan.as_ref().is_some_and(|plan| !plan.contains(&period)) => {
                Status::Unchanged {
                    run_id: manifest.run_id,
                }
            }
            Some(manifest)
                if !args.rerun
                    && plan.is_none()
                    && manifest.job_hash == job.job_hash
                    && manifest.rule_hash == rule_hash =>
            {
                Status::Skipped {
                    run_id: manifest.run_id,
                }
            }
            _ => {
                let step = Instant::now();
                let mut options = RunOptions::new(period);
                options.allowed_gates = args.allow_gate.clone();
                options.recompute_from = recompute_from;
                options.backfill_until = periods.last().copied();
                options.shared = shared.clone();
                let mut events = lineage.as_ref().map(|lineage| PeriodEvents {
                    lineage,
                    run_id: options.run_id.clone(),
                    job_name: job.name.clone(),
                    parent: Some(lineage.child_of(
                        lineage.run(&format!("{}.backfill", job.name), &backfill_run_id),
                    )),
                    period: Some(period),
                    timezone: config.timezone,
                    loaded: Some((&job, &config)),
                    started: false,
                });
                if let Some(events) = &mut events {
                    events.start().await;
                }
                let result = run::run(&job, &config, options).await;
                if result.is_ok() && args.full {
                    recompute_from = Some(period.next().start());
                }
                if let Some(events) = &mut events {
                    match &result {
                        Ok(outcome) => events.complete(outcome).await,
                        Err(error) => events.fail(error.exit_status(), error).await,
                    }
                }
                match result {
                    Ok(outcome) => Status::Published {
                        run_id: outcome.manifest.run_id,
                        customers: outcome.tables.customers,
                        elapsed: step.elapsed(),
                    },
                    Err(error) => {
                        let status = Status::Failed {
                            code: error.exit_status(),
                            message: crate::model::causes::one_line(&error),
                        };
                        progress.done(&job.name, period, index + 1, total, &status);
                        done.push((period, status));
                        stopped = Some((period, error));
                        break;
                    }
                }
            }
        };
        progress.done(&job.name, period, index + 1, total, &status);
        done.push((period, status));
    }
    progress.finish();
    if let Some(lineage) = &lineage {
        let mut event = match &stopped {
            None => backfill_event(crate::lineage::EventType::Complete),
            Some((period, error)) => {
                let mut event = backfill_event(crate::lineage::EventType::Fail);
                event.error = Some(format!(
                    "stopped at {period}: {}",
                    super::lineage::message_of(error)
                ));
                event
            }
        };
        event.exit_code = Some(match &stopped {
            None => ExitStatus::Success.code(),
            Some((_, error)) => error.exit_status().code(),
        });
        lineage.send(&event).await;
    }
    // What the periods shared (store orders, maybe in the spill directory)
    // is released with the backfill, finished or stopped.
    drop(shared);

    let count = |word: &str| done.iter().filter(|(_, s)| s.word() == word).count();
    let mut out = std::io::stdout().lock();
    // A closed stdout (e.g. `| head`) must not turn a finished backfill into a panic.
    let _ = writeln!(
        out,
        "Backfill {} {from}..{to}: {} published, {} skipped ({}), {} not run, in {:.1}s",
        job.name,
        count("published"),
        count("skipped"),
        if args.changed {
            "inputs unchanged"
        } else if args.rerun {
            "already published with the same job and rules"
        } else {
            "already published with the same job and rules; --rerun recomputes them"
        },
        total - done.len(),
        started.elapsed().as_secs_f64()
    );
    for (period, status) in &done {
        let _ = writeln!(out, "  {period}  {}", status.describe());
    }
    drop(out);

    match stopped {
        None => Ok(()),
        Some((period, error)) => {
            let code = error.exit_status();
            let published: Vec<String> = done
                .iter()
                .filter(|(_, s)| !matches!(s, Status::Failed { .. }))
                .map(|(p, _)| p.to_string())
                .collect();
            let context = format!(
                "backfill of {} stopped at {period} ({} of {total} period(s) before it are published); fix the cause and rerun the same command to resume from {period}",
                job.name,
                published.len()
            );
            Err(failure(code, anyhow::Error::new(error).context(context)))
        }
    }
}

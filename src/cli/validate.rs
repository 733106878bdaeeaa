//! `segments validate` and `segments explain`: plan everything without
//! running the job on data. `validate` binds representative parameters and
//! plans each step, rule and output query against empty canonical inputs,
//! then lints the rules ([`crate::analysis::lint`]): never-matching or shadowed rules
//! and uncovered score combinations are errors, segments left empty by the
//! last published period are warnings.

use datafusion::prelude::SessionContext;

use crate::analysis::lint;
use crate::config::{ClassificationKind, Config, ConfigError, Job};
use crate::engine;
use crate::inputs;
use crate::model::ExitStatus;
use crate::model::Period;
use crate::outputs::{build_audience_tables, build_period_tables};
use crate::pipeline::{self, Parameters};

use super::{ExplainArgs, Failure, JobArgs, failure, parse_period};

fn render(errors: &[pipeline::PipelineError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

pub async fn validate(args: JobArgs) -> Result<(), Failure> {
    let job = Job::load(&args.job).map_err(|e| failure(ExitStatus::Invalid, e))?;
    let config = Config::load(&args.config).map_err(|e| failure(ExitStatus::Invalid, e))?;
    config
        .check_inputs_for(&job)
        .map_err(|e| failure(ExitStatus::Invalid, e))?;
    let ctx: SessionContext =
        engine::session(&config).map_err(|e| failure(ExitStatus::Internal, e))?;
    inputs::register_canonical_placeholders(&ctx, &config, &job)
        .map_err(|e| failure(ExitStatus::Internal, e))?;
    crate::facts::check(&ctx, &job)
        .await
        .map_err(|e| failure(e.exit_status(), e))?;
    let params = Parameters::new(Period::last_complete(config.timezone), job.window_months);
    if job.kind == ClassificationKind::Audiences {
        let members = pipeline::validate_audiences(&ctx, &job, &params)
            .await
            .map_err(|errors| failure(ExitStatus::Invalid, anyhow::anyhow!(render(&errors))))?;
        build_audience_tables(&ctx, &job, &params, members, "validate")
            .await
            .map_err(|e| failure(ExitStatus::Invalid, e))?;
        println!(
            "{}: ok — {} step(s), {} audience(s), inputs {}; config {}: ok",
            job.path.display(),
            job.steps.len(),
            job.segments.len(),
            job.inputs.join(", "),
            config.path.display()
        );
        return Ok(());
    }
    let classified = pipeline::validate_rules(&ctx, &job, &params)
        .await
        .map_err(|errors| failure(ExitStatus::Invalid, anyhow::anyhow!(render(&errors))))?;
    // Run the output queries over the empty inputs: they must accept the
    // job's columns. No data is read.
    let current = crate::engine::materialise(classified)
        .await
        .map_err(|e| failure(ExitStatus::Invalid, e))?;
    let previous = current
        .clone()
        .select_columns(&[
            "customer_id",
            "segment",
            "segment_rank",
            "frequency",
            "monetary",
        ])
        .map_err(|e| failure(ExitStatus::Invalid, e))?;
    build_period_tables(&ctx, &job, &params, current, previous, "validate")
        .await
        .map_err(|e| failure(ExitStatus::Invalid, e))?;
    if let Some(predict) = &job.predict {
        crate::predict::validate_summary(&ctx, predict, &params)
            .await
            .map_err(|e| failure(ExitStatus::Invalid, e))?;
    }
    // Rules that can never match, and score combinations no rule takes.
    let problems = lint::score_rules(&job)
        .await
        .map_err(|e| failure(ExitStatus::Internal, e))?;
    if !problems.is_empty() {
        return Err(failure(ExitStatus::Invalid, ConfigError::Invalid(problems)));
    }
    println!(
        "{}: ok — {} step(s), {} segment(s), inputs {}; config {}: ok",
        job.path.display(),
        job.steps.len(),
        job.segments.len(),
        job.inputs.join(", "),
        config.path.display()
    );
    // Segments the last published period left empty: a warning, read from
    // the warehouse only (never the inputs), given up on when unreachable.
    match lint::empty_segments(&job, &config, WAREHOUSE_TIMEOUT).await {
        Ok(Some(empty)) => {
            for name in &empty.segments {
                let line = job
                    .segment(name)
                    .and_then(|s| s.line)
                    .map(|l| format!(":{l}"))
                    .unwrap_or_default();
                eprintln!(
                    "warning: {}{line}: segment `{name}` had no customer in the last published period {} ({}); check that its rule can still match",
                    job.path.display(),
                    empty.period,
                    if empty.same_rules {
                        "published with these rules"
                    } else {
                        "published with other rules"
                    }
                );
            }
        }
        Ok(None) => {}
        Err(error) => eprintln!(
            "warning: empty segments not checked: cannot read the published periods of {}: {error}",
            job.name
        ),
    }
    Ok(())
}

/// How long `validate` waits for the warehouse (empty-segment warnings).
const WAREHOUSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

pub async fn explain(args: ExplainArgs) -> Result<(), Failure> {
    let job = Job::load(&args.job.job).map_err(|e| failure(ExitStatus::Invalid, e))?;
    let config = Config::load(&args.job.config).map_err(|e| failure(ExitStatus::Invalid, e))?;
    config
        .check_inputs_for(&job)
        .map_err(|e| failure(ExitStatus::Invalid, e))?;
    let period = match args.period.as_deref() {
        Some(text) => parse_period(text)?,
        None => Period::last_complete(config.timezone),
    };
    let ctx = engine::session(&config).map_err(|e| failure(ExitStatus::Internal, e))?;
    inputs::prepare(&ctx, &config, &job.inputs, period.end())
        .await
        .map_err(|e| failure(ExitStatus::InputFailed, e))?;
    let params = Parameters::new(period, job.window_months);
    pipeline::register_steps(&ctx, &job, &params)
        .await
        .map_err(|e| failure(ExitStatus::Invalid, e))?;
    for step in &job.steps {
        let frame = ctx
            .table(step.name.as_str())
            .await
            .map_err(|e| failure(ExitStatus::Invalid, e))?;
        let plan = frame
            .explain(false, false)
            .map_err(|e| failure(ExitStatus::Invalid, e))?
            .collect()
            .await
            .map_err(|e| failure(ExitStatus::Internal, e))?;
        println!("== step `{}` ({}) for {period}", step.name, step.origin);
        println!(
            "{}",
            datafusion::arrow::util::pretty::pretty_format_batches(&plan)
                .map_err(|e| failure(ExitStatus::Internal, e))?
        );
    }
    Ok(())
}

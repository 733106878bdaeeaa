//! Registers the job's SQL steps, in order, as views: each step sees the
//! inputs and the earlier steps. User SQL runs with DDL, DML and statements
//! disabled, and placeholders are bound before a step becomes a view.
//! For a run, a step that later SQL reads more than once is computed once
//! and kept (a view would be recomputed, from the input files, every time
//! it is read).

use datafusion::common::tree_node::TreeNodeRecursion;

use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{DataFrame, SessionContext};

use super::{Parameters, PipelineError, describe};
use crate::config::{Job, Step};
use crate::engine::sql_options;

/// Plan every step with the period's parameters and register it as a view
/// named after the step (replacing a view of an earlier period).
pub async fn register_steps(
    ctx: &SessionContext,
    job: &Job,
    params: &Parameters,
) -> Result<(), PipelineError> {
    for step in &job.steps {
        let frame = plan_step(ctx, step, params).await?;
        register(ctx, step, frame.into_view())?;
    }
    Ok(())
}

/// [`register_steps`] for a run: then every step read more than once by the
/// later steps and the classification is computed once, in order, and kept
/// in memory; the steps after it are planned again to read the kept rows.
pub async fn register_steps_materialised(
    ctx: &SessionContext,
    job: &Job,
    params: &Parameters,
) -> Result<(), PipelineError> {
    register_steps(ctx, job, params).await?;
    let mut reads = vec![0usize; job.steps.len()];
    if let Some(from) = job.steps.iter().position(|s| s.name == job.classify_from) {
        reads[from] += 1;
    }
    for step in &job.steps {
        // The step's own plan (not a scan of its view) shows what it reads.
        let frame = plan_step(ctx, step, params).await?;
        count_reads(frame.logical_plan(), job, &mut reads);
    }
    if reads.iter().all(|&n| n < 2) {
        return Ok(());
    }
    for (step, reads) in job.steps.iter().zip(reads) {
        let frame = plan_step(ctx, step, params).await?;
        if reads < 2 {
            register(ctx, step, frame.into_view())?;
            continue;
        }
        tracing::debug!(step = %step.name, reads, "Computing a step read more than once.");
        let kept = crate::engine::keep(ctx, frame)
            .await
            .map_err(|source| step_error(step, source))?;
        register(ctx, step, kept.into_view())?;
    }
    Ok(())
}

/// Add to `reads` every direct read of an earlier step in `plan`. Views are
/// inlined when SQL is planned, each read of a step as a subquery under the
/// step's name; the steps that one reads itself are not counted again.
fn count_reads(plan: &LogicalPlan, job: &Job, reads: &mut [usize]) {
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::SubqueryAlias(alias) = node
            && let Some(index) = job.steps.iter().position(|s| s.name == alias.alias.table())
        {
            reads[index] += 1;
            return Ok(TreeNodeRecursion::Jump);
        }
        Ok(TreeNodeRecursion::Continue)
    });
}

fn step_error(step: &Step, source: datafusion::error::DataFusionError) -> PipelineError {
    PipelineError::Step {
        step: step.name.clone(),
        origin: step.origin.clone(),
        message: describe(&source),
        source,
    }
}

/// The step's SQL planned with the period's parameters bound, or, for an
/// incremental step whose month facts the run prepared, their merge.
async fn plan_step(
    ctx: &SessionContext,
    step: &Step,
    params: &Parameters,
) -> Result<DataFrame, PipelineError> {
    if let Some(merged) = crate::facts::merged(ctx, &step.name, params.period_end()) {
        return merged.map_err(|source| step_error(step, source));
    }
    let frame = ctx
        .sql_with_options(&step.sql, sql_options())
        .await
        .map_err(|source| step_error(step, source))?;
    frame
        .with_param_values(params.values())
        .map_err(|source| step_error(step, source))
}

/// Register `table` under the step's name (replacing an earlier period's).
fn register(
    ctx: &SessionContext,
    step: &Step,
    table: std::sync::Arc<dyn datafusion::catalog::TableProvider>,
) -> Result<(), PipelineError> {
    ctx.deregister_table(step.name.as_str())
        .map_err(|source| step_error(step, source))?;
    ctx.register_table(step.name.as_str(), table)
        .map_err(|source| step_error(step, source))?;
    Ok(())
}

//! Registers the job's SQL steps, in order, as views: each step sees the
//! inputs and the earlier steps. User SQL runs with DDL, DML and statements
//! disabled, and placeholders are bound before a step becomes a view.

use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionContext;

use super::{Parameters, PipelineError, describe};
use crate::config::Job;

/// What user SQL may do: queries only.
pub fn sql_options() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Plan every step with the period's parameters and register it as a view
/// named after the step (replacing a view of an earlier period).
pub async fn register_steps(
    ctx: &SessionContext,
    job: &Job,
    params: &Parameters,
) -> Result<(), PipelineError> {
    for step in &job.steps {
        let fail = |source: datafusion::error::DataFusionError| PipelineError::Step {
            step: step.name.clone(),
            origin: step.origin.clone(),
            message: describe(&source),
            source,
        };
        let frame = ctx
            .sql_with_options(&step.sql, sql_options())
            .await
            .map_err(fail)?;
        let frame = frame.with_param_values(params.values()).map_err(fail)?;
        ctx.deregister_table(step.name.as_str()).map_err(fail)?;
        ctx.register_table(step.name.as_str(), frame.into_view())
            .map_err(fail)?;
    }
    Ok(())
}

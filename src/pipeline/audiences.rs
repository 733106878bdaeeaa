//! Audiences: every row of the job's `classification.from` step (one per
//! contact) joins every audience whose rule matches, with the audience's
//! `detail` expression. Unlike segments, audiences overlap and a contact may
//! be in none. Rules and details are parsed one by one as SQL expressions
//! against the step's schema, like segment rules.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Column;
use datafusion::logical_expr::{Expr, ExprSchemable, cast, lit};
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::scalar::ScalarValue;

use super::classify::parse_rules;
use super::steps::register_steps_materialised;
use super::{Parameters, PipelineError, register_steps};
use crate::config::Job;

fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// Parse every audience's `detail` expression; all problems at once.
fn parse_details(job: &Job, frame: &DataFrame) -> Result<Vec<Expr>, Vec<PipelineError>> {
    let mut details = Vec::new();
    let mut problems = Vec::new();
    for audience in &job.segments {
        let Some(detail) = &audience.detail else {
            details.push(lit(ScalarValue::Utf8(None)));
            continue;
        };
        let problem = |message: String| PipelineError::Rule {
            job: job.path.clone(),
            line: audience.line,
            segment: audience.name.clone(),
            message,
        };
        match frame
            .parse_sql_expr(detail)
            .and_then(|expr| expr.get_type(frame.schema()).map(|t| (expr, t)))
        {
            Ok((expr, DataType::Utf8)) => details.push(expr),
            Ok((expr, _)) => details.push(cast(expr, DataType::Utf8)),
            Err(error) => problems.push(problem(format!(
                "detail `{detail}` does not parse or refers to an unknown column: {error}"
            ))),
        }
    }
    if problems.is_empty() {
        Ok(details)
    } else {
        Err(problems)
    }
}

/// Plan the steps and every audience; used by `validate` and by [`audiences`].
/// The frame has `customer_id`, `audience`, `audience_rank` and `detail`,
/// one row per contact and matching audience.
pub async fn validate_audiences(
    ctx: &SessionContext,
    job: &Job,
    params: &Parameters,
) -> Result<DataFrame, Vec<PipelineError>> {
    members_of(ctx, job, params, false).await
}

/// The members of every audience; with `materialise`, the `from` step is
/// computed once instead of once per audience.
async fn members_of(
    ctx: &SessionContext,
    job: &Job,
    params: &Parameters,
    materialise: bool,
) -> Result<DataFrame, Vec<PipelineError>> {
    if materialise {
        register_steps_materialised(ctx, job, params).await
    } else {
        register_steps(ctx, job, params).await
    }
    .map_err(|e| vec![e])?;
    let mut frame = ctx
        .table(job.classify_from.as_str())
        .await
        .map_err(|source| {
            vec![PipelineError::Execution {
                context: format!("reading step `{}`", job.classify_from),
                source,
            }]
        })?;
    if !frame
        .schema()
        .fields()
        .iter()
        .any(|f| f.name() == "customer_id")
    {
        return Err(vec![PipelineError::Shape {
            job: job.path.clone(),
            step: job.classify_from.clone(),
            message: "one row per contact with a `customer_id` column".into(),
        }]);
    }
    if materialise {
        frame = crate::engine::keep(ctx, frame).await.map_err(|source| {
            vec![PipelineError::Execution {
                context: format!(
                    "running the steps of job {} for {}",
                    job.name, params.period
                ),
                source,
            }]
        })?;
    }
    let rules = parse_rules(job, &frame);
    let details = parse_details(job, &frame);
    let (rules, details) = match (rules, details) {
        (Ok(rules), Ok(details)) => (rules, details),
        (rules, details) => {
            let mut problems = rules.err().unwrap_or_default();
            problems.extend(details.err().unwrap_or_default());
            return Err(problems);
        }
    };
    let execution = |source| {
        vec![PipelineError::Execution {
            context: "selecting the audiences' members".into(),
            source,
        }]
    };
    let mut members: Option<DataFrame> = None;
    for ((audience, rule), detail) in job.segments.iter().zip(rules).zip(details) {
        let selected = frame
            .clone()
            .filter(rule)
            .map_err(execution)?
            .select(vec![
                cast(column("customer_id"), DataType::Utf8).alias("customer_id"),
                lit(audience.name.as_str()).alias("audience"),
                lit(audience.rank).alias("audience_rank"),
                detail.alias("detail"),
            ])
            .map_err(execution)?;
        members = Some(match members {
            None => selected,
            Some(members) => members.union(selected).map_err(execution)?,
        });
    }
    members.ok_or_else(|| {
        vec![PipelineError::Shape {
            job: job.path.clone(),
            step: job.classify_from.clone(),
            message: "at least one audience".into(),
        }]
    })
}

/// Run the steps for a period and list every contact's audiences, computed
/// once (it feeds every output table). A contact listed twice in the same
/// audience means the `from` step has several rows for it: a job error.
pub async fn audiences(
    ctx: &SessionContext,
    job: &Job,
    params: &Parameters,
) -> Result<DataFrame, PipelineError> {
    let members = members_of(ctx, job, params, true)
        .await
        .map_err(|mut errors| errors.remove(0))?;
    let execution = |source| PipelineError::Execution {
        context: format!(
            "running the steps of job {} for {}",
            job.name, params.period
        ),
        source,
    };
    let members = crate::engine::keep(ctx, members).await.map_err(execution)?;
    let rows = members.clone().count().await.map_err(execution)?;
    let distinct = members
        .clone()
        .select_columns(&["customer_id", "audience"])
        .map_err(execution)?
        .distinct()
        .map_err(execution)?
        .count()
        .await
        .map_err(execution)?;
    if rows != distinct {
        return Err(PipelineError::Shape {
            job: job.path.clone(),
            step: job.classify_from.clone(),
            message: format!(
                "one row per contact, but {} contact(s) appear more than once in an audience",
                rows - distinct
            ),
        });
    }
    Ok(members)
}

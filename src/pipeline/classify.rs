//! Classification: every row of the job's `classification.from` step (one per
//! customer) gets the first segment whose rule matches, in rank order. Rules
//! are parsed one by one as SQL expressions against the step's schema, so a
//! rule cannot reach outside its own condition.

use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::Column;
use datafusion::logical_expr::conditional_expressions::CaseBuilder;
use datafusion::logical_expr::{Expr, ExprSchemable, lit, when};
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::scalar::ScalarValue;

use super::steps::register_steps_materialised;
use super::{Parameters, PipelineError, register_steps};
use crate::config::{FixedBands, Job, Scoring};

/// Columns every classified step must provide (the snapshot's metrics).
const REQUIRED: [(&str, DataType); 6] = [
    ("customer_id", DataType::Utf8),
    ("recency_days", DataType::Int32),
    ("frequency", DataType::Int64),
    ("monetary", DataType::Decimal128(18, 2)),
    ("first_purchase_date", DataType::Date32),
    ("last_purchase_date", DataType::Date32),
];

/// Columns a job may leave out (e.g. a scheme without scores): they are null.
const OPTIONAL: [(&str, DataType); 6] = [
    ("r_score", DataType::Int8),
    ("f_score", DataType::Int8),
    ("m_score", DataType::Int8),
    ("rfm_code", DataType::Utf8),
    ("period_orders", DataType::Int64),
    ("period_revenue", DataType::Decimal128(18, 2)),
];

fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

/// The classification step's frame, with optional columns filled in and
/// every column cast to its contract type.
async fn classified_step(ctx: &SessionContext, job: &Job) -> Result<DataFrame, PipelineError> {
    let frame = ctx
        .table(job.classify_from.as_str())
        .await
        .map_err(|source| PipelineError::Execution {
            context: format!("reading step `{}`", job.classify_from),
            source,
        })?;
    let schema = frame.schema().clone();
    let has = |name: &str| schema.fields().iter().any(|f| f.name() == name);
    let missing: Vec<&str> = REQUIRED
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !has(n))
        .collect();
    if !missing.is_empty() {
        return Err(PipelineError::Shape {
            job: job.path.clone(),
            step: job.classify_from.clone(),
            message: format!(
                "one row per customer with the columns {}; missing: {}",
                REQUIRED
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
                missing.join(", ")
            ),
        });
    }
    let mut projection: Vec<Expr> = schema
        .fields()
        .iter()
        .filter(|f| {
            !REQUIRED
                .iter()
                .chain(OPTIONAL.iter())
                .any(|(n, _)| n == f.name())
        })
        .map(|f| column(f.name()))
        .collect();
    for (name, data_type) in REQUIRED.iter().chain(OPTIONAL.iter()) {
        let value = if has(name) {
            column(name)
                .cast_to(data_type, &schema)
                .map_err(|source| PipelineError::Execution {
                    context: format!(
                        "casting `{name}` of step `{}` to {data_type}",
                        job.classify_from
                    ),
                    source,
                })?
        } else {
            let null = ScalarValue::try_from(data_type).expect("simple types");
            match *name {
                "period_orders" => lit(0i64),
                "period_revenue" => lit(ScalarValue::Decimal128(Some(0), 18, 2)),
                _ => lit(null),
            }
        };
        projection.push(value.alias(*name));
    }
    let frame = frame
        .select(projection)
        .map_err(|source| PipelineError::Execution {
            context: format!("shaping step `{}`", job.classify_from),
            source,
        })?;
    match &job.scoring {
        Scoring::Quantiles => Ok(frame),
        Scoring::Fixed(bands) => fixed_scores(frame, bands),
    }
}

/// `scoring: fixed`: the step's scores are replaced by the job's cut points.
fn fixed_scores(mut frame: DataFrame, bands: &FixedBands) -> Result<DataFrame, PipelineError> {
    for (name, sql) in bands.score_expressions() {
        let execution = |source| PipelineError::Execution {
            context: format!("computing `{name}` from the fixed cut points of `scoring`"),
            source,
        };
        let expr = frame.parse_sql_expr(&sql).map_err(execution)?;
        frame = frame.with_column(name, expr).map_err(execution)?;
    }
    Ok(frame)
}

/// Parse and type-check every rule against the frame; all problems at once.
pub(super) fn parse_rules(job: &Job, frame: &DataFrame) -> Result<Vec<Expr>, Vec<PipelineError>> {
    let mut rules = Vec::new();
    let mut problems = Vec::new();
    for segment in &job.segments {
        let problem = |message: String| PipelineError::Rule {
            job: job.path.clone(),
            line: segment.line,
            segment: segment.name.clone(),
            message,
        };
        match frame.parse_sql_expr(&segment.rule) {
            Err(error) => problems.push(problem(format!(
                "rule `{}` does not parse or refers to an unknown column: {error}",
                segment.rule
            ))),
            Ok(expr) => match expr.get_type(frame.schema()) {
                Ok(DataType::Boolean) | Ok(DataType::Null) => rules.push(expr),
                Ok(other) => problems.push(problem(format!(
                    "rule `{}` is of type {other}, not a condition: write a comparison such as `f_score >= 4`",
                    segment.rule
                ))),
                Err(error) => problems.push(problem(format!("rule `{}` is not valid: {error}", segment.rule))),
            },
        }
    }
    if problems.is_empty() {
        Ok(rules)
    } else {
        Err(problems)
    }
}

/// Plan the steps and check every rule; used by `validate`.
pub async fn validate_rules(
    ctx: &SessionContext,
    job: &Job,
    params: &Parameters,
) -> Result<DataFrame, Vec<PipelineError>> {
    register_steps(ctx, job, params)
        .await
        .map_err(|e| vec![e])?;
    segments_over_steps(ctx, job).await
}

/// The classification over the registered steps, every rule checked.
async fn segments_over_steps(
    ctx: &SessionContext,
    job: &Job,
) -> Result<DataFrame, Vec<PipelineError>> {
    let frame = classified_step(ctx, job).await.map_err(|e| vec![e])?;
    let rules = parse_rules(job, &frame)?;
    with_segments(job, frame, rules).map_err(|e| vec![e])
}

fn with_segments(
    job: &Job,
    frame: DataFrame,
    rules: Vec<Expr>,
) -> Result<DataFrame, PipelineError> {
    let otherwise = |value: ScalarValue| lit(value);
    let mut segment_case: Option<CaseBuilder> = None;
    for (segment, rule) in job.segments.iter().zip(rules) {
        segment_case = Some(match segment_case {
            None => when(rule, lit(segment.name.as_str())),
            Some(mut case) => case.when(rule, lit(segment.name.as_str())),
        });
    }
    let fallback = job
        .fallback
        .as_deref()
        .map(|f| ScalarValue::Utf8(Some(f.to_string())));
    let segment_expr = segment_case
        .expect("a job has at least one segment")
        .otherwise(otherwise(fallback.unwrap_or(ScalarValue::Utf8(None))))
        .map_err(|source| PipelineError::Execution {
            context: "building the segment rules".into(),
            source,
        })?;
    let mut rank_case: Option<CaseBuilder> = None;
    for segment in &job.segments {
        let condition = column("segment").eq(lit(segment.name.as_str()));
        rank_case = Some(match rank_case {
            None => when(condition, lit(segment.rank)),
            Some(mut case) => case.when(condition, lit(segment.rank)),
        });
    }
    let rank_expr = rank_case
        .expect("a job has at least one segment")
        .otherwise(lit(ScalarValue::Int32(None)))
        .map_err(|source| PipelineError::Execution {
            context: "building the segment ranks".into(),
            source,
        })?;
    let execution = |source| PipelineError::Execution {
        context: "classifying customers".into(),
        source,
    };
    frame
        .with_column("segment", segment_expr)
        .map_err(execution)?
        .with_column("segment_rank", rank_expr)
        .map_err(execution)
}

/// Run the steps for a period and classify every customer. The result is
/// materialised once (it feeds every output table).
pub async fn classify(
    ctx: &SessionContext,
    job: &Job,
    params: &Parameters,
) -> Result<DataFrame, PipelineError> {
    register_steps_materialised(ctx, job, params).await?;
    let frame = segments_over_steps(ctx, job)
        .await
        .map_err(|mut errors| errors.remove(0))?;
    let classified =
        crate::engine::keep(ctx, frame)
            .await
            .map_err(|source| PipelineError::Execution {
                context: format!(
                    "running the steps of job {} for {}",
                    job.name, params.period
                ),
                source,
            })?;
    check_all_matched(job, params, &classified).await?;
    Ok(classified)
}

/// A customer that matches no rule is a job error naming its values.
async fn check_all_matched(
    job: &Job,
    params: &Parameters,
    classified: &DataFrame,
) -> Result<(), PipelineError> {
    let execution = |source| PipelineError::Execution {
        context: "checking unmatched customers".into(),
        source,
    };
    let unmatched = classified
        .clone()
        .filter(column("segment").is_null())
        .map_err(execution)?;
    let count = unmatched.clone().count().await.map_err(execution)?;
    if count == 0 {
        return Ok(());
    }
    let shown = [
        "customer_id",
        "recency_days",
        "frequency",
        "monetary",
        "r_score",
        "f_score",
        "m_score",
    ];
    let sample = unmatched
        .select(shown.iter().map(|n| column(n)).collect::<Vec<_>>())
        .map_err(execution)?
        .limit(0, Some(5))
        .map_err(execution)?
        .collect()
        .await
        .map_err(execution)?;
    let mut examples = String::new();
    let options = FormatOptions::default().with_null("null");
    for batch in &sample {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<_, _>>()
            .map_err(|e| execution(e.into()))?;
        for row in 0..batch.num_rows() {
            let values: Vec<String> = shown
                .iter()
                .zip(&formatters)
                .map(|(n, f)| format!("{n}={}", f.value(row)))
                .collect();
            examples.push_str(&format!("  {}\n", values.join(" ")));
        }
    }
    Err(PipelineError::Unmatched {
        job: job.path.clone(),
        period: params.period,
        count,
        examples: examples.trim_end().to_string(),
    })
}

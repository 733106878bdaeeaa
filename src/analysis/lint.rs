//! Rules linting for `segments validate`, beyond "does it parse":
//!
//! - rules over scores only (`r_score`, `f_score`, `m_score`, `rfm_code`) are
//!   evaluated on every combination of R, F and M scores 1–5 (and on the
//!   null scores of lost customers): a rule that
//!   matches none can never match, and a rule whose combinations are all
//!   taken by earlier rules is shadowed (first match wins);
//! - when every rule that can match an active customer is over scores only
//!   and there is no fallback, every combination must be matched by some
//!   rule, or a customer with those scores would stop the run;
//! - segments left empty by the last published period are a warning (read
//!   from the warehouse, never from the inputs).

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int8Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::Expr;
use datafusion::prelude::{DataFrame, SessionContext};

use crate::config::{Config, Job, Problem, Segment};
use crate::model::Period;
use crate::storage::{StorageError, Warehouse};
use crate::warehouse::publish::{self, PublishError};

const SCORES: [&str; 3] = ["r_score", "f_score", "m_score"];

#[derive(Debug, thiserror::Error)]
pub enum LintError {
    #[error("linting the rules over the score grid")]
    Engine(#[from] DataFusionError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("reading the warehouse took more than {0:?}")]
    Timeout(Duration),
}

/// One row of the grid: the R, F, M scores (all `None`: a lost customer).
type Scores = [Option<i8>; 3];

fn grid() -> Vec<Scores> {
    let mut rows = Vec::new();
    for r in 1..=5 {
        for f in 1..=5 {
            for m in 1..=5 {
                rows.push([Some(r), Some(f), Some(m)]);
            }
        }
    }
    rows.push([None, None, None]);
    rows
}

async fn frame_of(ctx: &SessionContext, batch: RecordBatch) -> Result<DataFrame, LintError> {
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
    Ok(ctx.read_table(Arc::new(table))?)
}

/// Which rows of `frame` each expression holds on (null = no).
async fn holds(frame: &DataFrame, exprs: &[Expr]) -> Result<Vec<Vec<bool>>, LintError> {
    if exprs.is_empty() {
        return Ok(Vec::new());
    }
    let batches = frame
        .clone()
        .select(
            exprs
                .iter()
                .enumerate()
                .map(|(i, e)| e.clone().alias(format!("rule_{i}")))
                .collect::<Vec<_>>(),
        )?
        .collect()
        .await?;
    let mut out = vec![Vec::new(); exprs.len()];
    for batch in &batches {
        for (i, column) in batch.columns().iter().enumerate() {
            let values = column.as_boolean_opt();
            for row in 0..batch.num_rows() {
                out[i].push(!column.is_null(row) && values.map(|v| v.value(row)).unwrap_or(false));
            }
        }
    }
    Ok(out)
}

/// `` `name` (file:line) `` of a segment's rule.
fn located(job: &Job, segment: &Segment) -> String {
    match segment.line {
        Some(line) => format!("`{}` ({}:{line})", segment.name, job.path.display()),
        None => format!("`{}` ({})", segment.name, job.path.display()),
    }
}

fn combos(rows: &[Scores], with_m: bool) -> String {
    // (r, f) → the m scores listed for it; all five read as just "r f".
    let mut cells: Vec<((i8, i8), Vec<i8>)> = Vec::new();
    let mut lost = false;
    for scores in rows {
        match scores {
            [Some(r), Some(f), Some(m)] => match cells.iter_mut().find(|c| c.0 == (*r, *f)) {
                Some(cell) => cell.1.push(*m),
                None => cells.push(((*r, *f), vec![*m])),
            },
            _ => lost = true,
        }
    }
    let mut names: Vec<String> = cells
        .iter()
        .map(|((r, f), ms)| {
            if !with_m || ms.len() == 5 {
                format!("r{r} f{f}")
            } else {
                let ms: Vec<String> = ms.iter().map(|m| m.to_string()).collect();
                format!("r{r} f{f} m{}", ms.join("/"))
            }
        })
        .collect();
    if lost {
        names.push("null scores (lost customers)".into());
    }
    let shown = names.len().min(10);
    let mut text = names[..shown].join(", ");
    if names.len() > shown {
        text.push_str(&format!(" and {} more", names.len() - shown));
    }
    text
}

/// Never-matching, shadowed and uncovered rules over the score grid. Rules
/// that read other columns are left alone (they could match anything).
pub async fn score_rules(job: &Job) -> Result<Vec<Problem>, LintError> {
    let ctx = SessionContext::new();
    let rows = grid();
    let mut fields: Vec<Field> = SCORES
        .iter()
        .map(|s| Field::new(*s, DataType::Int8, true))
        .collect();
    fields.push(Field::new("rfm_code", DataType::Utf8, true));
    let schema = Arc::new(Schema::new(fields));
    let mut columns: Vec<ArrayRef> = (0..3)
        .map(|i| Arc::new(Int8Array::from_iter(rows.iter().map(|r| r[i]))) as ArrayRef)
        .collect();
    columns.push(Arc::new(StringArray::from_iter(rows.iter().map(
        |s| match s {
            [Some(r), Some(f), Some(m)] => Some(format!("{r}{f}{m}")),
            _ => None,
        },
    ))));
    let grid_frame = frame_of(
        &ctx,
        RecordBatch::try_new(schema, columns).map_err(DataFusionError::from)?,
    )
    .await?;
    // Frequencies of active customers, to recognise "lost" rules such as
    // `frequency = 0` that never take a scored customer.
    let probe_schema = Arc::new(Schema::new(vec![Field::new(
        "frequency",
        DataType::Int64,
        false,
    )]));
    let probe = frame_of(
        &ctx,
        RecordBatch::try_new(
            probe_schema,
            vec![Arc::new(Int64Array::from(vec![
                1, 2, 3, 4, 5, 10, 100, 10_000,
            ]))],
        )
        .map_err(DataFusionError::from)?,
    )
    .await?;

    // Score-only rules: (segment index, expression, reads m_score).
    let mut score_rules = Vec::new();
    let mut coverage_decidable = job.fallback.is_none();
    for (index, segment) in job.segments.iter().enumerate() {
        if let Ok(expr) = grid_frame.parse_sql_expr(&segment.rule) {
            let reads_m = expr
                .column_refs()
                .iter()
                .any(|c| c.name == "m_score" || c.name == "rfm_code");
            score_rules.push((index, expr, reads_m));
        } else if let Ok(expr) = probe.parse_sql_expr(&segment.rule) {
            let held = holds(&probe, std::slice::from_ref(&expr)).await?;
            if held[0].iter().any(|h| *h) {
                coverage_decidable = false;
            }
        } else {
            coverage_decidable = false;
        }
    }
    let exprs: Vec<Expr> = score_rules.iter().map(|(_, e, _)| e.clone()).collect();
    let matched = holds(&grid_frame, &exprs).await?;

    let mut problems = Vec::new();
    let problem = |index: usize, message: String| Problem {
        file: job.path.clone(),
        key: format!("classification.segments[{index}].rule"),
        line: job.segments[index].line,
        column: None,
        message,
    };
    for (j, (index, _, reads_m)) in score_rules.iter().enumerate() {
        let segment = &job.segments[*index];
        let mine: Vec<usize> = (0..rows.len()).filter(|&r| matched[j][r]).collect();
        if mine.is_empty() {
            problems.push(problem(
                *index,
                format!(
                    "segment `{}` can never match: no combination of scores 1–5 satisfies `{}`\nhint: check the comparisons (scores go from 1 to 5)",
                    segment.name, segment.rule
                ),
            ));
            continue;
        }
        let earlier: Vec<usize> = (0..j).collect();
        let taken = mine.iter().all(|&r| earlier.iter().any(|&i| matched[i][r]));
        if taken {
            let by: Vec<String> = earlier
                .iter()
                .filter(|&&i| mine.iter().any(|&r| matched[i][r]))
                .map(|&i| {
                    let (k, _, _) = &score_rules[i];
                    located(job, &job.segments[*k])
                })
                .collect();
            let names: Vec<String> = earlier
                .iter()
                .filter(|&&i| mine.iter().any(|&r| matched[i][r]))
                .map(|&i| format!("`{}`", job.segments[score_rules[i].0].name))
                .collect();
            let cells: Vec<Scores> = mine.iter().map(|&r| rows[r]).collect();
            problems.push(problem(
                *index,
                format!(
                    "segment `{}` can never match: it is shadowed by the earlier {}, which already {} every score combination it accepts ({}); the first matching rule wins\nhint: move `{}` before {}, or narrow the earlier rule{}",
                    segment.name,
                    by.join(" and "),
                    if by.len() == 1 { "takes" } else { "take" },
                    combos(&cells, *reads_m),
                    segment.name,
                    names.join(" and "),
                    if by.len() == 1 { "" } else { "s" },
                ),
            ));
        }
    }

    if coverage_decidable && !score_rules.is_empty() {
        let with_m = score_rules.iter().any(|(_, _, m)| *m);
        let uncovered: Vec<Scores> = (0..rows.len() - 1)
            .filter(|&r| !(0..score_rules.len()).any(|i| matched[i][r]))
            .map(|r| rows[r])
            .collect();
        if !uncovered.is_empty() {
            problems.push(Problem {
                file: job.path.clone(),
                key: "classification.segments".into(),
                line: job.segments.first().and_then(|s| s.line),
                column: None,
                message: format!(
                    "no rule matches the scores {}: a customer with these scores would stop the run (exit 2)\nhint: add or widen a rule, or declare `classification.fallback: <segment>`",
                    combos(&uncovered, with_m)
                ),
            });
        }
    }
    Ok(problems)
}

/// The last published period of the job and the declared segments that had
/// no customer in it, with whether it was published with the current rules.
pub struct EmptySegments {
    pub period: Period,
    pub same_rules: bool,
    pub segments: Vec<String>,
}

/// Segments with no customer in the last published period, read from the
/// warehouse (`segment_summary`, else `snapshots`). `None` when nothing is
/// published. Gives up after `timeout` (a store that cannot be reached).
pub async fn empty_segments(
    job: &Job,
    config: &Config,
    timeout: Duration,
) -> Result<Option<EmptySegments>, LintError> {
    let work = crate::storage::scoped(config.storage.clone(), async {
        let warehouse = Warehouse::open(&config.warehouse)?;
        let Some((period, manifest)) = publish::last_published(&warehouse, &job.name).await? else {
            return Ok(None);
        };
        let mut counts: Vec<(String, i64)> = Vec::new();
        if let Some(batches) =
            publish::read_table(&warehouse, &job.name, "segment_summary", period).await?
        {
            for batch in &batches {
                let (Ok(s), Ok(c)) = (
                    batch.schema().index_of("segment"),
                    batch.schema().index_of("customers"),
                ) else {
                    continue;
                };
                for row in 0..batch.num_rows() {
                    counts.push((
                        batch.column(s).as_string::<i32>().value(row).to_string(),
                        batch.column(c).as_primitive::<Int64Type>().value(row),
                    ));
                }
            }
        } else if let Some(batches) =
            publish::read_table(&warehouse, &job.name, "snapshots", period).await?
        {
            for batch in &batches {
                let Ok(s) = batch.schema().index_of("segment") else {
                    continue;
                };
                for row in 0..batch.num_rows() {
                    counts.push((batch.column(s).as_string::<i32>().value(row).to_string(), 1));
                }
            }
        } else {
            return Ok(None);
        }
        let segments = job
            .segments
            .iter()
            .filter(|s| {
                counts
                    .iter()
                    .filter(|(name, _)| *name == s.name)
                    .map(|(_, n)| n)
                    .sum::<i64>()
                    == 0
            })
            .map(|s| s.name.clone())
            .collect();
        Ok(Some(EmptySegments {
            period,
            same_rules: manifest.rule_hash == job.rule_hash(config),
            segments,
        }))
    });
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| LintError::Timeout(timeout))?
}

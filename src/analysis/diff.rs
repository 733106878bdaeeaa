//! The impact of a rule change (`segments diff`): one period classified by the
//! job's working copy (the pipeline and output queries of a dry run, nothing
//! written) against the snapshot published for that period, made by the
//! rules recorded in its `segment_definitions`.
//!
//! The comparison runs the queries of `sql/diff/`; the rule and threshold
//! changes are computed here from the published `segment_definitions` and
//! `score_thresholds` and the working copy.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Int8Type, Int64Type, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;

use super::DryRunError;
use crate::config::{Config, Job, OutputTable};
use crate::engine;
use crate::inputs;
use crate::model::ExitStatus;
use crate::model::Period;
use crate::model::table_schema;
use crate::outputs::build_period_tables;
use crate::pipeline::{self, Parameters, PipelineError};
use crate::storage::{StorageError, Warehouse};
use crate::warehouse::publish::{self, PublishError};

const CUSTOMERS_SQL: &str = include_str!("../../sql/diff/customers.sql");
const SEGMENTS_SQL: &str = include_str!("../../sql/diff/segments.sql");
const MATRIX_SQL: &str = include_str!("../../sql/diff/matrix.sql");
const SAMPLE_SQL: &str = include_str!("../../sql/diff/sample.sql");
const OVERVIEW_SQL: &str = include_str!("../../sql/diff/overview.sql");

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error(
        "{job} {period} is not published (no `_SUCCESS` under {job}/_runs/period={period}/ in the warehouse), so there is nothing to compare the working copy with\nhint: diff a published period, or publish this one first with `segments run --period {period}`"
    )]
    NotPublished { job: String, period: Period },
    #[error(
        "{job} has no published period to compare the working copy with\nhint: publish one first with `segments run`, or give --period"
    )]
    NothingPublished { job: String },
    #[error(
        "{job} {period} is published but has no `snapshots` table: a diff needs the job to list `snapshots` in its outputs"
    )]
    NoSnapshot { job: String, period: Period },
    /// Classifying the period with the working copy (the dry run).
    #[error(transparent)]
    Run(Box<DryRunError>),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("impact diff, query `sql/diff/{query}.sql`")]
    Query {
        query: &'static str,
        #[source]
        source: DataFusionError,
    },
}

impl DiffError {
    /// Exit codes of docs/design.md §6: a period that is not published is a bad
    /// argument (2); the dry run keeps its own codes.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            DiffError::NotPublished { .. }
            | DiffError::NothingPublished { .. }
            | DiffError::NoSnapshot { .. } => ExitStatus::Invalid,
            DiffError::Run(error) => error.exit_status(),
            DiffError::Storage(_) | DiffError::Publish(PublishError::Storage(_)) => {
                ExitStatus::Storage
            }
            _ => ExitStatus::Internal,
        }
    }
}

impl From<DryRunError> for DiffError {
    fn from(error: DryRunError) -> Self {
        DiffError::Run(Box::new(error))
    }
}

/// How one segment's definition changed between the published period and
/// the working copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleChange {
    /// In the working copy only.
    Added {
        segment: String,
        rank: i32,
        rule: String,
    },
    /// In the published definitions only.
    Removed {
        segment: String,
        rank: i32,
        rule: String,
    },
    /// Same segment, another rule (and maybe another rank).
    Changed {
        segment: String,
        before_rank: i32,
        after_rank: i32,
        before_rule: String,
        after_rule: String,
    },
    /// Same rule at another rank (first match wins, so order matters).
    Moved {
        segment: String,
        before_rank: i32,
        after_rank: i32,
        rule: String,
    },
}

/// One score band whose bounds or customers differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThresholdChange {
    pub metric: String,
    pub score: i8,
    /// `min–max (n customers)` before and after; `-` for an empty band.
    pub before: String,
    pub after: String,
}

/// The impact of the working copy on one published period.
#[derive(Debug, Clone)]
pub struct Diff {
    pub job: String,
    pub period: Period,
    /// The run that published the period.
    pub published_run_id: String,
    pub before_rule_hash: String,
    pub after_rule_hash: String,
    /// Customers on either side.
    pub customers: i64,
    /// Customers whose segment changes.
    pub changed: i64,
    /// segment, before_rank, after_rank, before_customers, after_customers, delta.
    pub segments: RecordBatch,
    /// before_segment, after_segment, before_rank, after_rank, customers.
    pub matrix: RecordBatch,
    /// Changed customers: id, both segments, values, both sides' scores.
    pub sample: RecordBatch,
    /// `None` when the period has no published `segment_definitions`.
    pub rule_changes: Option<Vec<RuleChange>>,
    /// `None` when either side has no `score_thresholds`.
    pub threshold_changes: Option<Vec<ThresholdChange>>,
}

impl Diff {
    /// Share of customers whose segment changes, in per cent.
    pub fn changed_percent(&self) -> f64 {
        if self.customers == 0 {
            0.0
        } else {
            self.changed as f64 * 100.0 / self.customers as f64
        }
    }

    /// Whether anything that changes a classification differs (the rule hash).
    pub fn rules_differ(&self) -> bool {
        self.before_rule_hash != self.after_rule_hash
    }
}

fn query_error(query: &'static str) -> impl Fn(DataFusionError) -> DiffError {
    move |source| DiffError::Query { query, source }
}

/// Batches rebuilt with the snapshot contract's exact schema, so that the
/// published file and the dry run line up.
fn conform_snapshot(
    what: &str,
    batches: Vec<RecordBatch>,
) -> Result<(SchemaRef, Vec<RecordBatch>), DiffError> {
    let contract = table_schema(crate::model::OutputTable::Snapshots).schema;
    let corrupt = |message: String| PublishError::Corrupt {
        what: what.to_string(),
        message,
    };
    let mut out = Vec::new();
    for batch in batches {
        let mut columns = Vec::new();
        for field in contract.fields() {
            let index = batch
                .schema()
                .index_of(field.name())
                .map_err(|e| corrupt(e.to_string()))?;
            columns.push(batch.column(index).clone());
        }
        out.push(
            RecordBatch::try_new(contract.clone(), columns).map_err(|e| corrupt(e.to_string()))?,
        );
    }
    Ok((contract, out))
}

async fn query(
    ctx: &SessionContext,
    name: &'static str,
    sql: &str,
    limit: Option<usize>,
) -> Result<RecordBatch, DiffError> {
    let fail = query_error(name);
    let mut frame = engine::plan_sql(ctx, sql, None).await.map_err(&fail)?;
    if let Some(limit) = limit {
        frame = frame.limit(0, Some(limit)).map_err(&fail)?;
    }
    engine::collect_one(frame).await.map_err(&fail)
}

/// The published definitions as (segment, rank, rule), in rank order.
fn published_rules(batches: &[RecordBatch]) -> Vec<(String, i32, String)> {
    let mut rules = Vec::new();
    for batch in batches {
        let schema = batch.schema();
        let (Ok(s), Ok(r), Ok(u)) = (
            schema.index_of("segment"),
            schema.index_of("segment_rank"),
            schema.index_of("rule"),
        ) else {
            continue;
        };
        let segments = batch.column(s).as_string::<i32>();
        let ranks = batch
            .column(r)
            .as_primitive::<datafusion::arrow::datatypes::Int32Type>();
        let texts = batch.column(u).as_string::<i32>();
        for row in 0..batch.num_rows() {
            rules.push((
                segments.value(row).to_string(),
                ranks.value(row),
                texts.value(row).to_string(),
            ));
        }
    }
    rules.sort_by_key(|r| r.1);
    rules
}

/// Segment by segment: what the working copy changes in the published rules.
pub fn rule_changes(before: &[(String, i32, String)], job: &Job) -> Vec<RuleChange> {
    let mut changes = Vec::new();
    for segment in &job.segments {
        match before.iter().find(|(name, _, _)| *name == segment.name) {
            None => changes.push(RuleChange::Added {
                segment: segment.name.clone(),
                rank: segment.rank,
                rule: segment.rule.clone(),
            }),
            Some((_, rank, rule)) if *rule != segment.rule => changes.push(RuleChange::Changed {
                segment: segment.name.clone(),
                before_rank: *rank,
                after_rank: segment.rank,
                before_rule: rule.clone(),
                after_rule: segment.rule.clone(),
            }),
            Some((_, rank, rule)) if *rank != segment.rank => changes.push(RuleChange::Moved {
                segment: segment.name.clone(),
                before_rank: *rank,
                after_rank: segment.rank,
                rule: rule.clone(),
            }),
            Some(_) => {}
        }
    }
    for (name, rank, rule) in before {
        if job.segment(name).is_none() {
            changes.push(RuleChange::Removed {
                segment: name.clone(),
                rank: *rank,
                rule: rule.clone(),
            });
        }
    }
    changes
}

/// (metric, score) → `min–max (n)` of a `score_thresholds` partition.
fn bands(batches: &[RecordBatch]) -> Vec<((String, i8), String)> {
    let mut out = Vec::new();
    for batch in batches {
        let schema = batch.schema();
        let index = |name: &str| schema.index_of(name).ok();
        let (Some(m), Some(s), Some(lo), Some(hi), Some(n)) = (
            index("metric"),
            index("score"),
            index("min_value"),
            index("max_value"),
            index("customers"),
        ) else {
            continue;
        };
        let metrics = batch.column(m).as_string::<i32>();
        let scores = batch.column(s).as_primitive::<Int8Type>();
        let lows = batch.column(lo).as_string::<i32>();
        let highs = batch.column(hi).as_string::<i32>();
        let customers = batch.column(n).as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            let band = if lows.is_null(row) {
                "-".to_string()
            } else {
                format!(
                    "{}–{} ({})",
                    lows.value(row),
                    highs.value(row),
                    customers.value(row)
                )
            };
            out.push(((metrics.value(row).to_string(), scores.value(row)), band));
        }
    }
    out
}

fn threshold_changes(before: &[RecordBatch], after: &[RecordBatch]) -> Vec<ThresholdChange> {
    let after = bands(after);
    let mut changes = Vec::new();
    for ((metric, score), was) in bands(before) {
        let now = after
            .iter()
            .find(|(key, _)| key.0 == metric && key.1 == score)
            .map(|(_, band)| band.clone())
            .unwrap_or_else(|| "-".into());
        if now != was {
            changes.push(ThresholdChange {
                metric,
                score,
                before: was,
                after: now,
            });
        }
    }
    changes
}

/// Classify `period` (default: the last published one) with the job's
/// working copy (like a dry run: no lease, no write; no gates, no previous
/// period) and compare it with the published period.
/// `sample` caps the changed customers listed.
pub async fn diff(
    job: &Job,
    config: &Config,
    period: Option<Period>,
    sample: usize,
) -> Result<Diff, DiffError> {
    let warehouse = Warehouse::open(&config.warehouse)?;
    let (period, manifest) = match period {
        Some(period) => {
            let manifest = crate::storage::scoped(
                config.storage.clone(),
                publish::published_manifest(&warehouse, &job.name, period),
            )
            .await?
            .ok_or_else(|| DiffError::NotPublished {
                job: job.name.clone(),
                period,
            })?;
            (period, manifest)
        }
        None => crate::storage::scoped(
            config.storage.clone(),
            publish::last_published(&warehouse, &job.name),
        )
        .await?
        .ok_or_else(|| DiffError::NothingPublished {
            job: job.name.clone(),
        })?,
    };
    let read = |table: &'static str| {
        crate::storage::scoped(
            config.storage.clone(),
            publish::read_table(&warehouse, &job.name, table, period),
        )
    };
    let before = read("snapshots")
        .await?
        .ok_or_else(|| DiffError::NoSnapshot {
            job: job.name.clone(),
            period,
        })?;
    let before_definitions = read("segment_definitions").await?;
    let before_thresholds = read("score_thresholds").await?;

    // The working copy's side: the period classified by the current files
    // and its tables built as a dry run would (nothing is written), without
    // the previous period, the gates or the rejects, which a diff does not show.
    let mut working = job.clone();
    working.outputs = [OutputTable::Snapshots, OutputTable::ScoreThresholds]
        .into_iter()
        .filter(|t| *t == OutputTable::Snapshots || job.writes(*t))
        .collect();
    let tables = crate::storage::scoped(config.storage.clone(), async {
        let ctx = engine::session(config)?;
        inputs::prepare(&ctx, config, &working.inputs, period.end()).await?;
        let params = Parameters::new(period, working.window_months);
        let current = pipeline::classify(&ctx, &working, &params).await?;
        // The "from" side only feeds migrations, which a diff does not build.
        let previous = current
            .clone()
            .select_columns(&[
                "customer_id",
                "segment",
                "segment_rank",
                "frequency",
                "monetary",
            ])
            .map_err(|source| PipelineError::Execution {
                context: "selecting the classified customers".into(),
                source,
            })?;
        let rule_hash = working.rule_hash(config);
        Ok::<_, DryRunError>(
            build_period_tables(&ctx, &working, &params, current, previous, &rule_hash).await?,
        )
    })
    .await?;
    let after = tables
        .batch(OutputTable::Snapshots)
        .map_err(DryRunError::from)?
        .expect("the diff builds snapshots");
    let after_thresholds = tables
        .batch(OutputTable::ScoreThresholds)
        .map_err(DryRunError::from)?;

    let ctx = engine::session(config).map_err(DryRunError::from)?;
    let setup = query_error("(setup)");
    let (schema, before) =
        conform_snapshot(&format!("snapshots of {} {period}", job.name), before)?;
    let (_, after) = conform_snapshot("snapshots of the dry run", vec![after])?;
    ctx.register_table(
        "before_snapshot",
        Arc::new(MemTable::try_new(schema.clone(), vec![before]).map_err(&setup)?),
    )
    .map_err(&setup)?;
    ctx.register_table(
        "after_snapshot",
        Arc::new(MemTable::try_new(schema, vec![after]).map_err(&setup)?),
    )
    .map_err(&setup)?;
    ctx.register_table(
        "segment_definitions",
        Arc::new(crate::analysis::compare::definitions(job).map_err(&setup)?),
    )
    .map_err(&setup)?;
    let customers = query(&ctx, "customers", CUSTOMERS_SQL, None).await?;
    ctx.register_table(
        "diff_customers",
        Arc::new(MemTable::try_new(customers.schema(), vec![vec![customers]]).map_err(&setup)?),
    )
    .map_err(&setup)?;
    let segments = query(&ctx, "segments", SEGMENTS_SQL, None).await?;
    let matrix = query(&ctx, "matrix", MATRIX_SQL, None).await?;
    let sample = query(&ctx, "sample", SAMPLE_SQL, Some(sample)).await?;
    let overview = query(&ctx, "overview", OVERVIEW_SQL, None).await?;
    let count = |i: usize| {
        if overview.num_rows() == 0 {
            0
        } else {
            overview.column(i).as_primitive::<Int64Type>().value(0)
        }
    };

    Ok(Diff {
        job: job.name.clone(),
        period,
        published_run_id: manifest.run_id.clone(),
        before_rule_hash: manifest.rule_hash.clone(),
        after_rule_hash: job.rule_hash(config),
        customers: count(0),
        changed: count(1),
        segments,
        matrix,
        sample,
        rule_changes: before_definitions.map(|d| rule_changes(&published_rules(&d), job)),
        threshold_changes: match (before_thresholds, after_thresholds) {
            (Some(before), Some(after)) => Some(threshold_changes(&before, &[after])),
            _ => None,
        },
    })
}

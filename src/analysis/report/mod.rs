//! The static HTML report of a period (`segments report`, and
//! `report/period=YYYY-MM/index.html` published with each run when the config
//! says `report: true`).
//!
//! One self-contained page: the CSS is inline, the charts are SVG drawn here
//! (no chart library, no script, no font or image fetched), every chart has a
//! table with the same figures next to it, the palette is colour-blind safe
//! and numbers follow the configured locale ([`Locale`]).
//!
//! The figures come only from the period's published tables (or, during a
//! run, from the tables about to be published) and from earlier published
//! periods: the report never recomputes a classification. A table a job does
//! not publish (an audiences job has no snapshots, matrix or summary) turns
//! the sections that need it into a "not applicable" note.

mod html;
mod locale;
mod svg;

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Decimal128Type, Float64Type, Int64Type};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;

use crate::analysis::compare::{self, CompareError};
use crate::config::{Config, Job};
use crate::model::ExitStatus;
use crate::model::Period;
use crate::outputs::PeriodTables;
use crate::storage::{StorageError, Warehouse};
use crate::warehouse::publish::{self, Manifest, PublishError};

pub use locale::{Locale, NARROW_NBSP};

/// File name of a published report.
pub use crate::warehouse::layout::REPORT_FILE;
/// Folder of the published reports, under the job's folder.
pub use crate::warehouse::layout::REPORT_FOLDER;
/// How many published periods the history chart shows (this one included).
pub const HISTORY_PERIODS: usize = 12;

const RF_GRID_SQL: &str = include_str!("../../../sql/report/rf_grid.sql");
const AUDIENCE_SIZES_SQL: &str = include_str!("../../../sql/report/audience_sizes.sql");

/// The tables of a period the report reads.
const TABLES: [&str; 6] = [
    "snapshots",
    "migration_matrix",
    "segment_summary",
    "score_thresholds",
    "segment_definitions",
    "audiences",
];

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "{job} {period} is not published (no `_SUCCESS` under {job}/_runs/period={period}/ in the warehouse)\nhint: publish it first with `segments run --period {period}`"
    )]
    NotPublished { job: String, period: Period },
    #[error(
        "--compare-to {compare_to} must be a period before --period {period}\nhint: give an earlier published period, or leave --compare-to out to compare with the previous month"
    )]
    CompareOrder { period: Period, compare_to: Period },
    #[error("comparing {compare_to} with {period} for the report")]
    Compare {
        period: Period,
        compare_to: Period,
        #[source]
        source: Box<CompareError>,
    },
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Output(#[from] crate::outputs::OutputError),
    #[error(transparent)]
    Table(#[from] crate::warehouse::TableFileError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("report query `sql/report/{query}.sql`")]
    Query {
        query: &'static str,
        #[source]
        source: DataFusionError,
    },
    #[error(
        "table `{table}` of {period} has no usable column `{column}`: {message}\nhint: republish the period with this version of segments"
    )]
    Column {
        table: String,
        period: Period,
        column: String,
        message: String,
    },
}

impl ReportError {
    /// Exit codes of docs/design.md §6: a period that is not published is a bad
    /// argument (2), storage failures are 4.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            ReportError::NotPublished { .. } | ReportError::CompareOrder { .. } => {
                ExitStatus::Invalid
            }
            ReportError::Compare { source, .. } => source.exit_status(),
            ReportError::Storage(_) | ReportError::Publish(PublishError::Storage(_)) => {
                ExitStatus::Storage
            }
            _ => ExitStatus::Internal,
        }
    }
}

/// One row of `segment_summary`.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    pub segment: String,
    pub rank: i32,
    pub label: String,
    pub customers: i64,
    pub share: f64,
    pub active: i64,
    /// In cents.
    pub revenue: i128,
    pub orders: i64,
    /// In cents; none without orders.
    pub avg_basket: Option<i128>,
}

/// Customers of one segment in one cell of the R×F grid.
#[derive(Debug, Clone, PartialEq)]
pub struct GridCell {
    pub r: i64,
    pub f: i64,
    pub segment: String,
    pub rank: i32,
    pub customers: i64,
}

/// One non-empty cell of a migration matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixCell {
    pub from: String,
    pub to: String,
    pub from_rank: Option<i32>,
    pub to_rank: Option<i32>,
    pub customers: i64,
    pub share_of_from: f64,
}

/// The migration matrix shown, and the period it starts from.
#[derive(Debug, Clone)]
pub struct Matrix {
    pub from: Period,
    pub cells: Vec<MatrixCell>,
}

/// A segment (or audience) as the job defines it.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    pub segment: String,
    pub rank: i32,
    pub label: String,
    /// The French label (`label_fr`), when the definitions carry one.
    pub label_fr: Option<String>,
    pub description: String,
    pub rule: String,
}

/// One row of `score_thresholds`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub metric: String,
    pub score: i64,
    pub min: Option<String>,
    pub max: Option<String>,
    pub customers: i64,
}

/// Customers per segment (or audience) of one published period.
#[derive(Debug, Clone)]
pub struct PeriodSizes {
    pub period: Period,
    pub sizes: Vec<(String, i64)>,
}

/// Everything the page shows, read from published tables.
#[derive(Debug, Clone)]
pub struct Report {
    pub job: String,
    pub job_version: u32,
    pub period: Period,
    /// The period the sizes are compared with (published), if any.
    pub compared: Option<Period>,
    pub manifest: Option<Manifest>,
    /// Gate limits of the config the report was made with.
    pub quality: crate::config::QualitySettings,
    pub definitions: Vec<Definition>,
    pub summary: Option<Vec<SummaryRow>>,
    pub compared_summary: Option<Vec<SummaryRow>>,
    /// Audience sizes (contacts per audience) when the job publishes `audiences`.
    pub audiences: Option<Vec<(String, i64)>>,
    pub compared_audiences: Option<Vec<(String, i64)>>,
    /// None without `snapshots`; empty when the snapshot has no R and F scores.
    pub grid: Option<Vec<GridCell>>,
    /// Customers of the snapshot (scored or not).
    pub snapshot_customers: i64,
    pub matrix: Option<Matrix>,
    /// Oldest first, this period last.
    pub history: Vec<PeriodSizes>,
    pub thresholds: Option<Vec<Threshold>>,
}

type Tables = BTreeMap<String, Vec<RecordBatch>>;

/// The report of a published period, from the warehouse. `compare_to`
/// defaults to the previous month when it is published.
pub async fn build_published(
    warehouse: &Warehouse,
    job: &Job,
    config: &Config,
    period: Period,
    compare_to: Option<Period>,
) -> Result<Report, ReportError> {
    let manifest = publish::published_manifest(warehouse, &job.name, period)
        .await?
        .ok_or_else(|| ReportError::NotPublished {
            job: job.name.clone(),
            period,
        })?;
    let compared = match compare_to {
        Some(compare_to) => {
            if compare_to >= period {
                return Err(ReportError::CompareOrder { period, compare_to });
            }
            if publish::published_manifest(warehouse, &job.name, compare_to)
                .await?
                .is_none()
            {
                return Err(ReportError::NotPublished {
                    job: job.name.clone(),
                    period: compare_to,
                });
            }
            Some(compare_to)
        }
        None => previous_if_published(warehouse, job, period).await?,
    };
    let tables = read_tables(warehouse, &job.name, period).await?;
    assemble(
        warehouse,
        job,
        config,
        period,
        tables,
        Some(manifest),
        compared,
    )
    .await
}

/// The report of a run, from the tables it is about to publish (the period
/// is not published yet) and the periods published before it.
pub async fn build_for_run(
    warehouse: &Warehouse,
    job: &Job,
    config: &Config,
    period: Period,
    tables: &PeriodTables,
    manifest: &Manifest,
) -> Result<Report, ReportError> {
    let mut current = Tables::new();
    for table in tables
        .tables
        .iter()
        .filter(|t| TABLES.contains(&t.table.name()))
    {
        let batch = table.batch()?;
        current.insert(table.table.name().to_string(), vec![batch]);
    }
    let compared = previous_if_published(warehouse, job, period).await?;
    assemble(
        warehouse,
        job,
        config,
        period,
        current,
        Some(manifest.clone()),
        compared,
    )
    .await
}

async fn previous_if_published(
    warehouse: &Warehouse,
    job: &Job,
    period: Period,
) -> Result<Option<Period>, ReportError> {
    let previous = period.previous();
    Ok(publish::published_manifest(warehouse, &job.name, previous)
        .await?
        .map(|_| previous))
}

async fn read_tables(
    warehouse: &Warehouse,
    job: &str,
    period: Period,
) -> Result<Tables, ReportError> {
    let mut tables = Tables::new();
    for table in TABLES {
        if let Some(batches) = publish::read_table(warehouse, job, table, period).await? {
            tables.insert(table.to_string(), batches);
        }
    }
    Ok(tables)
}

/// Published periods of the job before `period`, oldest first.
async fn published_before(
    warehouse: &Warehouse,
    job: &str,
    period: Period,
) -> Result<Vec<Period>, ReportError> {
    let mut periods = Vec::new();
    for folder in warehouse
        .folders(&warehouse.key(&[job, crate::warehouse::layout::RUNS])?)
        .await?
    {
        let Some(earlier) = folder
            .filename()
            .and_then(crate::warehouse::layout::partition_period)
        else {
            continue;
        };
        if earlier < period
            && publish::published_manifest(warehouse, job, earlier)
                .await?
                .is_some()
        {
            periods.push(earlier);
        }
    }
    periods.sort();
    Ok(periods)
}

async fn assemble(
    warehouse: &Warehouse,
    job: &Job,
    config: &Config,
    period: Period,
    current: Tables,
    manifest: Option<Manifest>,
    compared: Option<Period>,
) -> Result<Report, ReportError> {
    let ctx = SessionContext::new();
    let summary = current
        .get("segment_summary")
        .map(|b| summary_rows(b, period))
        .transpose()?;
    let audiences = match current.get("audiences") {
        Some(batches) => Some(audience_sizes(&ctx, batches, period).await?),
        None => None,
    };
    let (grid, snapshot_customers) = match current.get("snapshots") {
        Some(batches) => {
            let customers = batches.iter().map(|b| b.num_rows() as i64).sum();
            (Some(rf_grid(&ctx, batches, period).await?), customers)
        }
        None => (None, 0),
    };
    let matrix = match compared {
        Some(from) if from != period.previous() => {
            let comparison = compare::compare(&SessionContext::new(), warehouse, job, from, period)
                .await
                .map_err(|source| ReportError::Compare {
                    period,
                    compare_to: from,
                    source: Box::new(source),
                })?;
            Some(Matrix {
                from,
                cells: matrix_cells(&[comparison.matrix], period)?,
            })
        }
        _ => current
            .get("migration_matrix")
            .map(|b| {
                matrix_cells(b, period).map(|cells| Matrix {
                    from: period.previous(),
                    cells,
                })
            })
            .transpose()?,
    };
    let (compared_summary, compared_audiences) = match compared {
        Some(other) => {
            let summary = publish::read_table(warehouse, &job.name, "segment_summary", other)
                .await?
                .map(|b| summary_rows(&b, other))
                .transpose()?;
            let audiences =
                match publish::read_table(warehouse, &job.name, "audiences", other).await? {
                    Some(batches) => Some(audience_sizes(&ctx, &batches, other).await?),
                    None => None,
                };
            (summary, audiences)
        }
        None => (None, None),
    };

    let mut history = Vec::new();
    let earlier = published_before(warehouse, &job.name, period).await?;
    let skip = earlier.len().saturating_sub(HISTORY_PERIODS - 1);
    for &other in &earlier[skip..] {
        let sizes = if let Some(batches) =
            publish::read_table(warehouse, &job.name, "segment_summary", other).await?
        {
            summary_rows(&batches, other)?
                .into_iter()
                .map(|r| (r.segment, r.customers))
                .collect()
        } else if let Some(batches) =
            publish::read_table(warehouse, &job.name, "audiences", other).await?
        {
            audience_sizes(&ctx, &batches, other).await?
        } else {
            Vec::new()
        };
        history.push(PeriodSizes {
            period: other,
            sizes,
        });
    }
    let sizes_now = match (&summary, &audiences) {
        (Some(rows), _) => rows
            .iter()
            .map(|r| (r.segment.clone(), r.customers))
            .collect(),
        (None, Some(sizes)) => sizes.clone(),
        (None, None) => Vec::new(),
    };
    history.push(PeriodSizes {
        period,
        sizes: sizes_now,
    });

    let thresholds = current
        .get("score_thresholds")
        .map(|b| threshold_rows(b, period))
        .transpose()?;
    let definitions = match current.get("segment_definitions") {
        Some(batches) => definition_rows(batches, period)?,
        None => job
            .segments
            .iter()
            .map(|s| Definition {
                segment: s.name.clone(),
                rank: s.rank,
                label: s.label.get(crate::config::Locale::En).to_string(),
                label_fr: Some(s.label.get(crate::config::Locale::Fr).to_string()),
                description: s.description.get(crate::config::Locale::En).to_string(),
                rule: s.rule.clone(),
            })
            .collect(),
    };
    Ok(Report {
        job: job.name.clone(),
        job_version: job.version,
        period,
        compared,
        manifest,
        quality: config.quality.clone(),
        definitions,
        summary,
        compared_summary,
        audiences,
        compared_audiences,
        grid,
        snapshot_customers,
        matrix,
        history,
        thresholds,
    })
}

/// Render the page.
pub fn render(report: &Report, locale: Locale) -> String {
    html::page(report, locale)
}

/// Run one of `sql/report/` over `batches` registered as `table`.
async fn query(
    ctx: &SessionContext,
    name: &'static str,
    sql: &str,
    table: &str,
    batches: &[RecordBatch],
) -> Result<RecordBatch, ReportError> {
    let fail = |source| ReportError::Query {
        query: name,
        source,
    };
    let Some(schema) = batches.first().map(|b| b.schema()) else {
        return Ok(RecordBatch::new_empty(Arc::new(
            datafusion::arrow::datatypes::Schema::empty(),
        )));
    };
    let mem = MemTable::try_new(schema, vec![batches.to_vec()]).map_err(fail)?;
    ctx.deregister_table(table).map_err(fail)?;
    ctx.register_table(table, Arc::new(mem)).map_err(fail)?;
    let result = crate::engine::query_one(ctx, sql, None)
        .await
        .map_err(fail)?;
    ctx.deregister_table(table).map_err(fail)?;
    Ok(result)
}

async fn rf_grid(
    ctx: &SessionContext,
    batches: &[RecordBatch],
    period: Period,
) -> Result<Vec<GridCell>, ReportError> {
    let has_scores = batches.first().is_some_and(|b| {
        b.schema().index_of("r_score").is_ok() && b.schema().index_of("f_score").is_ok()
    });
    if !has_scores {
        return Ok(Vec::new());
    }
    let batch = query(ctx, "rf_grid", RF_GRID_SQL, "snapshots", batches).await?;
    if batch.num_rows() == 0 {
        return Ok(Vec::new());
    }
    let rows = Columns::new(std::slice::from_ref(&batch), "rf_grid", period)?;
    let (r, f, segment, rank, customers) = (
        rows.ints("r_score")?,
        rows.ints("f_score")?,
        rows.strings("segment")?,
        rows.ints("segment_rank")?,
        rows.ints("customers")?,
    );
    Ok((0..batch.num_rows())
        .map(|i| GridCell {
            r: r[i].unwrap_or(0),
            f: f[i].unwrap_or(0),
            segment: segment[i].clone().unwrap_or_default(),
            rank: rank[i].unwrap_or(0) as i32,
            customers: customers[i].unwrap_or(0),
        })
        .collect())
}

async fn audience_sizes(
    ctx: &SessionContext,
    batches: &[RecordBatch],
    period: Period,
) -> Result<Vec<(String, i64)>, ReportError> {
    let batch = query(
        ctx,
        "audience_sizes",
        AUDIENCE_SIZES_SQL,
        "audiences",
        batches,
    )
    .await?;
    if batch.num_rows() == 0 {
        return Ok(Vec::new());
    }
    let rows = Columns::new(std::slice::from_ref(&batch), "audience_sizes", period)?;
    let (audience, customers) = (rows.strings("audience")?, rows.ints("customers")?);
    Ok((0..batch.num_rows())
        .map(|i| {
            (
                audience[i].clone().unwrap_or_default(),
                customers[i].unwrap_or(0),
            )
        })
        .collect())
}

fn summary_rows(batches: &[RecordBatch], period: Period) -> Result<Vec<SummaryRow>, ReportError> {
    let c = Columns::new(batches, "segment_summary", period)?;
    let (segment, rank, label, customers, share, active, revenue, orders, basket) = (
        c.strings("segment")?,
        c.ints("segment_rank")?,
        c.strings("label")?,
        c.ints("customers")?,
        c.floats("share")?,
        c.ints("active_customers")?,
        c.cents("revenue")?,
        c.ints("orders")?,
        c.cents("avg_basket")?,
    );
    Ok((0..c.rows)
        .map(|i| SummaryRow {
            segment: segment[i].clone().unwrap_or_default(),
            rank: rank[i].unwrap_or(0) as i32,
            label: label[i].clone().unwrap_or_default(),
            customers: customers[i].unwrap_or(0),
            share: share[i].unwrap_or(0.0),
            active: active[i].unwrap_or(0),
            revenue: revenue[i].unwrap_or(0),
            orders: orders[i].unwrap_or(0),
            avg_basket: basket[i],
        })
        .collect())
}

fn matrix_cells(batches: &[RecordBatch], period: Period) -> Result<Vec<MatrixCell>, ReportError> {
    let c = Columns::new(batches, "migration_matrix", period)?;
    let (from, to, from_rank, to_rank, customers, share) = (
        c.strings("from_segment")?,
        c.strings("to_segment")?,
        c.ints("from_rank")?,
        c.ints("to_rank")?,
        c.ints("customers")?,
        c.floats("share_of_from")?,
    );
    Ok((0..c.rows)
        .map(|i| MatrixCell {
            from: from[i].clone().unwrap_or_default(),
            to: to[i].clone().unwrap_or_default(),
            from_rank: from_rank[i].map(|r| r as i32),
            to_rank: to_rank[i].map(|r| r as i32),
            customers: customers[i].unwrap_or(0),
            share_of_from: share[i].unwrap_or(0.0),
        })
        .collect())
}

fn threshold_rows(batches: &[RecordBatch], period: Period) -> Result<Vec<Threshold>, ReportError> {
    let c = Columns::new(batches, "score_thresholds", period)?;
    let (metric, score, min, max, customers) = (
        c.strings("metric")?,
        c.ints("score")?,
        c.strings("min_value")?,
        c.strings("max_value")?,
        c.ints("customers")?,
    );
    Ok((0..c.rows)
        .map(|i| Threshold {
            metric: metric[i].clone().unwrap_or_default(),
            score: score[i].unwrap_or(0),
            min: min[i].clone(),
            max: max[i].clone(),
            customers: customers[i].unwrap_or(0),
        })
        .collect())
}

fn definition_rows(
    batches: &[RecordBatch],
    period: Period,
) -> Result<Vec<Definition>, ReportError> {
    let c = Columns::new(batches, "segment_definitions", period)?;
    let (segment, rank, label, description, rule) = (
        c.strings("segment")?,
        c.ints("segment_rank")?,
        c.strings("label")?,
        c.strings("description")?,
        c.strings("rule")?,
    );
    // Periods published before per-locale labels existed have no `label_fr`.
    let label_fr = c.strings("label_fr").ok();
    Ok((0..c.rows)
        .map(|i| Definition {
            segment: segment[i].clone().unwrap_or_default(),
            rank: rank[i].unwrap_or(0) as i32,
            label: label[i].clone().unwrap_or_default(),
            label_fr: label_fr.as_ref().and_then(|l| l[i].clone()),
            description: description[i].clone().unwrap_or_default(),
            rule: rule[i].clone().unwrap_or_default(),
        })
        .collect())
}

/// Typed access to the columns of a table, whatever integer or decimal
/// width it was written with.
struct Columns<'a> {
    batches: &'a [RecordBatch],
    table: &'static str,
    period: Period,
    rows: usize,
}

impl<'a> Columns<'a> {
    fn new(
        batches: &'a [RecordBatch],
        table: &'static str,
        period: Period,
    ) -> Result<Self, ReportError> {
        Ok(Columns {
            batches,
            table,
            period,
            rows: batches.iter().map(|b| b.num_rows()).sum(),
        })
    }

    fn column(&self, name: &str, to: &DataType) -> Result<Vec<Arc<dyn Array>>, ReportError> {
        let fail = |message: String| ReportError::Column {
            table: self.table.to_string(),
            period: self.period,
            column: name.to_string(),
            message,
        };
        self.batches
            .iter()
            .map(|batch| {
                let index = batch
                    .schema()
                    .index_of(name)
                    .map_err(|e| fail(e.to_string()))?;
                cast(batch.column(index), to).map_err(|e| fail(e.to_string()))
            })
            .collect()
    }

    fn strings(&self, name: &str) -> Result<Vec<Option<String>>, ReportError> {
        Ok(self
            .column(name, &DataType::Utf8)?
            .iter()
            .flat_map(|a| {
                a.as_string::<i32>()
                    .iter()
                    .map(|v| v.map(str::to_string))
                    .collect::<Vec<_>>()
            })
            .collect())
    }

    fn ints(&self, name: &str) -> Result<Vec<Option<i64>>, ReportError> {
        Ok(self
            .column(name, &DataType::Int64)?
            .iter()
            .flat_map(|a| a.as_primitive::<Int64Type>().iter().collect::<Vec<_>>())
            .collect())
    }

    fn floats(&self, name: &str) -> Result<Vec<Option<f64>>, ReportError> {
        Ok(self
            .column(name, &DataType::Float64)?
            .iter()
            .flat_map(|a| a.as_primitive::<Float64Type>().iter().collect::<Vec<_>>())
            .collect())
    }

    /// Money as cents.
    fn cents(&self, name: &str) -> Result<Vec<Option<i128>>, ReportError> {
        Ok(self
            .column(name, &DataType::Decimal128(38, 2))?
            .iter()
            .flat_map(|a| {
                a.as_primitive::<Decimal128Type>()
                    .iter()
                    .collect::<Vec<_>>()
            })
            .collect())
    }
}

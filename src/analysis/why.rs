//! Why a customer is in its segment (`segments why`): the customer's row of a
//! published snapshot, its score bands from `score_thresholds`, the rules of
//! the period's `segment_definitions` tried in rank order (each failing
//! condition named), the movement from `migrations`, and its orders, the only
//! part read from the transactions (with `sql/why/orders.sql`).

use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Date32Type, Decimal128Type, Int8Type, Int32Type, Int64Type};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::Expr;
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::scalar::ScalarValue;

use crate::config::{Config, Job};
use crate::engine::{self, EngineError};
use crate::inputs;
use crate::model::ExitStatus;
use crate::model::Period;
use crate::model::table_schema;
use crate::pipeline::Parameters;
use crate::storage::{StorageError, Warehouse};
use crate::warehouse::publish::{self, PublishError};

const ORDERS_SQL: &str = include_str!("../../sql/why/orders.sql");

#[derive(Debug, thiserror::Error)]
pub enum WhyError {
    #[error(
        "{job} {period} is not published (no `_SUCCESS` under {job}/_runs/period={period}/ in the warehouse)\nhint: publish it first with `segments run --period {period}`"
    )]
    NotPublished { job: String, period: Period },
    #[error(
        "{job} {period} is published but has no `snapshots` table: `why` needs the job to list `snapshots` in its outputs"
    )]
    NoSnapshot { job: String, period: Period },
    #[error(
        "customer '{customer_id}' is not in the snapshot of {job} {period}: the universe holds customers with a purchase before the end of the period\nhint: check the id (ids are compared exactly, case included)"
    )]
    UnknownCustomer {
        job: String,
        period: Period,
        customer_id: String,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("explaining customer '{customer_id}': {context}")]
    Query {
        customer_id: String,
        context: &'static str,
        #[source]
        source: DataFusionError,
    },
}

impl WhyError {
    /// Exit codes of docs/design.md §6.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            WhyError::NotPublished { .. }
            | WhyError::NoSnapshot { .. }
            | WhyError::UnknownCustomer { .. } => ExitStatus::Invalid,
            WhyError::Engine(error) => error.exit_status(),
            WhyError::Storage(_) | WhyError::Publish(PublishError::Storage(_)) => {
                ExitStatus::Storage
            }
            _ => ExitStatus::Internal,
        }
    }
}

/// One order of the customer known by the end of the period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub order_id: String,
    pub date: NaiveDate,
    /// Net amount in cents (refund lines netted off).
    pub amount_cents: i128,
    pub lines: i64,
}

impl Order {
    pub fn is_purchase(&self) -> bool {
        self.amount_cents > 0
    }
}

/// The score band a customer fell in, from `score_thresholds`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Band {
    pub metric: &'static str,
    /// The snapshot column (`recency_days`, …) and the customer's value.
    pub column: &'static str,
    pub value: String,
    pub score: Option<i8>,
    /// `(min, max, customers)` of the band, when published; a `None`
    /// bound is open (fixed cut points).
    pub band: Option<(Option<String>, Option<String>, i64)>,
}

/// What one rule said about the customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Matched,
    /// The conditions (top-level `AND` parts) that were false or null, each
    /// with the values of the columns it reads.
    Failed(Vec<String>),
    /// The rule reads columns the snapshot does not keep.
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleTried {
    pub segment: String,
    pub rank: i32,
    pub rule: String,
    pub outcome: Outcome,
}

/// The previous period's side, from the period's `migrations`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous {
    pub period: String,
    pub segment: Option<String>,
    pub movement: String,
    pub evolution: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Explanation {
    pub job: String,
    pub period: Period,
    pub customer_id: String,
    pub segment: String,
    pub segment_rank: i32,
    pub window_start: NaiveDate,
    pub as_of_date: NaiveDate,
    pub recency_days: String,
    pub frequency: String,
    pub monetary: String,
    pub first_purchase_date: String,
    pub last_purchase_date: String,
    pub orders: Vec<Order>,
    /// Empty when the job publishes no scores.
    pub bands: Vec<Band>,
    /// Whether the rules are the period's published definitions (or, when
    /// the period has none, the working copy's).
    pub published_rules: bool,
    /// The rules in rank order up to the first that matched.
    pub rules: Vec<RuleTried>,
    pub previous: Option<Previous>,
}

fn query_error(customer_id: &str, context: &'static str) -> impl Fn(DataFusionError) -> WhyError {
    let customer_id = customer_id.to_string();
    move |source| WhyError::Query {
        customer_id: customer_id.clone(),
        context,
        source,
    }
}

fn index(batch: &RecordBatch, name: &str) -> Option<usize> {
    batch.schema().index_of(name).ok()
}

/// The first row (batch, row) whose `customer_id` is `id`.
fn find_row(batches: &[RecordBatch], id: &str) -> Option<(RecordBatch, usize)> {
    for batch in batches {
        let Some(c) = index(batch, "customer_id") else {
            continue;
        };
        let ids = batch.column(c).as_string::<i32>();
        if let Some(row) = (0..batch.num_rows()).find(|&r| ids.is_valid(r) && ids.value(r) == id) {
            return Some((batch.clone(), row));
        }
    }
    None
}

fn shown(array: &dyn Array, row: usize) -> String {
    let options = FormatOptions::default().with_null("null");
    ArrayFormatter::try_new(array, &options)
        .map(|f| f.value(row).to_string())
        .unwrap_or_default()
}

fn text_of(batch: &RecordBatch, name: &str, row: usize) -> String {
    index(batch, name)
        .map(|i| shown(batch.column(i).as_ref(), row))
        .unwrap_or_else(|| "null".into())
}

fn opt_text(batch: &RecordBatch, name: &str, row: usize) -> Option<String> {
    let i = index(batch, name)?;
    let column = batch.column(i);
    column.is_valid(row).then(|| shown(column.as_ref(), row))
}

/// Split a rule at its top-level `AND`s (not inside parentheses, quotes or
/// `BETWEEN x AND y`), so that each failing part can be named.
pub fn conditions(rule: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut quote = false;
    let mut pending_between = false;
    let mut start = 0;
    let bytes = rule.as_bytes();
    let word_at = |i: usize, word: &str| {
        let end = i + word.len();
        end <= bytes.len()
            && rule[i..end].eq_ignore_ascii_case(word)
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'))
            && (end == bytes.len() || !(bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_'))
    };
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if quote {
            quote = c != b'\'';
        } else if c == b'\'' {
            quote = true;
        } else if c == b'(' {
            depth += 1;
        } else if c == b')' {
            depth -= 1;
        } else if depth == 0 && word_at(i, "or") {
            // `a OR b AND c` is `a OR (b AND c)`: not a list of conditions.
            return vec![rule.trim().to_string()];
        } else if depth == 0 && word_at(i, "between") {
            pending_between = true;
        } else if depth == 0 && word_at(i, "and") {
            if pending_between {
                pending_between = false;
            } else {
                parts.push(rule[start..i].trim().to_string());
                start = i + 3;
            }
            i += 3;
            continue;
        }
        i += 1;
    }
    parts.push(rule[start..].trim().to_string());
    parts.retain(|p| !p.is_empty());
    parts
}

/// Why a rule cannot be evaluated on a snapshot row, for the user.
fn unknown_reason(error: &DataFusionError) -> String {
    use datafusion::common::SchemaError;
    if let DataFusionError::SchemaError(inner, _) = error.find_root()
        && let SchemaError::FieldNotFound { field, .. } = inner.as_ref()
    {
        return format!(
            "reads `{}`, which the published snapshot does not keep: not evaluated",
            field.name
        );
    }
    format!(
        "not evaluated on the published snapshot: {}",
        error.strip_backtrace().lines().next().unwrap_or_default()
    )
}

/// Evaluate each rule on the customer's snapshot row, in rank order, up to
/// the first match.
async fn try_rules(
    customer_id: &str,
    row: RecordBatch,
    rules: &[(String, i32, String)],
) -> Result<Vec<RuleTried>, WhyError> {
    let fail = query_error(customer_id, "evaluating the rules");
    let ctx = SessionContext::new();
    let table = MemTable::try_new(row.schema(), vec![vec![row.clone()]]).map_err(&fail)?;
    let frame: DataFrame = ctx.read_table(Arc::new(table)).map_err(&fail)?;
    let mut tried = Vec::new();
    for (segment, rank, rule) in rules {
        let parts = conditions(rule);
        let parsed: Result<Vec<Expr>, _> = parts.iter().map(|p| frame.parse_sql_expr(p)).collect();
        let (parts, exprs) = match parsed {
            Ok(exprs) => (parts, exprs),
            // A part that does not stand alone: evaluate the whole rule.
            Err(_) => match frame.parse_sql_expr(rule) {
                Ok(expr) => (vec![rule.clone()], vec![expr]),
                Err(error) => {
                    tried.push(RuleTried {
                        segment: segment.clone(),
                        rank: *rank,
                        rule: rule.clone(),
                        outcome: Outcome::Unknown(unknown_reason(&error)),
                    });
                    continue;
                }
            },
        };
        let selected = frame
            .clone()
            .select(
                exprs
                    .iter()
                    .enumerate()
                    .map(|(i, e)| e.clone().alias(format!("c{i}")))
                    .collect::<Vec<_>>(),
            )
            .map_err(&fail)?
            .collect()
            .await
            .map_err(&fail)?;
        let Some(result) = selected.iter().find(|b| b.num_rows() > 0) else {
            continue;
        };
        let mut failing = Vec::new();
        for (i, (part, expr)) in parts.iter().zip(&exprs).enumerate() {
            let value = result.column(i);
            let truth = if value.is_null(0) {
                None
            } else {
                value.as_boolean_opt().map(|b| b.value(0))
            };
            if truth != Some(true) {
                let mut columns: Vec<String> =
                    expr.column_refs().iter().map(|c| c.name.clone()).collect();
                columns.sort();
                columns.dedup();
                let values: Vec<String> = columns
                    .iter()
                    .map(|c| format!("{c} = {}", text_of(&row, c, 0)))
                    .collect();
                failing.push(format!("{part}  ({})", values.join(", ")));
            }
        }
        let matched = failing.is_empty();
        tried.push(RuleTried {
            segment: segment.clone(),
            rank: *rank,
            rule: rule.clone(),
            outcome: if matched {
                Outcome::Matched
            } else {
                Outcome::Failed(failing)
            },
        });
        if matched {
            break;
        }
    }
    Ok(tried)
}

/// The published definitions as (segment, rank, rule), in rank order.
fn definitions(batches: &[RecordBatch]) -> Vec<(String, i32, String)> {
    let mut out = Vec::new();
    for batch in batches {
        let (Some(s), Some(r), Some(u)) = (
            index(batch, "segment"),
            index(batch, "segment_rank"),
            index(batch, "rule"),
        ) else {
            continue;
        };
        let (segments, ranks, rules) = (
            batch.column(s).as_string::<i32>(),
            batch.column(r).as_primitive::<Int32Type>(),
            batch.column(u).as_string::<i32>(),
        );
        for row in 0..batch.num_rows() {
            out.push((
                segments.value(row).to_string(),
                ranks.value(row),
                rules.value(row).to_string(),
            ));
        }
    }
    out.sort_by_key(|r| r.1);
    out
}

fn bands(snapshot: &RecordBatch, row: usize, thresholds: Option<&[RecordBatch]>) -> Vec<Band> {
    let metrics = [
        ("recency", "recency_days", "r_score"),
        ("frequency", "frequency", "f_score"),
        ("monetary", "monetary", "m_score"),
    ];
    let Some(thresholds) = thresholds else {
        return Vec::new();
    };
    metrics
        .iter()
        .map(|(metric, column, score_column)| {
            let score = index(snapshot, score_column).and_then(|i| {
                let scores = snapshot.column(i).as_primitive::<Int8Type>();
                scores.is_valid(row).then(|| scores.value(row))
            });
            let mut band = None;
            for batch in thresholds {
                let (Some(m), Some(s), Some(lo), Some(hi), Some(n)) = (
                    index(batch, "metric"),
                    index(batch, "score"),
                    index(batch, "min_value"),
                    index(batch, "max_value"),
                    index(batch, "customers"),
                ) else {
                    continue;
                };
                for r in 0..batch.num_rows() {
                    let bound = |c: usize| {
                        let values = batch.column(c).as_string::<i32>();
                        values.is_valid(r).then(|| values.value(r).to_string())
                    };
                    if batch.column(m).as_string::<i32>().value(r) == *metric
                        && Some(batch.column(s).as_primitive::<Int8Type>().value(r)) == score
                        && (bound(lo).is_some() || bound(hi).is_some())
                    {
                        band = Some((
                            bound(lo),
                            bound(hi),
                            batch.column(n).as_primitive::<Int64Type>().value(r),
                        ));
                    }
                }
            }
            Band {
                metric,
                column,
                value: text_of(snapshot, column, row),
                score,
                band,
            }
        })
        .collect()
}

async fn orders(
    config: &Config,
    params: &Parameters,
    customer_id: &str,
) -> Result<Vec<Order>, WhyError> {
    let ctx = engine::session(config)?;
    inputs::prepare(
        &ctx,
        config,
        &["transactions".to_string()],
        params.period.end(),
    )
    .await?;
    let fail = query_error(customer_id, "reading the orders (sql/why/orders.sql)");
    let batches = engine::plan_sql(
        &ctx,
        ORDERS_SQL,
        Some(params.with_extra(vec![(
            "customer_id",
            ScalarValue::Utf8(Some(customer_id.to_string())),
        )])),
    )
    .await
    .map_err(&fail)?
    .collect()
    .await
    .map_err(&fail)?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    let mut out = Vec::new();
    for batch in batches {
        let ids = batch.column(0).as_string::<i32>();
        let dates = batch.column(1).as_primitive::<Date32Type>();
        let amounts = batch.column(2).as_primitive::<Decimal128Type>();
        let lines = batch.column(3).as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            out.push(Order {
                order_id: ids.value(row).to_string(),
                date: epoch + chrono::Duration::days(dates.value(row) as i64),
                amount_cents: if amounts.is_null(row) {
                    0
                } else {
                    amounts.value(row)
                },
                lines: lines.value(row),
            });
        }
    }
    Ok(out)
}

/// Explain `customer_id`'s segment in the published `period` of `job`.
pub async fn explain(
    job: &Job,
    config: &Config,
    period: Period,
    customer_id: &str,
) -> Result<Explanation, WhyError> {
    crate::storage::scoped(config.storage.clone(), async {
        let warehouse = Warehouse::open(&config.warehouse)?;
        publish::published_manifest(&warehouse, &job.name, period)
            .await?
            .ok_or_else(|| WhyError::NotPublished {
                job: job.name.clone(),
                period,
            })?;
        let read = |table: &'static str| publish::read_table(&warehouse, &job.name, table, period);
        let snapshots = read("snapshots")
            .await?
            .ok_or_else(|| WhyError::NoSnapshot {
                job: job.name.clone(),
                period,
            })?;
        let (batch, row) =
            find_row(&snapshots, customer_id).ok_or_else(|| WhyError::UnknownCustomer {
                job: job.name.clone(),
                period,
                customer_id: customer_id.to_string(),
            })?;
        // The customer's row alone, with the contract's columns.
        let contract = table_schema(crate::model::OutputTable::Snapshots).schema;
        let single = batch.slice(row, 1);
        let single = RecordBatch::try_new(
            contract.clone(),
            contract
                .fields()
                .iter()
                .map(|f| {
                    index(&single, f.name())
                        .map(|i| single.column(i).clone())
                        .ok_or_else(|| PublishError::Corrupt {
                            what: format!("snapshots of {} {period}", job.name),
                            message: format!("no column {}", f.name()),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?,
        )
        .map_err(|e| PublishError::Corrupt {
            what: format!("snapshots of {} {period}", job.name),
            message: e.to_string(),
        })?;

        let thresholds = read("score_thresholds").await?;
        let published_definitions = read("segment_definitions").await?;
        let published_rules = published_definitions.is_some();
        let rules = match &published_definitions {
            Some(batches) => definitions(batches),
            None => job
                .segments
                .iter()
                .map(|s| (s.name.clone(), s.rank, s.rule.clone()))
                .collect(),
        };
        let tried = try_rules(customer_id, single.clone(), &rules).await?;

        let previous = read("migrations")
            .await?
            .and_then(|batches| find_row(&batches, customer_id))
            .map(|(b, r)| Previous {
                period: text_of(&b, "from_period", r),
                segment: opt_text(&b, "from_segment", r),
                movement: text_of(&b, "movement", r),
                evolution: opt_text(&b, "evolution", r),
            });

        let params = Parameters::new(period, job.window_months);
        let orders = orders(config, &params, customer_id).await?;
        Ok(Explanation {
            job: job.name.clone(),
            period,
            customer_id: customer_id.to_string(),
            segment: text_of(&single, "segment", 0),
            segment_rank: single
                .column(index(&single, "segment_rank").expect("contract column"))
                .as_primitive::<Int32Type>()
                .value(0),
            window_start: period.window_start(job.window_months),
            as_of_date: period.as_of_date(),
            recency_days: text_of(&single, "recency_days", 0),
            frequency: text_of(&single, "frequency", 0),
            monetary: text_of(&single, "monetary", 0),
            first_purchase_date: text_of(&single, "first_purchase_date", 0),
            last_purchase_date: text_of(&single, "last_purchase_date", 0),
            orders,
            bands: bands(&single, 0, thresholds.as_deref()),
            published_rules,
            rules: tried,
            previous,
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::conditions;

    #[test]
    fn splits_rules_at_top_level_and() {
        assert_eq!(
            conditions("r_score BETWEEN 3 AND 4 AND f_score >= 4"),
            ["r_score BETWEEN 3 AND 4", "f_score >= 4"]
        );
        assert_eq!(
            conditions("(a = 1 AND b = 2) and c = 'x AND y' AND brand = 1"),
            ["(a = 1 AND b = 2)", "c = 'x AND y'", "brand = 1"]
        );
        assert_eq!(conditions("frequency = 0"), ["frequency = 0"]);
        assert_eq!(
            conditions("a = 1 OR b = 2 AND c = 3"),
            ["a = 1 OR b = 2 AND c = 3"]
        );
    }
}

//! Whether a step can be computed per month and merged, and how: the step
//! must group the `transactions` input and return only its group keys and
//! MIN, MAX, SUM or COUNT aggregates (optionally cast without losing
//! precision). From its logical plan come the query of the month facts (the
//! same grouping with the month as one more key) and the merge (MIN of MINs,
//! MAX of MAXes, SUM of SUMs and of COUNTs).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    Aggregate, BinaryExpr, Expr, Filter, LogicalPlan, LogicalPlanBuilder, Operator, cast, col, lit,
};
use datafusion::prelude::{DataFrame, SessionContext};

use crate::config::Step;
use crate::engine::sql_options;

/// The column of a month fact that holds its month (the first day).
pub const MONTH: &str = "__month";

/// The parameter a step computed per month may use: in its `WHERE`, as
/// `ordered_date < $period_end` (a month's facts are then all its lines).
const PERIOD_END: &str = "$period_end";

/// How the month facts of one output column are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// A group key: the merge groups by it.
    Key,
    Min,
    Max,
    /// SUM of the months' SUMs or COUNTs.
    Sum,
}

/// A step that can be computed per month and merged.
#[derive(Debug, Clone)]
pub struct Mergeable {
    /// The step's output schema (what the merge returns).
    pub output: SchemaRef,
    /// How each output column is merged, in output order.
    pub merges: Vec<Merge>,
    /// The step's plan without its `$period_end` condition: the facts query
    /// is this plan with the month as one more group key.
    aggregate: Aggregate,
    projection: Vec<Expr>,
}

/// Why a step cannot be computed per month (said to the user with the step
/// and what to change).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotMergeable(pub String);

impl Mergeable {
    /// Analyse the SQL of `step` (unbound: the parameters are checked here).
    /// The outer error is SQL that does not plan on the inputs (a typo, or
    /// a read of an earlier step, not registered yet); the inner one a plan
    /// that cannot be computed per month.
    pub async fn of(
        ctx: &SessionContext,
        step: &Step,
    ) -> Result<Result<Mergeable, NotMergeable>, DataFusionError> {
        let frame = ctx.sql_with_options(&step.sql, sql_options()).await?;
        Ok(Self::of_plan(frame.logical_plan()))
    }

    fn of_plan(plan: &LogicalPlan) -> Result<Mergeable, NotMergeable> {
        let shape = || {
            NotMergeable(
                "it must be one SELECT … FROM transactions … GROUP BY …, without HAVING, ORDER BY, LIMIT, DISTINCT or window functions".into(),
            )
        };
        let LogicalPlan::Projection(projection) = plan else {
            return Err(shape());
        };
        let LogicalPlan::Aggregate(aggregate) = projection.input.as_ref() else {
            return Err(shape());
        };
        if aggregate.group_expr.is_empty() {
            return Err(NotMergeable("it has no GROUP BY".into()));
        }
        if aggregate
            .group_expr
            .iter()
            .any(|e| matches!(e, Expr::GroupingSet(_)))
        {
            return Err(NotMergeable(
                "it groups by GROUPING SETS, ROLLUP or CUBE: group by plain keys".into(),
            ));
        }
        reads_transactions_only(&aggregate.input)?;
        let input = without_period_end(&aggregate.input)?;
        let expressions = aggregate
            .group_expr
            .iter()
            .chain(&aggregate.aggr_expr)
            .chain(&projection.expr);
        for expr in expressions {
            no_placeholder(expr, "outside its WHERE")?;
            line_by_line(expr)?;
        }
        let mut merges = Vec::with_capacity(projection.expr.len());
        let mut keys = std::collections::BTreeSet::new();
        for (expr, field) in projection.expr.iter().zip(projection.schema.fields()) {
            let (merge, key) = merge_of(expr, aggregate)
                .map_err(|message| NotMergeable(format!("column `{}` {message}", field.name())))?;
            keys.extend(key);
            merges.push(merge);
        }
        if keys.len() != aggregate.group_expr.len() {
            return Err(NotMergeable(
                "it must return every GROUP BY key as a column (the merge groups by them)".into(),
            ));
        }
        let mut aggregate = aggregate.clone();
        aggregate.input = input;
        Ok(Mergeable {
            output: Arc::new(projection.schema.as_arrow().clone()),
            merges,
            aggregate,
            projection: projection.expr.clone(),
        })
    }

    /// The schema of a month fact: the step's output and the month.
    pub fn facts_schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .output
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(MONTH, DataType::Date32, true));
        Arc::new(Schema::new(fields))
    }

    /// The step grouped by month too, over the lines of `months` (first
    /// days; every month when `None`): one row per group and month. The
    /// lines are also selected on `ordered_at`, a day wider on each side
    /// (the time zone), so that the Parquet scan skips the files and row
    /// groups of other months by their statistics.
    pub fn facts_query(
        &self,
        ctx: &SessionContext,
        months: &[chrono::NaiveDate],
    ) -> datafusion::error::Result<DataFrame> {
        let month = month_of(Expr::Column(Column::from_name("ordered_date")));
        let mut group = self.aggregate.group_expr.clone();
        group.push(month.clone().alias(MONTH));
        let mut projection = self.projection.clone();
        projection.push(Expr::Column(Column::from_name(MONTH)));
        let mut plan = LogicalPlanBuilder::from(self.aggregate.input.as_ref().clone());
        let wanted: Vec<Expr> = months.iter().map(|m| date(*m)).collect();
        let instant_type = self
            .aggregate
            .input
            .schema()
            .field_with_unqualified_name("ordered_at")?
            .data_type()
            .clone();
        let near = instants_near(months, &instant_type);
        plan = plan.filter(near.and(month.clone().in_list(wanted, false)))?;
        let plan = plan
            .aggregate(group, self.aggregate.aggr_expr.clone())?
            .project(projection)?
            .build()?;
        Ok(DataFrame::new(ctx.state(), plan))
    }

    /// The step's result for a period ending at `period_end`, from `facts`
    /// (a frame with [`Mergeable::facts_schema`]): the months before it
    /// merged, every column cast back to the step's type.
    pub fn merge(
        &self,
        facts: DataFrame,
        period_end: chrono::NaiveDate,
    ) -> datafusion::error::Result<DataFrame> {
        use datafusion::functions_aggregate::expr_fn::{max, min, sum};
        let facts = facts.filter(col(MONTH).lt(date(period_end)))?;
        let name = |i: usize| self.output.field(i).name().clone();
        let column = |i: usize| Expr::Column(Column::from_name(name(i)));
        let keys: Vec<Expr> = (0..self.merges.len())
            .filter(|&i| self.merges[i] == Merge::Key)
            .map(column)
            .collect();
        let merged: Vec<Expr> = (0..self.merges.len())
            .filter_map(|i| {
                let merge = match self.merges[i] {
                    Merge::Key => return None,
                    Merge::Min => min(column(i)),
                    Merge::Max => max(column(i)),
                    Merge::Sum => sum(column(i)),
                };
                Some(merge.alias(name(i)))
            })
            .collect();
        let grouped = facts.aggregate(keys, merged)?;
        let typed: Vec<Expr> = (0..self.merges.len())
            .map(|i| cast(column(i), self.output.field(i).data_type().clone()).alias(name(i)))
            .collect();
        grouped.select(typed)
    }
}

/// `ordered_at` within a day of the runs of consecutive `months` (first
/// days, ascending): one range per run, false when there is none.
pub(super) fn instants_near(months: &[chrono::NaiveDate], instant_type: &DataType) -> Expr {
    let at = |day: chrono::NaiveDate| {
        let micros = day
            .and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc()
            .timestamp_micros();
        cast(
            lit(ScalarValue::TimestampMicrosecond(
                Some(micros),
                Some("UTC".into()),
            )),
            instant_type.clone(),
        )
    };
    let ordered_at = || Expr::Column(Column::from_name("ordered_at"));
    month_ranges(months)
        .into_iter()
        .map(|(start, end)| {
            let start = start.pred_opt().unwrap_or(start);
            let end = end.succ_opt().unwrap_or(end);
            ordered_at().gt_eq(at(start)).and(ordered_at().lt(at(end)))
        })
        .reduce(Expr::or)
        .unwrap_or(lit(false))
}

/// Consecutive `months` (first days, in order) joined into ranges of
/// days: (first day, day after the last), one per run of months.
pub(super) fn month_ranges(
    months: &[chrono::NaiveDate],
) -> Vec<(chrono::NaiveDate, chrono::NaiveDate)> {
    let mut ranges: Vec<(chrono::NaiveDate, chrono::NaiveDate)> = Vec::new();
    for first in months {
        let end = crate::model::Period::of_date(*first).end();
        match ranges.last_mut() {
            Some((_, last_end)) if *last_end == *first => *last_end = end,
            _ => ranges.push((*first, end)),
        }
    }
    ranges
}

/// The first day of the month of a Date32 expression.
fn month_of(date: Expr) -> Expr {
    cast(
        datafusion::functions::expr_fn::date_trunc(lit("month"), date),
        DataType::Date32,
    )
}

pub(super) fn date(day: chrono::NaiveDate) -> Expr {
    lit(ScalarValue::Date32(Some(crate::model::units::epoch_days(
        day,
    ))))
}

/// The step may read `transactions` only (the other inputs are dated
/// versions, the earlier steps depend on the period), through filters and
/// projections of its lines: anything that relates lines to each other
/// (a join, a window, a nested aggregate, a limit) would make a month's
/// facts depend on other months. The view `transactions` itself is not
/// looked into.
fn reads_transactions_only(plan: &LogicalPlan) -> Result<(), NotMergeable> {
    let refused = |what: String| {
        NotMergeable(format!(
            "it reads {what}: a step computed per month reads the lines of the `transactions` input only, through WHERE conditions"
        ))
    };
    match plan {
        LogicalPlan::SubqueryAlias(alias) if alias.alias.table() == "transactions" => Ok(()),
        LogicalPlan::TableScan(scan) if scan.table_name.table() == "transactions" => Ok(()),
        LogicalPlan::TableScan(scan) => Err(refused(format!("`{}`", scan.table_name))),
        LogicalPlan::Filter(_) | LogicalPlan::Projection(_) | LogicalPlan::SubqueryAlias(_) => {
            for expr in plan.expressions() {
                line_by_line(&expr)?;
            }
            for input in plan.inputs() {
                reads_transactions_only(input)?;
            }
            Ok(())
        }
        other => {
            let node = other.display().to_string();
            let name = node.split(':').next().unwrap_or("plan").to_string();
            Err(refused(format!("a `{name}`")))
        }
    }
}

/// An expression computed from one line: no subquery, nothing volatile
/// (`now()`, `random()`: a month's facts would depend on when they were
/// computed).
fn line_by_line(expr: &Expr) -> Result<(), NotMergeable> {
    let mut found = None;
    expr.apply(|e| {
        match e {
            Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_) => {
                found = Some("a subquery".to_string());
                return Ok(TreeNodeRecursion::Stop);
            }
            Expr::ScalarFunction(function)
                if function.func.signature().volatility
                    == datafusion::logical_expr::Volatility::Volatile =>
            {
                found = Some(format!("the volatile function {}()", function.func.name()));
                return Ok(TreeNodeRecursion::Stop);
            }
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .expect("the visit does not fail");
    match found {
        Some(what) => Err(NotMergeable(format!(
            "it uses {what}: a month's facts must depend on the month's lines only"
        ))),
        None => Ok(()),
    }
}

/// The aggregate's input without the condition `ordered_date < $period_end`
/// (each month's facts hold all its lines); any other use of a parameter
/// would make a month's facts depend on the period.
fn without_period_end(input: &Arc<LogicalPlan>) -> Result<Arc<LogicalPlan>, NotMergeable> {
    let LogicalPlan::Filter(filter) = input.as_ref() else {
        no_placeholder_in_plan(input)?;
        return Ok(input.clone());
    };
    no_placeholder_in_plan(&filter.input)?;
    let mut kept = Vec::new();
    for conjunct in split_conjunction(&filter.predicate) {
        if is_before_period_end(conjunct) {
            continue;
        }
        no_placeholder(conjunct, "other than in `ordered_date < $period_end`")?;
        kept.push(conjunct.clone());
    }
    match conjunction(kept) {
        None => Ok(filter.input.clone()),
        Some(predicate) => Filter::try_new(predicate, filter.input.clone())
            .map(|f| Arc::new(LogicalPlan::Filter(f)))
            .map_err(|e| NotMergeable(e.to_string())),
    }
}

fn is_before_period_end(expr: &Expr) -> bool {
    matches!(expr, Expr::BinaryExpr(BinaryExpr { left, op: Operator::Lt, right })
        if matches!(left.as_ref(), Expr::Column(c) if c.name == "ordered_date")
            && matches!(right.as_ref(), Expr::Placeholder(p) if p.id == PERIOD_END))
}

fn no_placeholder(expr: &Expr, place: &str) -> Result<(), NotMergeable> {
    let mut found = None;
    expr.apply(|e| {
        if let Expr::Placeholder(p) = e {
            found = Some(p.id.clone());
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .expect("the visit does not fail");
    match found {
        Some(id) => Err(NotMergeable(format!(
            "it uses the parameter {id} {place}: a month's facts must not depend on the period"
        ))),
        None => Ok(()),
    }
}

fn no_placeholder_in_plan(plan: &LogicalPlan) -> Result<(), NotMergeable> {
    let mut result = Ok(());
    plan.apply_with_subqueries(|node| {
        if matches!(node, LogicalPlan::SubqueryAlias(alias) if alias.alias.table() == "transactions")
        {
            return Ok(TreeNodeRecursion::Jump);
        }
        for expr in node.expressions() {
            if let Err(e) = no_placeholder(&expr, "below its WHERE") {
                result = Err(e);
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .expect("the visit does not fail");
    result
}

/// How one output expression of the step merges across months, and which
/// GROUP BY key it is, if one.
fn merge_of(expr: &Expr, aggregate: &Aggregate) -> Result<(Merge, Option<usize>), String> {
    let expr = strip_alias(expr);
    let (inner, cast_to) = match expr {
        Expr::Cast(c) => (strip_alias(&c.expr), Some(c.field.data_type().clone())),
        // A month's overflow would become NULL and vanish from the merge.
        Expr::TryCast(_) => {
            return Err(format!(
                "is `{expr}`: TRY_CAST turns a month's overflow into NULL, which the merge would skip; use CAST"
            ));
        }
        other => (other, None),
    };
    let Expr::Column(column) = inner else {
        return Err(format!(
            "is `{expr}`: a step computed per month returns its GROUP BY keys and MIN, MAX, SUM or COUNT aggregates; compute expressions of them in a later step"
        ));
    };
    let index = aggregate
        .schema
        .index_of_column(column)
        .map_err(|e| e.to_string())?;
    let groups = aggregate.group_expr.len();
    if index < groups {
        return match cast_to {
            None => Ok((Merge::Key, Some(index))),
            Some(_) => Err("casts a GROUP BY key: cast it in the GROUP BY".into()),
        };
    }
    let aggregated = strip_alias(&aggregate.aggr_expr[index - groups]);
    let Expr::AggregateFunction(function) = aggregated else {
        return Err(format!("is `{aggregated}`, not an aggregate"));
    };
    let name = function.func.name().to_ascii_lowercase();
    let params = &function.params;
    if params.distinct || !params.order_by.is_empty() {
        return Err(format!(
            "is `{aggregated}`: DISTINCT and ORDER BY aggregates do not merge across months"
        ));
    }
    let merge = match name.as_str() {
        "min" => Merge::Min,
        "max" => Merge::Max,
        "sum" | "count" => Merge::Sum,
        _ => {
            return Err(format!(
                "is `{aggregated}`: only MIN, MAX, SUM and COUNT merge across months (e.g. AVG is SUM over COUNT, in a later step)"
            ));
        }
    };
    if let Some(target) = cast_to {
        let source = aggregate.schema.field(index).data_type();
        if !cast_keeps_merge(source, &target, merge) {
            return Err(format!(
                "casts `{aggregated}` ({source}) to {target}: a cast that rounds or reorders changes the merged value; cast to a type that holds every value"
            ));
        }
    }
    Ok((merge, None))
}

fn strip_alias(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(alias) => strip_alias(&alias.expr),
        other => other,
    }
}

/// Whether merging after the cast gives the cast of the merge: for a SUM,
/// a cast that keeps every decimal (no rounding); for MIN and MAX, any cast
/// that keeps the order (numbers to numbers, dates to dates). A cast to
/// fewer digits is accepted: where a month's value does not fit, the run
/// fails (CAST overflows are errors), it never merges a wrong value.
fn cast_keeps_merge(source: &DataType, target: &DataType, merge: Merge) -> bool {
    let scale = |t: &DataType| match t {
        DataType::Decimal128(_, s) | DataType::Decimal256(_, s) => Some(i16::from(*s)),
        t if t.is_integer() => Some(0),
        _ => None,
    };
    match merge {
        Merge::Sum => match (scale(source), scale(target)) {
            (Some(from), Some(to)) => to >= from,
            _ => source == target,
        },
        Merge::Min | Merge::Max => {
            (source.is_numeric() && target.is_numeric())
                || (source.is_temporal() && target.is_temporal())
                || source == target
        }
        Merge::Key => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SqlOrigin;
    use datafusion::arrow::datatypes::TimeUnit;

    async fn session() -> SessionContext {
        let ctx = SessionContext::new();
        ctx.sql(
            "CREATE TABLE transactions (customer_id VARCHAR, order_id VARCHAR, \
             ordered_at TIMESTAMP, ordered_date DATE, amount DECIMAL(18, 2), channel VARCHAR)",
        )
        .await
        .unwrap();
        ctx.sql("CREATE TABLE customers (customer_id VARCHAR)")
            .await
            .unwrap();
        ctx
    }

    fn step(sql: &str) -> Step {
        Step {
            name: "orders".into(),
            sql: sql.into(),
            origin: SqlOrigin::Inline {
                job: "job.yaml".into(),
                line: None,
            },
            description: String::new(),
            incremental: None,
        }
    }

    async fn analyse(sql: &str) -> Result<Mergeable, NotMergeable> {
        Mergeable::of(&session().await, &step(sql))
            .await
            .expect("the step plans")
    }

    #[tokio::test]
    async fn sql_that_does_not_plan_on_the_inputs_is_a_planning_error() {
        for sql in [
            "SELECT customer_id, SUM(amount) AS s FROM orders GROUP BY customer_id",
            "SELECT customer_id, SUM(amount AS s FROM transactions GROUP BY customer_id",
        ] {
            let planned = Mergeable::of(&session().await, &step(sql)).await;
            assert!(planned.is_err(), "{sql}");
        }
    }

    #[tokio::test]
    async fn the_shipped_orders_step_merges() {
        let shipped = include_str!("../../sql/orders.sql");
        let mergeable = analyse(shipped).await.unwrap();
        assert_eq!(
            mergeable.merges,
            vec![Merge::Key, Merge::Key, Merge::Min, Merge::Sum]
        );
        assert_eq!(
            mergeable.output.field(3).data_type(),
            &DataType::Decimal128(18, 2)
        );
    }

    #[tokio::test]
    async fn counts_and_maxima_merge() {
        let mergeable = analyse(
            "SELECT customer_id, COUNT(*) AS lines, MAX(ordered_at) AS last_at, \
             SUM(amount) FILTER (WHERE amount > 0) AS sold FROM transactions GROUP BY customer_id",
        )
        .await
        .unwrap();
        assert_eq!(
            mergeable.merges,
            vec![Merge::Key, Merge::Sum, Merge::Max, Merge::Sum]
        );
        assert_eq!(
            mergeable.facts_schema().field(4).name(),
            MONTH,
            "the month is the facts' last column"
        );
        assert!(matches!(
            mergeable.output.field(2).data_type(),
            DataType::Timestamp(TimeUnit::Nanosecond, _)
        ));
    }

    #[tokio::test]
    async fn steps_that_do_not_merge_say_why() {
        let cases = [
            (
                "SELECT customer_id, AVG(amount) AS mean FROM transactions GROUP BY customer_id",
                "only MIN, MAX, SUM and COUNT",
            ),
            (
                "SELECT customer_id, COUNT(DISTINCT order_id) AS n FROM transactions GROUP BY customer_id",
                "DISTINCT",
            ),
            (
                "SELECT customer_id, SUM(amount) AS s FROM transactions WHERE ordered_date >= $window_start GROUP BY customer_id",
                "$window_start",
            ),
            (
                "SELECT customer_id, SUM(amount) AS s FROM transactions GROUP BY customer_id HAVING SUM(amount) > 0",
                "one SELECT",
            ),
            (
                "SELECT t.customer_id, SUM(t.amount) AS s FROM transactions t JOIN customers c ON c.customer_id = t.customer_id GROUP BY t.customer_id",
                "transactions` input only",
            ),
            (
                "SELECT customer_id, SUM(amount) + 1 AS s FROM transactions GROUP BY customer_id",
                "compute expressions of them in a later step",
            ),
            (
                "SELECT customer_id, CAST(SUM(amount) AS DECIMAL(18, 0)) AS s FROM transactions GROUP BY customer_id",
                "rounds",
            ),
            (
                "SELECT customer_id, order_id FROM transactions",
                "one SELECT",
            ),
            (
                "SELECT customer_id, SUM(amount) AS s FROM transactions WHERE random() < 0.5 GROUP BY customer_id",
                "volatile",
            ),
            (
                "SELECT customer_id, SUM(amount) AS s FROM transactions WHERE order_id IN (SELECT order_id FROM transactions WHERE amount < 0) GROUP BY customer_id",
                "subquery",
            ),
            (
                "SELECT customer_id, SUM(amount) AS s FROM transactions GROUP BY customer_id, order_id",
                "every GROUP BY key",
            ),
            (
                "SELECT customer_id, TRY_CAST(SUM(amount) AS DECIMAL(18, 2)) AS s FROM transactions GROUP BY customer_id",
                "TRY_CAST",
            ),
            (
                "SELECT customer_id, SUM(amount) AS s FROM (SELECT * FROM transactions LIMIT 10) GROUP BY customer_id",
                "`Limit`",
            ),
            (
                "SELECT SUM(amount) AS s FROM transactions GROUP BY customer_id",
                "every GROUP BY key",
            ),
        ];
        for (sql, expected) in cases {
            let error = analyse(sql).await.expect_err(sql).to_string();
            assert!(error.contains(expected), "{sql}: {error}");
        }
    }

    /// The facts of every month merged equal the step over every line, on
    /// lines that span months (an order refunded a month later).
    #[tokio::test]
    async fn merged_month_facts_equal_the_step() {
        let ctx = session().await;
        ctx.sql(
            "INSERT INTO transactions VALUES \
             ('c1', 'o1', TIMESTAMP '2024-01-05 10:00:00', DATE '2024-01-05', 10.50, 'web'), \
             ('c1', 'o1', TIMESTAMP '2024-01-05 10:00:00', DATE '2024-01-05', 4.25, 'web'), \
             ('c1', 'o1', TIMESTAMP '2024-02-10 09:00:00', DATE '2024-02-10', -3.00, 'web'), \
             ('c1', 'o2', TIMESTAMP '2024-02-11 09:00:00', DATE '2024-02-11', 7.00, 'store'), \
             ('c2', 'o3', TIMESTAMP '2024-01-31 23:00:00', DATE '2024-01-31', 1.00, 'store'), \
             (NULL, 'o4', TIMESTAMP '2024-01-31 23:00:00', DATE '2024-01-31', 9.00, 'store'), \
             ('c2', 'o5', TIMESTAMP '2024-03-01 00:00:00', DATE '2024-03-01', 2.00, 'store')",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
        let shipped = step(include_str!("../../sql/orders.sql"));
        let mergeable = Mergeable::of(&ctx, &shipped).await.unwrap().unwrap();
        let day = |m: u32, d: u32| chrono::NaiveDate::from_ymd_opt(2024, m, d).unwrap();
        let facts = mergeable
            .facts_query(&ctx, &[day(1, 1), day(2, 1), day(3, 1)])
            .unwrap();
        let facts = crate::engine::materialise(facts).await.unwrap();
        let sorted = "SELECT * FROM merged ORDER BY customer_id, order_id";
        for end in [day(2, 1), day(3, 1), day(4, 1)] {
            let merged = mergeable.merge(facts.clone(), end).unwrap();
            ctx.register_table("merged", merged.into_view()).unwrap();
            let got = ctx.sql(sorted).await.unwrap().collect().await.unwrap();
            ctx.deregister_table("merged").unwrap();
            let expected = ctx
                .sql(&shipped.sql)
                .await
                .unwrap()
                .with_param_values(vec![(
                    "period_end",
                    ScalarValue::Date32(Some(crate::model::units::epoch_days(end))),
                )])
                .unwrap();
            ctx.register_table("merged", expected.into_view()).unwrap();
            let want = ctx.sql(sorted).await.unwrap().collect().await.unwrap();
            ctx.deregister_table("merged").unwrap();
            assert_eq!(
                datafusion::arrow::util::pretty::pretty_format_batches(&got)
                    .unwrap()
                    .to_string(),
                datafusion::arrow::util::pretty::pretty_format_batches(&want)
                    .unwrap()
                    .to_string(),
                "period ending {end}"
            );
        }
    }
}

//! From the job's orders to the `predictions` and `model_parameters` tables
//! of a period: the per-customer summary (`sql/predict/customer_summary.sql`),
//! the fits, each customer's scores, and the facts the manifest records.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, AsArray, Decimal128Array, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{Decimal128Type, Int64Type};
use datafusion::prelude::{DataFrame, SessionContext};

use super::PredictError;
use super::bgnbd::{self, Summary};
use super::gamma_gamma::{self, Spend};
use super::potential;
use crate::config::Predict;
use crate::model::PredictionFacts;
use crate::model::table_schema;
use crate::pipeline::Parameters;
use crate::storage::Warehouse;

const SUMMARY_SQL: &str = include_str!("../../sql/predict/customer_summary.sql");

/// Days in an average month (the CLV's step).
pub const DAYS_PER_MONTH: f64 = 365.25 / 12.0;

/// The two tables and the facts for the manifest.
#[derive(Debug, Clone)]
pub struct PredictionTables {
    pub predictions: RecordBatch,
    pub model_parameters: RecordBatch,
    pub facts: PredictionFacts,
}

/// One row of `model_parameters`.
struct ParameterRow {
    model: &'static str,
    parameter: String,
    value: f64,
    unit: Option<&'static str>,
    log_likelihood: Option<f64>,
    customers: i64,
    iterations: i64,
}

/// One customer's summary as read from SQL (days).
struct Row {
    customer_id: String,
    summary: Summary,
    repeat_value: Option<f64>,
}

/// Plan the per-customer summary over the job's orders step (registered as
/// `predict_orders`); a step without the columns it needs is a job error.
async fn plan_summary(
    ctx: &SessionContext,
    predict: &Predict,
    params: &Parameters,
) -> Result<DataFrame, PredictError> {
    let step_error = |source| PredictError::OrdersStep {
        step: predict.orders_step.clone(),
        source,
    };
    let view = "predict_orders";
    ctx.deregister_table(view).map_err(step_error)?;
    let orders = ctx
        .table(predict.orders_step.as_str())
        .await
        .map_err(step_error)?;
    ctx.register_table(view, orders.into_view())
        .map_err(step_error)?;
    crate::engine::plan_sql(ctx, SUMMARY_SQL, Some(params.values()))
        .await
        .map_err(step_error)
}

/// `segments validate`: the summary plans over the job's orders step.
pub async fn validate_summary(
    ctx: &SessionContext,
    predict: &Predict,
    params: &Parameters,
) -> Result<(), PredictError> {
    plan_summary(ctx, predict, params).await.map(|_| ())
}

async fn read_summary(
    ctx: &SessionContext,
    predict: &Predict,
    params: &Parameters,
) -> Result<Vec<Row>, PredictError> {
    let batches = plan_summary(ctx, predict, params)
        .await?
        .collect()
        .await
        .map_err(|source| PredictError::Query {
            context: "computing the per-customer summary (sql/predict/customer_summary.sql)".into(),
            source,
        })?;
    let unit = predict.time_unit.days();
    let mut rows = Vec::new();
    for batch in &batches {
        let ids = batch.column(0).as_string::<i32>();
        let x = batch.column(1).as_primitive::<Int64Type>();
        let t_x = batch.column(2).as_primitive::<Int64Type>();
        let t = batch.column(3).as_primitive::<Int64Type>();
        let total = batch.column(4).as_primitive::<Decimal128Type>();
        for i in 0..batch.num_rows() {
            rows.push(Row {
                customer_id: ids.value(i).to_string(),
                summary: Summary {
                    x: u32::try_from(x.value(i)).unwrap_or(u32::MAX),
                    t_x: t_x.value(i) as f64 / unit,
                    t: t.value(i) as f64 / unit,
                },
                // Exact cents / repeat days: the same average on every run.
                repeat_value: (!total.is_null(i) && x.value(i) > 0)
                    .then(|| total.value(i) as f64 / 100.0 / x.value(i) as f64),
            });
        }
    }
    // The SQL sorts, but batches of a parallel plan may come in any order.
    rows.sort_by(|a, b| a.customer_id.cmp(&b.customer_id));
    Ok(rows)
}

/// Money as Decimal(18,2) cents, rounded half away from zero; `None` when
/// not representable.
fn cents(value: f64) -> Option<i128> {
    let c = (value * 100.0).round();
    (c.is_finite() && c.abs() < 1e16).then_some(c as i128)
}

/// Fit the models on the period's customers and score every one of them.
pub async fn build_prediction_tables(
    ctx: &SessionContext,
    predict: &Predict,
    params: &Parameters,
    job_name: &str,
    rule_hash: &str,
    warehouse: &Warehouse,
    snapshot: Option<&RecordBatch>,
) -> Result<PredictionTables, PredictError> {
    let started = std::time::Instant::now();
    let rows = read_summary(ctx, predict, params).await?;
    let summary_ms = started.elapsed().as_millis() as u64;
    let started = std::time::Instant::now();
    let summaries: Vec<Summary> = rows.iter().map(|r| r.summary).collect();
    let purchase = bgnbd::fit(&summaries, predict.model)?;
    let spend_rows: Vec<Spend> = rows
        .iter()
        .filter_map(|r| match r.repeat_value {
            Some(v) if r.summary.x > 0 && v > 0.0 && v.is_finite() => Some(Spend {
                x: r.summary.x,
                mean_value: v,
            }),
            _ => None,
        })
        .collect();
    let spend = gamma_gamma::fit(&spend_rows)?;
    tracing::info!(
        model = predict.model.name(),
        customers = rows.len(),
        r = purchase.params.r,
        alpha = purchase.params.alpha,
        a = purchase.params.a,
        b = purchase.params.b,
        p = spend.params.p,
        q = spend.params.q,
        gamma = spend.params.gamma,
        summary_ms,
        fit_ms = started.elapsed().as_millis() as u64,
        "Fitted the predictive models."
    );
    let started = std::time::Instant::now();

    // Expected purchases month by month over the horizon (the CLV needs
    // each month's share); customers with the same summary share them.
    let month = DAYS_PER_MONTH / predict.time_unit.days();
    let horizon = predict.horizon_months as usize;
    let mut cache: HashMap<(u32, u64, u64), Vec<f64>> = HashMap::new();
    let mut p_alive = Vec::with_capacity(rows.len());
    let mut expected = Vec::with_capacity(rows.len());
    let mut aov = Vec::with_capacity(rows.len());
    let mut clv = Vec::with_capacity(rows.len());
    for row in &rows {
        let s = row.summary;
        let key = (s.x, s.t_x.to_bits(), s.t.to_bits());
        let cumulative = match cache.get(&key) {
            Some(c) => c,
            None => {
                let mut c = Vec::with_capacity(horizon);
                for m in 1..=horizon {
                    c.push(purchase.params.expected_purchases(&s, m as f64 * month)?);
                }
                cache.entry(key).or_insert(c)
            }
        };
        p_alive.push(purchase.params.p_alive(&s));
        expected.push(cumulative.last().copied().unwrap_or(0.0));
        let value = spend.params.expected_order_value(
            if row.repeat_value.is_some_and(|v| v > 0.0) {
                s.x
            } else {
                0
            },
            row.repeat_value.unwrap_or(0.0),
        );
        aov.push(value.and_then(cents));
        clv.push(value.and_then(|v| {
            let mut total = 0.0;
            let mut before = 0.0;
            for (m, &upto) in cumulative.iter().enumerate() {
                total +=
                    (upto - before) * v / (1.0 + predict.monthly_discount_rate).powi(m as i32 + 1);
                before = upto;
            }
            cents(total)
        }));
    }

    tracing::info!(
        customers = rows.len(),
        distinct_summaries = cache.len(),
        scoring_ms = started.elapsed().as_millis() as u64,
        "Scored the customers."
    );
    let (scores, potential_facts) = match &predict.potential {
        Some(settings) => {
            let (scores, facts) = potential::score(
                settings,
                predict,
                params,
                job_name,
                rule_hash,
                warehouse,
                snapshot,
                &rows_ids(&rows),
            )
            .await?;
            (scores, Some(facts))
        }
        None => (vec![None; rows.len()], None),
    };

    let contract = table_schema(crate::model::OutputTable::Predictions);
    let money = |values: Vec<Option<i128>>| {
        Arc::new(
            Decimal128Array::from(values)
                .with_precision_and_scale(18, 2)
                .expect("Decimal(18,2) is valid"),
        )
    };
    let predictions = RecordBatch::try_new(
        contract.schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.customer_id.as_str()),
            )),
            Arc::new(Float64Array::from(p_alive)),
            Arc::new(Float64Array::from(expected)),
            money(aov),
            money(clv),
            Arc::new(Float64Array::from(scores)),
        ],
    )
    .map_err(|e| PredictError::Query {
        context: "building the predictions table".into(),
        source: e.into(),
    })?;

    let p = purchase.params;
    let g = spend.params;
    let model = predict.model.name();
    let unit = predict.time_unit.name();
    let purchase_row = |parameter: &str, value: f64, unit: Option<&'static str>| ParameterRow {
        model,
        parameter: parameter.to_string(),
        value,
        unit,
        log_likelihood: Some(purchase.log_likelihood),
        customers: purchase.customers as i64,
        iterations: purchase.iterations as i64,
    };
    let spend_row = |parameter: &str, value: f64, unit: Option<&'static str>| ParameterRow {
        model: "gamma_gamma",
        parameter: parameter.to_string(),
        value,
        unit,
        log_likelihood: Some(spend.log_likelihood),
        customers: spend.customers as i64,
        iterations: spend.iterations as i64,
    };
    let mut parameters = vec![
        purchase_row("r", p.r, None),
        purchase_row("alpha", p.alpha, Some(unit)),
        purchase_row("a", p.a, None),
        purchase_row("b", p.b, None),
        spend_row("p", g.p, None),
        spend_row("q", g.q, None),
        spend_row("gamma", g.gamma, Some("currency")),
    ];
    if let Some(facts) = &potential_facts {
        for (parameter, value) in facts.parameter_rows() {
            parameters.push(ParameterRow {
                model: "potential",
                parameter,
                value,
                unit: None,
                log_likelihood: facts.log_likelihood,
                customers: facts.training_rows as i64,
                iterations: facts.iterations as i64,
            });
        }
    }
    let contract = table_schema(crate::model::OutputTable::ModelParameters);
    let model_parameters = RecordBatch::try_new(
        contract.schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(
                parameters.iter().map(|r| r.model),
            )),
            Arc::new(StringArray::from_iter_values(
                parameters.iter().map(|r| r.parameter.as_str()),
            )),
            Arc::new(Float64Array::from_iter_values(
                parameters.iter().map(|r| r.value),
            )),
            Arc::new(StringArray::from_iter(parameters.iter().map(|r| r.unit))),
            Arc::new(Float64Array::from_iter(
                parameters.iter().map(|r| r.log_likelihood),
            )),
            Arc::new(Int64Array::from_iter_values(
                parameters.iter().map(|r| r.customers),
            )),
            Arc::new(Int64Array::from_iter_values(
                parameters.iter().map(|r| r.iterations),
            )),
        ],
    )
    .map_err(|e| PredictError::Query {
        context: "building the model_parameters table".into(),
        source: e.into(),
    })?;

    let facts = PredictionFacts {
        model: model.to_string(),
        time_unit: unit.to_string(),
        horizon_months: predict.horizon_months,
        monthly_discount_rate: predict.monthly_discount_rate,
        customers: rows.len() as u64,
        purchase_model: BTreeMap::from([
            ("r".to_string(), p.r),
            ("alpha".to_string(), p.alpha),
            ("a".to_string(), p.a),
            ("b".to_string(), p.b),
            ("log_likelihood".to_string(), purchase.log_likelihood),
        ]),
        spend_model: BTreeMap::from([
            ("p".to_string(), g.p),
            ("q".to_string(), g.q),
            ("gamma".to_string(), g.gamma),
            ("log_likelihood".to_string(), spend.log_likelihood),
            ("customers".to_string(), spend.customers as f64),
        ]),
        potential: potential_facts,
    };
    Ok(PredictionTables {
        predictions,
        model_parameters,
        facts,
    })
}

fn rows_ids(rows: &[Row]) -> Vec<&str> {
    rows.iter().map(|r| r.customer_id.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Manifests written before a field existed still read (a manifest that
    /// does not read makes the period look corrupt).
    #[test]
    fn facts_read_with_missing_fields() {
        let facts: PredictionFacts =
            serde_json::from_str(r#"{"model": "bgnbd", "potential": {"held_out_auc": 0.9}}"#)
                .unwrap();
        assert_eq!(facts.model, "bgnbd");
        assert_eq!(facts.potential.unwrap().held_out_auc, Some(0.9));
    }

    #[test]
    fn money_rounds_half_away_from_zero() {
        assert_eq!(cents(1.005_000_1), Some(101));
        assert_eq!(cents(2.5 / 100.0), Some(3));
        assert_eq!(cents(f64::INFINITY), None);
    }
}

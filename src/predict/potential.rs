//! The potential score: the probability that a customer is in one of the
//! job's target segments (e.g. champions or loyal) `horizon` months after the
//! period's end, by a logistic regression learnt from earlier periods.
//!
//! Training examples are (customer, earlier period P′) pairs where both P′
//! and P′ + horizon are known with the same rules: the published snapshot
//! of P′ gives the features, the snapshot of P′ + horizon (published, or
//! the one this run just built when P′ + horizon is the current period)
//! gives the label. A customer absent from the later snapshot counts as not
//! in the target. Features, standardised on the training rows:
//! ln(1 + recency_days), ln(1 + frequency), the signed ln(1 + |monetary|),
//! ln(1 + tenure days), and whether the customer is in the target now.
//!
//! The fit is Newton's method (IRLS) with a small ridge penalty, which keeps
//! the coefficients finite when a feature separates the classes. A fixed 20%
//! of customers (by a hash of their id, so the same customer is always on the
//! same side) is held out; the AUC on them is published in the manifest and
//! in `model_parameters`, and the model fitted on the other 80% scores the
//! current period. Beyond about a million customer-periods, the same hash
//! keeps a fixed sample of customers.

use std::collections::{BTreeMap, HashMap};

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Date32Type, Decimal128Type, Int32Type, Int64Type};

use super::PredictError;
use crate::config::{Potential, Predict};
use crate::model::{Period, PotentialFacts};
use crate::pipeline::Parameters;
use crate::storage::Warehouse;

/// Feature names, in the order of the coefficients after the intercept.
pub const FEATURES: [&str; 5] = [
    "ln_recency_days",
    "ln_frequency",
    "signed_ln_monetary",
    "ln_tenure_days",
    "in_target_now",
];
const RIDGE: f64 = 1e-3;
const HOLD_OUT_PERCENT: u64 = 20;
/// Rows (customer × period) kept for training and hold-out at most, about:
/// beyond that the same customers are sampled in every period, which keeps
/// a large customer base's fit in memory and in seconds.
const MAX_ROWS: u64 = 1_000_000;

impl PotentialFacts {
    /// Rows of `model_parameters`: coefficients and the held-out AUC.
    pub fn parameter_rows(&self) -> Vec<(String, f64)> {
        let mut rows: Vec<(String, f64)> = self
            .coefficients
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        if let Some(auc) = self.held_out_auc {
            rows.push(("held_out_auc".into(), auc));
        }
        rows
    }
}

/// One customer's features in a snapshot.
struct Features {
    values: [f64; 5],
}

/// customer_id → (features, segment) of a snapshot.
fn snapshot_features(
    batches: &[RecordBatch],
    targets: &[String],
) -> HashMap<String, (Features, String)> {
    let mut out = HashMap::new();
    for batch in batches {
        let schema = batch.schema();
        let column = |name: &str| schema.index_of(name).ok().map(|i| batch.column(i));
        let (
            Some(ids),
            Some(as_of),
            Some(segment),
            Some(recency),
            Some(frequency),
            Some(monetary),
            Some(first),
        ) = (
            column("customer_id"),
            column("as_of_date"),
            column("segment"),
            column("recency_days"),
            column("frequency"),
            column("monetary"),
            column("first_purchase_date"),
        )
        else {
            continue;
        };
        let ids = ids.as_string::<i32>();
        let as_of = as_of.as_primitive::<Date32Type>();
        let segment = segment.as_string::<i32>();
        let recency = recency.as_primitive::<Int32Type>();
        let frequency = frequency.as_primitive::<Int64Type>();
        let monetary = monetary.as_primitive::<Decimal128Type>();
        let first = first.as_primitive::<Date32Type>();
        for i in 0..batch.num_rows() {
            let get = |a: &dyn Array, v: f64| if a.is_null(i) { None } else { Some(v) };
            let r = get(recency, f64::from(recency.value(i)))
                .unwrap_or(0.0)
                .max(0.0);
            let f = get(frequency, frequency.value(i) as f64)
                .unwrap_or(0.0)
                .max(0.0);
            let m = get(monetary, monetary.value(i) as f64 / 100.0).unwrap_or(0.0);
            let tenure = if as_of.is_null(i) || first.is_null(i) {
                0.0
            } else {
                f64::from((as_of.value(i) - first.value(i)).max(0))
            };
            let name = segment.value(i).to_string();
            let in_target = if targets.contains(&name) { 1.0 } else { 0.0 };
            out.insert(
                ids.value(i).to_string(),
                (
                    Features {
                        values: [
                            r.ln_1p(),
                            f.ln_1p(),
                            m.signum() * m.abs().ln_1p(),
                            tenure.ln_1p(),
                            in_target,
                        ],
                    },
                    name,
                ),
            );
        }
    }
    out
}

/// FNV-1a of a customer id: a stable hash, so the held-out (and sampled)
/// customers never change from run to run.
fn id_hash(customer_id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in customer_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn held_out(hash: u64) -> bool {
    hash % 100 < HOLD_OUT_PERCENT
}

/// Whether a customer is in the training sample when only `per_mille` ‰ of
/// the customers are kept (independent of the hold-out draw).
fn sampled(hash: u64, per_mille: u64) -> bool {
    (hash / 100) % 1000 < per_mille
}

/// A fitted logistic regression on standardised features.
#[derive(Debug, Clone)]
pub struct Logistic {
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
    /// Intercept first.
    pub beta: Vec<f64>,
    pub log_likelihood: f64,
    pub iterations: usize,
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Solve `a x = b` (small, symmetric positive definite with the ridge) by
/// Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let pivot_row = a[col].clone();
        for row in col + 1..n {
            let factor = a[row][col] / pivot_row[col];
            for (v, p) in a[row].iter_mut().zip(&pivot_row).skip(col) {
                *v -= factor * p;
            }
            b[row] -= factor * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let tail: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - tail) / a[row][row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

impl Logistic {
    /// Fit by Newton's method with a ridge penalty (not on the intercept).
    pub fn fit(x: &[Vec<f64>], y: &[bool]) -> Result<Logistic, PredictError> {
        let d = x.first().map_or(0, Vec::len);
        let n = x.len() as f64;
        let mut mean = vec![0.0; d];
        let mut scale = vec![0.0; d];
        for row in x {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += v / n;
            }
        }
        for row in x {
            for j in 0..d {
                scale[j] += (row[j] - mean[j]).powi(2) / n;
            }
        }
        for s in &mut scale {
            // A constant feature gets scale 1 (and a coefficient near 0).
            *s = if *s > 1e-12 { s.sqrt() } else { 1.0 };
        }
        let z: Vec<Vec<f64>> = x
            .iter()
            .map(|row| {
                std::iter::once(1.0)
                    .chain((0..d).map(|j| (row[j] - mean[j]) / scale[j]))
                    .collect()
            })
            .collect();
        let k = d + 1;
        let mut beta = vec![0.0; k];
        for iteration in 1..=100 {
            let mut gradient = vec![0.0; k];
            let mut hessian = vec![vec![0.0; k]; k];
            for (row, &label) in z.iter().zip(y) {
                let p = sigmoid(row.iter().zip(&beta).map(|(a, b)| a * b).sum());
                let residual = f64::from(u8::from(label)) - p;
                let w = p * (1.0 - p);
                for i in 0..k {
                    gradient[i] += residual * row[i];
                    for (h, r) in hessian[i].iter_mut().zip(row) {
                        *h += w * row[i] * r;
                    }
                }
            }
            for i in 1..k {
                gradient[i] -= RIDGE * n * beta[i];
                hessian[i][i] += RIDGE * n;
            }
            let step = solve(hessian, gradient).ok_or(PredictError::NotConverged {
                model: "potential (logistic regression)",
                iterations: iteration,
                gradient: f64::NAN,
            })?;
            for (b, s) in beta.iter_mut().zip(&step) {
                *b += s;
            }
            if step.iter().all(|s| s.abs() < 1e-9) {
                let mut model = Logistic {
                    mean,
                    scale,
                    beta,
                    log_likelihood: 0.0,
                    iterations: iteration,
                };
                model.log_likelihood = x
                    .iter()
                    .zip(y)
                    .map(|(row, &label)| {
                        let p = model.predict(row).clamp(1e-300, 1.0 - 1e-16);
                        if label { p.ln() } else { (1.0 - p).ln() }
                    })
                    .sum();
                return Ok(model);
            }
        }
        Err(PredictError::NotConverged {
            model: "potential (logistic regression)",
            iterations: 100,
            gradient: f64::NAN,
        })
    }

    /// P(y = 1 | features).
    pub fn predict(&self, row: &[f64]) -> f64 {
        let z = self.beta[0]
            + row
                .iter()
                .enumerate()
                .map(|(j, v)| self.beta[j + 1] * (v - self.mean[j]) / self.scale[j])
                .sum::<f64>();
        sigmoid(z)
    }
}

/// Area under the ROC curve (Mann-Whitney, ties counted half); `None` with
/// one class only.
pub fn auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let mut pairs: Vec<(f64, bool)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let positives = labels.iter().filter(|l| **l).count() as f64;
    let negatives = labels.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    // Sum of the positives' (average) ranks.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j < pairs.len() && pairs[j].0 == pairs[i].0 {
            j += 1;
        }
        let average = (i + 1 + j) as f64 / 2.0;
        rank_sum += average * pairs[i..j].iter().filter(|p| p.1).count() as f64;
        i = j;
    }
    Some((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
}

/// Score the current customers (`ids`, sorted) from their current snapshot.
#[allow(clippy::too_many_arguments)]
pub async fn score(
    settings: &Potential,
    predict: &Predict,
    params: &Parameters,
    job_name: &str,
    rule_hash: &str,
    warehouse: &Warehouse,
    snapshot: Option<&RecordBatch>,
    ids: &[&str],
) -> Result<(Vec<Option<f64>>, PotentialFacts), PredictError> {
    let horizon = settings.horizon_months.unwrap_or(predict.horizon_months);
    let targets = &settings.target_segments;
    let mut facts = PotentialFacts {
        target_segments: targets.clone(),
        horizon_months: horizon,
        feature_periods: Vec::new(),
        training_rows: 0,
        held_out_rows: 0,
        sampled_per_mille: 1000,
        held_out_auc: None,
        base_rate: None,
        log_likelihood: None,
        iterations: 0,
        coefficients: BTreeMap::new(),
        no_score_reason: None,
    };
    let none = vec![None; ids.len()];
    let Some(snapshot) = snapshot else {
        facts.no_score_reason = Some("the job does not write `snapshots`".into());
        return Ok((none, facts));
    };
    let current = snapshot_features(std::slice::from_ref(snapshot), targets);
    let publish_error = |context: String| move |source| PredictError::Publish { context, source };
    // A snapshot usable as training data: published with the same rules.
    let read = |period: Period| async move {
        match crate::warehouse::publish::published_manifest(warehouse, job_name, period)
            .await
            .map_err(publish_error(format!("reading the manifest of {period}")))?
        {
            Some(m) if m.rule_hash == rule_hash => {
                crate::warehouse::publish::read_table(warehouse, job_name, "snapshots", period)
                    .await
                    .map_err(publish_error(format!("reading the snapshot of {period}")))
            }
            _ => Ok(None),
        }
    };
    let mut train_x = Vec::new();
    let mut train_y = Vec::new();
    let mut test_x = Vec::new();
    let mut test_y = Vec::new();
    let mut label_period = params.period;
    let expected_rows = current.len() as u64 * u64::from(settings.training_periods);
    let per_mille = if expected_rows > MAX_ROWS {
        (MAX_ROWS * 1000 / expected_rows).max(1)
    } else {
        1000
    };
    facts.sampled_per_mille = per_mille;
    for _ in 0..settings.training_periods {
        let feature_period = (0..horizon).fold(label_period, |p, _| p.previous());
        let labels = if label_period == params.period {
            Some(current_segments(&current))
        } else {
            read(label_period).await?.map(|b| {
                snapshot_features(&b, targets)
                    .into_iter()
                    .map(|(id, (_, segment))| (id, segment))
                    .collect()
            })
        };
        let features = read(feature_period).await?;
        label_period = label_period.previous();
        let (Some(labels), Some(features)) = (labels, features) else {
            continue;
        };
        facts.feature_periods.push(feature_period.to_string());
        let features = snapshot_features(&features, targets);
        let mut ordered: Vec<_> = features.into_iter().collect();
        ordered.sort_by(|a, b| a.0.cmp(&b.0));
        for (id, (f, _)) in ordered {
            let hash = id_hash(&id);
            if !sampled(hash, per_mille) {
                continue;
            }
            let label = labels.get(&id).is_some_and(|s| targets.contains(s));
            if held_out(hash) {
                test_x.push(f.values.to_vec());
                test_y.push(label);
            } else {
                train_x.push(f.values.to_vec());
                train_y.push(label);
            }
        }
    }
    facts.training_rows = train_x.len() as u64;
    facts.held_out_rows = test_x.len() as u64;
    let positives = train_y.iter().filter(|y| **y).count();
    if !train_y.is_empty() {
        facts.base_rate = Some(positives as f64 / train_y.len() as f64);
    }
    if positives == 0 || positives == train_y.len() {
        facts.no_score_reason = Some(if facts.feature_periods.is_empty() {
            format!(
                "no training data: needs a snapshot published with the same rules {horizon} month(s) before a known one (e.g. {} and {}); backfill earlier periods",
                (0..horizon).fold(params.period, |p, _| p.previous()),
                params.period
            )
        } else {
            "the training rows are all in the target or all out of it".into()
        });
        return Ok((none, facts));
    }
    let model = Logistic::fit(&train_x, &train_y)?;
    facts.held_out_auc = auc(
        &test_x.iter().map(|x| model.predict(x)).collect::<Vec<_>>(),
        &test_y,
    );
    facts.log_likelihood = Some(model.log_likelihood);
    facts.iterations = model.iterations as u64;
    facts.coefficients.insert("intercept".into(), model.beta[0]);
    for (name, b) in FEATURES.iter().zip(&model.beta[1..]) {
        facts.coefficients.insert((*name).to_string(), *b);
    }
    let scores = ids
        .iter()
        .map(|id| current.get(*id).map(|(f, _)| model.predict(&f.values)))
        .collect();
    Ok((scores, facts))
}

fn current_segments(current: &HashMap<String, (Features, String)>) -> HashMap<String, String> {
    current
        .iter()
        .map(|(id, (_, segment))| (id.clone(), segment.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_pairs() {
        assert_eq!(
            auc(&[0.1, 0.2, 0.3, 0.4], &[false, false, true, true]),
            Some(1.0)
        );
        assert_eq!(
            auc(&[0.4, 0.3, 0.2, 0.1], &[false, false, true, true]),
            Some(0.0)
        );
        assert_eq!(auc(&[0.5, 0.5], &[false, true]), Some(0.5));
        // 1 positive above 2 of 3 negatives, the other above all 3: 5/6.
        let got = auc(
            &[0.1, 0.2, 0.25, 0.3, 0.9],
            &[false, false, true, false, true],
        )
        .unwrap();
        assert!((got - 5.0 / 6.0).abs() < 1e-12);
        assert_eq!(auc(&[0.1], &[true]), None);
    }

    #[test]
    fn logistic_recovers_a_known_model() {
        // y ~ Bernoulli(sigmoid(-1 + 2 x)), x uniform on a grid; the MLE
        // (with a tiny ridge) is close to the truth on 20,000 rows.
        let mut x = Vec::new();
        let mut y = Vec::new();
        let mut state: u64 = 42;
        for i in 0..20_000 {
            let v = (i % 200) as f64 / 100.0 - 1.0;
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            x.push(vec![v]);
            y.push(u < sigmoid(-1.0 + 2.0 * v));
        }
        let m = Logistic::fit(&x, &y).unwrap();
        // Back to the raw scale: slope = beta1 / scale, intercept = beta0 − slope·mean.
        let slope = m.beta[1] / m.scale[0];
        let intercept = m.beta[0] - slope * m.mean[0];
        assert!((slope - 2.0).abs() < 0.15, "{slope}");
        assert!((intercept + 1.0).abs() < 0.1, "{intercept}");
        assert!(m.log_likelihood < 0.0);
    }

    #[test]
    fn separable_data_stays_finite() {
        let x: Vec<Vec<f64>> = (0..100).map(|i| vec![i as f64]).collect();
        let y: Vec<bool> = (0..100).map(|i| i >= 50).collect();
        let m = Logistic::fit(&x, &y).unwrap();
        assert!(m.beta.iter().all(|b| b.is_finite()));
        assert!(m.predict(&[99.0]) > 0.9 && m.predict(&[0.0]) < 0.1);
    }
}

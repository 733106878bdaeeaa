//! The job's optional `predict:` block: predictive scores published with
//! every snapshot (see `crate::predict`).
//!
//! ```yaml
//! predict:
//!   model: bgnbd                 # bgnbd (default) | mbgnbd
//!   time_unit: weeks             # days | weeks (default): the unit of the fitted α
//!   horizon_months: 12           # expected purchases and CLV over this horizon
//!   monthly_discount_rate: 0.01  # CLV discount per month
//!   orders_step: orders          # the step with one row per order (default `orders`)
//!   potential:                   # optional: the potential score
//!     target_segments: [champions, loyal]
//!     horizon_months: 3          # months ahead (default: the block's horizon_months)
//!     training_periods: 6        # earlier periods to learn from (default 6)
//! ```

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::Problem;
use super::yaml;
use crate::model::Variant;

/// The job's `predict:` block.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PredictFile {
    /// The purchase model: BG/NBD or its MBG/NBD variant.
    #[serde(default)]
    model: ModelFile,
    /// The unit of time of the fit (and of the fitted α).
    #[serde(default)]
    time_unit: TimeUnit,
    /// Expected purchases and CLV over this many months.
    #[serde(default = "default_horizon")]
    horizon_months: u32,
    /// CLV discount per month.
    #[serde(default = "default_discount")]
    monthly_discount_rate: f64,
    /// The step with one row per order.
    #[serde(default = "default_orders_step")]
    orders_step: String,
    /// The potential score: the chance of being in a target segment later.
    #[serde(default)]
    potential: Option<PotentialFile>,
}

/// `predict.potential`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct PotentialFile {
    /// The segments a customer may reach.
    target_segments: Vec<String>,
    /// Months ahead; default: the block's `horizon_months`.
    #[serde(default)]
    horizon_months: Option<u32>,
    /// Earlier published periods to learn from.
    #[serde(default = "default_training_periods")]
    training_periods: u32,
}

fn default_horizon() -> u32 {
    12
}
fn default_discount() -> f64 {
    0.01
}
fn default_orders_step() -> String {
    "orders".into()
}
fn default_training_periods() -> u32 {
    6
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum ModelFile {
    #[default]
    Bgnbd,
    Mbgnbd,
}

/// The unit of time of the per-customer summary (and of the fitted α).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimeUnit {
    Days,
    #[default]
    Weeks,
}

impl TimeUnit {
    /// Days per unit.
    pub fn days(self) -> f64 {
        match self {
            TimeUnit::Days => 1.0,
            TimeUnit::Weeks => 7.0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TimeUnit::Days => "days",
            TimeUnit::Weeks => "weeks",
        }
    }
}

/// A checked `predict:` block.
#[derive(Debug, Clone, PartialEq)]
pub struct Predict {
    pub model: Variant,
    pub time_unit: TimeUnit,
    pub horizon_months: u32,
    pub monthly_discount_rate: f64,
    pub orders_step: String,
    pub potential: Option<Potential>,
}

/// The potential score's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Potential {
    pub target_segments: Vec<String>,
    /// Months ahead the target is predicted; the block's `horizon_months`
    /// when absent.
    pub horizon_months: Option<u32>,
    pub training_periods: u32,
}

/// Check the `predict:` block against the job's steps and segments; every
/// problem with its line.
pub(super) fn check(
    path: &Path,
    text: &str,
    file: Option<&PredictFile>,
    steps: &[String],
    segments: &[String],
) -> (Option<Predict>, Vec<Problem>) {
    let Some(file) = file else {
        return (None, Vec::new());
    };
    let predict_line = yaml::line_of(text, "predict:", 1);
    let mut problems = Vec::new();
    let mut problem = |key: &str, needle: &str, message: String| {
        let line = predict_line.and_then(|from| yaml::line_of(text, needle, from).or(Some(from)));
        problems.push(Problem {
            file: path.to_path_buf(),
            key: key.to_string(),
            line,
            column: None,
            message,
        });
    };
    if !(1..=120).contains(&file.horizon_months) {
        problem(
            "predict.horizon_months",
            "horizon_months:",
            format!(
                "{} is out of range: the horizon is 1 to 120 months",
                file.horizon_months
            ),
        );
    }
    if !(file.monthly_discount_rate.is_finite() && (0.0..1.0).contains(&file.monthly_discount_rate))
    {
        problem(
            "predict.monthly_discount_rate",
            "monthly_discount_rate:",
            format!(
                "{} is out of range: a monthly discount rate is at least 0 and below 1 (e.g. 0.01 for 1% a month)",
                file.monthly_discount_rate
            ),
        );
    }
    if !steps.contains(&file.orders_step) {
        problem(
            "predict.orders_step",
            if file.orders_step == default_orders_step() {
                "predict:"
            } else {
                "orders_step:"
            },
            format!(
                "no step named '{}': the predictions read one row per order (customer_id, order_date, amount) from it; steps are {}",
                file.orders_step,
                steps.join(", ")
            ),
        );
    }
    let potential = file.potential.as_ref().map(|p| {
        if p.target_segments.is_empty() {
            problem(
                "predict.potential.target_segments",
                "target_segments:",
                "name at least one segment, e.g. `target_segments: [champions, loyal]`".into(),
            );
        }
        for (index, name) in p.target_segments.iter().enumerate() {
            if !segments.contains(name) {
                problem(
                    &format!("predict.potential.target_segments[{index}]"),
                    "target_segments:",
                    format!(
                        "'{name}' is not a declared segment; segments are {}",
                        segments.join(", ")
                    ),
                );
            }
        }
        if !(1..=60).contains(&p.training_periods) {
            problem(
                "predict.potential.training_periods",
                "training_periods:",
                format!(
                    "{} is out of range: learn from 1 to 60 earlier periods",
                    p.training_periods
                ),
            );
        }
        if let Some(h) = p.horizon_months
            && !(1..=60).contains(&h)
        {
            problem(
                "predict.potential.horizon_months",
                "horizon_months:",
                format!("{h} is out of range: predict 1 to 60 months ahead"),
            );
        }
        let mut target_segments = p.target_segments.clone();
        target_segments.sort();
        target_segments.dedup();
        Potential {
            target_segments,
            horizon_months: p.horizon_months,
            training_periods: p.training_periods,
        }
    });
    let predict = Predict {
        model: match file.model {
            ModelFile::Bgnbd => Variant::BgNbd,
            ModelFile::Mbgnbd => Variant::Modified,
        },
        time_unit: file.time_unit,
        horizon_months: file.horizon_months,
        monthly_discount_rate: file.monthly_discount_rate,
        orders_step: file.orders_step.clone(),
        potential,
    };
    (Some(predict), problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_their_line() {
        let text = "name: x\npredict:\n  horizon_months: 0\n  monthly_discount_rate: 1.5\n  potential:\n    target_segments: [champions, vips]\n";
        let file: PredictFile = serde_yaml_ng::from_str(
            "horizon_months: 0\nmonthly_discount_rate: 1.5\npotential:\n  target_segments: [champions, vips]\n",
        )
        .unwrap();
        let (_, problems) = check(
            Path::new("j.yaml"),
            text,
            Some(&file),
            &["orders".into()],
            &["champions".into(), "lost".into()],
        );
        let found: Vec<(&str, Option<usize>)> =
            problems.iter().map(|p| (p.key.as_str(), p.line)).collect();
        assert_eq!(
            found,
            [
                ("predict.horizon_months", Some(3)),
                ("predict.monthly_discount_rate", Some(4)),
                ("predict.potential.target_segments[1]", Some(6)),
            ]
        );
        assert!(problems[2].message.contains("segments are champions, lost"));
    }

    #[test]
    fn defaults() {
        let file: PredictFile = serde_yaml_ng::from_str("{}").unwrap();
        let (predict, problems) = check(
            Path::new("j.yaml"),
            "predict: {}\n",
            Some(&file),
            &["orders".into()],
            &[],
        );
        assert!(problems.is_empty());
        let predict = predict.unwrap();
        assert_eq!(predict.model, Variant::BgNbd);
        assert_eq!(predict.time_unit, TimeUnit::Weeks);
        assert_eq!(predict.horizon_months, 12);
        assert_eq!(predict.potential, None);
    }
}

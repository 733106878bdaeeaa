//! The job's `scoring:` block: quantile scores (the default, computed by the
//! job's SQL) or fixed cut points per metric (docs/design.md §3), which replace the
//! classified step's `r_score`, `f_score` and `m_score`.
//!
//! ```yaml
//! scoring:
//!   mode: fixed
//!   recency_days: [180, 90, 30, 7]   # R = 2 at ≤ 180 days, 3 at ≤ 90, 4 at ≤ 30, 5 at ≤ 7
//!   frequency: [2, 3, 5, 8]          # F = 2 from 2 purchases, 3 from 3, 4 from 5, 5 from 8
//!   monetary: [50, 100, 250, 1000]   # M = 2 from 50.00, 3 from 100.00, …
//! ```
//!
//! Each list gives where scores 2, 3, 4 and 5 start, so the bands cannot
//! overlap: lists out of order are refused with their line.

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::Problem;
use super::yaml;
use crate::model::units::decimal_cents as money;

/// The job's `scoring:` block. Each list gives where scores 2, 3, 4 and 5
/// start.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ScoringFile {
    /// `quantiles`: scores from the job's SQL; `fixed`: the cut points below.
    mode: ScoringMode,
    /// `mode: fixed`: four strictly decreasing day counts; R = 2 at most the
    /// first, … R = 5 at most the last.
    #[serde(default)]
    #[schemars(length(equal = 4))]
    recency_days: Option<Vec<i64>>,
    /// `mode: fixed`: four strictly increasing purchase counts, from 2.
    #[serde(default)]
    #[schemars(length(equal = 4))]
    frequency: Option<Vec<i64>>,
    /// `mode: fixed`: four strictly increasing amounts (cents allowed).
    #[serde(default)]
    #[schemars(length(equal = 4))]
    monetary: Option<Vec<f64>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum ScoringMode {
    Quantiles,
    Fixed,
}

/// How a job scores its active customers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Scoring {
    /// Tie-consistent quantiles, computed by the job's SQL (`sql/rfm_scores.sql`).
    #[default]
    Quantiles,
    /// Fixed cut points; the classifier computes the scores.
    Fixed(FixedBands),
}

/// Where scores 2, 3, 4 and 5 start, per metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedBands {
    /// Strictly decreasing: R = k + 2 at most `recency_days[k]` days.
    pub recency_days: [i64; 4],
    /// Strictly increasing, from 2: F = k + 2 from `frequency[k]` purchases.
    pub frequency: [i64; 4],
    /// Strictly increasing, in cents: M = k + 2 from `monetary_cents[k]`.
    pub monetary_cents: [i128; 4],
}

/// One configured band, as a row of `score_thresholds`: the values of
/// `metric` that get `score`, both ends included; `None` is an open end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Band {
    pub metric: &'static str,
    pub score: i8,
    pub min_value: Option<String>,
    pub max_value: Option<String>,
}

impl Band {
    fn new(
        metric: &'static str,
        score: i8,
        min_value: Option<String>,
        max_value: Option<String>,
    ) -> Self {
        Band {
            metric,
            score,
            min_value,
            max_value,
        }
    }
}

impl Scoring {
    /// What the rule hash covers.
    pub fn hash_material(&self) -> String {
        match self {
            Scoring::Quantiles => "quantiles".into(),
            Scoring::Fixed(b) => format!(
                "fixed r{:?} f{:?} m{:?}",
                b.recency_days, b.frequency, b.monetary_cents
            ),
        }
    }
}

impl FixedBands {
    /// SQL expressions (over the classified step) of r_score, f_score,
    /// m_score and rfm_code; null for customers without a purchase in the
    /// window. Built from validated numbers only.
    pub fn score_expressions(&self) -> [(&'static str, String); 4] {
        let case = |conditions: Vec<String>| {
            let mut sql = String::from("CASE WHEN frequency > 0 THEN CAST(CASE");
            for (index, condition) in conditions.iter().enumerate().rev() {
                sql.push_str(&format!(" WHEN {condition} THEN {}", index + 2));
            }
            sql.push_str(" ELSE 1 END AS TINYINT) END");
            sql
        };
        [
            (
                "r_score",
                case(
                    self.recency_days
                        .iter()
                        .map(|d| format!("recency_days <= {d}"))
                        .collect(),
                ),
            ),
            (
                "f_score",
                case(
                    self.frequency
                        .iter()
                        .map(|n| format!("frequency >= {n}"))
                        .collect(),
                ),
            ),
            (
                "m_score",
                case(
                    self.monetary_cents
                        .iter()
                        .map(|c| format!("monetary >= CAST('{}' AS DECIMAL(18, 2))", money(*c)))
                        .collect(),
                ),
            ),
            (
                "rfm_code",
                "CASE WHEN frequency > 0 THEN CAST(r_score AS VARCHAR) || CAST(f_score AS VARCHAR) || CAST(m_score AS VARCHAR) END".into(),
            ),
        ]
    }

    /// The 15 configured bands, as `score_thresholds` publishes them: the
    /// values each score covers, both ends included.
    pub fn bands(&self) -> Vec<Band> {
        let mut out = Vec::new();
        // Recency: R = 1 above the first cut point, R = 5 from 0 days.
        let r = &self.recency_days;
        out.push(Band::new("recency", 1, Some((r[0] + 1).to_string()), None));
        for k in 0..4 {
            let min = if k == 3 { 0 } else { r[k + 1] + 1 };
            out.push(Band::new(
                "recency",
                k as i8 + 2,
                Some(min.to_string()),
                Some(r[k].to_string()),
            ));
        }
        // Frequency: F = 1 is one purchase (scored customers have one at least).
        let f = &self.frequency;
        out.push(Band::new(
            "frequency",
            1,
            Some("1".into()),
            Some((f[0] - 1).to_string()),
        ));
        for k in 0..4 {
            out.push(Band::new(
                "frequency",
                k as i8 + 2,
                Some(f[k].to_string()),
                (k < 3).then(|| (f[k + 1] - 1).to_string()),
            ));
        }
        // Monetary may be ≤ 0: M = 1 is open below.
        let m = &self.monetary_cents;
        out.push(Band::new("monetary", 1, None, Some(money(m[0] - 1))));
        for k in 0..4 {
            out.push(Band::new(
                "monetary",
                k as i8 + 2,
                Some(money(m[k])),
                (k < 3).then(|| money(m[k + 1] - 1)),
            ));
        }
        out
    }
}

/// Check the `scoring:` block; every problem with its line.
pub(super) fn check(
    path: &Path,
    text: &str,
    file: Option<&ScoringFile>,
) -> (Scoring, Vec<Problem>) {
    let Some(file) = file else {
        return (Scoring::Quantiles, Vec::new());
    };
    let scoring_line = yaml::line_of(text, "scoring:", 1);
    let mut problems = Vec::new();
    let mut problem = |key: &str, message: String| {
        let line = scoring_line.and_then(|from| {
            key.strip_prefix("scoring.")
                .and_then(|k| yaml::line_of(text, &format!("{k}:"), from))
                .or(Some(from))
        });
        problems.push(Problem {
            file: path.to_path_buf(),
            key: key.to_string(),
            line,
            column: None,
            message,
        });
    };
    if file.mode == ScoringMode::Quantiles {
        for (key, given) in [
            ("scoring.recency_days", file.recency_days.is_some()),
            ("scoring.frequency", file.frequency.is_some()),
            ("scoring.monetary", file.monetary.is_some()),
        ] {
            if given {
                problem(
                    key,
                    "cut points are used only with `mode: fixed`; quantile scores come from the job's SQL".into(),
                );
            }
        }
        return (Scoring::Quantiles, problems);
    }

    let explain = |metric: &str| match metric {
        "recency_days" => {
            "e.g. `recency_days: [180, 90, 30, 7]`: R = 2 at 180 days or less, 3 at 90 or less, 4 at 30 or less, 5 at 7 or less"
        }
        "frequency" => {
            "e.g. `frequency: [2, 3, 5, 8]`: F = 2 from 2 purchases, 3 from 3, 4 from 5, 5 from 8"
        }
        _ => {
            "e.g. `monetary: [50, 100, 250, 1000]`: M = 2 from 50.00, 3 from 100.00, 4 from 250.00, 5 from 1000.00"
        }
    };
    let four = |key: &str, values: Option<usize>, problem: &mut dyn FnMut(&str, String)| {
        match values {
            None => {
                problem(
                    &format!("scoring.{key}"),
                    format!(
                        "`mode: fixed` needs 4 cut points for {key}, where scores 2, 3, 4 and 5 start ({})",
                        explain(key)
                    ),
                );
                false
            }
            Some(4) => true,
            Some(n) => {
                problem(
                    &format!("scoring.{key}"),
                    format!(
                        "give 4 cut points for {key}, where scores 2, 3, 4 and 5 start; found {n} ({})",
                        explain(key)
                    ),
                );
                false
            }
        }
    };
    let ordered = |key: &str,
                   letter: char,
                   values: &[String],
                   increasing: bool,
                   in_order: &dyn Fn(usize) -> bool,
                   problem: &mut dyn FnMut(&str, String)| {
        for k in 0..3 {
            if !in_order(k) {
                problem(
                    &format!("scoring.{key}"),
                    format!(
                        "score bands overlap: the cut points must {} strictly, but {} is followed by {}, so {letter} = {} would be empty ({})",
                        if increasing { "increase" } else { "decrease" },
                        values[k],
                        values[k + 1],
                        k + 2,
                        explain(key)
                    ),
                );
                return false;
            }
        }
        true
    };

    let mut valid = true;
    let recency = file.recency_days.clone().unwrap_or_default();
    if four(
        "recency_days",
        file.recency_days.as_ref().map(Vec::len),
        &mut problem,
    ) {
        let shown: Vec<String> = recency.iter().map(|v| v.to_string()).collect();
        valid &= ordered(
            "recency_days",
            'R',
            &shown,
            false,
            &|k| recency[k] > recency[k + 1],
            &mut problem,
        );
        if recency[3] < 0 {
            problem(
                "scoring.recency_days",
                format!(
                    "{} days: recency is never negative, so R = 5 would be empty",
                    recency[3]
                ),
            );
            valid = false;
        }
    } else {
        valid = false;
    }
    let frequency = file.frequency.clone().unwrap_or_default();
    if four(
        "frequency",
        file.frequency.as_ref().map(Vec::len),
        &mut problem,
    ) {
        let shown: Vec<String> = frequency.iter().map(|v| v.to_string()).collect();
        valid &= ordered(
            "frequency",
            'F',
            &shown,
            true,
            &|k| frequency[k] < frequency[k + 1],
            &mut problem,
        );
        if frequency[0] < 2 {
            problem(
                "scoring.frequency",
                format!(
                    "F = 2 cannot start at {}: every scored customer has 1 purchase at least, so F = 1 would be empty; start at 2 or more",
                    frequency[0]
                ),
            );
            valid = false;
        }
    } else {
        valid = false;
    }
    let mut monetary = [0i128; 4];
    if four(
        "monetary",
        file.monetary.as_ref().map(Vec::len),
        &mut problem,
    ) {
        let given = file.monetary.clone().unwrap_or_default();
        for (k, value) in given.iter().enumerate() {
            let cents = (value * 100.0).round();
            if !value.is_finite() || (cents - value * 100.0).abs() > 1e-6 || cents.abs() > 1e17 {
                problem(
                    "scoring.monetary",
                    format!("{value} is not an amount with at most 2 decimals"),
                );
                valid = false;
            } else {
                monetary[k] = cents as i128;
            }
        }
        let shown: Vec<String> = given.iter().map(|v| v.to_string()).collect();
        valid &= ordered(
            "monetary",
            'M',
            &shown,
            true,
            &|k| monetary[k] < monetary[k + 1],
            &mut problem,
        );
    } else {
        valid = false;
    }
    if !valid {
        return (Scoring::Quantiles, problems);
    }
    (
        Scoring::Fixed(FixedBands {
            recency_days: [recency[0], recency[1], recency[2], recency[3]],
            frequency: [frequency[0], frequency[1], frequency[2], frequency[3]],
            monetary_cents: monetary,
        }),
        problems,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bands() -> FixedBands {
        FixedBands {
            recency_days: [180, 90, 30, 7],
            frequency: [2, 3, 4, 6],
            monetary_cents: [3000, 5000, 10000, 50000],
        }
    }

    #[test]
    fn bands_cover_every_value_once() {
        let b = bands().bands();
        assert_eq!(b.len(), 15);
        let show = |metric: &str| -> Vec<(i8, Option<String>, Option<String>)> {
            b.iter()
                .filter(|x| x.metric == metric)
                .map(|x| (x.score, x.min_value.clone(), x.max_value.clone()))
                .collect()
        };
        let s = |t: &str| Some(t.to_string());
        assert_eq!(
            show("recency"),
            [
                (1, s("181"), None),
                (2, s("91"), s("180")),
                (3, s("31"), s("90")),
                (4, s("8"), s("30")),
                (5, s("0"), s("7")),
            ]
        );
        assert_eq!(
            show("frequency"),
            [
                (1, s("1"), s("1")),
                (2, s("2"), s("2")),
                (3, s("3"), s("3")),
                (4, s("4"), s("5")),
                (5, s("6"), None),
            ]
        );
        assert_eq!(
            show("monetary"),
            [
                (1, None, s("29.99")),
                (2, s("30.00"), s("49.99")),
                (3, s("50.00"), s("99.99")),
                (4, s("100.00"), s("499.99")),
                (5, s("500.00"), None),
            ]
        );
    }

    #[test]
    fn ill_ordered_bands_are_refused_with_their_line() {
        let text = "name: x\nscoring:\n  mode: fixed\n  recency_days: [180, 90, 30, 7]\n  frequency: [2, 5, 3, 8]\n  monetary: [10, 20, 30]\n";
        let file: ScoringFile = serde_yaml_ng::from_str(
            "mode: fixed\nrecency_days: [180, 90, 30, 7]\nfrequency: [2, 5, 3, 8]\nmonetary: [10, 20, 30]\n",
        )
        .unwrap();
        let (scoring, problems) = check(Path::new("j.yaml"), text, Some(&file));
        assert_eq!(scoring, Scoring::Quantiles);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(problems[0].key, "scoring.frequency");
        assert_eq!(problems[0].line, Some(5));
        assert!(
            problems[0]
                .message
                .contains("but 5 is followed by 3, so F = 3 would be empty")
        );
        assert_eq!(problems[1].line, Some(6));
        assert!(problems[1].message.contains("found 3"));
    }
}

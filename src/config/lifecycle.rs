//! The config's data-lifecycle sections: `readiness:` (is a period's input
//! complete enough to run? checked by `crate::inputs::readiness`) and
//! `retention:` (how long published periods are kept; applied by
//! `crate::warehouse::retention`).

use schemars::JsonSchema;
use serde::Deserialize;

/// The config's `readiness:` section; no check when absent.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadinessSettings {
    /// An upstream marker file, relative to the transactions URL, that must
    /// exist before a run, e.g. `month={period}/_SUCCESS` (exit 5 when it
    /// is missing).
    #[serde(default)]
    pub marker: Option<String>,
    /// Distinct dates with usable lines the period must have.
    #[serde(default)]
    pub min_days_with_data: Option<u32>,
    /// The period's usable lines must be at least this share of the
    /// previous period's (0.8 for 80%).
    #[serde(default)]
    pub min_rows_vs_previous: Option<f64>,
}

impl ReadinessSettings {
    /// Problems as (key, message).
    pub fn check(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if let Some(marker) = &self.marker {
            let relative = !marker.is_empty()
                && !marker.starts_with('/')
                && !marker.contains("://")
                && marker
                    .split('/')
                    .all(|part| !part.is_empty() && part != "..");
            if !relative {
                problems.push((
                    "readiness.marker".to_string(),
                    format!("'{marker}' must be a relative path under the transactions URL, e.g. month={{period}}/_SUCCESS"),
                ));
            }
        }
        if let Some(days) = self.min_days_with_data
            && !(1..=31).contains(&days)
        {
            problems.push((
                "readiness.min_days_with_data".to_string(),
                format!("{days} is not a number of days in a month (1 to 31)"),
            ));
        }
        if let Some(share) = self.min_rows_vs_previous
            && !(share.is_finite() && share >= 0.0)
        {
            problems.push((
                "readiness.min_rows_vs_previous".to_string(),
                format!("{share} is not a share: write e.g. 0.8 for 80%"),
            ));
        }
        problems
    }

    pub fn is_empty(&self) -> bool {
        self.marker.is_none()
            && self.min_days_with_data.is_none()
            && self.min_rows_vs_previous.is_none()
    }
}

/// The config's `retention:` section; nothing is deleted when absent.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// Months of published periods kept, counting the run's period: a run
    /// of P deletes the partitions and run folders of periods ≤ P − months.
    /// Everything is kept when absent.
    #[serde(default)]
    pub months: Option<u32>,
    /// Months of `rejects` kept (raw input rows); at most `months`. Deleted
    /// with their period when absent.
    #[serde(default)]
    pub rejects_months: Option<u32>,
}

impl RetentionSettings {
    /// Problems as (key, message).
    pub fn check(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        for (key, value) in [
            ("retention.months", self.months),
            ("retention.rejects_months", self.rejects_months),
        ] {
            if value == Some(0) {
                problems.push((
                    key.to_string(),
                    "must be at least 1 (the run's own period)".to_string(),
                ));
            }
        }
        if let (Some(months), Some(rejects)) = (self.months, self.rejects_months)
            && rejects > months
        {
            problems.push((
                "retention.rejects_months".to_string(),
                format!(
                    "{rejects} is more than retention.months {months}: rejects are deleted with their period"
                ),
            ));
        }
        problems
    }
}

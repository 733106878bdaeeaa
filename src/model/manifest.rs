//! What a published period records about itself (`_manifest.json` next to
//! `_SUCCESS`): row accounting, the input files read, the predictive models'
//! facts. Every layer that publishes or reads a period speaks these types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Row accounting of the transactions input: read = used + anonymous + rejected.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RowCounts {
    pub read: u64,
    pub used: u64,
    pub anonymous: u64,
    pub rejected: u64,
}

/// Where a period's migrations came from: what its "from" side is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FromSide {
    /// The previous period's published snapshot, reused (same rules).
    Published,
    /// The previous period recomputed with the current rules.
    Reclassified,
    /// No "from" side (an audiences job).
    None,
}

impl FromSide {
    pub fn as_str(self) -> &'static str {
        match self {
            FromSide::Published => "published",
            FromSide::Reclassified => "reclassified",
            FromSide::None => "none",
        }
    }
}

impl std::fmt::Display for FromSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Run facts written next to `_SUCCESS`. Holds no secrets: URLs are the
/// configured ones with `${VAR}`s already resolved only in paths, never keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub run_id: String,
    pub job: String,
    pub period: String,
    pub job_hash: String,
    pub rule_hash: String,
    pub published_at: String,
    pub from_side: FromSide,
    pub from_side_reason: String,
    pub rows: RowCounts,
    /// Rejected rows per reason (docs/design.md §7).
    #[serde(default)]
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Gates the operator overrode with `--allow-gate`.
    #[serde(default)]
    pub allowed_gates: Vec<String>,
    /// Revenue of the period (all lines dated in it) and its share with a customer.
    pub period_revenue: String,
    pub identification_rate: Option<f64>,
    pub tables: BTreeMap<String, u64>,
    pub timings_ms: BTreeMap<String, u64>,
    pub versions: BTreeMap<String, String>,
    pub inputs: Vec<InputFile>,
    /// The predictive models of the period (jobs with a `predict:` block):
    /// fitted parameters, log-likelihoods, the potential score's held-out AUC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictions: Option<PredictionFacts>,
    /// Erasure requests (`segments forget`) applied to the published tables
    /// after the run (ids of `_erasure/requests/`; no personal data).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub erasures: Vec<String>,
}

/// A source file of an input, as listed before the run (for the manifest).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct InputFile {
    pub input: String,
    pub path: String,
    pub size: u64,
    pub e_tag: Option<String>,
    /// When the store last modified the object (RFC 3339), for stores that
    /// give no ETag; absent in manifests written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

/// What the manifest records about the predictive models of a period. Every
/// field has a default, so manifests written by other versions still read.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PredictionFacts {
    /// `bgnbd` or `mbgnbd`.
    pub model: String,
    pub time_unit: String,
    pub horizon_months: u32,
    pub monthly_discount_rate: f64,
    /// Customers scored (the universe).
    pub customers: u64,
    /// Fitted purchase-model parameters and `log_likelihood`.
    pub purchase_model: BTreeMap<String, f64>,
    /// Fitted spend-model parameters, `log_likelihood` and `customers`.
    pub spend_model: BTreeMap<String, f64>,
    /// The potential score's training facts (held-out AUC among them), when
    /// the job asks for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub potential: Option<PotentialFacts>,
}

/// What the manifest records about the potential score. Every field has a
/// default, so manifests written by other versions still read.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PotentialFacts {
    pub target_segments: Vec<String>,
    pub horizon_months: u32,
    /// Periods whose snapshots gave the features of training examples.
    pub feature_periods: Vec<String>,
    pub training_rows: u64,
    pub held_out_rows: u64,
    /// Share of customers (per mille) used, 1000 unless the base is so
    /// large that more than about a million rows would be read.
    pub sampled_per_mille: u64,
    /// Area under the ROC curve on the held-out customers; null without a
    /// model or when the held-out rows have one class only.
    pub held_out_auc: Option<f64>,
    /// Share of positive (in target later) training rows.
    pub base_rate: Option<f64>,
    pub log_likelihood: Option<f64>,
    pub iterations: u64,
    /// Intercept and coefficients on the standardised features.
    pub coefficients: BTreeMap<String, f64>,
    /// Why there is no score, when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_score_reason: Option<String>,
}

//! Predictive scores published with every snapshot (the job's `predict:`
//! block): how likely each customer is still active, how many purchases and
//! how much spend to expect from them over a horizon, and how likely they are
//! to reach the job's best segments.
//!
//! The models are the standard "buy till you die" pair of the marketing
//! science literature, fitted by maximum likelihood on a per-customer summary
//! (never on transactions, so a million customers fit in seconds):
//! - [`bgnbd`]: the BG/NBD purchase and dropout model (Fader, Hardie & Lee
//!   2005, "Counting your customers the easy way"), and its modified variant
//!   MBG/NBD (Batislam, Denizel & Filiztekin 2007), which lets a customer drop
//!   out right after the first purchase;
//! - [`gamma_gamma`]: the Gamma-Gamma spend model (Fader, Hardie & Lee 2005,
//!   "RFM and CLV"), fitted on repeat customers' average order value;
//! - [`potential`]: a logistic regression on earlier periods' snapshots
//!   estimating the probability of being in a target segment set later.
//!
//! [`special`] holds the log-space special functions (ln Γ and ψ from
//! `statrs`, the Gauss hypergeometric series written here) and [`optim`] the
//! quasi-Newton minimiser (BFGS with analytic gradients) the fits share.

pub mod bgnbd;
pub mod gamma_gamma;
pub mod optim;
pub mod potential;
pub mod special;
pub mod tables;

pub use crate::model::PredictionFacts;
pub use tables::{PredictionTables, build_prediction_tables, validate_summary};

/// Why a model could not be fitted or evaluated.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error(
        "the {model} model cannot be fitted for this period: {detail}; it needs customers with repeat purchases before the period's end: run the job from a later period, or remove `predict:` from the job"
    )]
    NoData { model: &'static str, detail: String },
    #[error("invalid {model} input for customer #{index}: {detail}")]
    InvalidInput {
        model: &'static str,
        index: usize,
        detail: String,
    },
    #[error(
        "the {model} fit did not converge after {iterations} iterations (largest gradient {gradient:.3e}); the data may not identify the model (e.g. almost no repeat purchases): drop `predict:` from the job or check the period's data"
    )]
    NotConverged {
        model: &'static str,
        iterations: usize,
        gradient: f64,
    },
    #[error(
        "the Gauss hypergeometric series 2F1({a}, {b}; {c}; {z}) did not converge in {terms} terms"
    )]
    Hypergeometric {
        a: f64,
        b: f64,
        c: f64,
        z: f64,
        terms: usize,
    },
    #[error(
        "predictions: the orders step `{step}` (predict.orders_step) must return one row per order with customer_id, order_date (a date) and amount; planning sql/predict/customer_summary.sql over it failed"
    )]
    OrdersStep {
        step: String,
        #[source]
        source: datafusion::error::DataFusionError,
    },
    #[error("predictions: {context}")]
    Query {
        context: String,
        #[source]
        source: datafusion::error::DataFusionError,
    },
    #[error("predictions: {context}")]
    Publish {
        context: String,
        #[source]
        source: crate::warehouse::publish::PublishError,
    },
}

impl PredictError {
    /// Whether the job (its orders step) is at fault: exit code 2.
    pub fn is_job_error(&self) -> bool {
        matches!(self, PredictError::OrdersStep { .. })
    }

    /// Whether the data (not the job or the machine) cannot support the
    /// models: exit code 3, like a failed data-quality gate.
    pub fn is_data_error(&self) -> bool {
        matches!(
            self,
            PredictError::NoData { .. }
                | PredictError::InvalidInput { .. }
                | PredictError::NotConverged { .. }
                | PredictError::Hypergeometric { .. }
        )
    }
}

//! The job's SQL pipeline: bound parameters, the ordered steps registered as
//! views, and the classification of every customer into one segment (or
//! every contact into its audiences).

mod audiences;
mod classify;
mod steps;

pub use crate::engine::{Parameters, sql_options};
pub use audiences::{audiences, validate_audiences};
pub use classify::{classify, validate_rules};
pub use steps::register_steps;

use crate::config::SqlOrigin;
use crate::model::ExitStatus;
use datafusion::error::DataFusionError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("step `{step}` ({origin}): {message}")]
    Step {
        step: String,
        origin: SqlOrigin,
        message: String,
        #[source]
        source: DataFusionError,
    },
    #[error("{}:{}: segment `{segment}`: {message}", job.display(), line.map(|l| l.to_string()).unwrap_or_else(|| "?".into()))]
    Rule {
        job: PathBuf,
        line: Option<usize>,
        segment: String,
        message: String,
    },
    #[error("{}: step `{step}` must return {message}", job.display())]
    Shape {
        job: PathBuf,
        step: String,
        message: String,
    },
    #[error("{}: {count} customer(s) of {period} match no segment rule, e.g.:\n{examples}\nhint: add a rule that covers them, or declare `classification.fallback: <segment>`", job.display())]
    Unmatched {
        job: PathBuf,
        period: crate::model::Period,
        count: usize,
        examples: String,
    },
    #[error("query failed: {context}")]
    Execution {
        context: String,
        #[source]
        source: DataFusionError,
    },
}

impl PipelineError {
    /// Whether the job (not the data or the machine) is at fault: exit code 2.
    pub fn is_job_error(&self) -> bool {
        !matches!(self, PipelineError::Execution { .. })
    }

    /// Exit codes of docs/design.md §6: the job's fault is 2, a failed query 1.
    pub fn exit_status(&self) -> ExitStatus {
        if self.is_job_error() {
            ExitStatus::Invalid
        } else {
            ExitStatus::Internal
        }
    }
}

/// A DataFusion error without the wrapping noise ("Error during planning: …"
/// stays, that tells the user what kind of problem it is).
pub(crate) fn describe(error: &DataFusionError) -> String {
    error.to_string()
}

//! Reading what was published, and what a change would do: `compare` two
//! periods, `diff` a rule change against the published period, `why` a
//! customer got their segment, the rules `lint` of `validate`, and the HTML
//! `report` of a period. Nothing here publishes.

pub mod compare;
pub mod diff;
pub mod lint;
pub mod report;
pub mod why;

use crate::engine::EngineError;
use crate::model::ExitStatus;
use crate::outputs::OutputError;
use crate::pipeline::PipelineError;
use crate::storage::StorageError;

/// Classifying a period or range with the working copy of a job, without
/// publishing (`diff`'s dry run, `compare --range`): the same preparation and
/// classification a run does, so the same errors and exit codes.
#[derive(Debug, thiserror::Error)]
pub enum DryRunError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl DryRunError {
    /// Exit codes of docs/design.md §6, as a run of the period would give.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            DryRunError::Engine(error) => error.exit_status(),
            DryRunError::Pipeline(error) => error.exit_status(),
            DryRunError::Output(_) => ExitStatus::Internal,
            DryRunError::Storage(_) => ExitStatus::Storage,
        }
    }
}

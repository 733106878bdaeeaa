//! The vocabulary every layer speaks, and nothing else: periods, the output
//! tables and their contracts, locales, problems found in user files, the
//! manifest of a published period, gates. The bottom layer: it imports no
//! other module of the crate (see `tests/it/layers.rs`).

pub mod causes;
pub mod exit;
pub mod gate;
pub mod locale;
pub mod manifest;
pub mod period;
pub mod prediction;
pub mod problem;
pub mod table;
pub mod units;
pub mod url;

pub use exit::ExitStatus;
pub use gate::Gate;
pub use locale::Locale;
pub use manifest::{FromSide, InputFile, Manifest, PotentialFacts, PredictionFacts, RowCounts};
pub use period::Period;
pub use prediction::Variant;
pub use problem::Problem;
pub use table::{
    ClassificationKind, Contract, ContractError, OutputTable, TableSchema, table_schema,
};

/// The environment variable holding the erasure salt (`segments forget`):
/// read by the warehouse's erasure log, kept out of every log and error by
/// the storage layer's redaction.
pub const SALT_ENV: &str = "SEGMENTS_ERASURE_SALT";

//! Job and config files: the strict, two-phase reading of `jobs/*.yaml` (what
//! to compute) and `config/*.yaml` (where data lives and how to run).
//!
//! Phase one is serde with `deny_unknown_fields`, which gives line and column;
//! phase two checks meaning (files exist, names unique, references resolve) and
//! collects every problem before reporting them together.

mod error;
mod job;
mod lifecycle;
mod locale;
mod predict;
pub mod schema;
mod scoring;
mod settings;
mod yaml;

pub use crate::model::{ClassificationKind, OutputTable};
pub use error::{ConfigError, Problem};
pub use job::{Incremental, Job, Segment, SqlOrigin, Step};
pub use lifecycle::{ReadinessSettings, RetentionSettings};
pub use locale::{Locale, Localized, TextFile};
pub use predict::{Potential, Predict, TimeUnit};
pub use scoring::{FixedBands, Scoring};
pub use settings::{
    CanonicalColumn, ColumnType, Config, CsvOptions, Encoding, EngineKind, EngineSettings,
    ExtraColumn, Input, InputFormat, QualitySettings, ReportSettings, Scheduler, SpillCompression,
    TableFormat, TableSettings, canonical_columns, date_column_of, parse_scheduler_url,
};

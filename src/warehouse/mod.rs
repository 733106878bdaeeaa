//! The warehouse: the one place that knows its layout ([`layout`]) and its
//! publishing protocol (docs/design.md §5): publishing a period's tables and
//! reading them back ([`publish`]), the multipart uploads of its table
//! partitions, recorded so that a killed run's are aborted ([`uploads`]), the lease that makes one run publish a
//! period at a time ([`lease`]), retention ([`retention`]), the erasure log
//! and the suppression it gives every run ([`erasure`]), and the Parquet form
//! of a table partition ([`parquet`], [`tables`]), or its Delta Lake form
//! (`warehouse.format: delta`, [`delta`]). Like delta-rs' log store,
//! nothing above it spells `_runs` or `_SUCCESS`.

pub mod delta;
pub mod erasure;
pub mod layout;
pub mod lease;
pub mod parquet;
pub mod publish;
pub mod retention;
pub mod tables;
pub mod uploads;

pub use tables::{TableData, TableFileError};

//! Output tables: their checked-in contracts (`schemas/*.json`), the queries
//! that build them from the classified customers (`sql/outputs/*.sql`) and
//! conformance of every batch to its contract, and their Parquet form, encoded
//! batch by batch as the queries run (publishing writes those bytes).

mod parquet;
mod schema;
mod tables;

pub use parquet::{decode_parquet, encode_parquet};
pub use schema::{TableSchema, table_schema};
pub use tables::{
    PeriodTables, TableData, build_audience_tables, build_period_tables, release_store_orders,
    share_store_orders,
};

use datafusion::error::DataFusionError;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("building table `{table}`: {source}")]
    Query {
        table: String,
        #[source]
        source: DataFusionError,
    },
    #[error("table `{table}` as Parquet: {source}")]
    Parquet {
        table: String,
        #[source]
        source: datafusion::parquet::errors::ParquetError,
    },
    #[error("table `{table}` does not match its contract in schemas/{table}.json: {message}")]
    Contract { table: String, message: String },
}

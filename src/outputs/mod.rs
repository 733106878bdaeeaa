//! Output tables of a period: the queries that build them from the classified
//! customers (`sql/outputs/*.sql`), each batch conformed to its contract
//! (`crate::model::table`) and encoded to Parquet as the queries run
//! (`crate::warehouse::parquet`; publishing writes those bytes).

mod tables;

pub use tables::{
    PeriodTables, StoreOrdersCache, build_audience_tables, build_period_tables, share_store_orders,
    store_orders_step,
};

use datafusion::error::DataFusionError;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("building table `{table}`")]
    Query {
        table: String,
        #[source]
        source: DataFusionError,
    },
    #[error("table `{table}` as Parquet")]
    Parquet {
        table: String,
        #[source]
        source: datafusion::parquet::errors::ParquetError,
    },
    #[error(transparent)]
    Contract(#[from] crate::model::ContractError),
    #[error(transparent)]
    Table(#[from] crate::warehouse::TableFileError),
}

//! One table partition as the warehouse stores it: the Parquet file of a
//! period's rows of one output table.

use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::parquet::errors::ParquetError;

use super::parquet::{decode_parquet_batch, encode_parquet};
use crate::model::OutputTable;

/// A table partition that could not be encoded or decoded as Parquet.
#[derive(Debug, thiserror::Error)]
#[error("table `{table}` as Parquet")]
pub struct TableFileError {
    pub table: String,
    #[source]
    pub source: ParquetError,
}

/// One built table partition, kept as the Parquet file it is published as:
/// encoded while its query runs, it takes a fraction of the memory of its
/// Arrow batches (a period's snapshots and migrations hold every customer).
#[derive(Debug, Clone)]
pub struct TableData {
    pub table: OutputTable,
    pub parquet: Bytes,
    pub rows: u64,
}

impl TableData {
    /// Encode a batch built in memory (rejects, predictions, rewrites).
    pub fn encode(table: OutputTable, batch: &RecordBatch) -> Result<Self, TableFileError> {
        let parquet = encode_parquet(batch).map_err(|source| TableFileError {
            table: table.name().into(),
            source,
        })?;
        Ok(Self {
            table,
            parquet,
            rows: batch.num_rows() as u64,
        })
    }

    /// The rows, decoded into one batch.
    pub fn batch(&self) -> Result<RecordBatch, TableFileError> {
        decode_parquet_batch(self.parquet.clone()).map_err(|source| TableFileError {
            table: self.table.name().into(),
            source,
        })
    }
}

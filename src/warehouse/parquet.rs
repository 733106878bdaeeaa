//! The Parquet form of a published table (zstd, column statistics, row
//! groups of up to 1M rows, for BI readers), and the encoder that builds it
//! batch by batch while a query runs, so that a run holds its output tables
//! compressed instead of as Arrow arrays.

use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::{BatchCoalescer, concat_batches};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::properties::WriterProperties;

/// Rows per row group: big enough for good compression and few footers,
/// small enough for BI readers to skip by statistics.
const ROW_GROUP_ROWS: usize = 1_000_000;

fn writer_properties() -> Result<WriterProperties, ParquetError> {
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by(format!("segments {}", env!("CARGO_PKG_VERSION")))
        .build())
}

/// Rows per write to the Parquet writer. The writer cuts pages where its
/// writes do, so the same rows must reach it in the same slices for the same
/// bytes to come out, whatever batches the query happened to produce (under
/// a memory limit, with other partitions): a rerun publishes identical files.
const WRITE_ROWS: usize = 8192;

/// Writes batches of one schema into an in-memory Parquet file.
pub struct ParquetEncoder {
    slicer: BatchCoalescer,
    writer: ArrowWriter<Vec<u8>>,
    rows: u64,
}

impl ParquetEncoder {
    pub fn new(schema: SchemaRef) -> Result<Self, ParquetError> {
        Ok(Self {
            slicer: BatchCoalescer::new(schema.clone(), WRITE_ROWS),
            writer: ArrowWriter::try_new(Vec::new(), schema, Some(writer_properties()?))?,
            rows: 0,
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ParquetError> {
        self.rows += batch.num_rows() as u64;
        self.slicer.push_batch(batch.clone())?;
        self.write_completed()
    }

    fn write_completed(&mut self) -> Result<(), ParquetError> {
        while let Some(slice) = self.slicer.next_completed_batch() {
            self.writer.write(&slice)?;
        }
        Ok(())
    }

    /// The finished file and its number of rows.
    pub fn finish(mut self) -> Result<(Bytes, u64), ParquetError> {
        self.slicer.finish_buffered_batch()?;
        self.write_completed()?;
        Ok((Bytes::from(self.writer.into_inner()?), self.rows))
    }
}

/// Encode one batch as a Parquet file.
pub fn encode_parquet(batch: &RecordBatch) -> Result<Bytes, ParquetError> {
    let mut encoder = ParquetEncoder::new(batch.schema())?;
    encoder.write(batch)?;
    Ok(encoder.finish()?.0)
}

/// Read a Parquet file back as its schema and batches.
pub fn decode_parquet(bytes: Bytes) -> Result<(SchemaRef, Vec<RecordBatch>), ParquetError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let schema = builder.schema().clone();
    let batches = builder
        .build()?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ParquetError::External(Box::new(e)))?;
    Ok((schema, batches))
}

/// The Arrow schema of a Parquet file, from its footer.
pub fn decode_schema(bytes: Bytes) -> Result<SchemaRef, ParquetError> {
    Ok(ParquetRecordBatchReaderBuilder::try_new(bytes)?
        .schema()
        .clone())
}

/// Read a Parquet file back as one batch (an empty one when it has no rows).
pub fn decode_parquet_batch(bytes: Bytes) -> Result<RecordBatch, ParquetError> {
    let (schema, batches) = decode_parquet(bytes)?;
    concat_batches(&schema, &batches).map_err(|e| ParquetError::External(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(from: i64, rows: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(from..from + rows)),
                Arc::new(StringArray::from_iter(
                    (from..from + rows).map(|i| (i % 3 != 0).then(|| format!("c{i}"))),
                )),
            ],
        )
        .unwrap()
    }

    #[test]
    fn batches_written_one_by_one_read_back_as_their_concatenation() {
        let parts = [batch(0, 5), batch(5, 0), batch(5, 1_000_003)];
        let mut encoder = ParquetEncoder::new(parts[0].schema()).unwrap();
        for part in &parts {
            encoder.write(part).unwrap();
        }
        let (bytes, rows) = encoder.finish().unwrap();
        assert_eq!(rows, 1_000_008);
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes.clone()).unwrap();
        assert_eq!(builder.metadata().num_row_groups(), 2, "1M-row groups");
        let read = decode_parquet_batch(bytes).unwrap();
        assert_eq!(read, batch(0, 1_000_008));
    }

    #[test]
    fn the_same_rows_in_other_batches_give_the_same_file() {
        let rows = batch(0, 1_020_001);
        let whole = encode_parquet(&rows).unwrap();
        for sizes in [
            [1usize, 8191, 1_000_000, 11_809],
            [500_000, 3, 20_000, 499_998],
        ] {
            let mut encoder = ParquetEncoder::new(rows.schema()).unwrap();
            let mut offset = 0;
            for size in sizes {
                encoder.write(&rows.slice(offset, size)).unwrap();
                offset += size;
            }
            assert_eq!(offset, rows.num_rows());
            assert!(encoder.finish().unwrap().0 == whole, "sliced {sizes:?}");
        }
    }

    #[test]
    fn an_empty_table_reads_back_empty_with_its_schema() {
        let empty = batch(0, 0);
        let read = decode_parquet_batch(encode_parquet(&empty).unwrap()).unwrap();
        assert_eq!(read.num_rows(), 0);
        assert_eq!(read.schema(), empty.schema());
    }
}

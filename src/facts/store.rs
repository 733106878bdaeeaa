//! Where month facts live and how they are trusted:
//!
//! ```text
//! <warehouse>/<job>/_facts/<step>/month=YYYY-MM/part-<run id>-<n>.parquet
//! <warehouse>/<job>/_facts/<step>/month=YYYY-MM/_fingerprint.json
//! ```
//!
//! The fingerprint is written after the fact files and names them with their
//! size and ETag. Facts are read only when the fingerprint's digest is the
//! month's and every file it names has that size and ETag: a deleted,
//! truncated or rewritten file makes the month computed again.

use std::collections::BTreeMap;
use std::path::{Path as LocalPath, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::{sort_to_indices, take_record_batch};
use datafusion::arrow::datatypes::Date32Type;
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::prelude::{DataFrame, SessionContext};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::FactsError;
use super::fingerprint::Fingerprint;
use super::shape::{MONTH, Mergeable};
use crate::storage::{StorageError, Warehouse};

const FACTS: &str = "_facts";
const FINGERPRINT: &str = "_fingerprint.json";
/// How long a fact file no fingerprint names is kept (a concurrent run of
/// another period may still be reading it).
const SUPERSEDED_KEPT_HOURS: i64 = 24;
/// Rows per row group of a fact file.
const FACTS_ROW_GROUP_ROWS: usize = 8 * 1024;
/// The folder name of a month's local facts (`__part=YYYY-MM-DD`).
const PART: &str = "__part";

/// One fact file as its fingerprint records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct FactFile {
    name: String,
    size: u64,
    e_tag: Option<String>,
}

/// `_fingerprint.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    #[serde(flatten)]
    fingerprint: Fingerprint,
    /// The month's fact files; none when the month has no group.
    facts: Vec<FactFile>,
    run_id: String,
}

/// Valid facts of one month: the URLs and keys of its files (none for an
/// empty month).
#[derive(Debug, Clone)]
pub struct Stored {
    pub urls: Vec<String>,
    pub keys: Vec<object_store::path::Path>,
}

/// `month=YYYY-MM` of a fingerprint's month (`YYYY-MM`).
fn month_folder(month: &str) -> String {
    format!("month={month}")
}

/// The months whose stored facts match `fingerprints` (the others are
/// absent, stale or not to be trusted).
pub async fn valid(
    warehouse: &Warehouse,
    job: &str,
    step: &str,
    fingerprints: &BTreeMap<NaiveDate, Fingerprint>,
) -> Result<BTreeMap<NaiveDate, Stored>, StorageError> {
    let checks = futures::stream::iter(fingerprints.iter().map(|(month, print)| async move {
        let found = check(warehouse, job, step, print).await?;
        Ok::<_, StorageError>(found.map(|stored| (*month, stored)))
    }))
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await;
    let mut valid = BTreeMap::new();
    for check in checks {
        if let Some((month, stored)) = check? {
            valid.insert(month, stored);
        }
    }
    Ok(valid)
}

async fn check(
    warehouse: &Warehouse,
    job: &str,
    step: &str,
    print: &Fingerprint,
) -> Result<Option<Stored>, StorageError> {
    let folder = month_folder(&print.month);
    let key = warehouse.key(&[job, FACTS, step, &folder, FINGERPRINT])?;
    let Some(bytes) = warehouse.get(&key).await? else {
        return Ok(None);
    };
    let record: Record = match serde_json::from_slice(&bytes) {
        Ok(record) => record,
        Err(error) => {
            tracing::warn!(key = %warehouse.url_of(&key), %error, "Unreadable fingerprint: the month's facts are computed again.");
            return Ok(None);
        }
    };
    if record.fingerprint.digest != print.digest {
        tracing::debug!(step, month = %print.month, "Input or step changed: the month's facts are computed again.");
        return Ok(None);
    }
    let mut urls = Vec::new();
    let mut keys = Vec::new();
    for fact in &record.facts {
        let key = warehouse.key(&[job, FACTS, step, &folder, &fact.name])?;
        match warehouse.head(&key).await? {
            Some(meta) if meta.size == fact.size && meta.e_tag == fact.e_tag => {
                urls.push(warehouse.url_of(&key));
                keys.push(key);
            }
            _ => {
                tracing::warn!(key = %warehouse.url_of(&key), "A fact file is missing or not the one recorded: the month's facts are computed again.");
                return Ok(None);
            }
        }
    }
    Ok(Some(Stored { urls, keys }))
}

/// Write the facts of `frame` (with [`MONTH`]) as Parquet under `dir`, one
/// folder per month; returns each month's files.
///
/// Each partition of the query writes its rows, batch by batch, into a
/// file per month, in row groups of [`FACTS_ROW_GROUP_ROWS`]: a first run
/// has a writer open per partition and month, and what they buffer is
/// outside the memory pool, so it is kept to a small row group each
/// (DataFusion's partitioned write also buffers two whole batches per
/// month). Partitioning the rows by month first, for one file per month,
/// made a 48-month first run of the bench slower (19.8 s against 14.7 s,
/// one run each) and still left a file per partition.
pub async fn write_local(
    frame: DataFrame,
    dir: &LocalPath,
) -> Result<BTreeMap<NaiveDate, Vec<PathBuf>>, DataFusionError> {
    std::fs::create_dir_all(dir)?;
    let streams = frame.execute_stream_partitioned().await?;
    let mut tasks = tokio::task::JoinSet::new();
    for (partition, stream) in streams.into_iter().enumerate() {
        let dir = dir.to_path_buf();
        tasks.spawn(async move { write_partition(stream, &dir, partition).await });
    }
    let mut months: BTreeMap<NaiveDate, Vec<PathBuf>> = BTreeMap::new();
    while let Some(written) = tasks.join_next().await {
        // A writer that panicked is a bug: raised again here, not turned
        // into an error that reads like bad data.
        let written = match written {
            Ok(written) => written?,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => return Err(DataFusionError::External(Box::new(error))),
        };
        for (month, file) in written {
            months.entry(month).or_default().push(file);
        }
    }
    for files in months.values_mut() {
        files.sort();
    }
    Ok(months)
}

/// Write one partition's facts: a file per month it holds.
async fn write_partition(
    mut stream: SendableRecordBatchStream,
    dir: &LocalPath,
    partition: usize,
) -> Result<BTreeMap<NaiveDate, PathBuf>, DataFusionError> {
    let schema = stream.schema();
    let month_column = schema.index_of(MONTH)?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_max_row_group_row_count(Some(FACTS_ROW_GROUP_ROWS))
        .build();
    let mut writers: BTreeMap<NaiveDate, (PathBuf, ArrowWriter<std::fs::File>)> = BTreeMap::new();
    while let Some(batch) = stream.next().await.transpose()? {
        let months = batch.column(month_column).as_primitive::<Date32Type>();
        if months.null_count() > 0 {
            return Err(DataFusionError::Internal(
                "a month fact without a month".to_string(),
            ));
        }
        // Sorted by month, each month's rows are one slice: one pass over
        // the batch, not one per month it holds.
        let order = sort_to_indices(months, None, None)?;
        let sorted = take_record_batch(&batch, &order)?;
        let sorted_months = sorted.column(month_column).as_primitive::<Date32Type>();
        let mut start = 0;
        while start < sorted.num_rows() {
            let month = sorted_months.value(start);
            let mut end = start + 1;
            while end < sorted.num_rows() && sorted_months.value(end) == month {
                end += 1;
            }
            let rows = sorted.slice(start, end - start);
            start = end;
            let date = Date32Type::to_naive_date_opt(month).ok_or_else(|| {
                DataFusionError::Internal(format!("a month fact out of range: day {month}"))
            })?;
            let (_, writer) = match writers.entry(date) {
                std::collections::btree_map::Entry::Occupied(open) => open.into_mut(),
                std::collections::btree_map::Entry::Vacant(new) => {
                    let folder = dir.join(format!("{PART}={date}"));
                    std::fs::create_dir_all(&folder)?;
                    let path = folder.join(format!("part-{partition}.parquet"));
                    let file = std::fs::File::create(&path)?;
                    let writer =
                        ArrowWriter::try_new(file, schema.clone(), Some(properties.clone()))?;
                    new.insert((path, writer))
                }
            };
            writer.write(&rows)?;
        }
    }
    let mut written = BTreeMap::new();
    for (month, (path, writer)) in writers {
        writer.close()?;
        written.insert(month, path);
    }
    Ok(written)
}

/// Store the facts of one month (its local `files`, none for a month with no
/// group) under the fingerprint; returns the URLs of the stored files.
pub async fn store(
    warehouse: &Warehouse,
    job: &str,
    step: &str,
    print: &Fingerprint,
    files: Option<&Vec<PathBuf>>,
    run_id: &str,
) -> Result<Vec<String>, FactsError> {
    let folder = month_folder(&print.month);
    let mut facts = Vec::new();
    let mut urls = Vec::new();
    for (index, file) in files.into_iter().flatten().enumerate() {
        let name = format!("part-{run_id}-{index}.parquet");
        let key = warehouse.key(&[job, FACTS, step, &folder, &name])?;
        let bytes = std::fs::read(file).map_err(|source| FactsError::Local {
            step: step.to_string(),
            dir: file.display().to_string(),
            source,
        })?;
        warehouse.put(&key, bytes.into()).await?;
        let meta = warehouse
            .head(&key)
            .await?
            .ok_or_else(|| FactsError::Vanished {
                url: warehouse.url_of(&key),
            })?;
        facts.push(FactFile {
            name,
            size: meta.size,
            e_tag: meta.e_tag,
        });
        urls.push(warehouse.url_of(&key));
    }
    let record = Record {
        fingerprint: print.clone(),
        facts,
        run_id: run_id.to_string(),
    };
    let key = warehouse.key(&[job, FACTS, step, &folder, FINGERPRINT])?;
    let json = serde_json::to_vec_pretty(&record).expect("a record serialises");
    warehouse.put(&key, json.into()).await?;
    // The month's older files are not named by the fingerprint any more.
    // A run of another period may have read the fingerprint that named
    // them and read them still: they go once older than a run lasts.
    let prefix = warehouse.key(&[job, FACTS, step, &folder])?;
    let superseded_before = chrono::Utc::now() - chrono::Duration::hours(SUPERSEDED_KEPT_HOURS);
    for meta in warehouse.list(&prefix).await? {
        let name = meta.location.filename().unwrap_or_default();
        let current = record.facts.iter().any(|f| f.name == name);
        if name.starts_with("part-") && !current && meta.last_modified < superseded_before {
            warehouse.delete(&meta.location).await?;
        }
    }
    Ok(urls)
}

/// The facts at `urls` (warehouse) and `local` (files of this process) as
/// one table with the facts' schema.
pub async fn table(
    ctx: &SessionContext,
    mergeable: &Mergeable,
    warehouse: &Warehouse,
    urls: &[String],
    local: &[String],
) -> Result<Arc<dyn TableProvider>, DataFusionError> {
    let schema = mergeable.facts_schema();
    let location = warehouse.location();
    ctx.register_object_store(&location.store_url, location.store.clone());
    let listing = |paths: Vec<ListingTableUrl>| -> Result<Arc<dyn TableProvider>, DataFusionError> {
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(paths)
            .with_listing_options(options)
            .with_schema(schema.clone());
        Ok(Arc::new(ListingTable::try_new(config)?))
    };
    let mut frames = Vec::new();
    if !urls.is_empty() {
        let paths = urls
            .iter()
            .map(ListingTableUrl::parse)
            .collect::<Result<Vec<_>, _>>()?;
        frames.push(ctx.read_table(listing(paths)?)?);
    }
    if !local.is_empty() {
        let paths = local
            .iter()
            .map(ListingTableUrl::parse)
            .collect::<Result<Vec<_>, _>>()?;
        frames.push(ctx.read_table(listing(paths)?)?);
    }
    let mut frames = frames.into_iter();
    let Some(first) = frames.next() else {
        return Ok(Arc::new(MemTable::try_new(schema, vec![vec![]])?));
    };
    let all = frames.try_fold(first, |all, frame| all.union(frame))?;
    Ok(all.into_view())
}

/// Delete every fact of `job`; returns the files deleted.
pub async fn delete_all(warehouse: &Warehouse, job: &str) -> Result<usize, StorageError> {
    let prefix = warehouse.key(&[job, FACTS])?;
    let listed = warehouse.list(&prefix).await?;
    for meta in &listed {
        warehouse.delete(&meta.location).await?;
    }
    Ok(listed.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::InputFile;
    use bytes::Bytes;
    use std::collections::BTreeSet;

    /// Every row of the Parquet files at `paths`, as text, sorted.
    fn rows_of(paths: &[PathBuf]) -> Vec<String> {
        let mut rows = Vec::new();
        for path in paths {
            let file = std::fs::File::open(path).unwrap();
            let reader =
                datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                    file,
                )
                .unwrap()
                .build()
                .unwrap();
            for batch in reader {
                let batch = batch.unwrap();
                let ids = batch.column(0).as_string::<i32>();
                let months = batch.column(1).as_primitive::<Date32Type>();
                for row in 0..batch.num_rows() {
                    let month = Date32Type::to_naive_date_opt(months.value(row)).unwrap();
                    rows.push(format!("{} {month}", ids.value(row)));
                }
            }
        }
        rows.sort();
        rows
    }

    /// Batches that hold several months each, over two partitions, with a
    /// month in both partitions and a month in one: every month's rows end
    /// up in that month's files, each row once, whatever batch it came in.
    #[tokio::test]
    async fn each_months_rows_go_to_that_months_files() {
        use datafusion::arrow::array::{Date32Array, StringArray};
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        use datafusion::arrow::record_batch::RecordBatch;
        let schema = Arc::new(Schema::new(vec![
            Field::new("customer_id", DataType::Utf8, false),
            Field::new(MONTH, DataType::Date32, true),
        ]));
        let day = |y, m| {
            let date = NaiveDate::from_ymd_opt(y, m, 1).unwrap();
            (date - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32
        };
        let batch = |ids: &[&str], months: &[i32]| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(ids.to_vec())),
                    Arc::new(Date32Array::from(months.to_vec())),
                ],
            )
            .unwrap()
        };
        let (jan, feb, mar) = (day(2024, 1), day(2024, 2), day(2024, 3));
        let partitions = vec![
            vec![
                batch(&["a", "b", "c", "d"], &[feb, jan, feb, mar]),
                batch(&["e"], &[jan]),
            ],
            vec![batch(&["f", "g"], &[mar, mar])],
        ];
        let table = MemTable::try_new(schema.clone(), partitions).unwrap();
        let ctx = SessionContext::new();
        let frame = ctx.read_table(Arc::new(table)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let written = write_local(frame, dir.path()).await.unwrap();
        let month = |m| NaiveDate::from_ymd_opt(2024, m, 1).unwrap();
        assert_eq!(
            written.keys().copied().collect::<Vec<_>>(),
            [month(1), month(2), month(3)]
        );
        assert_eq!(
            rows_of(&written[&month(1)]),
            ["b 2024-01-01", "e 2024-01-01"]
        );
        assert_eq!(
            rows_of(&written[&month(2)]),
            ["a 2024-02-01", "c 2024-02-01"]
        );
        assert_eq!(
            rows_of(&written[&month(3)]),
            ["d 2024-03-01", "f 2024-03-01", "g 2024-03-01"]
        );
        assert_eq!(
            written[&month(3)].len(),
            2,
            "a file per partition that held March"
        );
        assert_eq!(written[&month(1)].len(), 1);
    }

    /// A fact without a month is refused, not written somewhere.
    #[tokio::test]
    async fn a_fact_without_a_month_is_an_error() {
        use datafusion::arrow::array::{Date32Array, StringArray};
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        use datafusion::arrow::record_batch::RecordBatch;
        let schema = Arc::new(Schema::new(vec![
            Field::new("customer_id", DataType::Utf8, false),
            Field::new(MONTH, DataType::Date32, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a"])),
                Arc::new(Date32Array::from(vec![None::<i32>])),
            ],
        )
        .unwrap();
        let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
        let ctx = SessionContext::new();
        let frame = ctx.read_table(Arc::new(table)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let error = write_local(frame, dir.path()).await.unwrap_err();
        assert!(error.to_string().contains("without a month"), "{error}");
    }

    fn folder_month(name: &str) -> Option<NaiveDate> {
        let period: crate::model::Period = name.strip_prefix("month=")?.parse().ok()?;
        Some(period.start())
    }

    /// The months with a fingerprint of `step` (what the test checks).
    async fn months(
        warehouse: &Warehouse,
        job: &str,
        step: &str,
    ) -> Result<BTreeSet<NaiveDate>, StorageError> {
        let prefix = warehouse.key(&[job, FACTS, step])?;
        Ok(warehouse
            .folders(&prefix)
            .await?
            .iter()
            .filter_map(|folder| folder.filename().and_then(folder_month))
            .collect())
    }

    fn print(month: NaiveDate, size: u64) -> Fingerprint {
        let file = InputFile {
            input: "transactions".into(),
            path: "data/month=2024-01/part-0.parquet".into(),
            size,
            e_tag: Some("e1".into()),
            last_modified: None,
        };
        Fingerprint::new("context", month, &[&file])
    }

    /// Stored facts are valid for their fingerprint only, and only while
    /// their files are the ones recorded.
    #[tokio::test]
    async fn facts_are_trusted_only_as_recorded() {
        let warehouse = Warehouse::open("memory:///wh/").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("facts.parquet");
        std::fs::write(&local, b"the facts of a month").unwrap();
        let month = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
        let empty = NaiveDate::from_ymd_opt(2024, 2, 1).unwrap();
        let printed = print(month, 10);
        let urls = store(
            &warehouse,
            "job",
            "orders",
            &printed,
            Some(&vec![local]),
            "run-1",
        )
        .await
        .unwrap();
        assert_eq!(urls.len(), 1);
        store(
            &warehouse,
            "job",
            "orders",
            &print(empty, 10),
            None,
            "run-1",
        )
        .await
        .unwrap();
        let wanted = BTreeMap::from([(month, printed.clone()), (empty, print(empty, 10))]);
        let found = valid(&warehouse, "job", "orders", &wanted).await.unwrap();
        assert_eq!(found[&month].urls, urls);
        assert!(found[&empty].urls.is_empty(), "an empty month has no file");
        assert_eq!(
            months(&warehouse, "job", "orders").await.unwrap(),
            BTreeSet::from([month, empty])
        );

        // Another input file (a new size): another digest.
        let changed = BTreeMap::from([(month, print(month, 11))]);
        assert!(
            valid(&warehouse, "job", "orders", &changed)
                .await
                .unwrap()
                .is_empty()
        );

        // The fact file rewritten (same name, other bytes): not trusted.
        let fact = warehouse
            .key(&[
                "job",
                FACTS,
                "orders",
                "month=2024-01",
                "part-run-1-0.parquet",
            ])
            .unwrap();
        warehouse
            .put(&fact, Bytes::from_static(b"other facts"))
            .await
            .unwrap();
        let only_month = BTreeMap::from([(month, printed.clone())]);
        assert!(
            valid(&warehouse, "job", "orders", &only_month)
                .await
                .unwrap()
                .is_empty()
        );
        // Deleted: not trusted either.
        warehouse.delete(&fact).await.unwrap();
        assert!(
            valid(&warehouse, "job", "orders", &only_month)
                .await
                .unwrap()
                .is_empty()
        );
        // A fingerprint that does not parse: computed again, not an error.
        let garbled = warehouse
            .key(&["job", FACTS, "orders", "month=2024-02", FINGERPRINT])
            .unwrap();
        warehouse
            .put(&garbled, Bytes::from_static(b"{not json"))
            .await
            .unwrap();
        let only_empty = BTreeMap::from([(empty, print(empty, 10))]);
        assert!(
            valid(&warehouse, "job", "orders", &only_empty)
                .await
                .unwrap()
                .is_empty()
        );

        assert_eq!(delete_all(&warehouse, "job").await.unwrap(), 2);
        assert!(
            months(&warehouse, "job", "orders")
                .await
                .unwrap()
                .is_empty()
        );
    }
}

//! Publishing a period to the warehouse with the guarantees of docs/design.md §5:
//! one object per table partition (atomic), or with `warehouse.format:
//! delta` one commit per table ([`super::delta`]), the period's `_SUCCESS`
//! removed first and written last with the manifest, then
//! `published_periods` rebuilt from the `_runs` folders that hold
//! `_SUCCESS`. The period's objects (tables, report, manifest) go up
//! through [`super::uploads`], so a multipart upload that a kill leaves
//! open is aborted by the next run.

use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::parquet::errors::ParquetError;

use super::delta::{self, TableForm};
use super::tables::TableData;
use crate::config::TableFormat;
use crate::model::Period;
use crate::model::table_schema;
pub use crate::model::{Manifest, RowCounts};
use crate::storage::{StorageError, Warehouse};

pub use super::layout::PART_FILE;
use super::layout::{
    MANIFEST, REPORT_FILE, REPORT_FOLDER, RUNS, SUCCESS, partition, partition_period,
};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("encoding table `{table}` as Parquet")]
    Encode {
        table: String,
        #[source]
        source: ParquetError,
    },
    #[error(
        "reading published {what}: {message}\nhint: the file may be corrupt; rerun that period to republish it"
    )]
    Corrupt { what: String, message: String },
    #[error("Delta table {table}: {message}")]
    Delta { table: String, message: String },
    #[error(
        "table {table} is a {found} table but the config says `warehouse.format: {wanted}`\nhint: {hint}"
    )]
    WrongFormat {
        table: String,
        found: &'static str,
        wanted: &'static str,
        hint: &'static str,
    },
}

/// Encode a batch as one Parquet file, as the output tables are published.
pub fn encode_parquet(table: &str, batch: &RecordBatch) -> Result<Bytes, PublishError> {
    super::parquet::encode_parquet(batch).map_err(|source| PublishError::Encode {
        table: table.to_string(),
        source,
    })
}

fn decode_parquet(what: &str, bytes: Bytes) -> Result<Vec<RecordBatch>, PublishError> {
    super::parquet::decode_parquet(bytes)
        .map(|(_, batches)| batches)
        .map_err(|e| PublishError::Corrupt {
            what: what.to_string(),
            message: e.to_string(),
        })
}

/// Publish a period: `_SUCCESS` off, each table partition replaced by one
/// object (stale objects removed), manifest, `_SUCCESS`, `published_periods`.
///
/// Every step is one atomic object operation, so a failure or a kill between
/// any two leaves the period without `_SUCCESS` (readers joining
/// `published_periods` or checking `_SUCCESS` skip it) until a rerun
/// republishes it whole. The publishing lease (see `crate::warehouse::lease`) keeps two
/// runs from interleaving these steps.
pub async fn publish(
    warehouse: &Warehouse,
    format: TableFormat,
    job: &str,
    period: Period,
    tables: &[TableData],
    manifest: &Manifest,
) -> Result<(), PublishError> {
    publish_with_report(warehouse, format, job, period, tables, manifest, None).await
}

/// [`publish`], with the period's HTML report: one object,
/// `<job>/report/period=YYYY-MM/index.html`, written after the tables and
/// before the manifest and `_SUCCESS`, like a table. Without a report, one
/// left by an earlier run is removed (it would describe other tables).
pub async fn publish_with_report(
    warehouse: &Warehouse,
    format: TableFormat,
    job: &str,
    period: Period,
    tables: &[TableData],
    manifest: &Manifest,
    report: Option<Bytes>,
) -> Result<(), PublishError> {
    let runs = [job, RUNS, &partition(period)];
    warehouse
        .delete(&warehouse.key(&[&runs[..], &[SUCCESS]].concat())?)
        .await?;
    warehouse.clean_staged(&warehouse.key(&runs)?).await?;
    // `published_periods` must not list a period whose tables are about to
    // change: rebuild it now that `_SUCCESS` is gone (a no-op rewrite when the
    // period was not published), and again at the end.
    if manifest_exists(warehouse, job, period).await? {
        rebuild_published_periods(warehouse, format, job).await?;
    }
    for table in tables {
        write_partition(warehouse, format, job, period, table).await?;
    }
    let report_folder = warehouse.key(&[job, REPORT_FOLDER, &partition(period)])?;
    let report_key = warehouse.key(&[job, REPORT_FOLDER, &partition(period), REPORT_FILE])?;
    warehouse.clean_staged(&report_folder).await?;
    match report {
        Some(html) => super::uploads::put(warehouse, job, period, &report_key, html).await?,
        None => warehouse.delete(&report_key).await?,
    }
    let manifest_bytes = serde_json::to_vec_pretty(manifest).expect("manifest serialises");
    super::uploads::put(
        warehouse,
        job,
        period,
        &warehouse.key(&[&runs[..], &[MANIFEST]].concat())?,
        Bytes::from(manifest_bytes),
    )
    .await?;
    warehouse
        .put(
            &warehouse.key(&[&runs[..], &[SUCCESS]].concat())?,
            Bytes::from_static(b""),
        )
        .await?;
    rebuild_published_periods(warehouse, format, job).await
}

/// Write one table partition in the warehouse's format: the Hive file
/// `period=YYYY-MM/part-0.parquet` (one atomic object), or a Delta commit
/// that replaces the period's partition. A table already in the other form
/// is an error: its readers would not see the new partition.
pub async fn write_partition(
    warehouse: &Warehouse,
    format: TableFormat,
    job: &str,
    period: Period,
    table: &TableData,
) -> Result<(), PublishError> {
    let name = table.table.name();
    let form = delta::table_form(warehouse, job, name).await?;
    match (format, form) {
        (TableFormat::Hive, TableForm::Delta) => {
            return Err(PublishError::WrongFormat {
                table: warehouse.url_of(&warehouse.key(&[job, name])?),
                found: "Delta",
                wanted: "hive",
                hint: "set `warehouse: {url: ..., format: delta}` in the config, or publish to another warehouse",
            });
        }
        (TableFormat::Delta, TableForm::Hive) => {
            return Err(PublishError::WrongFormat {
                table: warehouse.url_of(&warehouse.key(&[job, name])?),
                found: "Hive Parquet",
                wanted: "delta",
                hint: "a Delta table is not made over Hive partitions: publish to a new warehouse (and backfill it), or remove `format: delta`",
            });
        }
        (TableFormat::Delta, _) => {
            delta::replace_partition(warehouse, job, period, table).await?;
            return Ok(());
        }
        (TableFormat::Hive, _) => {}
    }
    let folder = warehouse.key(&[job, name, &partition(period)])?;
    let file = warehouse.key(&[job, name, &partition(period), PART_FILE])?;
    super::uploads::put(warehouse, job, period, &file, table.parquet.clone()).await?;
    // Anything else in the partition (an older layout, a staged file of a
    // killed run) would be read by BI tools as more rows: remove it.
    warehouse.clean_staged(&folder).await?;
    for stale in warehouse.list(&folder).await? {
        if stale.location != file {
            warehouse.delete(&stale.location).await?;
        }
    }
    Ok(())
}

/// Was the period ever published (a manifest from an earlier run)?
async fn manifest_exists(
    warehouse: &Warehouse,
    job: &str,
    period: Period,
) -> Result<bool, PublishError> {
    let runs = [job, RUNS, &partition(period)];
    Ok(warehouse
        .exists(&warehouse.key(&[&runs[..], &[MANIFEST]].concat())?)
        .await?)
}

/// The manifest of a published period (`_SUCCESS` present), if any.
pub async fn published_manifest(
    warehouse: &Warehouse,
    job: &str,
    period: Period,
) -> Result<Option<Manifest>, PublishError> {
    let runs = [job, RUNS, &partition(period)];
    if !warehouse
        .exists(&warehouse.key(&[&runs[..], &[SUCCESS]].concat())?)
        .await?
    {
        return Ok(None);
    }
    let Some(bytes) = warehouse
        .get(&warehouse.key(&[&runs[..], &[MANIFEST]].concat())?)
        .await?
    else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| PublishError::Corrupt {
            what: format!("manifest of {job} {period}"),
            message: e.to_string(),
        })
}

/// Read a published table partition: the Hive file, else the period of
/// the Delta table's current version (whatever the config's format, so
/// that every command reads both forms).
pub async fn read_table(
    warehouse: &Warehouse,
    job: &str,
    table: &str,
    period: Period,
) -> Result<Option<Vec<RecordBatch>>, PublishError> {
    let key = warehouse.key(&[job, table, &partition(period), PART_FILE])?;
    match warehouse.get(&key).await? {
        Some(bytes) => decode_parquet(&format!("{table} of {job} {period}"), bytes).map(Some),
        None => match delta::table_form(warehouse, job, table).await? {
            TableForm::Delta => delta::read_partition(warehouse, job, table, period).await,
            TableForm::Hive | TableForm::Absent => Ok(None),
        },
    }
}

/// Rewrite `published_periods` from the `_runs` folders holding `_SUCCESS`,
/// so it repairs itself after any crash.
///
/// Runs of different periods (a backfill beside the CronJob) rebuild the
/// table concurrently, and each writes what it listed: a write that lands
/// after another run's could drop the period that run just published. So
/// after writing, the `_SUCCESS` markers are listed again, and the table is
/// rebuilt until they did not change while it was written. The last write
/// is then one whose listing was current (tests/it/concurrency.rs).
pub async fn rebuild_published_periods(
    warehouse: &Warehouse,
    format: TableFormat,
    job: &str,
) -> Result<(), PublishError> {
    const ATTEMPTS: usize = 8;
    let mut marks = success_marks(warehouse, job).await?;
    for _ in 0..ATTEMPTS {
        write_published_periods(warehouse, format, job).await?;
        let now = success_marks(warehouse, job).await?;
        if now == marks {
            return Ok(());
        }
        marks = now;
    }
    // Still changing: the runs that change it rebuild the table after their
    // own `_SUCCESS`, so the last of them leaves it current.
    Ok(())
}

/// Every `_SUCCESS` marker of a job's runs: its key and when it was written
/// (one listing).
async fn success_marks(
    warehouse: &Warehouse,
    job: &str,
) -> Result<std::collections::BTreeMap<String, i64>, PublishError> {
    Ok(warehouse
        .list(&warehouse.key(&[job, RUNS])?)
        .await?
        .into_iter()
        .filter(|meta| meta.location.filename() == Some(SUCCESS))
        .map(|meta| {
            (
                meta.location.to_string(),
                meta.last_modified.timestamp_nanos_opt().unwrap_or_default(),
            )
        })
        .collect())
}

/// One rewrite of `published_periods` from what the `_runs` folders hold now.
async fn write_published_periods(
    warehouse: &Warehouse,
    format: TableFormat,
    job: &str,
) -> Result<(), PublishError> {
    let mut manifests = Vec::new();
    for folder in warehouse.folders(&warehouse.key(&[job, RUNS])?).await? {
        let Some(period) = folder.filename().and_then(partition_period) else {
            continue;
        };
        if let Some(manifest) = published_manifest(warehouse, job, period).await? {
            manifests.push(manifest);
        }
    }
    manifests.sort_by(|a, b| a.period.cmp(&b.period));
    let contract = table_schema(crate::model::Contract::PublishedPeriods);
    let published_at: Vec<i64> = manifests
        .iter()
        .map(|m| {
            chrono::DateTime::parse_from_rfc3339(&m.published_at)
                .map(|t| t.timestamp_micros())
                .unwrap_or(0)
        })
        .collect();
    let strings =
        |f: fn(&Manifest) -> &str| Arc::new(StringArray::from_iter_values(manifests.iter().map(f)));
    let batch = RecordBatch::try_new(
        contract.schema.clone(),
        vec![
            strings(|m| &m.period),
            strings(|m| &m.run_id),
            Arc::new(TimestampMicrosecondArray::from(published_at).with_timezone("UTC")),
            strings(|m| &m.job_hash),
            strings(|m| &m.rule_hash),
            Arc::new(Int64Array::from_iter_values(
                manifests
                    .iter()
                    .map(|m| *m.tables.get("snapshots").unwrap_or(&0) as i64),
            )),
            Arc::new(Int64Array::from_iter_values(
                manifests.iter().map(|m| m.rows.read as i64),
            )),
        ],
    )
    .map_err(|e| PublishError::Encode {
        table: "published_periods".into(),
        source: e.into(),
    })?;
    let parquet = encode_parquet("published_periods", &batch)?;
    if format == TableFormat::Delta {
        // A Delta table like the others, replaced whole by each rebuild.
        delta::replace_table(
            warehouse,
            job,
            "published_periods",
            &parquet,
            manifests.len() as u64,
        )
        .await?;
        return Ok(());
    }
    let key = warehouse.key(&[job, "published_periods", PART_FILE])?;
    // Runs of other periods may be writing this table right now: leave
    // their staged files alone; one older than a minute was abandoned.
    warehouse
        .clean_staged_older_than(
            &warehouse.key(&[job, "published_periods"])?,
            std::time::Duration::from_secs(60),
        )
        .await?;
    warehouse.put(&key, parquet).await?;
    Ok(())
}

/// The periods that have a run folder (published or not), oldest first.
async fn run_periods(warehouse: &Warehouse, job: &str) -> Result<Vec<Period>, PublishError> {
    let mut periods: Vec<Period> = warehouse
        .folders(&warehouse.key(&[job, RUNS])?)
        .await?
        .iter()
        .filter_map(|folder| folder.filename().and_then(partition_period))
        .collect();
    periods.sort();
    Ok(periods)
}

/// The latest published period of a job (`_SUCCESS` present) and its
/// manifest, if any.
pub async fn last_published(
    warehouse: &Warehouse,
    job: &str,
) -> Result<Option<(Period, Manifest)>, PublishError> {
    let periods = run_periods(warehouse, job).await?;
    for period in periods.into_iter().rev() {
        if let Some(manifest) = published_manifest(warehouse, job, period).await? {
            return Ok(Some((period, manifest)));
        }
    }
    Ok(None)
}

/// Every published period of a job (`_SUCCESS` present) with its manifest,
/// oldest first.
pub async fn published_periods(
    warehouse: &Warehouse,
    job: &str,
) -> Result<Vec<(Period, Manifest)>, PublishError> {
    let periods = run_periods(warehouse, job).await?;
    let mut published = Vec::new();
    for period in periods {
        if let Some(manifest) = published_manifest(warehouse, job, period).await? {
            published.push((period, manifest));
        }
    }
    Ok(published)
}

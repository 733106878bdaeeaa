//! The Delta Lake form of the output tables (`warehouse.format: delta`,
//! docs/guides/delta.md): each table is a Delta table at its usual folder,
//! `<warehouse>/<job>/<table>/`, partitioned by `period`.
//!
//! A period is published by one commit per table that removes the files of
//! its partition and adds the new one (an overwrite with `replaceWhere
//! period = 'YYYY-MM'`), so a reader of the table sees the old or the new
//! period, never a mix. The commit is the conditional put of the next
//! `_delta_log/<version>.json` (`PutMode::Create`: S3's `If-None-Match`,
//! GCS and Azure preconditions, an exclusive create on local files) through
//! the same object store as the rest of the warehouse: no lock service and
//! no DynamoDB. Replaced files stay for readers of older versions until the
//! retention's VACUUM ([`vacuum`]) deletes them.
//!
//! The data files are the Parquet files the Hive form publishes (same
//! encoder); the `period` column is in the log, not in the files, as Delta
//! writes partition columns.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Once};
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema as ArrowSchema;
use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake_core::kernel::{
    Action, Add, DataType as DeltaType, MetadataExt as _, PrimitiveType, Remove, StructField,
    StructType,
};
use deltalake_core::logstore::{
    LogStore, LogStoreFactory, ObjectStoreRef, StorageConfig, default_logstore, logstore_factories,
};
use deltalake_core::operations::vacuum::VacuumMode;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use object_store::path::Path;
use url::Url;

use super::layout::partition;
use super::publish::PublishError;
use super::tables::TableData;
use crate::model::Period;
use crate::storage::Warehouse;

/// The partition column of every Delta table of the warehouse.
pub const PERIOD: &str = "period";
/// The folder of a Delta table's log.
pub const DELTA_LOG: &str = "_delta_log";

/// Attempts at a commit that another commit of the same table beat (a run
/// of another period publishing at the same moment): each attempt rebuilds
/// the commit on the table's new version.
const COMMIT_ATTEMPTS: usize = 8;

fn delta_error(job: &str, table: &str, error: impl std::fmt::Display) -> PublishError {
    PublishError::Delta {
        table: format!("{job}/{table}"),
        message: crate::storage::redact(&error.to_string()),
    }
}

/// A failure of delta-rs: the store's own errors stay storage errors (exit
/// 4, retried by the scheduler), as they are for the Hive form.
fn from_delta(
    warehouse: &Warehouse,
    job: &str,
    table: &str,
    error: DeltaTableError,
) -> PublishError {
    let store_error = match error {
        DeltaTableError::ObjectStore { source }
        | DeltaTableError::Transaction {
            source: TransactionError::ObjectStore { source },
        } => source,
        other => return delta_error(job, table, other),
    };
    let url = match table_key(warehouse, job, table) {
        Ok(key) => warehouse.url_of(&key),
        Err(_) => format!("{job}/{table}"),
    };
    PublishError::Storage(crate::storage::StorageError::from_store(&url, &store_error))
}

/// The log store of every scheme the warehouse opens: Delta's default one,
/// whose commits are conditional puts. deltalake-core registers it for
/// `file://` and `memory://` only; its S3 log store (deltalake-aws) would
/// bring a DynamoDB lock client and another AWS SDK.
#[derive(Debug)]
struct ConditionalPutLogStores;

impl LogStoreFactory for ConditionalPutLogStores {
    fn with_options(
        &self,
        prefixed_store: ObjectStoreRef,
        root_store: ObjectStoreRef,
        location: &Url,
        options: &StorageConfig,
    ) -> deltalake_core::DeltaResult<Arc<dyn LogStore>> {
        Ok(default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

fn register_log_stores() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        let factories = logstore_factories();
        for scheme in ["s3", "s3a", "gs", "az", "azure", "abfs", "abfss"] {
            let key = Url::parse(&format!("{scheme}://")).expect("static URL");
            if !factories.contains_key(&key) {
                factories.insert(key, Arc::new(ConditionalPutLogStores));
            }
        }
    });
}

/// The key of a table's folder.
fn table_key(warehouse: &Warehouse, job: &str, table: &str) -> Result<Path, PublishError> {
    Ok(warehouse.key(&[job, table])?)
}

/// The URL of a table's folder, as Delta names its location.
fn table_url(warehouse: &Warehouse, job: &str, table: &str) -> Result<Url, PublishError> {
    let key = table_key(warehouse, job, table)?;
    warehouse
        .location()
        .store_url
        .join(&format!("{key}/"))
        .map_err(|e| delta_error(job, table, e))
}

/// The table handle over the warehouse's own object store (its endpoint,
/// credentials, retries and fault injection), not yet loaded.
fn table_handle(warehouse: &Warehouse, job: &str, table: &str) -> Result<DeltaTable, PublishError> {
    register_log_stores();
    let url = table_url(warehouse, job, table)?;
    DeltaTableBuilder::from_url(url.clone())
        .and_then(|builder| {
            builder
                .with_storage_backend(warehouse.location().store.clone(), url)
                .build()
        })
        .map_err(|e| delta_error(job, table, e))
}

/// The table at its latest version, or `None` when there is no Delta table.
async fn load(
    warehouse: &Warehouse,
    job: &str,
    table: &str,
) -> Result<Option<DeltaTable>, PublishError> {
    // No log, no table: delta-rs answers a missing local folder with an
    // error of its own, not with "not a table".
    if table_form(warehouse, job, table).await? != TableForm::Delta {
        return Ok(None);
    }
    let mut handle = table_handle(warehouse, job, table)?;
    match handle.load().await {
        Ok(()) => Ok(Some(handle)),
        Err(DeltaTableError::NotATable(_)) => Ok(None),
        Err(e) => Err(from_delta(warehouse, job, table, e)),
    }
}

/// What a table's folder holds: a Delta log, Hive partitions, or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableForm {
    Delta,
    Hive,
    Absent,
}

/// The form of a table's folder, from one listing of its sub-folders.
pub async fn table_form(
    warehouse: &Warehouse,
    job: &str,
    table: &str,
) -> Result<TableForm, PublishError> {
    let folders = warehouse
        .folders(&table_key(warehouse, job, table)?)
        .await?;
    let names: Vec<&str> = folders.iter().filter_map(|f| f.filename()).collect();
    Ok(if names.contains(&DELTA_LOG) {
        TableForm::Delta
    } else if names.iter().any(|n| n.starts_with("period=")) {
        TableForm::Hive
    } else {
        TableForm::Absent
    })
}

/// The Delta schema of a table from the Arrow schema of its files, with
/// `period` last when the table is partitioned.
fn delta_schema(
    job: &str,
    table: &str,
    arrow: &ArrowSchema,
    partitioned: bool,
) -> Result<StructType, PublishError> {
    let data: StructType = arrow
        .try_into_kernel()
        .map_err(|e| delta_error(job, table, e))?;
    let mut fields: Vec<StructField> = data.fields().cloned().collect();
    if partitioned {
        fields.push(StructField::new(
            PERIOD,
            DeltaType::Primitive(PrimitiveType::String),
            true,
        ));
    }
    StructType::try_new(fields).map_err(|e| delta_error(job, table, e))
}

/// The table's schema after adding a file of schema `new`: columns the
/// table lacks are added (nullable, as old files have none); a column whose
/// type changed cannot be, and is an error. `None` when nothing changes.
fn evolved_schema(
    job: &str,
    table: &str,
    current: &StructType,
    new: &StructType,
) -> Result<Option<StructType>, PublishError> {
    let mut fields: Vec<StructField> = current.fields().cloned().collect();
    let mut changed = false;
    for field in new.fields() {
        match current.field(field.name()) {
            Some(old) if old.data_type() != field.data_type() => {
                return Err(PublishError::Delta {
                    table: format!("{job}/{table}"),
                    message: format!(
                        "column `{}` changed type from {} to {}; a Delta table keeps its column types\nhint: publish to a new warehouse, or drop the Delta table (its folder) to rebuild it with every period",
                        field.name(),
                        old.data_type(),
                        field.data_type()
                    ),
                });
            }
            Some(_) => {}
            None => {
                fields.push(StructField::new(
                    field.name(),
                    field.data_type().clone(),
                    true,
                ));
                changed = true;
            }
        }
    }
    if !changed {
        return Ok(None);
    }
    StructType::try_new(fields)
        .map(Some)
        .map_err(|e| delta_error(job, table, e))
}

/// The data file of a period's partition: a new name per publish, as the
/// file it replaces stays for readers of the previous version.
fn data_file_name() -> String {
    format!("part-00000-{}.c000.zstd.parquet", uuid::Uuid::new_v4())
}

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Is `commit` an error that another commit of the table caused (retry on
/// the new version)?
fn is_conflict(error: &DeltaTableError) -> bool {
    matches!(
        error,
        DeltaTableError::Transaction {
            source: TransactionError::CommitConflict(_)
                | TransactionError::VersionAlreadyExists(_)
                | TransactionError::MaxCommitAttempts(_)
        } | DeltaTableError::VersionAlreadyExists(_)
    )
}

/// Create the table (version 0) with the schema of its first file, unless
/// another run just did.
async fn create(
    warehouse: &Warehouse,
    job: &str,
    table: &str,
    schema: StructType,
    partitioned: bool,
) -> Result<DeltaTable, PublishError> {
    let handle = table_handle(warehouse, job, table)?;
    let mut builder = deltalake_core::operations::create::CreateBuilder::new()
        .with_log_store(handle.log_store())
        .with_table_name(table)
        .with_columns(schema.fields().cloned())
        .with_save_mode(SaveMode::ErrorIfExists);
    if partitioned {
        builder = builder.with_partition_columns([PERIOD]);
    }
    match builder.await {
        Ok(table) => Ok(table),
        Err(error) => match load(warehouse, job, table).await? {
            // Created by a run of another period meanwhile.
            Some(table) => Ok(table),
            None => Err(from_delta(warehouse, job, table, error)),
        },
    }
}

/// The files of the table's current version in `periods` (every file when
/// `None`), as the Remove actions of a commit that replaces or deletes them.
fn removes_of(
    table: &DeltaTable,
    periods: Option<&BTreeSet<String>>,
) -> Result<Vec<Action>, DeltaTableError> {
    let state = table.snapshot()?;
    let deleted_at = now_millis();
    Ok(state
        .log_data()
        .into_iter()
        .filter(|file| {
            periods.is_none_or(|periods| {
                file.partition_values_map()
                    .get(PERIOD)
                    .and_then(|value| value.as_deref())
                    .is_some_and(|period| periods.contains(period))
            })
        })
        .map(|file| {
            let mut remove: Remove = file.remove_action(true);
            remove.deletion_timestamp = Some(deleted_at);
            Action::Remove(remove)
        })
        .collect())
}

/// Publish one table partition: the file goes up (recorded like any
/// multipart upload of the period), then one commit replaces the period's
/// partition with it. Returns the table version it made.
pub async fn replace_partition(
    warehouse: &Warehouse,
    job: &str,
    period: Period,
    data: &TableData,
) -> Result<u64, PublishError> {
    replace(
        warehouse,
        job,
        data.table.name(),
        &data.parquet,
        data.rows,
        Some(period),
    )
    .await
}

/// Replace the whole of an unpartitioned table (`published_periods`) with
/// one file, in one commit.
pub async fn replace_table(
    warehouse: &Warehouse,
    job: &str,
    table: &str,
    parquet: &bytes::Bytes,
    rows: u64,
) -> Result<u64, PublishError> {
    replace(warehouse, job, table, parquet, rows, None).await
}

/// One file replaces a period's partition (`Some`) or the whole table.
async fn replace(
    warehouse: &Warehouse,
    job: &str,
    table: &str,
    parquet: &bytes::Bytes,
    rows: u64,
    period: Option<Period>,
) -> Result<u64, PublishError> {
    let file_schema =
        super::parquet::decode_schema(parquet.clone()).map_err(|source| PublishError::Encode {
            table: table.to_string(),
            source,
        })?;
    let partitioned = period.is_some();
    let schema = delta_schema(job, table, &file_schema, partitioned)?;
    let relative = match period {
        Some(period) => format!("{}/{}", partition(period), data_file_name()),
        None => data_file_name(),
    };
    let key = Path::from_iter(
        table_key(warehouse, job, table)?.parts().chain(
            Path::parse(&relative)
                .map_err(|e| delta_error(job, table, e))?
                .parts(),
        ),
    );
    // The table exists before its first data file: a `period=` folder
    // without a `_delta_log` beside it is a Hive table (see [`table_form`]),
    // also to a run of another period publishing at the same moment.
    let mut delta = match load(warehouse, job, table).await? {
        Some(delta) => delta,
        None => create(warehouse, job, table, schema.clone(), partitioned).await?,
    };
    match period {
        Some(period) => super::uploads::put(warehouse, job, period, &key, parquet.clone()).await?,
        None => warehouse.put(&key, parquet.clone()).await?,
    }
    let add = Add {
        path: relative,
        partition_values: period
            .map(|period| HashMap::from([(PERIOD.to_string(), Some(period.to_string()))]))
            .unwrap_or_default(),
        size: parquet.len() as i64,
        modification_time: now_millis(),
        data_change: true,
        stats: Some(serde_json::json!({ "numRecords": rows }).to_string()),
        ..Default::default()
    };
    let periods = period.map(|period| BTreeSet::from([period.to_string()]));
    let operation = DeltaOperation::Write {
        mode: SaveMode::Overwrite,
        partition_by: partitioned.then(|| vec![PERIOD.to_string()]),
        predicate: period.map(|period| format!("{PERIOD} = '{period}'")),
    };
    let committed = commit_retrying(warehouse, job, table, &mut delta, operation, |delta| {
        let state = delta.snapshot().map_err(|e| delta_error(job, table, e))?;
        let mut actions = Vec::new();
        if let Some(evolved) = evolved_schema(job, table, &state.schema(), &schema)? {
            let metadata = state
                .metadata()
                .clone()
                .with_schema(&evolved)
                .map_err(|e| delta_error(job, table, e))?;
            actions.push(Action::Metadata(metadata));
        }
        actions
            .extend(removes_of(delta, periods.as_ref()).map_err(|e| delta_error(job, table, e))?);
        actions.push(Action::Add(add.clone()));
        Ok(actions)
    })
    .await?;
    // The actions always hold the Add: a commit is always made.
    committed.ok_or_else(|| delta_error(job, table, "nothing to commit"))
}

/// Commit the actions `actions_of` gives for the table's current version,
/// through the log's conditional put. When another run's commit took the
/// version first, load the new version and try again, up to
/// [`COMMIT_ATTEMPTS`] times. Returns the version committed; `None`, with
/// nothing committed, when `actions_of` gives no action.
async fn commit_retrying(
    warehouse: &Warehouse,
    job: &str,
    table: &str,
    delta: &mut DeltaTable,
    operation: DeltaOperation,
    mut actions_of: impl FnMut(&DeltaTable) -> Result<Vec<Action>, PublishError>,
) -> Result<Option<u64>, PublishError> {
    let mut last_error = None;
    for _ in 0..COMMIT_ATTEMPTS {
        let actions = actions_of(delta)?;
        if actions.is_empty() {
            return Ok(None);
        }
        let state = delta.snapshot().map_err(|e| delta_error(job, table, e))?;
        let committed = CommitBuilder::from(CommitProperties::default())
            .with_actions(actions)
            .build(Some(state), delta.log_store(), operation.clone())
            .await;
        match committed {
            Ok(done) => return Ok(Some(done.version())),
            Err(error) if is_conflict(&error) => {
                last_error = Some(error);
                delta
                    .update_state()
                    .await
                    .map_err(|e| from_delta(warehouse, job, table, e))?;
            }
            Err(error) => return Err(from_delta(warehouse, job, table, error)),
        }
    }
    Err(delta_error(
        job,
        table,
        last_error.map_or_else(
            || "too many concurrent commits".to_string(),
            |e| e.to_string(),
        ),
    ))
}

/// The current version's files of a period, as keys of the warehouse;
/// `None` when there is no Delta table.
async fn period_files(
    warehouse: &Warehouse,
    job: &str,
    table: &str,
    period: Period,
) -> Result<Option<Vec<Path>>, PublishError> {
    let Some(delta) = load(warehouse, job, table).await? else {
        return Ok(None);
    };
    let root = table_key(warehouse, job, table)?;
    let state = delta.snapshot().map_err(|e| delta_error(job, table, e))?;
    let wanted = period.to_string();
    let mut files: Vec<Path> = state
        .log_data()
        .into_iter()
        .filter(|file| {
            file.partition_values_map()
                .get(PERIOD)
                .and_then(|value| value.as_deref())
                == Some(wanted.as_str())
        })
        .map(|file| Path::from_iter(root.parts().chain(file.object_store_path().parts())))
        .collect();
    files.sort();
    Ok(Some(files))
}

/// Read a period of a Delta table: the rows of its current version's files
/// (without the `period` column, like a Hive partition file). `None` when
/// the table or the period is absent.
pub async fn read_partition(
    warehouse: &Warehouse,
    job: &str,
    table: &str,
    period: Period,
) -> Result<Option<Vec<RecordBatch>>, PublishError> {
    let Some(files) = period_files(warehouse, job, table, period).await? else {
        return Ok(None);
    };
    if files.is_empty() {
        return Ok(None);
    }
    let mut batches = Vec::new();
    for key in files {
        let Some(bytes) = warehouse.get(&key).await? else {
            return Err(PublishError::Corrupt {
                what: format!("{table} of {job} {period}"),
                message: format!(
                    "the Delta log lists {}, which is missing (deleted by hand, or by a VACUUM with a shorter retention)",
                    warehouse.url_of(&key)
                ),
            });
        };
        let (_, read) =
            super::parquet::decode_parquet(bytes).map_err(|e| PublishError::Corrupt {
                what: format!("{table} of {job} {period}"),
                message: e.to_string(),
            })?;
        batches.extend(read);
    }
    Ok(Some(batches))
}

/// The periods the table's current version holds.
pub async fn periods(
    warehouse: &Warehouse,
    job: &str,
    table: &str,
) -> Result<BTreeSet<Period>, PublishError> {
    let Some(delta) = load(warehouse, job, table).await? else {
        return Ok(BTreeSet::new());
    };
    let state = delta.snapshot().map_err(|e| delta_error(job, table, e))?;
    Ok(state
        .log_data()
        .into_iter()
        .filter_map(|file| {
            file.partition_values_map()
                .get(PERIOD)
                .and_then(|value| value.as_deref())
                .and_then(|value| value.parse().ok())
        })
        .collect())
}

/// Delete periods from the table in one commit (their files stay until
/// [`vacuum`]). Returns how many files the commit removed.
pub async fn delete_periods(
    warehouse: &Warehouse,
    job: &str,
    table: &str,
    periods: &BTreeSet<Period>,
) -> Result<usize, PublishError> {
    let Some(mut delta) = load(warehouse, job, table).await? else {
        return Ok(0);
    };
    let names: BTreeSet<String> = periods.iter().map(ToString::to_string).collect();
    let predicate = names
        .iter()
        .map(|p| format!("'{p}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let operation = DeltaOperation::Delete {
        predicate: Some(format!("{PERIOD} IN ({predicate})")),
    };
    let mut removed = 0;
    commit_retrying(warehouse, job, table, &mut delta, operation, |delta| {
        let removes = removes_of(delta, Some(&names)).map_err(|e| delta_error(job, table, e))?;
        removed = removes.len();
        Ok(removes)
    })
    .await?;
    Ok(removed)
}

/// Which files a VACUUM may delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vacuum {
    /// Files a commit removed, and files no commit names (left by a run that
    /// failed before its commit), older than the retention. The retention
    /// must exceed a run's upload-to-commit time, or the VACUUM would
    /// delete a file another run is about to commit.
    Full,
    /// Only files a commit removed (an erasure, with no retention: the
    /// erased rows must not stay in a replaced file).
    Removed,
}

/// VACUUM: delete the files that the table's current version does not use
/// and that were replaced (or, [`Vacuum::Full`], left by a failed run) more
/// than `retention` ago. Returns how many files it deleted.
pub async fn vacuum(
    warehouse: &Warehouse,
    job: &str,
    table: &str,
    retention: Duration,
    which: Vacuum,
) -> Result<usize, PublishError> {
    let Some(delta) = load(warehouse, job, table).await? else {
        return Ok(0);
    };
    let retention =
        chrono::Duration::from_std(retention).map_err(|e| delta_error(job, table, e))?;
    let (_, metrics) = delta
        .vacuum()
        .with_retention_period(retention)
        // Our own setting (warehouse.vacuum_after) is the retention; Delta's
        // 7-day floor would refuse the zero of an erasure.
        .with_enforce_retention_duration(false)
        .with_mode(match which {
            Vacuum::Full => VacuumMode::Full,
            Vacuum::Removed => VacuumMode::Lite,
        })
        .await
        .map_err(|e| from_delta(warehouse, job, table, e))?;
    Ok(metrics.files_deleted.len())
}

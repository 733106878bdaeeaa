//! Erasure (data lifecycle): `segments forget` removes customers from every
//! published table of every period of every job in a warehouse, with the
//! publishing guarantees of a run, and keeps a suppression list so that later
//! runs never bring them back.
//!
//! **No personal data is stored.** The erasure log,
//! `<warehouse>/_erasure/requests/<erasure id>.json`, holds for each request
//! its date and the keyed hashes of the ids: HMAC-SHA256 of the id with a
//! secret salt, in hex. The salt comes from the environment variable
//! [`SALT_ENV`] (at least 16 characters), never from a file of the warehouse
//! and never logged; without it the hashes of short ids cannot be reversed
//! by trying every id. `_erasure/salt_check.json` holds the HMAC of a fixed
//! text, so a run with another salt (which would silently stop suppressing)
//! is refused. The salt must never change: a lost salt makes the log useless.
//!
//! **Suppression**: every reading of the inputs ([`crate::engine`]) hashes
//! `customer_id` with the salt when the log is not empty and treats the lines
//! of erased customers as anonymous (their revenue still counts, no customer
//! does); rejected rows that mention an erased id are counted but not written.
//!
//! **Crash safety**: the request is written first, so the suppression holds
//! from then on. Each period is rewritten under its publishing lease: a
//! `_erasing` marker, then [`publish::publish`] of the rewritten partitions
//! (`_SUCCESS` removed first, one object per partition, manifest, `_SUCCESS`,
//! `published_periods`), then the marker is removed. A kill at any point
//! leaves each period published (old or new rows) or unpublished with the
//! marker; running `forget` again (with any ids, or the same ones) completes
//! every pending request. A period left unpublished by a killed *run* (no
//! `_SUCCESS`, no marker) has its partitions rewritten but stays unpublished
//! until a run republishes it.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::DataType;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{Config, OutputTable};
use crate::lease::{Lease, LeaseError};
use crate::outputs::{PeriodTables, TableData};
use crate::period::Period;
use crate::publish::{self, Manifest, PublishError};
use crate::storage::{StorageError, Warehouse};

/// The environment variable holding the erasure salt.
pub const SALT_ENV: &str = "SEGMENTS_ERASURE_SALT";
const ERASURE: &str = "_erasure";
const REQUESTS: &str = "requests";
const SALT_CHECK: &str = "salt_check.json";
/// A period being rewritten by `forget` (in its `_runs/period=…` folder).
pub const ERASING: &str = "_erasing";
const CHECK_TEXT: &[u8] = b"segments erasure salt check";

#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    #[error(
        "the warehouse has an erasure log (_erasure/), so runs must recognise erased customers, but {SALT_ENV} is not set\nhint: set {SALT_ENV} to the secret salt `segments forget` used (from your secret store)"
    )]
    NoSalt,
    #[error(
        "{SALT_ENV} is shorter than 16 characters\nhint: use a long random secret, e.g. `openssl rand -hex 32`, kept in your secret store"
    )]
    ShortSalt,
    #[error(
        "{SALT_ENV} is not the salt the erasure log of {warehouse} was made with (_erasure/{SALT_CHECK}); with another salt erased customers would come back\nhint: set the original salt; it must never change"
    )]
    WrongSalt { warehouse: String },
    #[error("no customer id to forget: give --customer-id ID (repeatable) or --ids-file FILE")]
    NoIds,
    #[error("reading the ids file {path}: {source}")]
    IdsFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the erasure log {url} is not readable: {message}\nhint: restore it from the bucket's versioning or backups; never delete it"
    )]
    Corrupt { url: String, message: String },
    #[error("rewriting {table} of {job} {period}: {message}")]
    Rewrite {
        table: String,
        job: String,
        period: Period,
        message: String,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
}

impl ErasureError {
    /// Exit codes of DESIGN §6: a missing or wrong salt or no ids is a
    /// configuration error (2), storage 4, a live lease or anything else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            ErasureError::NoSalt
            | ErasureError::ShortSalt
            | ErasureError::WrongSalt { .. }
            | ErasureError::NoIds
            | ErasureError::IdsFile { .. } => 2,
            ErasureError::Storage(_)
            | ErasureError::Publish(PublishError::Storage(_))
            | ErasureError::Lease(LeaseError::Storage(_)) => 4,
            _ => 1,
        }
    }
}

/// HMAC-SHA256 (RFC 2104).
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The secret salt of the erasure hashes.
pub struct Salt(SecretString);

impl std::fmt::Debug for Salt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Salt([redacted])")
    }
}

impl Salt {
    /// The salt from [`SALT_ENV`], if set.
    pub fn from_env() -> Result<Option<Salt>, ErasureError> {
        match std::env::var(SALT_ENV) {
            Ok(value) if value.chars().count() >= 16 => Ok(Some(Salt(value.into()))),
            Ok(_) => Err(ErasureError::ShortSalt),
            Err(_) => Ok(None),
        }
    }

    /// The keyed hash of a customer id (hex HMAC-SHA256).
    pub fn hash(&self, id: &str) -> String {
        hex(&hmac_sha256(
            self.0.expose_secret().as_bytes(),
            id.trim().as_bytes(),
        ))
    }
}

/// One `forget` request, as stored in the erasure log: no ids, only their
/// keyed hashes, how many and the date.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErasureRequest {
    pub erasure_id: String,
    /// UTC date of the request.
    pub date: String,
    pub customers: usize,
    pub hashes: Vec<String>,
    /// UTC date every published table was rewritten; null while pending.
    pub completed: Option<String>,
}

/// The erased customers: the hashes of the log and the salt to compare.
#[derive(Debug)]
pub struct Suppression {
    salt: Salt,
    hashes: HashSet<String>,
}

impl Suppression {
    pub fn contains(&self, id: &str) -> bool {
        self.hashes.contains(&self.salt.hash(id))
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// `batches` without the rows of erased customers (by `customer_id`),
    /// e.g. a published snapshot read as a run's "from" side before
    /// `forget` reached it.
    pub fn filter_batches(&self, batches: Vec<RecordBatch>) -> Vec<RecordBatch> {
        match without_erased("snapshots", &batches, self) {
            Ok(Some((batch, _))) => vec![batch],
            _ => batches,
        }
    }

    /// Does a row written as JSON (the `rejects` table) mention an erased
    /// id as one of its values?
    pub fn mentions(&self, json: &str) -> bool {
        match serde_json::from_str::<serde_json::Value>(json) {
            Ok(serde_json::Value::Object(values)) => values.values().any(|value| match value {
                serde_json::Value::String(text) => self.contains(text),
                serde_json::Value::Number(number) => self.contains(&number.to_string()),
                _ => false,
            }),
            // Not an object: compare the whole text.
            _ => self.contains(json),
        }
    }
}

fn log_key(
    warehouse: &Warehouse,
    parts: &[&str],
) -> Result<object_store::path::Path, StorageError> {
    warehouse.key(&[&[ERASURE][..], parts].concat())
}

async fn requests(
    warehouse: &Warehouse,
) -> Result<Vec<(object_store::path::Path, ErasureRequest)>, ErasureError> {
    let mut found = Vec::new();
    let mut objects = warehouse.list(&log_key(warehouse, &[REQUESTS])?).await?;
    objects.sort_by(|a, b| a.location.cmp(&b.location));
    for object in objects {
        if !object.location.as_ref().ends_with(".json") {
            continue;
        }
        let Some(bytes) = warehouse.get(&object.location).await? else {
            continue;
        };
        let request = serde_json::from_slice(&bytes).map_err(|e| ErasureError::Corrupt {
            url: warehouse.url_of(&object.location),
            message: e.to_string(),
        })?;
        found.push((object.location, request));
    }
    Ok(found)
}

#[derive(Serialize, Deserialize)]
struct SaltCheck {
    hmac: String,
}

/// Compare `salt` with the log's salt check; write it when there is none
/// and `create`.
async fn check_salt(warehouse: &Warehouse, salt: &Salt, create: bool) -> Result<(), ErasureError> {
    let key = log_key(warehouse, &[SALT_CHECK])?;
    let expected = hex(&hmac_sha256(salt.0.expose_secret().as_bytes(), CHECK_TEXT));
    match warehouse.get(&key).await? {
        Some(bytes) => {
            let check: SaltCheck =
                serde_json::from_slice(&bytes).map_err(|e| ErasureError::Corrupt {
                    url: warehouse.url_of(&key),
                    message: e.to_string(),
                })?;
            if check.hmac != expected {
                return Err(ErasureError::WrongSalt {
                    warehouse: warehouse.url().to_string(),
                });
            }
        }
        None if create => {
            let body = serde_json::to_vec_pretty(&SaltCheck { hmac: expected })
                .expect("salt check serialises");
            warehouse.put(&key, Bytes::from(body)).await?;
        }
        None => {}
    }
    Ok(())
}

/// The suppression list of a warehouse: `None` when nothing was ever
/// erased (no salt needed then).
pub async fn load(warehouse: &Warehouse) -> Result<Option<Suppression>, ErasureError> {
    let requests = requests(warehouse).await?;
    if requests.is_empty() {
        return Ok(None);
    }
    let salt = Salt::from_env()?.ok_or(ErasureError::NoSalt)?;
    check_salt(warehouse, &salt, false).await?;
    let hashes = requests
        .into_iter()
        .flat_map(|(_, request)| request.hashes)
        .collect();
    Ok(Some(Suppression { salt, hashes }))
}

/// What `forget` did to one period of one job.
#[derive(Debug, Clone)]
pub struct PeriodErasure {
    pub job: String,
    pub period: Period,
    /// Rows removed per table.
    pub removed: BTreeMap<String, u64>,
    /// `republished`, `rewritten (unpublished)` or `completed` (an
    /// interrupted erasure finished with no rows left to remove).
    pub outcome: &'static str,
}

/// What `forget` did.
#[derive(Debug, Clone)]
pub struct ForgetReport {
    /// The request written now; `None` when every id was already erased.
    pub erasure_id: Option<String>,
    pub new_customers: usize,
    pub already_erased: usize,
    /// Requests completed by this run (this one and interrupted ones).
    pub completed: Vec<String>,
    /// Periods scanned, per job.
    pub scanned: BTreeMap<String, usize>,
    /// Periods that changed.
    pub periods: Vec<PeriodErasure>,
}

/// Read the ids of `--ids-file`: one per line, blank lines and `#` comments skipped.
pub fn read_ids_file(path: &std::path::Path) -> Result<Vec<String>, ErasureError> {
    let text = std::fs::read_to_string(path).map_err(|source| ErasureError::IdsFile {
        path: path.display().to_string(),
        source,
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

/// Jobs of a warehouse: top-level folders with a `_runs` folder.
async fn jobs(warehouse: &Warehouse) -> Result<Vec<String>, ErasureError> {
    let mut jobs = Vec::new();
    for folder in warehouse.folders(&warehouse.key(&[])?).await? {
        let Some(name) = folder.filename().map(str::to_string) else {
            continue;
        };
        if name.starts_with('_') {
            continue;
        }
        if !warehouse
            .folders(&warehouse.key(&[&name, "_runs"])?)
            .await?
            .is_empty()
        {
            jobs.push(name);
        }
    }
    jobs.sort();
    Ok(jobs)
}

async fn folder_names(warehouse: &Warehouse, parts: &[&str]) -> Result<Vec<String>, ErasureError> {
    let mut names: Vec<String> = warehouse
        .folders(&warehouse.key(parts)?)
        .await?
        .iter()
        .filter_map(|f| f.filename().map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
}

/// Remove erased customers from one table partition's rows. Returns the
/// kept rows and how many were removed.
fn without_erased(
    table: &str,
    batches: &[RecordBatch],
    suppression: &Suppression,
) -> Result<Option<(RecordBatch, u64)>, String> {
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    let schema = first.schema();
    let id_column = schema
        .index_of("customer_id")
        .ok()
        .filter(|&i| matches!(schema.field(i).data_type(), DataType::Utf8))
        .map(|i| (i, false))
        .or_else(|| {
            (table == "rejects")
                .then(|| schema.index_of("row").ok())
                .flatten()
                .map(|i| (i, true))
        });
    let Some((index, json)) = id_column else {
        return Ok(None);
    };
    let mut kept = Vec::new();
    let mut removed = 0u64;
    for batch in batches {
        let values = batch.column(index).as_string::<i32>();
        let keep: BooleanArray = (0..batch.num_rows())
            .map(|row| {
                let erased = values.is_valid(row)
                    && if json {
                        suppression.mentions(values.value(row))
                    } else {
                        suppression.contains(values.value(row))
                    };
                if erased {
                    removed += 1;
                }
                Some(!erased)
            })
            .collect();
        kept.push(filter_record_batch(batch, &keep).map_err(|e| e.to_string())?);
    }
    if removed == 0 {
        return Ok(None);
    }
    let batch = concat_batches(&schema, &kept).map_err(|e| e.to_string())?;
    Ok(Some((batch, removed)))
}

fn output_table(name: &str) -> Option<OutputTable> {
    OutputTable::ALL.into_iter().find(|t| t.name() == name)
}

/// Remove the erased customers from one period of one job, under its lease.
#[allow(clippy::too_many_arguments)]
async fn erase_period(
    warehouse: &Warehouse,
    config: &Config,
    job: &str,
    tables: &[String],
    period: Period,
    suppression: &Suppression,
    erasure_ids: &[String],
    run_id: &str,
    force: bool,
) -> Result<Option<PeriodErasure>, ErasureError> {
    let runs = [job, "_runs", &format!("period={period}")];
    let manifest_key = warehouse.key(&[&runs[..], &["_manifest.json"]].concat())?;
    let success_key = warehouse.key(&[&runs[..], &["_SUCCESS"]].concat())?;
    let erasing_key = warehouse.key(&[&runs[..], &[ERASING]].concat())?;
    let lease = Lease::acquire(
        warehouse,
        job,
        period,
        run_id,
        config.storage.lease_ttl,
        force,
    )
    .await?;
    let result = async {
        let erasing = warehouse.exists(&erasing_key).await?;
        let published = warehouse.exists(&success_key).await?;
        let mut rewritten = Vec::new();
        let mut removed = BTreeMap::new();
        for table in tables {
            let Some(output) = output_table(table) else {
                continue;
            };
            let Some(batches) = publish::read_table(warehouse, job, table, period).await? else {
                continue;
            };
            let rewrite = |message| ErasureError::Rewrite {
                table: table.clone(),
                job: job.to_string(),
                period,
                message,
            };
            if let Some((batch, count)) =
                without_erased(table, &batches, suppression).map_err(rewrite)?
            {
                removed.insert(table.clone(), count);
                rewritten
                    .push(TableData::encode(output, &batch).map_err(|e| rewrite(e.to_string()))?);
            }
        }
        if rewritten.is_empty() && !erasing {
            return Ok(None);
        }
        let manifest: Option<Manifest> = match warehouse.get(&manifest_key).await? {
            Some(bytes) => serde_json::from_slice(&bytes).ok(),
            None => None,
        };
        let outcome = match manifest {
            Some(mut manifest) if published || erasing => {
                warehouse
                    .put(&erasing_key, Bytes::from(run_id.to_string()))
                    .await?;
                for table in &rewritten {
                    manifest
                        .tables
                        .insert(table.table.name().to_string(), table.rows);
                }
                for id in erasure_ids {
                    if !manifest.erasures.contains(id) {
                        manifest.erasures.push(id.clone());
                    }
                }
                let period_tables = PeriodTables {
                    tables: rewritten,
                    segment_counts: Vec::new(),
                    movement_counts: Vec::new(),
                    customers: 0,
                };
                lease.ensure_held().await?;
                publish::publish(warehouse, job, period, &period_tables, &manifest).await?;
                warehouse.delete(&erasing_key).await?;
                if removed.is_empty() {
                    "completed"
                } else {
                    "republished"
                }
            }
            _ => {
                // Left unpublished by a killed run: remove the ids from what
                // is there, publish nothing (the next run republishes it).
                lease.ensure_held().await?;
                for table in &rewritten {
                    let name = table.table.name();
                    let key = warehouse.key(&[
                        job,
                        name,
                        &format!("period={period}"),
                        publish::PART_FILE,
                    ])?;
                    warehouse.put(&key, table.parquet.clone()).await?;
                }
                warehouse.delete(&erasing_key).await?;
                "rewritten (unpublished)"
            }
        };
        Ok(Some(PeriodErasure {
            job: job.to_string(),
            period,
            removed,
            outcome,
        }))
    }
    .await;
    if let Err(error) = lease.release().await {
        tracing::warn!(%error, "Could not release the publishing lease; it expires by itself.");
    }
    result
}

/// `segments forget`: record the request, then remove `ids` (and every id
/// of an unfinished earlier request) from every published table of every
/// period of every job of the warehouse.
pub async fn forget(
    config: &Config,
    ids: &[String],
    force: bool,
) -> Result<ForgetReport, ErasureError> {
    crate::storage::scoped(config.storage.clone(), async {
        let ids: BTreeSet<&str> = ids
            .iter()
            .map(|id| id.trim())
            .filter(|id| !id.is_empty())
            .collect();
        if ids.is_empty() {
            return Err(ErasureError::NoIds);
        }
        let salt = Salt::from_env()?.ok_or(ErasureError::NoSalt)?;
        let warehouse = Warehouse::open(&config.warehouse)?;
        check_salt(&warehouse, &salt, true).await?;
        let existing = requests(&warehouse).await?;
        let known: HashSet<&str> = existing
            .iter()
            .flat_map(|(_, r)| r.hashes.iter().map(String::as_str))
            .collect();
        let mut hashes: Vec<String> = ids
            .iter()
            .map(|id| salt.hash(id))
            .filter(|h| !known.contains(h.as_str()))
            .collect();
        hashes.sort();
        hashes.dedup();
        let already_erased = ids.len() - hashes.len();
        let today = chrono::Utc::now().date_naive().to_string();
        let erasure_id = if hashes.is_empty() {
            None
        } else {
            let erasure_id = format!("{today}-{}", uuid::Uuid::new_v4());
            let request = ErasureRequest {
                erasure_id: erasure_id.clone(),
                date: today.clone(),
                customers: hashes.len(),
                hashes: hashes.clone(),
                completed: None,
            };
            warehouse
                .put(
                    &log_key(&warehouse, &[REQUESTS, &format!("{erasure_id}.json")])?,
                    Bytes::from(serde_json::to_vec_pretty(&request).expect("request serialises")),
                )
                .await?;
            tracing::info!(erasure_id, customers = request.customers, "Recorded erasure request.");
            Some(erasure_id)
        };
        let requests = requests(&warehouse).await?;
        let pending: Vec<String> = requests
            .iter()
            .filter(|(_, r)| r.completed.is_none())
            .map(|(_, r)| r.erasure_id.clone())
            .collect();
        let suppression = Suppression {
            hashes: requests
                .iter()
                .flat_map(|(_, r)| r.hashes.iter().cloned())
                .collect(),
            salt,
        };
        let run_id = format!("forget-{}", uuid::Uuid::new_v4());
        let mut scanned = BTreeMap::new();
        let mut periods = Vec::new();
        for job in jobs(&warehouse).await? {
            let tables: Vec<String> = folder_names(&warehouse, &[&job])
                .await?
                .into_iter()
                .filter(|t| !t.starts_with('_') && t != "published_periods")
                .collect();
            let mut count = 0;
            for folder in folder_names(&warehouse, &[&job, "_runs"]).await? {
                let Some(period) = folder
                    .strip_prefix("period=")
                    .and_then(|p| p.parse::<Period>().ok())
                else {
                    continue;
                };
                count += 1;
                if let Some(done) = erase_period(
                    &warehouse,
                    config,
                    &job,
                    &tables,
                    period,
                    &suppression,
                    &pending,
                    &run_id,
                    force,
                )
                .await?
                {
                    tracing::info!(job = %done.job, period = %done.period, outcome = done.outcome, "Erased customers from a period.");
                    periods.push(done);
                }
            }
            scanned.insert(job, count);
        }
        // Every table is clean: mark the pending requests complete.
        for (key, mut request) in requests {
            if request.completed.is_none() {
                request.completed = Some(today.clone());
                warehouse
                    .put(
                        &key,
                        Bytes::from(
                            serde_json::to_vec_pretty(&request).expect("request serialises"),
                        ),
                    )
                    .await?;
            }
        }
        Ok(ForgetReport {
            erasure_id,
            new_customers: hashes.len(),
            already_erased,
            completed: pending,
            scanned,
            periods,
        })
    })
    .await
}

/// `segments_erased(customer_id)`: true for an erased id (the engine's
/// filter of erased customers).
#[derive(Debug)]
struct Erased {
    suppression: Arc<Suppression>,
    signature: datafusion::logical_expr::Signature,
}

// Two filters are the same function when they hold the same list.
impl PartialEq for Erased {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.suppression, &other.suppression)
    }
}

impl Eq for Erased {}

impl std::hash::Hash for Erased {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.suppression).hash(state);
    }
}

/// The name plans carry for the filter of erased customers.
pub const ERASED_UDF: &str = "segments_erased";

impl datafusion::logical_expr::ScalarUDFImpl for Erased {
    fn name(&self) -> &str {
        ERASED_UDF
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::error::Result<datafusion::logical_expr::ColumnarValue> {
        use datafusion::logical_expr::ColumnarValue;
        let array = args.args[0].to_array(args.number_rows)?;
        let text = datafusion::arrow::compute::cast(&array, &DataType::Utf8)?;
        let text = text.as_string::<i32>();
        let erased: BooleanArray = (0..text.len())
            .map(|row| Some(text.is_valid(row) && self.suppression.contains(text.value(row))))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(erased)))
    }
}

/// A customer-id filter for the engine: true for erased ids.
pub fn erased_udf(suppression: Arc<Suppression>) -> datafusion::logical_expr::ScalarUDF {
    datafusion::logical_expr::ScalarUDF::from(Erased {
        suppression,
        signature: datafusion::logical_expr::Signature::exact(
            vec![DataType::Utf8],
            datafusion::logical_expr::Volatility::Immutable,
        ),
    })
}

/// How the Ballista codec sends [`erased_udf`] to executors: the salt check
/// (an HMAC of a fixed text, which does not reveal the salt) and the hashes,
/// one per line; never the salt. `None` for any other function.
#[cfg_attr(not(feature = "ballista"), allow(dead_code))]
pub fn encode_erased_udf(udf: &datafusion::logical_expr::ScalarUDF) -> Option<String> {
    let erased = udf.inner().downcast_ref::<Erased>()?;
    let suppression = &erased.suppression;
    let mut text = hex(&hmac_sha256(
        suppression.salt.0.expose_secret().as_bytes(),
        CHECK_TEXT,
    ));
    let mut hashes: Vec<&String> = suppression.hashes.iter().collect();
    hashes.sort();
    for hash in hashes {
        text.push('\n');
        text.push_str(hash);
    }
    Some(text)
}

/// The filter of [`encode_erased_udf`] on an executor: with the salt of its
/// own environment, which must be the one the hashes were made with.
#[cfg_attr(not(feature = "ballista"), allow(dead_code))]
pub fn decode_erased_udf(text: &str) -> Result<datafusion::logical_expr::ScalarUDF, String> {
    let mut lines = text.lines();
    let check = lines.next().unwrap_or_default();
    let salt = Salt::from_env()
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "the run filters erased customers, which needs {SALT_ENV} (the salt of `segments forget`) \
                 in the environment of every Ballista executor and scheduler"
            )
        })?;
    if hex(&hmac_sha256(salt.0.expose_secret().as_bytes(), CHECK_TEXT)) != check {
        return Err(format!(
            "{SALT_ENV} of this Ballista process is not the salt of the erasure log; \
             erased customers would come back"
        ));
    }
    let hashes = lines.map(str::to_string).collect();
    Ok(erased_udf(Arc::new(Suppression { salt, hashes })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231, test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn rejects_rows_mention_ids_by_value() {
        let salt = Salt("0123456789abcdef-salt".to_string().into());
        let suppression = Suppression {
            hashes: [salt.hash("C42")].into_iter().collect(),
            salt,
        };
        assert!(suppression.contains("C42"));
        assert!(suppression.contains(" C42 "));
        assert!(!suppression.contains("C421"));
        assert!(suppression.mentions(r#"{"loyalty_card":"C42","amount":"x"}"#));
        assert!(!suppression.mentions(r#"{"loyalty_card":"C421","note":"C42 x"}"#));
    }
}

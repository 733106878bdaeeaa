//! Erasure (data lifecycle): `segments forget` removes customers from every
//! published table of every period of every job in a warehouse, with the
//! publishing guarantees of a run, and keeps a suppression list so that later
//! runs never bring them back.
//!
//! The log and the suppression it gives every run are
//! `crate::warehouse::erasure`.
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

use bytes::Bytes;

use crate::config::{Config, OutputTable};
use crate::model::ExitStatus;
use crate::model::Period;
use crate::model::SALT_ENV;
use crate::storage::{StorageError, Warehouse};
use crate::warehouse::TableData;
use crate::warehouse::delta;
use crate::warehouse::erasure::{
    ErasureError, ErasureRequest, REQUESTS, Salt, Suppression, check_salt, log_key, requests,
    without_erased,
};
use crate::warehouse::lease::{Lease, LeaseError};
use crate::warehouse::publish::{self, Manifest, PublishError};

pub use crate::warehouse::layout::ERASING;
use crate::warehouse::layout::{MANIFEST, RUNS, SUCCESS, partition, partition_period};

#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    #[error(
        "`segments forget` needs the secret salt of the erasure hashes in {SALT_ENV}, and it is not set\nhint: set {SALT_ENV} from your secret store (at least 16 characters, e.g. `openssl rand -hex 32`); once used it must never change"
    )]
    NoSalt,
    #[error("no customer id to forget: give --customer-id ID (repeatable) or --ids-file FILE")]
    NoIds,
    #[error("reading the ids file {path}")]
    IdsFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("rewriting {table} of {job} {period}: {message}")]
    Rewrite {
        table: String,
        job: String,
        period: Period,
        message: String,
    },
    #[error(transparent)]
    Log(#[from] ErasureError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
}

impl ForgetError {
    /// Exit codes of docs/design.md §6: a missing or wrong salt or no ids is
    /// a configuration error (2), storage 4, a live lease or anything else 1.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            ForgetError::NoSalt | ForgetError::NoIds | ForgetError::IdsFile { .. } => {
                ExitStatus::Invalid
            }
            ForgetError::Log(e) if e.is_config_error() => ExitStatus::Invalid,
            ForgetError::Storage(_)
            | ForgetError::Log(ErasureError::Storage(_))
            | ForgetError::Publish(PublishError::Storage(_))
            | ForgetError::Lease(LeaseError::Storage(_)) => ExitStatus::Storage,
            _ => ExitStatus::Internal,
        }
    }
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
pub fn read_ids_file(path: &std::path::Path) -> Result<Vec<String>, ForgetError> {
    let text = std::fs::read_to_string(path).map_err(|source| ForgetError::IdsFile {
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
async fn jobs(warehouse: &Warehouse) -> Result<Vec<String>, ForgetError> {
    let mut jobs = Vec::new();
    for folder in warehouse.folders(&warehouse.key(&[])?).await? {
        let Some(name) = folder.filename().map(str::to_string) else {
            continue;
        };
        if name.starts_with('_') {
            continue;
        }
        if !warehouse
            .folders(&warehouse.key(&[&name, RUNS])?)
            .await?
            .is_empty()
        {
            jobs.push(name);
        }
    }
    jobs.sort();
    Ok(jobs)
}

async fn folder_names(warehouse: &Warehouse, parts: &[&str]) -> Result<Vec<String>, ForgetError> {
    let mut names: Vec<String> = warehouse
        .folders(&warehouse.key(parts)?)
        .await?
        .iter()
        .filter_map(|f| f.filename().map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
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
) -> Result<Option<PeriodErasure>, ForgetError> {
    let runs = [job, RUNS, &partition(period)];
    let manifest_key = warehouse.key(&[&runs[..], &[MANIFEST]].concat())?;
    let success_key = warehouse.key(&[&runs[..], &[SUCCESS]].concat())?;
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
            let rewrite = |message| ForgetError::Rewrite {
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
                lease.ensure_held().await?;
                publish::publish(
                    warehouse,
                    config.tables.format,
                    job,
                    period,
                    &rewritten,
                    &manifest,
                )
                .await?;
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
                    publish::write_partition(warehouse, config.tables.format, job, period, table)
                        .await?;
                }
                warehouse.delete(&erasing_key).await?;
                "rewritten (unpublished)"
            }
        };
        // A Delta commit keeps the replaced files for readers of older
        // versions: delete them now, or the erased rows would stay in them.
        for table in &rewritten {
            let name = table.table.name();
            if delta::table_form(warehouse, job, name).await? == delta::TableForm::Delta {
                delta::vacuum(
                    warehouse,
                    job,
                    name,
                    std::time::Duration::ZERO,
                    delta::Vacuum::Removed,
                )
                .await?;
            }
        }
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
) -> Result<ForgetReport, ForgetError> {
    crate::storage::scoped(config.storage.clone(), async {
        let ids: BTreeSet<&str> = ids
            .iter()
            .map(|id| id.trim())
            .filter(|id| !id.is_empty())
            .collect();
        if ids.is_empty() {
            return Err(ForgetError::NoIds);
        }
        let salt = Salt::from_env()?.ok_or(ForgetError::NoSalt)?;
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
        let suppression = Suppression::new(
            salt,
            requests
                .iter()
                .flat_map(|(_, r)| r.hashes.iter().cloned())
                .collect(),
        );
        let run_id = format!("forget-{}", uuid::Uuid::new_v4());
        let mut scanned = BTreeMap::new();
        let mut periods = Vec::new();
        for job in jobs(&warehouse).await? {
            // Month facts hold customer ids: gone, not rewritten (the next
            // run computes them again, without the erased customers).
            let facts = crate::facts::delete_all(&warehouse, &job).await?;
            if facts > 0 {
                tracing::info!(job, files = facts, "Deleted the month facts.");
            }
            let tables: Vec<String> = folder_names(&warehouse, &[&job])
                .await?
                .into_iter()
                .filter(|t| !t.starts_with('_') && t != "published_periods")
                .collect();
            let mut count = 0;
            for folder in folder_names(&warehouse, &[&job, RUNS]).await? {
                let Some(period) = partition_period(&folder)
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

//! The publishing lease of one job and period (docs/design.md §5, guarantee 4): at
//! most one run publishes a period at a time.
//!
//! The lease is a sequence of objects under the period's `_runs` folder,
//! `_lease-<generation>.json`, each holding a run id, the holder (host and
//! pid) and an expiry. Taking the lease means *creating* the next generation
//! with a conditional put (`PutMode::Create`), which exactly one run can do
//! on every store (S3, GCS, Azure and local files alike; `PutMode::Update` is
//! not implemented for local files, so the lease never needs it). A run may
//! create the next generation only when the latest one is released or
//! expired, or with `--force`. The holder renews its own generation (a plain
//! overwrite: nobody else writes it) every third of the TTL from a
//! background task, and releases it at the end. A holder that finds a newer
//! generation has lost the lease and stops before publishing.
//!
//! A `Create` retried after a timeout can meet its own first write: the body
//! carries the run id, so a run that finds its own id holds the lease.
//!
//! Taking the lease also aborts the multipart uploads that earlier holders
//! were killed in the middle of (see `super::uploads`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::model::Period;
use crate::storage::{Created, StorageError, Warehouse};

use super::layout::{LEASE_PREFIX as PREFIX, RUNS, partition};
const SUFFIX: &str = ".json";

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error(
        "{job} {period} is being published by another run: run {run_id} on {holder}, whose lease {url} is live until {expires_at}\nhint: wait for that run to finish; if it died, its lease expires by itself (storage.lease_ttl) and the next run takes over; `segments run --force` breaks a live lease"
    )]
    Held {
        job: String,
        period: Period,
        run_id: String,
        holder: String,
        expires_at: String,
        url: String,
    },
    #[error(
        "this run lost its lease on {job} {period}: {reason}; it stopped before publishing more\nhint: another run took the period over; check which one published it (_runs/period={period}/_manifest.json)"
    )]
    Lost {
        job: String,
        period: Period,
        reason: String,
    },
    #[error("could not take the lease on {job} {period}: too many concurrent attempts")]
    Contended { job: String, period: Period },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The body of a lease object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeaseBody {
    pub generation: u64,
    pub run_id: String,
    pub holder: String,
    pub acquired_at: String,
    pub expires_at: String,
    pub released: bool,
    /// The run whose live lease this one broke (`--force`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broke: Option<String>,
}

impl LeaseBody {
    fn expires(&self) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&self.expires_at)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    fn is_live(&self, now: DateTime<Utc>) -> bool {
        !self.released && self.expires() > now
    }
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn holder() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "unknown-host".into());
    format!("{host} (pid {})", std::process::id())
}

/// The lease objects of a period, by generation.
async fn generations(
    warehouse: &Warehouse,
    folder: &Path,
) -> Result<Vec<(u64, Path)>, StorageError> {
    let mut found: Vec<(u64, Path)> = warehouse
        .list(folder)
        .await?
        .into_iter()
        .filter_map(|meta| {
            let name = meta.location.filename()?;
            let generation = name
                .strip_prefix(PREFIX)?
                .strip_suffix(SUFFIX)?
                .parse()
                .ok()?;
            Some((generation, meta.location))
        })
        .collect();
    found.sort();
    Ok(found)
}

async fn read_body(warehouse: &Warehouse, key: &Path) -> Result<Option<LeaseBody>, StorageError> {
    Ok(warehouse
        .get(key)
        .await?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
}

/// A held lease. Renewed in the background until [`Lease::release`].
pub struct Lease {
    warehouse: Warehouse,
    folder: Path,
    key: Path,
    job: String,
    period: Period,
    body: Arc<Mutex<LeaseBody>>,
    lost: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
    renewal: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("key", &self.key.as_ref())
            .finish()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

impl Lease {
    /// Take the lease of `job` and `period` for `run_id`, or fail fast with
    /// [`LeaseError::Held`] naming the live holder. `force` breaks a live lease.
    ///
    /// The new holder is then the period's only writer: it aborts the
    /// multipart uploads that earlier holders, killed mid-upload, left open
    /// ([`super::uploads::abort_left_open`]; a failure there is logged, the
    /// next holder tries again).
    pub async fn acquire(
        warehouse: &Warehouse,
        job: &str,
        period: Period,
        run_id: &str,
        ttl: Duration,
        force: bool,
    ) -> Result<Lease, LeaseError> {
        let lease = Self::take(warehouse, job, period, run_id, ttl, force).await?;
        if let Err(error) = super::uploads::abort_left_open(warehouse, job, period).await {
            warn!(job, %period, %error, "Could not look for multipart uploads left open by earlier runs; the next run looks again.");
        }
        Ok(lease)
    }

    async fn take(
        warehouse: &Warehouse,
        job: &str,
        period: Period,
        run_id: &str,
        ttl: Duration,
        force: bool,
    ) -> Result<Lease, LeaseError> {
        let folder = warehouse.key(&[job, RUNS, &partition(period)])?;
        for _attempt in 0..5 {
            let existing = generations(warehouse, &folder).await?;
            let now = Utc::now();
            let latest = match existing.last() {
                Some((generation, key)) => read_body(warehouse, key)
                    .await?
                    .map(|body| (*generation, body)),
                None => None,
            };
            let mut broke = None;
            let next = match &latest {
                Some((generation, body)) if body.run_id == run_id => {
                    // Our own earlier create (retried after a timeout).
                    return Ok(Self::start(
                        warehouse,
                        folder,
                        job,
                        period,
                        *generation,
                        body.clone(),
                        ttl,
                    )
                    .await?);
                }
                Some((generation, body)) if body.is_live(now) => {
                    if !force {
                        return Err(LeaseError::Held {
                            job: job.to_string(),
                            period,
                            run_id: body.run_id.clone(),
                            holder: body.holder.clone(),
                            expires_at: body.expires_at.clone(),
                            url: warehouse.url_of(&existing.last().expect("latest").1),
                        });
                    }
                    warn!(job, %period, broken_run = %body.run_id, holder = %body.holder, "Breaking a live lease (--force).");
                    broke = Some(body.run_id.clone());
                    generation + 1
                }
                Some((generation, body)) => {
                    if !body.released {
                        info!(job, %period, expired_run = %body.run_id, expired_at = %body.expires_at, "Taking over an expired lease.");
                    }
                    generation + 1
                }
                // No lease, or an unreadable latest one (a torn local write):
                // the next generation still decides by conditional create.
                None => existing.last().map(|(g, _)| g + 1).unwrap_or(1),
            };
            let body = LeaseBody {
                generation: next,
                run_id: run_id.to_string(),
                holder: holder(),
                acquired_at: timestamp(now),
                expires_at: timestamp(now + ttl),
                released: false,
                broke,
            };
            let key = lease_key(warehouse, job, period, next)?;
            let bytes = Bytes::from(serde_json::to_vec_pretty(&body).expect("lease serialises"));
            match warehouse.create(&key, bytes).await? {
                Created::Created => {
                    // Older generations are history: remove them (best effort).
                    for (generation, old) in &existing {
                        if *generation < next {
                            let _ = warehouse.delete(old).await;
                        }
                    }
                    info!(job, %period, run_id, generation = next, "Took the publishing lease.");
                    return Ok(Self::start(warehouse, folder, job, period, next, body, ttl).await?);
                }
                Created::AlreadyExists => {
                    // Either our own create, retried, or another run won this
                    // generation: look again.
                    if let Some(found) = read_body(warehouse, &key).await?
                        && found.run_id == run_id
                    {
                        return Ok(
                            Self::start(warehouse, folder, job, period, next, found, ttl).await?,
                        );
                    }
                }
            }
        }
        Err(LeaseError::Contended {
            job: job.to_string(),
            period,
        })
    }

    async fn start(
        warehouse: &Warehouse,
        folder: Path,
        job: &str,
        period: Period,
        generation: u64,
        body: LeaseBody,
        ttl: Duration,
    ) -> Result<Lease, StorageError> {
        let key = lease_key(warehouse, job, period, generation)?;
        let body = Arc::new(Mutex::new(body));
        let lost = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let renewal = tokio::spawn(renew_loop(
            warehouse.clone(),
            folder.clone(),
            key.clone(),
            body.clone(),
            lost.clone(),
            stop.clone(),
            ttl,
        ));
        Ok(Lease {
            warehouse: warehouse.clone(),
            folder,
            key,
            job: job.to_string(),
            period,
            body,
            lost,
            stop,
            renewal,
        })
    }

    pub fn run_id(&self) -> String {
        self.body.lock().unwrap().run_id.clone()
    }

    /// Check, against the store, that this run still holds the lease: no
    /// newer generation, and not expired by our own clock.
    pub async fn ensure_held(&self) -> Result<(), LeaseError> {
        let lost = |reason: String| LeaseError::Lost {
            job: self.job.clone(),
            period: self.period,
            reason,
        };
        if let Some(reason) = self.lost.lock().unwrap().clone() {
            return Err(lost(reason));
        }
        let (generation, run_id) = {
            let body = self.body.lock().unwrap();
            (body.generation, body.run_id.clone())
        };
        // Our generation must still carry our run id (defence against a
        // store whose conditional create is not atomic).
        if let Some(found) = read_body(&self.warehouse, &self.key).await?
            && found.run_id != run_id
        {
            return Err(lost(format!(
                "generation {generation} of the lease holds run {} on {}",
                found.run_id, found.holder
            )));
        }
        if let Some((newer, key)) = generations(&self.warehouse, &self.folder)
            .await?
            .into_iter()
            .find(|(g, _)| *g > generation)
        {
            let by = read_body(&self.warehouse, &key)
                .await?
                .map(|b| format!("run {} on {}", b.run_id, b.holder))
                .unwrap_or_else(|| "another run".into());
            return Err(lost(format!(
                "generation {newer} of the lease was taken by {by}"
            )));
        }
        let expires = self.body.lock().unwrap().expires();
        if expires <= Utc::now() {
            return Err(lost(format!(
                "it expired at {} before it could be renewed",
                timestamp(expires)
            )));
        }
        Ok(())
    }

    /// Release the lease (the next run takes it at once) and stop renewing.
    pub async fn release(mut self) -> Result<(), LeaseError> {
        self.stop.store(true, Ordering::SeqCst);
        self.renewal.abort();
        // Wait until the renewal task is gone, so no renewal lands after this.
        let _ = (&mut self.renewal).await;
        let body = {
            let mut body = self.body.lock().unwrap();
            body.released = true;
            body.expires_at = timestamp(Utc::now());
            body.clone()
        };
        // Only release our own generation if it is still the latest.
        let newer = generations(&self.warehouse, &self.folder)
            .await?
            .iter()
            .any(|(g, _)| *g > body.generation);
        if !newer {
            let bytes = Bytes::from(serde_json::to_vec_pretty(&body).expect("lease serialises"));
            self.warehouse.put(&self.key, bytes).await?;
        }
        Ok(())
    }
}

fn lease_key(
    warehouse: &Warehouse,
    job: &str,
    period: Period,
    generation: u64,
) -> Result<Path, StorageError> {
    warehouse.key(&[
        job,
        RUNS,
        &partition(period),
        &format!("{PREFIX}{generation:012}{SUFFIX}"),
    ])
}

async fn renew_loop(
    warehouse: Warehouse,
    folder: Path,
    key: Path,
    body: Arc<Mutex<LeaseBody>>,
    lost: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
    ttl: Duration,
) {
    let every = (ttl / 3).max(Duration::from_millis(200));
    loop {
        tokio::time::sleep(every).await;
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let generation = body.lock().unwrap().generation;
        match generations(&warehouse, &folder).await {
            Ok(found) => {
                if let Some((newer, _)) = found.iter().find(|(g, _)| *g > generation) {
                    *lost.lock().unwrap() = Some(format!(
                        "generation {newer} of the lease was taken by another run"
                    ));
                    warn!("Lost the publishing lease to another run.");
                    return;
                }
            }
            Err(error) => {
                warn!(%error, "Could not check the publishing lease; retrying.");
                continue;
            }
        }
        let renewed = {
            let body = body.lock().unwrap();
            if body.expires() <= Utc::now() {
                *lost.lock().unwrap() = Some(format!(
                    "it expired at {} before it could be renewed",
                    body.expires_at
                ));
                return;
            }
            let mut renewed = body.clone();
            renewed.expires_at = timestamp(Utc::now() + ttl);
            renewed
        };
        let bytes = Bytes::from(serde_json::to_vec_pretty(&renewed).expect("lease serialises"));
        match warehouse.put(&key, bytes).await {
            Ok(()) => {
                if !stop.load(Ordering::SeqCst) {
                    *body.lock().unwrap() = renewed;
                }
            }
            Err(error) => warn!(%error, "Could not renew the publishing lease; retrying."),
        }
    }
}

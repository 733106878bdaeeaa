//! The multipart uploads of a period's objects, recorded so that none is
//! left open on the bucket (docs/design.md §5).
//!
//! A table partition over `storage.multipart_threshold` goes up as a
//! multipart upload. A run that fails aborts it; a run that is killed
//! (SIGKILL, OOM, a lost node) cannot, and object stores keep (and bill)
//! an open upload's parts forever, unlisted by object_store. So on stores
//! whose uploads have ids (S3, GCS), each upload is recorded before its
//! first part as `_runs/period=YYYY-MM/_upload-<uuid>.json` (the key and
//! the upload id), and the record is deleted once the upload is complete
//! or aborted. The next run of the period, once it holds the period's lease
//! (so no live run is still writing them), aborts the uploads of the
//! records it finds and deletes the records ([`abort_left_open`]).

use bytes::Bytes;
use object_store::path::Path;
use tracing::{info, warn};

use super::layout::{RUNS, UPLOAD_PREFIX, UPLOAD_SUFFIX, partition};
use crate::model::Period;
use crate::storage::{StorageError, Warehouse};

/// Write one object of `job`'s `period` ([`Warehouse::put`]); a multipart
/// upload is recorded in the period's run folder while it is open.
pub async fn put(
    warehouse: &Warehouse,
    job: &str,
    period: Period,
    key: &Path,
    bytes: Bytes,
) -> Result<(), StorageError> {
    let record = warehouse.key(&[
        job,
        RUNS,
        &partition(period),
        &format!("{UPLOAD_PREFIX}{}{UPLOAD_SUFFIX}", uuid::Uuid::new_v4()),
    ])?;
    warehouse.put_recorded(key, bytes, &record).await
}

/// The upload records in a period's run folder.
pub async fn records(
    warehouse: &Warehouse,
    job: &str,
    period: Period,
) -> Result<Vec<Path>, StorageError> {
    let folder = warehouse.key(&[job, RUNS, &partition(period)])?;
    let mut found: Vec<Path> = warehouse
        .list(&folder)
        .await?
        .into_iter()
        .map(|meta| meta.location)
        .filter(|key| {
            key.filename().is_some_and(|name| {
                name.starts_with(UPLOAD_PREFIX) && name.ends_with(UPLOAD_SUFFIX)
            })
        })
        .collect();
    found.sort();
    Ok(found)
}

/// What [`abort_left_open`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LeftOpen {
    /// Uploads aborted (or found already gone), by key relative to the
    /// warehouse.
    pub aborted: Vec<String>,
    /// Records that could not be handled (kept for the next run).
    pub failed: usize,
}

/// Abort the multipart uploads that earlier runs of `job`'s `period` left
/// open (killed mid-upload) and delete their records. Call it only while
/// holding the period's lease: a live run's uploads are recorded there too.
/// An upload that cannot be aborted is logged and its record kept, for the
/// next run; only a failure to list the run folder is an error.
pub async fn abort_left_open(
    warehouse: &Warehouse,
    job: &str,
    period: Period,
) -> Result<LeftOpen, StorageError> {
    let mut outcome = LeftOpen::default();
    for record in records(warehouse, job, period).await? {
        match warehouse.abort_recorded(&record).await {
            Ok(Some(upload)) => {
                info!(
                    job,
                    %period,
                    key = %upload.key,
                    upload_id = %upload.upload_id,
                    started_at = %upload.started_at,
                    "Aborted a multipart upload left open by an earlier run of this period (killed while uploading)."
                );
                outcome.aborted.push(upload.key);
            }
            // Deleted meanwhile: nothing left to do.
            Ok(None) => {}
            Err(error) => {
                warn!(
                    job,
                    %period,
                    %error,
                    "Could not abort a multipart upload left open by an earlier run; its record stays and the next run of this period tries again."
                );
                outcome.failed += 1;
            }
        }
    }
    Ok(outcome)
}

//! Restatement (data lifecycle): which published periods were computed from
//! input files that changed since they were published, and which later
//! periods must follow them because their migrations read those snapshots.
//!
//! Every manifest lists the job's input files with their size, ETag and
//! modification time ([`crate::model::InputFile`]). A period's inputs have
//! **changed** when, among the files *relevant* to it, one was added, one
//! was removed, or one has another size, another ETag (when both sides have
//! one) or, without ETags, another modification time. A file is relevant to
//! period `P` unless a Hive folder of the input's `partition_columns` dates it
//! after `P` (`month=2024-07/` is not relevant to 2024-06): a file dated by
//! its folder holds rows of that month or later, so the next months' normal
//! arrivals never flag older periods. A late file must therefore land in the
//! folder of the oldest month it holds rows for (or in a folder that names
//! no month, which is relevant to every period).
//!
//! **Cascade**: period `Q` is recomputed too when `Q − 1` is and `Q`'s
//! migrations were made from `Q − 1`'s published snapshot (manifest
//! `from_side: published`), so that its "from" side is the restated one.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::config::{Config, Job};
use crate::engine::EngineError;
use crate::inputs;
use crate::model::ExitStatus;
use crate::model::InputFile;
use crate::model::Period;
use crate::storage::{StorageError, Warehouse};
use crate::warehouse::publish::{self, Manifest, PublishError};

#[derive(Debug, thiserror::Error)]
pub enum RestateError {
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("listing the inputs of job {job}")]
    Inputs {
        job: String,
        #[source]
        source: EngineError,
    },
}

impl RestateError {
    /// Exit codes of docs/design.md §6: storage 4, an input that cannot be listed 3.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            RestateError::Storage(_) | RestateError::Publish(PublishError::Storage(_)) => {
                ExitStatus::Storage
            }
            RestateError::Inputs { source, .. }
                if crate::storage::is_storage_failure(
                    source as &(dyn std::error::Error + 'static),
                ) =>
            {
                ExitStatus::Storage
            }
            RestateError::Inputs { .. } => ExitStatus::InputFailed,
            RestateError::Publish(_) => ExitStatus::Internal,
        }
    }
}

/// How one input file differs from its fingerprint in a manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Modified,
    Removed,
}

impl Change {
    pub fn word(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Modified => "modified",
            Change::Removed => "removed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileChange {
    pub change: Change,
    pub input: String,
    pub path: String,
}

/// A published period and what changed since.
#[derive(Debug, Clone)]
pub struct PeriodStatus {
    pub period: Period,
    pub manifest: Manifest,
    /// Relevant input files added, modified or removed since publication.
    pub changes: Vec<FileChange>,
    /// Published with another job file or other rules than the working copy.
    pub rules_changed: bool,
    /// Not changed itself, but its migrations were made from the previous
    /// period's snapshot, which is recomputed.
    pub cascade: bool,
}

impl PeriodStatus {
    /// Will `backfill --changed` recompute it?
    pub fn recompute(&self) -> bool {
        !self.changes.is_empty() || self.cascade
    }
}

/// The month a Hive folder of `partition_columns` dates a file in
/// (`month=2024-03` or `day=2024-03-15`), if any; the earliest when several.
pub fn month_of(path: &str, partition_columns: &[String]) -> Option<Period> {
    path.split('/')
        .filter_map(|segment| segment.split_once('='))
        .filter(|(name, _)| partition_columns.iter().any(|c| c == name))
        .filter_map(|(_, value)| {
            let month = value.get(..7)?;
            let rest = &value[7..];
            let tail_ok = rest.is_empty()
                || (rest.len() == 3
                    && rest.starts_with('-')
                    && rest[1..].bytes().all(|b| b.is_ascii_digit()));
            tail_ok.then(|| month.parse::<Period>().ok()).flatten()
        })
        .min()
}

fn relevant(file: &InputFile, period: Period, partitions: &BTreeMap<String, Vec<String>>) -> bool {
    let columns = partitions
        .get(&file.input)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    month_of(&file.path, columns).is_none_or(|month| month <= period)
}

fn modified(before: &InputFile, now: &InputFile) -> bool {
    if before.size != now.size {
        return true;
    }
    match (&before.e_tag, &now.e_tag) {
        (Some(a), Some(b)) => a != b,
        _ => match (&before.last_modified, &now.last_modified) {
            (Some(a), Some(b)) => a != b,
            // Nothing else to compare: the same size counts as unchanged.
            _ => false,
        },
    }
}

/// The relevant files of `period` that differ between a manifest's
/// fingerprints and the current listing. `partitions`: input → its Hive
/// partition columns.
pub fn compare(
    period: Period,
    published: &[InputFile],
    current: &[InputFile],
    partitions: &BTreeMap<String, Vec<String>>,
) -> Vec<FileChange> {
    let key = |f: &InputFile| (f.input.clone(), f.path.clone());
    let before: BTreeMap<_, _> = published
        .iter()
        .filter(|f| relevant(f, period, partitions))
        .map(|f| (key(f), f))
        .collect();
    let now: BTreeMap<_, _> = current
        .iter()
        .filter(|f| relevant(f, period, partitions))
        .map(|f| (key(f), f))
        .collect();
    let mut changes = Vec::new();
    for ((input, path), file) in &now {
        let change = match before.get(&(input.clone(), path.clone())) {
            None => Some(Change::Added),
            Some(old) if modified(old, file) => Some(Change::Modified),
            Some(_) => None,
        };
        if let Some(change) = change {
            changes.push(FileChange {
                change,
                input: input.clone(),
                path: path.clone(),
            });
        }
    }
    for (input, path) in before.keys() {
        if !now.contains_key(&(input.clone(), path.clone())) {
            changes.push(FileChange {
                change: Change::Removed,
                input: input.clone(),
                path: path.clone(),
            });
        }
    }
    changes.sort_by(|a, b| (&a.path, a.change).cmp(&(&b.path, b.change)));
    changes
}

/// Every published period of `job` (oldest first) with what changed since.
pub async fn status(job: &Job, config: &Config) -> Result<Vec<PeriodStatus>, RestateError> {
    crate::storage::scoped(config.storage.clone(), async {
        let warehouse = Warehouse::open(&config.warehouse)?;
        let published = publish::published_periods(&warehouse, &job.name).await?;
        if published.is_empty() {
            return Ok(Vec::new());
        }
        let read = inputs::inputs_read(config, &job.inputs);
        let current = inputs::list_inputs(config, &job.inputs)
            .await
            .map_err(|source| RestateError::Inputs {
                job: job.name.clone(),
                source,
            })?;
        let partitions: BTreeMap<String, Vec<String>> = config
            .inputs
            .values()
            .map(|i| (i.name.clone(), i.partition_columns.clone()))
            .collect();
        let rule_hash = job.rule_hash(config);
        let mut statuses: Vec<PeriodStatus> = Vec::new();
        let mut recomputed: BTreeSet<Period> = BTreeSet::new();
        for (period, manifest) in published {
            // Only the inputs this job reads now: another job's inputs in an
            // older manifest are not this job's concern.
            let inputs: Vec<InputFile> = manifest
                .inputs
                .iter()
                .filter(|f| read.contains(&f.input))
                .cloned()
                .collect();
            let changes = compare(period, &inputs, &current, &partitions);
            let cascade = changes.is_empty()
                && recomputed.contains(&period.previous())
                && manifest.from_side == crate::model::FromSide::Published;
            let rules_changed =
                manifest.job_hash != job.job_hash || manifest.rule_hash != rule_hash;
            let status = PeriodStatus {
                period,
                manifest,
                changes,
                rules_changed,
                cascade,
            };
            if status.recompute() {
                recomputed.insert(period);
            }
            statuses.push(status);
        }
        Ok(statuses)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64, e_tag: Option<&str>) -> InputFile {
        InputFile {
            input: "transactions".into(),
            path: path.into(),
            size,
            e_tag: e_tag.map(Into::into),
            last_modified: None,
        }
    }

    #[test]
    fn dates_files_by_their_hive_folder() {
        let columns = vec!["month".to_string()];
        assert_eq!(
            month_of("data/month=2024-03/part-0.parquet", &columns),
            "2024-03".parse().ok()
        );
        assert_eq!(
            month_of("data/month=2024-03-15/x.parquet", &columns),
            "2024-03".parse().ok()
        );
        assert_eq!(month_of("data/region=2024-03/x.parquet", &columns), None);
        assert_eq!(month_of("data/month=march/x.parquet", &columns), None);
    }

    #[test]
    fn later_folders_are_not_relevant_and_changes_are_classified() {
        let partitions = BTreeMap::from([("transactions".to_string(), vec!["month".to_string()])]);
        let period: Period = "2024-03".parse().unwrap();
        let before = vec![
            file("d/month=2024-02/a.parquet", 10, Some("e1")),
            file("d/month=2024-03/a.parquet", 10, Some("e2")),
            file("d/month=2024-04/a.parquet", 10, Some("e3")),
        ];
        let now = vec![
            file("d/month=2024-02/a.parquet", 10, Some("e1")),
            file("d/month=2024-03/a.parquet", 10, Some("e9")),
            file("d/month=2024-03/late.parquet", 5, Some("e4")),
            file("d/month=2024-04/a.parquet", 11, Some("e5")),
            file("d/month=2024-05/a.parquet", 11, Some("e6")),
        ];
        let changes = compare(period, &before, &now, &partitions);
        let words: Vec<_> = changes
            .iter()
            .map(|c| (c.change, c.path.as_str()))
            .collect();
        assert_eq!(
            words,
            vec![
                (Change::Modified, "d/month=2024-03/a.parquet"),
                (Change::Added, "d/month=2024-03/late.parquet"),
            ]
        );
        let earlier: Period = "2024-02".parse().unwrap();
        assert!(compare(earlier, &before, &now, &partitions).is_empty());
        let removed = compare(period, &before, &now[..1], &partitions);
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].change, Change::Removed);
    }
}

//! Retention (data lifecycle): a run of period `P` deletes what is older
//! than the configured retention, counted back from `P` (not from the
//! clock, so that a rerun or a backfill deletes the same things):
//!
//! - `retention.months: N` — every table partition and the run folder
//!   (`_runs/period=Q/`: manifest, `_SUCCESS`, leases, upload records, whose
//!   open uploads are aborted first) of each period
//!   `Q ≤ P − N`;
//! - `retention.rejects_months: M` (≤ N) — the `rejects` partitions of each
//!   `Q ≤ P − M` (they hold raw input rows); the period stays published.
//!
//! Crash safety: the `_SUCCESS` markers of the expired periods go first and
//! `published_periods` is rebuilt, so readers stop seeing them before any
//! table partition is deleted; the run folders go last, so a run killed in
//! between leaves unpublished leftovers that the next run's retention
//! deletes (it looks at every table folder, not only at `_runs`).
//!
//! A Delta table (`warehouse.format: delta`) loses its expired periods by
//! one commit that removes their files from the table; then every run
//! VACUUMs it: the files no version uses any more (replaced by a rerun,
//! removed by retention, left by a failed run) are deleted once older than
//! `warehouse.vacuum_after`.

use std::collections::BTreeSet;

use crate::config::{RetentionSettings, TableFormat, TableSettings};
use crate::model::Period;
use crate::storage::Warehouse;
use crate::warehouse::delta::{self, TableForm};
use crate::warehouse::layout::{RUNS, SUCCESS, partition, partition_period};
use crate::warehouse::publish::{self, PublishError};

/// What a run's retention deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deleted {
    /// Periods deleted whole.
    pub periods: Vec<Period>,
    /// Periods whose `rejects` only were deleted.
    pub rejects: Vec<Period>,
    pub objects: usize,
    /// Files deleted by the VACUUM of Delta tables.
    pub vacuumed: usize,
}

fn period_of(folder: &object_store::path::Path) -> Option<Period> {
    folder.filename().and_then(partition_period)
}

async fn delete_all(
    warehouse: &Warehouse,
    folder: &object_store::path::Path,
) -> Result<usize, PublishError> {
    let mut deleted = 0;
    warehouse.clean_staged(folder).await?;
    for object in warehouse.list(folder).await? {
        warehouse.delete(&object.location).await?;
        deleted += 1;
    }
    warehouse.remove_empty_folder(folder).await?;
    Ok(deleted)
}

/// Apply `settings` to `job` after a run of `period`.
pub async fn apply(
    warehouse: &Warehouse,
    job: &str,
    period: Period,
    settings: &RetentionSettings,
    tables_settings: &TableSettings,
) -> Result<Deleted, PublishError> {
    let mut deleted = Deleted::default();
    let cutoff = settings.months.map(|m| period.add_months(-(m as i32)));
    let rejects_cutoff = settings
        .rejects_months
        .map(|m| period.add_months(-(m as i32)));
    if cutoff.is_none() && rejects_cutoff.is_none() && tables_settings.format == TableFormat::Hive {
        return Ok(deleted);
    }
    let tables: Vec<String> = warehouse
        .folders(&warehouse.key(&[job])?)
        .await?
        .iter()
        .filter_map(|f| f.filename().map(str::to_string))
        .filter(|t| !t.starts_with('_'))
        .collect();
    let runs: BTreeSet<Period> = warehouse
        .folders(&warehouse.key(&[job, RUNS])?)
        .await?
        .iter()
        .filter_map(period_of)
        .collect();
    let mut partitions: Vec<(String, Period)> = Vec::new();
    let mut delta_tables: BTreeSet<String> = BTreeSet::new();
    for table in &tables {
        if delta::table_form(warehouse, job, table).await? == TableForm::Delta {
            // A Delta table's periods are those of its current version; its
            // folders also hold files that only older versions use.
            for q in delta::periods(warehouse, job, table).await? {
                partitions.push((table.clone(), q));
            }
            delta_tables.insert(table.clone());
            continue;
        }
        for folder in warehouse.folders(&warehouse.key(&[job, table])?).await? {
            if let Some(q) = period_of(&folder) {
                partitions.push((table.clone(), q));
            }
        }
    }
    // Deletes the partitions `(table, period)` of `doomed`: Hive folders one
    // by one, each Delta table's in one commit.
    let delete_partitions = async |doomed: Vec<&(String, Period)>| -> Result<usize, PublishError> {
        let mut objects = 0;
        let mut by_delta_table: std::collections::BTreeMap<&str, BTreeSet<Period>> =
            Default::default();
        for (table, q) in doomed {
            if delta_tables.contains(table) {
                by_delta_table.entry(table).or_default().insert(*q);
            } else {
                let folder = warehouse.key(&[job, table, &partition(*q)])?;
                objects += delete_all(warehouse, &folder).await?;
            }
        }
        for (table, periods) in by_delta_table {
            objects += delta::delete_periods(warehouse, job, table, &periods).await?;
        }
        Ok(objects)
    };
    if let Some(cutoff) = cutoff {
        let expired: BTreeSet<Period> = runs
            .iter()
            .copied()
            .chain(partitions.iter().map(|(_, q)| *q))
            .filter(|q| *q <= cutoff)
            .collect();
        if !expired.is_empty() {
            // Unpublish first.
            for q in &expired {
                let run_folder = partition(*q);
                warehouse
                    .delete(&warehouse.key(&[job, RUNS, &run_folder, SUCCESS])?)
                    .await?;
            }
            publish::rebuild_published_periods(warehouse, tables_settings.format, job).await?;
            deleted.objects += delete_partitions(
                partitions
                    .iter()
                    .filter(|(_, q)| expired.contains(q))
                    .collect(),
            )
            .await?;
            for q in &expired {
                // Its records go with the folder: abort their uploads first.
                super::uploads::abort_left_open(warehouse, job, *q).await?;
                let folder = warehouse.key(&[job, RUNS, &partition(*q)])?;
                deleted.objects += delete_all(warehouse, &folder).await?;
            }
            deleted.periods = expired.into_iter().collect();
        }
    }
    if let Some(rejects_cutoff) = rejects_cutoff {
        let doomed: Vec<&(String, Period)> = partitions
            .iter()
            .filter(|(table, q)| {
                table == "rejects" && *q <= rejects_cutoff && !deleted.periods.contains(q)
            })
            .collect();
        deleted.rejects = doomed.iter().map(|(_, q)| *q).collect();
        deleted.objects += delete_partitions(doomed).await?;
    }
    for table in &delta_tables {
        deleted.vacuumed += delta::vacuum(
            warehouse,
            job,
            table,
            tables_settings.vacuum_after,
            delta::Vacuum::Full,
        )
        .await?;
    }
    Ok(deleted)
}

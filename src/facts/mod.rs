//! Month facts of incremental steps (`incremental: month`, see
//! docs/guides/incremental.md): a step that groups `transactions` is computed
//! once per month of `ordered_date`, kept in the warehouse under
//! `<job>/_facts/<step>/month=YYYY-MM/` with the fingerprint of what it was
//! computed from, and merged for a period. A run computes only the months
//! whose fingerprint changed (a new or changed input file that may hold
//! lines of the month, other mapping, step SQL, erasures or identity merges)
//! and trusts a fact file only if its size and ETag are the ones recorded.

mod accounting;
mod fingerprint;
mod shape;
mod store;

pub use accounting::{InputMonths, MonthAccounting};
pub use fingerprint::{Fingerprint, digest_of as digest};
pub use shape::{Merge, Mergeable, NotMergeable};

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use datafusion::catalog::TableProvider;
use datafusion::error::DataFusionError;
use datafusion::prelude::{DataFrame, SessionContext};
use futures::StreamExt;

use crate::config::{Config, Incremental, Job, SqlOrigin, Step};
use crate::model::{ExitStatus, InputFile, Period};
use crate::storage::{StorageError, Warehouse};

#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    #[error(
        "step `{step}` ({origin}) is declared `incremental: month` but cannot be computed per month: {message}\nhint: make it group `transactions` and return its keys and MIN, MAX, SUM or COUNT aggregates, or remove `incremental`"
    )]
    NotMergeable {
        step: String,
        origin: SqlOrigin,
        message: String,
    },
    #[error(
        "step `{step}` ({origin}): {source}\nhint: a step declared `incremental: month` is planned on the inputs alone, before the other steps: fix its SQL, or remove `incremental` if it reads an earlier step"
    )]
    Plan {
        step: String,
        origin: SqlOrigin,
        #[source]
        source: DataFusionError,
    },
    #[error("computing the month facts of step `{step}`")]
    Query {
        step: String,
        #[source]
        source: DataFusionError,
    },
    #[error("writing the month facts of step `{step}` in {dir}")]
    Local {
        step: String,
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{url} was written but cannot be found\nhint: check the warehouse's consistency and permissions, then rerun"
    )]
    Vanished { url: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl FactsError {
    /// Exit codes of docs/design.md §6.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            FactsError::NotMergeable { .. } | FactsError::Plan { .. } => ExitStatus::Invalid,
            FactsError::Storage(_) | FactsError::Vanished { .. } => ExitStatus::Storage,
            FactsError::Query { .. } | FactsError::Local { .. } => ExitStatus::Internal,
        }
    }
}

/// What a run needs to fingerprint the months: the files of `transactions`
/// and what else shapes a line before the step reads it.
pub struct Sources<'a> {
    pub coverage: &'a FileCoverage,
    /// Digest of the erased customers (empty when none).
    pub erasures: String,
    /// Digest of the identity merges in force (empty when none).
    pub merges: String,
}

/// The files of `transactions` and the days each may hold (the Parquet
/// statistics of `ordered_at`): read once per run, for the month facts and
/// the accounting by month.
pub struct FileCoverage {
    files: Vec<InputFile>,
    ranges: Vec<fingerprint::Coverage>,
}

impl FileCoverage {
    /// The coverage of the `transactions` files among `files`.
    pub async fn of(config: &Config, files: &[InputFile]) -> FileCoverage {
        let files: Vec<InputFile> = files
            .iter()
            .filter(|f| f.input == "transactions")
            .cloned()
            .collect();
        let ranges = fingerprint::file_ranges(config, &files.iter().collect::<Vec<_>>()).await;
        FileCoverage { files, ranges }
    }

    /// The months up to `period` (every month when `None`) and the files
    /// that may hold lines of each; `None` when some file may hold any
    /// month.
    fn months(&self, period: Option<Period>) -> Option<BTreeMap<NaiveDate, Vec<&InputFile>>> {
        fingerprint::months(&self.files.iter().collect::<Vec<_>>(), &self.ranges, period)
    }
}

/// The session extension the pipeline reads: for each incremental step, how
/// it merges and the month facts it merges.
pub struct MonthFacts {
    steps: BTreeMap<String, (Arc<Mergeable>, Arc<dyn TableProvider>)>,
    /// The closed months this run computed, stored by [`MonthFacts::store`]
    /// once the period is published.
    to_store: Vec<ToStore>,
    /// The facts this run computed (stored or not), read from here as long
    /// as the session lives.
    _local: tempfile::TempDir,
}

/// One computed month waiting for the period's publication.
struct ToStore {
    step: String,
    fingerprint: Fingerprint,
    /// Its local fact files; none for a month with no group.
    files: Option<Vec<std::path::PathBuf>>,
}

impl MonthFacts {
    /// The month facts prepared in `ctx` ([`prepare`]), if any.
    pub fn of(ctx: &SessionContext) -> Option<Arc<MonthFacts>> {
        ctx.state().config().get_extension::<MonthFacts>()
    }

    /// Store the closed months this run computed under `job`'s `_facts/`.
    /// Called after the period is published: a run that fails before
    /// leaves the warehouse as it found it, facts included. Returns the
    /// number of months stored, or the first error once every month was
    /// tried.
    pub async fn store(
        &self,
        warehouse: &Warehouse,
        job: &str,
        run_id: &str,
    ) -> Result<usize, FactsError> {
        store_every(self.to_store.iter().map(|month| {
            store::store(
                warehouse,
                job,
                &month.step,
                &month.fingerprint,
                month.files.as_ref(),
                run_id,
            )
        }))
        .await
    }
}

/// Run every store of `months`, 8 at a time: one that fails is computed
/// again by the next run, the others are kept. Returns how many were
/// stored, or the first error once every one was tried.
async fn store_every<T>(
    months: impl Iterator<Item = impl std::future::Future<Output = Result<T, FactsError>>>,
) -> Result<usize, FactsError> {
    let results = futures::stream::iter(months)
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    let mut stored = 0;
    let mut first_error = None;
    for result in results {
        match result {
            Ok(_) => stored += 1,
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(stored),
    }
}

impl std::fmt::Debug for MonthFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.steps.keys()).finish()
    }
}

/// The result of `step` for the period ending at `period_end`, merged from
/// its month facts, when the run prepared them ([`prepare`]); `None` when
/// the step is computed from its SQL.
pub fn merged(
    ctx: &SessionContext,
    step: &str,
    period_end: NaiveDate,
) -> Option<datafusion::error::Result<DataFrame>> {
    // Facts are whole months: a period that ends mid-month (an ad hoc
    // range) is computed from the step's SQL.
    if period_end.day() != 1 {
        return None;
    }
    let facts = MonthFacts::of(ctx)?;
    let (mergeable, table) = facts.steps.get(step)?;
    Some(
        ctx.read_table(table.clone())
            .and_then(|frame| mergeable.merge(frame, period_end)),
    )
}

/// Check that every incremental step of `job` can be computed per month
/// (`segments validate`: against the canonical inputs, no data read).
pub async fn check(ctx: &SessionContext, job: &Job) -> Result<(), FactsError> {
    check_steps(ctx, &incremental_steps(job)).await
}

async fn check_steps(ctx: &SessionContext, steps: &[&Step]) -> Result<(), FactsError> {
    for step in steps {
        mergeable(ctx, step).await?;
    }
    Ok(())
}

async fn mergeable(ctx: &SessionContext, step: &Step) -> Result<Mergeable, FactsError> {
    let shape = Mergeable::of(ctx, step)
        .await
        .map_err(|source| FactsError::Plan {
            step: step.name.clone(),
            origin: step.origin.clone(),
            source,
        })?;
    shape.map_err(|e| FactsError::NotMergeable {
        step: step.name.clone(),
        origin: step.origin.clone(),
        message: e.0,
    })
}

/// Whether `job` has a step declared `incremental: month`.
pub fn is_incremental(job: &Job) -> bool {
    !incremental_steps(job).is_empty()
}

/// The incremental steps of `job`.
fn incremental_steps(job: &Job) -> Vec<&Step> {
    job.steps
        .iter()
        .filter(|s| s.incremental == Some(Incremental::Month))
        .collect()
}

/// Make the month facts of every incremental step of `job`, and of the
/// `internal` steps of its outputs (computed per month as well when the
/// job's steps are, and from their SQL when they cannot be), for a run of
/// `period` on the prepared `transactions` view: months with valid stored
/// facts are read, the others computed (and those from `recompute_from` on,
/// whatever is stored) and, unless
/// `write` is false (a dry run), kept to be stored after publication
/// ([`MonthFacts::store`]). Registers [`MonthFacts`] in the session; false
/// when the job has no incremental step or an input file has no statistics
/// of `ordered_at` (the steps are then computed from their SQL).
#[allow(clippy::too_many_arguments)]
pub async fn prepare(
    ctx: &SessionContext,
    job: &Job,
    config: &Config,
    warehouse: &Warehouse,
    sources: &Sources<'_>,
    internal: &[Step],
    period: Period,
    recompute_from: Option<NaiveDate>,
    write: bool,
) -> Result<bool, FactsError> {
    let steps = incremental_steps(job);
    if steps.is_empty() {
        return Ok(false);
    }
    // Without a list (some file has no usable statistics: any month may be
    // in it), nothing could be stored or reused: the steps are computed from
    // their SQL, without the cost of month facts.
    let Some(months) = sources.coverage.months(Some(period)) else {
        // A declaration that cannot hold is refused all the same.
        check_steps(ctx, &steps).await?;
        tracing::info!(
            "Some input file of `transactions` has no statistics of `ordered_at` (CSV, JSON, a mapped column): incremental steps are computed from every line, without month facts."
        );
        return Ok(false);
    };
    let clock = crate::inputs::run_clock();
    // The spill directory when configured: in a container, the one place
    // meant for a run's scratch files.
    let scratch = config
        .engine
        .spill_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    let local = tempfile::tempdir_in(&scratch).map_err(|source| FactsError::Local {
        step: String::new(),
        dir: scratch.display().to_string(),
        source,
    })?;
    let mut registered = BTreeMap::new();
    let mut to_store = Vec::new();
    let mut internal_steps = Vec::new();
    for step in internal {
        match mergeable(ctx, step).await {
            Ok(shape) => internal_steps.push((step, shape)),
            // Not on these inputs (a column the query needs is not mapped):
            // computed from its SQL, as before.
            Err(error) => tracing::debug!(step = %step.name, %error, "Computed from every line."),
        }
    }
    let mut every_step = Vec::new();
    for step in steps {
        every_step.push((step, mergeable(ctx, step).await?));
    }
    every_step.extend(internal_steps);
    for (step, mergeable) in every_step {
        let mergeable = Arc::new(mergeable);
        let context = fingerprint::context(config, step, sources);
        let fingerprints = fingerprint::of_months(&context, &months);
        // Months from `recompute_from` on are computed whatever is stored;
        // open months are never stored, so not looked for.
        let trusted = fingerprint::trusted(&fingerprints, recompute_from, clock);
        let valid = store::valid(warehouse, &job.name, &step.name, &trusted).await?;
        let missing: Vec<NaiveDate> = fingerprints
            .keys()
            .filter(|month| !valid.contains_key(month))
            .copied()
            .collect();
        let step_error = |source| FactsError::Query {
            step: step.name.clone(),
            source,
        };
        let computed = if !missing.is_empty() {
            let frame = mergeable.facts_query(ctx, &missing).map_err(step_error)?;
            let dir = local.path().join(&step.name);
            store::write_local(frame, &dir).await.map_err(step_error)?
        } else {
            BTreeMap::new()
        };
        let paths: Vec<String> = valid.values().flat_map(|s| s.urls.clone()).collect();
        let mut local_paths = Vec::new();
        for month in &missing {
            let file = computed.get(month);
            // A month still open by the run's clock, in any time zone, may
            // gain lines (or lose future-dated rejects): computed, not stored.
            if write && closed(*month, clock) {
                to_store.push(ToStore {
                    step: step.name.clone(),
                    fingerprint: fingerprints[month].clone(),
                    files: file.cloned(),
                });
            }
            // Read from the local copy, stored or not: the same bytes,
            // without a download of what was just uploaded.
            if let Some(files) = file {
                local_paths.extend(files.iter().map(|f| f.display().to_string()));
            }
        }
        tracing::info!(
            step = %step.name,
            reused = valid.len(),
            computed = missing.len(),
            "Month facts ready."
        );
        let table = store::table(ctx, &mergeable, warehouse, &paths, &local_paths)
            .await
            .map_err(step_error)?;
        registered.insert(step.name.clone(), (mergeable, table));
    }
    ctx.state_ref()
        .write()
        .config_mut()
        .set_extension(Arc::new(MonthFacts {
            steps: registered,
            to_store,
            _local: local,
        }));
    Ok(true)
}

/// Whether every line of `month` is known by `clock`'s day, in any time
/// zone: a month still open may gain lines (or lose future-dated rejects),
/// so it is computed but never stored.
fn closed(month: NaiveDate, clock: chrono::DateTime<chrono::Utc>) -> bool {
    Period::of_date(month)
        .end()
        .succ_opt()
        .is_some_and(|after| after <= clock.date_naive())
}

/// Delete every month fact of `job` (after an erasure: they hold the ids).
pub async fn delete_all(warehouse: &Warehouse, job: &str) -> Result<usize, StorageError> {
    store::delete_all(warehouse, job).await
}

//! Readiness (data lifecycle): is the period's input complete enough to
//! run? Configured in the config's `readiness:` section; when a check fails
//! the run publishes nothing and exits 5 ("not ready"), which the CronJob
//! retries, unlike a failed data-quality gate (3). Checked before the gates,
//! so an export that has not fully landed is "not ready", not "bad".
//!
//! - `marker`: a file the upstream export writes when it is done, relative
//!   to the transactions URL (a folder URL, or the folder of a file URL),
//!   `{period}` replaced by `YYYY-MM`, e.g. `month={period}/_SUCCESS`;
//! - `min_days_with_data`: distinct local dates with usable lines in the
//!   period;
//! - `min_rows_vs_previous`: usable lines dated in the period at least this
//!   share of those dated in the previous period (e.g. 0.8), when the
//!   previous period has any.

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use datafusion::prelude::SessionContext;

use crate::config::Config;
use crate::engine::{EngineError, Parameters};
use crate::model::Period;
use crate::storage::{self, StorageError};

/// The URL of the marker of `period`, if one is configured.
pub fn marker_url(config: &Config, period: Period) -> Option<String> {
    let marker = config.readiness.marker.as_ref()?;
    let input = config.inputs.get("transactions")?;
    let folder = if input.url.ends_with('/') {
        input.url.clone()
    } else {
        match input.url.rfind('/') {
            Some(slash) => input.url[..=slash].to_string(),
            None => input.url.clone(),
        }
    };
    Some(format!(
        "{folder}{}",
        marker.replace("{period}", &period.to_string())
    ))
}

/// Why the period is not ready by its marker, if it is not.
pub async fn check_marker(config: &Config, period: Period) -> Result<Option<String>, StorageError> {
    use object_store::ObjectStoreExt;
    let Some(url) = marker_url(config, period) else {
        return Ok(None);
    };
    let location = storage::open(&url)?;
    match location.store.head(&location.prefix).await {
        Ok(_) => Ok(None),
        Err(object_store::Error::NotFound { .. }) => Ok(Some(format!(
            "the upstream export has not written its marker {} yet (readiness.marker)",
            storage::redact(&url)
        ))),
        Err(error) => Err(StorageError::from_store(&url, &error)),
    }
}

/// Why the period is not ready by its data, if it is not.
pub async fn check_data(
    ctx: &SessionContext,
    config: &Config,
    params: &Parameters,
) -> Result<Option<String>, EngineError> {
    let settings = &config.readiness;
    if settings.min_days_with_data.is_none() && settings.min_rows_vs_previous.is_none() {
        return Ok(None);
    }
    let execution = |source| EngineError::Read {
        context: "checking readiness".into(),
        source,
    };
    let batch = crate::engine::query_one(
        ctx,
        include_str!("../../sql/outputs/readiness.sql"),
        Some(params.values()),
    )
    .await
    .map_err(execution)?;
    if batch.num_rows() == 0 {
        return Ok(None);
    }
    let int = |i: usize| batch.column(i).as_primitive::<Int64Type>().value(0);
    let (days, rows, previous_rows) = (int(0), int(1), int(2));
    let period = params.period;
    if let Some(minimum) = settings.min_days_with_data
        && days < i64::from(minimum)
    {
        return Ok(Some(format!(
            "only {days} day(s) of {period} have transactions, fewer than readiness.min_days_with_data {minimum}"
        )));
    }
    if let Some(share) = settings.min_rows_vs_previous
        && previous_rows > 0
        && (rows as f64) < share * previous_rows as f64
    {
        return Ok(Some(format!(
            "{period} has {rows} usable line(s), {:.1}% of the {previous_rows} of {}, below readiness.min_rows_vs_previous {:.1}%",
            rows as f64 * 100.0 / previous_rows as f64,
            period.previous(),
            share * 100.0
        )));
    }
    Ok(None)
}

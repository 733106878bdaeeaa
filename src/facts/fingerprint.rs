//! What a month's facts were computed from: the digest of everything that
//! shapes the step's result for that month (the step's SQL, the input's
//! mapping, the time zone, the quality rules, the erasures, the identity
//! merges, the version of `segments`) and of the input files that may hold
//! lines of the month. Which files may hold which months comes from the
//! Parquet statistics of the `ordered_at` column, widened by a day on each
//! side for the time zone; a file without them may hold any month.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use datafusion::parquet::arrow::parquet_to_arrow_schema;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Sources;
use crate::config::{Config, InputFormat, Step};
use crate::model::{InputFile, Period};

/// Bumped when the facts' form or meaning changes: older facts are then
/// recomputed.
const FORMAT: u32 = 1;

/// One input file as the fingerprint of a month names it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileId {
    pub path: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

/// The fingerprint of one month of one step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Fingerprint {
    /// `YYYY-MM`.
    pub month: String,
    /// SHA-256 of the context and the files: facts are valid for exactly
    /// this digest.
    pub digest: String,
    /// The input files that may hold lines of the month (for people).
    pub files: Vec<FileId>,
}

impl Fingerprint {
    pub fn new(context: &str, month: NaiveDate, files: &[&InputFile]) -> Fingerprint {
        let mut ids: Vec<FileId> = files
            .iter()
            .map(|f| FileId {
                path: f.path.clone(),
                size: f.size,
                e_tag: f.e_tag.clone(),
                last_modified: f.last_modified.clone(),
            })
            .collect();
        ids.sort_by(|a, b| a.path.cmp(&b.path));
        let mut hash = Sha256::new();
        hash.update(context.as_bytes());
        hash.update(month.to_string().as_bytes());
        for id in &ids {
            hash.update(
                serde_json::to_vec(id)
                    .expect("a file id serialises")
                    .as_slice(),
            );
            hash.update(b"\n");
        }
        Fingerprint {
            month: Period::of_date(month).to_string(),
            digest: hex(&hash.finalize()),
            files: ids,
        }
    }
}

/// The fingerprint of each of `months` (with the files that may hold it)
/// under `context`.
pub fn of_months(
    context: &str,
    months: &BTreeMap<NaiveDate, Vec<&InputFile>>,
) -> BTreeMap<NaiveDate, Fingerprint> {
    months
        .iter()
        .map(|(month, covering)| (*month, Fingerprint::new(context, *month, covering)))
        .collect()
}

/// The fingerprints of the months stored facts may stand for: closed by
/// `clock` (an open month is never stored) and before `recompute_from`.
pub fn trusted(
    fingerprints: &BTreeMap<NaiveDate, Fingerprint>,
    recompute_from: Option<NaiveDate>,
    clock: chrono::DateTime<chrono::Utc>,
) -> BTreeMap<NaiveDate, Fingerprint> {
    fingerprints
        .iter()
        .filter(|(month, _)| {
            recompute_from.is_none_or(|from| **month < from) && super::closed(**month, clock)
        })
        .map(|(month, print)| (*month, print.clone()))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The digest of what shapes every month of `step` beside its files.
pub fn context(config: &Config, step: &Step, sources: &Sources<'_>) -> String {
    context_of(config, &format!("step {}", step.sql), sources)
}

/// The digest of what shapes a month of what `what` names (a step's SQL,
/// or the row accounting) beside its files.
pub fn context_of(config: &Config, what: &str, sources: &Sources<'_>) -> String {
    let mut hash = Sha256::new();
    let parts = [
        format!("format {FORMAT}"),
        format!("segments {}", env!("CARGO_PKG_VERSION")),
        what.to_string(),
        format!("input {:?}", config.inputs.get("transactions")),
        format!("timezone {}", config.timezone),
        format!("quality {:?}", config.quality),
        format!("erasures {}", sources.erasures),
        format!("merges {}", sources.merges),
    ];
    for part in parts {
        hash.update(part.as_bytes());
        hash.update(b"\0");
    }
    hex(&hash.finalize())
}

/// SHA-256 of some lines, for the `Sources` digests.
pub fn digest_of<'a>(lines: impl IntoIterator<Item = &'a str>) -> String {
    let mut hash = Sha256::new();
    for line in lines {
        hash.update(line.as_bytes());
        hash.update(b"\n");
    }
    hex(&hash.finalize())
}

/// Which days the lines of one input file may fall on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// Its statistics do not say: any day.
    Unknown,
    /// It has no line.
    Empty,
    /// From the first to the last day, both included: the UTC and the local
    /// dates of its first and last instants (a naive timestamp may be read
    /// as either).
    Days(NaiveDate, NaiveDate),
}

/// For each file, the days its lines may fall on.
pub async fn file_ranges(config: &Config, files: &[&InputFile]) -> Vec<Coverage> {
    let unknown = || vec![Coverage::Unknown; files.len()];
    let Some(input) = config.inputs.get("transactions") else {
        return unknown();
    };
    let column = input
        .columns
        .get("ordered_at")
        .cloned()
        .unwrap_or_else(|| "ordered_at".to_string());
    if input.format != InputFormat::Parquet {
        return unknown();
    }
    let Ok(location) = crate::storage::open(&input.url) else {
        return unknown();
    };
    let store = location.store.clone();
    let timezone = config.timezone;
    futures::stream::iter(files.iter().map(|file| {
        let store = store.clone();
        let column = column.clone();
        async move {
            file_range(store, file, &column, timezone)
                .await
                .unwrap_or(Coverage::Unknown)
        }
    }))
    .buffered(16)
    .collect()
    .await
}

async fn file_range(
    store: Arc<dyn object_store::ObjectStore>,
    file: &InputFile,
    column: &str,
    timezone: chrono_tz::Tz,
) -> Option<Coverage> {
    let meta = object_store::ObjectMeta {
        location: object_store::path::Path::from(file.path.as_str()),
        last_modified: chrono::Utc::now(),
        size: file.size,
        e_tag: None,
        version: None,
    };
    let metadata = DFParquetMetadata::new(store.as_ref(), &meta)
        .fetch_metadata()
        .await
        .ok()?;
    let file_metadata = metadata.file_metadata();
    let schema = parquet_to_arrow_schema(
        file_metadata.schema_descr(),
        file_metadata.key_value_metadata(),
    )
    .ok()?;
    let field = schema.field_with_name(column).ok()?;
    if !matches!(field.data_type(), DataType::Timestamp(_, _)) {
        return None;
    }
    let groups = metadata.row_groups();
    if groups.iter().all(|g| g.num_rows() == 0) {
        return Some(Coverage::Empty);
    }
    let converter =
        StatisticsConverter::try_new(column, &schema, file_metadata.schema_descr()).ok()?;
    let micros = |array: datafusion::arrow::array::ArrayRef| {
        datafusion::arrow::compute::cast(&array, &DataType::Timestamp(TimeUnit::Microsecond, None))
            .ok()
    };
    let mins = micros(converter.row_group_mins(groups.iter()).ok()?)?;
    let maxes = micros(converter.row_group_maxes(groups.iter()).ok()?)?;
    let (mins, maxes) = (
        mins.as_primitive::<TimestampMicrosecondType>(),
        maxes.as_primitive::<TimestampMicrosecondType>(),
    );
    // A row group without statistics may hold any day.
    if mins.null_count() > 0 || maxes.null_count() > 0 {
        return None;
    }
    let first = chrono::DateTime::from_timestamp_micros(mins.iter().flatten().min()?)?;
    let last = chrono::DateTime::from_timestamp_micros(maxes.iter().flatten().max()?)?;
    let local = |t: chrono::DateTime<chrono::Utc>| t.with_timezone(&timezone).date_naive();
    Some(Coverage::Days(
        first.date_naive().min(local(first)),
        last.date_naive().max(local(last)),
    ))
}

/// The months up to `period` (first days) and the files that may hold lines
/// of each (every month any file may hold when `period` is `None`); `None`
/// when some file may hold any month.
pub fn months<'a>(
    files: &[&'a InputFile],
    ranges: &[Coverage],
    period: Option<Period>,
) -> Option<BTreeMap<NaiveDate, Vec<&'a InputFile>>> {
    let last = period.map_or(NaiveDate::MAX, |p| p.start());
    let period_end = period.map_or(NaiveDate::MAX, |p| p.end());
    let mut months: BTreeMap<NaiveDate, Vec<&InputFile>> = BTreeMap::new();
    for (file, range) in files.iter().zip(ranges) {
        let (first, end) = match range {
            Coverage::Unknown => return None,
            Coverage::Empty => continue,
            Coverage::Days(first, end) => (*first, *end),
        };
        let mut month = first.with_day(1).expect("day 1");
        let end = end.min(period_end);
        while month <= end && month <= last {
            months.entry(month).or_default().push(*file);
            month = Period::of_date(month).next().start();
        }
    }
    Some(months)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64) -> InputFile {
        InputFile {
            input: "transactions".into(),
            path: path.into(),
            size,
            e_tag: Some(format!("etag-{size}")),
            last_modified: None,
        }
    }

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn a_file_belongs_to_every_month_it_may_hold() {
        let (a, b) = (file("a", 1), file("b", 2));
        let files = [&a, &b];
        // a: December's last day (local) to February's first; b: late lines
        // of January's last day, then February and March.
        let ranges = [
            Coverage::Days(day(2023, 12, 31), day(2024, 2, 1)),
            Coverage::Days(day(2024, 1, 31), day(2024, 3, 1)),
        ];
        let period: Period = "2024-02".parse().unwrap();
        let listed = months(&files, &ranges, Some(period)).unwrap();
        let names = |m: NaiveDate| {
            listed[&m]
                .iter()
                .map(|f| f.path.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(listed.len(), 3, "up to the period only: {listed:?}");
        assert_eq!(names(day(2023, 12, 1)), ["a"]);
        assert_eq!(names(day(2024, 1, 1)), ["a", "b"]);
        assert_eq!(names(day(2024, 2, 1)), ["a", "b"]);
        let with_empty = months(&files, &[ranges[0], Coverage::Empty], Some(period)).unwrap();
        assert_eq!(
            with_empty[&day(2024, 2, 1)].len(),
            1,
            "an empty file holds no month"
        );
        assert!(months(&files, &[ranges[0], Coverage::Unknown], Some(period)).is_none());
    }

    #[test]
    fn the_digest_changes_with_a_file_or_the_context() {
        let (a, b) = (file("a", 1), file("b", 2));
        let month = day(2024, 1, 1);
        let base = Fingerprint::new("ctx", month, &[&a, &b]);
        assert_eq!(
            base,
            Fingerprint::new("ctx", month, &[&b, &a]),
            "order does not matter"
        );
        let grown = file("b", 3);
        for other in [
            Fingerprint::new("ctx", month, &[&a]),
            Fingerprint::new("ctx", month, &[&a, &grown]),
            Fingerprint::new("other", month, &[&a, &b]),
            Fingerprint::new("ctx", day(2024, 2, 1), &[&a, &b]),
        ] {
            assert_ne!(base.digest, other.digest, "{other:?}");
        }
    }
}

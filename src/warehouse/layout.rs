//! The warehouse's layout: the one place that spells its folder and file
//! names (docs/design.md §5). Every other module builds keys from these.
//!
//! ```text
//! <warehouse>/<job>/<table>/period=YYYY-MM/part-0.parquet
//! <warehouse>/<job>/report/period=YYYY-MM/index.html
//! <warehouse>/<job>/_runs/period=YYYY-MM/{_manifest.json,_SUCCESS,_lease-*,_upload-*,_erasing}
//! <warehouse>/_erasure/{requests/<id>.json,salt_check.json}
//! ```

use crate::model::Period;

/// The folder of run records (manifest, `_SUCCESS`, leases) of a job.
pub const RUNS: &str = "_runs";
/// Written last: the period is complete and may be read.
pub const SUCCESS: &str = "_SUCCESS";
/// Run facts next to `_SUCCESS`.
pub const MANIFEST: &str = "_manifest.json";
/// The one file of a table partition.
pub const PART_FILE: &str = "part-0.parquet";
/// The prefix of lease objects in a period's run folder.
pub const LEASE_PREFIX: &str = "_lease-";
/// The prefix of the records of open multipart uploads in a period's run
/// folder (`_upload-<uuid>.json`), each deleted once its upload is complete
/// or aborted; one left by a killed run is aborted by the next run.
pub const UPLOAD_PREFIX: &str = "_upload-";
/// The suffix of an upload record.
pub const UPLOAD_SUFFIX: &str = ".json";
/// A period being rewritten by `forget` (in its run folder).
pub const ERASING: &str = "_erasing";
/// The warehouse-wide erasure log.
pub const ERASURE: &str = "_erasure";
/// The HTML report's folder under the job (`report: true` in the config).
pub const REPORT_FOLDER: &str = "report";
/// The report's file in its period partition.
pub const REPORT_FILE: &str = "index.html";

/// The Hive partition folder of a period: `period=YYYY-MM`.
pub fn partition(period: Period) -> String {
    format!("period={period}")
}

/// The period of a Hive partition folder name (`period=YYYY-MM`), if it is one.
pub fn partition_period(folder: &str) -> Option<Period> {
    folder.strip_prefix("period=").and_then(|p| p.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_round_trip() {
        let period: Period = "2025-12".parse().unwrap();
        assert_eq!(partition(period), "period=2025-12");
        assert_eq!(partition_period(&partition(period)), Some(period));
        assert_eq!(partition_period("period=2025-13"), None);
        assert_eq!(partition_period("2025-12"), None);
    }
}

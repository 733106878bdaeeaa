//! `segments status`: the published periods of a job, each flagged when the
//! input files it was computed from changed since (restatement, see
//! [`crate::lifecycle::restate`]) or when it was made with other rules. Reads manifests
//! and lists inputs; reads no data and writes nothing.

use std::io::Write;

use serde_json::json;

use crate::config::{Config, Job};
use crate::lifecycle::restate::{self, PeriodStatus};
use crate::model::ExitStatus;

use super::{Failure, StatusArgs, failure};

fn inputs_word(status: &PeriodStatus) -> String {
    if !status.changes.is_empty() {
        let mut counts = std::collections::BTreeMap::new();
        for change in &status.changes {
            *counts.entry(change.change.word()).or_insert(0) += 1;
        }
        let counts: Vec<String> = counts.iter().map(|(w, n)| format!("{n} {w}")).collect();
        format!("CHANGED ({})", counts.join(", "))
    } else if status.cascade {
        "unchanged; follows the restated previous period".to_string()
    } else {
        "unchanged".to_string()
    }
}

fn text(job: &Job, config: &Config, statuses: &[PeriodStatus]) -> String {
    let mut out = String::new();
    if statuses.is_empty() {
        out.push_str(&format!(
            "{}: no published period in {}\n",
            job.name, config.warehouse
        ));
        return out;
    }
    out.push_str(&format!(
        "{}: {} published period(s) in {}\n\n",
        job.name,
        statuses.len(),
        config.warehouse
    ));
    out.push_str("  period   run                                   published at                 rules    inputs\n");
    for status in statuses {
        out.push_str(&format!(
            "  {}  {:<36}  {:<27}  {:<7}  {}\n",
            status.period,
            status.manifest.run_id,
            status.manifest.published_at,
            if status.rules_changed {
                "changed"
            } else {
                "same"
            },
            inputs_word(status)
        ));
        for change in &status.changes {
            out.push_str(&format!(
                "             {} {} ({})\n",
                change.change.word(),
                change.path,
                change.input
            ));
        }
    }
    let changed: Vec<String> = statuses
        .iter()
        .filter(|s| !s.changes.is_empty())
        .map(|s| s.period.to_string())
        .collect();
    let recompute: Vec<String> = statuses
        .iter()
        .filter(|s| s.recompute())
        .map(|s| s.period.to_string())
        .collect();
    if changed.is_empty() {
        out.push_str("\nNo published period has changed inputs.\n");
    } else {
        out.push_str(&format!(
            "\n{} period(s) have changed inputs ({}); `segments backfill --changed` recomputes {} ({}), oldest first.\n",
            changed.len(),
            changed.join(", "),
            recompute.len(),
            recompute.join(", ")
        ));
    }
    out
}

fn json_value(job: &Job, statuses: &[PeriodStatus]) -> serde_json::Value {
    json!({
        "job": job.name,
        "periods": statuses.iter().map(|s| json!({
            "period": s.period.to_string(),
            "run_id": s.manifest.run_id,
            "published_at": s.manifest.published_at,
            "rules_changed": s.rules_changed,
            "inputs_changed": !s.changes.is_empty(),
            "changes": s.changes,
            "cascade": s.cascade,
            "recompute": s.recompute(),
        })).collect::<Vec<_>>(),
    })
}

pub async fn status(args: StatusArgs) -> Result<(), Failure> {
    let job = Job::load(&args.job.job).map_err(|e| failure(ExitStatus::Invalid, e))?;
    let config = Config::load(&args.job.config).map_err(|e| failure(ExitStatus::Invalid, e))?;
    config
        .check_inputs_for(&job)
        .map_err(|e| failure(ExitStatus::Invalid, e))?;
    let statuses = restate::status(&job, &config)
        .await
        .map_err(|e| failure(e.exit_status(), e))?;
    let rendered = if args.json || args.format == super::StatusFormat::Json {
        serde_json::to_string_pretty(&json_value(&job, &statuses)).expect("JSON serialises") + "\n"
    } else {
        text(&job, &config, &statuses)
    };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(rendered.as_bytes());
    let _ = out.flush();
    Ok(())
}

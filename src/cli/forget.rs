//! `segments forget`: erase customers from every published table of every
//! job and period of the warehouse, and from later runs (see
//! [`crate::lifecycle::forget`]). Prints what it did; never prints the ids.

use std::io::Write;

use crate::config::Config;
use crate::lifecycle::forget as erasure;
use crate::model::ExitStatus;

use super::{Failure, ForgetArgs, failure};

pub async fn forget(args: ForgetArgs) -> Result<(), Failure> {
    let config = Config::load(&args.config).map_err(|e| failure(ExitStatus::Invalid, e))?;
    let mut ids = args.customer_id.clone();
    if let Some(path) = &args.ids_file {
        ids.extend(erasure::read_ids_file(path).map_err(|e| failure(e.exit_status(), e))?);
    }
    let report = erasure::forget(&config, &ids, args.force)
        .await
        .map_err(|e| failure(e.exit_status(), e))?;
    let mut out = String::new();
    match &report.erasure_id {
        Some(id) => out.push_str(&format!(
            "Erasure {id}: {} customer(s) added to the suppression list of {}",
            report.new_customers, config.warehouse
        )),
        None => out.push_str(&format!(
            "No new customer: every id given is already in the suppression list of {}",
            config.warehouse
        )),
    }
    if report.already_erased > 0 && report.erasure_id.is_some() {
        out.push_str(&format!(" ({} already in it)", report.already_erased));
    }
    out.push('\n');
    for (job, periods) in &report.scanned {
        let changed: Vec<_> = report.periods.iter().filter(|p| &p.job == job).collect();
        out.push_str(&format!(
            "  {job}: {periods} period(s) scanned, {} rewritten\n",
            changed.len()
        ));
        for period in changed {
            let removed: Vec<String> = period
                .removed
                .iter()
                .map(|(table, rows)| format!("{table} -{rows}"))
                .collect();
            out.push_str(&format!(
                "    {} {}{}\n",
                period.period,
                period.outcome,
                if removed.is_empty() {
                    String::new()
                } else {
                    format!(": {}", removed.join(", "))
                }
            ));
        }
    }
    if !report.completed.is_empty() {
        out.push_str(&format!(
            "Completed erasure request(s): {}\n",
            report.completed.join(", ")
        ));
    }
    out.push_str("Aggregate tables (summaries, matrices) keep their counts until the period is recomputed (`segments backfill --force`), which excludes these customers.\n");
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
    Ok(())
}

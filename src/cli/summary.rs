//! The human summary printed after a run: segment counts, movements, the
//! migration matrix (dry run), rows read and time.

use datafusion::arrow::util::pretty::pretty_format_batches;

use crate::config::{ClassificationKind, Job, OutputTable};
use crate::run::RunOutcome;

pub fn print_run(job: &Job, outcome: &RunOutcome) {
    let manifest = &outcome.manifest;
    let verb = if outcome.published {
        "Published"
    } else {
        "Dry run (nothing written) for"
    };
    let audiences = job.kind == ClassificationKind::Audiences;
    let (who, what) = if audiences {
        ("contacts in an audience", "audience")
    } else {
        ("customers", "segment")
    };
    println!(
        "{verb} {} {} — {} {who}",
        job.name, outcome.period, outcome.tables.customers
    );
    println!();
    println!("  {what:<24} {:>10} {:>7}", "customers", "share");
    for (segment, customers) in &outcome.tables.segment_counts {
        let share = if outcome.tables.customers > 0 {
            *customers as f64 / outcome.tables.customers as f64 * 100.0
        } else {
            0.0
        };
        println!("  {segment:<24} {customers:>10} {share:>6.1}%");
    }
    println!();
    if audiences {
        println!("  (audiences overlap: shares are of the contacts in at least one audience)");
    }
    let movements: Vec<String> = outcome
        .tables
        .movement_counts
        .iter()
        .map(|(m, n)| format!("{m} {n}"))
        .collect();
    if !audiences {
        println!(
            "  movements vs {} ({}): {}",
            outcome.period.previous(),
            manifest.from_side,
            movements.join(", ")
        );
    }
    let rows = &manifest.rows;
    println!(
        "  rows read {} (used {}, anonymous {}, rejected {}); revenue of the period {}{}",
        rows.read,
        rows.used,
        rows.anonymous,
        rows.rejected,
        manifest.period_revenue,
        manifest
            .identification_rate
            .map(|r| format!(", identified {:.1}%", r * 100.0))
            .unwrap_or_default()
    );
    if let Some(facts) = &manifest.predictions {
        println!("  {}", prediction_line(facts));
    }
    println!(
        "  time {:.2}s",
        *manifest.timings_ms.get("total").unwrap_or(&0) as f64 / 1000.0
    );
    if outcome.published {
        match outcome.format {
            crate::config::TableFormat::Hive => println!(
                "  tables under {}{}/<table>/period={}/part-0.parquet",
                outcome.warehouse, job.name, outcome.period
            ),
            crate::config::TableFormat::Delta => println!(
                "  Delta tables under {}{}/<table>/ (partition period={})",
                outcome.warehouse, job.name, outcome.period
            ),
        }
    } else {
        for table in [OutputTable::SegmentSummary, OutputTable::MigrationMatrix] {
            if let Some(data) = outcome.tables.get(table) {
                println!();
                println!("{}:", table.name());
                match data
                    .batch()
                    .map_err(|error| error.to_string())
                    .and_then(|batch| {
                        pretty_format_batches(&[batch]).map_err(|error| error.to_string())
                    }) {
                    Ok(text) => println!("{text}"),
                    Err(error) => println!("  (cannot format: {error})"),
                }
            }
        }
    }
}

/// One line on the predictive models of the run.
fn prediction_line(facts: &crate::predict::PredictionFacts) -> String {
    let get = |map: &std::collections::BTreeMap<String, f64>, key: &str| {
        map.get(key).copied().unwrap_or(f64::NAN)
    };
    let m = &facts.purchase_model;
    let s = &facts.spend_model;
    let potential = match &facts.potential {
        Some(p) => match p.held_out_auc {
            Some(auc) => format!("; potential score held-out AUC {auc:.3}"),
            None => "; no potential score (see the manifest)".to_string(),
        },
        None => String::new(),
    };
    format!(
        "predictions: {} r {:.3}, alpha {:.3} {}, a {:.3}, b {:.3}; gamma-gamma p {:.3}, q {:.3}, gamma {:.2}{potential}",
        facts.model,
        get(m, "r"),
        get(m, "alpha"),
        facts.time_unit,
        get(m, "a"),
        get(m, "b"),
        get(s, "p"),
        get(s, "q"),
        get(s, "gamma"),
    )
}

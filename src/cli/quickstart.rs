//! `segments quickstart`: the first impression. Generates a small sample into
//! `./data` when there is none, runs the default job on its last two months
//! into `./warehouse`, and shows how to query the tables.

use std::path::Path;

use crate::generate::{self, GenerateOptions};
use crate::model::ExitStatus;
use crate::model::Period;
use crate::run::{self, RunOptions};

use super::run::load;
use super::{Failure, JobArgs, QuickstartArgs, failure, summary};

const SAMPLE_START: &str = "2024-01";
const SAMPLE_MONTHS: u32 = 24;

/// The months present as `month=YYYY-MM` folders.
fn months_in(dir: &Path) -> Vec<Period> {
    let mut months: Vec<Period> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.strip_prefix("month=")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    months.sort();
    months
}

pub async fn quickstart(args: QuickstartArgs) -> Result<(), Failure> {
    let data = Path::new("data");
    let transactions = data.join("transactions");
    if months_in(&transactions).is_empty() {
        let options = GenerateOptions {
            customers: args.customers,
            months: SAMPLE_MONTHS,
            start: SAMPLE_START.parse().expect("valid period"),
            seed: 42,
            out_dir: data.to_path_buf(),
            events: true,
            defects: true,
        };
        let report = generate::generate(&options).map_err(|e| failure(ExitStatus::Internal, e))?;
        println!(
            "Generated a sample: {} transaction lines for {} customers, {} months from {} under {}",
            report.rows,
            args.customers,
            SAMPLE_MONTHS,
            SAMPLE_START,
            transactions.display()
        );
    } else {
        println!("Using the existing data under {}", transactions.display());
    }
    let months = months_in(&transactions);
    let last = *months.last().expect("data was just generated");
    let job_args = JobArgs {
        job: "jobs/rfm_monthly.yaml".into(),
        config: "config/local.yaml".into(),
    };
    for period in [last.previous(), last] {
        let (job, config, _) = load(&job_args, Some(&period.to_string()))?;
        let outcome = run::run(&job, &config, RunOptions::new(period))
            .await
            .map_err(|e| failure(e.exit_status(), e))?;
        println!();
        summary::print_run(&job, &outcome);
    }
    println!();
    // Commands that work with what the README's two commands installed:
    // DuckDB's Python package (scripts/test puts it in .venv; nothing
    // installs the DuckDB CLI), and `segments` itself through cargo unless
    // `cargo install --path . --locked` put it on PATH.
    println!(
        "Query the tables, e.g. with DuckDB's Python package in a virtual environment (`python3 -m venv .venv && .venv/bin/pip install duckdb && . .venv/bin/activate`; scripts/test makes that .venv with DuckDB in it):"
    );
    for sql in query_examples(last) {
        println!("  python3 -c \"import duckdb; duckdb.sql(\\\"{sql}\\\").show()\"");
    }
    println!(
        "Connect a BI tool (Metabase, Superset, Evidence): `cargo run -- catalog --target duckdb --out segments.duckdb` builds a DuckDB file of views (rfm_monthly_segment_trend, rfm_monthly_migration_flows, …); see docs/guides/bi.md."
    );
    println!(
        "Other shipped jobs on the same sample: `cargo run -- run --job jobs/audiences.yaml --period {last}` (also rfm_7_segments, lifecycle_groups, value_tiers, channel_category)."
    );
    println!(
        "Next: edit jobs/rfm_monthly.yaml or sql/*.sql, then `cargo run -- validate` and `cargo run -- run --period {last}`."
    );
    println!(
        "(`cargo install --path . --locked` puts `segments` on PATH: then write `segments …` for `cargo run -- …`.)"
    );
    Ok(())
}

/// The example queries the quick start prints, over its warehouse.
fn query_examples(last: Period) -> [String; 2] {
    [
        format!(
            "SELECT segment, count(*) AS customers FROM read_parquet('warehouse/rfm_monthly/snapshots/*/*.parquet', hive_partitioning = true) WHERE period = '{last}' GROUP BY segment ORDER BY customers DESC"
        ),
        format!(
            "SELECT * FROM 'warehouse/rfm_monthly/migration_matrix/period={last}/part-0.parquet'"
        ),
    ]
}

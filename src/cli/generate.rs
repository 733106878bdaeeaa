//! `segments generate`: synthetic transactions for trying and testing jobs.

use std::path::PathBuf;
use std::time::Instant;

use crate::generate::{self, GenerateOptions};

use super::{Failure, GenerateArgs, failure, parse_period};

/// A local directory from a path or `file://` URL.
pub(crate) fn local_dir(out: &str) -> Result<PathBuf, Failure> {
    if let Some((scheme, _)) = out.split_once("://") {
        if scheme != "file" {
            return Err(failure(
                2,
                anyhow::anyhow!(
                    "generate writes local files: use a path or a file:// URL, not {scheme}://"
                ),
            ));
        }
        let url = url::Url::parse(out).map_err(|e| failure(2, e))?;
        return url
            .to_file_path()
            .map_err(|_| failure(2, anyhow::anyhow!("'{out}' is not a local path")));
    }
    Ok(PathBuf::from(out))
}

pub fn generate(args: GenerateArgs) -> Result<(), Failure> {
    let options = GenerateOptions {
        customers: args.customers,
        months: args.months,
        start: parse_period(&args.start)?,
        seed: args.seed,
        out_dir: local_dir(&args.out)?,
        events: !args.no_events,
    };
    let started = Instant::now();
    let report = generate::generate(&options).map_err(|e| failure(1, e))?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "Generated {} transaction lines ({} orders, {} anonymous lines, {} refund lines) for {} customers over {} months from {} in {:.2}s ({:.0} lines/s) under {}",
        report.rows,
        report.orders,
        report.anonymous_rows,
        report.refund_rows,
        options.customers,
        options.months,
        options.start,
        seconds,
        report.rows as f64 / seconds.max(1e-9),
        options.out_dir.join("transactions").display()
    );
    if options.events {
        println!(
            "Generated {} events for {} customers and {} visitors who never buy under {}",
            report.event_rows,
            options.customers,
            report.visitors,
            options.out_dir.join("events").display()
        );
    }
    println!(
        "Wrote {} products under {} and {} sales under {}",
        report.products,
        options.out_dir.join("products").display(),
        report.sales,
        options.out_dir.join("sales_calendar").display()
    );
    Ok(())
}

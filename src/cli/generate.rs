//! `segments generate`: synthetic transactions for trying and testing jobs.

use std::path::PathBuf;
use std::time::Instant;

use crate::generate::{self, BtydParams, GenerateOptions};
use crate::model::ExitStatus;

use super::{Failure, GenerateArgs, GenerateProcess, failure, parse_period};

/// `n` comma-separated positive numbers of option `--{name}`.
fn numbers(name: &str, text: &str, n: usize) -> Result<Vec<f64>, Failure> {
    let values: Vec<f64> = text
        .split(',')
        .map(|v| v.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|e| failure(ExitStatus::Invalid, anyhow::anyhow!("--{name} {text}: {e}")))?;
    if values.len() != n || values.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
        return Err(failure(
            ExitStatus::Invalid,
            anyhow::anyhow!("--{name} {text}: give {n} positive numbers separated by commas"),
        ));
    }
    Ok(values)
}

/// A local directory from a path or `file://` URL.
pub(crate) fn local_dir(out: &str) -> Result<PathBuf, Failure> {
    if let Some((scheme, _)) = out.split_once("://") {
        if scheme != "file" {
            return Err(failure(
                ExitStatus::Invalid,
                anyhow::anyhow!(
                    "generate writes local files: use a path or a file:// URL, not {scheme}://"
                ),
            ));
        }
        let url = url::Url::parse(out).map_err(|e| failure(ExitStatus::Invalid, e))?;
        return url.to_file_path().map_err(|_| {
            failure(
                ExitStatus::Invalid,
                anyhow::anyhow!("'{out}' is not a local path"),
            )
        });
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
        defects: !args.clean,
    };
    let started = Instant::now();
    let report = match args.process {
        GenerateProcess::Retail => generate::generate(&options),
        GenerateProcess::Btyd => {
            let b = numbers("bgnbd", &args.bgnbd, 4)?;
            let g = numbers("gamma-gamma", &args.gamma_gamma, 3)?;
            let mut params = BtydParams::default();
            (
                params.purchase.r,
                params.purchase.alpha,
                params.purchase.a,
                params.purchase.b,
            ) = (b[0], b[1], b[2], b[3]);
            (params.spend.p, params.spend.q, params.spend.gamma) = (g[0], g[1], g[2]);
            generate::generate_btyd(&options, &params)
        }
    }
    .map_err(|e| failure(ExitStatus::Internal, e))?;
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
    if options.defects && args.process == GenerateProcess::Retail {
        println!(
            "As real exports do: {} lines written twice (exact duplicates), {} lines in the file of the month after their date (--clean for none)",
            report.duplicate_rows, report.late_rows
        );
    }
    if options.events && args.process == GenerateProcess::Retail {
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
    println!(
        "Wrote {} customer rows (region, city, age band, market, loyalty, consent; a dated row for those who moved) under {}",
        report.customer_rows,
        options.out_dir.join("customers").display()
    );
    Ok(())
}

//! `segments report`: the HTML report of a published period, written to a
//! local file (never to the warehouse; runs publish theirs when the config
//! says `report: true`). The page itself is built by [`crate::analysis::report`].

use std::io::Write;

use crate::analysis::report;
use crate::config::{Config, Job};
use crate::model::ExitStatus;
use crate::storage::Warehouse;

use super::{Failure, ReportArgs, failure, parse_period};

pub async fn report(args: ReportArgs) -> Result<(), Failure> {
    let job = Job::load(&args.job.job).map_err(|e| failure(ExitStatus::Invalid, e))?;
    let config = Config::load(&args.job.config).map_err(|e| failure(ExitStatus::Invalid, e))?;
    let period = parse_period(&args.period)?;
    let compare_to = args.compare_to.as_deref().map(parse_period).transpose()?;
    let locale = args.locale.unwrap_or(config.report.locale);
    let built = crate::storage::scoped(config.storage.clone(), async {
        let warehouse = Warehouse::open(&config.warehouse)?;
        report::build_published(&warehouse, &job, &config, period, compare_to).await
    })
    .await
    .map_err(|e: report::ReportError| failure(e.exit_status(), e))?;
    let html = report::render(&built, locale);
    super::compare::write_file(&args.out, html.as_bytes()).map_err(|e| {
        failure(
            ExitStatus::Internal,
            anyhow::anyhow!("cannot write {}: {e}", args.out.display()),
        )
    })?;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "Wrote the report of {} {period}{} to {}",
        job.name,
        built
            .compared
            .map(|p| format!(" (compared with {p})"))
            .unwrap_or_default(),
        args.out.display()
    );
    Ok(())
}

//! `segments init DIR --from FILE`: write a project for the user's export
//! (`crate::init`), validate it and print what was guessed and what to check.

use super::{Failure, InitArgs, JobArgs, failure};
use crate::model::ExitStatus;

pub async fn init(args: InitArgs) -> Result<(), Failure> {
    let report = crate::init::init(&args.dir, &args.from, args.customers.as_deref()).map_err(
        |e| match e {
            crate::init::InitError::NotEmpty(_) => failure(ExitStatus::Invalid, e),
            crate::init::InitError::Sniff(_) => failure(ExitStatus::InputFailed, e),
            crate::init::InitError::Write { .. } => failure(ExitStatus::Internal, e),
        },
    )?;
    println!("Wrote a project in {}:", args.dir.display());
    for file in &report.files {
        println!("  {}", file.display());
    }
    println!("\nGuessed from a sample of the file:");
    for guess in &report.guessed {
        println!("  {guess}");
    }
    let config = args.dir.join("config/local.yaml");
    println!("\nValidating:");
    let mut jobs = vec!["jobs/rfm_monthly.yaml"];
    if args.customers.is_some() {
        jobs.push("jobs/profile_segments.yaml");
    }
    for job in jobs {
        let validated = super::validate::validate(JobArgs {
            job: args.dir.join(job),
            config: config.clone(),
        })
        .await;
        if let Err(problem) = &validated {
            println!("  {:#}", problem.error);
        }
    }
    println!("\nCheck before the first run:");
    for item in &report.to_check {
        println!("  - {item}");
    }
    println!(
        "\nThen: cd {} && segments validate && segments backfill --from YYYY-MM --to YYYY-MM --allow-gate active_customers_change (the first months of a history move by more than the change gates allow)",
        args.dir.display()
    );
    Ok(())
}

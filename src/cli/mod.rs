//! The command line: clap types, logging set-up, dispatch to one module per
//! subcommand, and the mapping of errors to the exit codes of DESIGN §6.
//! Results go to stdout, logs and errors to stderr.

mod backfill;
#[cfg(feature = "ballista")]
mod ballista;
mod compare;
mod export;
mod generate;
mod quickstart;
mod run;
mod summary;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::period::Period;

#[derive(Debug, Parser)]
#[command(
    name = "segments",
    version,
    about = "Monthly customer segmentation on Apache DataFusion, published as Parquet tables."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// More logs (-v info, -vv debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Classify every customer for a period and publish the tables.
    Run(RunArgs),
    /// Check a job (and a config) without reading any data.
    Validate(JobArgs),
    /// Print the plan of each SQL step of a job.
    Explain(ExplainArgs),
    /// Write deterministic synthetic transactions, one Parquet folder per month.
    Generate(GenerateArgs),
    /// Generate a small sample (if ./data is empty), run the default job on
    /// its last two months into ./warehouse and show how to query the tables.
    Quickstart(QuickstartArgs),
    /// Run a job for every period of a range, in order; periods already
    /// published with the same job and rules are skipped (unless --force).
    Backfill(BackfillArgs),
    /// Compare two published periods of a job (--from --to), or two date
    /// ranges classified on the fly (--range --against): segment counts,
    /// transition matrix, lost and new customers, evolution per customer.
    Compare(CompareArgs),
    /// Write a campaign list (CSV or Parquet) of the customers of a segment,
    /// or of those who made a movement, in a published period.
    Export(ExportArgs),
    /// Run a Ballista scheduler for `engine.kind: ballista` (reads the
    /// config's inputs with its credentials).
    #[cfg(feature = "ballista")]
    BallistaScheduler(ballista::SchedulerArgs),
    /// Run a Ballista executor connected to a scheduler (reads the config's
    /// inputs; its memory limit and spill directory apply here).
    #[cfg(feature = "ballista")]
    BallistaExecutor(ballista::ExecutorArgs),
}

#[derive(Debug, Args)]
pub struct JobArgs {
    /// The job file: what to compute.
    #[arg(long, default_value = "jobs/rfm_monthly.yaml")]
    job: PathBuf,
    /// The config file: where data lives and how to run.
    #[arg(long, default_value = "config/local.yaml")]
    config: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    job: JobArgs,
    /// The month to classify (YYYY-MM); default: the last complete month in
    /// the business timezone.
    #[arg(long)]
    period: Option<String>,
    /// Compute and print the summary and migration matrix; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Break a live lease held by another run of the same job and period.
    #[arg(long)]
    force: bool,
    /// Publish even though this data-quality gate fails (repeatable):
    /// no_data, reject_ratio, active_customers_change, revenue_change.
    /// Recorded in the manifest.
    #[arg(long, value_name = "GATE", value_parser = clap::builder::PossibleValuesParser::new(crate::runner::GATES))]
    allow_gate: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    job: JobArgs,
    /// The month whose parameters are bound (default: the last complete month).
    #[arg(long)]
    period: Option<String>,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Number of loyalty-card customers.
    #[arg(long, default_value_t = 10_000)]
    customers: u64,
    /// Number of months.
    #[arg(long, default_value_t = 24)]
    months: u32,
    /// First month (fixed default, so a seed always gives the same data).
    #[arg(long, default_value = "2024-01")]
    start: String,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output directory (a local path or file:// URL); transactions go to
    /// <out>/transactions/month=YYYY-MM/part-0.parquet.
    #[arg(long, default_value = "data")]
    out: String,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    #[command(flatten)]
    job: JobArgs,
    /// First period (YYYY-MM), included.
    #[arg(long)]
    from: String,
    /// Last period (YYYY-MM), included; a complete month.
    #[arg(long)]
    to: String,
    /// Recompute periods already published with the same job and rules.
    #[arg(long)]
    force: bool,
    /// Publish even though this data-quality gate fails (repeatable), for
    /// every period of the range; recorded in each manifest.
    #[arg(long, value_name = "GATE", value_parser = clap::builder::PossibleValuesParser::new(crate::runner::GATES))]
    allow_gate: Vec<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CompareFormat {
    Text,
    Csv,
    Json,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    job: JobArgs,
    /// The published period (YYYY-MM).
    #[arg(long)]
    period: String,
    /// Customers in this segment (from `snapshots`).
    #[arg(
        long,
        required_unless_present = "movement",
        conflicts_with = "movement"
    )]
    segment: Option<String>,
    /// Customers who made this movement into the period (from `migrations`).
    #[arg(long, value_parser = ["new", "up", "same", "down", "churned", "reactivated", "removed"])]
    movement: Option<String>,
    /// Extra columns of the source table, after customer_id (e.g. segment,recency_days).
    #[arg(long, value_delimiter = ',')]
    columns: Vec<String>,
    #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
    format: ExportFormat,
    /// The file to write.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Parquet,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    #[command(flatten)]
    job: JobArgs,
    /// The earlier published period (YYYY-MM).
    #[arg(long, requires = "to", conflicts_with_all = ["range", "against"])]
    from: Option<String>,
    /// The later published period (YYYY-MM); need not follow --from.
    #[arg(long, requires = "from")]
    to: Option<String>,
    /// Ad hoc mode: a first date range, YYYY-MM-DD..YYYY-MM-DD or
    /// YYYY-MM..YYYY-MM, classified on the fly (nothing is written to the
    /// warehouse).
    #[arg(long, requires = "against")]
    range: Option<String>,
    /// Ad hoc mode: the later date range compared with --range.
    #[arg(long, requires = "range")]
    against: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = CompareFormat::Text)]
    format: CompareFormat,
    /// Only this table: overview, segments, matrix or customers (one row per
    /// customer). CSV holds one table: segments unless set.
    #[arg(long)]
    table: Option<String>,
    /// Write to this file instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Customers of the generated sample.
    #[arg(long, default_value_t = 2_000)]
    customers: u64,
}

/// A failure with its exit code; printed as `error: …` on stderr.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure {
            code: 1,
            error: error.into(),
        }
    }
}

pub(crate) fn failure(code: u8, error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code,
        error: error.into(),
    }
}

pub(crate) fn parse_period(text: &str) -> Result<Period, Failure> {
    text.parse::<Period>().map_err(|e| failure(2, e))
}

fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let default = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
            0 => "warn",
            1 => "info",
            _ => "debug",
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    // Like other command-line tools, stop quietly when the reader of stdout
    // goes away (`segments run … | head`) instead of panicking on EPIPE.
    #[cfg(unix)]
    // SAFETY: restoring the default action of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let (log_format, quiet) = (cli.log_format, cli.quiet);
        match cli.command {
            Command::Run(args) => run::run(args).await,
            Command::Validate(args) => validate::validate(args).await,
            Command::Explain(args) => validate::explain(args).await,
            Command::Generate(args) => generate::generate(args),
            Command::Quickstart(args) => quickstart::quickstart(args).await,
            Command::Backfill(args) => backfill::backfill(args, log_format, quiet).await,
            Command::Compare(args) => compare::compare(args).await,
            Command::Export(args) => export::export(args).await,
            #[cfg(feature = "ballista")]
            Command::BallistaScheduler(args) => ballista::scheduler(args).await,
            #[cfg(feature = "ballista")]
            Command::BallistaExecutor(args) => ballista::executor(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            // Redacted: a store's error text may quote a credential.
            let message = crate::storage::redact(&failure.error.to_string());
            eprintln!("error: {message}");
            // Library errors already include their cause in the message when
            // it helps; print only causes that add something.
            let mut printed = message;
            for cause in failure.error.chain().skip(1) {
                let cause = crate::storage::redact(&cause.to_string());
                if !printed.contains(&cause) {
                    eprintln!("  caused by: {cause}");
                    printed.push_str(&cause);
                }
            }
            ExitCode::from(failure.code)
        }
    }
}

//! The command line: clap types, logging set-up, dispatch to one module per
//! subcommand, and the mapping of errors to the exit codes of docs/design.md §6.
//! Results go to stdout, logs and errors to stderr.

mod backfill;
#[cfg(feature = "ballista")]
mod ballista;
mod catalog;
mod compare;
mod diff;
mod export;
mod forget;
mod generate;
mod init;
mod lineage;
mod quickstart;
pub mod reference;
mod report;
mod run;
mod status;
mod summary;
mod validate;
mod why;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::model::ExitStatus;
use crate::model::Period;

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
    #[command(after_help = EXAMPLES_RUN)]
    Run(RunArgs),
    /// Check a job (and a config) without reading any data.
    #[command(after_help = EXAMPLES_VALIDATE)]
    Validate(JobArgs),
    /// Print the plan of each SQL step of a job.
    #[command(after_help = EXAMPLES_EXPLAIN)]
    Explain(ExplainArgs),
    /// Write deterministic synthetic transactions, one Parquet folder per month.
    #[command(after_help = EXAMPLES_GENERATE)]
    Generate(GenerateArgs),
    /// Write a project for your own export: reads a sample of FILE (CSV,
    /// Parquet or NDJSON), guesses delimiter, decimal comma, encoding, date
    /// format and the role of each column, writes a config (ambiguous
    /// guesses commented out with their candidates), the default job and its
    /// SQL, then validates them and prints what to check.
    #[command(after_help = EXAMPLES_INIT)]
    Init(InitArgs),
    /// Generate a small sample (if ./data is empty), run the default job on
    /// its last two months into ./warehouse and show how to query the tables.
    Quickstart(QuickstartArgs),
    /// Run a job for every period of a range, in order; periods already
    /// published with the same job and rules are skipped (unless --rerun).
    #[command(after_help = EXAMPLES_BACKFILL)]
    Backfill(BackfillArgs),
    /// Compare two published periods of a job (--from --to), or two date
    /// ranges classified on the fly (--range --against): segment counts,
    /// transition matrix, lost and new customers, evolution per customer.
    #[command(after_help = EXAMPLES_COMPARE)]
    Compare(CompareArgs),
    /// Write a campaign list (CSV or Parquet) of the customers of a segment,
    /// or of those who made a movement, in a published period.
    #[command(after_help = EXAMPLES_EXPORT)]
    Export(ExportArgs),
    /// Classify a published period with the job's working copy and show what
    /// changes against the published snapshot: counts per segment, the
    /// before × after matrix, changed customers and the rule diff. Nothing is
    /// written to the warehouse.
    #[command(after_help = EXAMPLES_DIFF)]
    Diff(DiffArgs),
    /// Explain one customer's segment in a published period: orders, metrics,
    /// scores and their bands, the rules tried in order, and the movement.
    #[command(after_help = EXAMPLES_WHY)]
    Why(WhyArgs),
    /// Write the HTML report of a published period: one self-contained page
    /// (R×F grid, segment sizes, migrations, history, run facts).
    #[command(after_help = EXAMPLES_REPORT)]
    Report(ReportArgs),
    /// Write the DDL that registers every job's tables as external tables
    /// (Hive partitions) and the BI views over complete periods, for DuckDB,
    /// Trino, Spark, Athena or BigQuery; or a DuckDB database file of those
    /// views (--out FILE.duckdb).
    #[command(after_help = EXAMPLES_CATALOG)]
    Catalog(CatalogArgs),
    /// List the published periods of a job and flag those whose input files
    /// changed since publication (restatement) or whose rules changed.
    #[command(after_help = EXAMPLES_STATUS)]
    Status(StatusArgs),
    /// Erase customers from every published table of every job and period
    /// (crash-safe, under the publishing leases) and from every later run;
    /// needs the secret salt in SEGMENTS_ERASURE_SALT. The erasure log keeps
    /// only salted hashes and dates.
    #[command(after_help = EXAMPLES_FORGET)]
    Forget(ForgetArgs),
    /// Print a shell completion script, e.g.
    /// `segments completions bash > ~/.local/share/bash-completion/completions/segments`.
    Completions(CompletionsArgs),
    /// Run a Ballista scheduler for `engine.kind: ballista` (reads the
    /// config's inputs with its credentials).
    #[cfg(feature = "ballista")]
    BallistaScheduler(ballista::SchedulerArgs),
    /// Run a Ballista executor connected to a scheduler (reads the config's
    /// inputs; its memory limit and spill directory apply here).
    #[cfg(feature = "ballista")]
    BallistaExecutor(ballista::ExecutorArgs),
}

// `--help` ends with examples (also in docs/reference/cli.md, generated).
const EXAMPLES_INIT: &str = "\
Examples:
  segments init my-segments --from exports/ventes-2024.csv
  segments init my-segments --from exports/sales.parquet --customers exports/crm.csv";
const EXAMPLES_RUN: &str = "\
Examples:
  segments run                                  # last complete month, default job and config
  segments run --period 2025-11 --dry-run       # compute and print, write nothing
  segments run --job jobs/value_tiers.yaml --config config/prod.yaml --period 2025-11
  segments run --period 2025-12 --allow-gate revenue_change   # December sales";
const EXAMPLES_VALIDATE: &str = "\
Examples:
  segments validate
  segments validate --job jobs/audiences.yaml --config config/local.yaml";
const EXAMPLES_EXPLAIN: &str = "\
Examples:
  segments explain --period 2025-11";
const EXAMPLES_GENERATE: &str = "\
Examples:
  segments generate --customers 10000 --months 24 --out data
  segments generate --customers 1000000 --months 13 --out /data/bench --clean
  segments generate --process btyd --customers 5000 --months 36 --out data-btyd";
const EXAMPLES_BACKFILL: &str = "\
Examples:
  segments backfill --from 2024-01 --to 2025-12 --allow-gate active_customers_change
  segments backfill --from 2025-06 --to 2025-06 --rerun    # recompute one period
  segments backfill --changed                              # periods whose inputs changed";
const EXAMPLES_COMPARE: &str = "\
Examples:
  segments compare --from 2024-12 --to 2025-12
  segments compare --from 2024-12 --to 2025-12 --format csv --table customers --out moves.csv
  segments compare --range 2024-01..2024-06 --against 2025-01..2025-06 --format json";
const EXAMPLES_EXPORT: &str = "\
Examples:
  segments export --period 2025-12 --segment at_risk --out at_risk.csv
  segments export --period 2025-12 --movement churned --columns from_segment,to_segment --format parquet --out churned.parquet
  segments export --job jobs/audiences.yaml --period 2025-12 --audience sales_cart_abandoners --channel email --out list.csv";
const EXAMPLES_DIFF: &str = "\
Examples:
  segments diff --period 2025-12
  segments diff --period 2025-12 --format markdown --fail-if-changed-over 5";
const EXAMPLES_WHY: &str = "\
Examples:
  segments why --period 2025-12 --customer-id c13";
const EXAMPLES_REPORT: &str = "\
Examples:
  segments report --period 2025-12 --out report.html
  segments report --period 2025-12 --compare-to 2024-12 --locale fr --out rapport.html";
const EXAMPLES_CATALOG: &str = "\
Examples:
  segments catalog --target duckdb --out segments.sql          # then: duckdb -init segments.sql
  segments catalog --target duckdb --out segments.duckdb       # a database file of views
  segments catalog --target trino --location s3a://bucket/warehouse/ --out trino.sql";
const EXAMPLES_STATUS: &str = "\
Examples:
  segments status
  segments status --format json";
const EXAMPLES_FORGET: &str = "\
Examples:
  SEGMENTS_ERASURE_SALT=… segments forget --customer-id c13
  SEGMENTS_ERASURE_SALT=… segments forget --ids-file erasure-requests.txt";

#[derive(Debug, Args)]
pub struct JobArgs {
    /// The job file: what to compute.
    #[arg(long, env = "SEGMENTS_JOB", default_value = "jobs/rfm_monthly.yaml")]
    job: PathBuf,
    /// The config file: where data lives and how to run.
    #[arg(long, env = "SEGMENTS_CONFIG", default_value = "config/local.yaml")]
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
    /// Ignore the month facts of incremental steps (`incremental: month`):
    /// compute every step from the raw lines, and write the facts anew.
    #[arg(long)]
    full: bool,
    /// Publish even though this data-quality gate fails; recorded in the
    /// manifest.
    #[arg(long, value_name = "GATE", value_enum)]
    allow_gate: Vec<crate::model::Gate>,
    /// Push the run's outcome (exit code, duration, counts) to this
    /// Prometheus Pushgateway, successful or not (not for --dry-run);
    /// overrides the config's `metrics.pushgateway_url`. A failed push is a
    /// warning. See docs/guides/metrics.md.
    #[arg(long, value_name = "URL", env = crate::metrics::URL_ENV, hide_env_values = true)]
    pushgateway_url: Option<String>,
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
    /// <out>/transactions/month=YYYY-MM/part-0.parquet, events to
    /// <out>/events/month=YYYY-MM/, the catalog to <out>/products/ and the
    /// sales calendar to <out>/sales_calendar/.
    #[arg(long, default_value = "data")]
    out: String,
    /// Write no events (nor the visitors seen only in events): transactions,
    /// products and the sales calendar only.
    #[arg(long)]
    no_events: bool,
    /// Write none of the defects real exports carry: no exact duplicate
    /// lines (1 line in 20,000 otherwise), no store lines arriving in the
    /// next month's file (5% of a month's last day otherwise).
    #[arg(long)]
    clean: bool,
    /// What the transactions are drawn from: `retail`, the shop simulation
    /// (segments, refunds, anonymous tickets, events), or `btyd`, a BG/NBD
    /// purchase process with Gamma-Gamma spend and known parameters
    /// (`--bgnbd`, `--gamma-gamma`), to check that `predict:` recovers them.
    #[arg(long, value_enum, default_value_t = GenerateProcess::Retail)]
    process: GenerateProcess,
    /// With `--process btyd`: BG/NBD r,alpha,a,b (alpha in days).
    #[arg(long, default_value = "0.6,40,0.9,4", value_name = "R,ALPHA,A,B")]
    bgnbd: String,
    /// With `--process btyd`: Gamma-Gamma p,q,gamma (gamma in currency units;
    /// mean spend per purchase p*gamma/(q-1)).
    #[arg(long, default_value = "4,3,60", value_name = "P,Q,GAMMA")]
    gamma_gamma: String,
}

/// What `segments generate` draws transactions from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GenerateProcess {
    Retail,
    Btyd,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    #[command(flatten)]
    job: JobArgs,
    /// First period (YYYY-MM), included (with --changed: default the first
    /// published period).
    #[arg(long, required_unless_present = "changed")]
    from: Option<String>,
    /// Last period (YYYY-MM), included; a complete month (with --changed:
    /// default the last published period).
    #[arg(long, required_unless_present = "changed")]
    to: Option<String>,
    /// Recompute periods already published with the same job and rules.
    /// (`--force`, its old name, still works: `--force` elsewhere breaks a
    /// publishing lease.)
    #[arg(long, alias = "force", conflicts_with = "changed")]
    rerun: bool,
    /// Recompute exactly the published periods whose input files changed
    /// since publication (see `segments status`), and the later published
    /// periods whose migrations were made from them, oldest first.
    #[arg(long)]
    changed: bool,
    /// Ignore the month facts of incremental steps (`incremental: month`):
    /// every period computes its steps from the raw lines.
    #[arg(long)]
    full: bool,
    /// Publish even though this data-quality gate fails, for every period
    /// of the range; recorded in each manifest.
    #[arg(long, value_name = "GATE", value_enum)]
    allow_gate: Vec<crate::model::Gate>,
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
        required_unless_present_any = ["movement", "audience"],
        conflicts_with_all = ["movement", "audience"]
    )]
    segment: Option<String>,
    /// Contacts in this audience of an audiences job (from `audiences`; add
    /// `--columns detail` for the audience's detail).
    #[arg(long, conflicts_with = "movement")]
    audience: Option<String>,
    /// With --audience: only the contacts whose detail is this value (e.g.
    /// `--audience main_channel --detail web`).
    #[arg(long, requires = "audience")]
    detail: Option<String>,
    /// Customers who made this movement into the period (from `migrations`).
    #[arg(long, value_parser = ["new", "up", "same", "down", "churned", "reactivated", "removed"])]
    movement: Option<String>,
    /// Extra columns of the source table, after customer_id (e.g. segment,recency_days).
    #[arg(long, value_delimiter = ',')]
    columns: Vec<String>,
    /// The file's format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Csv)]
    format: ExportFormat,
    /// Keep only the customers who opted in to this channel, from the
    /// config's `customers` input (`email_opt_in`, `sms_opt_in`); prints
    /// how many were excluded.
    #[arg(long, value_enum)]
    channel: Option<ConsentChannel>,
    /// The file to write.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ConsentChannel {
    Email,
    Sms,
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
    /// Only this table (customers: one row per customer). CSV holds one
    /// table: segments unless set.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(crate::analysis::compare::TABLES))]
    table: Option<String>,
    /// Write to this file instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DiffFormat {
    Text,
    Json,
    /// Ready to paste in a pull request.
    Markdown,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    #[command(flatten)]
    job: JobArgs,
    /// The published period to classify again (YYYY-MM); default: the
    /// last published period of the job.
    #[arg(long)]
    period: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
    format: DiffFormat,
    /// Exit 3 (after printing the diff) when more than PCT per cent of the
    /// customers change segment, e.g. 5 or 2.5.
    #[arg(long, value_name = "PCT")]
    fail_if_changed_over: Option<f64>,
    /// How many changed customers to list.
    #[arg(long, value_name = "N", default_value_t = 20)]
    sample: usize,
}

#[derive(Debug, Args)]
pub struct WhyArgs {
    #[command(flatten)]
    job: JobArgs,
    /// The published period (YYYY-MM).
    #[arg(long)]
    period: String,
    /// The customer to explain.
    #[arg(long)]
    customer_id: String,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    job: JobArgs,
    /// The published period (YYYY-MM).
    #[arg(long)]
    period: String,
    /// The published period to compare sizes and migrations with (earlier
    /// than --period); default: the previous month when it is published.
    #[arg(long)]
    compare_to: Option<String>,
    /// Language and number format; default: the config's `report.locale`.
    #[arg(long, value_enum)]
    locale: Option<crate::analysis::report::Locale>,
    /// The HTML file to write.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub struct CatalogArgs {
    /// The query engine to write DDL for.
    #[arg(long, value_enum, required_unless_present = "docs")]
    target: Option<crate::catalog::Target>,
    /// Where to write: a .sql file, or for DuckDB a .duckdb database file
    /// of views (built by running the DDL with the DuckDB Python package, or
    /// else the DuckDB CLI).
    #[arg(long, required_unless_present = "docs")]
    out: Option<PathBuf>,
    /// The jobs to register: a folder of job files (every *.yaml) or one
    /// job file.
    #[arg(long, default_value = "jobs")]
    jobs: Vec<PathBuf>,
    /// The config file: the warehouse URL and the labels' locale.
    #[arg(long, env = "SEGMENTS_CONFIG", default_value = "config/local.yaml")]
    config: PathBuf,
    /// The warehouse URL as the engine sees it (default: the config's
    /// warehouse), e.g. s3a://bucket/warehouse/ for Spark on Hadoop.
    #[arg(long, value_name = "URL")]
    location: Option<String>,
    /// Schema (database, dataset) of the tables and views; DuckDB uses its
    /// default schema.
    #[arg(long, default_value = "segments")]
    schema: String,
    /// Language of the labels in the views; default: the config's `locale`.
    #[arg(long)]
    locale: Option<crate::config::Locale>,
    /// Write the Markdown documentation of every table's columns (from
    /// schemas/) to this file instead, e.g. docs/tables.md.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["target", "out", "location", "locale"])]
    docs: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// The config file: the warehouse to erase from.
    #[arg(long, env = "SEGMENTS_CONFIG", default_value = "config/local.yaml")]
    config: PathBuf,
    /// A customer id to erase.
    #[arg(long, value_name = "ID", required_unless_present = "ids_file")]
    customer_id: Vec<String>,
    /// A file of customer ids, one per line (`#` comments allowed).
    #[arg(long, value_name = "FILE")]
    ids_file: Option<PathBuf>,
    /// Break a live lease of a run of some period (the run stops before
    /// publishing).
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    job: JobArgs,
    /// Output format, as for `compare` and `diff`.
    #[arg(long, value_enum, default_value_t = StatusFormat::Text)]
    format: StatusFormat,
    /// The same as `--format json` (kept for scripts written before
    /// `--format`).
    #[arg(long, hide = true, conflicts_with = "format")]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    /// A table.
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The project folder to create (must not exist or be empty).
    dir: PathBuf,
    /// A transactions export: one line per order line (.csv, .parquet,
    /// .ndjson / .jsonl).
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
    /// A customer file (one row per customer: id, attributes, consent),
    /// mapped as the `customers` input.
    #[arg(long, value_name = "FILE")]
    customers: Option<PathBuf>,
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
    pub code: ExitStatus,
    pub error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure {
            code: ExitStatus::Internal,
            error: error.into(),
        }
    }
}

pub(crate) fn failure(code: ExitStatus, error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code,
        error: error.into(),
    }
}

/// `diff` and `why` explain one segment per customer: an audiences job
/// (overlapping, no snapshot) has nothing for them to compare.
pub(crate) fn refuse_audiences(job: &crate::config::Job, command: &str) -> Result<(), Failure> {
    if job.kind == crate::config::ClassificationKind::Audiences {
        return Err(failure(
            ExitStatus::Invalid,
            anyhow::anyhow!(
                "{}: `segments {command}` works on segments jobs; {} declares audiences, which overlap and have no snapshot (see its `audiences` table, or `segments export --audience`)",
                job.path.display(),
                job.name
            ),
        ));
    }
    Ok(())
}

pub(crate) fn parse_period(text: &str) -> Result<Period, Failure> {
    text.parse::<Period>()
        .map_err(|e| failure(ExitStatus::Invalid, e))
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
    // Before any thread allocates: see the function.
    crate::engine::one_malloc_arena_per_core();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(ExitStatus::Internal.code());
        }
    };
    let result = runtime.block_on(async {
        let (log_format, quiet) = (cli.log_format, cli.quiet);
        match cli.command {
            Command::Run(args) => run::run(args).await,
            Command::Validate(args) => validate::validate(args).await,
            Command::Explain(args) => validate::explain(args).await,
            Command::Generate(args) => generate::generate(args),
            Command::Init(args) => init::init(args).await,
            Command::Quickstart(args) => quickstart::quickstart(args).await,
            Command::Backfill(args) => backfill::backfill(args, log_format, quiet).await,
            Command::Compare(args) => compare::compare(args).await,
            Command::Export(args) => export::export(args).await,
            Command::Diff(args) => diff::diff(args).await,
            Command::Why(args) => why::why(args).await,
            Command::Report(args) => report::report(args).await,
            Command::Catalog(args) => catalog::catalog(args).await,
            Command::Status(args) => status::status(args).await,
            Command::Forget(args) => forget::forget(args).await,
            Command::Completions(args) => {
                use clap::CommandFactory;
                clap_complete::generate(
                    args.shell,
                    &mut Cli::command(),
                    "segments",
                    &mut std::io::stdout(),
                );
                Ok(())
            }
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
            let error: &(dyn std::error::Error + 'static) = failure.error.as_ref();
            let messages = crate::model::causes::causes(error);
            let mut messages = messages.iter().map(|m| crate::storage::redact(m));
            if let Some(message) = messages.next() {
                eprintln!("error: {message}");
            }
            for cause in messages {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(failure.code.code())
        }
    }
}

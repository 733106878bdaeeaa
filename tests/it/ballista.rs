//! The distributed engine (docs/design.md §8): the shipped jobs, run on Apache
//! Ballista, publish the same tables as on the local engine, row by row —
//! with a scheduler and executor inside the `segments` process
//! (`scheduler_url: standalone`) and with `segments ballista-scheduler` and
//! `segments ballista-executor` as separate processes on 127.0.0.1.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::common::{read_parquet, repo, segments, segments_ok};

/// The jobs compared: every shipped job (one line per job file).
const JOBS: &[&str] = &[
    "rfm_monthly",
    "rfm_7_segments",
    "lifecycle_groups",
    "value_tiers",
    "channel_category",
    "rfm_with_predictions",
    "audiences",
    "profile_segments",
    "profile_audiences",
];

/// Two consecutive periods, so the second migrates from a published one.
const PERIODS: [&str; 2] = ["2024-11", "2024-12"];

/// Longest a `segments` command may take (seconds normally; a hung
/// Ballista job must fail the test, not block it).
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// Longest a scheduler or executor process may take to be ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn every_shipped_job_is_compared() {
    let mut shipped: Vec<String> = std::fs::read_dir(repo().join("jobs"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".yaml")
                .map(str::to_string)
        })
        .collect();
    shipped.sort();
    let mut compared: Vec<String> = JOBS.iter().map(|j| j.to_string()).collect();
    compared.sort();
    assert_eq!(compared, shipped, "add the job to JOBS");
}

/// Generate 14 months of data for 1,500 customers into `dir/data`.
fn generate(dir: &Path) {
    segments_within(
        dir,
        &[
            "generate",
            "--customers",
            "1500",
            "--months",
            "14",
            "--start",
            "2023-11",
            "--seed",
            "7",
            "--out",
            "data",
        ],
        &[],
        "warn",
        &Logs::default(),
    );
}

/// A config over every input the generator wrote (Parquet, Hive `month=`
/// folders when there are some), publishing to `dir/<name>`, with `engine`.
fn config(dir: &Path, name: &str, engine: &str) -> PathBuf {
    let mut text = format!(
        "warehouse: {}\ntimezone: UTC\ninputs:\n",
        dir.join(name).display()
    );
    for input in ["transactions", "events", "products", "sales_calendar"] {
        let folder = dir.join("data").join(input);
        if !folder.is_dir() {
            continue;
        }
        let hive = std::fs::read_dir(&folder)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("month="));
        text.push_str(&format!(
            "  {input}:\n    url: {}/\n    format: parquet\n",
            folder.display()
        ));
        if hive {
            text.push_str("    partition_columns: [month]\n");
        }
    }
    // The customer file and its attributes, as config/local.yaml maps them.
    let customers = dir.join("data/customers");
    if customers.is_dir() {
        text.push_str(&format!(
            "  customers:\n    url: {}/\n    format: parquet\n    columns:\n      region: region\n      city: city\n      age_band: age_band\n      market: market\n      loyalty_member: {{type: boolean}}\n",
            customers.display()
        ));
    }
    text.push_str(
        "quality:\n  max_active_customers_change: 100\n  max_revenue_change: 100\nengine:\n",
    );
    text.push_str(engine);
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn job(name: &str) -> PathBuf {
    repo().join("jobs").join(format!("{name}.yaml"))
}

/// Every published table partition of `job` (relative paths), without
/// `published_periods` and `_runs`, which carry run ids and times.
fn table_files(warehouse: &Path, job: &str) -> Vec<PathBuf> {
    let root = warehouse.join(job);
    let mut files = Vec::new();
    for table in std::fs::read_dir(&root).unwrap().flatten() {
        let name = table.file_name().to_string_lossy().into_owned();
        if name.starts_with('_') || name == "published_periods" {
            continue;
        }
        for partition in std::fs::read_dir(table.path()).unwrap().flatten() {
            for file in std::fs::read_dir(partition.path()).unwrap().flatten() {
                files.push(file.path().strip_prefix(&root).unwrap().to_path_buf());
            }
        }
    }
    files.sort();
    files
}

/// One line per row (`column=value`, nulls as `null`), sorted: the tables
/// must hold the same rows, whatever order the engines wrote them in.
fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let options = FormatOptions::default().with_null("null");
    let mut lines = Vec::new();
    for batch in batches {
        let schema = batch.schema();
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            let values: Vec<String> = schema
                .fields()
                .iter()
                .zip(&formatters)
                .map(|(field, value)| format!("{}={}", field.name(), value.value(row)))
                .collect();
            lines.push(values.join(" | "));
        }
    }
    lines.sort();
    lines
}

/// Compare every published table of `job` in two warehouses: same files,
/// same schemas, same rows. Returns the differences.
fn compare(local: &Path, other: &Path, job: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let files = table_files(local, job);
    assert!(
        files.len() >= 2 * 3,
        "{job}: expected tables for two periods, found {files:?}"
    );
    let other_files = table_files(other, job);
    if files != other_files {
        problems.push(format!(
            "{job}: published files differ:\n  local {files:?}\n  ballista {other_files:?}"
        ));
    }
    let mut rows_compared = 0;
    for file in files.iter().filter(|f| other_files.contains(f)) {
        let expected = read_parquet(&local.join(job).join(file));
        let actual = read_parquet(&other.join(job).join(file));
        let schema = |b: &[RecordBatch]| b.first().map(|b| b.schema());
        if schema(&expected) != schema(&actual) {
            problems.push(format!(
                "{job}/{}: schemas differ:\n  local    {:?}\n  ballista {:?}",
                file.display(),
                schema(&expected),
                schema(&actual)
            ));
            continue;
        }
        let (expected, actual) = (rows(&expected), rows(&actual));
        rows_compared += expected.len();
        if expected.len() != actual.len() {
            problems.push(format!(
                "{job}/{}: {} rows locally, {} on Ballista",
                file.display(),
                expected.len(),
                actual.len()
            ));
        }
        if let Some((line, (e, a))) = expected
            .iter()
            .zip(&actual)
            .enumerate()
            .find(|(_, (e, a))| e != a)
        {
            problems.push(format!(
                "{job}/{} sorted row {line}:\n  local    {e}\n  ballista {a}",
                file.display()
            ));
        }
    }
    assert!(
        rows_compared > 0,
        "{job}: the local engine published no rows to compare"
    );
    problems
}

/// Logs of the processes of a test, shown when a run fails.
#[derive(Default)]
struct Logs(Vec<(String, PathBuf)>);

impl Logs {
    /// The last lines of every log.
    fn tails(&self) -> String {
        let mut text = String::new();
        for (name, path) in &self.0 {
            let log = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            text.push_str(&format!(
                "--- {name} ({}):\n{}\n",
                path.display(),
                tail.join("\n")
            ));
        }
        text
    }
}

/// Numbers the log files of the `segments` commands of a test.
static COMMANDS: AtomicUsize = AtomicUsize::new(0);

/// Run `segments args` in `dir` (logging at `RUST_LOG` plus `log`) and
/// return its stderr; fail the test with it (and `logs`) when it fails or
/// is still running after `RUN_TIMEOUT`, in which case it is killed.
fn segments_within(dir: &Path, args: &[&str], env: &Env, log: &str, logs: &Logs) -> String {
    let n = COMMANDS.fetch_add(1, Ordering::Relaxed);
    let (out, err) = (
        dir.join(format!("command-{n}.out")),
        dir.join(format!("command-{n}.err")),
    );
    // A standalone Ballista executor writes its shuffle files under the
    // temporary directory and leaves them there: keep them in the test's.
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_segments"))
        .args(args)
        .current_dir(dir)
        .env("TMPDIR", &tmp)
        .env(
            "RUST_LOG",
            [
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
                log.into(),
            ]
            .join(","),
        )
        .envs(env.iter().copied())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("the segments binary starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    match status {
        None => panic!(
            "segments {args:?} did not finish within {RUN_TIMEOUT:?} and was killed\nstderr:\n{stderr}\n{}",
            logs.tails()
        ),
        Some(status) if !status.success() => panic!(
            "segments {args:?} failed with {:?}\nstderr:\n{stderr}\n{}",
            status.code(),
            logs.tails()
        ),
        Some(_) => stderr,
    }
}

/// Environment variables of a test's `segments` commands.
type Env<'a> = [(&'a str, &'a str)];

/// Run a job for a period; returns the run's stderr.
fn run(dir: &Path, job_name: &str, config: &Path, period: &str, env: &Env, logs: &Logs) -> String {
    segments_within(
        dir,
        &[
            "run",
            "--job",
            job(job_name).to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--period",
            period,
        ],
        env,
        "ballista_executor=info",
        logs,
    )
}

/// Run `jobs` for both periods with both configs, then compare. After each
/// run on Ballista, `executed` (given the run's stderr) counts the tasks
/// Ballista executors ran so far: it must have grown, so that the tables
/// compared are Ballista's.
fn run_and_compare(
    dir: &Path,
    local: &Path,
    ballista: &Path,
    jobs: &[&str],
    env: &Env,
    logs: &Logs,
    executed: &dyn Fn(&str) -> usize,
) {
    let mut problems = Vec::new();
    let mut tasks = 0;
    for name in jobs {
        for period in PERIODS {
            run(dir, name, local, period, env, logs);
            let stderr = run(dir, name, ballista, period, env, logs);
            let now = executed(&stderr);
            assert!(
                now > tasks,
                "{name} {period}: no task ran on a Ballista executor\nstderr:\n{stderr}\n{}",
                logs.tails()
            );
            tasks = now;
        }
        problems.extend(compare(&dir.join("local"), &dir.join("ballista"), name));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The configs of a local run and of a standalone Ballista run over the
/// same generated data.
fn standalone_configs(dir: &Path) -> (PathBuf, PathBuf) {
    let local = config(dir, "local", "  kind: local\n  target_partitions: 2\n");
    let ballista = config(
        dir,
        "ballista",
        "  kind: ballista\n  scheduler_url: standalone\n  target_partitions: 2\n",
    );
    (local, ballista)
}

#[test]
fn standalone_ballista_publishes_the_tables_of_the_local_engine() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path());
    let (local, ballista) = standalone_configs(dir.path());
    // The executor inside the run logs each task it receives.
    let seen = std::cell::Cell::new(0);
    let executed = |stderr: &str| {
        seen.set(seen.get() + stderr.matches("Received task").count());
        seen.get()
    };
    run_and_compare(
        dir.path(),
        &local,
        &ballista,
        JOBS,
        &[],
        &Logs::default(),
        &executed,
    );
}

/// Erased customers (`segments forget`) stay out of Ballista's tables too:
/// the filter of erased ids travels in the plans as hashes, and the
/// executor hashes with the salt of its own environment.
#[test]
fn standalone_ballista_keeps_erased_customers_out() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path());
    let (local, ballista) = standalone_configs(dir.path());
    // The first generated customer, who buys in both periods.
    let victim = "C0000001";
    let env = [("SEGMENTS_ERASURE_SALT", "a-test-salt-of-more-than-16-chars")];
    let logs = Logs::default();
    for config in [&local, &ballista] {
        segments_within(
            dir.path(),
            &[
                "forget",
                "--config",
                config.to_str().unwrap(),
                "--customer-id",
                victim,
                "--force",
            ],
            &env,
            "warn",
            &logs,
        );
    }
    let seen = std::cell::Cell::new(0);
    let executed = |stderr: &str| {
        seen.set(seen.get() + stderr.matches("Received task").count());
        seen.get()
    };
    run_and_compare(
        dir.path(),
        &local,
        &ballista,
        &["rfm_monthly"],
        &env,
        &logs,
        &executed,
    );
    for period in PERIODS {
        let file = PathBuf::from(format!("snapshots/period={period}/part-0.parquet"));
        let snapshot = rows(&read_parquet(
            &dir.path().join("ballista/rfm_monthly").join(&file),
        ));
        assert!(snapshot.len() > 100, "{period}: {} rows", snapshot.len());
        assert!(
            !snapshot.iter().any(|row| row
                .split(" | ")
                .any(|value| value == format!("customer_id={victim}"))),
            "{period}: the erased customer is in Ballista's snapshot"
        );
    }
}

/// A child process killed when the test ends, pass or fail.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start `segments args` in `dir`, logging to `dir/<name>.log` (Ballista's
/// own logs at info level, so that readiness shows).
fn spawn(dir: &Path, name: &str, args: &[&str], logs: &mut Logs) -> Process {
    let log = dir.join(format!("{name}.log"));
    logs.0.push((name.to_string(), log.clone()));
    let file = std::fs::File::create(&log).unwrap();
    Process(
        Command::new(env!("CARGO_BIN_EXE_segments"))
            .args(args)
            .current_dir(dir)
            .env(
                "RUST_LOG",
                "warn,ballista_scheduler=info,ballista_executor=info",
            )
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("the segments binary starts"),
    )
}

/// Wait until `ready` holds, failing the test after `START_TIMEOUT` or as
/// soon as `process` exits.
fn wait_until(process: &mut Process, what: &str, logs: &Logs, ready: impl Fn() -> bool) {
    let started = Instant::now();
    while !ready() {
        if let Some(status) = process.0.try_wait().unwrap() {
            panic!("{what}: the process exited with {status}\n{}", logs.tails());
        }
        assert!(
            started.elapsed() < START_TIMEOUT,
            "{what}: not ready after {START_TIMEOUT:?}\n{}",
            logs.tails()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn listens(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn scheduler_and_executor_processes_publish_the_tables_of_the_local_engine() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path());
    let local = config(
        dir.path(),
        "local",
        "  kind: local\n  target_partitions: 2\n",
    );
    let (scheduler_port, flight_port, grpc_port) = (free_port(), free_port(), free_port());
    let scheduler_url = format!("df://127.0.0.1:{scheduler_port}");
    let ballista = config(
        dir.path(),
        "ballista",
        &format!("  kind: ballista\n  scheduler_url: {scheduler_url}\n  target_partitions: 2\n"),
    );
    let config_arg = ballista.to_str().unwrap();
    let mut logs = Logs::default();
    let mut scheduler = spawn(
        dir.path(),
        "scheduler",
        &[
            "ballista-scheduler",
            "--config",
            config_arg,
            "--bind",
            "127.0.0.1",
            "--port",
            &scheduler_port.to_string(),
            "--external-host",
            "127.0.0.1",
        ],
        &mut logs,
    );
    wait_until(&mut scheduler, "the scheduler", &logs, || {
        listens(scheduler_port)
    });
    let work_dir = dir.path().join("executor-work");
    std::fs::create_dir(&work_dir).unwrap();
    let mut executor = spawn(
        dir.path(),
        "executor",
        &[
            "ballista-executor",
            "--config",
            config_arg,
            "--scheduler",
            &scheduler_url,
            "--bind",
            "127.0.0.1",
            "--port",
            &flight_port.to_string(),
            "--grpc-port",
            &grpc_port.to_string(),
            "--external-host",
            "127.0.0.1",
            "--vcores",
            "2",
            "--work-dir",
            work_dir.to_str().unwrap(),
        ],
        &mut logs,
    );
    // Jobs are submitted once the scheduler knows the executor (push-based
    // scheduling, Ballista's default: the executor registers at start).
    let executor_log = logs.0[1].1.clone();
    wait_until(&mut executor, "the executor", &logs, || {
        listens(flight_port)
            && std::fs::read_to_string(&executor_log)
                .is_ok_and(|log| log.contains("Executor registration succeed"))
    });
    let executed = |_: &str| {
        std::fs::read_to_string(&executor_log)
            .unwrap_or_default()
            .matches("Execute task")
            .count()
    };
    run_and_compare(
        dir.path(),
        &local,
        &ballista,
        &["rfm_monthly", "audiences"],
        &[],
        &logs,
        &executed,
    );
    // Both processes served every run.
    for (process, name) in [(&mut scheduler, "scheduler"), (&mut executor, "executor")] {
        assert!(
            process.0.try_wait().unwrap().is_none(),
            "the {name} exited during the runs\n{}",
            logs.tails()
        );
    }
}

#[test]
fn remote_executors_cannot_read_transcoded_csv_and_validate_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "warehouse: ./warehouse\ninputs:\n  transactions:\n    url: ./data/\n    format: csv\n    csv:\n      delimiter: \";\"\n      encoding: latin-1\nengine:\n  kind: ballista\n  scheduler_url: df://scheduler:50050\n",
    )
    .unwrap();
    let output = segments(
        dir.path(),
        &[
            "validate",
            "--job",
            repo().join("jobs/rfm_monthly.yaml").to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("inputs.transactions.csv.encoding")
            && stderr.contains("remote Ballista executors"),
        "{stderr}"
    );
    // The same config with a standalone scheduler is fine.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("df://scheduler:50050", "standalone");
    std::fs::write(&config, text).unwrap();
    segments_ok(
        dir.path(),
        &[
            "validate",
            "--job",
            repo().join("jobs/rfm_monthly.yaml").to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
}

/// Exact duplicate lines (a month's file sent twice) are removed by
/// Ballista as by the local engine: the same tables.
#[test]
fn standalone_ballista_removes_duplicate_lines_like_the_local_engine() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path());
    // 300 lines of a month sent again (under the reject-ratio gate).
    let month = dir.path().join("data/transactions/month=2024-06");
    crate::common::duckdb_lines(&format!(
        "COPY (SELECT * FROM read_parquet('{0}/part-0.parquet', hive_partitioning = false) LIMIT 300) TO '{0}/part-1.parquet' (FORMAT parquet); SELECT 'copied'",
        month.display()
    ));
    let (local, ballista) = standalone_configs(dir.path());
    let seen = std::cell::Cell::new(0);
    let executed = |stderr: &str| {
        seen.set(seen.get() + stderr.matches("Received task").count());
        seen.get()
    };
    run_and_compare(
        dir.path(),
        &local,
        &ballista,
        &["rfm_monthly"],
        &[],
        &Logs::default(),
        &executed,
    );
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            dir.path()
                .join("ballista/rfm_monthly/_runs/period=2024-12/_manifest.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(
        manifest["rejected_by_reason"]["duplicate_line"].as_u64() >= Some(300),
        "{}",
        manifest["rejected_by_reason"]
    );
}

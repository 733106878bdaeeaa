//! The distributed engine (DESIGN §8): the shipped jobs, run on Apache
//! Ballista, publish the same tables as on the local engine, row by row —
//! with a scheduler and executor inside the `segments` process
//! (`scheduler_url: standalone`) and with `segments ballista-scheduler` and
//! `segments ballista-executor` as separate processes on 127.0.0.1.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;

use crate::common::{read_parquet, repo, run_job, segments, segments_ok};

/// The jobs compared: every shipped job (one line per job file).
const JOBS: &[&str] = &[
    "rfm_monthly",
    "rfm_7_segments",
    "lifecycle_groups",
    "value_tiers",
];

/// Two consecutive periods, so the second migrates from a published one.
const PERIODS: [&str; 2] = ["2024-11", "2024-12"];

/// Generate 14 months of data for 1,500 customers into `dir/data`.
fn generate(dir: &Path) {
    segments_ok(
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

fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let text = pretty_format_batches(batches).unwrap().to_string();
    text.lines().map(str::to_string).collect()
}

/// Compare every published table of `job` in two warehouses: same files,
/// same schemas, same rows in the same order. Returns the differences.
fn compare(local: &Path, other: &Path, job: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let files = table_files(local, job);
    assert!(
        files.len() >= 2 * 5,
        "{job}: expected tables for two periods, found {files:?}"
    );
    let other_files = table_files(other, job);
    if files != other_files {
        problems.push(format!(
            "{job}: published files differ:\n  local {files:?}\n  ballista {other_files:?}"
        ));
    }
    for file in files.iter().filter(|f| other_files.contains(f)) {
        let expected = read_parquet(&local.join(job).join(file));
        let actual = read_parquet(&other.join(job).join(file));
        let schema = |b: &[RecordBatch]| b.first().map(|b| b.schema());
        if schema(&expected) != schema(&actual) {
            problems.push(format!("{job}/{}: schemas differ", file.display()));
            continue;
        }
        let (expected, actual) = (rows(&expected), rows(&actual));
        if expected.len() != actual.len() {
            problems.push(format!(
                "{job}/{}: {} rows locally, {} on Ballista",
                file.display(),
                expected.len(),
                actual.len()
            ));
        }
        for (line, (e, a)) in expected.iter().zip(&actual).enumerate() {
            if e != a {
                problems.push(format!(
                    "{job}/{} line {line}:\n  local    {e}\n  ballista {a}",
                    file.display()
                ));
                break;
            }
        }
    }
    problems
}

/// Run `jobs` for both periods with both configs, then compare.
fn run_and_compare(dir: &Path, local: &Path, ballista: &Path, jobs: &[&str]) {
    let mut problems = Vec::new();
    for name in jobs {
        for period in PERIODS {
            run_job(dir, &job(name), local, period);
            run_job(dir, &job(name), ballista, period);
        }
        problems.extend(compare(&dir.join("local"), &dir.join("ballista"), name));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn standalone_ballista_publishes_the_tables_of_the_local_engine() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path());
    let local = config(
        dir.path(),
        "local",
        "  kind: local\n  target_partitions: 2\n",
    );
    let ballista = config(
        dir.path(),
        "ballista",
        "  kind: ballista\n  scheduler_url: standalone\n  target_partitions: 2\n",
    );
    run_and_compare(dir.path(), &local, &ballista, JOBS);
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

fn spawn(dir: &Path, args: &[&str]) -> Process {
    Process(
        Command::new(env!("CARGO_BIN_EXE_segments"))
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the segments binary starts"),
    )
}

fn wait_for_port(port: u16) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nothing listens on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
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
    let _scheduler = spawn(
        dir.path(),
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
    );
    wait_for_port(scheduler_port);
    let _executor = spawn(
        dir.path(),
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
        ],
    );
    wait_for_port(flight_port);
    run_and_compare(dir.path(), &local, &ballista, &["rfm_monthly"]);
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

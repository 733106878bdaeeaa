//! The command line as a user meets it: every class of job and config error
//! gives exit code 2 with the file, key and line; `--dry-run` writes nothing;
//! bad periods are refused; a customer matching no rule is named.

use std::path::{Path, PathBuf};

use crate::common::{default_job, job_with, published_files, segments, segments_ok, write_config};
use crate::fixture::write_fixture;

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    warehouse: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("transactions");
    write_fixture(&data);
    let warehouse = dir.path().join("warehouse");
    let config = write_config(dir.path(), &data, &warehouse);
    Setup {
        dir,
        config,
        warehouse,
    }
}

/// Run a command expected to fail; returns (exit code, stderr).
fn fails(setup: &Setup, args: &[&str]) -> (i32, String) {
    let output = segments(setup.dir.path(), args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "{args:?} should fail; stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    (output.status.code().unwrap(), stderr)
}

fn run_args<'a>(job: &'a Path, config: &'a Path, period: &'a str) -> Vec<&'a str> {
    vec![
        "run",
        "--job",
        job.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--period",
        period,
    ]
}

fn validate_args<'a>(job: &'a Path, config: &'a Path) -> Vec<&'a str> {
    vec![
        "validate",
        "--job",
        job.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]
}

/// Each job error: (edit of the job text, what the message must contain).
#[test]
fn job_errors_name_file_key_and_line() {
    let setup = setup();
    // The inserted key is on the line after `window_months` (1-based), and
    // `job_with` adds a `sql_dir:` line above both.
    let shipped = std::fs::read_to_string(crate::common::default_job()).unwrap();
    let window_line = shipped
        .lines()
        .position(|line| line == "window_months: 12")
        .expect("the shipped job sets window_months: 12")
        + 1;
    let unknown_key_line = format!(":{}:", window_line + 2);
    let cases: Vec<(&str, Box<dyn Fn(String) -> String>, Vec<&str>)> = vec![
        (
            "unknown key",
            Box::new(|t| t.replace("window_months: 12", "window_months: 12\nwindow_mnths: 3")),
            vec!["window_mnths", &unknown_key_line],
        ),
        (
            "wrong type",
            Box::new(|t| t.replace("window_months: 12", "window_months: twelve")),
            vec!["window_months", "invalid type"],
        ),
        (
            "missing SQL file",
            Box::new(|t| t.replace("file: orders.sql", "file: no_such.sql")),
            vec!["no_such.sql", "steps[0].file"],
        ),
        (
            "rule that does not parse",
            Box::new(|t| t.replace("rule: r_score = 5 AND f_score >= 4", "rule: r_score = = 5")),
            vec!["champions", "job.yaml:", "does not parse"],
        ),
        (
            "rule on an unknown column",
            Box::new(|t| t.replace("rule: r_score = 5 AND f_score >= 4", "rule: rscore = 5")),
            vec!["champions", "rscore"],
        ),
        (
            "rule that is not a condition",
            Box::new(|t| t.replace("rule: r_score = 5 AND f_score >= 4", "rule: r_score + 1")),
            vec!["champions", "not a condition"],
        ),
        (
            "unknown input",
            Box::new(|t| t.replace("inputs: [transactions]", "inputs: [transactions, weather]")),
            vec!["weather", "inputs[1]"],
        ),
        (
            "duplicate segment",
            Box::new(|t| t.replace("name: loyal\n", "name: champions\n")),
            vec!["champions", "declared twice"],
        ),
        (
            "step SQL on an unknown column",
            Box::new(|t| {
                t.replace("file: orders.sql", "sql: SELECT customer_id, order_id, ordered_dat AS order_date, amount FROM transactions")
            }),
            vec!["step `orders`", "ordered_dat"],
        ),
        (
            "step SQL with DDL",
            Box::new(|t| t.replace("file: orders.sql", "sql: CREATE TABLE x AS SELECT 1")),
            vec!["step `orders`", "DDL"],
        ),
    ];
    for (name, edit, expected) in cases {
        let job = job_with(setup.dir.path(), edit);
        for args in [
            validate_args(&job, &setup.config),
            run_args(&job, &setup.config, "2024-06"),
        ] {
            let (code, stderr) = fails(&setup, &args);
            assert_eq!(
                code, 2,
                "{name} ({}): exit code 2 expected\n{stderr}",
                args[0]
            );
            assert!(
                stderr.contains("job.yaml") || stderr.contains(".sql"),
                "{name}: names the file\n{stderr}"
            );
            for needle in &expected {
                assert!(
                    stderr.contains(needle),
                    "{name}: message should contain {needle:?}\n{stderr}"
                );
            }
        }
    }
    assert!(
        published_files(&setup.warehouse).is_empty(),
        "a failed run publishes nothing"
    );
}

#[test]
fn config_errors_name_file_key_and_line() {
    let setup = setup();
    let job = default_job();
    let base = std::fs::read_to_string(&setup.config).unwrap();
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            base.replace("timezone: UTC", "timezone: UTC\nwarehous: x"),
            vec!["warehous", "unknown field", ":3"],
        ),
        (
            base.replace("timezone: UTC", "timezone: Mars/Olympus"),
            vec!["timezone", "Mars/Olympus"],
        ),
        (
            base.replace("format: parquet", "format: xlsx"),
            vec!["format", "xlsx"],
        ),
        (
            base.replace("timezone: UTC", "timezone: ${SEGMENTS_TEST_UNSET_VARIABLE}"),
            vec!["SEGMENTS_TEST_UNSET_VARIABLE", ":2"],
        ),
        (
            base.replace("  transactions:", "  transactionz:"),
            vec!["transactionz"],
        ),
        (
            base.replace(
                "    partition_columns: [month]\n",
                "    partition_columns: [month]\n    columns:\n      customer: loyalty_card\n",
            ),
            vec!["customer", "looks like `customer_id`"],
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(&setup.config, &text).unwrap();
        for args in [
            validate_args(&job, &setup.config),
            run_args(&job, &setup.config, "2024-06"),
        ] {
            let (code, stderr) = fails(&setup, &args);
            assert_eq!(code, 2, "{text}\n{stderr}");
            assert!(stderr.contains("config.yaml"), "names the file: {stderr}");
            for needle in &expected {
                assert!(
                    stderr.contains(needle),
                    "should contain {needle:?}: {stderr}"
                );
            }
        }
    }
}

#[test]
fn validate_accepts_the_shipped_job_and_reads_no_data() {
    let setup = setup();
    // The config points at a folder that does not exist: validate reads no data.
    let config = setup.dir.path().join("nodata.yaml");
    std::fs::write(
        &config,
        "warehouse: ./w\ninputs:\n  transactions:\n    url: ./missing/\n    format: parquet\n",
    )
    .unwrap();
    let stdout = segments_ok(setup.dir.path(), &validate_args(&default_job(), &config));
    assert!(stdout.contains("ok"), "{stdout}");
}

#[test]
fn periods_are_checked() {
    let setup = setup();
    let job = default_job();
    for bad in ["2024-13", "24-06", "2024-06/../x"] {
        let (code, stderr) = fails(&setup, &run_args(&job, &setup.config, bad));
        assert_eq!(code, 2, "{bad}: {stderr}");
        assert!(stderr.contains("YYYY-MM"), "{stderr}");
    }
    let next_month = chrono::Utc::now().date_naive().format("%Y-%m").to_string();
    let (code, stderr) = fails(&setup, &run_args(&job, &setup.config, &next_month));
    assert_eq!(code, 2, "the current month is not complete: {stderr}");
    assert!(stderr.contains("not complete"), "{stderr}");
    // A month without transactions is a failed gate (exit 3), nothing published.
    let (code, stderr) = fails(&setup, &run_args(&job, &setup.config, "2022-01"));
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("no usable transaction is dated in 2022-01"),
        "{stderr}"
    );
    assert!(published_files(&setup.warehouse).is_empty());
}

#[test]
fn unmatched_customer_is_a_job_error_unless_fallback() {
    let setup = setup();
    // Without the `lost` rule, lost customers match nothing.
    let job = job_with(setup.dir.path(), |t| {
        t.replace("rule: frequency = 0", "rule: frequency = -1")
    });
    let (code, stderr) = fails(&setup, &run_args(&job, &setup.config, "2024-06"));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("customer(s) of 2024-05 match no segment rule"),
        "the previous period is classified first: {stderr}"
    );
    assert!(
        stderr.contains("customer_id=c11") && stderr.contains("frequency=0"),
        "names the customer's values: {stderr}"
    );
    assert!(published_files(&setup.warehouse).is_empty());

    let job = job_with(setup.dir.path(), |t| {
        t.replace("rule: frequency = 0", "rule: frequency = -1")
            .replace("outputs:", "  fallback: lost\noutputs:")
    });
    let stdout = segments_ok(setup.dir.path(), &run_args(&job, &setup.config, "2024-06"));
    assert!(stdout.contains("lost"), "{stdout}");
}

#[test]
fn dry_run_writes_nothing_and_prints_the_matrix() {
    let setup = setup();
    let job = default_job();
    let mut args = run_args(&job, &setup.config, "2024-06");
    args.push("--dry-run");
    let stdout = segments_ok(setup.dir.path(), &args);
    assert!(stdout.contains("Dry run"), "{stdout}");
    assert!(
        stdout.contains("migration_matrix") && stdout.contains("(removed)"),
        "{stdout}"
    );
    assert!(stdout.contains("segment_summary"), "{stdout}");
    assert!(
        published_files(&setup.warehouse).is_empty(),
        "dry run wrote to the warehouse"
    );
}

#[test]
fn json_logs_are_json() {
    let setup = setup();
    let job = default_job();
    let mut args = run_args(&job, &setup.config, "2024-06");
    args.extend(["--log-format", "json", "-v"]);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_segments"))
        .args(&args)
        .current_dir(setup.dir.path())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "info logs expected with -v");
    for line in lines {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
}

/// `SEGMENTS_JOB` and `SEGMENTS_CONFIG` stand for `--job` and `--config`
/// (a container sets them once); the flags still win.
#[test]
fn job_and_config_come_from_the_environment_when_not_given() {
    let setup = setup();
    let run = |envs: &[(&str, &Path)], args: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_segments"));
        command
            .args(args)
            .current_dir(setup.dir.path())
            .env("RUST_LOG", "warn")
            .env_remove("SEGMENTS_JOB")
            .env_remove("SEGMENTS_CONFIG");
        for (name, value) in envs {
            command.env(name, value);
        }
        command.output().unwrap()
    };
    // No flag, no variable: the defaults (jobs/rfm_monthly.yaml) do not exist here.
    let missing = run(&[], &["validate"]);
    assert_eq!(missing.status.code(), Some(2));
    let job = default_job();
    let envs = [
        ("SEGMENTS_JOB", job.as_path()),
        ("SEGMENTS_CONFIG", setup.config.as_path()),
    ];
    let output = run(&envs, &["validate"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // A flag overrides its variable.
    let elsewhere = setup.dir.path().join("no-such-config.yaml");
    let flagged = run(
        &envs,
        &["validate", "--config", elsewhere.to_str().unwrap()],
    );
    assert_eq!(flagged.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&flagged.stderr).contains("no-such-config.yaml"));
}

/// `segments completions SHELL` prints a script the shell accepts, naming the
/// subcommands.
#[test]
fn completions_for_bash_zsh_and_fish() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "_segments()"),
        ("zsh", "#compdef segments"),
        ("fish", "complete -c segments"),
    ] {
        let script = segments_ok(dir.path(), &["completions", shell]);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(
            script.contains("quickstart") && script.contains("backfill"),
            "{shell}"
        );
    }
    // bash parses its script.
    let path = dir.path().join("segments.bash");
    std::fs::write(&path, segments_ok(dir.path(), &["completions", "bash"])).unwrap();
    let parsed = std::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        parsed.status.success(),
        "{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
}

/// `backfill --rerun` recomputes published periods (tests/it/backfill.rs);
/// its old name `--force` is still accepted as the same flag, while `--force`
/// of `run` and `forget` keeps breaking a lease.
#[test]
fn backfill_rerun_keeps_its_old_name() {
    let dir = tempfile::tempdir().unwrap();
    let help = segments_ok(dir.path(), &["backfill", "--help"]);
    assert!(help.contains("--rerun"), "{help}");
    for flag in ["--rerun", "--force"] {
        // The same flag: both conflict with --changed.
        let output = segments(dir.path(), &["backfill", flag, "--changed"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("cannot be used with"), "{flag}: {stderr}");
    }
    let run_help = segments_ok(dir.path(), &["run", "--help"]);
    assert!(run_help.contains("--force"), "{run_help}");
}

//! `segments backfill` on the hand fixture (`tests/it/fixture.rs`, months
//! 2023-05 … 2024-06, nothing after): periods run in order, an interrupted
//! backfill resumes without recomputing what was published (same run ids),
//! `--rerun` recomputes (new run ids, identical tables), a changed job file
//! recomputes, and the first failing period stops it with its exit code.

use std::path::{Path, PathBuf};

use crate::common::{default_job, segments, segments_ok, table_file, write_config};
use crate::fixture::write_fixture;
use crate::jobs::ALLOW_CHANGE_GATES;

const TABLES: [&str; 6] = [
    "snapshots",
    "migrations",
    "migration_matrix",
    "segment_summary",
    "score_thresholds",
    "segment_definitions",
];

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("transactions");
    write_fixture(&data);
    let warehouse = dir.path().join("warehouse");
    let config = write_config(dir.path(), &data, &warehouse);
    (dir, config, warehouse)
}

/// `segments backfill` arguments; the month-to-month change gates are
/// allowed (a handful of customers moves by more than 50% by design).
fn args<'a>(job: &'a Path, config: &'a Path, from: &'a str, to: &'a str) -> Vec<&'a str> {
    let mut args = vec![
        "backfill",
        "--job",
        job.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--from",
        from,
        "--to",
        to,
    ];
    args.extend(ALLOW_CHANGE_GATES);
    args
}

fn manifest(warehouse: &Path, period: &str) -> Option<serde_json::Value> {
    let runs = warehouse.join(format!("rfm_monthly/_runs/period={period}"));
    if !runs.join("_SUCCESS").exists() {
        return None;
    }
    Some(serde_json::from_slice(&std::fs::read(runs.join("_manifest.json")).unwrap()).unwrap())
}

fn run_id(warehouse: &Path, period: &str) -> String {
    manifest(warehouse, period).unwrap_or_else(|| panic!("{period} is not published"))["run_id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn tables(warehouse: &Path, periods: &[&str]) -> Vec<Vec<u8>> {
    periods
        .iter()
        .flat_map(|p| TABLES.iter().map(move |t| (p, t)))
        .map(|(p, t)| std::fs::read(table_file(warehouse, "rfm_monthly", t, p)).unwrap())
        .collect()
}

const ALL: [&str; 6] = [
    "2024-01", "2024-02", "2024-03", "2024-04", "2024-05", "2024-06",
];

#[test]
fn interrupted_backfill_resumes_and_force_recomputes() {
    let (dir, config, warehouse) = setup();
    let job = default_job();

    // A first backfill covers only part of the range (as if interrupted).
    let output = segments(dir.path(), &args(&job, &config, "2024-01", "2024-03"));
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("3 published, 0 skipped"), "{stdout}");
    // stderr is not a terminal here: one plain line per period, no bar.
    let stderr = String::from_utf8_lossy(&output.stderr);
    for (i, period) in ["2024-01", "2024-02", "2024-03"].iter().enumerate() {
        assert!(
            stderr.contains(&format!(
                "backfill rfm_monthly [{}/3] {period}: published",
                i + 1
            )),
            "{stderr}"
        );
    }
    assert!(!stderr.contains('\u{1b}'), "no terminal escapes: {stderr}");
    let first: Vec<String> = ALL[..3].iter().map(|p| run_id(&warehouse, p)).collect();
    // Periods run in order: 2024-02 and 2024-03 migrate from the published period before.
    for period in ["2024-02", "2024-03"] {
        assert_eq!(
            manifest(&warehouse, period).unwrap()["from_side"],
            "published"
        );
    }

    // A kill while republishing 2024-02 would leave it without _SUCCESS.
    std::fs::remove_file(warehouse.join("rfm_monthly/_runs/period=2024-02/_SUCCESS")).unwrap();

    // The resumed backfill of the whole range skips what is published with the
    // same job and rules, and computes the rest.
    let stdout = segments_ok(dir.path(), &args(&job, &config, "2024-01", "2024-06"));
    assert!(stdout.contains("4 published, 2 skipped"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "2024-01  skipped: already published by run {}",
            first[0]
        )),
        "{stdout}"
    );
    assert_eq!(run_id(&warehouse, "2024-01"), first[0], "2024-01 kept");
    assert_ne!(
        run_id(&warehouse, "2024-02"),
        first[1],
        "2024-02 recomputed"
    );
    assert_eq!(run_id(&warehouse, "2024-03"), first[2], "2024-03 kept");
    for period in &ALL[3..] {
        assert!(manifest(&warehouse, period).is_some(), "{period} published");
    }
    let resumed: Vec<String> = ALL.iter().map(|p| run_id(&warehouse, p)).collect();
    let before = tables(&warehouse, &ALL);

    // Nothing left to do: everything is skipped.
    let stdout = segments_ok(dir.path(), &args(&job, &config, "2024-01", "2024-06"));
    assert!(stdout.contains("0 published, 6 skipped"), "{stdout}");
    let again: Vec<String> = ALL.iter().map(|p| run_id(&warehouse, p)).collect();
    assert_eq!(again, resumed);

    // --rerun recomputes every period: new run ids, identical tables.
    let mut forced = args(&job, &config, "2024-01", "2024-06");
    forced.push("--rerun");
    let stdout = segments_ok(dir.path(), &forced);
    assert!(stdout.contains("6 published, 0 skipped"), "{stdout}");
    for (period, old) in ALL.iter().zip(&resumed) {
        assert_ne!(&run_id(&warehouse, period), old, "{period} recomputed");
    }
    assert!(
        tables(&warehouse, &ALL) == before,
        "a forced recompute publishes identical tables"
    );

    // A changed job file (here only a label: same rules, another job hash) is
    // not "the same job": its periods are recomputed.
    let text = std::fs::read_to_string(&job).unwrap();
    let edited = text
        .replace("label: Champions", "label: Our champions")
        .replace(
            "window_months: 12",
            &format!(
                "window_months: 12\nsql_dir: {}",
                crate::common::repo().join("sql").display()
            ),
        );
    assert_ne!(edited, text);
    let edited_job = dir.path().join("rfm_monthly.yaml");
    std::fs::write(&edited_job, edited).unwrap();
    let before_06 = run_id(&warehouse, "2024-06");
    let stdout = segments_ok(
        dir.path(),
        &args(&edited_job, &config, "2024-06", "2024-06"),
    );
    assert!(stdout.contains("1 published, 0 skipped"), "{stdout}");
    assert_ne!(run_id(&warehouse, "2024-06"), before_06);
}

#[test]
fn backfill_stops_at_the_first_failing_period() {
    let (dir, config, warehouse) = setup();
    let job = default_job();
    // The fixture has no transaction after June 2024: 2024-07 fails the
    // no_data gate (exit 3); 2024-08 is not attempted.
    let mut json = vec!["--log-format", "json"];
    json.extend(args(&job, &config, "2024-05", "2024-08"));
    let output = segments(dir.path(), &json);
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    assert!(manifest(&warehouse, "2024-05").is_some());
    assert!(manifest(&warehouse, "2024-06").is_some());
    assert!(manifest(&warehouse, "2024-07").is_none());
    assert!(!warehouse.join("rfm_monthly/_runs/period=2024-08").exists());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("2 published, 0 skipped"), "{stdout}");
    assert!(stdout.contains("1 not run"), "{stdout}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("stopped at 2024-07"), "{stderr}");
    assert!(stderr.contains("no_data"), "{stderr}");
    // With --log-format json the progress lines are JSON objects.
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.contains("backfill_period"))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let statuses: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e["period"].as_str().unwrap(), e["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("2024-05", "published"),
            ("2024-06", "published"),
            ("2024-07", "failed")
        ]
    );
    assert_eq!(events[2]["exit_code"], 3);
    assert_eq!(events[0]["total"], 4);

    // The published periods are kept: a rerun skips them and fails again at 2024-07.
    let output = segments(dir.path(), &args(&job, &config, "2024-05", "2024-08"));
    assert_eq!(output.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&output.stdout).contains("0 published, 2 skipped"));

    // Arguments are checked before anything runs.
    let output = segments(dir.path(), &args(&job, &config, "2024-06", "2024-05"));
    assert_eq!(output.status.code(), Some(2), "--from after --to");
    let output = segments(dir.path(), &args(&job, &config, "2024-13", "2024-05"));
    assert_eq!(output.status.code(), Some(2), "bad period");
}

/// A backfill counts its input once for all its periods (same files, one
/// clock): every period's accounting and tables must equal those of the
/// period run on its own — here with duplicate lines, so that the exact
/// recount over distinct lines is exercised too.
#[test]
fn a_backfill_accounts_each_period_like_a_single_run() {
    let (dir, config, warehouse) = setup();
    let data = dir.path().join("transactions");
    let march = std::fs::read_dir(data.join("month=2024-03"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .unwrap();
    std::fs::copy(&march, march.with_file_name("copy.parquet")).unwrap();
    let job = default_job();
    let periods = ["2024-02", "2024-03", "2024-04"];
    let mut backfill = args(&job, &config, periods[0], periods[2]);
    backfill.extend(["--allow-gate", "reject_ratio"]);
    segments_ok(dir.path(), &backfill);

    let alone = dir.path().join("alone");
    std::fs::create_dir(dir.path().join("alone-config")).unwrap();
    let alone_config = write_config(&dir.path().join("alone-config"), &data, &alone);
    for period in periods {
        let mut run = vec![
            "run",
            "--job",
            job.to_str().unwrap(),
            "--config",
            alone_config.to_str().unwrap(),
            "--period",
            period,
            "--allow-gate",
            "reject_ratio",
        ];
        run.extend(ALLOW_CHANGE_GATES);
        segments_ok(dir.path(), &run);
    }
    for period in periods {
        let (together, single) = (
            manifest(&warehouse, period).unwrap(),
            manifest(&alone, period).unwrap(),
        );
        for key in [
            "rows",
            "rejected_by_reason",
            "period_revenue",
            "identification_rate",
        ] {
            assert_eq!(together[key], single[key], "{period}: manifest `{key}`");
        }
    }
    let march_rejects = &manifest(&alone, "2024-03").unwrap()["rejected_by_reason"];
    assert!(
        march_rejects["duplicate_line"].as_u64().unwrap() > 0,
        "the copied file makes duplicates: {march_rejects}"
    );
    assert_eq!(tables(&warehouse, &periods), tables(&alone, &periods));
}

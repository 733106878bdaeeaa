//! Incremental steps (`incremental: month`, docs/guides/incremental.md): a
//! job whose `orders` step is computed per month and merged (the shipped
//! default job) publishes, period after period, exactly the tables of the
//! same job with that step computed from every line (read back by DuckDB,
//! row by row), through a steady sequence, a late
//! file with a refund of an older order, fact files deleted or rewritten and
//! `run --full`; and a run recomputes exactly the months whose facts are
//! missing, stale or untrustworthy (the fingerprint names the run that made
//! them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::{default_job, duckdb_lines, job_with, segments, table_file, write_config};

const TABLES: [&str; 5] = [
    "snapshots",
    "migrations",
    "segment_summary",
    "store_summary",
    "migration_matrix",
];

/// `segments generate` of `customers` over `months` from 2024-01 into
/// `dir/data`, real-shaped: exact duplicate lines and store lines arriving
/// in the next month's file (which then holds lines of two months).
fn generate(dir: &Path, customers: u32, months: u32) -> PathBuf {
    let data = dir.join("data");
    crate::common::segments_ok(
        dir,
        &[
            "generate",
            "--customers",
            &customers.to_string(),
            "--months",
            &months.to_string(),
            "--no-events",
            "--out",
            data.to_str().unwrap(),
        ],
    );
    data
}

/// The default job as shipped: its `orders` step is incremental.
fn incremental_job() -> PathBuf {
    let job = default_job();
    let text = std::fs::read_to_string(&job).unwrap();
    assert!(
        text.contains("    file: orders.sql\n    incremental: month\n"),
        "the default job's orders step is incremental"
    );
    job
}

/// The default job with its `orders` step computed from every line (no
/// `incremental`), in `dir`.
fn plain_job(dir: &Path) -> PathBuf {
    job_with(dir, |text| {
        let plain = text.replacen("    incremental: month\n", "", 1);
        assert_ne!(plain, text, "the default job has an incremental step");
        plain
    })
}

struct Side {
    job: PathBuf,
    config: PathBuf,
    warehouse: PathBuf,
}

fn side(dir: &Path, name: &str, job: PathBuf, data: &Path) -> Side {
    let warehouse = dir.join(format!("warehouse-{name}"));
    let config_dir = dir.join(format!("config-{name}"));
    std::fs::create_dir_all(&config_dir).unwrap();
    let config = write_config(&config_dir, &data.join("transactions"), &warehouse);
    Side {
        job,
        config,
        warehouse,
    }
}

/// The erasure salt of this module's runs (`forget` needs one; a run
/// without an erasure log ignores it).
const SALT: &str = "a salt of the incremental tests";

/// `segments` with `args` and the erasure salt.
fn salted(dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_segments"))
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .env("SEGMENTS_ERASURE_SALT", SALT)
        .output()
        .unwrap()
}

/// The shipped job (incremental orders) and the same job with orders from
/// every line, each with its own warehouse, over the same `data`.
fn sides(dir: &Path, data: &Path) -> (Side, Side) {
    (
        side(dir, "incremental", incremental_job(), data),
        side(dir, "full", plain_job(dir), data),
    )
}

/// `segments run` (exit 0 or the test fails) with `extra` arguments; stderr.
fn run(dir: &Path, side: &Side, period: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "run",
        "--job",
        side.job.to_str().unwrap(),
        "--config",
        side.config.to_str().unwrap(),
        "--period",
        period,
        // Copies of a line are rejects; the fixtures' months move a lot.
        "--allow-gate",
        "reject_ratio",
    ];
    args.extend_from_slice(extra);
    let output = salted(dir, &args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{period} {extra:?}: {stderr}");
    stderr
}

/// Each distinct row of a Parquet file as text with its count (DuckDB
/// reads it): a row twice is not a row once.
fn rows_with_counts(file: &Path) -> std::collections::BTreeSet<String> {
    duckdb_lines(&format!(
        "SELECT t::VARCHAR || ' ×' || COUNT(*) FROM '{}' t GROUP BY t::VARCHAR",
        file.display()
    ))
}

/// Every row of every table of `period`.
fn published(warehouse: &Path, period: &str) -> Vec<(String, std::collections::BTreeSet<String>)> {
    TABLES
        .iter()
        .map(|table| {
            let file = table_file(warehouse, "rfm_monthly", table, period);
            (table.to_string(), rows_with_counts(&file))
        })
        .collect()
}

/// The row accounting a run's manifest records: rows read, used,
/// anonymous and rejected, per reason, and the period's revenue.
fn accounting(warehouse: &Path, period: &str) -> serde_json::Value {
    let path = warehouse.join(format!("rfm_monthly/_runs/period={period}/_manifest.json"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    serde_json::json!({
        "rows": manifest["rows"],
        "rejected_by_reason": manifest["rejected_by_reason"],
        "period_revenue": manifest["period_revenue"],
        "identification_rate": manifest["identification_rate"],
    })
}

/// The same tables, rejects and row accounting on both sides.
fn assert_same_tables(incremental: &Side, full: &Side, period: &str) {
    assert_eq!(
        accounting(&incremental.warehouse, period),
        accounting(&full.warehouse, period),
        "{period}: the row accounting differs"
    );
    let rejects = |side: &Side| {
        rows_with_counts(&table_file(
            &side.warehouse,
            "rfm_monthly",
            "rejects",
            period,
        ))
    };
    assert_eq!(
        rejects(incremental),
        rejects(full),
        "{period}: the rejects differ"
    );
    let expected = published(&full.warehouse, period);
    for ((table, rows), (_, want)) in published(&incremental.warehouse, period)
        .iter()
        .zip(&expected)
    {
        assert!(!want.is_empty(), "{period}: {table} is empty");
        let only_here: Vec<_> = rows.difference(want).take(3).collect();
        let only_full: Vec<_> = want.difference(rows).take(3).collect();
        assert!(
            only_here.is_empty() && only_full.is_empty(),
            "{period}: {table} of the incremental run differs: only there {only_here:?}, only in the full run {only_full:?}"
        );
    }
}

fn run_id(warehouse: &Path, period: &str) -> String {
    let path = warehouse.join(format!("rfm_monthly/_runs/period={period}/_manifest.json"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    manifest["run_id"].as_str().unwrap().to_string()
}

fn facts_folder(warehouse: &Path) -> PathBuf {
    warehouse.join("rfm_monthly/_facts/orders")
}

/// Where the row accounting by month is kept.
fn accounting_folder(warehouse: &Path) -> PathBuf {
    warehouse.join("rfm_monthly/_facts/input-accounting")
}

/// Month → the run that computed its stored facts.
fn fact_runs(warehouse: &Path) -> BTreeMap<String, String> {
    runs_in(&facts_folder(warehouse))
}

/// Month → the run that counted its stored row accounting.
fn accounting_runs(warehouse: &Path) -> BTreeMap<String, String> {
    runs_in(&accounting_folder(warehouse))
}

/// Month → the run id its fingerprint in `folder` records.
fn runs_in(folder: &Path) -> BTreeMap<String, String> {
    let mut runs = BTreeMap::new();
    for entry in std::fs::read_dir(folder).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let month = name.strip_prefix("month=").unwrap().to_string();
        let Ok(bytes) = std::fs::read(entry.path().join("_fingerprint.json")) else {
            continue;
        };
        let record: serde_json::Value = match serde_json::from_slice(&bytes) {
            Ok(record) => record,
            Err(_) => continue,
        };
        runs.insert(month, record["run_id"].as_str().unwrap().to_string());
    }
    runs
}

/// The months whose facts the run of `period` computed.
fn computed_by(warehouse: &Path, period: &str) -> Vec<String> {
    months_of_run(fact_runs(warehouse), &run_id(warehouse, period))
}

/// The months whose row accounting the run of `period` counted.
fn counted_by(warehouse: &Path, period: &str) -> Vec<String> {
    months_of_run(accounting_runs(warehouse), &run_id(warehouse, period))
}

fn months_of_run(runs: BTreeMap<String, String>, id: &str) -> Vec<String> {
    runs.into_iter()
        .filter(|(_, run)| *run == id)
        .map(|(month, _)| month)
        .collect()
}

/// The fact file the month's fingerprint names.
fn fact_file(warehouse: &Path, month: &str) -> PathBuf {
    let folder = facts_folder(warehouse).join(format!("month={month}"));
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("_fingerprint.json")).unwrap()).unwrap();
    folder.join(record["facts"][0]["name"].as_str().unwrap())
}

#[test]
fn incremental_runs_publish_the_tables_of_full_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = generate(dir.path(), 900, 15);
    // Exact copies of March's first lines, sent again in a file of their
    // own (a data this small may hold none of the generator's): every later
    // run must count them from March's stored accounting.
    let march = data.join("transactions/month=2024-03/part-0.parquet");
    let resent = data.join("transactions/month=2024-03/part-resent.parquet");
    duckdb_lines(&format!(
        "COPY (SELECT * FROM read_parquet('{march}', hive_partitioning = false) LIMIT 3)
           TO '{resent}' (FORMAT parquet);
         SELECT 1",
        march = march.display(),
        resent = resent.display(),
    ));
    let (incremental, full) = sides(dir.path(), &data);

    // A first run (the previous period reclassified), then a steady month.
    for period in ["2024-11", "2024-12"] {
        run(dir.path(), &incremental, period, &[]);
        run(dir.path(), &full, period, &[]);
        assert_same_tables(&incremental, &full, period);
    }
    let first = fact_runs(&incremental.warehouse);
    assert_eq!(
        first.keys().cloned().collect::<Vec<_>>(),
        months("2024-01", "2024-12"),
        "a month of facts per month up to 2024-12"
    );
    assert_eq!(
        computed_by(&incremental.warehouse, "2024-12"),
        ["2024-12"],
        "the steady month computes its own month only"
    );
    assert_eq!(
        computed_by(&incremental.warehouse, "2024-11"),
        months("2024-01", "2024-11"),
        "the first run computes every month up to its own"
    );
    // The row accounting covers every month of the input, later ones too
    // (a run counts every line it reads); the steady month reads it all.
    assert_eq!(
        counted_by(&incremental.warehouse, "2024-11"),
        months("2024-01", "2025-03"),
        "the first run counts every month of the input"
    );
    assert!(
        counted_by(&incremental.warehouse, "2024-12").is_empty(),
        "no file changed: the steady month counts no month again"
    );
    // The store summary's store orders are month facts too.
    let store_orders = runs_in(
        &incremental
            .warehouse
            .join("rfm_monthly/_facts/store-orders"),
    );
    assert_eq!(
        store_orders.keys().cloned().collect::<Vec<_>>(),
        months("2024-01", "2024-12")
    );
    assert_eq!(
        months_of_run(store_orders, &run_id(&incremental.warehouse, "2024-12")),
        ["2024-12"],
        "the steady month groups its own month's store orders only"
    );
    let copies =
        accounting(&incremental.warehouse, "2024-12")["rejected_by_reason"]["duplicate_line"]
            .as_u64()
            .unwrap_or(0);
    assert!(
        copies >= 3,
        "the resent lines of March are duplicates: {copies}"
    );
    let first_counted = accounting_runs(&incremental.warehouse);

    // A late file in December's folder: on 20 December, a refund of an
    // October order under its own order id; on 20 October, a sale that
    // arrived late. Its lines span October to December.
    let october = data.join("transactions/month=2024-10/part-0.parquet");
    let late = data.join("transactions/month=2024-12/part-late.parquet");
    duckdb_lines(&format!(
        "SET TimeZone = 'UTC';
         CREATE TABLE october AS SELECT * FROM read_parquet('{october}', hive_partitioning = false)
           WHERE customer_id IS NOT NULL AND amount > 0 AND strftime(ordered_at, '%Y-%m') = '2024-10'
           ORDER BY order_id LIMIT 6;
         COPY ((SELECT * REPLACE (-amount AS amount, TIMESTAMPTZ '2024-12-20 12:00:00+00' AS ordered_at) FROM october LIMIT 1)
               UNION ALL (SELECT * REPLACE ('late-' || order_id AS order_id, TIMESTAMPTZ '2024-10-20 12:00:00+00' AS ordered_at) FROM october OFFSET 5))
           TO '{late}' (FORMAT parquet);
         SELECT COUNT(*)::VARCHAR FROM read_parquet('{late}')",
        october = october.display(),
        late = late.display(),
    ));
    run(dir.path(), &incremental, "2025-01", &[]);
    run(dir.path(), &full, "2025-01", &[]);
    assert_same_tables(&incremental, &full, "2025-01");
    let recomputed = computed_by(&incremental.warehouse, "2025-01");
    for month in ["2024-10", "2024-11", "2024-12", "2025-01"] {
        assert!(
            recomputed.contains(&month.to_string()),
            "{month} may hold lines of the late file: recomputed {recomputed:?}"
        );
    }
    let untouched = fact_runs(&incremental.warehouse);
    for month in ["2024-01", "2024-05", "2024-08"] {
        assert_eq!(
            untouched[month], first[month],
            "{month}: no file of it changed"
        );
    }
    assert_eq!(
        counted_by(&incremental.warehouse, "2025-01"),
        months("2024-10", "2024-12"),
        "the months the late file may hold are counted again, and only they"
    );
    assert_eq!(
        accounting_runs(&incremental.warehouse)["2024-05"],
        first_counted["2024-05"]
    );

    // Facts that cannot be trusted: one rewritten with another month's
    // (valid Parquet, other rows), one deleted, one fingerprint garbled.
    std::fs::copy(
        fact_file(&incremental.warehouse, "2024-03"),
        fact_file(&incremental.warehouse, "2024-02"),
    )
    .unwrap();
    std::fs::remove_file(fact_file(&incremental.warehouse, "2024-05")).unwrap();
    std::fs::write(
        facts_folder(&incremental.warehouse).join("month=2024-06/_fingerprint.json"),
        "{not json",
    )
    .unwrap();
    // The same for the row accounting: 2024-04's rows in 2024-03's file
    // (another size and ETag than recorded), 2024-07's file deleted.
    let accounting_file = |month: &str| {
        let folder = accounting_folder(&incremental.warehouse).join(format!("month={month}"));
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(folder.join("_fingerprint.json")).unwrap())
                .unwrap();
        folder.join(record["facts"][0]["name"].as_str().unwrap())
    };
    std::fs::copy(accounting_file("2024-04"), accounting_file("2024-03")).unwrap();
    std::fs::remove_file(accounting_file("2024-07")).unwrap();
    run(dir.path(), &incremental, "2025-02", &[]);
    run(dir.path(), &full, "2025-02", &[]);
    assert_same_tables(&incremental, &full, "2025-02");
    assert_eq!(
        counted_by(&incremental.warehouse, "2025-02"),
        ["2024-03", "2024-07"],
        "only the accounting not to be trusted is counted again"
    );
    let recomputed = computed_by(&incremental.warehouse, "2025-02");
    for month in ["2024-02", "2024-05", "2024-06", "2025-02"] {
        assert!(
            recomputed.contains(&month.to_string()),
            "{month}: its facts were not to be trusted: recomputed {recomputed:?}"
        );
    }
    assert!(
        !recomputed.contains(&"2024-03".to_string()),
        "2024-03 is intact: {recomputed:?}"
    );

    // `--full` computes every month again, to the same tables.
    run(dir.path(), &incremental, "2025-02", &["--full"]);
    assert_same_tables(&incremental, &full, "2025-02");
    let all = fact_runs(&incremental.warehouse);
    let id = run_id(&incremental.warehouse, "2025-02");
    assert!(all.values().all(|run| *run == id), "{all:?}");
    assert_eq!(
        all.keys().cloned().collect::<Vec<_>>(),
        months("2024-01", "2025-02")
    );

    // `backfill --full`: its first period computes every month again, the
    // second its own month and reuses what the first stored, to the same
    // tables.
    let output = salted(
        dir.path(),
        &[
            "backfill",
            "--job",
            incremental.job.to_str().unwrap(),
            "--config",
            incremental.config.to_str().unwrap(),
            "--from",
            "2025-01",
            "--to",
            "2025-02",
            "--rerun",
            "--full",
            "--allow-gate",
            "reject_ratio",
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for period in ["2025-01", "2025-02"] {
        assert_same_tables(&incremental, &full, period);
    }
    let february = run_id(&incremental.warehouse, "2025-02");
    assert_ne!(february, id, "the backfill published 2025-02 again");
    assert_eq!(
        computed_by(&incremental.warehouse, "2025-01"),
        months("2024-01", "2025-01")
    );
    assert_eq!(computed_by(&incremental.warehouse, "2025-02"), ["2025-02"]);
}

/// The months from `first` to `last` (`YYYY-MM`), both included.
fn months(first: &str, last: &str) -> Vec<String> {
    let mut month: segments::model::Period = first.parse().unwrap();
    let last: segments::model::Period = last.parse().unwrap();
    let mut all = Vec::new();
    while month <= last {
        all.push(month.to_string());
        month = month.next();
    }
    all
}

#[test]
fn a_dry_run_stores_no_facts_and_a_step_that_cannot_merge_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = generate(dir.path(), 300, 6);
    let incremental = side(dir.path(), "incremental", incremental_job(), &data);
    let stdout = String::from_utf8_lossy(
        &segments(
            dir.path(),
            &[
                "run",
                "--job",
                incremental.job.to_str().unwrap(),
                "--config",
                incremental.config.to_str().unwrap(),
                "--period",
                "2024-05",
                "--dry-run",
            ],
        )
        .stdout,
    )
    .into_owned();
    assert!(
        stdout.contains("champions"),
        "the dry run prints its summary: {stdout}"
    );
    assert!(
        !facts_folder(&incremental.warehouse).exists(),
        "a dry run writes nothing"
    );

    let refused = job_with(dir.path(), |text| {
        text.replacen(
            "    file: customer_metrics.sql\n",
            "    file: customer_metrics.sql\n    incremental: month\n",
            1,
        )
    });
    let output = segments(
        dir.path(),
        &[
            "run",
            "--job",
            refused.to_str().unwrap(),
            "--config",
            incremental.config.to_str().unwrap(),
            "--period",
            "2024-05",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("step `customer_metrics`")
            && stderr.contains("orders' not found")
            && stderr.contains("remove `incremental` if it reads an earlier step"),
        "{stderr}"
    );
}

/// `forget` deletes the month facts (they hold customer ids); the next run
/// computes them again without the customer, to the tables of a full run.
#[test]
fn forget_deletes_the_facts_and_the_next_run_keeps_the_customer_out() {
    let dir = tempfile::tempdir().unwrap();
    let data = generate(dir.path(), 300, 8);
    let (incremental, full) = sides(dir.path(), &data);
    for side in [&incremental, &full] {
        run(dir.path(), side, "2024-07", &[]);
    }
    let snapshot = table_file(
        &incremental.warehouse,
        "rfm_monthly",
        "snapshots",
        "2024-07",
    );
    let victim = duckdb_lines(&format!(
        "SELECT customer_id FROM '{}' ORDER BY monetary DESC LIMIT 1",
        snapshot.display()
    ))
    .into_iter()
    .next()
    .unwrap();
    let facts = facts_folder(&incremental.warehouse);
    let holding = fact_rows_of(&facts, &victim);
    assert_ne!(holding, 0, "the facts hold {victim}");

    for side in [&incremental, &full] {
        let config = side.config.to_str().unwrap();
        let output = salted(
            dir.path(),
            &["forget", "--config", config, "--customer-id", &victim],
        );
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let left: Vec<_> = walkdir(&facts);
    assert!(left.is_empty(), "forget leaves no fact: {left:?}");
    for side in [&incremental, &full] {
        run(dir.path(), side, "2024-08", &[]);
    }
    assert_same_tables(&incremental, &full, "2024-08");
    let holding = fact_rows_of(&facts, &victim);
    assert_eq!(holding, 0, "the facts computed again hold no {victim}");
}

/// The rows of `customer` in the fact files under `facts`.
fn fact_rows_of(facts: &Path, customer: &str) -> u64 {
    duckdb_lines(&format!(
        "SELECT COUNT(*)::VARCHAR FROM read_parquet('{}/*/*.parquet') WHERE customer_id = '{customer}'",
        facts.display()
    ))
    .into_iter()
    .next()
    .unwrap()
    .parse()
    .unwrap()
}

/// Every file under `dir` (none when it does not exist).
fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walkdir(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// Every shipped job, with its `orders` step computed per month, publishes
/// the tables of the same job computed from every line, period after
/// period (a first run, a steady month, then a month after a late file),
/// on generated data with every input (events, customers, catalog).
#[test]
fn every_shipped_job_publishes_the_same_tables_incrementally() {
    let dir = tempfile::tempdir().unwrap();
    crate::common::segments_ok(
        dir.path(),
        &[
            "generate",
            "--customers",
            "700",
            "--months",
            "14",
            "--out",
            "data",
        ],
    );
    let shipped_config =
        std::fs::read_to_string(crate::common::repo().join("config/local.yaml")).unwrap();
    let config = |name: &str| {
        let path = dir.path().join(format!("config-{name}.yaml"));
        let text = shipped_config.replacen(
            "warehouse: ./warehouse\n",
            &format!("warehouse: ./warehouse-{name}\n"),
            1,
        );
        assert_ne!(text, shipped_config, "config/local.yaml names ./warehouse");
        std::fs::write(&path, text).unwrap();
        path
    };
    let (config_incremental, config_full) = (config("incremental"), config("full"));
    let mut jobs: Vec<PathBuf> = std::fs::read_dir(crate::common::repo().join("jobs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    jobs.sort();
    assert_eq!(jobs.len(), 9, "{jobs:?}");
    let sql_dir = crate::common::repo().join("sql");
    // The job as shipped, then with `incremental: month` on its orders step
    // added or removed: both read the repository's SQL.
    let variant = |job: &Path, incremental: bool| {
        let text = std::fs::read_to_string(job).unwrap();
        let plain = text.replace("    incremental: month\n", "");
        let text = if incremental {
            plain.replacen(
                "    file: orders.sql\n",
                "    file: orders.sql\n    incremental: month\n",
                1,
            )
        } else {
            plain
        };
        assert!(text.contains("file: orders.sql"), "{}", job.display());
        let text = text.replacen(
            "\nsteps:\n",
            &format!("\nsql_dir: {}\nsteps:\n", sql_dir.display()),
            1,
        );
        let name = job.file_stem().unwrap().to_string_lossy().to_string();
        let path = dir.path().join(format!(
            "{name}-{}.yaml",
            if incremental { "incremental" } else { "full" }
        ));
        std::fs::write(&path, text).unwrap();
        (name, path)
    };
    let gates = [
        "--allow-gate",
        "reject_ratio",
        "--allow-gate",
        "active_customers_change",
        "--allow-gate",
        "revenue_change",
    ];
    let run_both = |period: &str| {
        for job in &jobs {
            for (incremental, config) in [(true, &config_incremental), (false, &config_full)] {
                let (_, path) = variant(job, incremental);
                let mut args = vec![
                    "run",
                    "--job",
                    path.to_str().unwrap(),
                    "--config",
                    config.to_str().unwrap(),
                    "--period",
                    period,
                ];
                args.extend_from_slice(&gates);
                crate::common::segments_ok(dir.path(), &args);
            }
        }
    };
    let compare = |period: &str| {
        for job in &jobs {
            let (name, _) = variant(job, false);
            let folder = dir.path().join("warehouse-full").join(&name);
            let mut tables: Vec<String> = std::fs::read_dir(&folder)
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|t| !t.starts_with('_') && t != "published_periods" && t != "report")
                .collect();
            tables.sort();
            assert!(tables.len() >= 3, "{name}: {tables:?}");
            for table in &tables {
                let rows = |side: &str| {
                    rows_with_counts(&table_file(&dir.path().join(side), &name, table, period))
                };
                let (ours, full) = (rows("warehouse-incremental"), rows("warehouse-full"));
                let only_ours: Vec<_> = ours.difference(&full).take(3).collect();
                let only_full: Vec<_> = full.difference(&ours).take(3).collect();
                assert!(
                    only_ours.is_empty() && only_full.is_empty(),
                    "{name} {table} {period}: only incremental {only_ours:?}, only full {only_full:?}"
                );
            }
            assert!(
                dir.path()
                    .join("warehouse-incremental")
                    .join(&name)
                    .join("_facts/orders")
                    .is_dir(),
                "{name}: the incremental run kept month facts"
            );
        }
    };
    for period in ["2024-11", "2024-12"] {
        run_both(period);
        compare(period);
    }
    // A late file: a refund dated January of a November order, under the
    // original order id.
    let november = dir
        .path()
        .join("data/transactions/month=2024-11/part-0.parquet");
    let late = dir
        .path()
        .join("data/transactions/month=2025-01/part-late.parquet");
    duckdb_lines(&format!(
        "SET TimeZone = 'UTC';
         COPY (SELECT * REPLACE (-amount AS amount, TIMESTAMPTZ '2025-01-10 12:00:00+00' AS ordered_at)
               FROM read_parquet('{}', hive_partitioning = false)
               WHERE customer_id IS NOT NULL AND amount > 0 AND strftime(ordered_at, '%Y-%m') = '2024-11'
               ORDER BY order_id LIMIT 3)
           TO '{}' (FORMAT parquet);
         SELECT 'written'",
        november.display(),
        late.display()
    ));
    run_both("2025-01");
    compare("2025-01");
}

/// A Latin-1 CSV export (decimal comma, day-first dates) carrying what real
/// exports carry: an exact duplicate line, a refund under the original order
/// id a month later, a line of May in June's file, an anonymous ticket. CSV
/// has no statistics: every month is computed by every run and nothing is
/// stored, and the tables are those of the job computed from every line.
#[test]
fn a_latin1_csv_export_with_defects_gives_the_tables_of_a_full_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let header: &[u8] = b"customer_id;order_id;ordered_at;amount\n";
    let may = [
        header,
        b"Zo\xe9;o1;03/05/2024 10:00;12,50\n",
        b"Zo\xe9;o1;03/05/2024 10:00;12,50\n", // the same line twice
        b"c2;o2;04/05/2024 11:00;7,05\n",
        b";t1;05/05/2024 12:00;3,00\n", // anonymous ticket
        b"c3;o3;20/05/2024 09:30;40,00\n",
    ]
    .concat();
    let june = [
        header,
        b"c2;o4;02/06/2024 11:00;9,90\n",
        b"Zo\xe9;o1;10/06/2024 15:00;-12,50\n", // refund of o1 under its id
        b"c4;o5;31/05/2024 23:00;15,00\n",      // May's line in June's file
        b"c3;o6;15/06/2024 09:30;22,00\n",
    ]
    .concat();
    std::fs::write(data.join("2024-05.csv"), may).unwrap();
    std::fs::write(data.join("2024-06.csv"), june).unwrap();
    let config = |name: &str| {
        let path = dir.path().join(format!("config-{name}.yaml"));
        std::fs::write(
            &path,
            format!(
                "warehouse: {}\ntimezone: UTC\ninputs:\n  transactions:\n    url: {}/\n    format: csv\n    csv:\n      delimiter: \";\"\n      decimal: \",\"\n      date_format: \"%d/%m/%Y %H:%M\"\n      encoding: latin-1\nquality:\n  max_active_customers_change: 100\n  max_revenue_change: 100\n",
                dir.path().join(format!("warehouse-{name}")).display(),
                data.display()
            ),
        )
        .unwrap();
        path
    };
    let incremental = Side {
        job: incremental_job(),
        config: config("incremental"),
        warehouse: dir.path().join("warehouse-incremental"),
    };
    let full = Side {
        job: plain_job(dir.path()),
        config: config("full"),
        warehouse: dir.path().join("warehouse-full"),
    };
    for period in ["2024-05", "2024-06"] {
        run(dir.path(), &incremental, period, &[]);
        run(dir.path(), &full, period, &[]);
        assert_same_tables(&incremental, &full, period);
    }
    // Zoé's one order is a purchase in May; in June its refund, a month
    // later under the same id, nets it to zero with the duplicate line
    // counted once: Zoé has no purchase left and leaves the universe.
    let snapshot = |period: &str| {
        rows_with_counts(&table_file(
            &incremental.warehouse,
            "rfm_monthly",
            "snapshots",
            period,
        ))
    };
    assert!(
        snapshot("2024-05")
            .iter()
            .any(|row| row.contains("'customer_id': Zoé,")),
        "the Latin-1 id is read: {:?}",
        snapshot("2024-05")
    );
    assert!(
        !snapshot("2024-06")
            .iter()
            .any(|row| row.contains("'customer_id': Zoé,")),
        "the refund under o1 nets it across months: {:?}",
        snapshot("2024-06")
    );
    assert!(
        walkdir(&facts_folder(&incremental.warehouse)).is_empty(),
        "without statistics no month is stored"
    );
}

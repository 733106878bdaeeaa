//! Data lifecycle (README "Data lifecycle"): restatement of published
//! periods whose inputs changed (`status`, `backfill --changed`), erasure
//! (`forget`, with kills in the middle) and identity merges.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Decimal128Array, RecordBatch};
use datafusion::arrow::datatypes::Decimal128Type;
use datafusion::parquet::arrow::ArrowWriter;

use crate::common::{copy_dir, default_job, read_parquet, segments_ok, write_config};
use crate::jobs::{ALLOW_CHANGE_GATES, generated};

/// `segments <command> --job … --config …` plus `extra`, failing unless 0.
fn command(dir: &Path, name: &str, job: &Path, config: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        name,
        "--job",
        job.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    args.extend(extra);
    segments_ok(dir, &args)
}

fn backfill(dir: &Path, job: &Path, config: &Path, extra: &[&str]) -> String {
    let mut args = extra.to_vec();
    args.extend(ALLOW_CHANGE_GATES);
    command(dir, "backfill", job, config, &args)
}

fn status(dir: &Path, job: &Path, config: &Path) -> serde_json::Value {
    serde_json::from_str(&command(dir, "status", job, config, &["--format", "json"])).unwrap()
}

/// (period, inputs changed, recompute) per published period.
fn flags(status: &serde_json::Value) -> Vec<(String, bool, bool)> {
    status["periods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["period"].as_str().unwrap().to_string(),
                p["inputs_changed"].as_bool().unwrap(),
                p["recompute"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn run_ids(warehouse: &Path, job: &str) -> BTreeMap<String, String> {
    let runs = warehouse.join(job).join("_runs");
    let mut ids = BTreeMap::new();
    for entry in std::fs::read_dir(runs).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let manifest = entry.path().join("_manifest.json");
        if entry.path().join("_SUCCESS").exists() {
            let value: serde_json::Value =
                serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
            ids.insert(
                name.trim_start_matches("period=").to_string(),
                value["run_id"].as_str().unwrap().to_string(),
            );
        }
    }
    ids
}

/// Every Parquet file under `root`, relative path → rows, excluding
/// `published_periods` (run ids and times).
fn tables_under(root: &Path) -> BTreeMap<String, Vec<RecordBatch>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<RecordBatch>>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                let relative = path.strip_prefix(root).unwrap().display().to_string();
                // Month facts are a cache named by the run that made them,
                // not tables (tests/it/incremental.rs compares what they give).
                if !relative.contains("published_periods") && !relative.contains("/_facts/") {
                    out.insert(relative, read_parquet(&path));
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Write `batch` as one Parquet file at `path`.
fn write_batch(path: &Path, batch: &RecordBatch) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

/// A refund line of the first identified line of `file`: same customer,
/// order and time, opposite amount, every other column as it was.
fn refund_of(file: &Path) -> (String, RecordBatch) {
    let batches = read_parquet(file);
    let batch = &batches[0];
    let customers = batch
        .column(batch.schema().index_of("customer_id").unwrap())
        .as_string::<i32>();
    let row = (0..batch.num_rows())
        .find(|&r| customers.is_valid(r))
        .unwrap();
    let line = batch.slice(row, 1);
    let amount_index = line.schema().index_of("amount").unwrap();
    let amount = line.column(amount_index).as_primitive::<Decimal128Type>();
    let refund = Decimal128Array::from(vec![-amount.value(0)])
        .with_precision_and_scale(amount.precision(), amount.scale())
        .unwrap();
    let mut columns = line.columns().to_vec();
    columns[amount_index] = Arc::new(refund);
    let customer = customers.value(row).to_string();
    (
        customer,
        RecordBatch::try_new(line.schema(), columns).unwrap(),
    )
}

/// A late refund lands in an already published month: `status` flags that
/// month and the later ones (their history includes it), `backfill
/// --changed` recomputes exactly those, oldest first, and the warehouse then
/// equals, row by row, a clean backfill on the final data.
#[test]
fn late_refund_is_flagged_and_restated_like_a_clean_run() {
    let dir = tempfile::tempdir().unwrap();
    let config = generated(dir.path(), 300, 8, "2024-01", 11);
    let warehouse = dir.path().join("warehouse");
    let job = default_job();
    let range = ["--from", "2024-03", "--to", "2024-08"];
    backfill(dir.path(), &job, &config, &range);
    let all: Vec<String> = (3..=8).map(|m| format!("2024-0{m}")).collect();
    assert_eq!(
        flags(&status(dir.path(), &job, &config)),
        all.iter()
            .map(|p| (p.clone(), false, false))
            .collect::<Vec<_>>()
    );
    let before_ids = run_ids(&warehouse, "rfm_monthly");
    let before_tables = tables_under(&warehouse);

    // The late refund: a file added to the folder of 2024-05.
    let may = dir.path().join("data/transactions/month=2024-05");
    let (customer, refund) = refund_of(&may.join("part-0.parquet"));
    write_batch(&may.join("late-refunds.parquet"), &refund);

    let flagged = flags(&status(dir.path(), &job, &config));
    let expected: Vec<(String, bool, bool)> = all
        .iter()
        .map(|p| {
            let changed = p.as_str() >= "2024-05";
            (p.clone(), changed, changed)
        })
        .collect();
    assert_eq!(flagged, expected, "refund of {customer}");
    let text = command(dir.path(), "status", &job, &config, &[]);
    assert!(
        text.contains("added") && text.contains("month=2024-05/late-refunds.parquet"),
        "{text}"
    );

    let out = backfill(dir.path(), &job, &config, &["--changed"]);
    assert!(out.contains("4 published, 2 skipped"), "{out}");
    let after_ids = run_ids(&warehouse, "rfm_monthly");
    for period in &all {
        let recomputed = before_ids[period] != after_ids[period];
        assert_eq!(
            recomputed,
            period.as_str() >= "2024-05",
            "{period}: recomputed {recomputed}\n{out}"
        );
    }
    assert!(
        flags(&status(dir.path(), &job, &config))
            .iter()
            .all(|(_, changed, recompute)| !changed && !recompute)
    );
    // Nothing to do the second time.
    let again = backfill(dir.path(), &job, &config, &["--changed"]);
    assert!(again.contains("0 published, 6 skipped"), "{again}");

    // The refund mattered, and the result is a clean run's.
    let after_tables = tables_under(&warehouse);
    let may_snapshot = "rfm_monthly/snapshots/period=2024-05/part-0.parquet";
    assert_ne!(before_tables[may_snapshot], after_tables[may_snapshot]);
    let clean_warehouse = dir.path().join("clean");
    let clean_dir = dir.path().join("clean-config");
    std::fs::create_dir_all(&clean_dir).unwrap();
    let clean_config = write_config(
        &clean_dir,
        &dir.path().join("data/transactions"),
        &clean_warehouse,
    );
    backfill(dir.path(), &job, &clean_config, &range);
    let clean_tables = tables_under(&clean_warehouse);
    assert_eq!(
        after_tables.keys().collect::<Vec<_>>(),
        clean_tables.keys().collect::<Vec<_>>()
    );
    for (file, batches) in &after_tables {
        assert_eq!(
            batches, &clean_tables[file],
            "{file} differs from a clean run"
        );
    }
}

const SALT: &str = "test-salt-0123456789abcdef";

/// Run `segments` with `SEGMENTS_ERASURE_SALT` set to `salt` (or unset).
fn segments_salted(dir: &Path, args: &[&str], salt: Option<&str>) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_segments"));
    command
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .env_remove("SEGMENTS_ERASURE_SALT");
    if let Some(salt) = salt {
        command.env("SEGMENTS_ERASURE_SALT", salt);
    }
    command.output().unwrap()
}

fn ok(output: std::process::Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn forget_args<'a>(config: &'a Path, id: &'a str) -> Vec<&'a str> {
    vec![
        "forget",
        "--config",
        config.to_str().unwrap(),
        "--customer-id",
        id,
    ]
}

/// Every published file and log mentioning `id`: Parquet files read back
/// (every text value, and ids quoted in JSON rows), and the JSON files of
/// `_runs/` and `_erasure/` as text.
fn mentions(root: &Path, id: &str) -> Vec<String> {
    fn walk(dir: &Path, id: &str, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, id, found);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                let quoted = format!("\"{id}\"");
                for batch in read_parquet(&path) {
                    for (index, column) in batch.columns().iter().enumerate() {
                        let text = match column.data_type() {
                            datafusion::arrow::datatypes::DataType::Utf8 => {
                                column.as_string::<i32>()
                            }
                            _ => continue,
                        };
                        for value in text.iter().flatten() {
                            if value == id || value.contains(&quoted) {
                                found.push(format!(
                                    "{} column {}: {value}",
                                    path.display(),
                                    batch.schema().field(index).name()
                                ));
                            }
                        }
                    }
                }
            } else if path.extension().is_some_and(|e| e == "json")
                && std::fs::read_to_string(&path).unwrap().contains(id)
            {
                found.push(path.display().to_string());
            }
        }
    }
    let mut found = Vec::new();
    walk(root, id, &mut found);
    found
}

/// A generated warehouse with rfm_monthly published for 2024-02 … 2024-06
/// and channel_category (an audiences job) for 2024-06, where one customer
/// (returned) is in snapshots, migrations, audiences and, through a
/// duplicated line, rejects.
fn erasure_setup(dir: &Path) -> (PathBuf, String) {
    let config = generated(dir, 300, 6, "2024-01", 5);
    // A short lease, so that a killed `forget` is taken over quickly.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("storage:\n  lease_ttl: 1s\n");
    std::fs::write(&config, text).unwrap();
    let june = dir.join("data/transactions/month=2024-06");
    let batches = read_parquet(&june.join("part-0.parquet"));
    let batch = &batches[0];
    let customers = batch
        .column(batch.schema().index_of("customer_id").unwrap())
        .as_string::<i32>();
    let row = (0..batch.num_rows())
        .find(|&r| customers.is_valid(r))
        .unwrap();
    let victim = customers.value(row).to_string();
    // The same line again: a duplicate_line reject naming the customer.
    write_batch(&june.join("again.parquet"), &batch.slice(row, 1));
    backfill(
        dir,
        &default_job(),
        &config,
        &["--from", "2024-02", "--to", "2024-06"],
    );
    let audiences = crate::common::repo().join("jobs/channel_category.yaml");
    crate::common::run_job(dir, &audiences, &config, "2024-06");
    (config, victim)
}

fn published_everywhere(warehouse: &Path) {
    for (job, periods) in [
        (
            "rfm_monthly",
            &["2024-02", "2024-03", "2024-04", "2024-05", "2024-06"][..],
        ),
        ("channel_category", &["2024-06"][..]),
    ] {
        for period in periods {
            let runs = warehouse.join(format!("{job}/_runs/period={period}"));
            assert!(
                runs.join("_SUCCESS").exists(),
                "{job} {period} not published"
            );
            assert!(
                !runs.join("_erasing").exists(),
                "{job} {period} still erasing"
            );
        }
        let listed =
            read_parquet(&warehouse.join(format!("{job}/published_periods/part-0.parquet")));
        let rows: usize = listed.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, periods.len(), "{job}: published_periods");
    }
}

/// `forget`: afterwards no published file of any table mentions the id
/// (every Parquet file read back), every period is still published, the
/// log holds no id, and a later run does not bring it back.
#[test]
fn forget_erases_everywhere_and_later_runs_keep_it_out() {
    let dir = tempfile::tempdir().unwrap();
    let (config, victim) = erasure_setup(dir.path());
    let warehouse = dir.path().join("warehouse");
    let before = mentions(&warehouse, &victim);
    for table in ["snapshots", "migrations", "audiences", "rejects"] {
        assert!(
            before.iter().any(|m| m.contains(&format!("/{table}/"))),
            "{victim} should be in {table} before: {before:#?}"
        );
    }

    // The 2024-05 snapshot as published before the erasure.
    let may_snapshot = crate::common::table_file(&warehouse, "rfm_monthly", "snapshots", "2024-05");
    let may_before = std::fs::read(&may_snapshot).unwrap();

    // No salt: refused, nothing written.
    let refused = segments_salted(dir.path(), &forget_args(&config, &victim), None);
    assert_eq!(refused.status.code(), Some(2));
    let refusal = String::from_utf8_lossy(&refused.stderr);
    assert!(refusal.contains("SEGMENTS_ERASURE_SALT"), "{refusal}");
    // This warehouse has no erasure log yet: the message must not say it has.
    assert!(!refusal.contains("has an erasure log"), "{refusal}");
    assert!(refusal.contains("is not set"), "{refusal}");
    assert!(!warehouse.join("_erasure").exists());

    let out = ok(
        segments_salted(dir.path(), &forget_args(&config, &victim), Some(SALT)),
        "forget",
    );
    assert!(out.contains("1 customer(s) added"), "{out}");
    assert!(!out.contains(&victim), "{out}");
    let after = mentions(&warehouse, &victim);
    assert!(after.is_empty(), "{victim} still in {after:#?}");
    published_everywhere(&warehouse);
    // The log: one request with one hash and the date, no id.
    let requests: Vec<_> = std::fs::read_dir(warehouse.join("_erasure/requests"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(requests.len(), 1);
    let request: serde_json::Value =
        serde_json::from_slice(&std::fs::read(requests[0].path()).unwrap()).unwrap();
    assert_eq!(request["hashes"].as_array().unwrap().len(), 1);
    assert_eq!(request["hashes"][0].as_str().unwrap().len(), 64);
    assert!(request["completed"].is_string(), "{request}");

    // Again, from a file of ids: nothing new, nothing rewritten.
    let ids = dir.path().join("ids.txt");
    std::fs::write(
        &ids,
        format!("# erasure requests of the week\n\n{victim}\n"),
    )
    .unwrap();
    let again = ok(
        segments_salted(
            dir.path(),
            &[
                "forget",
                "--config",
                config.to_str().unwrap(),
                "--ids-file",
                ids.to_str().unwrap(),
            ],
            Some(SALT),
        ),
        "forget again",
    );
    assert!(again.contains("No new customer"), "{again}");
    assert!(again.contains("0 rewritten"), "{again}");

    // Later runs: without the salt (or with another) they are refused; with
    // it the id stays out although it is still in the inputs.
    let job = default_job();
    let run_args = [
        "run",
        "--job",
        job.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--period",
        "2024-06",
        "--allow-gate",
        "active_customers_change",
        "--allow-gate",
        "revenue_change",
    ];
    let unsalted = segments_salted(dir.path(), &run_args, None);
    assert_eq!(unsalted.status.code(), Some(2), "{unsalted:?}");
    let wrong = segments_salted(dir.path(), &run_args, Some("another-salt-0123456789"));
    assert_eq!(wrong.status.code(), Some(2), "{wrong:?}");
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("not the salt"));
    // As if `forget` had not reached 2024-05 yet: the run of 2024-06 must
    // not take the id back from that snapshot (its "from" side).
    std::fs::write(&may_snapshot, &may_before).unwrap();
    assert!(
        mentions(&warehouse, &victim)
            .iter()
            .any(|m| m.contains("snapshots/period=2024-05")),
        "{victim} should be in the 2024-05 snapshot as first published"
    );
    ok(segments_salted(dir.path(), &run_args, Some(SALT)), "run");
    let june = mentions(&warehouse, &victim);
    assert!(
        june.iter().all(|m| m.contains("snapshots/period=2024-05")),
        "{june:#?}"
    );
    ok(
        segments_salted(dir.path(), &forget_args(&config, &victim), Some(SALT)),
        "forget completing 2024-05",
    );
    let audiences = crate::common::repo().join("jobs/channel_category.yaml");
    let mut audience_args = run_args.to_vec();
    audience_args[2] = audiences.to_str().unwrap();
    ok(
        segments_salted(dir.path(), &audience_args, Some(SALT)),
        "run audiences",
    );
    let rerun = mentions(&warehouse, &victim);
    assert!(
        rerun.is_empty(),
        "a later run brought {victim} back: {rerun:#?}"
    );
    published_everywhere(&warehouse);
}

/// `forget` killed (SIGKILL) at moments spread over a clean forget's
/// duration: each time, once the killed run's lease has expired, running
/// `forget` again completes the erasure: no file mentions the id, every
/// period is published, no `_erasing` marker is left.
#[test]
fn forget_killed_midway_is_completed_by_a_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let (config, victim) = erasure_setup(dir.path());
    let pristine = dir.path().join("warehouse");
    let round_config = |round: usize| {
        let folder = dir.path().join(format!("round-{round}"));
        let warehouse = folder.join("warehouse");
        copy_dir(&pristine, &warehouse);
        let text = std::fs::read_to_string(&config).unwrap().replace(
            &pristine.display().to_string(),
            &warehouse.display().to_string(),
        );
        let path = folder.join("config.yaml");
        std::fs::write(&path, text).unwrap();
        (path, warehouse)
    };
    // How long a clean forget takes here.
    let (clean_config, _) = round_config(100);
    let started = std::time::Instant::now();
    ok(
        segments_salted(dir.path(), &forget_args(&clean_config, &victim), Some(SALT)),
        "clean forget",
    );
    let clean = started.elapsed();

    // Per published period, the tables that mention the customer before.
    let tables_of = |warehouse: &Path| {
        let mut tables: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
        for found in mentions(warehouse, &victim) {
            let relative = found
                .strip_prefix(&format!("{}/", warehouse.display()))
                .unwrap_or(&found)
                .to_string();
            let parts: Vec<&str> = relative.split('/').collect();
            if parts.len() >= 3 && parts[2].starts_with("period=") {
                tables
                    .entry(format!("{}/{}", parts[0], parts[2]))
                    .or_default()
                    .insert(parts[1].to_string());
            }
        }
        tables
    };
    let before = tables_of(&pristine);
    let rounds = 8;
    let mut midway = 0;
    let mut inside_period = 0;
    for round in 0..rounds {
        let (round_config, warehouse) = round_config(round);
        let delay = clean.mul_f64((round as f64 + 0.5) / rounds as f64);
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_segments"))
            .args(forget_args(&round_config, &victim))
            .current_dir(dir.path())
            .env("RUST_LOG", "error")
            .env("SEGMENTS_ERASURE_SALT", SALT)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let status = child.wait().unwrap();
        // Mid-way: the request is recorded but not completed.
        let log = warehouse.join("_erasure/requests");
        let pending = std::fs::read_dir(&log).ok().is_some_and(|entries| {
            // A kill during a write leaves the object store's staging file
            // (`<name>.json#<n>`), which no reader of the store lists.
            entries
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .any(|e| {
                    let request: serde_json::Value =
                        serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
                    request["completed"].is_null()
                })
        });
        if pending && !status.success() {
            midway += 1;
        }
        // A reader never sees a published period half erased: with
        // `_SUCCESS`, either every table still has the customer or none.
        let now = tables_of(&warehouse);
        for (period, tables) in &before {
            if warehouse
                .join(period.replace('/', "/_runs/"))
                .join("_SUCCESS")
                .exists()
            {
                let left = now.get(period).cloned().unwrap_or_default();
                assert!(
                    left.is_empty() || &left == tables,
                    "round {round}: {period} published half erased: {left:?} of {tables:?}"
                );
            }
        }
        // Inside a period's rewrite: its marker is there (and perhaps its
        // `_SUCCESS` is not).
        let erasing = std::fs::read_dir(warehouse.join("rfm_monthly/_runs"))
            .unwrap()
            .flatten()
            .any(|e| e.path().join("_erasing").exists());
        if erasing {
            inside_period += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(1200));
        ok(
            segments_salted(dir.path(), &forget_args(&round_config, &victim), Some(SALT)),
            &format!("forget after the kill of round {round} at {delay:?}"),
        );
        let left = mentions(&warehouse, &victim);
        assert!(
            left.is_empty(),
            "round {round}: {victim} still in {left:#?}"
        );
        published_everywhere(&warehouse);
    }
    eprintln!(
        "clean forget {clean:?}; {midway} of {rounds} kills during the erasure, {inside_period} inside a period's rewrite"
    );
    assert!(
        midway >= 1,
        "no kill landed during the erasure (clean forget took {clean:?})"
    );
}

/// Identity merge, hand-checked: `a1` (bought in January and February) is
/// merged into `b1` (a new card, first used in April) from 2024-04-01.
/// 2024-03, before the merge, keeps both ids; from 2024-04 on, `b1` is one
/// customer with the union of the orders: no `new` b1, no `churned` or
/// `removed` a1, and the "from" side is 2024-03 reclassified with the merge.
#[test]
fn merged_ids_are_one_customer_with_the_union_of_orders() {
    use crate::jobs::{Published, migrations, run_fixture, snapshot, write_lines};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("transactions");
    write_lines(
        &data,
        &[
            ("a1", "o1", "2024-01-10", 100),
            ("a1", "o2", "2024-02-10", 50),
            ("c1", "o3", "2024-03-05", 30),
            ("b1", "o4", "2024-04-10", 80),
            ("b1", "o5", "2024-05-12", 40),
        ],
    );
    let aliases = dir.path().join("aliases.csv");
    std::fs::write(
        &aliases,
        "customer_id,surviving_id,effective_date\na1,b1,2024-04-01\n",
    )
    .unwrap();
    let warehouse = dir.path().join("warehouse");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "warehouse: {}\ninputs:\n  transactions:\n    url: {}/\n    format: parquet\n    partition_columns: [month]\n  customer_aliases:\n    url: {}\n    format: csv\n",
            warehouse.display(),
            data.display(),
            aliases.display()
        ),
    )
    .unwrap();
    let job = default_job();
    for period in ["2024-03", "2024-04", "2024-05"] {
        run_fixture(dir.path(), &job, &config, period);
    }
    let row = |segment: &str,
               rank: i32,
               recency: i32,
               frequency: i64,
               euros: i128,
               score: (i8, i8, i8)| Published {
        segment: segment.into(),
        segment_rank: rank,
        recency_days: recency,
        frequency,
        monetary: euros * 100,
        scores: (Some(score.0), Some(score.1), Some(score.2)),
    };
    let expected = |rows: &[(&str, Published)]| -> BTreeMap<String, Published> {
        rows.iter()
            .map(|(id, p)| (id.to_string(), p.clone()))
            .collect()
    };
    // Before the merge: two customers. a1: 50 days, 2 purchases, 150.00 →
    // R1 F3 M3 at_risk; c1: 26 days, 1, 30.00 → R3 F1 M1 about_to_sleep.
    assert_eq!(
        snapshot(&warehouse, "rfm_monthly", "2024-03"),
        expected(&[
            ("a1", row("at_risk", 9, 50, 2, 150, (1, 3, 3))),
            ("c1", row("about_to_sleep", 7, 26, 1, 30, (3, 1, 1))),
        ])
    );
    // From 2024-04: b1 holds a1's orders too: 3 purchases, 230.00, last on
    // 04-10 (20 days) → R3 F3 M3 need_attention; c1 56 days → hibernating.
    assert_eq!(
        snapshot(&warehouse, "rfm_monthly", "2024-04"),
        expected(&[
            ("b1", row("need_attention", 6, 20, 3, 230, (3, 3, 3))),
            ("c1", row("hibernating", 10, 56, 1, 30, (1, 1, 1))),
        ])
    );
    // b1 comes from a1's segment of 2024-03 (at_risk, rank 9): up.
    let movement = |m: &str, e: &str| (m.to_string(), Some(e.to_string()));
    assert_eq!(
        migrations(&warehouse, "rfm_monthly", "2024-04"),
        BTreeMap::from([
            ("b1".to_string(), movement("up", "better")),
            ("c1".to_string(), movement("down", "watch")),
        ])
    );
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(warehouse.join("rfm_monthly/_runs/period=2024-04/_manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["from_side"], "reclassified");
    assert!(
        manifest["from_side_reason"]
            .as_str()
            .unwrap()
            .contains("customer_aliases"),
        "{manifest}"
    );
    assert!(
        manifest["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["input"] == "customer_aliases"),
        "the aliases are fingerprinted like any input"
    );
    // 2024-05: 4 purchases, 270.00, 19 days; from the published 2024-04.
    assert_eq!(
        snapshot(&warehouse, "rfm_monthly", "2024-05"),
        expected(&[
            ("b1", row("need_attention", 6, 19, 4, 270, (3, 3, 3))),
            ("c1", row("hibernating", 10, 87, 1, 30, (1, 1, 1))),
        ])
    );
    assert_eq!(
        migrations(&warehouse, "rfm_monthly", "2024-05"),
        BTreeMap::from([
            ("b1".to_string(), movement("same", "same")),
            ("c1".to_string(), movement("same", "same")),
        ])
    );
}

/// Every file under `root`, relative path → bytes.
fn files_under(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path.strip_prefix(root).unwrap().display().to_string();
                out.insert(relative, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Retention of 3 months (rejects 2): the run of 2024-06 deletes exactly
/// every partition and the run folder of 2024-03 (2024-06 − 3) and the
/// rejects of 2024-04; every other file is left byte for byte.
#[test]
fn retention_deletes_exactly_the_expired_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("transactions");
    crate::fixture::write_fixture(&data);
    let warehouse = dir.path().join("warehouse");
    let config = write_config(dir.path(), &data, &warehouse);
    let job = default_job();
    backfill(
        dir.path(),
        &job,
        &config,
        &["--from", "2024-03", "--to", "2024-05"],
    );
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("retention:\n  months: 3\n  rejects_months: 2\n");
    std::fs::write(&config, text).unwrap();
    let before = files_under(&warehouse);
    assert!(before.keys().any(|k| k.contains("period=2024-03")));
    crate::jobs::run_fixture(dir.path(), &job, &config, "2024-06");
    let after = files_under(&warehouse);

    let expired = |path: &str| {
        path.contains("/period=2024-03/") || path.starts_with("rfm_monthly/rejects/period=2024-04/")
    };
    let deleted: Vec<&String> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    let expected: Vec<&String> = before.keys().filter(|k| expired(k)).collect();
    assert_eq!(deleted, expected);
    assert!(
        expected
            .iter()
            .any(|k| k.contains("snapshots/period=2024-03"))
    );
    assert!(
        expected
            .iter()
            .any(|k| k.contains("_runs/period=2024-03/_manifest.json"))
    );
    for (path, bytes) in &before {
        if !expired(path) && !path.contains("published_periods") {
            assert_eq!(&after[path], bytes, "{path} changed");
        }
    }
    // New: the period's tables, and the facts and row accounting of its
    // month (closed, never computed before); retention leaves them alone.
    // The backfill before shared its store orders: the run of 2024-06 makes
    // their month facts for every month.
    for path in after.keys().filter(|k| !before.contains_key(*k)) {
        assert!(
            path.contains("period=2024-06")
                || path.contains("/_facts/orders/month=2024-06/")
                || path.contains("/_facts/input-accounting/month=2024-06/")
                || (path.contains("/_facts/store-orders/month=")
                    && path
                        .split("month=")
                        .nth(1)
                        .is_some_and(|month| &month[..7] <= "2024-06")),
            "unexpected new file {path}"
        );
    }
    // published_periods lists what is left.
    let listed = read_parquet(&warehouse.join("rfm_monthly/published_periods/part-0.parquet"));
    let periods: Vec<String> = listed
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_string::<i32>()
                .iter()
                .flatten()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(periods, ["2024-04", "2024-05", "2024-06"]);
}

/// Readiness: without the upstream marker, or with too few days of data,
/// the run exits 5 and publishes nothing; with the marker it runs.
#[test]
fn not_ready_inputs_exit_5_and_publish_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("transactions");
    crate::fixture::write_fixture(&data);
    let warehouse = dir.path().join("warehouse");
    let config = write_config(dir.path(), &data, &warehouse);
    let base = std::fs::read_to_string(&config).unwrap();
    let job = default_job();
    let args = [
        "run",
        "--job",
        job.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--period",
        "2024-06",
    ];
    std::fs::write(
        &config,
        format!("{base}readiness:\n  marker: month={{period}}/_SUCCESS\n"),
    )
    .unwrap();
    let output = crate::common::segments(dir.path(), &args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("not ready") && stderr.contains("month=2024-06/_SUCCESS"),
        "{stderr}"
    );
    assert!(crate::common::published_files(&warehouse).is_empty());

    // The fixture's June has lines on a handful of days only.
    std::fs::write(
        &config,
        format!(
            "{base}readiness:\n  marker: month={{period}}/_SUCCESS\n  min_days_with_data: 25\n"
        ),
    )
    .unwrap();
    std::fs::write(data.join("month=2024-06/_SUCCESS"), b"").unwrap();
    let output = crate::common::segments(dir.path(), &args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("min_days_with_data 25"), "{stderr}");
    assert!(crate::common::published_files(&warehouse).is_empty());

    // Fewer lines than 100 × May's: not ready either.
    std::fs::write(
        &config,
        format!("{base}readiness:\n  min_rows_vs_previous: 100\n"),
    )
    .unwrap();
    let output = crate::common::segments(dir.path(), &args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("min_rows_vs_previous 10000.0%"), "{stderr}");
    // A marker outside the input is a config error.
    std::fs::write(&config, format!("{base}readiness:\n  marker: ../x\n")).unwrap();
    let output = crate::common::segments(dir.path(), &args);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("readiness.marker"));

    std::fs::write(
        &config,
        format!("{base}readiness:\n  marker: month={{period}}/_SUCCESS\n  min_days_with_data: 2\n  min_rows_vs_previous: 0.1\n"),
    )
    .unwrap();
    segments_ok(dir.path(), &args);
    assert!(
        warehouse
            .join("rfm_monthly/_runs/period=2024-06/_SUCCESS")
            .exists()
    );
}

/// Consent: `export --channel email` keeps the customers whose
/// `email_opt_in` is true in the `customers` input and says how many it
/// left out.
#[test]
fn export_keeps_only_consenting_customers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("transactions");
    crate::fixture::write_fixture(&data);
    let warehouse = dir.path().join("warehouse");
    let config = write_config(dir.path(), &data, &warehouse);
    let job = default_job();
    crate::jobs::run_fixture(dir.path(), &job, &config, "2024-06");
    let snapshot = crate::jobs::snapshot(&warehouse, "rfm_monthly", "2024-06");
    let mut by_segment: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, row) in &snapshot {
        by_segment
            .entry(row.segment.clone())
            .or_default()
            .push(id.clone());
    }
    let (segment, members) = by_segment.iter().max_by_key(|(_, m)| m.len()).unwrap();
    assert!(members.len() >= 3, "{by_segment:?}");
    // Every other member of the segment opted in to email; one has no row.
    let mut csv = String::from("id,email,sms\n");
    let mut expected = Vec::new();
    for (index, id) in members.iter().enumerate().skip(1) {
        let email = index % 2 == 1;
        csv.push_str(&format!("{id},{email},true\n"));
        if email {
            expected.push(id.clone());
        }
    }
    let customers = dir.path().join("customers.csv");
    std::fs::write(&customers, csv).unwrap();
    let base = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        base.replace(
            "quality:",
            &format!(
                "  customers:\n    url: {}\n    format: csv\n    columns:\n      customer_id: id\n      email_opt_in: email\n      sms_opt_in: sms\nquality:",
                customers.display()
            ),
        ),
    )
    .unwrap();
    let out = dir.path().join("list.csv");
    let stdout = segments_ok(
        dir.path(),
        &[
            "export",
            "--job",
            job.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--period",
            "2024-06",
            "--segment",
            segment,
            "--channel",
            "email",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let listed: Vec<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect();
    assert_eq!(listed, expected);
    let excluded = members.len() - expected.len();
    assert!(
        stdout.contains(&format!(
            "Excluded {excluded} customer(s) without email opt-in"
        )),
        "{stdout}"
    );
}

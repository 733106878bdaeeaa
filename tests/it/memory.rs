//! Bounded memory (docs/design.md §7): a run whose memory limit is far below the
//! data's in-memory size finishes by spilling and publishes exactly the same
//! tables as an unlimited run. `container.rs` runs the limited run again
//! inside a memory cgroup, with these helpers.

use std::path::{Path, PathBuf};

use crate::common::{default_job, segments_ok, table_file};

/// The published tables of the default job, compared byte for byte.
pub const TABLES: [&str; 7] = [
    "snapshots",
    "migrations",
    "migration_matrix",
    "segment_summary",
    "score_thresholds",
    "segment_definitions",
    "store_summary",
];

/// The period the memory tests run.
pub const PERIOD: &str = "2024-12";

/// Generate `customers` customers over 12 months (2024) under `dir/data`:
/// ~10 lines per customer (100k customers: ~1M lines, over 100 MB once
/// decoded).
pub fn generate(dir: &Path, customers: u32) {
    segments_ok(
        dir,
        &[
            "generate",
            "--customers",
            &customers.to_string(),
            "--months",
            "12",
            "--start",
            "2024-01",
            "--seed",
            "3",
            "--out",
            "data",
        ],
    );
}

/// Write `dir/{name}.yaml`, publishing to the warehouse `dir/{name}` from
/// `dir/data`, with `engine` (YAML lines of an `engine:` section, or "").
pub fn write_config(dir: &Path, name: &str, engine: &str) -> PathBuf {
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &config,
        format!("warehouse: {name}\ninputs:\n  transactions:\n    url: data/transactions/\n    format: parquet\n    partition_columns: [month]\n{engine}"),
    )
    .unwrap();
    config
}

/// The arguments of `segments run` of the default job for [`PERIOD`].
pub fn run_args(config: &Path) -> Vec<String> {
    [
        "run",
        "--job",
        default_job().to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--period",
        PERIOD,
    ]
    .map(String::from)
    .to_vec()
}

/// Fail unless the warehouses `dir/{a}` and `dir/{b}` hold the same bytes
/// in every table of [`TABLES`].
pub fn assert_same_tables(dir: &Path, a: &str, b: &str) {
    for table in TABLES {
        let read = |name: &str| {
            std::fs::read(table_file(&dir.join(name), "rfm_monthly", table, PERIOD)).unwrap()
        };
        assert!(
            read(a) == read(b),
            "{table} differs between the {a} and the {b} run"
        );
    }
}

#[test]
fn memory_limited_run_matches_unlimited_run() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 100_000);
    for (name, engine) in [
        ("unlimited", ""),
        (
            "limited",
            "engine:\n  memory_limit: 64MiB\n  spill_dir: spill\n  target_partitions: 2\n",
        ),
    ] {
        std::fs::create_dir_all(dir.path().join("spill")).unwrap();
        let config = write_config(dir.path(), name, engine);
        let args = run_args(&config);
        segments_ok(
            dir.path(),
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
        );
    }
    // Under the limit, the intermediate results read more than once are kept
    // in the spill directory during the run, and removed with it.
    crate::common::assert_spill_dir_empty(&dir.path().join("spill"));
    assert_same_tables(dir.path(), "unlimited", "limited");
}

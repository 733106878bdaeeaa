//! Bounded memory (docs/design.md §7): a run whose memory limit is far below the
//! data's in-memory size finishes by spilling and publishes exactly the same
//! tables as an unlimited run.

use crate::common::{default_job, segments_ok, table_file};

#[test]
fn memory_limited_run_matches_unlimited_run() {
    let dir = tempfile::tempdir().unwrap();
    // ~100k customers over 12 months: ~1M lines, over 100 MB once decoded.
    segments_ok(
        dir.path(),
        &[
            "generate",
            "--customers",
            "100000",
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
    let job = default_job();
    for (name, engine) in [
        ("unlimited", ""),
        (
            "limited",
            "engine:\n  memory_limit: 64MiB\n  spill_dir: spill\n  target_partitions: 2\n",
        ),
    ] {
        std::fs::create_dir_all(dir.path().join("spill")).unwrap();
        let config = dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &config,
            format!("warehouse: {name}\ninputs:\n  transactions:\n    url: data/transactions/\n    format: parquet\n    partition_columns: [month]\n{engine}"),
        )
        .unwrap();
        segments_ok(
            dir.path(),
            &[
                "run",
                "--job",
                job.to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
                "--period",
                "2024-12",
            ],
        );
    }
    // Under the limit, the intermediate results read more than once are kept
    // in the spill directory during the run, and removed with it.
    crate::common::assert_spill_dir_empty(&dir.path().join("spill"));
    for table in [
        "snapshots",
        "migrations",
        "migration_matrix",
        "segment_summary",
        "score_thresholds",
        "segment_definitions",
        "store_summary",
    ] {
        let unlimited = std::fs::read(table_file(
            &dir.path().join("unlimited"),
            "rfm_monthly",
            table,
            "2024-12",
        ))
        .unwrap();
        let limited = std::fs::read(table_file(
            &dir.path().join("limited"),
            "rfm_monthly",
            table,
            "2024-12",
        ))
        .unwrap();
        assert!(
            unlimited == limited,
            "{table} differs between the memory-limited and the unlimited run"
        );
    }
}

//! `segments export` on the hand-checked fixture: the campaign lists equal
//! the customers the fixture's hand-written tables put in a segment or a
//! movement.

use datafusion::arrow::array::AsArray;

use crate::common::{default_job, read_parquet, segments, segments_ok, write_config};
use crate::fixture::write_fixture;

#[test]
fn exports_segments_and_movements_of_a_published_period() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("transactions");
    write_fixture(&data);
    let warehouse = dir.path().join("warehouse");
    let config = write_config(dir.path(), &data, &warehouse);
    let job = default_job();
    let (job, config) = (job.to_str().unwrap(), config.to_str().unwrap());
    let base = ["--job", job, "--config", config];
    let export = |extra: &[&str]| {
        let mut args = vec!["export"];
        args.extend(base);
        args.extend(extra);
        segments(dir.path(), &args)
    };

    // Not published yet: a clear refusal.
    let output = export(&[
        "--period",
        "2024-06",
        "--segment",
        "hibernating",
        "--out",
        "x.csv",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not published"));

    for period in ["2024-05", "2024-06"] {
        let mut args = vec!["run"];
        args.extend(base);
        args.extend(["--period", period]);
        segments_ok(dir.path(), &args);
    }

    // Hibernating in 2024-06 (fixture.rs SNAPSHOT_2024_06), with recency.
    let stdout = segments_ok(
        dir.path(),
        &[
            "export",
            "--job",
            job,
            "--config",
            config,
            "--period",
            "2024-06",
            "--segment",
            "hibernating",
            "--columns",
            "segment,recency_days",
            "--out",
            "hibernating.csv",
        ],
    );
    assert!(stdout.contains("Exported 6 customer(s)"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("hibernating.csv")).unwrap(),
        "customer_id,segment,recency_days\nc08,hibernating,150\nc10,hibernating,351\nc13,hibernating,121\nc14,hibernating,172\nc17,hibernating,365\nc20,hibernating,264\n"
    );

    // Moved down into 2024-06 (fixture.rs MIGRATIONS_2024_06), as Parquet.
    segments_ok(
        dir.path(),
        &[
            "export",
            "--job",
            job,
            "--config",
            config,
            "--period",
            "2024-06",
            "--movement",
            "down",
            "--columns",
            "from_segment,to_segment",
            "--format",
            "parquet",
            "--out",
            "down.parquet",
        ],
    );
    let batches = read_parquet(&dir.path().join("down.parquet"));
    let ids: Vec<&str> = batches
        .iter()
        .flat_map(|b| b.column(0).as_string::<i32>().iter().map(|v| v.unwrap()))
        .collect();
    assert_eq!(ids, ["c05", "c06", "c07", "c08", "c13", "c17"]);
    let to: Vec<&str> = batches
        .iter()
        .flat_map(|b| b.column(2).as_string::<i32>().iter().map(|v| v.unwrap()))
        .collect();
    assert_eq!(
        to,
        [
            "about_to_sleep",
            "about_to_sleep",
            "about_to_sleep",
            "hibernating",
            "hibernating",
            "hibernating"
        ]
    );

    // An unknown segment or column is a clear error.
    let output = export(&[
        "--period",
        "2024-06",
        "--segment",
        "hibernatng",
        "--out",
        "x.csv",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown segment 'hibernatng'"));
    let output = export(&[
        "--period",
        "2024-06",
        "--segment",
        "lost",
        "--columns",
        "email",
        "--out",
        "x.csv",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("`email` is not a column of snapshots")
    );
}

//! `scoring: fixed` (docs/design.md §3): cut points per metric instead of quantiles,
//! on the hand-checked fixture (`fixture.rs`). Every expected score, segment
//! and band below was worked out by hand from the fixture's metrics.

use std::path::Path;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Int8Type, Int64Type};

use crate::common::{
    job_with, read_parquet, run_job, segments, segments_ok, table_file, write_config,
};
use crate::fixture::write_fixture;
use crate::jobs::snapshot;

const FIXED: &str = "scoring:
  mode: fixed
  recency_days: [180, 90, 30, 7]   # R = 2 at <= 180 days, 3 at <= 90, 4 at <= 30, 5 at <= 7
  frequency: [2, 3, 4, 6]          # F = 2 from 2 purchases, 3 from 3, 4 from 4, 5 from 6
  monetary: [30, 50, 100, 500]     # M = 2 from 30.00, 3 from 50.00, 4 from 100.00, 5 from 500.00
";

fn fixed_job(dir: &Path, scoring: &str) -> std::path::PathBuf {
    job_with(dir, |text| {
        text.replacen(
            "window_months: 12\n",
            &format!("window_months: 12\n{scoring}"),
            1,
        )
    })
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("transactions");
    write_fixture(&data);
    let config = write_config(dir.path(), &data, &dir.path().join("warehouse"));
    (dir, config)
}

#[test]
fn fixed_cut_points_score_and_publish_their_bands() {
    let (dir, config) = setup();
    let job = fixed_job(dir.path(), FIXED);
    run_job(dir.path(), &job, &config, "2024-06");
    let warehouse = dir.path().join("warehouse");

    // (customer, r, f, m, segment) from the fixture's 2024-06 metrics
    // (recency_days, frequency, monetary) and the cut points above.
    let expected: &[(&str, i8, i8, i8, &str)] = &[
        ("c01", 4, 4, 4, "loyal"),               // 10 d, 4, 400
        ("c02", 4, 4, 4, "loyal"),               // 10 d, 4, 200
        ("c03", 5, 1, 2, "new_customers"),       // 5 d, 1, 30
        ("c04", 5, 2, 4, "potential_loyalists"), // 5 d, 2, 160 (champions with quantiles)
        ("c05", 3, 1, 2, "about_to_sleep"),      // 41 d, 1, 40
        ("c06", 3, 1, 2, "about_to_sleep"),      // 41 d, 1, 40
        ("c07", 3, 1, 3, "about_to_sleep"),      // 90 d, 1, 60
        ("c08", 2, 1, 1, "hibernating"),         // 150 d, 1, 25
        ("c09", 1, 4, 5, "at_risk"),             // 212 d, 5, 2500 (cant_lose with quantiles)
        ("c10", 1, 1, 1, "hibernating"),         // 351 d, 1, 20
        ("c13", 2, 1, 3, "hibernating"),         // 121 d, 1, 70
        ("c14", 2, 1, 2, "hibernating"),         // 172 d, 1, 45
        ("c16", 4, 3, 2, "potential_loyalists"), // 27 d, 3, 30 (loyal with quantiles)
        ("c17", 1, 1, 5, "hibernating"),         // 365 d, 1, 1000
        ("c18", 5, 2, 3, "potential_loyalists"), // 2 d, 2, 90 (champions with quantiles)
        ("c19", 4, 1, 2, "promising"),           // 20 d, 1, 35
        ("c20", 1, 1, 2, "hibernating"),         // 264 d, 1, 35
    ];
    let published = snapshot(&warehouse, "rfm_monthly", "2024-06");
    assert_eq!(published.len(), expected.len() + 2, "plus lost c11 and c12");
    for (id, r, f, m, segment) in expected {
        let row = &published[*id];
        assert_eq!(row.scores, (Some(*r), Some(*f), Some(*m)), "{id} scores");
        assert_eq!(row.segment, *segment, "{id} segment");
    }
    for lost in ["c11", "c12"] {
        assert_eq!(published[lost].scores, (None, None, None));
        assert_eq!(published[lost].segment, "lost");
    }

    // score_thresholds: the configured bands (both ends included, empty =
    // open) and the customers counted above.
    let batches = read_parquet(&table_file(
        &warehouse,
        "rfm_monthly",
        "score_thresholds",
        "2024-06",
    ));
    let batch = datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    let text = |name: &str, row: usize| {
        let column = batch.column(batch.schema().index_of(name).unwrap());
        let strings = column.as_string::<i32>();
        strings
            .is_valid(row)
            .then(|| strings.value(row).to_string())
    };
    let rows: Vec<(String, i8, Option<String>, Option<String>, i64)> = (0..batch.num_rows())
        .map(|row| {
            (
                text("metric", row).unwrap(),
                batch.column(1).as_primitive::<Int8Type>().value(row),
                text("min_value", row),
                text("max_value", row),
                batch.column(6).as_primitive::<Int64Type>().value(row),
            )
        })
        .collect();
    let s = |t: &str| Some(t.to_string());
    let band = |metric: &str, score: i8, min: Option<String>, max: Option<String>, n: i64| {
        (metric.to_string(), score, min, max, n)
    };
    assert_eq!(
        rows,
        vec![
            band("recency", 1, s("181"), None, 4),    // c09 c10 c17 c20
            band("recency", 2, s("91"), s("180"), 3), // c08 c13 c14
            band("recency", 3, s("31"), s("90"), 3),  // c05 c06 c07
            band("recency", 4, s("8"), s("30"), 4),   // c01 c02 c16 c19
            band("recency", 5, s("0"), s("7"), 3),    // c03 c04 c18
            band("frequency", 1, s("1"), s("1"), 11), // the one-time buyers
            band("frequency", 2, s("2"), s("2"), 2),  // c04 c18: no gap at F = 2
            band("frequency", 3, s("3"), s("3"), 1),  // c16
            band("frequency", 4, s("4"), s("5"), 3),  // c01 c02 c09
            band("frequency", 5, s("6"), None, 0),    // nobody, bounds kept
            band("monetary", 1, None, s("29.99"), 2), // c08 c10
            band("monetary", 2, s("30.00"), s("49.99"), 7), // c03 c05 c06 c14 c16 c19 c20
            band("monetary", 3, s("50.00"), s("99.99"), 3), // c07 c13 c18
            band("monetary", 4, s("100.00"), s("499.99"), 3), // c01 c02 c04
            band("monetary", 5, s("500.00"), None, 2), // c09 c17
        ]
    );

    // `why` shows the open bands.
    let why = segments_ok(
        dir.path(),
        &[
            "why",
            "--job",
            job.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--period",
            "2024-06",
            "--customer-id",
            "c09",
        ],
    );
    assert!(
        why.contains("R = 1  recency_days 212  181 or more (4 customers)"),
        "{why}"
    );
    assert!(
        why.contains("F = 4  frequency 5       4 to 5 (3 customers)"),
        "{why}"
    );
    assert!(why.contains("9     at_risk"), "{why}");
}

#[test]
fn scoring_is_in_the_rule_hash_and_the_diff() {
    let (dir, config) = setup();
    let quantiles = crate::common::default_job();
    run_job(dir.path(), &quantiles, &config, "2024-06");
    let fixed = fixed_job(dir.path(), FIXED);
    let output = segments_ok(
        dir.path(),
        &[
            "diff",
            "--job",
            fixed.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--period",
            "2024-06",
            "--format",
            "json",
        ],
    );
    let json: serde_json::Value = serde_json::from_str(&output).unwrap();
    assert_ne!(
        json["rule_hash"]["published"],
        json["rule_hash"]["working_copy"]
    );
    assert_eq!(
        json["rule_changes"],
        serde_json::json!([]),
        "no segment rule changed"
    );
    // c04, c18 champions → potential_loyalists; c16 loyal → potential_loyalists;
    // c09 cant_lose → at_risk.
    assert_eq!(json["changed"], 4);
    let bands = json["threshold_changes"].as_array().unwrap();
    assert!(
        bands.iter().any(|b| b["metric"] == "frequency"
            && b["score"] == 2
            && b["before"] == "-"
            && b["after"] == "2–2 (2)"),
        "{bands:?}"
    );
}

#[test]
fn overlapping_or_incomplete_bands_are_refused_with_their_line() {
    let (dir, config) = setup();
    let job = fixed_job(
        dir.path(),
        "scoring:\n  mode: fixed\n  recency_days: [30, 90, 180, 365]\n  frequency: [2, 3, 3, 8]\n",
    );
    let output = segments(
        dir.path(),
        &[
            "validate",
            "--job",
            job.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let text = std::fs::read_to_string(&job).unwrap();
    let line = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let shown = job.display();
    assert!(
        stderr.contains(&format!(
            "{shown}:{}: `scoring.recency_days`: score bands overlap: the cut points must decrease strictly, but 30 is followed by 90, so R = 2 would be empty",
            line("recency_days:")
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{shown}:{}: `scoring.frequency`: score bands overlap: the cut points must increase strictly, but 3 is followed by 3, so F = 3 would be empty",
            line("frequency: [2")
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{shown}:{}: `scoring.monetary`: `mode: fixed` needs 4 cut points",
            line("scoring:")
        )),
        "{stderr}"
    );
    // Unknown keys are refused by the strict parser.
    let job = fixed_job(
        dir.path(),
        "scoring:\n  mode: fixed\n  frequence: [2, 3, 4, 5]\n",
    );
    let output = segments(
        dir.path(),
        &[
            "validate",
            "--job",
            job.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown field `frequence`"));
}

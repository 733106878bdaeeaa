//! `segments diff` on generated data: a rule change (champions from
//! `f_score >= 4` to `f_score = 5`, loyal widened to take the r = 5, f = 4
//! customers) is diffed against the published period, and every count of the
//! diff is compared with an independent computation: the reference's
//! metrics and scores (`reference.rs`) classified in plain Rust by the old
//! and the new rules. Also: the `--fail-if-changed-over` gate, nothing
//! written to the warehouse, and the Markdown and text renderings.

use std::collections::BTreeMap;
use std::path::Path;

use crate::common::{default_job, job_with, published_files, segments, segments_ok};
use crate::jobs::{generated, run};
use crate::reference::{CustomerFacts, read_generated};

const PERIOD: &str = "2024-12";

const OLD_CHAMPIONS: &str = "rule: r_score = 5 AND f_score >= 4";
const NEW_CHAMPIONS: &str = "rule: r_score = 5 AND f_score = 5";
const OLD_LOYAL: &str = "rule: r_score BETWEEN 3 AND 4 AND f_score >= 4";
const NEW_LOYAL: &str = "rule: r_score >= 3 AND f_score >= 4";

/// The default job's rules (docs/design.md §3) in plain Rust, first match wins;
/// `changed` applies the edit under test.
fn rfm_segment(c: &CustomerFacts, changed: bool) -> &'static str {
    let (Some(r), Some(f)) = (c.r_score, c.f_score) else {
        assert_eq!(
            c.frequency, 0,
            "{}: only lost customers lack scores",
            c.customer_id
        );
        return "lost";
    };
    let champions = if changed {
        r == 5 && f == 5
    } else {
        r == 5 && f >= 4
    };
    let loyal = if changed {
        r >= 3 && f >= 4
    } else {
        (3..=4).contains(&r) && f >= 4
    };
    if champions {
        "champions"
    } else if loyal {
        "loyal"
    } else if r >= 4 && (2..=3).contains(&f) {
        "potential_loyalists"
    } else if r == 5 && f == 1 {
        "new_customers"
    } else if r == 4 && f == 1 {
        "promising"
    } else if r == 3 && f == 3 {
        "need_attention"
    } else if r == 3 && f <= 2 {
        "about_to_sleep"
    } else if r <= 2 && f == 5 {
        "cant_lose"
    } else if r <= 2 && (3..=4).contains(&f) {
        "at_risk"
    } else {
        assert!(r <= 2 && f <= 2);
        "hibernating"
    }
}

fn diff(dir: &Path, job: &Path, config: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "diff",
        "--job",
        job.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--period",
        PERIOD,
    ];
    args.extend_from_slice(extra);
    segments(dir, &args)
}

#[test]
fn diff_of_a_rule_change_matches_an_independent_count() {
    let dir = tempfile::tempdir().unwrap();
    let config = generated(dir.path(), 1200, 12, "2024-01", 13);
    let warehouse = dir.path().join("warehouse");
    run(dir.path(), &default_job(), &config, PERIOD);
    let edited = job_with(dir.path(), |text| {
        assert!(text.contains(OLD_CHAMPIONS) && text.contains(OLD_LOYAL));
        text.replace(OLD_CHAMPIONS, NEW_CHAMPIONS)
            .replace(OLD_LOYAL, NEW_LOYAL)
    });

    // Independent: the reference's scores, both rule sets in plain Rust.
    let customers = read_generated(&dir.path().join("data/transactions")).customers(PERIOD);
    let mut before: BTreeMap<&str, i64> = BTreeMap::new();
    let mut after: BTreeMap<&str, i64> = BTreeMap::new();
    let mut cells: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for c in customers.values() {
        let (b, a) = (rfm_segment(c, false), rfm_segment(c, true));
        *before.entry(b).or_default() += 1;
        *after.entry(a).or_default() += 1;
        *cells.entry((b, a)).or_default() += 1;
    }
    let changed: i64 = cells
        .iter()
        .filter(|((b, a), _)| b != a)
        .map(|(_, n)| n)
        .sum();
    assert!(changed > 0, "the generated data has r=5 f=4 customers");
    assert_eq!(
        cells.keys().filter(|(b, a)| b != a).collect::<Vec<_>>(),
        [&("champions", "loyal")],
        "the edit moves r=5 f=4 champions to loyal, nothing else"
    );

    let files_before: Vec<_> = published_files(&warehouse)
        .into_iter()
        .map(|p| (std::fs::read(&p).unwrap(), p))
        .collect();
    let output = diff(dir.path(), &edited, &config, &["--format", "json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    assert_eq!(json["customers"], customers.len() as i64);
    assert_eq!(json["changed"], changed);
    for row in json["segments"].as_array().unwrap() {
        let segment = row["segment"].as_str().unwrap();
        assert_eq!(
            row["before"],
            before.get(segment).copied().unwrap_or(0),
            "{segment} before"
        );
        assert_eq!(
            row["after"],
            after.get(segment).copied().unwrap_or(0),
            "{segment} after"
        );
    }
    assert_eq!(
        json["segments"].as_array().unwrap().len(),
        11,
        "every segment listed"
    );
    let matrix: BTreeMap<(String, String), i64> = json["matrix"]
        .as_array()
        .unwrap()
        .iter()
        .map(|cell| {
            (
                (
                    cell["before"].as_str().unwrap().to_string(),
                    cell["after"].as_str().unwrap().to_string(),
                ),
                cell["customers"].as_i64().unwrap(),
            )
        })
        .collect();
    let expected: BTreeMap<(String, String), i64> = cells
        .iter()
        .map(|((b, a), n)| ((b.to_string(), a.to_string()), *n))
        .collect();
    assert_eq!(matrix, expected);
    // The sample lists changed customers only, with their values.
    let sample = json["sample"].as_array().unwrap();
    assert_eq!(sample.len() as i64, changed.min(20));
    for row in sample {
        let c = &customers[row["customer_id"].as_str().unwrap()];
        assert_eq!(row["before_segment"], "champions");
        assert_eq!(row["after_segment"], "loyal");
        assert_eq!(row["frequency"], c.frequency);
        assert_eq!(row["after_scores"]["f"], 4);
    }
    // The rule diff names both edited rules and nothing else.
    let changes = json["rule_changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(changes[0]["segment"], "champions");
    assert_eq!(changes[0]["before_rule"], "r_score = 5 AND f_score >= 4");
    assert_eq!(changes[0]["after_rule"], "r_score = 5 AND f_score = 5");
    assert_eq!(changes[1]["segment"], "loyal");
    assert_eq!(json["threshold_changes"], serde_json::json!([]));

    // Nothing was written to the warehouse.
    let files_after: Vec<_> = published_files(&warehouse)
        .into_iter()
        .map(|p| (std::fs::read(&p).unwrap(), p))
        .collect();
    assert!(
        files_before == files_after,
        "the diff wrote to the warehouse"
    );

    // The gate: above the threshold exit 3 (after printing), below exit 0.
    let percent = changed as f64 * 100.0 / customers.len() as f64;
    let below = format!("{:.3}", percent - 0.01);
    let above = format!("{:.3}", percent + 0.01);
    let blocked = diff(
        dir.path(),
        &edited,
        &config,
        &["--fail-if-changed-over", &below],
    );
    assert_eq!(blocked.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&blocked.stderr);
    assert!(
        stderr.contains(&format!("{changed} of {} customers", customers.len()))
            && stderr.contains("--fail-if-changed-over"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&blocked.stdout).contains("change segment"));
    let passed = diff(
        dir.path(),
        &edited,
        &config,
        &["--fail-if-changed-over", &above],
    );
    assert_eq!(
        passed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&passed.stderr)
    );

    // Markdown, ready for a pull request.
    let markdown = segments_ok(
        dir.path(),
        &[
            "diff",
            "--job",
            edited.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--period",
            PERIOD,
            "--format",
            "markdown",
        ],
    );
    assert!(markdown.contains("```diff\n~ champions (rank 1)\n-   r_score = 5 AND f_score >= 4\n+   r_score = 5 AND f_score = 5\n"), "{markdown}");
    assert!(
        markdown.contains(&format!(
            "| champions | {} | {} | -{changed} |",
            before["champions"], after["champions"]
        )),
        "{markdown}"
    );
    assert!(markdown.contains(&format!("**{changed}**")), "{markdown}");

    // The unchanged job changes nobody; an unpublished period is exit 2.
    let same = diff(
        dir.path(),
        &default_job(),
        &config,
        &["--fail-if-changed-over", "0"],
    );
    assert_eq!(same.status.code(), Some(0));
    let text = String::from_utf8_lossy(&same.stdout);
    assert!(
        text.contains(&format!(
            "0 of {} customers change segment (0.00%)",
            customers.len()
        )),
        "{text}"
    );
    assert!(
        text.contains("(none: the working copy has the published rules)"),
        "{text}"
    );
    // Without --period: the last published period.
    let latest = segments_ok(
        dir.path(),
        &[
            "diff",
            "--job",
            edited.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    assert!(
        latest.contains(&format!("rfm_monthly on {PERIOD} (published by run")),
        "{latest}"
    );
    assert!(
        latest.contains(&format!(
            "{changed} of {} customers change segment",
            customers.len()
        )),
        "{latest}"
    );

    // A change that leaves customers without a segment fails like `run`.
    let gap = job_with(dir.path(), |text| {
        text.replace(OLD_CHAMPIONS, NEW_CHAMPIONS)
    });
    let failed = diff(dir.path(), &gap, &config, &[]);
    assert_eq!(failed.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains(&format!("of {PERIOD} match no segment rule"))
            && stderr.contains("r_score=5 f_score=4"),
        "{stderr}"
    );
    let unpublished = segments(
        dir.path(),
        &[
            "diff",
            "--job",
            edited.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--period",
            "2024-11",
        ],
    );
    assert_eq!(unpublished.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unpublished.stderr).contains("2024-11 is not published"));
}

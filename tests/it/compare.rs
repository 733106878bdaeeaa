//! `segments compare` over two non-consecutive published periods:
//! - of the hand fixture (`tests/it/fixture.rs`), 2024-02 against 2024-06,
//!   every count worked out by hand below;
//! - of generated data, against an independent computation over the
//!   reference's customer facts (`tests/it/reference.rs`).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::common::{default_job, segments, segments_ok, write_config};
use crate::fixture::write_fixture;
use crate::jobs::{generated, job, rfm7, run, run_fixture};
use crate::reference::read_generated;

fn compare(dir: &Path, job: &Path, config: &Path, from: &str, to: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "compare",
        "--job",
        job.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--from",
        from,
        "--to",
        to,
    ];
    args.extend(extra);
    segments_ok(dir, &args)
}

fn compare_json(dir: &Path, job: &Path, config: &Path, from: &str, to: &str) -> Value {
    let text = compare(dir, job, config, from, to, &["--format", "json"]);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

// Period 2024-02 (as_of 2024-02-29, window [2023-03-01, 2024-03-01)): the
// universe is the customers with a purchase before 2024-03-01: c02, c04, c08,
// c09, c10, c11, c12, c14, c17, c20 — 10 customers, all active.
//   recency (days to 2024-02-29): c11 304, c12 258, c17 243, c10 229, c04 212,
//   c20 142, c09 90, c14 50, c02 45, c08 28 → with n = 10, r = 1 + ⌊worse / 2⌋:
//   c11 1, c12 1, c17 2, c10 2, c04 3, c20 3, c09 4, c14 4, c02 5, c08 5;
//   frequency: 1 for seven customers (f 1), 2 for c02 and c17 (7 below →
//   1 + ⌊35 / 10⌋ = 4), 5 for c09 (9 below → 5).
//   Segments: c02 r5 f4 champions · c09 r4 f5 loyal · c08 r5 f1 new_customers ·
//   c14 r4 f1 promising · c04 r3 f1 and c20 r3 f1 about_to_sleep · c17 r2 f4
//   at_risk · c10, c11, c12 r≤2 f1 hibernating.
// Period 2024-06: the fixture's hand-checked snapshot (tests/it/fixture.rs),
// 19 customers.
//   new (in 2024-06's universe, not in 2024-02's): c01, c03, c05, c06, c07,
//   c13, c16, c18, c19 = 9 (c15's only purchase was refunded: in neither);
//   lost (active in 2024-02, no purchase in 2024-06's window): c11, c12 = 2;
//   reactivated 0, removed 0.
//   Evolution of the 10 in both: c04 about_to_sleep (7) → champions (1)
//   better; c10 hibernating → hibernating same; watch: c02 champions → loyal,
//   c08 new_customers → hibernating, c09 loyal → cant_lose, c14 promising →
//   hibernating, c17 at_risk → hibernating, c20 about_to_sleep → hibernating,
//   c11 and c12 churned = 8.
const SEGMENTS: &[(&str, i64, i64)] = &[
    ("champions", 1, 2),
    ("loyal", 1, 3),
    ("potential_loyalists", 0, 0),
    ("new_customers", 1, 1),
    ("promising", 1, 1),
    ("need_attention", 0, 0),
    ("about_to_sleep", 2, 3),
    ("cant_lose", 0, 1),
    ("at_risk", 1, 0),
    ("hibernating", 3, 6),
    ("lost", 0, 2),
];

/// (from, to, customers), in the order of the matrix: (new) first, then by rank.
const MATRIX: &[(&str, &str, i64)] = &[
    ("(new)", "champions", 1),            // c18
    ("(new)", "loyal", 2),                // c01, c16
    ("(new)", "new_customers", 1),        // c03
    ("(new)", "promising", 1),            // c19
    ("(new)", "about_to_sleep", 3),       // c05, c06, c07
    ("(new)", "hibernating", 1),          // c13
    ("champions", "loyal", 1),            // c02
    ("loyal", "cant_lose", 1),            // c09
    ("new_customers", "hibernating", 1),  // c08
    ("promising", "hibernating", 1),      // c14
    ("about_to_sleep", "champions", 1),   // c04
    ("about_to_sleep", "hibernating", 1), // c20
    ("at_risk", "hibernating", 1),        // c17
    ("hibernating", "hibernating", 1),    // c10
    ("hibernating", "lost", 2),           // c11, c12
];

#[test]
fn compare_two_non_consecutive_periods_of_the_hand_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("transactions");
    write_fixture(&data);
    let warehouse = dir.path().join("warehouse");
    let config = write_config(dir.path(), &data, &warehouse);
    let job = default_job();
    run_fixture(dir.path(), &job, &config, "2024-02");
    run_fixture(dir.path(), &job, &config, "2024-06");

    let view = compare_json(dir.path(), &job, &config, "2024-02", "2024-06");
    assert_eq!(view["from"]["period"], "2024-02");
    assert_eq!(view["to"]["period"], "2024-06");
    assert_eq!(view["same_rules"], true);
    let o = &view["overview"];
    let overview: Vec<i64> = [
        "from_customers",
        "to_customers",
        "from_active",
        "to_active",
        "new_customers",
        "lost_customers",
        "reactivated_customers",
        "removed_customers",
        "better",
        "same",
        "watch",
    ]
    .iter()
    .map(|k| o[k].as_i64().unwrap_or_else(|| panic!("{k}: {o}")))
    .collect();
    // 10 → 19 customers, 10 → 17 active, 9 new, 2 lost, 0, 0, better 1, same 1, watch 8
    assert_eq!(overview, [10, 19, 10, 17, 9, 2, 0, 0, 1, 1, 8]);

    let per_segment: Vec<(String, i64, i64, i64)> = view["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["segment"].as_str().unwrap().to_string(),
                s["from_customers"].as_i64().unwrap(),
                s["to_customers"].as_i64().unwrap(),
                s["delta"].as_i64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, i64, i64, i64)> = SEGMENTS
        .iter()
        .map(|(s, a, b)| (s.to_string(), *a, *b, b - a))
        .collect();
    assert_eq!(
        per_segment, expected,
        "every declared segment, in rank order"
    );

    let matrix: Vec<(String, String, i64)> = view["matrix"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["from_segment"].as_str().unwrap().to_string(),
                c["to_segment"].as_str().unwrap().to_string(),
                c["customers"].as_i64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, String, i64)> = MATRIX
        .iter()
        .map(|(a, b, n)| (a.to_string(), b.to_string(), *n))
        .collect();
    assert_eq!(matrix, expected);
    // share of the row: about_to_sleep had 2 customers in 2024-02
    let cell = view["matrix"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["from_segment"] == "about_to_sleep" && c["to_segment"] == "champions")
        .unwrap();
    assert_eq!(cell["share_of_from"].as_f64(), Some(0.5));

    let customers: BTreeMap<String, (String, Option<String>)> = view["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["customer_id"].as_str().unwrap().to_string(),
                (
                    c["movement"].as_str().unwrap().to_string(),
                    c["evolution"].as_str().map(str::to_string),
                ),
            )
        })
        .collect();
    assert_eq!(customers.len(), 19);
    let movement = |id: &str| customers[id].0.as_str();
    for id in [
        "c01", "c03", "c05", "c06", "c07", "c13", "c16", "c18", "c19",
    ] {
        assert_eq!(customers[id], ("new".to_string(), None), "{id}");
    }
    assert_eq!(movement("c11"), "churned");
    assert_eq!(movement("c12"), "churned");
    assert_eq!(
        customers["c04"],
        ("up".to_string(), Some("better".to_string()))
    );
    assert_eq!(
        customers["c10"],
        ("same".to_string(), Some("same".to_string()))
    );
    for id in ["c02", "c08", "c09", "c14", "c17", "c20"] {
        assert_eq!(
            customers[id],
            ("down".to_string(), Some("watch".to_string())),
            "{id}"
        );
    }

    // Text: the overview with lost and new, the counts and the matrix.
    let text = compare(dir.path(), &job, &config, "2024-02", "2024-06", &[]);
    assert!(text.contains("new customers   9"), "{text}");
    assert!(text.contains("lost customers  2"), "{text}");
    assert!(text.contains("better 1 · same 1 · watch 8"), "{text}");
    assert!(text.contains("Transition matrix"), "{text}");

    // CSV of one row per customer, written to a file.
    let out = dir.path().join("evolution.csv");
    let stdout = compare(
        dir.path(),
        &job,
        &config,
        "2024-02",
        "2024-06",
        &[
            "--format",
            "csv",
            "--table",
            "customers",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(stdout.contains("evolution.csv"), "{stdout}");
    let csv = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 1 + 19, "{csv}");
    assert!(
        lines[0].starts_with("customer_id,from_period,to_period,from_segment,to_segment"),
        "{csv}"
    );
    let c11 = lines.iter().find(|l| l.starts_with("c11,")).unwrap();
    assert!(
        c11.starts_with("c11,2024-02,2024-06,hibernating,lost,10,11,churned,watch,1,0,70.00,0.00"),
        "{c11}"
    );
    let c03 = lines.iter().find(|l| l.starts_with("c03,")).unwrap();
    assert!(
        c03.starts_with("c03,2024-02,2024-06,,new_customers,,4,new,,"),
        "{c03}"
    );
    // CSV default: the counts per segment.
    let csv = compare(
        dir.path(),
        &job,
        &config,
        "2024-02",
        "2024-06",
        &["--format", "csv"],
    );
    assert!(
        csv.starts_with("segment,segment_rank,from_customers,to_customers,delta"),
        "{csv}"
    );
    assert!(csv.contains("\nhibernating,10,3,6,3,"), "{csv}");

    // Errors: a period that is not published, periods in the wrong order, an unknown table.
    let base = |from: &'static str, to: &'static str| {
        vec![
            "compare".to_string(),
            "--job".into(),
            job.to_str().unwrap().into(),
            "--config".into(),
            config.to_str().unwrap().into(),
            "--from".into(),
            from.into(),
            "--to".into(),
            to.into(),
        ]
    };
    let code = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = segments(dir.path(), &args);
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (status, stderr) = code(base("2024-03", "2024-06"));
    assert_eq!(status, Some(2), "{stderr}");
    assert!(stderr.contains("2024-03 is not published"), "{stderr}");
    assert_eq!(code(base("2024-06", "2024-02")).0, Some(2));
    let mut unknown = base("2024-02", "2024-06");
    unknown.extend(["--table".to_string(), "everything".to_string()]);
    assert_eq!(code(unknown).0, Some(2));
}

#[test]
fn compare_on_generated_data_matches_independent_counts() {
    let dir = tempfile::tempdir().unwrap();
    let config = generated(dir.path(), 1500, 20, "2023-01", 31);
    let job = job("rfm_7_segments");
    let (from, to) = ("2023-12", "2024-07");
    run(dir.path(), &job, &config, from);
    run(dir.path(), &job, &config, to);
    let view = compare_json(dir.path(), &job, &config, from, to);

    // Independent: the reference's customers of both periods, the 7-segment
    // grid by hand (tests/it/jobs.rs), and the definitions of docs/design.md §3a.
    let data = read_generated(&dir.path().join("data/transactions"));
    let a = data.customers(from);
    let b = data.customers(to);
    let new = b.keys().filter(|id| !a.contains_key(*id)).count() as i64;
    let removed = a.keys().filter(|id| !b.contains_key(*id)).count() as i64;
    let lost = a
        .iter()
        .filter(|(id, c)| c.frequency > 0 && b.get(*id).is_some_and(|d| d.frequency == 0))
        .count() as i64;
    let reactivated = a
        .iter()
        .filter(|(id, c)| c.frequency == 0 && b.get(*id).is_some_and(|d| d.frequency > 0))
        .count() as i64;
    let rank = |segment: &str| {
        [
            "champions",
            "loyal",
            "new_customers",
            "need_attention",
            "cant_lose",
            "at_risk",
            "hibernating",
            "lost",
        ]
        .iter()
        .position(|s| *s == segment)
        .unwrap()
    };
    let (mut better, mut same, mut watch) = (0i64, 0i64, 0i64);
    for (id, x) in &a {
        let Some(y) = b.get(id) else { continue };
        let (rx, ry) = (rank(rfm7(x)), rank(rfm7(y)));
        match (x.frequency > 0, y.frequency > 0) {
            (true, false) => watch += 1,
            (false, true) => better += 1,
            _ if ry < rx => better += 1,
            _ if ry == rx => same += 1,
            _ => watch += 1,
        }
    }
    let o = &view["overview"];
    let got: Vec<i64> = [
        "from_customers",
        "to_customers",
        "new_customers",
        "lost_customers",
        "reactivated_customers",
        "removed_customers",
        "better",
        "same",
        "watch",
    ]
    .iter()
    .map(|k| o[k].as_i64().unwrap())
    .collect();
    let want = vec![
        a.len() as i64,
        b.len() as i64,
        new,
        lost,
        reactivated,
        removed,
        better,
        same,
        watch,
    ];
    eprintln!("compare {from} → {to}: {want:?}");
    assert_eq!(
        got, want,
        "from, to, new, lost, reactivated, removed, better, same, watch"
    );
    assert!(
        new > 0 && lost > 0,
        "the generated data has new and lost customers"
    );

    let mut counts: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for c in a.values() {
        counts.entry(rfm7(c)).or_default().0 += 1;
    }
    for c in b.values() {
        counts.entry(rfm7(c)).or_default().1 += 1;
    }
    for row in view["segments"].as_array().unwrap() {
        let segment = row["segment"].as_str().unwrap();
        let want = counts.get(segment).copied().unwrap_or_default();
        assert_eq!(
            (
                row["from_customers"].as_i64().unwrap(),
                row["to_customers"].as_i64().unwrap()
            ),
            want,
            "{segment}"
        );
    }
}

// Ad hoc mode on the hand fixture, rfm_monthly classified on the fly over
// two half-years (each range is the window: "active" = bought in the range).
//   Range 2023-07-01..2023-12-31: customers = a purchase before 2024-01-01:
//   c02, c04, c09, c10, c11, c12, c17, c20 (8); bought in the range: c02
//   (09-01), c04 (08-01), c09 (08..12), c10 (07-15), c17 (07-01), c20 (10-10)
//   = 6; c11 (2023-05) and c12 (2023-06) did not → lost there (2).
//   Range 2024-01-01..2024-06-30: the 19 customers of 2024-06; bought in the
//   range: c01, c02, c03, c04, c05, c06, c07, c08, c13 (120 − 20 = 100 on
//   03-01), c14, c16, c18, c19 = 13; lost: c09, c10, c11, c12, c17, c20 (6).
//   new = 19 − 8 = 11 (c01, c03, c05, c06, c07, c08, c13, c14, c16, c18, c19);
//   lost customers (bought in the first, not in the second): c09, c10, c17,
//   c20 = 4; reactivated: c11 and c12 did not buy in 2024 → 0; removed 0;
//   evolution of the 8 in both: watch ≥ 4 (the lost ones), c11 and c12 same.
#[test]
fn compare_ad_hoc_ranges_of_the_hand_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("transactions");
    write_fixture(&data);
    let warehouse = dir.path().join("warehouse");
    let config = write_config(dir.path(), &data, &warehouse);
    let job = default_job();
    let out = dir.path().join("halves.json");
    let mut args = vec![
        "compare",
        "--job",
        job.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--range",
        "2023-07-01..2023-12-31",
        "--against",
        "2024-01..2024-06",
        "--format",
        "json",
        "--out",
        out.to_str().unwrap(),
    ];
    segments_ok(dir.path(), &args);
    assert!(
        !warehouse.exists(),
        "the ad hoc mode writes nothing to the warehouse"
    );
    let view: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(view["from"]["range"]["start"], "2023-07-01");
    assert_eq!(view["to"]["range"]["end"], "2024-06-30", "whole months");
    let o = &view["overview"];
    let overview: Vec<i64> = [
        "from_customers",
        "to_customers",
        "from_active",
        "to_active",
        "new_customers",
        "lost_customers",
        "reactivated_customers",
        "removed_customers",
    ]
    .iter()
    .map(|k| o[k].as_i64().unwrap())
    .collect();
    assert_eq!(overview, [8, 19, 6, 13, 11, 4, 0, 0]);
    assert_eq!(
        o["better"].as_i64().unwrap() + o["same"].as_i64().unwrap() + o["watch"].as_i64().unwrap(),
        8
    );
    assert!(o["watch"].as_i64().unwrap() >= 4);
    let lost = view["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["segment"] == "lost")
        .unwrap();
    assert_eq!(
        (
            lost["from_customers"].as_i64(),
            lost["to_customers"].as_i64()
        ),
        (Some(2), Some(6))
    );
    let customers = view["customers"].as_array().unwrap();
    let churned: Vec<&str> = customers
        .iter()
        .filter(|c| c["movement"] == "churned")
        .map(|c| c["customer_id"].as_str().unwrap())
        .collect();
    assert_eq!(churned, ["c09", "c10", "c17", "c20"]);

    // The ranges must move forward; a malformed range is exit 2.
    args[7] = "2024-01..2024-06";
    args[9] = "2023-07..2023-12";
    let output = segments(dir.path(), &args);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    args[7] = "2023-07-01..2023-13-01";
    let output = segments(dir.path(), &args);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}

//! Rules linting in `segments validate`: a shadowed rule is reported with the
//! file and line of both rules, a rule that can never match and score
//! combinations no rule takes are errors (exit 2), and segments left empty by
//! the last published period are warnings (exit 0).

use std::path::Path;

use crate::common::{default_job, job_with, run_job, segments, write_config};
use crate::fixture::write_fixture;

/// The 1-based line of the first line containing `needle`, found in the test
/// by plain text search.
fn line_of(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not in {}", path.display()))
        + 1
}

fn validate(dir: &Path, job: &Path, config: &Path) -> (Option<i32>, String, String) {
    let output = segments(
        dir,
        &[
            "validate",
            "--job",
            job.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ],
    );
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn empty_config(dir: &Path) -> std::path::PathBuf {
    let data = dir.join("transactions");
    std::fs::create_dir_all(&data).unwrap();
    write_config(dir, &data, &dir.join("warehouse"))
}

#[test]
fn shadowed_rule_is_reported_with_both_lines() {
    let dir = tempfile::tempdir().unwrap();
    let config = empty_config(dir.path());
    // A `vip` segment after new_customers whose only combination (r5 f5) is
    // already champions' (r5 f ≥ 4).
    let job = job_with(dir.path(), |text| {
        text.replace(
            "    - name: promising\n",
            "    - name: vip\n      rule: r_score = 5 AND f_score = 5\n    - name: promising\n",
        )
    });
    let (code, _, stderr) = validate(dir.path(), &job, &config);
    assert_eq!(code, Some(2), "{stderr}");
    let shown = job.display();
    let vip = line_of(&job, "rule: r_score = 5 AND f_score = 5");
    let champions = line_of(&job, "rule: r_score = 5 AND f_score >= 4");
    assert!(
        stderr.contains(&format!(
            "{shown}:{vip}: `classification.segments[4].rule`: segment `vip` can never match: it is shadowed by the earlier `champions` ({shown}:{champions})"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("(r5 f5)"), "{stderr}");
    // Only that problem: the rest of the job is fine.
    assert!(!stderr.contains("problems:"), "{stderr}");
}

#[test]
fn never_matching_rule_and_uncovered_scores_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = empty_config(dir.path());
    let job = job_with(dir.path(), |text| {
        text.replace(
            "rule: r_score = 3 AND f_score = 3",
            "rule: r_score = 3 AND f_score = 6",
        )
    });
    let (code, _, stderr) = validate(dir.path(), &job, &config);
    assert_eq!(code, Some(2), "{stderr}");
    let line = line_of(&job, "rule: r_score = 3 AND f_score = 6");
    assert!(
        stderr.contains(&format!(
            "{}:{line}: `classification.segments[5].rule`: segment `need_attention` can never match: no combination of scores 1–5 satisfies",
            job.display()
        )),
        "{stderr}"
    );
    // Nobody else takes r3 f3 now.
    assert!(
        stderr.contains("no rule matches the scores r3 f3:"),
        "{stderr}"
    );

    // With a fallback, uncovered combinations are fine; the dead rule is not.
    let job = job_with(dir.path(), |text| {
        text.replace(
            "rule: r_score = 3 AND f_score = 3",
            "rule: r_score = 3 AND f_score = 6",
        )
        .replace(
            "  from: rfm_scores\n",
            "  from: rfm_scores\n  fallback: hibernating\n",
        )
    });
    let (code, _, stderr) = validate(dir.path(), &job, &config);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!stderr.contains("no rule matches"), "{stderr}");

    // The shipped jobs lint clean.
    for name in [
        "rfm_monthly",
        "rfm_7_segments",
        "lifecycle_groups",
        "value_tiers",
    ] {
        let job = crate::common::repo().join(format!("jobs/{name}.yaml"));
        let (code, stdout, stderr) = validate(dir.path(), &job, &config);
        assert_eq!(code, Some(0), "{name}: {stderr}");
        assert!(stdout.contains(": ok"), "{name}: {stdout}");
        assert!(!stderr.contains("warning"), "{name}: {stderr}");
    }
}

#[test]
fn segments_left_empty_by_the_last_published_period_are_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("transactions");
    write_fixture(&data);
    let config = write_config(dir.path(), &data, &dir.path().join("warehouse"));
    run_job(dir.path(), &default_job(), &config, "2024-05");
    run_job(dir.path(), &default_job(), &config, "2024-06");
    let (code, stdout, stderr) = validate(dir.path(), &default_job(), &config);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains(": ok"), "{stdout}");
    // The fixture's 2024-06 summary (fixture.rs): potential_loyalists,
    // need_attention and at_risk have no customer.
    let job = default_job();
    let warned: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warned.len(), 3, "{stderr}");
    for (segment, rule) in [
        (
            "potential_loyalists",
            "rule: r_score >= 4 AND f_score BETWEEN 2 AND 3",
        ),
        ("need_attention", "rule: r_score = 3 AND f_score = 3"),
        ("at_risk", "rule: r_score <= 2 AND f_score BETWEEN 3 AND 4"),
    ] {
        let line = line_of(&job, rule);
        assert!(
            stderr.contains(&format!(
                "warning: {}:{line}: segment `{segment}` had no customer in the last published period 2024-06 (published with these rules)",
                job.display()
            )),
            "{segment}: {stderr}"
        );
    }
}

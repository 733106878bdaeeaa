//! `segments why` on the hand-checked fixture (`fixture.rs`): the printed
//! explanation is compared whole with an inline snapshot written by hand from
//! the fixture's rows and its hand-worked scores and bands.

use crate::common::{default_job, run_job, segments, segments_ok, write_config};
use crate::fixture::write_fixture;

fn published_fixture() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("transactions");
    write_fixture(&data);
    let config = write_config(dir.path(), &data, &dir.path().join("warehouse"));
    run_job(dir.path(), &default_job(), &config, "2024-05");
    run_job(dir.path(), &default_job(), &config, "2024-06");
    (dir, config)
}

fn why(dir: &std::path::Path, config: &std::path::Path, customer: &str) -> String {
    segments_ok(
        dir,
        &[
            "why",
            "--job",
            default_job().to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--period",
            "2024-06",
            "--customer-id",
            customer,
        ],
    )
}

// c13, worked out by hand from the fixture's lines (see fixture.rs):
// - o13a: 120 on 2024-03-01 and a -20 refund line on 2024-06-10 of the same
//   order, so one order dated 2024-03-01 of 100 (2 lines); o13r: a -30
//   refund-only order on 2024-06-12, not a purchase.
// - recency 2024-03-01 → 2024-06-30 = 30 + 30 + 31 + 30 = 121 days;
//   frequency 1 (o13a); monetary 100 - 30 = 70.00.
// - scores and bands of THRESHOLDS_2024_06: R 121 → 2 (band 121–172, 3
//   customers), F 1 → 1 (1–1, 11), M 70 → 3 (45–70, 3); rfm_code 213.
// - rules of jobs/rfm_monthly.yaml in order: only hibernating (r ≤ 2,
//   f ≤ 2) holds; each earlier rule fails on the parts shown.
// - 2024-05: c13 was r3 f1 about_to_sleep (rank 7) → hibernating (rank
//   10): down, watch.
#[test]
fn why_explains_a_hand_checked_customer() {
    let (dir, config) = published_fixture();
    let output = why(dir.path(), &config, "c13");
    insta::assert_snapshot!(output, @r"
    c13 in rfm_monthly 2024-06: hibernating (rank 10)

    Orders known by 2024-06-30 (window 2023-07-01 – 2024-06-30):
      date        order  amount  lines  note
      ----------  -----  ------  -----  ---------------------------
      2024-03-01  o13a   100.00      2
      2024-06-12  o13r   -30.00      1  not a purchase (amount ≤ 0)

    Metrics (as of 2024-06-30):
      metric        value  meaning
      ------------  -----  ----------------------------------------
      recency_days    121  days since the last purchase, 2024-03-01
      frequency         1  purchases in the window
      monetary      70.00  net amount of the orders in the window

    Scores (bands from score_thresholds of 2024-06):
      score  value             band
      -----  ----------------  ----------------------------
      R = 2  recency_days 121  121 to 172 (3 customers)
      F = 1  frequency 1       1 to 1 (11 customers)
      M = 3  monetary 70.00    45.00 to 70.00 (3 customers)

    Rules (segment_definitions of 2024-06; first match wins):
      rank  segment              result   condition
      ----  -------------------  -------  --------------------------------------
      1     champions            fails    r_score = 5  (r_score = 2)
                                          f_score >= 4  (f_score = 1)
      2     loyal                fails    r_score BETWEEN 3 AND 4  (r_score = 2)
                                          f_score >= 4  (f_score = 1)
      3     potential_loyalists  fails    r_score >= 4  (r_score = 2)
                                          f_score BETWEEN 2 AND 3  (f_score = 1)
      4     new_customers        fails    r_score = 5  (r_score = 2)
      5     promising            fails    r_score = 4  (r_score = 2)
      6     need_attention       fails    r_score = 3  (r_score = 2)
                                          f_score = 3  (f_score = 1)
      7     about_to_sleep       fails    r_score = 3  (r_score = 2)
      8     cant_lose            fails    f_score = 5  (f_score = 1)
      9     at_risk              fails    f_score BETWEEN 3 AND 4  (f_score = 1)
      10    hibernating          matches  r_score <= 2 AND f_score <= 2

    Previous period 2024-05: about_to_sleep → hibernating (movement down, evolution watch)
    ");

    // A lost customer has no scores: every score rule is unknown (null),
    // only `frequency = 0` holds.
    let lost = why(dir.path(), &config, "c11");
    assert!(
        lost.starts_with("c11 in rfm_monthly 2024-06: lost (rank 11)\n"),
        "{lost}"
    );
    assert!(lost.contains("R = null  recency_days 426"), "{lost}");
    assert!(lost.contains("before the window"), "{lost}");
    assert!(
        lost.contains("11    lost                 matches  frequency = 0"),
        "{lost}"
    );
    assert!(
        lost.contains("Previous period 2024-05: lost → lost (movement same, evolution same)"),
        "{lost}"
    );

    // An unknown customer or an unpublished period is a bad argument.
    let unknown = segments(
        dir.path(),
        &[
            "why",
            "--job",
            default_job().to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--period",
            "2024-06",
            "--customer-id",
            "nobody",
        ],
    );
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&unknown.stderr)
            .contains("customer 'nobody' is not in the snapshot")
    );
    let unpublished = segments(
        dir.path(),
        &[
            "why",
            "--job",
            default_job().to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--period",
            "2024-04",
            "--customer-id",
            "c13",
        ],
    );
    assert_eq!(unpublished.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unpublished.stderr).contains("2024-04 is not published"));
}

//! Labels and descriptions per locale: a job's `label`/`description` is one
//! text or one per locale; `segment_definitions` publishes every locale.

use datafusion::arrow::array::{AsArray, RecordBatch};

use super::common::{job_with, read_parquet, run_job, segments, table_file};
use super::jobs::generated;

/// `segment → (label, label_en, label_fr, description_fr)` of a published
/// `segment_definitions` file.
fn definitions(batches: &[RecordBatch]) -> Vec<(String, [String; 4])> {
    let mut rows = Vec::new();
    for batch in batches {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_string::<i32>()
                .clone()
        };
        let (segment, label, en, fr, description_fr) = (
            column("segment"),
            column("label"),
            column("label_en"),
            column("label_fr"),
            column("description_fr"),
        );
        for row in 0..batch.num_rows() {
            rows.push((
                segment.value(row).to_string(),
                [
                    label.value(row).to_string(),
                    en.value(row).to_string(),
                    fr.value(row).to_string(),
                    description_fr.value(row).to_string(),
                ],
            ));
        }
    }
    rows
}

#[test]
fn labels_per_locale_are_published_in_segment_definitions() {
    let dir = tempfile::tempdir().unwrap();
    let config = generated(dir.path(), 120, 3, "2025-01", 3);
    // champions: one plain text; loyal: French only; the others as shipped
    // ({en, fr}); lost: a description per locale.
    let job = job_with(dir.path(), |text| {
        text.replace(
            "label: {en: Champions, fr: Champions}",
            "label: Best customers",
        )
        .replace(
            "label: {en: Loyal, fr: Fidèles}",
            "label:\n        fr: Fidèles",
        )
        .replace(
            "description: No purchase in the window.",
            "description: {en: No purchase in the window., fr: Aucun achat sur la fenêtre.}",
        )
    });
    run_job(dir.path(), &job, &config, "2025-03");
    let rows = definitions(&read_parquet(&table_file(
        &dir.path().join("warehouse"),
        "rfm_monthly",
        "segment_definitions",
        "2025-03",
    )));
    let get = |segment: &str| rows.iter().find(|(s, _)| s == segment).unwrap().1.clone();
    assert_eq!(
        get("champions")[..3],
        ["Best customers", "Best customers", "Best customers"]
    );
    assert_eq!(get("loyal")[..3], ["Fidèles", "Fidèles", "Fidèles"]);
    assert_eq!(get("at_risk")[..3], ["At risk", "At risk", "À risque"]);
    assert_eq!(get("lost")[3], "Aucun achat sur la fenêtre.");
    assert_eq!(get("hibernating")[3], "Few purchases, long ago.");
}

#[test]
fn labels_in_an_unknown_locale_are_refused_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let job = job_with(dir.path(), |text| {
        text.replace(
            "label: {en: Loyal, fr: Fidèles}",
            "label: {en: Loyal, de: Treue}",
        )
    });
    let output = segments(dir.path(), &["validate", "--job", job.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = std::fs::read_to_string(&job)
        .unwrap()
        .lines()
        .position(|l| l.contains("de: Treue"))
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!("job.yaml:{line}"))
            && stderr.contains("unknown locale 'de'")
            && stderr.contains("en, fr"),
        "{stderr}"
    );
}

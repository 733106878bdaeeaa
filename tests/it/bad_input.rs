//! The bad-input corpus (issue 4, docs/design.md §7): one case per class of dirty
//! export. Each gives its documented outcome — a rejects row with its reason
//! while the good rows of the same file are used, or a clear error with exit
//! code 2 or 3 naming the file or column — and never a panic or a partial
//! publish.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, BooleanArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::parquet::arrow::ArrowWriter;

use crate::common::{default_job, published_files, read_parquet, segments, table_file};

const HEADER: &str = "customer_id;order_id;ordered_at;amount\n";

/// Good lines: two customers in June 2024 and one in May.
const GOOD: &str = "c1;o1;2024-06-03 10:00:00;10.00\nc2;o2;2024-06-04 11:00:00;20.00\nc1;o3;2024-05-20 09:00:00;5.00\n";

struct Case {
    dir: tempfile::TempDir,
    config: PathBuf,
    warehouse: PathBuf,
}

/// A CSV input in `data/` with `files` (name, bytes) and extra csv options.
fn csv_case(files: &[(&str, Vec<u8>)], csv_options: &str) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for (name, bytes) in files {
        std::fs::write(data.join(name), bytes).unwrap();
    }
    let warehouse = dir.path().join("warehouse");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "warehouse: {}\ninputs:\n  transactions:\n    url: {}/\n    format: csv\n    csv:\n      delimiter: \";\"\n{csv_options}quality:\n  max_reject_ratio: 1.0\n  max_active_customers_change: 100\n  max_revenue_change: 100\n",
            warehouse.display(),
            data.display()
        ),
    )
    .unwrap();
    Case {
        dir,
        config,
        warehouse,
    }
}

fn run(case: &Case, extra: &[&str]) -> (i32, String, String) {
    let job = default_job();
    let mut args = vec![
        "run",
        "--job",
        job.to_str().unwrap(),
        "--config",
        case.config.to_str().unwrap(),
        "--period",
        "2024-06",
    ];
    args.extend(extra);
    let output = segments(case.dir.path(), &args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        output.status.code().unwrap(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr,
    )
}

/// (reason, row JSON, last segment of the source file) of the published rejects.
fn rejects(case: &Case) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for batch in read_parquet(&table_file(
        &case.warehouse,
        "rfm_monthly",
        "rejects",
        "2024-06",
    )) {
        for row in 0..batch.num_rows() {
            let text = |i: usize| batch.column(i).as_string::<i32>().value(row).to_string();
            let file = text(0);
            let name = file.rsplit('/').next().unwrap().to_string();
            out.push((text(2), text(1), name));
        }
    }
    out.sort();
    out
}

fn manifest(case: &Case) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(
            case.warehouse
                .join("rfm_monthly/_runs/period=2024-06/_manifest.json"),
        )
        .unwrap(),
    )
    .unwrap()
}

/// Customers of the published snapshot.
fn customers(warehouse: &Path) -> Vec<String> {
    read_parquet(&table_file(
        warehouse,
        "rfm_monthly",
        "snapshots",
        "2024-06",
    ))
    .iter()
    .flat_map(|b| {
        b.column(0)
            .as_string::<i32>()
            .iter()
            .map(|v| v.unwrap().to_string())
            .collect::<Vec<_>>()
    })
    .collect()
}

#[test]
fn bad_rows_are_rejected_with_their_reason_and_good_rows_are_used() {
    let body = format!(
        "{HEADER}{GOOD}\
         ;t1;2024-06-05 12:00:00;99.00\n\
         c3;;2024-06-05 12:00:00;7.00\n\
         c4;o4;05/06/2024 12:00;7.00\n\
         c5;o5;2024-06-06 12:00:00;douze\n\
         c6;o6;2024-06-07 12:00:00;12,50\n\
         c7;o7;2099-01-01 00:00:00;7.00\n\
         c2;o2;2024-06-04 11:00:00;20.00\n\
         c8;o8;;7.00\n"
    );
    let case = csv_case(&[("june.csv", body.into_bytes())], "");
    let (code, stdout, stderr) = run(&case, &[]);
    assert_eq!(code, 0, "{stderr}");
    let found = rejects(&case);
    let reasons: Vec<&str> = found.iter().map(|r| r.0.as_str()).collect();
    // c3: no order id; c4: not ISO and no date_format; c5, c6: amount text
    // ("12,50" needs decimal: ","); c7: after the run's clock; the second
    // c2/o2 line: an exact duplicate; c8: no timestamp (undatable).
    assert_eq!(
        reasons,
        [
            "duplicate_line",
            "future_timestamp",
            "missing_order_id",
            "missing_timestamp",
            "unparseable_amount",
            "unparseable_amount",
            "unparseable_timestamp"
        ],
        "{found:?}"
    );
    // Each reject names its file; a duplicate (a line may repeat across
    // files) names the input folder.
    for (reason, _, file) in &found {
        let expected = if reason == "duplicate_line" {
            ""
        } else {
            "june.csv"
        };
        assert_eq!(file, expected, "{found:?}");
    }
    let c6 = found.iter().find(|r| r.1.contains("c6")).unwrap();
    assert!(
        c6.1.contains("\"amount\":\"12,50\"") && c6.1.contains("\"order_id\":\"o6\""),
        "the row as JSON: {}",
        c6.1
    );
    // The anonymous line (no customer) is not a reject; c1 and c2 are used.
    assert_eq!(customers(&case.warehouse), ["c1", "c2"]);
    let manifest = manifest(&case);
    assert_eq!(manifest["rows"]["read"], 11);
    assert_eq!(manifest["rows"]["anonymous"], 1);
    assert_eq!(manifest["rows"]["rejected"], 7);
    assert_eq!(manifest["rows"]["used"], 3);
    assert_eq!(manifest["rejected_by_reason"]["unparseable_amount"], 2);
    assert!(
        stdout.contains("rejected 7"),
        "the summary reports rejects: {stdout}"
    );
}

#[test]
fn french_exports_parse_when_configured() {
    // `12,50` with decimal ",", dd/mm/yyyy dates, Latin-1 text.
    let mut latin1 = b"customer_id;order_id;ordered_at;amount\n".to_vec();
    latin1.extend(b"Zo\xe9;o1;03/06/2024 10:00;12,50\n");
    latin1.extend(b"c2;o2;04/06/2024 11:00;7,05\n");
    let case = csv_case(
        &[("export.csv", latin1)],
        "      decimal: \",\"\n      date_format: \"%d/%m/%Y %H:%M\"\n      encoding: latin-1\n",
    );
    let (code, _, stderr) = run(&case, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(rejects(&case).is_empty(), "{:?}", rejects(&case));
    assert_eq!(customers(&case.warehouse), ["Zoé", "c2"]);
    let snapshot = read_parquet(&table_file(
        &case.warehouse,
        "rfm_monthly",
        "snapshots",
        "2024-06",
    ));
    let monetary = snapshot[0]
        .column(snapshot[0].schema().index_of("monetary").unwrap())
        .as_primitive::<datafusion::arrow::datatypes::Decimal128Type>()
        .value(0);
    assert_eq!(monetary, 1250, "12,50 read as 12.50");
}

#[test]
fn the_reject_ratio_gate_stops_the_run_unless_allowed() {
    let body = format!("{HEADER}{GOOD}c5;o5;2024-06-06 12:00:00;douze\n");
    let case = csv_case(&[("june.csv", body.into_bytes())], "");
    // 1 of 4 rows rejected (25%) against a 10% limit.
    let text = std::fs::read_to_string(&case.config)
        .unwrap()
        .replace("max_reject_ratio: 1.0", "max_reject_ratio: 0.1");
    std::fs::write(&case.config, text).unwrap();
    let (code, _, stderr) = run(&case, &[]);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("gate `reject_ratio` failed") && stderr.contains("unparseable_amount: 1"),
        "{stderr}"
    );
    assert!(
        published_files(&case.warehouse).is_empty(),
        "a failed gate publishes nothing"
    );
    let (code, _, stderr) = run(&case, &["--allow-gate", "reject_ratio"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(manifest(&case)["allowed_gates"][0], "reject_ratio");
}

/// Inputs that cannot be read at all: exit 3, the file or column named,
/// nothing published.
fn fails_clearly(case: &Case, needles: &[&str]) {
    let (code, _, stderr) = run(case, &[]);
    assert_eq!(code, 3, "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    }
    assert!(
        published_files(&case.warehouse).is_empty(),
        "nothing is published"
    );
}

#[test]
fn unreadable_inputs_fail_with_exit_code_3() {
    // A required column missing.
    fails_clearly(
        &csv_case(
            &[(
                "a.csv",
                b"customer_id;order_id;amount\nc1;o1;1.00\n".to_vec(),
            )],
            "",
        ),
        &["ordered_at", "missing"],
    );
    // A wrong delimiter: the header is one column, named with its semicolons.
    let comma = csv_case(&[("a.csv", format!("{HEADER}{GOOD}").into_bytes())], "");
    let text = std::fs::read_to_string(&comma.config)
        .unwrap()
        .replace("delimiter: \";\"", "delimiter: \",\"");
    std::fs::write(&comma.config, text).unwrap();
    fails_clearly(
        &comma,
        &["customer_id;order_id;ordered_at;amount", "missing"],
    );
    // An empty file (header only) and no other data: nothing dated in the period.
    fails_clearly(
        &csv_case(&[("a.csv", HEADER.as_bytes().to_vec())], ""),
        &["no usable transaction is dated in 2024-06"],
    );
}

fn parquet_case(write: impl Fn(&Path)) -> Case {
    let case = csv_case(&[], "");
    write(&case.dir.path().join("data"));
    let text = std::fs::read_to_string(&case.config).unwrap().replace(
        "format: csv\n    csv:\n      delimiter: \";\"\n",
        "format: parquet\n",
    );
    std::fs::write(&case.config, text).unwrap();
    case
}

#[test]
fn broken_parquet_and_schema_drift_fail_with_exit_code_3() {
    // Truncated Parquet: the file is named.
    let truncated = parquet_case(|data| {
        std::fs::write(data.join("broken.parquet"), b"PAR1\x00\x00garbage").unwrap()
    });
    fails_clearly(&truncated, &["transactions"]);
    // Zero-byte Parquet file.
    let empty = parquet_case(|data| std::fs::write(data.join("empty.parquet"), b"").unwrap());
    fails_clearly(&empty, &["transactions"]);
    // Schema drift: amount became a boolean.
    let drift = parquet_case(|data| {
        let schema = Arc::new(Schema::new(vec![
            Field::new("customer_id", DataType::Utf8, true),
            Field::new("order_id", DataType::Utf8, true),
            Field::new("ordered_at", DataType::Utf8, true),
            Field::new("amount", DataType::Boolean, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["c1"])),
                Arc::new(StringArray::from(vec!["o1"])),
                Arc::new(StringArray::from(vec!["2024-06-01 10:00:00"])),
                Arc::new(BooleanArray::from(vec![true])),
            ],
        )
        .unwrap();
        let mut writer = ArrowWriter::try_new(
            std::fs::File::create(data.join("drift.parquet")).unwrap(),
            schema,
            None,
        )
        .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    });
    fails_clearly(&drift, &["`amount`", "Boolean", "Decimal128(18, 2)"]);
}

#[test]
fn ndjson_with_a_broken_line_fails_naming_the_input() {
    let case = csv_case(&[], "");
    std::fs::write(
        case.dir.path().join("data/lines.json"),
        "{\"customer_id\":\"c1\",\"order_id\":\"o1\",\"ordered_at\":\"2024-06-03 10:00:00\",\"amount\":\"10.00\"}\n{\"customer_id\":\"c2\",\"order_id\n",
    )
    .unwrap();
    let text = std::fs::read_to_string(&case.config).unwrap().replace(
        "format: csv\n    csv:\n      delimiter: \";\"\n",
        "format: ndjson\n",
    );
    std::fs::write(&case.config, text).unwrap();
    fails_clearly(&case, &["transactions"]);
}

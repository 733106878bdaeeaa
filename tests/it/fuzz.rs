//! Fuzzed inputs (issue 24), as bounded property tests that run in CI
//! (`cargo fuzz` needs a nightly toolchain the CI does not have): period,
//! size and duration parsing; the export sniffer of `segments init` on
//! arbitrary bytes; CSV exports read with every option (delimiters, decimal
//! comma, encodings, quoting, blank and truncated lines); and step SQL that
//! the sandbox must refuse. Each property states what must hold, not only
//! "no panic". The YAML loaders have theirs in `yaml_props.rs`.

use std::path::Path;

use proptest::prelude::*;

use crate::common::{default_job, segments};

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any text: an error or a period that prints back as the text.
    #[test]
    fn periods_parse_strictly(text in "\\PC{0,12}|[0-9]{4}-[0-9]{2}") {
        if let Ok(period) = text.parse::<segments::model::period::Period>() {
            prop_assert_eq!(period.to_string(), text);
        }
    }

    /// Sizes and durations: never a panic; a number with a unit gives that
    /// many units.
    #[test]
    fn sizes_and_durations_parse_or_refuse(text in "\\PC{0,10}", n in 0u64..100_000) {
        let _ = segments::model::units::parse_bytes(&text);
        let _ = segments::storage::settings::parse_duration(&text);
        prop_assert_eq!(segments::model::units::parse_bytes(&format!("{n}MiB")), Some(n as usize * 1024 * 1024));
        prop_assert_eq!(
            segments::storage::settings::parse_duration(&format!("{n}ms")),
            Some(std::time::Duration::from_millis(n))
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// The sniffer of `segments init` on arbitrary bytes: a sample or a
    /// clear error, and a CSV sample's columns all as long as each other.
    #[test]
    fn the_export_sniffer_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048), extension in "(csv|ndjson|parquet|txt)") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("export.{extension}"));
        std::fs::write(&path, &bytes).unwrap();
        match segments::init::sniff(&path) {
            Ok(sample) if sample.format == "csv" => {
                let lengths: std::collections::BTreeSet<usize> =
                    sample.columns.iter().map(|(_, values)| values.len()).collect();
                prop_assert!(lengths.len() <= 1, "ragged columns {lengths:?}");
            }
            Ok(_) => {}
            Err(error) => prop_assert!(error.to_string().contains("export."), "{error}"),
        }
    }
}

/// One generated CSV export and the options that read it.
#[derive(Debug, Clone)]
struct Export {
    delimiter: char,
    decimal_comma: bool,
    latin1: bool,
    quote_all: bool,
    lines: Vec<(Option<u8>, u16, u8, i32, bool)>,
    blank_lines: bool,
    truncated: bool,
}

fn export_strategy() -> impl Strategy<Value = Export> {
    (
        prop_oneof![Just(';'), Just(','), Just('|'), Just('\t')],
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        // (customer or anonymous, order, day of June, amount in cents, garbage amount)
        proptest::collection::vec(
            (
                proptest::option::weighted(0.9, 0u8..20),
                0u16..500,
                1u8..31,
                -5_000i32..50_000,
                proptest::bool::weighted(0.05),
            ),
            1..40,
        ),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(delimiter, decimal_comma, latin1, quote_all, lines, blank_lines, truncated)| Export {
                // A decimal comma needs another delimiter.
                decimal_comma: decimal_comma && delimiter != ',',
                delimiter,
                latin1,
                quote_all,
                lines,
                blank_lines,
                truncated,
            },
        )
}

impl Export {
    fn bytes(&self) -> Vec<u8> {
        let d = self.delimiter;
        let quote = |text: String| {
            if self.quote_all {
                format!("\"{text}\"")
            } else {
                text
            }
        };
        let mut text = format!("customer_id{d}order_id{d}ordered_at{d}amount{d}label\n");
        for (index, (customer, order, day, cents, garbage)) in self.lines.iter().enumerate() {
            let customer = customer.map(|c| format!("c{c}")).unwrap_or_default();
            let mut amount = format!("{}.{:02}", cents / 100, (cents % 100).abs());
            if *cents < 0 && cents / 100 == 0 {
                amount.insert(0, '-');
            }
            if self.decimal_comma {
                amount = amount.replace('.', ",");
            }
            if *garbage {
                amount = "douze".into();
            }
            text.push_str(&format!(
                "{}{d}{}{d}{}{d}{}{d}{}\n",
                quote(customer),
                quote(format!("o{order}")),
                quote(format!("2024-06-{day:02} 10:00:00")),
                quote(amount),
                quote("Zoé".into())
            ));
            if self.blank_lines && index % 7 == 3 {
                text.push('\n');
            }
        }
        if self.truncated {
            text.push_str(&format!("c1{d}o9"));
        }
        if self.latin1 {
            text.chars().map(|c| c as u32 as u8).collect()
        } else {
            text.into_bytes()
        }
    }

    fn csv_options(&self) -> String {
        let delimiter = if self.delimiter == '\t' {
            "\\t".to_string()
        } else {
            self.delimiter.to_string()
        };
        format!(
            "    csv:\n      delimiter: \"{delimiter}\"\n{}{}",
            if self.decimal_comma {
                "      decimal: \",\"\n"
            } else {
                ""
            },
            if self.latin1 {
                "      encoding: latin-1\n"
            } else {
                ""
            }
        )
    }
}

fn run_export(dir: &Path, export: &Export) -> (Option<i32>, String) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("export.csv"), export.bytes()).unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "warehouse: {}\ninputs:\n  transactions:\n    url: {}/\n    format: csv\n{}quality:\n  max_reject_ratio: 1.0\n  max_active_customers_change: 100\n  max_revenue_change: 100\n",
            dir.join("warehouse").display(),
            data.display(),
            export.csv_options()
        ),
    )
    .unwrap();
    let out = segments(
        dir,
        &[
            "run",
            "--job",
            default_job().to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--period",
            "2024-06",
            "--allow-gate",
            "no_data",
        ],
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any export of this shape is read: the run publishes (never a panic,
    /// never a refused input); every line read is used, anonymous or
    /// rejected; the garbage amounts are rejects, and a last line cut short
    /// (found by this test: it used to fail the whole input with exit 3) is
    /// a `missing_timestamp` reject.
    #[test]
    fn csv_exports_with_every_option_are_read(export in export_strategy()) {
        let dir = tempfile::tempdir().unwrap();
        let (code, stderr) = run_export(dir.path(), &export);
        prop_assert!(!stderr.contains("panicked"), "{stderr}");
        prop_assert_eq!(code, Some(0), "{}", stderr);
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("warehouse/rfm_monthly/_runs/period=2024-06/_manifest.json")).unwrap(),
        )
        .unwrap();
        let rows = &manifest["rows"];
        let (read, used, anonymous, rejected) = (
            rows["read"].as_u64().unwrap(),
            rows["used"].as_u64().unwrap(),
            rows["anonymous"].as_u64().unwrap(),
            rows["rejected"].as_u64().unwrap(),
        );
        prop_assert_eq!(read, used + anonymous + rejected, "{}", manifest);
        let garbage = export.lines.iter().filter(|l| l.4).count() as u64;
        let unparseable = manifest["rejected_by_reason"]["unparseable_amount"].as_u64().unwrap_or(0);
        prop_assert!(unparseable >= garbage.min(read), "{} garbage amounts, {} rejects: {}", garbage, unparseable, manifest);
        if export.truncated {
            prop_assert!(
                manifest["rejected_by_reason"]["missing_timestamp"].as_u64().unwrap_or(0) >= 1,
                "the cut line is a reject: {}", manifest
            );
        }
    }
}

/// Statements a step may not run, in several spellings.
fn forbidden_statement() -> impl Strategy<Value = String> {
    let statement = prop_oneof![
        Just("CREATE TABLE x AS SELECT 1".to_string()),
        Just("DROP TABLE transactions".to_string()),
        Just("INSERT INTO transactions VALUES (1)".to_string()),
        Just("COPY (SELECT 1) TO '/tmp/x.csv'".to_string()),
        Just("SET datafusion.execution.batch_size = 1".to_string()),
        Just("CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'".to_string()),
        Just("SELECT 1; DROP TABLE transactions".to_string()),
        Just("CREATE VIEW v AS SELECT 1".to_string()),
    ];
    (statement, any::<bool>(), any::<bool>()).prop_map(|(statement, lower, comment)| {
        let statement = if lower {
            statement.to_lowercase()
        } else {
            statement
        };
        if comment {
            format!("/* step */ {statement} -- done")
        } else {
            statement
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The sandbox: a step that is not one query is refused by `validate`
    /// (exit 2) naming the step, whatever its spelling.
    #[test]
    fn the_sql_sandbox_refuses_what_is_not_a_query(statement in forbidden_statement()) {
        let dir = tempfile::tempdir().unwrap();
        let job = crate::common::job_with(dir.path(), |text| {
            text.replace("file: orders.sql", &format!("sql: {}", serde_json::to_string(&statement).unwrap()))
        });
        let config = crate::common::write_config(dir.path(), &dir.path().join("data"), &dir.path().join("warehouse"));
        let out = segments(dir.path(), &["validate", "--job", job.to_str().unwrap(), "--config", config.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        prop_assert_eq!(out.status.code(), Some(2), "{}: {}", statement, stderr);
        prop_assert!(stderr.contains("orders"), "{stderr}");
    }
}

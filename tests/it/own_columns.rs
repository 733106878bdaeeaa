//! A retailer's own columns: any mapped column beyond the canonical ones
//! reaches the steps, typed as declared (`{from, type, format}`) or as in
//! the source, with the reject rules of canonical columns. Expectations are
//! worked out by hand from the lines below.

use std::path::{Path, PathBuf};

use datafusion::arrow::array::AsArray;

use crate::common::{read_parquet, segments, table_file};

/// A French export: `;`, decimal comma, Latin-1, dd/mm/yyyy, and columns
/// the canonical model does not have: payment method, margin, delivery date
/// and loyalty card.
fn french_export() -> Vec<u8> {
    let mut bytes =
        b"client;commande;date;montant;mode_paiement;marge;livraison;fidelite\n".to_vec();
    for line in [
        // c1: one cash order (Latin-1 "espèces"), delivered 12/06.
        &b"c1;o1;03/06/2024 10:00;12,50;CB;2,50;05/06/2024;oui\n"[..],
        b"c1;o2;10/06/2024 11:00;20,00;esp\xe8ces;4,00;12/06/2024;oui\n",
        // c2: the same line twice (an exact duplicate, counted once).
        b"c2;o3;04/06/2024 09:00;7,05;CB;0,50;;non\n",
        b"c2;o3;04/06/2024 09:00;7,05;CB;0,50;;non\n",
        // c3: a margin that is not a number, a date that does not exist.
        b"c3;o4;05/06/2024 09:00;30,00;CB;abc;06/06/2024;non\n",
        b"c3;o5;06/06/2024 09:00;5,00;CB;1,00;31/13/2024;non\n",
        // c4: a card holder with 5,00 of margin.
        b"c4;o6;07/06/2024 15:30;40,00;CB;5,00;08/06/2024;oui\n",
        // c5: two lines equal but for the payment method: not duplicates.
        b"c5;o7;08/06/2024 12:00;10,00;CB;1,00;09/06/2024;non\n",
        b"c5;o7;08/06/2024 12:00;10,00;CHQ;1,00;09/06/2024;non\n",
    ] {
        bytes.extend_from_slice(line);
    }
    bytes
}

const COLUMNS: &str = r#"    columns:
      customer_id: client
      order_id: commande
      ordered_at: date
      amount: montant
      payment_method: mode_paiement
      margin: {from: marge, type: decimal}
      delivered_on: {from: livraison, type: date, format: "%d/%m/%Y"}
      loyalty_member: {from: "fidelite = 'oui'", type: boolean}
"#;

/// Rules over the extra columns only, first match wins.
const JOB: &str = r#"
name: margins
version: 1
inputs: [transactions]
steps:
  - name: customer_margins
    sql: |
      SELECT customer_id,
             CAST(0 AS INT) AS recency_days,
             CAST(COUNT(DISTINCT order_id) AS BIGINT) AS frequency,
             CAST(SUM(amount) AS DECIMAL(18, 2)) AS monetary,
             MIN(ordered_date) AS first_purchase_date,
             MAX(ordered_date) AS last_purchase_date,
             SUM(margin) AS margin_total,
             COUNT(*) FILTER (WHERE payment_method = 'espèces') AS cash_lines,
             BOOL_OR(loyalty_member) AS member,
             MAX(delivered_on) AS last_delivery
      FROM transactions
      WHERE customer_id IS NOT NULL AND ordered_date < $period_end
      GROUP BY customer_id
classification:
  segments:
    - name: cash_buyers
      rule: cash_lines >= 1 AND last_delivery = DATE '2024-06-12'
    - name: two_lines
      rule: margin_total = 2.00
    - name: doubled
      rule: margin_total = 1.00
    - name: profitable_members
      rule: member AND margin_total >= 5
    - name: others
      rule: "TRUE"
outputs: [snapshots, rejects]
"#;

struct Case {
    dir: tempfile::TempDir,
    job: PathBuf,
    config: PathBuf,
    warehouse: PathBuf,
}

fn case(columns: &str) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("export.csv"), french_export()).unwrap();
    let warehouse = dir.path().join("warehouse");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "warehouse: {}\ntimezone: Europe/Paris\ninputs:\n  transactions:\n    url: {}/\n    format: csv\n    csv:\n      delimiter: \";\"\n      decimal: \",\"\n      date_format: \"%d/%m/%Y %H:%M\"\n      encoding: latin-1\n{columns}quality:\n  max_reject_ratio: 1.0\n",
            warehouse.display(),
            data.display()
        ),
    )
    .unwrap();
    let job = dir.path().join("margins.yaml");
    std::fs::write(&job, JOB).unwrap();
    Case {
        dir,
        job,
        config,
        warehouse,
    }
}

fn run(case: &Case, command: &str) -> (i32, String, String) {
    let mut args = vec![
        command,
        "--job",
        case.job.to_str().unwrap(),
        "--config",
        case.config.to_str().unwrap(),
    ];
    if command == "run" {
        args.extend(["--period", "2024-06"]);
    }
    let out = segments(case.dir.path(), &args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Two text columns of a published table of `job` for 2024-06, sorted.
fn text_column(
    warehouse: &Path,
    job: &str,
    table: &str,
    columns: [&str; 2],
) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    for batch in read_parquet(&table_file(warehouse, job, table, "2024-06")) {
        let a = batch.column_by_name(columns[0]).unwrap().as_string::<i32>();
        let b = batch.column_by_name(columns[1]).unwrap().as_string::<i32>();
        for row in 0..batch.num_rows() {
            rows.push((a.value(row).to_string(), b.value(row).to_string()));
        }
    }
    rows.sort();
    rows
}

#[test]
fn extra_columns_reach_the_steps_typed_and_checked() {
    let case = case(COLUMNS);
    let (code, _, stderr) = run(&case, "validate");
    assert_eq!(code, 0, "validate plans rules over extra columns: {stderr}");
    let (code, _, stderr) = run(&case, "run");
    assert_eq!(code, 0, "{stderr}");

    // By hand: c1 has a cash line (Latin-1 decoded) and a delivery on
    // 12/06 (dd/mm/yyyy); c5's two lines differ by payment method, so both
    // count (margin 2.00); c2's duplicate counts once (0.50, not 1.00);
    // c4 holds a card with 5.00 of margin; c3 has no usable line.
    assert_eq!(
        text_column(
            &case.warehouse,
            "margins",
            "snapshots",
            ["customer_id", "segment"]
        ),
        [
            ("c1".to_string(), "cash_buyers".to_string()),
            ("c2".into(), "others".into()),
            ("c4".into(), "profitable_members".into()),
            ("c5".into(), "two_lines".into()),
        ]
    );

    // A value that does not parse is a reject named after its column.
    let mut reasons: Vec<String> =
        text_column(&case.warehouse, "margins", "rejects", ["reason", "row"])
            .into_iter()
            .map(|(reason, _)| reason)
            .collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "duplicate_line",
            "unparseable_delivered_on",
            "unparseable_margin"
        ]
    );
    let rejects = text_column(&case.warehouse, "margins", "rejects", ["reason", "row"]);
    let margin = rejects
        .iter()
        .find(|(reason, _)| reason == "unparseable_margin")
        .unwrap();
    assert!(margin.1.contains("\"marge\":\"abc\""), "{}", margin.1);
}

/// Found with this test: outside UTC, a text or naive timestamp went
/// through casts that DataFusion unwrapped out of `ordered_at IN (…)`
/// without the zone's shift, so exact duplicate lines were never found in
/// Europe/Paris (each counted twice). Canonical columns only, shipped job.
#[test]
fn duplicate_lines_are_found_outside_utc() {
    let canonical_only = "    columns:\n      customer_id: client\n      order_id: commande\n      ordered_at: date\n      amount: montant\n";
    let mut case = case(canonical_only);
    case.job = crate::common::default_job();
    let (code, _, stderr) = run(&case, "run");
    assert_eq!(code, 0, "{stderr}");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            case.warehouse
                .join("rfm_monthly/_runs/period=2024-06/_manifest.json"),
        )
        .unwrap(),
    )
    .unwrap();
    // c2's line twice, and c5's two lines, equal in every canonical column
    // (the payment method is not mapped): 2 extra copies; c3's lines are
    // usable here (margin and delivery are not read).
    assert_eq!(
        manifest["rejected_by_reason"]["duplicate_line"], 2,
        "{manifest}"
    );
    assert_eq!(manifest["rows"]["read"], 9);
    assert_eq!(manifest["rows"]["used"], 7);
}

#[test]
fn an_untyped_extra_column_keeps_the_source_type() {
    // CSV columns are text unless typed: `margin` untyped is text, so a
    // rule comparing it with a number still plans (DataFusion coerces) but
    // `SUM` refuses text; typed, it sums.
    let untyped = COLUMNS.replace("margin: {from: marge, type: decimal}", "margin: marge");
    let case = case(&untyped);
    let (code, _, stderr) = run(&case, "run");
    assert_ne!(code, 0, "SUM over text margin should not plan: {stderr}");
    assert!(
        stderr.contains("customer_margins"),
        "names the step: {stderr}"
    );
}

#[test]
fn bad_extra_column_mappings_are_refused_with_their_key() {
    for (edit, needles) in [
        (
            COLUMNS.replace("amount: montant", "amount: {from: montant, type: number}"),
            vec![
                "inputs.transactions.columns.amount.type",
                "canonical column",
            ],
        ),
        (
            COLUMNS.replace(
                "payment_method: mode_paiement",
                "PaymentMethod: mode_paiement",
            ),
            vec!["inputs.transactions.columns.PaymentMethod", "lowercase"],
        ),
        (
            COLUMNS.replace(
                "payment_method: mode_paiement",
                "ordered_date: mode_paiement",
            ),
            vec!["inputs.transactions.columns.ordered_date", "derived dates"],
        ),
        (
            COLUMNS.replace(
                "margin: {from: marge, type: decimal}",
                "margin: {from: marge, type: decimal, format: \"%d\"}",
            ),
            vec!["inputs.transactions.columns.margin.format"],
        ),
        (
            COLUMNS.replace("type: decimal}", "type: money}"),
            vec!["money", "config.yaml"],
        ),
    ] {
        let case = case(&edit);
        let (code, _, stderr) = run(&case, "validate");
        assert_eq!(code, 2, "{stderr}");
        for needle in needles {
            assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
        }
    }
    // A mapped source column that is not in the files: exit 3, named.
    let case = case(&COLUMNS.replace("from: marge", "from: marge_brute"));
    let (code, _, stderr) = run(&case, "run");
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("margin") && stderr.contains("marge"),
        "{stderr}"
    );
}

/// The rule hash (which decides what `backfill` recomputes and what
/// `status` flags) covers the mapping of the inputs a job reads: an input
/// mapped for another job leaves it alone; an extra column of a read input
/// changes it.
#[test]
fn the_rule_hash_covers_the_inputs_a_job_reads() {
    use segments::config::{Config, Job};
    let dir = tempfile::tempdir().unwrap();
    let base = "warehouse: ./w\ninputs:\n  transactions:\n    url: ./t/\n    format: parquet\n";
    let hash = |config_text: &str| {
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, config_text).unwrap();
        let config = Config::load(&path).unwrap();
        Job::load(&crate::common::default_job())
            .unwrap()
            .rule_hash(&config)
    };
    let plain = hash(base);
    let with_customers = hash(&format!(
        "{base}  customers:\n    url: ./c/\n    format: parquet\n    columns:\n      region: region\n"
    ));
    assert_eq!(plain, with_customers, "rfm_monthly does not read customers");
    let with_extra = hash(&base.replace(
        "format: parquet\n",
        "format: parquet\n    columns:\n      payment_method: mode\n",
    ));
    assert_ne!(
        plain, with_extra,
        "an extra column of transactions is a rule change"
    );
}

/// A job reading an input of its own (`custom_inputs`): the job declares
/// the columns and types, the config maps them; no Rust involved.
#[test]
fn a_job_reads_an_input_of_its_own() {
    let case = case(COLUMNS);
    let returns = case.dir.path().join("returns");
    std::fs::create_dir_all(&returns).unwrap();
    std::fs::write(
        returns.join("retours.csv"),
        "client;date_retour;montant\nc1;12/06/2024;5,00\nc4;20/06/2024;40,00\nc4;01/07/2024;1,00\n",
    )
    .unwrap();
    let config = std::fs::read_to_string(&case.config).unwrap().replace(
        "quality:",
        &format!(
            "  returns:\n    url: {}/\n    format: csv\n    csv: {{delimiter: \";\", decimal: \",\"}}\n    columns:\n      customer_id: client\n      returned_on: {{from: date_retour, type: date, format: \"%d/%m/%Y\"}}\n      refund: {{from: montant, type: decimal}}\nquality:",
            returns.display()
        ),
    );
    std::fs::write(&case.config, &config).unwrap();
    let job = r#"
name: returners
version: 1
inputs: [transactions, returns]
custom_inputs:
  returns:
    description: Returned goods, from the after-sales system.
    columns: {customer_id: text, returned_on: date, refund: decimal}
steps:
  - name: net
    sql: |
      SELECT t.customer_id,
             CAST(0 AS INT) AS recency_days,
             CAST(COUNT(DISTINCT t.order_id) AS BIGINT) AS frequency,
             CAST(SUM(t.amount) AS DECIMAL(18, 2)) AS monetary,
             MIN(t.ordered_date) AS first_purchase_date,
             MAX(t.ordered_date) AS last_purchase_date,
             COALESCE(MAX(r.refunded), 0) AS refunded
      FROM transactions t
      LEFT JOIN (SELECT customer_id, SUM(refund) AS refunded FROM returns
                 WHERE returned_on < $period_end GROUP BY customer_id) r
        ON r.customer_id = t.customer_id
      WHERE t.customer_id IS NOT NULL AND t.ordered_date < $period_end
      GROUP BY t.customer_id
classification:
  segments:
    - name: heavy_returners
      rule: refunded >= 0.5 * monetary
    - name: returners
      rule: refunded > 0
    - name: keepers
      rule: "TRUE"
outputs: [snapshots]
"#;
    std::fs::write(&case.job, job).unwrap();
    let (code, _, stderr) = run(&case, "validate");
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = run(&case, "run");
    assert_eq!(code, 0, "{stderr}");
    // By hand (June; the return of 01/07 is after the period): c1 bought
    // 32,50 and returned 5,00; c4 bought 40,00 and returned 40,00.
    let segments = text_column(
        &case.warehouse,
        "returners",
        "snapshots",
        ["customer_id", "segment"],
    );
    assert_eq!(
        segments,
        [
            ("c1".to_string(), "returners".to_string()),
            ("c2".into(), "keepers".into()),
            ("c4".into(), "heavy_returners".into()),
            ("c5".into(), "keepers".into()),
        ]
    );

    // The config must map what the job declares, with the same type.
    for (edit, needle) in [
        (
            config.replace("      refund: {from: montant, type: decimal}\n", ""),
            "inputs.returns.columns.refund",
        ),
        (
            config.replace(
                "refund: {from: montant, type: decimal}",
                "refund: {from: montant, type: integer}",
            ),
            "declares `refund` of 'returns' as decimal",
        ),
        (
            config.replace("  returns:\n", "  transactons:\n"),
            "did you mean 'transactions'",
        ),
    ] {
        std::fs::write(&case.config, &edit).unwrap();
        let (code, _, stderr) = run(&case, "validate");
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    }
}

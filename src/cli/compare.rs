//! `segments compare`: the comparative view of two published periods of a
//! job (`--from --to`), or of two ad hoc date ranges classified on the fly
//! (`--range --against`), as text (default), CSV or JSON, on stdout or into
//! `--out FILE` (never into the warehouse). The computation lives in
//! [`crate::analysis::compare`]; this module renders it.

use std::io::Write;
use std::path::Path;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::analysis::compare::{self, Comparison, DateRange, SideKind, TABLES};
use crate::config::{Config, Job};
use crate::engine;
use crate::model::ExitStatus;
use crate::storage::Warehouse;

use super::{CompareArgs, CompareFormat, Failure, failure, parse_period};

pub async fn compare(args: CompareArgs) -> Result<(), Failure> {
    let job = Job::load(&args.job.job).map_err(|e| failure(ExitStatus::Invalid, e))?;
    let config = Config::load(&args.job.config).map_err(|e| failure(ExitStatus::Invalid, e))?;
    let mode = match (&args.from, &args.to, &args.range, &args.against) {
        (Some(from), Some(to), None, None) => Mode::Periods(parse_period(from)?, parse_period(to)?),
        (None, None, Some(range), Some(against)) => {
            let parse = |text: &str| {
                text.parse::<DateRange>()
                    .map_err(|e| failure(ExitStatus::Invalid, anyhow::anyhow!(e)))
            };
            Mode::Ranges(parse(range)?, parse(against)?)
        }
        _ => {
            return Err(failure(
                ExitStatus::Invalid,
                anyhow::anyhow!(
                    "give either --from YYYY-MM --to YYYY-MM (two published periods) or --range A..B --against C..D (two date ranges)"
                ),
            ));
        }
    };
    let comparison = crate::storage::scoped(config.storage.clone(), async {
        let warehouse = Warehouse::open(&config.warehouse).map_err(|e| {
            let error = compare::CompareError::from(e);
            failure(error.exit_status(), error)
        })?;
        let ctx = engine::session(&config).map_err(|e| failure(ExitStatus::Internal, e))?;
        match mode {
            Mode::Periods(from, to) => compare::compare(&ctx, &warehouse, &job, from, to).await,
            Mode::Ranges(first, second) => {
                config
                    .check_inputs_for(&job)
                    .map_err(|e| failure(ExitStatus::Invalid, e))?;
                compare::compare_ranges(&ctx, &config, &job, first, second).await
            }
        }
        .map_err(|e| failure(e.exit_status(), e))
    })
    .await?;

    let table = args.table.as_deref();
    let rendered = match args.format {
        CompareFormat::Text => text(&comparison, table),
        CompareFormat::Csv => csv(comparison
            .table(table.unwrap_or("segments"))
            .expect("checked table name")),
        CompareFormat::Json => json(&comparison, table),
    }
    .map_err(|e| failure(ExitStatus::Internal, e))?;

    match &args.out {
        Some(path) => {
            write_file(path, rendered.as_bytes()).map_err(|e| {
                failure(
                    ExitStatus::Internal,
                    anyhow::anyhow!("cannot write {}: {e}", path.display()),
                )
            })?;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "Wrote the comparison of {} {} → {} to {}",
                comparison.job,
                comparison.from.label(),
                comparison.to.label(),
                path.display()
            );
        }
        None => {
            let mut out = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = out.write_all(rendered.as_bytes());
        }
    }
    Ok(())
}

enum Mode {
    Periods(crate::model::Period, crate::model::Period),
    Ranges(DateRange, DateRange),
}

/// Write through a temporary file in the same folder, then rename: a reader
/// never sees half a file.
pub(super) fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let folder = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "compare".into());
    let staged = folder.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&staged, bytes)?;
    std::fs::rename(&staged, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&staged);
    })
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> &'a dyn Array {
    batch
        .column(batch.schema().index_of(name).expect("known column"))
        .as_ref()
}

fn int(batch: &RecordBatch, name: &str, row: usize) -> i64 {
    let array = column(batch, name);
    match array.data_type() {
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row) as i64,
        _ => array.as_primitive::<Int64Type>().value(row),
    }
}

fn string(batch: &RecordBatch, name: &str, row: usize) -> String {
    let array = column(batch, name).as_string::<i32>();
    if array.is_valid(row) {
        array.value(row).to_string()
    } else {
        String::new()
    }
}

fn signed(n: i64) -> String {
    if n > 0 {
        format!("+{n}")
    } else {
        n.to_string()
    }
}

/// A plain aligned table: the first `text_columns` columns left-aligned, the
/// others (numbers) right-aligned.
fn aligned(headers: &[String], rows: &[Vec<String>], text_columns: usize) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut text = String::from(" ");
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            text.push(' ');
            if i < text_columns {
                text.push_str(cell);
                text.push_str(&" ".repeat(pad));
            } else {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            }
            text.push(' ');
        }
        text.trim_end().to_string() + "\n"
    };
    let mut out = line(headers);
    out.push_str(&line(
        &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>(),
    ));
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

fn overview_text(c: &Comparison) -> String {
    let o = &c.overview;
    let (from, to) = (c.from.label(), c.to.label());
    let ranges = matches!(c.from.kind, SideKind::Range(_));
    // Published periods: active = a purchase in the period's window; ad hoc
    // ranges: the range is the window.
    let (window_of, active_word) = if ranges {
        ("", "bought in the range")
    } else {
        ("'s window", "with a purchase in the period's window")
    };
    let n = |name: &str| int(o, name, 0);
    let both = n("from_customers") - n("removed_customers");
    let mut out = String::new();
    out.push_str(&format!(
        "  customers       {} → {} ({})\n",
        n("from_customers"),
        n("to_customers"),
        signed(n("to_customers") - n("from_customers"))
    ));
    out.push_str(&format!(
        "  active          {} → {} ({})   {active_word}\n",
        n("from_active"),
        n("to_active"),
        signed(n("to_active") - n("from_active"))
    ));
    out.push_str(&format!(
        "  new customers   {:<6} first purchase after the end of {from}\n",
        n("new_customers")
    ));
    out.push_str(&format!(
        "  lost customers  {:<6} bought in {from}{window_of}, not in {to}{window_of}\n",
        n("lost_customers")
    ));
    out.push_str(&format!(
        "  reactivated     {:<6} no purchase in {from}{window_of}, bought in {to}{window_of}\n",
        n("reactivated_customers")
    ));
    out.push_str(&format!(
        "  removed         {:<6} customers in {from}, not in {to} (purchases refunded, id merged or erased)\n",
        n("removed_customers")
    ));
    out.push_str(&format!(
        "  evolution of the {both} customers in both: better {} · same {} · watch {}\n",
        n("better"),
        n("same"),
        n("watch")
    ));
    out
}

fn segments_text(c: &Comparison) -> String {
    let s = &c.segments;
    let share = |name: &str, row: usize| {
        format!(
            "{:.1}%",
            column(s, name).as_primitive::<Float64Type>().value(row) * 100.0
        )
    };
    let headers = [
        "segment".to_string(),
        c.from.label(),
        c.to.label(),
        "delta".to_string(),
        format!("share {}", c.from.label()),
        format!("share {}", c.to.label()),
    ];
    let rows: Vec<Vec<String>> = (0..s.num_rows())
        .map(|row| {
            vec![
                string(s, "segment", row),
                int(s, "from_customers", row).to_string(),
                int(s, "to_customers", row).to_string(),
                signed(int(s, "delta", row)),
                share("from_share", row),
                share("to_share", row),
            ]
        })
        .collect();
    aligned(&headers, &rows, 1)
}

fn matrix_text(c: &Comparison) -> String {
    let m = &c.matrix;
    let headers = [
        format!("from {}", c.from.label()),
        format!("to {}", c.to.label()),
        "customers".to_string(),
        "share of from".to_string(),
    ];
    let rows: Vec<Vec<String>> = (0..m.num_rows())
        .map(|row| {
            vec![
                string(m, "from_segment", row),
                string(m, "to_segment", row),
                int(m, "customers", row).to_string(),
                format!(
                    "{:.1}%",
                    column(m, "share_of_from")
                        .as_primitive::<Float64Type>()
                        .value(row)
                        * 100.0
                ),
            ]
        })
        .collect();
    aligned(&headers, &rows, 2)
}

fn customers_text(c: &Comparison) -> Result<String, anyhow::Error> {
    let b = &c.customers;
    let names = [
        "customer_id",
        "from_segment",
        "to_segment",
        "movement",
        "evolution",
    ];
    let options = FormatOptions::default().with_null("");
    let formatters = names
        .iter()
        .map(|n| ArrayFormatter::try_new(column(b, n), &options))
        .collect::<Result<Vec<_>, _>>()?;
    let headers: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let rows: Vec<Vec<String>> = (0..b.num_rows())
        .map(|row| {
            formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect()
        })
        .collect();
    Ok(aligned(&headers, &rows, 5))
}

fn text(c: &Comparison, table: Option<&str>) -> Result<String, anyhow::Error> {
    let source = match (&c.from.kind, &c.to.kind) {
        (SideKind::Published { run_id: a, .. }, SideKind::Published { run_id: b, .. }) => {
            format!("published snapshots: run {a} and run {b}")
        }
        _ => "classified on the fly with the current rules; nothing written to the warehouse"
            .to_string(),
    };
    let mut out = format!(
        "Comparison of {}: {} → {} ({source})\n",
        c.job,
        c.from.label(),
        c.to.label()
    );
    if !c.same_rules {
        out.push_str(&format!(
            "note: {} and {} were published with different rules (rule hashes differ): a segment name may not mean the same in both\n",
            c.from.label(),
            c.to.label()
        ));
    }
    let sections: Vec<&str> = match table {
        Some(table) => vec![table],
        None => vec!["overview", "segments", "matrix"],
    };
    for section in sections {
        out.push('\n');
        match section {
            "overview" => out.push_str(&overview_text(c)),
            "segments" => {
                out.push_str("Customers per segment:\n");
                out.push_str(&segments_text(c));
            }
            "matrix" => {
                out.push_str(&format!(
                    "Transition matrix ({} → {}, non-empty cells):\n",
                    c.from.label(),
                    c.to.label()
                ));
                out.push_str(&matrix_text(c));
            }
            _ => {
                out.push_str("Customers:\n");
                out.push_str(&customers_text(c)?);
            }
        }
    }
    if table.is_none() {
        out.push_str(
            "\nOne row per customer (movement, evolution): --table customers, or --format csv --table customers, or --format json.\n",
        );
    }
    Ok(out)
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

/// RFC 4180 CSV with a header line; nulls are empty fields.
fn csv(batch: &RecordBatch) -> Result<String, anyhow::Error> {
    let options = FormatOptions::default().with_null("");
    let schema = batch.schema();
    let mut out = schema
        .fields()
        .iter()
        .map(|f| csv_field(f.name()))
        .collect::<Vec<_>>()
        .join(",");
    out.push('\n');
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()?;
    for row in 0..batch.num_rows() {
        let fields: Vec<String> = formatters
            .iter()
            .map(|f| csv_field(&f.value(row).to_string()))
            .collect();
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    Ok(out)
}

/// Rows as JSON objects: integers and shares as numbers, money (Decimal) as
/// strings such as "12.34" so that no cent is lost, nulls as null.
fn json_rows(batch: &RecordBatch) -> Result<Vec<serde_json::Value>, anyhow::Error> {
    let options = FormatOptions::default();
    let schema = batch.schema();
    let mut rows = vec![serde_json::Map::new(); batch.num_rows()];
    for (field, array) in schema.fields().iter().zip(batch.columns()) {
        let formatter = ArrayFormatter::try_new(array.as_ref(), &options)?;
        for (row, object) in rows.iter_mut().enumerate() {
            let value = if array.is_null(row) {
                serde_json::Value::Null
            } else {
                match array.data_type() {
                    DataType::Int32 => array.as_primitive::<Int32Type>().value(row).into(),
                    DataType::Int64 => array.as_primitive::<Int64Type>().value(row).into(),
                    DataType::Float64 => array.as_primitive::<Float64Type>().value(row).into(),
                    _ => formatter.value(row).to_string().into(),
                }
            };
            object.insert(field.name().clone(), value);
        }
    }
    Ok(rows.into_iter().map(serde_json::Value::Object).collect())
}

fn json(c: &Comparison, table: Option<&str>) -> Result<String, anyhow::Error> {
    let side = |s: &compare::Side| match &s.kind {
        SideKind::Published {
            period,
            run_id,
            published_at,
        } => serde_json::json!({
            "period": period.to_string(),
            "run_id": run_id,
            "published_at": published_at,
            "rule_hash": s.rule_hash,
        }),
        SideKind::Range(range) => serde_json::json!({
            "range": {"start": range.start.to_string(), "end": range.end.to_string()},
            "rule_hash": s.rule_hash,
        }),
    };
    let mut document = serde_json::json!({
        "job": c.job,
        "from": side(&c.from),
        "to": side(&c.to),
        "same_rules": c.same_rules,
    });
    for name in TABLES {
        if table.is_some_and(|t| t != name) {
            continue;
        }
        let rows = json_rows(c.table(name).expect("known table"))?;
        document[name] = if name == "overview" {
            rows.into_iter().next().unwrap_or(serde_json::Value::Null)
        } else {
            serde_json::Value::Array(rows)
        };
    }
    Ok(serde_json::to_string_pretty(&document)? + "\n")
}

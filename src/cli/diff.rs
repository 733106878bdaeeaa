//! `segments diff`: the impact of the job's working copy on a published
//! period, as text (default), JSON or Markdown (to paste in a pull request),
//! and the `--fail-if-changed-over PCT` gate for the CI of a rules
//! repository. The computation lives in [`crate::analysis::diff`]; this module renders it.

use std::io::Write;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Int8Type, Int32Type, Int64Type};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Value, json};

use crate::analysis::diff::{self, Diff, RuleChange};
use crate::config::{Config, Job};
use crate::model::ExitStatus;

use super::{DiffArgs, DiffFormat, Failure, failure};

pub async fn diff(args: DiffArgs) -> Result<(), Failure> {
    if let Some(limit) = args.fail_if_changed_over
        && !(0.0..=100.0).contains(&limit)
    {
        return Err(failure(
            ExitStatus::Invalid,
            anyhow::anyhow!(
                "--fail-if-changed-over {limit}: give a percentage of customers between 0 and 100"
            ),
        ));
    }
    let (job, config, period) = match &args.period {
        Some(period) => {
            let (job, config, period) = super::run::load(&args.job, Some(period))?;
            (job, config, Some(period))
        }
        None => {
            let job = Job::load(&args.job.job).map_err(|e| failure(ExitStatus::Invalid, e))?;
            let config =
                Config::load(&args.job.config).map_err(|e| failure(ExitStatus::Invalid, e))?;
            config
                .check_inputs_for(&job)
                .map_err(|e| failure(ExitStatus::Invalid, e))?;
            (job, config, None)
        }
    };
    super::refuse_audiences(&job, "diff")?;
    let result = diff::diff(&job, &config, period, args.sample)
        .await
        .map_err(|e| failure(e.exit_status(), e))?;
    let rendered = match args.format {
        DiffFormat::Text => text(&result),
        DiffFormat::Json => {
            serde_json::to_string_pretty(&json_value(&result)).expect("JSON serialises") + "\n"
        }
        DiffFormat::Markdown => markdown(&result),
    };
    {
        let mut out = std::io::stdout().lock();
        // A closed pipe (`| head`) is not an error worth a panic.
        let _ = out.write_all(rendered.as_bytes());
        let _ = out.flush();
    }
    if let Some(limit) = args.fail_if_changed_over
        && result.changed_percent() > limit
    {
        return Err(failure(
            ExitStatus::InputFailed,
            anyhow::anyhow!(
                "{} of {} customers ({:.2}%) change segment in {}, above --fail-if-changed-over {limit}%\nhint: review the diff above; raise the limit on purpose if the change is intended",
                result.changed,
                result.customers,
                result.changed_percent(),
                result.period
            ),
        ));
    }
    Ok(())
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> &'a dyn Array {
    batch
        .column(batch.schema().index_of(name).expect("known column"))
        .as_ref()
}

fn int(batch: &RecordBatch, name: &str, row: usize) -> Option<i64> {
    let array = column(batch, name);
    if array.is_null(row) {
        return None;
    }
    Some(match array.data_type() {
        DataType::Int8 => array.as_primitive::<Int8Type>().value(row) as i64,
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row) as i64,
        _ => array.as_primitive::<Int64Type>().value(row),
    })
}

fn string(batch: &RecordBatch, name: &str, row: usize) -> String {
    let array = column(batch, name).as_string::<i32>();
    if array.is_valid(row) {
        array.value(row).to_string()
    } else {
        "(none)".to_string()
    }
}

/// Any value as display text (money as `12.34`), empty for null.
fn display(batch: &RecordBatch, name: &str, row: usize) -> String {
    let options = FormatOptions::default().with_null("");
    ArrayFormatter::try_new(column(batch, name), &options)
        .map(|f| f.value(row).to_string())
        .unwrap_or_default()
}

fn signed(n: i64) -> String {
    if n > 0 {
        format!("+{n}")
    } else {
        n.to_string()
    }
}

/// `543`, or `-` for a customer without scores (lost, or absent).
fn scores(batch: &RecordBatch, side: &str, row: usize) -> String {
    let values: Vec<Option<i64>> = ["r", "f", "m"]
        .iter()
        .map(|m| int(batch, &format!("{side}_{m}_score"), row))
        .collect();
    if values.iter().all(Option::is_none) {
        "-".into()
    } else {
        values
            .iter()
            .map(|v| v.map(|v| v.to_string()).unwrap_or_else(|| "·".into()))
            .collect()
    }
}

/// A plain aligned table: the first `text_columns` columns left-aligned, the
/// others (numbers) right-aligned.
pub(crate) fn aligned(headers: &[&str], rows: &[Vec<String>], text_columns: usize) -> String {
    let right: Vec<bool> = (0..headers.len()).map(|i| i >= text_columns).collect();
    aligned_as(headers, rows, &right)
}

/// A plain aligned table; `right[i]` right-aligns column `i` (numbers).
pub(crate) fn aligned_as(headers: &[&str], rows: &[Vec<String>], right: &[bool]) -> String {
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
            if right[i] {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            } else {
                text.push_str(cell);
                text.push_str(&" ".repeat(pad));
            }
            text.push(' ');
        }
        text.trim_end().to_string() + "\n"
    };
    let headers: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let mut out = line(&headers);
    out.push_str(&line(
        &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>(),
    ));
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

fn rank_text(before: i32, after: i32) -> String {
    if before == after {
        format!("rank {after}")
    } else {
        format!("rank {before} → {after}")
    }
}

/// The rule changes as a text diff (`-` published, `+` working copy).
fn rule_lines(d: &Diff) -> Vec<String> {
    let Some(changes) = &d.rule_changes else {
        return vec!["(the period has no published segment_definitions to compare with)".into()];
    };
    let mut lines = Vec::new();
    for change in changes {
        match change {
            RuleChange::Changed {
                segment,
                before_rank,
                after_rank,
                before_rule,
                after_rule,
            } => {
                lines.push(format!(
                    "~ {segment} ({})",
                    rank_text(*before_rank, *after_rank)
                ));
                lines.push(format!("-   {before_rule}"));
                lines.push(format!("+   {after_rule}"));
            }
            RuleChange::Moved {
                segment,
                before_rank,
                after_rank,
                rule,
            } => {
                lines.push(format!(
                    "~ {segment} ({}, same rule)",
                    rank_text(*before_rank, *after_rank)
                ));
                lines.push(format!("    {rule}"));
            }
            RuleChange::Added {
                segment,
                rank,
                rule,
            } => {
                lines.push(format!("+ {segment} (new segment, rank {rank})"));
                lines.push(format!("+   {rule}"));
            }
            RuleChange::Removed {
                segment,
                rank,
                rule,
            } => {
                lines.push(format!("- {segment} (removed, was rank {rank})"));
                lines.push(format!("-   {rule}"));
            }
        }
    }
    if changes.is_empty() {
        lines.push(if d.rules_differ() {
            "(no segment rule changed; the rule hash differs, so the steps' SQL, the window, the scoring, the fallback, the timezone or the column mapping did)".into()
        } else {
            "(none: the working copy has the published rules)".into()
        });
    }
    lines
}

fn threshold_lines(d: &Diff) -> Vec<String> {
    match &d.threshold_changes {
        None => vec!["  (not published by this job)".into()],
        Some(changes) if changes.is_empty() => vec!["  (none)".into()],
        Some(changes) => changes
            .iter()
            .map(|c| format!("  {} {}: {} → {}", c.metric, c.score, c.before, c.after))
            .collect(),
    }
}

fn segment_rows(d: &Diff) -> Vec<Vec<String>> {
    let s = &d.segments;
    (0..s.num_rows())
        .map(|row| {
            vec![
                string(s, "segment", row),
                int(s, "before_customers", row).unwrap_or(0).to_string(),
                int(s, "after_customers", row).unwrap_or(0).to_string(),
                signed(int(s, "delta", row).unwrap_or(0)),
            ]
        })
        .collect()
}

fn sample_rows(d: &Diff) -> Vec<Vec<String>> {
    let s = &d.sample;
    (0..s.num_rows())
        .map(|row| {
            vec![
                string(s, "customer_id", row),
                string(s, "before_segment", row),
                string(s, "after_segment", row),
                display(s, "recency_days", row),
                display(s, "frequency", row),
                display(s, "monetary", row),
                format!("{} → {}", scores(s, "before", row), scores(s, "after", row)),
            ]
        })
        .collect()
}

const SAMPLE_HEADERS: [&str; 7] = [
    "customer",
    "before",
    "after",
    "recency_days",
    "frequency",
    "monetary",
    "RFM",
];

fn headline(d: &Diff) -> String {
    format!(
        "{} of {} customers change segment ({:.2}%)",
        d.changed,
        d.customers,
        d.changed_percent()
    )
}

fn text(d: &Diff) -> String {
    let mut out = format!(
        "Impact of the working copy of {} on {} (published by run {}; nothing written)\n",
        d.job, d.period, d.published_run_id
    );
    out.push_str(&format!(
        "rule hash: published {} → working copy {}\n",
        short(&d.before_rule_hash),
        short(&d.after_rule_hash)
    ));
    out.push_str(&headline(d));
    out.push_str("\n\nRules (- published, + working copy):\n");
    for line in rule_lines(d) {
        out.push_str(&format!("  {line}\n"));
    }
    out.push_str("\nScore bands that changed (min–max (customers)):\n");
    for line in threshold_lines(d) {
        out.push_str(&format!("{line}\n"));
    }
    out.push_str("\nCustomers per segment:\n");
    out.push_str(&aligned(
        &["segment", "before", "after", "delta"],
        &segment_rows(d),
        1,
    ));
    out.push_str("\nBefore × after (non-empty cells; = unchanged):\n");
    let m = &d.matrix;
    let rows: Vec<Vec<String>> = (0..m.num_rows())
        .map(|row| {
            let (before, after) = (
                string(m, "before_segment", row),
                string(m, "after_segment", row),
            );
            let mark = if before == after { "=" } else { "→" };
            vec![
                before,
                mark.to_string(),
                after,
                int(m, "customers", row).unwrap_or(0).to_string(),
            ]
        })
        .collect();
    out.push_str(&aligned(&["before", "", "after", "customers"], &rows, 3));
    out.push_str(&format!(
        "\nSample of changed customers ({} shown, RFM = scores before → after):\n",
        d.sample.num_rows()
    ));
    if d.sample.num_rows() == 0 {
        out.push_str("  (none)\n");
    } else {
        out.push_str(&aligned(&SAMPLE_HEADERS, &sample_rows(d), 3));
    }
    out
}

fn markdown_table(headers: &[&str], rows: &[Vec<String>], text_columns: usize) -> String {
    let mut out = format!("| {} |\n", headers.join(" | "));
    out.push_str(&format!(
        "|{}|\n",
        (0..headers.len())
            .map(|i| if i < text_columns { "---" } else { "---:" })
            .collect::<Vec<_>>()
            .join("|")
    ));
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

fn markdown(d: &Diff) -> String {
    let mut out = format!(
        "### Segment impact: `{}` {}\n\n**{}** (published by run `{}`, rule hash `{}` → `{}`).\n\n",
        d.job,
        d.period,
        headline(d),
        d.published_run_id,
        short(&d.before_rule_hash),
        short(&d.after_rule_hash)
    );
    out.push_str("#### Rules\n\n```diff\n");
    for line in rule_lines(d) {
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str("```\n\n");
    if let Some(changes) = &d.threshold_changes
        && !changes.is_empty()
    {
        out.push_str("#### Score bands that changed\n\n");
        let rows: Vec<Vec<String>> = changes
            .iter()
            .map(|c| {
                vec![
                    c.metric.clone(),
                    c.score.to_string(),
                    c.before.clone(),
                    c.after.clone(),
                ]
            })
            .collect();
        out.push_str(&markdown_table(
            &["metric", "score", "before", "after"],
            &rows,
            4,
        ));
        out.push('\n');
    }
    out.push_str("#### Customers per segment\n\n");
    out.push_str(&markdown_table(
        &["segment", "before", "after", "delta"],
        &segment_rows(d),
        1,
    ));

    // The matrix as a grid over the segments that have customers.
    let m = &d.matrix;
    let mut befores: Vec<(i64, String)> = Vec::new();
    let mut afters: Vec<(i64, String)> = Vec::new();
    for row in 0..m.num_rows() {
        let b = (
            int(m, "before_rank", row).unwrap_or(i64::MAX),
            string(m, "before_segment", row),
        );
        let a = (
            int(m, "after_rank", row).unwrap_or(i64::MAX),
            string(m, "after_segment", row),
        );
        if !befores.contains(&b) {
            befores.push(b);
        }
        if !afters.contains(&a) {
            afters.push(a);
        }
    }
    befores.sort();
    afters.sort();
    let mut headers = vec!["before ↓ / after →".to_string()];
    headers.extend(afters.iter().map(|(_, a)| a.clone()));
    let rows: Vec<Vec<String>> = befores
        .iter()
        .map(|(_, before)| {
            let mut cells = vec![before.clone()];
            for (_, after) in &afters {
                let cell = (0..m.num_rows())
                    .find(|&row| {
                        string(m, "before_segment", row) == *before
                            && string(m, "after_segment", row) == *after
                    })
                    .map(|row| {
                        let n = int(m, "customers", row).unwrap_or(0);
                        if before == after {
                            n.to_string()
                        } else {
                            format!("**{n}**")
                        }
                    })
                    .unwrap_or_default();
                cells.push(cell);
            }
            cells
        })
        .collect();
    out.push_str("\n#### Before × after (changed cells in bold)\n\n");
    let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    out.push_str(&markdown_table(&header_refs, &rows, 1));
    out.push_str(&format!(
        "\n#### Sample of changed customers ({} shown)\n\n",
        d.sample.num_rows()
    ));
    if d.sample.num_rows() == 0 {
        out.push_str("None.\n");
    } else {
        out.push_str(&markdown_table(&SAMPLE_HEADERS, &sample_rows(d), 3));
    }
    out
}

fn rule_change_json(change: &RuleChange) -> Value {
    match change {
        RuleChange::Added {
            segment,
            rank,
            rule,
        } => json!({"segment": segment, "change": "added", "after_rank": rank, "after_rule": rule}),
        RuleChange::Removed {
            segment,
            rank,
            rule,
        } => {
            json!({"segment": segment, "change": "removed", "before_rank": rank, "before_rule": rule})
        }
        RuleChange::Changed {
            segment,
            before_rank,
            after_rank,
            before_rule,
            after_rule,
        } => json!({"segment": segment, "change": "changed", "before_rank": before_rank,
                    "after_rank": after_rank, "before_rule": before_rule, "after_rule": after_rule}),
        RuleChange::Moved {
            segment,
            before_rank,
            after_rank,
            rule,
        } => json!({"segment": segment, "change": "moved", "before_rank": before_rank,
                    "after_rank": after_rank, "before_rule": rule, "after_rule": rule}),
    }
}

fn optional_string(batch: &RecordBatch, name: &str, row: usize) -> Value {
    let array = column(batch, name).as_string::<i32>();
    if array.is_valid(row) {
        Value::from(array.value(row))
    } else {
        Value::Null
    }
}

fn json_value(d: &Diff) -> Value {
    let s = &d.segments;
    let segments: Vec<Value> = (0..s.num_rows())
        .map(|row| {
            json!({
                "segment": string(s, "segment", row),
                "before_rank": int(s, "before_rank", row),
                "after_rank": int(s, "after_rank", row),
                "before": int(s, "before_customers", row),
                "after": int(s, "after_customers", row),
                "delta": int(s, "delta", row),
            })
        })
        .collect();
    let m = &d.matrix;
    let matrix: Vec<Value> = (0..m.num_rows())
        .map(|row| {
            json!({
                "before": string(m, "before_segment", row),
                "after": string(m, "after_segment", row),
                "customers": int(m, "customers", row),
            })
        })
        .collect();
    let p = &d.sample;
    let score = |side: &str, row: usize| {
        json!({
            "r": int(p, &format!("{side}_r_score"), row),
            "f": int(p, &format!("{side}_f_score"), row),
            "m": int(p, &format!("{side}_m_score"), row),
        })
    };
    let sample: Vec<Value> = (0..p.num_rows())
        .map(|row| {
            json!({
                "customer_id": string(p, "customer_id", row),
                "before_segment": optional_string(p, "before_segment", row),
                "after_segment": optional_string(p, "after_segment", row),
                "recency_days": int(p, "recency_days", row),
                "frequency": int(p, "frequency", row),
                "monetary": display(p, "monetary", row),
                "before_scores": score("before", row),
                "after_scores": score("after", row),
            })
        })
        .collect();
    json!({
        "job": d.job,
        "period": d.period.to_string(),
        "published_run_id": d.published_run_id,
        "rule_hash": {"published": d.before_rule_hash, "working_copy": d.after_rule_hash},
        "customers": d.customers,
        "changed": d.changed,
        "changed_percent": d.changed_percent(),
        "rule_changes": d.rule_changes.as_ref().map(|c| c.iter().map(rule_change_json).collect::<Vec<_>>()),
        "threshold_changes": d.threshold_changes.as_ref().map(|c| c.iter().map(|t| json!({
            "metric": t.metric, "score": t.score, "before": t.before, "after": t.after,
        })).collect::<Vec<_>>()),
        "segments": segments,
        "matrix": matrix,
        "sample": sample,
    })
}

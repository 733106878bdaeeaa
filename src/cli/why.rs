//! `segments why`: explain one customer's segment in a published period,
//! as text. The computation lives in [`crate::analysis::why`]; this module renders it.

use std::io::Write;

use crate::analysis::why::{self, Explanation, Outcome};

use super::diff::{aligned, aligned_as};
use super::{Failure, WhyArgs, failure};

pub async fn why(args: WhyArgs) -> Result<(), Failure> {
    let (job, config, period) = super::run::load(&args.job, Some(&args.period))?;
    super::refuse_audiences(&job, "why")?;
    let explanation = why::explain(&job, &config, period, &args.customer_id)
        .await
        .map_err(|e| failure(e.exit_status(), e))?;
    let mut out = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = out.write_all(render(&explanation).as_bytes());
    Ok(())
}

fn cents(amount: i128) -> String {
    let sign = if amount < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", amount.abs() / 100, amount.abs() % 100)
}

/// The explanation as text; stable, so that tests can snapshot it.
pub fn render(e: &Explanation) -> String {
    let mut out = format!(
        "{} in {} {}: {} (rank {})\n",
        e.customer_id, e.job, e.period, e.segment, e.segment_rank
    );

    out.push_str(&format!(
        "\nOrders known by {} (window {} – {}):\n",
        e.as_of_date, e.window_start, e.as_of_date
    ));
    if e.orders.is_empty() {
        out.push_str("  (none found in the transactions; they may have changed since the period was published)\n");
    } else {
        let rows: Vec<Vec<String>> = e
            .orders
            .iter()
            .map(|o| {
                let note = if o.date < e.window_start {
                    "before the window"
                } else if !o.is_purchase() {
                    "not a purchase (amount ≤ 0)"
                } else {
                    ""
                };
                vec![
                    o.date.to_string(),
                    o.order_id.clone(),
                    cents(o.amount_cents),
                    o.lines.to_string(),
                    note.to_string(),
                ]
            })
            .collect();
        out.push_str(&aligned_as(
            &["date", "order", "amount", "lines", "note"],
            &rows,
            &[false, false, true, true, false],
        ));
    }

    out.push_str(&format!("\nMetrics (as of {}):\n", e.as_of_date));
    out.push_str(&aligned_as(
        &["metric", "value", "meaning"],
        &[
            vec![
                "recency_days".into(),
                e.recency_days.clone(),
                format!("days since the last purchase, {}", e.last_purchase_date),
            ],
            vec![
                "frequency".into(),
                e.frequency.clone(),
                "purchases in the window".into(),
            ],
            vec![
                "monetary".into(),
                e.monetary.clone(),
                "net amount of the orders in the window".into(),
            ],
        ],
        &[false, true, false],
    ));

    if !e.bands.is_empty() {
        out.push_str(&format!(
            "\nScores (bands from score_thresholds of {}):\n",
            e.period
        ));
        let rows: Vec<Vec<String>> = e
            .bands
            .iter()
            .map(|b| {
                let letter = b.metric[..1].to_uppercase();
                let score = b
                    .score
                    .map(|s| format!("{letter} = {s}"))
                    .unwrap_or_else(|| format!("{letter} = null"));
                let band = match (&b.band, b.score) {
                    (Some((lo, hi, n)), _) => {
                        let range = match (lo, hi) {
                            (Some(lo), Some(hi)) => format!("{lo} to {hi}"),
                            (Some(lo), None) => format!("{lo} or more"),
                            (None, Some(hi)) => format!("up to {hi}"),
                            (None, None) => "any value".into(),
                        };
                        format!("{range} ({n} customers)")
                    }
                    (None, None) => "no score: no purchase in the window".into(),
                    (None, Some(_)) => "band not published".into(),
                };
                vec![score, format!("{} {}", b.column, b.value), band]
            })
            .collect();
        out.push_str(&aligned(&["score", "value", "band"], &rows, 3));
    }

    out.push_str(&format!(
        "\nRules ({}; first match wins):\n",
        if e.published_rules {
            format!("segment_definitions of {}", e.period)
        } else {
            "the working copy: the period has no segment_definitions".into()
        }
    ));
    let mut rows = Vec::new();
    for tried in &e.rules {
        let (result, details): (&str, Vec<String>) = match &tried.outcome {
            Outcome::Matched => ("matches", vec![tried.rule.clone()]),
            Outcome::Failed(failing) => ("fails", failing.clone()),
            Outcome::Unknown(reason) => ("unknown", vec![reason.clone()]),
        };
        for (i, detail) in details.iter().enumerate() {
            if i == 0 {
                rows.push(vec![
                    tried.rank.to_string(),
                    tried.segment.clone(),
                    result.to_string(),
                    detail.clone(),
                ]);
            } else {
                rows.push(vec![
                    String::new(),
                    String::new(),
                    String::new(),
                    detail.clone(),
                ]);
            }
        }
    }
    out.push_str(&aligned(
        &["rank", "segment", "result", "condition"],
        &rows,
        4,
    ));
    let unknown = e
        .rules
        .iter()
        .any(|r| matches!(r.outcome, Outcome::Unknown(_)));
    match e.rules.last() {
        Some(last) if last.outcome == Outcome::Matched && last.segment == e.segment => {
            if unknown {
                out.push_str(&format!(
                    "  the rules not evaluated did not match: the published segment is {}\n",
                    e.segment
                ));
            }
        }
        Some(last) if last.outcome == Outcome::Matched => out.push_str(&format!(
            "  note: the snapshot says {}, not {}: the published values differ from these rules\n",
            e.segment, last.segment
        )),
        _ => out.push_str(&format!(
            "  no rule matched: {} is the job's fallback segment (or a rule could not be evaluated)\n",
            e.segment
        )),
    }

    match &e.previous {
        Some(p) => out.push_str(&format!(
            "\nPrevious period {}: {} → {} (movement {}{})\n",
            p.period,
            p.segment.as_deref().unwrap_or("(not in the universe)"),
            e.segment,
            p.movement,
            p.evolution
                .as_deref()
                .map(|v| format!(", evolution {v}"))
                .unwrap_or_default()
        )),
        None => out.push_str(&format!(
            "\nPrevious period {}: no migrations published for {}\n",
            e.period.previous(),
            e.period
        )),
    }
    out
}

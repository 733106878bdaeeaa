//! The page: one HTML document with its CSS inline and its charts as inline
//! SVG, laid out for a phone first (one column) and side by side on wide
//! screens. Every chart has a table with the same figures; tables carry
//! `data-table` and `data-key` attributes so tests (and scrapers) can find
//! their rows without depending on the language.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;

use super::locale::{Locale, Text};
use super::svg::{self, escape};
use super::{Matrix, Report, SummaryRow, Threshold};
use crate::model::Manifest;

const CSS: &str = r#"
:root{--ink:#1d1d1f;--muted:#5b5b66;--line:#d9d9e0;--bg:#ffffff;--band:#f5f6f8;--accent:#2b4c8c}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans","DejaVu Sans",sans-serif}
header{background:#1f2f55;color:#fff;padding:20px 16px}
header h1{margin:0 0 4px;font-size:1.45rem;font-weight:650}
header p{margin:0;color:#dfe5f3}
main{max-width:1120px;margin:0 auto;padding:8px 16px 32px}
nav{margin:12px 0 4px;font-size:.9rem;display:flex;flex-wrap:wrap;gap:4px 16px}
nav a{color:var(--accent)}
section{border-top:1px solid var(--line);padding:14px 0 6px}
h2{font-size:1.2rem;margin:6px 0 8px}
h3{font-size:1rem;margin:14px 0 6px;color:#333}
p.note{color:var(--muted);margin:4px 0 10px;font-size:.92rem}
p.na{background:var(--band);border-left:4px solid #999;padding:8px 12px;color:#333}
.pair{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:22px;align-items:start}
.pair.wide{grid-template-columns:minmax(0,.55fr) minmax(0,1.45fr)}
@media (max-width:820px){.pair,.pair.wide{grid-template-columns:minmax(0,1fr)}}
figure.heat{max-width:820px}
figure.sankey{max-width:900px;margin:0 auto}
details{margin:8px 0}summary{cursor:pointer;color:var(--accent);font-weight:600}
tbody th{font-weight:500;white-space:nowrap}
figure{margin:0}
svg.chart{width:100%;height:auto;display:block;font-family:inherit}
svg .big{font-size:20px;font-weight:650}
svg .small{font-size:11px}
svg .label{font-size:13px}
svg .axis{font-size:13px}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch}
table{border-collapse:collapse;width:100%;font-size:.88rem;font-variant-numeric:tabular-nums}
caption{text-align:left;font-weight:600;padding:4px 0;color:#333}
th,td{padding:5px 6px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{background:var(--band);font-weight:600;white-space:nowrap}
td.num,th.num{text-align:right;white-space:nowrap}
td.wrap{white-space:normal}
tr.total td{font-weight:650;border-top:2px solid #999}
td.pos{color:#1a6b2f}td.neg{color:#a12121}
.sw{display:inline-block;width:.85em;height:.85em;border-radius:2px;margin-right:6px;vertical-align:-1px;border:1px solid rgba(0,0,0,.35)}
dl.facts{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:4px 16px;margin:0}
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0;font-variant-numeric:tabular-nums;overflow-wrap:anywhere}
code{font-size:.85em;background:var(--band);padding:1px 4px;border-radius:3px;overflow-wrap:anywhere}
footer{color:var(--muted);font-size:.82rem;padding:16px;text-align:center}
"#;

struct Page<'a> {
    report: &'a Report,
    locale: Locale,
    out: String,
    labels: HashMap<String, String>,
    colours: HashMap<String, &'static str>,
}

/// The whole page.
pub fn page(report: &Report, locale: Locale) -> String {
    let audiences_only = report.summary.is_none() && report.audiences.is_some();
    let mut definitions = report.definitions.clone();
    definitions.sort_by_key(|d| d.rank);
    let mut names: Vec<String> = definitions.iter().map(|d| d.segment.clone()).collect();
    // Segments or audiences found in the data but not in the definitions.
    let found = report
        .summary
        .iter()
        .flatten()
        .map(|r| r.segment.clone())
        .chain(report.audiences.iter().flatten().map(|a| a.0.clone()))
        .chain(
            report
                .history
                .iter()
                .flat_map(|h| h.sizes.iter().map(|s| s.0.clone())),
        );
    for name in found {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let palette = svg::palette(names.len(), !audiences_only);
    let colours: HashMap<String, &'static str> =
        names.iter().cloned().zip(palette.iter().copied()).collect();
    let mut labels: HashMap<String, String> = definitions
        .iter()
        .map(|d| {
            let french = d.label_fr.as_ref().filter(|l| !l.is_empty());
            let label = match (locale, french) {
                (Locale::Fr, Some(french)) => french.clone(),
                _ => d.label.clone(),
            };
            (d.segment.clone(), label)
        })
        .filter(|(_, label)| !label.is_empty())
        .collect();
    labels.insert("(new)".into(), locale.text(Text::New).into());
    labels.insert("(removed)".into(), locale.text(Text::Removed).into());
    let mut page = Page {
        report,
        locale,
        out: String::new(),
        labels,
        colours,
    };
    page.head();
    page.grid();
    if audiences_only {
        page.audiences(&names);
    } else {
        page.sizes();
    }
    page.migrations(&names);
    page.history(&names);
    page.facts();
    let _ = writeln!(
        page.out,
        "</main><footer>{}</footer></body></html>",
        escape(locale.text(Text::Footer))
    );
    page.out
}

fn cls(delta: i128) -> &'static str {
    match delta.signum() {
        1 => "num pos",
        -1 => "num neg",
        _ => "num",
    }
}

impl Page<'_> {
    fn t(&self, key: Text) -> &'static str {
        self.locale.text(key)
    }

    fn label<'b>(&'b self, name: &'b str) -> &'b str {
        self.labels.get(name).map(String::as_str).unwrap_or(name)
    }

    fn colour(&self, name: &str) -> &'static str {
        self.colours.get(name).copied().unwrap_or(svg::OUTSIDE)
    }

    fn swatch(&self, name: &str) -> String {
        format!(
            r#"<span class="sw" style="background:{}" aria-hidden="true"></span>{}"#,
            self.colour(name),
            escape(self.label(name))
        )
    }

    fn head(&mut self) {
        let r = self.report;
        let l = self.locale;
        let title = format!(
            "{} · {} · {}",
            l.text(Text::Title),
            r.job,
            l.period(r.period)
        );
        let compared = match r.compared {
            Some(p) => format!("{} {}", l.text(Text::ComparedWith), l.period(p)),
            None => l.text(Text::NoComparison).to_string(),
        };
        let _ = write!(
            self.out,
            r#"<!DOCTYPE html><html lang="{}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><meta name="color-scheme" content="light"><title>{}</title><style>{CSS}</style></head><body><header><h1>{}</h1><p>{} <strong>{}</strong> · {} <strong>{}</strong> ({}) · {}</p></header><main>"#,
            l.tag(),
            escape(&title),
            escape(l.text(Text::Title)),
            escape(l.text(Text::Job)),
            escape(&r.job),
            escape(l.text(Text::Period)),
            escape(&l.period(r.period)),
            r.period,
            escape(&compared),
        );
        let sizes = if r.summary.is_none() && r.audiences.is_some() {
            Text::AudiencesTitle
        } else {
            Text::SizesTitle
        };
        let _ = write!(
            self.out,
            r##"<nav aria-label="{}"><a href="#grid">{}</a><a href="#sizes">{}</a><a href="#migrations">{}</a><a href="#history">{}</a><a href="#facts">{}</a></nav>"##,
            escape(l.text(Text::Contents)),
            escape(l.text(Text::GridTitle)),
            escape(l.text(sizes)),
            escape(l.text(Text::MatrixTitle)),
            escape(l.text(Text::HistoryTitle)),
            escape(l.text(Text::FactsTitle)),
        );
    }

    fn not_applicable(&mut self, text: &str) {
        let _ = write!(self.out, r#"<p class="na">{}</p>"#, escape(text));
    }

    fn section(&mut self, id: &str, title: Text) {
        let _ = write!(
            self.out,
            r#"<section id="{id}" aria-labelledby="{id}-h"><h2 id="{id}-h">{}</h2>"#,
            escape(self.t(title))
        );
    }

    fn sizes(&mut self) {
        self.section("sizes", Text::SizesTitle);
        let Some(rows) = self.report.summary.clone() else {
            self.not_applicable(self.t(Text::NotPublished));
            self.out.push_str("</section>");
            return;
        };
        let l = self.locale;
        let before: HashMap<&str, &SummaryRow> = self
            .report
            .compared_summary
            .iter()
            .flatten()
            .map(|r| (r.segment.as_str(), r))
            .collect();
        let compared = self.report.compared_summary.is_some();
        let bars: Vec<svg::Bar> = rows
            .iter()
            .map(|r| svg::Bar {
                label: self.label(&r.segment),
                colour: self.colour(&r.segment),
                now: r.customers,
                before: compared.then(|| before.get(r.segment.as_str()).map_or(0, |b| b.customers)),
            })
            .collect();
        let desc = match self.report.compared {
            Some(p) if compared => format!(
                "{}: {} ({}) / {} ({})",
                l.text(Text::Customers),
                l.period(self.report.period),
                l.text(Text::Current),
                l.period(p),
                l.text(Text::Previous)
            ),
            _ => l.text(Text::Customers).to_string(),
        };
        let now_label = l.period(self.report.period);
        let before_label = self
            .report
            .compared
            .filter(|_| compared)
            .map(|p| l.period(p));
        let chart = svg::bars(
            &bars,
            (&now_label, before_label.as_deref()),
            l,
            l.text(Text::SizesTitle),
            &format!("{desc}. {}", l.text(Text::ChartAlt)),
        );
        let dash = "—".to_string();
        let mut table = String::new();
        let _ = write!(
            table,
            r#"<div class="scroll"><table data-table="sizes"><caption>{}</caption><thead><tr><th scope="col">{}</th><th class="num" scope="col">{}</th><th class="num" scope="col">{}</th><th class="num" scope="col">{}</th><th class="num" scope="col">{}</th><th class="num" scope="col">{}</th><th class="num" scope="col">{}</th><th class="num" scope="col">{}</th></tr></thead><tbody>"#,
            escape(&desc),
            escape(l.text(Text::Segment)),
            escape(l.text(Text::Customers)),
            escape(l.text(Text::Delta)),
            escape(l.text(Text::Share)),
            escape(l.text(Text::Revenue)),
            escape(l.text(Text::Delta)),
            escape(l.text(Text::AvgBasket)),
            escape(l.text(Text::Delta)),
        );
        let (mut customers, mut revenue, mut orders) = (0i64, 0i128, 0i64);
        let (mut customers_before, mut revenue_before, mut orders_before) = (0i64, 0i128, 0i64);
        for row in &rows {
            customers += row.customers;
            revenue += row.revenue;
            orders += row.orders;
            let previous = before.get(row.segment.as_str());
            if let Some(p) = previous {
                customers_before += p.customers;
                revenue_before += p.revenue;
                orders_before += p.orders;
            }
            let delta_customers =
                compared.then(|| row.customers - previous.map_or(0, |p| p.customers));
            let delta_revenue = compared.then(|| row.revenue - previous.map_or(0, |p| p.revenue));
            let delta_basket = match (row.avg_basket, previous.and_then(|p| p.avg_basket)) {
                (Some(now), Some(then)) => Some(now - then),
                _ => None,
            };
            let _ = write!(
                table,
                r#"<tr data-key="{}"><th scope="row">{}</th><td class="num">{}</td><td class="{}">{}</td><td class="num">{}</td><td class="num">{}</td><td class="{}">{}</td><td class="num">{}</td><td class="{}">{}</td></tr>"#,
                escape(&row.segment),
                self.swatch(&row.segment),
                l.int(row.customers),
                cls(delta_customers.unwrap_or(0) as i128),
                delta_customers.map_or(dash.clone(), |d| l.signed_int(d)),
                l.percent(row.share),
                l.money(row.revenue),
                cls(delta_revenue.unwrap_or(0)),
                delta_revenue.map_or(dash.clone(), |d| l.signed_money(d)),
                row.avg_basket.map_or(dash.clone(), |b| l.money(b)),
                cls(delta_basket.unwrap_or(0)),
                delta_basket.map_or(dash.clone(), |d| l.signed_money(d)),
            );
        }
        let basket = |revenue: i128, orders: i64| {
            (orders > 0).then(|| {
                // Half away from zero, like the published averages.
                let twice = 2 * revenue / orders as i128;
                (twice + twice.signum()) / 2
            })
        };
        let (basket_now, basket_before) = (
            basket(revenue, orders),
            basket(revenue_before, orders_before),
        );
        let _ = write!(
            table,
            r#"<tr class="total" data-key="(total)"><td>{}</td><td class="num">{}</td><td class="{}">{}</td><td class="num">{}</td><td class="num">{}</td><td class="{}">{}</td><td class="num">{}</td><td class="num">{}</td></tr></tbody></table></div>"#,
            escape(l.text(Text::Total)),
            l.int(customers),
            cls((customers - customers_before) as i128),
            if compared {
                l.signed_int(customers - customers_before)
            } else {
                dash.clone()
            },
            l.percent(if customers > 0 { 1.0 } else { 0.0 }),
            l.money(revenue),
            cls(revenue - revenue_before),
            if compared {
                l.signed_money(revenue - revenue_before)
            } else {
                dash.clone()
            },
            basket_now.map_or(dash.clone(), |b| l.money(b)),
            match (basket_now, basket_before, compared) {
                (Some(a), Some(b), true) => l.signed_money(a - b),
                _ => dash.clone(),
            },
        );
        let _ = write!(
            self.out,
            r#"<div class="pair wide"><figure>{chart}</figure>{table}</div>"#
        );
        if !compared {
            let note = match self.report.compared {
                Some(_) => self.t(Text::NotPublished),
                None => self.t(Text::NoComparison),
            };
            let _ = write!(self.out, r#"<p class="note">Δ: {}</p>"#, escape(note));
        }
        self.out.push_str("</section>");
    }

    fn audiences(&mut self, names: &[String]) {
        self.section("sizes", Text::AudiencesTitle);
        let l = self.locale;
        let _ = write!(
            self.out,
            r#"<p class="note">{}</p>"#,
            escape(l.text(Text::AudiencesIntro))
        );
        let sizes: HashMap<String, i64> = self.report.audiences.iter().flatten().cloned().collect();
        let before: Option<HashMap<String, i64>> = self
            .report
            .compared_audiences
            .as_ref()
            .map(|a| a.iter().cloned().collect());
        let shown: Vec<&String> = names
            .iter()
            .filter(|n| {
                sizes.contains_key(*n)
                    || before.as_ref().is_some_and(|b| b.contains_key(*n))
                    || self.report.definitions.iter().any(|d| &d.segment == *n)
            })
            .collect();
        let bars: Vec<svg::Bar> = shown
            .iter()
            .map(|n| svg::Bar {
                label: self.label(n),
                colour: self.colour(n),
                now: sizes.get(*n).copied().unwrap_or(0),
                before: before.as_ref().map(|b| b.get(*n).copied().unwrap_or(0)),
            })
            .collect();
        let now_label = l.period(self.report.period);
        let before_label = self
            .report
            .compared
            .filter(|_| before.is_some())
            .map(|p| l.period(p));
        let chart = svg::bars(
            &bars,
            (&now_label, before_label.as_deref()),
            l,
            l.text(Text::AudiencesTitle),
            l.text(Text::ChartAlt),
        );
        let mut table = String::new();
        let _ = write!(
            table,
            r#"<div class="scroll"><table data-table="audiences"><thead><tr><th scope="col">{}</th><th class="num" scope="col">{}</th><th class="num" scope="col">{}</th></tr></thead><tbody>"#,
            escape(l.text(Text::Audience)),
            escape(l.text(Text::Customers)),
            escape(l.text(Text::Delta)),
        );
        for name in &shown {
            let now = sizes.get(*name).copied().unwrap_or(0);
            let delta = before
                .as_ref()
                .map(|b| now - b.get(*name).copied().unwrap_or(0));
            let _ = write!(
                table,
                r#"<tr data-key="{}"><th scope="row">{}</th><td class="num">{}</td><td class="{}">{}</td></tr>"#,
                escape(name),
                self.swatch(name),
                l.int(now),
                cls(delta.unwrap_or(0) as i128),
                delta.map_or("—".into(), |d| l.signed_int(d)),
            );
        }
        table.push_str("</tbody></table></div>");
        let _ = write!(
            self.out,
            r#"<div class="pair"><figure>{chart}</figure>{table}</div>"#
        );
        let _ = write!(
            self.out,
            r#"<p class="na">{} — {}</p>"#,
            escape(l.text(Text::SizesTitle)),
            escape(l.text(Text::NotPublished))
        );
        self.out.push_str("</section>");
    }

    fn grid(&mut self) {
        self.section("grid", Text::GridTitle);
        let l = self.locale;
        let cells = match &self.report.grid {
            None => {
                self.not_applicable(l.text(Text::NotPublished));
                self.out.push_str("</section>");
                return;
            }
            Some(cells) if cells.is_empty() => {
                self.not_applicable(l.text(Text::GridNotApplicable));
                self.out.push_str("</section>");
                return;
            }
            Some(cells) => cells.clone(),
        };
        let _ = write!(
            self.out,
            r#"<p class="note">{}</p>"#,
            escape(l.text(Text::GridIntro))
        );
        let mut grid: Vec<svg::GridCell> = Vec::new();
        for r in 1..=5 {
            for f in 1..=5 {
                let mut segments: Vec<(&str, &str, i64)> = cells
                    .iter()
                    .filter(|c| c.r == r && c.f == f)
                    .map(|c| (self.label(&c.segment), self.colour(&c.segment), c.customers))
                    .collect();
                segments.sort_by_key(|s| std::cmp::Reverse(s.2));
                if !segments.is_empty() {
                    grid.push(svg::GridCell { r, f, segments });
                }
            }
        }
        let scored: i64 = cells.iter().map(|c| c.customers).sum();
        let unscored = self.report.snapshot_customers - scored;
        let chart = svg::rf_grid(&grid, l, l.text(Text::GridTitle), l.text(Text::ChartAlt));
        let mut table = String::new();
        let _ = write!(
            table,
            r#"<div class="scroll"><table data-table="rf-grid"><caption>{} ↓ / {} →</caption><thead><tr><th scope="col">R \ F</th>"#,
            escape(l.text(Text::Recency)),
            escape(l.text(Text::Frequency)),
        );
        for f in 1..=5 {
            let _ = write!(table, r#"<th class="num" scope="col">F{f}</th>"#);
        }
        table.push_str("</tr></thead><tbody>");
        for r in (1..=5).rev() {
            let _ = write!(table, r#"<tr data-key="R{r}"><th scope="row">R{r}</th>"#);
            for f in 1..=5 {
                let cell = grid.iter().find(|c| c.r == r && c.f == f);
                let total: i64 = cell.map_or(0, |c| c.segments.iter().map(|s| s.2).sum());
                let names: Vec<&str> = cell
                    .map(|c| c.segments.iter().map(|s| s.0).collect())
                    .unwrap_or_default();
                let _ = write!(
                    table,
                    r#"<td class="num wrap" data-key="R{r}F{f}"><span class="n">{}</span><br><small>{}</small></td>"#,
                    l.int(total),
                    escape(&names.join(", "))
                );
            }
            table.push_str("</tr>");
        }
        table.push_str("</tbody></table></div>");
        let _ = write!(
            self.out,
            r#"<div class="pair"><figure>{chart}</figure>{table}</div>"#
        );
        if unscored > 0 {
            let _ = write!(
                self.out,
                r#"<p class="note">{} {}.</p>"#,
                l.int(unscored),
                escape(l.text(Text::GridUnscored))
            );
        }
        self.out.push_str("</section>");
    }

    fn migrations(&mut self, names: &[String]) {
        self.section("migrations", Text::MatrixTitle);
        let l = self.locale;
        let Some(matrix) = self.report.matrix.clone() else {
            self.not_applicable(l.text(Text::NotPublished));
            self.out.push_str("</section>");
            return;
        };
        let _ = write!(
            self.out,
            r#"<p class="note">{} → {}. {}</p>"#,
            escape(&l.period(matrix.from)),
            escape(&l.period(self.report.period)),
            escape(l.text(Text::MatrixIntro))
        );
        if matrix.cells.iter().all(|c| c.from == "(new)") {
            self.not_applicable(l.text(Text::MatrixFirstPeriod));
        }
        let order = |name: &str, new_first: bool| -> (i32, i64) {
            match name {
                "(new)" => (if new_first { -1 } else { i32::MAX }, 0),
                "(removed)" => (i32::MAX, 0),
                _ => (
                    0,
                    names
                        .iter()
                        .position(|n| n == name)
                        .map_or(i64::MAX, |p| p as i64),
                ),
            }
        };
        let rows: Vec<String> = {
            let set: BTreeSet<(i32, i64, String)> = matrix
                .cells
                .iter()
                .map(|c| {
                    let (a, b) = order(&c.from, true);
                    (a, b, c.from.clone())
                })
                .collect();
            set.into_iter().map(|k| k.2).collect()
        };
        let columns: Vec<String> = {
            let set: BTreeSet<(i32, i64, String)> = matrix
                .cells
                .iter()
                .map(|c| {
                    let (a, b) = order(&c.to, false);
                    (a, b, c.to.clone())
                })
                .collect();
            set.into_iter().map(|k| k.2).collect()
        };
        let cells: HashMap<(String, String), (i64, f64)> = matrix
            .cells
            .iter()
            .map(|c| {
                (
                    (c.from.clone(), c.to.clone()),
                    (c.customers, c.share_of_from),
                )
            })
            .collect();
        self.matrix_heatmap(&rows, &columns, &cells);
        self.matrix_sankey(&matrix, &rows, &columns);
    }

    /// The migration matrix as a heatmap and as a table of the same layout.
    fn matrix_heatmap(
        &mut self,
        rows: &[String],
        columns: &[String],
        cells: &HashMap<(String, String), (i64, f64)>,
    ) {
        let l = self.locale;
        let row_labels: Vec<String> = rows.iter().map(|r| self.label(r).to_string()).collect();
        let column_labels: Vec<String> =
            columns.iter().map(|c| self.label(c).to_string()).collect();
        let labelled: HashMap<(String, String), (i64, f64)> = cells
            .iter()
            .map(|((f, t), v)| ((self.label(f).to_string(), self.label(t).to_string()), *v))
            .collect();
        let heatmap = svg::heatmap(
            &row_labels,
            &column_labels,
            &labelled,
            l,
            l.text(Text::Heatmap),
            l.text(Text::ChartAlt),
        );
        // The matrix as a table, same layout as the heatmap.
        let mut table = String::new();
        let _ = write!(
            table,
            r#"<div class="scroll"><table data-table="matrix"><caption>{} ↓ / {} →</caption><thead><tr><th scope="col">{}</th>"#,
            escape(l.text(Text::From)),
            escape(l.text(Text::To)),
            escape(l.text(Text::From)),
        );
        for c in columns {
            let _ = write!(
                table,
                r#"<th class="num" scope="col">{}</th>"#,
                escape(self.label(c))
            );
        }
        table.push_str("</tr></thead><tbody>");
        for r in rows {
            let _ = write!(
                table,
                r#"<tr data-key="{}"><th scope="row">{}</th>"#,
                escape(r),
                escape(self.label(r))
            );
            for c in columns {
                match cells.get(&(r.clone(), c.clone())) {
                    Some((n, share)) => {
                        let _ = write!(
                            table,
                            r#"<td class="num" data-key="{}">{}<br><small>{}</small></td>"#,
                            escape(c),
                            l.int(*n),
                            l.percent(*share)
                        );
                    }
                    None => {
                        let _ = write!(table, r#"<td class="num" data-key="{}"></td>"#, escape(c));
                    }
                }
            }
            table.push_str("</tr>");
        }
        table.push_str("</tbody></table></div>");
        let _ = write!(
            self.out,
            r#"<h3>{}</h3><figure class="heat">{heatmap}</figure>{table}"#,
            escape(l.text(Text::Heatmap))
        );
    }

    /// The migrations as a Sankey chart and its list of flows; closes the
    /// section.
    fn matrix_sankey(&mut self, matrix: &Matrix, rows: &[String], columns: &[String]) {
        let l = self.locale;
        let left: Vec<svg::Node> = rows
            .iter()
            .map(|r| svg::Node {
                label: self.label(r),
                colour: self.colour(r),
            })
            .collect();
        let right: Vec<svg::Node> = columns
            .iter()
            .map(|c| svg::Node {
                label: self.label(c),
                colour: self.colour(c),
            })
            .collect();
        let links: Vec<(usize, usize, i64)> = matrix
            .cells
            .iter()
            .filter_map(|c| {
                Some((
                    rows.iter().position(|r| *r == c.from)?,
                    columns.iter().position(|t| *t == c.to)?,
                    c.customers,
                ))
            })
            .collect();
        let sankey = svg::sankey(
            &left,
            &right,
            &links,
            l,
            l.text(Text::Sankey),
            l.text(Text::ChartAlt),
        );
        let mut flows = String::new();
        let _ = write!(
            flows,
            r#"<div class="scroll"><table data-table="flows"><thead><tr><th scope="col">{}</th><th scope="col">{}</th><th class="num" scope="col">{}</th><th class="num" scope="col">{}</th></tr></thead><tbody>"#,
            escape(l.text(Text::From)),
            escape(l.text(Text::To)),
            escape(l.text(Text::Customers)),
            escape(l.text(Text::ShareOfFrom)),
        );
        for c in &matrix.cells {
            let _ = write!(
                flows,
                r#"<tr data-key="{}|{}"><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
                escape(&c.from),
                escape(&c.to),
                self.swatch(&c.from),
                self.swatch(&c.to),
                l.int(c.customers),
                l.percent(c.share_of_from)
            );
        }
        flows.push_str("</tbody></table></div>");
        let _ = write!(
            self.out,
            r#"<h3>{}</h3><figure class="sankey">{sankey}</figure><details><summary>{}</summary>{flows}</details></section>"#,
            escape(l.text(Text::Sankey)),
            escape(l.text(Text::FlowsTable))
        );
    }

    fn history(&mut self, names: &[String]) {
        self.section("history", Text::HistoryTitle);
        let l = self.locale;
        let history = &self.report.history;
        if history.len() < 2 {
            let _ = write!(
                self.out,
                r#"<p class="note">{}</p>"#,
                escape(l.text(Text::HistoryOnlyOne))
            );
        }
        let periods: Vec<String> = history.iter().map(|h| l.short_period(h.period)).collect();
        let present: Vec<&String> = names
            .iter()
            .filter(|n| history.iter().any(|h| h.sizes.iter().any(|s| &s.0 == *n)))
            .collect();
        let series: Vec<(String, &str, Vec<i64>)> = present
            .iter()
            .map(|n| {
                (
                    self.label(n).to_string(),
                    self.colour(n),
                    history
                        .iter()
                        .map(|h| h.sizes.iter().find(|s| &s.0 == *n).map_or(0, |s| s.1))
                        .collect(),
                )
            })
            .collect();
        let audiences = self.report.summary.is_none() && self.report.audiences.is_some();
        if !audiences {
            let borrowed: Vec<(&str, &str, Vec<i64>)> = series
                .iter()
                .map(|(a, b, c)| (a.as_str(), *b, c.clone()))
                .collect();
            let chart = svg::history(
                &periods,
                &borrowed,
                l,
                l.text(Text::HistoryTitle),
                l.text(Text::ChartAlt),
            );
            let _ = write!(self.out, "<figure>{chart}</figure>");
        } else {
            // Overlapping audiences do not stack: the table says it all.
            let _ = write!(
                self.out,
                r#"<p class="note">{}</p>"#,
                escape(l.text(Text::AudiencesIntro))
            );
        }
        let mut table = String::new();
        let _ = write!(
            table,
            r#"<div class="scroll"><table data-table="history"><thead><tr><th scope="col">{}</th>"#,
            escape(l.text(if audiences {
                Text::Audience
            } else {
                Text::Segment
            }))
        );
        for h in history {
            let _ = write!(
                table,
                r#"<th class="num" scope="col" data-key="{}">{}</th>"#,
                h.period,
                escape(&l.short_period(h.period))
            );
        }
        table.push_str("</tr></thead><tbody>");
        for (n, (_, _, values)) in present.iter().zip(&series) {
            let _ = write!(
                table,
                r#"<tr data-key="{}"><th scope="row">{}</th>"#,
                escape(n),
                self.swatch(n)
            );
            for v in values {
                let _ = write!(table, r#"<td class="num">{}</td>"#, l.int(*v));
            }
            table.push_str("</tr>");
        }
        table.push_str("</tbody></table></div></section>");
        self.out.push_str(&table);
    }

    fn facts(&mut self) {
        self.section("facts", Text::FactsTitle);
        let r = self.report;
        match &r.manifest {
            None => self.not_applicable(self.locale.text(Text::NoManifest)),
            Some(manifest) => {
                self.run_facts(manifest);
                self.gates_table(manifest);
            }
        }
        if let Some(thresholds) = &r.thresholds {
            self.thresholds_table(thresholds);
        }
        self.rules_table();
    }

    /// The run's manifest as a list of facts.
    fn run_facts(&mut self, m: &Manifest) {
        let l = self.locale;
        let r = self.report;
        let mut dl = String::from(r#"<dl class="facts" data-table="facts">"#);
        let mut fact = |key: &str, label: &str, value: String| {
            let _ = write!(
                dl,
                r#"<dt>{}</dt><dd data-key="{key}">{}</dd>"#,
                escape(label),
                value
            );
        };
        fact(
            "run_id",
            l.text(Text::RunId),
            format!("<code>{}</code>", escape(&m.run_id)),
        );
        fact(
            "published_at",
            l.text(Text::PublishedAt),
            escape(&m.published_at),
        );
        fact(
            "rows_read",
            l.text(Text::RowsRead),
            l.int(m.rows.read as i64),
        );
        fact(
            "rows_used",
            l.text(Text::RowsUsed),
            l.int(m.rows.used as i64),
        );
        fact(
            "rows_anonymous",
            l.text(Text::RowsAnonymous),
            l.int(m.rows.anonymous as i64),
        );
        fact(
            "rows_rejected",
            l.text(Text::RowsRejected),
            l.int(m.rows.rejected as i64),
        );
        for (reason, n) in &m.rejected_by_reason {
            fact(
                &format!("rejected:{reason}"),
                &format!("{} · {reason}", l.text(Text::RejectReason)),
                l.int(*n as i64),
            );
        }
        let revenue = parse_cents(&m.period_revenue)
            .map_or_else(|| escape(&m.period_revenue), |c| l.money(c));
        fact("period_revenue", l.text(Text::PeriodRevenue), revenue);
        fact(
            "identification_rate",
            l.text(Text::IdentificationRate),
            m.identification_rate.map_or("—".into(), |s| l.percent(s)),
        );
        fact(
            "from_side",
            l.text(Text::FromSide),
            format!(
                "{} — {}",
                escape(m.from_side.as_str()),
                escape(&m.from_side_reason)
            ),
        );
        fact(
            "job_version",
            l.text(Text::JobVersion),
            r.job_version.to_string(),
        );
        fact(
            "rule_hash",
            l.text(Text::RuleHash),
            format!("<code>{}</code>", escape(&m.rule_hash)),
        );
        fact(
            "job_hash",
            l.text(Text::JobHash),
            format!("<code>{}</code>", escape(&m.job_hash)),
        );
        let versions: Vec<String> = m
            .versions
            .iter()
            .map(|(k, v)| format!("{} {}", escape(k), escape(v)))
            .collect();
        fact("versions", l.text(Text::Versions), versions.join(", "));
        dl.push_str("</dl>");
        self.out.push_str(&dl);
    }

    /// The quality gates with their limits, and which were allowed.
    fn gates_table(&mut self, m: &Manifest) {
        let l = self.locale;
        let r = self.report;
        let _ = write!(
            self.out,
            r#"<h3>{}</h3><div class="scroll"><table data-table="gates"><thead><tr><th scope="col">{}</th><th class="num" scope="col">{}</th><th scope="col">{}</th></tr></thead><tbody>"#,
            escape(l.text(Text::Gates)),
            escape(l.text(Text::Gate)),
            escape(l.text(Text::Limit)),
            escape(l.text(Text::Status)),
        );
        let q = &r.quality;
        for gate in crate::model::Gate::ALL {
            use crate::model::Gate;
            let limit = match gate {
                Gate::RejectRatio => l.percent(q.max_reject_ratio),
                Gate::ActiveCustomersChange => l.percent(q.max_active_customers_change),
                Gate::RevenueChange => l.percent(q.max_revenue_change),
                Gate::NoData => "—".into(),
            };
            let status = if m.allowed_gates.iter().any(|g| g == gate.name()) {
                l.text(Text::Allowed)
            } else {
                l.text(Text::Passed)
            };
            let _ = write!(
                self.out,
                r#"<tr data-key="{gate}"><td><code>{gate}</code></td><td class="num">{limit}</td><td>{}</td></tr>"#,
                escape(status)
            );
        }
        self.out.push_str("</tbody></table></div>");
    }

    /// The score bands with their customers.
    fn thresholds_table(&mut self, thresholds: &[Threshold]) {
        let l = self.locale;
        let _ = write!(
            self.out,
            r#"<h3>{}</h3><div class="scroll"><table data-table="thresholds"><thead><tr><th scope="col">{}</th><th class="num" scope="col">{}</th><th class="num" scope="col">{}</th><th class="num" scope="col">{}</th><th class="num" scope="col">{}</th></tr></thead><tbody>"#,
            escape(l.text(Text::Thresholds)),
            escape(l.text(Text::Metric)),
            escape(l.text(Text::Score)),
            escape(l.text(Text::Min)),
            escape(l.text(Text::Max)),
            escape(l.text(Text::Customers)),
        );
        for t in thresholds {
            let bound = |v: &Option<String>| {
                v.as_deref()
                    .map_or("—".to_string(), |text| localise_number(text, l))
            };
            let _ = write!(
                self.out,
                r#"<tr data-key="{}:{}"><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
                escape(&t.metric),
                t.score,
                escape(&t.metric),
                t.score,
                bound(&t.min),
                bound(&t.max),
                l.int(t.customers)
            );
        }
        self.out.push_str("</tbody></table></div>");
    }

    /// The segment rules in rank order; closes the section.
    fn rules_table(&mut self) {
        let l = self.locale;
        let r = self.report;
        let mut definitions = r.definitions.clone();
        definitions.sort_by_key(|d| d.rank);
        let _ = write!(
            self.out,
            r#"<h3>{}</h3><div class="scroll"><table data-table="rules"><thead><tr><th class="num" scope="col">{}</th><th scope="col">{}</th><th scope="col">{}</th></tr></thead><tbody>"#,
            escape(l.text(Text::Rules)),
            escape(l.text(Text::Rank)),
            escape(l.text(Text::Segment)),
            escape(l.text(Text::Rule)),
        );
        for d in &definitions {
            let _ = write!(
                self.out,
                r#"<tr data-key="{}"><td class="num">{}</td><td>{}<br><small>{}</small></td><td><code>{}</code></td></tr>"#,
                escape(&d.segment),
                d.rank,
                self.swatch(&d.segment),
                escape(&d.description),
                escape(&d.rule)
            );
        }
        self.out.push_str("</tbody></table></div></section>");
    }
}

/// `"12.50"` → 1250 cents.
fn parse_cents(text: &str) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "0"));
    let fraction = format!("{fraction:0<2}");
    if fraction.len() != 2 {
        return None;
    }
    let cents = whole.parse::<i128>().ok()? * 100 + fraction.parse::<i128>().ok()?;
    Some(if negative { -cents } else { cents })
}

/// A bound written as text by `score_thresholds` (an integer or a decimal),
/// in the locale's format; anything else as it is.
fn localise_number(text: &str, locale: Locale) -> String {
    if let Ok(n) = text.parse::<i64>() {
        return locale.int(n);
    }
    if let Some((_, fraction)) = text.split_once('.')
        && let Ok(value) = text.parse::<f64>()
    {
        return locale.decimal_number(value, fraction.len());
    }
    escape(text)
}

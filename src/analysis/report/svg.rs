//! The report's charts as inline SVG, drawn here so the page needs no chart
//! library and no network. Each chart scales to its container (`viewBox`),
//! carries a `<title>` and `<desc>` for screen readers, and is always shown
//! next to a table with the same figures.
//!
//! Colours are Paul Tol's colour-blind-safe schemes (<https://personal.sron.nl/~pault/>):
//! "sunset" (diverging, 11 colours) for ranked segments, best in blue, worst
//! in red; "muted" for unordered audiences; a single-hue blue ramp for the
//! heatmap, whose cells also print their numbers.

use std::collections::HashMap;
use std::fmt::Write;

use super::locale::Locale;

/// Tol's "sunset" diverging scheme, blue to red.
const SUNSET: [&str; 11] = [
    "#364B9A", "#4A7BB7", "#6EA6CD", "#98CAE1", "#C2E4EF", "#EAECCC", "#FEDA8B", "#FDB366",
    "#F67E4B", "#DD3D2D", "#A50026",
];
/// Tol's "muted" qualitative scheme, plus his pale grey.
const MUTED: [&str; 10] = [
    "#CC6677", "#332288", "#DDCC77", "#117733", "#88CCEE", "#882255", "#44AA99", "#999933",
    "#AA4499", "#DDDDDD",
];
/// Colour of the `(new)` and `(removed)` pseudo-segments.
pub const OUTSIDE: &str = "#BBBBBB";

/// Colours for `n` segments in rank order (`ordered`), or for `n` audiences.
pub fn palette(n: usize, ordered: bool) -> Vec<&'static str> {
    if !ordered {
        return (0..n).map(|i| MUTED[i % MUTED.len()]).collect();
    }
    match n {
        0 => Vec::new(),
        1 => vec![SUNSET[0]],
        _ if n <= SUNSET.len() => (0..n)
            .map(|i| SUNSET[(i * (SUNSET.len() - 1) + (n - 1) / 2) / (n - 1)])
            .collect(),
        _ => (0..n).map(|i| SUNSET[i * SUNSET.len() / n]).collect(),
    }
}

fn rgb(hex: &str) -> (f64, f64, f64) {
    let value = u32::from_str_radix(hex.trim_start_matches('#'), 16).unwrap_or(0);
    (
        ((value >> 16) & 0xff) as f64 / 255.0,
        ((value >> 8) & 0xff) as f64 / 255.0,
        (value & 0xff) as f64 / 255.0,
    )
}

/// Black or white, whichever reads better on `background` (WCAG luminance).
pub fn ink(background: &str) -> &'static str {
    let linear = |c: f64| {
        if c <= 0.03928 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    let (r, g, b) = rgb(background);
    let luminance = 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b);
    // Contrast with black (L + 0.05) / 0.05 against white 1.05 / (L + 0.05).
    if (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) {
        "#000000"
    } else {
        "#FFFFFF"
    }
}

/// White to dark blue for a share in [0, 1].
pub fn ramp(share: f64) -> String {
    let t = share.clamp(0.0, 1.0).sqrt();
    let (r0, g0, b0) = (247.0, 251.0, 255.0);
    let (r1, g1, b1) = (8.0, 48.0, 107.0);
    let mix = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    format!("#{:02X}{:02X}{:02X}", mix(r0, r1), mix(g0, g1), mix(b0, b1))
}

/// Escape text for HTML and SVG.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn open(out: &mut String, id: &str, width: f64, height: f64, title: &str, desc: &str) {
    let _ = write!(
        out,
        r#"<svg class="chart" id="{id}" viewBox="0 0 {width} {height}" role="img" aria-labelledby="{id}-t {id}-d"><title id="{id}-t">{}</title><desc id="{id}-d">{}</desc>"#,
        escape(title),
        escape(desc)
    );
}

fn text(out: &mut String, x: f64, y: f64, anchor: &str, class: &str, fill: &str, body: &str) {
    let _ = write!(
        out,
        r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{anchor}" class="{class}" fill="{fill}">{}</text>"#,
        escape(body)
    );
}

/// A label cut to `max` characters, with an ellipsis.
fn clip(label: &str, max: usize) -> String {
    if label.chars().count() <= max {
        label.to_string()
    } else {
        let cut: String = label.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// One cell of the R×F grid: the customers of each segment in it.
pub struct GridCell<'a> {
    pub r: i64,
    pub f: i64,
    /// (label, colour, customers), largest first.
    pub segments: Vec<(&'a str, &'a str, i64)>,
}

/// The 5×5 R×F grid: recency 5 at the top, frequency 5 on the right; each
/// cell in the colour of its largest segment, with its customer count.
pub fn rf_grid(cells: &[GridCell], locale: Locale, title: &str, desc: &str) -> String {
    let (left, top, size) = (46.0, 10.0, 104.0);
    let width = left + 5.0 * size + 10.0;
    let height = top + 5.0 * size + 46.0;
    let mut out = String::new();
    open(&mut out, "rf-grid", width, height, title, desc);
    for r in 1..=5 {
        for f in 1..=5 {
            let x = left + (f - 1) as f64 * size;
            let y = top + (5 - r) as f64 * size;
            let cell = cells.iter().find(|c| c.r == r && c.f == f);
            let total: i64 = cell.map_or(0, |c| c.segments.iter().map(|s| s.2).sum());
            let (fill, label) = match cell.and_then(|c| c.segments.first()) {
                Some((label, colour, _)) => (*colour, *label),
                None => ("#F4F4F4", ""),
            };
            let ink = ink(fill);
            let tooltip: Vec<String> = cell
                .map(|c| {
                    c.segments
                        .iter()
                        .map(|(l, _, n)| format!("{l}: {}", locale.int(*n)))
                        .collect()
                })
                .unwrap_or_default();
            let _ = write!(
                out,
                r##"<g><title>R{r} F{f} · {}</title><rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{w:.1}" rx="4" fill="{fill}" stroke="#FFFFFF" stroke-width="3"/>"##,
                escape(&tooltip.join(" · ")),
                w = size
            );
            if total > 0 {
                text(
                    &mut out,
                    x + size / 2.0,
                    y + size / 2.0 + 2.0,
                    "middle",
                    "big",
                    ink,
                    &locale.int(total),
                );
                text(
                    &mut out,
                    x + size / 2.0,
                    y + size / 2.0 + 22.0,
                    "middle",
                    "small",
                    ink,
                    &clip(label, 15),
                );
                if cell.is_some_and(|c| c.segments.len() > 1) {
                    text(&mut out, x + size - 8.0, y + 16.0, "end", "small", ink, "+");
                }
            }
            out.push_str("</g>");
        }
    }
    for i in 1..=5 {
        let y = top + (5 - i) as f64 * size + size / 2.0 + 5.0;
        text(
            &mut out,
            left - 10.0,
            y,
            "end",
            "axis",
            "#333333",
            &i.to_string(),
        );
        let x = left + (i - 1) as f64 * size + size / 2.0;
        text(
            &mut out,
            x,
            top + 5.0 * size + 18.0,
            "middle",
            "axis",
            "#333333",
            &i.to_string(),
        );
    }
    text(
        &mut out,
        left + 2.5 * size,
        height - 6.0,
        "middle",
        "axis",
        "#333333",
        &format!("{} →", locale.text(super::locale::Text::Frequency)),
    );
    let _ = write!(
        out,
        r##"<text transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle" class="axis" fill="#333333">{} →</text>"##,
        top + 2.5 * size,
        escape(locale.text(super::locale::Text::Recency))
    );
    out.push_str("</svg>");
    out
}

/// One group of the size bars: this period and the compared one.
pub struct Bar<'a> {
    pub label: &'a str,
    pub colour: &'a str,
    pub now: i64,
    pub before: Option<i64>,
}

/// Horizontal bars, one per segment: this period solid, the compared one as
/// a thin grey bar under it.
pub fn bars(
    bars: &[Bar],
    legend: (&str, Option<&str>),
    locale: Locale,
    title: &str,
    desc: &str,
) -> String {
    let (label_width, row, width) = (150.0, 34.0, 440.0);
    let height = 34.0 + row * bars.len() as f64;
    let max = bars
        .iter()
        .map(|b| b.now.max(b.before.unwrap_or(0)))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let scale = (width - label_width - 56.0) / max;
    let mut out = String::new();
    open(&mut out, "size-bars", width, height, title, desc);
    for (i, bar) in bars.iter().enumerate() {
        let y = 6.0 + i as f64 * row;
        text(
            &mut out,
            label_width - 8.0,
            y + 15.0,
            "end",
            "label",
            "#222222",
            &clip(bar.label, 20),
        );
        let w = (bar.now as f64 * scale).max(if bar.now > 0 { 1.0 } else { 0.0 });
        let _ = write!(
            out,
            r##"<rect x="{label_width}" y="{y:.1}" width="{w:.1}" height="18" rx="2" fill="{}" stroke="#444444" stroke-width="0.5"/>"##,
            bar.colour
        );
        if let Some(before) = bar.before {
            let wb = before as f64 * scale;
            let _ = write!(
                out,
                r##"<rect x="{label_width}" y="{:.1}" width="{wb:.1}" height="5" fill="#555555"/>"##,
                y + 21.0
            );
        }
        text(
            &mut out,
            label_width + w + 6.0,
            y + 14.0,
            "start",
            "label",
            "#222222",
            &locale.int(bar.now),
        );
    }
    // Legend: the solid bar is this period, the grey line the compared one.
    let y = height - 14.0;
    let _ = write!(
        out,
        r##"<rect x="{label_width}" y="{:.1}" width="14" height="12" fill="{}" stroke="#444444" stroke-width="0.5"/>"##,
        y - 10.0,
        bars.first().map_or("#6EA6CD", |b| b.colour)
    );
    text(
        &mut out,
        label_width + 20.0,
        y,
        "start",
        "small",
        "#222222",
        legend.0,
    );
    if let Some(before) = legend.1 {
        let x = label_width + 130.0;
        let _ = write!(
            out,
            r##"<rect x="{x:.1}" y="{:.1}" width="14" height="5" fill="#555555"/>"##,
            y - 6.0
        );
        text(&mut out, x + 20.0, y, "start", "small", "#222222", before);
    }
    out.push_str("</svg>");
    out
}

/// The migration matrix as a heatmap: rows = from, columns = to, the colour
/// is the share of the row, the text the customers.
pub fn heatmap(
    rows: &[String],
    columns: &[String],
    cells: &HashMap<(String, String), (i64, f64)>,
    locale: Locale,
    title: &str,
    desc: &str,
) -> String {
    let (left, top, cell) = (150.0, 110.0, 52.0);
    let width = left + cell * columns.len() as f64 + 70.0;
    let height = top + cell * rows.len() as f64 + 10.0;
    let mut out = String::new();
    open(&mut out, "heatmap", width, height, title, desc);
    for (j, column) in columns.iter().enumerate() {
        let x = left + j as f64 * cell + cell / 2.0;
        let _ = write!(
            out,
            r##"<text transform="translate({x:.1} {:.1}) rotate(-45)" text-anchor="start" class="small" fill="#222222">{}</text>"##,
            top - 8.0,
            escape(&clip(column, 18))
        );
    }
    for (i, row) in rows.iter().enumerate() {
        let y = top + i as f64 * cell;
        text(
            &mut out,
            left - 8.0,
            y + cell / 2.0 + 4.0,
            "end",
            "label",
            "#222222",
            &clip(row, 20),
        );
        for (j, column) in columns.iter().enumerate() {
            let x = left + j as f64 * cell;
            let (customers, share) = cells
                .get(&(row.clone(), column.clone()))
                .copied()
                .unwrap_or((0, 0.0));
            let fill = if customers == 0 {
                "#FFFFFF".to_string()
            } else {
                ramp(share)
            };
            let _ = write!(
                out,
                r##"<g><title>{} → {}: {} ({})</title><rect x="{x:.1}" y="{y:.1}" width="{cell}" height="{cell}" fill="{fill}" stroke="#DDDDDD"/>"##,
                escape(row),
                escape(column),
                locale.int(customers),
                locale.percent(share)
            );
            if customers > 0 {
                text(
                    &mut out,
                    x + cell / 2.0,
                    y + cell / 2.0 + 4.0,
                    "middle",
                    "small",
                    ink(&fill),
                    &locale.int(customers),
                );
            }
            out.push_str("</g>");
        }
    }
    out.push_str("</svg>");
    out
}

/// A node of the Sankey diagram.
pub struct Node<'a> {
    pub label: &'a str,
    pub colour: &'a str,
}

/// The migrations as a Sankey diagram: previous segments on the left, current
/// on the right, bands as wide as the customers who moved.
pub fn sankey(
    left: &[Node],
    right: &[Node],
    links: &[(usize, usize, i64)],
    locale: Locale,
    title: &str,
    desc: &str,
) -> String {
    let (width, height, node_width, label_space, gap) = (760.0, 620.0, 16.0, 200.0, 10.0);
    let total: i64 = links.iter().map(|l| l.2).sum::<i64>().max(1);
    let side_total = |count: usize, pick: &dyn Fn(&(usize, usize, i64)) -> usize| {
        (0..count)
            .map(|n| {
                links
                    .iter()
                    .filter(|l| pick(l) == n)
                    .map(|l| l.2)
                    .sum::<i64>()
            })
            .collect::<Vec<i64>>()
    };
    let left_sizes = side_total(left.len(), &|l| l.0);
    let right_sizes = side_total(right.len(), &|l| l.1);
    let gaps = (left.len().max(right.len()).saturating_sub(1)) as f64 * gap;
    // Room at the bottom for labels pushed down under thin nodes.
    let scale = (height - 50.0 - gaps) / total as f64;
    let positions = |sizes: &[i64]| {
        let mut y = 10.0;
        sizes
            .iter()
            .map(|s| {
                let start = y;
                if *s > 0 {
                    y += *s as f64 * scale + gap;
                }
                start
            })
            .collect::<Vec<f64>>()
    };
    let left_y = positions(&left_sizes);
    let right_y = positions(&right_sizes);
    let (x0, x1) = (label_space, width - label_space);
    let mut out = String::new();
    open(&mut out, "sankey", width, height, title, desc);
    let mut left_offset = vec![0.0; left.len()];
    let mut right_offset = vec![0.0; right.len()];
    let mut ordered: Vec<&(usize, usize, i64)> = links.iter().collect();
    ordered.sort_by_key(|l| (l.0, l.1));
    // Right-side offsets follow the order of the left nodes.
    let mut right_order: Vec<&(usize, usize, i64)> = links.iter().collect();
    right_order.sort_by_key(|l| (l.1, l.0));
    let mut right_start = HashMap::new();
    for link in right_order {
        right_start.insert((link.0, link.1), right_y[link.1] + right_offset[link.1]);
        right_offset[link.1] += link.2 as f64 * scale;
    }
    for link in ordered {
        let thickness = link.2 as f64 * scale;
        let ya = left_y[link.0] + left_offset[link.0];
        left_offset[link.0] += thickness;
        let yb = right_start[&(link.0, link.1)];
        let (xa, xb) = (x0 + node_width, x1);
        let mid = (xa + xb) / 2.0;
        let _ = write!(
            out,
            r#"<path d="M{xa:.1},{ya:.2} C{mid:.1},{ya:.2} {mid:.1},{yb:.2} {xb:.1},{yb:.2} L{xb:.1},{:.2} C{mid:.1},{:.2} {mid:.1},{:.2} {xa:.1},{:.2} Z" fill="{}" fill-opacity="0.45"><title>{} → {}: {}</title></path>"#,
            yb + thickness,
            yb + thickness,
            ya + thickness,
            ya + thickness,
            left[link.0].colour,
            escape(left[link.0].label),
            escape(right[link.1].label),
            locale.int(link.2)
        );
    }
    for (nodes, sizes, ys, x, anchor, label_x) in [
        (left, &left_sizes, &left_y, x0, "end", x0 - 6.0),
        (
            right,
            &right_sizes,
            &right_y,
            x1,
            "start",
            x1 + node_width + 6.0,
        ),
    ] {
        // Labels at least one line apart, pushed down when nodes are thin.
        let mut next_free: f64 = 0.0;
        for (i, node) in nodes.iter().enumerate() {
            if sizes[i] == 0 {
                continue;
            }
            let h = (sizes[i] as f64 * scale).max(1.0);
            let _ = write!(
                out,
                r##"<rect x="{x:.1}" y="{:.2}" width="{node_width}" height="{h:.2}" fill="{}" stroke="#333333" stroke-width="0.5"/>"##,
                ys[i], node.colour
            );
            let label_y = (ys[i] + h / 2.0 + 4.0).max(next_free);
            next_free = label_y + 14.0;
            text(
                &mut out,
                label_x,
                label_y,
                anchor,
                "label",
                "#222222",
                &format!("{} ({})", clip(node.label, 22), locale.int(sizes[i])),
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// Stacked bars of segment sizes per period, oldest on the left.
pub fn history(
    periods: &[String],
    series: &[(&str, &str, Vec<i64>)],
    locale: Locale,
    title: &str,
    desc: &str,
) -> String {
    let (left, top, width, height) = (64.0, 10.0, 720.0, 320.0);
    let plot_height = height - top - 40.0;
    let totals: Vec<i64> = (0..periods.len())
        .map(|p| {
            series
                .iter()
                .map(|s| s.2.get(p).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let top_total = totals.iter().copied().max().unwrap_or(0).max(1) as f64;
    // A round step (1, 2, 2.5 or 5 × 10^k) giving at most 5 grid lines.
    let raw = top_total / 4.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(raw)
        .max(1.0);
    let ticks = (top_total / step).ceil() as i64;
    let max = step * ticks as f64;
    let slot = (width - left - 10.0) / periods.len().max(1) as f64;
    let bar = (slot * 0.7).min(48.0);
    let mut out = String::new();
    open(&mut out, "history", width, height, title, desc);
    for tick in 0..=ticks {
        let value = step * tick as f64;
        let y = top + plot_height - plot_height * value / max;
        let _ = write!(
            out,
            r##"<line x1="{left}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#E0E0E0"/>"##,
            width - 10.0
        );
        text(
            &mut out,
            left - 6.0,
            y + 4.0,
            "end",
            "small",
            "#444444",
            &locale.int(value.round() as i64),
        );
    }
    for (p, period) in periods.iter().enumerate() {
        let x = left + p as f64 * slot + (slot - bar) / 2.0;
        let mut y = top + plot_height;
        for (label, colour, values) in series {
            let value = values.get(p).copied().unwrap_or(0);
            if value <= 0 {
                continue;
            }
            let h = value as f64 / max * plot_height;
            y -= h;
            let _ = write!(
                out,
                r##"<rect x="{x:.1}" y="{y:.2}" width="{bar:.1}" height="{h:.2}" fill="{colour}" stroke="#FFFFFF" stroke-width="0.5"><title>{} · {}: {}</title></rect>"##,
                escape(period),
                escape(label),
                locale.int(value)
            );
        }
        text(
            &mut out,
            x + bar / 2.0,
            top + plot_height + 18.0,
            "middle",
            "small",
            "#333333",
            period,
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palettes_and_ink() {
        assert_eq!(palette(11, true), SUNSET.to_vec());
        let eight = palette(8, true);
        assert_eq!(eight.first(), Some(&SUNSET[0]));
        assert_eq!(eight.last(), Some(&SUNSET[10]));
        assert_eq!(ink("#364B9A"), "#FFFFFF");
        assert_eq!(ink("#EAECCC"), "#000000");
        assert_eq!(escape("<a&\"b\">"), "&lt;a&amp;&quot;b&quot;&gt;");
    }
}

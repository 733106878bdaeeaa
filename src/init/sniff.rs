//! Reading a sample of a user's export and guessing how to read it: format,
//! CSV delimiter, encoding, decimal separator, date format, and the role of
//! each column. A guess that the sample does not settle is reported as
//! ambiguous with its candidates, never silently chosen.

use std::collections::BTreeMap;
use std::path::Path;

/// How many lines (or rows) of the file are looked at.
const SAMPLE_LINES: usize = 500;
/// How many bytes of a text file are read.
const SAMPLE_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SniffError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Unusable { path: String, message: String },
}

/// A guess the sample settles, or the candidates it leaves open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guess<T> {
    Sure(T),
    Ambiguous(Vec<T>),
    Unknown,
}

/// What the sample says about the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// `csv`, `parquet` or `ndjson`.
    pub format: &'static str,
    /// CSV only.
    pub delimiter: Option<char>,
    /// CSV and NDJSON: `utf-8`, `windows-1252` or `latin-1`.
    pub encoding: Option<&'static str>,
    /// `,` when numbers are written `12,50`.
    pub decimal_comma: bool,
    /// chrono format of the timestamps written as text; `Sure(None)` when
    /// they are ISO 8601 (the default), `Unknown` without a timestamp column.
    pub date_format: Guess<Option<String>>,
    /// The columns in file order, with up to [`SAMPLE_LINES`] values as text.
    pub columns: Vec<(String, Vec<String>)>,
}

/// Read a sample of `path` and describe it.
pub fn sniff(path: &Path) -> Result<Sample, SniffError> {
    let shown = path.display().to_string();
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "parquet" | "pq" => sniff_parquet(path, &shown),
        "ndjson" | "jsonl" | "json" => {
            let text = read_text(path, &shown)?;
            sniff_ndjson(&text.0, text.1, &shown)
        }
        _ => {
            let (text, encoding) = read_text(path, &shown)?;
            sniff_csv(&text, encoding, &shown)
        }
    }
}

/// A sample of a file as text, and its encoding: the whole file when it
/// is at most [`SAMPLE_BYTES`], else its first half of that and whole lines
/// from [`SAMPLE_SPREAD`] places spread over the rest (an export sorted by
/// date has only early days in its first lines, which cannot tell
/// dd/mm from mm/dd). The encoding is UTF-8 when the sample decodes, else
/// Windows-1252 when it uses 0x80–0x9F (€, œ, ’), else Latin-1.
fn read_text(path: &Path, shown: &str) -> Result<(String, &'static str), SniffError> {
    let bytes = read_sample(path).map_err(|source| SniffError::Read {
        path: shown.to_string(),
        source,
    })?;
    // A sample cut in the middle of a UTF-8 character is still UTF-8.
    let complete = match std::str::from_utf8(&bytes) {
        Ok(_) => bytes.len(),
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => 0,
    };
    if complete > 0 || bytes.is_empty() {
        let text = String::from_utf8_lossy(&bytes[..complete]).into_owned();
        return Ok((text.trim_start_matches('\u{feff}').to_string(), "utf-8"));
    }
    let windows = bytes.iter().any(|b| (0x80..0xA0).contains(b));
    let (text, _, _) = encoding_rs::WINDOWS_1252.decode(&bytes);
    Ok((
        text.into_owned(),
        if windows { "windows-1252" } else { "latin-1" },
    ))
}

/// How many places past the head of a large file are sampled.
const SAMPLE_SPREAD: u64 = 16;

/// The bytes of the sample: whole lines only past the head.
fn read_sample(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let length = file.metadata()?.len();
    if length <= SAMPLE_BYTES as u64 {
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        return Ok(bytes);
    }
    let head = SAMPLE_BYTES as u64 / 2;
    let mut bytes = Vec::new();
    (&mut file).take(head).read_to_end(&mut bytes)?;
    // Up to the head's last complete line.
    if let Some(end) = bytes.iter().rposition(|b| *b == b'\n') {
        bytes.truncate(end + 1);
    }
    let piece = (SAMPLE_BYTES as u64 - head) / SAMPLE_SPREAD;
    // The last piece ends at the end of the file.
    for place in 1..=SAMPLE_SPREAD {
        let offset = head + (length - head - piece) * place / SAMPLE_SPREAD;
        file.seek(SeekFrom::Start(offset))?;
        let mut chunk = Vec::new();
        (&mut file).take(piece).read_to_end(&mut chunk)?;
        // The whole lines of the chunk: after its first newline, up to its
        // last.
        let (Some(first), Some(last)) = (
            chunk.iter().position(|b| *b == b'\n'),
            chunk.iter().rposition(|b| *b == b'\n'),
        ) else {
            continue;
        };
        if first < last {
            bytes.extend_from_slice(&chunk[first + 1..=last]);
        }
    }
    Ok(bytes)
}

/// At most `count` of `lines`, taken evenly from first to last.
fn spread<'a>(lines: &[&'a str], count: usize) -> Vec<&'a str> {
    if lines.len() <= count {
        return lines.to_vec();
    }
    (0..count).map(|i| lines[i * lines.len() / count]).collect()
}

/// Split one CSV line on `delimiter`, honouring double quotes.
fn split(line: &str, delimiter: char) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            c if c == delimiter && !quoted => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields.into_iter().map(|f| f.trim().to_string()).collect()
}

fn sniff_csv(text: &str, encoding: &'static str, shown: &str) -> Result<Sample, SniffError> {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    // The header, then lines spread over the whole sample.
    let mut lines: Vec<&str> = all.first().copied().into_iter().collect();
    lines.extend(spread(all.get(1..).unwrap_or_default(), SAMPLE_LINES));
    let Some(header) = lines.first() else {
        return Err(SniffError::Unusable {
            path: shown.into(),
            message: "the file is empty".into(),
        });
    };
    // The delimiter that splits every line into the header's number of
    // fields, the most fields first.
    let mut best: Option<(char, usize)> = None;
    for delimiter in [';', ',', '\t', '|'] {
        let width = split(header, delimiter).len();
        if width < 2 {
            continue;
        }
        let consistent = lines.iter().all(|l| split(l, delimiter).len() == width);
        if consistent && best.is_none_or(|(_, w)| width > w) {
            best = Some((delimiter, width));
        }
    }
    let Some((delimiter, _)) = best else {
        return Err(SniffError::Unusable {
            path: shown.into(),
            message: "no delimiter (; , tab |) splits every line into the same number of fields: is it a CSV export?".into(),
        });
    };
    let names = split(header, delimiter);
    let mut values: Vec<Vec<String>> = vec![Vec::new(); names.len()];
    for line in &lines[1..] {
        for (index, field) in split(line, delimiter).into_iter().enumerate() {
            values[index].push(field);
        }
    }
    let columns: Vec<(String, Vec<String>)> = names.into_iter().zip(values).collect();
    let decimal_comma = delimiter != ','
        && columns.iter().any(|(_, v)| {
            non_empty(v).all(|v| is_decimal_comma(v)) && non_empty(v).next().is_some()
        });
    let date_format = date_format_of(&columns);
    Ok(Sample {
        format: "csv",
        delimiter: Some(delimiter),
        encoding: Some(encoding),
        decimal_comma,
        date_format,
        columns,
    })
}

fn sniff_ndjson(text: &str, encoding: &'static str, shown: &str) -> Result<Sample, SniffError> {
    let mut names: Vec<String> = Vec::new();
    let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    for line in spread(&all, SAMPLE_LINES) {
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line)
            .map_err(|e| SniffError::Unusable {
                path: shown.into(),
                message: format!(
                    "a sampled line is not a JSON object ({e}): {}",
                    line.chars().take(80).collect::<String>()
                ),
            })?;
        for (key, value) in object {
            if !names.contains(&key) {
                names.push(key.clone());
            }
            let text = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            values.entry(key).or_default().push(text);
        }
    }
    let columns: Vec<(String, Vec<String>)> = names
        .into_iter()
        .map(|n| {
            let v = values.remove(&n).unwrap_or_default();
            (n, v)
        })
        .collect();
    let date_format = date_format_of(&columns);
    Ok(Sample {
        format: "ndjson",
        delimiter: None,
        encoding: Some(encoding),
        decimal_comma: false,
        date_format,
        columns,
    })
}

fn sniff_parquet(path: &Path, shown: &str) -> Result<Sample, SniffError> {
    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let unusable = |message: String| SniffError::Unusable {
        path: shown.into(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|source| SniffError::Read {
        path: shown.into(),
        source,
    })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| unusable(format!("not a Parquet file: {e}")))?
        .with_batch_size(SAMPLE_LINES)
        .build()
        .map_err(|e| unusable(e.to_string()))?;
    use datafusion::arrow::array::RecordBatchReader;
    let mut columns: Vec<(String, Vec<String>)> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), Vec::new()))
        .collect();
    if let Some(batch) = reader.into_iter().next() {
        let batch = batch.map_err(|e| unusable(e.to_string()))?;
        let options = FormatOptions::default();
        for (index, column) in batch.columns().iter().enumerate() {
            let formatter = ArrayFormatter::try_new(column.as_ref(), &options)
                .map_err(|e| unusable(e.to_string()))?;
            columns[index].1 = (0..batch.num_rows())
                .map(|row| {
                    if column.is_null(row) {
                        String::new()
                    } else {
                        formatter.value(row).to_string()
                    }
                })
                .collect();
        }
    }
    // Typed timestamps need no format.
    Ok(Sample {
        format: "parquet",
        delimiter: None,
        encoding: None,
        decimal_comma: false,
        date_format: Guess::Sure(None),
        columns,
    })
}

fn non_empty(values: &[String]) -> impl Iterator<Item = &String> {
    values.iter().filter(|v| !v.is_empty())
}

/// `12,50`, `-3,5`: digits, one comma, digits.
fn is_decimal_comma(value: &str) -> bool {
    let value = value.strip_prefix('-').unwrap_or(value);
    match value.split_once(',') {
        Some((units, cents)) => {
            !units.is_empty()
                && !cents.is_empty()
                && units.chars().all(|c| c.is_ascii_digit())
                && cents.chars().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

/// Whether `value` is a number (with `.` or `,` as decimal separator).
pub fn is_number(value: &str) -> bool {
    let value = value.replace(',', ".");
    value.parse::<f64>().is_ok()
}

/// chrono formats of timestamps written as text, most specific first.
const DATE_FORMATS: [&str; 12] = [
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%d.%m.%Y",
    "%d-%m-%Y %H:%M:%S",
    "%d-%m-%Y %H:%M",
    "%d-%m-%Y",
];

/// Whether `value` is an ISO 8601 date or timestamp (read without a format).
pub fn is_iso_timestamp(value: &str) -> bool {
    use chrono::{DateTime, NaiveDate, NaiveDateTime};
    DateTime::parse_from_rfc3339(value).is_ok()
        || NaiveDateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S").is_ok()
        || NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S").is_ok()
        || NaiveDateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S%.f").is_ok()
        || NaiveDate::parse_from_str(value, "%Y-%m-%d").is_ok()
}

/// The formats of [`DATE_FORMATS`] that parse every value.
pub fn formats_of(values: &[&str]) -> Vec<&'static str> {
    use chrono::{NaiveDate, NaiveDateTime};
    DATE_FORMATS
        .iter()
        .copied()
        .filter(|format| {
            values.iter().all(|v| {
                NaiveDateTime::parse_from_str(v, format).is_ok()
                    || NaiveDate::parse_from_str(v, format).is_ok()
            })
        })
        .collect()
}

/// The date format of the file's timestamp-looking columns: ISO (no format
/// needed), one format, or several that fit every value (day and month
/// both ≤ 12 in the sample: 03/04/2024 is 3 April or 4 March).
fn date_format_of(columns: &[(String, Vec<String>)]) -> Guess<Option<String>> {
    let mut found: Option<Guess<Option<String>>> = None;
    for (_, values) in columns {
        let values: Vec<&str> = non_empty(values).map(String::as_str).collect();
        if values.is_empty() || values.iter().any(|v| is_number(v)) {
            continue;
        }
        let guess = if values.iter().all(|v| is_iso_timestamp(v)) {
            Guess::Sure(None)
        } else {
            // The candidates fitting every value, without those that are the
            // same but for the seconds or the time.
            let formats = formats_of(&values);
            let widest: Vec<String> = formats
                .iter()
                .filter(|f| {
                    // keep the first of each day/month order
                    let order = &f[..2];
                    formats.iter().find(|g| &g[..2] == order) == Some(f)
                })
                .map(|f| f.to_string())
                .collect();
            match widest.len() {
                0 => continue,
                1 => Guess::Sure(Some(widest[0].clone())),
                _ => Guess::Ambiguous(widest.into_iter().map(Some).collect()),
            }
        };
        // The first timestamp column decides; a later one only confirms.
        if found.is_none() {
            found = Some(guess);
        }
    }
    found.unwrap_or(Guess::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(text: &str) -> Sample {
        sniff_csv(text, "utf-8", "sample.csv").unwrap()
    }

    #[test]
    fn a_french_export_is_recognised() {
        let sample = csv(
            "client;commande;date;montant\nc1;o1;03/06/2024 10:00;12,50\nc2;o2;14/06/2024 11:30;7,05\n",
        );
        assert_eq!(sample.delimiter, Some(';'));
        assert!(sample.decimal_comma);
        assert_eq!(
            sample.date_format,
            Guess::Sure(Some("%d/%m/%Y %H:%M".into()))
        );
    }

    #[test]
    fn day_and_month_both_small_is_ambiguous() {
        let sample = csv("id,when,amount\n1,03/04/2024,1.5\n2,05/06/2024,2\n");
        assert_eq!(sample.delimiter, Some(','));
        assert!(!sample.decimal_comma, "a comma delimiter: no decimal comma");
        assert_eq!(
            sample.date_format,
            Guess::Ambiguous(vec![Some("%d/%m/%Y".into()), Some("%m/%d/%Y".into())])
        );
    }

    #[test]
    fn iso_timestamps_need_no_format_and_quotes_hold_delimiters() {
        let sample = csv(
            "customer_id,order_id,ordered_at,amount,label\nc1,o1,2024-06-03 10:00:00,12.5,\"a, b\"\nc2,o2,2024-06-04T11:00:00Z,3,x\n",
        );
        assert_eq!(sample.date_format, Guess::Sure(None));
        assert_eq!(sample.columns[4].1, ["a, b", "x"]);
    }

    #[test]
    fn latin1_is_detected_and_decoded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("export.csv");
        std::fs::write(&path, b"nom;ville\nZo\xe9;S\xe8te\n").unwrap();
        let sample = sniff(&path).unwrap();
        assert_eq!(sample.encoding, Some("latin-1"));
        assert_eq!(sample.columns[0].1, ["Zoé"]);
        std::fs::write(&path, b"nom;prix\nx;5\x80\n").unwrap();
        assert_eq!(sniff(&path).unwrap().encoding, Some("windows-1252"));
    }

    /// An export sorted by date has only early days in its first
    /// megabyte: the sample also takes lines from across the file, so a
    /// later 13th settles dd/mm. Without the spread this is ambiguous.
    #[test]
    fn a_large_sorted_export_is_sampled_across_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ventes.csv");
        let mut text = String::from("client;commande;date;montant\n");
        // A month of 10,000 lines a day: 1 MiB holds its first 3 days.
        let lines = 310_000;
        for line in 0..lines {
            let day = 1 + line * 31 / lines;
            text.push_str(&format!("c{line};o{line};{day:02}/01/2025 10:00;1,00\n"));
        }
        assert!(text.len() > 2 * SAMPLE_BYTES, "{}", text.len());
        std::fs::write(&path, &text).unwrap();
        let sample = sniff(&path).unwrap();
        assert_eq!(
            sample.date_format,
            Guess::Sure(Some("%d/%m/%Y %H:%M".into()))
        );
        assert!(sample.columns[0].1.len() <= SAMPLE_LINES);
        // The head alone cannot tell.
        let head = &text[..SAMPLE_BYTES];
        let head = &head[..head.rfind('\n').unwrap()];
        assert!(matches!(csv(head).date_format, Guess::Ambiguous(_)));
    }

    #[test]
    fn a_file_that_is_not_csv_says_so() {
        let error = sniff_csv("just one column\nof text\n", "utf-8", "notes.txt").unwrap_err();
        assert!(error.to_string().contains("no delimiter"), "{error}");
    }
}

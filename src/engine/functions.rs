//! SQL functions the engine adds for reading exports: none is registered in
//! the session, so user SQL cannot call them; the canonical views use them.
//! Besides parsing, they are the hot path of every scan (each input row goes
//! through them once per query), so each has a fast path for the common case.

use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime};
use chrono_tz::Tz;
use datafusion::arrow::array::{
    Array, AsArray, Date32Array, StringArray, StringViewArray, TimestampMicrosecondArray,
    UInt64Array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::Expr;

/// `parse_local_timestamp(text)`: text in a chrono format → naive timestamp
/// (µs), null when it does not parse (the row becomes a reject).
#[derive(Debug, PartialEq, Eq, Hash)]
struct ParseLocalTimestamp {
    format: String,
    signature: Signature,
}

fn parse(text: &str, format: &str) -> Option<i64> {
    let text = text.trim();
    NaiveDateTime::parse_from_str(text, format)
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(text, format)
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
        .map(|t| t.and_utc().timestamp_micros())
}

impl ScalarUDFImpl for ParseLocalTimestamp {
    fn name(&self) -> &str {
        PARSE_LOCAL_TIMESTAMP
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Timestamp(TimeUnit::Microsecond, None))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let input = args.args[0].to_array(args.number_rows)?;
        let text = cast(&input, &DataType::Utf8)?;
        let text = text.as_string::<i32>();
        let parsed: TimestampMicrosecondArray = (0..text.len())
            .map(|row| {
                text.is_valid(row)
                    .then(|| parse(text.value(row), &self.format))
                    .flatten()
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(parsed)))
    }
}

/// The name plans carry for [`parse_local_timestamp`].
pub const PARSE_LOCAL_TIMESTAMP: &str = "parse_local_timestamp";

/// The function that parses text with a chrono `format`.
pub fn parse_local_timestamp_udf(format: &str) -> ScalarUDF {
    ScalarUDF::from(ParseLocalTimestamp {
        format: format.to_string(),
        signature: Signature::any(1, Volatility::Immutable),
    })
}

/// The chrono format of a [`parse_local_timestamp_udf`] (how the Ballista
/// codec sends it to executors), `None` for any other function.
#[cfg(all(test, feature = "ballista"))]
pub fn parse_local_timestamp_format(udf: &ScalarUDF) -> Option<&str> {
    udf.inner()
        .downcast_ref::<ParseLocalTimestamp>()
        .map(|f| f.format.as_str())
}

/// An expression parsing `text` with a chrono `format`.
pub fn parse_local_timestamp(text: Expr, format: &str) -> Expr {
    parse_local_timestamp_udf(format).call(vec![text])
}

/// `canonical_text(text)`: text with surrounding spaces removed, and empty
/// text as no value (CSV exports write missing ids as ""). Same result as
/// `CASE WHEN btrim(t) = '' THEN NULL ELSE btrim(t) END`, but a column with
/// nothing to trim (the usual case) is passed on as it is, without a copy.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CanonicalText {
    signature: Signature,
}

impl ScalarUDFImpl for CanonicalText {
    fn name(&self) -> &str {
        CANONICAL_TEXT
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        // Text read as views stays views (short ids are then held inline,
        // which makes grouping and joining on them cheaper).
        Ok(match arg_types.first() {
            Some(DataType::Utf8View) => DataType::Utf8View,
            _ => DataType::Utf8,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let input = args.args[0].to_array(args.number_rows)?;
        let clean = |value: &str| {
            let bytes = value.as_bytes();
            !bytes.is_empty() && bytes[0] != b' ' && bytes[bytes.len() - 1] != b' '
        };
        if input.data_type() == &DataType::Utf8View {
            let views = input.as_string_view();
            if views.iter().flatten().all(clean) {
                return Ok(ColumnarValue::Array(input));
            }
            let out: StringViewArray = views.iter().map(trimmed).collect();
            return Ok(ColumnarValue::Array(Arc::new(out)));
        }
        let text = if input.data_type() == &DataType::Utf8 {
            input
        } else {
            cast(&input, &DataType::Utf8)?
        };
        let strings = text.as_string::<i32>();
        if strings.iter().flatten().all(clean) {
            return Ok(ColumnarValue::Array(text));
        }
        let out: StringArray = strings.iter().map(trimmed).collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// Text without surrounding spaces; empty text as no value.
fn trimmed(value: Option<&str>) -> Option<&str> {
    value.map(|v| v.trim_matches(' ')).filter(|v| !v.is_empty())
}

/// The name plans carry for [`canonical_text`].
pub const CANONICAL_TEXT: &str = "canonical_text";

fn canonical_text_udf() -> ScalarUDF {
    ScalarUDF::from(CanonicalText {
        signature: Signature::any(1, Volatility::Immutable),
    })
}

/// An expression cleaning text the way canonical text columns are.
pub fn canonical_text(text: Expr) -> Expr {
    canonical_text_udf().call(vec![text])
}

/// `local_date(instant)`: the calendar date of a UTC timestamp in the
/// business timezone. Same result as casting to `Timestamp(µs, tz)` then to
/// `Date32`, without converting every row through chrono: UTC and fixed
/// offsets are arithmetic, and named zones look the offset up once per hour
/// of the data (verified constant over the hour, else per row).
#[derive(Debug, PartialEq, Eq, Hash)]
struct LocalDate {
    timezone: String,
    signature: Signature,
}

const MICROS_PER_DAY: i64 = 86_400_000_000;
const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// The UTC offset of `timezone` at `micros` (UTC), in microseconds.
fn offset_micros(timezone: Tz, micros: i64) -> i64 {
    use chrono::{Offset, TimeZone};
    let instant = chrono::DateTime::from_timestamp_micros(micros).unwrap_or_default();
    i64::from(
        timezone
            .offset_from_utc_datetime(&instant.naive_utc())
            .fix()
            .local_minus_utc(),
    ) * 1_000_000
}

/// Days since 1970-01-01 of the local date of `micros`.
fn local_days(micros: i64, offset: i64) -> Option<i32> {
    i32::try_from((micros + offset).div_euclid(MICROS_PER_DAY)).ok()
}

impl LocalDate {
    fn dates(&self, instants: &TimestampMicrosecondArray) -> Result<Date32Array> {
        let timezone: Tz = self.timezone.parse().map_err(|e| {
            datafusion::error::DataFusionError::Execution(format!(
                "{LOCAL_DATE}: unknown timezone {}: {e}",
                self.timezone
            ))
        })?;
        // A zone without transitions (UTC, Etc/GMT-2) has one offset.
        let fixed = {
            let probe = [i64::MIN / 4, 0, i64::MAX / 4];
            let first = offset_micros(timezone, 0);
            probe
                .iter()
                .all(|&p| offset_micros(timezone, p) == first)
                .then_some(first)
        };
        if let Some(offset) = fixed {
            return Ok(instants
                .iter()
                .map(|m| m.and_then(|m| local_days(m, offset)))
                .collect());
        }
        let mut hours: std::collections::HashMap<i64, Option<i64>> = Default::default();
        Ok(instants
            .iter()
            .map(|micros| {
                let micros = micros?;
                let hour = micros.div_euclid(MICROS_PER_HOUR);
                let constant = *hours.entry(hour).or_insert_with(|| {
                    let start = hour * MICROS_PER_HOUR;
                    let first = offset_micros(timezone, start);
                    (first == offset_micros(timezone, start + MICROS_PER_HOUR - 1)).then_some(first)
                });
                let offset = constant.unwrap_or_else(|| offset_micros(timezone, micros));
                local_days(micros, offset)
            })
            .collect())
    }
}

impl ScalarUDFImpl for LocalDate {
    fn name(&self) -> &str {
        LOCAL_DATE
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Date32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let input = args.args[0].to_array(args.number_rows)?;
        let instants = cast(
            &input,
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        )?;
        let dates = self.dates(instants.as_primitive())?;
        Ok(ColumnarValue::Array(Arc::new(dates)))
    }
}

/// `from_local(naive)`: a naive timestamp read as a local time in the
/// business timezone → the UTC instant (`Timestamp(µs, "UTC")`). The same
/// arrow casts as `CAST(CAST(naive AS Timestamp(tz)) AS Timestamp(UTC))`,
/// but opaque to the optimizer: DataFusion 55 unwraps such casts out of a
/// comparison with a UTC literal without the zone's shift, so `ordered_at IN
/// (…)` over the cast expression matched nothing outside UTC (exact
/// duplicate lines went unnoticed in Europe/Paris).
#[derive(Debug, PartialEq, Eq, Hash)]
struct FromLocal {
    timezone: String,
    signature: Signature,
}

impl ScalarUDFImpl for FromLocal {
    fn name(&self) -> &str {
        FROM_LOCAL
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("UTC".into()),
        ))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let input = args.args[0].to_array(args.number_rows)?;
        let naive = cast(&input, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
        let local = cast(
            &naive,
            &DataType::Timestamp(TimeUnit::Microsecond, Some(self.timezone.as_str().into())),
        )?;
        let utc = cast(
            &local,
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        )?;
        Ok(ColumnarValue::Array(utc))
    }
}

/// The name plans carry for [`from_local`].
pub const FROM_LOCAL: &str = "from_local";

fn from_local_udf(timezone: &str) -> ScalarUDF {
    ScalarUDF::from(FromLocal {
        timezone: timezone.to_string(),
        signature: Signature::any(1, Volatility::Immutable),
    })
}

/// The UTC instant of a naive local timestamp expression in `timezone`.
pub fn from_local(naive: Expr, timezone: Tz) -> Expr {
    from_local_udf(timezone.name()).call(vec![naive])
}

/// The name plans carry for [`local_date`].
pub const LOCAL_DATE: &str = "local_date";

fn local_date_udf(timezone: &str) -> ScalarUDF {
    ScalarUDF::from(LocalDate {
        timezone: timezone.to_string(),
        signature: Signature::any(1, Volatility::Immutable),
    })
}

/// The local date in `timezone` of a UTC timestamp expression.
pub fn local_date(instant: Expr, timezone: Tz) -> Expr {
    local_date_udf(timezone.name()).call(vec![instant])
}

/// `row_hash(c1, c2, …)`: a 64-bit hash of a whole row, for finding exact
/// duplicate lines cheaply: rows with different hashes are different, so a
/// table whose hashes are all distinct has no duplicate line. Equal hashes
/// are only candidates (the caller then compares the rows themselves).
#[derive(Debug, PartialEq, Eq, Hash)]
struct RowHash {
    signature: Signature,
}

impl ScalarUDFImpl for RowHash {
    fn name(&self) -> &str {
        ROW_HASH
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::UInt64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::common::hash_utils::{QualityRandomState, create_hashes};
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(args.number_rows))
            .collect::<Result<Vec<_>>>()?;
        let mut hashes = vec![0u64; args.number_rows];
        create_hashes(&arrays, &QualityRandomState::with_seed(0), &mut hashes)?;
        Ok(ColumnarValue::Array(Arc::new(UInt64Array::from(hashes))))
    }
}

/// The name plans carry for [`row_hash`].
pub const ROW_HASH: &str = "row_hash";

fn row_hash_udf() -> ScalarUDF {
    ScalarUDF::from(RowHash {
        signature: Signature::variadic_any(Volatility::Immutable),
    })
}

/// A hash of the row made of `columns`.
pub fn row_hash(columns: Vec<Expr>) -> Expr {
    row_hash_udf().call(columns)
}

/// How a distributed engine ships one of these functions to its workers:
/// the function's name and its parameter bytes (`None`: not one of ours).
#[cfg_attr(not(feature = "ballista"), allow(dead_code))]
pub fn encode_udf(udf: &ScalarUDF) -> Option<Vec<u8>> {
    let inner = udf.inner();
    if let Some(f) = inner.downcast_ref::<ParseLocalTimestamp>() {
        Some(f.format.as_bytes().to_vec())
    } else if let Some(f) = inner.downcast_ref::<LocalDate>() {
        Some(f.timezone.as_bytes().to_vec())
    } else if let Some(f) = inner.downcast_ref::<FromLocal>() {
        Some(f.timezone.as_bytes().to_vec())
    } else if inner.downcast_ref::<CanonicalText>().is_some()
        || inner.downcast_ref::<RowHash>().is_some()
    {
        Some(Vec::new())
    } else {
        None
    }
}

/// The function [`encode_udf`] encoded (`None`: not one of ours).
#[cfg_attr(not(feature = "ballista"), allow(dead_code))]
pub fn decode_udf(name: &str, parameter: &[u8]) -> Option<Result<ScalarUDF>> {
    let text = || {
        std::str::from_utf8(parameter).map_err(|e| {
            datafusion::error::DataFusionError::Internal(format!(
                "{name}: bad parameter bytes: {e}"
            ))
        })
    };
    match name {
        PARSE_LOCAL_TIMESTAMP => Some(text().map(parse_local_timestamp_udf)),
        LOCAL_DATE => Some(text().map(local_date_udf)),
        FROM_LOCAL => Some(text().map(from_local_udf)),
        CANONICAL_TEXT => Some(Ok(canonical_text_udf())),
        ROW_HASH => Some(Ok(row_hash_udf())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::ArrayRef;
    use datafusion::arrow::datatypes::Field;
    use datafusion::config::ConfigOptions;

    fn invoke(udf: &ScalarUDF, args: Vec<ArrayRef>) -> ArrayRef {
        let rows = args[0].len();
        let arg_types: Vec<DataType> = args.iter().map(|a| a.data_type().clone()).collect();
        #[allow(deprecated)]
        let return_type = udf.return_type(&arg_types).unwrap();
        let arg_fields = args
            .iter()
            .map(|a| Arc::new(Field::new("a", a.data_type().clone(), true)))
            .collect();
        let result = udf
            .invoke_with_args(ScalarFunctionArgs {
                args: args.into_iter().map(ColumnarValue::Array).collect(),
                arg_fields,
                number_rows: rows,
                return_field: Arc::new(Field::new("r", return_type, true)),
                config_options: Arc::new(ConfigOptions::default()),
            })
            .unwrap();
        result.to_array(rows).unwrap()
    }

    /// The date an independent path gives: Arrow's cast to a zoned timestamp
    /// then to a date (what the canonical views did before `local_date`).
    fn arrow_dates(instants: &TimestampMicrosecondArray, timezone: &str) -> Vec<Option<i32>> {
        let zoned = cast(
            instants,
            &DataType::Timestamp(TimeUnit::Microsecond, Some(timezone.into())),
        )
        .unwrap();
        let dates = cast(&zoned, &DataType::Date32).unwrap();
        dates
            .as_primitive::<datafusion::arrow::datatypes::Date32Type>()
            .iter()
            .collect()
    }

    #[test]
    fn local_dates_equal_arrow_casts_in_every_zone_kind() {
        // Every 7 minutes 13 s over 1969–1971 and 2023–2025 (DST changes of
        // both hemispheres, a half-hour zone, pre-epoch instants), plus nulls.
        let mut values: Vec<Option<i64>> = Vec::new();
        for start in [-31_536_000_000_000i64, 1_672_531_200_000_000] {
            let mut t = start;
            while t < start + 3 * 31_536_000_000_000 {
                values.push(Some(t));
                t += 433_000_000;
            }
        }
        values.push(None);
        let instants = TimestampMicrosecondArray::from(values).with_timezone("UTC");
        for timezone in [
            "UTC",
            "Europe/Paris",
            "America/New_York",
            "Australia/Sydney",
            "Asia/Kolkata",
            "Australia/Lord_Howe",
            "Etc/GMT-3",
        ] {
            let udf = local_date_udf(timezone);
            let ours = invoke(&udf, vec![Arc::new(instants.clone())]);
            let ours: Vec<Option<i32>> = ours
                .as_primitive::<datafusion::arrow::datatypes::Date32Type>()
                .iter()
                .collect();
            assert_eq!(ours, arrow_dates(&instants, timezone), "{timezone}");
        }
    }

    #[test]
    fn canonical_text_trims_spaces_and_empties_like_btrim() {
        let clean = StringArray::from(vec![Some("c1"), None, Some("a b")]);
        let udf = canonical_text_udf();
        let out = invoke(&udf, vec![Arc::new(clean.clone())]);
        assert_eq!(
            out.as_string::<i32>(),
            &clean,
            "nothing to clean: unchanged"
        );
        let messy = StringArray::from(vec![
            Some(" c1 "),
            Some(""),
            Some("   "),
            None,
            Some("\tc2"),
            Some("a b"),
        ]);
        let out = invoke(&udf, vec![Arc::new(messy)]);
        let expected = StringArray::from(vec![
            Some("c1"),
            None,
            None,
            None,
            Some("\tc2"),
            Some("a b"),
        ]);
        assert_eq!(out.as_string::<i32>(), &expected);
        let view = datafusion::arrow::array::StringViewArray::from(vec![Some(" x"), Some("")]);
        let out = invoke(&udf, vec![Arc::new(view)]);
        let expected = datafusion::arrow::array::StringViewArray::from(vec![Some("x"), None]);
        assert_eq!(out.as_string_view(), &expected, "views stay views");
    }

    #[test]
    fn equal_rows_hash_equal_and_the_hash_sees_every_column() {
        let ids = StringArray::from(vec!["c1", "c1", "c1", "c2"]);
        let amounts = datafusion::arrow::array::Int64Array::from(vec![5, 5, 6, 5]);
        let out = invoke(&row_hash_udf(), vec![Arc::new(ids), Arc::new(amounts)]);
        let hashes: Vec<u64> = out
            .as_primitive::<datafusion::arrow::datatypes::UInt64Type>()
            .values()
            .to_vec();
        assert_eq!(hashes[0], hashes[1]);
        assert_ne!(hashes[0], hashes[2]);
        assert_ne!(hashes[0], hashes[3]);
    }

    #[test]
    fn every_function_survives_encoding() {
        for udf in [
            parse_local_timestamp_udf("%d/%m/%Y"),
            local_date_udf("Europe/Paris"),
            from_local_udf("Europe/Paris"),
            canonical_text_udf(),
            row_hash_udf(),
        ] {
            let bytes = encode_udf(&udf).expect("one of ours");
            let decoded = decode_udf(udf.name(), &bytes).expect("known").unwrap();
            assert_eq!(decoded, udf);
        }
    }

    #[test]
    fn parses_french_dates() {
        let noon = chrono::NaiveDate::from_ymd_opt(2024, 6, 1)
            .unwrap()
            .and_hms_opt(12, 30, 0)
            .unwrap()
            .and_utc()
            .timestamp_micros();
        assert_eq!(parse("01/06/2024 12:30", "%d/%m/%Y %H:%M"), Some(noon));
        assert!(
            parse("01/06/2024", "%d/%m/%Y").is_some(),
            "a date alone is midnight"
        );
        assert_eq!(parse("2024-06-01 12:30", "%d/%m/%Y %H:%M"), None);
        assert_eq!(parse("31/02/2024 10:00", "%d/%m/%Y %H:%M"), None);
    }
}

//! SQL functions the engine adds for reading exports: none is registered in
//! the session, so user SQL cannot call them; the canonical views use them.

use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime};
use datafusion::arrow::array::{Array, AsArray, TimestampMicrosecondArray};
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
#[cfg_attr(not(feature = "ballista"), allow(dead_code))]
pub fn parse_local_timestamp_format(udf: &ScalarUDF) -> Option<&str> {
    udf.inner()
        .downcast_ref::<ParseLocalTimestamp>()
        .map(|f| f.format.as_str())
}

/// An expression parsing `text` with a chrono `format`.
pub fn parse_local_timestamp(text: Expr, format: &str) -> Expr {
    parse_local_timestamp_udf(format).call(vec![text])
}

#[cfg(test)]
mod tests {
    use super::parse;

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

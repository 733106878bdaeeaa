//! The typed parameters every SQL step can use (`$period_start`, …), bound as
//! DataFusion placeholders, never pasted into SQL text.

use std::collections::HashMap;

use chrono::NaiveDate;
use datafusion::common::ParamValues;
use datafusion::scalar::ScalarValue;

use crate::model::Period;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parameters {
    pub period: Period,
    pub window_months: u32,
    /// An ad hoc date range `[start, end]` (`segments compare --range`),
    /// both days included: it is then the window and the "period" (see
    /// [`Parameters::for_range`]). `None` for a calendar month.
    pub range: Option<(NaiveDate, NaiveDate)>,
}

fn date(value: NaiveDate) -> ScalarValue {
    ScalarValue::Date32(Some(crate::model::units::epoch_days(value)))
}

impl Parameters {
    pub fn new(period: Period, window_months: u32) -> Self {
        Self {
            period,
            window_months,
            range: None,
        }
    }

    /// Parameters for an ad hoc range `[start, end]`: `$window_start` and
    /// `$period_start` = start, `$period_end` = the day after end,
    /// `$as_of_date` = end, `$period` = `start..end` (text). `period` (for
    /// messages) is the month of `end`.
    pub fn for_range(start: NaiveDate, end: NaiveDate) -> Self {
        Self {
            period: Period::of_date(end),
            window_months: 0,
            range: Some((start, end)),
        }
    }

    /// `$period_end`: the first day after the period (or the range).
    pub fn period_end(&self) -> NaiveDate {
        match self.range {
            Some((_, end)) => end.succ_opt().expect("a date before the end of time"),
            None => self.period.end(),
        }
    }

    /// Names and values, as documented in the README.
    pub fn named(&self) -> Vec<(&'static str, ScalarValue)> {
        let period = self.period;
        if let Some((start, end)) = self.range {
            let after = end.succ_opt().expect("a date before the end of time");
            return vec![
                ("period", ScalarValue::Utf8(Some(format!("{start}..{end}")))),
                (
                    "previous_period",
                    ScalarValue::Utf8(Some(period.previous().to_string())),
                ),
                ("period_start", date(start)),
                ("period_end", date(after)),
                ("as_of_date", date(end)),
                ("window_start", date(start)),
            ];
        }
        vec![
            ("period", ScalarValue::Utf8(Some(period.to_string()))),
            (
                "previous_period",
                ScalarValue::Utf8(Some(period.previous().to_string())),
            ),
            ("period_start", date(period.start())),
            ("period_end", date(period.end())),
            ("as_of_date", date(period.as_of_date())),
            (
                "window_start",
                date(period.window_start(self.window_months)),
            ),
        ]
    }

    pub fn values(&self) -> ParamValues {
        self.with_extra(Vec::new())
    }

    /// The step parameters plus extra ones (output queries).
    pub fn with_extra(&self, extra: Vec<(&'static str, ScalarValue)>) -> ParamValues {
        let map: HashMap<String, ScalarValue> = self
            .named()
            .into_iter()
            .chain(extra)
            .map(|(name, value)| (name.to_string(), value))
            .collect();
        ParamValues::from(map)
    }
}

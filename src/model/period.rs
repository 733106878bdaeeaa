//! Calendar periods: the month a run classifies, its bounds in the business
//! timezone and the window before it. Everything date-like that SQL steps see
//! as bound parameters is derived here, in one place.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, Months, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;

/// Errors for a period given on the command line or found in a path.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeriodError {
    #[error(
        "'{input}' is not a period: expected YYYY-MM with a month from 01 to 12 (e.g. 2024-06)"
    )]
    Malformed { input: String },
    #[error(
        "period {period} is not complete yet in timezone {timezone} (the last complete month is {last_complete}); pass --period {last_complete} or earlier"
    )]
    NotComplete {
        period: Period,
        timezone: String,
        last_complete: Period,
    },
}

/// A calendar month, `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    year: i32,
    month: u32,
}

impl Period {
    pub fn new(year: i32, month: u32) -> Option<Self> {
        ((1..=12).contains(&month) && (1900..=9999).contains(&year)).then_some(Self { year, month })
    }

    pub fn year(self) -> i32 {
        self.year
    }

    pub fn month(self) -> u32 {
        self.month
    }

    /// First day of the month (inclusive lower bound).
    pub fn start(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).expect("validated month")
    }

    /// First day of the next month (exclusive upper bound).
    pub fn end(self) -> NaiveDate {
        self.start() + Months::new(1)
    }

    /// Last day of the month: the date scores are computed "as of".
    pub fn as_of_date(self) -> NaiveDate {
        self.end()
            .pred_opt()
            .expect("not the first day of the calendar")
    }

    /// Start of a window of `months` months ending at `end()` (exclusive).
    pub fn window_start(self, months: u32) -> NaiveDate {
        self.end() - Months::new(months)
    }

    pub fn previous(self) -> Self {
        self.add_months(-1)
    }

    pub fn next(self) -> Self {
        self.add_months(1)
    }

    pub fn add_months(self, delta: i32) -> Self {
        let index = self.year * 12 + self.month as i32 - 1 + delta;
        Self {
            year: index.div_euclid(12),
            month: index.rem_euclid(12) as u32 + 1,
        }
    }

    /// The period containing a date.
    pub fn of_date(date: NaiveDate) -> Self {
        Self {
            year: date.year(),
            month: date.month(),
        }
    }

    /// The calendar month before the current one in `timezone`.
    pub fn last_complete(timezone: Tz) -> Self {
        let today = timezone
            .from_utc_datetime(&Utc::now().naive_utc())
            .date_naive();
        Self::of_date(today).previous()
    }

    /// Refuse the current or a future month: its data is not complete.
    pub fn ensure_complete(self, timezone: Tz) -> Result<Self, PeriodError> {
        let last_complete = Self::last_complete(timezone);
        if self > last_complete {
            return Err(PeriodError::NotComplete {
                period: self,
                timezone: timezone.name().to_string(),
                last_complete,
            });
        }
        Ok(self)
    }

    /// Periods from `self` to `to`, both included.
    pub fn through(self, to: Period) -> impl Iterator<Item = Period> {
        let mut next = Some(self);
        std::iter::from_fn(move || {
            let current = next?;
            next = (current < to).then(|| current.next());
            Some(current).filter(|p| *p <= to)
        })
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Period {
    type Err = PeriodError;

    /// Strict: exactly `YYYY-MM`, digits only, so a period can never smuggle
    /// path segments into an object key.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let malformed = || PeriodError::Malformed {
            input: input.to_string(),
        };
        let bytes = input.as_bytes();
        if bytes.len() != 7 || bytes[4] != b'-' {
            return Err(malformed());
        }
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        let (year, month) = (&input[..4], &input[5..]);
        if !digits(year) || !digits(month) {
            return Err(malformed());
        }
        Period::new(
            year.parse().map_err(|_| malformed())?,
            month.parse().map_err(|_| malformed())?,
        )
        .ok_or_else(malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strictly() {
        assert_eq!(
            "2024-06".parse::<Period>().unwrap(),
            Period::new(2024, 6).unwrap()
        );
        for bad in [
            "2024-6",
            "2024-13",
            "2024-00",
            "24-06",
            "2024/06",
            "2024-06/..",
            " 2024-06",
            "2024-0a",
        ] {
            assert!(bad.parse::<Period>().is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn bounds_and_window() {
        let p: Period = "2024-02".parse().unwrap();
        assert_eq!(p.start(), NaiveDate::from_ymd_opt(2024, 2, 1).unwrap());
        assert_eq!(p.end(), NaiveDate::from_ymd_opt(2024, 3, 1).unwrap());
        assert_eq!(
            p.as_of_date(),
            NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()
        );
        assert_eq!(
            p.window_start(12),
            NaiveDate::from_ymd_opt(2023, 3, 1).unwrap()
        );
        assert_eq!(p.previous().to_string(), "2024-01");
        assert_eq!(
            "2024-01".parse::<Period>().unwrap().previous().to_string(),
            "2023-12"
        );
        assert_eq!(
            "2023-12".parse::<Period>().unwrap().next().to_string(),
            "2024-01"
        );
    }

    #[test]
    fn through_is_inclusive() {
        let from: Period = "2023-11".parse().unwrap();
        let to: Period = "2024-02".parse().unwrap();
        let all: Vec<String> = from.through(to).map(|p| p.to_string()).collect();
        assert_eq!(all, ["2023-11", "2023-12", "2024-01", "2024-02"]);
        assert_eq!(to.through(from).count(), 0);
    }

    #[test]
    fn future_periods_are_refused() {
        let next = Period::last_complete(Tz::UTC).next();
        assert!(next.ensure_complete(Tz::UTC).is_err());
        assert!(next.previous().ensure_complete(Tz::UTC).is_ok());
    }
}

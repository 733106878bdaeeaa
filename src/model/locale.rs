//! The locales the tool speaks: the published label columns (`label_en`,
//! `label_fr`), the BI views' labels and the report's language and number
//! formats all take one of these.

use std::fmt;

use serde::Deserialize;

/// A locale the tool publishes texts in. Adding one means adding its
/// `label_xx`/`description_xx` columns to `schemas/segment_definitions.json`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Deserialize,
    serde::Serialize,
    schemars::JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Locale {
    #[default]
    En,
    Fr,
}

impl Locale {
    /// Every supported locale, in fallback order: a text missing in a locale
    /// is taken from the first of these the job gives.
    pub const ALL: [Locale; 2] = [Locale::En, Locale::Fr];

    /// The ISO 639-1 code, also the suffix of the published columns.
    pub fn code(self) -> &'static str {
        match self {
            Locale::En => "en",
            Locale::Fr => "fr",
        }
    }

    pub fn parse(code: &str) -> Option<Locale> {
        Locale::ALL.into_iter().find(|l| l.code() == code)
    }

    pub fn codes() -> String {
        Locale::ALL.map(Locale::code).join(", ")
    }
}

impl fmt::Display for Locale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl std::str::FromStr for Locale {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Locale::parse(text).ok_or_else(|| {
            format!(
                "unknown locale '{text}': supported locales are {}",
                Locale::codes()
            )
        })
    }
}

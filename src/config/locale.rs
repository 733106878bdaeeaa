//! Locales of the human texts of a job: a segment's `label` and
//! `description` may be one string (the same in every locale) or one string
//! per locale (`label: {fr: Fidèles, en: Loyal}`). `segment_definitions`
//! publishes every locale (`label_en`, `label_fr`, …) and the BI views pick
//! the configured one (`locale:` in the config).

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

pub use crate::model::Locale;

/// A human text as written in a job: one string, or one per locale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextFile {
    Plain(String),
    PerLocale(BTreeMap<Locale, String>),
}

/// What the parser below accepts: a text, or a map from locale code to text.
impl schemars::JsonSchema for TextFile {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Text".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let locale = generator.subschema_for::<Locale>();
        schemars::json_schema!({
            "description": "One text, or one per locale (`{en: Loyal, fr: Fidèles}`).",
            "anyOf": [
                {"type": "string"},
                {
                    "type": "object",
                    "propertyNames": locale,
                    "additionalProperties": {"type": "string"},
                    "minProperties": 1,
                },
            ],
        })
    }
}

impl<'de> Deserialize<'de> for TextFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl<'de> Visitor<'de> for TextVisitor {
            type Value = TextFile;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(
                    f,
                    "a text, or one text per locale such as {{en: Loyal, fr: Fidèles}} (locales: {})",
                    Locale::codes()
                )
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<TextFile, E> {
                Ok(TextFile::Plain(value.to_string()))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TextFile, A::Error> {
                let mut texts = BTreeMap::new();
                while let Some(code) = map.next_key::<String>()? {
                    let locale: Locale = code.parse().map_err(de::Error::custom)?;
                    let text: String = map.next_value()?;
                    if texts.insert(locale, text).is_some() {
                        return Err(de::Error::custom(format!("locale '{code}' is given twice")));
                    }
                }
                if texts.is_empty() {
                    return Err(de::Error::custom(format!(
                        "no text: give at least one locale ({})",
                        Locale::codes()
                    )));
                }
                Ok(TextFile::PerLocale(texts))
            }
        }

        deserializer.deserialize_any(TextVisitor)
    }
}

/// A text resolved for every supported locale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Localized {
    /// The text in the first locale the job gives (English when it gives
    /// one); what the single `label`/`description` columns carry.
    pub default: String,
    by_locale: BTreeMap<Locale, String>,
}

impl Localized {
    /// The same text in every locale.
    pub fn plain(text: impl Into<String>) -> Localized {
        Localized {
            default: text.into(),
            by_locale: BTreeMap::new(),
        }
    }

    pub fn from_file(file: Option<&TextFile>, fallback: &str) -> Localized {
        match file {
            None => Localized::plain(fallback),
            Some(TextFile::Plain(text)) => Localized::plain(text.clone()),
            Some(TextFile::PerLocale(texts)) => Localized {
                default: Locale::ALL
                    .iter()
                    .find_map(|l| texts.get(l))
                    .cloned()
                    .unwrap_or_else(|| fallback.to_string()),
                by_locale: texts.clone(),
            },
        }
    }

    /// Whether the job gives this text in `locale` itself.
    pub fn has(&self, locale: Locale) -> bool {
        self.by_locale.contains_key(&locale)
    }

    /// The text in `locale`, or the default when the job gives none there.
    pub fn get(&self, locale: Locale) -> &str {
        self.by_locale.get(&locale).unwrap_or(&self.default)
    }
}

impl fmt::Display for Localized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Holder {
        label: TextFile,
    }

    #[test]
    fn parses_plain_and_per_locale_texts() {
        let plain: Holder = serde_yaml_ng::from_str("label: Loyal").unwrap();
        let texts = Localized::from_file(Some(&plain.label), "x");
        assert_eq!(
            (texts.get(Locale::Fr), texts.get(Locale::En)),
            ("Loyal", "Loyal")
        );

        let both: Holder = serde_yaml_ng::from_str("label: {fr: Fidèles, en: Loyal}").unwrap();
        let texts = Localized::from_file(Some(&both.label), "x");
        assert_eq!(texts.default, "Loyal");
        assert_eq!(texts.get(Locale::Fr), "Fidèles");

        let french: Holder = serde_yaml_ng::from_str("label:\n  fr: Perdus\n").unwrap();
        let texts = Localized::from_file(Some(&french.label), "x");
        assert_eq!(
            (texts.default.as_str(), texts.get(Locale::En)),
            ("Perdus", "Perdus")
        );
    }

    #[test]
    fn refuses_unknown_locales_with_their_line() {
        let error = serde_yaml_ng::from_str::<Holder>("label:\n  fr: Perdus\n  de: Verloren\n")
            .unwrap_err();
        let message = error.to_string();
        assert!(message.contains("unknown locale 'de'"), "{message}");
        // serde_yaml_ng locates a custom error at the start of the map.
        assert_eq!(error.location().map(|l| l.line()), Some(2));
        assert!(serde_yaml_ng::from_str::<Holder>("label: [a, b]").is_err());
        assert!(serde_yaml_ng::from_str::<Holder>("label: {}").is_err());
    }
}

//! `segments init`: a working project for a user's own export. Reads a
//! sample of the file ([`sniff`]), guesses the role of each column, and
//! writes a config whose every guess is visible: sure guesses mapped,
//! ambiguous ones commented out with their candidates, the other columns
//! as extra columns; plus a copy of the default job, its SQL, the JSON
//! Schemas and a `.gitignore`.

pub mod sniff;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub use sniff::{Guess, Sample, SniffError, sniff};

/// The files of a new project, as (path relative to the project, content).
const PROJECT_FILES: [(&str, &str); 6] = [
    (
        "jobs/rfm_monthly.yaml",
        include_str!("../../jobs/rfm_monthly.yaml"),
    ),
    ("sql/orders.sql", include_str!("../../sql/orders.sql")),
    (
        "sql/customer_metrics.sql",
        include_str!("../../sql/customer_metrics.sql"),
    ),
    (
        "sql/rfm_scores.sql",
        include_str!("../../sql/rfm_scores.sql"),
    ),
    (
        "schemas/job.schema.json",
        include_str!("../../schemas/job.schema.json"),
    ),
    (
        "schemas/config.schema.json",
        include_str!("../../schemas/config.schema.json"),
    ),
];

/// With a customer file: the job over its attributes, and its SQL.
const PROFILE_FILES: [(&str, &str); 2] = [
    (
        "jobs/profile_segments.yaml",
        include_str!("../../jobs/profile_segments.yaml"),
    ),
    (
        "sql/customer_profiles.sql",
        include_str!("../../sql/customer_profiles.sql"),
    ),
];

/// Attributes of a customer file under the names `jobs/profile_segments.yaml`
/// reads, and the column names that say them.
const CUSTOMER_ATTRIBUTES: [(&str, &[&str]); 5] = [
    ("region", &["region", "departement"]),
    ("city", &["ville", "city", "commune", "town"]),
    (
        "age_band",
        &["tranche_age", "classe_age", "age_group", "age", "tranche"],
    ),
    (
        "market",
        &["marche", "type_client", "segment_marche", "b2b", "b2c"],
    ),
    (
        "loyalty_member",
        &[
            "fidelite",
            "loyalty",
            "carte_fidelite",
            "programme_fidelite",
            "fidele",
        ],
    ),
];

/// Roles whose values are booleans.
const BOOLEAN_ROLES: [&str; 3] = ["email_opt_in", "sms_opt_in", "loyalty_member"];

/// How a boolean column is read: as it is when its values are booleans
/// arrow reads (true/false, yes/no, 1/0), or through a comparison when
/// they are French `oui`/`non` (`O`/`N`).
fn boolean_source(source: &str, values: &[String]) -> String {
    let french = values
        .iter()
        .filter(|v| !v.is_empty())
        .all(|v| matches!(v.to_lowercase().as_str(), "oui" | "non" | "o" | "n"))
        && values.iter().any(|v| !v.is_empty());
    if french {
        format!("lower(\"{source}\") IN ('oui', 'o')")
    } else {
        source.to_string()
    }
}

const GITIGNORE: &str =
    "# Written by `segments init`: what a run produces.\nwarehouse/\n*.duckdb\n";

/// Column names that say a role, normalised (lowercase, no accents, `_`).
/// The canonical name itself counts most, then an exact keyword, then a
/// keyword as one word of the name.
const TRANSACTION_ROLES: [(&str, &[&str]); 10] = [
    (
        "customer_id",
        &[
            "customer",
            "client",
            "id_client",
            "client_id",
            "num_client",
            "no_client",
            "n_client",
            "numero_client",
            "customer_number",
            "loyalty_card",
            "card",
            "carte",
            "carte_fidelite",
            "member",
            "membre",
            "cust",
        ],
    ),
    (
        "order_id",
        &[
            "order",
            "commande",
            "num_commande",
            "no_commande",
            "n_commande",
            "numero_commande",
            "n_ticket",
            "order_number",
            "ticket",
            "receipt",
            "invoice",
            "facture",
            "transaction_id",
            "transaction",
        ],
    ),
    (
        "ordered_at",
        &[
            "date",
            "datetime",
            "timestamp",
            "created_at",
            "order_date",
            "date_commande",
            "date_achat",
            "purchase_date",
            "time",
            "heure",
        ],
    ),
    (
        "amount",
        &[
            "montant",
            "total",
            "net_amount",
            "price",
            "prix",
            "revenue",
            "ca",
            "ttc",
            "montant_ttc",
            "sales",
            "value",
            "valeur",
        ],
    ),
    ("quantity", &["qty", "quantite", "qte", "units"]),
    (
        "product_id",
        &[
            "product",
            "produit",
            "sku",
            "article",
            "ean",
            "ref",
            "reference",
        ],
    ),
    ("category", &["categorie", "rayon", "famille", "department"]),
    ("channel", &["canal", "source"]),
    (
        "store_id",
        &[
            "store",
            "magasin",
            "shop",
            "boutique",
            "point_de_vente",
            "pos",
        ],
    ),
    ("discount_amount", &["discount", "remise", "reduction"]),
];

/// The roles a run needs.
const REQUIRED: [&str; 4] = ["customer_id", "order_id", "ordered_at", "amount"];

/// A name as the role keywords are written.
fn normalise(name: &str) -> String {
    let mut out = String::new();
    for c in name.to_lowercase().chars() {
        let c = match c {
            'à' | 'â' | 'ä' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'î' | 'ï' => 'i',
            'ô' | 'ö' => 'o',
            'ù' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            c if c.is_ascii_alphanumeric() => c,
            _ => '_',
        };
        if c == '_' && (out.is_empty() || out.ends_with('_')) {
            continue;
        }
        out.push(c);
    }
    out.trim_end_matches('_').to_string()
}

/// How well a column name says a role (0: not at all).
fn score(name: &str, role: &str, keywords: &[&str]) -> u8 {
    let name = normalise(name);
    if name == role {
        3
    } else if keywords.contains(&name.as_str()) {
        2
    } else if name.split('_').any(|word| keywords.contains(&word)) {
        1
    } else {
        0
    }
}

/// Whether a column's values fit a role.
fn values_fit(role: &str, values: &[String]) -> bool {
    let mut given = values.iter().filter(|v| !v.is_empty()).peekable();
    if given.peek().is_none() {
        return true;
    }
    match role {
        "amount" | "quantity" | "discount_amount" => given.all(|v| sniff::is_number(v)),
        "ordered_at" => {
            let values: Vec<&str> = given.map(String::as_str).collect();
            is_timestamp_column(&values)
        }
        // An id is neither a flag (`oui`/`non`: a "loyalty card" column
        // that says whether there is one) nor a date ("Date commande"
        // next to "N° commande").
        "customer_id" | "order_id" | "product_id" | "store_id" => {
            let values: Vec<&str> = given.map(String::as_str).collect();
            !values.iter().all(|v| is_flag(v)) && !is_timestamp_column(&values)
        }
        _ => true,
    }
}

/// Whether every value is a timestamp or date of one known format.
fn is_timestamp_column(values: &[&str]) -> bool {
    values.iter().all(|v| sniff::is_iso_timestamp(v)) || !sniff::formats_of(values).is_empty()
}

/// A value of a yes/no column.
fn is_flag(value: &str) -> bool {
    matches!(
        value.to_lowercase().as_str(),
        "oui"
            | "non"
            | "o"
            | "n"
            | "yes"
            | "no"
            | "y"
            | "true"
            | "false"
            | "t"
            | "f"
            | "vrai"
            | "faux"
    )
}

/// The role of each canonical column: the best-named column whose values
/// fit; several equally good ones are ambiguous. A column taken by a sure
/// role is not offered to a later one.
pub fn roles(sample: &Sample) -> Vec<(&'static str, Guess<String>)> {
    let mut taken: Vec<String> = Vec::new();
    TRANSACTION_ROLES
        .iter()
        .map(|(role, keywords)| (*role, best_column(sample, role, keywords, &mut taken)))
        .collect()
}

/// The best-named column for `role` among those not `taken` whose values
/// fit it; several equally good ones are ambiguous. A sure guess is added
/// to `taken`.
fn best_column(
    sample: &Sample,
    role: &str,
    keywords: &[&str],
    taken: &mut Vec<String>,
) -> Guess<String> {
    let scored: Vec<(u8, &String)> = sample
        .columns
        .iter()
        .filter(|(name, _)| !taken.contains(name))
        .filter(|(_, values)| values_fit(role, values))
        .map(|(name, _)| (score(name, role, keywords), name))
        .filter(|(s, _)| *s > 0)
        .collect();
    let best = scored.iter().map(|(s, _)| *s).max();
    let candidates: Vec<String> = scored
        .iter()
        .filter(|(s, _)| Some(*s) == best)
        .map(|(_, n)| (*n).clone())
        .collect();
    match candidates.as_slice() {
        [] => Guess::Unknown,
        [one] => {
            taken.push(one.clone());
            Guess::Sure(one.clone())
        }
        _ => Guess::Ambiguous(candidates),
    }
}

/// The type to declare for an extra column from its values: `None` for
/// text (the source's own type).
fn extra_type(values: &[String], sample: &Sample) -> Option<(&'static str, Option<String>)> {
    let given: Vec<&str> = values
        .iter()
        .filter(|v| !v.is_empty())
        .map(String::as_str)
        .collect();
    if given.is_empty() || sample.format == "parquet" {
        return None;
    }
    if given.iter().all(|v| v.parse::<i64>().is_ok()) {
        return Some(("integer", None));
    }
    if given.iter().all(|v| sniff::is_number(v)) {
        return Some(("number", None));
    }
    let formats = sniff::formats_of(&given);
    if formats.len() == 1 {
        return Some(("date", Some(formats[0].to_string())));
    }
    None
}

/// A source name as an extra column's name: lowercase letters, digits, `_`.
fn column_name(source: &str) -> String {
    let name = normalise(source);
    if name.chars().next().is_some_and(|c| c.is_ascii_digit()) || name.is_empty() {
        format!("col_{name}")
    } else {
        name
    }
}

/// A source column as a mapping: its name when it is one word (read as is),
/// else a quoted SQL identifier (`"N° client"`), which keeps its case.
fn source_expr(source: &str) -> String {
    if source.chars().all(|c| c.is_alphanumeric() || c == '_') {
        source.to_string()
    } else {
        format!("\"{}\"", source.replace('"', "\"\""))
    }
}

/// YAML text for a value: quoted when it is not a plain word.
fn quoted(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        && !text.is_empty()
    {
        text.to_string()
    } else {
        format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// What `init` guessed, for the user to check.
#[derive(Debug, Default)]
pub struct Report {
    pub files: Vec<PathBuf>,
    /// One line per guess: what was chosen and from what.
    pub guessed: Vec<String>,
    /// What the user must settle before a run.
    pub to_check: Vec<String>,
}

/// The `inputs.<name>` block of an input read from `file`, with comments.
fn input_block(
    name: &str,
    file: &Path,
    sample: &Sample,
    mapping: &[(&'static str, Guess<String>)],
    report: &mut Report,
) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "  {name}:");
    let _ = writeln!(text, "    url: {}", quoted(&file.display().to_string()));
    let _ = writeln!(text, "    format: {}", sample.format);
    if sample.format == "csv" {
        let _ = writeln!(text, "    csv:");
        let delimiter = sample.delimiter.unwrap_or(',');
        let shown = if delimiter == '\t' {
            "\\t".to_string()
        } else {
            delimiter.to_string()
        };
        let _ = writeln!(text, "      delimiter: \"{shown}\"");
        report.guessed.push(format!(
            "{name}: delimiter {shown:?} (splits every sampled line alike)"
        ));
        if sample.decimal_comma {
            let _ = writeln!(
                text,
                "      decimal: \",\"          # numbers such as 12,50"
            );
            report
                .guessed
                .push(format!("{name}: decimal comma (values such as 12,50)"));
        }
        match &sample.date_format {
            Guess::Sure(Some(format)) => {
                let _ = writeln!(text, "      date_format: {}", quoted(format));
                report
                    .guessed
                    .push(format!("{name}: timestamps written {format}"));
            }
            Guess::Ambiguous(candidates) => {
                let shown: Vec<String> = candidates.iter().flatten().cloned().collect();
                let _ = writeln!(
                    text,
                    "      # date_format: the sample fits several, pick one: {}",
                    shown.join(" or ")
                );
                for candidate in &shown {
                    let _ = writeln!(text, "      # date_format: {}", quoted(candidate));
                }
                report.to_check.push(format!(
                    "{name}: the dates fit {} (no day above 12 in the sample): uncomment the right `date_format`",
                    shown.join(" and ")
                ));
            }
            _ => {}
        }
    }
    if let Some(encoding) = sample.encoding.filter(|e| *e != "utf-8") {
        if sample.format == "csv" {
            let _ = writeln!(text, "      encoding: {encoding}");
        }
        report
            .guessed
            .push(format!("{name}: encoding {encoding} (not valid UTF-8)"));
    }
    let _ = writeln!(text, "    columns:");
    let mut mapped: Vec<String> = Vec::new();
    for (role, guess) in mapping {
        match guess {
            Guess::Sure(source) => {
                mapped.push(source.clone());
                let values = sample
                    .columns
                    .iter()
                    .find(|(n, _)| n == source)
                    .map(|(_, v)| v.as_slice())
                    .unwrap_or_default();
                let canonical = name == "transactions"
                    || ["customer_id", "email_opt_in", "sms_opt_in", "valid_from"].contains(role);
                if BOOLEAN_ROLES.contains(role) && !canonical {
                    let from = boolean_source(source, values);
                    let _ = writeln!(
                        text,
                        "      {role}: {{from: {}, type: boolean}}",
                        quoted(&from)
                    );
                } else if BOOLEAN_ROLES.contains(role) {
                    let _ = writeln!(
                        text,
                        "      {role}: {}",
                        quoted(&boolean_source(source, values))
                    );
                } else if *role == "valid_from" {
                    match extra_type(values, sample) {
                        Some(("date", Some(format))) => {
                            let _ = writeln!(
                                text,
                                "      # valid_from: dates written {format}, converted here"
                            );
                            let _ = writeln!(
                                text,
                                "      {role}: {}",
                                quoted(&format!("to_date(\"{source}\", '{format}')"))
                            );
                        }
                        _ => {
                            let _ =
                                writeln!(text, "      {role}: {}", quoted(&source_expr(source)));
                        }
                    }
                } else if source != role {
                    let _ = writeln!(text, "      {role}: {}", quoted(&source_expr(source)));
                } else {
                    let _ = writeln!(text, "      # {role}: read under its own name");
                }
                report
                    .guessed
                    .push(format!("{name}.{role}: column {source:?}"));
            }
            Guess::Ambiguous(candidates) => {
                let _ = writeln!(
                    text,
                    "      # {role}: several columns fit, uncomment one: {}",
                    candidates.join(", ")
                );
                for candidate in candidates {
                    let _ = writeln!(text, "      # {role}: {}", quoted(&source_expr(candidate)));
                }
                mapped.extend(candidates.iter().cloned());
                report.to_check.push(format!(
                    "{name}.{role}: columns {} all fit: uncomment the right one",
                    candidates.join(", ")
                ));
            }
            Guess::Unknown if REQUIRED.contains(role) || name != "transactions" => {
                let _ = writeln!(
                    text,
                    "      # {role}: no column found: map it (`{role}: <column or SQL expression>`)"
                );
                if name == "transactions" || *role == "customer_id" {
                    report.to_check.push(format!(
                        "{name}.{role}: no column looks like it: map it under `columns:`"
                    ));
                }
            }
            Guess::Unknown => {}
        }
    }
    let extras: Vec<&(String, Vec<String>)> = sample
        .columns
        .iter()
        .filter(|(n, _)| !mapped.contains(n))
        .collect();
    if !extras.is_empty() {
        let _ = writeln!(
            text,
            "      # The other columns of the file, as extra columns the steps can read:"
        );
    }
    for (source, values) in extras {
        let column = column_name(source);
        let value = match extra_type(values, sample) {
            None => quoted(&source_expr(source)),
            Some((kind, None)) => {
                format!("{{from: {}, type: {kind}}}", quoted(&source_expr(source)))
            }
            Some((kind, Some(format))) => format!(
                "{{from: {}, type: {kind}, format: {}}}",
                quoted(&source_expr(source)),
                quoted(&format)
            ),
        };
        let _ = writeln!(text, "      {column}: {value}");
    }
    text
}

/// The customer file's mapping: its id, consent flags, every other
/// column as an attribute.
fn customer_roles(sample: &Sample) -> Vec<(&'static str, Guess<String>)> {
    let (_, keywords) = TRANSACTION_ROLES[0];
    // The id may also be an attribute's best name: it is not `taken`.
    let id = best_column(sample, "customer_id", keywords, &mut Vec::new());
    let flag = |role: &'static str, words: &[&str], names: &[&str]| {
        let found: Vec<String> = sample
            .columns
            .iter()
            .filter(|(n, _)| {
                let n = normalise(n);
                n == role || words.iter().all(|w| n.contains(w)) || names.contains(&n.as_str())
            })
            .map(|(n, _)| n.clone())
            .collect();
        match found.as_slice() {
            [one] => Guess::Sure(one.clone()),
            [] => Guess::Unknown,
            _ => Guess::Ambiguous(found),
        }
    };
    let mut roles = vec![("customer_id", id)];
    let mut taken: Vec<String> = Vec::new();
    for (role, keywords) in CUSTOMER_ATTRIBUTES {
        let guess = best_column(sample, role, keywords, &mut taken);
        if guess != Guess::Unknown {
            roles.push((role, guess));
        }
    }
    for (role, words, names) in [
        ("email_opt_in", &["email", "opt"][..], &[][..]),
        ("sms_opt_in", &["sms", "opt"][..], &[][..]),
        (
            "valid_from",
            &["valid", "from"][..],
            &[
                "valable_depuis",
                "depuis",
                "date_effet",
                "debut_validite",
                "date_debut_validite",
                "effective_from",
                "effective_date",
                "since",
            ][..],
        ),
    ] {
        let guess = flag(role, words, names);
        if guess != Guess::Unknown {
            roles.push((role, guess));
        }
    }
    roles
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Sniff(#[from] SniffError),
    #[error("{0} exists and is not empty: give a new folder (nothing was written)")]
    NotEmpty(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Write a project in `dir` for the export `file` (and a customer file).
pub fn init(dir: &Path, file: &Path, customers: Option<&Path>) -> Result<Report, InitError> {
    if dir.exists()
        && std::fs::read_dir(dir)
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(true)
    {
        return Err(InitError::NotEmpty(dir.display().to_string()));
    }
    let absolute = |path: &Path| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut report = Report::default();
    let sample = sniff(file)?;
    let mapping = roles(&sample);
    let mut config = String::from(
        "# yaml-language-server: $schema=../schemas/config.schema.json\n\
         # Written by `segments init` from a sample of your export: check every\n\
         # line, then `segments validate` and `segments run --period YYYY-MM`.\n\
         # Every key: docs/reference/configuration.md (or the schema above).\n\
         warehouse: ./warehouse\n\
         # The business timezone: periods are its calendar months.\n\
         timezone: UTC\n\
         inputs:\n",
    );
    config.push_str(&input_block(
        "transactions",
        &absolute(file),
        &sample,
        &mapping,
        &mut report,
    ));
    if let Some(customers) = customers {
        let sample = sniff(customers)?;
        let mapping = customer_roles(&sample);
        config.push_str(&input_block(
            "customers",
            &absolute(customers),
            &sample,
            &mapping,
            &mut report,
        ));
    }
    config.push_str(
        "engine:\n  memory_limit: 2GiB\nquality:\n  # Exports move: set these from your own history.\n  max_active_customers_change: 0.5\n  max_revenue_change: 0.5\n",
    );
    report
        .to_check
        .push("timezone: UTC is written; set your business timezone (e.g. Europe/Paris)".into());
    let mut files: Vec<(String, String)> = vec![
        ("config/local.yaml".into(), config),
        (".gitignore".into(), GITIGNORE.into()),
    ];
    files.extend(
        PROJECT_FILES
            .iter()
            .chain(
                customers
                    .is_some()
                    .then_some(PROFILE_FILES.iter())
                    .into_iter()
                    .flatten(),
            )
            .map(|(p, c)| (p.to_string(), c.to_string())),
    );
    for (relative, content) in files {
        let path = dir.join(&relative);
        let write = |source| InitError::Write {
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write)?;
        }
        std::fs::write(&path, content).map_err(write)?;
        report.files.push(path);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(header: &str, rows: &[&str]) -> Sample {
        let text = format!("{header}\n{}\n", rows.join("\n"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.csv");
        std::fs::write(&path, text).unwrap();
        sniff(&path).unwrap()
    }

    #[test]
    fn french_column_names_find_their_roles() {
        let s = sample(
            "N° client;N° commande;Date achat;Montant TTC;Magasin;Mode paiement",
            &["c1;o1;03/06/2024 10:00;12,50;S01;CB"],
        );
        let roles = roles(&s);
        let get = |role: &str| roles.iter().find(|(r, _)| *r == role).unwrap().1.clone();
        assert_eq!(get("customer_id"), Guess::Sure("N° client".into()));
        assert_eq!(get("order_id"), Guess::Sure("N° commande".into()));
        assert_eq!(get("ordered_at"), Guess::Sure("Date achat".into()));
        assert_eq!(get("amount"), Guess::Sure("Montant TTC".into()));
        assert_eq!(get("store_id"), Guess::Sure("Magasin".into()));
    }

    /// Found on an export not made here: "Date commande" was offered as an
    /// order id beside "N° commande", and a "Carte fidélité" column of
    /// oui/non was taken as the customer file's id (an exact keyword:
    /// loyalty card numbers often are the id) over "N° client".
    #[test]
    fn an_id_is_neither_a_date_nor_a_flag() {
        let s = sample(
            "N° client;N° commande;Date commande;Montant TTC",
            &[
                "c1;o1;03/06/2024 10:00;12,50",
                "c2;o2;14/06/2024 11:00;3,00",
            ],
        );
        let roles = roles(&s);
        let get = |role: &str| roles.iter().find(|(r, _)| *r == role).unwrap().1.clone();
        assert_eq!(get("order_id"), Guess::Sure("N° commande".into()));
        assert_eq!(get("ordered_at"), Guess::Sure("Date commande".into()));
        let customers = sample(
            "N° client;Région;Carte fidélité;Optin email;Valable depuis",
            &["c1;Bretagne;oui;non;", "c2;Occitanie;non;oui;14/03/2025"],
        );
        let roles = customer_roles(&customers);
        let get = |role: &str| roles.iter().find(|(r, _)| *r == role).map(|r| r.1.clone());
        assert_eq!(get("customer_id"), Some(Guess::Sure("N° client".into())));
        assert_eq!(
            get("loyalty_member"),
            Some(Guess::Sure("Carte fidélité".into()))
        );
        assert_eq!(get("email_opt_in"), Some(Guess::Sure("Optin email".into())));
        assert_eq!(
            get("valid_from"),
            Some(Guess::Sure("Valable depuis".into()))
        );
        // A card column holding numbers is still an id.
        let cards = sample(
            "Carte fidélité;Région",
            &["4970001;Bretagne", "4970002;Corse"],
        );
        assert_eq!(
            customer_roles(&cards)[0].1,
            Guess::Sure("Carte fidélité".into())
        );
    }

    #[test]
    fn two_equally_good_columns_are_left_to_the_user() {
        let s = sample(
            "customer_id,order_id,order_date,delivery_date,amount",
            &["c1,o1,2024-06-03,2024-06-05,10"],
        );
        // `order_date` is a keyword (2), `delivery_date` only has the word
        // `date` (1): sure.
        assert_eq!(roles(&s)[2].1, Guess::Sure("order_date".into()));
        let s = sample(
            "client,date_a,date_b,total",
            &["c1,2024-06-03,2024-06-05,10"],
        );
        assert_eq!(
            roles(&s)[2].1,
            Guess::Ambiguous(vec!["date_a".into(), "date_b".into()])
        );
    }

    #[test]
    fn a_column_whose_values_do_not_fit_is_not_the_amount() {
        let s = sample("client,ticket,date,total", &["c1,o1,2024-06-03,n/a"]);
        assert_eq!(roles(&s)[3].1, Guess::Unknown);
    }
}

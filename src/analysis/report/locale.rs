//! The report's language and number formats: `en` (12,345.67 · 12.3%) and
//! `fr` (12 345,67 · 12,3 %, with a narrow no-break space between thousands,
//! as French typography and `Intl.NumberFormat("fr-FR")` write them).
//! Money has no currency symbol: the warehouse does not know the currency.

pub use crate::model::Locale;
use crate::model::Period;

/// U+202F NARROW NO-BREAK SPACE: the French thousands separator.
pub const NARROW_NBSP: char = '\u{202f}';

impl Locale {
    /// The `lang` attribute of the page.
    pub fn tag(self) -> &'static str {
        match self {
            Locale::En => "en",
            Locale::Fr => "fr",
        }
    }

    fn group(self) -> char {
        match self {
            Locale::En => ',',
            Locale::Fr => NARROW_NBSP,
        }
    }

    fn decimal(self) -> char {
        match self {
            Locale::En => '.',
            Locale::Fr => ',',
        }
    }

    /// A count: `12,345` / `12 345`.
    pub fn int(self, n: i64) -> String {
        let digits = n.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(self.group());
            }
            out.push(c);
        }
        if n < 0 { format!("−{out}") } else { out }
    }

    /// A count with its sign: `+12`, `−3`, `0`.
    pub fn signed_int(self, n: i64) -> String {
        if n > 0 {
            format!("+{}", self.int(n))
        } else {
            self.int(n)
        }
    }

    /// An amount in cents: `1,234.50` / `1 234,50`.
    pub fn money(self, cents: i128) -> String {
        let sign = if cents < 0 { "−" } else { "" };
        let abs = cents.unsigned_abs();
        let units = i64::try_from(abs / 100).unwrap_or(i64::MAX);
        format!(
            "{sign}{}{}{:02}",
            self.int(units),
            self.decimal(),
            abs % 100
        )
    }

    /// An amount in cents with its sign.
    pub fn signed_money(self, cents: i128) -> String {
        if cents > 0 {
            format!("+{}", self.money(cents))
        } else {
            self.money(cents)
        }
    }

    /// A number with `decimals` decimals.
    pub fn decimal_number(self, value: f64, decimals: usize) -> String {
        if !value.is_finite() {
            return "—".into();
        }
        let text = format!("{:.*}", decimals, value.abs());
        let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
        let whole: i64 = whole.parse().unwrap_or(0);
        let negative = value < 0.0 && text.chars().any(|c| c.is_ascii_digit() && c != '0');
        let mut out = String::new();
        if negative {
            out.push('−');
        }
        out.push_str(&self.int(whole));
        if !fraction.is_empty() {
            out.push(self.decimal());
            out.push_str(fraction);
        }
        out
    }

    /// A share in [0, 1] as a percentage with one decimal: `12.3%` / `12,3 %`.
    pub fn percent(self, share: f64) -> String {
        let number = self.decimal_number(share * 100.0, 1);
        match self {
            Locale::En => format!("{number}%"),
            Locale::Fr => format!("{number}{NARROW_NBSP}%"),
        }
    }

    /// A period as words: `December 2025` / `décembre 2025`.
    pub fn period(self, period: Period) -> String {
        const EN: [&str; 12] = [
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ];
        const FR: [&str; 12] = [
            "janvier",
            "février",
            "mars",
            "avril",
            "mai",
            "juin",
            "juillet",
            "août",
            "septembre",
            "octobre",
            "novembre",
            "décembre",
        ];
        let names = match self {
            Locale::En => EN,
            Locale::Fr => FR,
        };
        format!(
            "{} {}",
            names[(period.month() as usize).saturating_sub(1) % 12],
            period.year()
        )
    }

    /// A short period label for chart axes: `Dec 25` / `déc. 25`.
    pub fn short_period(self, period: Period) -> String {
        const EN: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        const FR: [&str; 12] = [
            "janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.",
            "nov.", "déc.",
        ];
        let names = match self {
            Locale::En => EN,
            Locale::Fr => FR,
        };
        format!(
            "{} {:02}",
            names[(period.month() as usize).saturating_sub(1) % 12],
            period.year() % 100
        )
    }

    /// The text of a user-facing phrase.
    pub fn text(self, key: Text) -> &'static str {
        let (en, fr) = key.pair();
        match self {
            Locale::En => en,
            Locale::Fr => fr,
        }
    }
}

macro_rules! texts {
    ($($name:ident => $en:literal, $fr:literal;)*) => {
        /// Every phrase of the report, in each language.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Text { $($name,)* }
        impl Text {
            fn pair(self) -> (&'static str, &'static str) {
                match self { $(Text::$name => ($en, $fr),)* }
            }
        }
    };
}

texts! {
    Title => "Segmentation report", "Rapport de segmentation";
    Job => "Job", "Traitement";
    Period => "Period", "Période";
    ComparedWith => "compared with", "comparée à";
    NoComparison => "no earlier published period to compare with", "aucune période publiée antérieure à comparer";
    Contents => "Contents", "Sommaire";
    GridTitle => "R×F grid", "Grille R×F";
    GridIntro => "Customers per recency score (rows, 5 = most recent) and frequency score (columns, 5 = most frequent), coloured by their segment.", "Clients par score de récence (lignes, 5 = le plus récent) et de fréquence (colonnes, 5 = le plus fréquent), colorés selon leur segment.";
    GridUnscored => "customers without scores (no purchase in the window) are not in the grid", "clients sans score (aucun achat dans la fenêtre), hors grille";
    GridNotApplicable => "Not applicable: this job publishes no R and F scores.", "Sans objet : ce traitement ne publie pas de scores R et F.";
    Recency => "Recency score", "Score de récence";
    Frequency => "Frequency score", "Score de fréquence";
    Segment => "Segment", "Segment";
    Segments => "Segments", "Segments";
    Audience => "Audience", "Audience";
    AudiencesTitle => "Audience sizes", "Taille des audiences";
    AudiencesIntro => "Audiences overlap: one customer may be in several, so the sizes do not add up to the number of contacts.", "Les audiences se recoupent : un client peut appartenir à plusieurs, les tailles ne s'additionnent donc pas.";
    SizesTitle => "Segment sizes, revenue and average basket", "Taille, chiffre d'affaires et panier moyen des segments";
    Customers => "Customers", "Clients";
    Share => "Share", "Part";
    Revenue => "Revenue", "Chiffre d'affaires";
    Orders => "Orders", "Commandes";
    AvgBasket => "Average basket", "Panier moyen";
    Delta => "Δ", "Δ";
    Total => "Total", "Total";
    MatrixTitle => "Migrations", "Migrations";
    MatrixIntro => "Where the customers of each segment of the previous period are now. Rows: previous segment; columns: current segment; each cell gives the customers and the share of its row.", "Où sont passés les clients de chaque segment de la période précédente. Lignes : segment précédent ; colonnes : segment actuel ; chaque cellule donne les clients et la part de sa ligne.";
    MatrixFirstPeriod => "No earlier period: every customer is new in this period.", "Aucune période antérieure : tous les clients sont nouveaux sur cette période.";
    Heatmap => "Migration matrix (heatmap)", "Matrice de migration (carte de chaleur)";
    Sankey => "Flows between segments (Sankey diagram)", "Flux entre segments (diagramme de Sankey)";
    FlowsTable => "The flows as a table", "Les flux sous forme de tableau";
    From => "From", "De";
    To => "To", "Vers";
    ShareOfFrom => "Share of row", "Part de la ligne";
    New => "(new)", "(nouveaux)";
    Removed => "(removed)", "(retirés)";
    HistoryTitle => "Sizes over the last published periods", "Tailles sur les dernières périodes publiées";
    HistoryOnlyOne => "Only this period is published so far.", "Seule cette période est publiée pour l'instant.";
    FactsTitle => "Run facts", "Faits de l'exécution";
    RunId => "Run id", "Identifiant d'exécution";
    PublishedAt => "Published at", "Publiée le";
    RowsRead => "Rows read", "Lignes lues";
    RowsUsed => "Rows used", "Lignes utilisées";
    RowsAnonymous => "Anonymous rows (no customer)", "Lignes anonymes (sans client)";
    RowsRejected => "Rows rejected", "Lignes rejetées";
    RejectReason => "Reject reason", "Motif de rejet";
    PeriodRevenue => "Revenue of the period (all lines)", "Chiffre d'affaires de la période (toutes lignes)";
    IdentificationRate => "Identification rate", "Taux d'identification";
    FromSide => "Previous side of the migrations", "Côté précédent des migrations";
    Gates => "Data-quality gates", "Contrôles de qualité";
    Gate => "Gate", "Contrôle";
    Limit => "Limit (current config)", "Seuil (configuration actuelle)";
    Status => "Status", "Statut";
    Passed => "passed", "réussi";
    Allowed => "failed, published with --allow-gate", "échoué, publié avec --allow-gate";
    Thresholds => "Score thresholds", "Seuils des scores";
    Metric => "Metric", "Mesure";
    Score => "Score", "Score";
    Min => "Min", "Min";
    Max => "Max", "Max";
    Rules => "Rule versions", "Versions des règles";
    JobVersion => "Job version", "Version du traitement";
    RuleHash => "Rule hash", "Empreinte des règles";
    JobHash => "Job hash", "Empreinte du traitement";
    Rank => "Rank", "Rang";
    Rule => "Rule", "Règle";
    Versions => "Software", "Logiciels";
    NotPublished => "Not applicable: the job does not publish this table for this period.", "Sans objet : le traitement ne publie pas cette table pour cette période.";
    NoManifest => "No run facts: the period's manifest is not available.", "Pas de faits d'exécution : le manifeste de la période est absent.";
    ChartAlt => "Chart; the same figures are in the table next to it.", "Graphique ; les mêmes chiffres figurent dans le tableau voisin.";
    Footer => "Generated by segments from the published tables. Self-contained page: no network access.", "Produit par segments à partir des tables publiées. Page autonome : aucun accès réseau.";
    Previous => "previous", "précédente";
    Current => "current", "actuelle";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers_per_locale() {
        assert_eq!(Locale::En.int(1234567), "1,234,567");
        assert_eq!(Locale::Fr.int(1234567), "1\u{202f}234\u{202f}567");
        assert_eq!(Locale::En.int(-12), "−12");
        assert_eq!(Locale::En.money(123456), "1,234.56");
        assert_eq!(Locale::Fr.money(-5), "−0,05");
        assert_eq!(Locale::En.percent(0.1234), "12.3%");
        assert_eq!(Locale::Fr.percent(0.5), "50,0\u{202f}%");
        assert_eq!(Locale::Fr.decimal_number(1234.5, 1), "1\u{202f}234,5");
        assert_eq!(Locale::En.signed_int(3), "+3");
        assert_eq!(
            Locale::Fr.period("2025-12".parse().unwrap()),
            "décembre 2025"
        );
    }
}

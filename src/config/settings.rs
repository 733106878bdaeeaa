//! `config/*.yaml`: where data lives and how to run — warehouse URL, input
//! URLs, formats and column mappings, timezone, engine and memory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::{ConfigError, Problem};
use super::yaml;
use crate::model::units::parse_bytes;

/// Logical input names a job may declare (docs/design.md §2).
pub const KNOWN_INPUTS: [&str; 6] = [
    "transactions",
    "events",
    "products",
    "sales_calendar",
    "customer_aliases",
    "customers",
];

/// A config file (`config/*.yaml`): where the data is and how to run.
/// `${VAR}` anywhere is replaced by the environment variable `VAR`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "segments config")]
pub(super) struct ConfigFile {
    /// Path or URL of the output root: a local path, `file://`, `s3://`,
    /// `gs://`, `az://` or `abfss://`; or a map `{url, format}` whose
    /// `format: delta` publishes Delta Lake tables instead of Hive Parquet.
    #[schemars(extend("x-docs" = "guides/object-storage.md"))]
    warehouse: WarehouseFile,
    /// Business timezone (IANA name, e.g. `Europe/Paris`): periods are its
    /// calendar months and naive timestamps are read in it.
    #[serde(default = "default_timezone")]
    #[schemars(extend("x-docs" = "reference/configuration.md#timestamps-and-variables"))]
    timezone: String,
    /// Language of the labels the BI views of `segments catalog` show.
    #[serde(default)]
    #[schemars(extend("x-docs" = "guides/bi.md"))]
    locale: super::locale::Locale,
    /// One input per logical name: `transactions` (required), `events`,
    /// `products`, `sales_calendar`, `customer_aliases`, `customers`.
    #[schemars(extend("x-docs" = "guides/writing-jobs.md#optional-inputs"))]
    inputs: BTreeMap<String, InputFile>,
    /// The query engine, its memory and its spill files.
    #[serde(default)]
    engine: EngineFile,
    /// Data-quality gates: a run that fails one publishes nothing (exit 3).
    #[serde(default)]
    #[schemars(extend("x-docs" = "troubleshooting.md#gates"))]
    quality: QualitySettings,
    /// How object stores are reached: endpoint, credentials, retries, lease.
    #[serde(default)]
    #[schemars(extend("x-docs" = "guides/object-storage.md"))]
    storage: crate::storage::StorageSettings,
    /// The HTML report published with each run: `true` (English) or
    /// `{enabled: true, locale: fr}`; off when absent.
    #[serde(default)]
    #[schemars(extend("x-docs" = "guides/report.md#published-with-each-run"))]
    report: ReportFile,
    /// Completeness checks of a period's input before a run (exit 5 when
    /// not ready); no check when absent.
    #[serde(default)]
    #[schemars(extend("x-docs" = "guides/lifecycle.md#readiness-and-consent"))]
    readiness: super::lifecycle::ReadinessSettings,
    /// What a run deletes from the warehouse; nothing when absent.
    #[serde(default)]
    #[schemars(extend("x-docs" = "guides/lifecycle.md#retention"))]
    retention: super::lifecycle::RetentionSettings,
    /// Where `segments run` pushes its outcome (a Prometheus Pushgateway);
    /// no push when absent.
    #[serde(default)]
    #[schemars(extend("x-docs" = "guides/metrics.md"))]
    metrics: crate::metrics::MetricsSettings,
    /// Where `segments run` and `segments backfill` send OpenLineage run
    /// events (an HTTP endpoint or a file); none when absent, unless the
    /// `OPENLINEAGE_*` variables set a destination.
    #[serde(default)]
    #[schemars(extend("x-docs" = "guides/lineage.md"))]
    lineage: crate::lineage::LineageSettings,
}

fn default_timezone() -> String {
    "UTC".into()
}

/// One input of a config.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct InputFile {
    /// A folder (ending in `/`) or one file, local or on object storage.
    url: String,
    /// The files' format.
    format: InputFormat,
    /// Hive partition columns in the folder names, read as text: `[month]`
    /// for `month=2024-01/`. A late file must land in the folder of the
    /// oldest month it holds rows for.
    #[serde(default)]
    #[schemars(extend("x-docs" = "guides/lifecycle.md#late-data-and-restatement"))]
    partition_columns: Vec<String>,
    /// Column → source column name or SQL expression over the source
    /// columns (`amount: "net_amount / 100"`), or `{from, type, format}`.
    /// Unmapped canonical columns are read under their own name; any other
    /// name is an extra column that reaches the steps (`payment_method:
    /// mode_paiement`), typed as in the source unless `type` is given.
    #[serde(default)]
    #[schemars(extend("x-docs" = "guides/writing-jobs.md#your-own-columns"))]
    columns: BTreeMap<String, ColumnFile>,
    /// How a `format: csv` input is read.
    #[serde(default)]
    csv: Option<CsvOptions>,
}

/// One entry of an input's `columns:`: a source column or SQL expression,
/// or a map naming the type.
#[derive(Debug)]
enum ColumnFile {
    Source(String),
    Typed(TypedColumnFile),
}

/// `columns.<name>` as a map.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct TypedColumnFile {
    /// Source column or SQL expression; default: the source column of the
    /// same name.
    #[serde(default)]
    from: Option<String>,
    /// The column's type (extra columns only: canonical columns have
    /// theirs). A value that does not parse is a reject of
    /// `transactions` (`unparseable_<column>`) and null in other inputs.
    #[serde(rename = "type", default)]
    data_type: Option<ColumnType>,
    /// chrono format of a `date` or `timestamp` written as text, e.g.
    /// `%d/%m/%Y`; default: the input's `csv.date_format`, else ISO 8601.
    #[serde(default)]
    format: Option<String>,
}

impl<'de> Deserialize<'de> for ColumnFile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ColumnFile;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(
                    "a source column or SQL expression, or a map with `from`, `type` and `format`",
                )
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<ColumnFile, E> {
                Ok(ColumnFile::Source(value.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<ColumnFile, A::Error> {
                TypedColumnFile::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(ColumnFile::Typed)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// What the parser above accepts.
impl JsonSchema for ColumnFile {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ColumnFile".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let typed = generator.subschema_for::<TypedColumnFile>();
        schemars::json_schema!({"anyOf": [{"type": "string"}, typed]})
    }
}

/// The type of an extra column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// Text (surrounding spaces removed, empty text is null).
    Text,
    /// A 64-bit integer.
    Integer,
    /// A decimal with 2 digits after the point, as `amount` (the input's
    /// `csv.decimal` applies).
    Decimal,
    /// A floating-point number (the input's `csv.decimal` applies).
    Number,
    /// `true`/`false` (also `yes`/`no`, `1`/`0`).
    Boolean,
    /// A calendar date.
    Date,
    /// An instant, read as a local time in the business timezone when it
    /// has no offset.
    Timestamp,
}

impl ColumnType {
    /// As written in YAML.
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Text => "text",
            ColumnType::Integer => "integer",
            ColumnType::Decimal => "decimal",
            ColumnType::Number => "number",
            ColumnType::Boolean => "boolean",
            ColumnType::Date => "date",
            ColumnType::Timestamp => "timestamp",
        }
    }

    /// The Arrow type of the column in the canonical view.
    pub fn data_type(self) -> DataType {
        match self {
            ColumnType::Text => DataType::Utf8,
            ColumnType::Integer => DataType::Int64,
            ColumnType::Decimal => DataType::Decimal128(18, 2),
            ColumnType::Number => DataType::Float64,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }
}

/// A column of an input beyond its canonical ones (`columns:` of the
/// config): it reaches the steps under `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraColumn {
    pub name: String,
    /// Source column or SQL expression; `None`: the source column `name`.
    pub source: Option<String>,
    /// `None`: the source column's own type.
    pub data_type: Option<ColumnType>,
    /// chrono format of a date or timestamp written as text.
    pub format: Option<String>,
}

/// The format of an input's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    Parquet,
    Csv,
    Ndjson,
}

/// How a CSV input is read.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CsvOptions {
    /// Field delimiter, e.g. `";"`.
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
    /// The first line is a header.
    #[serde(default = "default_true")]
    pub header: bool,
    /// Decimal separator of numbers in the file: `.` or `,` (French exports: `12,50`).
    #[serde(default = "default_decimal")]
    pub decimal: char,
    /// chrono format of timestamps written as text, e.g. `%d/%m/%Y %H:%M`;
    /// ISO 8601 when absent. Read as local times in the business timezone.
    #[serde(default)]
    pub date_format: Option<String>,
    /// Text encoding of the files (not with a remote Ballista scheduler).
    #[serde(default)]
    pub encoding: Encoding,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: ',',
            header: true,
            decimal: '.',
            date_format: None,
            encoding: Encoding::Utf8,
        }
    }
}

fn default_decimal() -> char {
    '.'
}

/// Text encoding of CSV/NDJSON files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum Encoding {
    #[default]
    #[serde(rename = "utf-8", alias = "utf8", alias = "UTF-8")]
    Utf8,
    /// ISO-8859-1, read as its superset Windows-1252.
    #[serde(
        rename = "latin-1",
        alias = "latin1",
        alias = "iso-8859-1",
        alias = "ISO-8859-1"
    )]
    Latin1,
    #[serde(rename = "windows-1252", alias = "cp1252")]
    Windows1252,
}

/// Data-quality gates (docs/design.md §7): a run that fails one publishes nothing
/// and exits with code 3, unless the operator allows that gate by name.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QualitySettings {
    /// Largest share of rejected input rows (`reject_ratio` gate).
    #[serde(default = "default_max_reject_ratio")]
    pub max_reject_ratio: f64,
    /// Largest relative change of the period's active customers against the
    /// previous period (`active_customers_change` gate).
    #[serde(default = "default_max_change")]
    pub max_active_customers_change: f64,
    /// Largest relative change of the period's revenue (`revenue_change` gate).
    #[serde(default = "default_max_change")]
    pub max_revenue_change: f64,
    /// Reject exact duplicate lines as `duplicate_line` (a run counts each
    /// line once either way).
    #[schemars(extend("x-docs" = "troubleshooting.md#bad-rows"))]
    #[serde(default = "default_true")]
    pub reject_duplicates: bool,
}

impl Default for QualitySettings {
    fn default() -> Self {
        QualitySettings {
            max_reject_ratio: default_max_reject_ratio(),
            max_active_customers_change: default_max_change(),
            max_revenue_change: default_max_change(),
            reject_duplicates: true,
        }
    }
}

fn default_max_reject_ratio() -> f64 {
    0.05
}

fn default_max_change() -> f64 {
    0.5
}

fn default_delimiter() -> char {
    ','
}

fn default_true() -> bool {
    true
}

/// The config's `engine:` section.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct EngineFile {
    /// Where queries run: `ballista` needs a binary built with
    /// `--features ballista`.
    #[serde(default)]
    #[schemars(extend("x-docs" = "guides/ballista.md"))]
    kind: EngineKind,
    /// The DataFusion memory pool, e.g. `2GiB`, `512MiB`; operators spill
    /// beyond it. Unlimited when absent.
    #[serde(default)]
    #[schemars(extend("x-docs" = "guides/deploying.md#memory-rule"))]
    memory_limit: Option<String>,
    /// Where spill files go (a disk, never a tmpfs); default: the system's
    /// temporary directory.
    #[serde(default)]
    spill_dir: Option<String>,
    /// How spill files are compressed.
    #[serde(default)]
    spill_compression: SpillCompression,
    /// DataFusion's partitions; default: the machine's cores. In a
    /// container keep it equal to the CPU request.
    #[serde(default)]
    #[schemars(extend("x-docs" = "guides/deploying.md#memory-rule"))]
    target_partitions: Option<usize>,
    /// `kind: ballista` only: `df://host:port` of the scheduler, or
    /// `standalone` for a scheduler and executor inside this process.
    #[serde(default)]
    #[schemars(extend("x-docs" = "guides/ballista.md"))]
    scheduler_url: Option<String>,
}

/// Where queries run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    #[default]
    Local,
    /// Apache Ballista (docs/design.md §8); needs the `ballista` cargo feature.
    Ballista,
}

/// How operators compress what they spill to `spill_dir`. Aggregation
/// states (sorted ids) compress several times over; a run over a billion
/// lines spills tens of GiB uncompressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SpillCompression {
    /// Fast, about 2× smaller (the default).
    #[default]
    Lz4,
    /// Smaller than lz4 for more CPU: for a small spill disk.
    Zstd,
    /// As in memory: when the disk is large and the CPU is short.
    None,
}

/// Where the Ballista engine runs the queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheduler {
    /// A scheduler and one executor started inside this process, sharing its
    /// object stores, memory pool and spill directory (tests, development).
    Standalone,
    /// A remote scheduler, `df://host:port` (port 50050 when absent).
    Remote { host: String, port: u16 },
}

impl std::fmt::Display for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scheduler::Standalone => f.write_str("standalone"),
            Scheduler::Remote { host, port } => write!(f, "df://{host}:{port}"),
        }
    }
}

/// Parse `engine.scheduler_url`: `standalone` or `df://host[:port]`.
pub fn parse_scheduler_url(value: &str) -> Result<Scheduler, String> {
    let value = value.trim();
    if value == "standalone" {
        return Ok(Scheduler::Standalone);
    }
    let usage =
        "write df://host:port (e.g. df://segments-ballista-scheduler:50050) or `standalone`";
    let Some(rest) = value.strip_prefix("df://") else {
        return Err(format!("'{value}' is not a scheduler URL: {usage}"));
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => match port.parse::<u16>() {
            Ok(port) if port > 0 => (host, port),
            _ => return Err(format!("'{value}': bad port '{port}': {usage}")),
        },
        None => (rest, 50050),
    };
    if host.is_empty() || host.contains(['/', '@', '?', '#']) {
        return Err(format!("'{value}': bad host: {usage}"));
    }
    Ok(Scheduler::Remote {
        host: host.to_string(),
        port,
    })
}

#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub kind: EngineKind,
    /// Set when `kind` is `Ballista`.
    pub scheduler: Option<Scheduler>,
    pub memory_limit: Option<usize>,
    pub spill_dir: Option<PathBuf>,
    pub spill_compression: SpillCompression,
    pub target_partitions: Option<usize>,
}

/// One configured input source.
#[derive(Debug, Clone)]
pub struct Input {
    pub name: String,
    /// Absolute URL (`file:///…`, `s3://…`); a directory URL ends with `/`.
    pub url: String,
    pub format: InputFormat,
    pub partition_columns: Vec<String>,
    /// Canonical column → source column or SQL expression.
    pub columns: BTreeMap<String, String>,
    /// The mapped columns beyond the canonical ones, in name order.
    pub extra_columns: Vec<ExtraColumn>,
    pub csv: CsvOptions,
}

/// `report:` — the HTML report published with each run, at
/// `<warehouse>/<job>/report/period=YYYY-MM/index.html`. Either a boolean
/// (`report: true`, English) or a map (`report: {enabled: true, locale: fr}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportSettings {
    pub enabled: bool,
    pub locale: crate::model::Locale,
}

/// `report:` as a map.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ReportMap {
    /// Publish the report with each run.
    #[serde(default = "default_true")]
    enabled: bool,
    /// Language and number format of the report.
    #[serde(default)]
    locale: crate::model::Locale,
}

#[derive(Debug, Default)]
struct ReportFile(ReportSettings);

/// What the parser below accepts: a boolean or a [`ReportMap`].
impl JsonSchema for ReportFile {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ReportFile".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let map = generator.subschema_for::<ReportMap>();
        schemars::json_schema!({
            "anyOf": [{"type": "boolean"}, map],
            "default": false,
        })
    }
}

impl<'de> Deserialize<'de> for ReportFile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ReportFile;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, false or a map with `enabled` (boolean) and `locale` (en or fr)")
            }
            fn visit_bool<E: serde::de::Error>(self, enabled: bool) -> Result<ReportFile, E> {
                Ok(ReportFile(ReportSettings {
                    enabled,
                    locale: Default::default(),
                }))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<ReportFile, A::Error> {
                let map =
                    ReportMap::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(ReportFile(ReportSettings {
                    enabled: map.enabled,
                    locale: map.locale,
                }))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// How the warehouse stores the output tables (`warehouse.format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TableFormat {
    /// One Parquet file per table partition, `period=YYYY-MM/part-0.parquet`.
    #[default]
    Hive,
    /// Delta Lake tables partitioned by `period` (docs/guides/delta.md).
    Delta,
}

/// `warehouse:` — the output root and the form of its tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSettings {
    pub format: TableFormat,
    /// Delta only: how long files that no table version still uses are kept
    /// before the retention's VACUUM deletes them (readers of an older
    /// version, time travel).
    pub vacuum_after: std::time::Duration,
}

/// Delta's own default for `delta.deletedFileRetentionDuration`: 7 days.
pub const DEFAULT_VACUUM_AFTER: &str = "168h";

impl Default for TableSettings {
    fn default() -> Self {
        Self {
            format: TableFormat::Hive,
            vacuum_after: crate::storage::settings::parse_duration(DEFAULT_VACUUM_AFTER)
                .expect("a valid default duration"),
        }
    }
}

/// `warehouse:` as a map.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WarehouseMap {
    /// Path or URL of the output root (as `warehouse: <url>`).
    url: String,
    /// `hive` (default): Parquet files in `period=YYYY-MM` folders;
    /// `delta`: a Delta Lake table per output table, a period published by
    /// one commit per table.
    #[serde(default)]
    #[schemars(extend("x-docs" = "guides/delta.md"))]
    format: TableFormat,
    /// `format: delta` only: files no table version uses any more are
    /// deleted by the run's retention (VACUUM) this long after they were
    /// replaced (`48h`, `168h`; at least `1h`); default 168h, Delta's own.
    #[serde(default)]
    #[schemars(extend("default" = DEFAULT_VACUUM_AFTER))]
    vacuum_after: Option<String>,
}

#[derive(Debug)]
struct WarehouseFile {
    url: String,
    format: TableFormat,
    vacuum_after: Option<String>,
}

/// What the parser below accepts: a URL or a [`WarehouseMap`].
impl JsonSchema for WarehouseFile {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "WarehouseFile".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let map = generator.subschema_for::<WarehouseMap>();
        schemars::json_schema!({
            "anyOf": [{"type": "string"}, map],
        })
    }
}

impl<'de> Deserialize<'de> for WarehouseFile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = WarehouseFile;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a path or URL, or a map with `url` and `format` (hive or delta)")
            }
            fn visit_str<E: serde::de::Error>(self, url: &str) -> Result<WarehouseFile, E> {
                Ok(WarehouseFile {
                    url: url.to_string(),
                    format: TableFormat::Hive,
                    vacuum_after: None,
                })
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<WarehouseFile, A::Error> {
                let map =
                    WarehouseMap::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(WarehouseFile {
                    url: map.url,
                    format: map.format,
                    vacuum_after: map.vacuum_after,
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A config after both parsing phases.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    /// Absolute warehouse URL, ending with `/`.
    pub warehouse: String,
    /// The form of the warehouse's tables (`warehouse.format`).
    pub tables: TableSettings,
    pub timezone: Tz,
    /// Language of the labels the BI views show: `en` (default) or `fr`.
    pub locale: super::locale::Locale,
    pub inputs: BTreeMap<String, Input>,
    pub engine: EngineSettings,
    /// How object stores are reached (region, endpoint, retries, lease).
    pub storage: crate::storage::StorageSettings,
    pub quality: QualitySettings,
    /// The HTML report published with each run (`report:`).
    pub report: ReportSettings,
    /// Completeness checks before a run (exit 5 when not ready).
    pub readiness: super::lifecycle::ReadinessSettings,
    /// What a run deletes from the warehouse.
    pub retention: super::lifecycle::RetentionSettings,
    /// Where `segments run` pushes its outcome (`metrics:`).
    pub metrics: crate::metrics::MetricsSettings,
    /// Where the OpenLineage run events go (`lineage:`).
    pub lineage: crate::lineage::LineageSettings,
}

/// A canonical column of an input (docs/design.md §2): what steps can rely on.
#[derive(Debug, Clone)]
pub struct CanonicalColumn {
    pub name: &'static str,
    pub data_type: DataType,
    pub required: bool,
}

/// (timestamp column, local date column) of an input whose canonical view
/// adds the local date of its timestamp.
pub fn date_column_of(input: &str) -> Option<(&'static str, &'static str)> {
    match input {
        "transactions" => Some(("ordered_at", "ordered_date")),
        "events" => Some(("occurred_at", "occurred_date")),
        _ => None,
    }
}

/// The derived date columns of every input: no extra column may take them.
fn date_column_names() -> [&'static str; 2] {
    ["ordered_date", "occurred_date"]
}

/// Canonical columns of a logical input.
pub fn canonical_columns(input: &str) -> Vec<CanonicalColumn> {
    let utc = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let money = || DataType::Decimal128(18, 2);
    let column = |name, data_type, required| CanonicalColumn {
        name,
        data_type,
        required,
    };
    match input {
        "transactions" => vec![
            column("customer_id", DataType::Utf8, true),
            column("order_id", DataType::Utf8, true),
            column("ordered_at", utc(), true),
            column("amount", money(), true),
            column("quantity", DataType::Int64, false),
            column("product_id", DataType::Utf8, false),
            column("category", DataType::Utf8, false),
            column("channel", DataType::Utf8, false),
            column("store_id", DataType::Utf8, false),
            column("discount_amount", money(), false),
        ],
        "events" => vec![
            column("customer_id", DataType::Utf8, true),
            column("event_type", DataType::Utf8, true),
            column("occurred_at", utc(), true),
            column("product_id", DataType::Utf8, false),
        ],
        "products" => vec![
            column("product_id", DataType::Utf8, true),
            column("category", DataType::Utf8, false),
            column("list_price", money(), false),
        ],
        "sales_calendar" => vec![
            column("name", DataType::Utf8, true),
            column("starts_at", utc(), true),
            column("ends_at", utc(), true),
            column("kind", DataType::Utf8, false),
        ],
        // Identity merges: `customer_id` (the old id) is the same customer as
        // `surviving_id` in every period ending after `effective_date`.
        "customer_aliases" => vec![
            column("customer_id", DataType::Utf8, true),
            column("surviving_id", DataType::Utf8, true),
            column("effective_date", DataType::Date32, true),
        ],
        // Attributes of customers and contacts (any extra column: region,
        // age band, …), consent flags for `segments export --channel`, and
        // `valid_from`: a row holds from that date on (a period sees each
        // customer's latest row dated before its end; undated rows always).
        "customers" => vec![
            column("customer_id", DataType::Utf8, true),
            column("email_opt_in", DataType::Boolean, false),
            column("sms_opt_in", DataType::Boolean, false),
            column("valid_from", DataType::Date32, false),
        ],
        _ => Vec::new(),
    }
}

/// Turn a path or URL from a config into an absolute URL. Relative paths are
/// relative to the current directory, like every command-line tool.
pub fn absolute_url(value: &str, directory: bool) -> Result<String, String> {
    let mut url = if let Some((scheme, _)) = value.split_once("://") {
        match scheme {
            "file" | "s3" | "gs" | "az" | "abfss" | "memory" => value.to_string(),
            other => {
                return Err(format!(
                    "unsupported URL scheme '{other}://': use file://, s3://, gs://, az:// or abfss://, or a local path"
                ));
            }
        }
    } else {
        let path = Path::new(value);
        let absolute = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|e| format!("cannot resolve relative path: {e}"))?
                .join(path)
        };
        let normalized = normalize(&absolute);
        url::Url::from_file_path(&normalized)
            .map_err(|_| format!("'{value}' is not a usable local path"))?
            .to_string()
    };
    if directory && !url.ends_with('/') {
        url.push('/');
    }
    Ok(url)
}

/// Remove `.` and `..` components lexically, so the warehouse prefix is
/// exact and keys can be checked against it.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// One entry of `inputs`: a known input, canonical columns, a usable URL and
/// CSV options that make sense. `None` when it cannot be used at all.
fn check_input(
    name: String,
    input: InputFile,
    problem: &mut impl FnMut(String, &str, String),
) -> Option<Input> {
    let key = format!("inputs.{name}");
    // Any other name is an input of a job's own (`custom_inputs`), unless it
    // is a typo of a known one.
    let identifier = is_identifier(&name) && !name.starts_with('_');
    let near = KNOWN_INPUTS
        .iter()
        .find(|known| **known != name && looks_like(&name, known));
    if !KNOWN_INPUTS.contains(&name.as_str()) && (!identifier || near.is_some()) {
        let hint = near.map_or(String::new(), |known| format!(" (did you mean '{known}'?)"));
        problem(
            key.clone(),
            &format!("{name}:"),
            format!(
                "unknown input '{name}'{hint}; known inputs are {}, and a job's own inputs (`custom_inputs`) are named with lowercase letters, digits and _",
                KNOWN_INPUTS.join(", ")
            ),
        );
        return None;
    }
    let canonical = canonical_columns(&name);
    let mut columns = BTreeMap::new();
    let mut extra_columns = Vec::new();
    for (column, mapping) in input.columns {
        let column_key = format!("{key}.columns.{column}");
        let needle = format!("{column}:");
        let (source, data_type, date_format) = match mapping {
            ColumnFile::Source(source) => (Some(source), None, None),
            ColumnFile::Typed(typed) => (typed.from, typed.data_type, typed.format),
        };
        if let Some(format) = &date_format {
            let broken = chrono::format::StrftimeItems::new(format)
                .any(|item| matches!(item, chrono::format::Item::Error));
            if broken || !matches!(data_type, Some(ColumnType::Date | ColumnType::Timestamp)) {
                problem(
                    format!("{column_key}.format"),
                    "format:",
                    format!(
                        "'{format}' must be a chrono format (e.g. %d/%m/%Y) of a column of `type: date` or `type: timestamp`"
                    ),
                );
            }
        }
        if canonical.iter().any(|c| c.name == column) {
            if data_type.is_some() {
                problem(
                    format!("{column_key}.type"),
                    &needle,
                    format!(
                        "'{column}' is a canonical column of {name}: its type is fixed; remove `type`"
                    ),
                );
            }
            if let Some(source) = source {
                columns.insert(column, source);
            }
            continue;
        }
        let reserved = date_column_names().contains(&column.as_str()) || column.starts_with("__");
        if reserved || !is_identifier(&column) {
            let names: Vec<_> = canonical.iter().map(|c| c.name).collect();
            problem(
                column_key,
                &needle,
                format!(
                    "'{column}' cannot be an extra column of {name}: use lowercase letters, digits and _, not starting with __ nor one of the derived dates (ordered_date, occurred_date); the canonical columns are {}",
                    names.join(", ")
                ),
            );
            continue;
        }
        // A typo of a canonical name would otherwise pass as an extra column
        // (and the canonical one be read under its own name).
        if let Some(near) = canonical.iter().find(|c| looks_like(&column, c.name)) {
            problem(
                column_key,
                &needle,
                format!(
                    "'{column}' is not a canonical column of {name} but looks like `{}`: map `{}`, or give the extra column a name of its own",
                    near.name, near.name
                ),
            );
            continue;
        }
        extra_columns.push(ExtraColumn {
            name: column,
            source,
            data_type,
            format: date_format,
        });
    }
    let is_directory =
        input.url.ends_with('/') || !input.url.rsplit('/').next().unwrap_or("").contains('.');
    let url = match absolute_url(&input.url, is_directory) {
        Ok(url) => url,
        Err(message) => {
            problem(format!("{key}.url"), "url:", message);
            return None;
        }
    };
    if let Some(csv) = &input.csv {
        if !csv.delimiter.is_ascii() {
            problem(
                format!("{key}.csv.delimiter"),
                "delimiter:",
                format!(
                    "delimiter {:?} must be one ASCII character such as ; or ,",
                    csv.delimiter
                ),
            );
        }
        if csv.decimal != '.' && csv.decimal != ',' {
            problem(
                format!("{key}.csv.decimal"),
                "decimal:",
                format!("decimal separator {:?} must be \".\" or \",\"", csv.decimal),
            );
        }
        if let Some(format) = &csv.date_format {
            let broken = chrono::format::StrftimeItems::new(format)
                .any(|item| matches!(item, chrono::format::Item::Error));
            if broken {
                problem(
                    format!("{key}.csv.date_format"),
                    "date_format:",
                    format!("'{format}' is not a valid chrono format: write e.g. %d/%m/%Y %H:%M"),
                );
            }
        }
    }
    if input.format != InputFormat::Csv && input.csv.is_some() {
        problem(
            format!("{key}.csv"),
            "csv:",
            "csv options are only for `format: csv`".into(),
        );
    }
    Some(Input {
        name,
        url,
        format: input.format,
        partition_columns: input.partition_columns,
        columns,
        extra_columns,
        csv: input.csv.unwrap_or_default(),
    })
}

/// A name of the warehouse or the SQL: lowercase letters, digits and `_`,
/// not starting with a digit.
pub(super) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Whether `name` looks like a typo of `canonical`: a prefix of it, or one
/// edit (a letter added, removed, changed or two swapped) away.
fn looks_like(name: &str, canonical: &str) -> bool {
    if canonical.starts_with(name) && name.len() >= 3 {
        return true;
    }
    let (a, b): (Vec<char>, Vec<char>) = (name.chars().collect(), canonical.chars().collect());
    if a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (rest_a, rest_b) = (a.len() - prefix - suffix, b.len() - prefix - suffix);
    let swapped =
        rest_a == 2 && rest_b == 2 && a[prefix] == b[prefix + 1] && a[prefix + 1] == b[prefix];
    (rest_a.max(rest_b) <= 1) || swapped
}

/// `engine.memory_limit`: a size of at least 16 MiB.
fn check_memory_limit(
    text: Option<&str>,
    problem: &mut impl FnMut(String, &str, String),
) -> Option<usize> {
    match text {
        None => None,
        Some(text_value) => match parse_bytes(text_value) {
            Some(bytes) if bytes >= 16 * 1024 * 1024 => Some(bytes),
            _ => {
                problem(
                    "engine.memory_limit".into(),
                    "memory_limit:",
                    format!(
                        "'{text_value}' is not a usable memory limit: write e.g. 512MiB or 4GiB (at least 16MiB)"
                    ),
                );
                None
            }
        },
    }
}

/// `quality`: every threshold a finite, non-negative share.
fn check_quality(quality: &QualitySettings, problem: &mut impl FnMut(String, &str, String)) {
    for (key, value) in [
        ("max_reject_ratio", quality.max_reject_ratio),
        (
            "max_active_customers_change",
            quality.max_active_customers_change,
        ),
        ("max_revenue_change", quality.max_revenue_change),
    ] {
        if !(value >= 0.0 && value.is_finite()) {
            problem(
                format!("quality.{key}"),
                &format!("{key}:"),
                format!("{value} is not a share: write e.g. 0.05 for 5%"),
            );
        }
    }
}

/// Semantic checks of `engine` for `kind: ballista`: the binary has the
/// engine, the scheduler URL parses, and nothing in the config needs this
/// process's memory when the executors are remote.
fn check_engine(
    file: &ConfigFile,
    problem: &mut impl FnMut(String, &str, String),
) -> Option<Scheduler> {
    let engine = &file.engine;
    match engine.kind {
        EngineKind::Local => {
            if engine.scheduler_url.is_some() {
                problem(
                    "engine.scheduler_url".into(),
                    "scheduler_url:",
                    "only used with `engine.kind: ballista`; remove it or set the kind".into(),
                );
            }
            None
        }
        EngineKind::Ballista if !cfg!(feature = "ballista") => {
            problem(
                "engine.kind".into(),
                "kind:",
                "`ballista` needs a segments binary built with the Ballista engine: \
                 cargo build --features ballista (or use `kind: local`)"
                    .into(),
            );
            None
        }
        EngineKind::Ballista => {
            let Some(url) = &engine.scheduler_url else {
                problem(
                    "engine.scheduler_url".into(),
                    "kind:",
                    "`engine.kind: ballista` needs `engine.scheduler_url`: df://host:port of \
                     the scheduler, or `standalone` for one inside this process"
                        .into(),
                );
                return None;
            };
            let scheduler = match parse_scheduler_url(url) {
                Ok(scheduler) => scheduler,
                Err(message) => {
                    problem("engine.scheduler_url".into(), "scheduler_url:", message);
                    return None;
                }
            };
            if scheduler != Scheduler::Standalone {
                for (name, input) in &file.inputs {
                    let encoding = input.csv.as_ref().map(|c| c.encoding).unwrap_or_default();
                    if encoding != Encoding::Utf8 {
                        problem(
                            format!("inputs.{name}.csv.encoding"),
                            "encoding:",
                            format!(
                                "input '{name}' is transcoded to UTF-8 in this process's memory, \
                                 which remote Ballista executors cannot read; convert the export \
                                 to UTF-8 (or Parquet), or run it with `engine.kind: local` \
                                 or `engine.scheduler_url: standalone`"
                            ),
                        );
                    }
                }
            }
            Some(scheduler)
        }
    }
}

impl Config {
    /// Read a config file, interpolating `${VAR}` from the environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, |name| std::env::var(name).ok())
    }

    pub fn load_with_env(
        path: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let raw = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let literal_secrets = crate::storage::settings::literal_secret_problems(path, &raw);
        if !literal_secrets.is_empty() {
            return Err(ConfigError::Invalid(literal_secrets));
        }
        let text = yaml::interpolate(path, &raw, env).map_err(ConfigError::Invalid)?;
        let file: ConfigFile =
            yaml::parse(path, &text).map_err(|p| ConfigError::Invalid(vec![p]))?;
        Self::check(path, &text, file)
    }

    fn check(path: &Path, text: &str, file: ConfigFile) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let mut problem = |key: String, needle: &str, message: String| {
            problems.push(Problem {
                file: path.to_path_buf(),
                key,
                line: yaml::line_of(text, needle, 1),
                column: None,
                message,
            });
        };

        let warehouse = absolute_url(&file.warehouse.url, true).unwrap_or_else(|message| {
            problem("warehouse".into(), "warehouse:", message);
            String::new()
        });
        let mut tables = TableSettings {
            format: file.warehouse.format,
            ..TableSettings::default()
        };
        if let Some(text) = &file.warehouse.vacuum_after {
            if file.warehouse.format != TableFormat::Delta {
                problem(
                    "warehouse.vacuum_after".into(),
                    "vacuum_after:",
                    "applies to Delta tables only: add `format: delta`, or remove it".into(),
                );
            }
            match crate::storage::settings::parse_duration(text) {
                // A Full VACUUM deletes files no commit names yet: those of a
                // run between its upload and its commit must be younger.
                Some(duration) if duration < std::time::Duration::from_secs(3600) => problem(
                    "warehouse.vacuum_after".into(),
                    "vacuum_after:",
                    format!(
                        "'{text}' is too short: at least 1h, so that VACUUM never deletes a file that a run has uploaded and not yet committed"
                    ),
                ),
                Some(duration) => tables.vacuum_after = duration,
                None => problem(
                    "warehouse.vacuum_after".into(),
                    "vacuum_after:",
                    format!("'{text}' is not a duration: write e.g. 48h or 168h"),
                ),
            }
        }
        let timezone: Tz = file.timezone.parse().unwrap_or_else(|_| {
            problem(
                "timezone".into(),
                "timezone:",
                format!(
                    "unknown timezone '{}': use an IANA name such as UTC or Europe/Paris",
                    file.timezone
                ),
            );
            Tz::UTC
        });
        let scheduler = check_engine(&file, &mut problem);

        let mut inputs = BTreeMap::new();
        for (name, input) in file.inputs {
            if let Some(input) = check_input(name, input, &mut problem) {
                inputs.insert(input.name.clone(), input);
            }
        }

        let memory_limit = check_memory_limit(file.engine.memory_limit.as_deref(), &mut problem);
        check_quality(&file.quality, &mut problem);
        if file.engine.target_partitions == Some(0) {
            problem(
                "engine.target_partitions".into(),
                "target_partitions:",
                "must be at least 1".into(),
            );
        }

        for (key, message) in file
            .readiness
            .check()
            .into_iter()
            .chain(file.retention.check())
        {
            let needle = format!("{}:", key.rsplit('.').next().unwrap_or(""));
            problem(key, &needle, message);
        }
        for (key, message) in file.metrics.check() {
            problem(key, "pushgateway_url:", message);
        }
        for (key, message) in file.lineage.check() {
            let needle = format!("{}:", key.rsplit('.').next().unwrap_or("lineage"));
            problem(key, &needle, message);
        }
        for (key, message) in file.storage.check() {
            let needle = format!("{}:", key.rsplit('.').next().unwrap_or("storage"));
            problem(key, &needle, message);
        }

        if !problems.is_empty() {
            return Err(ConfigError::Invalid(problems));
        }
        Ok(Config {
            path: path.to_path_buf(),
            warehouse,
            tables,
            timezone,
            locale: file.locale,
            inputs,
            engine: EngineSettings {
                kind: file.engine.kind,
                scheduler,
                memory_limit,
                spill_dir: file.engine.spill_dir.map(PathBuf::from),
                spill_compression: file.engine.spill_compression,
                target_partitions: file.engine.target_partitions,
            },
            storage: file.storage,
            quality: file.quality,
            report: file.report.0,
            readiness: file.readiness,
            retention: file.retention,
            metrics: file.metrics,
            lineage: file.lineage,
        })
    }

    /// What of the config changes a classification (for the rule hash): the
    /// column mappings of every input.
    /// Only the inputs a run of a job reading `inputs` reads (those, and
    /// `customer_aliases`, which applies to every job): an input added to
    /// the config for another job does not change this job's rules.
    pub fn mapping_material(&self, inputs: &[String]) -> Vec<(String, String)> {
        self.inputs
            .values()
            .filter(|input| input.name == "customer_aliases" || inputs.contains(&input.name))
            .map(|input| {
                let mut mapping: Vec<String> = input
                    .columns
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                // Extra columns only when there are some, so that the hash
                // of a config without them is what it always was.
                mapping.extend(input.extra_columns.iter().map(|extra| {
                    format!(
                        "+{}={}:{:?}:{}",
                        extra.name,
                        extra.source.as_deref().unwrap_or(""),
                        extra.data_type,
                        extra.format.as_deref().unwrap_or("")
                    )
                }));
                (input.name.clone(), mapping.join("\n"))
            })
            .collect()
    }

    /// Check that the config provides every input a job declares.
    /// Also that it maps every column of the job's own inputs, with the
    /// declared type when it gives one.
    pub fn check_inputs_for(&self, job: &super::Job) -> Result<(), ConfigError> {
        let job_path = &job.path;
        let problem = |key: String, message: String| Problem {
            file: self.path.clone(),
            key,
            line: None,
            column: None,
            message,
        };
        let mut missing: Vec<Problem> = job
            .inputs
            .iter()
            .filter(|input| !self.inputs.contains_key(*input))
            .map(|input| problem(
                format!("inputs.{input}"),
                format!("job {} reads input '{input}' but this config does not say where it is; add `inputs.{input}` with a url and format", job_path.display()),
            ))
            .collect();
        for (name, columns) in &job.custom_inputs {
            let Some(input) = self.inputs.get(name) else {
                continue;
            };
            for (column, declared) in columns {
                match input.extra_columns.iter().find(|e| &e.name == column) {
                    None => missing.push(problem(
                        format!("inputs.{name}.columns.{column}"),
                        format!("job {} reads `{column}` ({}) from its input '{name}': map it, e.g. `{column}: {{from: <source column>, type: {}}}`", job_path.display(), declared.name(), declared.name()),
                    )),
                    Some(extra) if extra.data_type.is_some_and(|t| t != *declared) => missing.push(problem(
                        format!("inputs.{name}.columns.{column}.type"),
                        format!("job {} declares `{column}` of '{name}' as {}, this config types it {}: make them agree", job_path.display(), declared.name(), extra.data_type.map(ColumnType::name).unwrap_or_default()),
                    )),
                    Some(_) => {}
                }
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(missing))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_of_canonical_names_are_caught() {
        for (name, canonical) in [
            ("customer", "customer_id"),
            ("amout", "amount"),
            ("ammount", "amount"),
            ("ordred_at", "ordered_at"),
            ("amuont", "amount"),
        ] {
            assert!(looks_like(name, canonical), "{name} ~ {canonical}");
        }
        for (name, canonical) in [
            ("payment_method", "amount"),
            ("margin", "channel"),
            ("region", "order_id"),
            ("am", "amount"),
        ] {
            assert!(!looks_like(name, canonical), "{name} !~ {canonical}");
        }
    }

    fn engine_problems(engine: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(
            &path,
            format!(
                "warehouse: ./w\ninputs:\n  transactions:\n    url: ./d/\n    format: csv\n    csv:\n      encoding: latin-1\nengine:\n{engine}"
            ),
        )
        .unwrap();
        match Config::load_with_env(&path, |_| None) {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid(problems)) => problems
                .into_iter()
                .map(|p| format!("{}: {}", p.key, p.message))
                .collect(),
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn the_ballista_engine_is_checked_when_the_config_is_read() {
        let problems = engine_problems("  kind: ballista\n  scheduler_url: standalone\n");
        if cfg!(feature = "ballista") {
            assert!(problems.is_empty(), "{problems:?}");
            let problems = engine_problems("  kind: ballista\n");
            assert!(
                problems[0].starts_with("engine.scheduler_url: "),
                "{problems:?}"
            );
            let problems = engine_problems("  kind: ballista\n  scheduler_url: http://x:1\n");
            assert!(problems[0].contains("df://host:port"), "{problems:?}");
            let problems = engine_problems("  kind: ballista\n  scheduler_url: df://x:1\n");
            assert!(
                problems[0].starts_with("inputs.transactions.csv.encoding: "),
                "{problems:?}"
            );
        } else {
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(
                problems[0].starts_with("engine.kind: ")
                    && problems[0].contains("cargo build --features ballista"),
                "{problems:?}"
            );
        }
        let problems = engine_problems("  kind: local\n  scheduler_url: df://x:1\n");
        assert!(
            problems[0].starts_with("engine.scheduler_url: "),
            "{problems:?}"
        );
    }

    #[test]
    fn spill_compression_is_lz4_unless_the_config_says() {
        let load = |engine: &str| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("config.yaml");
            std::fs::write(
                &path,
                format!("warehouse: ./w\ninputs:\n  transactions:\n    url: ./d/\n    format: parquet\nengine:\n{engine}"),
            )
            .unwrap();
            Config::load_with_env(&path, |_| None).map(|c| c.engine.spill_compression)
        };
        assert_eq!(load("  kind: local\n").unwrap(), SpillCompression::Lz4);
        assert_eq!(
            load("  spill_compression: zstd\n").unwrap(),
            SpillCompression::Zstd
        );
        assert_eq!(
            load("  spill_compression: none\n").unwrap(),
            SpillCompression::None
        );
        let error = load("  spill_compression: brotli\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("config.yaml:7:") && error.contains("brotli") && error.contains("`lz4`"),
            "{error}"
        );
    }

    #[test]
    fn scheduler_urls() {
        assert_eq!(parse_scheduler_url("standalone"), Ok(Scheduler::Standalone));
        assert_eq!(
            parse_scheduler_url("df://segments-ballista-scheduler:50050"),
            Ok(Scheduler::Remote {
                host: "segments-ballista-scheduler".into(),
                port: 50050
            })
        );
        assert_eq!(
            parse_scheduler_url("df://10.0.0.3").map(|s| s.to_string()),
            Ok("df://10.0.0.3:50050".into())
        );
        assert!(parse_scheduler_url("df://host:http").is_err());
        assert!(parse_scheduler_url("grpc://host:1").is_err());
    }

    #[test]
    fn relative_paths_become_file_urls() {
        let url = absolute_url("warehouse/../out", true).unwrap();
        assert!(
            url.starts_with("file:///") && url.ends_with("/out/"),
            "{url}"
        );
        assert!(absolute_url("ftp://x/y", false).is_err());
    }
}

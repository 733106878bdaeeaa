//! `segments catalog`: the DDL that registers the published tables of every
//! job in a query engine (DuckDB, Trino, Spark, Athena, BigQuery), plus the
//! views BI tools read. Everything here is text generation from the jobs and
//! the checked-in table contracts (`schemas/*.json`, whose column
//! descriptions become column comments); nothing reads data.
//!
//! Per job `J` and table `T` the DDL declares:
//! - `J_T_raw`: every partition present in storage (an external table; a
//!   DuckDB view over `read_parquet`), incomplete periods included;
//! - `J_published_periods`: the complete periods;
//! - `J_T`: the rows of complete periods only (what BI tools should read);
//! - `J_T_latest`: the rows of the last complete period;
//! - analytic views with the configured locale's labels: for a segments job
//!   `J_latest`, `J_segment_trend`, `J_migration_flows`,
//!   `J_customer_history`; for an audiences job `J_latest` and
//!   `J_audience_trend`.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use datafusion::arrow::datatypes::DataType;

use crate::config::{ClassificationKind, Job, Locale, OutputTable, TableFormat};
use crate::model::Contract;
use crate::model::table_schema;

/// The query engines `segments catalog` writes DDL for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    Duckdb,
    Trino,
    Spark,
    Athena,
    Bigquery,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Duckdb => "duckdb",
            Target::Trino => "trino",
            Target::Spark => "spark",
            Target::Athena => "athena",
            Target::Bigquery => "bigquery",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(
        "{target} reads external tables from {scheme} only, and the warehouse is {location}\nhint: pass the warehouse's {scheme} URL as the engine sees it with --location"
    )]
    Location {
        target: &'static str,
        scheme: &'static str,
        location: String,
    },
    #[error(
        "jobs `{first}` and `{second}` would both declare `{name}`\nhint: rename one of the jobs, or register them with separate `segments catalog --jobs … --schema …` runs"
    )]
    Collision {
        name: String,
        first: String,
        second: String,
    },
    #[error("the warehouse URL {location} cannot be read by DuckDB as a path: {message}")]
    LocalPath { location: String, message: String },
    #[error(
        "{target} reads Delta Lake tables through a BigLake connection, which `segments catalog` does not declare\nhint: create the BigLake tables (format DELTA_LAKE) over each table folder by hand, or use another target"
    )]
    DeltaUnsupported { target: &'static str },
}

/// One job to register, with (DuckDB only) the tables that have at least
/// one file: DuckDB cannot declare a view over a glob that matches nothing,
/// so a table without files is declared empty until the catalog is rebuilt.
#[derive(Debug, Clone)]
pub struct CatalogJob<'a> {
    pub job: &'a Job,
    pub tables_with_files: Option<BTreeSet<String>>,
}

/// How to write the DDL.
#[derive(Debug, Clone)]
pub struct CatalogOptions {
    pub target: Target,
    /// The warehouse root as the engine sees it, ending with `/`.
    pub location: String,
    /// Schema (database, dataset) of the tables and views; DuckDB uses its
    /// default schema.
    pub schema: String,
    /// Language of the labels in the views.
    pub locale: Locale,
    /// How the warehouse stores the tables (`warehouse.format`): Delta
    /// tables are declared as such.
    pub format: TableFormat,
}

/// The description of the Hive partition column every table but
/// `published_periods` has.
const PERIOD_DESCRIPTION: &str = "Period YYYY-MM (the Hive partition of the file: period=YYYY-MM).";

/// A column of a table or view: name, type, description.
struct Column {
    name: String,
    data_type: DataType,
    description: String,
}

/// A table's columns as published: the contract's, then `period` for a
/// partitioned table.
fn table_columns(table: Contract) -> (String, Vec<Column>) {
    let contract = table_schema(table);
    let mut columns: Vec<Column> = contract
        .schema
        .fields()
        .iter()
        .zip(&contract.column_descriptions)
        .map(|(field, (_, description))| Column {
            name: field.name().clone(),
            data_type: field.data_type().clone(),
            description: description.clone(),
        })
        .collect();
    if table.partitioned() {
        columns.push(Column {
            name: "period".into(),
            data_type: DataType::Utf8,
            description: PERIOD_DESCRIPTION.into(),
        });
    }
    (contract.description, columns)
}

/// The columns stored in the files: all but the Hive partition column of a
/// partitioned table (Athena and BigQuery declare it apart).
fn data_columns(columns: &[Column], partitioned: bool) -> Vec<Column> {
    columns
        .iter()
        .filter(|c| !(partitioned && c.name == "period"))
        .map(|c| Column {
            name: c.name.clone(),
            data_type: c.data_type.clone(),
            description: c.description.clone(),
        })
        .collect()
}

impl Target {
    fn type_name(self, data_type: &DataType) -> String {
        use Target::*;
        let (duck, trino, spark, athena, bq) = match data_type {
            DataType::Utf8 => ("VARCHAR", "varchar", "STRING", "string", "STRING"),
            DataType::Int8 => ("TINYINT", "tinyint", "TINYINT", "tinyint", "INT64"),
            DataType::Int32 => ("INTEGER", "integer", "INT", "int", "INT64"),
            DataType::Int64 => ("BIGINT", "bigint", "BIGINT", "bigint", "INT64"),
            DataType::Float64 => ("DOUBLE", "double", "DOUBLE", "double", "FLOAT64"),
            DataType::Boolean => ("BOOLEAN", "boolean", "BOOLEAN", "boolean", "BOOL"),
            DataType::Date32 => ("DATE", "date", "DATE", "date", "DATE"),
            DataType::Decimal128(_, _) => (
                "DECIMAL(18,2)",
                "decimal(18,2)",
                "DECIMAL(18,2)",
                "decimal(18,2)",
                "NUMERIC(18,2)",
            ),
            DataType::Timestamp(_, _) => (
                "TIMESTAMPTZ",
                "timestamp",
                "TIMESTAMP",
                "timestamp",
                "TIMESTAMP",
            ),
            // The contracts use only the types above (schema.rs parses no other).
            other => return format!("{other}"),
        };
        match self {
            Duckdb => duck,
            Trino => trino,
            Spark => spark,
            Athena => athena,
            Bigquery => bq,
        }
        .to_string()
    }

    /// A quoted column name in a table definition.
    fn ident(self, name: &str) -> String {
        match self {
            Target::Duckdb | Target::Trino => format!("\"{name}\""),
            Target::Spark | Target::Athena | Target::Bigquery => format!("`{name}`"),
        }
    }

    /// A string literal: doubled quotes for DuckDB and Trino, backslash
    /// escapes for the Hive-family and BigQuery parsers.
    fn literal(self, text: &str) -> String {
        match self {
            Target::Duckdb | Target::Trino => format!("'{}'", text.replace('\'', "''")),
            Target::Spark | Target::Athena | Target::Bigquery => {
                format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
            }
        }
    }

    /// The literal for view SQL: Athena views are Trino SQL.
    fn view_literal(self, text: &str) -> String {
        match self {
            Target::Athena => Target::Trino.literal(text),
            other => other.literal(text),
        }
    }
}

/// Generates the DDL for a set of jobs.
struct Writer<'a> {
    options: &'a CatalogOptions,
    out: String,
    /// Every object declared so far, with its job, to refuse collisions.
    declared: Vec<(String, String)>,
    /// The job being written.
    current_job: String,
}

impl Writer<'_> {
    fn target(&self) -> Target {
        self.options.target
    }

    /// A qualified object name.
    fn name(&self, name: &str) -> String {
        match self.target() {
            Target::Duckdb => name.to_string(),
            _ => format!("{}.{name}", self.options.schema),
        }
    }

    fn line(&mut self, text: &str) {
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn comment(&mut self, text: &str) {
        for line in text.lines() {
            self.line(format!("-- {line}").trim_end());
        }
    }

    /// The folder of a table, ending with `/`.
    fn folder(&self, job: &str, table: &str) -> String {
        format!("{}{job}/{table}/", self.options.location)
    }

    /// One table's DDL (or DuckDB view) over its folder, in the target's
    /// dialect.
    fn raw_table(&mut self, entry: &CatalogJob, contract: Contract) {
        let job = &entry.job.name;
        let table = contract.name();
        let (description, columns) = table_columns(contract);
        let partitioned = contract.partitioned();
        let name = if partitioned {
            format!("{job}_{table}_raw")
        } else {
            format!("{job}_{table}")
        };
        self.declared.push((name.clone(), job.clone()));
        let comment = if partitioned {
            format!(
                "{description} Every partition in storage, incomplete periods included: read {job}_{table} instead."
            )
        } else {
            description.clone()
        };
        let raw = RawTable {
            qualified: self.name(&name),
            folder: self.folder(job, table),
            name,
            comment,
            columns,
            partitioned,
        };
        let delta = self.options.format == TableFormat::Delta;
        match self.target() {
            Target::Duckdb => {
                let has_files = entry
                    .tables_with_files
                    .as_ref()
                    .is_none_or(|tables| tables.contains(table));
                self.duckdb_view(&raw, has_files, delta)
            }
            Target::Trino if delta => self.trino_delta_table(&raw),
            Target::Spark if delta => self.spark_delta_table(&raw),
            Target::Athena if delta => self.athena_delta_table(&raw),
            Target::Trino => self.trino_table(&raw),
            Target::Spark => self.spark_table(&raw),
            Target::Athena => self.athena_table(&raw),
            Target::Bigquery => self.bigquery_table(&raw),
        }
        self.line("");
    }

    fn duckdb_view(&mut self, raw: &RawTable, has_files: bool, delta: bool) {
        let RawTable {
            qualified,
            folder,
            comment: table_comment,
            columns,
            partitioned,
            ..
        } = raw;
        let partitioned = *partitioned;
        let target = self.target();
        let typed_empty: Vec<String> = columns
            .iter()
            .map(|c| {
                format!(
                    "CAST(NULL AS {}) AS {}",
                    target.type_name(&c.data_type),
                    target.ident(&c.name)
                )
            })
            .collect();
        let list: Vec<String> = columns.iter().map(|c| target.ident(&c.name)).collect();
        self.line(&format!("CREATE OR REPLACE VIEW {qualified} AS"));
        self.line(&format!("SELECT {} FROM (", list.join(", ")));
        if has_files {
            let read = if delta {
                // The current version's files, with `period` from the log.
                format!(
                    "delta_scan({})",
                    target.literal(folder.trim_end_matches('/'))
                )
            } else if partitioned {
                format!(
                    "read_parquet({}, hive_partitioning = true, hive_types = {{'period': 'VARCHAR'}}, union_by_name = true)",
                    target.literal(&format!("{folder}period=*/*.parquet"))
                )
            } else {
                format!(
                    "read_parquet({}, union_by_name = true)",
                    target.literal(&format!("{folder}*.parquet"))
                )
            };
            self.line(&format!("  SELECT * FROM {read}"));
            // Files published before a column existed read as null.
            self.line("  UNION ALL BY NAME");
        } else {
            self.line(&format!(
                "  -- no file under {folder} yet: empty until `segments catalog` is run again after a publish"
            ));
        }
        self.line(&format!("  SELECT {} WHERE false", typed_empty.join(", ")));
        self.line(");");
        self.line(&format!(
            "COMMENT ON VIEW {qualified} IS {};",
            target.literal(table_comment)
        ));
        self.column_comments(qualified, columns);
    }

    /// `CREATE TABLE IF NOT EXISTS` with each column's description as a
    /// `COMMENT` (Trino and Spark write them alike).
    fn create_table_with_comments(&mut self, qualified: &str, columns: &[Column]) {
        let target = self.target();
        self.line(&format!("CREATE TABLE IF NOT EXISTS {qualified} ("));
        self.column_list(columns, |c| {
            format!(" COMMENT {}", target.literal(&c.description))
        });
        self.line(")");
    }

    fn trino_table(&mut self, raw: &RawTable) {
        let RawTable {
            name,
            qualified,
            folder,
            comment: table_comment,
            columns,
            partitioned,
            ..
        } = raw;
        let partitioned = *partitioned;
        let target = self.target();
        self.create_table_with_comments(qualified, columns);
        self.line(&format!("COMMENT {}", target.literal(table_comment)));
        self.line("WITH (");
        self.line(&format!(
            "  external_location = {},",
            target.literal(folder)
        ));
        if partitioned {
            self.line("  format = 'PARQUET',");
            self.line("  partitioned_by = ARRAY['period']");
        } else {
            self.line("  format = 'PARQUET'");
        }
        self.line(");");
        if partitioned {
            self.line(&format!(
                "CALL system.sync_partition_metadata({}, {}, 'FULL');",
                target.literal(&self.options.schema),
                target.literal(name)
            ));
        }
    }

    fn spark_table(&mut self, raw: &RawTable) {
        let RawTable {
            qualified,
            folder,
            comment: table_comment,
            columns,
            partitioned,
            ..
        } = raw;
        let partitioned = *partitioned;
        let target = self.target();
        self.create_table_with_comments(qualified, columns);
        self.line("USING PARQUET");
        if partitioned {
            self.line(&format!("PARTITIONED BY ({})", target.ident("period")));
        }
        self.line(&format!("LOCATION {}", target.literal(folder)));
        self.line(&format!("COMMENT {};", target.literal(table_comment)));
        if partitioned {
            self.line(&format!("MSCK REPAIR TABLE {qualified};"));
        }
    }

    /// A Delta table of the Delta Lake connector: registered over its
    /// folder, its columns and partitions read from the log (nothing to
    /// sync after a publish).
    fn trino_delta_table(&mut self, raw: &RawTable) {
        let target = self.target();
        self.line(&format!(
            "CALL system.register_table({}, {}, {});",
            target.literal(&self.options.schema),
            target.literal(&raw.name),
            target.literal(raw.folder.trim_end_matches('/'))
        ));
        self.line(&format!(
            "COMMENT ON TABLE {} IS {};",
            raw.qualified,
            target.literal(&raw.comment)
        ));
    }

    /// A Delta table over its folder: Spark reads the columns from the log.
    fn spark_delta_table(&mut self, raw: &RawTable) {
        let target = self.target();
        self.line(&format!("CREATE TABLE IF NOT EXISTS {}", raw.qualified));
        self.line("USING DELTA");
        self.line(&format!("LOCATION {}", target.literal(&raw.folder)));
        self.line(&format!("COMMENT {};", target.literal(&raw.comment)));
    }

    /// Athena's Delta Lake tables: no columns (Athena reads them, and the
    /// partitions, from the log).
    fn athena_delta_table(&mut self, raw: &RawTable) {
        let target = self.target();
        self.line(&format!(
            "CREATE EXTERNAL TABLE IF NOT EXISTS {}",
            raw.qualified
        ));
        self.line(&format!("LOCATION {}", target.literal(&raw.folder)));
        self.line("TBLPROPERTIES ('table_type' = 'DELTA');");
    }

    fn athena_table(&mut self, raw: &RawTable) {
        let RawTable {
            qualified,
            folder,
            comment: table_comment,
            columns,
            partitioned,
            ..
        } = raw;
        let partitioned = *partitioned;
        let target = self.target();
        let data_columns = data_columns(columns, partitioned);
        self.line(&format!(
            "CREATE EXTERNAL TABLE IF NOT EXISTS {qualified} ("
        ));
        self.column_list(&data_columns, |c| {
            format!(" COMMENT {}", target.literal(&c.description))
        });
        self.line(")");
        self.line(&format!("COMMENT {}", target.literal(table_comment)));
        if partitioned {
            self.line(&format!(
                "PARTITIONED BY ({} string COMMENT {})",
                target.ident("period"),
                target.literal(PERIOD_DESCRIPTION)
            ));
        }
        self.line("STORED AS PARQUET");
        self.line(&format!("LOCATION {}", target.literal(folder)));
        if partitioned {
            // Partition projection: a newly published period is
            // visible without MSCK REPAIR.
            self.line("TBLPROPERTIES (");
            self.line("  'projection.enabled' = 'true',");
            self.line("  'projection.period.type' = 'date',");
            self.line("  'projection.period.format' = 'yyyy-MM',");
            self.line("  'projection.period.range' = '2000-01,NOW',");
            self.line("  'projection.period.interval' = '1',");
            self.line("  'projection.period.interval.unit' = 'MONTHS',");
            self.line(&format!(
                "  'storage.location.template' = {}",
                target.literal(&format!("{folder}period=${{period}}/"))
            ));
            self.line(");");
        } else {
            self.out.pop();
            self.line(";");
        }
    }

    fn bigquery_table(&mut self, raw: &RawTable) {
        let RawTable {
            qualified,
            folder,
            comment: table_comment,
            columns,
            partitioned,
            ..
        } = raw;
        let partitioned = *partitioned;
        let target = self.target();
        self.line(&format!("CREATE OR REPLACE EXTERNAL TABLE {qualified} ("));
        let data_columns = data_columns(columns, partitioned);
        self.column_list(&data_columns, |c| {
            format!(
                " OPTIONS (description = {})",
                target.literal(&c.description)
            )
        });
        self.line(")");
        if partitioned {
            self.line(&format!(
                "WITH PARTITION COLUMNS ({} STRING)",
                target.ident("period")
            ));
        }
        self.line("OPTIONS (");
        self.line("  format = 'PARQUET',");
        self.line(&format!(
            "  uris = [{}],",
            target.literal(&format!("{folder}*"))
        ));
        if partitioned {
            self.line(&format!(
                "  hive_partition_uri_prefix = {},",
                target.literal(folder)
            ));
            self.line("  require_hive_partition_filter = false,");
        }
        self.line(&format!(
            "  description = {}",
            target.literal(table_comment)
        ));
        self.line(");");
    }

    fn column_list(&mut self, columns: &[Column], extra: impl Fn(&Column) -> String) {
        let target = self.target();
        let count = columns.len();
        for (index, column) in columns.iter().enumerate() {
            let comma = if index + 1 < count { "," } else { "" };
            self.line(&format!(
                "  {} {}{}{comma}",
                target.ident(&column.name),
                target.type_name(&column.data_type),
                extra(column)
            ));
        }
    }

    /// `COMMENT ON COLUMN` statements (DuckDB, for tables and views alike).
    fn column_comments(&mut self, qualified: &str, columns: &[Column]) {
        if self.target() != Target::Duckdb {
            return;
        }
        for column in columns {
            self.line(&format!(
                "COMMENT ON COLUMN {qualified}.{} IS {};",
                self.target().ident(&column.name),
                self.target().literal(&column.description)
            ));
        }
    }

    /// A view with its description; DuckDB also gets its column comments.
    fn view(&mut self, name: &str, description: &str, sql: &str, columns: &[Column]) {
        self.declared
            .push((name.to_string(), self.current_job.clone()));
        let qualified = self.name(name);
        self.comment(&format!("{name}: {description}"));
        self.line(&format!("CREATE OR REPLACE VIEW {qualified} AS"));
        self.line(&format!("{};", sql.trim_end()));
        if self.target() == Target::Duckdb {
            self.line(&format!(
                "COMMENT ON VIEW {qualified} IS {};",
                self.target().literal(description)
            ));
            self.column_comments(&qualified, columns);
        }
        self.line("");
    }

    /// The label expression of a segment key in the configured locale, from
    /// the period's published `segment_definitions` (alias `d`), falling
    /// back on the default label, then on `fallback` (an SQL expression).
    fn label(&self, definitions: &str, fallback: &str) -> String {
        format!(
            "COALESCE({definitions}.label_{}, {definitions}.label, {fallback})",
            self.options.locale.code()
        )
    }

    fn job(&mut self, entry: &CatalogJob) {
        let job = entry.job;
        let j = &job.name;
        let kind = match job.kind {
            ClassificationKind::Segments => "segments",
            ClassificationKind::Audiences => "audiences",
        };
        let rule = "=".repeat(76);
        self.comment(&rule);
        self.comment(&format!(
            "Job {j} ({kind}, {}): {}",
            job.path.display(),
            job.description
        ));
        self.comment(&rule);
        self.line("");
        let mut tables: Vec<OutputTable> = job.outputs.clone();
        tables.sort();
        self.raw_table(entry, Contract::PublishedPeriods);
        for table in &tables {
            self.raw_table(entry, Contract::Output(*table));
        }
        let published = self.name(&format!("{j}_published_periods"));
        for table in &tables {
            let t = table.name();
            let (description, columns) = table_columns(Contract::Output(*table));
            let raw = self.name(&format!("{j}_{t}_raw"));
            self.view(
                &format!("{j}_{t}"),
                &format!("{description} Complete periods only (listed in {j}_published_periods)."),
                &format!(
                    "SELECT t.* FROM {raw} t\nWHERE t.period IN (SELECT p.period FROM {published} p)"
                ),
                &columns,
            );
            self.view(
                &format!("{j}_{t}_latest"),
                &format!("{description} The last complete period only."),
                &format!(
                    "SELECT t.* FROM {raw} t\nWHERE t.period = (SELECT MAX(p.period) FROM {published} p)"
                ),
                &columns,
            );
        }
        match job.kind {
            ClassificationKind::Segments => self.segment_views(job),
            ClassificationKind::Audiences => self.audience_views(job),
        }
    }

    /// Column helpers for the analytic views: a contract column of `table`
    /// (same description) or a new one.
    fn contract_column(table: OutputTable, name: &str) -> Column {
        let (_, columns) = table_columns(Contract::Output(table));
        columns
            .into_iter()
            .find(|c| c.name == name)
            .unwrap_or(Column {
                name: name.into(),
                data_type: DataType::Utf8,
                description: String::new(),
            })
    }

    fn new_column(name: &str, data_type: DataType, description: &str) -> Column {
        Column {
            name: name.into(),
            data_type,
            description: description.into(),
        }
    }

    /// `SELECT` list and columns of an analytic view from
    /// (expression, column) pairs.
    fn select(items: &[(String, Column)]) -> (String, Vec<Column>) {
        let list: Vec<String> = items
            .iter()
            .map(|(expression, column)| {
                if expression.ends_with(&format!(".{}", column.name)) {
                    expression.clone()
                } else {
                    format!("{expression} AS {}", column.name)
                }
            })
            .collect();
        (
            format!("SELECT {}", list.join(",\n       ")),
            items
                .iter()
                .map(|(_, c)| Column {
                    name: c.name.clone(),
                    data_type: c.data_type.clone(),
                    description: c.description.clone(),
                })
                .collect(),
        )
    }

    fn definitions_join(&self, job: &Job, alias: &str, period: &str, key: &str) -> String {
        if job.writes(OutputTable::SegmentDefinitions) {
            format!(
                "\nLEFT JOIN {} {alias} ON {alias}.period = {period} AND {alias}.segment = {key}",
                self.name(&format!("{}_segment_definitions", job.name))
            )
        } else {
            String::new()
        }
    }

    fn label_of(&self, job: &Job, alias: &str, fallback: &str) -> String {
        if job.writes(OutputTable::SegmentDefinitions) {
            self.label(alias, fallback)
        } else {
            fallback.to_string()
        }
    }

    /// A view over `spec.source` (aliased `s`, columns of the `spec.table`
    /// contract) with the segment's label in the configured locale after
    /// the leading columns.
    fn labelled_view(&mut self, job: &Job, spec: LabelledView, label_description: &str) {
        let column = |name: &str| (format!("s.{name}"), Self::contract_column(spec.table, name));
        let mut items: Vec<(String, Column)> = spec.leading.iter().map(|n| column(n)).collect();
        items.push((
            self.label_of(job, "d", spec.label_fallback),
            Self::new_column("segment_label", DataType::Utf8, label_description),
        ));
        items.extend(spec.trailing.iter().map(|n| column(n)));
        let (select, columns) = Self::select(&items);
        let sql = format!(
            "{select}\nFROM {} s{}",
            self.name(&spec.source),
            self.definitions_join(job, "d", "s.period", "s.segment")
        );
        self.view(&spec.name, spec.description, &sql, &columns);
    }

    /// The views over segments, for each table the job writes.
    fn segment_views(&mut self, job: &Job) {
        let label_description = format!(
            "Label of the segment in the configured locale ({}), from segment_definitions of the period.",
            self.options.locale
        );
        if job.writes(OutputTable::Snapshots) {
            self.latest_view(job, &label_description);
        }
        if job.writes(OutputTable::SegmentSummary) {
            self.segment_trend_view(job, &label_description);
        }
        if job.writes(OutputTable::MigrationMatrix) {
            self.migration_flows_view(job);
        }
        if job.writes(OutputTable::Snapshots) {
            self.customer_history_view(job, &label_description);
        }
    }

    /// The `<job>_latest` view: the last complete period's snapshot with labels.
    fn latest_view(&mut self, job: &Job, label_description: &str) {
        let j = &job.name;
        self.labelled_view(
            job,
            LabelledView {
                table: OutputTable::Snapshots,
                leading: &["period", "customer_id", "segment"],
                label_fallback: "s.segment",
                trailing: &[
                    "segment_rank",
                    "r_score",
                    "f_score",
                    "m_score",
                    "rfm_code",
                    "recency_days",
                    "frequency",
                    "monetary",
                    "first_purchase_date",
                    "last_purchase_date",
                ],
                source: format!("{j}_snapshots_latest"),
                name: format!("{j}_latest"),
                description: "Every customer of the last complete period with their segment, its label and their scores.",
            },
            label_description,
        );
    }

    /// The `<job>_segment_trend` view: segment sizes per complete period.
    fn segment_trend_view(&mut self, job: &Job, label_description: &str) {
        let j = &job.name;
        self.labelled_view(
            job,
            LabelledView {
                table: OutputTable::SegmentSummary,
                leading: &["period", "segment"],
                label_fallback: "s.label",
                trailing: &[
                    "segment_rank",
                    "customers",
                    "share",
                    "active_customers",
                    "revenue",
                    "orders",
                    "avg_basket",
                    "monetary",
                    "previous_customers",
                    "delta",
                ],
                source: format!("{j}_segment_summary"),
                name: format!("{j}_segment_trend"),
                description: "Segment sizes and revenue per complete period (one row per period and declared segment), for trend charts.",
            },
            label_description,
        );
    }

    /// The `<job>_migration_flows` view: from → to flows with labels, for a Sankey chart.
    fn migration_flows_view(&mut self, job: &Job) {
        let j = &job.name;
        let m = |name: &str| {
            (
                format!("m.{name}"),
                Self::contract_column(OutputTable::MigrationMatrix, name),
            )
        };
        let (new, removed) = match self.options.locale {
            Locale::En => ("(new)", "(removed)"),
            Locale::Fr => ("(nouveaux)", "(retirés)"),
        };
        let target = self.target();
        let from_label = format!(
            "CASE WHEN m.from_segment = '(new)' THEN {} ELSE {} END",
            target.view_literal(new),
            self.label_of(job, "f", "m.from_segment")
        );
        let to_label = format!(
            "CASE WHEN m.to_segment = '(removed)' THEN {} ELSE {} END",
            target.view_literal(removed),
            self.label_of(job, "t", "m.to_segment")
        );
        let items = vec![
            m("period"),
            m("from_segment"),
            (
                from_label.clone(),
                Self::new_column(
                    "from_label",
                    DataType::Utf8,
                    "Label of from_segment in the configured locale.",
                ),
            ),
            m("to_segment"),
            (
                to_label.clone(),
                Self::new_column(
                    "to_label",
                    DataType::Utf8,
                    "Label of to_segment in the configured locale.",
                ),
            ),
            m("from_rank"),
            m("to_rank"),
            m("customers"),
            m("share_of_from"),
            m("monetary"),
            (
                format!("{from_label} || ' →'"),
                Self::new_column(
                    "source",
                    DataType::Utf8,
                    "Sankey source node: from_label followed by an arrow, so that a segment on both sides is two nodes.",
                ),
            ),
            (
                format!("'→ ' || {to_label}"),
                Self::new_column(
                    "target",
                    DataType::Utf8,
                    "Sankey target node: an arrow followed by to_label.",
                ),
            ),
        ];
        let (select, columns) = Self::select(&items);
        let sql = format!(
            "{select}\nFROM {} m{}{}",
            self.name(&format!("{j}_migration_matrix")),
            self.definitions_join(job, "f", "m.period", "m.from_segment"),
            self.definitions_join(job, "t", "m.period", "m.to_segment")
        );
        self.view(
            &format!("{j}_migration_flows"),
            "From → to segment flows of each complete period with their customers, ready for a Sankey chart (source, target, customers).",
            &sql,
            &columns,
        );
    }

    /// The `<job>_customer_history` view: one row per customer and complete period.
    fn customer_history_view(&mut self, job: &Job, label_description: &str) {
        let j = &job.name;
        let s = |name: &str| {
            (
                format!("s.{name}"),
                Self::contract_column(OutputTable::Snapshots, name),
            )
        };
        let mut items = vec![s("period"), s("customer_id"), s("segment")];
        items.push((
            self.label_of(job, "d", "s.segment"),
            Self::new_column("segment_label", DataType::Utf8, label_description),
        ));
        items.push(s("segment_rank"));
        let migrations = job.writes(OutputTable::Migrations);
        if migrations {
            items.push((
                "m.from_segment".into(),
                Self::new_column(
                    "previous_segment",
                    DataType::Utf8,
                    "Segment in the previous period; null for new customers.",
                ),
            ));
            items.push((
                "m.movement".into(),
                Self::contract_column(OutputTable::Migrations, "movement"),
            ));
            items.push((
                "m.evolution".into(),
                Self::contract_column(OutputTable::Migrations, "evolution"),
            ));
        }
        for name in [
            "r_score",
            "f_score",
            "m_score",
            "recency_days",
            "frequency",
            "monetary",
        ] {
            items.push(s(name));
        }
        let (select, columns) = Self::select(&items);
        let migrations_join = if migrations {
            format!(
                "\nLEFT JOIN {} m ON m.period = s.period AND m.customer_id = s.customer_id",
                self.name(&format!("{j}_migrations"))
            )
        } else {
            String::new()
        };
        let sql = format!(
            "{select}\nFROM {} s{migrations_join}{}",
            self.name(&format!("{j}_snapshots")),
            self.definitions_join(job, "d", "s.period", "s.segment")
        );
        self.view(
            &format!("{j}_customer_history"),
            "One row per customer and complete period: segment, label, movement from the previous period and metrics.",
            &sql,
            &columns,
        );
    }

    fn audience_views(&mut self, job: &Job) {
        let j = &job.name;
        if !job.writes(OutputTable::Audiences) {
            return;
        }
        let label_description = format!(
            "Label of the audience in the configured locale ({}), from segment_definitions of the period.",
            self.options.locale
        );
        let a = |name: &str| {
            (
                format!("a.{name}"),
                Self::contract_column(OutputTable::Audiences, name),
            )
        };
        let items = vec![
            a("period"),
            a("customer_id"),
            a("audience"),
            (
                self.label_of(job, "d", "a.audience"),
                Self::new_column("audience_label", DataType::Utf8, &label_description),
            ),
            a("detail"),
        ];
        let (select, columns) = Self::select(&items);
        let sql = format!(
            "{select}\nFROM {} a{}",
            self.name(&format!("{j}_audiences_latest")),
            self.definitions_join(job, "d", "a.period", "a.audience")
        );
        self.view(
            &format!("{j}_latest"),
            "Every contact and audience it belongs to in the last complete period, with the audience's label.",
            &sql,
            &columns,
        );

        let rank = if job.writes(OutputTable::SegmentDefinitions) {
            "d.segment_rank"
        } else {
            "CAST(NULL AS INTEGER)"
        };
        let items = vec![
            a("period"),
            a("audience"),
            (
                self.label_of(job, "d", "a.audience"),
                Self::new_column("audience_label", DataType::Utf8, &label_description),
            ),
            (
                rank.to_string(),
                Self::new_column(
                    "audience_rank",
                    DataType::Int32,
                    "Position of the audience in the job.",
                ),
            ),
            (
                "COUNT(*)".into(),
                Self::new_column(
                    "contacts",
                    DataType::Int64,
                    "Contacts in the audience in the period.",
                ),
            ),
        ];
        let (select, columns) = Self::select(&items);
        let sql = format!(
            "{select}\nFROM {} a{}\nGROUP BY 1, 2, 3, 4",
            self.name(&format!("{j}_audiences")),
            self.definitions_join(job, "d", "a.period", "a.audience")
        );
        self.view(
            &format!("{j}_audience_trend"),
            "Contacts per audience and complete period (audiences with no contact in a period have no row), for trend charts.",
            &sql,
            &columns,
        );
    }
}

/// Check that the engine can read the warehouse URL.
fn check_location(options: &CatalogOptions) -> Result<(), CatalogError> {
    let needs = match options.target {
        Target::Athena => Some("s3://"),
        Target::Bigquery => Some("gs://"),
        _ => None,
    };
    if let Some(scheme) = needs
        && !options.location.starts_with(scheme)
    {
        return Err(CatalogError::Location {
            target: options.target.name(),
            scheme,
            location: crate::storage::redact(&options.location),
        });
    }
    Ok(())
}

/// The warehouse root as DuckDB reads it: a local path for `file://` URLs.
pub fn duckdb_location(location: &str) -> Result<String, CatalogError> {
    if !location.starts_with("file://") {
        return Ok(location.to_string());
    }
    let url = url::Url::parse(location).map_err(|e| CatalogError::LocalPath {
        location: location.to_string(),
        message: e.to_string(),
    })?;
    let path = url.to_file_path().map_err(|()| CatalogError::LocalPath {
        location: location.to_string(),
        message: "not a local path".into(),
    })?;
    let mut text = path.display().to_string();
    if !text.ends_with('/') {
        text.push('/');
    }
    Ok(text)
}

/// The DDL registering `jobs` for `options.target`.
pub fn render(jobs: &[CatalogJob], options: &CatalogOptions) -> Result<String, CatalogError> {
    check_location(options)?;
    if options.format == TableFormat::Delta && options.target == Target::Bigquery {
        return Err(CatalogError::DeltaUnsupported {
            target: options.target.name(),
        });
    }
    let delta = options.format == TableFormat::Delta;
    let mut options = options.clone();
    if !options.location.ends_with('/') {
        options.location.push('/');
    }
    if options.target == Target::Duckdb {
        options.location = duckdb_location(&options.location)?;
    }
    let mut writer = Writer {
        options: &options,
        out: String::new(),
        declared: Vec::new(),
        current_job: String::new(),
    };
    let names: Vec<&str> = jobs.iter().map(|j| j.job.name.as_str()).collect();
    writer.comment(&format!(
        "Generated by `segments catalog --target {}`; do not edit, generate again.",
        options.target.name()
    ));
    writer.comment(&format!(
        "Jobs: {}. Labels: {}.",
        names.join(", "),
        options.locale
    ));
    writer.comment(
        "Read the views (J_T, J_T_latest and the analytic ones): they show complete periods only.",
    );
    match options.target {
        Target::Duckdb => {
            let extension =
                if options.location.starts_with("s3://") || options.location.starts_with("gs://") {
                    Some("httpfs")
                } else if options.location.starts_with("az://")
                    || options.location.starts_with("abfss://")
                {
                    Some("azure")
                } else {
                    None
                };
            if let Some(extension) = extension {
                writer.comment(
                    "Credentials: create a DuckDB secret for the store first (CREATE SECRET …).",
                );
                writer.line(&format!("INSTALL {extension};"));
                writer.line(&format!("LOAD {extension};"));
            }
            if delta {
                writer.comment(
                    "Delta Lake tables: DuckDB's delta extension reads them (delta_scan).",
                );
                writer.line("INSTALL delta;");
                writer.line("LOAD delta;");
            }
        }
        Target::Trino if delta => {
            writer.comment(
                "Run with the Delta Lake connector's catalog selected (trino --catalog delta) and delta.register-table-procedure.enabled=true. A newly published period needs nothing.",
            );
            writer.line(&format!("CREATE SCHEMA IF NOT EXISTS {};", options.schema));
        }
        Target::Spark if delta => {
            writer.comment(
                "Delta Lake tables (delta-spark on the classpath); a newly published period needs nothing.",
            );
            writer.line(&format!(
                "CREATE DATABASE IF NOT EXISTS {};",
                options.schema
            ));
        }
        Target::Athena if delta => {
            writer.comment(
                "Delta Lake tables are read from their log: a newly published period needs nothing. Run one statement at a time in the console.",
            );
            writer.line(&format!(
                "CREATE DATABASE IF NOT EXISTS {};",
                options.schema
            ));
        }
        Target::Trino => {
            writer.comment(
                "Run with the Hive connector's catalog selected (trino --catalog hive). After each publish, run the CALL system.sync_partition_metadata statements again.",
            );
            writer.line(&format!("CREATE SCHEMA IF NOT EXISTS {};", options.schema));
        }
        Target::Spark => {
            writer.comment("After each publish, run the MSCK REPAIR TABLE statements again.");
            writer.line(&format!(
                "CREATE DATABASE IF NOT EXISTS {};",
                options.schema
            ));
        }
        Target::Athena => {
            writer.comment(
                "Partition projection: a newly published period needs no MSCK REPAIR. Run one statement at a time in the console.",
            );
            writer.line(&format!(
                "CREATE DATABASE IF NOT EXISTS {};",
                options.schema
            ));
        }
        Target::Bigquery => {
            writer.comment("Hive partitions are discovered on each query.");
            writer.line(&format!("CREATE SCHEMA IF NOT EXISTS {};", options.schema));
        }
    }
    writer.line("");
    for job in jobs {
        writer.current_job = job.job.name.clone();
        writer.job(job);
    }
    let mut seen = std::collections::BTreeMap::new();
    for (name, job) in &writer.declared {
        if let Some(other) = seen.insert(name.as_str(), job.as_str()) {
            return Err(CatalogError::Collision {
                name: name.clone(),
                first: other.to_string(),
                second: job.clone(),
            });
        }
    }
    Ok(writer.out)
}

/// `docs/tables.md`: every table's columns, from the contracts.
pub fn tables_markdown() -> String {
    let mut out = String::from(
        "# Tables\n\nGenerated from [`schemas/`](../schemas) by `segments catalog --docs docs/tables.md`; do not edit (a test fails when it is stale). The same descriptions are the column comments of the DDL that `segments catalog` writes.\n\nEvery table but `published_periods` is partitioned by `period` (`<warehouse>/<job>/<table>/period=YYYY-MM/part-0.parquet`). Types are Arrow types.\n",
    );
    for table in Contract::all() {
        let contract = table_schema(table);
        let table = table.name();
        let _ = write!(
            out,
            "\n## `{table}`\n\n{}\n\n| column | type | null | description |\n|---|---|---|---|\n",
            contract.description
        );
        for (field, (_, description)) in contract
            .schema
            .fields()
            .iter()
            .zip(&contract.column_descriptions)
        {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} |",
                field.name(),
                field.data_type(),
                if field.is_nullable() { "yes" } else { "no" },
                description.replace('|', "\\|")
            );
        }
    }
    out.push_str(VIEWS_MARKDOWN);
    out
}

/// The views of `segments catalog`, for `docs/tables.md`.
const VIEWS_MARKDOWN: &str = "
## Views (`segments catalog`)

Per job `J` and table `T` of the job (the columns are the table's, plus `period`):

| object | what |
|---|---|
| `J_T_raw` | every partition in storage, incomplete periods included (an external table; a view in DuckDB) |
| `J_published_periods` | the complete periods (the `published_periods` table) |
| `J_T` | the rows of complete periods only: what BI tools should read |
| `J_T_latest` | the rows of the last complete period |

Analytic views, with the label of the configured locale (`locale:` in the config, or `--locale`) next to the stable key:

| view | jobs | one row per |
|---|---|---|
| `J_latest` | segments | customer of the last complete period: segment, `segment_label`, rank, scores, metrics |
| `J_segment_trend` | segments | complete period × declared segment: `segment_label`, customers, share, active customers, revenue, orders, average basket, monetary, previous customers, delta |
| `J_migration_flows` | segments | complete period × non-empty from → to cell: labels, customers, share, monetary, and `source`/`target` node names for a Sankey chart |
| `J_customer_history` | segments | customer × complete period: segment, `segment_label`, `previous_segment`, movement, evolution, scores, metrics |
| `J_latest` | audiences | contact × audience of the last complete period: `audience_label`, detail |
| `J_audience_trend` | audiences | complete period × audience with contacts: `audience_label`, `audience_rank`, contacts |
";

/// What [`Writer::labelled_view`] builds.
struct LabelledView {
    /// The contract of the source's columns.
    table: OutputTable,
    /// Columns before the label.
    leading: &'static [&'static str],
    /// The label when segment_definitions has none for the segment.
    label_fallback: &'static str,
    /// Columns after the label.
    trailing: &'static [&'static str],
    source: String,
    name: String,
    description: &'static str,
}

/// A published table as a catalog declares it.
struct RawTable {
    /// The table's name in the catalog (`<job>_<table>`, `_raw` when
    /// partitioned), unqualified and qualified with the schema.
    name: String,
    qualified: String,
    /// Its folder in the warehouse, ending with `/`.
    folder: String,
    /// The table comment.
    comment: String,
    columns: Vec<Column>,
    /// Partitioned by `period` (every table but `published_periods`).
    partitioned: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_tables_md_is_up_to_date() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/tables.md");
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in == tables_markdown(),
            "docs/tables.md is stale: run `cargo run -- catalog --docs docs/tables.md` and commit it"
        );
    }
}

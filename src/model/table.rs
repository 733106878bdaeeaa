//! The output tables: which a job publishes ([`OutputTable`]), and their
//! contracts, checked into `schemas/` and compiled into the binary: column
//! names, Arrow types, nullability and a description of each column.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;

/// A batch that does not fit its table's contract.
#[derive(Debug, thiserror::Error)]
#[error("table `{table}` does not match its contract in schemas/{table}.json: {message}")]
pub struct ContractError {
    pub table: String,
    pub message: String,
}

/// How a job classifies: one segment per customer, or any number of
/// audiences per contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassificationKind {
    /// `classification.segments`: first matching rule in rank order.
    Segments,
    /// `classification.audiences`: every matching rule, one row each.
    Audiences,
}

/// The tables a job can publish.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Deserialize,
    serde::Serialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OutputTable {
    Snapshots,
    Migrations,
    MigrationMatrix,
    SegmentSummary,
    ScoreThresholds,
    SegmentDefinitions,
    Rejects,
    StoreSummary,
    Audiences,
    Predictions,
    ModelParameters,
}

impl OutputTable {
    pub const ALL: [OutputTable; 11] = [
        OutputTable::Snapshots,
        OutputTable::Migrations,
        OutputTable::MigrationMatrix,
        OutputTable::SegmentSummary,
        OutputTable::ScoreThresholds,
        OutputTable::SegmentDefinitions,
        OutputTable::Rejects,
        OutputTable::StoreSummary,
        OutputTable::Audiences,
        OutputTable::Predictions,
        OutputTable::ModelParameters,
    ];

    /// What a job writes when it lists no `outputs`.
    pub(crate) fn defaults(kind: ClassificationKind) -> Vec<OutputTable> {
        use OutputTable::*;
        match kind {
            ClassificationKind::Segments => vec![
                Snapshots,
                Migrations,
                MigrationMatrix,
                SegmentSummary,
                ScoreThresholds,
                SegmentDefinitions,
                Rejects,
            ],
            ClassificationKind::Audiences => vec![Audiences, SegmentDefinitions, Rejects],
        }
    }

    /// Whether a job of `kind` can write this table.
    pub(crate) fn fits(self, kind: ClassificationKind) -> bool {
        use OutputTable::*;
        match self {
            SegmentDefinitions | Rejects => true,
            Audiences => kind == ClassificationKind::Audiences,
            _ => kind == ClassificationKind::Segments,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            OutputTable::Snapshots => "snapshots",
            OutputTable::Migrations => "migrations",
            OutputTable::MigrationMatrix => "migration_matrix",
            OutputTable::SegmentSummary => "segment_summary",
            OutputTable::ScoreThresholds => "score_thresholds",
            OutputTable::SegmentDefinitions => "segment_definitions",
            OutputTable::Rejects => "rejects",
            OutputTable::StoreSummary => "store_summary",
            OutputTable::Audiences => "audiences",
            OutputTable::Predictions => "predictions",
            OutputTable::ModelParameters => "model_parameters",
        }
    }
}

const CONTRACTS: [(&str, &str); 12] = [
    ("rejects", include_str!("../../schemas/rejects.json")),
    ("audiences", include_str!("../../schemas/audiences.json")),
    (
        "store_summary",
        include_str!("../../schemas/store_summary.json"),
    ),
    ("snapshots", include_str!("../../schemas/snapshots.json")),
    ("migrations", include_str!("../../schemas/migrations.json")),
    (
        "migration_matrix",
        include_str!("../../schemas/migration_matrix.json"),
    ),
    (
        "segment_summary",
        include_str!("../../schemas/segment_summary.json"),
    ),
    (
        "score_thresholds",
        include_str!("../../schemas/score_thresholds.json"),
    ),
    (
        "segment_definitions",
        include_str!("../../schemas/segment_definitions.json"),
    ),
    (
        "predictions",
        include_str!("../../schemas/predictions.json"),
    ),
    (
        "model_parameters",
        include_str!("../../schemas/model_parameters.json"),
    ),
    (
        "published_periods",
        include_str!("../../schemas/published_periods.json"),
    ),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContractFile {
    table: String,
    description: String,
    columns: Vec<ColumnFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnFile {
    name: String,
    #[serde(rename = "type")]
    data_type: String,
    nullable: bool,
    description: String,
}

/// A table's contract.
#[derive(Debug, Clone)]
pub struct TableSchema {
    pub name: String,
    pub description: String,
    pub schema: SchemaRef,
    pub column_descriptions: Vec<(String, String)>,
}

fn parse_type(name: &str) -> Option<DataType> {
    Some(match name {
        "utf8" => DataType::Utf8,
        "int8" => DataType::Int8,
        "int32" => DataType::Int32,
        "int64" => DataType::Int64,
        "float64" => DataType::Float64,
        "boolean" => DataType::Boolean,
        "date32" => DataType::Date32,
        "decimal(18,2)" => DataType::Decimal128(18, 2),
        "timestamp_us_utc" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        _ => return None,
    })
}

impl std::fmt::Display for OutputTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A table with a contract in `schemas/`: an output table of a job, or the
/// warehouse's list of complete periods of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Contract {
    Output(OutputTable),
    /// `<job>/published_periods/`: not partitioned, rebuilt by each publish.
    PublishedPeriods,
}

impl Contract {
    /// Every contract: the output tables, then `published_periods`.
    pub fn all() -> impl Iterator<Item = Contract> {
        OutputTable::ALL
            .into_iter()
            .map(Contract::Output)
            .chain([Contract::PublishedPeriods])
    }

    pub fn name(self) -> &'static str {
        match self {
            Contract::Output(table) => table.name(),
            Contract::PublishedPeriods => "published_periods",
        }
    }

    /// Whether the table is partitioned by `period`.
    pub fn partitioned(self) -> bool {
        self != Contract::PublishedPeriods
    }
}

impl From<OutputTable> for Contract {
    fn from(table: OutputTable) -> Self {
        Contract::Output(table)
    }
}

/// The contract of a table. Panics only if a checked-in contract is broken,
/// which the unit test below catches.
pub fn table_schema(table: impl Into<Contract>) -> TableSchema {
    let table = table.into().name();
    let (_, text) = CONTRACTS
        .iter()
        .find(|(name, _)| *name == table)
        .expect("every Contract has a file in CONTRACTS (unit test)");
    let file: ContractFile =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("schemas/{table}.json: {e}"));
    let fields: Vec<Field> = file
        .columns
        .iter()
        .map(|c| {
            let data_type = parse_type(&c.data_type)
                .unwrap_or_else(|| panic!("schemas/{table}.json: unknown type {}", c.data_type));
            Field::new(&c.name, data_type, c.nullable)
        })
        .collect();
    TableSchema {
        name: file.table,
        description: file.description,
        schema: Arc::new(Schema::new(fields)),
        column_descriptions: file
            .columns
            .into_iter()
            .map(|c| (c.name, c.description))
            .collect(),
    }
}

impl TableSchema {
    /// Cast a query result to the contract: same columns in the same order,
    /// exact types, and no null where the contract says not null.
    pub fn conform(&self, batch: &RecordBatch) -> Result<RecordBatch, ContractError> {
        let contract = |message: String| ContractError {
            table: self.name.clone(),
            message,
        };
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for field in self.schema.fields() {
            let column = match batch.schema().index_of(field.name()) {
                Ok(index) => batch.column(index).clone(),
                Err(_) if field.is_nullable() => {
                    new_null_array(field.data_type(), batch.num_rows())
                }
                Err(_) => {
                    return Err(contract(format!(
                        "the query returns no column `{}`",
                        field.name()
                    )));
                }
            };
            let column = if column.data_type() == field.data_type() {
                column
            } else {
                cast(&column, field.data_type())
                    .map_err(|e| contract(format!("column `{}`: {e}", field.name())))?
            };
            if !field.is_nullable() && column.null_count() > 0 {
                return Err(contract(format!(
                    "column `{}` has {} null value(s) but is declared not null",
                    field.name(),
                    column.null_count()
                )));
            }
            columns.push(column);
        }
        RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| contract(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_contract_parses() {
        assert_eq!(Contract::all().count(), CONTRACTS.len());
        for contract in Contract::all() {
            let name = contract.name();
            assert!(CONTRACTS.iter().any(|(file, _)| *file == name), "{name}");
            let table = table_schema(contract);
            assert_eq!(table.name, name);
            assert!(!table.schema.fields().is_empty());
            assert!(
                table.column_descriptions.iter().all(|(_, d)| !d.is_empty()),
                "{name}: every column is described"
            );
        }
    }
}

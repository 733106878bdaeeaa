//! Reading inputs defensively (docs/design.md §7): every source row gets its
//! canonical, typed values and, when it cannot be used, a reject reason.
//! `__checked_<input>` holds every row with `__reason` and `__source_file`;
//! the canonical view `<input>` holds the usable rows only (exact duplicate
//! lines once). Nothing here fails on a bad value: bad rows are set aside.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::can_cast_types;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, TimeUnit};
use datafusion::common::{Column, DFSchema};
use datafusion::functions::string::expr_fn::{btrim, replace};
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::{Expr, ExprSchemable, cast, lit, try_cast, when};
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::scalar::ScalarValue;

use crate::config::{Config, Input, canonical_columns, date_column_of};
use crate::engine::EngineError;
use crate::engine::functions::{canonical_text, from_local, local_date, parse_local_timestamp};

pub(crate) fn checked_table(input: &str) -> String {
    format!("__checked_{input}")
}

pub(crate) const REASON: &str = "__reason";
const RAW_PREFIX: &str = "__raw_";

fn column_ref(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

fn timestamp(timezone: Option<&str>) -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, timezone.map(Into::into))
}

/// The typed value of one mapped column; null when it does not parse.
/// Text timestamps and naive timestamps are local times in `timezone`;
/// `date_format` is the chrono format of dates and timestamps written as
/// text (ISO 8601 when `None`).
fn typed(
    raw: Expr,
    source_type: &DataType,
    target: &DataType,
    input: &Input,
    date_format: Option<&str>,
    timezone: Tz,
) -> Expr {
    let trimmed = |raw: Expr| btrim(vec![cast(raw, DataType::Utf8)]);
    match target {
        DataType::Timestamp(_, Some(_)) => {
            let naive = match source_type {
                DataType::Timestamp(_, Some(_)) => return cast(raw, target.clone()),
                DataType::Timestamp(_, None) => cast(raw, timestamp(None)),
                t if is_text(t) => match date_format {
                    Some(format) => parse_local_timestamp(raw, format),
                    None => try_cast(trimmed(raw), timestamp(None)),
                },
                _ => try_cast(raw, timestamp(None)),
            };
            cast(from_local(naive, timezone), target.clone())
        }
        DataType::Date32 if is_text(source_type) => match date_format {
            Some(format) => cast(parse_local_timestamp(raw, format), DataType::Date32),
            None => try_cast(trimmed(raw), DataType::Date32),
        },
        DataType::Decimal128(_, _) | DataType::Float64 if is_text(source_type) => {
            let text = trimmed(raw);
            let text = if input.csv.decimal == ',' {
                replace(text, lit(","), lit("."))
            } else {
                text
            };
            try_cast(text, target.clone())
        }
        // Empty text is no value (CSV exports write missing ids as "").
        DataType::Utf8 if is_text(source_type) => canonical_text(raw),
        target if source_type == target => raw,
        target if is_text(source_type) => try_cast(trimmed(raw), target.clone()),
        target => try_cast(raw, target.clone()),
    }
}

/// Why a transactions row cannot be used (first reason wins), or null.
/// `extra_rules` are the typed extra columns' (condition, reason), after
/// the canonical ones.
fn transactions_reason(
    raw: &BTreeMap<&str, Expr>,
    typed: &BTreeMap<&str, Expr>,
    extra_rules: Vec<(Expr, String)>,
    now: DateTime<Utc>,
) -> Expr {
    let now = lit(ScalarValue::TimestampMicrosecond(
        Some(now.timestamp_micros()),
        Some("UTC".into()),
    ));
    let rules = [
        (typed["order_id"].clone().is_null(), "missing_order_id"),
        (raw["ordered_at"].clone().is_null(), "missing_timestamp"),
        (
            typed["ordered_at"].clone().is_null(),
            "unparseable_timestamp",
        ),
        (raw["amount"].clone().is_null(), "missing_amount"),
        (typed["amount"].clone().is_null(), "unparseable_amount"),
        (typed["ordered_at"].clone().gt(now), "future_timestamp"),
    ];
    let rules = rules
        .into_iter()
        .map(|(condition, reason)| (condition, reason.to_string()))
        .chain(extra_rules);
    let mut case: Option<datafusion::logical_expr::conditional_expressions::CaseBuilder> = None;
    for (condition, reason) in rules {
        case = Some(match case {
            None => when(condition, lit(reason)),
            Some(mut builder) => builder.when(condition, lit(reason)),
        });
    }
    case.expect("rules")
        .otherwise(lit(ScalarValue::Utf8(None)))
        .expect("valid case")
}

/// Register `__checked_<input>` and the canonical view `<input>` over the
/// registered source table.
pub(super) async fn register(
    ctx: &SessionContext,
    config: &Config,
    input: &Input,
    source_table: &str,
    now: DateTime<Utc>,
) -> Result<(), EngineError> {
    let source = ctx
        .table(source_table)
        .await
        .map_err(|source| EngineError::Source {
            input: input.name.clone(),
            url: input.url.clone(),
            source,
        })?;
    let suppression = super::suppression(ctx);
    let checked = checked_frame(source, config, input, now, suppression)?;
    ctx.register_table(
        checked_table(&input.name).as_str(),
        checked.clone().into_view(),
    )
    .map_err(EngineError::Setup)?;

    let canonical: Vec<Expr> = usable_columns(input)
        .iter()
        .map(|name| column_ref(name))
        .collect();
    let usable = checked
        .filter(column_ref(REASON).is_null())
        .map_err(EngineError::Setup)?
        .select(canonical)
        .map_err(EngineError::Setup)?;
    ctx.register_table(
        usable_table(&input.name).as_str(),
        usable.clone().into_view(),
    )
    .map_err(EngineError::Setup)?;
    let canonical = if input.name == "transactions" && config.quality.reject_duplicates {
        usable.distinct().map_err(EngineError::Setup)?
    } else {
        usable
    };
    ctx.register_table(input.name.as_str(), canonical.into_view())
        .map_err(EngineError::Setup)?;
    Ok(())
}

/// The columns of an input's usable rows: its canonical columns, its extra
/// columns, then the local date of its timestamp if it has one.
fn usable_columns(input: &Input) -> Vec<String> {
    let mut columns = row_columns(input);
    columns.extend(date_column_of(&input.name).map(|(_, date)| date.to_string()));
    columns
}

/// The columns that make a line what it is: canonical, then extra.
fn row_columns(input: &Input) -> Vec<String> {
    canonical_columns(&input.name)
        .iter()
        .map(|c| c.name.to_string())
        .chain(input.extra_columns.iter().map(|c| c.name.clone()))
        .collect()
}

pub(super) fn usable_table(input: &str) -> String {
    format!("__usable_{input}")
}

/// Replace the canonical view of `input` (registered with the exact
/// DISTINCT over every column) by `view`, or by its usable rows as they are
/// when `None` (no line repeats): every later query reads that instead of
/// recomputing a DISTINCT over every column, the most expensive operator a
/// run could have.
pub(super) async fn replace_canonical(
    ctx: &SessionContext,
    input: &str,
    view: Option<DataFrame>,
) -> Result<(), EngineError> {
    let view = match view {
        Some(view) => view,
        None => ctx
            .table(usable_table(input).as_str())
            .await
            .map_err(EngineError::Setup)?,
    };
    ctx.deregister_table(input).map_err(EngineError::Setup)?;
    ctx.register_table(input, view.into_view())
        .map_err(EngineError::Setup)?;
    Ok(())
}

/// Restrict the canonical `transactions` view to the lines dated before
/// `period_end` (local date), the only ones a period's tables may use (docs/design.md
/// §3: what was known by its end). Besides the exact date condition, a
/// condition on the timestamp itself, two days wider than any timezone
/// offset, reaches the Parquet reader: files and row groups dated after the
/// period are skipped by their statistics instead of being read. Row
/// accounting is done before, over every row.
pub async fn known_by(ctx: &SessionContext, period_end: NaiveDate) -> Result<(), EngineError> {
    customers_as_of(ctx, period_end).await?;
    let input = "transactions";
    let Ok(frame) = ctx.table(input).await else {
        return Ok(());
    };
    let end = period_end
        .checked_add_days(chrono::Days::new(2))
        .unwrap_or(period_end)
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
        .timestamp_micros();
    let wide_end = lit(ScalarValue::TimestampMicrosecond(
        Some(end),
        Some("UTC".into()),
    ));
    let restricted =
        frame
            .filter(column_ref("ordered_at").lt(wide_end).and(
                column_ref("ordered_date").lt(lit(ScalarValue::Date32(Some(days(period_end))))),
            ))
            .map_err(EngineError::Setup)?;
    ctx.deregister_table(input).map_err(EngineError::Setup)?;
    ctx.register_table(input, restricted.into_view())
        .map_err(EngineError::Setup)?;
    Ok(())
}

/// Restrict the canonical `customers` view to what a period knew: for each
/// customer, its latest row with `valid_from` before `period_end` (rows
/// without `valid_from` hold from the start). Rows dated later are not seen.
async fn customers_as_of(ctx: &SessionContext, period_end: NaiveDate) -> Result<(), EngineError> {
    let input = "customers";
    let Ok(frame) = ctx.table(input).await else {
        return Ok(());
    };
    let setup = EngineError::Setup;
    let end = lit(ScalarValue::Date32(Some(days(period_end))));
    let known = frame
        .filter(
            column_ref("valid_from")
                .is_null()
                .or(column_ref("valid_from").lt(end)),
        )
        .map_err(setup)?;
    // The latest date per customer; undated rows count as the earliest.
    let epoch = lit(ScalarValue::Date32(Some(i32::MIN)));
    let dated =
        datafusion::functions::core::expr_fn::coalesce(vec![column_ref("valid_from"), epoch]);
    let latest = known
        .clone()
        .aggregate(
            vec![column_ref("customer_id").alias("__customer")],
            vec![datafusion::functions_aggregate::expr_fn::max(dated.clone()).alias("__latest")],
        )
        .map_err(setup)?;
    let columns: Vec<Expr> = known
        .schema()
        .fields()
        .iter()
        .map(|f| column_ref(f.name()))
        .collect();
    let current = known
        .with_column("__dated", dated)
        .map_err(setup)?
        .join(
            latest,
            datafusion::logical_expr::JoinType::Inner,
            &["customer_id", "__dated"],
            &["__customer", "__latest"],
            None,
        )
        .map_err(setup)?
        .select(columns)
        .map_err(setup)?;
    ctx.deregister_table(input).map_err(setup)?;
    ctx.register_table(input, current.into_view())
        .map_err(setup)?;
    Ok(())
}

/// Every source row with its canonical typed values, local date, reject
/// reason and the raw values as text.
fn checked_frame(
    source: DataFrame,
    config: &Config,
    input: &Input,
    now: DateTime<Utc>,
    suppression: Option<Arc<crate::warehouse::erasure::Suppression>>,
) -> Result<DataFrame, EngineError> {
    let schema: DFSchema = source.schema().clone();
    let available: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mapping_error = |column: &str, expression: &str, source| EngineError::Mapping {
        input: input.name.clone(),
        column: column.to_string(),
        expression: expression.to_string(),
        available: available.join(", "),
        config: config.path.display().to_string(),
        source,
    };
    let missing = |column: &str| EngineError::MissingColumn {
        input: input.name.clone(),
        column: column.to_string(),
        available: available.join(", "),
        config: config.path.display().to_string(),
    };
    // A mapping is a source column when it is one word, else a SQL
    // expression over the source columns.
    let mapped_expression = |column: &str, mapped: &str| {
        if mapped.chars().all(|c| c.is_alphanumeric() || c == '_') {
            if available.iter().any(|a| a == mapped) {
                Ok(column_ref(mapped))
            } else {
                Err(missing(column))
            }
        } else {
            source
                .parse_sql_expr(mapped)
                .map_err(|e| mapping_error(column, mapped, e))
        }
    };
    // Text parses into any type; anything else must cast.
    let castable = |column: &str, source_type: &DataType, target: &DataType| {
        if *source_type == DataType::Null
            || is_text(source_type)
            || can_cast_types(source_type, target)
        {
            Ok(())
        } else {
            Err(EngineError::SchemaDrift {
                input: input.name.clone(),
                column: column.to_string(),
                expected: target.to_string(),
                found: source_type.to_string(),
            })
        }
    };

    let mut raw = BTreeMap::new();
    let mut typed_columns = BTreeMap::new();
    let columns = canonical_columns(&input.name);
    for column in &columns {
        let mapped = input.columns.get(column.name);
        let expression = match mapped {
            Some(expression) => mapped_expression(column.name, expression)?,
            None if available.iter().any(|a| a == column.name) => column_ref(column.name),
            None if column.required => return Err(missing(column.name)),
            None => lit(ScalarValue::try_from(&column.data_type).map_err(EngineError::Setup)?),
        };
        let source_type = expression.get_type(&schema).map_err(|e| {
            mapping_error(
                column.name,
                mapped.map(String::as_str).unwrap_or(column.name),
                e,
            )
        })?;
        castable(column.name, &source_type, &column.data_type)?;
        let mut value = typed(
            expression.clone(),
            &source_type,
            &column.data_type,
            input,
            input.csv.date_format.as_deref(),
            config.timezone,
        );
        if column.name == "customer_id"
            && let Some(suppression) = &suppression
        {
            // An erased customer's lines become anonymous (crate::warehouse::erasure).
            let erased =
                crate::engine::erased::erased_udf(suppression.clone()).call(vec![value.clone()]);
            value = when(erased, lit(ScalarValue::Utf8(None)))
                .otherwise(value)
                .expect("valid case");
        }
        typed_columns.insert(column.name, value);
        raw.insert(column.name, expression);
    }

    let mut projection: Vec<Expr> = columns
        .iter()
        .map(|c| typed_columns[c.name].clone().alias(c.name))
        .collect();
    // Extra columns: typed as declared, or as in the source.
    let mut extra_rules = Vec::new();
    for extra in &input.extra_columns {
        let mapped = extra.source.as_deref().unwrap_or(&extra.name);
        let expression = mapped_expression(&extra.name, mapped)?;
        let source_type = expression
            .get_type(&schema)
            .map_err(|e| mapping_error(&extra.name, mapped, e))?;
        let value = match extra.data_type {
            None if is_text(&source_type) => canonical_text(expression.clone()),
            None => expression.clone(),
            Some(column_type) => {
                let target = column_type.data_type();
                castable(&extra.name, &source_type, &target)?;
                let date_format = extra.format.as_deref().or(input.csv.date_format.as_deref());
                let value = typed(
                    expression.clone(),
                    &source_type,
                    &target,
                    input,
                    date_format,
                    config.timezone,
                );
                if column_type != crate::config::ColumnType::Text {
                    // A value given that does not parse (empty text is no value).
                    let given =
                        canonical_text(cast(expression.clone(), DataType::Utf8)).is_not_null();
                    extra_rules.push((
                        given.and(value.clone().is_null()),
                        format!("unparseable_{}", extra.name),
                    ));
                }
                value
            }
        };
        projection.push(value.alias(&extra.name));
    }
    let date_column = date_column_of(&input.name);
    if let Some((timestamp_column, date)) = date_column {
        let local = local_date(typed_columns[timestamp_column].clone(), config.timezone);
        projection.push(local.alias(date));
    }
    let reason = if input.name == "transactions" {
        transactions_reason(&raw, &typed_columns, extra_rules, now)
    } else {
        lit(ScalarValue::Utf8(None))
    };
    projection.push(reason.alias(REASON));
    // The source row as text, for the rejects table's JSON.
    for name in &available {
        projection
            .push(cast(column_ref(name), DataType::Utf8).alias(format!("{RAW_PREFIX}{name}")));
    }
    let checked = source.select(projection).map_err(EngineError::Setup)?;
    Ok(checked)
}

/// Row accounting of an input: rows read and rejected per reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputChecks {
    pub read: u64,
    /// Rows without a reject reason (before duplicate removal).
    pub valid: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
}

fn execution(context: &str) -> impl Fn(datafusion::error::DataFusionError) -> EngineError + '_ {
    move |source| EngineError::Read {
        context: context.to_string(),
        source,
    }
}

/// One row of the `rejects` table (schemas/rejects.json). Ordered by file,
/// then row, then reason: the order the table is written in.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RejectedRow {
    /// The file the row came from; the input's URL for a duplicate line,
    /// whose copies may sit in several files.
    pub source_file: String,
    /// The source row as JSON.
    pub row: String,
    /// Why it was rejected (`missing_order_id`, `duplicate_line`, …).
    pub reason: String,
}

/// The rejects of a period: rows dated in `[start, end)` and undatable rows,
/// plus one row per extra copy of a duplicated line dated in the period.
/// Returns the rows of the rejects table, sorted. Each file is checked
/// on its own so every reject names its file; this runs only when the
/// counts found rejects, and reads the files only when `other_rejects`
/// (some rejects are not duplicate lines).
#[allow(clippy::too_many_arguments)]
pub async fn collect_rejects(
    ctx: &SessionContext,
    config: &Config,
    input: &Input,
    files: &[super::InputFile],
    now: DateTime<Utc>,
    start: NaiveDate,
    end: NaiveDate,
    other_rejects: bool,
    duplicates: &super::Duplicates,
) -> Result<Vec<RejectedRow>, EngineError> {
    let failed = execution("collecting rejects");
    let suppression = super::suppression(ctx);
    let date = |d: NaiveDate| lit(ScalarValue::Date32(Some(days(d))));
    let in_period = column_ref("ordered_date")
        .gt_eq(date(start))
        .and(column_ref("ordered_date").lt(date(end)));
    let mut rejects = Vec::new();
    let source_schema = ctx
        .table(super::source_table(&input.name))
        .await
        .map_err(&failed)?
        .schema()
        .as_arrow()
        .clone();
    let text_schema = super::without(&source_schema, &input.partition_columns);
    let parsed = url::Url::parse(&input.url)
        .map_err(|e| failed(datafusion::error::DataFusionError::External(Box::new(e))))?;
    let prefix = parsed.path().trim_start_matches('/').to_string();
    // Files are read again only when some rejects are not duplicates.
    let files = if other_rejects { files } else { &[] };
    for file in files.iter().filter(|f| f.input == input.name) {
        let url = match input.csv.encoding {
            crate::config::Encoding::Utf8 => format!(
                "{}://{}/{}",
                parsed.scheme(),
                parsed.host_str().unwrap_or(""),
                file.path
            ),
            _ => super::transcoded_url(&input.name, &file.path, &prefix),
        };
        let source = match input.format {
            crate::config::InputFormat::Parquet => {
                ctx.read_parquet(&url, datafusion::prelude::ParquetReadOptions::default())
                    .await
            }
            crate::config::InputFormat::Csv => {
                let options = datafusion::prelude::CsvReadOptions::new()
                    .has_header(input.csv.header)
                    .delimiter(input.csv.delimiter as u8)
                    .truncated_rows(true)
                    .file_extension(".csv")
                    .schema(&text_schema);
                ctx.read_csv(&url, options).await
            }
            crate::config::InputFormat::Ndjson => {
                let options = datafusion::prelude::JsonReadOptions::default()
                    .file_extension(".json")
                    .schema(&text_schema);
                ctx.read_json(&url, options).await
            }
        }
        .map_err(&failed)?;
        let checked = checked_frame(source, config, input, now, suppression.clone())?;
        let raw_columns: Vec<String> = checked
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| n.starts_with(RAW_PREFIX))
            .collect();
        let names: Vec<&str> = raw_columns.iter().map(|n| &n[RAW_PREFIX.len()..]).collect();
        let mut selected = vec![column_ref(REASON)];
        selected.extend(raw_columns.iter().map(|n| column_ref(n)));
        let batches = checked
            // Rows with no usable date (none, or one after the run's clock)
            // belong to no period: they are shown in every run's rejects.
            .filter(
                column_ref(REASON).is_not_null().and(
                    column_ref("ordered_date")
                        .is_null()
                        .or(column_ref(REASON).eq(lit("future_timestamp")))
                        .or(in_period.clone()),
                ),
            )
            .map_err(&failed)?
            .select(selected)
            .map_err(&failed)?
            .collect()
            .await
            .map_err(&failed)?;
        for batch in &batches {
            let reasons = batch.column(0).as_string::<i32>();
            let json = rows_as_json(batch, 1, &names)?;
            for (row, json) in json.into_iter().enumerate() {
                rejects.push(RejectedRow {
                    source_file: format!(
                        "{}://{}/{}",
                        parsed.scheme(),
                        parsed.host_str().unwrap_or(""),
                        file.path
                    ),
                    row: json,
                    reason: reasons.value(row).to_string(),
                });
            }
        }
    }
    let frame = ctx
        .table(checked_table(&input.name))
        .await
        .map_err(&failed)?;

    let repeated = match duplicates {
        super::Duplicates::Found(lines) => Some(lines.repeated_lines().to_vec()),
        // Too many candidates to hold: group every usable line (slow, exact).
        super::Duplicates::TooMany | super::Duplicates::Unknown => {
            let columns: Vec<Expr> = usable_columns(input)
                .iter()
                .map(|c| column_ref(c))
                .collect();
            Some(
                frame
                    .filter(column_ref(REASON).is_null())
                    .map_err(&failed)?
                    .aggregate(columns, vec![count(lit(1)).alias("__copies")])
                    .map_err(&failed)?
                    .filter(column_ref("__copies").gt(lit(1i64)))
                    .map_err(&failed)?
                    .collect()
                    .await
                    .map_err(&failed)?,
            )
        }
        super::Duplicates::NoneFound => None,
    };
    if let Some(batches) = repeated {
        let names = row_columns(input);
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        // The file of a duplicate is not known here (a line may repeat
        // across files): the reject names the input.
        for batch in &batches {
            let dates = batch
                .column_by_name("ordered_date")
                .expect("a usable column")
                .as_primitive::<datafusion::arrow::datatypes::Date32Type>();
            let copies = batch
                .column_by_name("__copies")
                .expect("the count column")
                .as_primitive::<Int64Type>();
            let json = rows_as_json(batch, 0, &names)?;
            for (row, json) in json.iter().enumerate() {
                let in_period =
                    dates.is_valid(row) && (days(start)..days(end)).contains(&dates.value(row));
                if !in_period {
                    continue;
                }
                for _ in 1..copies.value(row) {
                    rejects.push(RejectedRow {
                        source_file: input.url.clone(),
                        row: json.clone(),
                        reason: "duplicate_line".to_string(),
                    });
                }
            }
        }
    }
    // A rejected row of an erased customer is counted, never written.
    if let Some(suppression) = &suppression {
        rejects.retain(|reject| !suppression.mentions(&reject.row));
    }
    rejects.sort();
    Ok(rejects)
}

/// Each row of `batch` from column `first` on, as a JSON object with `names`.
fn rows_as_json(
    batch: &RecordBatch,
    first: usize,
    names: &[&str],
) -> Result<Vec<String>, EngineError> {
    let fields: Vec<Field> = names
        .iter()
        .zip(&batch.columns()[first..first + names.len()])
        .map(|(n, c)| Field::new(*n, c.data_type().clone(), true))
        .collect();
    let values = RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        batch.columns()[first..first + names.len()].to_vec(),
    )
    .map_err(|e| EngineError::Read {
        context: "formatting rejects".into(),
        source: e.into(),
    })?;
    let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(Vec::new());
    writer.write(&values).map_err(|e| EngineError::Read {
        context: "formatting rejects".into(),
        source: e.into(),
    })?;
    writer.finish().map_err(|e| EngineError::Read {
        context: "formatting rejects".into(),
        source: e.into(),
    })?;
    let text = String::from_utf8(writer.into_inner()).unwrap_or_default();
    Ok(text.lines().map(str::to_string).collect())
}

/// CSV and NDJSON sources are read as text, every column, so that a bad
/// value becomes a reject instead of failing schema inference.
pub(super) fn all_text(schema: &Schema) -> Schema {
    Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    )
}

use crate::model::units::epoch_days as days;

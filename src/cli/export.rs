//! `segments export`: a campaign list from a published period — the
//! customers of a segment (from `snapshots`), the contacts of an audience
//! (from `audiences`) or those who just made a movement (from `migrations`)
//! — as CSV or Parquet, ready for an emailing tool. Reads only published
//! tables; never writes to the warehouse.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::config::{ClassificationKind, Config, Job, OutputTable};
use crate::model::ExitStatus;
use crate::storage::Warehouse;
use crate::warehouse::publish;

use super::{ConsentChannel, ExportArgs, ExportFormat, Failure, failure, parse_period};

/// The customers who opted in to `channel`, from the config's `customers`
/// input (consent flags).
async fn consented(
    config: &Config,
    channel: ConsentChannel,
) -> Result<std::collections::HashSet<String>, Failure> {
    use datafusion::logical_expr::col;
    if !config.inputs.contains_key("customers") {
        return Err(failure(
            ExitStatus::Invalid,
            anyhow::anyhow!(
                "--channel needs the consent flags of a `customers` input: add `inputs.customers` (url, format, columns email_opt_in / sms_opt_in) to {}",
                config.path.display()
            ),
        ));
    }
    let flag = match channel {
        ConsentChannel::Email => "email_opt_in",
        ConsentChannel::Sms => "sms_opt_in",
    };
    crate::storage::scoped(config.storage.clone(), async {
        let ctx = crate::engine::session(config).map_err(|e| failure(ExitStatus::Internal, e))?;
        // Consent is read from `customers` as registered: merges and the
        // known-by cut apply to dated lines, not to the contact list.
        let _customers = crate::inputs::register(&ctx, config, &["customers".to_string()])
            .await
            .map_err(|e| failure(ExitStatus::InputFailed, e))?;
        let read = |e| {
            failure(
                ExitStatus::InputFailed,
                anyhow::Error::new(e).context("reading the customers input"),
            )
        };
        let batches = ctx
            .table("customers")
            .await
            .map_err(read)?
            .filter(col(flag).is_true())
            .map_err(read)?
            .select(vec![col("customer_id")])
            .map_err(read)?
            .collect()
            .await
            .map_err(read)?;
        Ok(batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_string::<i32>()
                    .iter()
                    .flatten()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect())
    })
    .await
}

/// Which published table and which rows.
fn selection(args: &ExportArgs) -> (OutputTable, &'static str, String) {
    match (&args.segment, &args.audience, &args.movement) {
        (Some(segment), _, _) => (OutputTable::Snapshots, "segment", segment.clone()),
        (None, Some(audience), _) => (OutputTable::Audiences, "audience", audience.clone()),
        (None, None, Some(movement)) => (OutputTable::Migrations, "movement", movement.clone()),
        (None, None, None) => unreachable!("clap requires --segment, --audience or --movement"),
    }
}

fn quote_csv(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

fn to_csv(batch: &RecordBatch) -> Result<String, Failure> {
    let options = FormatOptions::default();
    let formatters: Vec<ArrayFormatter> = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<_, _>>()
        .map_err(|e| failure(ExitStatus::Internal, e))?;
    let mut out = String::new();
    let header: Vec<String> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| quote_csv(f.name()))
        .collect();
    out.push_str(&header.join(","));
    out.push('\n');
    for row in 0..batch.num_rows() {
        let values: Vec<String> = batch
            .columns()
            .iter()
            .zip(&formatters)
            .map(|(column, formatter)| {
                if column.is_null(row) {
                    String::new()
                } else {
                    quote_csv(&formatter.value(row).to_string())
                }
            })
            .collect();
        out.push_str(&values.join(","));
        out.push('\n');
    }
    Ok(out)
}

pub async fn export(args: ExportArgs) -> Result<(), Failure> {
    let job = Job::load(&args.job.job).map_err(|e| failure(ExitStatus::Invalid, e))?;
    let config = Config::load(&args.job.config).map_err(|e| failure(ExitStatus::Invalid, e))?;
    let period = parse_period(&args.period)?;
    let (table, column, value) = selection(&args);
    let (kind, expected) = if args.audience.is_some() {
        ("audience", ClassificationKind::Audiences)
    } else {
        ("segment", ClassificationKind::Segments)
    };
    if args.movement.is_none() && job.kind != expected {
        let (has, flag) = match job.kind {
            ClassificationKind::Segments => ("segments", "--segment"),
            ClassificationKind::Audiences => ("audiences", "--audience"),
        };
        return Err(failure(
            ExitStatus::Invalid,
            anyhow::anyhow!("{} has {has}, not {kind}s: use {flag} NAME", job.name),
        ));
    }
    if args.movement.is_some() && job.kind == ClassificationKind::Audiences {
        return Err(failure(
            ExitStatus::Invalid,
            anyhow::anyhow!(
                "{} has audiences, which overlap and have no movements: use --audience NAME",
                job.name
            ),
        ));
    }
    if args.movement.is_none() && job.segment(&value).is_none() {
        let known: Vec<&str> = job.segments.iter().map(|s| s.name.as_str()).collect();
        return Err(failure(
            ExitStatus::Invalid,
            anyhow::anyhow!(
                "unknown {kind} '{value}'; the {kind}s of {} are {}",
                job.name,
                known.join(", ")
            ),
        ));
    }
    let batches = crate::storage::scoped(config.storage.clone(), async {
        let warehouse = Warehouse::open(&config.warehouse)?;
        if publish::published_manifest(&warehouse, &job.name, period)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        publish::read_table(&warehouse, &job.name, table.name(), period).await
    })
    .await
    .map_err(|e: publish::PublishError| failure(ExitStatus::Storage, e))?;
    let Some(batches) = batches else {
        return Err(failure(
            ExitStatus::Invalid,
            anyhow::anyhow!(
                "{} {period} is not published; run `segments run --period {period}` first",
                job.name
            ),
        ));
    };
    let schema = batches
        .first()
        .map(|b| b.schema())
        .unwrap_or_else(|| Arc::new(crate::model::table_schema(table).schema.as_ref().clone()));
    let all = concat_batches(&schema, &batches).map_err(|e| failure(ExitStatus::Internal, e))?;
    let selected = all
        .column(
            all.schema()
                .index_of(column)
                .map_err(|e| failure(ExitStatus::Internal, e))?,
        )
        .as_string::<i32>();
    let details = match &args.detail {
        Some(_) => Some(
            all.column(
                all.schema()
                    .index_of("detail")
                    .map_err(|e| failure(ExitStatus::Internal, e))?,
            )
            .as_string::<i32>(),
        ),
        None => None,
    };
    let keep: BooleanArray = selected
        .iter()
        .enumerate()
        .map(|(row, v)| {
            let detail_matches = match (&details, &args.detail) {
                (Some(details), Some(wanted)) => {
                    details.is_valid(row) && details.value(row) == wanted.as_str()
                }
                _ => true,
            };
            Some(v == Some(value.as_str()) && detail_matches)
        })
        .collect();
    let rows = filter_record_batch(&all, &keep).map_err(|e| failure(ExitStatus::Internal, e))?;
    // Consent: only those who opted in to the channel.
    let mut excluded = None;
    let rows = match args.channel {
        None => rows,
        Some(channel) => {
            let consented = consented(&config, channel).await?;
            let ids = rows
                .column(
                    rows.schema()
                        .index_of("customer_id")
                        .map_err(|e| failure(ExitStatus::Internal, e))?,
                )
                .as_string::<i32>();
            let keep: BooleanArray = ids
                .iter()
                .map(|id| Some(id.is_some_and(|id| consented.contains(id))))
                .collect();
            let kept =
                filter_record_batch(&rows, &keep).map_err(|e| failure(ExitStatus::Internal, e))?;
            excluded = Some((rows.num_rows() - kept.num_rows(), channel));
            kept
        }
    };

    let mut names = vec!["customer_id".to_string()];
    names.extend(args.columns.iter().filter(|c| *c != "customer_id").cloned());
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for name in &names {
        let index = rows.schema().index_of(name).map_err(|_| {
            let available: Vec<String> = rows
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            failure(
                ExitStatus::Invalid,
                anyhow::anyhow!(
                    "`{name}` is not a column of {table}; available: {}",
                    available.join(", ")
                ),
            )
        })?;
        fields.push(Field::new(
            name,
            rows.column(index).data_type().clone(),
            true,
        ));
        columns.push(rows.column(index).clone());
    }
    let list = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| failure(ExitStatus::Internal, e))?;
    let bytes = match args.format {
        ExportFormat::Csv => to_csv(&list)?.into_bytes(),
        ExportFormat::Parquet => publish::encode_parquet("export", &list)
            .map_err(|e| failure(ExitStatus::Internal, e))?
            .to_vec(),
    };
    std::fs::write(&args.out, bytes).map_err(|e| {
        failure(
            ExitStatus::Internal,
            anyhow::anyhow!("cannot write {}: {e}", args.out.display()),
        )
    })?;
    let detail = args
        .detail
        .as_ref()
        .map(|d| format!(" and detail = {d}"))
        .unwrap_or_default();
    println!(
        "Exported {} customer(s) of {} {period} with {column} = {value}{detail} to {}",
        list.num_rows(),
        job.name,
        args.out.display()
    );
    if let Some((count, channel)) = excluded {
        let channel = match channel {
            ConsentChannel::Email => "email",
            ConsentChannel::Sms => "SMS",
        };
        println!(
            "Excluded {count} customer(s) without {channel} opt-in (the customers input's consent flags)"
        );
    }
    Ok(())
}

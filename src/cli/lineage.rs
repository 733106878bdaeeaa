//! The OpenLineage events of `segments run` and `segments backfill`
//! (docs/guides/lineage.md): what a period run reads and publishes, as the
//! datasets and facets of its START and COMPLETE or FAIL events
//! (src/lineage/ builds and sends them).

use std::collections::BTreeMap;

use crate::config::{Config, Job};
use crate::lineage::{
    EventType, InputDataset, JobFacts, JobKind, Lineage, LineageSettings, OutputDataset, Parent,
    RunEvent, RunFacts,
};
use crate::model::{ExitStatus, Period};
use crate::run::RunOutcome;
use crate::warehouse::layout;

/// The input whose rows the manifest counts.
const TRANSACTIONS: &str = "transactions";

/// Where events go for this command, from the process's `OPENLINEAGE_*`
/// variables and the config's `lineage:` (`None`: the config did not load,
/// the variables alone decide); `None` when off. A destination asked for but
/// unusable is a warning.
pub(crate) fn resolve(settings: Option<&LineageSettings>) -> Option<Lineage> {
    let defaults = LineageSettings::default();
    let env = |name: &str| std::env::var(name).ok();
    match Lineage::resolve(settings.unwrap_or(&defaults), &env) {
        Ok(lineage) => lineage,
        Err(message) => {
            tracing::warn!(
                "no OpenLineage events are sent (the run's outcome is unchanged): {}",
                crate::storage::redact(&message)
            );
            None
        }
    }
}

/// One period's run, as its events see it.
pub(crate) struct PeriodEvents<'a> {
    pub lineage: &'a Lineage,
    pub run_id: String,
    pub job_name: String,
    pub parent: Option<Parent>,
    pub period: Option<Period>,
    pub timezone: chrono_tz::Tz,
    /// The job and config, once loaded.
    pub loaded: Option<(&'a Job, &'a Config)>,
    /// Whether START was sent.
    pub started: bool,
}

impl PeriodEvents<'_> {
    fn event(&self, event_type: EventType) -> RunEvent {
        let mut event = RunEvent::new(event_type, &self.run_id, &self.job_name, JobKind::Period);
        if let Some(period) = self.period {
            event = event.with_period(period, self.timezone);
        }
        event.parent = self.parent.clone();
        if let Some((job, config)) = self.loaded {
            event.job_facts = Some(JobFacts {
                job_hash: job.job_hash.clone(),
                rule_hash: job.rule_hash(config),
                file: job.path.display().to_string(),
            });
            // What the run will read (the files are known at its end).
            event.inputs = job
                .inputs
                .iter()
                .filter_map(|name| config.inputs.get(name))
                .map(|input| InputDataset {
                    input: input.name.clone(),
                    url: input.url.clone(),
                    files: Vec::new(),
                    rows_read: None,
                })
                .collect();
        }
        event
    }

    pub async fn start(&mut self) {
        let event = self.event(EventType::Start);
        self.lineage.send(&event).await;
        self.started = true;
    }

    /// COMPLETE: the files read under each input, the tables published.
    pub async fn complete(&mut self, outcome: &RunOutcome) {
        if !self.started {
            self.start().await;
        }
        let mut event = self.event(EventType::Complete);
        let manifest = &outcome.manifest;
        let mut files: BTreeMap<&str, Vec<crate::model::InputFile>> = BTreeMap::new();
        for file in &manifest.inputs {
            files.entry(&file.input).or_default().push(file.clone());
        }
        for input in &mut event.inputs {
            input.files = files.remove(input.input.as_str()).unwrap_or_default();
            if input.input == TRANSACTIONS {
                input.rows_read = Some(manifest.rows.read);
            }
        }
        let job = &outcome.manifest.job;
        event.outputs = outcome
            .tables
            .tables
            .iter()
            .map(|table| OutputDataset {
                url: format!("{}{job}/{}", outcome.warehouse, table.table.name()),
                rows: table.rows,
                size: table.parquet.len() as u64,
                fields: fields_of(&table.parquet),
            })
            .collect();
        event.run_facts = Some(RunFacts {
            rows: manifest.rows.clone(),
            rejected_by_reason: manifest.rejected_by_reason.clone(),
            manifest: format!(
                "{}{job}/{}/{}/{}",
                outcome.warehouse,
                layout::RUNS,
                layout::partition(outcome.period),
                layout::MANIFEST
            ),
        });
        event.exit_code = Some(ExitStatus::Success.code());
        self.lineage.send(&event).await;
    }

    /// FAIL, after a START if none was sent: the error and the exit code.
    pub async fn fail(&mut self, code: ExitStatus, error: &(dyn std::error::Error + 'static)) {
        if !self.started {
            self.start().await;
        }
        let mut event = self.event(EventType::Fail);
        event.error = Some(message_of(error));
        event.exit_code = Some(code.code());
        self.lineage.send(&event).await;
    }
}

/// The error and its causes on one line, redacted as the command's own
/// error output is.
pub(crate) fn message_of(error: &(dyn std::error::Error + 'static)) -> String {
    crate::model::causes::causes(error)
        .iter()
        .map(|m| crate::storage::redact(m))
        .collect::<Vec<_>>()
        .join(": ")
}

/// The columns of a Parquet file and their Arrow types, from its footer;
/// none when it does not read (the event goes without its schema facet).
fn fields_of(parquet: &bytes::Bytes) -> Vec<(String, String)> {
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    match ParquetRecordBatchReaderBuilder::try_new(parquet.clone()) {
        Ok(builder) => builder
            .schema()
            .fields()
            .iter()
            .map(|field| (field.name().clone(), field.data_type().to_string()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

//! Sends OpenLineage run events (docs/guides/lineage.md): a START and a
//! COMPLETE or FAIL event for every period a command runs, with the inputs
//! read, the tables published, the job's rule hash and the row counts as
//! facets, POSTed to an OpenLineage endpoint (HTTP transport) or appended to
//! a file, one JSON event a line.
//!
//! Off unless a destination is set, by the variables the OpenLineage clients
//! read (`OPENLINEAGE_URL`, `OPENLINEAGE__TRANSPORT__TYPE=file`, … see
//! [`Lineage::resolve`]) or by `lineage:` in the config. An event that cannot
//! be sent is a warning, never a change of the run's exit code; after the
//! first such failure the command sends no more (so a receiver that does not
//! answer costs one [`TIMEOUT`], not one per event).
//!
//! The events follow the OpenLineage spec 2-0-2 ([`SCHEMA_URL`]); the tests
//! validate them against the official JSON schemas vendored in
//! `tests/fixtures/openlineage/`, and the facets of our own against
//! `schemas/openlineage-facets.json`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::model::{InputFile, Period};

/// Sending one event (connect, send, answer) gives up after this (the
/// Python client's default).
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The spec version the events follow.
pub const SCHEMA_URL: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";

/// Who produced the events: this program and its version. A URN, as the
/// project has no public home to link to yet.
pub const PRODUCER: &str = concat!("urn:segments:", env!("CARGO_PKG_VERSION"));

/// The `$id` of `schemas/openlineage-facets.json`, the schema of the facets
/// of our own (`segments_*`).
pub const FACETS_SCHEMA: &str = "urn:segments:schemas:openlineage-facets:1";

/// The job namespace when none is set (the OpenLineage clients' default).
pub const DEFAULT_NAMESPACE: &str = "default";

/// The HTTP transport's endpoint, joined to the URL (the clients' default).
pub const DEFAULT_ENDPOINT: &str = "api/v1/lineage";

/// `lineage:` in a config file.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LineageSettings {
    /// Base URL of an OpenLineage HTTP endpoint (`http://` or `https://`,
    /// e.g. `http://marquez.lineage:5000`); events are POSTed to it joined
    /// with `endpoint`. `OPENLINEAGE_URL` overrides it. No events when no
    /// destination is set.
    #[serde(default)]
    #[schemars(extend("x-docs" = "guides/lineage.md"))]
    pub url: Option<String>,
    /// Path joined to `url` (default `api/v1/lineage`); `OPENLINEAGE_ENDPOINT`
    /// overrides it.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// A local file the events are appended to, one JSON event a line,
    /// instead of (not with) `url`; a relative path is from the working
    /// directory, like the warehouse's. Its directory must exist.
    #[serde(default)]
    pub file: Option<String>,
    /// The namespace of the jobs in the events (default `default`);
    /// `OPENLINEAGE_NAMESPACE` overrides it.
    #[serde(default)]
    pub namespace: Option<String>,
}

impl LineageSettings {
    /// Problems as (key, message).
    pub fn check(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if let Some(url) = &self.url
            && let Err(message) = check_url(url)
        {
            problems.push(("lineage.url".to_string(), message));
        }
        if self.url.is_some() && self.file.is_some() {
            problems.push((
                "lineage.file".to_string(),
                "give `url` (HTTP transport) or `file`, not both".to_string(),
            ));
        }
        if self.file.as_deref().is_some_and(|f| f.trim().is_empty()) {
            problems.push((
                "lineage.file".to_string(),
                "is empty: give the path of the file to append the events to, or remove the key"
                    .to_string(),
            ));
        }
        if self
            .namespace
            .as_deref()
            .is_some_and(|n| n.trim().is_empty())
        {
            problems.push((
                "lineage.namespace".to_string(),
                "is empty: give a namespace, or remove the key for `default`".to_string(),
            ));
        }
        problems
    }
}

/// The URL parsed, or why not (without the URL's credentials).
fn check_url(url: &str) -> Result<url::Url, String> {
    let parsed = url::Url::parse(url.trim())
        .map_err(|e| format!("'{}' is not a URL: {e}", redact_url(url)))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!(
            "'{}' is not an http:// or https:// URL of an OpenLineage endpoint",
            redact_url(url)
        ));
    }
    Ok(parsed)
}

/// `url` without its credentials, for logs.
pub use crate::model::url::redact_url;

/// Where the events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// POST each event to this URL (the base URL joined with the endpoint).
    Http {
        url: String,
        /// Sent as `Authorization: Bearer <key>`.
        api_key: Option<String>,
    },
    /// Append each event, one JSON document a line.
    File(PathBuf),
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Http { url, .. } => f.write_str(&redact_url(url)),
            Destination::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A job (namespace, name) and one of its runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRef {
    pub namespace: String,
    pub job: String,
    pub run_id: String,
}

/// The `parent` run facet: the run that started this one, and the root of
/// the chain (the parent itself when it has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parent {
    pub parent: RunRef,
    pub root: RunRef,
}

/// Where events go, in which namespace, under which parent.
#[derive(Debug)]
pub struct Lineage {
    pub destination: Destination,
    pub namespace: String,
    /// The parent the scheduler gave (`OPENLINEAGE_CONTEXT`,
    /// `OPENLINEAGE_PARENT_ID`), if any.
    pub parent: Option<Parent>,
    /// Set by the first event that could not be sent: no more are tried.
    given_up: AtomicBool,
}

/// A variable's value, trimmed, when set and not empty.
fn var(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

impl Lineage {
    /// The destination, namespace and parent from the environment (the
    /// process's, through `env`) and the config's `lineage:`; `None` when no
    /// destination is set or `OPENLINEAGE_DISABLED=true`. Err says why
    /// events cannot be sent although asked for (a warning for the caller).
    ///
    /// Honoured, as the OpenLineage clients read them:
    /// `OPENLINEAGE_DISABLED`; `OPENLINEAGE__TRANSPORT__TYPE` (`http` or
    /// `file`) with `OPENLINEAGE__TRANSPORT__URL`, `__ENDPOINT` and
    /// `__LOG_FILE_PATH`; `OPENLINEAGE_URL`, `OPENLINEAGE_ENDPOINT`,
    /// `OPENLINEAGE_API_KEY`; `OPENLINEAGE_NAMESPACE`; the parent from
    /// `OPENLINEAGE_CONTEXT` (JSON), else `OPENLINEAGE_PARENT_ID` and
    /// `OPENLINEAGE_ROOT_PARENT_ID` (`namespace/job/runId`).
    pub fn resolve(
        settings: &LineageSettings,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Lineage>, String> {
        if var(env, "OPENLINEAGE_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let endpoint = || {
            var(env, "OPENLINEAGE__TRANSPORT__ENDPOINT")
                .or_else(|| var(env, "OPENLINEAGE_ENDPOINT"))
                .or_else(|| settings.endpoint.clone())
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
        };
        let http = |base: String, origin: &str| -> Result<Destination, String> {
            let parsed = check_url(&base).map_err(|e| format!("{origin}: {e}"))?;
            let url = parsed
                .join(endpoint().trim())
                .map_err(|e| format!("{origin}: joining the endpoint: {e}"))?;
            Ok(Destination::Http {
                url: url.to_string(),
                api_key: var(env, "OPENLINEAGE_API_KEY"),
            })
        };
        let destination = match var(env, "OPENLINEAGE__TRANSPORT__TYPE").as_deref() {
            Some(kind) if kind.eq_ignore_ascii_case("http") => {
                let (base, origin) = match var(env, "OPENLINEAGE__TRANSPORT__URL") {
                    Some(url) => (url, "OPENLINEAGE__TRANSPORT__URL"),
                    None => match var(env, "OPENLINEAGE_URL") {
                        Some(url) => (url, "OPENLINEAGE_URL"),
                        None => {
                            return Err("OPENLINEAGE__TRANSPORT__TYPE=http needs OPENLINEAGE__TRANSPORT__URL (or OPENLINEAGE_URL)".to_string());
                        }
                    },
                };
                http(base, origin)?
            }
            Some(kind) if kind.eq_ignore_ascii_case("file") => {
                match var(env, "OPENLINEAGE__TRANSPORT__LOG_FILE_PATH") {
                    Some(path) => Destination::File(PathBuf::from(path)),
                    None => return Err("OPENLINEAGE__TRANSPORT__TYPE=file needs OPENLINEAGE__TRANSPORT__LOG_FILE_PATH, the file to append the events to".to_string()),
                }
            }
            Some(other) => {
                return Err(format!(
                    "OPENLINEAGE__TRANSPORT__TYPE={other} is not a transport segments has: use http or file"
                ));
            }
            None => match var(env, "OPENLINEAGE_URL") {
                Some(url) => http(url, "OPENLINEAGE_URL")?,
                None => match (&settings.url, &settings.file) {
                    (Some(url), _) => http(url.clone(), "lineage.url")?,
                    (None, Some(file)) => Destination::File(PathBuf::from(file.trim())),
                    (None, None) => return Ok(None),
                },
            },
        };
        let namespace = var(env, "OPENLINEAGE_NAMESPACE")
            .or_else(|| settings.namespace.clone().map(|n| n.trim().to_string()))
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        let parent = parent_from_env(env)?;
        Ok(Some(Lineage {
            destination,
            namespace,
            parent,
            given_up: AtomicBool::new(false),
        }))
    }

    /// A run of `job` in this namespace.
    pub fn run(&self, job: &str, run_id: &str) -> RunRef {
        RunRef {
            namespace: self.namespace.clone(),
            job: job.to_string(),
            run_id: run_id.to_string(),
        }
    }

    /// The parent facet of a run started by `parent` (a backfill's period):
    /// the root is the scheduler's root when there is one, else `parent`.
    pub fn child_of(&self, parent: RunRef) -> Parent {
        let root = match &self.parent {
            Some(scheduler) => scheduler.root.clone(),
            None => parent.clone(),
        };
        Parent { parent, root }
    }

    /// Send one event; a failure is logged as a warning and stops the
    /// events of the rest of the command.
    pub async fn send(&self, event: &RunEvent) {
        if self.given_up.load(Ordering::Relaxed) {
            return;
        }
        let body = event.to_json(&self.namespace);
        match self.deliver(&body).await {
            Ok(()) => tracing::debug!(
                event = event.event_type.as_str(),
                run_id = %event.run_id,
                "sent the OpenLineage event to {}",
                self.destination
            ),
            Err(message) => {
                self.given_up.store(true, Ordering::Relaxed);
                tracing::warn!(
                    "could not send the OpenLineage {} event of run {} to {} (the run's outcome is unchanged; this command sends no more events): {}",
                    event.event_type.as_str(),
                    event.run_id,
                    self.destination,
                    message
                );
            }
        }
    }

    async fn deliver(&self, body: &Value) -> Result<(), String> {
        match &self.destination {
            Destination::File(path) => {
                use std::io::Write as _;
                let mut line = serde_json::to_vec(body).map_err(|e| e.to_string())?;
                line.push(b'\n');
                // One write of a whole line: appends from concurrent runs
                // do not interleave within a line.
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|mut file| file.write_all(&line))
                    .map_err(|e| format!("appending to {}: {e}", path.display()))
            }
            Destination::Http { url, api_key } => {
                let http = |error: reqwest::Error| {
                    crate::model::causes::causes(&error.without_url()).join(": ")
                };
                let client = reqwest::Client::builder()
                    .timeout(TIMEOUT)
                    .connect_timeout(TIMEOUT / 2)
                    .build()
                    .map_err(http)?;
                let mut request = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body.to_string());
                if let Some(key) = api_key {
                    request = request.bearer_auth(key);
                }
                let response = request.send().await.map_err(http)?;
                let status = response.status();
                if status.is_success() {
                    return Ok(());
                }
                let text = response.text().await.unwrap_or_default();
                let text: String = text.trim().chars().take(300).collect();
                Err(format!("the endpoint answered {}: {text}", status.as_u16()))
            }
        }
    }
}

/// The scheduler's parent run: `OPENLINEAGE_CONTEXT` first, else
/// `OPENLINEAGE_PARENT_ID` (+ `OPENLINEAGE_ROOT_PARENT_ID`).
fn parent_from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<Parent>, String> {
    if let Some(context) = var(env, "OPENLINEAGE_CONTEXT") {
        let value: Value = serde_json::from_str(&context)
            .map_err(|e| format!("OPENLINEAGE_CONTEXT is not JSON: {e}"))?;
        let run_ref = |at: &Value, what: &str| -> Result<RunRef, String> {
            let text = |pointer: &str| {
                at.pointer(pointer)
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| format!("OPENLINEAGE_CONTEXT has no {what}{pointer}"))
            };
            Ok(RunRef {
                run_id: uuid_text(&text("/run/runId")?)
                    .map_err(|e| format!("OPENLINEAGE_CONTEXT {what}/run/runId: {e}"))?,
                namespace: text("/job/namespace")?,
                job: text("/job/name")?,
            })
        };
        let parent_value = value.get("parent").unwrap_or(&Value::Null);
        let parent = run_ref(parent_value, "parent")?;
        let root = match parent_value.get("root") {
            Some(root) => run_ref(root, "parent/root")?,
            None => parent.clone(),
        };
        return Ok(Some(Parent { parent, root }));
    }
    let Some(parent_id) = var(env, "OPENLINEAGE_PARENT_ID") else {
        return Ok(None);
    };
    let parent = parse_parent_id(&parent_id, "OPENLINEAGE_PARENT_ID")?;
    let root = match var(env, "OPENLINEAGE_ROOT_PARENT_ID") {
        Some(root) => parse_parent_id(&root, "OPENLINEAGE_ROOT_PARENT_ID")?,
        None => parent.clone(),
    };
    Ok(Some(Parent { parent, root }))
}

/// `namespace/job/runId`, as Airflow's `lineage_parent_id` macro writes it.
fn parse_parent_id(text: &str, name: &str) -> Result<RunRef, String> {
    let parts: Vec<&str> = text.split('/').collect();
    let [namespace, job, run_id] = parts[..] else {
        return Err(format!(
            "{name} is not namespace/job/runId (three parts separated by /): '{text}'"
        ));
    };
    Ok(RunRef {
        namespace: namespace.to_string(),
        job: job.to_string(),
        run_id: uuid_text(run_id).map_err(|e| format!("{name}: {e}"))?,
    })
}

fn uuid_text(text: &str) -> Result<String, String> {
    uuid::Uuid::parse_str(text)
        .map(|id| id.hyphenated().to_string())
        .map_err(|e| format!("the run id '{text}' is not a UUID: {e}"))
}

/// A new run id: a UUID v7 (time-ordered, as the spec recommends): the
/// Unix time in milliseconds, then random bits (those of a v4 UUID, so the
/// `uuid` crate needs no other feature, which would rebuild its dependents).
pub fn new_run_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let random = uuid::Uuid::new_v4();
    let mut bytes = [0u8; 10];
    bytes.copy_from_slice(&random.as_bytes()[6..]);
    uuid::Builder::from_unix_timestamp_millis(millis, &bytes)
        .into_uuid()
        .to_string()
}

/// The transition an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Start,
    Complete,
    Fail,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Start => "START",
            EventType::Complete => "COMPLETE",
            EventType::Fail => "FAIL",
        }
    }
}

/// An input read: a configured source (a file or a prefix), the files read
/// under it and, for the transactions, the rows read.
#[derive(Debug, Clone)]
pub struct InputDataset {
    /// The input's name in the config.
    pub input: String,
    /// Its URL (`file:///…`, `s3://bucket/prefix/`).
    pub url: String,
    /// The files read; empty on START and FAIL (not listed yet or unknown).
    pub files: Vec<InputFile>,
    pub rows_read: Option<u64>,
}

/// A table published.
#[derive(Debug, Clone)]
pub struct OutputDataset {
    /// The table's folder URL in the warehouse (all periods).
    pub url: String,
    pub rows: u64,
    /// Bytes of the period's file.
    pub size: u64,
    /// (column, type) in order.
    pub fields: Vec<(String, String)>,
}

/// What the job is: its hashes, as its `segments_job` facet.
#[derive(Debug, Clone)]
pub struct JobFacts {
    pub job_hash: String,
    pub rule_hash: String,
    /// The job file.
    pub file: String,
}

/// What a successful period run counted, as its `segments_run` facet.
#[derive(Debug, Clone)]
pub struct RunFacts {
    pub rows: crate::model::RowCounts,
    pub rejected_by_reason: std::collections::BTreeMap<String, u64>,
    /// The URL of the period's `_manifest.json`.
    pub manifest: String,
}

/// The kind of job run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// One period.
    Period,
    /// A backfill, the parent of its periods' runs.
    Backfill,
}

/// One run event, before it is JSON.
#[derive(Debug, Clone)]
pub struct RunEvent {
    pub event_type: EventType,
    pub event_time: DateTime<Utc>,
    pub run_id: String,
    pub job: String,
    pub kind: JobKind,
    pub parent: Option<Parent>,
    /// The period (`YYYY-MM`, or `YYYY-MM..YYYY-MM` for a backfill) and its
    /// nominal start and end (RFC 3339).
    pub period: Option<(String, String, String)>,
    pub job_facts: Option<JobFacts>,
    pub run_facts: Option<RunFacts>,
    /// FAIL: the error and its causes.
    pub error: Option<String>,
    pub exit_code: Option<u8>,
    pub inputs: Vec<InputDataset>,
    pub outputs: Vec<OutputDataset>,
}

impl RunEvent {
    /// An event with nothing but its type, run and job.
    pub fn new(event_type: EventType, run_id: &str, job: &str, kind: JobKind) -> Self {
        RunEvent {
            event_type,
            event_time: Utc::now(),
            run_id: run_id.to_string(),
            job: job.to_string(),
            kind,
            parent: None,
            period: None,
            job_facts: None,
            run_facts: None,
            error: None,
            exit_code: None,
            inputs: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// The period, its nominal start and end at midnight in `timezone`.
    pub fn with_period(self, period: Period, timezone: chrono_tz::Tz) -> Self {
        self.with_periods(period, period, timezone)
    }

    /// The periods `from..to` (a backfill's), from the start of the first
    /// to the end of the last.
    pub fn with_periods(mut self, from: Period, to: Period, timezone: chrono_tz::Tz) -> Self {
        let instant = |date: chrono::NaiveDate| {
            let midnight = date.and_hms_opt(0, 0, 0).expect("midnight exists");
            // A midnight skipped by a DST change: the first instant after it.
            timezone
                .from_local_datetime(&midnight)
                .earliest()
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_else(|| Utc.from_utc_datetime(&midnight))
                .to_rfc3339_opts(SecondsFormat::Secs, true)
        };
        let name = if from == to {
            from.to_string()
        } else {
            format!("{from}..{to}")
        };
        self.period = Some((name, instant(from.start()), instant(to.end())));
        self
    }

    /// The event as the spec's JSON, its job in `namespace`.
    pub fn to_json(&self, namespace: &str) -> Value {
        let mut run_facets = Map::new();
        if let Some(parent) = &self.parent {
            let reference = |r: &RunRef| {
                json!({
                    "run": {"runId": r.run_id},
                    "job": {"namespace": r.namespace, "name": r.job},
                })
            };
            let mut facet = standard("1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet");
            let parent_ref = reference(&parent.parent);
            facet.insert("run".into(), parent_ref["run"].clone());
            facet.insert("job".into(), parent_ref["job"].clone());
            facet.insert("root".into(), reference(&parent.root));
            run_facets.insert("parent".into(), Value::Object(facet));
        }
        if let Some((_, start, end)) = &self.period {
            let mut facet = standard("1-0-1/NominalTimeRunFacet.json#/$defs/NominalTimeRunFacet");
            facet.insert("nominalStartTime".into(), start.as_str().into());
            facet.insert("nominalEndTime".into(), end.as_str().into());
            run_facets.insert("nominalTime".into(), Value::Object(facet));
        }
        if let Some(error) = &self.error {
            let mut facet = standard("1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet");
            facet.insert("message".into(), error.as_str().into());
            facet.insert("programmingLanguage".into(), "RUST".into());
            run_facets.insert("errorMessage".into(), Value::Object(facet));
        }
        let mut own = custom("SegmentsRunFacet");
        if let Some((period, _, _)) = &self.period {
            own.insert("period".into(), period.as_str().into());
        }
        if let Some(code) = self.exit_code {
            own.insert("exitCode".into(), code.into());
        }
        if let Some(facts) = &self.run_facts {
            own.insert(
                "rows".into(),
                json!({
                    "read": facts.rows.read,
                    "used": facts.rows.used,
                    "anonymous": facts.rows.anonymous,
                    "rejected": facts.rows.rejected,
                }),
            );
            own.insert(
                "rejectedByReason".into(),
                serde_json::to_value(&facts.rejected_by_reason).unwrap_or_default(),
            );
            own.insert("manifest".into(), facts.manifest.as_str().into());
        }
        if own.len() > 2 {
            run_facets.insert("segments_run".into(), Value::Object(own));
        }

        let mut job_facets = Map::new();
        let mut job_type = standard("2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet");
        job_type.insert("processingType".into(), "BATCH".into());
        job_type.insert("integration".into(), "SEGMENTS".into());
        job_type.insert(
            "jobType".into(),
            match self.kind {
                JobKind::Period => "JOB",
                JobKind::Backfill => "BACKFILL",
            }
            .into(),
        );
        job_facets.insert("jobType".into(), Value::Object(job_type));
        if let Some(facts) = &self.job_facts {
            let mut facet = custom("SegmentsJobFacet");
            facet.insert("jobHash".into(), facts.job_hash.as_str().into());
            facet.insert("ruleHash".into(), facts.rule_hash.as_str().into());
            facet.insert("file".into(), facts.file.as_str().into());
            job_facets.insert("segments_job".into(), Value::Object(facet));
        }

        let inputs: Vec<Value> = self.inputs.iter().map(input_json).collect();
        let outputs: Vec<Value> = self.outputs.iter().map(output_json).collect();
        json!({
            "eventType": self.event_type.as_str(),
            "eventTime": self.event_time.to_rfc3339_opts(SecondsFormat::Millis, true),
            "producer": PRODUCER,
            "schemaURL": SCHEMA_URL,
            "run": {"runId": self.run_id, "facets": run_facets},
            "job": {"namespace": namespace, "name": self.job, "facets": job_facets},
            "inputs": inputs,
            "outputs": outputs,
        })
    }
}

/// A standard facet's `_producer` and `_schemaURL` (`path` under
/// `https://openlineage.io/spec/facets/`).
fn standard(path: &str) -> Map<String, Value> {
    let mut facet = Map::new();
    facet.insert("_producer".into(), PRODUCER.into());
    facet.insert(
        "_schemaURL".into(),
        format!("https://openlineage.io/spec/facets/{path}").into(),
    );
    facet
}

/// A facet of ours: its schema is `$defs/<name>` of [`FACETS_SCHEMA`].
fn custom(name: &str) -> Map<String, Value> {
    let mut facet = Map::new();
    facet.insert("_producer".into(), PRODUCER.into());
    facet.insert(
        "_schemaURL".into(),
        format!("{FACETS_SCHEMA}#/$defs/{name}").into(),
    );
    facet
}

fn input_json(input: &InputDataset) -> Value {
    let (namespace, name) = dataset_name(&input.url);
    let mut dataset = json!({"namespace": namespace, "name": name});
    if !input.files.is_empty() || input.rows_read.is_some() {
        let mut statistics = standard(
            "1-0-0/InputStatisticsInputDatasetFacet.json#/$defs/InputStatisticsInputDatasetFacet",
        );
        if let Some(rows) = input.rows_read {
            statistics.insert("rowCount".into(), rows.into());
        }
        statistics.insert(
            "size".into(),
            input.files.iter().map(|f| f.size).sum::<u64>().into(),
        );
        statistics.insert("fileCount".into(), input.files.len().into());
        let mut files = custom("SegmentsInputFilesFacet");
        files.insert("input".into(), input.input.as_str().into());
        files.insert(
            "files".into(),
            input
                .files
                .iter()
                .map(|f| {
                    let mut file = json!({"path": f.path, "size": f.size});
                    if let Some(tag) = &f.e_tag {
                        file["eTag"] = tag.as_str().into();
                    }
                    if let Some(modified) = &f.last_modified {
                        file["lastModified"] = modified.as_str().into();
                    }
                    file
                })
                .collect::<Vec<_>>()
                .into(),
        );
        dataset["inputFacets"] = json!({
            "inputStatistics": statistics,
            "segments_inputFiles": files,
        });
    }
    dataset
}

fn output_json(output: &OutputDataset) -> Value {
    let (namespace, name) = dataset_name(&output.url);
    let mut statistics = standard(
        "1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet",
    );
    statistics.insert("rowCount".into(), output.rows.into());
    statistics.insert("size".into(), output.size.into());
    statistics.insert("fileCount".into(), 1.into());
    let mut dataset = json!({
        "namespace": namespace,
        "name": name,
        "outputFacets": {"outputStatistics": statistics},
    });
    if !output.fields.is_empty() {
        let mut schema = standard("1-2-0/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet");
        schema.insert(
            "fields".into(),
            output
                .fields
                .iter()
                .map(|(name, kind)| json!({"name": name, "type": kind}))
                .collect::<Vec<_>>()
                .into(),
        );
        dataset["facets"] = json!({ "schema": schema });
    }
    dataset
}

/// A dataset's (namespace, name) from its URL, by the OpenLineage naming
/// conventions: a local path is (`file`, the absolute path); an object store
/// URL is (`scheme://bucket`, the key without its leading `/`). A trailing
/// `/` (a prefix) is left out; credentials never appear.
pub fn dataset_name(url: &str) -> (String, String) {
    match url::Url::parse(url) {
        Ok(parsed) if parsed.scheme() == "file" => {
            let path = parsed
                .to_file_path()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| parsed.path().to_string());
            ("file".to_string(), trim_slash(&path, "/"))
        }
        Ok(parsed) if parsed.scheme().len() > 1 => {
            let mut namespace =
                format!("{}://{}", parsed.scheme(), parsed.host_str().unwrap_or(""));
            if let Some(port) = parsed.port() {
                namespace.push_str(&format!(":{port}"));
            }
            let name = trim_slash(parsed.path().trim_start_matches('/'), "/");
            (namespace, name)
        }
        // A path (a warehouse given as a directory).
        _ => ("file".to_string(), trim_slash(url, "/")),
    }
}

/// `path` without its trailing `/`s, or `empty` when nothing is left.
fn trim_slash(path: &str, empty: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        empty.to_string()
    } else {
        trimmed.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const RUN: &str = "0190b3a1-2c3d-7e4f-8a9b-0c1d2e3f4a5b";

    #[test]
    fn nothing_is_sent_unless_a_destination_is_set() {
        let settings = LineageSettings::default();
        assert!(Lineage::resolve(&settings, &env(&[])).unwrap().is_none());
        // Empty values count as unset (a ConfigMap's `OPENLINEAGE_URL=`).
        assert!(
            Lineage::resolve(&settings, &env(&[("OPENLINEAGE_URL", " ")]))
                .unwrap()
                .is_none()
        );
        let disabled = env(&[
            ("OPENLINEAGE_URL", "http://x:5000"),
            ("OPENLINEAGE_DISABLED", "TRUE"),
        ]);
        assert!(Lineage::resolve(&settings, &disabled).unwrap().is_none());
    }

    #[test]
    fn the_clients_variables_pick_the_destination_over_the_config() {
        let settings = LineageSettings {
            url: Some("http://config:5000".into()),
            namespace: Some("from_config".into()),
            ..Default::default()
        };
        let from_config = Lineage::resolve(&settings, &env(&[])).unwrap().unwrap();
        assert_eq!(
            from_config.destination,
            Destination::Http {
                url: "http://config:5000/api/v1/lineage".into(),
                api_key: None
            }
        );
        assert_eq!(from_config.namespace, "from_config");
        let lineage = Lineage::resolve(
            &settings,
            &env(&[
                ("OPENLINEAGE_URL", "http://env:5000"),
                ("OPENLINEAGE_ENDPOINT", "api/v2/events"),
                ("OPENLINEAGE_API_KEY", "k"),
                ("OPENLINEAGE_NAMESPACE", "prod"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            lineage.destination,
            Destination::Http {
                url: "http://env:5000/api/v2/events".into(),
                api_key: Some("k".into())
            }
        );
        assert_eq!(lineage.namespace, "prod");
        let file = Lineage::resolve(
            &settings,
            &env(&[
                ("OPENLINEAGE_URL", "http://env:5000"),
                ("OPENLINEAGE__TRANSPORT__TYPE", "file"),
                ("OPENLINEAGE__TRANSPORT__LOG_FILE_PATH", "/tmp/events.jsonl"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            file.destination,
            Destination::File("/tmp/events.jsonl".into())
        );
        let http = Lineage::resolve(
            &settings,
            &env(&[
                ("OPENLINEAGE__TRANSPORT__TYPE", "http"),
                ("OPENLINEAGE__TRANSPORT__URL", "https://gw.example/lineage/"),
                ("OPENLINEAGE__TRANSPORT__ENDPOINT", "api/v1/lineage"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            http.destination,
            Destination::Http {
                url: "https://gw.example/lineage/api/v1/lineage".into(),
                api_key: None
            }
        );
        assert!(
            Lineage::resolve(
                &settings,
                &env(&[("OPENLINEAGE__TRANSPORT__TYPE", "kafka")])
            )
            .unwrap_err()
            .contains("kafka")
        );
        assert!(
            Lineage::resolve(&settings, &env(&[("OPENLINEAGE__TRANSPORT__TYPE", "file")]))
                .unwrap_err()
                .contains("LOG_FILE_PATH")
        );
    }

    #[test]
    fn the_parent_comes_from_the_context_or_the_parent_id() {
        let settings = LineageSettings {
            file: Some("/tmp/x".into()),
            ..Default::default()
        };
        let parent_id = format!("airflow/dag.task/{RUN}");
        let lineage = Lineage::resolve(&settings, &env(&[("OPENLINEAGE_PARENT_ID", &parent_id)]))
            .unwrap()
            .unwrap();
        let parent = lineage.parent.clone().unwrap();
        assert_eq!(parent.parent.job, "dag.task");
        assert_eq!(parent.root, parent.parent);
        // A backfill's period: parent the backfill, root the scheduler's.
        let child = lineage.child_of(lineage.run("j.backfill", RUN));
        assert_eq!(child.parent.job, "j.backfill");
        assert_eq!(child.root.namespace, "airflow");
        let context = format!(
            r#"{{"parent": {{"run": {{"runId": "{RUN}"}}, "job": {{"namespace": "n", "name": "p"}},
                "root": {{"run": {{"runId": "{RUN}"}}, "job": {{"namespace": "rn", "name": "r"}}}}}}}}"#
        );
        let lineage = Lineage::resolve(
            &settings,
            &env(&[
                ("OPENLINEAGE_CONTEXT", &context),
                ("OPENLINEAGE_PARENT_ID", "ignored"),
            ]),
        )
        .unwrap()
        .unwrap();
        let parent = lineage.parent.unwrap();
        assert_eq!(
            (parent.parent.job.as_str(), parent.root.job.as_str()),
            ("p", "r")
        );
        let bad = Lineage::resolve(
            &settings,
            &env(&[("OPENLINEAGE_PARENT_ID", "a/b/not-a-uuid")]),
        );
        assert!(bad.unwrap_err().contains("not a UUID"));
        let bad = Lineage::resolve(&settings, &env(&[("OPENLINEAGE_PARENT_ID", "a/b")]));
        assert!(bad.unwrap_err().contains("namespace/job/runId"));
    }

    #[test]
    fn datasets_are_named_by_the_openlineage_conventions() {
        assert_eq!(
            dataset_name("s3://acme-raw/transactions/"),
            ("s3://acme-raw".into(), "transactions".into())
        );
        assert_eq!(
            dataset_name("file:///data/warehouse/rfm/snapshots"),
            ("file".into(), "/data/warehouse/rfm/snapshots".into())
        );
        assert_eq!(
            dataset_name("http://user:secret@127.0.0.1:9000/bucket/key"),
            ("http://127.0.0.1:9000".into(), "bucket/key".into())
        );
        assert_eq!(dataset_name("/srv/wh/"), ("file".into(), "/srv/wh".into()));
    }

    #[test]
    fn a_failed_event_says_why_and_a_period_has_its_nominal_time() {
        let mut event = RunEvent::new(EventType::Fail, RUN, "rfm_monthly", JobKind::Period)
            .with_period("2024-03".parse().unwrap(), chrono_tz::Europe::Paris);
        event.error = Some("gate failed".into());
        event.exit_code = Some(3);
        let json = event.to_json("ns");
        assert_eq!(json["eventType"], "FAIL");
        assert_eq!(json["job"]["namespace"], "ns");
        let facets = &json["run"]["facets"];
        assert_eq!(facets["errorMessage"]["message"], "gate failed");
        assert_eq!(
            facets["nominalTime"]["nominalStartTime"],
            "2024-02-29T23:00:00Z"
        );
        // The end is in summer time (the last Sunday of March is the 31st).
        assert_eq!(
            facets["nominalTime"]["nominalEndTime"],
            "2024-03-31T22:00:00Z"
        );
        assert_eq!(facets["segments_run"]["exitCode"], 3);
        assert!(json["run"]["facets"].get("parent").is_none());
    }

    #[test]
    fn run_ids_are_time_ordered_v7_uuids() {
        let first = uuid::Uuid::parse_str(&new_run_id()).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let second = uuid::Uuid::parse_str(&new_run_id()).unwrap();
        assert_eq!(first.get_version_num(), 7);
        assert_eq!(first.get_variant(), uuid::Variant::RFC4122);
        assert!(first < second);
    }

    #[test]
    fn config_problems_name_their_key() {
        let problems = LineageSettings {
            url: Some("marquez:5000".into()),
            file: Some("/tmp/x".into()),
            ..Default::default()
        }
        .check();
        let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["lineage.url", "lineage.file"], "{problems:?}");
    }
}

//! `jobs/*.yaml`: what to compute. Inputs by logical name, ordered SQL steps
//! (each a view for the next), the ordered segments and the outputs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::error::{ConfigError, Problem};
use super::locale::{Localized, TextFile};
use super::predict::{self, Predict, PredictFile};
use super::scoring::{self, Scoring, ScoringFile};
use super::settings::{Config, KNOWN_INPUTS, is_identifier};
use super::yaml;
use crate::model::{ClassificationKind, OutputTable};

/// A job file (`jobs/*.yaml`): what to compute.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "segments job")]
pub(super) struct JobFile {
    /// The job's folder in the warehouse: lowercase letters, digits and `_`.
    name: String,
    /// The job's version, shown in the report and the manifests.
    version: u32,
    /// Free text.
    #[serde(default)]
    description: String,
    /// The window, in months ending at `period_end` (1 to 120).
    #[serde(default = "default_window_months")]
    window_months: u32,
    /// Where `file:` steps are found, relative to the job file.
    #[serde(default = "default_sql_dir")]
    sql_dir: String,
    /// The logical inputs the steps read: `transactions` (required),
    /// `events`, `products`, `sales_calendar`, `customer_aliases`,
    /// `customers`. The config maps each to its files.
    #[schemars(extend("x-docs" = "guides/writing-jobs.md#optional-inputs"))]
    inputs: Vec<String>,
    /// Inputs of the job's own (`returns`, `loyalty_points`): each name
    /// listed in `inputs`, with the columns the steps read and their types.
    /// A config maps them like any input (`inputs.<name>.columns`).
    #[serde(default)]
    #[schemars(extend("x-docs" = "guides/writing-jobs.md#inputs-of-your-own"))]
    custom_inputs: std::collections::BTreeMap<String, CustomInputFile>,
    /// Ordered SQL steps, each a view visible to the later steps.
    steps: Vec<StepFile>,
    /// How the rows of one step are classified: exclusive segments or
    /// overlapping audiences.
    classification: ClassificationFile,
    /// Quantile scores (default) or fixed cut points per metric.
    #[serde(default)]
    #[schemars(extend("x-docs" = "guides/changing-rules.md#fixed-score-bands-scoring-fixed"))]
    scoring: Option<ScoringFile>,
    /// Predictive scores published with every snapshot (segments jobs).
    #[serde(default)]
    #[schemars(extend("x-docs" = "guides/predictive-scores.md"))]
    predict: Option<PredictFile>,
    /// The tables to publish; by default every table of the job's kind of
    /// classification.
    #[serde(default)]
    #[schemars(extend("x-docs" = "warehouse.md"))]
    outputs: Option<Vec<OutputTable>>,
}

fn default_window_months() -> u32 {
    12
}

fn default_sql_dir() -> String {
    "../sql".into()
}

/// `custom_inputs.<name>`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CustomInputFile {
    /// Free text, for the people who read the job.
    #[serde(default)]
    #[allow(dead_code)]
    description: String,
    /// Column → type: what the steps read from the input.
    columns: std::collections::BTreeMap<String, super::settings::ColumnType>,
}

/// One SQL step: `file` or `sql`, not both.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct StepFile {
    /// The view's name, for the later steps and `classification.from`.
    name: String,
    /// A SQL file in `sql_dir`.
    #[serde(default)]
    file: Option<String>,
    /// Inline SQL.
    #[serde(default)]
    sql: Option<String>,
    /// Free text.
    #[serde(default)]
    description: String,
    /// `month`: the step is computed once per month of the input and kept in
    /// the warehouse (`_facts/`); a run merges the months' results and reads
    /// raw lines only for months without valid facts. The step must group
    /// `transactions` and return its group keys and MIN, MAX, SUM or COUNT
    /// aggregates.
    #[serde(default)]
    #[schemars(extend("x-docs" = "guides/incremental.md"))]
    incremental: Option<Incremental>,
}

/// How a step is computed incrementally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Incremental {
    /// Once per month of `ordered_date`, merged across months.
    Month,
}

/// The job's `classification:` block: `segments` or `audiences`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ClassificationFile {
    /// The step whose rows (one per customer) are classified; the last step
    /// when omitted.
    #[serde(default)]
    from: Option<String>,
    /// Exclusive segments: each customer gets the first that matches.
    #[serde(default)]
    segments: Vec<SegmentFile>,
    /// Overlapping audiences: each contact is in every audience it matches.
    #[serde(default)]
    #[schemars(extend("x-docs" = "guides/writing-jobs.md#audiences"))]
    audiences: Vec<SegmentFile>,
    /// A declared segment that takes customers matching no rule. Without it,
    /// such a customer is a job error.
    #[serde(default)]
    fallback: Option<String>,
}

/// One segment (or audience) and its rule.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SegmentFile {
    /// The segment's name in the tables: lowercase letters, digits and `_`.
    name: String,
    /// What BI tools show: one text, or one per locale
    /// (`{en: Loyal, fr: Fidèles}`). Default: the name.
    #[serde(default)]
    label: Option<TextFile>,
    /// One text, or one per locale.
    #[serde(default)]
    description: Option<TextFile>,
    /// A SQL boolean expression over the classified step's columns.
    rule: String,
    /// Audiences only: a SQL expression giving the member's `detail` (e.g.
    /// the category it bought twice in).
    #[serde(default)]
    detail: Option<String>,
}

/// Where a step's SQL came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlOrigin {
    File(PathBuf),
    Inline { job: PathBuf, line: Option<usize> },
}

impl std::fmt::Display for SqlOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SqlOrigin::File(path) => write!(f, "{}", path.display()),
            SqlOrigin::Inline {
                job,
                line: Some(line),
            } => write!(f, "{}:{line}", job.display()),
            SqlOrigin::Inline { job, line: None } => write!(f, "{}", job.display()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub sql: String,
    pub origin: SqlOrigin,
    pub description: String,
    /// Computed per input month and merged (`incremental: month`).
    pub incremental: Option<Incremental>,
}

#[derive(Debug, Clone)]
pub struct Segment {
    pub name: String,
    /// 1 = best; the position in the job's list.
    pub rank: i32,
    /// The label in every locale; the segment's name when the job gives none.
    pub label: Localized,
    /// The description in every locale; empty when the job gives none.
    pub description: Localized,
    pub rule: String,
    /// Line of the rule in the job file.
    pub line: Option<usize>,
    /// Audiences only: the SQL expression of the member's `detail`.
    pub detail: Option<String>,
}

/// A job after both parsing phases: every file read, every name checked.
#[derive(Debug, Clone)]
pub struct Job {
    pub path: PathBuf,
    pub name: String,
    pub version: u32,
    pub description: String,
    pub window_months: u32,
    pub inputs: Vec<String>,
    /// Inputs of the job's own: name → (column → type).
    pub custom_inputs: std::collections::BTreeMap<
        String,
        std::collections::BTreeMap<String, super::settings::ColumnType>,
    >,
    pub steps: Vec<Step>,
    pub classify_from: String,
    pub kind: ClassificationKind,
    /// The segments in rank order, or the audiences of an audiences job.
    pub segments: Vec<Segment>,
    pub fallback: Option<String>,
    /// Quantiles (the job's SQL) or fixed cut points (the classifier).
    pub scoring: Scoring,
    /// The `predict:` block, when the job publishes predictive scores.
    pub predict: Option<Predict>,
    pub outputs: Vec<OutputTable>,
    /// Hash of the job file and its SQL, labels included.
    pub job_hash: String,
}

/// A job file being checked: where it is, its text (to find lines) and the
/// problems found so far. One method per part of the file, in file order.
struct JobCheck<'a> {
    path: &'a Path,
    text: &'a str,
    problems: Vec<Problem>,
}

impl JobCheck<'_> {
    /// A problem at `key`, on the first line holding `needle`.
    fn at(&mut self, key: String, needle: Option<&str>, message: String) {
        let line = needle.and_then(|n| yaml::line_of(self.text, n, 1));
        self.line(key, line, message);
    }

    /// A problem at `key`, on a known line.
    fn line(&mut self, key: String, line: Option<usize>, message: String) {
        self.problems.push(Problem {
            file: self.path.to_path_buf(),
            key,
            line,
            column: None,
            message,
        });
    }

    /// `name` and `window_months`.
    fn header(&mut self, file: &JobFile) {
        if !is_identifier(&file.name) {
            self.at("name".into(), Some("name:"), format!("'{}' is not a valid job name: use lowercase letters, digits and _ (it becomes a folder of the warehouse)", file.name));
        }
        if !(1..=120).contains(&file.window_months) {
            self.at(
                "window_months".into(),
                Some("window_months:"),
                format!(
                    "{} is out of range: the window is 1 to 120 months",
                    file.window_months
                ),
            );
        }
    }

    /// `inputs`: known or declared in `custom_inputs`, listed once,
    /// `transactions` among them; every custom input listed, none named
    /// like a known one.
    fn inputs<'f>(&mut self, file: &'f JobFile) -> BTreeSet<&'f str> {
        let inputs = &file.inputs;
        for (name, custom) in &file.custom_inputs {
            let key = format!("custom_inputs.{name}");
            if KNOWN_INPUTS.contains(&name.as_str()) {
                self.at(
                    key,
                    Some(&format!("{name}:")),
                    format!(
                        "'{name}' is a known input: its columns are fixed; list it in `inputs` only"
                    ),
                );
            } else if !is_identifier(name) {
                self.at(
                    key,
                    Some(&format!("{name}:")),
                    format!(
                        "'{name}' is not a valid input name: use lowercase letters, digits and _"
                    ),
                );
            } else if !inputs.contains(name) {
                self.at(
                    key,
                    Some(&format!("{name}:")),
                    format!("custom input '{name}' is not listed in `inputs`: add it there"),
                );
            } else if custom.columns.is_empty() {
                self.at(
                    key,
                    Some(&format!("{name}:")),
                    "declare the columns the steps read (`columns: {customer_id: text, …}`)".into(),
                );
            }
            for column in custom.columns.keys() {
                if !is_identifier(column) {
                    self.at(
                        format!("custom_inputs.{name}.columns.{column}"),
                        Some(&format!("{column}:")),
                        format!("'{column}' is not a valid column name: use lowercase letters, digits and _"),
                    );
                }
            }
        }
        let mut input_names = BTreeSet::new();
        for (index, input) in inputs.iter().enumerate() {
            if !KNOWN_INPUTS.contains(&input.as_str()) && !file.custom_inputs.contains_key(input) {
                self.at(
                    format!("inputs[{index}]"),
                    Some(input),
                    format!(
                        "unknown input '{input}'; known inputs are {}, or declare it under `custom_inputs`",
                        KNOWN_INPUTS.join(", ")
                    ),
                );
            } else if !input_names.insert(input.as_str()) {
                self.at(
                    format!("inputs[{index}]"),
                    Some(input),
                    format!("input '{input}' is listed twice"),
                );
            }
        }
        if !input_names.contains("transactions") {
            self.at(
                "inputs".into(),
                Some("inputs:"),
                "every job needs the `transactions` input".into(),
            );
        }

        input_names
    }

    /// `steps`: names, and the SQL each reads from its file or inline.
    fn steps(&mut self, file: &JobFile, input_names: &BTreeSet<&str>) -> Vec<Step> {
        let job_dir = self.path.parent().unwrap_or(Path::new("."));
        let sql_dir = job_dir.join(&file.sql_dir);
        let mut steps = Vec::new();
        let mut step_names = BTreeSet::new();
        let mut search_from = 1;
        for (index, step) in file.steps.iter().enumerate() {
            let key = format!("steps[{index}]");
            let line = yaml::line_of(self.text, &step.name, search_from);
            if let Some(line) = line {
                search_from = line;
            }
            if !is_identifier(&step.name) {
                self.line(
                    format!("{key}.name"),
                    line,
                    format!(
                        "'{}' is not a valid step name: use lowercase letters, digits and _",
                        step.name
                    ),
                );
            } else if input_names.contains(step.name.as_str())
                || !step_names.insert(step.name.clone())
            {
                self.line(
                    format!("{key}.name"),
                    line,
                    format!(
                        "step name '{}' is already used by an input or an earlier step",
                        step.name
                    ),
                );
            }
            let (sql, origin) = match (&step.file, &step.sql) {
                (Some(relative), None) => {
                    let sql_path = sql_dir.join(relative);
                    match std::fs::read_to_string(&sql_path) {
                        Ok(sql) => (sql, SqlOrigin::File(sql_path)),
                        Err(error) => {
                            self.line(
                                format!("{key}.file"), line,
                                format!(
                                    "cannot read SQL file {}: {error} (paths are relative to sql_dir '{}' next to the job file)",
                                    sql_path.display(),
                                    file.sql_dir
                                ),
                            );
                            continue;
                        }
                    }
                }
                (None, Some(sql)) => (
                    sql.clone(),
                    SqlOrigin::Inline {
                        job: self.path.to_path_buf(),
                        line,
                    },
                ),
                _ => {
                    self.line(key.clone(), line, "a step needs exactly one of `file:` (a SQL file in sql_dir) or `sql:` (inline SQL)".into());
                    continue;
                }
            };
            if sql.trim().is_empty() {
                self.line(key.clone(), line, "the step's SQL is empty".into());
            }
            steps.push(Step {
                name: step.name.clone(),
                sql,
                origin,
                description: step.description.clone(),
                incremental: step.incremental,
            });
        }
        if file.steps.is_empty() {
            self.at(
                "steps".into(),
                Some("steps:"),
                "a job needs at least one SQL step".into(),
            );
        }

        steps
    }

    /// `classification.from`: the step classified, the last by default.
    fn classify_from(&mut self, file: &JobFile) -> String {
        let classification = &file.classification;
        match &classification.from {
            Some(from) if file.steps.iter().any(|s| &s.name == from) => from.clone(),
            Some(from) => {
                let known: Vec<_> = file.steps.iter().map(|s| s.name.as_str()).collect();
                self.at(
                    "classification.from".into(),
                    Some("from:"),
                    format!("unknown step '{from}'; steps are {}", known.join(", ")),
                );
                from.clone()
            }
            None => file
                .steps
                .last()
                .map(|s| s.name.clone())
                .unwrap_or_default(),
        }
    }

    /// `classification.segments` or `.audiences`, and the fallback.
    fn segments(
        &mut self,
        classification: &ClassificationFile,
    ) -> (ClassificationKind, Vec<Segment>) {
        let (kind, declared, list_key) = match (
            classification.segments.is_empty(),
            classification.audiences.is_empty(),
        ) {
            (false, false) => {
                self.at(
                    "classification".into(),
                    Some("audiences:"),
                    "declare either `segments` (exclusive, first match) or `audiences` (overlapping), not both".into(),
                );
                (
                    ClassificationKind::Segments,
                    &classification.segments,
                    "segments",
                )
            }
            (true, false) => (
                ClassificationKind::Audiences,
                &classification.audiences,
                "audiences",
            ),
            _ => (
                ClassificationKind::Segments,
                &classification.segments,
                "segments",
            ),
        };
        let mut segments = Vec::new();
        let mut segment_names = BTreeSet::new();
        let mut search_from = yaml::line_of(self.text, &format!("{list_key}:"), 1).unwrap_or(1);
        for (index, segment) in declared.iter().enumerate() {
            let key = format!("classification.{list_key}[{index}]");
            let name_line =
                yaml::line_of(self.text, &format!("name: {}", segment.name), search_from);
            if let Some(line) = name_line {
                search_from = line;
            }
            let rule_line = yaml::line_of(self.text, "rule:", search_from).or(name_line);
            if !is_identifier(&segment.name) {
                self.line(
                    format!("{key}.name"),
                    name_line,
                    format!(
                        "'{}' is not a valid segment name: use lowercase letters, digits and _",
                        segment.name
                    ),
                );
            } else if !segment_names.insert(segment.name.clone()) {
                self.line(
                    format!("{key}.name"),
                    name_line,
                    format!(
                        "segment '{}' is declared twice; each segment needs its own name",
                        segment.name
                    ),
                );
            }
            if segment.rule.trim().is_empty() {
                self.line(
                    format!("{key}.rule"),
                    rule_line,
                    "empty rule: write a SQL condition such as `r_score = 5 AND f_score >= 4`"
                        .into(),
                );
            }
            if segment.detail.is_some() && kind == ClassificationKind::Segments {
                self.line(format!("{key}.detail"), name_line, "`detail` is for audiences; a segment's customers are described by the snapshot's columns".into());
            }
            segments.push(Segment {
                detail: segment.detail.as_ref().map(|d| d.trim().to_string()),
                name: segment.name.clone(),
                rank: index as i32 + 1,
                label: Localized::from_file(segment.label.as_ref(), &segment.name),
                description: Localized::from_file(segment.description.as_ref(), ""),
                rule: segment.rule.trim().to_string(),
                line: rule_line,
            });
        }
        if segments.is_empty() {
            self.at(
                "classification.segments".into(),
                Some("classification:"),
                "declare at least one segment (or audience)".into(),
            );
        }
        if kind == ClassificationKind::Audiences && classification.fallback.is_some() {
            self.at(
                "classification.fallback".into(),
                Some("fallback:"),
                "audiences overlap and may leave a contact in none: a fallback only makes sense for `segments`".into(),
            );
        }
        if let Some(fallback) = &classification.fallback
            && !segment_names.contains(fallback)
        {
            self.at(
                "classification.fallback".into(),
                Some("fallback:"),
                format!("fallback '{fallback}' is not a declared segment"),
            );
        }

        (kind, segments)
    }

    /// `scoring` (segments jobs only).
    fn scoring(&mut self, file: &JobFile, kind: ClassificationKind) -> Scoring {
        let (scoring, problems) = scoring::check(self.path, self.text, file.scoring.as_ref());
        self.problems.extend(problems);
        if kind == ClassificationKind::Audiences && file.scoring.is_some() {
            self.at(
                "scoring".into(),
                Some("scoring:"),
                "`scoring` applies to segments jobs; an audiences job computes its scores in its own steps (e.g. sql/rfm_scores.sql)".into(),
            );
        }
        scoring
    }

    /// `predict` (segments jobs only), against the steps and segments.
    fn predict(
        &mut self,
        file: &JobFile,
        kind: ClassificationKind,
        segments: &[Segment],
    ) -> Option<Predict> {
        let step_names: Vec<String> = file.steps.iter().map(|s| s.name.clone()).collect();
        let declared_names: Vec<String> = segments.iter().map(|s| s.name.clone()).collect();
        let (predict, problems) = predict::check(
            self.path,
            self.text,
            file.predict.as_ref(),
            &step_names,
            &declared_names,
        );
        self.problems.extend(problems);
        if kind == ClassificationKind::Audiences && file.predict.is_some() {
            self.at(
                "predict".into(),
                Some("predict:"),
                "`predict` applies to segments jobs: the potential score and the tables are per customer and segment".into(),
            );
        }
        predict
    }

    /// `outputs`: the kind's tables by default, the predictive ones with a
    /// `predict:` block, none that the kind cannot write.
    fn outputs(
        &mut self,
        file: &JobFile,
        kind: ClassificationKind,
        predicts: bool,
    ) -> Vec<OutputTable> {
        let mut outputs = file
            .outputs
            .clone()
            .unwrap_or_else(|| OutputTable::defaults(kind));
        if predicts {
            // The predictive tables come with the block.
            outputs.extend([OutputTable::Predictions, OutputTable::ModelParameters]);
        } else if let Some(table) = outputs
            .iter()
            .find(|t| matches!(t, OutputTable::Predictions | OutputTable::ModelParameters))
        {
            self.at(
                "outputs".into(),
                Some(table.name()),
                format!(
                    "`{}` needs a `predict:` block in the job (see the README, \"Predictive scores\")",
                    table.name()
                ),
            );
        }
        outputs.sort();
        outputs.dedup();
        for table in &outputs {
            if !table.fits(kind) {
                let (what, other) = match kind {
                    ClassificationKind::Segments => ("a segments job", "audiences"),
                    ClassificationKind::Audiences => ("an audiences job", "segments"),
                };
                self.at(
                    "outputs".into(),
                    Some(table.name()),
                    format!(
                        "`{}` cannot be written by {what}: it needs `classification.{other}`",
                        table.name()
                    ),
                );
            }
        }
        outputs
    }
}

impl Job {
    /// Read and check a job file and the SQL files it names. No data is read.
    pub fn load(path: &Path) -> Result<Job, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let file: JobFile = yaml::parse(path, &text).map_err(|p| ConfigError::Invalid(vec![p]))?;
        Self::check(path, &text, file)
    }

    fn check(path: &Path, text: &str, file: JobFile) -> Result<Job, ConfigError> {
        let mut check = JobCheck {
            path,
            text,
            problems: Vec::new(),
        };
        check.header(&file);
        let input_names = check.inputs(&file);
        let steps = check.steps(&file, &input_names);
        let classify_from = check.classify_from(&file);
        let (kind, segments) = check.segments(&file.classification);
        let scoring = check.scoring(&file, kind);
        let predict = check.predict(&file, kind, &segments);
        let outputs = check.outputs(&file, kind, predict.is_some());
        if !check.problems.is_empty() {
            return Err(ConfigError::Invalid(check.problems));
        }
        let classification = &file.classification;
        let mut hasher = Sha256::new();
        hasher.update(text.as_bytes());
        for step in &steps {
            hasher.update(step.sql.as_bytes());
        }
        Ok(Job {
            path: path.to_path_buf(),
            name: file.name,
            version: file.version,
            description: file.description,
            window_months: file.window_months,
            inputs: file.inputs,
            custom_inputs: file
                .custom_inputs
                .into_iter()
                .map(|(name, custom)| (name, custom.columns))
                .collect(),
            steps,
            classify_from,
            kind,
            segments,
            fallback: classification.fallback.clone(),
            scoring,
            predict,
            outputs,
            job_hash: hex(&hasher.finalize()),
        })
    }

    /// Hash of everything that changes a classification: step SQL, window,
    /// scoring, segments and their order, fallback, timezone and column mapping; not
    /// labels or descriptions.
    pub fn rule_hash(&self, config: &Config) -> String {
        let mut hasher = Sha256::new();
        let mut field = |name: &str, value: &str| {
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update(value.len().to_le_bytes());
            hasher.update(value.as_bytes());
        };
        field("window_months", &self.window_months.to_string());
        for step in &self.steps {
            field("step", &step.name);
            field("sql", &step.sql);
        }
        field("classify_from", &self.classify_from);
        if self.kind == ClassificationKind::Audiences {
            field("kind", "audiences");
        }
        for segment in &self.segments {
            field("segment", &segment.name);
            field("rule", &segment.rule);
            if let Some(detail) = &segment.detail {
                field("detail", detail);
            }
        }
        field("fallback", self.fallback.as_deref().unwrap_or(""));
        // Only a non-default scoring enters the hash, so that periods
        // published before `scoring:` existed keep their rule hash.
        if self.scoring != Scoring::Quantiles {
            field("scoring", &self.scoring.hash_material());
        }
        field("timezone", config.timezone.name());
        for (input, mapping) in config.mapping_material(&self.inputs) {
            field("input", &input);
            field("mapping", &mapping);
        }
        hex(&hasher.finalize())
    }

    pub fn segment(&self, name: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.name == name)
    }

    pub fn writes(&self, table: OutputTable) -> bool {
        self.outputs.contains(&table)
    }
}

pub(crate) use crate::model::units::hex;

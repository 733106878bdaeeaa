//! The generated files are fresh and say what the parser says: the JSON
//! Schemas of job and config files (`schemas/*.schema.json`), the key tables
//! of `docs/reference/job.md` and `docs/reference/configuration.md`, and the
//! command reference of `docs/reference/cli.md`.
//!
//! A stale file fails its test; `SEGMENTS_UPDATE_GENERATED=1 cargo test
//! --test it generated` rewrites them all.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;

use crate::common::{repo, segments};

const UPDATE: &str = "SEGMENTS_UPDATE_GENERATED";

fn updating() -> bool {
    std::env::var_os(UPDATE).is_some()
}

/// Compare a checked-in file with what the code generates, or rewrite it.
fn fresh(relative: &str, expected: &str) {
    let path = repo().join(relative);
    if updating() {
        std::fs::write(&path, expected).unwrap();
        return;
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "{relative} is stale: run `{UPDATE}=1 cargo test --test it generated` and commit the result"
    );
}

/// A page with its `<!-- generated:NAME -->` block holding `content`.
fn with_block(page: &str, name: &str, content: &str) -> String {
    let begin = format!(
        "<!-- generated:{name} (do not edit: {UPDATE}=1 cargo test --test it generated) -->\n"
    );
    let end = format!("<!-- /generated:{name} -->");
    let start = page
        .find(&begin)
        .unwrap_or_else(|| panic!("no `{}` line", begin.trim_end()));
    let stop = page[start..]
        .find(&end)
        .unwrap_or_else(|| panic!("no `{end}` line"))
        + start;
    format!("{}{begin}{content}{}", &page[..start], &page[stop..])
}

fn fresh_block(relative: &str, name: &str, content: &str) {
    let page = std::fs::read_to_string(repo().join(relative)).unwrap();
    fresh(relative, &with_block(&page, name, content));
}

fn pretty(schema: &serde_json::Value) -> String {
    serde_json::to_string_pretty(schema).unwrap() + "\n"
}

#[test]
fn generated_json_schemas_are_fresh() {
    fresh(
        "schemas/job.schema.json",
        &pretty(&segments::config::schema::job_schema()),
    );
    fresh(
        "schemas/config.schema.json",
        &pretty(&segments::config::schema::config_schema()),
    );
}

#[test]
fn generated_reference_pages_are_fresh() {
    use segments::config::schema::{config_schema, job_schema, keys_markdown};
    fresh_block(
        "docs/reference/job.md",
        "job-keys",
        &keys_markdown(&job_schema()),
    );
    fresh_block(
        "docs/reference/configuration.md",
        "config-keys",
        &keys_markdown(&config_schema()),
    );
    fresh_block(
        "docs/reference/cli.md",
        "commands",
        &segments::cli::reference::markdown(),
    );
}

#[test]
fn generated_key_tables_list_every_key_the_parser_knows() {
    // Independent of the generator: keys the parser accepts, written out by
    // hand, each must have a row (a key lost from the schema fails here).
    let config = std::fs::read_to_string(repo().join("docs/reference/configuration.md")).unwrap();
    for key in [
        "warehouse",
        "inputs.<name>.csv.decimal",
        "engine.spill_compression",
        "quality.reject_duplicates",
        "storage.retry.deadline",
        "readiness.marker",
        "retention.rejects_months",
        "report.locale",
    ] {
        assert!(config.contains(&format!("| `{key}` |")), "no row for {key}");
    }
    let job = std::fs::read_to_string(repo().join("docs/reference/job.md")).unwrap();
    for key in [
        "window_months",
        "steps[].sql",
        "classification.audiences[].detail",
        "scoring.recency_days",
        "predict.potential.training_periods",
        "outputs",
    ] {
        assert!(job.contains(&format!("| `{key}` |")), "no row for {key}");
    }
}

/// Every segments YAML the repository ships: (path, kind of schema).
fn shipped_yaml() -> Vec<(PathBuf, &'static str)> {
    let mut files = Vec::new();
    for (folder, kind) in [("jobs", "job"), ("config", "config")] {
        for entry in std::fs::read_dir(repo().join(folder)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                files.push((path, kind));
            }
        }
    }
    for config in [
        "deploy/k8s/base/config/production.yaml",
        "deploy/k8s/overlays/distributed/config/production.yaml",
    ] {
        files.push((repo().join(config), "config"));
    }
    files.sort();
    files
}

/// The relative path from `from_dir` to `to` (both under the repository).
fn relative(from_dir: &Path, to: &Path) -> String {
    let from = from_dir.strip_prefix(repo()).unwrap();
    let to = to.strip_prefix(repo()).unwrap();
    let ups = from.components().count();
    let mut path = "../".repeat(ups);
    path.push_str(&to.to_string_lossy());
    path
}

#[test]
fn every_shipped_yaml_names_its_schema_on_its_first_line() {
    let mut wrong = Vec::new();
    for (path, kind) in shipped_yaml() {
        let text = std::fs::read_to_string(&path).unwrap();
        let schema = repo().join(format!("schemas/{kind}.schema.json"));
        let expected = format!(
            "# yaml-language-server: $schema={}",
            relative(path.parent().unwrap(), &schema)
        );
        if text.lines().next() != Some(expected.as_str()) {
            wrong.push(format!(
                "{}: first line should be `{expected}`",
                path.display()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Validate YAML files with the Python `jsonschema` package (a validator
/// that is not ours): one line per file, `ok` or the first error.
fn validate_with_jsonschema(schema: &str, files: &[PathBuf]) -> Vec<String> {
    let script = r#"
import json, sys, yaml, jsonschema
schema = json.load(open(sys.argv[1]))
jsonschema.Draft7Validator.check_schema(schema)
validator = jsonschema.Draft7Validator(schema)
for path in sys.argv[2:]:
    errors = sorted(validator.iter_errors(yaml.safe_load(open(path, encoding="utf-8"))), key=str)
    print("ok" if not errors else "error: " + errors[0].message.replace("\n", " "))
"#;
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(repo().join(schema))
        .args(files)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "jsonschema (installed by scripts/test from requirements-dev.txt) failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn the_schemas_accept_every_shipped_file_and_refuse_what_the_parser_refuses() {
    let shipped = shipped_yaml();
    for kind in ["job", "config"] {
        let files: Vec<PathBuf> = shipped
            .iter()
            .filter(|(_, k)| *k == kind)
            .map(|(p, _)| p.clone())
            .collect();
        let results = validate_with_jsonschema(&format!("schemas/{kind}.schema.json"), &files);
        for (file, result) in files.iter().zip(&results) {
            assert_eq!(result, "ok", "{} against the {kind} schema", file.display());
        }
    }

    // Shape errors: the schema and `segments validate` both refuse each.
    let dir = tempfile::tempdir().unwrap();
    let job = std::fs::read_to_string(repo().join("jobs/rfm_monthly.yaml")).unwrap();
    let config = "warehouse: ./warehouse\ninputs:\n  transactions:\n    url: ./data/transactions/\n    format: parquet\n";
    let bad_configs = [
        ("unknown_key", config.replace("warehouse:", "warehous:")),
        ("format", config.replace("format: parquet", "format: xlsx")),
        ("engine_kind", format!("{config}engine:\n  kind: spark\n")),
        (
            "retries",
            format!("{config}storage:\n  retry:\n    max_retries: many\n"),
        ),
        (
            "report_locale",
            format!("{config}report: {{enabled: true, locale: de}}\n"),
        ),
    ];
    let bad_jobs = [
        ("step_key", job.replacen("  - name: ", "  - nam: ", 1)),
        ("no_version", job.replacen("version: 1\n", "", 1)),
        ("output", format!("{job}outputs: [snapshots, pictures]\n")),
        ("scoring_mode", format!("{job}scoring:\n  mode: deciles\n")),
    ];
    let good_config = dir.path().join("good_config.yaml");
    std::fs::write(&good_config, config).unwrap();
    let mut config_files = Vec::new();
    for (name, text) in &bad_configs {
        let path = dir.path().join(format!("config_{name}.yaml"));
        std::fs::write(&path, text).unwrap();
        config_files.push(path);
    }
    let mut job_files = Vec::new();
    for (name, text) in &bad_jobs {
        // Next to jobs/, so `file:` steps resolve to sql/ as for the real job.
        let path = dir.path().join("jobs").join(format!("job_{name}.yaml"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        job_files.push(path);
    }
    crate::common::copy_dir(&repo().join("sql"), &dir.path().join("sql"));

    let config_results = validate_with_jsonschema("schemas/config.schema.json", &config_files);
    for (path, result) in config_files.iter().zip(&config_results) {
        assert!(
            result.starts_with("error"),
            "schema accepted {}",
            path.display()
        );
        let job_path = repo().join("jobs/rfm_monthly.yaml");
        let out = segments(
            dir.path(),
            &[
                "validate",
                "--job",
                job_path.to_str().unwrap(),
                "--config",
                path.to_str().unwrap(),
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(2),
            "validate accepted {}",
            path.display()
        );
    }
    let job_results = validate_with_jsonschema("schemas/job.schema.json", &job_files);
    for (path, result) in job_files.iter().zip(&job_results) {
        assert!(
            result.starts_with("error"),
            "schema accepted {}",
            path.display()
        );
        let out = segments(
            dir.path(),
            &[
                "validate",
                "--job",
                path.to_str().unwrap(),
                "--config",
                good_config.to_str().unwrap(),
            ],
        );
        assert_eq!(
            out.status.code(),
            Some(2),
            "validate accepted {}",
            path.display()
        );
    }

    // A `${VAR}` may stand for a number in a config (the deploy config's
    // target_partitions): the schema accepts it, not a plain word.
    let variable = dir.path().join("variable.yaml");
    std::fs::write(
        &variable,
        format!("{config}engine:\n  target_partitions: ${{CPUS}}\n"),
    )
    .unwrap();
    let word = dir.path().join("word.yaml");
    std::fs::write(
        &word,
        format!("{config}engine:\n  target_partitions: two\n"),
    )
    .unwrap();
    let results = validate_with_jsonschema("schemas/config.schema.json", &[variable, word]);
    assert_eq!(results[0], "ok");
    assert!(results[1].starts_with("error"), "{}", results[1]);
}

#[test]
fn every_option_has_help_and_every_example_parses() {
    use clap::CommandFactory;
    let mut command = segments::cli::Cli::command();
    command.build();
    let mut missing = Vec::new();
    let mut examples = 0;
    for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
        for arg in sub.get_arguments() {
            if arg.get_help().is_none() && !arg.is_hide_set() {
                missing.push(format!("{} {}", sub.get_name(), arg.get_id()));
            }
        }
        let Some(after) = sub.get_after_help() else {
            continue;
        };
        for line in after.to_string().lines() {
            let Some(start) = line.find("segments ") else {
                continue;
            };
            let example = line[start..].split(" #").next().unwrap().trim();
            let words: Vec<&str> = example.split_whitespace().collect();
            segments::cli::Cli::try_parse_from(&words)
                .unwrap_or_else(|e| panic!("example `{example}` does not parse: {e}"));
            examples += 1;
        }
    }
    assert!(missing.is_empty(), "options without help: {missing:?}");
    assert!(examples >= 25, "only {examples} examples in --help");
}

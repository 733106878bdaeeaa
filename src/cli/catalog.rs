//! `segments catalog`: write the DDL that registers every job's published
//! tables and BI views in a query engine (see [`crate::catalog`]), or a
//! DuckDB database file of those views, or the Markdown column docs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::catalog::{self, CatalogJob, CatalogOptions, Target};
use crate::config::{Config, Job};
use crate::model::ExitStatus;
use crate::storage::Warehouse;

use super::{CatalogArgs, Failure, failure};

pub async fn catalog(args: CatalogArgs) -> Result<(), Failure> {
    if let Some(docs) = &args.docs {
        return write_atomically(docs, catalog::tables_markdown().as_bytes());
    }
    let (Some(target), Some(out)) = (args.target, args.out.as_ref()) else {
        return Err(failure(
            ExitStatus::Invalid,
            anyhow::anyhow!("give --target and --out (or --docs FILE for the column docs)"),
        ));
    };
    if !valid_schema(&args.schema) {
        return Err(failure(
            ExitStatus::Invalid,
            anyhow::anyhow!(
                "--schema '{}' is not a usable schema name: use lowercase letters, digits and _",
                args.schema
            ),
        ));
    }
    let config = Config::load(&args.config).map_err(|e| failure(ExitStatus::Invalid, e))?;
    let jobs = load_jobs(&args.jobs)?;
    let tables_with_files = if target == Target::Duckdb {
        Some(
            crate::storage::scoped(config.storage.clone(), tables_with_files(&config, &jobs))
                .await?,
        )
    } else {
        None
    };
    let entries: Vec<CatalogJob> = jobs
        .iter()
        .enumerate()
        .map(|(index, job)| CatalogJob {
            job,
            tables_with_files: tables_with_files.as_ref().map(|t| t[index].clone()),
        })
        .collect();
    let options = CatalogOptions {
        target,
        location: args
            .location
            .clone()
            .unwrap_or_else(|| config.warehouse.clone()),
        schema: args.schema.clone(),
        locale: args.locale.unwrap_or(config.locale),
        format: config.tables.format,
    };
    let ddl = catalog::render(&entries, &options).map_err(|e| failure(ExitStatus::Invalid, e))?;
    let database = out.extension().is_some_and(|e| e == "duckdb");
    if database {
        if target != Target::Duckdb {
            return Err(failure(
                ExitStatus::Invalid,
                anyhow::anyhow!(
                    "{}: a .duckdb database can only be built for --target duckdb; write a .sql file for {}",
                    out.display(),
                    target.name()
                ),
            ));
        }
        materialize(out, &ddl)?;
    } else {
        write_atomically(out, ddl.as_bytes())?;
    }
    eprintln!(
        "Wrote {} ({} job(s): {}).",
        out.display(),
        jobs.len(),
        jobs.iter()
            .map(|j| j.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

fn valid_schema(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Every job of the folders (`*.yaml`, by file name) and job files given.
fn load_jobs(paths: &[PathBuf]) -> Result<Vec<Job>, Failure> {
    let mut files = Vec::new();
    for path in paths {
        files.extend(job_files(path)?);
    }
    let mut jobs: Vec<Job> = Vec::new();
    for file in files {
        let job = Job::load(&file).map_err(|e| failure(ExitStatus::Invalid, e))?;
        if let Some(other) = jobs.iter().find(|j| j.name == job.name) {
            return Err(failure(
                ExitStatus::Invalid,
                anyhow::anyhow!(
                    "{} and {} both publish as job `{}`: their tables would collide; give each job its own name",
                    other.path.display(),
                    job.path.display(),
                    job.name
                ),
            ));
        }
        jobs.push(job);
    }
    Ok(jobs)
}

/// The job files of a folder (`*.yaml`, by file name), or the job file itself.
fn job_files(path: &Path) -> Result<Vec<PathBuf>, Failure> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let entries = std::fs::read_dir(path).map_err(|e| {
            failure(
                ExitStatus::Invalid,
                anyhow::anyhow!("cannot read the jobs folder {}: {e}", path.display()),
            )
        })?;
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    if files.is_empty() {
        return Err(failure(
            ExitStatus::Invalid,
            anyhow::anyhow!(
                "no job file (*.yaml) in {}: pass --jobs with a folder of jobs or one job file",
                path.display()
            ),
        ));
    }
    Ok(files)
}

/// Per job, the tables that have at least one Parquet file in the warehouse.
async fn tables_with_files(
    config: &Config,
    jobs: &[Job],
) -> Result<Vec<BTreeSet<String>>, Failure> {
    let warehouse =
        Warehouse::open(&config.warehouse).map_err(|e| failure(ExitStatus::Storage, e))?;
    let mut found = Vec::new();
    for job in jobs {
        let mut tables = BTreeSet::new();
        let names = job
            .outputs
            .iter()
            .map(|t| t.name())
            .chain(["published_periods"]);
        for table in names {
            let key = warehouse
                .key(&[&job.name, table])
                .map_err(|e| failure(ExitStatus::Invalid, e))?;
            let objects = warehouse
                .list(&key)
                .await
                .map_err(|e| failure(ExitStatus::Storage, e))?;
            // A Parquet file, or a Delta table's log.
            if objects.iter().any(|o| {
                o.location.as_ref().ends_with(".parquet")
                    || o.location.as_ref().contains("/_delta_log/")
            }) {
                tables.insert(table.to_string());
            }
        }
        found.push(tables);
    }
    Ok(found)
}

/// Write a file through a temporary sibling and a rename, so that a reader
/// never sees half of it.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let temporary = sibling(path, "tmp");
    std::fs::write(&temporary, bytes)
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&temporary);
            failure(
                ExitStatus::Internal,
                anyhow::anyhow!("cannot write {}: {e}", path.display()),
            )
        })
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{suffix}-{}", std::process::id()))
}

/// Build a DuckDB database file of views by running the DDL with the DuckDB
/// Python package, or else the DuckDB CLI.
fn materialize(out: &Path, ddl: &str) -> Result<(), Failure> {
    let database = sibling(out, "building");
    let script = sibling(out, "sql");
    std::fs::write(&script, ddl).map_err(|e| {
        failure(
            ExitStatus::Internal,
            anyhow::anyhow!("cannot write {}: {e}", script.display()),
        )
    })?;
    let cleanup = || {
        let _ = std::fs::remove_file(&script);
        let _ = std::fs::remove_file(&database);
        let _ = std::fs::remove_file(wal(&database));
    };
    // The Python package first (what the tests exercise), then the CLI.
    let attempts: [(&str, Vec<String>); 2] = [
        (
            "python3",
            vec![
                "-c".into(),
                "import sys, duckdb\nc = duckdb.connect(sys.argv[1])\nc.execute(open(sys.argv[2], encoding='utf-8').read())\nc.close()".into(),
                database.display().to_string(),
                script.display().to_string(),
            ],
        ),
        (
            "duckdb",
            vec![
                database.display().to_string(),
                "-bail".into(),
                "-c".into(),
                format!(".read '{}'", script.display().to_string().replace('\'', "''")),
            ],
        ),
    ];
    let mut tried = Vec::new();
    for (program, program_args) in attempts {
        match Command::new(program).args(&program_args).output() {
            Ok(output) if output.status.success() => {
                let _ = std::fs::remove_file(&script);
                let _ = std::fs::remove_file(wal(out));
                return std::fs::rename(&database, out).map_err(|e| {
                    cleanup();
                    failure(
                        ExitStatus::Internal,
                        anyhow::anyhow!("cannot write {}: {e}", out.display()),
                    )
                });
            }
            Ok(output) => {
                let stderr = String::from_utf8_lossy(&output.stderr);
                let missing_module = program == "python3" && stderr.contains("No module named");
                if missing_module {
                    tried.push("python3 without the duckdb package".to_string());
                    continue;
                }
                cleanup();
                return Err(failure(
                    ExitStatus::Internal,
                    anyhow::anyhow!(
                        "{program} could not build {} from the generated DDL: {}",
                        out.display(),
                        stderr.trim()
                    ),
                ));
            }
            Err(_) => tried.push(format!("no `{program}` on PATH")),
        }
    }
    cleanup();
    Err(failure(
        ExitStatus::Internal,
        anyhow::anyhow!(
            "cannot build {}: neither the DuckDB CLI nor its Python package is available ({})\nhint: install one (python3 -m pip install duckdb), or write the DDL with --out catalog.sql and run it in your DuckDB",
            out.display(),
            tried.join(", ")
        ),
    ))
}

fn wal(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_os_string();
    name.push(".wal");
    PathBuf::from(name)
}

//! `segments run` and `segments backfill` send OpenLineage run events
//! (docs/guides/lineage.md) to a receiver started here on 127.0.0.1 (hyper,
//! recording every request) or append them to a file. What the events say is
//! checked against what the run published, read back independently: the
//! manifest, the Parquet files on disk and DuckDB's reading of them. Every
//! event is validated against the official OpenLineage JSON schemas
//! (tests/fixtures/openlineage/, spec 2-0-2) and every facet against the
//! schema its `_schemaURL` names, with Python's `jsonschema` and its format
//! checkers (installed by scripts/test from requirements-dev.txt).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::common::{default_job, duckdb_lines, repo};
use crate::jobs::generated;

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    content_type: Option<String>,
    authorization: Option<String>,
    body: String,
}

/// An HTTP server on 127.0.0.1 that answers 200 to everything and keeps
/// what it got; stopped when dropped.
struct Receiver {
    address: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    fn start() -> Receiver {
        let received = Arc::new(Mutex::new(Vec::new()));
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel();
        let log = received.clone();
        let thread = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(serve(log, address_tx, shutdown_rx));
        });
        Receiver {
            address: address_rx.recv().unwrap(),
            received,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The bodies received since request `from`, as JSON.
    fn events_from(&self, from: usize) -> Vec<Value> {
        self.requests()[from..]
            .iter()
            .map(|r| serde_json::from_str(&r.body).expect("a JSON body"))
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    log: Arc<Mutex<Vec<Received>>>,
    address: std::sync::mpsc::Sender<SocketAddr>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    use http_body_util::BodyExt;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    address.send(listener.local_addr().unwrap()).unwrap();
    loop {
        let socket = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(_) => continue,
            },
            _ = &mut shutdown => return,
        };
        let log = log.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let log = log.clone();
                async move {
                    let header = |name: &str| {
                        request
                            .headers()
                            .get(name)
                            .map(|v| v.to_str().unwrap().to_string())
                    };
                    let (method, path) = (request.method().to_string(), request.uri().to_string());
                    let (content_type, authorization) =
                        (header("content-type"), header("authorization"));
                    let body = request.into_body().collect().await?.to_bytes();
                    log.lock().unwrap().push(Received {
                        method,
                        path,
                        content_type,
                        authorization,
                        body: String::from_utf8(body.to_vec()).unwrap(),
                    });
                    Ok::<_, hyper::Error>(hyper::Response::new(String::new()))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}

/// The environment variables of the OpenLineage clients, all removed from a
/// command before the test sets its own.
const VARIABLES: &[&str] = &[
    "OPENLINEAGE_URL",
    "OPENLINEAGE_ENDPOINT",
    "OPENLINEAGE_API_KEY",
    "OPENLINEAGE_NAMESPACE",
    "OPENLINEAGE_DISABLED",
    "OPENLINEAGE_CONTEXT",
    "OPENLINEAGE_PARENT_ID",
    "OPENLINEAGE_ROOT_PARENT_ID",
    "OPENLINEAGE_CONFIG",
    "OPENLINEAGE__TRANSPORT__TYPE",
    "OPENLINEAGE__TRANSPORT__URL",
    "OPENLINEAGE__TRANSPORT__ENDPOINT",
    "OPENLINEAGE__TRANSPORT__LOG_FILE_PATH",
];

/// `segments <args>` in `dir` with exactly the `env` OpenLineage variables.
fn segments(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_segments"));
    command
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .env_remove("SEGMENTS_PUSHGATEWAY_URL");
    for name in VARIABLES {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    command.output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn with_extra(config: &Path, name: &str, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(config).unwrap();
    let path = config.with_file_name(name);
    std::fs::write(&path, format!("{text}{extra}")).unwrap();
    path
}

/// Validates events (JSON lines on stdin) against the vendored OpenLineage
/// schema, and each facet against the schema its `_schemaURL` names; prints
/// `ok` or `error: …` per event.
const VALIDATOR: &str = r##"
import json, pathlib, sys
import jsonschema
from referencing import Registry, Resource

Validator = jsonschema.Draft202012Validator
checker = Validator.FORMAT_CHECKER
missing = {"date-time", "uri", "uuid"} - set(checker.checkers)
if missing:
    sys.exit(f"jsonschema cannot check the formats {sorted(missing)}: install jsonschema[format-nongpl] (requirements-dev.txt)")

schemas = {}
for path in sys.argv[1:]:
    schema = json.loads(pathlib.Path(path).read_text())
    Validator.check_schema(schema)
    schemas[schema["$id"]] = schema
registry = Registry().with_resources(
    (uri, Resource.from_contents(schema)) for uri, schema in schemas.items())
event_schema = "https://openlineage.io/spec/2-0-2/OpenLineage.json"

def problems(instance, ref):
    validator = Validator({"$ref": ref}, registry=registry, format_checker=checker)
    # The deepest cause of each error, shortened: a oneOf's own message
    # quotes the whole event.
    errors = []
    for error in validator.iter_errors(instance):
        error = jsonschema.exceptions.best_match([error])
        while error.context:
            error = jsonschema.exceptions.best_match(error.context)
        errors.append(f"{'/'.join(map(str, error.absolute_path))}: {error.message[:200]}")
    return errors

def facets(event):
    yield from (event.get("run", {}).get("facets") or {}).items()
    yield from (event.get("job", {}).get("facets") or {}).items()
    for dataset in event.get("inputs", []) + event.get("outputs", []):
        for key in ("facets", "inputFacets", "outputFacets"):
            yield from (dataset.get(key) or {}).items()

for line in sys.stdin:
    event = json.loads(line)
    found = problems(event, event_schema) + problems(event, event_schema + "#/$defs/RunEvent")
    for name, facet in facets(event):
        url = facet.get("_schemaURL", "") if isinstance(facet, dict) else ""
        base = url.split("#")[0]
        if base not in schemas:
            found.append(f"facet {name}: _schemaURL {url!r} is not a schema the test has")
            continue
        if not name.startswith("segments_") and name not in schemas[base].get("properties", {}):
            found.append(f"facet {name}: its schema {base} defines {list(schemas[base].get('properties', {}))}")
        found += [f"facet {name}: {p}" for p in problems(facet, url)]
    print("ok" if not found else "error: " + "; ".join(found))
"##;

/// `ok` or `error: …` for each event, from the validator above.
fn validate(events: &[Value]) -> Vec<String> {
    let fixtures = repo().join("tests/fixtures/openlineage");
    let mut schemas: Vec<PathBuf> = std::fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    schemas.sort();
    schemas.push(repo().join("schemas/openlineage-facets.json"));
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(VALIDATOR)
        .args(&schemas)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        for event in events {
            writeln!(stdin, "{event}").unwrap();
        }
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "jsonschema (installed by scripts/test from requirements-dev.txt) failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(results.len(), events.len());
    results
}

fn assert_valid(events: &[Value]) {
    for (event, result) in events.iter().zip(validate(events)) {
        assert_eq!(result, "ok", "{event:#}");
    }
}

fn manifest(warehouse: &Path, period: &str) -> Value {
    serde_json::from_slice(
        &std::fs::read(warehouse.join(format!("rfm_monthly/_runs/period={period}/_manifest.json")))
            .unwrap(),
    )
    .unwrap()
}

/// A UUID v7 in its hyphenated form.
fn assert_uuid_v7(id: &str) {
    let parts: Vec<&str> = id.split('-').collect();
    assert_eq!(
        parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
        [8, 4, 4, 4, 12],
        "{id}"
    );
    assert!(parts[2].starts_with('7'), "not a v7 UUID: {id}");
}

/// The facet `name` of an event's run.
fn run_facet<'a>(event: &'a Value, name: &str) -> &'a Value {
    &event["run"]["facets"][name]
}

/// A successful period's COMPLETE event says what the run read and
/// published, as the manifest, the files on disk and DuckDB see them.
fn check_complete(event: &Value, warehouse: &Path, data: &Path, period: &str) {
    let manifest = manifest(warehouse, period);
    assert_eq!(event["eventType"], "COMPLETE");
    assert_eq!(event["run"]["runId"], manifest["run_id"]);
    assert_eq!(event["job"]["name"], "rfm_monthly");
    let job_facet = &event["job"]["facets"]["segments_job"];
    assert_eq!(job_facet["ruleHash"], manifest["rule_hash"]);
    assert_eq!(job_facet["jobHash"], manifest["job_hash"]);
    let run = run_facet(event, "segments_run");
    assert_eq!(run["period"], period);
    assert_eq!(run["exitCode"], 0);
    assert_eq!(run["rows"], manifest["rows"]);
    assert_eq!(run["rejectedByReason"], manifest["rejected_by_reason"]);

    // Inputs: one dataset per configured input, the files under it those
    // the manifest lists, the transactions' rows those it counted.
    let inputs = event["inputs"].as_array().unwrap();
    let mut listed: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
    for file in manifest["inputs"].as_array().unwrap() {
        listed
            .entry(file["input"].as_str().unwrap().to_string())
            .or_default()
            .push((
                file["path"].as_str().unwrap().to_string(),
                file["size"].as_u64().unwrap(),
            ));
    }
    assert_eq!(inputs.len(), listed.len(), "{inputs:#?}");
    for input in inputs {
        let files_facet = &input["inputFacets"]["segments_inputFiles"];
        let name = files_facet["input"].as_str().unwrap();
        let directory = data.join(name);
        assert_eq!(input["namespace"], "file");
        assert_eq!(input["name"], directory.to_str().unwrap());
        let files: Vec<(String, u64)> = files_facet["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["path"].as_str().unwrap().to_string(),
                    f["size"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(files, listed[name]);
        // Sizes as the file system says.
        for (path, size) in &files {
            assert_eq!(std::fs::metadata(format!("/{path}")).unwrap().len(), *size);
        }
        let statistics = &input["inputFacets"]["inputStatistics"];
        assert_eq!(statistics["fileCount"], files.len());
        assert_eq!(
            statistics["size"],
            files.iter().map(|(_, size)| size).sum::<u64>()
        );
        if name == "transactions" {
            assert_eq!(statistics["rowCount"], manifest["rows"]["read"]);
        } else {
            assert!(statistics.get("rowCount").is_none());
        }
    }

    // Outputs: one per published table, its rows as DuckDB counts them in
    // the published file, its size that of the file, its columns DuckDB's.
    let outputs = event["outputs"].as_array().unwrap();
    let tables = manifest["tables"].as_object().unwrap();
    assert_eq!(outputs.len(), tables.len(), "{outputs:#?}");
    for output in outputs {
        assert_eq!(output["namespace"], "file");
        let folder = PathBuf::from(output["name"].as_str().unwrap());
        let table = folder.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(folder, warehouse.join("rfm_monthly").join(&table));
        let file = folder.join(format!("period={period}/part-0.parquet"));
        let statistics = &output["outputFacets"]["outputStatistics"];
        let counted: u64 = duckdb_lines(&format!(
            "SELECT count(*) FROM read_parquet('{}', hive_partitioning = false)",
            file.display()
        ))
        .into_iter()
        .next()
        .unwrap()
        .parse()
        .unwrap();
        assert_eq!(statistics["rowCount"], counted, "{table}");
        assert_eq!(statistics["rowCount"], tables[&table], "{table}");
        assert_eq!(
            statistics["size"],
            std::fs::metadata(&file).unwrap().len(),
            "{table}"
        );
        let columns: Vec<String> = output["facets"]["schema"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .collect();
        let described = duckdb_lines(&format!(
            "SELECT column_name FROM (DESCRIBE SELECT * FROM read_parquet('{}', hive_partitioning = false))",
            file.display()
        ));
        let mut sorted = columns.clone();
        sorted.sort();
        assert_eq!(sorted, described.into_iter().collect::<Vec<_>>(), "{table}");
    }
}

#[test]
fn a_run_sends_start_and_complete_or_fail_to_a_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let config = generated(dir.path(), 300, 5, "2024-01", 26);
    let warehouse = dir.path().join("warehouse");
    let data = dir.path().join("data");
    let receiver = Receiver::start();
    let job = default_job();
    let job = job.to_str().unwrap();
    let parent_run = "0190b3a1-2c3d-7e4f-8a9b-0c1d2e3f4a5b";
    let parent_id = format!("airflow/monthly.segments/{parent_run}");

    // 1. A successful run, the destination and parent from the variables.
    let before = chrono::Utc::now();
    let output = segments(
        dir.path(),
        &[
            "run",
            "--job",
            job,
            "--config",
            config.to_str().unwrap(),
            "--period",
            "2024-04",
        ],
        &[
            ("OPENLINEAGE_URL", &receiver.url()),
            ("OPENLINEAGE_NAMESPACE", "acme_prod"),
            ("OPENLINEAGE_API_KEY", "s3cret-key"),
            ("OPENLINEAGE_PARENT_ID", &parent_id),
        ],
    );
    let after = chrono::Utc::now();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        !stderr(&output).contains("OpenLineage"),
        "{}",
        stderr(&output)
    );
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    for request in &requests {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/api/v1/lineage");
        assert_eq!(request.content_type.as_deref(), Some("application/json"));
        assert_eq!(request.authorization.as_deref(), Some("Bearer s3cret-key"));
    }
    let events = receiver.events_from(0);
    eprintln!(
        "the COMPLETE event as the receiver got it:\n{}",
        serde_json::to_string_pretty(&events[1]).unwrap()
    );
    assert_valid(&events);
    let (start, complete) = (&events[0], &events[1]);
    assert_eq!(start["eventType"], "START");
    assert_eq!(start["run"]["runId"], complete["run"]["runId"]);
    assert_uuid_v7(start["run"]["runId"].as_str().unwrap());
    for event in [start, complete] {
        assert_eq!(event["job"]["namespace"], "acme_prod");
        assert_eq!(event["job"]["name"], "rfm_monthly");
        let time =
            chrono::DateTime::parse_from_rfc3339(event["eventTime"].as_str().unwrap()).unwrap();
        assert!(before <= time && time <= after, "{time}");
        let parent = run_facet(event, "parent");
        assert_eq!(parent["run"]["runId"], parent_run);
        assert_eq!(parent["job"]["namespace"], "airflow");
        assert_eq!(parent["job"]["name"], "monthly.segments");
        // No OPENLINEAGE_ROOT_PARENT_ID: the parent is the root.
        assert_eq!(parent["root"]["run"], parent["run"]);
        assert_eq!(parent["root"]["job"], parent["job"]);
        let nominal = run_facet(event, "nominalTime");
        assert_eq!(nominal["nominalStartTime"], "2024-04-01T00:00:00Z");
        assert_eq!(nominal["nominalEndTime"], "2024-05-01T00:00:00Z");
        assert_eq!(event["job"]["facets"]["jobType"]["processingType"], "BATCH");
    }
    assert!(start["outputs"].as_array().unwrap().is_empty());
    assert!(
        start["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i.get("inputFacets").is_none())
    );
    assert!(complete["run"]["facets"].get("errorMessage").is_none());
    check_complete(complete, &warehouse, &data, "2024-04");

    // 2. A failed run (a gate, exit 3), the destination from the config's
    // `lineage:`: START then FAIL with the error, the exit code unchanged.
    let strict = with_extra(
        &config,
        "strict.yaml",
        &format!(
            "lineage:\n  url: {}\n  namespace: from_config\n",
            receiver.url()
        ),
    );
    let text = std::fs::read_to_string(&strict)
        .unwrap()
        .replace("max_revenue_change: 100", "max_revenue_change: 0.000001");
    std::fs::write(&strict, text).unwrap();
    let output = segments(
        dir.path(),
        &[
            "run",
            "--job",
            job,
            "--config",
            strict.to_str().unwrap(),
            "--period",
            "2024-05",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let events = receiver.events_from(2);
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_valid(&events);
    let (start, fail) = (&events[0], &events[1]);
    assert_eq!(start["eventType"], "START");
    assert_eq!(fail["eventType"], "FAIL");
    assert_eq!(start["run"]["runId"], fail["run"]["runId"]);
    assert_eq!(fail["job"]["namespace"], "from_config");
    assert!(run_facet(fail, "parent").is_null());
    let message = run_facet(fail, "errorMessage")["message"].as_str().unwrap();
    assert!(message.contains("revenue_change"), "{message}");
    assert!(stderr(&output).contains("revenue_change"));
    assert_eq!(
        run_facet(fail, "errorMessage")["programmingLanguage"],
        "RUST"
    );
    assert_eq!(run_facet(fail, "segments_run")["exitCode"], 3);
    assert!(fail["outputs"].as_array().unwrap().is_empty());
    // Nothing was published for the period.
    assert!(
        !warehouse
            .join("rfm_monthly/_runs/period=2024-05/_SUCCESS")
            .exists()
    );

    // 3. A job file that does not load (exit 2): START and FAIL all the
    // same, the job named after its file.
    let broken = dir.path().join("broken_job.yaml");
    std::fs::write(&broken, "name: [\n").unwrap();
    let output = segments(
        dir.path(),
        &[
            "run",
            "--job",
            broken.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--period",
            "2024-04",
        ],
        &[("OPENLINEAGE_URL", &receiver.url())],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let events = receiver.events_from(4);
    assert_eq!(
        events
            .iter()
            .map(|e| e["eventType"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["START", "FAIL"]
    );
    assert_valid(&events);
    assert_eq!(events[1]["job"]["name"], "broken_job");
    assert_eq!(events[1]["job"]["namespace"], "default");
    assert!(
        run_facet(&events[1], "errorMessage")["message"]
            .as_str()
            .unwrap()
            .contains("broken_job.yaml")
    );

    // 4. Off: no destination, OPENLINEAGE_DISABLED, or a dry run: nothing
    // reaches the receiver.
    let run_args = [
        "run",
        "--job",
        job,
        "--config",
        config.to_str().unwrap(),
        "--period",
        "2024-03",
    ];
    for (env, dry_run) in [
        (vec![], false),
        (
            vec![
                ("OPENLINEAGE_URL", receiver.url()),
                ("OPENLINEAGE_DISABLED", "true".to_string()),
            ],
            false,
        ),
        (vec![("OPENLINEAGE_URL", receiver.url())], true),
    ] {
        let mut args = run_args.to_vec();
        if dry_run {
            args.push("--dry-run");
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let output = segments(dir.path(), &args, &env);
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(receiver.requests().len(), 6, "{env:?} dry run {dry_run}");
    }

    // 5. A receiver that does not answer: a warning, once, naming no
    // credential; the run still succeeds.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = segments(
        dir.path(),
        &run_args,
        &[
            (
                "OPENLINEAGE_URL",
                &format!("http://scott:tiger-secret@127.0.0.1:{closed}/"),
            ),
            ("OPENLINEAGE_API_KEY", "s3cret-key"),
        ],
    );
    let text = stderr(&output);
    assert!(output.status.success(), "{text}");
    assert_eq!(
        text.matches("could not send the OpenLineage").count(),
        1,
        "{text}"
    );
    assert!(text.contains("START event"), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{closed}")), "{text}");
    assert!(
        !text.contains("tiger-secret") && !text.contains("scott") && !text.contains("s3cret-key"),
        "{text}"
    );
    assert!(
        warehouse
            .join("rfm_monthly/_runs/period=2024-03/_SUCCESS")
            .exists()
    );
}

#[test]
fn a_backfill_sends_one_run_per_period_under_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let config = generated(dir.path(), 200, 5, "2024-01", 7);
    let warehouse = dir.path().join("warehouse");
    let data = dir.path().join("data");
    let receiver = Receiver::start();
    let job = default_job();
    let root_run = "0190b3a1-0000-7000-8000-000000000001";
    let run_backfill = |env: &[(&str, &str)]| {
        segments(
            dir.path(),
            &[
                "backfill",
                "--job",
                job.to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
                "--from",
                "2024-02",
                "--to",
                "2024-04",
            ],
            env,
        )
    };
    let output = run_backfill(&[
        ("OPENLINEAGE_URL", &receiver.url()),
        (
            "OPENLINEAGE_PARENT_ID",
            &format!("airflow/dag.backfill_task/{root_run}"),
        ),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let events = receiver.events_from(0);
    assert_valid(&events);
    let summary: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["eventType"].as_str().unwrap().to_string(),
                e["job"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let pair = |t: &str, j: &str| (t.to_string(), j.to_string());
    assert_eq!(
        summary,
        [
            pair("START", "rfm_monthly.backfill"),
            pair("START", "rfm_monthly"),
            pair("COMPLETE", "rfm_monthly"),
            pair("START", "rfm_monthly"),
            pair("COMPLETE", "rfm_monthly"),
            pair("START", "rfm_monthly"),
            pair("COMPLETE", "rfm_monthly"),
            pair("COMPLETE", "rfm_monthly.backfill"),
        ]
    );
    let backfill = &events[0];
    let backfill_run = backfill["run"]["runId"].as_str().unwrap();
    assert_uuid_v7(backfill_run);
    assert_eq!(events[7]["run"]["runId"], backfill_run);
    // The backfill's parent is the scheduler's task.
    let parent = run_facet(backfill, "parent");
    assert_eq!(parent["run"]["runId"], root_run);
    assert_eq!(parent["job"]["name"], "dag.backfill_task");
    assert_eq!(
        run_facet(backfill, "segments_run")["period"],
        "2024-02..2024-04"
    );
    assert_eq!(
        run_facet(backfill, "nominalTime")["nominalStartTime"],
        "2024-02-01T00:00:00Z"
    );
    assert_eq!(
        run_facet(backfill, "nominalTime")["nominalEndTime"],
        "2024-05-01T00:00:00Z"
    );
    assert_eq!(
        backfill["job"]["facets"]["segments_job"]["ruleHash"],
        manifest(&warehouse, "2024-02")["rule_hash"]
    );
    for (index, period) in ["2024-02", "2024-03", "2024-04"].iter().enumerate() {
        let (start, complete) = (&events[1 + 2 * index], &events[2 + 2 * index]);
        assert_eq!(start["run"]["runId"], complete["run"]["runId"]);
        for event in [start, complete] {
            let parent = run_facet(event, "parent");
            assert_eq!(parent["run"]["runId"], backfill_run, "{period}");
            assert_eq!(parent["job"]["name"], "rfm_monthly.backfill");
            assert_eq!(parent["job"]["namespace"], "default");
            assert_eq!(parent["root"]["run"]["runId"], root_run);
            assert_eq!(parent["root"]["job"]["name"], "dag.backfill_task");
            assert_eq!(run_facet(event, "segments_run")["period"], *period);
        }
        check_complete(complete, &warehouse, &data, period);
    }
    let run_ids: std::collections::BTreeSet<&str> = events
        .iter()
        .map(|e| e["run"]["runId"].as_str().unwrap())
        .collect();
    assert_eq!(run_ids.len(), 4);

    // Run again: every period is already published and skipped; the
    // backfill alone sends its START and COMPLETE.
    let output = run_backfill(&[("OPENLINEAGE_URL", &receiver.url())]);
    assert!(output.status.success(), "{}", stderr(&output));
    let again = receiver.events_from(8);
    assert_eq!(again.len(), 2, "{again:#?}");
    assert_eq!(again[0]["job"]["name"], "rfm_monthly.backfill");
    assert_eq!(again[1]["eventType"], "COMPLETE");
}

#[test]
fn the_file_transport_appends_one_event_a_line_and_malformed_events_fail_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let config = generated(dir.path(), 200, 4, "2024-01", 11);
    let job = default_job();
    let job = job.to_str().unwrap();
    let from_config = dir.path().join("from_config.jsonl");
    let with_file = with_extra(
        &config,
        "file.yaml",
        &format!("lineage:\n  file: {}\n", from_config.display()),
    );
    let run = |config: &Path, period: &str, env: &[(&str, &str)]| {
        let output = segments(
            dir.path(),
            &[
                "run",
                "--job",
                job,
                "--config",
                config.to_str().unwrap(),
                "--period",
                period,
            ],
            env,
        );
        assert!(output.status.success(), "{}", stderr(&output));
    };
    run(&with_file, "2024-02", &[]);
    run(&with_file, "2024-03", &[]);
    let lines = |path: &Path| -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON event a line"))
            .collect()
    };
    let events = lines(&from_config);
    assert_eq!(
        events
            .iter()
            .map(|e| e["eventType"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["START", "COMPLETE", "START", "COMPLETE"]
    );
    assert_valid(&events);
    check_complete(
        &events[3],
        &dir.path().join("warehouse"),
        &dir.path().join("data"),
        "2024-03",
    );

    // The clients' variables win over the config.
    let from_env = dir.path().join("from_env.jsonl");
    run(
        &with_file,
        "2024-04",
        &[
            ("OPENLINEAGE__TRANSPORT__TYPE", "file"),
            (
                "OPENLINEAGE__TRANSPORT__LOG_FILE_PATH",
                from_env.to_str().unwrap(),
            ),
        ],
    );
    assert_eq!(lines(&from_config).len(), 4);
    assert_eq!(lines(&from_env).len(), 2);

    // The schema check sees malformed events: each of these breaks the spec
    // or a facet's schema, and the validator says so.
    let good = &events[3];
    let broken = |edit: &dyn Fn(&mut Value)| {
        let mut event = good.clone();
        edit(&mut event);
        event
    };
    let malformed = [
        broken(&|e| e["run"]["runId"] = "run-1".into()),
        broken(&|e| {
            e.as_object_mut().unwrap().remove("run");
        }),
        broken(&|e| e["eventType"] = "DONE".into()),
        broken(&|e| e["eventTime"] = "yesterday".into()),
        broken(&|e| {
            e["run"]["facets"]["nominalTime"]
                .as_object_mut()
                .unwrap()
                .remove("_producer");
        }),
        broken(&|e| {
            e["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] = "many".into()
        }),
        broken(&|e| {
            e["run"]["facets"]["segments_run"]["rows"]
                .as_object_mut()
                .unwrap()
                .remove("rejected");
        }),
        broken(&|e| {
            e["job"]["facets"]["segments_job"]["_schemaURL"] = "urn:unknown#/$defs/X".into()
        }),
    ];
    let results = validate(&malformed);
    for (event, result) in malformed.iter().zip(&results) {
        assert!(result.starts_with("error: "), "accepted: {event:#}");
    }
    eprintln!("the validator on malformed events:\n{}", results.join("\n"));
    // The spec itself does not require `eventType`: an event without one
    // is valid, which is why the tests check every event's type themselves.
    let without_type = broken(&|e| {
        e.as_object_mut().unwrap().remove("eventType");
    });
    assert_eq!(validate(&[without_type]), ["ok"]);
}

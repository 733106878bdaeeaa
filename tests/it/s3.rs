//! Object storage: the job against a real S3-compatible server that the tests
//! start themselves on 127.0.0.1 (`s3s-fs`, in-process, with signature
//! checking on). Inputs are uploaded to a bucket, tables are published to
//! another, and everything is compared row by row with a clean run on local
//! files. Faults are injected both at the HTTP level (the server answers 503:
//! the client's retries must absorb them) and at the `ObjectStore` level
//! (`segments::storage::fault`: fail the Nth call of a kind), and the real
//! binary is killed with SIGKILL at seeded random moments.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as KeyPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use segments::config::{Config, Job};
use segments::model::period::Period;
use segments::run::{self, RunError, RunOptions};
use segments::storage::fault::{CallKind, Faults, Rule};
use segments::storage::{self, StoreWrapper, Warehouse};
use segments::warehouse::lease::{Lease, LeaseError};

use crate::common::{default_job, segments_ok, write_config};
use crate::fixture::write_fixture;

const ACCESS_KEY: &str = "SEGTESTKEYID7Q2ZX";
pub(crate) const SECRET_KEY: &str = "segtest-secret-9f8e7d6c5b4a39281706";
const JOB: &str = "rfm_monthly";
/// The fixture is tiny: its month-to-month swings would trip the change gates.
const QUALITY: &str = "quality:\n  max_active_customers_change: 1000\n  max_revenue_change: 1000\n";

// ---------------------------------------------------------------- server

/// An HTTP-level fault: answer `status` to the next `remaining` requests
/// with this method whose path contains `path_contains`.
struct HttpFault {
    method: &'static str,
    path_contains: String,
    remaining: usize,
    status: u16,
}

/// An `s3s-fs` server on a random port of 127.0.0.1, in its own thread and
/// runtime (so it outlives any runtime or process of the test).
pub(crate) struct S3Server {
    endpoint: String,
    root: tempfile::TempDir,
    log: Arc<Mutex<Vec<(String, String)>>>,
    faults: Arc<Mutex<Vec<HttpFault>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl S3Server {
    fn start(buckets: &[&str]) -> S3Server {
        let root = tempfile::tempdir().unwrap();
        for bucket in buckets {
            std::fs::create_dir(root.path().join(bucket)).unwrap();
        }
        let log: Arc<Mutex<Vec<(String, String)>>> = Default::default();
        let faults: Arc<Mutex<Vec<HttpFault>>> = Default::default();
        let (address_tx, address_rx) = std::sync::mpsc::channel::<SocketAddr>();
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let fs_root = root.path().to_path_buf();
        let (thread_log, thread_faults) = (log.clone(), faults.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(serve(
                fs_root,
                thread_log,
                thread_faults,
                address_tx,
                shutdown_rx,
            ));
        });
        let address = address_rx.recv().unwrap();
        S3Server {
            endpoint: format!("http://{address}"),
            root,
            log,
            faults,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    fn fail_next(&self, method: &'static str, path_contains: &str, count: usize, status: u16) {
        self.faults.lock().unwrap().push(HttpFault {
            method,
            path_contains: path_contains.to_string(),
            remaining: count,
            status,
        });
    }

    fn clear_faults(&self) {
        self.faults.lock().unwrap().clear();
    }

    /// Requests served so far: (method, path).
    fn requests(&self) -> Vec<(String, String)> {
        self.log.lock().unwrap().clone()
    }

    /// Multipart uploads the server still has open (s3s-fs keeps one
    /// `.upload-<id>.json` record, and the parts, per open upload).
    pub(crate) fn open_uploads(&self) -> Vec<String> {
        std::fs::read_dir(self.root.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| {
                (name.starts_with(".upload-") && name.ends_with(".json"))
                    || name.starts_with(".upload_id-")
            })
            .collect()
    }

    fn client(&self, bucket: &str, secret: &str) -> Arc<dyn ObjectStore> {
        Arc::new(
            AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_endpoint(&self.endpoint)
                .with_region("us-east-1")
                .with_allow_http(true)
                .with_access_key_id(ACCESS_KEY)
                .with_secret_access_key(secret)
                .build()
                .unwrap(),
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    root: PathBuf,
    log: Arc<Mutex<Vec<(String, String)>>>,
    faults: Arc<Mutex<Vec<HttpFault>>>,
    address: std::sync::mpsc::Sender<SocketAddr>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    let fs = s3s_fs::FileSystem::new(&root).unwrap();
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let s3 = builder.build();
    // s3s-fs checks `If-None-Match: *` and then writes, so two concurrent
    // conditional creates can both succeed; S3 itself decides them
    // atomically. Serialising PUTs here gives the test server S3's semantics
    // (the lease depends on them, as docs/design.md §5 says).
    let puts = Arc::new(tokio::sync::Mutex::new(()));
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
        let (s3, log, faults, puts) = (s3.clone(), log.clone(), faults.clone(), puts.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let (s3, log, faults, puts) =
                    (s3.clone(), log.clone(), faults.clone(), puts.clone());
                async move {
                    let method = request.method().to_string();
                    let path = request.uri().to_string();
                    log.lock().unwrap().push((method.clone(), path.clone()));
                    let injected = {
                        let mut faults = faults.lock().unwrap();
                        faults
                            .iter_mut()
                            .find(|f| {
                                f.remaining > 0
                                    && f.method == method
                                    && path.contains(&f.path_contains)
                            })
                            .map(|f| {
                                f.remaining -= 1;
                                f.status
                            })
                    };
                    if let Some(status) = injected {
                        return Ok(hyper::Response::builder()
                            .status(status)
                            .body(s3s::Body::from(
                                "<Error><Code>SlowDown</Code><Message>injected</Message></Error>"
                                    .to_string(),
                            ))
                            .unwrap());
                    }
                    let _serial = if method == "PUT" {
                        Some(puts.lock().await)
                    } else {
                        None
                    };
                    hyper::service::Service::call(&s3, request).await
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(socket), service)
                .await;
        });
    }
}

// ---------------------------------------------------------------- helpers

pub(crate) fn block<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// Upload every file under `local` to `prefix/` of a bucket (real PUTs).
async fn upload_dir(store: &Arc<dyn ObjectStore>, local: &Path, prefix: &str) {
    let mut stack = vec![local.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path.strip_prefix(local).unwrap().to_string_lossy();
                let key = KeyPath::parse(format!("{prefix}/{relative}")).unwrap();
                store
                    .put(&key, PutPayload::from(std::fs::read(&path).unwrap()))
                    .await
                    .unwrap();
            }
        }
    }
}

/// The fixture, locally (for the clean reference runs) and in `s3://data/transactions/`.
pub(crate) struct Setup {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) server: S3Server,
    local_config: PathBuf,
    pub(crate) local_warehouse: PathBuf,
}

pub(crate) fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_fixture(&data.join("transactions"));
    let local_warehouse = dir.path().join("local-warehouse");
    let local_dir = dir.path().join("local");
    std::fs::create_dir(&local_dir).unwrap();
    let local_config = write_config(&local_dir, &data.join("transactions"), &local_warehouse);
    let text = std::fs::read_to_string(&local_config).unwrap();
    if !text.contains("quality:") {
        std::fs::write(&local_config, format!("{text}{QUALITY}")).unwrap();
    }
    let server = S3Server::start(&["data", "warehouse"]);
    block(upload_dir(
        &server.client("data", SECRET_KEY),
        &data.join("transactions"),
        "transactions",
    ));
    Setup {
        dir,
        server,
        local_config,
        local_warehouse,
    }
}

impl Setup {
    /// A config reading `s3://data/transactions/` and publishing to
    /// `s3://warehouse/<prefix>/`. Credentials: `${SEG_S3_KEY}`/`${SEG_S3_SECRET}`
    /// when `with_keys` (in-process runs), else the environment.
    pub(crate) fn s3_config(
        &self,
        name: &str,
        prefix: &str,
        extra: &str,
        with_keys: bool,
    ) -> PathBuf {
        let keys = if with_keys {
            "  access_key_id: ${SEG_S3_KEY}\n  secret_access_key: ${SEG_S3_SECRET}\n"
        } else {
            ""
        };
        let path = self.dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "{QUALITY}warehouse: s3://warehouse/{prefix}\ntimezone: UTC\ninputs:\n  transactions:\n    url: s3://data/transactions/\n    format: parquet\n    partition_columns: [month]\nstorage:\n  region: us-east-1\n  endpoint: {}\n  allow_http: true\n  retry:\n    max_retries: 3\n    initial_backoff: 10ms\n    max_backoff: 100ms\n    deadline: 10s\n{keys}{extra}{ttl}",
                self.server.endpoint,
                ttl = if extra.contains("lease_ttl") { "" } else { "  lease_ttl: 2s\n" }
            ),
        )
        .unwrap();
        path
    }

    pub(crate) fn warehouse_store(&self) -> Arc<dyn ObjectStore> {
        self.server.client("warehouse", SECRET_KEY)
    }

    /// Clean local runs of `periods`, in order (the reference).
    pub(crate) fn local_runs(&self, periods: &[&str]) {
        for period in periods {
            segments_ok(
                self.dir.path(),
                &[
                    "run",
                    "--job",
                    default_job().to_str().unwrap(),
                    "--config",
                    self.local_config.to_str().unwrap(),
                    "--period",
                    period,
                ],
            );
        }
    }
}

/// Run the binary with the S3 credentials in its environment.
pub(crate) fn segments_s3(cwd: &Path, args: &[&str], secret: &str) -> Output {
    s3_command(cwd, args, secret).output().unwrap()
}

pub(crate) fn s3_command(cwd: &Path, args: &[&str], secret: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_segments"));
    command
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "warn")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE");
    command
}

pub(crate) fn run_args<'a>(config: &'a Path, period: &'a str) -> Vec<String> {
    vec![
        "run".into(),
        "--job".into(),
        default_job().to_str().unwrap().into(),
        "--config".into(),
        config.to_str().unwrap().into(),
        "--period".into(),
        period.into(),
    ]
}

pub(crate) fn ok(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn decode(bytes: Bytes) -> Vec<RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn pretty(batches: &[RecordBatch]) -> String {
    pretty_format_batches(batches).unwrap().to_string()
}

/// Every object of a store under `prefix`, by key relative to it.
async fn objects(store: &Arc<dyn ObjectStore>, prefix: &str) -> BTreeMap<String, Bytes> {
    let prefix_path = KeyPath::parse(prefix).unwrap();
    let metas: Vec<_> = store.list(Some(&prefix_path)).try_collect().await.unwrap();
    let mut out = BTreeMap::new();
    for meta in metas {
        let bytes = store
            .get(&meta.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let key = meta.location.as_ref()[prefix.len() + 1..].to_string();
        out.insert(key, bytes);
    }
    out
}

/// The published tables of a local warehouse, by relative key, as text.
/// `published_periods` carries run ids and times: only its periods count.
pub(crate) fn local_tables(warehouse: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![warehouse.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let key = path
                .strip_prefix(warehouse)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if key.ends_with(".parquet") {
                let batches = decode(Bytes::from(std::fs::read(&path).unwrap()));
                out.insert(key.clone(), table_text(&key, &batches));
            } else if key.ends_with("_SUCCESS") {
                out.insert(key, String::new());
            }
        }
    }
    out
}

fn table_text(key: &str, batches: &[RecordBatch]) -> String {
    if key.contains("published_periods") {
        let periods: Vec<RecordBatch> = batches.iter().map(|b| b.project(&[0]).unwrap()).collect();
        pretty(&periods)
    } else {
        pretty(batches)
    }
}

/// The published tables of an S3 warehouse prefix, like [`local_tables`].
pub(crate) async fn s3_tables(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
) -> BTreeMap<String, String> {
    objects(store, prefix)
        .await
        .into_iter()
        .filter_map(|(key, bytes)| {
            if key.ends_with(".parquet") {
                let text = table_text(&key, &decode(bytes));
                Some((key, text))
            } else if key.ends_with("_SUCCESS") {
                Some((key, String::new()))
            } else {
                None
            }
        })
        .collect()
}

/// Table partitions of 2024-06 in a published listing.
fn june_partitions(tables: &BTreeMap<String, String>) -> usize {
    tables
        .keys()
        .filter(|k| k.contains("/period=2024-06/") && !k.contains("_runs"))
        .count()
}

pub(crate) fn assert_same_tables(
    expected: &BTreeMap<String, String>,
    actual: &BTreeMap<String, String>,
) {
    let expected_keys: Vec<_> = expected.keys().collect();
    let actual_keys: Vec<_> = actual.keys().collect();
    assert_eq!(actual_keys, expected_keys, "published objects differ");
    for (key, text) in expected {
        assert_eq!(&actual[key], text, "{key} differs from the clean local run");
    }
}

fn secrets_env(name: &str) -> Option<String> {
    match name {
        "SEG_S3_KEY" => Some(ACCESS_KEY.into()),
        "SEG_S3_SECRET" => Some(SECRET_KEY.into()),
        _ => None,
    }
}

pub(crate) fn load(config: &Path) -> (Job, Config) {
    let job = Job::load(&default_job()).unwrap();
    let config = Config::load_with_env(config, secrets_env).unwrap();
    (job, config)
}

pub(crate) fn options(period: &str) -> RunOptions {
    RunOptions::new(period.parse::<Period>().unwrap())
}

/// Run in-process with every store wrapped by `faults`.
async fn run_wrapped(
    job: &Job,
    config: &Config,
    period: &str,
    faults: &Arc<Faults>,
) -> Result<(), RunError> {
    let faults = faults.clone();
    let wrap: StoreWrapper = Arc::new(move |_url, store| faults.wrap(store));
    storage::with_store_wrapper(wrap, run::run(job, config, options(period)))
        .await
        .map(|_| ())
}

/// Run in-process; a lease left live by an injected failure of its release
/// expires after the configured 2s TTL, so wait for it as a CronJob retry would.
async fn run_until_not_held(job: &Job, config: &Config, period: &str, faults: &Arc<Faults>) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match run_wrapped(job, config, period, faults).await {
            Ok(()) => return,
            Err(RunError::Lease(LeaseError::Held { .. })) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(error) => panic!("rerun of {period} failed: {error}"),
        }
    }
}

// ---------------------------------------------------------------- tests

/// Two periods read from and published to buckets, then a rerun: the tables
/// equal a clean local run's row by row, migrations use the published
/// previous period, the manifest lists the S3 input objects.
#[test]
fn s3_two_periods_and_rerun_equal_local_runs() {
    let setup = setup();
    setup.local_runs(&["2024-05", "2024-06"]);
    let config = setup.s3_config("s3.yaml", "wh", "", false);
    for period in ["2024-05", "2024-06", "2024-06"] {
        let args = run_args(&config, period);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(&segments_s3(setup.dir.path(), &args, SECRET_KEY), period);
    }
    let store = setup.warehouse_store();
    let expected = local_tables(&setup.local_warehouse);
    assert!(expected.len() >= 2 * 6, "{expected:?}");
    assert_same_tables(&expected, &block(s3_tables(&store, "wh")));

    let all = block(objects(&store, "wh"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&all["rfm_monthly/_runs/period=2024-06/_manifest.json"]).unwrap();
    assert_eq!(manifest["from_side"], "published", "{manifest}");
    let inputs = manifest["inputs"].as_array().unwrap();
    assert!(
        inputs.iter().all(|i| i["path"]
            .as_str()
            .unwrap()
            .starts_with("transactions/month="))
            && inputs.iter().all(|i| i["size"].as_u64().unwrap() > 0),
        "{manifest}"
    );
    // One lease generation is kept per period, released.
    let leases: Vec<_> = all
        .keys()
        .filter(|k| k.starts_with("rfm_monthly/_runs/period=2024-06/_lease-"))
        .collect();
    assert_eq!(leases.len(), 1, "{leases:?}");
    let lease: serde_json::Value = serde_json::from_slice(&all[leases[0]]).unwrap();
    assert_eq!(lease["released"], true, "{lease}");
    assert_eq!(lease["run_id"], manifest["run_id"]);
    // The rerun replaced, it did not add: one object per table partition.
    let partitions = all
        .keys()
        .filter(|k| k.contains("/period=2024-06/") && !k.contains("_runs"))
        .count();
    assert_eq!(
        partitions,
        june_partitions(&expected),
        "{:?}",
        all.keys().collect::<Vec<_>>()
    );
    assert!(setup.server.open_uploads().is_empty());
}

/// The standard environment of an S3-compatible server (`AWS_ENDPOINT`,
/// `AWS_ALLOW_HTTP`, as object_store's `from_env` reads them) works without
/// `storage.endpoint` in the config; a plain-http endpoint without the
/// permission is refused with a message that says how to allow it.
#[test]
fn s3_standard_environment_variables_reach_the_server() {
    let setup = setup();
    setup.local_runs(&["2024-05"]);
    let config = setup.s3_config("s3-env.yaml", "env", "", false);
    // The same config, but the endpoint and the http permission only in the
    // environment.
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .replace(&format!("  endpoint: {}\n", setup.server.endpoint), "")
        .replace("  allow_http: true\n", "");
    assert!(
        !text.contains("endpoint:") && !text.contains("allow_http"),
        "{text}"
    );
    std::fs::write(&config, text).unwrap();
    let args = run_args(&config, "2024-05");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let refused = s3_command(setup.dir.path(), &args, SECRET_KEY)
        .env("AWS_ENDPOINT", &setup.server.endpoint)
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ALLOW_HTTP")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("plain http") && stderr.contains("AWS_ALLOW_HTTP=true"),
        "{stderr}"
    );
    assert!(!stderr.contains("builder error"), "{stderr}");

    let output = s3_command(setup.dir.path(), &args, SECRET_KEY)
        .env("AWS_ENDPOINT", &setup.server.endpoint)
        .env_remove("AWS_ENDPOINT_URL")
        .env("AWS_ALLOW_HTTP", "true")
        .output()
        .unwrap();
    ok(&output, "2024-05 with AWS_ENDPOINT and AWS_ALLOW_HTTP");
    let expected = local_tables(&setup.local_warehouse);
    assert!(!expected.is_empty());
    assert_same_tables(
        &expected,
        &block(s3_tables(&setup.warehouse_store(), "env")),
    );
}

/// DataFusion lists and prunes Hive partitions on S3 as on local files: a
/// query on one month reads that month's object only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_hive_partition_pruning_reads_only_the_needed_month() {
    let setup = tokio::task::spawn_blocking(setup).await.unwrap();
    let config_path = setup.s3_config("prune.yaml", "wh", "", true);
    let config = Config::load_with_env(&config_path, secrets_env).unwrap();
    let faults = Faults::new();
    let wrap_faults = faults.clone();
    let wrap: StoreWrapper = Arc::new(move |_url, store| wrap_faults.wrap(store));
    let count = storage::with_store_wrapper(
        wrap,
        storage::scoped(config.storage.clone(), async {
            let ctx = segments::engine::session(&config).unwrap();
            let files = segments::inputs::register(&ctx, &config, &["transactions".to_string()])
                .await
                .unwrap()
                .files;
            assert!(files.len() >= 10, "{files:?}");
            faults.reset();
            let batches = ctx
                .sql(
                    "SELECT count(*) AS n FROM (SELECT order_id, amount FROM __source_transactions \
                     WHERE month = '2024-05' AND amount > 0 ORDER BY order_id)",
                )
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            pretty(&batches)
        }),
    )
    .await;
    // The fixture has 5 lines in May 2024 (c01, c05, c06, c15, c18) plus one
    // anonymous ticket.
    assert!(count.contains("| 6 "), "{count}");
    let reads: Vec<String> = faults
        .log()
        .into_iter()
        .filter(|(kind, _)| matches!(kind, CallKind::Get | CallKind::Head))
        .map(|(_, key)| key)
        .collect();
    assert!(
        !reads.is_empty(),
        "the query read nothing through the store"
    );
    assert!(
        reads.iter().all(|key| key.contains("month=2024-05/")),
        "objects of other months were read: {reads:?}"
    );
}

/// Transient 503s within the retry budget end in success; errors beyond it,
/// and permanent ones (bad credentials, a missing bucket) exit 4 naming the
/// URL and what to check.
#[test]
fn s3_retries_transient_errors_and_fails_fast_on_permanent_ones() {
    let setup = setup();
    setup.local_runs(&["2024-05"]);
    let config = setup.s3_config("s3.yaml", "wh", "", false);
    let args = run_args(&config, "2024-05");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    // 503 on two PUTs of table partitions and two GETs of inputs: retried.
    setup.server.fail_next("PUT", "part-0.parquet", 2, 503);
    setup.server.fail_next("GET", "/data/transactions/", 2, 503);
    let started = Instant::now();
    ok(
        &segments_s3(setup.dir.path(), &args, SECRET_KEY),
        "run with transient 503s",
    );
    let served_503 = setup
        .server
        .faults
        .lock()
        .unwrap()
        .iter()
        .all(|f| f.remaining == 0);
    assert!(served_503, "the injected 503s were not all hit");
    assert_same_tables(
        &local_tables(&setup.local_warehouse),
        &block(s3_tables(&setup.warehouse_store(), "wh")),
    );
    eprintln!("run with 4 transient 503s took {:?}", started.elapsed());

    // Beyond the budget (3 retries): exit 4, the URL named, nothing published.
    setup.server.fail_next("PUT", "part-0.parquet", 1000, 503);
    let config2 = setup.s3_config("s3-2.yaml", "wh2", "", false);
    let args2 = run_args(&config2, "2024-05");
    let args2: Vec<&str> = args2.iter().map(String::as_str).collect();
    let output = segments_s3(setup.dir.path(), &args2, SECRET_KEY);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(4), "{message}");
    assert!(
        message.contains("s3://warehouse/wh2/rfm_monthly/")
            && message.contains("retried up to 3 times"),
        "{message}"
    );
    setup.server.clear_faults();
    let published = block(objects(&setup.warehouse_store(), "wh2"));
    assert!(
        !published.keys().any(|k| k.ends_with("_SUCCESS")),
        "{:?}",
        published.keys()
    );

    // Wrong secret: 403, exit 4, fast, credentials named as what to check.
    let started = Instant::now();
    let output = segments_s3(setup.dir.path(), &args, "not-the-secret-0000");
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(4), "{message}");
    assert!(
        message.contains("s3://warehouse/wh/") && message.contains("check the credentials"),
        "{message}"
    );
    assert!(
        !message.contains("not-the-secret") && !message.contains(ACCESS_KEY),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "403 is not retried"
    );

    // A bucket that does not exist.
    let config3 = setup.s3_config("s3-3.yaml", "wh", "", false);
    let text = std::fs::read_to_string(&config3)
        .unwrap()
        .replace("s3://warehouse/wh", "s3://no-such-bucket/wh");
    std::fs::write(&config3, text).unwrap();
    let args3 = run_args(&config3, "2024-05");
    let args3: Vec<&str> = args3.iter().map(String::as_str).collect();
    let output = segments_s3(setup.dir.path(), &args3, SECRET_KEY);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(4), "{message}");
    assert!(
        message.contains("s3://no-such-bucket/wh/") && message.contains("bucket"),
        "{message}"
    );
}

/// Two runs of the same period started together: exactly one publishes, the
/// other exits 1 naming the holder's run id.
#[test]
fn s3_two_concurrent_runs_exactly_one_publishes() {
    let setup = setup();
    let config = setup.s3_config("s3.yaml", "wh", "  lease_ttl: 30s\n", false);
    let args = run_args(&config, "2024-06");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let spawn = || {
        s3_command(setup.dir.path(), &args, SECRET_KEY)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    let outputs = [
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    ];
    let codes: Vec<_> = outputs.iter().map(|o| o.status.code()).collect();
    let winners = codes.iter().filter(|c| **c == Some(0)).count();
    assert_eq!(
        winners,
        1,
        "codes {codes:?}\n{}\n{}",
        stderr(&outputs[0]),
        stderr(&outputs[1])
    );
    let loser = outputs.iter().find(|o| o.status.code() != Some(0)).unwrap();
    assert_eq!(loser.status.code(), Some(1), "{}", stderr(loser));
    let all = block(objects(&setup.warehouse_store(), "wh"));
    let manifest: serde_json::Value =
        serde_json::from_slice(&all["rfm_monthly/_runs/period=2024-06/_manifest.json"]).unwrap();
    let winner_run = manifest["run_id"].as_str().unwrap();
    let message = stderr(loser);
    assert!(
        message.contains(winner_run) && message.contains("being published by another run"),
        "the loser does not name the holder {winner_run}:\n{message}"
    );
    assert!(all.contains_key("rfm_monthly/_runs/period=2024-06/_SUCCESS"));
}

/// Leases on S3 and on local files: a live lease stops a second run; a lease
/// whose holder died (not renewed, not released) is taken over after its
/// TTL; `force` breaks a live one and the old holder finds out; a create
/// retried after a timeout that meets its own write holds the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_is_exclusive_expires_and_can_be_forced() {
    let setup = tokio::task::spawn_blocking(setup).await.unwrap();
    let config_path = setup.s3_config("lease.yaml", "wh", "", true);
    let config = Config::load_with_env(&config_path, secrets_env).unwrap();
    let local = tempfile::tempdir().unwrap();
    let local_url = url::Url::from_directory_path(local.path())
        .unwrap()
        .to_string();
    for url in [config.warehouse.clone(), local_url] {
        storage::scoped(config.storage.clone(), async {
            let warehouse = Warehouse::open(&url).unwrap();
            let period: Period = "2024-06".parse().unwrap();
            let ttl = Duration::from_secs(1);
            let first = Lease::acquire(&warehouse, JOB, period, "run-a", ttl, false)
                .await
                .unwrap();
            // Renewed while held: still live well after one TTL.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            match Lease::acquire(&warehouse, JOB, period, "run-b", ttl, false).await {
                Err(LeaseError::Held { run_id, .. }) => assert_eq!(run_id, "run-a"),
                other => panic!("{url}: expected Held, got {other:?}"),
            }
            // Its own retried create holds it.
            let again = Lease::acquire(&warehouse, JOB, period, "run-a", ttl, false)
                .await
                .unwrap();
            drop(again);
            // The holder dies: no renewal, no release; taken over after the TTL.
            drop(first);
            tokio::time::sleep(Duration::from_millis(1300)).await;
            let second = Lease::acquire(&warehouse, JOB, period, "run-b", ttl, false)
                .await
                .unwrap();
            second.ensure_held().await.unwrap();
            // --force breaks a live lease; the old holder has lost it.
            let third = Lease::acquire(&warehouse, JOB, period, "run-c", ttl, true)
                .await
                .unwrap();
            match second.ensure_held().await {
                Err(LeaseError::Lost { reason, .. }) => {
                    assert!(reason.contains("run-c"), "{reason}")
                }
                other => panic!("{url}: expected Lost, got {other:?}"),
            }
            third.release().await.unwrap();
            // Released: the next run takes it at once.
            let fourth = Lease::acquire(&warehouse, JOB, period, "run-d", ttl, false)
                .await
                .unwrap();
            fourth.release().await.unwrap();
        })
        .await;
    }
}

/// Credentials in the environment never appear in logs (human and JSON, at
/// debug level), error messages or the manifest.
#[test]
fn s3_credentials_never_appear_in_logs_errors_or_manifest() {
    let setup = setup();
    let config = setup.s3_config("s3.yaml", "wh", "", false);
    let args = run_args(&config, "2024-05");
    let mut texts = Vec::new();
    for format in ["human", "json"] {
        let mut full: Vec<&str> = vec!["--log-format", format, "-vv"];
        full.extend(args.iter().map(String::as_str));
        let output = s3_command(setup.dir.path(), &full, SECRET_KEY)
            .env("RUST_LOG", "debug")
            .output()
            .unwrap();
        ok(&output, format);
        texts.push(stderr(&output));
        texts.push(String::from_utf8_lossy(&output.stdout).into_owned());
        // An error path too: a wrong secret that the server rejects.
        let wrong = format!("{SECRET_KEY}-wrong");
        let output = s3_command(setup.dir.path(), &full, &wrong)
            .env("RUST_LOG", "debug")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
        let text = stderr(&output);
        assert!(!text.contains(&wrong), "the wrong secret leaked");
        texts.push(text);
    }
    let all = block(objects(&setup.warehouse_store(), "wh"));
    for (key, bytes) in &all {
        if key.ends_with(".json") {
            texts.push(String::from_utf8_lossy(bytes).into_owned());
        }
    }
    assert!(
        texts.iter().any(|t| t.contains("run_id")),
        "the manifest was read"
    );
    assert!(
        texts.iter().map(String::len).sum::<usize>() > 10_000,
        "the debug logs were captured"
    );
    for text in &texts {
        assert!(!text.contains(SECRET_KEY), "secret leaked:\n{text}");
        assert!(!text.contains(ACCESS_KEY), "access key id leaked:\n{text}");
    }
}

/// A failure at every call the run makes to the warehouse: after each, a
/// reader sees the previous version with `_SUCCESS`, or the new one with
/// `_SUCCESS`, or no `_SUCCESS`; a rerun always ends with the new tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_fault_at_every_warehouse_call_leaves_old_new_or_unpublished() {
    let setup = tokio::task::spawn_blocking(setup).await.unwrap();
    // Versions: "old" = 2024-06 published by a job whose window is 12
    // months, "new" = the same period with the current inputs plus one more
    // line (so every table can tell them apart).
    let store = setup.warehouse_store();
    let config_path = setup.s3_config("faults.yaml", "wh", "", true);
    let (job, config) = load(&config_path);
    let none = Faults::new();
    run_wrapped(&job, &config, "2024-06", &none).await.unwrap();
    let old = s3_tables(&store, "wh").await;
    let old_objects = objects(&store, "wh").await;
    add_june_line(&setup).await;
    // A clean run of the new version, recording the warehouse calls.
    let recorder = Faults::new();
    run_wrapped(&job, &config, "2024-06", &recorder)
        .await
        .unwrap();
    let new = s3_tables(&store, "wh").await;
    assert_ne!(old, new);
    let calls: Vec<(CallKind, String)> = recorder
        .log()
        .into_iter()
        .filter(|(_, key)| key.starts_with("wh/"))
        .collect();
    assert!(calls.len() > 20, "{calls:?}");

    let mut seen: BTreeMap<CallKind, usize> = BTreeMap::new();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for (kind, key) in &calls {
        let nth = {
            let n = seen.entry(*kind).or_default();
            *n += 1;
            *n
        };
        // Back to the old version, published.
        restore(&store, "wh", &old_objects).await;
        let faults = Faults::new();
        faults.add(Rule {
            key_contains: "wh/".into(),
            ..Rule::fail(*kind, nth)
        });
        let result = run_wrapped(&job, &config, "2024-06", &faults).await;
        let state = s3_tables(&store, "wh").await;
        let outcome = classify_state(&state, &old, &new);
        assert!(
            outcome != "mixed",
            "fault on {kind:?} #{nth} ({key}) left a mix with _SUCCESS; run result: {result:?}"
        );
        if faults.injected().is_empty() {
            // The call did not happen this time (e.g. a lease renewal).
            *outcomes.entry("not reached".into()).or_default() += 1;
        } else {
            // A run that reports success published the new version whole
            // (a failure of a best-effort call, such as removing an old
            // lease generation or releasing the lease, is only logged).
            if result.is_ok() {
                assert_eq!(outcome, "new", "fault on {kind:?} #{nth} ({key})");
            }
            let verdict = if result.is_ok() {
                "run ok"
            } else {
                "run failed"
            };
            *outcomes
                .entry(format!(
                    "{kind:?} {key_class}: {verdict}, reader sees {outcome}",
                    key_class = key_class(key)
                ))
                .or_default() += 1;
        }
        run_until_not_held(&job, &config, "2024-06", &none).await;
        assert_eq!(
            s3_tables(&store, "wh").await,
            new,
            "rerun after {kind:?} #{nth}"
        );
    }
    eprintln!("fault points ({}): {outcomes:#?}", calls.len());
}

/// A short name for the kind of warehouse key a call was on.
fn key_class(key: &str) -> String {
    let name = key.rsplit('/').next().unwrap_or(key);
    if name.starts_with("_lease-") {
        "lease".into()
    } else if name.ends_with(".parquet") {
        let table = key.split('/').nth(2).unwrap_or("?");
        format!("{table}/{name}")
    } else if name.contains('=') || !name.contains('.') && !name.starts_with('_') {
        format!(
            "{} (listing)",
            key.split('/').skip(2).collect::<Vec<_>>().join("/")
        )
    } else {
        name.to_string()
    }
}

/// Append a line dated in June 2024 to the fixture's June file, in S3.
async fn add_june_line(setup: &Setup) {
    use datafusion::arrow::array::{Decimal128Array, StringArray, TimestampMicrosecondArray};
    let data = setup.server.client("data", SECRET_KEY);
    let key = KeyPath::parse("transactions/month=2024-06/part-0.parquet").unwrap();
    let mut batches = decode(data.get(&key).await.unwrap().bytes().await.unwrap());
    let schema = batches[0].schema();
    let at = chrono::NaiveDate::from_ymd_opt(2024, 6, 27)
        .unwrap()
        .and_hms_opt(12, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_micros();
    let extra = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec![Some("c21")])),
            Arc::new(StringArray::from(vec!["o21a"])),
            Arc::new(TimestampMicrosecondArray::from(vec![at]).with_timezone("UTC")),
            Arc::new(
                Decimal128Array::from(vec![4200_i128])
                    .with_precision_and_scale(18, 2)
                    .unwrap(),
            ),
        ],
    )
    .unwrap();
    batches.push(extra);
    let mut buffer = Vec::new();
    let mut writer =
        datafusion::parquet::arrow::ArrowWriter::try_new(&mut buffer, schema, None).unwrap();
    for batch in &batches {
        writer.write(batch).unwrap();
    }
    writer.close().unwrap();
    data.put(&key, PutPayload::from(buffer)).await.unwrap();
}

async fn restore(
    store: &Arc<dyn ObjectStore>,
    prefix: &str,
    objects_to_keep: &BTreeMap<String, Bytes>,
) {
    let current = objects(store, prefix).await;
    for key in current.keys() {
        if !objects_to_keep.contains_key(key) {
            store
                .delete(&KeyPath::parse(format!("{prefix}/{key}")).unwrap())
                .await
                .unwrap();
        }
    }
    for (key, bytes) in objects_to_keep {
        if current.get(key) != Some(bytes) {
            store
                .put(
                    &KeyPath::parse(format!("{prefix}/{key}")).unwrap(),
                    PutPayload::from_bytes(bytes.clone()),
                )
                .await
                .unwrap();
        }
    }
}

/// What a reader sees in a warehouse: "old", "new", "unpublished" (no
/// `_SUCCESS` for the period) or "mixed" (`_SUCCESS` over tables that are
/// neither version entirely).
fn classify_state(
    state: &BTreeMap<String, String>,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> &'static str {
    let success = "rfm_monthly/_runs/period=2024-06/_SUCCESS";
    let listed = state
        .get("rfm_monthly/published_periods/part-0.parquet")
        .is_some_and(|periods| periods.contains("2024-06"));
    let tables = |map: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        map.iter()
            .filter(|(k, _)| k.contains("/period=2024-06/") && !k.contains("_runs"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let current = tables(state);
    if !state.contains_key(success) {
        // Readers of `published_periods` must not be sent to a torn period.
        return if !listed || current == tables(old) {
            "unpublished"
        } else {
            "mixed"
        };
    }
    if current == tables(old) {
        "old"
    } else if current == tables(new) {
        "new"
    } else {
        "mixed"
    }
}

/// SIGKILL of the real binary at 20 seeded random moments of a run that
/// republishes a period, each followed by a rerun (which waits out the dead
/// run's lease, as a CronJob retry does): after every kill a reader sees the
/// period complete with `_SUCCESS` or not at all, and after every rerun all
/// published tables equal a clean local run's, row by row. No multipart
/// upload is left open on the server.
#[test]
fn s3_kill_at_random_moments_then_rerun_equals_clean_run() {
    use rand::{Rng, SeedableRng};
    let setup = setup();
    setup.local_runs(&["2024-05", "2024-06"]);
    let expected = local_tables(&setup.local_warehouse);
    let config = setup.s3_config("kill.yaml", "wh", "", false);
    let args_may = run_args(&config, "2024-05");
    let args_may: Vec<&str> = args_may.iter().map(String::as_str).collect();
    ok(
        &segments_s3(setup.dir.path(), &args_may, SECRET_KEY),
        "2024-05",
    );
    let args = run_args(&config, "2024-06");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = Instant::now();
    let before = setup.server.requests().len();
    ok(&segments_s3(setup.dir.path(), &args, SECRET_KEY), "2024-06");
    let clean = started.elapsed();
    let clean_requests = setup.server.requests().len() - before;
    let store = setup.warehouse_store();
    assert_same_tables(&expected, &block(s3_tables(&store, "wh")));

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5e6_2024);
    let success = "rfm_monthly/_runs/period=2024-06/_SUCCESS";
    let (mut killed_running, mut waited_for_lease) = (0, 0);
    let (mut published_after_kill, mut unpublished_after_kill) = (0, 0);
    let mut moments = Vec::new();
    // Even rounds: a random time after the start. Odd rounds: right when the
    // server has seen a random number of the run's requests, so the kills
    // also land inside the publish sequence whatever the machine's speed.
    for round in 0..24 {
        let base = setup.server.requests().len();
        let mut child = s3_command(setup.dir.path(), &args, SECRET_KEY)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let spawned = Instant::now();
        if round % 2 == 0 {
            let moment =
                Duration::from_millis(rng.random_range(0..clean.as_millis() as u64 * 6 / 5));
            std::thread::sleep(moment);
            moments.push(format!("{}ms", moment.as_millis()));
        } else {
            let nth = rng.random_range(1..=clean_requests);
            while setup.server.requests().len() - base < nth
                && child.try_wait().unwrap().is_none()
                && spawned.elapsed() < Duration::from_secs(30)
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            let (method, path) = setup
                .server
                .requests()
                .get(base + nth - 1)
                .cloned()
                .unwrap_or_default();
            let name = path
                .split('?')
                .next()
                .unwrap_or("")
                .rsplit('/')
                .next()
                .unwrap_or("");
            moments.push(format!("request {nth}/{clean_requests} ({method} {name})"));
        }
        let moment = spawned.elapsed();
        if child.try_wait().unwrap().is_none() {
            killed_running += 1;
        }
        child.kill().unwrap();
        child.wait().unwrap();

        // What a reader sees right after the kill.
        let state = block(s3_tables(&store, "wh"));
        if state.contains_key(success) {
            published_after_kill += 1;
        } else {
            unpublished_after_kill += 1;
        }
        if state.contains_key(success) {
            // Complete. `published_periods` is rewritten after `_SUCCESS`,
            // so a kill in between leaves it one period behind (it never
            // lists more than is complete); the rerun rewrites it.
            let pp = "rfm_monthly/published_periods/part-0.parquet";
            let without = |map: &BTreeMap<String, String>| -> BTreeMap<String, String> {
                map.iter()
                    .filter(|(k, _)| k.as_str() != pp)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            assert_same_tables(&without(&expected), &without(&state));
            assert!(state[pp].contains("2024-05"), "{}", state[pp]);
        } else {
            let periods = &state["rfm_monthly/published_periods/part-0.parquet"];
            let june_tables = state
                .keys()
                .filter(|k| k.contains("/period=2024-06/") && !k.contains("_runs"))
                .count();
            // Either published_periods does not list the period, or its
            // tables are still the complete earlier version.
            assert!(
                !periods.contains("2024-06") || june_tables == june_partitions(&expected),
                "round {round} (kill at {moment:?}, {}): torn period listed as published: {:#?}",
                moments.last().unwrap(),
                state.keys().collect::<Vec<_>>()
            );
        }

        // The rerun.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let output = segments_s3(setup.dir.path(), &args, SECRET_KEY);
            if output.status.success() {
                break;
            }
            let message = stderr(&output);
            assert!(
                output.status.code() == Some(1)
                    && message.contains("being published by another run")
                    && Instant::now() < deadline,
                "round {round}: rerun failed: {message}"
            );
            waited_for_lease += 1;
            std::thread::sleep(Duration::from_millis(300));
        }
        assert_same_tables(&expected, &block(s3_tables(&store, "wh")));
    }
    eprintln!(
        "clean run {clean:?}, {clean_requests} requests; kill moments {moments:#?}\nkilled while running {killed_running}/24; \
         right after the kill the period was published {published_after_kill}, unpublished {unpublished_after_kill}; \
         reruns that waited for the dead run's lease {waited_for_lease}"
    );
    assert!(
        killed_running >= 20,
        "too few kills landed mid-run: {killed_running}"
    );
    assert!(
        unpublished_after_kill >= 1,
        "no kill landed inside the publish sequence"
    );
    assert!(
        setup.server.open_uploads().is_empty(),
        "{:?}",
        setup.server.open_uploads()
    );
}

/// Table partitions above `multipart_threshold` go up as multipart uploads:
/// one that fails between its parts is aborted (the server keeps no open
/// upload) and publishes nothing; the rerun publishes the same tables as a
/// clean local run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_failed_multipart_upload_is_aborted() {
    let setup = tokio::task::spawn_blocking(|| {
        let setup = setup();
        setup.local_runs(&["2024-06"]);
        setup
    })
    .await
    .unwrap();
    let expected = local_tables(&setup.local_warehouse);
    let config_path = setup.s3_config(
        "multipart.yaml",
        "wh",
        "  multipart_threshold: 1KiB\n",
        true,
    );
    let (job, config) = load(&config_path);
    let faults = Faults::new();
    faults.add(Rule {
        key_contains: "snapshots/".into(),
        ..Rule::fail(CallKind::Part, 1)
    });
    let result = run_wrapped(&job, &config, "2024-06", &faults).await;
    assert!(result.is_err(), "the failed part went unnoticed");
    assert!(faults.count(CallKind::Abort) >= 1, "{:?}", faults.log());
    assert!(
        setup.server.open_uploads().is_empty(),
        "{:?}",
        setup.server.open_uploads()
    );
    let store = setup.warehouse_store();
    let state = s3_tables(&store, "wh").await;
    assert!(
        !state.keys().any(|k| k.ends_with("_SUCCESS")),
        "{:?}",
        state.keys()
    );

    let clean = Faults::new();
    run_until_not_held(&job, &config, "2024-06", &clean).await;
    assert!(clean.count(CallKind::Complete) >= 5, "{:?}", clean.log());
    assert_same_tables(&expected, &s3_tables(&store, "wh").await);
    assert!(setup.server.open_uploads().is_empty());
}

/// Two runs of different periods publish at once on S3 and the first
/// rewrite of `published_periods` lands late (its PUT delayed until after
/// the other run listed and wrote): the table still lists both periods, as
/// their `_SUCCESS` markers say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_concurrent_publishes_of_two_periods_keep_published_periods_whole() {
    let setup = tokio::task::spawn_blocking(setup).await.unwrap();
    let config_path = setup.s3_config("race.yaml", "race", "", true);
    let (job, config) = load(&config_path);
    let none = Faults::new();
    for period in ["2024-05", "2024-06"] {
        storage::scoped(
            config.storage.clone(),
            run_wrapped(&job, &config, period, &none),
        )
        .await
        .unwrap();
    }
    let raw = setup.warehouse_store();
    let mark = |period: &str| {
        object_store::path::Path::from(format!("race/rfm_monthly/_runs/period={period}/_SUCCESS"))
    };
    let listed = |all: &BTreeMap<String, Bytes>| -> Vec<String> {
        use datafusion::arrow::array::AsArray;
        decode(all["rfm_monthly/published_periods/part-0.parquet"].clone())
            .iter()
            .flat_map(|batch| {
                batch
                    .column_by_name("period")
                    .unwrap()
                    .as_string::<i32>()
                    .iter()
                    .flatten()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    // Both become unpublished, then are published again side by side.
    for period in ["2024-05", "2024-06"] {
        raw.delete(&mark(period)).await.unwrap();
    }
    crate::concurrency::late_rebuild_race(
        &config.warehouse,
        config.storage.clone(),
        ["2024-05", "2024-06"],
        Duration::from_millis(1200),
    )
    .await;
    let all = objects(&raw, "race").await;
    assert!(all.contains_key("rfm_monthly/_runs/period=2024-05/_SUCCESS"));
    assert!(all.contains_key("rfm_monthly/_runs/period=2024-06/_SUCCESS"));
    assert_eq!(listed(&all), ["2024-05", "2024-06"]);
}

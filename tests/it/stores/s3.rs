//! S3 (`s3://`) against a real S3-compatible server that the tests start
//! themselves on 127.0.0.1 (`s3s-fs`, in-process, with signature checking
//! on). Inputs are uploaded to a bucket, tables are published to another,
//! and everything is compared row by row with a clean run on local files
//! (the scenarios shared with the other stores are in `super`). Faults are
//! injected both at the HTTP level (the server answers 503: the client's
//! retries must absorb them) and at the `ObjectStore` level
//! (`segments::storage::fault`: fail the Nth call of a kind), and the real
//! binary is killed with SIGKILL at seeded random moments.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;

use segments::storage::fault::{CallKind, Faults, Rule};

use super::{
    Setup, StoreServer, assert_same_tables, block, local_tables, objects, ok, run_args, stderr,
    store_tables, upload_dir,
};

pub(crate) const ACCESS_KEY: &str = "SEGTESTKEYID7Q2ZX";
pub(crate) const SECRET_KEY: &str = "segtest-secret-9f8e7d6c5b4a39281706";

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

    /// `http://127.0.0.1:<port>`, for readers outside the process.
    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Requests served so far: (method, path).
    pub(crate) fn requests(&self) -> Vec<(String, String)> {
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

    fn client_with_secret(&self, bucket: &str, secret: &str) -> Arc<dyn ObjectStore> {
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

impl StoreServer for S3Server {
    fn name(&self) -> String {
        "S3 (s3s-fs)".into()
    }

    fn scheme(&self) -> &'static str {
        "s3"
    }

    fn storage_yaml(&self, keys: bool) -> String {
        format!(
            "  region: us-east-1\n  endpoint: {}\n  allow_http: true\n{}",
            self.endpoint,
            if keys {
                "  access_key_id: ${SEG_S3_KEY}\n  secret_access_key: ${SEG_S3_SECRET}\n"
            } else {
                ""
            }
        )
    }

    fn secret_var(&self, name: &str) -> Option<String> {
        match name {
            "SEG_S3_KEY" => Some(ACCESS_KEY.into()),
            "SEG_S3_SECRET" => Some(SECRET_KEY.into()),
            _ => None,
        }
    }

    fn command(&self, cwd: &Path, args: &[&str], wrong_secret: bool) -> Command {
        if wrong_secret {
            s3_command(cwd, args, &format!("{SECRET_KEY}-wrong"))
        } else {
            s3_command(cwd, args, SECRET_KEY)
        }
    }

    fn secrets(&self) -> Vec<String> {
        vec![
            SECRET_KEY.to_string(),
            ACCESS_KEY.to_string(),
            format!("{SECRET_KEY}-wrong"),
        ]
    }

    fn client(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        self.client_with_secret(bucket, SECRET_KEY)
    }

    fn requests(&self) -> Option<Vec<(String, String)>> {
        Some(S3Server::requests(self))
    }

    fn open_uploads(&self) -> Vec<String> {
        S3Server::open_uploads(self)
    }
}

/// The fixture locally and in `s3://data/transactions/`.
pub(crate) fn setup() -> Setup<S3Server> {
    super::setup(|transactions| {
        let server = S3Server::start(&["data", "warehouse"]);
        block(upload_dir(
            &server.client("data"),
            transactions,
            "transactions",
        ));
        server
    })
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

// ---------------------------------------------------------------- tests

/// Two periods read from and published to buckets, then a rerun: the tables
/// equal a clean local run's row by row, migrations use the published
/// previous period, the manifest lists the S3 input objects.
#[test]
fn s3_two_periods_and_rerun_equal_local_runs() {
    super::two_periods_and_rerun_equal_local_runs(&setup());
}

/// The standard environment of an S3-compatible server (`AWS_ENDPOINT`,
/// `AWS_ALLOW_HTTP`, as object_store's `from_env` reads them) works without
/// `storage.endpoint` in the config; a plain-http endpoint without the
/// permission is refused with a message that says how to allow it.
#[test]
fn s3_standard_environment_variables_reach_the_server() {
    let setup = setup();
    setup.local_runs(&["2024-05"]);
    let config = setup.config("s3-env.yaml", "env", "", false);
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
        &block(store_tables(&setup.warehouse_store(), "env")),
    );
}

/// DataFusion lists and prunes Hive partitions on S3 as on local files: a
/// query on one month reads that month's object only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_hive_partition_pruning_reads_only_the_needed_month() {
    let setup = tokio::task::spawn_blocking(setup).await.unwrap();
    super::hive_partition_pruning_reads_only_the_needed_month(&setup).await;
}

/// Transient 503s within the retry budget end in success; errors beyond it,
/// and permanent ones (bad credentials, a missing bucket) exit 4 naming the
/// URL and what to check.
#[test]
fn s3_retries_transient_errors_and_fails_fast_on_permanent_ones() {
    let setup = setup();
    setup.local_runs(&["2024-05"]);
    let config = setup.config("s3.yaml", "wh", "", false);
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
        &block(store_tables(&setup.warehouse_store(), "wh")),
    );
    eprintln!("run with 4 transient 503s took {:?}", started.elapsed());

    // Beyond the budget (3 retries): exit 4, the URL named, nothing published.
    setup.server.fail_next("PUT", "part-0.parquet", 1000, 503);
    let config2 = setup.config("s3-2.yaml", "wh2", "", false);
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
    let config3 = setup.config("s3-3.yaml", "wh", "", false);
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
    super::two_concurrent_runs_exactly_one_publishes(&setup());
}

/// Leases on S3 and on local files: a live lease stops a second run; a lease
/// whose holder died (not renewed, not released) is taken over after its
/// TTL; `force` breaks a live one and the old holder finds out; a create
/// retried after a timeout that meets its own write holds the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_is_exclusive_expires_and_can_be_forced() {
    let setup = tokio::task::spawn_blocking(setup).await.unwrap();
    let config_path = setup.config("lease.yaml", "wh", "", true);
    let (_, config) = setup.load(&config_path);
    let local = tempfile::tempdir().unwrap();
    let local_url = url::Url::from_directory_path(local.path())
        .unwrap()
        .to_string();
    for url in [config.warehouse.clone(), local_url] {
        super::lease_is_exclusive_expires_and_can_be_forced(&url, config.storage.clone(), None)
            .await;
    }
}

/// Credentials in the environment never appear in logs (human and JSON, at
/// debug level), error messages or the manifest.
#[test]
fn s3_credentials_never_appear_in_logs_errors_or_manifest() {
    let setup = setup();
    let config = setup.config("s3.yaml", "wh", "", false);
    super::credentials_never_appear_in_logs_errors_or_manifest(&setup, &config, None, true);
}

/// A failure at every call the run makes to the warehouse: after each, a
/// reader sees the previous version with `_SUCCESS`, or the new one with
/// `_SUCCESS`, or no `_SUCCESS`; a rerun always ends with the new tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_fault_at_every_warehouse_call_leaves_old_new_or_unpublished() {
    let setup = tokio::task::spawn_blocking(setup).await.unwrap();
    super::fault_at_every_warehouse_call_leaves_old_new_or_unpublished(&setup).await;
}

/// SIGKILL of the real binary at 24 seeded random moments of a run that
/// republishes a period, each followed by a rerun: see the scenario.
#[test]
fn s3_kill_at_random_moments_then_rerun_equals_clean_run() {
    super::kill_at_random_moments_then_rerun_equals_clean_run(&setup(), 24);
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
    let config_path = setup.config(
        "multipart.yaml",
        "wh",
        "  multipart_threshold: 1KiB\n",
        true,
    );
    let (job, config) = setup.load(&config_path);
    let faults = Faults::new();
    faults.add(Rule {
        key_contains: "snapshots/".into(),
        ..Rule::fail(CallKind::Part, 1)
    });
    let result = setup.run_wrapped(&job, &config, "2024-06", &faults).await;
    assert!(result.is_err(), "the failed part went unnoticed");
    assert!(faults.count(CallKind::Abort) >= 1, "{:?}", faults.log());
    assert!(
        setup.server.open_uploads().is_empty(),
        "{:?}",
        setup.server.open_uploads()
    );
    let store = setup.warehouse_store();
    let state = store_tables(&store, "wh").await;
    assert!(
        !state.keys().any(|k| k.ends_with("_SUCCESS")),
        "{:?}",
        state.keys()
    );

    let clean = Faults::new();
    setup
        .run_until_not_held(&job, &config, "2024-06", &clean)
        .await;
    assert!(clean.count(CallKind::Complete) >= 5, "{:?}", clean.log());
    assert_same_tables(&expected, &store_tables(&store, "wh").await);
    assert!(setup.server.open_uploads().is_empty());
}

/// Two runs of different periods publish at once on S3 and the first
/// rewrite of `published_periods` lands late (its PUT delayed until after
/// the other run listed and wrote): the table still lists both periods, as
/// their `_SUCCESS` markers say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_concurrent_publishes_of_two_periods_keep_published_periods_whole() {
    let setup = tokio::task::spawn_blocking(setup).await.unwrap();
    super::concurrent_publishes_of_two_periods_keep_published_periods_whole(&setup).await;
}

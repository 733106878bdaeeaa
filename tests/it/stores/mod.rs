//! Object stores: the job against real servers that the tests start
//! themselves on 127.0.0.1 — S3 (`s3s-fs`, in-process, `s3.rs`), Azure Blob
//! (Azurite, `azure.rs`) and GCS (fake-gcs-server, `gcs.rs`). This module
//! holds what every store shares: the set-up (the fixture locally and in a
//! `data` bucket, an empty `warehouse` bucket), readers of what a warehouse
//! holds, and the scenarios, each called once per server. Every scenario
//! compares the published tables row by row with a clean run on local
//! files, never with the code's own output.
//!
//! Which scenario runs against which server, and why some cannot, is in
//! docs/guides/object-storage.md ("Which stores are verified").

pub mod azure;
mod emulator;
pub mod gcs;
pub mod s3;
mod uploads;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use futures::TryStreamExt;
use object_store::path::Path as KeyPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use segments::config::{Config, Job};
use segments::model::period::Period;
use segments::run::{self, RunError, RunOptions};
use segments::storage::fault::{CallKind, Faults, Rule};
use segments::storage::{self, StorageSettings, StoreWrapper, Warehouse};
use segments::warehouse::lease::{Lease, LeaseError};

use crate::common::{default_job, segments_ok, write_config};
use crate::fixture::write_fixture;

pub const JOB: &str = "rfm_monthly";
/// The fixture is tiny: its month-to-month swings would trip the change gates.
pub const QUALITY: &str =
    "quality:\n  max_active_customers_change: 1000\n  max_revenue_change: 1000\n";

/// A store server the scenarios run against.
pub trait StoreServer: Send + Sync + 'static {
    /// What the server is, for messages: "Azurite 3.37.0".
    fn name(&self) -> String;
    /// The URL scheme of its buckets: `s3`, `az`, `gs`.
    fn scheme(&self) -> &'static str;
    /// The `storage:` lines (each indented two spaces) that reach the
    /// server; with `keys`, also its credentials as `${VAR}`s that
    /// [`Self::secret_var`] resolves (in-process runs), else the credentials
    /// come from the environment [`Self::command`] sets.
    fn storage_yaml(&self, keys: bool) -> String;
    /// The value of a `${VAR}` that `storage_yaml(true)` names.
    fn secret_var(&self, name: &str) -> Option<String>;
    /// The real binary with the server's credentials in its environment, or
    /// a wrong secret when `wrong_secret`.
    fn command(&self, cwd: &Path, args: &[&str], wrong_secret: bool) -> Command;
    /// Values that must never be printed (keys, secrets).
    fn secrets(&self) -> Vec<String>;
    /// A client of `bucket`, built by the test with object_store itself.
    fn client(&self, bucket: &str) -> Arc<dyn ObjectStore>;
    /// Requests served so far (method, path), where the server records them.
    fn requests(&self) -> Option<Vec<(String, String)>> {
        None
    }
    /// Multipart uploads the server still has open, where it can tell.
    fn open_uploads(&self) -> Vec<String> {
        Vec::new()
    }
    /// A store that in-process runs use instead of the one `segments` builds
    /// from the config, for a server whose credentials only the process
    /// environment can carry (GCS: a service-account key); None: use
    /// `segments`' own.
    fn in_process_store(&self, _bucket: &str) -> Option<Arc<dyn ObjectStore>> {
        None
    }
}

// ---------------------------------------------------------------- set-up

/// The fixture, locally (for the clean reference runs) and in the server's
/// `data` bucket under `transactions/`; an empty `warehouse` bucket.
pub struct Setup<S> {
    pub dir: tempfile::TempDir,
    pub server: S,
    pub local_config: PathBuf,
    pub local_warehouse: PathBuf,
}

/// Write the fixture, then `start` a server whose `data` bucket holds the
/// files of the folder it is given under `transactions/`.
pub fn setup<S: StoreServer>(start: impl FnOnce(&Path) -> S) -> Setup<S> {
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
    let server = start(&data.join("transactions"));
    Setup {
        dir,
        server,
        local_config,
        local_warehouse,
    }
}

impl<S: StoreServer> Setup<S> {
    /// A config reading `<scheme>://data/transactions/` and publishing to
    /// `<scheme>://warehouse/<prefix>`, with the server's `storage:` lines
    /// (credentials as `${VAR}`s when `with_keys`: in-process runs), short
    /// retries and a 2s lease unless `extra` sets one.
    pub fn config(&self, name: &str, prefix: &str, extra: &str, with_keys: bool) -> PathBuf {
        let warehouse = format!("{}://warehouse/{prefix}", self.server.scheme());
        self.config_publishing_to(name, &warehouse, extra, with_keys)
    }

    /// [`Self::config`] publishing to `warehouse` (a URL or a local path).
    pub fn config_publishing_to(
        &self,
        name: &str,
        warehouse: &str,
        extra: &str,
        with_keys: bool,
    ) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "{QUALITY}warehouse: {warehouse}\ntimezone: UTC\ninputs:\n  transactions:\n    url: {scheme}://data/transactions/\n    format: parquet\n    partition_columns: [month]\nstorage:\n{storage}  retry:\n    max_retries: 3\n    initial_backoff: 10ms\n    max_backoff: 100ms\n    deadline: 10s\n{extra}{ttl}",
                scheme = self.server.scheme(),
                storage = self.server.storage_yaml(with_keys),
                ttl = if extra.contains("lease_ttl") {
                    ""
                } else {
                    "  lease_ttl: 2s\n"
                }
            ),
        )
        .unwrap();
        path
    }

    pub fn warehouse_store(&self) -> Arc<dyn ObjectStore> {
        self.server.client("warehouse")
    }

    /// Clean local runs of `periods`, in order (the reference).
    pub fn local_runs(&self, periods: &[&str]) {
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

    /// `segments run` of `period` with `config`, by the real binary.
    pub fn run(&self, config: &Path, period: &str) -> Output {
        let args = run_args(config, period);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.server
            .command(self.dir.path(), &args, false)
            .output()
            .unwrap()
    }

    /// The job and a config loaded in-process, its `${VAR}`s resolved.
    pub fn load(&self, config: &Path) -> (Job, Config) {
        let job = Job::load(&default_job()).unwrap();
        let config = Config::load_with_env(config, |name| self.server.secret_var(name)).unwrap();
        (job, config)
    }

    /// Run in-process with every store wrapped by `faults` (and replaced by
    /// the server's own client where it says so).
    pub async fn run_wrapped(
        &self,
        job: &Job,
        config: &Config,
        period: &str,
        faults: &Arc<Faults>,
    ) -> Result<(), RunError> {
        storage::with_store_wrapper(self.wrapper(faults), run::run(job, config, options(period)))
            .await
            .map(|_| ())
    }

    /// The store wrapper of in-process runs: `faults` over each store.
    pub fn wrapper(&self, faults: &Arc<Faults>) -> StoreWrapper {
        let faults = faults.clone();
        let replacements: BTreeMap<String, Arc<dyn ObjectStore>> = ["data", "warehouse"]
            .into_iter()
            .filter_map(|bucket| {
                self.server
                    .in_process_store(bucket)
                    .map(|store| (format!("{}://{bucket}/", self.server.scheme()), store))
            })
            .collect();
        Arc::new(move |url: &url::Url, store: Arc<dyn ObjectStore>| {
            let store = replacements.get(url.as_str()).cloned().unwrap_or(store);
            faults.wrap(store)
        })
    }

    /// Run in-process; a lease left live by an injected failure of its
    /// release expires after the configured 2s TTL, so wait for it as a
    /// CronJob retry would.
    pub async fn run_until_not_held(
        &self,
        job: &Job,
        config: &Config,
        period: &str,
        faults: &Arc<Faults>,
    ) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match self.run_wrapped(job, config, period, faults).await {
                Ok(()) => return,
                Err(RunError::Lease(LeaseError::Held { .. })) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(error) => panic!("rerun of {period} failed: {error}"),
            }
        }
    }

    /// Append a line dated in June 2024 to the fixture's June file in the
    /// `data` bucket.
    pub async fn add_june_line(&self) {
        use datafusion::arrow::array::{Decimal128Array, StringArray, TimestampMicrosecondArray};
        let data = self.server.client("data");
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
}

// ---------------------------------------------------------------- helpers

pub fn block<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// Upload every file under `local` to `prefix/` of a bucket (real PUTs).
pub async fn upload_dir(store: &Arc<dyn ObjectStore>, local: &Path, prefix: &str) {
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

pub fn run_args(config: &Path, period: &str) -> Vec<String> {
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

pub fn ok(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn decode(bytes: Bytes) -> Vec<RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

pub fn pretty(batches: &[RecordBatch]) -> String {
    pretty_format_batches(batches).unwrap().to_string()
}

pub fn options(period: &str) -> RunOptions {
    RunOptions::new(period.parse::<Period>().unwrap())
}

/// Every object of a store under `prefix`, by key relative to it.
pub async fn objects(store: &Arc<dyn ObjectStore>, prefix: &str) -> BTreeMap<String, Bytes> {
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
/// Month facts (`_facts/`) are a cache named by the run that computed them,
/// not published tables: left out ([`facts_fingerprints`] checks them).
pub fn local_tables(warehouse: &Path) -> BTreeMap<String, String> {
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
            if is_facts(&key) {
                continue;
            }
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

fn is_facts(key: &str) -> bool {
    key.contains("/_facts/")
}

/// The month fingerprints of the job's month facts and row accounting in
/// `objects`, by `<step>/month=YYYY-MM` folder: the JSON of each
/// `_fingerprint.json`.
pub fn facts_fingerprints(
    objects: &BTreeMap<String, Bytes>,
) -> BTreeMap<String, serde_json::Value> {
    objects
        .iter()
        .filter(|(key, _)| is_facts(key) && key.ends_with("/_fingerprint.json"))
        .map(|(key, bytes)| {
            let mut parts = key.rsplit('/').skip(1);
            let month = parts.next().unwrap();
            let step = parts.next().unwrap();
            (
                format!("{step}/{month}"),
                serde_json::from_slice(bytes).unwrap(),
            )
        })
        .collect()
}

fn table_text(key: &str, batches: &[RecordBatch]) -> String {
    if key.contains("published_periods") {
        let periods: Vec<RecordBatch> = batches.iter().map(|b| b.project(&[0]).unwrap()).collect();
        pretty(&periods)
    } else {
        pretty(batches)
    }
}

/// The published tables of a warehouse prefix in a bucket, like [`local_tables`].
pub async fn store_tables(store: &Arc<dyn ObjectStore>, prefix: &str) -> BTreeMap<String, String> {
    objects(store, prefix)
        .await
        .into_iter()
        .filter_map(|(key, bytes)| {
            if is_facts(&key) {
                None
            } else if key.ends_with(".parquet") {
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
pub fn june_partitions(tables: &BTreeMap<String, String>) -> usize {
    tables
        .keys()
        .filter(|k| k.contains("/period=2024-06/") && !k.contains("_runs"))
        .count()
}

pub fn assert_same_tables(expected: &BTreeMap<String, String>, actual: &BTreeMap<String, String>) {
    let expected_keys: Vec<_> = expected.keys().collect();
    let actual_keys: Vec<_> = actual.keys().collect();
    assert_eq!(actual_keys, expected_keys, "published objects differ");
    for (key, text) in expected {
        assert_eq!(&actual[key], text, "{key} differs from the clean local run");
    }
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

// ---------------------------------------------------------------- scenarios

/// Two periods read from and published to buckets, then a rerun: the tables
/// equal a clean local run's row by row, migrations use the published
/// previous period, the manifest lists the input objects, one released
/// lease generation is kept, the rerun replaced rather than added.
pub fn two_periods_and_rerun_equal_local_runs<S: StoreServer>(setup: &Setup<S>) {
    setup.local_runs(&["2024-05", "2024-06"]);
    let config = setup.config("two-periods.yaml", "wh", "", false);
    for period in ["2024-05", "2024-06", "2024-06"] {
        ok(&setup.run(&config, period), period);
    }
    let store = setup.warehouse_store();
    let expected = local_tables(&setup.local_warehouse);
    assert!(expected.len() >= 2 * 6, "{expected:?}");
    assert_same_tables(&expected, &block(store_tables(&store, "wh")));

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
    // The month facts and the row accounting went to the store, one
    // fingerprint per month up to June, and the rerun reused them all: no
    // fingerprint names its run.
    let fingerprints = facts_fingerprints(&all);
    for step in ["orders", "input-accounting"] {
        let months = fingerprints
            .keys()
            .filter(|k| k.starts_with(&format!("{step}/")))
            .count();
        assert!(
            fingerprints.contains_key(&format!("{step}/month=2024-06")) && months >= 6,
            "{step}: {:?}",
            fingerprints.keys()
        );
    }
    for (folder, print) in &fingerprints {
        assert_ne!(print["run_id"], manifest["run_id"], "{folder}: {print}");
        for fact in print["facts"].as_array().unwrap() {
            let name = fact["name"].as_str().unwrap();
            let key = format!("rfm_monthly/_facts/{folder}/{name}");
            assert_eq!(
                all[&key].len() as u64,
                fact["size"].as_u64().unwrap(),
                "{key}"
            );
        }
    }
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

/// Two periods read from the `data` bucket and published to a local
/// warehouse (for a server that cannot take the warehouse): the tables
/// equal a clean local run's, and the manifest lists the input objects.
pub fn inputs_of_two_periods_equal_local_runs<S: StoreServer>(setup: &Setup<S>) {
    setup.local_runs(&["2024-05", "2024-06"]);
    let warehouse = setup.dir.path().join("warehouse-of-store-inputs");
    let config = setup.config_publishing_to("inputs.yaml", warehouse.to_str().unwrap(), "", false);
    for period in ["2024-05", "2024-06"] {
        ok(&setup.run(&config, period), period);
    }
    let expected = local_tables(&setup.local_warehouse);
    assert!(expected.len() >= 2 * 6, "{expected:?}");
    assert_same_tables(&expected, &local_tables(&warehouse));
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(warehouse.join("rfm_monthly/_runs/period=2024-06/_manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["from_side"], "published", "{manifest}");
    let inputs = manifest["inputs"].as_array().unwrap();
    assert!(
        !inputs.is_empty()
            && inputs.iter().all(|i| i["path"]
                .as_str()
                .unwrap()
                .starts_with("transactions/month="))
            && inputs.iter().all(|i| i["size"].as_u64().unwrap() > 0),
        "{manifest}"
    );
}

/// DataFusion lists and prunes Hive partitions in a bucket as on local
/// files: a query on one month reads that month's object only.
pub async fn hive_partition_pruning_reads_only_the_needed_month<S: StoreServer>(setup: &Setup<S>) {
    let config_path = setup.config("prune.yaml", "wh", "", true);
    let (_, config) = setup.load(&config_path);
    let faults = Faults::new();
    let count = storage::with_store_wrapper(
        setup.wrapper(&faults),
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

/// Two runs of the same period started together: exactly one publishes, the
/// other exits 1 naming the holder's run id.
pub fn two_concurrent_runs_exactly_one_publishes<S: StoreServer>(setup: &Setup<S>) {
    let config = setup.config("concurrent.yaml", "wh", "  lease_ttl: 30s\n", false);
    let args = run_args(&config, "2024-06");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let spawn = || {
        setup
            .server
            .command(setup.dir.path(), &args, false)
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

/// The lease on the warehouse `url`: a live lease stops a second run; a
/// lease whose holder died (not renewed, not released) is taken over after
/// its TTL; `force` breaks a live one and the old holder finds out; a create
/// retried after a timeout that meets its own write holds the lease.
/// `wrap`, when given, stands between `segments` and the stores, as in
/// in-process runs.
pub async fn lease_is_exclusive_expires_and_can_be_forced(
    url: &str,
    settings: StorageSettings,
    wrap: Option<StoreWrapper>,
) {
    let scenario = storage::scoped(settings, async {
        let warehouse = Warehouse::open(url).unwrap();
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
    });
    match wrap {
        Some(wrap) => storage::with_store_wrapper(wrap, scenario).await,
        None => scenario.await,
    }
}

/// Credentials in the environment never appear in logs (human and JSON, at
/// debug level), error messages or the JSON files written: runs of `config`
/// (whose warehouse is `prefix` of the `warehouse` bucket, or the local
/// folder `local_warehouse`), and, when `wrong_secret_exits_4`, runs with a
/// wrong secret that the server rejects.
pub fn credentials_never_appear_in_logs_errors_or_manifest<S: StoreServer>(
    setup: &Setup<S>,
    config: &Path,
    local_warehouse: Option<&Path>,
    wrong_secret_exits_4: bool,
) {
    let args = run_args(config, "2024-05");
    let mut texts = Vec::new();
    for format in ["human", "json"] {
        let mut full: Vec<&str> = vec!["--log-format", format, "-vv"];
        full.extend(args.iter().map(String::as_str));
        let output = setup
            .server
            .command(setup.dir.path(), &full, false)
            .env("RUST_LOG", "debug")
            .output()
            .unwrap();
        ok(&output, format);
        texts.push(stderr(&output));
        texts.push(String::from_utf8_lossy(&output.stdout).into_owned());
        if wrong_secret_exits_4 {
            // An error path too: a wrong secret that the server rejects.
            let output = setup
                .server
                .command(setup.dir.path(), &full, true)
                .env("RUST_LOG", "debug")
                .output()
                .unwrap();
            assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
            texts.push(stderr(&output));
        }
    }
    let written: BTreeMap<String, Bytes> = match local_warehouse {
        None => block(objects(&setup.warehouse_store(), "wh")),
        Some(folder) => {
            let mut found = BTreeMap::new();
            let mut stack = vec![folder.to_path_buf()];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                    let path = entry.path();
                    if path.is_dir() {
                        stack.push(path);
                    } else {
                        let key = path.to_string_lossy().into_owned();
                        found.insert(key, Bytes::from(std::fs::read(&path).unwrap()));
                    }
                }
            }
            found
        }
    };
    for (key, bytes) in &written {
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
    let secrets = setup.server.secrets();
    assert!(!secrets.is_empty());
    for text in &texts {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "a credential leaked:\n{text}"
            );
        }
    }
}

/// A failure at every call the run makes to the warehouse: after each, a
/// reader sees the previous version with `_SUCCESS`, or the new one with
/// `_SUCCESS`, or no `_SUCCESS`; a rerun always ends with the new tables.
pub async fn fault_at_every_warehouse_call_leaves_old_new_or_unpublished<S: StoreServer>(
    setup: &Setup<S>,
) {
    // Versions: "old" = 2024-06 published from the fixture, "new" = the same
    // period with one more input line (so every table can tell them apart).
    let store = setup.warehouse_store();
    let config_path = setup.config("faults.yaml", "wh", "", true);
    let (job, config) = setup.load(&config_path);
    let none = Faults::new();
    setup
        .run_wrapped(&job, &config, "2024-06", &none)
        .await
        .unwrap();
    let old = store_tables(&store, "wh").await;
    let old_objects = objects(&store, "wh").await;
    setup.add_june_line().await;
    // A clean run of the new version, recording the warehouse calls.
    let recorder = Faults::new();
    setup
        .run_wrapped(&job, &config, "2024-06", &recorder)
        .await
        .unwrap();
    let new = store_tables(&store, "wh").await;
    assert_ne!(old, new);
    let calls: Vec<(CallKind, String)> = recorder
        .log()
        .into_iter()
        .filter(|(_, key)| key.starts_with("wh/"))
        .collect();
    assert!(calls.len() > 20, "{calls:?}");

    let mut seen: BTreeMap<CallKind, usize> = BTreeMap::new();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    // The month facts make the same calls for every month (a fingerprint
    // read, a HEAD per fact file, the puts): the first of each kind, on a
    // fact file and on a fingerprint, stands for them.
    let mut facts_kinds_tried = std::collections::BTreeSet::new();
    for (kind, key) in &calls {
        let nth = {
            let n = seen.entry(*kind).or_default();
            *n += 1;
            *n
        };
        let facts_call = (*kind, key.contains("/_fingerprint.json"));
        if is_facts(key) && !facts_kinds_tried.insert(facts_call) {
            continue;
        }
        // Back to the old version, published.
        restore(&store, "wh", &old_objects).await;
        let faults = Faults::new();
        faults.add(Rule {
            key_contains: "wh/".into(),
            ..Rule::fail(*kind, nth)
        });
        let result = setup.run_wrapped(&job, &config, "2024-06", &faults).await;
        let state = store_tables(&store, "wh").await;
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
        setup
            .run_until_not_held(&job, &config, "2024-06", &none)
            .await;
        assert_eq!(
            store_tables(&store, "wh").await,
            new,
            "rerun after {kind:?} #{nth}"
        );
    }
    eprintln!(
        "{}: fault points ({}): {outcomes:#?}",
        setup.server.name(),
        calls.len()
    );
}

/// SIGKILL of the real binary at `rounds` seeded random moments of a run
/// that republishes a period, each followed by a rerun (which waits out the
/// dead run's lease, as a CronJob retry does): after every kill a reader
/// sees the period complete with `_SUCCESS` or not at all, and after every
/// rerun all published tables equal a clean local run's, row by row. No
/// multipart upload is left open on the server (where it can tell).
///
/// Even rounds kill at a random time after the start. Odd rounds kill inside
/// the publish sequence whatever the machine's speed: right when the server
/// has seen a random number of the run's requests (where it records them),
/// else a random time after the run removed the period's `_SUCCESS` (its
/// first step of publishing), within the publish time of a clean rerun.
pub fn kill_at_random_moments_then_rerun_equals_clean_run<S: StoreServer>(
    setup: &Setup<S>,
    rounds: usize,
) {
    use rand::{Rng, SeedableRng};
    setup.local_runs(&["2024-05", "2024-06"]);
    let expected = local_tables(&setup.local_warehouse);
    let config = setup.config("kill.yaml", "wh", "", false);
    ok(&setup.run(&config, "2024-05"), "2024-05");
    let args = run_args(&config, "2024-06");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let request_count = || setup.server.requests().map(|r| r.len());
    let started = Instant::now();
    let before = request_count();
    ok(&setup.run(&config, "2024-06"), "2024-06");
    let clean = started.elapsed();
    let clean_requests = request_count().zip(before).map(|(after, b)| after - b);
    let store = setup.warehouse_store();
    let success = "rfm_monthly/_runs/period=2024-06/_SUCCESS";
    let success_key = KeyPath::parse(format!("wh/{success}")).unwrap();
    // Each poll with a new client: a pooled connection that the server
    // closed while the test slept fails and is retried with backoff, which
    // would make a poll last longer than the publish it watches for.
    let success_exists = || {
        let client = setup.server.client("warehouse");
        match block(client.head(&success_key)) {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(error) => panic!("HEAD of {success_key}: {error}"),
        }
    };
    assert_same_tables(&expected, &block(store_tables(&store, "wh")));
    // Without a request log: how long a clean rerun publishes, from the
    // removal of `_SUCCESS` to its return, and how long the rerun takes (the
    // kills rerun too; a first run of the period can be slower, and a kill
    // timed by it would land after the end).
    let (publish_window, clean) = match clean_requests {
        Some(_) => (Duration::ZERO, clean),
        None => {
            let rerun_started = Instant::now();
            let mut child = setup
                .server
                .command(setup.dir.path(), &args, false)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            while success_exists() && child.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(2));
            }
            let removed = Instant::now();
            while !success_exists() && child.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(2));
            }
            let window = removed.elapsed();
            assert!(child.wait().unwrap().success(), "the clean rerun failed");
            assert!(window > Duration::ZERO);
            (window, clean.min(rerun_started.elapsed()))
        }
    };

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5e6_2024);
    let (mut killed_running, mut waited_for_lease) = (0, 0);
    let (mut published_after_kill, mut unpublished_after_kill) = (0, 0);
    let mut moments = Vec::new();
    for round in 0..rounds {
        let base = request_count();
        let mut child = setup
            .server
            .command(setup.dir.path(), &args, false)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let spawned = Instant::now();
        let in_time = |child: &mut std::process::Child| {
            child.try_wait().unwrap().is_none() && spawned.elapsed() < Duration::from_secs(30)
        };
        if round % 2 == 0 {
            let moment =
                Duration::from_millis(rng.random_range(0..clean.as_millis() as u64 * 6 / 5));
            std::thread::sleep(moment);
            moments.push(format!("{}ms", moment.as_millis()));
        } else if let (Some(clean_requests), Some(base)) = (clean_requests, base) {
            let nth = rng.random_range(1..=clean_requests);
            while request_count().unwrap() - base < nth && in_time(&mut child) {
                std::thread::sleep(Duration::from_millis(1));
            }
            let (method, path) = setup
                .server
                .requests()
                .unwrap()
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
        } else {
            // Within the first half of the window: the window of one run is
            // not the next one's to the millisecond, and a poll takes some.
            let delay = Duration::from_millis(
                rng.random_range(0..(publish_window.as_millis() as u64 / 2).max(1)),
            );
            while success_exists() && in_time(&mut child) {
                std::thread::sleep(Duration::from_millis(2));
            }
            std::thread::sleep(delay);
            moments.push(format!(
                "{}ms into publishing (of {}ms)",
                delay.as_millis(),
                publish_window.as_millis()
            ));
        }
        let moment = spawned.elapsed();
        if child.try_wait().unwrap().is_none() {
            killed_running += 1;
        } else if let Some(last) = moments.last_mut() {
            last.push_str(" (had ended)");
        }
        child.kill().unwrap();
        child.wait().unwrap();

        // What a reader sees right after the kill.
        let state = block(store_tables(&store, "wh"));
        if state.contains_key(success) {
            published_after_kill += 1;
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
            unpublished_after_kill += 1;
            let periods = &state["rfm_monthly/published_periods/part-0.parquet"];
            let june_tables = june_partitions(&state);
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
            let output = setup.run(&config, "2024-06");
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
        assert_same_tables(&expected, &block(store_tables(&store, "wh")));
    }
    eprintln!(
        "{}: clean run {clean:?}, {clean_requests:?} requests, publish window {publish_window:?}; kill moments {moments:#?}\nkilled while running {killed_running}/{rounds}; \
         right after the kill the period was published {published_after_kill}, unpublished {unpublished_after_kill}; \
         reruns that waited for the dead run's lease {waited_for_lease}",
        setup.server.name()
    );
    // Most kills must land while the run is going, or the test proves
    // little; a machine under load (a busy CI runner) ends some runs
    // before their kill, hence not all.
    assert!(
        killed_running >= rounds * 2 / 3,
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

/// Two runs of different periods publish at once and the first rewrite of
/// `published_periods` lands late (its PUT delayed until after the other run
/// listed and wrote): the table still lists both periods, as their
/// `_SUCCESS` markers say.
pub async fn concurrent_publishes_of_two_periods_keep_published_periods_whole<S: StoreServer>(
    setup: &Setup<S>,
) {
    let config_path = setup.config("race.yaml", "race", "", true);
    let (job, config) = setup.load(&config_path);
    let none = Faults::new();
    for period in ["2024-05", "2024-06"] {
        storage::scoped(
            config.storage.clone(),
            setup.run_wrapped(&job, &config, period, &none),
        )
        .await
        .unwrap();
    }
    let raw = setup.warehouse_store();
    let mark =
        |period: &str| KeyPath::from(format!("race/rfm_monthly/_runs/period={period}/_SUCCESS"));
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

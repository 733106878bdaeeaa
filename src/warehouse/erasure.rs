//! The erasure log and the suppression list (docs/design.md §7; the
//! `segments forget` command is `crate::lifecycle::forget`).
//!
//! **No personal data is stored.** The erasure log,
//! `<warehouse>/_erasure/requests/<erasure id>.json`, holds for each request
//! its date and the keyed hashes of the ids: HMAC-SHA256 of the id with a
//! secret salt, in hex. The salt comes from the environment variable
//! [`SALT_ENV`] (at least 16 characters), never from a file of the warehouse
//! and never logged; without it the hashes of short ids cannot be reversed
//! by trying every id. `_erasure/salt_check.json` holds the HMAC of a fixed
//! text, so a run with another salt (which would silently stop suppressing)
//! is refused. The salt must never change: a lost salt makes the log useless.
//!
//! **Suppression**: every reading of the inputs (`crate::inputs`) hashes
//! `customer_id` with the salt when the log is not empty and treats the lines
//! of erased customers as anonymous (their revenue still counts, no customer
//! does); rejected rows that mention an erased id are counted but not written.

use std::collections::HashSet;

use bytes::Bytes;
use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::DataType;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::ExitStatus;
pub use crate::model::SALT_ENV;
use crate::storage::{StorageError, Warehouse};

use super::layout::ERASURE;
pub(crate) const REQUESTS: &str = "requests";
const SALT_CHECK: &str = "salt_check.json";
const CHECK_TEXT: &[u8] = b"segments erasure salt check";

#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    #[error(
        "the warehouse has an erasure log (_erasure/), so runs must recognise erased customers, but {SALT_ENV} is not set\nhint: set {SALT_ENV} to the secret salt `segments forget` used (from your secret store)"
    )]
    NoSalt,
    #[error(
        "{SALT_ENV} is shorter than 16 characters\nhint: use a long random secret, e.g. `openssl rand -hex 32`, kept in your secret store"
    )]
    ShortSalt,
    #[error(
        "{SALT_ENV} is not the salt the erasure log of {warehouse} was made with (_erasure/{SALT_CHECK}); with another salt erased customers would come back\nhint: set the original salt; it must never change"
    )]
    WrongSalt { warehouse: String },
    #[error(
        "the erasure log {url} is not readable: {message}\nhint: restore it from the bucket's versioning or backups; never delete it"
    )]
    Corrupt { url: String, message: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ErasureError {
    /// Exit codes of docs/design.md §6: a missing or wrong salt is a
    /// configuration error (2), storage 4, an unreadable log 1.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            e if e.is_config_error() => ExitStatus::Invalid,
            ErasureError::Storage(_) => ExitStatus::Storage,
            _ => ExitStatus::Internal,
        }
    }

    /// Whether the operator's settings (the salt) are at fault, not the
    /// warehouse: a configuration error.
    pub fn is_config_error(&self) -> bool {
        matches!(
            self,
            ErasureError::NoSalt | ErasureError::ShortSalt | ErasureError::WrongSalt { .. }
        )
    }
}

/// HMAC-SHA256 (RFC 2104).
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

use crate::model::units::hex;

/// The secret salt of the erasure hashes.
pub struct Salt(SecretString);

impl std::fmt::Debug for Salt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Salt([redacted])")
    }
}

impl Salt {
    /// The salt from [`SALT_ENV`], if set.
    pub fn from_env() -> Result<Option<Salt>, ErasureError> {
        match std::env::var(SALT_ENV) {
            Ok(value) if value.chars().count() >= 16 => Ok(Some(Salt(value.into()))),
            Ok(_) => Err(ErasureError::ShortSalt),
            Err(_) => Ok(None),
        }
    }

    /// The keyed hash of a customer id (hex HMAC-SHA256).
    pub fn hash(&self, id: &str) -> String {
        hex(&hmac_sha256(
            self.0.expose_secret().as_bytes(),
            id.trim().as_bytes(),
        ))
    }
}

/// One `forget` request, as stored in the erasure log: no ids, only their
/// keyed hashes, how many and the date.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErasureRequest {
    pub erasure_id: String,
    /// UTC date of the request.
    pub date: String,
    pub customers: usize,
    pub hashes: Vec<String>,
    /// UTC date every published table was rewritten; null while pending.
    pub completed: Option<String>,
}

/// The erased customers: the hashes of the log and the salt to compare.
#[derive(Debug)]
pub struct Suppression {
    salt: Salt,
    hashes: HashSet<String>,
}

impl Suppression {
    pub(crate) fn new(salt: Salt, hashes: HashSet<String>) -> Suppression {
        Suppression { salt, hashes }
    }

    /// The salt check of this list's salt: an HMAC of a fixed text, which
    /// does not reveal the salt (what a Ballista client sends executors).
    pub fn salt_check(&self) -> String {
        hex(&hmac_sha256(
            self.salt.0.expose_secret().as_bytes(),
            CHECK_TEXT,
        ))
    }

    /// The hashes of the erased ids, sorted.
    pub fn sorted_hashes(&self) -> Vec<&String> {
        let mut hashes: Vec<&String> = self.hashes.iter().collect();
        hashes.sort();
        hashes
    }

    /// A list received from elsewhere (a Ballista client), with the salt of
    /// this process's environment, which must be the one whose
    /// [`salt_check`](Self::salt_check) is `check`.
    pub fn with_env_salt(check: &str, hashes: HashSet<String>) -> Result<Suppression, String> {
        let salt = Salt::from_env()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "the run filters erased customers, which needs {SALT_ENV} (the salt of `segments forget`) \
                     in the environment of every Ballista executor and scheduler"
                )
            })?;
        if hex(&hmac_sha256(salt.0.expose_secret().as_bytes(), CHECK_TEXT)) != check {
            return Err(format!(
                "{SALT_ENV} of this Ballista process is not the salt of the erasure log; \
                 erased customers would come back"
            ));
        }
        Ok(Suppression { salt, hashes })
    }

    pub fn contains(&self, id: &str) -> bool {
        self.hashes.contains(&self.salt.hash(id))
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// `batches` without the rows of erased customers (by `customer_id`),
    /// e.g. a published snapshot read as a run's "from" side before
    /// `forget` reached it.
    pub fn filter_batches(&self, batches: Vec<RecordBatch>) -> Vec<RecordBatch> {
        match without_erased("snapshots", &batches, self) {
            Ok(Some((batch, _))) => vec![batch],
            _ => batches,
        }
    }

    /// Does a row written as JSON (the `rejects` table) mention an erased
    /// id as one of its values?
    pub fn mentions(&self, json: &str) -> bool {
        match serde_json::from_str::<serde_json::Value>(json) {
            Ok(serde_json::Value::Object(values)) => values.values().any(|value| match value {
                serde_json::Value::String(text) => self.contains(text),
                serde_json::Value::Number(number) => self.contains(&number.to_string()),
                _ => false,
            }),
            // Not an object: compare the whole text.
            _ => self.contains(json),
        }
    }
}

/// Remove erased customers from one table partition's rows. Returns the
/// kept rows and how many were removed.
pub(crate) fn without_erased(
    table: &str,
    batches: &[RecordBatch],
    suppression: &Suppression,
) -> Result<Option<(RecordBatch, u64)>, String> {
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    let schema = first.schema();
    let id_column = schema
        .index_of("customer_id")
        .ok()
        .filter(|&i| matches!(schema.field(i).data_type(), DataType::Utf8))
        .map(|i| (i, false))
        .or_else(|| {
            (table == "rejects")
                .then(|| schema.index_of("row").ok())
                .flatten()
                .map(|i| (i, true))
        });
    let Some((index, json)) = id_column else {
        return Ok(None);
    };
    let mut kept = Vec::new();
    let mut removed = 0u64;
    for batch in batches {
        let values = batch.column(index).as_string::<i32>();
        let keep: BooleanArray = (0..batch.num_rows())
            .map(|row| {
                let erased = values.is_valid(row)
                    && if json {
                        suppression.mentions(values.value(row))
                    } else {
                        suppression.contains(values.value(row))
                    };
                if erased {
                    removed += 1;
                }
                Some(!erased)
            })
            .collect();
        kept.push(filter_record_batch(batch, &keep).map_err(|e| e.to_string())?);
    }
    if removed == 0 {
        return Ok(None);
    }
    let batch = concat_batches(&schema, &kept).map_err(|e| e.to_string())?;
    Ok(Some((batch, removed)))
}

pub(crate) fn log_key(
    warehouse: &Warehouse,
    parts: &[&str],
) -> Result<object_store::path::Path, StorageError> {
    warehouse.key(&[&[ERASURE][..], parts].concat())
}

pub(crate) async fn requests(
    warehouse: &Warehouse,
) -> Result<Vec<(object_store::path::Path, ErasureRequest)>, ErasureError> {
    let mut found = Vec::new();
    let mut objects = warehouse.list(&log_key(warehouse, &[REQUESTS])?).await?;
    objects.sort_by(|a, b| a.location.cmp(&b.location));
    for object in objects {
        if !object.location.as_ref().ends_with(".json") {
            continue;
        }
        let Some(bytes) = warehouse.get(&object.location).await? else {
            continue;
        };
        let request = serde_json::from_slice(&bytes).map_err(|e| ErasureError::Corrupt {
            url: warehouse.url_of(&object.location),
            message: e.to_string(),
        })?;
        found.push((object.location, request));
    }
    Ok(found)
}

#[derive(Serialize, Deserialize)]
struct SaltCheck {
    hmac: String,
}

/// Compare `salt` with the log's salt check; write it when there is none
/// and `create`.
pub(crate) async fn check_salt(
    warehouse: &Warehouse,
    salt: &Salt,
    create: bool,
) -> Result<(), ErasureError> {
    let key = log_key(warehouse, &[SALT_CHECK])?;
    let expected = hex(&hmac_sha256(salt.0.expose_secret().as_bytes(), CHECK_TEXT));
    match warehouse.get(&key).await? {
        Some(bytes) => {
            let check: SaltCheck =
                serde_json::from_slice(&bytes).map_err(|e| ErasureError::Corrupt {
                    url: warehouse.url_of(&key),
                    message: e.to_string(),
                })?;
            if check.hmac != expected {
                return Err(ErasureError::WrongSalt {
                    warehouse: warehouse.url().to_string(),
                });
            }
        }
        None if create => {
            let body = serde_json::to_vec_pretty(&SaltCheck { hmac: expected })
                .expect("salt check serialises");
            warehouse.put(&key, Bytes::from(body)).await?;
        }
        None => {}
    }
    Ok(())
}

/// The suppression list of a warehouse: `None` when nothing was ever
/// erased (no salt needed then).
pub async fn load(warehouse: &Warehouse) -> Result<Option<Suppression>, ErasureError> {
    let requests = requests(warehouse).await?;
    if requests.is_empty() {
        return Ok(None);
    }
    let salt = Salt::from_env()?.ok_or(ErasureError::NoSalt)?;
    check_salt(warehouse, &salt, false).await?;
    let hashes = requests
        .into_iter()
        .flat_map(|(_, request)| request.hashes)
        .collect();
    Ok(Some(Suppression { salt, hashes }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231, test case 2.
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn rejects_rows_mention_ids_by_value() {
        let salt = Salt("0123456789abcdef-salt".to_string().into());
        let suppression = Suppression {
            hashes: [salt.hash("C42")].into_iter().collect(),
            salt,
        };
        assert!(suppression.contains("C42"));
        assert!(suppression.contains(" C42 "));
        assert!(!suppression.contains("C421"));
        assert!(suppression.mentions(r#"{"loyalty_card":"C42","amount":"x"}"#));
        assert!(!suppression.mentions(r#"{"loyalty_card":"C421","note":"C42 x"}"#));
    }
}

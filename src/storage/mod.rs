//! Storage by URL: the one place that turns a configured URL into an
//! `ObjectStore` and a key prefix — `file://` (and plain paths), `s3://`,
//! `gs://`, `az://`/`abfss://`. The warehouse is written only through
//! [`Warehouse`], which keeps every key under its prefix.
//!
//! How stores are built (region, endpoint, retries, credentials) comes from
//! the config's `storage:` section ([`StorageSettings`]). The runner makes
//! those settings visible to [`open`] for the duration of a run with
//! [`scoped`], so every caller of `open` (the engine's input registration,
//! the warehouse) builds its stores the same way.
//!
//! Secrets: builders print credentials in `Debug`, so no builder, store or
//! settings value is ever formatted with `{:?}`; every error message that
//! leaves this module goes through [`redact`].

pub mod fault;
pub mod settings;

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, MultipartId, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode,
    PutOptions, PutPayload, RetryConfig,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use url::Url;

pub use settings::{RetrySettings, StorageSettings};

/// What went wrong, for the exit code and the hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageErrorKind {
    NotFound,
    /// 401/403: credentials or permissions.
    Denied,
    /// Network, 5xx, timeouts (after the retries), anything else.
    Other,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("'{url}' is not a usable storage URL: {reason}")]
    BadUrl { url: String, reason: String },
    /// A failed storage call. `message` is the store's error, redacted; the
    /// raw error is not kept, so no cause chain can print a secret.
    #[error("storage error at {location}: {message}\nhint: {hint}")]
    Store {
        location: String,
        message: String,
        kind: StorageErrorKind,
        hint: String,
    },
    #[error("refusing key '{key}': it must be a plain relative key under the warehouse")]
    BadKey { key: String },
    /// A record of an open multipart upload that cannot be used.
    #[error(
        "the multipart upload record {location} cannot be used: {reason}\nhint: check the bucket's open multipart uploads under that prefix (e.g. `aws s3api list-multipart-uploads`), abort the one it names, then delete the record; a bucket lifecycle rule (AbortIncompleteMultipartUpload) removes such uploads too"
    )]
    BadUploadRecord { location: String, reason: String },
    #[error(
        "{} is set but is not a list of storage faults: {reason}\nhint: it injects faults for tests only: unset it",
        fault::FAULTS_ENV
    )]
    BadFaults { reason: String },
}

impl StorageError {
    /// Wrap an object_store error on `location` (a URL, redacted here).
    pub fn from_store(location: &str, error: &object_store::Error) -> Self {
        let kind = kind_of(error);
        let hint = match kind {
            StorageErrorKind::NotFound => {
                "check the URL, and that the bucket (container) and object exist".to_string()
            }
            StorageErrorKind::Denied => "check the credentials (the environment, e.g. AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or the pod's role) and that they may read and write this bucket".to_string(),
            StorageErrorKind::Other => scope_settings(|s| {
                format!(
                    "check the endpoint, region and network; transient errors were retried up to {} times within {:?} (`storage.retry` in the config)",
                    s.retry.max_retries, s.retry.deadline
                )
            }),
        };
        StorageError::Store {
            location: redact(location),
            message: redact(&error.to_string()),
            kind,
            hint,
        }
    }

    pub fn kind(&self) -> StorageErrorKind {
        match self {
            StorageError::Store { kind, .. } => *kind,
            _ => StorageErrorKind::Other,
        }
    }
}

fn kind_of(error: &object_store::Error) -> StorageErrorKind {
    match error {
        object_store::Error::NotFound { .. } => StorageErrorKind::NotFound,
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => StorageErrorKind::Denied,
        // Some requests (listings) report HTTP failures as generic errors
        // whose text carries the status and the service's error code.
        other => {
            let text = other.to_string();
            let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
            if has(&[
                "403 Forbidden",
                "401 Unauthorized",
                "AccessDenied",
                "SignatureDoesNotMatch",
                "InvalidAccessKeyId",
                "AuthenticationFailed",
            ]) {
                StorageErrorKind::Denied
            } else if has(&["404 Not Found", "NoSuchBucket", "ContainerNotFound"]) {
                StorageErrorKind::NotFound
            } else {
                StorageErrorKind::Other
            }
        }
    }
}

/// Is there, in this error's cause chain, an object store failure that is
/// not a plain "not found" (permissions, network, retries exhausted)? Used to
/// give such input failures the storage exit code.
pub fn is_storage_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(store) = error.downcast_ref::<object_store::Error>() {
            return kind_of(store) != StorageErrorKind::NotFound;
        }
        if let Some(StorageError::Store { kind, .. }) = error.downcast_ref::<StorageError>() {
            return *kind != StorageErrorKind::NotFound;
        }
        current = error.source();
    }
    false
}

/// Remove what may be secret from a message: user info and query strings of
/// URLs (presigned signatures, SAS tokens), and the values of the credentials
/// in use (configured, or in the environment).
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // Copy up to and including the scheme separator.
        out.push_str(&rest[..at + 3]);
        rest = &rest[at + 3..];
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '<' || c == '>')
            .unwrap_or(rest.len());
        let (url, after) = rest.split_at(end);
        let url = match url.find('?') {
            Some(query) => format!("{}?[redacted]", &url[..query]),
            None => url.to_string(),
        };
        let url = match (url.find('@'), url.find('/')) {
            (Some(user), slash) if slash.is_none_or(|slash| user < slash) => {
                format!("[redacted]@{}", &url[user + 1..])
            }
            _ => url,
        };
        out.push_str(&url);
        rest = after;
    }
    out.push_str(rest);
    for secret in secret_values() {
        if secret.len() >= 4 {
            out = out.replace(&secret, "[redacted]");
        }
    }
    out
}

/// Environment variables whose values are credentials.
const SECRET_ENV: [&str; 10] = [
    crate::model::SALT_ENV,
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_TOKEN",
    "AZURE_CLIENT_SECRET",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
];

/// Credentials of every config scoped so far in this process, so that
/// errors printed outside a run's scope (the command line's last message)
/// are redacted too.
static KNOWN_SECRETS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn settings_secrets(settings: &StorageSettings) -> Vec<String> {
    [
        &settings.access_key_id,
        &settings.secret_access_key,
        &settings.session_token,
        &settings.account_key,
    ]
    .into_iter()
    .flatten()
    .map(|secret| secret.expose_secret().to_string())
    .collect()
}

fn secret_values() -> Vec<String> {
    let mut values: Vec<String> = SECRET_ENV
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .collect();
    values.extend(KNOWN_SECRETS.lock().map(|k| k.clone()).unwrap_or_default());
    values.extend(scope_settings(settings_secrets));
    values
}

/// Wraps each store as it is opened (tests: fault injection, call counting).
pub type StoreWrapper =
    Arc<dyn Fn(&Url, Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> + Send + Sync>;

/// Wraps the [`MultipartStore`] side of each store as it is opened (tests).
pub type MultipartWrapper =
    Arc<dyn Fn(&Url, Arc<dyn MultipartStore>) -> Arc<dyn MultipartStore> + Send + Sync>;

#[derive(Clone, Default)]
struct Scope {
    settings: StorageSettings,
    wrap: Option<StoreWrapper>,
    /// Without it, a store opened under `wrap` has no multipart side (every
    /// call then goes through `wrap`).
    wrap_multipart: Option<MultipartWrapper>,
}

tokio::task_local! {
    static SCOPE: Arc<Scope>;
}

fn scope_settings<T>(f: impl FnOnce(&StorageSettings) -> T) -> T {
    match SCOPE.try_with(|scope| scope.clone()) {
        Ok(scope) => f(&scope.settings),
        Err(_) => f(&StorageSettings::default()),
    }
}

/// Run `future` with `settings` used by every [`open`] inside it (a store
/// wrapper installed by an outer [`with_store_wrapper`] is kept).
pub async fn scoped<F: Future>(settings: StorageSettings, future: F) -> F::Output {
    if let Ok(mut known) = KNOWN_SECRETS.lock() {
        for secret in settings_secrets(&settings) {
            if !known.contains(&secret) {
                known.push(secret);
            }
        }
    }
    let (wrap, wrap_multipart) = SCOPE
        .try_with(|scope| (scope.wrap.clone(), scope.wrap_multipart.clone()))
        .unwrap_or_default();
    SCOPE
        .scope(
            Arc::new(Scope {
                settings,
                wrap,
                wrap_multipart,
            }),
            future,
        )
        .await
}

/// Run `future` with every store opened inside it passed through `wrap`
/// (tests: fault injection, counting calls). Such stores write large objects
/// through `wrap`'s `put_multipart`, as they have no multipart side of their
/// own (see [`with_store_wrappers`]).
pub async fn with_store_wrapper<F: Future>(wrap: StoreWrapper, future: F) -> F::Output {
    let settings = scope_settings(|s| s.clone());
    SCOPE
        .scope(
            Arc::new(Scope {
                settings,
                wrap: Some(wrap),
                wrap_multipart: None,
            }),
            future,
        )
        .await
}

// Not built on a shared `async fn` with `with_store_wrapper`: one more async
// layer around a whole run's future overflowed a test thread's stack
// (the Azure fault test).
/// [`with_store_wrapper`], with the [`MultipartStore`] side of the stores
/// that have one (S3, GCS) passed through `wrap_multipart`, so that the
/// recorded multipart uploads of [`Warehouse::put_recorded`] go through it.
pub async fn with_store_wrappers<F: Future>(
    wrap: StoreWrapper,
    wrap_multipart: MultipartWrapper,
    future: F,
) -> F::Output {
    let settings = scope_settings(|s| s.clone());
    SCOPE
        .scope(
            Arc::new(Scope {
                settings,
                wrap: Some(wrap),
                wrap_multipart: Some(wrap_multipart),
            }),
            future,
        )
        .await
}

/// A store and the prefix a URL points at inside it.
#[derive(Clone)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    /// `scheme://authority/` — how DataFusion's registry finds the store.
    pub store_url: Url,
    pub prefix: Path,
    pub url: String,
    /// The local directory of a `file://` location (for staged-file cleanup).
    pub local_root: Option<std::path::PathBuf>,
    /// The store's multipart uploads by id (S3, GCS), which a later process
    /// can abort: `None` for stores without such uploads (local files,
    /// memory; Azure, whose uncommitted blocks cannot be aborted and expire
    /// by themselves after 7 days).
    pub multipart: Option<Arc<dyn MultipartStore>>,
}

impl std::fmt::Debug for Location {
    // Never print a store: cloud builders carry credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Location")
            .field("url", &redact(&self.url))
            .finish()
    }
}

fn retry_config(settings: &StorageSettings) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: settings.retry.initial_backoff,
            max_backoff: settings.retry.max_backoff,
            base: 2.0,
        },
        max_retries: settings.retry.max_retries,
        retry_timeout: settings.retry.deadline,
    }
}

/// Whether an environment variable holds a true flag (`true`, `1`, `yes`,
/// `on`), as object_store's `from_env` builders read them.
fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|value| {
        matches!(
            value.trim().to_ascii_lowercase().as_str(),
            "true" | "1" | "yes" | "on"
        )
    })
}

/// The S3 endpoint: `storage.endpoint`, else the standard environment
/// (`AWS_ENDPOINT_URL`, then `AWS_ENDPOINT`, as object_store reads them).
fn s3_endpoint(settings: &StorageSettings) -> Option<String> {
    settings.endpoint.clone().or_else(|| {
        ["AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
            .into_iter()
            .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    })
}

fn client_options(settings: &StorageSettings, allow_http: bool) -> ClientOptions {
    ClientOptions::new()
        .with_timeout(settings.request_timeout)
        .with_connect_timeout(
            settings
                .request_timeout
                .min(std::time::Duration::from_secs(10)),
        )
        .with_allow_http(allow_http)
}

/// Open the store behind a URL (absolute, as produced by the config).
pub fn open(url_text: &str) -> Result<Location, StorageError> {
    let scope = SCOPE.try_with(|scope| scope.clone()).unwrap_or_default();
    let settings = &scope.settings;
    let bad = |reason: &str| StorageError::BadUrl {
        url: redact(url_text),
        reason: redact(reason),
    };
    let url = Url::parse(url_text).map_err(|e| bad(&e.to_string()))?;
    let url_prefix =
        || Path::from_url_path(url.path()).map_err(|e| bad(&format!("bad object key: {e}")));
    let authority = || {
        url.host_str()
            .filter(|host| !host.is_empty())
            .ok_or_else(|| bad("the URL names no bucket: write scheme://bucket/prefix/"))
    };
    let build_error = |e: object_store::Error| bad(&e.to_string());
    let mut multipart: Option<Arc<dyn MultipartStore>> = None;
    let (store, store_url, prefix, local_root): (Arc<dyn ObjectStore>, Url, Path, _) = match url
        .scheme()
    {
        "file" => {
            let path = url.to_file_path().map_err(|_| bad("not a local path"))?;
            let prefix = Path::from_absolute_path(&path).map_err(|e| bad(&e.to_string()))?;
            (
                Arc::new(LocalFileSystem::new()),
                Url::parse("file:///").expect("static URL"),
                prefix,
                Some(path),
            )
        }
        "memory" => (
            Arc::new(InMemory::new()),
            Url::parse("memory:///").expect("static URL"),
            Path::parse(url.path().trim_matches('/')).map_err(|e| bad(&e.to_string()))?,
            None,
        ),
        "s3" | "s3a" => {
            let bucket = authority()?;
            // The standard variables count as much as the config's keys: the
            // client options set below would otherwise drop the
            // `AWS_ALLOW_HTTP` that `from_env` read.
            let allow_http = settings.allow_http || env_flag("AWS_ALLOW_HTTP");
            let endpoint = s3_endpoint(settings);
            if let Some(endpoint) = &endpoint
                && endpoint.trim().to_ascii_lowercase().starts_with("http://")
                && !allow_http
            {
                return Err(StorageError::BadUrl {
                    url: redact(url_text),
                    reason: format!(
                        "the S3 endpoint {} is plain http, which is refused unless allowed: set `storage.allow_http: true` in the config (or AWS_ALLOW_HTTP=true) for a local test server, or use an https endpoint",
                        redact(endpoint)
                    ),
                });
            }
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry_config(settings))
                .with_client_options(client_options(settings, allow_http));
            if let Some(region) = &settings.region {
                builder = builder.with_region(region);
            }
            if let Some(endpoint) = &endpoint {
                builder = builder.with_endpoint(endpoint.trim_end_matches('/'));
            }
            if let Some(virtual_hosted) = settings.virtual_hosted_style {
                builder = builder.with_virtual_hosted_style_request(virtual_hosted);
            }
            if allow_http {
                builder = builder.with_allow_http(true);
            }
            if let (Some(key), Some(secret)) =
                (&settings.access_key_id, &settings.secret_access_key)
            {
                builder = builder
                    .with_access_key_id(key.expose_secret())
                    .with_secret_access_key(secret.expose_secret());
            }
            if let Some(token) = &settings.session_token {
                builder = builder.with_token(token.expose_secret());
            }
            let store = Arc::new(builder.build().map_err(build_error)?);
            multipart = Some(store.clone());
            (
                store,
                Url::parse(&format!("s3://{bucket}/")).map_err(|e| bad(&e.to_string()))?,
                url_prefix()?,
                None,
            )
        }
        "gs" => {
            let bucket = authority()?;
            let mut builder = GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry_config(settings))
                .with_client_options(client_options(settings, settings.allow_http));
            // An emulator (fake-gcs-server) or a private endpoint in place of
            // https://storage.googleapis.com; without it, a service-account
            // key's `gcs_base_url` or `GOOGLE_BASE_URL` still applies.
            if let Some(endpoint) = &settings.endpoint {
                builder = builder.with_base_url(endpoint.trim_end_matches('/'));
            }
            let store = Arc::new(builder.build().map_err(build_error)?);
            multipart = Some(store.clone());
            (
                store,
                Url::parse(&format!("gs://{bucket}/")).map_err(|e| bad(&e.to_string()))?,
                url_prefix()?,
                None,
            )
        }
        "az" | "azure" | "abfs" | "abfss" => {
            authority()?;
            let mut builder = MicrosoftAzureBuilder::from_env()
                .with_url(url_text)
                .with_retry(retry_config(settings))
                .with_client_options(client_options(
                    settings,
                    settings.allow_http || env_flag("AZURE_ALLOW_HTTP"),
                ));
            if let Some(account) = &settings.account_name {
                builder = builder.with_account(account);
            }
            if let Some(key) = &settings.account_key {
                builder = builder.with_access_key(key.expose_secret());
            }
            if let Some(endpoint) = &settings.endpoint {
                builder = builder.with_endpoint(endpoint.trim_end_matches('/').to_string());
            }
            if settings.allow_http {
                builder = builder.with_allow_http(true);
            }
            let store = builder.build().map_err(build_error)?;
            // DataFusion keys stores by scheme and host: for abfss the host
            // is the account, the container is the URL's user.
            let store_url = format!(
                "{}://{}/",
                url.scheme(),
                &url[url::Position::BeforeHost..url::Position::AfterPort]
            );
            (
                Arc::new(store),
                Url::parse(&store_url).map_err(|e| bad(&e.to_string()))?,
                url_prefix()?,
                None,
            )
        }
        other => {
            return Err(bad(&format!(
                "the {other}:// scheme is not supported: use file://, s3://, gs://, az:// or abfss://, or a local path"
            )));
        }
    };
    let (store, multipart) = match (&scope.wrap, &scope.wrap_multipart) {
        (Some(wrap), Some(wrap_multipart)) => (
            wrap(&store_url, store),
            multipart.map(|m| wrap_multipart(&store_url, m)),
        ),
        (Some(wrap), None) => (wrap(&store_url, store), None),
        (None, _) => match fault::from_env()? {
            Some(faults) => (
                faults.wrap(store),
                multipart.map(|m| faults.wrap_multipart(m)),
            ),
            None => (store, multipart),
        },
    };
    Ok(Location {
        store,
        store_url,
        prefix,
        url: url_text.to_string(),
        local_root,
        multipart,
    })
}

/// What a conditional create found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Created,
    AlreadyExists,
}

/// What [`Warehouse::put_recorded`] records while a multipart upload is
/// open: enough for a later process to abort it. The upload id is not a
/// credential (using it takes the bucket's credentials).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    /// The object's key, relative to the warehouse.
    pub key: String,
    pub upload_id: String,
    /// When the upload started (RFC 3339, UTC).
    pub started_at: String,
}

/// The output root: every key is relative to it and validated.
#[derive(Clone, Debug)]
pub struct Warehouse {
    location: Location,
    multipart_threshold: usize,
    part_size: usize,
}

impl Warehouse {
    pub fn open(url: &str) -> Result<Self, StorageError> {
        let (multipart_threshold, part_size) =
            scope_settings(|s| (s.multipart_threshold, s.part_size));
        Ok(Self {
            location: open(url)?,
            multipart_threshold,
            part_size,
        })
    }

    pub fn url(&self) -> &str {
        &self.location.url
    }

    /// The store and prefix (tests and tools that read the warehouse).
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Build a key from parts, each a single plain segment.
    pub fn key(&self, parts: &[&str]) -> Result<Path, StorageError> {
        let mut key = self.location.prefix.clone();
        for part in parts {
            let valid = !part.is_empty()
                && *part != "."
                && *part != ".."
                && !part.contains('/')
                && Path::parse(*part).is_ok();
            if !valid {
                return Err(StorageError::BadKey {
                    key: parts.join("/"),
                });
            }
            key = key.join(*part);
        }
        Ok(key)
    }

    /// The URL of a key, for messages.
    pub fn url_of(&self, key: &Path) -> String {
        format!("{}{}", self.location.url, self.relative(key))
    }

    fn error(&self, key: &Path, source: object_store::Error) -> StorageError {
        StorageError::from_store(&self.url_of(key), &source)
    }

    /// Write one object atomically (a reader sees the old or the new bytes).
    /// Objects over the multipart threshold go up in parts and appear only
    /// when the upload completes; a failed upload is aborted.
    pub async fn put(&self, key: &Path, bytes: Bytes) -> Result<(), StorageError> {
        if bytes.len() > self.multipart_threshold {
            return self.put_multipart(key, bytes).await;
        }
        self.location
            .store
            .put(key, PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.error(key, e))
    }

    async fn put_multipart(&self, key: &Path, bytes: Bytes) -> Result<(), StorageError> {
        let store = &self.location.store;
        let mut upload = store
            .put_multipart(key)
            .await
            .map_err(|e| self.error(key, e))?;
        let mut offset = 0;
        let mut failure = None;
        while offset < bytes.len() {
            let end = (offset + self.part_size).min(bytes.len());
            if let Err(e) = upload
                .put_part(PutPayload::from_bytes(bytes.slice(offset..end)))
                .await
            {
                failure = Some(e);
                break;
            }
            offset = end;
        }
        let result = match failure {
            Some(e) => Err(e),
            None => upload.complete().await.map(|_| ()),
        };
        if let Err(e) = result {
            if let Err(abort) = upload.abort().await {
                tracing::warn!(
                    key = %self.url_of(key),
                    error = %redact(&abort.to_string()),
                    "Could not abort a failed multipart upload; a bucket lifecycle rule (AbortIncompleteMultipartUpload) removes it."
                );
            }
            return Err(self.error(key, e));
        }
        Ok(())
    }

    /// [`Self::put`], for objects that a later process must be able to
    /// clean up after a kill: on a store whose multipart uploads have ids
    /// (S3, GCS), an object over the multipart threshold goes up through
    /// the store's [`MultipartStore`], and the upload (`key`, id) is
    /// recorded at `record` before its first part and deleted once it is
    /// complete or aborted. A process killed in between leaves the record;
    /// [`Self::abort_recorded`] aborts the upload it names. Other stores,
    /// and smaller objects, take [`Self::put`]'s path.
    pub async fn put_recorded(
        &self,
        key: &Path,
        bytes: Bytes,
        record: &Path,
    ) -> Result<(), StorageError> {
        match &self.location.multipart {
            Some(multipart) if bytes.len() > self.multipart_threshold => {
                self.put_parts(multipart.as_ref(), key, bytes, record).await
            }
            _ => self.put(key, bytes).await,
        }
    }

    async fn put_parts(
        &self,
        multipart: &dyn MultipartStore,
        key: &Path,
        bytes: Bytes,
        record: &Path,
    ) -> Result<(), StorageError> {
        let id = multipart
            .create_multipart(key)
            .await
            .map_err(|e| self.error(key, e))?;
        let body = UploadRecord {
            key: self.relative(key).to_string(),
            upload_id: id.clone(),
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        let body = Bytes::from(serde_json::to_vec_pretty(&body).expect("record serialises"));
        let result = match self.put(record, body).await {
            // Nothing recorded: abort now, or the upload would be lost.
            Err(e) => Err(e),
            Ok(()) => self
                .upload_parts(multipart, key, &id, bytes)
                .await
                .map_err(|e| self.error(key, e)),
        };
        let Err(error) = result else {
            return self.delete(record).await;
        };
        match multipart.abort_multipart(key, &id).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                if let Err(e) = self.delete(record).await {
                    tracing::warn!(record = %self.url_of(record), error = %e, "Could not delete the record of an aborted multipart upload; the next run of this period deletes it.");
                }
            }
            Err(abort) => tracing::warn!(
                key = %self.url_of(key),
                error = %redact(&abort.to_string()),
                "Could not abort a failed multipart upload; its record stays, and the next run of this period aborts it."
            ),
        }
        Err(error)
    }

    /// Upload `bytes` in parts of `part_size`, then complete the upload.
    async fn upload_parts(
        &self,
        multipart: &dyn MultipartStore,
        key: &Path,
        id: &MultipartId,
        bytes: Bytes,
    ) -> Result<(), object_store::Error> {
        let mut parts: Vec<PartId> = Vec::new();
        let mut offset = 0;
        while offset < bytes.len() {
            let end = (offset + self.part_size.max(1)).min(bytes.len());
            let payload = PutPayload::from_bytes(bytes.slice(offset..end));
            parts.push(multipart.put_part(key, id, parts.len(), payload).await?);
            offset = end;
        }
        multipart.complete_multipart(key, id, parts).await?;
        Ok(())
    }

    /// Abort the multipart upload recorded at `record` by
    /// [`Self::put_recorded`] in a process that did not finish it, and
    /// delete the record. `None` when there is no record. The caller must
    /// know that no live process still writes that upload (the period's
    /// lease). An upload that is already gone (completed just before the
    /// process died, or aborted) counts as aborted. On failure the record
    /// stays, for the next attempt.
    pub async fn abort_recorded(
        &self,
        record: &Path,
    ) -> Result<Option<UploadRecord>, StorageError> {
        let Some(bytes) = self.get(record).await? else {
            return Ok(None);
        };
        let bad = |reason: String| StorageError::BadUploadRecord {
            location: redact(&self.url_of(record)),
            reason,
        };
        let body: UploadRecord = serde_json::from_slice(&bytes)
            .map_err(|e| bad(format!("it is not a record of an upload ({e})")))?;
        let parts: Vec<&str> = body.key.split('/').collect();
        let key = self.key(&parts).map_err(|_| {
            bad(format!(
                "it names the key '{}', which is not under the warehouse",
                body.key
            ))
        })?;
        let Some(multipart) = &self.location.multipart else {
            return Err(bad(
                "this store has no multipart uploads by id to abort".to_string()
            ));
        };
        match multipart.abort_multipart(&key, &body.upload_id).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.error(&key, e)),
        }
        self.delete(record).await?;
        Ok(Some(body))
    }

    /// A key relative to the warehouse (as URLs and upload records show it).
    fn relative<'a>(&self, key: &'a Path) -> &'a str {
        key.as_ref()
            .strip_prefix(self.location.prefix.as_ref())
            .unwrap_or(key.as_ref())
            .trim_start_matches('/')
    }

    /// Create an object only if none exists at `key` (a conditional put).
    pub async fn create(&self, key: &Path, bytes: Bytes) -> Result<Created, StorageError> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .location
            .store
            .put_opts(key, PutPayload::from_bytes(bytes), options)
            .await
        {
            Ok(_) => Ok(Created::Created),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(Created::AlreadyExists),
            Err(e) => Err(self.error(key, e)),
        }
    }

    pub async fn get(&self, key: &Path) -> Result<Option<Bytes>, StorageError> {
        match self.location.store.get(key).await {
            Ok(result) => result
                .bytes()
                .await
                .map(Some)
                .map_err(|e| self.error(key, e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(key, e)),
        }
    }

    /// The object's size and ETag, if it exists.
    pub async fn head(&self, key: &Path) -> Result<Option<ObjectMeta>, StorageError> {
        match self.location.store.head(key).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(key, e)),
        }
    }

    pub async fn exists(&self, key: &Path) -> Result<bool, StorageError> {
        match self.location.store.head(key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error(key, e)),
        }
    }

    /// Delete an object; deleting a missing one is not an error.
    pub async fn delete(&self, key: &Path) -> Result<(), StorageError> {
        match self.location.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(key, e)),
        }
    }

    /// Every object below a key (recursively).
    pub async fn list(&self, prefix: &Path) -> Result<Vec<ObjectMeta>, StorageError> {
        match self.location.store.list(Some(prefix)).try_collect().await {
            Ok(list) => Ok(list),
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(self.error(prefix, e)),
        }
    }

    /// Immediate child "folders" of a key.
    pub async fn folders(&self, prefix: &Path) -> Result<Vec<Path>, StorageError> {
        match self.location.store.list_with_delimiter(Some(prefix)).await {
            Ok(listing) => Ok(listing.common_prefixes),
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(self.error(prefix, e)),
        }
    }

    /// Remove a local folder left empty by deletes (object stores have no
    /// folders: a no-op there), so that listings no longer show it.
    pub async fn remove_empty_folder(&self, folder: &Path) -> Result<(), StorageError> {
        let Some(root) = &self.location.local_root else {
            return Ok(());
        };
        let relative = folder
            .as_ref()
            .strip_prefix(self.location.prefix.as_ref())
            .unwrap_or("")
            .trim_start_matches('/');
        if relative.is_empty() {
            return Ok(());
        }
        // Fails harmlessly when the folder is not empty or already gone.
        let _ = std::fs::remove_dir(root.join(relative));
        Ok(())
    }

    /// Remove the hidden `name#N` files a local put stages before its rename
    /// when the run was killed in between (object_store's listing skips them,
    /// but Spark, Trino or a plain directory read would not). Object stores
    /// have no such files: a no-op there.
    pub async fn clean_staged(&self, folder: &Path) -> Result<usize, StorageError> {
        self.clean_staged_older_than(folder, std::time::Duration::ZERO)
            .await
    }

    /// [`Self::clean_staged`], sparing files staged less than `age` ago: in
    /// a folder that several runs write at once (`published_periods`), a
    /// young staged file is another run's write in flight, whose rename
    /// would fail if it were removed.
    pub async fn clean_staged_older_than(
        &self,
        folder: &Path,
        age: std::time::Duration,
    ) -> Result<usize, StorageError> {
        let Some(root) = &self.location.local_root else {
            return Ok(0);
        };
        let relative = folder
            .as_ref()
            .strip_prefix(self.location.prefix.as_ref())
            .unwrap_or("")
            .trim_start_matches('/');
        let directory = if relative.is_empty() {
            root.clone()
        } else {
            root.join(relative)
        };
        let mut removed = 0;
        let entries = match std::fs::read_dir(&directory) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => {
                return Err(self.error(
                    folder,
                    object_store::Error::Generic {
                        store: "LocalFileSystem",
                        source: Box::new(e),
                    },
                ));
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let staged = name.rsplit_once('#').is_some_and(|(_, suffix)| {
                !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit())
            });
            let old_enough = age.is_zero()
                || entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|modified| modified.elapsed().ok())
                    .is_some_and(|elapsed| elapsed >= age);
            if staged && old_enough && entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
                std::fs::remove_file(entry.path()).map_err(|e| {
                    self.error(
                        folder,
                        object_store::Error::Generic {
                            store: "LocalFileSystem",
                            source: Box::new(e),
                        },
                    )
                })?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_urls() {
        let text = "GET https://user:pw@host/b/k?X-Amz-Signature=abc&X-Amz-Credential=def failed";
        let redacted = redact(text);
        assert_eq!(
            redacted,
            "GET https://[redacted]@host/b/k?[redacted] failed"
        );
        assert_eq!(redact("s3://bucket/a/b"), "s3://bucket/a/b");
    }

    #[tokio::test]
    async fn redacts_configured_secrets() {
        let settings = StorageSettings {
            secret_access_key: Some("very-secret-value".into()),
            access_key_id: Some("AKIDEXAMPLE".into()),
            ..Default::default()
        };
        let text = scoped(settings, async {
            redact("<AWSAccessKeyId>AKIDEXAMPLE</AWSAccessKeyId> very-secret-value")
        })
        .await;
        assert!(
            !text.contains("AKIDEXAMPLE") && !text.contains("very-secret"),
            "{text}"
        );
    }

    #[test]
    fn opens_cloud_urls_without_network() {
        let s3 = open("s3://bucket/some/prefix/").unwrap();
        assert_eq!(s3.store_url.as_str(), "s3://bucket/");
        assert_eq!(s3.prefix.as_ref(), "some/prefix");
        assert!(open("s3:///nobucket").is_err());
        assert!(open("ftp://x/y").is_err());
    }

    /// A warehouse on an in-memory store used as multipart-capable (as S3
    /// and GCS are), with tiny thresholds.
    fn recorded_warehouse() -> (Warehouse, Arc<InMemory>) {
        let memory = Arc::new(InMemory::new());
        let location = Location {
            store: memory.clone(),
            store_url: Url::parse("memory:///").unwrap(),
            prefix: Path::from("wh"),
            url: "memory:///wh/".into(),
            local_root: None,
            multipart: Some(memory.clone()),
        };
        let warehouse = Warehouse {
            location,
            multipart_threshold: 10,
            part_size: 4,
        };
        (warehouse, memory)
    }

    #[tokio::test]
    async fn recorded_uploads_are_completed_or_aborted_and_their_records_deleted() {
        let (warehouse, memory) = recorded_warehouse();
        let key = warehouse.key(&["t", "part-0.parquet"]).unwrap();
        let record = warehouse.key(&["_runs", "_upload-1.json"]).unwrap();
        let bytes = Bytes::from_static(b"0123456789abcdefghijklmnopq");
        warehouse
            .put_recorded(&key, bytes.clone(), &record)
            .await
            .unwrap();
        assert_eq!(warehouse.get(&key).await.unwrap(), Some(bytes));
        assert!(!warehouse.exists(&record).await.unwrap());

        // A process killed mid-upload left its record.
        let open = warehouse.key(&["t", "part-1.parquet"]).unwrap();
        let id = memory.create_multipart(&open).await.unwrap();
        memory
            .put_part(&open, &id, 0, PutPayload::from_static(b"abcd"))
            .await
            .unwrap();
        let body = UploadRecord {
            key: "t/part-1.parquet".into(),
            upload_id: id.clone(),
            started_at: "2025-01-01T00:00:00.000Z".into(),
        };
        let json = Bytes::from(serde_json::to_vec(&body).unwrap());
        warehouse.put(&record, json).await.unwrap();
        assert_eq!(warehouse.abort_recorded(&record).await.unwrap(), Some(body));
        assert!(!warehouse.exists(&record).await.unwrap());
        // The upload is gone: it can no longer be completed.
        assert!(
            memory
                .complete_multipart(&open, &id, Vec::new())
                .await
                .is_err()
        );
        assert_eq!(warehouse.abort_recorded(&record).await.unwrap(), None);

        // A record naming a key outside the warehouse is refused, and kept.
        let outside = br#"{"key":"../other/x","upload_id":"1","started_at":""}"#;
        warehouse
            .put(&record, Bytes::from_static(outside))
            .await
            .unwrap();
        let error = warehouse.abort_recorded(&record).await.unwrap_err();
        assert!(
            matches!(error, StorageError::BadUploadRecord { .. }),
            "{error}"
        );
        assert!(warehouse.exists(&record).await.unwrap());
    }

    #[tokio::test]
    async fn create_is_conditional_and_staged_files_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let url = Url::from_directory_path(dir.path()).unwrap().to_string();
        let warehouse = Warehouse::open(&url).unwrap();
        let key = warehouse.key(&["a", "lease.json"]).unwrap();
        assert_eq!(
            warehouse.create(&key, Bytes::from("1")).await.unwrap(),
            Created::Created
        );
        assert_eq!(
            warehouse.create(&key, Bytes::from("2")).await.unwrap(),
            Created::AlreadyExists
        );
        std::fs::write(dir.path().join("a/part-0.parquet#3"), b"x").unwrap();
        let folder = warehouse.key(&["a"]).unwrap();
        assert_eq!(warehouse.clean_staged(&folder).await.unwrap(), 1);
        assert!(dir.path().join("a/lease.json").exists());
    }
}

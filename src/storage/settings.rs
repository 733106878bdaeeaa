//! The `storage:` section of a config: how to reach object stores (region,
//! endpoint, addressing style, plain HTTP for local endpoints), retries and
//! timeouts, multipart uploads and the publishing lease.
//!
//! Credentials come from the environment or the cloud's default chain (IRSA,
//! workload identity, instance metadata). A config may name them only through
//! `${VAR}` interpolation, never as literals; they are held as
//! [`SecretString`] so `Debug` never prints them.

use std::path::Path;
use std::time::Duration;

use schemars::JsonSchema;
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

use crate::model::Problem;

/// The keys of `storage:` that hold credentials.
pub const SECRET_KEYS: [&str; 4] = [
    "access_key_id",
    "secret_access_key",
    "session_token",
    "account_key",
];

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    /// Cloud region (S3), e.g. `eu-west-3`. Default: `AWS_REGION` or `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint of an S3-compatible service (MinIO, Ceph, R2), of a GCS or
    /// Azure emulator. Default: the cloud's own.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// S3 addressing: `true` = `https://bucket.host/key` (virtual-hosted
    /// style), `false` = `https://host/bucket/key` (path style, default).
    #[serde(default)]
    pub virtual_hosted_style: Option<bool>,
    /// Allow `http://` endpoints. Refused unless the endpoint is on this
    /// machine (localhost, 127.0.0.0/8, ::1).
    #[serde(default)]
    pub allow_http: bool,
    /// S3 access key id, through `${VAR}` only (a literal is refused).
    /// Default: `AWS_ACCESS_KEY_ID`, then the default chain (IRSA, instance
    /// metadata).
    #[serde(default, deserialize_with = "secret")]
    #[schemars(with = "Option<String>", extend("x-docs" = "guides/object-storage.md#credentials"))]
    pub access_key_id: Option<SecretString>,
    /// S3 secret access key, through `${VAR}` only. Default:
    /// `AWS_SECRET_ACCESS_KEY`, then the default chain.
    #[serde(default, deserialize_with = "secret")]
    #[schemars(with = "Option<String>", extend("x-docs" = "guides/object-storage.md#credentials"))]
    pub secret_access_key: Option<SecretString>,
    /// S3 session token of temporary credentials, through `${VAR}` only.
    #[serde(default, deserialize_with = "secret")]
    #[schemars(with = "Option<String>", extend("x-docs" = "guides/object-storage.md#credentials"))]
    pub session_token: Option<SecretString>,
    /// Azure storage account name. Default: the `AZURE_*` environment.
    #[serde(default)]
    pub account_name: Option<String>,
    /// Azure storage account key, through `${VAR}` only. Default: the
    /// `AZURE_*` environment, then workload identity / managed identity.
    #[serde(default, deserialize_with = "secret")]
    #[schemars(with = "Option<String>", extend("x-docs" = "guides/object-storage.md#credentials"))]
    pub account_key: Option<SecretString>,
    #[serde(default)]
    pub retry: RetrySettings,
    /// Timeout of one request.
    #[serde(default = "default_request_timeout", deserialize_with = "duration")]
    #[schemars(with = "String", extend("default" = DEFAULT_REQUEST_TIMEOUT))]
    pub request_timeout: Duration,
    /// Table partitions larger than this are written with a multipart upload
    /// (aborted on failure; on S3 and GCS, one left open by a killed run is
    /// aborted by the next run of the period); smaller ones with one PUT.
    #[serde(default = "default_multipart_threshold", deserialize_with = "bytes")]
    #[schemars(with = "String", extend("default" = DEFAULT_MULTIPART_THRESHOLD))]
    pub multipart_threshold: usize,
    /// Size of each multipart part (at least 5MiB on S3).
    #[serde(default = "default_part_size", deserialize_with = "bytes")]
    #[schemars(with = "String", extend("default" = DEFAULT_PART_SIZE))]
    pub part_size: usize,
    /// How long a run's lease on a job and period lives without renewal; the
    /// holder renews it every third of that.
    #[serde(default = "default_lease_ttl", deserialize_with = "duration")]
    #[schemars(with = "String", extend("default" = DEFAULT_LEASE_TTL))]
    pub lease_ttl: Duration,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            region: None,
            endpoint: None,
            virtual_hosted_style: None,
            allow_http: false,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            account_name: None,
            account_key: None,
            retry: RetrySettings::default(),
            request_timeout: default_request_timeout(),
            multipart_threshold: default_multipart_threshold(),
            part_size: default_part_size(),
            lease_ttl: default_lease_ttl(),
        }
    }
}

/// Retries of transient errors (timeouts, 5xx, 429) with exponential backoff.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// Retries of one request (0 disables retries).
    #[serde(default = "default_max_retries")]
    pub max_retries: usize,
    /// First backoff, doubled on each retry…
    #[serde(default = "default_initial_backoff", deserialize_with = "duration")]
    #[schemars(with = "String", extend("default" = DEFAULT_INITIAL_BACKOFF))]
    pub initial_backoff: Duration,
    /// …up to this.
    #[serde(default = "default_max_backoff", deserialize_with = "duration")]
    #[schemars(with = "String", extend("default" = DEFAULT_MAX_BACKOFF))]
    pub max_backoff: Duration,
    /// No retry starts after this long since the first attempt.
    #[serde(default = "default_deadline", deserialize_with = "duration")]
    #[schemars(with = "String", extend("default" = DEFAULT_DEADLINE))]
    pub deadline: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_retries: default_max_retries(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            deadline: default_deadline(),
        }
    }
}

// Defaults as a user writes them: the schema and the reference show these.
const DEFAULT_REQUEST_TIMEOUT: &str = "30s";
const DEFAULT_MULTIPART_THRESHOLD: &str = "64MiB";
const DEFAULT_PART_SIZE: &str = "8MiB";
const DEFAULT_LEASE_TTL: &str = "60s";
const DEFAULT_INITIAL_BACKOFF: &str = "100ms";
const DEFAULT_MAX_BACKOFF: &str = "15s";
const DEFAULT_DEADLINE: &str = "3m";
fn default_request_timeout() -> Duration {
    parse_duration(DEFAULT_REQUEST_TIMEOUT).expect("a valid default duration")
}
fn default_multipart_threshold() -> usize {
    crate::model::units::parse_bytes(DEFAULT_MULTIPART_THRESHOLD).expect("a valid default size")
}
fn default_part_size() -> usize {
    crate::model::units::parse_bytes(DEFAULT_PART_SIZE).expect("a valid default size")
}
fn default_lease_ttl() -> Duration {
    parse_duration(DEFAULT_LEASE_TTL).expect("a valid default duration")
}
fn default_max_retries() -> usize {
    10
}
fn default_initial_backoff() -> Duration {
    parse_duration(DEFAULT_INITIAL_BACKOFF).expect("a valid default duration")
}
fn default_max_backoff() -> Duration {
    parse_duration(DEFAULT_MAX_BACKOFF).expect("a valid default duration")
}
fn default_deadline() -> Duration {
    parse_duration(DEFAULT_DEADLINE).expect("a valid default duration")
}

fn secret<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<SecretString>, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.map(SecretString::from))
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "'{text}' is not a duration: write e.g. 250ms, 30s, 5m or 1h"
        ))
    })
}

fn bytes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    let text = String::deserialize(deserializer)?;
    crate::model::units::parse_bytes(&text).ok_or_else(|| {
        serde::de::Error::custom(format!("'{text}' is not a size: write e.g. 8MiB or 1GiB"))
    })
}

/// Parse `250ms`, `30s`, `5m`, `1h`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    match unit.trim() {
        "ms" => Some(Duration::from_millis(number)),
        "s" => Some(Duration::from_secs(number)),
        "m" | "min" => Some(Duration::from_secs(number * 60)),
        "h" => Some(Duration::from_secs(number * 3600)),
        _ => None,
    }
}

/// Is this host on this machine (so plain HTTP to it leaves nothing on a network)?
pub fn is_local_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

impl StorageSettings {
    /// Meaning checks: `(key, message)` for each problem.
    pub fn check(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if let Some(endpoint) = &self.endpoint {
            match url::Url::parse(endpoint) {
                Ok(url) if url.scheme() == "https" => {}
                Ok(url) if url.scheme() == "http" => {
                    let local = url.host_str().map(is_local_host).unwrap_or(false);
                    if !self.allow_http {
                        problems.push((
                            "storage.endpoint".into(),
                            format!(
                                "'{}' is plain http: set `storage.allow_http: true` (local endpoints only) or use https",
                                crate::storage::redact(endpoint)
                            ),
                        ));
                    } else if !local {
                        problems.push((
                            "storage.allow_http".into(),
                            "plain http is allowed only for an endpoint on this machine (localhost, 127.0.0.1, ::1); use https".into(),
                        ));
                    }
                }
                _ => problems.push((
                    "storage.endpoint".into(),
                    "must be an http(s):// URL, e.g. https://minio.example:9000".into(),
                )),
            }
        }
        if self.allow_http && self.endpoint.is_none() {
            problems.push((
                "storage.allow_http".into(),
                "plain http needs a local `storage.endpoint`; the clouds' own endpoints are https"
                    .into(),
            ));
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            problems.push((
                "storage.secret_access_key".into(),
                "`access_key_id` and `secret_access_key` go together: set both or neither".into(),
            ));
        }
        if self.part_size < 5 * 1024 * 1024 {
            problems.push((
                "storage.part_size".into(),
                "must be at least 5MiB (the smallest multipart part S3 accepts)".into(),
            ));
        }
        if self.lease_ttl < Duration::from_secs(1) {
            problems.push(("storage.lease_ttl".into(), "must be at least 1s".into()));
        }
        problems
    }
}

/// Credentials must not be literals in a config file: each of
/// [`SECRET_KEYS`] under `storage:` must be a single `${VAR}`. Checked on the
/// text before interpolation.
pub fn literal_secret_problems(path: &Path, raw: &str) -> Vec<Problem> {
    let Ok(value) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(raw) else {
        // The interpolated text is parsed next and reports the syntax error.
        return Vec::new();
    };
    let Some(storage) = value.get("storage").and_then(|s| s.as_mapping()) else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    for key in SECRET_KEYS {
        let Some(field) = storage.get(key) else {
            continue;
        };
        let is_reference = field.as_str().is_some_and(|text| {
            let text = text.trim();
            text.starts_with("${")
                && text.ends_with('}')
                && text[2..].find('}') == Some(text.len() - 3)
        });
        if !is_reference {
            problems.push(Problem {
                file: path.to_path_buf(),
                key: format!("storage.{key}"),
                line: raw
                    .lines()
                    .position(|line| line.trim_start().starts_with(&format!("{key}:")))
                    .map(|index| index + 1),
                column: None,
                message: format!(
                    "credentials are never written in a config: write `{key}: ${{SOME_ENV_VAR}}` or leave it out to use the environment / the cloud's default credential chain"
                ),
            });
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_local_hosts() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("3m"), Some(Duration::from_secs(180)));
        assert_eq!(parse_duration("soon"), None);
        assert!(is_local_host("127.0.0.1") && is_local_host("[::1]") && is_local_host("localhost"));
        assert!(!is_local_host("10.0.0.1") && !is_local_host("minio.internal"));
    }

    #[test]
    fn http_only_for_local_endpoints() {
        let settings = |endpoint: &str, allow_http| StorageSettings {
            endpoint: Some(endpoint.into()),
            allow_http,
            ..Default::default()
        };
        assert!(settings("http://127.0.0.1:9000", true).check().is_empty());
        assert!(settings("https://s3.example", false).check().is_empty());
        assert_eq!(settings("http://127.0.0.1:9000", false).check().len(), 1);
        assert_eq!(settings("http://10.1.2.3:9000", true).check().len(), 1);
    }

    #[test]
    fn secrets_only_through_variables() {
        let path = Path::new("c.yaml");
        let ok = "storage:\n  access_key_id: ${KEY}\n  secret_access_key: \"${SECRET}\"\n";
        assert!(literal_secret_problems(path, ok).is_empty());
        let bad = "warehouse: x\nstorage:\n  secret_access_key: abc${X}\n";
        let problems = literal_secret_problems(path, bad);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, Some(3));
        assert!(!problems[0].message.contains("abc"));
    }
}

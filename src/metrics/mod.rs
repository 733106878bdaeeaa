//! Pushes the outcome of one `segments run` to a Prometheus Pushgateway
//! (docs/guides/metrics.md): its exit code, time and duration, and, when it
//! succeeded, rows read and rejected, customers per segment and movements.
//!
//! One group per job, `job="segments", segments_job="<job>"`: the same key
//! every month, so each run replaces what the previous one pushed. The push
//! is a POST, which replaces only the metrics it carries: a failed run
//! updates the exit code and run time and leaves the last success's
//! timestamp and counts in place, which is what an alert on "no successful
//! run for 32 days" reads. The period is a label on every metric, never part
//! of the key.
//!
//! Off unless a Pushgateway URL is set (`metrics.pushgateway_url` in the
//! config, or `SEGMENTS_PUSHGATEWAY_URL`). A push that fails is a warning,
//! never a change of the run's exit code; it gives up after [`TIMEOUT`].

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use schemars::JsonSchema;
use serde::Deserialize;

/// The environment variable that sets (and overrides) the Pushgateway URL.
pub const URL_ENV: &str = "SEGMENTS_PUSHGATEWAY_URL";

/// The whole push (connect, send, answer) gives up after this.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The `job` label of the grouping key.
pub const JOB_LABEL: &str = "segments";

/// `metrics:` in a config file.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// URL of a Prometheus Pushgateway (`http://` or `https://`, e.g.
    /// `http://pushgateway.monitoring:9091`) that `segments run` pushes its
    /// outcome to; `SEGMENTS_PUSHGATEWAY_URL` overrides it. No push when
    /// neither is set. Credentials in the URL (`https://user:pass@host`) are
    /// used and never logged; give them through `${VAR}`.
    #[serde(default)]
    #[schemars(extend("x-docs" = "guides/metrics.md"))]
    pub pushgateway_url: Option<String>,
}

impl MetricsSettings {
    /// Problems as (key, message).
    pub fn check(&self) -> Vec<(String, String)> {
        match &self.pushgateway_url {
            Some(url) => match check_url(url) {
                Ok(_) => Vec::new(),
                Err(message) => vec![("metrics.pushgateway_url".to_string(), message)],
            },
            None => Vec::new(),
        }
    }
}

/// The URL parsed, or why not (without the URL's credentials).
fn check_url(url: &str) -> Result<url::Url, String> {
    let parsed = url::Url::parse(url.trim())
        .map_err(|e| format!("'{}' is not a URL: {e}", redact_url(url)))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!(
            "'{}' is not an http:// or https:// URL of a Pushgateway",
            redact_url(url)
        ));
    }
    Ok(parsed)
}

/// `url` without its credentials, for logs.
pub use crate::model::url::redact_url;

/// What a run did, as pushed.
#[derive(Debug, Clone)]
pub struct RunMetrics {
    /// The job's name (the `segments_job` label of the grouping key).
    pub job: String,
    /// The period run, when it was known (`YYYY-MM`).
    pub period: Option<String>,
    /// The process's exit code.
    pub exit_code: u8,
    /// When the run ended.
    pub finished_at: SystemTime,
    /// How long the command took.
    pub duration: Duration,
    /// What a successful run published; `None` for a failed run.
    pub published: Option<Published>,
}

/// The counts of a successful run.
#[derive(Debug, Clone, Default)]
pub struct Published {
    pub rows_read: u64,
    pub rows_rejected: u64,
    /// (segment, customers); (audience, contacts) for an audiences job.
    pub customers: Vec<(String, i64)>,
    /// (movement, customers); empty for an audiences job.
    pub movements: Vec<(String, i64)>,
}

/// A job name as a label value in a URL path: the characters of job names
/// (`[a-z0-9_]`), anything else (a job file that did not load, named after
/// its file) as `_`.
pub fn job_label(name: &str) -> String {
    let label: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if label.is_empty() {
        "unknown".to_string()
    } else {
        label
    }
}

/// The URL of the job's group under the Pushgateway at `base`.
pub fn group_url(base: &str, job: &str) -> Result<String, String> {
    let parsed = check_url(base)?;
    let mut text = parsed.to_string();
    // A Pushgateway served under a path prefix keeps it.
    while text.ends_with('/') {
        text.pop();
    }
    Ok(format!(
        "{text}/metrics/job/{JOB_LABEL}/segments_job/{}",
        job_label(job)
    ))
}

/// A label value in the text exposition format.
fn escape(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The body of the push: Prometheus text exposition format 0.0.4.
pub fn exposition(run: &RunMetrics) -> String {
    let period = run.period.as_deref().unwrap_or("");
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, samples: &[(Option<(&str, &str)>, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (extra, value) in samples {
            let mut labels = format!("period=\"{}\"", escape(period));
            if let Some((key, label)) = extra {
                let _ = write!(labels, ",{key}=\"{}\"", escape(label));
            }
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    };
    let finished = seconds(run.finished_at);
    metric(
        "segments_last_run_exit_code",
        "Exit code of the last run (0 success; docs/reference/cli.md).",
        &[(None, f64::from(run.exit_code))],
    );
    metric(
        "segments_last_run_timestamp_seconds",
        "When the last run ended, successful or not (Unix time).",
        &[(None, finished)],
    );
    metric(
        "segments_last_run_duration_seconds",
        "How long the last run took.",
        &[(None, run.duration.as_secs_f64())],
    );
    if let Some(published) = &run.published {
        metric(
            "segments_last_success_timestamp_seconds",
            "When the last successful run ended (Unix time).",
            &[(None, finished)],
        );
        metric(
            "segments_rows_read",
            "Transaction rows read by the last successful run.",
            &[(None, published.rows_read as f64)],
        );
        metric(
            "segments_rows_rejected",
            "Transaction rows rejected by the last successful run.",
            &[(None, published.rows_rejected as f64)],
        );
        let customers: Vec<_> = published
            .customers
            .iter()
            .map(|(segment, n)| (Some(("segment", segment.as_str())), *n as f64))
            .collect();
        metric(
            "segments_customers",
            "Customers per segment (contacts per audience) published by the last successful run.",
            &customers,
        );
        let movements: Vec<_> = published
            .movements
            .iter()
            .map(|(movement, n)| (Some(("movement", movement.as_str())), *n as f64))
            .collect();
        if !movements.is_empty() {
            metric(
                "segments_movements",
                "Customers per movement from the previous period, published by the last successful run.",
                &movements,
            );
        }
    }
    out
}

/// Why a push failed (the URL's credentials left out).
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("metrics.pushgateway_url: {0}")]
    Url(String),
    #[error("pushing to {url}: {message}")]
    Http { url: String, message: String },
    #[error("pushing to {url}: the Pushgateway answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
}

/// POST `run` to the job's group under the Pushgateway at `base`.
pub async fn push(base: &str, run: &RunMetrics) -> Result<(), PushError> {
    let url = group_url(base, &run.job).map_err(PushError::Url)?;
    let shown = redact_url(&url);
    let http = |error: reqwest::Error| PushError::Http {
        url: shown.clone(),
        message: crate::model::causes::causes(&error.without_url()).join(": "),
    };
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT / 2)
        .build()
        .map_err(http)?;
    let response = client
        .post(&url)
        .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
        .body(exposition(run))
        .send()
        .await
        .map_err(http)?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    let body: String = body.trim().chars().take(300).collect();
    Err(PushError::Status {
        url: shown,
        status: status.as_u16(),
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(published: Option<Published>) -> RunMetrics {
        RunMetrics {
            job: "rfm_monthly".into(),
            period: Some("2025-11".into()),
            exit_code: if published.is_some() { 0 } else { 3 },
            finished_at: UNIX_EPOCH + Duration::from_secs(1_764_547_200),
            duration: Duration::from_millis(1500),
            published,
        }
    }

    #[test]
    fn a_failed_run_pushes_no_success_timestamp_nor_counts() {
        let text = exposition(&run(None));
        assert!(text.contains("segments_last_run_exit_code{period=\"2025-11\"} 3\n"));
        assert!(
            text.contains("segments_last_run_timestamp_seconds{period=\"2025-11\"} 1764547200\n")
        );
        assert!(text.contains("segments_last_run_duration_seconds{period=\"2025-11\"} 1.5\n"));
        assert!(!text.contains("segments_last_success"));
        assert!(!text.contains("segments_customers"));
    }

    #[test]
    fn a_successful_run_pushes_its_counts() {
        let text = exposition(&run(Some(Published {
            rows_read: 10,
            rows_rejected: 1,
            customers: vec![("champions".into(), 4), ("at \"risk\"".into(), 2)],
            movements: vec![("new".into(), 6)],
        })));
        assert!(
            text.contains(
                "segments_last_success_timestamp_seconds{period=\"2025-11\"} 1764547200\n"
            )
        );
        assert!(text.contains("segments_customers{period=\"2025-11\",segment=\"champions\"} 4\n"));
        assert!(
            text.contains("segments_customers{period=\"2025-11\",segment=\"at \\\"risk\\\"\"} 2\n")
        );
        assert!(text.contains("segments_movements{period=\"2025-11\",movement=\"new\"} 6\n"));
        // One TYPE line per metric name, before its samples.
        assert_eq!(text.matches("# TYPE segments_customers gauge").count(), 1);
    }

    #[test]
    fn the_group_is_the_job_and_urls_lose_their_credentials_in_logs() {
        assert_eq!(
            group_url("http://gw:9091/", "rfm_monthly").unwrap(),
            "http://gw:9091/metrics/job/segments/segments_job/rfm_monthly"
        );
        assert_eq!(
            group_url("https://gw.example/prefix", "my-job.v2").unwrap(),
            "https://gw.example/prefix/metrics/job/segments/segments_job/my_job_v2"
        );
        assert_eq!(
            redact_url("https://user:s3cret@gw.example:9091/p?token=abc"),
            "https://[redacted]@gw.example:9091/p"
        );
        assert!(!redact_url("ht!tp://user:s3cret@").contains("s3cret"));
        assert!(group_url("ftp://gw", "j").is_err());
        let problems = MetricsSettings {
            pushgateway_url: Some("gw:9091".into()),
        }
        .check();
        assert_eq!(problems.len(), 1, "{problems:?}");
    }
}

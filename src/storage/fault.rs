//! A fault-injecting, call-counting wrapper around any `ObjectStore`: fail
//! the Nth call of a kind (optionally only on keys containing a text), delay
//! calls, fail a multipart upload between its parts. It records every call
//! (kind and key), so tests can also show which objects were read.
//!
//! Tests construct it in-process, through [`super::with_store_wrapper`]
//! (and [`super::with_store_wrappers`] for the [`MultipartStore`] side of a
//! store). A test that runs the binary, to kill it at a chosen moment, sets
//! [`FAULTS_ENV`] in its environment (e.g. `delay=60s:complete:1:snapshots/`,
//! see [`Rule::parse`]); nothing else in the binary constructs it.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartId, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result, UploadPart,
};

use super::StorageError;

/// The environment variable holding faults for every store the process
/// opens: rules separated by `;`, each as [`Rule::parse`] reads it. For
/// tests that run the binary; never set it in production.
pub const FAULTS_ENV: &str = "SEGMENTS_TEST_STORAGE_FAULTS";

/// The kinds of store calls, counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallKind {
    Put,
    /// Start of a multipart upload.
    PutMultipart,
    /// One part of a multipart upload.
    Part,
    /// Completion of a multipart upload.
    Complete,
    Abort,
    Get,
    Head,
    Delete,
    List,
    ListWithDelimiter,
    Copy,
}

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The call fails with an error (and does nothing).
    Fail,
    /// The call waits, then proceeds.
    Delay(Duration),
}

/// Fail or delay the `nth` (1-based) call of `kind` whose key contains
/// `key_contains` (all keys when empty).
#[derive(Debug, Clone)]
pub struct Rule {
    pub kind: CallKind,
    pub nth: usize,
    pub key_contains: String,
    pub action: Action,
}

impl Rule {
    pub fn fail(kind: CallKind, nth: usize) -> Self {
        Rule {
            kind,
            nth,
            key_contains: String::new(),
            action: Action::Fail,
        }
    }

    /// Read `<action>:<kind>:<nth>[:<key contains>]`, where the action is
    /// `fail` or `delay=<duration>` (e.g. `delay=60s`) and the kind a
    /// [`CallKind`] in snake case (`put`, `put_multipart`, `part`,
    /// `complete`, `abort`, `get`, `head`, `delete`, `list`, …).
    pub fn parse(text: &str) -> std::result::Result<Rule, String> {
        let mut fields = text.trim().splitn(4, ':');
        let action = match fields.next().unwrap_or("") {
            "fail" => Action::Fail,
            other => match other.strip_prefix("delay=") {
                Some(delay) => Action::Delay(
                    super::settings::parse_duration(delay)
                        .ok_or_else(|| format!("'{delay}' is not a duration (e.g. 30s)"))?,
                ),
                None => {
                    return Err(format!(
                        "'{other}' is not an action: write fail or delay=30s"
                    ));
                }
            },
        };
        let kind = fields.next().unwrap_or("");
        let kind = CallKind::ALL
            .into_iter()
            .find(|k| k.name() == kind)
            .ok_or_else(|| format!("'{kind}' is not a call kind"))?;
        let nth = fields.next().unwrap_or("");
        let nth = nth
            .parse()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("'{nth}' is not a call number (1 is the first)"))?;
        Ok(Rule {
            kind,
            nth,
            key_contains: fields.next().unwrap_or("").to_string(),
            action,
        })
    }
}

impl CallKind {
    pub const ALL: [CallKind; 11] = [
        CallKind::Put,
        CallKind::PutMultipart,
        CallKind::Part,
        CallKind::Complete,
        CallKind::Abort,
        CallKind::Get,
        CallKind::Head,
        CallKind::Delete,
        CallKind::List,
        CallKind::ListWithDelimiter,
        CallKind::Copy,
    ];

    /// The snake-case name [`Rule::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            CallKind::Put => "put",
            CallKind::PutMultipart => "put_multipart",
            CallKind::Part => "part",
            CallKind::Complete => "complete",
            CallKind::Abort => "abort",
            CallKind::Get => "get",
            CallKind::Head => "head",
            CallKind::Delete => "delete",
            CallKind::List => "list",
            CallKind::ListWithDelimiter => "list_with_delimiter",
            CallKind::Copy => "copy",
        }
    }
}

/// The faults of [`FAULTS_ENV`], shared by every store of the process;
/// `None` when it is not set.
pub(super) fn from_env() -> std::result::Result<Option<Arc<Faults>>, StorageError> {
    static FAULTS: std::sync::OnceLock<std::result::Result<Option<Arc<Faults>>, String>> =
        std::sync::OnceLock::new();
    FAULTS
        .get_or_init(|| {
            let Ok(text) = std::env::var(FAULTS_ENV) else {
                return Ok(None);
            };
            let faults = Faults::new();
            for rule in text.split(';').filter(|r| !r.trim().is_empty()) {
                faults.add(Rule::parse(rule)?);
            }
            tracing::warn!(
                faults = %text,
                "{FAULTS_ENV} is set: injecting storage faults (for tests only)."
            );
            Ok(Some(faults))
        })
        .clone()
        .map_err(|reason| StorageError::BadFaults { reason })
}

/// Shared state of the wrappers of one test: rules, counters, call log.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<Rule>>,
    /// Calls seen per (kind, rule index) to match `nth` for each rule.
    matched: Mutex<HashMap<usize, usize>>,
    counts: Mutex<HashMap<CallKind, usize>>,
    log: Mutex<Vec<(CallKind, String)>>,
    injected: Mutex<Vec<(CallKind, String)>>,
}

impl Faults {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn add(&self, rule: Rule) {
        self.rules.lock().unwrap().push(rule);
    }

    /// Number of calls of `kind` so far.
    pub fn count(&self, kind: CallKind) -> usize {
        *self.counts.lock().unwrap().get(&kind).unwrap_or(&0)
    }

    /// Every call so far: kind and key.
    pub fn log(&self) -> Vec<(CallKind, String)> {
        self.log.lock().unwrap().clone()
    }

    /// The faults injected so far: kind and key.
    pub fn injected(&self) -> Vec<(CallKind, String)> {
        self.injected.lock().unwrap().clone()
    }

    /// Forget calls and rules (counters restart at 0).
    pub fn reset(&self) {
        self.rules.lock().unwrap().clear();
        self.matched.lock().unwrap().clear();
        self.counts.lock().unwrap().clear();
        self.log.lock().unwrap().clear();
        self.injected.lock().unwrap().clear();
    }

    /// Wrap a store so its calls go through these faults.
    pub fn wrap(self: &Arc<Self>, inner: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
        Arc::new(FaultStore {
            inner,
            faults: self.clone(),
        })
    }

    /// Wrap the multipart side of a store: `create_multipart` counts as
    /// [`CallKind::PutMultipart`], then `Part`, `Complete` and `Abort`.
    pub fn wrap_multipart(
        self: &Arc<Self>,
        inner: Arc<dyn MultipartStore>,
    ) -> Arc<dyn MultipartStore> {
        Arc::new(FaultMultipart {
            inner,
            faults: self.clone(),
        })
    }

    /// Run `future` with both sides of every store it opens wrapped.
    pub async fn scope<F: std::future::Future>(self: &Arc<Self>, future: F) -> F::Output {
        let (store, multipart) = (self.clone(), self.clone());
        super::with_store_wrappers(
            Arc::new(move |_url, inner| store.wrap(inner)),
            Arc::new(move |_url, inner| multipart.wrap_multipart(inner)),
            future,
        )
        .await
    }

    /// Record a call; the action of the first rule it triggers, if any.
    fn on_call(&self, kind: CallKind, key: &str) -> Option<Action> {
        *self.counts.lock().unwrap().entry(kind).or_default() += 1;
        self.log.lock().unwrap().push((kind, key.to_string()));
        let rules = self.rules.lock().unwrap();
        let mut matched = self.matched.lock().unwrap();
        let mut action = None;
        for (index, rule) in rules.iter().enumerate() {
            if rule.kind == kind && key.contains(&rule.key_contains) {
                let seen = matched.entry(index).or_default();
                *seen += 1;
                if *seen == rule.nth && action.is_none() {
                    action = Some(rule.action);
                }
            }
        }
        if action == Some(Action::Fail) {
            self.injected.lock().unwrap().push((kind, key.to_string()));
        }
        action
    }

    async fn check(&self, kind: CallKind, key: &str) -> Result<()> {
        match self.on_call(kind, key) {
            None => Ok(()),
            Some(Action::Delay(delay)) => {
                tokio::time::sleep(delay).await;
                Ok(())
            }
            Some(Action::Fail) => Err(injected(kind, key)),
        }
    }
}

fn injected(kind: CallKind, key: &str) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultInjection",
        source: format!("injected fault on {kind:?} of {key}").into(),
    }
}

struct FaultStore {
    inner: Arc<dyn ObjectStore>,
    faults: Arc<Faults>,
}

impl fmt::Debug for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The inner store's Debug may print credentials.
        f.write_str("FaultStore")
    }
}

impl fmt::Display for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.faults.check(CallKind::Put, location.as_ref()).await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.faults
            .check(CallKind::PutMultipart, location.as_ref())
            .await?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultUpload {
            inner,
            key: location.to_string(),
            faults: self.faults.clone(),
        }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let kind = if options.head {
            CallKind::Head
        } else {
            CallKind::Get
        };
        self.faults.check(kind, location.as_ref()).await?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.faults.check(CallKind::Get, location.as_ref()).await?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let faults = self.faults.clone();
        let checked = locations
            .then(move |location| {
                let faults = faults.clone();
                async move {
                    let location = location?;
                    faults.check(CallKind::Delete, location.as_ref()).await?;
                    Ok(location)
                }
            })
            .boxed();
        self.inner.delete_stream(checked)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let key = prefix.map(|p| p.to_string()).unwrap_or_default();
        match self.faults.on_call(CallKind::List, &key) {
            Some(Action::Fail) => {
                futures::stream::once(async move { Err(injected(CallKind::List, &key)) }).boxed()
            }
            Some(Action::Delay(delay)) => {
                let inner = self.inner.list(prefix);
                futures::stream::once(tokio::time::sleep(delay))
                    .flat_map(move |_| futures::stream::empty())
                    .chain(inner)
                    .boxed()
            }
            None => self.inner.list(prefix),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let key = prefix.map(|p| p.to_string()).unwrap_or_default();
        self.faults.check(CallKind::ListWithDelimiter, &key).await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.faults.check(CallKind::Copy, to.as_ref()).await?;
        self.inner.copy_opts(from, to, options).await
    }
}

#[derive(Debug)]
struct FaultUpload {
    inner: Box<dyn MultipartUpload>,
    key: String,
    faults: Arc<Faults>,
}

#[async_trait]
impl MultipartUpload for FaultUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        match self.faults.on_call(CallKind::Part, &self.key) {
            Some(Action::Fail) => {
                let error = injected(CallKind::Part, &self.key);
                async move { Err(error) }.boxed()
            }
            Some(Action::Delay(delay)) => {
                let part = self.inner.put_part(data);
                async move {
                    tokio::time::sleep(delay).await;
                    part.await
                }
                .boxed()
            }
            None => self.inner.put_part(data),
        }
    }

    async fn complete(&mut self) -> Result<PutResult> {
        self.faults.check(CallKind::Complete, &self.key).await?;
        self.inner.complete().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.faults.check(CallKind::Abort, &self.key).await?;
        self.inner.abort().await
    }
}

struct FaultMultipart {
    inner: Arc<dyn MultipartStore>,
    faults: Arc<Faults>,
}

#[async_trait]
impl MultipartStore for FaultMultipart {
    async fn create_multipart(&self, path: &Path) -> Result<MultipartId> {
        self.faults
            .check(CallKind::PutMultipart, path.as_ref())
            .await?;
        self.inner.create_multipart(path).await
    }

    async fn put_part(
        &self,
        path: &Path,
        id: &MultipartId,
        part_idx: usize,
        data: PutPayload,
    ) -> Result<PartId> {
        self.faults.check(CallKind::Part, path.as_ref()).await?;
        self.inner.put_part(path, id, part_idx, data).await
    }

    async fn complete_multipart(
        &self,
        path: &Path,
        id: &MultipartId,
        parts: Vec<PartId>,
    ) -> Result<PutResult> {
        self.faults.check(CallKind::Complete, path.as_ref()).await?;
        self.inner.complete_multipart(path, id, parts).await
    }

    async fn abort_multipart(&self, path: &Path, id: &MultipartId) -> Result<()> {
        self.faults.check(CallKind::Abort, path.as_ref()).await?;
        self.inner.abort_multipart(path, id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse() {
        let rule = Rule::parse("delay=60s:complete:1:snapshots/").unwrap();
        assert_eq!(rule.kind, CallKind::Complete);
        assert_eq!(rule.nth, 1);
        assert_eq!(rule.key_contains, "snapshots/");
        assert_eq!(rule.action, Action::Delay(Duration::from_secs(60)));
        let rule = Rule::parse("fail:part:2").unwrap();
        assert_eq!(
            (rule.kind, rule.nth, rule.action),
            (CallKind::Part, 2, Action::Fail)
        );
        assert!(rule.key_contains.is_empty());
        for bad in [
            "",
            "fail",
            "boom:part:1",
            "fail:parts:1",
            "fail:part:0",
            "delay=x:part:1",
        ] {
            assert!(Rule::parse(bad).is_err(), "{bad}");
        }
    }
}

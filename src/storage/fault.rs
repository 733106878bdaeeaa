//! A fault-injecting, call-counting wrapper around any `ObjectStore`: fail
//! the Nth call of a kind (optionally only on keys containing a text), delay
//! calls, fail a multipart upload between its parts. It records every call
//! (kind and key), so tests can also show which objects were read.
//!
//! Only tests construct it, through [`super::with_store_wrapper`]; the
//! binary never does.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result, UploadPart,
};

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

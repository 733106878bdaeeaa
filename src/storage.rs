//! Storage by URL: the one place that turns a configured URL into an
//! `ObjectStore` and a key prefix. The warehouse is written only through
//! [`Warehouse`], which keeps every key under its prefix.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("'{url}' is not a usable storage URL: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("storage error at {location}: {source}")]
    Store {
        location: String,
        #[source]
        source: object_store::Error,
    },
    #[error("refusing key '{key}': it must be a plain relative key under the warehouse")]
    BadKey { key: String },
}

/// A store and the prefix a URL points at inside it.
#[derive(Clone)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    /// `scheme://authority/` — how DataFusion's registry finds the store.
    pub store_url: Url,
    pub prefix: Path,
    pub url: String,
}

impl std::fmt::Debug for Location {
    // Never print a store: cloud builders carry credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Location").field("url", &self.url).finish()
    }
}

/// Open the store behind a URL (absolute, as produced by the config).
pub fn open(url_text: &str) -> Result<Location, StorageError> {
    let bad = |reason: &str| StorageError::BadUrl {
        url: url_text.to_string(),
        reason: reason.to_string(),
    };
    let url = Url::parse(url_text).map_err(|e| bad(&e.to_string()))?;
    match url.scheme() {
        "file" => {
            let path = url.to_file_path().map_err(|_| bad("not a local path"))?;
            let prefix = Path::from_absolute_path(&path).map_err(|e| bad(&e.to_string()))?;
            Ok(Location {
                store: Arc::new(LocalFileSystem::new()),
                store_url: Url::parse("file:///").expect("static URL"),
                prefix,
                url: url_text.to_string(),
            })
        }
        "memory" => Ok(Location {
            store: Arc::new(InMemory::new()),
            store_url: Url::parse("memory:///").expect("static URL"),
            prefix: Path::parse(url.path().trim_matches('/')).map_err(|e| bad(&e.to_string()))?,
            url: url_text.to_string(),
        }),
        other => Err(bad(&format!(
            "the {other}:// scheme is not supported by this build yet; use a local path or file:// URL"
        ))),
    }
}

/// The output root: every key is relative to it and validated.
#[derive(Clone, Debug)]
pub struct Warehouse {
    location: Location,
}

impl Warehouse {
    pub fn open(url: &str) -> Result<Self, StorageError> {
        Ok(Self {
            location: open(url)?,
        })
    }

    pub fn url(&self) -> &str {
        &self.location.url
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

    fn error(&self, key: &Path, source: object_store::Error) -> StorageError {
        StorageError::Store {
            location: format!(
                "{}{}",
                self.location.url,
                key.as_ref()
                    .strip_prefix(self.location.prefix.as_ref())
                    .unwrap_or(key.as_ref())
                    .trim_start_matches('/')
            ),
            source,
        }
    }

    /// Write one object atomically (a reader sees the old or the new bytes).
    pub async fn put(&self, key: &Path, bytes: Bytes) -> Result<(), StorageError> {
        self.location
            .store
            .put(key, PutPayload::from_bytes(bytes))
            .await
            .map(|_| ())
            .map_err(|e| self.error(key, e))
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
        self.location
            .store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(|e| self.error(prefix, e))
    }

    /// Immediate child "folders" of a key.
    pub async fn folders(&self, prefix: &Path) -> Result<Vec<Path>, StorageError> {
        match self.location.store.list_with_delimiter(Some(prefix)).await {
            Ok(listing) => Ok(listing.common_prefixes),
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) => Err(self.error(prefix, e)),
        }
    }
}

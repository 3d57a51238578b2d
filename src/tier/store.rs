//! The object store that tiered files and Iceberg metadata go to, opened from
//! `object-store-url`: one store, one HTTP stack, for both.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig};
use url::Url;

use super::TierError;

/// Requests the store's own client retries before the error reaches the tier worker, which
/// retries with its own backoff: a store that is down shows up as lag within seconds, not
/// minutes.
const CLIENT_RETRIES: usize = 2;
const CLIENT_RETRY_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// An object store rooted at a base URL (`s3://bucket/prefix`, `file:///dir`, …).
#[derive(Debug, Clone)]
pub struct ObjectStorage {
    base: Url,
    store: Arc<dyn ObjectStore>,
    /// The base directory of a local store: its puts are synced to disk before they count.
    local_root: Option<PathBuf>,
}

impl ObjectStorage {
    /// Opens the store. `options` are `object_store` configuration keys (`aws_endpoint`,
    /// `aws_region`, `aws_access_key_id`, `aws_allow_http`, …); for S3 the `AWS_*`
    /// environment variables are read too.
    pub fn open(url: &str, options: &BTreeMap<String, String>) -> Result<Self, TierError> {
        let bad = |reason: String| TierError::Config(format!("object-store-url {url:?}: {reason}"));
        let base = Url::parse(url.trim_end_matches('/')).map_err(|e| bad(e.to_string()))?;
        let mut local_root = None;
        let store: Arc<dyn ObjectStore> = match base.scheme() {
            "file" => {
                let dir = base
                    .to_file_path()
                    .map_err(|_| bad("not an absolute local path".into()))?;
                std::fs::create_dir_all(&dir)
                    .map_err(|e| bad(format!("create {}: {e}", dir.display())))?;
                local_root = Some(dir);
                Arc::new(LocalFileSystem::new())
            }
            "s3" | "s3a" => Arc::new(open_s3(&base, options).map_err(|e| bad(e.to_string()))?),
            _ => {
                let (store, _) = object_store::parse_url_opts(&base, options.iter())
                    .map_err(|e| bad(e.to_string()))?;
                Arc::from(store)
            }
        };
        Ok(Self {
            base,
            store,
            local_root,
        })
    }

    /// The base URL, without a trailing `/`.
    pub fn base_url(&self) -> String {
        self.base.as_str().trim_end_matches('/').to_string()
    }

    /// The full URL of `relative` (a `/`-separated path under the base).
    pub fn url_of(&self, relative: &str) -> String {
        format!("{}/{}", self.base_url(), relative.trim_start_matches('/'))
    }

    /// The store path of a full URL, which must be on this store.
    fn path_of(&self, url: &str) -> Result<Path, TierError> {
        let parsed = Url::parse(url).map_err(|e| TierError::Config(format!("{url:?}: {e}")))?;
        if parsed.scheme() != self.base.scheme() || parsed.host_str() != self.base.host_str() {
            return Err(TierError::Config(format!(
                "{url} is not on the configured object store {}",
                self.base_url()
            )));
        }
        Path::from_url_path(parsed.path()).map_err(|e| TierError::Config(format!("{url:?}: {e}")))
    }

    /// Stores `bytes` at `url`; once it returns, the object survives a crash of this host,
    /// as an S3 put's does.
    pub async fn put(&self, url: &str, bytes: Bytes) -> Result<(), TierError> {
        let path = self.path_of(url)?;
        self.store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|e| TierError::store("put", url, e))?;
        if let Some(root) = &self.local_root {
            sync_local(url, root.clone()).await?;
        }
        Ok(())
    }

    pub async fn get(&self, url: &str) -> Result<Bytes, TierError> {
        let path = self.path_of(url)?;
        let result = self
            .store
            .get(&path)
            .await
            .map_err(|e| TierError::store("get", url, e))?;
        result
            .bytes()
            .await
            .map_err(|e| TierError::store("get", url, e))
    }

    pub async fn get_range(&self, url: &str, range: Range<u64>) -> Result<Bytes, TierError> {
        let path = self.path_of(url)?;
        self.store
            .get_range(&path, range)
            .await
            .map_err(|e| TierError::store("get", url, e))
    }

    /// The object's size, or `None` when there is no such object.
    pub async fn size(&self, url: &str) -> Result<Option<u64>, TierError> {
        let path = self.path_of(url)?;
        match self.store.head(&path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(TierError::store("head", url, e)),
        }
    }

    /// Deletes the objects under the directory `dir_url` whose path below it `doomed` picks,
    /// listing and deleting in pages (bulk deletes where the store has them); returns how
    /// many went. Objects already gone count as deleted.
    pub async fn delete_under(
        &self,
        dir_url: &str,
        doomed: impl Fn(&str) -> bool + Send + 'static,
    ) -> Result<u64, TierError> {
        let dir = self.path_of(dir_url)?;
        let below = format!("{}/", dir.as_ref());
        let picked = (self.store.list(Some(&dir)))
            .try_filter(move |meta| {
                let name = meta
                    .location
                    .as_ref()
                    .strip_prefix(&below)
                    .unwrap_or_default();
                std::future::ready(doomed(name))
            })
            .map_ok(|meta| meta.location)
            .boxed();
        let mut deleted = self.store.delete_stream(picked);
        let mut count = 0;
        while let Some(outcome) = deleted.next().await {
            match outcome {
                Ok(_) => count += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(TierError::store("delete", dir_url, e)),
            }
        }
        Ok(count)
    }

    pub async fn delete(&self, url: &str) -> Result<(), TierError> {
        let path = self.path_of(url)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(TierError::store("delete", url, e)),
        }
    }
}

/// A local store writes through the page cache and renames the file into place, making the
/// directories on its way: the file, and each directory from its own up to the store's
/// root, are synced so that a power loss cannot take an object away after the tier worker
/// reported it (and the WAL may have been trimmed on the strength of that report).
async fn sync_local(url: &str, root: PathBuf) -> Result<(), TierError> {
    let file = (Url::parse(url).ok())
        .and_then(|u| u.to_file_path().ok())
        .ok_or_else(|| TierError::Config(format!("{url:?} is not a local path")))?;
    let failed = |e: std::io::Error| {
        let source = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(e),
        };
        TierError::store("sync", url, source)
    };
    tokio::task::spawn_blocking(move || sync_file_and_dirs(&file, &root))
        .await
        .map_err(|e| failed(std::io::Error::other(e)))?
        .map_err(failed)
}

/// fsyncs `file`, then each directory from its parent up to `root` (inclusive).
fn sync_file_and_dirs(file: &std::path::Path, root: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(file)?.sync_all()?;
    for dir in file.ancestors().skip(1) {
        std::fs::File::open(dir)?.sync_all()?;
        if dir == root || !dir.starts_with(root) {
            break;
        }
    }
    Ok(())
}

fn open_s3(
    base: &Url,
    options: &BTreeMap<String, String>,
) -> object_store::Result<object_store::aws::AmazonS3> {
    let retry = RetryConfig {
        max_retries: CLIENT_RETRIES,
        retry_timeout: CLIENT_RETRY_TIMEOUT,
        ..Default::default()
    };
    let mut builder = AmazonS3Builder::from_env()
        .with_url(base.as_str())
        .with_retry(retry)
        .with_client_options(ClientOptions::new().with_timeout(REQUEST_TIMEOUT));
    for (key, value) in options {
        let key = AmazonS3ConfigKey::from_str(key)?;
        builder = builder.with_config(key, value);
    }
    builder.build()
}

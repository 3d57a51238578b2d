//! Iceberg's file I/O on arka's object store, so that Iceberg metadata and Parquet files go
//! through the same `object_store` client and configuration.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::StreamExt;
use iceberg::io::{
    FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage, StorageConfig,
    StorageFactory,
};
use iceberg::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};

use super::store::ObjectStorage;
use super::TierError;

fn io_error(e: TierError) -> Error {
    Error::new(ErrorKind::Unexpected, e.to_string())
}

/// Builds [`ObjectStoreIo`] for the catalog: every storage it builds is the same one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ObjectStoreIoFactory(ObjectStoreIo);

impl ObjectStoreIoFactory {
    pub fn new(url: &str, options: &BTreeMap<String, String>, storage: ObjectStorage) -> Arc<Self> {
        Arc::new(Self(ObjectStoreIo {
            url: url.to_string(),
            options: options.clone(),
            opened: OnceLock::from(storage),
        }))
    }
}

#[typetag::serde]
impl StorageFactory for ObjectStoreIoFactory {
    fn build(&self, _config: &StorageConfig) -> Result<Arc<dyn Storage>> {
        Ok(Arc::new(self.0.clone()))
    }
}

/// Iceberg `Storage` on an [`ObjectStorage`]. Paths are full URLs on that store.
/// Serializable (Iceberg's requirement): it holds the store's URL and options and opens the
/// store again when deserialized.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObjectStoreIo {
    url: String,
    options: BTreeMap<String, String>,
    #[serde(skip)]
    opened: OnceLock<ObjectStorage>,
}

impl ObjectStoreIo {
    fn storage(&self) -> Result<ObjectStorage> {
        if let Some(storage) = self.opened.get() {
            return Ok(storage.clone());
        }
        let storage = ObjectStorage::open(&self.url, &self.options).map_err(io_error)?;
        Ok(self.opened.get_or_init(|| storage).clone())
    }
}

#[async_trait]
#[typetag::serde]
impl Storage for ObjectStoreIo {
    async fn exists(&self, path: &str) -> Result<bool> {
        Ok(self
            .storage()?
            .size(path)
            .await
            .map_err(io_error)?
            .is_some())
    }

    async fn metadata(&self, path: &str) -> Result<FileMetadata> {
        match self.storage()?.size(path).await.map_err(io_error)? {
            Some(size) => Ok(FileMetadata { size }),
            None => Err(Error::new(
                ErrorKind::Unexpected,
                format!("no such object: {path}"),
            )),
        }
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        self.storage()?.get(path).await.map_err(io_error)
    }

    async fn reader(&self, path: &str) -> Result<Box<dyn FileRead>> {
        Ok(Box::new(ObjectReader {
            storage: self.storage()?,
            path: path.to_string(),
        }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> Result<()> {
        self.storage()?.put(path, bs).await.map_err(io_error)
    }

    async fn writer(&self, path: &str) -> Result<Box<dyn FileWrite>> {
        Ok(Box::new(ObjectWriter {
            storage: self.storage()?,
            path: path.to_string(),
            buf: Some(BytesMut::new()),
        }))
    }

    async fn delete(&self, path: &str) -> Result<()> {
        self.storage()?.delete(path).await.map_err(io_error)
    }

    async fn delete_prefix(&self, path: &str) -> Result<()> {
        Err(Error::new(
            ErrorKind::FeatureUnsupported,
            format!("arka never deletes a prefix of its object store ({path})"),
        ))
    }

    async fn delete_stream(&self, mut paths: BoxStream<'static, String>) -> Result<()> {
        while let Some(path) = paths.next().await {
            self.delete(&path).await?;
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> Result<InputFile> {
        Ok(InputFile::new(Arc::new(self.clone()), path.to_string()))
    }

    fn new_output(&self, path: &str) -> Result<OutputFile> {
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_string()))
    }
}

struct ObjectReader {
    storage: ObjectStorage,
    path: String,
}

#[async_trait]
impl FileRead for ObjectReader {
    async fn read(&self, range: Range<u64>) -> Result<Bytes> {
        self.storage
            .get_range(&self.path, range)
            .await
            .map_err(io_error)
    }
}

/// Buffers the file and puts it as one object on close: Iceberg metadata files are small,
/// and a single put is atomic on every store.
struct ObjectWriter {
    storage: ObjectStorage,
    path: String,
    buf: Option<BytesMut>,
}

#[async_trait]
impl FileWrite for ObjectWriter {
    async fn write(&mut self, bs: Bytes) -> Result<()> {
        match &mut self.buf {
            Some(buf) => {
                buf.extend_from_slice(&bs);
                Ok(())
            }
            None => Err(Error::new(
                ErrorKind::Unexpected,
                format!("write to closed file {}", self.path),
            )),
        }
    }

    async fn close(&mut self) -> Result<()> {
        let Some(buf) = self.buf.take() else {
            return Err(Error::new(
                ErrorKind::Unexpected,
                format!("file {} closed twice", self.path),
            ));
        };
        self.storage
            .put(&self.path, buf.freeze())
            .await
            .map_err(io_error)
    }
}

//! Narrow ports to the outside world beside the core's state store: an object store (S3, or a
//! local directory) and an execution starter (Step Functions, or a recorder in tests).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use treemux_core::atomic_file::{AtomicFile, AtomicFileError};
use treemux_core::media::source::{ByteSource, SourceError, SourceErrorKind};

/// Errors from an object store.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// Missing, or unreadable in the way S3 reports a missing key to a reader without
    /// `s3:ListBucket` (403): either way the upload is gone as far as treemux can tell.
    #[error("s3://{bucket}/{key}: no such object (deleted before it could be read, or not readable by treemux)")]
    NotFound { bucket: String, key: String },
    /// The key no longer holds the version the event announced: it was replaced since.
    #[error("s3://{bucket}/{key}: replaced by a newer upload before it could be read (expected {expected})")]
    Changed {
        bucket: String,
        key: String,
        expected: String,
    },
    /// The store refused the request as made (no such bucket, access denied on a write): a
    /// deployment problem the same request hits again.
    #[error("s3://{bucket}/{key}: refused: {message}")]
    Refused {
        bucket: String,
        key: String,
        message: String,
    },
    /// Anything else (throttling, 5xx, the network): worth retrying.
    #[error("s3://{bucket}/{key}: {message}")]
    Failed {
        bucket: String,
        key: String,
        message: String,
    },
    #[error("{path}: {source}")]
    Local {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Which version of an object a read must get: the one an upload event announced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectVersion {
    /// The S3 version id (versioned buckets): read exactly this version.
    pub version_id: Option<String>,
    /// The ETag (without quotes): read only while the key still holds these bytes.
    pub e_tag: Option<String>,
}

impl ObjectVersion {
    /// The version id, else the ETag, else empty (any version).
    pub fn label(&self) -> &str {
        self.version_id
            .as_deref()
            .or(self.e_tag.as_deref())
            .unwrap_or("")
    }
}

/// What a HEAD of one object version says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectHead {
    /// The object's length in bytes.
    pub size: u64,
    /// Its user metadata: S3's `x-amz-meta-<name>` headers by `<name>`, lowercased.
    pub metadata: BTreeMap<String, String>,
}

/// Objects addressed by bucket and key. Cheap to clone (a client handle, a path): a reader on
/// a blocking thread takes its own ([`ObjectSource`]).
pub trait ObjectStore: Send + Sync + Clone + std::fmt::Debug + 'static {
    /// Downloads `version` of an object to `path` (returns bytes); the file appears only when
    /// complete. [`ObjectError::Changed`] when the key holds other bytes now,
    /// [`ObjectError::NotFound`] when it holds nothing readable.
    fn get_to_path(
        &self,
        bucket: &str,
        key: &str,
        version: &ObjectVersion,
        path: &Path,
    ) -> impl Future<Output = Result<u64, ObjectError>> + Send;

    /// The length and user metadata of `version` of an object (S3: a HEAD); errors as
    /// [`ObjectStore::get_to_path`].
    fn head(
        &self,
        bucket: &str,
        key: &str,
        version: &ObjectVersion,
    ) -> impl Future<Output = Result<ObjectHead, ObjectError>> + Send;

    /// Bytes `offset .. offset + len` of `version` of an object (fewer at its end, none past
    /// it); errors as [`ObjectStore::get_to_path`] (S3: a ranged GET of that version id, or
    /// `If-Match` its ETag).
    fn read_range(
        &self,
        bucket: &str,
        key: &str,
        version: &ObjectVersion,
        offset: u64,
        len: u64,
    ) -> impl Future<Output = Result<Vec<u8>, ObjectError>> + Send;

    /// Uploads the file at `path`; the object appears only when complete (S3 semantics).
    fn put_from_path(
        &self,
        path: &Path,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<(), ObjectError>> + Send;

    /// True when the object exists.
    fn exists(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<bool, ObjectError>> + Send;

    /// Deletes the objects `keys` (in batches, as S3's DeleteObjects takes up to 1,000 a
    /// request); a key that holds nothing is fine.
    fn delete_objects(
        &self,
        bucket: &str,
        keys: &[String],
    ) -> impl Future<Output = Result<(), ObjectError>> + Send;
}

/// Why an execution did not start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// Step Functions could not be reached, asked to slow down, failed on its side, or has too
    /// many executions running: worth retrying.
    #[error("execution {name}: Step Functions is unavailable: {message}")]
    Unavailable { name: String, message: String },
    /// Step Functions refused the request as made (no such state machine, an invalid name, input
    /// or ARN, access denied): the same request fails again.
    #[error("execution {name}: Step Functions refused to start it: {message}")]
    Refused { name: String, message: String },
}

/// Starts a state-machine execution.
pub trait ExecutionStarter: Send + Sync {
    /// Starts execution `name` with `input`. Starting the same name with the same input again
    /// is not an error (Step Functions treats it as the same execution).
    fn start(&self, name: &str, input: &str)
        -> impl Future<Output = Result<(), StartError>> + Send;
}

/// Buckets as directories under a root: `root/bucket/key`. Used for tests and local runs. Keeps
/// one version of each object and no ETags, so it reads whatever the file holds. User metadata
/// is kept beside, as JSON under `root/.metadata/bucket/key` (no bucket is named `.metadata`),
/// and dropped when the object is written again, as a PUT without metadata does on S3.
#[derive(Clone, Debug)]
pub struct LocalDirStore {
    pub root: PathBuf,
}

impl LocalDirStore {
    fn path(&self, bucket: &str, key: &str) -> Result<PathBuf, ObjectError> {
        let escapes = key
            .split('/')
            .any(|segment| segment == ".." || segment == ".")
            || key.starts_with('/');
        if escapes || bucket.contains('/') || bucket.is_empty() {
            return Err(ObjectError::Failed {
                bucket: bucket.into(),
                key: key.into(),
                message: "key not representable as a local path".into(),
            });
        }
        Ok(self.root.join(bucket).join(key))
    }

    fn metadata_path(&self, bucket: &str, key: &str) -> Result<PathBuf, ObjectError> {
        self.path(bucket, key)?;
        Ok(self.root.join(".metadata").join(bucket).join(key))
    }

    /// Sets an object's user metadata (names without `x-amz-meta-`), as an upload with
    /// `x-amz-meta-<name>` headers does.
    pub fn put_metadata(
        &self,
        bucket: &str,
        key: &str,
        metadata: &BTreeMap<String, String>,
    ) -> Result<(), ObjectError> {
        let path = self.metadata_path(bucket, key)?;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(local(parent))?;
        }
        let lowercased: BTreeMap<String, String> = metadata
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
            .collect();
        let json = serde_json::to_vec(&lowercased).expect("a map of strings serializes");
        std::fs::write(&path, json).map_err(local(&path))
    }

    fn metadata(&self, bucket: &str, key: &str) -> Result<BTreeMap<String, String>, ObjectError> {
        let path = self.metadata_path(bucket, key)?;
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| ObjectError::Local {
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, error),
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(error) => Err(local(&path)(error)),
        }
    }
}

/// A local file that could not be written, as the object store's error.
impl From<AtomicFileError> for ObjectError {
    fn from(error: AtomicFileError) -> Self {
        Self::Local {
            path: error.path,
            source: error.source,
        }
    }
}

fn local(path: &Path) -> impl FnOnce(std::io::Error) -> ObjectError + '_ {
    move |source| ObjectError::Local {
        path: path.to_owned(),
        source,
    }
}

/// Copies `from` to `to` through a temporary name beside `to`.
async fn copy_atomically(from: &Path, to: &Path) -> Result<u64, ObjectError> {
    if let Some(parent) = to.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(local(parent))?;
    }
    let partial = AtomicFile::create(to)?;
    let bytes = tokio::fs::copy(from, partial.path())
        .await
        .map_err(local(from))?;
    partial.commit()?;
    Ok(bytes)
}

impl ObjectStore for LocalDirStore {
    async fn get_to_path(
        &self,
        bucket: &str,
        key: &str,
        _version: &ObjectVersion,
        path: &Path,
    ) -> Result<u64, ObjectError> {
        let source = self.path(bucket, key)?;
        if !source.is_file() {
            return Err(ObjectError::NotFound {
                bucket: bucket.into(),
                key: key.into(),
            });
        }
        copy_atomically(&source, path).await
    }

    async fn head(
        &self,
        bucket: &str,
        key: &str,
        _version: &ObjectVersion,
    ) -> Result<ObjectHead, ObjectError> {
        let path = self.path(bucket, key)?;
        match std::fs::metadata(&path) {
            Ok(metadata) if metadata.is_file() => Ok(ObjectHead {
                size: metadata.len(),
                metadata: self.metadata(bucket, key)?,
            }),
            Ok(_) => Err(ObjectError::NotFound {
                bucket: bucket.into(),
                key: key.into(),
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Err(ObjectError::NotFound {
                    bucket: bucket.into(),
                    key: key.into(),
                })
            }
            Err(error) => Err(local(&path)(error)),
        }
    }

    async fn read_range(
        &self,
        bucket: &str,
        key: &str,
        _version: &ObjectVersion,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, ObjectError> {
        use std::os::unix::fs::FileExt as _;
        let path = self.path(bucket, key)?;
        let file = std::fs::File::open(&path).map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => ObjectError::NotFound {
                bucket: bucket.into(),
                key: key.into(),
            },
            _ => local(&path)(error),
        })?;
        let size = file.metadata().map_err(local(&path))?.len();
        let mut bytes = vec![0u8; len.min(size.saturating_sub(offset)) as usize];
        file.read_exact_at(&mut bytes, offset)
            .map_err(local(&path))?;
        Ok(bytes)
    }

    async fn put_from_path(&self, path: &Path, bucket: &str, key: &str) -> Result<(), ObjectError> {
        copy_atomically(path, &self.path(bucket, key)?).await?;
        let metadata = self.metadata_path(bucket, key)?;
        match std::fs::remove_file(&metadata) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                Err(local(&metadata)(error))
            }
            _ => Ok(()),
        }
    }

    async fn exists(&self, bucket: &str, key: &str) -> Result<bool, ObjectError> {
        Ok(self.path(bucket, key)?.is_file())
    }

    async fn delete_objects(&self, bucket: &str, keys: &[String]) -> Result<(), ObjectError> {
        for key in keys {
            let path = self.path(bucket, key)?;
            match tokio::fs::remove_file(&path).await {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(local(&path)(error))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Records started executions instead of starting them (tests).
#[derive(Debug, Default)]
pub struct RecordingStarter {
    pub started: Mutex<Vec<(String, String)>>,
}

impl ExecutionStarter for RecordingStarter {
    async fn start(&self, name: &str, input: &str) -> Result<(), StartError> {
        let mut started = self
            .started
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !started.iter().any(|(existing, _)| existing == name) {
            started.push((name.to_owned(), input.to_owned()));
        }
        Ok(())
    }
}

/// One version of an object as the core's [`ByteSource`]: each read is a ranged read of that
/// version (S3: a ranged GET with its version id or ETag). The media code blocks, so it runs
/// on a blocking thread (`spawn_blocking`) and each read waits on the async store through
/// `runtime`.
#[derive(Debug)]
pub struct ObjectSource<O> {
    pub store: O,
    pub bucket: String,
    pub key: String,
    pub version: ObjectVersion,
    /// The object's length in bytes ([`ObjectHead::size`]).
    pub size: u64,
    pub runtime: tokio::runtime::Handle,
}

impl<O> ByteSource for ObjectSource<O>
where
    O: ObjectStore + std::fmt::Debug + 'static,
{
    fn size_bytes(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, SourceError> {
        if offset >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let read = self.store.read_range(
            &self.bucket,
            &self.key,
            &self.version,
            offset,
            buf.len() as u64,
        );
        let bytes = self.runtime.block_on(read).map_err(|error| SourceError {
            kind: match error {
                ObjectError::Changed { .. } => SourceErrorKind::Changed,
                ObjectError::NotFound { .. } => SourceErrorKind::Gone,
                _ => SourceErrorKind::Unavailable,
            },
            message: error.to_string(),
        })?;
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        Ok(n)
    }
}

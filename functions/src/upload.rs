//! The output, streamed once into a multipart upload: the port (create, upload a part,
//! complete, abort), its local-directory implementation, and [`PartWriter`], the seekable
//! stream FFmpeg's muxer writes into.
//!
//! The muxer writes the MP4 front to back and, at the trailer, seeks back into its header region
//! only (the index reserved after `ftyp`, the `mdat` size). So part 1, which holds that region,
//! is held back in memory until the trailer is written; every later part goes up as soon as it
//! is full and is never touched again. Parts are numbered from 1 in output order, so a retried
//! root uploads the same numbers again (a part replaces itself) and completes with the ETags of
//! its own uploads, the last recorded.

use crate::ports::{LocalDirStore, ObjectError};
use std::future::Future;
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use treemux_core::output_plan::PartPlan;

/// Multipart uploads (S3 semantics: parts 5 MiB–5 GiB but the last, at most 10,000, uploaded in
/// any order; the object appears only when the upload completes).
pub trait MultipartStore: Send + Sync {
    /// Starts an upload of `bucket/key`; returns its id.
    fn create_upload(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<String, ObjectError>> + Send;

    /// Uploads part `number` (from 1); returns its ETag. Uploading a number again replaces it.
    /// [`ObjectError::NotFound`] when the upload no longer exists (completed or aborted).
    fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: i32,
        bytes: Vec<u8>,
    ) -> impl Future<Output = Result<String, ObjectError>> + Send;

    /// Makes the object of `parts` (number, ETag), in number order.
    fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> impl Future<Output = Result<(), ObjectError>> + Send;

    /// Discards the upload and its parts; an upload that is gone already is not an error.
    fn abort_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> impl Future<Output = Result<(), ObjectError>> + Send;
}

/// What [`PartWriter`] has written, shared with whoever completes the upload.
#[derive(Debug, Default)]
pub struct Parts {
    /// Part 1: the first bytes of the output, held back until the end.
    pub head: Vec<u8>,
    /// Bytes after part 1 not uploaded yet; they start at `tail_start`.
    pub tail: Vec<u8>,
    pub tail_start: u64,
    /// Parts uploaded so far (number, ETag), from 2 on.
    pub uploaded: Vec<(i32, String)>,
    /// The output's length so far.
    pub len: u64,
    /// Where part 1 ends, fixed when the first byte after it is written.
    pub head_limit: Option<u64>,
}

/// The seekable stream the muxer writes into: part 1 in memory, later parts uploaded as they
/// fill. Runs on a blocking thread; uploads go through `runtime`.
#[derive(Debug)]
pub struct PartWriter<M: MultipartStore + 'static> {
    pub store: Arc<M>,
    pub runtime: tokio::runtime::Handle,
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
    pub plan: PartPlan,
    pub parts: Arc<Mutex<Parts>>,
    position: u64,
    /// The furthest position sought to: the header region (the reserved index) ends there, and
    /// part 1 must hold it.
    furthest_seek: u64,
}

impl<M: MultipartStore + 'static> PartWriter<M> {
    pub fn new(
        store: Arc<M>,
        runtime: tokio::runtime::Handle,
        bucket: &str,
        key: &str,
        upload_id: &str,
        plan: PartPlan,
    ) -> Self {
        Self {
            store,
            runtime,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            upload_id: upload_id.to_owned(),
            plan,
            parts: Arc::new(Mutex::new(Parts::default())),
            position: 0,
            furthest_seek: 0,
        }
    }

    fn upload(&self, number: i32, bytes: Vec<u8>) -> std::io::Result<String> {
        self.runtime
            .block_on(self.store.upload_part(
                &self.bucket,
                &self.key,
                &self.upload_id,
                number,
                bytes,
            ))
            .map_err(std::io::Error::other)
    }
}

/// Writes `bytes` at `offset` into `buffer`, growing it (with zeros) as needed.
fn write_at(buffer: &mut Vec<u8>, offset: usize, bytes: &[u8]) {
    if buffer.len() < offset + bytes.len() {
        buffer.resize(offset + bytes.len(), 0);
    }
    buffer[offset..offset + bytes.len()].copy_from_slice(bytes);
}

impl<M: MultipartStore + 'static> Write for PartWriter<M> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        const MIB: u64 = 1024 * 1024;
        let shared = self.parts.clone();
        let mut parts = shared.lock().unwrap_or_else(|p| p.into_inner());
        let head_limit = match parts.head_limit {
            Some(limit) => limit,
            None => {
                let limit = self
                    .plan
                    .first_part_bytes
                    .max(self.furthest_seek.div_ceil(MIB) * MIB + MIB);
                if self.position + bytes.len() as u64 > limit {
                    parts.head_limit = Some(limit);
                    parts.tail_start = limit;
                }
                limit
            }
        };
        let end = self.position + bytes.len() as u64;
        // The part of `bytes` inside part 1.
        let in_head = head_limit
            .saturating_sub(self.position)
            .min(bytes.len() as u64) as usize;
        if in_head > 0 {
            write_at(&mut parts.head, self.position as usize, &bytes[..in_head]);
        }
        if in_head < bytes.len() {
            let offset = self.position.max(head_limit);
            if offset < parts.tail_start {
                return Err(std::io::Error::other(format!(
                    "the muxer rewrote byte {offset}, already uploaded"
                )));
            }
            let relative = (offset - parts.tail_start) as usize;
            write_at(&mut parts.tail, relative, &bytes[in_head..]);
            // Whole parts go up once the writer is past them (a seek back into the unsent
            // tail stays possible until then).
            while parts.tail.len() as u64 >= self.plan.part_bytes
                && end >= parts.tail_start + self.plan.part_bytes
            {
                let rest = parts.tail.split_off(self.plan.part_bytes as usize);
                let full = std::mem::replace(&mut parts.tail, rest);
                let number = parts.uploaded.len() as i32 + 2;
                drop(parts);
                let e_tag = self.upload(number, full)?;
                parts = shared.lock().unwrap_or_else(|p| p.into_inner());
                parts.uploaded.push((number, e_tag));
                parts.tail_start += self.plan.part_bytes;
            }
        }
        self.position = end;
        parts.len = parts.len.max(end);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<M: MultipartStore + 'static> Seek for PartWriter<M> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let len = self.parts.lock().unwrap_or_else(|p| p.into_inner()).len;
        let target = match to {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
            SeekFrom::End(delta) => len.checked_add_signed(delta),
        }
        .ok_or_else(|| std::io::Error::other("seek before the start"))?;
        self.position = target;
        self.furthest_seek = self.furthest_seek.max(target);
        Ok(target)
    }
}

/// Uploads what `parts` still holds (part 1 and the last part) and completes the upload.
/// Returns the output's length.
pub async fn complete<M: MultipartStore>(
    store: &M,
    bucket: &str,
    key: &str,
    upload_id: &str,
    parts: Parts,
) -> Result<u64, ObjectError> {
    let Parts {
        head,
        tail,
        mut uploaded,
        len,
        ..
    } = parts;
    let first = store.upload_part(bucket, key, upload_id, 1, head).await?;
    uploaded.push((1, first));
    if !tail.is_empty() {
        let number = uploaded.len() as i32 + 1;
        let last = store
            .upload_part(bucket, key, upload_id, number, tail)
            .await?;
        uploaded.push((number, last));
    }
    uploaded.sort_by_key(|(number, _)| *number);
    store
        .complete_upload(bucket, key, upload_id, &uploaded)
        .await?;
    Ok(len)
}

impl LocalDirStore {
    fn upload_dir(&self, upload_id: &str) -> Result<PathBuf, ObjectError> {
        if upload_id.is_empty() || !upload_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ObjectError::Failed {
                bucket: String::new(),
                key: String::new(),
                message: format!("upload id {upload_id:?} is not one this store made"),
            });
        }
        Ok(self.root.join(".uploads").join(upload_id))
    }
}

fn local(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ObjectError + '_ {
    move |source| ObjectError::Local {
        path: path.to_owned(),
        source,
    }
}

/// Uploads as directories of part files under `root/.uploads/<id>`; completing concatenates
/// them into the object (renamed into place).
impl MultipartStore for LocalDirStore {
    async fn create_upload(&self, _bucket: &str, _key: &str) -> Result<String, ObjectError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let id = format!("{nanos:x}{:x}", std::process::id());
        let dir = self.upload_dir(&id)?;
        tokio::fs::create_dir_all(&dir).await.map_err(local(&dir))?;
        Ok(id)
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: i32,
        bytes: Vec<u8>,
    ) -> Result<String, ObjectError> {
        let dir = self.upload_dir(upload_id)?;
        if !dir.is_dir() {
            return Err(ObjectError::NotFound {
                bucket: bucket.into(),
                key: key.into(),
            });
        }
        let e_tag = format!("{:016x}", treemux_core::join::fnv1a(&bytes));
        let path = dir.join(format!("part-{number:05}"));
        tokio::fs::write(&path, bytes).await.map_err(local(&path))?;
        Ok(e_tag)
    }

    async fn complete_upload(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> Result<(), ObjectError> {
        let dir = self.upload_dir(upload_id)?;
        if !dir.is_dir() {
            return Err(ObjectError::NotFound {
                bucket: bucket.into(),
                key: key.into(),
            });
        }
        let target = self.root.join(bucket).join(key);
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(local(parent))?;
        }
        let partial = treemux_core::atomic_file::AtomicFile::create(&target)?;
        let mut whole = Vec::new();
        for (number, e_tag) in parts {
            let path = dir.join(format!("part-{number:05}"));
            let bytes = tokio::fs::read(&path).await.map_err(local(&path))?;
            if format!("{:016x}", treemux_core::join::fnv1a(&bytes)) != *e_tag {
                return Err(ObjectError::Failed {
                    bucket: bucket.into(),
                    key: key.into(),
                    message: format!("part {number}: ETag {e_tag} is not the part's"),
                });
            }
            whole.extend_from_slice(&bytes);
        }
        tokio::fs::write(partial.path(), whole)
            .await
            .map_err(local(&target))?;
        partial.commit()?;
        tokio::fs::remove_dir_all(&dir).await.map_err(local(&dir))
    }

    async fn abort_upload(
        &self,
        _bucket: &str,
        _key: &str,
        upload_id: &str,
    ) -> Result<(), ObjectError> {
        let dir = self.upload_dir(upload_id)?;
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(local(&dir)(error)),
        }
    }
}

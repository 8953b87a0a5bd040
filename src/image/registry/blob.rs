//! Streaming a blob into the store: written, hashed and fsynced on a blocking thread, its
//! size capped at what the manifest declares.

use std::sync::atomic::Ordering;

use futures_util::StreamExt;
use oci_client::manifest::OciDescriptor;
use oci_client::Reference;

use super::super::store::{BlobWriter, Blobs};
use super::super::ImageError;
use super::{chain, Progress, Session};

impl Session {
    /// Streams the blob `desc` into the store unless it is already there; returns bytes fetched.
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        desc: &OciDescriptor,
        blobs: &Blobs,
        progress: &Progress,
    ) -> Result<u64, ImageError> {
        if blobs.contains(&desc.digest) {
            progress.blobs_done.fetch_add(1, Ordering::Relaxed);
            progress
                .bytes_done
                .fetch_add(u64::try_from(desc.size).unwrap_or(0), Ordering::Relaxed);
            return Ok(0);
        }
        let err = |message: String| ImageError::Pull {
            reference: reference.whole(),
            message: format!("blob {}: {message}", desc.digest),
        };
        let writer = blobs.writer(&desc.digest).map_err(|e| match e {
            ImageError::Digest { .. } => err(format!("{e}")),
            other => other,
        })?;
        let mut stream = self
            .client
            .pull_blob_stream(reference, desc)
            .await
            .map_err(|e| err(chain(&e)))?;
        let limit = u64::try_from(desc.size).unwrap_or(0);

        // The file is written, hashed and fsynced on a blocking thread fed through a small channel.
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let sink = tokio::task::spawn_blocking(move || write_chunks(rx, writer));
        let mut total = 0u64;
        let mut failure = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => {
                    total += chunk.len() as u64;
                    progress
                        .bytes_done
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    if total > limit {
                        failure = Some(format!(
                            "registry sent more than the {limit} bytes declared"
                        ));
                        break;
                    }
                    if tx.send(Some(chunk)).await.is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Err(e) => {
                    failure = Some(format!("download: {e}"));
                    break;
                }
            }
        }
        if failure.is_none() {
            let _ = tx.send(None).await; // None = complete: verify and rename
        }
        drop(tx); // closed without None = abort: the temp file is removed
        let written = sink.await.map_err(|e| err(format!("writer task: {e}")))?;
        if let Some(message) = failure {
            return Err(err(message));
        }
        match written {
            Ok(Some(_)) => {
                progress.blobs_done.fetch_add(1, Ordering::Relaxed);
                Ok(total)
            }
            Ok(None) => Err(err("download ended early".into())),
            Err(ImageError::Digest { expected, actual }) => Err(err(format!(
                "digest mismatch: expected {expected}, got {actual}"
            ))),
            Err(e) => Err(e),
        }
    }
}

/// Writes chunks until `None` (then finishes the blob) or until the channel closes (abort).
fn write_chunks<B: AsRef<[u8]>>(
    mut rx: tokio::sync::mpsc::Receiver<Option<B>>,
    mut writer: BlobWriter,
) -> Result<Option<std::path::PathBuf>, ImageError> {
    use std::io::Write;
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            Some(chunk) => writer
                .write_all(chunk.as_ref())
                .map_err(|source| ImageError::Io {
                    path: writer.tmp_path().to_path_buf(),
                    source,
                })?,
            None => return writer.finish().map(Some),
        }
    }
    Ok(None)
}

//! [`ObjectSink`] on a local folder: key `a/b/c.json.gz` is the file `<root>/a/b/c.json.gz`.
//!
//! Writes are atomic: the body goes to a temporary file in the same folder, which is synced
//! and then renamed over the key, so a reader never sees a partial object. The metadata
//! (content type and encoding) is not stored: the file name says it.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{ObjectMeta, ObjectSink, SinkError};

/// Prefix of the temporary files of unfinished writes (never listed, refused as keys).
const TEMP_PREFIX: &str = ".o365-tmp-";

/// The sink on a local folder.
#[derive(Debug, Clone)]
pub struct FolderSink {
    root: PathBuf,
}

impl FolderSink {
    /// A sink writing under `root` (created on the first write).
    pub fn new(root: PathBuf) -> FolderSink {
        FolderSink { root }
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of `key`.
    ///
    /// # Errors
    /// [`SinkError`] for a key that would leave the root: absolute, with `..`, `.` or empty
    /// segments, backslashes or NUL.
    pub fn path_of(&self, key: &str) -> Result<PathBuf, SinkError> {
        let refuse = |why: &str| SinkError {
            key: key.to_owned(),
            message: format!("invalid object key: {why}"),
            retryable: false,
        };
        if key.is_empty() {
            return Err(refuse("it is empty"));
        }
        if key.starts_with('/') {
            return Err(refuse("it is absolute (starts with /)"));
        }
        if key.contains('\\') || key.contains('\0') {
            return Err(refuse("it contains a backslash or NUL"));
        }
        let mut path = self.root.clone();
        for segment in key.split('/') {
            match segment {
                "" => return Err(refuse("it has an empty segment (// or a trailing /)")),
                "." | ".." => return Err(refuse("it has a . or .. segment")),
                s if s.starts_with(TEMP_PREFIX) => {
                    return Err(refuse("it uses the temporary-file prefix"));
                }
                s => path.push(s),
            }
        }
        Ok(path)
    }
}

impl FolderSink {
    /// The temporary file of an unfinished upload of `key`.
    fn upload_path(&self, key: &str, upload_id: &str) -> Result<PathBuf, SinkError> {
        let path = self.path_of(key)?;
        let valid = upload_id
            .strip_prefix(TEMP_PREFIX)
            .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_hexdigit()));
        if !valid {
            return Err(SinkError {
                key: key.to_owned(),
                message: format!("`{upload_id}` is not an upload id of this sink"),
                retryable: false,
            });
        }
        Ok(path.parent().unwrap_or(Path::new(".")).join(upload_id))
    }
}

fn io_error(key: &str, what: &str, path: &Path, e: &std::io::Error) -> SinkError {
    SinkError {
        key: key.to_owned(),
        message: format!("{what} {}: {e}", path.display()),
        retryable: matches!(
            e.kind(),
            ErrorKind::Interrupted | ErrorKind::WouldBlock | ErrorKind::TimedOut
        ),
    }
}

fn join_error(key: &str, e: tokio::task::JoinError) -> SinkError {
    SinkError {
        key: key.to_owned(),
        message: format!("the file task failed: {e}"),
        retryable: true,
    }
}

/// Writes `body` to `path` atomically (temporary file in the same folder, fsync, rename).
fn write_atomic(key: &str, path: &Path, body: &[u8]) -> Result<(), SinkError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io_error(key, "cannot create folder", dir, &e))?;
    let tmp = dir.join(format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4().simple()));
    let written = (|| {
        let mut f = std::fs::File::create_new(&tmp)?;
        f.write_all(body)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_error(key, "cannot write", &tmp, &e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io_error(key, "cannot rename into", path, &e));
    }
    // Make the rename itself durable; not every platform can sync a folder.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Adds the files under `dir` (whose key prefix is `base`) that start with `prefix`.
fn walk(dir: &Path, base: &str, prefix: &str, out: &mut Vec<String>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue; // not a key this sink wrote
        };
        if name.starts_with(TEMP_PREFIX) {
            continue;
        }
        let key = format!("{base}{name}");
        let kind = entry.file_type()?;
        if kind.is_dir() {
            let sub = format!("{key}/");
            // Descend only where keys can still match the prefix.
            if sub.starts_with(prefix) || prefix.starts_with(&sub) {
                walk(&entry.path(), &sub, prefix, out)?;
            }
        } else if kind.is_file() && key.starts_with(prefix) {
            out.push(key);
        }
    }
    Ok(())
}

impl ObjectSink for FolderSink {
    async fn put(&self, key: &str, body: Bytes, _meta: &ObjectMeta) -> Result<(), SinkError> {
        let path = self.path_of(key)?;
        let owned = key.to_owned();
        tokio::task::spawn_blocking(move || write_atomic(&owned, &path, &body))
            .await
            .map_err(|e| join_error(key, e))?
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, SinkError> {
        let path = self.path_of(key)?;
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(Some(Bytes::from(b))),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(key, "cannot read", &path, &e)),
        }
    }

    fn supports_parts(&self) -> bool {
        true
    }

    /// Parts go to a temporary file beside the key, renamed over it on completion.
    async fn create_upload(&self, key: &str, _meta: &ObjectMeta) -> Result<String, SinkError> {
        let path = self.path_of(key)?;
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let id = format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4().simple());
        let tmp = dir.join(&id);
        let owned = key.to_owned();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)
                .map_err(|e| io_error(&owned, "cannot create folder", &dir, &e))?;
            std::fs::File::create_new(&tmp)
                .map(drop)
                .map_err(|e| io_error(&owned, "cannot create", &tmp, &e))
        })
        .await
        .map_err(|e| join_error(key, e))??;
        Ok(id)
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<String, SinkError> {
        let tmp = self.upload_path(key, upload_id)?;
        let owned = key.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&tmp)
                .map_err(|e| io_error(&owned, "cannot open", &tmp, &e))?;
            f.write_all(&body)
                .map_err(|e| io_error(&owned, "cannot write", &tmp, &e))
        })
        .await
        .map_err(|e| join_error(key, e))??;
        Ok(number.to_string())
    }

    async fn complete_upload(
        &self,
        key: &str,
        upload_id: &str,
        _parts: &[(i32, String)],
    ) -> Result<(), SinkError> {
        let tmp = self.upload_path(key, upload_id)?;
        let path = self.path_of(key)?;
        let owned = key.to_owned();
        tokio::task::spawn_blocking(move || {
            let synced = std::fs::File::open(&tmp).and_then(|f| f.sync_all());
            synced.map_err(|e| io_error(&owned, "cannot sync", &tmp, &e))?;
            std::fs::rename(&tmp, &path)
                .map_err(|e| io_error(&owned, "cannot rename into", &path, &e))?;
            if let Some(d) = path.parent().and_then(|d| std::fs::File::open(d).ok()) {
                let _ = d.sync_all();
            }
            Ok(())
        })
        .await
        .map_err(|e| join_error(key, e))?
    }

    async fn abort_upload(&self, key: &str, upload_id: &str) {
        if let Ok(tmp) = self.upload_path(key, upload_id) {
            let _ = tokio::fs::remove_file(tmp).await;
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, SinkError> {
        let root = self.root.clone();
        let owned = prefix.to_owned();
        let listed = tokio::task::spawn_blocking(move || {
            let mut keys = Vec::new();
            walk(&root, "", &owned, &mut keys).map(|()| keys)
        })
        .await
        .map_err(|e| join_error(prefix, e))?;
        let mut keys = listed.map_err(|e| io_error(prefix, "cannot list", &self.root, &e))?;
        keys.sort();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: ObjectMeta = ObjectMeta {
        content_type: "application/x-ndjson",
        content_encoding: Some("gzip"),
    };

    fn temp_root() -> PathBuf {
        std::env::temp_dir().join(format!("o365-folder-{}", uuid::Uuid::new_v4()))
    }

    #[tokio::test]
    async fn put_get_overwrite_and_list() {
        let root = temp_root();
        let sink = FolderSink::new(root.clone());
        assert_eq!(sink.get("t/a.json.gz").await.unwrap(), None);
        assert!(
            sink.list("").await.unwrap().is_empty(),
            "a missing root lists nothing"
        );

        let body = Bytes::from_static(b"\x1f\x8b\x08\x00binary\xff\x00");
        sink.put("t/Audit.Exchange/2026/11/22/a.json.gz", body.clone(), &META)
            .await
            .unwrap();
        sink.put("t/Audit.General/b.json.gz", Bytes::from_static(b"b"), &META)
            .await
            .unwrap();
        sink.put("u/c.json.gz", Bytes::from_static(b"c"), &META)
            .await
            .unwrap();
        assert_eq!(
            sink.get("t/Audit.Exchange/2026/11/22/a.json.gz")
                .await
                .unwrap(),
            Some(body)
        );

        sink.put("u/c.json.gz", Bytes::from_static(b"c2"), &META)
            .await
            .unwrap();
        assert_eq!(
            sink.get("u/c.json.gz").await.unwrap(),
            Some(Bytes::from_static(b"c2"))
        );

        assert_eq!(
            sink.list("").await.unwrap(),
            [
                "t/Audit.Exchange/2026/11/22/a.json.gz",
                "t/Audit.General/b.json.gz",
                "u/c.json.gz"
            ]
        );
        assert_eq!(
            sink.list("t/Audit.Ex").await.unwrap(),
            ["t/Audit.Exchange/2026/11/22/a.json.gz"]
        );
        assert_eq!(sink.list("u/").await.unwrap(), ["u/c.json.gz"]);
        assert!(sink.list("v").await.unwrap().is_empty());

        // No temporary file is left behind.
        let leftovers: Vec<_> = std::fs::read_dir(root.join("u"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["c.json.gz"]);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn objects_written_in_parts_appear_whole_only_when_finished() {
        use crate::sink::ObjectWriter;
        let root = temp_root();
        let sink = FolderSink::new(root.clone());
        let data: Vec<u8> = (0..10_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let mut w = ObjectWriter::with_part_size(&sink, "p/big.bin".into(), META, 4096);
        for chunk in data.chunks(1000) {
            w.write(chunk).await.unwrap();
            assert!(w.buffered() < 4096 + 1000, "memory stays bounded");
        }
        assert_eq!(
            sink.get("p/big.bin").await.unwrap(),
            None,
            "invisible until finished"
        );
        assert_eq!(w.finish().await.unwrap(), data.len() as u64);
        assert_eq!(
            sink.get("p/big.bin").await.unwrap(),
            Some(Bytes::from(data.clone()))
        );

        // Small objects are one put; an aborted upload leaves nothing behind.
        let mut w = ObjectWriter::with_part_size(&sink, "p/small.bin".into(), META, 4096);
        w.write(b"tiny").await.unwrap();
        w.finish().await.unwrap();
        assert_eq!(
            sink.get("p/small.bin").await.unwrap(),
            Some(Bytes::from_static(b"tiny"))
        );
        let mut w = ObjectWriter::with_part_size(&sink, "p/gone.bin".into(), META, 10);
        w.write(&data[..100]).await.unwrap();
        w.abort().await;
        assert_eq!(sink.list("p/").await.unwrap(), ["p/big.bin", "p/small.bin"]);
        let files = std::fs::read_dir(root.join("p")).unwrap().count();
        assert_eq!(files, 2, "no temporary file left");
        assert!(
            sink.upload_part("p/x", "../../etc", 1, Bytes::new())
                .await
                .is_err()
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[tokio::test]
    async fn keys_that_leave_the_root_are_refused() {
        let root = temp_root();
        let sink = FolderSink::new(root.clone());
        for key in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            "a\\b",
            ".o365-tmp-x",
        ] {
            let err = sink
                .put(key, Bytes::from_static(b"x"), &META)
                .await
                .unwrap_err();
            assert!(!err.retryable, "{key}");
            assert!(err.to_string().contains("invalid object key"), "{err}");
            assert!(sink.get(key).await.is_err(), "{key}");
        }
        assert!(!root.exists(), "nothing was written");
    }
}

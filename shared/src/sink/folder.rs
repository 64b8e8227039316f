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

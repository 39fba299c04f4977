//! Deterministic payload builder: the same inputs always give the same bytes.
//!
//! Determinism comes from fixing everything `tar` and `gzip` would otherwise
//! take from the environment: entry order, mtime (the version's creation
//! time), owner (0/0, no names), modes, and the gzip header (no name, mtime 0).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use flate2::{Compression, GzBuilder};

use crate::MANIFEST_NAME;
use crate::checksum::Sha256Digest;
use crate::manifest::{
    EnvKey, Interpreter, MAX_MANIFEST_BYTES, Manifest, ManifestError, Metadata, check_env_value,
};

/// Largest script a payload may carry; well under what extraction accepts.
pub const MAX_SCRIPT_BYTES: usize = 16 * 1024 * 1024;

/// Everything a payload is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadSpec {
    pub interpreter: Interpreter,
    pub script: Vec<u8>,
    pub environment: BTreeMap<EnvKey, String>,
    pub event_id: String,
    pub event_version: u64,
    pub created_at: DateTime<Utc>,
}

/// A built payload, in memory, with its digest.
#[derive(Debug, Clone)]
pub struct BuiltPayload {
    pub bytes: Vec<u8>,
    pub digest: Sha256Digest,
}

impl PayloadSpec {
    pub fn manifest(&self) -> Manifest {
        Manifest {
            interpreter: self.interpreter,
            environment: self.environment.clone(),
            metadata: Metadata {
                event_id: Some(self.event_id.clone()),
                event_version: Some(self.event_version),
                created_at: Some(self.created_at),
            },
        }
    }

    /// Builds the archive, refusing inputs the reader would refuse, so every
    /// payload this returns can be unpacked by [`crate::extract`].
    pub fn build(&self) -> Result<BuiltPayload, ManifestError> {
        self.validate()?;
        let manifest = self.manifest().to_yaml();
        if manifest.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::Invalid {
                field: "environment".into(),
                reason: format!("the manifest would exceed {MAX_MANIFEST_BYTES} bytes"),
            });
        }
        let mtime = self.created_at.timestamp().max(0) as u64;
        let gz = GzBuilder::new().mtime(0).write(
            Vec::with_capacity(self.script.len() / 2 + 1024),
            Compression::default(),
        );
        let mut tar = tar::Builder::new(gz);
        append(&mut tar, MANIFEST_NAME, manifest.as_bytes(), 0o644, mtime);
        append(
            &mut tar,
            self.interpreter.entrypoint(),
            &self.script,
            0o755,
            mtime,
        );
        // Writing into a Vec cannot fail.
        let bytes = tar
            .into_inner()
            .and_then(|gz| gz.finish())
            .expect("in-memory archive");
        let digest = Sha256Digest::of(&bytes);
        Ok(BuiltPayload { bytes, digest })
    }

    fn validate(&self) -> Result<(), ManifestError> {
        let invalid = |field: String, reason: String| ManifestError::Invalid { field, reason };
        if self.script.len() > MAX_SCRIPT_BYTES {
            return Err(invalid(
                "script".into(),
                format!(
                    "{} bytes is more than the {MAX_SCRIPT_BYTES}-byte limit",
                    self.script.len()
                ),
            ));
        }
        if self.event_version == 0 {
            return Err(invalid(
                "metadata.eventVersion".into(),
                "must be at least 1".into(),
            ));
        }
        for (key, value) in &self.environment {
            check_env_value(value).map_err(|r| invalid(format!("environment.{key}"), r))?;
        }
        Ok(())
    }
}

fn append<W: Write>(tar: &mut tar::Builder<W>, name: &str, data: &[u8], mode: u32, mtime: u64) {
    let mut header = tar::Header::new_ustar();
    header.set_path(name).expect("fixed entry names are valid");
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    tar.append(&header, data).expect("in-memory archive");
}

impl BuiltPayload {
    /// Writes `path` and `path.sha256`, each atomically (see [`write_atomically`]).
    /// The checksum file is written last, so a payload is never seen with a
    /// checksum that does not belong to it.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        write_atomically(path, &self.bytes)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        write_atomically(
            &checksum_path(path),
            self.digest.checksum_line(&name).as_bytes(),
        )
    }
}

/// `<payload>.sha256`
pub fn checksum_path(payload: &Path) -> PathBuf {
    let mut p = payload.as_os_str().to_owned();
    p.push(".sha256");
    PathBuf::from(p)
}

/// `<payload>.sig`
pub fn signature_path(payload: &Path) -> PathBuf {
    let mut p = payload.as_os_str().to_owned();
    p.push(".sig");
    PathBuf::from(p)
}

/// Writes a file so that readers see either the old content or the new, never
/// a part: temp file in the same directory, fsync, rename, fsync the directory.
/// The temp file is created exclusively under a name unique to this call, so
/// concurrent writers and planted symlinks cannot interfere.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);
    let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
    let result = (|| {
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn spec() -> PayloadSpec {
        PayloadSpec {
            interpreter: Interpreter::Bash,
            script: b"#!/bin/bash\necho hello\n".to_vec(),
            environment: [(EnvKey::new("GREETING").unwrap(), "hi there".to_string())].into(),
            event_id: "42".into(),
            event_version: 3,
            created_at: "2025-01-15T10:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn same_inputs_give_same_bytes() {
        let a = spec().build().unwrap();
        let b = spec().build().unwrap();
        assert_eq!(a.bytes, b.bytes);
        assert_eq!(a.digest, b.digest);
    }

    #[test]
    fn any_input_change_changes_the_digest() {
        let base = spec().build().unwrap().digest;
        let mut s = spec();
        s.script.push(b' ');
        assert_ne!(s.build().unwrap().digest, base);
        let mut s = spec();
        s.environment
            .insert(EnvKey::new("X").unwrap(), String::new());
        assert_ne!(s.build().unwrap().digest, base);
        let mut s = spec();
        s.event_version = 4;
        assert_ne!(s.build().unwrap().digest, base);
    }

    #[test]
    fn inputs_the_reader_would_refuse_are_refused_at_build_time() {
        let mut s = spec();
        s.environment
            .insert(EnvKey::new("K").unwrap(), "a\0b".into());
        assert_eq!(s.build().unwrap_err().field(), Some("environment.K"));
        let mut s = spec();
        s.event_version = 0;
        assert_eq!(
            s.build().unwrap_err().field(),
            Some("metadata.eventVersion")
        );
        let mut s = spec();
        s.script = vec![b'#'; MAX_SCRIPT_BYTES + 1];
        assert_eq!(s.build().unwrap_err().field(), Some("script"));
        let mut s = spec();
        s.environment
            .insert(EnvKey::new("BIG").unwrap(), "x".repeat(MAX_MANIFEST_BYTES));
        assert_eq!(s.build().unwrap_err().field(), Some("environment"));
    }

    #[test]
    fn writes_payload_and_sha256sum_compatible_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v3.tar.gz");
        let built = spec().build().unwrap();
        built.write(&path).unwrap();
        assert_eq!(fs::read(&path).unwrap(), built.bytes);
        let line = fs::read_to_string(checksum_path(&path)).unwrap();
        assert_eq!(line, format!("{}  v3.tar.gz\n", built.digest));
        // Only the two files remain: no temp file left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}

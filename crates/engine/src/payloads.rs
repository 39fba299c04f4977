//! The payload service: writes each payload version to disk for the store, removes files whose rows are gone, and sweeps the payload directory at start-up.
//!
//! Layout (DESIGN §3.3): `<data dir>/payloads/<event id>/v<version>.tar.gz`
//! and `….tar.gz.sha256`. Rows store these paths **relative to the data
//! dir** (`payloads/12/v3.tar.gz`), so a data dir can be moved or restored
//! elsewhere; [`PayloadFiles::resolve`] turns them into real paths (an
//! absolute path in a row is used as it is).
//!
//! Ordering makes it crash-safe: the store calls [`DiskWriter`] inside the
//! transaction that records the version; the files are written under a
//! temporary name, synced and renamed before the row commits. If the store
//! call fails the files are removed ([`DiskWriter::discard`]); if the
//! process dies in between, the start-up [`PayloadFiles::sweep`] removes
//! files that no row names. Rows are deleted before their files, for the
//! same reason: the worst a crash leaves is a file without a row, which the
//! sweep cleans up, never a row without its file.
//!
//! The store also keeps every payload's bytes by checksum, so the files of
//! one server are a cache: [`PayloadFiles::ensure_local`] fetches a payload
//! another server on the same database wrote.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use cronium_core::{EventId, EventSpec};
use cronium_payload::{Sha256Digest, checksum_path, write_atomically};
use cronium_store::{PayloadFile, PayloadRecord, PayloadWriter, Store};

use crate::files::create_private_dir;

pub const PAYLOAD_DIR: &str = "payloads";

/// Where payload files live, and what has been generated (for metrics).
#[derive(Debug, Clone)]
pub struct PayloadFiles {
    data_dir: PathBuf,
    generated: Arc<AtomicU64>,
}

impl PayloadFiles {
    pub fn new(data_dir: &Path) -> PayloadFiles {
        PayloadFiles {
            data_dir: data_dir.to_path_buf(),
            generated: Arc::default(),
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.data_dir.join(PAYLOAD_DIR)
    }

    /// The path a row names, on disk.
    pub fn resolve(&self, stored: &str) -> PathBuf {
        self.data_dir.join(stored)
    }

    /// Payloads generated (and committed) since start-up.
    pub fn generated(&self) -> u64 {
        self.generated.load(Ordering::Relaxed)
    }

    /// Makes sure the payload a row (or a job) names is on this server's
    /// disk: when it is not (another server on the database wrote it), its
    /// bytes are fetched from the database by checksum, checked against it,
    /// and written where the row says, with their checksum file, as this
    /// server's cache. Returns the path.
    pub async fn ensure_local(
        &self,
        store: &dyn Store,
        relative: &str,
        checksum: &str,
    ) -> Result<PathBuf, String> {
        let path = self.resolve(relative);
        if path.exists() {
            return Ok(path);
        }
        let bytes = store
            .payload_blob(checksum)
            .await
            .map_err(|e| format!("cannot fetch payload {relative} from the database: {e}"))?
            .ok_or_else(|| {
                format!("payload {relative} is neither on this server's disk nor in the database")
            })?;
        let digest = Sha256Digest::of(&bytes);
        if digest.to_hex() != checksum {
            return Err(format!(
                "payload {relative} from the database does not match its checksum"
            ));
        }
        let dir = path.parent().expect("payload paths have a directory");
        create_private_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // The checksum file first: a payload file is only ever beside its own.
        write_atomically(
            &checksum_path(&path),
            digest.checksum_line(&name).as_bytes(),
        )
        .and_then(|()| write_atomically(&path, &bytes))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }

    /// A writer for one store call.
    pub fn writer(&self) -> DiskWriter {
        DiskWriter {
            files: self.clone(),
            written: Vec::new(),
        }
    }

    /// Removes the files of rows the store has deleted. Failures are logged:
    /// the rows are gone, so the next sweep removes what is left.
    pub fn remove_files(&self, rows: &[PayloadRecord]) {
        for row in rows {
            for path in [&row.payload_path, &row.checksum_path] {
                remove_logged(&self.resolve(path));
            }
        }
    }

    /// Removes an event's payload directory, whatever is still in it.
    pub fn remove_event_dir(&self, event: EventId) {
        let dir = self.dir().join(event.to_string());
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %dir.display(), error = %e, "cannot remove payload directory")
            }
        }
    }

    /// Brings the payload directory in line with the rows: removes every
    /// file no row names (payloads whose row never committed, stray temp
    /// files) and event directories left empty, and reports rows whose files
    /// are missing. Run at start-up, before any request is served.
    pub fn sweep(&self, rows: &[PayloadRecord]) -> io::Result<SweepReport> {
        let mut report = SweepReport::default();
        let known: HashSet<PathBuf> = rows
            .iter()
            .flat_map(|r| {
                [
                    self.resolve(&r.payload_path),
                    self.resolve(&r.checksum_path),
                ]
            })
            .collect();
        let root = self.dir();
        for entry in fs::read_dir(&root)? {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if !kind.is_dir() {
                if !known.contains(&path) && remove_logged(&path) {
                    report.removed.push(path);
                }
                continue;
            }
            for inner in fs::read_dir(&path)? {
                let inner = inner?;
                let file = inner.path();
                if inner.file_type()?.is_dir() {
                    tracing::warn!(path = %file.display(), "unexpected directory in the payload store; left alone");
                    continue;
                }
                if !known.contains(&file) && remove_logged(&file) {
                    report.removed.push(file);
                }
            }
            // Only succeeds when empty, which is exactly when it should go.
            if fs::remove_dir(&path).is_ok() {
                report.removed.push(path);
            }
        }
        for row in rows {
            for stored in [&row.payload_path, &row.checksum_path] {
                let path = self.resolve(stored);
                if !path.is_file() {
                    report.missing.push(path);
                }
            }
        }
        Ok(report)
    }
}

/// What a sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Files and empty directories removed.
    pub removed: Vec<PathBuf>,
    /// Files that rows name but that do not exist.
    pub missing: Vec<PathBuf>,
}

fn remove_logged(path: &Path) -> bool {
    match fs::remove_file(path) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove payload file");
            false
        }
    }
}

/// The [`PayloadWriter`] handed to the store for one create or update. It
/// remembers what it wrote, so the caller can [`commit`](Self::commit) (keep)
/// or [`discard`](Self::discard) (remove) the files once the store answers.
#[derive(Debug)]
pub struct DiskWriter {
    files: PayloadFiles,
    written: Vec<PathBuf>,
}

impl DiskWriter {
    /// The store committed: keep the files.
    pub fn commit(self) {
        let payloads = self.written.len() as u64 / 2;
        self.files.generated.fetch_add(payloads, Ordering::Relaxed);
    }

    /// The store failed: nothing references the files, remove them.
    pub fn discard(self) {
        for path in &self.written {
            remove_logged(path);
        }
    }
}

impl PayloadWriter for DiskWriter {
    fn write(
        &mut self,
        event: EventId,
        version: u64,
        spec: &EventSpec,
        created_at: DateTime<Utc>,
    ) -> Result<PayloadFile, String> {
        let payload_spec = spec
            .payload_spec(event, version, created_at)
            .ok_or_else(|| format!("event {event} has no payload (not a script event)"))?;
        let built = payload_spec.build().map_err(|e| e.to_string())?;
        let relative = format!("{PAYLOAD_DIR}/{event}/v{version}.tar.gz");
        let path = self.files.resolve(&relative);
        let dir = path.parent().expect("payload paths have a directory");
        create_private_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        // Recorded before writing, so a half-done write is cleaned up too.
        // Version numbers are never reused, so any file already at this path
        // is an orphan from a crash and may be replaced.
        self.written.push(path.clone());
        self.written.push(checksum_path(&path));
        built
            .write(&path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        // The crash-consistency test kills the server exactly here: files
        // on disk, row not yet committed (see crates/cli/tests/crash.rs).
        if std::env::var_os("CRONIUM_FAILPOINT").is_some_and(|v| v == "after-payload-write") {
            std::process::abort();
        }
        Ok(PayloadFile {
            checksum_path: format!("{relative}.sha256"),
            payload_path: relative,
            payload_size: built.bytes.len() as u64,
            checksum: built.digest.to_hex(),
            bytes: built.bytes.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use cronium_core::{EventKind, EventName, EventStatus, RunLocation, Schedule, SealedSecrets};
    use cronium_payload::{Interpreter, Sha256Digest};

    use super::*;

    fn spec() -> EventSpec {
        EventSpec {
            name: EventName::new("e").unwrap(),
            description: String::new(),
            kind: EventKind::Script,
            interpreter: Some(Interpreter::Bash),
            content: "echo hi\n".into(),
            env: Default::default(),
            secret_env: SealedSecrets::default(),
            schedule: Schedule::Manual,
            status: EventStatus::Active,
            run_location: RunLocation::Local,
            target_servers: vec![],
            target_tags: Default::default(),
            timeout: Duration::from_secs(60),
            retries: 0,
            tags: BTreeSet::new(),
            policy: Default::default(),
            http: None,
        }
    }

    fn row(file: &PayloadFile, version: u64) -> PayloadRecord {
        PayloadRecord {
            id: version as i64,
            event_id: EventId(7),
            event_version: version,
            payload_path: file.payload_path.clone(),
            checksum_path: file.checksum_path.clone(),
            payload_size: file.payload_size,
            checksum: file.checksum.clone(),
            is_active: true,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn writes_relative_paths_and_a_matching_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let files = PayloadFiles::new(dir.path());
        let mut w = files.writer();
        let file = w.write(EventId(7), 3, &spec(), Utc::now()).unwrap();
        w.commit();
        assert_eq!(file.payload_path, "payloads/7/v3.tar.gz");
        assert_eq!(file.checksum_path, "payloads/7/v3.tar.gz.sha256");
        let bytes = fs::read(dir.path().join(&file.payload_path)).unwrap();
        assert_eq!(bytes.len() as u64, file.payload_size);
        assert_eq!(Sha256Digest::of(&bytes).to_hex(), file.checksum);
        let line = fs::read_to_string(dir.path().join(&file.checksum_path)).unwrap();
        assert_eq!(line, format!("{}  v3.tar.gz\n", file.checksum));
        assert_eq!(files.generated(), 1);
    }

    #[test]
    fn discard_removes_what_was_written() {
        let dir = tempfile::tempdir().unwrap();
        let files = PayloadFiles::new(dir.path());
        let mut w = files.writer();
        w.write(EventId(7), 1, &spec(), Utc::now()).unwrap();
        w.discard();
        assert_eq!(
            fs::read_dir(dir.path().join("payloads/7")).unwrap().count(),
            0
        );
        assert_eq!(files.generated(), 0);
    }

    #[test]
    fn sweep_removes_unreferenced_files_and_reports_missing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let files = PayloadFiles::new(dir.path());
        let mut w = files.writer();
        let kept = w.write(EventId(7), 1, &spec(), Utc::now()).unwrap();
        let orphan = w.write(EventId(7), 2, &spec(), Utc::now()).unwrap();
        w.commit();
        let root = files.dir();
        fs::write(root.join("7/.v3.tar.gz.tmp-1-0"), b"partial").unwrap();
        fs::create_dir(root.join("8")).unwrap();
        fs::write(root.join("8/v1.tar.gz"), b"no row").unwrap();
        fs::write(root.join("stray"), b"x").unwrap();
        let mut ghost = row(&kept, 5);
        ghost.payload_path = "payloads/9/v5.tar.gz".into();
        ghost.checksum_path = "payloads/9/v5.tar.gz.sha256".into();

        let report = files.sweep(&[row(&kept, 1), ghost]).unwrap();
        assert!(dir.path().join(&kept.payload_path).is_file());
        assert!(dir.path().join(&kept.checksum_path).is_file());
        assert!(!dir.path().join(&orphan.payload_path).exists());
        assert!(!dir.path().join(&orphan.checksum_path).exists());
        assert!(!root.join("7/.v3.tar.gz.tmp-1-0").exists());
        assert!(!root.join("8").exists(), "emptied directory removed");
        assert!(!root.join("stray").exists());
        assert_eq!(report.removed.len(), 6, "{:?}", report.removed);
        assert_eq!(report.missing.len(), 2, "{:?}", report.missing);
    }
}

//! Hostile-input-safe reading and unpacking of payload archives.
//!
//! Every entry is checked before a byte of it is written: only regular files
//! and directories with plain relative names are accepted, the entry count
//! and the unpacked size (as declared by each header or its PAX `size`
//! record, which is exactly what the tar reader yields) are capped, and files
//! are created with `O_EXCL` in a directory the caller made fresh. Since no
//! link is ever created, nothing can resolve outside that directory. The
//! decompressed stream as a whole is capped too, so tar metadata the reader
//! buffers (PAX records, GNU long names) cannot exhaust memory, and it is
//! read to its end, so a damaged gzip trailer is caught.

use std::cell::Cell;
use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use crate::MANIFEST_NAME;
use crate::manifest::{MAX_MANIFEST_BYTES, Manifest, ManifestError};

/// Caps applied while reading an archive.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most entries an archive may have (a payload normally has two).
    pub max_entries: usize,
    /// Most bytes all entries may unpack to, together.
    pub max_unpacked_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 64,
            max_unpacked_bytes: 64 * 1024 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("unsafe archive entry {name:?}: {reason}")]
    Unsafe { name: String, reason: &'static str },
    #[error("archive has more than {limit} entries")]
    TooManyEntries { limit: usize },
    #[error("archive unpacks to more than {limit} bytes (entry {name:?})")]
    TooLarge { limit: u64, name: String },
    #[error("archive has entry {0:?} twice")]
    Duplicate(String),
    #[error("archive is corrupt: {0}")]
    Corrupt(String),
    #[error("payload has no manifest.yaml")]
    MissingManifest,
    #[error("payload has no entrypoint {0:?}")]
    MissingEntrypoint(&'static str),
    #[error("invalid manifest.yaml: {0}")]
    Manifest(#[from] ManifestError),
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// The result of a successful [`extract`].
#[derive(Debug)]
pub struct Extracted {
    pub manifest: Manifest,
    /// Absolute path of the script inside the work dir.
    pub entrypoint: PathBuf,
}

/// What [`read_manifest`] finds without unpacking anything.
#[derive(Debug)]
pub struct Listing {
    pub manifest: Manifest,
    /// Regular files with their sizes, in archive order.
    pub files: Vec<(String, u64)>,
}

/// Unpacks a gzip-compressed payload into `dest`, which must be an empty
/// directory the caller just created, and validates its manifest and
/// entrypoint. The manifest is parsed from memory and not written out: the
/// work dir holds only what the script may use.
pub fn extract(reader: impl Read, dest: &Path, limits: &Limits) -> Result<Extracted, ExtractError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExtractError::Io { path, source }
    };
    let listing = walk_payload(reader, limits, |name, item| {
        let target = dest.join(name);
        match item {
            Item::Dir => fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&target)
                .map_err(io_err(&target)),
            Item::File(data, _) => {
                if let Some(parent) = target.parent().filter(|p| *p != dest) {
                    fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(parent)
                        .map_err(io_err(parent))?;
                }
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&target)
                    .map_err(io_err(&target))?;
                // Not io::copy: a read error is a corrupt archive, not a failed write.
                let mut buf = [0u8; 64 * 1024];
                loop {
                    let n = match data.read(&mut buf) {
                        Ok(0) => return Ok(()),
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(ExtractError::Corrupt(e.to_string())),
                    };
                    file.write_all(&buf[..n]).map_err(io_err(&target))?;
                }
            }
        }
    })?;
    Ok(Extracted {
        entrypoint: dest.join(listing.manifest.entrypoint()),
        manifest: listing.manifest,
    })
}

/// Reads and validates a payload's manifest and lists its files, writing nothing.
pub fn read_manifest(reader: impl Read, limits: &Limits) -> Result<Listing, ExtractError> {
    walk_payload(reader, limits, |_, item| match item {
        Item::Dir => Ok(()),
        Item::File(data, _) => drain(data).map(drop),
    })
}

/// Reads a payload's manifest and script into memory, writing nothing: to
/// show a version or compare two.
pub fn read_script(
    reader: impl Read,
    limits: &Limits,
) -> Result<(Manifest, Vec<u8>), ExtractError> {
    let mut files = std::collections::HashMap::new();
    let listing = walk_payload(reader, limits, |name, item| match item {
        Item::Dir => Ok(()),
        Item::File(data, _) => {
            let mut bytes = Vec::new();
            data.read_to_end(&mut bytes)
                .map_err(|e| ExtractError::Corrupt(e.to_string()))?;
            files.insert(name.to_string(), bytes);
            Ok(())
        }
    })?;
    // `walk_payload` made sure the entrypoint is among the files.
    let script = files
        .remove(listing.manifest.entrypoint())
        .unwrap_or_default();
    Ok((listing.manifest, script))
}

/// Walks a payload: the manifest is read into memory and validated, every
/// other accepted entry goes to `visit`, and the entrypoint must be among the
/// regular files.
fn walk_payload(
    reader: impl Read,
    limits: &Limits,
    mut visit: impl FnMut(&str, Item<'_>) -> Result<(), ExtractError>,
) -> Result<Listing, ExtractError> {
    let mut manifest_text = None;
    let mut files = Vec::new();
    walk(reader, limits, |name, item| match item {
        Item::File(data, size) => {
            if name == MANIFEST_NAME {
                let mut text = Vec::new();
                data.take(MAX_MANIFEST_BYTES as u64 + 1)
                    .read_to_end(&mut text)
                    .map_err(|e| ExtractError::Corrupt(e.to_string()))?;
                drain(data)?;
                manifest_text = Some(text);
            } else {
                visit(name, Item::File(data, size))?;
            }
            files.push((name.to_string(), size));
            Ok(())
        }
        Item::Dir => visit(name, Item::Dir),
    })?;
    let text = manifest_text.ok_or(ExtractError::MissingManifest)?;
    let text = String::from_utf8(text)
        .map_err(|_| ManifestError::Syntax("manifest is not UTF-8".into()))?;
    let manifest = Manifest::parse(&text)?;
    if !files.iter().any(|(n, _)| n == manifest.entrypoint()) {
        return Err(ExtractError::MissingEntrypoint(manifest.entrypoint()));
    }
    Ok(Listing { manifest, files })
}

fn drain(data: &mut dyn Read) -> Result<u64, ExtractError> {
    io::copy(data, &mut io::sink()).map_err(|e| ExtractError::Corrupt(e.to_string()))
}

enum Item<'a> {
    Dir,
    /// An entry's content and its size.
    File(&'a mut dyn Read, u64),
}

/// Room allowed per entry, on top of [`Limits::max_unpacked_bytes`], for
/// what is not file content: headers, padding, PAX records, GNU long names.
const METADATA_BYTES_PER_ENTRY: u64 = 64 * 1024;

/// Walks the archive, refusing anything unsafe, and hands each accepted
/// entry to `visit` under its normalized relative name.
fn walk(
    reader: impl Read,
    limits: &Limits,
    visit: impl FnMut(&str, Item<'_>) -> Result<(), ExtractError>,
) -> Result<(), ExtractError> {
    // The `tar` crate reads PAX records and GNU long names into memory whole,
    // and reads through the data of entries it skips, before we see an entry:
    // only a cap on the decompressed stream itself bounds that.
    let tripped = Cell::new(false);
    let cap = limits.max_unpacked_bytes.saturating_add(
        (limits.max_entries as u64)
            .saturating_add(1)
            .saturating_mul(METADATA_BYTES_PER_ENTRY),
    );
    let mut archive = tar::Archive::new(Capped {
        inner: GzDecoder::new(reader),
        left: cap,
        tripped: &tripped,
    });
    let mut current = String::from("(archive headers)");
    let walked = walk_entries(&mut archive, limits, &mut current, visit).and_then(|()| {
        // Read to the end, so the gzip trailer (CRC and length) is checked too.
        io::copy(&mut archive.into_inner(), &mut io::sink())
            .map(drop)
            .map_err(|e| ExtractError::Corrupt(e.to_string()))
    });
    walked.map_err(|e| match tripped.get() {
        true => ExtractError::TooLarge {
            limit: limits.max_unpacked_bytes,
            name: current,
        },
        false => e,
    })
}

fn walk_entries<R: Read>(
    archive: &mut tar::Archive<R>,
    limits: &Limits,
    current: &mut String,
    mut visit: impl FnMut(&str, Item<'_>) -> Result<(), ExtractError>,
) -> Result<(), ExtractError> {
    let entries = archive
        .entries()
        .map_err(|e| ExtractError::Corrupt(e.to_string()))?;
    let mut count = 0usize;
    let mut budget = limits.max_unpacked_bytes;
    let mut seen = HashSet::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| ExtractError::Corrupt(e.to_string()))?;
        count += 1;
        if count > limits.max_entries {
            return Err(ExtractError::TooManyEntries {
                limit: limits.max_entries,
            });
        }
        let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        current.clone_from(&raw_name);
        let unsafe_entry = |reason| ExtractError::Unsafe {
            name: raw_name.clone(),
            reason,
        };
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::Directory => {}
            // Archive-wide PAX metadata, as Python's tarfile may write: carries no file.
            tar::EntryType::XGlobalHeader => continue,
            tar::EntryType::Symlink => return Err(unsafe_entry("symbolic links are not allowed")),
            tar::EntryType::Link => return Err(unsafe_entry("hard links are not allowed")),
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(unsafe_entry("device files are not allowed"));
            }
            tar::EntryType::Fifo => return Err(unsafe_entry("FIFOs are not allowed")),
            _ => return Err(unsafe_entry("unsupported entry type")),
        }
        let name = normalize(&entry.path_bytes()).map_err(unsafe_entry)?;
        if name.is_empty() {
            if kind == tar::EntryType::Directory {
                continue; // "./", the archive root
            }
            return Err(unsafe_entry("empty file name"));
        }
        if !seen.insert(name.clone()) {
            return Err(ExtractError::Duplicate(name));
        }
        if kind == tar::EntryType::Directory {
            visit(&name, Item::Dir)?;
            continue;
        }
        // Not the header's size field: a PAX `size` record overrides it, and
        // the entry's reader yields what the record says.
        let size = entry.size();
        if size > budget {
            return Err(ExtractError::TooLarge {
                limit: limits.max_unpacked_bytes,
                name,
            });
        }
        budget -= size;
        let mut data = (&mut entry).take(size);
        visit(&name, Item::File(&mut data, size))?;
    }
    Ok(())
}

/// Turns an entry name into a plain relative path (`a/b`), or says why it is unsafe.
fn normalize(raw: &[u8]) -> Result<String, &'static str> {
    let name = std::str::from_utf8(raw).map_err(|_| "name is not UTF-8")?;
    if name.starts_with('/') {
        return Err("absolute paths are not allowed");
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("`..` components are not allowed"),
            p if p.contains('\0') => return Err("name contains a NUL byte"),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// A reader that fails once more than `left` bytes have come through, and
/// says so in `tripped`.
struct Capped<'a, R> {
    inner: R,
    left: u64,
    tripped: &'a Cell<bool>,
}

impl<R: Read> Read for Capped<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Ask for one byte more than allowed, to tell "exactly at the cap" from "past it".
        let want = buf.len().min(
            usize::try_from(self.left)
                .unwrap_or(usize::MAX)
                .saturating_add(1),
        );
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            self.tripped.set(true);
            return Err(io::Error::other("archive exceeds its size limit"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_table() {
        let table: [(&str, Result<&str, &str>); 10] = [
            ("script.sh", Ok("script.sh")),
            ("./script.sh", Ok("script.sh")),
            ("././manifest.yaml", Ok("manifest.yaml")),
            ("./", Ok("")),
            ("lib//a.sh", Ok("lib/a.sh")),
            ("/etc/passwd", Err("absolute paths are not allowed")),
            ("../evil", Err("`..` components are not allowed")),
            ("a/../../evil", Err("`..` components are not allowed")),
            ("a/..", Err("`..` components are not allowed")),
            ("./x/./y", Ok("x/y")),
        ];
        for (raw, want) in table {
            assert_eq!(
                normalize(raw.as_bytes()).as_deref(),
                want.as_ref().map(|s| *s),
                "{raw:?}"
            );
        }
    }
}

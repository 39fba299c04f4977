//! Test helpers that craft arbitrary, hostile ones included, tar.gz archives byte by byte.
//!
//! The `tar` crate's own builder refuses to write the archives an attacker
//! would send (`Header::set_path` rejects `..` and absolute names), so this
//! module writes the header fields itself and recomputes the checksum. It is
//! compiled only with the `testing` feature, for this crate's tests and for
//! the integration tests of crates that consume payloads (the runner):
//!
//! ```toml
//! [dev-dependencies]
//! cronium-payload = { workspace = true, features = ["testing"] }
//! ```
//!
//! ```
//! use cronium_payload::testing::{RawEntry, archive, valid_manifest};
//! let bytes = archive(&[
//!     RawEntry::file("manifest.yaml", valid_manifest("bash")),
//!     RawEntry::file("../script.sh", "echo hi\n"),
//! ]);
//! assert!(cronium_payload::read_manifest(&bytes[..], &Default::default()).is_err());
//! ```

use std::io::{self, Write};

use flate2::write::GzEncoder;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use tar::{EntryType, Header};

use crate::manifest::Interpreter;

/// Fixed modification time written into every crafted header (2025-01-15T10:00:00Z).
pub const MTIME: u64 = 1_736_935_200;

const BLOCK: usize = 512;
const NAME_FIELD: usize = 100;

/// One archive member, described by the raw bytes that end up in its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    /// Written verbatim into the header's name field; longer than 100 bytes,
    /// it goes into a GNU long-name (`L`) member before the entry.
    pub name: Vec<u8>,
    pub kind: EntryType,
    pub data: Vec<u8>,
    /// Link target, written verbatim into the header's link-name field.
    pub link: Option<Vec<u8>>,
    /// Size written into the header; `None` means `data.len()`. A size larger
    /// than the data makes an archive whose content is cut short.
    pub declared_size: Option<u64>,
    pub mode: u32,
}

impl RawEntry {
    fn new(name: impl AsRef<[u8]>, kind: EntryType, mode: u32) -> RawEntry {
        RawEntry {
            name: name.as_ref().to_vec(),
            kind,
            data: Vec::new(),
            link: None,
            declared_size: None,
            mode,
        }
    }

    /// A regular file.
    pub fn file(name: impl AsRef<[u8]>, data: impl AsRef<[u8]>) -> RawEntry {
        RawEntry {
            data: data.as_ref().to_vec(),
            ..RawEntry::new(name, EntryType::Regular, 0o644)
        }
    }

    /// A directory (give the name with or without its trailing `/`).
    pub fn dir(name: impl AsRef<[u8]>) -> RawEntry {
        RawEntry::new(name, EntryType::Directory, 0o755)
    }

    pub fn symlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> RawEntry {
        RawEntry {
            link: Some(target.as_ref().to_vec()),
            ..RawEntry::new(name, EntryType::Symlink, 0o777)
        }
    }

    pub fn hardlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> RawEntry {
        RawEntry {
            link: Some(target.as_ref().to_vec()),
            ..RawEntry::new(name, EntryType::Link, 0o644)
        }
    }

    pub fn char_device(name: impl AsRef<[u8]>) -> RawEntry {
        RawEntry::new(name, EntryType::Char, 0o666)
    }

    pub fn block_device(name: impl AsRef<[u8]>) -> RawEntry {
        RawEntry::new(name, EntryType::Block, 0o660)
    }

    pub fn fifo(name: impl AsRef<[u8]>) -> RawEntry {
        RawEntry::new(name, EntryType::Fifo, 0o644)
    }

    /// A PAX extended header (`x`) whose records apply to the next entry,
    /// e.g. `[("path", b"../evil")]` to override that entry's name.
    pub fn pax(records: &[(&str, &[u8])]) -> RawEntry {
        let mut data = Vec::new();
        for (key, value) in records {
            // Each record is "<len> <key>=<value>\n", where <len> counts itself.
            let body = key.len() + value.len() + 3; // ' ', '=', '\n'
            let mut len = body + 1;
            while len != body + len.to_string().len() {
                len = body + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        RawEntry {
            data,
            ..RawEntry::new("././@PaxHeader", EntryType::XHeader, 0o644)
        }
    }

    /// Any other entry type, e.g. `EntryType::new(b'S')` (GNU sparse).
    pub fn of_kind(name: impl AsRef<[u8]>, kind: EntryType, data: impl AsRef<[u8]>) -> RawEntry {
        RawEntry {
            data: data.as_ref().to_vec(),
            ..RawEntry::new(name, kind, 0o644)
        }
    }

    /// Declares a size different from the data's length in the header.
    pub fn with_declared_size(mut self, size: u64) -> RawEntry {
        self.declared_size = Some(size);
        self
    }

    /// The same entry under another name, e.g. `./script.sh`.
    pub fn with_name(mut self, name: impl AsRef<[u8]>) -> RawEntry {
        self.name = name.as_ref().to_vec();
        self
    }

    pub fn with_mode(mut self, mode: u32) -> RawEntry {
        self.mode = mode;
        self
    }
}

/// A ustar header carrying exactly these bytes as name and link name, with a
/// valid checksum. Names must fit the 100-byte field.
pub fn header(name: &[u8], kind: EntryType, size: u64, link: Option<&[u8]>, mode: u32) -> Header {
    assert!(
        name.len() <= NAME_FIELD,
        "name of {} bytes does not fit the header",
        name.len()
    );
    let link = link.unwrap_or_default();
    assert!(
        link.len() <= NAME_FIELD,
        "link name of {} bytes does not fit the header",
        link.len()
    );
    let mut header = Header::new_ustar();
    header.set_size(size);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(MTIME);
    header.set_entry_type(kind);
    let ustar = header.as_ustar_mut().expect("a ustar header");
    ustar.name = [0; NAME_FIELD];
    ustar.name[..name.len()].copy_from_slice(name);
    ustar.linkname = [0; NAME_FIELD];
    ustar.linkname[..link.len()].copy_from_slice(link);
    header.set_cksum();
    header
}

/// Writes the entries as an uncompressed tar stream, with the two zero
/// blocks that end an archive.
pub fn write_tar(entries: &[RawEntry], out: &mut impl Write) -> io::Result<()> {
    for entry in entries {
        if entry.name.len() > NAME_FIELD {
            let mut long_name = entry.name.clone();
            long_name.push(0);
            write_member(
                out,
                &header(
                    b"././@LongLink",
                    EntryType::GNULongName,
                    long_name.len() as u64,
                    None,
                    0o644,
                ),
                &long_name,
            )?;
        }
        let name = &entry.name[..entry.name.len().min(NAME_FIELD)];
        let size = entry.declared_size.unwrap_or(entry.data.len() as u64);
        let header = header(name, entry.kind, size, entry.link.as_deref(), entry.mode);
        write_member(out, &header, &entry.data)?;
    }
    out.write_all(&[0; 2 * BLOCK])
}

/// The entries as an uncompressed tar stream (see [`write_tar`]).
pub fn tar(entries: &[RawEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    write_tar(entries, &mut out).expect("in-memory archive");
    out
}

/// Gzip-compresses bytes, deterministically.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(bytes).expect("in-memory archive");
    gz.finish().expect("in-memory archive")
}

/// The entries as a tar.gz archive.
pub fn archive(entries: &[RawEntry]) -> Vec<u8> {
    gzip(&tar(entries))
}

/// A valid-looking bash payload whose `script.sh` is `unpacked_bytes` zero
/// bytes. Any size is cheap to build and to hold: a gibibyte of zeros
/// compresses to about a megabyte (see [`zeros_after`]).
pub fn gzip_bomb(unpacked_bytes: u64) -> Vec<u8> {
    let mut prefix = Vec::new();
    let manifest = valid_manifest("bash");
    let manifest_header = header(
        b"manifest.yaml",
        EntryType::Regular,
        manifest.len() as u64,
        None,
        0o644,
    );
    write_member(&mut prefix, &manifest_header, manifest.as_bytes()).expect("in-memory archive");
    let script_header = header(
        b"script.sh",
        EntryType::Regular,
        unpacked_bytes,
        None,
        0o755,
    );
    prefix.extend_from_slice(script_header.as_bytes());
    // The script's data, its padding, and the two blocks that end the archive.
    zeros_after(&prefix, padded(unpacked_bytes) + 2 * BLOCK as u64)
}

/// A bash payload whose `unpacked_bytes` zero bytes hide in the data of a
/// directory entry `d/`, after the manifest and before the script. Nothing
/// is ever written for them, and the entry's header asks for no room on
/// disk, but a tar reader reads through them to reach the next entry: only
/// a cap on the decompressed stream stops that.
pub fn directory_data_bomb(unpacked_bytes: u64) -> Vec<u8> {
    let mut prefix = Vec::new();
    let manifest = valid_manifest("bash");
    let manifest_header = header(
        b"manifest.yaml",
        EntryType::Regular,
        manifest.len() as u64,
        None,
        0o644,
    );
    write_member(&mut prefix, &manifest_header, manifest.as_bytes()).expect("in-memory archive");
    let dir_header = header(b"d/", EntryType::Directory, unpacked_bytes, None, 0o755);
    prefix.extend_from_slice(dir_header.as_bytes());
    // Where the script would come, the archive ends: a reader that got this
    // far would have inflated every byte.
    zeros_after(&prefix, padded(unpacked_bytes) + 2 * BLOCK as u64)
}

/// A gzip stream of `prefix` followed by `zeros` zero bytes, built without
/// compressing them all: a mebibyte of zeros is deflated once after a full
/// flush, so it refers to nothing before it, and the compressed piece is
/// repeated. The gzip trailer (CRC-32 and length) is that of the whole
/// stream, so a reader that gets to the end accepts it.
fn zeros_after(prefix: &[u8], zeros: u64) -> Vec<u8> {
    const CHUNK: u64 = 1024 * 1024;
    let mut deflate = Compress::new(Compression::best(), false);
    let head = deflated(&mut deflate, prefix, FlushCompress::Full);
    let chunk = deflated(&mut deflate, &[0; CHUNK as usize], FlushCompress::Full);
    let rest = vec![0; (zeros % CHUNK) as usize];
    let tail = deflated(&mut deflate, &rest, FlushCompress::Finish);

    let mut crc = Crc::new();
    crc.update(prefix);
    let mut chunk_crc = Crc::new();
    chunk_crc.update(&[0; CHUNK as usize]);
    let mut rest_crc = Crc::new();
    rest_crc.update(&rest);
    for _ in 0..zeros / CHUNK {
        crc.combine(&chunk_crc);
    }
    crc.combine(&rest_crc);

    let repeats = (zeros / CHUNK) as usize;
    let mut out = Vec::with_capacity(18 + head.len() + repeats * chunk.len() + tail.len());
    // Gzip header: deflate, no flags, no mtime, unknown OS.
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    out.extend_from_slice(&head);
    for _ in 0..repeats {
        out.extend_from_slice(&chunk);
    }
    out.extend_from_slice(&tail);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    let length = prefix.len() as u64 + zeros;
    out.extend_from_slice(&(length as u32).to_le_bytes()); // ISIZE: the length mod 2^32
    out
}

/// Raw deflate of all of `input`, then `flush`.
fn deflated(deflate: &mut Compress, input: &[u8], flush: FlushCompress) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 64 + 1024);
    let start = deflate.total_in();
    loop {
        let consumed = (deflate.total_in() - start) as usize;
        let status = deflate
            .compress_vec(&input[consumed..], &mut out, flush)
            .expect("in-memory deflate");
        let done = match flush {
            FlushCompress::Finish => status == Status::StreamEnd,
            // All input taken and room left over: nothing more to flush.
            _ => deflate.total_in() - start == input.len() as u64 && out.len() < out.capacity(),
        };
        if done {
            return out;
        }
        out.reserve(64 * 1024);
    }
}

/// A payload whose first member is a GNU long-name (`L`) record of
/// `name_bytes` zero bytes: a reader that buffers long names whole would
/// need that much memory before it sees the entry they name.
pub fn long_name_bomb(name_bytes: u64) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    let long = header(
        b"././@LongLink",
        EntryType::GNULongName,
        name_bytes,
        None,
        0o644,
    );
    gz.write_all(long.as_bytes()).expect("in-memory archive");
    write_zeros(&mut gz, padded(name_bytes)).expect("in-memory archive");
    write_tar(&payload_entries("bash", b"echo hi\n"), &mut gz).expect("in-memory archive");
    gz.finish().expect("in-memory archive")
}

/// A `manifest.yaml` that validates, naming the interpreter exactly as
/// given (so `BASH` or `NODEJS` can be tried) and the entrypoint that goes
/// with it. An unknown interpreter name gets entrypoint `script.sh`.
pub fn valid_manifest(interp: &str) -> String {
    let entrypoint = Interpreter::parse(interp)
        .map(Interpreter::entrypoint)
        .unwrap_or("script.sh");
    format!(
        "version: v1\n\
         interpreter: {interp}\n\
         entrypoint: {entrypoint}\n\
         environment:\n  GREETING: hello\n\
         metadata:\n  eventId: \"test\"\n  eventVersion: 1\n  createdAt: \"2025-01-15T10:00:00Z\"\n"
    )
}

/// The two members of a valid payload: [`valid_manifest`] and the script
/// under the entrypoint name that goes with `interp`.
pub fn payload_entries(interp: &str, script: &[u8]) -> Vec<RawEntry> {
    let entrypoint = Interpreter::parse(interp)
        .map(Interpreter::entrypoint)
        .unwrap_or("script.sh");
    vec![
        RawEntry::file("manifest.yaml", valid_manifest(interp)),
        RawEntry::file(entrypoint, script).with_mode(0o755),
    ]
}

fn write_member(out: &mut impl Write, header: &Header, data: &[u8]) -> io::Result<()> {
    out.write_all(header.as_bytes())?;
    out.write_all(data)?;
    write_zeros(out, padded(data.len() as u64) - data.len() as u64)
}

/// `len` rounded up to whole blocks.
fn padded(len: u64) -> u64 {
    len.div_ceil(BLOCK as u64) * BLOCK as u64
}

fn write_zeros(out: &mut impl Write, mut n: u64) -> io::Result<()> {
    let zeros = [0u8; 64 * 1024];
    while n > 0 {
        let chunk = n.min(zeros.len() as u64) as usize;
        out.write_all(&zeros[..chunk])?;
        n -= chunk as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The point of this module: names the `tar` builder refuses reach the header intact.
    #[test]
    fn hostile_names_are_written_verbatim_with_a_valid_checksum() {
        for name in [&b"../evil"[..], b"/etc/passwd", b"a/../../x"] {
            let bytes = tar(&[RawEntry::file(name, "x")]);
            let mut archive = tar::Archive::new(&bytes[..]);
            let mut entries = archive.entries().unwrap();
            let entry = entries.next().unwrap().unwrap();
            assert_eq!(&entry.path_bytes()[..], name);
            assert!(entries.next().is_none());
        }
    }

    #[test]
    fn long_names_go_through_a_gnu_long_name_member() {
        let name = format!("{}/script.sh", "d".repeat(120));
        let bytes = tar(&[RawEntry::file(&name, "x")]);
        let mut archive = tar::Archive::new(&bytes[..]);
        let entry = archive.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(&entry.path_bytes()[..], name.as_bytes());
    }

    #[test]
    fn pax_records_count_their_own_length() {
        let entry = RawEntry::pax(&[("path", b"../evil"), ("k", &[b'v'; 95])]);
        // "16 path=../evil\n" is 16 bytes; 95 v, "k", "=", " " and "\n" are 99, plus "102" is 102.
        assert!(entry.data.starts_with(b"16 path=../evil\n102 k=vvv"));
        assert_eq!(entry.data.len(), 16 + 102);
    }

    #[test]
    fn gzip_bomb_declares_the_size_it_was_asked_for() {
        let bytes = gzip_bomb(10 * 1024 * 1024);
        assert!(bytes.len() < 100 * 1024, "{} bytes compressed", bytes.len());
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        let sizes: Vec<(String, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (String::from_utf8_lossy(&e.path_bytes()).into(), e.size())
            })
            .collect();
        assert_eq!(sizes[1], ("script.sh".to_string(), 10 * 1024 * 1024));
        assert_eq!(sizes.len(), 2);
    }

    /// The repeated compressed chunks unpack to exactly the stream they
    /// stand for, trailer included (the decoder checks CRC and length).
    #[test]
    fn bombs_unpack_to_their_prefix_then_zeros_with_a_valid_trailer() {
        use std::io::Read;
        // Across a chunk boundary, with a remainder and padding.
        let size = 3 * 1024 * 1024 + 100;
        let mut expected = Vec::new();
        let manifest = valid_manifest("bash");
        write_member(
            &mut expected,
            &header(
                b"manifest.yaml",
                EntryType::Regular,
                manifest.len() as u64,
                None,
                0o644,
            ),
            manifest.as_bytes(),
        )
        .unwrap();
        expected.extend_from_slice(
            header(b"script.sh", EntryType::Regular, size, None, 0o755).as_bytes(),
        );
        expected.resize(expected.len() + padded(size) as usize + 2 * BLOCK, 0);
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(&gzip_bomb(size)[..])
            .read_to_end(&mut unpacked)
            .unwrap();
        assert!(
            unpacked == expected,
            "{} bytes, expected {}",
            unpacked.len(),
            expected.len()
        );

        let bomb = directory_data_bomb(size);
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bomb[..]));
        let entries: Vec<(String, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (String::from_utf8_lossy(&e.path_bytes()).into(), e.size())
            })
            .collect();
        assert_eq!(entries[1], ("d/".to_string(), size));
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn a_gibibyte_bomb_is_about_a_megabyte() {
        let bytes = gzip_bomb(1 << 30);
        assert!(
            bytes.len() < 2 * 1024 * 1024,
            "{} bytes compressed",
            bytes.len()
        );
    }
}

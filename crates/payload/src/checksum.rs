//! SHA-256 digests and the `sha256sum`-format checksum file beside each payload.

use std::fmt;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Debug, thiserror::Error)]
pub enum ChecksumError {
    #[error("malformed checksum: {0}")]
    Malformed(String),
    #[error("checksum mismatch: expected {expected}, payload has {actual}")]
    Mismatch {
        expected: Sha256Digest,
        actual: Sha256Digest,
    },
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: io::Error },
}

/// A SHA-256 digest. Equality is constant-time.
#[derive(Clone, Copy)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    pub fn of(bytes: &[u8]) -> Sha256Digest {
        Sha256Digest(Sha256::digest(bytes).into())
    }

    /// Hashes a reader to its end without holding it in memory.
    pub fn of_reader(mut reader: impl Read) -> io::Result<Sha256Digest> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hasher.update(&buf[..n]);
        }
        Ok(Sha256Digest(hasher.finalize().into()))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses 64 hexadecimal digits (either case).
    pub fn from_hex(hex: &str) -> Result<Sha256Digest, ChecksumError> {
        let hex = hex.trim();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ChecksumError::Malformed(format!(
                "expected 64 hexadecimal digits, got {:?}",
                truncate(hex, 80)
            )));
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("checked hex");
        }
        Ok(Sha256Digest(out))
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Fails with [`ChecksumError::Mismatch`] unless `actual` equals `self`.
    pub fn verify(&self, actual: &Sha256Digest) -> Result<(), ChecksumError> {
        if self == actual {
            Ok(())
        } else {
            Err(ChecksumError::Mismatch {
                expected: *self,
                actual: *actual,
            })
        }
    }

    /// The checksum file's content for a payload named `file_name`, as `sha256sum` writes it.
    pub fn checksum_line(&self, file_name: &str) -> String {
        format!("{}  {}\n", self.to_hex(), file_name)
    }

    /// Reads the digest from a checksum file's text. Accepts `sha256sum` text
    /// (`HEX  name`) and binary-mode (`HEX *name`) lines, or a bare digest.
    pub fn parse_checksum_file(text: &str) -> Result<Sha256Digest, ChecksumError> {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let first = lines
            .next()
            .ok_or_else(|| ChecksumError::Malformed("the file is empty".into()))?;
        if lines.next().is_some() {
            return Err(ChecksumError::Malformed(
                "expected exactly one checksum line".into(),
            ));
        }
        let hex = first.split_whitespace().next().unwrap_or_default();
        Sha256Digest::from_hex(hex)
    }

    /// Reads and parses a checksum file.
    pub fn read_checksum_file(path: &Path) -> Result<Sha256Digest, ChecksumError> {
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(4096).read_to_string(&mut text))
            .map_err(|source| ChecksumError::Io {
                path: path.display().to_string(),
                source,
            })?;
        Sha256Digest::parse_checksum_file(&text)
    }
}

impl PartialEq for Sha256Digest {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Sha256Digest {}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({})", self.to_hex())
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digest_of_empty_input_matches_sha256sum() {
        assert_eq!(Sha256Digest::of(b"").to_hex(), EMPTY);
        assert_eq!(Sha256Digest::of_reader(&b""[..]).unwrap().to_hex(), EMPTY);
    }

    #[test]
    fn checksum_file_formats() {
        let d = Sha256Digest::of(b"");
        assert_eq!(d.checksum_line("p.tar.gz"), format!("{EMPTY}  p.tar.gz\n"));
        let table = [
            (format!("{EMPTY}  p.tar.gz\n"), true),
            (format!("{EMPTY} *p.tar.gz\n"), true),
            (format!("{EMPTY}\n"), true),
            (EMPTY.to_uppercase(), true),
            (String::new(), false),
            ("xyz  p.tar.gz\n".to_string(), false),
            (format!("{}  p\n", &EMPTY[..63]), false),
            (format!("{EMPTY}  a\n{EMPTY}  b\n"), false),
        ];
        for (text, ok) in table {
            let parsed = Sha256Digest::parse_checksum_file(&text);
            assert_eq!(parsed.is_ok(), ok, "{text:?}");
            if ok {
                assert_eq!(parsed.unwrap(), d);
            }
        }
    }

    #[test]
    fn mismatch_names_both_digests() {
        let a = Sha256Digest::of(b"a");
        let b = Sha256Digest::of(b"b");
        let err = a.verify(&b).unwrap_err().to_string();
        assert!(
            err.contains(&a.to_hex()) && err.contains(&b.to_hex()),
            "{err}"
        );
        assert!(a.verify(&Sha256Digest::of(b"a")).is_ok());
    }
}

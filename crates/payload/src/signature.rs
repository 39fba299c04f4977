//! Optional ed25519 signatures over a payload's SHA-256 digest (`<payload>.sig`).
//!
//! Keys are stored as one line of text, `ed25519-secret:<hex>` or
//! `ed25519-public:<hex>`, so they can be pasted into configuration, and a
//! secret key handed over where a public one belongs is recognised instead of
//! being misread (both are 32 bytes). A `.sig` file is the 64-byte signature
//! in hex. The signed message is a
//! domain-separation prefix followed by the payload digest, so a signature
//! made for a payload can never be replayed as a signature over anything else.

use std::path::Path;

use ed25519_dalek::{Signature, Signer};

use crate::checksum::Sha256Digest;

const DOMAIN: &[u8] = b"cronium-payload-v1\0";
const SECRET_LABEL: &str = "ed25519-secret:";
const PUBLIC_LABEL: &str = "ed25519-public:";

#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("{what} is malformed: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("signature does not verify against any trusted key")]
    Untrusted,
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// A secret signing key.
pub struct SigningKey(ed25519_dalek::SigningKey);

/// A public key that signatures are checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyingKey(ed25519_dalek::VerifyingKey);

impl SigningKey {
    /// Builds a key from a 32-byte seed. Callers generate the seed from the OS RNG.
    pub fn from_seed(seed: [u8; 32]) -> SigningKey {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// Parses `ed25519-secret:<hex>`.
    pub fn from_text(text: &str) -> Result<SigningKey, SignatureError> {
        let hex = strip_label("signing key", text, SECRET_LABEL, PUBLIC_LABEL)?;
        Ok(SigningKey::from_seed(decode_hex("signing key", hex)?))
    }

    pub fn to_text(&self) -> String {
        format!("{SECRET_LABEL}{}\n", encode_hex(self.0.as_bytes()))
    }

    pub fn read_file(path: &Path) -> Result<SigningKey, SignatureError> {
        SigningKey::from_text(&read_small(path)?)
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.0.verifying_key())
    }

    /// Signs a payload digest; the result is the `.sig` file's content.
    pub fn sign(&self, digest: &Sha256Digest) -> String {
        let sig = self.0.sign(&message(digest));
        format!("{}\n", encode_hex(&sig.to_bytes()))
    }
}

impl VerifyingKey {
    /// Parses `ed25519-public:<hex>`.
    pub fn from_text(text: &str) -> Result<VerifyingKey, SignatureError> {
        let hex = strip_label("public key", text, PUBLIC_LABEL, SECRET_LABEL)?;
        let bytes: [u8; 32] = decode_hex("public key", hex)?;
        ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map(VerifyingKey)
            .map_err(|e| SignatureError::Malformed {
                what: "public key",
                reason: e.to_string(),
            })
    }

    pub fn read_file(path: &Path) -> Result<VerifyingKey, SignatureError> {
        VerifyingKey::from_text(&read_small(path)?)
    }

    pub fn to_text(&self) -> String {
        format!("{PUBLIC_LABEL}{}\n", encode_hex(self.0.as_bytes()))
    }
}

/// Checks `.sig` text against a payload digest; succeeds if any trusted key signed it.
pub fn verify(
    digest: &Sha256Digest,
    signature_text: &str,
    trusted: &[VerifyingKey],
) -> Result<(), SignatureError> {
    let sig = Signature::from_bytes(&decode_hex("signature", signature_text)?);
    let msg = message(digest);
    if trusted
        .iter()
        .any(|k| k.0.verify_strict(&msg, &sig).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Untrusted)
    }
}

/// Reads a `.sig` file (or a key file): one short line of text.
pub fn read_small(path: &Path) -> Result<String, SignatureError> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(4096).read_to_string(&mut text))
        .map_err(|source| SignatureError::Io {
            path: path.display().to_string(),
            source,
        })?;
    Ok(text)
}

fn strip_label<'a>(
    what: &'static str,
    text: &'a str,
    label: &str,
    other: &str,
) -> Result<&'a str, SignatureError> {
    let text = text.trim();
    if let Some(hex) = text.strip_prefix(label) {
        return Ok(hex);
    }
    let reason = if text.starts_with(other) {
        let kind = if other == SECRET_LABEL {
            "secret"
        } else {
            "public"
        };
        format!("this is a {kind} key, expected one starting with {label:?}")
    } else {
        format!("expected text starting with {label:?}")
    };
    Err(SignatureError::Malformed { what, reason })
}

fn message(digest: &Sha256Digest) -> Vec<u8> {
    [DOMAIN, digest.as_bytes()].concat()
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex<const N: usize>(what: &'static str, text: &str) -> Result<[u8; N], SignatureError> {
    let text = text.trim();
    let malformed = |reason: String| SignatureError::Malformed { what, reason };
    if text.len() != 2 * N || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(malformed(format!("expected {} hexadecimal digits", 2 * N)));
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("checked hex");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_seed([n; 32])
    }

    #[test]
    fn a_signature_verifies_with_its_key_only() {
        let digest = Sha256Digest::of(b"payload bytes");
        let sig = key(1).sign(&digest);
        assert!(verify(&digest, &sig, &[key(1).verifying_key()]).is_ok());
        assert!(
            verify(
                &digest,
                &sig,
                &[key(2).verifying_key(), key(1).verifying_key()]
            )
            .is_ok()
        );
        assert!(matches!(
            verify(&digest, &sig, &[key(2).verifying_key()]),
            Err(SignatureError::Untrusted)
        ));
        assert!(matches!(
            verify(&digest, &sig, &[]),
            Err(SignatureError::Untrusted)
        ));
    }

    #[test]
    fn a_signature_does_not_cover_another_payload() {
        let sig = key(1).sign(&Sha256Digest::of(b"one"));
        let other = Sha256Digest::of(b"two");
        assert!(verify(&other, &sig, &[key(1).verifying_key()]).is_err());
    }

    #[test]
    fn keys_round_trip_through_text() {
        let k = key(7);
        let again = SigningKey::from_text(&k.to_text()).unwrap();
        assert_eq!(again.to_text(), k.to_text());
        let pk = k.verifying_key();
        assert!(pk.to_text().starts_with("ed25519-public:"));
        assert_eq!(VerifyingKey::from_text(&pk.to_text()).unwrap(), pk);
        assert!(VerifyingKey::from_text("ed25519-public:abc").is_err());
        assert!(verify(&Sha256Digest::of(b""), "zz", &[pk]).is_err());
    }

    /// Regression: both key kinds were bare hex of the same length, so a
    /// secret key passed as a trusted key was often accepted as a public one.
    #[test]
    fn a_secret_key_is_never_taken_for_a_public_one() {
        let secret = key(9).to_text();
        let err = VerifyingKey::from_text(&secret).unwrap_err().to_string();
        assert!(err.contains("this is a secret key"), "{err}");
        let public = key(9).verifying_key().to_text();
        let err = SigningKey::from_text(&public).err().unwrap().to_string();
        assert!(err.contains("this is a public key"), "{err}");
    }
}

//! Optional ed25519 signatures over a payload's SHA-256 digest (`<payload>.sig`).
//!
//! Keys and signatures are stored as one line of lowercase hex, so they can be
//! pasted into configuration and compared by eye. The signed message is a
//! domain-separation prefix followed by the payload digest, so a signature
//! made for a payload can never be replayed as a signature over anything else.

use std::path::Path;

use ed25519_dalek::{Signature, Signer};

use crate::checksum::Sha256Digest;

const DOMAIN: &[u8] = b"cronium-payload-v1\0";

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

    pub fn from_hex(text: &str) -> Result<SigningKey, SignatureError> {
        Ok(SigningKey::from_seed(decode_hex("signing key", text)?))
    }

    pub fn to_hex(&self) -> String {
        encode_hex(self.0.as_bytes())
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
    pub fn from_hex(text: &str) -> Result<VerifyingKey, SignatureError> {
        let bytes: [u8; 32] = decode_hex("public key", text)?;
        ed25519_dalek::VerifyingKey::from_bytes(&bytes)
            .map(VerifyingKey)
            .map_err(|e| SignatureError::Malformed {
                what: "public key",
                reason: e.to_string(),
            })
    }

    pub fn read_file(path: &Path) -> Result<VerifyingKey, SignatureError> {
        VerifyingKey::from_hex(&read_small(path)?)
    }

    pub fn to_hex(&self) -> String {
        encode_hex(self.0.as_bytes())
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
    fn keys_round_trip_through_hex() {
        let k = key(7);
        assert_eq!(
            SigningKey::from_hex(&k.to_hex()).unwrap().to_hex(),
            k.to_hex()
        );
        let pk = k.verifying_key();
        assert_eq!(VerifyingKey::from_hex(&pk.to_hex()).unwrap(), pk);
        assert!(VerifyingKey::from_hex("abc").is_err());
        assert!(verify(&Sha256Digest::of(b""), "zz", &[pk]).is_err());
    }
}

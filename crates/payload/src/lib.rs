//! Cronium payload format v1: the archive every script execution goes through.
//!
//! A payload is a gzip-compressed tar archive holding `manifest.yaml` and one
//! script, with a `sha256sum`-style checksum file beside it and, optionally,
//! an ed25519 signature. This crate builds payloads deterministically, checks
//! them and unpacks them safely. It does no networking, no database access and
//! runs nothing: it is shared by the server and the `cronium-runner` binary.

pub mod builder;
pub mod checksum;
pub mod extract;
pub mod manifest;
pub mod signature;
#[cfg(feature = "testing")]
pub mod testing;

pub use builder::{
    BuiltPayload, MAX_SCRIPT_BYTES, PayloadSpec, checksum_path, signature_path, write_atomically,
};
pub use checksum::{ChecksumError, Sha256Digest};
pub use extract::{ExtractError, Extracted, Limits, Listing, extract, read_manifest, read_script};
pub use manifest::{EnvKey, Interpreter, Manifest, ManifestError, Metadata};
pub use signature::{SignatureError, SigningKey, VerifyingKey};

/// Name of the manifest inside every payload.
pub const MANIFEST_NAME: &str = "manifest.yaml";
/// The only manifest version this crate reads and writes.
pub const MANIFEST_VERSION: &str = "v1";

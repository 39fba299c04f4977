//! Secrets at rest: a master key, and XChaCha20-Poly1305 sealing bound to what the secret is for.
//!
//! A sealed blob is `[version][24-byte random nonce][ciphertext + 16-byte tag]`.
//! The associated data names the blob's purpose (`cronium/seal/v1/<purpose>`),
//! so a blob copied from one column into another (say, server credentials
//! into an event's secret environment) fails to open instead of being used
//! in the wrong place. The store only ever sees sealed blobs; the database
//! alone reveals nothing without the master key.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use cronium_core::{HeaderName, SealedHeaders, SealedSecrets};
use cronium_payload::EnvKey;
use serde::{Deserialize, Serialize};

use crate::files;

/// First byte of every sealed blob; a new format gets a new number.
const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// The 256-bit key all secrets are sealed under.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    pub fn generate() -> MasterKey {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the operating system's random source");
        MasterKey(key)
    }

    /// Parses 64 hexadecimal digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<MasterKey, SealError> {
        let text = text.trim();
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SealError::BadKey("expected 64 hexadecimal digits".into()));
        }
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).expect("checked hex");
        }
        Ok(MasterKey(key))
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads `path` (64 hex digits), or creates it (mode 0600) with a fresh
    /// key if it does not exist. Never replaces an existing file: a lost key
    /// means lost secrets, so an unreadable file is an error, not a reason to
    /// start over.
    pub fn load_or_create(path: &Path) -> io::Result<(MasterKey, bool)> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                files::warn_if_not_private(path);
                let key = MasterKey::from_hex(&text).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{}: {e}", path.display()),
                    )
                })?;
                Ok((key, false))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let key = MasterKey::generate();
                match files::create_private_file(path, format!("{}\n", key.to_hex()).as_bytes()) {
                    Ok(()) => Ok((key, true)),
                    // Another process created it first: use theirs.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        MasterKey::load_or_create(path)
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// What a sealed blob is for; part of the associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// An event's secret environment (JSON object of name to value).
    EventSecretEnv,
    /// A server's SSH credentials (JSON, see [`Credentials`]).
    ServerCredentials,
    /// An HTTP event's secret headers (JSON object of name to value).
    HttpSecretHeaders,
    /// A notification channel's signing secret (`whsec_…`, as text).
    ChannelSecret,
    /// A Slack or Discord channel's URL (as text): whoever has it can post.
    ChannelUrl,
    /// An email channel's SMTP relay password (as text).
    ChannelSmtpPassword,
    /// A secret variable's value (compact JSON).
    VariableValue,
    /// A signed workflow webhook's signing secret (`whsec_…`, as text).
    WorkflowHookSecret,
    /// The master key's canary ([`CANARY`]): proves which key a database's
    /// secrets are sealed with.
    MasterKeyCanary,
}

/// What the master key's canary seals.
pub const CANARY: &[u8] = b"cronium master key canary v1";

impl Purpose {
    pub fn label(self) -> &'static str {
        match self {
            Purpose::EventSecretEnv => "event-secret-env",
            Purpose::ServerCredentials => "server-credentials",
            Purpose::HttpSecretHeaders => "http-secret-headers",
            Purpose::ChannelSecret => "channel-secret",
            Purpose::ChannelUrl => "channel-url",
            Purpose::ChannelSmtpPassword => "channel-smtp-password",
            Purpose::WorkflowHookSecret => "workflow-hook-secret",
            Purpose::MasterKeyCanary => "master-key-canary",
            Purpose::VariableValue => "variable-value",
        }
    }

    fn associated_data(self) -> Vec<u8> {
        format!("cronium/seal/v1/{}", self.label()).into_bytes()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("invalid master key: {0}")]
    BadKey(String),
    #[error("sealed data is malformed: {0}")]
    Malformed(&'static str),
    /// Wrong key, wrong purpose, or the blob was altered: the cipher cannot tell which.
    #[error("sealed data does not open with this key for this purpose")]
    Unauthentic,
    #[error("sealed data holds unexpected content: {0}")]
    Content(String),
}

/// Seals and opens secrets under one master key.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl Sealer {
    pub fn new(key: &MasterKey) -> Sealer {
        Sealer {
            cipher: XChaCha20Poly1305::new(&key.0.into()),
        }
    }

    pub fn seal(&self, purpose: Purpose, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the operating system's random source");
        let aad = purpose.associated_data();
        let ciphertext = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any in-memory message");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    pub fn open(&self, purpose: Purpose, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let (&version, rest) = sealed.split_first().ok_or(SealError::Malformed("empty"))?;
        if version != FORMAT_V1 {
            return Err(SealError::Malformed("unknown format version"));
        }
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Malformed("too short"));
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at NONCE_LEN");
        let aad = purpose.associated_data();
        self.cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Unauthentic)
    }

    /// The master key's canary, sealed with this key.
    pub fn seal_canary(&self) -> Vec<u8> {
        self.seal(Purpose::MasterKeyCanary, CANARY)
    }

    /// Whether `sealed` is the canary sealed with this very key.
    pub fn opens_canary(&self, sealed: &[u8]) -> bool {
        self.open(Purpose::MasterKeyCanary, sealed)
            .is_ok_and(|plain| plain == CANARY)
    }

    /// Seals a secret environment. The names stay readable (they are not
    /// secret and the API lists them); an empty map has no ciphertext.
    pub fn seal_env(&self, env: &BTreeMap<EnvKey, String>) -> SealedSecrets {
        if env.is_empty() {
            return SealedSecrets::default();
        }
        let plain: BTreeMap<&str, &str> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let json = serde_json::to_vec(&plain).expect("a map of strings serializes");
        SealedSecrets {
            names: env.keys().cloned().collect::<BTreeSet<_>>(),
            sealed: self.seal(Purpose::EventSecretEnv, &json),
        }
    }

    pub fn open_env(&self, secrets: &SealedSecrets) -> Result<BTreeMap<EnvKey, String>, SealError> {
        if secrets.sealed.is_empty() {
            return Ok(BTreeMap::new());
        }
        let json = self.open(Purpose::EventSecretEnv, &secrets.sealed)?;
        let plain: BTreeMap<String, String> =
            serde_json::from_slice(&json).map_err(|e| SealError::Content(e.to_string()))?;
        let env = plain
            .into_iter()
            .map(|(k, v)| Ok((EnvKey::new(&k).map_err(SealError::Content)?, v)))
            .collect::<Result<BTreeMap<_, _>, SealError>>()?;
        if env.keys().ne(secrets.names.iter()) {
            return Err(SealError::Content(
                "the sealed names differ from the listed ones".into(),
            ));
        }
        Ok(env)
    }

    /// Seals an HTTP event's secret headers; the names stay readable, as
    /// with [`Sealer::seal_env`].
    pub fn seal_headers(&self, headers: &BTreeMap<HeaderName, String>) -> SealedHeaders {
        if headers.is_empty() {
            return SealedHeaders::default();
        }
        let plain: BTreeMap<&str, &str> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let json = serde_json::to_vec(&plain).expect("a map of strings serializes");
        SealedHeaders {
            names: headers.keys().cloned().collect(),
            sealed: self.seal(Purpose::HttpSecretHeaders, &json),
        }
    }

    pub fn open_headers(
        &self,
        headers: &SealedHeaders,
    ) -> Result<BTreeMap<HeaderName, String>, SealError> {
        if headers.sealed.is_empty() {
            return Ok(BTreeMap::new());
        }
        let json = self.open(Purpose::HttpSecretHeaders, &headers.sealed)?;
        let plain: BTreeMap<String, String> =
            serde_json::from_slice(&json).map_err(|e| SealError::Content(e.to_string()))?;
        let opened = plain
            .into_iter()
            .map(|(k, v)| {
                let name = HeaderName::new(&k, "secretHeaders")
                    .map_err(|e| SealError::Content(e.message))?;
                Ok((name, v))
            })
            .collect::<Result<BTreeMap<_, _>, SealError>>()?;
        if opened.keys().ne(headers.names.iter()) {
            return Err(SealError::Content(
                "the sealed names differ from the listed ones".into(),
            ));
        }
        Ok(opened)
    }

    /// Seals a channel's signing secret (`whsec_` and base64 of the key).
    pub fn seal_channel_secret(&self, secret: &str) -> Vec<u8> {
        self.seal(Purpose::ChannelSecret, secret.as_bytes())
    }

    pub fn open_channel_secret(&self, sealed: &[u8]) -> Result<String, SealError> {
        let plain = self.open(Purpose::ChannelSecret, sealed)?;
        String::from_utf8(plain).map_err(|e| SealError::Content(e.to_string()))
    }

    /// Seals a signed workflow webhook's signing secret (`whsec_…`).
    pub fn seal_hook_secret(&self, secret: &str) -> Vec<u8> {
        self.seal(Purpose::WorkflowHookSecret, secret.as_bytes())
    }

    pub fn open_hook_secret(&self, sealed: &[u8]) -> Result<String, SealError> {
        let plain = self.open(Purpose::WorkflowHookSecret, sealed)?;
        String::from_utf8(plain).map_err(|e| SealError::Content(e.to_string()))
    }

    /// Seals a chat channel's URL, which is its credential.
    pub fn seal_channel_url(&self, url: &str) -> Vec<u8> {
        self.seal(Purpose::ChannelUrl, url.as_bytes())
    }

    pub fn open_channel_url(&self, sealed: &[u8]) -> Result<String, SealError> {
        let plain = self.open(Purpose::ChannelUrl, sealed)?;
        String::from_utf8(plain).map_err(|e| SealError::Content(e.to_string()))
    }

    /// Seals an email channel's relay password.
    pub fn seal_smtp_password(&self, password: &str) -> Vec<u8> {
        self.seal(Purpose::ChannelSmtpPassword, password.as_bytes())
    }

    pub fn open_smtp_password(&self, sealed: &[u8]) -> Result<String, SealError> {
        let plain = self.open(Purpose::ChannelSmtpPassword, sealed)?;
        String::from_utf8(plain).map_err(|e| SealError::Content(e.to_string()))
    }

    pub fn seal_credentials(&self, credentials: &Credentials) -> Vec<u8> {
        let mut json = Vec::new();
        SealedCredentials::serialize(credentials, &mut serde_json::Serializer::new(&mut json))
            .expect("credentials serialize");
        self.seal(Purpose::ServerCredentials, &json)
    }

    pub fn open_credentials(&self, sealed: &[u8]) -> Result<Credentials, SealError> {
        let json = self.open(Purpose::ServerCredentials, sealed)?;
        SealedCredentials::deserialize(&mut serde_json::Deserializer::from_slice(&json))
            .map_err(|e| SealError::Content(e.to_string()))
    }
}

/// Secret variables: the store calls this inside the write's transaction,
/// once it knows the variable is secret (see `cronium_store::VariableSealer`).
impl cronium_store::VariableSealer for Sealer {
    fn seal(&self, value: &serde_json::Value) -> Vec<u8> {
        Sealer::seal(self, Purpose::VariableValue, value.to_string().as_bytes())
    }

    fn open(&self, sealed: &[u8]) -> Result<serde_json::Value, String> {
        let json = Sealer::open(self, Purpose::VariableValue, sealed).map_err(|e| e.to_string())?;
        serde_json::from_slice(&json).map_err(|e| SealError::Content(e.to_string()).to_string())
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(..)")
    }
}

/// How Cronium logs in to a server: the SSH client's own type, only ever
/// stored sealed.
pub use cronium_ssh::Credentials;

/// How [`Credentials`] are written inside a sealed blob. The format is
/// this module's business (the SSH client knows nothing of storage), so it
/// is declared here over the SSH client's type.
#[derive(Serialize, Deserialize)]
#[serde(remote = "Credentials", tag = "kind", rename_all = "lowercase")]
enum SealedCredentials {
    Key {
        #[serde(rename = "privateKey")]
        private_key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        passphrase: Option<String>,
    },
    Password {
        password: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> Sealer {
        Sealer::new(&MasterKey::generate())
    }

    #[test]
    fn round_trip() {
        let s = sealer();
        for msg in [&b""[..], b"x", &[7u8; 10_000]] {
            let sealed = s.seal(Purpose::EventSecretEnv, msg);
            assert_eq!(sealed.len(), 1 + NONCE_LEN + msg.len() + TAG_LEN);
            assert_eq!(s.open(Purpose::EventSecretEnv, &sealed).unwrap(), msg);
        }
        // A random nonce each time: sealing twice never gives the same bytes.
        assert_ne!(
            s.seal(Purpose::EventSecretEnv, b"same"),
            s.seal(Purpose::EventSecretEnv, b"same")
        );
    }

    #[test]
    fn variable_values_round_trip_sealed_for_their_purpose_only() {
        use cronium_store::VariableSealer;
        let s = sealer();
        let value = serde_json::json!({"token": "hunter2", "n": [1, 2]});
        let sealed = VariableSealer::seal(&s, &value);
        assert!(!String::from_utf8_lossy(&sealed).contains("hunter2"));
        assert_eq!(VariableSealer::open(&s, &sealed), Ok(value));
        // A blob sealed for another column does not open as a variable.
        let other = s.seal(Purpose::ChannelSecret, b"\"hunter2\"");
        assert!(VariableSealer::open(&s, &other).is_err());
    }

    #[test]
    fn any_tampering_is_detected() {
        let s = sealer();
        let sealed = s.seal(Purpose::ServerCredentials, b"hunter2 is my password");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(
                s.open(Purpose::ServerCredentials, &bad).is_err(),
                "byte {i}"
            );
        }
        assert_eq!(
            s.open(Purpose::ServerCredentials, &sealed[..sealed.len() - 1]),
            Err(SealError::Unauthentic)
        );
        assert!(s.open(Purpose::ServerCredentials, &sealed[..10]).is_err());
        assert!(s.open(Purpose::ServerCredentials, &[]).is_err());
    }

    #[test]
    fn a_blob_does_not_open_for_another_purpose() {
        let s = sealer();
        let sealed = s.seal(Purpose::ServerCredentials, b"secret");
        assert_eq!(
            s.open(Purpose::EventSecretEnv, &sealed),
            Err(SealError::Unauthentic)
        );
        // A relay password is no signing secret or chat URL, and back.
        let password = s.seal_smtp_password("hunter2");
        assert_eq!(s.open_smtp_password(&password).unwrap(), "hunter2");
        assert!(s.open_channel_secret(&password).is_err());
        assert!(s.open_smtp_password(&s.seal_channel_url("x")).is_err());
    }

    #[test]
    fn the_canary_opens_only_under_the_key_that_sealed_it() {
        let mine = Sealer::new(&MasterKey::generate());
        let theirs = Sealer::new(&MasterKey::generate());
        let canary = mine.seal_canary();
        assert!(mine.opens_canary(&canary));
        assert!(!theirs.opens_canary(&canary));
        // Another sealed value is no canary, even under the right key.
        assert!(!mine.opens_canary(&mine.seal(Purpose::ChannelSecret, CANARY)));
        assert!(!mine.opens_canary(&mine.seal(Purpose::MasterKeyCanary, b"something else")));
    }

    #[test]
    fn a_blob_does_not_open_under_another_key() {
        let sealed = sealer().seal(Purpose::EventSecretEnv, b"secret");
        assert_eq!(
            sealer().open(Purpose::EventSecretEnv, &sealed),
            Err(SealError::Unauthentic)
        );
    }

    #[test]
    fn secret_env_and_credentials_round_trip_without_plaintext() {
        let s = sealer();
        let env: BTreeMap<EnvKey, String> = [
            (
                EnvKey::new("DB_PASSWORD").unwrap(),
                "s3cr3t-value".to_string(),
            ),
            (EnvKey::new("API_KEY").unwrap(), "k".to_string()),
        ]
        .into();
        let sealed = s.seal_env(&env);
        assert_eq!(sealed.names.len(), 2);
        assert!(!contains(&sealed.sealed, b"s3cr3t-value"));
        assert_eq!(s.open_env(&sealed).unwrap(), env);
        assert_eq!(s.seal_env(&BTreeMap::new()), SealedSecrets::default());
        assert!(s.open_env(&SealedSecrets::default()).unwrap().is_empty());
        // Names that do not match the sealed content are refused.
        let mut renamed = sealed.clone();
        renamed.names.insert(EnvKey::new("OTHER").unwrap());
        assert!(s.open_env(&renamed).is_err());

        let creds = Credentials::Key {
            private_key: "-----BEGIN OPENSSH PRIVATE KEY-----".into(),
            passphrase: Some("pp".into()),
        };
        let blob = s.seal_credentials(&creds);
        assert!(!contains(&blob, b"OPENSSH"));
        assert_eq!(s.open_credentials(&blob).unwrap(), creds);
        assert!(!format!("{creds:?}").contains("OPENSSH"));
        // The format sealed at rest, unchanged since servers were first stored.
        let stored = s.open(Purpose::ServerCredentials, &blob).unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&stored).unwrap(),
            serde_json::json!({"kind": "key", "privateKey": "-----BEGIN OPENSSH PRIVATE KEY-----", "passphrase": "pp"})
        );
        let password = s.seal(
            Purpose::ServerCredentials,
            br#"{"kind":"password","password":"pw"}"#,
        );
        assert_eq!(
            s.open_credentials(&password).unwrap(),
            Credentials::Password {
                password: "pw".into()
            }
        );
    }

    #[test]
    fn secret_headers_round_trip_and_are_bound_to_their_purpose() {
        let s = sealer();
        let name = HeaderName::new("Authorization", "secretHeaders").unwrap();
        let headers: BTreeMap<HeaderName, String> = [(name, "Bearer t0ken-9c1e".into())].into();
        let sealed = s.seal_headers(&headers);
        assert!(!contains(&sealed.sealed, b"t0ken-9c1e"));
        assert_eq!(s.open_headers(&sealed).unwrap(), headers);
        assert_eq!(s.seal_headers(&BTreeMap::new()), SealedHeaders::default());
        // Moved into another column, the blob does not open.
        let moved = SealedSecrets {
            names: BTreeSet::new(),
            sealed: sealed.sealed.clone(),
        };
        assert_eq!(s.open_env(&moved), Err(SealError::Unauthentic));
    }

    #[test]
    fn a_channel_secret_round_trips_and_opens_for_no_other_purpose() {
        let s = sealer();
        let sealed = s.seal_channel_secret("whsec_c2VjcmV0LWtleQ==");
        assert!(!contains(&sealed, b"whsec_"));
        assert_eq!(
            s.open_channel_secret(&sealed).unwrap(),
            "whsec_c2VjcmV0LWtleQ=="
        );
        assert_eq!(s.open_credentials(&sealed), Err(SealError::Unauthentic));
    }

    #[test]
    fn a_chat_url_round_trips_and_is_no_signing_secret() {
        let s = sealer();
        let url = "https://hooks.slack.com/services/T1/B2/token";
        let sealed = s.seal_channel_url(url);
        assert!(!contains(&sealed, b"hooks.slack.com"));
        assert_eq!(s.open_channel_url(&sealed).unwrap(), url);
        assert_eq!(s.open_channel_secret(&sealed), Err(SealError::Unauthentic));
    }

    #[test]
    fn master_key_hex_and_file() {
        let key = MasterKey::generate();
        assert_eq!(MasterKey::from_hex(&key.to_hex()).unwrap().0, key.0);
        assert!(MasterKey::from_hex("zz").is_err());
        assert!(MasterKey::from_hex(&"g".repeat(64)).is_err());
        assert!(!format!("{key:?}").contains(&key.to_hex()));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let (first, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(created);
        let (second, created) = MasterKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(first.0, second.0);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, "garbage").unwrap();
        assert!(MasterKey::load_or_create(&path).is_err(), "never replaced");
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }
}

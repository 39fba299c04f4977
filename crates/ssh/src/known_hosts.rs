//! Host keys and pins: reading `known_hosts` lines and SHA256 fingerprints, writing lines to pin.
//!
//! A pin belongs to one server record, so only the key is compared; the host
//! field of a `known_hosts` line is checked for shape but not matched against
//! the address (the record already says which host it is for).

use std::fmt;

use russh::keys::{HashAlg, PublicKey};

use crate::SshError;

/// A server's public host key, as seen during a handshake or as pinned.
#[derive(Clone, PartialEq, Eq)]
pub struct HostKey(PublicKey);

impl HostKey {
    /// Drops the comment, which is not part of the key: keys compare equal
    /// when their algorithm and key material are.
    pub(crate) fn new(mut key: PublicKey) -> HostKey {
        key.set_comment("");
        HostKey(key)
    }

    /// Reads `keytype base64 [comment]`, as in a `.pub` file.
    pub fn from_openssh(text: &str) -> Result<HostKey, SshError> {
        PublicKey::from_openssh(text.trim())
            .map(HostKey::new)
            .map_err(|e| bad(format!("cannot read the public key {}: {e}", excerpt(text))))
    }

    /// The SHA-256 fingerprint exactly as `ssh-keygen -lf` prints it
    /// (`SHA256:` and unpadded base64).
    pub fn fingerprint(&self) -> String {
        self.0.fingerprint(HashAlg::Sha256).to_string()
    }

    /// The key type, such as `ssh-ed25519`.
    pub fn algorithm(&self) -> String {
        self.0.algorithm().as_str().to_string()
    }

    /// `keytype base64`, without a comment.
    pub fn to_openssh(&self) -> String {
        self.0
            .to_openssh()
            .expect("a parsed public key encodes")
            .trim()
            .to_string()
    }

    /// The `known_hosts` line that pins this key for `host:port`, in the form
    /// OpenSSH writes (`[host]:port` unless the port is 22).
    pub fn known_hosts_line(&self, host: &str, port: u16) -> String {
        let host = if port == 22 {
            host.to_string()
        } else {
            format!("[{host}]:{port}")
        };
        format!("{host} {}", self.to_openssh())
    }
}

impl fmt::Debug for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostKey({} {})", self.algorithm(), self.fingerprint())
    }
}

/// What a server's host key must be: the whole key, or only its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPin {
    Key(HostKey),
    /// `SHA256:` and 43 characters of unpadded base64.
    Fingerprint(String),
}

impl HostKeyPin {
    /// Reads a pin from one of:
    /// - a `known_hosts` line: `host[,host…] keytype base64 [comment]`, where
    ///   a host may be `[host]:port` or hashed (`|1|salt|hash`);
    /// - a public key: `keytype base64 [comment]`;
    /// - a fingerprint: `SHA256:…` as `ssh-keygen -lf` prints it.
    ///
    /// Marker lines (`@cert-authority`, `@revoked`) are refused: a pin is one
    /// key for one server.
    pub fn parse(text: &str) -> Result<HostKeyPin, SshError> {
        let line = text.trim();
        if line.is_empty() {
            return Err(bad("empty line".into()));
        }
        if line.contains('\n') {
            return Err(bad("expected one line, got several".into()));
        }
        if let Some(rest) = line.strip_prefix("SHA256:") {
            let ok = rest.len() == 43
                && rest
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/');
            if !ok {
                return Err(bad(format!(
                    "{} is not a SHA256 fingerprint (expected SHA256: and 43 base64 characters, as `ssh-keygen -lf` prints)",
                    excerpt(line)
                )));
            }
            return Ok(HostKeyPin::Fingerprint(line.to_string()));
        }
        if line.starts_with('@') {
            return Err(bad(format!(
                "{}: marker lines (@cert-authority, @revoked) cannot pin a host key",
                excerpt(line)
            )));
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let key_fields = if looks_like_key_type(fields[0]) {
            &fields[..]
        } else {
            check_hosts_field(fields[0], line)?;
            &fields[1..]
        };
        match key_fields {
            [key_type, base64, ..] => {
                let key = HostKey::from_openssh(&format!("{key_type} {base64}"))?;
                if key.algorithm() != *key_type {
                    return Err(bad(format!(
                        "{}: the key type says {key_type} but the key is {}",
                        excerpt(line),
                        key.algorithm()
                    )));
                }
                Ok(HostKeyPin::Key(key))
            }
            _ => Err(bad(format!(
                "{} is not a known_hosts line (expected `host keytype base64`, `[host]:port keytype base64` or a SHA256: fingerprint)",
                excerpt(line)
            ))),
        }
    }

    /// Whether `key` is the pinned key.
    pub fn matches(&self, key: &HostKey) -> bool {
        match self {
            HostKeyPin::Key(pinned) => pinned == key,
            HostKeyPin::Fingerprint(fingerprint) => *fingerprint == key.fingerprint(),
        }
    }

    /// The pinned key's fingerprint (`SHA256:…`).
    pub fn fingerprint(&self) -> String {
        match self {
            HostKeyPin::Key(key) => key.fingerprint(),
            HostKeyPin::Fingerprint(fingerprint) => fingerprint.clone(),
        }
    }
}

/// The first line of a `known_hosts` file that holds a key for `host` on
/// `port`, as it is written (so a hashed entry stays hashed): a plain name,
/// `[host]:port` for a port other than 22, or a hashed (`|1|salt|hash`)
/// name, among the line's comma-separated hosts. Comments, marker lines
/// (`@cert-authority`, `@revoked`) and negated patterns are passed over;
/// wildcard patterns are not expanded, so only an entry for this host pins it.
pub fn find_known_host(text: &str, host: &str, port: u16) -> Option<String> {
    let wanted = if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    };
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with('@'))
        .find(|line| {
            let hosts = line.split_whitespace().next().unwrap_or_default();
            hosts
                .split(',')
                .any(|entry| host_entry_matches(entry, &wanted))
                && HostKeyPin::parse(line).is_ok()
        })
        .map(str::to_string)
}

fn host_entry_matches(entry: &str, wanted: &str) -> bool {
    use base64::Engine as _;
    use hmac::{Hmac, KeyInit, Mac};
    let Some(hashed) = entry.strip_prefix("|1|") else {
        return entry == wanted;
    };
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let (Ok(salt), Ok(hash)) = (b64.decode(salt), b64.decode(hash)) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(wanted.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

fn looks_like_key_type(field: &str) -> bool {
    ["ssh-", "ecdsa-sha2-", "sk-"]
        .iter()
        .any(|prefix| field.starts_with(prefix))
}

fn check_hosts_field(field: &str, line: &str) -> Result<(), SshError> {
    for host in field.split(',') {
        let ok = if host.starts_with("|1|") {
            host.split('|').count() == 4
        } else if let Some(rest) = host.strip_prefix('[') {
            match rest.split_once("]:") {
                Some((name, port)) => {
                    !name.is_empty() && port.parse::<u16>().is_ok_and(|port| port > 0)
                }
                None => false,
            }
        } else {
            !host.is_empty() && !host.contains(['[', ']'])
        };
        if !ok {
            return Err(bad(format!(
                "{}: bad host {host:?} (expected a name, an address or [host]:port)",
                excerpt(line)
            )));
        }
    }
    Ok(())
}

fn bad(reason: String) -> SshError {
    SshError::KnownHosts(reason)
}

/// The start of a line for error messages, so a pasted blob stays readable.
fn excerpt(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() <= 80 {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(77).collect();
        format!("{head:?}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    #[test]
    fn every_known_hosts_form_pins_the_same_key() {
        let plain = HostKeyPin::parse(KEY).unwrap();
        for line in [
            format!("example.com {KEY}"),
            format!("[10.0.0.5]:2222 {KEY} comment words"),
            format!("a.example,b.example,[c.example]:22 {KEY}"),
            format!("|1|F1E1KeoE/eEWhi10WpGv4OdiO6Y=|3988QV0VE8wmZL7suNrYQLITLCg= {KEY}"),
            format!("  example.com   {KEY}  "),
        ] {
            assert_eq!(HostKeyPin::parse(&line).unwrap(), plain, "{line}");
        }
        let HostKeyPin::Key(key) = plain else {
            panic!()
        };
        assert_eq!(key.to_openssh(), KEY);
        assert_eq!(key.known_hosts_line("h", 22), format!("h {KEY}"));
        assert_eq!(key.known_hosts_line("h", 2222), format!("[h]:2222 {KEY}"));
        let by_fingerprint = HostKeyPin::parse(&key.fingerprint()).unwrap();
        assert!(by_fingerprint.matches(&key));
    }

    #[test]
    fn known_hosts_files_are_searched_by_name_port_and_hash() {
        // `ssh-keygen -H` of "hashed.example" and of "[hashed.example]:2222".
        let hashed = "|1|B+4DJwuebHLk94+b+u4b1Ai+3mY=|DhVlLDJ7bKuQf45Ss6YlY8Aifq0=";
        let hashed_2222 = "|1|fyOfMn0dPjYdjkDQvzTqjJvLmuc=|gVzxtD3PcTdYruIq21J9WnDefXw=";
        let file = format!(
            "# comment\n@revoked plain.example {KEY}\nother.example {KEY}\n\
             a.example,plain.example {KEY}\n[plain.example]:2222 {KEY} on 2222\n\
             {hashed} {KEY}\n{hashed_2222} {KEY}\n"
        );
        let found = |h: &str, p: u16| find_known_host(&file, h, p);
        assert_eq!(
            found("plain.example", 22),
            Some(format!("a.example,plain.example {KEY}"))
        );
        assert_eq!(
            found("plain.example", 2222),
            Some(format!("[plain.example]:2222 {KEY} on 2222"))
        );
        assert_eq!(found("nowhere.example", 22), None);
        assert_eq!(found("other.example", 2200), None);
        assert_eq!(found("hashed.example", 22), Some(format!("{hashed} {KEY}")));
        assert_eq!(
            found("hashed.example", 2222),
            Some(format!("{hashed_2222} {KEY}"))
        );
        assert_eq!(found("hashed.example", 2200), None);
        assert_eq!(
            HostKeyPin::parse(&found("plain.example", 22).unwrap()).unwrap(),
            HostKeyPin::parse(KEY).unwrap()
        );
    }

    #[test]
    fn malformed_lines_say_what_is_wrong() {
        let cases = [
            ("", "empty line"),
            ("example.com", "not a known_hosts line"),
            ("example.com ssh-ed25519", "not a known_hosts line"),
            (
                "example.com ssh-ed25519 AAAAnotbase64!!",
                "cannot read the public key",
            ),
            ("[example.com]:x ssh-ed25519 AAAA", "bad host"),
            ("@revoked * ssh-ed25519 AAAA", "marker lines"),
            ("SHA256:short", "not a SHA256 fingerprint"),
            (
                "example.com ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
                "",
            ),
        ];
        for (line, expected) in cases {
            let err = HostKeyPin::parse(line).unwrap_err();
            assert_eq!(err.phase(), "known_hosts");
            assert!(err.to_string().contains(expected), "{line:?}: {err}");
        }
    }
}

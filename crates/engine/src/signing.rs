//! Standard Webhooks signatures: what a webhook channel's deliveries are signed with, and what a signed workflow webhook must carry.
//!
//! A secret is `whsec_<base64>` of the key bytes; a signature is
//! `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`, and a
//! `webhook-signature` header may list several, space-separated (a sender
//! rotating its secret signs with both).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2_for_hmac::Sha256;

const SECRET_PREFIX: &str = "whsec_";

/// How far a signed call's `webhook-timestamp` may be from now: older
/// calls are replays, newer ones come from a clock that is wrong.
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 300;

/// A signing key, opened. No `Debug`: it must not be printed.
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    /// A new random key and the `whsec_` secret that encodes it.
    pub fn generate() -> (SigningKey, String) {
        let mut bytes = vec![0u8; 32];
        getrandom::fill(&mut bytes).expect("the operating system's random source");
        let secret = format!("{SECRET_PREFIX}{}", BASE64.encode(&bytes));
        (SigningKey(bytes), secret)
    }

    /// The key a `whsec_<base64>` secret encodes. Errors say what the
    /// secret is not ("does not start with whsec_"), never quote it.
    pub fn parse(secret: &str) -> Result<SigningKey, String> {
        let encoded = secret
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or("does not start with whsec_")?;
        let key = BASE64
            .decode(encoded)
            .map_err(|_| "is not whsec_ and base64")?;
        if key.is_empty() {
            return Err("is empty".into());
        }
        Ok(SigningKey(key))
    }

    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC takes a key of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
    pub fn sign(&self, id: &str, timestamp: &str, body: &[u8]) -> String {
        let tag = self.mac(id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", BASE64.encode(tag))
    }

    /// Checks a call's `webhook-id`, `webhook-timestamp` and
    /// `webhook-signature` against `body`: one `v1` signature must match
    /// (compared in constant time) and the timestamp be within
    /// [`TIMESTAMP_TOLERANCE_SECS`] of `now`. The error says which failed,
    /// never what was expected.
    pub fn verify(
        &self,
        id: &str,
        timestamp: &str,
        signatures: &str,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), &'static str> {
        let at: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| "webhook-timestamp is not a number of seconds")?;
        if (now.timestamp() - at).abs() > TIMESTAMP_TOLERANCE_SECS {
            return Err("webhook-timestamp is more than 5 minutes away from now");
        }
        let matched = signatures.split_whitespace().any(|entry| {
            let Some(tag) = entry.strip_prefix("v1,") else {
                return false;
            };
            let Ok(tag) = BASE64.decode(tag) else {
                return false;
            };
            self.mac(id, timestamp.trim(), body)
                .verify_slice(&tag)
                .is_ok()
        });
        if matched {
            Ok(())
        } else {
            Err("webhook-signature does not match the body")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signing_key_comes_from_whsec_and_base64_and_errors_never_quote_it() {
        assert!(SigningKey::parse("whsec_c2VjcmV0LWtleQ==").is_ok());
        for bad in ["c2VjcmV0LWtleQ==", "whsec_not base64!", "whsec_"] {
            let error = SigningKey::parse(bad).err().unwrap();
            assert!(
                !error.contains("c2Vj") && !error.contains("base64!"),
                "{error}"
            );
        }
    }

    #[test]
    fn the_signature_is_the_standard_webhooks_example() {
        // The test vector of the Standard Webhooks reference libraries.
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let signature = key.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", body);
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let at = DateTime::from_timestamp(1614265330, 0).unwrap();
        let verify = |sigs: &str, body: &[u8], now: DateTime<Utc>| {
            key.verify(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "1614265330",
                sigs,
                body,
                now,
            )
        };
        assert_eq!(verify(&signature, body, at), Ok(()));
        // One of several, as a sender rotating its secret sends them.
        assert_eq!(verify(&format!("v1,AAAA {signature}"), body, at), Ok(()));
        let later = at + chrono::Duration::seconds(301);
        assert_eq!(
            verify(&signature, body, later),
            Err("webhook-timestamp is more than 5 minutes away from now")
        );
        assert_eq!(
            verify(&signature, b"{\"test\": 1}", at),
            Err("webhook-signature does not match the body")
        );
        assert_eq!(
            verify("v2,abc", body, at),
            Err("webhook-signature does not match the body")
        );
        let (fresh, secret) = SigningKey::generate();
        assert!(secret.starts_with("whsec_"));
        let again = SigningKey::parse(&secret).unwrap();
        assert_eq!(fresh.sign("a", "1", b"x"), again.sign("a", "1", b"x"));
    }
}

//! Password hashing: argon2id with the crate's default cost (19 MiB, 2 passes, 1 lane: OWASP's minimum), PHC strings as stored, and verification that takes as long for an unknown user as for a known one.

use std::sync::LazyLock;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use cronium_core::{Password, PasswordHash};

fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::default())
}

/// Hashes a password with a fresh random 16-byte salt. Slow on purpose
/// (tens of milliseconds): call it off the async threads.
pub fn hash(password: &Password) -> PasswordHash {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).expect("the operating system's random source");
    let phc = argon2()
        .hash_password_with_salt(password.expose().as_bytes(), &salt)
        .expect("argon2 accepts a 16-byte salt and any password up to 4 GiB");
    PasswordHash::new(phc.to_string()).expect("argon2id produces an argon2id PHC string")
}

/// A hash of a random password, computed once: checked when the user does
/// not exist or has no password, so that answer takes as long as a wrong
/// password does and timing tells nothing about which names exist.
static DUMMY: LazyLock<PasswordHash> = LazyLock::new(|| {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    hash(&Password::new(text).expect("48 hex digits are a valid password"))
});

/// Whether `password` matches `stored`; with no stored hash, a dummy one is
/// checked (and the answer is always no). Slow: call it off the async threads.
pub fn verify(password: &str, stored: Option<&PasswordHash>) -> bool {
    let (hash, real) = match stored {
        Some(hash) => (hash, true),
        None => (&*DUMMY, false),
    };
    let matches = argon2()
        .verify_password(password.as_bytes(), hash.as_str())
        .is_ok();
    matches && real
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_salted_argon2id_and_verify_only_their_password() {
        let password = Password::new("correct horse battery".into()).unwrap();
        let a = hash(&password);
        let b = hash(&password);
        assert!(
            a.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{}",
            a.as_str()
        );
        assert_ne!(a, b, "each hash has its own salt");
        assert!(!a.as_str().contains("correct horse"));
        assert!(verify("correct horse battery", Some(&a)));
        assert!(verify("correct horse battery", Some(&b)));
        assert!(!verify("correct horse battery!", Some(&a)));
        assert!(!verify("", Some(&a)));
        // No stored hash: never a match, whatever is typed.
        assert!(!verify("correct horse battery", None));
    }
}

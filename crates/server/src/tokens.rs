//! API tokens (`crn_` + 43 base64url characters of 32 random bytes, stored only as a SHA-256 hash) and the extractors that authenticate a request and check its role, for the API and the web UI alike.
//!
//! A handler states the role it needs by the type of one argument:
//! [`Viewer`], [`Editor`] or [`Admin`]. Every route except the public ones
//! (`/healthz`, the OpenAPI document, the sign-in page) takes one, so no
//! handler can forget the check; the auth tests try every route without
//! credentials and with a weaker role.
//!
//! Where the caller comes from depends on the route, never on what the
//! client sends: the web UI's layer (`ui::guard`) marks each request it
//! guards with a [`BrowserRequest`] holding the caller of its session
//! cookie, and the extractors take that one; every other request needs a
//! bearer token, so a session cookie opens no API route and a token no page.

use std::fmt;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cronium_core::{Role, TokenHash, TokenId, UserId};
use cronium_store::Actor;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, PageError, Refusal};
use crate::state::AppState;

pub const PREFIX: &str = "crn_";
/// `crn_` plus 43 characters: 32 bytes in unpadded base64url.
pub const TOKEN_LEN: usize = PREFIX.len() + 43;

/// A token's secret, as shown to its creator once. Not `Debug`-printable.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSecret(String);

impl TokenSecret {
    pub fn generate() -> TokenSecret {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the operating system's random source");
        TokenSecret(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        hash(&self.0)
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(..)")
    }
}

/// The SHA-256 of the whole token text. Tokens carry 256 random bits, so no
/// salt or slow hash is needed (nothing to brute-force), and the lookup is
/// one indexed equality.
pub fn hash(token: &str) -> TokenHash {
    TokenHash(Sha256::digest(token.as_bytes()).into())
}

/// Whether `text` has a token's shape; anything else is refused before any lookup.
pub fn well_formed(text: &str) -> bool {
    text.len() == TOKEN_LEN
        && text.starts_with(PREFIX)
        && text[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// An API token (`Authorization: Bearer`), on `/api/v1` and `/metrics`.
    Token(TokenId),
    /// A browser session (the `cronium_session` cookie), on the UI's pages.
    Session,
}

/// Who is calling: the user, the role this request has (a token's own role,
/// or the signed-in user's), and how that was proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub via: Via,
    pub user: UserId,
    pub role: Role,
}

impl Caller {
    /// Who the audit log names for what this caller does: the token, or the
    /// user signed in to the UI.
    pub fn actor(&self) -> Actor {
        match self.via {
            Via::Token(token) => Actor::Token(token),
            Via::Session => Actor::User(self.user),
        }
    }
}

/// Put on a request by the web UI's layer: this route is a page, and this is
/// its session's caller (`None`: not signed in).
#[derive(Debug, Clone, Copy)]
pub struct BrowserRequest {
    pub caller: Option<Caller>,
}

/// Authenticates the request: `Authorization: Bearer crn_…` naming a live token.
pub async fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let header = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token> header"))?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    let token = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => {
            return Err(ApiError::unauthorized(
                "the Authorization header must be: Bearer <token>",
            ));
        }
    };
    if !well_formed(token) {
        return Err(ApiError::unauthorized("malformed API token"));
    }
    let found = state.store.use_token(&hash(token), crate::now()).await?;
    let token = found.ok_or_else(|| ApiError::unauthorized("unknown or revoked API token"))?;
    Ok(Caller {
        via: Via::Token(token.id),
        user: token.user_id,
        role: token.role,
    })
}

async fn require(parts: &Parts, state: &AppState, needed: Role) -> Result<Caller, Refusal> {
    let Some(browser) = parts.extensions.get::<BrowserRequest>() else {
        let caller = authenticate(parts, state).await.map_err(Refusal::Api)?;
        if !caller.role.allows(needed) {
            return Err(Refusal::Api(ApiError::forbidden(format!(
                "this needs the {needed} role; the token has {}",
                caller.role
            ))));
        }
        return Ok(caller);
    };
    let Some(caller) = browser.caller else {
        let next = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        return Err(Refusal::SignIn { next });
    };
    if !caller.role.allows(needed) {
        return Err(Refusal::Page(PageError(ApiError::forbidden(format!(
            "this needs the {needed} role; you are {}",
            caller.role
        )))));
    }
    Ok(caller)
}

macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident => $role:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name(pub Caller);

        impl FromRequestParts<AppState> for $name {
            type Rejection = Refusal;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &AppState,
            ) -> Result<Self, Refusal> {
                require(parts, state, $role).await.map($name)
            }
        }
    };
}

role_extractor!(
    /// A caller allowed to read (any live token).
    Viewer => Role::Viewer
);
role_extractor!(
    /// A caller allowed to create, change and delete events.
    Editor => Role::Editor
);
role_extractor!(
    /// A caller allowed to manage servers, tokens and the audit log.
    Admin => Role::Admin
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_documented_shape() {
        let a = TokenSecret::generate();
        let b = TokenSecret::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), TOKEN_LEN);
        assert!(well_formed(a.as_str()), "{}", a.as_str());
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.hash(), hash(a.as_str()));
        assert!(!format!("{a:?}").contains(a.as_str()));
        for bad in [
            "",
            "crn_",
            &format!("crx_{}", &a.as_str()[4..]),
            &format!("{}=", &a.as_str()[..TOKEN_LEN - 1]),
            &format!("{}a", a.as_str()),
        ] {
            assert!(!well_formed(bad), "{bad:?}");
        }
    }

    #[test]
    fn hash_is_sha256_of_the_text() {
        // sha256("abc")
        assert_eq!(hash("abc").0[..4], [0xba, 0x78, 0x16, 0xbf],);
    }
}

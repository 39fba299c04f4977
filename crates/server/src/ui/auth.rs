//! Signing in and out of the web UI: the session cookie, CSRF tokens, the same-origin check, and the limit on failed sign-ins.
//!
//! A session's cookie holds 32 random bytes (base64url); the database keeps
//! only their SHA-256, so a copy of the database opens no session. The
//! cookie is `HttpOnly; SameSite=Strict; Path=/`, plus `Secure` when the
//! public URL is https or the request came over https (this server's TLS,
//! or a trusted proxy's `X-Forwarded-Proto`). Each session has its own CSRF
//! token, which every form of its pages sends back (compared in constant
//! time by the guard).
//!
//! A failed sign-in counts against the client's address and against the
//! name tried; five failures of either within 15 minutes refuse further
//! attempts (429, `Retry-After`) without checking the password, and a
//! success clears both. The counts live in this process's memory: a restart
//! forgets them. The address is the one `crate::client` resolved: behind a
//! reverse proxy named with `--trusted-proxy` it is the forwarded client's;
//! behind any other proxy every client has the proxy's address (anyone can
//! send forwarded-for headers), so the per-name limit is what holds there.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use cronium_core::SessionHash;
use cronium_store::{Actor, AuditEntry, NewSession, SessionUser};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{SignedIn, UiState, assets};
use crate::client::Client;
use crate::error::{ApiError, FormBody, PageError, QueryParams, see_other};
use crate::passwords;
use crate::state::AppState;
use crate::tokens::Viewer;

pub const COOKIE: &str = "cronium_session";
/// Failed sign-ins allowed per address and per name within [`WINDOW`].
pub const MAX_FAILURES: usize = 5;
pub const WINDOW: TimeDelta = TimeDelta::minutes(15);
/// The message for every failed sign-in, whatever was wrong: it must not
/// tell which names exist.
pub const WRONG: &str = "wrong name or password";
/// Beyond this many counted names and addresses, those with no failure in
/// the window are forgotten, so a flood of made-up names cannot grow the
/// table without bound.
const MAX_TRACKED: usize = 10_000;

/// 32 random bytes as 43 base64url characters: a session secret or a CSRF token.
fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    URL_SAFE_NO_PAD.encode(bytes)
}

fn well_formed(secret: &str) -> bool {
    secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn session_hash(secret: &str) -> SessionHash {
    SessionHash(Sha256::digest(secret.as_bytes()).into())
}

/// The session secret the request's cookie holds, if it has one of the right shape.
pub fn session_secret(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|value| well_formed(value))
}

/// The live session of a cookie's secret, and its user.
pub async fn find_session(
    state: &AppState,
    secret: &str,
) -> Result<Option<SessionUser>, PageError> {
    Ok(state
        .store
        .use_session(
            &session_hash(secret),
            state.ui.clock.now(),
            state.ui.session_idle,
        )
        .await?)
}

fn cookie(ui: &UiState, client: &Client, value: &str, extra: &str) -> HeaderValue {
    let secure = if ui.secure_cookies || client.https {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/{secure}{extra}"
    ))
    .expect("a cookie of base64url and fixed text is a valid header")
}

/// The `Set-Cookie` that ends the cookie in the browser.
pub fn clearing_cookie(ui: &UiState, client: &Client) -> HeaderValue {
    cookie(ui, client, "", "; Max-Age=0")
}

/// `scheme://host[:port]` of a URL, lower-cased; `None` if it has none.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if scheme.is_empty() || authority.is_empty() {
        return None;
    }
    Some(format!("{scheme}://{authority}").to_ascii_lowercase())
}

/// Whether a state-changing request says it comes from this server: its
/// `Origin` (or, when a browser sent none, its `Referer`'s origin) is the
/// public URL's origin if one is configured, else `http(s)://` plus the
/// `Host` header. Neither header, or `Origin: null`: no.
pub fn same_origin(headers: &HeaderMap, public_origin: Option<&str>) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let claimed = match text(header::ORIGIN) {
        Some(origin) => Some(origin.trim().to_ascii_lowercase()),
        None => text(header::REFERER).and_then(origin_of),
    };
    let Some(claimed) = claimed else {
        return false;
    };
    match public_origin {
        Some(own) => claimed == own,
        None => {
            let Some(host) = text(header::HOST) else {
                return false;
            };
            let host = host.trim().to_ascii_lowercase();
            claimed == format!("http://{host}") || claimed == format!("https://{host}")
        }
    }
}

/// A field of a form body (`application/x-www-form-urlencoded`).
pub fn form_field(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(key)?, value))
        })
        .find(|(key, _)| key == name)
        .and_then(|(_, value)| percent_decode(value))
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// `text` with everything but unreserved characters and `/` percent-encoded,
/// to carry a path in a query parameter.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Whether the CSRF token sent matches the session's, in constant time.
pub fn csrf_matches(sent: Option<&str>, expected: &str) -> bool {
    sent.is_some_and(|sent| bool::from(sent.as_bytes().ct_eq(expected.as_bytes())))
}

/// Where to go after signing in: `next` if it is a path on this server,
/// else `/`. A path starting `//` or `/\` would be another host to a
/// browser, and anything with a scheme is another site.
pub fn local_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && !path.chars().any(char::is_control) =>
        {
            path.to_string()
        }
        _ => "/".to_string(),
    }
}

/// Failed sign-ins per address and per name, in this process.
#[derive(Debug, Default)]
pub struct Throttle {
    failures: Mutex<HashMap<String, VecDeque<DateTime<Utc>>>>,
}

impl Throttle {
    /// How long until `keys` may try again; `None`: they may now.
    pub fn retry_after(&self, keys: &[String], now: DateTime<Utc>) -> Option<TimeDelta> {
        let mut failures = self.failures.lock().expect("throttle lock");
        keys.iter()
            .filter_map(|key| {
                let times = failures.get_mut(key)?;
                while times.front().is_some_and(|t| *t <= now - WINDOW) {
                    times.pop_front();
                }
                (times.len() >= MAX_FAILURES)
                    .then(|| times[times.len() - MAX_FAILURES] + WINDOW - now)
            })
            .max()
    }

    pub fn fail(&self, keys: &[String], now: DateTime<Utc>) {
        let mut failures = self.failures.lock().expect("throttle lock");
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, times| times.back().is_some_and(|t| *t > now - WINDOW));
        }
        for key in keys {
            let times = failures.entry(key.clone()).or_default();
            times.push_back(now);
            // Only the newest few matter.
            while times.len() > MAX_FAILURES {
                times.pop_front();
            }
        }
    }

    pub fn reset(&self, keys: &[String]) {
        let mut failures = self.failures.lock().expect("throttle lock");
        for key in keys {
            failures.remove(key);
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub assets: &'static str,
    pub next: String,
    pub name: String,
    pub message: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// What a failed password counts against: the client's address and the
/// name (signing in, or checking the current password on the settings page).
pub(crate) fn throttle_keys(client: &Client, name: &str) -> [String; 2] {
    [
        format!("address {}", client.address()),
        format!("name {}", name.to_lowercase()),
    ]
}

/// Checks `password` against `name`'s hash off the async threads (against
/// a dummy hash when there is none, taking as long).
pub(crate) async fn password_matches(
    state: &AppState,
    name: &str,
    password: String,
) -> Result<bool, PageError> {
    let found = state.store.credentials(name).await?;
    let stored = found.and_then(|c| c.password_hash);
    Ok(
        tokio::task::spawn_blocking(move || passwords::verify(&password, stored.as_ref()))
            .await
            .map_err(ApiError::internal)?,
    )
}

/// Gives the browser of `old` (a session that has just been ended, by a new
/// password) a new session: a new secret, the same CSRF token and end, so
/// the pages it has open keep working. Returns its `Set-Cookie`.
pub(crate) async fn renew_session(
    state: &AppState,
    client: &Client,
    old: &SessionUser,
    reason: &str,
) -> Result<HeaderValue, PageError> {
    let now = state.ui.clock.now();
    let secret = random_secret();
    let entry = audit(
        Actor::User(old.user.id),
        "session.create",
        serde_json::json!({ "address": client.address(), "reason": reason }),
        now,
    );
    state
        .store
        .create_session(
            NewSession {
                hash: session_hash(&secret),
                user_id: old.user.id,
                csrf_token: old.session.csrf_token.clone(),
                expires_at: old.session.expires_at,
            },
            now,
            state.ui.session_idle,
            &entry,
        )
        .await?;
    Ok(cookie(&state.ui, client, &secret, ""))
}

/// `GET /login`: the form; someone signed in already goes on to `next`.
pub async fn login_form(
    signed_in: Option<Extension<SignedIn>>,
    QueryParams(q): QueryParams<NextQuery>,
) -> Response {
    let next = local_next(q.next.as_deref());
    if signed_in.is_some() {
        return see_other(&next);
    }
    LoginPage {
        assets: assets::build_id(),
        next,
        name: String::new(),
        message: None,
    }
    .into_response()
}

/// The sign-in form's fields. Not `Debug`: it holds the password.
#[derive(Deserialize)]
pub struct LoginFields {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    next: Option<String>,
}

fn audit(actor: Actor, action: &str, detail: serde_json::Value, at: DateTime<Utc>) -> AuditEntry {
    AuditEntry {
        at,
        actor: Some(actor),
        action: action.into(),
        target_type: "user".into(),
        target_id: None,
        detail,
    }
}

/// `POST /login`: checks the name and password (the guard has checked the
/// origin), starts a session and goes on to `next`.
pub async fn login(
    State(state): State<AppState>,
    client: Client,
    signed_in: Option<Extension<SignedIn>>,
    FormBody(fields): FormBody<LoginFields>,
) -> Result<Response, PageError> {
    let now = state.ui.clock.now();
    let next = local_next(fields.next.as_deref());
    let name = fields.name.trim().to_string();
    let address = client.address();
    let keys = throttle_keys(&client, &name);
    let page = |message: String, status: StatusCode| {
        let page = LoginPage {
            assets: assets::build_id(),
            next: next.clone(),
            name: name.clone(),
            message: Some(message),
        };
        (status, page).into_response()
    };
    if let Some(wait) = state.ui.throttle.retry_after(&keys, now) {
        let seconds = wait.num_seconds().max(1);
        tracing::warn!(address = %address, "sign-in refused: too many failures");
        let minutes = (seconds + 59) / 60;
        let mut response = page(
            format!(
                "too many failed sign-ins; try again in {minutes} minute{}",
                if minutes == 1 { "" } else { "s" }
            ),
            StatusCode::TOO_MANY_REQUESTS,
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        return Ok(response);
    }
    let found = state.store.credentials(&name).await?;
    let stored = found.as_ref().and_then(|c| c.password_hash.clone());
    let password = fields.password;
    // Checked even when the user does not exist (against a dummy hash), so
    // the answer takes as long either way.
    let matches =
        tokio::task::spawn_blocking(move || passwords::verify(&password, stored.as_ref()))
            .await
            .map_err(ApiError::internal)?;
    let user = match found {
        Some(c) if matches => c.user,
        _ => {
            state.ui.throttle.fail(&keys, now);
            // The name is not logged: people type passwords into it.
            tracing::warn!(address = %address, "failed sign-in");
            return Ok(page(WRONG.into(), StatusCode::UNAUTHORIZED));
        }
    };
    state.ui.throttle.reset(&keys);
    // A new session for every sign-in: a session id planted before it
    // (fixation) never becomes a signed-in one.
    if let Some(Extension(SignedIn(old))) = signed_in {
        let entry = audit(
            Actor::User(old.user.id),
            "session.delete",
            serde_json::json!({ "reason": "signed in again" }),
            now,
        );
        state
            .store
            .delete_session(&old.session.hash, &entry)
            .await?;
    }
    let secret = random_secret();
    let entry = audit(
        Actor::User(user.id),
        "session.create",
        serde_json::json!({ "address": address }),
        now,
    );
    state
        .store
        .create_session(
            NewSession {
                hash: session_hash(&secret),
                user_id: user.id,
                csrf_token: random_secret(),
                expires_at: now + state.ui.session_lifetime,
            },
            now,
            state.ui.session_idle,
            &entry,
        )
        .await?;
    tracing::info!(user = %user.name, address = %address, "signed in");
    let mut response = see_other(&next);
    response
        .headers_mut()
        .append(header::SET_COOKIE, cookie(&state.ui, &client, &secret, ""));
    Ok(response)
}

/// `POST /logout`: ends the session on the server and in the browser.
pub async fn logout(
    State(state): State<AppState>,
    client: Client,
    _caller: Viewer,
    Extension(SignedIn(found)): Extension<SignedIn>,
) -> Result<Response, PageError> {
    let entry = audit(
        Actor::User(found.user.id),
        "session.delete",
        serde_json::json!({ "reason": "signed out" }),
        state.ui.clock.now(),
    );
    state
        .store
        .delete_session(&found.session.hash, &entry)
        .await?;
    let mut response = see_other("/login");
    response
        .headers_mut()
        .append(header::SET_COOKIE, clearing_cookie(&state.ui, &client));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        for (next, want) in [
            (Some("/events?status=active"), "/events?status=active"),
            (Some("/"), "/"),
            (None, "/"),
            (Some(""), "/"),
            (Some("//evil.example"), "/"),
            (Some("/\\evil.example"), "/"),
            (Some("https://evil.example"), "/"),
            (Some("javascript:alert(1)"), "/"),
            (Some("/ok\r\nSet-Cookie: x=y"), "/"),
        ] {
            assert_eq!(local_next(next), want, "{next:?}");
        }
    }

    #[test]
    fn origins_must_be_this_servers() {
        let headers = |pairs: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(
                    header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            h
        };
        let host = ("host", "cron.local:8080");
        assert!(same_origin(
            &headers(&[host, ("origin", "http://cron.local:8080")]),
            None
        ));
        assert!(same_origin(
            &headers(&[host, ("referer", "http://cron.local:8080/events?x=1")]),
            None
        ));
        for bad in [
            vec![host],
            vec![host, ("origin", "null")],
            vec![host, ("origin", "http://evil.example")],
            vec![host, ("origin", "http://cron.local:8081")],
            vec![host, ("referer", "http://evil.example/cron.local:8080")],
        ] {
            assert!(!same_origin(&headers(&bad), None), "{bad:?}");
        }
        // With a public URL, only its origin counts, whatever the Host says.
        let public = Some("https://cron.example.com");
        assert!(same_origin(
            &headers(&[host, ("origin", "https://cron.example.com")]),
            public
        ));
        assert!(!same_origin(
            &headers(&[host, ("origin", "http://cron.local:8080")]),
            public
        ));
        assert_eq!(
            origin_of("https://Cron.Example.com/ui/").as_deref(),
            Some("https://cron.example.com")
        );
        assert_eq!(origin_of("/relative"), None);
    }

    #[test]
    fn form_fields_and_csrf_tokens() {
        let body = b"name=a+b&csrf=abc%2Ddef&empty=&next=%2Fjobs";
        assert_eq!(form_field(body, "csrf").as_deref(), Some("abc-def"));
        assert_eq!(form_field(body, "name").as_deref(), Some("a b"));
        assert_eq!(form_field(body, "empty").as_deref(), Some(""));
        assert_eq!(form_field(body, "missing"), None);
        assert!(csrf_matches(Some("abc-def"), "abc-def"));
        assert!(!csrf_matches(Some("abc-deg"), "abc-def"));
        assert!(!csrf_matches(Some(""), "abc-def"));
        assert!(!csrf_matches(None, "abc-def"));
        assert_eq!(
            percent_encode("/jobs?status=failed&x=1"),
            "/jobs%3Fstatus%3Dfailed%26x%3D1"
        );
    }

    #[test]
    fn five_failures_within_the_window_block_until_the_oldest_leaves_it() {
        let throttle = Throttle::default();
        let keys = ["name admin".to_string()];
        let t0 = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        for i in 0..MAX_FAILURES as i64 {
            assert_eq!(
                throttle.retry_after(&keys, t0 + TimeDelta::seconds(i)),
                None
            );
            throttle.fail(&keys, t0 + TimeDelta::seconds(i));
        }
        let now = t0 + TimeDelta::seconds(10);
        assert_eq!(
            throttle.retry_after(&keys, now),
            Some(WINDOW - TimeDelta::seconds(10))
        );
        assert_eq!(
            throttle.retry_after(&keys, t0 + WINDOW + TimeDelta::seconds(1)),
            None
        );
        throttle.fail(&keys, now);
        throttle.reset(&keys);
        assert_eq!(throttle.retry_after(&keys, now), None);
    }
}

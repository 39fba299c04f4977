//! The web UI: server-rendered pages on the API's port, the layer that guards every one of them (session, CSRF, origin, security headers), and its static files.
//!
//! Pages are askama templates (`crates/server/templates/`, checked when the
//! crate compiles) filled by handlers in `pages.rs`, which read through the
//! same store methods and role extractors as the API (the event pages in
//! `events.rs`, the server pages in `servers.rs`, settings in
//! `settings.rs`, variables in `variables.rs`, workflows and their runs in
//! `workflows.rs`, the job page's log viewer in `log.rs`). Signing in and
//! out, sessions, CSRF and the sign-in limits are `auth.rs`; the embedded
//! CSS is `assets.rs`.
//!
//! Every route here passes through [`guard`]: it finds the session of the
//! `cronium_session` cookie and marks the request as a page
//! ([`BrowserRequest`]), so the role extractors take the session's user and
//! never a bearer token; it refuses a state-changing request (anything but
//! GET and HEAD) whose `Origin` (or `Referer`) is not this server's, and,
//! except for signing in, one without the session's CSRF token; and it
//! adds the security headers to every answer. No page may use inline
//! script or style: the Content-Security-Policy forbids them.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use chrono::TimeDelta;
use cronium_store::SessionUser;

use crate::api::Routes;
use crate::clock::Clock;
use crate::error::{ApiError, ErrorCode, PageError};
use crate::state::AppState;
use crate::tokens::{BrowserRequest, Caller, Via};

pub mod assets;
pub mod auth;
pub mod events;
pub mod log;
pub mod pages;
pub mod servers;
pub mod settings;
pub mod variables;
pub mod workflows;

/// The Content-Security-Policy of every page: nothing but this server's own
/// files, no inline script or style, no framing, forms only to here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// The largest form body a page accepts (the guard reads it whole to find
/// the CSRF token).
pub const MAX_FORM_BYTES: usize = 64 * 1024;

/// What the UI needs to know of the configuration, and its own state.
#[derive(Debug)]
pub struct UiState {
    /// Whether the session cookie always says `Secure` (the public URL is
    /// https); it does for an https request in any case.
    pub secure_cookies: bool,
    /// `scheme://host[:port]` of the public URL, the only origin forms may
    /// come from when it is set; `None`: the request's `Host`.
    pub public_origin: Option<String>,
    pub session_idle: TimeDelta,
    pub session_lifetime: TimeDelta,
    pub throttle: auth::Throttle,
    pub clock: Clock,
}

impl UiState {
    pub fn new(config: &crate::Config) -> UiState {
        let delta = |d: std::time::Duration| TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX);
        UiState {
            secure_cookies: config.secure_cookies,
            public_origin: config.public_url.as_deref().and_then(auth::origin_of),
            session_idle: delta(config.session_idle),
            session_lifetime: delta(config.session_lifetime),
            throttle: auth::Throttle::default(),
            clock: config.clock.clone(),
        }
    }
}

impl Default for UiState {
    fn default() -> UiState {
        UiState::new(&crate::Config::new("."))
    }
}

fn routes() -> Routes {
    use Method as M;
    Routes::new()
        .add(M::GET, "/login", auth::login_form)
        .add(M::POST, "/login", auth::login)
        .add(M::POST, "/logout", auth::logout)
        .add(M::GET, "/", pages::dashboard)
        .add(M::GET, "/events", events::list)
        .add(M::POST, "/events", events::create)
        .add(M::GET, "/events/new", events::new_form)
        .add(M::GET, "/events/preview", events::preview)
        .add(M::GET, "/events/{id}", events::show)
        .add(M::POST, "/events/{id}", events::update)
        .add(M::GET, "/events/{id}/edit", events::edit_form)
        .add(M::GET, "/events/{id}/diff", events::diff)
        .add(M::POST, "/events/{id}/run", events::run)
        .add(M::POST, "/events/{id}/pause", events::pause)
        .add(M::POST, "/events/{id}/resume", events::resume)
        .add(M::GET, "/events/{id}/delete", events::confirm_delete)
        .add(M::POST, "/events/{id}/delete", events::delete)
        .add(M::GET, "/jobs", pages::jobs)
        .add(M::GET, "/jobs/{id}", log::page)
        .add(M::GET, "/jobs/{id}/live", log::live)
        .add(M::GET, "/jobs/{id}/lines", log::earlier)
        .add(M::GET, "/jobs/{id}/log.txt", log::raw)
        .add(M::POST, "/jobs/{id}/cancel", pages::cancel_job)
        .add(M::GET, "/workflows", workflows::list)
        .add(M::GET, "/workflows/{id}", workflows::show)
        .add(M::POST, "/workflows/{id}/run", workflows::run)
        .add(M::GET, "/workflow-runs/{id}", workflows::run_page)
        .add(M::POST, "/workflow-runs/{id}/cancel", workflows::cancel)
        .add(M::POST, "/workflow-runs/{id}/retry", workflows::retry)
        .add(M::GET, "/servers", servers::list)
        .add(M::GET, "/servers/new", servers::new_form)
        .add(M::POST, "/servers/new", servers::create)
        .add(M::GET, "/servers/{id}", servers::show)
        .add(M::POST, "/servers/{id}/check", servers::check)
        .add(M::GET, "/servers/{id}/edit", servers::edit_form)
        .add(M::POST, "/servers/{id}/edit", servers::update)
        .add(M::GET, "/servers/{id}/delete", servers::confirm_delete)
        .add(M::POST, "/servers/{id}/delete", servers::delete)
        .add(M::GET, "/variables", variables::list)
        .add(M::POST, "/variables", variables::set)
        .add(M::POST, "/variables/{key}/delete", variables::delete)
        .add(M::GET, "/audit", pages::audit)
        .add(M::GET, "/settings", settings::settings)
        .add(M::POST, "/settings/password", settings::change_password)
        .add(M::POST, "/settings/tokens", settings::create_token)
        .add(
            M::POST,
            "/settings/tokens/{id}/revoke",
            settings::revoke_token,
        )
        .add(M::POST, "/settings/users", settings::add_user)
        .add(M::POST, "/settings/users/{id}/role", settings::set_role)
        .add(
            M::POST,
            "/settings/users/{id}/remove",
            settings::remove_user,
        )
        .add(M::GET, "/static/{build}/{file}", assets::serve)
}

/// Every (method, path template) of the UI.
pub fn route_table() -> Vec<(Method, &'static str)> {
    routes().table
}

/// The UI's routes behind [`guard`], to merge into the application.
pub fn router(state: AppState) -> Router<AppState> {
    routes()
        .router
        .layer(middleware::from_fn_with_state(state, guard))
}

/// Whether a path belongs to the UI rather than the API (for the answers to
/// unknown routes and methods).
pub fn is_page_path(path: &str) -> bool {
    !(path.starts_with("/api/") || path == "/api" || path == "/healthz" || path == "/metrics")
}

/// The signed-in user of a page request, put there by [`guard`].
#[derive(Debug, Clone)]
pub struct SignedIn(pub SessionUser);

/// See the module documentation.
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let client = req
        .extensions()
        .get::<crate::client::Client>()
        .copied()
        .unwrap_or_default();
    let mut response = match check(&state, req).await {
        Ok((req, clear_cookie)) => {
            let mut response = next.run(req).await;
            if clear_cookie && !response.headers().contains_key(header::SET_COOKIE) {
                response.headers_mut().append(
                    header::SET_COOKIE,
                    auth::clearing_cookie(&state.ui, &client),
                );
            }
            response
        }
        Err(refused) => refused.into_response(),
    };
    protect(response.headers_mut());
    response
}

/// Finds the session and checks a state-changing request; returns the
/// request, marked, and whether the cookie it sent should be cleared (it
/// names no live session).
async fn check(state: &AppState, req: Request) -> Result<(Request, bool), PageError> {
    let path = req.uri().path().to_string();
    // Static files need no session: skip the database.
    let (signed_in, clear_cookie) = if path.starts_with("/static/") {
        (None, false)
    } else {
        match auth::session_secret(req.headers()) {
            None => (None, false),
            Some(secret) => match auth::find_session(state, &secret).await? {
                Some(found) => (Some(found), false),
                None => (None, true),
            },
        }
    };
    let mut req = req;
    if req.method() != Method::GET && req.method() != Method::HEAD {
        if !auth::same_origin(req.headers(), state.ui.public_origin.as_deref()) {
            tracing::warn!(path = %path, "refused a form from another origin (Origin/Referer)");
            return Err(forbidden(
                "this form did not come from this server (Origin)",
            ));
        }
        if path != "/login" {
            let Some(found) = &signed_in else {
                return Err(forbidden(
                    "your session has ended; sign in again and repeat what you did",
                ));
            };
            let (parts, body) = req.into_parts();
            let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
                .await
                .map_err(|_| {
                    PageError(ApiError::new(
                        ErrorCode::PayloadTooLarge,
                        format!("a form may send at most {MAX_FORM_BYTES} bytes"),
                    ))
                })?;
            let sent = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .or_else(|| auth::form_field(&bytes, "csrf"));
            if !auth::csrf_matches(sent.as_deref(), &found.session.csrf_token) {
                tracing::warn!(path = %path, user = %found.user.name, "refused a form without this session's CSRF token");
                return Err(forbidden(
                    "this form is out of date or did not come from this server (CSRF token); reload the page and try again",
                ));
            }
            req = Request::from_parts(parts, Body::from(bytes));
        }
    }
    let caller = signed_in.as_ref().map(|found| Caller {
        via: Via::Session,
        user: found.user.id,
        role: found.user.role,
    });
    req.extensions_mut().insert(BrowserRequest { caller });
    if let Some(found) = signed_in {
        req.extensions_mut().insert(SignedIn(found));
    }
    Ok((req, clear_cookie))
}

fn forbidden(message: &str) -> PageError {
    PageError(ApiError::forbidden(message))
}

/// The headers every UI answer carries. `Cache-Control: no-store` unless the
/// answer set its own (static files are immutable).
pub fn protect(headers: &mut HeaderMap) {
    let set = |headers: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        CONTENT_SECURITY_POLICY,
    );
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "same-origin");
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
}

/// A UI answer for a route or method that does not exist, with the headers.
pub fn not_found(code: ErrorCode, message: String) -> Response {
    let mut response = PageError(ApiError::new(code, message)).into_response();
    protect(response.headers_mut());
    response
}

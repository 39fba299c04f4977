//! The UI's static files, embedded in the binary and served under `/static/<build id>/<name>` with immutable caching: the build id changes whenever a file does.

use std::sync::LazyLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, PageError, PathParams};

/// Every static file: name, content type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../static/style.css"),
    ),
    (
        "log.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/log.js"),
    ),
    (
        "event-form.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/event-form.js"),
    ),
];

/// The crate version and the first 12 hex digits of a SHA-256 over every
/// file, computed once: a changed file gets a new URL, so an old copy in a
/// browser's cache is never used for it.
static BUILD_ID: LazyLock<String> = LazyLock::new(|| {
    let mut hasher = Sha256::new();
    for (name, _, bytes) in FILES {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(bytes);
    }
    let digest = hasher.finalize();
    let hex: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{hex}", env!("CARGO_PKG_VERSION"))
});

pub fn build_id() -> &'static str {
    &BUILD_ID
}

/// `GET /static/{build}/{file}`: a file of this build, cached for a year.
pub async fn serve(
    PathParams((build, file)): PathParams<(String, String)>,
) -> Result<Response, PageError> {
    let found = FILES.iter().find(|(name, _, _)| *name == file);
    let Some((_, content_type, bytes)) = found.filter(|_| build == build_id()) else {
        return Err(PageError(ApiError::not_found(format!(
            "no static file {file:?} in this build"
        ))));
    };
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        *bytes,
    )
        .into_response())
}

//! The API's one error type, the one place where failures become HTTP statuses, and the extractors that reject bad input with it; the web UI's errors are the same ones shown as pages.
//!
//! Every API error body is `{"error": {"code", "message", "field"?}}`. Store and
//! validation errors convert with `?`; axum's own rejections (JSON, query,
//! path, body size) are replaced by extractors here so that they use the
//! same body and name the offending field where serde knows it. A page
//! fails with a [`PageError`]: the same code and status, as HTML. A role
//! extractor refuses with a [`Refusal`]: an API error, a page error, or
//! (a page without a session) a redirect to the sign-in page.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cronium_core::ValidationError;
use cronium_store::StoreError;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest request body accepted (scripts are limited to 1 MiB, JSON escaping can double that).
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    ValidationFailed,
    /// Too many failed attempts (signing in); the answer says when to retry.
    TooManyRequests,
    Internal,
    /// A dependency (the database) does not answer; retrying later may work.
    Unavailable,
}

impl ErrorCode {
    /// The status for each code: the only such mapping in the server.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::ValidationFailed => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::BadRequest, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::NotFound, message)
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::ValidationFailed, message).with_field(field)
    }

    /// Logs the cause and answers with a message that reveals nothing about it.
    /// `409`: the request is well-formed but the current state refuses it.
    pub fn conflict(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Conflict, message).with_field(field)
    }

    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %cause, "internal error");
        ApiError::new(ErrorCode::Internal, "internal error (see the server log)")
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> ApiError {
        ApiError::invalid(e.field, e.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound { what } => ApiError::not_found(format!("{what} not found")),
            StoreError::Conflict { field, message } => ApiError::conflict(field, message),
            StoreError::Invalid(v) => v.into(),
            other @ (StoreError::Payload(_)
            | StoreError::Backend(_)
            | StoreError::Fenced { .. }
            | StoreError::DeliveryLost { .. }) => ApiError::internal(other),
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: Inner {
                code: self.code.as_str(),
                message: &self.message,
                field: self.field.as_deref(),
            },
        };
        let mut response = (self.code.status(), axum::Json(body)).into_response();
        if self.code == ErrorCode::Unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// An error on a page: the API's code and status, shown as an HTML page
/// (with the web UI's headers, added by its layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageError(pub ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        PageError(e)
    }
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> PageError {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.code.status();
        crate::ui::pages::error_page(status, &self.0.message)
    }
}

/// Why a role extractor refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// An API request: no, a bad or a too-weak token.
    Api(ApiError),
    /// A page the signed-in user's role does not open.
    Page(PageError),
    /// A page without a (live) session: sign in, then come back to `next`
    /// (the path and query asked for).
    SignIn { next: String },
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Api(e) => e.into_response(),
            Refusal::Page(e) => e.into_response(),
            // 303: the browser follows with a GET, whatever the method was.
            Refusal::SignIn { next } => see_other(&format!(
                "/login?next={}",
                crate::ui::auth::percent_encode(&next)
            )),
        }
    }
}

/// `303 See Other` to `location`, a local path: where a page sends the
/// browser after a form or to sign in.
pub fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// A form body (`application/x-www-form-urlencoded`), as the web UI's forms
/// post it; a malformed one is a 400 page.
#[derive(Debug, Clone)]
pub struct FormBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for FormBody<T> {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &S) -> Result<Self, PageError> {
        axum::Form::<T>::from_request(req, state)
            .await
            .map(|f| FormBody(f.0))
            .map_err(|e| PageError(ApiError::bad_request(e.body_text())))
    }
}

/// A JSON request body. Malformed JSON and wrong types are 400 with the
/// field serde names; bodies over [`MAX_BODY_BYTES`] are 413.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = object_body(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// The bytes of a JSON object body: the content type, the size and the
/// leading `{` checked.
async fn object_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim();
            mime.eq_ignore_ascii_case("application/json")
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        });
    if !is_json {
        return Err(ApiError::bad_request(
            "expected a JSON body with Content-Type: application/json",
        ));
    }
    // Refused on the declared length before a byte is read, so a client
    // that sent `Expect: 100-continue` never uploads the body at all.
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let bytes = Bytes::from_request(req, state)
        .await
        .map_err(body_rejection)?;
    // serde would read `[…]` as a struct's fields in order; every body
    // of this API is an object, so anything else is refused up front.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(bytes)
}

/// A JSON object body taken exactly as sent: unlike [`JsonBody`], numbers
/// are not touched (`1.0` stays `1.0`), for bodies that carry a user's own
/// JSON values (a variable's value and its compare-and-set expectation).
#[derive(Debug, Clone)]
pub struct ExactJsonBody(pub serde_json::Map<String, serde_json::Value>);

impl<S: Send + Sync> FromRequest<S> for ExactJsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = object_body(req, state).await?;
        serde_json::from_slice(&bytes)
            .map(ExactJsonBody)
            .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
    )
}

fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large()
    } else {
        ApiError::bad_request(format!("cannot read the request body: {rejection}"))
    }
}

/// Like [`parse_json`], for a body that may be left out: an empty (or
/// blank) body is `T::default()`.
pub fn parse_optional_json<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_json(bytes)
    }
}

/// Parses JSON, turning serde's error into a 400 that names the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut json: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    integral_floats_to_integers(&mut json);
    serde_path_to_error::deserialize(json).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.to_string();
        // A missing field is reported at the enclosing object (the path does
        // not name it); an unknown one at itself.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        let field = match (path.as_str(), missing) {
            (".", Some(name)) => Some(name.to_string()),
            (".", None) => None,
            (path, Some(name)) => Some(format!("{path}.{name}")),
            (path, None) => Some(path.to_string()),
        };
        let message = match &field {
            Some(f) => format!("{f}: {message}"),
            None => message,
        };
        let err = ApiError::bad_request(message);
        match field {
            Some(f) => err.with_field(f),
            None => err,
        }
    })
}

/// JSON has one number type: `5.0` is the integer 5 to JSON Schema (and so
/// to the OpenAPI document), though serde refuses it for an integer field.
/// Floats without a fractional part become integers before the typed
/// parse, so every value the document calls an integer is one here too.
fn integral_floats_to_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            // 2^63 is exact as an f64; the range keeps the cast lossless.
            if f.fract() == 0.0
                && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&f)
            {
                *value = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_to_integers),
        Value::Object(map) => map.values_mut().for_each(integral_floats_to_integers),
        _ => {}
    }
}

/// Query parameters; a parameter of the wrong shape is 400.
#[derive(Debug, Clone)]
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| QueryParams(q.0))
            .map_err(|e: QueryRejection| ApiError::bad_request(e.body_text()))
    }
}

/// Path parameters; an id that is not a number is 400 naming the parameter.
#[derive(Debug, Clone)]
pub struct PathParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathParams(p.0))
            .map_err(|e: PathRejection| match &e {
                PathRejection::FailedToDeserializePathParams(inner) => {
                    let err = ApiError::bad_request(inner.body_text());
                    match inner.kind() {
                        axum::extract::path::ErrorKind::ParseErrorAtKey { key, .. } => {
                            err.with_field(key.clone())
                        }
                        _ => err,
                    }
                }
                _ => ApiError::internal(e.body_text()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    #[allow(dead_code)]
    struct Input {
        name: String,
        retries: Option<u32>,
        env: Option<std::collections::BTreeMap<String, String>>,
        target_servers: Option<Vec<i64>>,
    }

    #[test]
    fn json_errors_name_the_field() {
        let table: [(&str, ErrorCode, Option<&str>); 8] = [
            ("{", ErrorCode::BadRequest, None),
            ("{\"name\": \"x\"} trailing", ErrorCode::BadRequest, None),
            ("[]", ErrorCode::BadRequest, None),
            (r#"{"name": 5}"#, ErrorCode::BadRequest, Some("name")),
            (
                r#"{"name": "x", "retries": "3"}"#,
                ErrorCode::BadRequest,
                Some("retries"),
            ),
            (
                r#"{"name": "x", "env": {"A": 1}}"#,
                ErrorCode::BadRequest,
                Some("env.A"),
            ),
            (
                r#"{"name": "x", "nmae": 1}"#,
                ErrorCode::BadRequest,
                Some("nmae"),
            ),
            (r#"{"retries": 1}"#, ErrorCode::BadRequest, Some("name")),
        ];
        for (json, code, field) in table {
            let err = parse_json::<Input>(json.as_bytes()).unwrap_err();
            assert_eq!(err.code, code, "{json}");
            assert_eq!(err.field.as_deref(), field, "{json}: {}", err.message);
        }
        // Integers written as floats are integers, as JSON Schema has it.
        let input =
            parse_json::<Input>(br#"{"name":"x","retries":5.0,"targetServers":[-2.0]}"#).unwrap();
        assert_eq!(input.retries, Some(5));
        assert_eq!(input.target_servers, Some(vec![-2]));
        for json in [
            r#"{"name":"x","retries":5.5}"#,
            r#"{"name":"x","retries":1e30}"#,
        ] {
            let err = parse_json::<Input>(json.as_bytes()).unwrap_err();
            assert_eq!(err.field.as_deref(), Some("retries"), "{json}");
        }
        let err = parse_json::<Input>(br#"{"name":"x","targetServers":[1,"a"]}"#).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("targetServers[1]"));
        assert!(parse_json::<Input>(br#"{"name":"x"}"#).is_ok());
    }

    #[test]
    fn store_errors_map_to_statuses() {
        let table = [
            (
                StoreError::NotFound { what: "event" },
                StatusCode::NOT_FOUND,
            ),
            (
                StoreError::Conflict {
                    field: "name".into(),
                    message: "taken".into(),
                },
                StatusCode::CONFLICT,
            ),
            (
                StoreError::Invalid(ValidationError::new("timeout", "bad")),
                StatusCode::UNPROCESSABLE_ENTITY,
            ),
            (
                StoreError::Backend("boom".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (err, status) in table {
            let api: ApiError = err.into();
            assert_eq!(api.code.status(), status);
            assert!(
                !api.message.contains("boom"),
                "internal causes stay in the log"
            );
        }
    }
}

//! The HTTP API: the route table, the request-metrics middleware, and the public endpoints (`/healthz`, `/metrics`, the OpenAPI document).
//!
//! Routes are registered through [`Routes::add`], which also records each
//! (method, path) so tests can hold the router and the OpenAPI document to
//! each other.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use cronium_store::{EventFilter, PageRequest};
use serde::Serialize;

use crate::error::{ApiError, ErrorCode, MAX_BODY_BYTES};
use crate::metrics::Snapshot;
use crate::state::AppState;
use crate::tokens::Viewer;

pub mod actions;
pub mod audit;
pub mod channels;
pub mod events;
pub mod hooks;
pub mod jobs;
pub mod nodes;
pub mod servers;
pub mod tokens;
pub mod variables;
pub mod workflow_runs;
pub mod workflows;

/// How long `/healthz` waits for the database. Shorter than the pool's own
/// 30-second acquire timeout: an unreachable PostgreSQL would otherwise hold
/// the check that long, and health checkers give up sooner and learn nothing.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// A router that remembers what it routes (the web UI's uses it too).
pub struct Routes {
    pub(crate) router: Router<AppState>,
    pub(crate) table: Vec<(Method, &'static str)>,
}

impl Routes {
    pub(crate) fn new() -> Routes {
        Routes {
            router: Router::new(),
            table: Vec::new(),
        }
    }

    pub(crate) fn add<H, T>(mut self, method: Method, path: &'static str, handler: H) -> Routes
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("a standard method");
        // axum merges method routers registered for the same path.
        self.router = self.router.route(path, on(filter, handler));
        self.table.push((method, path));
        self
    }
}

fn routes() -> Routes {
    use Method as M;
    Routes::new()
        .add(M::GET, "/healthz", healthz)
        .add(M::GET, "/metrics", metrics)
        .add(M::GET, "/api/v1/openapi.json", openapi)
        .add(M::GET, "/api/v1/events", events::list)
        .add(M::POST, "/api/v1/events", events::create)
        .add(M::GET, "/api/v1/events/{id}", events::show)
        .add(M::PATCH, "/api/v1/events/{id}", events::update)
        .add(M::DELETE, "/api/v1/events/{id}", events::delete)
        .add(M::GET, "/api/v1/events/{id}/payloads", events::payloads)
        .add(
            M::GET,
            "/api/v1/events/{id}/payloads/{version}",
            events::download,
        )
        .add(M::POST, "/api/v1/events/{id}/run", events::run)
        .add(M::GET, "/api/v1/events/{id}/actions", actions::list)
        .add(M::POST, "/api/v1/events/{id}/actions", actions::add)
        .add(
            M::DELETE,
            "/api/v1/events/{id}/actions/{actionId}",
            actions::remove,
        )
        .add(M::GET, "/api/v1/jobs", jobs::list)
        .add(M::GET, "/api/v1/jobs/{id}", jobs::show)
        .add(M::POST, "/api/v1/jobs/{id}/cancel", jobs::cancel)
        .add(M::GET, "/api/v1/jobs/{id}/logs", jobs::logs)
        .add(M::GET, "/api/v1/jobs/{id}/deliveries", jobs::deliveries)
        .add(M::GET, "/api/v1/servers", servers::list)
        .add(M::POST, "/api/v1/servers", servers::create)
        .add(M::GET, "/api/v1/servers/{id}", servers::show)
        .add(M::PATCH, "/api/v1/servers/{id}", servers::update)
        .add(M::DELETE, "/api/v1/servers/{id}", servers::delete)
        .add(M::POST, "/api/v1/servers/{id}/check", servers::check)
        .add(M::GET, "/api/v1/channels", channels::list)
        .add(M::POST, "/api/v1/channels", channels::create)
        .add(M::GET, "/api/v1/channels/{id}", channels::show)
        .add(M::DELETE, "/api/v1/channels/{id}", channels::delete)
        .add(M::POST, "/api/v1/channels/{id}/test", channels::test)
        .add(M::GET, "/api/v1/tokens", tokens::list)
        .add(M::POST, "/api/v1/tokens", tokens::create)
        .add(M::DELETE, "/api/v1/tokens/{id}", tokens::revoke)
        .add(M::GET, "/api/v1/variables", variables::list)
        .add(M::GET, "/api/v1/variables/{key}", variables::show)
        .add(M::PUT, "/api/v1/variables/{key}", variables::put)
        .add(M::DELETE, "/api/v1/variables/{key}", variables::delete)
        .add(M::GET, "/api/v1/workflows", workflows::list)
        .add(M::POST, "/api/v1/workflows", workflows::apply)
        .add(M::GET, "/api/v1/workflows/{id}", workflows::show)
        .add(M::DELETE, "/api/v1/workflows/{id}", workflows::delete)
        .add(M::POST, "/api/v1/workflows/{id}/run", workflow_runs::run)
        .add(
            M::POST,
            "/api/v1/workflows/{id}/hook",
            workflows::rotate_hook,
        )
        .add(M::POST, "/hooks/workflows/{key}", hooks::trigger)
        .add(M::GET, "/api/v1/workflow-runs", workflow_runs::list)
        .add(M::GET, "/api/v1/workflow-runs/{id}", workflow_runs::show)
        .add(
            M::POST,
            "/api/v1/workflow-runs/{id}/cancel",
            workflow_runs::cancel,
        )
        .add(
            M::POST,
            "/api/v1/workflow-runs/{id}/retry",
            workflow_runs::retry,
        )
        .add(M::GET, "/api/v1/audit", audit::list)
        .add(M::GET, "/api/v1/nodes", nodes::list)
}

/// Every (method, path template) of the API (the UI's: `ui::route_table`).
pub fn route_table() -> Vec<(Method, &'static str)> {
    routes().table
}

/// The whole application, API and web UI, ready to serve.
pub fn router(state: AppState) -> Router {
    routes()
        .router
        .merge(crate::ui::router(state.clone()))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        // Outermost: everything inside knows who the client is.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::client::identify,
        ))
        .with_state(state)
}

/// Counts and times every request, and logs it.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let client = req
        .extensions()
        .get::<crate::client::Client>()
        .copied()
        .unwrap_or_default();
    // The template, not the path: bounded label values, no ids.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let has_body = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0")
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    // A webhook's path holds its key: only the route is logged.
    let path = if route.starts_with("/hooks/") {
        route.clone()
    } else {
        path
    };
    let mut response = next.run(req).await;
    // A request refused before its body was read (no token, wrong role,
    // unknown route) leaves that body unread, and hyper then drops the
    // connection. Saying so up front stops a client from sending its next
    // request down a connection that is about to close.
    if has_body && response.status().is_client_error() {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let elapsed = started.elapsed();
    let status = response.status();
    state
        .metrics
        .record(&route, method.as_str(), status.as_u16(), elapsed);
    tracing::info!(
        method = %method,
        path = %path,
        status = status.as_u16(),
        ms = elapsed.as_secs_f64() * 1000.0,
        client = %client.address(),
        "request"
    );
    response
}

/// An unknown route: the API's error, or a page for a UI path.
async fn no_route(method: Method, uri: axum::http::Uri) -> Response {
    let message = format!("no route for {method} {}", uri.path());
    if crate::ui::is_page_path(uri.path()) {
        return crate::ui::not_found(ErrorCode::NotFound, message);
    }
    ApiError::not_found(message).into_response()
}

async fn wrong_method(method: Method, uri: axum::http::Uri) -> Response {
    let message = format!("{method} is not allowed on {}", uri.path());
    if crate::ui::is_page_path(uri.path()) {
        return crate::ui::not_found(ErrorCode::MethodNotAllowed, message);
    }
    ApiError::new(ErrorCode::MethodNotAllowed, message).into_response()
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    database: &'static str,
}

/// Public: 200 when the database answers a trivial query, naming the
/// backend; 503 `unavailable` when it fails or does not answer within
/// [`HEALTH_TIMEOUT`], so a load balancer stops sending requests that would
/// fail anyway.
async fn healthz(State(state): State<AppState>) -> Result<axum::Json<Health>, ApiError> {
    let database = state.store.backend();
    let unavailable = |why: String| {
        tracing::warn!(database, error = %why, "health check: the database does not answer");
        ApiError::new(
            ErrorCode::Unavailable,
            format!("the {database} database does not answer"),
        )
    };
    match tokio::time::timeout(HEALTH_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok(axum::Json(Health {
            status: "ok",
            database,
        })),
        Ok(Err(e)) => Err(unavailable(e.to_string())),
        Err(_) => Err(unavailable(format!("no answer within {HEALTH_TIMEOUT:?}"))),
    }
}

/// Prometheus text format; needs a token (any role), as scrapers can send one.
async fn metrics(State(state): State<AppState>, _caller: Viewer) -> Result<Response, ApiError> {
    let events = state
        .store
        .list_events(
            &EventFilter::default(),
            PageRequest {
                limit: 1,
                offset: 0,
            },
        )
        .await?
        .total;
    let text = state.metrics.render(Snapshot {
        events,
        payloads_generated: state.payloads.generated(),
    });
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// Public: the OpenAPI 3.1 description of these routes.
async fn openapi() -> axum::Json<serde_json::Value> {
    axum::Json(crate::openapi::document())
}

/// Offset pagination from `limit` (1..=500, default 50) and `offset` (default 0).
pub(crate) fn page(limit: Option<&str>, offset: Option<&str>) -> Result<PageRequest, ApiError> {
    let limit = match limit {
        None => 50,
        Some(text) => text
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=PageRequest::MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::invalid(
                    "limit",
                    format!("must be a number from 1 to {}", PageRequest::MAX_LIMIT),
                )
            })?,
    };
    let offset = match offset {
        None => 0,
        Some(text) => text
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| i64::try_from(*n).is_ok())
            .ok_or_else(|| ApiError::invalid("offset", "must be a number, 0 or more"))?,
    };
    Ok(PageRequest { limit, offset })
}

/// An RFC 3339 time from a request (any offset, returned in UTC); the error
/// names `field`.
pub(crate) fn parse_time(
    text: &str,
    field: &str,
) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| {
            ApiError::invalid(
                field,
                format!("{text:?} is not an RFC 3339 time such as 2026-12-01T10:00:00Z: {e}"),
            )
        })
}

/// A page of a list, as every list endpoint that paginates returns it.
#[derive(Serialize)]
pub struct PageBody<T> {
    pub items: Vec<T>,
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
}

/// `204 No Content`.
pub(crate) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_route_is_in_the_openapi_document_and_vice_versa() {
        let routed: BTreeSet<(String, String)> = route_table()
            .into_iter()
            .map(|(m, p)| (m.as_str().to_lowercase(), p.to_string()))
            .collect();
        let doc = crate::openapi::document();
        let documented: BTreeSet<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, ops)| {
                ops.as_object()
                    .unwrap()
                    .keys()
                    .filter(|k| *k != "parameters")
                    .map(move |m| (m.clone(), path.clone()))
            })
            .collect();
        assert_eq!(
            routed.len(),
            route_table().len(),
            "a route registered twice"
        );
        let missing: Vec<_> = routed.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&routed).collect();
        assert!(missing.is_empty(), "routed but not documented: {missing:?}");
        assert!(extra.is_empty(), "documented but not routed: {extra:?}");
    }

    #[test]
    fn page_bounds() {
        assert_eq!(
            page(None, None).unwrap(),
            PageRequest {
                limit: 50,
                offset: 0
            }
        );
        assert_eq!(
            page(Some("500"), Some("7")).unwrap(),
            PageRequest {
                limit: 500,
                offset: 7
            }
        );
        for (l, o, field) in [
            (Some("0"), None, "limit"),
            (Some("501"), None, "limit"),
            (Some("x"), None, "limit"),
            (None, Some("-1"), "offset"),
        ] {
            assert_eq!(page(l, o).unwrap_err().field.as_deref(), Some(field));
        }
    }
}

//! `POST /hooks/workflows/{key}`: a workflow's webhook trigger, with the key in the path as its only credential (the store keeps its SHA-256), an optional Standard Webhooks signature, a capped JSON body as the run's input, and an idempotency key so a retried delivery starts nothing twice.
//!
//! The key is made when a workflow with a `webhook` trigger is applied (or
//! rotated: `POST /api/v1/workflows/{id}/hook`) and shown once. The request
//! log records the route, never the path with the key.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cronium_core::{MAX_OUTPUT_BYTES, RunStatus, WorkflowSpec, WorkflowTrigger};
use cronium_engine::secrets::Sealer;
use cronium_engine::signing::SigningKey;
use cronium_engine::workflows::{RunStart, start_run};
use cronium_store::{AuditEntry, RunTrigger, WorkflowHook};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::workflow_runs::{RunView, started};
use crate::error::{ApiError, ErrorCode, PathParams};
use crate::state::AppState;

/// What a webhook key starts with, so a leaked one is recognisable.
pub const KEY_PREFIX: &str = "crh_";
/// Longest idempotency key (`webhook-id` or `Idempotency-Key`) accepted.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

/// A webhook's key and signing secret, as shown once to whoever applied
/// (or rotated) it. Not `Debug`: it must not be printed.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewHook {
    /// The path to call: `/hooks/workflows/{key}`.
    pub path: String,
    pub key: String,
    /// For a `signed` webhook: `whsec_…`, to sign calls with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// SHA-256 of a key, hex: what the store keeps and looks it up by.
pub fn key_hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new key (and, for a signed webhook, a signing secret): what to show
/// once, and what to store (the key's hash, the secret sealed).
pub fn generate(sealer: &Sealer, signed: bool) -> (NewHook, WorkflowHook) {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    let key = format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let secret = signed.then(|| SigningKey::generate().1);
    let stored = WorkflowHook {
        key_hash: key_hash(&key),
        sealed_secret: secret.as_deref().map(|s| sealer.seal_hook_secret(s)),
    };
    let shown = NewHook {
        path: format!("/hooks/workflows/{key}"),
        key,
        secret,
    };
    (shown, stored)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Starts a run of the workflow whose key this is: `202` with a new run,
/// `200` with the run an earlier delivery with the same idempotency key
/// started, `404` for a key no workflow has, `401` for a signed webhook
/// called without a valid signature, `409` when the overlap policy refused.
pub async fn trigger(
    State(state): State<AppState>,
    PathParams(key): PathParams<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    if body.len() > MAX_OUTPUT_BYTES {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("a webhook's body may be at most {MAX_OUTPUT_BYTES} bytes"),
        ));
    }
    let unknown = || ApiError::not_found("no workflow has this webhook key");
    if !key.starts_with(KEY_PREFIX) {
        return Err(unknown());
    }
    let (workflow, sealed) = state
        .store
        .find_workflow_by_hook(&key_hash(&key))
        .await?
        .ok_or_else(unknown)?;
    let spec = WorkflowSpec::from_json_value(workflow.definition.clone())?;
    let WorkflowTrigger::Webhook { signed } = spec.trigger() else {
        return Err(unknown());
    };
    let delivery = header(&headers, "webhook-id").or_else(|| header(&headers, "idempotency-key"));
    if *signed {
        let sealed = sealed.ok_or_else(|| {
            ApiError::unauthorized(
                "this webhook is signed but has no signing secret; rotate its key",
            )
        })?;
        let secret = state
            .sealer
            .open_hook_secret(&sealed)
            .map_err(ApiError::internal)?;
        let signing = SigningKey::parse(&secret)
            .map_err(|e| ApiError::internal(format!("the webhook's signing secret {e}")))?;
        let required = |name: &str| {
            header(&headers, name).ok_or_else(|| {
                ApiError::unauthorized(format!("a signed webhook needs the {name} header"))
            })
        };
        signing
            .verify(
                required("webhook-id")?,
                required("webhook-timestamp")?,
                required("webhook-signature")?,
                &body,
                crate::now(),
            )
            .map_err(ApiError::unauthorized)?;
    }
    if delivery.is_some_and(|k| k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY) {
        return Err(ApiError::bad_request(format!(
            "the idempotency key (webhook-id or Idempotency-Key) must be 1 to {MAX_IDEMPOTENCY_KEY} characters"
        )));
    }
    let input = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(
            serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?,
        )
    };
    let entry = AuditEntry {
        at: crate::now(),
        actor: None,
        action: "workflow.run".into(),
        target_type: "workflow_run".into(),
        target_id: None,
        detail: json!({ "workflow": workflow.id, "name": workflow.name.as_str(), "trigger": "webhook" }),
    };
    let start = RunStart {
        input,
        idempotency_key: delivery.map(String::from),
        ..RunStart::default()
    };
    let run = start_run(
        &*state.store,
        &workflow,
        RunTrigger::Webhook,
        start,
        crate::now(),
        Some(&entry),
    )
    .await?;
    if !run.created {
        return Ok((StatusCode::OK, axum::Json(RunView::from(run.run))).into_response());
    }
    started(&state, &run);
    tracing::info!(workflow = workflow.id.0, run = run.run.id.0, status = %run.run.status, "workflow run by webhook");
    if run.run.status == RunStatus::Skipped {
        return Err(ApiError::conflict(
            "overlap",
            run.run
                .error
                .unwrap_or_else(|| "skipped by the overlap policy".into()),
        ));
    }
    Ok((StatusCode::ACCEPTED, axum::Json(RunView::from(run.run))).into_response())
}

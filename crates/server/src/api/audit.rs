//! `/api/v1/audit`: the audit log, newest first.

use axum::extract::State;
use chrono::{DateTime, Utc};
use cronium_store::{Actor, AuditRecord};
use serde::{Deserialize, Serialize};

use super::{PageBody, page};
use crate::error::{ApiError, QueryParams};
use crate::state::AppState;
use crate::tokens::Admin;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditView {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// The id of the token that acted; `null` for a user in the web UI and
    /// for the server itself.
    pub actor: Option<i64>,
    /// The id of the user who acted in the web UI; `null` otherwise.
    pub actor_user: Option<i64>,
    /// The id of the job whose script acted (a runtime helper writing a
    /// variable); `null` otherwise.
    pub actor_job: Option<i64>,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<i64>,
    pub detail: serde_json::Value,
}

impl From<AuditRecord> for AuditView {
    fn from(r: AuditRecord) -> AuditView {
        AuditView {
            id: r.id,
            at: r.entry.at,
            actor: match r.entry.actor {
                Some(Actor::Token(id)) => Some(id.0),
                _ => None,
            },
            actor_user: match r.entry.actor {
                Some(Actor::User(id)) => Some(id.0),
                _ => None,
            },
            actor_job: match r.entry.actor {
                Some(Actor::Job(id)) => Some(id.0),
                _ => None,
            },
            action: r.entry.action,
            target_type: r.entry.target_type,
            target_id: r.entry.target_id,
            detail: r.entry.detail,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    limit: Option<String>,
    offset: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    _caller: Admin,
    QueryParams(q): QueryParams<AuditQuery>,
) -> Result<axum::Json<PageBody<AuditView>>, ApiError> {
    let page = page(q.limit.as_deref(), q.offset.as_deref())?;
    let found = state.store.list_audit(page).await?;
    Ok(axum::Json(PageBody {
        items: found.items.into_iter().map(AuditView::from).collect(),
        total: found.total,
        limit: page.limit,
        offset: page.offset,
    }))
}

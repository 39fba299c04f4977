//! `/api/v1/nodes`: the servers that use this database, as each last heartbeated (by the database's clock), with whether each is alive and how far its clock is from the database's.

use axum::extract::State;
use chrono::{DateTime, Utc};
use cronium_engine::nodes::{ALIVE_WITHIN, CLOCK_SKEW_LIMIT};
use serde::Serialize;

use crate::error::ApiError;
use crate::state::AppState;
use crate::tokens::Viewer;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    pub id: String,
    pub address: String,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    /// Heartbeated within the last 15 s of the database's clock.
    pub alive: bool,
    /// Its clock minus the database's, at its last heartbeat.
    pub clock_offset_ms: i64,
    /// More than 2 s: leases and fire times follow the database, but its
    /// logs and timestamps of its own will be off.
    pub clock_skewed: bool,
    pub running_jobs: u64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodesBody {
    pub items: Vec<NodeView>,
    /// The database's clock now, which `alive` is judged by.
    pub database_time: DateTime<Utc>,
}

pub async fn list(
    State(state): State<AppState>,
    _caller: Viewer,
) -> Result<axum::Json<NodesBody>, ApiError> {
    let (nodes, now) = state.store.list_nodes().await?;
    let alive_within = chrono::TimeDelta::from_std(ALIVE_WITHIN).expect("small");
    let items = nodes
        .into_iter()
        .map(|n| NodeView {
            alive: now - n.heartbeat_at <= alive_within,
            clock_skewed: n.clock_offset_ms.unsigned_abs() > CLOCK_SKEW_LIMIT.as_millis() as u64,
            id: n.id,
            address: n.address,
            version: n.version,
            started_at: n.started_at,
            heartbeat_at: n.heartbeat_at,
            clock_offset_ms: n.clock_offset_ms,
            running_jobs: n.running_jobs,
        })
        .collect();
    Ok(axum::Json(NodesBody {
        items,
        database_time: now,
    }))
}

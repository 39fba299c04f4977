//! Starting workflow runs: a stored definition's events resolved (names against its owner's events) and handed to the store, which pins them and queues the first nodes.
//!
//! The API, the webhook trigger and the scheduler all start runs here, so
//! a run is resolved the same way however it starts. What happens after
//! (nodes advancing as their jobs end) is the store's, inside the
//! transaction that ends each job.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use cronium_core::{EventId, EventRef, ResolvedWorkflow, UserId, ValidationError, WorkflowSpec};
use cronium_store::{
    AuditEntry, NewWorkflowRun, RunTrigger, StartedRun, Store, StoreError, Workflow,
};

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The stored definition no longer resolves (an event was renamed).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Resolves every node's event: a name is one of `owner`'s events, an id
/// any event. Each distinct reference is looked up once; the error names
/// the first node whose event is missing.
pub async fn resolve(
    store: &dyn Store,
    owner: UserId,
    spec: &WorkflowSpec,
) -> Result<Result<ResolvedWorkflow, ValidationError>, StoreError> {
    let mut found: HashMap<EventRef, Option<EventId>> = HashMap::new();
    for node in spec.nodes() {
        if found.contains_key(&node.event) {
            continue;
        }
        let id = match &node.event {
            EventRef::Name(name) => store
                .find_event_by_name(owner, name.as_str())
                .await?
                .map(|e| e.id),
            EventRef::Id(id) => match store.get_event(*id).await {
                Ok(event) => Some(event.id),
                Err(StoreError::NotFound { .. }) => None,
                Err(e) => return Err(e),
            },
        };
        found.insert(node.event.clone(), id);
    }
    Ok(spec.check_events(|r| found.get(r).copied().flatten()))
}

/// How a run starts, besides its workflow.
#[derive(Debug, Clone, Default)]
pub struct RunStart {
    pub input: Option<serde_json::Value>,
    pub idempotency_key: Option<String>,
    pub fire_at: Option<DateTime<Utc>>,
}

/// Starts a run of the workflow's current version.
pub async fn start_run(
    store: &dyn Store,
    workflow: &Workflow,
    trigger: RunTrigger,
    start: RunStart,
    now: DateTime<Utc>,
    audit: Option<&AuditEntry>,
) -> Result<StartedRun, StartError> {
    let spec = WorkflowSpec::from_json_value(workflow.definition.clone())?;
    let resolved = resolve(store, workflow.owner, &spec).await??;
    let nodes = resolved
        .events()
        .map(|(node, event)| (node.clone(), event))
        .collect();
    let new = NewWorkflowRun {
        workflow: workflow.id,
        version: workflow.version,
        nodes,
        trigger,
        input: start.input,
        fire_at: start.fire_at,
        idempotency_key: start.idempotency_key,
    };
    Ok(store.start_workflow_run(new, now, audit).await?)
}

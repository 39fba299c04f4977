//! What a running script's helper calls mean (DESIGN §7.2): its input, its output and condition, and its owner's variables, each answered only once the store committed it, fenced by the attempt.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use cronium_core::{
    Expect, MAX_HELPER_CALLS, MAX_OUTPUT_BYTES, MAX_VARIABLE_BYTES, ValidationError, VariableKey,
    check_json_size,
};
use cronium_exec::helpers::{self, HelperError, HelperOp, HelperOutcome};
use cronium_exec::{HelperFuture, HelperHandler, Secrets, mask_json};
use cronium_store::{Fence, Job, Store, StoreError, VariableWrite};
use serde_json::{Value, json};

use crate::secrets::Sealer;

/// The helper service of one attempt.
pub struct AttemptHelpers {
    store: Arc<dyn Store>,
    sealer: Sealer,
    fence: Fence,
    input: Value,
    context: Value,
    /// The run's secrets, shared with its output's masking: a secret
    /// variable the script reads or writes is masked from then on.
    secrets: Secrets,
    calls: AtomicU32,
}

impl AttemptHelpers {
    pub fn new(
        store: Arc<dyn Store>,
        sealer: Sealer,
        fence: Fence,
        job: &Job,
        event_name: &str,
        secrets: Secrets,
    ) -> AttemptHelpers {
        AttemptHelpers {
            store,
            sealer,
            fence,
            input: job.metadata.get("input").cloned().unwrap_or(Value::Null),
            context: json!({
                "jobId": job.id.0,
                "attempt": job.attempt,
                "event": { "id": job.event_id.0, "name": event_name },
                "trigger": job.trigger.as_str(),
                // A workflow node's run, node and workflow; the run's input
                // is added when asked for (it is stored once, on the run).
                "workflow": job.metadata.get("workflow").cloned().unwrap_or(Value::Null),
            }),
            secrets,
            calls: AtomicU32::new(0),
        }
    }

    async fn answer(&self, server: Option<&str>, op: HelperOp) -> Result<Value, HelperOutcome> {
        if self.calls.fetch_add(1, Ordering::Relaxed) >= MAX_HELPER_CALLS {
            return Err(HelperOutcome::err(
                HelperError::Limit,
                format!("an attempt may make at most {MAX_HELPER_CALLS} helper calls"),
            ));
        }
        let now = crate::now();
        match op {
            HelperOp::Input => Ok(self.input.clone()),
            HelperOp::Context => {
                let mut context = self.context.clone();
                context["server"] = json!(server);
                if let Some(run) = context["workflow"]["run"].as_i64() {
                    let run = self
                        .store
                        .get_workflow_run(cronium_core::WorkflowRunId(run))
                        .await
                        .map_err(failed)?;
                    context["workflow"]["input"] = run.input.unwrap_or(Value::Null);
                }
                Ok(context)
            }
            HelperOp::Output { value } => {
                size(&value, MAX_OUTPUT_BYTES, "output")?;
                // The output goes on to the next run, the API and
                // notifications: masked like the log.
                let value = mask_json(&self.secrets, value);
                self.store
                    .attempt_set_output(&self.fence, Some(value))
                    .await
                    .map_err(failed)?;
                Ok(Value::Null)
            }
            HelperOp::Condition { value } => {
                self.store
                    .attempt_set_condition(&self.fence, value)
                    .await
                    .map_err(failed)?;
                Ok(Value::Null)
            }
            HelperOp::VarGet { key } => {
                let key = parse_key(&key)?;
                let stored = self
                    .store
                    .attempt_get_variable(&self.fence, &key)
                    .await
                    .map_err(failed)?
                    .ok_or_else(|| missing(&key))?;
                let value = stored.open(&self.sealer).map_err(failed)?;
                if stored.variable.secret {
                    // Before the answer: the script may print it at once.
                    self.secrets.add_json(&value);
                }
                Ok(value)
            }
            HelperOp::VarSet {
                key,
                value,
                secret,
                expect,
            } => {
                let key = parse_key(&key)?;
                size(&value, MAX_VARIABLE_BYTES, "value")?;
                let expect = match expect {
                    None => Expect::Any,
                    Some(helpers::Expect::Absent) => Expect::Absent,
                    Some(helpers::Expect::Value(v)) => Expect::Value(v),
                };
                let write = VariableWrite {
                    value: value.clone(),
                    secret,
                    expect,
                };
                let written = self
                    .store
                    .attempt_set_variable(&self.fence, &key, write, &self.sealer, now)
                    .await
                    .map_err(failed)?;
                if written.secret {
                    self.secrets.add_json(&value);
                }
                Ok(Value::Null)
            }
            HelperOp::VarDelete { key } => {
                let key = parse_key(&key)?;
                match self
                    .store
                    .attempt_delete_variable(&self.fence, &key, now)
                    .await
                    .map_err(failed)?
                {
                    true => Ok(Value::Null),
                    false => Err(missing(&key)),
                }
            }
        }
    }
}

impl HelperHandler for AttemptHelpers {
    fn call<'a>(&'a self, server: Option<&'a str>, op: HelperOp) -> HelperFuture<'a> {
        Box::pin(async move {
            match self.answer(server, op).await {
                Ok(value) => HelperOutcome::Ok(value),
                Err(outcome) => outcome,
            }
        })
    }
}

fn parse_key(key: &str) -> Result<VariableKey, HelperOutcome> {
    VariableKey::new(key).map_err(|e| HelperOutcome::err(HelperError::Invalid, e.message))
}

fn size(value: &Value, limit: usize, what: &str) -> Result<(), HelperOutcome> {
    check_json_size(value, limit, what)
        .map(drop)
        .map_err(|e: ValidationError| HelperOutcome::err(HelperError::TooLarge, e.message))
}

fn missing(key: &VariableKey) -> HelperOutcome {
    HelperOutcome::err(HelperError::NotFound, format!("no variable {key}"))
}

/// A store error as the script sees it.
fn failed(error: StoreError) -> HelperOutcome {
    match error {
        StoreError::Fenced { .. } | StoreError::NotFound { .. } => HelperOutcome::err(
            HelperError::Refused,
            "this attempt no longer holds its job (it ended, or its lease was recovered and the \
             job runs elsewhere): nothing was written",
        ),
        StoreError::Conflict { message, .. } => HelperOutcome::err(HelperError::Conflict, message),
        StoreError::Invalid(v) => {
            HelperOutcome::err(HelperError::Invalid, format!("{}: {}", v.field, v.message))
        }
        other => HelperOutcome::err(HelperError::Internal, other.to_string()),
    }
}

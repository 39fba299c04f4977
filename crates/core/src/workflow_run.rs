//! What a workflow run decides, pure: which nodes run or are skipped once their parents are done, what each node's input is, and how the run ends.
//!
//! The store holds a run's nodes and calls [`advance`] inside the
//! transaction that recorded a node's end, then writes back what it
//! returns; so "node done" and "next nodes queued" commit together, and the
//! same states always give the same decisions (which is what lets a
//! reconciler call it again after a crash).

use serde_json::{Map, Value};

use crate::JobStatus;
use crate::workflow::{EdgeOn, Join, WorkflowSpec};

/// Largest total of the node outputs one run keeps; a node whose output
/// takes the run past it fails, saying so.
pub const MAX_RUN_OUTPUT_BYTES: usize = 16 * 1024 * 1024;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// Waiting for an earlier run of its workflow (overlap `queue`).
    Queued,
    Running,
    Succeeded,
    /// A node failed and no `failure` or `always` edge handled it.
    Failed,
    Cancelled,
    /// Not started: an earlier run was active (overlap `forbid`).
    Skipped,
}

str_enum!(RunStatus {
    Queued = "queued",
    Running = "running",
    Succeeded = "succeeded",
    Failed = "failed",
    Cancelled = "cancelled",
    Skipped = "skipped",
});

impl RunStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Running)
    }
}

/// Where one node of a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeStatus {
    /// Some incoming edge is not resolved yet.
    Pending,
    /// Its job is queued or running.
    Running,
    Succeeded,
    /// Its job failed, timed out, partly failed, or could not start.
    Failed,
    Cancelled,
    /// Decided not to run; the reason says which edge was not taken.
    Skipped,
}

str_enum!(NodeStatus {
    Pending = "pending",
    Running = "running",
    Succeeded = "succeeded",
    Failed = "failed",
    Cancelled = "cancelled",
    Skipped = "skipped",
});

impl NodeStatus {
    /// Whether the node is over: its outgoing edges are resolved.
    pub fn is_decided(self) -> bool {
        !matches!(self, NodeStatus::Pending | NodeStatus::Running)
    }

    /// The node's status for its job's: any end but success and
    /// cancellation is a failure (a job its event's overlap policy skipped
    /// did not do the node's work either).
    pub fn of_job(status: JobStatus) -> NodeStatus {
        match status {
            JobStatus::Queued | JobStatus::Running => NodeStatus::Running,
            JobStatus::Succeeded => NodeStatus::Succeeded,
            JobStatus::Cancelled => NodeStatus::Cancelled,
            JobStatus::Failed
            | JobStatus::TimedOut
            | JobStatus::Partial
            | JobStatus::Missed
            | JobStatus::Skipped => NodeStatus::Failed,
        }
    }
}

/// What a decision needs of one node: its status and, once it succeeded,
/// the condition its script set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeState {
    pub status: NodeStatus,
    pub condition: bool,
}

impl NodeState {
    pub fn new(status: NodeStatus) -> NodeState {
        NodeState {
            status,
            condition: false,
        }
    }
}

/// One thing to write back, by node position in the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Queue the node's job.
    Run(usize),
    /// Decide the node without running it: `Skipped` or `Cancelled`.
    Decide {
        node: usize,
        status: NodeStatus,
        reason: String,
    },
    /// Ask the node's queued or running job to stop.
    Stop { node: usize, reason: String },
}

/// Whether the edge `on` is taken, given its parent's state.
fn taken(on: EdgeOn, parent: NodeState) -> bool {
    match on {
        EdgeOn::Success => parent.status == NodeStatus::Succeeded,
        EdgeOn::Failure => parent.status == NodeStatus::Failed,
        EdgeOn::Always => matches!(parent.status, NodeStatus::Succeeded | NodeStatus::Failed),
        EdgeOn::Condition => parent.status == NodeStatus::Succeeded && parent.condition,
    }
}

/// `a failed`, `b succeeded without setting its condition`: a parent's end
/// as a skip reason tells it.
fn ended(id: &str, parent: NodeState) -> String {
    match parent.status {
        NodeStatus::Succeeded if !parent.condition => {
            format!("{id} succeeded with its condition false")
        }
        status => format!("{id} {status}"),
    }
}

/// The first failed node no `failure` or `always` edge handles, in
/// topological order.
pub fn unhandled_failure<'a>(spec: &'a WorkflowSpec, nodes: &[NodeState]) -> Option<&'a str> {
    spec.order().into_iter().find_map(|id| {
        let i = spec.position(id)?;
        let handled = spec
            .children(id)
            .iter()
            .any(|(_, on)| matches!(on, EdgeOn::Failure | EdgeOn::Always));
        (nodes[i].status == NodeStatus::Failed && !handled).then_some(id.as_str())
    })
}

/// The next decisions of a run whose nodes stand as `nodes` (by position in
/// `spec`), which are updated to match. `cancelling`: the run was asked to
/// stop. Calling it again on the result returns only `Stop`s for jobs still
/// running, so it is safe to call after any change.
pub fn advance(spec: &WorkflowSpec, nodes: &mut [NodeState], cancelling: bool) -> Vec<Step> {
    let halt = if cancelling {
        Some((NodeStatus::Cancelled, "the run was cancelled".to_string()))
    } else if spec.fail_fast() {
        unhandled_failure(spec, nodes).map(|id| {
            (
                NodeStatus::Skipped,
                format!("fail fast: node {id} failed and no edge handles it"),
            )
        })
    } else {
        None
    };
    let mut steps = Vec::new();
    if let Some((status, reason)) = halt {
        for (node, state) in nodes.iter_mut().enumerate() {
            match state.status {
                NodeStatus::Pending => {
                    state.status = status;
                    steps.push(Step::Decide {
                        node,
                        status,
                        reason: reason.clone(),
                    });
                }
                NodeStatus::Running => steps.push(Step::Stop {
                    node,
                    reason: reason.clone(),
                }),
                _ => {}
            }
        }
        return steps;
    }
    for id in spec.order() {
        let Some(node) = spec.position(id) else {
            continue;
        };
        let after = spec.parents(id);
        let parents: Vec<(&str, EdgeOn, NodeState)> = after
            .iter()
            .filter_map(|edge| {
                let p = spec.position(&edge.node)?;
                Some((edge.node.as_str(), edge.on, nodes[p]))
            })
            .collect();
        if nodes[node].status != NodeStatus::Pending
            || parents.iter().any(|(_, _, p)| !p.status.is_decided())
        {
            continue;
        }
        let join = spec.node(id).map_or(Join::All, |n| n.join);
        let run = match join {
            Join::All => parents.iter().all(|&(_, on, p)| taken(on, p)),
            Join::Any => parents.is_empty() || parents.iter().any(|&(_, on, p)| taken(on, p)),
        };
        if run {
            nodes[node].status = NodeStatus::Running;
            steps.push(Step::Run(node));
            continue;
        }
        let reason = match join {
            Join::All => {
                let (pid, on, p) = parents
                    .iter()
                    .find(|&&(_, on, p)| !taken(on, p))
                    .expect("a refused join all has an untaken edge");
                format!("{} (its edge is on {on})", ended(pid, *p))
            }
            Join::Any => format!(
                "no incoming edge was taken: {}",
                parents
                    .iter()
                    .map(|&(pid, on, p)| format!("{} (on {on})", ended(pid, p)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        nodes[node].status = NodeStatus::Skipped;
        steps.push(Step::Decide {
            node,
            status: NodeStatus::Skipped,
            reason,
        });
    }
    steps
}

/// How the run ended, once every node is decided; `None` while any is
/// pending or running.
pub fn outcome(spec: &WorkflowSpec, nodes: &[NodeState], cancelling: bool) -> Option<RunStatus> {
    if nodes.iter().any(|n| !n.status.is_decided()) {
        return None;
    }
    Some(if cancelling {
        RunStatus::Cancelled
    } else if unhandled_failure(spec, nodes).is_some() {
        RunStatus::Failed
    } else if nodes.iter().any(|n| n.status == NodeStatus::Cancelled) {
        RunStatus::Cancelled
    } else {
        RunStatus::Succeeded
    })
}

/// The nodes a retry runs again: every node that did not succeed. Each is
/// decided afresh by [`advance`], so a node skipped for a reason the retry
/// does not change is skipped again, and succeeded nodes keep their outputs.
pub fn retry(nodes: &mut [NodeState]) -> Vec<usize> {
    let mut reset = Vec::new();
    for (i, node) in nodes.iter_mut().enumerate() {
        if node.status != NodeStatus::Succeeded {
            *node = NodeState::new(NodeStatus::Pending);
            reset.push(i);
        }
    }
    reset
}

/// A node's input: the run's input for a node without parents, its
/// parent's output for one parent, and an object keyed by parent id for
/// several (`null` for a parent that set none or did not run).
pub fn input(
    spec: &WorkflowSpec,
    node: usize,
    run_input: &Value,
    output: impl Fn(usize) -> Value,
) -> Value {
    let after = &spec.nodes()[node].after;
    match after.as_slice() {
        [] => run_input.clone(),
        [edge] => spec.position(&edge.node).map_or(Value::Null, &output),
        several => Value::Object(
            several
                .iter()
                .map(|edge| {
                    let value = spec.position(&edge.node).map_or(Value::Null, &output);
                    (edge.node.as_str().to_string(), value)
                })
                .collect::<Map<_, _>>(),
        ),
    }
}

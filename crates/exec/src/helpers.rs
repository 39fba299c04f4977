//! Helper calls a script makes (the runner's Call records), relayed to whoever answers them for the attempt, and the replies sent back.
//!
//! This crate only carries calls: what a call means (variables, the run's
//! output, its condition) is the engine's, behind [`HelperHandler`]. Each
//! call is answered in a task of its own, so twenty background processes
//! of one script waiting on slow database writes do not wait on each other,
//! and the replies go back in whatever order they are ready: the runner
//! matches them to its callers by id.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use cronium_runner::protocol::{Expect, HelperError, HelperOp, HelperOutcome};
use cronium_runner::protocol::{HelperCall, HelperReply, Kind, MAX_FRAME};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinSet;

use crate::records::frame;

/// What a [`HelperHandler`] returns: the call's outcome, once committed.
pub type HelperFuture<'a> = Pin<Box<dyn Future<Output = HelperOutcome> + Send + 'a>>;

/// Answers one attempt's helper calls. An answer must mean the call took
/// effect (the store committed it), since the script goes on as if it had.
pub trait HelperHandler: Send + Sync {
    /// `server` names the remote server the call came from; `None` for a
    /// run on this host.
    fn call<'a>(&'a self, server: Option<&'a str>, op: HelperOp) -> HelperFuture<'a>;
}

/// A handler shared with whoever made it (a test keeping an eye on it).
impl<T: HelperHandler + ?Sized> HelperHandler for Arc<T> {
    fn call<'a>(&'a self, server: Option<&'a str>, op: HelperOp) -> HelperFuture<'a> {
        (**self).call(server, op)
    }
}

/// A shared [`HelperHandler`], as a [`crate::RunRequest`] carries it.
#[derive(Clone)]
pub struct Helpers(Arc<dyn HelperHandler>);

impl Helpers {
    pub fn new(handler: impl HelperHandler + 'static) -> Helpers {
        Helpers(Arc::new(handler))
    }
}

impl fmt::Debug for Helpers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Helpers(..)")
    }
}

/// One runner's calls in flight. Dropping it (the run is over) abandons
/// calls not yet answered: nobody is left to read their replies.
pub(crate) struct Relay {
    helpers: Option<Helpers>,
    server: Option<Arc<str>>,
    replies: UnboundedSender<Vec<u8>>,
    tasks: JoinSet<()>,
}

impl Relay {
    /// A relay, and where its replies (whole Reply records) come out, to be
    /// written to the runner's control channel.
    pub(crate) fn new(
        helpers: Option<Helpers>,
        server: Option<&str>,
    ) -> (Relay, UnboundedReceiver<Vec<u8>>) {
        let (replies, rx) = unbounded_channel();
        let relay = Relay {
            helpers,
            server: server.map(Arc::from),
            replies,
            tasks: JoinSet::new(),
        };
        (relay, rx)
    }

    /// Takes one Call record's payload and starts answering it.
    pub(crate) fn call(&mut self, payload: &[u8]) {
        while self.tasks.try_join_next().is_some() {}
        let call: HelperCall = match serde_json::from_slice(payload) {
            Ok(call) => call,
            Err(e) => {
                // The runner numbers its calls; one it cannot have sent
                // gets an answer if it has an id at all, so nobody waits.
                let id = serde_json::from_slice::<serde_json::Value>(payload)
                    .ok()
                    .and_then(|v| v["id"].as_u64());
                match id {
                    Some(id) => send(
                        &self.replies,
                        id,
                        HelperOutcome::err(HelperError::Invalid, format!("bad call: {e}")),
                    ),
                    None => tracing::warn!(error = %e, "skipping a helper call without an id"),
                }
                return;
            }
        };
        let Some(helpers) = self.helpers.clone() else {
            let why =
                "this run has no helper service (helpers answer only jobs run by a Cronium server)";
            send(
                &self.replies,
                call.id,
                HelperOutcome::err(HelperError::Unavailable, why),
            );
            return;
        };
        let replies = self.replies.clone();
        let server = self.server.clone();
        self.tasks.spawn(async move {
            let outcome = helpers.0.call(server.as_deref(), call.op).await;
            send(&replies, call.id, outcome);
        });
    }
}

/// Queues the reply to call `id`; one too big for a record says so instead.
fn send(replies: &UnboundedSender<Vec<u8>>, id: u64, outcome: HelperOutcome) {
    let mut json = serde_json::to_vec(&HelperReply { id, outcome }).expect("a reply serializes");
    if json.len() > MAX_FRAME {
        let too_big = HelperOutcome::err(
            HelperError::TooLarge,
            format!(
                "the answer is {} bytes, more than a record holds ({MAX_FRAME})",
                json.len()
            ),
        );
        json = serde_json::to_vec(&HelperReply {
            id,
            outcome: too_big,
        })
        .expect("a reply serializes");
    }
    // The run is over when nobody reads replies any more.
    let _ = replies.send(frame(Kind::Reply, &json));
}

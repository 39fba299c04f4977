//! Typed row ids, so an event id can never be passed where a server id belongs.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    )*};
}

id_type!(
    /// An event.
    EventId,
    /// A remote server.
    ServerId,
    /// A user.
    UserId,
    /// An API token.
    TokenId,
    /// A job: one run of an event.
    JobId,
    /// A notification channel.
    ChannelId,
    /// One of an event's actions.
    ActionId,
    /// One message to one channel about one job.
    DeliveryId,
    /// A workflow.
    WorkflowId,
    /// One run of a workflow.
    WorkflowRunId,
);

//! Cronium's domain model: events, schedules, servers, users, tokens and workflows, with
//! the rules that make them valid. Pure: no I/O, no clock, no database.
//!
//! Requests and database rows are turned into these types once, at the edge;
//! every invariant lives in a constructor or in [`EventSpec::validate`].

/// `as_str`, `parse` and `Display` for a fieldless enum with one API name per
/// variant. Defined before the modules so all of them can use it.
macro_rules! str_enum {
    ($ty:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),* }
            }

            /// Parses the name as written in the API; `field` names the input in the error.
            pub fn parse(text: &str, field: &str) -> Result<$ty, $crate::ValidationError> {
                match text {
                    $($text => Ok($ty::$variant),)*
                    other => Err($crate::ValidationError::new(
                        field,
                        format!(concat!("unknown value {:?} (expected one of: ", $($text, " ",)* ")"), other),
                    )),
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// A name of 1–64 characters from `[A-Za-z0-9._-]`, as servers and
/// channels have (safe in URLs, shells and logs): the type, its checked
/// constructor (`what` names it in the error), `as_str` and `Display`.
macro_rules! plain_name {
    ($(#[$doc:meta])* $ty:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $ty(String);

        impl $ty {
            pub fn new(text: &str) -> Result<$ty, $crate::ValidationError> {
                let ok = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
                if text.is_empty() || text.len() > 64 || !text.chars().all(ok) {
                    return Err($crate::ValidationError::new(
                        "name",
                        format!(
                            concat!("invalid ", $what, " name {:?} (1-64 characters: letters, digits, . _ -)"),
                            text
                        ),
                    ));
                }
                Ok($ty(text.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

pub mod crontab;
pub mod event;
pub mod http;
pub mod ids;
pub mod job;
pub mod notify;
pub mod schedule;
pub mod server;
pub mod user;
pub mod variable;
pub mod workflow;
pub mod workflow_run;

pub use event::{
    EventKind, EventName, EventSpec, EventStatus, RunLocation, SealedSecrets, Tag,
    needs_new_payload,
};
pub use http::{HeaderName, HttpMethod, HttpSpec, SealedHeaders};
pub use ids::{
    ActionId, ChannelId, DeliveryId, EventId, JobId, ServerId, TokenId, UserId, WorkflowId,
    WorkflowRunId,
};
pub use job::{JobStatus, MisfirePolicy, OverlapPolicy, RunPolicy, Trigger};
pub use notify::{
    ActionSpec, ActionTarget, ChannelKind, ChannelName, ChannelSpec, EmailAddress, EmailSettings,
    SmtpTls, When, redact_url, validate_chat_url,
};
pub use schedule::Schedule;
pub use server::{
    AuthKind, DEFAULT_CACHE_DIR, MAX_CACHE_DIR_BYTES, ServerName, ServerSpec, validate_cache_dir,
};
pub use user::{
    PASSWORD_MIN_CHARS, Password, PasswordHash, Role, SessionHash, TokenHash, UserName,
};
pub use variable::{
    Expect, MAX_HELPER_CALLS, MAX_OUTPUT_BYTES, MAX_VARIABLE_BYTES, Variable, VariableKey,
    check_json_size,
};
pub use workflow::{
    Edge, EdgeOn, EventRef, Join, NodeId, ResolvedWorkflow, WorkflowName, WorkflowNode,
    WorkflowSpec, WorkflowTrigger,
};
pub use workflow_run::{NodeState, NodeStatus, RunStatus};

/// A value that breaks a rule, with the (camelCase, API-facing) field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            message: message.into(),
        }
    }
}

//! Cronium's domain model: events, schedules, servers, users and tokens, with
//! the rules that make them valid. Pure: no I/O, no clock, no database.
//!
//! Requests and database rows are turned into these types once, at the edge;
//! every invariant lives in a constructor or in [`EventSpec::validate`].

pub mod event;
pub mod ids;
pub mod schedule;
pub mod server;
pub mod user;

pub use event::{
    EventKind, EventName, EventSpec, EventStatus, RunLocation, SealedSecrets, Tag,
    needs_new_payload,
};
pub use ids::{EventId, ServerId, TokenId, UserId};
pub use schedule::Schedule;
pub use server::{AuthKind, ServerName, ServerSpec};
pub use user::{Role, TokenHash};

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

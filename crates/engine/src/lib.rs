//! Cronium's engine: what runs jobs once the API has recorded them. The scheduler turns schedules into jobs, the workers claim and run them through the executors, the log hub wakes followers; secrets at rest and the payload files live here because both the API and the workers use them.
//!
//! The engine knows the store (`Arc<dyn Store>`) and the executors; it
//! knows nothing of HTTP. Its loops take a cancellation token and expose
//! `tick(now)`, so tests drive them with an injected clock.

pub mod clock;
pub mod deliveries;
pub mod files;
pub mod helpers;
pub mod live;
pub mod nodes;
pub mod payloads;
mod retry;
pub mod running;
pub mod scheduler;
pub mod secrets;
pub mod servers;
pub mod signals;
pub mod signing;
pub mod worker;
pub mod workflows;

pub use clock::now;

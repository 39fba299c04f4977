//! SSH connections kept per server and reused by jobs, with a bound on how many jobs use a server at once.
//!
//! One connection per server carries every job's channels. A server gets at
//! most [`PER_SERVER_JOBS`] jobs at once, which also bounds the channels
//! open on its connection below OpenSSH's default `MaxSessions` (10). A
//! connection that died (keepalives unanswered, server restarted) or whose
//! server record changed is replaced on the next use; one no job has used
//! for [`IDLE_CLOSE`] is closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cronium_core::ServerId;
use cronium_ssh::{Session, SshError, Timeouts, connect};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::RemoteServer;

/// Jobs running on one server at once; more wait for a slot.
pub const PER_SERVER_JOBS: usize = 8;
/// A connection unused this long is closed; the next job connects again.
pub const IDLE_CLOSE: Duration = Duration::from_secs(10 * 60);

#[derive(Default)]
pub struct Pool {
    timeouts: Timeouts,
    servers: Mutex<HashMap<ServerId, Arc<ServerSlot>>>,
}

/// Per server: the job slots, the live connection, and the lock that keeps
/// two jobs of this process from deploying to the host at the same time.
pub struct ServerSlot {
    jobs: Arc<Semaphore>,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
    pub(super) deploy: tokio::sync::Mutex<()>,
}

/// A live connection and what has been learned about its host through it.
pub struct Connection {
    pub session: Session,
    server: RemoteServer,
    pub(super) host: Mutex<HostFacts>,
    last_used: Mutex<Instant>,
}

/// Facts about the host, trusted for as long as this connection lives: a
/// new connection (a restarted host, a re-imaged one) checks them again.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// `uname -m`.
    pub arch: Option<String>,
    /// The SSH user's `$HOME`.
    pub home: Option<String>,
    /// The checksum of the runner verified in place through this connection.
    pub runner_sha256: Option<String>,
}

impl Connection {
    pub fn host(&self) -> HostFacts {
        self.host.lock().expect("host facts lock").clone()
    }

    pub fn update(&self, change: impl FnOnce(&mut HostFacts)) {
        change(&mut self.host.lock().expect("host facts lock"));
    }
}

/// A job's slot on a server; the server's connection is reached through it.
pub struct Lease {
    pub slot: Arc<ServerSlot>,
    _permit: OwnedSemaphorePermit,
}

impl Pool {
    pub fn new(timeouts: Timeouts) -> Pool {
        Pool {
            timeouts,
            servers: Mutex::default(),
        }
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Closes the connections no job holds that were last used before
    /// `now - IDLE_CLOSE`; returns how many.
    pub async fn close_idle(&self, now: Instant) -> usize {
        let slots: Vec<Arc<ServerSlot>> = self
            .servers
            .lock()
            .expect("pool lock")
            .values()
            .cloned()
            .collect();
        let mut closed = 0;
        for slot in slots {
            // A slot busy connecting is not idle.
            let Ok(mut current) = slot.connection.try_lock() else {
                continue;
            };
            let idle = current.as_ref().is_some_and(|c| {
                Arc::strong_count(c) == 1
                    && now.saturating_duration_since(*c.last_used.lock().expect("last used lock"))
                        >= IDLE_CLOSE
            });
            if idle && let Some(connection) = current.take().and_then(Arc::into_inner) {
                connection.session.close().await;
                closed += 1;
            }
        }
        closed
    }

    /// Waits for a job slot on `server`.
    pub async fn lease(&self, server: &RemoteServer) -> Lease {
        let slot = self
            .servers
            .lock()
            .expect("pool lock")
            .entry(server.id)
            .or_insert_with(|| {
                Arc::new(ServerSlot {
                    jobs: Arc::new(Semaphore::new(PER_SERVER_JOBS)),
                    connection: tokio::sync::Mutex::new(None),
                    deploy: tokio::sync::Mutex::new(()),
                })
            })
            .clone();
        let permit = slot
            .jobs
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        Lease {
            slot,
            _permit: permit,
        }
    }
}

impl Lease {
    /// The server's live connection, made now if there is none. Jobs only
    /// connect to servers whose host key is pinned: trusting a key on first
    /// use is `server check`'s decision.
    pub async fn connection(
        &self,
        server: &RemoteServer,
        timeouts: Timeouts,
    ) -> Result<Arc<Connection>, SshError> {
        let mut current = self.slot.connection.lock().await;
        if let Some(connection) = current.as_ref()
            && !connection.session.is_closed()
            && connection.server == *server
        {
            *connection.last_used.lock().expect("last used lock") = Instant::now();
            return Ok(connection.clone());
        }
        let pin = server.pin.clone().ok_or_else(|| SshError::HostKey {
            address: server.target.address(),
            reason: format!(
                "no host key is pinned for server {}; run `cronium server check {}` to \
                 pin the key it presents, or set one with --known-host",
                server.name, server.name
            ),
        })?;
        let session = connect(
            &server.target,
            &server.credentials,
            &cronium_ssh::HostKeyPolicy::Pinned(pin),
            timeouts,
        )
        .await?;
        let connection = Arc::new(Connection {
            session,
            server: server.clone(),
            host: Mutex::default(),
            last_used: Mutex::new(Instant::now()),
        });
        *current = Some(connection.clone());
        Ok(connection)
    }

    /// Drops the connection if it is still `broken`, so the next job
    /// connects afresh.
    pub async fn discard(&self, broken: &Arc<Connection>) {
        let mut current = self.slot.connection.lock().await;
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, broken)) {
            *current = None;
        }
    }
}

//! Wake-up signals between servers sharing one database: announced in the transaction that makes a change (PostgreSQL `NOTIFY`, delivered at commit), heard by a [`SignalListener`].
//!
//! A signal is a hint, never data: it names ids only (no log text, no
//! secret), and whoever hears it re-reads the tables, which stay the one
//! truth. A signal may be lost (a listener reconnecting hears nothing sent
//! meanwhile), so a listener that (re)connects must catch up by reading, and
//! the readers keep a slow poll as well. SQLite has one server per database:
//! there the announcement does nothing and there is no listener.
//!
//! Everything goes through one channel, [`CHANNEL`], with a short text
//! payload per kind (see [`Signal::payload`]). PostgreSQL drops a payload
//! repeated within one transaction, so a transaction queuing a hundred jobs
//! sends one `queued`, and one that stores log lines sends one `log` per job
//! (its newest line's number).

use async_trait::async_trait;
use cronium_core::JobId;

use crate::Result;
use crate::db::Conn;

/// The one PostgreSQL channel servers announce on and listen to.
pub const CHANNEL: &str = "cronium";

/// What changed, as some server (perhaps this one) announced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Jobs became claimable (queued: created, retried, recovered, released):
    /// workers should try to claim. Payload `queued`.
    JobsQueued,
    /// Log lines of `job` up to `seq` are stored. Payload `log <job> <seq>`.
    LogStored { job: JobId, seq: u64 },
    /// `job` ended (it will not run again). Payload `end <job>`.
    JobEnded(JobId),
    /// Events, their schedules or workflow triggers changed: schedulers
    /// should look again. Payload `schedules`.
    SchedulesChanged,
    /// The listener (re)connected and may have missed signals meanwhile:
    /// everyone re-reads the tables. Never sent over the database; the
    /// listener's owner makes it.
    Resync,
}

impl Signal {
    /// The NOTIFY payload, far below PostgreSQL's 8000 bytes.
    pub fn payload(&self) -> Option<String> {
        match self {
            Signal::JobsQueued => Some("queued".into()),
            Signal::LogStored { job, seq } => Some(format!("log {} {seq}", job.0)),
            Signal::JobEnded(job) => Some(format!("end {}", job.0)),
            Signal::SchedulesChanged => Some("schedules".into()),
            Signal::Resync => None,
        }
    }

    /// The signal a payload names; `None` for one this version does not know
    /// (a newer server may announce more), which a listener skips.
    pub fn parse(payload: &str) -> Option<Signal> {
        let mut words = payload.split(' ');
        let signal = match words.next()? {
            "queued" => Signal::JobsQueued,
            "schedules" => Signal::SchedulesChanged,
            "log" => Signal::LogStored {
                job: JobId(words.next()?.parse().ok()?),
                seq: words.next()?.parse().ok()?,
            },
            "end" => Signal::JobEnded(JobId(words.next()?.parse().ok()?)),
            _ => return None,
        };
        words.next().is_none().then_some(signal)
    }
}

/// Announces `signal` on `conn`: inside a transaction it is delivered when
/// that transaction commits, and not at all if it rolls back.
pub(crate) async fn announce<C: Conn>(conn: &mut C, signal: Signal) -> Result<()> {
    if let Some(payload) = signal.payload() {
        conn.notify(CHANNEL, &payload).await?;
    }
    Ok(())
}

/// Hears the signals every server announces (PostgreSQL `LISTEN` on a
/// connection of its own). It does not reconnect by itself: after any error
/// the caller decides when to [`SignalListener::connect`] again, and treats
/// the new connection as a [`Signal::Resync`].
#[async_trait]
pub trait SignalListener: Send {
    /// Opens a new connection (dropping the old one, if any) and listens.
    async fn connect(&mut self) -> Result<()>;

    /// The next signal (never [`Signal::Resync`]). An error means the
    /// connection is lost or was never made: connect again.
    async fn recv(&mut self) -> Result<Signal>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_payload_reads_back_as_its_signal() {
        for signal in [
            Signal::JobsQueued,
            Signal::SchedulesChanged,
            Signal::JobEnded(JobId(7)),
            Signal::LogStored {
                job: JobId(12),
                seq: 9_000_000_000,
            },
        ] {
            let payload = signal.payload().unwrap();
            assert_eq!(Signal::parse(&payload), Some(signal), "{payload}");
        }
        assert_eq!(Signal::Resync.payload(), None);
    }

    #[test]
    fn unknown_or_malformed_payloads_are_skipped() {
        for payload in [
            "",
            "queued now",
            "log 1",
            "log x 2",
            "end",
            "end -",
            "cancel 4",
            "log 1 2 3",
        ] {
            assert_eq!(Signal::parse(payload), None, "{payload:?}");
        }
    }
}

//! Where the script's output and the runner's own messages go: plain passthrough or framed records.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::protocol::{self, Hello, Kind, PROTOCOL_VERSION, RunResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Shared by the pump threads, the helper connections and the supervision
/// loop. Writes go straight to the file descriptors, unbuffered, so output is
/// live and never held whole; in framed mode one lock keeps records whole.
#[derive(Clone)]
pub enum Output {
    Plain { out: Arc<File>, err: Arc<File> },
    Framed(Arc<Mutex<FramedOut>>),
}

/// The framed stream and whether its final record was written.
pub struct FramedOut {
    file: File,
    /// Set by the Result record: nothing may follow it.
    ended: bool,
}

impl Output {
    pub fn plain() -> io::Result<Output> {
        Ok(Output::Plain {
            out: Arc::new(dup_stdio(io::stdout().as_fd())?),
            err: Arc::new(dup_stdio(io::stderr().as_fd())?),
        })
    }

    /// Framed output on stdout, starting with the [`Hello`] record.
    pub fn framed() -> io::Result<Output> {
        let mut out = dup_stdio(io::stdout().as_fd())?;
        let hello = Hello {
            protocol: PROTOCOL_VERSION,
            runner_version: env!("CARGO_PKG_VERSION").into(),
        };
        protocol::write_json(&mut out, Kind::Hello, &hello)?;
        Ok(Output::Framed(Arc::new(Mutex::new(FramedOut {
            file: out,
            ended: false,
        }))))
    }

    pub fn is_framed(&self) -> bool {
        matches!(self, Output::Framed(_))
    }

    /// Passes a chunk of the script's output on, byte for byte.
    pub fn chunk(&self, stream: Stream, data: &[u8]) -> io::Result<()> {
        match (self, stream) {
            (Output::Plain { out, .. }, Stream::Stdout) => (&**out).write_all(data),
            (Output::Plain { err, .. }, Stream::Stderr) => (&**err).write_all(data),
            (Output::Framed(w), Stream::Stdout) => frame(w, Kind::Stdout, data),
            (Output::Framed(w), Stream::Stderr) => frame(w, Kind::Stderr, data),
        }
    }

    /// A structured runner event (framed mode only; plain mode has no place for it).
    pub fn event(&self, event: Value) {
        if let Output::Framed(w) = self {
            let _ = frame(w, Kind::Event, event.to_string().as_bytes());
        }
    }

    /// A message for people: `cronium-runner: ...` on stderr, or a `message` event.
    pub fn message(&self, text: &str) {
        match self {
            Output::Plain { err, .. } => {
                let _ = (&**err).write_all(format!("cronium-runner: {text}\n").as_bytes());
            }
            Output::Framed(_) => self.event(json!({"event": "message", "message": text})),
        }
    }

    /// A helper call for the executor (a JSON [`protocol::HelperCall`]).
    /// Fails in plain mode, and once the Result record was written.
    pub fn call(&self, json: &[u8]) -> io::Result<()> {
        match self {
            Output::Framed(w) => frame(w, Kind::Call, json),
            Output::Plain { .. } => Err(io::Error::other("plain output has no executor")),
        }
    }

    /// The final record in framed mode; nothing in plain mode (the exit status says it).
    pub fn result(&self, result: &RunResult) {
        if let Output::Framed(w) = self {
            let json = serde_json::to_vec(result).expect("result serializes");
            let _ = frame(w, Kind::Result, &json);
        }
    }
}

fn frame(w: &Mutex<FramedOut>, kind: Kind, data: &[u8]) -> io::Result<()> {
    let mut w = w.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    // A straggler (a helper call from a process that outlived the script)
    // must not append to a stream whose last record was already sent.
    if w.ended {
        return Err(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "the run has ended",
        ));
    }
    protocol::write_frame(&mut w.file, kind, data)?;
    w.ended = kind == Kind::Result;
    Ok(())
}

fn dup_stdio(fd: std::os::fd::BorrowedFd<'_>) -> io::Result<File> {
    let owned: OwnedFd = fd.try_clone_to_owned()?;
    Ok(File::from(owned))
}

//! Long-running remote commands: write their stdin, read their stdout as a stream, learn how they ended.
//!
//! [`Session::exec`] collects output for short commands. A runner streams
//! records for as long as its script runs, so [`Session::start`] hands back
//! the streams instead: stdout as an `AsyncRead` with backpressure (a slow
//! reader slows the remote command down, nothing is dropped), stdin as an
//! `AsyncWrite`, and the end (exit status, the head of stderr, or a lost
//! connection) from [`RemoteProcess::wait`].

use russh::ChannelMsg;
use russh::client::Msg;
use russh::{ChannelReadHalf, ChannelWriteHalf};
use tokio::io::{AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;

use crate::{Session, SshError};

/// How much of stdout may wait between the connection and the reader
/// before the connection stops reading.
const STDOUT_BUFFER: usize = 256 * 1024;
/// Bytes of stderr kept for diagnostics; the rest is read and dropped.
const STDERR_KEEP: usize = 16 * 1024;

/// A command started with [`Session::start`].
pub struct RemoteProcess {
    /// The command's stdout.
    pub stdout: DuplexStream,
    write: ChannelWriteHalf<Msg>,
    pump: JoinHandle<Exit>,
}

/// How a remote command ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exit {
    pub status: Option<u32>,
    /// The signal's name (`TERM`, `KILL`, …) if the command was killed.
    pub signal: Option<String>,
    /// The first 16 KiB of stderr.
    pub stderr: String,
    /// The channel closed without an exit status while the connection died.
    pub connection_lost: bool,
}

impl Session {
    /// Starts `command` (through the remote user's shell) and returns its
    /// streams at once, without waiting for it to finish.
    pub async fn start(&self, command: &str) -> Result<RemoteProcess, SshError> {
        let channel = self.open_channel().await?;
        channel
            .exec(true, command)
            .await
            .map_err(|e| SshError::Command {
                address: self.target().address(),
                command: command.to_string(),
                reason: format!("cannot start: {e}"),
            })?;
        let (read, write) = channel.split();
        let (stdout, sink) = tokio::io::duplex(STDOUT_BUFFER);
        let handle = self.handle_closed_probe();
        let pump = tokio::spawn(pump(read, sink, handle));
        Ok(RemoteProcess {
            stdout,
            write,
            pump,
        })
    }
}

impl RemoteProcess {
    /// A writer for the command's stdin.
    pub fn stdin(&self) -> impl AsyncWrite + Unpin + Send + 'static {
        self.write.make_writer()
    }

    /// Writes `data` to stdin.
    pub async fn write_stdin(&self, data: &[u8]) -> std::io::Result<()> {
        let mut writer = self.stdin();
        writer.write_all(data).await?;
        writer.flush().await
    }

    /// Closes stdin (the command reads end of file).
    pub async fn close_stdin(&self) {
        let _ = self.write.eof().await;
    }

    /// Closes the channel: the remote command's stdin and stdout go away
    /// (OpenSSH closes its pipes), and [`RemoteProcess::wait`] returns soon.
    pub async fn close(&self) {
        let _ = self.write.close().await;
    }

    /// Waits for the channel to close and says how the command ended. The
    /// stdout stream ends before this returns.
    pub async fn wait(self) -> Exit {
        let RemoteProcess { write, pump, .. } = self;
        let exit = pump.await.unwrap_or_else(|_| Exit {
            connection_lost: true,
            ..Exit::default()
        });
        let _ = write.close().await;
        exit
    }
}

/// Moves channel messages to the stdout pipe (waiting while it is full)
/// and notes the rest, until the channel closes.
async fn pump(
    mut read: ChannelReadHalf,
    mut sink: DuplexStream,
    closed: impl Fn() -> bool + Send + 'static,
) -> Exit {
    let mut exit = Exit::default();
    let mut stderr = Vec::new();
    let mut sink_open = true;
    while let Some(message) = read.wait().await {
        match message {
            ChannelMsg::Data { data } if sink_open => {
                // A reader that went away stops caring about stdout; keep
                // draining the channel so the command is not blocked.
                sink_open = sink.write_all(&data).await.is_ok();
            }
            ChannelMsg::ExtendedData { data, ext: 1 } => {
                let room = STDERR_KEEP.saturating_sub(stderr.len());
                stderr.extend_from_slice(&data[..data.len().min(room)]);
            }
            ChannelMsg::ExitStatus { exit_status } => exit.status = Some(exit_status),
            ChannelMsg::ExitSignal { signal_name, .. } => {
                exit.signal = Some(crate::client::signal_name_text(&signal_name))
            }
            _ => {}
        }
    }
    drop(sink);
    exit.stderr = String::from_utf8_lossy(&stderr).trim().to_string();
    exit.connection_lost = exit.status.is_none() && exit.signal.is_none() && closed();
    exit
}

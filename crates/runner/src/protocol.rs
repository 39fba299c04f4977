//! The framed output protocol (version 1) between `cronium-runner` and an executor.
//!
//! Every record is `[kind: u8][length: u32 big-endian][payload: length bytes]`.
//! Output chunks carry raw bytes, so the stream is binary-safe; control records
//! carry small JSON objects. See `docs/protocol.md` for the full description.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change to the records below.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest output chunk the runner sends in one record.
pub const MAX_CHUNK: usize = 64 * 1024;

/// Largest record a reader accepts; anything bigger means a corrupt stream.
pub const MAX_FRAME: usize = 1024 * 1024;

/// The kind byte of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Runner → executor, always first: JSON [`Hello`].
    Hello = 0x01,
    /// Runner → executor: raw bytes the script wrote to stdout.
    Stdout = 0x02,
    /// Runner → executor: raw bytes the script wrote to stderr.
    Stderr = 0x03,
    /// Runner → executor: JSON object with an `event` field (`verified`, `started`, `message`, ...).
    Event = 0x04,
    /// Runner → executor, always last: JSON [`RunResult`].
    Result = 0x05,
    /// Executor → runner (only with `--env-from-stdin`, before start): JSON object of extra
    /// environment variables, e.g. secrets that must never touch the disk.
    Env = 0x10,
    /// Executor → runner: stop the script (same as a timeout, but reported as cancelled).
    Cancel = 0x11,
}

impl Kind {
    pub fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            0x01 => Kind::Hello,
            0x02 => Kind::Stdout,
            0x03 => Kind::Stderr,
            0x04 => Kind::Event,
            0x05 => Kind::Result,
            0x10 => Kind::Env,
            0x11 => Kind::Cancel,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hello {
    pub protocol: u32,
    pub runner_version: String,
}

/// How a run ended, as carried by the final [`Kind::Result`] record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunResult {
    /// The runner's own exit status (see DESIGN §3.2: the script's, or 124–128+N).
    pub exit_code: i32,
    /// The signal that killed the script, if it died of one.
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub cancelled: bool,
    /// From the script's start to its exit; 0 if it never started.
    pub duration_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("framed stream: {0}")]
    Io(io::Error),
    #[error("framed stream: unknown record kind 0x{0:02x}")]
    UnknownKind(u8),
    #[error("framed stream: record of {0} bytes exceeds {MAX_FRAME}")]
    TooLarge(usize),
    #[error("framed stream: truncated record")]
    Truncated,
}

/// Writes one record. Callers sharing a writer must hold a lock across the call.
pub fn write_frame(w: &mut impl Write, kind: Kind, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "record too large"))?;
    let mut header = [0u8; 5];
    header[0] = kind as u8;
    header[1..].copy_from_slice(&len.to_be_bytes());
    w.write_all(&header)?;
    w.write_all(payload)?;
    w.flush()
}

/// Writes a record whose payload is `value` as JSON.
pub fn write_json(w: &mut impl Write, kind: Kind, value: &impl Serialize) -> io::Result<()> {
    let json = serde_json::to_vec(value).map_err(io::Error::other)?;
    write_frame(w, kind, &json)
}

/// Reads one record; `Ok(None)` on a clean end of stream between records.
pub fn read_frame(r: &mut impl Read) -> Result<Option<(Kind, Vec<u8>)>, ProtocolError> {
    let mut header = [0u8; 5];
    let mut filled = 0;
    while filled < header.len() {
        match r.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(ProtocolError::Truncated),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ProtocolError::Io(e)),
        }
    }
    let kind = Kind::from_byte(header[0]).ok_or(ProtocolError::UnknownKind(header[0]))?;
    let len = u32::from_be_bytes(header[1..].try_into().expect("4 bytes")) as usize;
    if len > MAX_FRAME {
        return Err(ProtocolError::TooLarge(len));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => ProtocolError::Truncated,
        _ => ProtocolError::Io(e),
    })?;
    Ok(Some((kind, payload)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_byte_exact() {
        let mut buf = Vec::new();
        let binary: Vec<u8> = (0..=255).collect();
        write_frame(&mut buf, Kind::Stdout, &binary).unwrap();
        write_frame(&mut buf, Kind::Stderr, b"").unwrap();
        let result = RunResult {
            exit_code: 7,
            signal: None,
            timed_out: false,
            cancelled: false,
            duration_ms: 12,
        };
        write_json(&mut buf, Kind::Result, &result).unwrap();

        let mut r = &buf[..];
        assert_eq!(read_frame(&mut r).unwrap(), Some((Kind::Stdout, binary)));
        assert_eq!(read_frame(&mut r).unwrap(), Some((Kind::Stderr, vec![])));
        let (kind, json) = read_frame(&mut r).unwrap().unwrap();
        assert_eq!(kind, Kind::Result);
        assert_eq!(serde_json::from_slice::<RunResult>(&json).unwrap(), result);
        assert!(read_frame(&mut r).unwrap().is_none());
    }

    #[test]
    fn result_uses_camel_case() {
        let json = serde_json::to_string(&RunResult {
            exit_code: 124,
            signal: Some(15),
            timed_out: true,
            cancelled: false,
            duration_ms: 1000,
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"exitCode":124,"signal":15,"timedOut":true,"cancelled":false,"durationMs":1000}"#
        );
    }

    #[test]
    fn corrupt_streams_are_reported() {
        let table: [(&[u8], &str); 4] = [
            (&[0x02, 0, 0], "truncated"),
            (&[0x02, 0, 0, 0, 5, b'a'], "truncated"),
            (&[0x7f, 0, 0, 0, 0], "unknown record kind 0x7f"),
            (&[0x02, 0xff, 0xff, 0xff, 0xff], "exceeds"),
        ];
        for (bytes, want) in table {
            let err = read_frame(&mut &bytes[..]).unwrap_err().to_string();
            assert!(err.contains(want), "{bytes:?}: {err}");
        }
    }
}

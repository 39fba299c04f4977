//! The framed protocol (version 3) between `cronium-runner` and an executor.
//!
//! Every record is `[kind: u8][length: u32 big-endian][payload: length bytes]`.
//! Output chunks carry raw bytes, so the stream is binary-safe; control records
//! carry small JSON objects, and helper calls ([`HelperCall`], [`HelperReply`])
//! travel as JSON too. See `docs/protocol.md` for the full description.

use std::io::{self, Read, Write};

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use serde_json::Value;

/// Bumped on any incompatible change to the records below.
pub const PROTOCOL_VERSION: u32 = 3;

/// Largest output chunk the runner sends in one record.
pub const MAX_CHUNK: usize = 64 * 1024;

/// Largest record a reader accepts; anything bigger means a corrupt stream.
/// A helper call carrying a 1 MiB output value, plus its envelope, fits.
pub const MAX_FRAME: usize = 2 * 1024 * 1024;

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
    /// Runner → executor: a script's helper call, JSON [`HelperCall`].
    Call = 0x06,
    /// Executor → runner (only with `--env-from-stdin`, before start): JSON object of extra
    /// environment variables, e.g. secrets that must never touch the disk.
    Env = 0x10,
    /// Executor → runner: stop the script (same as a timeout, but reported as cancelled).
    Cancel = 0x11,
    /// Executor → runner: the answer to a [`Kind::Call`], JSON [`HelperReply`].
    Reply = 0x12,
    /// Executor → runner: JSON [`Lease`]: how much longer the script may
    /// run unless another Lease record comes.
    Lease = 0x13,
}

impl Kind {
    pub fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            0x01 => Kind::Hello,
            0x02 => Kind::Stdout,
            0x03 => Kind::Stderr,
            0x04 => Kind::Event,
            0x05 => Kind::Result,
            0x06 => Kind::Call,
            0x10 => Kind::Env,
            0x11 => Kind::Cancel,
            0x12 => Kind::Reply,
            0x13 => Kind::Lease,
            _ => return None,
        })
    }
}

/// The executor's word that it still holds the job (a [`Kind::Lease`]
/// record): past `valid_for_ms` from its arrival without another one, the
/// runner stops the script by itself. A server that is paused, cut off from
/// its database or gone can no longer say it, and the job may then be run
/// elsewhere: its script must not be running here any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    pub valid_for_ms: u64,
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

/// A script's helper call, as the runner relays it to the executor in a
/// [`Kind::Call`] record: `{"id": 1, "op": "var.get", "key": "k"}`.
///
/// The runner numbers calls; the executor answers each with a [`HelperReply`]
/// carrying the same `id`, in any order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelperCall {
    pub id: u64,
    #[serde(flatten)]
    pub op: HelperOp,
}

/// What a helper call asks for. On the runner's socket a script sends just
/// this object (no `id`), e.g. `{"op": "var.set", "key": "k", "value": 1}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op")]
pub enum HelperOp {
    /// The run's input JSON (`null` when none).
    #[serde(rename = "input")]
    Input,
    /// Sets this attempt's output, replacing an earlier one.
    #[serde(rename = "output")]
    Output { value: Value },
    /// A variable's value; `not_found` if missing.
    #[serde(rename = "var.get")]
    VarGet { key: String },
    /// Writes a variable; `conflict` when `expect` does not hold.
    #[serde(rename = "var.set")]
    VarSet {
        key: String,
        value: Value,
        /// `None` keeps the variable's current secrecy (a new one is not secret).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<bool>,
        /// Compare-and-set: what the current value must be for the write to happen.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expect: Option<Expect>,
    },
    /// Removes a variable; `not_found` if it did not exist.
    #[serde(rename = "var.delete")]
    VarDelete { key: String },
    /// Sets the run's condition (false unless set).
    #[serde(rename = "condition")]
    Condition { value: bool },
    /// Facts about the run: job, attempt, event, trigger, server.
    #[serde(rename = "context")]
    Context,
}

/// Compare-and-set: `{"absent": true}` (the variable must not exist) or
/// `{"value": <json>}` (its current value must equal this one).
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    Absent,
    Value(Value),
}

/// The executor's answer to a [`HelperCall`], in a [`Kind::Reply`] record:
/// `{"id": 1, "ok": true, "value": …}` or
/// `{"id": 1, "ok": false, "error": "not_found", "message": "…"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HelperReply {
    pub id: u64,
    #[serde(flatten)]
    pub outcome: HelperOutcome,
}

/// How a helper call ended. On its own (the runner's answer on the socket)
/// it is `{"ok": true, "value": …}` (`null` when the op returns nothing) or
/// `{"ok": false, "error": "<code>", "message": "…"}`.
#[derive(Debug, Clone, PartialEq)]
pub enum HelperOutcome {
    Ok(Value),
    Err { error: HelperError, message: String },
}

impl HelperOutcome {
    pub fn err(error: HelperError, message: impl Into<String>) -> HelperOutcome {
        HelperOutcome::Err {
            error,
            message: message.into(),
        }
    }
}

/// Why a helper call failed. Each has its own exit status in the `cronium`
/// command (see `docs/helpers.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HelperError {
    /// A bad key, a value that is not JSON, NUL where text is needed, bad arguments.
    Invalid,
    /// Over a size limit (1 MiB output, 64 KiB variable value, the frame size).
    TooLarge,
    /// Too many calls in this attempt.
    Limit,
    /// `var.get` or `var.delete` of a missing key.
    NotFound,
    /// Compare-and-set: the current value was not the expected one.
    Conflict,
    /// The attempt is no longer the job's (its lease was recovered), or the job is not running.
    Refused,
    /// No executor to answer: outside a run, or the channel closed mid-call.
    Unavailable,
    /// The server failed (e.g. a database error); the message says what.
    Internal,
}

impl HelperError {
    /// The wire name, e.g. `"too_large"`.
    pub fn as_str(self) -> &'static str {
        match self {
            HelperError::Invalid => "invalid",
            HelperError::TooLarge => "too_large",
            HelperError::Limit => "limit",
            HelperError::NotFound => "not_found",
            HelperError::Conflict => "conflict",
            HelperError::Refused => "refused",
            HelperError::Unavailable => "unavailable",
            HelperError::Internal => "internal",
        }
    }
}

impl std::fmt::Display for HelperError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads a present field as `Some`, even when it is `null`, so that
/// `{"value": null}` and a missing `value` stay apart.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl Serialize for Expect {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        match self {
            Expect::Absent => map.serialize_entry("absent", &true)?,
            Expect::Value(v) => map.serialize_entry("value", v)?,
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Expect {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Expect, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(default)]
            absent: Option<bool>,
            #[serde(default, deserialize_with = "present")]
            value: Option<Value>,
        }
        match Raw::deserialize(d)? {
            Raw {
                absent: Some(true),
                value: None,
            } => Ok(Expect::Absent),
            Raw {
                absent: None,
                value: Some(v),
            } => Ok(Expect::Value(v)),
            _ => Err(de::Error::custom(
                r#"expect must be {"absent": true} or {"value": <json>}"#,
            )),
        }
    }
}

impl Serialize for HelperOutcome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            HelperOutcome::Ok(value) => {
                let mut map = s.serialize_map(Some(2))?;
                map.serialize_entry("ok", &true)?;
                map.serialize_entry("value", value)?;
                map.end()
            }
            HelperOutcome::Err { error, message } => {
                let mut map = s.serialize_map(Some(3))?;
                map.serialize_entry("ok", &false)?;
                map.serialize_entry("error", error)?;
                map.serialize_entry("message", message)?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for HelperOutcome {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<HelperOutcome, D::Error> {
        // Not `deny_unknown_fields`: replies may grow fields, and inside a
        // flattened `HelperReply` the `id` passes through here too.
        #[derive(Deserialize)]
        struct Raw {
            ok: bool,
            #[serde(default)]
            value: Option<Value>,
            #[serde(default)]
            error: Option<HelperError>,
            #[serde(default)]
            message: Option<String>,
        }
        let raw = Raw::deserialize(d)?;
        match (raw.ok, raw.error) {
            (true, None) => Ok(HelperOutcome::Ok(raw.value.unwrap_or(Value::Null))),
            (false, Some(error)) => Ok(HelperOutcome::Err {
                error,
                message: raw.message.unwrap_or_default(),
            }),
            (true, Some(_)) => Err(de::Error::custom("a reply with ok: true has no error")),
            (false, None) => Err(de::Error::custom("a reply with ok: false needs an error")),
        }
    }
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
    use serde_json::json;

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

    /// A JSON text that must decode to `value` and encode back to the same text.
    fn round_trip<T>(text: &str, value: T)
    where
        T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
    {
        let decoded: T = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(decoded, value, "{text}");
        assert_eq!(serde_json::to_string(&value).unwrap(), text);
    }

    #[test]
    fn helper_calls_have_the_documented_json_shape() {
        let call = |id, op| HelperCall { id, op };
        round_trip(r#"{"id":1,"op":"input"}"#, call(1, HelperOp::Input));
        round_trip(r#"{"id":2,"op":"context"}"#, call(2, HelperOp::Context));
        round_trip(
            r#"{"id":3,"op":"output","value":{"a":[1,"ü",null]}}"#,
            call(
                3,
                HelperOp::Output {
                    value: json!({"a": [1, "ü", null]}),
                },
            ),
        );
        round_trip(
            r#"{"id":4,"op":"var.get","key":"k"}"#,
            call(4, HelperOp::VarGet { key: "k".into() }),
        );
        round_trip(
            r#"{"id":1,"op":"var.set","key":"k","value":1,"expect":{"absent":true}}"#,
            call(
                1,
                HelperOp::VarSet {
                    key: "k".into(),
                    value: json!(1),
                    secret: None,
                    expect: Some(Expect::Absent),
                },
            ),
        );
        round_trip(
            r#"{"id":5,"op":"var.set","key":"k","value":"v","secret":true,"expect":{"value":null}}"#,
            call(
                5,
                HelperOp::VarSet {
                    key: "k".into(),
                    value: json!("v"),
                    secret: Some(true),
                    expect: Some(Expect::Value(Value::Null)),
                },
            ),
        );
        round_trip(
            r#"{"id":6,"op":"var.set","key":"k","value":null}"#,
            call(
                6,
                HelperOp::VarSet {
                    key: "k".into(),
                    value: Value::Null,
                    secret: None,
                    expect: None,
                },
            ),
        );
        round_trip(
            r#"{"id":7,"op":"var.delete","key":"k"}"#,
            call(7, HelperOp::VarDelete { key: "k".into() }),
        );
        round_trip(
            r#"{"id":18446744073709551615,"op":"condition","value":true}"#,
            call(u64::MAX, HelperOp::Condition { value: true }),
        );
        // On the socket the same object comes without an id.
        round_trip(
            r#"{"op":"var.get","key":"k"}"#,
            HelperOp::VarGet { key: "k".into() },
        );
    }

    #[test]
    fn helper_replies_have_the_documented_json_shape() {
        round_trip(
            r#"{"id":1,"ok":true,"value":{"n":1}}"#,
            HelperReply {
                id: 1,
                outcome: HelperOutcome::Ok(json!({"n": 1})),
            },
        );
        round_trip(
            r#"{"id":2,"ok":true,"value":null}"#,
            HelperReply {
                id: 2,
                outcome: HelperOutcome::Ok(Value::Null),
            },
        );
        round_trip(
            r#"{"id":1,"ok":false,"error":"not_found","message":"no variable k"}"#,
            HelperReply {
                id: 1,
                outcome: HelperOutcome::err(HelperError::NotFound, "no variable k"),
            },
        );
        round_trip(
            r#"{"ok":false,"error":"too_large","message":"…"}"#,
            HelperOutcome::err(HelperError::TooLarge, "…"),
        );
        // A missing value is null; unknown fields are ignored.
        let reply: HelperReply = serde_json::from_str(r#"{"ok":true,"id":9,"later":1}"#).unwrap();
        assert_eq!(reply.outcome, HelperOutcome::Ok(Value::Null));
        assert_eq!(reply.id, 9);
    }

    #[test]
    fn every_error_code_has_its_wire_name() {
        let all = [
            (HelperError::Invalid, "invalid"),
            (HelperError::TooLarge, "too_large"),
            (HelperError::Limit, "limit"),
            (HelperError::NotFound, "not_found"),
            (HelperError::Conflict, "conflict"),
            (HelperError::Refused, "refused"),
            (HelperError::Unavailable, "unavailable"),
            (HelperError::Internal, "internal"),
        ];
        for (error, name) in all {
            assert_eq!(error.as_str(), name);
            round_trip(&format!("\"{name}\""), error);
        }
    }

    #[test]
    fn malformed_helper_json_is_refused() {
        let calls = [
            r#"{"op":"var.set","key":"k","value":1,"expect":{}}"#,
            r#"{"op":"var.set","key":"k","value":1,"expect":{"absent":false}}"#,
            r#"{"op":"var.set","key":"k","value":1,"expect":{"absent":true,"value":1}}"#,
            r#"{"op":"var.set","key":"k","value":1,"expect":{"other":1}}"#,
            r#"{"op":"var.set","key":"k"}"#,
            r#"{"op":"var.get"}"#,
            r#"{"op":"condition","value":"yes"}"#,
            r#"{"op":"shell","cmd":"id"}"#,
            r#"{"key":"k"}"#,
            r#"[1]"#,
        ];
        for text in calls {
            assert!(serde_json::from_str::<HelperOp>(text).is_err(), "{text}");
        }
        let replies = [
            r#"{"id":1,"ok":false,"message":"m"}"#,
            r#"{"id":1,"ok":true,"error":"invalid"}"#,
            r#"{"id":1,"ok":false,"error":"exploded","message":"m"}"#,
            r#"{"ok":true,"value":1}"#,
        ];
        for text in replies {
            assert!(serde_json::from_str::<HelperReply>(text).is_err(), "{text}");
        }
    }

    #[test]
    fn new_kinds_have_their_bytes() {
        assert_eq!(Kind::from_byte(0x06), Some(Kind::Call));
        assert_eq!(Kind::from_byte(0x12), Some(Kind::Reply));
        assert_eq!(Kind::Call as u8, 0x06);
        assert_eq!(Kind::Reply as u8, 0x12);
        assert_eq!(Kind::from_byte(0x13), Some(Kind::Lease));
        assert_eq!(Kind::Lease as u8, 0x13);
    }
}

//! The runner's side of the runtime helpers: the helper dir beside the work
//! dir, its Unix socket, and the broker that relays each call to the executor as a
//! `Call` record and hands the matching `Reply` back to the caller.
//!
//! One request per connection, each on its own thread: a script's background
//! processes may call at once, and the executor may answer in any order.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::output::Output;
use crate::protocol::{HelperCall, HelperError, HelperOp, HelperOutcome, HelperReply, MAX_FRAME};
use crate::supervise::THREAD_STACK;

/// What the helper dir's name adds to the work dir's: `cronium-run-XXXXXX.cronium`.
pub const HELPER_DIR_SUFFIX: &str = ".cronium";

/// The helper dir of a work dir: beside it, not in it, so the script's
/// directory holds only the payload's files and a payload may have any names.
pub fn helper_dir_for(workdir: &Path) -> PathBuf {
    let mut dir = workdir.as_os_str().to_owned();
    dir.push(HELPER_DIR_SUFFIX);
    PathBuf::from(dir)
}

/// Environment variable holding the socket's absolute path.
pub const SOCKET_VAR: &str = "CRONIUM_HELPER_SOCKET";

/// Longest path `connect(2)` takes for a Unix socket (108 bytes with the NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Largest request line a client may send: a Call record adds the `id`, and
/// must still fit in [`MAX_FRAME`].
pub const MAX_REQUEST: usize = MAX_FRAME - 1024;

/// Said to every call in plain mode.
pub const NO_EXECUTOR: &str = "helpers need a Cronium server (this run has no executor)";

/// The client modules, kept as real files in `crates/runner/helpers/`.
const PYTHON_MODULE: &str = include_str!("../helpers/cronium.py");
const NODE_MODULE: &str = include_str!("../helpers/cronium.js");

/// Stack of the threads that parse helper values (each connection's, and
/// the stdin reader's): enough to parse, convert and drop a value nested as
/// deep as serde_json allows (128 levels), in a debug build too.
pub const CALL_STACK: usize = 1024 * 1024;

/// Matches replies to the calls waiting for them.
pub struct Broker {
    output: Output,
    state: Mutex<State>,
}

struct State {
    next_id: u64,
    waiting: HashMap<u64, SyncSender<HelperOutcome>>,
    /// Set once no call can be answered any more: why.
    closed: Option<String>,
}

impl Broker {
    /// A broker writing calls to `output`. In plain mode nobody would
    /// answer, so it starts closed.
    pub fn new(output: Output) -> Arc<Broker> {
        let closed = (!output.is_framed()).then(|| NO_EXECUTOR.to_string());
        Arc::new(Broker {
            output,
            state: Mutex::new(State {
                next_id: 0,
                waiting: HashMap::new(),
                closed,
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Relays one call and waits for its answer.
    pub fn call(&self, op: HelperOp) -> HelperOutcome {
        let (tx, rx) = mpsc::sync_channel(1);
        let id = {
            let mut state = self.state();
            if let Some(reason) = &state.closed {
                return HelperOutcome::err(HelperError::Unavailable, reason.clone());
            }
            state.next_id += 1;
            let id = state.next_id;
            state.waiting.insert(id, tx);
            id
        };
        let json = serde_json::to_vec(&HelperCall { id, op }).expect("a call serializes");
        let sent = if json.len() > MAX_FRAME {
            Err(HelperOutcome::err(
                HelperError::TooLarge,
                format!(
                    "the call is {} bytes, more than the {MAX_FRAME} the runner's channel carries",
                    json.len()
                ),
            ))
        } else {
            self.output.call(&json).map_err(|e| {
                HelperOutcome::err(
                    HelperError::Unavailable,
                    format!("cannot reach the executor: {e}"),
                )
            })
        };
        if let Err(outcome) = sent {
            self.state().waiting.remove(&id);
            return outcome;
        }
        rx.recv().unwrap_or_else(|_| {
            HelperOutcome::err(HelperError::Unavailable, "the call was dropped")
        })
    }

    /// Hands a `Reply` record to the call waiting for it. A reply nobody
    /// waits for (a late or repeated one) is dropped; one without a readable
    /// `id` is an error, since its caller would otherwise wait forever.
    pub fn deliver(&self, json: &[u8]) -> Result<(), String> {
        let value: Value = serde_json::from_slice(json)
            .map_err(|e| format!("a Reply record is not JSON ({e})"))?;
        let id = value
            .get("id")
            .and_then(Value::as_u64)
            .ok_or("a Reply record has no id")?;
        let outcome = match serde_json::from_value::<HelperReply>(value) {
            Ok(reply) => reply.outcome,
            Err(e) => HelperOutcome::err(
                HelperError::Internal,
                format!("the executor's reply could not be read: {e}"),
            ),
        };
        if let Some(tx) = self.state().waiting.remove(&id) {
            let _ = tx.send(outcome);
        }
        Ok(())
    }

    /// Fails every waiting call, and every later one, with `unavailable`.
    pub fn close(&self, reason: &str) {
        let mut state = self.state();
        if state.closed.is_none() {
            state.closed = Some(reason.to_string());
        }
        for (_, tx) in state.waiting.drain() {
            let _ = tx.send(HelperOutcome::err(HelperError::Unavailable, reason));
        }
    }
}

/// `<workdir>.cronium`, made ready for the script.
pub struct HelperDir {
    pub dir: PathBuf,
    pub socket: PathBuf,
    /// `None` when the socket path is too long to bind (see [`HelperDir::problem`]).
    listener: Option<UnixListener>,
    /// Why helper calls cannot work in this run, for a runner message.
    pub problem: Option<String>,
}

impl HelperDir {
    /// Creates the helper dir (0700) beside a fresh work dir, with the
    /// `cronium` command, the python and node modules and the socket (0600).
    /// The dir must not exist yet: the caller removes it after the run.
    pub fn create(workdir: &Path) -> Result<HelperDir, String> {
        let dir = helper_dir_for(workdir);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        // Ours from here on: a half-made helper dir does not outlive the failure.
        HelperDir::fill(dir.clone()).inspect_err(|_| {
            let _ = fs::remove_dir_all(&dir);
        })
    }

    fn fill(dir: PathBuf) -> Result<HelperDir, String> {
        let mkdir = |path: &Path| {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))
        };
        for sub in ["bin", "python", "node"] {
            mkdir(&dir.join(sub))?;
        }
        // The runner is a multi-call binary: called `cronium`, it is the client.
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find the runner's own executable: {e}"))?;
        let command = dir.join("bin/cronium");
        std::os::unix::fs::symlink(&exe, &command)
            .map_err(|e| format!("cannot create {}: {e}", command.display()))?;
        write_new(&dir.join("python/cronium.py"), PYTHON_MODULE)?;
        write_new(&dir.join("node/cronium.js"), NODE_MODULE)?;

        let socket = dir.join("helper.sock");
        let len = socket.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Ok(HelperDir {
                dir,
                problem: Some(format!(
                    "helper calls are unavailable in this run: the socket path {} is {len} bytes, \
                     more than the {MAX_SOCKET_PATH} a Unix socket allows (use a shorter --workdir)",
                    socket.display()
                )),
                socket,
                listener: None,
            });
        }
        let listener = UnixListener::bind(&socket)
            .map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
        fs::set_permissions(&socket, fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot restrict {}: {e}", socket.display()))?;
        Ok(HelperDir {
            dir,
            socket,
            listener: Some(listener),
            problem: None,
        })
    }

    /// The variables that point the script at the helpers, given the value
    /// each would otherwise have.
    pub fn environment(
        &self,
        old: impl Fn(&str) -> Option<OsString>,
    ) -> Vec<(&'static str, OsString)> {
        let old = |name: &str| old(name).filter(|v| !v.is_empty());
        let prepend = |name: &str, dir: PathBuf, fallback: Option<&str>| {
            let mut value = dir.into_os_string();
            if let Some(rest) = old(name).or_else(|| fallback.map(OsString::from)) {
                value.push(":");
                value.push(rest);
            }
            value
        };
        let preload = self.dir.join("node/cronium.js");
        let mut node_options = OsString::from("--require ");
        node_options.push(quote_for_node(preload.as_os_str().as_bytes()));
        if let Some(rest) = old("NODE_OPTIONS") {
            node_options.push(" ");
            node_options.push(rest);
        }
        vec![
            (SOCKET_VAR, self.socket.clone().into_os_string()),
            (
                "PATH",
                // Without a PATH a shell would use its built-in default; keep
                // one, so that adding ours does not hide the system's commands.
                prepend(
                    "PATH",
                    self.dir.join("bin"),
                    Some("/usr/local/bin:/usr/bin:/bin"),
                ),
            ),
            (
                "PYTHONPATH",
                prepend("PYTHONPATH", self.dir.join("python"), None),
            ),
            (
                "NODE_PATH",
                prepend("NODE_PATH", self.dir.join("node"), None),
            ),
            ("NODE_OPTIONS", node_options),
        ]
    }

    /// Answers connections on a thread of its own until the process ends.
    pub fn serve(&mut self, broker: Arc<Broker>) -> io::Result<()> {
        let Some(listener) = self.listener.take() else {
            return Ok(());
        };
        thread::Builder::new()
            .name("helpers".into())
            .stack_size(THREAD_STACK)
            .spawn(move || {
                for stream in listener.incoming() {
                    match stream {
                        Ok(stream) => {
                            let broker = broker.clone();
                            let spawned = thread::Builder::new()
                                .name("helper call".into())
                                .stack_size(CALL_STACK)
                                .spawn(move || answer(&stream, &broker));
                            // Out of threads: the dropped stream tells the client.
                            drop(spawned);
                        }
                        // E.g. out of descriptors: let some calls finish first.
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            })?;
        Ok(())
    }
}

fn write_new(path: &Path, text: &str) -> Result<(), String> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A path as one double-quoted `NODE_OPTIONS` word, so spaces in the work
/// dir cannot split it.
fn quote_for_node(path: &[u8]) -> OsString {
    let mut quoted = vec![b'"'];
    for &b in path {
        if b == b'"' || b == b'\\' {
            quoted.push(b'\\');
        }
        quoted.push(b);
    }
    quoted.push(b'"');
    std::os::unix::ffi::OsStringExt::from_vec(quoted)
}

/// One connection: read the request line, relay it, write the answer line.
fn answer(stream: &UnixStream, broker: &Broker) {
    let outcome = match read_request(stream) {
        Ok(op) => broker.call(op),
        Err(outcome) => outcome,
    };
    let mut line = serde_json::to_vec(&outcome).expect("an outcome serializes");
    line.push(b'\n');
    // The caller may be gone (killed mid-call): nothing to do about that.
    let _ = (&*stream).write_all(&line);
}

fn read_request(stream: &UnixStream) -> Result<HelperOp, HelperOutcome> {
    let mut line = Vec::new();
    BufReader::new(stream.take(MAX_REQUEST as u64 + 1))
        .read_until(b'\n', &mut line)
        .map_err(|e| {
            HelperOutcome::err(
                HelperError::Invalid,
                format!("cannot read the request: {e}"),
            )
        })?;
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() > MAX_REQUEST {
        return Err(HelperOutcome::err(
            HelperError::TooLarge,
            format!("the request is larger than {MAX_REQUEST} bytes"),
        ));
    }
    serde_json::from_slice(&line)
        .map_err(|e| HelperOutcome::err(HelperError::Invalid, format!("malformed request: {e}")))
}

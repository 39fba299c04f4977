//! The `run`, `verify` and `inspect` commands: verify, unpack, start, supervise, clean up.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};

use cronium_payload::{
    EnvKey, Interpreter, Limits, Manifest, Sha256Digest, VerifyingKey, checksum_path, extract,
    manifest::check_env_value, read_manifest, signature, signature_path,
};
use serde_json::json;

use crate::helper_server::{self, Broker, HelperDir};
use crate::output::Output;
use crate::protocol::{self, Kind, RunResult};
use crate::supervise::{self, Cancelled, Ev};

/// Exit status when the runner or the payload failed (DESIGN §3.2).
pub const EXIT_RUNNER_FAILED: i32 = 125;
pub const EXIT_NOT_EXECUTABLE: i32 = 126;
pub const EXIT_INTERPRETER_NOT_FOUND: i32 = 127;

/// Largest payload file the runner reads (it is held in memory while verified and unpacked).
pub const MAX_PAYLOAD_BYTES: u64 = 64 * 1024 * 1024;

/// Where the expected digest comes from.
#[derive(Debug, Clone)]
pub enum Expected {
    /// `<payload>.sha256`
    Beside,
    ChecksumFile(PathBuf),
    Hex(String),
}

#[derive(Debug, Clone)]
pub struct VerifyArgs {
    pub payload: PathBuf,
    pub expected: Expected,
    /// When not empty, `<payload>.sig` must be signed by one of these keys.
    pub trusted_keys: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct RunArgs {
    pub verify: VerifyArgs,
    pub timeout: Option<Duration>,
    pub kill_grace: Duration,
    /// Parent of the private work dir; `$TMPDIR` by default.
    pub workdir: Option<PathBuf>,
    pub keep_workdir: bool,
    pub framed: bool,
    /// Read one `Env` record from stdin before starting (framed mode only).
    pub env_from_stdin: bool,
}

/// A failure before the script started: an exit status and a message for people.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    fn runner(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_RUNNER_FAILED,
            message: message.into(),
        }
    }
}

/// `cronium-runner run`. Returns the process exit status.
pub fn run(args: &RunArgs) -> i32 {
    let (tx, rx) = mpsc::channel();
    let output = match start_output(args, tx.clone()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("cronium-runner: {e}");
            return EXIT_RUNNER_FAILED;
        }
    };
    match run_inner(args, &output, tx, rx) {
        Ok(code) => code,
        Err(failure) => {
            output.message(&failure.message);
            output.result(&RunResult {
                exit_code: failure.code,
                signal: None,
                timed_out: false,
                cancelled: false,
                duration_ms: 0,
            });
            failure.code
        }
    }
}

fn start_output(args: &RunArgs, tx: Sender<Ev>) -> io::Result<Output> {
    supervise::watch_signals(tx)?;
    if args.framed {
        Output::framed()
    } else {
        Output::plain()
    }
}

fn run_inner(
    args: &RunArgs,
    output: &Output,
    tx: Sender<Ev>,
    rx: Receiver<Ev>,
) -> Result<i32, Failure> {
    if args.env_from_stdin && !args.framed {
        return Err(Failure::runner("--env-from-stdin needs --output framed"));
    }
    let stdin_env = if args.env_from_stdin {
        read_stdin_env()?
    } else {
        BTreeMap::new()
    };
    let broker = Broker::new(output.clone());
    if args.framed {
        watch_stdin(tx.clone(), broker.clone())
            .map_err(|e| Failure::runner(format!("cannot watch stdin: {e}")))?;
    }

    let (bytes, digest) = load_verified(&args.verify)?;
    output.event(json!({"event": "verified", "sha256": digest.to_hex()}));

    let workdir = make_workdir(args.workdir.as_deref())?;
    let result = match HelperDir::create(&workdir) {
        Ok(mut helpers) => {
            let result = run_in(
                args,
                output,
                &bytes,
                &workdir,
                &stdin_env,
                &mut helpers,
                &broker,
                tx,
                rx,
            );
            // Gone with the run even when the work dir is kept: its socket
            // is useless afterwards.
            if let Err(e) = remove_workdir(&helpers.dir) {
                output.message(&format!(
                    "could not remove helper dir {}: {e}",
                    helpers.dir.display()
                ));
            }
            result
        }
        Err(e) => Err(Failure::runner(e)),
    };
    // Whatever outlived the script gets no more answers; the stream is about to end.
    broker.close("the run has ended");
    if args.keep_workdir {
        output.message(&format!("work dir kept at {}", workdir.display()));
    } else if let Err(e) = remove_workdir(&workdir) {
        output.message(&format!(
            "could not remove work dir {}: {e}",
            workdir.display()
        ));
    }
    let (code, result) = result?;
    output.event(json!({"event": "finished"}));
    output.result(&result);
    Ok(code)
}

#[allow(clippy::too_many_arguments)]
fn run_in(
    args: &RunArgs,
    output: &Output,
    payload: &[u8],
    workdir: &Path,
    stdin_env: &BTreeMap<EnvKey, String>,
    helpers: &mut HelperDir,
    broker: &Arc<Broker>,
    tx: Sender<Ev>,
    rx: Receiver<Ev>,
) -> Result<(i32, RunResult), Failure> {
    let extracted = extract(payload, workdir, &Limits::default()).map_err(|e| {
        Failure::runner(format!(
            "refusing payload {}: {e}",
            args.verify.payload.display()
        ))
    })?;
    let manifest = &extracted.manifest;
    let interpreter = find_interpreter(manifest.interpreter)?;
    if let Some(problem) = &helpers.problem {
        output.message(problem);
    }

    let mut cmd = Command::new(&interpreter);
    cmd.arg(&extracted.entrypoint)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    set_environment(&mut cmd, manifest, stdin_env, workdir, helpers);
    helpers
        .serve(broker.clone())
        .map_err(|e| Failure::runner(format!("cannot serve helper calls: {e}")))?;
    supervise::new_group(&mut cmd);

    // A stop request that arrived while we verified and unpacked: do not
    // start at all. The executor's lease may have come too.
    let mut lease = None;
    let mut stop = None;
    while let Ok(ev) = rx.try_recv() {
        match ev {
            Ev::Signal(sig) => stop = stop.or(Some(Cancelled::Signal(sig))),
            Ev::Cancel(reason) => stop = stop.or(Some(Cancelled::Request(reason))),
            Ev::Lease(until) => lease = Some(until),
            other => unreachable!("nothing else runs before the script: {other:?}"),
        }
    }
    if let Some(cancelled) = stop {
        let outcome = supervise::Outcome {
            termination: supervise::Termination::Exited(0),
            timed_out: false,
            cancelled: Some(cancelled),
            duration: Duration::ZERO,
        };
        output.message("stopped before the script started");
        return Ok((outcome.exit_code(), to_result(&outcome)));
    }

    // The runner moves into the work dir itself instead of asking `Command`
    // to do it in the child: with no `chdir` to perform, the standard library
    // can start the script with `posix_spawn` even in a static build.
    std::env::set_current_dir(workdir)
        .map_err(|e| Failure::runner(format!("cannot enter {}: {e}", workdir.display())))?;
    let started = Instant::now();
    let child = cmd.spawn().map_err(|e| spawn_failure(&interpreter, e))?;
    output.event(json!({
        "event": "started",
        "pid": child.id(),
        "interpreter": interpreter.display().to_string(),
        "workDir": workdir.display().to_string(),
    }));
    let bounds = supervise::Bounds {
        timeout: args.timeout,
        grace: args.kill_grace,
        lease,
    };
    let outcome = supervise::supervise(child, started, bounds, output, tx, rx)
        .map_err(|e| Failure::runner(format!("cannot supervise the script: {e}")))?;
    Ok((outcome.exit_code(), to_result(&outcome)))
}

fn to_result(outcome: &supervise::Outcome) -> RunResult {
    RunResult {
        exit_code: outcome.exit_code(),
        signal: outcome.signal(),
        timed_out: outcome.timed_out,
        cancelled: outcome.cancelled.is_some(),
        duration_ms: outcome.duration.as_millis() as u64,
    }
}

/// Inherited environment, then the manifest's, then the executor's (secrets),
/// then the `CRONIUM_*` variables the runner owns.
fn set_environment(
    cmd: &mut Command,
    manifest: &Manifest,
    stdin_env: &BTreeMap<EnvKey, String>,
    workdir: &Path,
    helpers: &HelperDir,
) {
    for (k, v) in manifest.environment.iter().chain(stdin_env) {
        cmd.env(k.as_str(), v);
    }
    let set_by_payload = |name: &str| {
        let key = EnvKey::new(name).expect("valid name");
        manifest.environment.contains_key(&key) || stdin_env.contains_key(&key)
    };
    // Python block-buffers a piped stdout; live output needs it unbuffered.
    // (An empty inherited value counts as unset, as it does for Python.)
    if manifest.interpreter == Interpreter::Python
        && std::env::var_os("PYTHONUNBUFFERED").is_none_or(|v| v.is_empty())
        && !set_by_payload("PYTHONUNBUFFERED")
    {
        cmd.env("PYTHONUNBUFFERED", "1");
    }
    // The runner owns the CRONIUM_* variables below: a payload cannot set them.
    // Event id and version come from the metadata; job and execution ids from
    // the executor (its Env record, else the inherited environment).
    match &manifest.metadata.event_id {
        Some(id) => cmd.env("CRONIUM_EVENT_ID", id),
        None => cmd.env_remove("CRONIUM_EVENT_ID"),
    };
    match manifest.metadata.event_version {
        Some(version) => cmd.env("CRONIUM_EVENT_VERSION", version.to_string()),
        None => cmd.env_remove("CRONIUM_EVENT_VERSION"),
    };
    for name in ["CRONIUM_JOB_ID", "CRONIUM_EXECUTION_ID"] {
        let from_executor = stdin_env
            .get(&EnvKey::new(name).expect("valid name"))
            .map(OsString::from)
            .or_else(|| std::env::var_os(name));
        match from_executor {
            Some(value) => cmd.env(name, value),
            None => cmd.env_remove(name),
        };
    }
    cmd.env("CRONIUM_WORK_DIR", workdir);
    // The helpers go first on the search paths the script ends up with.
    let current = |name: &str| {
        let key = EnvKey::new(name).expect("valid name");
        stdin_env
            .get(&key)
            .or_else(|| manifest.environment.get(&key))
            .map(OsString::from)
            .or_else(|| std::env::var_os(name))
    };
    for (name, value) in helpers.environment(current) {
        cmd.env(name, value);
    }
}

fn spawn_failure(interpreter: &Path, e: io::Error) -> Failure {
    let (code, what) = match e.kind() {
        io::ErrorKind::NotFound => (EXIT_INTERPRETER_NOT_FOUND, "not found"),
        io::ErrorKind::PermissionDenied => (EXIT_NOT_EXECUTABLE, "not executable"),
        _ => (EXIT_RUNNER_FAILED, "cannot be started"),
    };
    Failure {
        code,
        message: format!("interpreter {} {what}: {e}", interpreter.display()),
    }
}

/// The interpreter for a manifest: `CRONIUM_RUNNER_BASH`/`_PYTHON`/`_NODE` if
/// set, else the first of its usual names found on `PATH`.
pub fn find_interpreter(interpreter: Interpreter) -> Result<PathBuf, Failure> {
    let (var, names): (&str, &[&str]) = match interpreter {
        Interpreter::Bash => ("CRONIUM_RUNNER_BASH", &["bash"]),
        Interpreter::Python => ("CRONIUM_RUNNER_PYTHON", &["python3"]),
        Interpreter::Node => ("CRONIUM_RUNNER_NODE", &["node", "nodejs"]),
    };
    if let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if fs::metadata(&candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            {
                return Ok(candidate);
            }
        }
    }
    Err(Failure {
        code: EXIT_INTERPRETER_NOT_FOUND,
        message: format!(
            "interpreter {} not found on PATH (set {var} to its location)",
            names[0]
        ),
    })
}

/// Reads, size-checks and verifies a payload, returning its bytes. The bytes
/// that were hashed are the bytes later unpacked, so the file cannot be
/// swapped between the check and the use.
pub fn load_verified(args: &VerifyArgs) -> Result<(Vec<u8>, Sha256Digest), Failure> {
    let payload = &args.payload;
    let expected = match &args.expected {
        Expected::Hex(hex) => {
            Sha256Digest::from_hex(hex).map_err(|e| Failure::runner(format!("--sha256: {e}")))?
        }
        Expected::ChecksumFile(path) => Sha256Digest::read_checksum_file(path)
            .map_err(|e| Failure::runner(format!("checksum {}: {e}", path.display())))?,
        Expected::Beside => {
            let path = checksum_path(payload);
            if !path.exists() {
                return Err(Failure::runner(format!(
                    "refusing to run unverified payload: {} not found (pass --checksum FILE or --sha256 HEX)",
                    path.display()
                )));
            }
            Sha256Digest::read_checksum_file(&path)
                .map_err(|e| Failure::runner(format!("checksum {}: {e}", path.display())))?
        }
    };

    let bytes = read_payload(payload)?;
    let actual = Sha256Digest::of(&bytes);
    expected.verify(&actual).map_err(|e| {
        Failure::runner(format!(
            "payload {} failed verification: {e}",
            payload.display()
        ))
    })?;

    if !args.trusted_keys.is_empty() {
        let keys = args
            .trusted_keys
            .iter()
            .map(|p| {
                VerifyingKey::read_file(p)
                    .map_err(|e| Failure::runner(format!("trusted key {}: {e}", p.display())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let sig_path = signature_path(payload);
        let sig = signature::read_small(&sig_path)
            .map_err(|e| Failure::runner(format!("signature required: {e}")))?;
        signature::verify(&actual, &sig, &keys)
            .map_err(|e| Failure::runner(format!("payload {}: {e}", payload.display())))?;
    }
    Ok((bytes, actual))
}

fn read_payload(path: &Path) -> Result<Vec<u8>, Failure> {
    let fail =
        |e: io::Error| Failure::runner(format!("cannot read payload {}: {e}", path.display()));
    let file = File::open(path).map_err(fail)?;
    let meta = file.metadata().map_err(fail)?;
    if !meta.is_file() {
        return Err(Failure::runner(format!(
            "payload {} is not a regular file",
            path.display()
        )));
    }
    if meta.len() > MAX_PAYLOAD_BYTES {
        return Err(Failure::runner(format!(
            "payload {} is {} bytes, more than the {MAX_PAYLOAD_BYTES}-byte limit",
            path.display(),
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_PAYLOAD_BYTES)
        .read_to_end(&mut bytes)
        .map_err(fail)?;
    Ok(bytes)
}

/// `cronium-runner verify`: digest, signature and archive safety, no side effects.
pub fn verify(args: &VerifyArgs) -> Result<Sha256Digest, Failure> {
    let (bytes, digest) = load_verified(args)?;
    read_manifest(&bytes[..], &Limits::default()).map_err(|e| {
        Failure::runner(format!("refusing payload {}: {e}", args.payload.display()))
    })?;
    Ok(digest)
}

/// `cronium-runner inspect`: the validated manifest, in canonical form.
pub fn inspect(payload: &Path) -> Result<String, Failure> {
    let bytes = read_payload(payload)?;
    let listing = read_manifest(&bytes[..], &Limits::default())
        .map_err(|e| Failure::runner(format!("{}: {e}", payload.display())))?;
    Ok(listing.manifest.to_yaml())
}

/// Creates a fresh, private (0700) directory under `parent` (or `$TMPDIR`)
/// and returns its absolute path (the runner later changes into it).
fn make_workdir(parent: Option<&Path>) -> Result<PathBuf, Failure> {
    let parent = parent
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    let parent = std::path::absolute(&parent)
        .map_err(|e| Failure::runner(format!("work dir parent {}: {e}", parent.display())))?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&parent)
        .map_err(|e| Failure::runner(format!("cannot create {}: {e}", parent.display())))?;
    let mut template = parent
        .join("cronium-run-XXXXXX")
        .into_os_string()
        .into_vec();
    template.push(0);
    // SAFETY: `template` is a NUL-terminated, writable buffer as mkdtemp requires.
    let ptr = unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) };
    if ptr.is_null() {
        let e = io::Error::last_os_error();
        return Err(Failure::runner(format!(
            "cannot create a work dir in {}: {e}",
            parent.display()
        )));
    }
    template.pop();
    Ok(PathBuf::from(OsString::from_vec(template)))
}

/// Removes the work dir, first making writable anything the script locked down.
fn remove_workdir(dir: &Path) -> io::Result<()> {
    if fs::remove_dir_all(dir).is_ok() {
        return Ok(());
    }
    fn unlock(dir: &Path) {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
        if let Ok(entries) = fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    unlock(&entry.path());
                }
            }
        }
    }
    unlock(dir);
    fs::remove_dir_all(dir)
}

/// Reads the executor's `Env` record (secrets and per-run variables) from stdin.
fn read_stdin_env() -> Result<BTreeMap<EnvKey, String>, Failure> {
    let mut stdin = io::stdin().lock();
    let frame = protocol::read_frame(&mut stdin)
        .map_err(|e| Failure::runner(format!("reading environment from stdin: {e}")))?;
    let Some((Kind::Env, json)) = frame else {
        return Err(Failure::runner(
            "--env-from-stdin: expected an Env record first on stdin",
        ));
    };
    let raw: BTreeMap<String, String> = serde_json::from_slice(&json).map_err(|e| {
        Failure::runner(format!(
            "--env-from-stdin: Env record is not a JSON object of strings: {e}"
        ))
    })?;
    raw.into_iter()
        .map(|(k, v)| {
            let key =
                EnvKey::new(&k).map_err(|r| Failure::runner(format!("--env-from-stdin: {r}")))?;
            check_env_value(&v)
                .map_err(|r| Failure::runner(format!("--env-from-stdin: {k}: {r}")))?;
            Ok((key, v))
        })
        .collect()
}

/// In framed mode stdin is the executor's control channel: `Reply` records
/// answer helper calls; a `Cancel` record or its end (the connection went
/// away) stops the script. After a `Cancel` replies are still read, so a
/// script finishing up is answered; at the end every call fails.
fn watch_stdin(tx: Sender<Ev>, broker: Arc<Broker>) -> io::Result<()> {
    thread::Builder::new()
        .name("stdin".into())
        .stack_size(helper_server::CALL_STACK)
        .spawn(move || {
            let mut stdin = io::stdin().lock();
            loop {
                let reason = match protocol::read_frame(&mut stdin) {
                    Ok(Some((Kind::Reply, json))) => match broker.deliver(&json) {
                        Ok(()) => continue,
                        Err(e) => format!("control channel failed ({e})"),
                    },
                    Ok(Some((Kind::Cancel, _))) => {
                        let _ = tx.send(Ev::Cancel("cancel requested by the executor".into()));
                        continue;
                    }
                    Ok(Some((Kind::Lease, json))) => {
                        match serde_json::from_slice::<protocol::Lease>(&json) {
                            Ok(lease) => {
                                let valid = Duration::from_millis(lease.valid_for_ms);
                                let _ = tx.send(Ev::Lease(Instant::now() + valid));
                                continue;
                            }
                            Err(e) => format!("control channel failed (bad Lease record: {e})"),
                        }
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) => "the executor closed stdin".to_string(),
                    Err(e) => format!("control channel failed ({e})"),
                };
                broker.close(&reason);
                let _ = tx.send(Ev::Cancel(reason));
                return;
            }
        })?;
    Ok(())
}

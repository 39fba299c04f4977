//! Runs the script as the leader of its own process group and sees the whole
//! group through to the end: timeout, cancellation, leftovers, exit status.
//!
//! Everything that can happen while a script runs arrives as an [`Ev`] on one
//! channel, from small threads: the signal thread (stop signals, and
//! `SIGCHLD`, on which it reaps), the output pumps and, in framed mode, the
//! stdin watcher. The loop in
//! [`supervise`] is the only place that decides what to kill and when.
//!
//! The runner makes itself a child subreaper, so descendants whose parent dies
//! are reparented to it; "all descendants gone" is then simply `waitpid`
//! reporting `ECHILD`.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use crate::output::{Output, Stream};
use crate::protocol::MAX_CHUNK;

/// Something the supervision loop reacts to.
#[derive(Debug)]
pub enum Ev {
    /// A descendant was reaped: its pid and raw `waitpid` status.
    Reaped(i32, i32),
    /// No descendant of the runner is left.
    AllReaped,
    /// One of the script's output pipes reached its end.
    OutputDone,
    /// The runner received this signal.
    Signal(i32),
    /// The executor asked to stop, or its channel went away.
    Cancel(String),
    /// The executor holds the job until this instant (a Lease record).
    Lease(Instant),
}

/// A script stopped because its lease ran out gets at most this long
/// between SIGTERM and SIGKILL: the executor's margin before another server
/// may take the job is small, and the script must be gone by then.
pub const LEASE_GRACE: Duration = Duration::from_secs(1);

/// When the supervision loop stops the script on its own.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// The run's timeout, from the script's start.
    pub timeout: Option<Duration>,
    /// Between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// The executor's lease so far, if it sent one.
    pub lease: Option<Instant>,
}

/// Why a run was stopped before the script ended on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    Signal(i32),
    Request(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    Exited(i32),
    Signaled(i32),
}

#[derive(Debug)]
pub struct Outcome {
    pub termination: Termination,
    pub timed_out: bool,
    pub cancelled: Option<Cancelled>,
    pub duration: Duration,
}

impl Outcome {
    /// The runner's exit status, per the contract in DESIGN §3.2.
    pub fn exit_code(&self) -> i32 {
        if self.timed_out {
            return 124;
        }
        match (&self.cancelled, self.termination) {
            (Some(Cancelled::Signal(sig)), _) => 128 + sig,
            (Some(Cancelled::Request(_)), _) => 128 + libc::SIGTERM,
            (None, Termination::Exited(code)) => code,
            (None, Termination::Signaled(sig)) => 128 + sig,
        }
    }

    pub fn signal(&self) -> Option<i32> {
        match self.termination {
            Termination::Signaled(sig) => Some(sig),
            Termination::Exited(_) => None,
        }
    }
}

/// Stack for the runner's helper threads: they hold no big data on the
/// stack, and the default 2 MiB costs measurable time to map per run.
pub const THREAD_STACK: usize = 128 * 1024;

/// Signals that mean "stop": they cancel the script instead of killing the runner.
const STOP_SIGNALS: [i32; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// Write end of the pipe the signal handler reports to; -1 until installed.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_stop_signal(sig: libc::c_int) {
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = sig as u8;
        // SAFETY: write(2) is async-signal-safe; a full pipe just drops the byte.
        unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
    }
}

/// Turns the stop signals into [`Ev::Signal`] events instead of letting them
/// kill the runner, and `SIGCHLD` into [`Ev::Reaped`] and [`Ev::AllReaped`]. A handler (not a blocked mask) is used so the script,
/// which inherits the mask but not handlers, can still be stopped by them.
pub fn watch_signals(tx: Sender<Ev>) -> io::Result<()> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fds[0] is a fresh descriptor we own from here on.
    let mut read_end = unsafe { File::from_raw_fd(fds[0]) };
    // The reader blocks; only the handler's end stays non-blocking.
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(fds[0], libc::F_SETFL, 0) };
    SIGNAL_PIPE.store(fds[1], Ordering::Relaxed);
    for sig in STOP_SIGNALS.into_iter().chain([libc::SIGCHLD]) {
        // SAFETY: installs a handler that only performs an async-signal-safe write.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART | libc::SA_NOCLDSTOP;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(sig, &action, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    thread::Builder::new()
        .name("signals".into())
        .stack_size(THREAD_STACK)
        .spawn(move || {
            let mut byte = [0u8; 1];
            while let Ok(1) = read_end.read(&mut byte) {
                let sig = i32::from(byte[0]);
                let delivered = if sig == libc::SIGCHLD {
                    reap(&tx)
                } else {
                    tx.send(Ev::Signal(sig)).is_ok()
                };
                if !delivered {
                    return;
                }
            }
        })?;
    // Descendants orphaned by the script are reparented to us, so we can reap and count them.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    Ok(())
}

/// Prepares `cmd` to start as the leader of a new process group.
///
/// No `pre_exec` hook, on purpose: without one the standard library starts
/// the child with `posix_spawn` (no copy of our address space), which is a
/// good part of the runner's whole overhead. `posix_spawn` does *not* reset
/// the signal mask (the child gets the spawning thread's), which is why
/// [`watch_signals`] uses handlers rather than blocking the stop signals. The
/// price is that a runner killed with SIGKILL cannot take the script with it;
/// the `started` event reports the group id so an executor can.
pub fn new_group(cmd: &mut Command) {
    cmd.process_group(0);
}

/// Watches a started script to the end. `child` must have piped stdout and
/// stderr and have been prepared by [`new_group`].
pub fn supervise(
    mut child: Child,
    started: Instant,
    bounds: Bounds,
    output: &Output,
    tx: Sender<Ev>,
    rx: Receiver<Ev>,
) -> io::Result<Outcome> {
    let pgid = child.id() as i32;
    let leader = pgid;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    spawn_pump(stdout, Stream::Stdout, output.clone(), tx.clone())?;
    spawn_pump(stderr, Stream::Stderr, output.clone(), tx.clone())?;

    let Bounds {
        timeout,
        grace,
        mut lease,
    } = bounds;
    let deadline = timeout.map(|t| started + t);
    let mut timed_out = false;
    let mut cancelled = None;
    let mut status = None;
    let mut duration = Duration::ZERO;
    let mut all_reaped = false;
    let mut outputs_open = 2;
    // Set once we have sent SIGTERM to the group: when to follow up with SIGKILL.
    let mut kill_at: Option<Instant> = None;
    // Set once SIGKILL is sent: how long we still wait for stragglers that left the group.
    let mut give_up_at: Option<Instant> = None;

    let terminate = |kill_at: &mut Option<Instant>, grace: Duration| {
        if kill_at.is_none() {
            signal_group(pgid, libc::SIGTERM);
            *kill_at = Some(Instant::now() + grace);
        }
    };

    loop {
        if status.is_some() && all_reaped && outputs_open == 0 {
            break;
        }
        let now = Instant::now();
        if give_up_at.is_some_and(|t| now >= t) && status.is_some() {
            break;
        }
        if !timed_out
            && cancelled.is_none()
            && status.is_none()
            && deadline.is_some_and(|d| now >= d)
        {
            timed_out = true;
            output.message(&format!(
                "timed out after {}; stopping the script's process group",
                fmt_duration(timeout.unwrap_or_default())
            ));
            terminate(&mut kill_at, grace);
        }
        if !timed_out && cancelled.is_none() && status.is_none() && lease.is_some_and(|t| now >= t)
        {
            let reason = "the executor stopped renewing the job's lease (its server is paused, \
                          stopped or cut off from its database)";
            output.message(&format!(
                "{reason}; stopping the script, so the job cannot run here and elsewhere at once"
            ));
            cancelled = Some(Cancelled::Request(reason.to_string()));
            terminate(&mut kill_at, grace.min(LEASE_GRACE));
        }
        if kill_at.is_some_and(|t| now >= t) && give_up_at.is_none() {
            signal_group(pgid, libc::SIGKILL);
            give_up_at = Some(now + Duration::from_secs(1));
        }
        let wake = [
            deadline.filter(|_| !timed_out && status.is_none()),
            lease.filter(|_| !timed_out && cancelled.is_none() && status.is_none()),
            kill_at.filter(|_| give_up_at.is_none()),
            give_up_at,
        ]
        .into_iter()
        .flatten()
        .min();
        let ev = match wake {
            Some(t) => match rx.recv_timeout(t.saturating_duration_since(now)) {
                Ok(ev) => ev,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            },
            None => match rx.recv() {
                Ok(ev) => ev,
                Err(_) => break,
            },
        };
        match ev {
            Ev::Reaped(pid, _) if pid != leader => {}
            Ev::Reaped(_, raw) => {
                duration = started.elapsed();
                status = Some(decode_status(raw));
                // Whatever the script left running in its group is stopped too.
                if !all_reaped && group_exists(pgid) {
                    terminate(&mut kill_at, grace);
                } else if give_up_at.is_none() {
                    // Only processes that left the group (setsid) can still hold
                    // our pipes: wait for them no longer than the grace period.
                    give_up_at = Some(Instant::now() + grace);
                }
            }
            Ev::AllReaped => all_reaped = true,
            Ev::OutputDone => outputs_open -= 1,
            Ev::Signal(sig) => {
                if cancelled.is_none() && status.is_none() {
                    output.message(&format!(
                        "received {}; stopping the script",
                        signal_name(sig)
                    ));
                    cancelled = Some(Cancelled::Signal(sig));
                }
                terminate(&mut kill_at, grace);
            }
            Ev::Lease(until) => lease = Some(until),
            Ev::Cancel(reason) => {
                if cancelled.is_none() && status.is_none() {
                    output.message(&format!("{reason}; stopping the script"));
                    cancelled = Some(Cancelled::Request(reason));
                }
                terminate(&mut kill_at, grace);
            }
        }
    }
    Ok(Outcome {
        termination: status.unwrap_or(Termination::Signaled(libc::SIGKILL)),
        timed_out,
        cancelled,
        duration,
    })
}

fn spawn_pump(
    mut from: impl Read + Send + 'static,
    stream: Stream,
    output: Output,
    tx: Sender<Ev>,
) -> io::Result<()> {
    thread::Builder::new()
        .name(format!("{stream:?}"))
        .stack_size(THREAD_STACK)
        .spawn(move || {
            // Small at first: most scripts print little, and a fresh 64 KiB
            // buffer is a measurable part of a short run. It grows once full.
            let mut buf = vec![0u8; 4096];
            let mut writable = true;
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                // Once our own output is gone we keep draining the pipe, so the
                // script is never blocked on a write nobody will read.
                if writable && output.chunk(stream, &buf[..n]).is_err() {
                    writable = false;
                    if output.is_framed() {
                        let _ = tx.send(Ev::Cancel("the executor stopped reading output".into()));
                    }
                }
                if n == buf.len() && n < MAX_CHUNK {
                    buf.resize(MAX_CHUNK, 0);
                }
            }
            let _ = tx.send(Ev::OutputDone);
        })?;
    Ok(())
}

/// Reaps every descendant that has ended; says so when none is left.
/// Returns false once nobody listens any more.
fn reap(tx: &Sender<Ev>) -> bool {
    loop {
        let mut raw = 0;
        // SAFETY: waitpid with a valid out-pointer.
        let pid = unsafe { libc::waitpid(-1, &mut raw, libc::WNOHANG) };
        let ev = match pid {
            0 => return true, // descendants remain, none has ended yet
            p if p > 0 => Ev::Reaped(p, raw),
            _ => match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                _ => Ev::AllReaped,
            },
        };
        let all_gone = matches!(ev, Ev::AllReaped);
        if tx.send(ev).is_err() {
            return false;
        }
        if all_gone {
            return true;
        }
    }
}

fn signal_group(pgid: i32, sig: i32) {
    // SAFETY: killpg with a positive group id; ESRCH just means nobody is left.
    unsafe { libc::killpg(pgid, sig) };
}

fn group_exists(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::killpg(pgid, 0) == 0 }
}

fn decode_status(raw: i32) -> Termination {
    if libc::WIFSIGNALED(raw) {
        Termination::Signaled(libc::WTERMSIG(raw))
    } else {
        Termination::Exited(libc::WEXITSTATUS(raw))
    }
}

pub fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGINT => "SIGINT".into(),
        libc::SIGHUP => "SIGHUP".into(),
        libc::SIGKILL => "SIGKILL".into(),
        other => format!("signal {other}"),
    }
}

pub fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

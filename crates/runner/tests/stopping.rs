//! Timeouts, signals and executor cancellation stop the script's whole process group and clean up.

mod common;

use common::{BASH_SPAWN_GRANDCHILD, Descendant, Fixture, Lang, spawn};
use cronium_runner::protocol::{self, Kind};

/// Says "started", starts a grandchild, publishes both pids (so by the time
/// the test sees them, "started" was written), then sleeps "forever".
fn sleeper() -> String {
    format!("echo started\n{BASH_SPAWN_GRANDCHILD}sleep 300\n")
}

/// Like [`sleeper`], but SIGTERM stops nothing that matters: the grandchild
/// ignores it (started while the script ignored it), and the script traps
/// it, says so and carries on.
fn stubborn() -> String {
    format!(
        "trap '' TERM\n{BASH_SPAWN_GRANDCHILD}\
         trap 'echo \"TERM ignored\" >&2' TERM\n\
         while :; do sleep 0.05; done\n"
    )
}

/// Like [`sleeper`], but it cleans up and exits 3 when asked to stop with SIGTERM.
fn graceful() -> String {
    format!(
        "trap 'echo \"cleaning up after TERM\" >&2; exit 3' TERM\n\
         echo started\n{BASH_SPAWN_GRANDCHILD}sleep 300\n"
    )
}

/// The premise of everything below: the script can be stopped by SIGTERM,
/// so the runner must not hand it a blocked or ignored stop signal.
#[test]
fn the_script_starts_with_stop_signals_neither_blocked_nor_ignored() {
    let script = "import signal\n\
                  stops = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)\n\
                  print('blocked', sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])))\n\
                  print('ignored', [signal.getsignal(s) == signal.SIG_IGN for s in stops])\n";
    let fixture = Fixture::new(Lang::Python, script);

    let ran = common::run(fixture.run(&[]));

    assert_eq!(ran.code(), 0, "{}", ran.stderr_text());
    assert_eq!(
        ran.stdout_text(),
        "blocked []\nignored [False, False, False]\n"
    );
}

#[test]
fn a_timeout_stops_the_script_and_its_grandchild() {
    let fixture = Fixture::new(Lang::Bash, &sleeper());
    let running = spawn(fixture.run(&["--timeout", "1s", "--kill-grace", "500ms"]));
    let (script, grandchild) = Descendant::script_and_grandchild(&fixture.file("pids"));

    let ran = running.finish();

    assert_eq!(ran.code(), 124, "{}", ran.stderr_text());
    assert_eq!(ran.stdout_text(), "started\n");
    assert!(
        ran.stderr_text()
            .contains("cronium-runner: timed out after 1s"),
        "{}",
        ran.stderr_text()
    );
    script.assert_gone("the script");
    grandchild.assert_gone("the grandchild");
    assert!(fixture.leftovers().is_empty(), "{:?}", fixture.leftovers());
}

#[test]
fn a_framed_timeout_is_reported_as_timed_out() {
    let fixture = Fixture::new(Lang::Bash, &sleeper());
    let running = spawn(fixture.run(&[
        "--timeout",
        "1s",
        "--kill-grace",
        "500ms",
        "--output",
        "framed",
    ]));
    let (script, grandchild) = Descendant::script_and_grandchild(&fixture.file("pids"));

    let ran = running.finish();

    assert_eq!(ran.code(), 124);
    let framed = ran.framed();
    let result = framed.result();
    assert_eq!(result.exit_code, 124);
    assert!(result.timed_out && !result.cancelled, "{result:?}");
    assert_eq!(result.signal, Some(libc::SIGTERM), "SIGTERM was enough");
    assert!(
        framed.messages().contains("timed out after 1s"),
        "{}",
        framed.messages()
    );
    script.assert_gone("the script");
    grandchild.assert_gone("the grandchild");
    assert!(fixture.leftovers().is_empty(), "{:?}", fixture.leftovers());
}

#[test]
fn a_script_ignoring_sigterm_is_killed_after_the_grace_period() {
    let fixture = Fixture::new(Lang::Bash, &stubborn());
    let running = spawn(fixture.run(&[
        "--timeout",
        "1s",
        "--kill-grace",
        "500ms",
        "--output",
        "framed",
    ]));
    let (script, grandchild) = Descendant::script_and_grandchild(&fixture.file("pids"));

    let ran = running.finish();

    assert_eq!(ran.code(), 124);
    let framed = ran.framed();
    assert!(
        String::from_utf8_lossy(&framed.stderr()).contains("TERM ignored"),
        "the script got SIGTERM and carried on"
    );
    let result = framed.result();
    assert_eq!(result.exit_code, 124);
    assert!(result.timed_out && !result.cancelled, "{result:?}");
    assert_eq!(result.signal, Some(libc::SIGKILL), "it took SIGKILL");
    // SIGKILL comes no earlier than timeout + grace: the script had its grace period.
    assert!(result.duration_ms >= 1500, "{result:?}");
    script.assert_gone("the script");
    grandchild.assert_gone("the grandchild, which ignored SIGTERM too");
    assert!(fixture.leftovers().is_empty(), "{:?}", fixture.leftovers());
}

/// Signals the runner (not the script) once the script runs, and checks the
/// run is cancelled with 128+N, the whole group gone and the work dir removed.
fn cancel_with(sig: i32, name: &str) {
    let fixture = Fixture::new(Lang::Bash, &graceful());
    let running = spawn(fixture.run(&[]));
    let (script, grandchild) = Descendant::script_and_grandchild(&fixture.file("pids"));
    let mut present = fixture.leftovers();
    present.sort();
    assert!(
        matches!(&present[..], [work, helpers] if *helpers == format!("{work}.cronium")),
        "the work dir and its helper dir exist while the script runs: {present:?}"
    );

    running.signal(sig);
    let ran = running.finish();

    assert_eq!(ran.code(), 128 + sig, "{name}: {}", ran.stderr_text());
    assert!(
        ran.stderr_text().contains(&format!(
            "cronium-runner: received {name}; stopping the script"
        )),
        "{}",
        ran.stderr_text()
    );
    script.assert_gone("the script");
    grandchild.assert_gone("the grandchild");
    assert!(
        fixture.leftovers().is_empty(),
        "{name}: {:?}",
        fixture.leftovers()
    );
}

#[test]
fn sigterm_to_the_runner_cancels_with_143() {
    cancel_with(libc::SIGTERM, "SIGTERM");
}

#[test]
fn sigint_to_the_runner_cancels_with_130() {
    cancel_with(libc::SIGINT, "SIGINT");
}

#[test]
fn sighup_to_the_runner_cancels_with_129() {
    cancel_with(libc::SIGHUP, "SIGHUP");
}

#[test]
fn the_executor_cancels_by_closing_stdin_or_sending_cancel() {
    #[derive(Debug)]
    enum How {
        CloseStdin,
        CancelRecord,
    }
    for how in [How::CloseStdin, How::CancelRecord] {
        let fixture = Fixture::new(Lang::Bash, &graceful());
        let mut running = spawn(fixture.run(&["--output", "framed"]));
        let (script, grandchild) = Descendant::script_and_grandchild(&fixture.file("pids"));

        match how {
            How::CloseStdin => running.close_stdin(),
            // The channel stays open: the record alone must do it.
            How::CancelRecord => protocol::write_frame(running.stdin(), Kind::Cancel, b"").unwrap(),
        }
        let ran = running.finish();

        assert_eq!(ran.code(), 143, "{how:?}");
        let framed = ran.framed();
        let result = framed.result();
        assert!(result.cancelled && !result.timed_out, "{how:?}: {result:?}");
        assert_eq!(result.exit_code, 143, "{how:?}");
        assert_eq!(String::from_utf8(framed.stdout()).unwrap(), "started\n");
        // (bash may also report its foreground `sleep` as "Terminated".)
        let stderr = String::from_utf8(framed.stderr()).unwrap();
        assert!(
            stderr.contains("cleaning up after TERM\n"),
            "{how:?}: {stderr:?}"
        );
        script.assert_gone("the script");
        grandchild.assert_gone("the grandchild");
        assert!(
            fixture.leftovers().is_empty(),
            "{how:?}: {:?}",
            fixture.leftovers()
        );
    }
}

fn lease(ms: u64) -> Vec<u8> {
    serde_json::to_vec(&protocol::Lease { valid_for_ms: ms }).unwrap()
}

#[test]
fn a_lease_the_executor_stops_renewing_stops_the_script_by_itself() {
    // The executor's server is paused (SIGSTOP): stdin stays open but
    // silent. The script must be gone soon after the lease runs out, with
    // SIGKILL after at most a second even though it ignores SIGTERM.
    let fixture = Fixture::new(Lang::Bash, &stubborn());
    let mut running = spawn(fixture.run(&["--output", "framed", "--kill-grace", "30s"]));
    let (script, grandchild) = Descendant::script_and_grandchild(&fixture.file("pids"));
    let sent = std::time::Instant::now();
    // Stdin stays open (as a paused server's would) until the runner ends.
    protocol::write_frame(running.stdin(), Kind::Lease, &lease(500)).unwrap();
    let ran = running.finish();
    let took = sent.elapsed();

    let framed = ran.framed();
    let result = framed.result();
    assert!(result.cancelled && !result.timed_out, "{result:?}");
    assert_eq!(result.signal, Some(libc::SIGKILL), "{result:?}");
    assert!(
        framed
            .messages()
            .contains("stopped renewing the job's lease"),
        "{}",
        framed.messages()
    );
    // 0.5 s of lease and 1 s of grace, not the 30 s of --kill-grace.
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    script.assert_gone("the script");
    grandchild.assert_gone("the grandchild");
}

#[test]
fn a_renewed_lease_lets_the_script_finish() {
    let fixture = Fixture::new(Lang::Bash, "sleep 1.5\necho finished\n");
    let mut running = spawn(fixture.run(&["--output", "framed"]));
    let mut stdin = running.take_stdin();
    let renew = std::thread::spawn(move || {
        // 400 ms leases renewed every 100 ms cover the 1.5 s script; the
        // writes fail once the runner has ended.
        while protocol::write_frame(&mut stdin, Kind::Lease, &lease(400)).is_ok() {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    });
    let ran = running.finish();
    renew.join().unwrap();
    let framed = ran.framed();
    let result = framed.result();
    assert!(
        !result.cancelled && result.exit_code == 0,
        "{result:?}: {}",
        framed.messages()
    );
    assert_eq!(String::from_utf8(framed.stdout()).unwrap(), "finished\n");
}

#[test]
fn a_malformed_lease_record_is_a_broken_control_channel() {
    let fixture = Fixture::new(Lang::Bash, &sleeper());
    let mut running = spawn(fixture.run(&["--output", "framed"]));
    let (script, _grandchild) = Descendant::script_and_grandchild(&fixture.file("pids"));
    protocol::write_frame(running.stdin(), Kind::Lease, b"{\"validForMs\":\"soon\"}").unwrap();
    let ran = running.finish();
    let framed = ran.framed();
    assert!(framed.result().cancelled);
    assert!(
        framed.messages().contains("bad Lease record"),
        "{}",
        framed.messages()
    );
    script.assert_gone("the script");
}

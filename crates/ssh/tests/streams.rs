//! Started commands and uploads against a real OpenSSH server: live stdin and stdout, byte-exact SFTP, a connection that dies.

use std::time::Duration;

use cronium_ssh::testing::TestSshd;
use cronium_ssh::{Timeouts, connect};
use tokio::io::AsyncReadExt;

fn timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(5),
        auth: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn a_started_command_reads_stdin_and_streams_stdout_byte_for_byte_to_a_slow_reader() {
    let sshd = TestSshd::start(1);
    let user = sshd.user(0);
    let session = connect(
        &sshd.target(user),
        &user.key_credentials(),
        &sshd.pinned(),
        timeouts(),
    )
    .await
    .unwrap();

    // 8 MiB of every byte value, far more than any buffer on the way.
    let mut process = session
        .start("head -c 8388608 /dev/urandom | tee /tmp/$USER.bytes; echo done >&2; exit 7")
        .await
        .unwrap();
    let mut received = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = process.stdout.read(&mut chunk).await.unwrap();
        if n == 0 {
            break;
        }
        received.extend_from_slice(&chunk[..n]);
        // A reader slower than the network: backpressure, not loss.
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let exit = process.wait().await;
    assert_eq!(exit.status, Some(7));
    assert_eq!(exit.stderr, "done");
    assert!(!exit.connection_lost);
    let written = std::fs::read(format!("/tmp/{}.bytes", user.name)).unwrap();
    std::fs::remove_file(format!("/tmp/{}.bytes", user.name)).unwrap();
    assert_eq!(received.len(), written.len());
    assert!(received == written, "stdout arrives byte for byte");

    let echo = session.start("cat; echo end").await.unwrap();
    echo.write_stdin(b"first\n").await.unwrap();
    echo.write_stdin(b"second\n").await.unwrap();
    echo.close_stdin().await;
    let mut stdout = String::new();
    let mut echo = echo;
    echo.stdout.read_to_string(&mut stdout).await.unwrap();
    assert_eq!(stdout, "first\nsecond\nend\n");
    assert_eq!(echo.wait().await.status, Some(0));
}

#[tokio::test]
async fn uploads_arrive_intact_under_the_home_directory() {
    let sshd = TestSshd::start(1);
    let user = sshd.user(0);
    let session = connect(
        &sshd.target(user),
        &user.key_credentials(),
        &sshd.pinned(),
        timeouts(),
    )
    .await
    .unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    session.upload("blob.bin", &data).await.unwrap();
    assert_eq!(std::fs::read(user.home.join("blob.bin")).unwrap(), data);
    // Uploading again truncates rather than appending.
    session.upload("blob.bin", b"short").await.unwrap();
    assert_eq!(std::fs::read(user.home.join("blob.bin")).unwrap(), b"short");

    let error = session.upload("no/such/dir/file", b"x").await.unwrap_err();
    assert_eq!(error.phase(), "upload");
    assert!(error.to_string().contains("no/such/dir/file"), "{error}");
}

#[tokio::test]
async fn a_connection_killed_under_a_running_command_is_reported_as_lost() {
    let mut sshd = TestSshd::start(1);
    let user = sshd.user(0).clone();
    let session = connect(
        &sshd.target(&user),
        &user.key_credentials(),
        &sshd.pinned(),
        timeouts(),
    )
    .await
    .unwrap();
    let mut process = session.start("echo up; sleep 60").await.unwrap();
    let mut first = [0u8; 3];
    process.stdout.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"up\n");

    // Kill every sshd process of this server, the per-connection ones too.
    sshd.stop();
    let killed = std::process::Command::new("pkill")
        .args(["-KILL", "-u", &user.name, "sshd"])
        .status()
        .unwrap();
    assert!(killed.success(), "the session's sshd runs as the user");

    let exit = tokio::time::timeout(Duration::from_secs(10), process.wait())
        .await
        .expect("the end of a dead connection is noticed");
    assert_eq!(exit.status, None);
    assert!(exit.connection_lost);
    assert!(session.is_closed());
}

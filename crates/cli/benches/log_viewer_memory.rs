//! Benchmark: the browser log viewer's JS heap and DOM size after streaming 200,000 lines live into a job page, against the same page after 2,000 lines, in headless Chromium against a real `cronium serve`.
//!
//! Run with `cargo bench -p cronium-cli --bench log_viewer_memory`
//! (`CRONIUM_BENCH_LINES=200000` changes the long run). Needs Debian's
//! `chromium` and `chromium-driver`, as the browser tests do.
//!
//! For each run the event prints one `ready` line, waits until the
//! benchmark has the job page open (a file appears), then prints its lines
//! with `seq` as fast as it can, so every one of them reaches the page over
//! the live stream rather than in the page's first render. The benchmark
//! waits until the page shows the last line and the job's end, forces a
//! garbage collection (`--js-flags=--expose-gc`), and reads
//! `performance.memory.usedJSHeapSize` (exact with
//! `--enable-precise-memory-info`) and the number of lines and elements in
//! the page. It also samples the heap while the lines stream in, without
//! collecting, for the peak.

#[path = "../tests/browser/mod.rs"]
mod browser;
#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use serde_json::{Value, json};

const PASSWORD: &str = "bench password, long enough";
/// The viewer's own bound (`MAX` in `static/log.js`).
const VIEWER_MAX_LINES: u64 = 5000;
const SHORT_RUN: u64 = 2000;

/// Builds the release `cronium-runner` next to the release `cronium`, where
/// `cronium serve` looks for it (`cargo bench` builds only this crate).
fn build_runner() {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "-p",
            "cronium-runner",
            "--bin",
            "cronium-runner",
        ])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cannot build cronium-runner");
    common::require_runner();
}

fn api(server: &common::Server, path: &str, body: &Value) -> Value {
    ureq::post(format!("{}/api/v1{path}", server.url))
        .header("authorization", &format!("Bearer {}", server.admin_token()))
        .send_json(body)
        .unwrap_or_else(|e| panic!("POST {path}: {e}"))
        .body_mut()
        .read_json()
        .expect("JSON")
}

/// What the page holds, read in the page.
#[derive(Debug, Clone)]
struct Seen {
    /// `performance.memory.usedJSHeapSize`, bytes.
    heap: u64,
    /// Lines in the viewer.
    lines: u64,
    /// Every element of the document.
    elements: u64,
    /// The sequence number of the last line shown (every line of a job's
    /// log has one, without gaps, from 1).
    last_seq: u64,
    /// The text of the last line shown.
    last_text: String,
    /// The job is over for the page (its `end` event came).
    ended: bool,
}

async fn seen(browser: &Client, collect: bool) -> Seen {
    let script = format!(
        "{}var log = document.getElementById('log');\
         var last = log.lastElementChild;\
         return [performance.memory.usedJSHeapSize, log.children.length,\
                 document.getElementsByTagName('*').length,\
                 last ? Number(last.dataset.seq) : 0, log.dataset.running === 'false',\
                 last ? last.querySelector('span').textContent : ''];",
        if collect { "window.gc(); " } else { "" }
    );
    let v = browser
        .execute(&script, vec![])
        .await
        .expect("the page answers");
    let n = |i: usize| v[i].as_u64().unwrap_or_else(|| panic!("{v}"));
    Seen {
        heap: n(0),
        lines: n(1),
        elements: n(2),
        last_seq: n(3),
        ended: v[4].as_bool().expect("a flag"),
        last_text: v[5].as_str().unwrap_or_default().to_string(),
    }
}

struct Outcome {
    lines: u64,
    took: Duration,
    after: Seen,
    peak_heap: u64,
}

/// Runs an event printing `lines` lines with its page open, and measures.
async fn run(browser: &Client, server: &common::Server, dir: &Path, lines: u64) -> Outcome {
    let go = dir.join(format!("go-{lines}"));
    let event = api(
        server,
        "/events",
        &json!({
            "name": format!("stream {lines} lines"),
            "interpreter": "bash",
            "content": format!(
                "echo ready\nwhile [ ! -e \"$GO\" ]; do sleep 0.02; done\n\
                 seq -f 'line %06g of the stream, as fast as seq prints' 1 {lines}\n"
            ),
            "env": { "GO": go.display().to_string() },
        }),
    );
    let job = api(server, &format!("/events/{}/run", event["id"]), &json!({}))["id"]
        .as_i64()
        .expect("a job id");
    browser
        .goto(&format!("{}/jobs/{job}", server.url))
        .await
        .unwrap();
    // The page is open and following: the first line is there, live or not.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !browser::text_of(browser, "#log").await.contains("ready") {
        assert!(Instant::now() < deadline, "no ready line");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let running = browser
        .find(Locator::Css("#log"))
        .await
        .unwrap()
        .attr("data-running")
        .await
        .unwrap();
    assert_eq!(
        running.as_deref(),
        Some("true"),
        "the page must follow the job"
    );

    std::fs::write(&go, "").unwrap();
    let started = Instant::now();
    let last = format!("line {lines:06} of the stream, as fast as seq prints");
    let mut peak_heap = 0;
    let deadline = started + Duration::from_secs(1800);
    loop {
        let now = seen(browser, false).await;
        peak_heap = peak_heap.max(now.heap);
        if now.last_text == last && now.ended {
            break;
        }
        assert!(Instant::now() < deadline, "the stream stalled: {now:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let took = started.elapsed();
    // Two collections, a moment apart: what the page keeps, not its garbage.
    seen(browser, true).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = seen(browser, true).await;
    assert_eq!(after.last_text, last);
    Outcome {
        lines,
        took,
        after,
        peak_heap,
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1048576.0)
}

fn main() {
    let long: u64 = std::env::var("CRONIUM_BENCH_LINES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    build_runner();
    let server = common::Server::start();
    server
        .cronium_stdin(
            &["user", "passwd", "admin", "--password-stdin"],
            &[],
            &format!("{PASSWORD}\n"),
        )
        .ok();
    let dir = tempfile::tempdir().unwrap();
    let driver = browser::Driver::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let outcomes = runtime.block_on(async {
        let mut outcomes = Vec::new();
        // A fresh page per run (the same browser): each starts from nothing.
        let browser = driver
            .browser_with(&["--enable-precise-memory-info", "--js-flags=--expose-gc"])
            .await;
        browser
            .goto(&format!("{}/login?next=/", server.url))
            .await
            .unwrap();
        let form = browser
            .form(Locator::Css("form[action='/login']"))
            .await
            .expect("the sign-in form");
        form.set_by_name("name", "admin").await.unwrap();
        form.set_by_name("password", PASSWORD).await.unwrap();
        form.submit().await.unwrap();
        browser::wait_for_path(&browser, "/").await;
        for lines in [SHORT_RUN, long] {
            let outcome = run(&browser, &server, dir.path(), lines).await;
            println!(
                "{lines} lines streamed in {:.1} s: {} lines in the page, heap {} after GC (peak sampled {})",
                outcome.took.as_secs_f64(),
                outcome.after.lines,
                mib(outcome.after.heap),
                mib(outcome.peak_heap)
            );
            outcomes.push(outcome);
        }
        browser.close().await.unwrap();
        outcomes
    });

    println!();
    println!(
        "| lines streamed | time to last line | lines in the page | elements in the document | JS heap after GC | JS heap, peak sampled |"
    );
    println!("|---|---|---|---|---|---|");
    for o in &outcomes {
        println!(
            "| {} | {:.1} s | {} | {} | {} | {} |",
            o.lines,
            o.took.as_secs_f64(),
            o.after.lines,
            o.after.elements,
            mib(o.after.heap),
            mib(o.peak_heap)
        );
    }
    let (short, long) = (&outcomes[0], &outcomes[1]);
    println!(
        "\n{} lines against {}: heap after GC ×{:.2}, lines kept ×{:.2}",
        long.lines,
        short.lines,
        long.after.heap as f64 / short.after.heap as f64,
        long.after.lines as f64 / short.after.lines as f64
    );
    // The system line, `ready`, then the script's lines: all of them.
    assert_eq!(
        short.after.lines, short.after.last_seq,
        "every line of the short run"
    );
    assert!(
        long.after.lines <= VIEWER_MAX_LINES,
        "the viewer keeps at most {VIEWER_MAX_LINES} lines, not {}",
        long.after.lines
    );
}

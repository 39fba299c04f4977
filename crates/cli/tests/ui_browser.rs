//! The web UI in a real browser: headless Chromium over WebDriver against a real `cronium serve`, signing in with a password set on the host, finding pages, running an event as an editor and not as a viewer, watching a job's log live, an API token shown once, signing out; screenshots of each page under `target/screenshots/`.

mod browser;
mod common;

use std::time::Duration;

use browser::{Driver, screenshot, text_of, wait_for_path};
use common::{Server, require_runner, script};
use fantoccini::{Client, Locator};

const ADMIN_PASSWORD: &str = "correct horse battery";
const VIEWER_PASSWORD: &str = "viewer sees everything";

/// Fills the sign-in form and submits it.
async fn sign_in(browser: &Client, name: &str, password: &str) {
    let form = browser
        .form(Locator::Css("form[action='/login']"))
        .await
        .expect("the sign-in form");
    form.set_by_name("name", name).await.unwrap();
    form.set_by_name("password", password).await.unwrap();
    form.submit().await.unwrap();
}

async fn click(browser: &Client, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap();
}

fn set_password(server: &Server, args: &[&str], password: &str) {
    server
        .cronium_stdin(args, &[], &format!("{password}\n"))
        .ok();
}

#[test]
fn the_web_ui_in_a_real_browser() {
    require_runner();
    let server = Server::start();
    set_password(
        &server,
        &["user", "passwd", "admin", "--password-stdin"],
        ADMIN_PASSWORD,
    );
    set_password(
        &server,
        &[
            "user",
            "add",
            "vera",
            "--role",
            "viewer",
            "--password-stdin",
        ],
        VIEWER_PASSWORD,
    );
    let dir = tempfile::tempdir().unwrap();
    let hello = script(dir.path(), "hello.sh", "echo hello from the browser\n");
    server
        .cronium(&[
            "event", "create", "--name", "hello", "--script", &hello, "--manual",
        ])
        .ok();
    // Prints markup and colours, then a line every 100 ms for 3 s, then fails.
    let slow = script(
        dir.path(),
        "slow.sh",
        "printf '<script>alert(1)</script>\\n'\nprintf '\\033[31mred alert\\033[0m\\n'\n\
         for i in $(seq 1 30); do echo \"tick $i\"; sleep 0.1; done\necho failing >&2\nexit 3\n",
    );
    server
        .cronium(&[
            "event", "create", "--name", "slow", "--script", &slow, "--manual",
        ])
        .ok();

    let driver = Driver::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        an_admin_signs_in_where_they_were_going_and_runs_an_event(&driver, &server).await;
        the_log_viewer_shows_lines_while_the_script_runs(&driver, &server).await;
        a_viewer_sees_no_run_button(&driver, &server).await;
    });
}

async fn an_admin_signs_in_where_they_were_going_and_runs_an_event(
    driver: &Driver,
    server: &Server,
) {
    let browser = driver.browser().await;
    // Not signed in: the page asked for sends to the sign-in form, and back.
    browser.goto(&format!("{}/jobs", server.url)).await.unwrap();
    wait_for_path(&browser, "/login?next=/jobs").await;
    screenshot(&browser, "login").await;

    // A wrong password: one generic message, the name kept.
    sign_in(&browser, "admin", "not the password").await;
    let message = text_of(&browser, ".error").await;
    assert_eq!(message, "wrong name or password");
    let kept = browser
        .find(Locator::Css("#name"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("admin"));
    screenshot(&browser, "login-failed").await;

    sign_in(&browser, "admin", ADMIN_PASSWORD).await;
    wait_for_path(&browser, "/jobs").await;
    assert_eq!(text_of(&browser, ".who .user").await, "admin");

    // Every page of the shell opens; each is kept as a screenshot.
    for (path, name) in [
        ("/", "dashboard"),
        ("/events", "events"),
        ("/servers", "servers"),
        ("/audit", "audit"),
        ("/settings", "settings"),
    ] {
        browser
            .goto(&format!("{}{path}", server.url))
            .await
            .unwrap();
        wait_for_path(&browser, path).await;
        let heading = text_of(&browser, "main h1").await;
        assert!(!heading.is_empty(), "{path} has a heading");
        screenshot(&browser, name).await;
    }

    // Run now: the job appears in the event's jobs and succeeds.
    browser
        .goto(&format!("{}/events", server.url))
        .await
        .unwrap();
    click(&browser, "form[action$='/run'] button").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = text_of(&browser, "main table tbody tr td:nth-child(3)").await;
        if status == "succeeded" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the job is still {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        browser.refresh().await.unwrap();
    }
    screenshot(&browser, "jobs").await;

    // An API token made on the settings page is shown once.
    browser
        .goto(&format!("{}/settings", server.url))
        .await
        .unwrap();
    let form = browser
        .form(Locator::Css("form[action='/settings/tokens']"))
        .await
        .unwrap();
    form.set_by_name("name", "ci").await.unwrap();
    form.submit().await.unwrap();
    let secret = text_of(&browser, ".secret").await;
    assert!(secret.starts_with("crn_"), "{secret}");
    screenshot(&browser, "settings-token").await;
    browser
        .goto(&format!("{}/settings", server.url))
        .await
        .unwrap();
    text_of(&browser, "main table").await;
    let shown = browser.find_all(Locator::Css(".secret")).await.unwrap();
    assert!(shown.is_empty(), "a token's secret is shown only once");
    let listed = text_of(&browser, "main table").await;
    assert!(
        listed.contains("ci") && !listed.contains(&secret),
        "{listed}"
    );

    // A user added on the settings page is listed with the role chosen.
    let form = browser
        .form(Locator::Css("form[action='/settings/users']"))
        .await
        .unwrap();
    form.set_by_name("name", "ui-added").await.unwrap();
    form.set_by_name("role", "editor").await.unwrap();
    form.set_by_name("password", "a first password here")
        .await
        .unwrap();
    form.submit().await.unwrap();
    wait_for_path(&browser, "/settings").await;
    let users = text_of(&browser, "#users table").await;
    assert!(
        users.contains("ui-added") && users.contains("editor"),
        "{users}"
    );
    // The answer went to /settings#users: the browser shows that section.
    screenshot(&browser, "settings-users").await;

    // Signing out ends the session: a page asks for sign-in again.
    click(&browser, "form[action='/logout'] button").await;
    wait_for_path(&browser, "/login").await;
    browser.goto(&format!("{}/", server.url)).await.unwrap();
    wait_for_path(&browser, "/login?next=/").await;
    browser.close().await.unwrap();
}

async fn the_log_viewer_shows_lines_while_the_script_runs(driver: &Driver, server: &Server) {
    let browser = driver.browser().await;
    browser
        .goto(&format!("{}/login?next=/events", server.url))
        .await
        .unwrap();
    sign_in(&browser, "admin", ADMIN_PASSWORD).await;
    wait_for_path(&browser, "/events").await;
    let job = server
        .cronium(&["event", "run", "slow"])
        .ok()
        .stdout()
        .split_whitespace()
        .find_map(|w| w.parse::<u64>().ok())
        .expect("the job's id");
    browser
        .goto(&format!("{}/jobs/{job}", server.url))
        .await
        .unwrap();

    // Lines arrive while the job is still running.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ticks = text_of(&browser, "#log").await.matches("tick ").count();
        let status = text_of(&browser, "#job-status").await;
        if ticks >= 3 {
            assert_eq!(status, "running", "lines were seen only after the end");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no live lines ({ticks}, {status})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    screenshot(&browser, "job-live").await;

    // The script's markup is text, its colour a class; then the end.
    let texts = browser
        .find_all(Locator::Css("#log .l span"))
        .await
        .unwrap();
    let mut shown = Vec::new();
    for t in &texts {
        shown.push(t.text().await.unwrap());
    }
    assert!(
        shown.iter().any(|t| t == "<script>alert(1)</script>"),
        "{shown:?}"
    );
    assert_eq!(text_of(&browser, "#log .a-f1").await, "red alert");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while text_of(&browser, "#job-status").await != "failed" {
        assert!(std::time::Instant::now() < deadline, "the job did not end");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(text_of(&browser, "#log .l.stderr span").await, "failing");
    let ticks = browser
        .find_all(Locator::Css("#log .l"))
        .await
        .unwrap()
        .len();
    assert!(ticks >= 33, "every line arrived: {ticks}");
    browser.refresh().await.unwrap();
    let facts = text_of(&browser, ".facts").await;
    assert!(
        facts.contains("Exit code\n3") || facts.contains("Exit code 3"),
        "{facts}"
    );
    screenshot(&browser, "job-failed").await;
    browser.close().await.unwrap();
}

async fn a_viewer_sees_no_run_button(driver: &Driver, server: &Server) {
    let browser = driver.browser().await;
    browser
        .goto(&format!("{}/login", server.url))
        .await
        .unwrap();
    sign_in(&browser, "vera", VIEWER_PASSWORD).await;
    wait_for_path(&browser, "/").await;
    assert_eq!(text_of(&browser, ".who .role").await, "viewer");
    browser
        .goto(&format!("{}/events", server.url))
        .await
        .unwrap();
    assert_eq!(text_of(&browser, "main table tbody td a").await, "hello");
    let buttons = browser
        .find_all(Locator::Css("form[action$='/run']"))
        .await
        .unwrap();
    assert!(buttons.is_empty(), "a viewer is offered a run button");
    // No audit link either: that page is an admin's.
    let audit = browser
        .find_all(Locator::Css("nav a[href='/audit']"))
        .await
        .unwrap();
    assert!(audit.is_empty());
    screenshot(&browser, "events-viewer").await;
    browser.close().await.unwrap();
}

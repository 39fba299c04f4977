//! The web UI in a real browser: headless Chromium over WebDriver against a real `cronium serve`, signing in with a password set on the host, finding pages, creating an event from the form with its schedule preview, editing it and reading the diff, running an event as an editor and not as a viewer, watching a job's log live, running a workflow and watching its graph to the end (and cancelling a wide one), adding a server and seeing its fingerprint after a check against a real sshd, an API token shown once, signing out; screenshots of each page under `target/screenshots/`.

mod browser;
mod common;

use std::time::Duration;

use browser::{Driver, screenshot, text_of, wait_for_path, wait_for_text};
use common::{Server, require_runner, script};
use cronium_ssh::testing::TestSshd;
use fantoccini::{Client, Locator};

const ADMIN_PASSWORD: &str = "correct horse battery";
const VIEWER_PASSWORD: &str = "viewer sees everything";
const EDITOR_PASSWORD: &str = "editor edits events";

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
    set_password(
        &server,
        &[
            "user",
            "add",
            "eddie",
            "--role",
            "editor",
            "--password-stdin",
        ],
        EDITOR_PASSWORD,
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

    // What the variables page and hello's page show: a plain and a secret
    // variable, and a chain that fires only on a condition hello never sets.
    server
        .cronium(&["var", "set", "region", "\"eu-west-1\""])
        .ok();
    server
        .cronium(&[
            "var",
            "set",
            "api_key",
            "\"tok-not-to-be-shown\"",
            "--secret",
        ])
        .ok();
    server
        .cronium(&[
            "event",
            "action",
            "add",
            "hello",
            "--when",
            "condition",
            "--run",
            "slow",
        ])
        .ok();

    let sshd = TestSshd::start(1);

    let driver = Driver::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        an_admin_signs_in_where_they_were_going_and_runs_an_event(&driver, &server).await;
        the_log_viewer_shows_lines_while_the_script_runs(&driver, &server).await;
        an_editor_creates_an_event_from_the_form_edits_it_and_reads_the_diff(&driver, &server)
            .await;
        an_admin_adds_a_server_and_sees_its_fingerprint_after_a_check(&driver, &server, &sshd)
            .await;
        a_viewer_sees_no_run_button(&driver, &server).await;
        an_editor_runs_a_workflow_and_watches_its_graph(&driver, &server, dir.path()).await;
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
        ("/variables", "variables"),
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
    browser
        .goto(&format!("{}/variables", server.url))
        .await
        .unwrap();
    let variables = text_of(&browser, "main").await;
    assert!(
        variables.contains("eu-west-1")
            && variables.contains("api_key")
            && !variables.contains("tok-not-to-be-shown"),
        "{variables}"
    );
    // hello (the first event) says what its jobs set off.
    browser
        .goto(&format!("{}/events/1#actions", server.url))
        .await
        .unwrap();
    let actions = text_of(&browser, "#actions table").await;
    assert!(
        actions.contains("condition") && actions.contains("run slow"),
        "{actions}"
    );
    screenshot(&browser, "event-actions").await;

    // Run now: the browser lands on the job's page, which sees it succeed.
    browser
        .goto(&format!("{}/events", server.url))
        .await
        .unwrap();
    click(&browser, "form[action$='/run'] button").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = text_of(&browser, "#job-status").await;
        if status == "succeeded" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the job is still {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        text_of(&browser, "#log")
            .await
            .contains("hello from the browser"),
        "the job's page shows its log"
    );
    browser.goto(&format!("{}/jobs", server.url)).await.unwrap();
    assert_eq!(
        text_of(&browser, "main table tbody tr td:nth-child(3)").await,
        "succeeded"
    );
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
    // The form answers on the page it was posted from: wait for the new row.
    wait_for_text(&browser, "#users table", "ui-added").await;
    let role = browser
        .find(Locator::Css("select[aria-label='Role of ui-added']"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(role.as_deref(), Some("editor"));
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

async fn an_editor_creates_an_event_from_the_form_edits_it_and_reads_the_diff(
    driver: &Driver,
    server: &Server,
) {
    let browser = driver.browser().await;
    browser
        .goto(&format!("{}/login?next=/events/new", server.url))
        .await
        .unwrap();
    sign_in(&browser, "eddie", EDITOR_PASSWORD).await;
    wait_for_path(&browser, "/events/new").await;

    // The cron fields appear with the cron type, and the next fires follow
    // what is typed, in the schedule's zone, before anything is saved.
    assert!(
        !displayed(&browser, "#cron").await,
        "no cron field for a manual schedule"
    );
    browser
        .find(Locator::Css("#schedule-type"))
        .await
        .unwrap()
        .select_by_label("cron")
        .await
        .unwrap();
    assert!(displayed(&browser, "#cron").await);
    type_into(&browser, "#cron", "15 4 * * *").await;
    type_into(&browser, "#timezone", "Asia/Tokyo").await;
    let fires = wait_for_fires(&browser, "#preview-fires li", "04:15:00 JST").await;
    assert_eq!(fires.len(), 5, "{fires:?}");
    type_into(&browser, "#name", "made-in-the-browser").await;
    type_into(&browser, "#content", "echo first version\n").await;
    screenshot(&browser, "event-new").await;
    click(&browser, "form.event-form button[type='submit']").await;

    // Its page: the same five fires, and v1.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let id = loop {
        let url = browser.current_url().await.unwrap();
        if let Some(id) = url
            .path()
            .strip_prefix("/events/")
            .and_then(|i| i.parse::<u64>().ok())
        {
            break id;
        }
        assert!(std::time::Instant::now() < deadline, "still on {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let saved = wait_for_fires(&browser, "#next-fires li", "04:15:00 JST").await;
    assert_eq!(
        saved, fires,
        "the page shows the fires the preview promised"
    );
    assert!(
        text_of(&browser, "pre.code")
            .await
            .contains("echo first version")
    );
    screenshot(&browser, "event").await;

    // On a phone's width the pages fit: nothing wider than the screen but
    // tables, which scroll inside their own box.
    browser.set_window_size(390, 844).await.unwrap();
    for path in [
        format!("/events/{id}"),
        "/events".into(),
        format!("/events/{id}/edit"),
        "/".into(),
    ] {
        browser
            .goto(&format!("{}{path}", server.url))
            .await
            .unwrap();
        text_of(&browser, "main h1").await;
        let fits = browser
            .execute(
                "return document.documentElement.scrollWidth <= window.innerWidth",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            fits,
            serde_json::Value::Bool(true),
            "{path} is wider than a phone"
        );
    }
    browser
        .goto(&format!("{}/events/{id}", server.url))
        .await
        .unwrap();
    screenshot(&browser, "event-phone").await;
    browser.set_window_size(1280, 900).await.unwrap();

    // Edit the script: v2, and the diff between v1 and v2.
    click(&browser, &format!("a[href='/events/{id}/edit']")).await;
    wait_for_path(&browser, &format!("/events/{id}/edit")).await;
    let content = browser.find(Locator::Css("#content")).await.unwrap();
    content.clear().await.unwrap();
    content
        .send_keys("echo first version\necho second version\n")
        .await
        .unwrap();
    click(&browser, "form.event-form button[type='submit']").await;
    wait_for_path(&browser, &format!("/events/{id}")).await;
    click(
        &browser,
        &format!("form[action='/events/{id}/diff'] button"),
    )
    .await;
    wait_for_path(&browser, &format!("/events/{id}/diff?from=1&to=2")).await;
    let added = browser
        .find_all(Locator::Css("table.diff tr.add td.t"))
        .await
        .unwrap();
    let mut lines = Vec::new();
    for line in &added {
        lines.push(line.text().await.unwrap());
    }
    assert!(
        lines.iter().any(|l| l.contains("echo second version")),
        "{lines:?}"
    );
    screenshot(&browser, "event-diff").await;
    browser.close().await.unwrap();
}

async fn an_admin_adds_a_server_and_sees_its_fingerprint_after_a_check(
    driver: &Driver,
    server: &Server,
    sshd: &TestSshd,
) {
    let browser = driver.browser().await;
    browser
        .goto(&format!("{}/login?next=/servers/new", server.url))
        .await
        .unwrap();
    sign_in(&browser, "admin", ADMIN_PASSWORD).await;
    wait_for_path(&browser, "/servers/new").await;
    let user = sshd.user(0);
    type_into(&browser, "#f-name", "web-1").await;
    type_into(&browser, "#f-host", sshd.host()).await;
    type_into(&browser, "#f-port", &sshd.port().to_string()).await;
    type_into(&browser, "#f-username", &user.name).await;
    type_into(&browser, "#f-password", &user.password).await;
    screenshot(&browser, "server-new").await;
    click(
        &browser,
        "form[action='/servers/new'] button[type='submit']",
    )
    .await;

    // Not pinned until checked; the check pins the key the server showed.
    wait_for_text(&browser, "main h1", "web-1").await;
    let page = text_of(&browser, "main").await;
    assert!(page.contains("Not pinned"), "{page}");
    assert!(!page.contains(&user.password), "the password is write-only");
    click(&browser, "form[action$='/check'] button").await;
    let fingerprint = text_of(&browser, "code.fingerprint").await;
    assert_eq!(fingerprint, sshd.host_key_fingerprint());
    assert_eq!(text_of(&browser, ".check.ok").await, "ok");
    screenshot(&browser, "server").await;
    browser.close().await.unwrap();
}

/// Whether the element is shown (the form hides the fields a schedule
/// type does not use).
async fn displayed(browser: &Client, css: &str) -> bool {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap()
        .is_displayed()
        .await
        .unwrap()
}

/// Replaces a field's text by typing, as a user does (input events fire).
async fn type_into(browser: &Client, css: &str, text: &str) {
    let field = browser.find(Locator::Css(css)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

/// Waits until the list `css` shows five fire times containing `expected`.
async fn wait_for_fires(browser: &Client, css: &str, expected: &str) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut texts = Vec::new();
        for item in browser.find_all(Locator::Css(css)).await.unwrap() {
            texts.push(item.text().await.unwrap_or_default());
        }
        if texts.len() == 5 && texts.iter().all(|t| t.contains(expected)) {
            return texts;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "fires shown: {texts:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    // An event's page offers a viewer nothing to press.
    click(&browser, "main table tbody td a").await;
    assert_eq!(
        text_of(&browser, "main h1").await.split(' ').next(),
        Some("hello")
    );
    for css in [
        "a[href$='/edit']",
        "form[action$='/run']",
        "form[action$='/pause']",
        "a[href$='/delete']",
    ] {
        let offered = browser.find_all(Locator::Css(css)).await.unwrap();
        assert!(offered.is_empty(), "a viewer is offered {css}");
    }
    browser.close().await.unwrap();
}

/// Clicks the first link whose text is `text`.
async fn click_link(browser: &Client, text: &str) {
    browser
        .find(Locator::LinkText(text))
        .await
        .unwrap_or_else(|e| panic!("no link {text:?}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Waits until the browser is on a run's page; the run's id.
async fn run_page_id(browser: &Client) -> u64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let url = browser.current_url().await.unwrap();
        if let Some(id) = url
            .path()
            .strip_prefix("/workflow-runs/")
            .and_then(|i| i.parse::<u64>().ok())
        {
            return id;
        }
        assert!(std::time::Instant::now() < deadline, "still on {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether nothing on the page is wider than the window (tables and the
/// graph scroll inside their own boxes).
async fn fits(browser: &Client) -> bool {
    browser
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth",
            vec![],
        )
        .await
        .unwrap()
        == serde_json::Value::Bool(true)
}

async fn count(browser: &Client, css: &str) -> usize {
    browser.find_all(Locator::Css(css)).await.unwrap().len()
}

async fn an_editor_runs_a_workflow_and_watches_its_graph(
    driver: &Driver,
    server: &Server,
    dir: &std::path::Path,
) {
    // A diamond of real scripts, applied with `POST /api/v1/workflows`
    // (what `cronium workflow apply` sends); its first node prints its input.
    for (name, body) in [
        ("wf-split", "cronium input\n"),
        ("wf-left", "echo left; sleep 1\n"),
        ("wf-right", "echo right\n"),
        ("wf-join", "echo joined\n"),
        ("wf-slow-root", "sleep 30\n"),
    ] {
        let file = script(dir, &format!("{name}.sh"), body);
        server
            .cronium(&[
                "event", "create", "--name", name, "--script", &file, "--manual",
            ])
            .ok();
    }
    let diamond = dir.join("diamond.yaml");
    std::fs::write(
        &diamond,
        "name: diamond\ndescription: Split, two branches, join.\nnodes:\n  - id: split\n    event: wf-split\n\
         \x20 - id: left\n    event: wf-left\n    after: [split]\n\
         \x20 - id: right\n    event: wf-right\n    after: [split]\n\
         \x20 - id: join\n    event: wf-join\n    after: [left, {node: right, on: always}]\n",
    )
    .unwrap();
    server
        .cronium(&["workflow", "apply", "-f", diamond.to_str().unwrap()])
        .ok();

    let browser = driver.browser().await;
    browser
        .goto(&format!("{}/login?next=/workflows", server.url))
        .await
        .unwrap();
    sign_in(&browser, "eddie", EDITOR_PASSWORD).await;
    wait_for_path(&browser, "/workflows").await;
    let listed = text_of(&browser, "main table").await;
    assert!(
        listed.contains("diamond") && listed.contains("never run"),
        "{listed}"
    );
    screenshot(&browser, "workflows").await;
    click_link(&browser, "diamond").await;
    let yaml = text_of(&browser, "#definition").await;
    assert!(
        yaml.contains("- id: join") && yaml.contains("on: always"),
        "{yaml}"
    );
    screenshot(&browser, "workflow").await;
    let workflow_path = browser.current_url().await.unwrap().path().to_string();

    // Run it with input: the run's page follows it to the end by itself.
    type_into(&browser, "#run-input", "{\"n\": 7}").await;
    click(&browser, "form[action$='/run'] button").await;
    let run = run_page_id(&browser).await;
    wait_for_text(&browser, "#run-status", "succeeded").await;
    assert_eq!(count(&browser, "svg.dag g.node.succeeded").await, 4);
    assert_eq!(count(&browser, "svg.dag g.node a[href^='/jobs/']").await, 4);
    let label = text_of(&browser, "svg.dag text.edge-label.always").await;
    assert_eq!(label, "always");
    let nodes = text_of(&browser, "#nodes").await;
    assert!(nodes.contains("wf-join"), "{nodes}");
    let input = text_of(&browser, "#run-input").await;
    assert!(input.contains("\"n\": 7"), "{input}");
    screenshot(&browser, "workflow-run").await;
    // A node's box opens its job's log.
    click(&browser, "#node-split a").await;
    wait_for_text(&browser, "#log", "{\"n\":7}").await;
    browser.back().await.unwrap();
    wait_for_text(&browser, "#run-status", "succeeded").await;

    // A fan-out of a hundred nodes: drawn in wrapped columns, cancelled
    // from its page while its root still runs.
    let mut wide = String::from("name: wide\nnodes:\n  - id: root\n    event: wf-slow-root\n");
    for i in 0..99 {
        wide.push_str(&format!(
            "  - id: branch-{i:02}\n    event: wf-right\n    after: [root]\n"
        ));
    }
    let wide_file = dir.join("wide.yaml");
    std::fs::write(&wide_file, wide).unwrap();
    server
        .cronium(&["workflow", "apply", "-f", wide_file.to_str().unwrap()])
        .ok();
    browser
        .goto(&format!("{}/workflows", server.url))
        .await
        .unwrap();
    click_link(&browser, "wide").await;
    click(&browser, "form[action$='/run'] button").await;
    let wide_run = run_page_id(&browser).await;
    wait_for_text(&browser, "#node-root .state", "running").await;
    assert_eq!(count(&browser, "svg.dag g.node.pending").await, 99);
    let (width, height) = browser
        .find(Locator::Css("svg.dag"))
        .await
        .unwrap()
        .rectangle()
        .await
        .map(|(_, _, w, h)| (w, h))
        .unwrap();
    assert!(
        height < 800.0 && width < 2500.0,
        "a hundred nodes drawn {width}x{height}"
    );
    screenshot(&browser, "workflow-run-wide").await;
    click(&browser, "form[action$='/cancel'] button").await;
    wait_for_text(&browser, "#run-status", "cancelled").await;
    assert_eq!(count(&browser, "svg.dag g.node.cancelled").await, 100);
    assert_eq!(count(&browser, "form[action$='/cancel']").await, 0);
    assert_eq!(count(&browser, "form[action$='/retry']").await, 1);

    // On a phone's width the pages fit; the graph scrolls in its box.
    browser.set_window_size(390, 844).await.unwrap();
    for path in [
        "/workflows".to_string(),
        workflow_path.clone(),
        format!("/workflow-runs/{run}"),
        format!("/workflow-runs/{wide_run}"),
    ] {
        browser
            .goto(&format!("{}{path}", server.url))
            .await
            .unwrap();
        text_of(&browser, "main h1").await;
        assert!(fits(&browser).await, "{path} is wider than a phone");
    }
    browser
        .goto(&format!("{}/workflow-runs/{run}", server.url))
        .await
        .unwrap();
    text_of(&browser, "main h1").await;
    screenshot(&browser, "workflow-run-phone").await;
    browser.set_window_size(1280, 900).await.unwrap();
    browser.close().await.unwrap();
}

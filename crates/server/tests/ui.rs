//! The web UI's foundation, on SQLite and PostgreSQL: signing in and out, the session cookie, the limits on failed sign-ins, CSRF and origin checks on every form, roles on pages, session expiry, and the headers every page carries.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{TestApp, contains, database_bytes};
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";

/// What every UI answer must carry.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// A form's fields.
type Form<'a> = Vec<(&'a str, &'a str)>;

#[track_caller]
fn assert_protected(resp: &common::Resp, what: &str) {
    assert_eq!(resp.header("content-security-policy"), Some(CSP), "{what}");
    assert_eq!(resp.header("x-frame-options"), Some("DENY"), "{what}");
    assert_eq!(
        resp.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        resp.header("referrer-policy"),
        Some("same-origin"),
        "{what}"
    );
}

#[track_caller]
fn assert_no_inline_code(html: &str, what: &str) {
    let lower = html.to_lowercase();
    for forbidden in ["<script", "style=", "<style", " on"] {
        let found = match forbidden {
            // A script from this server's static files, with no body, is not inline.
            "<script" => lower.match_indices("<script").any(|(i, _)| {
                let tag_end = lower[i..].find('>').map_or(lower.len(), |e| i + e + 1);
                let tag = &lower[i..tag_end];
                !(tag.contains(" src=\"/static/") && lower[tag_end..].starts_with("</script>"))
            }),
            // An event handler attribute: ` onclick=`, ` onload=`…
            " on" => lower.match_indices(" on").any(|(i, _)| {
                lower[i + 3..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphabetic())
                    .count()
                    > 0
                    && lower[i + 3..]
                        .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                        .starts_with('=')
            }),
            _ => lower.contains(forbidden),
        };
        assert!(!found, "{what} has inline code ({forbidden}): {html}");
    }
}

/// A POST from 127.0.0.2, the way a second client would send it: the
/// sign-in limit counts per address.
fn post_from_other_address(app: &TestApp, path: &str, body: &str) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr: std::net::SocketAddr = app.base.trim_start_matches("http://").parse().unwrap();
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        socket.connect(addr).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    let mut stream = stream;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nOrigin: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        app.base,
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.split(' ').nth(1).unwrap().parse().unwrap()
}

both_backends! {
    fn signing_in_sets_a_strict_cookie_and_lands_where_you_were(backend: Backend) {
        let app = TestApp::spawn(backend);
        let mut browser = app.browser();

        // A page without a session sends the browser to sign in, and back.
        let resp = browser.get("/jobs?status=failed");
        assert_eq!(resp.status, 303);
        assert_eq!(resp.header("location"), Some("/login?next=/jobs%3Fstatus%3Dfailed"));
        let form = browser.get("/login?next=/jobs%3Fstatus%3Dfailed");
        assert_eq!(form.status, 200);
        assert!(form.text().contains(r#"name="next" value="/jobs?status=failed""#), "{}", form.text());

        // `admin` exists from the first start but has no password: no way in.
        let resp = browser.login("admin", "", "/");
        assert_eq!(resp.status, 401);
        assert!(resp.text().contains("wrong name or password"));
        assert!(browser.cookie.is_none());

        app.set_password("admin", PASSWORD);
        let resp = browser.login("admin", PASSWORD, "/jobs?status=failed");
        assert_eq!(resp.status, 303, "{}", resp.text());
        assert_eq!(resp.header("location"), Some("/jobs?status=failed"));
        let cookie = resp.header("set-cookie").unwrap();
        let (pair, attributes) = cookie.split_once("; ").unwrap();
        assert!(pair.starts_with("cronium_session=") && pair.len() == "cronium_session=".len() + 43, "{cookie}");
        assert_eq!(attributes, "HttpOnly; SameSite=Strict; Path=/", "no Secure without https");
        let page = browser.get("/jobs?status=failed");
        assert_eq!(page.status, 200);
        assert!(page.text().contains("admin"));

        // Only a local path is followed after signing in.
        for next in ["//evil.example", "https://evil.example", "/\\evil.example", "evil"] {
            let mut other = app.browser();
            let resp = other.login("admin", PASSWORD, next);
            assert_eq!(resp.status, 303);
            assert_eq!(resp.header("location"), Some("/"), "{next}");
        }

        // The database holds an argon2id hash and the cookie's hash, never
        // the password or the cookie's secret.
        let bytes = database_bytes(&app);
        assert!(contains(&bytes, b"$argon2id$v=19$"), "an argon2id PHC string is stored");
        assert!(!contains(&bytes, PASSWORD.as_bytes()));
        assert!(!contains(&bytes, common::hex(PASSWORD).as_bytes()));
        let secret = &pair["cronium_session=".len()..];
        assert!(!contains(&bytes, secret.as_bytes()));
        assert!(!contains(&bytes, common::hex(secret).as_bytes()));

        // A session cookie opens no API route.
        let cookie = browser.cookie.clone().unwrap();
        app.send("GET", "/api/v1/events", None, &[("cookie", &cookie)], None)
            .expect_error(401, "unauthorized", None);
    }

    fn the_cookie_is_secure_when_the_public_url_is_https(backend: Backend) {
        let app = TestApp::spawn_with(backend, |c| {
            c.public_url = Some("https://cron.example.com".into());
            c.secure_cookies = true;
        });
        app.set_password("admin", PASSWORD);
        let mut browser = app.browser();
        // Forms must now come from the public URL's origin.
        assert_eq!(browser.login("admin", PASSWORD, "/").status, 403);
        browser.origin = Some("https://cron.example.com".into());
        let resp = browser.login("admin", PASSWORD, "/");
        assert_eq!(resp.status, 303, "{}", resp.text());
        let cookie = resp.header("set-cookie").unwrap();
        assert!(cookie.ends_with("; HttpOnly; SameSite=Strict; Path=/; Secure"), "{cookie}");
    }

    fn failed_sign_ins_are_generic_and_limited_per_name_and_per_address(backend: Backend) {
        let app = TestApp::spawn(backend);
        app.set_password("admin", PASSWORD);
        let mut browser = app.browser();

        // Unknown name and wrong password: the same answer.
        let unknown = browser.login("nobody", PASSWORD, "/");
        let wrong = browser.login("admin", "not the password", "/");
        for resp in [&unknown, &wrong] {
            assert_eq!(resp.status, 401);
            assert!(resp.text().contains("wrong name or password"), "{}", resp.text());
            assert!(!resp.text().contains("no such user"));
        }

        // Per name: five failures from another address block `admin` here,
        // even with the right password, which is then not even checked.
        app.config.clock.advance(Duration::from_secs(16 * 60));
        let body = format!("name=admin&password=wrong{}&next=%2F", "x".repeat(12));
        for _ in 0..5 {
            assert_eq!(post_from_other_address(&app, "/login", &body), 401);
        }
        let blocked = browser.login("admin", PASSWORD, "/");
        assert_eq!(blocked.status, 429, "{}", blocked.text());
        let retry: i64 = blocked.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=15 * 60).contains(&retry), "{retry}");
        assert!(browser.cookie.is_none());
        // Another name from this address is still fine.
        app.add_user("ops", "viewer", PASSWORD);
        assert_eq!(browser.login("ops", PASSWORD, "/").status, 303);

        // Per address: five failures under different names block this
        // address for any name.
        app.config.clock.advance(Duration::from_secs(16 * 60));
        let mut browser = app.browser();
        for i in 0..5 {
            assert_eq!(browser.login(&format!("guess{i}"), "wrong", "/").status, 401);
        }
        assert_eq!(browser.login("ops", PASSWORD, "/").status, 429);
        assert_eq!(post_from_other_address(&app, "/login", &format!("name=ops&password={}", common::encode(PASSWORD))), 303);

        // The window passes; a success then clears the count.
        app.config.clock.advance(Duration::from_secs(16 * 60));
        for _ in 0..4 {
            assert_eq!(browser.login("admin", "wrong", "/").status, 401);
        }
        assert_eq!(browser.login("admin", PASSWORD, "/").status, 303);
        for _ in 0..4 {
            assert_eq!(browser.login("admin", "wrong", "/").status, 401);
        }
        assert_eq!(browser.login("admin", PASSWORD, "/").status, 303);
    }

    fn forms_need_the_sessions_csrf_token_and_this_origin(backend: Backend) {
        let app = TestApp::spawn(backend);
        app.set_password("admin", PASSWORD);
        let mut body = common::script_event("csrf-target");
        body["overlap"] = json!("allow");
        let event = app.create_event(body);
        let id = event["id"].as_i64().unwrap();
        let run = format!("/events/{id}/run");
        let jobs = || app.get(&format!("/api/v1/jobs?eventId={id}")).expect(200)["total"].as_u64().unwrap();
        let mut browser = app.browser().signed_in("admin", PASSWORD);
        let csrf = browser.csrf("/events");
        assert!(browser.get("/events").text().contains("Run now"));

        let refused: [(&str, Form, Option<&str>); 5] = [
            ("no token", vec![], Some(app.base.as_str())),
            ("an empty token", vec![("csrf", "")], Some(app.base.as_str())),
            ("another token", vec![("csrf", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")], Some(app.base.as_str())),
            ("a foreign origin", vec![("csrf", csrf.as_str())], Some("http://evil.example")),
            ("no origin at all", vec![("csrf", csrf.as_str())], None),
        ];
        for (what, fields, origin) in refused {
            browser.origin = origin.map(String::from);
            let resp = browser.post(&run, &fields);
            assert_eq!(resp.status, 403, "{what}: {}", resp.text());
            assert_protected(&resp, what);
        }
        assert_eq!(jobs(), 0, "nothing ran");
        // A foreign Referer when the browser sent no Origin.
        browser.origin = None;
        let body = format!("csrf={csrf}");
        let resp = browser.send("POST", &run, &[("content-type", "application/x-www-form-urlencoded"), ("referer", "http://evil.example/page")], Some(body.clone()));
        assert_eq!(resp.status, 403);
        assert_eq!(jobs(), 0);
        // Signing in from another origin is refused too.
        let mut stranger = app.browser();
        stranger.origin = Some("http://evil.example".into());
        assert_eq!(stranger.login("admin", PASSWORD, "/").status, 403);
        assert!(stranger.cookie.is_none());

        // The right token and origin: as a form field, or as a header.
        let referer = format!("{}/events", app.base);
        let resp = browser.send("POST", &run, &[("content-type", "application/x-www-form-urlencoded"), ("referer", &referer)], Some(body));
        assert_eq!(resp.status, 303, "{}", resp.text());
        assert!(resp.header("location").unwrap().starts_with("/jobs/"), "the job's page");
        browser.origin = Some(app.base.clone());
        let resp = browser.send("POST", &run, &[("origin", &app.base), ("x-csrf-token", &csrf)], None);
        assert_eq!(resp.status, 303, "{}", resp.text());
        common::wait_for("the runs", Duration::from_secs(30), || (jobs() == 2).then_some(()));

        // The UI user is the actor in the audit log.
        let audit = app.get("/api/v1/audit?limit=500").expect(200);
        let login = audit["items"].as_array().unwrap().iter().find(|r| r["action"] == "session.create").unwrap();
        assert_eq!(login["actor"], json!(null));
        assert_eq!(login["actorUser"], json!(1));
    }

    fn a_viewer_sees_no_editor_button_and_cannot_press_it(backend: Backend) {
        let app = TestApp::spawn(backend);
        app.add_user("watcher", "viewer", PASSWORD);
        let event = app.create_event(common::script_event("not-for-viewers"));
        let id = event["id"].as_i64().unwrap();
        let mut viewer = app.browser().signed_in("watcher", PASSWORD);
        let page = viewer.get("/events");
        assert_eq!(page.status, 200);
        assert!(page.text().contains("not-for-viewers"));
        assert!(!page.text().contains("Run now"), "no editor button for a viewer");
        assert!(!page.text().contains(r#"href="/audit""#), "no admin link for a viewer");
        let csrf = common::csrf_of(&page.text());
        let resp = viewer.post(&format!("/events/{id}/run"), &[("csrf", &csrf)]);
        assert_eq!(resp.status, 403, "{}", resp.text());
        assert!(resp.text().contains("editor"));
        assert_eq!(app.get(&format!("/api/v1/jobs?eventId={id}")).expect(200)["total"], 0);
        assert_eq!(viewer.get("/audit").status, 403);
        assert_eq!(viewer.get("/settings").status, 200);
    }

    fn signing_out_ends_the_session_on_the_server(backend: Backend) {
        let app = TestApp::spawn(backend);
        app.set_password("admin", PASSWORD);
        let mut browser = app.browser().signed_in("admin", PASSWORD);
        let old = browser.cookie.clone().unwrap();
        let csrf = browser.csrf("/");
        let resp = browser.post("/logout", &[("csrf", &csrf)]);
        assert_eq!(resp.status, 303);
        assert_eq!(resp.header("location"), Some("/login"));
        assert!(resp.header("set-cookie").unwrap().contains("Max-Age=0"));
        // The old cookie, replayed, opens nothing.
        browser.cookie = Some(old);
        let resp = browser.get("/");
        assert_eq!(resp.status, 303);
        assert!(resp.header("location").unwrap().starts_with("/login"));
        // And the browser is told to forget it.
        assert!(resp.header("set-cookie").unwrap().contains("Max-Age=0"));
    }

    fn sessions_end_when_idle_too_old_or_the_password_changes(backend: Backend) {
        let app = TestApp::spawn(backend);
        app.set_password("admin", PASSWORD);
        let clock = app.config.clock.clone();
        let minutes = |n: u64| Duration::from_secs(n * 60);

        // Idle: used every 29 minutes it lives on; 31 minutes unused, it ends.
        let mut browser = app.browser().signed_in("admin", PASSWORD);
        for _ in 0..3 {
            clock.advance(minutes(29));
            assert_eq!(browser.get("/").status, 200);
        }
        clock.advance(minutes(31));
        assert_eq!(browser.get("/").status, 303);

        // Absolute: however much it is used, it ends 12 hours after sign-in.
        let mut browser = app.browser().signed_in("admin", PASSWORD);
        for step in 1..=40 {
            clock.advance(minutes(20));
            let status = browser.get("/").status;
            if step * 20 < 12 * 60 {
                assert_eq!(status, 200, "after {} minutes", step * 20);
            } else {
                assert_eq!(status, 303, "after {} minutes", step * 20);
                break;
            }
        }

        // A new password signs the user out everywhere.
        let mut browser = app.browser().signed_in("admin", PASSWORD);
        assert_eq!(browser.get("/").status, 200);
        app.set_password("admin", "another long password");
        assert_eq!(browser.get("/").status, 303);
        // As does removing the user.
        app.add_user("temp", "editor", PASSWORD);
        let mut temp = app.browser().signed_in("temp", PASSWORD);
        assert_eq!(temp.get("/").status, 200);
        app.users(cronium_server::users::UserAction::Remove { name: "temp".into() });
        assert_eq!(temp.get("/").status, 303);
    }

    fn every_page_carries_the_security_headers_and_no_inline_code(backend: Backend) {
        let app = TestApp::spawn(backend);
        app.set_password("admin", PASSWORD);
        app.create_event(common::script_event("shown"));
        let mut anonymous = app.browser();
        let mut admin = app.browser().signed_in("admin", PASSWORD);
        let pages: &[(&str, bool, u16)] = &[
            ("/login", false, 200),
            ("/", false, 303),
            ("/", true, 200),
            ("/events", true, 200),
            ("/events?name=sh&status=active&sort=name", true, 200),
            ("/events/new", true, 200),
            ("/events/new?kind=http", true, 200),
            ("/events/1", true, 200),
            ("/events/1/edit", true, 200),
            ("/events/1/delete", true, 200),
            ("/events/1/diff?from=1&to=1", true, 200),
            ("/events/999", true, 404),
            ("/jobs", true, 200),
            ("/jobs?status=failed", true, 200),
            ("/jobs?status=nonsense", true, 422),
            ("/servers", true, 200),
            ("/audit", true, 200),
            ("/settings", true, 200),
            ("/no-such-page", true, 404),
            ("/no-such-page", false, 404),
        ];
        let mut css = None;
        for (path, signed_in, status) in pages {
            let browser = if *signed_in { &mut admin } else { &mut anonymous };
            let resp = browser.get(path);
            let what = format!("GET {path} (signed in: {signed_in})");
            assert_eq!(resp.status, *status, "{what}: {}", resp.text());
            assert_protected(&resp, &what);
            assert_eq!(resp.header("cache-control"), Some("no-store"), "{what}");
            if resp.status != 303 {
                assert!(resp.header("content-type").unwrap().starts_with("text/html"), "{what}");
                assert_no_inline_code(&resp.text(), &what);
                let html = resp.text();
                if let Some(start) = html.find("/static/") {
                    css = Some(html[start..].split('"').next().unwrap().to_string());
                }
            }
        }
        // The workflow pages, a run's graph among them.
        let workflow = app.post("/api/v1/workflows", json!({
            "name": "shown-flow", "nodes": [{ "id": "a", "event": "shown" }, { "id": "b", "event": "shown", "after": [{ "node": "a", "on": "always" }] }],
        })).expect(201)["id"].as_i64().unwrap();
        let run = app.post(&format!("/api/v1/workflows/{workflow}/run"), json!({})).expect(201)["id"].as_i64().unwrap();
        for path in ["/workflows".to_string(), format!("/workflows/{workflow}"), format!("/workflow-runs/{run}")] {
            let resp = admin.get(&path);
            assert_eq!(resp.status, 200, "{path}: {}", resp.text());
            assert_protected(&resp, &path);
            assert_no_inline_code(&resp.text(), &path);
        }
        let dashboard = admin.get("/").text();
        for link in [r#"href="/events""#, r#"href="/jobs?status=running""#, r#"href="/jobs?status=failed&amp;since="#] {
            assert!(dashboard.contains(link), "{link}: {dashboard}");
        }
        // A wrong method on a page, and a POST to a page with none.
        let resp = admin.send("PUT", "/events", &[], None);
        assert_eq!(resp.status, 405);
        assert_protected(&resp, "PUT /events");

        // The stylesheet: immutable under its build id, nothing else there.
        let css = css.expect("pages link the stylesheet");
        assert!(css.starts_with(&format!("/static/{}-", env!("CARGO_PKG_VERSION"))), "{css}");
        let resp = anonymous.get(&css);
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("content-type"), Some("text/css; charset=utf-8"));
        assert_eq!(resp.header("cache-control"), Some("public, max-age=31536000, immutable"));
        assert_protected(&resp, "the stylesheet");
        assert!(resp.text().contains("prefers-color-scheme: dark"));
        assert_eq!(anonymous.get("/static/0.0.0-000000000000/style.css").status, 404);
        assert_eq!(anonymous.get(&css.replace("style.css", "app.js")).status, 404);

        // The API keeps its own answers.
        app.send("GET", "/api/v1/nothing", None, &[], None).expect_error(404, "not_found", None);
    }
}

both_backends! {
    fn the_job_page_shows_the_logs_tail_as_text_and_serves_the_rest(backend: Backend) {
        let app = TestApp::spawn(backend);
        app.set_password("admin", PASSWORD);
        let content = "printf '<script>alert(1)</script>\\n'\nprintf '\\033[31mred\\033[0m\\n'\n\
                       for i in $(seq 1 1200); do echo \"line $i\"; done\n\
                       sleep 0.3\necho oops >&2\nexit 3\n";
        let event = app.create_event(serde_json::json!({ "name": "noisy", "interpreter": "bash", "content": content }));
        let job = app.post(&format!("/api/v1/events/{}/run", event["id"]), serde_json::json!({})).expect(201);
        let id = job["id"].as_i64().unwrap();
        let done = common::wait_for("the job to end", std::time::Duration::from_secs(30), || {
            let j = app.get(&format!("/api/v1/jobs/{id}")).expect(200);
            j["finishedAt"].is_string().then_some(j)
        });
        assert_eq!(done["exitCode"], 3);

        let mut browser = app.browser();
        browser.login("admin", PASSWORD, "/");
        let page = browser.get(&format!("/jobs/{id}"));
        assert_eq!(page.status, 200);
        let html = page.text();
        assert_protected(&page, "the job page");
        assert_no_inline_code(&html, "the job page");
        // The tail only: the last 500 of 1,203 lines, and a way to earlier ones.
        assert_eq!(html.matches("<div class=\"l ").count(), 500, "a bounded page");
        assert!(html.contains("line 1200") && !html.contains(">line 100<"), "the tail");
        assert!(html.contains("<div class=\"l stderr\""), "stderr is marked");
        assert!(!html.contains("id=\"earlier\" class=\"link\" hidden"), "earlier lines offered");
        assert!(html.contains("<dd>3</dd>"), "the exit code");

        // Earlier lines, as escaped HTML: the script's markup stays text.
        let earlier = browser.get(&format!("/jobs/{id}/lines?before=4"));
        assert_eq!(earlier.status, 200);
        let text = earlier.text();
        // Line 1 is the job's own note that the attempt started.
        assert_eq!(text.matches("<div class=\"l ").count(), 3);
        assert!(text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{text}");
        assert!(!text.contains("<script>"), "{text}");
        assert!(text.contains("<span class=\"a-f1\">red</span>"), "{text}");
        assert_eq!(browser.get(&format!("/jobs/{id}/lines?before=x")).status, 422);

        // The raw log, whole, as the script wrote it.
        let raw = browser.get(&format!("/jobs/{id}/log.txt"));
        assert_eq!(raw.status, 200);
        assert_eq!(raw.header("content-disposition"), Some(format!("attachment; filename=\"job-{id}.log\"").as_str()));
        let text = raw.text();
        assert!(text.contains("\n<script>alert(1)</script>\n\u{1b}[31mred\u{1b}[0m\nline 1\n"), "{}", &text[..200]);
        assert!(text.contains("line 1200\noops\n"));

        // The jobs list names the job's event and links to the job.
        let list = browser.get("/jobs").text();
        assert!(list.contains(">noisy</a>"), "{list}");
        assert!(list.contains(&format!("href=\"/jobs/{id}\"")), "{list}");

        // Without a session, none of it.
        let mut stranger = app.browser();
        assert_eq!(stranger.get(&format!("/jobs/{id}/log.txt")).status, 303);
        assert_eq!(stranger.get(&format!("/jobs/{id}/live")).status, 303);
    }
}

both_backends! {
    fn an_admin_makes_an_api_token_on_the_settings_page_and_sees_it_once(backend: Backend) {
        let app = TestApp::spawn(backend);
        app.set_password("admin", PASSWORD);
        let mut admin = app.browser().signed_in("admin", PASSWORD);
        let csrf = admin.csrf("/settings");

        // A bad name comes back beside the form, with the role's rule kept.
        let refused = admin.post("/settings/tokens", &[("csrf", &csrf), ("name", " "), ("role", "editor")]);
        assert_eq!(refused.status, 422);
        assert!(refused.text().contains("name: required"), "{}", refused.text());

        let made = admin.post("/settings/tokens", &[("csrf", &csrf), ("name", "deploy bot"), ("role", "editor")]);
        assert_eq!(made.status, 200, "{}", made.text());
        let html = made.text();
        let start = html.find("<code class=\"secret\">").expect("the secret is shown") + 21;
        let secret = html[start..].split('<').next().unwrap().to_string();
        assert!(secret.starts_with("crn_"), "{secret}");
        assert_eq!(made.header("cache-control"), Some("no-store"));

        // The secret opens the API with the token's role, and is never shown again.
        app.send("GET", "/api/v1/events", None, &[("authorization", &format!("Bearer {secret}"))], None)
            .expect(200);
        let again = admin.get("/settings").text();
        assert!(again.contains("deploy bot") && !again.contains(&secret), "shown once");
        assert!(!contains(&database_bytes(&app), secret.as_bytes()), "only its hash is stored");
        let audit = app.get("/api/v1/audit?limit=50").expect(200);
        let entry = audit["items"].as_array().unwrap().iter().find(|r| r["action"] == "token.create").unwrap();
        assert_eq!(entry["detail"]["name"], "deploy bot");
        assert!(entry["actorUser"].is_number(), "{entry}");

        // Revoked from the page: the API no longer takes it.
        let id = app.get("/api/v1/tokens").expect(200).as_array().unwrap().iter()
            .find(|t| t["name"] == "deploy bot").unwrap()["id"].clone();
        let resp = admin.post(&format!("/settings/tokens/{id}/revoke"), &[("csrf", &csrf)]);
        assert_eq!(resp.status, 303);
        app.send("GET", "/api/v1/events", None, &[("authorization", &format!("Bearer {secret}"))], None)
            .expect_error(401, "unauthorized", None);
        assert!(admin.get("/settings").text().contains("revoked"));

        // An editor sees no token section and may not post to it.
        app.add_user("eddie", "editor", PASSWORD);
        let mut editor = app.browser().signed_in("eddie", PASSWORD);
        let page = editor.get("/settings").text();
        assert!(!page.contains("API tokens"), "{page}");
        let csrf = common::csrf_of(&page);
        let resp = editor.post("/settings/tokens", &[("csrf", &csrf), ("name", "sneaky"), ("role", "admin")]);
        assert_eq!(resp.status, 403);
        let names: Vec<Value> = app.get("/api/v1/tokens").expect(200).as_array().unwrap().iter().map(|t| t["name"].clone()).collect();
        assert!(!names.contains(&json!("sneaky")), "{names:?}");
    }
}

/// The fields a browser would submit from the form in `html` whose action
/// is `action`: inputs with their values, textareas, the selected option of
/// each select, checked boxes only.
fn form_fields(html: &str, action: &str) -> Vec<(String, String)> {
    let start = html
        .find(&format!(r#"action="{action}""#))
        .expect("the form");
    let form = &html[start..start + html[start..].find("</form>").unwrap()];
    let attr = |tag: &str, name: &str| {
        let key = format!(r#" {name}=""#);
        tag.find(&key).map(|i| {
            let rest = &tag[i + key.len()..];
            unescape(&rest[..rest.find('"').unwrap()])
        })
    };
    let mut fields = Vec::new();
    let mut at = 0;
    while let Some(i) = form[at..].find('<') {
        let from = at + i;
        let tag_end = from + form[from..].find('>').unwrap();
        let tag = &form[from..=tag_end];
        at = tag_end + 1;
        let Some(name) = attr(tag, "name") else {
            continue;
        };
        if tag.starts_with("<input") {
            let checkbox = tag.contains(r#"type="checkbox""#);
            if checkbox && !tag.contains(" checked") {
                continue;
            }
            let default = if checkbox {
                "on".to_string()
            } else {
                String::new()
            };
            fields.push((name, attr(tag, "value").unwrap_or(default)));
        } else if tag.starts_with("<textarea") {
            let end = at + form[at..].find("</textarea>").unwrap();
            fields.push((name, unescape(&form[at..end])));
        } else if tag.starts_with("<select") {
            let end = at + form[at..].find("</select>").unwrap();
            let options = &form[at..end];
            let chosen = options
                .split("<option")
                .skip(1)
                .find(|o| o.contains(" selected"))
                .or_else(|| options.split("<option").nth(1))
                .unwrap();
            let value = attr(chosen, "value").unwrap_or_else(|| {
                unescape(&chosen[chosen.find('>').unwrap() + 1..chosen.find("</option>").unwrap()])
            });
            fields.push((name, value));
        }
    }
    fields
}

fn unescape(text: &str) -> String {
    text.replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&#38;", "&")
}

/// `fields` with `changes` set (added when missing).
fn with(mut fields: Vec<(String, String)>, changes: &[(&str, &str)]) -> Vec<(String, String)> {
    for (name, value) in changes {
        match fields.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value.to_string(),
            None => fields.push((name.to_string(), value.to_string())),
        }
    }
    fields
}

fn post_fields(
    browser: &mut common::Browser<'_>,
    path: &str,
    fields: &[(String, String)],
) -> common::Resp {
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    browser.post(path, &pairs)
}

/// The `<time>` texts of an ordered list of fire times.
fn fire_times(html: &str, list_id: &str) -> Vec<(String, String)> {
    let start = html
        .find(&format!(r#"id="{list_id}""#))
        .expect("the list of fire times");
    let list = &html[start..start + html[start..].find("</ol>").unwrap()];
    list.split("<time datetime=\"")
        .skip(1)
        .map(|item| {
            let utc = item[..item.find('"').unwrap()].to_string();
            let local =
                item[item.find('>').unwrap() + 1..item.find("</time>").unwrap()].to_string();
            (utc, local)
        })
        .collect()
}

/// The path a 303 sends the browser to.
#[track_caller]
fn location(resp: &common::Resp) -> String {
    assert_eq!(resp.status, 303, "{}", resp.text());
    resp.header("location").unwrap().to_string()
}

/// The audit entries with `action`, newest first.
fn audited(app: &TestApp, action: &str) -> Vec<Value> {
    let page = app.get("/api/v1/audit?limit=500").expect(200);
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .cloned()
        .collect()
}

/// The id of the user `name`.
fn user_id(app: &TestApp, name: &str) -> i64 {
    match app.users(cronium_server::users::UserAction::List) {
        cronium_server::users::Outcome::Users(users) => {
            users
                .iter()
                .find(|u| u.name == name)
                .expect("the user")
                .id
                .0
        }
        other => panic!("{other:?}"),
    }
}

/// The role of the user `name`, if it exists.
fn role_of(app: &TestApp, name: &str) -> Option<String> {
    match app.users(cronium_server::users::UserAction::List) {
        cronium_server::users::Outcome::Users(users) => users
            .iter()
            .find(|u| u.name == name)
            .map(|u| u.role.to_string()),
        other => panic!("{other:?}"),
    }
}

both_backends! {
    fn an_editor_creates_a_cron_event_from_the_form_and_sees_its_next_fires_in_its_zone(backend: Backend) {
        let app = TestApp::spawn(backend);
        app.add_user("eddie", "editor", PASSWORD);
        let mut editor = app.browser().signed_in("eddie", PASSWORD);
        let page = editor.get("/events/new");
        assert_eq!(page.status, 200, "{}", page.text());
        assert!(page.text().contains("/event-form.js\" defer></script>"));
        let blank = form_fields(&page.text(), "/events");
        let typed = with(blank, &[
            ("name", "nightly report"),
            ("content", "echo one\r\necho \"<two>\"\r\n"),
            ("env", "GREETING=hi\r\n"),
            ("secretEnv", "TOKEN=s3cret-value-42"),
            ("schedule.type", "cron"),
            ("schedule.cron", "61 2 * * *"),
            ("schedule.timezone", "Europe/Paris"),
        ]);

        // A bad expression: the form comes back with what was typed and the
        // error beside the schedule, and the secret is not sent back.
        let refused = post_fields(&mut editor, "/events", &typed);
        assert_eq!(refused.status, 422, "{}", refused.text());
        let html = refused.text();
        assert!(html.contains(r#"data-field="schedule">invalid cron expression &#34;61 2 * * *&#34;"#), "{html}");
        assert!(html.contains(r#"value="nightly report""#), "{html}");
        assert!(html.contains("echo &#34;&#60;two&#62;&#34;\n</textarea>"), "the script is kept, as text: {html}");
        assert!(!html.contains("s3cret-value-42"), "a typed secret is never sent back");
        assert_eq!(app.get("/api/v1/events").expect(200)["total"], 0);

        let saved = post_fields(&mut editor, "/events", &with(typed, &[("schedule.cron", "30 2 * * *")]));
        assert_eq!(saved.status, 303, "{}", saved.text());
        let location = saved.header("location").unwrap().to_string();
        let id: i64 = location.strip_prefix("/events/").unwrap().parse().unwrap();
        let event = app.get(&format!("/api/v1/events/{id}")).expect(200);
        assert_eq!(event["content"], "echo one\necho \"<two>\"\n", "line ends as the script keeps them");
        assert_eq!(event["env"], json!({ "GREETING": "hi" }));
        assert_eq!(event["secretEnvKeys"], json!(["TOKEN"]));
        assert_eq!(event["schedule"], json!({ "type": "cron", "cron": "30 2 * * *", "timezone": "Europe/Paris" }));

        // Its page: the next five fires in Paris time, UTC on hover, the
        // secret by name only.
        let page = editor.get(&location);
        assert_eq!(page.status, 200);
        let html = page.text();
        let fires = fire_times(&html, "next-fires");
        let api_fires: Vec<String> = event["nextFires"].as_array().unwrap().iter()
            .map(|f| f.as_str().unwrap().to_string()).collect();
        assert_eq!(fires.len(), 5, "{html}");
        for ((utc, local), api) in fires.iter().zip(&api_fires) {
            assert_eq!(chrono::DateTime::parse_from_rfc3339(utc).unwrap(), chrono::DateTime::parse_from_rfc3339(api).unwrap());
            assert!(local.ends_with(" 02:30:00 CET") || local.ends_with(" 02:30:00 CEST"), "{local}");
        }
        assert!(html.contains("TOKEN") && !html.contains("s3cret-value-42"));
        assert!(!contains(&database_bytes(&app), b"s3cret-value-42"), "sealed at rest");
        let audit = app.get("/api/v1/audit?limit=50").expect(200);
        let entry = audit["items"].as_array().unwrap().iter().find(|r| r["action"] == "event.create").unwrap();
        assert!(entry["actorUser"].is_number(), "{entry}");
    }

    fn editing_the_script_makes_v2_and_the_diff_between_versions_shows_the_change(backend: Backend) {
        let app = TestApp::spawn(backend);
        app.set_password("admin", PASSWORD);
        let id = app.create_event(json!({ "name": "deploy", "interpreter": "bash",
            "content": "echo build\necho <b>ship</b>\n", "secretEnv": { "KEY": "kept-secret" } }))["id"].as_i64().unwrap();
        let mut admin = app.browser().signed_in("admin", PASSWORD);
        let edit = admin.get(&format!("/events/{id}/edit"));
        assert_eq!(edit.status, 200, "{}", edit.text());
        let current = form_fields(&edit.text(), &format!("/events/{id}"));
        assert!(!edit.text().contains("kept-secret"), "write-only");

        // Saved as it is: nothing changes, no version, no audit entry.
        let audits = || app.get("/api/v1/audit?limit=500").expect(200)["total"].as_u64().unwrap();
        let before = audits();
        assert_eq!(post_fields(&mut admin, &format!("/events/{id}"), &current).status, 303);
        assert_eq!(audits(), before, "{}", app.get("/api/v1/audit?limit=1").expect(200));
        assert_eq!(app.get(&format!("/api/v1/events/{id}/payloads")).expect(200).as_array().unwrap().len(), 1);

        let changed = with(current, &[("content", "echo build\r\necho <b>ship</b> --fast\r\necho done\r\n")]);
        let saved = post_fields(&mut admin, &format!("/events/{id}"), &changed);
        assert_eq!(saved.status, 303, "{}", saved.text());
        let event = app.get(&format!("/api/v1/events/{id}")).expect(200);
        assert_eq!(event["payloadVersion"], 2);
        assert_eq!(event["secretEnvKeys"], json!(["KEY"]), "an empty secret field keeps the secrets");
        let audit = app.get("/api/v1/audit?limit=5").expect(200);
        let update = audit["items"].as_array().unwrap().iter().find(|r| r["action"] == "event.update").unwrap();
        assert_eq!(update["detail"]["fields"], json!(["content"]), "only what changed");

        // The event page offers v1 against v2; the diff shows the lines.
        let page = admin.get(&format!("/events/{id}")).text();
        assert!(page.contains(r#"<option value="1" selected>v1</option>"#), "{page}");
        assert!(page.contains(r#"<option value="2" selected>v2</option>"#), "{page}");
        let diff = admin.get(&format!("/events/{id}/diff?from=1&to=2"));
        assert_eq!(diff.status, 200, "{}", diff.text());
        let html = diff.text();
        let script = &html[html.find("<code>script.sh</code>").expect("the script's diff")..];
        let script = &script[..script.find("</section>").unwrap()];
        assert_eq!(html.matches("<section class=\"card diff-file\">").count(), 2, "the manifest and the script, once each");
        let rows: Vec<&str> = script.split("<tr class=\"").skip(1).map(|r| &r[..r.find("</tr>").unwrap()]).collect();
        assert_eq!(rows, [
            r#"ctx"><td class="n">1</td><td class="n">1</td><td class="t">echo build</td>"#,
            r#"del"><td class="n">2</td><td class="n"></td><td class="t">echo &#60;b&#62;ship&#60;/b&#62;</td>"#,
            r#"add"><td class="n"></td><td class="n">2</td><td class="t">echo &#60;b&#62;ship&#60;/b&#62; --fast</td>"#,
            r#"add"><td class="n"></td><td class="n">3</td><td class="t">echo done</td>"#,
        ]);
        assert_no_inline_code(&html, "the diff");
        let missing = admin.get(&format!("/events/{id}/diff?from=1&to=7"));
        assert_eq!(missing.status, 404);
        assert!(missing.text().contains("version 7 of this event is not kept"));
    }

    fn pause_resume_and_delete_from_the_event_page_and_a_viewer_can_do_none(backend: Backend) {
        let app = TestApp::spawn(backend);
        app.add_user("eddie", "editor", PASSWORD);
        app.add_user("watcher", "viewer", PASSWORD);
        let id = app.create_event(json!({ "name": "rotate", "interpreter": "bash", "content": "true\n",
            "schedule": { "type": "every", "every": "1h" } }))["id"].as_i64().unwrap();
        let status = || app.get(&format!("/api/v1/events/{id}")).expect(200)["status"].clone();

        let mut viewer = app.browser().signed_in("watcher", PASSWORD);
        let page = viewer.get(&format!("/events/{id}")).text();
        assert!(page.contains("rotate") && page.contains("every 1h"));
        for button in ["Edit", "Pause", "Delete", "Run now"] {
            assert!(!page.contains(&format!(">{button}")), "a viewer sees no {button}: {page}");
        }
        let csrf = common::csrf_of(&page);
        for action in ["pause", "resume", "delete", "run"] {
            let resp = viewer.post(&format!("/events/{id}/{action}"), &[("csrf", &csrf)]);
            assert_eq!(resp.status, 403, "{action}");
        }
        assert_eq!(viewer.get(&format!("/events/{id}/edit")).status, 403);
        assert_eq!(viewer.post(&format!("/events/{id}"), &[("csrf", &csrf), ("name", "renamed")]).status, 403);
        assert_eq!(status(), "active");

        let mut editor = app.browser().signed_in("eddie", PASSWORD);
        let csrf = editor.csrf(&format!("/events/{id}"));
        assert_eq!(editor.post(&format!("/events/{id}/pause"), &[("csrf", &csrf)]).status, 303);
        assert_eq!(status(), "paused");
        let page = editor.get(&format!("/events/{id}")).text();
        assert!(page.contains(">Resume<") && page.contains("No fire ahead while paused"), "{page}");
        assert_eq!(editor.post(&format!("/events/{id}/resume"), &[("csrf", &csrf)]).status, 303);
        assert_eq!(status(), "active");
        assert_eq!(fire_times(&editor.get(&format!("/events/{id}")).text(), "next-fires").len(), 5);

        let confirm = editor.get(&format!("/events/{id}/delete"));
        assert_eq!(confirm.status, 200);
        assert!(confirm.text().contains("Delete rotate?") && confirm.text().contains("1 payload version."), "{}", confirm.text());
        assert_eq!(app.get(&format!("/api/v1/events/{id}")).status, 200, "asking deletes nothing");
        let deleted = editor.post(&format!("/events/{id}/delete"), &[("csrf", &csrf)]);
        assert_eq!((deleted.status, deleted.header("location")), (303, Some("/events")));
        app.get(&format!("/api/v1/events/{id}")).expect_error(404, "not_found", None);
        let audit = app.get("/api/v1/audit?limit=50").expect(200);
        let actions: Vec<&str> = audit["items"].as_array().unwrap().iter()
            .filter(|r| r["targetType"] == "event").map(|r| r["action"].as_str().unwrap()).collect();
        assert_eq!(actions, ["event.delete", "event.update", "event.update", "event.create"], "newest first");
    }

    fn the_events_list_pages_filters_and_sorts_in_the_url(backend: Backend) {
        let app = TestApp::spawn(backend);
        app.set_password("admin", PASSWORD);
        for n in (0..55).rev() {
            app.create_event(common::script_event(&format!("task-{n:02}")));
        }
        app.create_event(json!({ "name": "Zeta backup", "interpreter": "bash", "content": "true\n",
            "status": "paused", "tags": ["db"] }));
        let mut admin = app.browser().signed_in("admin", PASSWORD);
        let names = |html: &str| -> Vec<String> {
            html.split("<td><a href=\"/events/").skip(1)
                .map(|r| r[r.find('>').unwrap() + 1..r.find("</a>").unwrap()].to_string()).collect()
        };

        let first = admin.get("/events").text();
        assert_eq!(names(&first).len(), 50);
        assert_eq!(names(&first)[0], "task-54", "oldest first");
        assert!(first.contains("1–50 of 56") && first.contains(r#"href="/events?page=2" rel="next""#), "{first}");
        let second = admin.get("/events?page=2").text();
        assert_eq!(names(&second), ["task-04", "task-03", "task-02", "task-01", "task-00", "Zeta backup"]);
        assert!(second.contains("51–56 of 56") && !second.contains("rel=\"next\""));

        let by_name = admin.get("/events?sort=name&page=2").text();
        assert_eq!(names(&by_name), ["task-50", "task-51", "task-52", "task-53", "task-54", "Zeta backup"]);
        assert!(by_name.contains(r#"href="/events?sort=name" rel="prev""#), "the order stays in the links");
        assert!(by_name.contains(r#"<option value="name" selected>"#));

        for query in ["status=paused", "tag=db", "name=ZETA", "name=zet&status=paused&tag=db"] {
            let page = admin.get(&format!("/events?{query}")).text();
            assert_eq!(names(&page), ["Zeta backup"], "{query}");
        }
        assert!(names(&admin.get("/events?name=zeta&status=active").text()).is_empty());
        let page = admin.get("/events?name=a%20b%26c&sort=updated").text();
        assert!(page.contains(r#"value="a b&#38;c""#), "the filter is shown as typed: {page}");
        for bad in ["status=bogus", "sort=bogus", "page=x"] {
            let resp = admin.get(&format!("/events?{bad}"));
            assert!([400, 422].contains(&resp.status), "{bad}: {}", resp.status);
        }
    }

    fn run_now_takes_optional_json_input_and_shows_the_job(backend: Backend) {
        let app = TestApp::spawn(backend);
        app.set_password("admin", PASSWORD);
        let id = app.create_event(json!({ "name": "with-input", "interpreter": "bash",
            "content": "echo hello\n", "overlap": "allow" }))["id"].as_i64().unwrap();
        let mut admin = app.browser().signed_in("admin", PASSWORD);
        let csrf = admin.csrf(&format!("/events/{id}"));
        let refused = admin.post(&format!("/events/{id}/run"), &[("csrf", &csrf), ("input", "{\"day\": ")]);
        assert_eq!(refused.status, 422);
        let html = refused.text();
        assert!(html.contains(r#"id="input-error" role="alert">not JSON: "#), "{html}");
        assert!(html.contains("{&#34;day&#34;: </textarea>"), "the input is kept: {html}");
        assert_eq!(app.get(&format!("/api/v1/jobs?eventId={id}")).expect(200)["total"], 0);

        let ran = admin.post(&format!("/events/{id}/run"), &[("csrf", &csrf), ("input", "{\"day\": \"monday\"}")]);
        assert_eq!(ran.status, 303, "{}", ran.text());
        let job_path = ran.header("location").unwrap().to_string();
        let job = app.get(&format!("/api/v1{job_path}")).expect(200);
        assert_eq!(job["eventId"], id);
        assert_eq!(job["metadata"]["input"], json!({ "day": "monday" }));
        // No input at all is a run without one.
        let plain = admin.post(&format!("/events/{id}/run"), &[("csrf", &csrf)]);
        assert_eq!(plain.status, 303);
        let job = app.get(&format!("/api/v1{}", plain.header("location").unwrap())).expect(200);
        assert!(job["metadata"].get("input").is_none(), "{job}");
    }

    fn the_schedule_preview_answers_the_next_five_fires_or_why_not(backend: Backend) {
        let app = TestApp::spawn(backend);
        app.set_password("admin", PASSWORD);
        let mut admin = app.browser().signed_in("admin", PASSWORD);
        let ask = |admin: &mut common::Browser<'_>, query: &str| {
            let resp = admin.get(&format!("/events/preview?{query}"));
            assert_eq!(resp.status, 200, "{query}");
            assert_protected(&resp, query);
            resp.json()
        };
        let weekdays = ask(&mut admin, "type=cron&cron=0%209%20*%20*%201-5&timezone=America/New_York");
        let fires = weekdays["fires"].as_array().unwrap();
        assert_eq!(fires.len(), 5, "{weekdays}");
        for fire in fires {
            let local = fire["local"].as_str().unwrap();
            assert!(local.contains(" 09:00:00 E") && !local.starts_with("Sat") && !local.starts_with("Sun"), "{local}");
            let utc = chrono::DateTime::parse_from_rfc3339(fire["utc"].as_str().unwrap()).unwrap();
            assert!([13, 14].contains(&chrono::Timelike::hour(&utc)), "{utc}");
        }
        let every = ask(&mut admin, "type=every&every=15m");
        let times: Vec<chrono::DateTime<chrono::FixedOffset>> = every["fires"].as_array().unwrap().iter()
            .map(|f| chrono::DateTime::parse_from_rfc3339(f["utc"].as_str().unwrap()).unwrap()).collect();
        assert_eq!(times.len(), 5);
        assert!(times.windows(2).all(|w| w[1] - w[0] == chrono::TimeDelta::minutes(15)));
        assert_eq!(ask(&mut admin, "type=manual"), json!({ "fires": [] }));
        let cases = [
            ("type=cron&cron=nope", "expected 5 (minute first)"),
            ("type=cron&cron=61%20*%20*%20*%20*", "invalid cron expression"),
            ("type=cron&cron=0%209%20*%20*%20*&timezone=Mars/Olympus", "time zone"),
            ("type=at&at=2001-01-01T00:00:00Z", "in the past"),
            ("type=every", "required"),
            ("type=weekly", "unknown schedule type"),
        ];
        for (query, expected) in cases {
            let answer = ask(&mut admin, query);
            assert_eq!(answer["fires"], json!([]), "{query}");
            assert!(answer["error"].as_str().unwrap().contains(expected), "{query}: {answer}");
        }
    }
}

both_backends! {
    fn an_admin_adds_edits_and_deletes_a_server_through_the_forms(backend: Backend) {
        let app = TestApp::spawn(backend);
        app.set_password("admin", PASSWORD);
        let mut admin = app.browser().signed_in("admin", PASSWORD);
        let new_form = admin.get("/servers/new");
        assert_eq!(new_form.status, 200);
        assert_no_inline_code(&new_form.text(), "the new server form");
        let csrf = common::csrf_of(&new_form.text());
        let secret = "a password nobody may read 7f3a";
        let typed = |host: &'static str, port: &'static str, password: &'static str| -> Form<'_> {
            vec![("csrf", csrf.as_str()), ("name", "web-1"), ("host", host), ("port", port), ("username", "deploy"), ("password", password)]
        };

        // Refused: the form comes back with what was typed, never the
        // password, and the error beside the field the API names.
        let refusals = [
            (typed("db.example.com", "99999", secret), "port", "must be a number between 1 and 65535"),
            (typed("not a host!", "2222", secret), "host", "invalid host"),
            (typed("db.example.com", "2222", ""), "privateKey", "a privateKey or a password is required"),
        ];
        for (fields, field, message) in refusals {
            let resp = admin.post("/servers/new", &fields);
            assert_eq!(resp.status, 422, "{field}: {}", resp.text());
            let html = resp.text();
            let error = html.find(&format!(r#"id="{field}-error""#)).unwrap_or_else(|| panic!("{field}: {html}"));
            assert!(html[error..].split("</p>").next().unwrap().contains(message), "{field}: {html}");
            assert_eq!(html.matches(r#"class="error""#).count(), 1, "one error, beside its field: {html}");
            for (name, value) in &fields {
                if !["password", "csrf"].contains(name) && !value.is_empty() {
                    assert!(html.contains(&format!(r#"value="{value}""#)), "{name} kept: {html}");
                }
            }
            assert!(!html.contains(secret), "the password is not shown back");
            assert_no_inline_code(&html, "a refused form");
        }
        assert_eq!(app.get("/api/v1/servers").expect(200), json!([]), "nothing saved");

        // Saved, through the API's own code: the detail page shows it.
        let made = admin.post("/servers/new", &typed("db.example.com", "2222", secret));
        let page = location(&made);
        let id: i64 = page.trim_start_matches("/servers/").parse().unwrap();
        let stored = app.get(&format!("/api/v1/servers/{id}")).expect(200);
        assert_eq!((&stored["name"], &stored["port"], &stored["authKind"]), (&json!("web-1"), &json!(2222), &json!("password")));
        assert_eq!(stored["lastCheck"], Value::Null);
        let detail = admin.get(&page);
        assert_eq!(detail.status, 200);
        let html = detail.text();
        assert_no_inline_code(&html, "the server page");
        for text in ["db.example.com:2222", "<dd>deploy</dd>", "Not pinned", "Never checked", "Check now", "a password"] {
            assert!(html.contains(text), "{text}: {html}");
        }

        // Edited: the form shows the settings and no credential; a name
        // already taken comes back beside the name; an empty password keeps
        // the stored one.
        let edit = format!("/servers/{id}/edit");
        let form = admin.get(&edit).text();
        assert!(form.contains(r#"value="web-1""#) && form.contains(r#"value="2222""#), "{form}");
        assert!(!form.contains(secret));
        app.post("/api/v1/servers", json!({ "name": "db-1", "host": "db.example.com", "username": "ops", "password": "another one" })).expect(201);
        let rename = |name: &'static str| -> Form<'_> {
            vec![("csrf", csrf.as_str()), ("name", name), ("host", "db.example.com"), ("port", "2222"), ("username", "deploy"),
                 ("password", ""), ("privateKey", ""), ("passphrase", ""), ("knownHost", ""), ("cacheDir", "")]
        };
        let taken = admin.post(&edit, &rename("db-1"));
        assert_eq!(taken.status, 422, "{}", taken.text());
        let html = taken.text();
        assert!(html.contains(r#"id="name-error""#) && html.contains(r#"value="db-1""#), "{html}");
        let saved = admin.post(&edit, &rename("web-2"));
        assert_eq!(location(&saved), page);
        let stored = app.get(&format!("/api/v1/servers/{id}")).expect(200);
        assert_eq!((&stored["name"], &stored["authKind"]), (&json!("web-2"), &json!("password")));
        let update = &audited(&app, "server.update")[0];
        assert_eq!(update["detail"]["fields"], json!(["name"]), "only what changed: {update}");
        assert!(update["actorUser"].is_number(), "{update}");
        // Saving an unchanged form writes nothing.
        location(&admin.post(&edit, &rename("web-2")));
        assert_eq!(audited(&app, "server.update").len(), 1);

        // The secret is on no page and stored only sealed.
        for path in ["/servers", page.as_str(), edit.as_str(), "/", "/audit"] {
            let resp = admin.get(path);
            assert_eq!(resp.status, 200, "{path}");
            assert!(!resp.text().contains(secret), "{path} shows the password");
        }
        assert!(!contains(&database_bytes(&app), secret.as_bytes()));

        // Deleted after a confirmation page.
        let confirm = admin.get(&format!("/servers/{id}/delete"));
        assert_eq!(confirm.status, 200);
        assert!(confirm.text().contains("Delete server web-2?"), "{}", confirm.text());
        app.get(&format!("/api/v1/servers/{id}")).expect(200);
        let gone = admin.post(&format!("/servers/{id}/delete"), &[("csrf", &csrf)]);
        assert_eq!(location(&gone), "/servers");
        app.get(&format!("/api/v1/servers/{id}")).expect_error(404, "not_found", None);
        assert!(!admin.get("/servers").text().contains("web-2"));
        for action in ["server.create", "server.update", "server.delete"] {
            let entries = audited(&app, action);
            assert!(entries.iter().any(|e| e["actorUser"].is_number()), "{action}: {entries:?}");
        }

        // A viewer sees the servers but no button, and may not add one.
        app.add_user("watcher", "viewer", PASSWORD);
        let mut viewer = app.browser().signed_in("watcher", PASSWORD);
        let list = viewer.get("/servers").text();
        assert!(list.contains("db-1") && !list.contains("Add a server"), "{list}");
        let other = app.get("/api/v1/servers").expect(200)[0]["id"].as_i64().unwrap();
        let detail = viewer.get(&format!("/servers/{other}")).text();
        assert!(!detail.contains("Check now") && !detail.contains("/edit"), "{detail}");
        let csrf = common::csrf_of(&list);
        let resp = viewer.post("/servers/new", &[("csrf", &csrf), ("name", "sneaky"), ("host", "db.example.com"), ("username", "x"), ("password", secret)]);
        assert_eq!(resp.status, 403);
        assert_eq!(app.get("/api/v1/servers").expect(200).as_array().unwrap().len(), 1);
    }

    fn check_now_pins_the_host_key_and_the_server_page_shows_its_fingerprint(backend: Backend) {
        use cronium_ssh::testing::TestSshd;
        let app = TestApp::spawn(backend);
        app.set_password("admin", PASSWORD);
        let mut sshd = TestSshd::start(1);
        let user = sshd.user(0).clone();
        let mut admin = app.browser().signed_in("admin", PASSWORD);
        let csrf = admin.csrf("/servers/new");
        let port = sshd.port().to_string();
        // A browser sends a textarea's lines with CRLF.
        let key = user.key.private.replace('\n', "\r\n");
        let made = admin.post("/servers/new", &[
            ("csrf", &csrf), ("name", "ssh-1"), ("host", sshd.host()), ("port", &port),
            ("username", &user.name), ("privateKey", &key),
        ]);
        let page = location(&made);
        assert!(admin.get(&page).text().contains("Not pinned"));

        let checked = admin.post(&format!("{page}/check"), &[("csrf", &csrf)]);
        assert_eq!(location(&checked), page);
        let html = admin.get(&page).text();
        assert_no_inline_code(&html, "the checked server's page");
        // The fingerprint as `ssh-keygen -lf` prints it for the host key.
        let fingerprint = sshd.host_key_fingerprint();
        assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");
        assert!(html.contains(&format!(r#"<code class="fingerprint">{fingerprint}</code>"#)), "{html}");
        assert!(html.contains(r#"<span class="check ok">ok</span>"#), "{html}");
        assert!(html.contains("bash ") && html.contains("runner not deployed yet"), "{html}");
        let id = page.trim_start_matches("/servers/");
        let stored = app.get(&format!("/api/v1/servers/{id}")).expect(200);
        assert_eq!(stored["hostKeyFingerprint"], fingerprint.as_str());
        assert_eq!(stored["lastCheck"]["ok"], true, "{stored}");
        assert_eq!(stored["lastCheck"]["fingerprint"], fingerprint.as_str());
        let pins = audited(&app, "server.pin");
        assert_eq!(pins.len(), 1);
        assert!(pins[0]["actorUser"].is_number(), "{pins:?}");
        let list = admin.get("/servers").text();
        assert!(list.contains("pinned") && list.contains(r#"<span class="check ok">ok</span>"#), "{list}");
        assert!(admin.get("/").text().contains(r#"<span class="check ok">ok</span>"#));

        // Another key: the check fails and says why; the pin stays.
        sshd.replace_host_key();
        let shown = sshd.host_key_fingerprint();
        location(&admin.post(&format!("{page}/check"), &[("csrf", &csrf)]));
        let html = admin.get(&page).text();
        assert!(html.contains(r#"<span class="check failed">failed</span>"#), "{html}");
        assert!(html.contains("host key: ") && html.contains(&shown), "{html}");
        assert!(html.contains(&format!(r#"<code class="fingerprint">{fingerprint}</code>"#)), "the pin is kept");
        assert_eq!(app.get(&format!("/api/v1/servers/{id}")).expect(200)["lastCheck"]["ok"], false);

        // The key is never shown.
        for path in [page.as_str(), "/servers", &format!("{page}/edit")] {
            let text = admin.get(path).text();
            assert!(!text.contains("PRIVATE KEY"), "{path}");
            for line in user.key.private.lines().filter(|l| !l.starts_with("-----")) {
                assert!(!text.contains(line), "{path} shows the key");
            }
        }
    }

    fn the_dashboard_offers_cancel_to_editors_only_and_shows_failures_fires_and_servers(backend: Backend) {
        let app = TestApp::spawn(backend);
        app.add_user("eddie", "editor", PASSWORD);
        app.add_user("watcher", "viewer", PASSWORD);
        let breaks = app.create_event(json!({ "name": "breaks", "interpreter": "bash", "content": "exit 3\n" }));
        let failed = common::run_to_end(&app, breaks["id"].as_i64().unwrap());
        assert_eq!(failed["status"], "failed");
        app.create_event(json!({ "name": "hourly", "interpreter": "bash", "content": "echo hi\n",
                                 "schedule": { "type": "every", "every": "1h" } }));
        app.post("/api/v1/servers", json!({ "name": "never-checked", "host": "db.example.com", "username": "ops", "password": "pw" })).expect(201);
        let sleeper = app.create_event(json!({ "name": "sleeper", "interpreter": "bash", "content": "sleep 60\n" }));
        let job = app.post(&format!("/api/v1/events/{}/run", sleeper["id"]), json!({})).expect(201)["id"].as_i64().unwrap();
        let status = || app.get(&format!("/api/v1/jobs/{job}")).expect(200);
        common::wait_for("the job to run", Duration::from_secs(30), || (status()["status"] == "running").then_some(()));
        let cancel = format!("/jobs/{job}/cancel");

        // A viewer sees everything but the Cancel button, and may not press it.
        let mut viewer = app.browser().signed_in("watcher", PASSWORD);
        let html = viewer.get("/").text();
        assert_no_inline_code(&html, "the dashboard");
        let section = |html: &str, id: &str| -> String {
            let start = html.find(&format!(r#"id="{id}""#)).unwrap_or_else(|| panic!("{id}: {html}"));
            html[start..].split("</section>").next().unwrap().to_string()
        };
        let running = section(&html, "running");
        assert!(running.contains("sleeper") && running.contains(&format!(r#"href="/jobs/{job}""#)), "{running}");
        assert!(!html.contains(&cancel) && !html.contains(">Cancel<"), "no Cancel for a viewer: {html}");
        let failures = section(&html, "failures");
        assert!(failures.contains("breaks") && failures.contains(&format!(r#"href="/jobs/{}""#, failed["id"])), "{failures}");
        assert!(section(&html, "next-fires").contains(">hourly</a>"), "{html}");
        assert!(section(&html, "next-fires").contains("in 59m") || section(&html, "next-fires").contains("in 1h"), "{html}");
        assert!(section(&html, "servers").contains("never-checked"), "{html}");
        let csrf = common::csrf_of(&html);
        let refused = viewer.post(&cancel, &[("csrf", &csrf)]);
        assert_eq!(refused.status, 403, "{}", refused.text());
        let still = status();
        assert_eq!((&still["status"], &still["cancelRequested"]), (&json!("running"), &json!(false)));
        assert!(audited(&app, "job.cancel").is_empty());

        // An editor cancels it from the dashboard.
        let mut editor = app.browser().signed_in("eddie", PASSWORD);
        let html = editor.get("/").text();
        assert!(section(&html, "running").contains(&format!(r#"action="{cancel}""#)), "{html}");
        let csrf = common::csrf_of(&html);
        assert_eq!(location(&editor.post(&cancel, &[("csrf", &csrf)])), "/");
        common::wait_for("the job to be cancelled", Duration::from_secs(30), || (status()["status"] == "cancelled").then_some(()));
        let entries = audited(&app, "job.cancel");
        assert_eq!(entries.len(), 1);
        assert!(entries[0]["actorUser"].is_number(), "{entries:?}");
        assert!(!section(&editor.get("/").text(), "running").contains("sleeper"));
        // A finished job cannot be cancelled again.
        assert_eq!(editor.post(&cancel, &[("csrf", &csrf)]).status, 409);
    }
}

both_backends! {
    fn a_user_changes_their_own_password_and_stays_signed_in_here_only(backend: Backend) {
        let app = TestApp::spawn(backend);
        app.add_user("dana", "editor", PASSWORD);
        let dana_id = user_id(&app, "dana");
        let mut here = app.browser().signed_in("dana", PASSWORD);
        let mut elsewhere = app.browser().signed_in("dana", PASSWORD);
        let page = here.get("/settings");
        assert!(page.text().contains("Change password"), "{}", page.text());
        assert!(!page.text().contains("Add a user"), "no user admin for an editor");
        let csrf = common::csrf_of(&page.text());
        let new = "a brand new passphrase";

        // Refusals: 422, the reason beside its field, no password echoed.
        let cases: [(&str, &str, &str, &str); 3] = [
            ("not my password", new, new, "wrong password"),
            (PASSWORD, new, "a brand new passphrasf", "does not match the new password"),
            (PASSWORD, "too short", "too short", "at least 12 characters"),
        ];
        for (current, typed, confirm, why) in cases {
            let resp = here.post("/settings/password", &[("csrf", &csrf), ("current", current), ("new", typed), ("confirm", confirm)]);
            assert_eq!(resp.status, 422, "{why}");
            let html = resp.text();
            assert!(html.contains(why), "{why}: {html}");
            for secret in [current, typed, confirm] {
                assert!(!html.contains(&format!("value=\"{secret}\"")), "{secret} echoed");
            }
            assert_no_inline_code(&html, why);
        }
        assert_eq!(elsewhere.get("/").status, 200, "nothing changed yet");

        // Done: this browser carries on under a new cookie, the other is out.
        let old_cookie = here.cookie.clone().unwrap();
        let resp = here.post("/settings/password", &[("csrf", &csrf), ("current", PASSWORD), ("new", new), ("confirm", new)]);
        assert_eq!(resp.status, 200, "{}", resp.text());
        assert!(resp.text().contains("Password changed"));
        assert_ne!(here.cookie.as_deref(), Some(old_cookie.as_str()), "a new session secret");
        assert_eq!(here.get("/settings").status, 200, "still signed in here");
        assert_eq!(common::csrf_of(&here.get("/settings").text()), csrf, "open forms keep working");
        assert_eq!(elsewhere.get("/").status, 303, "signed out elsewhere");
        let mut replay = app.browser();
        replay.cookie = Some(old_cookie);
        assert_eq!(replay.get("/").status, 303, "the old cookie opens nothing");
        assert_eq!(app.browser().login("dana", PASSWORD, "/").status, 401);
        assert_eq!(app.browser().login("dana", new, "/").status, 303);

        // Audited as the user's own, without the value.
        let entries = audited(&app, "user.password");
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0]["actorUser"], json!(dana_id));
        assert_eq!(entries[0]["detail"]["name"], "dana");
        let audit = app.get("/api/v1/audit?limit=500").expect(200).to_string();
        assert!(!audit.contains(new) && !audit.contains(PASSWORD), "no password in the audit log");

        // Wrong current passwords count like failed sign-ins.
        let csrf = here.csrf("/settings");
        for _ in 0..5 {
            let resp = here.post("/settings/password", &[("csrf", &csrf), ("current", "guess guess guess"), ("new", PASSWORD), ("confirm", PASSWORD)]);
            assert_eq!(resp.status, 422);
        }
        let resp = here.post("/settings/password", &[("csrf", &csrf), ("current", new), ("new", PASSWORD), ("confirm", PASSWORD)]);
        assert_eq!(resp.status, 429, "{}", resp.text());
        assert!(resp.header("retry-after").is_some());
        assert_eq!(app.browser().login("dana", new, "/").status, 429, "and block signing in");
        app.config.clock.advance(Duration::from_secs(16 * 60));
        assert_eq!(app.browser().login("dana", new, "/").status, 303);
    }

    fn an_admin_adds_changes_and_removes_users_on_the_settings_page(backend: Backend) {
        let app = TestApp::spawn(backend);
        app.set_password("admin", PASSWORD);
        let admin_id = user_id(&app, "admin");
        let mut admin = app.browser().signed_in("admin", PASSWORD);
        let page = admin.get("/settings");
        let html = page.text();
        assert!(html.contains("Add a user") && html.contains("admin (you)"), "{html}");
        assert_no_inline_code(&html, "the settings page");
        let csrf = common::csrf_of(&html);

        // Refused additions keep the name and role, never the password.
        let resp = admin.post("/settings/users", &[("csrf", &csrf), ("name", "erin"), ("role", "editor"), ("password", "short")]);
        assert_eq!(resp.status, 422);
        let html = resp.text();
        assert!(html.contains("at least 12 characters"), "{html}");
        assert!(html.contains(r#"value="erin""#) && html.contains("<option selected>editor</option>"), "{html}");
        assert!(!html.contains("value=\"short\""));
        let resp = admin.post("/settings/users", &[("csrf", &csrf), ("name", "bad name!"), ("role", "viewer"), ("password", PASSWORD)]);
        assert_eq!(resp.status, 422);
        assert!(resp.text().contains(r#"value="bad name!""#), "{}", resp.text());
        let resp = admin.post("/settings/users", &[("csrf", &csrf), ("name", "erin"), ("role", "root"), ("password", PASSWORD)]);
        assert_eq!(resp.status, 422);
        assert!(resp.text().contains("unknown role"));
        assert_eq!(role_of(&app, "erin"), None);

        // Added: listed, and can sign in with the role given.
        let resp = admin.post("/settings/users", &[("csrf", &csrf), ("name", "erin"), ("role", "admin"), ("password", PASSWORD)]);
        assert_eq!(resp.status, 303, "{}", resp.text());
        assert_eq!(resp.header("location"), Some("/settings#users"));
        assert!(admin.get("/settings").text().contains("erin"));
        assert_eq!(role_of(&app, "erin").as_deref(), Some("admin"));
        let resp = admin.post("/settings/users", &[("csrf", &csrf), ("name", "erin"), ("role", "viewer"), ("password", PASSWORD)]);
        assert_eq!(resp.status, 422, "a taken name");
        let erin_id = user_id(&app, "erin");
        let mut erin = app.browser().signed_in("erin", PASSWORD);
        // An admin token of erin's, to see it go when erin stops being admin.
        let erin_csrf = erin.csrf("/settings");
        let made = erin.post("/settings/tokens", &[("csrf", &erin_csrf), ("name", "erin's"), ("role", "admin")]);
        assert_eq!(made.status, 200, "{}", made.text());
        let html = made.text();
        let start = html.find("<code class=\"secret\">").unwrap() + 21;
        let secret = html[start..].split('<').next().unwrap().to_string();
        let bearer = format!("Bearer {secret}");
        app.send("GET", "/api/v1/tokens", None, &[("authorization", &bearer)], None).expect(200);

        // A new role: the sessions have it at once; stronger tokens are revoked.
        let resp = admin.post(&format!("/settings/users/{erin_id}/role"), &[("csrf", &csrf), ("role", "viewer")]);
        assert_eq!(resp.status, 303, "{}", resp.text());
        assert_eq!(role_of(&app, "erin").as_deref(), Some("viewer"));
        assert_eq!(erin.get("/audit").status, 403, "the session is a viewer's now");
        app.send("GET", "/api/v1/events", None, &[("authorization", &bearer)], None)
            .expect_error(401, "unauthorized", None);
        let resp = admin.post(&format!("/settings/users/{erin_id}/role"), &[("csrf", &csrf), ("role", "boss")]);
        assert_eq!(resp.status, 422);
        assert!(resp.text().contains("erin: unknown role"), "{}", resp.text());

        // Not yourself, and never the last admin.
        let resp = admin.post(&format!("/settings/users/{admin_id}/remove"), &[("csrf", &csrf)]);
        assert_eq!(resp.status, 422);
        assert!(resp.text().contains("you cannot remove yourself"), "{}", resp.text());
        let resp = admin.post(&format!("/settings/users/{admin_id}/role"), &[("csrf", &csrf), ("role", "editor")]);
        assert_eq!(resp.status, 422);
        assert!(resp.text().contains("last admin"), "{}", resp.text());
        assert_eq!(role_of(&app, "admin").as_deref(), Some("admin"));
        assert_eq!(admin.post("/settings/users/999999/remove", &[("csrf", &csrf)]).status, 404);

        // A viewer sees no user admin and may not use it.
        let page = erin.get("/settings").text();
        assert!(!page.contains("Add a user") && !page.contains("/settings/users/"), "{page}");
        for (path, fields) in [
            ("/settings/users".to_string(), vec![("name", "mallory"), ("role", "admin"), ("password", PASSWORD)]),
            (format!("/settings/users/{admin_id}/role"), vec![("role", "viewer")]),
            (format!("/settings/users/{admin_id}/remove"), vec![]),
        ] {
            let mut form = vec![("csrf", erin_csrf.as_str())];
            form.extend(fields);
            assert_eq!(erin.post(&path, &form).status, 403, "{path}");
        }
        assert_eq!(role_of(&app, "mallory"), None);
        assert_eq!(role_of(&app, "admin").as_deref(), Some("admin"));

        // Removed: gone, signed out.
        let resp = admin.post(&format!("/settings/users/{erin_id}/remove"), &[("csrf", &csrf)]);
        assert_eq!(resp.status, 303, "{}", resp.text());
        assert_eq!(role_of(&app, "erin"), None);
        assert_eq!(erin.get("/").status, 303);

        // Each change audited with the admin as actor, no password in it.
        for action in ["user.create", "user.role", "user.delete"] {
            let entries = audited(&app, action);
            let entry = entries.iter().find(|e| e["actorUser"] == json!(admin_id));
            let entry = entry.unwrap_or_else(|| panic!("{action}: {entries:?}"));
            assert_eq!(entry["detail"]["name"], "erin", "{action}");
            assert_eq!(entry["detail"]["via"], "settings page", "{action}");
        }
        let role = &audited(&app, "user.role")[0];
        assert_eq!(role["detail"]["from"], "admin");
        assert_eq!(role["detail"]["role"], "viewer");
        assert_eq!(role["detail"]["tokensRevoked"], 1);
        assert!(!app.get("/api/v1/audit?limit=500").expect(200).to_string().contains(PASSWORD));
    }
}

both_backends! {
    fn an_http_event_is_made_and_edited_from_its_form_with_write_only_secret_headers(backend: Backend) {
        let app = TestApp::spawn_with(backend, |c| {
            c.http_allow = vec![cronium_exec::Allow::parse("127.0.0.1/32").unwrap()];
        });
        app.set_password("admin", PASSWORD);
        let mut admin = app.browser().signed_in("admin", PASSWORD);
        let page = admin.get("/events/new?kind=http");
        assert_eq!(page.status, 200);
        assert!(page.text().contains("New HTTP event"));
        let blank = form_fields(&page.text(), "/events");
        assert!(!blank.iter().any(|(k, _)| k == "content"), "no script for a request");
        let typed = with(blank, &[
            ("name", "ping ops"),
            ("http.method", "POST"),
            ("http.url", "http://10.1.2.3/hook"),
            ("http.headers", "X-Team: ops\r\n"),
            ("http.secretHeaders", "Authorization: Bearer top-secret-77"),
            ("http.body", "{\"hello\": 1}"),
            ("http.expectStatus", "200, 204"),
        ]);

        // A private address is refused beside the URL, as the API refuses it.
        let refused = post_fields(&mut admin, "/events", &typed);
        assert_eq!(refused.status, 422, "{}", refused.text());
        let html = refused.text();
        assert!(html.contains(r#"data-field="http.url">"#), "{html}");
        assert!(html.contains(r#"value="http://10.1.2.3/hook""#) && !html.contains("top-secret-77"));

        let saved = post_fields(&mut admin, "/events", &with(typed, &[("http.url", "http://127.0.0.1:9/hook")]));
        assert_eq!(saved.status, 303, "{}", saved.text());
        let path = saved.header("location").unwrap().to_string();
        let event = app.get(&format!("/api/v1{path}")).expect(200);
        assert_eq!(event["kind"], "http");
        assert_eq!(event["http"]["method"], "POST");
        assert_eq!(event["http"]["headers"], json!({ "X-Team": "ops" }));
        assert_eq!(event["http"]["secretHeaderNames"], json!(["Authorization"]));
        assert_eq!(event["http"]["expectStatus"], json!([200, 204]));
        assert!(!contains(&database_bytes(&app), b"top-secret-77"), "sealed at rest");

        // Its edit form shows the request but never the secret; saved as it
        // is, nothing changes; a new body changes only the request.
        let edit = admin.get(&format!("{path}/edit"));
        assert!(!edit.text().contains("top-secret-77") && edit.text().contains("set: Authorization"), "{}", edit.text());
        let current = form_fields(&edit.text(), &path);
        let before = app.get("/api/v1/audit?limit=1").expect(200)["total"].clone();
        assert_eq!(post_fields(&mut admin, &path, &current).status, 303);
        assert_eq!(app.get("/api/v1/audit?limit=1").expect(200)["total"], before);
        assert_eq!(post_fields(&mut admin, &path, &with(current, &[("http.body", "{}")])).status, 303);
        let event = app.get(&format!("/api/v1{path}")).expect(200);
        assert_eq!(event["http"]["body"], "{}");
        assert_eq!(event["http"]["secretHeaderNames"], json!(["Authorization"]), "kept");
        assert_eq!(audited(&app, "event.update")[0]["detail"]["fields"], json!(["http"]));
    }
}

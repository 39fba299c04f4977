//! Authentication and roles, on SQLite and PostgreSQL: every documented API route is tried without a token and with a too-weak one, every web UI route without a session and with a too-weak user's.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Backend, TestApp};
use serde_json::{Value, json};

/// Who may call what, written down here and not read from the server: a
/// handler whose role is lowered together with its documentation (an
/// editor minting admin tokens) must fail this test. `None`: public.
const ROLES: &[(&str, &str, Option<&str>)] = &[
    ("GET", "/healthz", None),
    ("GET", "/metrics", Some("viewer")),
    ("GET", "/api/v1/openapi.json", None),
    ("GET", "/api/v1/events", Some("viewer")),
    ("POST", "/api/v1/events", Some("editor")),
    ("GET", "/api/v1/events/{id}", Some("viewer")),
    ("PATCH", "/api/v1/events/{id}", Some("editor")),
    ("DELETE", "/api/v1/events/{id}", Some("editor")),
    ("GET", "/api/v1/events/{id}/payloads", Some("viewer")),
    (
        "GET",
        "/api/v1/events/{id}/payloads/{version}",
        Some("viewer"),
    ),
    ("POST", "/api/v1/events/{id}/run", Some("editor")),
    ("GET", "/api/v1/events/{id}/actions", Some("viewer")),
    ("POST", "/api/v1/events/{id}/actions", Some("editor")),
    (
        "DELETE",
        "/api/v1/events/{id}/actions/{actionId}",
        Some("editor"),
    ),
    ("GET", "/api/v1/jobs", Some("viewer")),
    ("GET", "/api/v1/jobs/{id}", Some("viewer")),
    ("POST", "/api/v1/jobs/{id}/cancel", Some("editor")),
    ("GET", "/api/v1/jobs/{id}/logs", Some("viewer")),
    ("GET", "/api/v1/jobs/{id}/deliveries", Some("viewer")),
    ("GET", "/api/v1/servers", Some("viewer")),
    ("POST", "/api/v1/servers", Some("admin")),
    ("GET", "/api/v1/servers/{id}", Some("viewer")),
    ("PATCH", "/api/v1/servers/{id}", Some("admin")),
    ("DELETE", "/api/v1/servers/{id}", Some("admin")),
    ("POST", "/api/v1/servers/{id}/check", Some("admin")),
    ("GET", "/api/v1/channels", Some("viewer")),
    ("POST", "/api/v1/channels", Some("admin")),
    ("GET", "/api/v1/channels/{id}", Some("viewer")),
    ("DELETE", "/api/v1/channels/{id}", Some("admin")),
    ("POST", "/api/v1/channels/{id}/test", Some("admin")),
    ("GET", "/api/v1/tokens", Some("admin")),
    ("POST", "/api/v1/tokens", Some("admin")),
    ("DELETE", "/api/v1/tokens/{id}", Some("admin")),
    ("GET", "/api/v1/variables", Some("viewer")),
    ("GET", "/api/v1/variables/{key}", Some("viewer")),
    ("PUT", "/api/v1/variables/{key}", Some("editor")),
    ("DELETE", "/api/v1/variables/{key}", Some("editor")),
    ("GET", "/api/v1/workflows", Some("viewer")),
    ("POST", "/api/v1/workflows", Some("editor")),
    ("GET", "/api/v1/workflows/{id}", Some("viewer")),
    ("DELETE", "/api/v1/workflows/{id}", Some("editor")),
    ("POST", "/api/v1/workflows/{id}/run", Some("editor")),
    ("POST", "/api/v1/workflows/{id}/hook", Some("editor")),
    // The key in the path is the credential.
    ("POST", "/hooks/workflows/{key}", None),
    ("GET", "/api/v1/workflow-runs", Some("viewer")),
    ("GET", "/api/v1/workflow-runs/{id}", Some("viewer")),
    ("GET", "/api/v1/nodes", Some("viewer")),
    ("POST", "/api/v1/workflow-runs/{id}/cancel", Some("editor")),
    ("POST", "/api/v1/workflow-runs/{id}/retry", Some("editor")),
    ("GET", "/api/v1/audit", Some("admin")),
];

/// The web UI's routes and who may use them, by session (a cookie, never a
/// token): without a session a page sends the browser to sign in and a form
/// is refused; a user with a weaker role gets 403. `None`: public.
const PAGES: &[(&str, &str, Option<&str>)] = &[
    ("GET", "/login", None),
    ("POST", "/login", None),
    ("POST", "/logout", Some("viewer")),
    ("GET", "/", Some("viewer")),
    ("GET", "/events", Some("viewer")),
    ("POST", "/events", Some("editor")),
    ("GET", "/events/new", Some("editor")),
    ("GET", "/events/preview", Some("viewer")),
    ("GET", "/events/{id}", Some("viewer")),
    ("POST", "/events/{id}", Some("editor")),
    ("GET", "/events/{id}/edit", Some("editor")),
    ("GET", "/events/{id}/diff", Some("viewer")),
    ("POST", "/events/{id}/run", Some("editor")),
    ("POST", "/events/{id}/pause", Some("editor")),
    ("POST", "/events/{id}/resume", Some("editor")),
    ("GET", "/events/{id}/delete", Some("editor")),
    ("POST", "/events/{id}/delete", Some("editor")),
    ("GET", "/jobs", Some("viewer")),
    ("GET", "/jobs/{id}", Some("viewer")),
    ("GET", "/jobs/{id}/live", Some("viewer")),
    ("GET", "/jobs/{id}/lines", Some("viewer")),
    ("GET", "/jobs/{id}/log.txt", Some("viewer")),
    ("POST", "/jobs/{id}/cancel", Some("editor")),
    ("GET", "/workflows", Some("viewer")),
    ("GET", "/workflows/{id}", Some("viewer")),
    ("POST", "/workflows/{id}/run", Some("editor")),
    ("GET", "/workflow-runs/{id}", Some("viewer")),
    ("POST", "/workflow-runs/{id}/cancel", Some("editor")),
    ("POST", "/workflow-runs/{id}/retry", Some("editor")),
    ("GET", "/servers", Some("viewer")),
    ("GET", "/servers/new", Some("admin")),
    ("POST", "/servers/new", Some("admin")),
    ("GET", "/servers/{id}", Some("viewer")),
    ("POST", "/servers/{id}/check", Some("admin")),
    ("GET", "/servers/{id}/edit", Some("admin")),
    ("POST", "/servers/{id}/edit", Some("admin")),
    ("GET", "/servers/{id}/delete", Some("admin")),
    ("POST", "/servers/{id}/delete", Some("admin")),
    ("GET", "/variables", Some("viewer")),
    ("POST", "/variables", Some("editor")),
    ("POST", "/variables/{key}/delete", Some("editor")),
    ("GET", "/audit", Some("admin")),
    ("GET", "/settings", Some("viewer")),
    ("POST", "/settings/password", Some("viewer")),
    ("POST", "/settings/tokens", Some("admin")),
    ("POST", "/settings/tokens/{id}/revoke", Some("admin")),
    ("POST", "/settings/users", Some("admin")),
    ("POST", "/settings/users/{id}/role", Some("admin")),
    ("POST", "/settings/users/{id}/remove", Some("admin")),
    ("GET", "/static/{build}/{file}", None),
];

const PASSWORD: &str = "a password long enough";

/// Every (method, path, role) the OpenAPI document lists, sorted.
fn documented(app: &TestApp) -> Vec<(String, String, Option<String>)> {
    let doc = app
        .send("GET", "/api/v1/openapi.json", None, &[], None)
        .expect(200);
    let mut ops = Vec::new();
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for (method, op) in methods.as_object().unwrap() {
            let role = op["x-cronium-role"].as_str().map(String::from);
            ops.push((method.to_uppercase(), path.clone(), role));
        }
    }
    ops.sort();
    ops
}

/// The table's operations, path ids filled in with ids that exist nowhere:
/// no operation here may change anything.
fn operations() -> Vec<(String, String, Option<&'static str>)> {
    ROLES
        .iter()
        .map(|(method, path, role)| {
            let concrete = path
                .replace("{id}", "999999")
                .replace("{version}", "1")
                .replace("{actionId}", "999999")
                .replace("{key}", "k999999");
            (method.to_string(), concrete, *role)
        })
        .collect()
}

fn body_for(method: &str) -> Option<Vec<u8>> {
    matches!(method, "POST" | "PATCH" | "PUT").then(|| b"{}".to_vec())
}

both_backends! {
    fn every_route_checks_its_role(backend: Backend) {
        let app = TestApp::spawn(backend);
        let viewer = app.token("viewer");
        let editor = app.token("editor");
        let mut expected: Vec<(String, String, Option<String>)> = ROLES
            .iter()
            .map(|(m, p, r)| (m.to_string(), p.to_string(), r.map(String::from)))
            .collect();
        expected.sort();
        assert_eq!(documented(&app), expected, "the document's roles differ from this table");
        for (method, path, role) in &operations() {
            let json = [("content-type", "application/json")];
            let anonymous = app.send(method, path, None, &json, body_for(method));
            match role {
                // A webhook's key is its credential: a key no workflow has
                // finds nothing, with or without a token.
                None if path.starts_with("/hooks/") => {
                    anonymous.expect_error(404, "not_found", None);
                }
                None => assert_eq!(anonymous.status, 200, "{method} {path} is public"),
                Some(_) => {
                    anonymous.expect_error(401, "unauthorized", None);
                    assert_eq!(anonymous.header("www-authenticate"), Some("Bearer"));
                }
            }
            let weaker = match role {
                Some("editor") => Some(&viewer),
                Some("admin") => Some(&editor),
                _ => None,
            };
            if let Some(token) = weaker {
                app.send(method, path, Some(token), &json, body_for(method))
                    .expect_error(403, "forbidden", None);
            }
            // With the right role the route is found (whatever else happens).
            let admin = app.send(method, path, Some(&app.admin_token), &json, body_for(method));
            assert!(![401, 403, 405].contains(&admin.status), "{method} {path}: {}", admin.status);
        }
    }

    fn every_page_checks_its_role_by_session(backend: Backend) {
        let app = TestApp::spawn(backend);
        let mut routed: Vec<(String, String)> = cronium_server::ui::route_table()
            .into_iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        routed.sort();
        let mut listed: Vec<(String, String)> = PAGES.iter().map(|(m, p, _)| (m.to_string(), p.to_string())).collect();
        listed.sort();
        assert_eq!(routed, listed, "the UI's routes differ from this table");
        app.set_password("admin", PASSWORD);
        app.add_user("editor1", "editor", PASSWORD);
        app.add_user("viewer1", "viewer", PASSWORD);
        for (method, path, role) in PAGES {
            let path = path
                .replace("{id}", "999999")
                .replace("{key}", "k999999")
                .replace("{build}", cronium_server::ui::assets::build_id())
                .replace("{file}", "style.css");
            let what = format!("{method} {path}");
            let send = |browser: &mut common::Browser<'_>, csrf: Option<&str>| match *method {
                "GET" => browser.get(&path),
                _ => browser.post(&path, &csrf.map(|c| vec![("csrf", c)]).unwrap_or_default()),
            };
            let anonymous = send(&mut app.browser(), None);
            match (role, *method) {
                (None, "GET") => assert_eq!(anonymous.status, 200, "{what} is public"),
                // An empty sign-in form: no name, no password.
                (None, _) => assert_eq!(anonymous.status, 401, "{what}"),
                (Some(_), "GET") => {
                    assert_eq!(anonymous.status, 303, "{what}");
                    assert!(anonymous.header("location").unwrap().starts_with("/login?next="), "{what}");
                }
                (Some(_), _) => assert_eq!(anonymous.status, 403, "{what}"),
            }
            let weaker = match role {
                Some("editor") => Some("viewer1"),
                Some("admin") => Some("editor1"),
                _ => None,
            };
            if let Some(name) = weaker {
                let mut browser = app.browser().signed_in(name, PASSWORD);
                let csrf = browser.csrf("/");
                assert_eq!(send(&mut browser, Some(&csrf)).status, 403, "{what} as {name}");
            }
            if role.is_none() {
                continue;
            }
            // With the right role the route is found (whatever else happens).
            let mut admin = app.browser().signed_in("admin", PASSWORD);
            let csrf = admin.csrf("/");
            let status = send(&mut admin, Some(&csrf)).status;
            assert!(![401, 403, 405].contains(&status), "{what}: {status}");
        }
    }

    fn bad_tokens_are_refused(backend: Backend) {
        let app = TestApp::spawn(backend);
        let good = app.token("viewer");
        let cases: [(&str, &[(&str, &str)]); 6] = [
            ("no header", &[]),
            ("not bearer", &[("authorization", "Basic YWRtaW46YWRtaW4=")]),
            ("empty bearer", &[("authorization", "Bearer ")]),
            ("malformed", &[("authorization", "Bearer not-a-token")]),
            (
                "unknown",
                &[("authorization", "Bearer crn_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")],
            ),
            ("no scheme", &[("authorization", "crn_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")]),
        ];
        for (what, headers) in cases {
            let resp = app.send("GET", "/api/v1/events", None, headers, None);
            assert_eq!(resp.status, 401, "{what}: {}", resp.text());
            assert_eq!(resp.json()["error"]["code"], "unauthorized", "{what}");
        }
        let bearer = format!("bearer {good}");
        app.send("GET", "/api/v1/events", None, &[("authorization", &bearer)], None).expect(200);
    }

    // Regression: a request refused before its body was read left the body
    // unread, hyper closed the connection, and the client's next request on
    // that kept-alive connection failed with "Peer disconnected".
    fn a_body_refused_unread_closes_the_connection_openly(backend: Backend) {
        let app = TestApp::spawn(backend);
        let viewer = app.token("viewer");
        let body = Some(serde_json::to_vec(&common::script_event("x")).unwrap());
        let json = [("content-type", "application/json")];
        let refused = [
            app.send("POST", "/api/v1/events", None, &json, body.clone()),
            app.send("POST", "/api/v1/events", Some(&viewer), &json, body.clone()),
            app.send("POST", "/api/v1/nowhere", Some(&app.admin_token), &json, body.clone()),
        ];
        for resp in refused {
            assert!(resp.status >= 400, "{}", resp.text());
            assert_eq!(resp.header("connection"), Some("close"), "{}", resp.status);
        }
        // Without a body there is nothing left unread: the connection stays.
        let resp = app.send("GET", "/api/v1/events", None, &[], None);
        assert_eq!(resp.status, 401);
        assert_eq!(resp.header("connection"), None);
        // And the same client carries on.
        app.send("GET", "/api/v1/events", Some(&viewer), &[], None).expect(200);
    }

    fn tokens_are_shown_once_and_revocable(backend: Backend) {
        let app = TestApp::spawn(backend);
        let created = app.post("/api/v1/tokens", json!({ "name": "ci", "role": "editor" })).expect(201);
        let secret = created["token"].as_str().unwrap().to_string();
        assert!(secret.starts_with("crn_") && secret.len() == 47, "{secret}");
        assert_eq!(created["role"], "editor");
        let id = &created["id"];

        // Listed without secrets.
        let list = app.get("/api/v1/tokens").expect(200);
        assert!(!list.to_string().contains(&secret));
        let listed = list.as_array().unwrap().iter().find(|t| &t["id"] == id).unwrap();
        assert_eq!(listed["name"], "ci");
        assert_eq!(listed["revokedAt"], Value::Null);
        assert!(listed.get("token").is_none());

        // Works as an editor, not as an admin.
        app.call("POST", "/api/v1/events", &secret, Some(common::script_event("by-ci"))).expect(201);
        app.call("GET", "/api/v1/tokens", &secret, None).expect_error(403, "forbidden", None);
        app.call("GET", "/api/v1/audit", &secret, None).expect_error(403, "forbidden", None);
        app.call("POST", "/api/v1/servers", &secret, Some(json!({}))).expect_error(403, "forbidden", None);

        // Revoked: 401 from then on.
        app.delete(&format!("/api/v1/tokens/{id}")).expect(204);
        app.call("GET", "/api/v1/events", &secret, None).expect_error(401, "unauthorized", None);
        let list = app.get("/api/v1/tokens").expect(200);
        let listed = list.as_array().unwrap().iter().find(|t| &t["id"] == id).unwrap();
        assert!(listed["revokedAt"].is_string());
        app.delete("/api/v1/tokens/999999").expect_error(404, "not_found", None);

        // Bad input names the field.
        app.post("/api/v1/tokens", json!({ "name": "x", "role": "root" })).expect_error(422, "validation_failed", Some("role"));
        app.post("/api/v1/tokens", json!({ "role": "viewer" })).expect_error(422, "validation_failed", Some("name"));
        app.post("/api/v1/tokens", json!({ "name": "x", "role": "viewer", "scope": "all" })).expect_error(400, "bad_request", Some("scope"));
    }

    fn reads_within_a_minute_record_one_token_use(backend: Backend) {
        let app = TestApp::spawn(backend);
        let created = app.post("/api/v1/tokens", json!({ "name": "reader", "role": "viewer" })).expect(201);
        let secret = created["token"].as_str().unwrap();
        let last_used = || {
            let list = app.get("/api/v1/tokens").expect(200);
            list.as_array().unwrap().iter().find(|t| t["id"] == created["id"]).unwrap()["lastUsedAt"].clone()
        };
        assert_eq!(last_used(), Value::Null);

        app.call("GET", "/api/v1/events", secret, None).expect(200);
        let first = last_used();
        assert!(first.is_string(), "the first use is recorded: {first}");
        // Well within the minute: authenticated, but nothing written.
        for _ in 0..5 {
            app.call("GET", "/api/v1/events", secret, None).expect(200);
        }
        assert_eq!(last_used(), first);
    }

    fn first_start_writes_a_private_admin_token(backend: Backend) {
        let mut app = TestApp::spawn(backend);
        let file = app.data_dir.join("admin.token");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "admin.token mode {mode:o}");
        let key_mode = std::fs::metadata(app.data_dir.join("master.key")).unwrap().permissions().mode();
        assert_eq!(key_mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(&app.data_dir).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let token = std::fs::read_to_string(&file).unwrap();
        assert!(token.starts_with("crn_") && token.ends_with('\n'));
        let tokens = app.get("/api/v1/tokens").expect(200);
        assert_eq!(tokens.as_array().unwrap().len(), 1);
        assert_eq!(tokens[0]["role"], "admin");

        // A restart neither replaces the file nor makes another token.
        app.stop();
        app.start();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), token);
        assert_eq!(app.get("/api/v1/tokens").expect(200).as_array().unwrap().len(), 1);
    }

    fn health_metrics_and_openapi(backend: Backend) {
        let app = TestApp::spawn(backend);
        let health = app.send("GET", "/healthz", None, &[], None).expect(200);
        let name = match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        };
        assert_eq!(health, json!({ "status": "ok", "database": name }));

        app.create_event(common::script_event("m1"));
        app.create_event(common::script_event("m2"));
        app.get("/api/v1/events/777").expect(404);
        let metrics = app.get("/metrics");
        assert_eq!(metrics.status, 200);
        assert!(metrics.header("content-type").unwrap().starts_with("text/plain"));
        let text = metrics.text();
        for line in [
            r#"cronium_http_requests_total{route="/api/v1/events",method="POST",status="201"} 2"#,
            r#"cronium_http_requests_total{route="/api/v1/events/{id}",method="GET",status="404"} 1"#,
            "cronium_events 2",
            "cronium_payloads_generated_total 2",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        assert!(text.contains("cronium_http_request_duration_seconds_bucket{route=\"/api/v1/events\",method=\"POST\",le=\"+Inf\"} 2"));

        let doc = app.send("GET", "/api/v1/openapi.json", None, &[], None).expect(200);
        assert_eq!(doc["openapi"], "3.1.0");
        // Unknown routes and methods answer in the API's error format.
        app.get("/api/v1/nothing").expect_error(404, "not_found", None);
        app.admin("PUT", "/api/v1/events", None).expect_error(405, "method_not_allowed", None);
    }
}

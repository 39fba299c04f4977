//! `cronium user` on the server's host, against a running `cronium serve`'s database: the first password is set without the API, opens the web UI, and never shows up in arguments or logs.

mod common;

use std::time::Duration;

use common::Server;

const PASSWORD: &str = "correct horse battery staple";

/// Posts the sign-in form as a browser on the server's own origin would;
/// returns the status and the `Set-Cookie` header.
fn sign_in(server: &Server, name: &str, password: &str) -> (u16, Option<String>) {
    let agent = ureq::Agent::new_with_config(
        ureq::config::Config::builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(30)))
            .build(),
    );
    let body = format!(
        "name={name}&password={}&next=%2F",
        password.replace(' ', "+")
    );
    let response = agent
        .post(format!("{}/login", server.url))
        .header("origin", &server.url)
        .content_type("application/x-www-form-urlencoded")
        .send(body)
        .unwrap();
    let cookie = response
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    (response.status().as_u16(), cookie)
}

#[test]
fn the_first_password_is_set_on_the_host_and_opens_the_web_ui() {
    let server = Server::start();
    assert_eq!(
        sign_in(&server, "admin", PASSWORD).0,
        401,
        "no password yet"
    );

    let args = ["user", "passwd", "admin", "--password-stdin"];
    assert!(!args.iter().any(|a| a.contains(PASSWORD)), "never in argv");
    let run = server
        .cronium_stdin(&args, &[], &format!("{PASSWORD}\n"))
        .ok();
    assert_eq!(
        run.stdout().trim(),
        "set the password of user admin (admin)"
    );
    assert!(!run.stdout().contains(PASSWORD) && !run.stderr().contains(PASSWORD));

    let (status, cookie) = sign_in(&server, "admin", PASSWORD);
    assert_eq!(status, 303);
    assert!(cookie.unwrap().starts_with("cronium_session="));
    assert!(
        !server.log().contains(PASSWORD),
        "the password is never logged"
    );
    assert!(server.log().contains("signed in"), "{}", server.log());

    // Too short: refused, saying what is needed; nothing changes.
    server
        .cronium_stdin(&args, &[], "short\n")
        .fails_with(&["at least 12 characters"]);
    assert_eq!(sign_in(&server, "admin", PASSWORD).0, 303);
}

#[test]
fn users_are_added_listed_and_removed_but_the_last_admin_stays() {
    let server = Server::start();
    server
        .cronium_with(
            &[
                "user",
                "add",
                "ops",
                "--role",
                "viewer",
                "--password-env",
                "OPS_PASSWORD",
            ],
            &[("OPS_PASSWORD", PASSWORD)],
        )
        .ok();
    server
        .cronium_with(
            &[
                "user",
                "add",
                "ops",
                "--role",
                "viewer",
                "--password-env",
                "OPS_PASSWORD",
            ],
            &[("OPS_PASSWORD", PASSWORD)],
        )
        .fails_with(&["already exists"]);
    server
        .cronium_with(
            &[
                "user",
                "add",
                "x",
                "--role",
                "root",
                "--password-env",
                "NOPE",
            ],
            &[],
        )
        .fails_with(&["unknown role"]);
    assert_eq!(sign_in(&server, "ops", PASSWORD).0, 303);

    let list = server.cronium(&["user", "list", "--json"]).ok().json();
    let users: Vec<(String, String, bool)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["name"].as_str().unwrap().to_string(),
                u["role"].as_str().unwrap().to_string(),
                u["hasPassword"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        users,
        [
            ("admin".to_string(), "admin".to_string(), false),
            ("ops".to_string(), "viewer".to_string(), true),
        ]
    );
    let table = server.cronium(&["user", "list"]).ok().stdout();
    assert!(table.starts_with("ID"), "{table}");

    server
        .cronium(&["user", "remove", "admin"])
        .fails_with(&["last admin"]);
    server
        .cronium(&["user", "role", "admin", "--role", "editor"])
        .fails_with(&["last admin"]);
    let changed = server
        .cronium(&["user", "role", "ops", "--role", "editor"])
        .ok()
        .stdout();
    assert_eq!(changed.trim(), "changed the role of user ops (editor)");
    server.cronium(&["user", "remove", "ops"]).ok();
    assert_eq!(sign_in(&server, "ops", PASSWORD).0, 401);
    server
        .cronium(&["user", "remove", "ops"])
        .fails_with(&["no user named \"ops\""]);
}

//! The variables page, on SQLite and PostgreSQL: an editor sets and deletes variables through its forms, a secret one is shown as `•••` and never sent back, bad input comes back beside its field, and a viewer sees the list without the forms and cannot post them.

mod common;

use common::TestApp;

const PASSWORD: &str = "correct horse battery staple";

both_backends! {
    fn an_editor_sets_and_deletes_variables_and_secrets_show_as_dots(backend: Backend) {
        let app = TestApp::spawn(backend);
        app.add_user("ed", "editor", PASSWORD);
        let mut browser = app.browser().signed_in("ed", PASSWORD);
        let empty = browser.get("/variables");
        assert_eq!(empty.status, 200, "{}", empty.text());
        assert!(empty.text().contains("No variables yet."), "{}", empty.text());
        let csrf = browser.csrf("/variables");

        let set = browser.post("/variables", &[
            ("csrf", &csrf), ("key", "web-1.last"), ("value", r#"{"n": 1, "who": "<b>x</b>"}"#), ("secrecy", "keep"),
        ]);
        assert_eq!((set.status, set.header("location")), (303, Some("/variables")), "{}", set.text());
        const SECRET: &str = "s3cret-typed-into-a-form-77";
        let set = browser.post("/variables", &[
            ("csrf", &csrf), ("key", "api_token"), ("value", &format!("\"{SECRET}\"")), ("secrecy", "secret"),
        ]);
        assert_eq!(set.status, 303, "{}", set.text());

        let page = browser.get("/variables").text();
        assert!(page.contains("<code>web-1.last</code>"), "{page}");
        // The value is escaped, not markup.
        assert!(page.contains("&#60;b&#62;x&#60;/b&#62;") && !page.contains("<b>x</b>"), "{page}");
        assert!(page.contains("•••"), "{page}");
        assert!(!page.contains(SECRET), "{page}");
        assert!(page.contains(r#"action="/variables/api_token/delete""#), "{page}");

        // Refused input comes back beside its field; a secret value is not echoed.
        let bad = browser.post("/variables", &[
            ("csrf", &csrf), ("key", "a;rm -rf /"), ("value", "1"), ("secrecy", "keep"),
        ]);
        assert_eq!(bad.status, 422);
        assert!(bad.text().contains("invalid variable key"), "{}", bad.text());
        let bad = browser.post("/variables", &[
            ("csrf", &csrf), ("key", "k"), ("value", "not json"), ("secrecy", "keep"),
        ]);
        assert_eq!(bad.status, 422);
        assert!(bad.text().contains("not JSON") && bad.text().contains("not json"), "{}", bad.text());
        let bad = browser.post("/variables", &[
            ("csrf", &csrf), ("key", "k"), ("value", &format!("\"{SECRET} {}", "x".repeat(10))), ("secrecy", "secret"),
        ]);
        assert_eq!(bad.status, 422);
        assert!(!bad.text().contains(SECRET), "a refused secret came back");
        // A form body is at most 64 KiB, so the value's own limit is met
        // by the form's first.
        let big = format!("\"{}\"", "x".repeat(70_000));
        let bad = browser.post("/variables", &[("csrf", &csrf), ("key", "k"), ("value", &big), ("secrecy", "keep")]);
        assert_eq!(bad.status, 413);

        // The API sees what the forms wrote; the audit names the key only.
        let token = app.token("editor");
        let api = app.call("GET", "/api/v1/variables", &token, None).expect(200);
        assert_eq!(api.as_array().unwrap().len(), 0, "the admin's own variables: none");
        let audit = app.get("/api/v1/audit?limit=500");
        let text = audit.text();
        assert!(text.contains("\"key\":\"api_token\"") && !text.contains(SECRET), "{text}");

        let deleted = browser.post("/variables/api_token/delete", &[("csrf", &csrf)]);
        assert_eq!(deleted.status, 303, "{}", deleted.text());
        assert!(!browser.get("/variables").text().contains("api_token"));
        let again = browser.post("/variables/api_token/delete", &[("csrf", &csrf)]);
        assert_eq!(again.status, 404);
    }

    fn a_viewer_sees_the_list_but_no_forms(backend: Backend) {
        let app = TestApp::spawn(backend);
        app.add_user("watcher", "viewer", PASSWORD);
        app.set_password("admin", PASSWORD);
        let mut admin = app.browser().signed_in("admin", PASSWORD);
        let csrf = admin.csrf("/variables");
        let set = admin.post("/variables", &[("csrf", &csrf), ("key", "shared"), ("value", "1"), ("secrecy", "keep")]);
        assert_eq!(set.status, 303);
        // Variables are the user's own: the viewer has none.
        let mut viewer = app.browser().signed_in("watcher", PASSWORD);
        let page = viewer.get("/variables");
        assert_eq!(page.status, 200);
        let text = page.text();
        assert!(text.contains("No variables yet.") && !text.contains("shared"), "{text}");
        assert!(!text.contains("Set a variable") && !text.contains("/delete"), "{text}");
        let csrf = viewer.csrf("/variables");
        let refused = viewer.post("/variables", &[("csrf", &csrf), ("key", "mine"), ("value", "1"), ("secrecy", "keep")]);
        assert_eq!(refused.status, 403);
    }
}

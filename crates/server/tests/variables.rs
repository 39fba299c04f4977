//! Variables over the API, on SQLite and PostgreSQL: writes, versions, compare-and-set, secret values that never come back (not in answers, the audit log or the database in clear), refused keys and sizes, roles; and the input, output and condition a job shows.

mod common;

use common::{TestApp, contains, database_bytes, encode, script_event};
use serde_json::{Value, json};

fn path(key: &str) -> String {
    format!("/api/v1/variables/{}", encode(key))
}

fn put(app: &TestApp, key: &str, body: Value) -> common::Resp {
    app.admin("PUT", &path(key), Some(body))
}

both_backends! {
    fn set_get_list_and_delete(backend: Backend) {
        let app = TestApp::spawn(backend);
        assert_eq!(app.get("/api/v1/variables").expect(200), json!([]));

        let created = put(&app, "web-1.last", json!({ "value": { "n": 1, "name": "ünïcode" } })).expect(201);
        assert_eq!(created["key"], "web-1.last");
        assert_eq!(created["value"], json!({ "n": 1, "name": "ünïcode" }));
        assert_eq!((created["secret"].clone(), created["version"].clone()), (json!(false), json!(1)));
        assert_eq!(created["updatedByJob"], Value::Null);
        assert_eq!(created["createdAt"], created["updatedAt"]);
        let replaced = put(&app, "web-1.last", json!({ "value": [1, "two", null] })).expect(200);
        assert_eq!((replaced["version"].clone(), replaced["value"].clone()), (json!(2), json!([1, "two", null])));
        assert_eq!(replaced["createdAt"], created["createdAt"]);
        assert_eq!(app.get(&path("web-1.last")).expect(200), replaced);

        // A number keeps its spelling: 1.0 is stored and shown as 1.0.
        let float = app.send(
            "PUT",
            &path("Counter_1"),
            Some(&app.admin_token),
            &[("content-type", "application/json")],
            Some(br#"{"value": 1.0}"#.to_vec()),
        );
        assert_eq!(float.status, 201, "{}", float.text());
        assert!(float.text().contains(r#""value":1.0"#), "{}", float.text());
        put(&app, "_null", json!({ "value": null })).expect(201);

        let listed = app.get("/api/v1/variables").expect(200);
        let keys: Vec<&str> = listed.as_array().unwrap().iter().map(|v| v["key"].as_str().unwrap()).collect();
        assert_eq!(keys, ["Counter_1", "_null", "web-1.last"]);
        assert_eq!(listed[1]["value"], Value::Null);
        assert_eq!(listed[1]["secret"], false);

        app.delete(&path("web-1.last")).expect(204);
        app.delete(&path("web-1.last")).expect_error(404, "not_found", None);
        app.get(&path("web-1.last")).expect_error(404, "not_found", None);
        // Made again, it starts over.
        assert_eq!(put(&app, "web-1.last", json!({ "value": 0 })).expect(201)["version"], 1);
    }

    fn secret_values_are_write_only_and_sealed_at_rest(backend: Backend) {
        let app = TestApp::spawn(backend);
        const SECRET: &str = "s3cret-value-never-shown-9f2c";
        let created = put(&app, "api_token", json!({ "value": SECRET, "secret": true })).expect(201);
        assert_eq!((created["secret"].clone(), created["value"].clone()), (json!(true), Value::Null));
        let shown = app.get(&path("api_token"));
        assert_eq!(shown.expect(200)["value"], Value::Null);
        assert!(!shown.text().contains(SECRET));
        let listed = app.get("/api/v1/variables");
        assert_eq!(listed.expect(200)[0]["secret"], true);
        assert!(!listed.text().contains(SECRET));

        // A write that leaves secrecy out keeps it; saying false ends it.
        let kept = put(&app, "api_token", json!({ "value": format!("{SECRET}-2") })).expect(200);
        assert_eq!((kept["secret"].clone(), kept["value"].clone()), (json!(true), Value::Null));
        // Compare-and-set works on the opened value.
        put(&app, "api_token", json!({ "value": "x", "expect": SECRET }))
            .expect_error(409, "conflict", Some("expect"));
        put(&app, "api_token", json!({ "value": format!("{SECRET}-3"), "expect": format!("{SECRET}-2") }))
            .expect(200);

        let audit = app.get("/api/v1/audit?limit=500");
        let records = audit.expect(200);
        let sets: Vec<&Value> = records["items"].as_array().unwrap().iter()
            .filter(|r| r["targetType"] == "variable").collect();
        assert_eq!(sets.len(), 3, "{records}");
        for r in &sets {
            assert_eq!(r["action"], "variable.set");
            assert_eq!(r["detail"]["key"], "api_token");
            assert!(r["actor"].is_i64(), "{r}");
            assert_eq!(r["actorJob"], Value::Null);
        }
        assert!(!audit.text().contains(SECRET), "the audit log holds the value");
        assert!(!contains(&database_bytes(&app), SECRET.as_bytes()), "the database holds the value in clear");

        let plain = put(&app, "api_token", json!({ "value": "public", "secret": false })).expect(200);
        assert_eq!((plain["secret"].clone(), plain["value"].clone()), (json!(false), json!("public")));
    }

    fn compare_and_set_conflicts_with_409(backend: Backend) {
        let app = TestApp::spawn(backend);
        put(&app, "n", json!({ "value": 1, "expectAbsent": true })).expect(201);
        put(&app, "n", json!({ "value": 2, "expectAbsent": true }))
            .expect_error(409, "conflict", Some("expect"));
        put(&app, "n", json!({ "value": 2, "expect": 5 }))
            .expect_error(409, "conflict", Some("expect"));
        put(&app, "missing", json!({ "value": 2, "expect": null }))
            .expect_error(409, "conflict", Some("expect"));
        assert_eq!(put(&app, "n", json!({ "value": 2, "expect": 1 })).expect(200)["version"], 2);
        put(&app, "n", json!({ "value": 3, "expect": 2, "expectAbsent": false })).expect(200);
        put(&app, "n", json!({ "value": 4, "expect": 3, "expectAbsent": true }))
            .expect_error(422, "validation_failed", Some("expectAbsent"));
        assert_eq!(app.get(&path("n")).expect(200)["value"], 3);
        app.get(&path("missing")).expect_error(404, "not_found", None);
    }

    fn bad_keys_bodies_and_sizes_are_refused(backend: Backend) {
        let app = TestApp::spawn(backend);
        let long = "k".repeat(129);
        for key in ["a;rm -rf /", "$(id)", "../x", ".x", "-x", "a\nb", "a b", "ä", long.as_str()] {
            put(&app, key, json!({ "value": 1 })).expect_error(422, "validation_failed", Some("key"));
            app.get(&path(key)).expect_error(422, "validation_failed", Some("key"));
            app.delete(&path(key)).expect_error(422, "validation_failed", Some("key"));
        }
        let longest = "k".repeat(128);
        put(&app, &longest, json!({ "value": 1 })).expect(201);

        // 64 KiB of compact JSON: a string of 65534 characters and its quotes.
        put(&app, "big", json!({ "value": "x".repeat(65534) })).expect(201);
        put(&app, "big", json!({ "value": "x".repeat(65535) }))
            .expect_error(422, "validation_failed", Some("value"));
        assert_eq!(app.get(&path("big")).expect(200)["version"], 1);

        put(&app, "k", json!({})).expect_error(400, "bad_request", Some("value"));
        put(&app, "k", json!({ "value": 1, "secret": "yes" })).expect_error(400, "bad_request", Some("secret"));
        put(&app, "k", json!({ "value": 1, "other": 1 })).expect_error(400, "bad_request", Some("other"));
        let names: Vec<String> = app.get("/api/v1/variables").expect(200).as_array().unwrap()
            .iter().map(|v| v["key"].as_str().unwrap().to_string()).collect();
        assert_eq!(names, ["big".to_string(), longest]);
    }

    fn viewers_read_and_editors_write(backend: Backend) {
        let app = TestApp::spawn(backend);
        let viewer = app.token("viewer");
        let editor = app.token("editor");
        app.call("PUT", &path("k"), &editor, Some(json!({ "value": "by editor" }))).expect(201);
        app.call("PUT", &path("k"), &viewer, Some(json!({ "value": "by viewer" })))
            .expect_error(403, "forbidden", None);
        app.call("DELETE", &path("k"), &viewer, None).expect_error(403, "forbidden", None);
        assert_eq!(app.call("GET", &path("k"), &viewer, None).expect(200)["value"], "by editor");
        assert_eq!(app.call("GET", "/api/v1/variables", &viewer, None).expect(200)[0]["key"], "k");
        app.call("DELETE", &path("k"), &editor, None).expect(204);
    }

    fn a_job_shows_its_input_output_and_condition(backend: Backend) {
        let app = TestApp::spawn(backend);
        let mut body = script_event("with-input");
        body["overlap"] = json!("allow");
        let event = app.create_event(body);
        let id = event["id"].as_i64().unwrap();
        let job = app
            .post(&format!("/api/v1/events/{id}/run"), json!({ "input": { "rows": [1, 2] } }))
            .expect(201);
        assert_eq!(job["input"], json!({ "rows": [1, 2] }));
        assert_eq!((job["output"].clone(), job["condition"].clone()), (Value::Null, json!(false)));
        let shown = app.get(&format!("/api/v1/jobs/{}", job["id"])).expect(200);
        assert_eq!(shown["input"], json!({ "rows": [1, 2] }));
        let bare = app.post(&format!("/api/v1/events/{id}/run"), json!({})).expect(201);
        assert_eq!(bare["input"], Value::Null);
        // A script that sets neither leaves output null and condition false.
        let done = common::wait_for("the job to end", std::time::Duration::from_secs(30), || {
            let j = app.get(&format!("/api/v1/jobs/{}", job["id"])).expect(200);
            (j["status"] == "succeeded").then_some(j)
        });
        assert_eq!((done["output"].clone(), done["condition"].clone()), (Value::Null, json!(false)));
        assert_eq!(done["input"], json!({ "rows": [1, 2] }));
        let listed = app.get(&format!("/api/v1/jobs?event={id}")).expect(200);
        for j in listed["items"].as_array().unwrap() {
            assert_eq!(j["condition"], false);
            assert!(j.get("output").is_some() && j.get("input").is_some(), "{j}");
        }
    }
}

//! Events, servers, pagination, bad input and the audit log over the API, on SQLite and PostgreSQL.

mod common;

use common::{TestApp, contains, script_event};
use serde_json::{Value, json};

const KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----\n";

both_backends! {
    fn event_defaults_and_shape(backend: Backend) {
        let app = TestApp::spawn(backend);
        let e = app.create_event(script_event("shape"));
        for field in ["id", "createdAt", "updatedAt"] {
            assert!(!e[field].is_null(), "{field}");
        }
        assert_eq!(e["name"], "shape");
        assert_eq!(e["description"], "");
        assert_eq!(e["kind"], "script");
        assert_eq!(e["interpreter"], "bash");
        assert_eq!(e["content"], "echo hello\n");
        assert_eq!(e["env"], json!({}));
        assert_eq!(e["secretEnvKeys"], json!([]));
        assert_eq!(e["schedule"], json!({ "type": "manual" }));
        assert_eq!(e["status"], "active");
        assert_eq!(e["runLocation"], "local");
        assert_eq!(e["targetServers"], json!([]));
        assert_eq!(e["timeout"], "1h");
        assert_eq!(e["retries"], 0);
        assert_eq!(e["tags"], json!([]));
        assert_eq!(e["payloadVersion"], 1);
        assert_eq!(e["overlap"], "forbid");
        assert_eq!(e["misfire"], "run_once");
        assert_eq!(e["startAt"], Value::Null);
        assert_eq!(e["maxExecutions"], Value::Null);
        assert_eq!(e["maxConcurrent"], Value::Null);
        assert_eq!(e["retryDelay"], "10s");
        // One event adds its next fire times (none for a manual one).
        let mut shown = app.get(&format!("/api/v1/events/{}", e["id"])).expect(200);
        assert_eq!(shown["nextFires"], json!([]));
        shown.as_object_mut().unwrap().remove("nextFires");
        assert_eq!(shown, e);

        let full = app.create_event(json!({
            "name": "full",
            "description": "all fields",
            "kind": "script",
            "interpreter": "NODE",
            "content": "console.log(1)\n",
            "env": { "A": "1" },
            "schedule": { "type": "every", "every": "90m" },
            "status": "draft",
            "timeout": "90s",
            "retries": 2,
            "tags": ["b", "a"],
        }));
        assert_eq!(full["interpreter"], "node");
        assert_eq!(full["schedule"], json!({ "type": "every", "every": "1h30m" }));
        assert_eq!(full["timeout"], "1m30s");
        assert_eq!(full["tags"], json!(["a", "b"]));

        // The run policy: set, shown, changed, cleared with null.
        let policy = app.create_event(json!({
            "name": "policy", "interpreter": "bash", "content": "true\n",
            "schedule": { "type": "every", "every": "1h" },
            "overlap": "allow", "misfire": "catch_up", "startAt": "2030-01-01T00:00:00Z",
            "maxExecutions": 3, "maxConcurrent": 2, "retryDelay": "1m",
        }));
        assert_eq!(policy["overlap"], "allow");
        assert_eq!(policy["misfire"], "catch_up");
        assert_eq!(policy["startAt"], "2030-01-01T00:00:00Z");
        assert_eq!(policy["maxExecutions"], 3);
        assert_eq!(policy["maxConcurrent"], 2);
        assert_eq!(policy["retryDelay"], "1m");
        let shown = app.get(&format!("/api/v1/events/{}", policy["id"])).expect(200);
        assert_eq!(
            shown["nextFires"],
            json!(["2030-01-01T00:00:00Z", "2030-01-01T01:00:00Z", "2030-01-01T02:00:00Z"]),
            "from the start time, within maxExecutions"
        );
        let changed = app
            .patch(&format!("/api/v1/events/{}", policy["id"]), json!({ "startAt": null, "maxExecutions": null }))
            .expect(200);
        assert_eq!(changed["startAt"], Value::Null);
        assert_eq!(changed["maxExecutions"], Value::Null);
        assert_eq!(changed["maxConcurrent"], 2, "untouched");
        let at = app.create_event(json!({
            "name": "once", "interpreter": "python", "content": "print(1)\n",
            "schedule": { "type": "at", "at": "2030-01-02T03:04:05+01:00" },
        }));
        assert_eq!(at["schedule"], json!({ "type": "at", "at": "2030-01-02T02:04:05Z" }));
    }

    fn bad_input_names_the_field(backend: Backend) {
        let app = TestApp::spawn(backend);
        app.create_event(script_event("taken"));
        let with = |extra: Value| {
            let mut body = script_event("fresh");
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            body
        };
        let big = "#".repeat(1024 * 1024 + 1);
        let table: Vec<(&str, Value, u16, &str, Option<&str>)> = vec![
            ("unknown interpreter", with(json!({ "interpreter": "ruby" })), 422, "validation_failed", Some("interpreter")),
            ("no interpreter", json!({ "name": "x", "content": "echo\n" }), 422, "validation_failed", Some("interpreter")),
            ("empty script", with(json!({ "content": "  \n" })), 422, "validation_failed", Some("content")),
            ("no script", json!({ "name": "x", "interpreter": "bash" }), 422, "validation_failed", Some("content")),
            ("script over 1 MiB", with(json!({ "content": big })), 422, "validation_failed", Some("content")),
            ("invalid cron", with(json!({ "schedule": { "type": "cron", "cron": "61 * * * *" } })), 422, "validation_failed", Some("schedule.cron")),
            ("cron field count", with(json!({ "schedule": { "type": "cron", "cron": "0 3 * *" } })), 422, "validation_failed", Some("schedule.cron")),
            ("invalid time zone", with(json!({ "schedule": { "type": "cron", "cron": "0 3 * * *", "timezone": "Mars/Olympus" } })), 422, "validation_failed", Some("schedule.timezone")),
            ("bad interval", with(json!({ "schedule": { "type": "every", "every": "soon" } })), 422, "validation_failed", Some("schedule.every")),
            ("bad time", with(json!({ "schedule": { "type": "at", "at": "tomorrow" } })), 422, "validation_failed", Some("schedule.at")),
            ("one-shot in the past", with(json!({ "schedule": { "type": "at", "at": "2001-01-01T00:00:00Z" } })), 422, "validation_failed", Some("schedule.at")),
            ("bad schedule type", with(json!({ "schedule": { "type": "hourly" } })), 422, "validation_failed", Some("schedule.type")),
            ("unknown overlap", with(json!({ "overlap": "sometimes" })), 422, "validation_failed", Some("overlap")),
            ("unknown misfire", with(json!({ "misfire": "later" })), 422, "validation_failed", Some("misfire")),
            ("bad start time", with(json!({ "startAt": "soon" })), 422, "validation_failed", Some("startAt")),
            ("zero max executions", with(json!({ "maxExecutions": 0 })), 422, "validation_failed", Some("maxExecutions")),
            ("max executions as text", with(json!({ "maxExecutions": "3" })), 422, "validation_failed", Some("maxExecutions")),
            ("max concurrent without allow", with(json!({ "maxConcurrent": 2 })), 422, "validation_failed", Some("maxConcurrent")),
            ("retry delay too long", with(json!({ "retryDelay": "2d" })), 422, "validation_failed", Some("retryDelay")),
            ("no name", json!({ "interpreter": "bash", "content": "echo\n" }), 422, "validation_failed", Some("name")),
            ("blank name", with(json!({ "name": "   " })), 422, "validation_failed", Some("name")),
            ("duplicate name", with(json!({ "name": "taken" })), 409, "conflict", Some("name")),
            ("bad env name", with(json!({ "env": { "1BAD": "x" } })), 422, "validation_failed", Some("env")),
            ("NUL in env", with(json!({ "env": { "A": "a\u{0}b" } })), 422, "validation_failed", Some("env.A")),
            ("secret and plain", with(json!({ "env": { "A": "1" }, "secretEnv": { "A": "2" } })), 409, "conflict", Some("env.A")),
            ("bad status", with(json!({ "status": "running" })), 422, "validation_failed", Some("status")),
            ("bad kind", with(json!({ "kind": "ftp" })), 422, "validation_failed", Some("kind")),
            ("http without a request", with(json!({ "kind": "http" })), 422, "validation_failed", Some("http")),
            ("a script with a request", with(json!({ "http": { "url": "https://93.184.216.34/" } })), 422, "validation_failed", Some("content")),
            ("bad timeout", with(json!({ "timeout": "forever" })), 422, "validation_failed", Some("timeout")),
            ("long timeout", with(json!({ "timeout": "8d" })), 422, "validation_failed", Some("timeout")),
            ("too many retries", with(json!({ "retries": 11 })), 422, "validation_failed", Some("retries")),
            ("bad tag", with(json!({ "tags": ["has space"] })), 422, "validation_failed", Some("tags")),
            ("remote without servers", with(json!({ "runLocation": "remote" })), 422, "validation_failed", Some("targetServers")),
            ("unknown server", with(json!({ "targetServers": [424242] })), 409, "conflict", Some("targetServers")),
            ("wrong type", with(json!({ "retries": "three" })), 400, "bad_request", Some("retries")),
            ("negative", with(json!({ "retries": -1 })), 400, "bad_request", Some("retries")),
            ("wrong nested type", with(json!({ "env": { "A": 1 } })), 400, "bad_request", Some("env.A")),
            ("wrong array item", with(json!({ "tags": ["a", 2] })), 400, "bad_request", Some("tags[1]")),
            ("unknown field", with(json!({ "secretenv": {} })), 400, "bad_request", Some("secretenv")),
            ("not an object", json!([1, 2]), 400, "bad_request", None),
        ];
        for (what, body, status, code, field) in table {
            let resp = app.post("/api/v1/events", body);
            assert_eq!(resp.status, status, "{what}: {}", resp.text());
            let err = resp.json();
            assert_eq!(err["error"]["code"], code, "{what}: {err}");
            assert_eq!(err["error"]["field"].as_str(), field, "{what}: {err}");
        }

        // Malformed JSON, missing content type, oversized body.
        let json_header = [("content-type", "application/json")];
        let token = Some(app.admin_token.as_str());
        app.send("POST", "/api/v1/events", token, &json_header, Some(b"{\"name\": ".to_vec()))
            .expect_error(400, "bad_request", None);
        app.send("POST", "/api/v1/events", token, &[("content-type", "text/plain")], Some(b"{}".to_vec()))
            .expect_error(400, "bad_request", None);
        // Refused on its declared length: with `Expect: 100-continue` the
        // client gets the 413 before it uploads anything.
        let huge = format!("{{\"name\":\"x\",\"content\":\"{}\"}}", "a".repeat(3 * 1024 * 1024));
        let expect = [("content-type", "application/json"), ("expect", "100-continue")];
        app.send("POST", "/api/v1/events", token, &expect, Some(huge.into_bytes()))
            .expect_error(413, "payload_too_large", None);

        // Unknown and malformed ids.
        for path in ["/api/v1/events/424242", "/api/v1/events/424242/payloads"] {
            app.get(path).expect_error(404, "not_found", None);
        }
        app.patch("/api/v1/events/424242", json!({ "name": "x" })).expect_error(404, "not_found", None);
        app.get("/api/v1/events/abc").expect_error(400, "bad_request", None);
        app.get("/api/v1/events/1/payloads/x").expect_error(400, "bad_request", None);

        // Nothing of the refused requests was stored.
        let list = app.get("/api/v1/events").expect(200);
        assert_eq!(list["total"], 1);
        assert_eq!(common::files_under(&app.payload_dir()).len(), 2);
    }

    fn patch_validates_the_result(backend: Backend) {
        let app = TestApp::spawn(backend);
        let e = app.create_event(json!({
            "name": "p", "interpreter": "bash", "content": "echo\n", "secretEnv": { "S": "x" },
        }));
        let path = format!("/api/v1/events/{}", e["id"]);
        // Well-formed changes that this event cannot take: 409.
        app.patch(&path, json!({ "content": "" })).expect_error(409, "conflict", Some("content"));
        app.patch(&path, json!({ "env": { "S": "plain" } })).expect_error(409, "conflict", Some("env.S"));
        app.patch(&path, json!({ "schedule": { "type": "cron", "cron": "0 3 * * *", "timezone": "Nowhere/City" } }))
            .expect_error(422, "validation_failed", Some("schedule.timezone"));
        app.patch(&path, json!({ "bogus": 1 })).expect_error(400, "bad_request", Some("bogus"));
        // Unchanged after the refusals.
        let now = app.get(&path).expect(200);
        assert_eq!(now["content"], "echo\n");
        assert_eq!(now["updatedAt"], e["updatedAt"]);

        // An empty patch changes nothing, not even updatedAt.
        assert_eq!(app.patch(&path, json!({})).expect(200), e);
        app.patch("/api/v1/events/424242", json!({})).expect_error(404, "not_found", None);

        // An empty secretEnv removes the secrets.
        let cleared = app.patch(&path, json!({ "secretEnv": {} })).expect(200);
        assert_eq!(cleared["secretEnvKeys"], json!([]));
        app.patch(&path, json!({ "env": { "S": "plain now" } })).expect(200);
    }

    fn listing_filters_and_paginates(backend: Backend) {
        let app = TestApp::spawn(backend);
        for i in 0..7 {
            let status = if i % 2 == 0 { "active" } else { "paused" };
            let tags = if i < 3 { json!(["db"]) } else { json!(["web"]) };
            app.create_event(json!({
                "name": format!("job-{i}"), "interpreter": "bash", "content": "echo\n",
                "status": status, "tags": tags,
            }));
        }
        let all = app.get("/api/v1/events").expect(200);
        assert_eq!(all["total"], 7);
        assert_eq!(all["limit"], 50);
        assert_eq!(all["offset"], 0);
        assert_eq!(all["items"].as_array().unwrap().len(), 7);

        let mut seen = Vec::new();
        for offset in [0, 3, 6] {
            let page = app.get(&format!("/api/v1/events?limit=3&offset={offset}")).expect(200);
            assert_eq!(page["total"], 7);
            assert_eq!(page["limit"], 3);
            assert_eq!(page["offset"], offset);
            for item in page["items"].as_array().unwrap() {
                seen.push(item["name"].as_str().unwrap().to_string());
            }
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 7, "pages neither overlap nor skip: {seen:?}");
        let past = app.get("/api/v1/events?offset=100").expect(200);
        assert_eq!(past["items"], json!([]));
        assert_eq!(past["total"], 7);

        let count = |query: &str| app.get(&format!("/api/v1/events?{query}")).expect(200)["total"].as_u64().unwrap();
        assert_eq!(count("status=active"), 4);
        assert_eq!(count("status=paused"), 3);
        assert_eq!(count("tag=db"), 3);
        assert_eq!(count("tag=db&status=active"), 2);
        assert_eq!(count("name=JOB-1"), 1);
        assert_eq!(count("name=job"), 7);
        let page = app.get("/api/v1/events?tag=web&limit=2").expect(200);
        assert_eq!(page["total"], 4);
        assert_eq!(page["items"].as_array().unwrap().len(), 2);

        for (query, field) in [("limit=0", "limit"), ("limit=501", "limit"), ("limit=x", "limit"), ("offset=-1", "offset"), ("status=gone", "status"), ("tag=a%20b", "tag")] {
            app.get(&format!("/api/v1/events?{query}")).expect_error(422, "validation_failed", Some(field));
        }
        assert_eq!(app.get("/api/v1/events?limit=500").expect(200)["limit"], 500);
    }

    fn servers_never_return_credentials(backend: Backend) {
        let app = TestApp::spawn(backend);
        let password = "Pa55-w0rd-never-shown";
        let passphrase = "phrase-never-shown";
        let web = app.post("/api/v1/servers", json!({
            "name": "web-1", "host": "10.0.0.5", "username": "deploy",
            "privateKey": KEY, "passphrase": passphrase,
        })).expect(201);
        assert_eq!(web["port"], 22);
        assert_eq!(web["authKind"], "key");
        assert_eq!(web["knownHost"], Value::Null);
        let db = app.post("/api/v1/servers", json!({
            "name": "db-1", "host": "db.internal", "port": 2222, "username": "ops",
            "password": password, "knownHost": "db.internal ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOGbsCDZCVLVLe3Uq9pjPEiD4BIqMyq4EY5kAiZlJUgX",
        })).expect(201);
        assert_eq!(db["authKind"], "password");
        let keys: Vec<&str> = db.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 13, "{keys:?}"); // lastCheck and tags included
        assert_eq!(db["cacheDir"], ".cache/cronium", "the default, shown as in effect");

        let id = &db["id"];
        let updated = app.patch(&format!("/api/v1/servers/{id}"), json!({ "port": 22, "privateKey": KEY })).expect(200);
        assert_eq!(updated["authKind"], "key");
        assert_eq!(updated["port"], 22);
        assert_eq!(updated["name"], "db-1");

        let mut everything = String::new();
        for path in ["/api/v1/servers".to_string(), format!("/api/v1/servers/{id}"), "/api/v1/audit".into()] {
            everything.push_str(&app.get(&path).text());
        }
        everything.push_str(&web.to_string());
        everything.push_str(&updated.to_string());
        for secret in [password, passphrase, "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ", "PRIVATE KEY"] {
            assert!(!everything.contains(secret), "{secret} was returned");
        }
        let dbytes = common::database_bytes(&app);
        for secret in [password, passphrase, "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"] {
            assert!(!contains(&dbytes, secret.as_bytes()), "{secret} in the database");
            assert!(!contains(&dbytes, common::hex(secret).as_bytes()), "{secret} (hex) in the database");
        }

        // Bad input.
        let base = json!({ "name": "x", "host": "h", "username": "u", "password": "p" });
        let with = |k: &str, v: Value| { let mut b = base.clone(); b[k] = v; b };
        let table = [
            (json!({ "name": "x", "host": "h", "username": "u" }), 422, Some("privateKey")),
            (with("privateKey", json!(KEY)), 422, Some("password")),
            (with("passphrase", json!("pp")), 422, Some("passphrase")),
            (with("name", json!("bad name")), 422, Some("name")),
            (with("host", json!("bad host")), 422, Some("host")),
            (with("username", json!("-oProxyCommand=x")), 422, Some("username")),
            (with("port", json!(0)), 422, Some("port")),
            (with("port", json!(70000)), 400, Some("port")),
            (with("name", json!("web-1")), 409, Some("name")),
        ];
        for (body, status, field) in table {
            let resp = app.post("/api/v1/servers", body.clone());
            assert_eq!(resp.status, status, "{body}: {}", resp.text());
            assert_eq!(resp.json()["error"]["field"].as_str(), field, "{body}");
        }

        // A server an event targets cannot be removed.
        let event = app.create_event(json!({
            "name": "remote", "interpreter": "bash", "content": "uptime\n", "targetServers": [web["id"]],
        }));
        assert_eq!(event["runLocation"], "remote");
        assert_eq!(event["targetServers"], json!([web["id"]]));
        app.delete(&format!("/api/v1/servers/{}", web["id"])).expect_error(409, "conflict", None);
        app.patch(&format!("/api/v1/events/{}", event["id"]), json!({ "targetServers": [] })).expect(200);
        app.delete(&format!("/api/v1/servers/{}", web["id"])).expect(204);
        app.get(&format!("/api/v1/servers/{}", web["id"])).expect_error(404, "not_found", None);
        assert_eq!(app.get("/api/v1/servers").expect(200).as_array().unwrap().len(), 1);
    }

    fn servers_carry_tags_that_events_target(backend: Backend) {
        let app = TestApp::spawn(backend);
        let audit_total = || app.get("/api/v1/audit?limit=1").expect(200)["total"].as_u64().unwrap();
        let web = app.post("/api/v1/servers", json!({
            "name": "web-1", "host": "10.0.0.5", "username": "deploy", "privateKey": KEY, "tags": ["web", "eu"],
        })).expect(201);
        assert_eq!(web["tags"], json!(["eu", "web"]));
        app.post("/api/v1/servers", json!({ "name": "db-1", "host": "h", "username": "u", "password": "p" })).expect(201);
        let names = |query: &str| -> Vec<String> {
            app.get(&format!("/api/v1/servers{query}")).expect(200).as_array().unwrap()
                .iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
        };
        assert_eq!(names(""), ["db-1", "web-1"]);
        assert_eq!(names("?tag=web"), ["web-1"]);
        assert!(names("?tag=none").is_empty());
        app.get("/api/v1/servers?tag=a%20b").expect_error(422, "validation_failed", Some("tags"));
        app.post("/api/v1/servers", json!({ "name": "x", "host": "h", "username": "u", "password": "p", "tags": ["bad tag"] }))
            .expect_error(422, "validation_failed", Some("tags"));

        // A PATCH that repeats what is there (the key included) writes nothing.
        let id = &web["id"];
        let before = audit_total();
        let same = app.patch(&format!("/api/v1/servers/{id}"), json!({
            "host": "10.0.0.5", "username": "deploy", "privateKey": KEY, "tags": ["web", "eu"],
        })).expect(200);
        assert_eq!(same, web);
        assert_eq!(audit_total(), before);
        let retagged = app.patch(&format!("/api/v1/servers/{id}"), json!({ "tags": ["web"] })).expect(200);
        assert_eq!(retagged["tags"], json!(["web"]));
        assert_eq!(audit_total(), before + 1);

        // An event by tag is remote; a tag alone is a target; bad tags name the field.
        let event = app.create_event(json!({
            "name": "by-tag", "interpreter": "bash", "content": "uptime\n", "targetTags": ["web", "nobody-yet"],
        }));
        assert_eq!(event["runLocation"], "remote");
        assert_eq!(event["targetTags"], json!(["nobody-yet", "web"]));
        assert_eq!(event["targetServers"], json!([]));
        app.post("/api/v1/events", json!({ "name": "bad", "interpreter": "bash", "content": "x\n", "targetTags": ["a b"] }))
            .expect_error(422, "validation_failed", Some("targetTags"));
        app.post("/api/v1/events", json!({ "name": "bad", "interpreter": "bash", "content": "x\n", "runLocation": "local", "targetTags": ["web"] }))
            .expect_error(422, "validation_failed", Some("targetTags"));
        // Clearing the servers keeps it remote while tags remain; clearing both makes it local.
        let eid = &event["id"];
        let kept = app.patch(&format!("/api/v1/events/{eid}"), json!({ "targetServers": [] })).expect(200);
        assert_eq!(kept["runLocation"], "remote");
        let local = app.patch(&format!("/api/v1/events/{eid}"), json!({ "targetTags": [] })).expect(200);
        assert_eq!(local["runLocation"], "local");
        // A server targeted only by tag may be removed.
        app.delete(&format!("/api/v1/servers/{id}")).expect(204);
    }

    fn a_servers_cache_dir_is_set_shown_reset_and_validated(backend: Backend) {
        let app = TestApp::spawn(backend);
        let base = json!({ "name": "web", "host": "10.0.0.5", "username": "deploy", "password": "pw" });
        let mut body = base.clone();
        body["cacheDir"] = json!("opt-cronium/cache");
        let web = app.post("/api/v1/servers", body).expect(201);
        assert_eq!(web["cacheDir"], "opt-cronium/cache");
        let id = &web["id"];
        let path = format!("/api/v1/servers/{id}");
        assert_eq!(app.get(&path).expect(200)["cacheDir"], "opt-cronium/cache");

        // Other changes leave it alone; a new one replaces it; "" resets it.
        assert_eq!(app.patch(&path, json!({ "port": 2222 })).expect(200)["cacheDir"], "opt-cronium/cache");
        assert_eq!(app.patch(&path, json!({ "cacheDir": "/srv/cronium" })).expect(200)["cacheDir"], "/srv/cronium");
        assert_eq!(app.get("/api/v1/servers").expect(200)[0]["cacheDir"], "/srv/cronium");
        assert_eq!(app.patch(&path, json!({ "cacheDir": "" })).expect(200)["cacheDir"], ".cache/cronium");

        // Refused values name the field, on create and on update, and change nothing.
        for bad in ["../up", "/", "a b", "x;id", "$HOME/x", "-rf", "a//b", "a/"] {
            let mut body = base.clone();
            body["name"] = json!("other");
            body["cacheDir"] = json!(bad);
            app.post("/api/v1/servers", body).expect_error(422, "validation_failed", Some("cacheDir"));
            app.patch(&path, json!({ "cacheDir": bad, "port": 22 }))
                .expect_error(422, "validation_failed", Some("cacheDir"));
        }
        let long = format!("/{}", "a".repeat(255));
        app.patch(&path, json!({ "cacheDir": long })).expect_error(422, "validation_failed", Some("cacheDir"));
        let unchanged = app.get(&path).expect(200);
        assert_eq!(unchanged["cacheDir"], ".cache/cronium");
        assert_eq!(unchanged["port"], 2222);
        assert_eq!(app.get("/api/v1/servers").expect(200).as_array().unwrap().len(), 1);

        // The audit names the field that changed.
        let audit = app.get("/api/v1/audit?limit=500").expect(200);
        let updates: Vec<&Value> = audit["items"].as_array().unwrap().iter()
            .filter(|e| e["action"] == "server.update")
            .collect();
        assert!(updates.iter().any(|e| e["detail"]["fields"] == json!(["cacheDir"])), "{updates:?}");
    }

    fn audit_log_records_mutations(backend: Backend) {
        let app = TestApp::spawn(backend);
        let editor = app.token("editor");
        let editor_id = app.get("/api/v1/tokens").expect(200).as_array().unwrap()
            .iter().find(|t| t["role"] == "editor").unwrap()["id"].clone();
        let e = app.call("POST", "/api/v1/events", &editor, Some(json!({
            "name": "audited", "interpreter": "bash", "content": "echo\n", "secretEnv": { "K": "top-secret-audit" },
        }))).expect(201);
        app.call("PATCH", &format!("/api/v1/events/{}", e["id"]), &editor, Some(json!({ "content": "echo 2\n", "secretEnv": { "K": "other-secret" } }))).expect(200);
        app.call("DELETE", &format!("/api/v1/events/{}", e["id"]), &editor, None).expect(204);
        let s = app.post("/api/v1/servers", json!({ "name": "s", "host": "h", "username": "u", "password": "pw-audit" })).expect(201);
        app.delete(&format!("/api/v1/servers/{}", s["id"])).expect(204);

        let log = app.get("/api/v1/audit?limit=500").expect(200);
        assert!(!log.to_string().contains("top-secret-audit") && !log.to_string().contains("pw-audit"));
        let items = log["items"].as_array().unwrap();
        assert_eq!(log["total"].as_u64().unwrap() as usize, items.len());
        let actions: Vec<&str> = items.iter().map(|r| r["action"].as_str().unwrap()).collect();
        // Newest first.
        let expected = ["server.delete", "server.create", "event.delete", "event.update", "event.create", "token.create"];
        assert_eq!(&actions[..expected.len()], expected, "{actions:?}");
        let by = |action: &str| items.iter().find(|r| r["action"] == action).unwrap();
        assert_eq!(by("event.create")["actor"], editor_id);
        assert_eq!(by("event.create")["targetType"], "event");
        assert_eq!(by("event.create")["targetId"], e["id"]);
        assert_eq!(by("event.update")["targetId"], e["id"]);
        let fields = by("event.update")["detail"]["fields"].clone();
        assert_eq!(fields, json!(["content", "secretEnv"]));
        assert_eq!(by("server.create")["targetId"], s["id"]);

        let page = app.get("/api/v1/audit?limit=2&offset=1").expect(200);
        assert_eq!(page["items"].as_array().unwrap().len(), 2);
        assert_eq!(page["items"][0]["action"], "server.create");
        assert_eq!(page["total"], log["total"]);
    }
}

/// A small deterministic generator of hostile JSON (xorshift; no dependency).
struct Chaos(u64);

impl Chaos {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn string(&mut self) -> String {
        const PIECES: [&str; 14] = [
            "bash",
            "python",
            "node",
            "echo hi\n",
            "0 3 * * *",
            "Europe/Berlin",
            "15m",
            "2026-12-01T10:00:00Z",
            "\u{0}",
            "ü",
            "\"",
            "💥",
            " ",
            "-1",
        ];
        let len = self.below(4);
        (0..len)
            .map(|_| PIECES[self.below(PIECES.len() as u64) as usize])
            .collect()
    }

    fn value(&mut self, depth: u32) -> Value {
        match self.below(if depth > 2 { 6 } else { 9 }) {
            0 => Value::Null,
            1 => json!(self.below(2) == 0),
            2 => json!(self.next() as i64),
            3 => json!(self.below(30) as i64 - 5),
            4 => json!((self.next() % 1000) as f64 / 7.0),
            5 => json!(self.string()),
            6 => Value::Array((0..self.below(4)).map(|_| self.value(depth + 1)).collect()),
            _ => self.object(depth + 1),
        }
    }

    fn object(&mut self, depth: u32) -> Value {
        const KEYS: [&str; 20] = [
            "name",
            "description",
            "kind",
            "interpreter",
            "content",
            "env",
            "secretEnv",
            "schedule",
            "status",
            "runLocation",
            "targetServers",
            "timeout",
            "retries",
            "tags",
            "type",
            "cron",
            "timezone",
            "every",
            "at",
            "A",
        ];
        let mut map = serde_json::Map::new();
        for _ in 0..self.below(7) {
            let key = KEYS[self.below(KEYS.len() as u64) as usize].to_string();
            map.insert(key, self.value(depth));
        }
        Value::Object(map)
    }
}

both_backends! {
    fn random_json_never_breaks_the_server(backend: Backend) {
        let app = TestApp::spawn(backend);
        let target = app.create_event(script_event("target"));
        let path = format!("/api/v1/events/{}", target["id"]);
        let mut chaos = Chaos(0x9E37_79B9_7F4A_7C15);
        let json_header = [("content-type", "application/json")];
        for i in 0..300 {
            let body = if i % 10 == 0 {
                // Not even JSON sometimes.
                (0..chaos.below(40)).map(|_| chaos.below(256) as u8).collect()
            } else {
                let mut v = chaos.object(0);
                if i % 3 == 0 {
                    v["name"] = json!(format!("fuzz-{i}"));
                    v["interpreter"] = json!("bash");
                }
                serde_json::to_vec(&v).unwrap()
            };
            let (method, target_path) = if i % 2 == 0 { ("POST", "/api/v1/events") } else { ("PATCH", path.as_str()) };
            let resp = app.send(method, target_path, Some(&app.admin_token), &json_header, Some(body.clone()));
            assert!(
                [200, 201, 400, 409, 422].contains(&resp.status),
                "{method} {} -> {}: {}",
                String::from_utf8_lossy(&body),
                resp.status,
                resp.text()
            );
            assert!(resp.json()["error"].is_object() || resp.status < 300);
        }
        // Still consistent: every payload row has its two files and nothing else is on disk.
        let mut rows = 0;
        let list = app.get("/api/v1/events?limit=500").expect(200);
        for event in list["items"].as_array().unwrap() {
            rows += app.get(&format!("/api/v1/events/{}/payloads", event["id"])).expect(200).as_array().unwrap().len();
        }
        assert_eq!(common::files_under(&app.payload_dir()).len(), 2 * rows);
    }
}

//! The payload lifecycle over the API, on SQLite and PostgreSQL: versions, files on disk, retention, cascade delete, the start-up sweep.

mod common;

use std::process::Command;

use common::{TestApp, contains, files_under, script_event};
use serde_json::{Value, json};

fn payloads(app: &TestApp, id: &Value) -> Vec<Value> {
    app.get(&format!("/api/v1/events/{id}/payloads"))
        .expect(200)
        .as_array()
        .unwrap()
        .clone()
}

fn versions(app: &TestApp, id: &Value) -> Vec<u64> {
    payloads(app, id)
        .iter()
        .map(|p| p["version"].as_u64().unwrap())
        .collect()
}

both_backends! {
    fn lifecycle(backend: Backend) {
        let app = TestApp::spawn(backend);
        let event = app.create_event(json!({
            "name": "backup",
            "interpreter": "bash",
            "content": "#!/bin/bash\necho backing up\n",
            "env": { "TARGET": "/srv/backup" },
            "tags": ["nightly"],
        }));
        let id = &event["id"];
        assert_eq!(event["payloadVersion"], 1);

        // v1: a row, a file, a checksum file that sha256sum accepts.
        let rows = payloads(&app, id);
        assert_eq!(rows.len(), 1);
        let v1 = &rows[0];
        assert_eq!(v1["version"], 1);
        assert_eq!(v1["isActive"], true);
        assert_eq!(v1["payloadPath"], format!("payloads/{id}/v1.tar.gz"));
        let file = app.data_dir.join(v1["payloadPath"].as_str().unwrap());
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(bytes.len() as u64, v1["size"].as_u64().unwrap());
        let check = Command::new("sha256sum")
            .args(["-c", "v1.tar.gz.sha256"])
            .current_dir(file.parent().unwrap())
            .output()
            .unwrap();
        assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
        assert!(String::from_utf8_lossy(&check.stdout).contains("v1.tar.gz: OK"));

        // The download is the same bytes, with its checksum in a header.
        let download = app.get(&format!("/api/v1/events/{id}/payloads/1"));
        assert_eq!(download.status, 200);
        assert_eq!(download.header("content-type"), Some("application/gzip"));
        assert_eq!(download.header("x-checksum-sha256"), v1["checksum"].as_str());
        assert_eq!(download.body, bytes);
        let listing = cronium_payload::read_manifest(&download.body[..], &Default::default()).unwrap();
        assert_eq!(listing.manifest.metadata.event_version, Some(1));
        assert_eq!(listing.manifest.environment.len(), 1);

        // Renames, schedule, tag, status, timeout and secret changes make no new version.
        for change in [
            json!({ "name": "backup-renamed" }),
            json!({ "schedule": { "type": "cron", "cron": "0 3 * * *", "timezone": "Europe/Berlin" } }),
            json!({ "tags": ["weekly", "db"] }),
            json!({ "status": "paused", "timeout": "2h", "retries": 3, "description": "d" }),
            json!({ "secretEnv": { "TOKEN": "abc" } }),
        ] {
            let updated = app.patch(&format!("/api/v1/events/{id}"), change.clone()).expect(200);
            assert_eq!(updated["payloadVersion"], 1, "{change}");
        }
        assert_eq!(versions(&app, id), [1]);

        // Content, interpreter and env changes each make a new active version.
        let steps = [
            (json!({ "content": "echo v2\n" }), 2),
            (json!({ "interpreter": "python", "content": "print('v3')\n" }), 3),
            (json!({ "env": { "TARGET": "/srv/other" } }), 4),
        ];
        for (change, version) in steps {
            let updated = app.patch(&format!("/api/v1/events/{id}"), change.clone()).expect(200);
            assert_eq!(updated["payloadVersion"], version, "{change}");
        }
        let rows = payloads(&app, id);
        assert_eq!(rows.iter().map(|p| p["version"].as_u64().unwrap()).collect::<Vec<_>>(), [4, 3, 2, 1]);
        let active: Vec<_> = rows.iter().filter(|p| p["isActive"] == true).collect();
        assert_eq!(active.len(), 1, "exactly one active payload");
        assert_eq!(active[0]["version"], 4);
        let shown = app.get(&format!("/api/v1/events/{id}")).expect(200);
        assert_eq!(shown["payloadVersion"], 4);
        assert_eq!(shown["interpreter"], "python");
        let v3 = app.get(&format!("/api/v1/events/{id}/payloads/3"));
        let listing = cronium_payload::read_manifest(&v3.body[..], &Default::default()).unwrap();
        assert_eq!(listing.manifest.interpreter.as_str(), "python");
        app.get(&format!("/api/v1/events/{id}/payloads/9")).expect_error(404, "not_found", None);

        // Every version has its two files, and nothing else is there.
        let mut expected: Vec<String> = (1..=4)
            .flat_map(|v| [format!("{id}/v{v}.tar.gz"), format!("{id}/v{v}.tar.gz.sha256")])
            .collect();
        expected.sort();
        assert_eq!(files_under(&app.payload_dir()), expected);

        // Delete: rows, files and the directory go.
        app.delete(&format!("/api/v1/events/{id}")).expect(204);
        app.get(&format!("/api/v1/events/{id}")).expect_error(404, "not_found", None);
        app.get(&format!("/api/v1/events/{id}/payloads")).expect_error(404, "not_found", None);
        app.get(&format!("/api/v1/events/{id}/payloads/1")).expect_error(404, "not_found", None);
        assert!(!app.payload_dir().join(id.to_string()).exists());
        assert!(files_under(&app.payload_dir()).is_empty());
        app.delete(&format!("/api/v1/events/{id}")).expect_error(404, "not_found", None);
    }

    fn retention_keeps_the_newest_versions(backend: Backend) {
        let app = TestApp::spawn_with(backend, |c| c.payload_retention = 2);
        let event = app.create_event(script_event("pruned"));
        let id = &event["id"];
        for n in 2..=5 {
            let updated = app
                .patch(&format!("/api/v1/events/{id}"), json!({ "content": format!("echo {n}\n") }))
                .expect(200);
            assert_eq!(updated["payloadVersion"], n);
        }
        assert_eq!(versions(&app, id), [5, 4]);
        assert_eq!(
            files_under(&app.payload_dir()),
            [
                format!("{id}/v4.tar.gz"),
                format!("{id}/v4.tar.gz.sha256"),
                format!("{id}/v5.tar.gz"),
                format!("{id}/v5.tar.gz.sha256"),
            ]
        );
        // Version numbers keep counting after pruning.
        let updated = app
            .patch(&format!("/api/v1/events/{id}"), json!({ "content": "echo 6\n" }))
            .expect(200);
        assert_eq!(updated["payloadVersion"], 6);
        assert_eq!(versions(&app, id), [6, 5]);
    }

    fn pruning_is_audited_as_the_token_that_caused_it(backend: Backend) {
        let app = TestApp::spawn_with(backend, |c| c.payload_retention = 1);
        let editor = app.post("/api/v1/tokens", json!({ "name": "ci", "role": "editor" })).expect(201);
        let secret = editor["token"].as_str().unwrap();
        let event = app
            .call("POST", "/api/v1/events", secret, Some(script_event("pruned")))
            .expect(201);
        let id = &event["id"];
        for n in 2..=3 {
            app.call("PATCH", &format!("/api/v1/events/{id}"), secret, Some(json!({ "content": format!("echo {n}\n") })))
                .expect(200);
        }
        assert_eq!(versions(&app, id), [3]);

        let log = app.get("/api/v1/audit").expect(200);
        let prunes: Vec<&Value> = log["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == "payload.prune")
            .collect();
        assert_eq!(prunes.len(), 2, "{log}");
        for (record, pruned) in prunes.iter().zip([2, 1]) {
            assert_eq!(record["actor"], editor["id"], "{record}");
            assert_eq!(record["targetType"], "event");
            assert_eq!(&record["targetId"], id);
            assert_eq!(record["detail"], json!({ "keep": 1, "versions": [pruned] }));
            assert!(record["at"].is_string());
        }
    }

    fn secrets_never_reach_a_payload_or_the_database_in_clear(backend: Backend) {
        let app = TestApp::spawn(backend);
        let secret = "Sup3r-S3cret-Value-4711";
        let event = app.create_event(json!({
            "name": "with-secret",
            "interpreter": "bash",
            "content": "echo \"$DB_PASSWORD\" | wc -c\n",
            "env": { "PLAIN": "visible" },
            "secretEnv": { "DB_PASSWORD": secret },
        }));
        assert_eq!(event["secretEnvKeys"], json!(["DB_PASSWORD"]));
        assert!(!event.to_string().contains(secret));
        let id = &event["id"];
        // A second version, and a secret replaced through PATCH.
        app.patch(&format!("/api/v1/events/{id}"), json!({ "content": "echo 2\n" })).expect(200);
        let other = format!("{secret}-rotated");
        let updated = app
            .patch(&format!("/api/v1/events/{id}"), json!({ "secretEnv": { "DB_PASSWORD": other, "API_KEY": "k-123456789" } }))
            .expect(200);
        assert_eq!(updated["secretEnvKeys"], json!(["API_KEY", "DB_PASSWORD"]));

        let shown = app.get(&format!("/api/v1/events/{id}")).text();
        let listed = app.get("/api/v1/events").text();
        let audit = app.get("/api/v1/audit").text();
        for text in [&shown, &listed, &audit] {
            assert!(!text.contains(secret) && !text.contains("k-123456789"));
        }

        // Payload files: the plain value is there (it is meant to be), the secret is not.
        let mut payload_bytes = Vec::new();
        for file in files_under(&app.payload_dir()) {
            payload_bytes.extend(std::fs::read(app.payload_dir().join(file)).unwrap());
        }
        for v in [1, 2] {
            let body = app.get(&format!("/api/v1/events/{id}/payloads/{v}")).body;
            let listing = cronium_payload::read_manifest(&body[..], &Default::default()).unwrap();
            assert!(listing.manifest.environment.keys().all(|k| k.as_str() == "PLAIN"));
            let mut tar = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut tar).unwrap();
            assert!(contains(&tar, b"visible"));
            assert!(!contains(&tar, secret.as_bytes()));
        }
        assert!(!contains(&payload_bytes, secret.as_bytes()));

        // The database, all of it (SQLite file + WAL, or a pg_dump).
        let db = common::database_bytes(&app);
        for needle in [secret.to_string(), other.clone(), "k-123456789".into()] {
            assert!(!contains(&db, needle.as_bytes()), "{needle} in the database");
            assert!(!contains(&db, common::hex(&needle).as_bytes()), "{needle} (hex) in the database");
        }
        assert!(contains(&db, b"visible"), "the search does see plain values");
    }

    fn sweep_removes_orphans_left_by_a_crash(backend: Backend) {
        let mut app = TestApp::spawn(backend);
        let kept = app.create_event(script_event("kept"));
        let kept_id = &kept["id"];
        app.patch(&format!("/api/v1/events/{kept_id}"), json!({ "content": "echo 2\n" })).expect(200);
        let before = files_under(&app.payload_dir());
        assert_eq!(before.len(), 4);
        app.stop();

        // The state a crash leaves: the file of a version whose row never
        // committed (next version of a real event, and an event that never
        // was), and half-written temp files.
        let dir = app.payload_dir();
        std::fs::write(dir.join(format!("{kept_id}/v3.tar.gz")), b"no row").unwrap();
        std::fs::write(dir.join(format!("{kept_id}/v3.tar.gz.sha256")), b"no row").unwrap();
        std::fs::write(dir.join(format!("{kept_id}/.v3.tar.gz.tmp-999-0")), b"partial").unwrap();
        std::fs::create_dir(dir.join("424242")).unwrap();
        std::fs::write(dir.join("424242/v1.tar.gz"), b"no row").unwrap();
        std::fs::write(dir.join("424242/.v1.tar.gz.sha256.tmp-999-1"), b"partial").unwrap();
        // And a row whose file went missing (reported, not fatal).
        std::fs::remove_file(dir.join(format!("{kept_id}/v1.tar.gz.sha256"))).unwrap();

        app.start();
        let after = files_under(&app.payload_dir());
        let mut want: Vec<String> = before.into_iter().filter(|f| !f.ends_with("v1.tar.gz.sha256")).collect();
        want.sort();
        assert_eq!(after, want);
        assert!(!dir.join("424242").exists());
        // The real payloads still serve, and the next version is 3.
        assert_eq!(app.get(&format!("/api/v1/events/{kept_id}/payloads/2")).status, 200);
        let updated = app.patch(&format!("/api/v1/events/{kept_id}"), json!({ "content": "echo 3\n" })).expect(200);
        assert_eq!(updated["payloadVersion"], 3);
        let v3 = app.get(&format!("/api/v1/events/{kept_id}/payloads/3"));
        assert_eq!(v3.status, 200);
        assert_ne!(v3.body, b"no row");
        // A restart keeps the admin token and the master key.
        app.get("/api/v1/events").expect(200);
    }

    fn failed_update_leaves_no_file(backend: Backend) {
        let app = TestApp::spawn(backend);
        let a = app.create_event(script_event("a"));
        app.create_event(script_event("b"));
        let id = &a["id"];
        // A content change (new payload) that fails on the name: nothing is written.
        app.patch(&format!("/api/v1/events/{id}"), json!({ "name": "b", "content": "echo new\n" }))
            .expect_error(409, "conflict", Some("name"));
        assert_eq!(versions(&app, id), [1]);
        assert!(!app.payload_dir().join(format!("{id}/v2.tar.gz")).exists());
        assert_eq!(files_under(&app.payload_dir().join(id.to_string())).len(), 2);
        // And the next successful change is v2, with no gap.
        let updated = app.patch(&format!("/api/v1/events/{id}"), json!({ "content": "echo new\n" })).expect(200);
        assert_eq!(updated["payloadVersion"], 2);
    }

    fn concurrent_updates_get_distinct_versions(backend: Backend) {
        let app = TestApp::spawn(backend);
        let event = app.create_event(script_event("busy"));
        let id = event["id"].clone();
        std::thread::scope(|s| {
            for t in 0..4 {
                let app = &app;
                let id = &id;
                s.spawn(move || {
                    for n in 0..3 {
                        app.patch(&format!("/api/v1/events/{id}"), json!({ "content": format!("echo {t}-{n}\n") }))
                            .expect(200);
                    }
                });
            }
        });
        let shown = app.get(&format!("/api/v1/events/{id}")).expect(200);
        assert_eq!(shown["payloadVersion"], 13);
        // Retention 5: the newest five, each with both files.
        assert_eq!(versions(&app, &id), [13, 12, 11, 10, 9]);
        assert_eq!(files_under(&app.payload_dir()).len(), 10);
    }
}

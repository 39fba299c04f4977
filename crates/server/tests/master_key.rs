//! Every server on one database must use the same master key, and needs nothing from another's disk: the database remembers the key its secrets are sealed with (a sealed canary), a server started with another key refuses to start and says so, and one with the same key and an empty data dir runs an event another server created (its payload fetched from the database); on SQLite and PostgreSQL.

mod common;

use common::TestApp;
use cronium_engine::secrets::MasterKey;
use serde_json::json;

both_backends! {
    fn a_server_needs_the_same_master_key_and_nothing_from_another_servers_disk(backend: Backend) {
        let mut app = TestApp::spawn(backend);
        let event = app.create_event(json!({
            "name": "sealed", "interpreter": "bash",
            "content": "echo \"${#TOKEN} characters\"\n",
            "secretEnv": { "TOKEN": "s3cret-value" },
        }));
        let first_key = std::fs::read_to_string(app.data_dir.join("master.key")).unwrap();

        // A second server on the same database, with a data dir (and so a
        // master key) of its own.
        let other = tempfile::tempdir().unwrap();
        let mut config = app.config.clone();
        config.data_dir = other.path().join("data");
        config.listen = "127.0.0.1:0".into();
        config.database_url = Some(app.config.database_url_for(&app.data_dir));
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let refused = runtime
            .block_on(cronium_server::start(config.clone()))
            .err()
            .expect("a server with another master key must not start");
        let message = format!("{refused:#}");
        assert!(
            message.contains("is not the key this database's secrets are sealed with")
                && message.contains(&config.data_dir.join("master.key").display().to_string())
                && message.contains("CRONIUM_MASTER_KEY"),
            "{message}"
        );
        // Nothing was written with the wrong key: the first server still
        // runs the event with its secret.
        let job = common::run_to_end(&app, event["id"].as_i64().unwrap());
        assert_eq!(common::output(&app, job["id"].as_i64().unwrap(), "stdout"), "12 characters\n");

        // With the first server's key (CRONIUM_MASTER_KEY), it starts.
        // With the first server gone, it runs the event the first one
        // created: the payload comes from the database (this data dir has
        // none), the secret opens under the shared key.
        config.master_key = Some(MasterKey::from_hex(&first_key).unwrap());
        let second = runtime.block_on(cronium_server::start(config)).unwrap();
        app.stop();
        let token = std::fs::read_to_string(second.data_dir().join("admin.token")).unwrap();
        let base = format!("http://{}/api/v1", second.local_addr());
        let auth = format!("Bearer {}", token.trim());
        let get = |path: &str| -> serde_json::Value {
            ureq::get(&format!("{base}{path}")).header("Authorization", &auth).call().unwrap().body_mut().read_json().unwrap()
        };
        let queued: serde_json::Value = ureq::post(&format!("{base}/events/{}/run", event["id"]))
            .header("Authorization", &auth)
            .send_json(json!({}))
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        let id = queued["id"].as_i64().unwrap();
        let done = common::wait_for("the job on the second server", std::time::Duration::from_secs(30), || {
            let job = get(&format!("/jobs/{id}"));
            (!matches!(job["status"].as_str(), Some("queued" | "running"))).then_some(job)
        });
        assert_eq!(done["status"], "succeeded", "{done}");
        let lines = get(&format!("/jobs/{id}/logs"));
        let stdout: Vec<&str> = lines["items"].as_array().unwrap().iter()
            .filter(|l| l["stream"] == "stdout").filter_map(|l| l["text"].as_str()).collect();
        assert_eq!(stdout, ["12 characters\n"]);
        assert!(second.data_dir().join(done["payloadPath"].as_str().unwrap()).exists(), "kept as the second server's cache");
        runtime.block_on(second.stop()).unwrap();
    }
}

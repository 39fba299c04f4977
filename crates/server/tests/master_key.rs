//! Every server on one database must use the same master key: the database remembers the key its secrets are sealed with (a sealed canary), a server started with another key refuses to start and says so, and one with the same key starts and serves the same data; on SQLite and PostgreSQL.

mod common;

use common::TestApp;
use cronium_engine::secrets::MasterKey;
use serde_json::json;

both_backends! {
    fn a_server_with_another_master_key_refuses_to_start(backend: Backend) {
        let app = TestApp::spawn(backend);
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

        // With the first server's key (CRONIUM_MASTER_KEY), it starts and
        // serves the same data.
        config.master_key = Some(MasterKey::from_hex(&first_key).unwrap());
        let second = runtime.block_on(cronium_server::start(config)).unwrap();
        let token = std::fs::read_to_string(second.data_dir().join("admin.token")).unwrap();
        let url = format!("http://{}/api/v1/events/{}", second.local_addr(), event["id"]);
        let mut answer = ureq::get(&url)
            .header("Authorization", &format!("Bearer {}", token.trim()))
            .call()
            .unwrap();
        let shown: serde_json::Value = answer.body_mut().read_json().unwrap();
        assert_eq!(shown["secretEnv"], event["secretEnv"], "{shown}");
        runtime.block_on(second.stop()).unwrap();
    }
}

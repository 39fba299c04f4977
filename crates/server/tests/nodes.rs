//! `/api/v1/nodes`: every server on one database heartbeats its row, stamped with the database's clock, and each lists the others; on SQLite and PostgreSQL.

mod common;

use std::time::Duration;

use common::{TestApp, wait_for};
use cronium_engine::secrets::MasterKey;
use serde_json::Value;

fn nodes(app: &TestApp) -> Value {
    app.get("/api/v1/nodes").expect(200)
}

both_backends! {
    fn every_server_on_the_database_is_listed_with_its_heartbeat(backend: Backend) {
        let app = TestApp::spawn(backend);
        let listed = wait_for("the first heartbeat", Duration::from_secs(10), || {
            let n = nodes(&app);
            (n["items"].as_array().unwrap().len() == 1).then_some(n)
        });
        let me = &listed["items"][0];
        assert_eq!(me["address"], app.base.trim_start_matches("http://"), "{me}");
        assert_eq!(me["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!((me["alive"].clone(), me["clockSkewed"].clone()), (Value::Bool(true), Value::Bool(false)));
        assert!(me["clockOffsetMs"].as_i64().unwrap().abs() < 2000, "{me}");
        assert_eq!(me["runningJobs"], 0);
        assert!(me["heartbeatAt"].as_str().unwrap() <= listed["databaseTime"].as_str().unwrap(), "{listed}");
        let id = me["id"].as_str().unwrap().to_string();
        assert!(id.contains(&format!("/{}/", std::process::id())), "host/pid/tag: {id}");

        // A second server on the same database (same master key) is listed
        // beside it, by both.
        let other = tempfile::tempdir().unwrap();
        let mut config = app.config.clone();
        config.data_dir = other.path().join("data");
        config.listen = "127.0.0.1:0".into();
        config.database_url = Some(app.config.database_url_for(&app.data_dir));
        let key = std::fs::read_to_string(app.data_dir.join("master.key")).unwrap();
        config.master_key = Some(MasterKey::from_hex(&key).unwrap());
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let second = runtime.block_on(cronium_server::start(config)).unwrap();
        let both = wait_for("the second server's heartbeat", Duration::from_secs(10), || {
            let n = nodes(&app);
            (n["items"].as_array().unwrap().len() == 2).then_some(n)
        });
        let addresses: Vec<&str> = both["items"].as_array().unwrap().iter().map(|n| n["address"].as_str().unwrap()).collect();
        assert!(addresses.contains(&second.local_addr().to_string().as_str()), "{both}");
        assert!(both["items"].as_array().unwrap().iter().all(|n| n["alive"] == true), "{both}");
        runtime.block_on(second.stop()).unwrap();
    }
}

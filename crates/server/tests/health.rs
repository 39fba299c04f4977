//! `/healthz` asks the database, on SQLite and PostgreSQL: 200 while it answers, 503 `unavailable` once it cannot.
//!
//! These tests build the router around a store they keep a handle on
//! (`cronium_server::start` owns its store), so they can close that store's
//! connection pool under the running server: a database that has gone away,
//! without stopping the PostgreSQL cluster the other tests share.

use std::sync::Arc;
use std::time::Duration;

use cronium_engine::payloads;
use cronium_engine::secrets::{MasterKey, Sealer};
use cronium_server::state::{AppState, Shared};
use cronium_server::{api, metrics};
use cronium_store::testing::{TestPostgres, sqlite_url};
use cronium_store::{PgStore, SqliteStore, Store};
use serde_json::{Value, json};

/// Serves the API over `store` on a free port; returns its base URL.
async fn serve(store: Arc<dyn Store>, data_dir: &std::path::Path) -> String {
    let state = AppState::new(Shared {
        store,
        sealer: Sealer::new(&MasterKey::generate()),
        http_guard: Default::default(),
        payloads: payloads::PayloadFiles::new(data_dir),
        retention: 5,
        metrics: metrics::Metrics::default(),
        payload_lock: tokio::sync::Mutex::new(()),
        hub: Default::default(),
        running: Default::default(),
        jobs_queued: Default::default(),
        schedules_changed: Default::default(),
        ui: Default::default(),
        trusted_proxies: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, api::router(state)).await });
    base
}

/// `GET /healthz`: the status and the JSON body.
async fn health(base: &str) -> (u16, Value) {
    let url = format!("{base}/healthz");
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::new_with_config(
            ureq::config::Config::builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(30)))
                .build(),
        );
        let mut response = agent.get(&url).call().unwrap();
        let status = response.status().as_u16();
        let body = response.body_mut().read_json::<Value>().unwrap();
        (status, body)
    })
    .await
    .unwrap()
}

/// Asserts 503 with the standard error body.
fn assert_unavailable((status, body): (u16, Value)) {
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_503_once_the_sqlite_database_does_not_answer() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(&sqlite_url(dir.path())).await.unwrap();
    let base = serve(Arc::new(store.clone()), dir.path()).await;

    assert_eq!(
        health(&base).await,
        (200, json!({ "status": "ok", "database": "sqlite" }))
    );
    // The clone shares the server's pool.
    store.pool().close().await;
    assert_unavailable(health(&base).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_503_once_the_postgres_database_does_not_answer() {
    let dir = tempfile::tempdir().unwrap();
    let url = tokio::task::spawn_blocking(TestPostgres::fresh_database)
        .await
        .unwrap();
    let store = PgStore::connect(&url).await.unwrap();
    let base = serve(Arc::new(store.clone()), dir.path()).await;

    assert_eq!(
        health(&base).await,
        (200, json!({ "status": "ok", "database": "postgres" }))
    );
    store.pool().close().await;
    assert_unavailable(health(&base).await);
}

//! The delivery loop as `cronium serve` starts it: a job that fails on the real server notifies a loopback receiver (allowed in the server's config) with a link to the job, on SQLite and PostgreSQL.

#[macro_use]
mod common;

use std::time::Duration;

use common::{TestApp, wait_for};
use cronium_core::{
    ActionSpec, ActionTarget, ChannelKind, ChannelName, ChannelSpec, EventId, JobId, When,
};
use cronium_engine::secrets::{MasterKey, Sealer};
use cronium_exec::guard::Allow;
use cronium_exec::testing::sink::{Answer, Sink};
use cronium_store::{AuditEntry, DeliveryStatus};
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(30);

both_backends! {
    fn a_failed_job_on_the_server_notifies_its_channel(backend: Backend) {
        let sink = Sink::always(Answer::status("200 OK", ""));
        let key = MasterKey::generate();
        let app = TestApp::spawn_with(backend, |c| {
            c.http_allow = vec![Allow::parse("127.0.0.1/32").unwrap()];
            c.public_url = Some("https://cron.example.com".into());
            c.master_key = Some(key.clone());
        });
        let event = app.create_event(json!({
            "name": "fails", "interpreter": "bash", "content": "exit 3\n",
        }));
        let event_id = EventId(event["id"].as_i64().unwrap());

        // Channels and actions have no API on this branch: set them up in
        // the server's own database, the secret sealed with its key.
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let url = app.config.database_url_for(&app.data_dir);
        let store = runtime.block_on(cronium_store::open(&url)).unwrap();
        let audit = AuditEntry {
            at: cronium_server::now(),
            actor: None,
            action: "test".into(),
            target_type: "channel".into(),
            target_id: None,
            detail: json!({}),
        };
        runtime.block_on(async {
            let channel = store
                .create_channel(
                    ChannelSpec {
                        name: ChannelName::new("ops").unwrap(),
                        kind: ChannelKind::Webhook,
                        url: sink.url("/hook"),
                        sealed_secret: Sealer::new(&key).seal_channel_secret("whsec_c2VjcmV0"),
                        email: None,
                    },
                    cronium_server::now(),
                    &audit,
                )
                .await
                .unwrap();
            store
                .add_action(
                    event_id,
                    ActionSpec::new(When::Failure, None, ActionTarget::Notify(channel.id)).unwrap(),
                    cronium_server::now(),
                    &audit,
                )
                .await
                .unwrap();
        });

        let job = app.post(&format!("/api/v1/events/{}/run", event_id.0), json!({})).expect(201);
        let job_id = job["id"].as_i64().unwrap();
        let request = wait_for("the webhook", PATIENCE, || sink.received().into_iter().next());
        let body: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["data"]["job"]["id"], job_id);
        assert_eq!(body["data"]["job"]["status"], "failed");
        assert_eq!(body["data"]["job"]["exitCode"], 3);
        assert_eq!(
            body["data"]["link"],
            format!("https://cron.example.com/api/v1/jobs/{job_id}")
        );
        assert!(request.header("webhook-signature").unwrap().starts_with("v1,"));
        let delivered = wait_for("the delivery recorded", PATIENCE, || {
            let all = runtime.block_on(store.job_deliveries(JobId(job_id))).unwrap();
            all.into_iter().find(|d| d.status == DeliveryStatus::Delivered)
        });
        assert_eq!(request.header("webhook-id"), Some(delivered.webhook_id().as_str()));
        assert_eq!(sink.received().len(), 1);
    }
}

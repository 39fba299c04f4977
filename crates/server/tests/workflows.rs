//! Workflow definitions over the API, on SQLite and PostgreSQL: applied as versions only when they change, refused whole with the node or field named, and holding on to the events they run.

mod common;

use common::{TestApp, script_event};
use serde_json::{Value, json};

fn definition(after: Value) -> Value {
    json!({
        "name": "nightly",
        "trigger": { "type": "cron", "cron": "0 2 * * *", "timezone": "UTC" },
        "nodes": [
            { "id": "fetch", "event": "fetch-data" },
            { "id": "report", "event": "make-report", "after": after },
        ],
    })
}

fn workflow_audit(app: &TestApp) -> Vec<Value> {
    app.get("/api/v1/audit?limit=500").expect(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["targetType"] == "workflow")
        .cloned()
        .collect()
}

both_backends! {
    fn apply_is_versioned_only_when_the_definition_changes(backend: Backend) {
        let app = TestApp::spawn(backend);
        app.create_event(script_event("fetch-data"));
        let report = app.create_event(script_event("make-report"));

        let created = app.post("/api/v1/workflows", definition(json!(["fetch"]))).expect(201);
        assert_eq!((created["name"].clone(), created["version"].clone()), (json!("nightly"), json!(1)));
        assert_eq!((created["changed"].clone(), created["previousVersion"].clone()), (json!(true), Value::Null));
        assert_eq!(created["definition"]["nodes"][1]["after"], json!(["fetch"]));
        assert_eq!(created["definition"]["trigger"]["cron"], "0 2 * * *");
        let id = created["id"].as_i64().unwrap();
        assert_eq!(workflow_audit(&app).len(), 1);

        // The same definition, written differently (a long edge on success,
        // the default join spelled out): unchanged, no version, no audit entry.
        let again = definition(json!([{ "node": "fetch", "on": "success" }]));
        let mut again = again;
        again["nodes"][1]["join"] = json!("all");
        let same = app.post("/api/v1/workflows", again).expect(200);
        assert_eq!((same["changed"].clone(), same["version"].clone()), (json!(false), json!(1)));
        assert_eq!(same["updatedAt"], created["updatedAt"]);
        assert_eq!(workflow_audit(&app).len(), 1);

        // A change, with the event now named by id: version 2.
        let mut changed = definition(json!([{ "node": "fetch", "on": "failure" }]));
        changed["nodes"][1]["event"] = report["id"].clone();
        let updated = app.post("/api/v1/workflows", changed).expect(200);
        assert_eq!(
            (updated["changed"].clone(), updated["version"].clone(), updated["previousVersion"].clone()),
            (json!(true), json!(2), json!(1))
        );
        assert_eq!(updated["id"], id);
        let shown = app.get(&format!("/api/v1/workflows/{id}")).expect(200);
        assert_eq!(shown["version"], 2);
        assert_eq!(shown["definition"], updated["definition"]);
        assert_eq!(shown["definition"]["nodes"][1]["event"], report["id"]);
        let audit = workflow_audit(&app);
        assert_eq!(audit.len(), 2);
        assert_eq!(audit[0]["action"], "workflow.apply");
        assert_eq!(audit[0]["targetId"], id);
        assert_eq!(audit[0]["detail"], json!({ "name": "nightly", "version": 2 }));

        let listed = app.get("/api/v1/workflows?limit=10").expect(200);
        assert_eq!((listed["total"].clone(), listed["limit"].clone()), (json!(1), json!(10)));
        assert_eq!(listed["items"][0], shown);

        app.delete(&format!("/api/v1/workflows/{id}")).expect(204);
        app.delete(&format!("/api/v1/workflows/{id}")).expect_error(404, "not_found", None);
        app.get(&format!("/api/v1/workflows/{id}")).expect_error(404, "not_found", None);
        assert_eq!(workflow_audit(&app)[0]["action"], "workflow.delete");
        assert_eq!(app.get("/api/v1/workflows").expect(200)["total"], 0);
    }

    fn refusals_name_the_cycle_the_node_or_the_field(backend: Backend) {
        let app = TestApp::spawn(backend);
        app.create_event(script_event("fetch-data"));
        app.create_event(script_event("make-report"));

        let mut cycle = definition(json!(["report"]));
        cycle["nodes"][0]["after"] = json!(["report"]);
        cycle["nodes"][1]["after"] = json!(["fetch"]);
        let refused = app.post("/api/v1/workflows", cycle).expect(422);
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(message.contains("cycle"), "{message}");
        assert!(message.contains("fetch") && message.contains("report"), "{message}");

        let mut missing = definition(json!(["fetch"]));
        missing["nodes"][1]["event"] = json!("no-such-event");
        let refused = app.post("/api/v1/workflows", missing)
            .expect_error(422, "validation_failed", Some("nodes[1].event"));
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(message.contains("\"report\"") && message.contains("no-such-event"), "{message}");

        let mut bad_on = definition(json!([{ "node": "fetch", "on": "sometimes" }]));
        bad_on["nodes"][0]["id"] = json!("fetch");
        app.post("/api/v1/workflows", bad_on).expect(422);
        app.post("/api/v1/workflows", json!({ "name": "x", "nodes": [] })).expect(422);
        assert_eq!(app.get("/api/v1/workflows").expect(200)["total"], 0);
        assert!(workflow_audit(&app).is_empty());
    }

    fn an_event_a_workflow_runs_cannot_be_deleted_until_the_workflow_goes(backend: Backend) {
        let app = TestApp::spawn(backend);
        let fetch = app.create_event(script_event("fetch-data"));
        app.create_event(script_event("make-report"));
        let created = app.post("/api/v1/workflows", definition(json!(["fetch"]))).expect(201);
        let event_path = format!("/api/v1/events/{}", fetch["id"]);
        let refused = app.delete(&event_path).expect_error(409, "conflict", Some("event"));
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(message.contains("\"nightly\""), "{message}");
        app.get(&event_path).expect(200);

        app.delete(&format!("/api/v1/workflows/{}", created["id"])).expect(204);
        app.delete(&event_path).expect(204);
    }

    fn viewers_read_and_editors_apply(backend: Backend) {
        let app = TestApp::spawn(backend);
        app.create_event(script_event("fetch-data"));
        app.create_event(script_event("make-report"));
        let viewer = app.token("viewer");
        let editor = app.token("editor");
        app.call("POST", "/api/v1/workflows", &viewer, Some(definition(json!(["fetch"]))))
            .expect_error(403, "forbidden", None);
        let created = app.post("/api/v1/workflows", definition(json!(["fetch"]))).expect(201);
        // The tokens act for the admin, whose workflow this is.
        let same = app.call("POST", "/api/v1/workflows", &editor, Some(definition(json!(["fetch"]))))
            .expect(200);
        assert_eq!((same["id"].clone(), same["changed"].clone()), (created["id"].clone(), json!(false)));
        let path = format!("/api/v1/workflows/{}", created["id"]);
        app.call("GET", &path, &viewer, None).expect(200);
        app.call("GET", "/api/v1/workflows", &viewer, None).expect(200);
        app.call("DELETE", &path, &viewer, None).expect_error(403, "forbidden", None);
        app.call("DELETE", &path, &editor, None).expect(204);
    }
}

//! Workflow runs end to end on SQLite and PostgreSQL, with the real runner and real bash and python scripts: data along a diamond, a failure branch taking over, skips propagating to a `join: any`, fail fast, cancel, retry of the failed part, a run that keeps its pinned definition and payloads while both are edited, and the webhook trigger (its key, its signature, its idempotency key).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{TestApp, add_server, output, wait_for};
use cronium_engine::signing::SigningKey;
use cronium_exec::guard::Allow;
use cronium_exec::testing::sink::{Answer, Sink};
use cronium_ssh::testing::TestSshd;
use serde_json::{Value, json};

fn event(app: &TestApp, name: &str, interpreter: &str, script: &str) -> i64 {
    app.create_event(json!({ "name": name, "interpreter": interpreter, "content": script }))["id"]
        .as_i64()
        .unwrap()
}

fn apply(app: &TestApp, definition: Value) -> i64 {
    app.post("/api/v1/workflows", definition).json()["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("not applied"))
}

fn start(app: &TestApp, workflow: i64, input: Value) -> i64 {
    app.post(
        &format!("/api/v1/workflows/{workflow}/run"),
        json!({ "input": input }),
    )
    .expect(201)["id"]
        .as_i64()
        .unwrap()
}

/// Waits for the run to end; the run as the API shows it then.
#[track_caller]
fn ended(app: &TestApp, run: i64) -> Value {
    wait_for("the run to end", Duration::from_secs(60), || {
        let r = app.get(&format!("/api/v1/workflow-runs/{run}")).expect(200);
        (!matches!(r["status"].as_str(), Some("running" | "queued"))).then_some(r)
    })
}

/// The run's nodes by id: (status, reason, job id).
fn nodes(run: &Value) -> Vec<(String, String, Option<String>, Option<i64>)> {
    run["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap().to_string(),
                n["status"].as_str().unwrap().to_string(),
                n["reason"].as_str().map(String::from),
                n["jobId"].as_i64(),
            )
        })
        .collect()
}

fn node<'a>(run: &'a Value, id: &str) -> &'a Value {
    run["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == id)
        .unwrap_or_else(|| panic!("no node {id} in {run}"))
}

fn job(app: &TestApp, run: &Value, id: &str) -> Value {
    let job = node(run, id)["jobId"].as_i64().unwrap();
    app.get(&format!("/api/v1/jobs/{job}")).expect(200)
}

/// How many jobs the event has had.
fn jobs_of(app: &TestApp, event: i64) -> u64 {
    app.get(&format!("/api/v1/jobs?event={event}")).expect(200)["total"]
        .as_u64()
        .unwrap()
}

fn alive(pid: i32) -> bool {
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    exists
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

both_backends! {
    fn a_diamond_hands_outputs_along_and_every_node_sees_the_run_input(backend: Backend) {
        let app = TestApp::spawn(backend);
        event(&app, "split", "python", "import cronium\nn = cronium.input()['n']\ncronium.output({'n': n})\n");
        event(&app, "double", "python", "import cronium\ncronium.output(cronium.input()['n'] * 2)\n");
        event(&app, "square", "python", "import cronium\ncronium.output(cronium.input()['n'] ** 2)\n");
        event(&app, "join", "bash", "cronium input\ncronium context | python3 -c 'import json,sys; c=json.load(sys.stdin); print(c[\"workflow\"][\"node\"], c[\"workflow\"][\"input\"])'\n");
        let workflow = apply(&app, json!({
            "name": "diamond",
            "nodes": [
                { "id": "a", "event": "split" },
                { "id": "b", "event": "double", "after": ["a"] },
                { "id": "c", "event": "square", "after": ["a"] },
                { "id": "d", "event": "join", "after": ["b", "c"] },
            ],
        }));
        let run = start(&app, workflow, json!({ "n": 7 }));
        let done = ended(&app, run);
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!((done["version"].clone(), done["pass"].clone(), done["trigger"].clone()), (json!(1), json!(1), json!("manual")));
        assert!(nodes(&done).iter().all(|(_, status, ..)| status == "succeeded"), "{done}");
        // One parent: its output; several: an object keyed by parent id.
        assert_eq!(job(&app, &done, "b")["output"], 14);
        assert_eq!(job(&app, &done, "c")["output"], 49);
        let d = job(&app, &done, "d");
        assert_eq!(d["trigger"], "workflow");
        assert_eq!(
            output(&app, d["id"].as_i64().unwrap(), "stdout"),
            "{\"b\":14,\"c\":49}\nd {'n': 7}\n"
        );
        // Each node ran once, after its parents.
        let started = |id: &str| node(&done, id)["startedAt"].as_str().unwrap().to_string();
        let finished = |id: &str| node(&done, id)["finishedAt"].as_str().unwrap().to_string();
        assert!(started("b") >= finished("a") && started("c") >= finished("a"), "{done}");
        assert!(started("d") >= finished("b") && started("d") >= finished("c"), "{done}");
        let listed = app.get(&format!("/api/v1/workflow-runs?workflow={workflow}&status=succeeded")).expect(200);
        assert_eq!(listed["total"], 1);
        assert_eq!(listed["items"][0]["id"], run);
        assert!(listed["items"][0].get("nodes").is_none(), "{listed}");
    }

    fn a_failure_branch_takes_over_skips_propagate_and_join_any_absorbs_them(backend: Backend) {
        let app = TestApp::spawn(backend);
        event(&app, "fetch", "bash", "echo fetching; exit 3\n");
        event(&app, "transform", "bash", "echo transform\n");
        event(&app, "publish", "bash", "echo publish\n");
        event(&app, "page-oncall", "bash", "echo paging\n");
        event(&app, "report", "bash", "echo report\n");
        let workflow = apply(&app, json!({
            "name": "nightly",
            "nodes": [
                { "id": "fetch", "event": "fetch" },
                { "id": "transform", "event": "transform", "after": ["fetch"] },
                { "id": "publish", "event": "publish", "after": ["transform"] },
                { "id": "alert", "event": "page-oncall", "after": [{ "node": "fetch", "on": "failure" }] },
                { "id": "report", "event": "report", "join": "any",
                  "after": [{ "node": "publish", "on": "success" }, { "node": "alert", "on": "always" }] },
            ],
        }));
        let done = ended(&app, start(&app, workflow, Value::Null));
        // fetch's failure has a failure edge: handled, so the run succeeds.
        assert_eq!(done["status"], "succeeded", "{done}");
        let by_id = nodes(&done);
        let status = |id: &str| by_id.iter().find(|n| n.0 == id).map(|n| (n.1.clone(), n.2.clone())).unwrap();
        assert_eq!(status("fetch").0, "failed");
        assert_eq!(status("transform"), ("skipped".into(), Some("fetch failed (its edge is on success)".into())));
        assert_eq!(status("publish"), ("skipped".into(), Some("transform skipped (its edge is on success)".into())));
        assert_eq!(status("alert").0, "succeeded");
        assert_eq!(status("report").0, "succeeded");
        assert!(by_id.iter().filter(|n| n.1 == "skipped").all(|n| n.3.is_none()), "a skipped node has no job: {done}");
        assert_eq!(job(&app, &done, "fetch")["exitCode"], 3);

        // Without the failure edge the same failure fails the run, naming the node.
        let unhandled = apply(&app, json!({
            "name": "unhandled",
            "nodes": [
                { "id": "fetch", "event": "fetch" },
                { "id": "transform", "event": "transform", "after": ["fetch"] },
                { "id": "report", "event": "report", "join": "any", "after": [{ "node": "transform", "on": "success" }] },
            ],
        }));
        let failed = ended(&app, start(&app, unhandled, Value::Null));
        assert_eq!(failed["status"], "failed", "{failed}");
        assert_eq!(failed["error"], "node fetch failed and no edge handles it");
        assert_eq!(
            node(&failed, "report")["reason"],
            "no incoming edge was taken: transform skipped (on success)"
        );
    }

    fn fail_fast_stops_the_running_nodes_and_skips_the_rest(backend: Backend) {
        let app = TestApp::spawn(backend);
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("slow.pid");
        event(&app, "fails", "bash", "sleep 0.5; exit 1\n");
        event(&app, "slow", "bash", &format!("echo $$ > {}\nexec sleep 60\n", pid_file.display()));
        let after_slow = event(&app, "after-slow", "bash", "echo never\n");
        let workflow = apply(&app, json!({
            "name": "fast",
            "failFast": true,
            "nodes": [
                { "id": "fails", "event": "fails" },
                { "id": "slow", "event": "slow" },
                { "id": "next", "event": "after-slow", "after": ["slow"] },
            ],
        }));
        let run = start(&app, workflow, Value::Null);
        let pid = wait_for("the slow node to start", Duration::from_secs(30), || read_pid(&pid_file));
        let started = std::time::Instant::now();
        let done = ended(&app, run);
        // Stopped when its sibling failed, not after its 60 s.
        assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
        assert_eq!(done["status"], "failed", "{done}");
        assert_eq!(node(&done, "slow")["status"], "cancelled", "{done}");
        assert_eq!(node(&done, "next")["status"], "skipped", "{done}");
        assert_eq!(node(&done, "next")["reason"], "fail fast: node fails failed and no edge handles it");
        assert_eq!(jobs_of(&app, after_slow), 0);
        wait_for("the slow script to be gone", Duration::from_secs(10), || (!alive(pid)).then_some(()));
    }

    fn a_cancelled_run_kills_its_running_script_and_never_starts_the_rest(backend: Backend) {
        let app = TestApp::spawn(backend);
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("long.pid");
        event(&app, "long", "bash", &format!("sleep 60 &\necho $! > {}\nwait\n", pid_file.display()));
        let later = event(&app, "later", "bash", "echo later\n");
        let workflow = apply(&app, json!({
            "name": "cancel-me",
            "nodes": [
                { "id": "long", "event": "long" },
                { "id": "later", "event": "later", "after": [{ "node": "long", "on": "always" }] },
            ],
        }));
        let run = start(&app, workflow, Value::Null);
        // The script's child: the whole process group must go.
        let child = wait_for("the script to start", Duration::from_secs(30), || read_pid(&pid_file));
        let cancelled = app.post(&format!("/api/v1/workflow-runs/{run}/cancel"), json!({})).expect(202);
        assert_eq!(cancelled["cancelRequested"], true);
        let done = ended(&app, run);
        assert_eq!(done["status"], "cancelled", "{done}");
        assert_eq!(node(&done, "long")["status"], "cancelled");
        assert_eq!(job(&app, &done, "long")["status"], "cancelled");
        assert_eq!(
            (node(&done, "later")["status"].clone(), node(&done, "later")["reason"].clone()),
            (json!("cancelled"), json!("the run was cancelled"))
        );
        assert_eq!(jobs_of(&app, later), 0);
        wait_for("the script's child to be gone", Duration::from_secs(10), || (!alive(child)).then_some(()));
        app.post(&format!("/api/v1/workflow-runs/{run}/cancel"), json!({}))
            .expect_error(409, "conflict", Some("status"));
        let audit = app.get("/api/v1/audit?limit=50").expect(200);
        assert!(audit["items"].as_array().unwrap().iter().any(|e| e["action"] == "workflow_run.cancel" && e["targetId"] == run), "{audit}");
    }

    fn retry_reruns_only_the_failed_part_and_keeps_what_succeeded(backend: Backend) {
        let app = TestApp::spawn(backend);
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("fixed");
        let prepare = event(&app, "prepare", "python", "import cronium\ncronium.output('prepared')\n");
        let flaky = event(&app, "flaky", "bash", &format!("test -e {} || {{ echo broken; exit 1; }}\ncronium input\n", marker.display()));
        let finish = event(&app, "finish", "bash", "echo finishing\n");
        let workflow = apply(&app, json!({
            "name": "flaky",
            "nodes": [
                { "id": "prepare", "event": "prepare" },
                { "id": "flaky", "event": "flaky", "after": ["prepare"] },
                { "id": "finish", "event": "finish", "after": ["flaky"] },
            ],
        }));
        let run = start(&app, workflow, Value::Null);
        let failed = ended(&app, run);
        assert_eq!(failed["status"], "failed", "{failed}");
        assert_eq!(node(&failed, "finish")["status"], "skipped");
        let first_prepare = node(&failed, "prepare")["jobId"].clone();

        std::fs::write(&marker, "").unwrap();
        let retried = app.post(&format!("/api/v1/workflow-runs/{run}/retry"), json!({})).expect(200);
        assert_eq!(retried["pass"], 2);
        let done = ended(&app, run);
        assert_eq!(done["status"], "succeeded", "{done}");
        // The succeeded node kept its job; the failed part ran again, and
        // the retried node still got its parent's stored output.
        assert_eq!(node(&done, "prepare")["jobId"], first_prepare);
        assert_eq!(node(&done, "prepare")["pass"], 1);
        assert_eq!(node(&done, "flaky")["pass"], 2);
        assert_eq!(output(&app, job(&app, &done, "flaky")["id"].as_i64().unwrap(), "stdout"), "\"prepared\"\n");
        assert_eq!((jobs_of(&app, prepare), jobs_of(&app, flaky), jobs_of(&app, finish)), (1, 2, 1));
        // Only a failed or cancelled run can be retried.
        app.post(&format!("/api/v1/workflow-runs/{run}/retry"), json!({}))
            .expect_error(409, "conflict", Some("status"));
    }

    fn a_run_keeps_the_definition_and_payloads_it_started_with(backend: Backend) {
        let app = TestApp::spawn(backend);
        let dir = tempfile::tempdir().unwrap();
        let gate = dir.path().join("gate");
        event(&app, "gate", "bash", &format!("while [ ! -e {} ]; do sleep 0.05; done\n", gate.display()));
        let said = event(&app, "say", "bash", "echo old script\n");
        let definition = json!({
            "name": "pinned",
            "nodes": [
                { "id": "wait", "event": "gate" },
                { "id": "say", "event": "say", "after": ["wait"] },
            ],
        });
        let workflow = apply(&app, definition.clone());
        let run = start(&app, workflow, Value::Null);
        wait_for("the gate node to run", Duration::from_secs(30), || {
            let r = app.get(&format!("/api/v1/workflow-runs/{run}")).expect(200);
            (node(&r, "wait")["jobStatus"] == "running").then_some(())
        });
        // While it runs: the workflow gets a second version where `say`
        // waits for a failure, and the event a new script.
        let mut edited = definition;
        edited["nodes"][1]["after"] = json!([{ "node": "wait", "on": "failure" }]);
        assert_eq!(app.post("/api/v1/workflows", edited).expect(200)["version"], 2);
        app.patch(&format!("/api/v1/events/{said}"), json!({ "content": "echo new script\n" })).expect(200);
        std::fs::write(&gate, "").unwrap();
        let done = ended(&app, run);
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(done["version"], 1);
        assert_eq!(node(&done, "say")["status"], "succeeded", "version 1's edge was followed: {done}");
        assert_eq!(node(&done, "say")["payloadVersion"], 1);
        assert_eq!(output(&app, job(&app, &done, "say")["id"].as_i64().unwrap(), "stdout"), "old script\n");
        // A new run takes both edits.
        let next = ended(&app, start(&app, workflow, Value::Null));
        assert_eq!((next["version"].clone(), node(&next, "say")["status"].clone()), (json!(2), json!("skipped")));
    }

    fn runs_are_refused_clearly(backend: Backend) {
        let app = TestApp::spawn(backend);
        event(&app, "one", "bash", "sleep 2\n");
        let workflow = apply(&app, json!({ "name": "single", "nodes": [{ "id": "one", "event": "one" }] }));
        app.post("/api/v1/workflows/999999/run", json!({})).expect_error(404, "not_found", None);
        app.get("/api/v1/workflow-runs/999999").expect_error(404, "not_found", None);
        app.post(&format!("/api/v1/workflows/{workflow}/run"), json!({ "inputs": 1 }))
            .expect_error(400, "bad_request", Some("inputs"));
        app.get("/api/v1/workflow-runs?status=bogus").expect_error(422, "validation_failed", Some("status"));
        // The default overlap policy, forbid: a second run while one is
        // active is recorded as skipped and refused.
        let first = start(&app, workflow, Value::Null);
        let refused = app.post(&format!("/api/v1/workflows/{workflow}/run"), json!({})).expect_error(409, "conflict", Some("overlap"));
        assert!(refused["error"]["message"].as_str().unwrap().contains(&format!("run {first} of this workflow is still active")), "{refused}");
        assert_eq!(ended(&app, first)["status"], "succeeded");
        let skipped = app.get(&format!("/api/v1/workflow-runs?workflow={workflow}&status=skipped")).expect(200);
        assert_eq!(skipped["total"], 1);
        // A viewer may look, not run.
        let viewer = app.token("viewer");
        assert_eq!(app.call("POST", &format!("/api/v1/workflows/{workflow}/run"), &viewer, Some(json!({}))).status, 403);
        assert_eq!(app.call("GET", &format!("/api/v1/workflow-runs/{first}"), &viewer, None).status, 200);
    }

    fn a_signed_webhook_starts_one_run_per_delivery_and_refuses_the_rest(backend: Backend) {
        let app = TestApp::spawn(backend);
        event(&app, "receive", "bash", "cronium input\n");
        let applied = app.post("/api/v1/workflows", json!({
            "name": "on-push",
            "trigger": { "type": "webhook", "signed": true },
            "nodes": [{ "id": "receive", "event": "receive" }],
        })).expect(201);
        // The key and the secret are shown this once.
        let hook = applied["webhook"].clone();
        let (path, secret) = (hook["path"].as_str().unwrap().to_string(), hook["secret"].as_str().unwrap().to_string());
        assert!(path.starts_with("/hooks/workflows/crh_") && secret.starts_with("whsec_"), "{hook}");
        assert_eq!(applied["hasWebhook"], true);
        let id = applied["id"].as_i64().unwrap();
        let shown = app.get(&format!("/api/v1/workflows/{id}")).expect(200);
        assert_eq!(shown["hasWebhook"], true);
        assert!(!shown.to_string().contains(&hook["key"].as_str().unwrap()[4..]), "{shown}");
        // Its page says a key is set, never what it is; a cron workflow's
        // says when it fires next.
        app.set_password("admin", "a password for the workflow page");
        let mut browser = app.browser().signed_in("admin", "a password for the workflow page");
        let page = browser.get(&format!("/workflows/{id}")).text();
        assert!(page.contains("<dt>Webhook key</dt><dd>set (rotate it with cronium workflow hook)</dd>"), "{page}");
        assert!(!page.contains(&hook["key"].as_str().unwrap()[4..]), "the key is on the page");
        let nightly = apply(&app, json!({
            "name": "nightly", "trigger": { "type": "cron", "cron": "0 3 * * *", "timezone": "UTC" },
            "nodes": [{ "id": "receive", "event": "receive" }],
        }));
        let page = browser.get(&format!("/workflows/{nightly}")).text();
        assert!(page.contains("<dt>Next fire</dt><dd>") && page.contains("03:00:00"), "{page}");
        // Applying it again changes nothing and shows no key.
        let again = app.post("/api/v1/workflows", applied["definition"].clone()).expect(200);
        assert!(again.get("webhook").is_none(), "{again}");

        let key = SigningKey::parse(&secret).unwrap();
        let body = br#"{"ref": "main"}"#.to_vec();
        let now = chrono::Utc::now().timestamp().to_string();
        let post = |delivery: &str, timestamp: &str, signature: &str, body: &[u8]| {
            app.send("POST", &path, None, &[
                ("content-type", "application/json"),
                ("webhook-id", delivery),
                ("webhook-timestamp", timestamp),
                ("webhook-signature", signature),
            ], Some(body.to_vec()))
        };
        let signed = key.sign("delivery-1", &now, &body);
        // Refused: no signature, a wrong one, a stale timestamp, a body
        // changed after signing, an unknown key.
        let unsigned = app.send("POST", &path, None, &[("content-type", "application/json")], Some(body.clone()));
        assert!(unsigned.expect_error(401, "unauthorized", None)["error"]["message"].as_str().unwrap().contains("webhook-id"));
        post("delivery-1", &now, "v1,AAAA", &body).expect_error(401, "unauthorized", None);
        let stale = (chrono::Utc::now().timestamp() - 600).to_string();
        post("delivery-1", &stale, &key.sign("delivery-1", &stale, &body), &body).expect_error(401, "unauthorized", None);
        post("delivery-1", &now, &signed, br#"{"ref": "evil"}"#).expect_error(401, "unauthorized", None);
        app.send("POST", "/hooks/workflows/crh_nope", None, &[], None).expect_error(404, "not_found", None);
        assert_eq!(app.get(&format!("/api/v1/workflow-runs?workflow={id}")).expect(200)["total"], 0);

        // Accepted once; the same delivery again answers with the same run.
        let run = post("delivery-1", &now, &signed, &body).expect(202);
        let replay = post("delivery-1", &now, &signed, &body).expect(200);
        assert_eq!(replay["id"], run["id"]);
        let done = ended(&app, run["id"].as_i64().unwrap());
        assert_eq!((done["status"].clone(), done["trigger"].clone()), (json!("succeeded"), json!("webhook")));
        assert_eq!(output(&app, node(&done, "receive")["jobId"].as_i64().unwrap(), "stdout"), "{\"ref\":\"main\"}\n");
        assert_eq!(app.get(&format!("/api/v1/workflow-runs?workflow={id}")).expect(200)["total"], 1);
        let big = vec![b' '; 1024 * 1024 + 1];
        post("delivery-2", &now, &key.sign("delivery-2", &now, &big), &big).expect_error(413, "payload_too_large", None);

        // A rotated key: the old one is gone, the new one works.
        let rotated = app.post(&format!("/api/v1/workflows/{id}/hook"), json!({})).expect(200);
        assert_ne!(rotated["key"], hook["key"]);
        post("delivery-3", &now, &key.sign("delivery-3", &now, &body), &body).expect_error(404, "not_found", None);
        let new_key = SigningKey::parse(rotated["secret"].as_str().unwrap()).unwrap();
        let new_path = rotated["path"].as_str().unwrap();
        let accepted = app.send("POST", new_path, None, &[
            ("webhook-id", "delivery-3"), ("webhook-timestamp", &now),
            ("webhook-signature", &new_key.sign("delivery-3", &now, b"")),
        ], Some(Vec::new()));
        accepted.expect(202);
        // A workflow whose trigger is no longer a webhook loses its key.
        let mut manual = applied["definition"].clone();
        manual["trigger"] = json!({ "type": "manual" });
        app.post("/api/v1/workflows", manual).expect(200);
        assert_eq!(app.get(&format!("/api/v1/workflows/{id}")).expect(200)["hasWebhook"], false);
        app.send("POST", new_path, None, &[], None).expect_error(404, "not_found", None);
        app.post(&format!("/api/v1/workflows/{id}/hook"), json!({})).expect_error(409, "conflict", Some("trigger"));
    }

    fn an_unsigned_webhook_takes_an_idempotency_key(backend: Backend) {
        let app = TestApp::spawn(backend);
        event(&app, "ping", "bash", "echo pong\n");
        let applied = app.post("/api/v1/workflows", json!({
            "name": "pinged", "trigger": { "type": "webhook" }, "overlap": "allow",
            "nodes": [{ "id": "ping", "event": "ping" }],
        })).expect(201);
        assert!(applied["webhook"].get("secret").is_none(), "{applied}");
        let path = applied["webhook"]["path"].as_str().unwrap();
        let first = app.send("POST", path, None, &[("idempotency-key", "k-1")], None).expect(202);
        let again = app.send("POST", path, None, &[("idempotency-key", "k-1")], None).expect(200);
        assert_eq!(first["id"], again["id"]);
        app.send("POST", path, None, &[], Some(b"not json".to_vec())).expect_error(400, "bad_request", None);
        // Without a key, each call is a run of its own.
        app.send("POST", path, None, &[], None).expect(202);
        let id = applied["id"].as_i64().unwrap();
        assert_eq!(app.get(&format!("/api/v1/workflow-runs?workflow={id}")).expect(200)["total"], 2);
    }

    fn nodes_run_on_a_remote_server_and_as_http_requests_like_any_job(backend: Backend) {
        let app = TestApp::spawn_with(backend, |c| {
            c.http_allow = vec![Allow::parse("127.0.0.1/32").unwrap()];
        });
        let sshd = TestSshd::start(1);
        let web = add_server(&app, &sshd, sshd.user(0), "web1");
        let receiver = Sink::start(|_| Answer::status("200 OK", "noted\n"));
        let remote = app.create_event(json!({
            "name": "remote-step", "interpreter": "bash", "runLocation": "remote", "targetServers": [web],
            "content": "cronium output \"$(cronium context | python3 -c 'import json,sys; c=json.load(sys.stdin); print(json.dumps(c[\"server\"]))')\"\n",
        }))["id"].clone();
        app.create_event(json!({
            "name": "notify", "http": { "method": "POST", "url": receiver.url("/done"), "body": "done" },
        }));
        let workflow = apply(&app, json!({
            "name": "mixed",
            "nodes": [
                { "id": "remote", "event": "remote-step" },
                { "id": "notify", "event": "notify", "after": ["remote"] },
            ],
        }));
        let done = ended(&app, start(&app, workflow, Value::Null));
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(node(&done, "remote")["eventId"], remote);
        assert_eq!(job(&app, &done, "remote")["output"], "web1");
        assert_eq!(job(&app, &done, "notify")["status"], "succeeded");
        let received = receiver.received();
        assert_eq!(received.len(), 1);
        assert_eq!((received[0].method.as_str(), received[0].target.as_str()), ("POST", "/done"));
    }

    fn runs_whose_nodes_cross_the_same_events_all_finish_at_once(backend: Backend) {
        // Two workflows over the same two events in opposite orders, run
        // many times at once: each node's end holds its event while it
        // queues the next node's job of the other event. None may wait on
        // another for ever (a deadlock would leave a job to its lease).
        let app = TestApp::spawn(backend);
        event(&app, "first", "bash", "true\n");
        event(&app, "second", "bash", "true\n");
        app.patch("/api/v1/events/1", json!({ "overlap": "allow" })).expect(200);
        app.patch("/api/v1/events/2", json!({ "overlap": "allow" })).expect(200);
        let there = apply(&app, json!({ "name": "there", "overlap": "allow", "nodes": [
            { "id": "a", "event": "first" }, { "id": "b", "event": "second", "after": ["a"] },
            { "id": "c", "event": "first", "after": ["b"] },
        ]}));
        let back = apply(&app, json!({ "name": "back", "overlap": "allow", "nodes": [
            { "id": "a", "event": "second" }, { "id": "b", "event": "first", "after": ["a"] },
            { "id": "c", "event": "second", "after": ["b"] },
        ]}));
        let runs: Vec<i64> = (0..12)
            .map(|i| start(&app, if i % 2 == 0 { there } else { back }, Value::Null))
            .collect();
        let started = std::time::Instant::now();
        for run in runs {
            assert_eq!(ended(&app, run)["status"], "succeeded");
        }
        // Far below the 30 s a job waits for its lease when its end is lost.
        assert!(started.elapsed() < Duration::from_secs(25), "{:?}", started.elapsed());
    }
}

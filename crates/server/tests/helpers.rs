//! Runtime helpers end to end: real bash, python and node scripts call `cronium` through the real runner, locally and on a real OpenSSH server, against the real server on SQLite and PostgreSQL.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::{Backend, TestApp, add_server, finished, output, run_to_end, wait_for};
use cronium_ssh::testing::TestSshd;
use serde_json::{Value, json};

const PATIENCE: Duration = Duration::from_secs(60);

fn event(app: &TestApp, name: &str, interpreter: &str, script: &str, extra: Value) -> i64 {
    let mut body = json!({ "name": name, "interpreter": interpreter, "content": script });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    app.create_event(body)["id"].as_i64().unwrap()
}

fn run_with(app: &TestApp, event: i64, input: Value) -> i64 {
    app.post(
        &format!("/api/v1/events/{event}/run"),
        json!({ "input": input }),
    )
    .expect(201)["id"]
        .as_i64()
        .unwrap()
}

const PREPARE: &str = r#"import cronium
cronium.set_variable("greeting", {"text": "hello from python"})
cronium.output({"count": cronium.input()["start"] + 1})
print("prepared")
"#;

const GREET: &str = r#"const input = cronium.input();
const greeting = cronium.getVariable("greeting");
const where = cronium.context().server;
console.log(`${greeting.text}, count=${input.count}, on ${where}`);
cronium.output({ count: input.count + 1, server: where });
"#;

both_backends! {
    fn a_python_script_hands_a_variable_and_its_output_to_a_node_script_on_a_remote_server(backend: Backend) {
        let app = TestApp::spawn(backend);
        let sshd = TestSshd::start(1);
        let web = add_server(&app, &sshd, sshd.user(0), "web1");
        let greet = event(&app, "greet", "node", GREET,
            json!({ "runLocation": "remote", "targetServers": [web] }));
        let prepare = event(&app, "prepare", "python", PREPARE, json!({}));
        app.post(&format!("/api/v1/events/{prepare}/actions"),
            json!({ "when": "success", "targetEvent": greet })).expect(201);

        let first = finished(&app, run_with(&app, prepare, json!({ "start": 40 })));
        assert_eq!(first["status"], "succeeded", "{first}");
        assert_eq!(first["input"], json!({ "start": 40 }));
        assert_eq!(first["output"], json!({ "count": 41 }));
        assert_eq!(first["condition"], false);
        let chained = first["metadata"]["chained"][0]["job"].as_i64()
            .unwrap_or_else(|| panic!("no chained job in {first}"));

        let second = finished(&app, chained);
        assert_eq!(second["status"], "succeeded", "{second}");
        assert_eq!(second["input"], json!({ "count": 41 }), "the output became the input");
        assert_eq!(second["output"], json!({ "count": 42, "server": "web1" }));
        assert_eq!(
            output(&app, chained, "stdout"),
            "hello from python, count=41, on web1\n"
        );
        let variable = app.get("/api/v1/variables/greeting").expect(200);
        assert_eq!(variable["value"], json!({ "text": "hello from python" }));

        // The job's page shows what the run was given and handed on.
        app.set_password("admin", "a password for the job page");
        let mut browser = app.browser().signed_in("admin", "a password for the job page");
        let page = browser.get(&format!("/jobs/{chained}")).text();
        for fact in ["<dt>Input</dt><dd>{&#34;count&#34;:41}</dd>",
            "<dt>Output</dt><dd>{&#34;count&#34;:42,&#34;server&#34;:&#34;web1&#34;}</dd>",
            "<dt>Condition</dt><dd>false</dd>"] {
            assert!(page.contains(fact), "{fact} not in {page}");
        }
    }

    fn a_variable_set_before_the_script_fails_stays_set_even_from_the_sandbox(backend: Backend) {
        // Under bubblewrap the script has no network at all: the call goes
        // through the runner's socket and the runner's stdout.
        let app = TestApp::spawn_with(backend, |c| {
            c.sandbox = cronium_server::config::SandboxMode::Bubblewrap
        });
        let id = event(&app, "half-done", "bash",
            "cronium var set progress '{\"step\": 1}'\necho 'step 1 done'\nexit 1\n", json!({}));
        let job = run_to_end(&app, id);
        assert_eq!(job["status"], "failed", "{job}");
        let variable = app.get("/api/v1/variables/progress").expect(200);
        assert_eq!(variable["value"], json!({ "step": 1 }), "{variable}");
        assert_eq!(variable["updatedByJob"], job["id"], "{variable}");
    }

    fn a_retried_jobs_second_attempt_starts_with_no_output_and_no_condition(backend: Backend) {
        let app = TestApp::spawn(backend);
        // The first attempt sets both, then fails; the second sets neither.
        let script = "case $CRONIUM_EXECUTION_ID in\n\
                      *-1) cronium output '{\"attempt\": 1}' && cronium condition true \
                      && echo \"attempt 1 set both\"; exit 1 ;;\n\
                      esac\n\
                      echo \"second attempt\"\n";
        let id = event(&app, "flaky", "bash", script, json!({ "retries": 1, "retryDelay": "1s" }));
        let job = run_to_end(&app, id);
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["attempt"], 2, "{job}");
        assert_eq!(job["output"], Value::Null, "{job}");
        assert_eq!(job["condition"], false, "{job}");
        // Not because the first attempt failed to set them.
        let job_id = job["id"].as_i64().unwrap();
        assert_eq!(output(&app, job_id, "stdout"), "attempt 1 set both\nsecond attempt\n");
    }

    fn the_condition_trigger_fires_only_when_the_run_set_its_condition(backend: Backend) {
        let app = TestApp::spawn(backend);
        let next = event(&app, "next", "bash", "echo \"next got $(cronium input)\"\n", json!({}));
        // The condition is whatever the input says.
        let decide = event(&app, "decide", "bash",
            "cronium condition \"$(cronium input)\"\ncronium output '\"decided\"'\n", json!({}));
        app.post(&format!("/api/v1/events/{decide}/actions"),
            json!({ "when": "condition", "targetEvent": next })).expect(201);

        let no = finished(&app, run_with(&app, decide, json!(false)));
        assert_eq!(no["status"], "succeeded", "{no}");
        assert_eq!(no["condition"], false);
        assert!(no["metadata"].get("chained").is_none(), "{no}");

        let yes = finished(&app, run_with(&app, decide, json!(true)));
        assert_eq!(yes["condition"], true, "{yes}");
        let chained = yes["metadata"]["chained"][0]["job"].as_i64()
            .unwrap_or_else(|| panic!("no chained job in {yes}"));
        let ran = finished(&app, chained);
        assert_eq!(ran["status"], "succeeded", "{ran}");
        assert_eq!(output(&app, chained, "stdout"), "next got \"decided\"\n");

        // The event's page says what its jobs set off.
        app.set_password("admin", "a password for the event page");
        let mut browser = app.browser().signed_in("admin", "a password for the event page");
        let page = browser.get(&format!("/events/{decide}")).text();
        let row = format!(
            "<td>condition</td><td>run <a href=\"/events/{next}\">next</a> with this run's output as its input</td>"
        );
        assert!(page.contains(&row), "{row} not in {page}");
    }

    fn a_stale_attempts_variable_write_is_refused(backend: Backend) {
        let app = TestApp::spawn(backend);
        let dir = tempfile::tempdir().unwrap();
        let go = dir.path().join("go");
        let status = dir.path().join("status");
        // The script waits for the test, then tries to write and records
        // the helper's exit status where the test can read it.
        let script = format!(
            "until [ -e {go} ]; do sleep 0.05; done\n\
             cronium var set late 1 2> {status}.err\n\
             echo $? > {status}.tmp && mv {status}.tmp {status}\n",
            go = go.display(),
            status = status.display(),
        );
        let id = event(&app, "stale", "bash", &script, json!({}));
        let job = app.post(&format!("/api/v1/events/{id}/run"), json!({})).expect(201)["id"]
            .as_i64().unwrap();
        wait_for("the job to run", PATIENCE, || {
            (app.get(&format!("/api/v1/jobs/{job}")).expect(200)["status"] == "running").then_some(())
        });

        // Another node takes the lease over, as when this one stops
        // heartbeating: the attempt is raised and the running one fenced out.
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}", app.data_dir.join("cronium.db").display()),
            Backend::Postgres => app.config.database_url.clone().unwrap(),
        };
        let later = Utc::now() + chrono::Duration::hours(2);
        let recovered = tokio::runtime::Runtime::new().unwrap().block_on(async {
            let store = cronium_store::open(&url).await.unwrap();
            store.recover_expired_leases(later, later).await.unwrap()
        });
        assert_eq!(recovered.len(), 1, "{recovered:?}");

        std::fs::write(&go, "").unwrap();
        let code = wait_for("the script's helper call", PATIENCE, || {
            std::fs::read_to_string(&status).ok()
        });
        assert_eq!(code.trim(), "6", "refused, with the status for refused calls");
        // Refused for the fence, not unavailable for some other reason.
        let why = std::fs::read_to_string(dir.path().join("status.err")).unwrap();
        assert!(why.contains("no longer holds its job"), "{why}");
        app.get("/api/v1/variables/late").expect(404);
    }
}

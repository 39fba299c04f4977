//! The workflow pages, on SQLite and PostgreSQL, with real bash scripts: the list and a workflow's page (its canonical YAML), running it from the form (bad JSON kept beside the field, a run the overlap policy refuses shown with its reason), a run's page drawing every node in its state with links to the jobs, Cancel and Retry through the forms checked through the API, and a viewer who sees no control and is refused every form.

mod common;

use std::time::Duration;

use common::{TestApp, wait_for};
use cronium_core::WorkflowSpec;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";

fn event(app: &TestApp, name: &str, script: &str) {
    app.create_event(json!({ "name": name, "interpreter": "bash", "content": script }));
}

fn apply(app: &TestApp, definition: &Value) -> i64 {
    app.post("/api/v1/workflows", definition.clone()).json()["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("not applied"))
}

fn api_run(app: &TestApp, run: i64) -> Value {
    app.get(&format!("/api/v1/workflow-runs/{run}")).expect(200)
}

/// Waits for the run's status to be `status`; the run as the API shows it.
#[track_caller]
fn run_reaches(app: &TestApp, run: i64, status: &str) -> Value {
    wait_for(
        &format!("run {run} to be {status}"),
        Duration::from_secs(60),
        || {
            let r = api_run(app, run);
            (r["status"] == status).then_some(r)
        },
    )
}

/// The node's job id, as the API shows it.
fn job_of(run: &Value, node: &str) -> Option<i64> {
    run["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == node)
        .unwrap_or_else(|| panic!("no node {node} in {run}"))["jobId"]
        .as_i64()
}

/// Text as the pages write it (askama's escaping).
fn escaped(text: &str) -> String {
    text.replace('&', "&#38;")
        .replace('<', "&#60;")
        .replace('>', "&#62;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// The run id in a `/workflow-runs/{id}` redirect.
#[track_caller]
fn run_id_of(resp: &common::Resp) -> i64 {
    assert_eq!(resp.status, 303, "{}", resp.text());
    resp.header("location")
        .and_then(|l| l.strip_prefix("/workflow-runs/"))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("not a run's page: {:?}", resp.header("location")))
}

/// The SVG of a run's page.
fn svg_of(html: &str) -> &str {
    let start = html.find("<svg class=\"dag\"").expect("the run's graph");
    let end = html[start..].find("</svg>").expect("the end of the graph") + start;
    &html[start..end]
}

both_backends! {
    fn a_workflow_is_listed_shown_and_run_from_its_page_and_its_run_drawn(backend: Backend) {
        let app = TestApp::spawn(backend);
        app.set_password("admin", PASSWORD);
        app.add_user("ed", "editor", PASSWORD);
        app.add_user("vi", "viewer", PASSWORD);
        event(&app, "wf-extract", "cronium input\n");
        event(&app, "wf-clean", "echo clean\n");
        event(&app, "wf-enrich", "echo enrich\n");
        event(&app, "wf-load", "echo load\n");
        event(&app, "wf-alert", "echo alert\n");
        let definition = json!({
            "name": "nightly <etl>",
            "description": "Extract & load, \"nightly\".",
            "nodes": [
                { "id": "extract", "event": "wf-extract" },
                { "id": "clean", "event": "wf-clean", "after": ["extract"] },
                { "id": "enrich", "event": "wf-enrich", "after": ["extract"] },
                { "id": "load", "event": "wf-load", "after": ["clean", { "node": "enrich", "on": "always" }] },
                { "id": "alert", "event": "wf-alert", "after": [{ "node": "load", "on": "failure" }] },
            ],
        });
        let id = apply(&app, &definition);

        // The list, for a viewer: the name, version, trigger, nodes, no run yet.
        let mut viewer = app.browser().signed_in("vi", PASSWORD);
        let list = viewer.get("/workflows");
        assert_eq!(list.status, 200, "{}", list.text());
        let html = list.text();
        assert!(html.contains(r#"<a href="/workflows" aria-current="page">Workflows</a>"#), "{html}");
        assert!(html.contains(&format!(r#"<a href="/workflows/{id}">nightly &#60;etl&#62;</a>"#)), "{html}");
        assert!(html.contains("<td>v1</td>") && html.contains("<td>manual</td>") && html.contains("<td>5</td>"), "{html}");
        assert!(html.contains("never run"), "{html}");
        assert!(html.contains("1–1 of 1"), "the pager: {html}");

        // Its page shows the canonical YAML, and a viewer no run form.
        let page = viewer.get(&format!("/workflows/{id}"));
        assert_eq!(page.status, 200);
        let html = page.text();
        let yaml = WorkflowSpec::from_json_value(definition.clone()).unwrap().to_yaml();
        assert!(yaml.contains("- id: enrich") && yaml.contains("on: always"), "{yaml}");
        assert!(html.contains(&format!("<pre class=\"code\" id=\"definition\">{}</pre>", escaped(&yaml))), "{html}");
        assert!(html.contains("Extract &#38; load, &#34;nightly&#34;."), "{html}");
        assert!(html.contains("Never run."), "{html}");
        assert!(!html.contains("/run\"") && !html.contains("Run now"), "a viewer is offered a run: {html}");
        let csrf = viewer.csrf(&format!("/workflows/{id}"));
        assert_eq!(viewer.post(&format!("/workflows/{id}/run"), &[("csrf", &csrf)]).status, 403);
        assert_eq!(app.get("/api/v1/workflow-runs").expect(200)["total"], 0);

        // An editor: bad JSON comes back beside the field, kept; nothing runs.
        let mut editor = app.browser().signed_in("ed", PASSWORD);
        let page = editor.get(&format!("/workflows/{id}")).text();
        assert!(page.contains(&format!(r#"action="/workflows/{id}/run""#)), "{page}");
        let csrf = common::csrf_of(&page);
        let refused = editor.post(&format!("/workflows/{id}/run"), &[("csrf", &csrf), ("input", "{\"day\": ")]);
        assert_eq!(refused.status, 422);
        let html = refused.text();
        assert!(html.contains(r#"id="input-error" role="alert">not JSON: "#), "{html}");
        assert!(html.contains("{&#34;day&#34;: </textarea>"), "the input is kept: {html}");
        assert_eq!(app.get("/api/v1/workflow-runs").expect(200)["total"], 0);

        // Run with input: to the run's page.
        let ran = editor.post(&format!("/workflows/{id}/run"), &[("csrf", &csrf), ("input", "{\"day\": \"monday\"}")]);
        let run = run_id_of(&ran);
        let done = run_reaches(&app, run, "succeeded");
        assert_eq!(done["input"], json!({ "day": "monday" }));
        assert_eq!(done["trigger"], "manual");
        let extract = job_of(&done, "extract").unwrap();
        assert_eq!(common::output(&app, extract, "stdout"), "{\"day\":\"monday\"}\n");

        // The run's page: one group per node in its state, linked to its job.
        let page = viewer.get(&format!("/workflow-runs/{run}"));
        assert_eq!(page.status, 200, "{}", page.text());
        let html = page.text();
        assert!(html.contains(r#"<span id="run-status" class="status succeeded">succeeded</span>"#), "{html}");
        assert!(!html.contains("http-equiv=\"refresh\""), "an ended run does not refresh: {html}");
        let svg = svg_of(&html);
        for node in ["extract", "clean", "enrich", "load"] {
            let job = job_of(&done, node).unwrap();
            assert!(svg.contains(&format!(r#"<g class="node succeeded" id="node-{node}" data-node="{node}"><a href="/jobs/{job}">"#)), "{node}: {svg}");
            assert!(html.contains(&format!(r##"<a href="/jobs/{job}">#{job}</a>"##)), "the table links job {job}");
        }
        // A node's job page says which run and node it is.
        let load = job_of(&done, "load").unwrap();
        let job_page = viewer.get(&format!("/jobs/{load}")).text();
        assert!(job_page.contains(&format!("<dt>Workflow</dt><dd>{}, run {run}, node load (pass 1)</dd>", done["workflowName"].as_str().unwrap().replace('<', "&#60;").replace('>', "&#62;"))), "{job_page}");
        // alert waited for load's failure: skipped, with no job and no link.
        assert!(job_of(&done, "alert").is_none());
        assert!(svg.contains(r#"<g class="node skipped" id="node-alert" data-node="alert">"#), "{svg}");
        assert!(!svg.contains(r#"data-node="alert"><a"#), "{svg}");
        assert_eq!(svg.matches("<g class=\"node ").count(), 5);
        // Edges: five, two of them labelled with their kind.
        assert_eq!(svg.matches("<polyline class=\"edge ").count(), 5, "{svg}");
        assert_eq!(svg.matches("<polyline class=\"edge success\"").count(), 3, "{svg}");
        assert!(svg.contains(">always</text>") && svg.contains(">failure</text>"), "{svg}");
        assert!(!svg.contains(">success</text>"), "{svg}");
        assert!(html.contains("<pre class=\"code\" id=\"run-input\">{\n  &#34;day&#34;: &#34;monday&#34;\n}</pre>"), "the input: {html}");
        // A viewer has no controls, and each form is refused.
        assert!(!html.contains("/cancel\"") && !html.contains("/retry\""), "{html}");
        for action in ["cancel", "retry"] {
            let csrf = viewer.csrf(&format!("/workflow-runs/{run}"));
            assert_eq!(viewer.post(&format!("/workflow-runs/{run}/{action}"), &[("csrf", &csrf)]).status, 403, "{action}");
        }

        // The list and the workflow's page now show the run.
        let html = viewer.get("/workflows").text();
        assert!(html.contains(&format!(r#"<a href="/workflow-runs/{run}"><span class="status succeeded">succeeded</span></a>"#)), "{html}");
        let html = viewer.get(&format!("/workflows/{id}")).text();
        assert!(html.contains(&format!(r##"<a href="/workflow-runs/{run}">#{run}</a>"##)), "{html}");
        assert_eq!(viewer.get("/workflows/999999").status, 404);
        assert_eq!(viewer.get("/workflow-runs/999999").status, 404);
    }

    fn a_run_is_cancelled_and_retried_from_its_page_and_the_overlap_policy_is_shown(backend: Backend) {
        let app = TestApp::spawn(backend);
        app.set_password("admin", PASSWORD);
        app.add_user("ed", "editor", PASSWORD);
        app.add_user("vi", "viewer", PASSWORD);
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("open");
        // Waits a minute unless the flag is there.
        event(&app, "wf-gate", &format!("if [ -e '{}' ]; then echo open; else echo waiting; sleep 60; fi\n", flag.display()));
        event(&app, "wf-after", "echo after\n");
        let id = apply(&app, &json!({
            "name": "gated",
            "nodes": [
                { "id": "first", "event": "wf-after" },
                { "id": "gate", "event": "wf-gate", "after": ["first"] },
                { "id": "then", "event": "wf-after", "after": ["gate"] },
            ],
        }));
        let mut editor = app.browser().signed_in("ed", PASSWORD);
        let csrf = editor.csrf(&format!("/workflows/{id}"));
        let run = run_id_of(&editor.post(&format!("/workflows/{id}/run"), &[("csrf", &csrf)]));
        let running = wait_for("the gate's job to run", Duration::from_secs(60), || {
            let r = api_run(&app, run);
            let gate = r["nodes"].as_array().unwrap().iter().find(|n| n["node"] == "gate").unwrap().clone();
            (gate["jobStatus"] == "running").then_some(r)
        });
        assert!(api_run(&app, run)["status"] == "running", "{running}");

        // While it runs: the page refreshes itself and offers Cancel only.
        let html = editor.get(&format!("/workflow-runs/{run}")).text();
        assert!(html.contains(r#"<meta http-equiv="refresh" content="2">"#), "{html}");
        let svg = svg_of(&html);
        assert!(svg.contains(r#"<g class="node succeeded" id="node-first""#), "{svg}");
        assert!(svg.contains(r#"<g class="node running" id="node-gate""#), "{svg}");
        assert!(svg.contains(r#"<g class="node pending" id="node-then" data-node="then">"#), "{svg}");
        assert!(!svg.contains(r#"data-node="then"><a"#), "a node without a job links nowhere: {svg}");
        assert!(html.contains(&format!(r#"action="/workflow-runs/{run}/cancel""#)), "{html}");
        assert!(!html.contains("/retry\""), "{html}");

        // Another run while this one is active: refused by the overlap
        // policy (forbid, the default), the reason on the page.
        let refused = editor.post(&format!("/workflows/{id}/run"), &[("csrf", &csrf), ("input", "[1]")]);
        assert_eq!(refused.status, 409, "{}", refused.text());
        let html = refused.text();
        let reason = format!("skipped: run {run} of this workflow is still active (overlap policy forbid)");
        assert!(html.contains(&format!(r#"id="run-error" role="alert">Not started: {reason}</p>"#)), "{html}");
        assert!(html.contains("[1]</textarea>"), "the input is kept: {html}");
        let skipped = app.get(&format!("/api/v1/workflow-runs?workflow={id}&status=skipped")).expect(200);
        assert_eq!(skipped["total"], 1, "{skipped}");

        // A viewer sees neither button and is refused both forms.
        let mut viewer = app.browser().signed_in("vi", PASSWORD);
        let html = viewer.get(&format!("/workflow-runs/{run}")).text();
        assert!(!html.contains("/cancel\"") && !html.contains("/retry\""), "{html}");
        let vcsrf = common::csrf_of(&html);
        for action in ["cancel", "retry"] {
            assert_eq!(viewer.post(&format!("/workflow-runs/{run}/{action}"), &[("csrf", &vcsrf)]).status, 403, "{action}");
        }
        assert_eq!(api_run(&app, run)["status"], "running");

        // A form without its CSRF token is refused.
        assert_eq!(editor.post(&format!("/workflow-runs/{run}/cancel"), &[]).status, 403);
        assert_eq!(api_run(&app, run)["status"], "running");

        // Cancel: back to the page; the gate's job is stopped, then is gone.
        let cancelled = editor.post(&format!("/workflow-runs/{run}/cancel"), &[("csrf", &csrf)]);
        assert_eq!((cancelled.status, cancelled.header("location")), (303, Some(format!("/workflow-runs/{run}").as_str())));
        let ended = run_reaches(&app, run, "cancelled");
        let gate_job = job_of(&ended, "gate").unwrap();
        let job = common::finished(&app, gate_job);
        assert_eq!(job["status"], "cancelled", "{job}");
        let html = editor.get(&format!("/workflow-runs/{run}")).text();
        assert!(!html.contains("http-equiv=\"refresh\""), "{html}");
        assert!(!html.contains("/cancel\""), "{html}");
        assert!(html.contains(&format!(r#"action="/workflow-runs/{run}/retry""#)), "{html}");
        let svg = svg_of(&html);
        assert!(svg.contains(r#"<g class="node cancelled" id="node-gate""#), "{svg}");
        assert!(svg.contains(r#"<g class="node cancelled" id="node-then""#), "{svg}");
        // Once ended, cancelling again is a conflict.
        assert_eq!(editor.post(&format!("/workflow-runs/{run}/cancel"), &[("csrf", &csrf)]).status, 409);

        // Retry, with the gate open: a second pass runs what did not succeed.
        std::fs::write(&flag, "").unwrap();
        let retried = editor.post(&format!("/workflow-runs/{run}/retry"), &[("csrf", &csrf)]);
        assert_eq!((retried.status, retried.header("location")), (303, Some(format!("/workflow-runs/{run}").as_str())));
        let done = run_reaches(&app, run, "succeeded");
        assert_eq!(done["pass"], 2, "{done}");
        let first = &done["nodes"][0];
        assert_eq!((first["node"].clone(), first["pass"].clone()), (json!("first"), json!(1)), "succeeded nodes keep their pass");
        let gate = job_of(&done, "gate").unwrap();
        assert_ne!(gate, gate_job, "the gate ran again");
        assert_eq!(common::output(&app, gate, "stdout"), "open\n");
        let html = editor.get(&format!("/workflow-runs/{run}")).text();
        assert!(html.contains(r#"class="status succeeded">succeeded</span>"#), "{html}");
        assert!(!html.contains("/retry\"") && !html.contains("/cancel\""), "{html}");
        assert!(svg_of(&html).contains(&format!(r#"<g class="node succeeded" id="node-gate" data-node="gate"><a href="/jobs/{gate}">"#)));
        // The audit names what the forms did.
        let audit = app.get("/api/v1/audit?limit=500").text();
        for action in ["workflow.run", "workflow_run.cancel", "workflow_run.retry"] {
            assert!(audit.contains(&format!("\"action\":\"{action}\"")), "{action}: {audit}");
        }
    }
}

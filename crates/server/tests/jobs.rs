//! Jobs end to end: the real server, scheduler, workers and `cronium-runner`
//! running real bash scripts, on SQLite and on PostgreSQL.

mod common;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use common::{TestApp, finished, output, wait_for};
use serde_json::{Value, json};

/// Long enough for a slow CI machine; the tests finish far sooner.
const PATIENCE: Duration = Duration::from_secs(30);

fn bash_event(app: &TestApp, name: &str, script: &str, extra: Value) -> i64 {
    let mut body = json!({ "name": name, "interpreter": "bash", "content": script });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    app.create_event(body)["id"].as_i64().unwrap()
}

fn run_now(app: &TestApp, event: i64) -> Value {
    app.post(&format!("/api/v1/events/{event}/run"), json!({}))
        .expect(201)
}

fn job(app: &TestApp, id: i64) -> Value {
    app.get(&format!("/api/v1/jobs/{id}")).expect(200)
}

fn jobs_of(app: &TestApp, event: i64) -> Vec<Value> {
    app.get(&format!("/api/v1/jobs?event={event}&limit=500"))
        .expect(200)["items"]
        .as_array()
        .unwrap()
        .clone()
}

fn process_alive(pid: i64) -> bool {
    // Signal 0 checks existence; a zombie still counts, so look at its state too.
    let alive = unsafe { libc::kill(pid as i32, 0) } == 0;
    alive
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
}

both_backends! {
    fn a_manual_run_stores_stdout_and_stderr_and_the_exit_code(backend: Backend) {
        let app = TestApp::spawn(backend);
        let ok = bash_event(&app, "greet", "echo out-line\necho err-line >&2\n", json!({}));
        let queued = run_now(&app, ok);
        assert_eq!(queued["trigger"], "manual");
        assert!(queued["payloadPath"].as_str().unwrap().ends_with("v1.tar.gz"), "{queued}");
        let done = finished(&app, queued["id"].as_i64().unwrap());
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(done["exitCode"], 0);
        assert_eq!(done["attempt"], 1);
        assert!(done["startedAt"].is_string() && done["finishedAt"].is_string());
        let id = done["id"].as_i64().unwrap();
        assert_eq!(output(&app, id, "stdout"), "out-line\n");
        assert_eq!(output(&app, id, "stderr"), "err-line\n");

        let failing = bash_event(&app, "fail", "echo about to fail\nexit 3\n", json!({}));
        let done = finished(&app, run_now(&app, failing)["id"].as_i64().unwrap());
        assert_eq!(done["status"], "failed", "{done}");
        assert_eq!(done["exitCode"], 3);
        assert!(done["error"].as_str().unwrap().contains('3'), "{done}");
    }

    fn a_cron_event_fires_on_its_own_and_its_output_is_stored(backend: Backend) {
        let app = TestApp::spawn(backend);
        let event = bash_event(
            &app,
            "every second",
            "echo fired at $(date +%s)\n",
            json!({ "schedule": { "type": "cron", "cron": "* * * * * *", "timezone": "Europe/Berlin" } }),
        );
        let shown = app.get(&format!("/api/v1/events/{event}")).expect(200);
        let next = shown["nextFires"].as_array().unwrap();
        assert_eq!(next.len(), 5, "{shown}");
        let done = wait_for("a scheduled job to succeed", PATIENCE, || {
            jobs_of(&app, event)
                .into_iter()
                .find(|j| j["status"] == "succeeded")
        });
        assert_eq!(done["trigger"], "schedule");
        assert!(output(&app, done["id"].as_i64().unwrap(), "stdout").starts_with("fired at "));
        // Every fire is recorded once: scheduled times are distinct whole seconds.
        let jobs = jobs_of(&app, event);
        let mut times: Vec<&str> = jobs.iter().map(|j| j["scheduledAt"].as_str().unwrap()).collect();
        let count = times.len();
        times.sort();
        times.dedup();
        assert_eq!(times.len(), count, "a fire time recorded twice: {times:?}");

        // Pausing stops the schedule.
        app.patch(&format!("/api/v1/events/{event}"), json!({ "status": "paused" })).expect(200);
        std::thread::sleep(Duration::from_millis(300));
        let before = jobs_of(&app, event).len();
        std::thread::sleep(Duration::from_millis(2500));
        assert_eq!(jobs_of(&app, event).len(), before, "a paused event fired");
        let shown = app.get(&format!("/api/v1/events/{event}")).expect(200);
        assert_eq!(shown["nextFires"], json!([]));
    }

    fn overlap_forbid_records_skips_while_a_slow_run_goes_on(backend: Backend) {
        let app = TestApp::spawn(backend);
        let event = bash_event(
            &app,
            "slow",
            "sleep 3\n",
            json!({ "schedule": { "type": "every", "every": "1s" }, "overlap": "forbid" }),
        );
        let skipped = wait_for("two skipped fires", PATIENCE, || {
            let jobs = jobs_of(&app, event);
            let running = jobs.iter().filter(|j| j["status"] == "running").count();
            assert!(running <= 1, "forbid let two runs overlap: {jobs:?}");
            let skipped: Vec<Value> = jobs.into_iter().filter(|j| j["status"] == "skipped").collect();
            (skipped.len() >= 2).then_some(skipped)
        });
        for s in &skipped {
            let why = s["error"].as_str().unwrap();
            assert!(why.contains("forbid"), "{why}");
        }
        // A manual run is refused the same way, and the refusal is recorded.
        let refused = app.post(&format!("/api/v1/events/{event}/run"), json!({}));
        refused.expect_error(409, "conflict", Some("overlap"));
    }

    fn overlap_replace_cancels_the_running_job(backend: Backend) {
        let app = TestApp::spawn(backend);
        let event = bash_event(
            &app,
            "replace me",
            "echo started\nsleep 60\n",
            json!({ "overlap": "replace" }),
        );
        let first = run_now(&app, event)["id"].as_i64().unwrap();
        wait_for("the first run to start", PATIENCE, || {
            (job(&app, first)["status"] == "running" && output(&app, first, "stdout") == "started\n").then_some(())
        });
        let second = run_now(&app, event)["id"].as_i64().unwrap();
        // At once, not at the first run's next heartbeat (10 s away).
        let replaced = wait_for("the first run to be cancelled", Duration::from_secs(5), || {
            let j = job(&app, first);
            (j["status"] == "cancelled").then_some(j)
        });
        assert!(replaced["error"].as_str().unwrap().contains("cancel"), "{replaced}");
        wait_for("the second run to start", PATIENCE, || {
            (job(&app, second)["status"] == "running").then_some(())
        });
        app.post(&format!("/api/v1/jobs/{second}/cancel"), json!({})).expect(202);
        assert_eq!(finished(&app, second)["status"], "cancelled");
    }

    fn failures_are_retried_with_growing_delays_then_fail_for_good(backend: Backend) {
        let app = TestApp::spawn(backend);
        // Three retries: the jitter ranges of two neighbouring retries touch
        // (1 s at most, then 1 s at least), so only the third is certain to
        // wait longer than any first one could.
        let event = bash_event(
            &app,
            "flaky",
            "date +%s.%N\nexit 1\n",
            json!({ "retries": 3, "retryDelay": "1s" }),
        );
        let id = run_now(&app, event)["id"].as_i64().unwrap();
        let done = finished(&app, id);
        assert_eq!(done["status"], "failed", "{done}");
        assert_eq!(done["attempt"], 4, "{done}");
        let page = app.get(&format!("/api/v1/jobs/{id}/logs")).expect(200);
        let lines = page["items"].as_array().unwrap();
        let starts: Vec<f64> = lines
            .iter()
            .filter(|l| l["stream"] == "stdout")
            .map(|l| l["text"].as_str().unwrap().trim().parse().unwrap())
            .collect();
        assert_eq!(starts.len(), 4, "{lines:?}");
        let attempts = lines
            .iter()
            .filter(|l| l["stream"] == "system" && l["text"].as_str().unwrap().starts_with("attempt "))
            .count();
        assert_eq!(attempts, 4);
        // Retry n waits 1s · 2^(n-1), jittered into its upper half: 0.5..1,
        // 1..2, 2..4 s. A gap is that wait plus the time to end one attempt
        // and start the next (the workers look for due jobs every 250 ms).
        const SLACK: f64 = 1.0;
        let gaps: Vec<f64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
        for (n, gap) in gaps.iter().enumerate() {
            let full = f64::from(1u32 << n);
            assert!(
                *gap >= full / 2.0 && *gap <= full + SLACK,
                "retry {} after {gap:.3}s, not within {}..{} s (+{SLACK} s to start): {gaps:?}",
                n + 1,
                full / 2.0,
                full
            );
        }
        // Growing: the third wait is longer than any first one can be, so a
        // delay that stayed the same would fail here.
        assert!(gaps[2] > gaps[0], "no longer wait after more failures: {gaps:?}");
        // Sequence numbers run on across attempts without gaps.
        let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    }

    fn a_timeout_kills_the_whole_process_group(backend: Backend) {
        let app = TestApp::spawn(backend);
        let event = bash_event(
            &app,
            "too slow",
            "sleep 300 &\necho $!\nsleep 300\n",
            json!({ "timeout": "1s" }),
        );
        let id = run_now(&app, event)["id"].as_i64().unwrap();
        let done = finished(&app, id);
        assert_eq!(done["status"], "timed_out", "{done}");
        assert_eq!(done["exitCode"], 124);
        let pid: i64 = output(&app, id, "stdout").trim().parse().unwrap();
        wait_for("the background child to be gone", Duration::from_secs(10), || {
            (!process_alive(pid)).then_some(())
        });
    }

    fn cancel_stops_a_running_job_and_refuses_a_finished_one(backend: Backend) {
        let app = TestApp::spawn(backend);
        let event = bash_event(&app, "long", "sleep 300 &\necho $!\nwait\n", json!({}));
        let id = run_now(&app, event)["id"].as_i64().unwrap();
        let pid: i64 = wait_for("the script to start", PATIENCE, || {
            output(&app, id, "stdout").trim().parse().ok()
        });
        let viewer = app.token("viewer");
        app.call("POST", &format!("/api/v1/jobs/{id}/cancel"), &viewer, None)
            .expect_error(403, "forbidden", None);
        let answer = app.post(&format!("/api/v1/jobs/{id}/cancel"), json!({})).expect(202);
        assert_eq!(answer["id"], id);
        let done = finished(&app, id);
        assert_eq!(done["status"], "cancelled", "{done}");
        wait_for("the script's child to be gone", Duration::from_secs(10), || {
            (!process_alive(pid)).then_some(())
        });
        app.post(&format!("/api/v1/jobs/{id}/cancel"), json!({}))
            .expect_error(409, "conflict", Some("status"));
    }

    fn following_logs_sees_lines_while_the_script_still_runs(backend: Backend) {
        let app = TestApp::spawn(backend);
        let event = bash_event(&app, "talker", "echo one\nsleep 2\necho two\n", json!({}));
        let id = run_now(&app, event)["id"].as_i64().unwrap();
        let agent = ureq::Agent::new_with_defaults();
        let response = agent
            .get(format!("{}/api/v1/jobs/{id}/logs?follow=true", app.base))
            .header("authorization", format!("Bearer {}", app.admin_token))
            .call()
            .unwrap();
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        let mut reader = BufReader::new(response.into_body().into_reader());
        let mut events = Vec::new();
        let mut saw_one_while_running = false;
        let mut line = String::new();
        let started = Instant::now();
        while reader.read_line(&mut line).unwrap() > 0 {
            let text = line.trim_end().to_string();
            line.clear();
            if text.starts_with("data:") && text.contains("one\\n") {
                saw_one_while_running = job(&app, id)["status"] == "running";
            }
            if let Some(event) = text.strip_prefix("event:") {
                events.push(event.trim().to_string());
            }
            if let Some(data) = text.strip_prefix("data:").filter(|_| events.last().is_some_and(|e| e == "end")) {
                let end: Value = serde_json::from_str(data.trim()).unwrap();
                assert_eq!(end["status"], "succeeded");
                assert_eq!(end["exitCode"], 0);
                break;
            }
            assert!(started.elapsed() < PATIENCE, "the stream did not end");
        }
        assert!(saw_one_while_running, "the first line only arrived after the job ended");
        let output_events: Vec<&String> = events.iter().filter(|e| *e == "stdout").collect();
        assert_eq!(output_events.len(), 2, "{events:?}");

        // Resuming with Last-Event-ID gives only the lines after it, then the end.
        let stdout_seqs: Vec<u64> = app.get(&format!("/api/v1/jobs/{id}/logs")).expect(200)["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["stream"] == "stdout")
            .map(|l| l["seq"].as_u64().unwrap())
            .collect();
        let resumed = app.send(
            "GET",
            &format!("/api/v1/jobs/{id}/logs?follow=true"),
            Some(&app.admin_token),
            &[("last-event-id", &stdout_seqs[0].to_string())],
            None,
        );
        let text = resumed.text();
        assert!(!text.contains("one\\n"), "{text}");
        assert!(text.contains("two\\n"), "{text}");
        assert!(text.contains("event: end"), "{text}");
    }

    fn a_payload_changed_on_disk_fails_the_job_and_runs_nothing(backend: Backend) {
        let app = TestApp::spawn(backend);
        let marker = app.data_dir.join("ran");
        let script = format!("touch {}\n", marker.display());
        let event = bash_event(&app, "tampered", &script, json!({}));
        let path = app.data_dir.join(
            app.get(&format!("/api/v1/events/{event}/payloads")).expect(200)[0]["payloadPath"]
                .as_str()
                .unwrap(),
        );
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let done = finished(&app, run_now(&app, event)["id"].as_i64().unwrap());
        assert_eq!(done["status"], "failed", "{done}");
        assert!(done["error"].as_str().unwrap().contains("checksum"), "{done}");
        assert!(!marker.exists(), "the tampered payload ran");
    }

    fn job_listing_filters_and_validates(backend: Backend) {
        let app = TestApp::spawn(backend);
        let a = bash_event(&app, "a", "true\n", json!({ "overlap": "allow" }));
        let b = bash_event(&app, "b", "exit 2\n", json!({}));
        let ids: Vec<i64> = (0..3).map(|_| run_now(&app, a)["id"].as_i64().unwrap()).collect();
        let failed = run_now(&app, b)["id"].as_i64().unwrap();
        for id in ids.iter().chain([&failed]) {
            finished(&app, *id);
        }
        let page = app.get(&format!("/api/v1/jobs?event={a}&limit=2")).expect(200);
        assert_eq!(page["total"], 3);
        assert_eq!(page["items"].as_array().unwrap().len(), 2);
        assert_eq!(page["items"][0]["id"], ids[2], "newest first");
        let page = app.get("/api/v1/jobs?status=failed").expect(200);
        assert_eq!(page["total"], 1);
        assert_eq!(page["items"][0]["id"], failed);
        let page = app.get("/api/v1/jobs?since=2000-01-01T00:00:00Z&until=2000-01-02T00:00:00Z").expect(200);
        assert_eq!(page["total"], 0);
        app.get("/api/v1/jobs?status=done").expect_error(422, "validation_failed", Some("status"));
        app.get("/api/v1/jobs?since=yesterday").expect_error(422, "validation_failed", Some("since"));
        app.get("/api/v1/jobs/999999").expect_error(404, "not_found", None);
        app.get("/api/v1/jobs/999999/logs").expect_error(404, "not_found", None);
        app.post("/api/v1/events/999999/run", json!({})).expect_error(404, "not_found", None);
        let viewer = app.token("viewer");
        app.call("POST", &format!("/api/v1/events/{a}/run"), &viewer, Some(json!({})))
            .expect_error(403, "forbidden", None);
        app.call("GET", "/api/v1/jobs", &viewer, None).expect(200);
        let draft = bash_event(&app, "draft", "true\n", json!({ "status": "draft" }));
        app.post(&format!("/api/v1/events/{draft}/run"), json!({}))
            .expect_error(409, "conflict", Some("status"));
    }

    fn manual_input_and_secrets_reach_the_script_only_at_run_time(backend: Backend) {
        let app = TestApp::spawn(backend);
        let event = bash_event(
            &app,
            "with input",
            "echo \"input=$(cronium input) job=$CRONIUM_JOB_ID\"\necho \"token=$API_TOKEN\"\n",
            json!({ "secretEnv": { "API_TOKEN": "s3cr3t-value" } }),
        );
        let queued = app
            .post(&format!("/api/v1/events/{event}/run"), json!({ "input": { "n": 7 } }))
            .expect(201);
        let id = queued["id"].as_i64().unwrap();
        finished(&app, id);
        assert_eq!(
            output(&app, id, "stdout"),
            // The script sees the secret; its stored output shows only the mask.
            format!("input={{\"n\":7}} job={id}\ntoken=***\n")
        );
        let payload = app.get(&format!("/api/v1/events/{event}/payloads/1"));
        assert!(!common::contains(&payload.body, b"s3cr3t-value"));
    }
}

both_backends! {
    fn a_sandboxed_job_sees_neither_the_data_dir_nor_a_writable_system(backend: Backend) {
        let app = TestApp::spawn_with(backend, |c| c.sandbox = cronium_server::config::SandboxMode::Bubblewrap);
        let key = app.data_dir.join("master.key");
        let script = format!(
            "cat {} && echo LEAKED\ntouch /usr/cronium-probe 2>/dev/null && echo WROTE && rm -f /usr/cronium-probe\necho finished\n",
            key.display()
        );
        let event = bash_event(&app, "boxed", &script, json!({}));
        let id = run_now(&app, event)["id"].as_i64().unwrap();
        let done = finished(&app, id);
        assert_eq!(done["status"], "succeeded", "{done}");
        let out = output(&app, id, "stdout");
        assert_eq!(out, "finished\n", "{out}");
        assert!(key.exists(), "the key is still there outside the sandbox");
    }
}

both_backends! {
    fn output_over_the_cap_keeps_its_head_and_tail_with_a_visible_marker(backend: Backend) {
        let app = TestApp::spawn_with(backend, |c| c.job_log_limit = 1000);
        // 100 lines of 50 bytes: 5,000 bytes against a 1,000-byte cap.
        let script = "for i in $(seq 1 100); do printf '%049d\\n' $i; done\n";
        let event = bash_event(&app, "chatty", script, json!({}));
        let id = run_now(&app, event)["id"].as_i64().unwrap();
        assert_eq!(finished(&app, id)["status"], "succeeded");
        let stdout = output(&app, id, "stdout");
        assert_eq!(stdout.len(), 1000, "10 whole lines from each end fit");
        let kept: Vec<String> = (1..=10).chain(91..=100).map(|i| format!("{i:049}\n")).collect();
        assert_eq!(stdout, kept.concat(), "the first and the last lines, in order");
        let system = output(&app, id, "system");
        assert!(system.contains("80 lines (4000 bytes) left out: this attempt wrote more than 1000 bytes"), "{system}");
    }

    fn the_global_limit_runs_one_job_at_a_time(backend: Backend) {
        let app = TestApp::spawn_with(backend, |c| c.max_jobs = 1);
        let event = bash_event(&app, "parallel", "sleep 0.3\n", json!({ "overlap": "allow" }));
        let ids: Vec<i64> = (0..3).map(|_| run_now(&app, event)["id"].as_i64().unwrap()).collect();
        // Compared as times: the text drops trailing zero digits, so it
        // does not sort as the times do.
        let time = |v: &Value| v.as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().unwrap();
        let mut spans: Vec<_> = ids
            .iter()
            .map(|id| {
                let j = finished(&app, *id);
                assert_eq!(j["status"], "succeeded", "{j}");
                (time(&j["startedAt"]), time(&j["finishedAt"]))
            })
            .collect();
        spans.sort();
        for pair in spans.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "two jobs ran at once: {pair:?}");
        }
    }
}

both_backends! {
    fn a_one_shot_fires_once_and_is_done(backend: Backend) {
        let app = TestApp::spawn(backend);
        let at = chrono::Utc::now() + chrono::TimeDelta::seconds(2);
        let at_text = at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let event = bash_event(&app, "once", "echo once\n", json!({ "schedule": { "type": "at", "at": at_text } }));
        let shown = app.get(&format!("/api/v1/events/{event}")).expect(200);
        assert_eq!(shown["nextFires"], json!([at_text]));
        let done = wait_for("the one-shot to run", PATIENCE, || {
            jobs_of(&app, event).into_iter().find(|j| j["status"] == "succeeded")
        });
        assert_eq!(done["scheduledAt"], json!(at_text));
        assert_eq!(output(&app, done["id"].as_i64().unwrap(), "stdout"), "once\n");
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(jobs_of(&app, event).len(), 1, "fired twice");
        let shown = app.get(&format!("/api/v1/events/{event}")).expect(200);
        assert_eq!(shown["nextFires"], json!([]));
    }
}

//! Runtime helpers end to end: bash, python3 and node scripts call `cronium`
//! through the real runner, and a fake executor in this file answers the
//! runner's Call records from an in-memory store, as the server would.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{Fixture, Framed, Lang, RUNNER, run, spawn};
use cronium_runner::protocol::{
    self, Expect, HelperCall, HelperError, HelperOp, HelperOutcome, HelperReply, Kind,
};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// The fake executor
// ---------------------------------------------------------------------------

/// Limits the server enforces (the contract's numbers).
const MAX_OUTPUT: usize = 1024 * 1024;
const MAX_VARIABLE: usize = 64 * 1024;
const MAX_CALLS: usize = 10_000;

/// Longest a test waits for the runner before calling it hung.
const HANG: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq)]
struct Var {
    value: Value,
    secret: bool,
}

/// What the fake server keeps for one attempt, and what it saw.
#[derive(Debug, Clone)]
struct Store {
    input: Value,
    vars: BTreeMap<String, Var>,
    output: Option<Value>,
    condition: bool,
    calls: usize,
    max_calls: usize,
}

impl Store {
    fn new(input: Value, vars: &[(&str, Value)]) -> Store {
        Store {
            input,
            vars: vars
                .iter()
                .map(|(k, v)| {
                    let var = Var {
                        value: v.clone(),
                        secret: false,
                    };
                    (k.to_string(), var)
                })
                .collect(),
            output: None,
            condition: false,
            calls: 0,
            max_calls: MAX_CALLS,
        }
    }

    fn empty() -> Store {
        Store::new(Value::Null, &[])
    }

    /// The server's answer to one call.
    fn answer(&mut self, op: &HelperOp) -> HelperOutcome {
        self.calls += 1;
        if self.calls > self.max_calls {
            return HelperOutcome::err(HelperError::Limit, "too many helper calls in this attempt");
        }
        match self.answer_op(op) {
            Ok(value) => HelperOutcome::Ok(value),
            Err((error, message)) => HelperOutcome::err(error, message),
        }
    }

    fn answer_op(&mut self, op: &HelperOp) -> Result<Value, (HelperError, String)> {
        Ok(match op {
            HelperOp::Input => self.input.clone(),
            HelperOp::Context => context(),
            HelperOp::Output { value } => {
                limit(value, MAX_OUTPUT, "the output")?;
                self.output = Some(value.clone());
                Value::Null
            }
            HelperOp::VarGet { key } => {
                check_key(key)?;
                self.vars
                    .get(key)
                    .map(|v| v.value.clone())
                    .ok_or_else(|| (HelperError::NotFound, format!("no variable {key}")))?
            }
            HelperOp::VarSet {
                key,
                value,
                secret,
                expect,
            } => {
                check_key(key)?;
                limit(value, MAX_VARIABLE, "a variable's value")?;
                let current = self.vars.get(key);
                let holds = match expect {
                    None => true,
                    Some(Expect::Absent) => current.is_none(),
                    Some(Expect::Value(v)) => current.is_some_and(|c| c.value == *v),
                };
                if !holds {
                    return Err((HelperError::Conflict, format!("{key} changed")));
                }
                let secret = secret.unwrap_or(current.is_some_and(|c| c.secret));
                self.vars.insert(
                    key.clone(),
                    Var {
                        value: value.clone(),
                        secret,
                    },
                );
                Value::Null
            }
            HelperOp::VarDelete { key } => {
                check_key(key)?;
                self.vars
                    .remove(key)
                    .ok_or_else(|| (HelperError::NotFound, format!("no variable {key}")))?;
                Value::Null
            }
            HelperOp::Condition { value } => {
                self.condition = *value;
                Value::Null
            }
        })
    }
}

fn context() -> Value {
    json!({
        "jobId": 7,
        "attempt": 2,
        "event": {"id": 3, "name": "nightly report"},
        "trigger": "manual",
        "server": null,
    })
}

/// The contract's key rule: 1–128 characters of `[A-Za-z0-9_.-]`, starting
/// with a letter, a digit or `_`.
fn check_key(key: &str) -> Result<(), (HelperError, String)> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    let first_ok = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    if first_ok && key.chars().count() <= 128 && key.chars().all(allowed) {
        Ok(())
    } else {
        Err((
            HelperError::Invalid,
            format!("invalid variable key {key:?}"),
        ))
    }
}

fn limit(value: &Value, max: usize, what: &str) -> Result<(), (HelperError, String)> {
    let size = serde_json::to_vec(value).unwrap().len();
    if size > max {
        return Err((
            HelperError::TooLarge,
            format!("{what} is {size} bytes, more than {max}"),
        ));
    }
    Ok(())
}

/// How the fake executor answers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Answering {
    /// Each call at once.
    InOrder,
    /// Holds calls until none came for a moment (or 20 wait), then answers
    /// them last first: callers only get their own answer through the ids.
    Shuffled,
    /// Reads the first call, then closes the runner's stdin (the connection
    /// went away mid-call).
    CloseStdinOnFirstCall,
}

/// One run against the fake executor.
struct Session {
    framed: Framed,
    store: Store,
    code: i32,
    /// Most calls answered out of order in one go (Shuffled only).
    largest_shuffle: usize,
}

impl Session {
    fn stdout(&self) -> String {
        String::from_utf8(self.framed.stdout()).expect("UTF-8 stdout")
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.framed.stderr()).into_owned()
    }

    /// The script's `name=<json>` lines.
    fn reports(&self) -> Vec<(String, Value)> {
        parse_reports(&self.stdout())
    }

    fn assert_succeeded(&self, what: &str) {
        assert_eq!(
            self.code,
            0,
            "{what}: stdout {}\nstderr {}\nmessages {}",
            self.stdout(),
            self.stderr(),
            self.framed.messages()
        );
    }
}

fn parse_reports(stdout: &str) -> Vec<(String, Value)> {
    stdout
        .lines()
        .map(|line| {
            let (name, json) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("not a report line: {line:?}"));
            let value = serde_json::from_str(json)
                .unwrap_or_else(|e| panic!("{name}: {json:?} is not JSON: {e}"));
            (name.to_string(), value)
        })
        .collect()
}

/// Runs the fixture's payload in framed mode and answers its helper calls
/// from `store`.
fn execute(
    fixture: &Fixture,
    store: Store,
    answering: Answering,
    env: &[(&str, &Path)],
) -> Session {
    let mut cmd = fixture.run(&["--output", "framed"]);
    for (name, value) in env {
        cmd.env(name, value);
    }
    serve(cmd, store, answering)
}

fn serve(cmd: Command, mut store: Store, answering: Answering) -> Session {
    let mut running = spawn(cmd);
    let mut stdout = running.take_stdout();
    let mut stdin: Option<ChildStdin> = Some(running.take_stdin());
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        while let Some(record) = protocol::read_frame(&mut stdout).expect("a well-formed stream") {
            if tx.send(record).is_err() {
                return;
            }
        }
    });

    let mut records = Vec::new();
    let mut held: Vec<HelperCall> = Vec::new();
    let mut largest_shuffle = 0;
    let give_up = Instant::now() + HANG;
    loop {
        // While calls are held, a quiet moment means every concurrent caller has called.
        let wait = if held.is_empty() {
            give_up.saturating_duration_since(Instant::now())
        } else {
            Duration::from_millis(150)
        };
        let record = match rx.recv_timeout(wait) {
            Ok(record) => Some(record),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        assert!(
            Instant::now() < give_up,
            "the run did not end within {HANG:?}"
        );
        if let Some((Kind::Call, json)) = &record {
            let call: HelperCall = serde_json::from_slice(json)
                .unwrap_or_else(|e| panic!("Call record {}: {e}", String::from_utf8_lossy(json)));
            match answering {
                Answering::InOrder => reply(&mut stdin, &call, store.answer(&call.op)),
                Answering::Shuffled => held.push(call),
                Answering::CloseStdinOnFirstCall => stdin = None,
            }
        }
        let quiet = record.is_none();
        if let Some(record) = record {
            records.push(record);
        }
        if !held.is_empty() && (quiet || held.len() >= 20) {
            largest_shuffle = largest_shuffle.max(held.len());
            for call in held.drain(..).rev() {
                let outcome = store.answer(&call.op);
                reply(&mut stdin, &call, outcome);
            }
        }
    }
    reader.join().expect("reader");
    drop(stdin);
    let ran = running.finish();

    let mut bytes = Vec::new();
    for (kind, data) in &records {
        protocol::write_frame(&mut bytes, *kind, data).unwrap();
    }
    assert!(
        matches!(records.last(), Some((Kind::Result, _))),
        "the runner ended without a Result ({:?}); its stderr: {}",
        ran.status,
        ran.stderr_text()
    );
    let framed = Framed::decode(&bytes);
    let code = ran.code();
    assert_eq!(
        code,
        framed.result().exit_code,
        "exit status and Result agree"
    );
    Session {
        framed,
        store,
        code,
        largest_shuffle,
    }
}

fn reply(stdin: &mut Option<ChildStdin>, call: &HelperCall, outcome: HelperOutcome) {
    let reply = HelperReply {
        id: call.id,
        outcome,
    };
    if let Some(w) = stdin {
        // The runner may already be gone; its Result tells.
        let _ = protocol::write_json(w, Kind::Reply, &reply);
    }
}

// ---------------------------------------------------------------------------
// Scripts
// ---------------------------------------------------------------------------

/// What each script needs first: a way to print `name=<json>` lines.
fn prelude(lang: Lang) -> &'static str {
    match lang {
        Lang::Bash => "report() { printf '%s=%s\\n' \"$1\" \"$2\"; }\n",
        Lang::Python => {
            "import json, os, cronium\n\
             def report(name, value):\n    print(name + '=' + json.dumps(value, ensure_ascii=False), flush=True)\n\
             def code(f):\n    try:\n        f()\n        return 'ok'\n    except cronium.HelperError as e:\n        return e.code\n"
        }
        Lang::Node => {
            "const fs = require('fs');\n\
             function report(name, value) { console.log(name + '=' + JSON.stringify(value === undefined ? null : value)); }\n\
             function code(f) { try { f(); return 'ok'; } catch (e) { if (!e.code) throw e; return e.code; } }\n"
        }
    }
}

fn fixture(lang: Lang, body: &str) -> Fixture {
    Fixture::new(lang, &format!("{}{body}", prelude(lang)))
}

fn every_operation_script(lang: Lang) -> &'static str {
    match lang {
        Lang::Bash => {
            r#"
report input "$(cronium input)"
report context "$(cronium context)"
cronium var set greeting '"héllo ✓ 😀"'; report set $?
report get "$(cronium var get greeting)"
cronium var set token '"s3cr3t"' --secret; report secret $?
cronium var set counter 6 --expect 5; report cas $?
cronium var set counter 7 --expect 5; report cas_conflict $?
cronium var set fresh '{"n": [1, -2.5]}' --expect-absent; report absent $?
cronium var set fresh false --expect-absent; report absent_conflict $?
cronium var set negative -3; report negative $?
cronium var delete existing; report delete $?
cronium var delete existing; report delete_again $?
cronium var get existing; report missing $?
cronium condition true; report condition $?
echo '{"total": 42, "items": ["a", "b"]}' | cronium output -; report output $?
"#
        }
        Lang::Python => {
            r#"
report("input", cronium.input())
report("context", cronium.context())
report("set", cronium.set_variable("greeting", "héllo ✓ 😀"))
report("get", cronium.get_variable("greeting"))
report("secret", cronium.set_variable("token", "s3cr3t", secret=True))
report("cas", cronium.set_variable("counter", 6, expect=5))
report("cas_conflict", cronium.set_variable("counter", 7, expect=5))
report("absent", cronium.set_variable("fresh", {"n": [1, -2.5]}, expect=cronium.ABSENT))
report("absent_conflict", cronium.set_variable("fresh", False, expect=cronium.ABSENT))
report("negative", cronium.set_variable("negative", -3))
report("delete", cronium.delete_variable("existing"))
report("delete_again", cronium.delete_variable("existing"))
report("missing", cronium.get_variable("existing", "fallback"))
report("missing_none", cronium.get_variable("existing"))
report("condition", cronium.set_condition(True))
report("output", cronium.output({"total": 42, "items": ["a", "b"]}))
"#
        }
        Lang::Node => {
            r#"
report('input', cronium.input());
report('context', cronium.context());
report('set', cronium.setVariable('greeting', 'héllo ✓ 😀'));
report('get', cronium.getVariable('greeting'));
report('secret', cronium.setVariable('token', 's3cr3t', { secret: true }));
report('cas', cronium.setVariable('counter', 6, { expect: 5 }));
report('cas_conflict', cronium.setVariable('counter', 7, { expect: 5 }));
report('absent', cronium.setVariable('fresh', { n: [1, -2.5] }, { expectAbsent: true }));
report('absent_conflict', cronium.setVariable('fresh', false, { expectAbsent: true }));
report('negative', cronium.setVariable('negative', -3));
report('delete', cronium.deleteVariable('existing'));
report('delete_again', cronium.deleteVariable('existing'));
report('missing', cronium.getVariable('existing', 'fallback'));
report('missing_none', cronium.getVariable('existing'));
report('condition', cronium.setCondition(true));
report('output', cronium.output({ total: 42, items: ['a', 'b'] }));
"#
        }
    }
}

#[test]
fn every_operation_works_in_every_language() {
    let input = json!({"name": "ünï", "n": 41, "list": [true, null]});
    for lang in Lang::ALL {
        let store = Store::new(
            input.clone(),
            &[("existing", json!(1)), ("counter", json!(5))],
        );
        let session = execute(
            &fixture(lang, every_operation_script(lang)),
            store,
            Answering::InOrder,
            &[],
        );
        session.assert_succeeded(&format!("{lang:?}"));

        let (ok, conflict, deleted, missing) = match lang {
            // Exit statuses.
            Lang::Bash => (json!(0), json!(5), json!(1), json!(1)),
            // Return values.
            _ => (json!(true), json!(false), json!(false), json!("fallback")),
        };
        let done = if lang == Lang::Bash {
            json!(0)
        } else {
            Value::Null
        };
        let mut expected = vec![
            ("input", input.clone()),
            ("context", context()),
            ("set", ok.clone()),
            ("get", json!("héllo ✓ 😀")),
            ("secret", ok.clone()),
            ("cas", ok.clone()),
            ("cas_conflict", conflict.clone()),
            ("absent", ok.clone()),
            ("absent_conflict", conflict),
            ("negative", ok.clone()),
            ("delete", ok),
            ("delete_again", deleted),
            ("missing", missing),
        ];
        if lang != Lang::Bash {
            expected.push(("missing_none", Value::Null));
        }
        expected.push(("condition", done.clone()));
        expected.push(("output", done));
        let expected: Vec<(String, Value)> = expected
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(session.reports(), expected, "{lang:?}");

        let var = |value: Value, secret| Var { value, secret };
        let vars: BTreeMap<String, Var> = [
            ("counter", var(json!(6), false)),
            ("fresh", var(json!({"n": [1, -2.5]}), false)),
            ("greeting", var(json!("héllo ✓ 😀"), false)),
            ("negative", var(json!(-3), false)),
            ("token", var(json!("s3cr3t"), true)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(session.store.vars, vars, "{lang:?}");
        assert_eq!(
            session.store.output,
            Some(json!({"total": 42, "items": ["a", "b"]})),
            "{lang:?}"
        );
        assert!(session.store.condition, "{lang:?}");
        if lang == Lang::Bash {
            assert!(
                session.stderr().contains("cronium: no variable existing"),
                "the server's message is passed on: {}",
                session.stderr()
            );
        }
    }
}

/// Keys the server refuses, each passed to the script in `KEY_<n>`.
const REFUSED_KEYS: [&str; 7] = ["a;rm -rf /", "$(id)", "../x", "a\nb", ".hidden", "", "-x"];

fn refused_keys_script(lang: Lang) -> String {
    let n = REFUSED_KEYS.len();
    match lang {
        Lang::Bash => format!(
            r#"for i in $(seq 0 {last}); do
  name="KEY_$i"; key="${{!name}}"
  cronium var get -- "$key"; g=$?
  cronium var set -- "$key" 1; s=$?
  cronium var delete -- "$key"; d=$?
  report "$i" "[$g,$s,$d]"
done
"#,
            last = n - 1
        ),
        Lang::Python => format!(
            r#"for i in range({n}):
    key = os.environ["KEY_%d" % i]
    report(str(i), [code(lambda: cronium.get_variable(key)),
                    code(lambda: cronium.set_variable(key, 1)),
                    code(lambda: cronium.delete_variable(key))])
"#
        ),
        Lang::Node => format!(
            r#"for (let i = 0; i < {n}; i++) {{
  const key = process.env['KEY_' + i];
  report(String(i), [code(() => cronium.getVariable(key)),
                     code(() => cronium.setVariable(key, 1)),
                     code(() => cronium.deleteVariable(key))]);
}}
"#
        ),
    }
}

#[test]
fn keys_outside_the_rule_are_refused_as_invalid() {
    for lang in Lang::ALL {
        let fixture = fixture(lang, &refused_keys_script(lang));
        let mut cmd = fixture.run(&["--output", "framed"]);
        for (i, key) in REFUSED_KEYS.iter().enumerate() {
            cmd.env(format!("KEY_{i}"), key);
        }
        let session = serve(
            cmd,
            Store::new(Value::Null, &[("x", json!(1))]),
            Answering::InOrder,
        );
        session.assert_succeeded(&format!("{lang:?}"));

        let each = match lang {
            Lang::Bash => json!([3, 3, 3]),
            _ => json!(["invalid", "invalid", "invalid"]),
        };
        let expected: Vec<(String, Value)> = (0..REFUSED_KEYS.len())
            .map(|i| (i.to_string(), each.clone()))
            .collect();
        assert_eq!(
            session.reports(),
            expected,
            "{lang:?}: {}",
            session.stderr()
        );
        assert_eq!(
            session.store.calls,
            3 * REFUSED_KEYS.len(),
            "{lang:?}: the server decides about keys"
        );
        assert_eq!(session.store.vars.len(), 1, "{lang:?}: nothing written");
    }
}

/// A JSON text of about `size` bytes (compact), full of characters that
/// need escaping or several UTF-8 bytes.
fn big_json(size: usize) -> Value {
    let piece = "ünïcødé ✓ 😀 \"quoted\" back\\slash\ttab\nline ";
    let mut rows = Vec::new();
    let mut len = 0;
    while len < size {
        let row = format!("{len}: {piece}");
        len += serde_json::to_string(&row).unwrap().len() + 1;
        rows.push(Value::String(row));
    }
    json!({"rows": rows})
}

fn write_json_file(fixture: &Fixture, name: &str, value: &Value) -> PathBuf {
    let path = fixture.file(name);
    fs::write(&path, serde_json::to_vec(value).unwrap()).unwrap();
    path
}

fn large_values_script(lang: Lang) -> &'static str {
    match lang {
        Lang::Bash => {
            r#"
cronium var set big - < "$VARIABLE_FILE"; report set $?
cronium var get big > "$GOT_FILE"; report get $?
cronium output - < "$OUTPUT_FILE"; report output $?
"#
        }
        Lang::Python => {
            r#"
value = json.load(open(os.environ["VARIABLE_FILE"], encoding="utf-8"))
report("set", cronium.set_variable("big", value))
got = cronium.get_variable("big")
with open(os.environ["GOT_FILE"], "w", encoding="utf-8") as f:
    json.dump(got, f, ensure_ascii=False)
report("get", got == value)
cronium.output(json.load(open(os.environ["OUTPUT_FILE"], encoding="utf-8")))
report("output", True)
deep = []
for _ in range(125):
    deep = [deep]
report("deep", cronium.set_variable("deep", deep) and cronium.get_variable("deep") == deep)
"#
        }
        Lang::Node => {
            r#"
const value = JSON.parse(fs.readFileSync(process.env.VARIABLE_FILE, 'utf8'));
report('set', cronium.setVariable('big', value));
const got = cronium.getVariable('big');
fs.writeFileSync(process.env.GOT_FILE, JSON.stringify(got));
report('get', JSON.stringify(got) === JSON.stringify(value));
cronium.output(JSON.parse(fs.readFileSync(process.env.OUTPUT_FILE, 'utf8')));
report('output', true);
"#
        }
    }
}

#[test]
fn large_and_unicode_values_round_trip_exactly() {
    let variable = big_json(60 * 1024);
    let output = big_json(1_000_000);
    assert!(serde_json::to_vec(&variable).unwrap().len() <= MAX_VARIABLE);
    assert!(serde_json::to_vec(&output).unwrap().len() <= MAX_OUTPUT);
    for lang in Lang::ALL {
        let fixture = fixture(lang, large_values_script(lang));
        let variable_file = write_json_file(&fixture, "variable.json", &variable);
        let output_file = write_json_file(&fixture, "output.json", &output);
        let got_file = fixture.file("got.json");
        let session = execute(
            &fixture,
            Store::empty(),
            Answering::InOrder,
            &[
                ("VARIABLE_FILE", &variable_file),
                ("OUTPUT_FILE", &output_file),
                ("GOT_FILE", &got_file),
            ],
        );
        session.assert_succeeded(&format!("{lang:?}"));
        let reports = session.reports();
        assert!(
            reports
                .iter()
                .all(|(_, v)| *v == json!(0) || *v == json!(true)),
            "{lang:?}: {reports:?}"
        );
        assert_eq!(session.store.vars["big"].value, variable, "{lang:?}");
        assert_eq!(session.store.output.as_ref(), Some(&output), "{lang:?}");
        let got = fs::read_to_string(&got_file).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&got).unwrap(),
            variable,
            "{lang:?}"
        );
        if lang == Lang::Bash {
            // `cronium var get` prints compact JSON and a newline, nothing else.
            assert_eq!(got, serde_json::to_string(&variable).unwrap() + "\n");
        }
    }
}

fn limits_script(lang: Lang) -> &'static str {
    match lang {
        Lang::Bash => {
            r#"
cronium var set over - < "$OVER_VARIABLE"; report variable $?
cronium output - < "$OVER_OUTPUT"; report output $?
cronium output - < "$OVER_FRAME"; report frame $?
"#
        }
        Lang::Python => {
            r#"
def load(name):
    return json.load(open(os.environ[name], encoding="utf-8"))
report("variable", code(lambda: cronium.set_variable("over", load("OVER_VARIABLE"))))
report("output", code(lambda: cronium.output(load("OVER_OUTPUT"))))
report("frame", code(lambda: cronium.output(load("OVER_FRAME"))))
"#
        }
        Lang::Node => {
            r#"
const load = (name) => JSON.parse(fs.readFileSync(process.env[name], 'utf8'));
report('variable', code(() => cronium.setVariable('over', load('OVER_VARIABLE'))));
report('output', code(() => cronium.output(load('OVER_OUTPUT'))));
report('frame', code(() => cronium.output(load('OVER_FRAME'))));
"#
        }
    }
}

#[test]
fn values_over_a_limit_fail_as_too_large_and_nothing_is_kept() {
    let over_variable = big_json(MAX_VARIABLE + 100);
    let over_output = big_json(MAX_OUTPUT + 100);
    // More than the runner's channel carries: refused before any call.
    let over_frame = big_json(3 * 1024 * 1024);
    for lang in Lang::ALL {
        let fixture = fixture(lang, limits_script(lang));
        let files = [
            (
                "OVER_VARIABLE",
                write_json_file(&fixture, "v.json", &over_variable),
            ),
            (
                "OVER_OUTPUT",
                write_json_file(&fixture, "o.json", &over_output),
            ),
            (
                "OVER_FRAME",
                write_json_file(&fixture, "f.json", &over_frame),
            ),
        ];
        let env: Vec<(&str, &Path)> = files.iter().map(|(k, p)| (*k, p.as_path())).collect();
        let session = execute(&fixture, Store::empty(), Answering::InOrder, &env);
        session.assert_succeeded(&format!("{lang:?}"));
        let each = match lang {
            Lang::Bash => json!(4),
            _ => json!("too_large"),
        };
        let expected: Vec<(String, Value)> = ["variable", "output", "frame"]
            .into_iter()
            .map(|k| (k.to_string(), each.clone()))
            .collect();
        assert_eq!(
            session.reports(),
            expected,
            "{lang:?}: {}",
            session.stderr()
        );
        assert_eq!(
            session.store.calls, 2,
            "{lang:?}: the last never left the script's host"
        );
        assert!(session.store.vars.is_empty(), "{lang:?}");
        assert_eq!(session.store.output, None, "{lang:?}");
    }
}

#[test]
fn values_that_are_not_json_are_refused_before_any_call() {
    let scripts = [
        (
            Lang::Bash,
            r#"
cronium var set k 'not json'; report text $?
cronium output '{"open": '; report truncated $?
cronium var set k 1 --expect 'nope'; report expect $?
printf '"\xff"' | cronium output -; report not_utf8 $?
cronium output ''; report empty $?
cronium frobnicate; report unknown_command $?
cronium var set k; report missing_value $?
cronium condition maybe; report bad_condition $?
"#,
            json!([3, 3, 3, 3, 3, 2, 2, 2]),
            0,
        ),
        (
            Lang::Python,
            r#"
report("set", code(lambda: cronium.set_variable("k", {1, 2})))
report("nan", code(lambda: cronium.output(float("nan"))))
report("condition", code(lambda: cronium.set_condition("yes")))
report("key_type", code(lambda: cronium.get_variable(7)))
report("nul_key", code(lambda: cronium.set_variable("a\0b", 1)))
"#,
            json!(["invalid", "invalid", "invalid", "invalid", "invalid"]),
            // The NUL key reaches the server, which refuses it.
            1,
        ),
        (
            Lang::Node,
            r#"
report('undefined', code(() => cronium.setVariable('k', undefined)));
report('bigint', code(() => cronium.output(10n)));
report('condition', code(() => cronium.setCondition('yes')));
report('key_type', code(() => cronium.getVariable(7)));
report('nul_key', code(() => cronium.setVariable('a\0b', 1)));
"#,
            json!(["invalid", "invalid", "invalid", "invalid", "invalid"]),
            0,
        ),
    ];
    for (lang, script, expected, calls) in scripts {
        let session = execute(
            &fixture(lang, script),
            Store::empty(),
            Answering::InOrder,
            &[],
        );
        session.assert_succeeded(&format!("{lang:?}"));
        let got: Vec<Value> = session.reports().into_iter().map(|(_, v)| v).collect();
        assert_eq!(
            Value::Array(got),
            expected,
            "{lang:?}: {}",
            session.stderr()
        );
        assert_eq!(session.store.calls, calls, "{lang:?}");
        assert!(session.store.vars.is_empty(), "{lang:?}");
    }
}

#[test]
fn the_call_limit_fails_further_calls() {
    let scripts = [
        (
            Lang::Bash,
            "for i in 1 2 3 4; do cronium context > /dev/null; report \"$i\" $?; done\n",
            json!([0, 0, 0, 4]),
        ),
        (
            Lang::Python,
            "for i in range(4):\n    report(str(i), code(cronium.context))\n",
            json!(["ok", "ok", "ok", "limit"]),
        ),
        (
            Lang::Node,
            "for (let i = 0; i < 4; i++) report(String(i), code(() => cronium.context()));\n",
            json!(["ok", "ok", "ok", "limit"]),
        ),
    ];
    for (lang, script, expected) in scripts {
        let mut store = Store::empty();
        store.max_calls = 3;
        let session = execute(&fixture(lang, script), store, Answering::InOrder, &[]);
        session.assert_succeeded(&format!("{lang:?}"));
        let got: Vec<Value> = session.reports().into_iter().map(|(_, v)| v).collect();
        assert_eq!(
            Value::Array(got),
            expected,
            "{lang:?}: {}",
            session.stderr()
        );
    }
}

#[test]
fn twenty_background_processes_each_get_their_own_answers() {
    let script = r#"
for i in $(seq 1 20); do
  ( cronium var set "p$i" "$i" && v=$(cronium var get "p$i") && echo "$i=$v" ) &
done
wait
"#;
    let session = execute(
        &fixture(Lang::Bash, script),
        Store::empty(),
        Answering::Shuffled,
        &[],
    );
    session.assert_succeeded("bash");
    let mut seen: Vec<(String, Value)> = session.reports();
    seen.sort_by_key(|(k, _)| k.parse::<u32>().unwrap());
    let expected: Vec<(String, Value)> = (1..=20).map(|i| (i.to_string(), json!(i))).collect();
    assert_eq!(seen, expected, "{}", session.stderr());
    assert_eq!(session.store.vars.len(), 20);
    assert_eq!(session.store.calls, 40);
    assert!(
        session.largest_shuffle >= 2,
        "some calls were answered out of order (largest batch {})",
        session.largest_shuffle
    );
}

fn stdin_closed_script(lang: Lang) -> &'static str {
    // Each ignores SIGTERM, so it lives to record how its call ended.
    match lang {
        Lang::Bash => {
            "trap '' TERM\ncronium var get k; echo \"status=$?\" > \"$MARKER.tmp\" && mv \"$MARKER.tmp\" \"$MARKER\"\n"
        }
        Lang::Python => {
            "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n\
             c = code(lambda: cronium.get_variable('k'))\n\
             open(os.environ['MARKER'] + '.tmp', 'w').write('code=' + c)\n\
             os.rename(os.environ['MARKER'] + '.tmp', os.environ['MARKER'])\n"
        }
        Lang::Node => {
            "process.on('SIGTERM', () => {});\n\
             const c = code(() => cronium.getVariable('k'));\n\
             fs.writeFileSync(process.env.MARKER + '.tmp', 'code=' + c);\n\
             fs.renameSync(process.env.MARKER + '.tmp', process.env.MARKER);\n"
        }
    }
}

#[test]
fn the_executor_going_away_mid_call_fails_the_call_and_cancels_the_run() {
    for lang in Lang::ALL {
        let fixture = fixture(lang, stdin_closed_script(lang));
        let session = execute(
            &fixture,
            Store::empty(),
            Answering::CloseStdinOnFirstCall,
            &[],
        );
        let result = session.framed.result();
        assert!(result.cancelled, "{lang:?}: {result:?}");
        assert_eq!(session.code, 128 + libc::SIGTERM, "{lang:?}");
        assert!(
            session
                .framed
                .messages()
                .contains("the executor closed stdin"),
            "{lang:?}: {}",
            session.framed.messages()
        );
        let marker =
            fs::read_to_string(fixture.file("marker")).expect("the script recorded its call");
        let expected = match lang {
            Lang::Bash => "status=6\n",
            _ => "code=unavailable",
        };
        assert_eq!(marker, expected, "{lang:?}: {}", session.stderr());
        assert!(fixture.leftovers().is_empty(), "{:?}", fixture.leftovers());
    }
}

#[test]
fn without_an_executor_every_call_is_unavailable() {
    let fixture = fixture(
        Lang::Bash,
        "cronium input; report input $?\ncronium var set k 1; report set $?\n",
    );
    let ran = run(fixture.run(&[]));
    assert_eq!(ran.code(), 0, "{}", ran.stderr_text());
    assert_eq!(
        parse_reports(&ran.stdout_text()),
        vec![
            ("input".to_string(), json!(6)),
            ("set".to_string(), json!(6))
        ]
    );
    assert!(
        ran.stderr_text()
            .contains("cronium: helpers need a Cronium server (this run has no executor)"),
        "{}",
        ran.stderr_text()
    );
}

#[test]
fn the_helper_dir_is_private_beside_the_work_dir_and_removed() {
    let script = r#"
dir="$(pwd -P).cronium"
report work "\"$(ls -A | tr '\n' ' ')\""
report dir_mode "\"$(stat -c %a "$dir")\""
report socket "\"$CRONIUM_HELPER_SOCKET\""
[ -S "$CRONIUM_HELPER_SOCKET" ]; report is_socket $?
report socket_mode "\"$(stat -c %a "$CRONIUM_HELPER_SOCKET")\""
report command "\"$(readlink "$dir/bin/cronium")\""
report which "\"$(command -v cronium)\""
report pythonpath "\"$PYTHONPATH\""
report node_path "\"$NODE_PATH\""
report node_options "\"${NODE_OPTIONS//\"/\\\"}\""
[ -f "$dir/python/cronium.py" ] && [ -f "$dir/node/cronium.js" ]; report modules $?
"#;
    // The payload's own `.cronium` entry is just one of its files.
    let fixture = Fixture::with_env(
        Lang::Bash,
        &format!("{}{script}", prelude(Lang::Bash)),
        &[
            ("PYTHONPATH", "/from/manifest"),
            ("NODE_OPTIONS", "--no-warnings"),
        ],
    );
    let mut cmd = fixture.run(&[]);
    cmd.env_remove("NODE_PATH");
    let ran = run(cmd);
    assert_eq!(ran.code(), 0, "{}", ran.stderr_text());
    let seen: BTreeMap<String, Value> = parse_reports(&ran.stdout_text()).into_iter().collect();
    let s = |k: &str| {
        seen[k]
            .as_str()
            .unwrap_or_else(|| panic!("{k}: {seen:?}"))
            .to_string()
    };

    let socket = PathBuf::from(s("socket"));
    let dir = socket.parent().unwrap().to_path_buf();
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("cronium-run-") && name.ends_with(".cronium"),
        "{name}"
    );
    assert_eq!(dir.parent(), Some(fixture.work.as_path()));
    assert_eq!(
        s("work"),
        "script.sh ",
        "the work dir holds only the payload's files"
    );
    assert_eq!(s("dir_mode"), "700");
    assert_eq!(seen["is_socket"], json!(0));
    assert_eq!(s("socket_mode"), "600");
    let runner = fs::canonicalize(RUNNER).unwrap();
    assert_eq!(fs::canonicalize(s("command")).unwrap(), runner);
    assert_eq!(PathBuf::from(s("which")), dir.join("bin/cronium"));
    assert_eq!(
        s("pythonpath"),
        format!("{}:/from/manifest", dir.join("python").display())
    );
    assert_eq!(s("node_path"), dir.join("node").display().to_string());
    assert_eq!(
        s("node_options"),
        format!(
            "--require \"{}\" --no-warnings",
            dir.join("node/cronium.js").display()
        )
    );
    assert_eq!(
        seen["modules"],
        json!(0),
        "the python and node modules are there"
    );
    assert!(!dir.exists(), "removed after the run");
    assert!(fixture.leftovers().is_empty(), "{:?}", fixture.leftovers());
}

#[test]
fn node_scripts_can_require_the_module_too() {
    let script = r#"
const required = require('cronium');
report('same', required === cronium);
report('input', required.input());
"#;
    let session = execute(
        &fixture(Lang::Node, script),
        Store::new(json!({"from": "input"}), &[]),
        Answering::InOrder,
        &[],
    );
    session.assert_succeeded("node");
    assert_eq!(
        session.reports(),
        vec![
            ("same".to_string(), json!(true)),
            ("input".to_string(), json!({"from": "input"}))
        ]
    );
}

/// The `cronium` command, as a symlink of that name to the runner, outside any run.
fn cronium_outside_a_run(args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("cronium");
    std::os::unix::fs::symlink(RUNNER, &link).unwrap();
    let out = Command::new(&link)
        .args(args)
        .env_remove("CRONIUM_HELPER_SOCKET")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().expect("exited"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn outside_a_run_the_helpers_say_so() {
    let (code, _, stderr) = cronium_outside_a_run(&["var", "get", "k"]);
    assert_eq!(code, 6);
    assert_eq!(
        stderr,
        "cronium: not inside a Cronium run (CRONIUM_HELPER_SOCKET is not set)\n"
    );

    let (code, stdout, _) = cronium_outside_a_run(&["--help"]);
    assert_eq!(code, 0);
    for needed in [
        "input",
        "output",
        "var",
        "condition",
        "context",
        "Exit statuses",
    ] {
        assert!(stdout.contains(needed), "{needed}: {stdout}");
    }
    let (code, _, stderr) = cronium_outside_a_run(&["nonsense"]);
    assert_eq!(code, 2, "{stderr}");

    let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("helpers");
    let python = Command::new("python3")
        .args([
            "-c",
            "import cronium\ntry:\n    cronium.input()\nexcept cronium.HelperError as e:\n    print(e.code, e.message)\n",
        ])
        .env("PYTHONPATH", &modules)
        .env_remove("CRONIUM_HELPER_SOCKET")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&python.stdout),
        "unavailable not inside a Cronium run (CRONIUM_HELPER_SOCKET is not set)\n",
        "{}",
        String::from_utf8_lossy(&python.stderr)
    );
    let node = Command::new("node")
        .args([
            "--require",
            &modules.join("cronium.js").display().to_string(),
            "-e",
            "try { cronium.input() } catch (e) { console.log(e.code, e.message) }",
        ])
        .env_remove("CRONIUM_HELPER_SOCKET")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&node.stdout),
        "unavailable cronium: not inside a Cronium run (CRONIUM_HELPER_SOCKET is not set)\n",
        "{}",
        String::from_utf8_lossy(&node.stderr)
    );
}

/// A fenced block of docs/helpers.md tagged `helpers-example`.
struct Example {
    lang: Lang,
    line: usize,
    code: String,
}

fn doc_examples() -> Vec<Example> {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/helpers.md");
    let text = fs::read_to_string(&doc).expect("docs/helpers.md");
    let mut examples = Vec::new();
    let mut current: Option<Example> = None;
    for (n, line) in text.lines().enumerate() {
        match &mut current {
            Some(_) if line.trim_start() == "```" => {
                examples.push(current.take().unwrap());
            }
            Some(example) => {
                example.code.push_str(line);
                example.code.push('\n');
            }
            None => {
                let Some(info) = line.trim_start().strip_prefix("```") else {
                    continue;
                };
                let mut words = info.split_whitespace();
                let (Some(lang), Some("helpers-example")) = (words.next(), words.next()) else {
                    continue;
                };
                let lang = match lang {
                    "bash" => Lang::Bash,
                    "python" => Lang::Python,
                    "js" | "javascript" => Lang::Node,
                    other => panic!("docs/helpers.md:{}: unknown language {other}", n + 1),
                };
                current = Some(Example {
                    lang,
                    line: n + 1,
                    code: String::new(),
                });
            }
        }
    }
    assert!(current.is_none(), "an example is not closed");
    examples
}

#[test]
fn the_examples_in_the_docs_run() {
    let examples = doc_examples();
    for lang in Lang::ALL {
        assert!(
            examples.iter().any(|e| e.lang == lang),
            "docs/helpers.md has no {lang:?} example"
        );
    }
    for example in examples {
        let code = match example.lang {
            Lang::Bash => format!("set -euo pipefail\n{}", example.code),
            _ => example.code.clone(),
        };
        let store = Store::new(
            json!({"name": "world", "count": 2}),
            &[("greeting", json!("hello"))],
        );
        let session = execute(
            &Fixture::new(example.lang, &code),
            store,
            Answering::InOrder,
            &[],
        );
        session.assert_succeeded(&format!("docs/helpers.md:{}", example.line));
        assert!(
            session.store.calls > 0,
            "docs/helpers.md:{}: no call",
            example.line
        );
    }
}

#[test]
fn a_work_dir_too_deep_for_a_socket_is_reported_not_fatal() {
    let fixture = fixture(
        Lang::Bash,
        "cronium input; report input $?\necho still running\n",
    );
    // `<parent>/cronium-run-XXXXXX.cronium/helper.sock` must fit in 107 bytes.
    let deep = fixture.root().join("d".repeat(100));
    let mut cmd = common::runner(&["run"]);
    cmd.arg(&fixture.payload)
        .arg("--workdir")
        .arg(&deep)
        .args(["--output", "framed"]);
    let session = serve(cmd, Store::empty(), Answering::InOrder);
    session.assert_succeeded("bash");
    assert!(
        session
            .framed
            .messages()
            .contains("a Unix socket allows (use a shorter --workdir)"),
        "{}",
        session.framed.messages()
    );
    assert!(
        session.stdout().contains("input=6\nstill running\n"),
        "{}",
        session.stdout()
    );
    assert!(
        session.stderr().contains("run with a shorter --workdir"),
        "{}",
        session.stderr()
    );
    assert_eq!(session.store.calls, 0);
    assert!(fs::read_dir(&deep).unwrap().next().is_none(), "cleaned up");
}

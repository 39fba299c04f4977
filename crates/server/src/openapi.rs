//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`, written by hand.
//!
//! Tests keep it honest: every routed (method, path) must appear here and
//! every operation here must be routed (`api::tests`), and the API tests
//! call each operation without a token and with a too-weak one, using the
//! `x-cronium-role` each operation declares.

use serde_json::{Value, json};

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": json_content(reference("Error")) })
}

/// One operation. `role` is `None` for public operations.
fn op(
    id: &str,
    summary: &str,
    role: Option<&str>,
    params: &[Value],
    body: Option<Value>,
    ok: (&str, Value),
) -> Value {
    let mut responses = serde_json::Map::new();
    responses.insert(ok.0.to_string(), ok.1);
    let mut o = json!({ "operationId": id, "summary": summary });
    if let Some(role) = role {
        o["security"] = json!([{ "bearer": [] }]);
        o["x-cronium-role"] = json!(role);
        responses.insert(
            "401".into(),
            error_response("Missing, malformed, unknown or revoked token"),
        );
        responses.insert(
            "403".into(),
            error_response(&format!("The token's role is below {role}")),
        );
    }
    if !params.is_empty() {
        o["parameters"] = json!(params);
    }
    if body.is_some() || !params.is_empty() {
        responses.insert(
            "400".into(),
            error_response(
                "A malformed path or query parameter (such as an id beyond 64 bits or a repeated parameter), or a body that is not a JSON object of the right types",
            ),
        );
    }
    if params.iter().any(|p| p["in"] == "query") {
        responses.insert(
            "422".into(),
            error_response("A query parameter breaks a rule; `field` names it"),
        );
    }
    if let Some(schema) = body {
        o["requestBody"] = json!({ "required": true, "content": json_content(schema) });
        responses.insert("413".into(), error_response("Body larger than 2 MiB"));
        responses.insert(
            "422".into(),
            error_response("A field breaks a rule; `field` names it"),
        );
    }
    if params.iter().any(|p| p["in"] == "path") {
        responses.insert("404".into(), error_response("No such object"));
    }
    o["responses"] = Value::Object(responses);
    o
}

fn with_409(mut operation: Value, description: &str) -> Value {
    operation["responses"]["409"] = error_response(description);
    operation
}

fn with_503(mut operation: Value, description: &str) -> Value {
    operation["responses"]["503"] = error_response(description);
    operation
}

fn ok(description: &str, schema: Value) -> (&'static str, Value) {
    (
        "200",
        json!({ "description": description, "content": json_content(schema) }),
    )
}

fn created(description: &str, schema: Value) -> (&'static str, Value) {
    (
        "201",
        json!({ "description": description, "content": json_content(schema) }),
    )
}

fn no_content(description: &str) -> (&'static str, Value) {
    ("204", json!({ "description": description }))
}

/// A 64-bit signed integer, as every id is; the bounds are explicit because
/// fuzzers do not read `format`.
fn int64() -> Value {
    json!({ "type": "integer", "format": "int64", "minimum": i64::MIN, "maximum": i64::MAX })
}

fn path_id(what: &str) -> Value {
    json!({ "name": "id", "in": "path", "required": true, "description": format!("The {what}'s id"), "schema": int64() })
}

fn query(name: &str, description: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema })
}

fn page_params() -> [Value; 2] {
    [
        query(
            "limit",
            "Page size, 1 to 500",
            json!({ "type": "integer", "minimum": 1, "maximum": 500, "default": 50 }),
        ),
        query(
            "offset",
            "Items to skip",
            json!({ "type": "integer", "minimum": 0, "maximum": i64::MAX, "default": 0 }),
        ),
    ]
}

fn page_of(item: &str) -> Value {
    json!({
        "type": "object",
        "required": ["items", "total", "limit", "offset"],
        "properties": {
            "items": { "type": "array", "items": reference(item) },
            "total": { "type": "integer", "description": "How many match in all" },
            "limit": { "type": "integer" },
            "offset": { "type": "integer" }
        }
    })
}

/// An event's name: at least one character that is not white space, and
/// no control characters (the server trims it).
const NAME_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$";
/// An `http`/`https` URL with a DNS name and no user info. The server takes
/// any such URL (IP literals too) that the SSRF guard allows; the pattern
/// is the part a client can know without the guard's settings.
const URL_PATTERN: &str = r"^https?://[a-z]([a-z0-9-]{0,18}[a-z0-9])?(\.[a-z]([a-z0-9-]{0,18}[a-z0-9])?){1,3}(:[1-9][0-9]{0,3})?(/[A-Za-z0-9._~!$&'()*+,;=:@%-]*)*(\?[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$";
/// `whsec_` and the standard base64 (padded) of a 24 to 64 byte key.
const WEBHOOK_SECRET_PATTERN: &str = "^whsec_((?:[A-Za-z0-9+/]{4}){8,20}(?:[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=|[A-Za-z0-9+/][AQgw]==)?|(?:[A-Za-z0-9+/]{4}){21}(?:[A-Za-z0-9+/][AQgw]==)?)$";
/// A plain address (`local@domain`), as the pattern the document can
/// promise; the server takes any address its parser reads.
const EMAIL_PATTERN: &str = r"^[a-z0-9_-]{1,20}(\.[a-z0-9_-]{1,20}){0,2}@[a-z]([a-z0-9-]{0,18}[a-z0-9])?(\.[a-z]([a-z0-9-]{0,18}[a-z0-9])?){1,3}$";
/// No control characters, at least one character.
const LABEL_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]+$";
const OPTIONAL_LABEL_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]*$";
const TAG_PATTERN: &str = "^[A-Za-z0-9._:-]{1,50}$";
const ENV_KEY_PATTERN: &str = "^[A-Za-z_][A-Za-z0-9_]{0,255}$";
const NO_NUL_PATTERN: &str = r"^[^\x00]*$";
const HEADER_NAME_PATTERN: &str = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$";
const HEADER_VALUE_PATTERN: &str = r"^[^\r\n\x00]*$";
/// A variable's key (`cronium_core::VariableKey`): 1 to 128 characters,
/// starting with a letter, a digit or `_`.
const VARIABLE_KEY_PATTERN: &str = "^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$";

/// `schema` allowing `null` too.
fn or_null(schema: &Value) -> Value {
    let mut schema = schema.clone();
    if let Some(c) = schema.get("const").cloned() {
        schema.as_object_mut().map(|o| o.remove("const"));
        schema["enum"] = json!([c]);
    }
    if let Some(values) = schema.get_mut("enum").and_then(Value::as_array_mut) {
        values.push(Value::Null);
    }
    match schema.get("type").cloned() {
        Some(Value::String(t)) => schema["type"] = json!([t, "null"]),
        Some(Value::Array(mut ts)) => {
            if !ts.contains(&json!("null")) {
                ts.push(json!("null"));
            }
            schema["type"] = Value::Array(ts);
        }
        Some(_) => {}
        None if schema.get("enum").is_some() => {}
        None => return json!({ "anyOf": [schema, { "type": "null" }] }),
    }
    schema
}

/// The server reads an optional field sent as `null` as left out; so says
/// the document, for every property of `schema` but `except`.
fn null_means_absent(schema: &mut Value, except: &[&str]) {
    if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        for (name, property) in properties.iter_mut() {
            if !except.contains(&name.as_str()) {
                *property = or_null(property);
            }
        }
    }
}

/// A schedule: one branch per `type`. Every branch lists every field the
/// server reads (it ignores those another type needs), so that what the
/// server accepts and what the document allows are the same.
fn schedule_schema() -> Value {
    let loose = json!({ "type": "string" });
    let branch = |kind: &str, required: &[&str], field: Option<(&str, Value)>| {
        let mut properties = json!({
            "type": { "const": kind },
            "cron": loose,
            "timezone": loose,
            "every": loose,
            "at": loose
        });
        if let Some((name, schema)) = field {
            properties[name] = schema;
        }
        let mut required: Vec<&str> = required.to_vec();
        required.insert(0, "type");
        let mut branch = json!({ "type": "object", "additionalProperties": false, "required": required, "properties": properties });
        null_means_absent(&mut branch, &required);
        branch
    };
    let mut cron = branch(
        "cron",
        &["cron"],
        Some((
            "cron",
            json!({ "type": "string", "description": "5 fields (minute first) or 6 (second first); the pattern covers the plain 5-field form, the server also takes ranges, lists, steps, names and @-macros (a malformed one is 422)", "pattern": "^(\\*|[0-5]?[0-9]) (\\*|1?[0-9]|2[0-3]) (\\*|[1-9]|1[0-9]|2[0-8]) (\\*|[1-9]|1[0-2]) (\\*|[0-6])$", "examples": ["0 3 * * *"] }),
        )),
    );
    cron["properties"]["timezone"] = or_null(
        &json!({ "type": "string", "description": "IANA time zone (an unknown one is 422)", "default": "UTC", "examples": ["UTC", "Europe/Berlin"], "pattern": "^(UTC|Europe/Berlin|America/New_York|Asia/Tokyo|Australia/Lord_Howe)$" }),
    );
    json!({
        "oneOf": [
            branch("manual", &[], None),
            cron,
            branch("every", &["every"], Some(("every", json!({ "type": "string", "pattern": "^[1-9][0-9]?[smhd]$", "description": "1s to 366d, such as 15m, 1h30m or 1d", "examples": ["15m", "1h30m"] })))),
            branch("at", &["at"], Some(("at", json!({ "type": "string", "format": "date-time", "description": "In the future (a past time is 422)", "pattern": "^2[1-9][0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z$" })))),
        ]
    })
}

fn schemas() -> Value {
    let string = json!({ "type": "string" });
    let env_input = json!({ "type": "object", "propertyNames": { "pattern": ENV_KEY_PATTERN }, "additionalProperties": { "type": "string", "pattern": NO_NUL_PATTERN } });
    let headers_input = json!({ "type": "object", "propertyNames": { "pattern": HEADER_NAME_PATTERN }, "additionalProperties": { "type": "string", "pattern": HEADER_VALUE_PATTERN, "maxLength": 2048 } });
    let timestamp = json!({ "type": "string", "format": "date-time" });
    let env = json!({ "type": "object", "additionalProperties": { "type": "string" } });
    json!({
        "Error": {
            "type": "object",
            "additionalProperties": false,
            "required": ["error"],
            "properties": { "error": {
                "type": "object",
                "additionalProperties": false,
                "required": ["code", "message"],
                "properties": {
                    "code": { "type": "string", "enum": ["bad_request", "unauthorized", "forbidden", "not_found", "method_not_allowed", "conflict", "payload_too_large", "validation_failed", "too_many_requests", "internal", "unavailable"] },
                    "message": string,
                    "field": { "type": "string", "description": "The offending field, as a camelCase path (e.g. schedule.cron)" }
                }
            }}
        },
        "Schedule": schedule_schema(),
        "EventInput": {
            "type": "object",
            "additionalProperties": false,
            "description": "POST requires name; PATCH takes any subset. secretEnv, when given, replaces the whole secret map.",
            "properties": {
                "name": { "type": "string", "minLength": 1, "maxLength": 100, "pattern": NAME_PATTERN, "description": "Unique; trimmed; no control characters" },
                "description": { "type": "string", "maxLength": 10000 },
                "kind": { "type": "string", "enum": ["script", "http"], "default": "script, or http when http is given" },
                "interpreter": { "type": "string", "enum": ["bash", "python", "node"] },
                "content": { "type": "string", "description": "The script, at most 1 MiB" },
                "env": env_input.clone(),
                "secretEnv": { "type": "object", "propertyNames": { "pattern": ENV_KEY_PATTERN }, "additionalProperties": { "type": "string", "pattern": NO_NUL_PATTERN }, "description": "Sealed at rest, never returned, never in a payload; a name also in env is a 409", "writeOnly": true },
                "schedule": reference("Schedule"),
                "status": { "type": "string", "enum": ["active", "paused", "draft", "archived"], "default": "active" },
                "runLocation": { "type": "string", "enum": ["local", "remote"], "description": "Default: remote when targetServers or targetTags is non-empty, else local" },
                "targetServers": { "type": "array", "uniqueItems": true, "items": int64(), "description": "Existing servers' ids (an unknown one is 409)" },
                "targetTags": { "type": "array", "items": { "type": "string", "pattern": TAG_PATTERN }, "maxItems": 32, "description": "Server tags: each job runs on every server holding any of them when it starts, besides targetServers. A tag that matches no server then fails the job in phase `targets`; the job's metadata.resolvedTargets lists the servers chosen." },
                "timeout": { "type": "string", "default": "1h", "pattern": "^[1-9][0-9]?[smh]$", "examples": ["90s", "1h"], "description": "1s to 7 days" },
                "retries": { "type": "integer", "minimum": 0, "maximum": 10, "default": 0 },
                "tags": { "type": "array", "maxItems": 32, "items": { "type": "string", "pattern": TAG_PATTERN } },
                "overlap": { "type": "string", "enum": ["allow", "forbid", "queue", "replace"], "default": "forbid", "description": "What a run does while an earlier one is queued or running" },
                "misfire": { "type": "string", "enum": ["skip", "run_once", "catch_up"], "default": "run_once", "description": "What happens to fire times missed while no scheduler ran" },
                "startAt": { "type": ["string", "null"], "format": "date-time", "description": "No fire before this; anchors `every` schedules" },
                "maxExecutions": { "type": ["integer", "null"], "minimum": 1, "maximum": u32::MAX, "description": "The schedule stops after this many runs" },
                "maxConcurrent": { "type": ["integer", "null"], "minimum": 1, "maximum": u32::MAX, "description": "With overlap allow: most runs at once" },
                "retryDelay": { "type": "string", "default": "10s", "pattern": "^([1-9]|[1-5][0-9])[sm]$", "description": "First retry delay, 1s to 1h; doubles per retry (with jitter), at most 1h" },
                "http": reference("HttpInput")
            }
        },
        "HttpInput": {
            "type": "object",
            "additionalProperties": false,
            "required": ["url"],
            "description": "The request of an HTTP event, sent from the Cronium server within the event's timeout; its response is the job's output. Loopback, private, link-local and cloud metadata addresses are refused unless the server allows them (--http-allow). On PATCH it replaces the request; secretHeaders absent keeps the stored ones.",
            "properties": {
                "method": { "type": "string", "enum": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"], "default": "GET" },
                "url": { "type": "string", "pattern": URL_PATTERN, "description": "http:// or https://, no user info; an address the SSRF guard refuses is 422" },
                "headers": headers_input.clone(),
                "secretHeaders": { "type": "object", "propertyNames": { "pattern": HEADER_NAME_PATTERN }, "additionalProperties": { "type": "string", "pattern": HEADER_VALUE_PATTERN, "maxLength": 2048 }, "description": "Sealed at rest, never returned or logged", "writeOnly": true },
                "body": { "type": "string", "maxLength": 1048576, "description": "At most 1 MiB" },
                "expectStatus": { "type": "array", "maxItems": 20, "items": { "type": "integer", "minimum": 100, "maximum": 599 }, "description": "Statuses that count as success; empty: any 2xx" }
            }
        },
        "Http": {
            "type": "object",
            "required": ["method", "url", "headers", "secretHeaderNames", "expectStatus"],
            "properties": {
                "method": string,
                "url": string,
                "headers": { "type": "object", "additionalProperties": { "type": "string" } },
                "secretHeaderNames": { "type": "array", "items": { "type": "string" }, "description": "Names only" },
                "body": { "type": ["string", "null"] },
                "expectStatus": { "type": "array", "items": { "type": "integer" } }
            }
        },
        "Event": {
            "type": "object",
            "required": ["id", "name", "description", "kind", "interpreter", "content", "env", "secretEnvKeys", "schedule", "status", "runLocation", "targetServers", "targetTags", "timeout", "retries", "tags", "payloadVersion", "createdAt", "updatedAt"],
            "properties": {
                "id": { "type": "integer" },
                "name": string,
                "description": string,
                "kind": string,
                "interpreter": { "type": ["string", "null"] },
                "content": string,
                "env": env,
                "secretEnvKeys": { "type": "array", "items": { "type": "string" }, "description": "Names only" },
                "schedule": reference("Schedule"),
                "status": string,
                "runLocation": string,
                "targetServers": { "type": "array", "items": { "type": "integer" } },
                "targetTags": { "type": "array", "items": { "type": "string" }, "description": "Server tags, resolved when each job starts" },
                "timeout": string,
                "retries": { "type": "integer" },
                "tags": { "type": "array", "items": { "type": "string" } },
                "overlap": string,
                "misfire": string,
                "startAt": { "type": ["string", "null"], "format": "date-time" },
                "maxExecutions": { "type": ["integer", "null"] },
                "maxConcurrent": { "type": ["integer", "null"] },
                "retryDelay": string,
                "payloadVersion": { "type": ["integer", "null"], "description": "The active payload's version" },
                "http": reference("Http"),
                "nextFires": { "type": "array", "items": timestamp, "description": "The next fire times (GET /events/{id} only)" },
                "createdAt": timestamp,
                "updatedAt": timestamp
            }
        },
        "Job": {
            "type": "object",
            "required": ["id", "eventId", "trigger", "status", "attempt", "scheduledAt", "runAfter", "cancelRequested", "input", "output", "condition", "metadata", "createdAt", "updatedAt"],
            "properties": {
                "id": { "type": "integer" },
                "eventId": { "type": "integer" },
                "payloadVersion": { "type": ["integer", "null"] },
                "payloadPath": { "type": ["string", "null"], "description": "The payload this job runs, relative to the data dir" },
                "trigger": { "type": "string", "enum": ["schedule", "manual", "action", "workflow"], "description": "action: another job's run_event action started it (see startedBy); workflow: a node of a workflow run (see metadata.workflow)" },
                "status": { "type": "string", "enum": ["queued", "running", "succeeded", "failed", "timed_out", "cancelled", "partial", "missed", "skipped"] },
                "attempt": { "type": "integer", "minimum": 1 },
                "startedBy": {
                    "type": "object",
                    "description": "For a job an action started: the job that started it and how it ended, and this job's depth in the chain (at most 10)",
                    "required": ["job", "event", "action", "status", "exitCode", "depth"],
                    "properties": {
                        "job": { "type": "integer" },
                        "event": { "type": "integer" },
                        "action": { "type": "integer" },
                        "status": { "type": "string" },
                        "exitCode": { "type": ["integer", "null"] },
                        "depth": { "type": "integer", "minimum": 1, "maximum": 10 }
                    }
                },
                "chained": {
                    "type": "array",
                    "description": "What this job's run_event actions did when it ended: the job each started (queued, or skipped by the target's overlap policy), or why none was (notStarted: the chain depth limit, a target that cannot run)",
                    "items": {
                        "type": "object",
                        "required": ["action", "event"],
                        "properties": {
                            "action": { "type": "integer" },
                            "event": { "type": "integer" },
                            "job": { "type": "integer" },
                            "status": { "type": "string" },
                            "notStarted": { "type": "string" }
                        }
                    }
                },
                "scheduledAt": timestamp,
                "runAfter": timestamp,
                "startedAt": { "type": ["string", "null"], "format": "date-time" },
                "finishedAt": { "type": ["string", "null"], "format": "date-time" },
                "durationMs": { "type": ["integer", "null"] },
                "exitCode": { "type": ["integer", "null"] },
                "error": { "type": ["string", "null"] },
                "leaseOwner": { "type": ["string", "null"] },
                "leaseExpiresAt": { "type": ["string", "null"], "format": "date-time" },
                "cancelRequested": { "type": "boolean" },
                "input": { "description": "The JSON the run was started with (a manual run's input, or the output of the run whose run_event action started it); null when none. Scripts read it with `cronium input`" },
                "output": { "description": "This attempt's output as its script set it (`cronium output`), at most 1 MiB of compact JSON; null when unset. A retry starts without one" },
                "condition": { "type": "boolean", "description": "This attempt's condition as its script set it (`cronium condition true`); false unless set. A retry starts false" },
                "metadata": { "type": "object", "description": "Facts about the run: payloadPath, checksum, input, durationMs; for remote events `executions`, one per server in target order: server, serverId, host, status, exitCode, error, phase (connect, host key, auth, deploy, upload, run), runnerVersion, payloadPath on the host, uploaded {runner, payload, bytes}, timingsMs {connect, deploy, upload, run, cleanup}; and `resolvedTargets`, the servers the job ran on as resolved when it started: server, serverId, tags (the event's targetTags that chose it; empty when named in targetServers). A job whose targets cannot be resolved (a tag that matches no server, a server gone) has phase `targets` and an empty resolvedTargets" },
                "createdAt": timestamp,
                "updatedAt": timestamp
            }
        },
        "LogLine": {
            "type": "object",
            "required": ["seq", "stream", "at"],
            "description": "One line with its newline; `text` when it is UTF-8, else `base64`. In the SSE stream: `id` is `seq`, `event` is the stream, `data` is this object; a final `end` event carries status, exitCode and error. A line from a remote server carries `server`.",
            "properties": {
                "seq": { "type": "integer" },
                "stream": { "type": "string", "enum": ["stdout", "stderr", "system"] },
                "at": timestamp,
                "text": string,
                "base64": string,
                "server": { "type": "string", "description": "The server a remote job's line came from, by its name when written; absent for local jobs and the job's own lines" }
            }
        },
        "Payload": {
            "type": "object",
            "required": ["version", "checksum", "size", "isActive", "payloadPath", "createdAt"],
            "properties": {
                "version": { "type": "integer" },
                "checksum": { "type": "string", "description": "SHA-256, lowercase hex" },
                "size": { "type": "integer" },
                "isActive": { "type": "boolean" },
                "payloadPath": { "type": "string", "description": "Relative to the server's data dir" },
                "createdAt": timestamp
            }
        },
        "ServerInput": {
            "type": "object",
            "additionalProperties": false,
            "description": "POST requires name, host, username and exactly one of privateKey or password; PATCH takes any subset (credentials given replace the old ones), at most one of privateKey or password, and passphrase only with privateKey. A PATCH that changes nothing (the same values, the same key or password) writes nothing: no new updatedAt, no audit entry.",
            "not": { "required": ["privateKey", "password"], "properties": { "privateKey": { "type": "string" }, "password": { "type": "string" } } },
            "dependentSchemas": { "passphrase": { "anyOf": [
                { "properties": { "passphrase": { "type": "null" } } },
                { "required": ["privateKey"], "properties": { "privateKey": { "type": "string" } } }
            ] } },
            "properties": {
                "name": { "type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$" },
                "host": { "type": "string", "pattern": "^[A-Za-z0-9.:_\\[\\]-]{1,253}$", "description": "A DNS name or an IP address" },
                "port": { "type": "integer", "minimum": 1, "maximum": 65535, "default": 22 },
                "username": { "type": "string", "pattern": "^[A-Za-z0-9._][A-Za-z0-9._-]{0,31}$" },
                "privateKey": { "type": "string", "writeOnly": true, "maxLength": 16384, "pattern": "PRIVATE KEY-----", "description": "PEM or OpenSSH (-----BEGIN … PRIVATE KEY-----)" },
                "passphrase": { "type": "string", "writeOnly": true, "maxLength": 16384 },
                "password": { "type": "string", "writeOnly": true, "minLength": 1, "maxLength": 16384 },
                "knownHost": { "type": "string", "pattern": "^(SHA256:[A-Za-z0-9+/]{42}[AQgw])?$", "description": "The host key to pin: a known_hosts line (`host keytype base64`), a public key (`keytype base64`) or a fingerprint (`SHA256:…` as `ssh-keygen -lf` prints it); empty clears it. Without one, the first `check` pins the key it sees. The pattern covers the fingerprint form; the other forms are accepted when they parse (422 otherwise)." },
                "tags": { "type": "array", "items": { "type": "string", "pattern": TAG_PATTERN }, "maxItems": 32, "description": "Labels events target servers by (targetTags); given on PATCH, replaces the whole set" },
                "cacheDir": { "type": "string", "maxLength": 255, "pattern": "^(/?[A-Za-z0-9_][A-Za-z0-9._-]{0,30}(/[A-Za-z0-9_][A-Za-z0-9._-]{0,30}){0,3})?$", "description": "Where the runner and payloads are cached on the host: relative to the SSH user's home, or absolute. Letters, digits, `.`, `_`, `-` and `/` only; no empty, `.` or `..` component, none starting with `-`; not `/`. Empty resets it to the default, `.cache/cronium`. The directory is created if missing and made mode 0700, so it should be Cronium's own." }
            }
        },
        "Server": {
            "type": "object",
            "required": ["id", "name", "host", "port", "username", "authKind", "knownHost", "hostKeyFingerprint", "cacheDir", "tags", "createdAt", "updatedAt", "lastCheck"],
            "properties": {
                "id": { "type": "integer" },
                "name": string,
                "host": string,
                "port": { "type": "integer" },
                "username": string,
                "authKind": { "type": "string", "enum": ["key", "password"] },
                "knownHost": { "type": ["string", "null"], "description": "The pinned host key, if any" },
                "hostKeyFingerprint": { "type": ["string", "null"], "description": "The pinned key's SHA256 fingerprint, as `ssh-keygen -lf` prints it" },
                "tags": { "type": "array", "items": { "type": "string" }, "description": "Sorted" },
                "cacheDir": { "type": "string", "description": "The runner cache directory in effect: the one set, else the default `.cache/cronium`; relative to the SSH user's home unless absolute" },
                "createdAt": timestamp,
                "updatedAt": timestamp,
                "lastCheck": {
                    "type": ["object", "null"],
                    "description": "The newest check's outcome (`POST /servers/{id}/check` or the web UI's Check now); null until the server is first checked. Recording it does not change `updatedAt`.",
                    "required": ["at", "ok", "message", "fingerprint"],
                    "properties": {
                        "at": timestamp,
                        "ok": { "type": "boolean" },
                        "message": { "type": "string", "description": "Why it failed (`phase: message`), or a one-line summary: system, interpreters, runner" },
                        "fingerprint": { "type": ["string", "null"], "description": "The SHA256 fingerprint of the host key the check was shown, if it got that far" }
                    }
                }
            }
        },
        "TokenInput": {
            "type": "object",
            "additionalProperties": false,
            "required": ["name", "role"],
            "properties": {
                "name": { "type": "string", "minLength": 1, "maxLength": 100, "pattern": LABEL_PATTERN },
                "role": { "type": "string", "enum": ["admin", "editor", "viewer"] }
            }
        },
        "CreatedToken": {
            "type": "object",
            "required": ["id", "name", "role", "token", "createdAt"],
            "properties": {
                "id": { "type": "integer" },
                "name": string,
                "role": string,
                "token": { "type": "string", "description": "crn_ + 43 characters; shown only here" },
                "createdAt": timestamp
            }
        },
        "Token": {
            "type": "object",
            "required": ["id", "name", "role", "createdAt", "lastUsedAt", "revokedAt"],
            "properties": {
                "id": { "type": "integer" },
                "name": string,
                "role": string,
                "createdAt": timestamp,
                "lastUsedAt": { "type": ["string", "null"], "format": "date-time" },
                "revokedAt": { "type": ["string", "null"], "format": "date-time" }
            }
        },
        "AuditRecord": {
            "type": "object",
            "required": ["id", "at", "actor", "actorUser", "actorJob", "action", "targetType", "targetId", "detail"],
            "properties": {
                "id": { "type": "integer" },
                "at": timestamp,
                "actor": { "type": ["integer", "null"], "description": "The acting token's id; null for a user in the web UI and for the server itself" },
                "actorUser": { "type": ["integer", "null"], "description": "The id of the user who acted in the web UI; null otherwise" },
                "actorJob": { "type": ["integer", "null"], "description": "The id of the job whose script acted through a runtime helper (writing a variable); null otherwise" },
                "action": { "type": "string", "examples": ["event.create", "token.revoke"] },
                "targetType": string,
                "targetId": { "type": ["integer", "null"] },
                "detail": { "type": "object", "description": "Facts about the change, never secrets" }
            }
        }
    })
}

/// `ServerCheck`, apart from the other schemas: one `json!` that size would
/// exceed the macro recursion limit.
fn server_check_schema() -> Value {
    let string = json!({ "type": "string" });
    json!({
        "type": "object",
        "description": "What a check found. A failed check still says how far it got; `error` says where and why it stopped.",
        "required": ["id", "server", "host", "port", "username", "ok", "reachable", "authenticated", "hostKey", "pinned", "newlyPinned", "os", "arch", "system", "interpreters", "runner", "error"],
        "properties": {
            "id": { "type": "integer" },
            "server": { "type": "string", "description": "The server's name" },
            "host": string,
            "port": { "type": "integer" },
            "username": string,
            "ok": { "type": "boolean", "description": "Connected, authenticated and probed without error" },
            "reachable": { "type": "boolean", "description": "TCP connection and SSH handshake succeeded" },
            "authenticated": { "type": "boolean", "description": "The credentials were accepted" },
            "hostKey": {
                "type": ["object", "null"],
                "description": "The key the server presented, once it was verified (or trusted on first use)",
                "required": ["algorithm", "fingerprint"],
                "properties": {
                    "algorithm": { "type": "string", "examples": ["ssh-ed25519"] },
                    "fingerprint": { "type": "string", "examples": ["SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"] }
                }
            },
            "pinned": { "type": "boolean", "description": "A host key is pinned for this server after the check" },
            "newlyPinned": { "type": "boolean", "description": "This check pinned the key it saw (trust on first use: the server had none, and the handshake and authentication succeeded)" },
            "os": { "type": ["string", "null"], "description": "`uname -s`" },
            "arch": { "type": ["string", "null"], "description": "`uname -m`" },
            "system": { "type": ["string", "null"], "description": "`uname -sm`, such as `Linux x86_64`" },
            "interpreters": {
                "type": "array",
                "description": "bash, python3 and node, in that order, once the probe ran",
                "items": {
                    "type": "object",
                    "required": ["name", "version", "versionLine"],
                    "properties": {
                        "name": { "type": "string", "enum": ["bash", "python3", "node"] },
                        "version": { "type": ["string", "null"], "description": "null when not found on the remote PATH" },
                        "versionLine": { "type": ["string", "null"], "description": "The first line of `--version`" }
                    }
                }
            },
            "runner": {
                "type": ["object", "null"],
                "description": "The deployed cronium-runner, null when none is deployed",
                "required": ["version", "raw"],
                "properties": {
                    "version": { "type": ["string", "null"] },
                    "raw": { "type": "string", "description": "Its `version --json` output" }
                }
            },
            "error": {
                "type": ["object", "null"],
                "required": ["phase", "message"],
                "properties": {
                    "phase": { "type": "string", "enum": ["connect", "host key", "auth", "channel", "command", "known_hosts"] },
                    "message": { "type": "string", "description": "Names the address; for a changed host key, both fingerprints" }
                }
            }
        }
    })
}

/// The notification schemas, apart from the others for the same reason as
/// [`server_check_schema`].
fn notify_schemas() -> [(&'static str, Value); 7] {
    let string = json!({ "type": "string" });
    let timestamp = json!({ "type": "string", "format": "date-time" });
    let channel_properties = json!({
        "id": { "type": "integer" },
        "name": string,
        "kind": { "type": "string", "enum": ["webhook", "slack", "discord", "email"] },
        "url": { "type": "string", "description": "A webhook's URL; for slack and discord only a redacted form (`https://hooks.slack.com/services/…`): their URL is their secret; for email the relay, `smtp://host:port`" },
        "email": {
            "type": "object",
            "description": "Email channels only: the settings, never the password",
            "required": ["to", "from", "smtp", "tls", "username", "passwordSet", "caCert"],
            "properties": {
                "to": { "type": "array", "items": string },
                "from": string,
                "smtp": { "type": "string", "description": "The relay, `host:port`" },
                "tls": { "type": "string", "enum": ["starttls", "tls", "none"] },
                "username": { "type": ["string", "null"] },
                "passwordSet": { "type": "boolean", "description": "Whether the relay has a password (sealed; never shown)" },
                "caCert": { "type": ["string", "null"], "description": "The PEM CA certificates trusted besides the public roots" }
            }
        },
        "createdAt": timestamp,
        "updatedAt": timestamp
    });
    let mut created = channel_properties.clone();
    created["secret"] = json!({ "type": "string", "description": "The signing secret the server made (`whsec_` + base64 of 24 random bytes): present only when none was given, shown only here" });
    let channel_required = json!(["id", "name", "kind", "url", "createdAt", "updatedAt"]);
    [
        (
            "ChannelInput",
            json!({
                "type": "object",
                "additionalProperties": false,
                "required": ["name"],
                "description": "A field sent as null is left out.",
                "oneOf": [
                    { "required": ["url"], "properties": { "url": { "type": "string" } }, "not": { "anyOf": [{ "required": ["email"], "properties": { "email": { "type": "object" } } }, { "required": ["kind"], "properties": { "kind": { "const": "email" } } }] } },
                    { "required": ["kind", "email"], "properties": { "kind": { "const": "email" }, "email": { "type": "object" } }, "not": { "anyOf": [{ "required": ["url"], "properties": { "url": { "type": "string" } } }, { "required": ["secret"], "properties": { "secret": { "type": "string" } } }] } }
                ],
                "dependentSchemas": { "secret": { "anyOf": [
                    { "properties": { "secret": { "type": "null" } } },
                    { "not": { "required": ["kind"], "properties": { "kind": { "enum": ["slack", "discord", "email"] } } } }
                ] } },
                "properties": {
                    "name": { "type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$" },
                    "kind": { "type": "string", "enum": ["webhook", "slack", "discord", "email"], "default": "webhook", "description": "webhook: signed JSON (Standard Webhooks); slack, discord: a one-line summary posted to an incoming-webhook URL (`url` required); email: a plain-text mail through an SMTP relay (`email` required, no `url`)" },
                    "email": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["to", "smtp"],
                        "description": "Email channels only. Errors name the field as `email.<name>`. username and password go together, and a password never with tls none.",
                        "dependentSchemas": {
                            "username": { "anyOf": [{ "properties": { "username": { "type": "null" } } }, { "properties": { "username": { "maxLength": 0 } } }, { "required": ["password"], "properties": { "password": { "type": "string" } } }] },
                            "password": { "anyOf": [{ "properties": { "password": { "type": "null" } } }, { "required": ["username"], "properties": { "username": { "type": "string", "minLength": 1 } } }] }
                        },
                        "not": { "required": ["password", "tls"], "properties": { "password": { "type": "string" }, "tls": { "const": "none" } } },
                        "properties": {
                            "to": { "type": "array", "minItems": 1, "maxItems": 20, "uniqueItems": true, "items": { "type": "string", "pattern": EMAIL_PATTERN }, "description": "Recipients: plain addresses (`local@domain`, no display names)" },
                            "from": { "type": "string", "pattern": EMAIL_PATTERN, "description": "The sender; defaults to `username` if it is an address, else `cronium@` the relay's name" },
                            "smtp": { "type": "string", "pattern": r"^[a-z]([a-z0-9-]{0,18}[a-z0-9])?(\.[a-z]([a-z0-9-]{0,18}[a-z0-9])?){1,3}(:[1-9][0-9]{0,3})?$", "description": "The relay, `host` or `host:port` (IP literals too); the port defaults by `tls` (587 starttls, 465 tls, 25 none). Its addresses go through the SSRF guard like a webhook's (--http-allow)" },
                            "tls": { "type": "string", "enum": ["starttls", "tls", "none"], "default": "starttls", "description": "starttls: STARTTLS required; tls: TLS from the first byte; none: plain SMTP, which refuses a password" },
                            "username": { "type": "string", "maxLength": 256, "pattern": OPTIONAL_LABEL_PATTERN, "description": "For AUTH PLAIN or LOGIN, with `password`; empty: none" },
                            "password": { "type": "string", "writeOnly": true, "minLength": 1, "maxLength": 1024, "description": "Sealed at rest, never returned (answers show `passwordSet`), never logged. Refused with tls `none`" },
                            "caCert": { "type": "string", "maxLength": 0, "description": "Empty: none. Otherwise PEM CA certificates to trust besides the public roots, for a relay signed by a private CA; the schema allows only the empty form, since what parses as a certificate is no pattern (one that does not parse is 422)" }
                        }
                    },
                    "url": { "type": "string", "pattern": URL_PATTERN, "description": "Webhook, slack and discord channels (not email): http:// or https://, no user info. Loopback, private, link-local and cloud metadata addresses are refused unless the server allows them (--http-allow). For slack and discord the URL is the secret: sealed at rest, never returned (answers show a redacted form)" },
                    "secret": { "type": "string", "writeOnly": true, "pattern": WEBHOOK_SECRET_PATTERN, "description": "Webhooks only: the Standard Webhooks signing secret, `whsec_` + base64 of a 24 to 64 byte key. Sealed at rest, never returned. Left out, the server makes one and returns it once." }
                }
            }),
        ),
        (
            "Channel",
            json!({
                "type": "object",
                "description": "A notification channel; its secret is never returned",
                "required": channel_required.clone(),
                "properties": channel_properties
            }),
        ),
        (
            "ChannelTest",
            json!({
                "type": "object",
                "description": "What the receiver answered a test message, as it was",
                "required": ["status", "body", "error"],
                "properties": {
                    "status": { "type": ["integer", "null"], "description": "The receiver's HTTP status, or an SMTP relay's code (250, 550…); null when it never answered" },
                    "body": { "type": "string", "description": "The first KiB of its answer, on one line; a relay's whole answer (`250 2.0.0 Ok: queued as …`)" },
                    "error": { "type": ["string", "null"], "description": "Why it failed (a status that is not 2xx, a refused address, a timeout, a network error); null on 2xx" }
                }
            }),
        ),
        (
            "CreatedChannel",
            json!({
                "type": "object",
                "required": channel_required,
                "properties": created
            }),
        ),
        ("ActionInput", action_input_schema()),
        (
            "Action",
            json!({
                "type": "object",
                "required": ["id", "eventId", "when", "kind", "createdAt"],
                "properties": {
                    "id": { "type": "integer" },
                    "eventId": { "type": "integer" },
                    "when": { "type": "string", "enum": ["success", "failure", "always", "start", "duration_exceeded", "condition"] },
                    "after": { "type": "string", "description": "duration_exceeded only" },
                    "kind": { "type": "string", "enum": ["notify", "run_event"] },
                    "channel": { "type": "integer", "description": "notify only" },
                    "channelName": { "type": "string" },
                    "targetEvent": { "type": "integer", "description": "run_event only" },
                    "targetEventName": { "type": "string" },
                    "createdAt": timestamp
                }
            }),
        ),
        (
            "Delivery",
            json!({
                "type": "object",
                "description": "One message about a job to one channel, written when the job started, ran too long or ended, and sent (and retried) by the server",
                "required": ["id", "reason", "channel", "channelName", "status", "attempts", "nextAttemptAt", "lastStatus", "lastError", "deliveredAt", "webhookId", "createdAt"],
                "properties": {
                    "id": { "type": "integer" },
                    "reason": { "type": "string", "enum": ["end", "start", "duration_exceeded"], "description": "What it reports: the job's final result, its start, or its running too long" },
                    "channel": { "type": "integer" },
                    "channelName": { "type": ["string", "null"] },
                    "status": { "type": "string", "enum": ["pending", "delivered", "failed"], "description": "pending: not sent yet or to be tried again at nextAttemptAt; failed: given up" },
                    "attempts": { "type": "integer", "description": "Sends tried so far" },
                    "nextAttemptAt": timestamp,
                    "lastStatus": { "type": ["integer", "null"], "description": "The receiver's last HTTP status" },
                    "lastError": { "type": ["string", "null"] },
                    "deliveredAt": { "type": ["string", "null"], "format": "date-time" },
                    "webhookId": { "type": "string", "description": "The webhook-id header of every try, so receivers can drop repeats" },
                    "createdAt": timestamp
                }
            }),
        ),
    ]
}

/// An action: notify a channel (on any `when`; `after` with
/// duration_exceeded only, and required there) or run an event (on a
/// result only). Unknown channels and events are 409.
fn action_input_schema() -> Value {
    let when_desc = "success: the job succeeded; failure: failed, timed out or partial; always: any end of a job that ran, cancelled included; condition: the job succeeded and its script set its condition to true (these fire once per job, on its final result); start: its first attempt started; duration_exceeded: an attempt has run longer than `after` (once per job). start and duration_exceeded only notify.";
    let after = json!({ "type": "string", "pattern": "^([1-9][0-9]?[smh]|([1-9]|[12][0-9]|30)d)$", "description": "For duration_exceeded: how long a run may take (90s, 15m, 1h30m; 1s to 30d)" });
    let channel = json!({ "type": "integer", "format": "int64", "minimum": i64::MIN, "maximum": i64::MAX, "description": "The channel to notify" });
    let target = json!({ "type": "integer", "format": "int64", "minimum": i64::MIN, "maximum": i64::MAX, "description": "The event to run; its input is this run's output, and its job's startedBy names the job that started it" });
    let none = json!({ "type": "null" });
    let schema = json!({
        "description": "`kind` is implied by `channel` (notify) or `targetEvent` (run_event) when absent; a field sent as null is left out",
        "oneOf": [
            { "type": "object", "additionalProperties": false, "required": ["when", "channel"], "properties": {
                "when": { "type": "string", "enum": ["success", "failure", "always", "start", "condition"], "description": when_desc },
                "kind": { "enum": ["notify", null] },
                "channel": channel,
                "targetEvent": none,
                "after": none } },
            { "type": "object", "additionalProperties": false, "required": ["when", "channel", "after"], "properties": {
                "when": { "const": "duration_exceeded" },
                "kind": { "enum": ["notify", null] },
                "channel": channel,
                "targetEvent": none,
                "after": after } },
            { "type": "object", "additionalProperties": false, "required": ["when", "targetEvent"], "properties": {
                "when": { "type": "string", "enum": ["success", "failure", "always", "condition"] },
                "kind": { "enum": ["run_event", null] },
                "channel": none,
                "targetEvent": target,
                "after": none } }
        ]
    });
    schema
}

/// `POST /events`: `EventInput` with a name, and the rules that tie its
/// fields together written out (on PATCH the same rules apply to the
/// event as changed, and a change that breaks them is 409).
fn event_create_schema(input: &Value) -> Value {
    let mut schema = input.clone();
    schema["description"] = json!(
        "An event: a script (interpreter and content) or an HTTP request (http, and no script, environment or servers). A field sent as null is left out."
    );
    schema["required"] = json!(["name"]);
    schema["properties"]["name"] =
        json!({ "type": "string", "minLength": 1, "maxLength": 100, "pattern": NAME_PATTERN });
    // "Given" below means present and not null.
    let given = |field: &str, schema: Value| json!({ "required": [field], "properties": { field: schema } });
    let nonempty = json!({ "type": "array", "minItems": 1 });
    let targeted = json!({ "anyOf": [given("targetServers", nonempty.clone()), given("targetTags", nonempty)] });
    let script = json!({
        "required": ["interpreter", "content"],
        "properties": {
            "kind": { "enum": ["script", null] },
            "interpreter": { "type": "string" },
            "content": { "type": "string", "pattern": "\\S", "maxLength": 1048576 }
        },
        "not": given("http", json!({ "type": "object" })),
        // Targets and where it runs agree: remote needs servers or server
        // tags (either implies remote), local has neither.
        "anyOf": [
            { "allOf": [given("runLocation", json!({ "const": "remote" })), targeted.clone()] },
            { "allOf": [targeted.clone()], "not": given("runLocation", json!({ "type": "string" })) },
            { "not": { "anyOf": [given("runLocation", json!({ "const": "remote" })), targeted] } }
        ]
    });
    let http = json!({
        "required": ["http"],
        "properties": {
            "kind": { "enum": ["http", null] },
            "http": { "type": "object" },
            "content": { "maxLength": 0 },
            "env": { "maxProperties": 0 },
            "secretEnv": { "maxProperties": 0 },
            "runLocation": { "enum": ["local", null] },
            "targetServers": { "maxItems": 0 },
            "targetTags": { "maxItems": 0 }
        },
        "not": given("interpreter", json!({ "type": "string" }))
    });
    schema["oneOf"] = json!([script, http]);
    // maxConcurrent only with overlap allow (null clears it and is always fine).
    schema["dependentSchemas"] = json!({ "maxConcurrent": { "anyOf": [
        { "properties": { "maxConcurrent": { "type": "null" } } },
        given("overlap", json!({ "const": "allow" }))
    ] } });
    schema
}

/// `POST /servers`: `ServerInput` with its required fields and one credential.
fn server_create_schema(input: &Value) -> Value {
    let mut schema = input.clone();
    schema["required"] = json!(["name", "host", "username"]);
    for name in ["name", "host", "username"] {
        schema["properties"][name]["type"] = json!("string");
    }
    schema["anyOf"] = json!([
        { "required": ["privateKey"], "properties": { "privateKey": { "type": "string" } } },
        { "required": ["password"], "properties": { "password": { "type": "string" } } }
    ]);
    schema
}

/// The notification paths, apart from the others for the same reason as
/// [`server_check_schema`].
fn notify_paths() -> [(&'static str, Value); 6] {
    let event_id = path_id("event");
    let channel_id = path_id("channel");
    let action_id = json!({ "name": "actionId", "in": "path", "required": true, "description": "The action's id", "schema": { "type": "integer", "format": "int64" } });
    [
        (
            "/api/v1/channels",
            json!({
                "get": op("listChannels", "List notification channels, by name (never their secrets)", Some("viewer"), &[], None, ok("Channels", json!({ "type": "array", "items": reference("Channel") }))),
                "post": with_409(op("createChannel", "Add a channel; a secret the server makes is in this answer only. A URL the SSRF guard refuses is 422 on `url`.", Some("admin"), &[], Some(reference("ChannelInput")), created("Created", reference("CreatedChannel"))), "A channel with this name exists")
            }),
        ),
        (
            "/api/v1/channels/{id}/test",
            json!({
                "post": op("testChannel", "Send the channel a test message now, once, through the SSRF guard (`channel.test`, signed for webhooks; a short mail for email). 200 whatever the receiver did: the answer says what it said.", Some("admin"), std::slice::from_ref(&channel_id), None, ok("What the receiver answered", reference("ChannelTest")))
            }),
        ),
        (
            "/api/v1/channels/{id}",
            json!({
                "get": op("getChannel", "One channel", Some("viewer"), std::slice::from_ref(&channel_id), None, ok("The channel", reference("Channel"))),
                "delete": with_409(op("deleteChannel", "Remove a channel with its delivery history", Some("admin"), std::slice::from_ref(&channel_id), None, no_content("Removed")), "An event's action notifies this channel")
            }),
        ),
        (
            "/api/v1/events/{id}/actions",
            json!({
                "get": op("listActions", "An event's actions, oldest first", Some("viewer"), std::slice::from_ref(&event_id), None, ok("Actions", json!({ "type": "array", "items": reference("Action") }))),
                "post": with_409(op("addAction", "Add an action: notify a channel when the event's jobs start, run too long or end as `when` says, or run another event when they end (an unknown channel or event is 409 on `channel` or `targetEvent`)", Some("editor"), std::slice::from_ref(&event_id), Some(reference("ActionInput")), created("Added", reference("Action"))), "No channel or event with that id")
            }),
        ),
        (
            "/api/v1/events/{id}/actions/{actionId}",
            json!({
                "delete": op("removeAction", "Remove an action; deliveries it already caused are kept and still sent", Some("editor"), &[event_id.clone(), action_id], None, no_content("Removed"))
            }),
        ),
        (
            "/api/v1/jobs/{id}/deliveries",
            json!({
                "get": op("jobDeliveries", "The notifications the job set off, oldest first", Some("viewer"), &[path_id("job")], None, ok("Deliveries", json!({ "type": "array", "items": reference("Delivery") })))
            }),
        ),
    ]
}

fn variable_schemas() -> [(&'static str, Value); 2] {
    let timestamp = json!({ "type": "string", "format": "date-time" });
    [
        (
            "Variable",
            json!({
                "type": "object",
                "description": "A variable the caller's events' scripts share. A secret one's value is write-only: `value` is always null for it",
                "required": ["key", "value", "secret", "version", "createdAt", "updatedAt", "updatedByJob"],
                "properties": {
                    "key": { "type": "string", "pattern": VARIABLE_KEY_PATTERN },
                    "value": { "description": "Any JSON; null for a secret variable (`secret` tells that from a plain null)" },
                    "secret": { "type": "boolean" },
                    "version": { "type": "integer", "minimum": 1, "description": "From 1, raised by every write" },
                    "createdAt": timestamp,
                    "updatedAt": timestamp,
                    "updatedByJob": { "type": ["integer", "null"], "description": "The job whose script wrote it last; null when written through the API" }
                }
            }),
        ),
        (
            "VariableInput",
            json!({
                "type": "object",
                "description": "At most one of `expect` and `expectAbsent: true` (both is 422 on expectAbsent)",
                "required": ["value"],
                "additionalProperties": false,
                "properties": {
                    "value": { "description": "Any JSON, at most 65536 bytes as compact JSON (more is 422 on `value`)" },
                    "secret": { "type": "boolean", "description": "Seal the value at rest and never return it. Left out: the variable keeps its secrecy (a new one is plain)" },
                    "expect": { "description": "Compare-and-set: the value the variable must hold now (JSON equality; null is a value too), else 409 on `expect`" },
                    "expectAbsent": { "type": "boolean", "description": "Compare-and-set: true when the variable must not exist yet, else 409 on `expect`" }
                },
                "not": { "required": ["expect", "expectAbsent"], "properties": { "expectAbsent": { "const": true } } }
            }),
        ),
    ]
}

/// The variable paths, apart from the others for the same reason as
/// [`server_check_schema`].
fn variable_paths() -> [(&'static str, Value); 2] {
    let key = json!({ "name": "key", "in": "path", "required": true, "description": "The variable's key: 1 to 128 characters from A-Z a-z 0-9 _ . -, starting with a letter, a digit or _ (another key is 422 on `key`)", "schema": { "type": "string", "pattern": VARIABLE_KEY_PATTERN } });
    let bad_key = |mut operation: Value| {
        operation["responses"]["422"] = error_response(
            "The key breaks the rule (`field` is `key`), or a body field does (`field` names it)",
        );
        operation
    };
    let mut put = with_409(
        op(
            "setVariable",
            "Create or replace one of the caller's variables (audited with the key, never the value); 201 when it was created",
            Some("editor"),
            std::slice::from_ref(&key),
            Some(reference("VariableInput")),
            ok("Replaced", reference("Variable")),
        ),
        "The compare-and-set expectation does not hold (`field` is `expect`)",
    );
    put["responses"]["201"] = created("Created", reference("Variable")).1;
    [
        (
            "/api/v1/variables",
            json!({
                "get": op("listVariables", "The caller's own variables, by key (secret ones without their value)", Some("viewer"), &[], None, ok("Variables", json!({ "type": "array", "items": reference("Variable") })))
            }),
        ),
        (
            "/api/v1/variables/{key}",
            json!({
                "get": bad_key(op("getVariable", "One of the caller's variables (a secret one without its value)", Some("viewer"), std::slice::from_ref(&key), None, ok("The variable", reference("Variable")))),
                "put": bad_key(put),
                "delete": bad_key(op("deleteVariable", "Delete one of the caller's variables (audited with the key)", Some("editor"), std::slice::from_ref(&key), None, no_content("Deleted")))
            }),
        ),
    ]
}

/// A node's id (`cronium_core::NodeId`).
const NODE_ID_PATTERN: &str = "^[a-z][a-z0-9_-]{0,63}$";

/// A workflow definition, as far as JSON Schema can say it. What it cannot
/// say is checked on arrival and refused with 422 naming the node: node ids
/// unique, `after` naming other nodes of the workflow, no cycle, every
/// event found (a name among the caller's own events, an id any event).
fn workflow_schemas() -> [(&'static str, Value); 6] {
    let timestamp = json!({ "type": "string", "format": "date-time" });
    let node_id = json!({ "type": "string", "pattern": NODE_ID_PATTERN, "description": "1 to 64 characters from a-z 0-9 _ -, starting with a letter" });
    let trigger = |kind: &str, fields: Value, required: &[&str]| {
        let mut properties = json!({ "type": { "const": kind } });
        for (name, schema) in fields.as_object().unwrap() {
            properties[name] = schema.clone();
        }
        let mut required = required.to_vec();
        required.insert(0, "type");
        json!({ "type": "object", "additionalProperties": false, "required": required, "properties": properties })
    };
    let edge_on = json!({ "type": "string", "enum": ["success", "failure", "always", "condition"], "default": "success", "description": "The parent's outcome the edge follows: success; failure (failed or timed out); always; condition (succeeded with its condition set)" });
    [
        (
            "WorkflowDefinition",
            json!({
                "type": "object",
                "description": "A workflow: a trigger and a DAG of nodes, each running an event. Node ids must be unique, `after` must name other nodes of the same workflow, and the edges must not form a cycle; each of these is 422 naming the node (or the cycle)",
                "required": ["name", "nodes"],
                "additionalProperties": false,
                "properties": {
                    "name": { "type": "string", "minLength": 1, "maxLength": 100, "pattern": NAME_PATTERN, "description": "Unique per owner; trimmed; no control characters" },
                    "description": { "type": ["string", "null"], "maxLength": 10000 },
                    "trigger": {
                        "description": "When the workflow starts by itself; left out or null: manual",
                        "oneOf": [
                            trigger("manual", json!({}), &[]),
                            trigger("cron", json!({
                                "cron": { "type": "string", "description": "5 fields (minute first) or 6 (second first); the pattern covers the plain 5-field form, the server also takes ranges, lists, steps, names and @-macros (a malformed one is 422)", "pattern": "^(\\*|[0-5]?[0-9]) (\\*|1?[0-9]|2[0-3]) (\\*|[1-9]|1[0-9]|2[0-8]) (\\*|[1-9]|1[0-2]) (\\*|[0-6])$" },
                                "timezone": { "type": "string", "description": "IANA time zone (an unknown one is 422)", "pattern": "^(UTC|Europe/Berlin|America/New_York|Asia/Tokyo|Australia/Lord_Howe)$" }
                            }), &["cron", "timezone"]),
                            trigger("every", json!({
                                "every": { "type": "string", "pattern": "^[1-9][0-9]?[smhd]$", "description": "1s to 366d, such as 15m, 1h30m or 1d" }
                            }), &["every"]),
                            trigger("webhook", json!({ "signed": { "type": "boolean", "default": false, "description": "Calls must also carry a valid Standard Webhooks signature (webhook-id, webhook-timestamp, webhook-signature) made with the workflow's signing secret" } }), &[]),
                            { "type": "null" }
                        ]
                    },
                    "failFast": { "type": "boolean", "default": false, "description": "Cancel the rest of a run when a node fails with no edge handling it" },
                    "overlap": { "type": "string", "enum": ["allow", "forbid", "queue", "replace"], "default": "forbid", "description": "What a run started while another runs does" },
                    "nodes": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 500,
                        "items": {
                            "type": "object",
                            "required": ["id", "event"],
                            "additionalProperties": false,
                            "properties": {
                                "id": node_id,
                                "event": {
                                    "description": "An event's name (one of the caller's own; a quoted number is a name) or its id",
                                    "oneOf": [
                                        { "type": "string", "minLength": 1, "maxLength": 100, "pattern": NAME_PATTERN },
                                        int64()
                                    ]
                                },
                                "after": {
                                    "type": "array",
                                    "maxItems": 50,
                                    "description": "Incoming edges: a parent's id (on success) or {node, on}; no parent twice",
                                    "items": {
                                        "oneOf": [
                                            node_id,
                                            { "type": "object", "required": ["node"], "additionalProperties": false, "properties": { "node": node_id, "on": edge_on } }
                                        ]
                                    }
                                },
                                "join": { "type": ["string", "null"], "enum": ["all", "any", null], "default": "all", "description": "With several incoming edges: all must be taken, or any one (once all are resolved); only on a node with `after`" }
                            },
                            "if": { "required": ["join"], "properties": { "join": { "type": "string" } } },
                            "then": { "required": ["after"], "properties": { "after": { "minItems": 1 } } }
                        }
                    }
                }
            }),
        ),
        (
            "Workflow",
            json!({
                "type": "object",
                "required": ["id", "name", "ownerId", "version", "definition", "hasWebhook", "nextFireAt", "createdAt", "updatedAt"],
                "properties": {
                    "id": { "type": "integer" },
                    "name": { "type": "string" },
                    "ownerId": { "type": "integer" },
                    "version": { "type": "integer", "minimum": 1, "description": "The current version; a new one is made only when the definition changes" },
                    "definition": { "allOf": [reference("WorkflowDefinition")], "description": "The current version's definition, canonical: defaults written out, empty fields left out" },
                    "hasWebhook": { "type": "boolean", "description": "Whether it has a webhook key (its trigger is webhook); the key is shown only when made" },
                    "nextFireAt": { "type": ["string", "null"], "format": "date-time", "description": "The next fire of its cron or every trigger" },
                    "createdAt": timestamp,
                    "updatedAt": { "type": "string", "format": "date-time", "description": "When the current version was made" }
                }
            }),
        ),
        (
            "WorkflowApplied",
            json!({
                "allOf": [reference("Workflow")],
                "type": "object",
                "required": ["changed", "previousVersion"],
                "properties": {
                    "changed": { "type": "boolean", "description": "Whether a version was made (false: the definition equals the current one)" },
                    "previousVersion": { "type": ["integer", "null"], "description": "The version this one replaced; null when created or unchanged" },
                    "webhook": reference("WorkflowHook")
                }
            }),
        ),
        (
            "WorkflowHook",
            json!({
                "type": "object",
                "required": ["path", "key"],
                "description": "A webhook key just made, shown this once (the server keeps only its hash)",
                "properties": {
                    "path": { "type": "string", "description": "Where to POST: /hooks/workflows/{key}" },
                    "key": { "type": "string", "pattern": "^crh_[A-Za-z0-9_-]{43}$" },
                    "secret": { "type": "string", "description": "For a signed webhook: whsec_…, to sign calls the Standard Webhooks way" }
                }
            }),
        ),
        (
            "WorkflowRun",
            json!({
                "type": "object",
                "required": ["id", "workflowId", "workflowName", "version", "status", "trigger", "input", "pass", "cancelRequested", "error", "createdAt", "startedAt", "finishedAt"],
                "properties": {
                    "id": { "type": "integer" },
                    "workflowId": { "type": "integer" },
                    "workflowName": { "type": "string" },
                    "version": { "type": "integer", "minimum": 1, "description": "The definition's version the run pinned when it started; later edits do not change it" },
                    "status": { "type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled", "skipped"], "description": "failed: a node failed and no failure or always edge handled it; queued: waiting behind an active run (overlap queue); skipped: refused by the overlap policy forbid" },
                    "trigger": { "type": "string", "enum": ["manual", "schedule", "webhook"] },
                    "input": { "description": "The run's input, given to the nodes without parents" },
                    "pass": { "type": "integer", "minimum": 1, "description": "From 1; each retry of the failed part raises it" },
                    "cancelRequested": { "type": "boolean" },
                    "error": { "type": ["string", "null"] },
                    "createdAt": timestamp,
                    "startedAt": { "type": ["string", "null"], "format": "date-time" },
                    "finishedAt": { "type": ["string", "null"], "format": "date-time" },
                    "nodes": { "type": "array", "items": reference("WorkflowRunNode"), "description": "Every node in the definition's order; left out of lists" }
                }
            }),
        ),
        (
            "WorkflowRunNode",
            json!({
                "type": "object",
                "required": ["node", "eventId", "payloadVersion", "status", "jobId", "jobStatus", "reason", "pass", "startedAt", "finishedAt"],
                "properties": {
                    "node": node_id,
                    "eventId": { "type": "integer" },
                    "payloadVersion": { "type": ["integer", "null"], "description": "The event's payload version pinned when the run started" },
                    "status": { "type": "string", "enum": ["pending", "running", "succeeded", "failed", "cancelled", "skipped"] },
                    "jobId": { "type": ["integer", "null"], "description": "The job of its latest pass (its log is the job's)" },
                    "jobStatus": { "type": ["string", "null"] },
                    "reason": { "type": ["string", "null"], "description": "Why it was skipped or cancelled (which edge was not taken), or why its job failed" },
                    "pass": { "type": "integer" },
                    "startedAt": { "type": ["string", "null"], "format": "date-time" },
                    "finishedAt": { "type": ["string", "null"], "format": "date-time" }
                }
            }),
        ),
    ]
}

fn workflow_paths() -> [(&'static str, Value); 9] {
    let id = path_id("workflow");
    let run_id = path_id("workflow run");
    let mut hook_trigger = op(
        "triggerWorkflowHook",
        "Start a run of the workflow whose webhook key this is; the key is the credential. The body (empty, or JSON of at most 1 MiB) is the run's input. A signed webhook needs webhook-id, webhook-timestamp (within 5 minutes) and webhook-signature (Standard Webhooks). webhook-id, or Idempotency-Key, makes a retried delivery answer 200 with the run it started",
        None,
        &[
            json!({ "name": "key", "in": "path", "required": true, "description": "The webhook key", "schema": { "type": "string" } }),
        ],
        Some(json!({ "description": "The run's input" })),
        (
            "202",
            json!({ "description": "Started", "content": json_content(reference("WorkflowRun")) }),
        ),
    );
    hook_trigger["responses"]["200"] = ok(
        "Already started by a delivery with this idempotency key",
        reference("WorkflowRun"),
    )
    .1;
    hook_trigger["responses"]["401"] = error_response(
        "A signed webhook without a valid signature, or with a timestamp more than 5 minutes away",
    );
    hook_trigger["responses"]["409"] =
        error_response("The overlap policy forbid refused the run (recorded as skipped)");
    hook_trigger["responses"]["413"] = error_response("The body is over 1 MiB");
    let [limit, offset] = page_params();
    let runs_list = [
        query("workflow", "Only runs of this workflow", int64()),
        query(
            "status",
            "Only runs with this status",
            json!({ "type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled", "skipped"] }),
        ),
        query(
            "since",
            "Created at or after",
            json!({ "type": "string", "format": "date-time" }),
        ),
        limit.clone(),
        offset.clone(),
    ];
    let mut apply = op(
        "applyWorkflow",
        "Apply a definition (audited when it changes anything): 201 with version 1 for a new name, 200 with a new version when it changed, 200 with `changed: false` when it equals the current one",
        Some("editor"),
        &[],
        Some(reference("WorkflowDefinition")),
        ok("Updated or unchanged", reference("WorkflowApplied")),
    );
    apply["responses"]["201"] = created("Created", reference("WorkflowApplied")).1;
    apply["responses"]["422"] = error_response(
        "A field breaks a rule, a node id repeats, `after` names no node of the workflow, the edges form a cycle, or a node's event is not found (`field` names it, such as `nodes[1].event`)",
    );
    [
        (
            "/api/v1/workflows",
            json!({
                "get": op("listWorkflows", "List workflows with their current definitions (paginated)", Some("viewer"), &[limit, offset], None, ok("A page of workflows", page_of("Workflow"))),
                "post": apply
            }),
        ),
        (
            "/api/v1/workflows/{id}",
            json!({
                "get": op("getWorkflow", "One workflow with its current definition", Some("viewer"), std::slice::from_ref(&id), None, ok("The workflow", reference("Workflow"))),
                "delete": op("deleteWorkflow", "Delete a workflow and all its versions (audited); its events may then be deleted", Some("editor"), std::slice::from_ref(&id), None, no_content("Deleted"))
            }),
        ),
        (
            "/api/v1/workflows/{id}/run",
            json!({
                "post": with_409(op("runWorkflow", "Run the workflow's current version now (audited); the overlap policy applies", Some("editor"), std::slice::from_ref(&id), Some(json!({ "type": "object", "properties": { "input": { "description": "Any JSON (at most 1 MiB), the input of the nodes without parents" } } })), created("Started, or queued behind an active run", reference("WorkflowRun"))), "The overlap policy forbid refused the run (recorded as skipped), or the definition no longer resolves (an event was renamed)")
            }),
        ),
        (
            "/api/v1/workflows/{id}/hook",
            json!({
                "post": with_409(op("rotateWorkflowHook", "Make a new webhook key (and signing secret, for a signed webhook), shown once; the old key stops working (audited)", Some("editor"), std::slice::from_ref(&id), None, ok("The new key", reference("WorkflowHook"))), "The workflow's trigger is not webhook")
            }),
        ),
        (
            "/hooks/workflows/{key}",
            json!({
                "post": hook_trigger
            }),
        ),
        (
            "/api/v1/workflow-runs",
            json!({
                "get": op("listWorkflowRuns", "Workflow runs, newest first, without their nodes (paginated, filterable)", Some("viewer"), &runs_list, None, ok("A page of runs", page_of("WorkflowRun")))
            }),
        ),
        (
            "/api/v1/workflow-runs/{id}",
            json!({
                "get": op("getWorkflowRun", "One run with every node's state and job", Some("viewer"), std::slice::from_ref(&run_id), None, ok("The run", reference("WorkflowRun")))
            }),
        ),
        (
            "/api/v1/workflow-runs/{id}/cancel",
            json!({
                "post": with_409(op("cancelWorkflowRun", "Cancel a run (audited): pending nodes never start, running nodes' jobs stop", Some("editor"), std::slice::from_ref(&run_id), None,
                    ("202", json!({ "description": "Cancelled, or its running jobs asked to stop", "content": json_content(reference("WorkflowRun")) }))), "The run is already over")
            }),
        ),
        (
            "/api/v1/workflow-runs/{id}/retry",
            json!({
                "post": with_409(op("retryWorkflowRun", "Retry a failed or cancelled run (audited): a new pass over every node that did not succeed; succeeded nodes keep their jobs and outputs", Some("editor"), std::slice::from_ref(&run_id), None, ok("The run, running again", reference("WorkflowRun"))), "The run is not failed or cancelled")
            }),
        ),
    ]
}

/// The document.
pub fn document() -> Value {
    let nodes_body = json!({
        "type": "object",
        "required": ["items", "databaseTime"],
        "properties": {
            "items": { "type": "array", "items": {
                "type": "object",
                "required": ["id", "address", "version", "startedAt", "heartbeatAt", "alive", "clockOffsetMs", "clockSkewed", "runningJobs"],
                "properties": {
                    "id": { "type": "string", "description": "The server's lease owner name (host/pid/tag)" },
                    "address": { "type": "string", "description": "Where it listens" },
                    "version": { "type": "string" },
                    "startedAt": { "type": "string", "format": "date-time" },
                    "heartbeatAt": { "type": "string", "format": "date-time", "description": "The database's clock at its last heartbeat" },
                    "alive": { "type": "boolean", "description": "Heartbeated within the last 15 s of the database's clock" },
                    "clockOffsetMs": { "type": "integer", "description": "Its clock minus the database's, at its last heartbeat" },
                    "clockSkewed": { "type": "boolean", "description": "More than 2 s off" },
                    "runningJobs": { "type": "integer", "minimum": 0 }
                }
            } },
            "databaseTime": { "type": "string", "format": "date-time", "description": "The database's clock now" }
        }
    });
    let event_id = path_id("event");
    let server_id = path_id("server");
    let [limit, offset] = page_params();
    let events_list = [
        query(
            "status",
            "Only events with this status",
            json!({ "type": "string", "enum": ["active", "paused", "draft", "archived"] }),
        ),
        query(
            "tag",
            "Only events with this tag",
            json!({ "type": "string", "pattern": TAG_PATTERN }),
        ),
        query(
            "name",
            "Only events whose name contains this (case-insensitive)",
            json!({ "type": "string" }),
        ),
        limit.clone(),
        offset.clone(),
    ];
    let servers_list = [query(
        "tag",
        "Only servers with this tag",
        json!({ "type": "string", "pattern": TAG_PATTERN }),
    )];
    let job_id = path_id("job");
    let jobs_list = [
        query("event", "Only jobs of this event", int64()),
        query(
            "status",
            "Only jobs with this status",
            json!({ "type": "string", "enum": ["queued", "running", "succeeded", "failed", "timed_out", "cancelled", "partial", "missed", "skipped"] }),
        ),
        query(
            "since",
            "Scheduled at or after",
            json!({ "type": "string", "format": "date-time" }),
        ),
        query(
            "until",
            "Scheduled before",
            json!({ "type": "string", "format": "date-time" }),
        ),
        limit.clone(),
        offset.clone(),
    ];
    let logs_params = [
        job_id.clone(),
        query(
            "after",
            "Only lines after this sequence number",
            json!({ "type": "integer", "minimum": 0, "default": 0 }),
        ),
        query(
            "limit",
            "Lines per page, 1 to 1000",
            json!({ "type": "integer", "minimum": 1, "maximum": 1000, "default": 1000 }),
        ),
        query(
            "follow",
            "Stream live as Server-Sent Events until the job is over",
            json!({ "type": "boolean", "default": false }),
        ),
    ];
    let mut schemas = schemas();
    null_means_absent(&mut schemas["EventInput"], &[]);
    null_means_absent(&mut schemas["HttpInput"], &["url"]);
    null_means_absent(&mut schemas["ServerInput"], &[]);
    schemas["EventCreate"] = event_create_schema(&schemas["EventInput"]);
    schemas["ServerCreate"] = server_create_schema(&schemas["ServerInput"]);
    schemas["ServerCheck"] = server_check_schema();
    for (name, schema) in notify_schemas()
        .into_iter()
        .chain(variable_schemas())
        .chain(workflow_schemas())
    {
        schemas[name] = schema;
    }
    null_means_absent(
        &mut schemas["ChannelInput"]["properties"]["email"],
        &["to", "smtp"],
    );
    null_means_absent(&mut schemas["ChannelInput"], &["name"]);
    let version = json!({ "name": "version", "in": "path", "required": true, "schema": { "type": "integer", "minimum": 1, "maximum": i64::MAX } });
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Cronium API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Events with versioned payloads and schedules, jobs and their live logs, servers, notification channels and event actions, variables scripts share, API tokens and the audit log. Authenticate with `Authorization: Bearer crn_…`. Roles: viewer reads; editor also writes, runs and cancels events and jobs, manages their actions and writes its own variables; admin also manages servers, channels, tokens and reads the audit log."
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": schemas
        },
        "paths": {
            "/healthz": {
                "get": with_503(op("health", "Up, and the database answers a query; names the backend", None, &[], None,
                    ok("Up", json!({ "type": "object", "properties": { "status": { "const": "ok" }, "database": { "type": "string", "enum": ["sqlite", "postgres"] } } }))),
                    "The database does not answer (code `unavailable`)")
            },
            "/metrics": {
                "get": op("metrics", "Prometheus metrics (text format)", Some("viewer"), &[], None,
                    ("200", json!({ "description": "Metrics", "content": { "text/plain": { "schema": { "type": "string" } } } })))
            },
            "/api/v1/openapi.json": {
                "get": op("openapi", "This document", None, &[], None, ok("OpenAPI 3.1", json!({ "type": "object" })))
            },
            "/api/v1/events": {
                "get": op("listEvents", "List events (paginated, filterable)", Some("viewer"), &events_list, None, ok("A page of events", page_of("Event"))),
                "post": with_409(op("createEvent", "Create an event; script events get payload v1", Some("editor"), &[], Some(reference("EventCreate")), created("Created", reference("Event"))), "An event with this name exists, a target server does not, or env and secretEnv name the same variable (`field` names it)")
            },
            "/api/v1/events/{id}": {
                "get": op("getEvent", "One event", Some("viewer"), std::slice::from_ref(&event_id), None, ok("The event", reference("Event"))),
                "patch": with_409(op("updateEvent", "Change an event; a new payload version when script, interpreter or env change", Some("editor"), std::slice::from_ref(&event_id), Some(reference("EventInput")), ok("The event", reference("Event"))), "An event with this name exists, a target server does not, or the change is well-formed but the event it would make breaks a rule (`field` names it; e.g. an http request given to a script event, a script emptied, a name in both env and the stored secretEnv)"),
                "delete": with_409(op("deleteEvent", "Delete an event with its payloads (409 while another event's action or a workflow runs it)", Some("editor"), std::slice::from_ref(&event_id), None, no_content("Deleted")), "Another event's run_event action, or the current version of a workflow, runs this event (the message names them)")
            },
            "/api/v1/events/{id}/payloads": {
                "get": op("listPayloads", "An event's payload versions, newest first", Some("viewer"), std::slice::from_ref(&event_id), None,
                    ok("Payload versions", json!({ "type": "array", "items": reference("Payload") })))
            },
            "/api/v1/events/{id}/payloads/{version}": {
                "get": op("downloadPayload", "Download one payload version (tar.gz); X-Checksum-Sha256 holds its digest", Some("viewer"), &[event_id.clone(), version], None,
                    ("200", json!({ "description": "The payload", "content": { "application/gzip": { "schema": { "type": "string", "contentEncoding": "binary" } } } })))
            },
            "/api/v1/events/{id}/run": {
                "post": with_409(op("runEvent", "Run the event now (the overlap policy applies)", Some("editor"), std::slice::from_ref(&event_id), Some(json!({ "type": "object", "properties": { "input": { "description": "Any JSON (at most 1 MiB); the script reads it with `cronium input`" } } })), created("Queued", reference("Job"))), "The overlap policy refused the run (recorded as a skipped job), or the event is not runnable")
            },
            "/api/v1/jobs": {
                "get": op("listJobs", "Jobs, newest first (paginated, filterable)", Some("viewer"), &jobs_list, None, ok("A page of jobs", page_of("Job")))
            },
            "/api/v1/jobs/{id}": {
                "get": op("getJob", "One job", Some("viewer"), std::slice::from_ref(&job_id), None, ok("The job", reference("Job")))
            },
            "/api/v1/jobs/{id}/cancel": {
                "post": with_409(op("cancelJob", "Cancel a queued job, or stop a running one (its whole process group)", Some("editor"), std::slice::from_ref(&job_id), None,
                    ("202", json!({ "description": "Cancelled, or asked to stop", "content": json_content(reference("Job")) }))), "The job is already over")
            },
            "/api/v1/jobs/{id}/logs": {
                "get": op("jobLogs", "A job's output lines; with follow=true a live text/event-stream (resumable with Last-Event-ID) that ends with an `end` event", Some("viewer"), &logs_params, None,
                    ok("Lines", json!({ "type": "object", "properties": { "items": { "type": "array", "items": reference("LogLine") }, "status": { "type": "string" } } })))
            },
            "/api/v1/servers": {
                "get": op("listServers", "List servers (credentials are never returned)", Some("viewer"), &servers_list, None, ok("Servers", json!({ "type": "array", "items": reference("Server") }))),
                "post": with_409(op("createServer", "Add a server", Some("admin"), &[], Some(reference("ServerCreate")), created("Created", reference("Server"))), "A server with this name exists")
            },
            "/api/v1/servers/{id}": {
                "get": op("getServer", "One server", Some("viewer"), std::slice::from_ref(&server_id), None, ok("The server", reference("Server"))),
                "patch": with_409(op("updateServer", "Change a server", Some("admin"), std::slice::from_ref(&server_id), Some(reference("ServerInput")), ok("The server", reference("Server"))), "A server with this name exists"),
                "delete": with_409(op("deleteServer", "Remove a server", Some("admin"), std::slice::from_ref(&server_id), None, no_content("Removed")), "An event still targets this server")
            },
            "/api/v1/servers/{id}/check": {
                "post": op("checkServer", "Connect over SSH and report: host key, authentication, `uname -sm`, interpreters, deployed runner. A server without a pinned key gets the key seen pinned (trust on first use, audited as `server.pin`); a key that differs from the pinned one fails in phase `host key`. A failed check is still 200, with `ok` false and `error` set.", Some("admin"), std::slice::from_ref(&server_id), None, ok("The check's report", reference("ServerCheck")))
            },
            "/api/v1/tokens": {
                "get": op("listTokens", "List API tokens (never their secrets)", Some("admin"), &[], None, ok("Tokens", json!({ "type": "array", "items": reference("Token") }))),
                "post": op("createToken", "Create an API token; the secret is in this answer only", Some("admin"), &[], Some(reference("TokenInput")), created("Created", reference("CreatedToken")))
            },
            "/api/v1/tokens/{id}": {
                "delete": op("revokeToken", "Revoke an API token", Some("admin"), &[path_id("token")], None, no_content("Revoked"))
            },
            "/api/v1/audit": {
                "get": op("listAudit", "The audit log, newest first", Some("admin"), &[limit, offset], None, ok("A page of audit records", page_of("AuditRecord")))
            },
            "/api/v1/nodes": {
                "get": op("listNodes", "The servers that use this database, as each last heartbeated (every 5 s, stamped with the database's clock)", Some("viewer"), &[], None, ok("The servers", nodes_body))
            }
        }
    });
    for (path, operations) in notify_paths()
        .into_iter()
        .chain(variable_paths())
        .chain(workflow_paths())
    {
        doc["paths"][path] = operations;
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    /// Every code the server can answer with, by an exhaustive match so that
    /// a new one cannot be left out here (and so of the document).
    fn all_codes() -> Vec<ErrorCode> {
        let codes = [
            ErrorCode::BadRequest,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::Conflict,
            ErrorCode::PayloadTooLarge,
            ErrorCode::ValidationFailed,
            ErrorCode::TooManyRequests,
            ErrorCode::Internal,
            ErrorCode::Unavailable,
        ];
        for code in codes {
            match code {
                ErrorCode::BadRequest
                | ErrorCode::Unauthorized
                | ErrorCode::Forbidden
                | ErrorCode::NotFound
                | ErrorCode::MethodNotAllowed
                | ErrorCode::Conflict
                | ErrorCode::PayloadTooLarge
                | ErrorCode::ValidationFailed
                | ErrorCode::TooManyRequests
                | ErrorCode::Internal
                | ErrorCode::Unavailable => {}
            }
        }
        codes.to_vec()
    }

    #[test]
    fn the_error_schema_names_every_code() {
        let doc = document();
        let documented = &doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
            ["code"]["enum"];
        for code in all_codes() {
            assert!(
                documented
                    .as_array()
                    .unwrap()
                    .contains(&json!(code.as_str())),
                "{} is not in the Error schema",
                code.as_str()
            );
        }
    }

    /// The extractors' answers: a malformed parameter or body is 400, a
    /// checked query parameter or body field 422, a body too large 413.
    #[test]
    fn every_operation_lists_its_extractors_statuses() {
        let doc = document();
        for (path, operations) in doc["paths"].as_object().unwrap() {
            for (method, op) in operations.as_object().unwrap() {
                let responses = op["responses"].as_object().unwrap();
                let params = op["parameters"].as_array().cloned().unwrap_or_default();
                let has = |status: &str| responses.contains_key(status);
                let what = format!("{method} {path}");
                if op.get("requestBody").is_some() {
                    for status in ["400", "413", "422"] {
                        assert!(has(status), "{what}: no {status}");
                    }
                }
                if !params.is_empty() {
                    assert!(has("400"), "{what}: no 400");
                }
                if params.iter().any(|p| p["in"] == "query") {
                    assert!(has("422"), "{what}: no 422");
                }
                if op.get("security").is_some() {
                    assert!(has("401") && has("403"), "{what}: no 401 or 403");
                }
            }
        }
    }

    #[test]
    fn null_is_documented_as_left_out_on_inputs() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["EventInput"]["properties"]["timeout"]["type"],
            json!(["string", "null"])
        );
        // Required fields stay non-null where the server needs a value.
        assert_eq!(
            schemas["EventCreate"]["properties"]["name"]["type"],
            json!("string")
        );
        assert_eq!(
            schemas["HttpInput"]["properties"]["url"]["type"],
            json!("string")
        );
        assert_eq!(
            schemas["ServerCreate"]["properties"]["host"]["type"],
            json!("string")
        );
    }
}

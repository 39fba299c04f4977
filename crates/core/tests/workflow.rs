//! Workflow definitions: parsing from YAML and JSON, every refusal with its field, cycles, order and round trips.

use std::time::Duration;

use cronium_core::workflow::{
    EdgeOn, EventRef, Format, Join, MAX_DEFINITION_BYTES, MAX_DESCRIPTION_CHARS, MAX_NODES,
    MAX_PARENTS, NodeId, WorkflowSpec, WorkflowTrigger,
};
use cronium_core::{EventId, EventName, OverlapPolicy, Schedule, ValidationError};

/// The example of DESIGN §7.5, as written there.
const DESIGN_YAML: &str = r#"
name: nightly
trigger: {type: cron, cron: "0 3 * * *", timezone: Europe/Berlin}  # or manual, every, webhook
nodes:
  - id: fetch
    event: fetch-data
  - id: transform
    event: transform
    after: [fetch]                        # on success of fetch
  - id: alert
    event: page-oncall
    after: [{node: transform, on: failure}]
  - id: report
    event: report
    after: [{node: transform, on: success}, {node: alert, on: always}]
    join: any                             # default all
"#;

/// The same definition in JSON (the API's shape).
const DESIGN_JSON: &str = r#"{
  "name": "nightly",
  "trigger": {"type": "cron", "cron": "0 3 * * *", "timezone": "Europe/Berlin"},
  "nodes": [
    {"id": "fetch", "event": "fetch-data"},
    {"id": "transform", "event": "transform", "after": ["fetch"]},
    {"id": "alert", "event": "page-oncall", "after": [{"node": "transform", "on": "failure"}]},
    {"id": "report", "event": "report",
     "after": [{"node": "transform", "on": "success"}, {"node": "alert", "on": "always"}],
     "join": "any"}
  ]
}"#;

fn yaml(text: &str) -> WorkflowSpec {
    WorkflowSpec::from_yaml(text).unwrap_or_else(|e| panic!("refused: {e}\n{text}"))
}

fn refused(text: &str) -> ValidationError {
    match WorkflowSpec::from_yaml(text) {
        Ok(spec) => panic!("accepted, expected a refusal:\n{text}\nas {spec:?}"),
        Err(e) => e,
    }
}

fn id(text: &str) -> NodeId {
    NodeId::new(text).unwrap()
}

fn ids<'a>(list: impl IntoIterator<Item = &'a NodeId>) -> Vec<&'a str> {
    list.into_iter().map(NodeId::as_str).collect()
}

/// Nodes as `(id, after)`, `after` in YAML.
type Graph<'a> = Vec<(&'a str, &'a str)>;

/// A workflow of the given nodes, each `(id, after)`, `after` in YAML.
fn graph(nodes: &[(&str, &str)]) -> String {
    let mut text = String::from("name: g\nnodes:\n");
    for (node, after) in nodes {
        text.push_str(&format!("  - id: {node}\n    event: e\n"));
        if !after.is_empty() {
            text.push_str(&format!("    after: {after}\n"));
        }
    }
    text
}

#[test]
fn design_example_parses_alike_from_yaml_and_json() {
    let spec = yaml(DESIGN_YAML);
    let json = WorkflowSpec::from_json(DESIGN_JSON).unwrap();
    assert_eq!(spec, json);
    let value: serde_json::Value = serde_json::from_str(DESIGN_JSON).unwrap();
    assert_eq!(WorkflowSpec::from_json_value(value).unwrap(), spec);

    assert_eq!(spec.name().as_str(), "nightly");
    assert_eq!(
        spec.trigger(),
        &WorkflowTrigger::Cron {
            cron: "0 3 * * *".into(),
            timezone: "Europe/Berlin".into()
        }
    );
    assert!(!spec.fail_fast());
    assert_eq!(spec.overlap(), OverlapPolicy::Forbid);
    assert_eq!(
        ids(spec.nodes().iter().map(|n| &n.id)),
        ["fetch", "transform", "alert", "report"]
    );
    let report = spec.node(&id("report")).unwrap();
    assert_eq!(report.join, Join::Any);
    assert_eq!(
        report.event,
        EventRef::Name(EventName::new("report").unwrap())
    );
    let after: Vec<(&str, EdgeOn)> = report
        .after
        .iter()
        .map(|e| (e.node.as_str(), e.on))
        .collect();
    assert_eq!(
        after,
        [("transform", EdgeOn::Success), ("alert", EdgeOn::Always)]
    );
    assert_eq!(spec.node(&id("fetch")).unwrap().join, Join::All);
    assert_eq!(ids(spec.order()), ["fetch", "transform", "alert", "report"]);
}

#[test]
fn short_and_long_after_forms_mean_the_same() {
    let forms = [
        "[a]",
        "[{node: a}]",
        "[{node: a, on: success}]",
        "[{on: success, node: a}]",
        "\n      - a",
        "\n      - node: a\n        on: success",
    ];
    let specs: Vec<WorkflowSpec> = forms
        .iter()
        .map(|after| yaml(&graph(&[("a", ""), ("b", after)])))
        .collect();
    for (form, spec) in forms.iter().zip(&specs) {
        assert_eq!(spec, &specs[0], "after: {form}");
    }
    assert!(
        specs[0].to_yaml().contains("    after:\n      - a\n"),
        "{}",
        specs[0].to_yaml()
    );

    // Every edge kind in the long form; the short form is success only.
    for (word, on) in [
        ("success", EdgeOn::Success),
        ("failure", EdgeOn::Failure),
        ("always", EdgeOn::Always),
        ("condition", EdgeOn::Condition),
    ] {
        let spec = yaml(&graph(&[
            ("a", ""),
            ("b", &format!("[{{node: a, on: {word}}}]")),
        ]));
        assert_eq!(spec.parents(&id("b"))[0].on, on, "{word}");
        assert_eq!(spec.children(&id("a")), [(&id("b"), on)], "{word}");
    }
}

#[test]
fn refusals_name_the_field_and_the_node() {
    let long_description = format!(
        "name: w\ndescription: {}\nnodes: [{{id: a, event: e}}]",
        "x".repeat(MAX_DESCRIPTION_CHARS + 1)
    );
    let too_many_nodes = {
        let nodes: Vec<(String, &str)> = (0..=MAX_NODES).map(|i| (format!("n{i}"), "")).collect();
        let refs: Vec<(&str, &str)> = nodes.iter().map(|(n, a)| (n.as_str(), *a)).collect();
        graph(&refs)
    };
    let too_many_parents = {
        let mut nodes: Vec<(String, String)> = (0..=MAX_PARENTS)
            .map(|i| (format!("p{i}"), String::new()))
            .collect();
        let all: Vec<String> = nodes.iter().map(|(n, _)| n.clone()).collect();
        nodes.push(("child".into(), format!("[{}]", all.join(", "))));
        let refs: Vec<(&str, &str)> = nodes
            .iter()
            .map(|(n, a)| (n.as_str(), a.as_str()))
            .collect();
        graph(&refs)
    };
    let table: Vec<(String, &str, &str)> = vec![
        // The workflow itself.
        ("name: ''\nnodes: [{id: a, event: e}]".into(), "name", "must not be empty"),
        (format!("name: {}\nnodes: [{{id: a, event: e}}]", "n".repeat(101)), "name", "at most 100"),
        (long_description, "description", "at most 10000 characters"),
        ("name: w\nnodes: []".into(), "nodes", "at least one node"),
        ("name: w".into(), "nodes", "at least one node"),
        (too_many_nodes, "nodes", "501 nodes; at most 500"),
        // Triggers: core's schedule rules, under `trigger.`.
        ("name: w\ntrigger: {type: cron, cron: '61 3 * * *', timezone: UTC}\nnodes: [{id: a, event: e}]".into(), "trigger.cron", "invalid cron expression"),
        ("name: w\ntrigger: {type: cron, cron: '0 3 * *', timezone: UTC}\nnodes: [{id: a, event: e}]".into(), "trigger.cron", "has 4 fields"),
        ("name: w\ntrigger: {type: cron, cron: '0 3 * * *', timezone: Mars/Olympus}\nnodes: [{id: a, event: e}]".into(), "trigger.timezone", "unknown time zone"),
        ("name: w\ntrigger: {type: cron, cron: '0 3 * * *'}\nnodes: [{id: a, event: e}]".into(), "trigger.timezone", "a cron trigger needs timezone"),
        ("name: w\ntrigger: {type: cron, timezone: UTC}\nnodes: [{id: a, event: e}]".into(), "trigger.cron", "a cron trigger needs cron"),
        ("name: w\ntrigger: {type: every, every: 0s}\nnodes: [{id: a, event: e}]".into(), "trigger.every", "outside 1s..366d"),
        ("name: w\ntrigger: {type: every, every: soon}\nnodes: [{id: a, event: e}]".into(), "trigger.every", "invalid interval"),
        ("name: w\ntrigger: {type: every}\nnodes: [{id: a, event: e}]".into(), "trigger.every", "an every trigger needs every"),
        ("name: w\ntrigger: {type: manual, cron: '* * * * *'}\nnodes: [{id: a, event: e}]".into(), "trigger.cron", "a manual trigger takes no cron"),
        ("name: w\ntrigger: {type: every, every: 1h, signed: true}\nnodes: [{id: a, event: e}]".into(), "trigger.signed", "an every trigger takes no signed"),
        ("name: w\ntrigger: {type: webhook, signed: null}\nnodes: [{id: a, event: e}]".into(), "trigger.signed", "must be true or false"),
        ("name: w\ntrigger: {type: webhook, every: 5m}\nnodes: [{id: a, event: e}]".into(), "trigger.every", "a webhook trigger takes no every"),
        ("name: w\ntrigger: {type: every, every: 5m, timezone: UTC}\nnodes: [{id: a, event: e}]".into(), "trigger.timezone", "an every trigger takes no timezone"),
        ("name: w\ntrigger: {type: at}\nnodes: [{id: a, event: e}]".into(), "trigger.type", "unknown trigger type \"at\""),
        // Nodes.
        (graph(&[("Fetch", "")]), "nodes[0].id", "invalid node id \"Fetch\""),
        (graph(&[("a", ""), ("9lives", "")]), "nodes[1].id", "starting with a letter"),
        (graph(&[("a", ""), ("has.dot", "")]), "nodes[1].id", "invalid node id"),
        (graph(&[(&"x".repeat(65), "")]), "nodes[0].id", "1-64 characters"),
        (graph(&[("a", ""), ("b", "[a]"), ("a", "")]), "nodes[2].id", "node \"a\": duplicate node id (first at nodes[0])"),
        ("name: w\nnodes: [{id: a, event: ''}]".into(), "nodes[0].event", "node \"a\": event name must not be empty"),
        ("name: w\nnodes: [{id: a, event: 0}]".into(), "nodes[0].event", "node \"a\": 0 is not an event id"),
        ("name: w\nnodes: [{id: a, event: -3}]".into(), "nodes[0].event", "-3 is not an event id"),
        (too_many_parents, "nodes[51].after", "node \"child\": 51 incoming edges; at most 50"),
        ("name: w\nnodes: [{id: a, event: e, join: any}]".into(), "nodes[0].join", "node \"a\": join on a node without parents"),
        ("name: w\nnodes: [{id: a, event: e, join: all}]".into(), "nodes[0].join", "join on a node without parents"),
        // Edges.
        (graph(&[("a", ""), ("b", "[a, ghost]")]), "nodes[1].after[1]", "edge \"ghost\" → \"b\": no node has the id \"ghost\""),
        (graph(&[("a", ""), ("b", "[a, Bad]")]), "nodes[1].after[1]", "node \"b\": invalid node id \"Bad\""),
        (graph(&[("a", "[a]")]), "nodes[0].after[0]", "edge \"a\" → \"a\": a node cannot come after itself"),
        (graph(&[("a", ""), ("b", "[a, {node: a, on: failure}]")]), "nodes[1].after[1]", "edge \"a\" → \"b\": this parent is listed twice"),
        // Cycles: the first node written leads, the closing edge is named.
        (graph(&[("a", "[b]"), ("b", "[a]")]), "nodes[0].after[0]", "cycle: a → b → a"),
    ];
    for (text, field, fragment) in table {
        let e = refused(&text);
        assert_eq!(
            e.field,
            field,
            "{e}\n--- for:\n{}",
            &text[..text.len().min(300)]
        );
        assert!(
            e.message.contains(fragment),
            "{e:?} lacks {fragment:?}\n--- for:\n{}",
            &text[..text.len().min(300)]
        );
    }
}

#[test]
fn limits_themselves_are_accepted() {
    let nodes: Vec<String> = (0..MAX_NODES).map(|i| format!("n{i}")).collect();
    let mut text = String::from("name: w\nnodes:\n");
    for (i, node) in nodes.iter().enumerate() {
        text.push_str(&format!("  - id: {node}\n    event: e\n"));
        if (1..=MAX_PARENTS).contains(&i) {
            text.push_str("    after: [n0]\n");
        }
    }
    // The last node waits for the most parents allowed.
    text.push_str(&format!(
        "  - id: last\n    event: e\n    after: [{}]\n",
        nodes[..MAX_PARENTS].join(", ")
    ));
    let e = refused(&text);
    assert_eq!(e.field, "nodes", "501 nodes with `last`");
    let text = text.replacen("  - id: n499\n    event: e\n", "", 1);
    let spec = yaml(&text);
    assert_eq!(spec.nodes().len(), MAX_NODES);
    assert_eq!(spec.parents(&id("last")).len(), MAX_PARENTS);
    assert_eq!(spec.children(&id("n0")).len(), MAX_PARENTS + 1);
    assert_eq!(spec.order().last().map(|n| n.as_str()), Some("last"));

    let description = "d".repeat(MAX_DESCRIPTION_CHARS);
    let spec = yaml(&format!(
        "name: w\ndescription: {description}\nnodes: [{{id: a, event: e}}]"
    ));
    assert_eq!(spec.description(), description);
    assert!(
        WorkflowSpec::from_yaml(&format!(
            "name: {}\nnodes: [{{id: a, event: e}}]",
            "n".repeat(100)
        ))
        .is_ok()
    );
    assert!(WorkflowSpec::from_yaml(&graph(&[(&"x".repeat(64), "")])).is_ok());
}

#[test]
fn a_definition_over_the_size_limit_is_refused_before_parsing() {
    let padding = "#".repeat(MAX_DEFINITION_BYTES);
    let text = format!("{DESIGN_YAML}{padding}\n");
    for format in [Format::Yaml, Format::Json] {
        let e = WorkflowSpec::parse(&text, format).unwrap_err();
        assert_eq!(e.field, "definition");
        assert!(e.message.contains("larger than 1048576 bytes"), "{e}");
    }
}

#[test]
fn three_node_cycle_is_named_in_order() {
    // b after a, c after b, a after c: a → b → c → a, wherever it is
    // written and whatever leads into it.
    let cases: [(Graph, &str, &str); 4] = [
        (
            vec![("a", "[c]"), ("b", "[a]"), ("c", "[b]")],
            "nodes[0].after[0]",
            "cycle: a → b → c → a",
        ),
        (
            vec![("c", "[b]"), ("a", "[c]"), ("b", "[a]")],
            "nodes[0].after[0]",
            "cycle: c → a → b → c",
        ),
        (
            vec![
                ("start", ""),
                ("a", "[start, c]"),
                ("b", "[a]"),
                ("c", "[b]"),
                ("after", "[c]"),
            ],
            "nodes[1].after[1]",
            "cycle: a → b → c → a",
        ),
        // The walk starts at `x`, outside the cycle, and must still name
        // only the cycle.
        (
            vec![("x", "[b]"), ("a", "[c]"), ("b", "[a]"), ("c", "[b]")],
            "nodes[1].after[0]",
            "cycle: a → b → c → a",
        ),
    ];
    for (nodes, field, message) in cases {
        let e = refused(&graph(&nodes));
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            (field, message),
            "{nodes:?}"
        );
        assert_eq!(e.to_string(), format!("{field}: {message}"));
    }
}

#[test]
fn diamond_is_valid_and_ordered() {
    let spec = yaml(&graph(&[
        ("a", ""),
        ("b", "[a]"),
        ("c", "[a]"),
        ("d", "[b, c]"),
    ]));
    assert_eq!(ids(spec.order()), ["a", "b", "c", "d"]);
    assert_eq!(ids(spec.roots()), ["a"]);
    let children: Vec<&str> = spec
        .children(&id("a"))
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(children, ["b", "c"]);
    let parents: Vec<&str> = spec
        .parents(&id("d"))
        .iter()
        .map(|e| e.node.as_str())
        .collect();
    assert_eq!(parents, ["b", "c"]);
    assert!(spec.children(&id("d")).is_empty());
    assert!(spec.parents(&id("a")).is_empty());
    assert!(spec.parents(&id("nope")).is_empty());
    assert!(spec.node(&id("nope")).is_none());

    // Written backwards, the order still puts parents first, and among
    // nodes ready together the one written first.
    let spec = yaml(&graph(&[
        ("d", "[c, b]"),
        ("c", "[a]"),
        ("b", "[a]"),
        ("a", ""),
    ]));
    assert_eq!(ids(spec.order()), ["a", "c", "b", "d"]);
    // Independent chains interleave by file position, deterministically.
    let spec = yaml(&graph(&[
        ("x1", ""),
        ("y1", ""),
        ("x2", "[x1]"),
        ("y2", "[y1]"),
        ("z", ""),
    ]));
    assert_eq!(ids(spec.order()), ["x1", "y1", "x2", "y2", "z"]);
    assert_eq!(ids(spec.roots()), ["x1", "y1", "z"]);
}

#[test]
fn triggers_and_options() {
    let cases: [(&str, WorkflowTrigger, Option<Schedule>); 6] = [
        ("", WorkflowTrigger::Manual, None),
        ("trigger: {type: manual}\n", WorkflowTrigger::Manual, None),
        (
            "trigger: {type: webhook}\n",
            WorkflowTrigger::Webhook { signed: false },
            None,
        ),
        (
            "trigger: {type: webhook, signed: true}\n",
            WorkflowTrigger::Webhook { signed: true },
            None,
        ),
        (
            "trigger: {type: every, every: 1h30m}\n",
            WorkflowTrigger::Every {
                every: Duration::from_secs(5400),
            },
            Some(Schedule::Every {
                every: Duration::from_secs(5400),
            }),
        ),
        (
            "trigger: {type: cron, cron: ' 0 3 * * 1-5 ', timezone: America/New_York}\n",
            WorkflowTrigger::Cron {
                cron: "0 3 * * 1-5".into(),
                timezone: "America/New_York".into(),
            },
            Some(Schedule::cron("0 3 * * 1-5", "America/New_York").unwrap()),
        ),
    ];
    for (trigger, want, schedule) in cases {
        let spec = yaml(&format!("name: w\n{trigger}nodes: [{{id: a, event: e}}]"));
        assert_eq!(spec.trigger(), &want, "{trigger}");
        assert_eq!(spec.trigger().schedule(), schedule, "{trigger}");
    }

    let spec = yaml("name: w\nfailFast: true\noverlap: queue\nnodes: [{id: a, event: e}]");
    assert!(spec.fail_fast());
    assert_eq!(spec.overlap(), OverlapPolicy::Queue);
    let e = refused("name: w\noverlap: sometimes\nnodes: [{id: a, event: e}]");
    assert_eq!(e.field, "definition");
    assert!(e.message.contains("sometimes"), "{e}");
}

#[test]
fn unknown_fields_are_refused_with_their_place() {
    let cases = [
        (
            "name: w\nretries: 3\nnodes: [{id: a, event: e}]",
            "unknown field `retries`",
            "line 2",
        ),
        (
            "name: w\nnodes:\n  - id: a\n    event: e\n    timeout: 5m\n",
            "unknown field `timeout`",
            "line 5",
        ),
        (
            "name: w\nnodes:\n  - id: a\n    event: e\n  - id: b\n    event: e\n    after:\n      - node: a\n        when: failure\n",
            "unknown field `when`",
            "line 9",
        ),
        (
            "name: w\ntrigger:\n  type: cron\n  cron: '* * * * *'\n  tz: UTC\nnodes: [{id: a, event: e}]",
            "unknown field `tz`",
            "",
        ),
        (
            "name: w\nnodes: [{id: a, event: e}, {id: b, event: e, after: [{node: a, on: later}]}]",
            "later",
            "",
        ),
        (
            "name: w\nnodes: [{id: a, event: e}, {id: b, event: e, join: some, after: [a]}]",
            "some",
            "",
        ),
        ("name: w\nnodes: [{id: a}]", "missing field `event`", ""),
        ("nodes: [{id: a, event: e}]", "missing field `name`", ""),
        (
            "name: w\nnodes: [{id: a, event: [1]}]",
            "an event name or a numeric event id",
            "",
        ),
        (
            "name: w\nnodes: [{id: a, event: e}, {id: b, event: e, after: [{on: failure}]}]",
            "missing field `node`",
            "",
        ),
        ("name: [w", "", ""),
    ];
    for (text, fragment, place) in cases {
        let e = refused(text);
        assert_eq!(e.field, "definition", "{e}");
        assert!(e.message.contains(fragment), "{e} lacks {fragment:?}");
        assert!(e.message.contains(place), "{e} lacks {place:?}");
        assert!(!e.message.contains('\n'), "one line: {e:?}");
    }

    let json = r#"{"name": "w",
  "nodes": [{"id": "a", "event": "e", "colour": "red"}]}"#;
    let e = WorkflowSpec::from_json(json).unwrap_err();
    assert_eq!(e.field, "definition");
    assert!(
        e.message.contains("unknown field `colour`") && e.message.contains("line 2"),
        "{e}"
    );
    let e = WorkflowSpec::from_json(
        r#"{"name": "w", "nodes": [{"id": "a", "event": "e", "after": [{"node": "a", "if": 1}]}]}"#,
    )
    .unwrap_err();
    assert!(e.message.contains("unknown field `if`"), "{e}");
}

#[test]
fn events_by_name_or_id() {
    // YAML 1.2 scalars: `yes` is text, and `007` or `1_000` stay as written.
    let spec = yaml(
        "name: w\nnodes:\n  - {id: a, event: 42}\n  - {id: b, event: \"42\"}\n  - {id: c, event: nightly backup}\n  - {id: d, event: yes}\n  - {id: e, event: 007}\n  - {id: f, event: 1_000}\n",
    );
    let events: Vec<&EventRef> = spec.nodes().iter().map(|n| &n.event).collect();
    assert_eq!(
        events,
        [
            &EventRef::Id(EventId(42)),
            &EventRef::Name(EventName::new("42").unwrap()),
            &EventRef::Name(EventName::new("nightly backup").unwrap()),
            &EventRef::Name(EventName::new("yes").unwrap()),
            &EventRef::Name(EventName::new("007").unwrap()),
            &EventRef::Name(EventName::new("1_000").unwrap()),
        ]
    );
    // The quoted number stays a name through both canonical forms.
    assert_eq!(yaml(&spec.to_yaml()), spec);
    assert_eq!(
        WorkflowSpec::from_json(&spec.to_json().to_string()).unwrap(),
        spec
    );
}

#[test]
fn check_events_resolves_every_node_or_names_the_missing_one() {
    let spec = yaml(
        "name: w\nnodes:\n  - {id: a, event: fetch}\n  - {id: b, event: 7, after: [a]}\n  - {id: c, event: gone, after: [a]}\n",
    );
    let lookup = |known: &'static [&'static str]| {
        move |event: &EventRef| match event {
            EventRef::Name(name) => known
                .iter()
                .position(|k| *k == name.as_str())
                .map(|i| EventId(100 + i as i64)),
            EventRef::Id(id) => (id.0 == 7).then_some(*id),
        }
    };
    let e = spec.check_events(lookup(&["fetch"])).unwrap_err();
    assert_eq!(e.field, "nodes[2].event");
    assert_eq!(e.message, "node \"c\": no event named \"gone\"");
    let e = yaml("name: w\nnodes: [{id: a, event: 8}]")
        .check_events(lookup(&[]))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "nodes[0].event: node \"a\": no event with id 8"
    );

    let resolved = spec.check_events(lookup(&["fetch", "gone"])).unwrap();
    assert_eq!(resolved.spec(), &spec);
    assert_eq!(resolved.event(&id("a")), Some(EventId(100)));
    assert_eq!(resolved.event(&id("b")), Some(EventId(7)));
    assert_eq!(resolved.event(&id("c")), Some(EventId(101)));
    assert_eq!(resolved.event(&id("z")), None);
    let all: Vec<(&str, i64)> = resolved.events().map(|(n, e)| (n.as_str(), e.0)).collect();
    assert_eq!(all, [("a", 100), ("b", 7), ("c", 101)]);
}

#[test]
fn canonical_forms_round_trip() {
    let texts = [
        DESIGN_YAML,
        "name: w\nnodes: [{id: a, event: e}]",
        "name: ' spaced name '\ndescription: \"two\\nlines: and a colon\"\ntrigger: {type: every, every: 90}\nfailFast: true\noverlap: replace\nnodes:\n  - {id: 'true', event: 'null'}\n  - {id: b, event: 3, after: [{node: 'true', on: condition}]}\n  - {id: c, event: e, after: [b, {node: 'true', on: failure}], join: any}\n",
        "name: w\ntrigger: {type: webhook}\nnodes: [{id: on, event: 'on'}, {id: off, event: yes, after: [on]}]",
    ];
    for text in texts {
        let spec = yaml(text);
        let out = spec.to_yaml();
        let again = WorkflowSpec::from_yaml(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
        assert_eq!(again, spec, "{out}");
        assert_eq!(again.to_yaml(), out, "canonical YAML is stable");
        let json = spec.to_json();
        assert_eq!(
            WorkflowSpec::from_json(&json.to_string()).unwrap(),
            spec,
            "{json}"
        );
        assert_eq!(WorkflowSpec::from_json_value(json.clone()).unwrap(), spec);
        assert_eq!(again.to_json(), json);
    }
}

#[test]
fn canonical_yaml_of_the_design_example() {
    let want = "\
name: nightly
trigger:
  type: cron
  cron: 0 3 * * *
  timezone: Europe/Berlin
failFast: false
overlap: forbid
nodes:
  - id: fetch
    event: fetch-data
  - id: transform
    event: transform
    after:
      - fetch
  - id: alert
    event: page-oncall
    after:
      - node: transform
        on: failure
  - id: report
    event: report
    after:
      - transform
      - node: alert
        on: always
    join: any
";
    assert_eq!(yaml(DESIGN_YAML).to_yaml(), want);
    let json = yaml(DESIGN_YAML).to_json();
    assert_eq!(json["trigger"]["type"], "cron");
    assert_eq!(json["nodes"][3]["after"][0], "transform");
    assert_eq!(json["nodes"][3]["after"][1]["on"], "always");
    assert!(json.get("description").is_none());
}

/// Every YAML block in docs/workflows.md is applied: accepted, or, if its
/// first line is `# refused: <field>: <fragment>`, refused that way.
#[test]
fn docs_examples_are_applied() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/workflows.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let mut blocks = 0;
    let mut rest = doc.as_str();
    while let Some(start) = rest.find("```yaml\n") {
        let body = &rest[start + 8..];
        let end = body.find("```").expect("closed block");
        let block = &body[..end];
        rest = &body[end + 3..];
        blocks += 1;
        match block
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# refused: "))
        {
            Some(want) => {
                let e = refused(block);
                let (field, fragment) = want.split_once(": ").expect("# refused: FIELD: TEXT");
                assert_eq!(e.field, field, "{e}\n{block}");
                assert!(e.message.contains(fragment), "{e} lacks {fragment:?}");
            }
            None => {
                yaml(block);
            }
        }
    }
    assert!(blocks >= 4, "only {blocks} YAML blocks in {path}");
}

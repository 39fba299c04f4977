//! `cronium server import` end to end: real inventory, ssh_config and known_hosts files, a real `cronium serve`, and a tag-targeted fleet on a real OpenSSH server.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::Server;
use cronium_ssh::testing::TestSshd;
use serde_json::Value;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.to_str().unwrap().to_string()
}

/// The audit log's size: an import that changes nothing adds no entry.
fn audit_total(server: &Server) -> u64 {
    let page: Value = ureq::get(format!("{}/api/v1/audit?limit=1", server.url))
        .header("Authorization", format!("Bearer {}", server.admin_token()))
        .call()
        .unwrap()
        .body_mut()
        .read_json()
        .unwrap();
    page["total"].as_u64().unwrap()
}

fn servers(server: &Server) -> Vec<Value> {
    server
        .cronium(&["server", "list", "--json"])
        .ok()
        .json()
        .as_array()
        .unwrap()
        .clone()
}

fn tags_of(server: &Value) -> Vec<String> {
    server["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

/// Servers from an INI and a YAML inventory (nested groups), pinned from a
/// hashed known_hosts file; a tag-targeted event runs on both as a fleet;
/// importing again changes nothing; bad hosts are reported and left out.
#[test]
fn inventories_become_tagged_servers_and_a_tag_runs_them_as_a_fleet() {
    common::require_runner();
    let server = Server::start();
    let sshd = TestSshd::start(2);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let (a, b) = (sshd.user(0), sshd.user(1));
    let key_a = write(dir, "key_a", &a.key.private);
    let key_b = write(dir, "key_b", &b.key.private);
    let (host, port) = (sshd.host(), sshd.port());
    let ini = write(
        dir,
        "hosts.ini",
        &format!(
            "[web]\n\
             web-a ansible_host={host} ansible_user={} ansible_ssh_private_key_file={key_a}\n\
             \n\
             [app]\n\
             \n\
             [app:children]\n\
             web\n\
             \n\
             [app:vars]\n\
             ansible_port={port}\n\
             \n\
             [broken]\n\
             no-address ansible_user=x ansible_ssh_private_key_file={key_a}\n\
             bad-key ansible_host={host} ansible_user=x ansible_ssh_private_key_file={dir}/missing\n",
            a.name,
            dir = dir.display(),
        ),
    );
    let yaml = write(
        dir,
        "hosts.yml",
        &format!(
            "all:\n\
            \x20 children:\n\
            \x20   prod:\n\
            \x20     vars:\n\
            \x20       ansible_port: {port}\n\
            \x20     children:\n\
            \x20       web:\n\
            \x20         hosts:\n\
            \x20           web-b:\n\
            \x20             ansible_host: {host}\n\
            \x20             ansible_user: {}\n\
            \x20             ansible_ssh_private_key_file: {key_b}\n",
            b.name
        ),
    );
    // A hashed known_hosts file, as `ssh-keygen -H` leaves it.
    let line = sshd.host_key().known_hosts_line(host, port);
    let key = sshd.host_key().to_openssh();
    let known_hosts = write(
        dir,
        "known_hosts",
        &format!("other.example {key}\n{line}\n"),
    );
    let hashed = std::process::Command::new("ssh-keygen")
        .args(["-H", "-f", &known_hosts])
        .output()
        .unwrap();
    assert!(hashed.status.success(), "{hashed:?}");
    let kh_text = std::fs::read_to_string(&known_hosts).unwrap();
    assert!(kh_text.starts_with("|1|"), "{kh_text}");

    let args = [
        "server",
        "import",
        "--ansible",
        &ini,
        "--ansible",
        &yaml,
        "--known-hosts",
        &known_hosts,
        "--tag",
        "imported",
    ];
    // A dry run sends nothing.
    let dry = server.cronium(&[&args[..], &["--dry-run"]].concat());
    let plan = dry.stdout();
    assert_eq!(dry.code(), Some(1), "two hosts are bad: {plan}");
    assert!(
        plan.contains("would create web-a") && plan.contains("would create web-b"),
        "{plan}"
    );
    assert!(servers(&server).is_empty());

    let before = audit_total(&server);
    let first = server.cronium(&args);
    let out = first.stdout();
    assert_eq!(first.code(), Some(1), "{out}\n{}", first.stderr());
    for needle in [
        "created web-a",
        "created web-b",
        "host key pinned",
        "error: no-address: no address",
        "error: bad-key: cannot read key file",
        "2 created, 0 updated, 0 unchanged, 2 not imported",
    ] {
        assert!(out.contains(needle), "no {needle:?} in:\n{out}");
    }
    let listed = servers(&server);
    let names: Vec<_> = listed.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["web-a", "web-b"],
        "the bad hosts were not half-created"
    );
    assert_eq!(tags_of(&listed[0]), ["app", "imported", "web"]);
    assert_eq!(tags_of(&listed[1]), ["imported", "prod", "web"]);
    for s in &listed {
        assert_eq!(s["port"], port, "{s}");
        assert!(s["knownHost"].as_str().unwrap().starts_with("|1|"), "{s}");
        assert_eq!(
            s["hostKeyFingerprint"],
            sshd.host_key_fingerprint().as_str()
        );
    }
    assert_eq!(audit_total(&server), before + 2);

    // Again: nothing changes, nothing is written.
    let again = server.cronium(&args).stdout();
    assert!(
        again.contains("0 created, 0 updated, 2 unchanged"),
        "{again}"
    );
    assert_eq!(audit_total(&server), before + 2);
    assert_eq!(servers(&server), listed);

    // A changed source updates what changed, and only that server.
    let moved = std::fs::read_to_string(&yaml)
        .unwrap()
        .replace("ansible_host: 127.0.0.1", "ansible_host: localhost");
    std::fs::write(&yaml, moved).unwrap();
    let changed = server
        .cronium(&["server", "import", "--ansible", &yaml])
        .ok()
        .stdout();
    assert!(
        changed.contains("updated web-b (") && changed.contains("0 created, 1 updated"),
        "{changed}"
    );
    let web_b = &servers(&server)[1];
    assert_eq!(web_b["host"], "localhost");
    assert_eq!(
        tags_of(web_b),
        ["imported", "prod", "web"],
        "tags are only added"
    );
    assert_eq!(audit_total(&server), before + 3);

    // `server list --tag` and an event that targets the tag.
    let tagged = server
        .cronium(&["server", "list", "--tag", "web"])
        .ok()
        .stdout();
    assert!(
        tagged.contains("web-a") && tagged.contains("web-b"),
        "{tagged}"
    );
    let prod = server
        .cronium(&["server", "list", "--tag", "prod"])
        .ok()
        .stdout();
    assert!(!prod.contains("web-a") && prod.contains("web-b"), "{prod}");
    let script = common::script(dir, "who.sh", "echo \"hi from $(whoami)\"\n");
    server
        .cronium(&[
            "event",
            "create",
            "--name",
            "by-tag",
            "--script",
            &script,
            "--manual",
            "--server-tag",
            "web",
        ])
        .ok();
    let shown = server.cronium(&["event", "show", "by-tag"]).ok().stdout();
    assert!(shown.contains("servers tagged web"), "{shown}");
    let run = server.cronium(&["event", "run", "by-tag", "--follow"]);
    assert_eq!(run.code(), Some(0), "{}\n{}", run.stdout(), run.stderr());
    let out = run.stdout();
    assert!(
        out.contains(&format!("[web-a] hi from {}", a.name)),
        "{out}"
    );
    assert!(
        out.contains(&format!("[web-b] hi from {}", b.name)),
        "{out}"
    );
    let jobs = server
        .cronium(&["job", "list", "--event", "by-tag", "--json"])
        .ok()
        .json();
    let job = &jobs["items"][0];
    assert_eq!(job["status"], "succeeded", "{job}");
    let resolved: Vec<(String, Vec<String>)> = job["metadata"]["resolvedTargets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["server"].as_str().unwrap().to_string(), tags_of(t)))
        .collect();
    assert_eq!(
        resolved,
        [
            ("web-a".to_string(), vec!["web".to_string()]),
            ("web-b".to_string(), vec!["web".to_string()])
        ]
    );
    let id = job["id"].to_string();
    let job_text = server.cronium(&["job", "show", &id]).ok().stdout();
    assert!(
        job_text.contains("web-a (tag web), web-b (tag web)"),
        "{job_text}"
    );

    // Tags are resolved when the job starts: untag one and it is left out.
    server.cronium(&["server", "edit", "web-a", "--untag"]).ok();
    let run = server.cronium(&["event", "run", "by-tag", "--follow"]);
    assert_eq!(run.code(), Some(0), "{}", run.stderr());
    assert!(
        !run.stdout().contains("[web-a]") && run.stdout().contains("hi from"),
        "{}",
        run.stdout()
    );

    // A tag no server holds fails the job in the targets phase.
    server
        .cronium(&["event", "edit", "by-tag", "--server-tag", "nobody-has-this"])
        .ok();
    let run = server.cronium(&["event", "run", "by-tag", "--follow"]);
    assert_ne!(run.code(), Some(0));
    let all = format!("{}{}", run.stdout(), run.stderr());
    assert!(
        all.contains("targets: tag \"nobody-has-this\" matches no server"),
        "{all}"
    );
    let jobs = server
        .cronium(&["job", "list", "--event", "by-tag", "--json"])
        .ok()
        .json();
    let failed = &jobs["items"][0];
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["metadata"]["phase"], "targets", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("matches no server"),
        "{failed}"
    );
}

/// Servers from an ssh_config: concrete hosts with `Host *` defaults,
/// wildcards and `Match` skipped with a note, a duplicate name reported.
#[test]
fn an_ssh_config_imports_its_concrete_hosts() {
    let server = Server::start();
    let sshd = TestSshd::start(1);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let user = sshd.user(0);
    let key = write(dir, "id_test", &user.key.private);
    let port = sshd.port();
    let config = write(
        dir,
        "config",
        &format!(
            "Host box box.alias\n\
             \x20   HostName 127.0.0.1\n\
             \x20   Port {port}\n\
             \n\
             Host *.corp\n\
             \x20   User corp\n\
             \n\
             Match host x\n\
             \x20   User matched\n\
             \n\
             Host nokey.example\n\
             \x20   IdentityFile {dir}/absent\n\
             \n\
             Host *\n\
             \x20   User {}\n\
             \x20   IdentityFile {key}\n",
            user.name,
            dir = dir.display(),
        ),
    );
    // The same alias in another file is a duplicate: neither is imported.
    let other = write(
        dir,
        "other",
        &format!("Host box.alias\n  HostName 10.9.9.9\n  User u\n  IdentityFile {key}\n"),
    );
    let args = [
        "server",
        "import",
        "--ssh-config",
        &config,
        "--ssh-config",
        &other,
        "--tag",
        "ssh",
    ];
    let run = server.cronium(&args);
    let out = run.stdout();
    assert_eq!(run.code(), Some(1), "{out}\n{}", run.stderr());
    for needle in [
        "note:",
        "skipped wildcard host \"*.corp\"",
        "skipped the Match block",
        "created box (",
        "error: box.alias: duplicate server name",
        "error: nokey.example: cannot read key file",
    ] {
        assert!(out.contains(needle), "no {needle:?} in:\n{out}");
    }
    let listed = servers(&server);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["name"], "box");
    assert_eq!(listed[0]["username"], user.name.as_str());
    assert_eq!(listed[0]["port"], port);
    assert_eq!(tags_of(&listed[0]), ["ssh"]);
    assert!(listed[0]["knownHost"].is_null(), "no --known-hosts, no pin");

    // The imported key logs in.
    let check = server.cronium(&["server", "check", "box"]).ok().stdout();
    assert!(check.contains("result    ok"), "{check}");
    let again = server.cronium(&args).stdout();
    assert!(
        again.contains("0 created, 0 updated, 1 unchanged, 2 not imported"),
        "{again}"
    );
}

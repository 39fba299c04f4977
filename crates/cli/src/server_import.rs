//! `cronium server import`: servers from Ansible inventories and ssh_config files, created or updated through the API.
//!
//! Every host is checked in full before anything is sent (an address, a
//! user, a readable key file, a valid name, a name no other imported host
//! has), and is then one request: created with its tags and pinned key at
//! once, or not at all. A host that fails a check is reported and left out;
//! the others go ahead. A server that exists by name is updated with what
//! the source says (tags are added to its own, never removed) and the API
//! writes nothing when nothing changed, so importing again is a no-op.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cronium_core::{ServerName, Tag};
use serde_json::{Value, json};

use crate::client::Client;
use crate::inventory::{self, Parsed, SourceHost};
use crate::ssh_config;

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// An Ansible inventory, INI or YAML (repeatable); its groups become tags
    #[arg(long, value_name = "FILE")]
    pub ansible: Vec<PathBuf>,
    /// An ssh client configuration such as ~/.ssh/config (repeatable)
    #[arg(long = "ssh-config", value_name = "FILE")]
    pub ssh_config: Vec<PathBuf>,
    /// Pin each host's key from this known_hosts file when it has one
    #[arg(long = "known-hosts", value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// Add this tag to every imported server (repeatable)
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// The SSH user of hosts whose source names none
    #[arg(long = "user", value_name = "USER")]
    pub user: Option<String>,
    /// The private key file of hosts whose source names none
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Print what would be created and updated, and change nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// A host ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub key_file: PathBuf,
    pub private_key: String,
    pub tags: BTreeSet<String>,
    pub known_host: Option<String>,
}

/// Expands a leading `~/` to the home directory, as ssh and Ansible do.
pub fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ if path == "~" => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default(),
        _ => PathBuf::from(path),
    }
}

/// Whether a name can serve as its own address (when the source gives
/// none): a DNS name with a dot, an IP address, or `localhost`. A bare
/// word would depend on the resolver of whichever host runs the job.
fn usable_as_address(name: &str) -> bool {
    name == "localhost" || name.contains('.') || name.contains(':')
}

/// Checks one host and fills in the defaults; the error is why it is left out.
pub fn plan(
    source: &SourceHost,
    args: &ImportArgs,
    known_hosts: Option<&str>,
) -> std::result::Result<Planned, String> {
    ServerName::new(&source.name).map_err(|e| e.message)?;
    let host = match &source.address {
        Some(a) if !a.trim().is_empty() => a.trim().to_string(),
        Some(_) => return Err("its address is empty".into()),
        None if usable_as_address(&source.name) => source.name.clone(),
        None => {
            return Err(
                "no address (give it ansible_host or HostName; a bare name is not resolved here)"
                    .into(),
            );
        }
    };
    let port = match &source.port {
        None => 22,
        Some(p) => p
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("port {p:?} is not a port number"))?,
    };
    let user = source
        .user
        .clone()
        .or_else(|| args.user.clone())
        .ok_or("no user (give it ansible_user or User, or pass --user)")?;
    let key_file = match (&source.key_file, &args.key) {
        (Some(file), _) => expand_home(file),
        (None, Some(file)) => file.clone(),
        (None, None) => {
            return Err(
                "no key file (give it ansible_ssh_private_key_file or IdentityFile, or pass --key)"
                    .into(),
            );
        }
    };
    let private_key = std::fs::read_to_string(&key_file)
        .map_err(|e| format!("cannot read key file {}: {e}", key_file.display()))?;
    if !private_key.contains("PRIVATE KEY-----") {
        return Err(format!("{} is not a private key file", key_file.display()));
    }
    let mut tags = source.tags.clone();
    tags.extend(args.tags.iter().cloned());
    for tag in &tags {
        Tag::new(tag).map_err(|e| e.message)?;
    }
    let known_host = known_hosts.and_then(|text| cronium_ssh::find_known_host(text, &host, port));
    Ok(Planned {
        name: source.name.clone(),
        host,
        port,
        user,
        key_file,
        private_key,
        tags,
        known_host,
    })
}

/// A host and the file it came from.
type Sourced = (String, SourceHost);
/// A host left out: its name and why.
type Refused = (String, String);

/// Drops every host whose name another host of the import also has: which
/// one was meant cannot be told, so neither is created.
pub fn without_duplicates(hosts: Vec<Sourced>) -> (Vec<Sourced>, Vec<Refused>) {
    let mut sources: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, host) in &hosts {
        sources.entry(&host.name).or_default().push(from);
    }
    let duplicated: BTreeMap<String, String> = sources
        .into_iter()
        .filter(|(_, from)| from.len() > 1)
        .map(|(name, from)| (name.to_string(), from.join(", ")))
        .collect();
    let mut errors: Vec<Refused> = Vec::new();
    let mut kept = Vec::new();
    for (from, host) in hosts {
        match duplicated.get(&host.name) {
            // Reported once per name.
            Some(_) if errors.iter().any(|(name, _)| *name == host.name) => {}
            Some(all) => errors.push((
                host.name.clone(),
                format!("duplicate server name (in {all}); none of them imported"),
            )),
            None => kept.push((from, host)),
        }
    }
    (kept, errors)
}

/// What changes on an existing server, by API field name (the key cannot
/// be compared here: the API never returns it).
fn visible_changes(planned: &Planned, existing: &Value) -> Vec<&'static str> {
    let existing_tags: BTreeSet<String> = existing["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_string))
        .collect();
    let mut changes = Vec::new();
    if existing["host"] != json!(planned.host) {
        changes.push("host");
    }
    if existing["port"] != json!(planned.port) {
        changes.push("port");
    }
    if existing["username"] != json!(planned.user) {
        changes.push("username");
    }
    if !planned.tags.is_subset(&existing_tags) {
        changes.push("tags");
    }
    if let Some(line) = &planned.known_host
        && existing["knownHost"] != json!(line)
    {
        changes.push("knownHost");
    }
    changes
}

fn body(planned: &Planned, existing: Option<&Value>) -> Value {
    let mut tags = planned.tags.clone();
    if let Some(existing) = existing {
        tags.extend(
            existing["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str().map(str::to_string)),
        );
    }
    let mut body = json!({
        "host": planned.host,
        "port": planned.port,
        "username": planned.user,
        "privateKey": planned.private_key,
        "tags": tags,
    });
    if existing.is_none() {
        body["name"] = json!(planned.name);
    }
    if let Some(line) = &planned.known_host {
        body["knownHost"] = json!(line);
    }
    body
}

fn describe(p: &Planned) -> String {
    let tags = if p.tags.is_empty() {
        String::new()
    } else {
        format!(
            ", tags {}",
            p.tags.iter().cloned().collect::<Vec<_>>().join(",")
        )
    };
    let pin = if p.known_host.is_some() {
        ", host key pinned"
    } else {
        ""
    };
    format!("{}@{}:{}{tags}{pin}", p.user, p.host, p.port)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Runs the import; exits 1 when any host was left out.
pub fn run(client: &Client, args: &ImportArgs, out: &mut dyn Write) -> Result<u8> {
    if args.ansible.is_empty() && args.ssh_config.is_empty() {
        anyhow::bail!("nothing to import: give --ansible FILE or --ssh-config FILE");
    }
    for tag in &args.tags {
        Tag::new(tag).map_err(|e| anyhow::anyhow!("--tag {tag}: {}", e.message))?;
    }
    let mut sourced: Vec<Sourced> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut add = |path: &Path, parsed: Parsed| {
        let from = path.display().to_string();
        notes.extend(parsed.notes.into_iter().map(|n| format!("{from}: {n}")));
        sourced.extend(parsed.hosts.into_iter().map(|h| (from.clone(), h)));
    };
    for path in &args.ansible {
        let parsed = inventory::parse(&read(path)?)
            .with_context(|| format!("cannot import {}", path.display()))?;
        add(path, parsed);
    }
    for path in &args.ssh_config {
        add(path, ssh_config::parse(&read(path)?));
    }
    let known_hosts = args.known_hosts.as_deref().map(read).transpose()?;
    let (sourced, mut errors) = without_duplicates(sourced);
    let mut planned = Vec::new();
    for (_, source) in &sourced {
        match plan(source, args, known_hosts.as_deref()) {
            Ok(p) => planned.push(p),
            Err(why) => errors.push((source.name.clone(), why)),
        }
    }
    for note in &notes {
        writeln!(out, "note: {note}")?;
    }
    let existing: BTreeMap<String, Value> = client
        .get("/servers")?
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s["name"].as_str()?.to_string(), s.clone())))
        .collect();
    let (mut created, mut updated, mut unchanged) = (0, 0, 0);
    for p in &planned {
        let current = existing.get(&p.name);
        let verb = match (current, args.dry_run) {
            (None, true) => "would create",
            (None, false) => {
                client.post("/servers", &body(p, None))?;
                "created"
            }
            (Some(current), true) => {
                let changes = visible_changes(p, current);
                if changes.is_empty() {
                    "unchanged (the key is not compared in a dry run)"
                } else {
                    writeln!(out, "would update {} ({})", p.name, changes.join(", "))?;
                    updated += 1;
                    continue;
                }
            }
            (Some(current), false) => {
                let id = current["id"].as_i64().unwrap_or_default();
                let after = client.patch(&format!("/servers/{id}"), &body(p, Some(current)))?;
                if after["updatedAt"] == current["updatedAt"] {
                    "unchanged"
                } else {
                    "updated"
                }
            }
        };
        match verb {
            "created" | "would create" => created += 1,
            "updated" => updated += 1,
            _ => unchanged += 1,
        }
        writeln!(out, "{verb} {} ({})", p.name, describe(p))?;
    }
    for (name, why) in &errors {
        writeln!(out, "error: {name}: {why}")?;
    }
    let would = if args.dry_run { "would be " } else { "" };
    writeln!(
        out,
        "{created} {would}created, {updated} {would}updated, {unchanged} unchanged, {} not imported",
        errors.len()
    )?;
    Ok(if errors.is_empty() { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ImportArgs {
        ImportArgs {
            ansible: vec![],
            ssh_config: vec![],
            known_hosts: None,
            tags: vec!["imported".into()],
            user: None,
            key: None,
            dry_run: false,
        }
    }

    fn host(
        name: &str,
        address: Option<&str>,
        user: Option<&str>,
        key: Option<&str>,
    ) -> SourceHost {
        SourceHost {
            name: name.into(),
            address: address.map(String::from),
            port: None,
            user: user.map(String::from),
            key_file: key.map(String::from),
            tags: ["web".to_string()].into(),
        }
    }

    #[test]
    fn each_host_is_checked_before_anything_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id");
        std::fs::write(
            &key,
            "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----\n",
        )
        .unwrap();
        let not_key = dir.path().join("notes.txt");
        std::fs::write(&not_key, "hello").unwrap();
        let key = key.to_str().unwrap();
        let missing = dir.path().join("missing");
        let missing = missing.to_str().unwrap();
        let table: [(SourceHost, Result<&str, &str>); 8] = [
            (
                host("web1", Some("10.0.0.1"), Some("u"), Some(key)),
                Ok("u@10.0.0.1:22"),
            ),
            (
                host("web1.example.com", None, Some("u"), Some(key)),
                Ok("u@web1.example.com:22"),
            ),
            (host("web1", None, Some("u"), Some(key)), Err("no address")),
            (
                host("web1", Some(" "), Some("u"), Some(key)),
                Err("address is empty"),
            ),
            (
                host("web1", Some("h.example"), None, Some(key)),
                Err("no user"),
            ),
            (
                host("web1", Some("h.example"), Some("u"), None),
                Err("no key file"),
            ),
            (
                host("web1", Some("h.example"), Some("u"), Some(missing)),
                Err("cannot read key file"),
            ),
            (
                host("bad name", Some("h.example"), Some("u"), Some(key)),
                Err("invalid"),
            ),
        ];
        for (source, want) in table {
            let got = plan(&source, &args(), None);
            match (got, want) {
                (Ok(p), Ok(want)) => {
                    assert_eq!(format!("{}@{}:{}", p.user, p.host, p.port), want);
                    assert_eq!(p.tags, ["imported".to_string(), "web".to_string()].into());
                }
                (Err(e), Err(want)) => assert!(e.contains(want), "{}: {e}", source.name),
                (got, want) => panic!("{}: {got:?}, wanted {want:?}", source.name),
            }
        }
        let mut bad_port = host("p", Some("h.example"), Some("u"), Some(key));
        bad_port.port = Some("70000".into());
        assert!(
            plan(&bad_port, &args(), None)
                .unwrap_err()
                .contains("not a port")
        );
        let not_key = host(
            "k",
            Some("h.example"),
            Some("u"),
            Some(not_key.to_str().unwrap()),
        );
        assert!(
            plan(&not_key, &args(), None)
                .unwrap_err()
                .contains("not a private key")
        );
        let defaults = ImportArgs {
            user: Some("fallback".into()),
            key: Some(PathBuf::from(key)),
            ..args()
        };
        let p = plan(&host("d.example", None, None, None), &defaults, None).unwrap();
        assert_eq!(
            (p.user.as_str(), p.key_file.to_str().unwrap()),
            ("fallback", key)
        );
    }

    #[test]
    fn a_name_two_hosts_share_imports_neither() {
        let h = |name: &str| host(name, None, None, None);
        let (kept, errors) = without_duplicates(vec![
            ("a.ini".into(), h("web1")),
            ("b.conf".into(), h("web1")),
            ("a.ini".into(), h("db1")),
        ]);
        let kept: Vec<_> = kept.iter().map(|(_, h)| h.name.as_str()).collect();
        assert_eq!(kept, ["db1"]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0]
                .1
                .contains("duplicate server name (in a.ini, b.conf)")
        );
    }
}

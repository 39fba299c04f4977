//! Ansible inventories (INI and YAML) read into the hosts `cronium server import` creates.
//!
//! Only what a server needs is read: `ansible_host`, `ansible_port`,
//! `ansible_user` and `ansible_ssh_private_key_file` (and their older
//! `ansible_ssh_*` spellings), from host lines and from group `vars`, which
//! apply to the group's hosts and its children's. Every group a host is in,
//! directly or through `children`, becomes one of its tags (`all` and
//! `ungrouped` excepted). Precedence is Ansible's: `all`'s vars, then groups
//! from parent to child (by depth, then name), then the host's own.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, anyhow, bail};
use serde_json::Value;

/// One host as a source describes it; missing fields are filled from the
/// command's defaults, or the host is reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceHost {
    pub name: String,
    pub address: Option<String>,
    pub port: Option<String>,
    pub user: Option<String>,
    pub key_file: Option<String>,
    pub tags: BTreeSet<String>,
}

/// What a source held: its hosts in the order they first appear, and notes
/// on what was skipped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub hosts: Vec<SourceHost>,
    pub notes: Vec<String>,
}

type Vars = BTreeMap<String, String>;

#[derive(Debug, Default)]
struct Group {
    hosts: BTreeSet<String>,
    children: BTreeSet<String>,
    vars: Vars,
}

/// Groups, host vars and host order, whichever syntax they came from.
#[derive(Debug, Default)]
struct Inventory {
    groups: BTreeMap<String, Group>,
    host_vars: BTreeMap<String, Vars>,
    order: Vec<String>,
    notes: Vec<String>,
}

impl Inventory {
    fn group(&mut self, name: &str) -> &mut Group {
        self.groups.entry(name.to_string()).or_default()
    }

    fn add_host(&mut self, group: &str, host: &str, vars: Vars) {
        if !self.host_vars.contains_key(host) {
            self.order.push(host.to_string());
        }
        self.host_vars
            .entry(host.to_string())
            .or_default()
            .extend(vars);
        self.group(group).hosts.insert(host.to_string());
    }

    /// Each group's parents (`all` for a group nobody lists as a child).
    fn parents(&self) -> BTreeMap<&str, BTreeSet<&str>> {
        let mut parents: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (name, group) in &self.groups {
            for child in &group.children {
                parents.entry(child.as_str()).or_default().insert(name);
            }
        }
        for name in self.groups.keys() {
            if name != "all" {
                parents.entry(name).or_default();
            }
        }
        for set in parents.values_mut() {
            if set.is_empty() {
                set.insert("all");
            }
        }
        parents
    }

    fn resolve(self) -> Parsed {
        let parents = self.parents();
        let mut depth_of: BTreeMap<&str, usize> = BTreeMap::new();
        for name in self.groups.keys() {
            depth(name, &parents, &mut depth_of, &mut BTreeSet::new());
        }
        let mut hosts = Vec::new();
        for host in &self.order {
            // The host's groups, direct and inherited.
            let mut groups: BTreeSet<&str> = BTreeSet::new();
            let mut todo: Vec<&str> = self
                .groups
                .iter()
                .filter(|(_, g)| g.hosts.contains(host))
                .map(|(n, _)| n.as_str())
                .collect();
            while let Some(g) = todo.pop() {
                if groups.insert(g) {
                    todo.extend(parents.get(g).into_iter().flatten().copied());
                }
            }
            let mut ordered: Vec<&str> = groups.iter().copied().collect();
            ordered.sort_by_key(|g| (depth_of.get(g).copied().unwrap_or(0), *g));
            let mut vars = Vars::new();
            for g in ordered {
                if let Some(group) = self.groups.get(g) {
                    vars.extend(group.vars.clone());
                }
            }
            vars.extend(self.host_vars.get(host).cloned().unwrap_or_default());
            let var = |names: &[&str]| names.iter().find_map(|n| vars.get(*n).cloned());
            hosts.push(SourceHost {
                name: host.clone(),
                address: var(&["ansible_host", "ansible_ssh_host"]),
                port: var(&["ansible_port", "ansible_ssh_port"]),
                user: var(&["ansible_user", "ansible_ssh_user"]),
                key_file: var(&["ansible_ssh_private_key_file", "ansible_private_key_file"]),
                tags: groups
                    .into_iter()
                    .filter(|g| !["all", "ungrouped"].contains(g))
                    .map(str::to_string)
                    .collect(),
            });
        }
        Parsed {
            hosts,
            notes: self.notes,
        }
    }
}

/// A group's depth below `all` (the longest path; cycles count once).
fn depth<'a>(
    name: &'a str,
    parents: &BTreeMap<&'a str, BTreeSet<&'a str>>,
    memo: &mut BTreeMap<&'a str, usize>,
    seen: &mut BTreeSet<&'a str>,
) -> usize {
    if name == "all" {
        return 0;
    }
    if let Some(d) = memo.get(name) {
        return *d;
    }
    if !seen.insert(name) {
        return 0;
    }
    let d = 1 + parents
        .get(name)
        .into_iter()
        .flatten()
        .map(|p| depth(p, parents, memo, seen))
        .max()
        .unwrap_or(0);
    memo.insert(name, d);
    d
}

/// Strips one pair of matching quotes.
fn unquote(value: &str) -> String {
    let v = value.trim();
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner.to_string();
        }
    }
    v.to_string()
}

/// Splits `a=1 b="x y"` into words, keeping quoted spaces.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                word.push(c);
            }
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                word.push(c);
            }
            (None, c) if c.is_whitespace() => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            (None, '#') if word.is_empty() => break,
            (None, c) => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

fn key_value(word: &str) -> Option<(String, String)> {
    let (k, v) = word.split_once('=')?;
    Some((k.trim().to_string(), unquote(v)))
}

/// Whether a host name is a pattern (`web[01:03]`) rather than one host.
fn is_range(host: &str) -> bool {
    host.contains('[') && host.contains(']')
}

/// Reads an INI inventory: `[group]` host lines with inline vars,
/// `[group:children]` group names, `[group:vars]` `key=value` lines; host
/// lines before any section are ungrouped.
pub fn parse_ini(text: &str) -> Result<Parsed> {
    enum Section {
        Hosts(String),
        Children(String),
        Vars(String),
    }
    let mut inv = Inventory::default();
    let mut section = Section::Hosts("ungrouped".into());
    for (number, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let header = header
                .split_once(']')
                .map(|(h, _)| h.trim())
                .ok_or_else(|| anyhow!("line {}: unclosed section header", number + 1))?;
            section = match header.split_once(':') {
                None => Section::Hosts(header.to_string()),
                Some((g, "children")) => Section::Children(g.to_string()),
                Some((g, "vars")) => Section::Vars(g.to_string()),
                Some((_, kind)) => bail!("line {}: unknown section kind {kind:?}", number + 1),
            };
            let name = match &section {
                Section::Hosts(g) | Section::Children(g) | Section::Vars(g) => g.clone(),
            };
            inv.group(&name);
            continue;
        }
        match &section {
            Section::Hosts(group) => {
                let mut parts = words(line).into_iter();
                let Some(host) = parts.next() else { continue };
                if is_range(&host) {
                    inv.notes.push(format!(
                        "skipped host pattern {host:?} (ranges are not expanded; list the hosts)"
                    ));
                    continue;
                }
                let mut vars: Vars = parts.filter_map(|w| key_value(&w)).collect();
                // `name:port`, INI's own way of giving a port (one colon:
                // more would be an IPv6 address).
                let host = match host.split_once(':') {
                    Some((name, port)) if !port.contains(':') && port.parse::<u16>().is_ok() => {
                        vars.entry("ansible_port".into()).or_insert(port.into());
                        name.to_string()
                    }
                    _ => host,
                };
                let group = group.clone();
                inv.add_host(&group, &host, vars);
            }
            Section::Children(group) => {
                let child = line
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                inv.group(&child);
                inv.group(group).children.insert(child);
            }
            Section::Vars(group) => {
                let (k, v) = key_value(line)
                    .ok_or_else(|| anyhow!("line {}: expected key=value", number + 1))?;
                inv.group(group).vars.insert(k, v);
            }
        }
    }
    Ok(inv.resolve())
}

/// A YAML scalar as Ansible would read it into a string.
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn vars_of(value: &Value) -> Vars {
    value
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), scalar(v)?)))
        .collect()
}

fn yaml_group(inv: &mut Inventory, name: &str, body: &Value) -> Result<()> {
    inv.group(name);
    if body.is_null() {
        return Ok(());
    }
    let Some(map) = body.as_object() else {
        bail!("group {name:?}: expected a mapping of hosts, vars and children");
    };
    // Hosts before children, so a group's own hosts come first; within a
    // mapping, hosts and groups come by name.
    for key in map.keys() {
        if !["hosts", "vars", "children"].contains(&key.as_str()) {
            inv.notes
                .push(format!("group {name:?}: ignored key {key:?}"));
        }
    }
    if let Some(hosts) = map.get("hosts") {
        for (host, vars) in hosts.as_object().into_iter().flatten() {
            if is_range(host) {
                inv.notes.push(format!(
                    "skipped host pattern {host:?} (ranges are not expanded; list the hosts)"
                ));
                continue;
            }
            inv.add_host(name, host, vars_of(vars));
        }
    }
    if let Some(vars) = map.get("vars") {
        let vars = vars_of(vars);
        inv.group(name).vars.extend(vars);
    }
    if let Some(children) = map.get("children") {
        for (child, body) in children.as_object().into_iter().flatten() {
            inv.group(name).children.insert(child.clone());
            yaml_group(inv, child, body)?;
        }
    }
    Ok(())
}

/// Reads a YAML inventory: top-level groups (usually `all`), each with
/// `hosts` (name → vars), `vars` and `children` (name → group).
pub fn parse_yaml(text: &str) -> Result<Parsed> {
    let doc: Value =
        serde_saphyr::from_str(text).map_err(|e| anyhow!("not a YAML inventory: {e}"))?;
    let mut inv = Inventory::default();
    match &doc {
        Value::Object(groups) => {
            for (name, body) in groups {
                yaml_group(&mut inv, name, body)?;
            }
        }
        Value::Null => {}
        _ => bail!("not a YAML inventory: expected a mapping of groups at the top"),
    }
    Ok(inv.resolve())
}

/// Reads an inventory in either syntax: YAML when it starts like YAML
/// (a `key:` line, `---`), else INI.
pub fn parse(text: &str) -> Result<Parsed> {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'));
    match first {
        Some(l)
            if l == "---" || l.starts_with("- ") || (l.ends_with(':') && !l.starts_with('[')) =>
        {
            parse_yaml(text)
        }
        _ => parse_ini(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each host as `[name, address, port, user, key, tags]`, `-` for none.
    fn rows(parsed: &Parsed) -> Vec<[String; 6]> {
        fn o(v: &Option<String>) -> String {
            v.clone().unwrap_or_else(|| "-".into())
        }
        parsed
            .hosts
            .iter()
            .map(|h| {
                [
                    h.name.clone(),
                    o(&h.address),
                    o(&h.port),
                    o(&h.user),
                    o(&h.key_file),
                    h.tags.iter().cloned().collect::<Vec<_>>().join(","),
                ]
            })
            .collect()
    }

    fn owned(table: &[[&str; 6]]) -> Vec<[String; 6]> {
        table.iter().map(|row| row.map(String::from)).collect()
    }

    const INI: &str = r#"
# ungrouped first
bastion ansible_host=203.0.113.9 ansible_user=ops

[web]
web1 ansible_host=10.0.0.1
web2 ansible_host="10.0.0.2" ansible_port=2222 ansible_user='www admin'
web[03:05].example.com

[db]
db1 ansible_host=10.0.1.1 ansible_ssh_private_key_file=~/.ssh/db
db2.example.com:5309

[prod:children]
web
db

[eu:children]
prod

[prod:vars]
ansible_user=deploy
ansible_ssh_private_key_file=~/.ssh/prod

[eu:vars]
ansible_user=eu-user
ansible_port=2200

[all:vars]
ansible_port=22
"#;

    #[test]
    fn ini_groups_children_and_vars() {
        let parsed = parse(INI).unwrap();
        let want = [
            ["bastion", "203.0.113.9", "22", "ops", "-", ""],
            [
                "web1",
                "10.0.0.1",
                "2200",
                "deploy",
                "~/.ssh/prod",
                "eu,prod,web",
            ],
            [
                "web2",
                "10.0.0.2",
                "2222",
                "www admin",
                "~/.ssh/prod",
                "eu,prod,web",
            ],
            [
                "db1",
                "10.0.1.1",
                "2200",
                "deploy",
                "~/.ssh/db",
                "db,eu,prod",
            ],
            [
                "db2.example.com",
                "-",
                "5309",
                "deploy",
                "~/.ssh/prod",
                "db,eu,prod",
            ],
        ];
        assert_eq!(rows(&parsed), owned(&want));
        assert_eq!(parsed.notes.len(), 1);
        assert!(parsed.notes[0].contains("web[03:05]"), "{:?}", parsed.notes);
    }

    const YAML: &str = r#"
all:
  vars:
    ansible_user: root
  hosts:
    lone.example.com:
  children:
    web:
      hosts:
        web1:
          ansible_host: 10.0.0.1
        web2:
          ansible_host: 10.0.0.2
          ansible_port: 2222
      vars:
        ansible_user: deploy
    prod:
      children:
        web:
        db:
          hosts:
            db1:
              ansible_host: 10.0.1.1
              ansible_ssh_private_key_file: /keys/db
      vars:
        ansible_ssh_private_key_file: /keys/prod
        ansible_user: prod-user
"#;

    #[test]
    fn yaml_nesting_merges_groups_met_twice() {
        let parsed = parse(YAML).unwrap();
        let want = [
            ["lone.example.com", "-", "-", "root", "-", ""],
            ["db1", "10.0.1.1", "-", "prod-user", "/keys/db", "db,prod"],
            ["web1", "10.0.0.1", "-", "deploy", "/keys/prod", "prod,web"],
            [
                "web2",
                "10.0.0.2",
                "2222",
                "deploy",
                "/keys/prod",
                "prod,web",
            ],
        ];
        assert_eq!(rows(&parsed), owned(&want));
        assert!(parsed.notes.is_empty());
    }

    #[test]
    fn bad_inventories_say_where() {
        for (text, want) in [
            ("[web\nhost", "unclosed section"),
            ("[web:nonsense]\n", "unknown section kind"),
            ("[web:vars]\njust words\n", "expected key=value"),
            ("all:\n  - a\n  - b\n", "expected a mapping"),
            ("- a\n", "not a YAML inventory"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        assert_eq!(parse("").unwrap(), Parsed::default());
    }
}

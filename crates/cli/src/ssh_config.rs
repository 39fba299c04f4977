//! `~/.ssh/config` `Host` entries read into the hosts `cronium server import` creates.
//!
//! Each concrete alias of a `Host` line is a host; its `HostName`, `Port`,
//! `User` and `IdentityFile` are found as ssh finds them: every block whose
//! patterns match the alias (wildcards `*` and `?`, negation `!`) is read in
//! file order and the first value obtained for a keyword wins, so `Host *`
//! defaults at the end fill in what the host's own block left out. Patterns
//! with wildcards are not hosts and are skipped with a note; so are `Match`
//! blocks and `Include` lines, which this reader does not follow.

use std::collections::BTreeMap;

use crate::inventory::{Parsed, SourceHost};

/// The keywords read (lower case, as ssh compares them).
const KEYWORDS: [&str; 4] = ["hostname", "port", "user", "identityfile"];

struct Block {
    patterns: Vec<String>,
    /// `None` for a `Match` block: never applied.
    matchable: bool,
    options: Vec<(String, String)>,
}

/// Whether `text` matches the glob `pattern` (`*` any run, `?` one character).
fn glob(pattern: &[char], text: &[char]) -> bool {
    match (pattern.first(), text.first()) {
        (None, None) => true,
        (Some('*'), _) => {
            glob(&pattern[1..], text) || (!text.is_empty() && glob(pattern, &text[1..]))
        }
        (Some('?'), Some(_)) => glob(&pattern[1..], &text[1..]),
        (Some(p), Some(t)) if p.eq_ignore_ascii_case(t) => glob(&pattern[1..], &text[1..]),
        _ => false,
    }
}

fn matches(block: &Block, alias: &str) -> bool {
    if !block.matchable {
        return false;
    }
    let text: Vec<char> = alias.chars().collect();
    let mut any = false;
    for pattern in &block.patterns {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern.as_str()),
        };
        let chars: Vec<char> = pattern.chars().collect();
        if glob(&chars, &text) {
            if negated {
                return false;
            }
            any = true;
        }
    }
    any
}

fn is_pattern(alias: &str) -> bool {
    alias.contains(['*', '?', '!'])
}

/// Splits `Keyword value`, `Keyword=value` and `Keyword = "value"`.
fn keyword_line(line: &str) -> Option<(String, String)> {
    let split = line.find(|c: char| c.is_whitespace() || c == '=')?;
    let (keyword, rest) = line.split_at(split);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim();
    Some((keyword.to_ascii_lowercase(), rest.to_string()))
}

/// Splits a `Host` line's patterns, honouring double quotes.
fn patterns(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in value.chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

fn unquote(value: &str) -> String {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
        .to_string()
}

/// Reads an ssh client configuration.
pub fn parse(text: &str) -> Parsed {
    let mut notes = Vec::new();
    // Options before the first Host line apply to every host.
    let mut blocks = vec![Block {
        patterns: vec!["*".into()],
        matchable: true,
        options: Vec::new(),
    }];
    for (number, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((keyword, value)) = keyword_line(line) else {
            continue;
        };
        match keyword.as_str() {
            "host" => blocks.push(Block {
                patterns: patterns(&value),
                matchable: true,
                options: Vec::new(),
            }),
            "match" => {
                notes.push(format!(
                    "line {}: skipped the Match block ({value}): only Host entries are imported",
                    number + 1
                ));
                blocks.push(Block {
                    patterns: Vec::new(),
                    matchable: false,
                    options: Vec::new(),
                });
            }
            "include" => notes.push(format!(
                "line {}: did not follow Include {value}: import that file by itself",
                number + 1
            )),
            k if KEYWORDS.contains(&k) => {
                if let Some(block) = blocks.last_mut() {
                    block.options.push((keyword, unquote(&value)));
                }
            }
            _ => {}
        }
    }
    let mut aliases: Vec<String> = Vec::new();
    for block in blocks.iter().skip(1).filter(|b| b.matchable) {
        for pattern in &block.patterns {
            if is_pattern(pattern) {
                if pattern != "*" || block.patterns.len() > 1 {
                    notes.push(format!(
                        "skipped wildcard host {pattern:?} (its settings still apply to the hosts it matches)"
                    ));
                }
            } else if !aliases.contains(pattern) {
                aliases.push(pattern.clone());
            }
        }
    }
    let hosts = aliases
        .into_iter()
        .map(|alias| {
            let mut found: BTreeMap<String, String> = BTreeMap::new();
            for block in blocks.iter().filter(|b| matches(b, &alias)) {
                for (k, v) in &block.options {
                    found.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            SourceHost {
                address: found.remove("hostname"),
                port: found.remove("port"),
                user: found.remove("user"),
                key_file: found.remove("identityfile"),
                name: alias,
                tags: Default::default(),
            }
        })
        .collect();
    Parsed { hosts, notes }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
# defaults before any Host apply to all
User everyone

Host web1 web1.alias
    HostName 10.0.0.1
    Port 2222

Host db
  Hostname=10.0.1.1
  IdentityFile "~/.ssh/db key"
  IdentityFile ~/.ssh/second

Host *.internal !secret.internal
    User internal

Host app.internal secret.internal
    HostName 10.0.2.1

Match host foo exec "true"
    User matched

Host web?
    Port 2200

Host *
    User fallback
    IdentityFile ~/.ssh/id_ed25519
    Port 22
"#;

    #[test]
    fn first_obtained_value_wins_across_matching_blocks() {
        let parsed = parse(CONFIG);
        fn o(v: &Option<String>) -> &str {
            v.as_deref().unwrap_or("-")
        }
        let rows: Vec<[&str; 5]> = parsed
            .hosts
            .iter()
            .map(|h| {
                [
                    h.name.as_str(),
                    o(&h.address),
                    o(&h.port),
                    o(&h.user),
                    o(&h.key_file),
                ]
            })
            .collect();
        let table: [[&str; 5]; 5] = [
            ["web1", "10.0.0.1", "2222", "everyone", "~/.ssh/id_ed25519"],
            [
                "web1.alias",
                "10.0.0.1",
                "2222",
                "everyone",
                "~/.ssh/id_ed25519",
            ],
            ["db", "10.0.1.1", "22", "everyone", "~/.ssh/db key"],
            [
                "app.internal",
                "10.0.2.1",
                "22",
                "everyone",
                "~/.ssh/id_ed25519",
            ],
            [
                "secret.internal",
                "10.0.2.1",
                "22",
                "everyone",
                "~/.ssh/id_ed25519",
            ],
        ];
        assert_eq!(rows, table);
        let notes = parsed.notes.join("\n");
        for want in [
            "Match block",
            "\"*.internal\"",
            "\"!secret.internal\"",
            "\"web?\"",
        ] {
            assert!(notes.contains(want), "{want} in {notes}");
        }
    }

    #[test]
    fn without_global_defaults_later_blocks_fill_in() {
        let parsed = parse("Host a\n HostName h\nHost a b\n User u\n Port 1\nInclude other\n");
        let names: Vec<_> = parsed.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(parsed.hosts[0].user.as_deref(), Some("u"));
        assert_eq!(parsed.hosts[1].address, None);
        assert!(parsed.notes[0].contains("Include other"));
        assert!(glob(&['a', '*', 'c'], &['a', 'b', 'b', 'c']));
        assert!(!glob(&['a', '?'], &['a']));
    }
}

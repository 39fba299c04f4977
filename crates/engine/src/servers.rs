//! A server's record turned into what the SSH executor needs: its credentials opened, its host key pin read, its cache directory laid out.

use std::collections::BTreeSet;

use cronium_core::{EventSpec, Tag};
use cronium_exec::remote::{CacheLayout, RemoteServer};
use cronium_ssh::{HostKeyPin, Target};
use cronium_store::Server;
use serde_json::{Value, json};

use crate::secrets::Sealer;

/// Opens the record's sealed credentials and reads its pin. The error is a
/// sentence for a user (which server, what is wrong).
pub fn open_server(server: &Server, sealer: &Sealer) -> Result<RemoteServer, String> {
    let spec = &server.spec;
    let credentials = sealer
        .open_credentials(&spec.sealed_credentials)
        .map_err(|e| format!("cannot open the credentials of server {}: {e}", spec.name))?;
    let pin = spec
        .known_host
        .as_deref()
        .map(HostKeyPin::parse)
        .transpose()
        .map_err(|e| format!("server {}: {e}", spec.name))?;
    Ok(RemoteServer {
        id: server.id,
        name: spec.name.clone(),
        target: Target::new(spec.host.clone(), spec.port, spec.username.clone()),
        credentials,
        pin,
        cache: CacheLayout::new(spec.effective_cache_dir()),
    })
}

/// One server a job runs on, and the event's tags that chose it (empty when
/// the event names the server itself).
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub server: Server,
    pub via: BTreeSet<Tag>,
}

impl Resolved {
    /// As the job's `metadata.resolvedTargets` lists it.
    pub fn to_json(&self) -> Value {
        json!({
            "server": self.server.spec.name.as_str(),
            "serverId": self.server.id.0,
            "tags": self.via.iter().map(Tag::as_str).collect::<Vec<_>>(),
        })
    }
}

/// The servers a job of `spec` runs on, from `servers` as they are now: the
/// ones it names, in its order, then every other server holding any of its
/// tags, by name (`servers` is sorted by name). Tags are resolved here, when
/// a job starts, so a server tagged later is included and an untagged one is
/// not. The error is a sentence for the job's log: a named server that is
/// gone, or a tag that matches no server (the event most likely names a tag
/// nobody uses any more, and running on fewer servers than meant would hide
/// it).
pub fn resolve_targets(spec: &EventSpec, servers: &[Server]) -> Result<Vec<Resolved>, String> {
    let mut resolved: Vec<Resolved> = Vec::new();
    for id in &spec.target_servers {
        let server = servers
            .iter()
            .find(|s| s.id == *id)
            .ok_or_else(|| format!("server {} no longer exists", id.0))?;
        resolved.push(Resolved {
            server: server.clone(),
            via: BTreeSet::new(),
        });
    }
    for tag in &spec.target_tags {
        let mut matched = false;
        for server in servers.iter().filter(|s| s.spec.tags.contains(tag)) {
            matched = true;
            match resolved.iter_mut().find(|r| r.server.id == server.id) {
                Some(r) if !spec.target_servers.contains(&server.id) => {
                    r.via.insert(tag.clone());
                }
                Some(_) => {}
                None => resolved.push(Resolved {
                    server: server.clone(),
                    via: [tag.clone()].into(),
                }),
            }
        }
        if !matched {
            return Err(format!("tag {:?} matches no server", tag.as_str()));
        }
    }
    let named = spec.target_servers.len();
    resolved[named..].sort_by(|a, b| a.server.spec.name.cmp(&b.server.spec.name));
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cronium_core::{AuthKind, RunLocation, ServerId, ServerName, ServerSpec};

    fn server(id: i64, name: &str, tags: &[&str]) -> Server {
        Server {
            id: ServerId(id),
            spec: ServerSpec {
                name: ServerName::new(name).unwrap(),
                host: "127.0.0.1".into(),
                port: 22,
                username: "u".into(),
                auth_kind: AuthKind::Key,
                sealed_credentials: vec![1],
                known_host: None,
                cache_dir: None,
                tags: tags.iter().map(|t| Tag::new(t).unwrap()).collect(),
            },
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
            last_check: None,
        }
    }

    fn event(servers: &[i64], tags: &[&str]) -> EventSpec {
        EventSpec {
            name: cronium_core::EventName::new("deploy").unwrap(),
            description: String::new(),
            kind: cronium_core::EventKind::Script,
            interpreter: Some(cronium_payload::Interpreter::Bash),
            content: "true\n".into(),
            env: Default::default(),
            secret_env: Default::default(),
            schedule: cronium_core::Schedule::Manual,
            status: cronium_core::EventStatus::Active,
            run_location: RunLocation::Remote,
            target_servers: servers.iter().map(|&id| ServerId(id)).collect(),
            target_tags: tags.iter().map(|t| Tag::new(t).unwrap()).collect(),
            timeout: std::time::Duration::from_secs(60),
            retries: 0,
            tags: BTreeSet::new(),
            policy: Default::default(),
            http: None,
        }
    }

    #[test]
    fn tags_and_named_servers_resolve_to_one_list() {
        // Sorted by name, as the store lists them.
        let all = [
            server(3, "db-1", &["db"]),
            server(1, "web-1", &["web", "eu"]),
            server(2, "web-2", &["web"]),
        ];
        type Want<'a> = Result<Vec<(&'a str, Vec<&'a str>)>, &'a str>;
        let table: [(&[i64], &[&str], Want); 6] = [
            (&[2], &[], Ok(vec![("web-2", vec![])])),
            (
                &[],
                &["web"],
                Ok(vec![("web-1", vec!["web"]), ("web-2", vec!["web"])]),
            ),
            (
                &[3],
                &["web", "eu"],
                Ok(vec![
                    ("db-1", vec![]),
                    ("web-1", vec!["eu", "web"]),
                    ("web-2", vec!["web"]),
                ]),
            ),
            // A named server is not listed twice, and stays named.
            (
                &[2],
                &["web"],
                Ok(vec![("web-2", vec![]), ("web-1", vec!["web"])]),
            ),
            (
                &[],
                &["web", "gone"],
                Err(r#"tag "gone" matches no server"#),
            ),
            (&[9], &["web"], Err("server 9 no longer exists")),
        ];
        for (servers, tags, want) in table {
            let got = resolve_targets(&event(servers, tags), &all).map(|list| {
                list.iter()
                    .map(|r| {
                        (
                            r.server.spec.name.as_str().to_string(),
                            r.via.iter().map(|t| t.as_str().to_string()).collect(),
                        )
                    })
                    .collect::<Vec<(String, Vec<String>)>>()
            });
            let want = want
                .map(|list| {
                    list.into_iter()
                        .map(|(n, v)| (n.to_string(), v.into_iter().map(String::from).collect()))
                        .collect::<Vec<_>>()
                })
                .map_err(String::from);
            assert_eq!(got, want, "{servers:?} {tags:?}");
        }
    }
}

//! Managing users: the commands run on the server's host (`cronium user passwd|add|list|role|remove`), straight against the database `cronium serve` uses, found the same way, so that setting the first password needs no API and no token; and the same actions from the settings page.
//!
//! The commands are the operator's tools on the machine itself: whoever can
//! run them can read the database anyway. What they do is audited with no
//! actor (the system) and says which command did it; what a page does
//! ([`perform`] with [`By::User`]) is audited with its user as actor.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use cronium_core::UserId;
use cronium_core::{Password, Role, UserName};
use cronium_engine::files;
use cronium_store::{Actor, AuditEntry, NewUser, Store, User};

use crate::{Config, Overrides, config, now, passwords};

/// What to do.
#[derive(Debug)]
pub enum UserAction {
    Passwd {
        name: String,
        password: Password,
    },
    Add {
        name: String,
        role: Role,
        password: Password,
    },
    List,
    Remove {
        name: String,
    },
    /// Changes a user's role (never the last admin's away from admin).
    Role {
        name: String,
        role: Role,
    },
}

/// Who does it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// `cronium user` on the server's host.
    Command,
    /// A signed-in user, from the settings page.
    User(UserId),
}

/// What it did.
#[derive(Debug)]
pub enum Outcome {
    /// One user was changed, added or removed.
    User(User),
    Users(Vec<User>),
}

/// Opens the configured database (creating the data dir and the SQLite
/// file, and `admin`, as a first `cronium serve` would), applying migrations.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>> {
    let url = match &config.database_url {
        Some(url) => url.clone(),
        None => {
            files::create_private_dir(&config.data_dir)
                .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
            let data_dir = config
                .data_dir
                .canonicalize()
                .with_context(|| format!("cannot resolve {}", config.data_dir.display()))?;
            config.database_url_for(&data_dir)
        }
    };
    let store = cronium_store::open(&url)
        .await
        .with_context(|| format!("cannot open database {}", config::redact_url(&url)))?;
    store
        .ensure_admin(now())
        .await
        .context("cannot create the admin user")?;
    Ok(store)
}

fn audit(by: By, action: &str, command: &str, detail: serde_json::Value) -> AuditEntry {
    let mut detail = detail;
    let via = match by {
        By::Command => format!("cronium user {command}"),
        By::User(_) => "settings page".to_string(),
    };
    if let serde_json::Value::Object(map) = &mut detail {
        map.insert("via".into(), via.into());
    }
    AuditEntry {
        at: now(),
        actor: match by {
            By::Command => None,
            By::User(id) => Some(Actor::User(id)),
        },
        action: action.into(),
        target_type: "user".into(),
        target_id: None,
        detail,
    }
}

async fn existing(store: &dyn Store, name: &str) -> Result<User> {
    match store.find_user(name).await? {
        Some(user) => Ok(user),
        None => bail!("there is no user named {name:?} (cronium user list shows them)"),
    }
}

/// Hashes off the async threads: argon2 takes tens of milliseconds on purpose.
async fn hash(password: Password) -> Result<cronium_core::PasswordHash> {
    tokio::task::spawn_blocking(move || passwords::hash(&password))
        .await
        .context("cannot hash the password")
}

/// Does `action` on `store`, as `cronium user` does.
pub async fn apply(store: &dyn Store, action: UserAction) -> Result<Outcome> {
    perform(store, action, By::Command).await
}

/// Does `action` on `store` for `by`. A user may not remove themselves
/// (the command has no self); a user's own password is audited as
/// `user.password`, anyone else's as `user.passwd`. The errors are the
/// store's (`Conflict`, `NotFound`) and `ValidationError`s, to be told
/// apart by `downcast_ref`.
pub async fn perform(store: &dyn Store, action: UserAction, by: By) -> Result<Outcome> {
    match action {
        UserAction::Passwd { name, password } => {
            let user = existing(store, &name).await?;
            let hash = hash(password).await?;
            let own = by == By::User(user.id);
            let action = if own { "user.password" } else { "user.passwd" };
            let entry = audit(by, action, "passwd", serde_json::json!({ "name": name }));
            Ok(Outcome::User(
                store.set_password(user.id, hash, &entry).await?,
            ))
        }
        UserAction::Add {
            name,
            role,
            password,
        } => {
            let name = UserName::new(&name)?;
            let hash = hash(password).await?;
            let entry = audit(
                by,
                "user.create",
                "add",
                serde_json::json!({ "name": name.as_str(), "role": role.as_str() }),
            );
            let new = NewUser {
                name,
                role,
                password_hash: Some(hash),
            };
            Ok(Outcome::User(store.create_user(new, now(), &entry).await?))
        }
        UserAction::List => Ok(Outcome::Users(store.list_users().await?)),
        UserAction::Remove { name } => {
            let user = existing(store, &name).await?;
            if by == By::User(user.id) {
                return Err(cronium_store::StoreError::Conflict {
                    field: "name".into(),
                    message: "you cannot remove yourself; another admin can".into(),
                }
                .into());
            }
            let entry = audit(
                by,
                "user.delete",
                "remove",
                serde_json::json!({ "name": name }),
            );
            Ok(Outcome::User(store.remove_user(user.id, &entry).await?))
        }
        UserAction::Role { name, role } => {
            let user = existing(store, &name).await?;
            let entry = audit(
                by,
                "user.role",
                "role",
                serde_json::json!({ "name": name, "from": user.role.as_str(), "role": role.as_str() }),
            );
            Ok(Outcome::User(
                store.set_role(user.id, role, now(), &entry).await?,
            ))
        }
    }
}

/// The whole of a `cronium user` command for a synchronous caller (the CLI):
/// resolves the configuration as `cronium serve` does, opens the database
/// and does `action`.
pub fn run_blocking(flags: Overrides, action: UserAction) -> Result<Outcome> {
    let config = Config::resolve(flags, &|name| std::env::var(name).ok())?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(async {
            let store = open_store(&config).await?;
            apply(store.as_ref(), action).await
        })
}

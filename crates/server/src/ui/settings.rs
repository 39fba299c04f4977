//! The settings page: the signed-in user's profile and password, and for admins the API tokens and the users.
//!
//! Every change goes through the code the rest of the server uses for it:
//! tokens through the API's `tokens::issue`/`withdraw`, users through
//! `crate::users::perform` (what `cronium user` runs), audited with the
//! signed-in user as actor. A form that cannot be done answers 422 with the
//! page, the error beside its field and what was typed kept (never a
//! password); one that worked goes back to the page (303), except for a new
//! token, whose secret is shown on the answering page once.

use askama::Template;
use askama_web::WebTemplate;
use axum::extract::{Extension, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cronium_core::{Password, Role, TokenId, UserId, ValidationError};
use cronium_store::{SessionUser, StoreError};
use serde::Deserialize;

use super::SignedIn;
use super::auth;
use super::pages::{Shell, time};
use crate::client::Client;
use crate::error::{ApiError, FormBody, PageError, PathParams, see_other};
use crate::state::AppState;
use crate::tokens::{Admin, Caller, Viewer};
use crate::users::{By, UserAction};

/// The one message for a wrong current password: counted like a failed
/// sign-in, and as uninformative.
pub const WRONG_PASSWORD: &str = "wrong password";

pub struct TokenRow {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub created: String,
    pub last_used: String,
    pub revoked: bool,
}

pub struct UserRow {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub created: String,
    pub has_password: bool,
    /// The signed-in user: no remove button.
    pub is_you: bool,
}

/// Errors of one form, by field.
#[derive(Debug, Default)]
pub struct Errors(Vec<(String, String)>);

impl Errors {
    fn one(field: impl Into<String>, message: impl Into<String>) -> Errors {
        Errors(vec![(field.into(), message.into())])
    }

    /// The message for `field`, if it has one.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }

    pub fn any(&self) -> bool {
        !self.0.is_empty()
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "settings.html")]
pub struct SettingsPage {
    pub shell: Shell,
    pub sessions: usize,
    pub session_ends: String,
    /// What the last form did, when it worked and stayed on this page.
    pub notice: Option<String>,
    /// The password form's errors.
    pub password_errors: Errors,
    /// API tokens, for an admin (who alone manages them).
    pub tokens: Vec<TokenRow>,
    /// A token just made: its name and its secret, shown this once.
    pub created: Option<(String, String)>,
    /// The token form's error, its field, and what was typed.
    pub error: Option<(String, String)>,
    pub name: String,
    /// Users, for an admin.
    pub users: Vec<UserRow>,
    /// The add-user form's errors and what was typed (not the password).
    pub new_user_errors: Errors,
    pub new_user_name: String,
    pub new_user_role: String,
    /// An error about one listed user (its id): a role or removal refused.
    pub user_error: Option<(i64, String)>,
}

impl SettingsPage {
    async fn load(
        state: &AppState,
        caller: &Caller,
        shell: Shell,
        found: &SessionUser,
    ) -> Result<SettingsPage, PageError> {
        let sessions = state.store.list_sessions(caller.user).await?.len();
        let (tokens, users) = if shell.is_admin() {
            let tokens = state
                .store
                .list_tokens()
                .await?
                .into_iter()
                .map(|t| TokenRow {
                    id: t.id.0,
                    name: t.name,
                    role: t.role.to_string(),
                    created: time(t.created_at),
                    last_used: t.last_used_at.map(time).unwrap_or_else(|| "never".into()),
                    revoked: t.revoked_at.is_some(),
                })
                .collect();
            let users = state
                .store
                .list_users()
                .await?
                .into_iter()
                .map(|u| UserRow {
                    id: u.id.0,
                    is_you: u.id == caller.user,
                    name: u.name,
                    role: u.role,
                    created: time(u.created_at),
                    has_password: u.has_password,
                })
                .collect();
            (tokens, users)
        } else {
            (Vec::new(), Vec::new())
        };
        Ok(SettingsPage {
            shell: shell.at("settings"),
            sessions,
            session_ends: time(found.session.expires_at),
            notice: None,
            password_errors: Errors::default(),
            tokens,
            created: None,
            error: None,
            name: String::new(),
            users,
            new_user_errors: Errors::default(),
            new_user_name: String::new(),
            new_user_role: "viewer".into(),
            user_error: None,
        })
    }

    /// The refusal to show beside the listed user `id`, if any.
    pub fn user_error_for(&self, id: i64) -> Option<&str> {
        self.user_error
            .as_ref()
            .filter(|(user, _)| *user == id)
            .map(|(_, message)| message.as_str())
    }

    fn refused(self) -> Response {
        (StatusCode::UNPROCESSABLE_ENTITY, self).into_response()
    }
}

/// `GET /settings`: the signed-in user's profile and password, and an
/// admin's API tokens and users.
pub async fn settings(
    State(state): State<AppState>,
    Viewer(caller): Viewer,
    shell: Shell,
    Extension(SignedIn(found)): Extension<SignedIn>,
) -> Result<Response, PageError> {
    Ok(SettingsPage::load(&state, &caller, shell, &found)
        .await?
        .into_response())
}

/// The password form's fields. Not `Debug`: they are passwords.
#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    confirm: String,
}

/// `POST /settings/password`: changes the signed-in user's own password.
/// The current one must be given, and a wrong one counts against the
/// sign-in limits of this address and name (so this form cannot be used to
/// guess it faster than the sign-in form). The new password ends every
/// session of the user; this browser's continues under a new cookie.
pub async fn change_password(
    State(state): State<AppState>,
    Viewer(caller): Viewer,
    client: Client,
    shell: Shell,
    Extension(SignedIn(found)): Extension<SignedIn>,
    FormBody(form): FormBody<PasswordForm>,
) -> Result<Response, PageError> {
    let now = state.ui.clock.now();
    let name = found.user.name.clone();
    let keys = auth::throttle_keys(&client, &name);
    if let Some(wait) = state.ui.throttle.retry_after(&keys, now) {
        let seconds = wait.num_seconds().max(1);
        let minutes = (seconds + 59) / 60;
        tracing::warn!(address = %client.address(), "password change refused: too many failures");
        let mut page = SettingsPage::load(&state, &caller, shell, &found).await?;
        page.password_errors = Errors::one(
            "current",
            format!("too many wrong passwords; try again in {minutes} minute(s)"),
        );
        let mut response = (StatusCode::TOO_MANY_REQUESTS, page).into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        return Ok(response);
    }
    let refusal = if !auth::password_matches(&state, &name, form.current).await? {
        state.ui.throttle.fail(&keys, now);
        tracing::warn!(address = %client.address(), "wrong current password on the settings page");
        Some(Errors::one("current", WRONG_PASSWORD))
    } else {
        state.ui.throttle.reset(&keys);
        None
    };
    let checked = match refusal {
        Some(errors) => Err(errors),
        None if form.new != form.confirm => {
            Err(Errors::one("confirm", "does not match the new password"))
        }
        None => Password::new(form.new).map_err(|e| Errors::one("new", e.message)),
    };
    let password = match checked {
        Ok(password) => password,
        Err(errors) => {
            let mut page = SettingsPage::load(&state, &caller, shell, &found).await?;
            page.password_errors = errors;
            return Ok(page.refused());
        }
    };
    crate::users::perform(
        state.store.as_ref(),
        UserAction::Passwd {
            name: name.clone(),
            password,
        },
        By::User(caller.user),
    )
    .await
    .map_err(ApiError::internal)?;
    let cookie = auth::renew_session(&state, &client, &found, "password changed").await?;
    tracing::info!(user = %name, "changed own password");
    let mut page = SettingsPage::load(&state, &caller, shell, &found).await?;
    page.notice = Some("Password changed. Your other sessions are signed out.".into());
    let mut response = page.into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(response)
}

#[derive(Deserialize)]
pub struct TokenForm {
    name: Option<String>,
    role: Option<String>,
}

/// `POST /settings/tokens`: makes an API token and shows its secret on
/// the page it answers with, once; a bad name or role comes back beside
/// the form, with what was typed.
pub async fn create_token(
    State(state): State<AppState>,
    Admin(caller): Admin,
    shell: Shell,
    Extension(SignedIn(found)): Extension<SignedIn>,
    FormBody(form): FormBody<TokenForm>,
) -> Result<Response, PageError> {
    let issued =
        crate::api::tokens::issue(&state, &caller, form.name.as_deref(), form.role.as_deref())
            .await;
    let mut page = SettingsPage::load(&state, &caller, shell, &found).await?;
    match issued {
        Ok((token, secret)) => page.created = Some((token.name, secret.as_str().to_string())),
        Err(e) => match e.field.clone() {
            Some(field) => {
                page.error = Some((field, e.message));
                page.name = form.name.unwrap_or_default();
                return Ok(page.refused());
            }
            None => return Err(e.into()),
        },
    }
    Ok(page.into_response())
}

/// `POST /settings/tokens/{id}/revoke`.
pub async fn revoke_token(
    State(state): State<AppState>,
    Admin(caller): Admin,
    PathParams(id): PathParams<i64>,
) -> Result<Response, PageError> {
    crate::api::tokens::withdraw(&state, &caller, TokenId(id)).await?;
    Ok(see_other("/settings"))
}

/// The add-user form. Not `Debug`: it holds a password.
#[derive(Deserialize)]
pub struct NewUserForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    password: String,
}

/// What a failed user action says about which field: a validation error or
/// a conflict (a taken name, the last admin, yourself) names its field.
fn field_error(e: &anyhow::Error) -> Option<(String, String)> {
    if let Some(v) = e.downcast_ref::<ValidationError>() {
        return Some((v.field.clone(), v.message.clone()));
    }
    match e.downcast_ref::<StoreError>()? {
        StoreError::Conflict { field, message } => Some((field.clone(), message.clone())),
        StoreError::Invalid(v) => Some((v.field.clone(), v.message.clone())),
        _ => None,
    }
}

/// `POST /settings/users`: adds a user with a role and a first password.
pub async fn add_user(
    State(state): State<AppState>,
    Admin(caller): Admin,
    shell: Shell,
    Extension(SignedIn(found)): Extension<SignedIn>,
    FormBody(form): FormBody<NewUserForm>,
) -> Result<Response, PageError> {
    let name = form.name.trim().to_string();
    let checked = Role::parse(form.role.trim())
        .and_then(|role| Password::new(form.password).map(|password| (role, password)));
    let outcome = match checked {
        Ok((role, password)) => {
            let action = UserAction::Add {
                name: name.clone(),
                role,
                password,
            };
            crate::users::perform(state.store.as_ref(), action, By::User(caller.user))
                .await
                .map(|_| ())
        }
        Err(e) => Err(e.into()),
    };
    let Err(e) = outcome else {
        tracing::info!(user = %name, "added a user");
        return Ok(see_other("/settings#users"));
    };
    let Some((field, message)) = field_error(&e) else {
        return Err(ApiError::internal(format!("{e:#}")).into());
    };
    // The name's own rules call it "user"; on this form it is the name.
    let field = match field.as_str() {
        "role" | "password" => field,
        _ => "name".to_string(),
    };
    let mut page = SettingsPage::load(&state, &caller, shell, &found).await?;
    page.new_user_errors = Errors::one(field, message);
    page.new_user_name = name;
    page.new_user_role = form.role;
    Ok(page.refused())
}

#[derive(Debug, Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    role: String,
}

/// Does `action` (about the user `id`) for an admin; refused, the page
/// again with the reason beside that user.
async fn act_on_user(
    state: &AppState,
    caller: &Caller,
    shell: Shell,
    found: &SessionUser,
    id: i64,
    action: impl FnOnce(String) -> Result<UserAction, ValidationError>,
) -> Result<Response, PageError> {
    let user = state.store.get_user(UserId(id)).await?;
    let result = match action(user.name.clone()) {
        Ok(action) => crate::users::perform(state.store.as_ref(), action, By::User(caller.user))
            .await
            .map(|_| ()),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => Ok(see_other("/settings#users")),
        Err(e) => {
            let Some((_, message)) = field_error(&e) else {
                return Err(ApiError::internal(format!("{e:#}")).into());
            };
            let mut page = SettingsPage::load(state, caller, shell, found).await?;
            page.user_error = Some((id, message));
            Ok(page.refused())
        }
    }
}

/// `POST /settings/users/{id}/role`: gives a user another role (never
/// taking admin from the last admin; tokens above the new role are revoked).
pub async fn set_role(
    State(state): State<AppState>,
    Admin(caller): Admin,
    shell: Shell,
    Extension(SignedIn(found)): Extension<SignedIn>,
    PathParams(id): PathParams<i64>,
    FormBody(form): FormBody<RoleForm>,
) -> Result<Response, PageError> {
    act_on_user(&state, &caller, shell, &found, id, |name| {
        Ok(UserAction::Role {
            name,
            role: Role::parse(form.role.trim())?,
        })
    })
    .await
}

/// `POST /settings/users/{id}/remove`: removes a user with their tokens and
/// sessions (not yourself, never the last admin, not one owning events).
pub async fn remove_user(
    State(state): State<AppState>,
    Admin(caller): Admin,
    shell: Shell,
    Extension(SignedIn(found)): Extension<SignedIn>,
    PathParams(id): PathParams<i64>,
) -> Result<Response, PageError> {
    act_on_user(&state, &caller, shell, &found, id, |name| {
        Ok(UserAction::Remove { name })
    })
    .await
}

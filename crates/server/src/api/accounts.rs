//! Logging in and out, accounts and API credentials.
//!
//! - `GET /auth/login`: the login page (French, then English); `POST
//!   /auth/login` takes its form (double-submit anti-CSRF token) or JSON
//!   `{"username", "password"}` (a cross-site page cannot send JSON without
//!   a CORS preflight, which Vigie never grants).
//! - `POST /auth/logout`, `GET /auth/session` (who am I, and my anti-CSRF token).
//! - `/api/v1/users` and `/api/v1/api-keys` for administrators.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use vigie_core::Timestamp;
use vigie_core::access::{Action, Role, ScopeGrant};
use vigie_core::account::{Account, ApiCredential, CredentialKind, Session};
use vigie_core::entity::format_timestamp;

use vigie_core::audit::{AuditEvent, Outcome};

use super::{ApiError, AppState, JsonBody};
use crate::audit;
use crate::security::secrets::{random_token, same_secret};
use crate::security::{CSRF_HEADER, Caller, ClientAddr, SESSION_COOKIE};

/// The login form's double-submit anti-CSRF cookie.
const LOGIN_CSRF_COOKIE: &str = "vigie_login_csrf";

pub fn public_routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login", get(login_page).post(login))
        .route("/auth/login.css", get(stylesheet))
        .route("/auth/logout", post(logout))
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/session", get(whoami))
        .route("/api/v1/users", get(list_accounts).post(create_account))
        .route(
            "/api/v1/users/{name}",
            get(show_account).patch(change_account).delete(delete_account),
        )
        .route("/api/v1/users/{name}/password", put(change_password))
        .route("/api/v1/api-keys", get(list_credentials).post(issue_credential))
        .route("/api/v1/api-keys/{id}", axum::routing::delete(revoke_credential))
}

/// An account as the API shows it: never the password hash.
fn account_json(a: &Account) -> Value {
    json!({
        "name": a.name,
        "displayName": a.display_name,
        "role": a.role,
        "scope": a.scope,
        "origin": a.origin,
        "disabled": a.disabled,
        "failedLogins": a.failed_logins,
        "lockedUntil": a.locked_until.map(format_timestamp),
        "createdAt": format_timestamp(a.created_at),
        "passwordChangedAt": a.password_changed_at.map(format_timestamp),
        "lastLoginAt": a.last_login_at.map(format_timestamp),
    })
}

/// A credential as the API shows it: never the secret's hash.
fn credential_json(c: &ApiCredential) -> Value {
    json!({
        "id": c.id,
        "kind": c.kind,
        "name": c.name,
        "role": c.role,
        "scope": c.scope,
        "requestsPerMinute": c.requests_per_minute,
        "createdBy": c.created_by,
        "createdAt": format_timestamp(c.created_at),
        "expiresAt": c.expires_at.map(format_timestamp),
        "revokedAt": c.revoked_at.map(format_timestamp),
        "lastUsedAt": c.last_used_at.map(format_timestamp),
    })
}

fn session_json(account: &Account, session: &Session) -> Value {
    json!({
        "account": account_json(account),
        "csrfToken": session.csrf_token,
        "expiresAt": format_timestamp(session.expires_at),
    })
}

/// Escapes text for HTML.
pub(super) fn escape(s: &str) -> String {
    s.chars().fold(String::with_capacity(s.len()), |mut out, c| {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
        out
    })
}

pub(super) fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"fr\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><link rel=\"stylesheet\" href=\"/auth/login.css\"></head>\
         <body><main><h1>Vigie</h1>{body}</main></body></html>\n"
    )
}

fn login_form(csrf: &str, error: Option<&str>, sso: bool) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let sso = if sso {
        "<p><a href=\"/auth/sso/login\">Se connecter avec l'authentification unique (SSO) \
         <span lang=\"en\">(single sign-on)</span></a></p>"
    } else {
        ""
    };
    page(
        "Connexion — Vigie",
        &format!(
            "{error}<form method=\"post\" action=\"/auth/login\">\
             <input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\
             <label>Identifiant <span lang=\"en\">(user name)</span>\
             <input name=\"username\" autocomplete=\"username\" required maxlength=\"64\" autofocus></label>\
             <label>Mot de passe <span lang=\"en\">(password)</span>\
             <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required maxlength=\"128\"></label>\
             <button type=\"submit\">Se connecter <span lang=\"en\">(log in)</span></button></form>{sso}"
        ),
    )
}

fn logged_in_page(account: &Account, session: &Session) -> String {
    page(
        "Connecté — Vigie",
        &format!(
            "<p>Connecté en tant que <strong>{name}</strong> ({role}). \
             <span lang=\"en\">Logged in as {name}.</span></p>\
             <form method=\"post\" action=\"/auth/logout\">\
             <input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\
             <button type=\"submit\">Se déconnecter <span lang=\"en\">(log out)</span></button></form>",
            name = escape(&account.name),
            role = escape(account.role.label_fr()),
            csrf = escape(&session.csrf_token),
        ),
    )
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        "body{font-family:system-ui,sans-serif;background:#f3f4f6;margin:0}\
         main{max-width:22rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:.5rem}\
         label{display:block;margin:1rem 0}input{display:block;width:100%;padding:.5rem;margin-top:.25rem}\
         button{padding:.5rem 1rem}.error{color:#b91c1c}span[lang=en]{color:#6b7280;font-size:.85em}",
    )
}

/// The session a request's cookie opens, if any (public routes authenticate themselves).
async fn current_session(s: &AppState, headers: &HeaderMap) -> Option<(Session, Account)> {
    let caller = s
        .security
        .authenticate(&axum::http::Method::GET, headers, None)
        .await
        .ok()?;
    let session = s.security.session(caller.session.as_deref()?)?;
    let account = s.security.account_named(&caller.subject).await.ok()?;
    Some((session, account))
}

async fn login_page(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some((session, account)) = current_session(&s, &headers).await {
        return Ok(Html(logged_in_page(&account, &session)).into_response());
    }
    let csrf = random_token().map_err(|e| ApiError::Internal(format!("random generator: {e}")))?;
    let mut res = Html(login_form(&csrf, None, s.sso.is_some())).into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        s.security.cookie_header(LOGIN_CSRF_COOKIE, Some(&csrf), 3600),
    );
    Ok(res)
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    csrf_token: String,
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

async fn login(
    State(s): State<AppState>,
    ClientAddr(source): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let json = is_json(&headers);
    let form: LoginForm = if json {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::InvalidRequest(format!("expected {{\"username\", \"password\"}}: {e}")))?
    } else {
        let form: LoginForm = serde_urlencoded::from_bytes(&body)
            .map_err(|e| ApiError::InvalidRequest(format!("expected a login form: {e}")))?;
        let cookie = crate::security::cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or("");
        if cookie.is_empty() || !same_secret(cookie, &form.csrf_token) {
            return Err(ApiError::Forbidden(
                "the login form's anti-CSRF token is missing or wrong: reload the page".into(),
            ));
        }
        form
    };
    let outcome = s.security.login(&form.username, &form.password, source).await;
    let login_event = |action: &str| AuditEvent {
        actor: form.username.trim().to_lowercase(),
        credential: "password".into(),
        target: Some(form.username.trim().to_lowercase()),
        ..audit::event_by(None, source, action)
    };
    match &outcome {
        Ok((_, _, account)) => {
            s.audit
                .record(AuditEvent {
                    role: Some(account.role),
                    ..login_event("login.succeeded")
                })
                .await?;
        }
        Err(e) => {
            s.audit
                .record(AuditEvent {
                    outcome: Outcome::Failed,
                    detail: Some(e.to_string()),
                    ..login_event("login.failed")
                })
                .await?;
        }
    }
    match outcome {
        Ok((token, session, account)) => {
            let cookie = s.security.cookie_header(
                SESSION_COOKIE,
                Some(&token),
                u64::from(s.config.security.session_hours) * 3600,
            );
            let mut res = if json {
                Json(session_json(&account, &session)).into_response()
            } else {
                // Logged in with the form: straight to the console.
                let mut r = StatusCode::SEE_OTHER.into_response();
                r.headers_mut()
                    .insert(header::LOCATION, HeaderValue::from_static("/console"));
                r.headers_mut()
                    .append(header::SET_COOKIE, s.security.cookie_header(LOGIN_CSRF_COOKIE, None, 0));
                r
            };
            res.headers_mut().append(header::SET_COOKIE, cookie);
            Ok(res)
        }
        Err(e) if !json => {
            let e = ApiError::from(e);
            let status = match e {
                ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
                ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
                ref other => return Err(ApiError::Internal(other.to_string())),
            };
            let message = match status {
                StatusCode::TOO_MANY_REQUESTS => {
                    "Trop d'échecs : réessayez plus tard. (Too many failed logins: try again later.)"
                }
                _ => "Identifiant ou mot de passe incorrect. (Wrong user name or password.)",
            };
            let csrf = crate::security::cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or("");
            Ok((status, Html(login_form(&escape(csrf), Some(message), s.sso.is_some()))).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

async fn logout(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let json_client = headers.contains_key(CSRF_HEADER);
    let caller = s
        .security
        .authenticate(&axum::http::Method::GET, &headers, None)
        .await?;
    let hash = caller
        .session
        .clone()
        .ok_or_else(|| ApiError::BadRequestData("logout ends a console session; revoke API keys instead".into()))?;
    let session = s
        .security
        .session(&hash)
        .ok_or_else(|| ApiError::Unauthorized("the session has already ended".into()))?;
    let sent = match headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) {
        Some(h) => h.to_owned(),
        None => serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
            .unwrap_or_default()
            .into_iter()
            .find(|(k, _)| k == "csrf_token")
            .map(|(_, v)| v)
            .unwrap_or_default(),
    };
    if !same_secret(&sent, &session.csrf_token) {
        return Err(ApiError::Forbidden("logout needs the session's anti-CSRF token".into()));
    }
    s.security.close_session(&hash).await?;
    s.audit.record(audit::event(&caller, "logout")).await?;
    tracing::info!(account = %caller.subject, "logout");
    let mut res = if json_client {
        StatusCode::NO_CONTENT.into_response()
    } else {
        let mut r = StatusCode::SEE_OTHER.into_response();
        r.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/auth/login"));
        r
    };
    res.headers_mut()
        .insert(header::SET_COOKIE, s.security.cookie_header(SESSION_COOKIE, None, 0));
    Ok(res)
}

async fn whoami(State(s): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let mut body = json!({
        "subject": caller.subject,
        "credential": caller.credential,
        "role": caller.role,
        "scope": caller.scope,
        "permissions": Action::ALL.iter().filter(|a| caller.check(**a).is_ok()).collect::<Vec<_>>(),
    });
    if let Some(session) = caller.session.as_deref().and_then(|h| s.security.session(h)) {
        body["csrfToken"] = json!(session.csrf_token);
        body["expiresAt"] = json!(format_timestamp(session.expires_at));
    }
    Ok(Json(body))
}

async fn list_accounts(State(s): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.check(Action::ReadAccounts)?;
    let accounts = s.security.accounts().await?;
    Ok(Json(Value::Array(accounts.iter().map(account_json).collect())))
}

fn parse_grant(v: Option<&Value>) -> Result<Option<ScopeGrant>, ApiError> {
    v.map(|g| {
        serde_json::from_value::<ScopeGrant>(g.clone()).map_err(|e| {
            ApiError::BadRequestData(format!(
                "scope must be {{\"communes\": \"*\" or \"a,b\", \"business_lines\": \"*\" or \"x,y\"}}: {e}"
            ))
        })
    })
    .transpose()
}

fn parse_role(v: Option<&Value>) -> Result<Option<Role>, ApiError> {
    v.map(|r| {
        r.as_str()
            .ok_or_else(|| ApiError::BadRequestData("role must be a string".into()))?
            .parse::<Role>()
            .map_err(|e| ApiError::BadRequestData(e.to_string()))
    })
    .transpose()
}

fn string_field<'a>(body: &'a Value, key: &str) -> Result<Option<&'a str>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::BadRequestData(format!("'{key}' must be a string"))),
    }
}

async fn create_account(
    State(s): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    s.audit
        .check(&caller, Action::ManageAccounts, "user.create", None)
        .await?;
    let name = string_field(&body, "name")?.ok_or_else(|| ApiError::BadRequestData("'name' is required".into()))?;
    let role = parse_role(body.get("role"))?.ok_or_else(|| ApiError::BadRequestData("'role' is required".into()))?;
    let scope =
        parse_grant(body.get("scope"))?.ok_or_else(|| ApiError::BadRequestData("'scope' is required".into()))?;
    let (account, password) = s
        .security
        .create_account(crate::security::NewAccount {
            name: name.to_owned(),
            display_name: string_field(&body, "displayName")?.unwrap_or_default().to_owned(),
            role,
            scope,
            password: string_field(&body, "password")?.map(str::to_owned),
        })
        .await?;
    s.audit
        .record(AuditEvent {
            target: Some(account.name.clone()),
            after: Some(account_json(&account)),
            ..audit::event(&caller, "user.create")
        })
        .await?;
    let mut out = account_json(&account);
    if let Some(p) = password {
        // Shown once: the administrator passes it on, the user changes it.
        out["password"] = json!(p);
    }
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

async fn show_account(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if caller.subject != name {
        caller.check(Action::ReadAccounts)?;
    }
    Ok(Json(account_json(&s.security.account_named(&name).await?)))
}

async fn change_account(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    s.audit
        .check(&caller, Action::ManageAccounts, "user.update", Some(&name))
        .await?;
    let mut account = s.security.account_named(&name).await?;
    let before = account_json(&account);
    if let Some(role) = parse_role(body.get("role"))? {
        account.role = role;
    }
    if let Some(scope) = parse_grant(body.get("scope"))? {
        account.scope = scope;
    }
    if let Some(d) = string_field(&body, "displayName")? {
        account.display_name = d.to_owned();
    }
    match body.get("disabled") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => account.disabled = *b,
        Some(_) => return Err(ApiError::BadRequestData("'disabled' must be true or false".into())),
    }
    if body.get("unlock") == Some(&Value::Bool(true)) {
        account.locked_until = None;
        account.failed_logins = 0;
    }
    if name == caller.subject && (account.disabled || account.role != Role::Administrator) {
        return Err(ApiError::BadRequestData(
            "administrators cannot disable or demote themselves: ask another administrator".into(),
        ));
    }
    s.security.update_account(account.clone()).await?;
    s.audit
        .record(AuditEvent {
            target: Some(name.clone()),
            before: Some(before),
            after: Some(account_json(&account)),
            ..audit::event(&caller, "user.update")
        })
        .await?;
    Ok(Json(account_json(&account)))
}

async fn delete_account(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.audit
        .check(&caller, Action::ManageAccounts, "user.delete", Some(&name))
        .await?;
    if name == caller.subject {
        return Err(ApiError::BadRequestData(
            "administrators cannot delete themselves".into(),
        ));
    }
    let deleted = s.security.delete_account(&name).await?;
    s.audit
        .record(AuditEvent {
            target: Some(name.clone()),
            before: Some(account_json(&deleted)),
            ..audit::event(&caller, "user.delete")
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn change_password(
    State(s): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<StatusCode, ApiError> {
    let new =
        string_field(&body, "password")?.ok_or_else(|| ApiError::BadRequestData("'password' is required".into()))?;
    if caller.subject == name && caller.check(Action::ManageAccounts).is_err() {
        // One's own password: prove the current one first.
        let current = string_field(&body, "currentPassword")?.unwrap_or_default();
        if !s.security.password_matches(&name, current).await? {
            return Err(ApiError::Forbidden("the current password is wrong".into()));
        }
    } else {
        s.audit
            .check(&caller, Action::ManageAccounts, "user.password", Some(&name))
            .await?;
    }
    s.security.set_password(&name, new).await?;
    s.audit
        .record(AuditEvent {
            target: Some(name.clone()),
            ..audit::event(&caller, "user.password")
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_credentials(State(s): State<AppState>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.check(Action::ReadAccounts)?;
    let all = s.security.credentials().await?;
    Ok(Json(Value::Array(all.iter().map(credential_json).collect())))
}

async fn issue_credential(
    State(s): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    s.audit
        .check(&caller, Action::ManageAccounts, "apikey.create", None)
        .await?;
    let kind = match string_field(&body, "kind")?.unwrap_or("api-key") {
        "api-key" => CredentialKind::ApiKey,
        "service-token" => CredentialKind::ServiceToken,
        other => {
            return Err(ApiError::BadRequestData(format!(
                "unknown kind '{other}': expected 'api-key' or 'service-token'"
            )));
        }
    };
    let name = string_field(&body, "name")?.ok_or_else(|| ApiError::BadRequestData("'name' is required".into()))?;
    let role = parse_role(body.get("role"))?.ok_or_else(|| ApiError::BadRequestData("'role' is required".into()))?;
    let scope =
        parse_grant(body.get("scope"))?.ok_or_else(|| ApiError::BadRequestData("'scope' is required".into()))?;
    let rate = match body.get("requestsPerMinute") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| ApiError::BadRequestData("'requestsPerMinute' must be a positive integer".into()))?,
        ),
    };
    let expires_at = string_field(&body, "expiresAt")?
        .map(|t| {
            t.parse::<Timestamp>()
                .map_err(|e| ApiError::BadRequestData(format!("'expiresAt' is not a date-time: {e}")))
        })
        .transpose()?;
    let issued = s
        .security
        .issue_credential(
            crate::security::NewCredential {
                kind,
                name: name.to_owned(),
                role,
                scope,
                requests_per_minute: rate,
                expires_at,
            },
            &caller.subject,
        )
        .await?;
    s.audit
        .record(AuditEvent {
            target: Some(issued.credential.id.clone()),
            after: Some(credential_json(&issued.credential)),
            ..audit::event(&caller, "apikey.create")
        })
        .await?;
    let mut out = credential_json(&issued.credential);
    out["token"] = json!(issued.token);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

async fn revoke_credential(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.audit
        .check(&caller, Action::ManageAccounts, "apikey.revoke", Some(&id))
        .await?;
    let revoked = s.security.revoke_credential(&id).await?;
    s.audit
        .record(AuditEvent {
            target: Some(id.clone()),
            before: Some(credential_json(&revoked)),
            ..audit::event(&caller, "apikey.revoke")
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

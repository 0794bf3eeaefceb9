//! Single sign-on routes (OpenID Connect; the protocol is in
//! `security::oidc`):
//!
//! - `GET /auth/sso/login` sends the browser to the identity provider;
//! - `GET /auth/sso/callback` is where the provider sends it back: it opens
//!   a console session and continues to `/auth/login`, which shows who is
//!   connected.
//!
//! Every refusal is a page in French then English (403 when the user may
//! not log in, 502 when the provider fails), and a log line saying why.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::accounts::{escape, page};
use super::{ApiError, AppState, Params};
use crate::security::oidc::{Callback, Oidc, SSO_COOKIE, SsoError};
use crate::security::{ClientAddr, SESSION_COOKIE};

pub fn public_routes() -> Router<AppState> {
    Router::new()
        .route("/auth/sso/login", get(sso_login))
        .route("/auth/sso/callback", get(sso_callback))
}

fn oidc(s: &AppState) -> Result<&Arc<Oidc>, ApiError> {
    s.sso.as_ref().ok_or_else(|| {
        ApiError::NotFound("single sign-on is not enabled on this Vigie (see [sso] in the configuration)".into())
    })
}

/// A response nobody caches, that forgets the login in progress.
fn finish(s: &AppState, mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.append(header::SET_COOKIE, s.security.sso_cookie_header(None));
    res
}

/// A refusal page: French, then English.
fn refusal(s: &AppState, status: StatusCode, french: &str, english: &str) -> Response {
    let body = format!(
        "<p class=\"error\" role=\"alert\">{} <span lang=\"en\">({})</span></p>\
         <p><a href=\"/auth/login\">Retour à la connexion <span lang=\"en\">(back to the login page)</span></a></p>",
        escape(french),
        escape(english),
    );
    finish(
        s,
        (status, Html(page("Connexion refusée — Vigie", &body))).into_response(),
    )
}

async fn sso_login(State(s): State<AppState>) -> Result<Response, ApiError> {
    let oidc = oidc(&s)?;
    match oidc.begin().await {
        Ok((state, url)) => {
            let location = HeaderValue::from_str(url.as_str())
                .map_err(|e| ApiError::Internal(format!("authorization URL: {e}")))?;
            let mut res = StatusCode::SEE_OTHER.into_response();
            let h = res.headers_mut();
            h.insert(header::LOCATION, location);
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.append(header::SET_COOKIE, s.security.sso_cookie_header(Some(&state)));
            Ok(res)
        }
        Err(e) => {
            tracing::error!(error = %e, "single sign-on: cannot start a login");
            Ok(refusal(
                &s,
                StatusCode::BAD_GATEWAY,
                "Le fournisseur d'identité est injoignable : réessayez plus tard, ou connectez-vous par mot de passe.",
                "The identity provider cannot be reached: try again later, or log in with a password.",
            ))
        }
    }
}

async fn sso_callback(
    State(s): State<AppState>,
    ClientAddr(source): ClientAddr,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    let oidc = oidc(&s)?;
    let param = |k: &str| params.get(k).map(str::to_owned);
    let callback = Callback {
        code: param("code"),
        state: param("state"),
        iss: param("iss"),
        error: param("error"),
        error_description: param("error_description"),
    };
    let cookie = crate::security::cookie(&headers, SSO_COOKIE);
    let identity = match oidc.finish(&callback, cookie).await {
        Ok(identity) => identity,
        Err(e) => return Ok(refused(&s, &e, source)),
    };
    let opened = s
        .security
        .single_sign_on(
            &identity.name,
            &identity.display_name,
            identity.role,
            identity.scope.clone(),
            source,
        )
        .await;
    match opened {
        Ok((token, _, account)) => {
            let name = escape(&account.name);
            let body = format!(
                "<p>Connecté en tant que <strong>{name}</strong> ({role}). \
                 <span lang=\"en\">Logged in as {name}.</span></p>\
                 <p><a href=\"/auth/login\">Continuer <span lang=\"en\">(continue)</span></a></p>",
                role = escape(account.role.label_fr()),
            );
            // A page that moves on, rather than a redirect: the session
            // cookie is SameSite=Strict, and browsers do not send it on a
            // redirect chain that a cross-site page (the provider) started.
            let html = page("Connecté — Vigie", &body).replacen(
                "</title>",
                "</title><meta http-equiv=\"refresh\" content=\"0; url=/auth/login\">",
                1,
            );
            let mut res = finish(&s, Html(html).into_response());
            res.headers_mut().append(
                header::SET_COOKIE,
                s.security.cookie_header(
                    SESSION_COOKIE,
                    Some(&token),
                    u64::from(s.config.security.session_hours) * 3600,
                ),
            );
            Ok(res)
        }
        Err(ApiError::Forbidden(reason)) => {
            tracing::warn!(account = %identity.name, %reason, "single sign-on refused");
            Ok(refusal(
                &s,
                StatusCode::FORBIDDEN,
                "Ce compte ne peut pas se connecter par authentification unique.",
                &reason,
            ))
        }
        Err(e) => {
            tracing::error!(account = %identity.name, error = %e, "single sign-on: cannot open the session");
            Ok(refusal(
                &s,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Erreur interne : la session n'a pas pu être ouverte.",
                "Internal error: the session could not be opened; see the server log.",
            ))
        }
    }
}

/// The page and the log line of a failed callback.
fn refused(s: &AppState, e: &SsoError, source: Option<std::net::IpAddr>) -> Response {
    let source = source.map(|a| a.to_string()).unwrap_or_default();
    match e {
        SsoError::Claims { subject, refusal: why } => {
            tracing::warn!(
                %subject,
                claim = why.claim(),
                reason = %why,
                %source,
                "single sign-on refused: the provider's claims give no access to Vigie"
            );
            refusal(
                s,
                StatusCode::FORBIDDEN,
                &format!(
                    "Votre compte n'a pas accès à Vigie : le fournisseur d'identité ne donne pas de rôle ou de \
                     périmètre valable (revendication « {} »). Adressez-vous à votre administrateur.",
                    why.claim()
                ),
                &format!("Your account has no access to Vigie: {why}. Ask your administrator."),
            )
        }
        SsoError::Denied { code, description } => {
            tracing::info!(error = %code, %source, "single sign-on: the provider refused the login");
            let status = match code.as_str() {
                "access_denied"
                | "login_required"
                | "consent_required"
                | "interaction_required"
                | "account_selection_required" => StatusCode::FORBIDDEN,
                _ => StatusCode::BAD_GATEWAY,
            };
            let detail = description.as_deref().map(|d| format!(": {d}")).unwrap_or_default();
            refusal(
                s,
                status,
                &format!("Le fournisseur d'identité a refusé la connexion ({code})."),
                &format!("The identity provider refused the login ({code}{detail})."),
            )
        }
        SsoError::BadCallback(why) => {
            tracing::warn!(reason = %why, %source, "single sign-on: callback refused");
            refusal(
                s,
                StatusCode::FORBIDDEN,
                "Cette connexion n'a pas été commencée depuis ce navigateur, a déjà servi ou a expiré : recommencez.",
                why,
            )
        }
        SsoError::Token(_) | SsoError::Provider(_) | SsoError::Config(_) => {
            tracing::error!(error = %e, %source, "single sign-on failed");
            refusal(
                s,
                StatusCode::BAD_GATEWAY,
                "Le fournisseur d'identité a mal répondu : la connexion a échoué. Réessayez plus tard.",
                "The identity provider answered something Vigie cannot accept; see the server log.",
            )
        }
    }
}

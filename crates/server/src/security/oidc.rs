//! OpenID Connect single sign-on: the authorization code flow with PKCE.
//!
//! - [`Oidc::begin`] (`GET /auth/sso/login`) reads the provider's discovery
//!   document (kept an hour, read again when something it gave fails), keeps
//!   the login's nonce and PKCE verifier server-side in a bounded map keyed
//!   by the `state` (forgotten after ten minutes), and sends the browser to
//!   the authorization endpoint. The browser is bound to its login by a
//!   short-lived `SameSite=Lax` cookie holding the state: a `Strict` cookie
//!   would not come back on the provider's cross-site redirect.
//! - [`Oidc::finish`] (`GET /auth/sso/callback`) checks the state against the
//!   cookie (and `iss`, RFC 9207, when the provider sends it), exchanges the
//!   code and the verifier at the token endpoint, verifies the ID token
//!   (signature against the provider's JWKS, `iss`, `aud`, `azp`, `exp`,
//!   `iat`, `nbf`, `nonce`), completes the claims from the userinfo endpoint
//!   when the ID token lacks some, and maps them to an account name, a role
//!   and a scope ([`map_claims`]). Nothing is defaulted: a missing or invalid
//!   claim refuses the login.
//!
//! Every call to the provider has a timeout and a bounded response; the
//! client secret is sent to the token endpoint only, and never logged.
//! Signatures are checked with `ring` (RS256/384/512, PS256/384/512, ES256,
//! ES384, EdDSA); unsigned and HMAC-signed ID tokens are refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{self, HeaderMap, HeaderValue, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http_body_util::Full;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use url::Url;
use vigie_core::access::{Role, ScopeGrant};
use vigie_core::account::validate_account_name;

use super::Security;
use super::secrets::{random_token, same_secret};
use crate::config::SsoConfig;
use crate::outbound::HttpClient;

/// The cookie binding a browser to the login it started.
pub const SSO_COOKIE: &str = "vigie_sso";
/// How long a started login may take at the provider.
pub const LOGIN_TTL: Duration = Duration::from_secs(600);
/// Most logins in progress at once; beyond, the oldest is forgotten.
const MAX_PENDING: usize = 10_000;
/// Longest wait for one answer of the provider.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read from the provider.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// Longest ID token considered.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// How long the discovery document and the keys are used before being read again.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// Reads forced by a failure are at most this frequent.
const MIN_REFRESH: Duration = Duration::from_secs(10);
/// Clock skew tolerated on `exp`, `iat` and `nbf`, in seconds.
const LEEWAY_SECS: i64 = 60;
/// Longest display name kept from the `name` claim.
const MAX_DISPLAY_NAME: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    /// The `[sso]` configuration cannot work (refused at start).
    #[error("[sso] configuration: {0}")]
    Config(String),
    /// The provider could not be reached or answered something unusable.
    #[error("identity provider: {0}")]
    Provider(String),
    /// The provider answered the login with an error (`error=...`).
    #[error("the identity provider refused the login: {code}")]
    Denied { code: String, description: Option<String> },
    /// The callback does not continue a login this browser started here.
    #[error("{0}")]
    BadCallback(String),
    /// The ID token does not verify.
    #[error("the ID token is not valid: {0}")]
    Token(String),
    /// The claims give no account, role or scope.
    #[error("{refusal}")]
    Claims { subject: String, refusal: Refusal },
}

/// Why a user's claims give no access to Vigie.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the claim '{0}' is missing")]
    Missing(String),
    #[error("the claim '{0}' is neither a string nor an array of strings")]
    NotText(String),
    #[error("the claim '{claim}' ('{value}') is not a valid account name: 1 to 64 of a-z 0-9 . - _ @")]
    BadName { claim: String, value: String },
    #[error("the claim '{claim}' gives no Vigie role: '{value}' is neither a role name nor in sso.role_map")]
    UnknownRole { claim: String, value: String },
    #[error("the claim '{claim}' gives several Vigie roles ({roles}): exactly one is needed")]
    SeveralRoles { claim: String, roles: String },
    #[error("the claim '{claim}' is not a valid scope: {message}")]
    BadScope { claim: String, message: String },
}

impl Refusal {
    /// The claim at fault.
    pub fn claim(&self) -> &str {
        match self {
            Refusal::Missing(c) | Refusal::NotText(c) => c,
            Refusal::BadName { claim, .. }
            | Refusal::UnknownRole { claim, .. }
            | Refusal::SeveralRoles { claim, .. }
            | Refusal::BadScope { claim, .. } => claim,
        }
    }
}

/// Who the provider says the user is, as Vigie understands it.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub name: String,
    pub display_name: String,
    pub role: Role,
    pub scope: ScopeGrant,
}

/// The claims read, and how to map them.
#[derive(Debug, Clone)]
pub struct ClaimMapping {
    pub username: String,
    pub role: String,
    pub communes: String,
    pub business_lines: String,
    pub role_map: HashMap<String, Role>,
}

/// The text values of a claim: a string, or an array of strings.
fn texts(claims: &Map<String, Value>, claim: &str) -> Result<Vec<String>, Refusal> {
    match claims.get(claim) {
        None | Some(Value::Null) => Err(Refusal::Missing(claim.to_owned())),
        Some(Value::String(s)) => Ok(vec![s.trim().to_owned()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(|s| s.trim().to_owned()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Refusal::NotText(claim.to_owned())),
        Some(_) => Err(Refusal::NotText(claim.to_owned())),
    }
}

/// A scope side: `*`, `a,b`, or an array (containing `*` means every one).
fn selection(claims: &Map<String, Value>, claim: &str) -> Result<String, Refusal> {
    let values: Vec<String> = texts(claims, claim)?.into_iter().filter(|v| !v.is_empty()).collect();
    if values.is_empty() {
        return Err(Refusal::Missing(claim.to_owned()));
    }
    if values.iter().any(|v| v == "*") {
        return Ok("*".to_owned());
    }
    Ok(values.join(","))
}

/// Maps a user's claims to an account, a role and a scope; any missing or
/// invalid claim refuses the login (there is no default role or scope).
pub fn map_claims(claims: &Map<String, Value>, mapping: &ClaimMapping) -> Result<Identity, Refusal> {
    let name = match claims.get(&mapping.username) {
        None | Some(Value::Null) => return Err(Refusal::Missing(mapping.username.clone())),
        Some(Value::String(s)) => s.trim().to_lowercase(),
        Some(_) => return Err(Refusal::NotText(mapping.username.clone())),
    };
    if validate_account_name(&name).is_err() {
        return Err(Refusal::BadName {
            claim: mapping.username.clone(),
            value: name.chars().take(80).collect(),
        });
    }

    let values = texts(claims, &mapping.role)?;
    let lookup = |v: &str| mapping.role_map.get(v).copied().or_else(|| v.parse::<Role>().ok());
    let mut roles: Vec<Role> = values.iter().filter_map(|v| lookup(v)).collect();
    roles.sort();
    roles.dedup();
    let role = match roles.as_slice() {
        [one] => *one,
        [] => {
            return Err(match values.as_slice() {
                [] => Refusal::Missing(mapping.role.clone()),
                _ => Refusal::UnknownRole {
                    claim: mapping.role.clone(),
                    value: values.join(",").chars().take(200).collect(),
                },
            });
        }
        several => {
            return Err(Refusal::SeveralRoles {
                claim: mapping.role.clone(),
                roles: several.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "),
            });
        }
    };

    let communes = selection(claims, &mapping.communes)?;
    let lines = selection(claims, &mapping.business_lines)?;
    let scope = ScopeGrant::parse(&communes, "*").map_err(|e| Refusal::BadScope {
        claim: mapping.communes.clone(),
        message: e.to_string(),
    })?;
    let lines_only = ScopeGrant::parse("*", &lines).map_err(|e| Refusal::BadScope {
        claim: mapping.business_lines.clone(),
        message: e.to_string(),
    })?;
    let scope = ScopeGrant {
        communes: scope.communes,
        business_lines: lines_only.business_lines,
    };

    let display_name = claims
        .get("name")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(&name)
        .chars()
        .take(MAX_DISPLAY_NAME)
        .collect();
    Ok(Identity {
        name,
        display_name,
        role,
        scope,
    })
}

/// Whether a URL may be used to talk to the provider: https, or http on a
/// loopback address (a provider started by a test, or a local proxy).
fn check_url(text: &str, what: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{what} '{text}' is not a URL: {e}"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" if url.host().is_some() => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(format!(
            "{what} '{text}' must be an https URL (http is accepted on a loopback address only)"
        )),
    }
}

/// What the provider's discovery document and keys say.
struct ProviderInfo {
    issuer: String,
    authorization_endpoint: Url,
    token_endpoint: Url,
    userinfo_endpoint: Option<Url>,
    keys: Vec<Jwk>,
    fetched: Instant,
}

/// A login started and not finished yet.
struct Pending {
    nonce: String,
    verifier: String,
    started: Instant,
}

/// Vigie as an OpenID Connect relying party.
pub struct Oidc {
    issuer: String,
    client_id: String,
    client_secret: String,
    /// client_secret_basic, else client_secret_post.
    basic_auth: bool,
    redirect_url: String,
    scopes: String,
    pub mapping: ClaimMapping,
    client: HttpClient,
    provider: tokio::sync::Mutex<Option<Arc<ProviderInfo>>>,
    pending: Mutex<HashMap<String, Pending>>,
}

/// The query of a callback from the provider.
#[derive(Debug, Default, Clone)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

fn random() -> Result<String, SsoError> {
    random_token().map_err(|e| SsoError::Provider(format!("random generator: {e}")))
}

impl Oidc {
    /// The relying party for a configuration, or `None` when single sign-on
    /// is off. Every setting is checked here, so that mistakes stop the start.
    pub fn from_config(config: &SsoConfig, security_enabled: bool) -> Result<Option<Self>, SsoError> {
        if !config.enabled {
            return Ok(None);
        }
        let bad = SsoError::Config;
        if !security_enabled {
            return Err(bad(
                "sso.enabled needs security.enabled = true (without security every caller is an administrator)".into(),
            ));
        }
        let issuer = check_url(&config.issuer, "sso.issuer").map_err(bad)?;
        if issuer.query().is_some() || issuer.fragment().is_some() {
            return Err(bad(format!(
                "sso.issuer '{}' must have no query nor fragment",
                config.issuer
            )));
        }
        if config.client_id.trim().is_empty() {
            return Err(bad("sso.client_id is empty".into()));
        }
        if config.client_secret.is_empty() {
            return Err(bad(
                "sso.client_secret is empty: set it in the file or in VIGIE_SSO_CLIENT_SECRET".into(),
            ));
        }
        let basic_auth = match config.token_endpoint_auth.as_str() {
            "client_secret_basic" => true,
            "client_secret_post" => false,
            other => {
                return Err(bad(format!(
                    "sso.token_endpoint_auth '{other}': expected client_secret_basic or client_secret_post"
                )));
            }
        };
        check_url(&config.redirect_url, "sso.redirect_url").map_err(bad)?;
        if !config.redirect_url.ends_with("/auth/sso/callback") {
            return Err(bad(format!(
                "sso.redirect_url '{}' must end with /auth/sso/callback, where Vigie answers the provider",
                config.redirect_url
            )));
        }
        if !config.scopes.split_whitespace().any(|s| s == "openid") {
            return Err(bad(format!("sso.scopes '{}' must include openid", config.scopes)));
        }
        for (key, value) in [
            ("sso.username_claim", &config.username_claim),
            ("sso.role_claim", &config.role_claim),
            ("sso.communes_claim", &config.communes_claim),
            ("sso.business_lines_claim", &config.business_lines_claim),
        ] {
            if value.trim().is_empty() {
                return Err(bad(format!("{key} is empty")));
            }
        }
        let role_map = config
            .role_map
            .iter()
            .map(|(claim, role)| {
                role.parse::<Role>()
                    .map(|r| (claim.clone(), r))
                    .map_err(|e| bad(format!("sso.role_map: '{claim}' = '{role}': {e}")))
            })
            .collect::<Result<HashMap<_, _>, _>>()?;
        Ok(Some(Self {
            issuer: config.issuer.clone(),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            basic_auth,
            redirect_url: config.redirect_url.clone(),
            scopes: config.scopes.clone(),
            mapping: ClaimMapping {
                username: config.username_claim.clone(),
                role: config.role_claim.clone(),
                communes: config.communes_claim.clone(),
                business_lines: config.business_lines_claim.clone(),
                role_map,
            },
            client: HttpClient::new(
                &config.ca_file,
                issuer.scheme() == "https",
                PROVIDER_TIMEOUT,
                MAX_RESPONSE_BYTES,
            )
            .map_err(|e| SsoError::Config(format!("sso.ca_file: {e}")))?,
            provider: tokio::sync::Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
        }))
    }

    /// Starts a login: returns the state (for the browser's cookie) and the
    /// provider's authorization URL to send the browser to.
    pub async fn begin(&self) -> Result<(String, Url), SsoError> {
        let provider = self.provider(false).await?;
        let state = random()?;
        let nonce = random()?;
        let verifier = random()?;
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let mut url = provider.authorization_endpoint.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_url)
            .append_pair("scope", &self.scopes)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        self.remember(
            state.clone(),
            Pending {
                nonce,
                verifier,
                started: Instant::now(),
            },
        );
        Ok((state, url))
    }

    fn remember(&self, state: String, pending: Pending) {
        let Ok(mut map) = self.pending.lock() else {
            return;
        };
        if map.len() >= MAX_PENDING {
            let now = Instant::now();
            map.retain(|_, p| now.duration_since(p.started) < LOGIN_TTL);
            if map.len() >= MAX_PENDING {
                let oldest = map.iter().min_by_key(|(_, p)| p.started).map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    map.remove(&k);
                }
            }
        }
        map.insert(state, pending);
    }

    /// Takes a started login (once: a state cannot be replayed).
    fn take(&self, state: &str) -> Option<Pending> {
        let pending = self.pending.lock().ok()?.remove(state)?;
        (pending.started.elapsed() < LOGIN_TTL).then_some(pending)
    }

    /// How many logins are in progress (for tests and metrics).
    pub fn pending_logins(&self) -> usize {
        self.pending.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Completes a login from the provider's callback and the browser's
    /// [`SSO_COOKIE`]: the user's identity, or why there is none.
    pub async fn finish(&self, callback: &Callback, cookie: Option<&str>) -> Result<Identity, SsoError> {
        let state = callback
            .state
            .as_deref()
            .ok_or_else(|| SsoError::BadCallback("the callback has no 'state': start the login again".into()))?;
        let bound = cookie.is_some_and(|c| same_secret(c, state));
        let pending = if bound { self.take(state) } else { None };
        if let Some(code) = &callback.error {
            // An error page can be linked from anywhere: its text is shown
            // only when it ends a login this browser started.
            let code: String = code
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            return Err(SsoError::Denied {
                code,
                description: callback
                    .error_description
                    .as_ref()
                    .filter(|_| pending.is_some())
                    .map(|d| d.chars().take(300).collect()),
            });
        }
        if !bound {
            return Err(SsoError::BadCallback(
                "this callback does not continue a login started from this browser: start the login again".into(),
            ));
        }
        let pending = pending.ok_or_else(|| {
            SsoError::BadCallback("this login is unknown, already used or older than 10 minutes: start again".into())
        })?;
        let provider = self.provider(false).await?;
        if let Some(iss) = &callback.iss
            && iss != &provider.issuer
        {
            return Err(SsoError::BadCallback(format!(
                "the callback comes from issuer '{iss}', not from '{}'",
                provider.issuer
            )));
        }
        let code = callback
            .code
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| SsoError::BadCallback("the callback has no 'code'".into()))?;

        let tokens = match self.exchange(&provider, code, &pending.verifier).await {
            Ok(t) => t,
            Err(e) => {
                // The endpoint may have moved: read the discovery document again next time.
                self.forget_provider().await;
                return Err(e);
            }
        };
        let id_token = tokens
            .get("id_token")
            .and_then(Value::as_str)
            .ok_or_else(|| SsoError::Provider("the token endpoint answered without an id_token".into()))?;
        let mut claims = match verify_jws(id_token, &provider.keys) {
            Err(JwsError::NoKey(_)) => {
                // Keys rotate: read them again once.
                let fresh = self.provider(true).await?;
                verify_jws(id_token, &fresh.keys)
            }
            other => other,
        }
        .map_err(|e| SsoError::Token(e.to_string()))?;
        check_id_token(
            &claims,
            &provider.issuer,
            &self.client_id,
            &pending.nonce,
            jiff::Timestamp::now().as_second(),
        )
        .map_err(SsoError::Token)?;

        let wanted = [
            &self.mapping.username,
            &self.mapping.role,
            &self.mapping.communes,
            &self.mapping.business_lines,
        ];
        if wanted.iter().any(|c| !claims.contains_key(c.as_str()))
            && let (Some(endpoint), Some(access)) = (
                &provider.userinfo_endpoint,
                tokens.get("access_token").and_then(Value::as_str),
            )
        {
            let info = self.userinfo(endpoint, access).await?;
            if info.get("sub") != claims.get("sub") {
                return Err(SsoError::Token(
                    "the userinfo endpoint answered for another subject than the ID token's".into(),
                ));
            }
            for (k, v) in info {
                claims.entry(k).or_insert(v);
            }
        }
        let subject = claims.get("sub").and_then(Value::as_str).unwrap_or("").to_owned();
        map_claims(&claims, &self.mapping).map_err(|refusal| SsoError::Claims { subject, refusal })
    }

    async fn forget_provider(&self) {
        *self.provider.lock().await = None;
    }

    /// The provider's metadata and keys: cached, read again after
    /// [`DISCOVERY_TTL`], or when `refresh` (at most every [`MIN_REFRESH`]).
    async fn provider(&self, refresh: bool) -> Result<Arc<ProviderInfo>, SsoError> {
        let mut cached = self.provider.lock().await;
        if let Some(info) = cached.as_ref() {
            let age = info.fetched.elapsed();
            if age < DISCOVERY_TTL && (!refresh || age < MIN_REFRESH) {
                return Ok(Arc::clone(info));
            }
        }
        let info = Arc::new(self.discover().await?);
        *cached = Some(Arc::clone(&info));
        Ok(info)
    }

    async fn discover(&self) -> Result<ProviderInfo, SsoError> {
        let url = format!("{}/.well-known/openid-configuration", self.issuer.trim_end_matches('/'));
        let doc = self.get_json(&url, None).await?;
        let text = |key: &str| doc.get(key).and_then(Value::as_str);
        let issuer = text("issuer").ok_or_else(|| SsoError::Provider(format!("{url} names no issuer")))?;
        if issuer != self.issuer {
            return Err(SsoError::Provider(format!(
                "the discovery document's issuer is '{issuer}' but sso.issuer is '{}': they must be identical",
                self.issuer
            )));
        }
        let endpoint = |key: &str| -> Result<Url, SsoError> {
            let value = text(key).ok_or_else(|| SsoError::Provider(format!("{url} has no {key}")))?;
            check_url(value, key).map_err(SsoError::Provider)
        };
        let authorization_endpoint = endpoint("authorization_endpoint")?;
        let token_endpoint = endpoint("token_endpoint")?;
        let jwks_uri = endpoint("jwks_uri")?;
        let userinfo_endpoint = text("userinfo_endpoint")
            .map(|_| endpoint("userinfo_endpoint"))
            .transpose()?;
        // Absent, the list means client_secret_basic only (OpenID Connect Discovery §3).
        let methods: Vec<&str> = doc
            .get("token_endpoint_auth_methods_supported")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_else(|| vec!["client_secret_basic"]);
        let method = if self.basic_auth {
            "client_secret_basic"
        } else {
            "client_secret_post"
        };
        if !methods.contains(&method) {
            return Err(SsoError::Provider(format!(
                "the token endpoint does not take {method} (sso.token_endpoint_auth); it takes {}",
                methods.join(", ")
            )));
        }
        let jwks = self.get_json(jwks_uri.as_str(), None).await?;
        let keys = parse_jwks(&jwks);
        if keys.is_empty() {
            return Err(SsoError::Provider(format!(
                "{jwks_uri} has no signing key Vigie can use (RSA, P-256, P-384 or Ed25519)"
            )));
        }
        tracing::info!(issuer, keys = keys.len(), "identity provider discovered");
        Ok(ProviderInfo {
            issuer: issuer.to_owned(),
            authorization_endpoint,
            token_endpoint,
            userinfo_endpoint,
            keys,
            fetched: Instant::now(),
        })
    }

    /// Exchanges the code at the token endpoint (client_secret_basic or _post).
    async fn exchange(&self, provider: &ProviderInfo, code: &str, verifier: &str) -> Result<Value, SsoError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_url.as_str()),
            ("code_verifier", verifier),
        ];
        let mut req = http::Request::post(provider.token_endpoint.as_str())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json");
        if self.basic_auth {
            // RFC 6749 §2.3.1: each part form-encoded, then base64.
            let pair = format!("{}:{}", form_encode(&self.client_id), form_encode(&self.client_secret));
            req = req.header(header::AUTHORIZATION, format!("Basic {}", STANDARD.encode(pair)));
        } else {
            form.push(("client_id", self.client_id.as_str()));
            form.push(("client_secret", self.client_secret.as_str()));
        }
        let body = serde_urlencoded::to_string(&form)
            .map_err(|e| SsoError::Provider(format!("cannot encode the token request: {e}")))?;
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| SsoError::Provider(format!("token request: {e}")))?;
        let (status, _, bytes) = self.send(req, provider.token_endpoint.as_str()).await?;
        let doc: Value = serde_json::from_slice(&bytes)
            .map_err(|e| SsoError::Provider(format!("the token endpoint answered {status} with no JSON: {e}")))?;
        if !status.is_success() {
            let error = doc.get("error").and_then(Value::as_str).unwrap_or("no error code");
            let description = doc.get("error_description").and_then(Value::as_str).unwrap_or("");
            return Err(SsoError::Provider(format!(
                "the token endpoint answered {status}: {error} {description}"
            )));
        }
        Ok(doc)
    }

    async fn userinfo(&self, endpoint: &Url, access_token: &str) -> Result<Map<String, Value>, SsoError> {
        match self.get_json(endpoint.as_str(), Some(access_token)).await? {
            Value::Object(m) => Ok(m),
            _ => Err(SsoError::Provider(format!("{endpoint} did not answer a JSON object"))),
        }
    }

    async fn get_json(&self, url: &str, bearer: Option<&str>) -> Result<Value, SsoError> {
        let mut req = http::Request::get(url).header(header::ACCEPT, "application/json");
        if let Some(token) = bearer {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| SsoError::Provider(format!("{url}: {e}")))?;
        let (status, headers, bytes) = self.send(req, url).await?;
        if !status.is_success() {
            return Err(SsoError::Provider(format!("{url} answered {status}")));
        }
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if content_type.starts_with("application/jwt") {
            return Err(SsoError::Provider(format!(
                "{url} answered a signed JWT: configure the provider to answer plain JSON"
            )));
        }
        serde_json::from_slice(&bytes).map_err(|e| SsoError::Provider(format!("{url} did not answer JSON: {e}")))
    }
    /// One request to the provider: bounded in time and size, no redirects.
    async fn send(
        &self,
        req: http::Request<Full<Bytes>>,
        what: &str,
    ) -> Result<(StatusCode, HeaderMap, Bytes), SsoError> {
        self.client
            .send(req, what)
            .await
            .map_err(|e| SsoError::Provider(e.to_string()))
    }
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

// ---- ID tokens: JWS (compact serialization) over the provider's JWKS ----

#[derive(Debug, Clone, PartialEq, Eq)]
enum PublicKey {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    P256(Vec<u8>),
    P384(Vec<u8>),
    Ed25519(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Jwk {
    kid: Option<String>,
    alg: Option<String>,
    key: PublicKey,
}

fn b64(field: Option<&Value>) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(field?.as_str()?.trim_end_matches('=')).ok()
}

/// The signing keys of a JWKS Vigie can use; others are skipped.
fn parse_jwks(doc: &Value) -> Vec<Jwk> {
    let Some(keys) = doc.get("keys").and_then(Value::as_array) else {
        return vec![];
    };
    keys.iter()
        .filter(|k| k.get("use").and_then(Value::as_str).is_none_or(|u| u == "sig"))
        .filter_map(|k| {
            let point = |len: usize| {
                let (x, y) = (b64(k.get("x"))?, b64(k.get("y"))?);
                (x.len() == len && y.len() == len).then(|| [&[4u8][..], x.as_slice(), y.as_slice()].concat())
            };
            let key = match (k.get("kty")?.as_str()?, k.get("crv").and_then(Value::as_str)) {
                ("RSA", _) => {
                    let n = b64(k.get("n"))?;
                    let e = b64(k.get("e"))?;
                    let strip = |v: Vec<u8>| v.into_iter().skip_while(|b| *b == 0).collect::<Vec<u8>>();
                    PublicKey::Rsa {
                        n: strip(n),
                        e: strip(e),
                    }
                }
                ("EC", Some("P-256")) => PublicKey::P256(point(32)?),
                ("EC", Some("P-384")) => PublicKey::P384(point(48)?),
                ("OKP", Some("Ed25519")) => PublicKey::Ed25519(b64(k.get("x")).filter(|x| x.len() == 32)?),
                _ => return None,
            };
            Some(Jwk {
                kid: k.get("kid").and_then(Value::as_str).map(str::to_owned),
                alg: k.get("alg").and_then(Value::as_str).map(str::to_owned),
                key,
            })
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum JwsError {
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    Algorithm(String),
    #[error("no key of the provider's JWKS matches ({0})")]
    NoKey(String),
    #[error("the signature does not verify")]
    Signature,
}

/// Checks a compact JWS against the keys and returns its claims.
fn verify_jws(token: &str, keys: &[Jwk]) -> Result<Map<String, Value>, JwsError> {
    use ring::signature as sig;

    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwsError::Malformed(format!("longer than {MAX_TOKEN_BYTES} bytes")));
    }
    let parts: Vec<&str> = token.split('.').collect();
    let &[head64, body64, sig64] = parts.as_slice() else {
        return Err(JwsError::Malformed("not a signed JWT (three base64url parts)".into()));
    };
    let decode = |part: &str, what: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|e| JwsError::Malformed(format!("{what}: not base64url: {e}")))
    };
    let header: Map<String, Value> = serde_json::from_slice(&decode(head64, "header")?)
        .map_err(|e| JwsError::Malformed(format!("header: not a JSON object: {e}")))?;
    if header.contains_key("crit") {
        return Err(JwsError::Malformed("header has critical extensions ('crit')".into()));
    }
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let kid = header.get("kid").and_then(Value::as_str);
    let signature = decode(sig64, "signature")?;
    let message = format!("{head64}.{body64}");

    type Check = fn(&PublicKey, &[u8], &[u8]) -> bool;
    fn rsa(params: &'static sig::RsaParameters, key: &PublicKey, msg: &[u8], s: &[u8]) -> bool {
        matches!(key, PublicKey::Rsa { n, e } if sig::RsaPublicKeyComponents { n, e }.verify(params, msg, s).is_ok())
    }
    let check: Check = match alg {
        "RS256" => |k, m, s| rsa(&sig::RSA_PKCS1_2048_8192_SHA256, k, m, s),
        "RS384" => |k, m, s| rsa(&sig::RSA_PKCS1_2048_8192_SHA384, k, m, s),
        "RS512" => |k, m, s| rsa(&sig::RSA_PKCS1_2048_8192_SHA512, k, m, s),
        "PS256" => |k, m, s| rsa(&sig::RSA_PSS_2048_8192_SHA256, k, m, s),
        "PS384" => |k, m, s| rsa(&sig::RSA_PSS_2048_8192_SHA384, k, m, s),
        "PS512" => |k, m, s| rsa(&sig::RSA_PSS_2048_8192_SHA512, k, m, s),
        "ES256" => {
            |k, m, s| matches!(k, PublicKey::P256(p) if sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, p).verify(m, s).is_ok())
        }
        "ES384" => {
            |k, m, s| matches!(k, PublicKey::P384(p) if sig::UnparsedPublicKey::new(&sig::ECDSA_P384_SHA384_FIXED, p).verify(m, s).is_ok())
        }
        "EdDSA" | "Ed25519" => {
            |k, m, s| matches!(k, PublicKey::Ed25519(p) if sig::UnparsedPublicKey::new(&sig::ED25519, p).verify(m, s).is_ok())
        }
        "none" | "" => return Err(JwsError::Algorithm("unsigned ID tokens (alg none) are refused".into())),
        a if a.starts_with("HS") => {
            return Err(JwsError::Algorithm(format!(
                "ID tokens signed with a shared secret ({a}) are not accepted: have the provider sign with RS256 or ES256"
            )));
        }
        other => {
            return Err(JwsError::Algorithm(format!(
                "unsupported signature algorithm '{other}'"
            )));
        }
    };
    let family = |key: &PublicKey| match key {
        PublicKey::Rsa { .. } => alg.starts_with("RS") || alg.starts_with("PS"),
        PublicKey::P256(_) => alg == "ES256",
        PublicKey::P384(_) => alg == "ES384",
        PublicKey::Ed25519(_) => alg == "EdDSA" || alg == "Ed25519",
    };
    let candidates: Vec<&Jwk> = keys
        .iter()
        .filter(|k| family(&k.key))
        .filter(|k| k.alg.as_deref().is_none_or(|a| a == alg))
        .filter(|k| kid.is_none_or(|id| k.kid.as_deref() == Some(id)))
        .collect();
    if candidates.is_empty() {
        return Err(JwsError::NoKey(format!("alg {alg}, kid {}", kid.unwrap_or("(none)"))));
    }
    if !candidates.iter().any(|k| check(&k.key, message.as_bytes(), &signature)) {
        return Err(JwsError::Signature);
    }
    serde_json::from_slice(&decode(body64, "payload")?)
        .map_err(|e| JwsError::Malformed(format!("payload: not a JSON object: {e}")))
}

/// The ID token checks of OpenID Connect Core §3.1.3.7 (after the signature).
fn check_id_token(
    claims: &Map<String, Value>,
    issuer: &str,
    client_id: &str,
    nonce: &str,
    now: i64,
) -> Result<(), String> {
    let text = |k: &str| claims.get(k).and_then(Value::as_str);
    let time = |k: &str| claims.get(k).and_then(Value::as_f64).map(|t| t as i64);
    if text("iss") != Some(issuer) {
        return Err(format!("issued by '{}', not by '{issuer}'", text("iss").unwrap_or("")));
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if !audiences.contains(&client_id) {
        return Err(format!("not meant for this client ('{client_id}' is not in 'aud')"));
    }
    if let Some(azp) = text("azp")
        && azp != client_id
    {
        return Err(format!("authorized party '{azp}' is not '{client_id}'"));
    }
    if audiences.len() > 1 && text("azp").is_none() {
        return Err("several audiences and no 'azp'".into());
    }
    match time("exp") {
        Some(exp) if now < exp + LEEWAY_SECS => {}
        Some(_) => return Err("expired".into()),
        None => return Err("no 'exp'".into()),
    }
    match time("iat") {
        Some(iat) if iat <= now + LEEWAY_SECS => {}
        Some(_) => return Err("issued in the future ('iat'): check the clocks".into()),
        None => return Err("no 'iat'".into()),
    }
    if time("nbf").is_some_and(|nbf| nbf > now + LEEWAY_SECS) {
        return Err("not valid yet ('nbf')".into());
    }
    if !text("nonce").is_some_and(|n| same_secret(n, nonce)) {
        return Err("its nonce is not the login's".into());
    }
    if text("sub").is_none_or(str::is_empty) {
        return Err("no 'sub'".into());
    }
    Ok(())
}

impl Security {
    /// The `Set-Cookie` of [`SSO_COOKIE`]: `SameSite=Lax` so that it comes
    /// back on the provider's redirect, and scoped to `/auth/sso`.
    pub fn sso_cookie_header(&self, state: Option<&str>) -> HeaderValue {
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        let text = match state {
            Some(s) => format!(
                "{SSO_COOKIE}={s}; Path=/auth/sso; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
                LOGIN_TTL.as_secs()
            ),
            None => format!("{SSO_COOKIE}=; Path=/auth/sso; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
        };
        // States are URL-safe base64: always a valid header value.
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
    }
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;
    use ring::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
    use serde_json::json;

    use super::*;

    fn mapping() -> ClaimMapping {
        ClaimMapping {
            username: "preferred_username".into(),
            role: "vigie_role".into(),
            communes: "vigie_communes".into(),
            business_lines: "vigie_business_lines".into(),
            role_map: [("police-municipale".to_owned(), Role::Supervisor)].into(),
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn claims_map_to_an_account_a_role_and_a_scope() {
        let id = map_claims(
            &claims(
                json!({"preferred_username": " Camille.Durand ", "name": "Camille Durand",
                "vigie_role": "operator", "vigie_communes": "dijon,chenove", "vigie_business_lines": ["lighting"]}),
            ),
            &mapping(),
        )
        .unwrap();
        assert_eq!(id.name, "camille.durand");
        assert_eq!(id.display_name, "Camille Durand");
        assert_eq!(id.role, Role::Operator);
        assert_eq!(id.scope, ScopeGrant::parse("dijon,chenove", "lighting").unwrap());

        let id = map_claims(
            &claims(
                json!({"preferred_username": "pm", "vigie_role": ["staff", "police-municipale"],
                "vigie_communes": ["*"], "vigie_business_lines": "*"}),
            ),
            &mapping(),
        )
        .unwrap();
        assert_eq!(
            id.role,
            Role::Supervisor,
            "mapped through role_map; unmapped values ignored"
        );
        assert!(id.scope.is_everywhere());
        assert_eq!(id.display_name, "pm");
    }

    #[test]
    fn missing_or_invalid_claims_refuse_the_login() {
        let full = json!({"preferred_username": "a", "vigie_role": "operator",
            "vigie_communes": "dijon", "vigie_business_lines": "lighting"});
        let without = |k: &str| {
            let mut c = claims(full.clone());
            c.remove(k);
            map_claims(&c, &mapping()).unwrap_err()
        };
        assert_eq!(without("vigie_role"), Refusal::Missing("vigie_role".into()));
        assert_eq!(without("vigie_communes"), Refusal::Missing("vigie_communes".into()));
        assert_eq!(without("vigie_business_lines").claim(), "vigie_business_lines");
        assert_eq!(without("preferred_username").claim(), "preferred_username");
        let with = |k: &str, v: Value| {
            let mut c = claims(full.clone());
            c.insert(k.into(), v);
            map_claims(&c, &mapping())
        };
        assert!(matches!(
            with("vigie_role", json!("mayor")),
            Err(Refusal::UnknownRole { .. })
        ));
        assert!(matches!(
            with("vigie_role", json!(["operator", "auditor"])),
            Err(Refusal::SeveralRoles { .. })
        ));
        assert!(with("vigie_role", json!(["operator", "operator"])).is_ok());
        assert!(matches!(with("vigie_role", json!([])), Err(Refusal::Missing(_))));
        assert!(matches!(with("vigie_role", json!(3)), Err(Refusal::NotText(_))));
        assert!(matches!(with("vigie_communes", json!("")), Err(Refusal::Missing(_))));
        assert!(matches!(with("vigie_communes", json!([])), Err(Refusal::Missing(_))));
        assert!(matches!(
            with("vigie_communes", json!("Not A Slug!")),
            Err(Refusal::BadScope { .. })
        ));
        assert!(matches!(
            with("preferred_username", json!("jean dupont")),
            Err(Refusal::BadName { .. })
        ));
        let e = without("vigie_role").to_string();
        assert!(e.contains("vigie_role"), "{e}");
    }

    #[test]
    fn provider_urls_must_be_https_except_on_loopback() {
        assert!(check_url("https://login.example/realms/dijon", "x").is_ok());
        assert!(check_url("http://127.0.0.1:8080", "x").is_ok());
        assert!(check_url("http://localhost:8080", "x").is_ok());
        assert!(check_url("http://[::1]:8080", "x").is_ok());
        assert!(check_url("http://login.example", "x").is_err());
        assert!(check_url("ftp://login.example", "x").is_err());
        assert!(check_url("not a url", "x").is_err());
    }

    fn sign(alg: &str, kid: &str, claims: &Value, signer: impl Fn(&[u8]) -> Vec<u8>) -> String {
        let head = URL_SAFE_NO_PAD.encode(json!({"alg": alg, "kid": kid, "typ": "JWT"}).to_string());
        let body = URL_SAFE_NO_PAD.encode(claims.to_string());
        let sig = signer(format!("{head}.{body}").as_bytes());
        format!("{head}.{body}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    fn es256() -> (EcdsaKeyPair, Value) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let point = pair.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "ec1", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])});
        (pair, jwk)
    }

    #[test]
    fn signatures_are_checked_against_the_matching_key() {
        let rng = SystemRandom::new();
        let (ec, ec_jwk) = es256();
        let ed_pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let ed = Ed25519KeyPair::from_pkcs8(ed_pkcs8.as_ref()).unwrap();
        let ed_jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed1",
            "x": URL_SAFE_NO_PAD.encode(ed.public_key().as_ref())});
        let keys = parse_jwks(&json!({"keys": [ec_jwk, ed_jwk, {"kty": "oct", "k": "c2VjcmV0"}]}));
        assert_eq!(keys.len(), 2, "symmetric keys are never used");
        let claims = json!({"sub": "u1", "iss": "https://idp"});
        let es_sign = |m: &[u8]| ec.sign(&rng, m).unwrap().as_ref().to_vec();

        let token = sign("ES256", "ec1", &claims, es_sign);
        assert_eq!(verify_jws(&token, &keys).unwrap()["sub"], "u1");
        let token = sign("EdDSA", "ed1", &claims, |m| ed.sign(m).as_ref().to_vec());
        assert_eq!(verify_jws(&token, &keys).unwrap()["sub"], "u1");

        // A payload changed after signing.
        let good = sign("ES256", "ec1", &claims, es_sign);
        let parts: Vec<&str> = good.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(json!({"sub": "admin", "iss": "https://idp"}).to_string());
        let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(verify_jws(&tampered, &keys), Err(JwsError::Signature));
        // An unknown key id: the caller reads the JWKS again.
        let token = sign("ES256", "other", &claims, es_sign);
        assert!(matches!(verify_jws(&token, &keys), Err(JwsError::NoKey(_))));
        // Algorithm confusion: an EC key never checks an RSA or HMAC signature.
        let token = sign("RS256", "ec1", &claims, es_sign);
        assert!(matches!(verify_jws(&token, &keys), Err(JwsError::NoKey(_))));
        let token = sign("HS256", "ec1", &claims, |_| vec![1, 2, 3]);
        assert!(matches!(verify_jws(&token, &keys), Err(JwsError::Algorithm(_))));
        let token = sign("none", "ec1", &claims, |_| vec![]);
        assert!(matches!(verify_jws(&token, &keys), Err(JwsError::Algorithm(_))));
        assert!(matches!(verify_jws("a.b", &keys), Err(JwsError::Malformed(_))));
        assert!(matches!(
            verify_jws(&"a".repeat(MAX_TOKEN_BYTES + 1), &keys),
            Err(JwsError::Malformed(_))
        ));
    }

    #[test]
    fn id_token_claims_are_checked() {
        let now = 1_800_000_000;
        let good = json!({"iss": "https://idp", "aud": "vigie", "sub": "u1", "nonce": "n1",
            "exp": now + 300, "iat": now});
        let check = |v: &Value| check_id_token(&claims(v.clone()), "https://idp", "vigie", "n1", now);
        assert_eq!(check(&good), Ok(()));
        let with = |k: &str, val: Value| {
            let mut c = good.clone();
            c[k] = val;
            check(&c)
        };
        assert!(with("iss", json!("https://evil")).is_err());
        assert!(with("aud", json!("other-client")).is_err());
        assert!(
            with("aud", json!(["vigie", "other"])).is_err(),
            "several audiences need azp"
        );
        let mut multi = good.clone();
        multi["aud"] = json!(["vigie", "other"]);
        multi["azp"] = json!("vigie");
        assert_eq!(check(&multi), Ok(()));
        assert!(with("azp", json!("other")).is_err());
        assert!(with("exp", json!(now - 61)).is_err());
        assert_eq!(with("exp", json!(now - 30)), Ok(()), "60 s of clock skew are tolerated");
        assert!(with("iat", json!(now + 3600)).is_err());
        assert!(with("nbf", json!(now + 3600)).is_err());
        assert!(with("nonce", json!("replayed")).is_err());
        assert!(with("sub", json!("")).is_err());
        let mut no_nonce = claims(good.clone());
        no_nonce.remove("nonce");
        assert!(check_id_token(&no_nonce, "https://idp", "vigie", "n1", now).is_err());
    }

    fn config() -> SsoConfig {
        SsoConfig {
            enabled: true,
            issuer: "https://login.example/realms/dijon".into(),
            client_id: "vigie".into(),
            client_secret: "s3cret".into(),
            redirect_url: "https://vigie.example/auth/sso/callback".into(),
            ..SsoConfig::default()
        }
    }

    #[test]
    fn the_configuration_is_checked_at_start() {
        assert!(Oidc::from_config(&SsoConfig::default(), true).unwrap().is_none());
        let err = |c: SsoConfig| match Oidc::from_config(&c, true) {
            Err(e) => e.to_string(),
            Ok(_) => String::new(),
        };
        let mut c = config();
        c.issuer = "http://login.example".into();
        assert!(err(c).contains("https"));
        let mut c = config();
        c.client_secret.clear();
        assert!(err(c).contains("VIGIE_SSO_CLIENT_SECRET"));
        let mut c = config();
        c.redirect_url = "https://vigie.example/callback".into();
        assert!(err(c).contains("/auth/sso/callback"));
        let mut c = config();
        c.scopes = "profile".into();
        assert!(err(c).contains("openid"));
        let mut c = config();
        c.role_map = [("pm".to_owned(), "sheriff".to_owned())].into();
        assert!(err(c).contains("sheriff"));
        let mut c = config();
        c.token_endpoint_auth = "private_key_jwt".into();
        assert!(err(c).contains("sso.token_endpoint_auth"));
        let mut c = config();
        c.ca_file = "/nonexistent/ca.pem".into();
        assert!(err(c).contains("sso.ca_file"));
        assert!(matches!(
            Oidc::from_config(&config(), false),
            Err(SsoError::Config(m)) if m.contains("security.enabled")
        ));
    }

    #[tokio::test]
    async fn callbacks_must_continue_a_login_of_this_browser() {
        let mut c = config();
        c.issuer = "http://127.0.0.1:9".into();
        let oidc = Oidc::from_config(&c, true).unwrap().unwrap();
        oidc.remember(
            "s1".into(),
            Pending {
                nonce: "n".into(),
                verifier: "v".into(),
                started: Instant::now(),
            },
        );
        let callback = Callback {
            code: Some("c".into()),
            state: Some("s1".into()),
            ..Callback::default()
        };
        assert!(matches!(
            oidc.finish(&callback, None).await,
            Err(SsoError::BadCallback(_))
        ));
        assert!(matches!(
            oidc.finish(&callback, Some("s2")).await,
            Err(SsoError::BadCallback(_))
        ));
        assert_eq!(
            oidc.pending_logins(),
            1,
            "a mismatched cookie does not consume the login"
        );
        let denied = Callback {
            state: Some("s1".into()),
            error: Some("access_denied<script>".into()),
            error_description: Some("User cancelled".into()),
            ..Callback::default()
        };
        match oidc.finish(&denied, Some("s1")).await {
            Err(SsoError::Denied { code, description }) => {
                assert_eq!(code, "access_deniedscript");
                assert_eq!(description.as_deref(), Some("User cancelled"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(oidc.pending_logins(), 0);
        // A forged error link shows no attacker-chosen text.
        match oidc.finish(&denied, Some("s1")).await {
            Err(SsoError::Denied { description, .. }) => assert_eq!(description, None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn started_logins_are_bounded() {
        let mut c = config();
        c.issuer = "http://127.0.0.1:9".into();
        let oidc = Oidc::from_config(&c, true).unwrap().unwrap();
        let start = Instant::now();
        for n in 0..MAX_PENDING + 5 {
            oidc.remember(
                format!("s{n}"),
                Pending {
                    nonce: String::new(),
                    verifier: String::new(),
                    started: start + Duration::from_micros(n as u64),
                },
            );
        }
        assert_eq!(oidc.pending_logins(), MAX_PENDING);
        assert!(oidc.take("s0").is_none(), "the oldest went first");
        assert!(oidc.take(&format!("s{}", MAX_PENDING + 4)).is_some());
    }
}

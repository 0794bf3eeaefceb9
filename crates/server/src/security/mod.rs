//! Who is calling: every protected request is authenticated here, once,
//! before any handler runs. Handlers take a [`Caller`] and ask it whether
//! the action is allowed (`caller.check(Action::...)?`); scope filtering uses
//! the same principal.
//!
//! Credentials, in the order they are looked for:
//! - `Authorization: Bearer <token>` or `X-API-Key: <token>`: an API key
//!   (`vgk_…`, rate limited) or a service token (`vgs_…`);
//! - the `vigie_session` cookie of a console session, with the session's
//!   anti-CSRF token in `X-CSRF-Token` on every change.
//!
//! Everything is checked against in-memory copies (loaded at start, written
//! through to the store), so authorizing a request costs a hash and two map
//! lookups, not a database round trip.

mod keys;
mod login;
pub mod oidc;
pub mod secrets;
mod sessions;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;
use vigie_core::access::{Credential, Principal, Role, ScopeGrant};
use vigie_core::account::Account;
use vigie_core::{Scope, Timestamp};
use vigie_store::Store;

pub use keys::{IssuedCredential, NewCredential};
pub use login::{LoginError, NewAccount};
pub use sessions::{CSRF_HEADER, SESSION_COOKIE, cookie};

use crate::api::{ApiError, AppState};
use crate::config::SecurityConfig;
use secrets::PasswordHashing;

/// The authenticated principal of a request, and where the request came from.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// The client's address (the TCP peer).
    pub source: Option<IpAddr>,
    /// The console session's hash, when the request came with one (logout ends it).
    pub session: Option<String>,
}

impl std::ops::Deref for Caller {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.principal
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::Unauthorized("authentication required".into()))
    }
}

/// The client's address as an extractor, for public routes (logins).
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(peer(&parts.extensions)))
    }
}

/// The client's address, when the server recorded it.
pub fn peer(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// Authentication state: the caches of accounts, sessions and API
/// credentials, the password hashing and the login throttle.
pub struct Security {
    pub config: SecurityConfig,
    store: Arc<dyn Store>,
    pub hashing: PasswordHashing,
    /// Cookies get `Secure` when the HTTP listener speaks TLS.
    secure_cookies: bool,
    accounts: RwLock<HashMap<String, Arc<Account>>>,
    sessions: RwLock<HashMap<String, Arc<sessions::LiveSession>>>,
    credentials: RwLock<HashMap<String, Arc<keys::LiveCredential>>>,
    /// Serializes the flusher with revocations and logouts.
    writes: tokio::sync::Mutex<()>,
    throttle: login::Throttle,
}

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error(transparent)]
    Store(#[from] vigie_store::StoreError),
    #[error(transparent)]
    Hashing(#[from] secrets::HashingError),
}

impl Security {
    /// Loads accounts, live sessions and API credentials from the store.
    pub async fn load(
        config: SecurityConfig,
        store: Arc<dyn Store>,
        secure_cookies: bool,
    ) -> Result<Arc<Self>, SecurityError> {
        let hashing = PasswordHashing::new(config.argon2_memory_kib, config.argon2_iterations)?;
        let now = Timestamp::now();
        store.prune_sessions(now).await?;
        let accounts = store
            .accounts()
            .await?
            .into_iter()
            .map(|a| (a.name.clone(), Arc::new(a)))
            .collect();
        let security = Self {
            throttle: login::Throttle::new(&config),
            config,
            hashing,
            secure_cookies,
            accounts: RwLock::new(accounts),
            sessions: RwLock::new(HashMap::new()),
            credentials: RwLock::new(HashMap::new()),
            writes: tokio::sync::Mutex::new(()),
            store,
        };
        security.load_credentials().await?;
        Ok(Arc::new(security))
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    fn account(&self, name: &str) -> Option<Arc<Account>> {
        self.accounts.read().ok()?.get(name).cloned()
    }

    /// Replaces the cached copy after the store has the new one.
    fn cache_account(&self, account: Account) {
        if let Ok(mut accounts) = self.accounts.write() {
            accounts.insert(account.name.clone(), Arc::new(account));
        }
    }

    fn forget_account(&self, name: &str) {
        if let Ok(mut accounts) = self.accounts.write() {
            accounts.remove(name);
        }
    }

    /// Whether role and scope let the principal read an entity in `scope`:
    /// personal-data business lines (CCTV by default) are hidden from roles
    /// that may not read personal data, as if out of scope. (Writes and
    /// devices follow the grant alone: `Principal::check_in`.)
    pub fn sees(&self, principal: &Principal, scope: Option<&Scope>) -> bool {
        principal.sees(scope)
            && (principal.role.allows(vigie_core::Action::ReadPersonalData) || !self.is_personal(scope))
    }

    /// Whether the principal sees every entity (the common case of
    /// queries' fast path: no per-entity check).
    pub fn sees_everything(&self, principal: &Principal) -> bool {
        principal.scope.is_everywhere()
            && (principal.role.allows(vigie_core::Action::ReadPersonalData)
                || self.config.personal_data_business_lines.is_empty())
    }

    /// Whether entities in `scope` hold personal data (reads are audited).
    pub fn is_personal(&self, scope: Option<&Scope>) -> bool {
        scope.is_some_and(|s| {
            self.config
                .personal_data_business_lines
                .iter()
                .any(|l| l == s.business_line.as_str())
        })
    }

    /// Authenticates a request from its headers.
    pub async fn authenticate(
        &self,
        method: &Method,
        headers: &HeaderMap,
        source: Option<IpAddr>,
    ) -> Result<Caller, ApiError> {
        if !self.config.enabled {
            return Ok(Caller {
                principal: Principal {
                    subject: "anonymous".into(),
                    credential: Credential::Anonymous,
                    role: Role::Administrator,
                    scope: ScopeGrant::everywhere(),
                },
                source,
                session: None,
            });
        }
        if let Some(token) = keys::presented_token(headers) {
            let principal = self.check_credential(token)?;
            return Ok(Caller {
                principal,
                source,
                session: None,
            });
        }
        if let Some(token) = sessions::cookie(headers, SESSION_COOKIE) {
            let (principal, session) = self.check_session(token, method, headers).await?;
            return Ok(Caller {
                principal,
                source,
                session: Some(session),
            });
        }
        Err(ApiError::Unauthorized(
            "authentication required: log in, or send an API key or service token in 'Authorization: Bearer'".into(),
        ))
    }

    /// Writes what changed in memory (last use of keys, session activity) to
    /// the store every `interval`, and once more when stopping.
    pub async fn run_flusher(self: Arc<Self>, interval: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => break,
            }
            self.flush().await;
        }
        self.flush().await;
    }

    async fn flush(&self) {
        if let Err(e) = self.flush_credentials().await {
            tracing::warn!(error = %e, "cannot record API credentials' last use");
        }
        if let Err(e) = self.flush_sessions().await {
            tracing::warn!(error = %e, "cannot record sessions' activity");
        }
        self.throttle.prune();
    }
}

/// The middleware of every protected route: no credential, no handler.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let source = peer(req.extensions());
    match state.security.authenticate(req.method(), req.headers(), source).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => {
            let unauthorized = matches!(e, ApiError::Unauthorized(_));
            let mut res = e.into_response();
            if unauthorized {
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"vigie\""),
                );
            }
            res
        }
    }
}

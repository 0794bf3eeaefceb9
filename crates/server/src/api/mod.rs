//! Vigie's HTTP APIs: NGSI-LD (`/ngsi-ld/v1`), device provisioning (`/iot`),
//! Vigie's own REST API (`/api/v1`) and operations (`/health`, `/metrics`).

mod accounts;
mod alarms;
mod audit;
mod commands;
mod devices;
pub(crate) use alarms::{act_on_alarm, visible_alarm};
pub(crate) use commands::send_command;
pub mod error;
pub mod hardening;
pub(crate) mod ngsi;
mod ops;
mod rules;
mod sso;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::{Router, body::Bytes};
use serde_json::Value;
use tower_http::trace::TraceLayer;
use vigie_store::Store;

pub use error::ApiError;

use crate::config::Config;
use crate::ingest::{DeviceRegistry, IngestHandle};
use crate::metrics::Metrics;
use crate::twin::Twin;

/// What every handler can reach. Each middleware layer and extractor clones
/// it for every request: one reference count, rather than one per service
/// (and a lock for the cancellation token), is what a clone costs.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The services behind [`AppState`].
pub struct Services {
    /// NGSI-LD tenants; the default one is also `twin`, `ingest` and `store`.
    pub tenants: Arc<crate::tenants::Tenants>,
    pub config: Arc<Config>,
    pub twin: Arc<Twin>,
    pub ingest: IngestHandle,
    pub registry: Arc<DeviceRegistry>,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub security: Arc<crate::security::Security>,
    pub audit: Arc<crate::audit::Audit>,
    /// JSON-LD @context documents.
    pub contexts: Arc<crate::contexts::Contexts>,
    /// OpenID Connect single sign-on, when `[sso]` enables it.
    pub sso: Option<Arc<crate::security::oidc::Oidc>>,
    /// The alarm desk.
    pub alarms: Arc<crate::alarms::Alarms>,
    /// The automation rules.
    pub rulebook: Arc<crate::rules::Rulebook>,
    /// Commands to equipment and their acknowledgements.
    pub commands: Arc<crate::commands::Commands>,
    /// The operator console's base map.
    pub console: Arc<crate::console::Console>,
    /// Cancelled at shutdown: long-lived answers (server-sent events) end.
    pub stop: tokio_util::sync::CancellationToken,
}

/// Vigie's routes: the protected ones (and `extra`, e.g. the demo's) behind
/// authentication, the public ones (health, login) beside them.
pub fn router(state: AppState, extra: Router) -> Router {
    let limits = state.config.http.clone();
    let authenticate = axum::middleware::from_fn_with_state(state.clone(), crate::security::authenticate);
    let protected = Router::new()
        .merge(ngsi::routes(&state))
        .merge(devices::routes())
        .merge(ops::routes())
        .merge(accounts::routes())
        .merge(audit::routes())
        .merge(commands::routes())
        .merge(alarms::routes())
        .merge(rules::routes())
        .route_layer(authenticate.clone());
    // `layer`, not `route_layer`: `extra` may have no routes at all.
    let extra = extra.layer(authenticate);
    Router::new()
        .merge(protected)
        .merge(ops::public_routes())
        .merge(ngsi::public_routes())
        .merge(accounts::public_routes())
        .merge(sso::public_routes())
        .merge(crate::console::routes(&state))
        .with_state(state)
        .merge(extra)
        // Timeouts, panics and the rest of the hardening wrap the whole
        // application, extra routes included: see `hardening::harden`.
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(TraceLayer::new_for_http())
}

/// A JSON request body, bounded, with NGSI-LD errors: not JSON is
/// `InvalidRequest`, too large is 413.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| match e {
            BytesRejection::FailedToBufferBody(inner) if inner.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::PayloadTooLarge("the request body exceeds the configured limit (http.max_body_bytes)".into())
            }
            other => ApiError::InvalidRequest(format!("cannot read the request body: {other}")),
        })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::InvalidRequest(format!("the body is not valid JSON: {e}")))
    }
}

/// Query-string parameters; a repeated parameter keeps its last value.
pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        if query.len() > 16 * 1024 {
            return Err(ApiError::TooComplexQuery("the query string exceeds 16 KiB".into()));
        }
        serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .map(|pairs| Params(pairs.into_iter().collect()))
            .map_err(|e| ApiError::InvalidRequest(format!("malformed query string: {e}")))
    }
}

impl Params {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// A non-negative integer parameter.
    pub fn usize(&self, key: &str) -> Result<Option<usize>, ApiError> {
        self.get(key)
            .map(|v| {
                v.parse()
                    .map_err(|_| ApiError::BadRequestData(format!("'{key}' must be a non-negative integer, got '{v}'")))
            })
            .transpose()
    }

    /// A comma-separated list parameter.
    pub fn list(&self, key: &str) -> Option<Vec<String>> {
        self.get(key).map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
    }

    /// Whether `options` (comma-separated) contains `option`.
    pub fn has_option(&self, option: &str) -> bool {
        self.get("options")
            .is_some_and(|o| o.split(',').any(|x| x.trim() == option))
    }
}

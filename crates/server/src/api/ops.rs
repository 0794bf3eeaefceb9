//! Operations endpoints: liveness/readiness and Prometheus metrics.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use vigie_core::Action;

use super::{ApiError, AppState, Params};
use crate::security::Caller;

/// Behind authentication: platform-wide data (global actions).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/dead-letters", get(dead_letters))
}

/// Open to load balancers and monitors: says whether Vigie works, nothing more.
pub fn public_routes() -> Router<AppState> {
    Router::new().route("/health", get(health))
}

/// 200 when the store answers, 503 otherwise, with what an operator checks first.
async fn health(State(s): State<AppState>) -> impl IntoResponse {
    let store = s.store.count_dead_letters().await;
    if let Err(e) = &store {
        // The engine's message (SQL, paths) is for the log, not for whoever polls /health.
        tracing::warn!(error = %e, "health check: the store does not answer");
    }
    let mqtt = s.metrics.mqtt_connected.load(Ordering::Relaxed) == 1;
    if let Err(e) = &store {
        tracing::error!(error = %e, "health check: the store does not answer");
    }
    // Public: no counts, no error text (they are in the log and /metrics).
    let body = json!({
        "status": if store.is_ok() { "ok" } else { "degraded" },
        "store": if store.is_ok() { "ok" } else { "unavailable" },
        "mqtt": if mqtt { "connected" } else { "disconnected" },
        "version": env!("CARGO_PKG_VERSION"),
    });
    let status = if store.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

async fn metrics(State(s): State<AppState>, caller: Caller) -> Result<impl IntoResponse, ApiError> {
    caller.check(Action::ReadOperations)?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(s.twin.len()),
    ))
}

/// Refused messages, newest first: what a device sent and why Vigie refused it.
async fn dead_letters(
    State(s): State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<impl IntoResponse, ApiError> {
    caller.check(Action::ReadOperations)?;
    let limit = params.usize("limit")?.unwrap_or(50).min(1000);
    let offset = params.usize("offset")?.unwrap_or(0);
    let total = s.store.count_dead_letters().await?;
    let letters = s.store.dead_letters(limit, offset).await?;
    let items: Vec<_> = letters
        .into_iter()
        .map(|d| {
            json!({
                "receivedAt": vigie_core::entity::format_timestamp(d.received_at),
                "source": d.source, "topic": d.topic, "reason": d.reason, "detail": d.detail,
                "payload": String::from_utf8_lossy(&d.payload),
            })
        })
        .collect();
    Ok(Json(json!({"total": total, "items": items})))
}

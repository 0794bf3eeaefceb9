//! Device provisioning, shaped like the FIWARE IoT Agent's `/iot/devices`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use vigie_core::device::Provisioning;

use super::{ApiError, AppState, JsonBody, Params};
use crate::security::Caller;

/// Most devices one provisioning request may carry.
const MAX_DEVICES_PER_REQUEST: usize = 10_000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/iot/devices", get(list).post(provision))
        .route("/iot/devices/{device_id}", get(show).delete(remove))
}

/// Provisions devices: all are validated first, so a bad one provisions none.
async fn provision(
    State(s): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<impl IntoResponse, ApiError> {
    let doc: Provisioning = serde_json::from_value(body)
        .map_err(|e| ApiError::BadRequestData(format!("not an IoT Agent provisioning document: {e}")))?;
    if doc.devices.len() > MAX_DEVICES_PER_REQUEST {
        return Err(ApiError::BadRequestData(format!(
            "{} devices in one request; at most {MAX_DEVICES_PER_REQUEST}",
            doc.devices.len()
        )));
    }
    let devices = doc
        .devices
        .into_iter()
        .map(|d| d.validate().map_err(|e| ApiError::BadRequestData(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let result = s.store.put_devices(&devices).await;
    s.audit
        .devices_provisioned(&caller, &s.registry, &devices, &result)
        .await?;
    result?;
    for d in devices {
        s.registry.insert(d);
    }
    Ok(StatusCode::CREATED)
}

async fn list(State(s): State<AppState>, params: Params) -> Result<impl IntoResponse, ApiError> {
    let limit = params.usize("limit")?.unwrap_or(20).min(1000);
    let offset = params.usize("offset")?.unwrap_or(0);
    let (devices, count) = s.registry.list(offset, limit);
    Ok(Json(json!({"count": count, "devices": devices})))
}

async fn show(State(s): State<AppState>, Path(device_id): Path<String>) -> Result<impl IntoResponse, ApiError> {
    s.registry
        .get(&device_id)
        .map(|d| Json(json!(*d)))
        .ok_or_else(|| ApiError::NotFound(format!("no device '{device_id}'")))
}

async fn remove(
    State(s): State<AppState>,
    caller: Caller,
    Path(device_id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let before = s.registry.get(&device_id);
    let result = s.store.delete_device(&device_id).await;
    s.audit
        .device_deleted(&caller, &device_id, before.as_deref(), &result)
        .await?;
    if !result? {
        return Err(ApiError::NotFound(format!("no device '{device_id}'")));
    }
    s.registry.remove(&device_id);
    Ok(StatusCode::NO_CONTENT)
}

//! Device provisioning, shaped like the FIWARE IoT Agent's `/iot/devices`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use vigie_core::device::Provisioning;

use vigie_core::Action;

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
    caller.check(Action::ManageDevices)?;
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
    for d in &devices {
        caller.check_in(Action::ManageDevices, d.scope.as_ref())?;
        // Replacing a device moves it: its current scope must be the caller's too.
        if let Some(current) = s.registry.get(&d.device_id) {
            caller.check_in(Action::ManageDevices, current.scope.as_ref())?;
        }
    }
    s.store.put_devices(&devices).await?;
    for d in devices {
        s.registry.insert(d);
    }
    Ok(StatusCode::CREATED)
}

async fn list(State(s): State<AppState>, caller: Caller, params: Params) -> Result<impl IntoResponse, ApiError> {
    caller.check(Action::ReadDevices)?;
    let limit = params.usize("limit")?.unwrap_or(20).min(1000);
    let offset = params.usize("offset")?.unwrap_or(0);
    let (devices, count) = s.registry.list(|d| caller.sees(d.scope.as_ref()), offset, limit);
    Ok(Json(json!({"count": count, "devices": devices})))
}

async fn show(
    State(s): State<AppState>,
    caller: Caller,
    Path(device_id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    caller.check(Action::ReadDevices)?;
    s.registry
        .get(&device_id)
        .filter(|d| caller.sees(d.scope.as_ref()))
        .map(|d| Json(json!(*d)))
        .ok_or_else(|| ApiError::NotFound(format!("no device '{device_id}'")))
}

async fn remove(
    State(s): State<AppState>,
    caller: Caller,
    Path(device_id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    caller.check(Action::ManageDevices)?;
    let device = s
        .registry
        .get(&device_id)
        .filter(|d| caller.sees(d.scope.as_ref()))
        .ok_or_else(|| ApiError::NotFound(format!("no device '{device_id}'")))?;
    caller.check_in(Action::ManageDevices, device.scope.as_ref())?;
    if !s.store.delete_device(&device_id).await? {
        return Err(ApiError::NotFound(format!("no device '{device_id}'")));
    }
    s.registry.remove(&device_id);
    Ok(StatusCode::NO_CONTENT)
}

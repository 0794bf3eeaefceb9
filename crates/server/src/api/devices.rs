//! Device provisioning, shaped like the FIWARE IoT Agent's `/iot/devices`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use vigie_core::device::ProvisioningRequest;
use vigie_core::{Device, Transport};

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
///
/// MQTT passwords: a device may bring a plaintext `mqtt_password` (hashed
/// here, never stored, logged or returned) or an `mqtt_password_hash`. An IoT
/// Agent JSON device with neither keeps the password it already has, or, if
/// new, gets a generated one, returned **once** in the response's
/// `credentials`.
async fn provision(
    State(s): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody,
) -> Result<impl IntoResponse, ApiError> {
    s.audit
        .check(&caller, Action::ManageDevices, "device.provision", None)
        .await?;
    let doc: ProvisioningRequest = serde_json::from_value(body)
        .map_err(|e| ApiError::BadRequestData(format!("not an IoT Agent provisioning document: {e}")))?;
    if doc.devices.len() > MAX_DEVICES_PER_REQUEST {
        return Err(ApiError::BadRequestData(format!(
            "{} devices in one request; at most {MAX_DEVICES_PER_REQUEST}",
            doc.devices.len()
        )));
    }
    let random_failed = |e: anyhow::Error| ApiError::Internal(format!("{e:#}"));
    let mut devices = Vec::with_capacity(doc.devices.len());
    let mut credentials = Vec::new();
    for spec in doc.devices {
        let salt = crate::ingest::gatekeeper::random_bytes().map_err(random_failed)?;
        let mut device = spec
            .into_device(salt)
            .map_err(|e| ApiError::BadRequestData(e.to_string()))?;
        if device.mqtt_password_hash.is_none() && matches!(device.transport, Transport::IotAgentJson { .. }) {
            match s
                .registry
                .get(&device.device_id)
                .and_then(|d| d.mqtt_password_hash.clone())
            {
                Some(existing) => device.mqtt_password_hash = Some(existing),
                None => {
                    let (secret, hash) = crate::ingest::gatekeeper::new_secret().map_err(random_failed)?;
                    device.mqtt_password_hash = Some(hash);
                    credentials.push(json!({
                        "device_id": device.device_id,
                        "mqtt_username": device.device_id,
                        "mqtt_password": secret.expose(),
                    }));
                }
            }
        }
        devices.push(device);
    }
    for d in &devices {
        let target = Some(d.device_id.as_str());
        s.audit
            .check_in(
                &caller,
                Action::ManageDevices,
                d.scope.as_ref(),
                "device.provision",
                target,
            )
            .await?;
        // Replacing a device moves it: its current scope must be the caller's too.
        if let Some(current) = s.registry.get(&d.device_id) {
            s.audit
                .check_in(
                    &caller,
                    Action::ManageDevices,
                    current.scope.as_ref(),
                    "device.provision",
                    target,
                )
                .await?;
        }
    }
    let result = s.store.put_devices(&devices).await;
    s.audit
        .devices_provisioned(&caller, &s.registry, &devices, &result)
        .await?;
    result?;
    let provisioned = devices.len();
    for d in devices {
        s.registry.insert(d);
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({"provisioned": provisioned, "credentials": credentials})),
    ))
}

/// A device as the API shows it: without its password hash.
fn public(device: &Device) -> Value {
    let mut v = json!(device);
    if let Some(o) = v.as_object_mut() {
        let had = o.remove("mqtt_password_hash").is_some();
        o.insert("has_mqtt_password".into(), Value::Bool(had));
    }
    v
}

async fn list(State(s): State<AppState>, caller: Caller, params: Params) -> Result<impl IntoResponse, ApiError> {
    caller.check(Action::ReadDevices)?;
    let limit = params.usize("limit")?.unwrap_or(20).min(1000);
    let offset = params.usize("offset")?.unwrap_or(0);
    let (devices, count) = s.registry.list(|d| caller.sees(d.scope.as_ref()), offset, limit);
    let devices: Vec<Value> = devices.iter().map(|d| public(d)).collect();
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
        .map(|d| Json(public(&d)))
        .ok_or_else(|| ApiError::NotFound(format!("no device '{device_id}'")))
}

async fn remove(
    State(s): State<AppState>,
    caller: Caller,
    Path(device_id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    s.audit
        .check(&caller, Action::ManageDevices, "device.delete", Some(&device_id))
        .await?;
    let device = s
        .registry
        .get(&device_id)
        .filter(|d| caller.sees(d.scope.as_ref()))
        .ok_or_else(|| ApiError::NotFound(format!("no device '{device_id}'")))?;
    s.audit
        .check_in(
            &caller,
            Action::ManageDevices,
            device.scope.as_ref(),
            "device.delete",
            Some(&device_id),
        )
        .await?;
    let before = Some(device);
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

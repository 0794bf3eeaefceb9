//! `/api/v1/commands`: sending commands to equipment and following them.
//!
//! - `POST /api/v1/commands` `{"entity", "command", "value"}`: 202 with the
//!   command (state `sent`, or `failed` when it could not leave); audited.
//! - `GET /api/v1/commands?entity=<id>`: the entity's latest commands.
//! - `GET /api/v1/commands/{id}`: one command.
//!
//! Sending needs the right to change the entity (`write-entities` in its
//! scope); reading follows the entity's sight, like the entity itself.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use vigie_core::command::Command;
use vigie_core::{Action, EntityId};

use super::{ApiError, AppState, JsonBody, Params};
use crate::security::Caller;

/// Most commands listed for one entity.
const MAX_LISTED: usize = 100;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/commands", get(list).post(send))
        .route("/api/v1/commands/{id}", get(one))
}

fn entity_id(text: &str) -> Result<EntityId, ApiError> {
    EntityId::new(text).map_err(|e| ApiError::BadRequestData(format!("'{text}' is not an entity id: {e}")))
}

/// Sends a command to the device of an entity the caller may change; the
/// one way the API and the console send commands.
pub(crate) async fn send_command(
    s: &AppState,
    caller: &Caller,
    id: &EntityId,
    name: &str,
    value: &Value,
) -> Result<Command, ApiError> {
    let entity = super::ngsi::visible(s, caller, s.tenants.default_tenant(), id)?;
    super::ngsi::check_writable(s, caller, "command.send", id, Some(&entity)).await?;
    let command = s.commands.send(&entity, name, value, &caller.principal.subject).await?;
    s.audit
        .record(vigie_core::audit::AuditEvent {
            target: Some(id.to_string()),
            detail: Some(format!(
                "{name} = {} ({}, {})",
                command.value,
                command.id,
                command.state.as_str()
            )),
            ..crate::audit::event(caller, "command.send")
        })
        .await?;
    Ok(command)
}

async fn send(State(s): State<AppState>, caller: Caller, JsonBody(body): JsonBody) -> Result<Response, ApiError> {
    let field = |name: &str| {
        body.get(name)
            .ok_or_else(|| ApiError::BadRequestData(format!("the command needs '{name}'")))
    };
    let id = entity_id(field("entity")?.as_str().unwrap_or_default())?;
    let name = field("command")?
        .as_str()
        .ok_or_else(|| ApiError::BadRequestData("'command' must be a string".into()))?;
    let command = send_command(&s, &caller, &id, name, field("value")?).await?;
    Ok((StatusCode::ACCEPTED, Json(command)).into_response())
}

async fn list(State(s): State<AppState>, caller: Caller, params: Params) -> Result<Json<Value>, ApiError> {
    caller.check(Action::ReadEntities)?;
    let id = entity_id(
        params
            .get("entity")
            .ok_or_else(|| ApiError::BadRequestData("give the entity: ?entity=<id>".into()))?,
    )?;
    super::ngsi::visible(&s, &caller, s.tenants.default_tenant(), &id)?;
    let commands = s.commands.of_entity(id.as_str(), MAX_LISTED).await?;
    Ok(Json(json!(commands)))
}

async fn one(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Json<Command>, ApiError> {
    caller.check(Action::ReadEntities)?;
    let missing = || ApiError::NotFound(format!("no command '{id}'"));
    let command = s.store.command(&id).await?.ok_or_else(missing)?;
    // A command of an entity out of sight reads like a missing one.
    super::ngsi::visible(&s, &caller, s.tenants.default_tenant(), &command.entity_id).map_err(|_| missing())?;
    Ok(Json(command))
}

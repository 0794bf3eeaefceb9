//! `/api/v1/alarms`: the alarm board and what operators do on it.
//!
//! - `GET /api/v1/alarms[?severity=&commune=&line=&state=&shelved=true]`:
//!   open alarms in the caller's sight, most urgent then oldest first
//!   (shelved ones only with `shelved=true`).
//! - `GET /api/v1/alarms/{id}`: one alarm, open or closed.
//! - `POST /api/v1/alarms/{id}/actions` `{"action": "acknowledge" | "assign"
//!   | "comment" | "shelve" | "unshelve" | "close", "to"?, "text"?,
//!   "until"?}`: the alarm after it; audited.
//!
//! Acting needs `write-entities` in the alarm source's scope.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;
use vigie_core::Action;
use vigie_core::alarm::{Alarm, AlarmAction, Severity};

use super::{ApiError, AppState, JsonBody, Params};
use crate::security::Caller;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/alarms", get(list))
        .route("/api/v1/alarms/{id}", get(one))
        .route("/api/v1/alarms/{id}/actions", post(act))
}

fn sees(s: &AppState, caller: &Caller, alarm: &Alarm) -> bool {
    s.security.sees(&caller.principal, alarm.scope.as_ref())
}

async fn list(State(s): State<AppState>, caller: Caller, params: Params) -> Result<Json<Vec<Alarm>>, ApiError> {
    caller.check(Action::ReadEntities)?;
    let severity: Option<Severity> = params
        .get("severity")
        .map(str::parse)
        .transpose()
        .map_err(ApiError::BadRequestData)?;
    let state = params.get("state");
    if let Some(state) = state
        && !["active", "acknowledged", "cleared"].contains(&state)
    {
        return Err(ApiError::BadRequestData(format!(
            "'{state}' is not an open alarm's state: expected active, acknowledged or cleared"
        )));
    }
    let commune = params.get("commune");
    let line = params.get("line");
    let shelved = params.get("shelved") == Some("true");
    let now = vigie_core::Timestamp::now();
    let alarms = s
        .alarms
        .open()
        .into_iter()
        .filter(|a| sees(&s, &caller, a))
        .filter(|a| severity.is_none_or(|sev| a.severity == sev))
        .filter(|a| state.is_none_or(|st| a.state.as_str() == st))
        .filter(|a| commune.is_none_or(|c| a.scope.as_ref().is_some_and(|sc| sc.commune.as_str() == c)))
        .filter(|a| line.is_none_or(|l| a.scope.as_ref().is_some_and(|sc| sc.business_line.as_str() == l)))
        .filter(|a| shelved || !a.is_shelved(now))
        .collect();
    Ok(Json(alarms))
}

/// The alarm `id` if the caller sees its equipment; one out of sight reads
/// like a missing one.
pub(crate) async fn visible_alarm(s: &AppState, caller: &Caller, id: &str) -> Result<Alarm, ApiError> {
    s.alarms
        .get(id)
        .await?
        .filter(|a| sees(s, caller, a))
        .ok_or_else(|| ApiError::NotFound(format!("no alarm '{id}'")))
}

/// One alarm, with the procedure to follow for its type.
async fn one(State(s): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    caller.check(Action::ReadEntities)?;
    let alarm = visible_alarm(&s, &caller, &id).await?;
    let mut body = serde_json::to_value(&alarm).map_err(|e| ApiError::Internal(e.to_string()))?;
    if let (Some(obj), Some(p)) = (body.as_object_mut(), s.alarms.procedure(&alarm.alarm_type)) {
        obj.insert("procedure".into(), serde_json::to_value(p).unwrap_or(Value::Null));
    }
    Ok(Json(body))
}

/// The action a request names, with its argument.
fn action(body: &Value) -> Result<AlarmAction, ApiError> {
    let text = |name: &str| {
        body.get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| ApiError::BadRequestData(format!("this action needs '{name}' (a string)")))
    };
    match body.get("action").and_then(Value::as_str) {
        Some("acknowledge") => Ok(AlarmAction::Acknowledge),
        Some("assign") => Ok(AlarmAction::Assign(text("to")?)),
        Some("comment") => Ok(AlarmAction::Comment(text("text")?)),
        Some("shelve") => {
            let until = text("until")?;
            until
                .parse()
                .map(AlarmAction::Shelve)
                .map_err(|e| ApiError::BadRequestData(format!("'until' must be an RFC 3339 time, got '{until}': {e}")))
        }
        Some("unshelve") => Ok(AlarmAction::Unshelve),
        Some("close") => Ok(AlarmAction::Close),
        Some("step") => {
            let step = body
                .get("step")
                .and_then(Value::as_u64)
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n >= 1)
                .ok_or_else(|| ApiError::BadRequestData("'step' is the step's number, from 1".into()))?;
            // The procedure's length is checked by the caller, who knows the alarm.
            Ok(AlarmAction::CompleteStep { step: step - 1, of: 0 })
        }
        _ => Err(ApiError::BadRequestData(
            "'action' must be acknowledge, assign, comment, shelve, unshelve, close or step".into(),
        )),
    }
}

/// Acts on an alarm the caller sees, as its role allows in the alarm's
/// scope (refusals audited); a step is checked against the procedure of
/// the alarm's type. The one way the API and the console act on alarms.
pub(crate) async fn act_on_alarm(
    s: &AppState,
    caller: &Caller,
    id: &str,
    mut action: AlarmAction,
) -> Result<Alarm, ApiError> {
    let alarm = visible_alarm(s, caller, id).await?;
    if let AlarmAction::CompleteStep { of, .. } = &mut action {
        *of = s.alarms.procedure(&alarm.alarm_type).map_or(0, |p| p.steps.len());
    }
    s.audit
        .check_in(
            caller,
            Action::WriteEntities,
            alarm.scope.as_ref(),
            action.verb(),
            Some(id),
        )
        .await?;
    s.alarms.act(id, &action, caller).await
}

async fn act(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Alarm>, ApiError> {
    Ok(Json(act_on_alarm(&s, &caller, &id, action(&body)?).await?))
}

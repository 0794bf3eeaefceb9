//! The equipment panel: one asset's attributes with their units and times,
//! its relations both ways (a cabinet and its lights, a light and its
//! group), its recent state changes, and the chart of its measures (drawn
//! by console.js from the temporal API).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use vigie_core::{AttributeKind, Entity, EntityId, Timestamp};
use vigie_store::HistorySelection;

use super::{Sight, Viewer, display_name, render};
use crate::api::{ApiError, AppState};
use crate::security::Caller;

/// Most related assets listed (the count says how many there are).
const MAX_RELATED: usize = 50;
/// Most recent state changes listed.
const RECENT_EVENTS: usize = 10;
/// Attributes whose changes are the asset's events.
const STATE_ATTRIBUTES: [&str; 4] = ["status", "deviceState", "powerState", "workingMode"];
/// Most measures offered for the chart.
const MAX_CHARTED: usize = 6;

pub(super) struct Row {
    name: String,
    value: String,
    unit: &'static str,
    observed: String,
}

pub(super) struct Related {
    id: String,
    name: String,
    via: String,
}

/// An open alarm on the asset, or one it is part of.
pub(super) struct AlarmLine {
    id: String,
    severity: &'static str,
    alarm_type: String,
    state: &'static str,
    /// Raised on another asset this one depends on.
    via_parent: bool,
}

pub(super) struct Event {
    at: String,
    attribute: String,
    value: String,
}

#[derive(Template)]
#[template(path = "console/panel.html")]
struct Panel {
    viewer: Viewer,
    id: String,
    name: String,
    entity_type: String,
    commune: String,
    status: &'static str,
    status_label: &'static str,
    rows: Vec<Row>,
    related: Vec<Related>,
    related_total: usize,
    events: Vec<Event>,
    /// Numeric measures the chart can draw, comma-separated.
    charted: String,
    commands: Commands,
    alarms: Vec<AlarmLine>,
}

/// A command as the panel lists it.
pub(super) struct CommandRow {
    id: String,
    at: String,
    name: String,
    value: String,
    state: &'static str,
    state_label: &'static str,
    detail: String,
}

/// A command the operator may send: buttons for words, a field for a number.
pub(super) struct CommandControl {
    name: &'static str,
    label: &'static str,
    words: Vec<(&'static str, &'static str)>,
    range: Option<(i64, i64)>,
}

/// The panel's commands: what may be sent, the latest sent and their state.
#[derive(Template)]
#[template(path = "console/panel_commands.html")]
pub(super) struct Commands {
    viewer: Viewer,
    /// The entity id, percent-encoded for the commands' URL.
    path_id: String,
    controls: Vec<CommandControl>,
    rows: Vec<CommandRow>,
    /// Poll while a command awaits its answer.
    waiting: bool,
    error: Option<String>,
}

/// How long sending from the panel waits for the device's answer.
const ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Latest commands shown in the panel.
const SHOWN_COMMANDS: usize = 5;

impl Commands {
    async fn of(s: &AppState, caller: &Caller, viewer: Viewer, entity: &Entity, error: Option<String>) -> Self {
        use vigie_core::command::{Argument, commands_for};
        let texts = viewer.texts;
        let may = caller.principal.role.allows(vigie_core::Action::WriteEntities)
            && caller.principal.scope.covers(entity.scope.as_ref())
            && s.registry.commandable(entity.id.as_str()).is_some();
        let controls = if may {
            commands_for(&entity.entity_type)
                .iter()
                .map(|spec| match spec.argument {
                    Argument::OneOf(words) => CommandControl {
                        name: spec.name,
                        label: spec.name,
                        words: words
                            .iter()
                            .map(|w| {
                                let label = match (spec.name, *w) {
                                    ("switch", "on") => texts.command_on,
                                    ("switch", "off") => texts.command_off,
                                    _ => w,
                                };
                                (*w, label)
                            })
                            .collect(),
                        range: None,
                    },
                    Argument::Integer { min, max } => CommandControl {
                        name: spec.name,
                        label: if spec.name == "dim" {
                            texts.command_dim
                        } else {
                            spec.name
                        },
                        words: Vec::new(),
                        range: Some((min, max)),
                    },
                })
                .collect()
        } else {
            Vec::new()
        };
        let commands = match s.commands.of_entity(entity.id.as_str(), SHOWN_COMMANDS).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(entity = %entity.id, error = %e, "the panel cannot read the asset's commands");
                Vec::new()
            }
        };
        let waiting = commands.iter().any(|c| c.state.is_open());
        let rows = commands
            .into_iter()
            .map(|c| CommandRow {
                id: c.id,
                at: local_time(c.issued_at),
                name: c.name,
                value: show(&c.value),
                state: c.state.as_str(),
                state_label: texts.command_states[c.state.index()],
                detail: c.detail.unwrap_or_default(),
            })
            .collect();
        Self {
            viewer,
            path_id: super::encoded(entity.id.as_str()),
            controls,
            rows,
            waiting,
            error,
        }
    }
}

#[derive(serde::Deserialize)]
pub(super) struct CommandForm {
    command: String,
    value: String,
}

/// The entity `id` if the caller sees it (out of sight reads as missing).
fn entity_in_sight(s: &AppState, caller: &Caller, id: &str) -> Option<std::sync::Arc<Entity>> {
    let sight = Sight::new(s, caller);
    s.twin.get(id).filter(|e| sight.sees(e))
}

/// `GET /console/equipment/{id}/commands`: the commands fragment (htmx polls
/// it each second while a command awaits its answer).
pub async fn commands(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.check(vigie_core::Action::ReadEntities)?;
    let viewer = Viewer::of(&s, &caller, &headers).await;
    let Some(entity) = entity_in_sight(&s, &caller, &id) else {
        return Ok(missing(viewer));
    };
    Ok(render(&Commands::of(&s, &caller, viewer, &entity, None).await))
}

/// `POST /console/equipment/{id}/commands` (form `command`, `value`): sends
/// it and answers the fragment, with the refusal's reason when refused.
pub async fn send(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let viewer = Viewer::of(&s, &caller, &headers).await;
    let Some(entity) = entity_in_sight(&s, &caller, &id) else {
        return Ok(missing(viewer));
    };
    let form: CommandForm = serde_urlencoded::from_bytes(&body)
        .map_err(|e| ApiError::InvalidRequest(format!("expected a form with 'command' and 'value': {e}")))?;
    // Listen before sending: a device answering at once is not missed.
    let mut answers = s.commands.subscribe();
    let sent = crate::api::send_command(
        &s,
        &caller,
        &entity.id,
        &form.command,
        &serde_json::Value::String(form.value),
    )
    .await;
    if let Ok(command) = &sent
        && command.state.is_open()
    {
        // Most devices answer within a moment: show the answer rather than
        // "sent" when it comes soon; otherwise the fragment polls for it.
        let _ = tokio::time::timeout(ANSWER_WAIT, async {
            while let Ok(changed) = answers.recv().await {
                if changed.id == command.id && !changed.state.is_open() {
                    break;
                }
            }
        })
        .await;
    }
    let error = sent.err().map(|e| e.to_string());
    Ok(render(&Commands::of(&s, &caller, viewer, &entity, error).await))
}

fn missing(viewer: Viewer) -> Response {
    let mut res = render(&Missing { viewer });
    *res.status_mut() = StatusCode::NOT_FOUND;
    res
}

#[derive(Template)]
#[template(path = "console/panel_missing.html")]
struct Missing {
    viewer: Viewer,
}

/// `GET /console/equipment/{id}`: the panel, an htmx fragment.
pub async fn panel(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.check(vigie_core::Action::ReadEntities)?;
    let viewer = Viewer::of(&s, &caller, &headers).await;
    let Some(entity) = entity_in_sight(&s, &caller, &id) else {
        // Out of sight reads exactly like missing.
        return Ok(missing(viewer));
    };
    let sight = Sight::new(&s, &caller);
    crate::api::ngsi::audit_personal_read(&s, &caller, &entity).await?;
    let status = sight.status(&entity);
    let (related, related_total) = relations(&s, &sight, &entity);
    let events = recent_events(&s, &entity.id).await;
    let charted: Vec<&str> = entity
        .attributes
        .iter()
        .filter(|(_, a)| a.value.is_number() && a.observed_at.is_some())
        .map(|(name, _)| name.as_str())
        .take(MAX_CHARTED)
        .collect();
    let commune = entity
        .scope
        .as_ref()
        .map_or_else(String::new, |sc| s.console.commune_name(sc.commune.as_str()).to_owned());
    let texts = viewer.texts;
    let commands = Commands::of(&s, &caller, viewer.clone(), &entity, None).await;
    let alarms = s
        .alarms
        .open()
        .into_iter()
        .filter(|a| a.source == entity.id || a.children.contains(&entity.id))
        .map(|a| AlarmLine {
            via_parent: a.source != entity.id,
            id: a.id,
            severity: a.severity.as_str(),
            alarm_type: a.alarm_type,
            state: a.state.as_str(),
        })
        .collect();
    Ok(render(&Panel {
        commands,
        alarms,
        id: entity.id.to_string(),
        name: display_name(&entity),
        entity_type: entity.entity_type.clone(),
        commune,
        status: status.as_str(),
        status_label: texts.status(status),
        rows: rows(&entity),
        related,
        related_total,
        events,
        charted: charted.join(","),
        viewer,
    })
    .into_response())
}

fn rows(e: &Entity) -> Vec<Row> {
    e.attributes
        .iter()
        .filter(|(name, a)| a.kind != AttributeKind::GeoProperty && name.as_str() != "name")
        .map(|(name, a)| Row {
            name: name.clone(),
            value: show(&a.value),
            unit: a.unit_code.as_deref().map_or("", unit_symbol),
            observed: a.observed_at.map(local_time).unwrap_or_default(),
        })
        .collect()
}

/// A value as an operator reads it: text as is, numbers rounded, objects
/// as their members, shortened.
fn show(v: &Value) -> String {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{}", (f * 1000.0).round() / 1000.0),
            _ => n.to_string(),
        },
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}: {}", show(v)))
            .collect::<Vec<_>>()
            .join(", "),
        Value::Array(items) => items.iter().map(show).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    };
    if text.chars().count() > 160 {
        text.chars().take(159).chain(std::iter::once('…')).collect()
    } else {
        text
    }
}

/// The symbol of a UN/CEFACT unit code the city's equipment uses.
fn unit_symbol(code: &str) -> &'static str {
    match code {
        "WTT" => "W",
        "KWT" => "kW",
        "KWH" => "kWh",
        "VLT" => "V",
        "AMP" => "A",
        "MTR" => "m",
        "CEL" => "°C",
        "KMH" => "km/h",
        "MTS" => "m/s",
        "P1" => "%",
        "LUX" => "lx",
        "HUR" => "h",
        "MIN" => "min",
        "SEC" => "s",
        "GQ" => "µg/m³",
        "A97" => "hPa",
        "MMT" => "mm",
        "KGM" => "kg",
        "E30" => "veh/h",
        _ => "",
    }
}

/// A time as the control room reads it: Paris time, to the second.
pub(super) fn local_time(t: Timestamp) -> String {
    t.in_tz("Europe/Paris")
        .map(|z| z.strftime("%d/%m %H:%M:%S").to_string())
        .unwrap_or_else(|_| t.to_string())
}

/// The ids an attribute points to (Relationship, ListRelationship).
fn targets(a: &vigie_core::Attribute) -> Vec<&str> {
    match a.kind {
        AttributeKind::Relationship => a.value.as_str().into_iter().collect(),
        AttributeKind::ListRelationship => a
            .value
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i.get("object").and_then(Value::as_str).or_else(|| i.as_str()))
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// What the asset points to, then what points to it (a cabinet's lights),
/// in the caller's sight, at most [`MAX_RELATED`] with the total.
fn relations(s: &AppState, sight: &Sight<'_>, e: &Entity) -> (Vec<Related>, usize) {
    let mut related = Vec::new();
    let mut total = 0;
    for (name, a) in e.attributes.iter() {
        for target in targets(a) {
            if let Some(t) = s.twin.get(target).filter(|t| sight.sees(t)) {
                total += 1;
                if related.len() < MAX_RELATED {
                    related.push(Related {
                        id: t.id.to_string(),
                        name: display_name(&t),
                        via: name.clone(),
                    });
                }
            }
        }
    }
    let me = e.id.as_str();
    s.twin.for_each(&mut |other| {
        if other.id.as_str() == me || !sight.sees(other) {
            return;
        }
        if let Some((name, _)) = other.attributes.iter().find(|(_, a)| targets(a).contains(&me)) {
            total += 1;
            if related.len() < MAX_RELATED {
                related.push(Related {
                    id: other.id.to_string(),
                    name: display_name(other),
                    via: format!("← {name}"),
                });
            }
        }
    });
    (related, total)
}

/// The asset's latest state changes, newest first; none when the history
/// cannot be read (the panel still shows, and the failure is logged).
async fn recent_events(s: &AppState, id: &EntityId) -> Vec<Event> {
    let selection = HistorySelection {
        entity_ids: vec![id.clone()],
        attributes: Some(STATE_ATTRIBUTES.iter().map(|a| (*a).to_owned()).collect()),
        from: None,
        to: None,
    };
    let range = match s
        .store
        .history_range(&selection, Some(RECENT_EVENTS), RECENT_EVENTS)
        .await
    {
        Ok(range) => range,
        Err(e) => {
            tracing::warn!(entity = %id, error = %e, "the panel cannot read the asset's recent events");
            return Vec::new();
        }
    };
    let mut events: Vec<(Timestamp, Event)> = range
        .entities
        .into_iter()
        .flat_map(|h| h.attributes)
        .flat_map(|a| {
            let name = a.name;
            a.instances.into_iter().map(move |i| {
                (
                    i.observed_at,
                    Event {
                        at: local_time(i.observed_at),
                        attribute: name.clone(),
                        value: show(&i.value),
                    },
                )
            })
        })
        .collect();
    events.sort_by_key(|e| std::cmp::Reverse(e.0));
    events.truncate(RECENT_EVENTS);
    events.into_iter().map(|(_, e)| e).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_like_an_operator_expects() {
        assert_eq!(show(&serde_json::json!(12.345678)), "12.346");
        assert_eq!(show(&serde_json::json!(42)), "42");
        assert_eq!(
            show(&serde_json::json!({"streetAddress": "3 rue X", "postalCode": "21000"})),
            "streetAddress: 3 rue X, postalCode: 21000"
        );
        assert_eq!(show(&serde_json::json!("x".repeat(500))).chars().count(), 160);
        assert_eq!(unit_symbol("WTT"), "W");
    }
}

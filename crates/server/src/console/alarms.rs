//! The alarm board: the open alarms in the operator's sight, most urgent
//! first, filtered by commune, business line and severity, acted on in one
//! click (acknowledge, shelve for an hour, close once cleared). The rows
//! re-read themselves (htmx) when the server says alarms changed
//! (`/console/alarms/events`), so a new alarm shows without a reload.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use vigie_core::alarm::{Alarm, AlarmAction, AlarmState, Severity};
use vigie_core::{Action, Timestamp};

use super::{Viewer, display_name, render};
use crate::api::{ApiError, AppState, Params};
use crate::security::Caller;

/// One alarm as the board shows it.
pub(super) struct Row {
    id: String,
    severity: &'static str,
    severity_label: &'static str,
    alarm_type: String,
    /// The source's id, percent-encoded for a link.
    source_query: String,
    source_name: String,
    commune: String,
    state: &'static str,
    state_label: &'static str,
    raised: String,
    occurrences: u32,
    children: usize,
    assignee: String,
    may_acknowledge: bool,
    may_close: bool,
    may_act: bool,
}

const SEVERITIES: [Severity; 4] = [Severity::Critical, Severity::Major, Severity::Minor, Severity::Warning];

fn state_index(state: AlarmState) -> usize {
    match state {
        AlarmState::Active => 0,
        AlarmState::Acknowledged => 1,
        AlarmState::Cleared => 2,
        AlarmState::Closed => 3,
    }
}

impl Row {
    fn of(s: &AppState, caller: &Caller, viewer: &Viewer, alarm: &Alarm) -> Self {
        let texts = viewer.texts;
        let may_act =
            caller.principal.role.allows(Action::WriteEntities) && caller.principal.scope.covers(alarm.scope.as_ref());
        let severity_ix = SEVERITIES.iter().position(|x| *x == alarm.severity).unwrap_or(0);
        Self {
            id: alarm.id.clone(),
            severity: alarm.severity.as_str(),
            severity_label: texts.severities[severity_ix],
            alarm_type: alarm.alarm_type.clone(),
            source_query: super::encoded(alarm.source.as_str()),
            source_name: s
                .twin
                .get(alarm.source.as_str())
                .map_or_else(|| alarm.source.to_string(), |e| display_name(&e)),
            commune: alarm
                .scope
                .as_ref()
                .map_or_else(String::new, |sc| s.console.commune_name(sc.commune.as_str()).to_owned()),
            state: alarm.state.as_str(),
            state_label: texts.alarm_states[state_index(alarm.state)],
            raised: super::panel::local_time(alarm.raised_at),
            occurrences: alarm.occurrences,
            children: alarm.children.len(),
            assignee: alarm.assignee.clone().unwrap_or_default(),
            may_acknowledge: may_act && alarm.state == AlarmState::Active,
            may_close: may_act && alarm.state == AlarmState::Cleared,
            may_act,
        }
    }
}

#[derive(Template)]
#[template(path = "console/alarms.html")]
struct Board {
    viewer: Viewer,
    rows: Vec<Row>,
    /// The filters as a query string, for the rows' refresh.
    query: String,
    communes: Vec<(String, String, bool)>,
    lines: Vec<(String, String, bool)>,
    severities: Vec<(&'static str, &'static str, bool)>,
}

#[derive(Template)]
#[template(path = "console/alarm_rows.html")]
struct Rows {
    viewer: Viewer,
    rows: Vec<Row>,
    query: String,
}

#[derive(Template)]
#[template(path = "console/alarm_row.html")]
struct OneRow {
    viewer: Viewer,
    row: Row,
}

/// The filters of a board request.
struct Filters {
    commune: Option<String>,
    line: Option<String>,
    severity: Option<Severity>,
}

impl Filters {
    fn from(params: &Params) -> Result<Self, ApiError> {
        Ok(Self {
            commune: params.get("commune").map(str::to_owned),
            line: params.get("line").map(str::to_owned),
            severity: params
                .get("severity")
                .map(str::parse)
                .transpose()
                .map_err(ApiError::BadRequestData)?,
        })
    }

    fn query(&self) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if let Some(c) = &self.commune {
            q.append_pair("commune", c);
        }
        if let Some(l) = &self.line {
            q.append_pair("line", l);
        }
        if let Some(s) = self.severity {
            q.append_pair("severity", s.as_str());
        }
        q.finish()
    }

    fn rows(&self, s: &AppState, caller: &Caller, viewer: &Viewer) -> Vec<Row> {
        let now = Timestamp::now();
        s.alarms
            .open()
            .iter()
            .filter(|a| s.security.sees(&caller.principal, a.scope.as_ref()) && !a.is_shelved(now))
            .filter(|a| self.severity.is_none_or(|sev| a.severity == sev))
            .filter(|a| {
                let scope = a.scope.as_ref();
                self.commune
                    .as_deref()
                    .is_none_or(|c| scope.is_some_and(|sc| sc.commune.as_str() == c))
                    && self
                        .line
                        .as_deref()
                        .is_none_or(|l| scope.is_some_and(|sc| sc.business_line.as_str() == l))
            })
            .map(|a| Row::of(s, caller, viewer, a))
            .collect()
    }
}

/// `GET /console/alarms`: the board.
pub async fn page(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    caller.check(Action::ReadEntities)?;
    let viewer = Viewer::of(&s, &caller, &headers).await;
    let filters = Filters::from(&params)?;
    let overview = super::overview::Overview::compute(&s, &caller);
    let texts = viewer.texts;
    let communes = overview
        .communes
        .iter()
        .map(|c| (c.id.clone(), c.name.clone(), filters.commune.as_deref() == Some(&c.id)))
        .collect();
    let lines = overview
        .lines()
        .into_iter()
        .map(|l| {
            let label = texts.line(&l).to_owned();
            let chosen = filters.line.as_deref() == Some(&l);
            (l, label, chosen)
        })
        .collect();
    let severities = SEVERITIES
        .iter()
        .enumerate()
        .map(|(i, sev)| (sev.as_str(), texts.severities[i], filters.severity == Some(*sev)))
        .collect();
    Ok(render(&Board {
        rows: filters.rows(&s, &caller, &viewer),
        query: filters.query(),
        communes,
        lines,
        severities,
        viewer,
    }))
}

/// `GET /console/alarms/rows`: the rows alone (the board's refresh).
pub async fn rows(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    caller.check(Action::ReadEntities)?;
    let viewer = Viewer::of(&s, &caller, &headers).await;
    let filters = Filters::from(&params)?;
    Ok(render(&Rows {
        rows: filters.rows(&s, &caller, &viewer),
        query: filters.query(),
        viewer,
    }))
}

#[derive(serde::Deserialize)]
pub(super) struct ActionForm {
    action: String,
    #[serde(default)]
    step: Option<u16>,
    #[serde(default)]
    text: Option<String>,
}

/// One step of the procedure as the detail page shows it.
pub(super) struct StepView {
    number: u16,
    text: String,
    done: Option<String>,
}

#[derive(Template)]
#[template(path = "console/alarm.html")]
struct Detail {
    viewer: Viewer,
    row: Row,
    detail: String,
    procedure_title: String,
    steps: Vec<StepView>,
    contacts: Vec<(String, String)>,
    children: Vec<(String, String)>,
    comments: Vec<(String, String, String)>,
}

/// `GET /console/alarms/{id}`: one alarm with its procedure, the equipment
/// it takes in, and its comments.
pub async fn detail(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.check(Action::ReadEntities)?;
    let viewer = Viewer::of(&s, &caller, &headers).await;
    let alarm = crate::api::visible_alarm(&s, &caller, &id).await?;
    let procedure = s.alarms.procedure(&alarm.alarm_type);
    let steps = procedure
        .map(|p| {
            p.steps
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    let number = u16::try_from(i + 1).unwrap_or(u16::MAX);
                    let done = alarm
                        .steps_done
                        .iter()
                        .find(|d| usize::from(d.step) == i)
                        .map(|d| format!("{} · {}", d.by, super::panel::local_time(d.at)));
                    StepView {
                        number,
                        text: text.clone(),
                        done,
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let children = alarm
        .children
        .iter()
        .take(200)
        .map(|c| {
            let name = s
                .twin
                .get(c.as_str())
                .map_or_else(|| c.to_string(), |e| display_name(&e));
            (super::encoded(c.as_str()), name)
        })
        .collect();
    let comments = alarm
        .comments
        .iter()
        .map(|c| (c.by.clone(), super::panel::local_time(c.at), c.text.clone()))
        .collect();
    Ok(render(&Detail {
        row: Row::of(&s, &caller, &viewer, &alarm),
        detail: alarm.detail.clone(),
        procedure_title: procedure.map(|p| p.title.clone()).unwrap_or_default(),
        contacts: procedure
            .map(|p| p.contacts.iter().map(|c| (c.name.clone(), c.phone.clone())).collect())
            .unwrap_or_default(),
        steps,
        children,
        comments,
        viewer,
    }))
}

/// `POST /console/alarms/{id}/actions` (form `action` = acknowledge, shelve
/// or close): acts and answers the alarm's row.
pub async fn act(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let form: ActionForm = serde_urlencoded::from_bytes(&body)
        .map_err(|e| ApiError::InvalidRequest(format!("expected a form with 'action': {e}")))?;
    let action = match form.action.as_str() {
        "acknowledge" => AlarmAction::Acknowledge,
        "shelve" => AlarmAction::Shelve(Timestamp::now() + jiff::SignedDuration::from_hours(1)),
        "close" => AlarmAction::Close,
        "comment" => AlarmAction::Comment(form.text.clone().unwrap_or_default()),
        "step" => {
            let step = form
                .step
                .filter(|n| *n >= 1)
                .ok_or_else(|| ApiError::BadRequestData("'step' is the step's number, from 1".into()))?;
            AlarmAction::CompleteStep { step: step - 1, of: 0 }
        }
        other => {
            return Err(ApiError::BadRequestData(format!(
                "'{other}' is not a console action: acknowledge, shelve, close, comment or step"
            )));
        }
    };
    let viewer = Viewer::of(&s, &caller, &headers).await;
    let from_detail_page = matches!(action, AlarmAction::Comment(_) | AlarmAction::CompleteStep { .. });
    let alarm = crate::api::act_on_alarm(&s, &caller, &id, action).await?;
    if from_detail_page {
        // From the detail page: it reloads itself.
        let mut res = axum::http::StatusCode::NO_CONTENT.into_response();
        res.headers_mut()
            .insert("hx-refresh", axum::http::HeaderValue::from_static("true"));
        return Ok(res);
    }
    let row = Row::of(&s, &caller, &viewer, &alarm);
    Ok(render(&OneRow { viewer, row }))
}

//! The rules screens: the list of the city's automation rules (enable or
//! disable in one click), and an editor where a rule is written in the rules
//! file's TOML, checked with every problem shown on its line, tried over
//! recorded history (dry run), and saved as a new version.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use vigie_core::Action;
use vigie_core::rules::{Communes, Rule, RuleError, Trigger};

use super::{Viewer, render};
use crate::api::{ApiError, AppState};
use crate::rules::{Change, Origin, RuleEntry};
use crate::security::Caller;

/// Most firings a dry run lists on screen (the counts cover them all).
const SHOWN_FIRINGS: usize = 200;
/// Longest rule text the editor takes.
const MAX_TEXT: usize = 64 * 1024;

/// What a new rule starts from: a real example, commented in French.
const STARTER: &str = r#"# Une règle : quand (déclencheur et condition), quoi faire (actions).
# Référence : docs/automation.md
id = "lampe-eteinte-la-nuit"
name = "Lampe éteinte la nuit"
description = "Un luminaire en panne après le coucher du soleil lève une alarme."
enabled = true
communes = "all"
condition = 'status != "ok" && powerState == "on"'

[applies_to]
types = ["Streetlight"]

[trigger]
type = "on-change"

[[actions]]
action = "raise-alarm"
alarm_type = "lamp-out"
severity = "minor"
detail = "Lampe {id} : {status}"
"#;

struct RuleRow {
    id: String,
    name: String,
    from_file: bool,
    enabled: bool,
    communes: String,
    trigger: &'static str,
    applies_to: String,
    version: u32,
    errors: u64,
    may_switch: bool,
}

impl RuleRow {
    fn of(s: &AppState, caller: &Caller, entry: &RuleEntry) -> Self {
        let rule = &entry.rule;
        Self {
            id: rule.id.clone(),
            name: rule.name.clone(),
            from_file: entry.origin == Origin::File,
            enabled: rule.enabled,
            communes: communes_text(&rule.communes),
            trigger: trigger_name(&rule.trigger),
            applies_to: rule
                .applies_to
                .types
                .iter()
                .map(String::as_str)
                .chain(rule.applies_to.lines.iter().map(|l| l.as_str()))
                .collect::<Vec<_>>()
                .join(", "),
            version: rule.version,
            errors: s.alarms.rule_errors(&rule.id).map_or(0, |e| e.count),
            may_switch: entry.origin == Origin::Api && caller.check(Action::ManageRules).is_ok(),
        }
    }
}

fn communes_text(c: &Communes) -> String {
    match c {
        Communes::All => "*".into(),
        Communes::Only(list) => list.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", "),
    }
}

fn trigger_name(t: &Trigger) -> &'static str {
    match t {
        Trigger::OnChange => "on-change",
        Trigger::Threshold { .. } => "threshold",
        Trigger::Absence { .. } => "absence",
        Trigger::Schedule { .. } => "schedule",
        Trigger::Astronomical { .. } => "astronomical",
        Trigger::AreaAggregate { .. } => "area-aggregate",
    }
}

#[derive(Template)]
#[template(path = "console/rules.html")]
struct List {
    viewer: Viewer,
    rows: Vec<RuleRow>,
    may_manage: bool,
}

/// `GET /console/rules`.
pub async fn list(State(s): State<AppState>, caller: Caller, headers: HeaderMap) -> Result<Response, ApiError> {
    caller.check(Action::ReadEntities)?;
    let viewer = Viewer::of(&s, &caller, &headers).await;
    let rows = s
        .rulebook
        .list()
        .await
        .iter()
        .map(|e| RuleRow::of(&s, &caller, e))
        .collect();
    Ok(render(&List {
        viewer,
        rows,
        may_manage: caller.check(Action::ManageRules).is_ok(),
    }))
}

#[derive(Template)]
#[template(path = "console/rule.html")]
struct Editor {
    viewer: Viewer,
    /// Empty for a new rule.
    id: String,
    text: String,
    version: u32,
    from_file: bool,
    editable: bool,
    /// May try rules over history (managers, file rules included).
    may_try: bool,
    /// Saved versions, newest first: (version, when, by, retired).
    versions: Vec<(u32, String, String, bool)>,
    /// The dry run's default range, in the browser's `datetime-local` form.
    from: String,
    to: String,
}

/// `GET /console/rules/new`: the editor, on an example.
pub async fn new(State(s): State<AppState>, caller: Caller, headers: HeaderMap) -> Result<Response, ApiError> {
    editor(&s, &caller, &headers, None).await
}

/// `GET /console/rules/{id}`: the editor on a rule, with its versions.
pub async fn edit(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    editor(&s, &caller, &headers, Some(id)).await
}

async fn editor(s: &AppState, caller: &Caller, headers: &HeaderMap, id: Option<String>) -> Result<Response, ApiError> {
    caller.check(Action::ReadEntities)?;
    let viewer = Viewer::of(s, caller, headers).await;
    let may_manage = caller.check(Action::ManageRules).is_ok();
    let (id, text, version, from_file, versions) = match id {
        None => (String::new(), STARTER.to_owned(), 0, false, Vec::new()),
        Some(id) => {
            let entry = s
                .rulebook
                .get(&id)
                .await
                .ok_or_else(|| ApiError::NotFound(format!("no rule '{id}'")))?;
            let versions = s
                .rulebook
                .versions(&id)
                .await?
                .into_iter()
                .rev()
                .map(|r| {
                    (
                        r.rule.version,
                        super::panel::local_time(r.saved_at),
                        r.saved_by,
                        r.retired,
                    )
                })
                .collect();
            let mut rule = entry.rule.clone();
            let version = rule.version;
            // The server numbers versions: the text does not carry one.
            rule.version = 1;
            let text = rule.to_toml().replacen("version = 1\n", "", 1);
            (id, text, version, entry.origin == Origin::File, versions)
        }
    };
    let now = vigie_core::Timestamp::now();
    let local = |t: vigie_core::Timestamp| {
        t.to_zoned(vigie_core::rules::clock::paris().clone())
            .strftime("%Y-%m-%dT%H:%M")
            .to_string()
    };
    Ok(render(&Editor {
        viewer,
        editable: may_manage && !from_file,
        may_try: may_manage,
        id,
        text,
        version,
        from_file,
        versions,
        from: local(now - jiff::SignedDuration::from_hours(24)),
        to: local(now),
    }))
}

#[derive(serde::Deserialize)]
pub(super) struct RuleForm {
    text: String,
    /// The rule's id when editing one (a new rule has none).
    #[serde(default)]
    id: String,
    /// The version the text was loaded at.
    #[serde(default)]
    version: Option<u32>,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

fn form(body: &[u8]) -> Result<RuleForm, ApiError> {
    if body.len() > MAX_TEXT + 1024 {
        return Err(ApiError::PayloadTooLarge(format!(
            "a rule's text is at most {MAX_TEXT} bytes"
        )));
    }
    serde_urlencoded::from_bytes(body).map_err(|e| ApiError::InvalidRequest(format!("expected the rule form: {e}")))
}

/// One line of the checked text, with the problems found on it.
struct Line {
    number: usize,
    text: String,
    problems: Vec<String>,
}

#[derive(Template)]
#[template(path = "console/rule_verdict.html")]
struct Verdict {
    viewer: Viewer,
    valid: bool,
    /// Problems not tied to a line.
    general: Vec<String>,
    lines: Vec<Line>,
}

impl Verdict {
    fn of(viewer: Viewer, text: &str, errors: &[RuleError]) -> Self {
        let mut lines: Vec<Line> = text
            .lines()
            .enumerate()
            .map(|(i, l)| Line {
                number: i + 1,
                text: l.to_owned(),
                problems: Vec::new(),
            })
            .collect();
        let mut general = Vec::new();
        for e in errors {
            let message = format!("{} — {}", e.field(), e.problem());
            match line_of(text, e).and_then(|n| lines.get_mut(n - 1)) {
                Some(line) => line.problems.push(message),
                None => general.push(message),
            }
        }
        Self {
            viewer,
            valid: errors.is_empty(),
            general,
            lines,
        }
    }

    /// A refusal that is not about the text (a stale version, a taken id, a
    /// wrong date range), shown where the verdict goes.
    fn refused(viewer: Viewer, error: &ApiError) -> Self {
        Self {
            viewer,
            valid: false,
            general: vec![error.to_string()],
            lines: Vec::new(),
        }
    }
}

/// The answer to an editor's request: a refusal the author can act on is
/// shown in the page (htmx swaps only successful answers); the rest (no
/// permission, a failure) is an error response.
fn shown(viewer: Viewer, text: &str, error: ApiError) -> Response {
    match error {
        ApiError::InvalidRule(errors) => render(&Verdict::of(viewer, text, &errors)),
        e @ (ApiError::BadRequestData(_)
        | ApiError::AlreadyExists(_)
        | ApiError::PreconditionFailed(_)
        | ApiError::OperationNotSupported(_)
        | ApiError::NotFound(_)
        | ApiError::TooManyRequests(_)) => render(&Verdict::refused(viewer, &e)),
        e => e.into_response(),
    }
}

/// The rule in the form's text, checked against this server.
fn parse(s: &AppState, text: &str) -> Result<Rule, Vec<RuleError>> {
    let rule = Rule::from_toml(text)?;
    s.rulebook.validate(&rule)?;
    Ok(rule)
}

/// `POST /console/rules/check`: the text with each problem on its line.
pub async fn check(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    caller.check(Action::ManageRules)?;
    let form = form(&body)?;
    let viewer = Viewer::of(&s, &caller, &headers).await;
    let errors = parse(&s, &form.text).err().unwrap_or_default();
    Ok(render(&Verdict::of(viewer, &form.text, &errors)))
}

/// `POST /console/rules/save`: a new rule, or a new version of the one
/// being edited; the problems on their lines if it does not validate.
pub async fn save(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let form = form(&body)?;
    let verb = if form.id.is_empty() {
        "rule.create"
    } else {
        "rule.replace"
    };
    s.audit
        .check(
            &caller,
            Action::ManageRules,
            verb,
            (!form.id.is_empty()).then_some(form.id.as_str()),
        )
        .await?;
    let viewer = Viewer::of(&s, &caller, &headers).await;
    let rule = match parse(&s, &form.text) {
        Ok(rule) => rule,
        Err(errors) => return Ok(render(&Verdict::of(viewer, &form.text, &errors))),
    };
    let saved = if form.id.is_empty() {
        s.rulebook.create(rule, &caller).await
    } else {
        s.rulebook
            .change(&form.id, Change::Replace(Box::new(rule)), form.version, &caller)
            .await
    };
    match saved {
        Ok(entry) => Ok(redirect(&format!("/console/rules/{}", entry.rule.id))),
        Err(e) => Ok(shown(viewer, &form.text, e)),
    }
}

/// `POST /console/rules/{id}/switch` (form `enabled`): on or off, a new version.
pub async fn switch(
    State(s): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    #[derive(serde::Deserialize)]
    struct Switch {
        enabled: bool,
    }
    s.audit
        .check(&caller, Action::ManageRules, "rule.switch", Some(&id))
        .await?;
    let form: Switch = serde_urlencoded::from_bytes(&body)
        .map_err(|e| ApiError::InvalidRequest(format!("expected 'enabled' = true or false: {e}")))?;
    let change = Change::Switch {
        enabled: Some(form.enabled),
        communes: None,
    };
    s.rulebook.change(&id, change, None, &caller).await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.headers_mut().insert("hx-refresh", HeaderValue::from_static("true"));
    Ok(res)
}

fn redirect(to: &str) -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        res.headers_mut().insert("hx-redirect", v);
    }
    res
}

#[derive(Template)]
#[template(path = "console/rule_dry_run.html")]
struct DryRunView {
    viewer: Viewer,
    report: crate::rules::DryRunReport,
    /// (when, equipment link, equipment name, cleared)
    firings: Vec<(String, String, String, bool)>,
    more: usize,
}

/// A `datetime-local` value, Paris time.
fn local_input(text: &str, name: &str) -> Result<vigie_core::Timestamp, ApiError> {
    let civil: jiff::civil::DateTime = text
        .parse()
        .map_err(|e| ApiError::BadRequestData(format!("'{name}' must be a date and time, got '{text}': {e}")))?;
    civil
        .to_zoned(vigie_core::rules::clock::paris().clone())
        .map(|z| z.timestamp())
        .map_err(|e| ApiError::BadRequestData(format!("'{name}': {e}")))
}

/// `POST /console/rules/dry-run`: what the text's rule would have done
/// between `from` and `to` (Paris time).
pub async fn dry_run(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    caller.check(Action::ManageRules)?;
    let form = form(&body)?;
    let viewer = Viewer::of(&s, &caller, &headers).await;
    let rule = match Rule::from_toml(&form.text) {
        Ok(rule) => rule,
        Err(errors) => return Ok(render(&Verdict::of(viewer, &form.text, &errors))),
    };
    let range = local_input(&form.from, "from").and_then(|from| Ok((from, local_input(&form.to, "to")?)));
    let report = match range {
        Ok((from, to)) => s.rulebook.dry_run(&s.twin, rule, from, to).await,
        Err(e) => Err(e),
    };
    let report = match report {
        Ok(report) => report,
        Err(e) => return Ok(shown(viewer, &form.text, e)),
    };
    let firings = report
        .firings
        .iter()
        .take(SHOWN_FIRINGS)
        .map(|f| {
            let name = s
                .twin
                .get(f.entity_id.as_str())
                .map_or_else(|| f.entity_id.to_string(), |e| super::display_name(&e));
            (
                super::panel::local_time(f.at),
                super::encoded(f.entity_id.as_str()),
                name,
                f.cleared,
            )
        })
        .collect();
    let more = report.firings.len().saturating_sub(SHOWN_FIRINGS);
    Ok(render(&DryRunView {
        viewer,
        report,
        firings,
        more,
    }))
}

/// The line (from 1) of `text` a problem is on: the line of the key or
/// table its field names, plus the line within an expression. `None` when
/// the field is not found (the problem is then shown above the text).
fn line_of(text: &str, error: &RuleError) -> Option<usize> {
    if let RuleError::Syntax(message) = error {
        // toml says "TOML parse error at line 7, column 12".
        let rest = &message[message.find("at line ")? + 8..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        return digits.parse().ok();
    }
    let field = error.field();
    let (table, key) = match field.rsplit_once('.') {
        Some((table, key)) => (Some(table), key),
        None => (None, field),
    };
    // `actions[2]`: the third `[[actions]]`.
    let (key, index) = match key.split_once('[') {
        Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
        None => (key, None),
    };
    let lines: Vec<&str> = text.lines().collect();
    let header = |name: &str, nth: usize| {
        lines
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                let l = l.trim();
                l == format!("[{name}]") || l == format!("[[{name}]]")
            })
            .nth(nth)
            .map(|(i, _)| i)
    };
    let assigns = |l: &str, name: &str| {
        l.trim_start()
            .strip_prefix(name)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    };
    // Where the key's section starts and ends.
    let (start, end) = match table {
        Some(table) => match header(table, 0) {
            Some(h) => (h + 1, next_header(&lines, h + 1)),
            // An inline table: `trigger = { … }` on one line.
            None => return lines.iter().position(|l| assigns(l, table)).map(|i| i + 1),
        },
        None => (0, next_header(&lines, 0)),
    };
    let found = match index {
        Some(n) => header(key, n).or_else(|| lines.iter().position(|l| assigns(l, key))),
        None => (start..end)
            .find(|&i| assigns(lines[i], key))
            .or_else(|| header(key, 0)),
    }?;
    let within = match error.position() {
        // A multi-line string starts on the line after its opening quotes.
        Some((line, _)) if lines[found].trim_end().ends_with("\"\"\"") || lines[found].trim_end().ends_with("'''") => {
            line
        }
        Some((line, _)) => line - 1,
        None => 0,
    };
    Some(found + within + 1)
}

/// The index of the first table header at or after `from`, or the end.
fn next_header(lines: &[&str], from: usize) -> usize {
    (from..lines.len())
        .find(|&i| lines[i].trim_start().starts_with('['))
        .unwrap_or(lines.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(text: &str) -> Vec<RuleError> {
        match Rule::from_toml(text) {
            Ok(rule) => vigie_core::rules::spec::compile(rule).err().unwrap_or_default(),
            Err(errors) => errors,
        }
    }

    fn lines_of(text: &str) -> Vec<(String, Option<usize>)> {
        errors_of(text)
            .iter()
            .map(|e| (e.field().to_owned(), line_of(text, e)))
            .collect()
    }

    #[test]
    fn the_starter_is_a_valid_rule_and_round_trips() {
        assert!(errors_of(STARTER).is_empty(), "{:?}", errors_of(STARTER));
        let rule = Rule::from_toml(STARTER).expect("starter");
        assert_eq!(Rule::from_toml(&rule.to_toml()), Ok(rule));
    }

    #[test]
    fn problems_are_put_on_their_lines() {
        let text = r#"id = "frost"
name = "Frost"
condition = """
temperature <
  && true"""

[applies_to]
types = ["WeatherObserved"]

[trigger]
type = "schedule"
cron = "61 * * * *"

[[actions]]
action = "raise-alarm"
alarm_type = "frost"
severity = "major"

[[actions]]
action = "notify"
channel = "webhook"
to = "not a url"
template = "Gel"
"#;
        let mut found = lines_of(text);
        found.sort();
        assert_eq!(
            found,
            vec![
                ("actions[1]".to_owned(), Some(19)),
                ("condition".to_owned(), Some(5)),
                ("trigger.cron".to_owned(), Some(12)),
            ]
        );
    }

    #[test]
    fn syntax_errors_and_inline_tables_find_their_line_too() {
        let broken = "id = \"x\"\nname = \"X\"\ncondition = \"a\n";
        assert_eq!(lines_of(broken), vec![("-".to_owned(), Some(3))]);
        let inline = "id = \"x\"\nname = \"X\"\napplies_to = { types = [\"Streetlight\"] }\ntrigger = { type = \"absence\", max_silence = \"10s\" }\n\n[[actions]]\naction = \"raise-alarm\"\nalarm_type = \"silent\"\nseverity = \"minor\"\n";
        assert_eq!(lines_of(inline), vec![("trigger.max_silence".to_owned(), Some(4))]);
    }
}

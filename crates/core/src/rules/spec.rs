//! The rule model as city staff write it (TOML files, or JSON through the
//! API) and its validation. Parsing collects every problem of a file at once,
//! each naming the rule, the field and, for a condition, the line and column,
//! so an author fixes a file in one pass.

use jiff::SignedDuration;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[cfg(test)]
use super::MAX_EXPRESSION_LEN;
use super::clock::Cron;
use super::expr::{self, Expr};
use super::{MAX_RULES, RuleError};
use crate::alarm::Severity;
use crate::{BusinessLine, CommuneId, Entity, Scope};

/// Longest a rule can wait or look back: a week.
pub const MAX_WINDOW: SignedDuration = SignedDuration::from_hours(7 * 24);
/// Widest area an aggregate rule looks at, in metres.
pub const MAX_RADIUS_M: f64 = 10_000.0;
/// Most equipment an aggregate rule can count.
pub const MAX_AGGREGATE_COUNT: u32 = 1_000;
/// Longest id, name or text field.
pub const MAX_TEXT_LEN: usize = 1_024;

/// One rule: when (trigger and condition) and what to do (actions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Stable identifier, a slug: `lamp-out-at-night`.
    pub id: String,
    /// Raised by the author at each change; firings carry it for the record.
    #[serde(default = "first_version")]
    pub version: u32,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `"all"` or a list of commune slugs.
    #[serde(default)]
    pub communes: Communes,
    pub applies_to: AppliesTo,
    pub trigger: Trigger,
    /// A CEL expression over the equipment's attributes; `true` when omitted.
    #[serde(default = "always")]
    pub condition: String,
    pub actions: Vec<RuleAction>,
}

impl Rule {
    /// Whether the rule looks at this equipment: its type, then its scope.
    pub fn applies(&self, entity: &Entity) -> bool {
        (self.applies_to.types.is_empty() || self.applies_to.types.contains(&entity.entity_type))
            && self.in_scope(entity.scope.as_ref())
    }

    /// Whether the rule is enabled in this scope's commune and looks at its
    /// business line.
    pub fn in_scope(&self, scope: Option<&Scope>) -> bool {
        self.communes.includes(scope.map(|s| &s.commune))
            && (self.applies_to.lines.is_empty()
                || scope.is_some_and(|s| self.applies_to.lines.contains(&s.business_line)))
    }

    /// One rule from the API's JSON; a problem is named by its field.
    pub fn from_json(v: Value) -> Result<Rule, Vec<RuleError>> {
        let label = v.id().unwrap_or_else(|| "-".to_owned());
        serde_json::from_value(v).map_err(|e| {
            let message = e.to_string();
            vec![RuleError::invalid(&label, field_of(&message), message)]
        })
    }

    /// One rule written as a TOML document (the console's editor): the
    /// keys of one `[[rule]]` of a rules file, at the top level.
    pub fn from_toml(text: &str) -> Result<Rule, Vec<RuleError>> {
        let v: toml::Value = toml::from_str(text).map_err(|e| vec![RuleError::Syntax(e.to_string())])?;
        let label = v.id().unwrap_or_else(|| "-".to_owned());
        Rule::deserialize(v).map_err(|e| {
            let message = e.to_string();
            vec![RuleError::invalid(&label, field_of(&message), message)]
        })
    }

    /// The rule as [`Rule::from_toml`] reads it.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot write this rule as TOML: {e}\n"))
    }
}

fn first_version() -> u32 {
    1
}
fn yes() -> bool {
    true
}
fn always() -> String {
    "true".to_owned()
}

/// The communes a rule is enabled in.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "CommunesRepr", into = "CommunesRepr")]
pub enum Communes {
    #[default]
    All,
    Only(Vec<CommuneId>),
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum CommunesRepr {
    Word(String),
    List(Vec<CommuneId>),
}

impl TryFrom<CommunesRepr> for Communes {
    type Error = String;
    fn try_from(r: CommunesRepr) -> Result<Self, String> {
        match r {
            CommunesRepr::Word(w) if w == "all" => Ok(Self::All),
            CommunesRepr::Word(w) => Err(format!("expected \"all\" or a list of commune slugs, not \"{w}\"")),
            CommunesRepr::List(l) if l.is_empty() => Err("an empty list of communes enables the rule nowhere".into()),
            CommunesRepr::List(l) => Ok(Self::Only(l)),
        }
    }
}
impl From<Communes> for CommunesRepr {
    fn from(c: Communes) -> Self {
        match c {
            Communes::All => Self::Word("all".into()),
            Communes::Only(l) => Self::List(l),
        }
    }
}

impl Communes {
    pub fn includes(&self, commune: Option<&CommuneId>) -> bool {
        match self {
            Self::All => true,
            Self::Only(list) => commune.is_some_and(|c| list.contains(c)),
        }
    }
}

/// The equipment a rule looks at; an empty list means any.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppliesTo {
    /// Entity types, e.g. `Streetlight`.
    #[serde(default)]
    pub types: Vec<String>,
    #[serde(default)]
    pub lines: Vec<BusinessLine>,
}

/// When a rule is evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Trigger {
    /// On each change of an applicable equipment; fires when the condition
    /// starts to hold, clears when it stops.
    OnChange,
    /// A numeric `value` beyond a limit for `min_duration`; clears once back
    /// past the limit by `hysteresis` (so a value hovering at 0.5 °C does not
    /// raise and clear every minute). Exactly one of `above`, `below`.
    Threshold {
        value: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        above: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        below: Option<f64>,
        #[serde(default)]
        hysteresis: f64,
        #[serde(default)]
        min_duration: SignedDuration,
    },
    /// No observation from the equipment for longer than `max_silence`.
    Absence { max_silence: SignedDuration },
    /// A five-field cron schedule in Paris time.
    Schedule {
        cron: String,
        #[serde(default)]
        skip_public_holidays: bool,
    },
    /// Sunrise or sunset at the equipment's position, plus `offset_minutes`.
    Astronomical {
        event: SunEvent,
        #[serde(default)]
        offset_minutes: i32,
    },
    /// At least `min_count` distinct equipment starting to match the
    /// condition within `radius_m` of each other within `window`.
    AreaAggregate {
        min_count: u32,
        radius_m: f64,
        window: SignedDuration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SunEvent {
    Sunrise,
    Sunset,
}

/// What a firing asks the server to do. Data only: the server executes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RuleAction {
    RaiseAlarm {
        alarm_type: String,
        severity: Severity,
        /// Text with `{attribute}` placeholders.
        #[serde(default)]
        detail: String,
    },
    ClearAlarm {
        alarm_type: String,
    },
    SendCommand {
        command: String,
        value: Value,
    },
    Notify {
        channel: Channel,
        to: String,
        template: String,
    },
    SetAttribute {
        name: String,
        value: Value,
    },
    OpenWorkOrder {
        kind: String,
        priority: Priority,
    },
    /// A public information item (a Smart Data Models `Alert`) about the
    /// equipment's place, ended when the rule clears.
    PublishInformation {
        template: String,
        /// One of [`ALERT_CATEGORIES`]; by default from the business line.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        category: Option<String>,
    },
}

/// The categories of a Smart Data Models `Alert`.
pub const ALERT_CATEGORIES: [&str; 7] = [
    "traffic",
    "naturalDisaster",
    "weather",
    "environment",
    "health",
    "security",
    "agriculture",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Webhook,
    Email,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Webhook => "webhook",
            Channel::Email => "email",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }
}

/// A rule that passed validation, with its expressions compiled once.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub rule: Rule,
    pub condition: Expr,
    /// A threshold rule's value expression.
    pub value: Option<Expr>,
    pub cron: Option<Cron>,
}

/// A validated set of rules, ready for an [`super::Engine`].
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub(super) rules: Vec<CompiledRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRepr<T> {
    #[serde(default = "Vec::new")]
    rule: Vec<T>,
}

impl RuleSet {
    /// Parses a rule file: `[[rule]]` tables. Every problem is reported.
    pub fn parse_toml(text: &str) -> Result<RuleSet, Vec<RuleError>> {
        let file: FileRepr<toml::Value> = toml::from_str(text).map_err(|e| vec![RuleError::Syntax(e.to_string())])?;
        Self::from_items(file.rule, |item| Rule::deserialize(item).map_err(|e| e.to_string()))
    }

    /// Parses the API's JSON: `{"rule": [...]}` or a bare array of rules.
    pub fn parse_json(text: &str) -> Result<RuleSet, Vec<RuleError>> {
        let v: Value = serde_json::from_str(text).map_err(|e| vec![RuleError::Syntax(e.to_string())])?;
        let items = match v {
            Value::Array(items) => items,
            other => {
                serde_json::from_value::<FileRepr<Value>>(other)
                    .map_err(|e| vec![RuleError::Syntax(e.to_string())])?
                    .rule
            }
        };
        Self::from_items(items, |item| serde_json::from_value(item).map_err(|e| e.to_string()))
    }

    /// Validates rules already deserialised (the API's store).
    pub fn from_rules(rules: Vec<Rule>) -> Result<RuleSet, Vec<RuleError>> {
        Self::from_items(rules, Ok)
    }

    fn from_items<T: RuleItem>(
        items: Vec<T>,
        decode: impl Fn(T) -> Result<Rule, String>,
    ) -> Result<RuleSet, Vec<RuleError>> {
        if items.len() > MAX_RULES {
            return Err(vec![RuleError::TooManyRules(items.len())]);
        }
        let mut errors = Vec::new();
        let mut rules = Vec::with_capacity(items.len());
        let mut seen = std::collections::HashSet::new();
        for (index, item) in items.into_iter().enumerate() {
            let label = item.id().unwrap_or_else(|| format!("#{}", index + 1));
            let rule = match decode(item) {
                Ok(rule) => rule,
                Err(message) => {
                    errors.push(RuleError::invalid(&label, field_of(&message), message));
                    continue;
                }
            };
            if !seen.insert(rule.id.clone()) {
                errors.push(RuleError::invalid(
                    &label,
                    "id",
                    "this id is used by an earlier rule".into(),
                ));
            }
            match compile(rule) {
                Ok(compiled) => rules.push(compiled),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if errors.is_empty() {
            Ok(RuleSet { rules })
        } else {
            Err(errors)
        }
    }

    pub fn rules(&self) -> impl ExactSizeIterator<Item = &Rule> {
        self.rules.iter().map(|c| &c.rule)
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// What the parser can read of a rule before decoding it: its id, for errors.
trait RuleItem {
    fn id(&self) -> Option<String>;
}
impl RuleItem for toml::Value {
    fn id(&self) -> Option<String> {
        self.get("id").and_then(|v| v.as_str()).map(str::to_owned)
    }
}
impl RuleItem for Value {
    fn id(&self) -> Option<String> {
        self.get("id").and_then(Value::as_str).map(str::to_owned)
    }
}
impl RuleItem for Rule {
    fn id(&self) -> Option<String> {
        Some(self.id.clone())
    }
}

/// The field a serde message names (`missing field `name``), if any.
fn field_of(message: &str) -> String {
    ["missing field `", "unknown field `", "duplicate field `"]
        .iter()
        .find_map(|p| {
            let rest = &message[message.find(p)? + p.len()..];
            Some(rest[..rest.find('`')?].to_owned())
        })
        .or_else(|| {
            // toml names where a nested value failed: "... in `trigger`".
            let rest = &message[message.rfind("in `")? + 4..];
            Some(rest[..rest.find('`')?].to_owned())
        })
        .unwrap_or_else(|| "-".to_owned())
}

/// Attributes a rule may set: names devices could send, none of the
/// entity's own members, nor its position.
fn is_attribute_name(s: &str) -> bool {
    crate::decode::valid_attribute_name(s) && !crate::entity::RESERVED_MEMBERS.contains(&s) && s != "location"
}

fn is_slug(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Checks one rule's fields and compiles its expressions, reporting every problem.
pub fn compile(rule: Rule) -> Result<CompiledRule, Vec<RuleError>> {
    let mut errors = Vec::new();
    let id = rule.id.clone();
    let mut bad = |field: &str, problem: String| errors.push(RuleError::invalid(&id, field, problem));
    if !is_slug(&rule.id) {
        bad("id", "use 1 to 128 lowercase letters, digits, '-' or '_'".into());
    }
    if rule.version == 0 {
        bad("version", "versions start at 1".into());
    }
    if rule.name.trim().is_empty() || rule.name.len() > MAX_TEXT_LEN {
        bad("name", format!("give a name of 1 to {MAX_TEXT_LEN} characters"));
    }
    if rule.description.len() > 16 * MAX_TEXT_LEN {
        bad("description", format!("longer than {} characters", 16 * MAX_TEXT_LEN));
    }
    if rule
        .applies_to
        .types
        .iter()
        .any(|t| t.is_empty() || t.len() > MAX_TEXT_LEN)
    {
        bad("applies_to.types", "an entity type is empty or too long".into());
    }
    if rule.actions.is_empty() {
        bad("actions", "a rule needs at least one action".into());
    }
    if rule.actions.len() > 32 {
        bad(
            "actions",
            format!("{} actions, more than the 32 allowed", rule.actions.len()),
        );
    }
    let positive_window = |d: SignedDuration| d > SignedDuration::ZERO && d <= MAX_WINDOW;
    let mut cron = None;
    match &rule.trigger {
        Trigger::OnChange => {}
        Trigger::Threshold {
            above,
            below,
            hysteresis,
            min_duration,
            ..
        } => {
            match (above, below) {
                (Some(a), None) | (None, Some(a)) if a.is_finite() => {}
                (Some(_), Some(_)) => bad("trigger.above", "give either 'above' or 'below', not both".into()),
                (None, None) => bad("trigger.below", "give a limit: 'above' or 'below'".into()),
                _ => bad("trigger.above", "the limit must be a finite number".into()),
            }
            if !(hysteresis.is_finite() && *hysteresis >= 0.0) {
                bad("trigger.hysteresis", "must be a number >= 0".into());
            }
            if min_duration.is_negative() || *min_duration > MAX_WINDOW {
                bad("trigger.min_duration", format!("must be from 0 to {MAX_WINDOW:#}"));
            }
        }
        Trigger::Absence { max_silence } => {
            if *max_silence < SignedDuration::from_mins(1) || *max_silence > MAX_WINDOW {
                bad("trigger.max_silence", format!("must be from 1m to {MAX_WINDOW:#}"));
            }
        }
        Trigger::Schedule { cron: text, .. } => match Cron::parse(text) {
            Ok(c) => cron = Some(c),
            Err(e) => bad("trigger.cron", e.to_string()),
        },
        Trigger::Astronomical { offset_minutes, .. } => {
            if offset_minutes.abs() > 12 * 60 {
                bad("trigger.offset_minutes", "must be within ±720 minutes".into());
            }
        }
        Trigger::AreaAggregate {
            min_count,
            radius_m,
            window,
        } => {
            if !(2..=MAX_AGGREGATE_COUNT).contains(min_count) {
                bad("trigger.min_count", format!("must be from 2 to {MAX_AGGREGATE_COUNT}"));
            }
            if !(radius_m.is_finite() && *radius_m > 0.0 && *radius_m <= MAX_RADIUS_M) {
                bad(
                    "trigger.radius_m",
                    format!("must be more than 0 and at most {MAX_RADIUS_M} m"),
                );
            }
            if !positive_window(*window) {
                bad(
                    "trigger.window",
                    format!("must be more than 0 and at most {MAX_WINDOW:#}"),
                );
            }
        }
    }
    for (i, action) in rule.actions.iter().enumerate() {
        let field = format!("actions[{i}]");
        match action {
            RuleAction::SendCommand { command, value } => {
                // Checked against every applicable type that takes commands, so
                // a typo ('flashingamber') is found when the rule is written.
                let mut checked = false;
                for t in &rule.applies_to.types {
                    if crate::command::commands_for(t).is_empty() {
                        continue;
                    }
                    checked = true;
                    if let Err(e) = crate::command::validate(t, command, value) {
                        bad(&field, e.to_string());
                    }
                }
                if !checked {
                    bad(&field, "no applicable entity type accepts commands".into());
                }
            }
            RuleAction::Notify { channel, to, template } => {
                if template.trim().is_empty() || template.len() > 16 * MAX_TEXT_LEN {
                    bad(&field, "give a template of 1 byte to 16 KiB".into());
                }
                let fits = match channel {
                    Channel::Webhook => {
                        (to.starts_with("http://") || to.starts_with("https://")) && !to.contains(char::is_whitespace)
                    }
                    Channel::Email => {
                        let (user, domain) = to.split_once('@').unwrap_or_default();
                        !user.is_empty() && domain.contains('.') && !to.contains(char::is_whitespace)
                    }
                };
                if !fits || to.len() > MAX_TEXT_LEN {
                    bad(&field, format!("'{to}' is not a {} recipient", channel.as_str()));
                }
            }
            RuleAction::PublishInformation { template, category } => {
                if template.trim().is_empty() || template.len() > MAX_TEXT_LEN {
                    bad(&field, format!("give a template of 1 to {MAX_TEXT_LEN} bytes"));
                }
                if let Some(c) = category
                    && !ALERT_CATEGORIES.contains(&c.as_str())
                {
                    bad(
                        &field,
                        format!("category '{c}' is not one of {}", ALERT_CATEGORIES.join(", ")),
                    );
                }
            }
            RuleAction::SetAttribute { name, .. } if !is_attribute_name(name) => {
                bad(&field, format!("'{name}' cannot be an attribute name"));
            }
            RuleAction::OpenWorkOrder { kind, .. } if !is_slug(kind) => {
                bad(&field, "kind must be a slug such as 'lamp-replacement'".into());
            }
            RuleAction::RaiseAlarm { alarm_type, .. } | RuleAction::ClearAlarm { alarm_type }
                if !is_slug(alarm_type) =>
            {
                bad(&field, "alarm_type must be a slug such as 'lamp-out'".into());
            }
            _ => {}
        }
    }
    let condition = expr::compile(&rule.id, "condition", &rule.condition).map_err(|e| errors.push(e));
    let value = match &rule.trigger {
        Trigger::Threshold { value, .. } => expr::compile(&rule.id, "trigger.value", value)
            .map(Some)
            .map_err(|e| errors.push(e)),
        _ => Ok(None),
    };
    match (condition, value) {
        (Ok(condition), Ok(value)) if errors.is_empty() => Ok(CompiledRule {
            rule,
            condition,
            value,
            cron,
        }),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLES: &str = include_str!("../../rules/examples.toml");

    #[test]
    fn examples_parse() {
        let set = RuleSet::parse_toml(EXAMPLES).unwrap_or_else(|e| panic!("{e:#?}"));
        assert_eq!(set.len(), 8);
        let frost = set.rules().find(|r| r.id == "frost-on-roads").expect("frost rule");
        assert_eq!(
            frost.trigger,
            Trigger::Threshold {
                value: "temperature".into(),
                above: None,
                below: Some(0.5),
                hysteresis: 1.0,
                min_duration: SignedDuration::from_mins(15),
            }
        );
        assert!(matches!(&frost.communes, Communes::Only(l) if l.len() == 2));
        let silent = set
            .rules()
            .find(|r| r.id == "silent-weather-station")
            .expect("absence rule");
        assert_eq!(silent.condition, "true");
        assert_eq!(silent.version, 1);
    }

    #[test]
    fn json_round_trip() {
        let set = RuleSet::parse_toml(EXAMPLES).expect("valid");
        let rules: Vec<&Rule> = set.rules().collect();
        let json = serde_json::to_string(&serde_json::json!({ "rule": rules })).expect("serialises");
        let again = RuleSet::parse_json(&json).unwrap_or_else(|e| panic!("{e:#?}"));
        assert!(again.rules().eq(set.rules()));
        let bare = serde_json::to_string(&rules).expect("serialises");
        assert_eq!(RuleSet::parse_json(&bare).expect("an array too").len(), 8);
    }

    #[test]
    fn every_error_is_reported_with_rule_and_field() {
        let text = r#"
[[rule]]
id = "no-name"
applies_to = {}
trigger = { type = "on-change" }
actions = [{ action = "clear-alarm", alarm_type = "x" }]

[[rule]]
id = "bad-condition"
name = "Bad"
applies_to = { types = ["Streetlight"] }
trigger = { type = "on-change" }
condition = """status == 'fault' &&
  (night ||"""
actions = [{ action = "clear-alarm", alarm_type = "x" }]

[[rule]]
id = "bad-command"
name = "Bad command"
applies_to = { types = ["TrafficLightController"] }
trigger = { type = "schedule", cron = "0 25 * * *" }
actions = [{ action = "send-command", command = "mode", value = "flashingamber" }]

[[rule]]
id = "bad-command"
name = "Twice"
applies_to = {}
trigger = { type = "threshold", value = "temperature", above = 1.0, below = 2.0 }
actions = [{ action = "raise-alarm", alarm_type = "x", severity = "apocalyptic" }]
"#;
        let errors = RuleSet::parse_toml(text).expect_err("four bad rules");
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            matches!(&errors[0], RuleError::Invalid { rule, field, .. } if rule == "no-name" && field == "name"),
            "{text:#?}"
        );
        assert!(
            matches!(&errors[1], RuleError::Expression { rule, line: 2, .. } if rule == "bad-condition"),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|e| e.contains("'bad-command', field 'trigger.cron'") && e.contains("hour")),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|e| e.contains("field 'actions[0]'") && e.contains("flashingamber")),
            "{text:#?}"
        );
        // The second rule with the same id fails to decode (unknown severity).
        assert!(text.iter().any(|e| e.contains("apocalyptic")), "{text:#?}");
        assert_eq!(errors.len(), 5, "{text:#?}");
    }

    #[test]
    fn semantic_checks() {
        let rule = |trigger: &str, extra: &str| {
            format!(
                "[[rule]]\nid = \"r\"\nname = \"R\"\napplies_to = {{ types = [\"Streetlight\"] }}\ntrigger = {trigger}\n{extra}\nactions = [{{ action = \"clear-alarm\", alarm_type = \"x\" }}]\n"
            )
        };
        let fails = |text: String, field: &str| {
            let errors = RuleSet::parse_toml(&text).expect_err(field);
            assert!(
                errors
                    .iter()
                    .any(|e| e.to_string().contains(&format!("field '{field}'"))),
                "{field}: {errors:#?}"
            );
        };
        fails(
            rule("{ type = \"threshold\", value = \"x\", above = 1.0, below = 2.0 }", ""),
            "trigger.above",
        );
        fails(rule("{ type = \"threshold\", value = \"x\" }", ""), "trigger.below");
        fails(
            rule("{ type = \"absence\", max_silence = \"800h\" }", ""),
            "trigger.max_silence",
        );
        fails(
            rule(
                "{ type = \"area-aggregate\", min_count = 1, radius_m = 100.0, window = \"1h\" }",
                "",
            ),
            "trigger.min_count",
        );
        fails(
            rule(
                "{ type = \"area-aggregate\", min_count = 3, radius_m = 1e9, window = \"1h\" }",
                "",
            ),
            "trigger.radius_m",
        );
        fails(
            rule(
                "{ type = \"astronomical\", event = \"sunset\", offset_minutes = 1000 }",
                "",
            ),
            "trigger.offset_minutes",
        );
        fails(rule("{ type = \"on-change\" }", "colour = \"red\""), "colour");
        fails(
            rule("{ type = \"on-change\" }", "communes = \"everywhere\""),
            "communes",
        );
        fails(
            rule("{ type = \"absence\", max_silence = \"2 fortnights\" }", ""),
            "trigger",
        );
        fails(
            rule("{ type = \"on-change\" }", "").replace("id = \"r\"", "id = \"Not A Slug\""),
            "id",
        );
        let long = format!("condition = \"{}\"", "a".repeat(MAX_EXPRESSION_LEN + 1));
        let errors = RuleSet::parse_toml(&rule("{ type = \"on-change\" }", &long)).expect_err("too long");
        assert!(
            errors[0].to_string().contains("more than the 4096 allowed"),
            "{errors:?}"
        );
    }

    #[test]
    fn too_many_rules() {
        let one = "[[rule]]\nid = \"r\"\n";
        let errors = RuleSet::parse_toml(&one.repeat(MAX_RULES + 1)).expect_err("too many");
        assert_eq!(errors, vec![RuleError::TooManyRules(MAX_RULES + 1)]);
        assert!(matches!(
            &RuleSet::parse_toml("[[rule]\n").expect_err("syntax")[0],
            RuleError::Syntax(_)
        ));
    }
}

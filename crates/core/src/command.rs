//! Commands to equipment: what may be sent to which type (switching and
//! dimming lights, a traffic controller's mode), the IoT Agent JSON payloads
//! (`/{apikey}/{device_id}/cmd` out, `/cmdexe` back), and a command's life:
//! sent, then acknowledged, failed (the device said so) or expired (no
//! answer in time). Pure: the server publishes, persists and times out.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{EntityId, Timestamp};

/// Where a command is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CommandState {
    /// Published to the device; no answer yet.
    Sent,
    /// The device answered that it executed it.
    Acknowledged,
    /// The device answered with an error, or it could not be sent.
    Failed,
    /// No answer within the timeout.
    Expired,
}

impl CommandState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Acknowledged => "acknowledged",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn is_open(self) -> bool {
        self == Self::Sent
    }
}

/// One command, as Vigie records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Command {
    pub id: String,
    pub entity_id: EntityId,
    pub device_id: String,
    /// The command's name, e.g. `dim`.
    pub name: String,
    pub value: Value,
    pub state: CommandState,
    /// Who sent it: an account, a key or a rule.
    pub issued_by: String,
    pub issued_at: Timestamp,
    pub updated_at: Timestamp,
    /// The device's answer or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What a command's value must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Argument {
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// A whole number in this range, inclusive.
    Integer { min: i64, max: i64 },
}

/// A command a type of equipment accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSpec {
    pub name: &'static str,
    pub argument: Argument,
}

const LIGHTING: &[CommandSpec] = &[
    CommandSpec {
        name: "switch",
        argument: Argument::OneOf(&["on", "off"]),
    },
    // Per cent of the full light level.
    CommandSpec {
        name: "dim",
        argument: Argument::Integer { min: 0, max: 100 },
    },
];

const TRAFFIC_CONTROLLER: &[CommandSpec] = &[CommandSpec {
    name: "mode",
    argument: Argument::OneOf(&["actuated", "fixedTime", "flashingAmber", "off"]),
}];

/// The commands an entity type accepts (none for most types).
pub fn commands_for(entity_type: &str) -> &'static [CommandSpec] {
    match entity_type {
        "Streetlight" | "StreetlightControlCabinet" => LIGHTING,
        "TrafficLightController" => TRAFFIC_CONTROLLER,
        _ => &[],
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("{entity_type} accepts no command '{name}' (accepted: {accepted})")]
    Unknown {
        entity_type: String,
        name: String,
        accepted: String,
    },
    #[error("command '{name}' expects {expected}, not {got}")]
    BadValue {
        name: String,
        expected: String,
        got: String,
    },
}

/// Checks a command against its type's specification; returns the value to
/// send (a whole number for integers, even when written `50.0`).
pub fn validate(entity_type: &str, name: &str, value: &Value) -> Result<Value, CommandError> {
    let specs = commands_for(entity_type);
    let Some(spec) = specs.iter().find(|s| s.name == name) else {
        let accepted = specs.iter().map(|s| s.name).collect::<Vec<_>>().join(", ");
        return Err(CommandError::Unknown {
            entity_type: entity_type.to_owned(),
            name: name.to_owned(),
            accepted: if accepted.is_empty() { "none".into() } else { accepted },
        });
    };
    let bad = |expected: String| CommandError::BadValue {
        name: name.to_owned(),
        expected,
        got: value.to_string(),
    };
    match spec.argument {
        Argument::OneOf(words) => match value.as_str() {
            Some(word) if words.contains(&word) => Ok(Value::String(word.to_owned())),
            _ => Err(bad(format!("one of {}", words.join(", ")))),
        },
        Argument::Integer { min, max } => {
            let n = value
                .as_i64()
                .or_else(|| value.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()));
            match n {
                Some(n) if (min..=max).contains(&n) => Ok(Value::from(n)),
                _ => Err(bad(format!("a whole number from {min} to {max}"))),
            }
        }
    }
}

/// The IoT Agent JSON command payload: `{"<name>": <value>}`.
pub fn payload(name: &str, value: &Value) -> Vec<u8> {
    let mut m = Map::new();
    m.insert(name.to_owned(), value.clone());
    Value::Object(m).to_string().into_bytes()
}

/// A device's answer to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The command's name.
    pub name: String,
    /// Whether the device executed it.
    pub acknowledged: bool,
    /// The device's words (`OK`, or its error).
    pub text: String,
}

/// A device's answer on `cmdexe`: `{"<name>": "<result>"}`, one member per
/// command answered. A result of `OK` (any case) or starting with `OK`
/// acknowledges; anything else is the device's error.
pub fn parse_results(payload: &[u8]) -> Result<Vec<Answer>, String> {
    let value: Value = serde_json::from_slice(payload).map_err(|e| format!("the command result is not JSON: {e}"))?;
    let Value::Object(members) = value else {
        return Err("the command result is not a JSON object {\"<command>\": \"<result>\"}".into());
    };
    Ok(members
        .into_iter()
        .map(|(name, result)| {
            let text = match result {
                Value::String(s) => s,
                other => other.to_string(),
            };
            Answer {
                name,
                acknowledged: text.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("ok")),
                text,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lights_accept_switching_and_dimming_within_bounds() {
        assert_eq!(validate("Streetlight", "dim", &json!(40)), Ok(json!(40)));
        assert_eq!(validate("Streetlight", "dim", &json!("40")), Ok(json!(40)));
        assert_eq!(validate("Streetlight", "dim", &json!(40.0)), Ok(json!(40)));
        assert!(matches!(
            validate("Streetlight", "dim", &json!(140)),
            Err(CommandError::BadValue { .. })
        ));
        assert!(validate("Streetlight", "dim", &json!(40.5)).is_err());
        assert_eq!(validate("Streetlight", "switch", &json!("off")), Ok(json!("off")));
        assert!(validate("Streetlight", "switch", &json!("maybe")).is_err());
        let unknown = validate("Streetlight", "explode", &json!(1)).unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "Streetlight accepts no command 'explode' (accepted: switch, dim)"
        );
        assert!(
            validate("WeatherObserved", "dim", &json!(1))
                .unwrap_err()
                .to_string()
                .contains("none")
        );
    }

    #[test]
    fn payloads_follow_iot_agent_json() {
        assert_eq!(payload("dim", &json!(40)), br#"{"dim":40}"#.to_vec());
        let results = parse_results(br#"{"dim":"OK","switch":"ERROR: driver fault"}"#).expect("parsed");
        assert_eq!((results[0].name.as_str(), results[0].acknowledged), ("dim", true));
        assert_eq!((results[1].name.as_str(), results[1].acknowledged), ("switch", false));
        assert_eq!(results[1].text, "ERROR: driver fault");
        assert!(parse_results(b"[1]").is_err());
        assert!(parse_results(b"not json").is_err());
    }
}

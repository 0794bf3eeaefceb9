//! Device-side message decoding: MQTT topics and payloads of the FIWARE IoT
//! Agent JSON convention and of ChirpStack v4's MQTT integration, turned into
//! [`Observation`]s. Pure functions over bytes, fuzzed in `fuzz/`.

use serde_json::{Map, Value};

use crate::{Device, Observation, Timestamp};

/// Largest payload a device may send; larger ones are refused, not parsed.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Most measures one message may carry.
pub const MAX_MEASURES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("topic '{0}' follows neither the IoT Agent JSON nor the ChirpStack convention")]
    UnknownTopic(String),
    #[error("payload of {0} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("payload is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("payload must be a JSON object of measures (or an array of them), got {0}")]
    NotAnObject(&'static str),
    #[error("payload carries {0} measures, more than the {MAX_MEASURES} allowed")]
    TooManyMeasures(usize),
    #[error("measure '{0}' is not a valid attribute name")]
    InvalidMeasureName(String),
    #[error("timestamp '{0}' is not RFC 3339")]
    InvalidTimestamp(String),
    #[error("ChirpStack event lacks '{0}'")]
    MissingField(&'static str),
    #[error("ChirpStack event is for device {payload}, but was published on the topic of {topic}")]
    DevEuiMismatch { topic: String, payload: String },
}

/// What an MQTT topic says about the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic<'a> {
    /// `/{apikey}/{device_id}/attrs` or `/json/{apikey}/{device_id}/attrs`.
    IotAgentAttrs { apikey: &'a str, device_id: &'a str },
    /// `/{apikey}/{device_id}/cmdexe`: a device's answer to a command.
    IotAgentCommandResult { apikey: &'a str, device_id: &'a str },
    /// `application/{application_id}/device/{dev_eui}/event/{event}`.
    ChirpStackEvent {
        application_id: &'a str,
        dev_eui: &'a str,
        event: &'a str,
    },
}

pub fn parse_topic(topic: &str) -> Result<Topic<'_>, DecodeError> {
    let unknown = || DecodeError::UnknownTopic(topic.chars().take(200).collect());
    let parts: Vec<&str> = topic.split('/').collect();
    let nonempty = |s: &&str| !s.is_empty();
    match parts.as_slice() {
        ["", "json", apikey, device_id, suffix] | ["", apikey, device_id, suffix]
            if nonempty(apikey) && nonempty(device_id) =>
        {
            match *suffix {
                "attrs" => Ok(Topic::IotAgentAttrs { apikey, device_id }),
                "cmdexe" => Ok(Topic::IotAgentCommandResult { apikey, device_id }),
                _ => Err(unknown()),
            }
        }
        ["application", application_id, "device", dev_eui, "event", event]
            if nonempty(application_id) && nonempty(dev_eui) && nonempty(event) =>
        {
            Ok(Topic::ChirpStackEvent {
                application_id,
                dev_eui,
                event,
            })
        }
        _ => Err(unknown()),
    }
}

fn parse_json(payload: &[u8]) -> Result<Value, DecodeError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(DecodeError::TooLarge(payload.len()));
    }
    serde_json::from_slice(payload).map_err(|e| DecodeError::InvalidJson(e.to_string()))
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_time(v: &Value) -> Result<Timestamp, DecodeError> {
    v.as_str()
        .and_then(|s| s.parse::<Timestamp>().ok())
        .ok_or_else(|| DecodeError::InvalidTimestamp(v.to_string().chars().take(64).collect()))
}

/// Attribute names must be usable in NGSI-LD and in the `q` language.
pub(crate) fn valid_attribute_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn observations_from_measures(
    device: &Device,
    measures: &Map<String, Value>,
    default_time: Timestamp,
    out: &mut Vec<Observation>,
) -> Result<(), DecodeError> {
    // IoT Agent convention: a `TimeInstant` measure is the observation time.
    let observed_at = match measures.get("TimeInstant") {
        Some(t) => parse_time(t)?,
        None => default_time,
    };
    for (object_id, value) in measures {
        if object_id == "TimeInstant" {
            continue;
        }
        let (name, unit) = device.map_measure(object_id);
        if !valid_attribute_name(name) {
            return Err(DecodeError::InvalidMeasureName(name.chars().take(64).collect()));
        }
        out.push(Observation {
            entity_id: device.entity_name.clone(),
            attribute: name.to_owned(),
            value: value.clone(),
            observed_at,
            unit_code: unit.map(str::to_owned),
        });
    }
    Ok(())
}

/// Decodes an IoT Agent JSON `attrs` payload: an object of measures, or an
/// array of such objects (several observations in one message).
pub fn decode_iot_agent(
    device: &Device,
    payload: &[u8],
    received_at: Timestamp,
) -> Result<Vec<Observation>, DecodeError> {
    let v = parse_json(payload)?;
    let groups: Vec<&Map<String, Value>> = match &v {
        Value::Object(m) => vec![m],
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_object().ok_or(DecodeError::NotAnObject(json_kind(i))))
            .collect::<Result<_, _>>()?,
        other => return Err(DecodeError::NotAnObject(json_kind(other))),
    };
    let count: usize = groups.iter().map(|g| g.len()).sum();
    if count > MAX_MEASURES {
        return Err(DecodeError::TooManyMeasures(count));
    }
    let mut out = Vec::with_capacity(count);
    for g in groups {
        observations_from_measures(device, g, received_at, &mut out)?;
    }
    Ok(out)
}

/// Decodes a ChirpStack v4 event (`up` or `status`) for `device`, whose DevEUI
/// the topic named. Other event types carry no measures and give none.
pub fn decode_chirpstack(
    device: &Device,
    topic_dev_eui: &str,
    event: &str,
    payload: &[u8],
    received_at: Timestamp,
) -> Result<Vec<Observation>, DecodeError> {
    let v = parse_json(payload)?;
    let obj = v.as_object().ok_or(DecodeError::NotAnObject(json_kind(&v)))?;
    let payload_dev_eui = obj
        .get("deviceInfo")
        .and_then(|d| d.get("devEui"))
        .and_then(Value::as_str)
        .ok_or(DecodeError::MissingField("deviceInfo.devEui"))?;
    if !payload_dev_eui.eq_ignore_ascii_case(topic_dev_eui) {
        return Err(DecodeError::DevEuiMismatch {
            topic: topic_dev_eui.chars().take(32).collect(),
            payload: payload_dev_eui.chars().take(32).collect(),
        });
    }
    let observed_at = match obj.get("time") {
        Some(t) => parse_time(t)?,
        None => received_at,
    };
    let mut out = Vec::new();
    let push = |name: &str, value: Value, unit: Option<&str>| Observation {
        entity_id: device.entity_name.clone(),
        attribute: name.to_owned(),
        value,
        observed_at,
        unit_code: unit.map(str::to_owned),
    };
    match event {
        "up" => {
            match obj.get("object") {
                None => {}
                Some(Value::Object(measures)) => {
                    if measures.len() > MAX_MEASURES {
                        return Err(DecodeError::TooManyMeasures(measures.len()));
                    }
                    let mut with_time = measures.clone();
                    with_time.remove("TimeInstant");
                    observations_from_measures(device, &with_time, observed_at, &mut out)?;
                }
                Some(other) => return Err(DecodeError::NotAnObject(json_kind(other))),
            }
            // Radio quality of the best gateway: what a technician checks first.
            let best = obj
                .get("rxInfo")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|rx| Some((rx.get("rssi")?.as_f64()?, rx.get("snr").and_then(Value::as_f64))))
                .max_by(|a, b| a.0.total_cmp(&b.0));
            if let Some((rssi, snr)) = best {
                out.push(push("rssi", rssi.into(), Some("2N")));
                if let Some(snr) = snr {
                    out.push(push("snr", snr.into(), Some("2N")));
                }
            }
        }
        "status" => {
            // ChirpStack gives 0-100 %; the Device model's batteryLevel is 0-1.
            let unavailable = obj.get("batteryLevelUnavailable").and_then(Value::as_bool) == Some(true);
            if let Some(level) = obj.get("batteryLevel").and_then(Value::as_f64).filter(|_| !unavailable) {
                out.push(push("batteryLevel", ((level / 100.0).clamp(0.0, 1.0)).into(), None));
            }
            if let Some(margin) = obj.get("margin").and_then(Value::as_f64) {
                out.push(push("linkMargin", margin.into(), Some("2N")));
            }
        }
        _ => {}
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AttributeMapping, EntityId, Transport};
    use serde_json::json;

    fn device(transport: Transport) -> Device {
        Device {
            device_id: "SL-1".into(),
            transport,
            entity_name: EntityId::new("urn:ngsi-ld:Streetlight:dijon:1").unwrap(),
            entity_type: "Streetlight".into(),
            scope: None,
            attributes: vec![AttributeMapping {
                object_id: "p".into(),
                name: "powerConsumption".into(),
                type_hint: None,
                unit_code: Some("WTT".into()),
            }],
            mqtt_password_hash: None,
        }
    }

    fn now() -> Timestamp {
        "2026-11-22T18:00:00Z".parse().unwrap()
    }

    #[test]
    fn topics_are_recognised() {
        assert_eq!(
            parse_topic("/lighting/SL-1/attrs").unwrap(),
            Topic::IotAgentAttrs {
                apikey: "lighting",
                device_id: "SL-1"
            }
        );
        assert_eq!(
            parse_topic("/json/lighting/SL-1/attrs").unwrap(),
            Topic::IotAgentAttrs {
                apikey: "lighting",
                device_id: "SL-1"
            }
        );
        assert_eq!(
            parse_topic("/k/d/cmdexe").unwrap(),
            Topic::IotAgentCommandResult {
                apikey: "k",
                device_id: "d"
            }
        );
        assert_eq!(
            parse_topic("application/7/device/a81758fffe030001/event/up").unwrap(),
            Topic::ChirpStackEvent {
                application_id: "7",
                dev_eui: "a81758fffe030001",
                event: "up"
            }
        );
        for bad in [
            "",
            "/",
            "//d/attrs",
            "/k//attrs",
            "/k/d/other",
            "application/7/device//event/up",
            "a/b",
        ] {
            assert!(matches!(parse_topic(bad), Err(DecodeError::UnknownTopic(_))), "{bad}");
        }
    }

    #[test]
    fn iot_agent_measures_map_to_attributes() {
        let d = device(Transport::IotAgentJson {
            apikey: "lighting".into(),
        });
        let obs = decode_iot_agent(&d, br#"{"p": 38.5, "powerState": "on"}"#, now()).unwrap();
        assert_eq!(obs.len(), 2);
        let p = obs.iter().find(|o| o.attribute == "powerConsumption").unwrap();
        assert_eq!(p.value, json!(38.5));
        assert_eq!(p.unit_code.as_deref(), Some("WTT"));
        assert_eq!(p.observed_at, now());

        let obs = decode_iot_agent(
            &d,
            br#"[{"p": 1, "TimeInstant": "2026-11-22T17:00:00Z"}, {"p": 2}]"#,
            now(),
        )
        .unwrap();
        assert_eq!(obs[0].observed_at, "2026-11-22T17:00:00Z".parse::<Timestamp>().unwrap());
        assert_eq!(obs[1].observed_at, now());
    }

    #[test]
    fn iot_agent_bad_payloads_are_named() {
        let d = device(Transport::IotAgentJson {
            apikey: "lighting".into(),
        });
        let err = |p: &[u8]| decode_iot_agent(&d, p, now()).unwrap_err();
        assert!(matches!(err(b"{"), DecodeError::InvalidJson(_)));
        assert_eq!(err(b"42"), DecodeError::NotAnObject("a number"));
        assert_eq!(err(b"[1]"), DecodeError::NotAnObject("a number"));
        assert!(matches!(err(br#"{"a b": 1}"#), DecodeError::InvalidMeasureName(_)));
        assert!(matches!(
            err(br#"{"TimeInstant": "noon"}"#),
            DecodeError::InvalidTimestamp(_)
        ));
        assert!(matches!(
            err(&vec![b' '; MAX_PAYLOAD_BYTES + 1]),
            DecodeError::TooLarge(_)
        ));
        let many: Map<String, Value> = (0..=MAX_MEASURES).map(|i| (format!("m{i}"), json!(i))).collect();
        assert!(matches!(
            err(&serde_json::to_vec(&many).unwrap()),
            DecodeError::TooManyMeasures(_)
        ));
    }

    #[test]
    fn chirpstack_uplink_and_status_decode() {
        let d = device(Transport::Lorawan {
            dev_eui: "a81758fffe030001".into(),
        });
        let up = json!({
            "deduplicationId": "3ac7e3c4", "time": "2026-11-22T17:59:58.123Z",
            "deviceInfo": {"devEui": "A81758FFFE030001", "deviceName": "park-1"},
            "fCnt": 10, "fPort": 1, "data": "AQ==",
            "object": {"occupied": true, "p": 2.5},
            "rxInfo": [{"gatewayId": "g1", "rssi": -110, "snr": -3.5}, {"gatewayId": "g2", "rssi": -97, "snr": 6.0}]
        });
        let obs = decode_chirpstack(&d, "a81758fffe030001", "up", &serde_json::to_vec(&up).unwrap(), now()).unwrap();
        let get = |n: &str| obs.iter().find(|o| o.attribute == n).map(|o| o.value.clone());
        assert_eq!(get("occupied"), Some(json!(true)));
        assert_eq!(get("powerConsumption"), Some(json!(2.5)));
        assert_eq!(get("rssi"), Some(json!(-97.0)));
        assert_eq!(get("snr"), Some(json!(6.0)));
        assert_eq!(
            obs[0].observed_at,
            "2026-11-22T17:59:58.123Z".parse::<Timestamp>().unwrap()
        );

        let status = json!({"deviceInfo": {"devEui": "a81758fffe030001"}, "margin": 7, "batteryLevel": 85.0});
        let obs = decode_chirpstack(
            &d,
            "a81758fffe030001",
            "status",
            &serde_json::to_vec(&status).unwrap(),
            now(),
        )
        .unwrap();
        assert_eq!(obs[0].attribute, "batteryLevel");
        assert_eq!(obs[0].value, json!(0.85));

        let join = json!({"deviceInfo": {"devEui": "a81758fffe030001"}});
        assert!(
            decode_chirpstack(
                &d,
                "a81758fffe030001",
                "join",
                &serde_json::to_vec(&join).unwrap(),
                now()
            )
            .unwrap()
            .is_empty()
        );
    }

    #[test]
    fn chirpstack_refuses_a_device_speaking_for_another() {
        let d = device(Transport::Lorawan {
            dev_eui: "a81758fffe030001".into(),
        });
        let up = json!({"deviceInfo": {"devEui": "0000000000000002"}, "object": {"a": 1}});
        let err =
            decode_chirpstack(&d, "a81758fffe030001", "up", &serde_json::to_vec(&up).unwrap(), now()).unwrap_err();
        assert!(matches!(err, DecodeError::DevEuiMismatch { .. }));
    }
}

//! `notification.endpoint` (5.2.15): where and how notifications go. HTTP(S)
//! endpoints get a POST; MQTT ones (clause 7, `mqtt[s]://[user[:password]@]
//! host[:port]/topic[/subtopic]*`) a PUBLISH on the URI's path.

use serde_json::{Map, Value};

use super::{SubscriptionError, invalid};

/// Longest endpoint `uri` (and `jsonldContext`), in bytes.
pub const MAX_URI_LEN: usize = 2048;
/// Most pairs in `receiverInfo`, and in `notifierInfo`.
pub const MAX_INFO_PAIRS: usize = 16;
/// Longest key of an info pair, in bytes.
pub const MAX_INFO_KEY_LEN: usize = 256;
/// Longest value of an info pair, in bytes.
pub const MAX_INFO_VALUE_LEN: usize = 1024;
/// Longest `timeout` and `cooldown`, in milliseconds: a day.
pub const MAX_ENDPOINT_MS: u64 = 24 * 3600 * 1000;

/// The media type of notifications (`accept`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accept {
    /// `application/json`: the `@context` travels as a `Link`.
    #[default]
    Json,
    /// `application/ld+json`: the `@context` travels in the body.
    JsonLd,
}

impl Accept {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::JsonLd => "application/ld+json",
        }
    }
}

/// One `receiverInfo` / `notifierInfo` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValuePair {
    pub key: String,
    pub value: String,
}

/// The MQTT protocol version (`notifierInfo` `MQTT-Version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MqttVersion {
    #[default]
    V311,
    V5,
}

/// Where an MQTT notification is published, read from the endpoint URI and
/// `notifierInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttTarget {
    /// `mqtts`: MQTT over TLS.
    pub tls: bool,
    pub host: String,
    /// 1883, or 8883 with TLS, unless the URI says otherwise.
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The URI's path without its leading `/`, percent-decoded.
    pub topic: String,
    pub version: MqttVersion,
    /// 0, 1 or 2 (`MQTT-QoS`), 0 by default.
    pub qos: u8,
}

/// The transport an endpoint uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// POST to the URI; `tls` for `https`.
    Http {
        tls: bool,
    },
    Mqtt(MqttTarget),
}

/// A validated `notification.endpoint`.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    uri: String,
    accept: Accept,
    timeout_ms: Option<u64>,
    cooldown_ms: Option<u64>,
    receiver_info: Vec<KeyValuePair>,
    notifier_info: Vec<KeyValuePair>,
    target: Target,
}

impl Endpoint {
    pub fn uri(&self) -> &str {
        &self.uri
    }
    pub fn accept(&self) -> Accept {
        self.accept
    }
    /// How long a delivery may take before it counts as failed.
    pub fn timeout_ms(&self) -> Option<u64> {
        self.timeout_ms
    }
    /// How long to wait after a failure before the next attempt.
    pub fn cooldown_ms(&self) -> Option<u64> {
        self.cooldown_ms
    }
    /// Sent with each notification: HTTP headers, or MQTT `metadata`.
    pub fn receiver_info(&self) -> &[KeyValuePair] {
        &self.receiver_info
    }
    /// Settings for the notifier itself (e.g. `MQTT-QoS`).
    pub fn notifier_info(&self) -> &[KeyValuePair] {
        &self.notifier_info
    }
    pub fn target(&self) -> &Target {
        &self.target
    }

    pub(super) fn parse(v: &Value) -> Result<Self, SubscriptionError> {
        const P: &str = "notification.endpoint";
        let obj = v
            .as_object()
            .ok_or_else(|| invalid(P, "must be an object with a 'uri'"))?;
        if let Some(key) = obj.keys().find(|k| {
            !matches!(
                k.as_str(),
                "uri" | "accept" | "timeout" | "cooldown" | "receiverInfo" | "notifierInfo"
            )
        }) {
            return Err(invalid(format!("{P}.{key}"), "is not a member of an endpoint"));
        }
        let uri = match obj.get("uri") {
            None => return Err(invalid(format!("{P}.uri"), "is missing")),
            Some(Value::String(s)) if s.len() > MAX_URI_LEN => {
                return Err(invalid(
                    format!("{P}.uri"),
                    format!("is longer than {MAX_URI_LEN} bytes"),
                ));
            }
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(invalid(format!("{P}.uri"), "must be a string")),
        };
        let accept = match obj.get("accept").map(Value::as_str) {
            None | Some(Some("application/json")) => Accept::Json,
            Some(Some("application/ld+json")) => Accept::JsonLd,
            Some(_) => {
                return Err(invalid(
                    format!("{P}.accept"),
                    "must be application/json or application/ld+json",
                ));
            }
        };
        let millis = |key: &str| -> Result<Option<u64>, SubscriptionError> {
            obj.get(key)
                .map(|v| {
                    v.as_u64()
                        .filter(|ms| (1..=MAX_ENDPOINT_MS).contains(ms))
                        .ok_or_else(|| {
                            invalid(
                                format!("{P}.{key}"),
                                format!("must be a whole number of milliseconds, 1 to {MAX_ENDPOINT_MS}"),
                            )
                        })
                })
                .transpose()
        };
        let timeout_ms = millis("timeout")?;
        let cooldown_ms = millis("cooldown")?;
        let receiver_info = pairs(obj, "receiverInfo")?;
        let notifier_info = pairs(obj, "notifierInfo")?;
        let target = target(&uri, &notifier_info)?;
        Ok(Self {
            uri,
            accept,
            timeout_ms,
            cooldown_ms,
            receiver_info,
            notifier_info,
            target,
        })
    }

    pub(super) fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("uri".into(), Value::String(self.uri.clone()));
        m.insert("accept".into(), Value::String(self.accept.as_str().into()));
        if let Some(t) = self.timeout_ms {
            m.insert("timeout".into(), Value::from(t));
        }
        if let Some(c) = self.cooldown_ms {
            m.insert("cooldown".into(), Value::from(c));
        }
        for (key, list) in [
            ("receiverInfo", &self.receiver_info),
            ("notifierInfo", &self.notifier_info),
        ] {
            if !list.is_empty() {
                let items = list
                    .iter()
                    .map(|p| serde_json::json!({"key": p.key, "value": p.value}))
                    .collect();
                m.insert(key.into(), Value::Array(items));
            }
        }
        Value::Object(m)
    }
}

/// `receiverInfo` keys become HTTP header names and values header values:
/// both are held to what a header can carry, so no pair can inject another.
fn pairs(obj: &Map<String, Value>, key: &str) -> Result<Vec<KeyValuePair>, SubscriptionError> {
    let path = format!("notification.endpoint.{key}");
    let Some(v) = obj.get(key) else {
        return Ok(Vec::new());
    };
    let items = v
        .as_array()
        .ok_or_else(|| invalid(&path, "must be an array of {key, value}"))?;
    if items.len() > MAX_INFO_PAIRS {
        return Err(invalid(&path, format!("holds more than {MAX_INFO_PAIRS} pairs")));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = format!("{path}[{i}]");
            let o = item
                .as_object()
                .filter(|o| o.len() == 2)
                .ok_or_else(|| invalid(&at, "must be an object with exactly 'key' and 'value'"))?;
            let key = o
                .get("key")
                .and_then(Value::as_str)
                .filter(|k| {
                    !k.is_empty()
                        && k.len() <= MAX_INFO_KEY_LEN
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
                })
                .ok_or_else(|| {
                    invalid(
                        format!("{at}.key"),
                        format!(
                            "must be a header-like name (letters, digits, '-', ...; at most {MAX_INFO_KEY_LEN} bytes)"
                        ),
                    )
                })?;
            let value = o
                .get("value")
                .and_then(Value::as_str)
                .filter(|v| v.len() <= MAX_INFO_VALUE_LEN && !v.chars().any(|c| c.is_control()))
                .ok_or_else(|| {
                    invalid(
                        format!("{at}.value"),
                        format!("must be a string without control characters, at most {MAX_INFO_VALUE_LEN} bytes"),
                    )
                })?;
            Ok(KeyValuePair {
                key: key.to_owned(),
                value: value.to_owned(),
            })
        })
        .collect()
}

/// The parts of a `scheme://authority/path` URI that delivery needs.
struct Parts<'a> {
    scheme: String,
    userinfo: Option<&'a str>,
    host: &'a str,
    port: Option<u16>,
    /// From the `/` after the authority, query and fragment excluded.
    path: &'a str,
    /// A `?query` or `#fragment` follows the path.
    has_suffix: bool,
}

fn split(uri: &str) -> Option<Parts<'_>> {
    let (scheme, rest) = uri.split_once("://")?;
    if !valid_scheme(scheme) || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(end);
    let path_end = after.find(['?', '#']).unwrap_or(after.len());
    let path = &after[..path_end];
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    // `[v6::addr]:port`, or `host:port`.
    let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let (addr, tail) = inner.split_once(']')?;
        if addr.is_empty() || !addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
            return None;
        }
        (&hostport[..addr.len() + 2], tail.strip_prefix(':'))
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty()
        || (!host.starts_with('[')
            && !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '~' | '%')))
    {
        return None;
    }
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p > 0)?),
    };
    Some(Parts {
        scheme: scheme.to_ascii_lowercase(),
        userinfo,
        host,
        port,
        path,
        has_suffix: path_end < after.len(),
    })
}

fn valid_scheme(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// An absolute URI (RFC 3986 `scheme ":" hier-part`), bounded in length.
pub(super) fn is_absolute_uri(s: &str) -> bool {
    s.len() <= MAX_URI_LEN
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && s.split_once(':')
            .is_some_and(|(scheme, rest)| valid_scheme(scheme) && !rest.is_empty())
}

fn target(uri: &str, notifier_info: &[KeyValuePair]) -> Result<Target, SubscriptionError> {
    const P: &str = "notification.endpoint.uri";
    let parts = split(uri).ok_or_else(|| {
        invalid(
            P,
            "must be an absolute http://, https://, mqtt:// or mqtts:// URI with a host",
        )
    })?;
    match parts.scheme.as_str() {
        "http" | "https" => Ok(Target::Http {
            tls: parts.scheme == "https",
        }),
        "mqtt" | "mqtts" => {
            let tls = parts.scheme == "mqtts";
            let topic = percent_decode(parts.path.strip_prefix('/').unwrap_or(""))
                .ok_or_else(|| invalid(P, "the MQTT topic (the URI's path) has an invalid %-escape"))?;
            if topic.is_empty() {
                return Err(invalid(P, "an MQTT endpoint needs a topic: mqtt://host[:port]/topic"));
            }
            if parts.has_suffix || topic.contains(['+', '#', '\0']) {
                return Err(invalid(
                    P,
                    "the MQTT topic cannot hold the wildcards '+' or '#', nor '?'",
                ));
            }
            let (username, password) = match parts.userinfo {
                None => (None, None),
                Some(u) => {
                    let (name, pass) = match u.split_once(':') {
                        Some((n, p)) => (n, Some(p)),
                        None => (u, None),
                    };
                    let decode = |s: &str| {
                        percent_decode(s).ok_or_else(|| invalid(P, "the MQTT credentials have an invalid %-escape"))
                    };
                    (
                        Some(decode(name)?).filter(|n| !n.is_empty()),
                        pass.map(decode).transpose()?,
                    )
                }
            };
            let mut version = MqttVersion::default();
            let mut qos = 0;
            for pair in notifier_info {
                let at = "notification.endpoint.notifierInfo";
                match pair.key.as_str() {
                    "MQTT-Version" => {
                        version = match pair.value.as_str() {
                            "mqtt3.1.1" => MqttVersion::V311,
                            "mqtt5.0" => MqttVersion::V5,
                            _ => return Err(invalid(at, "MQTT-Version must be mqtt3.1.1 or mqtt5.0")),
                        }
                    }
                    "MQTT-QoS" => {
                        qos = match pair.value.as_str() {
                            "0" => 0,
                            "1" => 1,
                            "2" => 2,
                            _ => return Err(invalid(at, "MQTT-QoS must be 0, 1 or 2")),
                        }
                    }
                    _ => {}
                }
            }
            Ok(Target::Mqtt(MqttTarget {
                tls,
                host: parts.host.to_owned(),
                port: parts.port.unwrap_or(if tls { 8883 } else { 1883 }),
                username,
                password,
                topic,
                version,
                qos,
            }))
        }
        other => Err(invalid(
            P,
            format!("scheme '{other}' is not supported: use http, https, mqtt or mqtts"),
        )),
    }
}

/// Decodes `%XX` escapes; `None` when one is malformed or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

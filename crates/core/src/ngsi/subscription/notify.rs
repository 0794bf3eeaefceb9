//! The notification a subscription sends (5.3.1, 5.11): each entity in the
//! form `notification` asks for, the body around them, and the HTTP headers
//! or the MQTT envelope (clause 7.2) that carry it.

use serde_json::{Map, Value};

use super::matching::{Change, ChangeKind};
use super::{Accept, Format, Subscription, Target};
use crate::entity::format_timestamp;
use crate::ngsi::key_value;
use crate::{Attribute, AttributeKind, Entity, EntityId, Timestamp};

/// The NGSI-LD Null: how a deleted attribute's value reads in a notification.
pub const NGSI_LD_NULL: &str = "urn:ngsi-ld:null";
/// The core `@context`, used when the subscription names none.
pub const CORE_CONTEXT: &str = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld";

/// What to publish for an MQTT endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttMessage {
    pub topic: String,
    pub qos: u8,
    /// `{"metadata": {...}, "body": <notification>}`.
    pub payload: Value,
}

impl Subscription {
    /// One element of a notification's `data` for `change`: the entity after
    /// it, with `notification.attributes`, `format`, `sysAttrs`, `lang`; the
    /// attributes it deleted read as the NGSI-LD Null; with `showChanges`, a
    /// changed attribute also carries its previous value (`previousValue`,
    /// `previousObject`, `previousLanguageMap`...). A deleted entity reads
    /// `{id, type, deletedAt}`.
    pub fn render_change(&self, change: &Change<'_>, notified_at: Timestamp) -> Value {
        match (change.kind(), change.after()) {
            (ChangeKind::Deleted, _) | (_, None) => {
                let gone = change.subject();
                let mut m = Map::with_capacity(3);
                m.insert("id".into(), Value::String(gone.id.to_string()));
                m.insert("type".into(), Value::String(gone.entity_type.clone()));
                m.insert("deletedAt".into(), Value::String(format_timestamp(notified_at)));
                Value::Object(m)
            }
            (_, Some(after)) => self.render(after, change.before()),
        }
    }

    /// One element of `data` for a periodic notification: the entity as it stands.
    pub fn render_entity(&self, entity: &Entity) -> Value {
        self.render(entity, None)
    }

    /// The notification body (5.3.1). `id` is a fresh URI from the caller;
    /// `data` holds [`Subscription::render_change`] / [`Subscription::render_entity`]
    /// results. With `accept: application/ld+json` it carries its `@context`.
    pub fn notification(&self, id: &EntityId, notified_at: Timestamp, data: Vec<Value>) -> Value {
        let mut m = Map::with_capacity(6);
        m.insert("id".into(), Value::String(id.to_string()));
        m.insert("type".into(), Value::String("Notification".into()));
        m.insert("subscriptionId".into(), Value::String(self.id.to_string()));
        m.insert("notifiedAt".into(), Value::String(format_timestamp(notified_at)));
        m.insert("data".into(), Value::Array(data));
        if self.notification.endpoint.accept() == Accept::JsonLd {
            m.insert("@context".into(), Value::String(self.context().into()));
        }
        Value::Object(m)
    }

    /// The HTTP headers of a notification: `Content-Type`, the `Link` to the
    /// `@context` for plain JSON, then every `receiverInfo` pair.
    pub fn notification_headers(&self) -> Vec<(String, String)> {
        let endpoint = &self.notification.endpoint;
        let mut headers = vec![("Content-Type".to_owned(), endpoint.accept().as_str().to_owned())];
        if endpoint.accept() == Accept::Json {
            headers.push((
                "Link".to_owned(),
                format!(
                    "<{}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\"",
                    self.context()
                ),
            ));
        }
        headers.extend(
            endpoint
                .receiver_info()
                .iter()
                .map(|p| (p.key.clone(), p.value.clone())),
        );
        headers
    }

    /// For an MQTT endpoint, the message to publish: the topic and QoS from
    /// the endpoint, and the payload wrapped as clause 7.2 says,
    /// `{"metadata": <the headers HTTP would carry>, "body": notification}`.
    /// `None` for an HTTP endpoint.
    pub fn mqtt_message(&self, notification: Value) -> Option<MqttMessage> {
        let Target::Mqtt(target) = self.notification.endpoint.target() else {
            return None;
        };
        let metadata: Map<String, Value> = self
            .notification_headers()
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        let mut payload = Map::with_capacity(2);
        payload.insert("metadata".into(), Value::Object(metadata));
        payload.insert("body".into(), notification);
        Some(MqttMessage {
            topic: target.topic.clone(),
            qos: target.qos,
            payload: Value::Object(payload),
        })
    }

    fn context(&self) -> &str {
        self.jsonld_context.as_deref().unwrap_or(CORE_CONTEXT)
    }

    fn render(&self, current: &Entity, previous: Option<&Entity>) -> Value {
        let params = &self.notification;
        let selected = |name: &str| params.attributes.is_empty() || params.attributes.iter().any(|a| a == name);
        let mut m = Map::with_capacity(4 + current.attributes.len());
        m.insert("id".into(), Value::String(current.id.to_string()));
        m.insert("type".into(), Value::String(current.entity_type.clone()));
        if let Some(scope) = &current.scope {
            m.insert("scope".into(), Value::String(scope.to_ngsi()));
        }
        if params.sys_attrs {
            for (key, t) in [("createdAt", current.created_at), ("modifiedAt", current.modified_at)] {
                if let Some(t) = t {
                    m.insert(key.into(), Value::String(format_timestamp(t)));
                }
            }
        }
        for (name, attr) in &current.attributes {
            if selected(name) {
                let old = previous.and_then(|p| p.attributes.get(name)).filter(|old| *old != attr);
                m.insert(name.clone(), self.render_attribute(attr, old));
            }
        }
        if let Some(previous) = previous {
            for (name, old) in &previous.attributes {
                if selected(name) && !current.attributes.contains_key(name) {
                    m.insert(name.clone(), self.render_deleted(old));
                }
            }
        }
        Value::Object(m)
    }

    fn render_attribute(&self, attr: &Attribute, previous: Option<&Attribute>) -> Value {
        let format = self.notification.format;
        let language = match (&self.lang, attr.kind, &attr.value) {
            (Some(lang), AttributeKind::LanguageProperty, Value::Object(map)) => pick_language(map, lang),
            _ => None,
        };
        if format == Format::KeyValues {
            return match language {
                Some((_, text)) => text.clone(),
                None => key_value(attr),
            };
        }
        let Value::Object(mut m) = attr.to_normalized() else {
            return Value::Null;
        };
        if let Some((tag, text)) = language {
            // `lang` turns a LanguageProperty into a Property in that language (4.15).
            m.remove("languageMap");
            m.insert("type".into(), Value::String("Property".into()));
            m.insert("value".into(), text.clone());
            m.insert("lang".into(), Value::String(tag.to_owned()));
        }
        if self.notification.show_changes
            && let Some(old) = previous
        {
            m.insert(previous_member(old.kind).into(), old.value.clone());
        }
        match format {
            Format::Concise => concise(m, attr.kind),
            _ => Value::Object(m),
        }
    }

    fn render_deleted(&self, old: &Attribute) -> Value {
        let null = match old.kind {
            AttributeKind::LanguageProperty => serde_json::json!({"@none": NGSI_LD_NULL}),
            _ => Value::String(NGSI_LD_NULL.into()),
        };
        if self.notification.format == Format::KeyValues {
            return null;
        }
        let mut m = Map::with_capacity(3);
        if self.notification.format == Format::Normalized {
            m.insert("type".into(), serde_json::to_value(old.kind).unwrap_or(Value::Null));
        }
        m.insert(old.kind.value_member().into(), null);
        if self.notification.show_changes {
            m.insert(previous_member(old.kind).into(), old.value.clone());
        }
        Value::Object(m)
    }
}

/// The member carrying an attribute's previous value with `showChanges`.
fn previous_member(kind: AttributeKind) -> &'static str {
    match kind {
        AttributeKind::Property | AttributeKind::GeoProperty => "previousValue",
        AttributeKind::Relationship => "previousObject",
        AttributeKind::LanguageProperty => "previousLanguageMap",
        AttributeKind::VocabProperty => "previousVocab",
        AttributeKind::JsonProperty => "previousJson",
        AttributeKind::ListProperty => "previousValueList",
        AttributeKind::ListRelationship => "previousObjectList",
    }
}

/// The concise form of a normalized attribute: no `type`; a Property or
/// GeoProperty with nothing but its value is the bare value (a Property's
/// object value stays wrapped, lest it read as an attribute).
fn concise(mut m: Map<String, Value>, kind: AttributeKind) -> Value {
    m.remove("type");
    let bare = m.len() == 1
        && match kind {
            AttributeKind::Property => m.get("value").is_some_and(|v| !v.is_object()),
            AttributeKind::GeoProperty => m.contains_key("value"),
            _ => false,
        };
    if bare && let Some(value) = m.remove("value") {
        return value;
    }
    Value::Object(m)
}

/// The text of a language map in the first of `lang`'s tags it holds
/// (`*`: any), else its `@none` text, else its first: with its tag.
fn pick_language<'m>(map: &'m Map<String, Value>, lang: &str) -> Option<(&'m str, &'m Value)> {
    lang.split(',')
        .map(str::trim)
        .find_map(|tag| {
            if tag == "*" {
                map.iter().next()
            } else {
                map.get_key_value(tag)
            }
        })
        .or_else(|| map.get_key_value("@none"))
        .or_else(|| map.iter().next())
        .map(|(tag, text)| (tag.as_str(), text))
}

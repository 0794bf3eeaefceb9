//! Concise and simplified (keyValues) input: NGSI-LD lets clients leave out
//! what can be inferred (clauses 4.5.2.3, 4.5.3.3, 4.5.18 to 4.5.24: concise
//! representation, v1.6+). These functions restore the normalized form by the
//! specification's inference rules, so that every payload then goes through
//! the one normalized parser, [`Entity::from_normalized`].
//!
//! Rules, for one attribute instance:
//! - an object with a `type` naming an attribute kind is normalized already
//!   (its sub-attributes may still be concise);
//! - an object with exactly one value member infers its kind from it:
//!   `value` → Property (GeoProperty when the value is a GeoJSON geometry),
//!   `object` → Relationship, `objectList` → ListRelationship, `languageMap` →
//!   LanguageProperty, `vocab` → VocabProperty, `json` → JsonProperty,
//!   `valueList` → ListProperty; two value members are an error;
//! - a GeoJSON geometry → a GeoProperty holding it;
//! - anything else (string, number, boolean, array, other object) → a
//!   Property holding it, as in keyValues.
//!
//! An attribute given as an array is a list of instances when every item is
//! an object with a kind (a `type` or a value member); otherwise the array is
//! a Property's value (`"tags": ["a", "b"]`).

use serde_json::{Map, Value};

use crate::entity::{RESERVED_MEMBERS, is_geometry};
use crate::{Attribute, AttributeKind, Entity};

/// Deepest nesting of sub-attributes (properties of properties) expanded.
pub const MAX_DEPTH: usize = 8;

/// NGSI-LD Null: in a merge or a partial update, it deletes what it replaces.
/// It is refused anywhere else.
pub const NGSI_LD_NULL: &str = "urn:ngsi-ld:null";

/// Members of an attribute that are not sub-attributes: its kind, its value
/// members, and the non-reified members the specification defines.
const NON_REIFIED: [&str; 12] = [
    "type",
    "observedAt",
    "unitCode",
    "datasetId",
    "createdAt",
    "modifiedAt",
    "deletedAt",
    "expiresAt",
    "instanceId",
    "lang",
    "objectType",
    "@context",
];

/// Whether a member of an attribute is a sub-attribute (to expand in turn).
pub(crate) fn is_sub_attribute(member: &str) -> bool {
    !NON_REIFIED.contains(&member) && !AttributeKind::ALL.iter().any(|k| k.value_member() == member)
}

/// The kind an attribute object's value member implies, if it has one.
pub(crate) fn inferred_kind(name: &str, obj: &Map<String, Value>) -> Result<Option<AttributeKind>, String> {
    let mut found: Option<AttributeKind> = None;
    for kind in AttributeKind::ALL {
        // Property and GeoProperty share `value`: one test for both.
        if kind == AttributeKind::GeoProperty || !obj.contains_key(kind.value_member()) {
            continue;
        }
        if let Some(first) = found {
            return Err(format!(
                "attribute '{name}' has both '{}' and '{}': which kind is it?",
                first.value_member(),
                kind.value_member()
            ));
        }
        found = Some(kind);
    }
    Ok(found.map(|kind| match (kind, obj.get("value")) {
        (AttributeKind::Property, Some(v)) if is_geometry(v) => AttributeKind::GeoProperty,
        _ => kind,
    }))
}

/// The kind an attribute object names with `type`, if that names a kind.
fn named_kind(obj: &Map<String, Value>) -> Option<AttributeKind> {
    obj.get("type")
        .and_then(Value::as_str)
        .and_then(AttributeKind::from_name)
}

/// Whether an array given for an attribute lists its instances.
pub(crate) fn is_instance_list(items: &[Value]) -> bool {
    !items.is_empty()
        && items.iter().all(|item| {
            item.as_object().is_some_and(|o| {
                named_kind(o).is_some() || AttributeKind::ALL.iter().any(|k| o.contains_key(k.value_member()))
            })
        })
}

/// One attribute instance, concise or simplified, in normalized form.
pub fn expand_instance(name: &str, v: &Value) -> Result<Value, String> {
    expand_at(name, v, 0)
}

fn expand_at(name: &str, v: &Value, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "attribute '{name}' nests sub-attributes deeper than {MAX_DEPTH} levels"
        ));
    }
    let wrap = |kind: AttributeKind, value: &Value| {
        let mut m = Map::with_capacity(2);
        m.insert("type".into(), Value::String(kind.name().to_owned()));
        m.insert(kind.value_member().into(), value.clone());
        Value::Object(m)
    };
    match v {
        Value::Null => Err(format!("attribute '{name}' is null")),
        Value::String(s) if s == NGSI_LD_NULL => Err(format!(
            "attribute '{name}' is NGSI-LD Null, which only a merge or an update may carry"
        )),
        Value::Object(obj) => {
            let kind = match named_kind(obj) {
                Some(kind) => Some(kind),
                None => inferred_kind(name, obj)?,
            };
            let Some(kind) = kind else {
                let kind = if is_geometry(v) {
                    AttributeKind::GeoProperty
                } else {
                    AttributeKind::Property
                };
                return Ok(wrap(kind, v));
            };
            let mut out = Map::with_capacity(obj.len() + 1);
            out.insert("type".into(), Value::String(kind.name().to_owned()));
            for (member, value) in obj {
                if member == "type" {
                    continue;
                }
                let value = if is_sub_attribute(member) {
                    expand_at(&format!("{name}.{member}"), value, depth + 1)?
                } else {
                    value.clone()
                };
                out.insert(member.clone(), value);
            }
            Ok(Value::Object(out))
        }
        other => Ok(wrap(AttributeKind::Property, other)),
    }
}

/// Every instance of one attribute, concise or simplified (one, or an array
/// of instances), parsed and checked as normalized input is.
pub fn attribute_from_concise(name: &str, v: &Value) -> Result<Vec<Attribute>, String> {
    match v {
        Value::Array(items) if is_instance_list(items) => {
            let expanded = items
                .iter()
                .map(|item| expand_instance(name, item))
                .collect::<Result<Vec<_>, _>>()?;
            Attribute::instances_from_normalized(name, &Value::Array(expanded))
        }
        _ => Ok(vec![Attribute::from_normalized(name, &expand_instance(name, v)?)?]),
    }
}

/// An entity in concise, simplified or normalized form (or a mix of them,
/// attribute by attribute), parsed as [`Entity::from_normalized`] does.
pub fn entity_from_concise(v: &Value) -> Result<Entity, String> {
    let obj = v.as_object().ok_or("an entity must be a JSON object")?;
    let mut normalized = Map::with_capacity(obj.len());
    for (member, value) in obj {
        let value = match value {
            _ if RESERVED_MEMBERS.contains(&member.as_str()) => value.clone(),
            Value::Array(items) if is_instance_list(items) => Value::Array(
                items
                    .iter()
                    .map(|item| expand_instance(member, item))
                    .collect::<Result<_, _>>()?,
            ),
            _ => expand_instance(member, value)?,
        };
        normalized.insert(member.clone(), value);
    }
    Entity::from_normalized(&Value::Object(normalized))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_kind_is_inferred_from_its_member() {
        let cases = [
            (json!(38.5), json!({"type": "Property", "value": 38.5})),
            (json!(["a", "b"]), json!({"type": "Property", "value": ["a", "b"]})),
            (
                json!({"street": "rue Chabot-Charny"}),
                json!({"type": "Property", "value": {"street": "rue Chabot-Charny"}}),
            ),
            (
                json!({"type": "Point", "coordinates": [5.04, 47.32]}),
                json!({"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.04, 47.32]}}),
            ),
            (
                json!({"value": 3, "unitCode": "WTT"}),
                json!({"type": "Property", "value": 3, "unitCode": "WTT"}),
            ),
            (
                json!({"value": {"type": "Point", "coordinates": [5.0, 47.0]}}),
                json!({"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.0, 47.0]}}),
            ),
            (
                json!({"object": "urn:x:1"}),
                json!({"type": "Relationship", "object": "urn:x:1"}),
            ),
            (
                json!({"objectList": ["urn:x:1"]}),
                json!({"type": "ListRelationship", "objectList": ["urn:x:1"]}),
            ),
            (
                json!({"languageMap": {"fr": "Rue"}}),
                json!({"type": "LanguageProperty", "languageMap": {"fr": "Rue"}}),
            ),
            (
                json!({"vocab": "led"}),
                json!({"type": "VocabProperty", "vocab": "led"}),
            ),
            (
                json!({"json": {"value": 1}}),
                json!({"type": "JsonProperty", "json": {"value": 1}}),
            ),
            (
                json!({"valueList": [1, 2]}),
                json!({"type": "ListProperty", "valueList": [1, 2]}),
            ),
            // Sub-attributes are concise too.
            (
                json!({"value": 20, "accuracy": 0.5, "source": {"object": "urn:x:s"}}),
                json!({"type": "Property", "value": 20,
                       "accuracy": {"type": "Property", "value": 0.5},
                       "source": {"type": "Relationship", "object": "urn:x:s"}}),
            ),
            // Normalized input is left as it is.
            (
                json!({"type": "Property", "value": {"object": 1}}),
                json!({"type": "Property", "value": {"object": 1}}),
            ),
        ];
        for (concise, normalized) in cases {
            assert_eq!(expand_instance("a", &concise), Ok(normalized), "{concise}");
        }
    }

    #[test]
    fn bad_concise_input_is_named() {
        let cases = [
            (json!(null), "attribute 'a' is null"),
            (json!(NGSI_LD_NULL), "NGSI-LD Null"),
            (json!({"value": 1, "object": "urn:x:1"}), "both 'value' and 'object'"),
            (json!({"object": "not a uri"}), "relationship 'a'"),
            (json!({"languageMap": "Rue"}), "language property 'a'"),
            (json!([{"value": 1}, {"value": 2}]), "two default instances"),
        ];
        for (v, needle) in cases {
            let err = attribute_from_concise("a", &v).unwrap_err();
            assert!(err.contains(needle), "{v}: {err}");
        }
        let mut deep = json!(1);
        for _ in 0..=MAX_DEPTH {
            deep = json!({"value": 1, "sub": deep});
        }
        let err = expand_instance("a", &deep).unwrap_err();
        assert!(err.contains("deeper than 8"), "{err}");
    }

    #[test]
    fn arrays_are_instances_only_when_every_item_has_a_kind() {
        let instances =
            attribute_from_concise("speed", &json!([{"value": 51}, {"value": 52, "datasetId": "urn:gps"}])).unwrap();
        assert_eq!(instances.len(), 2);
        assert_eq!(instances[1].dataset_id.as_deref(), Some("urn:gps"));
        let one = attribute_from_concise("tags", &json!([{"a": 1}, {"value": 2}])).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].value, json!([{"a": 1}, {"value": 2}]));
    }

    #[test]
    fn concise_entities_parse_like_normalized_ones() {
        let concise = json!({
            "id": "urn:ngsi-ld:Streetlight:dijon:1",
            "type": "Streetlight",
            "scope": "/dijon/lighting",
            "location": {"type": "Point", "coordinates": [5.04, 47.32]},
            "powerState": "on",
            "name": {"languageMap": {"fr": "Lampadaire 1"}},
            "refCabinet": {"object": "urn:ngsi-ld:Cabinet:dijon:1"},
            "illuminance": [{"value": 12}, {"value": 14, "datasetId": "urn:ngsi-ld:dataset:lux"}],
            "powerConsumption": {"type": "Property", "value": 38.5, "unitCode": "WTT"}
        });
        let e = entity_from_concise(&concise).unwrap();
        let normalized = e.to_normalized(false);
        assert_eq!(normalized["location"]["type"], "GeoProperty");
        assert_eq!(normalized["powerState"], json!({"type": "Property", "value": "on"}));
        assert_eq!(normalized["name"]["type"], "LanguageProperty");
        assert_eq!(normalized["refCabinet"]["type"], "Relationship");
        assert_eq!(normalized["illuminance"][1]["datasetId"], "urn:ngsi-ld:dataset:lux");
        assert_eq!(entity_from_concise(&normalized), Ok(e));
        assert!(entity_from_concise(&json!([])).is_err());
    }
}

//! Entity renderings beyond the normalized form: NGSI-LD's simplified
//! (`keyValues`) form, and `pick` / `omit` projection of a rendered entity.

use serde_json::{Map, Value};

use crate::{Attribute, AttributeKind, Entity};

/// The entity in NGSI-LD simplified form: `id`, `type`, `scope` when it has
/// one, then each attribute's name mapped to its bare value (a relationship's
/// target id). `id` and `type` come first, as clients read them first.
pub fn key_values(entity: &Entity) -> Value {
    let mut m = Map::with_capacity(3 + entity.attributes.len());
    m.insert("id".into(), Value::String(entity.id.to_string()));
    m.insert("type".into(), Value::String(entity.entity_type.clone()));
    if let Some(scope) = &entity.scope {
        m.insert("scope".into(), Value::String(scope.to_ngsi()));
    }
    for (name, attr) in &entity.attributes {
        m.insert(name.clone(), key_value(attr));
    }
    Value::Object(m)
}

/// One attribute's bare value in simplified form (a relationship's target id).
pub fn key_value(attr: &Attribute) -> Value {
    match attr.kind {
        // Stored as `[{"object": id}, …]`; simplified, it is the ids alone.
        AttributeKind::ListRelationship => Value::Array(
            attr.value
                .as_array()
                .into_iter()
                .flatten()
                .map(|o| o.get("object").cloned().unwrap_or_else(|| o.clone()))
                .collect(),
        ),
        _ => attr.value.clone(),
    }
}

/// Keeps (`pick`) and then removes (`omit`) members of a rendered entity.
/// `id` and `type` stay unless `omit` names them: an entity without them
/// cannot be told apart, so `pick` keeps them whether or not it names them.
/// Anything but a JSON object is left as it is.
pub fn project(value: &mut Value, pick: Option<&[String]>, omit: Option<&[String]>) {
    let Value::Object(members) = value else {
        return;
    };
    if let Some(pick) = pick {
        members.retain(|name, _| name == "id" || name == "type" || pick.iter().any(|p| p == name));
    }
    if let Some(omit) = omit {
        members.retain(|name, _| !omit.iter().any(|o| o == name));
    }
}

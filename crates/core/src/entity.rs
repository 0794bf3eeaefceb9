//! The twin's unit: an NGSI-LD entity. Its JSON form *is* the NGSI-LD
//! normalized representation, so what the store keeps, what the API returns and
//! what the schemas describe never drift apart.

use std::fmt;
use std::sync::Arc;

use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::{Attributes, Scope, Timestamp};

/// Attribute names an entity cannot use: they are the entity's own members.
pub const RESERVED_MEMBERS: [&str; 6] = ["id", "type", "scope", "@context", "createdAt", "modifiedAt"];

/// Longest entity id accepted; longer ids are refused with a clear error.
pub const MAX_ID_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntityIdError {
    #[error("entity id is empty")]
    Empty,
    #[error("entity id '{0}' is not a URI (expected e.g. 'urn:ngsi-ld:Streetlight:dijon:000123')")]
    NotAUri(String),
    #[error("entity id is {0} characters long, more than the {MAX_ID_LEN} allowed")]
    TooLong(usize),
}

/// An entity identifier: an absolute URI, by convention
/// `urn:ngsi-ld:<Type>:<commune>:<local-id>`. Shared, so that the twin's
/// indexes and every batch can hold it without copying the text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EntityId(Arc<str>);

impl EntityId {
    pub fn new(s: impl Into<String>) -> Result<Self, EntityIdError> {
        let s = s.into();
        if s.is_empty() {
            return Err(EntityIdError::Empty);
        }
        if s.len() > MAX_ID_LEN {
            return Err(EntityIdError::TooLong(s.len()));
        }
        // RFC 3986: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":"
        let valid_scheme = s.split_once(':').is_some_and(|(scheme, rest)| {
            !rest.is_empty()
                && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        });
        if !valid_scheme || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(EntityIdError::NotAUri(s));
        }
        Ok(Self(s.into()))
    }

    /// `urn:ngsi-ld:{entity_type}:{commune}:{local_id}`, Vigie's convention.
    pub fn conventional(entity_type: &str, commune: &str, local_id: &str) -> Result<Self, EntityIdError> {
        Self::new(format!("urn:ngsi-ld:{entity_type}:{commune}:{local_id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EntityId {
    type Error = EntityIdError;
    fn try_from(s: String) -> Result<Self, EntityIdError> {
        Self::new(s)
    }
}
impl From<EntityId> for String {
    fn from(v: EntityId) -> String {
        v.0.to_string()
    }
}
impl std::borrow::Borrow<str> for EntityId {
    fn borrow(&self) -> &str {
        &self.0
    }
}
impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The NGSI-LD kind of an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AttributeKind {
    Property,
    Relationship,
    GeoProperty,
    LanguageProperty,
    VocabProperty,
    JsonProperty,
    ListProperty,
    ListRelationship,
}

impl AttributeKind {
    /// The member that carries this kind's value in normalized form.
    pub fn value_member(self) -> &'static str {
        match self {
            Self::Relationship => "object",
            Self::ListRelationship => "objectList",
            Self::LanguageProperty => "languageMap",
            Self::VocabProperty => "vocab",
            Self::JsonProperty => "json",
            Self::ListProperty => "valueList",
            Self::Property | Self::GeoProperty => "value",
        }
    }
}

/// One attribute of an entity: its value and metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    pub kind: AttributeKind,
    /// The value (for a Relationship, the target's id as a string).
    pub value: Value,
    pub observed_at: Option<Timestamp>,
    /// UN/CEFACT unit code, e.g. `WTT`, `CEL`.
    pub unit_code: Option<String>,
    pub dataset_id: Option<String>,
    /// Sub-attributes and any other member, kept in normalized form.
    pub extra: Map<String, Value>,
}

impl Attribute {
    pub fn property(value: impl Into<Value>) -> Self {
        Self::of_kind(AttributeKind::Property, value.into())
    }

    pub fn relationship(target: &EntityId) -> Self {
        Self::of_kind(AttributeKind::Relationship, Value::String(target.to_string()))
    }

    /// A GeoProperty holding a GeoJSON point, `[longitude, latitude]`.
    pub fn point(longitude: f64, latitude: f64) -> Self {
        Self::of_kind(
            AttributeKind::GeoProperty,
            serde_json::json!({"type": "Point", "coordinates": [longitude, latitude]}),
        )
    }

    pub fn of_kind(kind: AttributeKind, value: Value) -> Self {
        Self {
            kind,
            value,
            observed_at: None,
            unit_code: None,
            dataset_id: None,
            extra: Map::new(),
        }
    }

    pub fn observed(mut self, at: Timestamp) -> Self {
        self.observed_at = Some(at);
        self
    }

    pub fn with_unit(mut self, unit_code: &str) -> Self {
        self.unit_code = Some(unit_code.to_owned());
        self
    }

    /// Parses one attribute in NGSI-LD normalized form.
    pub fn from_normalized(name: &str, v: &Value) -> Result<Self, String> {
        let obj = v
            .as_object()
            .ok_or_else(|| format!("attribute '{name}' must be a JSON object with a 'type'"))?;
        let kind_str = obj
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("attribute '{name}' has no 'type' (Property, Relationship, GeoProperty...)"))?;
        let kind: AttributeKind = serde_json::from_value(Value::String(kind_str.to_owned()))
            .map_err(|_| format!("attribute '{name}' has unknown type '{kind_str}'"))?;
        let member = kind.value_member();
        let value = obj
            .get(member)
            .cloned()
            .ok_or_else(|| format!("attribute '{name}' of type {kind_str} has no '{member}'"))?;
        if value.is_null() {
            return Err(format!("attribute '{name}' has a null '{member}'"));
        }
        if kind == AttributeKind::Relationship && value.as_str().is_none_or(|s| EntityId::new(s).is_err()) {
            return Err(format!("relationship '{name}' must point to an entity id (a URI)"));
        }
        let observed_at = match obj.get("observedAt") {
            None => None,
            Some(t) => Some(
                t.as_str()
                    .and_then(|s| s.parse::<Timestamp>().ok())
                    .ok_or_else(|| format!("attribute '{name}' has an invalid observedAt (expected RFC 3339 UTC)"))?,
            ),
        };
        let text = |key: &str| -> Result<Option<String>, String> {
            match obj.get(key) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!("attribute '{name}' has a non-string '{key}'")),
            }
        };
        let unit_code = text("unitCode")?;
        let dataset_id = text("datasetId")?;
        let extra = obj
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "type" | "observedAt" | "unitCode" | "datasetId") && *k != member)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Self {
            kind,
            value,
            observed_at,
            unit_code,
            dataset_id,
            extra,
        })
    }

    /// The attribute in NGSI-LD normalized form.
    pub fn to_normalized(&self) -> Value {
        let mut m = Map::with_capacity(3 + self.extra.len());
        m.insert("type".into(), serde_json::to_value(self.kind).unwrap_or(Value::Null));
        m.insert(self.kind.value_member().into(), self.value.clone());
        if let Some(t) = self.observed_at {
            m.insert("observedAt".into(), Value::String(format_timestamp(t)));
        }
        if let Some(u) = &self.unit_code {
            m.insert("unitCode".into(), Value::String(u.clone()));
        }
        if let Some(d) = &self.dataset_id {
            m.insert("datasetId".into(), Value::String(d.clone()));
        }
        for (k, v) in &self.extra {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }
}

/// Whether a value is a GeoJSON geometry, so a measure like a vehicle's
/// position becomes a GeoProperty on first sight.
pub fn is_geometry(v: &Value) -> bool {
    const TYPES: [&str; 6] = [
        "Point",
        "LineString",
        "Polygon",
        "MultiPoint",
        "MultiLineString",
        "MultiPolygon",
    ];
    v.get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| TYPES.contains(&t))
        && v.get("coordinates").is_some()
}

/// RFC 3339 with millisecond precision and `Z`, as NGSI-LD brokers print it.
pub fn format_timestamp(t: Timestamp) -> String {
    format!("{t:.3}")
}

/// An equipment's digital twin: an NGSI-LD entity plus Vigie's scope.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub id: EntityId,
    /// The short type name, e.g. `Streetlight`.
    pub entity_type: String,
    pub scope: Option<Scope>,
    pub attributes: Attributes,
    pub created_at: Option<Timestamp>,
    pub modified_at: Option<Timestamp>,
}

impl Entity {
    pub fn new(id: EntityId, entity_type: impl Into<String>, scope: Option<Scope>) -> Self {
        Self {
            id,
            entity_type: entity_type.into(),
            scope,
            attributes: Attributes::new(),
            created_at: None,
            modified_at: None,
        }
    }

    pub fn with(mut self, name: &str, attribute: Attribute) -> Self {
        self.attributes.insert(name.to_owned(), attribute);
        self
    }

    /// The `location` GeoProperty as (longitude, latitude), when it is a Point.
    pub fn point(&self) -> Option<(f64, f64)> {
        let coords = self.attributes.get("location")?.value.get("coordinates")?.as_array()?;
        Some((coords.first()?.as_f64()?, coords.get(1)?.as_f64()?))
    }

    /// Applies an observation: the attribute takes the new value, keeping its
    /// kind and unit unless the observation brings one. Returns whether the
    /// observation was newer than what the twin held (older ones only go to history).
    pub fn apply(&mut self, obs: &Observation) -> bool {
        match self.attributes.get_mut(&obs.attribute) {
            Some(attr) => {
                if attr.observed_at.is_some_and(|t| t > obs.observed_at) {
                    return false;
                }
                attr.value = obs.value.clone();
                attr.observed_at = Some(obs.observed_at);
                if obs.unit_code.is_some() {
                    attr.unit_code.clone_from(&obs.unit_code);
                }
            }
            None => {
                let kind = if is_geometry(&obs.value) {
                    AttributeKind::GeoProperty
                } else {
                    AttributeKind::Property
                };
                let mut attr = Attribute::of_kind(kind, obs.value.clone()).observed(obs.observed_at);
                attr.unit_code.clone_from(&obs.unit_code);
                self.attributes.insert(obs.attribute.clone(), attr);
            }
        }
        if self.modified_at.is_none_or(|t| t < obs.observed_at) {
            self.modified_at = Some(obs.observed_at);
        }
        true
    }

    /// Parses an entity in NGSI-LD normalized form. `@context` is ignored here:
    /// the API layer resolves it before the entity reaches the core.
    pub fn from_normalized(v: &Value) -> Result<Self, String> {
        let obj = v.as_object().ok_or("an entity must be a JSON object")?;
        let id = obj
            .get("id")
            .and_then(Value::as_str)
            .ok_or("the entity has no 'id' string")?;
        let id = EntityId::new(id).map_err(|e| e.to_string())?;
        let entity_type = obj
            .get("type")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or("the entity has no 'type' string")?;
        let scope = match obj.get("scope") {
            None => None,
            Some(Value::String(s)) => Some(Scope::from_ngsi(s).map_err(|e| e.to_string())?),
            Some(Value::Array(a)) if a.len() == 1 => {
                let s = a[0].as_str().ok_or("'scope' must hold strings")?;
                Some(Scope::from_ngsi(s).map_err(|e| e.to_string())?)
            }
            Some(_) => return Err("'scope' must be one '/<commune>/<business-line>' string".into()),
        };
        let time = |key: &str| -> Result<Option<Timestamp>, String> {
            obj.get(key)
                .map(|t| {
                    t.as_str()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| format!("invalid '{key}' timestamp"))
                })
                .transpose()
        };
        let mut entity = Entity::new(id, entity_type, scope);
        entity.created_at = time("createdAt")?;
        entity.modified_at = time("modifiedAt")?;
        for (name, value) in obj {
            if RESERVED_MEMBERS.contains(&name.as_str()) {
                continue;
            }
            entity
                .attributes
                .insert(name.clone(), Attribute::from_normalized(name, value)?);
        }
        Ok(entity)
    }

    /// The entity in NGSI-LD normalized form (with system attributes when `sys_attrs`).
    pub fn to_normalized(&self, sys_attrs: bool) -> Value {
        let mut m = Map::with_capacity(4 + self.attributes.len());
        m.insert("id".into(), Value::String(self.id.to_string()));
        m.insert("type".into(), Value::String(self.entity_type.clone()));
        if let Some(s) = &self.scope {
            m.insert("scope".into(), Value::String(s.to_ngsi()));
        }
        if sys_attrs {
            if let Some(t) = self.created_at {
                m.insert("createdAt".into(), Value::String(format_timestamp(t)));
            }
            if let Some(t) = self.modified_at {
                m.insert("modifiedAt".into(), Value::String(format_timestamp(t)));
            }
        }
        for (name, attr) in &self.attributes {
            m.insert(name.clone(), attr.to_normalized());
        }
        Value::Object(m)
    }
}

/// Serializes straight to the normalized form, with system attributes,
/// without building a `Value` tree first: this runs for every entity of every
/// committed batch.
impl Serialize for Entity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.normalized(true).serialize(s)
    }
}

/// An entity's normalized form, serialized without an intermediate `Value`
/// (what reads by id and most queries answer).
pub struct Normalized<'a> {
    entity: &'a Entity,
    sys_attrs: bool,
}

impl Entity {
    /// The normalized form, with `createdAt`/`modifiedAt` when `sys_attrs`.
    pub fn normalized(&self, sys_attrs: bool) -> Normalized<'_> {
        Normalized {
            entity: self,
            sys_attrs,
        }
    }
}

impl Serialize for Normalized<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.entity;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("id", e.id.as_str())?;
        map.serialize_entry("type", &e.entity_type)?;
        if let Some(scope) = &e.scope {
            map.serialize_entry("scope", &scope.to_ngsi())?;
        }
        if self.sys_attrs {
            if let Some(t) = e.created_at {
                map.serialize_entry("createdAt", &format_timestamp(t))?;
            }
            if let Some(t) = e.modified_at {
                map.serialize_entry("modifiedAt", &format_timestamp(t))?;
            }
        }
        for (name, attr) in &e.attributes {
            map.serialize_entry(name, attr)?;
        }
        map.end()
    }
}

impl Serialize for Attribute {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("type", &self.kind)?;
        map.serialize_entry(self.kind.value_member(), &self.value)?;
        if let Some(t) = self.observed_at {
            map.serialize_entry("observedAt", &format_timestamp(t))?;
        }
        if let Some(u) = &self.unit_code {
            map.serialize_entry("unitCode", u)?;
        }
        if let Some(d) = &self.dataset_id {
            map.serialize_entry("datasetId", d)?;
        }
        for (k, v) in &self.extra {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Entity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Entity::from_normalized(&v).map_err(D::Error::custom)
    }
}

/// One measured value of one attribute of one entity: what telemetry brings.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub entity_id: EntityId,
    pub attribute: String,
    pub value: Value,
    pub observed_at: Timestamp,
    pub unit_code: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entity_ids_must_be_uris() {
        assert!(EntityId::new("urn:ngsi-ld:Streetlight:dijon:1").is_ok());
        assert!(EntityId::new("https://example.org/a").is_ok());
        assert_eq!(EntityId::new(""), Err(EntityIdError::Empty));
        assert!(matches!(EntityId::new("light-1"), Err(EntityIdError::NotAUri(_))));
        assert!(matches!(EntityId::new("urn:a b"), Err(EntityIdError::NotAUri(_))));
        assert!(matches!(EntityId::new("1urn:x"), Err(EntityIdError::NotAUri(_))));
        assert!(matches!(
            EntityId::new(format!("urn:{}", "x".repeat(300))),
            Err(EntityIdError::TooLong(_))
        ));
    }

    #[test]
    fn normalized_form_round_trips() {
        let v = json!({
            "id": "urn:ngsi-ld:Streetlight:dijon:000001",
            "type": "Streetlight",
            "scope": "/dijon/lighting",
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.04, 47.32]}},
            "powerState": {"type": "Property", "value": "on", "observedAt": "2026-11-22T18:00:00.000Z"},
            "powerConsumption": {"type": "Property", "value": 38.5, "unitCode": "WTT"},
            "refStreetlightControlCabinet": {"type": "Relationship", "object": "urn:ngsi-ld:StreetlightControlCabinet:dijon:0001"}
        });
        let e = Entity::from_normalized(&v).unwrap();
        assert_eq!(e.point(), Some((5.04, 47.32)));
        assert_eq!(e.scope.as_ref().unwrap().commune.as_str(), "dijon");
        assert_eq!(e.to_normalized(false), v);
        let through_serde: Entity = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(through_serde, e);
    }

    #[test]
    fn malformed_entities_are_named() {
        let cases = [
            (json!([]), "JSON object"),
            (json!({"type": "T"}), "'id'"),
            (json!({"id": "urn:x:1"}), "'type'"),
            (json!({"id": "urn:x:1", "type": "T", "a": 3}), "attribute 'a'"),
            (
                json!({"id": "urn:x:1", "type": "T", "a": {"type": "Nope", "value": 1}}),
                "unknown type 'Nope'",
            ),
            (
                json!({"id": "urn:x:1", "type": "T", "a": {"type": "Property"}}),
                "no 'value'",
            ),
            (
                json!({"id": "urn:x:1", "type": "T", "r": {"type": "Relationship", "object": "x"}}),
                "relationship 'r'",
            ),
            (
                json!({"id": "urn:x:1", "type": "T", "a": {"type": "Property", "value": 1, "observedAt": "yesterday"}}),
                "observedAt",
            ),
            (json!({"id": "urn:x:1", "type": "T", "scope": "dijon"}), "scope"),
        ];
        for (v, needle) in cases {
            let err = Entity::from_normalized(&v).unwrap_err();
            assert!(err.contains(needle), "{v}: {err}");
        }
    }

    #[test]
    fn older_observations_do_not_overwrite_state() {
        let id = EntityId::new("urn:ngsi-ld:Streetlight:dijon:1").unwrap();
        let mut e = Entity::new(id.clone(), "Streetlight", None);
        let t1: Timestamp = "2026-11-22T18:00:00Z".parse().unwrap();
        let t0: Timestamp = "2026-11-22T17:00:00Z".parse().unwrap();
        let obs = |v: Value, t| Observation {
            entity_id: id.clone(),
            attribute: "powerState".into(),
            value: v,
            observed_at: t,
            unit_code: None,
        };
        assert!(e.apply(&obs(json!("on"), t1)));
        assert!(!e.apply(&obs(json!("off"), t0)));
        assert_eq!(e.attributes["powerState"].value, json!("on"));
        assert_eq!(e.modified_at, Some(t1));
    }
}

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
    /// Every kind, in the order of the specification's clauses.
    pub const ALL: [Self; 8] = [
        Self::Property,
        Self::Relationship,
        Self::GeoProperty,
        Self::LanguageProperty,
        Self::VocabProperty,
        Self::JsonProperty,
        Self::ListProperty,
        Self::ListRelationship,
    ];

    /// The kind an attribute's `type` names, if it names one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The kind's name, as the `type` member carries it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Property => "Property",
            Self::Relationship => "Relationship",
            Self::GeoProperty => "GeoProperty",
            Self::LanguageProperty => "LanguageProperty",
            Self::VocabProperty => "VocabProperty",
            Self::JsonProperty => "JsonProperty",
            Self::ListProperty => "ListProperty",
            Self::ListRelationship => "ListRelationship",
        }
    }

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

    /// Parses one attribute instance in NGSI-LD normalized form, checking its
    /// value member against its kind (see [`check_value`]). A `datasetId` of
    /// `@none` names the default instance, as no `datasetId` does (4.5.5).
    pub fn from_normalized(name: &str, v: &Value) -> Result<Self, String> {
        let obj = v
            .as_object()
            .ok_or_else(|| format!("attribute '{name}' must be a JSON object with a 'type'"))?;
        let kind_str = obj
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("attribute '{name}' has no 'type' (Property, Relationship, GeoProperty...)"))?;
        let kind = AttributeKind::from_name(kind_str)
            .ok_or_else(|| format!("attribute '{name}' has unknown type '{kind_str}'"))?;
        let member = kind.value_member();
        let value = obj
            .get(member)
            .ok_or_else(|| format!("attribute '{name}' of type {kind_str} has no '{member}'"))?;
        let value = check_value(kind, name, value)?;
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
        let dataset_id = match text("datasetId")? {
            Some(d) if d == "@none" => None,
            Some(d) if EntityId::new(d.as_str()).is_err() => {
                return Err(format!("attribute '{name}' has a datasetId '{d}' that is not a URI"));
            }
            d => d,
        };
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

    /// Parses every instance of one attribute in normalized form: one object,
    /// or an array of them told apart by `datasetId` (4.5.5). Two instances
    /// with one `datasetId` (two default instances included) are refused.
    pub fn instances_from_normalized(name: &str, v: &Value) -> Result<Vec<Self>, String> {
        match v {
            Value::Array(items) => {
                let instances = items
                    .iter()
                    .map(|item| Self::from_normalized(name, item))
                    .collect::<Result<Vec<_>, _>>()?;
                check_instances(name, &instances)?;
                Ok(instances)
            }
            _ => Ok(vec![Self::from_normalized(name, v)?]),
        }
    }

    /// The attribute in NGSI-LD normalized form.
    pub fn to_normalized(&self) -> Value {
        let mut m = Map::with_capacity(3 + self.extra.len());
        m.insert("type".into(), Value::String(self.kind.name().to_owned()));
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

/// Longest language tag accepted (RFC 5646 asks implementations for 35 at least).
pub const MAX_LANGUAGE_TAG_LEN: usize = 35;

/// Whether `tag` is shaped as an RFC 5646 language tag (`fr`, `en-GB`,
/// `zh-Hant-TW`): ASCII letters and digits in subtags of 1 to 8 separated by
/// `-`, a letter first. The registry of subtags is not consulted.
pub fn is_language_tag(tag: &str) -> bool {
    tag.len() <= MAX_LANGUAGE_TAG_LEN
        && tag.starts_with(|c: char| c.is_ascii_alphabetic())
        && tag
            .split('-')
            .all(|sub| (1..=8).contains(&sub.len()) && sub.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// Checks the value member of an attribute of `kind` named `name`, returning
/// it in the form the twin keeps (a ListRelationship's bare URIs become
/// `{"object": uri}`, as in normalized form). Errors name the attribute.
pub fn check_value(kind: AttributeKind, name: &str, value: &Value) -> Result<Value, String> {
    let member = kind.value_member();
    if value.is_null() {
        return Err(format!("attribute '{name}' has a null '{member}'"));
    }
    let strings = |v: &Value| match v {
        Value::String(_) => true,
        Value::Array(items) => items.iter().all(Value::is_string),
        _ => false,
    };
    match kind {
        AttributeKind::Property | AttributeKind::JsonProperty => Ok(value.clone()),
        AttributeKind::Relationship => match value.as_str() {
            Some(s) if EntityId::new(s).is_ok() => Ok(value.clone()),
            _ => Err(format!("relationship '{name}' must point to an entity id (a URI)")),
        },
        AttributeKind::GeoProperty if is_geometry(value) => Ok(value.clone()),
        AttributeKind::GeoProperty => Err(format!(
            "geoproperty '{name}' must hold a GeoJSON geometry (a 'type' such as Point and 'coordinates')"
        )),
        AttributeKind::LanguageProperty => {
            let map = value
                .as_object()
                .ok_or_else(|| format!("language property '{name}' must hold an object of language tag -> string"))?;
            for (tag, text) in map {
                if tag != "@none" && !is_language_tag(tag) {
                    return Err(format!(
                        "language property '{name}' has an invalid language tag '{tag}'"
                    ));
                }
                if !strings(text) {
                    return Err(format!(
                        "language property '{name}' must map '{tag}' to a string or an array of strings"
                    ));
                }
            }
            Ok(value.clone())
        }
        AttributeKind::VocabProperty if strings(value) => Ok(value.clone()),
        AttributeKind::VocabProperty => Err(format!(
            "vocab property '{name}' must hold a string or an array of strings"
        )),
        AttributeKind::ListProperty if value.is_array() => Ok(value.clone()),
        AttributeKind::ListProperty => Err(format!("list property '{name}' must hold an array in 'valueList'")),
        AttributeKind::ListRelationship => {
            let items = value
                .as_array()
                .ok_or_else(|| format!("list relationship '{name}' must hold an array in 'objectList'"))?;
            let objects = items
                .iter()
                .map(|item| {
                    let target = match item {
                        Value::Object(o) if o.len() == 1 => o.get("object"),
                        Value::String(_) => Some(item),
                        _ => None,
                    };
                    match target.and_then(Value::as_str) {
                        Some(id) if EntityId::new(id).is_ok() => Ok(serde_json::json!({ "object": id })),
                        _ => Err(format!(
                            "list relationship '{name}' must hold entity ids or {{\"object\": id}} objects"
                        )),
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Value::Array(objects))
        }
    }
}

/// Checks that the instances of `name` are few enough and that no two share
/// a `datasetId` (the default instance being one of them).
pub fn check_instances(name: &str, instances: &[Attribute]) -> Result<(), String> {
    if instances.is_empty() {
        return Err(format!("attribute '{name}' is an empty array of instances"));
    }
    if instances.len() > crate::attributes::MAX_INSTANCES {
        return Err(format!(
            "attribute '{name}' has {} instances, more than the {} allowed",
            instances.len(),
            crate::attributes::MAX_INSTANCES
        ));
    }
    let mut seen: Vec<Option<&str>> = instances.iter().map(|a| a.dataset_id.as_deref()).collect();
    seen.sort_unstable();
    if let Some(pair) = seen.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(match pair[0] {
            Some(d) => format!("attribute '{name}' has two instances with datasetId '{d}'"),
            None => format!("attribute '{name}' has two default instances (without datasetId)"),
        });
    }
    Ok(())
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
        // An observation has no datasetId: it is the default instance's (4.5.5).
        match self.attributes.instance_mut(&obs.attribute, None) {
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
        let scope = obj.get("scope").map(parse_scope).transpose()?;
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
            for instance in Attribute::instances_from_normalized(name, value)? {
                entity.attributes.insert(name.clone(), instance);
            }
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
        for (name, run) in self.attributes.by_name() {
            let rendered = match run {
                [(_, one)] => one.to_normalized(),
                many => Value::Array(many.iter().map(|(_, a)| a.to_normalized()).collect()),
            };
            m.insert(name.clone(), rendered);
        }
        Value::Object(m)
    }
}

/// An entity's `scope` member: one `/<commune>/<business-line>` string, or
/// an array holding one.
pub fn parse_scope(v: &Value) -> Result<Scope, String> {
    match v {
        Value::String(s) => Scope::from_ngsi(s).map_err(|e| e.to_string()),
        Value::Array(a) if a.len() == 1 => {
            let s = a[0].as_str().ok_or("'scope' must hold strings")?;
            Scope::from_ngsi(s).map_err(|e| e.to_string())
        }
        _ => Err("'scope' must be one '/<commune>/<business-line>' string".into()),
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
        for (name, run) in e.attributes.by_name() {
            match run {
                [(_, one)] => map.serialize_entry(name, one)?,
                many => map.serialize_entry(name, &InstancesOf(many))?,
            }
        }
        map.end()
    }
}

/// Several instances of one attribute: a JSON array of them.
struct InstancesOf<'a>(&'a [(String, Attribute)]);

impl Serialize for InstancesOf<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|(_, a)| a))
    }
}

impl Serialize for Attribute {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("type", self.kind.name())?;
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

    #[test]
    fn multi_attributes_parse_and_render_as_arrays() {
        let v = json!({
            "id": "urn:ngsi-ld:Vehicle:dijon:bus12",
            "type": "Vehicle",
            "speed": [
                {"type": "Property", "value": 50, "datasetId": "urn:ngsi-ld:dataset:meter"},
                {"type": "Property", "value": 51},
                {"type": "Property", "value": 52, "datasetId": "urn:ngsi-ld:dataset:gps"}
            ],
            "name": {"type": "Property", "value": "bus 12", "datasetId": "@none"}
        });
        let e = Entity::from_normalized(&v).unwrap();
        assert_eq!(e.attributes["speed"].value, 51, "the default instance");
        assert_eq!(e.attributes.instances("speed").count(), 3);
        assert_eq!(
            e.attributes.instance("name", None).map(|a| &a.value),
            Some(&json!("bus 12"))
        );
        let out = e.to_normalized(false);
        // Default first, then by datasetId; a single instance is an object.
        assert_eq!(out["speed"][0]["value"], 51);
        assert_eq!(out["speed"][1]["datasetId"], "urn:ngsi-ld:dataset:gps");
        assert_eq!(out["name"], json!({"type": "Property", "value": "bus 12"}));
        let through_serde: Value = serde_json::from_str(&serde_json::to_string(&e.normalized(false)).unwrap()).unwrap();
        assert_eq!(through_serde, out);
        assert_eq!(Entity::from_normalized(&out).unwrap(), e);
    }

    #[test]
    fn bad_instances_are_named() {
        let entity = |speed: Value| json!({"id": "urn:x:1", "type": "T", "speed": speed});
        let cases = [
            (json!([]), "'speed' is an empty array"),
            (
                json!([{"type": "Property", "value": 1}, {"type": "Property", "value": 2, "datasetId": "@none"}]),
                "two default instances",
            ),
            (
                json!([{"type": "Property", "value": 1, "datasetId": "urn:d"}, {"type": "Property", "value": 2, "datasetId": "urn:d"}]),
                "two instances with datasetId 'urn:d'",
            ),
            (
                json!({"type": "Property", "value": 1, "datasetId": "gps"}),
                "datasetId 'gps' that is not a URI",
            ),
            (json!([3]), "attribute 'speed' must be a JSON object"),
        ];
        for (speed, needle) in cases {
            let err = Entity::from_normalized(&entity(speed)).unwrap_err();
            assert!(err.contains(needle), "{needle}: {err}");
        }
        let many: Vec<Value> = (0..=crate::attributes::MAX_INSTANCES)
            .map(|i| json!({"type": "Property", "value": i, "datasetId": format!("urn:d:{i}")}))
            .collect();
        let err = Entity::from_normalized(&entity(Value::Array(many))).unwrap_err();
        assert!(err.contains("more than the 64 allowed"), "{err}");
    }

    #[test]
    fn each_kind_checks_its_value_member() {
        let ok = [
            json!({"type": "LanguageProperty", "languageMap": {"fr": "Rue", "en": ["Street", "Road"], "@none": "Rue"}}),
            json!({"type": "VocabProperty", "vocab": "Male"}),
            json!({"type": "VocabProperty", "vocab": ["led", "sodium"]}),
            json!({"type": "JsonProperty", "json": {"id": "not-a-uri", "value": [1, {"a": null}]}}),
            json!({"type": "ListProperty", "valueList": [1, "two", {"three": 3}]}),
            json!({"type": "GeoProperty", "value": {"type": "LineString", "coordinates": [[5.0, 47.0], [5.1, 47.1]]}}),
        ];
        for v in ok {
            let a = Attribute::from_normalized("a", &v).unwrap_or_else(|e| panic!("{v}: {e}"));
            assert_eq!(a.to_normalized(), v, "round trip");
        }
        // A ListRelationship's bare ids are kept as `{"object": id}`.
        let list = json!({"type": "ListRelationship", "objectList": ["urn:x:1", {"object": "urn:x:2"}]});
        let a = Attribute::from_normalized("route", &list).unwrap();
        assert_eq!(a.value, json!([{"object": "urn:x:1"}, {"object": "urn:x:2"}]));

        let bad = [
            (
                json!({"type": "LanguageProperty", "languageMap": "Rue"}),
                "language property 'a' must hold an object",
            ),
            (
                json!({"type": "LanguageProperty", "languageMap": {"fr": 3}}),
                "must map 'fr' to a string",
            ),
            (
                json!({"type": "LanguageProperty", "languageMap": {"not a tag": "x"}}),
                "invalid language tag 'not a tag'",
            ),
            (
                json!({"type": "VocabProperty", "vocab": {"a": 1}}),
                "vocab property 'a'",
            ),
            (
                json!({"type": "VocabProperty", "vocab": ["ok", 2]}),
                "vocab property 'a'",
            ),
            (json!({"type": "JsonProperty", "json": null}), "null 'json'"),
            (json!({"type": "JsonProperty", "value": {}}), "has no 'json'"),
            (
                json!({"type": "ListProperty", "valueList": 3}),
                "list property 'a' must hold an array",
            ),
            (
                json!({"type": "ListRelationship", "objectList": ["nope"]}),
                "list relationship 'a'",
            ),
            (
                json!({"type": "ListRelationship", "objectList": [{"object": "urn:x:1", "b": 1}]}),
                "list relationship 'a'",
            ),
            (
                json!({"type": "GeoProperty", "value": {"type": "Circle"}}),
                "geoproperty 'a'",
            ),
        ];
        for (v, needle) in bad {
            let err = Attribute::from_normalized("a", &v).unwrap_err();
            assert!(err.contains(needle), "{v}: {err}");
        }
    }

    #[test]
    fn language_tags() {
        for tag in ["fr", "en-GB", "zh-Hant-TW", "de-CH-1996"] {
            assert!(is_language_tag(tag), "{tag}");
        }
        for tag in ["", "-fr", "fr-", "f r", "1fr", "en--GB", "abcdefghi", &"a-b".repeat(12)] {
            assert!(!is_language_tag(tag), "{tag}");
        }
    }

    #[test]
    fn observations_go_to_the_default_instance() {
        let id = EntityId::new("urn:x:1").unwrap();
        let mut named = Attribute::property(50);
        named.dataset_id = Some("urn:gps".into());
        let mut e = Entity::new(id.clone(), "Vehicle", None).with("speed", named);
        let t: Timestamp = "2026-11-22T18:00:00Z".parse().unwrap();
        assert!(e.apply(&Observation {
            entity_id: id,
            attribute: "speed".into(),
            value: json!(48),
            observed_at: t,
            unit_code: None,
        }));
        assert_eq!(e.attributes.instance("speed", None).map(|a| &a.value), Some(&json!(48)));
        assert_eq!(
            e.attributes.instance("speed", Some("urn:gps")).map(|a| &a.value),
            Some(&json!(50))
        );
    }

    /// The twin holds a million entities: multi-attributes must not grow the
    /// single-instance case. Measured before multi-attributes (x86_64, serde_json
    /// with preserve_order): Attribute 224 bytes, Entity 160, one map slot 248.
    /// Same after: instances are extra slots of the map, not fields.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn the_common_case_does_not_grow() {
        use std::mem::size_of;
        assert_eq!(size_of::<Attribute>(), 224);
        assert_eq!(size_of::<Entity>(), 160);
        assert_eq!(size_of::<(String, Attribute)>(), 248);
    }
}

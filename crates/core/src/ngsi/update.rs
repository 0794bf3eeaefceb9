//! Writes to an existing entity, as pure rules: merge (5.6.17 with the merge
//! patch of 5.5.12), replace entity (5.6.18), replace attribute (5.6.19),
//! partial attribute update (5.6.4 with the partial update patch of 5.5.8)
//! and delete attribute (5.6.5). The writer clones the twin's entity, calls
//! one of these, records history for the names in the returned [`Changes`]
//! and stores the result. On error the entity is left as it was: every
//! change is computed and checked before the first is made.
//!
//! Payloads may be normalized, concise or simplified (see [`super::concise`]).
//! NGSI-LD Null (`"urn:ngsi-ld:null"`, or JSON `null`) deletes what it
//! replaces: an attribute instance, a sub-attribute, a member of a value.

use serde_json::{Map, Value};

use super::concise::{NGSI_LD_NULL, expand_instance, inferred_kind, is_instance_list, is_sub_attribute};
use crate::attributes::MAX_INSTANCES;
use crate::entity::{RESERVED_MEMBERS, format_timestamp, parse_scope};
use crate::{Attribute, AttributeKind, Entity, EntityId, Timestamp, is_language_tag};

/// Deepest nesting a merge descends into (values within values).
pub const MAX_MERGE_DEPTH: usize = 32;

/// Why a write was refused; each variant maps to one NGSI-LD error type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// The targeted attribute instance does not exist: `ResourceNotFound` (404).
    #[error("the entity has no attribute '{name}'{}", .dataset_id.as_deref().map(|d| format!(" with datasetId '{d}'")).unwrap_or_default())]
    NoSuchAttribute { name: String, dataset_id: Option<String> },
    /// The payload is malformed or contradicts the entity: `BadRequestData` (400).
    #[error("{0}")]
    BadData(String),
    /// Valid NGSI-LD that Vigie's model cannot hold: `OperationNotSupported`.
    #[error("{0}")]
    NotSupported(String),
}

/// What a write changed, so the writer can record history and answer which
/// attributes were merged. Names are sorted and appear once per list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Attributes set, merged or appended (one instance of them at least).
    pub updated: Vec<String>,
    /// Attributes with one instance or more deleted.
    pub deleted: Vec<String>,
    /// Whether the entity's scope changed.
    pub scope: bool,
}

/// Options of a merge (5.6.17.3).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MergeOptions {
    /// A common `observedAt`: it replaces that of every merged attribute that
    /// had one, unless the fragment gives the attribute its own.
    pub observed_at: Option<Timestamp>,
    /// A common language tag: a LanguageProperty given as a string replaces
    /// that language's entry only, keeping the others.
    pub lang: Option<String>,
}

/// Which instances a delete targets (5.6.5): `datasetId` and `deleteAll`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceTarget {
    Default,
    Dataset(String),
    All,
}

impl InstanceTarget {
    /// From the request's `datasetId` and `deleteAll` parameters; `deleteAll`
    /// wins, and `@none` names the default instance.
    pub fn from_params(dataset_id: Option<&str>, delete_all: bool) -> Self {
        match (delete_all, dataset_id) {
            (true, _) => Self::All,
            (false, None | Some("@none")) => Self::Default,
            (false, Some(d)) => Self::Dataset(d.to_owned()),
        }
    }
}

/// One change, computed and checked before any is made.
enum Op {
    Put(String, Attribute),
    Delete(String, Option<String>),
}

fn bad(message: impl Into<String>) -> UpdateError {
    UpdateError::BadData(message.into())
}

fn is_null(v: &Value) -> bool {
    v.is_null() || v.as_str() == Some(NGSI_LD_NULL)
}

/// Whether an attribute object's value member is NGSI-LD Null: the whole
/// instance is deleted (an `objectList` says it as `[null]`, 4.5.22.3).
fn deletes_instance(obj: &Map<String, Value>) -> bool {
    AttributeKind::ALL.iter().any(|k| match obj.get(k.value_member()) {
        Some(Value::Array(items)) if k.value_member() == "objectList" => items.len() == 1 && is_null(&items[0]),
        Some(v) => is_null(v),
        None => false,
    })
}

/// The `datasetId` a patch targets (`None`: the default instance).
fn target_dataset(name: &str, patch: &Value) -> Result<Option<String>, UpdateError> {
    match patch.get("datasetId") {
        None => Ok(None),
        Some(Value::String(d)) if d == "@none" => Ok(None),
        Some(Value::String(d)) if EntityId::new(d.as_str()).is_ok() => Ok(Some(d.clone())),
        Some(_) => Err(bad(format!("attribute '{name}' has a datasetId that is not a URI"))),
    }
}

/// The instances an attribute member of a fragment addresses, checked for
/// number and for two patches of one instance.
fn instance_patches<'v>(name: &str, v: &'v Value) -> Result<Vec<(&'v Value, Option<String>)>, UpdateError> {
    let patches: Vec<&Value> = match v {
        Value::Array(items) if is_instance_list(items) => items.iter().collect(),
        _ => vec![v],
    };
    if patches.len() > MAX_INSTANCES {
        return Err(bad(format!(
            "attribute '{name}' has {} instances, more than the {MAX_INSTANCES} allowed",
            patches.len()
        )));
    }
    let targeted = patches
        .into_iter()
        .map(|p| target_dataset(name, p).map(|d| (p, d)))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, (_, d)) in targeted.iter().enumerate() {
        if targeted[..i].iter().any(|(_, seen)| seen == d) {
            return Err(bad(match d {
                Some(d) => format!("attribute '{name}' has two instances with datasetId '{d}'"),
                None => format!("attribute '{name}' has two default instances (without datasetId)"),
            }));
        }
    }
    Ok(targeted)
}

/// A copy of `v` without NGSI-LD Nulls: in something new, they delete nothing.
fn without_nulls(v: &Value, depth: usize) -> Result<Value, UpdateError> {
    if depth > MAX_MERGE_DEPTH {
        return Err(bad(format!("the payload nests deeper than {MAX_MERGE_DEPTH} levels")));
    }
    Ok(match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, v)| !is_null(v))
                .map(|(k, v)| without_nulls(v, depth + 1).map(|v| (k.clone(), v)))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

/// RFC 7396 merge patch, NGSI-LD Null deleting: objects merge member by
/// member, anything else replaces.
fn merge_patch(target: &mut Value, patch: &Value, depth: usize) -> Result<(), UpdateError> {
    if depth > MAX_MERGE_DEPTH {
        return Err(bad(format!("the payload nests deeper than {MAX_MERGE_DEPTH} levels")));
    }
    let Value::Object(members) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(t) = target {
        for (key, value) in members {
            if is_null(value) {
                t.shift_remove(key);
            } else {
                merge_patch(t.entry(key.clone()).or_insert(Value::Null), value, depth + 1)?;
            }
        }
    }
    Ok(())
}

/// Parses one new attribute instance, concise or normalized.
fn parse_instance(name: &str, v: &Value) -> Result<Attribute, UpdateError> {
    expand_instance(name, v)
        .and_then(|normalized| Attribute::from_normalized(name, &normalized))
        .map_err(UpdateError::BadData)
}

/// What a patch asks of an existing instance of kind `kind`, as normalized
/// members to apply, or `None` when the patch gives another kind.
fn patch_members(
    name: &str,
    kind: AttributeKind,
    patch: &Value,
    lang: Option<&str>,
) -> Result<Option<Map<String, Value>>, UpdateError> {
    let explicit = match patch.as_object() {
        Some(obj) => match obj.get("type").and_then(Value::as_str) {
            Some(t) => Some(
                AttributeKind::from_name(t).ok_or_else(|| bad(format!("attribute '{name}' has unknown type '{t}'")))?,
            ),
            None => inferred_kind(name, obj).map_err(UpdateError::BadData)?,
        },
        None => None,
    };
    let (Some(obj), Some(given)) = (patch.as_object(), explicit) else {
        // Simplified (a bare value, or an object without a kind): the value of
        // the existing attribute, whose kind is kept (5.6.17.4).
        let value = match (kind, patch, lang) {
            (AttributeKind::LanguageProperty, Value::String(_), tag) => {
                Value::Object(Map::from_iter([(tag.unwrap_or("@none").to_owned(), patch.clone())]))
            }
            _ => patch.clone(),
        };
        return Ok(Some(Map::from_iter([(kind.value_member().to_owned(), value)])));
    };
    if given != kind {
        return Ok(None);
    }
    let mut members = Map::with_capacity(obj.len());
    for (member, value) in obj {
        // Neither the kind nor the instance's identity is patched.
        if matches!(member.as_str(), "type" | "datasetId") {
            continue;
        }
        let value = if is_sub_attribute(member) && !is_null(value) {
            expand_instance(&format!("{name}.{member}"), value).map_err(UpdateError::BadData)?
        } else {
            value.clone()
        };
        members.insert(member.clone(), value);
    }
    Ok(Some(members))
}

/// The change one patch of a merge makes to one instance, if any.
fn merge_instance(
    entity: &Entity,
    name: &str,
    patch: &Value,
    dataset_id: Option<String>,
    options: &MergeOptions,
) -> Result<Option<Op>, UpdateError> {
    let existing = entity.attributes.instance(name, dataset_id.as_deref());
    if is_null(patch) || patch.as_object().is_some_and(deletes_instance) {
        return Ok(existing.map(|_| Op::Delete(name.to_owned(), dataset_id)));
    }
    let Some(old) = existing else {
        return Ok(Some(Op::Put(
            name.to_owned(),
            parse_instance(name, &without_nulls(patch, 0)?)?,
        )));
    };
    let Some(members) = patch_members(name, old.kind, patch, options.lang.as_deref())? else {
        // Another kind: nothing of the old instance applies to the new one.
        return Ok(Some(Op::Put(
            name.to_owned(),
            parse_instance(name, &without_nulls(patch, 0)?)?,
        )));
    };
    let mut merged = old.to_normalized();
    merge_patch(&mut merged, &Value::Object(members.clone()), 0)?;
    if let (Some(t), Some(_), Value::Object(m)) = (options.observed_at, old.observed_at, &mut merged)
        && !members.contains_key("observedAt")
    {
        m.insert("observedAt".into(), Value::String(format_timestamp(t)));
    }
    let attr = Attribute::from_normalized(name, &merged).map_err(UpdateError::BadData)?;
    Ok(Some(Op::Put(name.to_owned(), attr)))
}

/// Makes the changes, all checked already, and reports them.
fn apply(entity: &mut Entity, ops: Vec<Op>) -> Changes {
    let mut changes = Changes::default();
    for op in ops {
        match op {
            Op::Put(name, attr) => {
                entity.attributes.insert(name.clone(), attr);
                changes.updated.push(name);
            }
            Op::Delete(name, dataset_id) => {
                entity.attributes.remove_instance(&name, dataset_id.as_deref());
                changes.deleted.push(name);
            }
        }
    }
    for names in [&mut changes.updated, &mut changes.deleted] {
        names.sort_unstable();
        names.dedup();
    }
    changes
}

/// Checks a fragment's `id` and `type` against the entity's: a fragment may
/// repeat them, not change them (Vigie's entities have one type).
fn check_identity(entity: &Entity, obj: &Map<String, Value>) -> Result<(), UpdateError> {
    if let Some(id) = obj.get("id")
        && id.as_str() != Some(entity.id.as_str())
    {
        return Err(bad(format!("the payload's id {id} is not the entity's, {}", entity.id)));
    }
    match obj.get("type") {
        None => Ok(()),
        Some(Value::String(t)) if *t == entity.entity_type => Ok(()),
        Some(Value::Array(types)) if types.len() == 1 && types[0].as_str() == Some(&entity.entity_type) => Ok(()),
        Some(t) => Err(UpdateError::NotSupported(format!(
            "entity {} is of type {}; adding or changing types ({t}) is not supported",
            entity.id, entity.entity_type
        ))),
    }
}

/// Merge Entity (PATCH /entities/{id}, entityOperations/merge): attributes
/// the fragment leaves out are kept; an instance it gives (by `datasetId`,
/// the default one without) is merged into the existing one, value and
/// sub-attributes deeply, or appended; NGSI-LD Null deletes an instance, a
/// sub-attribute or a member of a value. A simplified attribute keeps the
/// existing attribute's kind; a different kind replaces the instance. A
/// `scope` replaces the entity's.
pub fn merge_entity(entity: &mut Entity, fragment: &Value, options: &MergeOptions) -> Result<Changes, UpdateError> {
    let obj = fragment
        .as_object()
        .ok_or_else(|| bad("the fragment must be a JSON object of attributes"))?;
    check_identity(entity, obj)?;
    if let Some(tag) = &options.lang
        && !is_language_tag(tag)
    {
        return Err(bad(format!("lang '{tag}' is not a language tag")));
    }
    let scope = obj
        .get("scope")
        .map(parse_scope)
        .transpose()
        .map_err(UpdateError::BadData)?;
    let mut ops = Vec::new();
    for (name, value) in obj {
        // id, type and scope were handled; createdAt and modifiedAt are the system's.
        if RESERVED_MEMBERS.contains(&name.as_str()) {
            continue;
        }
        for (patch, dataset_id) in instance_patches(name, value)? {
            ops.extend(merge_instance(entity, name, patch, dataset_id, options)?);
        }
    }
    let mut changes = apply(entity, ops);
    if let Some(scope) = scope {
        changes.scope = entity.scope.as_ref() != Some(&scope);
        entity.scope = Some(scope);
    }
    Ok(changes)
}

/// Replace Entity (PUT /entities/{id}): everything but the id, the type and
/// `createdAt` becomes the replacement's.
pub fn replace_entity(entity: &mut Entity, replacement: Entity) -> Result<Changes, UpdateError> {
    if replacement.id != entity.id {
        return Err(bad(format!(
            "the payload's id {} is not the entity's, {}",
            replacement.id, entity.id
        )));
    }
    if replacement.entity_type != entity.entity_type {
        return Err(UpdateError::NotSupported(format!(
            "entity {} is of type {}; replacing cannot change it to {}",
            entity.id, entity.entity_type, replacement.entity_type
        )));
    }
    let changes = Changes {
        updated: replacement.attributes.keys().cloned().collect(),
        deleted: entity
            .attributes
            .keys()
            .filter(|name| !replacement.attributes.contains_key(name))
            .cloned()
            .collect(),
        scope: replacement.scope != entity.scope,
    };
    entity.scope = replacement.scope;
    entity.attributes = replacement.attributes;
    Ok(changes)
}

/// Replace Attribute (PUT /entities/{id}/attrs/{attr}): the instance the
/// body names by `datasetId` (the default one without) must exist; it is
/// replaced whole.
pub fn replace_attribute(entity: &mut Entity, name: &str, body: &Value) -> Result<Changes, UpdateError> {
    if body.is_array() {
        return Err(bad(format!("replace attribute '{name}' one instance at a time")));
    }
    let attr = parse_instance(name, body)?;
    if entity.attributes.instance(name, attr.dataset_id.as_deref()).is_none() {
        return Err(UpdateError::NoSuchAttribute {
            name: name.to_owned(),
            dataset_id: attr.dataset_id,
        });
    }
    Ok(apply(entity, vec![Op::Put(name.to_owned(), attr)]))
}

/// Partial Attribute Update (PATCH /entities/{id}/attrs/{attr}): the members
/// the patch gives replace the instance's (first level, 5.5.8: a value is
/// replaced, not merged), NGSI-LD Null removing a sub-attribute, or the
/// instance when it is the value. The instance must exist; its kind cannot
/// change (replace the attribute for that).
pub fn update_attribute(entity: &mut Entity, name: &str, patch: &Value) -> Result<Changes, UpdateError> {
    let dataset_id = target_dataset(name, patch)?;
    let Some(old) = entity.attributes.instance(name, dataset_id.as_deref()) else {
        return Err(UpdateError::NoSuchAttribute {
            name: name.to_owned(),
            dataset_id,
        });
    };
    if is_null(patch) || patch.as_object().is_some_and(deletes_instance) {
        return Ok(apply(entity, vec![Op::Delete(name.to_owned(), dataset_id)]));
    }
    let members = patch_members(name, old.kind, patch, None)?.ok_or_else(|| {
        bad(format!(
            "attribute '{name}' is a {}: an update cannot change its type (replace it instead)",
            old.kind.name()
        ))
    })?;
    let mut updated = old.to_normalized();
    if let Value::Object(m) = &mut updated {
        for (member, value) in members {
            if is_null(&value) {
                m.shift_remove(&member);
            } else {
                m.insert(member, value);
            }
        }
    }
    let attr = Attribute::from_normalized(name, &updated).map_err(UpdateError::BadData)?;
    Ok(apply(entity, vec![Op::Put(name.to_owned(), attr)]))
}

/// Delete Attribute (DELETE /entities/{id}/attrs/{attr}): the default
/// instance, one by `datasetId`, or all with `deleteAll=true`.
pub fn delete_attribute(entity: &mut Entity, name: &str, target: &InstanceTarget) -> Result<Changes, UpdateError> {
    let missing = |dataset_id: Option<&str>| UpdateError::NoSuchAttribute {
        name: name.to_owned(),
        dataset_id: dataset_id.map(str::to_owned),
    };
    match target {
        InstanceTarget::All => entity.attributes.remove(name).map(drop).ok_or_else(|| missing(None))?,
        InstanceTarget::Default => entity
            .attributes
            .remove_instance(name, None)
            .map(drop)
            .ok_or_else(|| missing(None))?,
        InstanceTarget::Dataset(d) => entity
            .attributes
            .remove_instance(name, Some(d))
            .map(drop)
            .ok_or_else(|| missing(Some(d)))?,
    }
    Ok(Changes {
        deleted: vec![name.to_owned()],
        ..Changes::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ngsi::entity_from_concise;
    use serde_json::json;

    fn car() -> Entity {
        entity_from_concise(&json!({
            "id": "urn:ngsi-ld:Vehicle:dijon:1",
            "type": "Vehicle",
            "scope": "/dijon/fleet",
            "temperature": {"value": 25, "unitCode": "CEL", "observedAt": "2022-03-14T01:59:26.535Z"},
            "address": {"street": "Straße des 17. Juni", "city": "Berlin", "country": "Germany"},
            "speed": [{"value": 50, "accuracy": 0.5}, {"value": 52, "datasetId": "urn:gps"}],
            "owner": {"object": "urn:ngsi-ld:Person:1"},
            "name": {"languageMap": {"fr": "Voiture", "en": "Car"}}
        }))
        .unwrap()
    }

    fn merged(fragment: Value) -> (Entity, Changes) {
        let mut e = car();
        let changes = merge_entity(&mut e, &fragment, &MergeOptions::default()).unwrap();
        (e, changes)
    }

    #[test]
    fn merge_follows_the_specification_examples() {
        // 5.5.12 example 1: value and observedAt replaced, unitCode kept.
        let (e, changes) = merged(
            json!({"temperature": {"type": "Property", "value": 100, "observedAt": "2022-03-14T13:00:00.000Z"}}),
        );
        assert_eq!(
            e.attributes["temperature"].to_normalized(),
            json!({"type": "Property", "value": 100, "observedAt": "2022-03-14T13:00:00.000Z", "unitCode": "CEL"})
        );
        assert_eq!(changes.updated, ["temperature"]);
        assert!(changes.deleted.is_empty() && !changes.scope);
        // Example 2: into the value, NGSI-LD Null removing a member.
        let (e, _) = merged(
            json!({"address": {"type": "Property", "value": {"street": "Pariser Platz", "country": NGSI_LD_NULL}}}),
        );
        assert_eq!(
            e.attributes["address"].value,
            json!({"street": "Pariser Platz", "city": "Berlin"})
        );
        // Attributes left out are kept.
        assert_eq!(e.attributes["owner"].value, "urn:ngsi-ld:Person:1");
    }

    #[test]
    fn merge_addresses_instances_and_deletes_with_null() {
        let (e, changes) = merged(json!({
            "speed": [{"value": 60, "datasetId": "urn:gps"}, {"value": 61, "datasetId": "urn:meter"}],
            "owner": NGSI_LD_NULL,
            "temperature": {"unitCode": NGSI_LD_NULL, "value": 20},
            "mileage": 1200
        }));
        let speeds: Vec<_> = e.attributes.instances("speed").map(|a| a.value.clone()).collect();
        assert_eq!(
            speeds,
            [json!(50), json!(60), json!(61)],
            "the default instance untouched"
        );
        assert_eq!(
            e.attributes.instance("speed", None).unwrap().extra["accuracy"]["value"],
            0.5
        );
        assert!(!e.attributes.contains_key("owner"));
        assert_eq!(e.attributes["temperature"].unit_code, None);
        assert_eq!(e.attributes["mileage"].value, 1200);
        assert_eq!(changes.updated, ["mileage", "speed", "temperature"]);
        assert_eq!(changes.deleted, ["owner"]);

        // A sub-attribute deleted; a datasetId is not.
        let (e, _) = merged(json!({"speed": {"accuracy": NGSI_LD_NULL, "value": 49}}));
        let default = e.attributes.instance("speed", None).unwrap();
        assert!(default.extra.is_empty() && default.value == 49);
        // Null on an absent attribute changes nothing.
        let (_, changes) = merged(json!({"nothing": NGSI_LD_NULL}));
        assert_eq!(changes, Changes::default());
        // A relationship's null object deletes it.
        let (e, _) = merged(json!({"owner": {"object": NGSI_LD_NULL}}));
        assert!(!e.attributes.contains_key("owner"));
    }

    #[test]
    fn simplified_fragments_keep_the_kind() {
        let (e, _) = merged(json!({"owner": "urn:ngsi-ld:Person:2", "address": {"city": "Dijon"}}));
        assert_eq!(e.attributes["owner"].kind, AttributeKind::Relationship);
        assert_eq!(e.attributes["owner"].value, "urn:ngsi-ld:Person:2");
        assert_eq!(e.attributes["address"].value["street"], "Straße des 17. Juni");
        assert_eq!(e.attributes["address"].value["city"], "Dijon");

        // With a common lang, one language of a LanguageProperty.
        let mut e = car();
        let options = MergeOptions {
            lang: Some("de".into()),
            ..MergeOptions::default()
        };
        merge_entity(&mut e, &json!({"name": "Auto"}), &options).unwrap();
        assert_eq!(
            e.attributes["name"].value,
            json!({"fr": "Voiture", "en": "Car", "de": "Auto"})
        );
        // Another kind given explicitly replaces the instance.
        let (e, _) = merged(json!({"owner": {"type": "Property", "value": "me"}}));
        assert_eq!(
            e.attributes["owner"].to_normalized(),
            json!({"type": "Property", "value": "me"})
        );
    }

    #[test]
    fn merge_applies_a_common_observed_at_where_there_was_one() {
        let mut e = car();
        let t: Timestamp = "2026-11-22T18:00:00Z".parse().unwrap();
        let options = MergeOptions {
            observed_at: Some(t),
            ..MergeOptions::default()
        };
        merge_entity(
            &mut e,
            &json!({"temperature": 21, "address": {"city": "Dijon"}}),
            &options,
        )
        .unwrap();
        assert_eq!(e.attributes["temperature"].observed_at, Some(t));
        assert_eq!(e.attributes["address"].observed_at, None, "it had none");
        let own = json!({"temperature": {"value": 22, "observedAt": "2026-11-22T17:00:00Z"}});
        merge_entity(&mut e, &own, &options).unwrap();
        assert_eq!(
            e.attributes["temperature"].observed_at,
            Some("2026-11-22T17:00:00Z".parse().unwrap())
        );
    }

    #[test]
    fn merge_scope_and_identity() {
        let (e, changes) =
            merged(json!({"id": "urn:ngsi-ld:Vehicle:dijon:1", "type": "Vehicle", "scope": "/dijon/police"}));
        assert!(changes.scope);
        assert_eq!(e.scope.unwrap().to_ngsi(), "/dijon/police");
        let mut e = car();
        let before = e.clone();
        let cases = [
            (json!([]), "must be a JSON object"),
            (json!({"id": "urn:other:1"}), "is not the entity's"),
            (json!({"type": "Bus"}), "not supported"),
            (json!({"scope": "dijon"}), "scope"),
            (
                json!({"speed": [{"value": 1}, {"value": 2, "datasetId": "@none"}]}),
                "two default instances",
            ),
            (json!({"speed": {"value": 1, "datasetId": "gps"}}), "not a URI"),
            (json!({"owner": {"object": "not a uri"}}), "relationship 'owner'"),
            (
                json!({"mileage": 3, "owner": {"value": 1, "object": "urn:x:1"}}),
                "both 'value' and 'object'",
            ),
        ];
        for (fragment, needle) in cases {
            let err = merge_entity(&mut e, &fragment, &MergeOptions::default()).unwrap_err();
            assert!(err.to_string().contains(needle), "{fragment}: {err}");
            assert_eq!(e, before, "{fragment}: nothing changes on error");
        }
        let options = MergeOptions {
            lang: Some("not a tag".into()),
            ..MergeOptions::default()
        };
        assert!(merge_entity(&mut e, &json!({}), &options).is_err());
        let mut deep = json!(1);
        for _ in 0..=MAX_MERGE_DEPTH {
            deep = json!({"a": deep});
        }
        let err = merge_entity(&mut e, &json!({"address": {"value": deep}}), &MergeOptions::default()).unwrap_err();
        assert!(err.to_string().contains("deeper than 32"), "{err}");
    }

    #[test]
    fn replace_entity_keeps_identity_and_creation() {
        let mut e = car();
        e.created_at = Some("2026-01-01T00:00:00Z".parse().unwrap());
        let replacement = entity_from_concise(&json!({
            "id": "urn:ngsi-ld:Vehicle:dijon:1", "type": "Vehicle", "mileage": 3, "owner": {"object": "urn:x:2"}
        }))
        .unwrap();
        let changes = replace_entity(&mut e, replacement).unwrap();
        assert_eq!(changes.updated, ["mileage", "owner"]);
        assert_eq!(changes.deleted, ["address", "name", "speed", "temperature"]);
        assert!(changes.scope && e.scope.is_none());
        assert!(e.created_at.is_some());
        let other = Entity::new(EntityId::new("urn:x:9").unwrap(), "Vehicle", None);
        assert!(matches!(replace_entity(&mut e, other), Err(UpdateError::BadData(_))));
        let retyped = Entity::new(e.id.clone(), "Bus", None);
        assert!(matches!(
            replace_entity(&mut e, retyped),
            Err(UpdateError::NotSupported(_))
        ));
    }

    #[test]
    fn replace_attribute_needs_the_instance() {
        let mut e = car();
        let changes = replace_attribute(&mut e, "speed", &json!({"value": 70, "datasetId": "urn:gps"})).unwrap();
        assert_eq!(changes.updated, ["speed"]);
        assert_eq!(e.attributes.instance("speed", Some("urn:gps")).unwrap().value, 70);
        // Whole: the default instance loses its sub-attribute.
        replace_attribute(&mut e, "speed", &json!(45)).unwrap();
        assert!(e.attributes.instance("speed", None).unwrap().extra.is_empty());
        let err = replace_attribute(&mut e, "speed", &json!({"value": 1, "datasetId": "urn:radar"})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the entity has no attribute 'speed' with datasetId 'urn:radar'"
        );
        assert!(matches!(
            replace_attribute(&mut e, "nope", &json!(1)),
            Err(UpdateError::NoSuchAttribute { .. })
        ));
        assert!(matches!(
            replace_attribute(&mut e, "speed", &json!([1])),
            Err(UpdateError::BadData(_))
        ));
    }

    #[test]
    fn partial_update_replaces_first_level_members() {
        let mut e = car();
        let changes = update_attribute(&mut e, "address", &json!({"value": {"city": "Dijon"}})).unwrap();
        assert_eq!(changes.updated, ["address"]);
        assert_eq!(
            e.attributes["address"].value,
            json!({"city": "Dijon"}),
            "replaced, not merged"
        );
        update_attribute(&mut e, "temperature", &json!({"unitCode": NGSI_LD_NULL, "value": 30})).unwrap();
        assert_eq!(
            (
                e.attributes["temperature"].unit_code.as_deref(),
                &e.attributes["temperature"].value
            ),
            (None, &json!(30))
        );
        assert!(
            e.attributes["temperature"].observed_at.is_some(),
            "members not given are kept"
        );
        update_attribute(&mut e, "owner", &json!("urn:x:3")).unwrap();
        assert_eq!(e.attributes["owner"].value, "urn:x:3");
        let changes =
            update_attribute(&mut e, "speed", &json!({"value": NGSI_LD_NULL, "datasetId": "urn:gps"})).unwrap();
        assert_eq!(changes.deleted, ["speed"]);
        assert_eq!(e.attributes.instances("speed").count(), 1);

        let err = update_attribute(&mut e, "owner", &json!({"type": "Property", "value": 1})).unwrap_err();
        assert!(err.to_string().contains("cannot change its type"), "{err}");
        let err = update_attribute(&mut e, "mileage", &json!(1)).unwrap_err();
        assert_eq!(
            err,
            UpdateError::NoSuchAttribute {
                name: "mileage".into(),
                dataset_id: None
            }
        );
        let err = update_attribute(&mut e, "owner", &json!({"object": "nope"})).unwrap_err();
        assert!(err.to_string().contains("relationship 'owner'"), "{err}");
    }

    #[test]
    fn delete_attribute_by_instance_or_all() {
        assert_eq!(InstanceTarget::from_params(None, false), InstanceTarget::Default);
        assert_eq!(
            InstanceTarget::from_params(Some("@none"), false),
            InstanceTarget::Default
        );
        assert_eq!(InstanceTarget::from_params(Some("urn:gps"), true), InstanceTarget::All);
        let mut e = car();
        let gps = InstanceTarget::Dataset("urn:gps".into());
        assert_eq!(delete_attribute(&mut e, "speed", &gps).unwrap().deleted, ["speed"]);
        assert!(matches!(
            delete_attribute(&mut e, "speed", &gps),
            Err(UpdateError::NoSuchAttribute {
                dataset_id: Some(_),
                ..
            })
        ));
        delete_attribute(&mut e, "speed", &InstanceTarget::Default).unwrap();
        assert!(!e.attributes.contains_key("speed"));
        delete_attribute(&mut e, "address", &InstanceTarget::All).unwrap();
        assert!(delete_attribute(&mut e, "address", &InstanceTarget::All).is_err());
    }
}

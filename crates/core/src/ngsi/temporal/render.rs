//! The temporal representations of one entity (§4.5.7 normalized, §4.5.9
//! simplified `temporalValues`, §4.5.19 `aggregatedValues`). `@context` is
//! the API layer's to add.

use serde_json::{Map, Value, json};

use super::{AggrMethod, PeriodStats, Periods};
use crate::entity::{format_timestamp, is_geometry};
use crate::{AttributeKind, Entity, Timestamp};

/// One recorded value of an attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub observed_at: Timestamp,
    pub value: Value,
    pub unit_code: Option<String>,
}

/// An attribute's instances, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeHistory {
    pub name: String,
    pub instances: Vec<Instance>,
}

/// An attribute's statistics, one per period of the query's [`Periods`].
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeAggregate {
    pub name: String,
    pub periods: Vec<PeriodStats>,
}

/// The attribute's kind as the entity now has it; for an attribute it no
/// longer has, what its values look like.
fn kind_of(entity: &Entity, name: &str, sample: Option<&Value>) -> AttributeKind {
    match (entity.attributes.get(name), sample) {
        (Some(attribute), _) => attribute.kind,
        (None, Some(v)) if is_geometry(v) => AttributeKind::GeoProperty,
        (None, _) => AttributeKind::Property,
    }
}

fn kind_name(kind: AttributeKind) -> Value {
    serde_json::to_value(kind).unwrap_or(Value::Null)
}

fn header(entity: &Entity, capacity: usize) -> Map<String, Value> {
    let mut m = Map::with_capacity(3 + capacity);
    m.insert("id".into(), Value::String(entity.id.to_string()));
    m.insert("type".into(), Value::String(entity.entity_type.clone()));
    if let Some(scope) = &entity.scope {
        m.insert("scope".into(), Value::String(scope.to_ngsi()));
    }
    m
}

/// The simplified member holding a kind's `[value, time]` pairs, and whether
/// each value is wrapped in an object under the kind's own member (§4.5.9:
/// `{"languageMap": ...}`, `{"json": ...}`, `{"vocab": ...}`).
fn simplified_member(kind: AttributeKind) -> (&'static str, Option<&'static str>) {
    match kind {
        AttributeKind::Property | AttributeKind::GeoProperty => ("values", None),
        AttributeKind::Relationship => ("objects", None),
        AttributeKind::ListRelationship => ("objectLists", None),
        AttributeKind::LanguageProperty => ("languageMaps", Some("languageMap")),
        AttributeKind::ListProperty => ("valueLists", None),
        AttributeKind::JsonProperty => ("jsons", Some("json")),
        AttributeKind::VocabProperty => ("vocabs", Some("vocab")),
    }
}

/// A simplified value: a list relationship is stored `[{"object": id}, …]`
/// and shown as its ids, as in the simplified entity form.
fn simplified_value(kind: AttributeKind, value: &Value) -> Value {
    match (kind, simplified_member(kind).1) {
        (AttributeKind::ListRelationship, _) => Value::Array(
            value
                .as_array()
                .into_iter()
                .flatten()
                .map(|o| o.get("object").cloned().unwrap_or_else(|| o.clone()))
                .collect(),
        ),
        (_, Some(wrapper)) => json!({ wrapper: value }),
        (_, None) => value.clone(),
    }
}

/// The entity's temporal representation from its history: normalized (each
/// attribute an array of instances `{type, value|object|..., observedAt,
/// unitCode?}`) or, with `temporal_values`, simplified (each attribute
/// `{type, values|objects|...: [[value, observedAt], ...]}`). Attributes
/// without instances are left out (annex C.5.5, example 2).
pub fn render_instances(entity: &Entity, history: &[AttributeHistory], temporal_values: bool) -> Value {
    let mut m = header(entity, history.len());
    for attribute in history.iter().filter(|a| !a.instances.is_empty()) {
        let kind = kind_of(entity, &attribute.name, attribute.instances.first().map(|i| &i.value));
        let rendered = if temporal_values {
            let (member, _) = simplified_member(kind);
            let pairs = attribute
                .instances
                .iter()
                .map(|i| json!([simplified_value(kind, &i.value), format_timestamp(i.observed_at)]))
                .collect();
            json!({ "type": kind_name(kind), member: Value::Array(pairs) })
        } else {
            Value::Array(
                attribute
                    .instances
                    .iter()
                    .map(|i| {
                        let mut instance = Map::with_capacity(4);
                        instance.insert("type".into(), kind_name(kind));
                        instance.insert(kind.value_member().into(), i.value.clone());
                        instance.insert("observedAt".into(), Value::String(format_timestamp(i.observed_at)));
                        if let Some(unit) = &i.unit_code {
                            instance.insert("unitCode".into(), Value::String(unit.clone()));
                        }
                        Value::Object(instance)
                    })
                    .collect(),
            )
        };
        m.insert(attribute.name.clone(), rendered);
    }
    Value::Object(m)
}

/// The entity's aggregated temporal representation (§4.5.19): each
/// attribute `{type, <method>: [[value, start, end], ...], ...}`, one triple
/// per period, methods in request order. `last_n` keeps the most recent
/// periods. Statistics missing for a period (a short list) count as empty.
pub fn render_aggregated(
    entity: &Entity,
    aggregates: &[AttributeAggregate],
    periods: &Periods,
    methods: &[AggrMethod],
    last_n: Option<usize>,
) -> Value {
    let first = last_n.map_or(0, |n| periods.len().saturating_sub(n));
    let bounds: Vec<(String, String)> = periods
        .iter()
        .skip(first)
        .map(|(s, e)| (format_timestamp(s), format_timestamp(e)))
        .collect();
    let empty = PeriodStats::default();
    let mut m = header(entity, aggregates.len());
    for attribute in aggregates {
        let kind = kind_of(entity, &attribute.name, None);
        let mut rendered = Map::with_capacity(1 + methods.len());
        rendered.insert("type".into(), kind_name(kind));
        for &method in methods {
            let triples = bounds
                .iter()
                .enumerate()
                .map(|(i, (start, end))| {
                    let stats = attribute.periods.get(first + i).unwrap_or(&empty);
                    json!([stats.value(method, kind), start, end])
                })
                .collect();
            rendered.insert(method.name().into(), Value::Array(triples));
        }
        m.insert(attribute.name.clone(), Value::Object(rendered));
    }
    Value::Object(m)
}

//! Discovery (5.7.5–5.7.8): the entity types and attributes the twin holds,
//! counted over every entity the caller may see, not over a sample.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use vigie_core::{Action, Entity};

use super::{expanded, linked_json};
use crate::api::{ApiError, AppState, Params};
use crate::security::Caller;
use crate::twin::Catalog;

/// The catalog of what the caller sees: the twin's own when it sees
/// everything, a filtered scan otherwise.
async fn catalog(s: &AppState, caller: &Caller, headers: &HeaderMap) -> Result<Catalog, ApiError> {
    caller.check(Action::ReadEntities)?;
    let tenant = s.tenants.for_read(headers).await?;
    Ok(if s.security.sees_everything(caller) {
        tenant.twin.catalog(None)
    } else {
        let visible = |e: &Entity| s.security.sees(caller, e.scope.as_ref());
        tenant.twin.catalog(Some(&visible))
    })
}

fn details(p: &Params) -> bool {
    p.get("details") == Some("true")
}

/// A list's id: NGSI-LD asks for a unique URI; the time of the answer makes one.
fn list_id(kind: &str) -> String {
    format!("urn:ngsi-ld:{kind}:{}", vigie_core::Timestamp::now().as_nanosecond())
}

/// `GET /types`: an `EntityTypeList`, or with `details=true` one `EntityType` per type.
pub(super) async fn types(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    let catalog = catalog(&s, &caller, &headers).await?;
    let body = if details(&params) {
        Value::Array(
            catalog
                .types
                .iter()
                .map(|(name, t)| {
                    json!({
                        "id": expanded(name),
                        "type": "EntityType",
                        "typeName": name,
                        "attributeNames": t.attributes.keys().collect::<Vec<_>>(),
                    })
                })
                .collect(),
        )
    } else {
        json!({
            "id": list_id("EntityTypeList"),
            "type": "EntityTypeList",
            "typeList": catalog.types.keys().collect::<Vec<_>>(),
        })
    };
    Ok(linked_json(StatusCode::OK, body, HeaderMap::new()))
}

/// `GET /types/{type}`: an `EntityTypeInfo`, 404 for a type no visible entity has.
pub(super) async fn type_info(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let catalog = catalog(&s, &caller, &headers).await?;
    let t = catalog
        .types
        .get(&name)
        .ok_or_else(|| ApiError::NotFound(format!("no entity has the type {name}")))?;
    let attribute_details: Vec<Value> = t
        .attributes
        .iter()
        .map(|(attr, kinds)| {
            json!({
                "id": expanded(attr),
                "type": "Attribute",
                "attributeName": attr,
                "attributeTypes": kinds.keys().collect::<Vec<_>>(),
            })
        })
        .collect();
    let body = json!({
        "id": expanded(&name),
        "type": "EntityTypeInfo",
        "typeName": name,
        "entityCount": t.entities,
        "attributeDetails": attribute_details,
    });
    Ok(linked_json(StatusCode::OK, body, HeaderMap::new()))
}

/// One attribute across types: how many entities have it, its kinds, the types that have it.
#[derive(Default)]
struct AttributeStats<'a> {
    count: usize,
    kinds: BTreeSet<vigie_core::AttributeKind>,
    types: BTreeSet<&'a str>,
}

fn attribute_stats(catalog: &Catalog) -> BTreeMap<&str, AttributeStats<'_>> {
    let mut out: BTreeMap<&str, AttributeStats<'_>> = BTreeMap::new();
    for (type_name, t) in &catalog.types {
        for (attr, kinds) in &t.attributes {
            let stats = out.entry(attr.as_str()).or_default();
            stats.count += kinds.values().sum::<usize>();
            stats.kinds.extend(kinds.keys().copied());
            stats.types.insert(type_name);
        }
    }
    out
}

fn attribute_json(name: &str, stats: &AttributeStats<'_>) -> Value {
    json!({
        "id": expanded(name),
        "type": "Attribute",
        "attributeName": name,
        "attributeCount": stats.count,
        "attributeTypes": stats.kinds,
        "typeNames": stats.types,
    })
}

/// `GET /attributes`: an `AttributeList`, or with `details=true` one `Attribute` each.
pub(super) async fn attributes(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    let catalog = catalog(&s, &caller, &headers).await?;
    let stats = attribute_stats(&catalog);
    let body = if details(&params) {
        Value::Array(stats.iter().map(|(name, st)| attribute_json(name, st)).collect())
    } else {
        json!({
            "id": list_id("AttributeList"),
            "type": "AttributeList",
            "attributeList": stats.keys().collect::<Vec<_>>(),
        })
    };
    Ok(linked_json(StatusCode::OK, body, HeaderMap::new()))
}

/// `GET /attributes/{attr}`: one `Attribute`, 404 when no visible entity has it.
pub(super) async fn attribute_info(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let catalog = catalog(&s, &caller, &headers).await?;
    let stats = attribute_stats(&catalog);
    let st = stats
        .get(name.as_str())
        .ok_or_else(|| ApiError::NotFound(format!("no entity has the attribute {name}")))?;
    Ok(linked_json(StatusCode::OK, attribute_json(&name, st), HeaderMap::new()))
}

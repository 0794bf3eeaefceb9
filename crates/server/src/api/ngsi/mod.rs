//! NGSI-LD (ETSI GS CIM 009): entities, batch operations, discovery, with
//! tenants. Each endpoint family has its module; what they share (rendering,
//! parsing, scope checks, the `Link` header) is here.

mod batch;
mod contexts;
mod discovery;
mod entities;
mod jsonld;
mod query;
mod subscriptions;
mod temporal;

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};
use vigie_core::entity::Normalized;
use vigie_core::ngsi::{self, GeoQuery, GeoQueryError, QueryError};
use vigie_core::{Action, Attribute, Entity, EntityId};

use super::{ApiError, AppState, Params};
use crate::ingest::WriteOutcome;
use crate::security::Caller;
use crate::tenants::Tenant;

/// The NGSI-LD core context.
macro_rules! core_context {
    () => {
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
    };
}
/// The `Link` header naming the NGSI-LD core context on every `application/json` answer.
const CORE_CONTEXT_LINK: &str = concat!(
    "<",
    core_context!(),
    ">; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\""
);
/// Where short names expand to under the core context alone.
const DEFAULT_VOCABULARY: &str = "https://uri.etsi.org/ngsi-ld/default-context/";
/// Most entities in one batch operation.
const MAX_BATCH: usize = 1_000;
/// Longest regular expression accepted in `idPattern`.
const MAX_PATTERN_BYTES: usize = 1_024;

/// The NGSI-LD routes that need a login, behind the JSON-LD boundary.
pub fn routes(state: &AppState) -> Router<AppState> {
    use axum::routing::{delete, patch};
    Router::new()
        .route("/ngsi-ld/v1/entities", get(query::get).post(entities::create))
        .route(
            "/ngsi-ld/v1/entities/{id}",
            get(entities::retrieve)
                .delete(entities::delete)
                .put(entities::replace)
                .patch(entities::merge),
        )
        .route(
            "/ngsi-ld/v1/entities/{id}/attrs",
            post(entities::append_attributes).patch(entities::update_attributes),
        )
        .route(
            "/ngsi-ld/v1/entities/{id}/attrs/{attr}",
            patch(entities::partial_attribute_update)
                .put(entities::replace_attribute)
                .merge(delete(entities::delete_attribute)),
        )
        .route("/ngsi-ld/v1/entityOperations/create", post(batch::create))
        .route("/ngsi-ld/v1/entityOperations/upsert", post(batch::upsert))
        .route("/ngsi-ld/v1/entityOperations/update", post(batch::update))
        .route("/ngsi-ld/v1/entityOperations/merge", post(batch::merge))
        .route("/ngsi-ld/v1/entityOperations/delete", post(batch::delete))
        .route("/ngsi-ld/v1/entityOperations/query", post(query::post))
        .route(
            "/ngsi-ld/v1/subscriptions",
            get(subscriptions::list).post(subscriptions::create),
        )
        .route(
            "/ngsi-ld/v1/subscriptions/{id}",
            get(subscriptions::retrieve)
                .patch(subscriptions::update)
                .delete(subscriptions::delete),
        )
        .route(
            "/ngsi-ld/v1/temporal/entities",
            get(temporal::query).post(temporal::create_or_update),
        )
        .route("/ngsi-ld/v1/temporal/entities/{id}/attrs", post(temporal::append))
        .route(
            "/ngsi-ld/v1/temporal/entities/{id}",
            get(temporal::retrieve).delete(entities::delete),
        )
        .route(
            "/ngsi-ld/v1/temporal/entityOperations/query",
            post(temporal::post_query),
        )
        .route("/ngsi-ld/v1/types", get(discovery::types))
        .route("/ngsi-ld/v1/types/{type}", get(discovery::type_info))
        .route("/ngsi-ld/v1/attributes", get(discovery::attributes))
        .route("/ngsi-ld/v1/attributes/{attr}", get(discovery::attribute_info))
        .route("/ngsi-ld/v1/jsonldContexts", get(contexts::list).post(contexts::host))
        .route("/ngsi-ld/v1/jsonldContexts/{id}", delete(contexts::delete))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), jsonld::boundary))
}

/// The @context documents, public so JSON-LD processors can fetch them.
pub fn public_routes() -> Router<AppState> {
    Router::new().route("/ngsi-ld/v1/jsonldContexts/{id}", get(contexts::serve))
}

/// The full IRI of a name, as the core context expands it.
fn expanded(name: &str) -> String {
    if name.contains(':') {
        name.to_owned()
    } else {
        format!("{DEFAULT_VOCABULARY}{name}")
    }
}

fn entity_id(raw: &str) -> Result<EntityId, ApiError> {
    EntityId::new(raw).map_err(|e| ApiError::BadRequestData(e.to_string()))
}

/// How an entity is rendered: which attributes, which form.
struct Rendering {
    /// `attrs`: the attributes shown (and, in a query, required: one at least).
    attrs: Option<Vec<String>>,
    /// `pick` / `omit`: members kept or removed, nothing more.
    pick: Option<Vec<String>>,
    omit: Option<Vec<String>>,
    format: ngsi::Format,
    sys_attrs: bool,
    lang: Option<ngsi::LanguageFilter>,
}

impl Rendering {
    fn from_params(p: &Params) -> Result<Self, ApiError> {
        let format = match p.get("format") {
            None => None,
            Some("keyValues" | "simplified") => Some(ngsi::Format::KeyValues),
            Some("concise") => Some(ngsi::Format::Concise),
            Some("normalized") => Some(ngsi::Format::Normalized),
            Some(other) => return Err(ApiError::BadRequestData(format!("unknown format '{other}'"))),
        };
        let format = format.unwrap_or(if p.has_option("keyValues") || p.has_option("simplified") {
            ngsi::Format::KeyValues
        } else if p.has_option("concise") {
            ngsi::Format::Concise
        } else {
            ngsi::Format::Normalized
        });
        let (pick, omit) = (p.list("pick"), p.list("omit"));
        if pick.is_some() && omit.is_some() {
            return Err(ApiError::BadRequestData("pick and omit cannot be used together".into()));
        }
        let lang = p
            .get("lang")
            .map(ngsi::LanguageFilter::parse)
            .transpose()
            .map_err(|e| ApiError::BadRequestData(format!("lang: {e}")))?;
        Ok(Self {
            attrs: p.list("attrs"),
            pick,
            omit,
            format,
            sys_attrs: p.has_option("sysAttrs"),
            lang,
        })
    }

    fn render<'a>(&self, e: &'a Entity) -> Rendered<'a> {
        let plain = self.format == ngsi::Format::Normalized
            && self.lang.is_none()
            && self.attrs.is_none()
            && self.pick.is_none()
            && self.omit.is_none();
        if plain {
            return Rendered::Normalized(e.normalized(self.sys_attrs));
        }
        let mut v = ngsi::render(
            e,
            &ngsi::RenderOptions {
                format: self.format,
                sys_attrs: self.sys_attrs,
                lang: self.lang.clone(),
            },
        );
        if let (Some(attrs), Value::Object(m)) = (&self.attrs, &mut v) {
            m.retain(|k, _| matches!(k.as_str(), "id" | "type" | "scope") || attrs.iter().any(|a| a == k));
        }
        ngsi::project(&mut v, self.pick.as_deref(), self.omit.as_deref());
        Rendered::Shaped(v)
    }
}

/// A rendered entity: the plain normalized form is serialized straight from
/// the twin's entity (the common case: reads by id); others go through a `Value`.
enum Rendered<'a> {
    Normalized(Normalized<'a>),
    Shaped(Value),
}

impl Serialize for Rendered<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Normalized(n) => n.serialize(s),
            Self::Shaped(v) => v.serialize(s),
        }
    }
}

fn query_error(parameter: &str, e: QueryError) -> ApiError {
    match e {
        QueryError::TooComplex { .. } => ApiError::TooComplexQuery(format!("{parameter}: {e}")),
        QueryError::Syntax { .. } => ApiError::BadRequestData(format!("invalid {parameter}: {e}")),
    }
}

/// The geo-query of a request, if it has one: `georel`, `geometry` and
/// `coordinates` go together.
fn geo_query(p: &Params) -> Result<Option<GeoQuery>, ApiError> {
    let (georel, geometry, coordinates) = (p.get("georel"), p.get("geometry"), p.get("coordinates"));
    match (georel, geometry, coordinates) {
        (None, None, None) => Ok(None),
        (Some(georel), Some(geometry), Some(coordinates)) => {
            GeoQuery::parse(georel, geometry, coordinates, p.get("geoproperty"))
                .map(Some)
                .map_err(|e| match e {
                    GeoQueryError::TooComplex { .. } => ApiError::TooComplexQuery(e.to_string()),
                    _ => ApiError::BadRequestData(e.to_string()),
                })
        }
        _ => Err(ApiError::BadRequestData(
            "a geo-query needs georel, geometry and coordinates together".into(),
        )),
    }
}

/// JSON with the core context linked, as NGSI-LD asks for `application/json`.
fn linked_json(status: StatusCode, body: impl Serialize, extra: HeaderMap) -> Response {
    let mut res = (status, extra, Json(body)).into_response();
    res.headers_mut()
        .insert(header::LINK, HeaderValue::from_static(CORE_CONTEXT_LINK));
    res
}

/// The entity `id` of a tenant, if the caller may see it; 404 otherwise.
pub(crate) fn visible(s: &AppState, caller: &Caller, tenant: &Tenant, id: &EntityId) -> Result<Arc<Entity>, ApiError> {
    tenant
        .twin
        .get(id.as_str())
        .filter(|e| s.security.sees(caller, e.scope.as_ref()))
        .ok_or_else(|| not_found(id))
}

/// Every read of personal data (CCTV by default) is audited.
pub(crate) async fn audit_personal_read(s: &AppState, caller: &Caller, entity: &Entity) -> Result<(), ApiError> {
    if s.security.is_personal(entity.scope.as_ref()) {
        s.audit
            .record(vigie_core::audit::AuditEvent {
                target: Some(entity.id.to_string()),
                ..crate::audit::event(caller, "personal-data.read")
            })
            .await?;
    }
    Ok(())
}

/// An entity out of the caller's sight is answered exactly like one that
/// does not exist, so ids leak nothing.
fn not_found(id: &EntityId) -> ApiError {
    ApiError::NotFound(format!("entity {id} does not exist"))
}

/// Whether the caller may change the entity `id` (its state `current`): 403
/// (audited) when its scope is outside the grant.
/// Writes follow the grant only: the personal-data rule hides entities from
/// reads (an administrator provisions cameras without seeing them).
pub(crate) async fn check_writable(
    s: &AppState,
    caller: &Caller,
    verb: &str,
    id: &EntityId,
    current: Option<&Entity>,
) -> Result<(), ApiError> {
    s.audit
        .check(caller, Action::WriteEntities, verb, Some(id.as_str()))
        .await?;
    match current {
        Some(current) => {
            s.audit
                .check_in(
                    caller,
                    Action::WriteEntities,
                    current.scope.as_ref(),
                    verb,
                    Some(id.as_str()),
                )
                .await
        }
        // The writer answers 404, and the failed attempt is audited.
        None => Ok(()),
    }
}

/// An entity in normalized, concise or keyValues form (5.5.x).
fn parse_entity(v: &Value) -> Result<Entity, ApiError> {
    ngsi::entity_from_concise(v).map_err(ApiError::BadRequestData)
}

/// A body of attributes, in any form, each name with its instances.
fn parse_attributes(v: &Value) -> Result<Vec<(String, Attribute)>, ApiError> {
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::BadRequestData("the body must be a JSON object of attributes".into()))?;
    let mut out = Vec::with_capacity(obj.len());
    for (name, value) in obj {
        if matches!(name.as_str(), "@context" | "id" | "type") {
            continue;
        }
        let instances = ngsi::attribute_from_concise(name, value).map_err(ApiError::BadRequestData)?;
        out.extend(instances.into_iter().map(|a| (name.clone(), a)));
    }
    Ok(out)
}

fn partial_or_done(outcome: WriteOutcome) -> Response {
    match outcome {
        WriteOutcome::Partial { updated, not_updated } => {
            let not_updated: Vec<Value> = not_updated
                .into_iter()
                .map(|(name, reason)| json!({"attributeName": name, "reason": reason}))
                .collect();
            (
                StatusCode::MULTI_STATUS,
                Json(json!({"updated": updated, "notUpdated": not_updated})),
            )
                .into_response()
        }
        _ => StatusCode::NO_CONTENT.into_response(),
    }
}

/// The entity id of a path, and the entity's state before a write (for the audit trail).
fn entity_and_state(tenant: &Tenant, raw: &str) -> Result<(EntityId, Option<Arc<Entity>>), ApiError> {
    let id = entity_id(raw)?;
    let before = tenant.twin.get(id.as_str());
    Ok((id, before))
}

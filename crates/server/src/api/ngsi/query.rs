//! Querying entities: `GET /entities` and `POST /entityOperations/query`
//! share one query model and one executor.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use regex::Regex;
use serde_json::{Value, json};
use vigie_core::audit::AuditEvent;
use vigie_core::ngsi::{GeoQuery, GeoQueryError, Query, ScopeQuery};
use vigie_core::{Action, Entity, EntityId};

use super::{MAX_PATTERN_BYTES, Rendered, Rendering, entity_id, geo_query, linked_json, query_error};
use crate::api::{ApiError, AppState, JsonBody, Params};
use crate::audit;
use crate::security::Caller;
use crate::tenants::Tenant;
use crate::twin::{Candidates, Page};

/// Most entity selectors in one `POST /entityOperations/query`.
const MAX_SELECTORS: usize = 100;

/// Which entities a selector designates: every given member must match.
#[derive(Default)]
struct Selector {
    ids: Option<Vec<EntityId>>,
    id_pattern: Option<Regex>,
    types: Option<Vec<String>>,
}

impl Selector {
    fn matches(&self, e: &Entity) -> bool {
        self.types.as_ref().is_none_or(|t| t.contains(&e.entity_type))
            && self.ids.as_ref().is_none_or(|ids| ids.contains(&e.id))
            && self.id_pattern.as_ref().is_none_or(|re| re.is_match(e.id.as_str()))
    }

    fn is_empty(&self) -> bool {
        self.ids.is_none() && self.id_pattern.is_none() && self.types.is_none()
    }
}

/// An entity query: selectors (any may match), then the filters (all must).
pub(super) struct EntityQuery {
    selectors: Vec<Selector>,
    /// Entities must have one of these attributes (`attrs`).
    pub(super) attrs: Option<Vec<String>>,
    q: Option<Query>,
    scope_q: Option<ScopeQuery>,
    geo: Option<GeoQuery>,
}

/// `idPattern`, compiled with bounds on its size.
fn id_pattern(p: &str) -> Result<Regex, ApiError> {
    regex::RegexBuilder::new(p)
        .size_limit(1 << 20)
        .build()
        .ok()
        .filter(|_| p.len() <= MAX_PATTERN_BYTES)
        .ok_or_else(|| ApiError::BadRequestData(format!("idPattern '{p}' is not a valid regular expression")))
}

/// A type expression: `A,B` and `A|B` both mean either type (an entity has one type).
fn types(expr: &str) -> Result<Vec<String>, ApiError> {
    if expr.contains(';') {
        return Err(ApiError::OperationNotSupported(format!(
            "type '{expr}': entities have a single type, so ';' (and) is not supported"
        )));
    }
    let types: Vec<String> = expr
        .split([',', '|'])
        .map(|t| t.trim().trim_matches(['(', ')']).trim())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    if types.is_empty() {
        return Err(ApiError::BadRequestData(format!("type '{expr}' names no type")));
    }
    Ok(types)
}

impl EntityQuery {
    pub(super) fn from_params(p: &Params, attrs: Option<Vec<String>>) -> Result<Self, ApiError> {
        if p.get("csf").is_some() {
            return Err(ApiError::OperationNotSupported(
                "'csf' (context source filter) is not supported".into(),
            ));
        }
        let selector = Selector {
            types: p.get("type").map(types).transpose()?,
            ids: p
                .list("id")
                .map(|ids| ids.iter().map(|i| entity_id(i)).collect::<Result<Vec<_>, _>>())
                .transpose()?,
            id_pattern: p.get("idPattern").map(id_pattern).transpose()?,
        };
        let query = Self {
            selectors: vec![selector],
            attrs,
            q: p.get("q")
                .map(Query::parse)
                .transpose()
                .map_err(|e| query_error("q", e))?,
            scope_q: p
                .get("scopeQ")
                .map(ScopeQuery::parse)
                .transpose()
                .map_err(|e| query_error("scopeQ", e))?,
            geo: geo_query(p)?,
        };
        query.require_a_filter()
    }

    /// The body of `POST /entityOperations/query` (the `Query` data type, 5.2.23).
    pub(super) fn from_body(body: &Value, attrs_param: Option<Vec<String>>) -> Result<Self, ApiError> {
        let obj = body
            .as_object()
            .ok_or_else(|| ApiError::BadRequestData("the body must be a Query object".into()))?;
        if let Some(t) = obj.get("type")
            && t != "Query"
        {
            return Err(ApiError::BadRequestData(format!(
                "the body's type must be \"Query\", not {t}"
            )));
        }
        for unsupported in ["csf"] {
            if obj.contains_key(unsupported) {
                return Err(ApiError::OperationNotSupported(format!(
                    "'{unsupported}' is not supported in an entity query"
                )));
            }
        }
        let text = |key: &str| -> Result<Option<&str>, ApiError> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(ApiError::BadRequestData(format!("'{key}' must be a string"))),
            }
        };
        let selectors = match obj.get("entities") {
            None => vec![],
            Some(Value::Array(items)) if items.len() <= MAX_SELECTORS => {
                items.iter().map(selector).collect::<Result<Vec<_>, _>>()?
            }
            Some(Value::Array(items)) => {
                return Err(ApiError::TooComplexQuery(format!(
                    "{} entity selectors; at most {MAX_SELECTORS}",
                    items.len()
                )));
            }
            Some(_) => return Err(ApiError::BadRequestData("'entities' must be an array".into())),
        };
        let attrs = match obj.get("attrs") {
            None => attrs_param,
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .ok_or_else(|| ApiError::BadRequestData("'attrs' must hold strings".into()))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some(_) => return Err(ApiError::BadRequestData("'attrs' must be an array of names".into())),
        };
        let geo = match obj.get("geoQ") {
            None | Some(Value::Null) => None,
            Some(g) => Some(geo_from_body(g)?),
        };
        let query = Self {
            selectors,
            attrs,
            q: text("q")?
                .map(Query::parse)
                .transpose()
                .map_err(|e| query_error("q", e))?,
            scope_q: text("scopeQ")?
                .map(ScopeQuery::parse)
                .transpose()
                .map_err(|e| query_error("scopeQ", e))?,
            geo,
        };
        query.require_a_filter()
    }

    /// NGSI-LD refuses a query that would return every entity unfiltered.
    fn require_a_filter(self) -> Result<Self, ApiError> {
        let selects = self.selectors.iter().any(|s| !s.is_empty());
        if !selects && self.attrs.is_none() && self.q.is_none() && self.geo.is_none() && self.scope_q.is_none() {
            return Err(ApiError::BadRequestData(
                "a query needs at least one of type, id, idPattern, attrs, q, scopeQ or a geo-query".into(),
            ));
        }
        Ok(self)
    }

    fn matches(&self, e: &Entity) -> bool {
        (self.selectors.is_empty() || self.selectors.iter().any(|s| s.matches(e)))
            && self
                .attrs
                .as_ref()
                .is_none_or(|a| a.iter().any(|a| e.attributes.contains_key(a)))
            && self.scope_q.as_ref().is_none_or(|s| s.matches(e))
            && self.q.as_ref().is_none_or(|q| q.matches(e))
            && self.geo.as_ref().is_none_or(|g| g.matches(e))
    }

    /// Where the twin starts looking: the ids when every selector names
    /// them, the spatial index for a geo-query on `location`, else everything.
    fn candidate_ids(&self) -> Option<Vec<EntityId>> {
        if self.selectors.is_empty() {
            return None;
        }
        let mut ids = Vec::new();
        for s in &self.selectors {
            ids.extend(s.ids.as_ref()?.iter().cloned());
        }
        Some(ids)
    }
}

fn selector(v: &Value) -> Result<Selector, ApiError> {
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::BadRequestData("each of 'entities' must be an object".into()))?;
    let text = |key: &str| -> Result<Option<&str>, ApiError> {
        match obj.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(ApiError::BadRequestData(format!("entities[].{key} must be a string"))),
        }
    };
    let selector = Selector {
        ids: text("id")?.map(|id| entity_id(id).map(|id| vec![id])).transpose()?,
        id_pattern: text("idPattern")?.map(id_pattern).transpose()?,
        types: text("type")?.map(types).transpose()?,
    };
    if selector.types.is_none() {
        return Err(ApiError::BadRequestData("each entity selector needs a 'type'".into()));
    }
    Ok(selector)
}

/// A `geoQ` member: `coordinates` is JSON here, text in a URL.
fn geo_from_body(g: &Value) -> Result<GeoQuery, ApiError> {
    let member = |key: &str| g.get(key).and_then(Value::as_str);
    let (Some(georel), Some(geometry), Some(coordinates)) =
        (member("georel"), member("geometry"), g.get("coordinates"))
    else {
        return Err(ApiError::BadRequestData(
            "geoQ needs georel, geometry and coordinates".into(),
        ));
    };
    let coordinates = match coordinates {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    GeoQuery::parse(georel, geometry, &coordinates, member("geoproperty")).map_err(|e| match e {
        GeoQueryError::TooComplex { .. } => ApiError::TooComplexQuery(e.to_string()),
        _ => ApiError::BadRequestData(e.to_string()),
    })
}

/// `limit`, `offset` and `count`, bounded by the configuration, and
/// Vigie's `afterId`: the last id of the previous page, from which the page
/// starts (in id order; `offset` is then ignored), as the `next` link gives it.
pub(super) struct Paging {
    pub(super) limit: usize,
    pub(super) offset: usize,
    pub(super) count: bool,
    pub(super) after: Option<EntityId>,
}

impl Paging {
    pub(super) fn from_params(s: &AppState, p: &Params) -> Result<Self, ApiError> {
        let api = &s.config.api;
        let limit = p.usize("limit")?.unwrap_or(api.default_page_size);
        if limit > api.max_page_size {
            return Err(ApiError::TooManyResults(format!(
                "limit {limit} exceeds the maximum page size {}; page with offset",
                api.max_page_size
            )));
        }
        let count = p.get("count") == Some("true") || p.has_option("count");
        if limit == 0 && !count {
            return Err(ApiError::BadRequestData(
                "limit=0 is only allowed with count=true".into(),
            ));
        }
        let after = p.get("afterId").map(entity_id).transpose()?;
        Ok(Self {
            limit,
            offset: if after.is_some() {
                0
            } else {
                p.usize("offset")?.unwrap_or(0)
            },
            count,
            after,
        })
    }
}

/// `GET /ngsi-ld/v1/entities`.
pub(super) async fn get(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    uri: Uri,
    params: Params,
) -> Result<Response, ApiError> {
    caller.check(Action::ReadEntities)?;
    let paging = Paging::from_params(&s, &params)?;
    let rendering = Rendering::from_params(&params)?;
    let query = EntityQuery::from_params(&params, rendering.attrs.clone())?;
    let next = NextLink {
        path: uri.path(),
        params: &params,
    };
    run(&s, &caller, &headers, &query, &paging, &rendering, next).await
}

/// `POST /ngsi-ld/v1/entityOperations/query`: the query in the body, paging in the URL.
pub(super) async fn post(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    uri: Uri,
    params: Params,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    caller.check(Action::ReadEntities)?;
    let paging = Paging::from_params(&s, &params)?;
    let mut rendering = Rendering::from_params(&params)?;
    if body.get("temporalQ").is_some() {
        return Err(ApiError::OperationNotSupported(
            "temporalQ belongs to /ngsi-ld/v1/temporal/entityOperations/query".into(),
        ));
    }
    let query = EntityQuery::from_body(&body, rendering.attrs.take())?;
    rendering.attrs.clone_from(&query.attrs);
    let next = NextLink {
        path: uri.path(),
        params: &params,
    };
    run(&s, &caller, &headers, &query, &paging, &rendering, next).await
}

/// Where the page after a full one is: the same request with `offset`
/// moved on and `afterId` set to the page's last id, so following it costs
/// a seek however deep the paging goes.
struct NextLink<'a> {
    path: &'a str,
    params: &'a Params,
}

impl NextLink<'_> {
    fn header(&self, paging: &Paging, last: &EntityId) -> Option<HeaderValue> {
        let mut pairs: Vec<(&str, &str)> = self
            .params
            .0
            .iter()
            .filter(|(k, _)| k.as_str() != "offset" && k.as_str() != "afterId")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        pairs.sort_unstable();
        let offset = (paging.offset + paging.limit).to_string();
        pairs.push(("offset", &offset));
        pairs.push(("afterId", last.as_str()));
        let query = serde_urlencoded::to_string(&pairs).ok()?;
        HeaderValue::from_str(&format!("<{}?{query}>; rel=\"next\"", self.path)).ok()
    }
}

/// The page of entities a query selects in a tenant, what the caller may
/// see only, personal-data reads audited.
pub(super) async fn select(
    s: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    query: &EntityQuery,
    paging: &Paging,
) -> Result<Page, ApiError> {
    // Out-of-sight entities are filtered before paging and counting; sight
    // is checked last, so only entities the query matches pay for it.
    let sees_all = s.security.sees_everything(caller);
    let after = paging.after.as_ref();
    let filter = |e: &Entity| {
        after.is_none_or(|a| e.id > *a) && query.matches(e) && (sees_all || s.security.sees(caller, e.scope.as_ref()))
    };
    let ids = query.candidate_ids();
    // The spatial index holds `location`: a geo-query on it starts from the
    // entities in its bounding box rather than from every entity.
    let area = query
        .geo
        .as_ref()
        .filter(|g| g.geoproperty == "location")
        .and_then(GeoQuery::bounding_box);
    let candidates = match (&ids, area, after) {
        (Some(ids), _, _) => Candidates::Ids(ids),
        (None, Some((min, max)), _) => Candidates::Area { min, max },
        (None, None, Some(after)) => Candidates::After(after),
        (None, None, None) => Candidates::All,
    };
    let page = tenant
        .twin
        .select(candidates, &filter, paging.offset, paging.limit, paging.count);
    let personal: Vec<&str> = page
        .entities
        .iter()
        .filter(|e| s.security.is_personal(e.scope.as_ref()))
        .map(|e| e.id.as_str())
        .collect();
    if !personal.is_empty() {
        s.audit
            .record(AuditEvent {
                after: Some(json!({ "entities": personal })),
                ..audit::event(caller, "personal-data.read")
            })
            .await?;
    }
    Ok(page)
}

async fn run(
    s: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    query: &EntityQuery,
    paging: &Paging,
    rendering: &Rendering,
    next: NextLink<'_>,
) -> Result<Response, ApiError> {
    let tenant = s.tenants.for_read(headers).await?;
    let page = select(s, caller, &tenant, query, paging).await?;
    let body: Vec<Rendered<'_>> = page.entities.iter().map(|e| rendering.render(e)).collect();
    let mut headers = HeaderMap::new();
    if let Some(total) = page.total {
        headers.insert("NGSILD-Results-Count", HeaderValue::from(total));
    }
    // A full page may have a next one.
    let next = page
        .entities
        .last()
        .filter(|_| paging.limit > 0 && page.entities.len() == paging.limit)
        .and_then(|last| next.header(paging, &last.id));
    let mut res = linked_json(StatusCode::OK, body, headers);
    if let Some(link) = next {
        res.headers_mut().append(axum::http::header::LINK, link);
    }
    Ok(res)
}

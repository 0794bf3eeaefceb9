//! Subscriptions (5.8, 6.10–6.11): create, list, retrieve, update, delete.
//! A subscription notifies only what its creator may read; callers see and
//! change their own subscriptions, and those who see everything see all.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use vigie_core::ngsi::subscription::Target;
use vigie_core::ngsi::{Subscription, SubscriptionError};
use vigie_core::{Action, EntityId, Timestamp};
use vigie_store::SubscriptionRecord;

use super::linked_json;
use super::query::Paging;
use crate::api::{ApiError, AppState, JsonBody, Params};
use crate::audit;
use crate::security::Caller;
use crate::tenants::Tenant;
use vigie_core::audit::AuditEvent;

/// Most subscriptions one tenant holds.
const MAX_SUBSCRIPTIONS: usize = 10_000;

fn invalid(e: SubscriptionError) -> ApiError {
    ApiError::BadRequestData(e.to_string())
}

/// What the delivery cannot do yet is refused up front, not retried forever.
fn deliverable(sub: &Subscription) -> Result<(), ApiError> {
    match sub.endpoint().target() {
        Target::Mqtt(t) if t.tls => Err(ApiError::OperationNotSupported(
            "mqtts:// notification endpoints are not supported yet; use mqtt:// or https://".into(),
        )),
        _ => Ok(()),
    }
}

fn owned_by(caller: &Caller, s: &AppState, record: &SubscriptionRecord) -> bool {
    record.owner.subject == caller.principal.subject || s.security.sees_everything(&caller.principal)
}

/// The subscription `id`, when the caller may see it; 404 otherwise.
fn visible(s: &AppState, caller: &Caller, tenant: &Tenant, id: &str) -> Result<SubscriptionRecord, ApiError> {
    tenant
        .subscriptions
        .get(id)
        .filter(|r| owned_by(caller, s, r))
        .ok_or_else(|| ApiError::NotFound(format!("subscription {id} does not exist")))
}

async fn audited(s: &AppState, caller: &Caller, action: &str, id: &str, after: Option<Value>) -> Result<(), ApiError> {
    s.audit
        .record(AuditEvent {
            target: Some(id.to_owned()),
            after,
            ..audit::event(caller, action)
        })
        .await?;
    Ok(())
}

pub(super) async fn create(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    caller.check(Action::ReadEntities)?;
    // Subscribing reads: it does not create a tenant.
    let tenant = s.tenants.for_read(&headers).await?;
    if tenant.subscriptions.len() >= MAX_SUBSCRIPTIONS {
        return Err(ApiError::Forbidden(format!(
            "this tenant already holds {MAX_SUBSCRIPTIONS} subscriptions"
        )));
    }
    let now = Timestamp::now();
    let generated = EntityId::new(format!("urn:ngsi-ld:Subscription:{}", now.as_nanosecond()))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let subscription = Subscription::create(&body, generated, now).map_err(invalid)?;
    deliverable(&subscription)?;
    let id = subscription.id().to_string();
    if tenant.subscriptions.get(&id).is_some() {
        return Err(ApiError::AlreadyExists(format!("subscription {id} already exists")));
    }
    let after = subscription.to_json(now, true);
    tenant
        .subscriptions
        .put(SubscriptionRecord {
            subscription,
            owner: caller.principal.clone(),
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    audited(&s, &caller, "subscription.create", &id, Some(after)).await?;
    let mut res = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/ngsi-ld/v1/subscriptions/{id}")) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

pub(super) async fn list(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    caller.check(Action::ReadEntities)?;
    let tenant = s.tenants.for_read(&headers).await?;
    let paging = Paging::from_params(&s, &params)?;
    let sys_attrs = params.has_option("sysAttrs");
    let all = tenant.subscriptions.list(|r| owned_by(&caller, &s, r));
    let now = Timestamp::now();
    let page: Vec<Value> = all
        .iter()
        .skip(paging.offset)
        .take(paging.limit)
        .map(|r| r.subscription.to_json(now, sys_attrs))
        .collect();
    let mut extra = HeaderMap::new();
    if paging.count {
        extra.insert("NGSILD-Results-Count", HeaderValue::from(all.len()));
    }
    Ok(linked_json(StatusCode::OK, page, extra))
}

pub(super) async fn retrieve(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    caller.check(Action::ReadEntities)?;
    let tenant = s.tenants.for_read(&headers).await?;
    let record = visible(&s, &caller, &tenant, &id)?;
    let body = record
        .subscription
        .to_json(Timestamp::now(), params.has_option("sysAttrs"));
    Ok(linked_json(StatusCode::OK, body, HeaderMap::new()))
}

pub(super) async fn update(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
    JsonBody(fragment): JsonBody,
) -> Result<StatusCode, ApiError> {
    caller.check(Action::ReadEntities)?;
    let tenant = s.tenants.for_read(&headers).await?;
    let record = visible(&s, &caller, &tenant, &id)?;
    let now = Timestamp::now();
    let subscription = record.subscription.update(&fragment, now).map_err(invalid)?;
    deliverable(&subscription)?;
    let after = subscription.to_json(now, true);
    tenant
        .subscriptions
        .put(SubscriptionRecord {
            subscription,
            owner: record.owner,
        })
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    audited(&s, &caller, "subscription.update", &id, Some(after)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn delete(
    State(s): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.check(Action::ReadEntities)?;
    let tenant = s.tenants.for_read(&headers).await?;
    visible(&s, &caller, &tenant, &id)?;
    tenant
        .subscriptions
        .delete(&id)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    audited(&s, &caller, "subscription.delete", &id, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

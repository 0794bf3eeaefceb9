//! API keys (integrators, startups: scoped, rate limited, revocable) and
//! service tokens (the city's own services). A token reads
//! `vgk_<id>_<secret>`: the id finds the record, the secret's hash must match.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::http::{HeaderMap, header};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Serialize;
use vigie_core::Timestamp;
use vigie_core::access::{Credential, Principal, Role, ScopeGrant};
use vigie_core::account::{ApiCredential, CredentialKind};

use super::secrets::{random_hex, random_token, same_secret, token_hash};
use super::{Security, SecurityError};
use crate::api::ApiError;

/// The header integrators may use instead of `Authorization: Bearer`.
const API_KEY_HEADER: &str = "x-api-key";
/// Longest token accepted (ours are 64 characters).
const MAX_TOKEN_BYTES: usize = 256;

pub(super) struct LiveCredential {
    pub(super) record: ApiCredential,
    principal: Principal,
    limiter: Option<DefaultDirectRateLimiter>,
    /// Microseconds since the epoch of the last use; 0 when never used.
    last_used: AtomicI64,
    /// The last use already written to the store.
    flushed: AtomicI64,
}

/// A credential as created: the token is shown this once.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedCredential {
    pub token: String,
    #[serde(flatten)]
    pub credential: ApiCredential,
}

/// What a new API key or service token is given.
pub struct NewCredential {
    pub kind: CredentialKind,
    pub name: String,
    pub role: Role,
    pub scope: ScopeGrant,
    /// API keys: requests per minute; `None` takes the configured default.
    pub requests_per_minute: Option<u32>,
    pub expires_at: Option<Timestamp>,
}

/// The token a request presents, if any.
pub(super) fn presented_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .or_else(|| headers.get(API_KEY_HEADER).and_then(|v| v.to_str().ok()))
        .map(str::trim)
}

fn micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

impl LiveCredential {
    fn new(record: ApiCredential, default_per_minute: u32) -> Self {
        let limiter = (record.kind == CredentialKind::ApiKey)
            .then(|| record.requests_per_minute.unwrap_or(default_per_minute))
            .and_then(NonZeroU32::new)
            .map(|n| RateLimiter::direct(Quota::per_minute(n)));
        let last = record.last_used_at.map_or(0, micros);
        Self {
            principal: Principal {
                subject: record.name.clone(),
                credential: match record.kind {
                    CredentialKind::ApiKey => Credential::ApiKey,
                    CredentialKind::ServiceToken => Credential::ServiceToken,
                },
                role: record.role,
                scope: record.scope.clone(),
            },
            limiter,
            last_used: AtomicI64::new(last),
            flushed: AtomicI64::new(last),
            record,
        }
    }

    /// The record with its last use as known in memory.
    fn current(&self) -> ApiCredential {
        let mut c = self.record.clone();
        let last = self.last_used.load(Ordering::Relaxed);
        if last > 0 {
            c.last_used_at = Timestamp::from_microsecond(last).ok();
        }
        c
    }
}

impl Security {
    pub(super) async fn load_credentials(&self) -> Result<(), SecurityError> {
        let all = self.store.api_credentials().await?;
        let now = Timestamp::now();
        let live = all
            .into_iter()
            .filter(|c| c.is_active(now))
            .map(|c| {
                let id = c.id.clone();
                (
                    id,
                    Arc::new(LiveCredential::new(c, self.config.api_key_requests_per_minute)),
                )
            })
            .collect();
        if let Ok(mut map) = self.credentials.write() {
            *map = live;
        }
        Ok(())
    }

    /// Checks a presented token; counts it against the key's rate.
    pub(super) fn check_credential(&self, token: &str) -> Result<Principal, ApiError> {
        let invalid = || ApiError::Unauthorized("the API key or token is invalid, expired or revoked".into());
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid());
        }
        let mut parts = token.splitn(3, '_');
        let (Some(prefix), Some(id), Some(secret)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid());
        };
        let live = self
            .credentials
            .read()
            .ok()
            .and_then(|m| m.get(id).cloned())
            .ok_or_else(invalid)?;
        let now = Timestamp::now();
        if prefix != live.record.kind.prefix()
            || !same_secret(&token_hash(secret), &live.record.secret_hash)
            || !live.record.is_active(now)
        {
            return Err(invalid());
        }
        if let Some(limiter) = &live.limiter
            && limiter.check().is_err()
        {
            return Err(ApiError::TooManyRequests(format!(
                "API key '{}' exceeds its {} requests per minute",
                live.record.name,
                live.record
                    .requests_per_minute
                    .unwrap_or(self.config.api_key_requests_per_minute)
            )));
        }
        live.last_used.store(micros(now), Ordering::Relaxed);
        Ok(live.principal.clone())
    }

    /// Creates an API key or a service token; the token is returned once.
    pub async fn issue_credential(&self, new: NewCredential, created_by: &str) -> Result<IssuedCredential, ApiError> {
        let NewCredential {
            kind,
            name,
            role,
            scope,
            requests_per_minute,
            expires_at,
        } = new;
        let name = name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(ApiError::BadRequestData(
                "an API credential needs a name of 1 to 200 characters".into(),
            ));
        }
        let random = |e: getrandom::Error| ApiError::Internal(format!("random generator: {e}"));
        let id = random_hex(8).map_err(random)?;
        let secret = random_token().map_err(random)?;
        let credential = ApiCredential {
            id: id.clone(),
            kind,
            name: name.to_owned(),
            role,
            scope,
            secret_hash: token_hash(&secret),
            requests_per_minute,
            created_by: created_by.to_owned(),
            created_at: Timestamp::now(),
            expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        self.store.put_api_credential(&credential).await?;
        let live = Arc::new(LiveCredential::new(
            credential.clone(),
            self.config.api_key_requests_per_minute,
        ));
        if let Ok(mut map) = self.credentials.write() {
            map.insert(id.clone(), live);
        }
        tracing::info!(id = %credential.id, name = %credential.name, kind = ?kind, role = %role, "API credential issued");
        Ok(IssuedCredential {
            token: format!("{}_{id}_{secret}", kind.prefix()),
            credential,
        })
    }

    /// Every credential, revoked ones included, with their last use.
    pub async fn credentials(&self) -> Result<Vec<ApiCredential>, ApiError> {
        let mut all = self.store.api_credentials().await?;
        if let Ok(map) = self.credentials.read() {
            for c in &mut all {
                if let Some(live) = map.get(&c.id) {
                    *c = live.current();
                }
            }
        }
        Ok(all)
    }

    /// Revokes a credential at once; returns it as it was.
    pub async fn revoke_credential(&self, id: &str) -> Result<ApiCredential, ApiError> {
        let _writing = self.writes.lock().await;
        let mut credential = self
            .store
            .api_credentials()
            .await?
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| ApiError::NotFound(format!("no API credential '{id}'")))?;
        let before = credential.clone();
        if credential.revoked_at.is_none() {
            credential.revoked_at = Some(Timestamp::now());
            self.store.put_api_credential(&credential).await?;
        }
        if let Ok(mut map) = self.credentials.write() {
            map.remove(id);
        }
        tracing::info!(id, name = %credential.name, "API credential revoked");
        Ok(before)
    }

    pub(super) async fn flush_credentials(&self) -> Result<(), vigie_store::StoreError> {
        // Serialized with revocation, so a flush cannot write back a revoked key.
        let _writing = self.writes.lock().await;
        let changed: Vec<ApiCredential> = match self.credentials.read() {
            Ok(map) => map
                .values()
                .filter(|l| l.last_used.load(Ordering::Relaxed) != l.flushed.load(Ordering::Relaxed))
                .map(|l| {
                    l.flushed.store(l.last_used.load(Ordering::Relaxed), Ordering::Relaxed);
                    l.current()
                })
                .collect(),
            Err(_) => return Ok(()),
        };
        for c in &changed {
            self.store.put_api_credential(c).await?;
        }
        Ok(())
    }
}

//! Console sessions: a random token in an HttpOnly, SameSite=Strict cookie
//! (Secure under TLS), an idle timeout and an absolute end, and a per-session
//! anti-CSRF token that every change must carry in `X-CSRF-Token`.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::http::{HeaderMap, HeaderValue, Method, header};
use jiff::SignedDuration;
use vigie_core::Timestamp;
use vigie_core::access::{Credential, Principal};
use vigie_core::account::{Account, AccountOrigin, Session};

use super::Security;
use super::secrets::{random_token, same_secret, token_hash};
use crate::api::ApiError;

pub const SESSION_COOKIE: &str = "vigie_session";
/// The header carrying the session's anti-CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Longest cookie value considered (ours are 43 characters).
const MAX_COOKIE_BYTES: usize = 128;

pub(super) struct LiveSession {
    session: Session,
    /// Microseconds since the epoch of the last request.
    last_seen: AtomicI64,
    flushed: AtomicI64,
}

impl LiveSession {
    pub(super) fn session_account(&self) -> &str {
        &self.session.account
    }
}

/// The value of cookie `name`, if the request has it.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty() && v.len() <= MAX_COOKIE_BYTES)
}

fn micros(t: Timestamp) -> i64 {
    t.as_microsecond()
}

fn unsafe_method(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl Security {
    /// A `Set-Cookie` value; `None` for the token clears the cookie.
    pub fn cookie_header(&self, name: &str, token: Option<&str>, max_age_secs: u64) -> HeaderValue {
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        let text = match token {
            Some(t) => format!("{name}={t}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"),
            None => format!("{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
        };
        // Our tokens are URL-safe base64: always a valid header value.
        HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
    }

    fn idle(&self) -> SignedDuration {
        SignedDuration::from_mins(i64::from(self.config.session_idle_minutes))
    }

    /// Opens a session for an account that just proved who it is.
    pub(super) async fn open_session(
        &self,
        account: &Account,
        source: Option<IpAddr>,
    ) -> Result<(String, Session), ApiError> {
        let random = |e: getrandom::Error| ApiError::Internal(format!("random generator: {e}"));
        let token = random_token().map_err(random)?;
        let now = Timestamp::now();
        let session = Session {
            token_hash: token_hash(&token),
            account: account.name.clone(),
            csrf_token: random_token().map_err(random)?,
            created_at: now,
            last_seen_at: now,
            expires_at: now
                .checked_add(SignedDuration::from_hours(i64::from(self.config.session_hours)))
                .map_err(|e| ApiError::Internal(format!("session end: {e}")))?,
            source: source.map(|s| s.to_string()),
            single_sign_on: account.origin == AccountOrigin::SingleSignOn,
        };
        self.store.put_session(&session).await?;
        self.cache_session(session.clone());
        Ok((token, session))
    }

    fn cache_session(&self, session: Session) -> Arc<LiveSession> {
        let seen = micros(session.last_seen_at);
        let live = Arc::new(LiveSession {
            last_seen: AtomicI64::new(seen),
            flushed: AtomicI64::new(seen),
            session,
        });
        if let Ok(mut map) = self.sessions.write() {
            map.insert(live.session.token_hash.clone(), Arc::clone(&live));
        }
        live
    }

    fn cached_session(&self, hash: &str) -> Option<Arc<LiveSession>> {
        self.sessions.read().ok()?.get(hash).cloned()
    }

    /// Checks a session cookie (and, for a change, the CSRF header).
    pub(super) async fn check_session(
        &self,
        token: &str,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<(Principal, String), ApiError> {
        let expired = || ApiError::Unauthorized("the session has expired or ended: log in again".into());
        let hash = token_hash(token);
        let live = match self.cached_session(&hash) {
            Some(live) => live,
            // After a restart, sessions are read back on first use.
            None => match self.store.session(&hash).await? {
                Some(s) => self.cache_session(s),
                None => return Err(expired()),
            },
        };
        let now = Timestamp::now();
        let last_seen = Timestamp::from_microsecond(live.last_seen.load(Ordering::Relaxed)).unwrap_or(now);
        let idle_end = last_seen.checked_add(self.idle()).unwrap_or(now);
        let account = self.account(&live.session.account).filter(|a| !a.disabled);
        if now >= live.session.expires_at || now >= idle_end || account.is_none() {
            self.close_session(&hash).await?;
            return Err(expired());
        }
        if unsafe_method(method) {
            let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
            if !same_secret(sent, &live.session.csrf_token) {
                return Err(ApiError::Forbidden(format!(
                    "a change made with a session cookie needs the session's anti-CSRF token in '{CSRF_HEADER}'"
                )));
            }
        }
        live.last_seen.store(micros(now), Ordering::Relaxed);
        let account = account.ok_or_else(expired)?;
        Ok((
            Principal {
                subject: account.name.clone(),
                credential: if live.session.single_sign_on {
                    Credential::SingleSignOn
                } else {
                    Credential::Session
                },
                role: account.role,
                scope: account.scope.clone(),
            },
            hash,
        ))
    }

    /// The session behind a hash (for `GET /auth/session`).
    pub fn session(&self, hash: &str) -> Option<Session> {
        self.cached_session(hash).map(|l| l.session.clone())
    }

    pub async fn close_session(&self, hash: &str) -> Result<(), ApiError> {
        // Serialized with the flusher, so it cannot write an ended session back.
        let _writing = self.writes.lock().await;
        if let Ok(mut map) = self.sessions.write() {
            map.remove(hash);
        }
        self.store.delete_session(hash).await?;
        Ok(())
    }

    /// Ends every session of an account (disabled, password changed, deleted).
    pub async fn end_sessions_of(&self, account: &str) -> Result<u64, ApiError> {
        let _writing = self.writes.lock().await;
        if let Ok(mut map) = self.sessions.write() {
            map.retain(|_, l| l.session.account != account);
        }
        Ok(self.store.delete_sessions_of(account).await?)
    }

    pub(super) async fn flush_sessions(&self) -> Result<(), vigie_store::StoreError> {
        let _writing = self.writes.lock().await;
        let now = Timestamp::now();
        let changed: Vec<Session> = match self.sessions.write() {
            Ok(mut map) => {
                map.retain(|_, l| l.session.expires_at > now);
                map.values()
                    .filter(|l| l.last_seen.load(Ordering::Relaxed) != l.flushed.load(Ordering::Relaxed))
                    .map(|l| {
                        let seen = l.last_seen.load(Ordering::Relaxed);
                        l.flushed.store(seen, Ordering::Relaxed);
                        let mut s = l.session.clone();
                        s.last_seen_at = Timestamp::from_microsecond(seen).unwrap_or(now);
                        s
                    })
                    .collect()
            }
            Err(_) => return Ok(()),
        };
        for s in &changed {
            self.store.put_session(s).await?;
        }
        self.store.prune_sessions(now).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; vigie_session=abc123"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("other=1"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc123"));
        assert_eq!(cookie(&h, "missing"), None);
        let mut long = HeaderMap::new();
        long.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("vigie_session={}", "x".repeat(500))).unwrap(),
        );
        assert_eq!(cookie(&long, SESSION_COOKIE), None, "oversized cookies are ignored");
    }
}

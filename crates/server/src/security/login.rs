//! Password logins and account management. Failed logins slow down
//! (a growing delay before each failure's answer) and then lock: the account
//! name after `login_max_failures` (whether the account exists or not, so
//! the answer reveals nothing), the client address after ten times that.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::SignedDuration;
use vigie_core::Timestamp;
use vigie_core::access::{Role, ScopeGrant, password};
use vigie_core::account::{Account, AccountOrigin, Session, validate_account_name};

use super::Security;
use crate::api::ApiError;
use crate::config::SecurityConfig;

/// Most names and addresses tracked at once; beyond, the oldest are dropped.
const MAX_TRACKED: usize = 100_000;
/// The longest delay added before answering a failed login.
const MAX_DELAY: Duration = Duration::from_secs(4);

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("wrong user name or password")]
    Wrong,
    #[error("too many failed logins: try again in {minutes} minutes")]
    Locked { minutes: u32 },
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::Wrong => ApiError::Unauthorized(e.to_string()),
            LoginError::Locked { .. } => ApiError::TooManyRequests(e.to_string()),
            LoginError::Api(e) => e,
        }
    }
}

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    since: Instant,
    locked_until: Option<Instant>,
}

/// Failed logins by account name and by client address, in memory.
pub(super) struct Throttle {
    window: Duration,
    max_per_name: u32,
    max_per_source: u32,
    by_key: Mutex<HashMap<String, Failures>>,
}

impl Throttle {
    pub(super) fn new(config: &SecurityConfig) -> Self {
        Self {
            window: Duration::from_secs(u64::from(config.lockout_minutes) * 60),
            max_per_name: config.login_max_failures.max(1),
            max_per_source: config.login_max_failures.max(1).saturating_mul(10),
            by_key: Mutex::new(HashMap::new()),
        }
    }

    fn locked(&self, key: &str, now: Instant) -> bool {
        self.by_key
            .lock()
            .ok()
            .and_then(|m| m.get(key).and_then(|f| f.locked_until))
            .is_some_and(|until| until > now)
    }

    /// Counts a failure; returns the failures in the window.
    fn fail(&self, key: String, max: u32, now: Instant) -> u32 {
        let Ok(mut map) = self.by_key.lock() else {
            return max;
        };
        if map.len() >= MAX_TRACKED && !map.contains_key(&key) {
            Self::prune_map(&mut map, self.window, now);
            if map.len() >= MAX_TRACKED {
                // Under a spray from very many names, keep the most recent.
                let oldest = map.iter().min_by_key(|(_, f)| f.since).map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    map.remove(&k);
                }
            }
        }
        let f = map.entry(key).or_insert(Failures {
            count: 0,
            since: now,
            locked_until: None,
        });
        if now.duration_since(f.since) > self.window {
            *f = Failures {
                count: 0,
                since: now,
                locked_until: None,
            };
        }
        f.count += 1;
        if f.count >= max {
            f.locked_until = Some(now + self.window);
        }
        f.count
    }

    fn clear(&self, key: &str) {
        if let Ok(mut map) = self.by_key.lock() {
            map.remove(key);
        }
    }

    fn prune_map(map: &mut HashMap<String, Failures>, window: Duration, now: Instant) {
        map.retain(|_, f| now.duration_since(f.since) <= window || f.locked_until.is_some_and(|u| u > now));
    }

    pub(super) fn prune(&self) {
        if let Ok(mut map) = self.by_key.lock() {
            Self::prune_map(&mut map, self.window, Instant::now());
        }
    }
}

/// The delay before answering the `n`th consecutive failure: none for the
/// first two (typos), then doubling from 250 ms, at most [`MAX_DELAY`].
pub fn failure_delay(n: u32) -> Duration {
    if n < 3 {
        return Duration::ZERO;
    }
    let exp = (n - 3).min(8);
    (Duration::from_millis(250) * 2u32.pow(exp)).min(MAX_DELAY)
}

fn name_key(name: &str) -> String {
    format!("name:{name}")
}

fn source_key(source: IpAddr) -> String {
    format!("addr:{source}")
}

/// What a new account is given.
pub struct NewAccount {
    pub name: String,
    pub display_name: String,
    pub role: Role,
    pub scope: ScopeGrant,
    /// `None`: a password is generated and returned once.
    pub password: Option<String>,
}

impl Security {
    /// Checks a password login; on success opens a session.
    pub async fn login(
        &self,
        name: &str,
        password: &str,
        source: Option<IpAddr>,
    ) -> Result<(String, Session, Account), LoginError> {
        let now = Instant::now();
        let name = name.trim().to_lowercase();
        let locked = |minutes| LoginError::Locked { minutes };
        if self.throttle.locked(&name_key(&name), now)
            || source.is_some_and(|s| self.throttle.locked(&source_key(s), now))
        {
            return Err(locked(self.config.lockout_minutes));
        }
        // Accounts created by the CLI while Vigie runs are found here.
        let account = match self.account(&name) {
            Some(a) => Some(a),
            None => self.store.account(&name).await.map_err(ApiError::from)?.map(|a| {
                self.cache_account(a.clone());
                std::sync::Arc::new(a)
            }),
        };
        if let Some(a) = &account
            && a.is_locked(Timestamp::now())
        {
            return Err(locked(self.config.lockout_minutes));
        }
        let hash = account
            .as_ref()
            .filter(|a| !a.disabled && a.origin == AccountOrigin::Local)
            .and_then(|a| a.password_hash.clone());
        let hashing = self.hashing.clone();
        let candidate = password.to_owned();
        // Unknown and disabled accounts verify against a decoy: same time either way.
        let ok = tokio::task::spawn_blocking(move || {
            candidate.len() <= password::MAX_BYTES && hashing.verify(&candidate, hash.as_deref())
        })
        .await
        .map_err(|e| ApiError::Internal(format!("password check: {e}")))?;

        let Some(account) = account.filter(|_| ok) else {
            let failures = self.throttle.fail(name_key(&name), self.throttle.max_per_name, now);
            if let Some(s) = source {
                self.throttle.fail(source_key(s), self.throttle.max_per_source, now);
            }
            if let Some(mut a) = self.account(&name).map(|a| (*a).clone()) {
                a.failed_logins = a.failed_logins.saturating_add(1);
                if a.failed_logins >= self.config.login_max_failures {
                    a.locked_until = Timestamp::now()
                        .checked_add(SignedDuration::from_mins(i64::from(self.config.lockout_minutes)))
                        .ok();
                    tracing::warn!(account = %a.name, "account locked after repeated failed logins");
                }
                self.store.put_account(&a).await.map_err(ApiError::from)?;
                self.cache_account(a);
            }
            tracing::info!(account = %name, source = ?source, failures, "failed login");
            tokio::time::sleep(failure_delay(failures)).await;
            return Err(LoginError::Wrong);
        };
        self.throttle.clear(&name_key(&name));
        let mut account = (*account).clone();
        account.failed_logins = 0;
        account.locked_until = None;
        account.last_login_at = Some(Timestamp::now());
        self.store.put_account(&account).await.map_err(ApiError::from)?;
        self.cache_account(account.clone());
        let (token, session) = self.open_session(&account, source).await?;
        tracing::info!(account = %account.name, source = ?source, "login");
        Ok((token, session, account))
    }

    /// Creates a local account; returns it and the password when generated.
    pub async fn create_account(&self, new: NewAccount) -> Result<(Account, Option<String>), ApiError> {
        validate_account_name(&new.name).map_err(|e| ApiError::BadRequestData(e.to_string()))?;
        if self.store.account(&new.name).await?.is_some() {
            return Err(ApiError::AlreadyExists(format!(
                "account '{}' already exists",
                new.name
            )));
        }
        let (password, generated) = match new.password {
            Some(p) => (p, false),
            None => (
                super::secrets::random_token().map_err(|e| ApiError::Internal(format!("random generator: {e}")))?,
                true,
            ),
        };
        password::check(&new.name, &password).map_err(|e| ApiError::BadRequestData(e.to_string()))?;
        let hash = self.hash_password(&password).await?;
        let now = Timestamp::now();
        let account = Account {
            name: new.name,
            display_name: new.display_name,
            role: new.role,
            scope: new.scope,
            origin: AccountOrigin::Local,
            password_hash: Some(hash),
            disabled: false,
            failed_logins: 0,
            locked_until: None,
            created_at: now,
            password_changed_at: Some(now),
            last_login_at: None,
            language: None,
        };
        self.store.put_account(&account).await?;
        self.cache_account(account.clone());
        tracing::info!(account = %account.name, role = %account.role, "account created");
        Ok((account, generated.then_some(password)))
    }

    async fn hash_password(&self, password: &str) -> Result<String, ApiError> {
        let hashing = self.hashing.clone();
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hashing.hash(&password))
            .await
            .map_err(|e| ApiError::Internal(format!("password hashing: {e}")))?
            .map_err(|e| ApiError::Internal(e.to_string()))
    }

    /// Every account, by name.
    pub async fn accounts(&self) -> Result<Vec<Account>, ApiError> {
        Ok(self.store.accounts().await?)
    }

    pub async fn account_named(&self, name: &str) -> Result<Account, ApiError> {
        self.store
            .account(name)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no account '{name}'")))
    }

    /// Replaces an account's record (role, scope, name, disabling,
    /// unlocking); sessions end when it is disabled.
    pub async fn update_account(&self, account: Account) -> Result<(), ApiError> {
        self.store.put_account(&account).await?;
        let disabled = account.disabled;
        let name = account.name.clone();
        if !account.is_locked(Timestamp::now()) {
            self.throttle.clear(&name_key(&name));
        }
        self.cache_account(account);
        if disabled {
            self.end_sessions_of(&name).await?;
        }
        Ok(())
    }

    /// Sets a new password (checked against the rules) and ends the
    /// account's sessions.
    pub async fn set_password(&self, name: &str, password: &str) -> Result<(), ApiError> {
        let mut account = self.account_named(name).await?;
        if account.origin != AccountOrigin::Local {
            return Err(ApiError::BadRequestData(format!(
                "account '{name}' logs in by single sign-on: its password is set by the identity provider"
            )));
        }
        password::check(name, password).map_err(|e| ApiError::BadRequestData(e.to_string()))?;
        account.password_hash = Some(self.hash_password(password).await?);
        account.password_changed_at = Some(Timestamp::now());
        account.failed_logins = 0;
        account.locked_until = None;
        self.store.put_account(&account).await?;
        self.cache_account(account);
        self.throttle.clear(&name_key(name));
        self.end_sessions_of(name).await?;
        Ok(())
    }

    /// Whether a password is the account's (for a self-service change).
    pub async fn password_matches(&self, name: &str, password: &str) -> Result<bool, ApiError> {
        let hash = self.account(name).and_then(|a| a.password_hash.clone());
        let hashing = self.hashing.clone();
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hashing.verify(&password, hash.as_deref()))
            .await
            .map_err(|e| ApiError::Internal(format!("password check: {e}")))
    }

    pub async fn delete_account(&self, name: &str) -> Result<Account, ApiError> {
        let account = self.account_named(name).await?;
        let _writing = self.writes.lock().await;
        self.store.delete_account(name).await?;
        self.forget_account(name);
        if let Ok(mut map) = self.sessions.write() {
            map.retain(|_, l| l.session_account() != name);
        }
        Ok(account)
    }

    /// Finds or creates the account of a single-sign-on user, with the role
    /// and scope the provider's claims give (refreshed at each login), and
    /// opens a session.
    pub async fn single_sign_on(
        &self,
        name: &str,
        display_name: &str,
        role: Role,
        scope: ScopeGrant,
        source: Option<IpAddr>,
    ) -> Result<(String, Session, Account), ApiError> {
        validate_account_name(name).map_err(|e| ApiError::BadRequestData(e.to_string()))?;
        let now = Timestamp::now();
        let mut account = match self.store.account(name).await? {
            Some(a) if a.origin == AccountOrigin::Local => {
                return Err(ApiError::Forbidden(format!(
                    "'{name}' is a local account: it cannot be taken over by single sign-on"
                )));
            }
            Some(a) => a,
            None => Account {
                name: name.to_owned(),
                display_name: String::new(),
                role,
                scope: scope.clone(),
                origin: AccountOrigin::SingleSignOn,
                password_hash: None,
                disabled: false,
                failed_logins: 0,
                locked_until: None,
                created_at: now,
                password_changed_at: None,
                last_login_at: None,
                language: None,
            },
        };
        if account.disabled {
            return Err(ApiError::Forbidden(format!("account '{name}' is disabled")));
        }
        account.display_name = display_name.to_owned();
        account.role = role;
        account.scope = scope;
        account.last_login_at = Some(now);
        self.store.put_account(&account).await?;
        self.cache_account(account.clone());
        let (token, session) = self.open_session(&account, source).await?;
        tracing::info!(account = %account.name, role = %account.role, "single sign-on login");
        Ok((token, session, account))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_slow_down_progressively() {
        assert_eq!(failure_delay(1), Duration::ZERO);
        assert_eq!(failure_delay(2), Duration::ZERO);
        assert_eq!(failure_delay(3), Duration::from_millis(250));
        assert_eq!(failure_delay(4), Duration::from_millis(500));
        assert_eq!(failure_delay(6), Duration::from_secs(2));
        assert_eq!(failure_delay(50), MAX_DELAY);
    }

    #[test]
    fn the_throttle_locks_after_the_maximum_and_forgets_after_the_window() {
        let t = Throttle::new(&SecurityConfig {
            login_max_failures: 3,
            lockout_minutes: 1,
            ..SecurityConfig::default()
        });
        let now = Instant::now();
        for n in 1..=2 {
            assert_eq!(t.fail("name:bob".into(), 3, now), n);
            assert!(!t.locked("name:bob", now));
        }
        t.fail("name:bob".into(), 3, now);
        assert!(t.locked("name:bob", now));
        assert!(!t.locked("name:alice", now));
        assert!(!t.locked("name:bob", now + Duration::from_secs(61)));
        t.clear("name:bob");
        assert!(!t.locked("name:bob", now));
    }
}

//! The people and programs that use Vigie: user accounts, API keys for
//! integrators, service tokens, and console sessions. Plain records: hashing,
//! storage and checks of secrets happen in the server.

use serde::{Deserialize, Serialize};

use crate::Timestamp;
use crate::access::{Role, ScopeGrant};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a valid account name: use 1 to 64 lowercase letters, digits, '.', '-', '_' or '@'")]
pub struct InvalidAccountName(pub String);

/// Checks an account name: short, lowercase, safe in logs and URLs.
pub fn validate_account_name(name: &str) -> Result<(), InvalidAccountName> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(InvalidAccountName(name.to_owned()))
    }
}

/// Where an account comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccountOrigin {
    /// Created in Vigie, logs in with a password.
    #[default]
    Local,
    /// Created at first single sign-on; role and scope come from the provider's claims.
    SingleSignOn,
}

/// A person's account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    #[serde(default)]
    pub display_name: String,
    pub role: Role,
    pub scope: ScopeGrant,
    #[serde(default)]
    pub origin: AccountOrigin,
    /// The argon2id hash in PHC format; none for single-sign-on accounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    #[serde(default)]
    pub disabled: bool,
    /// Consecutive failed logins since the last success.
    #[serde(default)]
    pub failed_logins: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<Timestamp>,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_changed_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_login_at: Option<Timestamp>,
    /// The console's language for this person; none follows the browser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<Language>,
}

/// A language of the console: French first (its users are French municipal
/// agents), English beside it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    #[default]
    Fr,
    En,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Fr => "fr",
            Language::En => "en",
        }
    }

    /// The other one, for a one-click switch.
    pub fn other(self) -> Self {
        match self {
            Language::Fr => Language::En,
            Language::En => Language::Fr,
        }
    }

    /// The first supported language of an `Accept-Language` header, by
    /// order of appearance (browsers list by preference), else French.
    pub fn from_accept_language(header: &str) -> Self {
        header
            .split(',')
            .filter_map(|part| part.split(';').next())
            .find_map(|tag| tag.trim().get(..2).and_then(|p| p.to_ascii_lowercase().parse().ok()))
            .unwrap_or_default()
    }
}

impl std::str::FromStr for Language {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fr" => Ok(Language::Fr),
            "en" => Ok(Language::En),
            other => Err(format!("'{other}' is not a console language: expected 'fr' or 'en'")),
        }
    }
}

impl Account {
    pub fn is_locked(&self, now: Timestamp) -> bool {
        self.locked_until.is_some_and(|t| t > now)
    }
}

/// What an API credential is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialKind {
    /// An integrator's or a startup's key: rate limited.
    ApiKey,
    /// One of the city's own services (GIS, BI, a second Vigie): not rate limited.
    ServiceToken,
}

impl CredentialKind {
    /// The prefix of the token's text, so leaked tokens are recognisable.
    pub fn prefix(self) -> &'static str {
        match self {
            CredentialKind::ApiKey => "vgk",
            CredentialKind::ServiceToken => "vgs",
        }
    }
}

/// An API key or a service token. The secret itself is shown once at
/// creation; only its hash is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiCredential {
    /// The public part of the token, e.g. `k7f3a9c2e1d04b58`.
    pub id: String,
    pub kind: CredentialKind,
    /// What it is for, e.g. "Open data portal" or "Startup X mobility app".
    pub name: String,
    pub role: Role,
    pub scope: ScopeGrant,
    /// SHA-256 of the secret, hex. The secret has 256 random bits, so a fast
    /// hash is safe here (no dictionary to try) and keeps each request cheap.
    pub secret_hash: String,
    /// Requests per minute (API keys); none uses the configured default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    pub created_by: String,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<Timestamp>,
}

impl ApiCredential {
    /// Whether the credential may be used at `now`.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| t > now)
    }
}

/// A console session. The cookie carries a random token; only its hash is
/// stored, so a copy of the database opens no session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// SHA-256 of the cookie's token, hex.
    pub token_hash: String,
    pub account: String,
    /// The anti-CSRF token forms and scripts send back with each change.
    pub csrf_token: String,
    pub created_at: Timestamp,
    pub last_seen_at: Timestamp,
    /// The absolute end, whatever the activity.
    pub expires_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Opened by single sign-on rather than a password.
    #[serde(default)]
    pub single_sign_on: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names() {
        for ok in ["alice", "j.dupont", "agent-12", "m_martin@dijon"] {
            assert!(validate_account_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Alice", "a b", "x/y", &"a".repeat(65)] {
            let err = validate_account_name(bad).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn credentials_expire_and_revoke() {
        let now: Timestamp = "2026-11-25T12:00:00Z".parse().unwrap();
        let mut c = ApiCredential {
            id: "k1".into(),
            kind: CredentialKind::ApiKey,
            name: "test".into(),
            role: Role::Auditor,
            scope: ScopeGrant::everywhere(),
            secret_hash: String::new(),
            requests_per_minute: None,
            created_by: "admin".into(),
            created_at: now,
            expires_at: Some("2026-12-01T00:00:00Z".parse().unwrap()),
            revoked_at: None,
            last_used_at: None,
        };
        assert!(c.is_active(now));
        assert!(!c.is_active("2026-12-02T00:00:00Z".parse().unwrap()));
        c.revoked_at = Some(now);
        assert!(!c.is_active(now));
    }
}

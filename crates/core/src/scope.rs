//! Where an entity belongs: a commune and a business line. Every read and write
//! is filtered by the caller's scope, so every entity Vigie produces carries one.
//! In NGSI-LD it travels as the entity's `scope`, `/{commune}/{business-line}`,
//! so `scopeQ=/chenove/#` or `scopeQ=/+/lighting` select naturally.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("'{0}' is not a valid slug: use 1 to 64 lowercase letters, digits or '-'")]
    InvalidSlug(String),
    #[error("'{0}' is not a scope: expected '/<commune>/<business-line>'")]
    InvalidScope(String),
}

fn validate_slug(s: &str) -> Result<(), ScopeError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ScopeError::InvalidSlug(s.to_owned()))
    }
}

macro_rules! slug_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Result<Self, ScopeError> {
                let s = s.into();
                validate_slug(&s)?;
                Ok(Self(s))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = ScopeError;
            fn try_from(s: String) -> Result<Self, ScopeError> {
                Self::new(s)
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
        impl FromStr for $name {
            type Err = ScopeError;
            fn from_str(s: &str) -> Result<Self, ScopeError> {
                Self::new(s)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

slug_type!(
    /// A commune's slug, e.g. `dijon`, `chenove`, `saint-apollinaire`.
    CommuneId
);
slug_type!(
    /// A business line's slug. Cities define their own; the usual ones are
    /// the associated constants' names (see [`BusinessLine::WELL_KNOWN`]).
    BusinessLine
);

impl BusinessLine {
    /// The business lines of Dijon's control post, in the order the console lists them.
    pub const WELL_KNOWN: [&'static str; 12] = [
        "lighting",
        "traffic",
        "cctv",
        "access",
        "fleet",
        "roads",
        "waste",
        "water",
        "parking",
        "environment",
        "buildings",
        "green-spaces",
    ];
}

/// An entity's place in the organisation: one commune, one business line.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Scope {
    pub commune: CommuneId,
    pub business_line: BusinessLine,
}

impl Scope {
    pub fn new(commune: CommuneId, business_line: BusinessLine) -> Self {
        Self { commune, business_line }
    }

    /// The NGSI-LD scope string, `/{commune}/{business-line}`.
    pub fn to_ngsi(&self) -> String {
        format!("/{}/{}", self.commune, self.business_line)
    }

    /// Parses `/{commune}/{business-line}`.
    pub fn from_ngsi(s: &str) -> Result<Self, ScopeError> {
        let invalid = || ScopeError::InvalidScope(s.to_owned());
        let rest = s.strip_prefix('/').ok_or_else(invalid)?;
        let (commune, line) = rest.split_once('/').ok_or_else(invalid)?;
        Ok(Self {
            commune: CommuneId::new(commune).map_err(|_| invalid())?,
            business_line: BusinessLine::new(line).map_err(|_| invalid())?,
        })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_ngsi())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_round_trips_through_ngsi() {
        let s = Scope::from_ngsi("/saint-apollinaire/lighting").unwrap();
        assert_eq!(s.commune.as_str(), "saint-apollinaire");
        assert_eq!(s.business_line.as_str(), "lighting");
        assert_eq!(s.to_ngsi(), "/saint-apollinaire/lighting");
    }

    #[test]
    fn bad_scopes_are_named() {
        for bad in ["", "/", "dijon/lighting", "/Dijon/lighting", "/dijon", "/dijon/"] {
            let err = Scope::from_ngsi(bad).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }
}

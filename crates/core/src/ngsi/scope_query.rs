//! NGSI-LD scope queries (`scopeQ`, ETSI GS CIM 009 §4.19): which entities a
//! request reaches by their `scope`, `/{commune}/{business-line}` in Vigie.
//!
//! ```text
//! scopeQ  = and *("," and)          ; ',' is OR, ';' is AND and binds tighter
//! and     = factor *(";" factor)
//! factor  = "(" scopeQ ")" / pattern
//! pattern = "/#" / 1*("/" level) ["/#"]
//! level   = name / "+"              ; '+' is any one level
//! ```

use std::fmt;

use super::query::{MAX_DEPTH, MAX_QUERY_LEN, MAX_TERMS, QueryError, syntax};
use crate::{Entity, Scope};

/// A parsed `scopeQ`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeQuery {
    root: ScopeExpr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeExpr {
    And(Vec<ScopeExpr>),
    Or(Vec<ScopeExpr>),
    Pattern(ScopePattern),
}

/// One pattern, e.g. `/dijon/+` or `/dijon/#`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopePattern {
    pub levels: Vec<Level>,
    /// Ends in `/#`: the scope itself and everything below it.
    pub descendants: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Level {
    Name(String),
    /// `+`: any one level.
    Any,
}

impl ScopeQuery {
    /// Parses the text of a `scopeQ` parameter (already percent-decoded).
    pub fn parse(text: &str) -> Result<Self, QueryError> {
        if text.len() > MAX_QUERY_LEN {
            return Err(QueryError::TooComplex {
                what: "query length in bytes",
                max: MAX_QUERY_LEN,
            });
        }
        let mut p = Parser {
            src: text,
            pos: 0,
            terms: 0,
            depth: 0,
        };
        let root = p.or()?;
        match p.src[p.pos..].chars().next() {
            None => Ok(Self { root }),
            Some(')') => Err(syntax(p.pos, "unbalanced ')': no '(' opened it")),
            Some(_) => Err(syntax(p.pos, "expected ';', ',' or the end of the scope query")),
        }
    }

    pub fn root(&self) -> &ScopeExpr {
        &self.root
    }

    /// Whether the entity's scope is selected; an entity without a scope never is.
    pub fn matches(&self, entity: &Entity) -> bool {
        entity.scope.as_ref().is_some_and(|s| self.matches_scope(s))
    }

    pub fn matches_scope(&self, scope: &Scope) -> bool {
        let levels = [scope.commune.as_str(), scope.business_line.as_str()];
        self.root.matches(&levels)
    }
}

impl ScopeExpr {
    fn matches(&self, levels: &[&str]) -> bool {
        match self {
            Self::And(items) => items.iter().all(|e| e.matches(levels)),
            Self::Or(items) => items.iter().any(|e| e.matches(levels)),
            Self::Pattern(p) => p.matches(levels),
        }
    }

    fn join(parts: Vec<ScopeExpr>, and: bool) -> ScopeExpr {
        let mut flat = Vec::with_capacity(parts.len());
        for part in parts {
            match (part, and) {
                (Self::And(inner), true) | (Self::Or(inner), false) => flat.extend(inner),
                (other, _) => flat.push(other),
            }
        }
        if flat.len() == 1 {
            flat.pop().unwrap_or(Self::And(Vec::new()))
        } else if and {
            Self::And(flat)
        } else {
            Self::Or(flat)
        }
    }
}

impl ScopePattern {
    fn matches(&self, levels: &[&str]) -> bool {
        let prefix_ok = levels.len() >= self.levels.len()
            && self.levels.iter().zip(levels).all(|(p, l)| match p {
                Level::Any => true,
                Level::Name(n) => n == l,
            });
        prefix_ok && (self.descendants || levels.len() == self.levels.len())
    }
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    terms: usize,
    depth: usize,
}

impl Parser<'_> {
    fn eat(&mut self, c: char) -> bool {
        if self.src[self.pos..].starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<ScopeExpr, QueryError> {
        let mut parts = vec![self.and()?];
        while self.eat(',') {
            parts.push(self.and()?);
        }
        Ok(ScopeExpr::join(parts, false))
    }

    fn and(&mut self) -> Result<ScopeExpr, QueryError> {
        let mut parts = vec![self.factor()?];
        while self.eat(';') {
            parts.push(self.factor()?);
        }
        Ok(ScopeExpr::join(parts, true))
    }

    fn factor(&mut self) -> Result<ScopeExpr, QueryError> {
        let open = self.pos;
        if !self.eat('(') {
            return self.pattern().map(ScopeExpr::Pattern);
        }
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(QueryError::TooComplex {
                what: "parenthesis nesting depth",
                max: MAX_DEPTH,
            });
        }
        let inner = self.or()?;
        if !self.eat(')') {
            return Err(syntax(
                self.pos,
                format!("expected ')' to close the '(' at {open}, or ';' or ','"),
            ));
        }
        self.depth -= 1;
        Ok(inner)
    }

    fn pattern(&mut self) -> Result<ScopePattern, QueryError> {
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(QueryError::TooComplex {
                what: "number of terms",
                max: MAX_TERMS,
            });
        }
        if !self.eat('/') {
            return Err(syntax(
                self.pos,
                "expected a scope starting with '/' (e.g. /dijon/lighting) or '('",
            ));
        }
        let mut pattern = ScopePattern {
            levels: Vec::new(),
            descendants: false,
        };
        loop {
            let rest = &self.src[self.pos..];
            if self.eat('#') {
                pattern.descendants = true;
                if self.src[self.pos..].starts_with('/') {
                    return Err(syntax(self.pos, "'#' must be the last level of a scope"));
                }
                return Ok(pattern);
            }
            if self.eat('+') {
                pattern.levels.push(Level::Any);
            } else {
                let len = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
                    .unwrap_or(rest.len());
                if len == 0 {
                    return Err(syntax(self.pos, "expected a scope level name, '+' or '#' after '/'"));
                }
                pattern.levels.push(Level::Name(rest[..len].to_owned()));
                self.pos += len;
            }
            if !self.eat('/') {
                return Ok(pattern);
            }
        }
    }
}

impl fmt::Display for ScopeQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.root.fmt(f)
    }
}

impl fmt::Display for ScopeExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pattern(p) => p.fmt(f),
            Self::And(items) => items.iter().enumerate().try_for_each(|(i, e)| {
                let sep = if i > 0 { ";" } else { "" };
                if matches!(e, Self::Or(_)) {
                    write!(f, "{sep}({e})")
                } else {
                    write!(f, "{sep}{e}")
                }
            }),
            Self::Or(items) => items.iter().enumerate().try_for_each(|(i, e)| {
                let sep = if i > 0 { "," } else { "" };
                write!(f, "{sep}{e}")
            }),
        }
    }
}

impl fmt::Display for ScopePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for level in &self.levels {
            match level {
                Level::Name(n) => write!(f, "/{n}")?,
                Level::Any => f.write_str("/+")?,
            }
        }
        if self.descendants {
            f.write_str("/#")?;
        }
        Ok(())
    }
}

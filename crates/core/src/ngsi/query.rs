//! The NGSI-LD query language (`q`, ETSI GS CIM 009 §4.9): a parser that
//! bounds its own cost, a matcher over [`Entity`], and a normalized printed
//! form so that a query can be logged, stored in a subscription and parsed
//! back unchanged.
//!
//! Grammar accepted (whitespace between tokens is ignored):
//!
//! ```text
//! query    = and *("|" and)                 ; OR binds looser than AND
//! and      = factor *(";" factor)
//! factor   = "(" query ")" / term
//! term     = path / "!" path / path op value / path ("=="/"!=") operand
//!          / path ("~="/"!~=") pattern
//! path     = name *("." name / "[" name *("." name) "]")
//! operand  = value / value ".." value / value 1*("," value)
//! value    = number / "\"string\"" / true / false / DateTime / Date / Time / bare-word
//! ```

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use regex::{Regex, RegexBuilder};
use serde_json::Value;

use crate::entity::format_timestamp;
use crate::{AttributeKind, Entity, Timestamp};

/// Longest query text accepted, in bytes.
pub const MAX_QUERY_LEN: usize = 4096;
/// Most terms (comparisons, existence tests) in one query.
pub const MAX_TERMS: usize = 64;
/// Deepest parenthesis nesting.
pub const MAX_DEPTH: usize = 16;
/// Longest regular expression accepted, in bytes.
pub const MAX_PATTERN_LEN: usize = 1024;
/// Compiled size allowed to one regular expression: enough for any sensible
/// filter, small enough that a hostile one cannot eat the server's memory.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Why a `q` (or `scopeQ`) text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The text breaks the grammar; `position` is the 0-based byte offset.
    #[error("{message} at {position}")]
    Syntax { position: usize, message: String },
    /// The text is well formed but exceeds one of the cost bounds.
    #[error("query too complex: {what} exceeds the maximum of {max}")]
    TooComplex { what: &'static str, max: usize },
}

pub(crate) fn syntax(position: usize, message: impl Into<String>) -> QueryError {
    QueryError::Syntax {
        position,
        message: message.into(),
    }
}

/// Attribute members that a dotted path names instead of descending into the value.
const METADATA: [&str; 5] = ["observedAt", "unitCode", "datasetId", "createdAt", "modifiedAt"];

/// A parsed `q` query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    root: Expr,
}

/// A boolean combination of terms. Built flattened (no `And` directly inside
/// an `And`, no single-child group) so that the printed form parses back equal.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Term(Term),
}

/// One test on one attribute path.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    pub path: AttrPath,
    pub test: Test,
}

/// What a term checks on the values its path reaches.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// `attr`: the path reaches something.
    Exists,
    /// `!attr`: the path reaches nothing.
    Absent,
    /// `attr>v`, `attr>=v`, `attr<v`, `attr<=v`.
    Compare(Order, Literal),
    /// `attr==operand`.
    Equals(Operand),
    /// `attr!=operand`: the path reaches something, and none of it equals.
    NotEquals(Operand),
    /// `attr~=pattern`.
    Matches(Pattern),
    /// `attr!~=pattern`: the path reaches something, and none of it matches.
    NotMatches(Pattern),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Greater,
    GreaterOrEqual,
    Less,
    LessOrEqual,
}

impl Order {
    fn accepts(self, value_vs_literal: Ordering) -> bool {
        match self {
            Self::Greater => value_vs_literal == Ordering::Greater,
            Self::GreaterOrEqual => value_vs_literal != Ordering::Less,
            Self::Less => value_vs_literal == Ordering::Less,
            Self::LessOrEqual => value_vs_literal != Ordering::Greater,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Self::Greater => ">",
            Self::GreaterOrEqual => ">=",
            Self::Less => "<",
            Self::LessOrEqual => "<=",
        }
    }
}

/// The right-hand side of `==` / `!=`.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    One(Literal),
    /// Inclusive at both ends.
    Range(Literal, Literal),
    /// Any of the values (none of them for `!=`).
    AnyOf(Vec<Literal>),
}

/// A value written in a query. Times are compared as times, whatever the
/// attribute's text looks like.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Number(f64),
    Text(String),
    Bool(bool),
    DateTime(Timestamp),
    Date(Date),
    Time(Time),
}

/// A compiled regular expression, compared by its source text.
#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    regex: Regex,
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Pattern {
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// Where a term looks: an attribute, then either one of its metadata members
/// or a path into its (compound) value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    pub attribute: String,
    /// `observedAt`, `unitCode`, `datasetId`, `createdAt` or `modifiedAt`.
    pub metadata: Option<String>,
    /// Keys into the value (`attr.a.b` or `attr[a.b]`).
    pub value_path: Vec<String>,
}

impl Query {
    /// Parses the text of a `q` parameter (already percent-decoded).
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
        p.skip_ws();
        match p.peek() {
            None => Ok(Self { root }),
            Some(')') => Err(syntax(p.pos, "unbalanced ')': no '(' opened it")),
            Some(_) => Err(syntax(p.pos, "expected ';', '|' or the end of the query")),
        }
    }

    pub fn root(&self) -> &Expr {
        &self.root
    }

    /// Whether the entity satisfies the query.
    pub fn matches(&self, entity: &Entity) -> bool {
        self.root.matches(entity)
    }
}

impl Expr {
    pub fn matches(&self, entity: &Entity) -> bool {
        match self {
            Self::And(items) => items.iter().all(|e| e.matches(entity)),
            Self::Or(items) => items.iter().any(|e| e.matches(entity)),
            Self::Term(t) => t.matches(entity),
        }
    }

    /// Combines parts, merging nested groups of the same kind.
    fn join(parts: Vec<Expr>, and: bool) -> Expr {
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

// ---------------------------------------------------------------- parsing

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    terms: usize,
    depth: usize,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '@')
}

/// Characters of an unquoted value: numbers, dates, times, URIs, words.
fn is_bare_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/' | '#' | '@' | '+' | '%' | '~')
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Expr, QueryError> {
        let mut parts = vec![self.and()?];
        loop {
            self.skip_ws();
            if !self.eat("|") {
                return Ok(Expr::join(parts, false));
            }
            parts.push(self.and()?);
        }
    }

    fn and(&mut self) -> Result<Expr, QueryError> {
        let mut parts = vec![self.factor()?];
        loop {
            self.skip_ws();
            if !self.eat(";") {
                return Ok(Expr::join(parts, true));
            }
            parts.push(self.factor()?);
        }
    }

    fn factor(&mut self) -> Result<Expr, QueryError> {
        self.skip_ws();
        if !self.rest().starts_with('(') {
            return Ok(Expr::Term(self.term()?));
        }
        let open = self.pos;
        self.pos += 1;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(QueryError::TooComplex {
                what: "parenthesis nesting depth",
                max: MAX_DEPTH,
            });
        }
        let inner = self.or()?;
        self.skip_ws();
        if !self.eat(")") {
            return Err(syntax(
                self.pos,
                format!("expected ')' to close the '(' at {open}, or ';' or '|'"),
            ));
        }
        self.depth -= 1;
        Ok(inner)
    }

    fn term(&mut self) -> Result<Term, QueryError> {
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(QueryError::TooComplex {
                what: "number of terms",
                max: MAX_TERMS,
            });
        }
        let start = self.pos;
        let negated = self.eat("!");
        let path = self.path()?;
        let written = &self.src[start..self.pos];
        self.skip_ws();
        let at_end_of_term = matches!(self.peek(), None | Some(';' | '|' | ')'));
        if negated {
            if !at_end_of_term {
                return Err(syntax(
                    self.pos,
                    format!(
                        "'{written}' tests that the attribute is absent and takes no operator; expected ';', '|', ')' or the end"
                    ),
                ));
            }
            return Ok(Term {
                path,
                test: Test::Absent,
            });
        }
        if at_end_of_term {
            return Ok(Term {
                path,
                test: Test::Exists,
            });
        }
        let op_at = self.pos;
        let test = if self.eat("==") {
            Test::Equals(self.operand("==")?)
        } else if self.eat("!=") {
            Test::NotEquals(self.operand("!=")?)
        } else if self.eat("!~=") {
            Test::NotMatches(self.pattern()?)
        } else if self.eat("~=") {
            Test::Matches(self.pattern()?)
        } else {
            let order = if self.eat(">=") {
                Order::GreaterOrEqual
            } else if self.eat(">") {
                Order::Greater
            } else if self.eat("<=") {
                Order::LessOrEqual
            } else if self.eat("<") {
                Order::Less
            } else {
                return Err(syntax(op_at, format!("expected an operator after '{written}'")));
            };
            let value_at = self.pos;
            let literal = self.literal(order.symbol())?;
            if matches!(literal, Literal::Bool(_)) {
                return Err(syntax(value_at, "true and false only go with '==' or '!='"));
            }
            self.skip_ws();
            if self.rest().starts_with("..") || self.rest().starts_with(',') {
                return Err(syntax(self.pos, "a range or a list only goes with '==' or '!='"));
            }
            Test::Compare(order, literal)
        };
        self.skip_ws();
        if !matches!(self.peek(), None | Some(';' | '|' | ')')) {
            return Err(syntax(
                self.pos,
                "expected ';', '|', ')' or the end of the query after the value",
            ));
        }
        Ok(Term { path, test })
    }

    fn name(&mut self, after: &str) -> Result<String, QueryError> {
        let rest = self.rest();
        let len = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
        if len == 0 {
            return Err(syntax(self.pos, format!("expected an attribute name{after}")));
        }
        self.pos += len;
        Ok(rest[..len].to_owned())
    }

    fn path(&mut self) -> Result<AttrPath, QueryError> {
        self.skip_ws();
        let attribute = self.name(" or '('")?;
        let mut path = AttrPath {
            attribute,
            metadata: None,
            value_path: Vec::new(),
        };
        loop {
            if self.eat(".") {
                let at = self.pos;
                let segment = self.name(" after '.'")?;
                let first = path.metadata.is_none() && path.value_path.is_empty();
                if first && METADATA.contains(&segment.as_str()) {
                    path.metadata = Some(segment);
                } else if let Some(member) = &path.metadata {
                    return Err(syntax(
                        at,
                        format!("'{member}' is an attribute's metadata and has no members"),
                    ));
                } else {
                    path.value_path.push(segment);
                }
            } else if self.rest().starts_with('[') {
                if let Some(member) = &path.metadata {
                    return Err(syntax(
                        self.pos,
                        format!("'{member}' is an attribute's metadata and has no members"),
                    ));
                }
                self.pos += 1;
                path.value_path.push(self.name(" after '['")?);
                while self.eat(".") {
                    path.value_path.push(self.name(" after '.'")?);
                }
                if !self.eat("]") {
                    return Err(syntax(self.pos, "expected ']' or '.'"));
                }
            } else {
                return Ok(path);
            }
        }
    }

    fn operand(&mut self, op: &str) -> Result<Operand, QueryError> {
        let first_at = self.pos;
        let first = self.literal(op)?;
        self.skip_ws();
        if self.eat("..") {
            let second_at = self.pos;
            let second = self.literal("..")?;
            if matches!(first, Literal::Bool(_)) {
                return Err(syntax(
                    first_at,
                    "a range needs numbers, strings or times, not true/false",
                ));
            }
            if std::mem::discriminant(&first) != std::mem::discriminant(&second) {
                return Err(syntax(
                    second_at,
                    format!(
                        "a range's bounds must be of one kind, here {} and {}",
                        first.kind(),
                        second.kind()
                    ),
                ));
            }
            return Ok(Operand::Range(first, second));
        }
        if !self.rest().starts_with(',') {
            return Ok(Operand::One(first));
        }
        let mut values = vec![first];
        while self.eat(",") {
            values.push(self.literal(",")?);
            self.skip_ws();
        }
        Ok(Operand::AnyOf(values))
    }

    fn literal(&mut self, after: &str) -> Result<Literal, QueryError> {
        self.skip_ws();
        let start = self.pos;
        if self.rest().starts_with('"') {
            return self.quoted().map(Literal::Text);
        }
        let rest = self.rest();
        let mut len = rest.find(|c: char| !is_bare_char(c)).unwrap_or(rest.len());
        if let Some(dots) = rest[..len].find("..") {
            len = dots;
        }
        if len == 0 {
            return Err(syntax(
                start,
                format!("expected a value after '{after}' (a number, a \"string\", true, false or a date)"),
            ));
        }
        self.pos += len;
        classify(&rest[..len]).map_err(|message| syntax(start, message))
    }

    /// A `"..."` string. `\"` and `\\` are escapes; any other backslash is
    /// kept as written, so regular expressions read naturally (`"\d+"`).
    fn quoted(&mut self) -> Result<String, QueryError> {
        let open = self.pos;
        let mut out = String::new();
        let mut chars = self.rest().char_indices().skip(1);
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos = open + i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, e @ ('"' | '\\'))) => out.push(e),
                    Some((_, other)) => {
                        out.push('\\');
                        out.push(other);
                    }
                    None => break,
                },
                other => out.push(other),
            }
        }
        Err(syntax(open, "unterminated string: expected a closing '\"'"))
    }

    fn pattern(&mut self) -> Result<Pattern, QueryError> {
        self.skip_ws();
        let start = self.pos;
        let source = if self.rest().starts_with('"') {
            self.quoted()?
        } else {
            let len = unquoted_pattern_len(self.rest());
            self.pos += len;
            self.src[start..self.pos].to_owned()
        };
        if source.is_empty() {
            return Err(syntax(start, "expected a regular expression"));
        }
        if source.len() > MAX_PATTERN_LEN {
            return Err(QueryError::TooComplex {
                what: "regular expression length in bytes",
                max: MAX_PATTERN_LEN,
            });
        }
        let regex = RegexBuilder::new(&source)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .nest_limit(64)
            .build()
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(_) => QueryError::TooComplex {
                    what: "compiled regular expression size in bytes",
                    max: REGEX_SIZE_LIMIT,
                },
                other => {
                    let detail = other.to_string();
                    let last = detail.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
                    syntax(start, format!("invalid regular expression: {}", last.trim()))
                }
            })?;
        Ok(Pattern { source, regex })
    }
}

/// How far an unquoted regular expression reaches: up to a `;`, `|` or `)`
/// outside the pattern's own groups and classes, so `(?i)lamp` and `(a|b)`
/// need no quotes.
fn unquoted_pattern_len(s: &str) -> usize {
    let mut depth = 0usize;
    let mut in_class = false;
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '[' => in_class = true,
            ']' => in_class = false,
            _ if in_class => {}
            '(' => depth += 1,
            ')' if depth == 0 => return i,
            ')' => depth -= 1,
            ';' | '|' if depth == 0 => return i,
            _ => {}
        }
    }
    s.len()
}

fn is_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let from = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > from
    };
    if !digits(&mut i) {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}

fn looks_like_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
}

fn looks_like_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 5 && b[..2].iter().all(u8::is_ascii_digit) && b[2] == b':' && b[3..5].iter().all(u8::is_ascii_digit)
}

/// Reads an unquoted value: a number, a boolean, a time, or else a word
/// (URIs are usually written bare).
fn classify(token: &str) -> Result<Literal, String> {
    match token {
        "true" => return Ok(Literal::Bool(true)),
        "false" => return Ok(Literal::Bool(false)),
        _ => {}
    }
    if is_number(token) {
        return match token.parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(Literal::Number(n)),
            _ => Err(format!("the number {token} is out of range")),
        };
    }
    if looks_like_date(token) {
        if token.len() == 10 {
            return token
                .parse::<Date>()
                .map(Literal::Date)
                .map_err(|e| format!("invalid date '{token}': {e}"));
        }
        return parse_instant(token)
            .map(Literal::DateTime)
            .ok_or_else(|| format!("invalid date-time '{token}' (expected e.g. 2026-11-22T18:00:00Z)"));
    }
    if looks_like_time(token) {
        return token
            .parse::<Time>()
            .map(Literal::Time)
            .map_err(|e| format!("invalid time '{token}': {e}"));
    }
    Ok(Literal::Text(token.to_owned()))
}

/// An instant from RFC 3339 text; without an offset the time is taken as UTC,
/// as NGSI-LD's DateTime is.
fn parse_instant(s: &str) -> Option<Timestamp> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Some(t);
    }
    let civil = s.parse::<DateTime>().ok()?;
    TimeZone::UTC.to_timestamp(civil).ok()
}

impl Literal {
    fn kind(&self) -> &'static str {
        match self {
            Self::Number(_) => "a number",
            Self::Text(_) => "a string",
            Self::Bool(_) => "a boolean",
            Self::DateTime(_) => "a date-time",
            Self::Date(_) => "a date",
            Self::Time(_) => "a time",
        }
    }

    /// How `value` orders against this literal; `None` when they are of
    /// different types and cannot be compared.
    fn compare(&self, value: &Value) -> Option<Ordering> {
        match (self, value) {
            (Self::Number(n), Value::Number(v)) => v.as_f64()?.partial_cmp(n),
            (Self::Text(t), Value::String(v)) => Some(v.as_str().cmp(t.as_str())),
            (Self::Bool(b), Value::Bool(v)) => Some(v.cmp(b)),
            (Self::DateTime(t), Value::String(v)) => {
                let v = if looks_like_date(v) && v.len() == 10 {
                    TimeZone::UTC
                        .to_timestamp(v.parse::<Date>().ok()?.to_datetime(Time::midnight()))
                        .ok()?
                } else {
                    parse_instant(v)?
                };
                Some(v.cmp(t))
            }
            (Self::Date(d), Value::String(v)) => {
                let v = if v.len() == 10 {
                    v.parse::<Date>().ok()?
                } else {
                    TimeZone::UTC.to_datetime(parse_instant(v)?).date()
                };
                Some(v.cmp(d))
            }
            (Self::Time(t), Value::String(v)) => {
                let v = if looks_like_time(v) {
                    v.parse::<Time>().ok()?
                } else {
                    TimeZone::UTC.to_datetime(parse_instant(v)?).time()
                };
                Some(v.cmp(t))
            }
            _ => None,
        }
    }
}

impl Operand {
    fn accepts(&self, value: &Value) -> bool {
        let equal = |l: &Literal| l.compare(value) == Some(Ordering::Equal);
        match self {
            Self::One(l) => equal(l),
            Self::AnyOf(ls) => ls.iter().any(equal),
            Self::Range(lo, hi) => {
                lo.compare(value).is_some_and(|o| o != Ordering::Less)
                    && hi.compare(value).is_some_and(|o| o != Ordering::Greater)
            }
        }
    }
}

// ---------------------------------------------------------------- matching

impl Term {
    pub fn matches(&self, entity: &Entity) -> bool {
        let reached = self.path.resolve(entity);
        // A multi-valued attribute (a JSON array) matches when one element does.
        let mut candidates = reached.iter().flat_map(|v| match v.as_ref() {
            Value::Array(items) => items.as_slice(),
            other => std::slice::from_ref(other),
        });
        match &self.test {
            Test::Exists => !reached.is_empty(),
            Test::Absent => reached.is_empty(),
            Test::Compare(order, literal) => candidates.any(|v| literal.compare(v).is_some_and(|o| order.accepts(o))),
            Test::Equals(operand) => candidates.any(|v| operand.accepts(v)),
            Test::NotEquals(operand) => !reached.is_empty() && !candidates.any(|v| operand.accepts(v)),
            Test::Matches(p) => candidates.any(|v| v.as_str().is_some_and(|s| p.regex.is_match(s))),
            Test::NotMatches(p) => {
                !reached.is_empty() && !candidates.any(|v| v.as_str().is_some_and(|s| p.regex.is_match(s)))
            }
        }
    }
}

impl AttrPath {
    /// The values this path reaches in the entity (several when it crosses
    /// an array); empty when it reaches nothing. The common case, a plain
    /// attribute's value, is borrowed: queries scan every entity of the twin.
    fn resolve<'a>(&self, entity: &'a Entity) -> Vec<Cow<'a, Value>> {
        let Some(attr) = entity.attributes.get(&self.attribute) else {
            return Vec::new();
        };
        if let Some(member) = &self.metadata {
            let found = match member.as_str() {
                "observedAt" => attr.observed_at.map(|t| Value::String(format_timestamp(t))),
                "unitCode" => attr.unit_code.clone().map(Value::String),
                "datasetId" => attr.dataset_id.clone().map(Value::String),
                other => attr.extra.get(other).cloned(),
            };
            return found.into_iter().map(Cow::Owned).collect();
        }
        // A ListRelationship holds `[{"object": id}, ...]`: compare the targets.
        let base = match &attr.value {
            Value::Array(items) if attr.kind == AttributeKind::ListRelationship => Cow::Owned(Value::Array(
                items
                    .iter()
                    .map(|i| i.get("object").cloned().unwrap_or_else(|| i.clone()))
                    .collect(),
            )),
            value => Cow::Borrowed(value),
        };
        let Some((first, rest)) = self.value_path.split_first() else {
            return vec![base];
        };
        let mut reached = descend(&base, first);
        // NGSI-LD reads `attr.sub` as a sub-attribute first; Vigie reads the
        // value first and falls back on a sub-attribute of that name.
        if reached.is_empty()
            && let Some(sub) = attr.extra.get(first)
        {
            let value = [
                "value",
                "object",
                "languageMap",
                "vocab",
                "json",
                "valueList",
                "objectList",
            ]
            .iter()
            .find_map(|m| sub.get(*m));
            reached.extend(value.cloned());
        }
        for key in rest {
            reached = reached.iter().flat_map(|v| descend(v, key)).collect();
        }
        reached.into_iter().map(Cow::Owned).collect()
    }
}

/// The member `key` of an object, or of each object in an array.
fn descend(v: &Value, key: &str) -> Vec<Value> {
    match v {
        Value::Object(m) => m.get(key).cloned().into_iter().collect(),
        Value::Array(items) => items.iter().filter_map(|i| i.get(key).cloned()).collect(),
        _ => Vec::new(),
    }
}

// ---------------------------------------------------------------- printing

/// Writes `s` quoted, escaping what [`Parser::quoted`] unescapes.
pub(crate) fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        if matches!(c, '"' | '\\') {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("\"")
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.root.fmt(f)
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Term(t) => t.fmt(f),
            Self::And(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(";")?;
                    }
                    if matches!(item, Self::Or(_)) {
                        write!(f, "({item})")?;
                    } else {
                        item.fmt(f)?;
                    }
                }
                Ok(())
            }
            Self::Or(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str("|")?;
                    }
                    item.fmt(f)?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.test == Test::Absent {
            f.write_str("!")?;
        }
        self.path.fmt(f)?;
        match &self.test {
            Test::Exists | Test::Absent => Ok(()),
            Test::Compare(order, l) => write!(f, "{}{l}", order.symbol()),
            Test::Equals(o) => write!(f, "=={o}"),
            Test::NotEquals(o) => write!(f, "!={o}"),
            Test::Matches(p) => {
                f.write_str("~=")?;
                write_quoted(f, &p.source)
            }
            Test::NotMatches(p) => {
                f.write_str("!~=")?;
                write_quoted(f, &p.source)
            }
        }
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.attribute)?;
        if let Some(m) = &self.metadata {
            return write!(f, ".{m}");
        }
        // A first key named like metadata needs brackets to stay a key.
        match self.value_path.first() {
            Some(first) if METADATA.contains(&first.as_str()) => write!(f, "[{}]", self.value_path.join(".")),
            _ => self.value_path.iter().try_for_each(|k| write!(f, ".{k}")),
        }
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::One(l) => l.fmt(f),
            Self::Range(lo, hi) => write!(f, "{lo}..{hi}"),
            Self::AnyOf(ls) => {
                for (i, l) in ls.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    l.fmt(f)?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Text(s) => write_quoted(f, s),
            Self::Bool(b) => write!(f, "{b}"),
            Self::DateTime(t) => write!(f, "{t}"),
            Self::Date(d) => write!(f, "{d}"),
            Self::Time(t) => write!(f, "{t}"),
        }
    }
}

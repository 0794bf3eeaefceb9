//! Conditions: CEL expressions compiled once per rule, evaluated against one
//! equipment at one instant. The variables are the equipment's attributes
//! (numbers are doubles) and a few facts about it and the time: `id`,
//! `type`, `commune`, `line`, `location` (`lat`, `lon`), `now` (Unix
//! seconds), `hour` and `minute` (Paris), `weekday` (0 is Sunday), `date`
//! (`"2026-12-01"`), `holiday` and `night` (sun below the horizon at the
//! equipment). These facts take precedence over attributes of the same name.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use cel::{Context, Program, Value as Cel};
use serde_json::Value;

use super::{MAX_EXPRESSION_LEN, RuleError, calendar, clock};
use crate::{Entity, Timestamp};

/// Deepest nesting of brackets or prefix operators: the parser and the
/// evaluator recurse, and a thread's stack is small.
pub const MAX_NESTING: usize = 32;
/// Most binary operators in one expression, for the same reason.
pub const MAX_OPERATORS: usize = 256;

/// The facts an expression may name besides attributes.
const FACTS: [&str; 11] = [
    "id", "type", "commune", "line", "location", "now", "hour", "minute", "weekday", "date", "holiday",
];
const NIGHT: &str = "night";

/// A compiled expression and the variables it reads.
#[derive(Clone)]
pub struct Expr {
    source: Arc<str>,
    program: Arc<Program>,
    variables: Arc<[String]>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Expr").field("source", &self.source).finish()
    }
}

/// Why an evaluation gave no answer: the rule does not match, the error is counted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("{0}")]
    Cel(String),
    #[error("expected {expected}, got {got}")]
    Type { expected: &'static str, got: String },
    #[error("the evaluator failed on this expression")]
    Panic,
}

/// Line and column (1-based) of byte `offset` in `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Refuses what would make the parser or evaluator recurse too deep,
/// pointing at the place it happens.
fn check_shape(rule: &str, field: &str, source: &str) -> Result<(), RuleError> {
    let at = |offset: usize, message: String| {
        let (line, column) = position(source, offset);
        RuleError::Expression {
            rule: rule.to_owned(),
            field: field.to_owned(),
            line,
            column,
            message,
        }
    };
    if source.len() > MAX_EXPRESSION_LEN {
        return Err(at(
            MAX_EXPRESSION_LEN,
            format!("{} bytes, more than the {MAX_EXPRESSION_LEN} allowed", source.len()),
        ));
    }
    if source.trim().is_empty() {
        return Err(at(0, "the expression is empty".into()));
    }
    let (mut depth, mut prefixes, mut operators) = (0usize, 0usize, 0usize);
    let mut in_string: Option<u8> = None;
    let bytes = source.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if let Some(q) = in_string {
            if b == q && bytes.get(i.wrapping_sub(1)) != Some(&b'\\') {
                in_string = None;
            }
            continue;
        }
        match b {
            b'"' | b'\'' => in_string = Some(b),
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'!' | b'-' if bytes.get(i + 1) != Some(&b'=') => prefixes += 1,
            b'&' | b'|' | b'+' | b'*' | b'/' | b'%' | b'<' | b'>' | b'=' | b'?' => operators += 1,
            _ if b.is_ascii_whitespace() => {}
            _ => prefixes = 0,
        }
        if depth + prefixes > MAX_NESTING {
            return Err(at(i, format!("nested more than {MAX_NESTING} deep")));
        }
        if operators > 2 * MAX_OPERATORS {
            return Err(at(i, format!("more than {MAX_OPERATORS} operators")));
        }
    }
    Ok(())
}

/// Compiles the expression of `rule`'s `field`.
pub fn compile(rule: &str, field: &str, source: &str) -> Result<Expr, RuleError> {
    check_shape(rule, field, source)?;
    let parsed = catch_unwind(|| Program::compile(source));
    let program = match parsed {
        Ok(Ok(p)) => p,
        Ok(Err(errors)) => {
            let first = errors.errors.first();
            // cel reports 1-based lines and columns.
            let (line, column) = first.map_or((1, 1), |e| (e.pos.0.max(1) as usize, e.pos.1.max(1) as usize));
            let message = first.map_or_else(|| "syntax error".to_owned(), |e| e.msg.clone());
            return Err(RuleError::Expression {
                rule: rule.to_owned(),
                field: field.to_owned(),
                line,
                column,
                message,
            });
        }
        Err(_) => {
            return Err(RuleError::Expression {
                rule: rule.to_owned(),
                field: field.to_owned(),
                line: 1,
                column: 1,
                message: "the expression could not be parsed".into(),
            });
        }
    };
    let variables = program
        .references()
        .variables()
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>()
        .into();
    Ok(Expr {
        source: source.into(),
        program: Arc::new(program),
        variables,
    })
}

/// Shared by every evaluation: CEL's standard library, built once.
#[derive(Clone)]
pub struct Evaluator {
    env: Arc<cel::Env>,
}

impl Default for Evaluator {
    fn default() -> Self {
        Self {
            env: Arc::new(cel::Env::stdlib()),
        }
    }
}

impl std::fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Evaluator")
    }
}

/// A JSON value as CEL sees it; numbers are doubles, so `voltageR == 0`
/// and `temperature < 0.5` read the same whatever the device sent.
pub fn to_cel(v: &Value) -> Cel {
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => Cel::Float(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(items) => Cel::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.clone(), to_cel(v)))
            .collect::<HashMap<String, Cel>>()
            .into(),
    }
}

fn text(s: &str) -> Cel {
    Cel::String(Arc::new(s.to_owned()))
}

/// The value of a fact, `None` when the equipment lacks it (no scope, no position).
fn fact(name: &str, entity: &Entity, now: Timestamp) -> Option<Cel> {
    let local = || clock::local(now);
    Some(match name {
        "id" => text(entity.id.as_str()),
        "type" => text(&entity.entity_type),
        "commune" => text(entity.scope.as_ref()?.commune.as_str()),
        "line" => text(entity.scope.as_ref()?.business_line.as_str()),
        "location" => {
            let (lon, lat) = entity.point()?;
            HashMap::from([("lat", Cel::Float(lat)), ("lon", Cel::Float(lon))]).into()
        }
        "now" => Cel::Int(now.as_second()),
        "hour" => Cel::Int(local().hour().into()),
        "minute" => Cel::Int(local().minute().into()),
        "weekday" => Cel::Int(local().weekday().to_sunday_zero_offset().into()),
        "date" => text(&local().date().to_string()),
        "holiday" => Cel::Bool(calendar::is_public_holiday(local().date())),
        NIGHT => {
            let (lon, lat) = entity.point()?;
            Cel::Bool(clock::is_night(now, lon, lat))
        }
        _ => return None,
    })
}

impl Evaluator {
    /// Evaluates `expr` for `entity` at `now`. Variables the expression does
    /// not read are not computed (the sun's position is not cheap).
    pub fn eval(&self, expr: &Expr, entity: &Entity, now: Timestamp) -> Result<Cel, EvalError> {
        let mut ctx = Context::with_env(self.env.clone());
        for name in expr.variables.iter() {
            let value = if FACTS.contains(&name.as_str()) || name == NIGHT {
                fact(name, entity, now)
            } else {
                entity.attributes.get(name).map(|a| to_cel(&a.value))
            };
            // A missing variable is left undeclared: CEL names it in its error.
            if let Some(v) = value {
                ctx.add_variable_from_value(name.as_str(), v);
            }
        }
        match catch_unwind(AssertUnwindSafe(|| expr.program.execute(&ctx))) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(EvalError::Cel(e.to_string())),
            Err(_) => Err(EvalError::Panic),
        }
    }

    pub fn eval_bool(&self, expr: &Expr, entity: &Entity, now: Timestamp) -> Result<bool, EvalError> {
        match self.eval(expr, entity, now)? {
            Cel::Bool(b) => Ok(b),
            other => Err(EvalError::Type {
                expected: "a boolean",
                got: format!("{other:?}"),
            }),
        }
    }

    pub fn eval_number(&self, expr: &Expr, entity: &Entity, now: Timestamp) -> Result<f64, EvalError> {
        match self.eval(expr, entity, now)? {
            Cel::Float(f) if f.is_finite() => Ok(f),
            Cel::Int(i) => Ok(i as f64),
            Cel::UInt(u) => Ok(u as f64),
            other => Err(EvalError::Type {
                expected: "a finite number",
                got: format!("{other:?}"),
            }),
        }
    }
}

impl Expr {
    pub fn source(&self) -> &str {
        &self.source
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Attribute, EntityId, Scope};

    fn lamp() -> Entity {
        let id = EntityId::new("urn:ngsi-ld:Streetlight:dijon:00042").expect("id");
        let scope = Scope::new("dijon".parse().expect("slug"), "lighting".parse().expect("slug"));
        Entity::new(id, "Streetlight", Some(scope))
            .with("location", Attribute::point(5.0415, 47.3220))
            .with("status", Attribute::property("fault"))
            .with("illuminanceLevel", Attribute::property(0))
            .with("voltageR", Attribute::property(0))
    }

    fn eval(source: &str, at: &str) -> Result<Cel, EvalError> {
        let e = compile("r", "condition", source).expect("compiles");
        Evaluator::default().eval(&e, &lamp(), at.parse().expect("ts"))
    }

    #[test]
    fn attributes_and_facts() {
        let night = "2026-12-01T21:30:00Z";
        assert_eq!(eval("status == 'fault' && night", night), Ok(Cel::Bool(true)));
        assert_eq!(
            eval("status == 'fault' && night", "2026-12-01T12:00:00Z"),
            Ok(Cel::Bool(false))
        );
        assert_eq!(eval("voltageR == 0.0 && voltageR == 0", night), Ok(Cel::Bool(true)));
        assert_eq!(
            eval("hour == 22 && minute == 30 && weekday == 2", night),
            Ok(Cel::Bool(true))
        );
        assert_eq!(
            eval("commune in ['dijon', 'chenove'] && line == 'lighting'", night),
            Ok(Cel::Bool(true))
        );
        assert_eq!(
            eval("location.lat > 47.0 && location.lon < 6.0", night),
            Ok(Cel::Bool(true))
        );
        assert_eq!(
            eval(
                "id.startsWith('urn:ngsi-ld:Streetlight:') && status.contains('ault')",
                night
            ),
            Ok(Cel::Bool(true))
        );
        assert_eq!(
            eval("type == 'Streetlight' && !holiday && date == '2026-12-01'", night),
            Ok(Cel::Bool(true))
        );
        assert_eq!(eval("illuminanceLevel * 2.0 + 1.0", night), Ok(Cel::Float(1.0)));
        assert_eq!(eval("now", night), Ok(Cel::Int(1_796_160_600)));
    }

    #[test]
    fn missing_attributes_and_wrong_types_are_errors() {
        let e = eval("temperature < 0.5", "2026-12-01T21:30:00Z").expect_err("no such attribute");
        assert!(e.to_string().contains("temperature"), "{e}");
        assert!(eval("status < 3.0", "2026-12-01T21:30:00Z").is_err());
        let x = compile("r", "condition", "status").expect("compiles");
        let ev = Evaluator::default();
        assert!(matches!(
            ev.eval_bool(&x, &lamp(), Timestamp::UNIX_EPOCH),
            Err(EvalError::Type { .. })
        ));
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let e = compile("lamp-out", "condition", "status == 'fault' &&\n  night ==").expect_err("incomplete");
        match e {
            RuleError::Expression { rule, field, line, .. } => {
                assert_eq!((rule.as_str(), field.as_str(), line), ("lamp-out", "condition", 2));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn columns_are_one_based() {
        for (src, at) in [("x ) y", (1, 3)), (")", (1, 1)), ("status ==\n  )", (2, 3))] {
            match compile("r", "condition", src) {
                Err(RuleError::Expression { line, column, .. }) => assert_eq!((line, column), at, "{src}"),
                other => panic!("unexpected {other:?}"),
            }
        }
        // An oversized expression cut inside a multi-byte character.
        let long = "é".repeat(MAX_EXPRESSION_LEN);
        assert!(compile("r", "condition", &long).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// Whatever an author types, compiling and evaluating gives an answer or an error.
        #[test]
        fn no_input_panics(source in "[a-zA-Z0-9_ .,'\"()\\[\\]{}!<>=&|+*/%?:-]{0,200}") {
            if let Ok(e) = compile("r", "condition", &source) {
                let _ = Evaluator::default().eval(&e, &lamp(), Timestamp::UNIX_EPOCH);
            }
        }
    }

    #[test]
    fn bounds_refuse_oversized_and_deep_expressions() {
        let long = format!("status == '{}'", "a".repeat(MAX_EXPRESSION_LEN));
        assert!(compile("r", "condition", &long).is_err());
        let deep = format!("{}true{}", "(".repeat(40), ")".repeat(40));
        let e = compile("r", "condition", &deep).expect_err("too deep").to_string();
        assert!(e.contains("nested"), "{e}");
        assert!(compile("r", "condition", &format!("{}true", "!".repeat(40))).is_err());
        assert!(compile("r", "condition", "").is_err());
        // Within bounds, long flat expressions still compile and evaluate.
        let flat = vec!["illuminanceLevel < 1.0"; 100].join(" && ");
        assert_eq!(eval(&flat, "2026-12-01T21:30:00Z"), Ok(Cel::Bool(true)));
        let sum = vec!["1.0"; 200].join(" + ");
        assert_eq!(eval(&sum, "2026-12-01T21:30:00Z"), Ok(Cel::Float(200.0)));
        // The most operators allowed, chained: the evaluator's recursion holds.
        let chain = vec!["1.0"; MAX_OPERATORS * 2].join("+");
        assert_eq!(eval(&chain, "2026-12-01T21:30:00Z"), Ok(Cel::Float(512.0)));
        assert!(compile("r", "condition", &vec!["1.0"; MAX_OPERATORS * 2 + 2].join("+")).is_err());
    }
}

//! Declarative rules written by city staff: "a lamp out at night raises an
//! alarm", "three lamps out within 100 m in an hour open a work order". A
//! rule names the equipment it applies to, a trigger, a CEL condition and
//! actions. Everything here is pure: time is passed in, the server executes
//! the actions a [`Firing`] carries.
//!
//! - [`spec`]: the model, parsed from TOML or JSON, validated with every error at once;
//! - [`expr`]: CEL conditions, compiled once, evaluated over an entity;
//! - [`engine`]: the triggers' state machines;
//! - [`calendar`], [`clock`]: public holidays, Paris time, cron, the sun;
//! - [`dry_run`]: a rule replayed over recorded history;
//! - [`template`]: the texts of actions, filled from the equipment.

pub mod calendar;
pub mod clock;
pub mod dry_run;
pub mod engine;
pub mod expr;
pub mod spec;
pub mod template;

pub use engine::{Engine, EvalErrors, Firing};
pub use spec::{AppliesTo, Channel, Communes, Priority, Rule, RuleAction, RuleSet, SunEvent, Trigger};

/// Most rules one engine holds.
pub const MAX_RULES: usize = 10_000;
/// Longest expression, in bytes.
pub const MAX_EXPRESSION_LEN: usize = 4 * 1024;

/// A problem in a rule file, named as its author will look for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("the rule file cannot be read: {0}")]
    Syntax(String),
    #[error("the rule file has {0} rules, more than the {MAX_RULES} allowed")]
    TooManyRules(usize),
    #[error("rule '{rule}', field '{field}': {problem}")]
    Invalid {
        rule: String,
        field: String,
        problem: String,
    },
    #[error("rule '{rule}', {field} at line {line}, column {column}: {message}")]
    Expression {
        rule: String,
        field: String,
        line: usize,
        column: usize,
        message: String,
    },
}

impl RuleError {
    /// The field the problem is in (`condition`, `trigger.cron`,
    /// `actions[1]`), `-` for the file as a whole: where an editor shows it.
    pub fn field(&self) -> &str {
        match self {
            Self::Invalid { field, .. } | Self::Expression { field, .. } => field,
            Self::Syntax(_) | Self::TooManyRules(_) => "-",
        }
    }

    /// Line and column (from 1) within the field's text, for expressions.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            Self::Expression { line, column, .. } => Some((*line, *column)),
            _ => None,
        }
    }

    /// The problem alone, without the rule and field it is in.
    pub fn problem(&self) -> String {
        match self {
            Self::Invalid { problem, .. } => problem.clone(),
            Self::Expression { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    pub(crate) fn invalid(rule: &str, field: impl Into<String>, problem: String) -> Self {
        Self::Invalid {
            rule: rule.to_owned(),
            field: field.into(),
            problem,
        }
    }
}

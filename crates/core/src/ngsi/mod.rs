//! NGSI-LD request logic with no I/O: the `q` query language, `scopeQ`, geo
//! queries, the simplified rendering with `pick` / `omit`, the JSON-LD
//! `@context` translation of names, subscriptions and the temporal API. The
//! API layer decodes the URL, calls these, and turns their errors into
//! ProblemDetails.

pub mod concise;
pub mod context;
pub mod geo;
pub mod query;
pub mod render;
pub mod scope_query;
pub mod subscription;
pub mod temporal;
pub mod update;

pub use concise::{NGSI_LD_NULL, attribute_from_concise, entity_from_concise, expand_instance};
pub use context::{
    ActiveContext, BuiltinContexts, ContextError, ContextSource, EmbeddedContext, Representation, Translation,
    link_header_value, parse_link_header,
};
pub use geo::{GeoQuery, GeoQueryError, GeoRel};
pub use query::{AttrPath, Expr, Literal, Operand, Order, Pattern, Query, QueryError, Term, Test};
pub use render::{Format, LanguageFilter, RenderOptions, key_value, key_values, project, render};
pub use scope_query::{Level, ScopeExpr, ScopePattern, ScopeQuery};
pub use subscription::{Change, ChangeKind, Subscription, SubscriptionError, Trigger, Verdict};
pub use temporal::{TemporalError, TemporalParams, TemporalQuery, TemporalRepresentation};
pub use update::{
    Changes, InstanceTarget, MergeOptions, UpdateError, delete_attribute, merge_entity, replace_attribute,
    replace_entity, update_attribute,
};

#[cfg(test)]
mod tests;

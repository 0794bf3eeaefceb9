//! NGSI-LD request logic with no I/O: the `q` query language, `scopeQ`, geo
//! queries, and the simplified rendering with `pick` / `omit`. The API layer
//! decodes the URL, calls these, and turns their errors into ProblemDetails.

pub mod concise;
pub mod geo;
pub mod query;
pub mod render;
pub mod scope_query;
pub mod update;

pub use concise::{NGSI_LD_NULL, attribute_from_concise, entity_from_concise, expand_instance};
pub use geo::{GeoQuery, GeoQueryError, GeoRel};
pub use query::{AttrPath, Expr, Literal, Operand, Order, Pattern, Query, QueryError, Term, Test};
pub use render::{Format, LanguageFilter, RenderOptions, key_values, project, render};
pub use scope_query::{Level, ScopeExpr, ScopePattern, ScopeQuery};
pub use update::{
    Changes, InstanceTarget, MergeOptions, UpdateError, delete_attribute, merge_entity, replace_attribute,
    replace_entity, update_attribute,
};

#[cfg(test)]
mod tests;

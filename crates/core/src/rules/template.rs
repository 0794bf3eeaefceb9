//! Texts of actions (`detail`, `template`) with `{placeholders}`: `{id}`,
//! `{type}`, `{commune}`, `{line}` or an attribute's name. Filled in when a
//! firing is executed, so the message shows the value that made the rule fire.

use serde_json::Value;

use crate::Entity;

/// Longest text a template produces; the rest is cut.
pub const MAX_RENDERED_LEN: usize = 16 * 1024;

/// `template` with its placeholders filled from `entity`. An unknown
/// placeholder stays as written, so the author sees which one is wrong.
pub fn render(template: &str, entity: &Entity) -> String {
    let mut out = String::with_capacity(template.len().min(MAX_RENDERED_LEN));
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let name = &after[..close];
        match value_of(name, entity) {
            Some(v) => out.push_str(&v),
            None => {
                out.push('{');
                out.push_str(name);
                out.push('}');
            }
        }
        rest = &after[close + 1..];
        if out.len() > MAX_RENDERED_LEN {
            break;
        }
    }
    out.push_str(rest);
    if out.len() > MAX_RENDERED_LEN {
        let mut end = MAX_RENDERED_LEN;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

fn value_of(name: &str, entity: &Entity) -> Option<String> {
    let scope = entity.scope.as_ref();
    Some(match name {
        "id" => entity.id.to_string(),
        "type" => entity.entity_type.clone(),
        "commune" => scope?.commune.to_string(),
        "line" => scope?.business_line.to_string(),
        _ => match &entity.attributes.get(name)?.value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Attribute, EntityId, Scope};

    #[test]
    fn placeholders() {
        let id = EntityId::new("urn:ngsi-ld:WeatherObserved:dijon:w1").expect("id");
        let scope = Scope::new("dijon".parse().expect("slug"), "roads".parse().expect("slug"));
        let e = Entity::new(id, "WeatherObserved", Some(scope))
            .with("temperature", Attribute::property(-0.5))
            .with("name", Attribute::property("Pont de l'Arsenal"));
        assert_eq!(
            render("{temperature} °C at {name} ({commune}/{line}), {unknown} {", &e),
            "-0.5 °C at Pont de l'Arsenal (dijon/roads), {unknown} {"
        );
        assert_eq!(render("{id}", &e), "urn:ngsi-ld:WeatherObserved:dijon:w1");
        let big = "{id}".repeat(10_000);
        assert!(render(&big, &e).len() <= MAX_RENDERED_LEN);
    }
}

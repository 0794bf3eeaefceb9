//! `q` and `scopeQ` parsing, printing and matching on arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use vigie_core::ngsi::{Query, ScopeQuery};
use vigie_core::{Attribute, AttributeKind, Entity, EntityId, Scope};

fn entity() -> Option<Entity> {
    let at = "2026-11-22T18:00:00Z".parse().ok()?;
    Some(
        Entity::new(
            EntityId::new("urn:ngsi-ld:Streetlight:dijon:sl-000123").ok()?,
            "Streetlight",
            Some(Scope::from_ngsi("/dijon/lighting").ok()?),
        )
        .with("status", Attribute::property("defectiveLamp").observed(at))
        .with("illuminanceLevel", Attribute::property(0.8).with_unit("LUX"))
        .with("dateLastLampChange", Attribute::property("2021-03-04"))
        .with("tags", Attribute::property(json!(["led", 3, {"k": [1, {"l": "x"}]}])))
        .with(
            "address",
            Attribute::property(json!({"postalCode": "21000", "k": {"l": 2}})),
        )
        .with(
            "refCabinet",
            Attribute::of_kind(AttributeKind::Relationship, json!("urn:ngsi-ld:Cabinet:1")),
        )
        .with("location", Attribute::point(5.0415, 47.322)),
    )
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(e) = entity() else {
        return;
    };
    if let Ok(q) = Query::parse(text) {
        let verdict = q.matches(&e);
        // The printed form must parse back to the same query, meaning the same.
        let again = Query::parse(&q.to_string()).expect("a printed query parses");
        assert_eq!(again, q);
        assert_eq!(again.matches(&e), verdict);
    }
    if let Ok(s) = ScopeQuery::parse(text) {
        let _ = s.matches(&e);
        assert_eq!(ScopeQuery::parse(&s.to_string()).ok(), Some(s));
    }
});

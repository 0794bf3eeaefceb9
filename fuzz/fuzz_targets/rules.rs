//! Rules as their authors write them: arbitrary text as one rule in TOML
//! (the console's editor) and as the API's JSON. Parsing and validation
//! never panic; a rule they accept evaluates without panicking on an
//! equipment, and writes back as TOML that reads as the same rule.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigie_core::rules::{Engine, Rule, RuleSet};
use vigie_core::{Attribute, Entity, EntityId, Scope, Timestamp};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = RuleSet::parse_json(&text);
    let Ok(rule) = Rule::from_toml(&text) else {
        return;
    };
    let Ok(set) = RuleSet::from_rules(vec![rule.clone()]) else {
        return;
    };
    assert_eq!(Rule::from_toml(&rule.to_toml()).ok(), Some(rule), "TOML round trip");
    let Ok(id) = EntityId::new("urn:ngsi-ld:Streetlight:dijon:1") else {
        return;
    };
    let scope = Scope::from_ngsi("/dijon/lighting").ok();
    let light = Entity::new(id, "Streetlight", scope)
        .with("status", Attribute::property("defectiveLamp"))
        .with("powerConsumption", Attribute::property(42.5))
        .with("location", Attribute::point(5.04, 47.32));
    let mut engine = Engine::new(set);
    let now = Timestamp::UNIX_EPOCH;
    let _ = engine.on_change(&light, now);
    let _ = engine.on_tick(now, std::iter::once(&light));
});

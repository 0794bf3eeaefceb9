//! Cost of the rules engine per change of the twin: 1,000 rules over ten
//! entity types, so a street light's change runs the 100 that apply to it;
//! and a metropolis' 1,000 rules per commune and type, where a street
//! light's change runs the 12 of its commune and the metropolis.
//! `cargo bench -p vigie-core --bench rules`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use vigie_core::rules::{Engine, RuleSet};
use vigie_core::{Attribute, Entity, EntityId, Scope, Timestamp};

#[path = "support/metropolis_rules.rs"]
mod metropolis_rules;

/// Dijon Métropole's 24 communes (vigie-sim's list; not a dependency here).
const COMMUNES: [&str; 24] = [
    "dijon",
    "chenove",
    "talant",
    "fontaine-les-dijon",
    "quetigny",
    "longvic",
    "chevigny-saint-sauveur",
    "saint-apollinaire",
    "marsannay-la-cote",
    "plombieres-les-dijon",
    "sennecey-les-dijon",
    "ahuy",
    "daix",
    "hauteville-les-dijon",
    "bressey-sur-tille",
    "breteniere",
    "corcelles-les-monts",
    "crimolois",
    "fenay",
    "flavignerot",
    "magny-sur-tille",
    "neuilly-les-dijon",
    "ouges",
    "perrigny-les-dijon",
];

const TYPES: [&str; 10] = [
    "Streetlight",
    "StreetlightControlCabinet",
    "TrafficLightController",
    "WeatherObserved",
    "AirQualityObserved",
    "ParkingSpot",
    "WasteContainer",
    "Camera",
    "FloodMonitoring",
    "Vehicle",
];

/// 1,000 on-change rules; one in ten also asks whether it is night.
fn rules() -> RuleSet {
    let mut text = String::new();
    for i in 0..1_000 {
        let kind = TYPES[i % TYPES.len()];
        let condition = match i % 10 {
            0 => format!("status == 'fault' && night && illuminanceLevel < {}.0", i % 100),
            1 => "commune in ['dijon', 'chenove'] && powerState == 'off' && hour >= 22".to_owned(),
            2 => "status.startsWith('fault') || powerConsumption > 200.0".to_owned(),
            _ => format!("powerConsumption > {}.5 && status != 'ok'", i % 97),
        };
        text.push_str(&format!(
            "[[rule]]\nid = \"r{i}\"\nname = \"Rule {i}\"\napplies_to = {{ types = [\"{kind}\"] }}\n\
             trigger = {{ type = \"on-change\" }}\ncondition = \"{condition}\"\n\
             actions = [{{ action = \"raise-alarm\", alarm_type = \"t{i}\", severity = \"minor\" }}]\n\n"
        ));
    }
    RuleSet::parse_toml(&text).expect("valid generated rules")
}

fn light() -> Entity {
    light_in("dijon")
}

fn light_in(commune: &str) -> Entity {
    let id = EntityId::new(format!("urn:ngsi-ld:Streetlight:{commune}:00042")).expect("a valid id");
    let scope = Scope::new(commune.parse().expect("slug"), "lighting".parse().expect("slug"));
    Entity::new(id, "Streetlight", Some(scope))
        .with("location", Attribute::point(5.0415, 47.3220))
        .with("status", Attribute::property("ok"))
        .with("powerState", Attribute::property("on"))
        .with("illuminanceLevel", Attribute::property(80))
        .with("powerConsumption", Attribute::property(41.5).with_unit("WTT"))
}

fn evaluation(c: &mut Criterion) {
    let mut engine = Engine::new(rules());
    let lamp = light();
    let now: Timestamp = "2026-12-01T21:30:00Z".parse().expect("a timestamp");
    c.bench_function("rules/on_change_streetlight_1000_rules_100_apply", |b| {
        b.iter(|| black_box(engine.on_change(black_box(&lamp), now)))
    });
    assert_eq!(engine.evaluation_errors().count(), 0);
    let mut other = Engine::new(rules());
    let unknown = Entity::new(
        EntityId::new("urn:ngsi-ld:Bench:dijon:1").expect("a valid id"),
        "Bench",
        None,
    );
    c.bench_function("rules/on_change_type_without_rules", |b| {
        b.iter(|| black_box(other.on_change(black_box(&unknown), now)))
    });
    c.bench_function("rules/parse_and_compile_1000_rules", |b| b.iter(|| black_box(rules())));

    // The metropolis: a light's change in the last commune of the list (no
    // advantage from the order rules were loaded in) sees 12 rules.
    let text = metropolis_rules::metropolis_rules(&COMMUNES);
    let set = RuleSet::parse_toml(&text).expect("valid metropolis rules");
    assert_eq!(set.len(), 1_000);
    assert_eq!(metropolis_rules::applicable("Streetlight"), 12);
    let mut city = Engine::new(set);
    let lamp = light_in(COMMUNES[COMMUNES.len() - 1]).with("voltage", Attribute::property(229.4).with_unit("VLT"));
    c.bench_function("rules/on_change_streetlight_metropolis_1000_rules_12_apply", |b| {
        b.iter(|| black_box(city.on_change(black_box(&lamp), now)))
    });
    assert!(
        city.on_change(&lamp, now).is_empty(),
        "a light reporting normally fires nothing"
    );
    assert_eq!(city.evaluation_errors().count(), 0);
}

criterion_group!(benches, evaluation);
criterion_main!(benches);

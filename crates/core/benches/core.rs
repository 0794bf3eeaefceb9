//! Micro-benchmarks of the pure hot paths: decoding a device payload,
//! applying it to an entity, evaluating NGSI-LD `q` and geo-queries, and
//! matching a change against a broker's subscriptions.
//! `cargo bench -p vigie-core`; the end-to-end figures come from `vigie bench`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use vigie_core::decode::decode_iot_agent;
use vigie_core::ngsi::{Change, GeoQuery, Query, Subscription};
use vigie_core::{Attribute, Device, Entity, EntityId, Timestamp};

fn light_device() -> Device {
    serde_json::from_value(json!({
        "device_id": "sl-dijon-00042", "transport": "mqtt", "apikey": "lighting",
        "entity_name": "urn:ngsi-ld:Streetlight:dijon:00042", "entity_type": "Streetlight",
        "scope": {"commune": "dijon", "business_line": "lighting"},
        "attributes": [
            {"object_id": "st", "name": "status", "type": "Text"},
            {"object_id": "ps", "name": "powerState", "type": "Text"},
            {"object_id": "il", "name": "illuminanceLevel", "type": "Number"},
            {"object_id": "p", "name": "powerConsumption", "type": "Number", "unitCode": "WTT"},
            {"object_id": "v", "name": "voltage", "type": "Number", "unitCode": "VLT"}
        ]
    }))
    .expect("a valid device")
}

fn light() -> Entity {
    let id = EntityId::new("urn:ngsi-ld:Streetlight:dijon:00042").expect("a valid id");
    Entity::new(id, "Streetlight", None)
        .with("location", Attribute::point(5.0415, 47.3220))
        .with("status", Attribute::property("ok"))
        .with("powerState", Attribute::property("on"))
        .with("powerConsumption", Attribute::property(41.5).with_unit("WTT"))
        .with("powerRating", Attribute::property(60))
}

fn decoding(c: &mut Criterion) {
    let device = light_device();
    let payload =
        br#"{"TimeInstant":"2026-11-25T18:00:00.000Z","st":"ok","ps":"on","il":1,"p":41.5,"v":230.2}"#.as_slice();
    let now = Timestamp::now();
    c.bench_function("decode IoT Agent JSON light reading (5 measures)", |b| {
        b.iter(|| decode_iot_agent(black_box(&device), black_box(payload), now))
    });
    let observations = decode_iot_agent(&device, payload, now).expect("decodes");
    let entity = light();
    c.bench_function("apply 5 observations to an entity", |b| {
        b.iter(|| {
            let mut e = entity.clone();
            for o in &observations {
                e.apply(black_box(o));
            }
            e
        })
    });
}

fn queries(c: &mut Criterion) {
    let text = r#"(status=="defectiveLamp"|powerConsumption>40);powerState=="on";powerRating==50..70"#;
    c.bench_function("parse a q query (4 terms)", |b| {
        b.iter(|| Query::parse(black_box(text)))
    });
    let q = Query::parse(text).expect("parses");
    let e = light();
    c.bench_function("evaluate a q query on an entity", |b| {
        b.iter(|| q.matches(black_box(&e)))
    });
    let near = GeoQuery::parse("near;maxDistance==200", "Point", "[5.0410,47.3221]", None).expect("parses");
    c.bench_function("evaluate near;maxDistance==200 on an entity", |b| {
        b.iter(|| near.matches(black_box(&e)))
    });
}

/// 100 subscriptions as a city might hold: by type, by id pattern, watched
/// attributes, a `q`; a quarter of them about this light.
fn subscriptions(c: &mut Criterion) {
    let now = Timestamp::now();
    let subs: Vec<Subscription> = (0..100)
        .map(|i| {
            let entity_type = if i % 4 == 0 { "Streetlight" } else { "Camera" };
            let body = json!({
                "entities": [{"type": entity_type, "idPattern": format!("^urn:ngsi-ld:{entity_type}:dijon:")}],
                "watchedAttributes": ["status", "powerConsumption"],
                "q": format!("powerConsumption>{}", i % 50),
                "notification": {"endpoint": {"uri": "http://receiver.example/notify"}}
            });
            let id = EntityId::new(format!("urn:ngsi-ld:Subscription:{i}")).expect("a valid id");
            Subscription::create(&body, id, now).expect("a valid subscription")
        })
        .collect();
    let before = light();
    let after = light().with("powerConsumption", Attribute::property(42.0).with_unit("WTT"));
    c.bench_function("diff a change and evaluate 100 subscriptions", |b| {
        b.iter(|| {
            let change = Change::new(Some(black_box(&before)), Some(black_box(&after))).expect("one entity");
            subs.iter()
                .filter(|s| matches!(s.evaluate(&change, now), vigie_core::ngsi::Verdict::Fire(_)))
                .count()
        })
    });
}

criterion_group!(benches, decoding, queries, subscriptions);
criterion_main!(benches);

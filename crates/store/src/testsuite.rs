//! The storage test story: one set of checks that every engine must pass, so
//! SQLite and PostgreSQL behave the same for the server.

use std::sync::Arc;

use serde_json::json;
use vigie_core::{Attribute, Device, Entity, EntityId, Scope, Timestamp, Transport};

use crate::{DeadLetter, HistoryPoint, HistoryQuery, Retention, Store, WriteBatch};

fn ts(s: &str) -> Timestamp {
    s.parse().expect("test timestamp")
}

fn light(n: u32, power: f64, at: &str) -> Entity {
    let id = EntityId::conventional("Streetlight", "dijon", &format!("{n:06}")).expect("test id");
    let mut e = Entity::new(
        id,
        "Streetlight",
        Some(Scope::from_ngsi("/dijon/lighting").expect("scope")),
    )
    .with("location", Attribute::point(5.04, 47.32))
    .with(
        "powerConsumption",
        Attribute::property(power).observed(ts(at)).with_unit("WTT"),
    );
    e.modified_at = Some(ts(at));
    e
}

fn point(e: &Entity, attribute: &str, value: serde_json::Value, at: &str) -> HistoryPoint {
    HistoryPoint {
        entity_id: e.id.clone(),
        attribute: attribute.into(),
        observed_at: ts(at),
        value,
        unit_code: None,
    }
}

/// Runs every check against a freshly migrated, empty store.
pub async fn run_all(store: &dyn Store) {
    store.migrate().await.expect("migrate");
    store.migrate().await.expect("migrate is idempotent");
    entities_round_trip_and_page_in_id_order(store).await;
    history_keeps_every_type_and_replaces_redeliveries(store).await;
    retention_prunes_per_attribute(store).await;
    devices_and_dead_letters(store).await;
}

async fn entities_round_trip_and_page_in_id_order(store: &dyn Store) {
    let lights: Vec<Entity> = (0..600).rev().map(|n| light(n, 30.0, "2026-11-22T18:00:00Z")).collect();
    store
        .write(&WriteBatch {
            upserts: lights.iter().cloned().map(Arc::new).collect(),
            ..Default::default()
        })
        .await
        .expect("write");
    assert_eq!(store.count_entities().await.expect("count"), 600);

    let mut seen = Vec::new();
    let mut after: Option<EntityId> = None;
    loop {
        let page = store.entities_page(after.as_ref(), 250).await.expect("page");
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        seen.extend(page);
    }
    assert_eq!(seen.len(), 600, "paging returns every entity once");
    assert!(seen.windows(2).all(|w| w[0].id < w[1].id), "pages are in id order");
    let original = lights.iter().find(|e| e.id == seen[0].id).expect("present");
    assert_eq!(&seen[0], original, "an entity reads back as written");

    // Upsert replaces, delete removes.
    let changed = light(0, 12.5, "2026-11-22T19:00:00Z");
    store
        .write(&WriteBatch {
            upserts: vec![Arc::new(changed.clone())],
            deletes: vec![lights[0].id.clone()], // light 599
            ..Default::default()
        })
        .await
        .expect("write");
    assert_eq!(store.count_entities().await.expect("count"), 599);
    let first = store.entities_page(None, 1).await.expect("page");
    assert_eq!(first[0], changed);
}

async fn history_keeps_every_type_and_replaces_redeliveries(store: &dyn Store) {
    let e = light(1, 30.0, "2026-11-22T18:00:00Z");
    let points = vec![
        point(&e, "powerConsumption", json!(31.5), "2026-11-22T18:00:00Z"),
        point(&e, "powerConsumption", json!(32.0), "2026-11-22T18:10:00Z"),
        point(&e, "powerState", json!("on"), "2026-11-22T18:00:00Z"),
        point(&e, "fault", json!({"code": 3, "lamp": true}), "2026-11-22T18:00:00Z"),
        point(&e, "dimmed", json!(false), "2026-11-22T18:00:00Z"),
    ];
    let batch = WriteBatch {
        upserts: vec![Arc::new(e.clone())],
        history: points.clone(),
        ..Default::default()
    };
    store.write(&batch).await.expect("write");
    store.write(&batch).await.expect("a redelivered batch is accepted");
    let all = store
        .history(&HistoryQuery {
            entity_id: Some(e.id.clone()),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("history");
    assert_eq!(all.len(), points.len(), "a redelivered point replaces itself");
    for p in &points {
        assert!(all.contains(p), "{p:?} reads back unchanged");
    }
    let ranged = store
        .history(&HistoryQuery {
            entity_id: Some(e.id.clone()),
            attribute: Some("powerConsumption".into()),
            from: Some(ts("2026-11-22T18:05:00Z")),
            to: None,
            limit: 10,
        })
        .await
        .expect("history");
    assert_eq!(ranged.len(), 1);
    assert_eq!(ranged[0].value, json!(32.0));
}

async fn retention_prunes_per_attribute(store: &dyn Store) {
    let e = light(2, 30.0, "2026-01-01T00:00:00Z");
    store
        .write(&WriteBatch {
            upserts: vec![Arc::new(e.clone())],
            history: vec![
                point(
                    &e,
                    "location",
                    json!({"type": "Point", "coordinates": [5.0, 47.3]}),
                    "2026-01-01T00:00:00Z",
                ),
                point(&e, "powerConsumption", json!(1.0), "2026-01-01T00:00:00Z"),
                point(&e, "powerConsumption", json!(2.0), "2026-11-21T00:00:00Z"),
            ],
            ..Default::default()
        })
        .await
        .expect("write");
    let retention = Retention {
        default_days: 365,
        per_attribute_days: [("location".to_owned(), 60)].into(),
    };
    let removed = store
        .prune_history(ts("2026-11-22T00:00:00Z"), &retention)
        .await
        .expect("prune");
    assert_eq!(removed, 1, "only the location point is past its 60 days");
    let left = store
        .history(&HistoryQuery {
            entity_id: Some(e.id.clone()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("history");
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|p| p.attribute == "powerConsumption"));
}

async fn devices_and_dead_letters(store: &dyn Store) {
    let device = Device {
        device_id: "SL-000001".into(),
        transport: Transport::IotAgentJson {
            apikey: "lighting".into(),
        },
        entity_name: EntityId::new("urn:ngsi-ld:Streetlight:dijon:000001").expect("id"),
        entity_type: "Streetlight".into(),
        scope: None,
        attributes: vec![],
        mqtt_password_hash: Some(
            "sha256$000102030405060708090a0b0c0d0e0f$000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f"
                .parse()
                .expect("hash"),
        ),
    };
    store.put_devices(std::slice::from_ref(&device)).await.expect("put");
    store
        .put_devices(std::slice::from_ref(&device))
        .await
        .expect("put again replaces");
    assert_eq!(store.devices().await.expect("devices"), vec![device.clone()]);
    assert!(store.delete_device("SL-000001").await.expect("delete"));
    assert!(!store.delete_device("SL-000001").await.expect("delete twice"));

    let letters: Vec<DeadLetter> = (0..3)
        .map(|i| DeadLetter {
            received_at: ts("2026-11-22T18:00:00Z"),
            source: "mqtt".into(),
            topic: format!("/k/d{i}/attrs"),
            reason: "unknown-device".into(),
            detail: format!("no device d{i}"),
            payload: vec![0xff, i],
        })
        .collect();
    store
        .write(&WriteBatch {
            dead_letters: letters.clone(),
            ..Default::default()
        })
        .await
        .expect("write");
    assert_eq!(store.count_dead_letters().await.expect("count"), 3);
    let newest = store.dead_letters(2, 0).await.expect("list");
    assert_eq!(
        newest,
        vec![letters[2].clone(), letters[1].clone()],
        "newest first, binary payload intact"
    );
}

//! The writer's commit in SQLite: a batch of 500 changed lights (each body
//! rewritten and one history point added), as a busy NGSI-LD PATCH load or
//! MQTT telemetry gives it, on a store of 10,000 lights.
//! `cargo bench -p vigie-store-sqlite --bench writes`.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use vigie_core::{Attribute, Entity, EntityId, Timestamp};
use vigie_store::{HistoryPoint, Store, WriteBatch};
use vigie_store_sqlite::{Durability, SqliteStore};

fn light(n: usize, watts: f64) -> Entity {
    let id = EntityId::conventional("Streetlight", "dijon", &format!("{n:06}")).expect("a valid id");
    Entity::new(id, "Streetlight", None)
        .with("powerState", Attribute::property("on"))
        .with("powerConsumption", Attribute::property(watts).with_unit("WTT"))
}

const BATCH: usize = 500;

fn writes(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = rt.block_on(async {
        let store = SqliteStore::open(&dir.path().join("w.db"), Durability::Full)
            .await
            .expect("a store");
        store.migrate().await.expect("migrations");
        let lights: Vec<Arc<Entity>> = (0..10_000).map(|n| Arc::new(light(n, 38.5))).collect();
        for chunk in lights.chunks(1_000) {
            let batch = WriteBatch {
                upserts: chunk.to_vec(),
                ..Default::default()
            };
            store.write(&batch).await.expect("the lights");
        }
        store
    });
    let mut round = 0usize;
    c.bench_function("commit 500 changed lights", |b| {
        b.iter(|| {
            round += 1;
            let now = Timestamp::now();
            let changed: Vec<Arc<Entity>> = (0..BATCH)
                .map(|k| Arc::new(light((round * BATCH + k) * 7 % 10_000, (round % 70) as f64)))
                .collect();
            let history = changed
                .iter()
                .map(|e| HistoryPoint {
                    entity_id: e.id.clone(),
                    attribute: "powerConsumption".into(),
                    observed_at: now,
                    value: json!((round % 70) as f64),
                    unit_code: Some("WTT".into()),
                })
                .collect();
            let batch = WriteBatch {
                upserts: changed,
                history,
                ..Default::default()
            };
            rt.block_on(store.write(&batch)).expect("a commit");
        });
    });
}

criterion_group!(benches, writes);
criterion_main!(benches);

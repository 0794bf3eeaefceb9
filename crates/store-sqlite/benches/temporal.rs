//! The temporal API's aggregation read in SQLite: `avg,min,max` by `PT1H`
//! over 100,000 points of one entity (target: p95 under 30 ms), and over
//! 1,000 entities × 1,000 points. `cargo bench -p vigie-store-sqlite`.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use jiff::SignedDuration;
use serde_json::json;
use vigie_core::ngsi::temporal::{AggrMethod, PeriodDuration, Periods};
use vigie_core::{Entity, EntityId, Timestamp};
use vigie_store::{HistoryPoint, HistorySelection, Store, WriteBatch};
use vigie_store_sqlite::{Durability, SqliteStore};

const METHODS: [AggrMethod; 3] = [AggrMethod::Avg, AggrMethod::Min, AggrMethod::Max];

fn start() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().expect("a valid instant")
}

fn light(n: usize) -> Entity {
    let id = EntityId::conventional("Streetlight", "dijon", &format!("{n:06}")).expect("a valid id");
    Entity::new(id, "Streetlight", None)
}

/// `points` readings of `powerConsumption`, one every `step`, for each entity.
async fn fill(store: &SqliteStore, entities: &[Entity], points: usize, step: SignedDuration) {
    let mut history = Vec::with_capacity(20_000);
    let mut upserts: Vec<Arc<Entity>> = entities.iter().cloned().map(Arc::new).collect();
    for (i, e) in entities.iter().enumerate() {
        for k in 0..points {
            history.push(HistoryPoint {
                entity_id: e.id.clone(),
                attribute: "powerConsumption".into(),
                observed_at: start() + step * i32::try_from(k).expect("small"),
                value: json!(20.0 + ((k * 7 + i) % 40) as f64 * 0.5),
                unit_code: None,
            });
        }
        if history.len() >= 20_000 || i + 1 == entities.len() {
            let batch = WriteBatch {
                upserts: std::mem::take(&mut upserts),
                history: std::mem::take(&mut history),
                ..Default::default()
            };
            store.write(&batch).await.expect("write");
        }
    }
}

fn hourly(points: usize, step: SignedDuration) -> Periods {
    let end = start() + step * i32::try_from(points).expect("small");
    Periods::new(start(), end, PeriodDuration::parse("PT1H").expect("duration")).expect("periods")
}

fn aggregation(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = rt.block_on(async {
        let store = SqliteStore::open(&dir.path().join("bench.db"), Durability::Normal)
            .await
            .expect("open");
        store.migrate().await.expect("migrate");
        store
    });

    // One entity, 100,000 points ten seconds apart (11.6 days, 278 hours).
    let one = [light(0)];
    let step = SignedDuration::from_secs(10);
    rt.block_on(fill(&store, &one, 100_000, step));
    let selection = HistorySelection {
        entity_ids: vec![one[0].id.clone()],
        attributes: Some(vec!["powerConsumption".into()]),
        ..Default::default()
    };
    let periods = hourly(100_000, step);
    let mut group = c.benchmark_group("temporal aggregate");
    group.sample_size(30);
    group.bench_function("avg,min,max PT1H, 1 entity x 100,000 points", |b| {
        b.iter(|| {
            rt.block_on(store.history_aggregate(&selection, &periods, &METHODS))
                .expect("aggregate")
        })
    });

    // 1,000 entities, 1,000 points a minute apart each (16.7 hours).
    let many: Vec<Entity> = (1..=1_000).map(light).collect();
    let step = SignedDuration::from_mins(1);
    rt.block_on(fill(&store, &many, 1_000, step));
    let selection = HistorySelection {
        entity_ids: many.iter().map(|e| e.id.clone()).collect(),
        attributes: Some(vec!["powerConsumption".into()]),
        ..Default::default()
    };
    let periods = hourly(1_000, step);
    group.sample_size(10);
    group.bench_function("avg,min,max PT1H, 1,000 entities x 1,000 points", |b| {
        b.iter(|| {
            rt.block_on(store.history_aggregate(&selection, &periods, &METHODS))
                .expect("aggregate")
        })
    });
    group.finish();
}

criterion_group!(benches, aggregation);
criterion_main!(benches);

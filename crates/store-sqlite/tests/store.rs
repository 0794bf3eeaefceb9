//! The shared storage test story against a real SQLite file.

use std::sync::Arc;

use vigie_core::audit::{AuditEvent, AuditRecord, Head, Outcome};
use vigie_core::{Entity, EntityId};
use vigie_store::Store;
use vigie_store_sqlite::{Durability, SqliteStore};

/// A store in `dir`, its schema made.
async fn migrated(dir: &tempfile::TempDir) -> SqliteStore {
    let store = SqliteStore::open(&dir.path().join("vigie.db"), Durability::Full)
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    store
}

fn light(n: u32) -> Arc<Entity> {
    Arc::new(Entity::new(
        EntityId::new(format!("urn:ngsi-ld:Streetlight:{n}")).expect("id"),
        "Streetlight",
        None,
    ))
}

/// The audit record of light `n`'s creation, after `head`.
fn created(head: &Head, n: u32, credential: &str) -> AuditRecord {
    AuditRecord::seal(
        head,
        AuditEvent {
            at: jiff::Timestamp::now(),
            actor: "ann".into(),
            role: None,
            credential: credential.into(),
            source: None,
            action: "entity.create".into(),
            target: Some(format!("urn:ngsi-ld:Streetlight:{n}")),
            outcome: Outcome::Ok,
            detail: None,
            before: None,
            after: Some(serde_json::json!({"n": n})),
        },
    )
}

#[tokio::test]
async fn sqlite_engine_passes_the_storage_test_story() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("vigie.db"), Durability::Full)
        .await
        .expect("open");
    vigie_store::testsuite::run_all(&store).await;
}

#[tokio::test]
async fn unsupported_urls_are_named() {
    let err = SqliteStore::open_url("postgres://x", Durability::Full)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("postgres://x"), "{err}");
}

#[tokio::test]
async fn the_audit_table_refuses_updates_and_deletes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("vigie.db");
    let store = migrated(&dir).await;
    let record = created(&Head::genesis(), 1, "session");
    store.audit_append(&[record]).await.expect("append");
    store.close().await;

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("raw connection");
    for sql in ["UPDATE audit SET actor = 'eve'", "DELETE FROM audit"] {
        let err = sqlx::query(sql).execute(&pool).await.expect_err("refused");
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
}

#[tokio::test]
async fn entity_writes_and_their_audit_records_commit_together() {
    use vigie_store::{HistoryPoint, StoreError, WriteBatch};

    let dir = tempfile::tempdir().expect("tempdir");
    let store = migrated(&dir).await;
    let record = |after: &Head, n: u32| created(after, n, "api-key");
    let point = |e: &Entity| HistoryPoint {
        entity_id: e.id.clone(),
        attribute: "powerConsumption".into(),
        observed_at: jiff::Timestamp::now(),
        value: serde_json::json!(38.5),
        unit_code: None,
    };

    // A change, its history and its record: one commit. A point of an
    // entity the store does not hold is left out, not an error.
    let first = record(&Head::genesis(), 1);
    let stray = light(99);
    let batch = WriteBatch {
        upserts: vec![light(1)],
        history: vec![point(&light(1)), point(&stray)],
        audit: vec![first.clone()],
        ..Default::default()
    };
    store.write(&batch).await.expect("a write with its record");
    assert_eq!(store.audit_head().await.expect("head"), Some(first.clone()));
    assert_eq!(store.count_history().await.expect("points"), 1);

    // A record that does not continue the trail: nothing of the batch is kept.
    let mut gap = record(&Head::of(&first), 2);
    gap.seq = 3;
    let refused = WriteBatch {
        upserts: vec![light(2)],
        audit: vec![gap],
        ..Default::default()
    };
    assert!(matches!(store.write(&refused).await, Err(StoreError::AuditConflict(_))));
    assert_eq!(
        store.count_entities().await.expect("count"),
        1,
        "the change went with its record"
    );
    assert_eq!(store.audit_head().await.expect("head").map(|r| r.seq), Some(1));

    // The writer goes on after a refused batch.
    let second = record(&Head::of(&first), 2);
    let batch = WriteBatch {
        upserts: vec![light(2)],
        audit: vec![second],
        ..Default::default()
    };
    store.write(&batch).await.expect("the next write");
    assert_eq!(store.count_entities().await.expect("count"), 2);
    assert_eq!(store.audit_head().await.expect("head").map(|r| r.seq), Some(2));
}

#[tokio::test]
async fn writes_queued_together_commit_together_and_a_refused_one_fails_alone() {
    use vigie_store::{StoreError, WriteBatch};

    let dir = tempfile::tempdir().expect("tempdir");
    let store = migrated(&dir).await;
    // A record that does not start the trail (seq 5 on an empty trail).
    let mut stray = created(&Head::genesis(), 0, "api-key");
    stray.seq = 5;
    let batches: Vec<WriteBatch> = (0..40)
        .map(|n| WriteBatch {
            upserts: vec![light(n)],
            audit: if n == 17 { vec![stray.clone()] } else { Vec::new() },
            ..Default::default()
        })
        .collect();
    // All sent at once: the write connection takes them as they queue.
    let results = futures::future::join_all(batches.iter().map(|b| store.write(b))).await;
    for (n, result) in results.iter().enumerate() {
        if n == 17 {
            assert!(matches!(result, Err(StoreError::AuditConflict(_))), "{result:?}");
        } else {
            assert!(result.is_ok(), "batch {n}: {result:?}");
        }
    }
    let ids: Vec<String> = store
        .entities_page(None, 100)
        .await
        .expect("page")
        .into_iter()
        .map(|e| e.id.as_str().to_owned())
        .collect();
    assert_eq!(ids.len(), 39, "every batch but the refused one: {ids:?}");
    assert!(!ids.contains(&"urn:ngsi-ld:Streetlight:17".to_owned()));
    assert_eq!(store.audit_head().await.expect("head"), None);
}

#[tokio::test]
async fn changes_to_existing_entities_are_logged_folded_and_survive_a_restart() {
    use vigie_core::Attribute;
    use vigie_store::WriteBatch;

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("vigie.db");
    let store = migrated(&dir).await;
    let powered = |n: u32, state: &str| Arc::new((*light(n)).clone().with("powerState", Attribute::property(state)));
    let write = |upserts: Vec<Arc<Entity>>, deletes: Vec<EntityId>| WriteBatch {
        upserts,
        deletes,
        ..Default::default()
    };
    let state_of = |entities: &[Entity], n: u32| {
        let id = light(n).id.clone();
        entities
            .iter()
            .find(|e| e.id == id)
            .map(|e| e.attributes.get("powerState").map(|a| a.value.clone()))
    };
    let raw = || async {
        sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("raw connection")
    };

    for batch in [
        write(vec![light(1), light(2)], vec![]),
        write(vec![powered(1, "on")], vec![]),
        write(vec![powered(1, "off")], vec![]),
        // A change, then the entity deleted and made again: the change must
        // not land on the new entity.
        write(vec![powered(2, "on")], vec![]),
        write(vec![], vec![light(2).id.clone()]),
        write(vec![light(2)], vec![]),
    ] {
        store.write(&batch).await.expect("write");
    }
    let seen = store.entities_page(None, 10).await.expect("page");
    assert_eq!(
        state_of(&seen, 1),
        Some(Some(serde_json::json!("off"))),
        "the latest change"
    );
    assert_eq!(
        state_of(&seen, 2),
        Some(None),
        "the new entity, without the old one's change"
    );

    // Stopping folds the log into the rows.
    store.close().await;
    let pool = raw().await;
    let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM entity_changes")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(logged, 0, "folded at close");
    // A change logged by a run that stopped abruptly: folded after migrating.
    let body = serde_json::to_string(&*powered(1, "broken")).expect("body");
    sqlx::query("INSERT INTO entity_changes (id, type, body) VALUES (?, 'Streetlight', ?)")
        .bind(light(1).id.as_str())
        .bind(&body)
        .execute(&pool)
        .await
        .expect("insert");
    pool.close().await;

    let store = migrated(&dir).await;
    let seen = store.entities_page(None, 10).await.expect("page");
    assert_eq!(state_of(&seen, 1), Some(Some(serde_json::json!("broken"))));
    assert_eq!(state_of(&seen, 2), Some(None));
    let pool = raw().await;
    let (logged, row): (i64, String) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM entity_changes), body FROM entities WHERE id = 'urn:ngsi-ld:Streetlight:1'",
    )
    .fetch_one(&pool)
    .await
    .expect("row");
    assert_eq!((logged, row), (0, body), "folded into the row at start");
    store.close().await;
}

#[tokio::test]
async fn changes_folded_while_writing_keep_each_entitys_latest() {
    use vigie_core::Attribute;
    use vigie_store::WriteBatch;

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("vigie.db");
    let store = migrated(&dir).await;
    let lights = 10;
    let with_count = |n: u32, count: u32| Arc::new((*light(n)).clone().with("count", Attribute::property(count)));
    store
        .write(&WriteBatch {
            upserts: (0..lights).map(light).collect(),
            ..Default::default()
        })
        .await
        .expect("create");
    // 10,000 changes, more than make a fold due: a fold comes between two
    // batches, with each light's latest change on either side of it.
    for round in 0..20 {
        let upserts = (0..500).map(|i| with_count(i % lights, round * 500 + i)).collect();
        store
            .write(&WriteBatch {
                upserts,
                ..Default::default()
            })
            .await
            .expect("write");
    }
    let latest = |n: u32| serde_json::json!(9_500 + 490 + n);
    let seen = store.entities_page(None, 100).await.expect("page");
    for (n, e) in (0..lights).zip(&seen) {
        assert_eq!(e.attributes.get("count").map(|a| a.value.clone()), Some(latest(n)));
    }
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("raw connection");
    let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM entity_changes")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert!(logged < 10_000, "some were folded while writing: {logged} logged");
    pool.close().await;
    store.close().await;
    let store = migrated(&dir).await;
    let seen = store.entities_page(None, 100).await.expect("page");
    for (n, e) in (0..lights).zip(&seen) {
        assert_eq!(e.attributes.get("count").map(|a| a.value.clone()), Some(latest(n)));
    }
    store.close().await;
}

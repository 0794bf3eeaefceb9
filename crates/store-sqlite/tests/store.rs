//! The shared storage test story against a real SQLite file.

use vigie_store_sqlite::{Durability, SqliteStore};

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
    use vigie_core::audit::{AuditEvent, AuditRecord, Head, Outcome};
    use vigie_store::Store;

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("vigie.db");
    let store = SqliteStore::open(&path, Durability::Full).await.expect("open");
    store.migrate().await.expect("migrate");
    let record = AuditRecord::seal(
        &Head::genesis(),
        AuditEvent {
            at: jiff::Timestamp::now(),
            actor: "ann".into(),
            role: None,
            credential: "session".into(),
            source: None,
            action: "entity.create".into(),
            target: Some("urn:x:1".into()),
            outcome: Outcome::Ok,
            detail: None,
            before: None,
            after: Some(serde_json::json!({"a": 1})),
        },
    );
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

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

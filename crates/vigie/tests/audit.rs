//! `vigie audit verify` against the real binary's real SQLite file: writes
//! over HTTP to `vigie serve`, a clean stop, then each kind of tampering done
//! with raw SQL on a copy of the data (the append-only triggers dropped
//! first, as an attacker would) — each is detected and the record named.
//!
//! Run: `cargo test -p vigie --test audit`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Vigie, db_path, write_config};
use serde_json::json;
use vigie_core::audit::{AuditRecord, Head};
use vigie_store::Store;
use vigie_store_sqlite::{Durability, SqliteStore};

/// Runs `vigie audit verify`; returns its exit code and standard output.
fn verify(config: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vigie"))
        .args(["audit", "verify", "--config"])
        .arg(config)
        .env("VIGIE_LOG", "warn")
        .output()
        .expect("run vigie audit verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// A copy of the stopped deployment's data directory, with its own config.
fn copy_of(data: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(data).expect("read data dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        if name.to_string_lossy().starts_with("vigie.db") {
            std::fs::copy(entry.path(), dir.path().join(&name)).expect("copy");
        }
    }
    let config = write_config(dir.path(), "embedded = false");
    (dir, config)
}

async fn sql(data: &Path, statements: &[&str]) {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db_path(data).display()))
        .await
        .expect("raw connection");
    for s in statements {
        // Test-made statements, tampering on purpose.
        sqlx::query(sqlx::AssertSqlSafe(s.to_string()))
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    pool.close().await;
}

#[tokio::test]
async fn audit_verify_names_every_kind_of_tampering() {
    let data = tempfile::tempdir().expect("tempdir");
    let config = write_config(data.path(), "embedded = false");
    let vigie = Vigie::start(&config).await;
    for n in 0..5 {
        let e = json!({"id": format!("urn:ngsi-ld:Streetlight:dijon:{n:06}"), "type": "Streetlight",
                       "powerState": {"type": "Property", "value": "on"}});
        assert_eq!(vigie.post_json("/ngsi-ld/v1/entities", &e).await.0, 201);
    }
    let res = vigie
        .http
        .patch(vigie.url("/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:dijon:000001/attrs"))
        .json(&json!({"powerState": {"type": "Property", "value": "off"}}))
        .send()
        .await
        .expect("patch");
    assert_eq!(res.status(), 204);
    let (status, _) = vigie.post_json("/iot/devices", &common::provisioning(2)).await;
    assert_eq!(status, 201);
    let (status, v) = vigie.get_json("/api/v1/audit/verify").await;
    assert_eq!((status, &v["ok"]), (200, &json!(true)), "{v}");
    let (status, _, log) = vigie.terminate(Duration::from_secs(10)).await;
    assert!(status.success(), "{log}");
    assert!(log.contains("audit head"), "each append logs the head: {log}");
    // 1 start, 5 creates, 1 update, 1 provisioning, 1 verify.
    let last = 9;

    // Untouched: intact, exit 0.
    let (code, out) = verify(&config);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(&format!("audit trail intact: {last} records, head seq {last} hash ")),
        "{out}"
    );

    // A record's content edited.
    let (dir, cfg) = copy_of(data.path());
    sql(
        dir.path(),
        &[
            "DROP TRIGGER audit_no_update",
            r#"UPDATE audit SET after = '{"powerState":"forged"}' WHERE seq = 7"#,
        ],
    )
    .await;
    assert_eq!(
        verify(&cfg),
        (
            1,
            "audit trail NOT intact: record 7 was changed (its content does not match its hash)\n".into()
        )
    );

    // A record deleted.
    let (dir, cfg) = copy_of(data.path());
    sql(
        dir.path(),
        &["DROP TRIGGER audit_no_delete", "DELETE FROM audit WHERE seq = 4"],
    )
    .await;
    assert_eq!(
        verify(&cfg),
        (1, "audit trail NOT intact: record 4 is missing\n".into())
    );
    let (dir, cfg) = copy_of(data.path());
    sql(
        dir.path(),
        &[
            "DROP TRIGGER audit_no_delete",
            "DELETE FROM audit WHERE seq BETWEEN 3 AND 5",
        ],
    )
    .await;
    assert_eq!(
        verify(&cfg),
        (1, "audit trail NOT intact: records 3–5 are missing\n".into())
    );

    // Two records swapped.
    let (dir, cfg) = copy_of(data.path());
    sql(
        dir.path(),
        &[
            "DROP TRIGGER audit_no_update",
            "UPDATE audit SET seq = -1 WHERE seq = 5",
            "UPDATE audit SET seq = 5 WHERE seq = 6",
            "UPDATE audit SET seq = 6 WHERE seq = -1",
        ],
    )
    .await;
    let (code, out) = verify(&cfg);
    assert_eq!(code, 1);
    assert!(out.contains("record 5 is out of order"), "{out}");

    // The tail cut: the chain alone is valid, the anchor says otherwise.
    let (dir, cfg) = copy_of(data.path());
    sql(
        dir.path(),
        &["DROP TRIGGER audit_no_delete", "DELETE FROM audit WHERE seq > 6"],
    )
    .await;
    assert_eq!(
        verify(&cfg),
        (
            1,
            format!("audit trail NOT intact: the trail ends at 6 but the anchor says {last}\n")
        )
    );

    // A record edited and every later hash recomputed: only the anchor catches it.
    let (dir, cfg) = copy_of(data.path());
    let store = SqliteStore::open(&db_path(dir.path()), Durability::Full)
        .await
        .expect("open");
    let records = store.audit_after(0, 100).await.expect("read");
    store.close().await;
    let mut head = Head::of(&records[2]);
    let mut statements = vec!["DROP TRIGGER audit_no_update".to_owned()];
    for r in &records[3..] {
        let mut e = r.event.clone();
        if r.seq == 4 {
            e.actor = "someone-else".into();
        }
        let forged = AuditRecord::seal(&head, e);
        head = Head::of(&forged);
        statements.push(format!(
            "UPDATE audit SET actor = '{}', prev_hash = '{}', hash = '{}' WHERE seq = {}",
            forged.event.actor, forged.prev_hash, forged.hash, forged.seq
        ));
    }
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    sql(dir.path(), &statements).await;
    assert_eq!(
        verify(&cfg),
        (
            1,
            format!(
                "audit trail NOT intact: record {last} does not match the anchor (the trail was rewritten up to it)\n"
            )
        )
    );

    // Not a database: exit 2, named.
    let empty = tempfile::tempdir().expect("tempdir");
    let (code, out) = verify(&write_config(empty.path(), "embedded = false"));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no database at"), "{out}");
}

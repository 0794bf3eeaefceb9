//! The audit trail through the real server: every write over HTTP leaves a
//! record with its before/after, auditors query, export and verify it, and a
//! trail cut or rewritten while Vigie was stopped refuses to start.

mod common;

use std::net::IpAddr;

use common::{TestServer, config_for};
use serde_json::{Value, json};
use vigie_core::access::{Action, Credential, Principal, Role, ScopeGrant};
use vigie_core::audit::{AuditRecord, Head, verify};
use vigie_server::security::Caller;

fn light(n: u32) -> Value {
    json!({
        "id": format!("urn:ngsi-ld:Streetlight:dijon:{n:06}"),
        "type": "Streetlight",
        "scope": "/dijon/lighting",
        "powerState": {"type": "Property", "value": "on"},
        "name": {"type": "Property", "value": format!("Lanterne {n}")}
    })
}

async fn records(s: &TestServer, query: &str) -> Vec<Value> {
    let (status, body) = s.get_json(&format!("/api/v1/audit?{query}")).await;
    assert_eq!(status, 200, "{body}");
    body.as_array().expect("an array").clone()
}

#[tokio::test]
async fn writes_are_audited_and_auditors_query_export_and_verify() {
    let s = TestServer::http_only().await;
    let id = "urn:ngsi-ld:Streetlight:dijon:000001";
    assert_eq!(s.post_json("/ngsi-ld/v1/entities", &light(1)).await.0, 201);
    let res = s
        .http
        .patch(s.url(&format!("/ngsi-ld/v1/entities/{id}/attrs")))
        .json(&json!({"powerState": {"type": "Property", "value": "off"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let (status, _) = s
        .post_json(
            "/ngsi-ld/v1/entityOperations/upsert",
            &json!([light(1), light(2), {"id": "bad"}]),
        )
        .await;
    assert_eq!(status, 207);
    let res = s
        .http
        .delete(s.url(&format!("/ngsi-ld/v1/entities/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = s
        .http
        .delete(s.url(&format!("/ngsi-ld/v1/entities/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let devices = json!({"devices": [{"device_id": "SL-1", "transport": "mqtt", "apikey": "secret-key",
        "entity_name": id, "entity_type": "Streetlight", "attributes": []}]});
    assert_eq!(s.post_json("/iot/devices", &devices).await.0, 201);
    let res = s.http.delete(s.url("/iot/devices/SL-1")).send().await.unwrap();
    assert_eq!(res.status(), 204);

    let all = records(&s, "limit=100").await;
    let actions: Vec<&str> = all.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "system.start",
            "entity.create",
            "entity.update",
            "entity.batch-upsert",
            "entity.delete",
            "entity.delete",
            "device.provision",
            "device.delete"
        ]
    );
    let update = &all[2];
    assert_eq!(update["actor"], "test harness");
    assert_eq!(update["role"], "administrator");
    assert_eq!(update["credential"], "service-token");
    assert_eq!(update["source"], "127.0.0.1");
    assert_eq!(update["target"], id);
    assert_eq!(update["outcome"], "ok");
    assert_eq!(update["before"]["powerState"]["value"], "on");
    assert_eq!(update["after"]["powerState"]["value"], "off");
    // A change is recorded as what it touched, not the whole entity twice.
    for side in ["before", "after"] {
        assert_eq!(
            (&update[side]["id"], &update[side]["type"]),
            (&json!(id), &json!("Streetlight"))
        );
        assert!(
            update[side].get("name").is_none(),
            "unchanged attributes left out: {update}"
        );
    }
    let batch = &all[3];
    assert_eq!(batch["after"]["updated"], json!([id]));
    assert_eq!(
        batch["after"]["created"],
        json!(["urn:ngsi-ld:Streetlight:dijon:000002"])
    );
    assert_eq!(batch["after"]["invalid"], 1);
    assert_eq!(all[4]["before"]["id"], id);
    assert_eq!(all[4]["after"], Value::Null);
    assert_eq!(
        (all[5]["outcome"].as_str(), all[5]["before"].is_null()),
        (Some("failed"), true)
    );
    assert!(
        !all[6].to_string().contains("secret-key"),
        "device keys stay out of the trail: {}",
        all[6]
    );

    // Filters, paging, count.
    let res = s
        .http
        .get(s.url("/api/v1/audit?action=entity.*&outcome=ok&count=true&limit=2&order=desc"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["vigie-results-count"], "4");
    let page: Vec<Value> = res.json().await.unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(page[0]["action"], "entity.delete");
    assert_eq!(records(&s, &format!("target={id}&limit=100")).await.len(), 4);
    assert_eq!(records(&s, "actor=nobody").await.len(), 0);
    let (status, body) = s.get_json("/api/v1/audit?limit=5000").await;
    assert_eq!(
        (status, body["type"].as_str().unwrap().rsplit('/').next()),
        (403, Some("TooManyResults"))
    );
    let (status, body) = s.get_json("/api/v1/audit?from=yesterday").await;
    assert_eq!(status, 400);
    assert!(body["detail"].as_str().unwrap().contains("'from'"), "{body}");

    // Reading the trail is itself in the trail.
    let reads = records(&s, "action=audit.read&limit=100").await;
    assert_eq!(reads.len(), 4, "{reads:?}");

    // The export carries the hashes: it re-verifies outside Vigie.
    let text = s
        .http
        .get(s.url("/api/v1/audit/export?format=ndjson"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let exported: Vec<AuditRecord> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let last = exported.last().unwrap();
    assert_eq!(last.event.action, "audit.export", "the export records itself first");
    let ok = verify(&exported, Some(&Head::of(last))).expect("the export verifies");
    assert_eq!(ok.records, exported.len() as u64);

    let csv = s
        .http
        .get(s.url("/api/v1/audit/export?format=csv&action=entity.*"))
        .send()
        .await
        .unwrap();
    assert!(csv.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let csv = csv.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("seq,at,actor"));
    assert_eq!(lines.len(), 1 + 5, "{csv}");
    assert!(
        lines[3].contains(r#","entity.batch-upsert",,"ok","#),
        "an absent target is an empty unquoted field: {}",
        lines[3]
    );

    let (status, v) = s.get_json("/api/v1/audit/verify").await;
    assert_eq!(status, 200);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["anchored"], true);
    assert!(v["records"].as_u64().unwrap() > 10);
    let (_, again) = s.get_json("/api/v1/audit?action=audit.verify").await;
    assert_eq!(
        again[0]["detail"].as_str().unwrap().split(':').next(),
        Some("audit trail intact")
    );
}

#[tokio::test]
async fn refusals_are_recorded_with_their_reason() {
    let s = TestServer::http_only().await;
    let auditor = Caller {
        principal: Principal {
            subject: "dana".into(),
            credential: Credential::Session,
            role: Role::Auditor,
            scope: ScopeGrant::parse("dijon", "*").unwrap(),
        },
        source: Some(IpAddr::from([192, 0, 2, 9])),
        session: None,
    };
    let audit = &s.running.audit;
    let err = audit
        .check(&auditor, Action::WriteEntities, "entity.update", Some("urn:x:1"))
        .await
        .unwrap_err();
    assert!(matches!(err, vigie_server::api::ApiError::Forbidden(_)), "{err:?}");
    let err = audit
        .check(&auditor, Action::ReadAudit, "audit.read", None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("grant"), "{err}");

    let tech = Caller {
        principal: Principal {
            role: Role::FieldTechnician,
            ..auditor.principal.clone()
        },
        ..auditor.clone()
    };
    let talant = vigie_core::Scope::from_ngsi("/talant/lighting").unwrap();
    let err = audit
        .check_in(
            &tech,
            Action::WriteEntities,
            Some(&talant),
            "entity.update",
            Some("urn:x:2"),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/talant/lighting"), "{err}");
    let dijon = vigie_core::Scope::from_ngsi("/dijon/lighting").unwrap();
    audit
        .check_in(
            &tech,
            Action::WriteEntities,
            Some(&dijon),
            "entity.update",
            Some("urn:x:3"),
        )
        .await
        .expect("in scope");

    let denied = records(&s, "outcome=denied").await;
    assert_eq!(denied.len(), 3);
    assert_eq!(denied[2]["target"], "urn:x:2");
    assert_eq!(denied[0]["actor"], "dana");
    assert_eq!(denied[0]["role"], "auditor");
    assert_eq!(denied[0]["credential"], "session");
    assert_eq!(denied[0]["source"], "192.0.2.9");
    assert_eq!(denied[0]["target"], "urn:x:1");
    assert!(
        denied[0]["detail"].as_str().unwrap().contains("auditor"),
        "{}",
        denied[0]
    );
}

#[tokio::test]
async fn a_trail_cut_while_stopped_refuses_to_start_and_a_lost_anchor_is_recorded() {
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("vigie.db");
    let s = TestServer::start_with(config_for(data.path(), None), tempfile::tempdir().unwrap()).await;
    for n in 0..3 {
        assert_eq!(s.post_json("/ngsi-ld/v1/entities", &light(n)).await.0, 201);
    }
    s.running.shutdown().await;
    let anchor = data.path().join("vigie.db.audit-head");
    let head: Value = serde_json::from_str(&std::fs::read_to_string(&anchor).unwrap()).unwrap();
    assert_eq!(head["seq"], 4);

    // Cut the tail (the trigger has to go first: it refuses deletes).
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("DROP TRIGGER audit_no_delete")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit WHERE seq >= 3")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = vigie_server::start(config_for(data.path(), None), listener, axum::Router::new())
        .await
        .err()
        .expect("refuses to start");
    let message = format!("{err:#}");
    assert!(
        message.contains("the trail ends at 2 but the anchor says 4"),
        "{message}"
    );
    assert!(message.contains("vigie audit verify"), "{message}");

    // The operator accepts it by moving the anchor away: the start is recorded.
    std::fs::rename(&anchor, data.path().join("old-anchor")).unwrap();
    let s = TestServer::start_with(config_for(data.path(), None), tempfile::tempdir().unwrap()).await;
    let all = records(&s, "limit=100").await;
    let actions: Vec<&str> = all.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["system.start", "entity.create", "audit.anchor-missing", "system.start"]
    );
    assert_eq!(all[2]["seq"], 3);
    let (_, v) = s.get_json("/api/v1/audit/verify").await;
    assert_eq!(v["ok"], true, "{v}");
}

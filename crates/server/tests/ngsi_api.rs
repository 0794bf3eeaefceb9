//! The NGSI-LD API through the real server: writes, reads, paging and errors.

mod common;

use common::TestServer;
use serde_json::{Value, json};

fn light(n: u32, commune: &str) -> Value {
    json!({
        "id": format!("urn:ngsi-ld:Streetlight:{commune}:{n:06}"),
        "type": "Streetlight",
        "scope": format!("/{commune}/lighting"),
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [5.04 + f64::from(n) * 1e-4, 47.32]}},
        "powerState": {"type": "Property", "value": "on"},
        "powerConsumption": {"type": "Property", "value": 38.5, "unitCode": "WTT"}
    })
}

fn problem_type(body: &Value) -> &str {
    body["type"].as_str().unwrap_or("").rsplit('/').next().unwrap_or("")
}

#[tokio::test]
async fn create_read_update_delete() {
    let s = TestServer::http_only().await;
    let e = light(1, "dijon");
    let res = s
        .http
        .post(s.url("/ngsi-ld/v1/entities"))
        .json(&e)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(
        res.headers()["location"].to_str().unwrap(),
        "/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:dijon:000001"
    );

    let (status, body) = s.post_json("/ngsi-ld/v1/entities", &e).await;
    assert_eq!((status, problem_type(&body)), (409, "AlreadyExists"));

    let (status, got) = s
        .get_json("/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:dijon:000001")
        .await;
    assert_eq!(status, 200);
    assert_eq!(got["powerConsumption"]["unitCode"], "WTT");
    assert_eq!(got["scope"], "/dijon/lighting");

    let (_, kv) = s
        .get_json("/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:dijon:000001?options=keyValues&attrs=powerState")
        .await;
    assert_eq!(
        kv,
        json!({"id": "urn:ngsi-ld:Streetlight:dijon:000001", "type": "Streetlight", "scope": "/dijon/lighting", "powerState": "on"})
    );

    // PATCH updates existing attributes and reports the others (207).
    let res = s
        .http
        .patch(s.url("/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:dijon:000001/attrs"))
        .json(&json!({"powerState": {"type": "Property", "value": "off"}, "nope": {"type": "Property", "value": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 207);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["updated"], json!(["powerState"]));
    assert_eq!(body["notUpdated"][0]["attributeName"], "nope");

    // POST appends; noOverwrite keeps existing values.
    let (status, _) = s
        .post_json(
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:dijon:000001/attrs",
            &json!({"illuminanceLevel": {"type": "Property", "value": 0.7}}),
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = s
        .post_json(
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:dijon:000001/attrs?options=noOverwrite",
            &json!({"illuminanceLevel": {"type": "Property", "value": 0.1}}),
        )
        .await;
    assert_eq!(status, 207);
    let (_, got) = s
        .get_json("/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:dijon:000001?options=sysAttrs")
        .await;
    assert_eq!(got["powerState"]["value"], "off");
    assert_eq!(got["illuminanceLevel"]["value"], 0.7);
    assert!(got["createdAt"].is_string() && got["modifiedAt"].is_string());

    let res = s
        .http
        .delete(s.url("/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:dijon:000001"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let (status, body) = s
        .get_json("/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:dijon:000001")
        .await;
    assert_eq!((status, problem_type(&body)), (404, "ResourceNotFound"));
    let res = s
        .http
        .delete(s.url("/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:dijon:000001"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    s.running.shutdown().await;
}

#[tokio::test]
async fn batch_upsert_and_stable_paging() {
    let s = TestServer::http_only().await;
    let batch: Vec<Value> = (0..250)
        .map(|n| light(n, if n % 2 == 0 { "dijon" } else { "talant" }))
        .collect();
    let (status, created) = s
        .post_json("/ngsi-ld/v1/entityOperations/upsert", &Value::Array(batch.clone()))
        .await;
    assert_eq!(status, 201);
    assert_eq!(created.as_array().unwrap().len(), 250);
    let (status, _) = s
        .post_json("/ngsi-ld/v1/entityOperations/upsert", &Value::Array(batch))
        .await;
    assert_eq!(status, 204, "all updated, none created");

    // One bad entity among good ones: 207 naming it.
    let mixed = json!([light(900, "dijon"), {"id": "not a uri", "type": "Streetlight"}]);
    let (status, body) = s.post_json("/ngsi-ld/v1/entityOperations/create", &mixed).await;
    assert_eq!(status, 207);
    assert_eq!(body["success"], json!(["urn:ngsi-ld:Streetlight:dijon:000900"]));
    assert_eq!(body["errors"][0]["entityId"], "not a uri");
    assert_eq!(problem_type(&body["errors"][0]["error"]), "BadRequestData");

    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let res = s
            .http
            .get(s.url(&format!(
                "/ngsi-ld/v1/entities?type=Streetlight&limit=40&offset={offset}&count=true"
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["ngsild-results-count"], "251");
        let page: Vec<Value> = res.json().await.unwrap();
        if page.is_empty() {
            break;
        }
        seen.extend(page.into_iter().map(|e| e["id"].as_str().unwrap().to_owned()));
        offset += 40;
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen.len(), 251);
    assert_eq!(seen, sorted, "every entity exactly once, in a stable order");

    let (_, talant) = s
        .get_json("/ngsi-ld/v1/entities?idPattern=.*:talant:.*&limit=1000")
        .await;
    assert_eq!(talant.as_array().unwrap().len(), 125);
    s.running.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_problem_details() {
    let s = TestServer::http_only().await;
    let raw = |body: &'static str| {
        s.http
            .post(s.url("/ngsi-ld/v1/entities"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let res = raw("{not json").await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(problem_type(&res.json().await.unwrap()), "InvalidRequest");

    let (status, body) = s.post_json("/ngsi-ld/v1/entities", &json!({"id": "urn:x:1"})).await;
    assert_eq!((status, problem_type(&body)), (400, "BadRequestData"));
    assert!(body["detail"].as_str().unwrap().contains("'type'"), "{body}");

    let huge = json!({"id": "urn:x:1", "type": "T", "blob": {"type": "Property", "value": "x".repeat(300_000)}});
    let res = s
        .http
        .post(s.url("/ngsi-ld/v1/entities"))
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);

    let (status, body) = s.get_json("/ngsi-ld/v1/entities?type=Streetlight&limit=5000").await;
    assert_eq!((status, problem_type(&body)), (403, "TooManyResults"));
    let (status, body) = s.get_json("/ngsi-ld/v1/entities?type=Streetlight&limit=ten").await;
    assert_eq!((status, problem_type(&body)), (400, "BadRequestData"));
    let (status, body) = s.get_json("/ngsi-ld/v1/entities").await;
    assert_eq!((status, problem_type(&body)), (400, "BadRequestData"));
    let (status, body) = s.get_json("/ngsi-ld/v1/entities/not-a-uri").await;
    assert_eq!((status, problem_type(&body)), (400, "BadRequestData"));
    let (status, body) = s.get_json("/ngsi-ld/v1/entities?idPattern=(unclosed").await;
    assert_eq!((status, problem_type(&body)), (400, "BadRequestData"));

    let (status, health) = s.get_json("/health").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    s.running.shutdown().await;
}

#[tokio::test]
async fn state_survives_a_restart() {
    let s = TestServer::http_only().await;
    let (status, _) = s.post_json("/ngsi-ld/v1/entities", &light(7, "quetigny")).await;
    assert_eq!(status, 201);
    let TestServer { running, data, .. } = s;
    running.shutdown().await;

    let config = common::config_for(data.path(), None);
    let s = TestServer::start_with(config, data).await;
    let (status, got) = s
        .get_json("/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:quetigny:000007")
        .await;
    assert_eq!(status, 200);
    assert_eq!(got["powerConsumption"]["value"], 38.5);
    s.running.shutdown().await;
}
